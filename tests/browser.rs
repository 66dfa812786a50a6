//! The engine's pages in a real headless Chromium (`tests/support/browser.rs`): the OAuth
//! callback page, today the one page the engine serves to a browser.
//!
//! Each test starts the engine over loopback HTTP with X on a fresh sandbox, and a
//! stand-in for the host application — a page on its own loopback origin, the engine's
//! `app_origin` — that opens the authorize URL in a popup the way an app does and listens
//! for the callback page's `postMessage`. Chromium then does what an author does: clicks
//! Connect, logs in and approves on the sandbox's consent page in the popup, and the
//! popup closes itself once it has told the opener.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/node.rs"]
#[allow(dead_code)] // only its npm install is used here (axe-core), not its server scripts
mod node;

use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use browser::{axe, Browser, BrowserOptions, Impact, Popups};
use fantoccini::{Client, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::config::{Config, CALLBACK_PATH};
use social_studio::sandbox::Sandbox;
use social_studio::studio::{Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_storage::Secret;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

const ADMIN_TOKEN: &str = "test-admin-token-browser-3b8e1d";
/// A seeded user of the sandbox's X, and the sandbox's one password.
const JANE: &str = "jane_writes";
const SANDBOX_PASSWORD: &str = "sandbox";
/// How long any awaited condition may take (a page load, a popup, a message).
const PATIENCE: Duration = Duration::from_secs(20);
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// The host application's page: a Connect button that opens the authorize URL (from its
/// own query string) in a popup, and a listener that keeps every message from the
/// engine's origin in `window.messages`. `#open-now` opens the popup as the page loads,
/// with no click: what Chromium's popup blocker stops.
const OPENER_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Host application</title></head>
<body><main>
<h1>Host application</h1>
<button id="connect" type="button">Connect X</button>
<p id="popup" role="status"></p>
<p id="outcome" role="status"></p>
</main>
<script>
var params = new URLSearchParams(location.search);
var engine = params.get('engine');
window.messages = [];
window.popup = 'not opened';
window.addEventListener('message', function (event) {
  if (event.origin !== engine) { return; }
  window.messages.push(event.data);
  document.getElementById('outcome').textContent = event.data.ok ? 'Connected' : 'Not connected';
});
function connect() {
  var opened = window.open(params.get('authorize'), 'social-studio-connect', 'popup,width=600,height=700');
  window.popup = opened === null ? 'blocked' : 'opened';
  document.getElementById('popup').textContent = opened === null ? 'The popup was blocked.' : 'The popup is open.';
}
document.getElementById('connect').addEventListener('click', connect);
if (location.hash === '#open-now') { connect(); }
</script>
</body></html>"#;

/// The engine on loopback with X on a fresh sandbox, and the host application's origin.
struct App {
    /// `http://127.0.0.1:PORT` of the engine.
    engine: String,
    /// `http://127.0.0.1:PORT` of the host application: the engine's `app_origin`.
    host: String,
    /// The test's own client for the admin API, beside the browser.
    http: reqwest::Client,
    /// Shut down at the end, so its actors stop with the test.
    studio: Studio,
    /// X and the other platforms the engine reaches; kept for as long as the engine.
    _sandbox: Sandbox,
    _data_dir: TempDir,
    /// Stop the host's server and the engine's.
    stop: Vec<oneshot::Sender<()>>,
}

impl App {
    async fn start() -> App {
        let (host, stop_host) =
            serve(Router::new().route("/", get(|| async { Html(OPENER_PAGE) }))).await;
        let sandbox = Sandbox::start().await.expect("the sandbox starts");
        let data_dir = TempDir::new().expect("a temporary data directory");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the engine");
        let addr = listener.local_addr().expect("the engine's address");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            admin_token: Some(Secret::new(ADMIN_TOKEN)),
            listen: addr,
            public_url: format!("http://{addr}"),
            app_origin: host.clone(),
            ..Config::default()
        };
        config.use_sandbox_for_unconfigured(&sandbox.base_url());
        let studio = Studio::open(config, StudioOptions::default())
            .await
            .expect("the engine opens");
        let (stop_engine, stopped) = oneshot::channel::<()>();
        tokio::spawn(social_studio::http::serve(
            studio.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        App {
            engine: format!("http://{addr}"),
            host,
            http: reqwest::Client::new(),
            studio,
            _sandbox: sandbox,
            _data_dir: data_dir,
            stop: vec![stop_host, stop_engine],
        }
    }

    /// A request to the admin API (an empty JSON body on a POST), and its JSON answer.
    async fn admin(&self, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.engine))
            .bearer_auth(ADMIN_TOKEN);
        if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let answer = request.send().await.expect("the engine answers");
        let status = answer.status();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// A fresh authorize URL for `pen` on X.
    async fn authorize(&self, pen: &str) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/v1/pen-names/{pen}/connections/x/authorize"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["authorize_url"]
            .as_str()
            .expect("an authorize_url")
            .to_owned()
    }

    /// The host application's page, set to open `authorize_url`; `fragment` is `""` or
    /// `"#open-now"`.
    fn opener_url(&self, authorize_url: &str, fragment: &str) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("authorize", authorize_url)
            .append_pair("engine", &self.engine)
            .finish();
        format!("{}/?{query}{fragment}", self.host)
    }

    /// The status of `pen`'s X connection, `None` when there is none.
    async fn x_status(&self, pen: &str) -> Option<String> {
        let (status, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/pen-names/{pen}/connections/x"),
            )
            .await;
        if status == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        Some(
            body["connection"]["status"]
                .as_str()
                .expect("a status")
                .to_owned(),
        )
    }

    async fn stop(mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        self.studio.shutdown().await;
    }
}

/// Serves `router` on a free loopback port until the sender is used or dropped.
async fn serve(router: Router) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    (base, stop)
}

/// Waits until the session has `count` windows and answers their handles.
async fn windows(client: &Client, count: usize) -> Vec<fantoccini::wd::WindowHandle> {
    let mut seen = 0;
    poll_until(PATIENCE, LOOK_AGAIN, async || {
        let handles = client.windows().await.expect("the window handles");
        seen = handles.len();
        (handles.len() == count).then_some(handles)
    })
    .await
    .unwrap_or_else(|| panic!("expected {count} windows, saw {seen}"))
}

/// A global of the page, read through WebDriver.
async fn page_value(client: &Client, expression: &str) -> Value {
    client
        .execute(&format!("return {expression};"), vec![])
        .await
        .unwrap_or_else(|e| panic!("cannot read {expression}: {e}"))
}

/// Logs in as `username` on the sandbox's consent page in the current window and clicks
/// "Authorize app".
async fn approve(client: &Client, username: &str) {
    let user = client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("input[name=username]"))
        .await
        .expect("the consent page's username field");
    user.clear().await.expect("the username field clears");
    user.send_keys(username).await.expect("a username typed");
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("the password field")
        .send_keys(SANDBOX_PASSWORD)
        .await
        .expect("a password typed");
    client
        .find(Locator::Css("button[name=decision][value=authorize]"))
        .await
        .expect("the Authorize button")
        .click()
        .await
        .expect("Authorize clicked");
}

/// Fails on any serious or critical axe-core violation of the current page.
async fn assert_accessible(client: &Client, page: &str) {
    let violations = axe(client).await;
    let serious: Vec<String> = violations
        .iter()
        .filter(|v| v.is_serious())
        .map(|v| v.to_string())
        .collect();
    assert!(
        serious.is_empty(),
        "{page} has serious accessibility violations:\n{}",
        serious.join("\n")
    );
}

/// Screenshots of the current page at 1280 and 375 pixels wide, `{name}-1280.png` and
/// `{name}-375.png`; checks the page is really laid out that wide, and leaves the window
/// at 1280.
async fn screenshots(browser: &Browser, name: &str) {
    for (width, height) in [(375, 812), (1280, 800)] {
        browser.resize(width, height).await;
        let inner = page_value(browser.client(), "window.innerWidth").await;
        assert_eq!(inner, json!(width), "the viewport of {name}");
        let overflow = page_value(
            browser.client(),
            "document.documentElement.scrollWidth > window.innerWidth",
        )
        .await;
        assert_eq!(
            overflow,
            json!(false),
            "{name} scrolls sideways at {width} px"
        );
        let path = browser.screenshot(&format!("{name}-{width}")).await;
        eprintln!("browser: saved {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_through_the_popup_tells_the_opener_and_connects() {
    let app = App::start().await;
    let browser = Browser::start(BrowserOptions::desktop().popups(Popups::Allowed)).await;
    let client = browser.client();

    let authorize_url = app.authorize("jane").await;
    client
        .goto(&app.opener_url(&authorize_url, ""))
        .await
        .expect("the host's page loads");
    let opener = client.window().await.expect("the opener's handle");
    client
        .find(Locator::Id("connect"))
        .await
        .expect("the Connect button")
        .click()
        .await
        .expect("Connect clicked");
    let handles = windows(client, 2).await;
    let popup = handles
        .into_iter()
        .find(|h| *h != opener)
        .expect("the popup's handle");
    client
        .switch_to_window(popup)
        .await
        .expect("into the popup");
    approve(client, JANE).await;

    // The callback page posts its message to the opener and closes itself.
    windows(client, 1).await;
    client
        .switch_to_window(opener)
        .await
        .expect("back to the opener");
    let messages = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let messages = page_value(client, "window.messages").await;
        (messages.as_array().is_some_and(|m| !m.is_empty())).then_some(messages)
    })
    .await
    .expect("the opener receives the callback page's message");
    assert_eq!(messages.as_array().map(Vec::len), Some(1), "{messages}");
    let message = &messages[0];
    assert_eq!(message["type"], "social-studio-connect", "{message}");
    assert_eq!(message["ok"], true, "{message}");
    assert_eq!(message["pen_name"], "jane", "{message}");
    assert_eq!(message["platform"], "x", "{message}");
    assert_eq!(message["status"], "active", "{message}");
    assert_eq!(message["error"], Value::Null, "{message}");
    let outcome = client
        .find(Locator::Id("outcome"))
        .await
        .expect("the outcome line")
        .text()
        .await
        .expect("its text");
    assert_eq!(outcome, "Connected");
    assert_eq!(app.x_status("jane").await.as_deref(), Some("active"));

    // The same callback page in a tab of its own (no opener) stays and shows the
    // outcome: accessible, and laid out at a desktop's and a phone's width.
    let authorize_url = app.authorize("pat").await;
    client.goto(&authorize_url).await.expect("the consent page");
    approve(client, JANE).await;
    let heading = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let url = client.current_url().await.ok()?;
        if !url.path().ends_with(CALLBACK_PATH) {
            return None;
        }
        client
            .find(Locator::Css("h1"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await
    .expect("the browser lands on the callback page");
    assert_eq!(heading, "Connected");
    assert_eq!(app.x_status("pat").await.as_deref(), Some("active"));
    assert_accessible(client, "the callback page (connected)").await;
    screenshots(&browser, "oauth-callback-connected").await;

    // A refusal is a page too: named, accessible, readable on a phone.
    client
        .goto(&format!(
            "{}{CALLBACK_PATH}?state=forged&code=forged",
            app.engine
        ))
        .await
        .expect("the callback page with a forged state");
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .expect("the heading")
        .text()
        .await
        .expect("its text");
    assert_eq!(heading, "Could not connect");
    assert_accessible(client, "the callback page (refused)").await;
    screenshots(&browser, "oauth-callback-refused").await;

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_popup_is_seen_by_the_opener() {
    let app = App::start().await;
    let browser = Browser::start(BrowserOptions::phone().popups(Popups::Blocked)).await;
    let client = browser.client();
    let authorize_url = app.authorize("jane").await;

    // Opened as the page loads, with no click: the blocker stops it.
    client
        .goto(&app.opener_url(&authorize_url, "#open-now"))
        .await
        .expect("the host's page loads");
    assert_eq!(page_value(client, "window.popup").await, json!("blocked"));
    assert_eq!(windows(client, 1).await.len(), 1);
    let said = client
        .find(Locator::Id("popup"))
        .await
        .expect("the popup line")
        .text()
        .await
        .expect("its text");
    assert_eq!(said, "The popup was blocked.");
    assert_eq!(app.x_status("jane").await.as_deref(), Some("not_connected"));

    // A click is a gesture the blocker lets through.
    client
        .find(Locator::Id("connect"))
        .await
        .expect("the Connect button")
        .click()
        .await
        .expect("Connect clicked");
    assert_eq!(page_value(client, "window.popup").await, json!("opened"));
    assert_eq!(windows(client, 2).await.len(), 2);

    browser.close().await;
    app.stop().await;
}

/// A live process, as `/proc` shows it.
#[derive(Debug)]
struct Process {
    pid: u32,
    name: String,
    group: u32,
    command: String,
}

/// The live processes (zombies left out), from `/proc`.
fn processes() -> Vec<Process> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let Some(group) = fields.get(2).and_then(|g| g.parse::<u32>().ok()) else {
            continue;
        };
        if fields.first() == Some(&"Z") {
            continue;
        }
        let command = std::fs::read(entry.path().join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        found.push(Process {
            pid,
            name: stat[open + 1..close].to_owned(),
            group,
            command,
        });
    }
    found
}

/// The live processes of a browser: those in its process group, and those that name its
/// directory (Chromium's crash handler leaves the group, but names the directory).
fn processes_of(group: u32, dir: &str) -> Vec<Process> {
    processes()
        .into_iter()
        .filter(|p| p.group == group || p.command.contains(dir))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_browser_leaves_no_process() {
    let browser = Browser::start(BrowserOptions::desktop()).await;
    browser
        .client()
        .goto("about:blank")
        .await
        .expect("a page loads");
    let group = browser.process_group();
    let dir = browser.dir().to_string_lossy().into_owned();
    let running = processes_of(group, &dir);
    let names: Vec<(u32, &str, u32)> = running
        .iter()
        .map(|p| (p.pid, p.name.as_str(), p.group))
        .collect();
    assert!(
        running
            .iter()
            .any(|p| p.name == "chromedriver" && p.group == group),
        "chromedriver runs in its own process group: {names:?}"
    );
    assert!(
        running
            .iter()
            .any(|p| p.name == "chromium" && p.group == group),
        "Chromium runs in chromedriver's process group, so killing the group ends it: {names:?}"
    );

    // No close: what a failing test's unwinding does.
    drop(browser);
    let gone = poll_until(PATIENCE, LOOK_AGAIN, async || {
        processes_of(group, &dir).is_empty().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "processes outlived the browser: {:?}",
        processes_of(group, &dir)
    );
}

/// Set in the child process of `a_killed_test_process_leaves_no_browser`.
const HOLDER: &str = "BROWSER_TEST_HOLD_A_BROWSER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_test_process_leaves_no_browser() {
    let exe = std::env::current_exe().expect("this test binary");
    let mut holder = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "hold_a_browser_until_killed",
            "--include-ignored",
            "--nocapture",
        ])
        .env(HOLDER, "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the holder process");
    let mut lines = BufReader::new(holder.stdout.take().expect("piped stdout")).lines();
    let held = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("the holder's stdout") {
            if let Some(held) = line.strip_prefix("HOLDING ") {
                return Some(held.to_owned());
            }
        }
        None
    })
    .await
    .expect("the holder started a browser within 2 minutes")
    .expect("the holder said which browser it holds");
    let (group, dir) = held.split_once(' ').expect("HOLDING <group> <dir>");
    let group: u32 = group.parse().expect("a process group");
    assert!(
        processes_of(group, dir)
            .iter()
            .any(|p| p.name == "chromium"),
        "the holder's Chromium runs"
    );

    // No drop runs: the process is gone at once, as under a CI timeout.
    holder.start_kill().expect("SIGKILL to the holder");
    holder.wait().await.expect("the holder's end");
    let gone = poll_until(PATIENCE, LOOK_AGAIN, async || {
        processes_of(group, dir).is_empty().then_some(())
    })
    .await;
    let left = processes_of(group, dir);
    // What a killed process cannot remove: its temporary directory.
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        gone.is_some(),
        "processes outlived the killed test process: {left:?}"
    );
}

/// The child process of `a_killed_test_process_leaves_no_browser`: starts a browser,
/// says which, and waits to be killed. Run any other way, it does nothing.
#[tokio::test]
#[ignore = "a helper that a_killed_test_process_leaves_no_browser runs in a child process"]
async fn hold_a_browser_until_killed() {
    if std::env::var_os(HOLDER).is_none() {
        return;
    }
    let browser = Browser::start(BrowserOptions::desktop()).await;
    browser
        .client()
        .goto("about:blank")
        .await
        .expect("a page loads");
    println!(
        "HOLDING {} {}",
        browser.process_group(),
        browser.dir().display()
    );
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accessibility_check_finds_what_is_wrong() {
    // A button with no name and an image with no text: both critical for axe-core.
    let page = "<!doctype html><html lang=\"en\"><head><title>Broken</title></head><body>\
                <main><h1>Broken</h1><button type=\"button\"></button>\
                <img src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\"></main></body></html>";
    let (host, stop) =
        serve(Router::new().route("/", get(move || async move { Html(page) }))).await;
    let browser = Browser::start(BrowserOptions::desktop()).await;
    browser.client().goto(&host).await.expect("the page loads");
    let violations = axe(browser.client()).await;
    let found: Vec<(&str, Option<Impact>)> = violations
        .iter()
        .map(|v| (v.id.as_str(), v.impact))
        .collect();
    for rule in ["button-name", "image-alt"] {
        let violation = violations
            .iter()
            .find(|v| v.id == rule)
            .unwrap_or_else(|| panic!("axe-core finds {rule}: {found:?}"));
        assert!(violation.is_serious(), "{violation}");
        assert!(!violation.targets.is_empty(), "{violation}");
    }
    browser.close().await;
    let _ = stop.send(());
}
