//! The Meta Graph API parts Facebook Pages and Instagram share: Facebook Login's
//! authorize URL and code exchange, the long-lived token exchange, `debug_token`,
//! revocation through `DELETE /me/permissions`, and the one classification of Graph's
//! error envelope and usage headers.
//!
//! Graph is not RFC 6749 on the wire: the token endpoint is a `GET` with the client
//! secret in the query and answers errors in Graph's own envelope
//! (`{"error":{"message","type","code","error_subcode","fbtrace_id"}}`), so this module
//! speaks it itself instead of going through [`super::oauth`]. No PKCE: Facebook Login
//! documents PKCE only for its "OIDC Code Flow with PKCE", which it calls still in
//! testing, not for the manual code flow used here; `state` protects the callback.
//!
//! | Graph answered | class |
//! |---|---|
//! | code 190, subcode 458 (app removed) | `GrantDead(revoked_by_user)` |
//! | code 190, subcode 459 (checkpointed) | `GrantDead(account_checkpointed)` |
//! | code 190, subcode 460 (password changed) | `GrantDead(password_changed)` |
//! | code 190, subcode 463 (expired) | `GrantDead(grant_expired)` |
//! | code 190, subcode 464 (unconfirmed user) | `GrantDead(account_unconfirmed)` |
//! | code 190, subcode 467 or none (invalid, logged out), code 102 | `GrantDead(authorization_invalid)` |
//! | code 10, 200–299 (permission) | `RequirementUnmet(permission_removed)` |
//! | code 368 (blocked for policy) | `RequirementUnmet(account_suspended)` |
//! | code 4 (app) | `RateLimited(platform)` |
//! | codes 17 (user), 32 (Page), 613 (custom), 80001 (Pages BUC), 80002 (Instagram BUC), 9 (Instagram publishing) | `RateLimited(connection)` |
//! | code 4 with subcode 2207051 (Instagram: restricted as spam), 506 (duplicate), 36000, and any other 4xx on a publish | `ContentRejected` |
//! | codes 1, 2, -2 (container expired), 9007 (media not ready), 5xx, timeouts | `Unavailable` |
//!
//! A token request at connect is read first for what it says about the code and the app
//! ([`classify_token`]): Graph's "invalid code" family (code 100, a 190 on the code just
//! issued) means the author starts over, codes 1 and 101 mean the app's credentials.
//!
//! A rate limit waits for the largest `estimated_time_to_regain_access` (minutes) any
//! usage header (`X-Business-Use-Case-Usage`, `X-Page-Usage`, `X-App-Usage`) announces;
//! ⚠ Meta publishes no wait for the codes themselves, so without one the queue waits
//! [`DEFAULT_RATE_WAIT`]. Graph sends the same headers on successful answers: one that
//! shows a usage figure at 100% or an estimated wait holds off the next publish before
//! it is sent ([`usage_hold`], [`GraphApp::held`]) — for the Page or account whose token
//! it came with, or for every connection when it is the app's own `X-App-Usage`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use social_studio_actors::{Clock, LimitScope, PortError, RevokeOutcome, SystemClock};
use social_studio_storage::{Platform, Reason, ReasonCode, Secret, Timestamp};
use url::Url;

use super::oauth::{check_endpoint, TokenError, TokenRequest};
use super::outbound::{self, body_excerpt, Endpoint};
use super::{AuthorizeRequest, ConnectError, PlatformSettings, SettingsError};

// The Graph API version lives in a macro so that `concat!` can build the endpoints from
// it at compile time; `GRAPH_API_VERSION` is the one place to change it.
macro_rules! graph_version {
    () => {
        "v25.0"
    };
}

/// The Meta Graph API version every Facebook and Instagram endpoint is pinned to
/// (released February 2026, available until July 2028).
pub const GRAPH_API_VERSION: &str = graph_version!();

/// Meta's real endpoints, shared by Facebook and Instagram (through Facebook Login for
/// Business) — the defaults their `[platforms.*]` sections override. No `revoke_url`:
/// Meta revokes through the Graph API (`DELETE /{user-id}/permissions`).
pub const ENDPOINTS: super::Endpoints = super::Endpoints {
    auth_url: concat!(
        "https://www.facebook.com/",
        graph_version!(),
        "/dialog/oauth"
    ),
    token_url: concat!(
        "https://graph.facebook.com/",
        graph_version!(),
        "/oauth/access_token"
    ),
    revoke_url: None,
    api_base: concat!("https://graph.facebook.com/", graph_version!()),
};

/// What a rate limit waits when no usage header says how long: Meta's app and user
/// limits are rolling one-hour windows, so a few minutes lets usage fall without
/// stalling posts for the whole hour.
pub const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(5 * 60);

/// Answers of one paged edge read at most by [`GraphApp::get_all`]: with `limit=100`,
/// two thousand Pages.
pub const MAX_EDGE_PAGES: usize = 20;

/// The usage headers that can carry `estimated_time_to_regain_access`.
const USAGE_HEADERS: &[&str] = &[
    "x-business-use-case-usage",
    "x-page-usage",
    "x-app-usage",
    "x-ad-account-usage",
];

/// Graph's error envelope, as far as the engine reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GraphError {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    /// The message Meta writes for people, where it wrote one.
    #[serde(default)]
    pub error_user_msg: Option<String>,
    /// Meta's own hint that trying again may work.
    #[serde(default)]
    pub is_transient: Option<bool>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    error: GraphError,
}

impl GraphError {
    /// Reads the envelope from a body, if it is one.
    pub fn parse(body: &[u8]) -> Option<GraphError> {
        serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error)
    }

    /// What Meta said, with its codes, for [`Reason::platform_message`].
    pub fn said(&self) -> String {
        let mut text = self
            .error_user_msg
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.message.clone());
        match self.error_subcode {
            Some(sub) => text.push_str(&format!(" (code {}, subcode {sub})", self.code)),
            None => text.push_str(&format!(" (code {})", self.code)),
        }
        text
    }
}

/// Which kind of call failed: the same code means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Identity, targets, token checks: nothing is created.
    Read,
    /// Anything that creates content (posts, photos, containers, media_publish).
    Publish,
}

/// The reason a code-190 family error names.
pub fn dead_grant_reason(code: i64, subcode: Option<i64>) -> ReasonCode {
    match (code, subcode) {
        (190, Some(458)) => ReasonCode::RevokedByUser,
        (190, Some(459)) => ReasonCode::AccountCheckpointed,
        (190, Some(460)) => ReasonCode::PasswordChanged,
        (190, Some(463)) => ReasonCode::GrantExpired,
        (190, Some(464)) => ReasonCode::AccountUnconfirmed,
        _ => ReasonCode::AuthorizationInvalid,
    }
}

/// Classifies a Graph error already read from its envelope.
pub fn classify_error(error: &GraphError, headers: &HeaderMap, call: Call) -> PortError {
    let reason = |code: ReasonCode| Reason::with_platform_message(code, error.said());
    let limited = |scope: LimitScope| PortError::RateLimited {
        retry_after: usage_wait(headers).unwrap_or(DEFAULT_RATE_WAIT),
        scope,
    };
    let unavailable = || PortError::Unavailable {
        detail: format!("Graph answered {}", error.said()),
        maybe_delivered: false,
    };
    match (error.code, error.error_subcode) {
        (190, subcode) => PortError::GrantDead(reason(dead_grant_reason(190, subcode))),
        (102, _) => PortError::GrantDead(reason(ReasonCode::AuthorizationInvalid)),
        (4, Some(2_207_051)) => PortError::ContentRejected(reason(ReasonCode::ContentRejected)),
        (4, _) => limited(LimitScope::Platform),
        (17 | 32 | 613 | 80_001 | 80_002 | 9, _) => limited(LimitScope::Connection),
        (10 | 200..=299, _) => PortError::RequirementUnmet(reason(ReasonCode::PermissionRemoved)),
        (368, _) => PortError::RequirementUnmet(reason(ReasonCode::AccountSuspended)),
        (1 | 2 | -2 | 9007, _) => unavailable(),
        _ if call == Call::Publish => {
            PortError::ContentRejected(reason(ReasonCode::ContentRejected))
        }
        _ => unavailable(),
    }
}

/// Classifies a Graph answer that is not a 2xx.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], call: Call) -> PortError {
    match GraphError::parse(body) {
        // Graph sends its envelope with 400, 403 and 500 alike: the code decides, except
        // that a 5xx whose code says nothing more is a passing fault.
        Some(error) if !(status.is_server_error() && matches!(error.code, 0..=2)) => {
            classify_error(&error, headers, call)
        }
        _ if status.is_server_error() => outbound::server_error(status, body_excerpt(body)),
        _ if status == StatusCode::TOO_MANY_REQUESTS => PortError::RateLimited {
            retry_after: usage_wait(headers).unwrap_or(DEFAULT_RATE_WAIT),
            scope: LimitScope::Connection,
        },
        _ => PortError::Unavailable {
            detail: format!("Graph answered HTTP {status}: {}", body_excerpt(body)),
            maybe_delivered: false,
        },
    }
}

/// The largest `estimated_time_to_regain_access` (minutes) in any usage header.
/// `X-Business-Use-Case-Usage` maps business ids to arrays of objects; the others are one
/// object. Absent, zero or unreadable means "not said".
pub fn usage_wait(headers: &HeaderMap) -> Option<Duration> {
    usage_values(headers)
        .filter_map(|(_, value)| largest(&value, &["estimated_time_to_regain_access"]))
        .max()
        .filter(|m| *m > 0)
        .map(minutes)
}

/// What the usage headers of a *successful* answer say about the calls after it. Meta
/// throttles an app, Page or business once any of its usage figures (`call_count`,
/// `total_cputime`, `total_time`, in percent) reaches 100, and says
/// `estimated_time_to_regain_access` (minutes) when it already does. Either is a reason
/// not to send the next publish: `Some` with how long to hold off (the estimate, else
/// [`DEFAULT_RATE_WAIT`]) and whom it concerns (`X-App-Usage` the whole app, the others
/// one Page or business; the app's hold wins). Below 100 and without an estimate, nothing.
pub fn usage_hold(headers: &HeaderMap) -> Option<(Duration, LimitScope)> {
    usage_values(headers)
        .filter_map(|(name, value)| {
            let wait = match largest(&value, &["estimated_time_to_regain_access"]) {
                Some(m) if m > 0 => minutes(m),
                _ if largest(&value, &["call_count", "total_cputime", "total_time"])
                    .is_some_and(|p| p >= 100) =>
                {
                    DEFAULT_RATE_WAIT
                }
                _ => return None,
            };
            let scope = if name == "x-app-usage" {
                LimitScope::Platform
            } else {
                LimitScope::Connection
            };
            Some((wait, scope))
        })
        .reduce(|(w1, s1), (w2, s2)| {
            let scope = if s1 == LimitScope::Platform || s2 == LimitScope::Platform {
                LimitScope::Platform
            } else {
                LimitScope::Connection
            };
            (w1.max(w2), scope)
        })
}

/// Each usage header present and readable as JSON, with its name.
fn usage_values(headers: &HeaderMap) -> impl Iterator<Item = (&'static str, Value)> + '_ {
    USAGE_HEADERS.iter().filter_map(|name| {
        let text = headers.get(*name)?.to_str().ok()?;
        Some((*name, serde_json::from_str::<Value>(text).ok()?))
    })
}

/// The largest number under any of `keys`, at any depth: `X-Business-Use-Case-Usage`
/// maps business ids to arrays of objects; the others are one object.
fn largest(value: &Value, keys: &[&str]) -> Option<u64> {
    match value {
        Value::Object(map) => {
            let own = keys
                .iter()
                .filter_map(|k| map.get(*k).and_then(Value::as_u64));
            map.values()
                .filter_map(|v| largest(v, keys))
                .chain(own)
                .max()
        }
        Value::Array(items) => items.iter().filter_map(|v| largest(v, keys)).max(),
        _ => None,
    }
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m.saturating_mul(60))
}

/// A token answer of `/oauth/access_token`.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Absent for tokens that do not expire.
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A user access token and when it lapses.
#[derive(Debug, Clone)]
pub struct UserToken {
    pub token: Secret,
    /// `None` where Graph gave no lifetime.
    pub expires_at: Option<Timestamp>,
}

/// `GET /debug_token`'s `data`, as far as the engine reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenDebug {
    #[serde(default)]
    pub is_valid: bool,
    /// Unix seconds; 0 means the token does not expire.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Unix seconds when the app's access to the person's data lapses (90 days after
    /// their last use of the app).
    #[serde(default)]
    pub data_access_expires_at: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    /// Set on a Page token.
    #[serde(default)]
    pub profile_id: Option<String>,
    /// Why the token is invalid, where it is (same code and subcode as the envelope).
    #[serde(default)]
    pub error: Option<DebugError>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DebugError {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub subcode: Option<i64>,
    #[serde(default)]
    pub message: String,
}

impl TokenDebug {
    /// That the token is alive and holds every `needed` scope: the dead-grant failure
    /// ([`TokenDebug::invalid`]) or `permission_removed` naming what `who` lacks.
    pub fn proves(&self, who: &str, needed: &[&str]) -> Result<(), PortError> {
        if !self.is_valid {
            return Err(self.invalid());
        }
        match super::ungranted(who, needed, &self.scopes) {
            Some(reason) => Err(PortError::RequirementUnmet(reason)),
            None => Ok(()),
        }
    }

    /// The dead-grant failure an invalid token stands for.
    pub fn invalid(&self) -> PortError {
        let error = self.error.clone().unwrap_or_default();
        let code = if error.code == 0 { 190 } else { error.code };
        let message = if error.message.is_empty() {
            "debug_token says the token is not valid".to_owned()
        } else {
            error.message.clone()
        };
        PortError::GrantDead(Reason::with_platform_message(
            dead_grant_reason(code, error.subcode),
            message,
        ))
    }

    /// When the token lapses; `None` for a token that does not expire.
    pub fn expires(&self) -> Option<Timestamp> {
        self.expires_at
            .filter(|s| *s > 0)
            .map(|s| Timestamp::from_unix_millis(s.saturating_mul(1000)))
    }
}

/// One Meta app on the Graph API: Facebook Login for it, and signed Graph calls.
pub struct GraphApp {
    pub http: reqwest::Client,
    /// Counts every call, as the platform's (Facebook's or Instagram's).
    meter: outbound::CallMeter,
    auth_url: Url,
    token_url: Url,
    /// `https://graph.facebook.com/v25.0`, no trailing slash.
    api_base: String,
    client_id: String,
    client_secret: Secret,
    /// Time for token lifetimes.
    pub clock: Arc<dyn Clock>,
    /// Until when usage headers on successful answers said to hold off publishing: the
    /// app's hold under `None`, a token's (one Page or account) under its fingerprint.
    holds: std::sync::Mutex<std::collections::HashMap<Option<u64>, Timestamp>>,
}

impl std::fmt::Debug for GraphApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphApp")
            .field("client_id", &self.client_id)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl GraphApp {
    /// The app in `settings`, for `platform`, with clients built and calls counted by
    /// `outbound`.
    pub fn new(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
        platform: Platform,
    ) -> Result<GraphApp, SettingsError> {
        check_endpoint("api_base", &settings.api_base)?;
        Ok(GraphApp {
            http: outbound.client(outbound::DEFAULT_TIMEOUT)?,
            meter: outbound.meter(platform),
            auth_url: check_endpoint("auth_url", &settings.auth_url)?,
            token_url: check_endpoint("token_url", &settings.token_url)?,
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            clock: Arc::new(SystemClock),
            holds: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// The app access token `{app-id}|{app-secret}` that `debug_token` takes.
    fn app_token(&self) -> String {
        format!("{}|{}", self.client_id, self.client_secret.expose())
    }

    /// Facebook Login's dialog URL: `client_id`, `redirect_uri`, `state`, the scopes
    /// comma-separated as Meta writes them, `response_type=code`.
    pub fn authorize(
        &self,
        state: &str,
        redirect_uri: &str,
        scopes: &[&str],
    ) -> Result<AuthorizeRequest, ConnectError> {
        if Url::parse(redirect_uri).is_err() {
            return Err(ConnectError::InvalidRedirectUri(redirect_uri.to_owned()));
        }
        let mut url = self.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("response_type", "code")
            .append_pair("scope", &scopes.join(","));
        Ok(AuthorizeRequest {
            url: url.into(),
            pkce_verifier: None,
        })
    }

    /// Exchanges the code for a short-lived user token, then that for a long-lived one.
    pub async fn connect_token(
        &self,
        code: &str,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<UserToken, ConnectError> {
        if Url::parse(redirect_uri).is_err() {
            return Err(ConnectError::InvalidRedirectUri(redirect_uri.to_owned()));
        }
        let short = self
            .token(
                &[
                    ("client_id", self.client_id.as_str()),
                    ("redirect_uri", redirect_uri),
                    ("client_secret", self.client_secret.expose()),
                    ("code", code),
                ],
                now,
                TokenRequest::CodeExchange,
            )
            .await
            .map_err(TokenError::into_connect_error)?;
        self.exchange_long_lived(&short.token, now, TokenRequest::TokenExchange)
            .await
            .map_err(TokenError::into_connect_error)
    }

    /// `grant_type=fb_exchange_token`: a long-lived user token (about 60 days) for a
    /// valid user token. An expired token cannot be exchanged. `request` says whether
    /// this is connect's exchange or a renewal, which read refusals differently.
    pub async fn exchange_long_lived(
        &self,
        token: &Secret,
        now: Timestamp,
        request: TokenRequest,
    ) -> Result<UserToken, TokenError> {
        self.token(
            &[
                ("grant_type", "fb_exchange_token"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose()),
                ("fb_exchange_token", token.expose()),
            ],
            now,
            request,
        )
        .await
    }

    async fn token(
        &self,
        query: &[(&str, &str)],
        now: Timestamp,
        request: TokenRequest,
    ) -> Result<UserToken, TokenError> {
        let (status, headers, body) = outbound::exchange(
            self.http.get(self.token_url.clone()).query(query),
            self.meter.call(request.endpoint()),
        )
        .await
        .map_err(TokenError::Port)?;
        if !status.is_success() {
            return Err(classify_token(status, &headers, &body, request));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|error| {
            TokenError::Port(PortError::Unavailable {
                detail: format!(
                    "Graph's token answer could not be read ({}): {}",
                    outbound::json_failure(&error),
                    body_excerpt(&body)
                ),
                maybe_delivered: false,
            })
        })?;
        Ok(UserToken {
            token: Secret::new(answer.access_token),
            expires_at: answer
                .expires_in
                .filter(|s| *s > 0)
                .map(|s| now.saturating_add(Duration::from_secs(s))),
        })
    }

    /// `GET /debug_token?input_token=…` with the app token.
    pub async fn debug_token(&self, token: &Secret) -> Result<TokenDebug, PortError> {
        #[derive(Deserialize)]
        struct Answer {
            data: TokenDebug,
        }
        let app_token = self.app_token();
        let request = self.http.get(self.url("/debug_token")).query(&[
            ("input_token", token.expose()),
            ("access_token", app_token.as_str()),
        ]);
        let body = self.send(request, Call::Read, Endpoint::Identity).await?;
        serde_json::from_slice::<Answer>(&body)
            .map(|a| a.data)
            .map_err(|error| unreadable("debug_token", &error, &body))
    }

    /// `DELETE /me/permissions`: de-authorizes the app for the person, which ends every
    /// token of this app for them.
    pub async fn revoke(&self, user_token: &Secret) -> Result<RevokeOutcome, PortError> {
        let request = self
            .http
            .delete(self.url("/me/permissions"))
            .bearer_auth(user_token.expose());
        match self.send(request, Call::Read, Endpoint::Revoke).await {
            Ok(_) => Ok(RevokeOutcome::Revoked),
            // Already dead at Meta: nothing left to revoke.
            Err(PortError::GrantDead(_)) => Ok(RevokeOutcome::Revoked),
            Err(other) => Err(other),
        }
    }

    /// `GET {path}` with `token`, read as `T`; counted as `endpoint`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &[(&str, &str)],
        token: &Secret,
    ) -> Result<T, PortError> {
        let request = self
            .http
            .get(self.url(path))
            .query(query)
            .bearer_auth(token.expose());
        let body = self.send_as(request, Call::Read, endpoint, token).await?;
        serde_json::from_slice(&body).map_err(|error| unreadable(path, &error, &body))
    }

    /// Every item of a paged edge (`/me/accounts`): `GET {path}` again with
    /// `after={cursor}` for as long as Graph's `paging` has a `next` page. The cursor,
    /// not the `next` URL, is followed, so the token only ever goes to the configured
    /// Graph host. At most [`MAX_EDGE_PAGES`] answers are read; a longer edge is cut
    /// there with a warning rather than read without end.
    pub async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &[(&str, &str)],
        token: &Secret,
    ) -> Result<Vec<T>, PortError> {
        #[derive(Deserialize)]
        struct Answer<T> {
            #[serde(default = "Vec::new")]
            data: Vec<T>,
            #[serde(default)]
            paging: Option<Paging>,
        }
        #[derive(Deserialize)]
        struct Paging {
            #[serde(default)]
            next: Option<String>,
            #[serde(default)]
            cursors: Option<Cursors>,
        }
        #[derive(Deserialize)]
        struct Cursors {
            #[serde(default)]
            after: Option<String>,
        }
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_EDGE_PAGES {
            let mut page_query = query.to_vec();
            if let Some(cursor) = after.as_deref() {
                page_query.push(("after", cursor));
            }
            let answer: Answer<T> = self.get(endpoint, path, &page_query, token).await?;
            items.extend(answer.data);
            let next = answer
                .paging
                .filter(|paging| paging.next.is_some())
                .and_then(|paging| paging.cursors?.after)
                // A cursor that does not move would read the same page forever.
                .filter(|cursor| after.as_deref() != Some(cursor.as_str()));
            match next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(items),
            }
        }
        tracing::warn!(
            path,
            items = items.len(),
            "Graph edge longer than {MAX_EDGE_PAGES} pages; the rest is not read"
        );
        Ok(items)
    }

    /// `POST {path}` with a form, for calls that create something. A 2xx whose body
    /// cannot be read may still have created it (`maybe_delivered`).
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        path: &str,
        form: &[(String, String)],
        token: &Secret,
    ) -> Result<T, PortError> {
        let request = self
            .http
            .post(self.url(path))
            .form(form)
            .bearer_auth(token.expose());
        let body = self
            .send_as(request, Call::Publish, endpoint, token)
            .await?;
        serde_json::from_slice(&body).map_err(|error| PortError::Unavailable {
            detail: format!(
                "Graph's answer to {path} could not be read ({}): {}",
                outbound::json_failure(&error),
                body_excerpt(&body)
            ),
            maybe_delivered: true,
        })
    }

    /// [`GraphApp::send`] with `token`, whose successful answers' usage headers are
    /// kept: a figure at 100% or an estimated wait holds off the next publish with that
    /// token (or, for `X-App-Usage`, with any) — see [`GraphApp::held`].
    async fn send_as(
        &self,
        request: RequestBuilder,
        call: Call,
        endpoint: Endpoint,
        token: &Secret,
    ) -> Result<Vec<u8>, PortError> {
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(endpoint)).await?;
        if !status.is_success() {
            return Err(classify(status, &headers, &body, call));
        }
        if let Some((wait, scope)) = usage_hold(&headers) {
            let until = self.clock.now().saturating_add(wait);
            let key = match scope {
                LimitScope::Platform => None,
                LimitScope::Connection => Some(fingerprint(token)),
            };
            tracing::warn!(
                ?scope,
                wait_secs = wait.as_secs(),
                "Graph usage at its limit; holding off publishing"
            );
            let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
            let entry = holds.entry(key).or_insert(until);
            *entry = (*entry).max(until);
        }
        Ok(body)
    }

    /// Refuses to start a publish with `token` while a usage header said to hold off:
    /// `RateLimited` for what is left of the wait, so the queue holds the post instead of
    /// spending a call Meta would throttle (or count against a Page at its limit).
    pub fn held(&self, token: &Secret) -> Result<(), PortError> {
        let now = self.clock.now();
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.retain(|_, until| *until > now);
        for (key, scope) in [
            (None, LimitScope::Platform),
            (Some(fingerprint(token)), LimitScope::Connection),
        ] {
            if let Some(until) = holds.get(&key) {
                return Err(PortError::RateLimited {
                    retry_after: now.until(*until),
                    scope,
                });
            }
        }
        Ok(())
    }

    /// Sends one call, counted as `endpoint`, and returns its body, or the classified
    /// failure.
    pub async fn send(
        &self,
        request: RequestBuilder,
        call: Call,
        endpoint: Endpoint,
    ) -> Result<Vec<u8>, PortError> {
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(endpoint)).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(classify(status, &headers, &body, call))
    }
}

/// A key for a token in memory that is not the token.
fn fingerprint(token: &Secret) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.expose().hash(&mut hasher);
    hasher.finish()
}

/// Classifies a token endpoint's answer to `request` that is not a 2xx. At connect
/// (the code, and the token just issued for it), Graph's "invalid code" family (code
/// 100, e.g. subcode 36009 "This authorization code has been used", or a 190 on the code
/// just issued) means the author must start again, and codes 1 and 101 about the app
/// ("Error validating client secret", "Invalid application ID") mean its credentials
/// are wrong. Everything else, and every answer to a renewal, is judged as a read
/// ([`classify`]).
pub fn classify_token(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    request: TokenRequest,
) -> TokenError {
    let at_connect = matches!(
        request,
        TokenRequest::CodeExchange | TokenRequest::TokenExchange
    );
    match GraphError::parse(body) {
        Some(e) if at_connect && matches!(e.code, 1 | 101) => TokenError::ClientRefused {
            status: status.as_u16(),
            error: e.code.to_string(),
            message: e.said(),
        },
        Some(e) if at_connect && matches!(e.code, 100 | 190) => TokenError::GrantRefused {
            status: status.as_u16(),
            error: e.code.to_string(),
            message: e.said(),
            reason: dead_grant_reason(e.code, e.error_subcode),
        },
        _ => TokenError::Port(classify(status, headers, body, Call::Read)),
    }
}

fn unreadable(what: &str, error: &serde_json::Error, body: &[u8]) -> PortError {
    PortError::Unavailable {
        detail: format!(
            "Graph's {what} answer could not be read ({}): {}",
            outbound::json_failure(error),
            body_excerpt(body)
        ),
        maybe_delivered: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn envelope(code: i64, subcode: Option<i64>) -> Vec<u8> {
        serde_json::json!({"error": {"message": "m", "type": "OAuthException", "code": code,
            "error_subcode": subcode, "fbtrace_id": "A1"}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn usage_headers_give_the_longest_announced_wait() {
        let mut headers = HeaderMap::new();
        assert_eq!(usage_wait(&headers), None);
        headers.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":100,"total_time":20,"total_cputime":5}"#),
        );
        assert_eq!(usage_wait(&headers), None, "no estimate, no wait");
        headers.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"1":[{"type":"pages","call_count":100,"estimated_time_to_regain_access":4}],"2":[{"type":"instagram","estimated_time_to_regain_access":9}]}"#,
            ),
        );
        assert_eq!(usage_wait(&headers), Some(Duration::from_secs(9 * 60)));
        headers.insert("x-page-usage", HeaderValue::from_static("not json"));
        assert_eq!(usage_wait(&headers), Some(Duration::from_secs(9 * 60)));
    }

    #[test]
    fn a_successful_answer_holds_off_publishing_only_at_the_limit() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-page-usage",
            HeaderValue::from_static(r#"{"call_count":99,"total_time":40,"total_cputime":7}"#),
        );
        assert_eq!(usage_hold(&headers), None, "below 100%: nothing");
        headers.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"1":[{"type":"pages","call_count":3,"total_time":100,"estimated_time_to_regain_access":0}]}"#,
            ),
        );
        assert_eq!(
            usage_hold(&headers),
            Some((DEFAULT_RATE_WAIT, LimitScope::Connection)),
            "a Page at 100% without an estimate: the default wait, for that connection"
        );
        headers.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":12,"estimated_time_to_regain_access":2}"#),
        );
        assert_eq!(
            usage_hold(&headers),
            Some((
                DEFAULT_RATE_WAIT.max(Duration::from_secs(120)),
                LimitScope::Platform
            )),
            "the app's hold concerns every connection; the longer wait wins"
        );
    }

    #[test]
    fn codes_are_classified_by_the_table() {
        let none = HeaderMap::new();
        let class =
            |code, sub, call| classify(StatusCode::BAD_REQUEST, &none, &envelope(code, sub), call);
        assert!(
            matches!(class(190, Some(460), Call::Read), PortError::GrantDead(r) if r.code == ReasonCode::PasswordChanged)
        );
        assert!(matches!(
            class(4, None, Call::Read),
            PortError::RateLimited {
                scope: LimitScope::Platform,
                ..
            }
        ));
        assert!(matches!(
            class(4, Some(2_207_051), Call::Publish),
            PortError::ContentRejected(_)
        ));
        assert!(matches!(
            class(9, Some(2_207_042), Call::Publish),
            PortError::RateLimited {
                scope: LimitScope::Connection,
                ..
            }
        ));
        assert!(matches!(
            class(100, None, Call::Publish),
            PortError::ContentRejected(_)
        ));
        assert!(matches!(
            class(100, None, Call::Read),
            PortError::Unavailable { .. }
        ));
        assert!(
            matches!(class(368, None, Call::Publish), PortError::RequirementUnmet(r) if r.code == ReasonCode::AccountSuspended)
        );
        assert!(matches!(
            classify(
                StatusCode::INTERNAL_SERVER_ERROR,
                &none,
                &envelope(2, None),
                Call::Publish
            ),
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &none, b"<html>", Call::Publish),
            PortError::Unavailable {
                maybe_delivered: true,
                ..
            }
        ));
    }
}
