//! # social-studio
//!
//! The Social Studio engine as an application uses it.
//!
//! - [`studio::Studio`]: the embedding API — opened from a [`config::Config`], it starts
//!   the actors and offers connections with status, reason and remedy, the connect flow,
//!   verify, disconnect, scheduling, the attention list and the event stream.
//! - [`platforms`]: one adapter per platform (OAuth dialect, identity and requirement
//!   checks, publishing, error mapping) over the shared OAuth 2.0 core.
//! - [`sandbox`]: local simulated platforms speaking each platform's real API shapes, for
//!   the demo and the tests; it never imports the adapters.
//! - [`config`]: the TOML file and `SOCIAL_STUDIO_*` environment overrides.
//! - [`wait`]: the one way the demo, examples and tests wait for a condition nothing
//!   announces.

// Module docs name their private helpers (`token`, `upload`, …) for readers of the
// source; rustdoc shows those names as plain text.
#![allow(rustdoc::private_intra_doc_links)]

pub mod config;
pub mod http;
pub mod platforms;
pub mod sandbox;
pub mod studio;
pub mod wait;
