//! The supervisor: booting the tree again from storage.

use std::sync::Arc;

use social_studio_storage::{ConnectionKey, PenName, Platform, StateLabel, Timestamp};

use crate::test_world::{DAY, HOUR};
use crate::testkit::{open_store, post_due, wait_for_event, FakePlatform};
use crate::{Clock, Engine, EngineConfig, TokioClock};

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

/// A connection stuck in a platform call that never answers does not hang a status
/// question: after `STATUS_WITHIN` the store answers with the state last made durable.
#[tokio::test(start_paused = true)]
async fn a_status_question_is_answered_while_its_connection_is_stuck() {
    use crate::testkit::{Fault, Op};

    let w = crate::test_world::world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(Op::Check, [Fault::Hang]);
    let engine = w.engine.clone();
    let stuck_key = key.clone();
    // The connection takes the verify into its mailbox and waits on the platform forever.
    let stuck = tokio::spawn(async move { engine.verify(stuck_key).await });
    // Until the connection has taken the hang (virtual time: 1 ms steps).
    while w.fake.scripted(Op::Check) > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }

    let asked = tokio::time::Instant::now();
    let answer = tokio::time::timeout(10 * crate::supervisor::STATUS_WITHIN, w.engine.status(key))
        .await
        .expect("a status question is answered although the connection is stuck")
        .unwrap()
        .expect("the connection exists");
    assert!(
        answer.connection.status.is_active(),
        "{:?}",
        answer.connection.status
    );
    assert!(asked.elapsed() >= crate::supervisor::STATUS_WITHIN);
    assert!(
        !stuck.is_finished(),
        "the verify is still waiting on the platform"
    );
    stuck.abort();
}

#[tokio::test(start_paused = true)]
async fn a_restart_reports_its_progress_connection_by_connection() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_800_000_000_000,
    )));
    let fake = FakePlatform::new(Platform::X, clock.clone(), 2 * HOUR);
    {
        let store = open_store(dir.path()).unwrap();
        let engine = Engine::start(
            store,
            vec![Arc::new(fake.clone())],
            clock.clone(),
            EngineConfig::default(),
        )
        .await
        .unwrap();
        for pen in ["ann", "bea", "cy"] {
            let key = ConnectionKey::new(PenName::parse(pen).unwrap(), Platform::X);
            engine
                .connect(key, fake.account(pen), vec![], fake.issue_grant(pen), false)
                .await
                .unwrap();
        }
        engine.shutdown().await;
    }
    let boot = crate::BootProgress::new();
    assert_eq!(boot.state().phase, crate::BootPhase::OpeningStore);
    let store = open_store(dir.path()).unwrap();
    let engine = Engine::start_reporting(
        store,
        vec![Arc::new(fake.clone())],
        clock.clone(),
        EngineConfig::default(),
        boot.clone(),
    )
    .await
    .unwrap();
    let state = boot.state();
    assert_eq!(state.phase, crate::BootPhase::Ready);
    assert_eq!((state.loaded, state.total), (3, Some(3)));
    engine.shutdown().await;
}
