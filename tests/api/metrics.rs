//! `/metrics` as a scraper reads it: every family the engine's own, by its prefix.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, JANE, JANE_ID};

/// The families a Prometheus text exposition names, from its `# TYPE` lines and from
/// its samples (a sample's name up to its labels or its value).
fn families(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(typed) => typed.split_whitespace().next(),
            None if line.starts_with('#') || line.trim().is_empty() => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every metric is named `social_studio_…`, so that a host scraping the nested router
/// beside its own metrics (its own `http_requests_total`, say) never sees two meanings
/// under one name.
#[tokio::test]
async fn every_metric_family_carries_the_engine_prefix() {
    let app = spawn_app().await;
    // A request of each kind the HTTP metrics count, so their families exist.
    let (status, _) = app.get("/v1/supervisor").await;
    assert_eq!(status, StatusCode::OK);
    let response = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let families = families(&text);
    assert!(
        families
            .iter()
            .any(|f| f.starts_with("social_studio_http_requests_total")),
        "{text}"
    );
    let unprefixed: Vec<&String> = families
        .iter()
        .filter(|name| !name.starts_with("social_studio_"))
        .collect();
    assert!(unprefixed.is_empty(), "unprefixed: {unprefixed:?}\n{text}");
}

/// The value of the sample of `family` whose labels include every one of `labels`.
fn sample(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(family)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(key, value)| {
                    label_text
                        .split(',')
                        .any(|pair| pair == format!("{key}=\"{value}\""))
                })
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .next()
}

/// Every call an adapter makes is counted by platform, endpoint and status, and timed:
/// a connect (the code exchange, the identity call), a published test post, and a
/// verify after the sandbox expired the access token (which renews the grant) all show
/// in `/metrics`.
#[tokio::test]
async fn platform_calls_are_counted_by_endpoint_and_status() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let (status, body) = app
        .post(
            "/v1/pen-names/jane/connections/x/verify",
            json!({"test_post": "counted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["test_post"]["state"], "published", "{body}");
    assert!(app.sandbox.x().expire_access_tokens(JANE_ID).unwrap() > 0);
    let (status, body) = app
        .post("/v1/pen-names/jane/connections/x/verify", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connection"]["status"], "active", "{body}");

    let response = app.request(Method::GET, "/metrics").send().await.unwrap();
    let text = response.text().await.unwrap();
    let requests = "social_studio_platform_requests_total";
    let count = |endpoint: &str, status: &str| {
        sample(
            &text,
            requests,
            &[
                ("platform", "x"),
                ("endpoint", endpoint),
                ("status", status),
            ],
        )
    };
    assert_eq!(count("token", "200"), Some(1.0), "{text}");
    assert_eq!(count("publish", "201"), Some(1.0), "{text}");
    assert!(count("refresh", "200").is_some_and(|n| n >= 1.0), "{text}");
    assert!(count("identity", "200").is_some_and(|n| n >= 1.0), "{text}");
    let timed = |endpoint: &str| {
        sample(
            &text,
            "social_studio_platform_request_duration_seconds_count",
            &[("platform", "x"), ("endpoint", endpoint)],
        )
    };
    assert!(timed("refresh").is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(timed("publish"), Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE social_studio_platform_request_duration_seconds histogram"),
        "{text}"
    );
}
