//! Pen names are isolated through the API: one pen name's connections, posts and events
//! are never visible or changeable under another.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, JANE, OTHER};

#[tokio::test]
async fn one_pen_name_never_sees_or_touches_another() {
    let app = spawn_app().await;
    app.connect_x("alice", JANE).await;
    let post = app.schedule_x("alice", "alice's words").await;
    let id = post["id"].as_str().unwrap();

    // Bob has nothing until he connects, and then only his own account.
    let (_, body) = app.get("/v1/pen-names/bob/connections").await;
    let x = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["platform"] == "x")
        .unwrap()
        .clone();
    assert_eq!(x["status"], "not_connected");
    let bob = app.connect_x("bob", OTHER).await;
    assert!(bob["account"]["handle"].as_str().unwrap().contains(OTHER));
    assert_eq!(bob["scheduled"], 0);

    let (status, body) = app.get("/v1/pen-names/bob/posts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["posts"], json!([]));

    // Alice's post id under Bob's name names no post.
    let path = format!("/v1/pen-names/bob/posts/{id}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"text": "bob was here"}))),
        (Method::DELETE, None),
    ] {
        let (status, answer) = app.call(method.clone(), &path, body).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    }
    for (action, body) in [
        ("retry", json!({})),
        ("resolve", json!({"published": true})),
    ] {
        let (status, answer) = app.post(&format!("{path}/{action}"), body).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    }
    let (status, mine) = app.get(&format!("/v1/pen-names/alice/posts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["text"], "alice's words");
    assert_eq!(mine["state"], "scheduled");

    // Events: each connection's detail, and each pen name's stream, hold only its own.
    let (_, detail) = app.get("/v1/pen-names/bob/connections/x").await;
    assert!(detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["pen_name"] == "bob"));
    let mut bobs = app.events("/v1/pen-names/bob/events", Some(0)).await;
    let (connected, before) = bobs.until(|e| e.data["kind"] == "connection_status").await;
    assert_eq!(connected.data["pen_name"], "bob");
    assert!(before.iter().all(|e| e.data["pen_name"] == "bob"));
    let (_, attention) = app.get("/v1/pen-names/bob/attention").await;
    assert_eq!(attention["attention"], json!([]));

    // Erasing Bob leaves Alice whole.
    let (status, body) = app.delete("/v1/pen-names/bob").await;
    assert_error(status, &body, StatusCode::CONFLICT, "confirmation_required");
    let (status, body) = app.delete("/v1/pen-names/bob?confirm=true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.connection("bob", "x").await["status"], "not_connected");
    assert_eq!(app.connection("alice", "x").await["status"], "active");
    let (_, posts) = app.get("/v1/pen-names/alice/posts").await;
    assert_eq!(posts["posts"].as_array().unwrap().len(), 1);
}
