//! The store port: everything the actors and `Studio` ask of storage, as one async trait.
//!
//! It is written so that a networked database can stand behind it as well as the embedded
//! one ([`crate::SledStore`]):
//!
//! - **Writes are batches.** A [`Batch`] is applied atomically; the backend decides how
//!   (a redo journal for sled, a transaction for a database). A batch's place in the
//!   commit order is fixed when [`Store::commit`] is *called*, not when its future is
//!   polled, so a caller can hand a batch over, go on with its work, and still know that
//!   its next batch lands after this one.
//! - **Durability per commit.** [`Durability::Durable`] resolves once the change would
//!   survive a crash; [`Durability::Buffered`] resolves once it is applied, and the backend
//!   makes it durable soon after (a group commit carries it).
//! - **Events in order.** The store numbers events as it applies them, and
//!   [`Store::subscribe`] delivers them once durable, in sequence order. A reader of
//!   [`Store::events_after`] never sees event N+1 before event N.
//! - **Ownership fencing.** [`Store::claim`] gives a writer an [`Epoch`] on a connection;
//!   a batch carrying [`Batch::fence`] applies only if that epoch is still the
//!   connection's newest, so a writer that lost ownership cannot write afterwards.
//! - **Nothing unreadable is skipped in silence.** Every scan returns [`Loaded`]: what
//!   could be read, and what could not ([`UnreadableRecord`]); [`Store::unreadable`]
//!   names every record found unreadable so far.
//!
//! - **Backups are snapshots.** [`Store::backup`] writes every record to an archive
//!   ([`crate::archive`]) from one consistent state — sled holds commits while it
//!   copies, a database reads one snapshot — so no batch is ever half in a backup.
//!
//! No backend blocks a runtime thread on the network. Backend specifics (sled's flush
//! statistics, size on disk, test hooks) are methods of the backend, not of the port.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::batch::{Batch, Epoch};
use crate::{
    Connection, ConnectionKey, Event, Grant, IdempotentRequest, PenName, Post, PostId, PostStatus,
    StateLabel, StateLookup, StoreError, Timestamp,
};

/// The store as the engine holds it: cheap to clone, shared by every actor.
pub type SharedStore = Arc<dyn Store>;

/// Whether a commit waits for its change to become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Applied atomically and visible at once; made durable by the next group commit.
    Buffered,
    /// Applied atomically, and durable before the commit resolves.
    Durable,
}

/// What a commit recorded: its events, numbered.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub events: Vec<Event>,
}

/// A commit in progress: its place in the order is already fixed.
pub type CommitFuture = Pin<Box<dyn Future<Output = Result<Committed, StoreError>> + Send>>;

/// The records a scan could read, and the ones it could not. One bad record never hides
/// the rest.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub items: Vec<T>,
    pub unreadable: Vec<UnreadableRecord>,
}

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Loaded {
            items: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

/// A stored record that cannot be read, named as precisely as its key allows, so a person
/// can find what it belonged to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnreadableRecord {
    /// The kind of record (`connection`, `post_status`, `event`…).
    pub kind: String,
    /// The record's key, readably.
    pub key: String,
    /// The pen name that owns it, where the key says.
    pub pen_name: Option<PenName>,
    /// The connection it belongs to, where known.
    pub connection: Option<ConnectionKey>,
    /// The post, for post records.
    pub post: Option<PostId>,
    /// Why it cannot be read.
    pub problem: String,
}

/// How many posts of one connection are in each state. Kept current with every
/// transition, so reading it costs the same for 3 posts or 300,000.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostCounts {
    pub scheduled: u32,
    pub paused: u32,
    pub publishing: u32,
    pub published: u32,
    pub failed: u32,
    pub unconfirmed: u32,
    pub held: u32,
    pub cancelled: u32,
}

impl PostCounts {
    fn slot(&mut self, label: StateLabel) -> Option<&mut u32> {
        Some(match label {
            StateLabel::Scheduled => &mut self.scheduled,
            StateLabel::Paused => &mut self.paused,
            StateLabel::Publishing => &mut self.publishing,
            StateLabel::Published => &mut self.published,
            StateLabel::Failed => &mut self.failed,
            StateLabel::Unconfirmed => &mut self.unconfirmed,
            StateLabel::Held => &mut self.held,
            StateLabel::Cancelled => &mut self.cancelled,
            StateLabel::NotConnected
            | StateLabel::Active
            | StateLabel::Expired
            | StateLabel::Error => return None,
        })
    }

    /// The count for one post state (0 for connection states).
    pub fn get(&self, label: StateLabel) -> u32 {
        let mut copy = *self;
        copy.slot(label).map_or(0, |n| *n)
    }

    /// Moves one post from `from` (none: a new post) to `to` (none: deleted).
    pub fn apply(&mut self, from: Option<StateLabel>, to: Option<StateLabel>) {
        if let Some(n) = from.and_then(|l| self.slot(l)) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = to.and_then(|l| self.slot(l)) {
            *n = n.saturating_add(1);
        }
    }

    pub fn total(&self) -> u64 {
        [
            self.scheduled,
            self.paused,
            self.publishing,
            self.published,
            self.failed,
            self.unconfirmed,
            self.held,
            self.cancelled,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

impl crate::codec::Record for PostCounts {
    const KIND: &'static str = "post_counts";
    const VERSION: u8 = 1;
}

/// How many connections are in each status, across pen names. Kept current with every
/// status change, so any node can answer without reading every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionCounts {
    pub active: u64,
    pub expired: u64,
    pub error: u64,
}

impl ConnectionCounts {
    /// Moves one connection from `from` (none: new) to `to` (none: removed).
    pub fn apply(&mut self, from: Option<StateLabel>, to: Option<StateLabel>) {
        for (label, up) in [(from, false), (to, true)] {
            let Some(label) = label else { continue };
            let n = match label {
                StateLabel::Active => &mut self.active,
                StateLabel::Expired => &mut self.expired,
                StateLabel::Error => &mut self.error,
                _ => continue,
            };
            *n = if up {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
    }

    pub fn total(&self) -> u64 {
        self.active + self.expired + self.error
    }
}

impl crate::codec::Record for ConnectionCounts {
    const KIND: &'static str = "connection_counts";
    const VERSION: u8 = 1;
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

/// What [`Store::erase_pen_name`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasedCounts {
    pub connections: usize,
    pub posts: usize,
    pub events: usize,
    /// Records among them that could not be read (erased all the same).
    pub unreadable: usize,
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

/// What a store is and what it did when it opened, for the operator.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    /// `sled`, `postgres`…
    pub backend: &'static str,
    /// The layout format the store is at.
    pub format: u32,
    /// Where it lives (a directory, a database name; never a password).
    pub location: String,
    /// What opening did, in sentences: a migration, a replayed journal, a finished erasure.
    pub opened: Vec<String>,
}

/// What [`Store::backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// Records in the archive.
    pub records: u64,
    /// Records per tree.
    pub per_tree: std::collections::BTreeMap<String, u64>,
    /// The archive's length in bytes.
    pub bytes: u64,
    /// How long commits waited while the records were copied.
    pub commits_held: Duration,
}

/// The store port. See the module documentation for what every backend promises.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `batch` atomically. Its place in the commit order is fixed by this call;
    /// the future resolves when it is applied ([`Durability::Buffered`]) or durable
    /// ([`Durability::Durable`]), with its events numbered.
    fn commit(&self, batch: Batch, durability: Durability) -> CommitFuture;

    /// Resolves once everything committed before this call is durable.
    async fn sync(&self) -> Result<(), StoreError>;

    /// Every event from now on, once durable, in sequence order. A receiver that falls
    /// behind is told how many it missed and can read them with [`Store::events_after`].
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// Takes ownership of a connection: every epoch claimed before is fenced.
    async fn claim(&self, key: &ConnectionKey) -> Result<Epoch, StoreError>;

    // ---- connections and grants ----

    async fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError>;

    /// The connections of one pen name, in platform id order.
    async fn connections_of(&self, pen: &PenName) -> Result<Loaded<Connection>, StoreError>;

    /// Every connection of every pen name, for boot.
    async fn all_connections(&self) -> Result<Loaded<Connection>, StoreError>;

    /// How many connections are in each status, in constant time.
    async fn connection_counts(&self) -> Result<ConnectionCounts, StoreError>;

    async fn grant(&self, key: &ConnectionKey) -> Result<Option<Grant>, StoreError>;

    // ---- posts ----

    async fn post(&self, id: PostId) -> Result<Option<Post>, StoreError>;

    async fn posts_of_connection(&self, key: &ConnectionKey) -> Result<Loaded<Post>, StoreError>;

    /// Every post of a pen name, across its connections (also those whose connection is
    /// gone).
    async fn posts_of_pen(&self, pen: &PenName) -> Result<Loaded<Post>, StoreError>;

    /// The status of every post a platform queue holds (Scheduled, Paused, Publishing),
    /// for rebuilding the queues at boot.
    async fn queued_posts(&self) -> Result<Loaded<PostStatus>, StoreError>;

    /// How many posts of a connection are in each state, in constant time.
    async fn post_counts(&self, key: &ConnectionKey) -> Result<PostCounts, StoreError>;

    // ---- events ----

    /// Durable events after `seq`, in order, across pen names (the event stream's replay).
    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Events of a connection (its own and its posts'), newest first.
    async fn events_of_connection(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError>;

    async fn event(&self, seq: u64) -> Result<Option<Event>, StoreError>;

    /// Events of one post, newest first. The pen name keeps the lookup inside its owner.
    /// Read from the post's connection's events: a post has a handful.
    async fn events_of_post(
        &self,
        pen: &PenName,
        id: PostId,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        let Some(post) = self.post(id).await? else {
            return Ok(Vec::new());
        };
        if post.connection.pen_name != *pen {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut before = page.before;
        loop {
            let batch = self
                .events_of_connection(&post.connection, EventPage { before, limit: 512 })
                .await?;
            let Some(last) = batch.last() else { break };
            before = Some(last.seq);
            let full = batch.len() < 512;
            out.extend(batch.into_iter().filter(|e| e.post == Some(id)));
            if out.len() >= page.limit || full {
                break;
            }
        }
        out.truncate(page.limit);
        Ok(out)
    }

    // ---- OAuth states ----

    /// Consumes an OAuth `state`: a state can be taken once; afterwards it reads as used.
    async fn take_oauth_state(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<StateLookup, StoreError>;

    /// Forgets states that expired more than `keep` ago.
    async fn purge_oauth_states(&self, now: Timestamp, keep: Duration)
        -> Result<usize, StoreError>;

    // ---- idempotency ----

    /// What a request with this `Idempotency-Key` created before, if anything.
    async fn idempotent_result(
        &self,
        pen: &PenName,
        key: &str,
    ) -> Result<Option<IdempotentRequest>, StoreError>;

    /// Remembers what a request created, durably; the first writer of a key wins and a
    /// later one gets the earlier record back.
    async fn remember_idempotent(
        &self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> Result<IdempotentRequest, StoreError>;

    // ---- retention ----

    /// Removes the events recorded before `before`, oldest first, in bounded batches (each
    /// its own commit, so a purge never holds commits back for long), keeping every
    /// connection's event references true. It stops at the first event recorded at or
    /// after `before` (events are kept in sequence order, so a clock that once ran back
    /// keeps a few older ones a while longer) and at the first record it cannot read.
    /// Returns how many events it removed.
    async fn purge_events_before(&self, before: Timestamp) -> Result<usize, StoreError>;

    /// The highest sequence number [`Store::purge_events_before`] has removed, 0 when it
    /// never removed any: a reader resuming after a lower number has missed events.
    async fn events_purged_through(&self) -> Result<u64, StoreError>;

    /// Forgets the `Idempotency-Key` records created before `before`, in bounded
    /// batches; a request retried with such a key afterwards is a new request. A record
    /// that cannot be read is kept (and named in [`Store::unreadable`]). Returns how many
    /// it removed.
    async fn purge_idempotency_before(&self, before: Timestamp) -> Result<usize, StoreError>;

    /// Removes the finished posts — Published or Cancelled, the two states nothing leaves
    /// — whose last change (`updated_at`, when they finished) is before `before`, in
    /// bounded batches, with their index entries and counts. Posts that wait for a person
    /// (Failed, Held, Unconfirmed) and posts still queued are never removed; their events
    /// are left to [`Store::purge_events_before`]. Returns how many posts it removed.
    async fn purge_finished_posts_before(&self, before: Timestamp) -> Result<usize, StoreError>;

    // ---- erasure ----

    /// Erases everything a pen name owns — readable or not, its pending OAuth
    /// authorizations included — atomically: after a crash the erasure is finished when
    /// the store opens, never left half done. The caller stops the pen name's actors first.
    async fn erase_pen_name(&self, pen: &PenName) -> Result<ErasedCounts, StoreError>;

    // ---- backup ----

    /// Writes a consistent copy of every record to `out` as a backup archive
    /// ([`crate::archive`]): every batch is wholly in the copy or wholly absent (sled holds
    /// commits while the records are copied; PostgreSQL reads one snapshot while commits
    /// go on). The copy is of what is applied, buffered commits included. Records are
    /// copied as stored — grants stay sealed, and the master key is not in the archive.
    ///
    /// Writing to `out` blocks the calling thread (on sled, commits with it): write to a
    /// local file, not to a network peer, and call it where blocking is allowed.
    async fn backup(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<BackupSummary, StoreError>;

    // ---- health ----

    /// Every record found unreadable so far (at open, at boot, by any read).
    fn unreadable(&self) -> Vec<UnreadableRecord>;

    /// Reads every record and checks that indexes and counts agree with them. Records
    /// found unreadable are added to [`Store::unreadable`].
    async fn check_integrity(&self) -> Result<IntegrityReport, StoreError>;

    fn info(&self) -> StoreInfo;

    /// Which node owns which connection, on this store ([`Ownership`]): the engine runs
    /// only the connections its node holds a lease on.
    ///
    /// [`Ownership`]: crate::Ownership
    fn ownership(&self) -> &dyn crate::Ownership;

    /// How commands reach the node that runs a connection, on a store several nodes
    /// share ([`CommandRelay`]); `None` where one process runs everything (sled).
    ///
    /// [`CommandRelay`]: crate::CommandRelay
    fn commands(&self) -> Option<&dyn crate::CommandRelay> {
        None
    }
}
