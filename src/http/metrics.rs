//! `GET /metrics`: Prometheus text. Every metric's name starts with `social_studio_`,
//! so that an embedding application's own metrics (often `http_requests_total` too)
//! never collide with the engine's.
//!
//! - `social_studio_http_requests_total{method, route, status}` and
//!   `social_studio_http_request_duration_seconds{method, route, status}`, with the route
//!   template (`/v1/pen-names/{pen}/posts`), never the raw path: pen names and ids would
//!   make a series per author.
//! - `social_studio_connections{status}`, `social_studio_connection_restarts`,
//!   `social_studio_queue_posts{platform, state}` and
//!   `social_studio_queue_backed_off_connections{platform}`: read from the supervisor at
//!   scrape time.
//! - `social_studio_media_memory_bytes{kind="held"|"budget"}` and
//!   `social_studio_media_fetches_waiting`: fetched media held in memory against the
//!   `media_memory_bytes` budget, and fetches waiting for room in it.
//! - `social_studio_store_healthy` (1 while the store takes the engine's writes, 0 from a
//!   failed commit until the next that holds) and
//!   `social_studio_store_commit_failures_total` (commits the store refused since the
//!   engine started): read from the engine's store-health flag at scrape time, without a
//!   message, so they answer even when the supervisor is slow.
//! - `social_studio_events_total{kind}`: every event the engine emitted since this router
//!   was built, counted by a task subscribed to the event bus.
//! - `social_studio_platform_requests_total{platform, endpoint, status}` and the histogram
//!   `social_studio_platform_request_duration_seconds{platform, endpoint}`: every call
//!   the adapters made to their platforms since the studio opened (`status` the HTTP
//!   code, or `timeout` / `transport_error`; `endpoint` one of a fixed set of names —
//!   see `platforms::outbound::call_metrics`). Counted by the studio, which adapters
//!   know, not by this router, which they do not.
//!
//! The recorder belongs to the router, not the process: the library never installs a
//! global recorder behind an embedding application's back, and two routers in one test
//! binary do not share counts.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::AppState;
use crate::studio::Studio;

/// This router's metrics.
pub(crate) struct HttpMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl HttpMetrics {
    /// A fresh recorder, and (inside a tokio runtime) the task that counts events.
    pub(crate) fn start(studio: &Studio) -> Arc<HttpMetrics> {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let this = Arc::new(HttpMetrics { recorder, handle });
        metrics::with_local_recorder(&this.recorder, || {
            metrics::describe_counter!(
                "social_studio_http_requests_total",
                "HTTP requests answered"
            );
            metrics::describe_histogram!(
                "social_studio_http_request_duration_seconds",
                metrics::Unit::Seconds,
                "time to answer an HTTP request (to the response head)"
            );
            metrics::describe_counter!("social_studio_events_total", "events the engine emitted");
            metrics::describe_gauge!("social_studio_connections", "connections by status");
            metrics::describe_gauge!(
                "social_studio_media_memory_bytes",
                metrics::Unit::Bytes,
                "fetched media held in memory for upload, and the budget for them"
            );
            metrics::describe_gauge!(
                "social_studio_store_healthy",
                "1 while the store takes the engine's writes, 0 while it refuses them"
            );
            metrics::describe_counter!(
                "social_studio_store_commit_failures_total",
                "commits the store refused since the engine started"
            );
            metrics::describe_gauge!(
                "social_studio_queue_posts",
                "posts held by each platform queue, by state"
            );
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Holds a weak reference, so the task ends with the router (or the engine).
            let weak = Arc::downgrade(&this);
            runtime.spawn(count_events(studio.subscribe(), weak));
        }
        this
    }

    fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }
}

async fn count_events(
    mut events: broadcast::Receiver<social_studio_storage::Event>,
    metrics: std::sync::Weak<HttpMetrics>,
) {
    loop {
        let received = events.recv().await;
        let Some(metrics) = metrics.upgrade() else {
            return;
        };
        match received {
            Ok(event) => {
                let kind = serde_json::to_value(event.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                metrics.record(|| {
                    metrics::counter!("social_studio_events_total", "kind" => kind).increment(1)
                });
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => metrics.record(|| {
                metrics::counter!("social_studio_events_total", "kind" => "missed_by_metrics")
                    .increment(missed)
            }),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl HttpMetrics {
    /// Counts and times one answered request by route template and status. The labels
    /// are static strings wherever they can be, so a request allocates none.
    pub(crate) fn observe(
        &self,
        method: &axum::http::Method,
        route: &str,
        status: axum::http::StatusCode,
        elapsed: std::time::Duration,
    ) {
        let method: metrics::SharedString = method_label(method).into();
        let route: metrics::SharedString = match super::static_route(route) {
            Some(r) => r.into(),
            None => route.to_owned().into(),
        };
        let status: metrics::SharedString = match status_str(status) {
            Some(s) => s.into(),
            None => status.as_u16().to_string().into(),
        };
        self.record(|| {
            let labels = [
                metrics::Label::new("method", method),
                metrics::Label::new("route", route),
                metrics::Label::new("status", status),
            ];
            metrics::counter!("social_studio_http_requests_total", labels.iter()).increment(1);
            metrics::histogram!("social_studio_http_request_duration_seconds", labels.iter())
                .record(elapsed.as_secs_f64());
        });
    }
}

/// The method as a label: the standard methods by name, any other as `OTHER`, so that a
/// client inventing methods cannot grow the number of series without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The codes the API answers most, as static strings.
fn status_str(status: axum::http::StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        302 => "302",
        303 => "303",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        _ => return None,
    })
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, description = "no or wrong admin token", body = super::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub(crate) async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    // The engine's figures are read now rather than tracked, so they are never stale.
    let health = state.studio.store_health();
    state.metrics.record(|| {
        metrics::gauge!("social_studio_store_healthy").set(if health.is_healthy() {
            1.0
        } else {
            0.0
        });
        metrics::counter!("social_studio_store_commit_failures_total")
            .absolute(health.commit_failures());
    });
    if let Ok(report) = state.studio.supervisor().await {
        state.metrics.record(|| {
            for (status, count) in [
                ("active", report.connections_active),
                ("expired", report.connections_expired),
                ("error", report.connections_error),
            ] {
                metrics::gauge!("social_studio_connections", "status" => status).set(count as f64);
            }
            metrics::gauge!("social_studio_connection_restarts").set(report.restarts as f64);
            for (platform, stats) in &report.queues {
                let p = platform.id();
                for (queue_state, count) in [
                    ("scheduled", stats.scheduled),
                    ("paused", stats.paused),
                    ("publishing", stats.publishing),
                ] {
                    metrics::gauge!("social_studio_queue_posts", "platform" => p, "state" => queue_state)
                        .set(count as f64);
                }
                metrics::gauge!("social_studio_queue_backed_off_connections", "platform" => p)
                    .set(stats.backed_off_connections as f64);
            }
        });
    }
    let media = state.studio.media_budget();
    state.metrics.record(|| {
        for (kind, bytes) in [("held", media.in_use()), ("budget", media.capacity())] {
            metrics::gauge!("social_studio_media_memory_bytes", "kind" => kind).set(bytes as f64);
        }
        metrics::gauge!("social_studio_media_fetches_waiting").set(media.waiting() as f64);
    });
    // The engine's count of platform calls is the studio's, not this router's: rendered
    // beside the router's own families (no name is in both).
    let mut text = state.metrics.handle.render();
    text.push_str(&state.studio.platform_call_metrics().render());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
