//! The HTTP status/admin API (axum), under `/v1`, JSON everywhere.
//!
//! One file per resource:
//!
//! | file | what |
//! |---|---|
//! | `connections.rs` | a pen name's connections: list, one with its events, authorize, verify, disconnect, app-password connect, choosing targets |
//! | `oauth.rs` | the OAuth callback page that tells its opener window the outcome |
//! | `posts.rs` | schedule (with `Idempotency-Key`), list, read, edit, cancel, retry, resolve |
//! | `events.rs` | the server-sent event stream, with replay from the store after `Last-Event-ID` |
//! | `admin.rs` | health, readiness, attention, supervisor, pen-name erasure |
//! | `booting.rs` | [`Booting`]: `/healthz` and `/readyz` (with the start's progress) while the engine starts, then the switch to the whole API |
//! | `backup.rs` | a backup archive of the whole store, streamed |
//! | `metrics.rs` | Prometheus text: requests by route and status, connections, queues, events |
//! | `openapi.rs` | the OpenAPI document, generated from the handlers' annotations |
//! | `page/` | the Social Accounts page (its own routes, guarded by its page cookie) and `POST …/page-links` |
//!
//! Cross-cutting parts: `layers.rs` (the request layers: metrics and JSON errors on every
//! route, the admin token or the host's authorization on the protected ones), `auth.rs`
//! (the admin bearer token, compared in constant time, and [`Authorize`], the host's own
//! check),
//! `error.rs` (one [`ApiError`]; every refusal, axum's own included, is
//! `{"error": {"code", "message", ...}}`, and the engine's refusals get their HTTP status
//! there), `extract.rs` (path, query and body extractors whose rejections are
//! `ApiError`s) and `query.rs` (query strings several resources share). Imports point one
//! way: `openapi.rs` reads the handlers and their schemas, never the reverse.
//!
//! The route list is one table, [`routes`], that [`router`] is built from: whether a route
//! is protected is decided there and nowhere else, so a test can walk every protected
//! route and a route added later cannot escape it. The one exception is the Social
//! Accounts page's own routes (`/page/…`, `/page-link/…`, `/page-assets/…`), merged
//! beside the table: they are for an author's browser, not for API clients, and admit by
//! the page cookie of the pen name in their path (`page/`), never by the admin token. Who admits a request to a protected
//! route — the admin token (the default), a host's [`Authorize`], or either — is the
//! router's, chosen with [`RouterBuilder`].

mod admin;
mod auth;
mod backup;
mod booting;
mod connections;
mod error;
mod events;
mod extract;
mod layers;
mod metrics;
mod oauth;
mod openapi;
mod page;
mod posts;
mod query;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::studio::Studio;

pub use auth::{Authorize, Refusal, RouteInfo};
pub use booting::{AlreadySwitched, Booting};
pub use error::ApiError;
pub use openapi::ApiDoc;

/// What every handler gets: the engine, the metrics it reports into, and the signal
/// that the server is shutting down. One `Arc`: every middleware layer clones the state
/// for every request, and one reference count is cheaper to move than three.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) studio: Studio,
    pub(crate) metrics: Arc<metrics::HttpMetrics>,
    /// Becomes `true` when [`serve`] starts its graceful shutdown, or when the host's
    /// signal given to [`router_with_shutdown`] completes: event streams never end on
    /// their own, so they end on this (or on [`Studio::shutdown`](crate::studio::Studio::shutdown)),
    /// or the shutdown would wait for them forever.
    pub(crate) closing: Arc<watch::Sender<bool>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl Verb {
    pub fn as_method(self) -> axum::http::Method {
        match self {
            Verb::Get => axum::http::Method::GET,
            Verb::Post => axum::http::Method::POST,
            Verb::Patch => axum::http::Method::PATCH,
            Verb::Put => axum::http::Method::PUT,
            Verb::Delete => axum::http::Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// One route of the API.
pub struct RouteSpec {
    pub method: Verb,
    /// The path template, axum style (`/v1/pen-names/{pen}/posts/{id}`).
    pub path: &'static str,
    /// Requires credentials: `Authorization: Bearer <admin token>`, or what the host's
    /// [`Authorize`] accepts ([`RouterBuilder`]).
    pub protected: bool,
    /// One line for people reading the table.
    pub summary: &'static str,
    /// Mounts the handler for the given method: taking the method as an argument keeps
    /// the table's `method` and the mounted one from disagreeing.
    mount: fn(MethodFilter) -> MethodRouter<AppState>,
}

impl std::fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSpec")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("protected", &self.protected)
            .finish_non_exhaustive()
    }
}

/// The route table the router is built from.
static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: Verb::Get,
        path: "/healthz",
        protected: false,
        summary: "liveness: always 200",
        mount: |m| on(m, admin::healthz),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/readyz",
        protected: false,
        summary: "readiness: 200 when the engine runs and the store takes its writes",
        mount: |m| on(m, admin::readyz),
    },
    RouteSpec {
        method: Verb::Get,
        path: crate::config::CALLBACK_PATH,
        protected: false,
        summary: "OAuth redirect target: an HTML page that reports to its opener",
        mount: |m| on(m, oauth::callback),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/metrics",
        protected: true,
        summary: "Prometheus text",
        mount: |m| on(m, metrics::render),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/openapi.json",
        protected: true,
        summary: "this API as OpenAPI 3.1",
        mount: |m| on(m, openapi::document),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/attention",
        protected: true,
        summary: "connections that need a person, across pen names",
        mount: |m| on(m, admin::attention_all),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/supervisor",
        protected: true,
        summary: "the actor tree: connections by status, restarts, queue depths",
        mount: |m| on(m, admin::supervisor),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/admin/backup",
        protected: true,
        summary: "a consistent backup archive of the whole store (application/octet-stream)",
        mount: |m| on(m, backup::backup),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/events",
        protected: true,
        summary: "every event, as server-sent events (Last-Event-ID replays)",
        mount: |m| on(m, events::all),
    },
    RouteSpec {
        method: Verb::Delete,
        path: "/v1/pen-names/{pen}",
        protected: true,
        summary: "erase a pen name (dry run without ?confirm=true)",
        mount: |m| on(m, admin::erase_pen_name),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/pen-names/{pen}/attention",
        protected: true,
        summary: "one pen name's connections that need a person",
        mount: |m| on(m, admin::attention_of_pen),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/pen-names/{pen}/events",
        protected: true,
        summary: "one pen name's events, as server-sent events",
        mount: |m| on(m, events::of_pen),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/pen-names/{pen}/connections",
        protected: true,
        summary: "one entry per platform",
        mount: |m| on(m, connections::list),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/pen-names/{pen}/connections/{platform}",
        protected: true,
        summary: "one connection with its recent events",
        mount: |m| on(m, connections::show),
    },
    RouteSpec {
        method: Verb::Post,
        path: "/v1/pen-names/{pen}/connections/{platform}",
        protected: true,
        summary: "connect with an identifier and app password (Bluesky)",
        mount: |m| on(m, connections::connect_with_app_password),
    },
    RouteSpec {
        method: Verb::Delete,
        path: "/v1/pen-names/{pen}/connections/{platform}",
        protected: true,
        summary: "disconnect (409 with the affected count without ?confirm=true)",
        mount: |m| on(m, connections::disconnect),
    },
    RouteSpec {
        method: Verb::Post,
        path: "/v1/pen-names/{pen}/connections/{platform}/authorize",
        protected: true,
        summary: "begin an OAuth connect: the URL to send the browser to",
        mount: |m| on(m, connections::authorize),
    },
    RouteSpec {
        method: Verb::Post,
        path: "/v1/pen-names/{pen}/connections/{platform}/verify",
        protected: true,
        summary: "prove the grant alive, optionally with a test post",
        mount: |m| on(m, connections::verify),
    },
    RouteSpec {
        method: Verb::Put,
        path: "/v1/pen-names/{pen}/connections/{platform}/targets",
        protected: true,
        summary: "choose the targets a post naming none goes to",
        mount: |m| on(m, connections::choose_targets),
    },
    RouteSpec {
        method: Verb::Post,
        path: "/v1/pen-names/{pen}/page-links",
        protected: true,
        summary: "a single-use link to the pen name's Social Accounts page",
        mount: |m| on(m, page::links::mint),
    },
    RouteSpec {
        method: Verb::Post,
        path: "/v1/pen-names/{pen}/posts",
        protected: true,
        summary: "schedule content on one or several platforms",
        mount: |m| on(m, posts::schedule),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/pen-names/{pen}/posts",
        protected: true,
        summary: "a pen name's posts, optionally in one state",
        mount: |m| on(m, posts::list),
    },
    RouteSpec {
        method: Verb::Get,
        path: "/v1/pen-names/{pen}/posts/{id}",
        protected: true,
        summary: "one post",
        mount: |m| on(m, posts::show),
    },
    RouteSpec {
        method: Verb::Patch,
        path: "/v1/pen-names/{pen}/posts/{id}",
        protected: true,
        summary: "edit a post that has not been published",
        mount: |m| on(m, posts::update),
    },
    RouteSpec {
        method: Verb::Delete,
        path: "/v1/pen-names/{pen}/posts/{id}",
        protected: true,
        summary: "cancel a post",
        mount: |m| on(m, posts::cancel),
    },
    RouteSpec {
        method: Verb::Post,
        path: "/v1/pen-names/{pen}/posts/{id}/retry",
        protected: true,
        summary: "send a failed or held post again",
        mount: |m| on(m, posts::retry),
    },
    RouteSpec {
        method: Verb::Post,
        path: "/v1/pen-names/{pen}/posts/{id}/resolve",
        protected: true,
        summary: "say whether an unconfirmed post appeared",
        mount: |m| on(m, posts::resolve),
    },
];

/// Every route of the API, as the router is built from it.
pub fn routes() -> &'static [RouteSpec] {
    ROUTES
}

/// The whole API as one router, the admin token guarding its protected routes. A plain
/// function, so tests can drive it with `tower::ServiceExt::oneshot` without a socket. Its
/// event streams end when [`Studio::shutdown`](crate::studio::Studio::shutdown) begins; a
/// host that shuts its server down before (or without) the studio gives its signal to
/// [`router_with_shutdown`] instead. `RouterBuilder::new(studio).build()`.
pub fn router(studio: Studio) -> Router {
    RouterBuilder::new(studio).build()
}

/// [`router`], for a host that nests it in its own server: when `shutdown` completes —
/// give it the same signal as the host's `with_graceful_shutdown`, e.g. a clone of a
/// cancellation token's `cancelled_owned()` — every open event stream ends, so the host's
/// graceful shutdown finishes instead of waiting for them forever. Call it inside a tokio
/// runtime: a task waits for the signal.
/// `RouterBuilder::new(studio).shutdown(signal).build()`.
pub fn router_with_shutdown(
    studio: Studio,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Router {
    RouterBuilder::new(studio).shutdown(shutdown).build()
}

/// The router as a host application wants it: its shutdown signal, and its own
/// authorization in front of the protected routes.
///
/// ```no_run
/// # use axum::http::request::Parts;
/// # use social_studio::http::{Authorize, Refusal, RouteInfo, RouterBuilder};
/// # struct HostUsers;
/// # impl Authorize for HostUsers {
/// #     async fn authorize(&self, _: &Parts, _: &RouteInfo) -> Result<(), Refusal> {
/// #         Ok(())
/// #     }
/// # }
/// # async fn host(studio: social_studio::studio::Studio) {
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let api = RouterBuilder::new(studio)
///     // The same signal as the host's own `with_graceful_shutdown`.
///     .shutdown(async move {
///         let _ = stopped.await;
///     })
///     // The host decides alone who may call the protected routes.
///     .authorize(HostUsers)
///     .build();
/// let app: axum::Router = axum::Router::new().nest("/social", api);
/// # drop((stop, app));
/// # }
/// ```
///
/// Three ways to guard the protected routes ([`RouteSpec::protected`]); the open ones
/// (`/healthz`, `/readyz`, the OAuth callback) stay open in each:
///
/// | built with | who is admitted |
/// |---|---|
/// | nothing (the default) | a request with the admin token |
/// | [`authorize`](RouterBuilder::authorize) | whom the host's [`Authorize`] admits; the admin token means nothing to the engine |
/// | [`authorize_or_admin_token`](RouterBuilder::authorize_or_admin_token) | a request with the admin token, without asking the host; any other, if the host admits it |
#[must_use = "a builder does nothing until `build`"]
pub struct RouterBuilder {
    studio: Studio,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    access: Access,
}

/// Who admits a request to a protected route.
enum Access {
    AdminToken,
    Host {
        policy: Arc<dyn auth::AuthorizeDyn>,
        admin_token_too: bool,
    },
}

impl RouterBuilder {
    /// The router of `studio`, guarded by the admin token, its event streams ended by
    /// [`Studio::shutdown`](crate::studio::Studio::shutdown).
    pub fn new(studio: Studio) -> RouterBuilder {
        RouterBuilder {
            studio,
            shutdown: None,
            access: Access::AdminToken,
        }
    }

    /// When `signal` completes, every open event stream ends (see
    /// [`router_with_shutdown`]). [`build`](RouterBuilder::build) must then be called
    /// inside a tokio runtime: a task waits for the signal.
    pub fn shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> RouterBuilder {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// The host decides alone who may call the protected routes: `policy` is asked
    /// before each such request's handler, and the admin token admits nobody.
    pub fn authorize(mut self, policy: impl Authorize) -> RouterBuilder {
        self.access = Access::Host {
            policy: Arc::new(policy),
            admin_token_too: false,
        };
        self
    }

    /// The admin token admits as it does by default, without asking the host; a request
    /// without it goes to `policy`, which decides.
    pub fn authorize_or_admin_token(mut self, policy: impl Authorize) -> RouterBuilder {
        self.access = Access::Host {
            policy: Arc::new(policy),
            admin_token_too: true,
        };
        self
    }

    /// The router.
    pub fn build(self) -> Router {
        let closing = Arc::new(watch::channel(false).0);
        let app = build(self.studio, closing.clone(), self.access);
        if let Some(shutdown) = self.shutdown {
            // Weak, so a router dropped before the signal does not outlive itself in this task.
            let closing = Arc::downgrade(&closing);
            tokio::spawn(async move {
                shutdown.await;
                if let Some(closing) = closing.upgrade() {
                    closing.send_replace(true);
                }
            });
        }
        app
    }
}

fn build(studio: Studio, closing: Arc<watch::Sender<bool>>, access: Access) -> Router {
    let max_body = studio.config().max_body_bytes;
    let state = AppState(Arc::new(Shared {
        metrics: metrics::HttpMetrics::start(&studio),
        studio,
        closing,
    }));
    let mut app = Router::new();
    for spec in ROUTES {
        let mut handler = (spec.mount)(spec.method.filter());
        if spec.protected {
            handler = match &access {
                Access::AdminToken => handler.route_layer(layers::AdminLayer {
                    studio: state.studio.clone(),
                }),
                Access::Host {
                    policy,
                    admin_token_too,
                } => handler.route_layer(layers::HostLayer {
                    studio: state.studio.clone(),
                    policy: policy.clone(),
                    route: spec,
                    admin_token_too: *admin_token_too,
                }),
            };
        }
        app = app.route(spec.path, handler);
    }
    // The Social Accounts page: its own routes, admitted by its page cookie, not by the
    // admin token nor the host's `Authorize` (see `page/`).
    app = app.merge(page::router(state.clone()));
    app
        // Must come after every route: it is set on the method routers that exist.
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::not_found)
        // Inner to outer. Both limits: tower-http's refuses a declared Content-Length
        // up front; axum's caps what its extractors buffer from a body of unknown length.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(CatchPanicLayer::custom(error::panicked))
        // Spans name the route template, never the URI: the callback's query carries the
        // authorization code and state.
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        // Counted and timed; anything still not JSON (tower-http's 413, say) becomes our
        // error body.
        .layer(layers::ObserveLayer {
            metrics: state.metrics.clone(),
        })
        .with_state(state)
}

/// A span per request, naming the route template, and the pen name and platform the
/// route names (`{pen}`, `{platform}`), so that what the request causes — the adapter's
/// lines, the outbound call's — says whose it is. Never the URI itself: the callback's
/// query carries the authorization code and state. Reads get theirs at debug level: they
/// are the busiest requests and log nothing at info, and a span at info costs every one of
/// them a formatted allocation; requests that change something keep theirs at info, so the
/// few lines they log say which route they came from.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched");
    let (pen_name, platform) = connection_in_path(route, request.uri().path());
    if request.method() == axum::http::Method::GET {
        tracing::debug_span!("http", method = %request.method(), route, pen_name, platform)
    } else {
        tracing::info_span!("http", method = %request.method(), route, pen_name, platform)
    }
}

/// The pen name and platform in `path` where the matched `route` has `{pen}` and
/// `{platform}`: the segments in the same places, counted from the end (a host that
/// nests the router adds segments in front). Each is kept only when it is a valid pen
/// name or a known platform as written, so no arbitrary text reaches a log line.
fn connection_in_path<'p>(route: &str, path: &'p str) -> (Option<&'p str>, Option<&'static str>) {
    let mut pen_name = None;
    let mut platform = None;
    for (template, segment) in route.rsplit('/').zip(path.rsplit('/')) {
        match template {
            "{pen}" if social_studio_storage::PenName::parse(segment).is_ok() => {
                pen_name = Some(segment);
            }
            "{platform}" => {
                platform = social_studio_storage::Platform::from_id(segment).map(|p| p.id());
            }
            _ => {}
        }
    }
    (pen_name, platform)
}

/// The route template as the static string of the route table, when it is one of ours.
pub(crate) fn static_route(route: &str) -> Option<&'static str> {
    ROUTES.iter().map(|r| r.path).find(|p| *p == route)
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in
/// flight finish.
pub async fn serve(
    studio: Studio,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = Arc::new(watch::channel(false).0);
    let app = build(studio, closing.clone(), Access::AdminToken);
    let signal = async move {
        shutdown.await;
        closing.send_replace(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
}

#[cfg(test)]
mod tests {
    use super::connection_in_path;

    #[test]
    fn the_connection_is_read_from_the_routes_own_segments() {
        let route = "/v1/pen-names/{pen}/connections/{platform}/verify";
        assert_eq!(
            connection_in_path(route, "/v1/pen-names/jane/connections/x/verify"),
            (Some("jane"), Some("x"))
        );
        // Nested under a host's prefix, whichever of the two it names.
        assert_eq!(
            connection_in_path(route, "/social/v1/pen-names/jane/connections/x/verify"),
            (Some("jane"), Some("x"))
        );
        assert_eq!(
            connection_in_path(
                &format!("/social{route}"),
                "/social/v1/pen-names/jane/connections/x/verify"
            ),
            (Some("jane"), Some("x"))
        );
        // What is not a pen name or a platform is left out, never logged as sent.
        assert_eq!(
            connection_in_path(route, "/v1/pen-names/ja%0Ane/connections/myspace/verify"),
            (None, None)
        );
        assert_eq!(
            connection_in_path("/v1/oauth/callback", "/v1/oauth/callback"),
            (None, None)
        );
    }
}
