//! A store that fails on command, for the API tests: the actors' test kit's
//! [`FaultyStore`] (the one wrapper over the store port that refuses commits), set to
//! fail the one commit that creates a post a test picks ([`PostFaults`]), or every commit
//! while a test says so ([`StoreSwitch`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use social_studio::studio::StoreLayer;
use social_studio_actors::testkit::FaultyStore;
use social_studio_storage::{Batch, BatchOp, SharedStore};

/// What the test commands: which commit that creates a post fails.
#[derive(Default)]
pub struct PostFaults {
    /// Commits creating a post still to let through before one fails; `usize::MAX`: none fails.
    let_through: AtomicUsize,
}

impl PostFaults {
    /// A layer for [`crate::helpers::AppOptions::store_layer`], and its control.
    pub fn layer() -> (StoreLayer, Arc<PostFaults>) {
        let faults = Arc::new(PostFaults {
            let_through: AtomicUsize::new(usize::MAX),
        });
        let control = faults.clone();
        let layer: StoreLayer = Arc::new(move |inner: SharedStore| -> SharedStore {
            let store = FaultyStore::new(inner);
            let faults = faults.clone();
            store.fail_commits(move |batch| creates_a_post(batch) && faults.this_one_fails());
            Arc::new(store)
        });
        (layer, control)
    }

    /// Lets `n` more commits that create a post through, and fails the one after (once).
    pub fn fail_after(&self, n: usize) {
        self.let_through.store(n, Ordering::SeqCst);
    }

    fn this_one_fails(&self) -> bool {
        let mut current = self.let_through.load(Ordering::SeqCst);
        loop {
            let (next, fails) = match current {
                usize::MAX => return false,
                0 => (usize::MAX, true),
                n => (n - 1, false),
            };
            match self.let_through.compare_exchange(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return fails,
                Err(seen) => current = seen,
            }
        }
    }
}

fn creates_a_post(batch: &Batch) -> bool {
    batch
        .ops()
        .iter()
        .any(|op| matches!(op, BatchOp::PutPost(_)))
}

/// Every commit fails while switched on: a store that refuses writes (a full disk).
#[derive(Default)]
pub struct StoreSwitch {
    store: std::sync::Mutex<Option<FaultyStore>>,
}

impl StoreSwitch {
    /// A layer for [`crate::helpers::AppOptions::store_layer`], and its switch.
    pub fn layer() -> (StoreLayer, Arc<StoreSwitch>) {
        let switch = Arc::new(StoreSwitch::default());
        let control = switch.clone();
        let layer: StoreLayer = Arc::new(move |inner: SharedStore| -> SharedStore {
            let store = FaultyStore::new(inner);
            *switch.store.lock().unwrap() = Some(store.clone());
            Arc::new(store)
        });
        (layer, control)
    }

    fn store(&self) -> FaultyStore {
        self.store
            .lock()
            .unwrap()
            .clone()
            .expect("the app opened its store")
    }

    /// From now on every commit fails.
    pub fn fail_every_commit(&self) {
        self.store().fail_commits(|_| true);
    }

    /// Commits go through again.
    pub fn heal(&self) {
        self.store().heal();
    }

    /// Commits refused so far.
    pub fn refused(&self) -> u64 {
        self.store().refused()
    }
}
