//! `spawn_app()`: the whole service on a random loopback port, with a fresh data
//! directory, X pointed at a fresh sandbox, and a known admin token — plus the few moves
//! every test makes (authorised requests, the OAuth dance a browser does, reading an
//! event stream).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use social_studio::config::Config;
use social_studio::sandbox::Sandbox;
use social_studio::studio::{StoreLayer, Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_actors::{Clock, EngineConfig};
use social_studio_storage::{Secret, Timestamp};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "../support/sse.rs"]
mod sse;
pub use sse::SseReader;

pub const ADMIN_TOKEN: &str = "test-admin-token-5f1c9a0e7d";
/// The sandbox's seeded X users.
pub const JANE_ID: &str = "2244994945";
pub const JANE: &str = "jane_writes";
pub const OTHER: &str = "other_account";
/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How often a test looks again at a condition it waits for.
pub const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// A wall clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn starting_now() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(Timestamp::now_system()),
        })
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap();
        *now = now.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }
}

/// What a test may change before the service opens.
#[derive(Default)]
pub struct AppOptions {
    pub clock: Option<Arc<dyn Clock>>,
    pub max_body_bytes: Option<usize>,
    /// Capacity of the engine's event broadcast (small, to make a subscriber lag).
    pub event_channel_capacity: Option<usize>,
    /// Wraps the store (a store that fails on command), at every start.
    pub store_layer: Option<StoreLayer>,
    /// Refuse media outside the public internet, as a production engine does. Off in
    /// tests by default: the sandbox serves media on 127.0.0.1.
    pub refuse_private_media: bool,
}

/// The running service and everything a test needs to drive and inspect it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A browser-like client that does not follow redirects (tests read them).
    pub client: reqwest::Client,
    pub admin_token: String,
    pub sandbox: Sandbox,
    pub studio: Studio,
    pub config: Config,
    /// Kept alive for as long as the app; removed when the test ends.
    pub data_dir: Arc<TempDir>,
    options_clock: Option<Arc<dyn Clock>>,
    options_engine: Tuning,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        allow_private_media_urls: !options.refuse_private_media,
        ..Config::default()
    };
    if let Some(max) = options.max_body_bytes {
        config.max_body_bytes = max;
    }
    config.use_sandbox_for_unconfigured(&sandbox.base_url());
    let tuning = Tuning {
        engine: None,
        event_capacity: options.event_channel_capacity,
        store_layer: options.store_layer,
    };
    start(sandbox, data_dir, config, options.clock, tuning).await
}

/// Binds a port, points the public URL at it, opens the engine and serves.
async fn start(
    sandbox: Sandbox,
    data_dir: Arc<TempDir>,
    mut config: Config,
    clock: Option<Arc<dyn Clock>>,
    engine: Tuning,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    config.listen = addr;
    config.public_url = format!("http://{addr}");
    config.app_origin = "http://app.example.test".into();
    let studio = open_studio(&config, clock.clone(), engine.clone()).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(social_studio::http::serve(
        studio.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client"),
        admin_token: ADMIN_TOKEN.into(),
        sandbox,
        studio,
        config,
        data_dir,
        options_clock: clock,
        options_engine: engine,
        stop: Some(stop),
        server: Some(server),
    }
}

/// What a test tunes beyond the configuration: the engine's timing, the event feed, and
/// the store's wrapper.
#[derive(Clone, Default)]
pub struct Tuning {
    pub engine: Option<EngineConfig>,
    pub event_capacity: Option<usize>,
    pub store_layer: Option<StoreLayer>,
}

/// Opens the engine; right after a stop the previous one may still be letting go of the
/// database, so this waits (with a deadline) until it can.
async fn open_studio(config: &Config, clock: Option<Arc<dyn Clock>>, engine: Tuning) -> Studio {
    let mut last_error = None;
    let opened = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let options = StudioOptions {
            clock: clock.clone(),
            engine: engine.engine.clone(),
            event_capacity: engine.event_capacity,
            store_layer: engine.store_layer.clone(),
            ..StudioOptions::default()
        };
        match Studio::open(config.clone(), options).await {
            Ok(studio) => Some(studio),
            Err(e) => {
                tracing::debug!(error = %e, "the engine cannot open yet");
                last_error = Some(e);
                None
            }
        }
    })
    .await;
    opened.unwrap_or_else(|| panic!("the engine does not open: {}", last_error.unwrap()))
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
    }

    /// Sends an authorised request (JSON body when given) and reads a JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        read_json(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// Reads `pen`'s post `id` until `wanted` holds; fails the test, naming `what` it waited
    /// for, when [`PATIENCE`] runs out.
    pub async fn post_until(
        &self,
        pen: &str,
        id: &str,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/v1/pen-names/{pen}/posts/{id}");
        let mut last = Value::Null;
        let found = poll_until(PATIENCE, Duration::from_millis(25), async || {
            let (status, body) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            last = body.get("post").cloned().unwrap_or(body);
            wanted(&last).then(|| last.clone())
        })
        .await;
        found.unwrap_or_else(|| panic!("the post never became {what}: {last}"))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// The connection entry of `pen` on `platform`.
    pub async fn connection(&self, pen: &str, platform: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1/pen-names/{pen}/connections/{platform}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["connection"].clone()
    }

    /// `POST …/x/authorize`: the authorize URL and state.
    pub async fn authorize(&self, pen: &str) -> (String, String) {
        self.authorize_on(pen, "x").await
    }

    /// `POST …/{platform}/authorize`: the authorize URL and state.
    pub async fn authorize_on(&self, pen: &str, platform: &str) -> (String, String) {
        let (status, body) = self
            .post(
                &format!("/v1/pen-names/{pen}/connections/{platform}/authorize"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["authorize_url"]
                .as_str()
                .expect("authorize_url")
                .to_string(),
            body["state"].as_str().expect("state").to_string(),
        )
    }

    /// Does what a person in a browser does on the sandbox's consent page: opens it,
    /// fills the form, and returns where the platform sends the browser back.
    pub async fn consent(&self, authorize_url: &str, username: &str, decision: &str) -> String {
        let page = self
            .client
            .get(authorize_url)
            .send()
            .await
            .expect("consent page");
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.expect("consent html");
        let mut form = hidden_fields(&html);
        assert!(
            form.iter().any(|(k, _)| k == "state"),
            "the consent form carries the state: {html}"
        );
        form.push(("username".into(), username.into()));
        form.push(("password".into(), "sandbox".into()));
        form.push(("decision".into(), decision.into()));
        let action = form_action(&html).expect("form action");
        let answer = self
            .client
            .post(
                reqwest::Url::parse(authorize_url)
                    .and_then(|page| page.join(&action))
                    .expect("the form's action resolves against its page"),
            )
            .form(&form)
            .send()
            .await
            .expect("consent form posted");
        assert_eq!(
            answer.status(),
            StatusCode::FOUND,
            "the consent page redirects back"
        );
        answer
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_string()
    }

    /// Follows the platform's redirect to our callback: status, headers, HTML.
    pub async fn follow_callback(
        &self,
        location: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        assert!(
            location.starts_with(&self.config.redirect_uri()),
            "the platform sends the browser back to our redirect URI: {location}"
        );
        let response = self.client.get(location).send().await.expect("callback");
        let status = response.status();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.text().await.expect("callback html"),
        )
    }

    /// The full connect of `pen` to the X account `username`, through HTTP only.
    pub async fn connect_x(&self, pen: &str, username: &str) -> Value {
        self.connect_oauth(pen, "x", username).await
    }

    /// The full OAuth connect of `pen` to `username` on `platform`, through HTTP only.
    pub async fn connect_oauth(&self, pen: &str, platform: &str, username: &str) -> Value {
        let (url, _state) = self.authorize_on(pen, platform).await;
        let location = self.consent(&url, username, "authorize").await;
        let (status, _headers, html) = self.follow_callback(&location).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        self.connection(pen, platform).await
    }

    /// `POST /v1/pen-names/{pen}/posts` with `request`: what scheduling answers.
    pub async fn schedule(&self, pen: &str, request: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/pen-names/{pen}/posts"), request)
            .await
    }

    /// The posts the API lists for `pen`.
    pub async fn stored_posts(&self, pen: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/pen-names/{pen}/posts")).await;
        assert_eq!(status, StatusCode::OK);
        body["posts"].as_array().unwrap().clone()
    }

    /// Reschedules `pen`'s post `id` to a second from now, so that it publishes soon.
    pub async fn bring_forward(&self, pen: &str, id: &str) {
        let soon = Timestamp::now_system()
            .saturating_add(Duration::from_secs(1))
            .to_rfc3339();
        let (status, patched) = self
            .call(
                Method::PATCH,
                &format!("/v1/pen-names/{pen}/posts/{id}"),
                Some(json!({"scheduled_at": soon})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{patched}");
    }

    /// Schedules a post on X for `pen`, due a day from now.
    pub async fn schedule_x(&self, pen: &str, text: &str) -> Value {
        let (status, body) = self
            .schedule(
                pen,
                json!({"platform": "x", "text": text, "scheduled_at": in_a_day()}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["posts"][0].clone()
    }

    /// Stops serving and shuts the engine down; returns what a restart needs.
    pub async fn stop(mut self) -> Stopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ends cleanly");
        }
        self.studio.shutdown().await;
        Stopped {
            sandbox: self.sandbox,
            data_dir: self.data_dir,
            config: self.config,
            clock: self.options_clock,
            engine: self.options_engine,
        }
    }

    /// Stops the service and starts it again on the same data directory.
    pub async fn restart(self) -> TestApp {
        let s = self.stop().await;
        start(s.sandbox, s.data_dir, s.config, s.clock, s.engine).await
    }

    /// Opens the event stream at `path`, resuming after `last_event_id` when given.
    pub async fn events(&self, path: &str, last_event_id: Option<u64>) -> SseReader {
        let mut request = self.request(Method::GET, path);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("event stream");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream")));
        SseReader::new(response, PATIENCE)
    }
}

/// What outlives a stopped service, for starting it again.
pub struct Stopped {
    pub sandbox: Sandbox,
    pub data_dir: Arc<TempDir>,
    pub config: Config,
    clock: Option<Arc<dyn Clock>>,
    engine: Tuning,
}

impl Stopped {
    /// Starts the service again on this data directory — after a test changed it while
    /// nothing had it open.
    pub async fn start(self) -> TestApp {
        start(
            self.sandbox,
            self.data_dir,
            self.config,
            self.clock,
            self.engine,
        )
        .await
    }
}

/// RFC 3339, a day from now.
pub fn in_a_day() -> String {
    Timestamp::now_system()
        .saturating_add(Duration::from_secs(86_400))
        .to_rfc3339()
}

pub async fn read_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, value)
}

/// Sends `request` and reads its JSON answer.
pub async fn read_answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    read_json(request.send().await.unwrap()).await
}

/// Asserts the refusal of a request whose content does not pass validation: 422
/// `validation_failed`.
pub fn assert_validation_failed(status: StatusCode, body: &Value) {
    assert_error(
        status,
        body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
}

/// Asserts an error body: `{"error": {"code": code, "message": ...}}`.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// `(name, value)` of every `<input type="hidden">` of a page, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input ")
        .skip(1)
        .filter(|tag| tag.starts_with("type=\"hidden\""))
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            Some((attribute(tag, "name")?, attribute(tag, "value")?))
        })
        .collect()
}

fn form_action(html: &str) -> Option<String> {
    let start = html.find("<form ")?;
    let tag = &html[start..start + html[start..].find('>')?];
    attribute(tag, "action")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}
