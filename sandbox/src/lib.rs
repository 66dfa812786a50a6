//! # social-studio-sandbox
//!
//! Simulated social platforms served over real loopback HTTP, for the Social Studio
//! engine's demo and tests. The crate depends on nothing of the engine: the compiler,
//! not review, keeps it from sharing the adapters' code. The engine uses it through
//! its default `sandbox` feature (`social_studio::sandbox` is this crate); the
//! `social-studio-sandbox` binary serves it alone, so that several engine processes can
//! share one sandbox.
//!
//! Where to point an engine: [`Endpoints::at`] (any base URL) or [`Sandbox::endpoints`]
//! (a running sandbox), with the API versions the sandbox speaks
//! ([`GRAPH_API_VERSION`], [`THREADS_API_VERSION`]).
//!
//! Each platform lives in its own module and speaks that platform's real API shapes
//! (paths, parameters, JSON bodies, status codes, headers), implemented from the
//! platform's documentation alone — the sandbox never imports the engine's adapters, so
//! a test against it shows that an adapter speaks the platform's language, not that the
//! adapter agrees with itself. Every platform is mounted under its own prefix so that
//! all of them share one port:
//!
//! | prefix | module | what |
//! |---|---|---|
//! | `/x` | `x` | X (API v2, OAuth 2.0 authorization code with PKCE) |
//! | `/sandbox/x` | `x` | JSON controls for a person poking the demo with curl |
//! | `/tiktok` | `tiktok` | TikTok (Login Kit for Web, Content Posting API) |
//! | `/sandbox/tiktok` | `tiktok` | TikTok's controls |
//! | `/facebook`, `/instagram` | `meta` | Meta Graph API (Facebook Login, Pages, Instagram containers), one shared world; controls under `/sandbox/meta` |
//! | `/threads` | `threads` | Threads (containers, long-lived tokens; controls under `/sandbox/threads`) |
//! | `/youtube` | `youtube` | YouTube (Data API v3, Google OAuth, resumable uploads, quota) |
//! | `/sandbox/youtube` | `youtube` | its controls, and a sample video at `media/sample.mp4` |
//! | `/bluesky` | `bluesky` | Bluesky: a PDS (`/bluesky/xrpc/...`) and a PLC directory (`/bluesky/plc/{did}`) |
//! | `/sandbox/bluesky` | `bluesky` | Bluesky controls: state, revoke an app password, a PNG to attach |
//!
//! Shared parts: `oauth` (authorize page, codes, PKCE, token families and rotation, and
//! the app registration an OAuth platform's world embeds), `faults` (injected failures,
//! stalls, lost answers, answers cut short and rate limits, each optionally aimed at the
//! calls of one path: [`Faults`], which every platform's control handle derefs to), `control` (the world behind its mutex, the fault-control routes
//! mounted under every `/sandbox/{platform}` prefix, and for X, LinkedIn, Pinterest,
//! TikTok and YouTube the grant controls — `revoke_user_grants`, `token_requests` and
//! the rest — with their routes `/users/{id}/revoke|expire`, `/access-token-lifetime`,
//! `/token-requests` and `/revoked-tokens`),
//! `endpoints` (the route table), plus the small HTTP server in this file that lets a
//! handler close its connection without answering.
//!
//! ```no_run
//! # async fn demo() -> Result<(), social_studio_sandbox::SandboxError> {
//! use social_studio_sandbox::Sandbox;
//! let sandbox = Sandbox::start().await?;
//! let token_url = format!("{}/x/2/oauth2/token", sandbox.base_url());
//! sandbox.x().fail_next(1, axum::http::StatusCode::SERVICE_UNAVAILABLE)?;
//! # let _ = token_url;
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Adding a platform: write `name.rs` with a `Control` handle like [`XControl`] (its
//! world in a `Shared`, a `faults` field and `fault_controls!`; for an OAuth 2.0
//! platform, an `app: OAuthApp` in its world and `grant_controls!`), its
//! `platform_routes` and `control_routes`, its routes in `endpoints.rs`, and mount them
//! in `app` (with `oauth_controls` for an OAuth platform).

pub mod bluesky;
pub mod browser;
mod control;
mod endpoints;
mod faults;
pub mod linkedin;
pub mod meta;
mod oauth;
pub mod pinterest;
pub mod threads;
pub mod tiktok;
pub mod x;
pub mod youtube;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

pub use bluesky::{BlueskyControl, BskyRecord, RefreshOutcome};
pub use endpoints::{
    AtProtoEndpoints, Endpoints, OauthEndpoints, GRAPH_API_VERSION, PLATFORM_IDS,
    THREADS_API_VERSION,
};
pub use faults::{Faults, PendingFaults};
pub use linkedin::{
    LinkedinControl, LinkedinMember, LinkedinOrganization, LinkedinPost, LinkedinRole,
};
pub use meta::{FacebookPost, GraphFault, InstagramMedia, MetaControl};
pub use oauth::{
    token_fingerprint, RevokeCause, RevokedToken, TokenKind, TokenOutcome, TokenRequest,
};
pub use pinterest::{PinterestBoard, PinterestControl, PinterestPin, PinterestUser};
pub use threads::{ThreadsControl, ThreadsPost, ThreadsUser};
pub use tiktok::{TiktokControl, TiktokCreator, TiktokPost};
pub use x::{XControl, XTweet, XUser};
pub use youtube::{AuthorizeSeen, YoutubeChannel, YoutubeControl, YoutubeUser, YoutubeVideo};

use control::{fault_routes, grant_routes, FaultControl, GrantControl};
pub(crate) use endpoints::sandbox_client;
use faults::ConnectionHandle;

/// How long [`Sandbox::shutdown`] lets open connections finish a request in flight
/// before cutting them: long enough for a normal answer, short enough that a stalled
/// request cannot hold a test hostage.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Everything that can go wrong when starting or driving the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listening socket could not be opened (address in use, not local, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The socket opened but would not say which port it got.
    #[error("cannot read the sandbox's listening address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// A control named a user the simulated platform does not have.
    #[error("the sandbox has no user with id {0}")]
    UnknownUser(String),
    /// A control asked for something the simulation cannot represent.
    #[error("invalid sandbox setting: {0}")]
    InvalidSetting(String),
}

/// The sandbox's controls answer their errors as JSON with a machine-readable code.
impl IntoResponse for SandboxError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            SandboxError::UnknownUser(_) => (StatusCode::NOT_FOUND, "unknown_user"),
            SandboxError::InvalidSetting(_) => (StatusCode::BAD_REQUEST, "invalid_setting"),
            SandboxError::Bind { .. } | SandboxError::LocalAddr(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "sandbox_error")
            }
        };
        let body = serde_json::json!({"error": code, "message": self.to_string()});
        (status, Json(body)).into_response()
    }
}

/// Every platform's control handle: what the server's handlers share with the
/// [`Sandbox`] accessors.
#[derive(Clone)]
pub(crate) struct Controls {
    pub(crate) x: XControl,
    pub(crate) pinterest: PinterestControl,
    pub(crate) linkedin: LinkedinControl,
    pub(crate) tiktok: TiktokControl,
    pub(crate) meta: MetaControl,
    pub(crate) threads: ThreadsControl,
    pub(crate) youtube: YoutubeControl,
    pub(crate) bluesky: BlueskyControl,
}

/// A running sandbox. Dropping it, or calling [`Sandbox::shutdown`], stops the server.
pub struct Sandbox {
    /// Where the server listens; read once at start so `base_url` never fails.
    addr: SocketAddr,
    /// Handle on X's simulated state, shared with the server's handlers.
    x: XControl,
    /// Handle on Pinterest's simulated state.
    pinterest: PinterestControl,
    /// Handle on LinkedIn's simulated state.
    linkedin: LinkedinControl,
    /// Handle on TikTok's simulated state.
    tiktok: TiktokControl,
    /// Handle on the Graph API's simulated state (Facebook and Instagram share it).
    meta: MetaControl,
    /// Handle on Threads' simulated state.
    threads: ThreadsControl,
    /// Handle on YouTube's simulated state.
    youtube: YoutubeControl,
    /// Handle on Bluesky's simulated PDS and PLC directory.
    bluesky: BlueskyControl,
    /// Dropping this sender is the stop signal for the accept loop and every connection.
    stop: Option<watch::Sender<()>>,
    /// The accept loop, awaited by `shutdown` so that it returns only once the port is free.
    server: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Starts the sandbox on a free loopback port (`127.0.0.1:0`).
    pub async fn start() -> Result<Sandbox, SandboxError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the sandbox on the given address. Must be called inside a tokio runtime:
    /// the server runs on tasks of that runtime.
    pub async fn start_on(addr: SocketAddr) -> Result<Sandbox, SandboxError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SandboxError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(SandboxError::LocalAddr)?;
        let x = XControl::new();
        let pinterest = PinterestControl::new();
        let linkedin = LinkedinControl::new();
        let tiktok = TiktokControl::new();
        let meta = MetaControl::new();
        let threads = ThreadsControl::new();
        let youtube = YoutubeControl::new();
        let bluesky = BlueskyControl::new(&format!("http://{local}"));
        let controls = Controls {
            x: x.clone(),
            pinterest: pinterest.clone(),
            linkedin: linkedin.clone(),
            tiktok: tiktok.clone(),
            meta: meta.clone(),
            threads: threads.clone(),
            youtube: youtube.clone(),
            bluesky: bluesky.clone(),
        };
        let (stop, stopped) = watch::channel(());
        let server = tokio::spawn(accept_loop(listener, app(&controls), stopped));
        tracing::info!(addr = %local, "sandbox listening");
        Ok(Sandbox {
            addr: local,
            x,
            pinterest,
            linkedin,
            tiktok,
            meta,
            threads,
            youtube,
            bluesky,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where `platform_id` (`x`, `bluesky`, … — see [`PLATFORM_IDS`]) answers in this
    /// sandbox, as absolute URLs; `None` for a platform it does not simulate.
    pub fn endpoints(&self, platform_id: &str) -> Option<Endpoints> {
        Endpoints::at(&self.base_url(), platform_id)
    }

    /// `value` with `{sandbox}` in every string replaced by [`Sandbox::base_url`]: a post
    /// written once that points at the images and videos this sandbox serves.
    pub fn fill_in(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        fn fill(value: &Value, base: &str) -> Value {
            match value {
                Value::String(s) => Value::String(s.replace("{sandbox}", base)),
                Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, base)).collect()),
                Value::Object(map) => Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), fill(v, base)))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        fill(value, &self.base_url())
    }

    /// A handle to drive X's simulated state: act as the platform or as its user.
    pub fn x(&self) -> XControl {
        self.x.clone()
    }

    /// A handle to drive Pinterest's simulated state.
    pub fn pinterest(&self) -> PinterestControl {
        self.pinterest.clone()
    }

    /// A handle to drive LinkedIn's simulated state.
    pub fn linkedin(&self) -> LinkedinControl {
        self.linkedin.clone()
    }

    /// A handle to drive TikTok's simulated state.
    pub fn tiktok(&self) -> TiktokControl {
        self.tiktok.clone()
    }

    /// A handle to drive the Graph API's simulated state (Facebook Pages and Instagram).
    pub fn meta(&self) -> MetaControl {
        self.meta.clone()
    }

    /// A handle to drive Threads' simulated state.
    pub fn threads(&self) -> ThreadsControl {
        self.threads.clone()
    }

    /// A handle to drive YouTube's simulated state.
    pub fn youtube(&self) -> YoutubeControl {
        self.youtube.clone()
    }

    /// A handle to drive Bluesky's simulated PDS.
    pub fn bluesky(&self) -> BlueskyControl {
        self.bluesky.clone()
    }

    /// Stops accepting connections, lets requests in flight finish (briefly), and
    /// returns once the server has stopped.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(server) = self.server.take() {
            if let Err(error) = server.await {
                tracing::warn!(%error, "sandbox server task ended abnormally");
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Dropping the sender wakes the accept loop, which then winds down on its own.
        self.stop.take();
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("addr", &self.addr).finish()
    }
}

/// The whole sandbox as one router: every platform under its prefix, plus an index page.
/// A plain function so that tests can also drive it without a socket.
pub(crate) fn app(c: &Controls) -> Router {
    let Controls {
        x,
        pinterest,
        linkedin,
        tiktok,
        meta,
        threads,
        youtube,
        bluesky,
    } = c;
    Router::new()
        .route("/", get(index))
        .nest("/x", x::platform_routes(x))
        .nest("/sandbox/x", oauth_controls(x, x::control_routes))
        .nest("/pinterest", pinterest::platform_routes(pinterest))
        .nest(
            "/sandbox/pinterest",
            oauth_controls(pinterest, pinterest::control_routes),
        )
        .nest("/linkedin", linkedin::platform_routes(linkedin))
        .nest(
            "/sandbox/linkedin",
            oauth_controls(linkedin, linkedin::control_routes),
        )
        .nest("/tiktok", tiktok::platform_routes(tiktok))
        .nest(
            "/sandbox/tiktok",
            oauth_controls(tiktok, tiktok::control_routes),
        )
        .nest("/facebook", meta::platform_routes(meta))
        .nest("/instagram", meta::platform_routes(meta))
        .nest("/sandbox/meta", meta::control_routes(meta))
        .nest("/threads", threads::platform_routes(threads))
        .nest(
            "/sandbox/threads",
            controls(threads, threads::control_routes),
        )
        .nest("/youtube", youtube::platform_routes(youtube))
        .nest(
            "/sandbox/youtube",
            oauth_controls(youtube, youtube::control_routes),
        )
        .nest("/bluesky", bluesky::platform_routes(bluesky))
        .nest(
            "/sandbox/bluesky",
            controls(bluesky, bluesky::control_routes),
        )
}

/// A platform's own controls with the shared fault controls mounted beside them.
fn controls<C: FaultControl>(control: &C, own: fn(&C) -> Router) -> Router {
    own(control).merge(fault_routes(control))
}

/// An OAuth platform's own controls with the shared fault and grant controls beside them.
fn oauth_controls<C: FaultControl + GrantControl>(control: &C, own: fn(&C) -> Router) -> Router {
    controls(control, own).merge(grant_routes(control))
}

/// A short page for a person who opens the sandbox in a browser during a demo.
async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html><head><title>Social Studio sandbox</title></head><body>",
        "<h1>Social Studio sandbox</h1>",
        "<p>Simulated platforms on this port:</p><ul>",
        "<li>X: <code>/x/i/oauth2/authorize</code>, <code>/x/2/oauth2/token</code>, ",
        "<code>/x/2/oauth2/revoke</code>, <code>/x/2/users/me</code>, <code>/x/2/tweets</code>, ",
        "<code>/x/2/media/upload</code>; controls under <code>/sandbox/x</code> ",
        "(try <code>GET /sandbox/x/state</code>)</li>",
        "<li>TikTok: <code>/tiktok/v2/auth/authorize/</code>, <code>/tiktok/v2/oauth/token/</code>, ",
        "<code>/tiktok/v2/post/publish/video/init/</code>, <code>/tiktok/media/sample.mp4</code>; ",
        "controls under <code>/sandbox/tiktok</code></li>",
        "<li>Facebook and Instagram (one Graph API): <code>/facebook/v25.0/dialog/oauth</code>, ",
        "<code>/facebook/v25.0/oauth/access_token</code>, <code>/facebook/v25.0/me/accounts</code>, ",
        "<code>/instagram/v25.0/{ig-user-id}/media</code>; media files under <code>/facebook/media/</code>; ",
        "controls under <code>/sandbox/meta</code> (try <code>GET /sandbox/meta/state</code>)</li>",
        "<li>Threads: <code>/threads/oauth/authorize</code>, <code>/threads/oauth/access_token</code>, ",
        "<code>/threads/access_token</code>, <code>/threads/refresh_access_token</code>, ",
        "<code>/threads/v1.0/me</code>, <code>/threads/v1.0/{user}/threads</code>; controls under ",
        "<code>/sandbox/threads</code></li>",
        "<li>Bluesky: a PDS at <code>/bluesky/xrpc/...</code> and a PLC directory at ",
        "<code>/bluesky/plc/{did}</code>; controls under <code>/sandbox/bluesky</code> ",
        "(try <code>GET /sandbox/bluesky/state</code>)</li>",
        "</ul></body></html>",
    ))
}

/// Accepts connections until the stop signal, then gives open ones a short grace.
async fn accept_loop(listener: TcpListener, router: Router, mut stopped: watch::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Err means the sender was dropped: that is the only stop signal we send.
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, router.clone(), stopped.clone()));
                }
                Err(error) => {
                    // Typically out of file descriptors: pause rather than spin on it.
                    tracing::warn!(%error, "sandbox could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow over a long demo.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!("sandbox cut connections still busy after the shutdown grace");
    }
    connections.abort_all();
    tracing::info!("sandbox stopped");
}

/// Serves one HTTP/1.1 connection. Every request carries a [`ConnectionHandle`] so that
/// a handler asked to lose its answer can have this connection closed mid-request.
async fn serve_connection(stream: TcpStream, router: Router, mut stopped: watch::Receiver<()>) {
    let handle = ConnectionHandle::new();
    let service = {
        let handle = handle.clone();
        service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(handle.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                Ok::<_, Infallible>(match response {
                    Ok(response) => response,
                    Err(never) => match never {},
                })
            }
        })
    };
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "sandbox connection ended with an error");
            }
        }
        // Returning drops the connection, which closes the socket without an answer.
        () = handle.aborted() => tracing::debug!("sandbox dropped a connection without answering, as asked"),
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                () = handle.aborted() => {}
            }
        }
    }
}

/// Locks a sandbox mutex. A poisoned lock only means a handler panicked mid-update;
/// the simulated state is still the best answer we have, so carry on with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now, in unix seconds, for the reset times platforms announce; 0 before 1970.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A secret the sandbox holds (a client secret): never shown in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
