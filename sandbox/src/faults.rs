//! Fault injection shared by every simulated platform: the next N calls fail with a
//! 5xx, answer only after a delay, lose their answer after being processed, or are
//! rate-limited.
//!
//! Failures, stalls and lost answers are applied by [`inject`], a middleware that
//! wraps a platform's token, revoke and API routes (not its authorize page, which a
//! person's browser shows, nor the sandbox controls). Rate limits are only armed here:
//! each platform consumes them itself, after authenticating the caller, because the
//! 429 shape and headers are the platform's own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use tokio::sync::Notify;

use super::{lock, SandboxError};

/// Faults armed for the next calls of one platform. Each kind counts down on its own.
#[derive(Debug, Clone, Copy)]
struct Armed {
    /// Calls left that answer `fail_status` instead of being processed.
    fail: u32,
    /// The 5xx those calls answer.
    fail_status: StatusCode,
    /// Calls left that wait `stall_for` before being processed.
    stall: u32,
    /// How long a stalled call waits: longer than the client's timeout simulates one.
    stall_for: Duration,
    /// Calls left that are processed but whose connection is closed instead of answered.
    drop: u32,
    /// API calls left that answer 429.
    rate_limited: u32,
    /// The unix time those 429s say the window resets at.
    rate_limit_reset: u64,
}

impl Default for Armed {
    fn default() -> Self {
        Armed {
            fail: 0,
            fail_status: StatusCode::SERVICE_UNAVAILABLE,
            stall: 0,
            stall_for: Duration::ZERO,
            drop: 0,
            rate_limited: 0,
            rate_limit_reset: 0,
        }
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
    /// API calls that will still answer 429.
    pub rate_limited: u32,
    /// The reset time those 429s announce (unix seconds).
    pub rate_limit_reset: u64,
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
        if !status.is_server_error() {
            return Err(SandboxError::InvalidSetting(format!(
                "fail_next takes a 5xx status, not {status}"
            )));
        }
        let mut armed = lock(&self.armed);
        armed.fail = calls;
        armed.fail_status = status;
        Ok(())
    }

    /// The next `calls` calls wait `delay` before being processed: a client that times
    /// out first leaves nothing done.
    pub fn stall_next(&self, calls: u32, delay: Duration) {
        let mut armed = lock(&self.armed);
        armed.stall = calls;
        armed.stall_for = delay;
    }

    /// The next `calls` calls are processed — tokens rotated, posts published — but the
    /// connection is closed instead of answered: the "answer lost" case.
    pub fn drop_next(&self, calls: u32) {
        lock(&self.armed).drop = calls;
    }

    /// The next `calls` API calls answer 429 in the platform's shape, announcing
    /// `reset_unix_secs` where the platform announces a reset. A platform that
    /// simulates no rate limit (YouTube, whose limit is its quota) never consumes them.
    pub fn rate_limit_next(&self, calls: u32, reset_unix_secs: u64) {
        let mut armed = lock(&self.armed);
        armed.rate_limited = calls;
        armed.rate_limit_reset = reset_unix_secs;
    }

    /// Disarms every pending failure, stall, lost answer and rate limit.
    pub fn clear_faults(&self) {
        *lock(&self.armed) = Armed::default();
    }

    /// What is still armed.
    pub fn pending_faults(&self) -> PendingFaults {
        let armed = *lock(&self.armed);
        PendingFaults {
            fail: armed.fail,
            fail_status: armed.fail_status.as_u16(),
            stall: armed.stall,
            stall_millis: u64::try_from(armed.stall_for.as_millis()).unwrap_or(u64::MAX),
            drop: armed.drop,
            rate_limited: armed.rate_limited,
            rate_limit_reset: armed.rate_limit_reset,
        }
    }

    /// Consumes one armed 429, if any, and returns the reset time it announces.
    pub(crate) fn take_rate_limit(&self) -> Option<u64> {
        let mut armed = lock(&self.armed);
        take_one(&mut armed.rate_limited).then_some(armed.rate_limit_reset)
    }

    fn take_stall(&self) -> Option<Duration> {
        let mut armed = lock(&self.armed);
        take_one(&mut armed.stall).then_some(armed.stall_for)
    }

    fn take_failure(&self) -> Option<StatusCode> {
        let mut armed = lock(&self.armed);
        take_one(&mut armed.fail).then_some(armed.fail_status)
    }

    fn take_drop(&self) -> bool {
        take_one(&mut lock(&self.armed).drop)
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
    if let Some(delay) = point.faults.take_stall() {
        tracing::debug!(?delay, "sandbox stalling a call, as asked");
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = point.faults.take_failure() {
        tracing::debug!(%status, "sandbox failing a call, as asked");
        return (point.render_failure)(status);
    }
    // Decided before processing so that concurrent calls cannot both claim one drop.
    let lose_answer = point.faults.take_drop();
    let connection = request.extensions().get::<ConnectionHandle>().cloned();
    let response = next.run(request).await;
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
