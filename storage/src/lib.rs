//! # social-studio-storage
//!
//! The Social Studio engine's data model, the store port, and its embedded backend.
//!
//! - The words of the domain as types that can only hold valid values: [`PenName`]
//!   (parsed, never merely wrapped), [`Platform`] and what each supports, [`ConnectionKey`]
//!   and [`ConnectionStatus`], the [`Reason`] catalogue (every state a person sees names
//!   its cause and remedy), [`Account`], [`Target`], [`Grant`] (secret fields in
//!   [`Secret`], which never prints), [`Post`] and its [`PostState`] lifecycle (with the
//!   rules for what a person may do to a post, refused as a typed [`PostRefusal`]), and
//!   the audit [`Event`].
//! - [`Store`] (module [`port`]): the port the actors and `Studio` use — batches applied
//!   atomically ([`Batch`]), durability per commit, events numbered in commit order and
//!   delivered once durable, ownership fencing, constant-time post counts, and scans that
//!   name what they cannot read.
//! - [`CommandRelay`] (module [`relay`]): commands carried through the store to the node
//!   that runs a connection, and their answers back (PostgreSQL; none on sled).
//! - [`Ownership`] (module [`ownership`]): which node owns which connection — leases
//!   (owner, epoch, expiry) acquired up to a fair share, renewed in bulk, released on
//!   shutdown, and [`HeldUntil`], the local check before a platform call. PostgreSQL
//!   keeps them on the database's clock; sled, one process, owns everything.
//! - [`codec`]: the one way records become bytes — each kind of record with its own
//!   format version, older versions upgraded on read, newer ones refused.
//! - [`archive`]: the backup archive — every record as stored, versioned, with a
//!   checksum at its end; [`Store::backup`] writes one from a consistent snapshot and
//!   [`SledStore::restore`] makes a data directory from one.
//! - [`vault`]: grants are sealed (XChaCha20-Poly1305, the connection key as associated
//!   data) before they reach any backend.
//! - [`SledStore`]: the port on an embedded sled database — a layout with no index keyed
//!   by state, atomic commits through a redo journal, group commit with `fdatasync`, and
//!   the upgrade of older data directories.
//! - `PgStore` (feature `postgres`, in progress): the port on PostgreSQL — a batch is a
//!   transaction, events are numbered in commit order from a one-row counter, fencing
//!   locks the connection's epoch row (which also holds its lease), and the schema is
//!   migrated at open.
//!
//! Storage knows nothing of actors or HTTP.

pub mod archive;
mod batch;
pub mod codec;
#[cfg(feature = "testkit")]
pub mod conformance;
mod connection;
pub mod contents;
mod error;
mod event;
#[cfg(any(test, feature = "testkit"))]
pub mod fixtures;
#[cfg(test)]
mod golden;
mod grant;
mod idempotency;
mod oauth;
pub mod ownership;
mod pen_name;
#[cfg(feature = "postgres")]
mod pg_store;
mod platform;
pub mod port;
mod post;
mod reason;
pub mod relay;
mod secret;
mod sled_store;
mod timestamp;
pub mod vault;

pub use batch::{Batch, BatchOp, Epoch};
pub use codec::{CodecError, CodecProblem, Record};
pub use connection::{
    Account, AccountKind, Connection, ConnectionKey, ConnectionStatus, RefreshInFlight, StateLabel,
    Target, TargetKind,
};
pub use error::StoreError;
pub use event::{Event, EventKind};
pub use grant::{fingerprint, Grant, GrantFacts, TargetToken};
pub use idempotency::IdempotentRequest;
pub use oauth::{PendingAuthorization, StateLookup, StatePurpose};
pub use ownership::{HeldUntil, LeaseRenewal, NodeId, NodeIdError, Ownership, NODE_ID_MAX_LEN};
pub use pen_name::{PenName, PenNameError, PEN_NAME_MAX_LEN};
#[cfg(feature = "postgres")]
pub use pg_store::{
    check_url as check_pg_url, PgConfig, PgError, PgStore, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_POOL_SIZE,
};
pub use platform::{Capabilities, Platform, PostKind, Renewal, UnknownPlatform};
pub use port::{
    BackupSummary, CommitFuture, Committed, ConnectionCounts, Durability, ErasedCounts, EventPage,
    IntegrityReport, Loaded, PostCounts, SharedStore, Store, StoreInfo, UnreadableRecord,
};
pub use post::{
    ConnectionStanding, Content, Media, MediaKind, Post, PostAction, PostBody, PostId, PostRefusal,
    PostState, PostStatus, Receipt,
};
pub use reason::{Reason, ReasonCode};
pub use relay::{CommandId, CommandRelay, TakenCommand, Withdrawn};
pub use secret::Secret;
pub use sled_store::{
    FlushStats, ResealCounts, ResealHook, SledStore, StoreConfig, DEFAULT_CACHE_CAPACITY,
    DEFAULT_EVENT_CAPACITY, DEFAULT_RESEAL_CHUNK,
};
pub use timestamp::{Timestamp, TimestampParseError};
pub use vault::{KeyId, KeySource, MasterKey, MasterKeys, VaultError};
