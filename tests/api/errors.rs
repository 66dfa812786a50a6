//! Every refusal is JSON with a named code — axum's own rejections included.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    assert_error, assert_validation_failed, in_a_day, read_answer, read_json, spawn_app,
    spawn_app_with, AppOptions,
};

#[tokio::test]
async fn bodies_that_are_not_json_of_the_right_shape() {
    let app = spawn_app().await;
    let path = "/v1/pen-names/jane/posts";
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let mut request = app.request(Method::POST, path).body(body);
        if let Some(ct) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        request
    };
    let (status, body) = read_answer(send(Some("application/json"), "{")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_json");
    let (status, body) = read_answer(send(Some("text/plain"), "{}")).await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (status, body) = read_answer(send(None, "{}")).await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (status, body) = read_answer(send(Some("application/json"), r#"{"text": 5}"#)).await;
    assert_validation_failed(status, &body);
    let (status, body) = read_answer(send(
        Some("application/json"),
        r#"{"scheduled_at": "2030-01-01T00:00:00Z", "colour": 1}"#,
    ))
    .await;
    assert_validation_failed(status, &body);
    // An optional body, when present, must still be JSON.
    let (status, body) = read_answer(
        app.request(Method::POST, "/v1/pen-names/jane/connections/x/authorize")
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body("replace"),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/nothing-here").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app.get("/v1/pen-names/jane/connections/x/nope").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let response = app
        .request(Method::PUT, "/v1/attention")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key(reqwest::header::ALLOW));
    let (status, body) = read_json(response).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let (status, body) = app
        .call(Method::PATCH, "/v1/pen-names/jane/posts", Some(json!({})))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let app = spawn_app_with(AppOptions {
        max_body_bytes: Some(1024),
        ..AppOptions::default()
    })
    .await;
    let text = "a".repeat(2000);
    let (status, body) = app
        .schedule(
            "jane",
            json!({"platform": "x", "text": text, "scheduled_at": in_a_day()}),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let (status, body) = app.get("/v1/pen-names/jane/posts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["posts"], json!([]));
}

#[tokio::test]
async fn path_segments_are_parsed_into_named_refusals() {
    let app = spawn_app().await;
    for pen in [
        "bad%20name",
        ".hidden",
        "a%2Fb",
        "%C3%A9crivain",
        &"x".repeat(65),
    ] {
        let (status, body) = app.get(&format!("/v1/pen-names/{pen}/connections")).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_pen_name");
    }
    let (status, body) = app.get("/v1/pen-names/jane/connections/myspace").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_platform");
    let (status, body) = app.get("/v1/pen-names/jane/connections/X").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_platform");
    let (status, body) = app.get("/v1/pen-names/jane/posts/not-a-post-id").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .get("/v1/pen-names/jane/posts/0190a7a0-0000-7000-8000-000000000000")
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    // A bad pen name is reported before anything else about the path.
    let (status, body) = app.get("/v1/pen-names/bad%20name/posts/not-an-id").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_pen_name");
    // Percent-encoding that is not UTF-8.
    let (status, body) = app.get("/v1/pen-names/%FF/connections").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn queries_are_checked() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/pen-names/jane/posts?state=bogus").await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_state_filter",
    );
    let (status, body) = app.get("/v1/pen-names/jane/posts?state=paused").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .delete("/v1/pen-names/jane/connections/x?confirm=maybe")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    let (status, body) = read_answer(
        app.request(Method::GET, "/v1/events")
            .header("Last-Event-ID", "yesterday"),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_last_event_id",
    );
}

#[tokio::test]
async fn the_status_routes_answer_json() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/supervisor").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connections"]["active"], 0);
    assert!(
        body["queues"].as_array().is_some_and(|q| !q.is_empty()),
        "{body}"
    );
    let (status, body) = app.get("/v1/attention").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["attention"], json!([]));
    let response = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("social_studio_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/attention\""), "{text}");
    assert!(text.contains("social_studio_connections"), "{text}");
    assert!(text.contains("social_studio_queue_posts"), "{text}");
    // The media budget, as configured (the test app keeps the default 1 GiB).
    assert!(
        text.contains("social_studio_media_memory_bytes{kind=\"budget\"} 1073741824"),
        "{text}"
    );
    assert!(
        text.contains("social_studio_media_memory_bytes{kind=\"held\"} 0"),
        "{text}"
    );
}

/// Ready while the engine runs; not ready from the moment shutdown begins, while the
/// HTTP server still answers.
#[tokio::test]
async fn readiness_ends_when_shutdown_begins() {
    let app = spawn_app().await;
    let (status, body) = read_json(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    app.studio.shutdown().await;
    let (status, body) = read_json(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
}

/// A client inventing methods cannot grow the metrics' series: any method beyond the
/// standard ones is counted as `OTHER`.
#[tokio::test]
async fn invented_methods_share_one_metrics_label() {
    let app = spawn_app().await;
    for i in 0..5 {
        let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let response = app.request(method, "/v1/supervisor").send().await.unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let response = app.request(Method::GET, "/metrics").send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(!text.contains("BREW"), "{text}");
    assert!(text.contains("method=\"OTHER\""), "{text}");
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_refused_too() {
    // No Content-Length: the limit is found while reading, by the JSON extractor.
    let app = spawn_app_with(AppOptions {
        max_body_bytes: Some(1024),
        ..AppOptions::default()
    })
    .await;
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = (0..8)
        .map(|_| Ok(axum::body::Bytes::from(vec![b' '; 512])))
        .collect();
    let request = axum::http::Request::post("/v1/pen-names/jane/posts")
        .header(
            "authorization",
            format!("Bearer {}", crate::helpers::ADMIN_TOKEN),
        )
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(tokio_stream::iter(chunks)))
        .unwrap();
    let response =
        tower::ServiceExt::oneshot(social_studio::http::router(app.studio.clone()), request)
            .await
            .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
}
