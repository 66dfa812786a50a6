//! The engine's log lines, captured as an operator would read them: every event of the
//! engine's own crates down to TRACE, and the libraries under them (reqwest, hyper,
//! oauth2) at DEBUG, formatted as the binary formats them, fields included.
//!
//! The subscriber is the thread's default while the guard lives, so it sees what a
//! current-thread test runtime (`#[tokio::test]`'s default) runs: the test, the tasks
//! and actors it spawns.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// What has been logged so far, shared with the writer.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything logged since the capture began.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Captures the thread's log lines until the guard is dropped.
pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let filter = Targets::new()
        .with_default(LevelFilter::DEBUG)
        .with_target("social_studio", LevelFilter::TRACE)
        .with_target("social_studio_actors", LevelFilter::TRACE)
        .with_target("social_studio_storage", LevelFilter::TRACE);
    let subscriber = tracing_subscriber::registry().with(filter).with(
        tracing_subscriber::fmt::layer()
            .with_writer(logs.clone())
            .with_ansi(false),
    );
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}
