//! A connection actor that panics is restarted from storage; past its restart budget
//! (5 in 60 s) it goes to Error with reason `too_many_restarts`; its siblings on the same
//! platform are never disturbed.
//!
//! `cargo run --example supervisor_restart` — exits non-zero if any step does not hold.

mod support;

use std::time::Duration;

use social_studio_actors::testkit::{wait_for_event, FakePlatform, Fault, Op};
use social_studio_actors::EngineConfig;
use social_studio_storage::{ConnectionStatus, EventKind, Platform, ReasonCode, StateLabel};
use support::{world, Narrator, HOUR};

fn main() {
    support::quiet_panics();
    support::virtual_runtime().block_on(async {
        let mut n = Narrator::new(
            "supervisor_restart",
            "a failing actor is restarted; a failing-forever one is contained",
        );
        let config = EngineConfig {
            restart_budget: 5,
            restart_window: Duration::from_secs(60),
            ..EngineConfig::default()
        };
        let mut w = world(|c| FakePlatform::new(Platform::X, c, 2 * HOUR), config).await;
        let jane = w.connect("jane-doe", "jane", Platform::X).await;
        let john = w.connect("john-roe", "john", Platform::X).await;
        // The sibling keeps publishing every minute throughout.
        let mut johns = Vec::new();
        for i in 1..=30u64 {
            johns.push(
                w.schedule(
                    &john,
                    w.now().saturating_add(Duration::from_secs(60 * i)),
                    &format!("john {i}"),
                )
                .await,
            );
        }

        n.say("jane's adapter hits a bug: the health check panics");
        w.fake.script(Op::Check, [Fault::Panic]);
        let _ = w.engine.verify(jane.clone()).await;
        let tree = w.engine.tree().await.ok();
        n.check(
            tree.as_ref().is_some_and(|t| t.restarts == 1),
            "the supervisor restarted jane's actor once",
        );
        let status = w.engine.status(jane.clone()).await.ok().flatten();
        n.check(
            status.is_some_and(|s| s.connection.status.is_active()),
            "restarted from storage: jane is Active",
        );
        let p = w.schedule(&jane, w.now(), "jane after the restart").await;
        n.check(
            w.post_reaches(p, StateLabel::Published, HOUR)
                .await
                .is_some(),
            "jane's restarted actor publishes",
        );

        n.say("the bug now strikes on every check; the author keeps pressing 'verify'");
        w.fake
            .script(Op::Check, std::iter::repeat_n(Fault::Panic, 10));
        for _ in 0..6 {
            let _ = w.engine.verify(jane.clone()).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let error = wait_for_event(&mut w.events, HOUR, |e| {
            e.connection == jane
                && e.kind == EventKind::ConnectionStatus
                && e.to == Some(StateLabel::Error)
        })
        .await;
        n.check(
            error.is_some(),
            "past its budget, jane's connection went to Error",
        );
        let status = w.engine.status(jane.clone()).await.ok().flatten();
        let reason = status.and_then(|s| match s.connection.status {
            ConnectionStatus::Error(r) => Some(r),
            _ => None,
        });
        n.say(format!(
            "jane: {}",
            reason
                .as_ref()
                .map(|r| format!("{} — {} {}", r.code, r.message(), r.remedy()))
                .unwrap_or_default()
        ));
        n.check(
            reason.is_some_and(|r| r.code == ReasonCode::TooManyRestarts),
            "its reason is too_many_restarts",
        );
        let tree = w.engine.tree().await.ok();
        n.check(
            tree.as_ref().is_some_and(|t| t.restarts == 5),
            format!(
                "exactly the budget of restarts was spent ({:?})",
                tree.map(|t| t.restarts)
            ),
        );
        let verify = w.engine.verify(jane.clone()).await;
        n.check(
            verify.is_err(),
            "verify now answers with the error instead of looping",
        );

        n.say("meanwhile, on the same platform, john's posts kept going");
        for id in &johns {
            n.check(
                w.post_reaches(*id, StateLabel::Published, HOUR)
                    .await
                    .is_some(),
                format!("john's post {id} published"),
            );
        }
        let john_changes = w
            .store
            .events_of_connection(&john, social_studio_storage::EventPage::newest(500))
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == EventKind::ConnectionStatus)
            .count();
        n.check(
            john_changes == 1,
            "john's connection never changed status after connecting",
        );
        n.say("a reconnect gives jane a fresh start");
        w.fake.script(Op::Check, []);
        let grant = w.fake.issue_grant("jane");
        let again = w
            .engine
            .connect(jane.clone(), w.fake.account("jane"), vec![], grant, false)
            .await;
        n.check(
            again.is_ok_and(|v| v.connection.status.is_active()),
            "jane is Active again after reconnecting",
        );
        n.done();
        w.engine.shutdown().await;
    });
}
