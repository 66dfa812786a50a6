//! Connections through the API: a fresh pen name, one connection's detail, verify
//! (with a test post), disconnect with its dry run, and the app-password connect.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, JANE, JANE_ID, PATIENCE};

#[tokio::test]
async fn a_pen_name_nobody_used_has_every_platform_unconnected() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/pen-names/never-used/connections").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries = body["connections"].as_array().unwrap();
    assert_eq!(entries.len(), 9);
    for entry in entries {
        // Every platform has an adapter, pointed at the sandbox.
        let expected = "not_connected";
        assert_eq!(entry["status"], expected, "{entry}");
    }
}

#[tokio::test]
async fn a_connection_shows_its_recent_events() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let (status, body) = app.get("/v1/pen-names/jane/connections/x").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["connection"]["status"], "active");
    let events = body["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{body}");
    assert!(events
        .iter()
        .all(|e| e["pen_name"] == "jane" && e["platform"] == "x"));

    // The metrics count the events and name routes by template, never by pen name.
    let scrape = async {
        loop {
            let text = app
                .request(reqwest::Method::GET, "/metrics")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains("social_studio_events_total{kind=\"connection_status\"}") {
                return text;
            }
            tokio::task::yield_now().await;
        }
    };
    let text = tokio::time::timeout(PATIENCE, scrape)
        .await
        .expect("events counted");
    assert!(
        text.contains("route=\"/v1/pen-names/{pen}/connections/{platform}\""),
        "{text}"
    );
    assert!(!text.contains("/v1/pen-names/jane"), "{text}");
    assert!(
        text.contains("social_studio_connections{status=\"active\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_proves_the_grant_and_can_publish_a_test_post() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let (status, body) = app
        .post("/v1/pen-names/jane/connections/x/verify", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connection"]["status"], "active");
    assert!(body["test_post"].is_null());

    let (status, body) = app
        .post(
            "/v1/pen-names/jane/connections/x/verify",
            json!({"test_post": "hello from the verify button"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["test_post"]["state"], "published", "{body}");
    assert!(app
        .sandbox
        .x()
        .tweets(JANE_ID)
        .iter()
        .any(|t| t.text == "hello from the verify button"));
}

#[tokio::test]
async fn verify_without_a_connection_is_a_named_conflict() {
    let app = spawn_app().await;
    let (status, body) = app
        .post("/v1/pen-names/jane/connections/x/verify", json!({}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "not_connected");
}

#[tokio::test]
async fn disconnect_needs_confirmation_then_fails_the_scheduled_posts() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let first = app.schedule_x("jane", "first").await;
    let second = app.schedule_x("jane", "second").await;

    let (status, body) = app.delete("/v1/pen-names/jane/connections/x").await;
    assert_error(status, &body, StatusCode::CONFLICT, "confirmation_required");
    assert_eq!(body["error"]["scheduled_posts_affected"], 2, "{body}");
    assert_eq!(app.connection("jane", "x").await["status"], "active");

    let (status, body) = app
        .delete("/v1/pen-names/jane/connections/x?confirm=true")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["posts_failed"], 2, "{body}");
    assert_eq!(body["revoke"], "revoked", "{body}");
    assert_eq!(app.connection("jane", "x").await["status"], "not_connected");
    for post in [first, second] {
        let (status, body) = app
            .get(&format!(
                "/v1/pen-names/jane/posts/{}",
                post["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["state"], "failed", "{body}");
        assert_eq!(body["reason"]["code"], "account_disconnected", "{body}");
    }
    let (status, body) = app
        .delete("/v1/pen-names/jane/connections/x?confirm=true")
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "not_connected");
}

#[tokio::test]
async fn app_password_connect_is_for_bluesky_only() {
    let app = spawn_app().await;
    let path = "/v1/pen-names/jane/connections/bluesky";
    // Not an app password: refused by name, before Bluesky is asked.
    let (status, body) = app
        .post(
            path,
            json!({"identifier": "jane.sandbox.test", "app_password": "hunter2"}),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "app_password_required",
    );
    // A wrong one: Bluesky refuses it, and the answer never repeats it.
    let (status, body) = app
        .post(
            path,
            json!({"identifier": "jane.sandbox.test", "app_password": "zzzz-zzzz-zzzz-zzzz"}),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "app_password_rejected",
    );
    assert!(!body.to_string().contains("zzzz-zzzz"));
    // The sandbox's seeded account connects.
    let credentials =
        json!({"identifier": "jane.sandbox.test", "app_password": "abcd-efgh-ijkl-mnop"});
    let (status, body) = app.post(path, credentials.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active", "{body}");
    assert!(!body.to_string().contains("abcd-efgh"));
    let (status, body) = app
        .post("/v1/pen-names/jane/connections/x", credentials)
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "wrong_connect_flow");
    // Bluesky has no browser flow.
    let (status, body) = app
        .post(
            "/v1/pen-names/jane/connections/bluesky/authorize",
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "wrong_connect_flow");
}
