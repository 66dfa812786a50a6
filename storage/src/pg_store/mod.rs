//! `PgStore`: the store port on PostgreSQL (feature `postgres`; in progress, issue 13).
//!
//! - **Schema** ([`migrate`]): versioned SQL files in `migrations/`, embedded in the
//!   binary and applied at open in one transaction under an advisory lock, so two nodes
//!   opening one database at once do not race; a schema newer than this build knows is
//!   refused. The master key check value lives in the `meta` table and is checked at
//!   open as the sled backend checks it.
//! - **Records** are the codec's versioned bytes (`bytea`), keyed as the sled layout
//!   keys them, beside the columns queries select on; grants and OAuth states are sealed
//!   by the vault before any statement carries them: the database never sees a plaintext
//!   token. Counts are counted from the columns, not stored.
//! - **Commits** ([`commit`]): `commit` hands the batch to the store's writer task at
//!   once, so its place in the order is fixed by the call; the writer applies the batches
//!   queued together in one transaction (group commit) and a commit resolves once that
//!   transaction committed (both [`Durability`] levels: a committed transaction is as
//!   durable as the server is configured to make it). A fenced batch locks its connection's epoch row
//!   (`SELECT … FOR UPDATE`) and is refused in the same transaction when a newer claim
//!   exists. Events are numbered from a one-row counter updated inside the transaction:
//!   its row lock is held until commit, so numbers are handed out in commit order.
//! - **The event feed** is read back from the `events` table by a task of this store
//!   ([`feed`]), so it carries every node's events in sequence order: this store's
//!   commits wake it, other nodes' commits wake it through LISTEN/NOTIFY (a listening
//!   connection of its own, reconnected when lost, with a read from the table after each
//!   reconnection), and a timer reads at least every [`PgConfig::feed_poll_interval`].
//! - **Reads, retention, erasure, backup** ([`reads`], [`upkeep`]): plain queries; an
//!   erasure is one transaction; a backup reads a `REPEATABLE READ` snapshot into the
//!   archive format of [`crate::archive`] while commits go on.
//! - **Leases between nodes** ([`leases`], [`crate::Ownership`]): a connection's owner,
//!   epoch and expiry on its `epochs` row, on the database's clock; acquiring a lease
//!   bumps the epoch the fences check.
//! - **Restore** ([`restore`]): an archive of either backend into an empty database, every
//!   record as stored — how a sled data directory moves here (`migrate-store`).
//!
//! - **TLS** ([`tls`]): `sslmode` and `sslrootcert` with libpq's meanings, on rustls.
//! - **Commands between nodes** ([`relay`], [`crate::CommandRelay`]).
//!
//! Not yet: master key rotation (a store sealed with a previous key is refused), and
//! virtual time: the pool's and the client's timeouts run on tokio's clock, so an engine
//! on a paused clock would see them fire while it waits for the server.

mod commit;
mod feed;
mod leases;
mod migrate;
mod reads;
mod relay;
mod restore;
mod tls;
mod upkeep;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::batch::{Batch, Epoch};
use crate::codec::{self, KeyDisplay};
use crate::port::{
    BackupSummary, CommitFuture, Committed, ConnectionCounts, Durability, ErasedCounts, EventPage,
    IntegrityReport, Loaded, PostCounts, Store, StoreInfo, UnreadableRecord,
};
use crate::vault::{MasterKey, MasterKeys, Vault};
use crate::{
    Connection, ConnectionKey, Event, Grant, IdempotentRequest, PenName, Post, PostId, PostStatus,
    StateLookup, StoreError, Timestamp,
};

use commit::Job;

/// Default size of the connection pool.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long opening a connection, or waiting for a free one, may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the event feed reads the table when nothing woke it.
const DEFAULT_FEED_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Where the store's database is, and how to reach it.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database` (key-value form works too). The
    /// password is a secret: it is never logged, and [`Store::info`] leaves it out.
    pub url: String,
    /// Connections the store keeps at most.
    pub pool_size: usize,
    /// Capacity of the event feed ([`Store::subscribe`]).
    pub event_capacity: usize,
    pub connect_timeout: Duration,
    /// The event feed reads the `events` table at least this often, even when no
    /// notification came: another node's events reach this store's subscribers within
    /// this bound (and the time a read takes) even when its listening connection is
    /// dead and nobody said so. 5 s unless set.
    pub feed_poll_interval: Duration,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            pool_size: DEFAULT_POOL_SIZE,
            event_capacity: crate::DEFAULT_EVENT_CAPACITY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            feed_poll_interval: DEFAULT_FEED_POLL_INTERVAL,
        }
    }
}

impl std::fmt::Debug for PgConfig {
    /// Without the URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("event_capacity", &self.event_capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("feed_poll_interval", &self.feed_poll_interval)
            .finish()
    }
}

/// Why the PostgreSQL store failed, beside the errors every backend shares.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse (the message never quotes the URL: it may hold a password).
    #[error("the store URL cannot be used: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("PostgreSQL refused or failed: {}", describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("no connection to PostgreSQL: {}", with_causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the connection pool cannot be built: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("the database's store schema is at version {found}, written by a newer release; this release knows versions up to {supported}. Run that release again")]
    NewerSchema { found: i64, supported: i64 },
    #[error("the store's data is sealed with a previous master key; a master key rotation is not supported on PostgreSQL yet. Configure the key the data was sealed with")]
    RotationUnsupported,
    /// The commit of a group of batches failed (the connection was lost at COMMIT, most
    /// likely): whether the server committed them is unknown.
    #[error("the commit's outcome is unknown (the database failed at COMMIT: {0}); read back what it wrote before writing it again")]
    CommitUnknown(String),
    #[error("the store's writer has stopped; no more writes are possible from this handle")]
    WriterStopped,
    /// The URL's `sslmode` is not one the store speaks.
    #[error("the store URL's sslmode={0} is not supported: use disable, prefer, require, verify-ca or verify-full")]
    UnsupportedSslMode(String),
    /// The trusted roots for `verify-ca`/`verify-full` cannot be read.
    #[error("the store's TLS roots cannot be used (sslrootcert): {0}")]
    RootCertificate(String),
    /// A restore's target database already holds data.
    #[error("the target database is not empty (it holds {holds}); restore or migrate into a new, empty database")]
    RestoreTargetNotEmpty { holds: String },
    /// A restore found something it must not copy as it is.
    #[error("the archive cannot be restored into PostgreSQL: {0}")]
    RestoreRefused(String),
    /// The raw-record test hooks could not do what they were asked.
    #[error("a test hook failed: {0}")]
    TestHook(String),
}

/// A database error in the server's own words (tokio-postgres prints only "db error").
/// An error and what caused it, down the chain (a TLS handshake's failure says why only
/// in its source: the certificate's issuer unknown, its name another).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} ({}){}",
            db.message(),
            db.code().code(),
            db.detail().map(|d| format!(": {d}")).unwrap_or_default()
        ),
        None => with_causes(e),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(PgError::Database(e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        StoreError::Postgres(PgError::Pool(e))
    }
}

/// The engine's database on PostgreSQL. Cheap to clone; all clones share one pool, one
/// writer and one feed.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    pg_config: tokio_postgres::Config,
    /// How every connection of the store is made (TLS as `sslmode` asks).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    vault: Vault,
    /// The writer task's queue: commits and claims, in the order they were called.
    writer: mpsc::UnboundedSender<Job>,
    feed: Arc<feed::Pump>,
    /// Records found unreadable, by (kind of record, key).
    unreadable: Mutex<BTreeMap<(String, Vec<u8>), UnreadableRecord>>,
    location: String,
    opened: Vec<String>,
    /// The leases this handle holds, per node (`leases`).
    leases: leases::Held,
}

impl Drop for Inner {
    /// The feed's tasks (and its listening connection) end with the store (the writer's
    /// ends when its queue closes).
    fn drop(&mut self) {
        self.feed.stop();
    }
}

impl PgStore {
    /// Opens the store with one master key. (A database store has no key file beside
    /// it: the caller brings the key.)
    pub async fn open_with_key(config: &PgConfig, key: &MasterKey) -> Result<PgStore, StoreError> {
        PgStore::open_with_keys(config, &MasterKeys::new(key.clone())).await
    }

    /// Opens (and creates or upgrades the schema of) the store: the schema migrations not
    /// yet applied are applied, and the master key is checked against the database's
    /// check value (a new database records it).
    pub async fn open_with_keys(
        config: &PgConfig,
        keys: &MasterKeys,
    ) -> Result<PgStore, StoreError> {
        let (mut pg_config, connector) = tls::parse(&config.url).map_err(StoreError::Postgres)?;
        pg_config.connect_timeout(config.connect_timeout);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("social-studio");
        }
        let location = location_of(&pg_config);
        let manager = Manager::from_config(
            pg_config.clone(),
            connector.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| StoreError::Postgres(PgError::Build(e)))?;
        let vault = Vault::with_keys(keys);
        let mut opened = migrate::apply(&pool).await?;
        tracing::info!("store: {}", connector.mode.describe());
        migrate::check_key(&pool, &vault).await?;
        if vault.has_previous() {
            opened.push(format!(
                "previous master keys are configured but nothing is sealed with them: the data is under master key {}; they can be removed",
                vault.key_id()
            ));
        }
        let high = feed::published_high(&pool).await?;
        let feed = feed::Pump::start(
            pool.clone(),
            high,
            feed::FeedConfig {
                connect: pg_config.clone(),
                tls: connector.tls.clone(),
                channel: feed::channel_of(&pool).await?,
                capacity: config.event_capacity,
                poll_interval: config.feed_poll_interval,
            },
        );
        let writer = commit::start_writer(pool.clone(), feed.clone());
        for line in &opened {
            tracing::info!("store: {line}");
        }
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                pg_config,
                tls: connector.tls,
                vault,
                writer,
                feed,
                unreadable: Mutex::new(BTreeMap::new()),
                location,
                opened,
                leases: leases::Held::default(),
            }),
        })
    }

    // ---- shared helpers ----

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.inner.pool.get().await?)
    }

    /// Decodes a record, naming it in the unreadable list when it does not decode.
    fn decode<R: codec::Record>(
        &self,
        tree: &'static str,
        key: &[u8],
        bytes: &[u8],
        owner: Option<&ConnectionKey>,
    ) -> Result<R, StoreError> {
        codec::decode(tree, key, bytes).map_err(|e| {
            self.note_unreadable(tree, R::KIND, key, &e.problem.to_string(), owner);
            StoreError::Codec(e)
        })
    }

    /// Names a record that cannot be read, with what its key (or its row) says about its
    /// owner.
    fn note_unreadable(
        &self,
        tree: &str,
        kind: &str,
        key: &[u8],
        problem: &str,
        owner: Option<&ConnectionKey>,
    ) {
        let record = describe_unreadable(tree, kind, key, problem, owner);
        let mut map = self.unreadable_map();
        map.insert((tree.to_string(), key.to_vec()), record);
    }

    fn forget_unreadable<'a>(&self, keys: impl IntoIterator<Item = (&'a str, Vec<u8>)>) {
        let mut map = self.unreadable_map();
        if map.is_empty() {
            return;
        }
        for (tree, key) in keys {
            map.remove(&(tree.to_string(), key));
        }
    }

    fn unreadable_map(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(String, Vec<u8>), UnreadableRecord>> {
        self.inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn open_grant(&self, key: &[u8], sealed: &[u8]) -> Result<Grant, StoreError> {
        let owner = ConnectionKey::from_storage_key(key);
        let plain = self
            .inner
            .vault
            .open(&grant_aad(key), sealed, || {
                format!("grant {}", KeyDisplay(key.to_vec()))
            })
            .inspect_err(|e| {
                self.note_unreadable("grants", "grant", key, &e.to_string(), owner.as_ref());
            })?;
        self.decode("grants", key, &plain, owner.as_ref())
    }

    /// Sends a job to the writer task and waits for its answer.
    async fn ask_writer<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send(job(tx))
            .map_err(|_| StoreError::Postgres(PgError::WriterStopped))?;
        rx.await
            .map_err(|_| StoreError::Postgres(PgError::WriterStopped))?
    }

    /// The stored bytes of a record, past every check of the port. For tests only (the
    /// conformance suite's [`RawRecords`](crate::conformance::RawRecords)); it blocks the
    /// calling thread on a connection of its own.
    #[doc(hidden)]
    pub fn raw_get_for_tests(&self, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (table, column, key_column) = raw_place(kind)?;
        let key = raw_key(kind, key);
        let sql = format!("SELECT {column} FROM {table} WHERE {key_column} = $1");
        self.on_own_connection(move |client| {
            Box::pin(async move {
                let row = match &key {
                    RawKey::Bytes(k) => client.query_opt(&sql, &[k]).await?,
                    RawKey::Seq(s) => client.query_opt(&sql, &[s]).await?,
                };
                Ok(row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
            })
        })
    }

    /// Stores `bytes` as the record `key` of `kind`, past every check of the port. For
    /// tests only; blocks like [`PgStore::raw_get_for_tests`].
    #[doc(hidden)]
    pub fn raw_insert_for_tests(
        &self,
        kind: &str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let (table, column, key_column) = raw_place(kind)?;
        let pen = ConnectionKey::from_storage_key(key)
            .map(|k| k.pen_name.as_str().to_owned())
            .unwrap_or_default();
        let bytes = bytes.to_vec();
        let key = raw_key(kind, key);
        let sql = match table {
            // A connection or a grant may be new: its pen name comes from its key.
            "connections" | "grants" => format!(
                "INSERT INTO {table} ({key_column}, pen_name, {column}) VALUES ($1, $2, $3) \
                 ON CONFLICT ({key_column}) DO UPDATE SET {column} = EXCLUDED.{column}"
            ),
            // A post's or an event's columns come from its record: only an existing row.
            // ($2, the pen name, is not needed here but keeps one parameter list.)
            _ => format!(
                "UPDATE {table} SET {column} = $3 WHERE {key_column} = $1 AND $2::text IS NOT NULL"
            ),
        };
        self.on_own_connection(move |client| {
            Box::pin(async move {
                let changed = match &key {
                    RawKey::Bytes(k) => client.execute(&sql, &[k, &pen, &bytes]).await?,
                    RawKey::Seq(s) => client.execute(&sql, &[s, &pen, &bytes]).await?,
                };
                if changed == 0 {
                    return Err(StoreError::Postgres(PgError::TestHook(format!(
                        "no {table} row to overwrite"
                    ))));
                }
                Ok(())
            })
        })
    }

    /// Runs `work` on a connection of its own, on a runtime of its own, on another thread,
    /// and waits: for the synchronous test hooks, which are called from async tests.
    fn on_own_connection<T: Send + 'static>(
        &self,
        work: impl for<'c> FnOnce(
                &'c tokio_postgres::Client,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>,
            > + Send
            + 'static,
    ) -> Result<T, StoreError> {
        let config = self.inner.pg_config.clone();
        let tls = self.inner.tls.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| StoreError::Postgres(PgError::TestHook(e.to_string())))?;
                    runtime.block_on(async move {
                        let (client, connection) = config.connect(tls).await?;
                        let driver = tokio::spawn(connection);
                        let out = work(&client).await;
                        drop(client);
                        let _ = driver.await;
                        out
                    })
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// Checks a store URL as [`PgStore::open_with_keys`] will, without connecting: that it
/// parses, with an `sslmode` the store speaks and readable `sslrootcert` roots. The error
/// never quotes the URL.
pub fn check_url(url: &str) -> Result<(), PgError> {
    tls::parse(url).map(|_| ())
}

enum RawKey {
    Bytes(Vec<u8>),
    Seq(i64),
}

/// Where a record of a kind lives: table, column, key column.
fn raw_place(kind: &str) -> Result<(&'static str, &'static str, &'static str), StoreError> {
    Ok(match kind {
        "connections" => ("connections", "record", "key"),
        "grants" => ("grants", "sealed", "key"),
        "post_status" => ("posts", "status", "id"),
        "post_bodies" => ("posts", "body", "id"),
        "events" => ("events", "record", "seq"),
        other => {
            return Err(StoreError::Postgres(PgError::TestHook(format!(
                "no record kind {other}"
            ))))
        }
    })
}

fn raw_key(kind: &str, key: &[u8]) -> RawKey {
    match kind {
        "events" => RawKey::Seq(
            <[u8; 8]>::try_from(key)
                .map(i64::from_be_bytes)
                .unwrap_or(-1),
        ),
        _ => RawKey::Bytes(key.to_vec()),
    }
}

/// `host:port/database` of a configuration: never its password.
fn location_of(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

/// The associated data a grant is sealed with: the same as the sled backend's, so a
/// sealed grant moves between the backends unchanged.
fn grant_aad(key: &[u8]) -> Vec<u8> {
    crate::sled_store::layout::grant_aad(key)
}

fn oauth_aad(state: &str) -> Vec<u8> {
    crate::sled_store::layout::oauth_aad(state)
}

/// What an unreadable record's key, or its row, says about it.
fn describe_unreadable(
    tree: &str,
    kind: &str,
    key: &[u8],
    problem: &str,
    owner: Option<&ConnectionKey>,
) -> UnreadableRecord {
    let connection = owner.cloned().or_else(|| match tree {
        "connections" | "grants" => ConnectionKey::from_storage_key(key),
        _ => None,
    });
    let post = match tree {
        "post_status" | "post_bodies" => <[u8; 16]>::try_from(key).ok().map(PostId::from_bytes),
        _ => None,
    };
    let pen_name = connection.as_ref().map(|c| c.pen_name.clone()).or_else(|| {
        if tree == "idempotency" {
            let at = key.iter().position(|&b| b == 0)?;
            PenName::parse(std::str::from_utf8(&key[..at]).ok()?).ok()
        } else {
            None
        }
    });
    UnreadableRecord {
        kind: kind.to_string(),
        key: format!("{tree}/{}", KeyDisplay(key.to_vec())),
        pen_name,
        connection,
        post,
        problem: problem.to_string(),
    }
}

#[async_trait]
impl Store for PgStore {
    fn commit(&self, batch: Batch, durability: Durability) -> CommitFuture {
        // Both durabilities wait for the transaction to commit.
        let _ = durability;
        let queued = self.stage(batch).and_then(|staged| {
            let (tx, rx) = oneshot::channel();
            let written = staged.written_keys();
            self.inner
                .writer
                .send(Job::Commit(staged, tx))
                .map_err(|_| StoreError::Postgres(PgError::WriterStopped))?;
            Ok((rx, written))
        });
        let store = self.clone();
        Box::pin(async move {
            let (rx, written) = queued?;
            let events = rx
                .await
                .map_err(|_| StoreError::Postgres(PgError::WriterStopped))??;
            store.forget_unreadable(written.iter().map(|(t, k)| (*t, k.clone())));
            Ok(Committed { events })
        })
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.ask_writer(Job::Sync).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.feed.subscribe()
    }

    async fn claim(&self, key: &ConnectionKey) -> Result<Epoch, StoreError> {
        let key = key.clone();
        self.ask_writer(|tx| Job::Claim(key, tx)).await
    }

    async fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        self.connection_read(key).await
    }

    async fn connections_of(&self, pen: &PenName) -> Result<Loaded<Connection>, StoreError> {
        self.connections_where(Some(pen)).await
    }

    async fn all_connections(&self) -> Result<Loaded<Connection>, StoreError> {
        self.connections_where(None).await
    }

    async fn connection_counts(&self) -> Result<ConnectionCounts, StoreError> {
        self.connection_counts_read().await
    }

    async fn grant(&self, key: &ConnectionKey) -> Result<Option<Grant>, StoreError> {
        self.grant_read(key).await
    }

    async fn post(&self, id: PostId) -> Result<Option<Post>, StoreError> {
        self.post_read(id).await
    }

    async fn posts_of_connection(&self, key: &ConnectionKey) -> Result<Loaded<Post>, StoreError> {
        self.posts_where(reads::PostsOf::Connection(key)).await
    }

    async fn posts_of_pen(&self, pen: &PenName) -> Result<Loaded<Post>, StoreError> {
        self.posts_where(reads::PostsOf::Pen(pen)).await
    }

    async fn queued_posts(&self) -> Result<Loaded<PostStatus>, StoreError> {
        self.queued_read().await
    }

    async fn post_counts(&self, key: &ConnectionKey) -> Result<PostCounts, StoreError> {
        self.post_counts_read(key).await
    }

    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events_after_read(seq, limit).await
    }

    async fn events_of_connection(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        self.events_of_connection_read(key, page).await
    }

    async fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.event_read(seq).await
    }

    async fn take_oauth_state(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<StateLookup, StoreError> {
        self.take_oauth_state_tx(state, now).await
    }

    async fn purge_oauth_states(
        &self,
        now: Timestamp,
        keep: Duration,
    ) -> Result<usize, StoreError> {
        self.purge_oauth_states_tx(now, keep).await
    }

    async fn idempotent_result(
        &self,
        pen: &PenName,
        key: &str,
    ) -> Result<Option<IdempotentRequest>, StoreError> {
        self.idempotent_read(pen, key).await
    }

    async fn remember_idempotent(
        &self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> Result<IdempotentRequest, StoreError> {
        self.remember_idempotent_tx(pen, key, record).await
    }

    async fn purge_events_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.purge_events_before_tx(before).await
    }

    async fn events_purged_through(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        upkeep::purged_through(&**client).await
    }

    async fn purge_idempotency_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.purge_idempotency_before_tx(before).await
    }

    async fn purge_finished_posts_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.purge_finished_posts_before_tx(before).await
    }

    async fn erase_pen_name(&self, pen: &PenName) -> Result<ErasedCounts, StoreError> {
        self.erase_tx(pen).await
    }

    async fn backup(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<BackupSummary, StoreError> {
        self.backup_snapshot(out).await
    }

    fn unreadable(&self) -> Vec<UnreadableRecord> {
        self.unreadable_map().values().cloned().collect()
    }

    async fn check_integrity(&self) -> Result<IntegrityReport, StoreError> {
        self.check_integrity_read().await
    }

    fn ownership(&self) -> &dyn crate::Ownership {
        self
    }

    fn commands(&self) -> Option<&dyn crate::CommandRelay> {
        Some(self)
    }

    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: "postgres",
            format: migrate::SCHEMA_VERSION as u32,
            location: self.inner.location.clone(),
            opened: self.inner.opened.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sslmode the store speaks is accepted in both forms a URL can take; one it
    /// does not is refused, and no refusal quotes the URL.
    #[test]
    fn sslmodes_are_checked_without_quoting_the_url() {
        for url in [
            "postgres://u:secret-pw@db/studio",
            "postgres://u:secret-pw@db/studio?sslmode=disable",
            "postgres://u:secret-pw@db/studio?sslmode=prefer",
            "postgres://u:secret-pw@db/studio?sslmode=require",
            "postgres://u:secret-pw@db/studio?connect_timeout=5&sslmode=verify-full",
            "postgresql://u:secret-pw@db/studio?sslmode=VERIFY-CA",
            "host=db user=u password=secret-pw sslmode='verify-full'",
            "host=db user=u sslmode=disable",
        ] {
            check_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        for url in [
            "postgres://u:secret-pw@db/studio?sslmode=allow",
            "host=db user=u password=secret-pw sslmode=sometimes",
            "postgres://u:secret-pw@db/studio?sslmode=verify-full&sslrootcert=/nonexistent/secret-pw.pem",
        ] {
            let refused = check_url(url).expect_err(url);
            assert!(
                matches!(
                    refused,
                    PgError::UnsupportedSslMode(_) | PgError::RootCertificate(_)
                ),
                "{url}: {refused:?}"
            );
            assert!(!refused.to_string().contains("u:secret-pw"), "{refused}");
        }
        let refused = check_url("postgres://u:secret-pw@db:port/studio").unwrap_err();
        assert!(matches!(refused, PgError::Url(_)), "{refused:?}");
        assert!(!refused.to_string().contains("secret-pw"), "{refused}");
    }
}
