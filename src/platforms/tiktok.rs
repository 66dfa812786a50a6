//! TikTok (Login Kit for Web, Content Posting API — Direct Post).
//!
//! - Connect: TikTok's dialect of OAuth 2.0 spoken with reqwest ([`token`]): the app is
//!   `client_key`, credentials travel as form fields, scopes are comma-separated. The
//!   scopes are the least Direct Post needs: `user.info.basic` (the account's `open_id`
//!   and name, `GET /v2/user/info/`) and `video.publish` (creator info, video init and
//!   status fetch). `video.upload` is left out: it only sends drafts to the creator's
//!   inbox, which the engine never does. No PKCE: TikTok's Login Kit asks for a
//!   `code_challenge` from mobile and desktop apps only, and the engine is a web app
//!   with a client secret; a verifier handed to connect anyway is sent as
//!   `code_verifier`. `state` is passed through as given.
//! - At connect, the creator info (`POST /v2/post/publish/creator_info/query/`) proves
//!   the account can post now: `spam_risk_user_banned_from_posting` refuses the
//!   connection as `tiktok_account_not_eligible`. The account is the `open_id`, handled
//!   by `creator_username`; the one target is the creator's profile.
//! - Tokens: access tokens last hours, refresh tokens months, both read from each
//!   answer; refresh tokens rotate and the spent one is never kept. Revoke is `POST
//!   /v2/oauth/revoke/` with the access token.
//! - Publish: creator info first (TikTok requires the latest privacy options), then
//!   `POST /v2/post/publish/video/init/` with the caption as `post_info.title`, the
//!   most public `privacy_level` the creator offers, and the creator's interaction
//!   settings; the video goes by `PULL_FROM_URL` (TikTok fetches it from a verified
//!   domain) or by `FILE_UPLOAD` (the engine fetches it and `PUT`s it in chunks,
//!   [`upload`]), chosen by [`UploadMode`]. Then `POST /v2/post/publish/status/fetch/`
//!   is polled until `PUBLISH_COMPLETE` or `FAILED`, within a deadline; a post that
//!   never settles is `Unavailable { maybe_delivered: true }` (TikTok may still publish
//!   it). Once init has succeeded, no failure is reported as retryable without
//!   `maybe_delivered`, so a post is never sent twice.
//! - Unaudited apps: TikTok's docs say everything an unaudited client posts is private,
//!   and its error `unaudited_client_can_only_post_to_private_accounts` (403 on init)
//!   is the only place this surfaces — creator info does not tell. The engine does not
//!   silently retry as `SELF_ONLY`: the refusal is about the *account* being public, so
//!   `SELF_ONLY` on it is refused too, and posting privately what the author scheduled
//!   publicly would be a surprise. It answers `RequirementUnmet(tiktok_app_not_audited)`,
//!   whose remedy says what to do. Posts to private accounts go through, and TikTok
//!   itself makes them `SELF_ONLY`.
//! - Content: exactly one video; the caption (title, text and links not already in the
//!   text) is at most 2200 UTF-16 code units. A video the engine uploads itself is
//!   measured from its MP4/MOV movie header first: longer than the creator info's
//!   `max_video_post_duration_sec` is `ContentRejected` before any chunk is sent. A
//!   pulled video (the engine never holds it) and one whose header cannot be read (WebM)
//!   are left to TikTok's own `duration_check_failed`.
//!
//! | TikTok answered | class |
//! |---|---|
//! | `access_token_invalid` (401) | `Unauthorized` (refresh, then retry) |
//! | `scope_not_authorized`, `scope_permission_missed` (401) | `RequirementUnmet(permission_removed)` |
//! | `rate_limit_exceeded` (429) | `RateLimited` (this connection), `Retry-After` else 60 s |
//! | `spam_risk_too_many_posts` | `RateLimited` (this connection) for a day: the cap is daily |
//! | `reached_active_user_cap` | `RateLimited` (this connection) for a day: the app's daily cap of posting users |
//! | `spam_risk_user_banned_from_posting` | `RequirementUnmet(tiktok_account_not_eligible)` |
//! | `unaudited_client_can_only_post_to_private_accounts` | `RequirementUnmet(tiktok_app_not_audited)` |
//! | `url_ownership_unverified` | in [`UploadMode::Auto`], the video is uploaded instead; otherwise `ContentRejected` |
//! | `privacy_level_option_mismatch` | `Unavailable` (the options changed; the retry reads them again) |
//! | `invalid_params`, `invalid_file_upload` and other 400s | `ContentRejected` with TikTok's message |
//! | `internal_error`, 5xx, timeouts | `Unavailable` |
//! | status `FAILED` with `fail_reason` | `auth_removed` → `GrantDead(revoked_by_user)`; `spam_risk_too_many_posts` → `RateLimited`; `spam_risk_user_banned_from_posting` → `RequirementUnmet(tiktok_account_not_eligible)`; `internal` → `Unavailable`; any other (format, duration, pull, moderation) → `ContentRejected` |
//!
//! ⚠ TikTok documents no rate-limit headers; a 429 is waited out for `Retry-After` if
//! sent, else for the one-minute windows its per-endpoint limits are counted in.

mod token;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use social_studio_actors::{
    Clock, LimitScope, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, Grant, Media, MediaKind, Platform, Post, PostKind, Reason, ReasonCode,
    Receipt, Secret, Target, TargetKind, Timestamp,
};
use url::Url;

use super::oauth::{check_endpoint, TokenError};
use super::outbound::{self, body_excerpt};
use super::{
    Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, PlatformSettings,
    SettingsError,
};
use token::TokenEndpoint;
pub use upload::MAX_UPLOAD_BYTES;

/// TikTok's real endpoints (the defaults a `[platforms.tiktok]` section overrides). The
/// trailing slashes are TikTok's own.
pub const ENDPOINTS: super::Endpoints = super::Endpoints {
    auth_url: "https://www.tiktok.com/v2/auth/authorize/",
    token_url: "https://open.tiktokapis.com/v2/oauth/token/",
    revoke_url: Some("https://open.tiktokapis.com/v2/oauth/revoke/"),
    api_base: "https://open.tiktokapis.com",
};

/// The least scopes Direct Post needs.
pub const SCOPES: &[&str] = &["user.info.basic", "video.publish"];

/// "maximum length is 2200 in UTF-16 runes".
pub const MAX_CAPTION_UTF16: usize = 2200;

/// The chunk the engine prefers for `FILE_UPLOAD` (TikTok allows 5–64 MB).
pub const DEFAULT_CHUNK_SIZE: u64 = 10 * upload::MB;

/// How often the publish status is fetched (TikTok allows 30 fetches a minute).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The first wait between status fetches; it doubles up to the poll interval.
const FIRST_POLL_WAIT: Duration = Duration::from_secs(1);

/// How long the engine waits for TikTok to settle a post. TikTok documents processing
/// of up to minutes for large videos and moderation of "a few hours" in some cases;
/// past this the post is reported as possibly delivered and a person decides.
pub const DEFAULT_PUBLISH_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// What [`TiktokAdapter::api`] calls the video init, whose answer decides whether a
/// post may exist.
const INIT: &str = "video init";

/// TikTok's limits are counted per minute.
const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(60);

/// The daily caps (posts per creator, active users per app) are counted per day.
const DAILY_CAP_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A whole chunk of up to 128 MB may take a while on a slow link.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How the video reaches TikTok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// `PULL_FROM_URL` for an `https` video URL or one on the API's own host (the
    /// sandbox), `FILE_UPLOAD` otherwise — and `FILE_UPLOAD` as well when TikTok answers
    /// `url_ownership_unverified` to a pull.
    Auto,
    /// Always `PULL_FROM_URL`: every media host is a verified domain of the app.
    PullFromUrl,
    /// Always `FILE_UPLOAD`.
    FileUpload,
}

/// The TikTok adapter.
pub struct TiktokAdapter {
    client_key: String,
    auth_url: Url,
    tokens: TokenEndpoint,
    /// API calls; redirects disabled.
    http: reqwest::Client,
    /// Counts every call, as TikTok's.
    meter: outbound::CallMeter,
    /// Chunk uploads, with a longer timeout.
    upload_http: reqwest::Client,
    /// Video fetches, with the same longer timeout, reaching only the public internet
    /// unless `allow_private_media_urls` ([`outbound::GuardedClient`]).
    media: outbound::GuardedClient,
    /// `https://open.tiktokapis.com`, or the sandbox's `{base}/tiktok`; no trailing slash.
    api_base: String,
    clock: Arc<dyn Clock>,
    upload_mode: UploadMode,
    chunk_size: u64,
    poll_interval: Duration,
    publish_deadline: Duration,
}

impl std::fmt::Debug for TiktokAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiktokAdapter")
            .field("client_key", &self.client_key)
            .field("api_base", &self.api_base)
            .field("upload_mode", &self.upload_mode)
            .finish_non_exhaustive()
    }
}

/// TikTok's API envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    log_id: String,
}

#[derive(Debug, Deserialize)]
struct UserData {
    user: User,
}

#[derive(Debug, Deserialize)]
struct User {
    open_id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
}

/// `creator_info/query`, as far as the engine reads it.
#[derive(Debug, Clone, Deserialize)]
struct CreatorInfo {
    #[serde(default)]
    creator_username: Option<String>,
    #[serde(default)]
    creator_nickname: Option<String>,
    #[serde(default)]
    privacy_level_options: Vec<String>,
    #[serde(default)]
    comment_disabled: bool,
    #[serde(default)]
    duet_disabled: bool,
    #[serde(default)]
    stitch_disabled: bool,
    /// The longest video this creator may post, in seconds.
    #[serde(default)]
    max_video_post_duration_sec: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct InitData {
    publish_id: String,
    #[serde(default)]
    upload_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatusData {
    status: String,
    #[serde(default)]
    fail_reason: Option<String>,
    /// TikTok's spelling.
    #[serde(default)]
    publicaly_available_post_id: Vec<Value>,
}

/// The privacy levels, most public first. A private account's widest audience is its
/// followers.
const PRIVACY_PREFERENCE: &[&str] = &[
    "PUBLIC_TO_EVERYONE",
    "FOLLOWER_OF_CREATOR",
    "MUTUAL_FOLLOW_FRIENDS",
    "SELF_ONLY",
];

impl TiktokAdapter {
    /// An adapter for the TikTok app in `settings` (`client_id` holds the client key),
    /// reading time from the system clock.
    pub fn new(settings: &PlatformSettings) -> Result<TiktokAdapter, SettingsError> {
        Self::new_with(settings, &outbound::Outbound::default())
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<TiktokAdapter, SettingsError> {
        check_endpoint("api_base", &settings.api_base)?;
        let auth_url = check_endpoint("auth_url", &settings.auth_url)?;
        let token_url = check_endpoint("token_url", &settings.token_url)?;
        let revoke_url = settings
            .revoke_url
            .as_deref()
            .map(|url| check_endpoint("revoke_url", url))
            .transpose()?;
        let http = outbound.client(outbound::DEFAULT_TIMEOUT)?;
        let upload_http = outbound.client(UPLOAD_TIMEOUT)?;
        let meter = outbound.meter(Platform::Tiktok);
        Ok(TiktokAdapter {
            client_key: settings.client_id.clone(),
            auth_url,
            tokens: TokenEndpoint {
                http: http.clone(),
                meter: meter.clone(),
                url: token_url,
                revoke_url,
                client_key: settings.client_id.clone(),
                client_secret: settings.client_secret.clone(),
            },
            http,
            meter,
            upload_http,
            media: outbound.guarded(
                Platform::Tiktok,
                UPLOAD_TIMEOUT,
                outbound::Reach::allowing_private(settings.allow_private_media_urls),
            )?,
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            clock: Arc::new(SystemClock),
            upload_mode: UploadMode::Auto,
            chunk_size: DEFAULT_CHUNK_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            publish_deadline: DEFAULT_PUBLISH_DEADLINE,
        })
    }

    /// Reads time from `clock` instead: the engine passes its own.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> TiktokAdapter {
        self.clock = clock;
        self
    }

    /// Holds the media it fetches for upload against `budget`, the engine's one budget
    /// shared by every adapter (configuration key `media_memory_bytes`).
    pub fn with_media_budget(mut self, budget: outbound::MediaBudget) -> TiktokAdapter {
        self.media = self.media.with_media_budget(budget);
        self
    }

    /// How videos reach TikTok (default [`UploadMode::Auto`]).
    pub fn with_upload_mode(mut self, mode: UploadMode) -> TiktokAdapter {
        self.upload_mode = mode;
        self
    }

    /// The chunk size preferred for `FILE_UPLOAD`, kept within TikTok's 5–64 MB.
    pub fn with_chunk_size(mut self, bytes: u64) -> TiktokAdapter {
        self.chunk_size = bytes.clamp(upload::MIN_CHUNK, upload::MAX_CHUNK);
        self
    }

    /// How often the publish status is fetched, and for how long at most.
    pub fn with_status_polling(mut self, interval: Duration, deadline: Duration) -> TiktokAdapter {
        self.poll_interval = interval;
        self.publish_deadline = deadline;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// Sends one API call and returns its `data`, or the classified failure.
    async fn api<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: outbound::Endpoint,
        what: &str,
    ) -> Result<T, PortError> {
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(endpoint)).await?;
        let envelope = serde_json::from_slice::<Envelope<T>>(&body);
        if let Ok(Envelope {
            data: Some(data),
            error,
        }) = envelope
        {
            let ok = error
                .as_ref()
                .is_none_or(|e| e.code.is_empty() || e.code == "ok");
            if status.is_success() && ok {
                return Ok(data);
            }
        }
        if status.is_success() {
            // A 2xx with an error code, or without readable data.
            let parsed: ApiError = parse_error(&body).unwrap_or_default();
            if !parsed.code.is_empty() && parsed.code != "ok" {
                return Err(self.classify(status, &headers, &body));
            }
            return Err(PortError::Unavailable {
                detail: format!(
                    "TikTok's {what} answer could not be read: {}",
                    body_excerpt(&body)
                ),
                // TikTok accepted the call: an init may have created the post.
                maybe_delivered: what == INIT,
            });
        }
        Err(self.classify(status, &headers, &body))
    }

    /// Classifies an API answer that is a refusal.
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> PortError {
        let error = parse_error(body).unwrap_or_default();
        let said = if error.message.is_empty() {
            error.code.clone()
        } else {
            format!("{}: {}", error.code, error.message)
        };
        let said = if error.log_id.is_empty() {
            said
        } else {
            format!("{said} (log_id {})", error.log_id)
        };
        let reason = |code: ReasonCode| Reason::with_platform_message(code, said.clone());
        match error.code.as_str() {
            "access_token_invalid" => PortError::Unauthorized,
            "scope_not_authorized" | "scope_permission_missed" => {
                PortError::RequirementUnmet(reason(ReasonCode::PermissionRemoved))
            }
            "rate_limit_exceeded" => PortError::RateLimited {
                retry_after: rate_limit_wait(headers, self.clock.now()),
                scope: LimitScope::Connection,
            },
            "spam_risk_too_many_posts" | "reached_active_user_cap" => PortError::RateLimited {
                retry_after: DAILY_CAP_WAIT,
                scope: LimitScope::Connection,
            },
            "spam_risk_user_banned_from_posting" => {
                PortError::RequirementUnmet(reason(ReasonCode::TiktokAccountNotEligible))
            }
            "unaudited_client_can_only_post_to_private_accounts" => {
                PortError::RequirementUnmet(reason(ReasonCode::TiktokAppNotAudited))
            }
            "url_ownership_unverified" => {
                PortError::ContentRejected(Reason::with_platform_message(
                    ReasonCode::ContentRejected,
                    format!(
                        "TikTok pulls videos only from the app's verified domains; verify the \
                     video's domain in TikTok's developer portal or let the engine upload \
                     the file: {said}"
                    ),
                ))
            }
            "privacy_level_option_mismatch" => PortError::Unavailable {
                detail: format!("the creator's privacy options changed: {said}"),
                maybe_delivered: false,
            },
            "internal_error" => outbound::server_error(status, said),
            _ if status == StatusCode::TOO_MANY_REQUESTS => PortError::RateLimited {
                retry_after: rate_limit_wait(headers, self.clock.now()),
                scope: LimitScope::Connection,
            },
            _ if status.is_server_error() => outbound::server_error(status, body_excerpt(body)),
            _ if status == StatusCode::UNAUTHORIZED => PortError::Unauthorized,
            "" => PortError::Unavailable {
                detail: format!(
                    "TikTok answered HTTP {status} without an error body: {}",
                    body_excerpt(body)
                ),
                maybe_delivered: false,
            },
            // invalid_params, invalid_file_upload and the other refusals of the request.
            _ => PortError::ContentRejected(reason(ReasonCode::ContentRejected)),
        }
    }

    /// `GET /v2/user/info/`: who the grant speaks for.
    async fn user_info(&self, grant: &Grant) -> Result<User, PortError> {
        let request = self
            .http
            .get(self.url("/v2/user/info/"))
            .query(&[("fields", "open_id,union_id,display_name,avatar_url")])
            .bearer_auth(grant.access_token.expose());
        let data: UserData = self
            .api(request, outbound::Endpoint::Identity, "user info")
            .await?;
        Ok(data.user)
    }

    /// `POST /v2/post/publish/creator_info/query/`: whether and how the creator can post.
    async fn creator_info(&self, grant: &Grant) -> Result<CreatorInfo, PortError> {
        let request = self
            .http
            .post(self.url("/v2/post/publish/creator_info/query/"))
            .bearer_auth(grant.access_token.expose())
            .header(CONTENT_TYPE, "application/json; charset=UTF-8")
            .body("{}");
        self.api(request, outbound::Endpoint::Identity, "creator info")
            .await
    }

    /// The account and its one target, checking that the creator can post now.
    async fn identify(&self, grant: &Grant) -> Result<(Account, Target), PortError> {
        let user = self.user_info(grant).await?;
        let creator = self.creator_info(grant).await?;
        let handle = creator
            .creator_username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| user.open_id.clone());
        let display_name = user
            .display_name
            .clone()
            .or(creator.creator_nickname.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| handle.clone());
        let target = Target {
            kind: TargetKind::Profile,
            id: user.open_id.clone(),
            name: format!("@{handle}"),
        };
        Ok((
            Account {
                picture: super::picture_url(user.avatar_url.as_deref()),
                platform_id: user.open_id,
                handle,
                display_name,
                kind: AccountKind::Creator,
            },
            target,
        ))
    }

    /// Whether a video URL is pulled by TikTok or uploaded by the engine.
    fn pulls(&self, url: &str) -> bool {
        match self.upload_mode {
            UploadMode::PullFromUrl => true,
            UploadMode::FileUpload => false,
            UploadMode::Auto => {
                let Ok(video) = Url::parse(url) else {
                    return false;
                };
                let same_host =
                    Url::parse(&self.api_base).is_ok_and(|api| api.origin() == video.origin());
                video.scheme() == "https" || same_host
            }
        }
    }

    /// `POST /v2/post/publish/video/init/`.
    async fn init(
        &self,
        grant: &Grant,
        post_info: &Value,
        source_info: Value,
    ) -> Result<InitData, PortError> {
        let request = self
            .http
            .post(self.url("/v2/post/publish/video/init/"))
            .bearer_auth(grant.access_token.expose())
            .header(CONTENT_TYPE, "application/json; charset=UTF-8")
            .json(&json!({"post_info": post_info, "source_info": source_info}));
        self.api(request, outbound::Endpoint::Publish, INIT).await
    }

    /// Fetches the video, initialises a `FILE_UPLOAD` and sends every chunk.
    async fn upload_file(
        &self,
        grant: &Grant,
        post_info: &Value,
        video: &Media,
        max_secs: Option<u64>,
    ) -> Result<String, PortError> {
        let (bytes, content_type) = upload::fetch_video(&self.media, video).await?;
        // Refused before the upload, with the creator's own limit, rather than after
        // sending every chunk for TikTok to answer `duration_check_failed`.
        if let (Some(max), Some(length)) = (max_secs, upload::video_duration(&bytes)) {
            if length > Duration::from_secs(max) {
                return Err(PortError::ContentRejected(Reason::with_platform_message(
                    ReasonCode::ContentRejected,
                    format!(
                        "the video lasts {:.1} s; this TikTok account may post videos of at \
                         most {max} s (max_video_post_duration_sec)",
                        length.as_secs_f64()
                    ),
                )));
            }
        }
        let size = bytes.len() as u64;
        let (chunk, count) = upload::plan(size, self.chunk_size);
        let init = self
            .init(
                grant,
                post_info,
                json!({
                    "source": "FILE_UPLOAD",
                    "video_size": size,
                    "chunk_size": chunk,
                    "total_chunk_count": count,
                }),
            )
            .await?;
        let Some(upload_url) = init.upload_url else {
            return Err(PortError::Unavailable {
                detail: format!("TikTok gave no upload_url for {}", init.publish_id),
                maybe_delivered: false,
            });
        };
        let ranges = upload::ranges(size, chunk, count);
        let last_index = ranges.len().saturating_sub(1);
        for (index, (first, last)) in ranges.into_iter().enumerate() {
            let is_last = index == last_index;
            let (Ok(start), Ok(end)) = (usize::try_from(first), usize::try_from(last + 1)) else {
                return Err(PortError::Unavailable {
                    detail: "the video does not fit in memory".into(),
                    maybe_delivered: false,
                });
            };
            let body = bytes.slice(start..end).unwrap_or_default();
            let request = self
                .upload_http
                .put(&upload_url)
                .header(CONTENT_TYPE, &content_type)
                .header(CONTENT_RANGE, format!("bytes {first}-{last}/{size}"))
                .body(body);
            let sent =
                outbound::exchange(request, self.meter.call(outbound::Endpoint::MediaUpload)).await;
            // Only the last chunk completes the upload, so only its lost answer may
            // have let TikTok go on to publish.
            let (status, body) = match sent {
                Ok((status, _, body)) => (status, body),
                Err(error) => {
                    return Err(match error {
                        PortError::Unavailable {
                            detail,
                            maybe_delivered,
                        } => PortError::Unavailable {
                            detail: format!(
                                "uploading chunk {index} of {}: {detail}",
                                init.publish_id
                            ),
                            maybe_delivered: maybe_delivered && is_last,
                        },
                        other => other,
                    })
                }
            };
            if !status.is_success() {
                return Err(PortError::Unavailable {
                    detail: format!(
                        "TikTok refused chunk {index} ({first}-{last}/{size}) of {} with HTTP {status}: {}",
                        init.publish_id,
                        body_excerpt(&body)
                    ),
                    maybe_delivered: is_last && status.is_server_error(),
                });
            }
        }
        Ok(init.publish_id)
    }

    /// Polls the status of `publish_id` until TikTok settles it or the deadline passes.
    async fn await_outcome(
        &self,
        grant: &Grant,
        publish_id: &str,
        handle: Option<&str>,
    ) -> Result<Receipt, PortError> {
        let deadline = tokio::time::Instant::now() + self.publish_deadline;
        // Small posts settle in seconds: ask again soon, then back off to the interval.
        let mut wait = self.poll_interval.min(FIRST_POLL_WAIT);
        loop {
            let request = self
                .http
                .post(self.url("/v2/post/publish/status/fetch/"))
                .bearer_auth(grant.access_token.expose())
                .header(CONTENT_TYPE, "application/json; charset=UTF-8")
                .json(&json!({"publish_id": publish_id}));
            let last_seen = match self
                .api::<StatusData>(request, outbound::Endpoint::PublishStatus, "publish status")
                .await
            {
                Ok(status) => match status.status.as_str() {
                    "PUBLISH_COMPLETE" => return Ok(receipt(publish_id, &status, handle)),
                    "FAILED" => return Err(failed(publish_id, status.fail_reason.as_deref())),
                    other => other.to_owned(),
                },
                // Passing faults: the post is on its way; keep asking.
                Err(PortError::RateLimited { .. }) => "rate limited".to_owned(),
                Err(PortError::Unavailable { detail, .. }) => detail,
                // Anything else leaves the outcome unknown, and the post was handed over.
                Err(other) => {
                    return Err(PortError::Unavailable {
                        detail: format!(
                            "TikTok accepted {publish_id} but its status could not be read: {other}"
                        ),
                        maybe_delivered: true,
                    })
                }
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Err(PortError::Unavailable {
                    detail: format!(
                        "TikTok had not settled {publish_id} after {:?} (last: {last_seen})",
                        self.publish_deadline
                    ),
                    maybe_delivered: true,
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.poll_interval);
        }
    }
}

fn parse_error(body: &[u8]) -> Option<ApiError> {
    #[derive(Deserialize)]
    struct Only {
        error: Option<ApiError>,
    }
    serde_json::from_slice::<Only>(body).ok()?.error
}

/// The wait a 429 announces: `Retry-After` if sent, else TikTok's one-minute window.
fn rate_limit_wait(headers: &HeaderMap, now: Timestamp) -> Duration {
    outbound::retry_after(headers, now)
        .map(|wait| wait.max(Duration::from_secs(1)))
        .unwrap_or(DEFAULT_RATE_WAIT)
}

fn receipt(publish_id: &str, status: &StatusData, handle: Option<&str>) -> Receipt {
    let post_id = status
        .publicaly_available_post_id
        .first()
        .and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    match post_id {
        Some(id) => Receipt {
            url: handle.map(|h| format!("https://www.tiktok.com/@{h}/video/{id}")),
            platform_post_id: id,
        },
        // Private posts (and public ones still in moderation) have no public id; the
        // publish id is what TikTok knows the post by.
        None => Receipt {
            platform_post_id: publish_id.to_owned(),
            url: None,
        },
    }
}

/// Classifies a `FAILED` status: nothing was published.
fn failed(publish_id: &str, fail_reason: Option<&str>) -> PortError {
    let reason_text = fail_reason.filter(|r| !r.is_empty()).unwrap_or("unknown");
    let said = format!("TikTok failed {publish_id}: {reason_text}");
    match reason_text {
        "auth_removed" => PortError::GrantDead(Reason::with_platform_message(
            ReasonCode::RevokedByUser,
            said,
        )),
        "spam_risk_too_many_posts" => PortError::RateLimited {
            retry_after: DAILY_CAP_WAIT,
            scope: LimitScope::Connection,
        },
        "spam_risk_user_banned_from_posting" => PortError::RequirementUnmet(
            Reason::with_platform_message(ReasonCode::TiktokAccountNotEligible, said),
        ),
        "internal" => PortError::Unavailable {
            detail: said,
            maybe_delivered: false,
        },
        _ => PortError::ContentRejected(Reason::with_platform_message(
            ReasonCode::ContentRejected,
            said,
        )),
    }
}

/// TikTok has one caption (`post_info.title`): the post's title, its text, and its
/// links not already in the text, in that order.
pub fn caption(post: &Post) -> String {
    let content = &post.content;
    let mut parts: Vec<String> = Vec::new();
    if let Some(title) = content
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        parts.push(title.to_owned());
    }
    let text = content.text.trim();
    if !text.is_empty() {
        parts.push(text.to_owned());
    }
    let links: Vec<&str> = content
        .links
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !text.contains(l))
        .collect();
    if !links.is_empty() {
        parts.push(links.join("\n"));
    }
    parts.join("\n\n")
}

fn the_video(post: &Post) -> Option<&Media> {
    post.content
        .media
        .iter()
        .find(|m| m.kind == MediaKind::Video)
}

/// The most public privacy level the creator offers.
fn privacy_level(creator: &CreatorInfo) -> Option<&'static str> {
    PRIVACY_PREFERENCE
        .iter()
        .copied()
        .find(|level| creator.privacy_level_options.iter().any(|o| o == level))
}

#[async_trait]
impl PlatformPort for TiktokAdapter {
    fn platform(&self) -> Platform {
        Platform::Tiktok
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = self.clock.now();
        self.tokens
            .refresh(grant, now)
            .await
            .map_err(TokenError::into_port_error)
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        self.identify(grant).await.map(|(account, _)| account)
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        let refused = |words: String| {
            PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                words,
            ))
        };
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(refused(words.join("; ")));
        }
        let Some(video) = the_video(post) else {
            return Err(refused("a TikTok post needs a video".into()));
        };
        let creator = self.creator_info(grant).await?;
        let Some(privacy) = privacy_level(&creator) else {
            return Err(PortError::Unavailable {
                detail: format!(
                    "TikTok offered no known privacy level: {:?}",
                    creator.privacy_level_options
                ),
                maybe_delivered: false,
            });
        };
        let max_secs = creator.max_video_post_duration_sec;
        let post_info = json!({
            "title": caption(post),
            "privacy_level": privacy,
            "disable_comment": creator.comment_disabled,
            "disable_duet": creator.duet_disabled,
            "disable_stitch": creator.stitch_disabled,
        });
        let publish_id = if self.pulls(&video.url) {
            let pulled = self
                .init(
                    grant,
                    &post_info,
                    json!({"source": "PULL_FROM_URL", "video_url": video.url}),
                )
                .await;
            match pulled {
                Ok(init) => init.publish_id,
                Err(PortError::ContentRejected(reason))
                    if self.upload_mode == UploadMode::Auto
                        && reason
                            .platform_message
                            .as_deref()
                            .is_some_and(|m| m.contains("url_ownership_unverified")) =>
                {
                    tracing::info!(
                        platform = "tiktok",
                        "the video's domain is not verified with TikTok; uploading the file instead"
                    );
                    self.upload_file(grant, &post_info, video, max_secs).await?
                }
                Err(other) => return Err(other),
            }
        } else {
            self.upload_file(grant, &post_info, video, max_secs).await?
        };
        tracing::info!(platform = "tiktok", %publish_id, privacy, "post handed to TikTok");
        self.await_outcome(grant, &publish_id, creator.creator_username.as_deref())
            .await
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        match self
            .tokens
            .revoke(&grant.access_token, self.clock.now())
            .await
        {
            Ok(true) => Ok(RevokeOutcome::Revoked),
            Ok(false) => Ok(RevokeOutcome::NotSupported),
            Err(failure) => Err(failure.into_port_error()),
        }
    }
}

#[async_trait]
impl Adapter for TiktokAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        if Url::parse(redirect_uri).is_err() {
            return Err(ConnectError::InvalidRedirectUri(redirect_uri.to_owned()));
        }
        let mut url = self.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_key", &self.client_key)
            .append_pair("scope", &SCOPES.join(","))
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        Ok(AuthorizeRequest {
            url: url.into(),
            pkce_verifier: None,
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn connect(
        &self,
        code: &str,
        pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        if Url::parse(redirect_uri).is_err() {
            return Err(ConnectError::InvalidRedirectUri(redirect_uri.to_owned()));
        }
        let (grant, open_id) = self
            .tokens
            .exchange_code(code, redirect_uri, pkce_verifier, now)
            .await
            .map_err(TokenError::into_connect_error)?;
        let result = self.requirements(&grant, open_id.as_deref()).await;
        match result {
            Ok((account, target)) => {
                tracing::info!(platform = "tiktok", handle = %account.handle, "account connected");
                Ok(Connected {
                    grant,
                    account,
                    targets: vec![target],
                })
            }
            Err(error) => {
                // The grant is discarded: end it at TikTok too, as far as it will.
                if let Err(failure) = self.tokens.revoke(&grant.access_token, now).await {
                    tracing::warn!(
                        platform = "tiktok",
                        ?failure,
                        "could not revoke a discarded grant"
                    );
                }
                Err(error)
            }
        }
    }

    fn scopes(&self) -> &'static [&'static str] {
        SCOPES
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        if post.kind != PostKind::Video {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        let media = &post.content.media;
        let videos: Vec<&Media> = media
            .iter()
            .filter(|m| m.kind == MediaKind::Video)
            .collect();
        let images = media.len() - videos.len();
        match (videos.len(), images) {
            (0, _) => errors.push(ContentError::MediaRequired {
                what: "one video (TikTok photo posts are not supported yet)".into(),
            }),
            (1, 0) => {}
            (1, _) => errors.push(ContentError::MixedMedia),
            (n, _) => errors.push(ContentError::TooManyVideos {
                limit: 1,
                actual: n,
            }),
        }
        if let Some(video) = videos.first() {
            let usable =
                Url::parse(&video.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !usable {
                errors.push(ContentError::MediaRequired {
                    what: "a video at an http(s) URL".into(),
                });
            }
        }
        let units = caption(post).encode_utf16().count();
        if units > MAX_CAPTION_UTF16 {
            errors.push(ContentError::TextTooLong {
                limit: MAX_CAPTION_UTF16,
                actual: units,
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl TiktokAdapter {
    /// What connect checks after the exchange: the scopes posting needs, then the
    /// account and whether it can post.
    async fn requirements(
        &self,
        grant: &Grant,
        open_id: Option<&str>,
    ) -> Result<(Account, Target), ConnectError> {
        if let Some(reason) = super::ungranted("TikTok", SCOPES, &grant.scopes) {
            return Err(ConnectError::RequirementUnmet(reason));
        }
        if grant.refresh_token.is_none() {
            return Err(ConnectError::RequirementUnmet(Reason::with_platform_message(
                ReasonCode::PermissionRemoved,
                "TikTok issued no refresh token, so the connection would lapse with its access token",
            )));
        }
        let (account, target) = self.identify(grant).await?;
        if let Some(open_id) = open_id.filter(|id| *id != account.platform_id) {
            return Err(ConnectError::Unavailable {
                detail: format!(
                    "TikTok's token named open_id {open_id} but its user info {}",
                    account.platform_id
                ),
            });
        }
        Ok((account, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use social_studio_storage::{fixtures, Content};

    fn post(text: &str, media: Vec<Media>) -> Post {
        let mut post = fixtures::post(&fixtures::key("jane", Platform::Tiktok), 0);
        post.kind = PostKind::Video;
        post.content = Content {
            text: text.into(),
            title: None,
            links: vec![],
            media,
        };
        post
    }

    #[test]
    fn captions_join_title_text_and_new_links() {
        let mut p = post("Read it: https://a.example/x", vec![]);
        p.content.title = Some("Book two".into());
        p.content.links = vec!["https://a.example/x".into(), "https://b.example".into()];
        assert_eq!(
            caption(&p),
            "Book two\n\nRead it: https://a.example/x\n\nhttps://b.example"
        );
    }

    #[test]
    fn the_most_public_offered_level_is_chosen() {
        let creator = |options: &[&str]| CreatorInfo {
            creator_username: None,
            creator_nickname: None,
            privacy_level_options: options.iter().map(|s| (*s).to_owned()).collect(),
            comment_disabled: false,
            duet_disabled: false,
            stitch_disabled: false,
            max_video_post_duration_sec: Some(600),
        };
        assert_eq!(
            privacy_level(&creator(&["SELF_ONLY", "PUBLIC_TO_EVERYONE"])),
            Some("PUBLIC_TO_EVERYONE")
        );
        assert_eq!(
            privacy_level(&creator(&["SELF_ONLY", "FOLLOWER_OF_CREATOR"])),
            Some("FOLLOWER_OF_CREATOR")
        );
        assert_eq!(privacy_level(&creator(&["SOMETHING_NEW"])), None);
    }

    #[test]
    fn fail_reasons_are_classified() {
        assert!(matches!(
            failed("p", Some("auth_removed")),
            PortError::GrantDead(ref r) if r.code == ReasonCode::RevokedByUser
        ));
        assert!(matches!(
            failed("p", Some("duration_check_failed")),
            PortError::ContentRejected(_)
        ));
        assert!(matches!(
            failed("p", Some("internal")),
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ));
        assert!(matches!(
            failed("p", Some("spam_risk_too_many_posts")),
            PortError::RateLimited { .. }
        ));
    }
}
