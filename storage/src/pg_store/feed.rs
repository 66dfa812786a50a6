//! The event feed: committed events read back from the `events` table in sequence order
//! and sent to this store's subscribers — every node's events, not only this store's.
//!
//! The feed does not forward what its own commits return: it reads the table after
//! the highest number it has sent, whenever something wakes it. Numbers are handed out in
//! commit order (see the counter in `migrations/0001_init.sql`), so every read sees a
//! prefix of what will ever be committed and the feed never skips or reorders, whoever
//! committed. Three things wake it:
//!
//! - this store's own commits (the writer, [`Pump::wake`]);
//! - a notification on the database's event channel ([`channel_of`]): every commit that
//!   numbers events, on any node, sends `NOTIFY` with the new high number as its payload
//!   (never record data), and each store keeps one connection of its own (not from the
//!   pool) listening on that channel ([`listen`]). PostgreSQL drops what is sent while a
//!   listener is disconnected, so after every (re)connection the feed reads from the
//!   table once more: that read, not the notifications, is what guarantees nothing is
//!   missed. A lost listener connection is reconnected with backoff
//!   ([`RECONNECT_FIRST`] doubling to [`RECONNECT_MAX`]);
//! - a timer: a read at least every [`PgConfig::feed_poll_interval`] when nothing else
//!   woke it, so a listener that is silently dead (a connection no one told us was cut)
//!   delays another node's events by at most that interval, never forever.
//!
//! [`PgConfig::feed_poll_interval`]: super::PgConfig::feed_poll_interval

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{codec, Event, StoreError};

/// Events read per query.
const PAGE: i64 = 1024;

/// The first wait before the listener connects again after losing its connection.
pub(super) const RECONNECT_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to connect the listener again.
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(3);

/// TCP keepalives of the listener's connection: the first probe after this much silence…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// …then one this often…
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// …and the connection is given up after this many unanswered.
const KEEPALIVE_RETRIES: u32 = 3;

/// The prefix of the event channel's name; the schema the store's tables are in follows
/// it (`social_studio_events.public`), so stores in two schemas of one database do not
/// wake each other. NOTIFY is scoped to a database already.
const CHANNEL_PREFIX: &str = "social_studio_events.";

/// Longest channel name PostgreSQL keeps (`NAMEDATALEN - 1` bytes).
const CHANNEL_MAX: usize = 63;

pub(super) struct Pump {
    sender: broadcast::Sender<Event>,
    wake: Notify,
    stopped: AtomicBool,
    /// The highest event number sent (or passed over) so far.
    delivered: AtomicU64,
    /// The channel commits notify on and the listener listens on.
    channel: String,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// Notified on the channel's command notifications ([`COMMAND_PAYLOAD`]).
    commands: Arc<Notify>,
}

/// The payload of a notification that a command or an answer between nodes is waiting
/// (an event notification's payload is a number).
pub(super) const COMMAND_PAYLOAD: &str = "command";

/// The highest event number committed now: the feed starts after it.
pub(super) async fn published_high(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let high: i64 = client
        .query_one("SELECT high FROM event_counter", &[])
        .await?
        .get(0);
    Ok(u64::try_from(high).unwrap_or(0))
}

/// The name of the event channel of the store's tables: [`CHANNEL_PREFIX`] and the
/// schema they are in (the first of the search path), cut to what PostgreSQL keeps.
pub(super) async fn channel_of(pool: &Pool) -> Result<String, StoreError> {
    let client = pool.get().await?;
    let schema: Option<String> = client
        .query_one("SELECT current_schema()::text", &[])
        .await?
        .get(0);
    let mut channel = format!("{CHANNEL_PREFIX}{}", schema.as_deref().unwrap_or("public"));
    if channel.len() > CHANNEL_MAX {
        let mut end = CHANNEL_MAX;
        while !channel.is_char_boundary(end) {
            end -= 1;
        }
        channel.truncate(end);
    }
    Ok(channel)
}

/// What the feed needs beside the pool.
pub(super) struct FeedConfig {
    /// Where the listener connects (its own connection, not one of the pool's).
    pub(super) connect: tokio_postgres::Config,
    /// TLS as the store's URL asks.
    pub(super) tls: MakeRustlsConnect,
    pub(super) channel: String,
    pub(super) capacity: usize,
    pub(super) poll_interval: Duration,
}

impl Pump {
    /// Starts the task that sends every event committed after `high`, and the listener
    /// that wakes it when another node commits.
    pub(super) fn start(pool: Pool, high: u64, config: FeedConfig) -> Arc<Pump> {
        let (sender, _) = broadcast::channel(config.capacity.max(1));
        let pump = Arc::new(Pump {
            sender,
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            delivered: AtomicU64::new(high),
            channel: config.channel,
            listener: Mutex::new(None),
            commands: Arc::new(Notify::new()),
        });
        tokio::spawn(run(pump.clone(), pool, high, config.poll_interval));
        let listener = tokio::spawn(listen(pump.clone(), config.connect, config.tls));
        *pump.listener_slot() = Some(listener);
        pump
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Notified when a command or an answer between nodes may be waiting.
    pub(super) fn command_signal(&self) -> Arc<Notify> {
        self.commands.clone()
    }

    /// The channel a commit that numbers events notifies.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// Something may have committed events: read them. Wakes that come while a read is
    /// under way are folded into one more read.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ends both tasks (the store is dropped); the listener's connection is closed.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
        if let Some(listener) = self.listener_slot().take() {
            listener.abort();
        }
    }

    fn listener_slot(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.listener.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn run(pump: Arc<Pump>, pool: Pool, mut last: u64, poll_interval: Duration) {
    let mut failures = 0u32;
    loop {
        // Woken, or the safety read's time has come: either way, read.
        let _ = tokio::time::timeout(poll_interval, pump.wake.notified()).await;
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
                    pump.delivered.store(last, Ordering::Release);
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

/// The listener: one connection of its own that `LISTEN`s on the event channel and wakes
/// the feed on each notification that announces events it has not sent yet. Connects
/// again, with backoff, whenever the connection is lost; after each `LISTEN` the feed
/// reads once, for what was committed while nobody listened. Ends when the task is
/// aborted ([`Pump::stop`]).
async fn listen(pump: Arc<Pump>, mut connect: tokio_postgres::Config, tls: MakeRustlsConnect) {
    // Told apart from the pool's sessions in `pg_stat_activity`.
    let name = format!(
        "{} event feed",
        connect.get_application_name().unwrap_or("social-studio")
    );
    connect.application_name(&name);
    // An idle connection whose peer is gone without a word (a network cut) is found dead
    // by TCP keepalives: after about 10 s + 3 × 5 s of silence.
    connect
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    let statement = format!("LISTEN {}", quote_identifier(&pump.channel));
    let mut backoff = RECONNECT_FIRST;
    let mut lost_before = false;
    loop {
        match listen_once(&pump, &connect, tls.clone(), &statement, lost_before).await {
            // Listened, then lost: connect again from the first wait.
            Ok(why) => {
                backoff = RECONNECT_FIRST;
                tracing::warn!(error = %why, "the event feed's listener lost its connection; connecting again (events committed meanwhile are read from the table)");
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "the event feed's listener cannot connect; trying again");
            }
        }
        lost_before = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Connects, listens and wakes the feed until the connection ends: `Ok` with why it
/// ended once it had listened, `Err` with why it could not connect or listen.
async fn listen_once(
    pump: &Pump,
    connect: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    statement: &str,
    lost_before: bool,
) -> Result<String, String> {
    let (client, mut connection) = connect
        .connect(tls)
        .await
        .map_err(|e| super::describe(&e))?;
    // The connection is driven here, by polling it for messages: the LISTEN below is
    // sent while it is polled.
    let listened = client.batch_execute(statement);
    tokio::pin!(listened);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listened, if !listening => {
                done.map_err(|e| super::describe(&e))?;
                listening = true;
                if lost_before {
                    tracing::info!("the event feed's listener is connected again");
                }
                // What was committed before the LISTEN took effect was announced to
                // nobody here: read it from the table (and look for commands).
                pump.wake();
                pump.commands.notify_waiters();
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                let ended = match message {
                    Some(Ok(AsyncMessage::Notification(note)))
                        if note.payload() == COMMAND_PAYLOAD =>
                    {
                        pump.commands.notify_waiters();
                        continue;
                    }
                    Some(Ok(AsyncMessage::Notification(note))) => {
                        let announced = note.payload().parse::<u64>().ok();
                        let delivered = pump.delivered.load(Ordering::Acquire);
                        if announced.is_none_or(|high| high > delivered) {
                            pump.wake();
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => super::describe(&error),
                    None => "the server closed the connection".to_owned(),
                };
                return if listening { Ok(ended) } else { Err(ended) };
            }
        }
    }
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
