//! # social-studio-storage
//!
//! The Social Studio engine's data model and its persistence in sled.
//!
//! - The words of the domain as types that can only hold valid values: [`PenName`]
//!   (parsed, never merely wrapped), [`Platform`] and what each supports, [`ConnectionKey`]
//!   and [`ConnectionStatus`], the [`Reason`] catalogue (every state a person sees names
//!   its cause and remedy), [`Account`], [`Target`], [`Grant`] (secret fields in
//!   [`Secret`], which never prints), [`Post`] and its [`PostState`] lifecycle, and the
//!   audit [`Event`].
//! - [`codec`]: the one way records become bytes — a format-version byte, then bincode.
//! - [`vault`]: grants are sealed (XChaCha20-Poly1305, the connection key as associated
//!   data) before they reach sled.
//! - [`Store`]: the trees, multi-tree transactions ([`Batch`]), durability on demand with
//!   group commit, and the queries the actors and the HTTP API need.
//!
//! Storage knows nothing of actors or HTTP.

pub mod codec;
mod connection;
mod error;
mod event;
#[doc(hidden)]
pub mod fixtures;
mod grant;
mod oauth;
mod pen_name;
mod platform;
mod post;
mod reason;
mod secret;
mod store;
mod timestamp;
pub mod vault;

pub use codec::{CodecError, CodecProblem};
pub use connection::{
    Account, AccountKind, Connection, ConnectionKey, ConnectionStatus, RefreshInFlight, StateLabel,
    Target, TargetKind,
};
pub use error::StoreError;
pub use event::{Event, EventKind};
pub use grant::{fingerprint, Grant, TargetToken};
pub use oauth::{PendingAuthorization, StateLookup};
pub use pen_name::{PenName, PenNameError, PEN_NAME_MAX_LEN};
pub use platform::{Capabilities, Platform, PostKind, Renewal, UnknownPlatform};
pub use post::{Content, Media, MediaKind, Post, PostId, PostState, Receipt};
pub use reason::{Reason, ReasonCode};
pub use secret::Secret;
pub use store::{
    Batch, Durability, ErasedCounts, EventPage, FlushStats, IdempotentRequest, IntegrityReport,
    Loaded, Store, StoreConfig, DEFAULT_CACHE_CAPACITY,
};
pub use timestamp::{Timestamp, TimestampParseError};
pub use vault::{KeySource, MasterKey, VaultError};
