//! A real headless Chromium for the tests, driven over WebDriver with fantoccini.
//! Included with `#[path]`, beside `node.rs` (which installs axe-core), by the test
//! binaries that use it.
//!
//! - **The browser comes from Debian's packages** `chromium` and `chromium-driver`
//!   (`/usr/bin/chromium`, `/usr/bin/chromedriver`). When they are missing and the test
//!   runs as root, the first [`Browser::start`] installs them with
//!   `apt-get install -y --no-install-recommends` (running `apt-get update` first only
//!   when the install finds no package lists), holding a file lock so that test binaries
//!   running at the same time install once; when they are missing and the test is not
//!   root, it fails naming the packages.
//! - **Each [`Browser`] is its own chromedriver** on a free loopback port (awaited on its
//!   `/status`, never slept for) and one session with headless Chromium in a fresh
//!   temporary directory (its profile, and its configuration and cache homes, so that
//!   nothing is written under the user's home). [`Browser::close`] ends the session;
//!   dropping a `Browser` — at the end of a test or while a failing one unwinds — kills
//!   chromedriver's whole process group, Chromium included (its crash handler, which
//!   leaves the group, exits with it). chromedriver runs under a small `sh` watchdog holding the
//!   test process's end of a pipe on its stdin, so a test binary killed outright leaves no
//!   browser running either.
//! - [`BrowserOptions`] chooses the window's size ([`BrowserOptions::desktop`], 1280 px
//!   wide; [`BrowserOptions::phone`], 375 px; [`Browser::resize`] changes it later) and
//!   whether Chromium's popup blocker is on ([`Popups`]).
//! - [`Browser::screenshot`] saves a PNG of the viewport under
//!   `target/browser-screenshots/` (the target directory is `CARGO_TARGET_DIR` when set).
//! - [`axe`] runs axe-core, pinned in `tests/browser/` and installed with `npm ci` on
//!   first use, in the current page and answers its violations with their impact.
//!
//! Waiting uses tokio's clock: start a browser before any `tokio::time::pause`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Debian's packages, and the files that show each is installed.
const PACKAGES: [(&str, &str); 2] = [
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
];
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Serialises the install across test binaries (threads of one binary share a `OnceLock`).
const INSTALL_LOCK: &str = "social-studio-browser-install.lock";
/// What apt-get says when it has no package lists to install from.
const NO_LISTS: [&str; 2] = ["Unable to locate package", "has no installation candidate"];

/// How long chromedriver may take to answer `/status` on a busy two-core machine.
const DRIVER_READY_WITHIN: Duration = Duration::from_secs(30);
const LOOK_AGAIN: Duration = Duration::from_millis(25);
/// Another process may take the free port between our probe and chromedriver's bind.
const PORT_TRIES: usize = 5;
/// The flags every session gets: headless, nothing that reaches beyond the loopback
/// servers of the test, no first-run or sync noise, and `/tmp` instead of a small
/// `/dev/shm` in containers. `--no-sandbox`: tests run as root in CI, where Chromium's
/// sandbox refuses to start. The resolver rule answers every host but `localhost` and
/// `127.0.0.1` with "not found" inside Chromium, so a page that names another host (the
/// sandbox's account pictures carry the platforms' real CDN addresses) makes no DNS query
/// and no connection beyond the loopback: tests talk only to 127.0.0.1.
const CHROMIUM_FLAGS: &[&str] = &[
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// The npm package the accessibility check injects, pinned in `tests/browser/`.
const AXE_SCRIPT: &str = "axe-core/axe.min.js";

/// Starts chromedriver in the background and kills the whole process group (the shell,
/// chromedriver and every Chromium process) once stdin closes: the drop, or the test
/// binary dying in any way. A background job's stdin is /dev/null unless redirected,
/// hence the copy on fd 3.
const WATCHDOG: &str = r#"exec 3<&0
"$@" </dev/null &
driver=$!
(read -r _ <&3; kill -KILL 0) &
wait "$driver""#;

/// Whether Chromium's popup blocker is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Popups {
    /// `--disable-popup-blocking`: `window.open` opens a window even without a click.
    Allowed,
    /// Chromium's default: `window.open` without a user's gesture (a click, a key)
    /// returns `null` and opens nothing; one in answer to a click still opens.
    Blocked,
}

/// How a session starts.
#[derive(Debug, Clone, Copy)]
pub struct BrowserOptions {
    /// The window's size in CSS pixels, width then height.
    pub window: (u32, u32),
    /// Whether `window.open` without a click is stopped, as most authors' browsers do.
    pub popups: Popups,
}

impl BrowserOptions {
    /// A desktop window, 1280 × 800, popups allowed.
    pub const fn desktop() -> BrowserOptions {
        BrowserOptions {
            window: (1280, 800),
            popups: Popups::Allowed,
        }
    }

    /// A phone-sized window, 375 × 812, popups allowed.
    pub const fn phone() -> BrowserOptions {
        BrowserOptions {
            window: (375, 812),
            popups: Popups::Allowed,
        }
    }

    /// The same window with the popup blocker on or off.
    pub const fn popups(self, popups: Popups) -> BrowserOptions {
        BrowserOptions { popups, ..self }
    }
}

/// One headless Chromium session over its own chromedriver.
pub struct Browser {
    client: Client,
    driver: Driver,
    /// Everything of this browser on disk: Chromium's profile (`profile/`), its
    /// configuration and cache homes (`config/`, `cache/`: crash reports go there rather
    /// than under the user's home), and chromedriver's log. Declared after the driver, so
    /// removed once the processes that write to it are gone.
    dir: TempDir,
}

impl Browser {
    /// Installs Chromium if it must, starts chromedriver and opens a session; panics
    /// with the reason when it cannot.
    pub async fn start(options: BrowserOptions) -> Browser {
        tokio::task::spawn_blocking(ensure_installed)
            .await
            .unwrap_or_else(|e| panic!("the install of Chromium did not finish: {e}"))
            .unwrap_or_else(|why| panic!("{why}"));
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("social-studio-chromium-")
            .tempdir()
            .unwrap_or_else(|e| panic!("no temporary directory for Chromium: {e}"));
        let driver = Driver::start(dir.path()).await;
        let capabilities = capabilities(&options, &dir.path().join("profile"));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver at {} opened no Chromium session: {e}\n{}",
                    driver.url,
                    driver.log_tail()
                )
            });
        eprintln!(
            "browser: chromedriver and headless Chromium started in {:?}",
            started.elapsed()
        );
        Browser {
            client,
            driver,
            dir,
        }
    }

    /// The WebDriver client of the session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resizes the window to `width` × `height` CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("the window could not be resized to {width}×{height}: {e}"));
    }

    /// Saves a PNG of the viewport as `target/browser-screenshots/{name}.png` and
    /// answers its path. `name` is letters, digits, `-` and `_`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "a screenshot's name is letters, digits, - and _: {name:?}"
        );
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("no screenshot {name}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// The process group chromedriver and Chromium run in (the watchdog's id).
    pub fn process_group(&self) -> u32 {
        self.driver.watchdog.id()
    }

    /// The temporary directory that holds this browser's profile, homes and log; every
    /// process of the browser names it on its command line.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    pub async fn close(self) {
        if let Err(e) = self.client.clone().close().await {
            panic!(
                "the Chromium session did not close: {e}\n{}",
                self.driver.log_tail()
            );
        }
    }
}

/// The session's capabilities: Debian's Chromium with [`CHROMIUM_FLAGS`], the window
/// size, a fresh profile, and the popup blocker on or off.
fn capabilities(options: &BrowserOptions, profile: &Path) -> serde_json::Map<String, Value> {
    let (width, height) = options.window;
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
    args.push(format!("--window-size={width},{height}"));
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut chrome = json!({ "binary": CHROMIUM, "args": args });
    match options.popups {
        Popups::Allowed => {
            // chromedriver adds it by default as well; named here so that `Allowed` does
            // not rest on that default.
            if let Some(args) = chrome["args"].as_array_mut() {
                args.push(json!("--disable-popup-blocking"));
            }
        }
        // chromedriver turns the blocker off unless told not to add its switch.
        Popups::Blocked => chrome["excludeSwitches"] = json!(["disable-popup-blocking"]),
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), chrome);
    capabilities
}

/// `target/browser-screenshots`, under `CARGO_TARGET_DIR` when it is set (relative to
/// the workspace, as cargo reads it when run from there).
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    };
    target.join("browser-screenshots")
}

/// chromedriver under its watchdog, in a process group of its own.
struct Driver {
    /// `http://127.0.0.1:PORT`.
    url: String,
    watchdog: Child,
    /// The watchdog's stdin: dropping it kills the group.
    stop: Option<ChildStdin>,
    /// chromedriver's own log, quoted when a session cannot start.
    log: PathBuf,
}

impl Driver {
    /// Starts chromedriver with its log in `dir`, and `dir/config` and `dir/cache` as
    /// the configuration and cache homes of the Chromium it starts.
    async fn start(dir: &Path) -> Driver {
        let log = dir.join("chromedriver.log");
        let mut refusals = Vec::new();
        for _ in 0..PORT_TRIES {
            let port = free_port();
            let mut watchdog = Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("chromedriver-watchdog")
                .arg(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{CHROMEDRIVER} could not start: {e}"));
            let stop = watchdog.stdin.take();
            let url = format!("http://127.0.0.1:{port}");
            match ready(&url, &mut watchdog).await {
                Ok(()) => {
                    return Driver {
                        url,
                        watchdog,
                        stop,
                        log,
                    }
                }
                Err(why) => {
                    kill_group(&mut watchdog);
                    refusals.push(format!("port {port}: {why}\n{}", log_tail(&log)));
                }
            }
        }
        panic!(
            "chromedriver did not start in {PORT_TRIES} tries:\n{}",
            refusals.join("\n")
        )
    }

    /// The last lines chromedriver logged.
    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        drop(self.stop.take());
        kill_group(&mut self.watchdog);
        if std::thread::panicking() {
            eprintln!(
                "---- chromedriver {} log ----\n{}",
                self.url,
                self.log_tail()
            );
        }
    }
}

/// Kills the process group the watchdog leads (chromedriver and Chromium are in it) and
/// reaps the watchdog.
fn kill_group(watchdog: &mut Child) {
    if let Ok(pid) = i32::try_from(watchdog.id()) {
        // SAFETY: killpg has no memory preconditions; the group is the watchdog's own
        // (process_group(0)), which this process has not reaped yet, so its id cannot
        // have been reused.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    let _ = watchdog.wait();
}

/// Waits until chromedriver at `url` answers `/status` with `ready: true`; an error if
/// it exits first or does not answer within [`DRIVER_READY_WITHIN`].
async fn ready(url: &str, watchdog: &mut Child) -> Result<(), String> {
    let http = reqwest::Client::new();
    let status = format!("{url}/status");
    let mut last = String::from("no answer yet");
    let answered = social_studio::wait::poll_until(DRIVER_READY_WITHIN, LOOK_AGAIN, async || {
        if let Ok(Some(exit)) = watchdog.try_wait() {
            return Some(Err(format!("chromedriver exited with {exit}")));
        }
        match http.get(&status).send().await {
            Ok(answer) => match answer.json::<Value>().await {
                Ok(body) if body.pointer("/value/ready") == Some(&Value::Bool(true)) => {
                    Some(Ok(()))
                }
                Ok(body) => {
                    last = format!("not ready: {body}");
                    None
                }
                Err(e) => {
                    last = format!("no JSON from /status: {e}");
                    None
                }
            },
            Err(e) => {
                last = e.to_string();
                None
            }
        }
    })
    .await;
    answered.unwrap_or_else(|| {
        Err(format!(
            "chromedriver did not answer {status} within {DRIVER_READY_WITHIN:?}: {last}"
        ))
    })
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Checks that Chromium and chromedriver are installed, installing them under root.
/// Once per test binary: concurrent callers wait for the first and share its outcome.
fn ensure_installed() -> Result<(), String> {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    OUTCOME.get_or_init(install).clone()
}

fn missing() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect()
}

fn install() -> Result<(), String> {
    if missing().is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "the browser tests need Debian's packages {} ({CHROMIUM}, {CHROMEDRIVER}), \
             and {} not installed; the tests install them only when run as root. \
             Install them: apt-get install --no-install-recommends chromium chromium-driver",
            package_list(),
            match missing().as_slice() {
                [one] => format!("{one} is"),
                _ => "neither is".to_owned(),
            }
        ));
    }
    let lock_path = std::env::temp_dir().join(INSTALL_LOCK);
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open the install lock {}: {e}", lock_path.display()))?;
    let mut lock = fd_lock::RwLock::new(file);
    let _held = lock
        .write()
        .map_err(|e| format!("cannot take the install lock {}: {e}", lock_path.display()))?;
    // Another test binary may have installed them while this one waited.
    if missing().is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut answer = apt_get(&[
        "install",
        "-y",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ])?;
    if !answer.status.success() && NO_LISTS.iter().any(|s| text(&answer).contains(s)) {
        let update = apt_get(&["update"])?;
        if !update.status.success() {
            return Err(format!(
                "`apt-get update` failed ({}):\n{}",
                update.status,
                text(&update)
            ));
        }
        answer = apt_get(&[
            "install",
            "-y",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
        ])?;
    }
    if !answer.status.success() || !missing().is_empty() {
        return Err(format!(
            "`apt-get install chromium chromium-driver` failed ({}), or left {} missing:\n{}",
            answer.status,
            missing().join(" and "),
            text(&answer)
        ));
    }
    eprintln!(
        "browser: installed {} in {:?}",
        package_list(),
        started.elapsed()
    );
    Ok(())
}

fn package_list() -> String {
    PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .collect::<Vec<_>>()
        .join(" and ")
}

fn apt_get(args: &[&str]) -> Result<Output, String> {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`apt-get {}` could not start: {e}", args.join(" ")))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// How much an accessibility violation hurts, in axe-core's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    Minor,
    Moderate,
    Serious,
    Critical,
}

/// One rule axe-core found broken on the page.
#[derive(Debug, Clone, Deserialize)]
pub struct Violation {
    /// The rule, e.g. `color-contrast`.
    pub id: String,
    /// axe-core leaves it out only for rules that never fail; `None` then.
    pub impact: Option<Impact>,
    /// What the rule asks, in a sentence.
    pub help: String,
    #[serde(rename = "helpUrl")]
    pub help_url: String,
    /// The CSS selectors of the elements that break it.
    pub targets: Vec<String>,
}

impl Violation {
    /// Serious or critical: what the tests refuse.
    pub fn is_serious(&self) -> bool {
        self.impact >= Some(Impact::Serious)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let impact = self
            .impact
            .map(|i| format!("{i:?}").to_lowercase())
            .unwrap_or_else(|| "unrated".into());
        write!(
            f,
            "{} ({impact}): {} — {} <{}>",
            self.id,
            self.help,
            self.targets.join(", "),
            self.help_url
        )
    }
}

/// Runs axe-core in the page `client` is on and answers every violation it finds.
/// The script is injected through WebDriver, which no Content-Security-Policy of the
/// page applies to.
pub async fn axe(client: &Client) -> Vec<Violation> {
    let dir = super::node::peer_dir("browser");
    super::node::ensure_node_modules(&dir, AXE_SCRIPT, "the accessibility check (axe-core)");
    let path = dir.join("node_modules").join(AXE_SCRIPT);
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let script = format!(
        "{source}\n;var done = arguments[arguments.length - 1];\
         axe.run(document, {{resultTypes: ['violations']}}).then(function (r) {{\
           done({{violations: r.violations.map(function (v) {{\
             return {{id: v.id, impact: v.impact || null, help: v.help, helpUrl: v.helpUrl,\
                      targets: v.nodes.map(function (n) {{ return n.target.join(' '); }})}};\
           }})}});\
         }}, function (e) {{ done({{error: String(e)}}); }});"
    );
    let answer = client
        .execute_async(&script, vec![])
        .await
        .unwrap_or_else(|e| panic!("axe-core could not run in the page: {e}"));
    if let Some(error) = answer.get("error") {
        panic!("axe-core failed in the page: {error}");
    }
    serde_json::from_value(answer["violations"].clone()).unwrap_or_else(|e| {
        panic!("axe-core answered what is not a list of violations ({e}): {answer}")
    })
}
