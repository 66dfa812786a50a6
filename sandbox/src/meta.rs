//! Simulated Meta Graph API: Facebook Login, Pages and Instagram professional accounts,
//! one shared world mounted at both `/facebook` and `/instagram` (each platform's
//! settings point at its own prefix; the apps, people, Pages and tokens are the same).
//!
//! Implemented from Meta's documentation: the login dialog `/{v}/dialog/oauth` (no PKCE,
//! `state` carried back, `error=access_denied&error_reason=user_denied` on cancel), the
//! token endpoint `GET /{v}/oauth/access_token` (code exchange, and
//! `grant_type=fb_exchange_token` for a long-lived token of 5,183,944 s), `debug_token`,
//! `/me`, `/me/accounts` (Page tokens and `tasks`), `DELETE /me/permissions`, Page
//! `feed` and `photos` (unpublished photos and `attached_media`), and Instagram's
//! container flow (`/{ig}/media` → `status_code` IN_PROGRESS then FINISHED after
//! [`MetaControl::set_polls_to_finish`] polls → `/{ig}/media_publish`) with
//! `content_publishing_limit`. Errors use Graph's envelope
//! `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`.
//!
//! Media: the sandbox serves a few files under `{prefix}/media/{name}` (see
//! [`MEDIA`]); an `image_url`/`video_url`/`url` must name one of them, as Meta must be
//! able to fetch what it is given. The sandbox checks the path instead of fetching it.
//!
//! Seeded people (password [`crate::oauth::SANDBOX_PASSWORD`]):
//!
//! | username | Pages | Instagram |
//! |---|---|---|
//! | `meta_publisher` | `2001` Jane Writes (CREATE_CONTENT) | `3001` @janewrites, business |
//! | `meta_creator` | `2002` Creator Notes (CREATE_CONTENT) | `3002` @creatornotes, creator |
//! | `meta_personal` | none (a personal profile) | none |
//! | `meta_analyst` | `2004` Analyst Page (ANALYZE only) | none |
//! | `meta_unlinked` | `2005` No Instagram Page (CREATE_CONTENT) | none |
//! | `meta_personal_ig` | `2006` Holiday Page (CREATE_CONTENT) | `3006` @holidaysnaps, personal (connected, not professional) |

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use super::oauth::{self, random_token};
use super::GRAPH_API_VERSION;
use super::{lock, unix_now, SandboxError};
use crate::oauth::SANDBOX_PASSWORD;

/// The Facebook app the sandbox config uses (`sandbox-{platform}-client`).
pub const FACEBOOK_CLIENT_ID: &str = "sandbox-facebook-client";
pub const FACEBOOK_CLIENT_SECRET: &str = "sandbox-facebook-secret";
/// The Instagram connection's app: a second Meta app, so that each connection's grant is
/// its own.
pub const INSTAGRAM_CLIENT_ID: &str = "sandbox-instagram-client";
pub const INSTAGRAM_CLIENT_SECRET: &str = "sandbox-instagram-secret";

/// Short-lived user tokens ("hours") and long-lived ones (about 60 days), in seconds.
pub const SHORT_LIVED_SECS: u64 = 3_600;
pub const LONG_LIVED_SECS: u64 = 5_183_944;

/// Files served under `{prefix}/media/`: name, content type, kind.
pub const MEDIA: &[(&str, &str)] = &[
    ("cover.jpg", "image/jpeg"),
    ("back.jpg", "image/jpeg"),
    ("spine.jpg", "image/jpeg"),
    ("trailer.mp4", "video/mp4"),
];

/// How Graph's error envelope is sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphFault {
    pub status: u16,
    pub code: i64,
    pub subcode: Option<i64>,
    pub message: String,
    /// A usage header sent with the error (`X-Business-Use-Case-Usage`, …).
    pub header: Option<(String, String)>,
}

impl GraphFault {
    pub fn new(status: u16, code: i64, subcode: Option<i64>, message: impl Into<String>) -> Self {
        GraphFault {
            status,
            code,
            subcode,
            message: message.into(),
            header: None,
        }
    }

    /// The error Graph answers for a dead token with this 190 subcode.
    pub fn token(subcode: Option<i64>) -> GraphFault {
        let message = match subcode {
            Some(458) => "Error validating access token: The user has not authorized application.",
            Some(459) => "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
            Some(460) => "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
            Some(463) => "Error validating access token: Session has expired on Saturday, 28-Nov-26 09:00:00 PST.",
            Some(464) => "Error validating access token: Sessions for the user are not allowed because the user is not a confirmed user.",
            Some(467) => "Error validating access token: The user is enrolled in a blocking, logged-in checkpoint.",
            _ => "Invalid OAuth access token - Cannot parse access token",
        };
        GraphFault::new(400, 190, subcode, message)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.header = Some((name.to_owned(), value.to_owned()));
        self
    }

    fn into_response(self) -> Response {
        let mut error = json!({
            "message": self.message,
            "type": if self.code == 190 || self.code == 102 { "OAuthException" } else { "GraphMethodException" },
            "code": self.code,
            "fbtrace_id": random_token(9),
        });
        if let Some(sub) = self.subcode {
            error["error_subcode"] = json!(sub);
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if let Some((name, value)) = self.header {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Whose an Instagram account is and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IgKind {
    Business,
    Creator,
    Personal,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetaUser {
    pub id: String,
    pub username: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetaPage {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub tasks: Vec<String>,
    /// The professional account linked to the Page.
    pub instagram_business_account: Option<String>,
    /// A personal account connected in the Page's settings.
    pub connected_instagram_account: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstagramAccount {
    pub id: String,
    pub username: String,
    pub kind: IgKind,
}

/// A post on a Page, as the control handle shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacebookPost {
    pub id: String,
    pub page_id: String,
    pub message: String,
    pub link: Option<String>,
    /// Photo URLs, in order.
    pub photos: Vec<String>,
}

/// Published Instagram media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstagramMedia {
    pub id: String,
    pub ig_user_id: String,
    /// `IMAGE`, `REELS`, `STORIES`, `CAROUSEL`.
    pub media_type: String,
    pub caption: String,
    pub urls: Vec<String>,
    pub permalink: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Short,
    Long,
    Page,
}

#[derive(Debug, Clone)]
struct Token {
    client_id: String,
    user_id: String,
    kind: TokenKind,
    page_id: Option<String>,
    scopes: Vec<String>,
    /// Unix seconds; `None` never expires (Page tokens from a long-lived user token).
    expires_at: Option<u64>,
    /// The 190 subcode the token now answers with, once dead.
    dead: Option<Option<i64>>,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    redirect_uri: String,
    user_id: String,
    scopes: Vec<String>,
    spent: bool,
}

#[derive(Debug, Clone)]
struct Container {
    ig_user_id: String,
    media_type: String,
    caption: String,
    urls: Vec<String>,
    carousel_item: bool,
    polls_left: u32,
    status: &'static str,
}

#[derive(Debug, Clone)]
struct Photo {
    page_id: String,
    url: String,
}

struct World {
    apps: Vec<(String, String)>,
    users: Vec<MetaUser>,
    pages: Vec<MetaPage>,
    instagram: Vec<InstagramAccount>,
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    declined: HashMap<String, Vec<String>>,
    containers: HashMap<String, Container>,
    photos: HashMap<String, Photo>,
    posts: Vec<FacebookPost>,
    media: Vec<InstagramMedia>,
    /// Unix seconds of each media_publish, per IG user, for the rolling 24 h quota.
    publishes: Vec<(String, u64)>,
    quota_total: u64,
    /// The most items one answer of a paged edge holds, whatever `limit` asks.
    page_size: usize,
    /// Usage headers every answer that is not an injected fault carries.
    usage_headers: Vec<(String, String)>,
    polls_to_finish: u32,
    failing_containers: u32,
    container_polls: u64,
    faults: VecDeque<GraphFault>,
    revocations: Vec<(String, String)>,
    next_id: u64,
}

impl World {
    fn seeded() -> World {
        let user = |id: &str, username: &str, name: &str| MetaUser {
            id: id.into(),
            username: username.into(),
            name: name.into(),
        };
        let all_tasks = || {
            [
                "ANALYZE",
                "ADVERTISE",
                "MODERATE",
                "CREATE_CONTENT",
                "MANAGE",
            ]
            .map(String::from)
            .to_vec()
        };
        let page = |id: &str,
                    name: &str,
                    owner: &str,
                    tasks: Vec<String>,
                    ig: Option<&str>,
                    personal: Option<&str>| MetaPage {
            id: id.into(),
            name: name.into(),
            owner: owner.into(),
            tasks,
            instagram_business_account: ig.map(String::from),
            connected_instagram_account: personal.map(String::from),
        };
        let ig = |id: &str, username: &str, kind| InstagramAccount {
            id: id.into(),
            username: username.into(),
            kind,
        };
        World {
            apps: vec![
                (FACEBOOK_CLIENT_ID.into(), FACEBOOK_CLIENT_SECRET.into()),
                (INSTAGRAM_CLIENT_ID.into(), INSTAGRAM_CLIENT_SECRET.into()),
            ],
            users: vec![
                user("1001", "meta_publisher", "Jane Writes"),
                user("1002", "meta_creator", "Cara Creator"),
                user("1003", "meta_personal", "Paul Personal"),
                user("1004", "meta_analyst", "Ann Analyst"),
                user("1005", "meta_unlinked", "Una Unlinked"),
                user("1006", "meta_personal_ig", "Hal Holiday"),
            ],
            pages: vec![
                page(
                    "2001",
                    "Jane Writes",
                    "1001",
                    all_tasks(),
                    Some("3001"),
                    None,
                ),
                page(
                    "2002",
                    "Creator Notes",
                    "1002",
                    all_tasks(),
                    Some("3002"),
                    None,
                ),
                page(
                    "2004",
                    "Analyst Page",
                    "1004",
                    vec!["ANALYZE".into()],
                    None,
                    None,
                ),
                page("2005", "No Instagram Page", "1005", all_tasks(), None, None),
                page(
                    "2006",
                    "Holiday Page",
                    "1006",
                    all_tasks(),
                    None,
                    Some("3006"),
                ),
            ],
            instagram: vec![
                ig("3001", "janewrites", IgKind::Business),
                ig("3002", "creatornotes", IgKind::Creator),
                ig("3006", "holidaysnaps", IgKind::Personal),
            ],
            codes: HashMap::new(),
            tokens: HashMap::new(),
            declined: HashMap::new(),
            containers: HashMap::new(),
            photos: HashMap::new(),
            posts: Vec::new(),
            media: Vec::new(),
            publishes: Vec::new(),
            quota_total: 50,
            page_size: 100,
            usage_headers: Vec::new(),
            polls_to_finish: 2,
            failing_containers: 0,
            container_polls: 0,
            faults: VecDeque::new(),
            revocations: Vec::new(),
            next_id: 17_841_400_000,
        }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn user_by_name(&self, username: &str) -> Result<&MetaUser, SandboxError> {
        self.users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .ok_or_else(|| SandboxError::UnknownUser(username.to_owned()))
    }

    fn issue(&mut self, template: Token) -> String {
        let token = format!("EAA{}", random_token(32));
        self.tokens.insert(token.clone(), template);
        token
    }

    /// The token's record, or the error Graph answers for it.
    fn authenticate(&self, token: Option<&str>) -> Result<Token, GraphFault> {
        let Some(record) = token.and_then(|t| self.tokens.get(t)) else {
            return Err(match token {
                None => GraphFault::new(
                    400,
                    2500,
                    None,
                    "An active access token must be used to query information about the current user.",
                ),
                Some(_) => GraphFault::token(None),
            });
        };
        if let Some(subcode) = record.dead {
            return Err(GraphFault::token(subcode));
        }
        if record.expires_at.is_some_and(|e| e <= unix_now()) {
            return Err(GraphFault::token(Some(463)));
        }
        Ok(record.clone())
    }
}

/// A handle on the simulated Graph API; cheap to clone.
#[derive(Clone)]
pub struct MetaControl {
    world: Arc<Mutex<World>>,
}

impl std::fmt::Debug for MetaControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaControl").finish_non_exhaustive()
    }
}

impl Default for MetaControl {
    fn default() -> Self {
        Self::new()
    }
}

impl MetaControl {
    pub fn new() -> MetaControl {
        MetaControl {
            world: Arc::new(Mutex::new(World::seeded())),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    pub fn users(&self) -> Vec<MetaUser> {
        self.world().users.clone()
    }

    pub fn pages(&self) -> Vec<MetaPage> {
        self.world().pages.clone()
    }

    pub fn instagram_accounts(&self) -> Vec<InstagramAccount> {
        self.world().instagram.clone()
    }

    /// The next API calls (any route but the login dialog and media files) answer these
    /// errors, in order.
    pub fn fail_next(&self, fault: GraphFault) {
        self.world().faults.push_back(fault);
    }

    /// Every token of `username` (every app) now answers code 190 with `subcode`, as
    /// after a password change (460), a checkpoint (459) or an unconfirmed account (464).
    pub fn invalidate_tokens(
        &self,
        username: &str,
        subcode: Option<i64>,
    ) -> Result<usize, SandboxError> {
        let mut world = self.world();
        let id = world.user_by_name(username)?.id.clone();
        let mut count = 0;
        for token in world.tokens.values_mut().filter(|t| t.user_id == id) {
            token.dead = Some(subcode);
            count += 1;
        }
        Ok(count)
    }

    /// The person removes one app in their settings: that app's tokens answer 190/458.
    pub fn remove_app(&self, username: &str, client_id: &str) -> Result<usize, SandboxError> {
        let mut world = self.world();
        let id = world.user_by_name(username)?.id.clone();
        let mut count = 0;
        for token in world
            .tokens
            .values_mut()
            .filter(|t| t.user_id == id && t.client_id == client_id)
        {
            token.dead = Some(Some(458));
            count += 1;
        }
        Ok(count)
    }

    /// The person unticks `scope` in the next login dialog.
    pub fn decline_scope(&self, username: &str, scope: &str) {
        self.world()
            .declined
            .entry(username.to_ascii_lowercase())
            .or_default()
            .push(scope.to_owned());
    }

    /// Valid tokens `username` holds for `client_id`.
    pub fn live_tokens(&self, username: &str, client_id: &str) -> Result<usize, SandboxError> {
        let world = self.world();
        let id = world.user_by_name(username)?.id.clone();
        let now = unix_now();
        Ok(world
            .tokens
            .values()
            .filter(|t| {
                t.user_id == id
                    && t.client_id == client_id
                    && t.dead.is_none()
                    && t.expires_at.is_none_or(|e| e > now)
            })
            .count())
    }

    /// Seconds from now until `token` lapses: `Some(None)` for a token that does not
    /// expire, `None` for a token the sandbox never issued.
    pub fn token_lifetime(&self, token: &str) -> Option<Option<u64>> {
        let now = unix_now();
        self.world()
            .tokens
            .get(token)
            .map(|t| t.expires_at.map(|e| e.saturating_sub(now)))
    }

    /// `DELETE /me/permissions` calls received: (client id, user id).
    pub fn revocations(&self) -> Vec<(String, String)> {
        self.world().revocations.clone()
    }

    pub fn page_posts(&self, page_id: &str) -> Vec<FacebookPost> {
        self.world()
            .posts
            .iter()
            .filter(|p| p.page_id == page_id)
            .cloned()
            .collect()
    }

    pub fn instagram_media(&self, ig_user_id: &str) -> Vec<InstagramMedia> {
        self.world()
            .media
            .iter()
            .filter(|m| m.ig_user_id == ig_user_id)
            .cloned()
            .collect()
    }

    /// Containers created so far.
    pub fn containers_created(&self) -> usize {
        self.world().containers.len()
    }

    /// Status polls of containers answered so far.
    pub fn container_polls(&self) -> u64 {
        self.world().container_polls
    }

    /// How many status polls a new container answers IN_PROGRESS before FINISHED.
    pub fn set_polls_to_finish(&self, polls: u32) {
        self.world().polls_to_finish = polls;
    }

    /// The next `count` containers end in ERROR instead of FINISHED.
    pub fn fail_next_containers(&self, count: u32) {
        self.world().failing_containers = count;
    }

    /// From now on every answer (but injected faults) carries these usage headers, as
    /// Graph reports usage on successful calls too (`X-App-Usage`, `X-Page-Usage`,
    /// `X-Business-Use-Case-Usage`). An empty list stops them.
    pub fn set_usage_headers(&self, headers: &[(&str, &str)]) {
        self.world().usage_headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// The most Pages one `/me/accounts` answer holds (100 by default); the rest come
    /// behind `paging.cursors.after`, as Graph pages its edges.
    pub fn set_page_size(&self, size: usize) {
        self.world().page_size = size.max(1);
    }

    /// A further Page for `username`, with every task, linked to a new professional
    /// (business) Instagram account named `instagram`, if given. Returns the Page id and
    /// the Instagram account id.
    pub fn add_page(
        &self,
        username: &str,
        name: &str,
        instagram: Option<&str>,
    ) -> Result<(String, Option<String>), SandboxError> {
        let mut world = self.world();
        let owner = world.user_by_name(username)?.id.clone();
        let page_id = world.id();
        let ig = match instagram {
            Some(ig_name) => {
                let id = world.id();
                world.instagram.push(InstagramAccount {
                    id: id.clone(),
                    username: ig_name.into(),
                    kind: IgKind::Business,
                });
                Some(id)
            }
            None => None,
        };
        world.pages.push(MetaPage {
            id: page_id.clone(),
            name: name.into(),
            owner,
            tasks: ["ANALYZE", "MODERATE", "CREATE_CONTENT", "MANAGE"]
                .map(String::from)
                .to_vec(),
            instagram_business_account: ig.clone(),
            connected_instagram_account: None,
        });
        Ok((page_id, ig))
    }

    /// The `quota_total` of `content_publishing_limit` (50 by default).
    pub fn set_publishing_quota(&self, total: u64) {
        self.world().quota_total = total;
    }

    /// Where the sandbox serves `name` (one of [`MEDIA`]), under `base_url` + prefix.
    pub fn media_url(base_url: &str, platform: &str, name: &str) -> String {
        format!("{base_url}/{platform}/media/{name}")
    }
}

/// The Graph routes, mounted under both `/facebook` and `/instagram`.
pub(crate) fn platform_routes(meta: &MetaControl) -> Router {
    let v = GRAPH_API_VERSION;
    let api = Router::new()
        .route(&format!("/{v}/oauth/access_token"), get(token))
        .route(&format!("/{v}/debug_token"), get(debug_token))
        .route(&format!("/{v}/{{node}}"), get(read_node))
        .route(
            &format!("/{v}/{{node}}/{{edge}}"),
            get(read_edge).post(create_edge).delete(delete_edge),
        )
        .route_layer(middleware::from_fn_with_state(meta.clone(), faults));
    Router::new()
        .route(&format!("/{v}/dialog/oauth"), get(dialog).post(decision))
        .route("/media/{name}", get(media_file))
        .merge(api)
        .with_state(meta.clone())
}

/// The `/sandbox/meta` control routes: state for a person poking the demo.
pub(crate) fn control_routes(meta: &MetaControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .with_state(meta.clone())
}

async fn control_state(State(meta): State<MetaControl>) -> Json<Value> {
    let world = meta.world();
    Json(json!({
        "users": world.users,
        "pages": world.pages,
        "instagram": world.instagram,
        "posts": world.posts,
        "media": world.media,
        "quota_total": world.quota_total,
        "revocations": world.revocations,
        "pending_faults": world.faults.iter().collect::<Vec<_>>(),
    }))
}

async fn faults(State(meta): State<MetaControl>, request: Request, next: Next) -> Response {
    let fault = meta.world().faults.pop_front();
    match fault {
        Some(fault) => fault.into_response(),
        None => {
            let mut response = next.run(request).await;
            let usage = meta.world().usage_headers.clone();
            for (name, value) in usage {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::from_bytes(name.as_bytes()),
                    axum::http::HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
    }
}

async fn media_file(Path(name): Path<String>) -> Response {
    match MEDIA.iter().find(|(n, _)| *n == name) {
        Some((_, content_type)) => (
            [(header::CONTENT_TYPE, *content_type)],
            // Enough bytes to be a file; nobody decodes them.
            Bytes::from(format!("sandbox media {name}").into_bytes()),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Checks the dialog's parameters; `Err` is the page to show.
fn check_dialog(world: &World, params: &HashMap<String, String>) -> Result<(), String> {
    let get = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if !world.apps.iter().any(|(id, _)| id == get("client_id")) {
        return Err("Invalid App ID: the app is not registered.".into());
    }
    let redirect = get("redirect_uri");
    if !(redirect.starts_with("http://") || redirect.starts_with("https://")) {
        return Err("URL blocked: this redirect failed because the redirect URI is not whitelisted in the app's Client OAuth Settings.".into());
    }
    Ok(())
}

async fn dialog(State(meta): State<MetaControl>, RawQuery(query): RawQuery) -> Response {
    let params = match oauth::parse_query(query.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, oauth::error_page(&e.to_string())).into_response()
        }
    };
    if let Err(message) = check_dialog(&meta.world(), &params) {
        return (StatusCode::BAD_REQUEST, oauth::error_page(&message)).into_response();
    }
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Log in with Facebook (sandbox)</title></head><body><h1>Log in with Facebook</h1><p>The app asks for:</p><ul>",
    );
    for scope in params
        .get("scope")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
    {
        html.push_str(&format!("<li><code>{}</code></li>", escape(scope.trim())));
    }
    html.push_str("</ul><form method=\"post\" action=\"oauth\">");
    for name in [
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "response_type",
    ] {
        if let Some(value) = params.get(name) {
            html.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            ));
        }
    }
    html.push_str(
        "<p><label>Username <input type=\"text\" name=\"username\"></label></p>\
         <p><label>Password <input type=\"password\" name=\"password\"></label></p>\
         <p><button type=\"submit\" name=\"decision\" value=\"authorize\">Continue</button> \
         <button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button></p></form></body></html>",
    );
    Html(html).into_response()
}

async fn decision(State(meta): State<MetaControl>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match oauth::parse_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, oauth::error_page(&e.to_string())).into_response()
        }
    };
    let mut world = meta.world();
    if let Err(message) = check_dialog(&world, &form) {
        return (StatusCode::BAD_REQUEST, oauth::error_page(&message)).into_response();
    }
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let redirect_uri = field("redirect_uri");
    let state = field("state");
    if field("decision") != "authorize" {
        return oauth::redirect_to(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_code", "200"),
                ("error_description", "Permissions error"),
                ("error_reason", "user_denied"),
                ("state", &state),
            ],
        );
    }
    let username = field("username");
    let user = world
        .users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(username.trim()))
        .map(|u| u.id.clone());
    let Some(user_id) = user.filter(|_| field("password") == SANDBOX_PASSWORD) else {
        return (
            StatusCode::UNAUTHORIZED,
            oauth::error_page("The username or password you entered is incorrect."),
        )
            .into_response();
    };
    let declined = world
        .declined
        .get(&username.trim().to_ascii_lowercase())
        .cloned()
        .unwrap_or_default();
    let scopes: Vec<String> = field("scope")
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty() && !declined.iter().any(|d| d == s))
        .map(String::from)
        .collect();
    let code = random_token(24);
    world.codes.insert(
        code.clone(),
        Code {
            client_id: field("client_id"),
            redirect_uri: redirect_uri.clone(),
            user_id,
            scopes,
            spent: false,
        },
    );
    oauth::redirect_to(&redirect_uri, &[("code", &code), ("state", &state)])
}

fn params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let mut map = oauth::parse_query(query).unwrap_or_default();
    if let Ok(form) = oauth::parse_form(headers, body) {
        map.extend(form);
    }
    if !map.contains_key("access_token") {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")
            })
            .map(|(_, token)| token.trim().to_owned());
        if let Some(token) = bearer {
            map.insert("access_token".into(), token);
        }
    }
    map
}

type GraphResult = Result<Json<Value>, GraphFault>;

impl IntoResponse for GraphFault {
    fn into_response(self) -> Response {
        GraphFault::into_response(self)
    }
}

async fn token(State(meta): State<MetaControl>, RawQuery(query): RawQuery) -> GraphResult {
    let p = oauth::parse_query(query.as_deref()).unwrap_or_default();
    let get = |name: &str| p.get(name).map(String::as_str).unwrap_or_default();
    let mut world = meta.world();
    let Some((client_id, secret)) = world
        .apps
        .iter()
        .find(|(id, _)| id == get("client_id"))
        .cloned()
    else {
        return Err(GraphFault::new(
            400,
            101,
            None,
            "Error validating application. Invalid application ID.",
        ));
    };
    if get("client_secret") != secret {
        return Err(GraphFault::new(
            400,
            1,
            None,
            "Error validating client secret.",
        ));
    }
    if get("grant_type") == "fb_exchange_token" {
        let record = world.authenticate(Some(get("fb_exchange_token")))?;
        if record.client_id != client_id || record.kind == TokenKind::Page {
            return Err(GraphFault::token(None));
        }
        let token = world.issue(Token {
            kind: TokenKind::Long,
            expires_at: Some(unix_now() + LONG_LIVED_SECS),
            ..record
        });
        return Ok(Json(
            json!({"access_token": token, "token_type": "bearer", "expires_in": LONG_LIVED_SECS}),
        ));
    }
    let code = get("code");
    let Some(grant) = world.codes.get_mut(code) else {
        return Err(GraphFault::new(
            400,
            100,
            Some(36_007),
            "Invalid verification code format.",
        ));
    };
    if grant.spent {
        return Err(GraphFault::new(
            400,
            100,
            Some(36_009),
            "This authorization code has been used.",
        ));
    }
    if grant.client_id != client_id || grant.redirect_uri != get("redirect_uri") {
        return Err(GraphFault::new(
            400,
            100,
            Some(36_008),
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
        ));
    }
    grant.spent = true;
    let grant = grant.clone();
    let token = world.issue(Token {
        client_id,
        user_id: grant.user_id,
        kind: TokenKind::Short,
        page_id: None,
        scopes: grant.scopes,
        expires_at: Some(unix_now() + SHORT_LIVED_SECS),
        dead: None,
    });
    Ok(Json(
        json!({"access_token": token, "token_type": "bearer", "expires_in": SHORT_LIVED_SECS}),
    ))
}

async fn debug_token(State(meta): State<MetaControl>, RawQuery(query): RawQuery) -> GraphResult {
    let p = oauth::parse_query(query.as_deref()).unwrap_or_default();
    let get = |name: &str| p.get(name).map(String::as_str).unwrap_or_default();
    let world = meta.world();
    let app = world
        .apps
        .iter()
        .find(|(id, secret)| get("access_token") == format!("{id}|{secret}"))
        .cloned();
    let Some((app_id, _)) = app else {
        return Err(GraphFault::new(
            400,
            190,
            None,
            "Invalid OAuth access token signature.",
        ));
    };
    let input = get("input_token");
    let Some(record) = world.tokens.get(input).cloned() else {
        return Ok(Json(
            json!({"data": {"is_valid": false, "error": {"code": 190, "message": "Invalid OAuth access token."}}}),
        ));
    };
    let mut data = json!({
        "app_id": record.client_id,
        "type": if record.kind == TokenKind::Page { "PAGE" } else { "USER" },
        "application": "Social Studio (sandbox)",
        "data_access_expires_at": unix_now() + 90 * 86_400,
        "expires_at": record.expires_at.unwrap_or(0),
        "scopes": record.scopes,
        "user_id": record.user_id,
    });
    if let Some(page) = &record.page_id {
        data["profile_id"] = json!(page);
    }
    if record.client_id != app_id {
        data["is_valid"] = json!(false);
        data["error"] = json!({"code": 190, "message": "The token was not issued to this app."});
    } else {
        match world.authenticate(Some(input)) {
            Ok(_) => data["is_valid"] = json!(true),
            Err(fault) => {
                data["is_valid"] = json!(false);
                data["error"] =
                    json!({"code": fault.code, "subcode": fault.subcode, "message": fault.message});
            }
        }
    }
    Ok(Json(json!({ "data": data })))
}

fn permission(record: &Token, scope: &str) -> Result<(), GraphFault> {
    if record.scopes.iter().any(|s| s == scope) {
        Ok(())
    } else {
        Err(GraphFault::new(
            403,
            10,
            None,
            format!("(#10) Application does not have permission for this action ({scope})"),
        ))
    }
}

fn unknown_node(node: &str) -> GraphFault {
    GraphFault::new(
        400,
        100,
        Some(33),
        format!("Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
    )
}

async fn read_node(
    State(meta): State<MetaControl>,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> GraphResult {
    let p = params(query.as_deref(), &headers, &[]);
    let mut world = meta.world();
    let record = world.authenticate(p.get("access_token").map(String::as_str))?;
    let fields = p.get("fields").cloned().unwrap_or_default();
    if node == "me" {
        let user = world.users.iter().find(|u| u.id == record.user_id).cloned();
        let Some(user) = user else {
            return Err(unknown_node(&node));
        };
        let mut me = json!({"id": user.id, "name": user.name});
        // `picture` only when asked for, as the Graph API answers fields.
        if fields.split(',').any(|f| f.trim() == "picture") {
            me["picture"] = json!({"data": {
                "height": 50,
                "width": 50,
                "is_silhouette": false,
                "url": format!("https://platform-lookaside.fbsbx.com/platform/profilepic/?asid={}&height=50&width=50", user.id),
            }});
        }
        return Ok(Json(me));
    }
    if let Some(page) = world.pages.iter().find(|p| p.id == node).cloned() {
        if page.owner != record.user_id {
            return Err(unknown_node(&node));
        }
        let mut answer = json!({"id": page.id, "name": page.name});
        let ig = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| world.instagram.iter().find(|a| &a.id == id))
                .map(|a| json!({"id": a.id, "username": a.username, "name": a.username}))
        };
        if fields.contains("instagram_business_account") {
            if let Some(account) = ig(&page.instagram_business_account) {
                answer["instagram_business_account"] = account;
            }
        }
        if fields.contains("connected_instagram_account") {
            if let Some(account) = ig(&page.connected_instagram_account) {
                answer["connected_instagram_account"] = account;
            }
        }
        return Ok(Json(answer));
    }
    if world.containers.contains_key(&node) {
        world.container_polls += 1;
        let failing = world.failing_containers;
        let container = world
            .containers
            .get_mut(&node)
            .ok_or_else(|| unknown_node(&node))?;
        if container.status == "IN_PROGRESS" {
            if container.polls_left == 0 {
                container.status = if failing > 0 { "ERROR" } else { "FINISHED" };
            } else {
                container.polls_left -= 1;
            }
        }
        let status = container.status;
        if status == "ERROR" {
            world.failing_containers = failing.saturating_sub(1);
        }
        let words = match status {
            "ERROR" => "Error: Media upload has failed with error code 2207026",
            other => other,
        };
        return Ok(Json(
            json!({"id": node, "status_code": status, "status": words}),
        ));
    }
    if let Some(media) = world.media.iter().find(|m| m.id == node) {
        return Ok(Json(
            json!({"id": media.id, "permalink": media.permalink, "media_type": media.media_type}),
        ));
    }
    Err(unknown_node(&node))
}

async fn read_edge(
    State(meta): State<MetaControl>,
    Path((node, edge)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> GraphResult {
    let p = params(query.as_deref(), &headers, &[]);
    let mut world = meta.world();
    let record = world.authenticate(p.get("access_token").map(String::as_str))?;
    match (node.as_str(), edge.as_str()) {
        ("me", "accounts") => {
            permission(&record, "pages_show_list")?;
            let all: Vec<MetaPage> = world
                .pages
                .iter()
                .filter(|page| page.owner == record.user_id)
                .cloned()
                .collect();
            // Graph's cursors are opaque; here one is the offset it stands for.
            let offset = match p.get("after") {
                None => 0,
                Some(cursor) => cursor
                    .strip_prefix("cursor-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n <= all.len())
                    .ok_or_else(|| {
                        GraphFault::new(400, 100, None, "(#100) The after cursor is invalid.")
                    })?,
            };
            let limit = p
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(25)
                .clamp(1, world.page_size);
            let owned: Vec<MetaPage> = all.iter().skip(offset).take(limit).cloned().collect();
            let end = offset + owned.len();
            let mut paging = json!({"cursors": {
                "before": format!("cursor-{offset}"),
                "after": format!("cursor-{end}"),
            }});
            if end < all.len() {
                paging["next"] = json!(format!("/me/accounts?limit={limit}&after=cursor-{end}"));
            }
            // A Page token from a long-lived user token does not expire.
            let expires_at = match record.kind {
                TokenKind::Long => None,
                _ => record.expires_at,
            };
            let mut pages = Vec::new();
            for page in owned {
                let token = world.issue(Token {
                    kind: TokenKind::Page,
                    page_id: Some(page.id.clone()),
                    expires_at,
                    ..record.clone()
                });
                pages.push(json!({"id": page.id, "name": page.name, "access_token": token, "tasks": page.tasks, "category": "Author"}));
            }
            Ok(Json(json!({"data": pages, "paging": paging})))
        }
        (ig, "content_publishing_limit") => {
            own_instagram(&world, &record, ig)?;
            let since = unix_now().saturating_sub(86_400);
            let usage = world
                .publishes
                .iter()
                .filter(|(id, at)| id == ig && *at > since)
                .count();
            Ok(Json(
                json!({"data": [{"quota_usage": usage, "config": {"quota_total": world.quota_total, "quota_duration": 86_400}}]}),
            ))
        }
        _ => Err(unknown_node(&node)),
    }
}

fn own_instagram(world: &World, record: &Token, ig: &str) -> Result<(), GraphFault> {
    let owned = world.pages.iter().any(|page| {
        page.owner == record.user_id && page.instagram_business_account.as_deref() == Some(ig)
    });
    if owned {
        Ok(())
    } else {
        Err(unknown_node(ig))
    }
}

/// The media file a URL names, if the sandbox serves it: `(name, is_video)`.
fn served_media(url: &str) -> Option<bool> {
    let name = url.rsplit_once("/media/")?.1;
    MEDIA
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, content_type)| content_type.starts_with("video/"))
}

fn media_failed(url: &str) -> GraphFault {
    GraphFault::new(
        400,
        9004,
        Some(2_207_052),
        format!("Media download has failed. The media URI doesn't meet our requirements: {url}"),
    )
}

async fn create_edge(
    State(meta): State<MetaControl>,
    Path((node, edge)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> GraphResult {
    let p = params(query.as_deref(), &headers, &body);
    let get = |name: &str| p.get(name).cloned().unwrap_or_default();
    let mut world = meta.world();
    let record = world.authenticate(p.get("access_token").map(String::as_str))?;
    match edge.as_str() {
        "feed" | "photos" => {
            let page = world.pages.iter().find(|page| page.id == node).cloned();
            let Some(page) = page else {
                return Err(unknown_node(&node));
            };
            if record.kind != TokenKind::Page || record.page_id.as_deref() != Some(node.as_str()) {
                return Err(GraphFault::new(403, 200, None, "(#200) If posting to a page, requires both pages_read_engagement and pages_manage_posts as an admin with sufficient administrative permission"));
            }
            permission(&record, "pages_manage_posts")?;
            if !page.tasks.iter().any(|t| t == "CREATE_CONTENT") {
                return Err(GraphFault::new(
                    403,
                    200,
                    None,
                    "(#200) The user must be able to perform CREATE_CONTENT on the Page",
                ));
            }
            if edge == "photos" {
                let url = get("url");
                if served_media(&url) != Some(false) {
                    return Err(GraphFault::new(
                        400,
                        324,
                        None,
                        format!("(#324) Missing or invalid image file: {url}"),
                    ));
                }
                let photo_id = world.id();
                world.photos.insert(
                    photo_id.clone(),
                    Photo {
                        page_id: node.clone(),
                        url: url.clone(),
                    },
                );
                if get("published") == "false" {
                    return Ok(Json(json!({"id": photo_id})));
                }
                let post_id = format!("{node}_{}", world.id());
                world.posts.push(FacebookPost {
                    id: post_id.clone(),
                    page_id: node,
                    message: get("caption"),
                    link: None,
                    photos: vec![url],
                });
                return Ok(Json(json!({"id": photo_id, "post_id": post_id})));
            }
            let mut photos = Vec::new();
            for i in 0.. {
                let Some(attached) = p.get(&format!("attached_media[{i}]")) else {
                    break;
                };
                let fbid = serde_json::from_str::<Value>(attached)
                    .ok()
                    .and_then(|v| v["media_fbid"].as_str().map(String::from))
                    .unwrap_or_default();
                match world.photos.get(&fbid) {
                    Some(photo) if photo.page_id == node => photos.push(photo.url.clone()),
                    _ => {
                        return Err(GraphFault::new(
                            400,
                            100,
                            None,
                            format!(
                            "(#100) attached_media[{i}] is not an unpublished photo of this Page"
                        ),
                        ))
                    }
                }
            }
            let message = get("message");
            let link = p.get("link").cloned().filter(|l| !l.is_empty());
            if message.is_empty() && link.is_none() && photos.is_empty() {
                return Err(GraphFault::new(
                    400,
                    100,
                    None,
                    "(#100) Missing message or attachment",
                ));
            }
            if world.posts.iter().any(|post| {
                post.page_id == node
                    && !message.is_empty()
                    && post.message == message
                    && post.link == link
                    && post.photos == photos
            }) {
                return Err(GraphFault::new(
                    400,
                    506,
                    None,
                    "(#506) Duplicate status message",
                ));
            }
            let post_id = format!("{node}_{}", world.id());
            world.posts.push(FacebookPost {
                id: post_id.clone(),
                page_id: node,
                message,
                link,
                photos,
            });
            Ok(Json(json!({"id": post_id})))
        }
        "media" => {
            own_instagram(&world, &record, &node)?;
            permission(&record, "instagram_content_publish")?;
            let kind = world
                .instagram
                .iter()
                .find(|a| a.id == node)
                .map(|a| a.kind);
            let media_type = get("media_type");
            let carousel_item = get("is_carousel_item") == "true";
            let mut urls = Vec::new();
            let media_type = match media_type.as_str() {
                "CAROUSEL" => {
                    let children: Vec<String> = get("children")
                        .split(',')
                        .map(|c| c.trim().to_owned())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if !(2..=10).contains(&children.len()) {
                        return Err(GraphFault::new(
                            400,
                            100,
                            Some(2_207_028),
                            "The carousel must have between 2 and 10 items.",
                        ));
                    }
                    for child in &children {
                        match world.containers.get(child) {
                            Some(c)
                                if c.carousel_item
                                    && c.ig_user_id == node
                                    && c.status == "FINISHED" =>
                            {
                                urls.extend(c.urls.clone())
                            }
                            _ => {
                                return Err(GraphFault::new(
                                    400,
                                    100,
                                    None,
                                    format!(
                                    "(#100) Carousel child {child} is not a finished carousel item"
                                ),
                                ))
                            }
                        }
                    }
                    "CAROUSEL"
                }
                "STORIES" => {
                    if kind != Some(IgKind::Business) {
                        return Err(GraphFault::new(
                            400,
                            10,
                            None,
                            "(#10) Stories can only be published by Instagram business accounts.",
                        ));
                    }
                    let url = if p.contains_key("video_url") {
                        get("video_url")
                    } else {
                        get("image_url")
                    };
                    if served_media(&url).is_none() {
                        return Err(media_failed(&url));
                    }
                    urls.push(url);
                    "STORIES"
                }
                "REELS" | "VIDEO" => {
                    let url = get("video_url");
                    if served_media(&url) != Some(true) {
                        return Err(media_failed(&url));
                    }
                    urls.push(url);
                    if media_type == "VIDEO" {
                        "VIDEO"
                    } else {
                        "REELS"
                    }
                }
                "" => {
                    let url = get("image_url");
                    if served_media(&url) != Some(false) {
                        return Err(media_failed(&url));
                    }
                    urls.push(url);
                    "IMAGE"
                }
                other => {
                    return Err(GraphFault::new(
                        400,
                        100,
                        None,
                        format!("(#100) Unsupported media_type {other}"),
                    ))
                }
            };
            let caption = get("caption");
            if caption.chars().count() > 2200 {
                return Err(GraphFault::new(
                    400,
                    100,
                    Some(2_207_010),
                    "The caption is too long.",
                ));
            }
            let id = world.id();
            let polls_left = world.polls_to_finish;
            world.containers.insert(
                id.clone(),
                Container {
                    ig_user_id: node,
                    media_type: media_type.to_owned(),
                    caption,
                    urls,
                    carousel_item,
                    polls_left,
                    status: "IN_PROGRESS",
                },
            );
            Ok(Json(json!({"id": id})))
        }
        "media_publish" => {
            own_instagram(&world, &record, &node)?;
            permission(&record, "instagram_content_publish")?;
            let since = unix_now().saturating_sub(86_400);
            let used = world
                .publishes
                .iter()
                .filter(|(id, at)| *id == node && *at > since)
                .count() as u64;
            if used >= world.quota_total {
                return Err(GraphFault::new(400, 9, Some(2_207_042), "(#9) Application request limit reached: you reached the maximum number of posts allowed in 24 hours."));
            }
            let creation = get("creation_id");
            let container = match world.containers.get(&creation) {
                Some(c) if c.ig_user_id == node && !c.carousel_item => c.clone(),
                _ => return Err(unknown_node(&creation)),
            };
            match container.status {
                "FINISHED" => {}
                "PUBLISHED" => return Err(GraphFault::new(400, 100, None, "(#100) The container has already been published.")),
                _ => return Err(GraphFault::new(400, 9007, Some(2_207_027), "Media ID is not available. The media is not ready for publishing, please wait for a moment.")),
            }
            if let Some(c) = world.containers.get_mut(&creation) {
                c.status = "PUBLISHED";
            }
            let id = world.id();
            world.publishes.push((node.clone(), unix_now()));
            world.media.push(InstagramMedia {
                id: id.clone(),
                ig_user_id: node,
                media_type: container.media_type,
                caption: container.caption,
                urls: container.urls,
                permalink: format!("https://www.instagram.com/p/{}/", random_token(8)),
            });
            Ok(Json(json!({"id": id})))
        }
        _ => Err(unknown_node(&node)),
    }
}

async fn delete_edge(
    State(meta): State<MetaControl>,
    Path((node, edge)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> GraphResult {
    let p = params(query.as_deref(), &headers, &[]);
    let mut world = meta.world();
    let record = world.authenticate(p.get("access_token").map(String::as_str))?;
    if edge != "permissions"
        || !(node == "me" || node == record.user_id)
        || record.kind == TokenKind::Page
    {
        return Err(unknown_node(&node));
    }
    for token in world
        .tokens
        .values_mut()
        .filter(|t| t.user_id == record.user_id && t.client_id == record.client_id)
    {
        token.dead = Some(Some(458));
    }
    world
        .revocations
        .push((record.client_id.clone(), record.user_id.clone()));
    Ok(Json(json!({"success": true})))
}
