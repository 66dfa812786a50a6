//! Leases between nodes: [`Ownership`] on PostgreSQL (schema in
//! `migrations/0002_leases.sql`).
//!
//! A connection's lease is its row in `epochs` (owner, epoch, expiry), so acquiring a
//! lease and superseding every earlier epoch are one row update, and the fence every
//! commit checks (`SELECT … FOR UPDATE` on that row) is the lease itself. Every time is
//! the database's `now()`: nodes never compare their own clocks.
//!
//! - **acquire** (one transaction): registers the node; counts the connections, the other
//!   live nodes and the node's live leases; takes up to its fair share of the rows nobody
//!   holds (owner NULL, or expired) with `FOR UPDATE SKIP LOCKED` — two nodes acquiring
//!   at once lock disjoint rows, and a row another node took meanwhile is re-checked
//!   after its lock and left — then, if short, inserts the rows of connections never
//!   claimed (`ON CONFLICT DO NOTHING`: a key another node inserts first is left to it).
//!   Rows are taken in key order, so a node tends to hold whole pen names.
//! - **renew**: one statement renews every lease this handle took for the node — those
//!   whose row still names the node and the same epoch — and its heartbeat; a lease whose
//!   epoch moved on (taken over, or claimed) is reported lost. Leases beyond the fair
//!   share plus a slack are not renewed (the last ones in key order): they lapse when the
//!   previous renewal runs out, on the same clock as the node's guard, so releasing them
//!   never needs the node's cooperation to be safe.
//! - **release / release_all**: owner cleared and expiry set to `now()`; `release_all`
//!   also deletes the node's row, so the survivors' next acquire counts one node fewer.
//!
//! Which leases a node holds (and at which epoch) is remembered by this store handle, per
//! node: a process that restarts under the same node id does not renew its predecessor's
//! leases (it has no work running for them); they lapse and are acquired again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::batch::Epoch;
use crate::ownership::{fair_share, slack, LeaseRenewal, NodeId, Ownership};
use crate::{ConnectionKey, StoreError};

use super::PgStore;

/// The leases this handle holds, per node, at the epoch it acquired them with.
#[derive(Default)]
pub(super) struct Held(Mutex<HashMap<NodeId, HashMap<ConnectionKey, Epoch>>>);

impl Held {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<NodeId, HashMap<ConnectionKey, Epoch>>) -> T,
    ) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The node's leases, in key order (the order of the `key` column).
    fn of(&self, node: &NodeId) -> Vec<(ConnectionKey, Epoch)> {
        let mut mine: Vec<_> = self.with(|held| {
            held.get(node)
                .map(|m| m.iter().map(|(k, e)| (k.clone(), *e)).collect())
                .unwrap_or_default()
        });
        mine.sort_by_cached_key(|(k, _)| k.storage_key());
        mine
    }
}

/// Registers a node that is new. An existing one's heartbeat is renew's, so a node's
/// liveness ends when the leases it renewed end.
async fn register(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    lease_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO nodes (node_id, heartbeat, lease_ms) VALUES ($1, now(), $2::bigint) \
         ON CONFLICT (node_id) DO NOTHING",
        &[&id, &lease_ms],
    )
    .await?;
    Ok(())
}

/// A lease length in whole milliseconds, as the statements take it.
fn millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn epoch_of(n: i64) -> Epoch {
    Epoch(u64::try_from(n).unwrap_or(0))
}

/// Keys and epochs from `RETURNING key, epoch` rows; a key that is no connection key
/// (written past the store) is left out.
fn leases(rows: &[tokio_postgres::Row]) -> Vec<(ConnectionKey, Epoch)> {
    rows.iter()
        .filter_map(|row| {
            let key = ConnectionKey::from_storage_key(&row.get::<_, Vec<u8>>(0))?;
            Some((key, epoch_of(row.get(1))))
        })
        .collect()
}

/// How many times a lease statement the server aborted to break a deadlock is tried again.
const RETRIES: usize = 3;

fn is_retryable(e: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    match e {
        StoreError::Postgres(super::PgError::Database(e)) => matches!(
            e.code(),
            Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
        ),
        _ => false,
    }
}

/// The live nodes other than `node`, as SQL (`$1` is the node).
const OTHER_LIVE_NODES: &str = "SELECT count(*) FROM nodes WHERE node_id <> $1 \
     AND heartbeat + lease_ms * interval '1 millisecond' > now()";

impl PgStore {
    async fn acquire_once(
        &self,
        node: &NodeId,
        lease_ms: i64,
    ) -> Result<Vec<(ConnectionKey, Epoch)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = node.as_str();
        register(&tx, id, lease_ms).await?;
        tx.execute(
            "DELETE FROM nodes WHERE heartbeat + lease_ms * interval '1 millisecond' \
             < now() - interval '1 day'",
            &[],
        )
        .await?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM connections), ({OTHER_LIVE_NODES}), \
                     (SELECT count(*) FROM epochs e JOIN connections c ON c.key = e.key \
                      WHERE e.owner = $1 AND e.expires_at > now())"
                ),
                &[&id],
            )
            .await?;
        let (total, others, holding) = (count(row.get(0)), count(row.get(1)), count(row.get(2)));
        let want = fair_share(total, others + 1).saturating_sub(holding);
        if want == 0 {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        // Rows nobody holds. SKIP LOCKED: a row another node is taking is left to it; a
        // row it took meanwhile is re-read once its lock is free, and no longer matches.
        let rows = tx
            .query(
                "WITH chosen AS ( \
                     SELECT e.key FROM epochs e JOIN connections c ON c.key = e.key \
                     WHERE e.owner IS NULL OR e.expires_at IS NULL OR e.expires_at <= now() \
                     ORDER BY e.key LIMIT $2 FOR UPDATE OF e SKIP LOCKED) \
                 UPDATE epochs e SET owner = $1, epoch = e.epoch + 1, \
                     expires_at = now() + $3::bigint * interval '1 millisecond' \
                 FROM chosen WHERE e.key = chosen.key \
                 RETURNING e.key, e.epoch",
                &[&id, &want, &lease_ms],
            )
            .await?;
        let mut taken = leases(&rows);
        let short = want - i64::try_from(rows.len()).unwrap_or(i64::MAX);
        if short > 0 {
            // Connections never claimed have no epoch row yet: the insert is the
            // acquisition, and the primary key keeps two nodes from both making it.
            let rows = tx
                .query(
                    "INSERT INTO epochs (key, epoch, owner, expires_at) \
                     SELECT c.key, 1, $1, now() + $3::bigint * interval '1 millisecond' \
                     FROM connections c \
                     WHERE NOT EXISTS (SELECT 1 FROM epochs e WHERE e.key = c.key) \
                     ORDER BY c.key LIMIT $2 \
                     ON CONFLICT (key) DO NOTHING RETURNING key, epoch",
                    &[&id, &short, &lease_ms],
                )
                .await?;
            taken.extend(leases(&rows));
        }
        tx.commit().await?;
        self.inner.leases.with(|held| {
            let mine = held.entry(node.clone()).or_default();
            for (key, epoch) in &taken {
                mine.insert(key.clone(), *epoch);
            }
        });
        Ok(taken)
    }

    async fn renew_once(&self, node: &NodeId, lease: Duration) -> Result<LeaseRenewal, StoreError> {
        let started_at = Instant::now();
        let lease_ms = millis(lease);
        let id = node.as_str();
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!("SELECT (SELECT count(*) FROM connections), ({OTHER_LIVE_NODES})"),
                &[&id],
            )
            .await?;
        let share = fair_share(count(row.get(0)), count(row.get(1)) + 1);
        let mine = self.inner.leases.of(node);
        let keys: Vec<Vec<u8>> = mine.iter().map(|(k, _)| k.storage_key()).collect();
        let epochs: Vec<i64> = mine
            .iter()
            .map(|(_, e)| i64::try_from(e.0).unwrap_or(i64::MAX))
            .collect();
        let keep = i64::try_from(share).unwrap_or(i64::MAX);
        let most = i64::try_from(share + slack(share)).unwrap_or(i64::MAX);
        // One statement: the heartbeat and every lease. `locked`: the leases still this
        // node's at the epoch it took them with, locked in key order as fenced commits
        // lock them (so the two never wait for each other in a cycle); `kept`: all of
        // them, or the first `share` in key order when there are more than `most`;
        // `renewed`: those extended. A lease locked but not renewed is released.
        let rows = client
            .query(
                "WITH beat AS ( \
                     INSERT INTO nodes (node_id, heartbeat, lease_ms) \
                     VALUES ($1, now(), $2::bigint) ON CONFLICT (node_id) DO UPDATE \
                     SET heartbeat = now(), lease_ms = EXCLUDED.lease_ms RETURNING 1), \
                 locked AS ( \
                     SELECT e.key, e.epoch FROM epochs e \
                     JOIN unnest($3::bytea[], $4::bigint[]) AS m(key, epoch) \
                       ON e.key = m.key AND e.epoch = m.epoch \
                     WHERE e.owner = $1 ORDER BY e.key FOR UPDATE OF e), \
                 kept AS ( \
                     SELECT key FROM locked ORDER BY key \
                     LIMIT CASE WHEN (SELECT count(*) FROM locked) > $6::bigint \
                                THEN $5::bigint END), \
                 renewed AS ( \
                     UPDATE epochs e \
                     SET expires_at = now() + $2::bigint * interval '1 millisecond' \
                     FROM kept WHERE e.key = kept.key RETURNING e.key) \
                 SELECT l.key, l.epoch, r.key IS NOT NULL FROM locked l \
                 LEFT JOIN renewed r ON r.key = l.key ORDER BY l.key",
                &[&id, &lease_ms, &keys, &epochs, &keep, &most],
            )
            .await?;
        let mut held = Vec::new();
        let mut released = Vec::new();
        for row in &rows {
            let Some(key) = ConnectionKey::from_storage_key(&row.get::<_, Vec<u8>>(0)) else {
                continue;
            };
            if row.get::<_, bool>(2) {
                held.push((key, epoch_of(row.get(1))));
            } else {
                released.push(key);
            }
        }
        let found: HashSet<&ConnectionKey> = held.iter().map(|(k, _)| k).chain(&released).collect();
        let lost: Vec<ConnectionKey> = mine
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !found.contains(k))
            .cloned()
            .collect();
        // Forgotten one by one (not replaced by `held`): a lease acquired meanwhile
        // through this handle stays remembered.
        let gone: HashSet<&ConnectionKey> = lost.iter().chain(&released).collect();
        self.inner.leases.with(|all| {
            if let Some(remembered) = all.get_mut(node) {
                for (key, epoch) in &mine {
                    if gone.contains(key) && remembered.get(key) == Some(epoch) {
                        remembered.remove(key);
                    }
                }
            }
        });
        Ok(LeaseRenewal {
            held,
            lost,
            released,
            started_at,
            valid_for: lease,
        })
    }

    async fn acquire_key_once(
        &self,
        node: &NodeId,
        lease_ms: i64,
        key: &ConnectionKey,
    ) -> Result<Option<Epoch>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = node.as_str();
        register(&tx, id, lease_ms).await?;
        // The row is locked by the upsert; a lease another node holds leaves it as it is
        // (no row comes back), one nobody holds is taken under the next epoch.
        let row = tx
            .query_opt(
                "INSERT INTO epochs (key, epoch, owner, expires_at) \
                 VALUES ($1, 1, $2, now() + $3::bigint * interval '1 millisecond') \
                 ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, \
                     epoch = epochs.epoch + 1, expires_at = EXCLUDED.expires_at \
                 WHERE epochs.owner IS NULL OR epochs.expires_at IS NULL \
                    OR epochs.expires_at <= now() \
                 RETURNING epoch",
                &[&key.storage_key(), &id, &lease_ms],
            )
            .await?;
        tx.commit().await?;
        let epoch = row.map(|row| epoch_of(row.get(0)));
        if let Some(epoch) = epoch {
            self.inner.leases.with(|held| {
                held.entry(node.clone())
                    .or_default()
                    .insert(key.clone(), epoch);
            });
        }
        Ok(epoch)
    }

    async fn release_once(&self, node: &NodeId, keys: &[ConnectionKey]) -> Result<(), StoreError> {
        let bytes: Vec<Vec<u8>> = keys.iter().map(ConnectionKey::storage_key).collect();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE epochs SET owner = NULL, expires_at = now() \
                 WHERE owner = $1 AND key = ANY($2)",
                &[&node.as_str(), &bytes],
            )
            .await?;
        self.inner.leases.with(|held| {
            if let Some(mine) = held.get_mut(node) {
                for key in keys {
                    mine.remove(key);
                }
            }
        });
        Ok(())
    }

    async fn release_all_once(&self, node: &NodeId) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE epochs SET owner = NULL, expires_at = now() WHERE owner = $1",
            &[&node.as_str()],
        )
        .await?;
        tx.execute("DELETE FROM nodes WHERE node_id = $1", &[&node.as_str()])
            .await?;
        tx.commit().await?;
        self.inner.leases.with(|held| held.remove(node));
        Ok(())
    }
}

/// Runs a lease operation again when the server aborted it to break a deadlock (nothing
/// of it was applied).
macro_rules! retrying {
    ($op:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            match $op.await {
                Err(e) if tries < RETRIES && is_retryable(&e) => {
                    tracing::warn!(error = %e, "a lease statement was aborted by the database to break a conflict; running it again");
                }
                outcome => break outcome,
            }
        }
    }};
}

#[async_trait]
impl Ownership for PgStore {
    async fn acquire(
        &self,
        node: &NodeId,
        lease: Duration,
    ) -> Result<Vec<(ConnectionKey, Epoch)>, StoreError> {
        retrying!(self.acquire_once(node, millis(lease)))
    }

    async fn acquire_key(
        &self,
        node: &NodeId,
        lease: Duration,
        key: &ConnectionKey,
    ) -> Result<Option<Epoch>, StoreError> {
        retrying!(self.acquire_key_once(node, millis(lease), key))
    }

    async fn renew(&self, node: &NodeId, lease: Duration) -> Result<LeaseRenewal, StoreError> {
        retrying!(self.renew_once(node, lease))
    }

    async fn release(&self, node: &NodeId, keys: &[ConnectionKey]) -> Result<(), StoreError> {
        retrying!(self.release_once(node, keys))
    }

    async fn release_all(&self, node: &NodeId) -> Result<(), StoreError> {
        retrying!(self.release_all_once(node))
    }

    async fn owners(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "WITH counts AS ( \
                     SELECT e.owner AS node, count(*) AS n FROM epochs e \
                     JOIN connections c ON c.key = e.key \
                     WHERE e.owner IS NOT NULL AND e.expires_at > now() GROUP BY e.owner) \
                 SELECT node, n FROM counts \
                 UNION ALL \
                 SELECT node_id, 0 FROM nodes \
                 WHERE heartbeat + lease_ms * interval '1 millisecond' > now() \
                   AND node_id NOT IN (SELECT node FROM counts) \
                 ORDER BY 1",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (NodeId::stored(row.get(0)), count(row.get(1))))
            .collect())
    }

    async fn owner_of(&self, key: &ConnectionKey) -> Result<Option<NodeId>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT owner FROM epochs \
                 WHERE key = $1 AND owner IS NOT NULL AND expires_at > now()",
                &[&key.storage_key()],
            )
            .await?;
        Ok(row.map(|row| NodeId::stored(row.get(0))))
    }
}
