//! X (API v2) simulated: OAuth 2.0 authorization code with PKCE, single-use rotating
//! refresh tokens, `users/me`, posting, simple media upload, rate-limit headers — and
//! [`XControl`], the handle tests and the demo use to act as X or as its user.
//!
//! Routes, relative to the `/x` prefix the sandbox mounts them under (so the engine is
//! configured with `auth_url = {base}/x/i/oauth2/authorize`, `token_url =
//! {base}/x/2/oauth2/token`, `revoke_url = {base}/x/2/oauth2/revoke`, `api_base = {base}/x`):
//!
//! | route | what |
//! |---|---|
//! | `GET /i/oauth2/authorize` | checks the request, shows the login-and-consent form |
//! | `POST /i/oauth2/authorize` | the form: `username`, `password`, hidden request fields, `decision=authorize\|cancel` |
//! | `POST /2/oauth2/token` | `authorization_code` (PKCE S256) and `refresh_token` grants; HTTP Basic client auth |
//! | `POST /2/oauth2/revoke` | RFC 7009 revocation; HTTP Basic client auth |
//! | `GET /2/users/me` | the authorizing user |
//! | `POST /2/tweets` | publish a post |
//! | `POST /2/media/upload` | one-request upload (multipart `media`, JSON base64 `media`, or the raw body) |
//!
//! Controls, under `/sandbox/x`: `GET /state`, `GET /users`, `GET /users/{id}/tweets`,
//! the shared grant controls (`POST /users/{id}/revoke`, `/users/{id}/expire`,
//! `PUT /access-token-lifetime`, `GET /token-requests`, `/revoked-tokens`), and the shared fault controls
//! (`POST /fail`, `/stall`, `/drop`, `/garble`, `/rate-limit`, `DELETE /faults`). An armed rate
//! limit answers X's 429 with `x-rate-limit-remaining: 0` and the armed
//! `x-rate-limit-reset` on users/me, tweets and media.
//!
//! Shapes follow docs.x.com and what X is reported to answer; where X's behaviour is
//! not documented the choice is noted at the spot. Not simulated: chunked media upload
//! (INIT/APPEND/FINALIZE), weighted character counting (a plain character count is
//! used), public clients (the app is a confidential client), and posting caps per day.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::control::{fault_controls, grant_controls, Shared};
use super::faults::{inject, FaultPoint, Faults};
use super::oauth::{
    self, no_store, token_fingerprint, ClientRegistration, CodeRejection, ConsentFlow, FormError,
    IssuedTokens, OAuthApp, RefreshRejection, RevokeCause, TokenOutcome, TokenOwner,
};
use super::{unix_now, SandboxError};

/// The password every seeded user logs in with on the consent page.
pub use crate::oauth::SANDBOX_PASSWORD;

/// X documents two hours for access tokens.
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(7200);
/// X does not document its code lifetime; 30 s is short enough to catch a client that
/// sits on a code.
const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(30);

/// The OAuth 2.0 scopes X lists; anything else is refused at the authorize endpoint.
const KNOWN_SCOPES: &[&str] = &[
    "tweet.read",
    "tweet.write",
    "tweet.moderate.write",
    "users.read",
    "users.email",
    "follows.read",
    "follows.write",
    "offline.access",
    "space.read",
    "mute.read",
    "mute.write",
    "like.read",
    "like.write",
    "list.read",
    "list.write",
    "block.read",
    "block.write",
    "bookmark.read",
    "bookmark.write",
    "media.write",
    "dm.read",
    "dm.write",
];

/// Plain character count; real X weighs CJK and emoji as 2 and URLs as 23.
const MAX_TWEET_CHARS: usize = 280;
const MAX_MEDIA_PER_TWEET: usize = 4;
/// Uploaded media must be attached within a day, as X's upload answer says.
const MEDIA_EXPIRES_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Request body cap on the upload route: above GIF size, so that size errors come from
/// the upload checks rather than the transport.
const MEDIA_BODY_LIMIT: usize = 16 * 1024 * 1024;
const IMAGE_MAX_BYTES: usize = 5 * 1024 * 1024;
const GIF_MAX_BYTES: usize = 15 * 1024 * 1024;
/// Most X rate-limit windows are 15 minutes.
const RATE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Snowflake epoch, so that ids look and sort like X's.
const SNOWFLAKE_EPOCH_MS: u64 = 1_288_834_974_657;

/// A simulated X account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XUser {
    /// Numeric id as a string, as X returns it.
    pub id: String,
    /// Handle without the `@`; also the login name on the consent page.
    pub username: String,
    /// Display name.
    pub name: String,
}

impl XUser {
    pub fn new(
        id: impl Into<String>,
        username: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        XUser {
            id: id.into(),
            username: username.into(),
            name: name.into(),
        }
    }
}

/// A post published on the simulated X.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XTweet {
    pub id: String,
    pub author_id: String,
    pub text: String,
    /// Ids of the uploaded media attached to it, in the order sent.
    pub media_ids: Vec<String>,
    pub in_reply_to_tweet_id: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: OffsetDateTime,
}

fn rfc3339<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = at.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

/// Handle on X's simulated state, shared with the server: configure the app and users,
/// act as the user or the platform (revoke, expire, rate-limit, fail), and inspect what
/// happened. Cheap to clone.
#[derive(Clone, Debug)]
pub struct XControl {
    /// Everything the platform knows, shared with its handlers.
    world: Shared<XWorld>,
    /// Armed faults, shared with the middleware that applies them; the handle derefs
    /// to them.
    faults: Faults,
}

fault_controls!(XControl, Some(RATE_WINDOW));
grant_controls!(
    XControl,
    XWorld,
    "x",
    owner = |world, user_id| Ok(world.require_user(user_id)?.id.clone())
);

impl XControl {
    pub(crate) fn new() -> Self {
        XControl {
            world: Shared::new(XWorld::new()),
            faults: Faults::default(),
        }
    }

    fn world(&self) -> MutexGuard<'_, XWorld> {
        self.world.lock()
    }

    /// Adds an account; it logs in with [`SANDBOX_PASSWORD`].
    pub fn add_user(&self, user: XUser) -> Result<(), SandboxError> {
        let mut world = self.world();
        if user.id.is_empty() || user.username.is_empty() {
            return Err(SandboxError::InvalidSetting(
                "an X user needs an id and a username".into(),
            ));
        }
        let clash = world
            .users
            .iter()
            .any(|u| u.id == user.id || u.username.eq_ignore_ascii_case(&user.username));
        if clash {
            return Err(SandboxError::InvalidSetting(format!(
                "an X user with id {} or username {} already exists",
                user.id, user.username
            )));
        }
        world.users.push(user);
        Ok(())
    }

    /// Every account, seeded ones first.
    pub fn users(&self) -> Vec<XUser> {
        self.world().users.clone()
    }

    /// Posts the user published, oldest first.
    pub fn tweets(&self, user_id: &str) -> Vec<XTweet> {
        self.world()
            .tweets
            .iter()
            .filter(|t| t.author_id == user_id)
            .cloned()
            .collect()
    }
}

/// One X rate-limited endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Endpoint {
    UsersMe,
    CreateTweet,
    MediaUpload,
}

impl Endpoint {
    /// Per-user requests per 15-minute window: representative of X's published limits,
    /// which change with the access tier.
    fn limit(self) -> u32 {
        match self {
            Endpoint::UsersMe => 75,
            Endpoint::CreateTweet => 100,
            Endpoint::MediaUpload => 500,
        }
    }
}

/// One user's use of one endpoint in the current window.
struct RateWindow {
    started: Instant,
    /// The same start as unix time, for the `x-rate-limit-reset` header.
    started_unix: u64,
    used: u32,
}

/// The three headers X puts on every API answer.
#[derive(Debug, Clone, Copy)]
struct RateHeaders {
    limit: u32,
    remaining: u32,
    reset: u64,
}

impl RateHeaders {
    /// A window nobody has used yet, for answers given before the caller is known.
    fn fresh(endpoint: Endpoint) -> Self {
        RateHeaders {
            limit: endpoint.limit(),
            remaining: endpoint.limit(),
            reset: unix_now() + RATE_WINDOW.as_secs(),
        }
    }

    fn apply(self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-rate-limit-limit", u64::from(self.limit)),
            ("x-rate-limit-remaining", u64::from(self.remaining)),
            ("x-rate-limit-reset", self.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
        response
    }
}

/// An uploaded file waiting to be attached.
struct XMedia {
    owner: String,
    expires_at: Instant,
}

/// Everything X knows. Behind one mutex that no handler holds across an await.
pub(crate) struct XWorld {
    /// The app registration and what was granted to it.
    app: OAuthApp,
    users: Vec<XUser>,
    tweets: Vec<XTweet>,
    media: HashMap<String, XMedia>,
    windows: HashMap<(String, Endpoint), RateWindow>,
    /// Last id handed out, so that two ids in the same millisecond still differ.
    last_id: u64,
}

impl XWorld {
    fn new() -> Self {
        XWorld {
            app: OAuthApp::new("x", DEFAULT_ACCESS_LIFETIME, DEFAULT_CODE_LIFETIME),
            users: vec![
                XUser::new("2244994945", "jane_writes", "Jane Writes"),
                XUser::new("1111111111", "other_account", "Other Account"),
            ],
            tweets: Vec::new(),
            media: HashMap::new(),
            windows: HashMap::new(),
            last_id: 0,
        }
    }

    fn require_user(&self, user_id: &str) -> Result<&XUser, SandboxError> {
        self.users
            .iter()
            .find(|u| u.id == user_id)
            .ok_or_else(|| SandboxError::UnknownUser(user_id.to_owned()))
    }

    fn registration(&self) -> ClientRegistration<'_> {
        self.app.registration(KNOWN_SCOPES, true)
    }

    /// A snowflake-shaped id: time in the high bits, strictly increasing.
    fn next_id(&mut self) -> String {
        let millis = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let candidate = millis.saturating_sub(SNOWFLAKE_EPOCH_MS) << 22;
        self.last_id = candidate.max(self.last_id + 1);
        self.last_id.to_string()
    }

    /// Checks the client's HTTP Basic credentials (and `client_id` in the body, if sent).
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<String, TokenError> {
        let credentials =
            oauth::basic_credentials(headers).ok_or(TokenError::UnauthorizedClient)?;
        let body_id_agrees = form.get("client_id").is_none_or(|id| *id == credentials.id);
        if !self.app.is_client(&credentials.id, &credentials.secret) || !body_id_agrees {
            return Err(TokenError::UnauthorizedClient);
        }
        Ok(credentials.id)
    }

    /// One token-endpoint request, start to end. `credential` receives the fingerprint
    /// of the code or refresh token sent, for the log.
    fn grant(
        &mut self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
        credential: &mut Option<String>,
    ) -> Result<IssuedTokens, (TokenError, TokenOutcome)> {
        let client_id = self
            .authenticate_client(headers, form)
            .map_err(|e| (e, TokenOutcome::UnauthorizedClient))?;
        let param = |name: &'static str| {
            form.get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or((TokenError::Missing(name), TokenOutcome::InvalidRequest))
        };
        match form
            .get("grant_type")
            .map(String::as_str)
            .unwrap_or_default()
        {
            "authorization_code" => {
                let code = param("code")?;
                *credential = Some(token_fingerprint(code));
                let redirect_uri = param("redirect_uri")?;
                let verifier = param("code_verifier")?;
                let invalid = (TokenError::InvalidToken, TokenOutcome::InvalidCode);
                let grant = match self
                    .app
                    .codes
                    .redeem(code, &client_id, redirect_uri, verifier)
                {
                    Ok(grant) => grant,
                    Err(CodeRejection::Replayed {
                        family: Some(family),
                    }) => {
                        let revoked = self
                            .app
                            .tokens
                            .revoke_family(family, RevokeCause::CodeReplayed);
                        tracing::warn!(
                            platform = "x",
                            revoked,
                            "authorization code replayed; its tokens revoked"
                        );
                        return Err(invalid);
                    }
                    Err(reason) => {
                        tracing::info!(platform = "x", ?reason, "authorization code refused");
                        return Err(invalid);
                    }
                };
                if self.require_user(&grant.user_id).is_err() {
                    return Err(invalid);
                }
                // X issues a refresh token only when offline.access was granted.
                let with_refresh = grant.scopes.iter().any(|s| s == "offline.access");
                let issued = self.app.tokens.issue(
                    &grant.user_id,
                    &client_id,
                    grant.scopes,
                    self.app.access_lifetime,
                    with_refresh,
                );
                self.app.codes.link_family(code, issued.family);
                tracing::info!(
                    platform = "x",
                    user_id = grant.user_id,
                    "code exchanged for tokens"
                );
                Ok(issued)
            }
            "refresh_token" => {
                let refresh_token = param("refresh_token")?;
                *credential = Some(token_fingerprint(refresh_token));
                self.app
                    .tokens
                    .rotate(refresh_token, &client_id, self.app.access_lifetime)
                    .map_err(|reason| {
                        let outcome = match reason {
                            RefreshRejection::Reused => {
                                tracing::warn!(
                                    platform = "x",
                                    token = %token_fingerprint(refresh_token),
                                    "spent refresh token presented again; token family revoked"
                                );
                                TokenOutcome::RefreshTokenReused
                            }
                            RefreshRejection::Revoked => TokenOutcome::RefreshTokenRevoked,
                            RefreshRejection::Unknown => TokenOutcome::UnknownRefreshToken,
                            RefreshRejection::WrongClient => {
                                TokenOutcome::RefreshTokenOfAnotherClient
                            }
                        };
                        (TokenError::InvalidToken, outcome)
                    })
            }
            "" => Err((
                TokenError::Missing("grant_type"),
                TokenOutcome::InvalidRequest,
            )),
            _ => Err((
                TokenError::UnsupportedGrantType,
                TokenOutcome::UnsupportedGrantType,
            )),
        }
    }

    /// Admits one API call: authenticates the bearer, applies armed and natural rate
    /// limits, counts the call, then checks scopes. The error carries the whole answer.
    fn admit(
        &mut self,
        headers: &HeaderMap,
        faults: &Faults,
        endpoint: Endpoint,
        required_scopes: &[&str],
    ) -> Result<(TokenOwner, RateHeaders), Refusal> {
        let owner = oauth::bearer_token(headers)
            .ok_or(())
            .and_then(|token| self.app.tokens.authenticate(token).map_err(|_| ()))
            .map_err(|()| Refusal {
                problem: ApiProblem::Unauthorized,
                rate: RateHeaders::fresh(endpoint),
            })?;

        if let Some(reset) = faults.take_rate_limit() {
            return Err(Refusal {
                problem: ApiProblem::TooManyRequests,
                rate: RateHeaders {
                    limit: endpoint.limit(),
                    remaining: 0,
                    reset,
                },
            });
        }
        let now = Instant::now();
        let window = self
            .windows
            .entry((owner.user_id.clone(), endpoint))
            .or_insert_with(|| RateWindow {
                started: now,
                started_unix: unix_now(),
                used: 0,
            });
        if now.duration_since(window.started) >= RATE_WINDOW {
            *window = RateWindow {
                started: now,
                started_unix: unix_now(),
                used: 0,
            };
        }
        let reset = window.started_unix + RATE_WINDOW.as_secs();
        let limit = endpoint.limit();
        if window.used >= limit {
            return Err(Refusal {
                problem: ApiProblem::TooManyRequests,
                rate: RateHeaders {
                    limit,
                    remaining: 0,
                    reset,
                },
            });
        }
        window.used += 1;
        let rate = RateHeaders {
            limit,
            remaining: limit - window.used,
            reset,
        };

        if !required_scopes
            .iter()
            .all(|needed| owner.scopes.iter().any(|s| s == needed))
        {
            return Err(Refusal {
                problem: ApiProblem::Forbidden,
                rate,
            });
        }
        if self.require_user(&owner.user_id).is_err() {
            return Err(Refusal {
                problem: ApiProblem::Unauthorized,
                rate,
            });
        }
        Ok((owner, rate))
    }
}

/// X's routes, to be mounted under `/x`.
pub(crate) fn platform_routes(x: &XControl) -> Router {
    let fault_point = FaultPoint {
        faults: x.faults.clone(),
        render_failure: server_error,
    };
    // The authorize page is what a person's browser shows: faults are for the
    // machine-to-machine calls only.
    let consent = Router::new().route(
        "/i/oauth2/authorize",
        get(authorize_page).post(authorize_decision),
    );
    let api = Router::new()
        .route("/2/oauth2/token", post(token))
        .route("/2/oauth2/revoke", post(revoke))
        .route("/2/users/me", get(users_me))
        .route("/2/tweets", post(create_tweet))
        .route(
            "/2/media/upload",
            post(upload_media).layer(DefaultBodyLimit::max(MEDIA_BODY_LIMIT)),
        )
        .route_layer(middleware::from_fn_with_state(fault_point, inject));
    consent.merge(api).with_state(x.clone())
}

/// An injected 5xx, worded the way X words its problems.
fn server_error(status: StatusCode) -> Response {
    let title = status.canonical_reason().unwrap_or("Server Error");
    (
        status,
        Json(json!({"title": title, "detail": title, "type": "about:blank", "status": status.as_u16()})),
    )
        .into_response()
}

/// Failures of the token and revoke endpoints, in X's words.
#[derive(Debug)]
enum TokenError {
    /// Missing or wrong client credentials.
    UnauthorizedClient,
    /// A code, verifier or refresh token that is not (or no longer) valid. X answers all
    /// of these alike, so a client cannot tell "spent" from "revoked" from "unknown".
    InvalidToken,
    Missing(&'static str),
    BadForm(FormError),
    UnsupportedGrantType,
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            TokenError::UnauthorizedClient => (
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "Missing valid authorization header".to_owned(),
            ),
            TokenError::InvalidToken => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Value passed for the token was invalid.".to_owned(),
            ),
            TokenError::Missing(name) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("Missing required parameter [{name}]."),
            ),
            TokenError::BadForm(reason) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                reason.to_string(),
            ),
            TokenError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token.".to_owned(),
            ),
        };
        (
            status,
            no_store(),
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    }
}

/// API failures, in X's problem shapes.
#[derive(Debug)]
enum ApiProblem {
    Unauthorized,
    /// The token lacks a scope the endpoint needs.
    Forbidden,
    DuplicateContent,
    TooManyRequests,
    /// One parameter was wrong.
    InvalidRequest {
        parameter: &'static str,
        value: String,
        message: String,
    },
}

impl IntoResponse for ApiProblem {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiProblem::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}),
            ),
            ApiProblem::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"title": "Forbidden", "type": "about:blank", "status": 403,
                       "detail": "You are not permitted to perform this action."}),
            ),
            ApiProblem::DuplicateContent => (
                StatusCode::FORBIDDEN,
                json!({"detail": "You are not allowed to create a Tweet with duplicate content.",
                       "type": "about:blank", "title": "Forbidden", "status": 403}),
            ),
            ApiProblem::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}),
            ),
            ApiProblem::InvalidRequest {
                parameter,
                value,
                message,
            } => (
                StatusCode::BAD_REQUEST,
                json!({
                    "errors": [{"parameters": {parameter: [value]}, "message": message}],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                }),
            ),
        };
        (status, Json(body)).into_response()
    }
}

/// Why an API call was not admitted, with the rate-limit headers its answer carries.
#[derive(Debug)]
struct Refusal {
    problem: ApiProblem,
    rate: RateHeaders,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.rate.apply(self.problem.into_response())
    }
}

fn invalid(
    parameter: &'static str,
    value: impl Into<String>,
    message: impl Into<String>,
) -> ApiProblem {
    ApiProblem::InvalidRequest {
        parameter,
        value: value.into(),
        message: message.into(),
    }
}

const CONSENT: ConsentFlow = ConsentFlow {
    platform: "X",
    action: "/x/i/oauth2/authorize",
    denied: &[("error", "access_denied")],
};

/// `GET /i/oauth2/authorize`: the login-and-consent page, or why there is none.
async fn authorize_page(State(x): State<XControl>, RawQuery(query): RawQuery) -> Response {
    let world = x.world();
    CONSENT.page(query.as_deref(), |params| {
        oauth::check_authorize_request(params, &world.registration())
    })
}

/// `POST /i/oauth2/authorize`: the person logged in and chose Authorize or Cancel.
async fn authorize_decision(
    State(x): State<XControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    CONSENT.decide_with_code(
        &mut *x.world(),
        &headers,
        &body,
        |world, form| oauth::check_authorize_request(form, &world.registration()),
        |world, username| {
            let handle = username.trim_start_matches('@');
            let user = world
                .users
                .iter()
                .find(|u| u.username.eq_ignore_ascii_case(handle))?;
            Some(user.id.clone())
        },
        |_| Vec::new(),
    )
}

/// `POST /2/oauth2/token`.
async fn token(State(x): State<XControl>, headers: HeaderMap, body: Bytes) -> Response {
    let mut world = x.world();
    let result = oauth::logged_grant(
        &mut *world,
        oauth::parse_form(&headers, &body),
        TokenError::BadForm,
        |world, form, credential| world.grant(&headers, form, credential),
    );
    drop(world);
    match result {
        Ok(issued) => {
            let mut body = json!({
                "token_type": "bearer",
                "expires_in": issued.expires_in,
                "access_token": issued.access_token,
                "scope": issued.scopes.join(" "),
            });
            if let (Some(refresh), Some(map)) = (issued.refresh_token, body.as_object_mut()) {
                map.insert("refresh_token".into(), Value::String(refresh));
            }
            (no_store(), Json(body)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// `POST /2/oauth2/revoke`: always `{"revoked":true}` for a known client, as RFC 7009
/// asks even for tokens the server does not know.
async fn revoke(State(x): State<XControl>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match oauth::parse_form(&headers, &body) {
        Ok(form) => form,
        Err(reason) => return TokenError::BadForm(reason).into_response(),
    };
    let mut world = x.world();
    if let Err(error) = world.authenticate_client(&headers, &form) {
        return error.into_response();
    }
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return TokenError::Missing("token").into_response();
    };
    world.app.tokens.revoke_token(token);
    tracing::info!(platform = "x", token = %token_fingerprint(token), "token revoked by the client");
    Json(json!({"revoked": true})).into_response()
}

/// `GET /2/users/me`, with the few `user.fields` a publisher asks for.
async fn users_me(
    State(x): State<XControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut world = x.world();
    let (owner, rate) = match world.admit(
        &headers,
        &x.faults,
        Endpoint::UsersMe,
        &["users.read", "tweet.read"],
    ) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(user) = world.require_user(&owner.user_id) else {
        return rate.apply(ApiProblem::Unauthorized.into_response());
    };
    let mut data = json!({"id": user.id, "name": user.name, "username": user.username});
    let fields: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "user.fields")
        .flat_map(|(_, value)| value.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if let Some(map) = data.as_object_mut() {
        // Unknown fields are ignored rather than refused: the sandbox only simulates
        // what a publisher needs.
        for field in fields {
            let value = match field.as_str() {
                "profile_image_url" => json!(format!(
                    "https://pbs.twimg.com/profile_images/{}/sandbox_normal.png",
                    user.id
                )),
                "protected" | "verified" => json!(false),
                "description" => json!(""),
                "created_at" => json!("2013-12-14T04:35:55.000Z"),
                _ => continue,
            };
            map.insert(field, value);
        }
    }
    rate.apply(Json(json!({"data": data})).into_response())
}

/// The body of `POST /2/tweets`, as far as the sandbox reads it.
#[derive(Debug, Deserialize)]
struct NewTweet {
    text: Option<String>,
    media: Option<NewTweetMedia>,
    reply: Option<NewTweetReply>,
}

#[derive(Debug, Deserialize)]
struct NewTweetMedia {
    #[serde(default)]
    media_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct NewTweetReply {
    in_reply_to_tweet_id: String,
}

/// `POST /2/tweets`.
async fn create_tweet(
    State(x): State<XControl>,
    headers: HeaderMap,
    body: Result<Json<NewTweet>, JsonRejection>,
) -> Response {
    let mut world = x.world();
    let (owner, rate) = match world.admit(
        &headers,
        &x.faults,
        Endpoint::CreateTweet,
        &["tweet.read", "tweet.write", "users.read"],
    ) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let result = match body {
        Ok(Json(tweet)) => world.publish(&owner.user_id, tweet),
        Err(rejection) => Err(invalid("body", "", rejection.body_text())),
    };
    let response = match result {
        Ok(tweet) => (
            StatusCode::CREATED,
            Json(json!({"data": {"id": tweet.id, "text": tweet.text, "edit_history_tweet_ids": [tweet.id]}})),
        )
            .into_response(),
        Err(problem) => problem.into_response(),
    };
    rate.apply(response)
}

impl XWorld {
    /// Checks and stores a post.
    fn publish(&mut self, author_id: &str, tweet: NewTweet) -> Result<XTweet, ApiProblem> {
        let text = tweet.text.unwrap_or_default();
        let media_ids = tweet.media.map(|m| m.media_ids).unwrap_or_default();
        if text.is_empty() && media_ids.is_empty() {
            return Err(invalid("text", "", "Text or media is required."));
        }
        let length = text.chars().count();
        if length > MAX_TWEET_CHARS {
            return Err(invalid(
                "text",
                text,
                format!("Text is too long ({length} characters; the limit is {MAX_TWEET_CHARS})."),
            ));
        }
        if media_ids.len() > MAX_MEDIA_PER_TWEET {
            return Err(invalid(
                "media.media_ids",
                media_ids.join(","),
                format!("At most {MAX_MEDIA_PER_TWEET} media can be attached."),
            ));
        }
        let now = Instant::now();
        if let Some(bad) = media_ids.iter().find(|id| {
            !self
                .media
                .get(id.as_str())
                .is_some_and(|m| m.owner == author_id && m.expires_at > now)
        }) {
            return Err(invalid(
                "media.media_ids",
                bad.clone(),
                "Your media IDs are invalid.",
            ));
        }
        let in_reply_to = tweet.reply.map(|r| r.in_reply_to_tweet_id);
        if let Some(parent) = &in_reply_to {
            if !self.tweets.iter().any(|t| &t.id == parent) {
                return Err(invalid(
                    "reply.in_reply_to_tweet_id",
                    parent.clone(),
                    "The Tweet you are replying to does not exist.",
                ));
            }
        }
        if !text.is_empty()
            && self
                .tweets
                .iter()
                .any(|t| t.author_id == author_id && t.text == text)
        {
            return Err(ApiProblem::DuplicateContent);
        }
        let tweet = XTweet {
            id: self.next_id(),
            author_id: author_id.to_owned(),
            text,
            media_ids,
            in_reply_to_tweet_id: in_reply_to,
            created_at: OffsetDateTime::now_utc(),
        };
        tracing::info!(
            platform = "x",
            author_id,
            tweet_id = tweet.id,
            "post published"
        );
        self.tweets.push(tweet.clone());
        Ok(tweet)
    }
}

/// A file sent to the upload endpoint, whichever way it came.
struct Upload {
    bytes: Bytes,
    category: Option<String>,
}

/// `POST /2/media/upload`, one-request form: multipart (`media` raw bytes), JSON
/// (`media` base64), or the raw body with `media_category` in the query.
async fn upload_media(State(x): State<XControl>, request: Request) -> Response {
    let headers = request.headers().clone();
    let upload = read_upload(request).await;
    let mut world = x.world();
    let (owner, rate) =
        match world.admit(&headers, &x.faults, Endpoint::MediaUpload, &["media.write"]) {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal.into_response(),
        };
    let response = match upload.and_then(|upload| world.store_media(&owner.user_id, upload)) {
        Ok(body) => Json(body).into_response(),
        Err(problem) => problem.into_response(),
    };
    rate.apply(response)
}

async fn read_upload(request: Request) -> Result<Upload, ApiProblem> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let query_category =
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .find(|(key, _)| key == "media_category")
            .map(|(_, value)| value.into_owned());

    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|rejection| invalid("media", "", rejection.body_text()))?;
        let mut upload = Upload {
            bytes: Bytes::new(),
            category: query_category,
        };
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|error| invalid("media", "", error.body_text()))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let value = field
                .bytes()
                .await
                .map_err(|error| invalid("media", "", error.body_text()))?;
            match name.as_str() {
                "media" => upload.bytes = value,
                "media_data" => upload.bytes = decode_base64(&value)?,
                "media_category" => {
                    upload.category = Some(String::from_utf8_lossy(&value).into_owned())
                }
                "command" => return Err(chunked_not_simulated(&value)),
                _ => {}
            }
        }
        return Ok(upload);
    }

    let body = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| invalid("media", "", rejection.body_text()))?;
    if content_type.starts_with("application/json") {
        #[derive(Deserialize)]
        struct JsonUpload {
            media: String,
            media_category: Option<String>,
            command: Option<String>,
        }
        let parsed: JsonUpload = serde_json::from_slice(&body)
            .map_err(|error| invalid("media", "", format!("The JSON body is invalid: {error}")))?;
        if let Some(command) = parsed.command {
            return Err(chunked_not_simulated(command.as_bytes()));
        }
        return Ok(Upload {
            bytes: decode_base64(parsed.media.as_bytes())?,
            category: parsed.media_category.or(query_category),
        });
    }
    Ok(Upload {
        bytes: body,
        category: query_category,
    })
}

fn decode_base64(value: &[u8]) -> Result<Bytes, ApiProblem> {
    STANDARD
        .decode(value)
        .map(Bytes::from)
        .map_err(|_| invalid("media", "", "media must be base64-encoded in a JSON body."))
}

fn chunked_not_simulated(command: &[u8]) -> ApiProblem {
    invalid(
        "command",
        String::from_utf8_lossy(command),
        "The sandbox simulates only the one-request upload: send the whole file as `media`.",
    )
}

impl XWorld {
    /// Checks and stores an upload; the answer is X's upload response body.
    fn store_media(&mut self, owner: &str, upload: Upload) -> Result<Value, ApiProblem> {
        if upload.bytes.is_empty() {
            return Err(invalid("media", "", "The media is empty."));
        }
        let category = upload.category.unwrap_or_else(|| "tweet_image".to_owned());
        // The media key's prefix tells the media type, as on X.
        let (prefix, max_bytes) = match category.as_str() {
            "tweet_image" | "dm_image" | "subtitles" => ("3", IMAGE_MAX_BYTES),
            "tweet_gif" | "dm_gif" => ("16", GIF_MAX_BYTES),
            "tweet_video" | "dm_video" => ("7", MEDIA_BODY_LIMIT),
            "amplify_video" => ("13", MEDIA_BODY_LIMIT),
            other => {
                return Err(invalid("media_category", other, "Unknown media_category."));
            }
        };
        let size = upload.bytes.len();
        if size > max_bytes {
            return Err(invalid(
                "media",
                size.to_string(),
                format!("The file is too large for {category} ({size} bytes; the limit is {max_bytes})."),
            ));
        }
        let id = self.next_id();
        self.media.insert(
            id.clone(),
            XMedia {
                owner: owner.to_owned(),
                expires_at: Instant::now() + MEDIA_EXPIRES_AFTER,
            },
        );
        tracing::info!(platform = "x", owner, media_id = id, size, "media uploaded");
        Ok(json!({"data": {
            "id": id,
            "media_key": format!("{prefix}_{id}"),
            "size": size,
            "expires_after_secs": MEDIA_EXPIRES_AFTER.as_secs(),
        }}))
    }
}

/// The `/sandbox/x` control routes.
pub(crate) fn control_routes(x: &XControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .route("/users", get(control_users))
        .route("/users/{id}/tweets", get(control_user_tweets))
        .with_state(x.clone())
}

async fn control_state(State(x): State<XControl>) -> Json<Value> {
    let world = x.world();
    Json(json!({
        "client_id": world.app.client_id,
        "access_token_lifetime_secs": world.app.access_lifetime.as_secs(),
        "code_lifetime_secs": world.app.code_lifetime.as_secs(),
        "redirect_uris": world.app.redirect_uris,
        "users": world.users,
        "tweets": world.tweets.len(),
        "refresh_calls": world.app.refresh_calls,
        "token_requests": world.app.token_log.len(),
        "revoked_tokens": world.app.tokens.revoked().len(),
        "pending_faults": x.faults.pending_faults(),
    }))
}

async fn control_users(State(x): State<XControl>) -> Json<Vec<XUser>> {
    Json(x.users())
}

async fn control_user_tweets(
    State(x): State<XControl>,
    Path(id): Path<String>,
) -> Result<Json<Vec<XTweet>>, SandboxError> {
    x.world().require_user(&id)?;
    Ok(Json(x.tweets(&id)))
}
