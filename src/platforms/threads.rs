//! Threads (Threads API `v1.0` on `graph.threads.net`): OAuth 2.0 authorization code
//! with the Threads app's own credentials, long-lived tokens that renew themselves, and
//! publishing through media containers.
//!
//! - Authorize: `{auth_url}?client_id&redirect_uri&scope=threads_basic,threads_content_publish
//!   &response_type=code&state`. No PKCE: Threads documents none (PLATFORMS.md ⚠, and the
//!   get-started guide lists no `code_challenge`), so the CSRF defence is `state` alone.
//! - Code exchange: `POST {token_url}` with `client_id`, `client_secret`, `code`,
//!   `grant_type=authorization_code`, `redirect_uri` as form fields → a short-lived
//!   (one hour) token and `user_id`. It is exchanged at once for a long-lived token:
//!   `GET {host}/access_token?grant_type=th_exchange_token&client_secret&access_token`
//!   → `expires_in` (about 60 days). `{host}` is `api_base` without its version segment
//!   (`https://graph.threads.net`), where Threads serves both token endpoints.
//! - Renewal: there is no refresh token; the long-lived token refreshes itself with
//!   `GET {host}/refresh_access_token?grant_type=th_refresh_token&access_token`, only
//!   once it is at least 24 hours old and before it lapses. [`PlatformPort::renewable`]
//!   is true for a grant whose lifetime reaches past its first 24 hours, so the
//!   connection actor plans the proactive refresh at 75–90 % of the lifetime (45–54 days
//!   of 60: always past 24 h). A refresh asked sooner (a reactive one after a refused
//!   call) is **not sent**: the adapter answers `RateLimited` (this connection) for the
//!   time left until the token turns 24 h; the connection actor keeps the connection
//!   Active, plans its next refresh attempt on its own backoff (a post waiting on it is
//!   retried then), and each attempt before the 24 h mark is again refused here without
//!   a request. A token already lapsed is `GrantDead(grant_expired)`: Threads
//!   refreshes only unexpired tokens. Every lifetime comes from the answer's
//!   `expires_in`; only a missing one falls back to the documented 60 days.
//! - Identity: `GET {api}/me?fields=id,username,threads_profile_picture_url` → the
//!   account; the profile is the one target. The Threads user id is kept in
//!   [`Grant::endpoint`] for the publishing paths.
//! - Publish: `GET /{user}/threads_publishing_limit?fields=quota_usage,config` (a full
//!   quota is `RateLimited` for this connection), then `POST /{user}/threads` with
//!   `media_type=TEXT|IMAGE|VIDEO`, `text`, `image_url`/`video_url`, `alt_text` — for two
//!   to twenty media, one item container each (`is_carousel_item=true`) and a
//!   `CAROUSEL` parent with `children` — then `GET /{container}?fields=status,error_message`
//!   until `FINISHED` (sleeping between polls, within a deadline), then
//!   `POST /{user}/threads_publish?creation_id=…`, then `GET /{media}?fields=permalink`
//!   for the receipt's URL (a failure there only leaves the URL out).
//! - Revoke: Threads has no revoke endpoint: [`RevokeOutcome::NotSupported`]; the author
//!   removes the app in Threads' settings (Account → Website permissions).
//! - Errors: Graph-style bodies, classified in [`graph`].

mod graph;
mod text;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::RequestBuilder;
use serde::Deserialize;
use serde_json::Value;
use social_studio_actors::{
    Clock, LimitScope, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, Content, Grant, Media, MediaKind, Platform, Post, PostKind, Reason,
    ReasonCode, Receipt, Secret, Target, TargetKind, Timestamp,
};
use url::Url;

use super::oauth::{check_endpoint, TokenError, TokenRequest};
use super::outbound::{self, body_excerpt, Endpoint};
use super::{
    Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, PlatformSettings,
    SettingsError,
};
pub use graph::{GraphError, Step, ThreadsReading};
pub use text::{length as text_length, MAX_TEXT};

// As the Graph API's: a macro so that `concat!` can pin `api_base` to it.
macro_rules! threads_version {
    () => {
        "v1.0"
    };
}

/// The Threads API version its `api_base` is pinned to.
pub const THREADS_API_VERSION: &str = threads_version!();

/// Threads' real endpoints (the defaults a `[platforms.threads]` section overrides). No
/// `revoke_url`: Threads documents none.
pub const ENDPOINTS: super::Endpoints = super::Endpoints {
    auth_url: "https://threads.net/oauth/authorize",
    token_url: "https://graph.threads.net/oauth/access_token",
    revoke_url: None,
    api_base: concat!("https://graph.threads.net/", threads_version!()),
};

/// The least scopes posting needs: every endpoint needs `threads_basic` (and refreshing
/// a token does), publishing needs `threads_content_publish`.
pub const SCOPES: &[&str] = &["threads_basic", "threads_content_publish"];

/// A long-lived token can be refreshed only once it is this old.
pub const MIN_REFRESH_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The documented lifetime of a long-lived token, used only when an answer omits
/// `expires_in`.
const DOCUMENTED_LONG_LIVED: Duration = Duration::from_secs(60 * 24 * 60 * 60);

/// Items in one carousel (Threads' posts reference: 2 to 20).
pub const MAX_CAROUSEL_ITEMS: usize = 20;

/// ⚠ Alt text limit (Threads' container reference gives 1000 characters).
pub const MAX_ALT_TEXT: usize = 1000;

/// Container polling: Threads recommends asking "once per minute, for no more than 5
/// minutes". Text and image containers are usually ready at once, so the first look is
/// immediate, the next one a second later, and the waits double up to
/// `DEFAULT_POLL_INTERVAL` — a handful of calls for a slow video, never more than one
/// every 30 s once it is clearly slow.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
const FIRST_POLL_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_POLL_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// When a full publishing quota will free is not said (the window is a rolling 24 h of
/// the account's own posts): look again after this long.
const QUOTA_RECHECK: Duration = Duration::from_secs(60 * 60);

/// The Threads adapter.
pub struct ThreadsAdapter {
    /// Redirects disabled ([`outbound::Outbound::client`]).
    http: reqwest::Client,
    /// Counts every call, as Threads'.
    meter: outbound::CallMeter,
    client_id: String,
    client_secret: Secret,
    auth_url: Url,
    token_url: Url,
    /// `https://graph.threads.net/v1.0`, no trailing slash.
    api_base: String,
    /// `https://graph.threads.net`: where `access_token` and `refresh_access_token` live.
    host_base: String,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    poll_deadline: Duration,
}

impl std::fmt::Debug for ThreadsAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadsAdapter")
            .field("client_id", &self.client_id)
            .field("api_base", &self.api_base)
            .field("host_base", &self.host_base)
            .finish_non_exhaustive()
    }
}

/// `api_base` without a trailing version segment (`/v1.0`): the host the token
/// endpoints answer on, in reality and in the sandbox alike.
fn host_of(api_base: &str) -> String {
    let trimmed = api_base.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((host, last))
            if last.starts_with('v')
                && last.len() > 1
                && last[1..].chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            host.to_owned()
        }
        _ => trimmed.to_owned(),
    }
}

/// The code exchange's answer.
#[derive(Deserialize)]
struct ShortLived {
    access_token: Secret,
    /// A JSON number in Threads' answers; a string is read too.
    #[serde(default)]
    user_id: Option<Value>,
}

/// The long-lived exchange's and the refresh's answer.
#[derive(Deserialize)]
struct LongLived {
    access_token: Secret,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `GET /me`.
#[derive(Debug, Clone, Deserialize)]
struct Me {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    threads_profile_picture_url: Option<String>,
}

impl Me {
    fn account(&self) -> Account {
        let handle = self.username.clone().unwrap_or_else(|| self.id.clone());
        Account {
            platform_id: self.id.clone(),
            handle: handle.clone(),
            display_name: handle,
            kind: AccountKind::Personal,
            picture: super::picture_url(self.threads_profile_picture_url.as_deref()),
        }
    }
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct ContainerStatus {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Deserialize)]
struct LimitPage {
    #[serde(default)]
    data: Vec<Limit>,
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default)]
    quota_usage: Option<u64>,
    #[serde(default)]
    config: Option<LimitConfig>,
}

#[derive(Deserialize)]
struct LimitConfig {
    #[serde(default)]
    quota_total: Option<u64>,
}

#[derive(Deserialize)]
struct Permalink {
    #[serde(default)]
    permalink: Option<String>,
}

impl ThreadsAdapter {
    /// An adapter for the Threads app in `settings`, reading time from the system clock.
    pub fn new(settings: &PlatformSettings) -> Result<ThreadsAdapter, SettingsError> {
        Self::new_with(settings, &outbound::Outbound::default())
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<ThreadsAdapter, SettingsError> {
        check_endpoint("api_base", &settings.api_base)?;
        let auth_url = check_endpoint("auth_url", &settings.auth_url)?;
        let token_url = check_endpoint("token_url", &settings.token_url)?;
        let api_base = settings.api_base.trim_end_matches('/').to_owned();
        let host_base = host_of(&api_base);
        check_endpoint("api_base", &host_base)?;
        Ok(ThreadsAdapter {
            http: outbound.client(outbound::DEFAULT_TIMEOUT)?,
            meter: outbound.meter(Platform::Threads),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            auth_url,
            token_url,
            api_base,
            host_base,
            clock: Arc::new(SystemClock),
            poll_interval: DEFAULT_POLL_INTERVAL,
            poll_deadline: DEFAULT_POLL_DEADLINE,
        })
    }

    /// Reads time from `clock` instead: the engine passes its own.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ThreadsAdapter {
        self.clock = clock;
        self
    }

    /// Polls containers at most `interval` apart (the first waits are shorter), giving
    /// up after `deadline`.
    pub fn with_polling(mut self, interval: Duration, deadline: Duration) -> ThreadsAdapter {
        self.poll_interval = interval;
        self.poll_deadline = deadline;
        self
    }

    fn api(&self, path: &str) -> String {
        format!("{}/{}", self.api_base, path.trim_start_matches('/'))
    }

    /// The Threads user id the grant speaks for (`me` if connect did not record it).
    fn user_id(grant: &Grant) -> &str {
        grant
            .endpoint
            .as_deref()
            .filter(|id| !id.is_empty())
            .unwrap_or("me")
    }

    /// Sends one API call, counted as `endpoint`, and returns its body, or the
    /// classified failure.
    async fn call(
        &self,
        request: RequestBuilder,
        step: Step,
        endpoint: Endpoint,
    ) -> Result<Vec<u8>, PortError> {
        let transport = |mut failure: PortError| {
            // Only the publishing call makes anything public: a lost answer elsewhere
            // left at most an unpublished container behind.
            if step != Step::Publish {
                if let PortError::Unavailable {
                    maybe_delivered, ..
                } = &mut failure
                {
                    *maybe_delivered = false;
                }
            }
            failure
        };
        // Through `exchange`, so that a refusal's body never quotes the token it was sent.
        let (status, headers, body) = outbound::exchange(request, self.meter.call(endpoint))
            .await
            .map_err(transport)?;
        if status.is_success() {
            return Ok(body);
        }
        Err(graph::classify(
            status,
            &headers,
            &body,
            self.clock.now(),
            step,
        ))
    }

    /// A token request: the answer, or the failure classified for what it was
    /// ([`graph::classify_token`]).
    async fn token_call(
        &self,
        request: RequestBuilder,
        token_request: TokenRequest,
    ) -> Result<Vec<u8>, TokenError> {
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(token_request.endpoint()))
                .await
                .map_err(TokenError::Port)?;
        if status.is_success() {
            return Ok(body);
        }
        Err(graph::classify_token(
            status,
            &headers,
            &body,
            self.clock.now(),
            token_request,
        ))
    }

    /// A long-lived token answer as a grant issued at `now`.
    fn grant_from(answer: LongLived, now: Timestamp, user_id: Option<String>) -> Grant {
        let lifetime = match answer.expires_in {
            Some(seconds) => Duration::from_secs(seconds),
            None => {
                tracing::warn!(
                    platform = "threads",
                    "token answer without expires_in; assuming the documented 60 days"
                );
                DOCUMENTED_LONG_LIVED
            }
        };
        Grant {
            access_token: answer.access_token,
            refresh_token: None,
            token_type: answer.token_type.unwrap_or_else(|| "bearer".to_owned()),
            scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            issued_at: now,
            expires_at: Some(now.saturating_add(lifetime)),
            refresh_expires_at: None,
            target_tokens: Vec::new(),
            endpoint: user_id,
        }
    }

    /// `POST {token_url}` then `GET {host}/access_token?grant_type=th_exchange_token`.
    async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Grant, ConnectError> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
        ];
        let request = self.http.post(self.token_url.clone()).form(&form);
        let body = self
            .token_call(request, TokenRequest::CodeExchange)
            .await
            .map_err(TokenError::into_connect_error)?;
        let short: ShortLived = serde_json::from_slice(&body).map_err(|error| {
            ConnectError::Unavailable {
                detail: format!(
                    "Threads' code exchange answer could not be read: {:?} error at line {} column {}",
                    error.classify(),
                    error.line(),
                    error.column()
                ),
            }
        })?;
        let user_id = short.user_id.and_then(|id| match id {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        });
        let request = self
            .http
            .get(format!("{}/access_token", self.host_base))
            .query(&[
                ("grant_type", "th_exchange_token"),
                ("client_secret", self.client_secret.expose()),
                ("access_token", short.access_token.expose()),
            ]);
        let body = self
            .token_call(request, TokenRequest::TokenExchange)
            .await
            .map_err(TokenError::into_connect_error)?;
        let long: LongLived =
            serde_json::from_slice(&body).map_err(|error| ConnectError::Unavailable {
                detail: format!(
                    "Threads' long-lived token answer could not be read: {:?} error",
                    error.classify()
                ),
            })?;
        Ok(Self::grant_from(long, now, user_id))
    }

    /// `GET /me?fields=id,username,threads_profile_picture_url`.
    async fn me(&self, grant: &Grant) -> Result<Me, PortError> {
        let request = self
            .http
            .get(self.api("me"))
            .query(&[("fields", "id,username,threads_profile_picture_url")])
            .bearer_auth(grant.access_token.expose());
        let body = self.call(request, Step::Read, Endpoint::Identity).await?;
        serde_json::from_slice(&body).map_err(|error| unreadable("me", &error, &body, false))
    }

    /// `GET /{user}/threads_publishing_limit`: `RateLimited` while the quota is used up.
    async fn check_quota(&self, grant: &Grant) -> Result<(), PortError> {
        let request = self
            .http
            .get(self.api(&format!(
                "{}/threads_publishing_limit",
                Self::user_id(grant)
            )))
            .query(&[("fields", "quota_usage,config")])
            .bearer_auth(grant.access_token.expose());
        let body = self.call(request, Step::Read, Endpoint::Identity).await?;
        let page: LimitPage = serde_json::from_slice(&body)
            .map_err(|error| unreadable("publishing limit", &error, &body, false))?;
        let Some(limit) = page.data.first() else {
            return Ok(());
        };
        let used = limit.quota_usage.unwrap_or(0);
        let total = limit.config.as_ref().and_then(|c| c.quota_total);
        if let Some(total) = total.filter(|total| used >= *total) {
            tracing::info!(
                platform = "threads",
                used,
                total,
                "publishing quota used up"
            );
            return Err(PortError::RateLimited {
                retry_after: QUOTA_RECHECK,
                scope: LimitScope::Connection,
            });
        }
        Ok(())
    }

    /// `POST /{user}/threads`: one container; returns its id.
    async fn create_container(
        &self,
        grant: &Grant,
        params: &[(&str, String)],
    ) -> Result<String, PortError> {
        let request = self
            .http
            .post(self.api(&format!("{}/threads", Self::user_id(grant))))
            .bearer_auth(grant.access_token.expose())
            .form(params);
        let body = self
            .call(request, Step::CreateContainer, Endpoint::Publish)
            .await?;
        let created: Created = serde_json::from_slice(&body)
            .map_err(|error| unreadable("container", &error, &body, false))?;
        Ok(created.id)
    }

    /// Polls a container until it is `FINISHED`, within the deadline.
    async fn wait_until_ready(&self, grant: &Grant, container: &str) -> Result<(), PortError> {
        let deadline = tokio::time::Instant::now() + self.poll_deadline;
        let mut wait = FIRST_POLL_WAIT.min(self.poll_interval);
        loop {
            let request = self
                .http
                .get(self.api(container))
                .query(&[("fields", "status,error_message")])
                .bearer_auth(grant.access_token.expose());
            let body = self
                .call(request, Step::Read, Endpoint::PublishStatus)
                .await?;
            let status: ContainerStatus = serde_json::from_slice(&body)
                .map_err(|error| unreadable("container status", &error, &body, false))?;
            let said = || {
                status
                    .error_message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "no message".to_owned())
            };
            match status.status.as_deref() {
                Some("FINISHED") => return Ok(()),
                Some("ERROR") => {
                    return Err(PortError::ContentRejected(Reason::with_platform_message(
                        ReasonCode::ContentRejected,
                        format!("Threads could not process the media: {}", said()),
                    )))
                }
                // Not published within 24 h: a new container on the next attempt.
                Some("EXPIRED") => {
                    return Err(PortError::Unavailable {
                        detail: format!("Threads container {container} expired before publishing"),
                        maybe_delivered: false,
                    })
                }
                Some("PUBLISHED") => {
                    return Err(PortError::Unavailable {
                        detail: format!(
                            "Threads container {container} was already published by another call"
                        ),
                        maybe_delivered: true,
                    })
                }
                _ => {}
            }
            let now = tokio::time::Instant::now();
            if now + wait > deadline {
                return Err(PortError::Unavailable {
                    detail: format!(
                        "Threads container {container} was not ready after {:?}",
                        self.poll_deadline
                    ),
                    maybe_delivered: false,
                });
            }
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(self.poll_interval);
        }
    }

    /// `POST /{user}/threads_publish?creation_id=…`: the post goes public.
    async fn publish_container(&self, grant: &Grant, container: &str) -> Result<String, PortError> {
        let request = self
            .http
            .post(self.api(&format!("{}/threads_publish", Self::user_id(grant))))
            .query(&[("creation_id", container)])
            .bearer_auth(grant.access_token.expose());
        let body = self.call(request, Step::Publish, Endpoint::Publish).await?;
        let created: Created = serde_json::from_slice(&body)
            // Threads said 2xx: the post is public, but without its id it cannot be confirmed.
            .map_err(|error| unreadable("publish", &error, &body, true))?;
        Ok(created.id)
    }

    /// The post's permalink; `None` when Threads does not give it.
    async fn permalink(&self, grant: &Grant, media: &str) -> Option<String> {
        let request = self
            .http
            .get(self.api(media))
            .query(&[("fields", "permalink")])
            .bearer_auth(grant.access_token.expose());
        match self
            .call(request, Step::Read, Endpoint::PublishStatus)
            .await
        {
            Ok(body) => serde_json::from_slice::<Permalink>(&body)
                .ok()
                .and_then(|p| p.permalink),
            Err(error) => {
                tracing::debug!(platform = "threads", %error, "no permalink for the receipt");
                None
            }
        }
    }
}

fn unreadable(what: &str, error: &serde_json::Error, body: &[u8], delivered: bool) -> PortError {
    PortError::Unavailable {
        detail: format!(
            "Threads' {what} answer could not be read ({}): {}",
            outbound::json_failure(error),
            body_excerpt(body)
        ),
        maybe_delivered: delivered,
    }
}

/// The post's text with its links appended (Threads previews the first link).
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

/// The container parameters for one media item.
fn media_params(media: &Media, carousel_item: bool) -> Vec<(&'static str, String)> {
    let mut params = match media.kind {
        MediaKind::Image => vec![
            ("media_type", "IMAGE".to_owned()),
            ("image_url", media.url.clone()),
        ],
        MediaKind::Video => vec![
            ("media_type", "VIDEO".to_owned()),
            ("video_url", media.url.clone()),
        ],
    };
    if let Some(alt) = media
        .alt
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        params.push(("alt_text", alt.to_owned()));
    }
    if carousel_item {
        params.push(("is_carousel_item", "true".to_owned()));
    }
    params
}

#[async_trait]
impl PlatformPort for ThreadsAdapter {
    fn platform(&self) -> Platform {
        Platform::Threads
    }

    /// `th_refresh_token`, only when the token is at least 24 h old and not lapsed; see
    /// the module documentation for what happens otherwise.
    #[tracing::instrument(skip_all, fields(platform = "threads"))]
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = self.clock.now();
        if let Some(expires) = grant.expires_at.filter(|e| *e <= now) {
            return Err(PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::GrantExpired,
                format!("the Threads token lapsed at {expires}; Threads refreshes only unexpired tokens"),
            )));
        }
        let refreshable_from = grant.issued_at.saturating_add(MIN_REFRESH_AGE);
        if now < refreshable_from {
            if grant.expires_at.is_some_and(|e| e <= refreshable_from) {
                return Err(PortError::GrantDead(Reason::with_platform_message(
                    ReasonCode::GrantExpired,
                    "the Threads token lapses before it is 24 hours old, the earliest Threads \
                     refreshes a token",
                )));
            }
            tracing::info!(
                platform = "threads",
                %refreshable_from,
                "refresh not sent: Threads refreshes a token only once it is 24 hours old"
            );
            return Err(PortError::RateLimited {
                retry_after: now.until(refreshable_from),
                scope: LimitScope::Connection,
            });
        }
        let request = self
            .http
            .get(format!("{}/refresh_access_token", self.host_base))
            .query(&[
                ("grant_type", "th_refresh_token"),
                ("access_token", grant.access_token.expose()),
            ]);
        let body = self
            .token_call(request, TokenRequest::Refresh)
            .await
            .map_err(TokenError::into_port_error)?;
        let answer: LongLived =
            serde_json::from_slice(&body).map_err(|error| PortError::Unavailable {
                detail: format!(
                    "Threads' refresh answer could not be read: {:?} error",
                    error.classify()
                ),
                // The old token stays valid after a refresh, so nothing is lost.
                maybe_delivered: true,
            })?;
        Ok(Self::grant_from(answer, now, grant.endpoint.clone()))
    }

    #[tracing::instrument(skip_all, fields(platform = "threads"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        self.me(grant).await.map(|me| me.account())
    }

    #[tracing::instrument(skip_all, fields(platform = "threads", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                words.join("; "),
            )));
        }
        self.check_quota(grant).await?;
        let text = post_text(&post.content);
        let media = &post.content.media;
        let container = match media.len() {
            0 => {
                self.create_container(grant, &[("media_type", "TEXT".to_owned()), ("text", text)])
                    .await?
            }
            1 => {
                let mut params = media_params(&media[0], false);
                if !text.is_empty() {
                    params.push(("text", text));
                }
                self.create_container(grant, &params).await?
            }
            _ => {
                let mut children = Vec::with_capacity(media.len());
                for item in media {
                    let child = self
                        .create_container(grant, &media_params(item, true))
                        .await?;
                    self.wait_until_ready(grant, &child).await?;
                    children.push(child);
                }
                let mut params = vec![
                    ("media_type", "CAROUSEL".to_owned()),
                    ("children", children.join(",")),
                ];
                if !text.is_empty() {
                    params.push(("text", text));
                }
                self.create_container(grant, &params).await?
            }
        };
        self.wait_until_ready(grant, &container).await?;
        let id = self.publish_container(grant, &container).await?;
        tracing::info!(platform = "threads", media_id = %id, "thread published");
        let url = self.permalink(grant, &id).await;
        Ok(Receipt {
            platform_post_id: id,
            url,
        })
    }

    /// Threads documents no way to revoke a token: disconnect says so, and the author
    /// removes the app in Threads' settings.
    async fn revoke(&self, _grant: &Grant) -> Result<RevokeOutcome, PortError> {
        Ok(RevokeOutcome::NotSupported)
    }

    /// A long-lived token renews itself, provided it lives past the 24 hours before
    /// which Threads refuses to refresh it.
    fn renewable(&self, grant: &social_studio_storage::GrantFacts) -> bool {
        grant
            .expires_at
            .is_some_and(|e| e > grant.issued_at.saturating_add(MIN_REFRESH_AGE))
    }
}

#[async_trait]
impl Adapter for ThreadsAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        if Url::parse(redirect_uri).is_err() {
            return Err(ConnectError::InvalidRedirectUri(redirect_uri.to_owned()));
        }
        let mut url = self.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &SCOPES.join(","))
            .append_pair("response_type", "code")
            .append_pair("state", state);
        Ok(AuthorizeRequest {
            url: url.into(),
            pkce_verifier: None,
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "threads"))]
    async fn connect(
        &self,
        code: &str,
        _pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        if Url::parse(redirect_uri).is_err() {
            return Err(ConnectError::InvalidRedirectUri(redirect_uri.to_owned()));
        }
        let mut grant = self.exchange(code, redirect_uri, now).await?;
        let me = self.me(&grant).await?;
        if grant.endpoint.as_deref() != Some(me.id.as_str()) {
            grant.endpoint = Some(me.id.clone());
        }
        let account = me.account();
        tracing::info!(platform = "threads", user_id = %me.id, "account connected");
        Ok(Connected {
            grant,
            targets: vec![Target {
                kind: TargetKind::Profile,
                id: me.id.clone(),
                name: format!("@{}", account.handle),
            }],
            account,
        })
    }

    fn scopes(&self) -> &'static [&'static str] {
        SCOPES
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        // Reply chains (`Thread`) are not implemented: one post per publish.
        if post.kind != PostKind::Feed || !Platform::Threads.supports(post.kind) {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        let content = &post.content;
        let text = post_text(content);
        if text.trim().is_empty() && content.media.is_empty() {
            errors.push(ContentError::EmptyPost);
        }
        let length = text::length(&text);
        if length > MAX_TEXT {
            errors.push(ContentError::TextTooLong {
                limit: MAX_TEXT,
                actual: length,
            });
        }
        let images = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Image)
            .count();
        let videos = content.media.len() - images;
        if images + videos > MAX_CAROUSEL_ITEMS {
            if images > 0 {
                errors.push(ContentError::TooManyImages {
                    limit: MAX_CAROUSEL_ITEMS.saturating_sub(videos),
                    actual: images,
                });
            } else {
                errors.push(ContentError::TooManyVideos {
                    limit: MAX_CAROUSEL_ITEMS,
                    actual: videos,
                });
            }
        }
        for alt in content.media.iter().filter_map(|m| m.alt.as_deref()) {
            let actual = alt.chars().count();
            if actual > MAX_ALT_TEXT {
                errors.push(ContentError::AltTextTooLong {
                    limit: MAX_ALT_TEXT,
                    actual,
                });
            }
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
    fn the_token_host_is_the_api_base_without_its_version() {
        assert_eq!(
            host_of("https://graph.threads.net/v1.0"),
            "https://graph.threads.net"
        );
        assert_eq!(
            host_of("http://127.0.0.1:9/threads/v1.0/"),
            "http://127.0.0.1:9/threads"
        );
        assert_eq!(
            host_of("https://graph.threads.net"),
            "https://graph.threads.net"
        );
    }

    #[test]
    fn the_proactive_refresh_window_falls_after_the_first_24_hours() {
        // The connection actor refreshes at 75-90 % of the lifetime; for the documented
        // 60-day token that is 45 days at the earliest, long past the 24 h Threads needs.
        let lifetime = Duration::from_secs(5_183_944);
        assert!(lifetime.mul_f64(0.75) > MIN_REFRESH_AGE);
        let issued = Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
        let grant = |lifetime: Duration| Grant {
            access_token: Secret::new("t"),
            refresh_token: None,
            token_type: "bearer".into(),
            scopes: Vec::new(),
            issued_at: issued,
            expires_at: Some(issued.saturating_add(lifetime)),
            refresh_expires_at: None,
            target_tokens: Vec::new(),
            endpoint: None,
        };
        let settings = PlatformSettings {
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
            auth_url: "https://threads.net/oauth/authorize".into(),
            token_url: "https://graph.threads.net/oauth/access_token".into(),
            revoke_url: None,
            api_base: "https://graph.threads.net/v1.0".into(),
            allow_private_media_urls: false,
        };
        let adapter = ThreadsAdapter::new(&settings).unwrap();
        assert!(adapter.renewable(&grant(lifetime).facts()));
        assert!(!adapter.renewable(&grant(Duration::from_secs(3600)).facts()));
    }

    #[test]
    fn links_join_the_text_once() {
        let content = Content {
            text: "New book".into(),
            title: None,
            links: vec!["https://example.com/b".into()],
            media: Vec::new(),
        };
        assert_eq!(post_text(&content), "New book\nhttps://example.com/b");
    }
}
