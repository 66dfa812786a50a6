//! Counting and timing every call the engine makes to a platform (and every media fetch
//! made for one), by platform, by a named endpoint, and by what came back.
//!
//! The `/metrics` recorder belongs to the HTTP router, and adapters know no router; so the
//! engine keeps one [`PlatformCallMetrics`] (owned by `Studio`, handed to every adapter
//! through [`Outbound`](super::Outbound)), and `/metrics` renders it beside its own:
//!
//! - `social_studio_platform_requests_total{platform, endpoint, status}`: `status` is the
//!   HTTP status code, or `timeout` / `transport_error` when no whole answer came (none,
//!   or one that broke off while its body was read);
//! - `social_studio_platform_request_duration_seconds{platform, endpoint}`: a histogram
//!   of the time from sending to the whole answer read (or the failure).
//!
//! `endpoint` is an [`Endpoint`], a closed set of names chosen at each call site: never a
//! URL, an id or an address an author chose, so the number of series is bounded. A
//! request the public-only guard refused never left the machine and is not counted.
//!
//! Like the router's, the recorder is this value's own, never a global one.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use reqwest::StatusCode;
use social_studio_storage::Platform;

const REQUESTS: &str = "social_studio_platform_requests_total";
const DURATION: &str = "social_studio_platform_request_duration_seconds";

/// Bucket bounds of the latency histogram, in seconds: from a fast API answer to the
/// whole-request timeout of an upload.
const BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// What a platform call is, as the metrics and the log name it. A closed set, so that a
/// label can never carry an id or a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An authorization code exchanged for tokens (connect), or a session opened with an
    /// app password.
    Token,
    /// A grant renewed: a refresh token spent, a long-lived token extended, a session
    /// refreshed.
    Refresh,
    /// A grant revoked at disconnect.
    Revoke,
    /// Who the grant speaks for, and what it may do (connect, verify, checks).
    Identity,
    /// Where posts can land inside the account (boards, pages, channels).
    Targets,
    /// Where an account lives (a DID document, its PDS).
    Resolve,
    /// A post created, or a step of creating one (a container, an upload session).
    Publish,
    /// The state of a post being published, polled until it settles.
    PublishStatus,
    /// An author's media sent to the platform.
    MediaUpload,
    /// An author's media fetched from its URL, for an upload.
    MediaFetch,
}

impl Endpoint {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Refresh => "refresh",
            Endpoint::Revoke => "revoke",
            Endpoint::Identity => "identity",
            Endpoint::Targets => "targets",
            Endpoint::Resolve => "resolve",
            Endpoint::Publish => "publish",
            Endpoint::PublishStatus => "publish_status",
            Endpoint::MediaUpload => "media_upload",
            Endpoint::MediaFetch => "media_fetch",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call ended, for its `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer came, with this status.
    Answered(StatusCode),
    /// No answer within the timeout.
    TimedOut,
    /// No answer: the connection failed or broke.
    TransportError,
}

impl Outcome {
    /// The outcome of a reqwest error that left no answer.
    pub fn of_error(error: &reqwest::Error) -> Outcome {
        if error.is_timeout() {
            Outcome::TimedOut
        } else {
            Outcome::TransportError
        }
    }

    fn label(self) -> metrics::SharedString {
        match self {
            Outcome::Answered(status) => match status.as_str() {
                // The codes platforms answer most, without an allocation.
                "200" => "200".into(),
                "201" => "201".into(),
                "204" => "204".into(),
                "400" => "400".into(),
                "401" => "401".into(),
                "403" => "403".into(),
                "404" => "404".into(),
                "429" => "429".into(),
                "500" => "500".into(),
                "503" => "503".into(),
                other => other.to_owned().into(),
            },
            Outcome::TimedOut => "timeout".into(),
            Outcome::TransportError => "transport_error".into(),
        }
    }
}

/// The engine's one count of platform calls. Cheap to clone: clones share the counts.
#[derive(Clone)]
pub struct PlatformCallMetrics {
    inner: Arc<Recorder>,
}

struct Recorder {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for PlatformCallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCallMetrics")
            .finish_non_exhaustive()
    }
}

impl Default for PlatformCallMetrics {
    fn default() -> PlatformCallMetrics {
        PlatformCallMetrics::new()
    }
}

impl PlatformCallMetrics {
    /// A fresh count, with nothing counted yet.
    pub fn new() -> PlatformCallMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), BUCKETS)
            .unwrap_or_else(|error| unreachable!("constant, non-empty buckets: {error}"))
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                REQUESTS,
                "calls made to platforms (and media fetches for them), by what came back"
            );
            metrics::describe_histogram!(
                DURATION,
                metrics::Unit::Seconds,
                "time from sending a platform call to its whole answer (or its failure)"
            );
        });
        PlatformCallMetrics {
            inner: Arc::new(Recorder { recorder, handle }),
        }
    }

    /// Counts and times one call.
    pub fn observe(
        &self,
        platform: Platform,
        endpoint: Endpoint,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let platform: metrics::SharedString = platform.id().into();
        let endpoint: metrics::SharedString = endpoint.as_str().into();
        metrics::with_local_recorder(&self.inner.recorder, || {
            metrics::counter!(
                REQUESTS,
                "platform" => platform.clone(),
                "endpoint" => endpoint.clone(),
                "status" => outcome.label()
            )
            .increment(1);
            metrics::histogram!(DURATION, "platform" => platform, "endpoint" => endpoint)
                .record(elapsed.as_secs_f64());
        });
    }

    /// The counts as Prometheus text, to be served beside the router's own.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }
}

/// One adapter's view of the metrics: its platform, for every call it counts.
#[derive(Debug, Clone)]
pub struct CallMeter {
    platform: Platform,
    metrics: PlatformCallMetrics,
}

impl CallMeter {
    /// Counts `platform`'s calls into `metrics`.
    pub fn new(platform: Platform, metrics: PlatformCallMetrics) -> CallMeter {
        CallMeter { platform, metrics }
    }

    /// The platform counted for.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// A call to `endpoint`, to hand to [`exchange`](super::exchange).
    pub fn call(&self, endpoint: Endpoint) -> Call<'_> {
        Call {
            meter: self,
            endpoint,
        }
    }
}

/// One call about to be made: whose it is and what it is. Every request an adapter sends
/// names one ([`exchange`](super::exchange) takes it), so no call goes uncounted.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    meter: &'a CallMeter,
    endpoint: Endpoint,
}

impl Call<'_> {
    /// The platform called.
    pub fn platform(&self) -> Platform {
        self.meter.platform
    }

    /// What is called.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Counts the call as ended with `outcome` after `elapsed`, and logs it (at DEBUG, in
    /// whatever span the caller is in: the connection's or the post's).
    pub fn finished(&self, outcome: Outcome, elapsed: Duration) {
        self.meter
            .metrics
            .observe(self.meter.platform, self.endpoint, outcome, elapsed);
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Outcome::Answered(status) => tracing::debug!(
                platform = %self.meter.platform,
                endpoint = self.endpoint.as_str(),
                status = status.as_u16(),
                elapsed_ms,
                "platform call answered"
            ),
            Outcome::TimedOut | Outcome::TransportError => tracing::debug!(
                platform = %self.meter.platform,
                endpoint = self.endpoint.as_str(),
                status = %outcome.label(),
                elapsed_ms,
                "platform call got no answer"
            ),
        }
    }
}
