//! The engine inside a host application, as an embedder writes it: the host's own axum
//! server with a route of its own and its own users (a bearer token each, found by the
//! host's middleware), the engine's API nested under `/social` behind the host's
//! authorization ([`Authorize`]) instead of the engine's admin token, the master key
//! handed over from the host's secret store, and one shutdown signal for the host's
//! server and the engine's event streams.
//!
//! It runs against itself over loopback HTTP: the host's route, the nested API as the
//! host's user (their own pen name admitted, another's refused), an event stream opened,
//! then the host's graceful shutdown — which must finish within a few seconds with that
//! stream still open. No platform has app credentials (they report `not_configured`;
//! Bluesky, which needs none, `not_connected`) and no sandbox is used: it compiles with
//! `default-features = false`, as a host's build does.
//!
//! `cargo run --example embed_in_axum` — exits non-zero if any step does not hold.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use reqwest::StatusCode;
use social_studio::config::Config;
use social_studio::http::{Authorize, Refusal, RouteInfo, RouterBuilder};
use social_studio::studio::{Studio, StudioOptions};
use social_studio_storage::{KeySource, MasterKey, MasterKeys};
use tokio::sync::watch;

/// How long the host's graceful shutdown may take with an event stream open.
const SHUTS_DOWN_WITHIN: Duration = Duration::from_secs(5);

/// One of the host's users, as the host's middleware found them.
#[derive(Clone, Debug)]
struct User {
    name: &'static str,
    /// The pen names this user writes under.
    pen_names: Vec<&'static str>,
}

/// The host's users by bearer token (a host would ask its session store).
type Sessions = Arc<HashMap<&'static str, User>>;

/// The host's authentication: the user of a known bearer token goes into the request's
/// extensions, for the host's routes and the engine's alike. It refuses nothing itself:
/// who may do what is for each route (and for [`HostPolicy`]) to decide.
async fn authenticate(
    State(sessions): State<Sessions>,
    mut request: Request,
    next: Next,
) -> Response {
    let user = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| sessions.get(token))
        .cloned();
    if let Some(user) = user {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

/// The host's authorization in front of the engine: a signed-in user may reach their own
/// pen names, and nothing across pen names (metrics, every pen name's events, backups).
struct HostPolicy;

impl Authorize for HostPolicy {
    async fn authorize(&self, request: &Parts, route: &RouteInfo) -> Result<(), Refusal> {
        let user = request.extensions.get::<User>().ok_or_else(|| {
            Refusal::unauthorized().with_message("sign in to the host application first")
        })?;
        match &route.pen_name {
            Some(pen) if user.pen_names.contains(&pen.as_str()) => Ok(()),
            Some(_) => Err(Refusal::forbidden()
                .with_code("not_your_pen_name")
                .with_message("this pen name belongs to another user")),
            None => Err(Refusal::forbidden().with_code("operators_only")),
        }
    }
}

/// The host's own route.
async fn hello(user: Option<Extension<User>>) -> String {
    match user {
        Some(Extension(user)) => format!("hello, {}", user.name),
        None => "hello, stranger".to_owned(),
    }
}

/// A signal every holder of a clone can await: the host's one shutdown switch.
fn signal(fired: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut fired = fired.clone();
    async move {
        let _ = fired.wait_for(|fired| *fired).await;
    }
}

fn step(what: &str) {
    println!("  ✓ {what}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("embed_in_axum: the engine nested in a host application");
    let data = tempfile::tempdir().context("a temporary data directory")?;
    let config = Config {
        data_dir: data.path().join("social"),
        ..Config::default()
    };
    config.validate().context("the host's configuration")?;

    // The master key from the host's secret store (generated here, for the example).
    let options = StudioOptions {
        master_keys: Some(MasterKeys::new(MasterKey::generate())),
        ..StudioOptions::default()
    };
    let studio = Studio::open(config, options)
        .await
        .context("the engine opens")?;
    ensure!(
        studio.startup_notes().key_source == KeySource::Provided,
        "the engine says the key came from the host"
    );
    ensure!(
        !data.path().join("social").join("master.key").exists(),
        "no key file was written beside the data"
    );
    step("the engine opened with the host's master key; no key file was written");

    let (shut_down, shutting_down) = watch::channel(false);
    let engine = RouterBuilder::new(studio.clone())
        .shutdown(signal(&shutting_down))
        .authorize(HostPolicy)
        .build();
    let sessions: Sessions = Arc::new(HashMap::from([
        (
            "session-of-ada",
            User {
                name: "ada",
                pen_names: vec!["ada-writes"],
            },
        ),
        (
            "session-of-bo",
            User {
                name: "bo",
                pen_names: vec!["bo-poems"],
            },
        ),
    ]));
    let app = Router::new()
        .route("/app/hello", get(hello))
        .nest("/social", engine)
        .layer(middleware::from_fn_with_state(sessions, authenticate));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let host_signal = signal(&shutting_down);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(host_signal)
            .await
    });
    println!("  the host serves on {base}");

    let client = reqwest::Client::new();
    let as_ada = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth("session-of-ada")
    };

    let hello = as_ada("/app/hello").send().await?;
    ensure!(
        hello.status() == StatusCode::OK,
        "the host's route answers: {}",
        hello.status()
    );
    let text = hello.text().await?;
    ensure!(
        text == "hello, ada",
        "the host's route knows its user: {text:?}"
    );
    step("GET /app/hello as ada: the host's own route");

    let answer = as_ada("/social/v1/pen-names/ada-writes/connections")
        .send()
        .await?;
    ensure!(
        answer.status() == StatusCode::OK,
        "ada reads her own connections: {}",
        answer.status()
    );
    let body: serde_json::Value = answer.json().await?;
    let connections = body["connections"]
        .as_array()
        .context("a list of connections")?;
    ensure!(connections.len() == 9, "one entry per platform: {body}");
    // No platform has app credentials here; Bluesky needs none (an app password per
    // author), so it is there to connect.
    for c in connections {
        let expected = if c["platform"] == "bluesky" {
            "not_connected"
        } else {
            "not_configured"
        };
        ensure!(
            c["status"] == expected,
            "{} is {expected}: {c}",
            c["platform"]
        );
    }
    step("GET /social/v1/pen-names/ada-writes/connections as ada: her nine platforms");

    let answer = as_ada("/social/v1/pen-names/bo-poems/connections")
        .send()
        .await?;
    ensure!(
        answer.status() == StatusCode::FORBIDDEN,
        "bo's pen name is not ada's: {}",
        answer.status()
    );
    let body: serde_json::Value = answer.json().await?;
    ensure!(
        body["error"]["code"] == "not_your_pen_name",
        "the host's code: {body}"
    );
    step("GET …/bo-poems/connections as ada: 403 not_your_pen_name, in the API's error body");

    let answer = client
        .get(format!("{base}/social/v1/pen-names/ada-writes/connections"))
        .send()
        .await?;
    ensure!(
        answer.status() == StatusCode::UNAUTHORIZED,
        "no session, no entry: {}",
        answer.status()
    );
    let answer = client
        .get(format!("{base}/social/v1/pen-names/ada-writes/connections"))
        .bearer_auth(studio.admin_token().expose())
        .send()
        .await?;
    ensure!(
        answer.status() == StatusCode::UNAUTHORIZED,
        "the engine's admin token means nothing where the host decides alone: {}",
        answer.status()
    );
    step("without a session, or with the engine's admin token: 401");

    let health = client.get(format!("{base}/social/healthz")).send().await?;
    ensure!(
        health.status() == StatusCode::OK,
        "/healthz stays open: {}",
        health.status()
    );
    step("GET /social/healthz without credentials: 200");

    let stream = as_ada("/social/v1/pen-names/ada-writes/events")
        .send()
        .await?;
    ensure!(
        stream.status() == StatusCode::OK,
        "ada's event stream opens: {}",
        stream.status()
    );
    let kind = stream
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        kind.starts_with("text/event-stream"),
        "an event stream: {kind:?}"
    );
    step("GET /social/v1/pen-names/ada-writes/events as ada: the stream is open");

    // The host stops: one signal for its server and the engine's streams.
    shut_down.send_replace(true);
    match tokio::time::timeout(SHUTS_DOWN_WITHIN, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => bail!("the host's server failed: {e}"),
        Ok(Err(e)) => bail!("the host's server task failed: {e}"),
        Err(_) => bail!("the host's graceful shutdown did not finish within {SHUTS_DOWN_WITHIN:?} with a stream open"),
    }
    step("the host's graceful shutdown finished with the event stream still open");
    drop(stream);
    studio.shutdown().await;
    step("the engine shut down");
    println!("embed_in_axum: every step held");
    Ok(())
}
