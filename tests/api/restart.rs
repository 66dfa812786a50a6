//! Stopping the service and starting it again on the same data directory loses nothing:
//! connections, posts and their states survive.

use reqwest::StatusCode;

use crate::helpers::{spawn_app, JANE};

#[tokio::test]
async fn connections_and_posts_survive_a_restart() {
    let app = spawn_app().await;
    let before = app.connect_x("jane", JANE).await;
    let kept = app.schedule_x("jane", "kept").await;
    let dropped = app.schedule_x("jane", "dropped").await;
    let (status, _) = app
        .delete(&format!(
            "/v1/pen-names/jane/posts/{}",
            dropped["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);

    let app = app.restart().await;

    let after = app.connection("jane", "x").await;
    assert_eq!(after["status"], "active", "{after}");
    assert_eq!(after["account"], before["account"]);
    assert_eq!(after["scheduled"], 1, "{after}");
    for (post, state, text) in [
        (&kept, "scheduled", "kept"),
        (&dropped, "cancelled", "dropped"),
    ] {
        let (status, body) = app
            .get(&format!(
                "/v1/pen-names/jane/posts/{}",
                post["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"], state, "{body}");
        assert_eq!(body["text"], text);
        assert_eq!(body["scheduled_at"], post["scheduled_at"]);
    }
    let (_, scheduled) = app.get("/v1/pen-names/jane/posts?state=scheduled").await;
    assert_eq!(scheduled["posts"].as_array().unwrap().len(), 1);
    // And the restarted service still works end to end.
    let (status, body) = app
        .post(
            "/v1/pen-names/jane/connections/x/verify",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
