//! YouTube (Data API v3, Google OAuth 2.0 with PKCE), video uploads only.
//!
//! - Connect ([`SCOPES`]): `youtube.upload` to insert videos, and `youtube.readonly`
//!   because `channels.list` (the identity call, `mine=true`) accepts only `youtube`,
//!   `youtube.readonly`, `youtube.force-ssl` or the partner scopes — not
//!   `youtube.upload`; `youtube.readonly` is the narrowest of those. PKCE S256, `state`,
//!   and Google's `access_type=offline` (a refresh token) and `prompt=consent` (Google
//!   sends a refresh token only at a consent, so a reconnect must show one again). The
//!   client authenticates with `client_id`/`client_secret` in the form body, as Google's
//!   web-server flow documents. The account is the author's channel
//!   (`GET /youtube/v3/channels?part=id,snippet&mine=true`), which is also the one
//!   target; a Google account without a channel is refused by name
//!   (`youtube_channel_required`).
//! - Tokens: access tokens last about an hour; refresh tokens do not rotate, and a
//!   refresh answer without `refresh_token` keeps the one the grant has. 400
//!   `invalid_grant` "Token has been expired or revoked." — Google does not say which —
//!   kills the grant as `grant_expired` with Google's words. Revoke is `POST /revoke`
//!   with the token in the form; Google revokes the whole grant with the refresh token
//!   and then answers 400 `invalid_token` for the access token, which is not an error.
//! - Publish ([`upload`]): the video is fetched from its URL, then a resumable upload —
//!   `POST {api_base}/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`
//!   with the metadata, then the bytes `PUT` in chunks to the session URI Google answers
//!   in `Location`. A chunk that fails (a 5xx, a dropped connection) is followed by a
//!   status query (`Content-Range: bytes */TOTAL`), and the upload resumes where Google's
//!   `Range` says it stopped. The receipt URL is `https://www.youtube.com/watch?v={id}`.
//! - Quota ([`quota`], [`pacific`]): the adapter counts the units the project spends per
//!   Pacific day and holds an upload the day cannot pay for, as Google does with a 403
//!   `quotaExceeded`: both are `RateLimited` for the whole platform until the next
//!   Pacific midnight, so the queue keeps the post scheduled instead of failing it.
//! - Content: a title (≤ 100 characters), a description (the text, then its links; ≤ 5000
//!   UTF-8 bytes), neither with `<` or `>`; exactly one video. Community posts have no
//!   public API and are refused as `not_offered_by_platform`.
//!
//! | Google answered | class |
//! |---|---|
//! | token endpoint 400 `invalid_grant` "Token has been expired or revoked." | `GrantDead(grant_expired)` |
//! | token endpoint other `invalid_grant` | `GrantDead(authorization_invalid)` |
//! | token endpoint 401 / `invalid_client` / `unauthorized_client` | `RequirementUnmet(app_credentials_rejected)` |
//! | API 401 | `Unauthorized` (refresh, then retry) |
//! | 403 `quotaExceeded` (or the adapter's own count) | `RateLimited` (platform) until the next Pacific midnight |
//! | 400 `uploadLimitExceeded` | `RateLimited` (this connection) until the next Pacific midnight |
//! | 403 `rateLimitExceeded` / `userRateLimitExceeded`, 429 | `RateLimited` (this connection), `Retry-After` or a minute |
//! | other 403 | `RequirementUnmet(permission_removed)` with Google's message |
//! | 400 on an upload | `ContentRejected(content_rejected)` with Google's message |
//! | 5xx, timeouts, lost answers | `Unavailable` (a lost final chunk may have published) |

mod pacific;
mod quota;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use social_studio_actors::{
    Clock, LimitScope, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, Content, Grant, MediaKind, Platform, Post, PostKind, Reason, ReasonCode,
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

pub use pacific::{next_pacific_midnight, pacific_date, until_next_pacific_midnight};
use quota::QuotaLedger;
pub use quota::{QuotaPolicy, DEFAULT_DAILY_UNITS, LIST_UNITS, UPLOAD_UNITS};

/// Google's real endpoints for YouTube (the defaults a `[platforms.youtube]` section
/// overrides).
pub const ENDPOINTS: super::Endpoints = super::Endpoints {
    auth_url: "https://accounts.google.com/o/oauth2/v2/auth",
    token_url: "https://oauth2.googleapis.com/token",
    revoke_url: Some("https://oauth2.googleapis.com/revoke"),
    api_base: "https://www.googleapis.com",
};

/// Upload videos (`videos.insert`).
pub const UPLOAD_SCOPE: &str = "https://www.googleapis.com/auth/youtube.upload";
/// Read the author's channel (`channels.list?mine=true`), which `youtube.upload` does not
/// allow.
pub const READONLY_SCOPE: &str = "https://www.googleapis.com/auth/youtube.readonly";

/// The least scopes posting needs.
pub const SCOPES: &[&str] = &[UPLOAD_SCOPE, READONLY_SCOPE];

/// Title: at most 100 characters; description: at most 5000 bytes (UTF-8). Neither may
/// hold `<` or `>`.
pub const MAX_TITLE: usize = 100;
pub const MAX_DESCRIPTION_BYTES: usize = 5000;

/// Google's refresh refusal for a revoked or lapsed refresh token.
const EXPIRED_OR_REVOKED: &str = "Token has been expired or revoked";

/// What a 429 or a short-term rate limit waits when Google does not say.
const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(60);

/// The YouTube adapter.
pub struct YoutubeAdapter {
    /// Authorize, code exchange, refresh and revoke, in Google's OAuth dialect.
    oauth: OAuthClient,
    /// API calls and upload chunks; redirects disabled.
    http: reqwest::Client,
    /// Counts every call, as YouTube's.
    meter: outbound::CallMeter,
    /// Media fetches: the author's URLs, reaching only the public internet unless
    /// `allow_private_media_urls` ([`outbound::GuardedClient`]).
    media: outbound::GuardedClient,
    /// `https://www.googleapis.com`, or the sandbox's `{base}/youtube`; no trailing slash.
    /// The API is at `{api_base}/youtube/v3`, uploads at `{api_base}/upload/youtube/v3`,
    /// as on Google's own host.
    api_base: String,
    /// The time refreshes are issued at and the Pacific day is read from.
    clock: Arc<dyn Clock>,
    /// The project's units spent today.
    quota: QuotaLedger,
    /// How uploads are sent and what the video is published as.
    upload: upload::UploadSettings,
}

impl std::fmt::Debug for YoutubeAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YoutubeAdapter")
            .field("api_base", &self.api_base)
            .field("oauth", &self.oauth)
            .field("quota", &self.quota.policy())
            .finish_non_exhaustive()
    }
}

/// Google's OAuth dialect.
fn profile() -> OAuthProfile {
    OAuthProfile {
        scopes: SCOPES,
        client_auth: ClientAuth::RequestBody,
        pkce: true,
        authorize_params: vec![
            ("access_type".into(), "offline".into()),
            ("prompt".into(), "consent".into()),
        ],
        refresh_tokens: RefreshTokens::Reusable,
        grant_refusals: Some(grant_refusals),
    }
}

/// `GET /youtube/v3/channels` as far as the engine reads it.
#[derive(Debug, Deserialize)]
struct ChannelList {
    #[serde(default)]
    items: Vec<Channel>,
}

#[derive(Debug, Clone, Deserialize)]
struct Channel {
    id: String,
    #[serde(default)]
    snippet: ChannelSnippet,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelSnippet {
    #[serde(default)]
    title: String,
    /// The channel's handle (`@name`), where it has one.
    #[serde(default)]
    custom_url: Option<String>,
    #[serde(default)]
    thumbnails: Thumbnails,
}

/// A channel's pictures by size (`default` 88 px, `medium` 240 px, `high` 800 px).
#[derive(Debug, Clone, Default, Deserialize)]
struct Thumbnails {
    #[serde(default)]
    default: Option<Thumbnail>,
    #[serde(default)]
    medium: Option<Thumbnail>,
    #[serde(default)]
    high: Option<Thumbnail>,
}

#[derive(Debug, Clone, Deserialize)]
struct Thumbnail {
    url: String,
}

impl Thumbnails {
    /// The medium picture, else whichever size there is.
    fn picture(&self) -> Option<String> {
        [&self.medium, &self.high, &self.default]
            .into_iter()
            .flatten()
            .find_map(|t| super::picture_url(Some(&t.url)))
    }
}

impl Channel {
    fn account(&self) -> Account {
        let title = if self.snippet.title.is_empty() {
            self.id.clone()
        } else {
            self.snippet.title.clone()
        };
        Account {
            platform_id: self.id.clone(),
            handle: self
                .snippet
                .custom_url
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| title.clone()),
            display_name: title,
            kind: AccountKind::Creator,
            picture: self.snippet.thumbnails.picture(),
        }
    }

    fn target(&self) -> Target {
        Target {
            kind: TargetKind::Profile,
            id: self.id.clone(),
            name: self.account().display_name,
        }
    }
}

/// Google's API error envelope:
/// `{"error":{"code","message","errors":[{"reason","message","domain"}],"status"}}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// What Google said in an error answer: its reasons and its message.
#[derive(Debug, Default)]
struct GoogleError {
    reasons: Vec<String>,
    message: Option<String>,
}

impl GoogleError {
    fn read(body: &[u8]) -> GoogleError {
        let envelope: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
        let Some(error) = envelope.error else {
            return GoogleError::default();
        };
        let message = error
            .message
            .clone()
            .or_else(|| error.errors.iter().find_map(|e| e.message.clone()))
            .filter(|m| !m.is_empty());
        GoogleError {
            reasons: error.errors.into_iter().filter_map(|e| e.reason).collect(),
            message,
        }
    }

    fn has(&self, reason: &str) -> bool {
        self.reasons.iter().any(|r| r == reason)
    }
}

/// Which API call failed: the same status means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Identity,
    Upload,
}

impl YoutubeAdapter {
    /// An adapter for the Google app in `settings`, reading time from the system clock,
    /// with Google's default quota ([`QuotaPolicy::default`]).
    pub fn new(settings: &PlatformSettings) -> Result<YoutubeAdapter, SettingsError> {
        Self::new_with(settings, &outbound::Outbound::default())
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<YoutubeAdapter, SettingsError> {
        check_endpoint("api_base", &settings.api_base)?;
        let http = outbound.client(outbound::DEFAULT_TIMEOUT)?;
        let meter = outbound.meter(Platform::Youtube);
        let oauth = OAuthClient::new(settings, profile(), http.clone(), meter.clone())?;
        Ok(YoutubeAdapter {
            oauth,
            http,
            meter,
            media: outbound.guarded(
                Platform::Youtube,
                outbound::DEFAULT_TIMEOUT,
                outbound::Reach::allowing_private(settings.allow_private_media_urls),
            )?,
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            clock: Arc::new(SystemClock),
            quota: QuotaLedger::new(QuotaPolicy::default()),
            upload: upload::UploadSettings::default(),
        })
    }

    /// Reads time from `clock` instead: the engine passes its own, so that refreshes and
    /// the quota's Pacific day follow the same (in tests, virtual) time as the actors.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> YoutubeAdapter {
        self.clock = clock;
        self
    }

    /// Holds the media it fetches for upload against `budget`, the engine's one budget
    /// shared by every adapter (configuration key `media_memory_bytes`).
    pub fn with_media_budget(mut self, budget: outbound::MediaBudget) -> YoutubeAdapter {
        self.media = self.media.with_media_budget(budget);
        self
    }

    /// Counts against `policy` instead of Google's defaults (a project granted more
    /// quota, or one on the separate `videos.insert` bucket). Starts a fresh count.
    pub fn with_quota(mut self, policy: QuotaPolicy) -> YoutubeAdapter {
        self.quota = QuotaLedger::new(policy);
        self
    }

    /// Sends the video in chunks of `bytes`, rounded down to Google's 256 KiB multiple
    /// (at least one such unit). The default is 8 MiB.
    pub fn with_chunk_size(mut self, bytes: usize) -> YoutubeAdapter {
        self.upload.chunk_size = upload::chunk_size(bytes);
        self
    }

    /// Publishes videos as `privacy_status` (`public`, `unlisted` or `private`; the
    /// default is `public`). Google locks videos uploaded by unaudited API projects to
    /// private whatever is asked.
    pub fn with_privacy_status(mut self, privacy_status: impl Into<String>) -> YoutubeAdapter {
        self.upload.privacy_status = privacy_status.into();
        self
    }

    /// Fetches at most `bytes` of video (default 256 MiB): the engine holds the whole
    /// video in memory while it uploads.
    pub fn with_max_video_bytes(mut self, bytes: usize) -> YoutubeAdapter {
        self.upload.max_video_bytes = bytes;
        self
    }

    /// Units the project has left today, by the adapter's count.
    pub fn remaining_quota(&self) -> u32 {
        self.quota.remaining(self.clock.now())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// `GET /youtube/v3/channels?part=id,snippet&mine=true`: the author's channel, if the
    /// Google account has one.
    async fn my_channel(&self, grant: &Grant) -> Result<Option<Channel>, PortError> {
        let request = self
            .http
            .get(self.url("/youtube/v3/channels"))
            .query(&[("part", "id,snippet"), ("mine", "true")])
            .bearer_auth(grant.access_token.expose());
        // Google charges every call, answered or not; the identity call is never held.
        self.quota
            .charge(self.clock.now(), self.quota.policy().list_units);
        let body = self.api(request, Call::Identity).await?;
        let list: ChannelList =
            serde_json::from_slice(&body).map_err(|error| PortError::Unavailable {
                detail: format!(
                    "YouTube's channels answer could not be read ({}): {}",
                    outbound::json_failure(&error),
                    body_excerpt(&body)
                ),
                maybe_delivered: false,
            })?;
        Ok(list.items.into_iter().next())
    }

    /// Sends one API call and returns its body, or the classified failure.
    async fn api(&self, request: RequestBuilder, call: Call) -> Result<Vec<u8>, PortError> {
        let endpoint = match call {
            Call::Identity => outbound::Endpoint::Identity,
            Call::Upload => outbound::Endpoint::MediaUpload,
        };
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(endpoint)).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.classify(status, &headers, &body, call))
    }

    /// Classifies an API answer that is not a 2xx (or a 308 where one is expected).
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        call: Call,
    ) -> PortError {
        let now = self.clock.now();
        let google = GoogleError::read(body);
        let said = || google.message.clone().unwrap_or_else(|| body_excerpt(body));
        if google.has("quotaExceeded") || google.has("dailyLimitExceeded") {
            self.quota.exhaust(now);
            tracing::warn!(platform = "youtube", message = %said(), "the project's daily quota is spent");
            return self.quota_spent(now);
        }
        if google.has("uploadLimitExceeded") {
            tracing::warn!(
                platform = "youtube",
                message = %said(),
                "uploadLimitExceeded: the channel may upload no more videos today"
            );
            return PortError::RateLimited {
                retry_after: until_next_pacific_midnight(now),
                scope: LimitScope::Connection,
            };
        }
        if google.has("rateLimitExceeded")
            || google.has("userRateLimitExceeded")
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return PortError::RateLimited {
                retry_after: outbound::retry_after(headers, now).unwrap_or(DEFAULT_RATE_WAIT),
                scope: LimitScope::Connection,
            };
        }
        match (status, call) {
            (StatusCode::UNAUTHORIZED, _) => PortError::Unauthorized,
            (status, _) if status.is_server_error() => {
                outbound::server_error(status, body_excerpt(body))
            }
            (StatusCode::FORBIDDEN, _) => PortError::RequirementUnmet(
                Reason::with_platform_message(ReasonCode::PermissionRemoved, said()),
            ),
            (StatusCode::BAD_REQUEST, Call::Upload) => PortError::ContentRejected(
                Reason::with_platform_message(ReasonCode::ContentRejected, said()),
            ),
            // Another 4xx means the request never matched a YouTube resource (a
            // misconfigured api_base, a retired route): nothing was done.
            (status, _) => PortError::Unavailable {
                detail: format!("YouTube answered HTTP {status}: {}", body_excerpt(body)),
                maybe_delivered: false,
            },
        }
    }

    /// The day's quota is gone: every connection waits for the next Pacific midnight.
    fn quota_spent(&self, now: Timestamp) -> PortError {
        PortError::RateLimited {
            retry_after: until_next_pacific_midnight(now),
            scope: LimitScope::Platform,
        }
    }

    /// Best effort: revokes tokens issued to a connect that is failing, so that no live
    /// grant is left behind that nobody stores.
    async fn discard(&self, grant: &Grant, now: Timestamp) {
        if let Err(error) = self.oauth.revoke(grant, now).await {
            if !is_already_revoked(&error) {
                tracing::warn!(platform = "youtube", %error, "could not revoke a failed connect's tokens");
            }
        }
    }
}

/// Google answers a revoke of a token that is already gone (the access token, once the
/// refresh token revoked the grant) with 400 `invalid_token`: the token is gone, which
/// is what was asked.
fn is_already_revoked(error: &TokenError) -> bool {
    matches!(
        error,
        TokenError::GrantRefused { error, .. } | TokenError::ClientRefused { error, .. }
            if error == "invalid_token"
    )
}

/// Google's reading of a refused refresh: `invalid_grant` "Token has been expired or
/// revoked" does not say which — revoked by the author, unused for six months, a Testing
/// app's seven days, or past the per-client token limit. All lapse the grant, and a
/// reconnect is the remedy of each.
fn grant_refusals(
    request: TokenRequest,
    error: &str,
    description: Option<&str>,
) -> Option<ReasonCode> {
    let lapsed =
        error == "invalid_grant" && description.is_some_and(|d| d.starts_with(EXPIRED_OR_REVOKED));
    (request == TokenRequest::Refresh && lapsed).then_some(ReasonCode::GrantExpired)
}

/// The description YouTube receives: the post's text, then each of its links that the
/// text does not already contain, one per line.
pub fn description(content: &Content) -> String {
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

fn has_angle_brackets(text: &str) -> bool {
    text.contains(['<', '>'])
}

#[async_trait]
impl PlatformPort for YoutubeAdapter {
    fn platform(&self) -> Platform {
        Platform::Youtube
    }

    #[tracing::instrument(skip_all, fields(platform = "youtube"))]
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = self.clock.now();
        self.oauth
            .refresh(grant, now)
            .await
            .map_err(TokenError::into_port_error)
    }

    #[tracing::instrument(skip_all, fields(platform = "youtube"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        match self.my_channel(grant).await? {
            Some(channel) => Ok(channel.account()),
            None => Err(PortError::RequirementUnmet(no_channel())),
        }
    }

    #[tracing::instrument(skip_all, fields(platform = "youtube", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        // Scheduling validated the post already; checking again keeps a post that slipped
        // past (an older rule, an edited record) from costing an upload's quota.
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                words.join("; "),
            )));
        }
        let upload_units = self.quota.policy().upload_units;
        let now = self.clock.now();
        if self.quota.remaining(now) < upload_units {
            tracing::info!(
                platform = "youtube",
                remaining = self.quota.remaining(now),
                upload_units,
                "holding an upload until the quota resets at Pacific midnight"
            );
            return Err(self.quota_spent(now));
        }
        let video_id = self.upload_video(grant, post).await?;
        tracing::info!(platform = "youtube", video_id = %video_id, "video published");
        Ok(Receipt {
            url: Some(format!("https://www.youtube.com/watch?v={video_id}")),
            platform_post_id: video_id,
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "youtube"))]
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        let now = self.clock.now();
        match self.oauth.revoke(grant, now).await {
            Ok(outcome) => Ok(outcome),
            Err(error) if is_already_revoked(&error) => Ok(RevokeOutcome::Revoked),
            Err(error) => Err(error.into_port_error()),
        }
    }
}

/// The Google account has no channel to publish to.
fn no_channel() -> Reason {
    Reason::with_platform_message(
        ReasonCode::YoutubeChannelRequired,
        "channels.list with mine=true returned no channel for this Google account",
    )
}

#[async_trait]
impl Adapter for YoutubeAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        self.oauth.authorize(state, redirect_uri)
    }

    #[tracing::instrument(skip_all, fields(platform = "youtube"))]
    async fn connect(
        &self,
        code: &str,
        pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        let grant = self
            .oauth
            .exchange_code(code, pkce_verifier, redirect_uri, now)
            .await
            .map_err(TokenError::into_connect_error)?;

        // Google's consent screen lets the author untick scopes one by one.
        let unmet = super::ungranted("Google", SCOPES, &grant.scopes).or_else(|| {
            grant.refresh_token.is_none().then(|| {
                Reason::with_platform_message(
                    ReasonCode::PermissionRemoved,
                    "Google issued no refresh token (access_type=offline was not honoured), \
                     so the connection would lapse within the hour",
                )
            })
        });
        if let Some(reason) = unmet {
            self.discard(&grant, now).await;
            return Err(ConnectError::RequirementUnmet(reason));
        }

        let channel = match self.my_channel(&grant).await {
            Ok(Some(channel)) => channel,
            Ok(None) => {
                self.discard(&grant, now).await;
                return Err(ConnectError::RequirementUnmet(no_channel()));
            }
            Err(error) => {
                self.discard(&grant, now).await;
                return Err(error.into());
            }
        };
        tracing::info!(platform = "youtube", channel_id = %channel.id, "account connected");
        Ok(Connected {
            grant,
            account: channel.account(),
            targets: vec![channel.target()],
        })
    }

    fn scopes(&self) -> &'static [&'static str] {
        SCOPES
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        if post.kind != PostKind::Video || !Platform::Youtube.supports(post.kind) {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        let content = &post.content;
        let brackets = || "< or >".to_owned();
        match content.title.as_deref().map(str::trim) {
            None | Some("") => errors.push(ContentError::TitleRequired),
            Some(title) => {
                let length = title.chars().count();
                if length > MAX_TITLE {
                    errors.push(ContentError::TitleTooLong {
                        limit: MAX_TITLE,
                        actual: length,
                    });
                }
                if has_angle_brackets(title) {
                    errors.push(ContentError::ForbiddenCharacters {
                        field: "title".into(),
                        characters: brackets(),
                    });
                }
            }
        }
        let description = description(content);
        if description.len() > MAX_DESCRIPTION_BYTES {
            errors.push(ContentError::TextTooManyBytes {
                limit: MAX_DESCRIPTION_BYTES,
                actual: description.len(),
            });
        }
        if has_angle_brackets(&description) {
            errors.push(ContentError::ForbiddenCharacters {
                field: "description".into(),
                characters: brackets(),
            });
        }
        let videos = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Video)
            .count();
        let images = content.media.len() - videos;
        if images > 0 && videos > 0 {
            errors.push(ContentError::MixedMedia);
        } else if images > 0 {
            errors.push(ContentError::TooManyImages {
                limit: 0,
                actual: images,
            });
        }
        if videos == 0 {
            errors.push(ContentError::MediaRequired {
                what: "a video".into(),
            });
        } else if videos > 1 {
            errors.push(ContentError::TooManyVideos {
                limit: 1,
                actual: videos,
            });
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
    fn google_error_envelopes_are_read() {
        let body = br#"{"error":{"code":403,"message":"The request cannot be completed because you have exceeded your quota.","errors":[{"message":"The request cannot be completed because you have exceeded your quota.","domain":"youtube.quota","reason":"quotaExceeded"}]}}"#;
        let error = GoogleError::read(body);
        assert!(error.has("quotaExceeded"));
        assert!(error.message.unwrap().contains("exceeded your quota"));
        assert!(!GoogleError::read(b"<html>").has("quotaExceeded"));
    }

    #[test]
    fn the_description_carries_links_not_already_in_the_text() {
        let content = Content {
            text: "New chapter https://a.example".into(),
            title: Some("t".into()),
            links: vec!["https://a.example".into(), "https://b.example".into()],
            media: Vec::new(),
        };
        assert_eq!(
            description(&content),
            "New chapter https://a.example\nhttps://b.example"
        );
    }
}
