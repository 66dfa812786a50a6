//! Scheduling through the API: validated for every platform a request names before
//! anything is stored, idempotent with `Idempotency-Key`, and edits validated the same
//! way.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_validation_failed, in_a_day, read_answer, spawn_app, JANE,
};

fn refusal_codes(body: &Value, platform: &str) -> Vec<String> {
    body["error"]["platforms"]
        .as_array()
        .unwrap_or_else(|| panic!("per-platform errors: {body}"))
        .iter()
        .filter(|p| p["platform"] == platform)
        .flat_map(|p| p["errors"].as_array().unwrap().iter())
        .map(|e| e["code"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn text_over_the_weighted_limit_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    // 281 Latin characters, and 141 CJK ones (each weighs 2 on X).
    for text in ["a".repeat(281), "字".repeat(141)] {
        let (status, body) = app
            .schedule(
                "jane",
                json!({"platform": "x", "text": text, "scheduled_at": in_a_day()}),
            )
            .await;
        assert_validation_failed(status, &body);
        assert!(
            refusal_codes(&body, "x").contains(&"text_too_long".to_string()),
            "{body}"
        );
    }
    assert!(app.stored_posts("jane").await.is_empty());
    // At the limit it is accepted.
    let (status, body) = app
        .schedule(
            "jane",
            json!({"platform": "x", "text": "字".repeat(140), "scheduled_at": in_a_day()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn one_refusing_platform_refuses_the_whole_request() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let (status, body) = app
        .schedule(
            "jane",
            json!({
                "platforms": [{"platform": "x"}, {"platform": "youtube"}],
                "text": "everywhere at once",
                "scheduled_at": in_a_day(),
            }),
        )
        .await;
    assert_validation_failed(status, &body);
    assert!(!refusal_codes(&body, "youtube").is_empty(), "{body}");
    assert!(
        refusal_codes(&body, "x").is_empty(),
        "x itself was fine: {body}"
    );
    assert!(app.stored_posts("jane").await.is_empty());
}

#[tokio::test]
async fn youtube_community_posts_are_not_offered() {
    let app = spawn_app().await;
    let (status, body) = app
        .schedule(
            "jane",
            json!({"platform": "youtube", "kind": "community", "text": "hi", "scheduled_at": in_a_day()}),
        )
        .await;
    assert_validation_failed(status, &body);
    assert!(
        refusal_codes(&body, "youtube").contains(&"not_offered_by_platform".to_string()),
        "{body}"
    );
    assert!(app.stored_posts("jane").await.is_empty());
}

#[tokio::test]
async fn an_idempotency_key_replay_returns_the_same_posts() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let request = json!({"platform": "x", "text": "only once", "scheduled_at": in_a_day()});
    let send = |body: Value| {
        app.request(reqwest::Method::POST, "/v1/pen-names/jane/posts")
            .header("Idempotency-Key", "order-42")
            .json(&body)
    };
    let (status, first) = read_answer(send(request.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = read_answer(send(request.clone())).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["posts"][0]["id"], first["posts"][0]["id"]);
    assert_eq!(app.stored_posts("jane").await.len(), 1);

    let mut different = request.clone();
    different["text"] = json!("something else");
    let (status, body) = read_answer(send(different)).await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    );
    assert_eq!(app.stored_posts("jane").await.len(), 1);

    // The same key under another pen name is another request.
    let (status, body) = read_answer(
        app.request(reqwest::Method::POST, "/v1/pen-names/other/posts")
            .header("Idempotency-Key", "order-42")
            .json(&request),
    )
    .await;
    assert_validation_failed(status, &body);
}

#[tokio::test]
async fn edits_are_validated_like_new_posts() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let post = app.schedule_x("jane", "draft").await;
    let path = format!("/v1/pen-names/jane/posts/{}", post["id"].as_str().unwrap());
    let (status, body) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"text": "a".repeat(300)})),
        )
        .await;
    assert_validation_failed(status, &body);
    let (_, unchanged) = app.get(&path).await;
    assert_eq!(unchanged["text"], "draft");
    let (status, body) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"text": "final"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["text"], "final");
    let (status, body) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"scheduled_at": "next tuesday"})),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_time");
    // Retry and resolve only apply to failed/held and unconfirmed posts.
    let (status, body) = app.post(&format!("{path}/retry"), json!({})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "invalid_transition");
    let (status, body) = app
        .post(&format!("{path}/resolve"), json!({"published": true}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "invalid_transition");
    let (status, body) = app.post(&format!("{path}/resolve"), json!({})).await;
    assert_validation_failed(status, &body);
}
