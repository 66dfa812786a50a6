//! Timeouts, 5xx answers and a storm of 429s with Retry-After: the connection stays
//! Active, no post fails, and every Retry-After is respected.
//!
//! `cargo run --example transient_faults` — exits non-zero if any step does not hold.

mod support;

use std::time::Duration;

use social_studio_actors::testkit::{FakePlatform, Fault, Op};
use social_studio_actors::{EngineConfig, LimitScope};
use social_studio_storage::{EventKind, Platform, StateLabel};
use support::{world, Narrator, DAY, HOUR};

fn main() {
    support::virtual_runtime().block_on(async {
        let mut n = Narrator::new("transient_faults", "passing faults never expire a connection or fail a post");
        let mut w = world(|c| FakePlatform::new(Platform::X, c, 2 * HOUR), EngineConfig::default()).await;
        let key = w.connect("jane-doe", "jane", Platform::X).await;

        // Refreshes: two 503s and a timeout (a stalled call that the platform answers late).
        w.fake.script(Op::Refresh, [Fault::Unavailable, Fault::Stall(Duration::from_secs(45)), Fault::Unavailable]);
        // Publishing: a 429 storm asking for 60 s each time, 5xx answers, and timeouts.
        let mut faults = Vec::new();
        for _ in 0..12 {
            faults.push(Fault::RateLimited(Duration::from_secs(60), LimitScope::Connection));
        }
        faults.extend([Fault::Unavailable, Fault::Stall(Duration::from_secs(30)), Fault::Unavailable]);
        for _ in 0..4 {
            faults.push(Fault::RateLimited(Duration::from_secs(300), LimitScope::Platform));
        }
        w.fake.script(Op::Publish, faults);
        n.say("scripted: 3 refresh faults; 12 per-user 429s (60 s), 2 5xx, 1 timeout, 4 app-wide 429s (300 s)");

        let start = w.now();
        let mut posts = Vec::new();
        for i in 0..20u64 {
            posts.push(w.schedule(&key, start.saturating_add(Duration::from_secs(60 + i * 90)), &format!("post {i}")).await);
        }
        n.say("scheduled 20 posts over the next half hour");

        for &id in &posts {
            let e = w.post_reaches(id, StateLabel::Published, DAY).await;
            n.check(e.is_some(), format!("post {id} published"));
        }
        let mut failed = 0;
        for &id in &posts {
            if w.state(id).await == StateLabel::Failed {
                failed += 1;
            }
        }
        n.check(failed == 0, "no post failed");
        let left_active = w
            .store
            .events_of_connection(&key, social_studio_storage::EventPage::newest(1000)).await
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == EventKind::ConnectionStatus && e.to != Some(StateLabel::Active))
            .count();
        n.check(left_active == 0, "the connection never left Active");

        // Every rate-limited answer was followed by a wait of at least its Retry-After.
        let calls = w.fake.calls();
        let publishes: Vec<_> = calls.iter().filter(|c| c.op == Op::Publish).collect();
        let mut limited = 0;
        for pair in publishes.windows(2) {
            if let (Some(wait), next) = (pair[0].retry_after, pair[1]) {
                limited += 1;
                let gap = pair[0].at.until(next.at);
                if gap < wait {
                    n.check(false, format!("a 429 asking for {wait:?} was followed {gap:?} later"));
                }
            }
        }
        n.check(limited == 16, format!("all {limited} rate-limited answers were waited out in full"));
        n.say(format!("{} publish calls for 20 posts; the last published at {}", publishes.len(), w.now()));

        // Six hours on, the refreshes have met their scripted faults and recovered.
        tokio::time::sleep(6 * HOUR).await;
        let calls = w.fake.calls();
        let refreshes: Vec<_> = calls.iter().filter(|c| c.op == Op::Refresh).collect();
        let failed_refreshes = refreshes.iter().filter(|c| c.result != "ok").count();
        n.say(format!(
            "{}: {} refresh calls, {} of them met a 5xx (one more was answered 45 s late)",
            w.now(),
            refreshes.len(),
            failed_refreshes
        ));
        n.check(failed_refreshes == 2 && refreshes.len() >= 5, "refreshes retried through the faults");
        let status = w.engine.status(key.clone()).await.ok().flatten();
        n.check(status.is_some_and(|s| s.connection.status.is_active()), "the connection is still Active");
        let late = w.schedule(&key, w.now(), "after the storm").await;
        n.check(w.post_reaches(late, StateLabel::Published, HOUR).await.is_some(), "a new post publishes");
        n.check(w.fake.spent_token_sends() == 0, "no spent refresh token was sent while retrying");
        n.done();
        w.engine.shutdown().await;
    });
}
