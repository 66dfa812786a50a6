//! Bluesky (AT Protocol), connected with an identifier and an app password — no OAuth.
//!
//! - Connect: an app password has the form `xxxx-xxxx-xxxx-xxxx`; anything else is
//!   refused (`app_password_required`) before any call. The handle is resolved to a DID
//!   (`com.atproto.identity.resolveHandle` at the configured `service`), then
//!   `com.atproto.server.createSession` opens the session and the password is dropped —
//!   it is never stored, logged or kept. The PDS is the `#atproto_pds` service of the
//!   DID document `createSession` returns; without one, the DID document is resolved
//!   (`did:plc` at the PLC directory, `did:web` at `/.well-known/did.json`), and failing
//!   that the configured `service` is the PDS. The grant holds `accessJwt` /
//!   `refreshJwt`; its `endpoint` (not secret) the PDS, DID and handle as JSON. Lifetimes
//!   come from the JWTs' `exp - iat` (read without verifying), measured from the
//!   adapter's clock.
//! - Refresh: `com.atproto.server.refreshSession` with the refresh JWT rotates both
//!   tokens; the old refresh token answers with the same successor for two hours
//!   ([`LostRefreshPolicy::GracePeriod`]).
//! - Check: an access token outlives a revoked app password (up to two hours), so only a
//!   refresh proves the grant. `check` cannot hand a rotated grant back (the port returns
//!   an `Account`), so it never rotates itself: a grant not renewed within the last
//!   [`PROVEN_WITHIN`] is answered `Unauthorized`, which makes the connection actor
//!   refresh through its rotation-safe path (marker, durable store of the successor) and
//!   check again; a freshly renewed grant is then read back with
//!   `com.atproto.server.getSession`. Verify refreshes first anyway.
//! - Publish: `com.atproto.repo.createRecord` with a record key the engine chooses — a
//!   TID derived from the post id ([`richtext::tid_for`]) — so publishing is idempotent:
//!   a second create of the same key fails at the PDS (the reference PDS answers 500
//!   `InternalServerError`, its repository refusing a second value at a key), and any
//!   failed create is followed by `com.atproto.repo.getRecord`: an existing record is
//!   confirmed, never duplicated. Links, `@mentions` (resolved to DIDs; unknown handles
//!   stay plain text) and `#hashtags` become facets with UTF-8 byte offsets; up to four
//!   images go through `uploadBlob` with their alt text (`app.bsky.embed.images`); a
//!   link without images becomes an `app.bsky.embed.external` card.
//! - Content: at most 300 graphemes and 3000 bytes, 4 images, no video yet.
//!
//! | Bluesky answered | class |
//! |---|---|
//! | `ExpiredToken` / `InvalidToken` / 401 on a call | `Unauthorized` (refresh, then retry) |
//! | refresh: `ExpiredToken` "Token has been revoked" | `GrantDead(revoked_by_user)` |
//! | refresh: other `ExpiredToken` | `GrantDead(grant_expired)` |
//! | refresh: `InvalidToken`, `AuthenticationRequired` | `GrantDead(authorization_invalid)` |
//! | `AccountTakedown`, a session `takendown`/`suspended` | `RequirementUnmet(account_suspended)` |
//! | 429 `RateLimitExceeded` | `RateLimited` until `RateLimit-Reset` (else the policy window) |
//! | createSession 401 `AuthenticationRequired` | connect refused, `app_password_rejected` (also what the reference PDS answers an app password of a taken-down account: only the session names a takedown) |
//! | 400 `InvalidRequest` on a post or upload | `ContentRejected` with Bluesky's message |
//! | 5xx, timeouts, lost answers | `Unavailable` |

pub mod richtext;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::dns::Resolve as _;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use social_studio_actors::{
    Clock, LimitScope, LostRefreshPolicy, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, Content, Grant, Media, MediaKind, Platform, Post, Reason, ReasonCode,
    Receipt, Secret, Target, TargetKind, Timestamp,
};
use unicode_segmentation::UnicodeSegmentation;

use super::oauth::check_endpoint;
use super::outbound::{self, body_excerpt, Endpoint};
use super::{Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, SettingsError};

/// The PDS entryway used when `[platforms.bluesky] service` is not set.
pub const DEFAULT_SERVICE: &str = "https://bsky.social";

/// The DID PLC directory used to resolve `did:plc` identities to their PDS.
pub const DEFAULT_PLC_DIRECTORY: &str = "https://plc.directory";

/// The XRPC methods behind the session lifecycle, relative to the service: what
/// configuration hands the adapter as its authorize, token and revoke endpoints.
pub const CREATE_SESSION: &str = "/xrpc/com.atproto.server.createSession";
/// See [`CREATE_SESSION`].
pub const REFRESH_SESSION: &str = "/xrpc/com.atproto.server.refreshSession";
/// See [`CREATE_SESSION`].
pub const DELETE_SESSION: &str = "/xrpc/com.atproto.server.deleteSession";

/// The collection posts are records of.
pub const POST_COLLECTION: &str = "app.bsky.feed.post";

/// Text limits of `app.bsky.feed.post`.
pub const MAX_GRAPHEMES: usize = 300;
pub const MAX_TEXT_BYTES: usize = 3000;
/// Images per post (`app.bsky.embed.images`).
pub const MAX_IMAGES: usize = 4;
/// Bytes per image blob.
pub const IMAGE_MAX_BYTES: usize = 2_000_000;

/// How long the previous refresh token answers with the same successor.
pub const REFRESH_GRACE: Duration = Duration::from_secs(2 * 60 * 60);

/// A grant renewed this recently was proven by that renewal; an older one is refreshed
/// before `check` calls it alive.
pub const PROVEN_WITHIN: Duration = Duration::from_secs(60);

/// What to wait when a 429 names neither a reset nor a window.
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(5 * 60);
const MIN_RATE_WAIT: Duration = Duration::from_secs(1);

/// Where the adapter signs in and resolves identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueskySettings {
    /// The entryway or PDS (`https://bsky.social`), without a trailing slash.
    pub service: String,
    /// The PLC directory (`https://plc.directory`), without a trailing slash.
    pub plc_directory: String,
    /// Whether a PDS named by a DID document, a `did:web` host and the author's media may
    /// be outside the public internet (configuration key `allow_private_media_urls`).
    pub allow_private_media_urls: bool,
}

/// The Bluesky adapter.
pub struct BlueskyAdapter {
    /// Calls to the configured service and PLC directory.
    http: reqwest::Client,
    /// Counts every call, as Bluesky's.
    meter: outbound::CallMeter,
    /// Calls to hosts someone else named — the PDS of a DID document, a `did:web` host,
    /// the author's media — reaching only the public internet unless
    /// `allow_private_media_urls` ([`outbound::GuardedClient`]).
    guarded: outbound::GuardedClient,
    service: String,
    plc_directory: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for BlueskyAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlueskyAdapter")
            .field("service", &self.service)
            .field("plc_directory", &self.plc_directory)
            .finish_non_exhaustive()
    }
}

/// The non-secret facts a grant is used with, kept as JSON in `Grant::endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEndpoint {
    /// The account's PDS, where every call after connect goes.
    pub pds: String,
    pub did: String,
    pub handle: String,
}

impl SessionEndpoint {
    /// Reads a grant's endpoint. A grant without one cannot be used.
    pub fn of(grant: &Grant) -> Result<SessionEndpoint, PortError> {
        grant
            .endpoint
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .ok_or_else(|| {
                PortError::GrantDead(Reason::with_platform_message(
                    ReasonCode::AuthorizationInvalid,
                    "the stored Bluesky session does not say which PDS and DID it belongs to",
                ))
            })
    }
}

/// An XRPC error body: `{"error": "ExpiredToken", "message": "Token has expired"}`.
#[derive(Debug, Default, Deserialize)]
struct XrpcError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl XrpcError {
    fn read(body: &[u8]) -> XrpcError {
        serde_json::from_slice(body).unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }

    /// "Error: message", the platform's words for a reason.
    fn said(&self, status: StatusCode, body: &[u8]) -> String {
        match (&self.error, &self.message) {
            (Some(e), Some(m)) => format!("{e}: {m}"),
            (Some(e), None) => e.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => format!("HTTP {status}: {}", body_excerpt(body)),
        }
    }
}

/// What `createSession`, `refreshSession` and `getSession` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    #[serde(default)]
    access_jwt: Option<String>,
    #[serde(default)]
    refresh_jwt: Option<String>,
    handle: String,
    did: String,
    #[serde(default)]
    did_doc: Option<Value>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    status: Option<String>,
}

impl Session {
    fn account(&self) -> Account {
        Account {
            platform_id: self.did.clone(),
            handle: format!("@{}", self.handle),
            display_name: self.handle.clone(),
            kind: AccountKind::Personal,
            // The avatar is in the profile (`app.bsky.actor.getProfile`), which the
            // adapter does not read: the session is all it asks for.
            picture: None,
        }
    }

    /// A session on a taken-down or suspended account cannot publish.
    fn suspended(&self) -> Option<Reason> {
        match (self.active, self.status.as_deref()) {
            (Some(false), Some(status @ ("takendown" | "suspended"))) => {
                Some(Reason::with_platform_message(
                    ReasonCode::AccountSuspended,
                    format!("the account is {status}"),
                ))
            }
            _ => None,
        }
    }
}

/// The claims of a session JWT the adapter needs; read without verifying (the PDS
/// verifies its own tokens).
#[derive(Debug, Default, Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

fn claims(jwt: &str) -> Claims {
    let Some(payload) = jwt.split('.').nth(1) else {
        return Claims::default();
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The lifetime a JWT announces (`exp - iat`), so that the expiry is measured on the
/// engine's clock even where the PDS's clock differs.
fn lifetime(claims: &Claims) -> Option<Duration> {
    let exp = claims.exp?;
    let iat = claims.iat?;
    u64::try_from(exp.checked_sub(iat)?)
        .ok()
        .map(Duration::from_secs)
}

/// Whether a password has the shape of a Bluesky app password (`xxxx-xxxx-xxxx-xxxx`).
pub fn looks_like_app_password(password: &str) -> bool {
    let groups: Vec<&str> = password.split('-').collect();
    groups.len() == 4
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The `#atproto_pds` service endpoint of a DID document.
fn pds_of(doc: &Value) -> Option<String> {
    doc.get("service")?
        .as_array()?
        .iter()
        .find(|s| {
            s.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id == "#atproto_pds" || id.ends_with("#atproto_pds"))
        })?
        .get("serviceEndpoint")?
        .as_str()
        .map(|e| e.trim_end_matches('/').to_owned())
}

/// Which call failed: the same answer means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Identity and session reads.
    Read,
    /// `uploadBlob`.
    Upload,
    /// `createRecord`.
    Publish,
    /// `refreshSession`.
    Refresh,
}

/// The text Bluesky receives: the post's text, then each of its links the text does not
/// already contain, one per line.
pub fn post_text(content: &Content) -> String {
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

impl BlueskyAdapter {
    /// An adapter signing in at `settings.service`, reading time from the system clock.
    pub fn new(settings: &BlueskySettings) -> Result<BlueskyAdapter, SettingsError> {
        Self::new_with(settings, &outbound::Outbound::default())
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &BlueskySettings,
        outbound: &outbound::Outbound,
    ) -> Result<BlueskyAdapter, SettingsError> {
        check_endpoint("service", &settings.service)?;
        check_endpoint("plc_directory", &settings.plc_directory)?;
        Ok(BlueskyAdapter {
            http: outbound.client(outbound::DEFAULT_TIMEOUT)?,
            meter: outbound.meter(Platform::Bluesky),
            guarded: outbound.guarded(
                Platform::Bluesky,
                outbound::DEFAULT_TIMEOUT,
                outbound::Reach::allowing_private(settings.allow_private_media_urls),
            )?,
            service: settings.service.trim_end_matches('/').to_owned(),
            plc_directory: settings.plc_directory.trim_end_matches('/').to_owned(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads time from `clock` instead (the engine's, virtual in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> BlueskyAdapter {
        self.clock = clock;
        self
    }

    /// Holds the media it fetches for upload against `budget`, the engine's one budget
    /// shared by every adapter (configuration key `media_memory_bytes`).
    pub fn with_media_budget(mut self, budget: outbound::MediaBudget) -> BlueskyAdapter {
        self.guarded = self.guarded.with_media_budget(budget);
        self
    }

    fn xrpc(base: &str, method: &str) -> String {
        format!("{base}/xrpc/{method}")
    }

    /// The client for calls to `url`: the plain one for the configured service and PLC
    /// directory (the operator chose them), the guarded one for any other host — a PDS
    /// or `did:web` host named by an identity. An IP literal outside the public internet
    /// is refused here; a name, when the guarded client resolves it.
    fn to(&self, url: &str) -> Result<&reqwest::Client, PortError> {
        let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        let here = origin(url);
        if here.is_some() && (here == origin(&self.service) || here == origin(&self.plc_directory))
        {
            return Ok(&self.http);
        }
        self.guarded
            .check(url)
            .map_err(|refusal| pds_not_public(&refusal))?;
        Ok(self.guarded.http())
    }

    /// Refuses, at connect, a PDS that every later call would be refused at: a host
    /// outside the public internet, unless it is the configured service or
    /// `allow_private_media_urls` is set. Each call is judged again when it connects; a
    /// name that cannot be resolved now is left for those calls to report.
    async fn check_pds(&self, pds: &str) -> Result<(), PortError> {
        let client = self.to(pds)?;
        if !std::ptr::eq(client, self.guarded.http())
            || self.guarded.reach() == outbound::Reach::Any
        {
            return Ok(());
        }
        let Some(name) = url::Url::parse(pds).ok().and_then(|u| {
            u.host_str()
                .and_then(|h| h.parse::<reqwest::dns::Name>().ok())
        }) else {
            return Ok(());
        };
        match outbound::public_only::PublicOnly.resolve(name).await {
            Err(error) => match outbound::public_only::not_public(error.as_ref()) {
                Some(refusal) => Err(pds_not_public(refusal)),
                None => Ok(()),
            },
            Ok(_) => Ok(()),
        }
    }

    /// Sends one call, counted as `endpoint`, and returns whatever HTTP answer came back.
    async fn exchange(
        &self,
        request: RequestBuilder,
        endpoint: Endpoint,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), PortError> {
        outbound::public_only::exchange(request, self.meter.call(endpoint), pds_not_public).await
    }

    /// Sends one call, counted as `endpoint`, and returns its body, or the classified
    /// failure.
    async fn send(
        &self,
        request: RequestBuilder,
        call: Call,
        endpoint: Endpoint,
    ) -> Result<Vec<u8>, PortError> {
        let (status, headers, body) = self.exchange(request, endpoint).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.classify(status, &headers, &body, call))
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        call: Call,
    ) -> PortError {
        let problem = XrpcError::read(body);
        let said = problem.said(status, body);
        if status == StatusCode::TOO_MANY_REQUESTS || problem.name() == "RateLimitExceeded" {
            return self.rate_limited(headers);
        }
        if status.is_server_error() {
            return outbound::server_error(status, said);
        }
        match (problem.name(), call) {
            ("AccountTakedown", _) => PortError::RequirementUnmet(Reason::with_platform_message(
                ReasonCode::AccountSuspended,
                said,
            )),
            ("ExpiredToken", Call::Refresh) => {
                let code = if problem
                    .message
                    .as_deref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("revoked"))
                {
                    ReasonCode::RevokedByUser
                } else {
                    ReasonCode::GrantExpired
                };
                PortError::GrantDead(Reason::with_platform_message(code, said))
            }
            ("InvalidToken" | "AuthenticationRequired" | "AuthMissing", Call::Refresh) => {
                PortError::GrantDead(Reason::with_platform_message(
                    ReasonCode::AuthorizationInvalid,
                    said,
                ))
            }
            (_, Call::Refresh) if status == StatusCode::UNAUTHORIZED => PortError::GrantDead(
                Reason::with_platform_message(ReasonCode::AuthorizationInvalid, said),
            ),
            ("ExpiredToken" | "InvalidToken" | "AuthenticationRequired" | "AuthMissing", _) => {
                PortError::Unauthorized
            }
            (_, _) if status == StatusCode::UNAUTHORIZED => PortError::Unauthorized,
            (_, Call::Publish | Call::Upload) if status == StatusCode::BAD_REQUEST => {
                PortError::ContentRejected(Reason::with_platform_message(
                    ReasonCode::ContentRejected,
                    said,
                ))
            }
            _ => PortError::Unavailable {
                detail: format!("Bluesky answered HTTP {status}: {said}"),
                maybe_delivered: false,
            },
        }
    }

    /// A 429 with the wait Bluesky announces: `RateLimit-Reset` (unix seconds), else the
    /// window of `RateLimit-Policy` (`N;w=secs`), else `Retry-After`.
    fn rate_limited(&self, headers: &HeaderMap) -> PortError {
        let now = self.clock.now();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let from_reset = header("ratelimit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|reset| now.until(Timestamp::from_unix_millis(reset.saturating_mul(1000))));
        let from_policy = || {
            header("ratelimit-policy").and_then(|policy| {
                policy.split(';').find_map(|part| {
                    part.trim()
                        .strip_prefix("w=")
                        .and_then(|w| w.parse::<u64>().ok())
                        .map(Duration::from_secs)
                })
            })
        };
        let retry_after = from_reset
            .or_else(from_policy)
            .or_else(|| outbound::retry_after(headers, now))
            .unwrap_or(DEFAULT_RATE_WINDOW)
            .max(MIN_RATE_WAIT);
        PortError::RateLimited {
            retry_after,
            scope: LimitScope::Connection,
        }
    }

    fn unreadable(
        what: &str,
        error: &serde_json::Error,
        body: &[u8],
        maybe_delivered: bool,
    ) -> PortError {
        PortError::Unavailable {
            detail: format!(
                "Bluesky's {what} answer could not be read ({}): {}",
                outbound::json_failure(error),
                body_excerpt(body)
            ),
            maybe_delivered,
        }
    }

    /// `com.atproto.identity.resolveHandle` at `base`. `Ok(None)` when the handle is
    /// unknown.
    async fn resolve_handle(&self, base: &str, handle: &str) -> Result<Option<String>, PortError> {
        #[derive(Deserialize)]
        struct Resolved {
            did: String,
        }
        let request = self
            .to(base)?
            .get(Self::xrpc(base, "com.atproto.identity.resolveHandle"))
            .query(&[("handle", handle)]);
        let (status, headers, body) = self.exchange(request, Endpoint::Resolve).await?;
        if status.is_success() {
            return serde_json::from_slice::<Resolved>(&body)
                .map(|r| Some(r.did))
                .map_err(|e| Self::unreadable("resolveHandle", &e, &body, false));
        }
        // 400 InvalidRequest "Unable to resolve handle".
        if status == StatusCode::BAD_REQUEST && XrpcError::read(&body).name() == "InvalidRequest" {
            return Ok(None);
        }
        Err(self.classify(status, &headers, &body, Call::Read))
    }

    /// The PDS a DID's document names: `did:plc` at the PLC directory, `did:web` at its
    /// `/.well-known/did.json`. `None` when the document names none.
    async fn resolve_pds(&self, did: &str) -> Result<Option<String>, PortError> {
        let url = if did.starts_with("did:plc:") {
            format!("{}/{did}", self.plc_directory)
        } else if let Some(host) = did.strip_prefix("did:web:") {
            if host.contains(':') || host.contains('/') {
                return Ok(None);
            }
            format!("https://{host}/.well-known/did.json")
        } else {
            return Ok(None);
        };
        let body = self
            .send(self.to(&url)?.get(url), Call::Read, Endpoint::Resolve)
            .await?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| Self::unreadable("DID document", &e, &body, false))?;
        Ok(pds_of(&doc))
    }

    /// Turns a session answer into a grant measured from `now`.
    fn grant(&self, session: &Session, pds: &str, now: Timestamp) -> Result<Grant, PortError> {
        let (Some(access), Some(refresh)) = (&session.access_jwt, &session.refresh_jwt) else {
            return Err(PortError::Unavailable {
                detail: "Bluesky's session answer carries no tokens".into(),
                maybe_delivered: true,
            });
        };
        let access_claims = claims(access);
        let refresh_claims = claims(refresh);
        let endpoint = SessionEndpoint {
            pds: pds.to_owned(),
            did: session.did.clone(),
            handle: session.handle.clone(),
        };
        Ok(Grant {
            access_token: Secret::new(access.clone()),
            refresh_token: Some(Secret::new(refresh.clone())),
            token_type: "Bearer".into(),
            scopes: access_claims.scope.clone().into_iter().collect(),
            issued_at: now,
            expires_at: lifetime(&access_claims).map(|l| now.saturating_add(l)),
            refresh_expires_at: lifetime(&refresh_claims).map(|l| now.saturating_add(l)),
            target_tokens: Vec::new(),
            endpoint: serde_json::to_string(&endpoint).ok(),
        })
    }

    /// `com.atproto.server.getSession` with the access token.
    async fn get_session(
        &self,
        grant: &Grant,
        endpoint: &SessionEndpoint,
    ) -> Result<Session, PortError> {
        let request = self
            .to(&endpoint.pds)?
            .get(Self::xrpc(&endpoint.pds, "com.atproto.server.getSession"))
            .bearer_auth(grant.access_token.expose());
        let body = self.send(request, Call::Read, Endpoint::Identity).await?;
        serde_json::from_slice(&body).map_err(|e| Self::unreadable("getSession", &e, &body, false))
    }

    /// Best effort: ends a session a failing connect opened, so no live session is left
    /// that nobody stores.
    async fn discard(&self, pds: &str, refresh_jwt: Option<&str>) {
        let Some(refresh) = refresh_jwt else { return };
        let Ok(client) = self.to(pds) else { return };
        let request = client
            .post(Self::xrpc(pds, "com.atproto.server.deleteSession"))
            .bearer_auth(refresh);
        if let Err(error) = self.send(request, Call::Refresh, Endpoint::Revoke).await {
            tracing::warn!(platform = "bluesky", %error, "could not end a failed connect's session");
        }
    }

    /// Fetches one image and uploads it as a blob; returns the blob object.
    async fn upload_image(
        &self,
        grant: &Grant,
        endpoint: &SessionEndpoint,
        media: &Media,
    ) -> Result<Value, PortError> {
        let (bytes, content_type) =
            outbound::fetch_image(&self.guarded, media, |_| IMAGE_MAX_BYTES).await?;
        let request = self
            .to(&endpoint.pds)?
            .post(Self::xrpc(&endpoint.pds, "com.atproto.repo.uploadBlob"))
            .bearer_auth(grant.access_token.expose())
            .header(CONTENT_TYPE, content_type)
            .body(bytes.body());
        let body = self
            .send(request, Call::Upload, Endpoint::MediaUpload)
            .await
            .map_err(not_published)?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| Self::unreadable("uploadBlob", &e, &body, false))?;
        answer
            .get("blob")
            .cloned()
            .ok_or_else(|| PortError::Unavailable {
                detail: format!(
                    "Bluesky's uploadBlob answer has no blob: {}",
                    body_excerpt(&body)
                ),
                maybe_delivered: false,
            })
    }

    /// The facets of a text: links, resolvable mentions, hashtags.
    async fn facets(
        &self,
        endpoint: &SessionEndpoint,
        text: &str,
    ) -> Result<Vec<Value>, PortError> {
        let index = |s: &richtext::Span| json!({"byteStart": s.start, "byteEnd": s.end});
        let mut facets = Vec::new();
        for link in richtext::links(text) {
            facets.push(json!({
                "index": index(&link),
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": link.text}],
            }));
        }
        for mention in richtext::mentions(text) {
            let handle = mention.text.trim_start_matches('@').to_ascii_lowercase();
            // Unknown handles stay plain text.
            if let Some(did) = self
                .resolve_handle(&endpoint.pds, &handle)
                .await
                .map_err(not_published)?
            {
                facets.push(json!({
                    "index": index(&mention),
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
                }));
            }
        }
        for tag in richtext::hashtags(text) {
            facets.push(json!({
                "index": index(&tag),
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag.text}],
            }));
        }
        Ok(facets)
    }

    /// `com.atproto.repo.getRecord`: the record at `rkey`, if it exists.
    async fn get_record(
        &self,
        grant: &Grant,
        endpoint: &SessionEndpoint,
        rkey: &str,
    ) -> Result<Option<String>, PortError> {
        #[derive(Deserialize)]
        struct Found {
            uri: String,
        }
        let request = self
            .to(&endpoint.pds)?
            .get(Self::xrpc(&endpoint.pds, "com.atproto.repo.getRecord"))
            .bearer_auth(grant.access_token.expose())
            .query(&[
                ("repo", endpoint.did.as_str()),
                ("collection", POST_COLLECTION),
                ("rkey", rkey),
            ]);
        let (status, headers, body) = self.exchange(request, Endpoint::PublishStatus).await?;
        if status.is_success() {
            return serde_json::from_slice::<Found>(&body)
                .map(|f| Some(f.uri))
                .map_err(|e| Self::unreadable("getRecord", &e, &body, false));
        }
        if XrpcError::read(&body).name() == "RecordNotFound" {
            return Ok(None);
        }
        Err(self.classify(status, &headers, &body, Call::Read))
    }

    fn receipt(endpoint: &SessionEndpoint, uri: String, rkey: &str) -> Receipt {
        Receipt {
            url: Some(format!(
                "https://bsky.app/profile/{}/post/{rkey}",
                endpoint.handle
            )),
            platform_post_id: uri,
        }
    }

    /// Opens a session: the body of [`Adapter::connect_with_app_password`].
    async fn open_session(
        &self,
        identifier: &str,
        password: Secret,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        if !looks_like_app_password(password.expose()) {
            return Err(ConnectError::RequirementUnmet(Reason::new(
                ReasonCode::AppPasswordRequired,
            )));
        }
        let identifier = identifier
            .trim()
            .trim_start_matches('@')
            .to_ascii_lowercase();
        if identifier.is_empty() {
            return Err(refused("no handle or DID was given"));
        }
        let did = if identifier.starts_with("did:") {
            identifier.clone()
        } else {
            self.resolve_handle(&self.service, &identifier)
                .await?
                .ok_or_else(|| refused(&format!("Unable to resolve handle: {identifier}")))?
        };
        #[derive(Serialize)]
        struct CreateSession<'a> {
            identifier: &'a str,
            password: &'a str,
        }
        let request = self
            .http
            .post(Self::xrpc(
                &self.service,
                "com.atproto.server.createSession",
            ))
            .json(&CreateSession {
                identifier: &did,
                password: password.expose(),
            });
        // The password goes no further than this request.
        drop(password);
        let (status, headers, body) = self.exchange(request, Endpoint::Token).await?;
        if !status.is_success() {
            let problem = XrpcError::read(&body);
            return Err(match problem.name() {
                "AuthenticationRequired" | "InvalidToken" => {
                    ConnectError::AuthorizationRefused(Reason::with_platform_message(
                        ReasonCode::AppPasswordRejected,
                        problem.said(status, &body),
                    ))
                }
                // Two-factor sign-in applies to the main password only.
                "AuthFactorTokenRequired" => {
                    ConnectError::RequirementUnmet(Reason::with_platform_message(
                        ReasonCode::AppPasswordRequired,
                        problem.said(status, &body),
                    ))
                }
                _ => self.classify(status, &headers, &body, Call::Read).into(),
            });
        }
        let session: Session = serde_json::from_slice(&body)
            .map_err(|e| ConnectError::from(Self::unreadable("createSession", &e, &body, true)))?;
        let pds = match session.did_doc.as_ref().and_then(pds_of) {
            Some(pds) => pds,
            None => match self.resolve_pds(&session.did).await {
                Ok(Some(pds)) => pds,
                Ok(None) => self.service.clone(),
                Err(error) => {
                    self.discard(&self.service, session.refresh_jwt.as_deref())
                        .await;
                    return Err(error.into());
                }
            },
        };
        if let Err(error) = self.check_pds(&pds).await {
            self.discard(&self.service, session.refresh_jwt.as_deref())
                .await;
            return Err(error.into());
        }
        let unmet = if session.did != did {
            Some(ConnectError::AuthorizationRefused(
                Reason::with_platform_message(
                    ReasonCode::AppPasswordRejected,
                    format!("the session is for {}, not {did}", session.did),
                ),
            ))
        } else if let Some(reason) = session.suspended() {
            Some(ConnectError::RequirementUnmet(reason))
        } else if session
            .access_jwt
            .as_deref()
            .map(claims)
            .and_then(|c| c.scope)
            .is_some_and(|scope| scope == "com.atproto.access")
        {
            // A full-access session: the account's main password was given.
            Some(ConnectError::RequirementUnmet(Reason::new(
                ReasonCode::AppPasswordRequired,
            )))
        } else {
            None
        };
        if let Some(error) = unmet {
            self.discard(&pds, session.refresh_jwt.as_deref()).await;
            return Err(error);
        }
        let grant = self.grant(&session, &pds, now)?;
        tracing::info!(platform = "bluesky", did = %session.did, %pds, "account connected");
        let account = session.account();
        Ok(Connected {
            targets: vec![Target {
                kind: TargetKind::Profile,
                id: session.did.clone(),
                name: account.handle.clone(),
            }],
            account,
            grant,
        })
    }
}

/// A PDS (or `did:web` host) outside the public internet: the account cannot be used
/// from here, and nothing was sent there.
fn pds_not_public(refusal: &outbound::public_only::NotPublic) -> PortError {
    PortError::RequirementUnmet(Reason::with_platform_message(
        ReasonCode::PdsNotPublic,
        format!("the account's PDS or identity host {refusal}"),
    ))
}

/// The connect refusal for an identifier or password Bluesky did not accept.
fn refused(message: &str) -> ConnectError {
    ConnectError::AuthorizationRefused(Reason::with_platform_message(
        ReasonCode::AppPasswordRejected,
        message,
    ))
}

/// A failure before the record was written cannot have published anything.
fn not_published(error: PortError) -> PortError {
    match error {
        PortError::Unavailable { detail, .. } => PortError::Unavailable {
            detail,
            maybe_delivered: false,
        },
        other => other,
    }
}

#[async_trait]
impl PlatformPort for BlueskyAdapter {
    fn platform(&self) -> Platform {
        Platform::Bluesky
    }

    #[tracing::instrument(skip_all, fields(platform = "bluesky"))]
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let endpoint = SessionEndpoint::of(grant)?;
        let Some(refresh) = &grant.refresh_token else {
            return Err(PortError::GrantDead(Reason::new(
                ReasonCode::AuthorizationInvalid,
            )));
        };
        let request = self
            .to(&endpoint.pds)?
            .post(Self::xrpc(
                &endpoint.pds,
                "com.atproto.server.refreshSession",
            ))
            .bearer_auth(refresh.expose());
        let body = self.send(request, Call::Refresh, Endpoint::Refresh).await?;
        let session: Session = serde_json::from_slice(&body)
            .map_err(|e| Self::unreadable("refreshSession", &e, &body, true))?;
        if let Some(reason) = session.suspended() {
            return Err(PortError::RequirementUnmet(reason));
        }
        let pds = session
            .did_doc
            .as_ref()
            .and_then(pds_of)
            .unwrap_or(endpoint.pds);
        self.grant(&session, &pds, self.clock.now())
    }

    #[tracing::instrument(skip_all, fields(platform = "bluesky"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        let endpoint = SessionEndpoint::of(grant)?;
        // An access token outlives a revoked app password: only a renewal proves the
        // grant, and the actor renews (and stores the successor) when told Unauthorized.
        if grant.issued_at.saturating_add(PROVEN_WITHIN) < self.clock.now() {
            return Err(PortError::Unauthorized);
        }
        let session = self.get_session(grant, &endpoint).await?;
        if let Some(reason) = session.suspended() {
            return Err(PortError::RequirementUnmet(reason));
        }
        Ok(session.account())
    }

    #[tracing::instrument(skip_all, fields(platform = "bluesky", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                words.join("; "),
            )));
        }
        let endpoint = SessionEndpoint::of(grant)?;
        let rkey = richtext::tid_for(post.id);
        // A retry may find the record already written (the answer was lost): confirm it.
        if post.attempts > 1 {
            if let Ok(Some(uri)) = self.get_record(grant, &endpoint, &rkey).await {
                tracing::info!(platform = "bluesky", %uri, "post already published; confirmed");
                return Ok(Self::receipt(&endpoint, uri, &rkey));
            }
        }
        let text = post_text(&post.content);
        let facets = self.facets(&endpoint, &text).await?;
        let mut images = Vec::new();
        for media in &post.content.media {
            let blob = self.upload_image(grant, &endpoint, media).await?;
            images.push(json!({"image": blob, "alt": media.alt.clone().unwrap_or_default()}));
        }
        let created_at = self.clock.now().to_rfc3339();
        let mut record = json!({
            "$type": POST_COLLECTION,
            "text": text,
            "createdAt": created_at,
        });
        if !facets.is_empty() {
            record["facets"] = Value::Array(facets);
        }
        if !images.is_empty() {
            record["embed"] = json!({"$type": "app.bsky.embed.images", "images": images});
        } else if let Some(link) = post.content.links.first() {
            record["embed"] = json!({
                "$type": "app.bsky.embed.external",
                "external": {
                    "uri": link,
                    "title": post.content.title.clone().unwrap_or_else(|| link.clone()),
                    "description": "",
                },
            });
        }
        let request = self
            .to(&endpoint.pds)?
            .post(Self::xrpc(&endpoint.pds, "com.atproto.repo.createRecord"))
            .bearer_auth(grant.access_token.expose())
            .json(&json!({
                "repo": endpoint.did,
                "collection": POST_COLLECTION,
                "rkey": rkey,
                "record": record,
            }));
        match self.send(request, Call::Publish, Endpoint::Publish).await {
            Ok(answer) => {
                #[derive(Deserialize)]
                struct Created {
                    uri: String,
                }
                let created: Created = serde_json::from_slice(&answer)
                    .map_err(|e| Self::unreadable("createRecord", &e, &answer, true))?;
                tracing::info!(platform = "bluesky", uri = %created.uri, "post published");
                Ok(Self::receipt(&endpoint, created.uri, &rkey))
            }
            // The key is taken (the reference PDS answers 500 for a second value at a
            // key) or the answer was lost: the record may be there. Look before failing.
            Err(error @ (PortError::Unavailable { .. } | PortError::ContentRejected(_))) => {
                match self.get_record(grant, &endpoint, &rkey).await {
                    Ok(Some(uri)) => {
                        tracing::info!(platform = "bluesky", %uri, "post already published; confirmed");
                        Ok(Self::receipt(&endpoint, uri, &rkey))
                    }
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    #[tracing::instrument(skip_all, fields(platform = "bluesky"))]
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        let endpoint = SessionEndpoint::of(grant)?;
        let Some(refresh) = &grant.refresh_token else {
            return Ok(RevokeOutcome::Revoked);
        };
        let request = self
            .to(&endpoint.pds)?
            .post(Self::xrpc(
                &endpoint.pds,
                "com.atproto.server.deleteSession",
            ))
            .bearer_auth(refresh.expose());
        match self.send(request, Call::Refresh, Endpoint::Revoke).await {
            Ok(_) => Ok(RevokeOutcome::Revoked),
            // Already revoked or expired: nothing is left to end.
            Err(PortError::GrantDead(_)) => Ok(RevokeOutcome::Revoked),
            Err(error) => Err(error),
        }
    }

    fn lost_refresh_policy(&self) -> LostRefreshPolicy {
        LostRefreshPolicy::GracePeriod(REFRESH_GRACE)
    }

    fn idempotent_publish(&self) -> bool {
        true
    }
}

#[async_trait]
impl Adapter for BlueskyAdapter {
    fn authorize(
        &self,
        _state: &str,
        _redirect_uri: &str,
    ) -> Result<AuthorizeRequest, ConnectError> {
        Err(ConnectError::RequirementUnmet(Reason::with_platform_message(
            ReasonCode::AppPasswordRequired,
            "Bluesky connects with an identifier and an app password, not through a consent page",
        )))
    }

    async fn connect(
        &self,
        _code: &str,
        _pkce_verifier: Option<&Secret>,
        _redirect_uri: &str,
        _now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        Err(ConnectError::RequirementUnmet(Reason::with_platform_message(
            ReasonCode::AppPasswordRequired,
            "Bluesky connects with an identifier and an app password, not through a consent page",
        )))
    }

    #[tracing::instrument(skip_all, fields(platform = "bluesky"))]
    async fn connect_with_app_password(
        &self,
        identifier: &str,
        app_password: Secret,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        self.open_session(identifier, app_password, now).await
    }

    fn scopes(&self) -> &'static [&'static str] {
        &[]
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        if !Platform::Bluesky.supports(post.kind) {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        let content = &post.content;
        let text = post_text(content);
        if text.trim().is_empty() && content.media.is_empty() {
            errors.push(ContentError::EmptyPost);
        }
        let graphemes = text.graphemes(true).count();
        if graphemes > MAX_GRAPHEMES {
            errors.push(ContentError::TextTooLong {
                limit: MAX_GRAPHEMES,
                actual: graphemes,
            });
        }
        if text.len() > MAX_TEXT_BYTES {
            errors.push(ContentError::TextTooManyBytes {
                limit: MAX_TEXT_BYTES,
                actual: text.len(),
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

    #[test]
    fn app_passwords_are_recognised_by_shape() {
        assert!(looks_like_app_password("abcd-efgh-ijkl-mn23"));
        assert!(!looks_like_app_password("hunter2"));
        assert!(!looks_like_app_password("abcd-efgh-ijkl"));
        assert!(!looks_like_app_password("abcd-efgh-ijkl-mnopq"));
        assert!(!looks_like_app_password("ab d-efgh-ijkl-mnop"));
    }

    #[test]
    fn jwt_claims_are_read_without_verifying() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"scope":"com.atproto.appPass","iat":100,"exp":7300}"#);
        let c = claims(&format!("e30.{payload}.sig"));
        assert_eq!(lifetime(&c), Some(Duration::from_secs(7200)));
        assert_eq!(c.scope.as_deref(), Some("com.atproto.appPass"));
        assert!(lifetime(&claims("not-a-jwt")).is_none());
    }

    #[test]
    fn the_pds_is_the_atproto_pds_service() {
        let doc = json!({"id": "did:plc:x", "service": [
            {"id": "#other", "type": "X", "serviceEndpoint": "https://other"},
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example/"}
        ]});
        assert_eq!(pds_of(&doc).as_deref(), Some("https://pds.example"));
        assert_eq!(pds_of(&json!({})), None);
    }
}
