//! LinkedIn (Posts API, members and organisations; OAuth 2.0 authorization code).
//!
//! - Connect: no PKCE (LinkedIn offers it only to native apps it enables), client id and
//!   secret in the form body. Scopes: `openid profile` (who the member is),
//!   `w_member_social` (post as the member), and — unless the adapter is built with
//!   [`LinkedinAdapter::member_only`] — `w_organization_social r_organization_admin`
//!   (list the organisations the member administers and post as them). The organisation
//!   scopes are asked for by default because authors with a company page are the reason
//!   LinkedIn is offered; an app without LinkedIn's Community Management product cannot
//!   be granted them, and is configured member-only instead.
//! - The account is `GET /v2/userinfo` (`sub` → `urn:li:person:{sub}`), kept in the
//!   grant's `endpoint` so that publishing to the member needs no extra call. Targets:
//!   the member, and every organisation `GET /rest/organizationAcls?q=roleAssignee`
//!   lists with an APPROVED role that may post (ADMINISTRATOR,
//!   DIRECT_SPONSORED_CONTENT_POSTER, CONTENT_ADMIN), named by `GET
//!   /rest/organizations/{id}` where LinkedIn answers.
//! - Grants: access tokens live 60 days. Self-serve apps get no refresh token: such a
//!   grant is not [`renewable`](PlatformPort::renewable), so the engine warns "expiring
//!   soon" and then expires it with [`PlatformPort::expiry_reason`]. Approved partners
//!   get a refresh token that does not rotate and whose 365 days run from the first
//!   consent; refreshing keeps it unless LinkedIn sends another.
//! - Publish: `POST /rest/posts`; the post URN comes back in `x-restli-id`. The text is
//!   escaped for LinkedIn's little format ([`escape_little`]), links appended one per line.
//!   Images go through `POST /rest/images?action=initializeUpload` and a `PUT` of the
//!   bytes, then `content.media` (one) or `content.multiImage` (2 to 20). Video is
//!   refused by name at validation.
//!
//! | LinkedIn answered | class |
//! |---|---|
//! | token endpoint, any refusal but the app's credentials | `GrantDead(authorization_invalid)` |
//! | token endpoint 401 / `invalid_client` | `RequirementUnmet(app_credentials_rejected)` |
//! | API 401 `REVOKED_ACCESS_TOKEN` / 65601 | `GrantDead(revoked_by_user)` |
//! | API 401, anything else (65600 invalid, 65602 expired) | `Unauthorized` (refresh, or check and expire) |
//! | 403 on a post or image upload for an organisation | `RequirementUnmet(linkedin_org_role_missing)` |
//! | other 403 | `RequirementUnmet(permission_removed)` |
//! | 429 | `RateLimited` until the next midnight UTC, this connection |
//! | 400 / 422 on a post or upload | `ContentRejected(content_rejected)` with LinkedIn's message |
//! | 5xx, timeouts, lost answers | `Unavailable` |
//!
//! LinkedIn's rate limits are 24-hour quotas per app and per member that reset at
//! midnight UTC, and its 429s carry no headers saying which or when: the wait is until
//! the next midnight UTC, and the scope is this connection, because the member quota is
//! the one an author's posting can exhaust (an app-wide quota shows up as every
//! connection getting its own 429 and waiting the same way).

mod text;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use social_studio_actors::{
    Clock, LimitScope, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, Content, Grant, Media, MediaKind, Platform, Post, Reason, ReasonCode,
    Receipt, Secret, Target, TargetKind, Timestamp,
};

use super::oauth::{
    check_endpoint, ClientAuth, OAuthClient, OAuthProfile, RefreshTokens, TokenError, TokenRequest,
};
use super::outbound::{self, body_excerpt};
use super::{
    Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, PlatformSettings,
    SettingsError,
};

pub use text::{commentary_length, escape_little, MAX_COMMENTARY_LENGTH, RESERVED};

/// LinkedIn's real endpoints (the defaults a `[platforms.linkedin]` section overrides).
pub const ENDPOINTS: super::Endpoints = super::Endpoints {
    auth_url: "https://www.linkedin.com/oauth/v2/authorization",
    token_url: "https://www.linkedin.com/oauth/v2/accessToken",
    revoke_url: Some("https://www.linkedin.com/oauth/v2/revoke"),
    api_base: "https://api.linkedin.com",
};

/// The version of LinkedIn's versioned (`/rest`) API the adapter speaks, sent as
/// `LinkedIn-Version`. LinkedIn supports each monthly version for about a year.
pub const API_VERSION: &str = "202605";

/// The Rest.li protocol version every `/rest` call declares.
const RESTLI_PROTOCOL_VERSION: &str = "2.0.0";

/// Scopes for posting as the member and as the organisations they administer.
pub const SCOPES: &[&str] = &[
    "openid",
    "profile",
    "w_member_social",
    "w_organization_social",
    "r_organization_admin",
];

/// Scopes for posting as the member only, for apps without Community Management.
pub const MEMBER_SCOPES: &[&str] = &["openid", "profile", "w_member_social"];

/// Without these nothing can be posted or the account cannot be identified.
const REQUIRED_SCOPES: &[&str] = &["openid", "profile", "w_member_social"];

/// Organisation roles that may create posts (Posts API, "Organization posts").
const POSTING_ROLES: &[&str] = &[
    "ADMINISTRATOR",
    "DIRECT_SPONSORED_CONTENT_POSTER",
    "CONTENT_ADMIN",
];

/// A multi-image post takes 2 to 20 images.
const MAX_IMAGES: usize = 20;

/// Image size the adapter uploads at most (LinkedIn's limit is not documented in bytes;
/// community sources give about 5 MB).
const IMAGE_MAX_BYTES: usize = 5 * 1024 * 1024;

/// organizationAcls page size, and how many pages to read at most.
const ACL_PAGE: usize = 100;
const ACL_MAX_PAGES: usize = 10;

/// Never ask the queue to wait less than this.
const MIN_RATE_WAIT: Duration = Duration::from_secs(1);

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What the engine records when a grant LinkedIn will not renew reaches its expiry.
pub const EXPIRY_MESSAGE: &str = "LinkedIn self-serve apps get no refresh token; LinkedIn \
    requires reconnecting every 60 days (and partner apps once their refresh token's 365 \
    days have run out)";

/// The LinkedIn adapter.
pub struct LinkedinAdapter {
    /// Authorize, code exchange, refresh and revoke, in LinkedIn's OAuth dialect.
    oauth: OAuthClient,
    /// API calls and uploads; redirects disabled.
    http: reqwest::Client,
    /// Counts every call, as LinkedIn's.
    meter: outbound::CallMeter,
    /// Media fetches: the author's URLs, reaching only the public internet unless
    /// `allow_private_media_urls` ([`outbound::GuardedClient`]).
    media: outbound::GuardedClient,
    /// `https://api.linkedin.com`, or the sandbox's `{base}/linkedin`; no trailing slash.
    api_base: String,
    /// Whether organisations are listed and posted to (the organisation scopes).
    organisations: bool,
    /// The engine's clock: refresh times and rate-limit waits are measured on it.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LinkedinAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedinAdapter")
            .field("api_base", &self.api_base)
            .field("organisations", &self.organisations)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

fn profile(scopes: &'static [&'static str]) -> OAuthProfile {
    OAuthProfile {
        scopes,
        client_auth: ClientAuth::RequestBody,
        pkce: false,
        authorize_params: Vec::new(),
        refresh_tokens: RefreshTokens::Reusable,
        grant_refusals: Some(grant_refusals),
    }
}

/// `GET /v2/userinfo` (OpenID Connect).
#[derive(Debug, Clone, Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(default)]
    picture: Option<String>,
}

impl UserInfo {
    fn urn(&self) -> String {
        format!("urn:li:person:{}", self.sub)
    }

    fn display_name(&self) -> String {
        if let Some(name) = self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            return name.to_owned();
        }
        let parts: Vec<&str> = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            self.urn()
        } else {
            parts.join(" ")
        }
    }

    fn account(&self) -> Account {
        let name = self.display_name();
        Account {
            platform_id: self.urn(),
            // LinkedIn's API gives members no public handle; the name is what people see.
            handle: name.clone(),
            display_name: name,
            kind: AccountKind::Personal,
            picture: super::picture_url(self.picture.as_deref()),
        }
    }
}

/// A Rest.li collection page.
#[derive(Debug, Deserialize)]
struct Collection<T> {
    #[serde(default = "Vec::new")]
    elements: Vec<T>,
}

/// One row of `organizationAcls`.
#[derive(Debug, Deserialize)]
struct OrganizationAcl {
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// `GET /rest/organizations/{id}`, as far as naming goes.
#[derive(Debug, Deserialize)]
struct Organization {
    #[serde(default, rename = "localizedName")]
    localized_name: Option<String>,
}

/// `POST /rest/images?action=initializeUpload`.
#[derive(Debug, Deserialize)]
struct InitializeUpload {
    value: UploadSlot,
}

#[derive(Debug, Deserialize)]
struct UploadSlot {
    #[serde(rename = "uploadUrl")]
    upload_url: String,
    image: String,
}

/// LinkedIn's error body: `{"status","serviceErrorCode","code","message"}`.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default, rename = "serviceErrorCode")]
    service_error_code: Option<i64>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ApiError {
    fn read(body: &[u8]) -> ApiError {
        serde_json::from_slice(body).unwrap_or_default()
    }

    fn message_or(&self, body: &[u8]) -> String {
        self.message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| body_excerpt(body))
    }

    fn is_revoked(&self) -> bool {
        self.code.as_deref() == Some("REVOKED_ACCESS_TOKEN")
            || self.service_error_code == Some(65601)
    }
}

/// Which API call failed: the same status means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// userinfo, organisation lookups.
    Identity,
    /// Image upload, for the author named.
    Upload { organisation: bool },
    /// The post itself, for the author named.
    Publish { organisation: bool },
}

/// Who a post is published as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Author {
    Person(String),
    Organisation(String),
}

impl Author {
    fn urn(&self) -> &str {
        match self {
            Author::Person(urn) | Author::Organisation(urn) => urn,
        }
    }

    fn is_organisation(&self) -> bool {
        matches!(self, Author::Organisation(_))
    }
}

impl LinkedinAdapter {
    /// An adapter for the LinkedIn app in `settings`, asking for the organisation scopes
    /// too, reading time from the system clock.
    pub fn new(settings: &PlatformSettings) -> Result<LinkedinAdapter, SettingsError> {
        Self::new_with(settings, &outbound::Outbound::default())
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<LinkedinAdapter, SettingsError> {
        Self::build(settings, true, outbound)
    }

    fn build(
        settings: &PlatformSettings,
        organisations: bool,
        outbound: &outbound::Outbound,
    ) -> Result<LinkedinAdapter, SettingsError> {
        check_endpoint("api_base", &settings.api_base)?;
        let http = outbound.client(outbound::DEFAULT_TIMEOUT)?;
        let scopes = if organisations { SCOPES } else { MEMBER_SCOPES };
        let meter = outbound.meter(Platform::Linkedin);
        let oauth = OAuthClient::new(settings, profile(scopes), http.clone(), meter.clone())?;
        Ok(LinkedinAdapter {
            oauth,
            http,
            meter,
            media: outbound.guarded(
                Platform::Linkedin,
                outbound::DEFAULT_TIMEOUT,
                outbound::Reach::allowing_private(settings.allow_private_media_urls),
            )?,
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            organisations,
            clock: Arc::new(SystemClock),
        })
    }

    /// An adapter that asks only for the member scopes and lists no organisations: for
    /// an app without LinkedIn's Community Management product, to which LinkedIn would
    /// refuse the organisation scopes.
    pub fn member_only(settings: &PlatformSettings) -> Result<LinkedinAdapter, SettingsError> {
        Self::build(settings, false, &outbound::Outbound::default())
    }

    /// Reads time from `clock` instead (the engine's, virtual in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> LinkedinAdapter {
        self.clock = clock;
        self
    }

    /// Holds the media it fetches for upload against `budget`, the engine's one budget
    /// shared by every adapter (configuration key `media_memory_bytes`).
    pub fn with_media_budget(mut self, budget: outbound::MediaBudget) -> LinkedinAdapter {
        self.media = self.media.with_media_budget(budget);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// A `/rest` request with LinkedIn's version headers.
    fn rest(&self, request: RequestBuilder, grant: &Grant) -> RequestBuilder {
        request
            .bearer_auth(grant.access_token.expose())
            .header("LinkedIn-Version", API_VERSION)
            .header("X-Restli-Protocol-Version", RESTLI_PROTOCOL_VERSION)
    }

    /// `GET /v2/userinfo`.
    async fn userinfo(&self, grant: &Grant) -> Result<UserInfo, PortError> {
        let request = self
            .http
            .get(self.url("/v2/userinfo"))
            .bearer_auth(grant.access_token.expose());
        let (_, body) = self.api(request, Call::Identity).await?;
        serde_json::from_slice::<UserInfo>(&body).map_err(|error| PortError::Unavailable {
            detail: format!(
                "LinkedIn's userinfo answer could not be read ({}): {}",
                outbound::json_failure(&error),
                body_excerpt(&body)
            ),
            maybe_delivered: false,
        })
    }

    /// The organisations the member may post as: every APPROVED ACL with a posting role.
    /// None when LinkedIn refuses the listing with a 403 (the app lacks the product or
    /// the member did not grant the scope): the member alone is still a usable connection.
    async fn organisations(&self, grant: &Grant) -> Result<Vec<Target>, PortError> {
        let mut urns: Vec<String> = Vec::new();
        for page in 0..ACL_MAX_PAGES {
            let start = page * ACL_PAGE;
            let request = self.rest(
                self.http.get(self.url(&format!(
                    "/rest/organizationAcls?q=roleAssignee&state=APPROVED&start={start}&count={ACL_PAGE}"
                ))),
                grant,
            );
            let body = match self.api(request, Call::Identity).await {
                Ok((_, body)) => body,
                Err(PortError::RequirementUnmet(reason)) if page == 0 => {
                    tracing::warn!(platform = "linkedin", %reason, "organisations cannot be listed; connecting the member only");
                    return Ok(Vec::new());
                }
                Err(error) => return Err(error),
            };
            let acls: Collection<OrganizationAcl> =
                serde_json::from_slice(&body).map_err(|error| PortError::Unavailable {
                    detail: format!(
                        "LinkedIn's organizationAcls answer could not be read ({}): {}",
                        outbound::json_failure(&error),
                        body_excerpt(&body)
                    ),
                    maybe_delivered: false,
                })?;
            let count = acls.elements.len();
            for acl in acls.elements {
                let approved = acl.state.as_deref().is_none_or(|s| s == "APPROVED");
                let may_post = acl
                    .role
                    .as_deref()
                    .is_some_and(|role| POSTING_ROLES.contains(&role));
                if let Some(urn) = acl.organization.filter(|_| approved && may_post) {
                    if !urns.contains(&urn) {
                        urns.push(urn);
                    }
                }
            }
            if count < ACL_PAGE {
                break;
            }
        }
        let mut targets = Vec::with_capacity(urns.len());
        for urn in urns {
            let name = self.organisation_name(grant, &urn).await;
            targets.push(Target {
                kind: TargetKind::Organisation,
                id: urn,
                name,
            });
        }
        Ok(targets)
    }

    /// The organisation's name, or its URN when LinkedIn will not say: a name is a
    /// nicety, never a reason to fail a connect.
    async fn organisation_name(&self, grant: &Grant, urn: &str) -> String {
        let Some(id) = urn.strip_prefix("urn:li:organization:") else {
            return urn.to_owned();
        };
        let request = self.rest(
            self.http
                .get(self.url(&format!("/rest/organizations/{id}"))),
            grant,
        );
        match self.api(request, Call::Identity).await {
            Ok((_, body)) => serde_json::from_slice::<Organization>(&body)
                .ok()
                .and_then(|o| o.localized_name)
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| urn.to_owned()),
            Err(error) => {
                tracing::debug!(platform = "linkedin", %error, urn, "organisation name unavailable");
                urn.to_owned()
            }
        }
    }

    /// Sends one API call and returns its headers and body, or the classified failure.
    async fn api(
        &self,
        request: RequestBuilder,
        call: Call,
    ) -> Result<(HeaderMap, Vec<u8>), PortError> {
        let endpoint = match call {
            Call::Identity => outbound::Endpoint::Identity,
            Call::Upload { .. } => outbound::Endpoint::MediaUpload,
            Call::Publish { .. } => outbound::Endpoint::Publish,
        };
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(endpoint)).await?;
        if status.is_success() {
            return Ok((headers, body));
        }
        Err(self.classify(status, &body, call))
    }

    /// Classifies an API answer that is not a 2xx.
    fn classify(&self, status: StatusCode, body: &[u8], call: Call) -> PortError {
        classify(status, body, call, self.clock.now())
    }

    /// Who `post` is published as: its target, or the member.
    async fn author(&self, grant: &Grant, post: &Post) -> Result<Author, PortError> {
        match post
            .target
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(urn) if urn.starts_with("urn:li:organization:") => {
                Ok(Author::Organisation(urn.to_owned()))
            }
            Some(id) if id.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Author::Organisation(format!("urn:li:organization:{id}")))
            }
            Some(urn) if urn.starts_with("urn:li:person:") => Ok(Author::Person(urn.to_owned())),
            Some(other) => Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                format!(
                    "{other:?} is not a LinkedIn person or organisation; choose a target again"
                ),
            ))),
            None => match grant
                .endpoint
                .as_deref()
                .filter(|e| e.starts_with("urn:li:person:"))
            {
                Some(urn) => Ok(Author::Person(urn.to_owned())),
                None => Ok(Author::Person(self.userinfo(grant).await?.urn())),
            },
        }
    }

    /// Fetches one image from its public URL.
    async fn fetch_media(
        &self,
        media: &Media,
    ) -> Result<(outbound::MediaBytes, String), PortError> {
        outbound::fetch_image(&self.media, media, |_| IMAGE_MAX_BYTES).await
    }

    /// Uploads one image for `author` and returns its image URN.
    async fn upload_image(
        &self,
        grant: &Grant,
        author: &Author,
        media: &Media,
    ) -> Result<String, PortError> {
        let (bytes, content_type) = self.fetch_media(media).await?;
        let call = Call::Upload {
            organisation: author.is_organisation(),
        };
        let request = self.rest(
            self.http
                .post(self.url("/rest/images?action=initializeUpload"))
                .json(&json!({"initializeUploadRequest": {"owner": author.urn()}})),
            grant,
        );
        let (_, body) = self.api(request, call).await.map_err(not_published)?;
        let slot = serde_json::from_slice::<InitializeUpload>(&body)
            .map(|answer| answer.value)
            .map_err(|error| PortError::Unavailable {
                detail: format!(
                    "LinkedIn's initializeUpload answer could not be read ({}): {}",
                    outbound::json_failure(&error),
                    body_excerpt(&body)
                ),
                maybe_delivered: false,
            })?;
        // The upload URL comes from LinkedIn's answer and receives the bearer token, as
        // LinkedIn's own examples send it: it must be HTTPS (or the loopback sandbox).
        check_endpoint("uploadUrl", &slot.upload_url).map_err(|error| PortError::Unavailable {
            detail: format!("LinkedIn gave an unusable upload URL: {error}"),
            maybe_delivered: false,
        })?;
        let request = self
            .http
            .put(&slot.upload_url)
            .bearer_auth(grant.access_token.expose())
            .header(CONTENT_TYPE, content_type)
            .body(bytes.body());
        self.api(request, call).await.map_err(not_published)?;
        Ok(slot.image)
    }

    /// Best effort: revokes tokens issued to a connect that is failing.
    async fn discard(&self, grant: &Grant, now: Timestamp) {
        if let Err(error) = self.oauth.revoke(grant, now).await {
            tracing::warn!(platform = "linkedin", %error, "could not revoke a failed connect's tokens");
        }
    }
}

/// Classifies a LinkedIn API answer that is not a 2xx (see the module's table).
fn classify(status: StatusCode, body: &[u8], call: Call, now: Timestamp) -> PortError {
    let error = ApiError::read(body);
    match status {
        StatusCode::UNAUTHORIZED if error.is_revoked() => PortError::GrantDead(
            Reason::with_platform_message(ReasonCode::RevokedByUser, error.message_or(body)),
        ),
        StatusCode::UNAUTHORIZED => PortError::Unauthorized,
        StatusCode::TOO_MANY_REQUESTS => PortError::RateLimited {
            retry_after: until_next_midnight_utc(now),
            scope: LimitScope::Connection,
        },
        status if status.is_server_error() => outbound::server_error(status, body_excerpt(body)),
        StatusCode::FORBIDDEN => {
            let organisation = matches!(
                call,
                Call::Publish { organisation: true } | Call::Upload { organisation: true }
            );
            let code = if organisation {
                ReasonCode::LinkedinOrgRoleMissing
            } else {
                ReasonCode::PermissionRemoved
            };
            PortError::RequirementUnmet(Reason::with_platform_message(code, error.message_or(body)))
        }
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY if call != Call::Identity => {
            PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                error.message_or(body),
            ))
        }
        // A 404, a 426 (retired LinkedIn-Version) or another 4xx: the request never
        // matched a LinkedIn resource as sent. Nothing was done, and the detail tells an
        // administrator what to fix.
        status => PortError::Unavailable {
            detail: format!("LinkedIn answered HTTP {status}: {}", body_excerpt(body)),
            maybe_delivered: false,
        },
    }
}

/// LinkedIn's quotas reset at midnight UTC.
fn until_next_midnight_utc(now: Timestamp) -> Duration {
    let millis = now.unix_millis();
    let day = i64::try_from(DAY.as_millis()).unwrap_or(i64::MAX);
    let next = (millis.div_euclid(day) + 1).saturating_mul(day);
    now.until(Timestamp::from_unix_millis(next))
        .max(MIN_RATE_WAIT)
}

/// An upload is not a post: whatever happened to it, the post was not published.
fn not_published(error: PortError) -> PortError {
    match error {
        PortError::Unavailable { detail, .. } => PortError::Unavailable {
            detail,
            maybe_delivered: false,
        },
        other => other,
    }
}

/// The author's text LinkedIn receives (before escaping): the post's text, then each of
/// its links the text does not already contain, one per line.
fn post_text(content: &Content) -> String {
    let mut text = content.text.trim_end().to_owned();
    for link in &content.links {
        if link.is_empty() || text.contains(link.as_str()) {
            continue;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(link);
    }
    text
}

/// LinkedIn's scopes come back comma-separated (`"openid,profile,w_member_social"`),
/// which the OAuth core, reading RFC 6749's spaces, keeps as one: split them.
fn normalise_scopes(grant: &mut Grant) {
    let scopes: Vec<String> = grant
        .scopes
        .iter()
        .flat_map(|s| s.split([',', ' ']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    grant.scopes = scopes;
}

/// LinkedIn's reading of a refused refresh or revocation: LinkedIn is reported to
/// answer a dead refresh token with 401 and "The refresh token is invalid" rather than
/// 400 `invalid_grant`; that is the grant, not the app's credentials.
fn grant_refusals(
    request: TokenRequest,
    error: &str,
    description: Option<&str>,
) -> Option<ReasonCode> {
    let token_invalid = error != "invalid_client"
        && description.is_some_and(|d| d.to_ascii_lowercase().contains("refresh token"));
    (request.presents_grant() && token_invalid).then_some(ReasonCode::AuthorizationInvalid)
}

#[async_trait]
impl PlatformPort for LinkedinAdapter {
    fn platform(&self) -> Platform {
        Platform::Linkedin
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin"))]
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = self.clock.now();
        let mut renewed = self
            .oauth
            .refresh(grant, now)
            .await
            .map_err(TokenError::into_port_error)?;
        normalise_scopes(&mut renewed);
        Ok(renewed)
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        self.userinfo(grant).await.map(|user| user.account())
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                words.join("; "),
            )));
        }
        let author = self.author(grant, post).await?;
        let mut images = Vec::with_capacity(post.content.media.len());
        for media in &post.content.media {
            let urn = self.upload_image(grant, &author, media).await?;
            images.push((urn, media.alt.clone()));
        }
        let mut body = json!({
            "author": author.urn(),
            "commentary": escape_little(&post_text(&post.content)),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": false,
        });
        let image = |(urn, alt): &(String, Option<String>)| {
            let mut image = json!({"id": urn});
            if let Some(alt) = alt.as_deref().filter(|a| !a.is_empty()) {
                image["altText"] = Value::String(alt.to_owned());
            }
            image
        };
        match images.as_slice() {
            [] => {}
            [one] => body["content"] = json!({"media": image(one)}),
            several => {
                let list: Vec<Value> = several.iter().map(image).collect();
                body["content"] = json!({"multiImage": {"images": list}});
            }
        }
        let call = Call::Publish {
            organisation: author.is_organisation(),
        };
        let request = self.rest(self.http.post(self.url("/rest/posts")).json(&body), grant);
        let (headers, _) = self.api(request, call).await?;
        let urn = headers
            .get("x-restli-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| PortError::Unavailable {
                // LinkedIn said 2xx: the post exists, but without its URN it cannot be
                // confirmed.
                detail: "LinkedIn accepted the post but sent no x-restli-id".into(),
                maybe_delivered: true,
            })?;
        tracing::info!(platform = "linkedin", post_urn = %urn, "post published");
        Ok(Receipt {
            url: Some(format!("https://www.linkedin.com/feed/update/{urn}/")),
            platform_post_id: urn,
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin"))]
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        let now = self.clock.now();
        self.oauth
            .revoke(grant, now)
            .await
            .map_err(TokenError::into_port_error)
    }

    /// Renewable only with a refresh token that has not lapsed: self-serve grants have
    /// none, and a partner's lapses 365 days after the first consent.
    fn renewable(&self, grant: &social_studio_storage::GrantFacts) -> bool {
        let now = self.clock.now();
        grant.has_refresh_token && grant.refresh_expires_at.is_none_or(|at| at > now)
    }

    fn expiry_reason(&self) -> Reason {
        Reason::with_platform_message(ReasonCode::GrantExpired, EXPIRY_MESSAGE)
    }
}

#[async_trait]
impl Adapter for LinkedinAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        self.oauth.authorize(state, redirect_uri)
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin"))]
    async fn connect(
        &self,
        code: &str,
        _pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        // No PKCE: LinkedIn's web flow has none, and a verifier sent anyway would be
        // refused.
        let mut grant = self
            .oauth
            .exchange_code(code, None, redirect_uri, now)
            .await
            .map_err(TokenError::into_connect_error)?;
        normalise_scopes(&mut grant);

        if let Some(reason) = super::ungranted("LinkedIn", REQUIRED_SCOPES, &grant.scopes) {
            self.discard(&grant, now).await;
            return Err(ConnectError::RequirementUnmet(reason));
        }

        let user = match self.userinfo(&grant).await {
            Ok(user) => user,
            Err(error) => {
                self.discard(&grant, now).await;
                return Err(error.into());
            }
        };
        let person = user.urn();
        grant.endpoint = Some(person.clone());
        let account = user.account();
        let mut targets = vec![Target {
            kind: TargetKind::Person,
            id: person.clone(),
            name: account.display_name.clone(),
        }];
        let may_list = self.organisations
            && grant
                .scopes
                .iter()
                .any(|s| s == "r_organization_admin" || s == "rw_organization_admin");
        if may_list {
            match self.organisations(&grant).await {
                Ok(organisations) => targets.extend(organisations),
                Err(error) => {
                    self.discard(&grant, now).await;
                    return Err(error.into());
                }
            }
        }
        tracing::info!(platform = "linkedin", person = %person, targets = targets.len(), "account connected");
        Ok(Connected {
            grant,
            account,
            targets,
        })
    }

    fn scopes(&self) -> &'static [&'static str] {
        if self.organisations {
            SCOPES
        } else {
            MEMBER_SCOPES
        }
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        if !Platform::Linkedin.supports(post.kind) {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        let content = &post.content;
        let text = post_text(content);
        if text.trim().is_empty() && content.media.is_empty() {
            errors.push(ContentError::EmptyPost);
        }
        let length = commentary_length(&text);
        if length > MAX_COMMENTARY_LENGTH {
            errors.push(ContentError::TextTooLong {
                limit: MAX_COMMENTARY_LENGTH,
                actual: length,
            });
        }
        let images = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Image)
            .count();
        let videos = content.media.len() - images;
        if images > MAX_IMAGES {
            errors.push(ContentError::TooManyImages {
                limit: MAX_IMAGES,
                actual: images,
            });
        }
        if videos > 0 && images > 0 {
            errors.push(ContentError::MixedMedia);
        }
        if videos > 0 {
            errors.push(ContentError::VideoNotSupported);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
    }

    fn publish(organisation: bool) -> Call {
        Call::Publish { organisation }
    }

    #[test]
    fn a_revoked_token_is_a_dead_grant_and_other_401s_ask_for_a_refresh() {
        let revoked = br#"{"status":401,"serviceErrorCode":65601,"code":"REVOKED_ACCESS_TOKEN","message":"The token used in the request has been revoked by the user"}"#;
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, revoked, Call::Identity, now()),
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::RevokedByUser,
                "The token used in the request has been revoked by the user"
            ))
        );
        let by_number_only = br#"{"status":401,"serviceErrorCode":65601,"message":"revoked"}"#;
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, by_number_only, publish(false), now()),
            PortError::GrantDead(ref r) if r.code == ReasonCode::RevokedByUser
        ));
        let invalid = br#"{"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN","message":"Invalid access token"}"#;
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, invalid, publish(false), now()),
            PortError::Unauthorized
        );
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, b"", Call::Identity, now()),
            PortError::Unauthorized
        );
    }

    #[test]
    fn a_403_names_the_organisation_role_only_for_organisation_posts() {
        let denied = br#"{"status":403,"serviceErrorCode":100,"code":"ACCESS_DENIED","message":"Not enough permissions to access: partnerApiPostsExternal.CREATE.20260501"}"#;
        let code = |call| match classify(StatusCode::FORBIDDEN, denied, call, now()) {
            PortError::RequirementUnmet(reason) => reason.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(publish(true)), ReasonCode::LinkedinOrgRoleMissing);
        assert_eq!(
            code(Call::Upload { organisation: true }),
            ReasonCode::LinkedinOrgRoleMissing
        );
        assert_eq!(code(publish(false)), ReasonCode::PermissionRemoved);
        assert_eq!(code(Call::Identity), ReasonCode::PermissionRemoved);
    }

    #[test]
    fn rate_limits_wait_until_midnight_utc() {
        let limited = classify(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"status":429,"message":"Resource level throttle MEMBER DAY limit for calls to this resource is reached."}"#,
            publish(false),
            now(),
        );
        assert_eq!(
            limited,
            PortError::RateLimited {
                retry_after: Duration::from_secs(15 * 60 * 60),
                scope: LimitScope::Connection
            }
        );
        let just_before = Timestamp::parse_rfc3339("2026-11-28T23:59:59.900Z").unwrap();
        assert_eq!(until_next_midnight_utc(just_before), MIN_RATE_WAIT);
    }

    #[test]
    fn content_refusals_carry_linkedin_s_message_and_5xx_is_passing() {
        let body =
            br#"{"status":422,"message":"ERROR :: /commentary :: length 3001 exceeds 3000"}"#;
        assert_eq!(
            classify(
                StatusCode::UNPROCESSABLE_ENTITY,
                body,
                publish(false),
                now()
            ),
            PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                "ERROR :: /commentary :: length 3001 exceeds 3000"
            ))
        );
        assert!(matches!(
            classify(
                StatusCode::BAD_REQUEST,
                b"{}",
                Call::Upload {
                    organisation: false
                },
                now()
            ),
            PortError::ContentRejected(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, b"{}", Call::Identity, now()),
            PortError::Unavailable { .. }
        ));
        assert_eq!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                b"down",
                publish(false),
                now()
            ),
            PortError::Unavailable {
                detail: "HTTP 503 Service Unavailable: down".into(),
                maybe_delivered: false
            }
        );
        assert!(matches!(
            classify(StatusCode::GATEWAY_TIMEOUT, b"", publish(false), now()),
            PortError::Unavailable {
                maybe_delivered: true,
                ..
            }
        ));
    }

    #[test]
    fn comma_separated_scopes_are_split() {
        let mut grant = Grant {
            access_token: Secret::new("a"),
            refresh_token: None,
            token_type: "bearer".into(),
            scopes: vec!["openid,profile,w_member_social".into()],
            issued_at: now(),
            expires_at: None,
            refresh_expires_at: None,
            target_tokens: Vec::new(),
            endpoint: None,
        };
        normalise_scopes(&mut grant);
        assert_eq!(grant.scopes, ["openid", "profile", "w_member_social"]);
    }

    #[test]
    fn a_dead_refresh_token_is_the_grant_and_a_bad_secret_is_the_app() {
        use super::super::oauth::classify_status;
        use reqwest::header::HeaderMap;
        use reqwest::StatusCode;
        let refused = |body: &str| {
            classify_status(
                StatusCode::UNAUTHORIZED,
                &HeaderMap::new(),
                body.as_bytes(),
                Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap(),
                TokenRequest::Refresh,
                Some(grant_refusals),
            )
            .into_port_error()
        };
        let dead = refused(
            r#"{"error":"invalid_request","error_description":"The refresh token is invalid"}"#,
        );
        assert!(
            matches!(dead, PortError::GrantDead(ref r) if r.code == ReasonCode::AuthorizationInvalid)
        );
        let app = refused(
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
        );
        assert!(
            matches!(app, PortError::RequirementUnmet(ref r) if r.code == ReasonCode::AppCredentialsRejected)
        );
    }
}
