//! Retention through the API: a finished post older than `retention.finished_posts_days`
//! leaves the listings and the counts while newer and unfinished ones stay, and a client
//! resuming the event stream from before what was purged is told of the gap.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use social_studio::wait::poll_until;
use social_studio_actors::Clock;
use social_studio_storage::{ConnectionKey, PenName, Platform, StateLabel};

use crate::helpers::{
    assert_error, spawn_app_with, AppOptions, ManualClock, TestApp, JANE, LOOK_AGAIN, PATIENCE,
};

const DAY: Duration = Duration::from_secs(86_400);

fn started() -> (Arc<ManualClock>, AppOptions) {
    let clock = ManualClock::starting_now();
    let options = AppOptions {
        clock: Some(clock.clone()),
        ..AppOptions::default()
    };
    (clock, options)
}

/// Schedules a post on X for jane, due a day after the engine's clock.
async fn schedule(app: &TestApp, clock: &ManualClock, text: &str) -> String {
    let due = clock.now().saturating_add(DAY).to_rfc3339();
    let (status, body) = app
        .schedule(
            "jane",
            json!({"platform": "x", "text": text, "scheduled_at": due}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["posts"][0]["id"].as_str().unwrap().to_owned()
}

async fn cancel(app: &TestApp, id: &str) {
    let (status, body) = app.delete(&format!("/v1/pen-names/jane/posts/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.post_until("jane", id, "cancelled", |p| p["state"] == "cancelled")
        .await;
}

/// Moves the post's due time a second past the engine's clock, then the clock past it.
async fn publish(app: &TestApp, clock: &ManualClock, id: &str) {
    let soon = clock
        .now()
        .saturating_add(Duration::from_secs(1))
        .to_rfc3339();
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/pen-names/jane/posts/{id}"),
            Some(json!({"scheduled_at": soon})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    clock.advance(Duration::from_secs(2));
    let done = app
        .post_until("jane", id, "published", |p| {
            matches!(p["state"].as_str(), Some("published" | "failed" | "held"))
        })
        .await;
    assert_eq!(done["state"], "published", "{done}");
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn an_old_finished_post_leaves_the_listings_and_counts_and_a_newer_one_stays() {
    let (clock, options) = started();
    let app = spawn_app_with(options).await;
    app.connect_x("jane", JANE).await;
    let old_published = schedule(&app, &clock, "published long ago").await;
    publish(&app, &clock, &old_published).await;
    let old_cancelled = schedule(&app, &clock, "cancelled long ago").await;
    cancel(&app, &old_cancelled).await;

    clock.advance(60 * DAY);
    let newer_cancelled = schedule(&app, &clock, "cancelled a month ago").await;
    cancel(&app, &newer_cancelled).await;
    let waiting = schedule(&app, &clock, "still to come").await;

    // Ninety-one days after the first two finished, thirty-one after the third.
    clock.advance(31 * DAY);
    let purged = app.studio.purge_retained().await.unwrap();
    assert_eq!(purged.finished_posts, 2, "{purged:?}");

    let (status, all) = app.get("/v1/pen-names/jane/posts").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let mut expected = vec![newer_cancelled.clone(), waiting.clone()];
    expected.sort();
    assert_eq!(ids(&all), expected);
    let (_, published) = app.get("/v1/pen-names/jane/posts?state=published").await;
    assert_eq!(ids(&published), Vec::<String>::new());
    let (_, cancelled) = app.get("/v1/pen-names/jane/posts?state=cancelled").await;
    assert_eq!(ids(&cancelled), vec![newer_cancelled]);
    for gone in [&old_published, &old_cancelled] {
        let (status, body) = app.get(&format!("/v1/pen-names/jane/posts/{gone}")).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }

    let key = ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::X);
    let counts = app.studio.store().post_counts(&key).await.unwrap();
    assert_eq!(counts.get(StateLabel::Published), 0, "{counts:?}");
    assert_eq!(counts.get(StateLabel::Cancelled), 1, "{counts:?}");
    assert_eq!(counts.total(), 2, "{counts:?}");
    let report = app.studio.store().check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn a_client_resuming_from_before_what_retention_purged_is_told_of_the_gap() {
    let (clock, options) = started();
    let app = spawn_app_with(options).await;
    app.connect_x("jane", JANE).await;
    schedule(&app, &clock, "a month and more ago").await;
    let old = app.studio.events_after(0, 1_000).await.unwrap();
    let first = old
        .first()
        .expect("connecting and scheduling recorded events")
        .seq;
    let last_old = old.last().unwrap().seq;

    clock.advance(31 * DAY);
    schedule(&app, &clock, "today").await;
    let stored_after = async || {
        let newer = app.studio.events_after(last_old, 1_000).await.unwrap();
        (!newer.is_empty()).then_some(newer)
    };
    let newer = poll_until(PATIENCE, LOOK_AGAIN, stored_after)
        .await
        .expect("today's events are stored");

    let purged = app.studio.purge_retained().await.unwrap();
    assert!(purged.events >= old.len(), "{purged:?}");
    let through = app.studio.events_purged_through().await.unwrap();
    assert!(through >= last_old && through < newer[0].seq, "{through}");

    // Resuming from the first event: told of the gap first, without an id, then the
    // stream goes on with what is kept.
    let mut stream = app.events("/v1/events", Some(first)).await;
    let gap = stream.expect_next().await;
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    assert_eq!(gap.id, None);
    assert_eq!(
        gap.data,
        json!({"last_event_id": first, "purged_through": through})
    );
    let next = stream.expect_next().await;
    assert!(next.id.is_some_and(|id| id > through), "{next:?}");
    drop(stream);

    // The same on one pen name's stream.
    let mut stream = app.events("/v1/pen-names/jane/events", Some(first)).await;
    assert_eq!(stream.expect_next().await.event.as_deref(), Some("gap"));
    drop(stream);

    // Resuming from what was purged last: nothing is missing, so no gap.
    let mut stream = app.events("/v1/events", Some(through)).await;
    let next = stream.expect_next().await;
    assert_ne!(next.event.as_deref(), Some("gap"), "{next:?}");
    assert!(next.id.is_some_and(|id| id > through), "{next:?}");
}
