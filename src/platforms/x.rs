//! X (API v2, OAuth 2.0 authorization code with PKCE).
//!
//! - Connect: PKCE S256 (mandatory on X), HTTP Basic client authentication, scopes
//!   `tweet.read tweet.write users.read offline.access media.write`; the account is
//!   `GET /2/users/me`, its one target the profile itself.
//! - Refresh tokens are single-use: every refresh answers with a successor, and the one
//!   sent is spent — reused, X revokes the whole grant. X answers a spent, revoked or
//!   unknown refresh token alike (400 `invalid_request` "Value passed for the token was
//!   invalid."), so all of them are `authorization_invalid`.
//! - Publish: images are fetched from the post's media URLs and uploaded one request
//!   each (`POST /2/media/upload`, multipart), then `POST /2/tweets`. The receipt URL is
//!   `https://x.com/i/web/status/{id}`, which X resolves without the username (no extra
//!   call per post). Video needs X's chunked upload, which the engine does not do yet:
//!   validation refuses video posts by name instead of failing them at publish time.
//! - Content: 280 weighted characters ([`text`]), at most 4 images or 1 video, an
//!   animated GIF alone.
//!
//! | X answered | class |
//! |---|---|
//! | token endpoint 400 `invalid_request` / `invalid_grant` on refresh | `GrantDead(authorization_invalid)` |
//! | token endpoint 401 `unauthorized_client` | `RequirementUnmet(app_credentials_rejected)` |
//! | API 401 | `Unauthorized` (refresh, then retry) |
//! | API 429 | `RateLimited` until `x-rate-limit-reset`; app-wide when the app's 24-hour cap is spent |
//! | 403 duplicate content | `ContentRejected(content_rejected)` |
//! | 403 `client-forbidden` / `unsupported-authentication` | `RequirementUnmet(app_credentials_rejected)` |
//! | other 403 | `RequirementUnmet(permission_removed)` |
//! | 400 on a post or upload | `ContentRejected(content_rejected)` with X's message |
//! | 5xx, timeouts, lost answers | `Unavailable` |

mod text;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::multipart::{Form, Part};
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

pub use text::{url_spans, weighted_length, MAX_WEIGHTED_LENGTH, URL_WEIGHT};

/// X's real endpoints (the defaults a `[platforms.x]` section overrides key by key).
pub const ENDPOINTS: super::Endpoints = super::Endpoints {
    auth_url: "https://x.com/i/oauth2/authorize",
    token_url: "https://api.x.com/2/oauth2/token",
    revoke_url: Some("https://api.x.com/2/oauth2/revoke"),
    api_base: "https://api.x.com",
};

/// The least scopes posting needs: post and read back (`tweet.*`), identify the account
/// (`users.read`), renew without the author (`offline.access`), attach images
/// (`media.write`).
pub const SCOPES: &[&str] = &[
    "tweet.read",
    "tweet.write",
    "users.read",
    "offline.access",
    "media.write",
];

/// Scopes without which nothing can be posted; X's `POST /2/tweets` requires all three.
const POSTING_SCOPES: &[&str] = &["tweet.read", "tweet.write", "users.read"];

/// Per post: up to 4 images, or 1 GIF, or 1 video.
const MAX_IMAGES: usize = 4;
const MAX_VIDEOS: usize = 1;

/// Upload size limits X documents for the one-request upload.
const IMAGE_MAX_BYTES: usize = 5 * 1024 * 1024;
const GIF_MAX_BYTES: usize = 15 * 1024 * 1024;

/// Most X rate-limit windows: what to wait when a 429 does not say.
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Never ask the queue to wait less than this: a reset already past (clocks differ)
/// would otherwise retry at once into the same limit.
const MIN_RATE_WAIT: Duration = Duration::from_secs(1);

/// The X adapter.
pub struct XAdapter {
    /// Authorize, code exchange, refresh and revoke, in X's OAuth dialect.
    oauth: OAuthClient,
    /// API calls; redirects disabled.
    http: reqwest::Client,
    /// Counts every call, as X's.
    meter: outbound::CallMeter,
    /// Media fetches: the author's URLs, reaching only the public internet unless
    /// `allow_private_media_urls` ([`outbound::GuardedClient`]).
    media: outbound::GuardedClient,
    /// `https://api.x.com`, or the sandbox's `{base}/x`; no trailing slash.
    api_base: String,
    /// The time refreshes are issued at and rate-limit resets are measured from; the
    /// engine's clock, so that a virtual clock in tests reaches the adapter too.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for XAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XAdapter")
            .field("api_base", &self.api_base)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

/// X's OAuth dialect.
fn profile() -> OAuthProfile {
    OAuthProfile {
        scopes: SCOPES,
        client_auth: ClientAuth::Basic,
        pkce: true,
        authorize_params: Vec::new(),
        refresh_tokens: RefreshTokens::Rotating,
        grant_refusals: Some(grant_refusals),
    }
}

/// The user behind a token, as `GET /2/users/me` answers.
#[derive(Debug, Clone, Deserialize)]
struct XUser {
    id: String,
    username: String,
    name: String,
    /// Present when asked for with `user.fields=profile_image_url`.
    #[serde(default)]
    profile_image_url: Option<String>,
}

impl XUser {
    fn account(&self) -> Account {
        Account {
            platform_id: self.id.clone(),
            handle: format!("@{}", self.username),
            display_name: self.name.clone(),
            kind: AccountKind::Personal,
            picture: super::picture_url(self.profile_image_url.as_deref()),
        }
    }
}

/// X wraps every answer's payload in `data`.
#[derive(Debug, Deserialize)]
struct Data<T> {
    data: T,
}

/// The id of what was created (a post, an upload).
#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

/// Which API call failed: the same status means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Identity,
    Upload,
    Publish,
}

impl XAdapter {
    /// An adapter for the X app in `settings`, reading time from the system clock, its
    /// clients from reqwest's defaults.
    pub fn new(settings: &PlatformSettings) -> Result<XAdapter, SettingsError> {
        Self::new_with(settings, &outbound::Outbound::default())
    }

    /// An adapter whose clients are built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<XAdapter, SettingsError> {
        check_endpoint("api_base", &settings.api_base)?;
        let http = outbound.client(outbound::DEFAULT_TIMEOUT)?;
        let meter = outbound.meter(Platform::X);
        let oauth = OAuthClient::new(settings, profile(), http.clone(), meter.clone())?;
        Ok(XAdapter {
            oauth,
            http,
            meter,
            media: outbound.guarded(
                Platform::X,
                outbound::DEFAULT_TIMEOUT,
                outbound::Reach::allowing_private(settings.allow_private_media_urls),
            )?,
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads time from `clock` instead: the engine passes its own, so that refreshes and
    /// rate-limit waits follow the same (in tests, virtual) time as the actors.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> XAdapter {
        self.clock = clock;
        self
    }

    /// Holds the media it fetches for upload against `budget`, the engine's one budget
    /// shared by every adapter (configuration key `media_memory_bytes`).
    pub fn with_media_budget(mut self, budget: outbound::MediaBudget) -> XAdapter {
        self.media = self.media.with_media_budget(budget);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// `GET /2/users/me?user.fields=profile_image_url`: who the grant speaks for, with
    /// their picture.
    async fn me(&self, grant: &Grant) -> Result<XUser, PortError> {
        let request = self
            .http
            .get(self.url("/2/users/me"))
            .query(&[("user.fields", "profile_image_url")])
            .bearer_auth(grant.access_token.expose());
        let body = self.api(request, Call::Identity).await?;
        serde_json::from_slice::<Data<XUser>>(&body)
            .map(|d| d.data)
            .map_err(|error| PortError::Unavailable {
                detail: format!(
                    "X's users/me answer could not be read ({}): {}",
                    outbound::json_failure(&error),
                    body_excerpt(&body)
                ),
                maybe_delivered: false,
            })
    }

    /// Sends one API call and returns its body, or the classified failure.
    async fn api(&self, request: RequestBuilder, call: Call) -> Result<Vec<u8>, PortError> {
        let endpoint = match call {
            Call::Identity => outbound::Endpoint::Identity,
            Call::Upload => outbound::Endpoint::MediaUpload,
            Call::Publish => outbound::Endpoint::Publish,
        };
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(endpoint)).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.classify(status, &headers, &body, call))
    }

    /// Classifies an API answer that is not a 2xx.
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        call: Call,
    ) -> PortError {
        match status {
            StatusCode::UNAUTHORIZED => PortError::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => self.rate_limited(headers),
            status if status.is_server_error() => {
                outbound::server_error(status, body_excerpt(body))
            }
            StatusCode::FORBIDDEN => {
                let problem = Problem::read(body);
                let message = problem.message().unwrap_or_else(|| body_excerpt(body));
                if message.to_ascii_lowercase().contains("duplicate content") {
                    PortError::ContentRejected(Reason::with_platform_message(
                        ReasonCode::ContentRejected,
                        message,
                    ))
                } else if problem.is_about_the_app() {
                    PortError::RequirementUnmet(Reason::with_platform_message(
                        ReasonCode::AppCredentialsRejected,
                        message,
                    ))
                } else {
                    PortError::RequirementUnmet(Reason::with_platform_message(
                        ReasonCode::PermissionRemoved,
                        message,
                    ))
                }
            }
            StatusCode::BAD_REQUEST if call != Call::Identity => {
                let message = Problem::read(body)
                    .message()
                    .unwrap_or_else(|| body_excerpt(body));
                PortError::ContentRejected(Reason::with_platform_message(
                    ReasonCode::ContentRejected,
                    message,
                ))
            }
            // A 404 or another 4xx means the request never matched an X resource (a
            // misconfigured api_base, a retired route): nothing was done, and the
            // detail tells an administrator what to fix.
            status => PortError::Unavailable {
                detail: format!("X answered HTTP {status}: {}", body_excerpt(body)),
                maybe_delivered: false,
            },
        }
    }

    /// A 429, with the wait X announces. X sends a per-endpoint window
    /// (`x-rate-limit-reset`, unix seconds) and, on posting, 24-hour caps for the user
    /// and for the whole app; a spent app cap holds back every connection.
    fn rate_limited(&self, headers: &HeaderMap) -> PortError {
        let now = self.clock.now();
        let number =
            |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let wait_until = |reset_header: &str| {
            number(reset_header).map(|reset| {
                now.until(Timestamp::from_unix_millis(reset.saturating_mul(1000)))
                    .max(MIN_RATE_WAIT)
            })
        };
        let spent = |remaining_header: &str| number(remaining_header) == Some(0);
        if spent("x-app-limit-24hour-remaining") {
            if let Some(retry_after) = wait_until("x-app-limit-24hour-reset") {
                return PortError::RateLimited {
                    retry_after,
                    scope: LimitScope::Platform,
                };
            }
        }
        if spent("x-user-limit-24hour-remaining") {
            if let Some(retry_after) = wait_until("x-user-limit-24hour-reset") {
                return PortError::RateLimited {
                    retry_after,
                    scope: LimitScope::Connection,
                };
            }
        }
        let retry_after = wait_until("x-rate-limit-reset")
            .or_else(|| outbound::retry_after(headers, now))
            .unwrap_or(DEFAULT_RATE_WINDOW);
        PortError::RateLimited {
            retry_after,
            scope: LimitScope::Connection,
        }
    }

    /// Fetches one media item from its public URL (GIFs have their own, larger limit).
    async fn fetch_media(
        &self,
        media: &Media,
    ) -> Result<(outbound::MediaBytes, String), PortError> {
        outbound::fetch_image(&self.media, media, |content_type| {
            if content_type == "image/gif" {
                GIF_MAX_BYTES
            } else {
                IMAGE_MAX_BYTES
            }
        })
        .await
    }

    /// Uploads one image (`POST /2/media/upload`, one request, multipart) and returns
    /// its media id.
    async fn upload_image(&self, grant: &Grant, media: &Media) -> Result<String, PortError> {
        let (bytes, content_type) = self.fetch_media(media).await?;
        let category = if content_type == "image/gif" {
            "tweet_gif"
        } else {
            "tweet_image"
        };
        // The bytes stay held (and counted in the media budget) until the answer.
        let part = Part::stream_with_length(bytes.body(), bytes.len() as u64)
            .file_name("media")
            .mime_str(&content_type)
            .map_err(|error| {
                PortError::ContentRejected(Reason::with_platform_message(
                    ReasonCode::ContentRejected,
                    format!(
                        "the image at {} has an unusable type {content_type:?}: {error}",
                        media.url
                    ),
                ))
            })?;
        let form = Form::new()
            .text("media_category", category)
            .part("media", part);
        let request = self
            .http
            .post(self.url("/2/media/upload"))
            .bearer_auth(grant.access_token.expose())
            .multipart(form);
        let body = self
            .api(request, Call::Upload)
            .await
            .map_err(not_published)?;
        serde_json::from_slice::<Data<Created>>(&body)
            .map(|d| d.data.id)
            .map_err(|error| PortError::Unavailable {
                detail: format!(
                    "X's upload answer could not be read ({}): {}",
                    outbound::json_failure(&error),
                    body_excerpt(&body)
                ),
                maybe_delivered: false,
            })
    }

    /// Best effort: revokes tokens issued to a connect that is failing, so that no live
    /// grant is left behind that nobody stores.
    async fn discard(&self, grant: &Grant, now: Timestamp) {
        if let Err(error) = self.oauth.revoke(grant, now).await {
            tracing::warn!(platform = "x", %error, "could not revoke a failed connect's tokens");
        }
    }
}

/// An upload is not a post: whatever happened to it, the post was not published, so a
/// lost upload answer must not make the post look maybe-published.
fn not_published(error: PortError) -> PortError {
    match error {
        PortError::Unavailable { detail, .. } => PortError::Unavailable {
            detail,
            maybe_delivered: false,
        },
        other => other,
    }
}

/// The text X receives: the post's text, then each of its links that the text does not
/// already contain, one per line (X shows links inline; there is no separate field).
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

/// Whether a media URL names an animated GIF, which X takes only alone.
fn is_gif(media: &Media) -> bool {
    let path = media.url.split(['?', '#']).next().unwrap_or_default();
    path.to_ascii_lowercase().ends_with(".gif")
}

/// An X problem answer: `{"title","detail","type"}`, sometimes with
/// `"errors":[{"message"}]` (RFC 7807 style, as X's v2 API answers).
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    errors: Vec<ProblemError>,
}

#[derive(Debug, Default, Deserialize)]
struct ProblemError {
    #[serde(default)]
    message: Option<String>,
}

impl Problem {
    fn read(body: &[u8]) -> Problem {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The most specific words X gave: the first error message, else the detail, else
    /// the title.
    fn message(&self) -> Option<String> {
        self.errors
            .iter()
            .find_map(|e| e.message.clone())
            .or_else(|| self.detail.clone())
            .or_else(|| self.title.clone())
            .filter(|m| !m.is_empty())
    }

    /// X's problem types for an app that may not use this endpoint this way (not
    /// enrolled in a project, wrong authentication type): configuration, not the author.
    fn is_about_the_app(&self) -> bool {
        self.kind.as_deref().is_some_and(|kind| {
            kind.ends_with("/client-forbidden") || kind.ends_with("/unsupported-authentication")
        })
    }
}

/// X's reading of a refused refresh or revocation: X answers a spent, revoked or
/// unknown refresh token with 400 `invalid_request` "Value passed for the token was
/// invalid." (not `invalid_grant`), and cannot be made to say which — so it is
/// `authorization_invalid` with X's words, never a guess at `refresh_token_reused`.
fn grant_refusals(
    request: TokenRequest,
    error: &str,
    description: Option<&str>,
) -> Option<ReasonCode> {
    let token_invalid = error == "invalid_request"
        && description.is_some_and(|d| d.starts_with("Value passed for the token was invalid"));
    (request.presents_grant() && token_invalid).then_some(ReasonCode::AuthorizationInvalid)
}

#[async_trait]
impl PlatformPort for XAdapter {
    fn platform(&self) -> Platform {
        Platform::X
    }

    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = self.clock.now();
        self.oauth
            .refresh(grant, now)
            .await
            .map_err(TokenError::into_port_error)
    }

    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        self.me(grant).await.map(|user| user.account())
    }

    #[tracing::instrument(skip_all, fields(platform = "x", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        // Scheduling validated the post already; checking again costs nothing and keeps
        // a post that slipped past (an older rule, an edited record) from reaching X.
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                words.join("; "),
            )));
        }
        let mut media_ids = Vec::with_capacity(post.content.media.len());
        for media in &post.content.media {
            media_ids.push(self.upload_image(grant, media).await?);
        }
        let text = post_text(&post.content);
        let mut body = json!({});
        if !text.is_empty() {
            body["text"] = Value::String(text);
        }
        if !media_ids.is_empty() {
            body["media"] = json!({ "media_ids": media_ids });
        }
        let request = self
            .http
            .post(self.url("/2/tweets"))
            .bearer_auth(grant.access_token.expose())
            .json(&body);
        let answer = self.api(request, Call::Publish).await?;
        let created = serde_json::from_slice::<Data<Created>>(&answer).map_err(|error| {
            // X said 2xx: the post exists, but without its id it cannot be confirmed.
            PortError::Unavailable {
                detail: format!(
                    "X's answer to the post could not be read ({}): {}",
                    outbound::json_failure(&error),
                    body_excerpt(&answer)
                ),
                maybe_delivered: true,
            }
        })?;
        let id = created.data.id;
        tracing::info!(platform = "x", post_id = %id, "post published");
        Ok(Receipt {
            url: Some(format!("https://x.com/i/web/status/{id}")),
            platform_post_id: id,
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        let now = self.clock.now();
        self.oauth
            .revoke(grant, now)
            .await
            .map_err(TokenError::into_port_error)
    }
}

#[async_trait]
impl Adapter for XAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        self.oauth.authorize(state, redirect_uri)
    }

    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn connect(
        &self,
        code: &str,
        pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        if pkce_verifier.is_none() {
            // X requires PKCE; without the verifier the exchange can only fail, and
            // trying would spend the code.
            return Err(ConnectError::CodeRejected {
                platform_message: Some(
                    "X requires PKCE, and no code verifier was kept for this authorization".into(),
                ),
            });
        }
        let grant = self
            .oauth
            .exchange_code(code, pkce_verifier, redirect_uri, now)
            .await
            .map_err(TokenError::into_connect_error)?;

        let unmet = super::ungranted("X", POSTING_SCOPES, &grant.scopes).or_else(|| {
            grant.refresh_token.is_none().then(|| {
                Reason::with_platform_message(
                    ReasonCode::PermissionRemoved,
                    "X issued no refresh token (offline.access was not granted), so the \
                     connection would lapse in two hours",
                )
            })
        });
        if let Some(reason) = unmet {
            self.discard(&grant, now).await;
            return Err(ConnectError::RequirementUnmet(reason));
        }

        let user = match self.me(&grant).await {
            Ok(user) => user,
            Err(error) => {
                self.discard(&grant, now).await;
                return Err(error.into());
            }
        };
        tracing::info!(platform = "x", user_id = %user.id, "account connected");
        let account = user.account();
        let targets = vec![Target {
            kind: TargetKind::Profile,
            id: user.id.clone(),
            name: account.handle.clone(),
        }];
        Ok(Connected {
            grant,
            account,
            targets,
        })
    }

    fn scopes(&self) -> &'static [&'static str] {
        SCOPES
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        if !Platform::X.supports(post.kind) {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        let content = &post.content;
        let text = post_text(content);
        if text.trim().is_empty() && content.media.is_empty() {
            errors.push(ContentError::EmptyPost);
        }
        let length = weighted_length(&text);
        if length > MAX_WEIGHTED_LENGTH {
            errors.push(ContentError::TextTooLong {
                limit: MAX_WEIGHTED_LENGTH,
                actual: length,
            });
        }
        let images: Vec<&Media> = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Image)
            .collect();
        let videos = content.media.len() - images.len();
        if images.len() > MAX_IMAGES {
            errors.push(ContentError::TooManyImages {
                limit: MAX_IMAGES,
                actual: images.len(),
            });
        }
        if videos > MAX_VIDEOS {
            errors.push(ContentError::TooManyVideos {
                limit: MAX_VIDEOS,
                actual: videos,
            });
        }
        if videos > 0 && !images.is_empty() {
            errors.push(ContentError::MixedMedia);
        }
        if images.len() > 1 && images.iter().any(|m| is_gif(m)) {
            errors.push(ContentError::GifNotAlone);
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
