//! The OAuth connect through the sandbox's consent page, driven over HTTP as a browser
//! would, and every way the callback is refused: missing, forged, expired or used
//! `state`, and the author declining. A refused callback names its reason and changes
//! nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use social_studio::config::DEFAULT_OAUTH_STATE_TTL;

use crate::helpers::{spawn_app, spawn_app_with, AppOptions, ManualClock, TestApp, JANE};

/// The message the page posts to its opener, read back out of its script.
fn posted_message(html: &str) -> Value {
    let start = html.find("var m=").expect("the page defines its message") + "var m=".len();
    let end = start + html[start..].find(";var o=").expect("then the origin");
    serde_json::from_str(&html[start..end]).expect("the message is JSON")
}

fn posted_origin(html: &str) -> Value {
    let start = html.find("var o=").expect("the page names the origin") + "var o=".len();
    let end = start + html[start..].find(';').expect("end of the origin");
    serde_json::from_str(&html[start..end]).expect("the origin is JSON")
}

fn assert_page_headers(headers: &reqwest::header::HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
}

/// A failed callback's page: the status, the named code, a message and a remedy.
fn assert_refused(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    html: &str,
    code: &str,
) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert_page_headers(headers);
    let message = posted_message(html);
    assert_eq!(message["type"], "social-studio-connect");
    assert_eq!(message["ok"], false);
    assert_eq!(message["error"]["code"], code, "{message}");
    for field in ["message", "remedy"] {
        assert!(
            message["error"][field]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{message}"
        );
    }
    // The person without an opener window reads the same reason on the page.
    assert!(html.contains(code));
}

/// Nothing was connected and no event was recorded.
async fn assert_nothing_changed(app: &TestApp, pen: &str) {
    let (status, body) = app.get(&format!("/v1/pen-names/{pen}/connections")).await;
    assert_eq!(status, StatusCode::OK);
    for entry in body["connections"].as_array().unwrap() {
        assert!(
            matches!(
                entry["status"].as_str(),
                Some("not_connected" | "not_configured")
            ),
            "{entry}"
        );
    }
    assert!(app.studio.events_after(0, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_full_connect_through_the_consent_page() {
    let app = spawn_app().await;
    let (authorize_url, state) = app.authorize("jane").await;
    assert!(authorize_url.starts_with(&app.sandbox.base_url()));
    assert!(authorize_url.contains(&format!("state={state}")));
    assert!(authorize_url.contains("code_challenge_method=S256"));

    let location = app.consent(&authorize_url, JANE, "authorize").await;
    let (status, headers, html) = app.follow_callback(&location).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_page_headers(&headers);
    assert!(html.contains("window.opener.postMessage(m,o)"));
    assert!(html.contains("window.close()"));
    let message = posted_message(&html);
    assert_eq!(message["type"], "social-studio-connect");
    assert_eq!(message["ok"], true);
    assert_eq!(message["pen_name"], "jane");
    assert_eq!(message["platform"], "x");
    assert_eq!(message["status"], "active");
    assert_eq!(message["error"], Value::Null);
    assert_eq!(posted_origin(&html), "http://app.example.test");

    let entry = app.connection("jane", "x").await;
    assert_eq!(entry["status"], "active", "{entry}");
    assert!(
        entry["account"]["handle"].as_str().unwrap().contains(JANE),
        "{entry}"
    );
    assert!(!entry.to_string().contains("access_token"));
}

#[tokio::test]
async fn a_missing_or_forged_state_is_refused() {
    let app = spawn_app().await;
    let _ = app.authorize("jane").await;
    for query in [
        "?code=abc",
        "?code=abc&state=",
        "?code=abc&state=forged-state-value",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/v1/oauth/callback{query}")))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        assert_refused(status, &headers, &html, "invalid_state");
    }
    assert_nothing_changed(&app, "jane").await;
}

#[tokio::test]
async fn a_declined_consent_is_named_and_connects_nothing() {
    let app = spawn_app().await;
    let (url, _) = app.authorize("jane").await;
    let location = app.consent(&url, JANE, "cancel").await;
    assert!(location.contains("error=access_denied"));
    let (status, headers, html) = app.follow_callback(&location).await;
    assert_refused(status, &headers, &html, "access_denied");
    assert_nothing_changed(&app, "jane").await;
    // The state is spent: the same redirect again is a replay.
    let (status, headers, html) = app.follow_callback(&location).await;
    assert_refused(status, &headers, &html, "state_used");
}

#[tokio::test]
async fn an_expired_state_is_refused() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(AppOptions {
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let (url, _) = app.authorize("jane").await;
    clock.advance(DEFAULT_OAUTH_STATE_TTL + Duration::from_secs(1));
    let location = app.consent(&url, JANE, "authorize").await;
    let (status, headers, html) = app.follow_callback(&location).await;
    assert_refused(status, &headers, &html, "state_expired");
    assert_nothing_changed(&app, "jane").await;
}

#[tokio::test]
async fn a_used_state_is_refused_and_the_connection_is_untouched() {
    let app = spawn_app().await;
    let (url, _) = app.authorize("jane").await;
    let location = app.consent(&url, JANE, "authorize").await;
    let (status, _, _) = app.follow_callback(&location).await;
    assert_eq!(status, StatusCode::OK);
    let before = app.connection("jane", "x").await;
    let events_before = app.studio.events_after(0, 100).await.unwrap().len();

    let (status, headers, html) = app.follow_callback(&location).await;
    assert_refused(status, &headers, &html, "state_used");
    assert_eq!(app.connection("jane", "x").await, before);
    assert_eq!(
        app.studio.events_after(0, 100).await.unwrap().len(),
        events_before
    );
}

#[tokio::test]
async fn nothing_the_platform_sends_back_can_inject_script() {
    let app = spawn_app().await;
    let (_, state) = app.authorize("jane").await;
    let evil = "</script><script>alert(1)</script>&<b>\u{2028}";
    let url = reqwest::Url::parse_with_params(
        &app.config.redirect_uri(),
        &[
            ("state", state.as_str()),
            ("error", "access_denied"),
            ("error_description", evil),
        ],
    )
    .unwrap();
    let (status, headers, html) = app.follow_callback(url.as_str()).await;
    assert_refused(status, &headers, &html, "access_denied");
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("alert(1)</script>"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    let script = &html[html.find("<script").unwrap()..];
    assert!(!script.contains('\u{2028}'), "{script}");
    // The platform's words survive, encoded.
    assert!(posted_message(&html)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("alert(1)"));
}
