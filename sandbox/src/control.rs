//! What every simulated platform's control handle shares, written once: its world
//! behind one mutex ([`Shared`]), the fault controls the handle derefs to
//! ([`Faults`]), the router of fault controls ([`fault_routes`]) that the sandbox
//! mounts under each platform's `/sandbox/{platform}` prefix beside the platform's own
//! controls, and, for the OAuth 2.0 platforms, the controls over the app registration
//! and what was granted to it ([`GrantControl`], [`grant_controls!`],
//! [`grant_routes`]). Each platform file keeps only its world, its API and the
//! controls that are its own.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::{Faults, PendingFaults};
use crate::oauth::{GrantWorld, RevokeCause, RevokedToken, TokenRequest};
use crate::{lock, unix_now, SandboxError, Secret};

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
/// `POST /drop {"calls"}`, `POST /garble {"calls"}` (processed, the answer's body cut
/// in half), `POST /rate-limit {"calls","reset","retry_after"}` (reset in unix seconds,
/// one window from now when left out; `retry_after` in seconds adds a `Retry-After`
/// header) and `DELETE /faults`. `fail`, `stall`, `drop` and `garble` take an optional
/// `"on"`: only calls whose path contains it count. Each answers what is still armed.
pub(crate) fn fault_routes<C: FaultControl>(control: &C) -> Router {
    let router = Router::new()
        .route("/fail", post(fail::<C>))
        .route("/stall", post(stall::<C>))
        .route("/drop", post(drop_answers::<C>))
        .route("/garble", post(garble_answers::<C>))
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
    /// Only calls whose path contains this count; any call when left out.
    on: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StallControl {
    calls: u32,
    millis: u64,
    on: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CallsControl {
    calls: u32,
    on: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RateLimitControl {
    calls: u32,
    /// Unix seconds; one window from now when left out.
    reset: Option<u64>,
    /// Seconds, sent as `Retry-After` besides the platform's own headers.
    retry_after: Option<u64>,
}

async fn fail<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<FailControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    let status = StatusCode::from_u16(body.status.unwrap_or(503))
        .map_err(|_| SandboxError::InvalidSetting("status is not an HTTP status".into()))?;
    control
        .faults()
        .fail_next_on(body.calls, status, body.on.as_deref())?;
    Ok(Json(control.faults().pending_faults()))
}

async fn stall<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<StallControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    control.faults().stall_next_on(
        body.calls,
        Duration::from_millis(body.millis),
        body.on.as_deref(),
    );
    Ok(Json(control.faults().pending_faults()))
}

async fn drop_answers<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<CallsControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    control
        .faults()
        .drop_next_on(body.calls, body.on.as_deref());
    Ok(Json(control.faults().pending_faults()))
}

async fn garble_answers<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<CallsControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    control.faults().garble_next(body.calls, body.on.as_deref());
    Ok(Json(control.faults().pending_faults()))
}

async fn rate_limit<C: FaultControl>(
    State(control): State<C>,
    body: ControlBody<RateLimitControl>,
) -> Result<Json<PendingFaults>, SandboxError> {
    let body = read_control(body)?;
    let window = control.rate_window().unwrap_or_default();
    let reset = body.reset.unwrap_or_else(|| unix_now() + window.as_secs());
    control
        .faults()
        .rate_limit_next_with(body.calls, reset, body.retry_after);
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

/// The controls over an OAuth platform's app registration and what was granted to it,
/// the same for every platform that embeds an [`OAuthApp`](crate::oauth::OAuthApp).
/// Written once here as provided methods; [`grant_controls!`] makes them inherent methods of a handle, so
/// that callers need not import this trait, and [`grant_routes`] serves them.
pub(crate) trait GrantControl: Clone + Send + Sync + 'static {
    type World: GrantWorld;

    /// The platform's id, for the log.
    const PLATFORM: &'static str;

    /// The world the handle shares with the platform's handlers.
    fn grant_world(&self) -> &Shared<Self::World>;

    /// The client id the sandbox accepts (default `sandbox-{platform}-client`).
    fn client_id(&self) -> String {
        self.grant_world().lock().app().client_id.clone()
    }

    /// Sets the client credentials the sandbox accepts (defaults
    /// `sandbox-{platform}-client` / `sandbox-{platform}-secret`).
    fn set_client(&self, client_id: impl Into<String>, client_secret: impl Into<String>) {
        let mut world = self.grant_world().lock();
        let app = world.app_mut();
        app.client_id = client_id.into();
        app.client_secret = Secret::new(client_secret);
    }

    /// Lifetime of access tokens issued from now on (the default is the platform's
    /// documented one; its module says which).
    fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.grant_world().lock().app_mut().access_lifetime = lifetime;
    }

    /// Lifetime of authorization codes issued from now on.
    fn set_code_lifetime(&self, lifetime: Duration) {
        self.grant_world().lock().app_mut().code_lifetime = lifetime;
    }

    /// The app's registered callback URLs, matched exactly. Empty (the default) accepts
    /// any http(s) URL, so that tests need not know their port in advance.
    fn set_redirect_uris(&self, uris: Vec<String>) {
        self.grant_world().lock().app_mut().redirect_uris = uris;
    }

    /// The user removed the app in their settings: every access and refresh token of
    /// theirs stops working. Returns how many tokens were still usable.
    fn revoke_user_grants(&self, user: &str) -> Result<usize, SandboxError> {
        let mut world = self.grant_world().lock();
        let owner = world.grant_owner(user)?;
        let count = world
            .app_mut()
            .tokens
            .revoke_user(&owner, RevokeCause::UserRevokedApp)
            + world.revoke_own_grants(&owner);
        tracing::info!(
            platform = Self::PLATFORM,
            user = owner,
            count,
            "user revoked the app"
        );
        Ok(count)
    }

    /// The user's access tokens lapse now; refresh tokens keep working. Returns how
    /// many access tokens were still live.
    fn expire_access_tokens(&self, user: &str) -> Result<usize, SandboxError> {
        let mut world = self.grant_world().lock();
        let owner = world.grant_owner(user)?;
        Ok(world.app_mut().tokens.expire_access_of_user(&owner))
    }

    /// How many `grant_type=refresh_token` requests reached the token endpoint,
    /// whatever their outcome (injected failures excepted: they never reach it).
    fn refresh_calls(&self) -> u64 {
        self.grant_world().lock().app().refresh_calls
    }

    /// Every request that reached the token endpoint, oldest first. A test asserts that
    /// no spent refresh token was ever sent with
    /// `token_requests().iter().all(|r| r.outcome != TokenOutcome::RefreshTokenReused)`.
    fn token_requests(&self) -> Vec<TokenRequest> {
        self.grant_world().lock().app().token_log.clone()
    }

    /// Every token of the shared token store revoked so far, oldest first.
    fn revoked_tokens(&self) -> Vec<RevokedToken> {
        self.grant_world().lock().app().tokens.revoked().to_vec()
    }
}

/// Gives a platform's control handle the grant controls of [`GrantControl`] as
/// inherent methods, so that `sandbox.x().revoke_user_grants(..)` needs no import, and
/// makes its world a [`GrantWorld`]. The handle needs a `world: Shared<$world>` field
/// and the world an `app: OAuthApp` field; `$platform` is the platform's id for the
/// log; `owner` is [`GrantWorld::grant_owner`] and `revoke_own`, where the platform
/// keeps grants of its own, [`GrantWorld::revoke_own_grants`].
macro_rules! grant_controls {
    (
        $handle:ident,
        $world:ident,
        $platform:literal,
        owner = $owner:expr,
        revoke_own = $revoke_own:expr $(,)?
    ) => {
        impl $crate::oauth::GrantWorld for $world {
            fn app(&self) -> &$crate::oauth::OAuthApp {
                &self.app
            }

            fn app_mut(&mut self) -> &mut $crate::oauth::OAuthApp {
                &mut self.app
            }

            fn grant_owner(&self, who: &str) -> Result<String, $crate::SandboxError> {
                let owner: fn(&$world, &str) -> Result<String, $crate::SandboxError> = $owner;
                owner(self, who)
            }

            fn revoke_own_grants(&mut self, owner: &str) -> usize {
                let revoke_own: fn(&mut $world, &str) -> usize = $revoke_own;
                revoke_own(self, owner)
            }
        }

        $crate::control::grant_controls!(@handle $handle, $world, $platform);
    };
    ($handle:ident, $world:ident, $platform:literal, owner = $owner:expr $(,)?) => {
        $crate::control::grant_controls!($handle, $world, $platform, owner = $owner, revoke_own = |_, _| 0);
    };
    (@handle $handle:ident, $world:ident, $platform:literal) => {
        impl $crate::control::GrantControl for $handle {
            type World = $world;

            const PLATFORM: &'static str = $platform;

            fn grant_world(&self) -> &$crate::control::Shared<$world> {
                &self.world
            }
        }

        /// The app registration and grant controls, the same on every OAuth platform:
        /// written once in the sandbox's `control` module.
        impl $handle {
            /// The client id the sandbox accepts (default `sandbox-{platform}-client`).
            pub fn client_id(&self) -> String {
                $crate::control::GrantControl::client_id(self)
            }

            /// Sets the client credentials the sandbox accepts (defaults
            /// `sandbox-{platform}-client` / `sandbox-{platform}-secret`).
            pub fn set_client(
                &self,
                client_id: impl Into<String>,
                client_secret: impl Into<String>,
            ) {
                $crate::control::GrantControl::set_client(self, client_id, client_secret)
            }

            /// Lifetime of access tokens issued from now on (the default is the
            /// platform's documented one, given in its module).
            pub fn set_access_token_lifetime(&self, lifetime: std::time::Duration) {
                $crate::control::GrantControl::set_access_token_lifetime(self, lifetime)
            }

            /// Lifetime of authorization codes issued from now on.
            pub fn set_code_lifetime(&self, lifetime: std::time::Duration) {
                $crate::control::GrantControl::set_code_lifetime(self, lifetime)
            }

            /// The app's registered callback URLs, matched exactly. Empty (the
            /// default) accepts any http(s) URL, so that tests need not know their
            /// port in advance.
            pub fn set_redirect_uris(&self, uris: Vec<String>) {
                $crate::control::GrantControl::set_redirect_uris(self, uris)
            }

            /// The user removed the app in their settings: every access and refresh
            /// token of theirs stops working. Returns how many were still usable.
            pub fn revoke_user_grants(&self, user: &str) -> Result<usize, $crate::SandboxError> {
                $crate::control::GrantControl::revoke_user_grants(self, user)
            }

            /// The user's access tokens lapse now; refresh tokens keep working.
            /// Returns how many access tokens were still live.
            pub fn expire_access_tokens(&self, user: &str) -> Result<usize, $crate::SandboxError> {
                $crate::control::GrantControl::expire_access_tokens(self, user)
            }

            /// How many `grant_type=refresh_token` requests reached the token
            /// endpoint, whatever their outcome (injected failures never reach it).
            pub fn refresh_calls(&self) -> u64 {
                $crate::control::GrantControl::refresh_calls(self)
            }

            /// Every request that reached the token endpoint, oldest first. A test
            /// asserts that no spent refresh token was ever sent with
            /// `token_requests().iter().all(|r| r.outcome != TokenOutcome::RefreshTokenReused)`.
            pub fn token_requests(&self) -> Vec<$crate::oauth::TokenRequest> {
                $crate::control::GrantControl::token_requests(self)
            }

            /// Every token the platform's token store revoked so far, oldest first.
            pub fn revoked_tokens(&self) -> Vec<$crate::oauth::RevokedToken> {
                $crate::control::GrantControl::revoked_tokens(self)
            }
        }
    };
}
pub(crate) use grant_controls;

/// The grant controls, the same for every OAuth platform: `POST /users/{id}/revoke`
/// (answers `{"user", "revoked_tokens"}`), `POST /users/{id}/expire` (answers
/// `{"user", "expired_access_tokens"}`), `PUT /access-token-lifetime` (`{"secs": N}`,
/// for the access tokens issued from then on: a sandbox in another process gets short-lived
/// tokens this way), `GET /token-requests` and `GET /revoked-tokens`. An unknown user
/// answers 404 `unknown_user`; a lifetime of 0 or a body that is not `{"secs": N}`, 400
/// `invalid_setting`.
pub(crate) fn grant_routes<C: GrantControl>(control: &C) -> Router {
    Router::new()
        .route("/users/{id}/revoke", post(revoke_user::<C>))
        .route("/users/{id}/expire", post(expire_user::<C>))
        .route("/access-token-lifetime", put(access_token_lifetime::<C>))
        .route("/token-requests", get(token_requests::<C>))
        .route("/revoked-tokens", get(revoked_tokens::<C>))
        .with_state(control.clone())
}

async fn revoke_user<C: GrantControl>(
    State(control): State<C>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    let count = control.revoke_user_grants(&id)?;
    Ok(Json(json!({"user": id, "revoked_tokens": count})))
}

async fn expire_user<C: GrantControl>(
    State(control): State<C>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    let count = control.expire_access_tokens(&id)?;
    Ok(Json(json!({"user": id, "expired_access_tokens": count})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifetimeControl {
    secs: u64,
}

async fn access_token_lifetime<C: GrantControl>(
    State(control): State<C>,
    body: ControlBody<LifetimeControl>,
) -> Result<Json<Value>, SandboxError> {
    let LifetimeControl { secs } = read_control(body)?;
    if secs == 0 {
        return Err(SandboxError::InvalidSetting(
            "an access token lifetime of 0 s: every token would be born expired".to_owned(),
        ));
    }
    control.set_access_token_lifetime(Duration::from_secs(secs));
    Ok(Json(json!({"access_token_lifetime_secs": secs})))
}

async fn token_requests<C: GrantControl>(State(control): State<C>) -> Json<Vec<TokenRequest>> {
    Json(control.token_requests())
}

async fn revoked_tokens<C: GrantControl>(State(control): State<C>) -> Json<Vec<RevokedToken>> {
    Json(control.revoked_tokens())
}
