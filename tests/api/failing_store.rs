//! A store that fails on command: a wrapper over the store port that passes everything
//! through to the real (sled) store, except the commits a test tells it to fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use social_studio::studio::StoreLayer;
use social_studio_storage::{
    Batch, BatchOp, CommitFuture, Connection, ConnectionCounts, ConnectionKey, Durability, Epoch,
    ErasedCounts, Event, EventPage, Grant, IdempotentRequest, IntegrityReport, Loaded, PenName,
    Post, PostCounts, PostId, PostStatus, SharedStore, StateLookup, Store, StoreError, StoreInfo,
    Timestamp, UnreadableRecord,
};
use tokio::sync::broadcast;

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
            Arc::new(FailingStore {
                inner,
                faults: faults.clone(),
            })
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

struct FailingStore {
    inner: SharedStore,
    faults: Arc<PostFaults>,
}

#[async_trait]
impl Store for FailingStore {
    fn commit(&self, batch: Batch, durability: Durability) -> CommitFuture {
        let creates_a_post = batch
            .ops()
            .iter()
            .any(|op| matches!(op, BatchOp::PutPost(_)));
        if creates_a_post && self.faults.this_one_fails() {
            return Box::pin(async {
                Err(StoreError::Flush(
                    "injected: the disk refused the write".into(),
                ))
            });
        }
        self.inner.commit(batch, durability)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.subscribe()
    }

    async fn claim(&self, key: &ConnectionKey) -> Result<Epoch, StoreError> {
        self.inner.claim(key).await
    }

    async fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        self.inner.connection(key).await
    }

    async fn connections_of(&self, pen: &PenName) -> Result<Loaded<Connection>, StoreError> {
        self.inner.connections_of(pen).await
    }

    async fn all_connections(&self) -> Result<Loaded<Connection>, StoreError> {
        self.inner.all_connections().await
    }

    async fn connection_counts(&self) -> Result<ConnectionCounts, StoreError> {
        self.inner.connection_counts().await
    }

    async fn grant(&self, key: &ConnectionKey) -> Result<Option<Grant>, StoreError> {
        self.inner.grant(key).await
    }

    async fn post(&self, id: PostId) -> Result<Option<Post>, StoreError> {
        self.inner.post(id).await
    }

    async fn posts_of_connection(&self, key: &ConnectionKey) -> Result<Loaded<Post>, StoreError> {
        self.inner.posts_of_connection(key).await
    }

    async fn posts_of_pen(&self, pen: &PenName) -> Result<Loaded<Post>, StoreError> {
        self.inner.posts_of_pen(pen).await
    }

    async fn queued_posts(&self) -> Result<Loaded<PostStatus>, StoreError> {
        self.inner.queued_posts().await
    }

    async fn post_counts(&self, key: &ConnectionKey) -> Result<PostCounts, StoreError> {
        self.inner.post_counts(key).await
    }

    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.events_after(seq, limit).await
    }

    async fn events_of_connection(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_of_connection(key, page).await
    }

    async fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.inner.event(seq).await
    }

    async fn events_of_post(
        &self,
        pen: &PenName,
        id: PostId,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_of_post(pen, id, page).await
    }

    async fn take_oauth_state(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<StateLookup, StoreError> {
        self.inner.take_oauth_state(state, now).await
    }

    async fn purge_oauth_states(
        &self,
        now: Timestamp,
        keep: Duration,
    ) -> Result<usize, StoreError> {
        self.inner.purge_oauth_states(now, keep).await
    }

    async fn idempotent_result(
        &self,
        pen: &PenName,
        key: &str,
    ) -> Result<Option<IdempotentRequest>, StoreError> {
        self.inner.idempotent_result(pen, key).await
    }

    async fn remember_idempotent(
        &self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> Result<IdempotentRequest, StoreError> {
        self.inner.remember_idempotent(pen, key, record).await
    }

    async fn erase_pen_name(&self, pen: &PenName) -> Result<ErasedCounts, StoreError> {
        self.inner.erase_pen_name(pen).await
    }

    fn unreadable(&self) -> Vec<UnreadableRecord> {
        self.inner.unreadable()
    }

    async fn check_integrity(&self) -> Result<IntegrityReport, StoreError> {
        self.inner.check_integrity().await
    }

    fn info(&self) -> StoreInfo {
        self.inner.info()
    }
}
