//! Spans carry the connection: a line logged deep inside a platform call — the outbound
//! call's own DEBUG event, in the adapter layer — says whose call it was (`pen_name`,
//! `platform`, and the post where there is one), whether the call was made by the
//! connection's actor (a publish, a renewal) or by an HTTP request (a connect).
//!
//! A test binary of its own, with one test: the capture is the thread's subscriber, and
//! tracing caches whether a span is wanted, once per call site, from the subscriber of
//! the thread that reaches it first while only one subscriber is registered — another
//! test's thread (which has none) would switch this test's spans off.

use reqwest::StatusCode;
use serde_json::json;
use social_studio::wait::poll_until;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "support/logs.rs"]
mod logs;

use helpers::{spawn_app, JANE, JANE_ID, LOOK_AGAIN, PATIENCE};

/// The fields of the span named `span` in a captured line's context (`name{fields}:`),
/// if the line was logged inside one.
fn span_fields<'a>(line: &'a str, span: &str) -> Option<&'a str> {
    let context = line.split(": ").next()?;
    let start = context.find(&format!("{span}{{"))? + span.len() + 1;
    // A field's value may hold braces (a route template's `{pen}`): the span's own
    // closing brace is the one followed by the next span, or the context's last.
    let rest = &context[start..];
    let end = match rest.find("}:") {
        Some(end) => end,
        None => rest.rfind('}')?,
    };
    Some(&rest[..end])
}

/// Whether `line` was logged inside a span named `span` whose fields include each of
/// `fields` (as the log line writes them).
fn inside(line: &str, span: &str, fields: &[&str]) -> bool {
    span_fields(line, span).is_some_and(|found| {
        fields
            .iter()
            .all(|field| found.split(' ').any(|f| f == *field))
    })
}

/// The captured lines the outbound layer logged for a call to `endpoint`.
fn outbound_lines<'a>(text: &'a str, endpoint: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.contains("social_studio::platforms::outbound"))
        .filter(|line| line.contains(&format!("endpoint=\"{endpoint}\"")))
        .collect()
}

#[tokio::test]
async fn platform_calls_log_inside_the_connections_span() {
    // The service runs on this test's (current-thread) runtime: every task and actor it
    // spawns logs into this capture.
    let (logs, _guard) = logs::capture();
    let app = spawn_app().await;

    // A connect through the HTTP API: Bluesky's sign-in runs in the request's span,
    // which names the pen name and platform of its route.
    let (status, body) = app
        .post(
            "/v1/pen-names/jane/connections/bluesky",
            json!({"identifier": "jane.sandbox.test", "app_password": "abcd-efgh-ijkl-mnop"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = logs.text();
    let token = outbound_lines(&text, "token");
    assert!(
        token.iter().any(|line| inside(
            line,
            "http",
            &["pen_name=\"jane\"", "platform=\"bluesky\""]
        )),
        "{token:#?}"
    );

    // A post published by the queue through the connection's actor: the publish call
    // runs in the connection's span, which names the post too.
    app.connect_x("jane", JANE).await;
    let post = app.schedule_x("jane", "logged with its connection").await;
    let id = post["id"].as_str().unwrap().to_owned();
    app.bring_forward("jane", &id).await;
    let published = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let (_, post) = app.get(&format!("/v1/pen-names/jane/posts/{id}")).await;
        (post["state"] == "published").then_some(())
    })
    .await;
    assert!(published.is_some(), "the post was not published");
    let text = logs.text();
    let publish = outbound_lines(&text, "publish");
    let post_field = format!("post={id}");
    assert!(
        publish.iter().any(|line| inside(
            line,
            "connection",
            &["pen_name=\"jane\"", "platform=\"x\"", &post_field]
        )),
        "{publish:#?}"
    );

    // The queue's side of the same publish: handing the post to its connection.
    let handed: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("handed to its connection"))
        .collect();
    assert!(
        handed.iter().any(|line| inside(
            line,
            "queue",
            &["pen_name=\"jane\"", "platform=\"x\"", &post_field]
        )),
        "{handed:#?}"
    );

    // A renewal by the connection's actor (the sandbox expired the access token, and
    // verify renews it).
    assert!(app.sandbox.x().expire_access_tokens(JANE_ID).unwrap() > 0);
    let (status, body) = app
        .post("/v1/pen-names/jane/connections/x/verify", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = logs.text();
    let refresh = outbound_lines(&text, "refresh");
    assert!(
        refresh.iter().any(|line| inside(
            line,
            "connection",
            &["pen_name=\"jane\"", "platform=\"x\""]
        )),
        "{refresh:#?}"
    );
}
