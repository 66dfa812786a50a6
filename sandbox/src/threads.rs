//! Threads (Threads API `v1.0`) simulated: authorization code without PKCE, short-lived
//! tokens exchanged for long-lived ones (`th_exchange_token`), long-lived tokens that
//! refresh themselves once 24 hours old (`th_refresh_token`), `/me`, media containers
//! whose status advances as they are polled, `threads_publish`, the publishing limit,
//! Graph-style `{"error":{…}}` bodies — and [`ThreadsControl`], the handle tests and the
//! demo use to act as Threads or its user.
//!
//! Routes, relative to the `/threads` prefix (the engine is configured with
//! `auth_url = {base}/threads/oauth/authorize`, `token_url =
//! {base}/threads/oauth/access_token`, no revoke URL, `api_base = {base}/threads/v1.0`;
//! the two token endpoints Threads serves beside its versioned API are one level up, as
//! on `graph.threads.net`):
//!
//! | route | what |
//! |---|---|
//! | `GET /oauth/authorize` | checks the request, shows the login-and-consent form |
//! | `POST /oauth/authorize` | the form: `username`, `password`, hidden fields, `decision` |
//! | `POST /oauth/access_token` | code exchange; `client_id`/`client_secret` form fields → `{access_token, user_id}` (one hour) |
//! | `GET /access_token` | `grant_type=th_exchange_token&client_secret&access_token` → `{access_token, token_type, expires_in}` |
//! | `GET /refresh_access_token` | `grant_type=th_refresh_token&access_token`, token ≥ 24 h old and unexpired |
//! | `GET /v1.0/me` | `fields=id,username,threads_profile_picture_url` |
//! | `GET /v1.0/{id}` | a container (`status`, `error_message`), a published thread (`permalink`…) or a user |
//! | `POST /v1.0/{user}/threads` | create a container: `media_type` TEXT, IMAGE, VIDEO, CAROUSEL |
//! | `POST /v1.0/{user}/threads_publish` | `creation_id` → `{id}` |
//! | `GET /v1.0/{user}/threads_publishing_limit` | `{"data":[{quota_usage, config:{quota_total, quota_duration}}]}` |
//! | `GET /media/{name}` | images and a video the sandbox serves (`cover.jpg`, `desk.png`, `clip.mp4`) |
//!
//! Tokens are read from `Authorization: Bearer` or the `access_token` query parameter,
//! as the Graph API accepts both. Controls under `/sandbox/threads`: `GET /state`,
//! `GET /users/{id}/threads`, and the shared fault controls (`POST /fail`, `/stall`,
//! `/drop`, `/garble`, `/rate-limit`, `DELETE /faults`); an armed rate limit answers code 17 with
//! `X-Business-Use-Case-Usage`.
//!
//! Where Threads' docs are silent the sandbox chooses, and says so here:
//! - Refreshing does not invalidate the token refreshed (it lapses on its own).
//! - A refresh of a token younger than 24 h answers 400 code 100 "… at least 24 hours
//!   old …"; Threads' own wording is not documented.
//! - A used-up publishing quota answers `threads_publish` with 400 code 9 (Meta's "user
//!   is performing too many actions"); an armed rate limit answers 400 code 17 with
//!   `X-Business-Use-Case-Usage`.
//! - Media on the sandbox's own `/media/` path must exist, or the container ends in
//!   `ERROR` (`FAILED_DOWNLOADING_VIDEO` for video, `UNKNOWN` for images); other URLs are
//!   taken as downloadable — the sandbox fetches nothing.
//! - Text is counted one per character, characters outside the Basic Multilingual Plane
//!   (most emoji) by their UTF-8 bytes.
//!
//! Time: the sandbox's clock is tokio's plus an offset that [`ThreadsControl::advance_clock`]
//! moves, so a test can make a token 25 hours old without waiting.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::control::{fault_controls, Shared};
use super::faults::{inject, ConnectionHandle, FaultPoint, Faults};
use super::oauth::{self, AuthorizeRejection, AuthorizeRequest, ConsentFlow, LooseAuthorize};
use super::{sandbox_client, unix_now, SandboxError, Secret, THREADS_API_VERSION};

const SHORT_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// What Threads' docs show for `expires_in` of a long-lived token.
const LONG_LIFETIME: Duration = Duration::from_secs(5_183_944);
const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
const MIN_REFRESH_AGE: Duration = Duration::from_secs(24 * 60 * 60);
const CONTAINER_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
const QUOTA_TOTAL: u64 = 250;
const QUOTA_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
const MAX_TEXT: usize = 500;
const MAX_CAROUSEL: usize = 20;
const KNOWN_SCOPES: &[&str] = &[
    "threads_basic",
    "threads_content_publish",
    "threads_manage_replies",
    "threads_read_replies",
    "threads_manage_insights",
];

/// The media files the sandbox serves under `/threads/media/`.
const SERVED_MEDIA: &[(&str, &str)] = &[
    ("cover.jpg", "image/jpeg"),
    ("desk.png", "image/png"),
    ("clip.mp4", "video/mp4"),
];

/// A seeded Threads account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadsUser {
    pub id: String,
    pub username: String,
    pub threads_profile_picture_url: String,
}

/// A published thread, as the control handle reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadsPost {
    pub id: String,
    pub owner_id: String,
    /// `TEXT_POST`, `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`, as Threads names published media.
    pub media_type: String,
    pub text: Option<String>,
    /// The image and video URLs, in order (a carousel's children's).
    pub media_urls: Vec<String>,
    /// The alt texts sent with the media, in order.
    pub alt_texts: Vec<String>,
    pub permalink: String,
    /// The container it was published from.
    pub creation_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished,
    Error,
}

struct Container {
    id: String,
    owner_id: String,
    media_type: String,
    text: Option<String>,
    media_url: Option<String>,
    alt_text: Option<String>,
    children: Vec<String>,
    is_carousel_item: bool,
    /// Polls still answered `IN_PROGRESS`.
    polls_left: u32,
    outcome: Outcome,
    error_message: Option<String>,
    created: Instant,
    published: bool,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    user_id: String,
    scopes: Vec<String>,
    expires_at: Instant,
    spent: bool,
}

struct Token {
    user_id: String,
    scopes: Vec<String>,
    long_lived: bool,
    issued: Instant,
    expires: Instant,
    /// Invalidated by the platform: subcode and message.
    dead: Option<(i64, String)>,
}

struct World {
    client_id: String,
    client_secret: Secret,
    long_lifetime: Duration,
    users: Vec<ThreadsUser>,
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    containers: Vec<Container>,
    posts: Vec<(ThreadsPost, Instant)>,
    clock_offset: Duration,
    image_polls: u32,
    video_polls: u32,
    fail_next_container: Option<String>,
    quota_total: u64,
    /// The next API call answers this instead (status, Graph error object).
    next_error: Option<(StatusCode, Value)>,
    /// The next container creation answers this instead.
    next_container_error: Option<(StatusCode, Value)>,
    /// The next `threads_publish` is processed and its connection closed unanswered.
    drop_next_publish: bool,
    exchange_calls: u64,
    refresh_calls: u64,
    status_polls: u64,
    next_id: u64,
}

impl World {
    fn new() -> World {
        let (client_id, client_secret) = sandbox_client("threads");
        World {
            client_id,
            client_secret,
            long_lifetime: LONG_LIFETIME,
            users: vec![
                ThreadsUser {
                    id: "17841400000000001".into(),
                    username: "jane_threads".into(),
                    threads_profile_picture_url: "https://sandbox.invalid/jane.jpg".into(),
                },
                ThreadsUser {
                    id: "17841400000000002".into(),
                    username: "tom_threads".into(),
                    threads_profile_picture_url: "https://sandbox.invalid/tom.jpg".into(),
                },
            ],
            codes: HashMap::new(),
            tokens: HashMap::new(),
            containers: Vec::new(),
            posts: Vec::new(),
            clock_offset: Duration::ZERO,
            image_polls: 1,
            video_polls: 3,
            fail_next_container: None,
            quota_total: QUOTA_TOTAL,
            next_error: None,
            next_container_error: None,
            drop_next_publish: false,
            exchange_calls: 0,
            refresh_calls: 0,
            status_polls: 0,
            next_id: 18_000_000_000_000_000,
        }
    }

    fn now(&self) -> Instant {
        oauth::deadline(Instant::now(), self.clock_offset)
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn require_user(&self, who: &str) -> Result<&ThreadsUser, SandboxError> {
        self.users
            .iter()
            .find(|u| u.id == who || u.username.eq_ignore_ascii_case(who))
            .ok_or_else(|| SandboxError::UnknownUser(who.to_owned()))
    }

    fn issue(&mut self, user_id: &str, scopes: Vec<String>, long_lived: bool) -> (String, u64) {
        let lifetime = if long_lived {
            self.long_lifetime
        } else {
            SHORT_LIFETIME
        };
        let now = self.now();
        let token = format!("TH{}", oauth::random_token(32));
        self.tokens.insert(
            token.clone(),
            Token {
                user_id: user_id.to_owned(),
                scopes,
                long_lived,
                issued: now,
                expires: oauth::deadline(now, lifetime),
                dead: None,
            },
        );
        (token, lifetime.as_secs())
    }

    /// The live token `token`, or Graph's 190 answer for it.
    fn live_token(&self, token: &str) -> Result<&Token, Refusal> {
        let record = self.tokens.get(token).ok_or_else(|| {
            oauth_error(
                190,
                None,
                "Invalid OAuth access token - Cannot parse access token",
            )
        })?;
        if let Some((subcode, message)) = &record.dead {
            return Err(oauth_error(190, Some(*subcode), message));
        }
        if record.expires <= self.now() {
            return Err(oauth_error(
                190,
                Some(463),
                "Error validating access token: Session has expired. The current time is later than the token's expiry.",
            ));
        }
        Ok(record)
    }
}

/// A handle on the simulated Threads.
#[derive(Clone, Debug)]
pub struct ThreadsControl {
    /// Everything the platform knows, shared with its handlers.
    world: Shared<World>,
    /// Armed faults, shared with the middleware that applies them; the handle derefs
    /// to them.
    faults: Faults,
}

fault_controls!(ThreadsControl, Some(Duration::from_secs(60 * 60)));

impl ThreadsControl {
    pub(crate) fn new() -> ThreadsControl {
        ThreadsControl {
            world: Shared::new(World::new()),
            faults: Faults::default(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock()
    }

    /// The client id the sandbox accepts (default `sandbox-threads-client`).
    pub fn client_id(&self) -> String {
        self.world().client_id.clone()
    }

    /// Sets the client credentials the sandbox accepts.
    pub fn set_client(&self, client_id: impl Into<String>, client_secret: impl Into<String>) {
        let mut world = self.world();
        world.client_id = client_id.into();
        world.client_secret = Secret::new(client_secret);
    }

    pub fn users(&self) -> Vec<ThreadsUser> {
        self.world().users.clone()
    }

    /// Moves the sandbox's clock forward: tokens age, containers and quota windows lapse.
    pub fn advance_clock(&self, by: Duration) {
        let mut world = self.world();
        world.clock_offset = world.clock_offset.saturating_add(by);
    }

    /// The lifetime of long-lived tokens issued from now on (default 5183944 s).
    pub fn set_long_lived_lifetime(&self, lifetime: Duration) {
        self.world().long_lifetime = lifetime;
    }

    /// How many status polls answer `IN_PROGRESS` before image and video containers
    /// finish (defaults 1 and 3; text containers finish at once).
    pub fn set_processing_polls(&self, image: u32, video: u32) {
        let mut world = self.world();
        world.image_polls = image;
        world.video_polls = video;
    }

    /// The next container created ends in `ERROR` with `error_message`.
    pub fn fail_next_container(&self, error_message: impl Into<String>) {
        self.world().fail_next_container = Some(error_message.into());
    }

    /// Posts allowed per rolling 24 h (default 250).
    pub fn set_publishing_quota(&self, total: u64) {
        self.world().quota_total = total;
    }

    /// The next API call (not the token endpoints) answers `status` with the Graph error
    /// object `error` (`{"message","type","code",…}`).
    pub fn answer_next_with(&self, status: StatusCode, error: Value) {
        self.world().next_error = Some((status, error));
    }

    /// The next container creation answers `status` with the Graph error object `error`
    /// (the calls before it in a publish — the quota read — answer normally).
    pub fn answer_next_container_with(&self, status: StatusCode, error: Value) {
        self.world().next_container_error = Some((status, error));
    }

    /// The next `threads_publish` publishes, then loses its answer (the connection closes).
    pub fn drop_next_publish(&self) {
        self.world().drop_next_publish = true;
    }

    /// Invalidates every token of `user` with code 190 and `subcode` (460: password
    /// changed, 458: app removed, 467: logged out…).
    pub fn invalidate_tokens(
        &self,
        user: &str,
        subcode: i64,
        message: &str,
    ) -> Result<usize, SandboxError> {
        let mut world = self.world();
        let id = world.require_user(user)?.id.clone();
        let mut count = 0;
        for token in world.tokens.values_mut().filter(|t| t.user_id == id) {
            token.dead = Some((subcode, message.to_owned()));
            count += 1;
        }
        Ok(count)
    }

    /// Makes every token of `user` lapse now.
    pub fn expire_tokens(&self, user: &str) -> Result<usize, SandboxError> {
        let mut world = self.world();
        let id = world.require_user(user)?.id.clone();
        let now = world.now();
        let mut count = 0;
        for token in world.tokens.values_mut().filter(|t| t.user_id == id) {
            token.expires = now;
            count += 1;
        }
        Ok(count)
    }

    /// Removes a permission from every token of `user`, as the user can in Threads'
    /// settings.
    pub fn remove_permission(&self, user: &str, scope: &str) -> Result<usize, SandboxError> {
        let mut world = self.world();
        let id = world.require_user(user)?.id.clone();
        let mut count = 0;
        for token in world.tokens.values_mut().filter(|t| t.user_id == id) {
            token.scopes.retain(|s| s != scope);
            count += 1;
        }
        Ok(count)
    }

    /// Threads `user` published, oldest first.
    pub fn posts(&self, user: &str) -> Vec<ThreadsPost> {
        let world = self.world();
        let Ok(id) = world.require_user(user).map(|u| u.id.clone()) else {
            return Vec::new();
        };
        world
            .posts
            .iter()
            .filter(|(p, _)| p.owner_id == id)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `th_exchange_token` requests received.
    pub fn exchange_calls(&self) -> u64 {
        self.world().exchange_calls
    }

    /// `th_refresh_token` requests received.
    pub fn refresh_calls(&self) -> u64 {
        self.world().refresh_calls
    }

    /// Container status polls received.
    pub fn status_polls(&self) -> u64 {
        self.world().status_polls
    }

    /// Whether `token` is a live long-lived token (for tests holding one).
    pub fn is_long_lived(&self, token: &str) -> bool {
        let world = self.world();
        world.live_token(token).is_ok_and(|t| t.long_lived)
    }
}

/// A Graph error answer.
struct Refusal {
    status: StatusCode,
    error: Value,
    headers: Vec<(&'static str, String)>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.error }))).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn graph_error(
    status: StatusCode,
    kind: &str,
    code: i64,
    subcode: Option<i64>,
    message: &str,
) -> Refusal {
    let mut error = Map::new();
    error.insert("message".into(), json!(message));
    error.insert("type".into(), json!(kind));
    error.insert("code".into(), json!(code));
    if let Some(subcode) = subcode {
        error.insert("error_subcode".into(), json!(subcode));
    }
    error.insert("fbtrace_id".into(), json!(oauth::random_token(8)));
    Refusal {
        status,
        error: Value::Object(error),
        headers: Vec::new(),
    }
}

fn oauth_error(code: i64, subcode: Option<i64>, message: &str) -> Refusal {
    graph_error(
        StatusCode::BAD_REQUEST,
        "OAuthException",
        code,
        subcode,
        message,
    )
}

fn invalid(message: &str) -> Refusal {
    graph_error(
        StatusCode::BAD_REQUEST,
        "THApiException",
        100,
        None,
        message,
    )
}

/// Threads' routes, to be mounted under `/threads`.
pub(crate) fn platform_routes(threads: &ThreadsControl) -> Router {
    let fault_point = FaultPoint {
        faults: threads.faults.clone(),
        render_failure: |status| {
            let mut refusal = graph_error(
                status,
                "OAuthException",
                2,
                None,
                "An unexpected error has occurred. Please retry your request later.",
            );
            if let Value::Object(error) = &mut refusal.error {
                error.insert("is_transient".into(), json!(true));
            }
            refusal.into_response()
        },
    };
    let open = Router::new()
        .route(
            "/oauth/authorize",
            get(authorize_page).post(authorize_decision),
        )
        .route("/media/{name}", get(media));
    let v = THREADS_API_VERSION;
    let api = Router::new()
        .route("/oauth/access_token", post(code_exchange))
        .route("/access_token", get(long_lived_exchange))
        .route("/refresh_access_token", get(refresh))
        .route(&format!("/{v}/me"), get(me))
        .route(&format!("/{v}/{{id}}"), get(object))
        .route(&format!("/{v}/{{id}}/threads"), post(create_container))
        .route(&format!("/{v}/{{id}}/threads_publish"), post(publish))
        .route(
            &format!("/{v}/{{id}}/threads_publishing_limit"),
            get(publishing_limit),
        )
        .route_layer(middleware::from_fn_with_state(fault_point, inject));
    open.merge(api).with_state(threads.clone())
}

/// Checks an authorization request (the GET's query, or the form's hidden fields).
fn check_authorize(
    params: &HashMap<String, String>,
    client_id: &str,
) -> Result<AuthorizeRequest, AuthorizeRejection> {
    LooseAuthorize {
        client_id,
        client_params: &["client_id"],
        unknown_client: "Invalid app ID: use the Threads app ID, not the Meta app ID.",
        split_scopes: |raw| {
            raw.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        },
        known_scopes: KNOWN_SCOPES,
        required_scope: Some((
            "threads_basic",
            "threads_basic is required for every Threads endpoint.",
        )),
        optional_pkce: false,
    }
    .check(params)
}

const CONSENT: ConsentFlow = ConsentFlow {
    platform: "Threads",
    action: "/threads/oauth/authorize",
    denied: &[
        ("error", "access_denied"),
        ("error_reason", "user_denied"),
        ("error_description", "Permissions error"),
    ],
};

async fn authorize_page(
    State(threads): State<ThreadsControl>,
    RawQuery(query): RawQuery,
) -> Response {
    let client_id = threads.client_id();
    CONSENT.page(query.as_deref(), |params| {
        check_authorize(params, &client_id)
    })
}

async fn authorize_decision(
    State(threads): State<ThreadsControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    CONSENT.decide(
        &mut *threads.world(),
        &headers,
        &body,
        |world, form| check_authorize(form, &world.client_id),
        |world, request, username| {
            let user_id = world
                .users
                .iter()
                .find(|u| u.username.eq_ignore_ascii_case(username))?
                .id
                .clone();
            let now = world.now();
            world.codes.retain(|_, c| c.expires_at > now);
            let code = oauth::random_token(32);
            world.codes.insert(
                code.clone(),
                Code {
                    client_id: request.client_id.clone(),
                    redirect_uri: request.redirect_uri.clone(),
                    user_id,
                    scopes: request.scopes.clone(),
                    expires_at: oauth::deadline(now, CODE_LIFETIME),
                    spent: false,
                },
            );
            Some(vec![("code", code)])
        },
    )
}

/// Reads a form body, or the query where the body is empty (Graph takes either).
fn params(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<HashMap<String, String>, Refusal> {
    let mut map = oauth::parse_query(query).map_err(|e| invalid(&e.to_string()))?;
    if !body.is_empty() {
        let form = oauth::parse_form(headers, body).map_err(|e| invalid(&e.to_string()))?;
        map.extend(form);
    }
    Ok(map)
}

fn no_store(body: Value) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response()
}

/// `POST /oauth/access_token`.
async fn code_exchange(
    State(threads): State<ThreadsControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let result = (|| -> Result<Response, Refusal> {
        let form = params(&headers, query.as_deref(), &body)?;
        let mut world = threads.world();
        let get = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        if get("client_id") != world.client_id {
            return Err(oauth_error(
                101,
                None,
                "Error validating application. Invalid application ID.",
            ));
        }
        if get("client_secret") != world.client_secret.expose() {
            return Err(oauth_error(1, None, "Error validating client secret."));
        }
        if get("grant_type") != "authorization_code" {
            return Err(invalid("grant_type must be authorization_code."));
        }
        let now = world.now();
        let client_id = world.client_id.clone();
        let Some(code) = world.codes.get_mut(get("code")) else {
            return Err(oauth_error(
                100,
                Some(36_007),
                "Invalid verification code format.",
            ));
        };
        if code.spent {
            return Err(oauth_error(
                100,
                Some(36_009),
                "This authorization code has been used.",
            ));
        }
        code.spent = true;
        if code.expires_at <= now {
            return Err(oauth_error(
                100,
                Some(36_007),
                "This authorization code has expired.",
            ));
        }
        if code.client_id != client_id || code.redirect_uri != get("redirect_uri") {
            return Err(oauth_error(
                100,
                Some(36_008),
                "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
            ));
        }
        let (user_id, scopes) = (code.user_id.clone(), code.scopes.clone());
        let (token, _) = world.issue(&user_id, scopes, false);
        let user_id: u64 = user_id.parse().unwrap_or_default();
        Ok(no_store(json!({"access_token": token, "user_id": user_id})))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /access_token?grant_type=th_exchange_token`.
async fn long_lived_exchange(
    State(threads): State<ThreadsControl>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut world = threads.world();
    world.exchange_calls += 1;
    let result = (|| -> Result<Response, Refusal> {
        let form = oauth::parse_query(query.as_deref()).map_err(|e| invalid(&e.to_string()))?;
        let get = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        if get("grant_type") != "th_exchange_token" {
            return Err(invalid("grant_type must be th_exchange_token."));
        }
        if get("client_secret") != world.client_secret.expose() {
            return Err(oauth_error(1, None, "Error validating client secret."));
        }
        let short = world.live_token(get("access_token"))?;
        if short.long_lived {
            return Err(invalid("The access token is already long-lived."));
        }
        let (user_id, scopes) = (short.user_id.clone(), short.scopes.clone());
        let (token, expires_in) = world.issue(&user_id, scopes, true);
        Ok(no_store(json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
        })))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /refresh_access_token?grant_type=th_refresh_token`.
async fn refresh(State(threads): State<ThreadsControl>, RawQuery(query): RawQuery) -> Response {
    let mut world = threads.world();
    world.refresh_calls += 1;
    let result = (|| -> Result<Response, Refusal> {
        let form = oauth::parse_query(query.as_deref()).map_err(|e| invalid(&e.to_string()))?;
        let get = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        if get("grant_type") != "th_refresh_token" {
            return Err(invalid("grant_type must be th_refresh_token."));
        }
        let now = world.now();
        let token = world.live_token(get("access_token"))?;
        if !token.long_lived {
            return Err(invalid("Only long-lived access tokens can be refreshed."));
        }
        if now.duration_since(token.issued) < MIN_REFRESH_AGE {
            return Err(invalid(
                "The access token must be at least 24 hours old to be refreshed.",
            ));
        }
        if !token.scopes.iter().any(|s| s == "threads_basic") {
            return Err(graph_error(
                StatusCode::FORBIDDEN,
                "OAuthException",
                10,
                None,
                "(#10) Application does not have permission for this action: threads_basic",
            ));
        }
        let (user_id, scopes) = (token.user_id.clone(), token.scopes.clone());
        let (token, expires_in) = world.issue(&user_id, scopes, true);
        Ok(no_store(json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
        })))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The caller of an API call: authenticated, and past armed errors and rate limits.
struct Caller {
    user: ThreadsUser,
    scopes: Vec<String>,
}

impl World {
    fn admit(
        &mut self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        faults: &Faults,
    ) -> Result<Caller, Refusal> {
        if let Some((status, error)) = self.next_error.take() {
            return Err(Refusal {
                status,
                error,
                headers: Vec::new(),
            });
        }
        let token = oauth::bearer_token(headers)
            .map(str::to_owned)
            .or_else(|| query.get("access_token").cloned())
            .ok_or_else(|| oauth_error(2500, None, "An active access token must be used to query information about the current user."))?;
        let record = self.live_token(&token)?;
        let scopes = record.scopes.clone();
        let user = self
            .require_user(&record.user_id)
            .map_err(|_| oauth_error(190, None, "Invalid OAuth access token."))?
            .clone();
        if let Some(reset) = faults.take_rate_limit() {
            let minutes = reset.saturating_sub(unix_now()).div_ceil(60);
            let usage = json!({ user.id.clone(): [{
                "type": "threads",
                "call_count": 100,
                "total_cputime": 20,
                "total_time": 30,
                "estimated_time_to_regain_access": minutes,
            }]});
            let mut refusal = oauth_error(17, None, "(#17) User request limit reached");
            refusal
                .headers
                .push(("x-business-use-case-usage", usage.to_string()));
            return Err(refusal);
        }
        Ok(Caller { user, scopes })
    }

    /// `{user}` in a path: the caller's id, or `me`.
    fn check_owner(caller: &Caller, path_id: &str) -> Result<(), Refusal> {
        if path_id == "me" || path_id == caller.user.id {
            Ok(())
        } else {
            Err(graph_error(
                StatusCode::BAD_REQUEST,
                "THApiException",
                100,
                Some(33),
                &format!("Unsupported post request. Object with ID '{path_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
            ))
        }
    }

    fn require_publish(caller: &Caller) -> Result<(), Refusal> {
        if caller.scopes.iter().any(|s| s == "threads_content_publish") {
            Ok(())
        } else {
            Err(graph_error(
                StatusCode::FORBIDDEN,
                "OAuthException",
                10,
                None,
                "(#10) Application does not have permission for this action",
            ))
        }
    }

    fn used_quota(&self, user_id: &str) -> u64 {
        let now = self.now();
        self.posts
            .iter()
            .filter(|(p, at)| p.owner_id == user_id && now.duration_since(*at) < QUOTA_DURATION)
            .count() as u64
    }
}

/// Only the requested fields (and `id`) of `object`.
fn select(object: Value, fields: Option<&String>) -> Value {
    let Value::Object(all) = object else {
        return object;
    };
    let wanted: Vec<&str> = fields
        .map(|f| f.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    for (key, value) in all {
        if key == "id" || wanted.contains(&key.as_str()) {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

/// `GET /v1.0/me`.
async fn me(
    State(threads): State<ThreadsControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = (|| -> Result<Response, Refusal> {
        let query = oauth::parse_query(query.as_deref()).map_err(|e| invalid(&e.to_string()))?;
        let mut world = threads.world();
        let caller = world.admit(&headers, &query, &threads.faults)?;
        let user = serde_json::to_value(&caller.user).unwrap_or_default();
        Ok(Json(select(user, query.get("fields"))).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1.0/{id}`: a container, a published thread, or a user.
async fn object(
    State(threads): State<ThreadsControl>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = (|| -> Result<Response, Refusal> {
        let query = oauth::parse_query(query.as_deref()).map_err(|e| invalid(&e.to_string()))?;
        let mut world = threads.world();
        let caller = world.admit(&headers, &query, &threads.faults)?;
        let now = world.now();
        if let Some(container) = world
            .containers
            .iter_mut()
            .find(|c| c.id == id && c.owner_id == caller.user.id)
        {
            let status = if container.published {
                "PUBLISHED"
            } else if now.duration_since(container.created) >= CONTAINER_LIFETIME {
                "EXPIRED"
            } else if container.polls_left > 0 {
                container.polls_left -= 1;
                "IN_PROGRESS"
            } else if container.outcome == Outcome::Error {
                "ERROR"
            } else {
                "FINISHED"
            };
            let mut body = json!({"id": container.id, "status": status});
            if status == "ERROR" {
                body["error_message"] = json!(container.error_message.clone().unwrap_or_default());
            }
            world.status_polls += 1;
            return Ok(Json(select(body, query.get("fields"))).into_response());
        }
        if let Some((post, _)) = world
            .posts
            .iter()
            .find(|(p, _)| p.id == id && p.owner_id == caller.user.id)
        {
            let body = json!({
                "id": post.id,
                "media_type": post.media_type,
                "text": post.text,
                "permalink": post.permalink,
                "username": caller.user.username,
            });
            return Ok(Json(select(body, query.get("fields"))).into_response());
        }
        if id == caller.user.id {
            let user = serde_json::to_value(&caller.user).unwrap_or_default();
            return Ok(Json(select(user, query.get("fields"))).into_response());
        }
        Err(World::check_owner(&caller, &id)
            .err()
            .unwrap_or_else(|| invalid("Unknown object.")))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Threads' count: one per character, characters beyond the BMP by their UTF-8 bytes.
fn text_length(text: &str) -> usize {
    text.chars()
        .map(|c| {
            if u32::from(c) > 0xFFFF {
                c.len_utf8()
            } else {
                1
            }
        })
        .sum()
}

/// Whether a media URL can be "downloaded": the sandbox's own `/media/` files must
/// exist; any other URL is taken as public.
fn downloadable(url: &str) -> bool {
    match url.split_once("/threads/media/") {
        Some((_, name)) => SERVED_MEDIA.iter().any(|(n, _)| *n == name),
        None => url.starts_with("http://") || url.starts_with("https://"),
    }
}

/// `POST /v1.0/{user}/threads`.
async fn create_container(
    State(threads): State<ThreadsControl>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let result = (|| -> Result<Response, Refusal> {
        let form = params(&headers, query.as_deref(), &body)?;
        let mut world = threads.world();
        let caller = world.admit(&headers, &form, &threads.faults)?;
        World::check_owner(&caller, &user_id)?;
        World::require_publish(&caller)?;
        if let Some((status, error)) = world.next_container_error.take() {
            return Err(Refusal {
                status,
                error,
                headers: Vec::new(),
            });
        }
        let get = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let text = get("text").map(str::to_owned);
        if let Some(text) = &text {
            let length = text_length(text);
            if length > MAX_TEXT {
                return Err(invalid(&format!(
                    "(#100) The text is {length} characters long; the maximum is {MAX_TEXT}."
                )));
            }
        }
        let is_carousel_item = get("is_carousel_item") == Some("true");
        let media_type = get("media_type").unwrap_or_default().to_owned();
        let (media_url, polls, children) = match media_type.as_str() {
            "TEXT" => {
                if text.is_none() || is_carousel_item {
                    return Err(invalid(
                        "(#100) A TEXT post needs text and cannot be a carousel item.",
                    ));
                }
                (None, 0, Vec::new())
            }
            "IMAGE" => {
                let url = get("image_url")
                    .ok_or_else(|| invalid("(#100) image_url is required for IMAGE."))?;
                (Some(url.to_owned()), world.image_polls, Vec::new())
            }
            "VIDEO" => {
                let url = get("video_url")
                    .ok_or_else(|| invalid("(#100) video_url is required for VIDEO."))?;
                (Some(url.to_owned()), world.video_polls, Vec::new())
            }
            "CAROUSEL" => {
                let children: Vec<String> = get("children")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
                if !(2..=MAX_CAROUSEL).contains(&children.len()) {
                    return Err(invalid("(#100) A carousel needs 2 to 20 children."));
                }
                for child in &children {
                    let ok = world.containers.iter().any(|c| {
                        &c.id == child
                            && c.owner_id == caller.user.id
                            && c.is_carousel_item
                            && c.polls_left == 0
                            && c.outcome == Outcome::Finished
                    });
                    if !ok {
                        return Err(invalid(&format!(
                            "(#100) Child {child} is not a finished carousel item of this user."
                        )));
                    }
                }
                (None, 0, children)
            }
            _ => {
                return Err(invalid(
                    "(#100) media_type must be TEXT, IMAGE, VIDEO or CAROUSEL.",
                ))
            }
        };
        let mut outcome = Outcome::Finished;
        let mut error_message = None;
        if let Some(url) = &media_url {
            if !downloadable(url) {
                outcome = Outcome::Error;
                error_message = Some(if media_type == "VIDEO" {
                    "FAILED_DOWNLOADING_VIDEO".to_owned()
                } else {
                    "UNKNOWN".to_owned()
                });
            }
        }
        if let Some(message) = world.fail_next_container.take() {
            outcome = Outcome::Error;
            error_message = Some(message);
        }
        let id = world.id();
        let created = world.now();
        world.containers.push(Container {
            id: id.clone(),
            owner_id: caller.user.id.clone(),
            media_type,
            text,
            media_url,
            alt_text: get("alt_text").map(str::to_owned),
            children,
            is_carousel_item,
            polls_left: polls,
            outcome,
            error_message,
            created,
            published: false,
        });
        Ok(Json(json!({ "id": id })).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1.0/{user}/threads_publish`.
async fn publish(
    State(threads): State<ThreadsControl>,
    Path(user_id): Path<String>,
    extensions: Extensions,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let response = publish_now(&threads, &user_id, &headers, query.as_deref(), &body);
    let lose = std::mem::take(&mut threads.world().drop_next_publish);
    if lose && response.status().is_success() {
        if let Some(connection) = extensions.get::<ConnectionHandle>() {
            connection.abort();
            // The connection task drops this future along with the socket.
            return std::future::pending().await;
        }
    }
    response
}

fn publish_now(
    threads: &ThreadsControl,
    user_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    let result = (|| -> Result<Response, Refusal> {
        let form = params(headers, query, body)?;
        let mut world = threads.world();
        let caller = world.admit(headers, &form, &threads.faults)?;
        World::check_owner(&caller, user_id)?;
        World::require_publish(&caller)?;
        let creation_id = form.get("creation_id").cloned().unwrap_or_default();
        let now = world.now();
        let Some(index) = world.containers.iter().position(|c| {
            c.id == creation_id && c.owner_id == caller.user.id && !c.is_carousel_item
        }) else {
            return Err(invalid(&format!(
                "(#100) creation_id {creation_id} is not a container of this user."
            )));
        };
        {
            let container = &world.containers[index];
            if container.published {
                return Err(invalid("(#100) The container has already been published."));
            }
            if now.duration_since(container.created) >= CONTAINER_LIFETIME {
                return Err(graph_error(
                    StatusCode::BAD_REQUEST,
                    "THApiException",
                    24,
                    Some(4_279_009),
                    "The container has expired.",
                ));
            }
            if container.polls_left > 0 || container.outcome == Outcome::Error {
                return Err(graph_error(
                    StatusCode::BAD_REQUEST,
                    "THApiException",
                    9007,
                    Some(2_207_027),
                    "Media ID is not available: the media is not ready to be published.",
                ));
            }
        }
        if world.used_quota(&caller.user.id) >= world.quota_total {
            return Err(graph_error(
                StatusCode::BAD_REQUEST,
                "THApiException",
                9,
                None,
                "(#9) You have reached the maximum number of posts allowed in 24 hours.",
            ));
        }
        let (media_type, media_urls, alt_texts) = {
            let container = &world.containers[index];
            let items: Vec<&Container> = if container.children.is_empty() {
                vec![container]
            } else {
                container
                    .children
                    .iter()
                    .filter_map(|id| world.containers.iter().find(|c| &c.id == id))
                    .collect()
            };
            let kind = match container.media_type.as_str() {
                "TEXT" => "TEXT_POST",
                "CAROUSEL" => "CAROUSEL_ALBUM",
                other => other,
            };
            (
                kind.to_owned(),
                items
                    .iter()
                    .filter_map(|c| c.media_url.clone())
                    .collect::<Vec<_>>(),
                items
                    .iter()
                    .filter_map(|c| c.alt_text.clone())
                    .collect::<Vec<_>>(),
            )
        };
        world.containers[index].published = true;
        let text = world.containers[index].text.clone();
        let id = world.id();
        let shortcode = oauth::random_token(8);
        let post = ThreadsPost {
            id: id.clone(),
            owner_id: caller.user.id.clone(),
            media_type,
            text,
            media_urls,
            alt_texts,
            permalink: format!(
                "https://www.threads.net/@{}/post/{shortcode}",
                caller.user.username
            ),
            creation_id,
        };
        world.posts.push((post, now));
        Ok(Json(json!({ "id": id })).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1.0/{user}/threads_publishing_limit`.
async fn publishing_limit(
    State(threads): State<ThreadsControl>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = (|| -> Result<Response, Refusal> {
        let query = oauth::parse_query(query.as_deref()).map_err(|e| invalid(&e.to_string()))?;
        let mut world = threads.world();
        let caller = world.admit(&headers, &query, &threads.faults)?;
        World::check_owner(&caller, &user_id)?;
        let usage = world.used_quota(&caller.user.id);
        let entry = json!({
            "quota_usage": usage,
            "config": {"quota_total": world.quota_total, "quota_duration": QUOTA_DURATION.as_secs()},
        });
        Ok(Json(json!({"data": [select(entry, query.get("fields"))]})).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /media/{name}`: a few bytes with the right content type.
async fn media(Path(name): Path<String>) -> Response {
    match SERVED_MEDIA.iter().find(|(n, _)| *n == name) {
        Some((_, content_type)) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            format!("sandbox media {name}").into_bytes(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Controls for a person poking the demo with curl, under `/sandbox/threads`.
pub(crate) fn control_routes(threads: &ThreadsControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .route("/users/{id}/threads", get(control_posts))
        .with_state(threads.clone())
}

async fn control_state(State(threads): State<ThreadsControl>) -> Json<Value> {
    let users = threads.users();
    let world = threads.world();
    Json(json!({
        "client_id": world.client_id,
        "users": users,
        "published": world.posts.len(),
        "containers": world.containers.len(),
        "quota_total": world.quota_total,
        "exchange_calls": world.exchange_calls,
        "refresh_calls": world.refresh_calls,
        "clock_offset_secs": world.clock_offset.as_secs(),
        "faults": threads.faults.pending_faults(),
    }))
}

async fn control_posts(
    State(threads): State<ThreadsControl>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ThreadsPost>>, SandboxError> {
    threads.world().require_user(&id)?;
    Ok(Json(threads.posts(&id)))
}
