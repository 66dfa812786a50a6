//! Restore: an archive ([`crate::archive`]) — written by the sled backend or by this one —
//! into a database that holds no data yet, every record as stored.
//!
//! The archive is read whole and checked first (nothing is written from an archive whose
//! end does not check), then copied in one transaction: a restore cut short leaves the
//! database as empty as it was. Records keep their bytes — grants and pending
//! authorizations stay sealed, so the store must be opened with the master key the
//! archive's data was sealed with, and each grant is opened once on the way in to prove
//! it — and the columns beside them are taken from the records, as a commit takes them.
//! A sled archive's event groups become one row per event, numbers kept; its derived
//! trees (queue membership, per-connection indexes, counts) are not copied: this backend
//! counts from its columns. The event counter continues after the highest number the
//! source handed out.
//!
//! Refused, with nothing written: a database holding any record or a used event counter;
//! a sled archive with an erasure in progress, a master key rotation in progress, or
//! quarantined records (each is finished or looked at on sled first); a record that does
//! not decode.

use std::io::{BufReader, Read};
use std::path::Path;

use crate::archive::{self, ArchiveError, ArchiveReader, ArchiveSummary};
use crate::sled_store::layout::{self, EventGroup, OAuthStateRecord};
use crate::vault::MasterKeys;
use crate::{
    codec, Connection, ConnectionKey, IdempotentRequest, PenName, PendingAuthorization, PostStatus,
    StoreError,
};

use super::{grant_aad, migrate, oauth_aad, PgConfig, PgError, PgStore};

/// The sled layout format whose archives this build restores.
const SLED_FORMAT: u32 = 2;
/// The `meta` record a sled archive carries its highest event number in.
const SEQ_HIGH: &[u8] = b"seq_high";
/// The `meta` name of the highest event number a purge removed.
const PURGED_THROUGH: &str = "events_purged_through";

impl PgStore {
    /// Copies the archive at `archive` into the database `config` names, which must hold
    /// no data (a schema of this release, or none, is fine): the schema is applied and
    /// the master key recorded or checked as at any open, then every record is copied in
    /// one transaction. Open the store afterwards as usual: its event feed starts after
    /// the restored events.
    ///
    /// Refused with nothing copied: a damaged archive, one of a store format this build
    /// does not read, a target that holds data ([`PgError::RestoreTargetNotEmpty`]), and
    /// what [`PgError::RestoreRefused`] names.
    pub async fn restore(
        config: &PgConfig,
        keys: &MasterKeys,
        archive: &Path,
    ) -> Result<ArchiveSummary, StoreError> {
        let open = || {
            std::fs::File::open(archive)
                .map(BufReader::new)
                .map_err(|source| StoreError::DataDir {
                    path: archive.to_path_buf(),
                    source,
                })
        };
        let summary = archive::verify(open()?)?;
        let kind = Source::of(&summary.header)?;
        let store = PgStore::open_with_keys(config, keys).await?;
        let restored = store.restore_from(kind, open()?).await;
        drop(store);
        let high = restored?;
        tracing::info!(
            records = summary.records,
            events_through = high,
            "store: archive restored into PostgreSQL"
        );
        Ok(summary)
    }

    /// The copy, in one transaction; returns the event counter it left.
    async fn restore_from(&self, source: Source, input: impl Read) -> Result<i64, StoreError> {
        let mut reader = ArchiveReader::open(input)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Nothing else writes while the copy runs: a node started meanwhile waits.
        tx.batch_execute(
            "LOCK TABLE connections, grants, posts, events, event_counter, epochs, \
             oauth_states, idempotency, meta IN EXCLUSIVE MODE",
        )
        .await?;
        check_empty(&tx).await?;
        tx.batch_execute(
            "CREATE TEMPORARY TABLE restore_bodies (id bytea PRIMARY KEY, body bytea NOT NULL) \
             ON COMMIT DROP",
        )
        .await?;
        let mut copy = Copy::default();
        let mut rows = Rows::default();
        while let Some(record) = reader.next_record()? {
            self.copy_record(
                source,
                &record.tree,
                &record.key,
                &record.value,
                &mut copy,
                &mut rows,
            )?;
            if rows.len() >= ROWS_PER_STATEMENT {
                rows.flush(&tx).await?;
            }
        }
        rows.flush(&tx).await?;
        let bodies_placed = tx
            .execute(
                "UPDATE posts SET body = b.body FROM restore_bodies b WHERE posts.id = b.id",
                &[],
            )
            .await?;
        if bodies_placed != copy.bodies {
            return Err(refused(format!(
                "{} post bodies have no post status beside them",
                copy.bodies.saturating_sub(bodies_placed)
            )));
        }
        let high = copy.seq_high.max(copy.max_seq).max(copy.purged_through);
        tx.execute("UPDATE event_counter SET high = $1", &[&high])
            .await?;
        if copy.purged_through > 0 {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2)",
                &[
                    &PURGED_THROUGH,
                    &copy.purged_through.to_be_bytes().as_slice(),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(high)
    }

    /// One archive record into the rows to insert (or into what the copy keeps for its
    /// end).
    fn copy_record(
        &self,
        source: Source,
        tree: &str,
        key: &[u8],
        value: &[u8],
        copy: &mut Copy,
        rows: &mut Rows,
    ) -> Result<(), StoreError> {
        match tree {
            "connections" => {
                let c: Connection = codec::decode("connections", key, value)?;
                rows.connections.push((
                    key.to_vec(),
                    c.key.pen_name.as_str().to_owned(),
                    c.status.label().as_str().to_owned(),
                    value.to_vec(),
                ));
            }
            "grants" => {
                let owner = owner_of(key)?;
                // Proves the key: a grant this store cannot open is refused here, not
                // found later by the connection that needs it.
                self.inner
                    .vault
                    .open(&grant_aad(key), value, || format!("grant of {owner}"))?;
                rows.grants.push((
                    key.to_vec(),
                    owner.pen_name.as_str().to_owned(),
                    value.to_vec(),
                ));
            }
            "post_bodies" => {
                rows.bodies.push((key.to_vec(), value.to_vec()));
                copy.bodies += 1;
            }
            "post_status" => {
                let s: PostStatus = codec::decode("post_status", key, value)?;
                rows.posts.push(PostRow {
                    id: key.to_vec(),
                    connection: s.connection.storage_key(),
                    pen: s.connection.pen_name.as_str().to_owned(),
                    state: s.state.label().as_str().to_owned(),
                    queued: s.state.is_queued(),
                    due_at: s.due_at.unix_millis(),
                    updated_at: s.updated_at.unix_millis(),
                    status: value.to_vec(),
                });
            }
            "events" => {
                let events = match source {
                    Source::Sled => codec::decode::<EventGroup>("events", key, value)?.events,
                    Source::Postgres => vec![codec::decode("events", key, value)?],
                };
                for e in events {
                    let seq = i64::try_from(e.seq)
                        .map_err(|_| refused(format!("event number {} is too large", e.seq)))?;
                    // A sled group holds several events: each becomes its own record.
                    let record = match source {
                        Source::Sled => crate::batch::encoded(&e)?,
                        Source::Postgres => value.to_vec(),
                    };
                    rows.events.push(EventRow {
                        seq,
                        connection: e.connection.storage_key(),
                        pen: e.connection.pen_name.as_str().to_owned(),
                        post: e.post.map(|p| p.as_bytes().to_vec()),
                        at: e.at.unix_millis(),
                        record,
                    });
                    copy.max_seq = copy.max_seq.max(seq);
                }
            }
            "oauth_states" => {
                let state = std::str::from_utf8(key)
                    .map_err(|_| refused("an OAuth state that is not text".into()))?;
                let r: OAuthStateRecord = codec::decode("oauth_states", key, value)?;
                // The pen name is kept beside the sealed value, as a commit keeps it; a
                // used state holds nothing any more.
                let pen = if r.used || r.sealed.is_empty() {
                    None
                } else {
                    let plain = self
                        .inner
                        .vault
                        .open(&oauth_aad(state), &r.sealed, || "an OAuth state".into())?;
                    codec::decode::<PendingAuthorization>("oauth_states", key, &plain)
                        .ok()
                        .map(|p| p.connection.pen_name.as_str().to_owned())
                };
                rows.oauth_states.push((
                    state.to_owned(),
                    pen,
                    r.expires_at.unix_millis(),
                    r.used,
                    r.sealed,
                ));
            }
            "idempotency" => {
                let at = key
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| refused("an idempotency record without its pen name".into()))?;
                let pen = std::str::from_utf8(&key[..at])
                    .ok()
                    .and_then(|p| PenName::parse(p).ok())
                    .ok_or_else(|| refused("an idempotency record of no pen name".into()))?;
                let request_key = std::str::from_utf8(&key[at + 1..])
                    .map_err(|_| refused("an Idempotency-Key that is not text".into()))?;
                let r: IdempotentRequest = codec::decode("idempotency", key, value)?;
                rows.idempotency.push((
                    pen.as_str().to_owned(),
                    request_key.to_owned(),
                    r.created_at.unix_millis(),
                    value.to_vec(),
                ));
            }
            "epochs" => rows.epochs.push((key.to_vec(), number(value)?)),
            "meta" => copy_meta(key, value, copy)?,
            // Derived from the records above: this backend counts from its columns.
            "posts_queued" | "posts_by_connection" | "post_counts" | "events_by_connection"
                if source == Source::Sled => {}
            "quarantine" => {
                return Err(refused(
                    "the sled store holds quarantined records (records an upgrade could not \
                     read, listed by /v1/supervisor): look at them and remove them on sled first"
                        .into(),
                ))
            }
            other => return Err(ArchiveError::UnknownTree(other.to_string()).into()),
        }
        Ok(())
    }
}

/// Rows inserted per statement: one round trip (arrays through `unnest`) per this many,
/// instead of one per row.
const ROWS_PER_STATEMENT: usize = 1000;

struct PostRow {
    id: Vec<u8>,
    connection: Vec<u8>,
    pen: String,
    state: String,
    queued: bool,
    due_at: i64,
    updated_at: i64,
    status: Vec<u8>,
}

struct EventRow {
    seq: i64,
    connection: Vec<u8>,
    pen: String,
    post: Option<Vec<u8>>,
    at: i64,
    record: Vec<u8>,
}

/// An OAuth state: the state, its pen name, expiry, used flag, sealed authorization.
type OAuthStateRow = (String, Option<String>, i64, bool, Vec<u8>);

/// The rows read and not yet inserted, per table.
#[derive(Default)]
struct Rows {
    connections: Vec<(Vec<u8>, String, String, Vec<u8>)>,
    grants: Vec<(Vec<u8>, String, Vec<u8>)>,
    bodies: Vec<(Vec<u8>, Vec<u8>)>,
    posts: Vec<PostRow>,
    events: Vec<EventRow>,
    oauth_states: Vec<OAuthStateRow>,
    idempotency: Vec<(String, String, i64, Vec<u8>)>,
    epochs: Vec<(Vec<u8>, i64)>,
}

impl Rows {
    fn len(&self) -> usize {
        self.connections.len()
            + self.grants.len()
            + self.bodies.len()
            + self.posts.len()
            + self.events.len()
            + self.oauth_states.len()
            + self.idempotency.len()
            + self.epochs.len()
    }

    /// Inserts every row held, a statement per table, and empties the lists.
    async fn flush(&mut self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
        let rows = std::mem::take(self);
        if !rows.connections.is_empty() {
            let (keys, pens, statuses, records) = unzip4(rows.connections);
            tx.execute(
                "INSERT INTO connections (key, pen_name, status, record) \
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bytea[])",
                &[&keys, &pens, &statuses, &records],
            )
            .await?;
        }
        if !rows.grants.is_empty() {
            let (keys, pens, sealed): (Vec<_>, Vec<_>, Vec<_>) = unzip3(rows.grants);
            tx.execute(
                "INSERT INTO grants (key, pen_name, sealed) \
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[])",
                &[&keys, &pens, &sealed],
            )
            .await?;
        }
        if !rows.bodies.is_empty() {
            let (ids, bodies): (Vec<_>, Vec<_>) = rows.bodies.into_iter().unzip();
            tx.execute(
                "INSERT INTO restore_bodies (id, body) SELECT * FROM unnest($1::bytea[], $2::bytea[])",
                &[&ids, &bodies],
            )
            .await?;
        }
        if !rows.posts.is_empty() {
            let p = rows.posts;
            let ids: Vec<&Vec<u8>> = p.iter().map(|r| &r.id).collect();
            let connections: Vec<&Vec<u8>> = p.iter().map(|r| &r.connection).collect();
            let pens: Vec<&str> = p.iter().map(|r| r.pen.as_str()).collect();
            let states: Vec<&str> = p.iter().map(|r| r.state.as_str()).collect();
            let queued: Vec<bool> = p.iter().map(|r| r.queued).collect();
            let due: Vec<i64> = p.iter().map(|r| r.due_at).collect();
            let updated: Vec<i64> = p.iter().map(|r| r.updated_at).collect();
            let statuses: Vec<&Vec<u8>> = p.iter().map(|r| &r.status).collect();
            tx.execute(
                "INSERT INTO posts (id, connection, pen_name, state, queued, due_at, updated_at, \
                 status) SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::text[], \
                 $5::boolean[], $6::bigint[], $7::bigint[], $8::bytea[])",
                &[
                    &ids,
                    &connections,
                    &pens,
                    &states,
                    &queued,
                    &due,
                    &updated,
                    &statuses,
                ],
            )
            .await?;
        }
        if !rows.events.is_empty() {
            let e = rows.events;
            let seqs: Vec<i64> = e.iter().map(|r| r.seq).collect();
            let connections: Vec<&Vec<u8>> = e.iter().map(|r| &r.connection).collect();
            let pens: Vec<&str> = e.iter().map(|r| r.pen.as_str()).collect();
            let posts: Vec<Option<&Vec<u8>>> = e.iter().map(|r| r.post.as_ref()).collect();
            let ats: Vec<i64> = e.iter().map(|r| r.at).collect();
            let records: Vec<&Vec<u8>> = e.iter().map(|r| &r.record).collect();
            tx.execute(
                "INSERT INTO events (seq, connection, pen_name, post, at, record) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::bytea[], \
                 $5::bigint[], $6::bytea[])",
                &[&seqs, &connections, &pens, &posts, &ats, &records],
            )
            .await?;
        }
        if !rows.oauth_states.is_empty() {
            let o = rows.oauth_states;
            let states: Vec<&str> = o.iter().map(|r| r.0.as_str()).collect();
            let pens: Vec<Option<&str>> = o.iter().map(|r| r.1.as_deref()).collect();
            let expires: Vec<i64> = o.iter().map(|r| r.2).collect();
            let used: Vec<bool> = o.iter().map(|r| r.3).collect();
            let sealed: Vec<&Vec<u8>> = o.iter().map(|r| &r.4).collect();
            tx.execute(
                "INSERT INTO oauth_states (state, pen_name, expires_at, used, sealed) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[], \
                 $5::bytea[])",
                &[&states, &pens, &expires, &used, &sealed],
            )
            .await?;
        }
        if !rows.idempotency.is_empty() {
            let (pens, keys, created, records) = unzip4(rows.idempotency);
            tx.execute(
                "INSERT INTO idempotency (pen_name, key, created_at, record) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[])",
                &[&pens, &keys, &created, &records],
            )
            .await?;
        }
        if !rows.epochs.is_empty() {
            let (keys, epochs): (Vec<_>, Vec<_>) = rows.epochs.into_iter().unzip();
            tx.execute(
                "INSERT INTO epochs (key, epoch) SELECT * FROM unnest($1::bytea[], $2::bigint[])",
                &[&keys, &epochs],
            )
            .await?;
        }
        Ok(())
    }
}

fn unzip3<A, B, C>(rows: Vec<(A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut out = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for (a, b, c) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
    }
    out
}

fn unzip4<A, B, C, D>(rows: Vec<(A, B, C, D)>) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let mut out = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for (a, b, c, d) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
        out.3.push(d);
    }
    out
}

/// Which backend wrote the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Sled,
    Postgres,
}

impl Source {
    fn of(header: &archive::ArchiveHeader) -> Result<Source, ArchiveError> {
        let (source, supported) = match header.backend.as_str() {
            "sled" => (Source::Sled, SLED_FORMAT),
            "postgres" => (Source::Postgres, migrate::SCHEMA_VERSION as u32),
            other => {
                return Err(ArchiveError::OtherBackend {
                    found: other.to_string(),
                    expected: "sled or postgres".into(),
                })
            }
        };
        if header.store_format > supported {
            return Err(ArchiveError::NewerStoreFormat {
                found: header.store_format,
                supported,
            });
        }
        if header.store_format < supported {
            return Err(ArchiveError::OlderStoreFormat {
                found: header.store_format,
                supported,
            });
        }
        Ok(source)
    }
}

/// What the copy has seen that is written at its end.
#[derive(Default)]
struct Copy {
    bodies: u64,
    max_seq: i64,
    seq_high: i64,
    purged_through: i64,
}

fn copy_meta(name: &[u8], value: &[u8], copy: &mut Copy) -> Result<(), StoreError> {
    match name {
        SEQ_HIGH => copy.seq_high = number(value)?,
        n if n == PURGED_THROUGH.as_bytes() => copy.purged_through = number(value)?,
        // The target holds its own check value, checked against the same key at open.
        layout::META_KEY_CHECK | layout::META_FORMAT | layout::META_CONNECTION_COUNTS => {}
        layout::META_KEY_ROTATION => {
            return Err(refused(
                "a master key rotation is in progress in the sled store: open it once on sled \
                 with the new and the previous keys so that it finishes, then copy it"
                    .into(),
            ))
        }
        n if n.starts_with(layout::META_ERASING) => {
            return Err(refused(
                "an erasure of a pen name is in progress in the sled store: open it once on \
                 sled so that it finishes, then copy it"
                    .into(),
            ))
        }
        other => {
            return Err(refused(format!(
                "the archive holds a meta record this release does not know ({})",
                String::from_utf8_lossy(other)
            )))
        }
    }
    Ok(())
}

/// An 8-byte big-endian number, as the archives store counters.
fn number(value: &[u8]) -> Result<i64, StoreError> {
    <[u8; 8]>::try_from(value)
        .ok()
        .and_then(|b| i64::try_from(u64::from_be_bytes(b)).ok())
        .ok_or_else(|| refused("a counter that is not an 8-byte number".into()))
}

fn owner_of(key: &[u8]) -> Result<ConnectionKey, StoreError> {
    ConnectionKey::from_storage_key(key)
        .ok_or_else(|| refused("a grant whose key names no connection".into()))
}

fn refused(detail: String) -> StoreError {
    StoreError::Postgres(PgError::RestoreRefused(detail))
}

/// The target must hold nothing: a restore never mixes with data.
async fn check_empty(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let row = tx
        .query_one(
            "SELECT (SELECT count(*) FROM connections), (SELECT count(*) FROM grants), \
             (SELECT count(*) FROM posts), (SELECT count(*) FROM events), \
             (SELECT count(*) FROM oauth_states), (SELECT count(*) FROM idempotency), \
             (SELECT count(*) FROM epochs), (SELECT high FROM event_counter)",
            &[],
        )
        .await?;
    let names = [
        "connections",
        "grants",
        "posts",
        "events",
        "OAuth states",
        "idempotency records",
        "connection claims",
        "event numbers handed out",
    ];
    let held: Vec<String> = names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let n: i64 = row.get(i);
            (n > 0).then(|| format!("{n} {name}"))
        })
        .collect();
    if held.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Postgres(PgError::RestoreTargetNotEmpty {
            holds: held.join(", "),
        }))
    }
}
