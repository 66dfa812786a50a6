//! [`BootProgress`]: how far the engine's start has come — the phase, and how many of the
//! stored connections have their actor — readable at any moment without a message, so an
//! HTTP server can answer probes while the engine is still starting (at a million
//! connections the start takes over a minute).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The steps of a start, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BootPhase {
    /// The store is being opened (a journal replayed, an older data directory upgraded, a
    /// master key rotation finished): nothing is known of the connections yet.
    OpeningStore,
    /// The stored connections are read and their actors spawned, one by one: `total` is
    /// known, `loaded` counts up to it.
    StartingConnections,
    /// Every connection has its actor; the unfinished posts are read and handed to their
    /// platform's queue.
    LoadingPosts,
    /// Every actor is live: the engine does its work.
    Ready,
}

impl BootPhase {
    /// The phase as the API and the log name it (`opening_store`, `starting_connections`,
    /// `loading_posts`, `ready`).
    pub fn as_str(self) -> &'static str {
        match self {
            BootPhase::OpeningStore => "opening_store",
            BootPhase::StartingConnections => "starting_connections",
            BootPhase::LoadingPosts => "loading_posts",
            BootPhase::Ready => "ready",
        }
    }
}

impl std::fmt::Display for BootPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of a start's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    pub phase: BootPhase,
    /// Stored connections whose actor has been started (or, for a platform without an
    /// adapter, whose posts have been set aside with a reason).
    pub loaded: u64,
    /// Stored connections to start; `None` until the store has been read.
    pub total: Option<u64>,
    /// How long the start has run so far (until [`BootPhase::Ready`]: then how long it
    /// took).
    pub elapsed: Duration,
}

#[derive(Debug)]
struct Progress {
    phase: BootPhase,
    loaded: u64,
    total: Option<u64>,
    ready_after: Option<Duration>,
}

/// The progress of one start, shared by whoever starts the engine (who also reads it) and
/// the supervisor (which reports into it). Cheap to clone; every clone is the same
/// progress.
///
/// A `tokio::sync::watch` underneath: reading never waits for the supervisor, and
/// [`BootProgress::ready`] can be awaited.
#[derive(Debug, Clone)]
pub struct BootProgress {
    progress: Arc<watch::Sender<Progress>>,
    /// When the start began: the boot's duration is measured from it.
    started: tokio::time::Instant,
}

impl Default for BootProgress {
    fn default() -> Self {
        BootProgress::new()
    }
}

impl BootProgress {
    /// A start that begins now, at [`BootPhase::OpeningStore`].
    pub fn new() -> BootProgress {
        BootProgress {
            progress: Arc::new(
                watch::channel(Progress {
                    phase: BootPhase::OpeningStore,
                    loaded: 0,
                    total: None,
                    ready_after: None,
                })
                .0,
            ),
            started: tokio::time::Instant::now(),
        }
    }

    /// Where the start is now.
    pub fn state(&self) -> BootState {
        let p = self.progress.borrow();
        BootState {
            phase: p.phase,
            loaded: p.loaded,
            total: p.total,
            elapsed: p.ready_after.unwrap_or_else(|| self.started.elapsed()),
        }
    }

    /// Whether every actor is live.
    pub fn is_ready(&self) -> bool {
        self.progress.borrow().phase == BootPhase::Ready
    }

    /// Completes when the start has finished ([`BootPhase::Ready`]); at once if it has.
    pub async fn ready(&self) {
        let mut seen = self.progress.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = seen.wait_for(|p| p.phase == BootPhase::Ready).await;
    }

    /// The store has been read: `total` connections are to be started.
    pub fn starting_connections(&self, total: u64) {
        self.progress.send_modify(|p| {
            p.phase = BootPhase::StartingConnections;
            p.total = Some(total);
            p.loaded = 0;
        });
    }

    /// One more connection has been started.
    pub fn connection_started(&self) {
        // Without waking anyone: nothing awaits a count, and at a million connections a
        // wake per connection would be a million for nothing.
        self.progress.send_if_modified(|p| {
            p.loaded += 1;
            false
        });
    }

    /// Every connection has its actor; the posts are being loaded.
    pub fn loading_posts(&self) {
        self.progress
            .send_modify(|p| p.phase = BootPhase::LoadingPosts);
    }

    /// The start has finished: every actor is live.
    pub fn finished(&self) {
        let took = self.started.elapsed();
        self.progress.send_modify(|p| {
            p.phase = BootPhase::Ready;
            p.ready_after.get_or_insert(took);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_connections_and_measures_the_start() {
        let boot = BootProgress::new();
        assert_eq!(boot.state().phase, BootPhase::OpeningStore);
        assert_eq!(boot.state().total, None);
        boot.starting_connections(3);
        boot.connection_started();
        boot.connection_started();
        let state = boot.state();
        assert_eq!(
            (state.phase, state.loaded, state.total),
            (BootPhase::StartingConnections, 2, Some(3))
        );
        boot.connection_started();
        boot.loading_posts();
        tokio::time::advance(Duration::from_secs(7)).await;
        let waiter = tokio::spawn({
            let boot = boot.clone();
            async move { boot.ready().await }
        });
        assert!(!boot.is_ready());
        boot.finished();
        waiter.await.unwrap();
        tokio::time::advance(Duration::from_secs(60)).await;
        let state = boot.state();
        assert_eq!(state.phase, BootPhase::Ready);
        assert_eq!(state.loaded, 3);
        assert_eq!(state.elapsed, Duration::from_secs(7), "frozen when ready");
    }
}
