//! # social-studio
//!
//! The Social Studio engine as an application uses it.
//!
//! - [`studio::Studio`]: the embedding API — opened from a [`config::Config`], it starts
//!   the actors and offers connections with status, reason and remedy, the connect flow,
//!   verify, disconnect, scheduling, the attention list and the event stream.
//! - [`platforms`]: one adapter per platform (OAuth dialect, identity and requirement
//!   checks, publishing, error mapping) over the shared OAuth 2.0 core.
//! - [`config`]: the TOML file and `SOCIAL_STUDIO_*` environment overrides.
//! - `migrate` (feature `postgres`): `migrate-store`, a sled data directory copied into
//!   PostgreSQL and checked.
//! - [`wait`]: the one way the demo, examples and tests wait for a condition nothing
//!   announces.
//! - `sandbox` (the default Cargo feature `sandbox`): the `social-studio-sandbox` crate,
//!   local simulated platforms speaking each platform's real API shapes, for the demo
//!   and the tests. It depends on nothing of the engine, so it cannot import the
//!   adapters; `Config::use_sandbox_for_unconfigured` points an engine at it. A host
//!   that embeds the engine sets `default-features = false` and compiles none of it.

// Module docs name their private helpers (`token`, `upload`, …) for readers of the
// source; rustdoc shows those names as plain text.
#![allow(rustdoc::private_intra_doc_links)]

pub mod config;
pub mod http;
#[cfg(feature = "postgres")]
pub mod migrate;
pub mod platforms;
#[cfg(feature = "sandbox")]
mod sandboxed;
pub mod studio;
pub mod wait;

#[cfg(feature = "sandbox")]
pub use social_studio_sandbox as sandbox;

// The README's embedding snippet is compiled as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
