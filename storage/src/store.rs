//! `Store`: every record of the engine in one sled database.
//!
//! Trees (names are stable; keys are designed for prefix scans that never cross pen names):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `connections` | `pen \0 platform` | [`Connection`] |
//! | `grants` | `pen \0 platform` | [`Grant`], sealed with the key as associated data |
//! | `posts` | post id (16 bytes) | [`Post`] |
//! | `posts_by_connection` | `pen \0 platform \0 state-byte id` | — |
//! | `posts_due` | `platform-byte ready-at(8) id` | — (posts Scheduled, Paused or Publishing) |
//! | `oauth_states` | state | expiry, used flag, sealed [`PendingAuthorization`] |
//! | `events` | seq (8, big-endian) | [`Event`] |
//! | `events_by_subject` | `pen \0 'c' platform \0 seq` and `pen \0 'p' id seq` | — |
//! | `meta` | name | the master-key check value |
//! | `idempotency` | `pen \0 key` | the posts a request with that `Idempotency-Key` created |
//!
//! A change that touches several trees is a [`Batch`] applied as one sled transaction, so
//! a record and its index entries never disagree, even across a crash. Durability is on
//! demand: [`Store::commit`] with [`Durability::Durable`] returns only after a flush that
//! began after the change was applied has completed, and concurrent durable commits share
//! one flush (group commit).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sled::transaction::{TransactionError, TransactionalTree};
use sled::Transactional;
use zeroize::Zeroizing;

use crate::codec::{self, KeyDisplay};
use crate::connection::pen_prefix;
use crate::oauth::{PendingAuthorization, StateLookup};
use crate::post::label_byte;
use crate::vault::{KeySource, MasterKey, Vault, VaultError};
use crate::{
    Connection, ConnectionKey, Event, Grant, PenName, Platform, Post, PostId, StateLabel,
    StoreError, Timestamp,
};

const T_CONNECTIONS: &str = "connections";
const T_GRANTS: &str = "grants";
const T_POSTS: &str = "posts";
const T_POSTS_BY_CONNECTION: &str = "posts_by_connection";
const T_POSTS_DUE: &str = "posts_due";
const T_OAUTH_STATES: &str = "oauth_states";
const T_EVENTS: &str = "events";
const T_EVENTS_BY_SUBJECT: &str = "events_by_subject";
const T_META: &str = "meta";
const T_IDEMPOTENCY: &str = "idempotency";

const KEY_CHECK: &[u8] = b"master_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"social-studio master key check v1";

/// Default sled page cache: enough for the hot set of a large deployment, far below
/// sled's own default of 1 GiB, which would dwarf the engine's working memory.
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the sled database (created if missing).
    pub path: PathBuf,
    /// sled's page cache, in bytes. Set deliberately: see [`DEFAULT_CACHE_CAPACITY`].
    pub cache_capacity: u64,
    /// sled's background flush interval. Durable commits never rely on it; it bounds how
    /// much buffered (non-durable) work a crash can lose.
    pub background_flush_ms: Option<u64>,
    /// Wait for flushes on tokio's blocking pool. A paused tokio clock (tests and examples
    /// that run days of virtual time) auto-advances whenever the runtime looks idle — and
    /// a task awaiting the flusher thread looks idle. A blocking-pool wait holds the clock
    /// still until the disk has answered. Off in production, where it only costs a thread
    /// hop.
    pub hold_virtual_time: bool,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            background_flush_ms: Some(500),
            hold_virtual_time: false,
        }
    }
}

/// Whether a commit waits for its change to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Applied atomically and visible at once; on disk within the background flush.
    Buffered,
    /// Applied atomically, and on disk before `commit` returns.
    Durable,
}

/// The records a scan could read, and the ones it could not (each a typed error naming
/// its tree and key). One bad record never hides the rest.
#[derive(Debug)]
pub struct Loaded<T> {
    pub items: Vec<T>,
    pub unreadable: Vec<StoreError>,
}

/// Counters for the flusher, to see group commit at work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Flushes the group committer performed.
    pub flushes: u64,
    /// Durable commits it acknowledged (≥ flushes; the ratio is the group size).
    pub acknowledged: u64,
}

/// One page of events, newest first.
#[derive(Debug, Clone, Copy)]
pub struct EventPage {
    /// Only events with a sequence number below this (the previous page's last `seq`).
    pub before: Option<u64>,
    pub limit: usize,
}

impl EventPage {
    pub fn newest(limit: usize) -> EventPage {
        EventPage {
            before: None,
            limit,
        }
    }
}

/// What a request carrying an `Idempotency-Key` created, so a retry creates nothing new.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotentRequest {
    /// A digest of the request body, so a different request reusing the key is refused.
    pub request_digest: [u8; 8],
    pub posts: Vec<PostId>,
    pub created_at: Timestamp,
}

/// What [`Store::erase_pen_name`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasedCounts {
    pub connections: usize,
    pub posts: usize,
    pub events: usize,
}

/// Result of [`Store::check_integrity`].
#[derive(Debug, Default)]
pub struct IntegrityReport {
    pub connections: usize,
    pub grants: usize,
    pub posts: usize,
    pub events: usize,
    /// Every disagreement found, in words. Empty means the store is whole.
    pub problems: Vec<String>,
}

/// The engine's database. Cheap to clone; all clones share one sled instance.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Trees {
    connections: sled::Tree,
    grants: sled::Tree,
    posts: sled::Tree,
    posts_by_connection: sled::Tree,
    posts_due: sled::Tree,
    oauth_states: sled::Tree,
    events: sled::Tree,
    events_by_subject: sled::Tree,
    meta: sled::Tree,
    idempotency: sled::Tree,
}

struct Inner {
    db: sled::Db,
    trees: Trees,
    vault: Vault,
    key_source: KeySource,
    path: PathBuf,
    hold_virtual_time: bool,
    committer: GroupCommit,
}

type FlushResult = Result<(), String>;
type Waiter = tokio::sync::oneshot::Sender<FlushResult>;
type FlushHook = Box<dyn Fn() + Send + 'static>;

/// Group commit: durable commits queue a waiter; one thread takes every waiter queued so
/// far, flushes once, and answers them all. Waiters that arrive during a flush ride the
/// next one — which necessarily begins after their change was applied.
struct GroupCommit {
    sender: Option<std::sync::mpsc::Sender<Waiter>>,
    thread: Option<std::thread::JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
    acknowledged: Arc<AtomicU64>,
}

impl GroupCommit {
    fn start(db: sled::Db, before_flush: Option<FlushHook>) -> GroupCommit {
        let (sender, rx) = std::sync::mpsc::channel::<Waiter>();
        let flushes = Arc::new(AtomicU64::new(0));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let (f, a) = (flushes.clone(), acknowledged.clone());
        let thread = std::thread::Builder::new()
            .name("sled-group-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    if let Some(hook) = &before_flush {
                        hook();
                    }
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    f.fetch_add(1, Ordering::Relaxed);
                    a.fetch_add(waiters.len() as u64, Ordering::Relaxed);
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })
            .ok();
        GroupCommit {
            sender: thread.as_ref().map(|_| sender),
            thread,
            flushes,
            acknowledged,
        }
    }

    fn enqueue(&self) -> Result<tokio::sync::oneshot::Receiver<FlushResult>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sender
            .as_ref()
            .ok_or(StoreError::FlusherStopped)?
            .send(tx)
            .map_err(|_| StoreError::FlusherStopped)?;
        Ok(rx)
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it answers what is queued; joining it
        // releases its handle on the database, so the directory can be reopened at once.
        self.sender.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A set of changes applied as one transaction.
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
    error: Option<StoreError>,
}

enum Op {
    PutConnection(Box<Connection>),
    DeleteConnection(ConnectionKey),
    PutGrant(ConnectionKey, Zeroizing<Vec<u8>>),
    DeleteGrant(ConnectionKey),
    PutPost(Box<Post>),
    DeletePost(PostId),
    Event(Box<Event>),
    PutOAuthState(String, Zeroizing<Vec<u8>>, Timestamp),
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn put_connection(&mut self, c: &Connection) -> &mut Batch {
        self.ops.push(Op::PutConnection(Box::new(c.clone())));
        self
    }

    pub fn delete_connection(&mut self, key: &ConnectionKey) -> &mut Batch {
        self.ops.push(Op::DeleteConnection(key.clone()));
        self
    }

    pub fn put_grant(&mut self, key: &ConnectionKey, grant: &Grant) -> &mut Batch {
        match codec::encode(grant) {
            Ok(bytes) => self
                .ops
                .push(Op::PutGrant(key.clone(), Zeroizing::new(bytes))),
            Err(e) => self.fail(e.into()),
        }
        self
    }

    pub fn delete_grant(&mut self, key: &ConnectionKey) -> &mut Batch {
        self.ops.push(Op::DeleteGrant(key.clone()));
        self
    }

    pub fn put_post(&mut self, post: &Post) -> &mut Batch {
        self.ops.push(Op::PutPost(Box::new(post.clone())));
        self
    }

    pub fn delete_post(&mut self, id: PostId) -> &mut Batch {
        self.ops.push(Op::DeletePost(id));
        self
    }

    /// Records an event; the store assigns its sequence number on commit.
    pub fn event(&mut self, event: Event) -> &mut Batch {
        self.ops.push(Op::Event(Box::new(event)));
        self
    }

    pub fn put_oauth_state(&mut self, state: &str, pending: &PendingAuthorization) -> &mut Batch {
        match codec::encode(pending) {
            Ok(bytes) => self.ops.push(Op::PutOAuthState(
                state.to_owned(),
                Zeroizing::new(bytes),
                pending.expires_at,
            )),
            Err(e) => self.fail(e.into()),
        }
        self
    }

    fn fail(&mut self, e: StoreError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// The stored form of an OAuth state: the expiry and used flag stay readable so a replay
/// or a late callback can be told apart from a forgery without opening anything.
#[derive(serde::Serialize, serde::Deserialize)]
struct OAuthStateRecord {
    expires_at: Timestamp,
    used: bool,
    sealed: Vec<u8>,
}

/// A change with every byte computed, ready to write inside the transaction.
enum Prepared {
    Put {
        tree: usize,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Remove {
        tree: usize,
        key: Vec<u8>,
    },
    Post {
        key: [u8; 16],
        value: Vec<u8>,
        index: PostIndexKeys,
    },
    RemovePost {
        key: [u8; 16],
    },
    Event {
        key: [u8; 8],
        value: Vec<u8>,
        index: Vec<Vec<u8>>,
    },
}

// Tree positions inside the transaction tuple.
const X_CONNECTIONS: usize = 0;
const X_GRANTS: usize = 1;
const X_OAUTH: usize = 6;

/// The index keys a post has in a given state.
struct PostIndexKeys {
    by_connection: Vec<u8>,
    due: Option<Vec<u8>>,
}

fn post_index_keys(post: &Post) -> PostIndexKeys {
    let mut by_connection = post.connection.storage_key();
    by_connection.push(0);
    by_connection.push(post.state.index_byte());
    by_connection.extend_from_slice(post.id.as_bytes());
    let due =
        in_due_index(post).then(|| due_key(post.connection.platform, post.ready_at(), post.id));
    PostIndexKeys { by_connection, due }
}

/// Posts the platform queue must know about: waiting, paused, or mid-publish.
fn in_due_index(post: &Post) -> bool {
    post.state.is_pending() || post.state.label() == StateLabel::Publishing
}

fn due_key(platform: Platform, at: Timestamp, id: PostId) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(platform.index_byte());
    k.extend_from_slice(&at.to_sortable_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn grant_aad(key: &[u8]) -> Vec<u8> {
    let mut aad = b"grant\0".to_vec();
    aad.extend_from_slice(key);
    aad
}

fn oauth_aad(state: &str) -> Vec<u8> {
    let mut aad = b"oauth_state\0".to_vec();
    aad.extend_from_slice(state.as_bytes());
    aad
}

fn event_index_keys(e: &Event) -> Vec<Vec<u8>> {
    let seq = e.seq.to_be_bytes();
    let mut keys = Vec::with_capacity(2);
    let mut c = pen_prefix(&e.connection.pen_name);
    c.push(b'c');
    c.extend_from_slice(e.connection.platform.id().as_bytes());
    c.push(0);
    c.extend_from_slice(&seq);
    keys.push(c);
    if let Some(id) = e.post {
        let mut p = pen_prefix(&e.connection.pen_name);
        p.push(b'p');
        p.extend_from_slice(id.as_bytes());
        p.extend_from_slice(&seq);
        keys.push(p);
    }
    keys
}

fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Store {
    /// Opens (or creates) the store at `config.path` with the master key from
    /// `SOCIAL_STUDIO_MASTER_KEY` or the key file in that directory.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let (key, source) = MasterKey::from_environment_or_file(&config.path)?;
        Store::open_with_key(config, &key, source)
    }

    pub fn open_with_key(
        config: &StoreConfig,
        key: &MasterKey,
        source: KeySource,
    ) -> Result<Store, StoreError> {
        Store::open_inner(config, key, source, None)
    }

    /// [`Store::open_with_key`], with `hook` run on the flusher thread before every flush
    /// — for tests that must hold a flush open to see what waits for it.
    pub fn open_with_flush_hook(
        config: &StoreConfig,
        key: &MasterKey,
        source: KeySource,
        hook: Box<dyn Fn() + Send + 'static>,
    ) -> Result<Store, StoreError> {
        Store::open_inner(config, key, source, Some(hook))
    }

    fn open_inner(
        config: &StoreConfig,
        key: &MasterKey,
        key_source: KeySource,
        before_flush: Option<FlushHook>,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&config.path).map_err(|source| StoreError::DataDir {
            path: config.path.clone(),
            source,
        })?;
        let db = sled::Config::new()
            .path(config.path.join("db"))
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(config.background_flush_ms)
            .open()?;
        let trees = Trees {
            connections: db.open_tree(T_CONNECTIONS)?,
            grants: db.open_tree(T_GRANTS)?,
            posts: db.open_tree(T_POSTS)?,
            posts_by_connection: db.open_tree(T_POSTS_BY_CONNECTION)?,
            posts_due: db.open_tree(T_POSTS_DUE)?,
            oauth_states: db.open_tree(T_OAUTH_STATES)?,
            events: db.open_tree(T_EVENTS)?,
            events_by_subject: db.open_tree(T_EVENTS_BY_SUBJECT)?,
            meta: db.open_tree(T_META)?,
            idempotency: db.open_tree(T_IDEMPOTENCY)?,
        };
        let vault = Vault::new(key);
        match trees.meta.get(KEY_CHECK)? {
            Some(sealed) => {
                vault
                    .open(KEY_CHECK, &sealed, String::new)
                    .map_err(|_| VaultError::WrongMasterKey)?;
            }
            None => {
                trees
                    .meta
                    .insert(KEY_CHECK, vault.seal(KEY_CHECK, KEY_CHECK_PLAINTEXT))?;
                db.flush()?;
            }
        }
        let committer = GroupCommit::start(db.clone(), before_flush);
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                trees,
                vault,
                key_source,
                path: config.path.clone(),
                hold_virtual_time: config.hold_virtual_time,
                committer,
            }),
        })
    }

    /// Where the master key came from (the service warns when it is a file beside the data).
    pub fn key_source(&self) -> &KeySource {
        &self.inner.key_source
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Applies `batch` as one transaction, then, for [`Durability::Durable`], waits for a
    /// flush that began after it. Returns the recorded events with their sequence numbers.
    pub async fn commit(
        &self,
        batch: Batch,
        durability: Durability,
    ) -> Result<Vec<Event>, StoreError> {
        let events = self.apply(batch)?;
        if durability == Durability::Durable {
            self.sync().await?;
        }
        Ok(events)
    }

    /// Blocking form of [`Store::commit`] for threads outside an async runtime.
    pub fn commit_blocking(
        &self,
        batch: Batch,
        durability: Durability,
    ) -> Result<Vec<Event>, StoreError> {
        let events = self.apply(batch)?;
        if durability == Durability::Durable {
            self.sync_blocking()?;
        }
        Ok(events)
    }

    /// Waits until everything applied before this call is on disk (group commit).
    pub async fn sync(&self) -> Result<(), StoreError> {
        let rx = self.inner.committer.enqueue()?;
        let answer = if self.inner.hold_virtual_time {
            tokio::task::spawn_blocking(move || rx.blocking_recv())
                .await
                .map_err(|_| StoreError::FlusherStopped)?
        } else {
            rx.await
        };
        answer
            .map_err(|_| StoreError::FlusherStopped)?
            .map_err(StoreError::Flush)
    }

    /// [`Store::sync`] for threads outside an async runtime.
    pub fn sync_blocking(&self) -> Result<(), StoreError> {
        let rx = self.inner.committer.enqueue()?;
        rx.blocking_recv()
            .map_err(|_| StoreError::FlusherStopped)?
            .map_err(StoreError::Flush)
    }

    /// A flush of its own, not shared with anyone: the baseline group commit is measured
    /// against.
    pub fn flush_unshared(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    pub fn flush_stats(&self) -> FlushStats {
        FlushStats {
            flushes: self.inner.committer.flushes.load(Ordering::Relaxed),
            acknowledged: self.inner.committer.acknowledged.load(Ordering::Relaxed),
        }
    }

    /// Bytes sled reports on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// Applies `batch` atomically without waiting for the disk.
    pub fn apply(&self, mut batch: Batch) -> Result<Vec<Event>, StoreError> {
        if let Some(e) = batch.error.take() {
            return Err(e);
        }
        let mut prepared = Vec::with_capacity(batch.ops.len() + 2);
        let mut events = Vec::new();
        for op in batch.ops {
            match op {
                Op::PutConnection(c) => prepared.push(Prepared::Put {
                    tree: X_CONNECTIONS,
                    key: c.key.storage_key(),
                    value: codec::encode(&*c)?,
                }),
                Op::DeleteConnection(k) => prepared.push(Prepared::Remove {
                    tree: X_CONNECTIONS,
                    key: k.storage_key(),
                }),
                Op::PutGrant(k, plain) => {
                    let key = k.storage_key();
                    let value = self.inner.vault.seal(&grant_aad(&key), &plain);
                    prepared.push(Prepared::Put {
                        tree: X_GRANTS,
                        key,
                        value,
                    });
                }
                Op::DeleteGrant(k) => prepared.push(Prepared::Remove {
                    tree: X_GRANTS,
                    key: k.storage_key(),
                }),
                Op::PutPost(p) => prepared.push(Prepared::Post {
                    key: *p.id.as_bytes(),
                    value: codec::encode(&*p)?,
                    index: post_index_keys(&p),
                }),
                Op::DeletePost(id) => prepared.push(Prepared::RemovePost {
                    key: *id.as_bytes(),
                }),
                Op::Event(mut e) => {
                    // Assigned outside the transaction: sled ids are unique and increasing
                    // across restarts, and a retried transaction keeps the same number.
                    e.seq = self.inner.db.generate_id()? + 1;
                    prepared.push(Prepared::Event {
                        key: e.seq.to_be_bytes(),
                        value: codec::encode(&*e)?,
                        index: event_index_keys(&e),
                    });
                    events.push(*e);
                }
                Op::PutOAuthState(state, plain, expires_at) => {
                    let sealed = self.inner.vault.seal(&oauth_aad(&state), &plain);
                    let value = codec::encode(&OAuthStateRecord {
                        expires_at,
                        used: false,
                        sealed,
                    })?;
                    prepared.push(Prepared::Put {
                        tree: X_OAUTH,
                        key: state.into_bytes(),
                        value,
                    });
                }
            }
        }
        let t = &self.inner.trees;
        let result: Result<(), TransactionError<()>> = (
            &t.connections,
            &t.grants,
            &t.posts,
            &t.posts_by_connection,
            &t.posts_due,
            &t.events,
            &t.oauth_states,
            &t.events_by_subject,
        )
            .transaction(
                |(connections, grants, posts, by_conn, due, events, oauth, by_subject)| {
                    let by_index = |i: usize| -> &TransactionalTree {
                        match i {
                            X_CONNECTIONS => connections,
                            X_GRANTS => grants,
                            _ => oauth,
                        }
                    };
                    for p in &prepared {
                        match p {
                            Prepared::Put { tree, key, value } => {
                                by_index(*tree).insert(key.as_slice(), value.as_slice())?;
                            }
                            Prepared::Remove { tree, key } => {
                                by_index(*tree).remove(key.as_slice())?;
                            }
                            Prepared::Post { key, value, index } => {
                                if let Some(old) = posts.get(key)? {
                                    remove_post_index(by_conn, due, key, &old)?;
                                }
                                posts.insert(key, value.as_slice())?;
                                by_conn.insert(index.by_connection.as_slice(), &[][..])?;
                                if let Some(d) = &index.due {
                                    due.insert(d.as_slice(), &[][..])?;
                                }
                            }
                            Prepared::RemovePost { key } => {
                                if let Some(old) = posts.remove(key)? {
                                    remove_post_index(by_conn, due, key, &old)?;
                                }
                            }
                            Prepared::Event { key, value, index } => {
                                events.insert(key, value.as_slice())?;
                                for k in index {
                                    by_subject.insert(k.as_slice(), &[][..])?;
                                }
                            }
                        }
                    }
                    Ok(())
                },
            );
        match result {
            Ok(()) => Ok(events),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => {
                Err(StoreError::Flush("transaction aborted".into()))
            }
        }
    }

    // ---- connections and grants ----

    pub fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        let k = key.storage_key();
        match self.inner.trees.connections.get(&k)? {
            Some(v) => Ok(Some(codec::decode(T_CONNECTIONS, &k, &v)?)),
            None => Ok(None),
        }
    }

    /// The connections of one pen name, in platform id order.
    pub fn connections_of(&self, pen: &PenName) -> Result<Vec<Connection>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.trees.connections.scan_prefix(pen_prefix(pen)) {
            let (k, v) = item?;
            out.push(codec::decode(T_CONNECTIONS, &k, &v)?);
        }
        Ok(out)
    }

    /// Every connection of every pen name, for boot.
    pub fn all_connections(&self) -> Result<Loaded<Connection>, StoreError> {
        let mut loaded = Loaded {
            items: Vec::new(),
            unreadable: Vec::new(),
        };
        for item in self.inner.trees.connections.iter() {
            let (k, v) = item?;
            match codec::decode(T_CONNECTIONS, &k, &v) {
                Ok(c) => loaded.items.push(c),
                Err(e) => loaded.unreadable.push(e.into()),
            }
        }
        Ok(loaded)
    }

    pub fn grant(&self, key: &ConnectionKey) -> Result<Option<Grant>, StoreError> {
        let k = key.storage_key();
        let Some(sealed) = self.inner.trees.grants.get(&k)? else {
            return Ok(None);
        };
        let plain = self.inner.vault.open(&grant_aad(&k), &sealed, || {
            format!("grant {}", KeyDisplay(k.clone()))
        })?;
        Ok(Some(codec::decode(T_GRANTS, &k, &plain)?))
    }

    // ---- posts ----

    pub fn post(&self, id: PostId) -> Result<Option<Post>, StoreError> {
        match self.inner.trees.posts.get(id.as_bytes())? {
            Some(v) => Ok(Some(codec::decode(T_POSTS, id.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// The posts of one connection, optionally only those in one state.
    pub fn posts_of_connection(
        &self,
        key: &ConnectionKey,
        state: Option<StateLabel>,
    ) -> Result<Vec<Post>, StoreError> {
        let mut prefix = key.storage_key();
        prefix.push(0);
        if let Some(s) = state {
            prefix.push(label_byte(s));
        }
        self.posts_from_index(&self.inner.trees.posts_by_connection, prefix, |k| {
            k.get(k.len().saturating_sub(16)..)
        })
    }

    /// How many posts a connection has in one state, from the index alone.
    pub fn count_posts_of_connection(
        &self,
        key: &ConnectionKey,
        state: StateLabel,
    ) -> Result<usize, StoreError> {
        let mut prefix = key.storage_key();
        prefix.push(0);
        prefix.push(label_byte(state));
        let mut n = 0;
        for item in self
            .inner
            .trees
            .posts_by_connection
            .scan_prefix(prefix)
            .keys()
        {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Every post of a pen name, across its connections.
    pub fn posts_of_pen(&self, pen: &PenName) -> Result<Vec<Post>, StoreError> {
        self.posts_from_index(
            &self.inner.trees.posts_by_connection,
            pen_prefix(pen),
            |k| k.get(k.len().saturating_sub(16)..),
        )
    }

    fn posts_from_index(
        &self,
        index: &sled::Tree,
        prefix: Vec<u8>,
        id_of: impl Fn(&[u8]) -> Option<&[u8]>,
    ) -> Result<Vec<Post>, StoreError> {
        let mut out = Vec::new();
        for item in index.scan_prefix(prefix) {
            let (k, _) = item?;
            let Some(id) = id_of(&k).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                continue;
            };
            if let Some(p) = self.post(PostId::from_bytes(id))? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The posts of one platform that are Scheduled, Paused or Publishing with a ready
    /// time before `before`, in due order — without scanning other platforms.
    pub fn due_posts(
        &self,
        platform: Platform,
        before: Timestamp,
    ) -> Result<Vec<Post>, StoreError> {
        let start = vec![platform.index_byte()];
        let mut end = start.clone();
        end.extend_from_slice(&before.to_sortable_bytes());
        let mut out = Vec::new();
        for item in self.inner.trees.posts_due.range(start..end) {
            let (k, _) = item?;
            if let Some(id) = k.get(9..25).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                if let Some(p) = self.post(PostId::from_bytes(id))? {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// Every post that is not finished and not parked for a person (Scheduled, Paused,
    /// Publishing), for rebuilding the queues at boot.
    pub fn queued_posts(&self) -> Result<Loaded<Post>, StoreError> {
        let mut loaded = Loaded {
            items: Vec::new(),
            unreadable: Vec::new(),
        };
        for item in self.inner.trees.posts_due.iter() {
            let (k, _) = item?;
            let Some(id) = k.get(9..25).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                continue;
            };
            match self.post(PostId::from_bytes(id)) {
                Ok(Some(p)) => loaded.items.push(p),
                Ok(None) => {}
                Err(e) => loaded.unreadable.push(e),
            }
        }
        Ok(loaded)
    }

    // ---- events ----

    /// Events of a connection (its own and its posts'), newest first.
    pub fn events_of_connection(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        let mut prefix = pen_prefix(&key.pen_name);
        prefix.push(b'c');
        prefix.extend_from_slice(key.platform.id().as_bytes());
        prefix.push(0);
        self.events_by_prefix(prefix, page)
    }

    /// Events of one post, newest first. The pen name keeps the lookup inside its owner.
    pub fn events_of_post(
        &self,
        pen: &PenName,
        id: PostId,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        let mut prefix = pen_prefix(pen);
        prefix.push(b'p');
        prefix.extend_from_slice(id.as_bytes());
        self.events_by_prefix(prefix, page)
    }

    fn events_by_prefix(&self, prefix: Vec<u8>, page: EventPage) -> Result<Vec<Event>, StoreError> {
        let mut end = match page.before {
            Some(seq) => {
                let mut e = prefix.clone();
                e.extend_from_slice(&seq.to_be_bytes());
                e
            }
            None => prefix_end(&prefix).unwrap_or_default(),
        };
        if end.is_empty() {
            end = vec![0xff; prefix.len() + 9];
        }
        let mut out = Vec::new();
        for item in self
            .inner
            .trees
            .events_by_subject
            .range(prefix.clone()..end)
            .rev()
        {
            if out.len() >= page.limit {
                break;
            }
            let (k, _) = item?;
            let Some(seq) = k
                .get(k.len().saturating_sub(8)..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
            else {
                continue;
            };
            if let Some(e) = self.event(u64::from_be_bytes(seq))? {
                out.push(e);
            }
        }
        Ok(out)
    }

    pub fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        let k = seq.to_be_bytes();
        match self.inner.trees.events.get(k)? {
            Some(v) => Ok(Some(codec::decode(T_EVENTS, &k, &v)?)),
            None => Ok(None),
        }
    }

    /// Events after `seq` in order, across pen names (the admin event stream's replay).
    pub fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        let start = seq.saturating_add(1).to_be_bytes();
        for item in self.inner.trees.events.range(start..).take(limit) {
            let (k, v) = item?;
            out.push(codec::decode(T_EVENTS, &k, &v)?);
        }
        Ok(out)
    }

    // ---- OAuth states ----

    /// Consumes an OAuth `state`: a state can be taken once; afterwards it reads as used.
    pub fn take_oauth_state(&self, state: &str, now: Timestamp) -> Result<StateLookup, StoreError> {
        let tree = &self.inner.trees.oauth_states;
        let key = state.as_bytes();
        loop {
            let Some(current) = tree.get(key)? else {
                return Ok(StateLookup::Unknown);
            };
            let mut record: OAuthStateRecord = codec::decode(T_OAUTH_STATES, key, &current)?;
            if record.used {
                return Ok(StateLookup::AlreadyUsed);
            }
            let sealed = std::mem::take(&mut record.sealed);
            record.used = true;
            let spent = codec::encode(&record)?;
            // Compare-and-swap: of two concurrent callbacks with one state, one wins.
            if tree
                .compare_and_swap(key, Some(current), Some(spent))?
                .is_err()
            {
                continue;
            }
            if record.expires_at <= now {
                return Ok(StateLookup::Expired);
            }
            let plain = self
                .inner
                .vault
                .open(&oauth_aad(state), &sealed, || "an OAuth state".to_string())?;
            return Ok(StateLookup::Taken(codec::decode(
                T_OAUTH_STATES,
                key,
                &plain,
            )?));
        }
    }

    /// Forgets states that expired more than `keep` ago (used ones are kept that long so a
    /// replay is reported as "already used", not "unknown").
    pub fn purge_oauth_states(
        &self,
        now: Timestamp,
        keep: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let tree = &self.inner.trees.oauth_states;
        let mut removed = 0;
        for item in tree.iter() {
            let (k, v) = item?;
            let stale = match codec::decode::<OAuthStateRecord>(T_OAUTH_STATES, &k, &v) {
                Ok(r) => r.expires_at.saturating_add(keep) <= now,
                Err(_) => true,
            };
            if stale {
                tree.remove(k)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    // ---- idempotency ----

    /// What a request with this `Idempotency-Key` created before, if anything.
    pub fn idempotent_result(
        &self,
        pen: &PenName,
        key: &str,
    ) -> Result<Option<IdempotentRequest>, StoreError> {
        let mut k = pen_prefix(pen);
        k.extend_from_slice(key.as_bytes());
        match self.inner.trees.idempotency.get(&k)? {
            Some(v) => Ok(Some(codec::decode(T_IDEMPOTENCY, &k, &v)?)),
            None => Ok(None),
        }
    }

    /// Remembers what a request created, durably; the first writer of a key wins and a
    /// later one gets the earlier record back.
    pub async fn remember_idempotent(
        &self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> Result<IdempotentRequest, StoreError> {
        let mut k = pen_prefix(pen);
        k.extend_from_slice(key.as_bytes());
        let value = codec::encode(record)?;
        let previous = self.inner.trees.idempotency.compare_and_swap(
            &k,
            None as Option<&[u8]>,
            Some(value),
        )?;
        self.sync().await?;
        match previous {
            Ok(()) => Ok(record.clone()),
            Err(cas) => match cas.current {
                Some(v) => Ok(codec::decode(T_IDEMPOTENCY, &k, &v)?),
                None => Ok(record.clone()),
            },
        }
    }

    // ---- erasure ----

    /// Erases everything a pen name owns: connections, grants, posts (and their index
    /// entries), events and idempotency records, in one transaction per tree group.
    /// The caller stops the pen name's actors first.
    pub async fn erase_pen_name(&self, pen: &PenName) -> Result<ErasedCounts, StoreError> {
        let t = &self.inner.trees;
        let prefix = pen_prefix(pen);
        let keys = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, StoreError> {
            tree.scan_prefix(&prefix)
                .keys()
                .map(|k| k.map_err(StoreError::from))
                .collect()
        };
        let connections = keys(&t.connections)?;
        let grants = keys(&t.grants)?;
        let idempotency = keys(&t.idempotency)?;
        let posts = self.posts_of_pen(pen)?;
        let event_index = keys(&t.events_by_subject)?;
        let mut batch = Batch::new();
        for p in &posts {
            batch.delete_post(p.id);
        }
        self.apply(batch)?;
        let mut events = 0;
        for k in &event_index {
            if let Some(seq) = k.get(k.len().saturating_sub(8)..) {
                if t.events.remove(seq)?.is_some() {
                    events += 1;
                }
            }
            t.events_by_subject.remove(k)?;
        }
        for k in &connections {
            t.connections.remove(k)?;
        }
        for k in &grants {
            t.grants.remove(k)?;
        }
        for k in &idempotency {
            t.idempotency.remove(k)?;
        }
        self.sync().await?;
        Ok(ErasedCounts {
            connections: connections.len(),
            posts: posts.len(),
            events,
        })
    }

    // ---- integrity ----

    /// Walks every tree and checks records decode and indexes agree with records.
    pub fn check_integrity(&self) -> Result<IntegrityReport, StoreError> {
        let t = &self.inner.trees;
        let mut r = IntegrityReport::default();
        for item in t.connections.iter() {
            let (k, v) = item?;
            r.connections += 1;
            match codec::decode::<Connection>(T_CONNECTIONS, &k, &v) {
                Ok(c) if c.key.storage_key() != k.as_ref() => r.problems.push(format!(
                    "connection under {} claims key {}",
                    KeyDisplay(k.to_vec()),
                    c.key
                )),
                Ok(_) => {}
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        for item in t.grants.iter() {
            let (k, _) = item?;
            r.grants += 1;
            if t.connections.get(&k)?.is_none() {
                r.problems.push(format!(
                    "grant {} has no connection",
                    KeyDisplay(k.to_vec())
                ));
            }
        }
        let mut expected_by_conn = std::collections::HashSet::new();
        let mut expected_due = std::collections::HashSet::new();
        for item in t.posts.iter() {
            let (k, v) = item?;
            r.posts += 1;
            match codec::decode::<Post>(T_POSTS, &k, &v) {
                Ok(p) => {
                    let idx = post_index_keys(&p);
                    expected_by_conn.insert(idx.by_connection);
                    if let Some(d) = idx.due {
                        expected_due.insert(d);
                    }
                }
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        let mut seen = 0;
        for item in t.posts_by_connection.iter() {
            let (k, _) = item?;
            seen += 1;
            if !expected_by_conn.contains(k.as_ref()) {
                r.problems.push(format!(
                    "stale posts_by_connection entry {}",
                    KeyDisplay(k.to_vec())
                ));
            }
        }
        if seen != expected_by_conn.len() {
            r.problems.push(format!(
                "posts_by_connection has {seen} entries for {} posts",
                expected_by_conn.len()
            ));
        }
        let mut seen_due = 0;
        for item in t.posts_due.iter() {
            let (k, _) = item?;
            seen_due += 1;
            if !expected_due.contains(k.as_ref()) {
                r.problems
                    .push(format!("stale posts_due entry {}", KeyDisplay(k.to_vec())));
            }
        }
        if seen_due != expected_due.len() {
            r.problems.push(format!(
                "posts_due has {seen_due} entries, expected {}",
                expected_due.len()
            ));
        }
        for item in t.events.iter() {
            let (k, v) = item?;
            r.events += 1;
            if let Err(e) = codec::decode::<Event>(T_EVENTS, &k, &v) {
                r.problems.push(e.to_string());
            }
        }
        for item in t.events_by_subject.iter() {
            let (k, _) = item?;
            let seq = k.get(k.len().saturating_sub(8)..).unwrap_or_default();
            if t.events.get(seq)?.is_none() {
                r.problems.push(format!(
                    "event index {} points at no event",
                    KeyDisplay(k.to_vec())
                ));
            }
        }
        Ok(r)
    }

    /// Writes raw bytes under a key, bypassing the codec. For tests that need a corrupt
    /// record; never used by the engine.
    #[doc(hidden)]
    pub fn raw_insert_for_tests(
        &self,
        tree: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.db.open_tree(tree)?.insert(key, value)?;
        Ok(())
    }

    /// Reads raw bytes under a key. For tests only.
    #[doc(hidden)]
    pub fn raw_get_for_tests(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.db.open_tree(tree)?.get(key)?.map(|v| v.to_vec()))
    }
}

fn remove_post_index(
    by_conn: &TransactionalTree,
    due: &TransactionalTree,
    key: &[u8; 16],
    old: &[u8],
) -> Result<(), sled::transaction::UnabortableTransactionError> {
    match codec::decode::<Post>(T_POSTS, key, old) {
        Ok(old) => {
            let idx = post_index_keys(&old);
            by_conn.remove(idx.by_connection)?;
            if let Some(d) = idx.due {
                due.remove(d)?;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "overwriting an unreadable post; its old index entries may remain")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A durable commit must not return before the flush that covers it has completed:
    /// hold the flusher inside its flush and see the commit wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_commit_returns_only_after_its_flush_completes() {
        let dir = tempfile::tempdir().unwrap();
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let hook: FlushHook = Box::new(move || {
            let _ = entered_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        });
        let store = Store::open_inner(
            &StoreConfig {
                background_flush_ms: None,
                ..StoreConfig::new(dir.path())
            },
            &MasterKey::generate(),
            KeySource::Provided,
            Some(hook),
        )
        .unwrap();
        let post = crate::fixtures::post(&crate::fixtures::key("jane", Platform::X), 1);
        let mut batch = Batch::new();
        batch.put_post(&post);
        let s = store.clone();
        let mut commit = tokio::spawn(async move { s.commit(batch, Durability::Durable).await });

        // The flusher has started this commit's flush and is held inside it.
        tokio::task::spawn_blocking(move || entered_rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("flusher began a flush");
        // Applied (visible) but not acknowledged while the flush is held.
        assert!(store.post(post.id).unwrap().is_some());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut commit)
                .await
                .is_err(),
            "commit returned while its flush was still running"
        );
        assert_eq!(store.flush_stats().flushes, 0);
        release_tx.send(()).unwrap();
        commit.await.unwrap().unwrap();
        assert_eq!(store.flush_stats().flushes, 1);
        assert_eq!(store.flush_stats().acknowledged, 1);
    }

    /// Commits queued while a flush runs are answered together by the next one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_durable_commits_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let hook: FlushHook = Box::new(move || {
            let _ = release_rx.lock().unwrap().recv();
        });
        let store = Store::open_inner(
            &StoreConfig {
                background_flush_ms: None,
                ..StoreConfig::new(dir.path())
            },
            &MasterKey::generate(),
            KeySource::Provided,
            Some(hook),
        )
        .unwrap();
        let key = crate::fixtures::key("jane", Platform::X);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            let p = crate::fixtures::post(&key, i);
            tasks.push(tokio::spawn(async move {
                let mut b = Batch::new();
                b.put_post(&p);
                s.commit(b, Durability::Durable).await
            }));
        }
        // Every change is applied (and so queued for a flush) while the flusher is held;
        // then let it run freely.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.posts_of_connection(&key, None).unwrap().len() < 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "commits were not applied"
            );
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            let _ = release_tx.send(());
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let stats = store.flush_stats();
        assert_eq!(stats.acknowledged, 50);
        assert!(
            stats.flushes <= 5,
            "50 concurrent commits took {} flushes",
            stats.flushes
        );
    }
}
