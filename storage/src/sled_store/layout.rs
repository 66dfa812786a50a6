//! The sled layout, format 2: trees, keys, and the two records only this backend stores
//! (the redo journal and quarantined records).
//!
//! | tree | key | value |
//! |---|---|---|
//! | `connections` | `pen \0 platform` | [`Connection`](crate::Connection) |
//! | `grants` | `pen \0 platform` | [`Grant`](crate::Grant), sealed with the key as associated data |
//! | `post_bodies` | post id (16) | [`PostBody`](crate::PostBody) |
//! | `post_status` | post id (16) | [`PostStatus`](crate::PostStatus) |
//! | `posts_queued` | post id (16) | — (the post is Scheduled, Paused or Publishing) |
//! | `posts_by_connection` | `pen \0 platform \0 id` | — |
//! | `post_counts` | `pen \0 platform` | [`PostCounts`](crate::PostCounts) |
//! | `events` | first seq (8, big-endian) | [`EventGroup`]: a commit's events (up to 512), in order |
//! | `events_by_connection` | `pen \0 platform \0` + `ff`×8 (the head) or + first group seq (older chunks) | [`EventRefs`]: the groups holding the connection's events |
//! | `oauth_states` | state | expiry, used flag, sealed [`PendingAuthorization`](crate::PendingAuthorization) |
//! | `idempotency` | `pen \0 key` | [`IdempotentRequest`](crate::IdempotentRequest) |
//! | `meta` | name | format, master-key check value, connection counts, erasures in progress, how far events were purged |
//! | `quarantine` | `tree \0 key` | a record that could not be read when it was migrated |
//! | `journal` | `head`, `chunk N` | the last commit's writes, for redo after a crash |
//!
//! No key holds a post's state or its ready time: a transition overwrites one small status
//! record in place (and adds or removes the post's id in `posts_queued` when it joins or
//! leaves a queue). The queues keep due order in memory and rebuild it at boot from
//! `posts_queued`. A commit's events are one record, and each connection's list of the
//! records that hold its events is rewritten in place: a dispatch of 256 posts over 100
//! connections adds one key, not 512 — in sled every new key costs a node copy, and the
//! splits it causes copy the parent index node.

use serde::{Deserialize, Serialize};

use crate::codec::{CodecProblem, Record};
use crate::connection::pen_prefix;
use crate::{ConnectionKey, PenName, PostId};

/// The layout this build writes and reads.
pub(crate) const FORMAT: u32 = 2;
/// File in the data directory that names the layout format (absent: format 1).
pub(crate) const FORMAT_FILE: &str = "format";
/// The format-2 sled database, inside the data directory.
pub(crate) const SLED_DIR: &str = "sled";
/// Where an upgrade writes before it switches over.
pub(crate) const MIGRATING_DIR: &str = "sled-migrating";
/// The format-1 sled database; after an upgrade, a file that makes a format-1 release
/// refuse to start instead of opening an empty store.
pub(crate) const V1_DIR: &str = "db";

pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_KEY_CHECK: &[u8] = b"master_key_check";
/// The store-wide [`ConnectionCounts`](crate::port::ConnectionCounts).
pub(crate) const META_CONNECTION_COUNTS: &[u8] = b"connection_counts";
pub(crate) const KEY_CHECK_PLAINTEXT: &[u8] = b"social-studio master key check v1";
/// The [`KeyId`](crate::vault::KeyId) of the key a master key rotation is re-sealing
/// everything under: present from the rotation's start until the check value moves.
pub(crate) const META_KEY_ROTATION: &[u8] = b"master_key_rotation";
/// The highest event sequence number a retention purge removed (8 bytes, big-endian;
/// absent: none). Like the sequence number kept at a clean close, a bare number rather
/// than a versioned record: a build that does not know it ignores it.
pub(crate) const META_EVENTS_PURGED_THROUGH: &[u8] = b"events_purged_through";
/// `erasing \0 pen`: an erasure that began and must be finished.
pub(crate) const META_ERASING: &[u8] = b"erasing\0";

/// The trees of format 2, in a fixed order (their index is stored in the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum T {
    Connections = 0,
    Grants = 1,
    PostBodies = 2,
    Status = 3,
    Queued = 4,
    PostsByConnection = 5,
    Counts = 6,
    Events = 7,
    EventsByConnection = 8,
    OAuthStates = 9,
    Idempotency = 10,
    Meta = 11,
    Quarantine = 12,
}

impl T {
    pub(crate) const ALL: [T; 13] = [
        T::Connections,
        T::Grants,
        T::PostBodies,
        T::Status,
        T::Queued,
        T::PostsByConnection,
        T::Counts,
        T::Events,
        T::EventsByConnection,
        T::OAuthStates,
        T::Idempotency,
        T::Meta,
        T::Quarantine,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            T::Connections => "connections",
            T::Grants => "grants",
            T::PostBodies => "post_bodies",
            T::Status => "post_status",
            T::Queued => "posts_queued",
            T::PostsByConnection => "posts_by_connection",
            T::Counts => "post_counts",
            T::Events => "events",
            T::EventsByConnection => "events_by_connection",
            T::OAuthStates => "oauth_states",
            T::Idempotency => "idempotency",
            T::Meta => "meta",
            T::Quarantine => "quarantine",
        }
    }

    pub(crate) fn from_index(i: u8) -> Option<T> {
        T::ALL.get(usize::from(i)).copied()
    }
}

/// Every tree of the database, opened once.
pub(crate) struct Trees {
    trees: Vec<sled::Tree>,
    pub(crate) journal: sled::Tree,
}

impl Trees {
    pub(crate) fn open(db: &sled::Db) -> Result<Trees, sled::Error> {
        let mut trees = Vec::with_capacity(T::ALL.len());
        for t in T::ALL {
            trees.push(db.open_tree(t.name())?);
        }
        Ok(Trees {
            trees,
            journal: db.open_tree("journal")?,
        })
    }

    pub(crate) fn get(&self, t: T) -> &sled::Tree {
        &self.trees[t as usize]
    }
}

/// One write the journal records and the store applies: a put or a removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Write {
    pub(crate) tree: u8,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
}

impl Write {
    pub(crate) fn put(tree: T, key: impl Into<Vec<u8>>, value: Vec<u8>) -> Write {
        Write {
            tree: tree as u8,
            key: key.into(),
            value: Some(value),
        }
    }

    pub(crate) fn remove(tree: T, key: impl Into<Vec<u8>>) -> Write {
        Write {
            tree: tree as u8,
            key: key.into(),
            value: None,
        }
    }
}

/// The last commit's writes, recorded before they are applied. sled recovers a prefix of
/// its log, so after a crash either none of a commit survives, or its journal does and
/// replaying it finishes the commit. Each commit overwrites the journal of the one before,
/// which was completely applied before it began.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// The highest event sequence number handed out so far (kept even when those events
    /// are erased, so a number is never handed out twice).
    pub(crate) seq_high: u64,
    /// Writes too many for the head are in `chunk 0..chunks`.
    pub(crate) chunks: u32,
    pub(crate) writes: Vec<Write>,
}

impl Record for Journal {
    const KIND: &'static str = "journal";
    const VERSION: u8 = 1;
}

/// The journal head's serialised form, borrowing its writes.
#[derive(Serialize)]
pub(crate) struct JournalRef<'a> {
    pub(crate) seq_high: u64,
    pub(crate) chunks: u32,
    pub(crate) writes: &'a [Write],
}

pub(crate) const JOURNAL_HEAD: &[u8] = b"head";
/// Journal writes that fit in one value; more are split into chunks, each one value.
pub(crate) const JOURNAL_INLINE_BYTES: usize = 48 * 1024;

pub(crate) fn journal_chunk_key(i: u32) -> Vec<u8> {
    let mut k = b"chunk".to_vec();
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// A commit's events (at most [`EVENT_GROUP_MAX`]; a larger commit writes several), in
/// sequence order, keyed by the first one's number. An erasure may take some out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventGroup {
    pub(crate) events: Vec<crate::Event>,
}

pub(crate) const EVENT_GROUP_MAX: usize = 512;

/// The keys of the event groups that hold a connection's events, oldest first. The head
/// record takes new keys; past [`EVENT_REFS_HEAD_MAX`] it is moved to a chunk of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventRefs {
    pub(crate) groups: Vec<u64>,
}

impl Record for EventRefs {
    const KIND: &'static str = "event_refs";
    const VERSION: u8 = 1;
}

pub(crate) const EVENT_REFS_HEAD_MAX: usize = 256;

/// The head of a connection's event references.
pub(crate) fn event_refs_head(key: &ConnectionKey) -> Vec<u8> {
    let mut k = connection_prefix(key);
    k.extend_from_slice(&[0xff; 8]);
    k
}

/// An older chunk of a connection's event references, keyed by its first group.
pub(crate) fn event_refs_chunk(key: &ConnectionKey, first: u64) -> Vec<u8> {
    let mut k = connection_prefix(key);
    k.extend_from_slice(&first.to_be_bytes());
    k
}

impl Record for EventGroup {
    const KIND: &'static str = "event_group";
    /// 2: its events may be of `EventKind::TargetsChosen` (event version 2).
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<EventGroup, crate::CodecProblem> {
        match version {
            // Version 1 holds version-1 events, which read as they are.
            1 => crate::codec::decode_body(body),
            v => Err(crate::CodecProblem::UnknownVersion(v)),
        }
    }
}

impl EventGroup {
    pub(crate) fn last(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq)
    }
}

/// A record that could not be read when its data directory was upgraded. Kept whole —
/// nothing is dropped — and reported until a person erases what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Quarantined {
    /// The record kind it was meant to be.
    pub(crate) kind: String,
    /// The tree and key it had in the old layout.
    pub(crate) tree: String,
    pub(crate) key: Vec<u8>,
    /// Its bytes, untouched.
    pub(crate) value: Vec<u8>,
    pub(crate) problem: String,
    pub(crate) connection: Option<ConnectionKey>,
    pub(crate) post: Option<PostId>,
}

impl Record for Quarantined {
    const KIND: &'static str = "quarantined";
    const VERSION: u8 = 1;
}

/// The stored form of an OAuth state: the expiry and used flag stay readable so a replay
/// or a late callback can be told apart from a forgery without opening anything.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OAuthStateRecord {
    pub(crate) expires_at: crate::Timestamp,
    pub(crate) used: bool,
    pub(crate) sealed: Vec<u8>,
}

impl Record for OAuthStateRecord {
    const KIND: &'static str = "oauth_state";
    const VERSION: u8 = 1;
}

// ---- keys ----

pub(crate) fn by_connection_key(key: &ConnectionKey, id: PostId) -> Vec<u8> {
    let mut k = key.storage_key();
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `pen \0 platform \0`: the prefix of a connection's entries in the by-connection trees.
pub(crate) fn connection_prefix(key: &ConnectionKey) -> Vec<u8> {
    let mut k = key.storage_key();
    k.push(0);
    k
}

pub(crate) fn idempotency_key(pen: &PenName, key: &str) -> Vec<u8> {
    let mut k = pen_prefix(pen);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn erasing_key(pen: &PenName) -> Vec<u8> {
    let mut k = META_ERASING.to_vec();
    k.extend_from_slice(pen.as_str().as_bytes());
    k
}

pub(crate) fn quarantine_key(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut k = tree.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key);
    k
}

pub(crate) fn grant_aad(key: &[u8]) -> Vec<u8> {
    let mut aad = b"grant\0".to_vec();
    aad.extend_from_slice(key);
    aad
}

pub(crate) fn oauth_aad(state: &str) -> Vec<u8> {
    let mut aad = b"oauth_state\0".to_vec();
    aad.extend_from_slice(state.as_bytes());
    aad
}

/// The last 16 bytes of a by-connection key: the post id.
pub(crate) fn id_suffix(key: &[u8]) -> Option<PostId> {
    let tail = key.get(key.len().checked_sub(16)?..)?;
    Some(PostId::from_bytes(<[u8; 16]>::try_from(tail).ok()?))
}

/// The last 8 bytes of an event index key: the sequence number.
pub(crate) fn seq_suffix(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(<[u8; 8]>::try_from(tail).ok()?))
}

/// The connection a by-connection key (`pen \0 platform \0 …`) belongs to.
pub(crate) fn connection_of_index_key(key: &[u8]) -> Option<ConnectionKey> {
    let first = key.iter().position(|&b| b == 0)?;
    let second = first + 1 + key[first + 1..].iter().position(|&b| b == 0)?;
    ConnectionKey::from_storage_key(&key[..second])
}

pub(crate) fn post_id_key(key: &[u8]) -> Option<PostId> {
    Some(PostId::from_bytes(<[u8; 16]>::try_from(key).ok()?))
}

pub(crate) fn missing(what: &str) -> CodecProblem {
    CodecProblem::Malformed(format!("{what} is missing"))
}
