//! What both parts share: the simulated platforms in this process, the `social-studio`
//! binary in its own (started on a configuration file pointing at them, killed,
//! restarted on the same data directory), its HTTP API as a client sees it, and the
//! platforms' own record of what they received.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use social_studio::sandbox::{browser, Endpoints, Sandbox};
use social_studio::wait::poll_until;
use social_studio_storage::Timestamp;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// The pen name every post of the suite is written under.
pub const PEN: &str = "rel-author";
const ADMIN_TOKEN: &str = "reliability-admin-token-9c41e2";
/// The sandbox's seeded users the suite connects as.
const X_USER: &str = "jane_writes";
const X_USER_ID: &str = "2244994945";
const LINKEDIN_USER: &str = "jane_writes";
const PINTEREST_USER: &str = "jane_writes";
const PINTEREST_USER_ID: &str = "549755885175";
const BLUESKY_HANDLE: &str = "jane.sandbox.test";
const BLUESKY_APP_PASSWORD: &str = "abcd-efgh-ijkl-mnop";
/// How long the engine may take to be ready (`/readyz`) after a start.
const START_PATIENCE: Duration = Duration::from_secs(60);
/// How often a condition is looked at again.
pub const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// The platforms the suite connects.
pub const PLATFORMS: [&str; 4] = ["x", "linkedin", "pinterest", "bluesky"];

/// The parts run one after the other: each would steal the other's two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the suite to one part at a time; a part that panicked does not block the next.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `name` from the environment in seconds, else `default`.
pub fn budget(name: &str, default: u64) -> Duration {
    let secs = std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// `RELIABILITY_SEED`, else a fresh one; printed by the caller so a run can be repeated.
pub fn seeded() -> (u64, StdRng) {
    let seed = std::env::var("RELIABILITY_SEED")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(rand::random);
    (seed, StdRng::seed_from_u64(seed))
}

/// A runtime for one part: multi-threaded, so that the sandbox answers while the part
/// waits on the engine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The platforms and one data directory with its configuration file.
pub struct World {
    pub sandbox: Sandbox,
    dir: TempDir,
    config: PathBuf,
    pub api: Api,
}

impl World {
    /// Starts the sandbox and writes the engine's configuration: every platform of
    /// [`PLATFORMS`] pointed at the sandbox (from its route table, as another process
    /// would read it), a fixed loopback port (the OAuth redirect URI names it, so it
    /// must survive restarts), media allowed from loopback.
    pub async fn new() -> World {
        let sandbox = Sandbox::start().await.expect("the sandbox starts");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let mut text = format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\nadmin_token = {ADMIN_TOKEN:?}\nallow_private_media_urls = true\n",
            data = dir.path().join("data"),
        );
        let table = serde_json::to_value(Endpoints::table(&sandbox.base_url()))
            .expect("the route table serializes");
        for platform in PLATFORMS {
            text.push_str(&format!("\n[platforms.{platform}]\n"));
            let endpoints = table[platform]
                .as_object()
                .expect("the sandbox simulates the platform");
            for (key, value) in endpoints {
                if key == "kind" || key == "requested_scopes" || value.is_null() {
                    continue;
                }
                if let Some(value) = value.as_str() {
                    text.push_str(&format!("{key} = {value:?}\n"));
                }
            }
        }
        let config = dir.path().join("social-studio.toml");
        std::fs::write(&config, text).expect("the configuration is written");
        let api = Api::new(format!("http://127.0.0.1:{port}"));
        World {
            sandbox,
            dir,
            config,
            api,
        }
    }

    /// Starts `social-studio serve` on the configuration and waits until it answers.
    /// Its output goes to `engine.log` in the data directory's parent, appended run
    /// after run.
    pub async fn start_engine(&self) -> Engine {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the engine's log opens");
        let child = Command::new(env!("CARGO_BIN_EXE_social-studio"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_remove("SOCIAL_STUDIO_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("the engine binary starts");
        let mut engine = Engine { child };
        let up = poll_until(START_PATIENCE, LOOK_AGAIN, async || {
            if let Ok(Some(status)) = engine.child.try_wait() {
                return Some(Err(status));
            }
            self.api.healthy().await.then_some(Ok(()))
        })
        .await;
        match up {
            Some(Ok(())) => engine,
            Some(Err(status)) => panic!(
                "the engine exited with {status} at start:\n{}",
                self.log_tail()
            ),
            None => panic!(
                "the engine did not answer within {START_PATIENCE:?}:\n{}",
                self.log_tail()
            ),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("engine.log")
    }

    /// The last lines the engine wrote, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Connects X, LinkedIn and Pinterest through their consent pages and Bluesky with
    /// an app password, as an author would; returns each platform's first target (the
    /// account itself, a board).
    pub async fn connect_all(&self) -> BTreeMap<&'static str, Option<String>> {
        self.api.connect_oauth("x", X_USER).await;
        self.api.connect_oauth("linkedin", LINKEDIN_USER).await;
        self.api.connect_oauth("pinterest", PINTEREST_USER).await;
        self.api
            .post(
                &format!("/v1/pen-names/{PEN}/connections/bluesky"),
                json!({"identifier": BLUESKY_HANDLE, "app_password": BLUESKY_APP_PASSWORD}),
            )
            .await
            .expect("Bluesky connects with an app password");
        let mut targets = BTreeMap::new();
        for platform in PLATFORMS {
            let entry = self.api.connection(platform).await;
            assert_eq!(entry["status"], "active", "{platform}: {entry}");
            let target = entry["targets"][0]["id"].as_str().map(str::to_owned);
            targets.insert(platform, target);
        }
        targets
    }

    /// How many times each text reached each platform, from the platforms' own record.
    pub async fn delivered(&self) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        let mut count = |text: &str| *seen.entry(text.to_owned()).or_default() += 1;
        for tweet in self.sandbox.x().tweets(X_USER_ID) {
            count(&tweet.text);
        }
        for post in self.sandbox.linkedin().posts() {
            count(&post.commentary);
        }
        for pin in self.sandbox.pinterest().pins(PINTEREST_USER_ID) {
            count(pin.description.as_deref().unwrap_or_default());
        }
        // Bluesky's records, from its control route (the PDS's own state page).
        let state: Value =
            reqwest::get(format!("{}/sandbox/bluesky/state", self.sandbox.base_url()))
                .await
                .expect("the sandbox answers")
                .json()
                .await
                .expect("its state is JSON");
        for record in state["records"].as_array().into_iter().flatten() {
            if let Some(text) = record["value"]["text"].as_str() {
                count(text);
            }
        }
        seen
    }
}

/// A free loopback port, found by binding one and letting it go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// The running engine process.
pub struct Engine {
    child: Child,
}

impl Engine {
    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("the engine can be killed");
        self.child
            .wait()
            .await
            .expect("the killed engine is reaped");
    }

    /// SIGTERM, and wait for the graceful shutdown.
    pub async fn stop(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if sent.is_ok_and(|s| s.success()) {
                let stopped =
                    tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
                if stopped.is_ok() {
                    return;
                }
            }
        }
        self.kill().await;
    }
}

/// The engine's HTTP API, as the product's backend calls it.
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: String) -> Api {
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Api { base, client }
    }

    async fn healthy(&self) -> bool {
        self.client
            // Ready, not merely up: `/healthz` answers while the engine still starts.
            .get(format!("{}/readyz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Sends one request; `Err` when no answer came (the engine is down or was killed).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        let text = answer.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// A GET that must answer 2xx.
    pub async fn get(&self, path: &str) -> Value {
        match self.call(reqwest::Method::GET, path, None).await {
            Ok((status, body)) if status < 300 => body,
            other => panic!("GET {path}: {other:?}"),
        }
    }

    /// A POST; `Err` with what came back unless it answered 2xx.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        match self.call(reqwest::Method::POST, path, Some(body)).await {
            Ok((status, body)) if status < 300 => Ok(body),
            other => Err(format!("POST {path}: {other:?}")),
        }
    }

    /// One connection's entry.
    pub async fn connection(&self, platform: &str) -> Value {
        let detail = self
            .get(&format!("/v1/pen-names/{PEN}/connections/{platform}"))
            .await;
        detail.get("connection").cloned().unwrap_or(detail)
    }

    /// Every post of the pen name.
    pub async fn posts(&self) -> Vec<Value> {
        let list = self.get(&format!("/v1/pen-names/{PEN}/posts")).await;
        list["posts"].as_array().cloned().unwrap_or_default()
    }

    /// The connect flow as the product's popup runs it: authorize, the platform's page,
    /// consent, and the engine's callback page.
    async fn connect_oauth(&self, platform: &str, username: &str) {
        let start = self
            .post(
                &format!("/v1/pen-names/{PEN}/connections/{platform}/authorize"),
                json!({}),
            )
            .await
            .unwrap_or_else(|e| panic!("{platform}: {e}"));
        let url = start["authorize_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{platform}: no authorize_url in {start}"));
        let back = browser::consent(url, username, "authorize")
            .await
            .unwrap_or_else(|e| panic!("{platform} consent: {e}"));
        let page = self
            .client
            .get(&back)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{platform} callback: {e}"));
        let ok = page.status().is_success();
        let html = page.text().await.unwrap_or_default();
        assert!(
            ok && html.contains("postMessage"),
            "{platform}: the callback page did not report success: {html}"
        );
    }

    /// Schedules one post of `text` on `platform`, due in `due_in`. `Ok(id)` on 201,
    /// `Err` for anything else (no answer included).
    pub async fn schedule(
        &self,
        platform: &str,
        target: Option<&str>,
        text: &str,
        due_in: Duration,
    ) -> Result<String, String> {
        let mut body = json!({
            "platform": platform,
            "text": text,
            "scheduled_at": Timestamp::now_system().saturating_add(due_in).to_rfc3339(),
        });
        if platform == "pinterest" {
            // A pin is an image with a title; Pinterest fetches the image itself (the
            // sandbox records its URL).
            body["kind"] = json!("pin");
            body["title"] = json!("Reliability");
            body["media"] = json!([{"url": "https://example.com/covers/reliability.jpg", "kind": "image", "alt": "A cover"}]);
        }
        if let Some(target) = target {
            body["target"] = json!(target);
        }
        match self
            .call(
                reqwest::Method::POST,
                &format!("/v1/pen-names/{PEN}/posts"),
                Some(body),
            )
            .await
        {
            Ok((201, created)) => created["posts"][0]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no post id in {created}")),
            Ok((status, body)) => Err(format!("{status}: {body}")),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Waits until no post is scheduled or publishing, and returns every post.
    pub async fn settled(&self, within: Duration) -> Result<Vec<Value>, Vec<Value>> {
        let mut last = Vec::new();
        let done = poll_until(within, Duration::from_millis(250), async || {
            last = self.posts().await;
            let moving = last
                .iter()
                .any(|p| p["state"] == "scheduled" || p["state"] == "publishing");
            (!moving).then_some(())
        })
        .await;
        match done {
            Some(()) => Ok(last),
            None => Err(last),
        }
    }
}

/// The states of `posts`, counted.
pub fn by_state(posts: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for post in posts {
        *counts
            .entry(post["state"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
}
