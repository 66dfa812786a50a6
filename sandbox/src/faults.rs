//! Fault injection shared by every simulated platform: the next N calls fail with a
//! 5xx, answer only after a delay, lose their answer after being processed, have their
//! answer's body cut short after being processed, or are rate-limited.
//!
//! Failures, stalls, lost answers and cut bodies are applied by [`inject`], a middleware
//! that wraps a platform's token, revoke and API routes (not its authorize page, which a
//! person's browser shows, nor the sandbox controls); each of them can be kept to the
//! calls whose path contains a given text (`/tweets`, `/oauth2/token`), so that a test
//! can aim at publishing or at renewing alone. Rate limits are only armed here: each
//! platform consumes them itself, after authenticating the caller, because the 429
//! shape and headers are the platform's own — except an armed `Retry-After`, which the
//! middleware adds to the 429 an armed rate limit produced.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use tokio::sync::Notify;

use super::{lock, SandboxError};

/// Faults armed for the next calls of one platform. Each kind counts down on its own.
#[derive(Debug, Clone)]
struct Armed {
    /// Calls left that answer `fail_status` instead of being processed.
    fail: Countdown,
    /// The 5xx those calls answer.
    fail_status: StatusCode,
    /// Calls left that wait `stall_for` before being processed.
    stall: Countdown,
    /// How long a stalled call waits: longer than the client's timeout simulates one.
    stall_for: Duration,
    /// Calls left that are processed but whose connection is closed instead of answered.
    drop: Countdown,
    /// Calls left that are processed but whose answer's body is cut short.
    garble: Countdown,
    /// API calls left that answer 429.
    rate_limited: u32,
    /// The unix time those 429s say the window resets at.
    rate_limit_reset: u64,
    /// The `Retry-After` (seconds) those 429s carry besides the platform's own headers.
    rate_limit_retry_after: Option<u64>,
    /// Armed 429s answered whose `Retry-After` the middleware has yet to add.
    retry_after_owed: u32,
}

impl Default for Armed {
    fn default() -> Self {
        Armed {
            fail: Countdown::default(),
            fail_status: StatusCode::SERVICE_UNAVAILABLE,
            stall: Countdown::default(),
            stall_for: Duration::ZERO,
            drop: Countdown::default(),
            garble: Countdown::default(),
            rate_limited: 0,
            rate_limit_reset: 0,
            rate_limit_retry_after: None,
            retry_after_owed: 0,
        }
    }
}

/// Calls left for one kind of fault, and the text a call's path must contain to be one
/// of them (any call when `None`).
#[derive(Debug, Clone, Default)]
struct Countdown {
    left: u32,
    on: Option<String>,
}

impl Countdown {
    fn arm(calls: u32, on: Option<&str>) -> Self {
        Countdown {
            left: calls,
            on: on.map(str::to_owned),
        }
    }

    /// Counts one call down if it is aimed at `path`; true when it was.
    fn take(&mut self, path: &str) -> bool {
        if self.on.as_deref().is_some_and(|on| !path.contains(on)) {
            return false;
        }
        take_one(&mut self.left)
    }
}

/// What is armed right now, for the sandbox's state page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingFaults {
    /// Calls that will still answer a 5xx.
    pub fail: u32,
    /// The status they will answer.
    pub fail_status: u16,
    /// Calls that will still be stalled.
    pub stall: u32,
    /// How long each stall lasts, in milliseconds.
    pub stall_millis: u64,
    /// Calls that will still lose their answer.
    pub drop: u32,
    /// Calls whose answer's body will still be cut short.
    pub garble: u32,
    /// API calls that will still answer 429.
    pub rate_limited: u32,
    /// The reset time those 429s announce (unix seconds).
    pub rate_limit_reset: u64,
    /// The `Retry-After` (seconds) they carry besides the platform's own headers, if any.
    pub rate_limit_retry_after: Option<u64>,
}

/// The faults armed for one platform: the controls every platform's handle shares.
/// `XControl`, `PinterestControl` and the others deref to it, so
/// `sandbox.x().fail_next(1, StatusCode::SERVICE_UNAVAILABLE)` is written once here.
/// Failures, stalls and lost answers apply to the platform's token, revoke and API
/// calls; each platform answers an armed rate limit in its own shape (headers, body),
/// described in its module. A cheap clone, shared with the platform's middleware.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    armed: Arc<Mutex<Armed>>,
}

impl Faults {
    /// The next `calls` calls answer `status`, which must be a 5xx, without being
    /// processed: only a server error is a fault the platform could answer that way.
    pub fn fail_next(&self, calls: u32, status: StatusCode) -> Result<(), SandboxError> {
        self.fail_next_on(calls, status, None)
    }

    /// [`Faults::fail_next`], counting only calls whose path contains `on` (any call
    /// when `None`).
    pub fn fail_next_on(
        &self,
        calls: u32,
        status: StatusCode,
        on: Option<&str>,
    ) -> Result<(), SandboxError> {
        if !status.is_server_error() {
            return Err(SandboxError::InvalidSetting(format!(
                "fail_next takes a 5xx status, not {status}"
            )));
        }
        let mut armed = lock(&self.armed);
        armed.fail = Countdown::arm(calls, on);
        armed.fail_status = status;
        Ok(())
    }

    /// The next `calls` calls wait `delay` before being processed: a client that times
    /// out first leaves nothing done.
    pub fn stall_next(&self, calls: u32, delay: Duration) {
        self.stall_next_on(calls, delay, None);
    }

    /// [`Faults::stall_next`], counting only calls whose path contains `on`.
    pub fn stall_next_on(&self, calls: u32, delay: Duration, on: Option<&str>) {
        let mut armed = lock(&self.armed);
        armed.stall = Countdown::arm(calls, on);
        armed.stall_for = delay;
    }

    /// The next `calls` calls are processed — tokens rotated, posts published — but the
    /// connection is closed instead of answered: the "answer lost" case.
    pub fn drop_next(&self, calls: u32) {
        self.drop_next_on(calls, None);
    }

    /// [`Faults::drop_next`], counting only calls whose path contains `on`.
    pub fn drop_next_on(&self, calls: u32, on: Option<&str>) {
        lock(&self.armed).drop = Countdown::arm(calls, on);
    }

    /// The next `calls` calls whose path contains `on` (any call when `None`) are
    /// processed — tokens rotated, posts published — and answered with their status
    /// and headers, but with only the first half of their body: a malformed answer, as
    /// a proxy that cut the response short or a platform's own bug produces. An answer
    /// whose body is empty (LinkedIn's post id travels in a header) stays as it was.
    pub fn garble_next(&self, calls: u32, on: Option<&str>) {
        lock(&self.armed).garble = Countdown::arm(calls, on);
    }

    /// The next `calls` API calls answer 429 in the platform's shape, announcing
    /// `reset_unix_secs` where the platform announces a reset. A platform that
    /// simulates no rate limit (YouTube, whose limit is its quota) never consumes them.
    pub fn rate_limit_next(&self, calls: u32, reset_unix_secs: u64) {
        self.rate_limit_next_with(calls, reset_unix_secs, None);
    }

    /// [`Faults::rate_limit_next`], each 429 also carrying `Retry-After: {secs}` when
    /// `retry_after` is given, as a gateway in front of the platform may add.
    pub fn rate_limit_next_with(&self, calls: u32, reset_unix_secs: u64, retry_after: Option<u64>) {
        let mut armed = lock(&self.armed);
        armed.rate_limited = calls;
        armed.rate_limit_reset = reset_unix_secs;
        armed.rate_limit_retry_after = retry_after;
    }

    /// Disarms every pending failure, stall, lost answer and rate limit.
    pub fn clear_faults(&self) {
        *lock(&self.armed) = Armed::default();
    }

    /// What is still armed.
    pub fn pending_faults(&self) -> PendingFaults {
        let armed = lock(&self.armed).clone();
        PendingFaults {
            fail: armed.fail.left,
            fail_status: armed.fail_status.as_u16(),
            stall: armed.stall.left,
            stall_millis: u64::try_from(armed.stall_for.as_millis()).unwrap_or(u64::MAX),
            drop: armed.drop.left,
            garble: armed.garble.left,
            rate_limited: armed.rate_limited,
            rate_limit_reset: armed.rate_limit_reset,
            rate_limit_retry_after: armed.rate_limit_retry_after,
        }
    }

    /// Consumes one armed 429, if any, and returns the reset time it announces.
    pub(crate) fn take_rate_limit(&self) -> Option<u64> {
        let mut armed = lock(&self.armed);
        if !take_one(&mut armed.rate_limited) {
            return None;
        }
        if armed.rate_limit_retry_after.is_some() {
            armed.retry_after_owed += 1;
        }
        Some(armed.rate_limit_reset)
    }

    /// The `Retry-After` owed to a 429 an armed rate limit produced, if any.
    fn take_retry_after(&self) -> Option<u64> {
        let mut armed = lock(&self.armed);
        take_one(&mut armed.retry_after_owed)
            .then_some(armed.rate_limit_retry_after)
            .flatten()
    }

    fn take_stall(&self, path: &str) -> Option<Duration> {
        let mut armed = lock(&self.armed);
        armed.stall.take(path).then_some(armed.stall_for)
    }

    fn take_failure(&self, path: &str) -> Option<StatusCode> {
        let mut armed = lock(&self.armed);
        armed.fail.take(path).then_some(armed.fail_status)
    }

    fn take_drop(&self, path: &str) -> bool {
        lock(&self.armed).drop.take(path)
    }

    fn take_garble(&self, path: &str) -> bool {
        lock(&self.armed).garble.take(path)
    }
}

/// Counts one armed fault down; true when there was one to use.
fn take_one(left: &mut u32) -> bool {
    if *left == 0 {
        return false;
    }
    *left -= 1;
    true
}

/// What the middleware needs from a platform: its armed faults and how that platform
/// words a server error.
#[derive(Clone)]
pub(crate) struct FaultPoint {
    pub(crate) faults: Faults,
    pub(crate) render_failure: fn(StatusCode) -> Response,
}

/// Applies armed faults around one call.
///
/// A stall waits *before* processing: a client that gives up in the meantime leaves
/// nothing done, which is what a timeout usually means. A lost answer is the opposite
/// case — the platform did the work (rotated the token, published the post) and only
/// the answer never arrived.
pub(crate) async fn inject(
    State(point): State<FaultPoint>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(delay) = point.faults.take_stall(&path) {
        tracing::debug!(?delay, "sandbox stalling a call, as asked");
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = point.faults.take_failure(&path) {
        tracing::debug!(%status, "sandbox failing a call, as asked");
        return (point.render_failure)(status);
    }
    // Decided before processing so that concurrent calls cannot both claim one drop.
    let lose_answer = point.faults.take_drop(&path);
    let garble = !lose_answer && point.faults.take_garble(&path);
    let connection = request.extensions().get::<ConnectionHandle>().cloned();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        if let Some(secs) = point.faults.take_retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
    if garble {
        tracing::debug!("sandbox cutting an answer's body short, as asked");
        return cut_short(response).await;
    }
    if lose_answer {
        match connection {
            Some(connection) => {
                connection.abort();
                // The connection task drops this future along with the socket.
                return std::future::pending().await;
            }
            None => {
                tracing::warn!("sandbox asked to lose an answer on a request without a connection")
            }
        }
    }
    response
}

/// `response` with only the first half of its body (rounded down, so a body of one
/// byte or more loses at least one), its status and other headers kept.
async fn cut_short(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "sandbox could not read an answer it was asked to cut");
            Default::default()
        }
    };
    let kept = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(kept))
}

/// Lets a handler close the connection its request came on, without answering.
/// The server puts one into every request's extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionHandle {
    abort: Arc<Notify>,
}

impl ConnectionHandle {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Asks the connection's task to drop the connection now.
    pub(crate) fn abort(&self) {
        // notify_one keeps a permit if the task is not waiting yet, so this is never lost.
        self.abort.notify_one();
    }

    /// Resolves once `abort` has been called.
    pub(crate) async fn aborted(&self) {
        self.abort.notified().await;
    }
}
