//! Shared by the actor-level examples: a narrator that prints each step and exits
//! non-zero the moment a behaviour does not hold, and the engine set up on virtual time.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use social_studio_actors::testkit::{open_store, wait_for_event, FakePlatform};
use social_studio_actors::{Clock, Engine, EngineConfig, TokioClock};
use social_studio_storage::{
    ConnectionKey, Event, PenName, Platform, PostId, SharedStore, StateLabel, Timestamp,
};
use tokio::sync::broadcast::Receiver;

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// Prints what happens; `check` ends the process with status 1 when a claim is false.
pub struct Narrator {
    name: &'static str,
    checks: usize,
}

impl Narrator {
    pub fn new(name: &'static str, what: &str) -> Narrator {
        println!("== {name}: {what}");
        Narrator { name, checks: 0 }
    }

    pub fn say(&self, line: impl AsRef<str>) {
        println!("   {}", line.as_ref());
    }

    pub fn check(&mut self, holds: bool, claim: impl AsRef<str>) {
        self.checks += 1;
        if holds {
            println!("   ok  {}", claim.as_ref());
        } else {
            println!("   FAILED  {}", claim.as_ref());
            eprintln!(
                "{}: the behaviour did not hold: {}",
                self.name,
                claim.as_ref()
            );
            std::process::exit(1);
        }
    }

    pub fn done(self) {
        println!("== {}: all {} checks held", self.name, self.checks);
    }
}

/// A fresh engine on virtual time with one fake platform.
pub struct World {
    pub dir: tempfile::TempDir,
    pub store: SharedStore,
    pub clock: Arc<TokioClock>,
    pub fake: FakePlatform,
    pub engine: Engine,
    pub events: Receiver<Event>,
}

pub async fn world(
    fake: impl FnOnce(Arc<TokioClock>) -> FakePlatform,
    config: EngineConfig,
) -> World {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open_store(dir.path()).expect("open the store");
    let clock = Arc::new(TokioClock::starting_at(
        Timestamp::parse_rfc3339("2026-12-01T09:00:00Z").expect("time"),
    ));
    let fake = fake(clock.clone());
    let engine = Engine::start(
        store.clone(),
        vec![Arc::new(fake.clone())],
        clock.clone(),
        config,
    )
    .await
    .expect("the engine starts");
    let events = engine.subscribe();
    World {
        dir,
        store,
        clock,
        fake,
        engine,
        events,
    }
}

impl World {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn connect(&self, pen: &str, user: &str, platform: Platform) -> ConnectionKey {
        let key = ConnectionKey::new(PenName::parse(pen).expect("pen name"), platform);
        let grant = self.fake.issue_grant(user);
        self.engine
            .connect(key.clone(), self.fake.account(user), vec![], grant, false)
            .await
            .expect("connect");
        key
    }

    pub async fn schedule(&self, key: &ConnectionKey, at: Timestamp, text: &str) -> PostId {
        let post = social_studio_actors::testkit::post_due(key, at, text);
        self.engine.schedule(post).await.expect("schedule").id
    }

    pub async fn state(&self, id: PostId) -> StateLabel {
        self.store
            .post(id)
            .await
            .ok()
            .flatten()
            .map(|p| p.state.label())
            .unwrap_or(StateLabel::NotConnected)
    }

    /// Waits (virtual time) for the event that takes the post to `label`.
    pub async fn post_reaches(
        &mut self,
        id: PostId,
        label: StateLabel,
        within: Duration,
    ) -> Option<Event> {
        if let Some(pen) = self
            .store
            .post(id)
            .await
            .ok()
            .flatten()
            .map(|p| p.connection.pen_name)
        {
            let stored = self
                .store
                .events_of_post(&pen, id, social_studio_storage::EventPage::newest(100))
                .await
                .unwrap_or_default();
            if let Some(e) = stored.into_iter().find(|e| e.to == Some(label)) {
                return Some(e);
            }
        }
        wait_for_event(&mut self.events, within, |e| {
            e.post == Some(id) && e.to == Some(label)
        })
        .await
    }
}

pub fn virtual_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// Injected panics are part of the scenario: print one line instead of a backtrace.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| println!("   (injected panic: {info})")));
}
