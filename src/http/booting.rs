//! [`Booting`]: what a server answers while the engine starts, and the switch to the
//! whole API once it has.
//!
//! [`Studio::open`](crate::studio::Studio::open) takes as long as the store is large (over
//! a minute at a million connections): an orchestrator that sees no answer meanwhile
//! kills a healthy node. So a server binds, serves a [`Booting`] at once, opens the studio
//! with the same [`BootProgress`], and then hands the full router over
//! ([`Booting::switch_to`]) on the same listener:
//!
//! - `GET /healthz`: 200 `{"status": "ok"}` from the first moment: the process is up;
//! - `GET /readyz`: 503 `{"ready": false, "reason": {"code": "booting", ...}, "booting":
//!   {"phase", "loaded", "total"}}` — the connections started of how many;
//! - every other request: 503 `{"error": {"code": "booting", ...}}` with `Retry-After`.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{future::RouteFuture, get};
use axum::Router;
use serde_json::json;
use social_studio_actors::BootProgress;
use tower::Service;

use super::error::ApiError;

/// The switch was thrown already: a server answers with one full API.
#[derive(Debug, thiserror::Error)]
#[error("the server already answers with the engine's API")]
pub struct AlreadySwitched;

/// A server's answers while the engine starts, until [`Booting::switch_to`] hands them
/// to the full API. Cheap to clone; every clone is the same switch.
///
/// ```no_run
/// # async fn host(config: social_studio::config::Config) -> Result<(), Box<dyn std::error::Error>> {
/// use social_studio::http::{self, Booting};
/// use social_studio::studio::{BootProgress, Studio, StudioOptions};
///
/// let progress = BootProgress::new();
/// let booting = Booting::new(progress.clone());
/// let listener = tokio::net::TcpListener::bind(config.listen).await?;
/// let app = booting.router();
/// let server = tokio::spawn(async move { axum::serve(listener, app).await });
/// let options = StudioOptions { boot_progress: Some(progress), ..StudioOptions::default() };
/// let studio = Studio::open(config, options).await?;
/// booting.switch_to(http::router(studio))?;
/// server.await??;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Booting {
    progress: BootProgress,
    /// The full API, once the studio is open: from then on every request goes to it.
    app: Arc<OnceLock<Router>>,
    /// What answers until then.
    booting: Router,
}

impl Booting {
    /// Answers from `progress` — give the same progress to
    /// [`StudioOptions::boot_progress`](crate::studio::StudioOptions::boot_progress).
    pub fn new(progress: BootProgress) -> Booting {
        let answers = progress.clone();
        let booting = Router::new()
            .route("/healthz", get(super::admin::healthz))
            .route(
                "/readyz",
                get(move || {
                    let progress = answers.clone();
                    async move { super::admin::booting(progress.state()) }
                }),
            )
            // Must come after the routes: set on the method routers that exist.
            .method_not_allowed_fallback(super::error::method_not_allowed)
            .fallback(not_yet);
        Booting {
            progress,
            app: Arc::new(OnceLock::new()),
            booting,
        }
    }

    /// How far the start has come.
    pub fn progress(&self) -> &BootProgress {
        &self.progress
    }

    /// The router to serve (or nest) from the first moment: the booting answers until
    /// [`Booting::switch_to`], the full API after it.
    pub fn router(&self) -> Router {
        Router::new().fallback_service(Switch {
            app: self.app.clone(),
            booting: self.booting.clone(),
        })
    }

    /// From now on every request goes to `app` (the router of the opened studio, e.g.
    /// [`router_with_shutdown`](super::router_with_shutdown)); requests already answered
    /// by the booting routes are not affected. Thrown once: a second call is refused.
    pub fn switch_to(&self, app: Router) -> Result<(), AlreadySwitched> {
        self.app.set(app).map_err(|_| AlreadySwitched)
    }

    /// Whether the full API answers.
    pub fn switched(&self) -> bool {
        self.app.get().is_some()
    }
}

/// Every route but `/healthz` and `/readyz` while the engine starts.
async fn not_yet() -> Response {
    (
        [(header::RETRY_AFTER, super::admin::RETRY_AFTER_SECS)],
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "booting",
            "the engine is starting and does not answer this yet",
        )
        .with_detail(json!({
            "remedy": "Wait and send the request again: `/readyz` says how far the start has come.",
        })),
    )
        .into_response()
}

/// The service behind [`Booting::router`]: the full API once it is there, else the
/// booting answers.
#[derive(Clone)]
struct Switch {
    app: Arc<OnceLock<Router>>,
    booting: Router,
}

impl Service<Request> for Switch {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both routers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut router = match self.app.get() {
            Some(app) => app.clone(),
            None => self.booting.clone(),
        };
        router.call(request)
    }
}
