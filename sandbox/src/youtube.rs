//! YouTube (Data API v3 with Google OAuth 2.0) simulated: Google's consent with PKCE,
//! `access_type=offline` and `prompt=consent`; refresh tokens that do not rotate;
//! revocation that ends the whole grant; `channels.list?mine=true`; the resumable upload
//! of `videos.insert` (sessions, 308 Resume Incomplete with `Range`, status queries);
//! the project's daily quota; Google's error shapes — and [`YoutubeControl`], the handle
//! tests and the demo use to act as Google or its users.
//!
//! Routes, relative to the `/youtube` prefix (the engine is configured with
//! `auth_url = {base}/youtube/o/oauth2/v2/auth`, `token_url = {base}/youtube/token`,
//! `revoke_url = {base}/youtube/revoke`, `api_base = {base}/youtube`):
//!
//! | route | what |
//! |---|---|
//! | `GET /o/oauth2/v2/auth` | checks the request, shows the login-and-consent form |
//! | `POST /o/oauth2/v2/auth` | the form: `username`, `password`, hidden request fields, `decision` |
//! | `POST /token` | `authorization_code` and `refresh_token` grants; client secret in the body (or Basic) |
//! | `POST /revoke` | `token` in the form; the grant ends; 400 `invalid_token` for a token already gone |
//! | `GET /youtube/v3/channels` | `part`, `mine=true`: the author's channel, or no `items` |
//! | `POST /upload/youtube/v3/videos` | `uploadType=resumable`: starts a session (`Location`) |
//! | `PUT /upload/youtube/v3/videos` | `upload_id`: a chunk (`Content-Range: bytes A-B/T`) or a status query (`bytes */T`) |
//!
//! Controls, under `/sandbox/youtube`: `GET /state`, `POST /quota {"remaining"}`,
//! `POST /users/{id}/upload-limit`, `GET /videos`, `POST /drop-chunk {"chunks"}`,
//! the shared grant controls (`POST /users/{id}/revoke`, `/users/{id}/expire`,
//! `PUT /access-token-lifetime`, `GET /token-requests`, `/revoked-tokens`) (`{id}` an id or username), the shared fault controls (`POST /fail`, `/stall`,
//! `/drop`, `/garble`, `DELETE /faults`, which also disarms chunk drops; no `/rate-limit`: YouTube's
//! limit is its quota),
//! and `GET /media/sample.mp4`, a small video for posts to point at.
//!
//! Written from Google's OAuth 2.0 web-server and resumable-upload guides and the Data
//! API reference. Where they are silent the sandbox chooses:
//! - Quota: 10,000 units a day, 1600 per `videos.insert` and 1 per `channels.list` (the
//!   cost table). The count does not reset by itself — the sandbox keeps no Pacific
//!   clock; [`YoutubeControl::set_remaining_quota`] plays Google's midnight reset.
//! - A refresh token is issued at a user's first consent and whenever `prompt=consent`
//!   was asked, and only with `access_type=offline`.
//! - A dropped chunk ([`YoutubeControl::drop_next_chunks`]) keeps the first half of the
//!   chunk's bytes and closes the connection without an answer.
//!
//! Not simulated: the `openid`/`email` identity, brand accounts with several channels,
//! thumbnails, the audit lock to private, upload processing states, and the refresh
//! token's own expiry (a revoked and an expired token answer alike on the wire, so
//! [`YoutubeControl::revoke_user_grants`] stands for both).

use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::control::{fault_controls, grant_controls, Shared};
use super::faults::{inject, ConnectionHandle, FaultPoint, Faults};
use super::oauth::{
    self, token_fingerprint, ClientRegistration, ConsentPage, OAuthApp, RefreshRejection,
    TokenOutcome, TokenRequest,
};
use super::SandboxError;
use crate::oauth::SANDBOX_PASSWORD;

/// Google's access tokens: an hour (answered as 3599 s).
const ACCESS_LIFETIME: Duration = Duration::from_secs(3599);
/// Google's codes are short-lived; a minute catches a client that sits on one.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// The daily allocation and the cost table.
pub const DAILY_QUOTA: u32 = 10_000;
pub const INSERT_COST: u32 = 1600;
pub const LIST_COST: u32 = 1;
/// Google's chunk unit: every chunk but the last is a multiple of it.
const CHUNK_UNIT: usize = 256 * 1024;
/// The sample video: 2.3 chunk units, so that an upload in 256 KiB chunks takes three.
const SAMPLE_VIDEO_BYTES: usize = 600 * 1024;

pub const UPLOAD_SCOPE: &str = "https://www.googleapis.com/auth/youtube.upload";
pub const READONLY_SCOPE: &str = "https://www.googleapis.com/auth/youtube.readonly";
const MANAGE_SCOPE: &str = "https://www.googleapis.com/auth/youtube";
const FORCE_SSL_SCOPE: &str = "https://www.googleapis.com/auth/youtube.force-ssl";
const KNOWN_SCOPES: &[&str] = &[
    UPLOAD_SCOPE,
    READONLY_SCOPE,
    MANAGE_SCOPE,
    FORCE_SSL_SCOPE,
    "openid",
    "email",
    "profile",
];
/// What `channels.list` accepts (`youtube.upload` is not among them).
const CHANNEL_READ_SCOPES: &[&str] = &[READONLY_SCOPE, MANAGE_SCOPE, FORCE_SSL_SCOPE];
/// What `videos.insert` accepts.
const INSERT_SCOPES: &[&str] = &[UPLOAD_SCOPE, MANAGE_SCOPE, FORCE_SSL_SCOPE];

const AUTHORIZE_PATH: &str = "/youtube/o/oauth2/v2/auth";
const UPLOAD_PATH: &str = "/youtube/upload/youtube/v3/videos";

/// A simulated Google account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YoutubeUser {
    /// Google's account id.
    pub id: String,
    /// The login name on the consent page.
    pub username: String,
    /// The account's YouTube channel, if it made one.
    pub channel: Option<YoutubeChannel>,
}

/// A YouTube channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YoutubeChannel {
    pub id: String,
    pub title: String,
    /// The handle, `@name`.
    pub custom_url: String,
}

/// A video created through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YoutubeVideo {
    pub id: String,
    pub channel_id: String,
    pub title: String,
    pub description: String,
    pub privacy_status: String,
    pub category_id: Option<String>,
    pub content_type: String,
    /// The bytes received, in order.
    pub size: usize,
    /// Whether the bytes are exactly the sample video's (an upload that resumed wrongly
    /// would not be).
    pub matches_sample: bool,
}

/// What an authorize request carried besides RFC 6749's fields, for tests to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizeSeen {
    pub access_type: Option<String>,
    pub prompt: Option<String>,
    pub code_challenge_method: Option<String>,
    pub state: Option<String>,
    pub scopes: Vec<String>,
}

/// One resumable upload session.
struct Session {
    user_id: String,
    channel_id: String,
    total: usize,
    content_type: String,
    metadata: Metadata,
    received: Vec<u8>,
    /// The video, once the last byte arrived.
    video_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    snippet: Snippet,
    #[serde(default)]
    status: VideoStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snippet {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    category_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoStatus {
    #[serde(default)]
    privacy_status: Option<String>,
}

/// Why an API call was refused before it was looked at, made into Google's answer only
/// when sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallRefused {
    /// 401 `authError`: no bearer token, or one Google does not take.
    InvalidCredentials,
    /// 403 `insufficientPermissions`: the token lacks every scope the method accepts.
    InsufficientScopes,
    /// 403 `quotaExceeded`: the project spent its day.
    QuotaExceeded,
}

impl IntoResponse for CallRefused {
    fn into_response(self) -> Response {
        match self {
            CallRefused::InvalidCredentials => invalid_credentials(),
            CallRefused::InsufficientScopes => google_error(
                StatusCode::FORBIDDEN,
                "Request had insufficient authentication scopes.",
                "global",
                "insufficientPermissions",
                "PERMISSION_DENIED",
            ),
            CallRefused::QuotaExceeded => quota_exceeded(),
        }
    }
}

/// Handle on YouTube's simulated state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct YoutubeControl {
    /// Everything the platform knows, shared with its handlers.
    world: Shared<World>,
    /// Armed faults, shared with the middleware that applies them; the handle derefs
    /// to them.
    faults: Faults,
}

fault_controls!(YoutubeControl, None);
grant_controls!(
    YoutubeControl,
    World,
    "youtube",
    owner = |world, who| Ok(world.require_user(who)?.id.clone())
);

pub(crate) struct World {
    /// The app registration and what was granted to it.
    app: OAuthApp,
    users: Vec<YoutubeUser>,
    /// For each code: whether its exchange issues a refresh token.
    offline_codes: HashMap<String, bool>,
    /// Users who consented before: Google sends a refresh token again only with
    /// `prompt=consent`.
    consented: HashSet<String>,
    authorize_log: Vec<AuthorizeSeen>,
    quota_spent: u32,
    quota_daily: u32,
    /// Users who uploaded all they may today (`uploadLimitExceeded`).
    upload_limited: HashSet<String>,
    sessions: HashMap<String, Session>,
    videos: Vec<YoutubeVideo>,
    /// Chunks left that lose half their bytes and their answer.
    drop_chunks: u32,
    next_id: u64,
}

impl World {
    fn new() -> Self {
        World {
            app: OAuthApp::new("youtube", ACCESS_LIFETIME, CODE_LIFETIME),
            users: vec![
                YoutubeUser {
                    id: "108204268033311374519".into(),
                    username: "jane_writes".into(),
                    channel: Some(YoutubeChannel {
                        id: "UCjanewrites0000000000aa".into(),
                        title: "Jane Writes".into(),
                        custom_url: "@janewrites".into(),
                    }),
                },
                YoutubeUser {
                    id: "108204268033311374520".into(),
                    username: "no_channel".into(),
                    channel: None,
                },
            ],
            offline_codes: HashMap::new(),
            consented: HashSet::new(),
            authorize_log: Vec::new(),
            quota_spent: 0,
            quota_daily: DAILY_QUOTA,
            upload_limited: HashSet::new(),
            sessions: HashMap::new(),
            videos: Vec::new(),
            drop_chunks: 0,
            next_id: 1,
        }
    }

    fn require_user(&self, who: &str) -> Result<&YoutubeUser, SandboxError> {
        self.users
            .iter()
            .find(|u| u.id == who || u.username.eq_ignore_ascii_case(who))
            .ok_or_else(|| SandboxError::UnknownUser(who.to_owned()))
    }

    fn registration(&self) -> ClientRegistration<'_> {
        self.app.registration(KNOWN_SCOPES, false)
    }

    fn quota_remaining(&self) -> u32 {
        self.quota_daily.saturating_sub(self.quota_spent)
    }

    /// Charges `cost` units, or answers Google's `quotaExceeded`.
    fn charge(&mut self, cost: u32) -> Result<(), CallRefused> {
        if self.quota_remaining() < cost {
            return Err(CallRefused::QuotaExceeded);
        }
        self.quota_spent += cost;
        Ok(())
    }

    /// The user behind a bearer token with one of `scopes`, or Google's 401/403.
    fn authorize_call(
        &self,
        headers: &HeaderMap,
        scopes: &[&str],
    ) -> Result<YoutubeUser, CallRefused> {
        let owner = oauth::bearer_token(headers)
            .and_then(|token| self.app.tokens.authenticate(token).ok())
            .ok_or(CallRefused::InvalidCredentials)?;
        if !owner.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
            return Err(CallRefused::InsufficientScopes);
        }
        self.users
            .iter()
            .find(|u| u.id == owner.user_id)
            .cloned()
            .ok_or(CallRefused::InvalidCredentials)
    }
}

impl YoutubeControl {
    pub(crate) fn new() -> Self {
        YoutubeControl {
            world: Shared::new(World::new()),
            faults: Faults::default(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock()
    }

    pub fn users(&self) -> Vec<YoutubeUser> {
        self.world().users.clone()
    }

    /// The channel of a user (by id or username), if they have one.
    pub fn channel(&self, user: &str) -> Result<Option<YoutubeChannel>, SandboxError> {
        Ok(self.world().require_user(user)?.channel.clone())
    }

    /// Units left today.
    pub fn remaining_quota(&self) -> u32 {
        self.world().quota_remaining()
    }

    /// Sets the units left today (Google's midnight reset is `DAILY_QUOTA`).
    pub fn set_remaining_quota(&self, units: u32) {
        let mut world = self.world();
        world.quota_daily = world.quota_spent.saturating_add(units);
    }

    /// The user reached YouTube's per-channel upload limit: the next inserts answer 400
    /// `uploadLimitExceeded` until [`YoutubeControl::clear_upload_limit`].
    pub fn limit_uploads(&self, user: &str) -> Result<(), SandboxError> {
        let mut world = self.world();
        let id = world.require_user(user)?.id.clone();
        world.upload_limited.insert(id);
        Ok(())
    }

    pub fn clear_upload_limit(&self, user: &str) -> Result<(), SandboxError> {
        let mut world = self.world();
        let id = world.require_user(user)?.id.clone();
        world.upload_limited.remove(&id);
        Ok(())
    }

    /// The next `chunks` upload chunks keep only half their bytes and lose their answer.
    pub fn drop_next_chunks(&self, chunks: u32) {
        self.world().drop_chunks = chunks;
    }

    /// Chunk drops still armed.
    pub fn pending_chunk_drops(&self) -> u32 {
        self.world().drop_chunks
    }

    /// Disarms every pending fault, chunk drops included; takes the place of the shared
    /// [`Faults::clear_faults`] for YouTube.
    pub fn clear_faults(&self) {
        self.faults.clear_faults();
        self.world().drop_chunks = 0;
    }

    /// Videos created, oldest first.
    pub fn videos(&self) -> Vec<YoutubeVideo> {
        self.world().videos.clone()
    }

    /// What each authorize request carried, oldest first.
    pub fn authorize_requests(&self) -> Vec<AuthorizeSeen> {
        self.world().authorize_log.clone()
    }

    /// The bytes of `GET /sandbox/youtube/media/sample.mp4`.
    pub fn sample_video() -> Vec<u8> {
        sample_video()
    }
}

/// A deterministic stand-in for an MP4: an `ftyp` box, then a pattern no prefix of
/// which repeats at a chunk boundary, so a misplaced resume shows.
fn sample_video() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SAMPLE_VIDEO_BYTES);
    bytes.extend_from_slice(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom");
    let mut state: u32 = 0x9E37_79B9;
    while bytes.len() < SAMPLE_VIDEO_BYTES {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.push(state.to_le_bytes()[0]);
    }
    bytes
}

/// Google's API error envelope.
fn google_error(
    status: StatusCode,
    message: &str,
    domain: &str,
    reason: &str,
    status_name: &str,
) -> Response {
    (
        status,
        Json(json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
                "status": status_name,
            }
        })),
    )
        .into_response()
}

fn invalid_credentials() -> Response {
    let mut response = google_error(
        StatusCode::UNAUTHORIZED,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, \
         login cookie or other valid authentication credential.",
        "global",
        "authError",
        "UNAUTHENTICATED",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        ),
    );
    response
}

fn quota_exceeded() -> Response {
    google_error(
        StatusCode::FORBIDDEN,
        "The request cannot be completed because you have exceeded your \
         <a href=\"/youtube/v3/getting-started#quota\">quota</a>.",
        "youtube.quota",
        "quotaExceeded",
        "PERMISSION_DENIED",
    )
}

fn bad_request(message: &str, domain: &str, reason: &str) -> Response {
    google_error(
        StatusCode::BAD_REQUEST,
        message,
        domain,
        reason,
        "INVALID_ARGUMENT",
    )
}

/// An RFC 6749 error from the token or revoke endpoint, in Google's words.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

pub(crate) fn platform_routes(youtube: &YoutubeControl) -> Router {
    let fault_point = FaultPoint {
        faults: youtube.faults.clone(),
        render_failure: |status| {
            google_error(
                status,
                "The service is currently unavailable.",
                "global",
                "backendError",
                "UNAVAILABLE",
            )
        },
    };
    let consent = Router::new().route(
        "/o/oauth2/v2/auth",
        get(authorize_page).post(authorize_decision),
    );
    let api = Router::new()
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/youtube/v3/channels", get(channels))
        .route(
            "/upload/youtube/v3/videos",
            post(start_upload).put(put_upload),
        )
        .route_layer(middleware::from_fn_with_state(fault_point, inject));
    consent.merge(api).with_state(youtube.clone())
}

pub(crate) fn control_routes(youtube: &YoutubeControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .route("/quota", post(control_quota))
        .route("/users/{id}/upload-limit", post(control_upload_limit))
        .route("/videos", get(control_videos))
        .route("/drop-chunk", post(control_drop_chunk))
        .route("/media/sample.mp4", get(sample_media))
        .with_state(youtube.clone())
}

/// `GET /o/oauth2/v2/auth`.
async fn authorize_page(
    State(youtube): State<YoutubeControl>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match oauth::authorize_query(query.as_deref()) {
        Ok(params) => params,
        Err(page) => return page.into_response(),
    };
    let mut world = youtube.world();
    let get = |name: &str| params.get(name).cloned();
    world.authorize_log.push(AuthorizeSeen {
        access_type: get("access_type"),
        prompt: get("prompt"),
        code_challenge_method: get("code_challenge_method"),
        state: get("state"),
        scopes: get("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    });
    match oauth::check_authorize_request(&params, &world.registration()) {
        Ok(request) => {
            // Google's own parameters ride on the form's action, so that the POST knows
            // whether to issue a refresh token.
            let action = extras_action(&params);
            oauth::consent_page(&ConsentPage {
                platform: "YouTube",
                action: &action,
                request: &request,
                error: None,
                username: "",
            })
            .into_response()
        }
        Err(rejection) => rejection.into_response(),
    }
}

/// The authorize path with `access_type` and `prompt` as they were asked.
fn extras_action(params: &HashMap<String, String>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for name in ["access_type", "prompt"] {
        if let Some(value) = params.get(name) {
            query.append_pair(name, value);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        AUTHORIZE_PATH.to_owned()
    } else {
        format!("{AUTHORIZE_PATH}?{query}")
    }
}

/// `POST /o/oauth2/v2/auth`: the person logged in and chose Allow or Cancel.
async fn authorize_decision(
    State(youtube): State<YoutubeControl>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, extras) = match (
        oauth::parse_form(&headers, &body),
        oauth::parse_query(query.as_deref()),
    ) {
        (Ok(form), Ok(extras)) => (form, extras),
        (Err(reason), _) | (_, Err(reason)) => {
            return (
                StatusCode::BAD_REQUEST,
                oauth::error_page(&reason.to_string()),
            )
                .into_response()
        }
    };
    let mut world = youtube.world();
    let request = match oauth::check_authorize_request(&form, &world.registration()) {
        Ok(request) => request,
        Err(rejection) => return rejection.into_response(),
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let username = field("username").trim();
    let action = extras_action(&extras);
    match field("decision") {
        "cancel" => oauth::redirect_to(
            &request.redirect_uri,
            &[("error", "access_denied"), ("state", &request.state)],
        ),
        "authorize" => {
            let user = world
                .users
                .iter()
                .find(|u| u.username.eq_ignore_ascii_case(username))
                .map(|u| u.id.clone());
            let Some(user_id) = user.filter(|_| field("password") == SANDBOX_PASSWORD) else {
                return oauth::consent_page(&ConsentPage {
                    platform: "YouTube",
                    action: &action,
                    request: &request,
                    error: Some("Wrong username or password."),
                    username,
                })
                .into_response();
            };
            let offline = extras.get("access_type").map(String::as_str) == Some("offline");
            let prompted = extras
                .get("prompt")
                .is_some_and(|p| p.split(' ').any(|p| p == "consent"));
            let first_consent = world.consented.insert(user_id.clone());
            let code = world.app.issue_code(&request, &user_id);
            world
                .offline_codes
                .insert(code.clone(), offline && (first_consent || prompted));
            tracing::info!(
                platform = "youtube",
                user_id,
                "user authorized the app; code issued"
            );
            let scope = request.scopes.join(" ");
            let mut params = vec![("code", code.as_str()), ("scope", scope.as_str())];
            if !request.state.is_empty() {
                params.push(("state", &request.state));
            }
            oauth::redirect_to(&request.redirect_uri, &params)
        }
        _ => (
            StatusCode::BAD_REQUEST,
            oauth::error_page("The form has no decision."),
        )
            .into_response(),
    }
}

/// `POST /token`.
async fn token(State(youtube): State<YoutubeControl>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match oauth::parse_form(&headers, &body) {
        Ok(form) => form,
        Err(reason) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &reason.to_string(),
            )
        }
    };
    let mut world = youtube.world();
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    let log = |world: &mut World, credential: Option<&str>, outcome: TokenOutcome| {
        world.app.token_log.push(TokenRequest {
            grant_type: grant_type.clone(),
            credential: credential.map(token_fingerprint),
            outcome,
        });
    };
    // Google takes the secret in the body (client_secret_post) or as Basic.
    let (client_id, client_secret) = match oauth::basic_credentials(&headers) {
        Some(basic) => (basic.id, basic.secret),
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if client_id != world.app.client_id {
        log(&mut world, None, TokenOutcome::UnauthorizedClient);
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    if client_secret != world.app.client_secret.expose() {
        log(&mut world, None, TokenOutcome::UnauthorizedClient);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    match grant_type.as_str() {
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(verifier) = form.get("code_verifier").filter(|v| !v.is_empty()) else {
                log(&mut world, Some(&code), TokenOutcome::InvalidCode);
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Missing code verifier.",
                );
            };
            let redirect_uri = form.get("redirect_uri").cloned().unwrap_or_default();
            let redeemed = world
                .app
                .codes
                .redeem(&code, &client_id, &redirect_uri, verifier);
            let grant = match redeemed {
                Ok(grant) => grant,
                Err(oauth::CodeRejection::Replayed {
                    family: Some(family),
                }) => {
                    world
                        .app
                        .tokens
                        .revoke_family(family, oauth::RevokeCause::CodeReplayed);
                    log(&mut world, Some(&code), TokenOutcome::InvalidCode);
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
                }
                Err(_) => {
                    log(&mut world, Some(&code), TokenOutcome::InvalidCode);
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
                }
            };
            let with_refresh = world.offline_codes.remove(&code).unwrap_or(false);
            let lifetime = world.app.access_lifetime;
            let issued = world.app.tokens.issue(
                &grant.user_id,
                &client_id,
                grant.scopes,
                lifetime,
                with_refresh,
            );
            world.app.codes.link_family(&code, issued.family);
            log(&mut world, Some(&code), TokenOutcome::Issued);
            token_answer(issued)
        }
        "refresh_token" => {
            world.app.refresh_calls += 1;
            let refresh = form.get("refresh_token").cloned().unwrap_or_default();
            let lifetime = world.app.access_lifetime;
            match world.app.tokens.renew(&refresh, &client_id, lifetime) {
                Ok(issued) => {
                    log(&mut world, Some(&refresh), TokenOutcome::Issued);
                    token_answer(issued)
                }
                Err(rejection) => {
                    let outcome = match rejection {
                        RefreshRejection::Unknown => TokenOutcome::UnknownRefreshToken,
                        RefreshRejection::WrongClient => TokenOutcome::RefreshTokenOfAnotherClient,
                        RefreshRejection::Revoked | RefreshRejection::Reused => {
                            TokenOutcome::RefreshTokenRevoked
                        }
                    };
                    log(&mut world, Some(&refresh), outcome);
                    if rejection == RefreshRejection::WrongClient {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "unauthorized_client",
                            "Unauthorized",
                        );
                    }
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Token has been expired or revoked.",
                    )
                }
            }
        }
        other => {
            log(&mut world, None, TokenOutcome::UnsupportedGrantType);
            oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )
        }
    }
}

/// Google's token answer: a refresh token only when one was issued.
fn token_answer(issued: oauth::IssuedTokens) -> Response {
    let mut body = json!({
        "access_token": issued.access_token,
        "expires_in": issued.expires_in,
        "scope": issued.scopes.join(" "),
        "token_type": "Bearer",
    });
    if let (Some(refresh), Some(map)) = (issued.refresh_token, body.as_object_mut()) {
        map.insert("refresh_token".into(), Value::String(refresh));
    }
    (
        [(
            header::CACHE_CONTROL,
            "no-cache, no-store, max-age=0, must-revalidate",
        )],
        Json(body),
    )
        .into_response()
}

/// `POST /revoke`: `token` in the form (or the query). 200 with an empty body when the
/// grant ends; 400 `invalid_token` for a token Google no longer knows.
async fn revoke(
    State(youtube): State<YoutubeControl>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = oauth::parse_form(&headers, &body).unwrap_or_default();
    let from_query = oauth::parse_query(query.as_deref()).unwrap_or_default();
    let Some(token) = form
        .get("token")
        .or_else(|| from_query.get("token"))
        .filter(|t| !t.is_empty())
        .cloned()
    else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request");
    };
    let mut world = youtube.world();
    if world.app.tokens.revoke_grant_of(&token) {
        tracing::info!(platform = "youtube", token = %token_fingerprint(&token), "grant revoked by the client");
        (StatusCode::OK, Json(json!({}))).into_response()
    } else {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        )
    }
}

/// `GET /youtube/v3/channels?part=...&mine=true`.
async fn channels(
    State(youtube): State<YoutubeControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = oauth::parse_query(query.as_deref()).unwrap_or_default();
    let mut world = youtube.world();
    let user = match world.authorize_call(&headers, CHANNEL_READ_SCOPES) {
        Ok(user) => user,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = world.charge(LIST_COST) {
        return refused.into_response();
    }
    let Some(part) = params.get("part").filter(|p| !p.is_empty()) else {
        return bad_request("Required parameter: part", "global", "required");
    };
    if params.get("mine").map(String::as_str) != Some("true") {
        return bad_request(
            "No filter selected. Expected one of: forUsername, id, managedByMe, categoryId, \
             mine, mySubscribers, forHandle",
            "youtube.parameter",
            "missingRequiredParameter",
        );
    }
    let parts: Vec<&str> = part.split(',').map(str::trim).collect();
    let mut body = json!({
        "kind": "youtube#channelListResponse",
        "etag": "sandbox-etag",
        "pageInfo": {"totalResults": 0, "resultsPerPage": 5},
    });
    if let Some(channel) = &user.channel {
        let mut item = json!({"kind": "youtube#channel", "etag": "sandbox-etag", "id": channel.id});
        if parts.contains(&"snippet") {
            item["snippet"] = json!({
                "title": channel.title,
                "description": "",
                "customUrl": channel.custom_url,
                "publishedAt": "2019-04-02T10:00:00Z",
                "thumbnails": {
                    "default": {"url": format!("https://yt3.ggpht.com/sandbox/{}=s88", channel.id), "width": 88, "height": 88},
                    "medium": {"url": format!("https://yt3.ggpht.com/sandbox/{}=s240", channel.id), "width": 240, "height": 240},
                    "high": {"url": format!("https://yt3.ggpht.com/sandbox/{}=s800", channel.id), "width": 800, "height": 800},
                },
                "localized": {"title": channel.title, "description": ""},
            });
        }
        body["items"] = json!([item]);
        body["pageInfo"]["totalResults"] = json!(1);
    }
    Json(body).into_response()
}

/// `POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`.
async fn start_upload(
    State(youtube): State<YoutubeControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = oauth::parse_query(query.as_deref()).unwrap_or_default();
    let mut world = youtube.world();
    let user = match world.authorize_call(&headers, INSERT_SCOPES) {
        Ok(user) => user,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = world.charge(INSERT_COST) {
        return refused.into_response();
    }
    if params.get("uploadType").map(String::as_str) != Some("resumable") {
        return bad_request(
            "The sandbox accepts only uploadType=resumable.",
            "global",
            "badRequest",
        );
    }
    let Some(channel) = user.channel.clone() else {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "youtube.header",
            "youtubeSignupRequired",
            "UNAUTHENTICATED",
        );
    };
    if world.upload_limited.contains(&user.id) {
        return bad_request(
            "The user has exceeded the number of videos they may upload.",
            "youtube.video",
            "uploadLimitExceeded",
        );
    }
    let metadata: Metadata = match serde_json::from_slice(&body) {
        Ok(metadata) => metadata,
        Err(error) => {
            return bad_request(
                &format!("The request metadata is invalid: {error}"),
                "youtube.video",
                "invalidVideoMetadata",
            )
        }
    };
    let title = metadata.snippet.title.clone().unwrap_or_default();
    if title.trim().is_empty() {
        return bad_request(
            "The request metadata does not specify a video title.",
            "youtube.video",
            "invalidTitle",
        );
    }
    if title.chars().count() > 100 || title.contains(['<', '>']) {
        return bad_request(
            "The request metadata specifies an invalid video title.",
            "youtube.video",
            "invalidTitle",
        );
    }
    let description = metadata.snippet.description.clone().unwrap_or_default();
    if description.len() > 5000 || description.contains(['<', '>']) {
        return bad_request(
            "The request metadata specifies an invalid video description.",
            "youtube.video",
            "invalidDescription",
        );
    }
    if !matches!(
        metadata.status.privacy_status.as_deref(),
        None | Some("public" | "unlisted" | "private")
    ) {
        return bad_request(
            "The request metadata specifies an invalid privacy status.",
            "youtube.video",
            "invalidVideoMetadata",
        );
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(total) =
        header("x-upload-content-length").and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return bad_request(
            "X-Upload-Content-Length is missing or not a number.",
            "global",
            "badRequest",
        );
    };
    let content_type = header("x-upload-content-type").unwrap_or_else(|| "video/*".into());
    let upload_id = oauth::random_token(24);
    world.sessions.insert(
        upload_id.clone(),
        Session {
            user_id: user.id.clone(),
            channel_id: channel.id,
            total,
            content_type,
            metadata,
            received: Vec::new(),
            video_id: None,
        },
    );
    let host = header("host").unwrap_or_else(|| "127.0.0.1".into());
    let location = format!("http://{host}{UPLOAD_PATH}?uploadType=resumable&upload_id={upload_id}");
    match HeaderValue::from_str(&location) {
        Ok(location) => {
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => bad_request("Bad Host header.", "global", "badRequest"),
    }
}

/// `Content-Range` of an upload PUT: a chunk `bytes A-B/T`, or a status query
/// `bytes */T`.
enum ContentRange {
    Chunk {
        first: usize,
        last: usize,
        total: usize,
    },
    Query {
        total: usize,
    },
}

fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?.trim();
    let rest = value.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok()?;
    if range.trim() == "*" {
        return Some(ContentRange::Query { total });
    }
    let (first, last) = range.split_once('-')?;
    Some(ContentRange::Chunk {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
        total,
    })
}

/// 308 Resume Incomplete, with `Range` when any bytes were kept.
fn resume_incomplete(received: usize) -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    if received > 0 {
        if let Ok(range) = HeaderValue::from_str(&format!("bytes=0-{}", received - 1)) {
            response.headers_mut().insert(header::RANGE, range);
        }
    }
    response
}

/// What a chunk did to its session.
enum ChunkOutcome {
    Answer(Response),
    /// Half the chunk was kept; the connection must close without an answer.
    Dropped,
}

/// `PUT /upload/youtube/v3/videos?upload_id=...`: a chunk or a status query.
async fn put_upload(
    State(youtube): State<YoutubeControl>,
    connection: Option<Extension<ConnectionHandle>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let outcome = receive_chunk(&youtube, &headers, query.as_deref(), &body);
    match (outcome, connection) {
        (ChunkOutcome::Answer(response), _) => response,
        (ChunkOutcome::Dropped, Some(Extension(connection))) => {
            connection.abort();
            // The connection task drops this future along with the socket.
            std::future::pending().await
        }
        (ChunkOutcome::Dropped, None) => {
            let received = youtube_received(&youtube, query.as_deref());
            resume_incomplete(received)
        }
    }
}

/// Bytes a session kept so far (0 for an unknown session).
fn youtube_received(youtube: &YoutubeControl, query: Option<&str>) -> usize {
    let params = oauth::parse_query(query).unwrap_or_default();
    let world = youtube.world();
    params
        .get("upload_id")
        .and_then(|id| world.sessions.get(id))
        .map_or(0, |s| s.received.len())
}

fn receive_chunk(
    youtube: &YoutubeControl,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> ChunkOutcome {
    use ChunkOutcome::Answer;
    let params = oauth::parse_query(query).unwrap_or_default();
    let Some(upload_id) = params.get("upload_id").cloned() else {
        return Answer(bad_request("Missing upload_id.", "global", "badRequest"));
    };
    let mut guard = youtube.world();
    let world = &mut *guard;
    let Some(session) = world.sessions.get_mut(&upload_id) else {
        return Answer(google_error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "global",
            "notFound",
            "NOT_FOUND",
        ));
    };
    let range = match content_range(headers) {
        Some(range) => range,
        // Without Content-Range the body is the whole video.
        None => ContentRange::Chunk {
            first: 0,
            last: body.len().saturating_sub(1),
            total: body.len(),
        },
    };
    let (first, last, total) = match range {
        ContentRange::Query { total } if total == session.total => {
            let video = session
                .video_id
                .as_ref()
                .and_then(|id| world.videos.iter().find(|v| &v.id == id));
            return Answer(match video {
                Some(video) => Json(video_resource(video)).into_response(),
                None => resume_incomplete(session.received.len()),
            });
        }
        ContentRange::Chunk { first, last, total }
            if total == session.total && last >= first && last < total =>
        {
            (first, last, total)
        }
        _ => {
            return Answer(bad_request(
                "Content-Range does not match the upload.",
                "global",
                "badContent",
            ))
        }
    };
    if body.len() != last - first + 1 {
        return Answer(bad_request(
            "The chunk's length does not match its Content-Range.",
            "global",
            "badContent",
        ));
    }
    if first > session.received.len() {
        // A gap: nothing is kept, and Google says where to go on from.
        return Answer(resume_incomplete(session.received.len()));
    }
    if last + 1 != total && body.len() % CHUNK_UNIT != 0 {
        return Answer(bad_request(
            "Chunks other than the last must be a multiple of 256 KiB.",
            "global",
            "badContent",
        ));
    }
    session.received.truncate(first);
    if world.drop_chunks > 0 {
        world.drop_chunks -= 1;
        let kept = body.len() / 2;
        session.received.extend_from_slice(&body[..kept]);
        tracing::debug!(
            platform = "youtube",
            kept,
            "sandbox dropping an upload chunk, as asked"
        );
        return ChunkOutcome::Dropped;
    }
    session.received.extend_from_slice(body);
    if session.received.len() < total {
        return Answer(resume_incomplete(session.received.len()));
    }
    world.next_id += 1;
    let video_id = format!("sbx{:08}", world.next_id);
    let snippet = &session.metadata.snippet;
    let video = YoutubeVideo {
        id: video_id.clone(),
        channel_id: session.channel_id.clone(),
        title: snippet.title.clone().unwrap_or_default(),
        description: snippet.description.clone().unwrap_or_default(),
        privacy_status: session
            .metadata
            .status
            .privacy_status
            .clone()
            .unwrap_or_else(|| "public".into()),
        category_id: snippet.category_id.clone(),
        content_type: session.content_type.clone(),
        size: session.received.len(),
        matches_sample: session.received == sample_video(),
    };
    session.video_id = Some(video_id);
    tracing::info!(platform = "youtube", user = %session.user_id, video = %video.id, "video uploaded");
    let resource = video_resource(&video);
    world.videos.push(video);
    Answer((StatusCode::OK, Json(resource)).into_response())
}

/// A `youtube#video` resource.
fn video_resource(video: &YoutubeVideo) -> Value {
    json!({
        "kind": "youtube#video",
        "etag": "sandbox-etag",
        "id": video.id,
        "snippet": {
            "publishedAt": "2026-01-01T00:00:00Z",
            "channelId": video.channel_id,
            "title": video.title,
            "description": video.description,
            "categoryId": video.category_id,
        },
        "status": {
            "uploadStatus": "uploaded",
            "privacyStatus": video.privacy_status,
        },
    })
}

async fn sample_media() -> Response {
    ([(header::CONTENT_TYPE, "video/mp4")], sample_video()).into_response()
}

async fn control_state(State(youtube): State<YoutubeControl>) -> Json<Value> {
    let world = youtube.world();
    Json(json!({
        "client_id": world.app.client_id,
        "users": world.users,
        "quota": {"daily": world.quota_daily, "spent": world.quota_spent, "remaining": world.quota_remaining()},
        "videos": world.videos.len(),
        "refresh_calls": world.app.refresh_calls,
        "token_requests": world.app.token_log.len(),
        "drop_chunks": world.drop_chunks,
        "pending_faults": youtube.faults.pending_faults(),
    }))
}

#[derive(Deserialize)]
struct QuotaBody {
    remaining: u32,
}

async fn control_quota(
    State(youtube): State<YoutubeControl>,
    Json(body): Json<QuotaBody>,
) -> Json<Value> {
    youtube.set_remaining_quota(body.remaining);
    Json(json!({"remaining": youtube.remaining_quota()}))
}

async fn control_upload_limit(
    State(youtube): State<YoutubeControl>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    youtube.limit_uploads(&id)?;
    Ok(Json(json!({"upload_limited": true})))
}

async fn control_videos(State(youtube): State<YoutubeControl>) -> Json<Vec<YoutubeVideo>> {
    Json(youtube.videos())
}

#[derive(Deserialize)]
struct DropChunkBody {
    chunks: u32,
}

async fn control_drop_chunk(
    State(youtube): State<YoutubeControl>,
    Json(body): Json<DropChunkBody>,
) -> Json<Value> {
    youtube.drop_next_chunks(body.chunks);
    Json(json!({"drop_chunks": body.chunks}))
}
