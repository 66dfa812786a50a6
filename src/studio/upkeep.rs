//! What the engine does in the background on its own, beside the actors: forgetting OAuth
//! states nobody redeemed, and the retention purges — events, idempotency keys and
//! finished posts older than the `[retention]` configuration keeps them
//! ([`crate::config::Retention`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use social_studio_actors::Clock;
use social_studio_storage::{Store, Timestamp};

use super::{EngineRefusal, Studio};
use crate::config::Retention;

/// How often the retention purges run: often enough that nothing outlives its retention by
/// much more than an hour, rarely enough that reading every status is cheap.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3_600);

/// Forgets OAuth states that expired more than one `ttl` ago, once every `ttl`: a state
/// nobody redeems (a connect abandoned at the consent page) would otherwise be kept
/// forever. For one more `ttl` after it lapses, a late callback is still told its state
/// expired, rather than that it was never issued. Ends when the store is gone.
pub(super) async fn housekeeping(store: Weak<dyn Store>, clock: Arc<dyn Clock>, ttl: Duration) {
    let mut every = tokio::time::interval(ttl);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(store) = store.upgrade() else { return };
        match store.purge_oauth_states(clock.now(), ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "forgot expired OAuth states"),
            Err(e) => {
                tracing::warn!(error = %e, "could not purge expired OAuth states; trying again later")
            }
        }
    }
}

/// What one round of the retention purges removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub events: usize,
    pub idempotency_keys: usize,
    pub finished_posts: usize,
}

/// Runs the retention purges every [`RETENTION_EVERY`] of the runtime's time (the first
/// at once), each with its cutoff at `clock`'s now less what `retention` keeps. A purge
/// that fails is logged and tried again at the next round; nothing here ends the engine.
/// Ends when the store is gone.
pub(super) async fn retention(store: Weak<dyn Store>, clock: Arc<dyn Clock>, retention: Retention) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(store) = store.upgrade() else { return };
        if let Err(e) = purge_retained(store.as_ref(), clock.now(), &retention).await {
            tracing::warn!(error = %e, "a retention purge failed; trying again at the next round");
        }
    }
}

/// One round of the retention purges at `now`. Each purge runs even when one before it
/// failed; the first failure is returned after all have run, with what they removed
/// logged.
async fn purge_retained(
    store: &dyn Store,
    now: Timestamp,
    retention: &Retention,
) -> Result<Purged, social_studio_storage::StoreError> {
    let mut purged = Purged::default();
    let mut failure = None;
    let mut note =
        |result: Result<usize, social_studio_storage::StoreError>, into: &mut usize| match result {
            Ok(n) => *into = n,
            Err(e) => {
                failure.get_or_insert(e);
            }
        };
    if let Some(keep) = retention.events() {
        note(
            store.purge_events_before(now.saturating_sub(keep)).await,
            &mut purged.events,
        );
    }
    note(
        store
            .purge_idempotency_before(now.saturating_sub(retention.idempotency()))
            .await,
        &mut purged.idempotency_keys,
    );
    if let Some(keep) = retention.finished_posts() {
        note(
            store
                .purge_finished_posts_before(now.saturating_sub(keep))
                .await,
            &mut purged.finished_posts,
        );
    }
    if purged != Purged::default() {
        tracing::info!(
            events = purged.events,
            idempotency_keys = purged.idempotency_keys,
            finished_posts = purged.finished_posts,
            "retention: forgot what is older than the configuration keeps"
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(purged),
    }
}

impl Studio {
    /// Runs the retention purges now, as the background upkeep does every
    /// [`RETENTION_EVERY`]: events, idempotency keys and finished posts older than the
    /// configuration's `[retention]` keeps them are removed.
    pub async fn purge_retained(&self) -> Result<Purged, EngineRefusal> {
        Ok(purge_retained(
            self.inner.store.as_ref(),
            self.inner.clock.now(),
            &self.inner.config.retention,
        )
        .await?)
    }

    /// The highest event number a retention purge removed (0: none yet). A client
    /// resuming the event stream after a lower number has missed events.
    pub async fn events_purged_through(&self) -> Result<u64, EngineRefusal> {
        Ok(self.inner.store.events_purged_through().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use social_studio_actors::TokioClock;
    use social_studio_storage::{
        Batch, ConnectionKey, Durability, PenName, PendingAuthorization, Platform, SledStore,
        StateLookup, StoreConfig, Timestamp,
    };

    /// A state nobody redeems is forgotten one `ttl` after it lapsed; until then a late
    /// callback is told it expired.
    #[tokio::test(start_paused = true)]
    async fn an_abandoned_oauth_state_is_forgotten_after_it_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(&StoreConfig::new(dir.path())).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
            1_800_000_000_000,
        )));
        let ttl = Duration::from_secs(600);
        let pending = PendingAuthorization {
            connection: ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::X),
            pkce_verifier: None,
            redirect_uri: "http://127.0.0.1/cb".into(),
            created_at: clock.now(),
            expires_at: clock.now().saturating_add(ttl),
            replace: false,
            purpose: social_studio_storage::StatePurpose::Connect { return_to: None },
        };
        let mut batch = Batch::new();
        batch
            .put_oauth_state("late", &pending)
            .put_oauth_state("abandoned", &pending);
        store.commit(batch, Durability::Durable).await.unwrap();
        let upkeep = tokio::spawn(housekeeping(Arc::downgrade(&store), clock.clone(), ttl));

        // Lapsed, but not yet for a whole ttl: still known, and said to be expired.
        tokio::time::advance(ttl + ttl / 2).await;
        settle().await;
        let late = store.take_oauth_state("late", clock.now()).await.unwrap();
        assert!(matches!(late, StateLookup::Expired), "{late:?}");

        // A ttl after it lapsed (and a tick later): forgotten.
        tokio::time::advance(ttl + ttl / 2).await;
        settle().await;
        let gone = store
            .take_oauth_state("abandoned", clock.now())
            .await
            .unwrap();
        assert!(matches!(gone, StateLookup::Unknown), "{gone:?}");
        upkeep.abort();
    }

    /// Months of virtual time: each kind goes at its own age, in the background, and
    /// posts that wait for a person stay whatever their age.
    #[tokio::test(start_paused = true)]
    async fn the_retention_purges_forget_each_kind_at_its_own_age() {
        use social_studio_storage::fixtures::post;
        use social_studio_storage::{
            Event, EventKind, IdempotentRequest, PostState, Reason, ReasonCode, Receipt, StateLabel,
        };

        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(&StoreConfig::new(dir.path())).unwrap());
        let start = Timestamp::from_unix_millis(1_800_000_000_000);
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
        let jane = ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::X);
        let states = [
            PostState::Published(Receipt {
                platform_post_id: "1".into(),
                url: None,
            }),
            PostState::Cancelled,
            PostState::Failed(Reason::new(ReasonCode::ContentRejected)),
            PostState::Held(Reason::new(ReasonCode::TooLate)),
            PostState::Unconfirmed,
        ];
        let mut ids = Vec::new();
        let mut batch = Batch::new();
        for (i, state) in states.into_iter().enumerate() {
            let mut p = post(&jane, i as u64);
            p.state = state;
            p.updated_at = start;
            ids.push(p.id);
            batch.put_post(&p);
        }
        batch.event(Event::new(start, jane.clone(), EventKind::GrantRenewed));
        batch.put_idempotent(
            &jane.pen_name,
            "request-1",
            &IdempotentRequest {
                request_digest: [1; 8],
                posts: vec![ids[0]],
                created_at: start,
                unfinished: Vec::new(),
            },
        );
        store.commit(batch, Durability::Durable).await.unwrap();
        let upkeep = tokio::spawn(retention(
            Arc::downgrade(&store),
            clock.clone(),
            Retention::default(),
        ));
        settle().await;
        let remembered = || store.idempotent_result(&jane.pen_name, "request-1");
        assert!(remembered().await.unwrap().is_some(), "nothing is old yet");

        // A day and an hour: the key is forgotten; events and posts stay.
        tokio::time::advance(Duration::from_secs(25 * 3_600)).await;
        settle().await;
        assert_eq!(remembered().await.unwrap(), None);
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 1);
        assert_eq!(store.events_purged_through().await.unwrap(), 0);

        // A month later: the event is gone, and the stream can say so.
        tokio::time::advance(Duration::from_secs(30 * 86_400)).await;
        settle().await;
        assert!(store.events_after(0, 10).await.unwrap().is_empty());
        assert_eq!(store.events_purged_through().await.unwrap(), 1);
        for id in &ids {
            assert!(store.post(*id).await.unwrap().is_some());
        }

        // Past ninety days: the published and the cancelled post go; the failed, held
        // and unconfirmed ones wait for a person, however old.
        tokio::time::advance(Duration::from_secs(60 * 86_400)).await;
        settle().await;
        assert_eq!(store.post(ids[0]).await.unwrap(), None);
        assert_eq!(store.post(ids[1]).await.unwrap(), None);
        for id in &ids[2..] {
            assert!(store.post(*id).await.unwrap().is_some(), "{id} is kept");
        }
        let counts = store.post_counts(&jane).await.unwrap();
        assert_eq!(counts.total(), 3);
        for label in [
            StateLabel::Failed,
            StateLabel::Held,
            StateLabel::Unconfirmed,
        ] {
            assert_eq!(counts.get(label), 1, "{label:?}");
        }
        let report = store.check_integrity().await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);

        // Years on, they are still there.
        tokio::time::advance(Duration::from_secs(3 * 365 * 86_400)).await;
        settle().await;
        assert_eq!(store.post_counts(&jane).await.unwrap().total(), 3);
        upkeep.abort();
    }

    /// Lets the upkeep task run what the last advance woke (its purge has no await).
    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }
}
