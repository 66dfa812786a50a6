//! What reads before it writes (OAuth states, idempotency records), retention, erasure,
//! and backup. Each purge batch is a transaction of its own, so a purge never holds
//! commits back for long; an erasure is one transaction; a backup reads one
//! `REPEATABLE READ` snapshot while commits go on.

use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::archive::{ArchiveHeader, ArchiveWriter};
use crate::codec;
use crate::port::{BackupSummary, ErasedCounts};
use crate::sled_store::layout::{idempotency_key, OAuthStateRecord};
use crate::{
    IdempotentRequest, PenName, PendingAuthorization, PostState, PostStatus, StateLabel,
    StateLookup, StoreError, Timestamp,
};

use super::{migrate, oauth_aad, reads::post_id, PgStore};

/// Events removed per batch.
const EVENTS_PER_BATCH: i64 = 4096;
/// Idempotency records removed per batch.
const RECORDS_PER_BATCH: i64 = 1024;
/// Posts removed per batch.
const POSTS_PER_BATCH: i64 = 256;
/// Rows a backup reads per round trip.
const BACKUP_PAGE: i32 = 1000;

/// The `meta` row holding the highest event number a purge removed (8 bytes, big-endian).
const PURGED_THROUGH: &str = "events_purged_through";

pub(super) async fn purged_through<C: GenericClient>(client: &C) -> Result<u64, StoreError> {
    let row = client
        .query_opt("SELECT value FROM meta WHERE name = $1", &[&PURGED_THROUGH])
        .await?;
    Ok(row
        .and_then(|r| <[u8; 8]>::try_from(r.get::<_, Vec<u8>>(0).as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Whether a post is finished: nothing moves it out of Published or Cancelled.
fn is_finished(state: &PostState) -> bool {
    matches!(state, PostState::Published(_) | PostState::Cancelled)
}

impl PgStore {
    pub(super) async fn take_oauth_state_tx(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<StateLookup, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT expires_at, used, sealed FROM oauth_states WHERE state = $1 FOR UPDATE",
                &[&state],
            )
            .await?
        else {
            return Ok(StateLookup::Unknown);
        };
        let expires_at = Timestamp::from_unix_millis(row.get(0));
        if row.get::<_, bool>(1) {
            return Ok(StateLookup::AlreadyUsed);
        }
        let sealed: Vec<u8> = row.get(2);
        // Of two callbacks with one state, the row lock lets one take it; what it held is
        // not kept once used.
        tx.execute(
            "UPDATE oauth_states SET used = true, sealed = ''::bytea WHERE state = $1",
            &[&state],
        )
        .await?;
        tx.commit().await?;
        if expires_at <= now {
            return Ok(StateLookup::Expired);
        }
        let plain = self
            .inner
            .vault
            .open(&oauth_aad(state), &sealed, || "an OAuth state".to_string())?;
        Ok(StateLookup::Taken(self.decode::<PendingAuthorization>(
            "oauth_states",
            state.as_bytes(),
            &plain,
            None,
        )?))
    }

    pub(super) async fn purge_oauth_states_tx(
        &self,
        now: Timestamp,
        keep: Duration,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let cutoff = now.saturating_sub(keep).unix_millis();
        let removed = client
            .execute(
                "DELETE FROM oauth_states WHERE expires_at <= $1",
                &[&cutoff],
            )
            .await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    pub(super) async fn remember_idempotent_tx(
        &self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> Result<IdempotentRequest, StoreError> {
        let bytes = crate::batch::encoded(record)?;
        let client = self.client().await?;
        // The first writer of a key wins: a second insert waits for the first to commit
        // and then does nothing. A winner removed in between (a purge) is tried again.
        for _ in 0..3 {
            let inserted = client
                .execute(
                    "INSERT INTO idempotency (pen_name, key, created_at, record) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (pen_name, key) DO NOTHING",
                    &[
                        &pen.as_str(),
                        &key,
                        &record.created_at.unix_millis(),
                        &bytes,
                    ],
                )
                .await?;
            if inserted == 1 {
                return Ok(record.clone());
            }
            if let Some(row) = client
                .query_opt(
                    "SELECT record FROM idempotency WHERE pen_name = $1 AND key = $2",
                    &[&pen.as_str(), &key],
                )
                .await?
            {
                return self.decode(
                    "idempotency",
                    &idempotency_key(pen, key),
                    &row.get::<_, Vec<u8>>(0),
                    None,
                );
            }
        }
        Ok(record.clone())
    }

    /// Oldest first, in batches: each batch takes events in sequence order up to the first
    /// one recorded at or after `before`, or the first that cannot be read.
    pub(super) async fn purge_events_before_tx(
        &self,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let rows = tx
                .query(
                    "SELECT seq, record FROM events ORDER BY seq LIMIT $1",
                    &[&EVENTS_PER_BATCH],
                )
                .await?;
            let mut last = None;
            let mut taken = 0usize;
            let mut stopped = false;
            for row in &rows {
                let seq: i64 = row.get(0);
                let bytes: Vec<u8> = row.get(1);
                match self.decode::<crate::Event>("events", &seq.to_be_bytes(), &bytes, None) {
                    Ok(e) if e.at < before => {
                        last = Some(seq);
                        taken += 1;
                    }
                    Ok(_) => {
                        stopped = true;
                        break;
                    }
                    Err(error) => {
                        tracing::error!(%error, "an unreadable event stops the purge of older events");
                        stopped = true;
                        break;
                    }
                }
            }
            let Some(last) = last else {
                return Ok(removed);
            };
            // Numbers are handed out in commit order: no event at or below `last` can
            // commit after this read, so this removes exactly the ones read.
            tx.execute("DELETE FROM events WHERE seq <= $1", &[&last])
                .await?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) \
                 DO UPDATE SET value = greatest(meta.value, EXCLUDED.value)",
                &[&PURGED_THROUGH, &last.to_be_bytes().as_slice()],
            )
            .await?;
            tx.commit().await?;
            removed += taken;
            if stopped || (rows.len() as i64) < EVENTS_PER_BATCH {
                return Ok(removed);
            }
        }
    }

    /// A record that cannot be read is kept (and named in the unreadable list).
    pub(super) async fn purge_idempotency_before_tx(
        &self,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let cutoff = before.unix_millis();
        let mut after = (String::new(), String::new());
        let mut removed = 0;
        loop {
            let rows = client
                .query(
                    "SELECT pen_name, key, record FROM idempotency \
                     WHERE created_at < $1 AND (pen_name, key) > ($2, $3) \
                     ORDER BY pen_name, key LIMIT $4",
                    &[&cutoff, &after.0, &after.1, &RECORDS_PER_BATCH],
                )
                .await?;
            let Some(last) = rows.last() else {
                return Ok(removed);
            };
            after = (last.get(0), last.get(1));
            let (mut pens, mut keys) = (Vec::new(), Vec::new());
            for row in &rows {
                let pen: String = row.get(0);
                let key: String = row.get(1);
                let record_key = match PenName::parse(&pen) {
                    Ok(p) => idempotency_key(&p, &key),
                    Err(_) => [pen.as_bytes(), &[0], key.as_bytes()].concat(),
                };
                let stale = self
                    .decode::<IdempotentRequest>(
                        "idempotency",
                        &record_key,
                        &row.get::<_, Vec<u8>>(2),
                        None,
                    )
                    .is_ok_and(|r| r.created_at < before);
                if stale {
                    pens.push(pen);
                    keys.push(key);
                }
            }
            let n = client
                .execute(
                    "DELETE FROM idempotency i USING unnest($1::text[], $2::text[]) AS d(p, k) \
                     WHERE i.pen_name = d.p AND i.key = d.k AND i.created_at < $3",
                    &[&pens, &keys, &cutoff],
                )
                .await?;
            removed += usize::try_from(n).unwrap_or(usize::MAX);
            if (rows.len() as i64) < RECORDS_PER_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Published and Cancelled posts whose last change is before `before`; a status
    /// that cannot be read is kept.
    pub(super) async fn purge_finished_posts_before_tx(
        &self,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let cutoff = before.unix_millis();
        let finished = [
            StateLabel::Published.as_str(),
            StateLabel::Cancelled.as_str(),
        ];
        let mut after: Vec<u8> = Vec::new();
        let mut removed = 0;
        loop {
            let rows = client
                .query(
                    "SELECT id, connection, status FROM posts \
                     WHERE state = ANY($1) AND updated_at < $2 AND id > $3 \
                     ORDER BY id LIMIT $4",
                    &[&finished.as_slice(), &cutoff, &after, &POSTS_PER_BATCH],
                )
                .await?;
            let Some(last) = rows.last() else {
                return Ok(removed);
            };
            after = last.get(0);
            let mut doomed: Vec<Vec<u8>> = Vec::new();
            for row in &rows {
                let id: Vec<u8> = row.get(0);
                let owner = crate::ConnectionKey::from_storage_key(&row.get::<_, Vec<u8>>(1));
                let Some(bytes) = row.get::<_, Option<Vec<u8>>>(2) else {
                    continue;
                };
                let stale = self
                    .decode::<PostStatus>("post_status", &id, &bytes, owner.as_ref())
                    .is_ok_and(|s| is_finished(&s.state) && s.updated_at < before);
                if stale && post_id(&id).is_some() {
                    doomed.push(id);
                }
            }
            let n = client
                .execute(
                    "DELETE FROM posts WHERE id = ANY($1) AND state = ANY($2) AND updated_at < $3",
                    &[&doomed, &finished.as_slice(), &cutoff],
                )
                .await?;
            removed += usize::try_from(n).unwrap_or(usize::MAX);
            if (rows.len() as i64) < POSTS_PER_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Everything the pen name owns, readable or not, in one transaction. The epochs of
    /// its connections stay, so no epoch is handed out twice.
    pub(super) async fn erase_tx(&self, pen: &PenName) -> Result<ErasedCounts, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let p = pen.as_str();
        let deleted = |sql: &'static str| {
            let tx = &tx;
            async move {
                tx.execute(sql, &[&p])
                    .await
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            }
        };
        let connections = deleted("DELETE FROM connections WHERE pen_name = $1").await?;
        deleted("DELETE FROM grants WHERE pen_name = $1").await?;
        let posts = deleted("DELETE FROM posts WHERE pen_name = $1").await?;
        let events = deleted("DELETE FROM events WHERE pen_name = $1").await?;
        deleted("DELETE FROM idempotency WHERE pen_name = $1").await?;
        deleted("DELETE FROM oauth_states WHERE pen_name = $1").await?;
        tx.commit().await?;
        let unreadable = {
            let mut map = self.unreadable_map();
            let before = map.len();
            map.retain(|_, r| r.pen_name.as_ref() != Some(pen));
            before - map.len()
        };
        Ok(ErasedCounts {
            connections,
            posts,
            events,
            unreadable,
        })
    }

    /// Every record, as stored, from one snapshot: commits go on meanwhile, and each is
    /// wholly in the snapshot or wholly absent.
    pub(super) async fn backup_snapshot(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<BackupSummary, StoreError> {
        let mut archive = ArchiveWriter::new(
            out,
            ArchiveHeader {
                backend: "postgres".to_string(),
                store_format: migrate::SCHEMA_VERSION as u32,
                written_at: Timestamp::now_system(),
            },
        )?;
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        // (tree, key and value as bytea); trees named as the sled layout names them.
        let tables: [(&str, &str); 8] = [
            (
                "meta",
                "SELECT convert_to(name, 'UTF8'), value FROM meta \
                 UNION ALL SELECT convert_to('seq_high', 'UTF8'), int8send(high) \
                 FROM event_counter ORDER BY 1",
            ),
            ("connections", "SELECT key, record FROM connections ORDER BY key"),
            ("grants", "SELECT key, sealed FROM grants ORDER BY key"),
            (
                "post_bodies",
                "SELECT id, body FROM posts WHERE body IS NOT NULL ORDER BY id",
            ),
            (
                "post_status",
                "SELECT id, status FROM posts WHERE status IS NOT NULL ORDER BY id",
            ),
            ("events", "SELECT int8send(seq), record FROM events ORDER BY seq"),
            (
                "idempotency",
                "SELECT convert_to(pen_name, 'UTF8') || '\\x00'::bytea || convert_to(key, 'UTF8'), \
                 record FROM idempotency ORDER BY 1",
            ),
            ("epochs", "SELECT key, int8send(epoch) FROM epochs ORDER BY key"),
        ];
        for (tree, sql) in tables {
            let portal = tx.bind(sql, &[]).await?;
            loop {
                let rows = tx.query_portal(&portal, BACKUP_PAGE).await?;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    archive.record(tree, &row.get::<_, Vec<u8>>(0), &row.get::<_, Vec<u8>>(1))?;
                }
            }
        }
        let portal = tx
            .bind(
                "SELECT state, expires_at, used, sealed FROM oauth_states ORDER BY state",
                &[],
            )
            .await?;
        loop {
            let rows = tx.query_portal(&portal, BACKUP_PAGE).await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let state: String = row.get(0);
                let record = codec::encode(&OAuthStateRecord {
                    expires_at: Timestamp::from_unix_millis(row.get(1)),
                    used: row.get(2),
                    sealed: row.get(3),
                })?;
                archive.record("oauth_states", state.as_bytes(), &record)?;
            }
        }
        tx.commit().await?;
        let (summary, _) = archive.finish()?;
        tracing::info!(
            records = summary.records,
            bytes = summary.bytes,
            "store: backup written"
        );
        Ok(BackupSummary {
            records: summary.records,
            per_tree: summary.per_tree,
            bytes: summary.bytes,
            commits_held: Duration::ZERO,
        })
    }
}
