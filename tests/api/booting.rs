//! A server that answers while the engine starts (`http::Booting`): `/healthz` at once,
//! `/readyz` 503 with how far the start has come, every other route 503 `booting` — and,
//! once the studio is open and the switch thrown, the whole API on the same listener.
//!
//! The start is held where the supervisor reads each connection's grant, by a store
//! wrapper whose `grant()` waits on a gate the test opens: so the test sees the server
//! mid-boot for as long as it needs, without guessing at timing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::Value;
use social_studio::http::Booting;
use social_studio::studio::{BootProgress, StoreLayer, Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_storage::{
    BackupSummary, Batch, CommitFuture, Connection, ConnectionCounts, ConnectionKey, Durability,
    Epoch, ErasedCounts, Event, EventPage, Grant, IdempotentRequest, IntegrityReport, Loaded,
    PenName, Post, PostCounts, PostId, PostStatus, SharedStore, StateLookup, Store, StoreError,
    StoreInfo, Timestamp, UnreadableRecord,
};
use tokio::sync::{broadcast, Semaphore};

use crate::helpers::{read_json, spawn_app, JANE, LOOK_AGAIN, PATIENCE};

/// The pen names connected before the restart.
const PENS: [&str; 3] = ["ann", "bea", "cy"];

/// The store port over another, whose `grant()` waits until the gate is opened (closed,
/// in `Semaphore` terms: every waiter then goes through, and every later call at once).
struct GatedStore {
    inner: SharedStore,
    gate: Arc<Semaphore>,
}

impl GatedStore {
    /// A layer for `StudioOptions::store_layer`, and its gate (shut).
    fn layer() -> (StoreLayer, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let held = gate.clone();
        let layer: StoreLayer = Arc::new(move |inner: SharedStore| -> SharedStore {
            Arc::new(GatedStore {
                inner,
                gate: held.clone(),
            })
        });
        (layer, gate)
    }
}

#[async_trait]
impl Store for GatedStore {
    fn commit(&self, batch: Batch, durability: Durability) -> CommitFuture {
        self.inner.commit(batch, durability)
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.subscribe()
    }
    async fn claim(&self, key: &ConnectionKey) -> Result<Epoch, StoreError> {
        self.inner.claim(key).await
    }
    async fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        self.inner.connection(key).await
    }
    async fn connections_of(&self, pen: &PenName) -> Result<Loaded<Connection>, StoreError> {
        self.inner.connections_of(pen).await
    }
    async fn all_connections(&self) -> Result<Loaded<Connection>, StoreError> {
        self.inner.all_connections().await
    }
    async fn connection_counts(&self) -> Result<ConnectionCounts, StoreError> {
        self.inner.connection_counts().await
    }
    async fn grant(&self, key: &ConnectionKey) -> Result<Option<Grant>, StoreError> {
        // Closed means open: the acquire fails at once, for every waiter and from then on.
        let _ = self.gate.acquire().await;
        self.inner.grant(key).await
    }
    async fn post(&self, id: PostId) -> Result<Option<Post>, StoreError> {
        self.inner.post(id).await
    }
    async fn posts_of_connection(&self, key: &ConnectionKey) -> Result<Loaded<Post>, StoreError> {
        self.inner.posts_of_connection(key).await
    }
    async fn posts_of_pen(&self, pen: &PenName) -> Result<Loaded<Post>, StoreError> {
        self.inner.posts_of_pen(pen).await
    }
    async fn queued_posts(&self) -> Result<Loaded<PostStatus>, StoreError> {
        self.inner.queued_posts().await
    }
    async fn post_counts(&self, key: &ConnectionKey) -> Result<PostCounts, StoreError> {
        self.inner.post_counts(key).await
    }
    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.events_after(seq, limit).await
    }
    async fn events_of_connection(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_of_connection(key, page).await
    }
    async fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.inner.event(seq).await
    }
    async fn events_of_post(
        &self,
        pen: &PenName,
        id: PostId,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_of_post(pen, id, page).await
    }
    async fn take_oauth_state(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<StateLookup, StoreError> {
        self.inner.take_oauth_state(state, now).await
    }
    async fn purge_oauth_states(
        &self,
        now: Timestamp,
        keep: Duration,
    ) -> Result<usize, StoreError> {
        self.inner.purge_oauth_states(now, keep).await
    }
    async fn idempotent_result(
        &self,
        pen: &PenName,
        key: &str,
    ) -> Result<Option<IdempotentRequest>, StoreError> {
        self.inner.idempotent_result(pen, key).await
    }
    async fn remember_idempotent(
        &self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> Result<IdempotentRequest, StoreError> {
        self.inner.remember_idempotent(pen, key, record).await
    }
    async fn purge_events_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.inner.purge_events_before(before).await
    }
    async fn events_purged_through(&self) -> Result<u64, StoreError> {
        self.inner.events_purged_through().await
    }
    async fn purge_idempotency_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.inner.purge_idempotency_before(before).await
    }
    async fn purge_finished_posts_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.inner.purge_finished_posts_before(before).await
    }
    async fn erase_pen_name(&self, pen: &PenName) -> Result<ErasedCounts, StoreError> {
        self.inner.erase_pen_name(pen).await
    }
    async fn backup(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<BackupSummary, StoreError> {
        self.inner.backup(out).await
    }
    fn unreadable(&self) -> Vec<UnreadableRecord> {
        self.inner.unreadable()
    }
    async fn check_integrity(&self) -> Result<IntegrityReport, StoreError> {
        self.inner.check_integrity().await
    }
    fn info(&self) -> StoreInfo {
        self.inner.info()
    }

    fn ownership(&self) -> &dyn social_studio_storage::Ownership {
        self.inner.ownership()
    }

    fn commands(&self) -> Option<&dyn social_studio_storage::CommandRelay> {
        self.inner.commands()
    }
}

/// `GET base + path` over the loopback, answered as status, `Retry-After` and JSON.
async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = client.get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = read_json(response).await;
    (status, retry_after, body)
}

#[tokio::test]
async fn a_starting_engine_answers_healthz_and_its_progress_then_the_whole_api() {
    // Three connections stored, then the engine stopped.
    let app = spawn_app().await;
    for pen in PENS {
        app.connect_x(pen, JANE).await;
    }
    let token = app.admin_token.clone();
    let stopped = app.stop().await;
    let mut config = stopped.config.clone();

    // A server that answers from the first moment, on a fresh port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    config.listen = addr;
    config.public_url = format!("http://{addr}");
    let base = format!("http://{addr}");
    let progress = BootProgress::new();
    let booting = Booting::new(progress.clone());
    let server = tokio::spawn({
        let app = booting.router();
        async move { axum::serve(listener, app).await }
    });

    // The engine starts, and is held at the first connection's grant.
    let (layer, gate) = GatedStore::layer();
    let opening = tokio::spawn(Studio::open(
        config,
        StudioOptions {
            store_layer: Some(layer),
            boot_progress: Some(progress.clone()),
            ..StudioOptions::default()
        },
    ));
    let client = reqwest::Client::new();

    let (status, _, body) = get(&client, &base, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");

    // Once the connections are read, `/readyz` counts them; none has started.
    let held = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let (status, retry_after, body) = get(&client, &base, "/readyz", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        (body["booting"]["phase"] == "starting_connections").then_some((retry_after, body))
    })
    .await;
    let Some((retry_after, body)) = held else {
        panic!(
            "the start never reached its connections: {:?}",
            progress.state()
        );
    };
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["reason"]["code"], "booting", "{body}");
    assert!(
        body["reason"]["remedy"]
            .as_str()
            .is_some_and(|r| r.starts_with("Wait")),
        "{body}"
    );
    assert_eq!(body["booting"]["total"], PENS.len(), "{body}");
    let loaded = body["booting"]["loaded"].as_u64().expect("a count");
    assert!(loaded < PENS.len() as u64, "{body}");
    assert!(retry_after.is_some(), "/readyz says when to ask again");
    // `/healthz` still answers while the start is held.
    let (status, _, _) = get(&client, &base, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);

    // A method the probes do not answer is refused as the API refuses it, in JSON.
    let (status, body) =
        read_json(client.post(format!("{base}/healthz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    // Every other route: 503 `booting`, with when to try again.
    let path = format!("/v1/pen-names/{}/connections", PENS[0]);
    let (status, retry_after, body) = get(&client, &base, &path, Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "booting", "{body}");
    assert!(body["error"]["remedy"].is_string(), "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));

    // The start goes on; once the studio is open, the same listener serves the API.
    gate.close();
    let studio = tokio::time::timeout(PATIENCE, opening)
        .await
        .expect("the start finishes once the grants can be read")
        .unwrap()
        .expect("the engine opens");
    assert_eq!(
        (progress.state().loaded, progress.state().total),
        (PENS.len() as u64, Some(PENS.len() as u64))
    );
    booting
        .switch_to(social_studio::http::router(studio.clone()))
        .unwrap();
    assert!(
        booting
            .switch_to(social_studio::http::router(studio.clone()))
            .is_err(),
        "one switch"
    );
    let (status, _, body) = get(&client, &base, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    let (status, _, body) = get(&client, &base, &path, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let x = body["connections"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["platform"] == "x"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(x["status"], "active", "{body}");

    server.abort();
    studio.shutdown().await;
}
