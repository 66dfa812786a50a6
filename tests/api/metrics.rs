//! `/metrics` as a scraper reads it: every family the engine's own, by its prefix.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

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
