//! The reliability suite: the engine as a deployment meets it, with a time budget per part
//! (each from an environment variable, so a person can run it longer).
//!
//! - `kill_loop`: the `social-studio` binary SIGKILLed at random moments while posts are
//!   scheduled and published on X, LinkedIn, Pinterest and Bluesky, restarted on the same data
//!   directory each time (`RELIABILITY_KILL_SECS`, default 75; `RELIABILITY_SEED`).
//! - `fault_storm`: 5xx answers, slow answers, timeouts, 429s with and without
//!   `Retry-After`, lost answers and answers cut short, armed at random on publish and
//!   refresh calls of the same four while posts are due and grants renew (`RELIABILITY_STORM_SECS`,
//!   default 90; `RELIABILITY_SEED`).
//!
//! The fuzzing of every route lives with the other API tests, in
//! `tests/api/properties.rs`. Each part prints a one-line summary with
//! `cargo test --test reliability -- --nocapture`.
//!
//! The simulated platforms run in this test process and the engine in its own, so the
//! platforms' state — every post they received, every token they issued — outlives every
//! kill of the engine.

mod fault_storm;
mod harness;
mod kill_loop;
