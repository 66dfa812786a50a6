//! The platform queue on virtual time: what each publish outcome does to a post, pauses
//! that stay with their connection, the lateness window, disconnects, and a dispatch
//! caught flushing by a shutdown.

use std::sync::Arc;
use std::time::Duration;

use social_studio_storage::{
    ConnectionKey, PenName, Platform, PostState, ReasonCode, SharedStore, StateLabel, Timestamp,
};

use crate::test_world::{world, DAY, HOUR};
use crate::testkit::{open_store, post_due, wait_for_event, FakePlatform, Fault, Op};
use crate::{Clock, Engine, EngineConfig, TokioClock};

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
