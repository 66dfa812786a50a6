//! The event stream: a live client sees a connection expire with its reason; a client
//! that reconnects with `Last-Event-ID` gets what it missed, then live events, without
//! duplicates or gaps at the seam.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request};
use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::http::router;
use tokio_stream::StreamExt;
use tower::ServiceExt;

use crate::helpers::{
    in_a_day, spawn_app, spawn_app_with, AppOptions, ADMIN_TOKEN, JANE, JANE_ID, OTHER, PATIENCE,
};

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

/// Several writers at once — pen names and platforms whose queues commit on their own —
/// while a client reads the stream, drops it part-way and resumes with `Last-Event-ID`
/// several times: across all its connections it gets every stored event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_resume_never_skips_an_event_under_concurrent_writers() {
    /// Events read on one connection before it is dropped.
    const SEGMENT: usize = 7;
    /// Schedule-then-cancel rounds per writer.
    const ROUNDS: usize = 25;

    let app = Arc::new(spawn_app().await);
    app.connect_x("jane", JANE).await;
    app.connect_x("bob", OTHER).await;
    let linkedin = app.connect_oauth("jane", "linkedin", "jane_writes").await;
    assert_eq!(linkedin["status"], "active", "{linkedin}");
    let linkedin_target = linkedin["targets"][0]["id"].clone();
    let lanes: Vec<(&str, Value)> = vec![
        ("jane", json!({"platform": "x"})),
        ("bob", json!({"platform": "x"})),
        (
            "jane",
            json!({"platform": "linkedin", "target": linkedin_target}),
        ),
    ];

    // From the start: the connects are replayed first, then what the writers do.
    let mut stream = app.events("/v1/events", Some(0)).await;
    let mut writers = Vec::new();
    for w in 0..2 * lanes.len() {
        let (pen, lane) = lanes[w % lanes.len()].clone();
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let mut body = lane.clone();
                body["text"] = json!(format!("writer {w}, round {round}"));
                body["scheduled_at"] = json!(in_a_day());
                let (status, created) = app.post(&format!("/v1/pen-names/{pen}/posts"), body).await;
                assert_eq!(status, StatusCode::CREATED, "{created}");
                let id = created["posts"][0]["id"].as_str().expect("post id");
                let (status, cancelled) =
                    app.delete(&format!("/v1/pen-names/{pen}/posts/{id}")).await;
                assert_eq!(status, StatusCode::OK, "{cancelled}");
            }
        }));
    }
    let writes = writers.len() * ROUNDS;
    let all_written = async move {
        for writer in writers {
            writer.await.expect("a writer finished without failing");
        }
    };
    tokio::pin!(all_written);

    // While they write: read a part, drop the connection, resume after the last id seen.
    let mut received: Vec<u64> = Vec::new();
    let mut resumed_while_writing = 0;
    let mut written = false;
    let reading = async {
        while !written {
            let mut in_segment = 0;
            while in_segment < SEGMENT && !written {
                tokio::select! {
                    () = &mut all_written, if !written => written = true,
                    event = stream.next() => {
                        let event = event.expect("the stream stays open");
                        assert_eq!(event.id, event.data["id"].as_u64(), "{event:?}");
                        received.push(event.id.expect("every event has an id"));
                        in_segment += 1;
                    }
                }
            }
            if !written {
                resumed_while_writing += 1;
            }
            stream = app.events("/v1/events", received.last().copied()).await;
        }
    };
    tokio::time::timeout(3 * PATIENCE, reading)
        .await
        .expect("the writers finish");
    assert!(
        resumed_while_writing >= 2,
        "the client resumed {resumed_while_writing} times while the writers wrote"
    );

    // Everything is written; read the last connection until it has caught up.
    let stored: Vec<u64> = app
        .studio
        .events_after(0, 1_000_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(
        stored.len() >= 2 * writes,
        "each schedule and each cancel is an event: {} stored for {writes} writes",
        stored.len()
    );
    let last = *stored.last().unwrap();
    while received.last().is_none_or(|&id| id < last) {
        received.push(
            stream
                .expect_next()
                .await
                .id
                .expect("every event has an id"),
        );
    }

    let out_of_order: Vec<&[u64]> = received.windows(2).filter(|w| w[0] >= w[1]).collect();
    assert!(
        out_of_order.is_empty(),
        "ids strictly increase across the connections (no duplicate, no reordering): {out_of_order:?}"
    );
    let missing: Vec<&u64> = stored.iter().filter(|s| !received.contains(s)).collect();
    assert!(missing.is_empty(), "stored events never sent: {missing:?}");
    assert_eq!(received, stored, "every stored event once, in order");
}
