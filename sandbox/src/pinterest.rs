//! Pinterest (API v5) simulated: OAuth 2.0 authorization code without PKCE, continuous
//! refresh tokens, `user_account`, boards (paged with `bookmark`), pin creation from an
//! image URL, Pinterest's `{"code","message"}` error bodies, rate-limit headers — and
//! [`PinterestControl`], the handle tests and the demo use to act as Pinterest or its user.
//!
//! Routes, relative to the `/pinterest` prefix (so the engine is configured with
//! `auth_url = {base}/pinterest/oauth/`, `token_url = {base}/pinterest/v5/oauth/token`,
//! no revoke URL, `api_base = {base}/pinterest`):
//!
//! | route | what |
//! |---|---|
//! | `GET /oauth/` | checks the request, shows the login-and-consent form |
//! | `POST /oauth/` | the form: `username`, `password`, hidden request fields, `decision` |
//! | `POST /v5/oauth/token` | `authorization_code` and `refresh_token` grants; HTTP Basic client auth |
//! | `GET /v5/user_account` | the authorizing account |
//! | `GET /v5/boards` | the account's boards, `page_size` and `bookmark` |
//! | `POST /v5/pins` | create a pin on one of the account's boards from `media_source.url` |
//!
//! Controls, under `/sandbox/pinterest`: `GET /state`, `GET /users/{id}/pins`,
//! `DELETE /boards/{id}`, the shared grant controls (`POST /users/{id}/revoke`, `/users/{id}/expire`,
//! `PUT /access-token-lifetime`, `GET /token-requests`, `/revoked-tokens`) (`{id}` an id or
//! username), and the shared fault controls (`POST /fail`, `/stall`,
//! `/drop`, `/garble`, `/rate-limit`, `DELETE /faults`).
//!
//! Written from Pinterest's OpenAPI description and developer docs. Where they are silent
//! the sandbox chooses, and says so at the spot:
//! - Refresh: the docs say every refresh returns a new refresh token but not whether the
//!   old one stays valid. The sandbox is strict: the old one is spent on use, and
//!   presenting a spent one revokes the whole grant.
//! - A refused code or refresh token answers 401 `{"code":283,"message":"The
//!   authorization grant is invalid"}`, as reported against Pinterest's Python SDK; a
//!   refused client 401 `{"code":2,"message":"Authentication failed."}`.
//! - The rate-limit header names (`x-ratelimit-limit`, `x-ratelimit-remaining`,
//!   `x-ratelimit-reset` in unix seconds) are not documented for v5.
//! - The error codes for a missing scope (3), a missing board (40) and a rate limit (8).
//!
//! Not simulated: PKCE (Pinterest has none; the shared consent page still carries its two
//! hidden PKCE fields, empty here and ignored), secret boards and board sections, pin
//! media other than `image_url`, fetching the image, the `scope` narrowing of a refresh,
//! and revocation (Pinterest revokes only system users' tokens).

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::control::{fault_controls, grant_controls, Shared};
use super::faults::{inject, FaultPoint, Faults};
use super::oauth::{
    self, token_fingerprint, AuthorizeRejection, AuthorizeRequest, CodeRejection, ConsentFlow,
    IssuedTokens, LooseAuthorize, OAuthApp, RefreshRejection, RevokeCause, TokenOutcome,
};
use super::{unix_now, SandboxError};

/// About 30 days, as reported for Pinterest access tokens.
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Continuous refresh tokens: 60 days, renewed by every refresh.
const REFRESH_LIFETIME: Duration = Duration::from_secs(60 * 24 * 60 * 60);
/// Pinterest does not document its code lifetime; 30 s catches a client that sits on one.
const CODE_LIFETIME: Duration = Duration::from_secs(30);
/// The scopes Pinterest lists; anything else is refused at the authorize endpoint.
const KNOWN_SCOPES: &[&str] = &[
    "ads:read",
    "ads:write",
    "boards:read",
    "boards:read_secret",
    "boards:write",
    "boards:write_secret",
    "catalogs:read",
    "catalogs:write",
    "pins:read",
    "pins:read_secret",
    "pins:write",
    "pins:write_secret",
    "user_accounts:read",
];
/// What `POST /v5/pins` declares.
const PIN_SCOPES: &[&str] = &["boards:read", "boards:write", "pins:read", "pins:write"];
const MAX_TITLE: usize = 100;
const MAX_DESCRIPTION: usize = 800;
const MAX_LINK: usize = 2048;
const MAX_ALT_TEXT: usize = 500;
/// Standard access counts per minute per user.
const RATE_WINDOW: Duration = Duration::from_secs(60);
const RATE_LIMIT: u32 = 1000;
const GRANT_INVALID: i64 = 283;

/// A simulated Pinterest account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinterestUser {
    pub id: String,
    /// Also the login name on the consent page.
    pub username: String,
    /// `BUSINESS` or `PINNER`.
    pub account_type: String,
    pub business_name: Option<String>,
}

/// A board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinterestBoard {
    pub id: String,
    pub owner_id: String,
    pub name: String,
}

/// A pin created through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinterestPin {
    pub id: String,
    pub owner_id: String,
    pub board_id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub link: Option<String>,
    pub alt_text: Option<String>,
    /// `media_source.url`, recorded, never fetched.
    pub image_url: String,
}

/// Handle on Pinterest's simulated state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PinterestControl {
    /// Everything the platform knows, shared with its handlers.
    world: Shared<World>,
    /// Armed faults, shared with the middleware that applies them; the handle derefs
    /// to them.
    faults: Faults,
}

fault_controls!(PinterestControl, Some(RATE_WINDOW));
grant_controls!(
    PinterestControl,
    World,
    "pinterest",
    owner = |world, who| Ok(world.require_user(who)?.id.clone())
);

struct Window {
    started: Instant,
    started_unix: u64,
    used: u32,
}

pub(crate) struct World {
    /// The app registration and what was granted to it.
    app: OAuthApp,
    /// The most boards one page may hold; tests lower it to make paging visible.
    max_page_size: usize,
    users: Vec<PinterestUser>,
    boards: Vec<PinterestBoard>,
    pins: Vec<PinterestPin>,
    /// For each code exchange, whether it asked for `continuous_refresh=true`.
    continuous_refresh_asked: Vec<bool>,
    windows: HashMap<String, Window>,
    next_id: u64,
}

impl World {
    fn new() -> Self {
        let jane = "549755885175";
        World {
            app: OAuthApp::new("pinterest", DEFAULT_ACCESS_LIFETIME, CODE_LIFETIME),
            max_page_size: 250,
            users: vec![
                PinterestUser {
                    id: jane.into(),
                    username: "jane_writes".into(),
                    account_type: "BUSINESS".into(),
                    business_name: Some("Jane Writes".into()),
                },
                PinterestUser {
                    id: "549755885176".into(),
                    username: "other_pinner".into(),
                    account_type: "PINNER".into(),
                    business_name: None,
                },
            ],
            boards: vec![
                board("549755813001", jane, "Book covers"),
                board("549755813002", jane, "Writing desk"),
                board("549755813003", "549755885176", "Recipes"),
            ],
            pins: Vec::new(),
            continuous_refresh_asked: Vec::new(),
            windows: HashMap::new(),
            next_id: 813_744_226_420_795_000,
        }
    }

    /// A user by id or username.
    fn require_user(&self, who: &str) -> Result<&PinterestUser, SandboxError> {
        self.users
            .iter()
            .find(|u| u.id == who || u.username.eq_ignore_ascii_case(who))
            .ok_or_else(|| SandboxError::UnknownUser(who.to_owned()))
    }
}

fn board(id: &str, owner: &str, name: &str) -> PinterestBoard {
    PinterestBoard {
        id: id.into(),
        owner_id: owner.into(),
        name: name.into(),
    }
}

impl PinterestControl {
    pub(crate) fn new() -> Self {
        PinterestControl {
            world: Shared::new(World::new()),
            faults: Faults::default(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock()
    }

    /// The most boards one page of `GET /v5/boards` holds (default 250).
    pub fn set_max_page_size(&self, size: usize) {
        self.world().max_page_size = size.max(1);
    }

    pub fn users(&self) -> Vec<PinterestUser> {
        self.world().users.clone()
    }

    /// The boards of a user (by id or username).
    pub fn boards(&self, user: &str) -> Result<Vec<PinterestBoard>, SandboxError> {
        let world = self.world();
        let id = world.require_user(user)?.id.clone();
        Ok(world
            .boards
            .iter()
            .filter(|b| b.owner_id == id)
            .cloned()
            .collect())
    }

    /// The user deleted a board: pins to it answer 404 from now on.
    pub fn delete_board(&self, board_id: &str) -> Result<(), SandboxError> {
        let mut world = self.world();
        let before = world.boards.len();
        world.boards.retain(|b| b.id != board_id);
        if world.boards.len() == before {
            return Err(SandboxError::InvalidSetting(format!(
                "no board with id {board_id}"
            )));
        }
        Ok(())
    }

    /// Pins the user created, oldest first.
    pub fn pins(&self, user: &str) -> Vec<PinterestPin> {
        let world = self.world();
        let Ok(id) = world.require_user(user).map(|u| u.id.clone()) else {
            return Vec::new();
        };
        world
            .pins
            .iter()
            .filter(|p| p.owner_id == id)
            .cloned()
            .collect()
    }

    /// For each code exchange, whether it sent `continuous_refresh=true`.
    pub fn continuous_refresh_asked(&self) -> Vec<bool> {
        self.world().continuous_refresh_asked.clone()
    }
}

/// A Pinterest error answer, `{"code","message"}`, made into a response only when sent.
struct Refusal {
    status: StatusCode,
    code: i64,
    message: String,
    /// The rate-limit headers the answer carries, once the caller is known.
    rate: Option<RateHeaders>,
    /// `Retry-After` seconds, on a 429.
    retry_after: Option<u64>,
}

impl Refusal {
    fn with_rate(mut self, rate: RateHeaders) -> Refusal {
        self.rate = Some(rate);
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        match self.rate {
            Some(rate) => rate.apply(response),
            None => response,
        }
    }
}

fn error(status: StatusCode, code: i64, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
        rate: None,
        retry_after: None,
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    error(StatusCode::BAD_REQUEST, 1, message)
}

/// Pinterest's routes, to be mounted under `/pinterest`.
pub(crate) fn platform_routes(pinterest: &PinterestControl) -> Router {
    let fault_point = FaultPoint {
        faults: pinterest.faults.clone(),
        render_failure: |status| {
            error(
                status,
                i64::from(status.as_u16()),
                status.canonical_reason().unwrap_or("Server error"),
            )
            .into_response()
        },
    };
    let consent = Router::new().route("/oauth/", get(authorize_page).post(authorize_decision));
    let api = Router::new()
        .route("/v5/oauth/token", post(token))
        .route("/v5/user_account", get(user_account))
        .route("/v5/boards", get(list_boards))
        .route("/v5/pins", post(create_pin))
        .route_layer(middleware::from_fn_with_state(fault_point, inject));
    consent.merge(api).with_state(pinterest.clone())
}

/// Checks an authorization request (the GET's query, or the form's hidden fields).
fn check_authorize(
    params: &HashMap<String, String>,
    client_id: &str,
) -> Result<AuthorizeRequest, AuthorizeRejection> {
    LooseAuthorize {
        client_id,
        client_params: &["client_id"],
        unknown_client: "No app is registered with this client_id.",
        // Pinterest's docs write scopes comma-separated; spaces are read too.
        split_scopes: |raw| {
            raw.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        },
        known_scopes: KNOWN_SCOPES,
        required_scope: None,
        optional_pkce: false,
    }
    .check(params)
}

const CONSENT: ConsentFlow = ConsentFlow {
    platform: "Pinterest",
    action: "/pinterest/oauth/",
    denied: &[("error", "access_denied")],
};

async fn authorize_page(
    State(pinterest): State<PinterestControl>,
    RawQuery(query): RawQuery,
) -> Response {
    let client_id = pinterest.client_id();
    CONSENT.page(query.as_deref(), |params| {
        check_authorize(params, &client_id)
    })
}

async fn authorize_decision(
    State(pinterest): State<PinterestControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // No PKCE on Pinterest: the request, and so the code, carries no challenge.
    CONSENT.decide_with_code(
        &mut *pinterest.world(),
        &headers,
        &body,
        |world, form| check_authorize(form, &world.app.client_id),
        |world, username| {
            let user = world
                .users
                .iter()
                .find(|u| u.username.eq_ignore_ascii_case(username))?;
            Some(user.id.clone())
        },
        |_| Vec::new(),
    )
}

/// A token-endpoint refusal, and how the log records it.
type TokenRefusal = (Refusal, TokenOutcome);

fn grant_invalid(outcome: TokenOutcome) -> TokenRefusal {
    (
        error(
            StatusCode::UNAUTHORIZED,
            GRANT_INVALID,
            "The authorization grant is invalid",
        ),
        outcome,
    )
}

impl World {
    fn grant(
        &mut self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
        credential: &mut Option<String>,
    ) -> Result<(IssuedTokens, &'static str), TokenRefusal> {
        let client_ok =
            oauth::basic_credentials(headers).is_some_and(|c| self.app.is_client(&c.id, &c.secret));
        if !client_ok {
            return Err((
                error(StatusCode::UNAUTHORIZED, 2, "Authentication failed."),
                TokenOutcome::UnauthorizedClient,
            ));
        }
        let client_id = self.app.client_id.clone();
        let param = |name: &str| {
            form.get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    (
                        invalid(format!("Missing required parameter {name}.")),
                        TokenOutcome::InvalidRequest,
                    )
                })
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
                self.continuous_refresh_asked
                    .push(form.get("continuous_refresh").map(String::as_str) == Some("true"));
                let grant = match self.app.codes.redeem(code, &client_id, redirect_uri, "") {
                    Ok(grant) => grant,
                    Err(CodeRejection::Replayed { family }) => {
                        // What a replayed code produced is revoked (RFC 6749 §4.1.2).
                        if let Some(family) = family {
                            self.app
                                .tokens
                                .revoke_family(family, RevokeCause::CodeReplayed);
                        }
                        return Err(grant_invalid(TokenOutcome::InvalidCode));
                    }
                    Err(_) => return Err(grant_invalid(TokenOutcome::InvalidCode)),
                };
                let issued = self.app.tokens.issue(
                    &grant.user_id,
                    &client_id,
                    grant.scopes,
                    self.app.access_lifetime,
                    true,
                );
                self.app.codes.link_family(code, issued.family);
                Ok((issued, "authorization_code"))
            }
            "refresh_token" => {
                let refresh_token = param("refresh_token")?;
                *credential = Some(token_fingerprint(refresh_token));
                // Strict continuous refresh (the docs do not say): the token sent is spent;
                // sending it again revokes the whole grant.
                self.app
                    .tokens
                    .rotate(refresh_token, &client_id, self.app.access_lifetime)
                    .map(|issued| (issued, "refresh_token"))
                    .map_err(|reason| {
                        grant_invalid(match reason {
                            RefreshRejection::Reused => TokenOutcome::RefreshTokenReused,
                            RefreshRejection::Revoked => TokenOutcome::RefreshTokenRevoked,
                            RefreshRejection::Unknown => TokenOutcome::UnknownRefreshToken,
                            RefreshRejection::WrongClient => {
                                TokenOutcome::RefreshTokenOfAnotherClient
                            }
                        })
                    })
            }
            "" => Err((
                invalid("Missing required parameter grant_type."),
                TokenOutcome::InvalidRequest,
            )),
            _ => Err((
                invalid("grant_type must be authorization_code or refresh_token."),
                TokenOutcome::UnsupportedGrantType,
            )),
        }
    }
}

/// `POST /v5/oauth/token`.
async fn token(
    State(pinterest): State<PinterestControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut world = pinterest.world();
    let result = oauth::logged_grant(
        &mut *world,
        oauth::parse_form(&headers, &body),
        |reason| invalid(reason.to_string()),
        |world, form, credential| world.grant(&headers, form, credential),
    );
    drop(world);
    match result {
        Ok((issued, response_type)) => {
            let refresh_expires_at = unix_now() + REFRESH_LIFETIME.as_secs();
            (
                oauth::no_store(),
                Json(json!({
                    "response_type": response_type,
                    "access_token": issued.access_token,
                    "token_type": "bearer",
                    "expires_in": issued.expires_in,
                    "scope": issued.scopes.join(" "),
                    "refresh_token": issued.refresh_token,
                    "refresh_token_expires_in": REFRESH_LIFETIME.as_secs(),
                    "refresh_token_expires_at": refresh_expires_at,
                })),
            )
                .into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The rate-limit headers on an API answer.
#[derive(Clone, Copy)]
struct RateHeaders {
    remaining: u32,
    reset: u64,
}

impl RateHeaders {
    fn apply(self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-ratelimit-limit", u64::from(RATE_LIMIT)),
            ("x-ratelimit-remaining", u64::from(self.remaining)),
            ("x-ratelimit-reset", self.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
        response
    }
}

impl World {
    /// Authenticates the bearer, applies armed and natural rate limits, checks scopes.
    fn admit(
        &mut self,
        headers: &HeaderMap,
        faults: &Faults,
        scopes: &[&str],
    ) -> Result<(PinterestUser, RateHeaders), Refusal> {
        let owner = oauth::bearer_token(headers)
            .and_then(|token| self.app.tokens.authenticate(token).ok())
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, 2, "Authentication failed."))?;
        let user = self
            .require_user(&owner.user_id)
            .map_err(|_| error(StatusCode::UNAUTHORIZED, 2, "Authentication failed."))?
            .clone();
        let too_many = |reset: u64| Refusal {
            rate: Some(RateHeaders {
                remaining: 0,
                reset,
            }),
            retry_after: Some(reset.saturating_sub(unix_now())),
            ..error(
                StatusCode::TOO_MANY_REQUESTS,
                8,
                "You have exceeded your rate limit. Try again later.",
            )
        };
        if let Some(reset) = faults.take_rate_limit() {
            return Err(too_many(reset));
        }
        let now = Instant::now();
        let window = self.windows.entry(user.id.clone()).or_insert(Window {
            started: now,
            started_unix: unix_now(),
            used: 0,
        });
        if now.duration_since(window.started) >= RATE_WINDOW {
            *window = Window {
                started: now,
                started_unix: unix_now(),
                used: 0,
            };
        }
        let reset = window.started_unix + RATE_WINDOW.as_secs();
        if window.used >= RATE_LIMIT {
            return Err(too_many(reset));
        }
        window.used += 1;
        let rate = RateHeaders {
            remaining: RATE_LIMIT - window.used,
            reset,
        };
        if !scopes.iter().all(|s| owner.scopes.iter().any(|g| g == s)) {
            return Err(error(StatusCode::FORBIDDEN, 3, "Authorization failed.").with_rate(rate));
        }
        Ok((user, rate))
    }
}

/// `GET /v5/user_account`.
async fn user_account(State(pinterest): State<PinterestControl>, headers: HeaderMap) -> Response {
    let mut world = pinterest.world();
    let (user, rate) = match world.admit(&headers, &pinterest.faults, &["user_accounts:read"]) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let board_count = world
        .boards
        .iter()
        .filter(|b| b.owner_id == user.id)
        .count();
    rate.apply(
        Json(json!({
            "account_type": user.account_type,
            "id": user.id,
            "username": user.username,
            "business_name": user.business_name,
            "profile_image": format!("https://i.pinimg.com/sandbox/{}.jpg", user.id),
            "website_url": null,
            "board_count": board_count,
        }))
        .into_response(),
    )
}

/// `GET /v5/boards`: `page_size` (1–250, default 25) and an opaque `bookmark`.
async fn list_boards(
    State(pinterest): State<PinterestControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut world = pinterest.world();
    let (user, rate) = match world.admit(&headers, &pinterest.faults, &["boards:read"]) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let params = match oauth::parse_query(query.as_deref()) {
        Ok(params) => params,
        Err(reason) => return invalid(reason.to_string()).with_rate(rate).into_response(),
    };
    let page_size = match params.get("page_size").map(|v| v.parse::<usize>()) {
        None => 25,
        Some(Ok(size)) if (1..=250).contains(&size) => size,
        Some(_) => {
            return invalid("page_size must be between 1 and 250.")
                .with_rate(rate)
                .into_response()
        }
    }
    .min(world.max_page_size);
    let offset = match params.get("bookmark") {
        None => 0,
        Some(bookmark) => match URL_SAFE_NO_PAD
            .decode(bookmark)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
        {
            Some(offset) => offset,
            None => return invalid("Invalid bookmark.").with_rate(rate).into_response(),
        },
    };
    let boards: Vec<&PinterestBoard> = world
        .boards
        .iter()
        .filter(|b| b.owner_id == user.id)
        .collect();
    let items: Vec<Value> = boards
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|b| {
            json!({"id": b.id, "name": b.name, "description": "", "privacy": "PUBLIC",
                   "owner": {"username": user.username}})
        })
        .collect();
    let next = offset + page_size;
    let bookmark = (next < boards.len()).then(|| URL_SAFE_NO_PAD.encode(next.to_string()));
    rate.apply(Json(json!({"items": items, "bookmark": bookmark})).into_response())
}

/// The body of `POST /v5/pins`, as far as the sandbox reads it.
#[derive(Debug, Deserialize)]
struct NewPin {
    board_id: Option<String>,
    title: Option<String>,
    description: Option<String>,
    link: Option<String>,
    alt_text: Option<String>,
    media_source: Option<MediaSource>,
}

#[derive(Debug, Deserialize)]
struct MediaSource {
    source_type: String,
    url: Option<String>,
}

/// `POST /v5/pins`.
async fn create_pin(
    State(pinterest): State<PinterestControl>,
    headers: HeaderMap,
    body: Result<Json<NewPin>, JsonRejection>,
) -> Response {
    let mut world = pinterest.world();
    let (user, rate) = match world.admit(&headers, &pinterest.faults, PIN_SCOPES) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let response = match body {
        Ok(Json(pin)) => world.create_pin(&user, pin),
        Err(rejection) => Err(invalid(rejection.body_text())),
    };
    rate.apply(response.unwrap_or_else(IntoResponse::into_response))
}

impl World {
    fn create_pin(&mut self, user: &PinterestUser, pin: NewPin) -> Result<Response, Refusal> {
        let Some(board_id) = pin.board_id.filter(|b| !b.is_empty()) else {
            return Err(invalid("Missing required field board_id."));
        };
        let Some(board) = self.boards.iter().find(|b| b.id == board_id) else {
            return Err(error(StatusCode::NOT_FOUND, 40, "Board not found."));
        };
        if board.owner_id != user.id {
            return Err(error(
                StatusCode::FORBIDDEN,
                3,
                "You do not have permission to save Pins to this board.",
            ));
        }
        for (field, value, limit) in [
            ("title", &pin.title, MAX_TITLE),
            ("description", &pin.description, MAX_DESCRIPTION),
            ("link", &pin.link, MAX_LINK),
            ("alt_text", &pin.alt_text, MAX_ALT_TEXT),
        ] {
            if let Some(length) = value.as_ref().map(|v| v.chars().count()) {
                if length > limit {
                    return Err(invalid(format!(
                        "Invalid parameters: {field} is {length} characters; the limit is {limit}."
                    )));
                }
            }
        }
        let Some(media) = pin.media_source else {
            return Err(invalid("Missing required field media_source."));
        };
        if media.source_type != "image_url" {
            return Err(invalid(format!(
                "The sandbox simulates only media_source.source_type image_url, not {}.",
                media.source_type
            )));
        }
        let Some(url) = media
            .url
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        else {
            return Err(invalid("media_source.url must be an http(s) URL."));
        };
        self.next_id += 1;
        let created = PinterestPin {
            id: self.next_id.to_string(),
            owner_id: user.id.clone(),
            board_id,
            title: pin.title,
            description: pin.description,
            link: pin.link,
            alt_text: pin.alt_text,
            image_url: url,
        };
        tracing::info!(platform = "pinterest", pin_id = created.id, "pin created");
        self.pins.push(created.clone());
        Ok((
            StatusCode::CREATED,
            Json(json!({
                "id": created.id,
                "link": created.link,
                "title": created.title,
                "description": created.description,
                "alt_text": created.alt_text,
                "board_id": created.board_id,
                "board_section_id": null,
                "board_owner": {"username": user.username},
                "is_owner": true,
                "media": {"media_type": "image"},
            })),
        )
            .into_response())
    }
}

/// The `/sandbox/pinterest` control routes.
pub(crate) fn control_routes(pinterest: &PinterestControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .route("/users/{id}/pins", get(control_pins))
        .route("/boards/{id}", delete(control_delete_board))
        .with_state(pinterest.clone())
}

async fn control_state(State(pinterest): State<PinterestControl>) -> Json<Value> {
    let world = pinterest.world();
    Json(json!({
        "client_id": world.app.client_id,
        "users": world.users,
        "boards": world.boards,
        "pins": world.pins.len(),
        "refresh_calls": world.app.refresh_calls,
        "token_requests": world.app.token_log.len(),
        "pending_faults": pinterest.faults.pending_faults(),
    }))
}

async fn control_pins(
    State(pinterest): State<PinterestControl>,
    Path(id): Path<String>,
) -> Result<Json<Vec<PinterestPin>>, SandboxError> {
    pinterest.world().require_user(&id)?;
    Ok(Json(pinterest.pins(&id)))
}

async fn control_delete_board(
    State(pinterest): State<PinterestControl>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    pinterest.delete_board(&id)?;
    Ok(Json(json!({"deleted": id})))
}
