//! The engine's HTTP API set up for a load test, as `bench/http.sh` uses it.
//!
//! Starts the sandbox, opens the engine on a fresh temporary data directory with X
//! pointed at the sandbox, serves the API on a loopback port, and connects the pen name
//! `bench-author` to X through the API exactly as `social-studio demo` does (authorize,
//! the sandbox's consent page, our callback). It then schedules a few posts due in a day
//! (nothing publishes during a run), prints
//!
//! ```text
//! LISTENING http://127.0.0.1:PORT TOKEN <admin token>
//! ```
//!
//! on stdout and serves until stdin closes, SIGTERM or Ctrl-C.
//!
//! `cargo run --release --example http_bench_server` — logs go to stderr with the same
//! default filter as `social-studio serve` (`RUST_LOG` overrides it); `BENCH_POSTS` sets
//! how many posts are scheduled (default 3).

use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use social_studio::config::Config;
use social_studio::sandbox::{browser, Sandbox, XUser};
use social_studio::studio::{Studio, StudioOptions};
use social_studio_storage::{Platform, Timestamp};

/// The same allocator as the `social-studio` binary, so the comparison is like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PEN: &str = "bench-author";
/// An account of our own on the sandbox's X (it seeds only the demo's).
const X_USER_ID: &str = "3141592653";
const X_USERNAME: &str = "bench_writes";

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// The connect flow as src/demo.rs runs it: authorize, the platform's consent page,
    /// then the browser lands on our callback.
    async fn connect_x(&self) -> Result<()> {
        let start = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/pen-names/{PEN}/connections/x/authorize"),
                Some(json!({})),
            )
            .await?;
        let url = start["authorize_url"]
            .as_str()
            .ok_or_else(|| anyhow!("no authorize_url in {start}"))?;
        let back = browser::consent(url, X_USERNAME, "authorize").await?;
        let page = self.client.get(&back).send().await?;
        let ok = page.status().is_success();
        let html = page.text().await?;
        if !ok || !html.contains("postMessage") {
            bail!("the callback page did not report success");
        }
        Ok(())
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,social_studio=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes when stdin reaches end of file (or fails), on SIGTERM, or on Ctrl-C.
async fn stop_signal() -> &'static str {
    // A plain thread rather than tokio's stdin: a blocking read there can hold up the
    // runtime's shutdown; this thread is simply left behind when the process exits.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = closed_rx => "stdin closed",
        _ = term => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
    }
}

async fn run() -> Result<()> {
    let posts: usize = match std::env::var("BENCH_POSTS") {
        Ok(v) => v.parse().context("BENCH_POSTS")?,
        Err(_) => 3,
    };
    let data = tempfile::Builder::new()
        .prefix("social-studio-bench-")
        .tempdir()
        .context("temporary data directory")?;
    let sandbox = Sandbox::start().await.context("starting the sandbox")?;
    sandbox
        .x()
        .add_user(XUser::new(X_USER_ID, X_USERNAME, "Bench Writes"))
        .context("adding the sandbox X account")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding a loopback port")?;
    let addr = listener.local_addr()?;

    let mut config = Config {
        data_dir: data.path().join("data"),
        listen: addr,
        public_url: format!("http://{addr}"),
        app_origin: format!("http://{addr}"),
        ..Config::default()
    };
    let pointed = config.use_sandbox_for_unconfigured(&sandbox.base_url());
    if !pointed.contains(&Platform::X) {
        bail!("X was not pointed at the sandbox");
    }
    let studio = Studio::open(config, StudioOptions::default())
        .await
        .context("opening the engine")?;
    let token = studio.admin_token().expose().to_string();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(social_studio::http::serve(
        studio.clone(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));

    let api = Api {
        base: format!("http://{addr}"),
        token: token.clone(),
        client: reqwest::Client::new(),
    };
    let setup = async {
        api.connect_x().await.context("connecting X")?;
        let due = Timestamp::now_system()
            .saturating_add(Duration::from_secs(24 * 3600))
            .to_rfc3339();
        for i in 0..posts {
            api.call(
                reqwest::Method::POST,
                &format!("/v1/pen-names/{PEN}/posts"),
                Some(json!({
                    "platform": "x",
                    "text": format!("Benchmark post {}", i + 1),
                    "scheduled_at": due,
                })),
            )
            .await
            .context("scheduling a post")?;
        }
        let list = api
            .call(
                reqwest::Method::GET,
                &format!("/v1/pen-names/{PEN}/connections"),
                None,
            )
            .await?;
        let x = list["connections"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["platform"] == "x"))
            .ok_or_else(|| anyhow!("no x entry in {list}"))?;
        if x["status"] != "active" || x["scheduled"].as_u64() != Some(posts as u64) {
            bail!("X is not active with {posts} scheduled posts: {x}");
        }
        anyhow::Ok(())
    };
    let outcome = setup.await;
    if outcome.is_ok() {
        println!("LISTENING http://{addr} TOKEN {token}");
        eprintln!(
            "http_bench_server: {PEN} connected to X on the sandbox ({}), {posts} posts due in a day, data in {}",
            sandbox.base_url(),
            data.path().display()
        );
        let why = stop_signal().await;
        eprintln!("http_bench_server: {why}; shutting down");
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    studio.shutdown().await;
    sandbox.shutdown().await;
    drop(data);
    outcome
}

fn main() -> Result<()> {
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}
