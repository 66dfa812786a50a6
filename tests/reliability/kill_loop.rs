//! The engine SIGKILLed at random moments — between requests, mid-request, mid-publish —
//! and restarted on the same data directory, again and again, while posts are scheduled
//! and fall due on X, LinkedIn, Pinterest and Bluesky. Then everything due settles, and every post
//! the API accepted (201) is accounted for: Published, or Unconfirmed where a kill hit it
//! mid-publish (the platform's record says whether it went out); none Failed, none lost,
//! none received twice by a platform.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::harness::{budget, by_state, one_at_a_time, runtime, seeded, World, PLATFORMS};

/// How long before each kill the scheduler stops pausing between requests: long
/// enough for a few, so that the kill often cuts one, short enough that a run stays a
/// few hundred posts.
const BACK_TO_BACK: Duration = Duration::from_millis(50);

/// One post the scheduler will ask for.
struct Plan {
    /// Index into [`PLATFORMS`].
    platform: usize,
    /// Due just before the coming kill (`early_ms` before it), else in `due_ms`.
    at_kill: bool,
    due_ms: u64,
    early_ms: u64,
    /// The pause after asking.
    pause_ms: u64,
}

/// X's simulated limits are its real ones: 100 posts and 75 identity checks (one after
/// each restart, before the first post due) per user in 15 minutes. Past 60 of either,
/// the loop schedules on the others, so that a longer run does not wait out X's window.
fn x_has_room(x_posts: usize, kills: usize) -> bool {
    x_posts < 60 && kills < 60
}

/// What the suite asked for and what the engine said to it.
struct Accepted {
    id: String,
    text: String,
}

#[test]
fn every_accepted_post_is_accounted_for_across_sigkills() {
    let _serial = one_at_a_time();
    let budget = budget("RELIABILITY_KILL_SECS", 75);
    let (seed, mut rng) = seeded();
    eprintln!(
        "kill loop: seed {seed} (RELIABILITY_SEED), budget {budget:?} (RELIABILITY_KILL_SECS)"
    );
    runtime().block_on(async move {
        let world = World::new().await;
        let mut engine = world.start_engine().await;
        let targets = world.connect_all().await;

        let started = Instant::now();
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut not_accepted = 0usize;
        let mut kills = 0usize;
        let mut n = 0usize;
        let mut x_posts = 0usize;
        while started.elapsed() < budget {
            // Up for a random while, scheduling all along; the kill lands wherever the
            // engine is then — in a request, a publish, a commit, or idle.
            let kill_at = Instant::now() + Duration::from_millis(rng.gen_range(700..3500));
            // Half the posts fall due just before the kill, so that it often lands in the
            // middle of publishing them; the others at any time in the next seconds.
            let plans: Vec<Plan> = (0..64)
                .map(|_| Plan {
                    platform: rng.gen_range(0..PLATFORMS.len()),
                    at_kill: rng.gen_bool(0.5),
                    due_ms: rng.gen_range(0..4000),
                    early_ms: rng.gen_range(0..120),
                    pause_ms: rng.gen_range(150..600),
                })
                .collect();
            let killer = async move {
                tokio::time::sleep_until(kill_at).await;
                engine.kill().await;
            };
            let scheduler = async {
                for plan in plans.iter().cycle() {
                    if Instant::now() >= kill_at {
                        break;
                    }
                    let mut platform = PLATFORMS[plan.platform];
                    if platform == "x" && !x_has_room(x_posts, kills) {
                        platform = PLATFORMS[1 + n % (PLATFORMS.len() - 1)];
                    }
                    n += 1;
                    let text = format!("reliability {seed} post {n}");
                    let due_in = if plan.at_kill {
                        kill_at
                            .saturating_duration_since(Instant::now())
                            .saturating_sub(Duration::from_millis(plan.early_ms))
                    } else {
                        Duration::from_millis(plan.due_ms)
                    };
                    match world
                        .api
                        .schedule(platform, targets[platform].as_deref(), &text, due_in)
                        .await
                    {
                        Ok(id) => {
                            x_posts += usize::from(platform == "x");
                            accepted.push(Accepted { id, text });
                        }
                        Err(_) => not_accepted += 1,
                    }
                    // In the last moments before the kill, requests go back to back,
                    // so that the kill often lands in the middle of one.
                    let left = kill_at.saturating_duration_since(Instant::now());
                    if left > BACK_TO_BACK {
                        tokio::time::sleep(Duration::from_millis(plan.pause_ms).min(left - BACK_TO_BACK))
                            .await;
                    }
                }
            };
            tokio::join!(killer, scheduler);
            kills += 1;
            engine = world.start_engine().await;
        }

        // Everything due settles on the last engine, which is left running.
        let settle = Duration::from_secs(90);
        let posts = match world.api.settled(settle).await {
            Ok(posts) => posts,
            Err(posts) => panic!(
                "posts still moving {settle:?} after the last restart (seed {seed}): {:?}\n{}",
                by_state(&posts),
                world.log_tail()
            ),
        };
        let delivered = world.delivered().await;

        let mut problems = Vec::new();
        let mut published = 0usize;
        let mut unconfirmed = 0usize;
        let mut unconfirmed_sent = 0usize;
        for post in &accepted {
            let Some(found) = posts.iter().find(|p| p["id"] == post.id.as_str()) else {
                problems.push(format!("accepted post {} ({}) is gone", post.id, post.text));
                continue;
            };
            let received = delivered.get(&post.text).copied().unwrap_or(0);
            match found["state"].as_str() {
                Some("published") => {
                    published += 1;
                    if received != 1 {
                        problems.push(format!(
                            "published post {} reached its platform {received} times",
                            post.id
                        ));
                    }
                }
                Some("unconfirmed") => {
                    unconfirmed += 1;
                    unconfirmed_sent += usize::from(received > 0);
                }
                other => problems.push(format!(
                    "post {} ended {other:?}: {}",
                    post.id, found["reason"]
                )),
            }
        }
        // Posts whose 201 a kill swallowed may exist too: they follow the same rules.
        let swallowed = posts
            .iter()
            .filter(|p| !accepted.iter().any(|a| p["id"] == a.id.as_str()))
            .count();
        for post in &posts {
            if post["state"] == "failed" {
                problems.push(format!("post {} failed: {}", post["id"], post["reason"]));
            }
        }
        for (text, times) in &delivered {
            if *times > 1 {
                problems.push(format!("{text:?} reached its platform {times} times"));
            }
        }
        for platform in PLATFORMS {
            let entry = world.api.connection(platform).await;
            if entry["status"] != "active" {
                problems.push(format!("{platform} left Active: {entry}"));
            }
        }
        engine.stop().await;

        eprintln!(
            "kill loop: seed {seed}, kills {kills}, posts accepted {}, published {published}, unconfirmed {unconfirmed} ({unconfirmed_sent} of them had gone out), requests without a 201 {not_accepted} ({swallowed} of them created all the same), all posts by state {:?}",
            accepted.len(),
            by_state(&posts)
        );
        assert!(
            problems.is_empty(),
            "seed {seed}: {} problems:\n{}\n--- engine log ---\n{}",
            problems.len(),
            problems.join("\n"),
            world.log_tail()
        );
        assert!(kills > 0 && !accepted.is_empty(), "the loop ran");
    });
}
