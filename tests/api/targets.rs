//! Choosing targets through the API (`PUT …/connections/{platform}/targets`), and what
//! posting does with the choice: a post naming no target goes to each chosen one.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use social_studio::wait::poll_until;

use crate::helpers::{assert_error, in_a_day, spawn_app, TestApp, JANE, PATIENCE};

const MEMBER: &str = "urn:li:person:li-member-1";
const ORG: &str = "urn:li:organization:5515715";

async fn choose(app: &TestApp, pen: &str, platform: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/v1/pen-names/{pen}/connections/{platform}/targets"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn the_chosen_targets_are_where_a_post_naming_none_goes() {
    let app = spawn_app().await;
    let entry = app.connect_oauth("jane", "linkedin", "jane_writes").await;
    let ids: Vec<&str> = entry["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&MEMBER) && ids.contains(&ORG), "{entry}");
    // After connecting: the member, where a post naming no target has always gone.
    assert_eq!(entry["chosen_targets"], json!([MEMBER]), "{entry}");
    // The member's picture, from the userinfo answer.
    assert_eq!(
        entry["account"]["picture"],
        "https://media.licdn.com/dms/image/sandbox/li-member-1"
    );

    let mut events = app.events("/v1/pen-names/jane/events", None).await;
    let (status, body) = choose(&app, "jane", "linkedin", json!({"targets": [ORG, MEMBER]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // In the order the account lists them.
    assert_eq!(body["chosen_targets"], json!([MEMBER, ORG]), "{body}");
    assert_eq!(
        app.connection("jane", "linkedin").await["chosen_targets"],
        json!([MEMBER, ORG])
    );
    let (event, _) = events.until(|e| e.data["kind"] == "targets_chosen").await;
    assert_eq!(
        event.data["detail"],
        format!("{MEMBER},{ORG}"),
        "{:?}",
        event.data
    );
    // The same choice again changes nothing, and says nothing.
    let (status, _) = choose(&app, "jane", "linkedin", json!({"targets": [MEMBER, ORG]})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, detail) = app.get("/v1/pen-names/jane/connections/linkedin").await;
    let chosen_events = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "targets_chosen")
        .count();
    assert_eq!(chosen_events, 1, "{detail}");
    // Reconnecting the same account keeps the choice.
    let again = app.connect_oauth("jane", "linkedin", "jane_writes").await;
    assert_eq!(again["chosen_targets"], json!([MEMBER, ORG]), "{again}");

    // A post naming no target: one post per chosen target, in one group.
    let (status, body) = app
        .schedule(
            "jane",
            json!({"platform": "linkedin", "text": "Chapter two", "scheduled_at": in_a_day()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let posts = body["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 2, "{body}");
    assert_eq!(posts[0]["target"], Value::Null, "the member: {body}");
    assert_eq!(posts[1]["target"], ORG, "{body}");
    assert!(posts[0]["group_id"].is_string(), "{body}");
    assert_eq!(posts[0]["group_id"], posts[1]["group_id"]);
    // A post naming its target goes there alone, as always.
    let (status, named) = app
        .schedule(
            "jane",
            json!({"platform": "linkedin", "target": ORG, "text": "Only the press", "scheduled_at": in_a_day()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{named}");
    assert_eq!(named["posts"].as_array().unwrap().len(), 1);

    // Both publish, one as the member and one as the organisation.
    for p in posts {
        let id = p["id"].as_str().unwrap();
        app.bring_forward("jane", id).await;
        app.post_until("jane", id, "published", |p| p["state"] == "published")
            .await;
    }
    let authors = poll_until(PATIENCE, std::time::Duration::from_millis(25), async || {
        let mut authors: Vec<String> = app
            .sandbox
            .linkedin()
            .posts()
            .into_iter()
            .filter(|p| p.commentary == "Chapter two")
            .map(|p| p.author)
            .collect();
        authors.sort();
        (authors.len() == 2).then_some(authors)
    })
    .await
    .expect("both posts on LinkedIn");
    assert_eq!(authors, vec![ORG.to_string(), MEMBER.to_string()]);
}

#[tokio::test]
async fn a_choice_that_is_not_one_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    app.connect_oauth("jane", "linkedin", "jane_writes").await;
    for (body, code) in [
        (
            json!({"targets": [ORG, "urn:li:organization:1"]}),
            "unknown_target",
        ),
        (json!({"targets": []}), "no_target_chosen"),
        (json!({"targets": [ORG, ORG]}), "duplicate_target"),
    ] {
        let (status, answer) = choose(&app, "jane", "linkedin", body.clone()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, code);
        assert_eq!(
            app.connection("jane", "linkedin").await["chosen_targets"],
            json!([MEMBER]),
            "{body} changed nothing"
        );
    }
    // A body of another shape is refused as every body is.
    let (status, answer) = choose(&app, "jane", "linkedin", json!({"chosen": [ORG]})).await;
    assert_error(
        status,
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );

    // X's only target is the profile itself: nothing to choose.
    app.connect_x("jane", JANE).await;
    let profile = app.connection("jane", "x").await["targets"][0]["id"].clone();
    let (status, answer) = choose(&app, "jane", "x", json!({"targets": [profile]})).await;
    assert_error(
        status,
        &answer,
        StatusCode::CONFLICT,
        "no_targets_to_choose",
    );

    // Not connected; and another pen name's connection is not this one's.
    let (status, answer) = choose(&app, "jane", "pinterest", json!({"targets": ["b"]})).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "not_connected");
    let (status, answer) = choose(&app, "tom", "linkedin", json!({"targets": [ORG]})).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "not_connected");
}
