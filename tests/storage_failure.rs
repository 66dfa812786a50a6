//! A real write failure: the `social-studio` binary under a file size limit
//! (`RLIMIT_FSIZE`), so that sled's writes fail with EFBIG once its file reaches it — no
//! root and no special mount needed. The engine must say so (`/readyz` 503
//! `storage_failing`), must not spin (its queue backs off: a few log lines and failed
//! commits, little CPU), and after a restart without the limit every post it accepted
//! (201) is there and publishes, once.
//!
//! The platform is Bluesky, served by the sandbox in this test's process, so the platform
//! world (its accounts, sessions and records) outlives the engine's restart.

#![cfg(target_os = "linux")]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::sandbox::{Endpoints, Sandbox};
use social_studio::wait::poll_until;
use social_studio_storage::Timestamp;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The file size limit: sled's file grows past it after a few dozen posts.
const FILE_LIMIT_BYTES: u64 = 64 * 1024;
/// How long the binary may take to come up, and posts to publish.
const PATIENCE: Duration = Duration::from_secs(60);
const JANE_DID: &str = "did:plc:janewritessandbox0000";
/// The queue's log line for each step of its storage backoff.
const BACKOFF_LINE: &str = "the store refuses writes";

/// One run of the binary, its log gathered as it goes.
struct Engine {
    child: tokio::process::Child,
    base: String,
    token: String,
    log: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Engine {
    async fn start(data: &std::path::Path, sandbox: &Sandbox, file_limit: Option<u64>) -> Engine {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let Some(Endpoints::AtProto(bluesky)) = sandbox.endpoints("bluesky") else {
            panic!("the sandbox serves Bluesky");
        };
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_social-studio"));
        command
            .arg("serve")
            .env_remove("SOCIAL_STUDIO_CONFIG")
            .env_remove("SOCIAL_STUDIO_ADMIN_TOKEN")
            .env_remove("SOCIAL_STUDIO_MASTER_KEY")
            .env("SOCIAL_STUDIO_DATA_DIR", data)
            .env("SOCIAL_STUDIO_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SOCIAL_STUDIO_PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env("SOCIAL_STUDIO_BLUESKY_SERVICE", &bluesky.service)
            .env(
                "SOCIAL_STUDIO_BLUESKY_PLC_DIRECTORY",
                &bluesky.plc_directory,
            )
            // The sandbox's PDS is on loopback.
            .env("SOCIAL_STUDIO_ALLOW_PRIVATE_MEDIA_URLS", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(limit) = file_limit {
            // SAFETY: between fork and exec only async-signal-safe calls are made
            // (setrlimit, signal), touching no memory of the parent's.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The binary ignores it too; ignored here, no write before its
                    // `main` can end it either.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        // The log is on stderr, what a command answers on stdout: both kept.
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let gathered = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                gathered.lock().unwrap().push(line);
            }
        });
        let gathered = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                gathered.lock().unwrap().push(line);
            }
        });
        let engine = Engine {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            log,
            client: reqwest::Client::new(),
        };
        let token_file = data.join("admin.token");
        let up = poll_until(PATIENCE, Duration::from_millis(100), async || {
            let token = std::fs::read_to_string(&token_file).ok()?;
            let ready = engine.client.get(engine.url("/readyz")).send().await.ok()?;
            (ready.status() == StatusCode::OK).then(|| token.trim().to_owned())
        })
        .await;
        let Some(token) = up else {
            panic!("the binary never became ready:\n{}", engine.log_text());
        };
        Engine { token, ..engine }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn backoff_lines(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(BACKOFF_LINE))
            .count()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn readyz(&self) -> (StatusCode, Value) {
        let response = self.client.get(self.url("/readyz")).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn metric(&self, name: &str) -> f64 {
        let response = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
    }

    /// User and system CPU time the process used so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The fields after the command name (in parentheses, which may hold spaces).
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        // utime and stime are fields 14 and 15, so 11 and 12 after the state (field 3).
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

#[tokio::test]
async fn a_real_write_failure_is_named_not_spun_on_and_loses_nothing() {
    let sandbox = Sandbox::start().await.unwrap();
    let data = tempfile::TempDir::new().unwrap();
    let engine = Engine::start(data.path(), &sandbox, Some(FILE_LIMIT_BYTES)).await;
    let (status, connected) = engine
        .call(
            reqwest::Method::POST,
            "/v1/pen-names/jane/connections/bluesky",
            Some(json!({"identifier": "jane.sandbox.test", "app_password": "abcd-efgh-ijkl-mnop"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{connected}");

    // Posts due a little later, until a write fails: every one answered 201 was accepted.
    let due = Timestamp::now_system().saturating_add(Duration::from_secs(20));
    let mut accepted = Vec::new();
    let mut refusal = None;
    for i in 0..2_000 {
        let text = format!("post {i} {}", "x".repeat(200));
        let (status, body) = engine
            .call(
                reqwest::Method::POST,
                "/v1/pen-names/jane/posts",
                Some(
                    json!({"platform": "bluesky", "text": text, "scheduled_at": due.to_rfc3339()}),
                ),
            )
            .await;
        if status != StatusCode::CREATED {
            refusal = Some((status, body));
            break;
        }
        accepted.push(body["posts"][0]["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = refusal.expect("a write failed under the file size limit");
    assert!(
        Timestamp::now_system() < due,
        "the store failed only once the posts were due: too slow a machine for this test"
    );
    assert_eq!(body["error"]["code"], "storage_error", "{status} {body}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(accepted.len() >= 5, "only {} posts fit", accepted.len());

    // Named at once, with what to do.
    let (status, unready) = engine.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{unready}");
    assert_eq!(unready["reason"]["code"], "storage_failing", "{unready}");
    let (_, attention) = engine
        .call(reqwest::Method::GET, "/v1/attention", None)
        .await;
    assert_eq!(
        attention["engine"][0]["reason"]["code"], "storage_failing",
        "{attention}"
    );
    assert!(
        attention["engine"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("File too large")),
        "the store's own error is shown to the operator: {attention}"
    );

    // The posts fall due while the store refuses writes: the queue backs off.
    let wait_for_due = Timestamp::now_system().until(due) + Duration::from_secs(2);
    tokio::time::sleep(wait_for_due).await;
    let (lines_before, failures_before, cpu_before) = (
        engine.backoff_lines(),
        engine
            .metric("social_studio_store_commit_failures_total")
            .await,
        engine.cpu_ticks(),
    );
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let lines = engine.backoff_lines() - lines_before;
    let failures = engine
        .metric("social_studio_store_commit_failures_total")
        .await
        - failures_before;
    let cpu_ticks = engine.cpu_ticks() - cpu_before;
    let ticks_per_second = 100; // USER_HZ on Linux
    eprintln!(
        "over {window:?} of a failing store: {lines} backoff log lines, {failures} failed commits, {cpu_ticks} CPU ticks"
    );
    // Backing off 1, 2, 4, 8 s…: a few steps in ten seconds. A spinning queue fails a
    // commit (and logs a line) per loop, thousands a second, and burns a core.
    assert!(lines <= 8, "{lines} backoff lines in {window:?}");
    assert!(failures <= 20.0, "{failures} failed commits in {window:?}");
    assert!(
        cpu_ticks < window.as_secs() * ticks_per_second / 2,
        "{cpu_ticks} CPU ticks in {window:?}: the engine spins"
    );
    assert!(
        engine.backoff_lines() >= 1,
        "the queue said it backs off:\n{}",
        engine.log_text()
    );
    let (status, _) = engine.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        sandbox.bluesky().records(JANE_DID).is_empty(),
        "nothing was published"
    );

    // sled refuses every write after a failed one until the process restarts: the
    // operator frees space (here: lifts the limit) and restarts.
    engine.kill().await;
    let engine = Engine::start(data.path(), &sandbox, None).await;
    let (status, _) = engine.readyz().await;
    assert_eq!(status, StatusCode::OK);
    let published = poll_until(PATIENCE, Duration::from_millis(200), async || {
        let mut states = Vec::new();
        for id in &accepted {
            let (status, post) = engine
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/pen-names/jane/posts/{id}"),
                    None,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "accepted post {id} is there: {post}"
            );
            let post = post.get("post").cloned().unwrap_or(post);
            states.push(post["state"].as_str().unwrap_or_default().to_owned());
        }
        states.iter().all(|s| s == "published").then_some(())
    })
    .await;
    assert!(
        published.is_some(),
        "every accepted post publishes after the restart:\n{}",
        engine.log_text()
    );
    let records = sandbox.bluesky().records(JANE_DID);
    for i in 0..accepted.len() {
        let text = format!("post {i} ");
        let copies = records
            .iter()
            .filter(|r| {
                r.value["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&text))
            })
            .count();
        assert_eq!(copies, 1, "post {i} is on Bluesky once");
    }
    engine.kill().await;
}
