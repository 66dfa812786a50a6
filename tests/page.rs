//! The Social Accounts page (`src/http/page/`): its page links, its cookie and CSRF token
//! over plain HTTP, and the author's flows in a real headless Chromium
//! (`tests/support/browser.rs`), all against the sandbox.
//!
//! Each test starts the engine over loopback HTTP on a fresh sandbox, with `app_origin`
//! another origin than the engine's, so that the page receives the callback's message
//! only because the page's own origin is one the callback posts to. Screenshots of every
//! state, at 1280 and 375 px, land under `target/browser-screenshots/page-*.png`.
//! `SOCIAL_STUDIO_PAGE_PATIENCE_SECS` (default 30) bounds every awaited condition.

#[path = "support/browser.rs"]
#[allow(dead_code)] // the process-group probes are tests/browser.rs's
mod browser;
#[path = "support/node.rs"]
#[allow(dead_code)] // only its npm install is used here (axe-core), not its server scripts
mod node;

use std::time::Duration;

use browser::{axe, Browser, BrowserOptions, Popups};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, Locator};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::config::Config;
use social_studio::sandbox::Sandbox;
use social_studio::studio::{Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_storage::{Secret, Timestamp};
use tempfile::TempDir;
use tokio::sync::oneshot;

const ADMIN_TOKEN: &str = "test-admin-token-page-7c41f0";
/// A seeded user of the sandbox's X (and its id), and the sandbox's one password.
const JANE: &str = "jane_writes";
const JANE_ID: &str = "2244994945";
const SANDBOX_PASSWORD: &str = "sandbox";
/// The sandbox's other X user.
const OTHER_X: &str = "other_account";
/// The sandbox's Bluesky account.
const BLUESKY_HANDLE: &str = "jane.sandbox.test";
/// The host application's origin: not the engine's.
const APP_ORIGIN: &str = "http://app.example.test";
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// How long any awaited condition may take.
fn patience() -> Duration {
    Duration::from_secs(
        std::env::var("SOCIAL_STUDIO_PAGE_PATIENCE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    )
}

/// The engine on loopback with every platform on a fresh sandbox.
struct App {
    engine: String,
    http: reqwest::Client,
    studio: Studio,
    sandbox: Sandbox,
    _data_dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl App {
    async fn start() -> App {
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
            app_origin: APP_ORIGIN.to_owned(),
            ..Config::default()
        };
        config.use_sandbox_for_unconfigured(&sandbox.base_url());
        // One platform left unconfigured: shown as unavailable, not hidden.
        config
            .platforms
            .remove(&social_studio_storage::Platform::Youtube);
        let studio = Studio::open(config, StudioOptions::default())
            .await
            .expect("the engine opens");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(social_studio::http::serve(
            studio.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        App {
            engine: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            studio,
            sandbox,
            _data_dir: data_dir,
            stop: Some(stop),
        }
    }

    /// A request to the admin API and its JSON answer.
    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.engine))
            .bearer_auth(ADMIN_TOKEN);
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("the engine answers");
        let status = answer.status();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// A fresh page link for `pen`.
    async fn page_link(&self, pen: &str) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/v1/pen-names/{pen}/page-links"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["url"].as_str().expect("a url").to_owned()
    }

    /// The connection of `pen` on `platform`, as the admin API shows it.
    async fn connection(&self, pen: &str, platform: &str) -> Value {
        let (status, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/pen-names/{pen}/connections/{platform}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["connection"].clone()
    }

    /// Schedules a post on X for `pen`, due at `at`.
    async fn schedule_x(&self, pen: &str, text: &str, at: Timestamp) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/v1/pen-names/{pen}/posts"),
                json!({"platform": "x", "text": text, "scheduled_at": at.to_rfc3339()}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["posts"][0]["id"].as_str().expect("an id").to_owned()
    }

    async fn post_state(&self, pen: &str, id: &str) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/pen-names/{pen}/posts/{id}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["state"].as_str().unwrap_or_default().to_owned()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.studio.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Page links, the cookie, the CSRF token, the headers: plain HTTP.
// ---------------------------------------------------------------------------------------

/// The `name=value` of a `Set-Cookie` header, and the whole header.
fn cookie_of(answer: &reqwest::Response) -> (String, String) {
    let header = answer
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a Set-Cookie header")
        .to_owned();
    let pair = header.split(';').next().unwrap_or_default().to_owned();
    (pair, header)
}

/// The CSRF token the page was served with.
fn csrf_of(html: &str) -> String {
    let start = html
        .find("data-csrf=\"")
        .expect("the page carries its CSRF token")
        + 11;
    let end = start + html[start..].find('"').expect("the token's end");
    html[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_link_opens_once_and_its_cookie_reaches_only_its_pen_name() {
    let app = App::start().await;

    // Minting needs the admin token.
    let refused = app
        .http
        .post(format!("{}/v1/pen-names/jane/page-links", app.engine))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .admin(
            reqwest::Method::POST,
            "/v1/pen-names/jane/page-links",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["url"].as_str().expect("a url");
    assert!(
        url.starts_with(&format!("{}/page-link/", app.engine)),
        "{url}"
    );
    let expires = Timestamp::parse_rfc3339(body["expires_at"].as_str().expect("expires_at"))
        .expect("an RFC 3339 time");
    let ttl = Timestamp::now_system().until(expires);
    assert!(
        ttl > Duration::from_secs(800) && ttl <= Duration::from_secs(900),
        "the default lifetime is 15 minutes: {ttl:?}"
    );

    // A GET — a link preview, a mail scanner, or the browser's first step — spends
    // nothing: it answers the form that opens the link, and the script that submits it.
    let path = url.strip_prefix(&app.engine).expect("the engine's URL");
    for _ in 0..2 {
        let offered = app.http.get(url).send().await.expect("an answer");
        assert_eq!(offered.status(), StatusCode::OK);
        assert!(offered.headers().get(SET_COOKIE).is_none());
        let csp = offered.headers()["content-security-policy"]
            .to_str()
            .expect("a CSP")
            .to_owned();
        assert!(csp.contains("form-action 'self'"), "{csp}");
        let html = offered.text().await.expect("HTML");
        assert!(
            html.contains(&format!("action=\"{path}\"")) && html.contains("method=\"post\""),
            "{html}"
        );
        assert!(html.contains("src=\"/page-assets/open.js\""), "{html}");
        assert!(!html.contains("<script>"), "no inline script: {html}");
    }
    let script = app
        .http
        .get(format!("{}/page-assets/open.js", app.engine))
        .send()
        .await
        .expect("the script");
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script
        .text()
        .await
        .expect("text")
        .contains("getElementById('open-link').submit()"));

    // Opened once, by the form's POST: a cookie for jane's page alone, and on to the page.
    let opened = app.http.post(url).send().await.expect("an answer");
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(opened.headers()[LOCATION], "/page/jane");
    let (jane_cookie, header) = cookie_of(&opened);
    for part in ["HttpOnly", "SameSite=Lax", "Path=/page/jane"] {
        assert!(header.contains(part), "{header}");
    }
    assert!(
        !header.contains("Secure"),
        "plain http on loopback: {header}"
    );
    // Twice: refused.
    let again = app.http.post(url).send().await.expect("an answer");
    assert_eq!(again.status(), StatusCode::GONE);
    assert!(again.headers().get(SET_COOKIE).is_none());

    // The page, with its headers.
    let page = app
        .http
        .get(format!("{}/page/jane", app.engine))
        .header(COOKIE, &jane_cookie)
        .send()
        .await
        .expect("the page");
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("a CSP")
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.expect("the page's HTML");
    assert!(!html.contains("<script>"), "no inline script");
    assert!(html.contains("Social Accounts"));
    let jane_csrf = csrf_of(&html);

    // Without the cookie, or with jane's cookie on pat's page: nothing.
    let bare = app
        .http
        .get(format!("{}/page/jane", app.engine))
        .send()
        .await
        .expect("an answer");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let pat_link = app.page_link("pat").await;
    let pat_opened = app.http.post(&pat_link).send().await.expect("an answer");
    let (pat_cookie, _) = cookie_of(&pat_opened);
    let pat_page = app
        .http
        .get(format!("{}/page/pat", app.engine))
        .header(COOKIE, &pat_cookie)
        .send()
        .await
        .expect("pat's page");
    let pat_csrf = csrf_of(&pat_page.text().await.expect("pat's page"));
    for (path, method) in [
        ("/page/jane", reqwest::Method::GET),
        ("/page/jane/events", reqwest::Method::GET),
        ("/page/jane/connect/x", reqwest::Method::POST),
        ("/page/jane/disconnect/x", reqwest::Method::POST),
        ("/page/jane/verify/x", reqwest::Method::POST),
        ("/page/jane/app-password", reqwest::Method::POST),
        ("/page/jane/targets/pinterest", reqwest::Method::POST),
    ] {
        let answer = app
            .http
            .request(method, format!("{}{path}", app.engine))
            .header(COOKIE, &pat_cookie)
            .header("x-csrf-token", &pat_csrf)
            .json(&json!({"identifier": "x", "app_password": "y"}))
            .send()
            .await
            .expect("an answer");
        assert_eq!(
            answer.status(),
            StatusCode::UNAUTHORIZED,
            "pat's cookie on {path}"
        );
    }

    // A change without the CSRF token, or with another page's: refused.
    for (path, token) in [
        ("/page/jane/connect/x", None),
        ("/page/jane/connect/x", Some(pat_csrf.as_str())),
        ("/page/jane/targets/pinterest", None),
    ] {
        let mut request = app
            .http
            .post(format!("{}{path}", app.engine))
            .header(COOKIE, &jane_cookie)
            .json(&json!({"targets": ["549755813001"]}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let answer = request.send().await.expect("an answer");
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // With both: an authorize URL whose callback brings this tab back to the page.
    let answer = app
        .http
        .post(format!("{}/page/jane/connect/x", app.engine))
        .header(COOKIE, &jane_cookie)
        .header("x-csrf-token", &jane_csrf)
        .json(&json!({}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.expect("JSON");
    assert!(body["authorize_url"]
        .as_str()
        .is_some_and(|u| u.starts_with(&app.sandbox.base_url())));

    // A page link is no OAuth state, and an OAuth state no page link.
    let link = app.page_link("jane").await;
    let token = link.rsplit('/').next().expect("a token");
    let callback = app
        .http
        .get(format!(
            "{}/v1/oauth/callback?state={token}&code=forged",
            app.engine
        ))
        .send()
        .await
        .expect("an answer");
    assert_eq!(callback.status(), StatusCode::BAD_REQUEST);
    assert!(callback
        .text()
        .await
        .expect("HTML")
        .contains("invalid_state"));
    let (_, start) = app
        .admin(
            reqwest::Method::POST,
            "/v1/pen-names/jane/connections/x/authorize",
            json!({}),
        )
        .await;
    let state = start["state"].as_str().expect("a state");
    let opened = app
        .http
        .post(format!("{}/page-link/{state}", app.engine))
        .send()
        .await
        .expect("an answer");
    assert_eq!(opened.status(), StatusCode::GONE);
    assert!(opened.headers().get(SET_COOKIE).is_none());

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_under_a_hosts_prefix_the_page_keeps_to_it() {
    let app = App::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the host");
    let host = format!("http://{}", listener.local_addr().expect("an address"));
    let nested =
        axum::Router::new().nest("/social", social_studio::http::router(app.studio.clone()));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, nested)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });

    let link = app.page_link("jane").await;
    let token = link.rsplit('/').next().expect("a token");
    let offered = app
        .http
        .get(format!("{host}/social/page-link/{token}"))
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("HTML");
    assert!(
        offered.contains(&format!("action=\"/social/page-link/{token}\"")),
        "{offered}"
    );
    assert!(
        offered.contains("src=\"/social/page-assets/open.js\""),
        "{offered}"
    );
    let opened = app
        .http
        .post(format!("{host}/social/page-link/{token}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(opened.headers()[LOCATION], "/social/page/jane");
    let (cookie, header) = cookie_of(&opened);
    assert!(header.contains("Path=/social/page/jane"), "{header}");
    let page = app
        .http
        .get(format!("{host}/social/page/jane"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("the page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("HTML");
    assert!(
        html.contains("src=\"/social/page-assets/page.js\""),
        "{html}"
    );
    assert!(html.contains("href=\"/social/page-assets/page.css\""));
    let script = app
        .http
        .get(format!("{host}/social/page-assets/page.js"))
        .send()
        .await
        .expect("the script");
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/javascript")));

    // A connect begun here comes back here: the state holds the nested page's path.
    let csrf = csrf_of(&html);
    let answer = app
        .http
        .post(format!("{host}/social/page/jane/connect/x"))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .expect("an answer");
    let body: Value = answer.json().await.expect("JSON");
    let authorize_url =
        url::Url::parse(body["authorize_url"].as_str().expect("a URL")).expect("a URL");
    let state = authorize_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state");
    let callback = app
        .http
        .get(format!(
            "{host}/social/v1/oauth/callback?state={state}&error=access_denied"
        ))
        .send()
        .await
        .expect("the callback");
    let html = callback.text().await.expect("HTML");
    assert!(
        html.contains("/social/page/jane?connect=x\\u0026outcome=access_denied"),
        "{html}"
    );
    assert!(html.contains("href=\"/social/page/jane?connect=x&amp;outcome=access_denied\""));

    let _ = stop.send(());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// In the browser.
// ---------------------------------------------------------------------------------------

/// A value of the page, read through WebDriver.
async fn page_value(client: &Client, expression: &str) -> Value {
    client
        .execute(&format!("return {expression};"), vec![])
        .await
        .unwrap_or_else(|e| panic!("cannot read {expression}: {e}"))
}

/// Waits until `expression` is true in the current page.
async fn until_true(client: &Client, expression: &str, what: &str) {
    poll_until(patience(), LOOK_AGAIN, async || {
        (client
            .execute(&format!("return !!({expression});"), vec![])
            .await
            .ok()?
            == json!(true))
        .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{what}: `{expression}` never held"));
}

/// The text of the first element matching `css`, `""` when there is none.
async fn text_of(client: &Client, css: &str) -> String {
    page_value(
        client,
        &format!(
            "(document.querySelector({}) || {{textContent: ''}}).textContent.replace(/\\s+/g, ' ').trim()",
            serde_json::to_string(css).expect("JSON")
        ),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

async fn click(client: &Client, css: &str) {
    // Found and clicked together, again if the list was re-read in between (the element
    // found is then gone from the page).
    let mut last = String::new();
    let clicked = poll_until(patience(), LOOK_AGAIN, async || {
        let element = client.find(Locator::Css(css)).await.ok()?;
        match element.click().await {
            Ok(()) => Some(()),
            Err(e) => {
                last = e.to_string();
                None
            }
        }
    })
    .await;
    assert!(clicked.is_some(), "{css} not clicked: {last}");
}

const TAB: char = '\u{e004}';
const ENTER: char = '\u{e007}';

/// One key pressed and released, where the focus is.
async fn press(client: &Client, key: char) {
    let keys = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client
        .perform_actions(keys)
        .await
        .unwrap_or_else(|e| panic!("the key {key:?} not pressed: {e}"));
}

/// Waits until the session has `count` windows and answers their handles.
async fn windows(client: &Client, count: usize) -> Vec<fantoccini::wd::WindowHandle> {
    poll_until(patience(), LOOK_AGAIN, async || {
        let handles = client.windows().await.ok()?;
        (handles.len() == count).then_some(handles)
    })
    .await
    .unwrap_or_else(|| panic!("expected {count} windows"))
}

/// Logs in as `username` on the sandbox's consent page in the current window and
/// approves.
async fn approve(client: &Client, username: &str) {
    let user = client
        .wait()
        .at_most(patience())
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

/// In the popup that the page opened: approve as `username`, and back to the page once
/// the popup has closed itself.
async fn approve_in_popup(client: &Client, page: &fantoccini::wd::WindowHandle, username: &str) {
    let handles = windows(client, 2).await;
    let popup = handles
        .into_iter()
        .find(|h| h != page)
        .expect("the popup's handle");
    client
        .switch_to_window(popup)
        .await
        .expect("into the popup");
    approve(client, username).await;
    windows(client, 1).await;
    client
        .switch_to_window(page.clone())
        .await
        .expect("back to the page");
}

/// Fails on any serious or critical axe-core violation of the current page.
async fn assert_accessible(client: &Client, state: &str) {
    let serious: Vec<String> = axe(client)
        .await
        .iter()
        .filter(|v| v.is_serious())
        .map(|v| v.to_string())
        .collect();
    assert!(
        serious.is_empty(),
        "the page ({state}) has serious accessibility violations:\n{}",
        serious.join("\n")
    );
}

/// Screenshots at 375 and 1280 px (`page-{name}-{width}.png`), each checked for
/// sideways scrolling; the window is left at 1280.
async fn screenshots(browser: &Browser, name: &str) {
    for (width, height) in [(375, 812), (1280, 900)] {
        browser.resize(width, height).await;
        until_true(
            browser.client(),
            &format!("window.innerWidth === {width}"),
            "the resize",
        )
        .await;
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
        browser
            .client()
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .expect("scrolled to the top");
        let path = browser.screenshot(&format!("page-{name}-{width}")).await;
        eprintln!("browser: saved {}", path.display());
    }
}

/// Opens a fresh page link for `pen` in the browser and waits for the page's stream.
async fn open_page(app: &App, client: &Client, pen: &str) {
    let link = app.page_link(pen).await;
    client.goto(&link).await.expect("the page link opens");
    until_true(
        client,
        "document.body && document.body.getAttribute('data-live') === 'open'",
        "the page's event stream opens",
    )
    .await;
    // Kept until the page is loaded again: proof that what follows happens without a reload.
    client
        .execute("window.sameDocument = true;", vec![])
        .await
        .expect("a marker");
}

async fn status_of(client: &Client, platform: &str) -> String {
    page_value(
        client,
        &format!("document.getElementById('platform-{platform}').getAttribute('data-status')"),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_revoke_banner_reconnect_and_disconnect_in_the_browser() {
    let app = App::start().await;
    let browser = Browser::start(BrowserOptions::desktop().popups(Popups::Allowed)).await;
    let client = browser.client();
    open_page(&app, client, "jane").await;
    let page = client.window().await.expect("the page's handle");

    // Nine platforms: YouTube unconfigured and shown as unavailable, the rest with what
    // they require.
    assert_eq!(
        page_value(client, "document.querySelectorAll('#accounts > li').length").await,
        json!(9)
    );
    assert_eq!(status_of(client, "youtube").await, "not_configured");
    assert!(text_of(client, "#platform-youtube")
        .await
        .contains("Unavailable"));
    assert!(text_of(client, "#platform-facebook").await.contains("Page"));
    assert!(text_of(client, "#platform-instagram")
        .await
        .contains("professional account"));
    assert!(text_of(client, "#platform-tiktok")
        .await
        .contains("creator"));
    assert!(text_of(client, "#platform-bluesky")
        .await
        .contains("app password"));
    assert_accessible(client, "nothing connected").await;
    screenshots(&browser, "empty").await;

    // + Connect Account → X → Connect → the popup → approve: the list updates in place.
    click(client, "#connect-open").await;
    client
        .find(Locator::Css("#connect-platform"))
        .await
        .expect("the platform list")
        .select_by_value("x")
        .await
        .expect("X chosen");
    click(client, "#connect-go").await;
    approve_in_popup(client, &page, JANE).await;
    until_true(
        client,
        "document.getElementById('platform-x').getAttribute('data-status') === 'active'",
        "X shows connected",
    )
    .await;
    assert_eq!(page_value(client, "window.sameDocument").await, json!(true));
    assert!(text_of(client, "#notice").await.contains("X is connected"));
    assert!(text_of(client, "#platform-x").await.contains(JANE));
    assert_eq!(app.connection("jane", "x").await["status"], "active");
    assert_accessible(client, "X connected").await;
    screenshots(&browser, "connected").await;

    // Check connection: the result in place.
    click(client, "#platform-x [data-action=verify]").await;
    until_true(
        client,
        "document.querySelector('[data-result=x]').textContent.indexOf('works') >= 0",
        "the check's result",
    )
    .await;

    // Send a test post: published, and said so in place.
    click(client, "#platform-x [data-action=test-post]").await;
    until_true(
        client,
        "/The test post was|error/.test(document.querySelector('[data-result=x]').innerHTML)",
        "the test post's result",
    )
    .await;
    assert_eq!(
        text_of(client, "[data-result=x]").await,
        "The test post was published on X."
    );

    // The platform revokes the grant; two posts come due: they pause, and the banner
    // appears without a reload.
    assert!(
        app.sandbox
            .x()
            .revoke_user_grants(JANE_ID)
            .expect("revoked")
            > 0
    );
    let soon = Timestamp::now_system().saturating_add(Duration::from_secs(2));
    let first = app.schedule_x("jane", "one", soon).await;
    let second = app.schedule_x("jane", "two", soon).await;
    until_true(
        client,
        "document.querySelector('[data-banner=x]') && /2 posts are paused/.test(document.querySelector('[data-banner=x]').textContent)",
        "the banner names the two paused posts",
    )
    .await;
    assert_eq!(page_value(client, "window.sameDocument").await, json!(true));
    assert!(text_of(client, "[data-banner=x]")
        .await
        .starts_with("X needs reconnecting — 2 posts are paused until you do"));
    assert_eq!(status_of(client, "x").await, "expired");
    assert!(text_of(client, "#platform-x")
        .await
        .contains("2 posts paused"));
    assert_eq!(app.post_state("jane", &first).await, "paused");
    assert_accessible(client, "X expired").await;
    screenshots(&browser, "banner").await;

    // Reconnect from the banner: it clears, and the posts publish.
    click(client, "[data-banner=x] [data-action=connect]").await;
    approve_in_popup(client, &page, JANE).await;
    until_true(
        client,
        "!document.querySelector('[data-banner=x]') && document.getElementById('platform-x').getAttribute('data-status') === 'active'",
        "the banner clears",
    )
    .await;
    for id in [&first, &second] {
        poll_until(patience(), LOOK_AGAIN, async || {
            (app.post_state("jane", id).await == "published").then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("post {id} publishes after the reconnect"));
    }
    assert_eq!(page_value(client, "window.sameDocument").await, json!(true));
    screenshots(&browser, "reconnected").await;

    // Disconnect: the confirmation counts the scheduled posts that will fail.
    let later = Timestamp::now_system().saturating_add(Duration::from_secs(86_400));
    for text in ["three", "four", "five"] {
        app.schedule_x("jane", text, later).await;
    }
    until_true(
        client,
        "/3 posts scheduled/.test(document.getElementById('platform-x').textContent)",
        "the card counts three scheduled posts",
    )
    .await;
    click(client, "#platform-x [data-action=disconnect]").await;
    until_true(
        client,
        "document.querySelector('[data-result=x] [data-affected]')",
        "the confirmation",
    )
    .await;
    assert_eq!(
        text_of(client, "[data-result=x] [data-affected]").await,
        "Disconnect X? 3 scheduled posts will fail."
    );
    assert_accessible(client, "disconnect confirmation").await;
    screenshots(&browser, "disconnect-confirm").await;
    click(client, "[data-result=x] [data-action=confirm-disconnect]").await;
    until_true(
        client,
        "document.getElementById('platform-x').getAttribute('data-status') === 'not_connected'",
        "X shows disconnected",
    )
    .await;
    assert_eq!(app.connection("jane", "x").await["status"], "not_connected");

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_popup_offers_this_tab_and_brings_the_author_back() {
    let app = App::start().await;
    let browser = Browser::start(BrowserOptions::phone().popups(Popups::Blocked)).await;
    let client = browser.client();
    open_page(&app, client, "jane").await;

    // The page opens its window at once, inside the click, so Chromium's blocker lets it
    // through (and so does `--block-new-web-contents`, tried: a click's window still
    // opens). Where `window.open` gives nothing back — the in-app browsers of social apps,
    // strict blockers and extensions — the page must offer this tab instead: such a
    // browser is what the test stands in for below.
    click(client, "#connect-open").await;
    client
        .find(Locator::Css("#connect-platform"))
        .await
        .expect("the platform list")
        .select_by_value("x")
        .await
        .expect("X chosen");
    // A browser whose `window.open` returns null.
    client
        .execute("window.open = function () { return null; };", vec![])
        .await
        .expect("the blocker");
    click(client, "#connect-go").await;
    until_true(
        client,
        "document.getElementById('same-tab-link')",
        "the same-tab link",
    )
    .await;
    assert!(text_of(client, "#notice").await.contains("blocked"));
    assert_eq!(windows(client, 1).await.len(), 1);
    assert_accessible(client, "popup blocked").await;
    screenshots(&browser, "popup-blocked").await;

    // The link, in this tab: consent, then back on the page with the outcome.
    click(client, "#same-tab-link").await;
    approve(client, JANE).await;
    until_true(
        client,
        "location.pathname === '/page/jane' && document.getElementById('platform-x') && document.getElementById('platform-x').getAttribute('data-status') === 'active'",
        "back on the page, connected",
    )
    .await;
    assert!(text_of(client, "#notice").await.contains("X is connected"));
    screenshots(&browser, "same-tab-back").await;

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluesky_with_an_app_password_and_x_with_the_keyboard_alone() {
    let app = App::start().await;
    let browser = Browser::start(BrowserOptions::desktop().popups(Popups::Allowed)).await;
    let client = browser.client();
    open_page(&app, client, "jane").await;
    let page = client.window().await.expect("the page's handle");

    // Keyboard only: Tab to "+ Connect Account", Enter, type X in the list, Tab to
    // Connect, Enter.
    let mut reached = false;
    for _ in 0..10 {
        press(client, TAB).await;
        if page_value(client, "document.activeElement.id").await == json!("connect-open") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches + Connect Account");
    press(client, ENTER).await;
    until_true(
        client,
        "document.activeElement.id === 'connect-platform'",
        "the platform list takes the focus",
    )
    .await;
    press(client, 'x').await;
    until_true(
        client,
        "document.getElementById('connect-platform').value === 'x'",
        "X chosen by its letter",
    )
    .await;
    press(client, TAB).await;
    assert_eq!(
        page_value(client, "document.activeElement.id").await,
        json!("connect-go")
    );
    press(client, ENTER).await;
    approve_in_popup(client, &page, JANE).await;
    until_true(
        client,
        "document.getElementById('platform-x').getAttribute('data-status') === 'active'",
        "X connected from the keyboard",
    )
    .await;

    // Connecting X again as another account: refused with both names, then replaced on
    // purpose.
    client
        .find(Locator::Css("#connect-platform"))
        .await
        .expect("the platform list")
        .select_by_value("x")
        .await
        .expect("X chosen");
    click(client, "#connect-go").await;
    approve_in_popup(client, &page, OTHER_X).await;
    until_true(
        client,
        "document.querySelector('#notice [data-action=replace]')",
        "the wrong-account refusal",
    )
    .await;
    let said = text_of(client, "#notice").await;
    assert!(
        said.contains(JANE) && said.contains(OTHER_X),
        "both accounts named: {said}"
    );
    assert_accessible(client, "wrong account").await;
    screenshots(&browser, "wrong-account").await;
    assert!(app.connection("jane", "x").await["account"]["handle"]
        .as_str()
        .is_some_and(|h| h.contains(JANE)));
    click(client, "#notice [data-action=replace]").await;
    approve_in_popup(client, &page, OTHER_X).await;
    until_true(
        client,
        "/other_account/.test(document.getElementById('platform-x').textContent)",
        "X replaced by the other account",
    )
    .await;
    assert_eq!(status_of(client, "x").await, "active");

    // Bluesky: its handle and an app password, in the page's form.
    let password = app
        .sandbox
        .bluesky()
        .create_app_password(BLUESKY_HANDLE, "studio-page")
        .expect("an app password");
    client
        .find(Locator::Css("#connect-platform"))
        .await
        .expect("the platform list")
        .select_by_value("bluesky")
        .await
        .expect("Bluesky chosen");
    until_true(
        client,
        "!document.getElementById('bluesky-form').hidden",
        "the app-password form shows",
    )
    .await;
    assert!(text_of(client, "#bluesky-form")
        .await
        .contains("App passwords"));
    assert_accessible(client, "the Bluesky form").await;
    screenshots(&browser, "bluesky-form").await;
    client
        .find(Locator::Id("bluesky-identifier"))
        .await
        .expect("the handle field")
        .send_keys(BLUESKY_HANDLE)
        .await
        .expect("a handle typed");
    client
        .find(Locator::Id("bluesky-password"))
        .await
        .expect("the password field")
        .send_keys(&password)
        .await
        .expect("a password typed");
    click(client, "#bluesky-form button[type=submit]").await;
    until_true(
        client,
        "document.getElementById('platform-bluesky').getAttribute('data-status') === 'active'",
        "Bluesky connected",
    )
    .await;
    assert!(text_of(client, "#notice")
        .await
        .contains("Bluesky is connected"));
    assert_eq!(
        page_value(client, "document.getElementById('bluesky-password').value").await,
        json!("")
    );
    assert_eq!(app.connection("jane", "bluesky").await["status"], "active");

    // A second pen name's page in the same browser sees none of this, and its cookie
    // cannot act on jane's.
    open_page(&app, client, "pat").await;
    assert_eq!(status_of(client, "x").await, "not_connected");
    assert_eq!(status_of(client, "bluesky").await, "not_connected");
    let answer = page_value(
        client,
        "(function () { var r = new XMLHttpRequest(); r.open('POST', '/page/jane/disconnect/x', false); \
         r.setRequestHeader('Content-Type', 'application/json'); \
         r.setRequestHeader('X-CSRF-Token', document.body.getAttribute('data-csrf')); \
         r.send('{\"confirm\": true}'); return r.status; })()",
    )
    .await;
    // The browser holds jane's cookie too (its path is jane's page): but pat's CSRF
    // token is not jane's.
    assert_eq!(answer, json!(403));
    assert_eq!(app.connection("jane", "x").await["status"], "active");

    browser.close().await;
    app.stop().await;
}

const SPACE: char = '\u{e00d}';
/// The sandbox's Pinterest boards of `jane_writes`.
const BOOK_COVERS: &str = "549755813001";
const WRITING_DESK: &str = "549755813002";

/// Presses Tab until the element `expression` names has the focus.
async fn tab_to(client: &Client, expression: &str, what: &str) {
    for _ in 0..80 {
        press(client, TAB).await;
        if page_value(
            client,
            &format!("document.activeElement === ({expression})"),
        )
        .await
            == json!(true)
        {
            return;
        }
    }
    panic!("Tab never reached {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_shows_the_picture_and_the_author_chooses_where_posts_go() {
    let app = App::start().await;
    let browser = Browser::start(BrowserOptions::desktop().popups(Popups::Allowed)).await;
    let client = browser.client();
    open_page(&app, client, "jane").await;
    let page = client.window().await.expect("the page's handle");

    // X through the popup: its card shows the account's picture.
    click(client, "#connect-open").await;
    client
        .find(Locator::Css("#connect-platform"))
        .await
        .expect("the platform list")
        .select_by_value("x")
        .await
        .expect("X chosen");
    click(client, "#connect-go").await;
    approve_in_popup(client, &page, JANE).await;
    until_true(
        client,
        "document.getElementById('platform-x').getAttribute('data-status') === 'active'",
        "X shows connected",
    )
    .await;
    let picture = app.connection("jane", "x").await["account"]["picture"]
        .as_str()
        .expect("the sandbox's X gives a picture")
        .to_owned();
    // The sandbox's picture URLs are the platform's own CDN's (https, not served over
    // loopback): the `src` is checked, and that the card never shows a broken image —
    // either the picture loaded, or it gave way to the initials.
    assert_eq!(
        page_value(
            client,
            "document.querySelector('#platform-x img[data-avatar]').getAttribute('src')"
        )
        .await,
        json!(picture)
    );
    let alt = page_value(
        client,
        "document.querySelector('#platform-x img[data-avatar]').alt",
    )
    .await;
    assert!(
        alt.as_str()
            .is_some_and(|a| a.starts_with("Picture of ") && a.ends_with(" on X")),
        "{alt}"
    );
    until_true(
        client,
        "(function () { var img = document.querySelector('#platform-x img[data-avatar]'); \
         var initials = document.querySelector('#platform-x .initials'); \
         return img.complete && img.naturalWidth > 0 && !img.hidden && initials.hidden \
             || img.hidden && !initials.hidden && initials.textContent.length > 0; })()",
        "the picture loads, or the initials stand in for it",
    )
    .await;

    // Pinterest through the popup: two boards, none chosen — the card asks.
    client
        .find(Locator::Css("#connect-platform"))
        .await
        .expect("the platform list")
        .select_by_value("pinterest")
        .await
        .expect("Pinterest chosen");
    click(client, "#connect-go").await;
    approve_in_popup(client, &page, JANE).await;
    until_true(
        client,
        "document.querySelector('[data-ask=pinterest]')",
        "the card asks where posts go",
    )
    .await;
    assert!(text_of(client, "[data-ask=pinterest]")
        .await
        .starts_with("Choose where posts go"));
    assert_eq!(
        page_value(
            client,
            "document.querySelectorAll('form[data-targets=pinterest] input[name=target]:checked').length"
        )
        .await,
        json!(0)
    );
    assert_eq!(
        app.connection("jane", "pinterest").await["chosen_targets"],
        json!([])
    );
    assert_accessible(client, "choose where posts go").await;
    screenshots(&browser, "choose-targets").await;
    // The card itself, at 375 px (the README's picture of it).
    browser.resize(375, 812).await;
    until_true(client, "window.innerWidth === 375", "the resize").await;
    client
        .execute(
            "document.getElementById('platform-pinterest').scrollIntoView();",
            vec![],
        )
        .await
        .expect("the card in view");
    browser.screenshot("page-choose-targets-card-375").await;
    browser.resize(1280, 900).await;

    // Saving nothing is refused in place, in the author's words.
    click(
        client,
        "form[data-targets=pinterest] [data-action=save-targets]",
    )
    .await;
    until_true(
        client,
        "/Tick at least one/.test(document.querySelector('[data-result=pinterest]').textContent)",
        "the refusal of an empty choice",
    )
    .await;
    assert_eq!(
        app.connection("jane", "pinterest").await["chosen_targets"],
        json!([])
    );

    // Both boards, with the keyboard alone: Tab to the first, Space, Tab, Space, Tab to
    // Save, Enter.
    client
        .execute(
            "document.activeElement.blur(); window.scrollTo(0, 0);",
            vec![],
        )
        .await
        .expect("the focus back at the top");
    let first = "document.querySelector('form[data-targets=pinterest] input[name=target]')";
    tab_to(client, first, "the first board").await;
    press(client, SPACE).await;
    press(client, TAB).await;
    press(client, SPACE).await;
    press(client, TAB).await;
    assert_eq!(
        page_value(client, "document.activeElement.getAttribute('data-action')").await,
        json!("save-targets")
    );
    press(client, ENTER).await;
    poll_until(patience(), LOOK_AGAIN, async || {
        let chosen = app.connection("jane", "pinterest").await["chosen_targets"].clone();
        (chosen == json!([BOOK_COVERS, WRITING_DESK])).then_some(())
    })
    .await
    .expect("the API shows both boards chosen");
    until_true(
        client,
        "!document.querySelector('[data-ask=pinterest]') && document.querySelector('[data-chosen=pinterest]') \
         && /Saved/.test(document.querySelector('[data-result=pinterest]').textContent)",
        "the card shows the choice saved",
    )
    .await;
    assert_eq!(
        text_of(client, "[data-chosen=pinterest]").await,
        "Posts go to Book covers, Writing desk."
    );
    assert_eq!(page_value(client, "window.sameDocument").await, json!(true));
    assert_accessible(client, "targets chosen").await;
    screenshots(&browser, "targets-chosen").await;

    // A pin naming no board: one post per chosen board.
    let later = Timestamp::now_system().saturating_add(Duration::from_secs(86_400));
    let (status, body) = app
        .admin(
            reqwest::Method::POST,
            "/v1/pen-names/jane/posts",
            json!({
                "platform": "pinterest",
                "kind": "pin",
                "title": "The cover of book two",
                "text": "Out in the spring",
                "media": [{"url": "https://example.com/covers/book-two.jpg", "kind": "image", "alt": "A blue book cover"}],
                "scheduled_at": later.to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut boards: Vec<&str> = body["posts"]
        .as_array()
        .expect("the posts")
        .iter()
        .map(|p| p["target"].as_str().unwrap_or_default())
        .collect();
    boards.sort_unstable();
    assert_eq!(boards, vec![BOOK_COVERS, WRITING_DESK], "{body}");

    // Once the card has followed the two posts' events: a choice made elsewhere (the
    // API) shows without a reload, from its own event.
    until_true(
        client,
        "/2 posts scheduled/.test(document.getElementById('platform-pinterest').textContent)",
        "the card counts the two pins",
    )
    .await;
    let (status, body) = app
        .admin(
            reqwest::Method::PUT,
            "/v1/pen-names/jane/connections/pinterest/targets",
            json!({"targets": [WRITING_DESK]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_true(
        client,
        "document.querySelector('[data-chosen=pinterest]') && \
         document.querySelector('[data-chosen=pinterest]').textContent === 'Posts go to Writing desk.'",
        "the card follows the targets_chosen event",
    )
    .await;
    assert_eq!(
        page_value(
            client,
            "Array.prototype.map.call(document.querySelectorAll('form[data-targets=pinterest] input:checked'), function (b) { return b.value; })"
        )
        .await,
        json!([WRITING_DESK])
    );
    assert_eq!(page_value(client, "window.sameDocument").await, json!(true));

    browser.close().await;
    app.stop().await;
}
