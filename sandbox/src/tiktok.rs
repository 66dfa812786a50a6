//! TikTok (Login Kit for Web and the Content Posting API) simulated: the authorize page
//! with `client_key` and comma-separated scopes, the v2 token endpoint with rotating
//! refresh tokens, revocation, user info, creator info, Direct Post video init by
//! `PULL_FROM_URL` or `FILE_UPLOAD` (chunked `PUT`s with `Content-Range`), publish status
//! that advances as it is polled — all in TikTok's envelope
//! `{"data":…,"error":{"code":"ok","message":"","log_id":…}}` — and [`TiktokControl`], the
//! handle tests and the demo use to act as TikTok or its creators.
//!
//! Routes, relative to the `/tiktok` prefix (so the engine is configured with
//! `auth_url = {base}/tiktok/v2/auth/authorize/`, `token_url = {base}/tiktok/v2/oauth/token/`,
//! `revoke_url = {base}/tiktok/v2/oauth/revoke/`, `api_base = {base}/tiktok`):
//!
//! | route | what |
//! |---|---|
//! | `GET /v2/auth/authorize/` | checks `client_key`, `scope`, `redirect_uri`, `state`, `response_type`; shows the consent form |
//! | `POST /v2/auth/authorize/` | the form: `username`, `password`, hidden request fields, `decision` |
//! | `POST /v2/oauth/token/` | form: `client_key`, `client_secret`, `grant_type` (`authorization_code` with `code`, `redirect_uri`, optional `code_verifier`; `refresh_token` with `refresh_token`) |
//! | `POST /v2/oauth/revoke/` | form: `client_key`, `client_secret`, `token` |
//! | `GET /v2/user/info/?fields=…` | the creator's `open_id`, `union_id`, `display_name`, `avatar_url` (`user.info.basic`) |
//! | `POST /v2/post/publish/creator_info/query/` | privacy options, interaction settings, `max_video_post_duration_sec` (`video.publish`) |
//! | `POST /v2/post/publish/video/init/` | `post_info` + `source_info` (`video.publish`) |
//! | `PUT /upload/?upload_id&upload_token` | one chunk, `Content-Range: bytes first-last/total` |
//! | `POST /v2/post/publish/status/fetch/` | `{"publish_id"}` → `status`, `fail_reason`, `publicaly_available_post_id` |
//! | `GET /media/{name}` | a video the sandbox serves itself, for `PULL_FROM_URL` |
//!
//! Controls, under `/sandbox/tiktok`: `GET /state`, `POST /audited {"audited"}`,
//! `GET /users/{id}/posts`, the shared grant controls (`POST /users/{id}/revoke`, `/users/{id}/expire`,
//! `PUT /access-token-lifetime`, `GET /token-requests`, `/revoked-tokens`) (`{id}` an open id or
//! username), and the shared fault controls (`POST /fail`, `/stall`, `/drop`, `/garble`, `/rate-limit`,
//! `DELETE /faults`).
//!
//! Seeded creators (password `sandbox`): `jane_tok` (public account, can post),
//! `quiet_tok` (private account), `banned_tok` (not eligible: creator info answers
//! `spam_risk_user_banned_from_posting`).
//!
//! Written from TikTok's developer docs. Where they are silent the sandbox chooses:
//! - Token errors answer RFC-style statuses (400 `invalid_grant`/`invalid_request`, 401
//!   `invalid_client`) with TikTok's `{"error","error_description","log_id"}` body. ⚠
//!   TikTok has been seen answering some of them with HTTP 200; clients read the body.
//! - Refresh tokens rotate (the newest doc): the one presented is spent, and presenting
//!   a spent one revokes the whole grant.
//! - Web apps have no PKCE in the docs; a `code_challenge` on the authorize request, if
//!   sent anyway, binds the code to the verifier (S256, base64url) as desktop apps do.
//! - An unaudited app may post only to private accounts: init for a public account
//!   answers 403 `unaudited_client_can_only_post_to_private_accounts`; a post to a
//!   private account is forced to `SELF_ONLY`.
//! - Every video URL under this sandbox's own `/tiktok/media/` path counts as a verified
//!   domain; others are `url_ownership_unverified` unless added with
//!   [`TiktokControl::verify_url_prefix`]. A pull of an unknown media name fails with
//!   `video_pull_failed`.
//! - The status advances per fetch, not per second: `processing_polls` fetches answer
//!   `PROCESSING_*`, the next one the outcome.
//! - The daily post cap per creator (unpublished by TikTok) is 15 here.
//!
//! Not simulated: photo posts, inbox (draft) uploads, webhooks, and checking the video
//! itself (format, duration). Its videos are MP4 headers with a length
//! ([`TiktokControl::add_video_lasting`]) and filler, so an uploader can measure them.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::control::{fault_controls, grant_controls, Shared};
use super::faults::{inject, FaultPoint, Faults};
use super::oauth::{
    self, token_fingerprint, AuthorizeRejection, AuthorizeRequest, CodeRejection, ConsentFlow,
    IssuedTokens, LooseAuthorize, OAuthApp, RefreshRejection, RevokeCause, TokenOutcome,
};
use super::SandboxError;

/// The newest doc: access tokens last 2 hours…
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// …and refresh tokens 180 days.
const REFRESH_LIFETIME: Duration = Duration::from_secs(180 * 24 * 60 * 60);
/// TikTok does not say; 5 minutes is generous.
const CODE_LIFETIME: Duration = Duration::from_secs(300);
const KNOWN_SCOPES: &[&str] = &[
    "user.info.basic",
    "user.info.profile",
    "user.info.stats",
    "video.list",
    "video.publish",
    "video.upload",
];
const MB: u64 = 1024 * 1024;
const MIN_CHUNK: u64 = 5 * MB;
const MAX_CHUNK: u64 = 64 * MB;
const MAX_LAST_CHUNK: u64 = 128 * MB;
const MAX_CHUNKS: u64 = 1000;
/// "maximum length is 2200 in UTF-16 runes".
const MAX_TITLE_UTF16: usize = 2200;
const DAILY_POST_CAP: u32 = 15;
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Per user token per minute, from each endpoint's reference page.
const INIT_PER_MINUTE: u32 = 6;
const CREATOR_INFO_PER_MINUTE: u32 = 20;
const STATUS_PER_MINUTE: u32 = 30;
const USER_INFO_PER_MINUTE: u32 = 600;

/// A simulated TikTok creator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TiktokCreator {
    pub open_id: String,
    pub union_id: String,
    /// `creator_username`, also the login name on the consent page.
    pub username: String,
    pub display_name: String,
    /// A private account offers `FOLLOWER_OF_CREATOR` instead of `PUBLIC_TO_EVERYONE`.
    pub private_account: bool,
    /// False: creator info and init answer `spam_risk_user_banned_from_posting`.
    pub can_post: bool,
    pub max_video_post_duration_sec: u32,
}

/// A post the sandbox received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TiktokPost {
    pub publish_id: String,
    pub open_id: String,
    /// The caption (`post_info.title`).
    pub title: String,
    /// As sent, or `SELF_ONLY` when an unaudited app posted.
    pub privacy_level: String,
    /// `PULL_FROM_URL` or `FILE_UPLOAD`.
    pub source: String,
    pub video_url: Option<String>,
    pub video_size: u64,
    /// Bytes received so far (file upload) or pulled.
    pub received_bytes: u64,
    /// How many `PUT`s delivered a chunk.
    pub chunks_received: u64,
    /// `PROCESSING_UPLOAD`, `PROCESSING_DOWNLOAD`, `PUBLISH_COMPLETE` or `FAILED`.
    pub status: String,
    pub fail_reason: Option<String>,
    /// Set on `PUBLISH_COMPLETE` for a public post.
    pub post_id: Option<String>,
    /// How many times the status was fetched.
    pub status_fetches: u32,
}

/// Handle on TikTok's simulated state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TiktokControl {
    /// Everything the platform knows, shared with its handlers.
    world: Shared<World>,
    /// Armed faults, shared with the middleware that applies them; the handle derefs
    /// to them.
    faults: Faults,
}

fault_controls!(TiktokControl, Some(RATE_WINDOW));
grant_controls!(
    TiktokControl,
    World,
    "tiktok",
    owner = |world, who| Ok(world.require_creator(who)?.open_id.clone())
);

struct Upload {
    publish_id: String,
    token: String,
    chunk_size: u64,
    total_chunks: u64,
}

struct Window {
    started: Instant,
    used: u32,
}

pub(crate) struct World {
    /// The app registration and what was granted to it (TikTok's client key is its
    /// `client_id`).
    app: OAuthApp,
    audited: bool,
    creators: Vec<TiktokCreator>,
    posts: Vec<TiktokPost>,
    uploads: HashMap<String, Upload>,
    media: HashMap<String, Vec<u8>>,
    verified_prefixes: Vec<String>,
    processing_polls: u32,
    /// Armed outcome of the next post to finish processing.
    next_fail_reason: Option<String>,
    /// Armed error codes for the next init calls.
    init_errors: Vec<String>,
    /// Posts per creator today.
    posted_today: HashMap<String, u32>,
    windows: HashMap<(String, &'static str), Window>,
    revoke_calls: u64,
    next_id: u64,
}

fn creator(
    open_id: &str,
    username: &str,
    name: &str,
    private_account: bool,
    can_post: bool,
) -> TiktokCreator {
    TiktokCreator {
        open_id: open_id.into(),
        union_id: format!("union-{open_id}"),
        username: username.into(),
        display_name: name.into(),
        private_account,
        can_post,
        max_video_post_duration_sec: 600,
    }
}

/// A few hundred bytes that start like an MP4 (`ftyp` box), then filler.
/// How long the sandbox's videos last unless said otherwise.
pub const SAMPLE_VIDEO_SECS: u32 = 30;

/// `size` bytes of an MP4 file lasting `secs`: `ftyp`, a `moov` with its movie header
/// (`mvhd`, timescale 1000) and an `mdat` of filler. Enough of an MP4 for a reader of
/// its length; no player would show it.
fn sample_video(size: usize, secs: u32) -> Vec<u8> {
    let be = |v: u32| v.to_be_bytes();
    let mut mvhd = Vec::with_capacity(108);
    mvhd.extend_from_slice(&be(108));
    mvhd.extend_from_slice(b"mvhd");
    mvhd.extend_from_slice(&[0, 0, 0, 0]); // version 0, no flags
    mvhd.extend_from_slice(&be(0)); // created
    mvhd.extend_from_slice(&be(0)); // modified
    mvhd.extend_from_slice(&be(1000)); // timescale
    mvhd.extend_from_slice(&be(secs.saturating_mul(1000))); // duration
    mvhd.extend_from_slice(&be(0x0001_0000)); // rate 1.0
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
    mvhd.extend_from_slice(&[0; 10]);
    for cell in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        mvhd.extend_from_slice(&be(cell)); // identity matrix
    }
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&be(2)); // next track id
    let mut bytes = vec![0, 0, 0, 0x18];
    bytes.extend_from_slice(b"ftypmp42");
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes.extend_from_slice(b"mp42isom");
    bytes.extend_from_slice(&be(8 + mvhd.len() as u32));
    bytes.extend_from_slice(b"moov");
    bytes.extend_from_slice(&mvhd);
    let mdat = size.saturating_sub(bytes.len()).max(8);
    bytes.extend_from_slice(&be(u32::try_from(mdat).unwrap_or(u32::MAX)));
    bytes.extend_from_slice(b"mdat");
    let mut filler: u8 = 0;
    while bytes.len() < size {
        filler = filler.wrapping_add(31);
        bytes.push(filler);
    }
    bytes
}

impl World {
    fn new() -> Self {
        let mut media = HashMap::new();
        media.insert(
            "sample.mp4".to_owned(),
            sample_video(64 * 1024, SAMPLE_VIDEO_SECS),
        );
        World {
            app: OAuthApp::new("tiktok", DEFAULT_ACCESS_LIFETIME, CODE_LIFETIME),
            audited: true,
            creators: vec![
                creator("-000jane-open-id", "jane_tok", "Jane Writes", false, true),
                creator("-000quiet-open-id", "quiet_tok", "Quiet Jane", true, true),
                creator(
                    "-000banned-open-id",
                    "banned_tok",
                    "Banned Bob",
                    false,
                    false,
                ),
            ],
            posts: Vec::new(),
            uploads: HashMap::new(),
            media,
            verified_prefixes: Vec::new(),
            processing_polls: 1,
            next_fail_reason: None,
            init_errors: Vec::new(),
            posted_today: HashMap::new(),
            windows: HashMap::new(),
            revoke_calls: 0,
            next_id: 7_300_000_000_000_000_000,
        }
    }

    fn require_creator(&self, who: &str) -> Result<&TiktokCreator, SandboxError> {
        self.creators
            .iter()
            .find(|c| c.open_id == who || c.username.eq_ignore_ascii_case(who))
            .ok_or_else(|| SandboxError::UnknownUser(who.to_owned()))
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl TiktokControl {
    pub(crate) fn new() -> Self {
        TiktokControl {
            world: Shared::new(World::new()),
            faults: Faults::default(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock()
    }

    /// The client key the sandbox accepts (default `sandbox-tiktok-client`).
    pub fn client_key(&self) -> String {
        self.client_id()
    }

    /// Whether the app passed TikTok's audit (default true). An unaudited app may post
    /// only to private accounts, and only `SELF_ONLY`.
    pub fn set_audited(&self, audited: bool) {
        self.world().audited = audited;
    }

    /// How many status fetches answer `PROCESSING_*` before the outcome (default 1).
    pub fn set_processing_polls(&self, polls: u32) {
        self.world().processing_polls = polls;
    }

    /// The next post to finish processing fails with `fail_reason` (e.g.
    /// `duration_check_failed`).
    pub fn fail_next_publish(&self, fail_reason: impl Into<String>) {
        self.world().next_fail_reason = Some(fail_reason.into());
    }

    /// The next video init answers TikTok's error `code` (with the status TikTok uses
    /// for it), once per code given.
    pub fn fail_next_init(&self, code: impl Into<String>) {
        self.world().init_errors.push(code.into());
    }

    /// Serves `size` bytes of video at `/tiktok/media/{name}`, lasting
    /// [`SAMPLE_VIDEO_SECS`]; returns the path.
    pub fn add_video(&self, name: &str, size: usize) -> String {
        self.add_video_lasting(name, size, SAMPLE_VIDEO_SECS)
    }

    /// [`TiktokControl::add_video`] for a video of `secs` seconds.
    pub fn add_video_lasting(&self, name: &str, size: usize, secs: u32) -> String {
        self.world()
            .media
            .insert(name.to_owned(), sample_video(size, secs));
        format!("/tiktok/media/{name}")
    }

    /// The bytes the sandbox serves at `/tiktok/media/{name}`.
    pub fn video(&self, name: &str) -> Option<Vec<u8>> {
        self.world().media.get(name).cloned()
    }

    /// Treats URLs starting with `prefix` as a verified domain for `PULL_FROM_URL`.
    pub fn verify_url_prefix(&self, prefix: impl Into<String>) {
        self.world().verified_prefixes.push(prefix.into());
    }

    pub fn creators(&self) -> Vec<TiktokCreator> {
        self.world().creators.clone()
    }

    /// Posts of a creator (by open id or username), oldest first.
    pub fn posts(&self, user: &str) -> Vec<TiktokPost> {
        let world = self.world();
        let Ok(id) = world.require_creator(user).map(|c| c.open_id.clone()) else {
            return Vec::new();
        };
        world
            .posts
            .iter()
            .filter(|p| p.open_id == id)
            .cloned()
            .collect()
    }

    /// How many revoke requests were accepted.
    pub fn revoke_calls(&self) -> u64 {
        self.world().revoke_calls
    }
}

fn log_id() -> String {
    format!("2026{}", oauth::random_token(12))
}

/// TikTok's envelope: `{"data": data, "error": {"code","message","log_id"}}`.
fn envelope(status: StatusCode, data: Value, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "data": data,
            "error": {"code": code, "message": message, "log_id": log_id()},
        })),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    envelope(StatusCode::OK, data, "ok", "")
}

/// An API error in TikTok's envelope, with the status TikTok documents for the code.
fn api_error(code: &str, message: &str) -> Response {
    let status = match code {
        "access_token_invalid" | "scope_not_authorized" | "scope_permission_missed" => {
            StatusCode::UNAUTHORIZED
        }
        "rate_limit_exceeded" => StatusCode::TOO_MANY_REQUESTS,
        "spam_risk_too_many_posts"
        | "spam_risk_user_banned_from_posting"
        | "reached_active_user_cap"
        | "unaudited_client_can_only_post_to_private_accounts"
        | "url_ownership_unverified"
        | "privacy_level_option_mismatch" => StatusCode::FORBIDDEN,
        "internal_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    envelope(status, json!({}), code, message)
}

/// An error answer, made into a response only when sent.
enum Refusal {
    /// The API envelope with `error.code`, at the status TikTok uses for the code.
    Api { code: String, message: String },
    /// The token endpoint's `{"error","error_description","log_id"}`.
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: String,
    },
}

impl Refusal {
    fn api(code: &str) -> Refusal {
        Refusal::Api {
            code: code.to_owned(),
            message: message_for(code).to_owned(),
        }
    }

    fn oauth(status: StatusCode, error: &'static str, description: impl Into<String>) -> Refusal {
        Refusal::OAuth {
            status,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api { code, message } => api_error(&code, &message),
            Refusal::OAuth {
                status,
                error,
                description,
            } => oauth_error(status, error, &description),
        }
    }
}

fn message_for(code: &str) -> &'static str {
    match code {
        "access_token_invalid" => "The access token is invalid or not found in the request.",
        "scope_not_authorized" => {
            "The user did not authorize the scope required for completing this request."
        }
        "rate_limit_exceeded" => "The API rate limit was exceeded. Please try again later.",
        "spam_risk_too_many_posts" => "The daily post cap from the API is reached for the current user.",
        "spam_risk_user_banned_from_posting" => "The user is banned from making new posts.",
        "reached_active_user_cap" => {
            "The daily quota for active publishing users from your client is reached."
        }
        "unaudited_client_can_only_post_to_private_accounts" => {
            "Unaudited clients can only post to a private account."
        }
        "url_ownership_unverified" => {
            "To use a URL as the media source, you must verify ownership of the URL prefix or domain."
        }
        "privacy_level_option_mismatch" => {
            "privacy_level is not one of the privacy_level_options of the creator."
        }
        "internal_error" => "Something went wrong. Please try again later.",
        _ => "One or more fields in the request are invalid.",
    }
}

/// TikTok's routes, to be mounted under `/tiktok`.
pub(crate) fn platform_routes(tiktok: &TiktokControl) -> Router {
    let fault_point = FaultPoint {
        faults: tiktok.faults.clone(),
        render_failure: |status| {
            envelope(
                status,
                json!({}),
                "internal_error",
                status.canonical_reason().unwrap_or("Server error"),
            )
        },
    };
    let pages = Router::new()
        .route(
            "/v2/auth/authorize/",
            get(authorize_page).post(authorize_decision),
        )
        .route("/media/{name}", get(media));
    let api = Router::new()
        .route("/v2/oauth/token/", post(token))
        .route("/v2/oauth/revoke/", post(revoke))
        .route("/v2/user/info/", get(user_info))
        .route("/v2/post/publish/creator_info/query/", post(creator_info))
        .route("/v2/post/publish/video/init/", post(video_init))
        .route("/v2/post/publish/status/fetch/", post(status_fetch))
        .route(
            "/upload/",
            put(upload_chunk).layer(DefaultBodyLimit::max(
                usize::try_from(MAX_LAST_CHUNK).unwrap_or(usize::MAX),
            )),
        )
        .route_layer(middleware::from_fn_with_state(fault_point, inject));
    pages.merge(api).with_state(tiktok.clone())
}

/// Checks an authorization request (the GET's query, or the form's hidden fields, where
/// `client_key` travels as `client_id` because the shared consent form names it so).
fn check_authorize(
    params: &HashMap<String, String>,
    client_key: &str,
) -> Result<AuthorizeRequest, AuthorizeRejection> {
    LooseAuthorize {
        client_id: client_key,
        client_params: &["client_key", "client_id"],
        unknown_client: "client_key is missing or unknown.",
        // TikTok's scopes are comma-separated.
        split_scopes: |raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        },
        known_scopes: KNOWN_SCOPES,
        required_scope: None,
        optional_pkce: true,
    }
    .check(params)
}

/// The consent form's hidden `scope` field joins with spaces; TikTok's with commas.
fn form_scopes(mut form: HashMap<String, String>) -> HashMap<String, String> {
    if let Some(scope) = form.get_mut("scope") {
        *scope = scope.split(' ').collect::<Vec<_>>().join(",");
    }
    form
}

const CONSENT: ConsentFlow = ConsentFlow {
    platform: "TikTok",
    action: "/tiktok/v2/auth/authorize/",
    denied: &[
        ("error", "access_denied"),
        ("error_description", "The user denied the authorization."),
    ],
};

async fn authorize_page(
    State(tiktok): State<TiktokControl>,
    RawQuery(query): RawQuery,
) -> Response {
    let client_key = tiktok.client_key();
    CONSENT.page(query.as_deref(), |params| {
        check_authorize(params, &client_key)
    })
}

async fn authorize_decision(
    State(tiktok): State<TiktokControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // PKCE is optional here: without a challenge the code asks for no verifier.
    CONSENT.decide_with_code(
        &mut *tiktok.world(),
        &headers,
        &body,
        |world, form| check_authorize(&form_scopes(form.clone()), &world.app.client_id),
        |world, username| {
            let creator = world
                .creators
                .iter()
                .find(|c| c.username.eq_ignore_ascii_case(username))?;
            Some(creator.open_id.clone())
        },
        |request| vec![("scopes", request.scopes.join(","))],
    )
}

/// A token-endpoint error: `{"error","error_description","log_id"}`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description, "log_id": log_id()})),
    )
        .into_response()
}

type TokenRefusal = (Refusal, TokenOutcome);

fn invalid_grant(description: &str, outcome: TokenOutcome) -> TokenRefusal {
    (
        Refusal::oauth(StatusCode::BAD_REQUEST, "invalid_grant", description),
        outcome,
    )
}

impl World {
    fn client_ok(&self, form: &HashMap<String, String>) -> bool {
        form.get("client_key").map(String::as_str) == Some(self.app.client_id.as_str())
            && form.get("client_secret").map(String::as_str)
                == Some(self.app.client_secret.expose())
    }

    fn grant(
        &mut self,
        form: &HashMap<String, String>,
        credential: &mut Option<String>,
    ) -> Result<IssuedTokens, TokenRefusal> {
        if !self.client_ok(form) {
            return Err((
                Refusal::oauth(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Client key or secret is incorrect.",
                ),
                TokenOutcome::UnauthorizedClient,
            ));
        }
        let client_key = self.app.client_id.clone();
        let param = |name: &str| {
            form.get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    (
                        Refusal::oauth(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            format!("Missing required parameter {name}."),
                        ),
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
                let verifier = form.get("code_verifier").map_or("", String::as_str);
                let expired =
                    || invalid_grant("Authorization code is expired.", TokenOutcome::InvalidCode);
                let grant = match self
                    .app
                    .codes
                    .redeem(code, &client_key, redirect_uri, verifier)
                {
                    Ok(grant) => grant,
                    Err(CodeRejection::Replayed { family }) => {
                        if let Some(family) = family {
                            self.app
                                .tokens
                                .revoke_family(family, RevokeCause::CodeReplayed);
                        }
                        return Err(expired());
                    }
                    Err(CodeRejection::VerifierMismatch) => {
                        return Err(invalid_grant(
                            "Code verifier or code challenge is invalid.",
                            TokenOutcome::InvalidCode,
                        ))
                    }
                    Err(_) => return Err(expired()),
                };
                let issued = self.app.tokens.issue(
                    &grant.user_id,
                    &client_key,
                    grant.scopes,
                    self.app.access_lifetime,
                    true,
                );
                self.app.codes.link_family(code, issued.family);
                Ok(issued)
            }
            "refresh_token" => {
                let refresh_token = param("refresh_token")?;
                *credential = Some(token_fingerprint(refresh_token));
                self.app
                    .tokens
                    .rotate(refresh_token, &client_key, self.app.access_lifetime)
                    .map_err(|reason| {
                        invalid_grant(
                            "Refresh token is invalid or expired.",
                            match reason {
                                RefreshRejection::Reused => TokenOutcome::RefreshTokenReused,
                                RefreshRejection::Revoked => TokenOutcome::RefreshTokenRevoked,
                                RefreshRejection::Unknown => TokenOutcome::UnknownRefreshToken,
                                RefreshRejection::WrongClient => {
                                    TokenOutcome::RefreshTokenOfAnotherClient
                                }
                            },
                        )
                    })
            }
            "" => Err((
                Refusal::oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter grant_type.",
                ),
                TokenOutcome::InvalidRequest,
            )),
            _ => Err((
                Refusal::oauth(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "grant_type must be authorization_code or refresh_token.",
                ),
                TokenOutcome::UnsupportedGrantType,
            )),
        }
    }

    /// The open id behind an issued family, from its user.
    fn open_id_of(&self, access_token: &str) -> String {
        self.app
            .tokens
            .authenticate(access_token)
            .map(|o| o.user_id)
            .unwrap_or_default()
    }
}

/// `POST /v2/oauth/token/`.
async fn token(State(tiktok): State<TiktokControl>, headers: HeaderMap, body: Bytes) -> Response {
    let mut world = tiktok.world();
    let result = oauth::logged_grant(
        &mut *world,
        oauth::parse_form(&headers, &body),
        |reason| {
            Refusal::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                reason.to_string(),
            )
        },
        |world, form, credential| world.grant(form, credential),
    );
    match result {
        Ok(issued) => {
            let open_id = world.open_id_of(&issued.access_token);
            drop(world);
            (
                oauth::no_store(),
                Json(json!({
                    "access_token": issued.access_token,
                    "expires_in": issued.expires_in,
                    "open_id": open_id,
                    "refresh_expires_in": REFRESH_LIFETIME.as_secs(),
                    "refresh_token": issued.refresh_token,
                    "scope": issued.scopes.join(","),
                    "token_type": "Bearer",
                })),
            )
                .into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /v2/oauth/revoke/`: the user's authorization of the app ends — every token.
async fn revoke(State(tiktok): State<TiktokControl>, headers: HeaderMap, body: Bytes) -> Response {
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
    let mut world = tiktok.world();
    if !world.client_ok(&form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client key or secret is incorrect.",
        );
    }
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter token.",
        );
    };
    world.revoke_calls += 1;
    match world.app.tokens.authenticate(token) {
        Ok(owner) => {
            world
                .app
                .tokens
                .revoke_user(&owner.user_id, RevokeCause::RevokeEndpoint);
        }
        // A refresh token, or one already dead: revoke what it names.
        Err(_) => world.app.tokens.revoke_token(token),
    }
    // TikTok answers an empty body on success.
    StatusCode::OK.into_response()
}

impl World {
    /// Authenticates the bearer, applies armed and natural rate limits, checks the scope.
    fn admit(
        &mut self,
        headers: &HeaderMap,
        faults: &Faults,
        endpoint: &'static str,
        per_minute: u32,
        scope: &str,
    ) -> Result<TiktokCreator, Refusal> {
        let invalid_token = || Refusal::api("access_token_invalid");
        let owner = oauth::bearer_token(headers)
            .and_then(|token| self.app.tokens.authenticate(token).ok())
            .ok_or_else(invalid_token)?;
        let creator = self
            .require_creator(&owner.user_id)
            .map_err(|_| invalid_token())?
            .clone();
        if faults.take_rate_limit().is_some() {
            return Err(Refusal::api("rate_limit_exceeded"));
        }
        let now = Instant::now();
        let window = self
            .windows
            .entry((creator.open_id.clone(), endpoint))
            .or_insert(Window {
                started: now,
                used: 0,
            });
        if now.duration_since(window.started) >= RATE_WINDOW {
            *window = Window {
                started: now,
                used: 0,
            };
        }
        if window.used >= per_minute {
            return Err(Refusal::api("rate_limit_exceeded"));
        }
        window.used += 1;
        if !owner.scopes.iter().any(|s| s == scope) {
            return Err(Refusal::api("scope_not_authorized"));
        }
        Ok(creator)
    }
}

/// `GET /v2/user/info/?fields=open_id,union_id,avatar_url,display_name`.
async fn user_info(
    State(tiktok): State<TiktokControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut world = tiktok.world();
    let creator = match world.admit(
        &headers,
        &tiktok.faults,
        "user_info",
        USER_INFO_PER_MINUTE,
        "user.info.basic",
    ) {
        Ok(creator) => creator,
        Err(refusal) => return refusal.into_response(),
    };
    let params = oauth::parse_query(query.as_deref()).unwrap_or_default();
    let Some(fields) = params.get("fields").filter(|f| !f.is_empty()) else {
        return api_error("invalid_params", "fields is required.");
    };
    let mut user = serde_json::Map::new();
    for field in fields.split(',').map(str::trim) {
        let value = match field {
            "open_id" => json!(creator.open_id),
            "union_id" => json!(creator.union_id),
            "display_name" => json!(creator.display_name),
            "avatar_url" => json!(format!(
                "https://p16-sign.tiktokcdn-us.com/sandbox/{}.jpeg",
                creator.open_id
            )),
            // Needs user.info.profile, which the sandbox does not model.
            "username" | "bio_description" | "profile_deep_link" | "is_verified" => {
                return api_error(
                    "scope_not_authorized",
                    &format!("The field {field} needs the user.info.profile scope."),
                )
            }
            other => return api_error("invalid_params", &format!("Unknown field {other}.")),
        };
        user.insert(field.to_owned(), value);
    }
    ok(json!({"user": user}))
}

fn privacy_options(creator: &TiktokCreator) -> [&'static str; 3] {
    if creator.private_account {
        ["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    } else {
        ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    }
}

/// `POST /v2/post/publish/creator_info/query/`.
async fn creator_info(State(tiktok): State<TiktokControl>, headers: HeaderMap) -> Response {
    let mut world = tiktok.world();
    let creator = match world.admit(
        &headers,
        &tiktok.faults,
        "creator_info",
        CREATOR_INFO_PER_MINUTE,
        "video.publish",
    ) {
        Ok(creator) => creator,
        Err(refusal) => return refusal.into_response(),
    };
    if !creator.can_post {
        let code = "spam_risk_user_banned_from_posting";
        return api_error(code, message_for(code));
    }
    if world
        .posted_today
        .get(&creator.open_id)
        .is_some_and(|n| *n >= DAILY_POST_CAP)
    {
        let code = "spam_risk_too_many_posts";
        return api_error(code, message_for(code));
    }
    ok(json!({
        "creator_avatar_url": format!("https://p16-sign.tiktokcdn-us.com/sandbox/{}.jpeg", creator.open_id),
        "creator_username": creator.username,
        "creator_nickname": creator.display_name,
        "privacy_level_options": privacy_options(&creator),
        "comment_disabled": false,
        "duet_disabled": false,
        "stitch_disabled": true,
        "max_video_post_duration_sec": creator.max_video_post_duration_sec,
    }))
}

#[derive(Debug, Deserialize)]
struct VideoInit {
    post_info: Option<PostInfo>,
    source_info: Option<SourceInfo>,
}

#[derive(Debug, Deserialize)]
struct PostInfo {
    #[serde(default)]
    title: String,
    privacy_level: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SourceInfo {
    source: String,
    video_url: Option<String>,
    video_size: Option<u64>,
    chunk_size: Option<u64>,
    total_chunk_count: Option<u64>,
}

/// The chunk rules of TikTok's media transfer guide: under 5 MB, one chunk of the whole
/// size; otherwise chunks of 5–64 MB, `total_chunk_count = floor(video_size /
/// chunk_size)`, the last chunk taking the remainder (at most 128 MB), 1–1000 chunks.
fn check_chunks(video_size: u64, chunk_size: u64, count: u64) -> Result<(), String> {
    if video_size == 0 {
        return Err("video_size must be positive.".into());
    }
    if video_size < MIN_CHUNK {
        if chunk_size != video_size || count != 1 {
            return Err(
                "A video under 5 MB is uploaded whole: chunk_size must equal video_size and total_chunk_count be 1."
                    .into(),
            );
        }
        return Ok(());
    }
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
        return Err("chunk_size must be between 5 MB and 64 MB.".into());
    }
    let expected = video_size / chunk_size;
    if count != expected {
        return Err(format!(
            "total_chunk_count must be video_size / chunk_size rounded down ({expected})."
        ));
    }
    if !(1..=MAX_CHUNKS).contains(&count) {
        return Err("total_chunk_count must be between 1 and 1000.".into());
    }
    if video_size - chunk_size * (count - 1) > MAX_LAST_CHUNK {
        return Err("The last chunk may be at most 128 MB.".into());
    }
    Ok(())
}

/// `POST /v2/post/publish/video/init/`.
async fn video_init(
    State(tiktok): State<TiktokControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut world = tiktok.world();
    // Armed errors answer before anything is counted, like the other injected faults.
    if !world.init_errors.is_empty() {
        let code = world.init_errors.remove(0);
        return api_error(&code, message_for(&code));
    }
    let creator = match world.admit(
        &headers,
        &tiktok.faults,
        "video_init",
        INIT_PER_MINUTE,
        "video.publish",
    ) {
        Ok(creator) => creator,
        Err(refusal) => return refusal.into_response(),
    };
    let init: VideoInit = match serde_json::from_slice(&body) {
        Ok(init) => init,
        Err(error) => return api_error("invalid_params", &format!("Invalid JSON: {error}")),
    };
    let (Some(post_info), Some(source)) = (init.post_info, init.source_info) else {
        return api_error("invalid_params", "post_info and source_info are required.");
    };
    if !creator.can_post {
        let code = "spam_risk_user_banned_from_posting";
        return api_error(code, message_for(code));
    }
    let posted = world
        .posted_today
        .get(&creator.open_id)
        .copied()
        .unwrap_or(0);
    if posted >= DAILY_POST_CAP {
        let code = "spam_risk_too_many_posts";
        return api_error(code, message_for(code));
    }
    let Some(privacy) = post_info.privacy_level else {
        return api_error("invalid_params", "post_info.privacy_level is required.");
    };
    if !privacy_options(&creator).contains(&privacy.as_str()) {
        let code = "privacy_level_option_mismatch";
        return api_error(code, message_for(code));
    }
    let title_units = post_info.title.encode_utf16().count();
    if title_units > MAX_TITLE_UTF16 {
        return api_error(
            "invalid_params",
            &format!("post_info.title is {title_units} UTF-16 units; the maximum is 2200."),
        );
    }
    if !world.audited && !creator.private_account {
        let code = "unaudited_client_can_only_post_to_private_accounts";
        return api_error(code, message_for(code));
    }
    let privacy = if world.audited {
        privacy
    } else {
        "SELF_ONLY".to_owned()
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let id = world.next_id();
    let mut post = TiktokPost {
        publish_id: String::new(),
        open_id: creator.open_id.clone(),
        title: post_info.title,
        privacy_level: privacy,
        source: source.source.clone(),
        video_url: None,
        video_size: 0,
        received_bytes: 0,
        chunks_received: 0,
        status: String::new(),
        fail_reason: None,
        post_id: None,
        status_fetches: 0,
    };
    let data = match source.source.as_str() {
        "PULL_FROM_URL" => {
            let Some(url) = source
                .video_url
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            else {
                return api_error("invalid_params", "source_info.video_url must be a URL.");
            };
            let own_media = own_media_name(&url, &host);
            let verified =
                own_media.is_some() || world.verified_prefixes.iter().any(|p| url.starts_with(p));
            if !verified {
                let code = "url_ownership_unverified";
                return api_error(code, message_for(code));
            }
            post.publish_id = format!("v_pub_url~v2.{id}");
            post.status = "PROCESSING_DOWNLOAD".into();
            match own_media.and_then(|name| world.media.get(&name)) {
                Some(bytes) => {
                    post.video_size = bytes.len() as u64;
                    post.received_bytes = bytes.len() as u64;
                }
                None => post.fail_reason = Some("video_pull_failed".into()),
            }
            post.video_url = Some(url);
            json!({"publish_id": post.publish_id})
        }
        "FILE_UPLOAD" => {
            let (Some(size), Some(chunk), Some(count)) = (
                source.video_size,
                source.chunk_size,
                source.total_chunk_count,
            ) else {
                return api_error(
                    "invalid_params",
                    "video_size, chunk_size and total_chunk_count are required for FILE_UPLOAD.",
                );
            };
            if let Err(message) = check_chunks(size, chunk, count) {
                return api_error("invalid_params", &message);
            }
            post.publish_id = format!("v_pub_file~v2-1.{id}");
            post.status = "PROCESSING_UPLOAD".into();
            post.video_size = size;
            let upload_id = world.next_id().to_string();
            let upload_token = oauth::random_token(16);
            world.uploads.insert(
                upload_id.clone(),
                Upload {
                    publish_id: post.publish_id.clone(),
                    token: upload_token.clone(),
                    chunk_size: chunk,
                    total_chunks: count,
                },
            );
            json!({
                "publish_id": post.publish_id,
                "upload_url": format!("http://{host}/tiktok/upload/?upload_id={upload_id}&upload_token={upload_token}"),
            })
        }
        other => {
            return api_error(
                "invalid_params",
                &format!("source_info.source must be FILE_UPLOAD or PULL_FROM_URL, not {other}."),
            )
        }
    };
    *world
        .posted_today
        .entry(creator.open_id.clone())
        .or_insert(0) += 1;
    tracing::info!(platform = "tiktok", publish_id = %post.publish_id, "post initialised");
    world.posts.push(post);
    ok(data)
}

/// The media name when `url` points at this sandbox's own `/tiktok/media/`.
fn own_media_name(url: &str, host: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let path = rest.strip_prefix(host)?;
    let name = path.strip_prefix("/tiktok/media/")?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
}

/// `GET /media/{name}`: a video this sandbox serves.
async fn media(State(tiktok): State<TiktokControl>, Path(name): Path<String>) -> Response {
    match tiktok.world().media.get(&name) {
        Some(bytes) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"))],
            bytes.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such media").into_response(),
    }
}

/// `bytes first-last/total`.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

/// `PUT /upload/?upload_id&upload_token`: one chunk, in order.
async fn upload_chunk(
    State(tiktok): State<TiktokControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = oauth::parse_query(query.as_deref()).unwrap_or_default();
    let refuse = |status: StatusCode, message: &str| (status, message.to_owned()).into_response();
    let mut world = tiktok.world();
    let Some(upload) = params
        .get("upload_id")
        .and_then(|id| world.uploads.get(id))
        .filter(|u| params.get("upload_token") == Some(&u.token))
    else {
        return refuse(StatusCode::NOT_FOUND, "Unknown upload_id or upload_token.");
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !matches!(content_type, "video/mp4" | "video/quicktime" | "video/webm") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Content-Type must be video/mp4, video/quicktime or video/webm.",
        );
    }
    let Some((first, last, total)) = content_range(&headers) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Missing or malformed Content-Range.",
        );
    };
    let (chunk_size, total_chunks) = (upload.chunk_size, upload.total_chunks);
    let publish_id = upload.publish_id.clone();
    let Some(post) = world.posts.iter_mut().find(|p| p.publish_id == publish_id) else {
        return refuse(StatusCode::NOT_FOUND, "Unknown upload.");
    };
    let index = post.chunks_received;
    let is_last = index + 1 == total_chunks;
    let expected_len = if is_last {
        post.video_size - chunk_size * index
    } else {
        chunk_size
    };
    if total != post.video_size
        || first != post.received_bytes
        || last < first
        || last - first + 1 != expected_len
        || body.len() as u64 != expected_len
    {
        return refuse(
            StatusCode::RANGE_NOT_SATISFIABLE,
            &format!(
                "Expected chunk {index} as bytes {}-{}/{}.",
                post.received_bytes,
                post.received_bytes + expected_len - 1,
                post.video_size
            ),
        );
    }
    post.received_bytes += expected_len;
    post.chunks_received += 1;
    if is_last {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::PARTIAL_CONTENT.into_response()
    }
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    publish_id: Option<String>,
}

/// `POST /v2/post/publish/status/fetch/`.
async fn status_fetch(
    State(tiktok): State<TiktokControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut world = tiktok.world();
    let creator = match world.admit(
        &headers,
        &tiktok.faults,
        "status_fetch",
        STATUS_PER_MINUTE,
        "video.publish",
    ) {
        Ok(creator) => creator,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(publish_id) = serde_json::from_slice::<StatusQuery>(&body)
        .ok()
        .and_then(|q| q.publish_id)
    else {
        return api_error("invalid_params", "publish_id is required.");
    };
    let processing_polls = world.processing_polls;
    let mut armed_failure = world.next_fail_reason.take();
    let next_id = world.next_id();
    let Some(post) = world
        .posts
        .iter_mut()
        .find(|p| p.publish_id == publish_id && p.open_id == creator.open_id)
    else {
        world.next_fail_reason = armed_failure;
        return api_error("invalid_publish_id", "publish_id does not exist.");
    };
    post.status_fetches += 1;
    let uploaded = post.received_bytes >= post.video_size && post.video_size > 0;
    let settled = post.status == "PUBLISH_COMPLETE" || post.status == "FAILED";
    if !settled {
        if post.source == "FILE_UPLOAD" && !uploaded {
            post.status = "PROCESSING_UPLOAD".into();
        } else if post.status_fetches > processing_polls {
            if let Some(reason) = post.fail_reason.clone().or_else(|| armed_failure.take()) {
                post.status = "FAILED".into();
                post.fail_reason = Some(reason);
            } else {
                post.status = "PUBLISH_COMPLETE".into();
                if post.privacy_level == "PUBLIC_TO_EVERYONE" {
                    post.post_id = Some(next_id.to_string());
                }
            }
        }
    }
    let data = json!({
        "status": post.status,
        "fail_reason": post.fail_reason.clone().unwrap_or_default(),
        "publicaly_available_post_id": post.post_id.iter().filter_map(|id| id.parse::<u64>().ok()).collect::<Vec<_>>(),
        "uploaded_bytes": if post.source == "FILE_UPLOAD" { post.received_bytes } else { 0 },
        "downloaded_bytes": if post.source == "PULL_FROM_URL" { post.received_bytes } else { 0 },
    });
    if armed_failure.is_some() {
        world.next_fail_reason = armed_failure;
    }
    ok(data)
}

/// The `/sandbox/tiktok` control routes.
pub(crate) fn control_routes(tiktok: &TiktokControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .route("/audited", post(control_audited))
        .route("/users/{id}/posts", get(control_posts))
        .with_state(tiktok.clone())
}

async fn control_state(State(tiktok): State<TiktokControl>) -> Json<Value> {
    let world = tiktok.world();
    Json(json!({
        "client_key": world.app.client_id,
        "audited": world.audited,
        "creators": world.creators,
        "posts": world.posts.len(),
        "media": world.media.keys().collect::<Vec<_>>(),
        "refresh_calls": world.app.refresh_calls,
        "token_requests": world.app.token_log.len(),
        "pending_faults": tiktok.faults.pending_faults(),
    }))
}

#[derive(Debug, Deserialize)]
struct AuditedControl {
    audited: bool,
}

async fn control_audited(
    State(tiktok): State<TiktokControl>,
    Json(body): Json<AuditedControl>,
) -> Json<Value> {
    tiktok.set_audited(body.audited);
    Json(json!({"audited": body.audited}))
}

async fn control_posts(
    State(tiktok): State<TiktokControl>,
    Path(id): Path<String>,
) -> Result<Json<Vec<TiktokPost>>, SandboxError> {
    tiktok.world().require_creator(&id)?;
    Ok(Json(tiktok.posts(&id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_rules_follow_the_media_transfer_guide() {
        assert!(check_chunks(1000, 1000, 1).is_ok());
        assert!(check_chunks(1000, 500, 2).is_err());
        assert!(check_chunks(11 * MB, 5 * MB, 2).is_ok());
        assert!(check_chunks(11 * MB, 5 * MB, 3).is_err());
        assert!(check_chunks(11 * MB, 4 * MB, 2).is_err());
        assert!(check_chunks(200 * MB, 64 * MB, 3).is_ok());
    }

    #[test]
    fn own_media_is_recognised_by_host_and_path() {
        assert_eq!(
            own_media_name("http://127.0.0.1:5/tiktok/media/a.mp4", "127.0.0.1:5"),
            Some("a.mp4".into())
        );
        assert_eq!(
            own_media_name("http://127.0.0.1:6/tiktok/media/a.mp4", "127.0.0.1:5"),
            None
        );
    }
}
