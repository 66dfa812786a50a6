//! # social-studio-actors
//!
//! The engine's moving parts, on ractor:
//!
//! ```text
//! Supervisor                 boots from storage, routes commands, restarts children
//! ├── PlatformQueue × 9      the scheduled posts of every connection on one platform
//! └── Connection × N         one per (pen name, platform): owns that connection's grant
//! ```
//!
//! - [`ports`]: the [`PlatformPort`] the actors call (implemented over HTTP by the
//!   `social-studio` crate and by fakes in `testkit`), its classified [`PortError`], and
//!   the [`Clock`] (wall-clock time that tests drive with tokio's paused time).
//! - `testkit` (behind the Cargo feature of that name, for tests, examples and
//!   benchmarks only): the in-process fake platform and the helpers around it.
//! - [`messages`]: what the actors say to each other and the answers they carry, apart
//!   from the actors so that [`connection`] and [`queue`] never import each other.
//! - [`connection`]: keeps a grant alive and classifies every platform failure.
//! - [`queue`]: orders posts by due time with one timer, pauses and resumes per
//!   connection, backs off for rate limits, persists every transition before the next step.
//! - [`supervisor`]: boot, routing, restart budget, graceful shutdown.
//! - [`Engine`]: the async handle over all of it.
//! - [`boot`]: [`BootProgress`], how far the engine's start has come (connections
//!   started of how many, then the posts), read by probes while the start runs.
//! - [`lease`]: [`lease::LeaseGate`], this node's hold on its connections (several
//!   nodes on one store), which every platform call passes first.
//! - [`relay`]: commands carried through the store to the node that runs a connection
//!   (several nodes), and the owner's loop that answers them.
//! - [`health`]: [`StoreHealth`], the one flag every actor's commit sets — whether the
//!   store takes writes — read by readiness probes without a message.
//!
//! The actors reach storage only through the store port
//! ([`social_studio_storage::Store`]); events reach subscribers through the store's own
//! durable, in-order feed.

pub mod boot;
pub mod config;
pub mod connection;
mod engine;
mod error;
pub mod health;
pub mod lease;
pub mod messages;
pub mod ports;
pub mod queue;
pub mod relay;
pub mod supervisor;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use boot::{BootPhase, BootProgress, BootState};
pub use config::EngineConfig;
pub use engine::Engine;
pub use error::EngineError;
pub use health::{StoreFailure, StoreHealth};
pub use messages::{ConnectionView, DisconnectReport, PublishOutcome, QueueStats};
pub use ports::{
    Clock, LimitScope, LostRefreshPolicy, PlatformPort, PortError, RevokeOutcome, SystemClock,
    TokioClock,
};
pub use supervisor::TreeReport;

/// An actor's one armed timer: when it fires, and the task that will send the message.
pub(crate) type Timer<M> = Option<(
    social_studio_storage::Timestamp,
    tokio::task::JoinHandle<Result<(), ractor::MessagingErr<M>>>,
)>;

#[cfg(test)]
mod test_world;
