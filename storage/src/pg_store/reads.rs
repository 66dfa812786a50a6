//! Reads, and the integrity check. Every record that does not decode is named in the
//! unreadable list on the way; a post's row names its owner, so an unreadable post is
//! always named with its connection.

use std::collections::HashSet;

use tokio_postgres::Row;

use crate::codec::{self, KeyDisplay};
use crate::port::{ConnectionCounts, EventPage, IntegrityReport, Loaded, PostCounts};
use crate::sled_store::layout::{idempotency_key, missing};
use crate::{
    Connection, ConnectionKey, Event, Grant, IdempotentRequest, PenName, Post, PostBody, PostId,
    PostStatus, StoreError,
};

use super::{describe_unreadable, PgStore};

/// Whose posts a listing reads.
pub(super) enum PostsOf<'a> {
    Connection(&'a ConnectionKey),
    Pen(&'a PenName),
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Whether an error is about one record (it does not decode or open), rather than the
/// store as a whole.
fn is_record_problem(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Codec(_)
            | StoreError::Vault(
                crate::VaultError::Unopenable { .. } | crate::VaultError::UnknownKey { .. }
            )
    )
}

fn problem_of(e: &StoreError) -> String {
    match e {
        StoreError::Codec(c) => c.problem.to_string(),
        other => other.to_string(),
    }
}

impl PgStore {
    pub(super) async fn connection_read(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<Connection>, StoreError> {
        let k = key.storage_key();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT record FROM connections WHERE key = $1")
            .await?;
        match client.query_opt(&stmt, &[&k]).await? {
            Some(row) => Ok(Some(self.decode(
                "connections",
                &k,
                &row.get::<_, Vec<u8>>(0),
                None,
            )?)),
            None => Ok(None),
        }
    }

    pub(super) async fn connections_where(
        &self,
        pen: Option<&PenName>,
    ) -> Result<Loaded<Connection>, StoreError> {
        let client = self.client().await?;
        let rows = match pen {
            Some(pen) => {
                let stmt = client
                    .prepare_cached(
                        "SELECT key, record FROM connections WHERE pen_name = $1 ORDER BY key",
                    )
                    .await?;
                client.query(&stmt, &[&pen.as_str()]).await?
            }
            None => {
                let stmt = client
                    .prepare_cached("SELECT key, record FROM connections ORDER BY key")
                    .await?;
                client.query(&stmt, &[]).await?
            }
        };
        let mut loaded = Loaded::default();
        for row in rows {
            let key: Vec<u8> = row.get(0);
            let bytes: Vec<u8> = row.get(1);
            match self.decode::<Connection>("connections", &key, &bytes, None) {
                Ok(c) => loaded.items.push(c),
                Err(e) => loaded.unreadable.push(describe_unreadable(
                    "connections",
                    "connection",
                    &key,
                    &problem_of(&e),
                    None,
                )),
            }
        }
        Ok(loaded)
    }

    /// Counted from the connections' status column (an index-only count, not a stored
    /// summary: nothing to keep current, and no row every commit would contend for).
    pub(super) async fn connection_counts_read(&self) -> Result<ConnectionCounts, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT status, count(*) FROM connections WHERE status IS NOT NULL GROUP BY status",
            )
            .await?;
        let mut counts = ConnectionCounts::default();
        for row in client.query(&stmt, &[]).await? {
            let status: String = row.get(0);
            let n = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            match status.as_str() {
                "active" => counts.active = n,
                "expired" => counts.expired = n,
                "error" => counts.error = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    pub(super) async fn grant_read(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<Grant>, StoreError> {
        let k = key.storage_key();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT sealed FROM grants WHERE key = $1")
            .await?;
        match client.query_opt(&stmt, &[&k]).await? {
            Some(row) => Ok(Some(self.open_grant(&k, &row.get::<_, Vec<u8>>(0))?)),
            None => Ok(None),
        }
    }

    pub(super) async fn post_read(&self, id: PostId) -> Result<Option<Post>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT connection, body, status FROM posts WHERE id = $1")
            .await?;
        match client
            .query_opt(&stmt, &[&id.as_bytes().as_slice()])
            .await?
        {
            Some(row) => self.post_of_row(id, &row, 0).map(Some),
            None => Ok(None),
        }
    }

    /// A post from a row's `connection, body, status` columns, starting at column `at`.
    fn post_of_row(&self, id: PostId, row: &Row, at: usize) -> Result<Post, StoreError> {
        let key = id.as_bytes();
        let owner = ConnectionKey::from_storage_key(&row.get::<_, Vec<u8>>(at));
        let body: Option<Vec<u8>> = row.get(at + 1);
        let status: Option<Vec<u8>> = row.get(at + 2);
        let status = match status {
            Some(bytes) => self.decode::<PostStatus>("post_status", key, &bytes, owner.as_ref())?,
            None => {
                return Err(self.missing("post_status", "post_status", key, "its status", owner))
            }
        };
        let body = match body {
            Some(bytes) => self.decode::<PostBody>("post_bodies", key, &bytes, owner.as_ref())?,
            None => return Err(self.missing("post_bodies", "post_body", key, "its body", owner)),
        };
        Ok(Post::from_parts(body, status))
    }

    fn missing(
        &self,
        tree: &'static str,
        kind: &str,
        key: &[u8],
        what: &str,
        owner: Option<ConnectionKey>,
    ) -> StoreError {
        let problem = missing(what);
        self.note_unreadable(tree, kind, key, &problem.to_string(), owner.as_ref());
        StoreError::Codec(codec::CodecError {
            tree,
            key: KeyDisplay(key.to_vec()),
            problem,
        })
    }

    pub(super) async fn posts_where(&self, of: PostsOf<'_>) -> Result<Loaded<Post>, StoreError> {
        let client = self.client().await?;
        let rows = match of {
            PostsOf::Connection(key) => {
                let stmt = client
                    .prepare_cached(
                        "SELECT id, connection, body, status FROM posts WHERE connection = $1 \
                         ORDER BY id",
                    )
                    .await?;
                client.query(&stmt, &[&key.storage_key()]).await?
            }
            PostsOf::Pen(pen) => {
                let stmt = client
                    .prepare_cached(
                        "SELECT id, connection, body, status FROM posts WHERE pen_name = $1 \
                         ORDER BY connection, id",
                    )
                    .await?;
                client.query(&stmt, &[&pen.as_str()]).await?
            }
        };
        let mut loaded = Loaded::default();
        for row in rows {
            let Some(id) = post_id(&row.get::<_, Vec<u8>>(0)) else {
                continue;
            };
            match self.post_of_row(id, &row, 1) {
                Ok(p) => loaded.items.push(p),
                Err(e) if is_record_problem(&e) => {
                    let owner = ConnectionKey::from_storage_key(&row.get::<_, Vec<u8>>(1));
                    let mut record = describe_unreadable(
                        "post_status",
                        "post",
                        id.as_bytes(),
                        &problem_of(&e),
                        owner.as_ref(),
                    );
                    record.key = format!("post {id}");
                    loaded.unreadable.push(record);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(loaded)
    }

    pub(super) async fn queued_read(&self) -> Result<Loaded<PostStatus>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id, connection, status FROM posts WHERE queued ORDER BY id")
            .await?;
        let mut loaded = Loaded::default();
        for row in client.query(&stmt, &[]).await? {
            let key: Vec<u8> = row.get(0);
            let owner = ConnectionKey::from_storage_key(&row.get::<_, Vec<u8>>(1));
            let decoded = match row.get::<_, Option<Vec<u8>>>(2) {
                Some(bytes) => {
                    self.decode::<PostStatus>("post_status", &key, &bytes, owner.as_ref())
                }
                None => Err(self.missing(
                    "post_status",
                    "post_status",
                    &key,
                    "its status",
                    owner.clone(),
                )),
            };
            match decoded {
                Ok(s) => loaded.items.push(s),
                Err(e) => loaded.unreadable.push(describe_unreadable(
                    "post_status",
                    "post_status",
                    &key,
                    &problem_of(&e),
                    owner.as_ref(),
                )),
            }
        }
        Ok(loaded)
    }

    /// Counted from the posts' state column, through the index on (connection, state).
    pub(super) async fn post_counts_read(
        &self,
        key: &ConnectionKey,
    ) -> Result<PostCounts, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT state, count(*) FROM posts WHERE connection = $1 GROUP BY state",
            )
            .await?;
        let mut counts = PostCounts::default();
        for row in client.query(&stmt, &[&key.storage_key()]).await? {
            let state: String = row.get(0);
            let n = u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX);
            let slot = match state.as_str() {
                "scheduled" => &mut counts.scheduled,
                "paused" => &mut counts.paused,
                "publishing" => &mut counts.publishing,
                "published" => &mut counts.published,
                "failed" => &mut counts.failed,
                "unconfirmed" => &mut counts.unconfirmed,
                "held" => &mut counts.held,
                "cancelled" => &mut counts.cancelled,
                _ => continue,
            };
            *slot = n;
        }
        Ok(counts)
    }

    /// Events that do not decode are named and left out, so one bad record does not end
    /// a stream for good at its number.
    fn events_of_rows(&self, rows: Vec<Row>) -> Vec<Event> {
        rows.iter()
            .filter_map(|row| {
                let seq: i64 = row.get(0);
                let bytes: Vec<u8> = row.get(1);
                self.decode::<Event>("events", &seq.to_be_bytes(), &bytes, None)
                    .inspect_err(|error| {
                        tracing::error!(%error, "an unreadable record was left out of a listing; it is named in the unreadable list");
                    })
                    .ok()
            })
            .collect()
    }

    pub(super) async fn events_after_read(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT seq, record FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .await?;
        let rows = client
            .query(&stmt, &[&to_i64(seq), &limit_of(limit)])
            .await?;
        Ok(self.events_of_rows(rows))
    }

    pub(super) async fn events_of_connection_read(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT seq, record FROM events WHERE connection = $1 AND seq < $2 \
                 ORDER BY seq DESC LIMIT $3",
            )
            .await?;
        let before = page.before.map_or(i64::MAX, to_i64);
        let rows = client
            .query(&stmt, &[&key.storage_key(), &before, &limit_of(page.limit)])
            .await?;
        Ok(self.events_of_rows(rows))
    }

    pub(super) async fn event_read(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT record FROM events WHERE seq = $1")
            .await?;
        match client.query_opt(&stmt, &[&to_i64(seq)]).await? {
            Some(row) => Ok(Some(self.decode(
                "events",
                &to_i64(seq).to_be_bytes(),
                &row.get::<_, Vec<u8>>(0),
                None,
            )?)),
            None => Ok(None),
        }
    }

    pub(super) async fn idempotent_read(
        &self,
        pen: &PenName,
        key: &str,
    ) -> Result<Option<IdempotentRequest>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT record FROM idempotency WHERE pen_name = $1 AND key = $2")
            .await?;
        match client.query_opt(&stmt, &[&pen.as_str(), &key]).await? {
            Some(row) => Ok(Some(self.decode(
                "idempotency",
                &idempotency_key(pen, key),
                &row.get::<_, Vec<u8>>(0),
                None,
            )?)),
            None => Ok(None),
        }
    }

    /// Reads every record, and checks that each agrees with the columns beside it (the
    /// ones the queries select on): its key, connection, state, queue membership.
    pub(super) async fn check_integrity_read(&self) -> Result<IntegrityReport, StoreError> {
        let mut client = self.client().await?;
        // One snapshot for the whole check.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut r = IntegrityReport::default();
        let mut connections = HashSet::new();
        for row in tx
            .query(
                "SELECT key, status, record FROM connections ORDER BY key",
                &[],
            )
            .await?
        {
            let key: Vec<u8> = row.get(0);
            let status: Option<String> = row.get(1);
            r.connections += 1;
            match self.decode::<Connection>("connections", &key, &row.get::<_, Vec<u8>>(2), None) {
                Ok(c) if c.key.storage_key() != key => r.problems.push(format!(
                    "connection under {} claims key {}",
                    KeyDisplay(key.clone()),
                    c.key
                )),
                Ok(c) if status.as_deref() != Some(c.status.label().as_str()) => {
                    r.problems.push(format!(
                        "connection {} is {} but its status column says {status:?}",
                        c.key,
                        c.status.label()
                    ))
                }
                Ok(_) => {}
                Err(e) => r.problems.push(e.to_string()),
            }
            connections.insert(key);
        }
        for row in tx
            .query("SELECT key, sealed FROM grants ORDER BY key", &[])
            .await?
        {
            let key: Vec<u8> = row.get(0);
            r.grants += 1;
            if !connections.contains(&key) {
                r.problems.push(format!(
                    "grant {} has no connection",
                    KeyDisplay(key.clone())
                ));
            }
            if let Err(e) = self.open_grant(&key, &row.get::<_, Vec<u8>>(1)) {
                r.problems.push(e.to_string());
            }
        }
        for row in tx
            .query(
                "SELECT id, state, queued, connection, body, status FROM posts ORDER BY id",
                &[],
            )
            .await?
        {
            r.posts += 1;
            let key: Vec<u8> = row.get(0);
            let Some(id) = post_id(&key) else {
                r.problems
                    .push(format!("malformed post id {}", KeyDisplay(key.clone())));
                continue;
            };
            let state: String = row.get(1);
            let queued: bool = row.get(2);
            let connection: Vec<u8> = row.get(3);
            match self.post_of_row(id, &row, 3) {
                Ok(p) => {
                    if p.connection.storage_key() != connection {
                        r.problems.push(format!(
                            "post {id} is stored under another connection than its own ({})",
                            p.connection
                        ));
                    }
                    if p.state.label().as_str() != state || p.state.is_queued() != queued {
                        r.problems.push(format!(
                            "post {id} is {} but its columns say {state} (queued: {queued})",
                            p.state.label()
                        ));
                    }
                }
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        for row in tx
            .query(
                "SELECT seq, connection, record FROM events ORDER BY seq",
                &[],
            )
            .await?
        {
            r.events += 1;
            let seq: i64 = row.get(0);
            let connection: Vec<u8> = row.get(1);
            match self.decode::<Event>(
                "events",
                &seq.to_be_bytes(),
                &row.get::<_, Vec<u8>>(2),
                None,
            ) {
                Ok(e) => {
                    if to_i64(e.seq) != seq || e.connection.storage_key() != connection {
                        r.problems.push(format!(
                            "event {seq} says it is event {} of {}",
                            e.seq, e.connection
                        ));
                    }
                }
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        tx.commit().await?;
        Ok(r)
    }
}

pub(super) fn post_id(key: &[u8]) -> Option<PostId> {
    Some(PostId::from_bytes(<[u8; 16]>::try_from(key).ok()?))
}
