//! A post's media URL cannot make the engine reach inside its own network: with
//! `allow_private_media_urls` off (the default outside the sandbox), media on a loopback
//! address — written as an IP or as a name that resolves to one — is refused before any
//! connection is opened, with the reason `media_url_not_public`; with it on, the same
//! server's media is fetched and published.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{in_a_day, spawn_app, spawn_app_with, AppOptions, TestApp, JANE};

/// A real HTTP server on 127.0.0.1 that would answer every request with `image`, and
/// counts the connections it accepts.
struct MediaServer {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl MediaServer {
    async fn start(image: Vec<u8>) -> MediaServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let image = image.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        image.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&image).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        MediaServer { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The sandbox's own cover image, so that X's media upload takes it.
async fn cover(app: &TestApp) -> Vec<u8> {
    let url = format!("{}/facebook/media/cover.jpg", app.sandbox.base_url());
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.bytes().await.unwrap().to_vec()
}

/// Schedules an X post with the image at `url`, brings it forward, and answers the post
/// once it is published, failed or held.
async fn publish_with_image(app: &TestApp, url: &str) -> Value {
    let (status, body) = app
        .schedule(
            "jane",
            json!({
                "platform": "x",
                "text": "The cover, at last",
                "scheduled_at": in_a_day(),
                "media": [{"url": url, "kind": "image", "alt": "The cover"}],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["posts"][0]["id"].as_str().unwrap().to_owned();
    app.bring_forward("jane", &id).await;
    app.post_until("jane", &id, "finished", |p| {
        matches!(p["state"].as_str(), Some("published" | "failed" | "held"))
    })
    .await
}

#[tokio::test]
async fn media_on_a_loopback_address_is_refused_without_a_connection() {
    let app = spawn_app_with(AppOptions {
        refuse_private_media: true,
        ..AppOptions::default()
    })
    .await;
    app.connect_x("jane", JANE).await;
    let server = MediaServer::start(cover(&app).await).await;

    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
        let url = format!("http://{host}:{}/cover.jpg", server.port);
        let post = publish_with_image(&app, &url).await;
        assert_eq!(post["state"], "failed", "{host}: {post}");
        assert_eq!(
            post["reason"]["code"], "media_url_not_public",
            "{host}: {post}"
        );
    }
    assert_eq!(
        server.connections(),
        0,
        "the engine must not open a connection to a non-public address"
    );
    assert!(
        app.sandbox.x().tweets("2244994945").is_empty(),
        "nothing was published"
    );
}

#[tokio::test]
async fn media_on_a_loopback_address_is_fetched_when_allowed() {
    let app = spawn_app().await;
    assert!(app.config.allow_private_media_urls);
    app.connect_x("jane", JANE).await;
    let server = MediaServer::start(cover(&app).await).await;

    let url = format!("http://127.0.0.1:{}/cover.jpg", server.port);
    let post = publish_with_image(&app, &url).await;
    assert_eq!(post["state"], "published", "{post}");
    assert!(server.connections() >= 1);
    assert_eq!(app.sandbox.x().tweets("2244994945").len(), 1);
}
