//! The event stream: a live client sees a connection expire with its reason; a client
//! that reconnects with `Last-Event-ID` gets what it missed, then live events, without
//! duplicates or gaps at the seam.

use axum::body::Body;
use axum::http::{header, Request};
use reqwest::StatusCode;
use social_studio::http::router;
use tokio_stream::StreamExt;
use tower::ServiceExt;

use crate::helpers::{spawn_app, spawn_app_with, AppOptions, ADMIN_TOKEN, JANE, JANE_ID, PATIENCE};

#[tokio::test]
async fn a_live_client_sees_the_connection_expire_with_its_reason() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let mut stream = app.events("/v1/events", None).await;

    // The author removes the app in X's settings; verify finds out.
    assert!(app.sandbox.x().revoke_user_grants(JANE_ID).unwrap() > 0);
    let (status, body) = app
        .post(
            "/v1/pen-names/jane/connections/x/verify",
            serde_json::json!({}),
        )
        .await;
    assert!(
        status.is_client_error() || status == StatusCode::OK,
        "{status} {body}"
    );

    let (expired, _) = stream
        .until(|e| e.event.as_deref() == Some("connection_status") && e.data["to"] == "expired")
        .await;
    assert_eq!(
        expired.id,
        expired.data["id"].as_u64(),
        "the SSE id is the event's seq"
    );
    assert_eq!(expired.data["pen_name"], "jane");
    assert_eq!(expired.data["platform"], "x");
    let reason = &expired.data["reason"];
    assert!(
        reason["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{reason}"
    );
    assert!(
        reason["remedy"].as_str().is_some_and(|r| !r.is_empty()),
        "{reason}"
    );
    assert_eq!(app.connection("jane", "x").await["status"], "expired");
}

#[tokio::test]
async fn reconnecting_with_last_event_id_replays_then_goes_live() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let first = app.schedule_x("jane", "one").await;
    let second = app.schedule_x("jane", "two").await;
    let (status, _) = app
        .delete(&format!(
            "/v1/pen-names/jane/posts/{}",
            first["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);

    let stored = app.studio.events_after(0, 1000).await.unwrap();
    assert!(stored.len() >= 2, "{stored:?}");
    let resume_after = stored[0].seq;
    let missed: Vec<u64> = stored[1..].iter().map(|e| e.seq).collect();

    let mut stream = app.events("/v1/events", Some(resume_after)).await;
    let mut replayed = Vec::new();
    for _ in 0..missed.len() {
        let event = stream.expect_next().await;
        replayed.push(event.id.expect("every event has an id"));
    }
    assert_eq!(
        replayed, missed,
        "the stored events after Last-Event-ID, in order"
    );

    // Then live: the next change arrives once, after what was replayed.
    let (status, _) = app
        .delete(&format!(
            "/v1/pen-names/jane/posts/{}",
            second["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (cancelled, before) = stream
        .until(|e| e.data["post_id"] == second["id"] && e.data["to"] == "cancelled")
        .await;
    let last = *missed.last().unwrap();
    assert!(cancelled.id.unwrap() > last);
    for e in &before {
        assert!(
            e.id.unwrap() > last,
            "no duplicate of a replayed event: {e:?}"
        );
    }
    assert!(!before.iter().any(|e| e.id == cancelled.id));
}

#[tokio::test]
async fn a_stream_from_the_start_replays_everything_stored() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let stored: Vec<u64> = app
        .studio
        .events_after(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(!stored.is_empty());
    let mut stream = app.events("/v1/events?last_event_id=0", None).await;
    let mut got = Vec::new();
    for _ in 0..stored.len() {
        got.push(stream.expect_next().await.id.unwrap());
    }
    assert_eq!(got, stored);
}

#[tokio::test]
async fn a_client_that_falls_behind_gets_the_missed_events_from_the_store() {
    // A broadcast channel of 16 and a client that reads nothing for 100+ events: the
    // stream's subscriber lags, and must replay from the store rather than drop.
    let app = spawn_app_with(AppOptions {
        event_channel_capacity: Some(16),
        ..AppOptions::default()
    })
    .await;
    app.connect_x("jane", JANE).await;
    let resume = app
        .studio
        .events_after(0, 10_000)
        .await
        .unwrap()
        .last()
        .unwrap()
        .seq;
    let request = Request::get("/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .header("Last-Event-ID", resume.to_string())
        .body(Body::empty())
        .unwrap();
    let response = router(app.studio.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    for i in 0..60 {
        let post = app.schedule_x("jane", &format!("post {i}")).await;
        let (status, _) = app
            .delete(&format!(
                "/v1/pen-names/jane/posts/{}",
                post["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let expected: Vec<u64> = app
        .studio
        .events_after(resume, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(expected.len() > 100, "{}", expected.len());

    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let mut ids = Vec::new();
    let read = async {
        while ids.len() < expected.len() {
            let chunk = body.next().await.expect("stream open").expect("readable");
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) {
                    ids.push(id.trim().parse::<u64>().unwrap());
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("all events arrive");
    assert_eq!(ids, expected, "every event once, in order, none missing");
}

#[tokio::test]
async fn an_open_stream_does_not_hold_up_a_shutdown() {
    let app = spawn_app().await;
    let mut stream = app.events("/v1/events", None).await;
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("the server stops with a stream open");
    let end = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none());
}
