//! Rotating the master key of a running deployment: a new key first in the key file (the
//! old one kept below it), a restart that re-seals every grant, and after it the old key
//! dropped — the connection keeps working throughout.

use reqwest::StatusCode;
use social_studio_storage::vault::rotate_key_file;

use crate::helpers::{spawn_app, JANE};

#[tokio::test]
async fn a_connection_keeps_working_across_a_master_key_rotation_and_without_the_old_key() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    let stopped = app.stop().await;
    let key_file = stopped.config.master_key_path();
    let rotation = rotate_key_file(&key_file).unwrap();

    let app = stopped.start().await;
    let opened = app.studio.startup_notes().store.opened.join("\n");
    assert!(
        opened.contains(&format!(
            "master key rotation to key {} finished: 1 grants",
            rotation.current
        )),
        "{opened}"
    );
    let verify = async |app: &crate::helpers::TestApp| {
        app.post(
            "/v1/pen-names/jane/connections/x/verify",
            serde_json::json!({}),
        )
        .await
    };
    let (status, body) = verify(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The rotation said it was finished: the old key can go.
    let stopped = app.stop().await;
    let text = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&key_file, format!("{}\n", text.lines().next().unwrap())).unwrap();
    let app = stopped.start().await;
    assert!(app.studio.unreadable(None).is_empty());
    let (status, body) = verify(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.connection("jane", "x").await["status"], "active");
}
