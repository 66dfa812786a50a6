//! Pinterest (API v5, OAuth 2.0 authorization code with continuous refresh tokens).
//!
//! - Connect: no PKCE (Pinterest's spec has none), HTTP Basic client authentication on
//!   the token endpoint, scopes `boards:read boards:write pins:read pins:write
//!   user_accounts:read` sent comma-separated as Pinterest's documentation writes them.
//!   `boards:write` stays although the engine never creates boards: the spec declares all
//!   four `boards:*`/`pins:*` scopes as one security requirement of `POST /v5/pins`, so a
//!   token without it may be refused a pin. The account is `GET /v5/user_account`; the
//!   targets are the account's boards (`GET /v5/boards`, paged with `bookmark`).
//! - Tokens ([`token`]): the code exchange asks for a continuous refresh token
//!   (`continuous_refresh=true`); every refresh answers with a new refresh token and its
//!   lifetime, and the engine stores it and never sends the old one again. Access tokens
//!   last about 30 days; every lifetime is read from the answer.
//! - Revoke: Pinterest revokes only tokens of system users, so disconnect answers
//!   [`RevokeOutcome::NotSupported`] and says so.
//! - Publish: `POST /v5/pins` with the post's board, title, description, first link, the
//!   first image's alt text, and `media_source: {source_type: image_url, url}` —
//!   Pinterest fetches the image itself, so the engine uploads nothing. The receipt URL is
//!   `https://www.pinterest.com/pin/{id}/`. Only single-image pins: video and carousels
//!   (`multiple_image_urls`) are refused by name at validation.
//! - Content: title ≤ 100, description ≤ 800, link ≤ 2048, alt text ≤ 500 characters; a
//!   board and an image are required.
//!
//! | Pinterest answered | class |
//! |---|---|
//! | token endpoint code 283 / `invalid_grant` on refresh (Pinterest sends 401) | `GrantDead(authorization_invalid)` |
//! | token endpoint other 401 / `invalid_client` | `RequirementUnmet(app_credentials_rejected)` |
//! | API 401 (`{"code":2,"message":"Authentication failed."}`) | `Unauthorized` (refresh, then retry) |
//! | API 403 on a pin | `RequirementUnmet(permission_removed)`, naming the board |
//! | API 403 elsewhere | `RequirementUnmet(permission_removed)` |
//! | API 404 on a pin | `ContentRejected(content_rejected)`, naming the board |
//! | API 400 on a pin | `ContentRejected(content_rejected)` with Pinterest's message |
//! | 429 | `RateLimited` (this connection) until `x-ratelimit-reset`, else `Retry-After`, else 60 s |
//! | 5xx, timeouts, lost answers | `Unavailable` |
//!
//! ⚠ Pinterest documents its 429 but not the names of its rate-limit headers; the
//! adapter reads `x-ratelimit-reset` (unix seconds, or seconds from now when small) and
//! `Retry-After`, and waits a minute — the window of Standard access's per-minute
//! categories — when neither is sent.

mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use social_studio_actors::{
    Clock, LimitScope, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, Grant, Media, MediaKind, Platform, Post, PostKind, Reason, ReasonCode,
    Receipt, Secret, Target, TargetKind, Timestamp,
};

use super::oauth::{
    check_endpoint, ClientAuth, OAuthClient, OAuthProfile, RefreshTokens, TokenError,
};
use super::outbound::{self, body_excerpt};
use super::{
    Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, PlatformSettings,
    SettingsError,
};
use token::{ErrorBody, TokenEndpoint};

/// Pinterest's real endpoints (the defaults a `[platforms.pinterest]` section
/// overrides). No `revoke_url`: Pinterest's revocation endpoint revokes only system-user
/// tokens.
pub const ENDPOINTS: super::Endpoints = super::Endpoints {
    auth_url: "https://www.pinterest.com/oauth/",
    token_url: "https://api.pinterest.com/v5/oauth/token",
    revoke_url: None,
    api_base: "https://api.pinterest.com",
};

/// The least scopes posting needs: create pins (`pins:*`), list and post to boards
/// (`boards:*`, all four declared by pin creation), identify the account
/// (`user_accounts:read`).
pub const SCOPES: &[&str] = &[
    "boards:read",
    "boards:write",
    "pins:read",
    "pins:write",
    "user_accounts:read",
];

/// [`SCOPES`] as Pinterest's authorize URL takes them: one comma-separated value.
const AUTHORIZE_SCOPE: &[&str] =
    &["boards:read,boards:write,pins:read,pins:write,user_accounts:read"];

/// Scopes without which no pin can be created.
const POSTING_SCOPES: &[&str] = &["boards:read", "boards:write", "pins:read", "pins:write"];

/// Pin limits from Pinterest's spec (`Pin` schema and the pin-create request).
pub const MAX_TITLE: usize = 100;
pub const MAX_DESCRIPTION: usize = 800;
pub const MAX_LINK: usize = 2048;
pub const MAX_ALT_TEXT: usize = 500;

/// What to wait after a 429 that does not say how long: the per-minute window of
/// Standard access.
const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(60);

/// Never ask the queue to wait less than this: a reset already past (clocks differ)
/// would otherwise retry at once into the same limit.
const MIN_RATE_WAIT: Duration = Duration::from_secs(1);

/// `x-ratelimit-reset` values below this are read as seconds from now, above it as unix
/// seconds (a 1973 date is never a reset time).
const RESET_IS_UNIX_TIME_FROM: i64 = 100_000_000;

/// Boards per page asked of `GET /v5/boards` (Pinterest's maximum is 250).
const BOARDS_PAGE_SIZE: u32 = 250;

/// A guard against a server that keeps answering bookmarks: 40 pages of 250 boards is far
/// beyond any author's account.
const MAX_BOARD_PAGES: usize = 40;

/// The Pinterest adapter.
pub struct PinterestAdapter {
    /// Builds the authorize URL (no PKCE, comma-separated scopes).
    oauth: OAuthClient,
    /// Code exchange and refresh, in Pinterest's dialect ([`token`]).
    tokens: TokenEndpoint,
    /// API calls; redirects disabled.
    http: reqwest::Client,
    /// Counts every call, as Pinterest's.
    meter: outbound::CallMeter,
    /// `https://api.pinterest.com`, or the sandbox's `{base}/pinterest`; no trailing slash.
    api_base: String,
    /// The time grants are issued at and rate-limit resets are measured from.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PinterestAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinterestAdapter")
            .field("api_base", &self.api_base)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

/// Pinterest's OAuth dialect, for the authorize URL.
fn profile() -> OAuthProfile {
    OAuthProfile {
        scopes: AUTHORIZE_SCOPE,
        client_auth: ClientAuth::Basic,
        pkce: false,
        authorize_params: Vec::new(),
        refresh_tokens: RefreshTokens::Rotating,
        // Pinterest's token calls are spoken in `token`, not through this client.
        grant_refusals: None,
    }
}

/// `GET /v5/user_account`, as far as the engine reads it.
#[derive(Debug, Clone, Deserialize)]
struct UserAccount {
    /// Present in newer versions of the API; the username stands in where it is not.
    #[serde(default)]
    id: Option<String>,
    username: String,
    /// `BUSINESS` or `PINNER`.
    #[serde(default)]
    account_type: Option<String>,
    #[serde(default)]
    business_name: Option<String>,
    #[serde(default)]
    profile_image: Option<String>,
}

impl UserAccount {
    fn account(&self) -> Account {
        let kind = match self.account_type.as_deref() {
            Some(kind) if kind.eq_ignore_ascii_case("BUSINESS") => AccountKind::Business,
            _ => AccountKind::Personal,
        };
        Account {
            platform_id: self
                .id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| self.username.clone()),
            handle: self.username.clone(),
            display_name: self
                .business_name
                .clone()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| self.username.clone()),
            kind,
            picture: super::picture_url(self.profile_image.as_deref()),
        }
    }
}

/// One page of `GET /v5/boards`.
#[derive(Debug, Deserialize)]
struct BoardPage {
    items: Vec<Board>,
    #[serde(default)]
    bookmark: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Board {
    id: String,
    name: String,
}

/// The created pin.
#[derive(Debug, Deserialize)]
struct CreatedPin {
    id: String,
}

/// Which API call failed: the same status means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call<'a> {
    Identity,
    Boards,
    Publish { board_id: &'a str },
}

impl PinterestAdapter {
    /// An adapter for the Pinterest app in `settings`, reading time from the system clock.
    pub fn new(settings: &PlatformSettings) -> Result<PinterestAdapter, SettingsError> {
        Self::new_with(settings, &outbound::Outbound::default())
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<PinterestAdapter, SettingsError> {
        check_endpoint("api_base", &settings.api_base)?;
        let token_url = check_endpoint("token_url", &settings.token_url)?;
        let http = outbound.client(outbound::DEFAULT_TIMEOUT)?;
        let meter = outbound.meter(Platform::Pinterest);
        let oauth = OAuthClient::new(settings, profile(), http.clone(), meter.clone())?;
        Ok(PinterestAdapter {
            oauth,
            tokens: TokenEndpoint {
                http: http.clone(),
                meter: meter.clone(),
                url: token_url,
                client_id: settings.client_id.clone(),
                client_secret: settings.client_secret.clone(),
            },
            http,
            meter,
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads time from `clock` instead: the engine passes its own.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> PinterestAdapter {
        self.clock = clock;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// `GET /v5/user_account`: who the grant speaks for.
    async fn user_account(&self, grant: &Grant) -> Result<UserAccount, PortError> {
        let request = self
            .http
            .get(self.url("/v5/user_account"))
            .bearer_auth(grant.access_token.expose());
        let body = self.api(request, Call::Identity).await?;
        serde_json::from_slice(&body).map_err(|error| unreadable("user_account", &error, &body))
    }

    /// `GET /v5/boards`, every page: the boards a pin can be saved to.
    async fn boards(&self, grant: &Grant) -> Result<Vec<Target>, PortError> {
        let mut targets = Vec::new();
        let mut bookmark: Option<String> = None;
        for _ in 0..MAX_BOARD_PAGES {
            let mut query = vec![("page_size", BOARDS_PAGE_SIZE.to_string())];
            if let Some(bookmark) = &bookmark {
                query.push(("bookmark", bookmark.clone()));
            }
            let request = self
                .http
                .get(self.url("/v5/boards"))
                .query(&query)
                .bearer_auth(grant.access_token.expose());
            let body = self.api(request, Call::Boards).await?;
            let page: BoardPage = serde_json::from_slice(&body)
                .map_err(|error| unreadable("boards", &error, &body))?;
            targets.extend(page.items.into_iter().map(|board| Target {
                kind: TargetKind::Board,
                id: board.id,
                name: board.name,
            }));
            match page.bookmark.filter(|b| !b.is_empty()) {
                Some(next) if Some(&next) != bookmark.as_ref() => bookmark = Some(next),
                _ => return Ok(targets),
            }
        }
        tracing::warn!(
            platform = "pinterest",
            boards = targets.len(),
            "stopped listing boards after {MAX_BOARD_PAGES} pages"
        );
        Ok(targets)
    }

    /// Sends one API call and returns its body, or the classified failure.
    async fn api(&self, request: RequestBuilder, call: Call<'_>) -> Result<Vec<u8>, PortError> {
        let endpoint = match call {
            Call::Identity => outbound::Endpoint::Identity,
            Call::Boards => outbound::Endpoint::Targets,
            Call::Publish { .. } => outbound::Endpoint::Publish,
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
        call: Call<'_>,
    ) -> PortError {
        let said = || {
            serde_json::from_slice::<ErrorBody>(body)
                .ok()
                .and_then(|b| b.message)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| body_excerpt(body))
        };
        match (status, call) {
            (StatusCode::UNAUTHORIZED, _) => PortError::Unauthorized,
            (StatusCode::TOO_MANY_REQUESTS, _) => PortError::RateLimited {
                retry_after: rate_limit_wait(headers, self.clock.now())
                    .unwrap_or(DEFAULT_RATE_WAIT),
                scope: LimitScope::Connection,
            },
            (status, _) if status.is_server_error() => {
                outbound::server_error(status, body_excerpt(body))
            }
            (StatusCode::FORBIDDEN, Call::Publish { board_id }) => {
                PortError::RequirementUnmet(Reason::with_platform_message(
                    ReasonCode::PermissionRemoved,
                    format!(
                        "Pinterest refused to save a pin to board {board_id}; the account may \
                         no longer be allowed to write to it: {}",
                        said()
                    ),
                ))
            }
            (StatusCode::FORBIDDEN, _) => PortError::RequirementUnmet(
                Reason::with_platform_message(ReasonCode::PermissionRemoved, said()),
            ),
            (StatusCode::NOT_FOUND, Call::Publish { board_id }) => {
                PortError::ContentRejected(Reason::with_platform_message(
                    ReasonCode::ContentRejected,
                    format!(
                        "board {board_id} was not found on Pinterest (deleted, or not this \
                         account's); choose another board: {}",
                        said()
                    ),
                ))
            }
            (StatusCode::BAD_REQUEST, Call::Publish { .. }) => PortError::ContentRejected(
                Reason::with_platform_message(ReasonCode::ContentRejected, said()),
            ),
            // Another 4xx means the request never matched a Pinterest resource (a
            // misconfigured api_base, a retired route): nothing was done, and the detail
            // tells an administrator what to fix.
            (status, _) => PortError::Unavailable {
                detail: format!("Pinterest answered HTTP {status}: {}", body_excerpt(body)),
                maybe_delivered: false,
            },
        }
    }
}

/// The wait a 429 announces: `x-ratelimit-reset` (unix seconds, or seconds from now when
/// small), else `Retry-After`.
fn rate_limit_wait(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let reset = headers
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|reset| {
            let wait = if reset >= RESET_IS_UNIX_TIME_FROM {
                now.until(Timestamp::from_unix_millis(reset.saturating_mul(1000)))
            } else {
                Duration::from_secs(u64::try_from(reset).unwrap_or(0))
            };
            wait.max(MIN_RATE_WAIT)
        });
    reset.or_else(|| outbound::retry_after(headers, now))
}

fn unreadable(what: &str, error: &serde_json::Error, body: &[u8]) -> PortError {
    PortError::Unavailable {
        detail: format!(
            "Pinterest's {what} answer could not be read ({}): {}",
            outbound::json_failure(error),
            body_excerpt(body)
        ),
        maybe_delivered: false,
    }
}

/// The one image a pin is made of.
fn first_image(post: &Post) -> Option<&Media> {
    post.content
        .media
        .iter()
        .find(|media| media.kind == MediaKind::Image)
}

/// The body of `POST /v5/pins`. Empty optional fields are left out rather than sent
/// empty.
fn pin_body(post: &Post, board_id: &str, image: &Media) -> Value {
    let mut body = Map::new();
    body.insert("board_id".into(), json!(board_id));
    let mut optional = |name: &str, value: Option<&str>| {
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            body.insert(name.into(), json!(value));
        }
    };
    optional("title", post.content.title.as_deref());
    optional("description", Some(post.content.text.as_str()));
    optional("link", post.content.links.first().map(String::as_str));
    optional("alt_text", image.alt.as_deref());
    body.insert(
        "media_source".into(),
        json!({"source_type": "image_url", "url": image.url}),
    );
    Value::Object(body)
}

#[async_trait]
impl PlatformPort for PinterestAdapter {
    fn platform(&self) -> Platform {
        Platform::Pinterest
    }

    #[tracing::instrument(skip_all, fields(platform = "pinterest"))]
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = self.clock.now();
        self.tokens
            .refresh(grant, now)
            .await
            .map_err(TokenError::into_port_error)
    }

    #[tracing::instrument(skip_all, fields(platform = "pinterest"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        self.user_account(grant).await.map(|user| user.account())
    }

    #[tracing::instrument(skip_all, fields(platform = "pinterest", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        // Scheduling validated the post already; checking again keeps a post that slipped
        // past (an older rule, an edited record) from reaching Pinterest.
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
        let (Some(board_id), Some(image)) = (post.target.as_deref(), first_image(post)) else {
            return Err(refused("a pin needs a board and an image".into()));
        };
        let request = self
            .http
            .post(self.url("/v5/pins"))
            .bearer_auth(grant.access_token.expose())
            .json(&pin_body(post, board_id, image));
        let answer = self.api(request, Call::Publish { board_id }).await?;
        let created: CreatedPin = serde_json::from_slice(&answer).map_err(|error| {
            // Pinterest said 2xx: the pin exists, but without its id it cannot be confirmed.
            PortError::Unavailable {
                detail: format!(
                    "Pinterest's answer to the pin could not be read ({}): {}",
                    outbound::json_failure(&error),
                    body_excerpt(&answer)
                ),
                maybe_delivered: true,
            }
        })?;
        let id = created.id;
        tracing::info!(platform = "pinterest", pin_id = %id, "pin published");
        Ok(Receipt {
            url: Some(format!("https://www.pinterest.com/pin/{id}/")),
            platform_post_id: id,
        })
    }

    /// Pinterest's revoke endpoint takes only system users' tokens ("Only tokens issued
    /// for system users are currently supported"), so a user's grant cannot be revoked:
    /// disconnect says so, and the author removes the app in Pinterest's settings.
    async fn revoke(&self, _grant: &Grant) -> Result<RevokeOutcome, PortError> {
        Ok(RevokeOutcome::NotSupported)
    }
}

#[async_trait]
impl Adapter for PinterestAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        self.oauth.authorize(state, redirect_uri)
    }

    #[tracing::instrument(skip_all, fields(platform = "pinterest"))]
    async fn connect(
        &self,
        code: &str,
        _pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        if url::Url::parse(redirect_uri).is_err() {
            return Err(ConnectError::InvalidRedirectUri(redirect_uri.to_owned()));
        }
        let grant = self
            .tokens
            .exchange_code(code, redirect_uri, now)
            .await
            .map_err(TokenError::into_connect_error)?;

        // Nothing to discard on failure below: Pinterest cannot revoke a user's tokens.
        if let Some(reason) = super::ungranted("Pinterest", POSTING_SCOPES, &grant.scopes) {
            return Err(ConnectError::RequirementUnmet(reason));
        }
        if grant.refresh_token.is_none() {
            return Err(ConnectError::RequirementUnmet(
                Reason::with_platform_message(
                    ReasonCode::PermissionRemoved,
                    "Pinterest issued no refresh token, so the connection would lapse with its \
                 access token",
                ),
            ));
        }

        let user = self.user_account(&grant).await?;
        let targets = self.boards(&grant).await?;
        tracing::info!(
            platform = "pinterest",
            username = %user.username,
            boards = targets.len(),
            "account connected"
        );
        Ok(Connected {
            grant,
            account: user.account(),
            targets,
        })
    }

    fn scopes(&self) -> &'static [&'static str] {
        SCOPES
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        if post.kind != PostKind::Pin || !Platform::Pinterest.supports(post.kind) {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        if post.target.as_deref().is_none_or(|t| t.trim().is_empty()) {
            errors.push(ContentError::TargetRequired {
                target: "board".into(),
            });
        }
        let content = &post.content;
        let count = |text: &str| text.chars().count();
        if let Some(title) = &content.title {
            if count(title) > MAX_TITLE {
                errors.push(ContentError::TitleTooLong {
                    limit: MAX_TITLE,
                    actual: count(title),
                });
            }
        }
        if count(&content.text) > MAX_DESCRIPTION {
            errors.push(ContentError::TextTooLong {
                limit: MAX_DESCRIPTION,
                actual: count(&content.text),
            });
        }
        if let Some(link) = content.links.first() {
            if count(link) > MAX_LINK {
                errors.push(ContentError::LinkTooLong {
                    limit: MAX_LINK,
                    actual: count(link),
                });
            }
        }
        let images: Vec<&Media> = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Image)
            .collect();
        let videos = content.media.len() - images.len();
        if videos > 0 {
            errors.push(ContentError::VideoNotSupported);
        } else if images.is_empty() {
            errors.push(ContentError::MediaRequired {
                what: "an image".into(),
            });
        }
        // Carousels (`multiple_image_urls`) are not implemented: one image per pin.
        if images.len() > 1 {
            errors.push(ContentError::TooManyImages {
                limit: 1,
                actual: images.len(),
            });
        }
        if let Some(alt) = images.first().and_then(|image| image.alt.as_deref()) {
            if count(alt) > MAX_ALT_TEXT {
                errors.push(ContentError::AltTextTooLong {
                    limit: MAX_ALT_TEXT,
                    actual: count(alt),
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
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
    }

    #[test]
    fn the_reset_header_wins_and_reads_unix_time_or_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(
            rate_limit_wait(&headers, now()),
            Some(Duration::from_secs(30))
        );
        let reset = now().unix_millis() / 1000 + 90;
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        assert_eq!(
            rate_limit_wait(&headers, now()),
            Some(Duration::from_secs(90))
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("45"));
        assert_eq!(
            rate_limit_wait(&headers, now()),
            Some(Duration::from_secs(45))
        );
        assert_eq!(rate_limit_wait(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn account_kinds_follow_account_type() {
        let user = |kind: &str| UserAccount {
            id: None,
            username: "jane".into(),
            account_type: Some(kind.into()),
            business_name: None,
            profile_image: None,
        };
        assert_eq!(user("BUSINESS").account().kind, AccountKind::Business);
        assert_eq!(user("PINNER").account().kind, AccountKind::Personal);
        assert_eq!(user("PINNER").account().platform_id, "jane");
    }
}
