//! LinkedIn simulated: OAuth 2.0 authorization code without PKCE (client credentials in
//! the form body), 60-day access tokens, no refresh token for self-serve apps and
//! non-rotating 365-day refresh tokens for partner apps, `/v2/userinfo`, the versioned
//! `/rest` API (organizationAcls, organizations, posts, images) — and [`LinkedinControl`],
//! the handle tests and the demo use to act as LinkedIn or as its members.
//!
//! Routes, relative to the `/linkedin` prefix (the engine is configured with
//! `auth_url = {base}/linkedin/oauth/v2/authorization`, `token_url =
//! {base}/linkedin/oauth/v2/accessToken`, `revoke_url = {base}/linkedin/oauth/v2/revoke`,
//! `api_base = {base}/linkedin`):
//!
//! | route | what |
//! |---|---|
//! | `GET /oauth/v2/authorization` | checks the request, shows the login-and-consent form |
//! | `POST /oauth/v2/authorization` | the form: `username`, `password`, hidden fields, `decision=authorize\|cancel` |
//! | `POST /oauth/v2/accessToken` | `authorization_code` and (partner apps) `refresh_token`; `client_id`/`client_secret` in the body |
//! | `POST /oauth/v2/revoke` | `client_id`, `client_secret`, `token` |
//! | `GET /v2/userinfo` | the member (OpenID Connect) |
//! | `GET /rest/organizationAcls?q=roleAssignee` | the member's organisation roles |
//! | `GET /rest/organizations/{id}` | an organisation's name |
//! | `POST /rest/posts` | publish; 201 with the post URN in `x-restli-id` |
//! | `POST /rest/images?action=initializeUpload` | an upload URL and image URN |
//! | `PUT /dms-uploads/{id}` | the image bytes |
//!
//! Every `/rest` call must carry `LinkedIn-Version: YYYYMM` (an active version) and
//! `X-Restli-Protocol-Version: 2.0.0`. Errors use LinkedIn's body
//! `{"status","serviceErrorCode","code","message"}`; 429s carry no rate-limit headers,
//! as on LinkedIn.
//!
//! The commentary of a post is stored as received, and beside it what readers would
//! see: LinkedIn's "little" format read back, escapes removed, and cut at the first
//! reserved character left unescaped — the silent truncation LinkedIn is known for
//! (stricter than LinkedIn, which reads a well-formed mention or hashtag instead).
//!
//! Controls, under `/sandbox/linkedin`: `GET /state`, `GET /posts`,
//! `POST /members/{sub}/remove-role {"organization"}`, `POST /partner {"enabled"}`,
//! the shared grant controls (`POST /users/{id}/revoke`, `/users/{id}/expire`,
//! `PUT /access-token-lifetime`, `GET /token-requests`, `/revoked-tokens`) where `{id}` is the member's `sub` and revoking also ends partner refresh
//! tokens, and the shared fault controls (`POST /fail`, `/stall`,
//! `/drop`, `/garble`, `/rate-limit`, `DELETE /faults`, which also disarms
//! [`LinkedinControl::reject_next_posts`]).
//!
//! Not simulated: videos and documents, mentions and hashtag templates (read as plain
//! text), `introspectToken`, the ID token of OpenID Connect, daily quotas (only armed
//! 429s), paging links.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::control::{fault_controls, grant_controls, read_control, ControlBody, Shared};
use super::faults::{inject, FaultPoint, Faults};
use super::oauth::{
    self, deadline, no_store, random_token, token_fingerprint, AccessRejection, AuthorizeRejection,
    AuthorizeRequest, ConsentFlow, OAuthApp, TokenOutcome, TokenOwner, TokenRequest,
};
use super::SandboxError;

/// LinkedIn access tokens live 60 days.
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(5_184_000);
/// Partner refresh tokens live 365 days from the first consent.
const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(31_536_000);
/// LinkedIn's authorization codes live 30 minutes.
const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Upload URLs LinkedIn hands out are valid for about a day.
const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Body cap on the upload route.
const UPLOAD_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// The oldest `LinkedIn-Version` still served (versions are sunset after about a year).
const OLDEST_ACTIVE_VERSION: u32 = 202_507;
const MAX_COMMENTARY: usize = 3000;
const MAX_MULTI_IMAGES: usize = 20;

/// The scopes LinkedIn knows that an app like this one could ask for.
const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "w_member_social",
    "w_organization_social",
    "r_organization_social",
    "r_organization_admin",
    "rw_organization_admin",
];

/// Organisation roles that may post.
const POSTING_ROLES: &[&str] = &[
    "ADMINISTRATOR",
    "DIRECT_SPONSORED_CONTENT_POSTER",
    "CONTENT_ADMIN",
];

/// Little's reserved characters.
const RESERVED: &[char] = &[
    '\\', '|', '{', '}', '@', '[', ']', '(', ')', '<', '>', '#', '*', '_', '~',
];

/// A simulated LinkedIn member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedinMember {
    /// The OpenID `sub`; the member's URN is `urn:li:person:{sub}`.
    pub sub: String,
    /// The login name on the consent page (LinkedIn uses e-mail addresses; the sandbox
    /// keeps a short name).
    pub username: String,
    pub given_name: String,
    pub family_name: String,
}

impl LinkedinMember {
    pub fn urn(&self) -> String {
        format!("urn:li:person:{}", self.sub)
    }

    pub fn name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

/// A simulated organisation (company page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedinOrganization {
    pub id: u64,
    pub name: String,
    pub vanity_name: String,
}

impl LinkedinOrganization {
    pub fn urn(&self) -> String {
        format!("urn:li:organization:{}", self.id)
    }
}

/// One role of a member on an organisation (an organizationAcl).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedinRole {
    /// The member's `sub`.
    pub member: String,
    /// `urn:li:organization:{id}`.
    pub organization: String,
    /// ADMINISTRATOR, DIRECT_SPONSORED_CONTENT_POSTER, CONTENT_ADMIN, ANALYST…
    pub role: String,
    /// APPROVED, REQUESTED, REVOKED.
    pub state: String,
}

/// A post published on the simulated LinkedIn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkedinPost {
    /// `urn:li:share:{n}`, as sent in `x-restli-id`.
    pub urn: String,
    /// The person or organisation URN it was published as.
    pub author: String,
    /// The member whose token published it.
    pub published_by: String,
    /// The `commentary` exactly as received (little format, escapes and all).
    pub commentary: String,
    /// What readers see: escapes removed, cut at the first unescaped reserved character.
    pub rendered: String,
    pub visibility: String,
    /// Image URNs, in order.
    pub images: Vec<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: OffsetDateTime,
}

fn rfc3339<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = at.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

/// Handle on LinkedIn's simulated state, shared with the server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LinkedinControl {
    /// Everything the platform knows, shared with its handlers.
    world: Shared<World>,
    /// Armed faults, shared with the middleware that applies them; the handle derefs
    /// to them.
    faults: Faults,
}

fault_controls!(LinkedinControl, Some(Duration::from_secs(24 * 60 * 60)));
grant_controls!(
    LinkedinControl,
    World,
    "linkedin",
    owner = |world, sub| Ok(world.require_member(sub)?.sub.clone()),
    revoke_own = World::revoke_partner_refresh_tokens
);

impl LinkedinControl {
    pub(crate) fn new() -> Self {
        LinkedinControl {
            world: Shared::new(World::new()),
            faults: Faults::default(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock()
    }

    /// Whether the app is an approved partner with programmatic refresh tokens. Off by
    /// default: a self-serve app, which gets no refresh token.
    pub fn set_partner_app(&self, partner: bool) {
        self.world().partner = partner;
    }

    /// Lifetime of partner refresh tokens issued from now on (default 365 days).
    pub fn set_refresh_token_lifetime(&self, lifetime: Duration) {
        self.world().refresh_lifetime = lifetime;
    }

    /// Every member.
    pub fn members(&self) -> Vec<LinkedinMember> {
        self.world().members.clone()
    }

    /// Every organisation role.
    pub fn roles(&self) -> Vec<LinkedinRole> {
        self.world().roles.clone()
    }

    /// The member removed the app in their settings: every token of theirs stops
    /// working (`REVOKED_ACCESS_TOKEN`), partner refresh tokens included. Returns how
    /// many were still usable. LinkedIn's name for the shared `revoke_user_grants`.
    pub fn revoke_member_grants(&self, sub: &str) -> Result<usize, SandboxError> {
        self.revoke_user_grants(sub)
    }

    /// The member loses every role on the organisation: posts and uploads as it answer
    /// 403. Returns how many roles were removed.
    pub fn remove_org_role(&self, sub: &str, organization: &str) -> Result<usize, SandboxError> {
        let mut world = self.world();
        world.require_member(sub)?;
        let before = world.roles.len();
        world
            .roles
            .retain(|r| !(r.member == sub && r.organization == organization));
        Ok(before - world.roles.len())
    }

    /// The next `calls` API calls answer 429 (LinkedIn sends no rate-limit headers, so
    /// unlike the shared [`Faults::rate_limit_next`] this takes no reset time).
    pub fn rate_limit_next(&self, calls: u32) {
        self.faults.rate_limit_next(calls, 0);
    }

    /// Disarms every pending fault, rejected posts included; takes the place of the
    /// shared [`Faults::clear_faults`] for LinkedIn.
    pub fn clear_faults(&self) {
        self.faults.clear_faults();
        self.world().rejected_posts = None;
    }

    /// The next `calls` posts answer 422 with `message`, as LinkedIn refuses content it
    /// will not publish (its reasons are not all documented).
    pub fn reject_next_posts(&self, calls: u32, message: impl Into<String>) {
        self.world().rejected_posts = (calls > 0).then(|| (calls, message.into()));
    }

    /// Every post, oldest first.
    pub fn posts(&self) -> Vec<LinkedinPost> {
        self.world().posts.clone()
    }

    /// How many bytes each uploaded image received, by image URN.
    pub fn uploaded_images(&self) -> HashMap<String, usize> {
        self.world()
            .images
            .iter()
            .filter_map(|(urn, image)| image.bytes.map(|bytes| (urn.clone(), bytes)))
            .collect()
    }
}

/// A partner refresh token: not rotated, lapses a fixed time after the first consent.
struct RefreshRecord {
    member: String,
    client_id: String,
    scopes: Vec<String>,
    expires_at: Instant,
    revoked: bool,
}

/// An image upload slot.
struct Image {
    owner: String,
    /// Bytes received, once the PUT arrived.
    bytes: Option<usize>,
}

/// Everything LinkedIn knows. Behind one mutex no handler holds across an await.
pub(crate) struct World {
    /// The app registration and what was granted to it, partner refresh tokens aside.
    app: OAuthApp,
    partner: bool,
    refresh_lifetime: Duration,
    members: Vec<LinkedinMember>,
    organizations: Vec<LinkedinOrganization>,
    roles: Vec<LinkedinRole>,
    refresh: HashMap<String, RefreshRecord>,
    posts: Vec<LinkedinPost>,
    images: HashMap<String, Image>,
    /// Posts still to refuse with 422, and the message.
    rejected_posts: Option<(u32, String)>,
    last_id: u64,
}

impl World {
    /// Partner refresh tokens live outside the shared token store (they do not
    /// rotate): a member removing the app ends them too. Returns how many were usable.
    fn revoke_partner_refresh_tokens(&mut self, sub: &str) -> usize {
        let mut count = 0;
        for record in self.refresh.values_mut() {
            if record.member == sub && !record.revoked {
                record.revoked = true;
                count += 1;
            }
        }
        count
    }

    fn new() -> Self {
        World {
            app: OAuthApp::new("linkedin", DEFAULT_ACCESS_LIFETIME, DEFAULT_CODE_LIFETIME),
            partner: false,
            refresh_lifetime: DEFAULT_REFRESH_LIFETIME,
            members: vec![
                LinkedinMember {
                    sub: "li-member-1".into(),
                    username: "jane_writes".into(),
                    given_name: "Jane".into(),
                    family_name: "Writes".into(),
                },
                LinkedinMember {
                    sub: "li-member-2".into(),
                    username: "other_member".into(),
                    given_name: "Other".into(),
                    family_name: "Member".into(),
                },
            ],
            organizations: vec![
                LinkedinOrganization {
                    id: 5_515_715,
                    name: "Jane Writes Books Ltd".into(),
                    vanity_name: "jane-writes-books".into(),
                },
                LinkedinOrganization {
                    id: 2_414_183,
                    name: "Devtestco".into(),
                    vanity_name: "devtestco".into(),
                },
            ],
            roles: vec![
                LinkedinRole {
                    member: "li-member-1".into(),
                    organization: "urn:li:organization:5515715".into(),
                    role: "ADMINISTRATOR".into(),
                    state: "APPROVED".into(),
                },
                // A role that may read analytics but not post: listed by LinkedIn, not
                // a place to publish.
                LinkedinRole {
                    member: "li-member-1".into(),
                    organization: "urn:li:organization:2414183".into(),
                    role: "ANALYST".into(),
                    state: "APPROVED".into(),
                },
            ],
            refresh: HashMap::new(),
            posts: Vec::new(),
            images: HashMap::new(),
            rejected_posts: None,
            last_id: 0,
        }
    }

    fn require_member(&self, sub: &str) -> Result<&LinkedinMember, SandboxError> {
        self.members
            .iter()
            .find(|m| m.sub == sub)
            .ok_or_else(|| SandboxError::UnknownUser(sub.to_owned()))
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        7_400_000_000_000_000_000 + self.last_id
    }

    /// Whether `member` may act as `author` (post, upload) with `scopes`.
    fn may_author(&self, member: &LinkedinMember, scopes: &[String], author: &str) -> bool {
        let has = |scope: &str| scopes.iter().any(|s| s == scope);
        if author.starts_with("urn:li:person:") {
            return author == member.urn() && has("w_member_social");
        }
        author.starts_with("urn:li:organization:")
            && has("w_organization_social")
            && self.roles.iter().any(|r| {
                r.member == member.sub
                    && r.organization == author
                    && r.state == "APPROVED"
                    && POSTING_ROLES.contains(&r.role.as_str())
            })
    }

    /// Authenticates an API call and applies armed rate limits.
    fn admit(
        &mut self,
        headers: &HeaderMap,
        faults: &Faults,
    ) -> Result<(TokenOwner, LinkedinMember), Box<Response>> {
        let Some(token) = oauth::bearer_token(headers) else {
            return Err(Box::new(api_error(
                StatusCode::UNAUTHORIZED,
                Some(65600),
                "INVALID_ACCESS_TOKEN",
                "Invalid access token",
            )));
        };
        let owner = self.app.tokens.authenticate(token).map_err(|rejection| {
            Box::new(match rejection {
                AccessRejection::Revoked => api_error(
                    StatusCode::UNAUTHORIZED,
                    Some(65601),
                    "REVOKED_ACCESS_TOKEN",
                    "The token used in the request has been revoked by the user",
                ),
                AccessRejection::Expired => api_error(
                    StatusCode::UNAUTHORIZED,
                    Some(65602),
                    "EXPIRED_ACCESS_TOKEN",
                    "The token used in the request has expired",
                ),
                AccessRejection::Unknown => api_error(
                    StatusCode::UNAUTHORIZED,
                    Some(65600),
                    "INVALID_ACCESS_TOKEN",
                    "Invalid access token",
                ),
            })
        })?;
        if faults.take_rate_limit().is_some() {
            return Err(Box::new(api_error(
                StatusCode::TOO_MANY_REQUESTS,
                Some(101),
                "TOO_MANY_REQUESTS",
                "Resource level throttle MEMBER DAY limit for calls to this resource is reached.",
            )));
        }
        let member = self
            .require_member(&owner.user_id)
            .map_err(|_| {
                Box::new(api_error(
                    StatusCode::UNAUTHORIZED,
                    Some(65600),
                    "INVALID_ACCESS_TOKEN",
                    "Invalid access token",
                ))
            })?
            .clone();
        Ok((owner, member))
    }
}

/// LinkedIn's error body.
fn api_error(status: StatusCode, service_code: Option<u32>, code: &str, message: &str) -> Response {
    let mut body = json!({"status": status.as_u16(), "message": message});
    if let Some(map) = body.as_object_mut() {
        if let Some(service_code) = service_code {
            map.insert("serviceErrorCode".into(), json!(service_code));
        }
        if !code.is_empty() {
            map.insert("code".into(), json!(code));
        }
    }
    (status, Json(body)).into_response()
}

fn access_denied(what: &str) -> Response {
    api_error(
        StatusCode::FORBIDDEN,
        Some(100),
        "ACCESS_DENIED",
        &format!("Not enough permissions to access: {what}"),
    )
}

fn unprocessable(message: impl Into<String>) -> Response {
    let message = message.into();
    api_error(StatusCode::UNPROCESSABLE_ENTITY, None, "", &message)
}

/// Checks the headers every `/rest` call needs.
fn check_rest_headers(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(version) = headers
        .get("linkedin-version")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return Err(Box::new(api_error(
            StatusCode::BAD_REQUEST,
            None,
            "VERSION_MISSING",
            "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
        )));
    };
    let parsed = (version.len() == 6)
        .then(|| version.parse::<u32>().ok())
        .flatten()
        .filter(|v| (1..=12).contains(&(v % 100)));
    match parsed {
        None => {
            return Err(Box::new(api_error(
                StatusCode::BAD_REQUEST,
                None,
                "INVALID_VERSION",
                &format!("Invalid version format {version:?}; use YYYYMM."),
            )))
        }
        Some(v) if v < OLDEST_ACTIVE_VERSION => {
            return Err(Box::new(api_error(
                StatusCode::UPGRADE_REQUIRED,
                None,
                "NONEXISTENT_VERSION",
                &format!("Requested version {version} is not active"),
            )))
        }
        Some(_) => {}
    }
    let protocol = headers
        .get("x-restli-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if protocol != Some("2.0.0") {
        return Err(Box::new(api_error(
            StatusCode::BAD_REQUEST,
            None,
            "",
            "X-Restli-Protocol-Version must be 2.0.0 for this resource.",
        )));
    }
    Ok(())
}

/// What readers see of a little-format commentary: escapes removed, cut at the first
/// reserved character left unescaped. Also returns the full unescaped length, which the
/// 3,000-character limit counts.
fn render_little(commentary: &str) -> (String, usize) {
    let mut rendered = String::with_capacity(commentary.len());
    let mut full = String::with_capacity(commentary.len());
    let mut truncated = false;
    let mut chars = commentary.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                full.push(next);
                if !truncated {
                    rendered.push(next);
                }
                continue;
            }
        }
        if RESERVED.contains(&c) {
            truncated = true;
        }
        full.push(c);
        if !truncated {
            rendered.push(c);
        }
    }
    (rendered, full.encode_utf16().count())
}

fn unix_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// LinkedIn's routes, to be mounted under `/linkedin`.
pub(crate) fn platform_routes(linkedin: &LinkedinControl) -> Router {
    let fault_point = FaultPoint {
        faults: linkedin.faults.clone(),
        render_failure: server_error,
    };
    let consent = Router::new().route(
        "/oauth/v2/authorization",
        get(authorize_page).post(authorize_decision),
    );
    let api = Router::new()
        .route("/oauth/v2/accessToken", post(token))
        .route("/oauth/v2/revoke", post(revoke))
        .route("/v2/userinfo", get(userinfo))
        .route("/rest/organizationAcls", get(organization_acls))
        .route("/rest/organizations/{id}", get(organization))
        .route("/rest/posts", post(create_post))
        .route("/rest/images", post(images_action))
        .route(
            "/dms-uploads/{id}",
            put(upload_image).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route_layer(middleware::from_fn_with_state(fault_point, inject));
    consent.merge(api).with_state(linkedin.clone())
}

/// An injected 5xx, in LinkedIn's error shape.
fn server_error(status: StatusCode) -> Response {
    let message = status.canonical_reason().unwrap_or("Server Error");
    api_error(status, None, "", message)
}

// ---------------------------------------------------------------------------------------
// Authorization

/// Exact match against the registered list; with none registered, any absolute http(s)
/// URL without a fragment.
fn redirect_uri_is_allowed(uri: &str, registered: &[String]) -> bool {
    if !registered.is_empty() {
        return registered.iter().any(|r| r == uri);
    }
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !uri.contains('#'))
}

/// Checks an authorization request as LinkedIn does: no PKCE, `state` optional.
fn check_authorize(
    params: &HashMap<String, String>,
    world: &World,
) -> Result<AuthorizeRequest, AuthorizeRejection> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    match get("client_id") {
        None => {
            return Err(AuthorizeRejection::Page(
                "The request has no client_id.".into(),
            ))
        }
        Some(id) if id != world.app.client_id => {
            return Err(AuthorizeRejection::Page(format!(
                "The application with client_id {id} could not be found."
            )))
        }
        Some(_) => {}
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return Err(AuthorizeRejection::Page(
            "The request has no redirect_uri.".into(),
        ));
    };
    if !redirect_uri_is_allowed(redirect_uri, &world.app.redirect_uris) {
        return Err(AuthorizeRejection::Page(
            "The redirect_uri does not match the registered value".into(),
        ));
    }
    let state = get("state").map(str::to_owned);
    let refuse = |error: &'static str, description: String| AuthorizeRejection::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        error,
        description,
        state: state.clone(),
    };
    if get("response_type") != Some("code") {
        return Err(refuse(
            "invalid_request",
            "response_type must be code".into(),
        ));
    }
    let scopes: Vec<String> = get("scope")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(refuse("invalid_scope_error", "The scope is missing".into()));
    }
    if let Some(unknown) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(refuse(
            "unauthorized_scope_error",
            format!("Scope \"{unknown}\" is not authorized for your application"),
        ));
    }
    Ok(AuthorizeRequest {
        client_id: world.app.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state: state.unwrap_or_default(),
        // LinkedIn's web flow has no PKCE; the shared consent form carries it empty.
        code_challenge: String::new(),
    })
}

/// LinkedIn's own error code for a member who refuses.
const CONSENT: ConsentFlow = ConsentFlow {
    platform: "LinkedIn",
    action: "/linkedin/oauth/v2/authorization",
    denied: &[
        ("error", "user_cancelled_authorize"),
        ("error_description", "The user cancelled the authorization"),
    ],
};

/// `GET /oauth/v2/authorization`.
async fn authorize_page(
    State(linkedin): State<LinkedinControl>,
    RawQuery(query): RawQuery,
) -> Response {
    let world = linkedin.world();
    CONSENT.page(query.as_deref(), |params| check_authorize(params, &world))
}

/// `POST /oauth/v2/authorization`: the member signed in and chose Allow or Cancel.
async fn authorize_decision(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // No PKCE on LinkedIn: the request, and so the code, carries no challenge.
    CONSENT.decide_with_code(
        &mut *linkedin.world(),
        &headers,
        &body,
        |world, form| check_authorize(form, world),
        |world, username| {
            let member = world
                .members
                .iter()
                .find(|m| m.username.eq_ignore_ascii_case(username))?;
            Some(member.sub.clone())
        },
        |_| Vec::new(),
    )
}

// ---------------------------------------------------------------------------------------
// Token and revoke endpoints

/// A token-endpoint refusal, in LinkedIn's RFC 6749 words.
fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        no_store(),
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn client_refused() -> Response {
    token_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed",
    )
}

impl World {
    fn client_matches(&self, form: &HashMap<String, String>) -> bool {
        form.get("client_id") == Some(&self.app.client_id)
            && form
                .get("client_secret")
                .is_some_and(|s| s == self.app.client_secret.expose())
    }

    /// One token request; the log entry's outcome and credential are filled in.
    fn token(&mut self, form: &HashMap<String, String>, entry: &mut TokenRequest) -> Response {
        if !self.client_matches(form) {
            entry.outcome = TokenOutcome::UnauthorizedClient;
            return client_refused();
        }
        let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
        match entry.grant_type.as_str() {
            "authorization_code" => {
                let (Some(code), Some(redirect_uri)) = (param("code"), param("redirect_uri"))
                else {
                    entry.outcome = TokenOutcome::InvalidRequest;
                    return token_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "A required parameter \"code\" or \"redirect_uri\" is missing",
                    );
                };
                entry.credential = Some(token_fingerprint(code));
                let now = Instant::now();
                // Single use; LinkedIn revokes nothing when a code is replayed.
                let usable = self
                    .app
                    .codes
                    .redeem(code, &self.app.client_id, redirect_uri, "")
                    .ok()
                    .map(|grant| (grant.user_id, grant.scopes));
                let Some((member, scopes)) = usable else {
                    entry.outcome = TokenOutcome::InvalidCode;
                    return token_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Unable to retrieve access token: appid/redirect uri/code verifier does \
                         not match authorization code. Or authorization code expired. Or external \
                         member binding exists",
                    );
                };
                let issued = self.app.tokens.issue(
                    &member,
                    &self.app.client_id,
                    scopes.clone(),
                    self.app.access_lifetime,
                    false,
                );
                let mut body = json!({
                    "access_token": issued.access_token,
                    "expires_in": issued.expires_in,
                    "scope": scopes.join(","),
                    "token_type": "Bearer",
                });
                if self.partner {
                    let refresh_token = random_token(48);
                    self.refresh.insert(
                        refresh_token.clone(),
                        RefreshRecord {
                            member: member.clone(),
                            client_id: self.app.client_id.clone(),
                            scopes,
                            expires_at: deadline(now, self.refresh_lifetime),
                            revoked: false,
                        },
                    );
                    body["refresh_token"] = json!(refresh_token);
                    body["refresh_token_expires_in"] = json!(self.refresh_lifetime.as_secs());
                }
                entry.outcome = TokenOutcome::Issued;
                tracing::info!(platform = "linkedin", member, "code exchanged for tokens");
                (no_store(), Json(body)).into_response()
            }
            "refresh_token" => {
                self.app.refresh_calls += 1;
                let Some(refresh_token) = param("refresh_token") else {
                    entry.outcome = TokenOutcome::InvalidRequest;
                    return token_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "A required parameter \"refresh_token\" is missing",
                    );
                };
                entry.credential = Some(token_fingerprint(refresh_token));
                if !self.partner {
                    entry.outcome = TokenOutcome::UnknownRefreshToken;
                    return token_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Programmatic refresh tokens are not enabled for this application",
                    );
                }
                let now = Instant::now();
                let outcome = match self.refresh.get(refresh_token) {
                    None => Err(TokenOutcome::UnknownRefreshToken),
                    Some(r) if r.revoked || r.expires_at <= now => {
                        Err(TokenOutcome::RefreshTokenRevoked)
                    }
                    Some(r) if r.client_id != self.app.client_id => {
                        Err(TokenOutcome::RefreshTokenOfAnotherClient)
                    }
                    Some(r) => Ok((
                        r.member.clone(),
                        r.scopes.clone(),
                        r.expires_at.saturating_duration_since(now),
                    )),
                };
                let (member, scopes, remaining) = match outcome {
                    Ok(found) => found,
                    Err(outcome) => {
                        entry.outcome = outcome;
                        return token_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            "The provided authorization grant or refresh token is invalid, \
                             expired or revoked",
                        );
                    }
                };
                let issued = self.app.tokens.issue(
                    &member,
                    &self.app.client_id,
                    scopes.clone(),
                    self.app.access_lifetime,
                    false,
                );
                entry.outcome = TokenOutcome::Issued;
                // The refresh token is not rotated, and its lifetime keeps running from
                // the first consent.
                (
                    no_store(),
                    Json(json!({
                        "access_token": issued.access_token,
                        "expires_in": issued.expires_in,
                        "refresh_token": refresh_token,
                        "refresh_token_expires_in": remaining.as_secs(),
                        "scope": scopes.join(","),
                        "token_type": "Bearer",
                    })),
                )
                    .into_response()
            }
            "" => {
                entry.outcome = TokenOutcome::InvalidRequest;
                token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "A required parameter \"grant_type\" is missing",
                )
            }
            _ => {
                entry.outcome = TokenOutcome::UnsupportedGrantType;
                token_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "grant_type must be authorization_code or refresh_token",
                )
            }
        }
    }
}

/// `POST /oauth/v2/accessToken`.
async fn token(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match oauth::parse_form(&headers, &body) {
        Ok(form) => form,
        Err(reason) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &reason.to_string(),
            )
        }
    };
    let mut entry = TokenRequest {
        grant_type: form.get("grant_type").cloned().unwrap_or_default(),
        credential: None,
        outcome: TokenOutcome::InvalidRequest,
    };
    let mut world = linkedin.world();
    let response = world.token(&form, &mut entry);
    world.app.token_log.push(entry);
    response
}

/// `POST /oauth/v2/revoke`: 200 with an empty body, also for unknown tokens.
async fn revoke(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match oauth::parse_form(&headers, &body) {
        Ok(form) => form,
        Err(reason) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &reason.to_string(),
            )
        }
    };
    let mut world = linkedin.world();
    if !world.client_matches(&form) {
        return client_refused();
    }
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"token\" is missing",
        );
    };
    world.app.tokens.revoke_token(token);
    if let Some(record) = world.refresh.get_mut(token) {
        record.revoked = true;
    }
    tracing::info!(platform = "linkedin", token = %token_fingerprint(token), "token revoked by the client");
    StatusCode::OK.into_response()
}

// ---------------------------------------------------------------------------------------
// API

/// `GET /v2/userinfo`.
async fn userinfo(State(linkedin): State<LinkedinControl>, headers: HeaderMap) -> Response {
    let mut world = linkedin.world();
    let (owner, member) = match world.admit(&headers, &linkedin.faults) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    if !owner.scopes.iter().any(|s| s == "openid") {
        return access_denied("userinfo.GET.NO_VERSION");
    }
    let mut body = json!({"sub": member.sub});
    if owner.scopes.iter().any(|s| s == "profile") {
        body["name"] = json!(member.name());
        body["given_name"] = json!(member.given_name);
        body["family_name"] = json!(member.family_name);
        body["picture"] = json!(format!(
            "https://media.licdn.com/dms/image/sandbox/{}",
            member.sub
        ));
        body["locale"] = json!({"country": "GB", "language": "en"});
    }
    Json(body).into_response()
}

/// `GET /rest/organizationAcls?q=roleAssignee[&role=][&state=][&start=][&count=]`.
async fn organization_acls(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refusal) = check_rest_headers(&headers) {
        return *refusal;
    }
    let mut world = linkedin.world();
    let (owner, member) = match world.admit(&headers, &linkedin.faults) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let params = match oauth::parse_query(query.as_deref()) {
        Ok(params) => params,
        Err(reason) => return api_error(StatusCode::BAD_REQUEST, None, "", &reason.to_string()),
    };
    if params.get("q").map(String::as_str) != Some("roleAssignee") {
        return api_error(
            StatusCode::BAD_REQUEST,
            None,
            "",
            "Invalid query: only q=roleAssignee is supported on this resource",
        );
    }
    if !owner
        .scopes
        .iter()
        .any(|s| s == "r_organization_admin" || s == "rw_organization_admin")
    {
        return access_denied("organizationAcls.FINDER-roleAssignee.20260501");
    }
    let number = |name: &str, default: usize| {
        params
            .get(name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let start = number("start", 0);
    let count = number("count", 10).min(100);
    let matching: Vec<&LinkedinRole> = world
        .roles
        .iter()
        .filter(|r| r.member == member.sub)
        .filter(|r| params.get("role").is_none_or(|role| *role == r.role))
        .filter(|r| params.get("state").is_none_or(|state| *state == r.state))
        .collect();
    let total = matching.len();
    let elements: Vec<Value> = matching
        .into_iter()
        .skip(start)
        .take(count)
        .map(|r| {
            json!({
                "roleAssignee": member.urn(),
                "state": r.state,
                "role": r.role,
                "organization": r.organization,
            })
        })
        .collect();
    Json(json!({
        "paging": {"start": start, "count": count, "links": [], "total": total},
        "elements": elements,
    }))
    .into_response()
}

/// `GET /rest/organizations/{id}`.
async fn organization(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refusal) = check_rest_headers(&headers) {
        return *refusal;
    }
    let mut world = linkedin.world();
    if let Err(refusal) = world.admit(&headers, &linkedin.faults) {
        return *refusal;
    }
    let found = id
        .parse::<u64>()
        .ok()
        .and_then(|id| world.organizations.iter().find(|o| o.id == id));
    match found {
        Some(org) => Json(json!({
            "id": org.id,
            "localizedName": org.name,
            "vanityName": org.vanity_name,
            "name": {"localized": {"en_US": org.name}, "preferredLocale": {"country": "US", "language": "en"}},
        }))
        .into_response(),
        None => api_error(StatusCode::NOT_FOUND, None, "", "Not Found"),
    }
}

/// `POST /rest/posts`.
async fn create_post(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    if let Err(refusal) = check_rest_headers(&headers) {
        return *refusal;
    }
    let mut world = linkedin.world();
    let (owner, member) = match world.admit(&headers, &linkedin.faults) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return unprocessable(rejection.body_text()),
    };
    let text = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
    for field in ["author", "visibility", "lifecycleState"] {
        if text(&format!("/{field}")).is_none() {
            return unprocessable(format!(
                "ERROR :: /{field} :: field is required but not found and has no default value"
            ));
        }
    }
    if body.get("distribution").is_none() {
        return unprocessable(
            "ERROR :: /distribution :: field is required but not found and has no default value",
        );
    }
    let author = text("/author").unwrap_or_default().to_owned();
    if !world.may_author(&member, &owner.scopes, &author) {
        return access_denied("partnerApiPostsExternal.CREATE.20260501");
    }
    let commentary = text("/commentary").unwrap_or_default().to_owned();
    let (rendered, length) = render_little(&commentary);
    if length > MAX_COMMENTARY {
        return unprocessable(format!(
            "ERROR :: /commentary :: length {length} exceeds maximum allowed {MAX_COMMENTARY}"
        ));
    }
    let images: Vec<String> = if let Some(id) = text("/content/media/id") {
        vec![id.to_owned()]
    } else if let Some(list) = body
        .pointer("/content/multiImage/images")
        .and_then(Value::as_array)
    {
        let ids: Vec<String> = list
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        if !(2..=MAX_MULTI_IMAGES).contains(&ids.len()) {
            return unprocessable(format!(
                "ERROR :: /content/multiImage/images :: a multi-image post takes 2 to {MAX_MULTI_IMAGES} images, not {}",
                ids.len()
            ));
        }
        ids
    } else {
        Vec::new()
    };
    if commentary.trim().is_empty() && images.is_empty() {
        return unprocessable("ERROR :: /commentary :: a post needs commentary or content");
    }
    if let Some(bad) = images.iter().find(|urn| {
        !world
            .images
            .get(urn.as_str())
            .is_some_and(|i| i.owner == author && i.bytes.is_some())
    }) {
        return unprocessable(format!(
            "ERROR :: /content :: image {bad} is not uploaded or belongs to another owner"
        ));
    }
    if let Some((left, message)) = world.rejected_posts.take() {
        if left > 1 {
            world.rejected_posts = Some((left - 1, message.clone()));
        }
        return unprocessable(message);
    }
    let urn = format!("urn:li:share:{}", world.next_id());
    let post = LinkedinPost {
        urn: urn.clone(),
        author,
        published_by: member.sub.clone(),
        commentary,
        rendered,
        visibility: text("/visibility").unwrap_or_default().to_owned(),
        images,
        created_at: OffsetDateTime::now_utc(),
    };
    tracing::info!(
        platform = "linkedin",
        urn,
        author = post.author,
        "post published"
    );
    world.posts.push(post);
    match HeaderValue::from_str(&urn) {
        Ok(value) => (
            StatusCode::CREATED,
            [(HeaderName::from_static("x-restli-id"), value)],
        )
            .into_response(),
        Err(_) => StatusCode::CREATED.into_response(),
    }
}

/// `POST /rest/images?action=initializeUpload`.
async fn images_action(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    if let Err(refusal) = check_rest_headers(&headers) {
        return *refusal;
    }
    let mut world = linkedin.world();
    let (owner, member) = match world.admit(&headers, &linkedin.faults) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let action = oauth::parse_query(query.as_deref())
        .ok()
        .and_then(|p| p.get("action").cloned());
    if action.as_deref() != Some("initializeUpload") {
        return api_error(
            StatusCode::BAD_REQUEST,
            None,
            "",
            "Unsupported action; use action=initializeUpload",
        );
    }
    let Some(image_owner) = body.ok().and_then(|Json(b)| {
        b.pointer("/initializeUploadRequest/owner")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) else {
        return unprocessable(
            "ERROR :: /initializeUploadRequest/owner :: field is required but not found",
        );
    };
    if !world.may_author(&member, &owner.scopes, &image_owner) {
        return access_denied("images.ACTION-initializeUpload.20260501");
    }
    let id = format!("D4E10AQ{}", world.next_id());
    let urn = format!("urn:li:image:{id}");
    world.images.insert(
        urn.clone(),
        Image {
            owner: image_owner,
            bytes: None,
        },
    );
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let expires = unix_millis_now() + u64::try_from(UPLOAD_URL_LIFETIME.as_millis()).unwrap_or(0);
    Json(json!({"value": {
        "uploadUrlExpiresAt": expires,
        "uploadUrl": format!("http://{host}/linkedin/dms-uploads/{id}"),
        "image": urn,
    }}))
    .into_response()
}

/// `PUT /dms-uploads/{id}`: the image's bytes.
async fn upload_image(
    State(linkedin): State<LinkedinControl>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut world = linkedin.world();
    if let Err(refusal) = world.admit(&headers, &linkedin.faults) {
        return *refusal;
    }
    if body.is_empty() {
        return api_error(StatusCode::BAD_REQUEST, None, "", "The upload is empty");
    }
    let urn = format!("urn:li:image:{id}");
    match world.images.get_mut(&urn) {
        Some(image) => {
            image.bytes = Some(body.len());
            tracing::info!(
                platform = "linkedin",
                urn,
                size = body.len(),
                "image uploaded"
            );
            StatusCode::CREATED.into_response()
        }
        None => api_error(StatusCode::NOT_FOUND, None, "", "Unknown upload"),
    }
}

// ---------------------------------------------------------------------------------------
// Controls

/// The `/sandbox/linkedin` control routes.
pub(crate) fn control_routes(linkedin: &LinkedinControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .route("/posts", get(control_posts))
        .route("/members/{sub}/remove-role", post(control_remove_role))
        .route("/partner", post(control_partner))
        .with_state(linkedin.clone())
}

async fn control_state(State(linkedin): State<LinkedinControl>) -> Json<Value> {
    let world = linkedin.world();
    Json(json!({
        "client_id": world.app.client_id,
        "partner_app": world.partner,
        "access_token_lifetime_secs": world.app.access_lifetime.as_secs(),
        "refresh_token_lifetime_secs": world.refresh_lifetime.as_secs(),
        "members": world.members,
        "organizations": world.organizations,
        "roles": world.roles,
        "posts": world.posts.len(),
        "refresh_calls": world.app.refresh_calls,
        "token_requests": world.app.token_log.len(),
        "pending_faults": linkedin.faults.pending_faults(),
    }))
}

async fn control_posts(State(linkedin): State<LinkedinControl>) -> Json<Vec<LinkedinPost>> {
    Json(linkedin.posts())
}

#[derive(Debug, Deserialize)]
struct RemoveRoleControl {
    organization: String,
}

async fn control_remove_role(
    State(linkedin): State<LinkedinControl>,
    Path(sub): Path<String>,
    body: ControlBody<RemoveRoleControl>,
) -> Result<Json<Value>, SandboxError> {
    let body = read_control(body)?;
    let removed = linkedin.remove_org_role(&sub, &body.organization)?;
    Ok(Json(
        json!({"sub": sub, "organization": body.organization, "removed_roles": removed}),
    ))
}

#[derive(Debug, Deserialize)]
struct PartnerControl {
    enabled: bool,
}

async fn control_partner(
    State(linkedin): State<LinkedinControl>,
    body: ControlBody<PartnerControl>,
) -> Result<Json<Value>, SandboxError> {
    let body = read_control(body)?;
    linkedin.set_partner_app(body.enabled);
    Ok(Json(json!({"partner_app": body.enabled})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_is_rendered_with_escapes_removed_and_cut_at_the_first_unescaped_reserved() {
        assert_eq!(
            render_little(r"New \(out now\) \#books"),
            ("New (out now) #books".to_owned(), 20)
        );
        assert_eq!(render_little("New (out now)").0, "New ");
        assert_eq!(render_little(r"a\\b").0, r"a\b");
    }

    #[test]
    fn rest_calls_need_an_active_version_and_the_protocol_header() {
        let mut headers = HeaderMap::new();
        assert!(check_rest_headers(&headers).is_err());
        headers.insert("linkedin-version", HeaderValue::from_static("202401"));
        headers.insert(
            "x-restli-protocol-version",
            HeaderValue::from_static("2.0.0"),
        );
        let old = check_rest_headers(&headers).unwrap_err();
        assert_eq!(old.status(), StatusCode::UPGRADE_REQUIRED);
        headers.insert("linkedin-version", HeaderValue::from_static("202605"));
        assert!(check_rest_headers(&headers).is_ok());
        headers.remove("x-restli-protocol-version");
        assert!(check_rest_headers(&headers).is_err());
    }
}
