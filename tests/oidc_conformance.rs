//! Conformance of the engine's OAuth 2.0 core (`platforms::oauth`) against an independent,
//! certified authorization server: `oidc-provider` 9, run by `tests/oidc/server.mjs` on
//! loopback (see `tests/oidc/README.md` for its flags and the HTTP flow it serves).
//!
//! Every test starts its own server on port 0 and drives it over real HTTP in real time:
//! the authorization code flow through its login and consent pages, the token exchange,
//! refreshes with rotation through the engine's actors, revocation, and the refusals the
//! engine must classify exactly. The platform port here (`OidcPlatform`) is a thin test
//! adapter whose token calls are the shared `OAuthClient`; identity (`/me`) and publishing
//! are trivial, because the point is the OAuth core.
//!
//! Node.js and npm are required: `tests/oidc/node_modules` is installed with `npm ci` on
//! first use, and a missing `node`/`npm` fails the test with a message saying so.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use social_studio::platforms::oauth::{
    ClientAuth, OAuthClient, OAuthProfile, RefreshTokens, TokenError,
};
use social_studio::platforms::outbound;
use social_studio::platforms::{ConnectError, PlatformSettings};
use social_studio::wait::poll_until;
use social_studio_actors::{
    Clock, Engine, EngineConfig, EngineError, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, ConnectionKey, ConnectionStatus, EventKind, EventPage, Grant, PenName,
    Platform, Post, Reason, ReasonCode, Receipt, Secret, SledStore, StateLabel, StoreConfig,
    Timestamp,
};

const CLIENT_ID: &str = "studio-test";
const CLIENT_SECRET: &str = "studio-secret";
/// Never served: the test reads the `Location` that points at it.
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/oidc/callback";
const SCOPES: &[&str] = &["openid", "offline_access", "post.write", "profile.read"];
/// oidc-provider's one body for every refused grant (README, "Token endpoint").
const GRANT_REFUSED: &str = "grant request is invalid";
const LOGIN: &str = "alice";

#[path = "support/node.rs"]
mod node;
use node::NodeServer;

// ---------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------

/// A running `server.mjs`. Dropping it stops the server (and prints its log if the test
/// is failing).
struct OidcServer {
    issuer: String,
    node: NodeServer,
}

impl OidcServer {
    /// Starts a fresh server (new keys, no state) with the given access-token lifetime.
    fn start(access_token_ttl: u32) -> OidcServer {
        let dir = node::peer_dir("oidc");
        node::ensure_node_modules(
            &dir,
            "oidc-provider/package.json",
            "the OIDC conformance tests (tests/oidc/server.mjs)",
        );
        let ttl = access_token_ttl.to_string();
        let node = NodeServer::start(
            &dir,
            "server.mjs",
            &[
                "--port",
                "0",
                "--redirect-uris",
                REDIRECT_URI,
                "--access-token-ttl",
                &ttl,
                "--log",
            ],
            Duration::from_secs(20),
        );
        OidcServer {
            issuer: node.ready.clone(),
            node,
        }
    }

    fn log(&self) -> String {
        self.node.log()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn settings(&self, client_secret: &str) -> PlatformSettings {
        PlatformSettings {
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(client_secret),
            auth_url: self.url("/auth"),
            token_url: self.url("/token"),
            revoke_url: Some(self.url("/token/revocation")),
            api_base: self.issuer.clone(),
            allow_private_media_urls: false,
        }
    }

    fn oauth_client(&self, client_secret: &str) -> OAuthClient {
        OAuthClient::new(
            &self.settings(client_secret),
            profile(),
            outbound::client(Duration::from_secs(10)).unwrap(),
            // A count of its own, which nothing reads: the label is any platform's.
            outbound::Outbound::default().meter(social_studio_storage::Platform::X),
        )
        .unwrap()
    }

    fn platform(&self, client_secret: &str) -> Arc<OidcPlatform> {
        Arc::new(OidcPlatform {
            oauth: self.oauth_client(client_secret),
            http: outbound::client(Duration::from_secs(10)).unwrap(),
            issuer: self.issuer.clone(),
            refreshes: Mutex::new(Vec::new()),
        })
    }
}

/// The dialect this server speaks: PKCE S256, `client_secret_basic`, rotating refresh
/// tokens. `offline_access` is what makes oidc-provider issue a refresh token (the server
/// adds `prompt=consent` for it, README "offline_access without prompt=consent").
fn profile() -> OAuthProfile {
    OAuthProfile {
        scopes: SCOPES,
        client_auth: ClientAuth::Basic,
        pkce: true,
        authorize_params: Vec::new(),
        refresh_tokens: RefreshTokens::Rotating,
        grant_refusals: None,
    }
}

// ---------------------------------------------------------------------------------------
// The test platform port
// ---------------------------------------------------------------------------------------

/// One refresh the port sent: the fingerprint of the refresh token it presented, and what
/// came back.
#[derive(Debug, Clone)]
struct RefreshRecord {
    at: Timestamp,
    sent: [u8; 8],
    /// The lifetime of the grant being refreshed, to see where in it the refresh fell.
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
    outcome: Result<[u8; 8], PortError>,
}

/// A `PlatformPort` whose token calls are the shared OAuth core against oidc-provider.
struct OidcPlatform {
    oauth: OAuthClient,
    http: reqwest::Client,
    issuer: String,
    refreshes: Mutex<Vec<RefreshRecord>>,
}

impl OidcPlatform {
    fn refreshes(&self) -> Vec<RefreshRecord> {
        self.refreshes.lock().unwrap().clone()
    }

    fn successful_refreshes(&self) -> usize {
        self.refreshes()
            .iter()
            .filter(|r| r.outcome.is_ok())
            .count()
    }

    /// `GET /me` with the access token.
    async fn me(&self, grant: &Grant) -> Result<serde_json::Value, PortError> {
        let answer = self
            .http
            .get(format!("{}/me", self.issuer))
            .bearer_auth(grant.access_token.expose())
            .send()
            .await
            .map_err(outbound::transport_failure)?;
        match answer.status() {
            StatusCode::OK => answer.json().await.map_err(|e| PortError::Unavailable {
                detail: format!("unreadable /me answer: {e}"),
                maybe_delivered: false,
            }),
            StatusCode::UNAUTHORIZED => Err(PortError::Unauthorized),
            status => Err(PortError::Unavailable {
                detail: format!("/me answered {status}"),
                maybe_delivered: false,
            }),
        }
    }
}

#[async_trait]
impl PlatformPort for OidcPlatform {
    fn platform(&self) -> Platform {
        // X speaks standard OAuth 2.0 with rotating refresh tokens, like this server.
        Platform::X
    }

    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = SystemClock.now();
        let sent = grant
            .refresh_fingerprint()
            .expect("the engine asked to refresh a grant without a refresh token");
        let result = self
            .oauth
            .refresh(grant, now)
            .await
            .map_err(TokenError::into_port_error);
        self.refreshes.lock().unwrap().push(RefreshRecord {
            at: now,
            sent,
            issued_at: grant.issued_at,
            expires_at: grant.expires_at,
            outcome: match &result {
                Ok(new) => Ok(new
                    .refresh_fingerprint()
                    .expect("a rotating server answered without a new refresh token")),
                Err(e) => Err(e.clone()),
            },
        });
        result
    }

    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        let me = self.me(grant).await?;
        let sub = me["sub"].as_str().unwrap_or_default().to_owned();
        Ok(Account {
            platform_id: sub.clone(),
            handle: sub.clone(),
            display_name: sub,
            kind: AccountKind::Personal,
            picture: None,
        })
    }

    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        let me = self.me(grant).await?;
        Ok(Receipt {
            platform_post_id: format!("{}-{}", me["sub"].as_str().unwrap_or_default(), post.id),
            url: None,
        })
    }

    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        self.oauth
            .revoke(grant, SystemClock.now())
            .await
            .map_err(TokenError::into_port_error)
    }
}

// ---------------------------------------------------------------------------------------
// A browser: no automatic redirects, a cookie jar that honours Path
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct JarCookie {
    name: String,
    value: String,
    path: String,
}

/// What a person's browser does on the login and consent pages. Cookies are host-only on
/// `127.0.0.1` (one host per server), so the jar keys them by name and path only.
struct Browser {
    http: reqwest::Client,
    jar: Vec<JarCookie>,
}

/// Where the authorization server sent the browser back, and which pages it went through.
struct Callback {
    query: Vec<(String, String)>,
    pages: Vec<String>,
}

impl Callback {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// RFC 6265 §5.1.4 path-match.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}

/// An HTML attribute's value inside one tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + tag[start..].find('"')?;
    Some(tag[start..end].replace("&amp;", "&"))
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Vec::new(),
        }
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let cookies: Vec<String> = self
            .jar
            .iter()
            .filter(|c| path_matches(url.path(), &c.path))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!cookies.is_empty()).then(|| cookies.join("; "))
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for header in headers.get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let mut parts = text.split(';');
            let (name, value) = parts.next().unwrap().trim().split_once('=').unwrap();
            let mut path = "/".to_owned();
            let mut delete = false;
            for attr in parts {
                let attr = attr.trim();
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                match k.to_ascii_lowercase().as_str() {
                    "path" => path = v.to_owned(),
                    // The deletion idiom oidc-provider (koa) uses.
                    "expires" if v.contains("1970") => delete = true,
                    "max-age" if v.trim().starts_with('-') || v.trim() == "0" => delete = true,
                    _ => {}
                }
            }
            self.jar.retain(|c| !(c.name == name && c.path == path));
            if !delete {
                self.jar.push(JarCookie {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    path,
                });
            }
        }
    }

    async fn send(
        &mut self,
        url: &Url,
        form: Option<&[(String, String)]>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = match form {
            Some(form) => self.http.post(url.clone()).form(form),
            None => self.http.get(url.clone()),
        };
        if let Some(cookies) = self.cookie_header(url) {
            request = request.header(COOKIE, cookies);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status();
        let headers = answer.headers().clone();
        self.keep_cookies(&headers);
        (status, headers, answer.text().await.unwrap())
    }

    /// Opens the authorize URL and goes through whatever pages come (login: any login,
    /// any password; consent: accept) until the server redirects to `REDIRECT_URI`.
    /// Every redirect must be a 303 and every page a form that answers with a 303.
    async fn authorize(&mut self, authorize_url: &str) -> Callback {
        let mut url = Url::parse(authorize_url).unwrap();
        let mut pages = Vec::new();
        let mut trace = Vec::new();
        for _ in 0..12 {
            let (status, headers, body) = self.send(&url, None).await;
            trace.push(format!("GET {} -> {status}", url.path()));
            let next = match status {
                StatusCode::SEE_OTHER => location(&url, &headers),
                StatusCode::OK => {
                    let form_tag = body
                        .split("<form")
                        .nth(1)
                        .and_then(|rest| rest.split('>').next())
                        .unwrap_or_else(|| panic!("no form on {url}: {body}"));
                    let action = Url::parse(&attribute(form_tag, "action").unwrap()).unwrap();
                    assert_eq!(action, url, "the form posts back to the page itself");
                    let mut form: Vec<(String, String)> = body
                        .split("<input")
                        .skip(1)
                        .filter_map(|rest| rest.split('>').next())
                        .filter(|tag| tag.contains("type=\"hidden\""))
                        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
                        .collect();
                    let prompt = form
                        .iter()
                        .find(|(k, _)| k == "prompt")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| panic!("no prompt field on {url}: {body}"));
                    if prompt == "login" {
                        assert!(body.contains("name=\"login\""), "{body}");
                        form.push(("login".into(), LOGIN.into()));
                        form.push(("password".into(), "anything".into()));
                    }
                    pages.push(prompt);
                    let (status, headers, body) = self.send(&action, Some(&form)).await;
                    trace.push(format!("POST {} -> {status}", action.path()));
                    assert_eq!(status, StatusCode::SEE_OTHER, "{trace:?}: {body}");
                    location(&action, &headers)
                }
                _ => panic!("{trace:?}: unexpected answer: {body}"),
            };
            if next.as_str().starts_with(REDIRECT_URI) {
                assert!(
                    next.as_str()[REDIRECT_URI.len()..].starts_with('?'),
                    "the redirect URI is exact, with the answer in its query: {next}"
                );
                return Callback {
                    query: next.query_pairs().into_owned().collect(),
                    pages,
                };
            }
            url = next;
        }
        panic!("no redirect to {REDIRECT_URI} after 12 steps: {trace:?}");
    }
}

/// The `Location` of a redirect, resolved against the URL of the request.
fn location(request: &Url, headers: &HeaderMap) -> Url {
    let value = headers
        .get(LOCATION)
        .unwrap_or_else(|| panic!("a redirect from {request} without Location"))
        .to_str()
        .unwrap();
    request.join(value).unwrap()
}

/// A whole connect: authorize URL from the core, the pages, the callback checked, the
/// code exchanged by the core.
async fn authorize_and_exchange(server: &OidcServer, oauth: &OAuthClient) -> Grant {
    let (code, verifier) = authorize_only(server, oauth).await;
    oauth
        .exchange_code(&code, Some(&verifier), REDIRECT_URI, SystemClock.now())
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {e:?}\n{}", server.log()))
}

/// Runs the browser part of the flow and returns the code and its PKCE verifier.
async fn authorize_only(server: &OidcServer, oauth: &OAuthClient) -> (String, Secret) {
    let state = format!("st-{}", rand_suffix());
    let request = oauth.authorize(&state, REDIRECT_URI).unwrap();
    let verifier = request.pkce_verifier.clone().expect("PKCE is on");
    let callback = Browser::new().authorize(&request.url).await;
    assert_eq!(callback.pages, ["login", "consent"]);
    assert_eq!(callback.param("error"), None, "{:?}", callback.query);
    assert_eq!(
        callback.param("state"),
        Some(state.as_str()),
        "state round-trips"
    );
    assert_eq!(
        callback.param("iss"),
        Some(server.issuer.as_str()),
        "RFC 9207"
    );
    let code = callback.param("code").expect("a code").to_owned();
    (code, verifier)
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{t:x}{}", N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------
// Direct calls the test makes as "the platform's user" or to look behind the scenes
// ---------------------------------------------------------------------------------------

/// RFC 7009 revocation straight from the test, as a user revoking the app would cause.
async fn revoke_at_server(server: &OidcServer, token: &Secret, hint: &str) {
    let answer = reqwest::Client::new()
        .post(server.url("/token/revocation"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", token.expose()), ("token_type_hint", hint)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.text().await.unwrap(),
        "",
        "RFC 7009: 200, empty body"
    );
}

/// RFC 7662 introspection: is this token alive at the server?
async fn introspect(server: &OidcServer, token: &Secret) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(server.url("/token/introspection"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", token.expose())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json().await.unwrap()
}

async fn me_status(server: &OidcServer, access_token: &Secret) -> StatusCode {
    reqwest::Client::new()
        .get(server.url("/me"))
        .bearer_auth(access_token.expose())
        .send()
        .await
        .unwrap()
        .status()
}

// ---------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------

struct Running {
    engine: Engine,
    key: ConnectionKey,
    _dir: tempfile::TempDir,
}

/// An engine on a fresh store with `platform` as its only port, and `grant` connected.
async fn engine_with(platform: Arc<OidcPlatform>, grant: Grant) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&StoreConfig::new(dir.path())).unwrap());
    let port: Arc<dyn PlatformPort> = platform.clone();
    let engine = Engine::start(
        store,
        vec![port],
        Arc::new(SystemClock),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    let account = platform.check(&grant).await.unwrap();
    assert_eq!(account.platform_id, LOGIN);
    let key = ConnectionKey::new(PenName::parse("jane-writes").unwrap(), Platform::X);
    let view = engine
        .connect(key.clone(), account, vec![], grant, false)
        .await
        .unwrap();
    assert_eq!(view.connection.status, ConnectionStatus::Active);
    assert!(view.renewable);
    Running {
        engine,
        key,
        _dir: dir,
    }
}

async fn events(
    engine: &Engine,
    key: &ConnectionKey,
    kind: EventKind,
) -> Vec<social_studio_storage::Event> {
    let mut all = engine
        .store()
        .events_of_connection(key, EventPage::newest(1000))
        .await
        .unwrap();
    all.retain(|e| e.kind == kind);
    all.reverse(); // oldest first
    all
}

/// Polls `condition` every 50 ms until it holds or `within` passes.
async fn wait_until(within: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let held = poll_until(within, LOOK_AGAIN, async || condition().await.then_some(())).await;
    assert!(
        held.is_some(),
        "timed out after {within:?} waiting for {what}"
    );
}

/// How often a test looks again at a condition it waits for.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

async fn status_of(running: &Running) -> ConnectionStatus {
    running
        .engine
        .status(running.key.clone())
        .await
        .unwrap()
        .expect("connected")
        .connection
        .status
}

/// An RFC 6749 refusal of the grant (or the code), with the server's description.
fn grant_refused(status: u16, error: &str, description: &str) -> TokenError {
    TokenError::GrantRefused {
        status,
        error: error.into(),
        message: description.into(),
        reason: ReasonCode::AuthorizationInvalid,
    }
}

/// An RFC 6749 refusal of the app's credentials, with the server's description.
fn client_refused(status: u16, error: &str, description: &str) -> TokenError {
    TokenError::ClientRefused {
        status,
        error: error.into(),
        message: description.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// 1. The authorization code flow with PKCE S256 and `state`, through oidc-provider's
///    login and consent pages, and the token exchange: a grant with an access token, a
///    refresh token, and an expiry read from `expires_in`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_and_state_yields_a_renewable_grant() {
    // An unusual lifetime, so that the expiry can only have come from the answer.
    let server = OidcServer::start(37);
    let oauth = server.oauth_client(CLIENT_SECRET);

    // The authorize URL the core builds.
    let request = oauth.authorize("state-1", REDIRECT_URI).unwrap();
    let url = Url::parse(&request.url).unwrap();
    assert_eq!(
        url.as_str().split('?').next(),
        Some(server.url("/auth").as_str())
    );
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |name: &str| {
        let mut values = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        assert_eq!(values.next(), None, "{name} appears once");
        first
    };
    assert_eq!(get("response_type"), Some("code"));
    assert_eq!(get("client_id"), Some(CLIENT_ID));
    assert_eq!(get("redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(get("scope"), Some(SCOPES.join(" ").as_str()));
    assert_eq!(get("state"), Some("state-1"));
    assert_eq!(get("code_challenge_method"), Some("S256"));
    assert_eq!(
        get("code_challenge").map(str::len),
        Some(43),
        "base64url SHA-256"
    );
    assert_eq!(get("prompt"), None);
    let verifier = request.pkce_verifier.clone().unwrap();
    assert!(
        (43..=128).contains(&verifier.expose().len()),
        "RFC 7636 §4.1"
    );

    // The browser: login, consent, back to the redirect URI with code, state and iss.
    let callback = Browser::new().authorize(&request.url).await;
    assert_eq!(callback.pages, ["login", "consent"]);
    let mut names: Vec<&str> = callback.query.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["code", "iss", "state"], "{:?}", callback.query);
    assert_eq!(callback.param("state"), Some("state-1"));
    assert_eq!(callback.param("iss"), Some(server.issuer.as_str()));
    let code = callback.param("code").unwrap();

    // The exchange.
    let now = SystemClock.now();
    let grant = oauth
        .exchange_code(code, Some(&verifier), REDIRECT_URI, now)
        .await
        .unwrap();
    assert_eq!(grant.access_token.expose().len(), 43);
    let refresh = grant
        .refresh_token
        .as_ref()
        .expect("offline_access gives a refresh token");
    assert_eq!(refresh.expose().len(), 43);
    assert_ne!(refresh, &grant.access_token);
    assert!(
        grant.token_type.eq_ignore_ascii_case("bearer"),
        "{}",
        grant.token_type
    );
    let mut scopes = grant.scopes.clone();
    scopes.sort();
    let mut asked: Vec<String> = SCOPES.iter().map(|s| (*s).to_owned()).collect();
    asked.sort();
    assert_eq!(
        scopes, asked,
        "every scope asked for was granted and echoed"
    );
    assert_eq!(grant.issued_at, now);
    assert_eq!(
        grant.expires_at,
        Some(now.saturating_add(Duration::from_secs(37))),
        "expires_in read from the answer"
    );
    assert_eq!(grant.refresh_expires_at, None, "oidc-provider does not say");

    // The access token works at the resource and names the user who logged in.
    let platform = server.platform(CLIENT_SECRET);
    let account = platform.check(&grant).await.unwrap();
    assert_eq!(account.platform_id, LOGIN);
    let alive = introspect(&server, refresh).await;
    assert_eq!(alive["active"], true, "{alive}");
    assert_eq!(alive["client_id"], CLIENT_ID);

    // The code is single-use: a replay is refused, and classified as a code problem.
    let replay = oauth
        .exchange_code(code, Some(&verifier), REDIRECT_URI, now)
        .await
        .unwrap_err();
    assert_eq!(replay, grant_refused(400, "invalid_grant", GRANT_REFUSED));
    assert_eq!(
        replay.into_connect_error(),
        ConnectError::CodeRejected {
            platform_message: Some(GRANT_REFUSED.into())
        }
    );

    // PKCE is enforced: another flow's code with the wrong verifier is refused.
    let (code, _right) = authorize_only(&server, &oauth).await;
    let wrong = Secret::new(verifier.expose());
    let error = oauth
        .exchange_code(&code, Some(&wrong), REDIRECT_URI, SystemClock.now())
        .await
        .unwrap_err();
    assert_eq!(error, grant_refused(400, "invalid_grant", GRANT_REFUSED));
    assert_eq!(error.into_connect_error().code(), "code_rejected");
}

/// 2. Proactive refresh with rotation through the engine: with 8 s access tokens the
///    connection refreshes at 75–90% of each lifetime, stays Active, and never presents
///    a spent refresh token — shown by the log of every token sent (no repeats, each one
///    the successor of the last) and by the server, which would have revoked the whole
///    grant on any reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_refreshes_ahead_of_expiry_and_never_resends_a_rotated_token() {
    // 8 s tokens leave ~0.8 s between the latest planned refresh (90%) and expiry, so a
    // loaded CI machine does not turn scheduling delay into a false failure.
    let server = OidcServer::start(8);
    let grant = authorize_and_exchange(&server, &server.oauth_client(CLIENT_SECRET)).await;
    let first_refresh = grant.refresh_fingerprint().unwrap();
    let platform = server.platform(CLIENT_SECRET);
    let started = Instant::now();
    let running = engine_with(platform.clone(), grant).await;

    wait_until(Duration::from_secs(40), "3 refreshes", async || {
        platform.refreshes().len() >= 3
            && events(&running.engine, &running.key, EventKind::GrantRenewed)
                .await
                .len()
                >= 3
    })
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status_of(&running).await, ConnectionStatus::Active);

    let log = platform.refreshes();
    for (i, r) in log.iter().enumerate() {
        assert!(
            r.outcome.is_ok(),
            "refresh {i} failed: {:?}\n{}",
            r.outcome,
            server.log()
        );
        // Where in the grant's lifetime it fell: at 75–90%, i.e. before expiry.
        let lifetime = r.issued_at.until(r.expires_at.unwrap()).as_millis() as f64;
        let at = r.issued_at.until(r.at).as_millis() as f64 / lifetime;
        eprintln!(
            "refresh {i}: at {:.1}% of a {lifetime} ms lifetime",
            at * 100.0
        );
        assert!(at >= 0.75, "refresh {i} came early: {at}");
        assert!(
            r.at < r.expires_at.unwrap(),
            "refresh {i} came after expiry: {at}"
        );
    }
    eprintln!("{} refreshes in {elapsed:?}", log.len());

    // Every token sent was the newest: the first the exchange gave, then each successor.
    let mut expected = first_refresh;
    for (i, r) in log.iter().enumerate() {
        assert_eq!(
            r.sent, expected,
            "refresh {i} sent a token other than the newest"
        );
        expected = *r.outcome.as_ref().unwrap();
    }

    // (a) The grant still works after the rotations: the stored refresh token is the
    // newest one, the server holds it active, the access token works, and the engine can
    // refresh once more (oidc-provider would have revoked everything on a reuse).
    let stored = running
        .engine
        .store()
        .grant(&running.key)
        .await
        .unwrap()
        .unwrap();
    let newest = platform
        .refreshes()
        .last()
        .unwrap()
        .outcome
        .clone()
        .unwrap();
    assert_eq!(stored.refresh_fingerprint(), Some(newest));
    let alive = introspect(&server, stored.refresh_token.as_ref().unwrap()).await;
    assert_eq!(alive["active"], true, "{alive}");
    assert_eq!(
        me_status(&server, &stored.access_token).await,
        StatusCode::OK
    );
    let view = running.engine.verify(running.key.clone()).await.unwrap();
    assert_eq!(view.connection.status, ConnectionStatus::Active);

    // (b) No fingerprint was ever sent twice.
    let log = platform.refreshes();
    assert!(log.iter().all(|r| r.outcome.is_ok()), "{log:?}");
    let sent: HashSet<[u8; 8]> = log.iter().map(|r| r.sent).collect();
    assert_eq!(
        sent.len(),
        log.len(),
        "a refresh token was sent twice: {log:?}"
    );
    assert!(log.len() >= 4);

    // Active all along: the only status change is the connect itself.
    let changes = events(&running.engine, &running.key, EventKind::ConnectionStatus).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].to, Some(StateLabel::Active));
    assert_eq!(
        events(&running.engine, &running.key, EventKind::GrantRenewed)
            .await
            .len(),
        platform.successful_refreshes()
    );
    running.engine.shutdown().await;
}

/// 3. The user revokes the app at the server; the next (proactive) refresh meets
///    `invalid_grant`, and the connection becomes Expired with `authorization_invalid`
///    and the server's `error_description`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_at_the_server_expires_the_connection_on_the_next_refresh() {
    let server = OidcServer::start(4);
    let grant = authorize_and_exchange(&server, &server.oauth_client(CLIENT_SECRET)).await;
    let refresh_token = grant.refresh_token.clone().unwrap();
    let access_token = grant.access_token.clone();
    let platform = server.platform(CLIENT_SECRET);
    let running = engine_with(platform.clone(), grant).await;

    // Revoked before the engine's first refresh (due at 3–3.6 s).
    revoke_at_server(&server, &refresh_token, "refresh_token").await;
    assert!(
        platform.refreshes().is_empty(),
        "revoked before any refresh"
    );
    assert_eq!(introspect(&server, &refresh_token).await["active"], false);
    assert_eq!(
        me_status(&server, &access_token).await,
        StatusCode::UNAUTHORIZED
    );

    let expected = Reason::with_platform_message(ReasonCode::AuthorizationInvalid, GRANT_REFUSED);
    let status = poll_until(Duration::from_secs(15), LOOK_AGAIN, async || {
        let status = status_of(&running).await;
        (status != ConnectionStatus::Active).then_some(status)
    })
    .await
    .unwrap_or_else(|| panic!("still Active after 15 s:\n{}", server.log()));
    assert_eq!(status, ConnectionStatus::Expired(expected.clone()));
    assert_eq!(expected.code.code(), "authorization_invalid");

    // It was the proactive refresh that found out, and it was refused as a dead grant.
    let log = platform.refreshes();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].outcome, Err(PortError::GrantDead(expected.clone())));
    let changes = events(&running.engine, &running.key, EventKind::ConnectionStatus).await;
    let last = changes.last().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.clone()),
        (
            Some(StateLabel::Active),
            Some(StateLabel::Expired),
            Some(expected)
        )
    );
    running.engine.shutdown().await;
}

/// 4. The app's client secret is wrong: the refresh answers 401 `invalid_client`, which
///    is the app's configuration, not the author's grant — Error with
///    `app_credentials_rejected`, never Expired. The grant is indeed unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_client_secret_is_an_error_of_the_app_not_an_expired_grant() {
    let server = OidcServer::start(60);
    let right = server.oauth_client(CLIENT_SECRET);
    let grant = authorize_and_exchange(&server, &right).await;
    let platform = server.platform("not-the-secret");
    let running = engine_with(platform.clone(), grant.clone()).await;

    let expected = Reason::with_platform_message(
        ReasonCode::AppCredentialsRejected,
        "client authentication failed",
    );
    let verify = running.engine.verify(running.key.clone()).await;
    match verify {
        Err(EngineError::ConnectionNotActive { status, reason }) => {
            assert_eq!(status, StateLabel::Error);
            assert_eq!(reason, expected);
        }
        other => panic!("verify: {other:?}"),
    }
    assert_eq!(
        status_of(&running).await,
        ConnectionStatus::Error(expected.clone())
    );
    assert_eq!(expected.code.code(), "app_credentials_rejected");
    let log = platform.refreshes();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, Err(PortError::RequirementUnmet(expected)));

    // The core's own classification of that answer.
    let error = server
        .oauth_client("not-the-secret")
        .refresh(&grant, SystemClock.now())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        client_refused(401, "invalid_client", "client authentication failed")
    );

    // The author's grant was never the problem: with the right secret it renews.
    let renewed = right.refresh(&grant, SystemClock.now()).await.unwrap();
    assert_ne!(renewed.refresh_token, grant.refresh_token);
    running.engine.shutdown().await;
}

/// 5. Why the engine must never resend: presenting a rotated refresh token is refused as
///    `invalid_grant` (GrantDead), and oidc-provider then revokes the whole grant — the
///    newest refresh token and the access tokens die with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_rotated_refresh_token_kills_the_whole_grant() {
    let server = OidcServer::start(60);
    let oauth = server.oauth_client(CLIENT_SECRET);
    let old = authorize_and_exchange(&server, &oauth).await;

    let newest = oauth.refresh(&old, SystemClock.now()).await.unwrap();
    assert_ne!(newest.refresh_token, old.refresh_token, "rotated");
    assert_ne!(newest.access_token, old.access_token);
    assert!(newest.refresh_token.is_some());
    assert_eq!(
        me_status(&server, &newest.access_token).await,
        StatusCode::OK
    );

    // The spent token, sent again.
    let reuse = oauth.refresh(&old, SystemClock.now()).await.unwrap_err();
    assert_eq!(reuse, grant_refused(400, "invalid_grant", GRANT_REFUSED));
    let dead = PortError::GrantDead(Reason::with_platform_message(
        ReasonCode::AuthorizationInvalid,
        GRANT_REFUSED,
    ));
    assert_eq!(reuse.into_port_error(), dead);

    // …and now the newest token fails too: the server revoked the grant.
    let after = oauth.refresh(&newest, SystemClock.now()).await.unwrap_err();
    assert_eq!(after, grant_refused(400, "invalid_grant", GRANT_REFUSED));
    assert_eq!(after.into_port_error(), dead);
    assert_eq!(
        introspect(&server, newest.refresh_token.as_ref().unwrap()).await["active"],
        false
    );
    assert_eq!(
        me_status(&server, &newest.access_token).await,
        StatusCode::UNAUTHORIZED
    );

    // The same through the port the actors call.
    let platform = server.platform(CLIENT_SECRET);
    assert_eq!(platform.refresh(&newest).await.unwrap_err(), dead);
}

/// 6. Disconnect revokes at the server (RFC 7009 with Basic client authentication): the
///    grant's tokens are dead afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_revokes_the_grant_at_the_server() {
    let server = OidcServer::start(60);
    let grant = authorize_and_exchange(&server, &server.oauth_client(CLIENT_SECRET)).await;
    let refresh_token = grant.refresh_token.clone().unwrap();
    let access_token = grant.access_token.clone();
    let running = engine_with(server.platform(CLIENT_SECRET), grant.clone()).await;

    let report = running
        .engine
        .disconnect(running.key.clone())
        .await
        .unwrap();
    assert_eq!(report.revoke, Ok(RevokeOutcome::Revoked));
    assert_eq!(introspect(&server, &refresh_token).await["active"], false);
    assert_eq!(introspect(&server, &access_token).await["active"], false);
    assert_eq!(
        me_status(&server, &access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(running
        .engine
        .status(running.key.clone())
        .await
        .unwrap()
        .is_none());

    // Revoking again (unknown tokens now) is still a success (RFC 7009 §2.2).
    let again = server
        .oauth_client(CLIENT_SECRET)
        .revoke(&grant, SystemClock.now())
        .await;
    assert_eq!(again, Ok(RevokeOutcome::Revoked));
    // With the wrong secret, revocation is refused as the app's problem.
    let refused_revoke = server
        .oauth_client("not-the-secret")
        .revoke(&grant, SystemClock.now())
        .await
        .unwrap_err();
    assert_eq!(
        refused_revoke,
        client_refused(401, "invalid_client", "client authentication failed")
    );
    running.engine.shutdown().await;
}

#[test]
fn cookie_paths_match_as_rfc_6265_says() {
    assert!(path_matches("/interaction/abc", "/interaction/abc"));
    assert!(path_matches("/interaction/abc/abort", "/interaction/abc"));
    assert!(!path_matches("/interaction/abcd", "/interaction/abc"));
    assert!(path_matches("/auth/x", "/"));
}
