//! An `Idempotency-Key` whose first attempt was cut short between storing the key and
//! scheduling its posts never answers with a post missing: the next attempt finishes it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio_storage::{PostId, PostState, StateLabel};

use crate::failing_store::PostFaults;
use crate::helpers::{
    assert_error, in_a_day, read_answer, spawn_app, spawn_app_with, AppOptions, TestApp, JANE,
};

/// `POST /v1/pen-names/jane/posts` with `key`.
async fn send_keyed(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Value) {
    read_answer(
        app.request(reqwest::Method::POST, "/v1/pen-names/jane/posts")
            .header("Idempotency-Key", key)
            .json(body),
    )
    .await
}

/// The key is stored, then the engine is gone before any post reaches its queue — the
/// state a process that dies in that window leaves behind. A retry must not answer "here
/// are your posts" with none there; after a restart the retry schedules them.
#[tokio::test]
async fn a_keyed_request_cut_short_before_scheduling_is_finished_by_its_retry() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let request = json!({"platform": "x", "text": "promised once", "scheduled_at": in_a_day()});

    app.studio.shutdown().await;
    let (status, first) = send_keyed(&app, "order-7", &request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{first}");
    assert!(app.stored_posts("jane").await.is_empty());

    // Retried while the engine is still down: an error again, not a list missing the post.
    let (status, retried) = send_keyed(&app, "order-7", &request).await;
    assert!(
        !status.is_success(),
        "a retry answered {status} though its post does not exist: {retried}"
    );
    assert!(app.stored_posts("jane").await.is_empty());

    let app = app.restart().await;
    let (status, finished) = send_keyed(&app, "order-7", &request).await;
    assert_eq!(status, StatusCode::OK, "{finished}");
    let posts = finished["posts"].as_array().expect("posts");
    assert_eq!(posts.len(), 1, "{finished}");
    assert_eq!(posts[0]["text"], "promised once");
    let stored = app.stored_posts("jane").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], posts[0]["id"]);
    assert_eq!(stored[0]["state"], "scheduled");

    // From now on the key replays that answer and creates nothing.
    let (status, again) = send_keyed(&app, "order-7", &request).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["posts"][0]["id"], posts[0]["id"]);
    assert_eq!(app.stored_posts("jane").await.len(), 1);
    let mut different = request.clone();
    different["text"] = json!("something else");
    let (status, body) = send_keyed(&app, "order-7", &different).await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    );
}

/// A request for two platforms whose second post's commit fails: the first post exists,
/// the second does not. The retry must not answer with the first alone — it creates the
/// second, and the first is not created again.
#[tokio::test]
async fn a_keyed_request_whose_second_post_failed_is_finished_by_its_retry() {
    let (layer, faults) = PostFaults::layer();
    let app = spawn_app_with(AppOptions {
        store_layer: Some(layer),
        ..AppOptions::default()
    })
    .await;
    app.connect_x("jane", JANE).await;
    let linkedin = app.connect_oauth("jane", "linkedin", JANE).await;
    let mut on_linkedin = json!({"platform": "linkedin"});
    if let Some(target) = linkedin["targets"].get(0) {
        on_linkedin["target"] = target["id"].clone();
    }
    let request = json!({
        "platforms": [{"platform": "x"}, on_linkedin],
        "text": "two places at once",
        "scheduled_at": in_a_day(),
    });

    faults.fail_after(1);
    let (status, first) = send_keyed(&app, "order-9", &request).await;
    assert!(!status.is_success(), "{status} {first}");
    let stored = app.stored_posts("jane").await;
    assert_eq!(stored.len(), 1, "the first post was created: {stored:?}");

    let (status, retried) = send_keyed(&app, "order-9", &request).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    let posts = retried["posts"].as_array().expect("posts");
    let platforms: Vec<&str> = posts
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["x", "linkedin"], "{retried}");
    assert_eq!(posts[0]["id"], stored[0]["id"]);
    assert_eq!(app.stored_posts("jane").await.len(), 2);
    assert_eq!(posts[0]["group_id"], posts[1]["group_id"]);
}

/// Finishing a keyed request sends its posts to their queues again; a post the earlier
/// attempt did schedule — and that changed since — must come back as it is, never start
/// over.
#[tokio::test]
async fn scheduling_a_post_that_exists_changes_nothing() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let created = app.schedule_x("jane", "cancelled later").await;
    let id = PostId::parse(created["id"].as_str().unwrap()).unwrap();
    let (status, body) = app.delete(&format!("/v1/pen-names/jane/posts/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut again = app.studio.store().post(id).await.unwrap().unwrap();
    again.state = PostState::Scheduled;
    let answered = app.studio.engine().schedule(again).await.unwrap();
    assert_eq!(answered.state.label(), StateLabel::Cancelled);
    let stored = app.studio.store().post(id).await.unwrap().unwrap();
    assert_eq!(stored.state.label(), StateLabel::Cancelled);
    assert_eq!(app.connection("jane", "x").await["scheduled"], 0);
}
