//! The engine's router nested in a host application's own axum server: the host's
//! graceful shutdown finishes while an event stream is open — on the host's own signal
//! (`router_with_shutdown`), or when the studio shuts down (`router`).

use std::future::Future;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use reqwest::StatusCode;
use tokio::sync::watch;

use crate::helpers::{spawn_app, TestApp};

/// How long a graceful shutdown may take here: the host has nothing else in flight.
const SHUTS_DOWN_WITHIN: Duration = Duration::from_secs(10);

/// A signal every holder of a clone can await (as a cancellation token's would be).
fn signal(fired: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut fired = fired.clone();
    async move {
        let _ = fired.wait_for(|fired| *fired).await;
    }
}

/// Serves `engine` under `/social` beside a route of the host's own, until `shutdown`;
/// answers the server's task and its address.
async fn host(
    engine: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (tokio::task::JoinHandle<std::io::Result<()>>, String) {
    let app = Router::new()
        .route("/hello", get(|| async { "the host's own route" }))
        .nest("/social", engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    (server, base)
}

/// Opens the engine's event stream through the host and checks it is one.
async fn open_stream(app: &TestApp, base: &str) -> reqwest::Response {
    let hello = app
        .client
        .get(format!("{base}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), StatusCode::OK);
    let stream = app
        .client
        .get(format!("{base}/social/v1/events"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let kind = stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    stream
}

#[tokio::test]
async fn the_host_s_graceful_shutdown_ends_the_engine_s_event_streams() {
    let app = spawn_app().await;
    let (fire, fired) = watch::channel(false);
    let engine = social_studio::http::router_with_shutdown(app.studio.clone(), signal(&fired));
    let (server, base) = host(engine, signal(&fired)).await;
    let stream = open_stream(&app, &base).await;

    fire.send_replace(true);
    tokio::time::timeout(SHUTS_DOWN_WITHIN, server)
        .await
        .expect("the host's graceful shutdown finishes with an event stream open")
        .unwrap()
        .unwrap();
    drop(stream);
}

#[tokio::test]
async fn the_studio_s_shutdown_ends_the_event_streams_of_a_nested_router() {
    let app = spawn_app().await;
    let (fire, fired) = watch::channel(false);
    let engine = social_studio::http::router(app.studio.clone());
    let (server, base) = host(engine, signal(&fired)).await;
    let stream = open_stream(&app, &base).await;

    // The host shuts down its server and the engine together, as a host's main does.
    fire.send_replace(true);
    app.studio.shutdown().await;
    tokio::time::timeout(SHUTS_DOWN_WITHIN, server)
        .await
        .expect("the host's graceful shutdown finishes once the studio shuts down")
        .unwrap()
        .unwrap();
    drop(stream);
}
