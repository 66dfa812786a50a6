//! The HTTP status/admin API end to end: the real service on a loopback port, a fresh
//! data directory per test, and X served by the sandbox.
//!
//! One test binary (so it links once); one module per concern.

mod helpers;

mod auth;
mod backup;
mod booting;
mod connect;
mod connections;
mod embedding;
mod erasure;
mod errors;
mod events;
mod every_platform;
mod failing_store;
mod host_auth;
mod host_key;
mod idempotency;
mod isolation;
mod key_rotation;
mod metrics;
mod openapi;
mod private_media;
mod properties;
mod restart;
mod retention;
mod scheduling;
mod secrets;
mod storage_failing;
mod targets;
mod unreadable;
