//! Secrets stay out of what a person or an operator can read: a platform that cannot be
//! reached during a connect (Facebook's code exchange, whose query string carries the
//! client secret and the code) or that echoes the request back (Bluesky's sign-in,
//! whose body carries the app password) leaves none of them in the OAuth callback page,
//! the API's answers, the engine's log lines or the data directory (where the event feed
//! is kept).

use std::path::Path;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use serde_json::json;
use social_studio::config::PlatformConfig;
use social_studio_storage::{Platform, Secret};

use crate::helpers::spawn_app;

#[path = "../support/logs.rs"]
mod logs;

const CLIENT_SECRET: &str = "api-planted-client-secret-8a1c";
const CODE: &str = "api-planted-authorization-code-3d7e";
const APP_PASSWORD: &str = "q8zx-pl4n-t3dd-w9vk";

/// A loopback port nothing listens on.
async fn refusing() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A server that answers every request 400 with an XRPC error quoting the request body.
async fn echoing() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Router::new().fallback(|request: Request| async move {
        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let said = format!("you sent {}", String::from_utf8_lossy(&body));
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({"error": "InvalidRequest", "message": said}).to_string(),
        )
            .into_response()
    });
    tokio::spawn(async move { axum::serve(listener, routes).await });
    format!("http://{addr}")
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path.display().to_string(), bytes));
        }
    }
    found
}

fn assert_none_in(what: &str, text: &str) {
    for secret in [CLIENT_SECRET, CODE, APP_PASSWORD] {
        assert!(!text.contains(secret), "{secret} in {what}: {text}");
    }
}

#[tokio::test]
async fn failed_connects_leave_no_secret_in_pages_answers_logs_events_or_files() {
    // The service runs on this test's (current-thread) runtime: every task it spawns
    // logs into this capture.
    let (logs, guard) = logs::capture();
    let app = spawn_app().await;
    let mut stopped = app.stop().await;
    let unreachable = refusing().await;
    let facebook = stopped
        .config
        .platforms
        .entry(Platform::Facebook)
        .or_default();
    facebook.client_id = Some("app-id".into());
    facebook.client_secret = Some(Secret::new(CLIENT_SECRET));
    facebook.token_url = Some(format!("{unreachable}/oauth/access_token"));
    facebook.api_base = Some(unreachable.clone());
    stopped.config.platforms.insert(
        Platform::Bluesky,
        PlatformConfig {
            service: Some(echoing().await),
            plc_directory: Some(unreachable.clone()),
            ..PlatformConfig::default()
        },
    );
    let app = stopped.start().await;

    // The callback page after a code exchange that could not reach Facebook.
    let (_, state) = app.authorize_on("jane", "facebook").await;
    let callback = app
        .client
        .get(app.url(&format!("/v1/oauth/callback?code={CODE}&state={state}")))
        .send()
        .await
        .unwrap();
    assert!(!callback.status().is_success(), "{}", callback.status());
    assert_none_in("the callback page", &callback.text().await.unwrap());

    // The API's answer to a sign-in whose refusal quotes the app password back.
    let (status, body) = app
        .post(
            "/v1/pen-names/jane/connections/bluesky",
            json!({"identifier": "did:plc:janeexample", "app_password": APP_PASSWORD}),
        )
        .await;
    assert!(!status.is_success(), "{status} {body}");
    assert_none_in("the app-password connect's answer", &body.to_string());

    for path in [
        "/v1/pen-names/jane/connections",
        "/v1/pen-names/jane/attention",
        "/v1/attention",
    ] {
        let (_, body) = app.get(path).await;
        assert_none_in(path, &body.to_string());
    }

    // The event feed streams the store's events, so the data directory holds them all.
    let data_dir = app.data_dir.clone();
    drop(app.stop().await);
    drop(guard);
    let logged = logs.text();
    assert!(
        logged.contains("facebook"),
        "the failed connect was logged: {logged}"
    );
    for line in logged.lines() {
        assert_none_in("the log", line);
    }
    for (path, bytes) in files(data_dir.path()) {
        assert_none_in(&path, &String::from_utf8_lossy(&bytes));
    }
}
