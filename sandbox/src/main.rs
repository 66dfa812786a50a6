//! `social-studio-sandbox`: the simulated platforms alone, so that several engine
//! processes in a test can share one sandbox.
//!
//! Prints two lines on stdout, then serves until Ctrl-C or SIGTERM:
//!
//! ```text
//! sandbox listening on http://127.0.0.1:40123
//! {"base_url":"http://127.0.0.1:40123","endpoints":{"bluesky":{"kind":"at_proto",…},…}}
//! ```
//!
//! The second line is the route table ([`Endpoints::table`]) as one JSON object, for a
//! process that points engines at this sandbox.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use social_studio_sandbox::{Endpoints, Sandbox};
use std::io::Write as _;

#[derive(Parser)]
#[command(
    name = "social-studio-sandbox",
    version,
    about = "Serves Social Studio's simulated social platforms over HTTP"
)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let sandbox = Sandbox::start_on(cli.listen)
        .await
        .context("starting the sandbox")?;
    let base = sandbox.base_url();
    let table = json!({"base_url": base, "endpoints": Endpoints::table(&base)});
    let mut out = std::io::stdout().lock();
    writeln!(out, "sandbox listening on {base}")?;
    writeln!(out, "{table}")?;
    // A reader waiting for these lines on a pipe must get them now, not at exit.
    out.flush()?;
    drop(out);

    stopped().await;
    eprintln!("sandbox shutting down");
    sandbox.shutdown().await;
    Ok(())
}

/// Resolves at Ctrl-C or, on Unix, SIGTERM.
async fn stopped() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
