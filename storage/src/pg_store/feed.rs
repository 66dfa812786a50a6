//! The event feed: committed events read back from the `events` table in sequence order
//! and sent to this store's subscribers.
//!
//! The feed does not forward what its own commits return: it reads the table after
//! the highest number it has sent, whenever something wakes it. Numbers are handed out in
//! commit order (see the counter in `migrations/0001_init.sql`), so every read sees a
//! prefix of what will ever be committed and the feed never skips or reorders, whoever
//! committed. This node's commits wake it today; the cross-node step wakes it from a
//! LISTEN on the same channel ([`Pump::wake`] is the seam).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{broadcast, Notify};

use crate::{codec, Event, StoreError};

/// Events read per query.
const PAGE: i64 = 1024;

pub(super) struct Pump {
    sender: broadcast::Sender<Event>,
    wake: Notify,
    stopped: AtomicBool,
}

/// The highest event number committed now: the feed starts after it.
pub(super) async fn published_high(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let high: i64 = client
        .query_one("SELECT high FROM event_counter", &[])
        .await?
        .get(0);
    Ok(u64::try_from(high).unwrap_or(0))
}

impl Pump {
    /// Starts the task that sends every event committed after `high`.
    pub(super) fn start(pool: Pool, high: u64, capacity: usize) -> Arc<Pump> {
        let (sender, _) = broadcast::channel(capacity.max(1));
        let pump = Arc::new(Pump {
            sender,
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(run(pump.clone(), pool, high));
        pump
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Something may have committed events: read them. Wakes that come while a read is
    /// under way are folded into one more read.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ends the task (the store is dropped).
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

async fn run(pump: Arc<Pump>, pool: Pool, mut last: u64) {
    let mut failures = 0u32;
    loop {
        pump.wake.notified().await;
        if pump.stopped.load(Ordering::Acquire) {
            return;
        }
        loop {
            match read_after(&pool, last).await {
                Ok(page) => {
                    failures = 0;
                    let full = page.len() as i64 >= PAGE;
                    for (seq, event) in page {
                        last = seq;
                        if let Some(event) = event {
                            // No receiver is not an error: nobody listens yet.
                            let _ = pump.sender.send(event);
                        }
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    // Reading again later loses nothing: the events stay in the table.
                    failures += 1;
                    tracing::warn!(%error, "the event feed could not read new events; trying again");
                    let backoff = std::time::Duration::from_millis(50 << failures.min(6));
                    tokio::time::sleep(backoff).await;
                    if pump.stopped.load(Ordering::Acquire) {
                        return;
                    }
                }
            }
        }
    }
}

/// The events after `last`, in order; one that does not decode is skipped here (the
/// store's reads name it) so the feed goes on past it.
async fn read_after(pool: &Pool, last: u64) -> Result<Vec<(u64, Option<Event>)>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT seq, record FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
        .await?;
    let rows = client
        .query(&stmt, &[&i64::try_from(last).unwrap_or(i64::MAX), &PAGE])
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let seq: i64 = row.get(0);
            let bytes: Vec<u8> = row.get(1);
            let key = seq.to_be_bytes();
            let event = match codec::decode::<Event>("events", &key, &bytes) {
                Ok(e) => Some(e),
                Err(error) => {
                    tracing::error!(%error, "an unreadable event was left out of the feed");
                    None
                }
            };
            (u64::try_from(seq).unwrap_or(0), event)
        })
        .collect())
}
