//! The two cross-cutting layers every request meets, written as tower services whose
//! futures wrap the route's own — no boxed future and no clone of the inner service per
//! request (axum's `from_fn` middleware does both, and on the busiest routes that was a
//! visible share of the CPU).
//!
//! - [`ObserveLayer`] (every route): counts and times the request by route template and
//!   status, and turns any error answer that is not JSON yet (tower-http's 413, say) into
//!   the API's error body.
//! - [`AdminLayer`] (the protected routes, by default): `Authorization: Bearer <admin
//!   token>`, checked as `auth.rs` says, before the handler runs.
//! - [`HostLayer`] (the protected routes of a router whose host authorizes,
//!   [`RouterBuilder::authorize`](super::RouterBuilder::authorize)): the host's
//!   [`Authorize`](super::Authorize) asked before the handler runs, the admin token let
//!   through first where the host keeps it. Its future is boxed: the host's is, anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::auth::{AuthorizeDyn, RouteInfo};
use super::error::{self, ApiError};
use super::metrics::HttpMetrics;
use super::RouteSpec;
use crate::studio::Studio;

/// Counts, times, and keeps every error answer JSON.
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    pub(crate) metrics: Arc<HttpMetrics>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        Observed {
            inner: self.inner.call(request),
            started: Instant::now(),
            method,
            route,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project! {
    pub(crate) struct Observed<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: axum::http::Method,
        route: Option<MatchedPath>,
        metrics: Arc<HttpMetrics>,
    }
}

impl<F, E> Future for Observed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        Poll::Ready(result.map(|response| {
            let response = error::ensure_json_error(response);
            this.metrics.observe(
                this.method,
                this.route.as_ref().map_or("unmatched", |r| r.as_str()),
                response.status(),
                this.started.elapsed(),
            );
            response
        }))
    }
}

/// Refuses a request without the admin token before its handler runs.
#[derive(Clone)]
pub(crate) struct AdminLayer {
    pub(crate) studio: Studio,
}

impl<S> Layer<S> for AdminLayer {
    type Service = Admin<S>;

    fn layer(&self, inner: S) -> Admin<S> {
        Admin {
            inner,
            studio: self.studio.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Admin<S> {
    inner: S,
    studio: Studio,
}

impl<S> Service<Request> for Admin<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if super::auth::is_admin(request.headers(), &self.studio.admin_tokens()) {
            Guarded::Admitted {
                inner: self.inner.call(request),
            }
        } else {
            Guarded::Refused {
                response: Some(ApiError::unauthorized().into_response()),
            }
        }
    }
}

pin_project! {
    #[project = GuardedProj]
    pub(crate) enum Guarded<F> {
        Admitted { #[pin] inner: F },
        Refused { response: Option<Response> },
    }
}

impl<F, E> Future for Guarded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProj::Admitted { inner } => inner.poll(cx),
            GuardedProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| ApiError::unauthorized().into_response()))),
        }
    }
}

/// Asks the host's authorization before a protected route's handler runs.
#[derive(Clone)]
pub(crate) struct HostLayer {
    pub(crate) studio: Studio,
    pub(crate) policy: Arc<dyn AuthorizeDyn>,
    /// The route this layer guards: what the host is told about it.
    pub(crate) route: &'static RouteSpec,
    /// The admin token admits too, without asking the host.
    pub(crate) admin_token_too: bool,
}

impl<S> Layer<S> for HostLayer {
    type Service = Host<S>;

    fn layer(&self, inner: S) -> Host<S> {
        Host {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Host<S> {
    inner: S,
    layer: HostLayer,
}

impl<S> Service<Request> for Host<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.layer.admin_token_too
            && super::auth::is_admin(request.headers(), &self.layer.studio.admin_tokens())
        {
            return Box::pin(self.inner.call(request));
        }
        // The service that was made ready goes with the request; its clone stays.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let policy = self.layer.policy.clone();
        let route = self.layer.route;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let info = match RouteInfo::of(route, &mut parts).await {
                Ok(info) => info,
                Err(refused) => return Ok(refused.into_response()),
            };
            match policy.authorize_dyn(&parts, &info).await {
                Ok(()) => inner.call(Request::from_parts(parts, body)).await,
                Err(refusal) => Ok(ApiError::from(refusal).into_response()),
            }
        })
    }
}
