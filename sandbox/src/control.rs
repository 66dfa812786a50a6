//! What every simulated platform's control handle shares, written once: its world
//! behind one mutex ([`Shared`]), the fault controls the handle derefs to
//! ([`Faults`]), and the router of fault controls ([`fault_routes`]) that the sandbox
//! mounts under each platform's `/sandbox/{platform}` prefix beside the platform's own
//! controls. Each platform file keeps only its world, its API and the controls that
//! are its own.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::faults::{Faults, PendingFaults};
use crate::{lock, unix_now, SandboxError};

/// A platform's world behind one mutex, shared by its control handle and its handlers.
/// No handler holds the lock across an await.
pub(crate) struct Shared<W>(Arc<Mutex<W>>);

impl<W> Shared<W> {
    pub(crate) fn new(world: W) -> Self {
        Shared(Arc::new(Mutex::new(world)))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, W> {
        lock(&self.0)
    }
}

impl<W> Clone for Shared<W> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

/// A world holds client secrets and tokens: a handle's `Debug` never shows it.
impl<W> fmt::Debug for Shared<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("..")
    }
}

/// What the shared fault controls need from a platform's control handle.
pub(crate) trait FaultControl: Clone + Send + Sync + 'static {
    /// The platform's armed faults.
    fn faults(&self) -> &Faults;

    /// How far ahead a rate limit armed without a `reset` says it resets (about the
    /// platform's window); `None` where the platform simulates no rate limit, which
    /// then has no `/rate-limit` control.
    fn rate_window(&self) -> Option<Duration>;

    /// Disarms every fault, including kinds the platform arms on its own.
    fn clear_all(&self);
}

/// The fault controls, the same for every platform: `POST /fail {"calls","status"}`
/// (status a 5xx, 503 when left out), `POST /stall {"calls","millis"}`,
/// `POST /drop {"calls"}`, `POST /rate-limit {"calls","reset"}` (unix seconds, one
/// window from now when left out) and `DELETE /faults`. Each answers what is still
/// armed.
pub(crate) fn fault_routes<C: FaultControl>(control: &C) -> Router {
    let router = Router::new()
        .route("/fail", post(fail::<C>))
        .route("/stall", post(stall::<C>))
        .route("/drop", post(drop_answers::<C>))
        .route("/faults", delete(clear::<C>));
    let router = match control.rate_window() {
        Some(_) => router.route("/rate-limit", post(rate_limit::<C>)),
        None => router,
    };
    router.with_state(control.clone())
}

/// A control's JSON body, or the reason it could not be read.
pub(crate) type ControlBody<T> = Result<Json<T>, JsonRejection>;

/// A control's body, its rejection answered as the sandbox's `invalid_setting`.
pub(crate) fn read_control<T>(body: ControlBody<T>) -> Result<T, SandboxError> {
    body.map(|Json(value)| value)
        .map_err(|rejection| SandboxError::InvalidSetting(rejection.body_text()))
}

#[derive(Debug, Deserialize)]
struct FailControl {
    calls: u32,
    /// A 5xx; 503 when left out.
    status: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct StallControl {
    calls: u32,
    millis: u64,
}

#[derive(Debug, Deserialize)]
struct CallsControl {
    calls: u32,
}

#[derive(Debug, Deserialize)]
struct RateLimitControl {
    calls: u32,
    /// Unix seconds; one window from now when left out.
    reset: Option<u64>,
}

async fn fail<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<FailControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    let status = StatusCode::from_u16(body.status.unwrap_or(503))
        .map_err(|_| SandboxError::InvalidSetting("status is not an HTTP status".into()))?;
    control.faults().fail_next(body.calls, status)?;
    Ok(Json(control.faults().pending_faults()))
}

async fn stall<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<StallControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    control
        .faults()
        .stall_next(body.calls, Duration::from_millis(body.millis));
    Ok(Json(control.faults().pending_faults()))
}

async fn drop_answers<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<CallsControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    control.faults().drop_next(body.calls);
    Ok(Json(control.faults().pending_faults()))
}

async fn rate_limit<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<RateLimitControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    let window = control.rate_window().unwrap_or_default();
    let reset = body.reset.unwrap_or_else(|| unix_now() + window.as_secs());
    control.faults().rate_limit_next(body.calls, reset);
    Ok(Json(control.faults().pending_faults()))
}

async fn clear<C: FaultControl>(State(control): State<C>) -> Json<PendingFaults> {
    control.clear_all();
    Json(control.faults().pending_faults())
}

/// Gives a platform's control handle (a struct with a `faults: Faults` field) the
/// shared fault controls: it derefs to its [`Faults`], and [`fault_routes`] can drive
/// it. `$window` is its [`FaultControl::rate_window`]. `DELETE /faults` calls the
/// handle's own `clear_faults` where it has one (to disarm faults of its own kinds too),
/// else the shared one.
macro_rules! fault_controls {
    ($handle:ident, $window:expr) => {
        impl std::ops::Deref for $handle {
            type Target = $crate::faults::Faults;

            fn deref(&self) -> &Self::Target {
                &self.faults
            }
        }

        impl $crate::control::FaultControl for $handle {
            fn faults(&self) -> &$crate::faults::Faults {
                &self.faults
            }

            fn rate_window(&self) -> Option<std::time::Duration> {
                $window
            }

            fn clear_all(&self) {
                self.clear_faults();
            }
        }
    };
}
pub(crate) use fault_controls;
