//! A store that refuses the engine's writes, through `Studio`: `/readyz` answers 503
//! `storage_failing` with a remedy, the attention list names it for the operator, the
//! metrics count it, the post waits Scheduled, and once the store takes writes again
//! everything is as it was and the post publishes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::wait::poll_until;
use social_studio_storage::Timestamp;

use crate::failing_store::StoreSwitch;
use crate::helpers::{read_json, spawn_app_with, AppOptions, TestApp, JANE};
use crate::openapi::assert_documented;

/// `GET /readyz`, without a token, as a probe asks.
async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    read_json(app.client.get(app.url("/readyz")).send().await.unwrap()).await
}

async fn metrics(app: &TestApp) -> String {
    let response = app
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The value of an unlabelled series in Prometheus text.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn a_store_refusing_writes_is_named_until_it_heals_and_nothing_is_lost() {
    let (layer, switch) = StoreSwitch::layer();
    let app = spawn_app_with(AppOptions {
        store_layer: Some(layer),
        ..AppOptions::default()
    })
    .await;
    let (_, doc) = app.get("/openapi.json").await;
    app.connect_x("jane", JANE).await;
    let soon = Timestamp::now_system()
        .saturating_add(Duration::from_secs(2))
        .to_rfc3339();
    let (status, created) = app
        .schedule(
            "jane",
            json!({"platform": "x", "text": "through a full disk", "scheduled_at": soon}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["posts"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(readyz(&app).await.0, StatusCode::OK);
    let (_, attention) = app.get("/v1/attention").await;
    assert!(attention.get("engine").is_none(), "{attention}");

    switch.fail_every_commit();
    // The post falls due; its dispatch cannot be written.
    let (status, unready) = poll_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        async || {
            let (status, body) = readyz(&app).await;
            (status != StatusCode::OK).then_some((status, body))
        },
    )
    .await
    .expect("/readyz turns unready while the store refuses writes");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{unready}");
    assert_eq!(unready["ready"], false, "{unready}");
    assert_eq!(unready["reason"]["code"], "storage_failing", "{unready}");
    let remedy = unready["reason"]["remedy"].as_str().unwrap_or_default();
    assert!(
        remedy.contains("disk") && remedy.contains("restart"),
        "{unready}"
    );
    assert_documented(&doc, "get", "/readyz", status, &unready);

    let (status, attention) = app.get("/v1/attention").await;
    assert_eq!(status, StatusCode::OK, "{attention}");
    assert_documented(&doc, "get", "/v1/attention", status, &attention);
    let engine = &attention["engine"][0];
    assert_eq!(engine["reason"]["code"], "storage_failing", "{attention}");
    assert!(engine["reason"]["remedy"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert!(
        engine["detail"]
            .as_str()
            .is_some_and(|d| d.contains("injected write failure")),
        "{attention}"
    );
    assert!(engine["commit_failures"].as_u64().is_some_and(|n| n >= 1));
    let (_, of_pen) = app.get("/v1/pen-names/jane/attention").await;
    assert_eq!(of_pen["engine"][0]["reason"]["code"], "storage_failing");

    let text = metrics(&app).await;
    assert_eq!(
        series(&text, "social_studio_store_healthy"),
        Some(0.0),
        "{text}"
    );
    let failures = series(&text, "social_studio_store_commit_failures_total").unwrap_or(0.0);
    assert!(failures >= 1.0, "{text}");

    // A second's wait, then two: the queue backs off instead of asking in a loop.
    let before = switch.refused();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = switch.refused() - before;
    assert!(
        during <= 10,
        "{during} commits refused in 3 s: the queue spins"
    );
    let (_, post) = app.get(&format!("/v1/pen-names/jane/posts/{id}")).await;
    let post = post.get("post").cloned().unwrap_or(post);
    assert_eq!(post["state"], "scheduled", "{post}");

    switch.heal();
    app.post_until("jane", &id, "published", |p| p["state"] == "published")
        .await;
    let ready = poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || {
            let (status, body) = readyz(&app).await;
            (status == StatusCode::OK).then_some(body)
        },
    )
    .await
    .expect("/readyz is ready again once the store takes writes");
    assert_eq!(ready["status"], "ready", "{ready}");
    let (_, attention) = app.get("/v1/attention").await;
    assert!(attention.get("engine").is_none(), "{attention}");
    let text = metrics(&app).await;
    assert_eq!(
        series(&text, "social_studio_store_healthy"),
        Some(1.0),
        "{text}"
    );
}

/// A write the studio makes itself (the OAuth state of a connect) that the store refuses
/// is named at once: the request answers 503 `storage_error` and changed nothing, and
/// `/readyz` says `storage_failing` without waiting for an actor to meet the store — until
/// a write holds again.
#[tokio::test]
async fn a_refused_write_of_the_studio_itself_is_named_at_once() {
    let (layer, switch) = StoreSwitch::layer();
    let app = spawn_app_with(AppOptions {
        store_layer: Some(layer),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(readyz(&app).await.0, StatusCode::OK);

    switch.fail_every_commit();
    let (status, body) = app
        .post("/v1/pen-names/jane/connections/x/authorize", json!({}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "storage_error", "{body}");
    let (status, unready) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{unready}");
    assert_eq!(unready["reason"]["code"], "storage_failing", "{unready}");

    switch.heal();
    let (state_url, _) = app.authorize("jane").await;
    assert!(!state_url.is_empty());
    assert_eq!(readyz(&app).await.0, StatusCode::OK, "a write held again");
}
