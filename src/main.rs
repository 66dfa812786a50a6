//! The `social-studio` binary: `serve`, `demo`, `status`, `backup` and `restore`,
//! `migrate-store` (feature `postgres`), and the key commands (`new-master-key`,
//! `rotate-master-key`, `rotate-admin-token`).

#[cfg(feature = "sandbox")]
mod demo;
mod table;

use std::io::{Seek as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use social_studio::config::Config;
use social_studio::http::Booting;
#[cfg(feature = "sandbox")]
use social_studio::sandbox::Sandbox;
use social_studio::studio::{BootProgress, Studio, StudioOptions, ADMIN_TOKEN_FILE};
use social_studio_storage::{archive, SledStore, StoreConfig};
use tokio::sync::watch;

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
    /// How the log is written to stderr: `text` for people, `json` (one object a line)
    /// for a log collector.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "SOCIAL_STUDIO_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// A line for people: time, level, message, fields.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields.message` and the other
    /// fields, `target`, and the spans the event happened in.
    Json,
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
        /// Point every platform without credentials at a sandbox already running at URL
        /// (`social-studio-sandbox`), so that several engine processes share one.
        #[cfg(feature = "sandbox")]
        #[arg(long, value_name = "URL", conflicts_with = "sandbox")]
        sandbox_url: Option<url::Url>,
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
    /// Print a fresh master key (base64 of 32 random bytes) for SOCIAL_STUDIO_MASTER_KEY.
    NewMasterKey,
    /// Put a new master key first in the key file, the old one kept below it: the next
    /// start re-seals every grant under the new key. For keys kept in a file; with
    /// SOCIAL_STUDIO_MASTER_KEY, set the new key there and the old one in
    /// SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS instead.
    RotateMasterKey {
        /// TOML configuration file (also SOCIAL_STUDIO_CONFIG): where the key file is.
        #[arg(long, env = "SOCIAL_STUDIO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Put a new admin token first in the data directory's token file, the old ones
    /// still accepted below it; a running server takes it up on SIGHUP. With
    /// --end-transition, keep only the first token instead.
    RotateAdminToken {
        /// TOML configuration file (also SOCIAL_STUDIO_CONFIG): where the data directory is.
        #[arg(long, env = "SOCIAL_STUDIO_CONFIG")]
        config: Option<PathBuf>,
        /// Stop accepting the previous tokens: keep only the current one.
        #[arg(long)]
        end_transition: bool,
    },
    /// Write a backup archive of a running server's store (or of a stopped engine's data
    /// directory, with --from-data-dir) to FILE; the archive is checked before it is named.
    Backup {
        /// Where the archive goes (written beside it first, renamed when whole and checked).
        #[arg(long)]
        out: PathBuf,
        /// The running server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Data directory to read the admin token from when SOCIAL_STUDIO_ADMIN_TOKEN is unset.
        #[arg(long, default_value = "social-studio-data")]
        data_dir: PathBuf,
        /// Back up a stopped engine's data directory by opening its store directly (the
        /// master key as for `serve`: SOCIAL_STUDIO_MASTER_KEY or the key file in it).
        #[arg(long, conflicts_with = "url")]
        from_data_dir: Option<PathBuf>,
    },
    /// Make a new data directory from a backup archive (checked whole first). The engine
    /// opens it with the master key of the store that was backed up.
    Restore {
        /// The backup archive.
        #[arg(long)]
        from: PathBuf,
        /// The data directory to create: it must not exist or be empty.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Copy a stopped engine's sled store (`data_dir`) — or, with --from-archive, a backup
    /// archive of either backend — into the empty PostgreSQL database of `[store] url`,
    /// then check that the database holds what the source does.
    /// The configuration is the one the engine will run with on PostgreSQL
    /// (`store.backend = "postgres"`); the master key is the one the sled store is sealed
    /// with, in SOCIAL_STUDIO_MASTER_KEY. The data directory is left as it was.
    #[cfg(feature = "postgres")]
    MigrateStore {
        /// TOML configuration file (also SOCIAL_STUDIO_CONFIG).
        #[arg(long, env = "SOCIAL_STUDIO_CONFIG")]
        config: Option<PathBuf>,
        /// Copy this backup archive (of a sled or a PostgreSQL store, as `backup` writes
        /// them) instead of the data directory's store.
        #[arg(long)]
        from_archive: Option<PathBuf>,
    },
}

/// The log goes to stderr, whatever its format: stdout is for what a command answers
/// (`status`'s table, `backup`'s summary, a new master key), which a script reads.
fn init_tracing(quiet: bool, format: LogFormat) {
    let default = if quiet {
        "error"
    } else {
        "warn,social_studio=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // Colours for a person at a terminal; none in a file, journald or a pipe.
        LogFormat::Text => log
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => log.json().try_init(),
    };
}

/// Binds the configured address; the demo falls back to any free port.
async fn bind(addr: SocketAddr, fallback: bool) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if fallback => {
            tracing::warn!(%addr, error = %e, "{addr} is busy ({e}); using a free port instead");
            Ok(tokio::net::TcpListener::bind((addr.ip(), 0)).await?)
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// `serve`: binds, answers `/healthz` (and `/readyz` with the start's progress) at once,
/// opens the engine — a minute and more for a large store — and then serves the whole API
/// on the same listener.
async fn serve(config_file: Option<PathBuf>, sandbox: SandboxChoice) -> Result<()> {
    let mut config =
        Config::load(config_file.as_deref(), std::env::vars()).context("configuration")?;
    let listener = bind(config.listen, false).await?;
    let addr = listener.local_addr()?;
    let hangups = listen_for_hangups();
    let progress = BootProgress::new();
    let booting = Booting::new(progress.clone());
    // One signal for the server, the event streams and the start: fired on SIGINT/SIGTERM.
    let (stop, stopping) = watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        stop.send_replace(true);
    });
    let server = tokio::spawn({
        let app = booting.router();
        let stopping = fired(&stopping);
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopping)
                .await
        }
    });
    tracing::info!(
        %addr,
        "social-studio listening on http://{addr} (data in {}); /readyz says how far the start has come",
        config.data_dir.display()
    );
    let sandbox = start_sandbox(&mut config, sandbox).await?;
    let options = StudioOptions {
        boot_progress: Some(progress),
        ..StudioOptions::default()
    };
    let studio = tokio::select! {
        opened = Studio::open(config, options) => opened.context("opening the engine")?,
        // Stopped while starting: nothing has been accepted yet, so nothing is in flight.
        () = fired(&stopping) => {
            tracing::info!("shut down while starting");
            server.await.context("serving HTTP")?.context("serving HTTP")?;
            if let Some(s) = sandbox {
                s.shutdown().await;
            }
            return Ok(());
        }
    };
    let reloads = tokio::spawn(reload_admin_tokens_on_sighup(
        studio.clone(),
        config_file.clone(),
        hangups,
    ));
    booting
        .switch_to(social_studio::http::router_with_shutdown(
            studio.clone(),
            fired(&stopping),
        ))
        .context("serving HTTP")?;
    announce(&studio);
    server
        .await
        .context("serving HTTP")?
        .context("serving HTTP")?;
    signals.abort();
    reloads.abort();
    studio.shutdown().await;
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    Ok(())
}

/// Completes when `stopping` turns `true` (or its sender is gone).
fn fired(
    stopping: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stopping = stopping.clone();
    async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

/// Which sandbox `serve` points the platforms without credentials at, if any.
enum SandboxChoice {
    /// None: every platform is what the configuration says.
    Off,
    /// `--sandbox`: one started in this process.
    #[cfg(feature = "sandbox")]
    InProcess,
    /// `--sandbox-url`: one already running at this URL (`social-studio-sandbox`),
    /// shared with other engine processes.
    #[cfg(feature = "sandbox")]
    At(url::Url),
}

/// With `--sandbox`, starts the sandbox; with `--sandbox-url`, uses the one running there.
/// Either way, points every platform without credentials at it. A sandbox started here
/// runs until it is shut down or dropped.
#[cfg(feature = "sandbox")]
async fn start_sandbox(config: &mut Config, choice: SandboxChoice) -> Result<Option<Sandbox>> {
    match choice {
        SandboxChoice::Off => Ok(None),
        SandboxChoice::InProcess => {
            let sandbox = Sandbox::start().await.context("starting the sandbox")?;
            point_at_sandbox(config, &sandbox.base_url());
            Ok(Some(sandbox))
        }
        SandboxChoice::At(url) => {
            point_at_sandbox(config, url.as_str());
            Ok(None)
        }
    }
}

/// Points every platform without credentials at the sandbox at `base`, and says which.
/// Media may then be fetched from private addresses (`allow_private_media_urls`): the
/// sandbox serves its media on 127.0.0.1.
#[cfg(feature = "sandbox")]
fn point_at_sandbox(config: &mut Config, base: &str) {
    let base = base.trim_end_matches('/');
    let pointed = config.use_sandbox_for_unconfigured(base);
    config.allow_private_media_urls = true;
    tracing::info!(
        "sandbox: media may be fetched from private addresses (allow_private_media_urls)"
    );
    tracing::info!(
        "sandbox at {base} serves: {}",
        pointed
            .iter()
            .map(|p| p.id())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Built without the sandbox: there is no `--sandbox` to honour, so never a sandbox.
#[cfg(not(feature = "sandbox"))]
async fn start_sandbox(_config: &mut Config, choice: SandboxChoice) -> Result<Option<NoSandbox>> {
    match choice {
        SandboxChoice::Off => Ok(None),
    }
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

/// What an operator should know once the engine has started, through the log (so that in
/// `--log-format json` every line is JSON).
fn announce(studio: &Studio) {
    let notes = studio.startup_notes();
    tracing::info!(
        "store: {} (format {}) in {}",
        notes.store.backend,
        notes.store.format,
        notes.store.location
    );
    for line in &notes.store.opened {
        tracing::info!("store: {line}");
    }
    let unreadable = studio.unreadable(None);
    if !unreadable.is_empty() {
        tracing::warn!(
            unreadable = unreadable.len(),
            "store: {} stored records cannot be read; they are named in /v1/supervisor and the attention list",
            unreadable.len()
        );
    }
    if let Some(file) = &notes.generated_admin_token_file {
        // Where, never what: this output is the log under journald or a container.
        tracing::info!(
            "admin token generated: read it from {} (or set SOCIAL_STUDIO_ADMIN_TOKEN)",
            file.display()
        );
    }
    // A master key kept in a file beside the data: `Studio::open` has warned of it.
    if !notes.not_configured.is_empty() {
        tracing::info!(
            "not configured (they report not_configured): {}",
            notes
                .not_configured
                .iter()
                .map(|p| p.id())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
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
    tracing::info!("shutting down: finishing what is in flight");
}

/// SIGHUPs, listened for from the start: a SIGHUP's default action ends the process, and
/// one sent while the engine starts must not. Those received meanwhile are handled once it
/// has.
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn listen_for_hangups() -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(e) => {
            tracing::warn!(
                "SIGHUP cannot be handled here ({e}): admin tokens are read at start only"
            );
            None
        }
    }
}

#[cfg(not(unix))]
fn listen_for_hangups() -> Hangups {}

/// On every SIGHUP: reads the configuration (the file, and the environment as the process
/// has it) and the admin token file again and accepts the admin tokens they name from
/// then on. A reload that fails keeps the tokens as they were.
#[cfg(unix)]
async fn reload_admin_tokens_on_sighup(
    studio: Studio,
    config_file: Option<PathBuf>,
    hangups: Hangups,
) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        let reloaded = Config::load(config_file.as_deref(), std::env::vars())
            .context("configuration")
            .and_then(|c| {
                studio
                    .reload_admin_tokens(&c)
                    .context("reading the admin tokens")
            });
        match reloaded {
            Ok(tokens) => tracing::info!(
                "SIGHUP: admin tokens reloaded: the current token and {} previous ones are accepted",
                tokens.previous().len()
            ),
            Err(e) => tracing::error!("SIGHUP: admin tokens kept as they were: {e:#}"),
        }
    }
}

#[cfg(not(unix))]
async fn reload_admin_tokens_on_sighup(
    _studio: Studio,
    _config_file: Option<PathBuf>,
    _hangups: Hangups,
) {
}

fn rotate_master_key(config_file: Option<PathBuf>) -> Result<()> {
    if std::env::var_os(social_studio_storage::vault::MASTER_KEY_ENV).is_some() {
        bail!(
            "the master key comes from SOCIAL_STUDIO_MASTER_KEY, not a file: set it to a new key (`social-studio new-master-key` prints one) and SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS to the old one, then restart"
        );
    }
    let config = Config::load(config_file.as_deref(), std::env::vars()).context("configuration")?;
    let path = config.master_key_path();
    let done = social_studio_storage::vault::rotate_key_file(&path)
        .with_context(|| format!("rotating the master key in {}", path.display()))?;
    println!(
        "{}: new master key {} first, {} previous key(s) kept ({}).",
        path.display(),
        done.current,
        done.previous.len(),
        done.previous
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "Restart the server: at start it re-seals every grant under the new key and says when the rotation is finished; only then remove the other lines of the file."
    );
    Ok(())
}

fn rotate_admin_token(config_file: Option<PathBuf>, end_transition: bool) -> Result<()> {
    let config = Config::load(config_file.as_deref(), std::env::vars()).context("configuration")?;
    if config.admin_token.is_some() {
        bail!(
            "the admin token is set in the configuration (admin_token), not the token file: set the new token there and the old one in previous_admin_tokens, then send SIGHUP to the server (or restart it)"
        );
    }
    let done = social_studio::studio::rotate_token_file(&config.data_dir, end_transition)
        .context("rotating the admin token")?;
    // Where, never what: the token is read from the file.
    if end_transition {
        println!(
            "{}: only the current admin token is kept; {} previous one(s) remain.",
            done.path.display(),
            done.previous
        );
    } else {
        println!(
            "{}: a new admin token is on the first line; the {} older one(s) below it are still accepted.",
            done.path.display(),
            done.previous
        );
    }
    println!("Send SIGHUP to the running server (kill -HUP <pid>) to apply it without a restart.");
    Ok(())
}

async fn status(pen: String, url: String, data_dir: PathBuf) -> Result<()> {
    let token = admin_token(&data_dir)?;
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

/// The admin token: `SOCIAL_STUDIO_ADMIN_TOKEN`, else the file the server wrote in its
/// data directory.
fn admin_token(data_dir: &Path) -> Result<String> {
    match std::env::var("SOCIAL_STUDIO_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => Ok(t),
        // The current token is the file's first line; further lines are previous tokens.
        _ => std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))
            .map(|t| t.lines().next().unwrap_or_default().trim().to_string())
            .with_context(|| {
                format!(
                    "no SOCIAL_STUDIO_ADMIN_TOKEN and no {}",
                    data_dir.join(ADMIN_TOKEN_FILE).display()
                )
            }),
    }
}

/// `backup`: the archive goes to a temporary file beside `out`, is made durable and
/// checked whole, and only then renamed to `out` — a backup cut short or damaged on the
/// way never carries the final name.
async fn backup(
    out: PathBuf,
    url: String,
    data_dir: PathBuf,
    from_data_dir: Option<PathBuf>,
) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .with_context(|| format!("{} names no file", out.display()))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut partial = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".partial")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    match from_data_dir {
        Some(stopped) => {
            // Opening creates what is missing: never a new store, nor a new key beside data
            // sealed with another one.
            if !stopped.join("format").is_file() {
                bail!("{} is not an engine's data directory", stopped.display());
            }
            let has_key = std::env::var(social_studio_storage::vault::MASTER_KEY_ENV)
                .is_ok_and(|k| !k.is_empty())
                || stopped
                    .join(social_studio_storage::vault::MASTER_KEY_FILE)
                    .is_file();
            if !has_key {
                bail!(
                    "no master key: set SOCIAL_STUDIO_MASTER_KEY to the key {} was opened with",
                    stopped.display()
                );
            }
            let store = SledStore::open(&StoreConfig::new(&stopped)).with_context(|| {
                format!(
                    "cannot open the store in {} (is the engine running? then back up through it with --url)",
                    stopped.display()
                )
            })?;
            let file = partial.as_file_mut();
            tokio::task::block_in_place(|| store.backup_blocking(file))
                .context("writing the backup")?;
        }
        None => fetch_backup(&url, &data_dir, partial.as_file_mut()).await?,
    }
    let file = partial.as_file_mut();
    file.sync_all().context("making the backup durable")?;
    file.seek(std::io::SeekFrom::Start(0))?;
    let summary = archive::verify(std::io::BufReader::new(&mut *file))
        .context("the backup received does not check out; nothing was written under its name")?;
    partial
        .persist(&out)
        .with_context(|| format!("cannot name the backup {}", out.display()))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("making {} durable", dir.display()))?;
    println!(
        "backup written to {}: {} records, {} bytes ({} store, format {}), checked whole",
        out.display(),
        summary.records,
        summary.bytes,
        summary.header.backend,
        summary.header.store_format
    );
    println!(
        "it is useless without the master key the store is sealed with: keep the key, apart from the backup"
    );
    Ok(())
}

/// Streams `GET /v1/admin/backup` into `file`, checking the length the server announced.
async fn fetch_backup(url: &str, data_dir: &Path, file: &mut std::fs::File) -> Result<()> {
    let token = admin_token(data_dir)?;
    let mut answer = reqwest::Client::new()
        .get(format!("{}/v1/admin/backup", url.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = answer.status();
    if !status.is_success() {
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        bail!(
            "{status} {}: {}",
            body["error"]["code"].as_str().unwrap_or("error"),
            body["error"]["message"].as_str().unwrap_or("")
        );
    }
    let announced = answer.content_length();
    let mut received = 0u64;
    let mut out = std::io::BufWriter::new(file);
    while let Some(chunk) = answer
        .chunk()
        .await
        .context("the backup's download was cut off")?
    {
        received += chunk.len() as u64;
        out.write_all(&chunk).context("writing the backup")?;
    }
    out.flush().context("writing the backup")?;
    if let Some(expected) = announced {
        if expected != received {
            bail!("the backup's download was cut off: {received} of {expected} bytes");
        }
    }
    Ok(())
}

/// `restore`: a new data directory from an archive, checked whole before anything is
/// written.
fn restore(from: PathBuf, data_dir: PathBuf) -> Result<()> {
    let summary = SledStore::restore(&from, &data_dir).with_context(|| {
        format!(
            "cannot restore {} into {}",
            from.display(),
            data_dir.display()
        )
    })?;
    println!(
        "restored {} records into {} (a backup written at {})",
        summary.records,
        data_dir.display(),
        summary.header.written_at.to_rfc3339()
    );
    println!(
        "start the engine on it with the master key of the store that was backed up: SOCIAL_STUDIO_MASTER_KEY, or its {} copied into {} (another key is refused)",
        social_studio_storage::vault::MASTER_KEY_FILE,
        data_dir.display()
    );
    Ok(())
}

/// `migrate-store`: the configured data directory into the configured database.
#[cfg(feature = "postgres")]
async fn migrate_store(config_file: Option<PathBuf>, from_archive: Option<PathBuf>) -> Result<()> {
    use social_studio::config::Backend;
    use social_studio_storage::vault::{MASTER_KEY_ENV, MASTER_KEY_FILE};
    let config = Config::load(config_file.as_deref(), std::env::vars()).context("configuration")?;
    let (Backend::Postgres, Some(url)) = (config.store.backend, &config.store.url) else {
        bail!(
            "migrate-store copies into the database the engine will use: configure store.backend = \"postgres\" and store.url (SOCIAL_STUDIO_STORE_URL)"
        );
    };
    let Some(key) = std::env::var(MASTER_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
    else {
        let file = config.data_dir.join(MASTER_KEY_FILE);
        bail!(
            "set SOCIAL_STUDIO_MASTER_KEY to the master key the store in {} is sealed with{}: the engine on PostgreSQL reads it from there, the same on every node",
            config.data_dir.display(),
            if file.is_file() {
                format!(" (the first line of {})", file.display())
            } else {
                String::new()
            }
        );
    };
    let (keys, _) = social_studio_storage::MasterKeys::resolve(
        &config.data_dir,
        None,
        Some(&key),
        std::env::var(social_studio_storage::vault::PREVIOUS_MASTER_KEYS_ENV)
            .ok()
            .as_deref(),
    )
    .context("the master key")?;
    let (source, report) = match &from_archive {
        Some(archive) => (
            format!("the archive {}", archive.display()),
            social_studio::migrate::restore_archive(archive, url.expose(), &keys).await,
        ),
        None => (
            config.data_dir.display().to_string(),
            social_studio::migrate::migrate_store(&config.data_dir, url.expose(), &keys).await,
        ),
    };
    let report = report.with_context(|| format!("copying {source} into PostgreSQL"))?;
    println!(
        "copied {source} into {} ({} archive records), then checked: the database holds what the source holds",
        report.target, report.archive_records
    );
    for (kind, c) in &report.contents.kinds {
        println!("  {kind:<14} {:>10}  sha256 {}  equal", c.count, c.digest);
    }
    println!(
        "start `social-studio serve` with this configuration; {source} is left as it was (the engine on PostgreSQL does not read it)"
    );
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

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    ignore_file_size_signal();
    let cli = Cli::parse();
    // The demo narrates; logs would drown the story (RUST_LOG brings them back).
    #[cfg(feature = "sandbox")]
    let quiet = matches!(cli.command, Command::Demo { .. });
    #[cfg(not(feature = "sandbox"))]
    let quiet = false;
    let format = cli.log_format;
    init_tracing(quiet, format);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match format {
                // As `fn main() -> Result` would say it.
                LogFormat::Text => eprintln!("Error: {e:?}"),
                // A log collector reads every line of stderr as JSON.
                LogFormat::Json => tracing::error!("{e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            #[cfg(feature = "sandbox")]
            Command::Serve {
                config,
                sandbox,
                sandbox_url,
            } => {
                let choice = match (sandbox, sandbox_url) {
                    (_, Some(url)) => SandboxChoice::At(url),
                    (true, None) => SandboxChoice::InProcess,
                    (false, None) => SandboxChoice::Off,
                };
                serve(config, choice).await
            }
            #[cfg(not(feature = "sandbox"))]
            Command::Serve { config } => serve(config, SandboxChoice::Off).await,
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
            Command::NewMasterKey => {
                println!(
                    "{}",
                    social_studio_storage::MasterKey::generate()
                        .to_base64()
                        .as_str()
                );
                Ok(())
            }
            Command::RotateMasterKey { config } => rotate_master_key(config),
            Command::RotateAdminToken {
                config,
                end_transition,
            } => rotate_admin_token(config, end_transition),
            Command::Backup {
                out,
                url,
                data_dir,
                from_data_dir,
            } => backup(out, url, data_dir, from_data_dir).await,
            Command::Restore { from, data_dir } => restore(from, data_dir),
            #[cfg(feature = "postgres")]
            Command::MigrateStore {
                config,
                from_archive,
            } => migrate_store(config, from_archive).await,
        }
    })
}
