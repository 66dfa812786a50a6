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
