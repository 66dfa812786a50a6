//! The platform queue on virtual time: what each publish outcome does to a post, pauses
//! that stay with their connection, the lateness window, disconnects, and a dispatch
//! caught flushing by a shutdown.

use std::sync::Arc;
use std::time::Duration;

use social_studio_storage::{
    ConnectionKey, EventKind, PenName, Platform, PostState, ReasonCode, SharedStore, StateLabel,
    Timestamp,
};

use crate::test_world::{until, world, DAY, HOUR};
use crate::testkit::{open_store, post_due, wait_for_event, FakePlatform, Fault, FaultyStore, Op};
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

/// The connection's status was written but the queue's resume of its posts was not: the
/// queue keeps them paused as the store does (not dispatchable in memory, Paused on
/// disk), and the next reconnect resumes them.
#[tokio::test(start_paused = true)]
async fn a_resume_that_could_not_be_written_keeps_the_posts_paused_until_the_next_attempt() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
    let id = w.schedule(&key, HOUR, "waiting").await;
    w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    w.post_reaches(id, StateLabel::Paused, DAY).await;
    w.faults
        .fail_commits(|b| FaultyStore::records(b, EventKind::PostState));
    let grant = w.fake.issue_grant("jane");
    w.engine
        .connect(key.clone(), w.fake.account("jane"), vec![], grant, false)
        .await
        .unwrap();
    until(HOUR, "the resume was refused", || w.faults.refused() >= 1).await;
    tokio::time::sleep(HOUR).await;
    assert!(matches!(w.post_state(id).await, PostState::Paused(_)));
    let tree = w.engine.tree().await.unwrap();
    let (_, queue) = tree.queues.iter().find(|(p, _)| *p == Platform::X).unwrap();
    assert_eq!(
        (queue.paused, queue.scheduled),
        (1, 0),
        "the queue holds the post as the store does: paused"
    );
    assert_eq!(w.fake.publish_calls(), 0);
    w.faults.heal();
    let grant = w.fake.issue_grant("jane");
    w.engine
        .connect(key.clone(), w.fake.account("jane"), vec![], grant, false)
        .await
        .unwrap();
    w.post_reaches(id, StateLabel::Published, DAY).await;
}

/// The queue's view of one connection's posts on X: (paused, scheduled).
async fn held(w: &crate::test_world::World) -> (usize, usize) {
    let tree = w.engine.tree().await.unwrap();
    let (_, queue) = tree.queues.iter().find(|(p, _)| *p == Platform::X).unwrap();
    (queue.paused, queue.scheduled)
}

/// A pause whose write failed leaves the queue holding the posts as the store does
/// (Scheduled); the connection, still asked to publish, asks for the pause again, and
/// once the fault has cleared it holds, with nothing sent to the platform.
#[tokio::test(start_paused = true)]
async fn a_pause_that_could_not_be_written_is_not_held_in_memory_and_the_next_dispatch_makes_it() {
    let mut w = world(60 * DAY, |f| f.without_refresh()).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, 3 * DAY, "later").await;
    w.faults
        .fail_commits(|b| FaultyStore::records(b, EventKind::PostState));
    w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
    w.connection_becomes(&key, StateLabel::Expired, 10 * DAY)
        .await;
    until(HOUR, "the pause was refused", || w.faults.refused() >= 1).await;
    assert!(matches!(w.post_state(id).await, PostState::Scheduled));
    assert_eq!(
        held(&w).await,
        (0, 1),
        "the queue holds what the store does"
    );
    w.faults.heal();
    w.post_reaches(id, StateLabel::Paused, 10 * DAY).await;
    assert!(
        matches!(w.post_state(id).await, PostState::Paused(r) if r.code == ReasonCode::RevokedByUser)
    );
    assert_eq!(held(&w).await, (1, 0));
    assert_eq!(w.fake.publish_calls(), 0);
}

/// A cancel whose write failed leaves the post queued as the store holds it, and it
/// publishes when due.
#[tokio::test(start_paused = true)]
async fn a_cancel_that_could_not_be_written_leaves_the_post_queued() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, HOUR, "kept").await;
    w.faults
        .fail_commits(|b| FaultyStore::records(b, EventKind::PostState));
    let refused = w.engine.cancel(key.pen_name.clone(), id).await;
    assert!(refused.is_err());
    w.faults.heal();
    assert!(matches!(w.post_state(id).await, PostState::Scheduled));
    assert_eq!(held(&w).await, (0, 1));
    w.post_reaches(id, StateLabel::Published, DAY).await;
}

/// An edit whose write failed leaves the post queued as it was, and it publishes when due.
#[tokio::test(start_paused = true)]
async fn an_edit_that_could_not_be_written_leaves_the_post_queued_as_it_was() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, HOUR, "as it was").await;
    let mut edited = w.store.post(id).await.unwrap().unwrap();
    edited.content.text = "edited".into();
    w.faults.fail_commits(|b| {
        b.ops()
            .iter()
            .any(|op| matches!(op, social_studio_storage::BatchOp::PutPost(_)))
    });
    assert!(w.engine.update(edited).await.is_err());
    w.faults.heal();
    assert_eq!(held(&w).await, (0, 1));
    w.post_reaches(id, StateLabel::Published, DAY).await;
    assert_eq!(w.fake.published()[0].text, "as it was");
}

/// A disconnect whose write failed leaves the connection's posts queued as the store
/// holds them; the next disconnect fails them.
#[tokio::test(start_paused = true)]
async fn a_disconnect_that_could_not_be_written_leaves_the_posts_as_stored() {
    let w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, DAY, "queued").await;
    w.faults
        .fail_commits(|b| FaultyStore::records(b, EventKind::PostState));
    assert!(w.engine.disconnect(key.clone()).await.is_err());
    assert!(matches!(w.post_state(id).await, PostState::Scheduled));
    assert_eq!(
        held(&w).await,
        (0, 1),
        "the queue holds what the store does"
    );
    w.faults.heal();
    w.engine.disconnect(key.clone()).await.unwrap();
    assert!(matches!(w.post_state(id).await, PostState::Failed(_)));
    assert_eq!(held(&w).await, (0, 0));
}

/// A store that refuses every write (a full disk; sled after a failed fsync) is asked
/// again after a backoff, never in a loop: over ten minutes the queue tries a handful of
/// times, its posts stay Scheduled, the engine's store-health flag says so, and once the
/// store takes writes again the posts publish, once each, in due order.
#[tokio::test(start_paused = true)]
async fn a_failing_store_is_retried_with_a_backoff_and_nothing_is_lost() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let health = w.engine.store_health().clone();
    assert!(health.is_healthy());
    let first = w.schedule(&key, Duration::from_secs(60), "first").await;
    let second = w.schedule(&key, Duration::from_secs(90), "second").await;
    w.faults.fail_commits(|_| true);
    // A queue that spins never lets paused time advance: it reaches the count instead.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(10 * 60)) => {}
        _ = w.faults.refused_reaches(1_000) => {
            panic!("the queue asks a failing store again in a loop")
        }
    }
    let refused = w.faults.refused();
    // 1 s doubling to 60 s over ten minutes: some fifteen attempts, each a dispatch and
    // the write putting its posts back.
    assert!(
        (3..=40).contains(&refused),
        "{refused} commits in ten minutes of a failing store"
    );
    assert!(!health.is_healthy());
    assert_eq!(health.commit_failures(), refused);
    let failing = health.failing().expect("the failure is named");
    assert!(
        failing.error.contains("injected write failure"),
        "{failing:?}"
    );
    for id in [first, second] {
        assert!(matches!(w.post_state(id).await, PostState::Scheduled));
    }
    assert_eq!(w.fake.publish_calls(), 0);

    w.faults.heal();
    w.post_reaches(first, StateLabel::Published, 2 * HOUR).await;
    w.post_reaches(second, StateLabel::Published, 2 * HOUR)
        .await;
    assert!(health.is_healthy());
    assert!(health.failing().is_none());
    let texts: Vec<String> = w.fake.published().into_iter().map(|p| p.text).collect();
    assert_eq!(texts, ["first", "second"], "once each, in due order");
}

/// A publish outcome whose commit failed is applied again after the backoff: the post
/// published at the platform ends Published, not stuck Publishing until a restart.
#[tokio::test(start_paused = true)]
async fn an_outcome_that_could_not_be_written_is_written_after_the_backoff() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, Duration::from_secs(60), "once").await;
    w.faults.fail_commits(|b| {
        b.ops().iter().any(|op| {
            matches!(op, social_studio_storage::BatchOp::Event(e)
                if e.kind == EventKind::PostState && e.to == Some(StateLabel::Published))
        })
    });
    w.faults.refused_reaches(1).await;
    assert!(!w.engine.store_health().is_healthy());
    w.faults.heal();
    w.post_reaches(id, StateLabel::Published, HOUR).await;
    assert!(w.engine.store_health().is_healthy());
    assert_eq!(w.fake.publish_calls(), 1, "published once");
}

/// A store that refuses only dispatches (the write putting their posts back holds) is
/// still asked after a backoff, never in a loop.
#[tokio::test(start_paused = true)]
async fn a_store_refusing_only_dispatches_is_not_asked_in_a_loop() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, Duration::from_secs(60), "later").await;
    w.faults.fail_commits(|b| {
        b.ops().iter().any(|op| {
            matches!(op, social_studio_storage::BatchOp::Event(e)
                if e.to == Some(StateLabel::Publishing))
        })
    });
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(10 * 60)) => {}
        _ = w.faults.refused_reaches(1_000) => {
            panic!("the queue asks a store refusing dispatches again in a loop")
        }
    }
    let refused = w.faults.refused();
    assert!(
        (3..=20).contains(&refused),
        "{refused} dispatches refused in ten minutes"
    );
    assert!(matches!(w.post_state(id).await, PostState::Scheduled));
    w.faults.heal();
    w.post_reaches(id, StateLabel::Published, 2 * HOUR).await;
    assert_eq!(w.fake.publish_calls(), 1);
}

/// A dispatch the store applied in memory but could not make durable (sled's case when
/// the disk fills during a flush), with every write after it refused: the store reads
/// Publishing for a post that never reached its connection. The queue keeps it, and once
/// the store takes writes it publishes, once.
#[tokio::test(start_paused = true)]
async fn a_dispatch_applied_but_not_made_durable_is_not_dropped() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, Duration::from_secs(60), "kept").await;
    w.faults.apply_then_fail_next(1);
    w.faults.fail_commits(|_| true);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(5 * 60)) => {}
        _ = w.faults.refused_reaches(1_000) => panic!("the queue asks a failing store in a loop"),
    }
    assert!(
        matches!(w.post_state(id).await, PostState::Publishing),
        "the store shows the dispatch it could not make durable"
    );
    assert_eq!(w.fake.publish_calls(), 0);
    w.faults.heal();
    w.post_reaches(id, StateLabel::Published, 2 * HOUR).await;
    assert_eq!(w.fake.publish_calls(), 1);
    assert_eq!(w.store.post(id).await.unwrap().unwrap().attempts, 1);
}
