//! The commit path: a batch is staged when [`Store::commit`](crate::Store::commit) is
//! called (encoded, grants and OAuth states sealed), queued to the store's one writer
//! task, and applied there as one transaction — batches one after another, in the order
//! they were called, claims among them.
//!
//! In the transaction: the fences first (each connection's epoch row locked with
//! `SELECT … FOR UPDATE`, so a claim cannot slip in before the commit), then the
//! records, then the events, numbered last from the one-row counter so its lock is held
//! for as short a time as possible. A transaction that numbers events also sends
//! `NOTIFY` on the event channel with the new high number (see [`announce`]), so every
//! node's feed learns of them at commit.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::batch::{encoded, Batch, BatchOp, Epoch};
use crate::sled_store::layout::idempotency_key;
use crate::{codec, ConnectionKey, Event, PendingAuthorization, StoreError};

use super::feed::Pump;
use super::{grant_aad, oauth_aad, PgStore};

/// What the writer task is asked to do.
pub(super) enum Job {
    Commit(
        Staged,
        oneshot::Sender<Result<Vec<crate::Event>, StoreError>>,
    ),
    Claim(ConnectionKey, oneshot::Sender<Result<Epoch, StoreError>>),
    /// Answered once every job queued before it is done.
    Sync(oneshot::Sender<Result<(), StoreError>>),
}

/// A batch with every byte that does not depend on the database computed.
#[derive(Clone)]
pub(super) struct Staged {
    ops: Vec<Op>,
    fences: Vec<(ConnectionKey, Epoch)>,
    events: Vec<Event>,
}

#[derive(Clone)]
enum Op {
    PutConnection {
        key: Vec<u8>,
        pen: String,
        status: &'static str,
        record: Vec<u8>,
    },
    DeleteConnection(Vec<u8>),
    PutGrant {
        key: Vec<u8>,
        pen: String,
        sealed: Vec<u8>,
    },
    DeleteGrant(Vec<u8>),
    /// A post's status, with its body when the post is new or edited (`None`: the body
    /// stored stays).
    PutPost {
        id: Vec<u8>,
        connection: Vec<u8>,
        pen: String,
        state: &'static str,
        queued: bool,
        due_at: i64,
        updated_at: i64,
        body: Option<Vec<u8>>,
        status: Vec<u8>,
    },
    DeletePost(Vec<u8>),
    PutOAuthState {
        state: String,
        pen: Option<String>,
        expires_at: i64,
        sealed: Vec<u8>,
    },
    PutIdempotent {
        pen: crate::PenName,
        key: String,
        created_at: i64,
        record: Vec<u8>,
    },
}

impl Staged {
    /// The records this batch writes, as the unreadable list names them: a record named
    /// there is no longer unreadable once written over.
    pub(super) fn written_keys(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        for op in &self.ops {
            match op {
                Op::PutConnection { key, .. } | Op::DeleteConnection(key) => {
                    out.push(("connections", key.clone()))
                }
                Op::PutGrant { key, .. } | Op::DeleteGrant(key) => {
                    out.push(("grants", key.clone()))
                }
                Op::PutPost { id, body, .. } => {
                    out.push(("post_status", id.clone()));
                    if body.is_some() {
                        out.push(("post_bodies", id.clone()));
                    }
                }
                Op::DeletePost(id) => {
                    out.push(("post_status", id.clone()));
                    out.push(("post_bodies", id.clone()));
                }
                Op::PutOAuthState { state, .. } => {
                    out.push(("oauth_states", state.as_bytes().to_vec()))
                }
                Op::PutIdempotent { pen, key, .. } => {
                    out.push(("idempotency", idempotency_key(pen, key)))
                }
            }
        }
        out
    }
}

impl PgStore {
    /// Encodes and seals a batch's records: a value that cannot be encoded fails the
    /// batch here, before anything reaches the database.
    pub(super) fn stage(&self, mut batch: Batch) -> Result<Staged, StoreError> {
        if let Some(e) = batch.take_error() {
            return Err(e);
        }
        let mut fences = std::mem::take(&mut batch.fences);
        // Epoch rows are locked in one order by every transaction, so two that fence the
        // same connections never wait for each other in a cycle.
        fences.sort_by_key(|(key, _)| key.storage_key());
        let mut staged = Staged {
            ops: Vec::with_capacity(batch.ops.len()),
            fences,
            events: Vec::new(),
        };
        for op in std::mem::take(&mut batch.ops) {
            let op = match op {
                BatchOp::PutConnection(c) => Op::PutConnection {
                    key: c.key.storage_key(),
                    pen: c.key.pen_name.as_str().to_owned(),
                    status: c.status.label().as_str(),
                    record: encoded(&*c)?,
                },
                BatchOp::DeleteConnection(k) => Op::DeleteConnection(k.storage_key()),
                BatchOp::PutGrant(k, plain) => {
                    let key = k.storage_key();
                    Op::PutGrant {
                        sealed: self.inner.vault.seal(&grant_aad(&key), &plain),
                        key,
                        pen: k.pen_name.as_str().to_owned(),
                    }
                }
                BatchOp::DeleteGrant(k) => Op::DeleteGrant(k.storage_key()),
                BatchOp::PutPost(p) => {
                    let status = p.status();
                    Op::PutPost {
                        id: p.id.as_bytes().to_vec(),
                        connection: p.connection.storage_key(),
                        pen: p.connection.pen_name.as_str().to_owned(),
                        state: status.state.label().as_str(),
                        queued: status.state.is_queued(),
                        due_at: status.due_at.unix_millis(),
                        updated_at: status.updated_at.unix_millis(),
                        body: Some(encoded(&p.body())?),
                        status: encoded(&status)?,
                    }
                }
                BatchOp::PutPostStatus(status) => Op::PutPost {
                    id: status.id.as_bytes().to_vec(),
                    connection: status.connection.storage_key(),
                    pen: status.connection.pen_name.as_str().to_owned(),
                    state: status.state.label().as_str(),
                    queued: status.state.is_queued(),
                    due_at: status.due_at.unix_millis(),
                    updated_at: status.updated_at.unix_millis(),
                    body: None,
                    status: encoded(&*status)?,
                },
                BatchOp::DeletePost(id) => Op::DeletePost(id.as_bytes().to_vec()),
                BatchOp::Event(e) => {
                    staged.events.push(*e);
                    continue;
                }
                BatchOp::PutOAuthState(state, plain, expires_at) => {
                    // The pen name is kept beside the sealed value (it is no secret) so
                    // that an erasure finds the pen name's pending authorizations.
                    let pen = codec::decode::<PendingAuthorization>(
                        "oauth_states",
                        state.as_bytes(),
                        &plain,
                    )
                    .ok()
                    .map(|p| p.connection.pen_name.as_str().to_owned());
                    Op::PutOAuthState {
                        sealed: self.inner.vault.seal(&oauth_aad(&state), &plain),
                        state,
                        pen,
                        expires_at: expires_at.unix_millis(),
                    }
                }
                BatchOp::PutIdempotent(pen, key, record) => Op::PutIdempotent {
                    pen,
                    key,
                    created_at: record.created_at.unix_millis(),
                    record: encoded(&*record)?,
                },
            };
            staged.ops.push(op);
        }
        Ok(staged)
    }
}

/// Batches applied in one transaction at most (see [`apply_group`]).
const GROUP_MAX: usize = 64;

/// Starts the writer task: it ends when the store (every sender) is dropped.
pub(super) fn start_writer(pool: Pool, feed: Arc<Pump>) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        let mut next = None;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match rx.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            match job {
                Job::Commit(staged, reply) => {
                    // Every commit queued meanwhile joins this one, up to the first job
                    // that is not a commit (it runs after them, in its place).
                    let mut group = vec![(staged, reply)];
                    while group.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(Job::Commit(staged, reply)) => group.push((staged, reply)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let outcomes = apply_group(&pool, feed.channel(), &group).await;
                    if outcomes
                        .iter()
                        .any(|o| o.as_ref().is_ok_and(|events| !events.is_empty()))
                    {
                        feed.wake();
                    }
                    for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Job::Claim(key, reply) => {
                    let _ = reply.send(claim(&pool, &key).await);
                }
                Job::Sync(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    });
    tx
}

type Reply = oneshot::Sender<Result<Vec<Event>, StoreError>>;

/// Group commit: the batches waiting together are applied in one transaction, so they
/// share one commit (and its WAL flush) instead of taking one each. A fenced batch is
/// refused before it writes anything, and the others go on; if the database fails a
/// statement, nothing of the group was committed and each batch is applied again on its
/// own, so one batch's failure is its own. If the commit itself fails, every batch of the
/// group gets that error (whether the server committed is then unknown: applying them
/// again could apply them twice).
async fn apply_group(
    pool: &Pool,
    channel: &str,
    group: &[(Staged, Reply)],
) -> Vec<Result<Vec<Event>, StoreError>> {
    if group.len() == 1 {
        return vec![apply_retrying(pool, channel, &group[0].0).await];
    }
    let together = async {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let mut outcomes = Vec::with_capacity(group.len());
        for (staged, _) in group {
            outcomes.push(apply_in(&tx, staged).await?);
        }
        announce(&tx, channel, outcomes.iter().flatten()).await?;
        let committed = tx.commit().await.map_err(StoreError::from);
        Ok::<_, StoreError>((committed, outcomes))
    };
    match together.await {
        Ok((Ok(()), outcomes)) => outcomes,
        Ok((Err(e), outcomes)) => {
            let text = e.to_string();
            tracing::error!(error = %text, "a group commit failed at COMMIT; its batches are reported failed");
            outcomes
                .into_iter()
                .map(|o| match o {
                    Ok(_) => Err(StoreError::Postgres(super::PgError::CommitUnknown(
                        text.clone(),
                    ))),
                    refused => refused,
                })
                .collect()
        }
        Err(error) => {
            tracing::warn!(%error, batches = group.len(), "a group commit failed before COMMIT (nothing of it applied); applying its batches one by one");
            let mut outcomes = Vec::with_capacity(group.len());
            for (staged, _) in group {
                outcomes.push(apply_retrying(pool, channel, staged).await);
            }
            outcomes
        }
    }
}

/// How many times a transaction the server aborted to break a deadlock (with a purge or
/// an erasure, or another node) is tried again.
const RETRIES: usize = 3;

/// [`apply`], again when the server chose this transaction to abort to break a deadlock
/// or a serialization conflict: nothing of it was applied, so applying it again is safe.
async fn apply_retrying(
    pool: &Pool,
    channel: &str,
    staged: &Staged,
) -> Result<Vec<Event>, StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match apply(pool, channel, staged).await {
            Err(StoreError::Postgres(super::PgError::Database(e)))
                if tries < RETRIES && is_retryable(&e) =>
            {
                tracing::warn!(error = %super::describe(&e), "a commit was aborted by the database to break a conflict; applying it again");
            }
            outcome => return outcome,
        }
    }
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

async fn claim(pool: &Pool, key: &ConnectionKey) -> Result<Epoch, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO epochs (key, epoch) VALUES ($1, 1) \
             ON CONFLICT (key) DO UPDATE SET epoch = epochs.epoch + 1 RETURNING epoch",
        )
        .await?;
    let epoch: i64 = client.query_one(&stmt, &[&key.storage_key()]).await?.get(0);
    Ok(Epoch(u64::try_from(epoch).unwrap_or(0)))
}

/// Applies one staged batch as one transaction; returns its events, numbered.
async fn apply(pool: &Pool, channel: &str, staged: &Staged) -> Result<Vec<Event>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // A refused batch wrote nothing: dropping the transaction rolls it back.
    let events = apply_in(&tx, staged).await??;
    announce(&tx, channel, [&events]).await?;
    tx.commit().await?;
    Ok(events)
}

/// Tells every node's feed that the transaction numbered events: `pg_notify` on the
/// event channel with the highest number as the payload — a number, never record data.
/// The server delivers it to the listeners when the transaction commits (not at all if
/// it rolls back). Nothing is sent for a transaction without events.
async fn announce<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    channel: &str,
    outcomes: impl IntoIterator<Item = &'a Vec<Event>>,
) -> Result<(), StoreError> {
    let Some(high) = outcomes
        .into_iter()
        .flat_map(|events| events.iter().map(|e| e.seq))
        .max()
    else {
        return Ok(());
    };
    let stmt = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&stmt, &[&channel, &high.to_string()]).await?;
    Ok(())
}

/// Writes one staged batch inside `tx`: `Ok(Err(Fenced))` when a fence refuses it (it
/// wrote nothing, and the transaction can go on), `Err` when the database failed (the
/// transaction is then aborted).
async fn apply_in(
    tx: &deadpool_postgres::Transaction<'_>,
    staged: &Staged,
) -> Result<Result<Vec<Event>, StoreError>, StoreError> {
    let Staged {
        ops,
        fences,
        events,
    } = staged;
    let mut events = events.clone();
    if !fences.is_empty() {
        let stmt = tx
            .prepare_cached("SELECT epoch FROM epochs WHERE key = $1 FOR UPDATE")
            .await?;
        for (key, epoch) in fences {
            let newest = tx
                .query_opt(&stmt, &[&key.storage_key()])
                .await?
                .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0));
            if newest != epoch.0 {
                return Ok(Err(StoreError::Fenced {
                    key: key.clone(),
                    epoch: epoch.0,
                    newest,
                }));
            }
        }
    }
    if ops.is_empty() && events.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    for op in ops {
        match op {
            Op::PutConnection {
                key,
                pen,
                status,
                record,
            } => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO connections (key, pen_name, status, record) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET \
                         pen_name = EXCLUDED.pen_name, status = EXCLUDED.status, \
                         record = EXCLUDED.record",
                    )
                    .await?;
                tx.execute(&stmt, &[key, pen, status, record]).await?;
            }
            Op::DeleteConnection(key) => {
                let stmt = tx
                    .prepare_cached("DELETE FROM connections WHERE key = $1")
                    .await?;
                tx.execute(&stmt, &[key]).await?;
            }
            Op::PutGrant { key, pen, sealed } => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO grants (key, pen_name, sealed) VALUES ($1, $2, $3) \
                         ON CONFLICT (key) DO UPDATE SET pen_name = EXCLUDED.pen_name, \
                         sealed = EXCLUDED.sealed",
                    )
                    .await?;
                tx.execute(&stmt, &[key, pen, sealed]).await?;
            }
            Op::DeleteGrant(key) => {
                let stmt = tx
                    .prepare_cached("DELETE FROM grants WHERE key = $1")
                    .await?;
                tx.execute(&stmt, &[key]).await?;
            }
            Op::PutPost {
                id,
                connection,
                pen,
                state,
                queued,
                due_at,
                updated_at,
                body,
                status,
            } => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO posts (id, connection, pen_name, state, queued, due_at, \
                         updated_at, body, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (id) DO UPDATE SET connection = EXCLUDED.connection, \
                         pen_name = EXCLUDED.pen_name, state = EXCLUDED.state, \
                         queued = EXCLUDED.queued, due_at = EXCLUDED.due_at, \
                         updated_at = EXCLUDED.updated_at, \
                         body = COALESCE(EXCLUDED.body, posts.body), status = EXCLUDED.status",
                    )
                    .await?;
                tx.execute(
                    &stmt,
                    &[
                        id, connection, pen, state, queued, due_at, updated_at, body, status,
                    ],
                )
                .await?;
            }
            Op::DeletePost(id) => {
                let stmt = tx.prepare_cached("DELETE FROM posts WHERE id = $1").await?;
                tx.execute(&stmt, &[id]).await?;
            }
            Op::PutOAuthState {
                state,
                pen,
                expires_at,
                sealed,
            } => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO oauth_states (state, pen_name, expires_at, used, sealed) \
                         VALUES ($1, $2, $3, false, $4) ON CONFLICT (state) DO UPDATE SET \
                         pen_name = EXCLUDED.pen_name, expires_at = EXCLUDED.expires_at, \
                         used = false, sealed = EXCLUDED.sealed",
                    )
                    .await?;
                tx.execute(&stmt, &[state, pen, expires_at, sealed]).await?;
            }
            Op::PutIdempotent {
                pen,
                key,
                created_at,
                record,
            } => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO idempotency (pen_name, key, created_at, record) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (pen_name, key) DO UPDATE SET \
                         created_at = EXCLUDED.created_at, record = EXCLUDED.record",
                    )
                    .await?;
                tx.execute(&stmt, &[&pen.as_str(), key, created_at, record])
                    .await?;
            }
        }
    }
    if !events.is_empty() {
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let stmt = tx
            .prepare_cached("UPDATE event_counter SET high = high + $1 RETURNING high")
            .await?;
        let high: i64 = tx.query_one(&stmt, &[&n]).await?.get(0);
        let mut seqs = Vec::with_capacity(events.len());
        let mut connections = Vec::with_capacity(events.len());
        let mut pens = Vec::with_capacity(events.len());
        let mut posts = Vec::with_capacity(events.len());
        let mut ats = Vec::with_capacity(events.len());
        let mut records = Vec::with_capacity(events.len());
        for (seq, e) in (high - n + 1..).zip(events.iter_mut()) {
            e.seq = u64::try_from(seq).unwrap_or(0);
            seqs.push(seq);
            connections.push(e.connection.storage_key());
            pens.push(e.connection.pen_name.as_str().to_owned());
            posts.push(e.post.map(|p| p.as_bytes().to_vec()));
            ats.push(e.at.unix_millis());
            records.push(encoded(&*e)?);
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO events (seq, connection, pen_name, post, at, record) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::bytea[], \
                 $5::bigint[], $6::bytea[])",
            )
            .await?;
        tx.execute(&stmt, &[&seqs, &connections, &pens, &posts, &ats, &records])
            .await?;
    }
    Ok(Ok(events))
}
