//! What the engine does in the background on its own, beside the actors: forgetting OAuth
//! states nobody redeemed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use social_studio_actors::Clock;
use social_studio_storage::Store;

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

    /// Lets the upkeep task run what the last advance woke (its purge has no await).
    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }
}
