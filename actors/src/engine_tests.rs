//! The actors together on virtual time: a real sled store on disk, in-process fake
//! platforms, and `tokio::time::pause()` so days pass in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use social_studio_storage::{
    ConnectionKey, ConnectionStatus, Event, EventKind, PenName, Platform, PostState, Reason,
    ReasonCode, SharedStore, StateLabel, Timestamp,
};
use tokio::sync::broadcast::Receiver;

use crate::testkit::{open_store, post_due, wait_for_event, FakePlatform, Fault, Op};
use crate::{Clock, Engine, EngineConfig, LimitScope, PortError, TokioClock};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

struct World {
    _dir: tempfile::TempDir,
    store: SharedStore,
    fake: FakePlatform,
    clock: Arc<TokioClock>,
    engine: Engine,
    events: Receiver<Event>,
}

async fn world(
    access_lifetime: Duration,
    tweak: impl FnOnce(FakePlatform) -> FakePlatform,
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
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
        fake,
        clock,
        engine,
        events,
    }
}

impl World {
    async fn connect(&self, pen: &str, user: &str) -> ConnectionKey {
        let key = ConnectionKey::new(PenName::parse(pen).unwrap(), Platform::X);
        let grant = self.fake.issue_grant(user);
        self.engine
            .connect(key.clone(), self.fake.account(user), vec![], grant, false)
            .await
            .unwrap();
        key
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn schedule(
        &self,
        key: &ConnectionKey,
        after: Duration,
        text: &str,
    ) -> social_studio_storage::PostId {
        let p = post_due(key, self.now().saturating_add(after), text);
        self.engine.schedule(p).await.unwrap().id
    }

    /// The event that took the post to `label`: already stored, or awaited.
    async fn post_reaches(
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

    async fn connection_becomes(
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

    async fn post_state(&self, id: social_studio_storage::PostId) -> PostState {
        self.store.post(id).await.unwrap().unwrap().state
    }
}

fn reason(code: ReasonCode) -> Reason {
    Reason::with_platform_message(code, "said the platform")
}

// ---- the classification table, row by row ----

#[tokio::test(start_paused = true)]
async fn grant_dead_expires_the_connection_and_pauses_its_posts() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(
        Op::Publish,
        [Fault::Error(PortError::GrantDead(reason(
            ReasonCode::PasswordChanged,
        )))],
    );
    let first = w.schedule(&key, Duration::from_secs(60), "one").await;
    let second = w.schedule(&key, HOUR, "two").await;
    let e = w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::PasswordChanged);
    w.post_reaches(first, StateLabel::Paused, DAY).await;
    assert!(
        matches!(w.post_state(first).await, PostState::Paused(r) if r.code == ReasonCode::PasswordChanged)
    );
    assert!(
        matches!(w.post_state(second).await, PostState::Paused(_)),
        "not failed: paused"
    );
    let status = w.engine.status(key).await.unwrap().unwrap();
    assert!(
        matches!(status.connection.status, ConnectionStatus::Expired(r) if r.code == ReasonCode::PasswordChanged)
    );
}

#[tokio::test(start_paused = true)]
async fn requirement_unmet_is_an_error_and_pauses_posts() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(
        Op::Publish,
        [Fault::Error(PortError::RequirementUnmet(reason(
            ReasonCode::NotPageAdmin,
        )))],
    );
    let id = w.schedule(&key, Duration::from_secs(60), "one").await;
    let e = w.connection_becomes(&key, StateLabel::Error, DAY).await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::NotPageAdmin);
    w.post_reaches(id, StateLabel::Paused, DAY).await;
}

#[tokio::test(start_paused = true)]
async fn rate_limits_and_passing_faults_keep_the_connection_active_and_the_post_waits() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(
        Op::Publish,
        [
            Fault::Error(PortError::RateLimited {
                retry_after: Duration::from_secs(900),
                scope: LimitScope::Connection,
            }),
            Fault::Unavailable,
            Fault::Error(PortError::Unavailable {
                detail: "reset".into(),
                maybe_delivered: false,
            }),
        ],
    );
    let id = w.schedule(&key, Duration::from_secs(60), "one").await;
    let due = w.now().saturating_add(Duration::from_secs(60));
    let published = w.post_reaches(id, StateLabel::Published, DAY).await;
    // The 15-minute limit was respected before the later attempts.
    assert!(
        published.at >= due.saturating_add(Duration::from_secs(900)),
        "published at {}",
        published.at
    );
    assert_eq!(w.fake.publish_calls(), 4);
    assert!(w
        .engine
        .status(key.clone())
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
    let evs = w
        .store
        .events_of_connection(&key, social_studio_storage::EventPage::newest(100))
        .await
        .unwrap();
    assert!(!evs
        .iter()
        .any(|e| e.to == Some(StateLabel::Failed) || e.to == Some(StateLabel::Paused)));
    // Each wait named why: the limit first, then the passing faults.
    let waits: Vec<Option<ReasonCode>> = evs
        .iter()
        .rev()
        .filter(|e| e.post == Some(id) && e.to == Some(StateLabel::Scheduled))
        .filter(|e| e.from == Some(StateLabel::Publishing))
        .map(|e| e.reason.as_ref().map(|r| r.code))
        .collect();
    assert_eq!(
        waits,
        [
            Some(ReasonCode::RateLimited),
            Some(ReasonCode::PlatformUnavailable),
            Some(ReasonCode::PlatformUnavailable)
        ],
        "{evs:?}"
    );
    assert!(w.store.post(id).await.unwrap().unwrap().waiting.is_none());
}

#[tokio::test(start_paused = true)]
async fn content_rejected_fails_only_that_post() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let bad = w
        .schedule(&key, Duration::from_secs(60), "dup #rejected")
        .await;
    let good = w.schedule(&key, Duration::from_secs(120), "fine").await;
    w.post_reaches(bad, StateLabel::Failed, DAY).await;
    assert!(
        matches!(w.post_state(bad).await, PostState::Failed(r) if r.code == ReasonCode::ContentRejected)
    );
    w.post_reaches(good, StateLabel::Published, DAY).await;
}

#[tokio::test(start_paused = true)]
async fn an_answer_lost_publish_becomes_unconfirmed_and_is_not_resent() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(Op::Publish, [Fault::AnswerLost]);
    let id = w.schedule(&key, Duration::from_secs(60), "one").await;
    w.post_reaches(id, StateLabel::Unconfirmed, DAY).await;
    tokio::time::sleep(DAY).await;
    assert_eq!(w.fake.publish_calls(), 1);
    assert_eq!(
        w.fake.published().len(),
        1,
        "the platform did publish it, once"
    );
    // A person says it did not appear: it is sent again.
    w.engine
        .resolve(key.pen_name.clone(), id, false)
        .await
        .unwrap();
    w.post_reaches(id, StateLabel::Published, DAY).await;
}

// ---- refresh ----

#[tokio::test(start_paused = true)]
async fn two_concurrent_publishes_that_need_a_refresh_cause_one_refresh() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.expire_access("jane");
    let a = w.schedule(&key, Duration::from_secs(10), "a").await;
    let b = w.schedule(&key, Duration::from_secs(10), "b").await;
    w.post_reaches(a, StateLabel::Published, HOUR).await;
    w.post_reaches(b, StateLabel::Published, HOUR).await;
    assert_eq!(w.fake.refresh_calls(), 1);
    assert_eq!(w.fake.spent_token_sends(), 0);
}

#[tokio::test(start_paused = true)]
async fn sixty_days_of_rotation_never_send_a_spent_refresh_token() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    // Some refreshes fail in passing along the way.
    w.fake.script(
        Op::Refresh,
        [
            Fault::Unavailable,
            Fault::Stall(Duration::from_secs(30)),
            Fault::Unavailable,
        ],
    );
    tokio::time::sleep(60 * DAY).await;
    let calls = w.fake.refresh_calls();
    // A 2-hour token refreshed at 75–90% of its life: every 1.5–1.8 hours, 13–16 a day.
    assert!(
        (60 * 13..=60 * 16).contains(&calls),
        "{calls} refreshes in 60 days"
    );
    assert_eq!(w.fake.spent_token_sends(), 0);
    assert!(w
        .engine
        .status(key.clone())
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
    let id = w
        .schedule(&key, Duration::from_secs(1), "still alive")
        .await;
    w.post_reaches(id, StateLabel::Published, HOUR).await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_refresh_answer_is_resent_once_and_a_rejection_is_named_refresh_interrupted() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    // The platform rotates, the answer is lost; the resend meets a spent token.
    w.fake.script(Op::Refresh, [Fault::AnswerLost]);
    let e = w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::RefreshInterrupted);
    assert_eq!(w.fake.refresh_calls(), 2, "sent, then resent exactly once");
}

#[tokio::test(start_paused = true)]
async fn within_a_grace_period_a_lost_refresh_answer_is_completed() {
    let mut w = world(2 * HOUR, |f| f.with_grace_period(2 * HOUR)).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(Op::Refresh, [Fault::AnswerLost]);
    let e = wait_for_event(&mut w.events, DAY, |e| e.kind == EventKind::GrantRenewed).await;
    assert!(e.is_some());
    assert!(w
        .engine
        .status(key)
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
}

#[tokio::test(start_paused = true)]
async fn a_grant_that_cannot_be_renewed_warns_then_expires() {
    let mut w = world(60 * DAY, |f| f.without_refresh()).await;
    let key = w.connect("jane", "jane").await;
    let start = w.now();
    let warn = wait_for_event(&mut w.events, 90 * DAY, |e| {
        e.kind == EventKind::ExpiringSoon
    })
    .await
    .unwrap();
    let lapses = start.saturating_add(60 * DAY);
    assert!(warn.at >= lapses.saturating_sub(7 * DAY) && warn.at < lapses);
    let status = w.engine.status(key.clone()).await.unwrap().unwrap();
    assert!(status.expiring_soon && !status.renewable);
    let e = w
        .connection_becomes(&key, StateLabel::Expired, 90 * DAY)
        .await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::GrantExpired);
    assert!(e.at >= lapses);
}

#[tokio::test(start_paused = true)]
async fn a_silently_revoked_grant_is_found_before_the_post_is_due() {
    let mut w = world(60 * DAY, |f| f.without_refresh()).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, 3 * DAY, "later").await;
    w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
    let e = w
        .connection_becomes(&key, StateLabel::Expired, 10 * DAY)
        .await;
    let due = w.store.post(id).await.unwrap().unwrap().due_at;
    assert!(
        e.at <= due.saturating_sub(HOUR),
        "found at {} for a post due {}",
        e.at,
        due
    );
    assert_eq!(e.reason.unwrap().code, ReasonCode::RevokedByUser);
    w.post_reaches(id, StateLabel::Paused, DAY).await;
    assert_eq!(
        w.fake.publish_calls(),
        0,
        "the post never met the revoked grant"
    );
}

// ---- isolation, reconnect, disconnect ----

#[tokio::test(start_paused = true)]
async fn pen_name_a_expiring_never_pauses_pen_name_b_on_the_same_platform() {
    let mut w = world(2 * HOUR, |f| f).await;
    let a = w.connect("author-a", "alice").await;
    let b = w.connect("author-b", "bob").await;
    w.fake.revoke_user("alice", ReasonCode::RevokedByUser);
    let pa = w.schedule(&a, HOUR, "from a").await;
    let pb = w.schedule(&b, HOUR, "from b").await;
    w.connection_becomes(&a, StateLabel::Expired, DAY).await;
    w.post_reaches(pb, StateLabel::Published, DAY).await;
    assert!(matches!(w.post_state(pa).await, PostState::Paused(_)));
    assert!(w
        .engine
        .status(b)
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
}

#[tokio::test(start_paused = true)]
async fn reconnecting_resumes_paused_posts_in_due_order_and_a_different_account_is_refused() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
    let ids = [
        w.schedule(&key, HOUR, "first").await,
        w.schedule(&key, 2 * HOUR, "second").await,
        w.schedule(&key, 3 * HOUR, "third").await,
    ];
    w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    tokio::time::sleep(DAY).await;
    for id in ids {
        assert!(matches!(w.post_state(id).await, PostState::Paused(_)));
    }
    // Another account is refused and changes nothing.
    let other = w.fake.issue_grant("mallory");
    let err = w
        .engine
        .connect(key.clone(), w.fake.account("mallory"), vec![], other, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::EngineError::WrongAccount { ref reason, .. } if reason.code == ReasonCode::WrongAccount)
    );
    assert!(matches!(w.post_state(ids[0]).await, PostState::Paused(_)));
    // The same account comes back: everything publishes, overdue, in due order.
    let grant = w.fake.issue_grant("jane");
    w.engine
        .connect(key.clone(), w.fake.account("jane"), vec![], grant, false)
        .await
        .unwrap();
    for id in ids {
        w.post_reaches(id, StateLabel::Published, HOUR).await;
    }
    let order: Vec<_> = w.fake.published().iter().map(|p| p.text.clone()).collect();
    assert_eq!(order, ["first", "second", "third"]);
}

#[tokio::test(start_paused = true)]
async fn disconnect_fails_scheduled_posts_with_account_disconnected() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let ids = [
        w.schedule(&key, DAY, "a").await,
        w.schedule(&key, 2 * DAY, "b").await,
    ];
    let report = w.engine.disconnect(key.clone()).await.unwrap();
    assert_eq!(report.posts_failed, 2);
    assert!(report.revoke.is_ok());
    for id in ids {
        assert!(
            matches!(w.post_state(id).await, PostState::Failed(r) if r.code == ReasonCode::AccountDisconnected)
        );
    }
    assert!(w.engine.status(key.clone()).await.unwrap().is_none());
    assert!(w.store.grant(&key).await.unwrap().is_none());
    tokio::time::sleep(3 * DAY).await;
    assert_eq!(w.fake.publish_calls(), 0);
    w.connection_becomes(&key, StateLabel::NotConnected, Duration::from_secs(1))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_post_past_the_lateness_window_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let clock = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_800_000_000_000,
    )));
    let fake = FakePlatform::new(Platform::X, clock.clone(), 2 * HOUR);
    let config = EngineConfig {
        lateness_window: Some(HOUR),
        jitter_seed: Some(1),
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
    let mut events = engine.subscribe();
    let key = ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::X);
    engine
        .connect(
            key.clone(),
            fake.account("jane"),
            vec![],
            fake.issue_grant("jane"),
            false,
        )
        .await
        .unwrap();
    let late = engine
        .schedule(post_due(
            &key,
            clock.now().saturating_sub(2 * HOUR),
            "old news",
        ))
        .await
        .unwrap();
    let fresh = engine
        .schedule(post_due(
            &key,
            clock.now().saturating_sub(Duration::from_secs(60)),
            "fresh",
        ))
        .await
        .unwrap();
    let held = wait_for_event(&mut events, HOUR, |e| {
        e.post == Some(late.id) && e.to == Some(StateLabel::Held)
    })
    .await
    .unwrap();
    assert_eq!(held.reason.unwrap().code, ReasonCode::TooLate);
    wait_for_event(&mut events, HOUR, |e| {
        e.post == Some(fresh.id) && e.to == Some(StateLabel::Published)
    })
    .await
    .unwrap();
    assert_eq!(fake.published().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restart_rebuilds_connections_and_posts_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_800_000_000_000,
    )));
    let fake = FakePlatform::new(Platform::X, clock.clone(), 2 * HOUR);
    let key = ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::X);
    let id = {
        let store = open_store(dir.path()).unwrap();
        let engine = Engine::start(
            store,
            vec![Arc::new(fake.clone())],
            clock.clone(),
            EngineConfig::default(),
        )
        .await
        .unwrap();
        engine
            .connect(
                key.clone(),
                fake.account("jane"),
                vec![],
                fake.issue_grant("jane"),
                false,
            )
            .await
            .unwrap();
        let id = engine
            .schedule(post_due(&key, clock.now().saturating_add(DAY), "tomorrow"))
            .await
            .unwrap()
            .id;
        engine.shutdown().await;
        id
    };
    let store = open_store(dir.path()).unwrap();
    let engine = Engine::start(
        store,
        vec![Arc::new(fake.clone())],
        clock.clone(),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    let mut events = engine.subscribe();
    assert!(engine
        .status(key.clone())
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
    wait_for_event(&mut events, 2 * DAY, |e| {
        e.post == Some(id) && e.to == Some(StateLabel::Published)
    })
    .await
    .unwrap();
    assert_eq!(fake.published().len(), 1);
}

/// A dispatched post reaches its connection only once its Publishing state is durable,
/// and a shutdown that comes while that flush is still running puts it back to
/// Scheduled: it was never sent, so it must not come back Unconfirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_still_flushing_at_shutdown_goes_back_to_waiting() {
    use std::sync::{Condvar, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let hook_gate = gate.clone();
    let hook = Box::new(move || {
        let (held, changed) = &*hook_gate;
        let mut held = held.lock().unwrap();
        while *held {
            held = changed.wait(held).unwrap();
        }
    });
    let mut config = social_studio_storage::StoreConfig::new(dir.path());
    config.background_flush_ms = None;
    let store: SharedStore = Arc::new(
        social_studio_storage::SledStore::open_with_flush_hook(
            &config,
            &social_studio_storage::MasterKey::generate(),
            social_studio_storage::KeySource::Provided,
            hook,
        )
        .unwrap(),
    );
    let clock = Arc::new(TokioClock::starting_at(Timestamp::now_system()));
    let fake = FakePlatform::new(Platform::X, clock.clone(), HOUR);
    let engine = Engine::start(
        store.clone(),
        vec![Arc::new(fake.clone())],
        clock.clone(),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    let key = ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::X);
    engine
        .connect(
            key.clone(),
            fake.account("jane"),
            vec![],
            fake.issue_grant("jane"),
            false,
        )
        .await
        .unwrap();
    let post = post_due(
        &key,
        clock.now().saturating_add(Duration::from_millis(200)),
        "held at the flush",
    );
    let id = engine.schedule(post).await.unwrap().id;

    // Hold every flush from now on, and wait for the queue to dispatch the post.
    *gate.0.lock().unwrap() = true;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !matches!(
        store.post(id).await.unwrap().unwrap().state,
        PostState::Publishing
    ) {
        assert!(tokio::time::Instant::now() < deadline, "never dispatched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut shutdown = tokio::spawn(async move { engine.shutdown().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut shutdown)
            .await
            .is_err(),
        "shutdown finished while a dispatch was still flushing"
    );
    assert!(
        fake.published().is_empty(),
        "the post reached the platform before its Publishing state was durable"
    );

    *gate.0.lock().unwrap() = false;
    gate.1.notify_all();
    shutdown.await.unwrap();
    let after = store.post(id).await.unwrap().unwrap();
    assert!(
        matches!(after.state, PostState::Scheduled),
        "{:?}",
        after.state
    );
    assert_eq!(after.attempts, 0);
    assert!(fake.published().is_empty());
}

/// A health check that finds the access token refused refreshes; when that refresh fails
/// in passing, the check backs off with it instead of checking (and refreshing) again at
/// once in a loop.
#[tokio::test(start_paused = true)]
async fn a_check_whose_refresh_fails_in_passing_backs_off_instead_of_spinning() {
    let w = world(30 * DAY, |f| f).await;
    let _key = w.connect("jane", "jane").await;
    w.fake.expire_access("jane");
    w.fake.script(
        Op::Refresh,
        [Fault::Unavailable, Fault::Unavailable, Fault::Unavailable],
    );
    // The daily health check comes within a day; then the refreshes, the last one good.
    let deadline = tokio::time::Instant::now() + 3 * DAY;
    while w.fake.refresh_calls() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let at: Vec<Timestamp> = w
        .fake
        .calls()
        .iter()
        .filter(|c| matches!(c.op, Op::Refresh))
        .map(|c| c.at)
        .collect();
    for pair in at.windows(2) {
        assert!(
            pair[0].until(pair[1]) >= Duration::from_secs(1),
            "refreshes at {at:?}: a failed refresh was followed at once by another"
        );
    }
}
