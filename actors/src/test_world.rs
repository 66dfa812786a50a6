//! The world the actors' tests run in: the whole engine on virtual time, with a real
//! sled store on disk, an in-process fake platform, and `tokio::time::pause()` so days
//! pass in milliseconds. The store is wrapped in a [`FaultyStore`], so a test can make
//! its writes fail on command (it passes everything through until told). The tests beside each actor (`connection/tests.rs`,
//! `queue/tests.rs`, `supervisor/tests.rs`) build on it.

use std::sync::Arc;
use std::time::Duration;

use social_studio_storage::{
    ConnectionKey, Event, EventKind, PenName, Platform, PostState, Reason, ReasonCode, SharedStore,
    StateLabel, Timestamp,
};
use tokio::sync::broadcast::Receiver;

use crate::testkit::{open_store, post_due, wait_for_event, FakePlatform, FaultyStore};
use crate::{Clock, Engine, EngineConfig, TokioClock};

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct World {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) store: SharedStore,
    /// The switch for write failures of `store`.
    pub(crate) faults: FaultyStore,
    pub(crate) fake: FakePlatform,
    pub(crate) clock: Arc<TokioClock>,
    pub(crate) engine: Engine,
    pub(crate) events: Receiver<Event>,
}

pub(crate) async fn world(
    access_lifetime: Duration,
    tweak: impl FnOnce(FakePlatform) -> FakePlatform,
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultyStore::new(open_store(dir.path()).unwrap());
    let store: SharedStore = Arc::new(faults.clone());
    let clock = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_800_000_000_000,
    )));
    let fake = tweak(FakePlatform::new(
        Platform::X,
        clock.clone(),
        access_lifetime,
    ));
    let config = EngineConfig {
        jitter_seed: Some(7),
        ..EngineConfig::default()
    };
    let engine = Engine::start(
        store.clone(),
        vec![Arc::new(fake.clone())],
        clock.clone(),
        config,
    )
    .await
    .unwrap();
    let events = engine.subscribe();
    World {
        _dir: dir,
        store,
        faults,
        fake,
        clock,
        engine,
        events,
    }
}

impl World {
    pub(crate) async fn connect(&self, pen: &str, user: &str) -> ConnectionKey {
        let key = ConnectionKey::new(PenName::parse(pen).unwrap(), Platform::X);
        let grant = self.fake.issue_grant(user);
        self.engine
            .connect(key.clone(), self.fake.account(user), vec![], grant, false)
            .await
            .unwrap();
        key
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) async fn schedule(
        &self,
        key: &ConnectionKey,
        after: Duration,
        text: &str,
    ) -> social_studio_storage::PostId {
        let p = post_due(key, self.now().saturating_add(after), text);
        self.engine.schedule(p).await.unwrap().id
    }

    /// The event that took the post to `label`: already stored, or awaited.
    pub(crate) async fn post_reaches(
        &mut self,
        id: social_studio_storage::PostId,
        label: StateLabel,
        within: Duration,
    ) -> Event {
        let pen = self
            .store
            .post(id)
            .await
            .unwrap()
            .unwrap()
            .connection
            .pen_name;
        let stored = self
            .store
            .events_of_post(&pen, id, social_studio_storage::EventPage::newest(100))
            .await
            .unwrap();
        if let Some(e) = stored.into_iter().find(|e| e.to == Some(label)) {
            return e;
        }
        wait_for_event(&mut self.events, within, |e| {
            e.post == Some(id) && e.to == Some(label)
        })
        .await
        .unwrap_or_else(|| panic!("post {id} never became {label}"))
    }

    pub(crate) async fn connection_becomes(
        &mut self,
        key: &ConnectionKey,
        label: StateLabel,
        within: Duration,
    ) -> Event {
        let stored = self
            .store
            .events_of_connection(key, social_studio_storage::EventPage::newest(200))
            .await
            .unwrap();
        if let Some(e) = stored
            .into_iter()
            .find(|e| e.kind == EventKind::ConnectionStatus && e.to == Some(label))
        {
            return e;
        }
        wait_for_event(&mut self.events, within, |e| {
            e.connection == *key && e.kind == EventKind::ConnectionStatus && e.to == Some(label)
        })
        .await
        .unwrap_or_else(|| panic!("{key} never became {label}"))
    }

    pub(crate) async fn post_state(&self, id: social_studio_storage::PostId) -> PostState {
        self.store.post(id).await.unwrap().unwrap().state
    }
}

/// A reason as a platform would give it.
pub(crate) fn reason(code: ReasonCode) -> Reason {
    Reason::with_platform_message(code, "said the platform")
}

/// Waits (virtual time) until `done` holds, for at most `within`.
pub(crate) async fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The connection as its actor shows it equals the connection as the store holds it.
pub(crate) async fn memory_and_disk_agree(w: &World, key: &social_studio_storage::ConnectionKey) {
    let shown = w
        .engine
        .status(key.clone())
        .await
        .unwrap()
        .unwrap()
        .connection;
    let stored = w.store.connection(key).await.unwrap().unwrap();
    assert_eq!(
        shown, stored,
        "the actor shows what the store does not hold"
    );
}
