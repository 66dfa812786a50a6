//! The `social-studio` binary: `serve`, `demo` and `status`.

#[cfg(feature = "sandbox")]
mod demo;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use social_studio::config::Config;
#[cfg(feature = "sandbox")]
use social_studio::sandbox::Sandbox;
use social_studio::studio::{Studio, StudioOptions, ADMIN_TOKEN_FILE};

/// mimalloc: the engine allocates many small, short-lived buffers across threads (records,
/// messages, HTTP), where glibc's malloc took a fifth of the dispatch CPU. A host that
/// embeds the library chooses its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "social-studio",
    version,
    about = "Keeps authors' social connections alive and publishes their scheduled posts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine and its HTTP status/admin API.
    Serve {
        /// TOML configuration file (also SOCIAL_STUDIO_CONFIG).
        #[arg(long, env = "SOCIAL_STUDIO_CONFIG")]
        config: Option<PathBuf>,
        /// Point every platform without credentials at the built-in sandbox.
        #[cfg(feature = "sandbox")]
        #[arg(long)]
        sandbox: bool,
    },
    /// Serve with the sandbox and play a narrated scenario, then keep serving.
    #[cfg(feature = "sandbox")]
    Demo {
        /// Exit after the scenario: 0 when every step held, 1 with the failed step.
        #[arg(long)]
        once: bool,
        /// Where the demo keeps its data (reset at every run).
        #[arg(long, default_value = "social-studio-data/demo")]
        data_dir: PathBuf,
    },
    /// Print a pen name's connections from a running server.
    Status {
        #[arg(long)]
        pen_name: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Data directory to read the admin token from when SOCIAL_STUDIO_ADMIN_TOKEN is unset.
        #[arg(long, default_value = "social-studio-data")]
        data_dir: PathBuf,
    },
}

fn init_tracing(quiet: bool) {
    let default = if quiet {
        "error"
    } else {
        "warn,social_studio=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Binds the configured address; the demo falls back to any free port.
async fn bind(addr: SocketAddr, fallback: bool) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if fallback => {
            eprintln!("{addr} is busy ({e}); using a free port instead");
            Ok(tokio::net::TcpListener::bind((addr.ip(), 0)).await?)
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

async fn serve(config_file: Option<PathBuf>, use_sandbox: bool) -> Result<()> {
    let mut config =
        Config::load(config_file.as_deref(), std::env::vars()).context("configuration")?;
    let listener = bind(config.listen, false).await?;
    let sandbox = start_sandbox(&mut config, use_sandbox).await?;
    let studio = Studio::open(config, StudioOptions::default())
        .await
        .context("opening the engine")?;
    announce(&studio, &listener)?;
    social_studio::http::serve(studio.clone(), listener, shutdown_signal())
        .await
        .context("serving HTTP")?;
    studio.shutdown().await;
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    Ok(())
}

/// With `--sandbox`, starts the sandbox and points every platform without credentials
/// at it; the sandbox runs until it is shut down or dropped. Media may then be fetched
/// from private addresses (`allow_private_media_urls`): the sandbox serves its media on
/// 127.0.0.1.
#[cfg(feature = "sandbox")]
async fn start_sandbox(config: &mut Config, use_sandbox: bool) -> Result<Option<Sandbox>> {
    if !use_sandbox {
        return Ok(None);
    }
    let sandbox = Sandbox::start().await.context("starting the sandbox")?;
    let pointed = config.use_sandbox_for_unconfigured(&sandbox.base_url());
    config.allow_private_media_urls = true;
    eprintln!("sandbox: media may be fetched from private addresses (allow_private_media_urls)");
    eprintln!(
        "sandbox at {} serves: {}",
        sandbox.base_url(),
        pointed
            .iter()
            .map(|p| p.id())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(sandbox))
}

/// Built without the sandbox: there is no `--sandbox` to honour, so never a sandbox.
#[cfg(not(feature = "sandbox"))]
async fn start_sandbox(_config: &mut Config, _use_sandbox: bool) -> Result<Option<NoSandbox>> {
    Ok(None)
}

/// The sandbox a build without it cannot have: a type with no values.
#[cfg(not(feature = "sandbox"))]
enum NoSandbox {}

#[cfg(not(feature = "sandbox"))]
impl NoSandbox {
    async fn shutdown(self) {
        match self {}
    }
}

fn announce(studio: &Studio, listener: &tokio::net::TcpListener) -> Result<()> {
    let addr = listener.local_addr()?;
    let notes = studio.startup_notes();
    eprintln!(
        "social-studio listening on http://{addr} (data in {})",
        studio.data_dir().display()
    );
    eprintln!(
        "store: {} (format {}) in {}",
        notes.store.backend, notes.store.format, notes.store.location
    );
    for line in &notes.store.opened {
        eprintln!("store: {line}");
    }
    let unreadable = studio.unreadable(None);
    if !unreadable.is_empty() {
        eprintln!(
            "store: {} stored records cannot be read; they are named in /v1/supervisor and the attention list",
            unreadable.len()
        );
    }
    if let Some(file) = &notes.generated_admin_token_file {
        // Where, never what: this output is the log under journald or a container.
        eprintln!(
            "admin token generated: read it from {} (or set SOCIAL_STUDIO_ADMIN_TOKEN)",
            file.display()
        );
    }
    if let social_studio_storage::KeySource::File { path, .. } = &notes.key_source {
        eprintln!(
            "note: the master key is the file {} beside the data it protects — fine for local use; in production set SOCIAL_STUDIO_MASTER_KEY",
            path.display()
        );
    }
    if !notes.not_configured.is_empty() {
        eprintln!(
            "not configured (they report not_configured): {}",
            notes
                .not_configured
                .iter()
                .map(|p| p.id())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: finishing what is in flight");
}

async fn status(pen: String, url: String, data_dir: PathBuf) -> Result<()> {
    let token = match std::env::var("SOCIAL_STUDIO_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))
            .map(|t| t.trim().to_string())
            .with_context(|| {
                format!(
                    "no SOCIAL_STUDIO_ADMIN_TOKEN and no {}",
                    data_dir.join(ADMIN_TOKEN_FILE).display()
                )
            })?,
    };
    let client = reqwest::Client::new();
    let answer = client
        .get(format!(
            "{}/v1/pen-names/{}/connections",
            url.trim_end_matches('/'),
            pen
        ))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = answer.status();
    let body: serde_json::Value = answer
        .json()
        .await
        .context("the server's answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{}: {}",
            body["error"]["code"].as_str().unwrap_or("error"),
            body["error"]["message"].as_str().unwrap_or("")
        );
    }
    print!("{}", table::connections_table(&body));
    Ok(())
}

/// A write past the file size limit (`ulimit -f`, `RLIMIT_FSIZE`) raises SIGXFSZ, whose
/// default action ends the process. Ignored, the write fails with EFBIG instead: the store
/// reports it, `/readyz` says `storage_failing`, and the engine backs off and waits.
#[cfg(unix)]
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler, and this runs
    // first in `main`, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> Result<()> {
    #[cfg(unix)]
    ignore_file_size_signal();
    let cli = Cli::parse();
    // The demo narrates; logs would drown the story (RUST_LOG brings them back).
    #[cfg(feature = "sandbox")]
    let quiet = matches!(cli.command, Command::Demo { .. });
    #[cfg(not(feature = "sandbox"))]
    let quiet = false;
    init_tracing(quiet);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            #[cfg(feature = "sandbox")]
            Command::Serve { config, sandbox } => serve(config, sandbox).await,
            #[cfg(not(feature = "sandbox"))]
            Command::Serve { config } => serve(config, false).await,
            #[cfg(feature = "sandbox")]
            Command::Demo { once, data_dir } => {
                let ok = demo::run(data_dir, once).await?;
                if !ok {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Status {
                pen_name,
                url,
                data_dir,
            } => status(pen_name, url, data_dir).await,
        }
    })
}
