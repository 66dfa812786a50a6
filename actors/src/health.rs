//! `StoreHealth`: whether the store takes the engine's writes, shared by every actor and
//! read without a message.
//!
//! Every commit an actor makes goes through [`StoreHealth::commit`]: a failed commit
//! marks the store failing (with when it began and the last error), the next commit that
//! holds marks it healthy again. The studio's readiness probe, its attention list and its
//! metrics read this flag directly, so an operator sees a failing disk at once while the
//! actors back off instead of asking it in a loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use social_studio_storage::{Batch, CommitFuture, Durability, SharedStore, StoreError, Timestamp};

use crate::Clock;

/// Since when the store has refused the engine's writes, and what it said last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    /// The first failed commit of this streak.
    pub since: Timestamp,
    /// The last failure, as the store described it (never a secret: the store's errors
    /// name paths and I/O conditions, not records' contents).
    pub error: String,
}

struct Inner {
    clock: Arc<dyn Clock>,
    healthy: AtomicBool,
    failures: AtomicU64,
    failing: Mutex<Option<StoreFailure>>,
}

/// The engine's one store-health flag. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct StoreHealth(Arc<Inner>);

impl std::fmt::Debug for StoreHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHealth")
            .field("healthy", &self.is_healthy())
            .field("commit_failures", &self.commit_failures())
            .finish()
    }
}

impl StoreHealth {
    /// Healthy until a commit fails; `clock` dates the failures.
    pub fn new(clock: Arc<dyn Clock>) -> StoreHealth {
        StoreHealth(Arc::new(Inner {
            clock,
            healthy: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            failing: Mutex::new(None),
        }))
    }

    /// `false` from a failed commit until the next commit that holds.
    pub fn is_healthy(&self) -> bool {
        self.0.healthy.load(Ordering::SeqCst)
    }

    /// Commits that failed since the engine started (a counter: it never goes down).
    pub fn commit_failures(&self) -> u64 {
        self.0.failures.load(Ordering::SeqCst)
    }

    /// The failure streak going on now, if the store is failing.
    pub fn failing(&self) -> Option<StoreFailure> {
        self.0
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Commits through `store` and records whether the commit held. The commit's place
    /// in the order is fixed by this call, as by [`social_studio_storage::Store::commit`].
    pub fn commit(
        &self,
        store: &SharedStore,
        batch: Batch,
        durability: Durability,
    ) -> CommitFuture {
        let commit = store.commit(batch, durability);
        let health = self.clone();
        Box::pin(async move {
            let result = commit.await;
            match &result {
                Ok(_) => health.record_success(),
                // The store works: the writer lost its connection to another node.
                Err(StoreError::Fenced { .. }) => {}
                Err(error) => health.record_failure(error),
            }
            result
        })
    }

    fn record_success(&self) {
        if !self.0.healthy.swap(true, Ordering::SeqCst) {
            *self.0.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
            tracing::info!("the store takes writes again");
        }
    }

    fn record_failure(&self, error: &StoreError) {
        self.0.failures.fetch_add(1, Ordering::SeqCst);
        let mut failing = self.0.failing.lock().unwrap_or_else(|e| e.into_inner());
        let since = failing
            .as_ref()
            .map_or_else(|| self.0.clock.now(), |f| f.since);
        *failing = Some(StoreFailure {
            since,
            error: error.to_string(),
        });
        self.0.healthy.store(false, Ordering::SeqCst);
    }
}
