//! Erasing a pen name leaves nothing of it that could act later: no pending connect a
//! late OAuth callback could finish.

use reqwest::StatusCode;

use crate::helpers::{spawn_app, JANE};

/// A connect begun before the erasure, its consent given, and the browser sent back after
/// the pen name is gone: the callback is refused and nothing is connected.
#[tokio::test]
async fn erasing_a_pen_name_forgets_its_pending_connects() {
    let app = spawn_app().await;
    let (url, _state) = app.authorize("jane").await;
    let location = app.consent(&url, JANE, "authorize").await;

    let (status, erased) = app.delete("/v1/pen-names/jane?confirm=true").await;
    assert_eq!(status, StatusCode::OK, "{erased}");

    let (status, _headers, html) = app.follow_callback(&location).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("invalid_state"), "{html}");
    assert_eq!(app.connection("jane", "x").await["status"], "not_connected");
}
