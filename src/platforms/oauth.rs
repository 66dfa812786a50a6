//! The shared OAuth 2.0 core (RFC 6749, RFC 7636 PKCE, RFC 7009 revocation) on the
//! `oauth2` crate, for every platform that speaks standard OAuth: X, LinkedIn, Pinterest,
//! YouTube, and any RFC-conformant server such as `oidc-provider`.
//!
//! A platform describes its dialect in an [`OAuthProfile`] (scopes, client
//! authentication, PKCE, extra authorize parameters, whether refresh tokens rotate) and
//! gets an [`OAuthClient`] that builds authorize URLs, exchanges codes, refreshes and
//! revokes. Token answers become [`Grant`]s with lifetimes measured from a `now` the
//! caller passes, so the actors' clock (virtual in tests) decides expiries.
//!
//! [`TokenError`] is the one failure type of every adapter's token calls, these and the
//! ones platforms speak themselves (Graph, Threads, TikTok, Pinterest): a platform's
//! quirks are how it classifies its error bodies into it, and
//! [`TokenError::into_port_error`] and [`TokenError::into_connect_error`] say once what
//! each class means for the actors and for the connect flow. Here an RFC 6749 refusal
//! is the app's credentials when it comes with 401, `invalid_client` or
//! `unauthorized_client`, and the grant's (or the code's) otherwise; a profile may read
//! some refusals as the grant's with a reason of their own
//! ([`OAuthProfile::grant_refusals`]).
//!
//! Every answer that is not a 2xx is classified before the oauth2 crate sees it (see
//! [`Transport`]), because its error type keeps neither the status nor the headers, and
//! both decide the class (401 means the app's credentials, 429 carries `Retry-After`, a
//! 5xx is a passing fault).
//!
//! Revocation is a plain RFC 7009 form POST here rather than the crate's: the crate
//! refuses any `http://` revocation URL, which would rule out the loopback sandbox,
//! while this module applies one rule to every endpoint instead ([`check_endpoint`]):
//! HTTPS, or plain HTTP to a loopback address only.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse as _,
    TokenUrl,
};
use reqwest::header::{HeaderMap, ACCEPT, LOCATION};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use social_studio_actors::{LimitScope, PortError, RevokeOutcome};
use social_studio_storage::{Grant, Reason, ReasonCode, Secret, Timestamp};
use url::Url;

use super::outbound::{self, body_excerpt, Call, CallMeter, Endpoint};
use super::{AuthorizeRequest, ConnectError, PlatformSettings, SettingsError};

/// How long to wait after a 429 from a token endpoint that did not say how long.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// How the app proves itself at the token and revocation endpoints (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded id and secret (X, oidc-provider's
    /// default `client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form body (LinkedIn, Google).
    RequestBody,
}

/// What a platform does with the refresh token when it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTokens {
    /// Every refresh spends the token and answers with its successor (X, Pinterest,
    /// oidc-provider with rotation). A spent token must never be sent again — reuse
    /// revokes the whole grant — so an answer without a successor leaves the grant
    /// without a refresh token rather than keeping the spent one.
    Rotating,
    /// The token stays valid across refreshes; an answer without a new one keeps the old
    /// one (Google, which sends a refresh token only at the first consent).
    Reusable,
}

/// One platform's OAuth dialect.
#[derive(Debug, Clone)]
pub struct OAuthProfile {
    /// Scopes asked for at the authorize endpoint: the least that posting needs.
    pub scopes: &'static [&'static str],
    /// How the app authenticates at the token and revocation endpoints.
    pub client_auth: ClientAuth,
    /// Whether to send a PKCE S256 challenge (RFC 7636). On wherever the platform
    /// supports it; X requires it.
    pub pkce: bool,
    /// Extra authorize parameters in order (Google: `access_type=offline`,
    /// `prompt=consent`).
    pub authorize_params: Vec<(String, String)>,
    /// Whether refresh tokens rotate.
    pub refresh_tokens: RefreshTokens,
    /// Where the platform answers a dead grant otherwise than RFC 6749 says (X's
    /// `invalid_request`, LinkedIn's 401): its reading of a refusal, tried before the
    /// RFC's. `None` reads every refusal as the RFC does.
    pub grant_refusals: Option<ReadRefusal>,
}

/// Which token request an answer came to: platforms read the same refusal differently
/// for each (a refused code means starting over, a refused refresh a dead grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRequest {
    /// The authorization code, exchanged at connect.
    CodeExchange,
    /// A token issued moments ago at connect, exchanged for a long-lived one (Meta's
    /// platforms).
    TokenExchange,
    /// A grant renewed for the actors.
    Refresh,
    /// A grant revoked at disconnect.
    Revocation,
}

impl TokenRequest {
    /// What the call is, for the call count ([`outbound::call_metrics`]).
    pub fn endpoint(self) -> Endpoint {
        match self {
            TokenRequest::CodeExchange | TokenRequest::TokenExchange => Endpoint::Token,
            TokenRequest::Refresh => Endpoint::Refresh,
            TokenRequest::Revocation => Endpoint::Revoke,
        }
    }

    /// The request presents a grant the engine holds (a refresh, a revocation), not one
    /// being issued.
    pub fn presents_grant(self) -> bool {
        matches!(self, TokenRequest::Refresh | TokenRequest::Revocation)
    }
}

/// A platform's reading of an RFC 6749 refusal (the `error` code and the
/// `error_description`) to a request: `Some` with the reason to record when the
/// refusal is the grant's, `None` to read it as the RFC does.
pub type ReadRefusal = fn(TokenRequest, &str, Option<&str>) -> Option<ReasonCode>;

/// Token-response fields beyond RFC 6749 §5.1 that some platforms send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LifetimeFields {
    /// Seconds until the refresh token lapses (LinkedIn, Google, TikTok). Read leniently —
    /// a number or a numeric string — because a strict parse failure would lose a whole
    /// token answer, and with rotating tokens that loses the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token_expires_in: Option<serde_json::Value>,
}

impl LifetimeFields {
    fn refresh_lifetime(&self) -> Option<Duration> {
        let seconds = match self.refresh_token_expires_in.as_ref()? {
            serde_json::Value::Number(n) => n.as_u64()?,
            serde_json::Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        Some(Duration::from_secs(seconds))
    }
}

impl ExtraTokenFields for LifetimeFields {}

/// A token answer as the oauth2 crate reads it.
pub type TokenAnswer = StandardTokenResponse<LifetimeFields, BasicTokenType>;

/// The oauth2 client, with the endpoints it serves here (authorize, token).
type Oauth2Client = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A token request (code exchange, refresh, revocation) that produced no grant,
/// classified by the platform that answered. What each class means:
///
/// | class | for the actors ([`TokenError::into_port_error`]) | at connect ([`TokenError::into_connect_error`]) |
/// |---|---|---|
/// | `GrantRefused` | `GrantDead(reason)` | `CodeRejected` |
/// | `ClientRefused` | `RequirementUnmet(app_credentials_rejected)` | `AppCredentialsRejected` |
/// | `AccessDenied` | `GrantDead(revoked_by_user)` | `AccessDenied` |
/// | `NotRenewable` | `GrantDead(grant_expired)` | `CodeRejected` |
/// | `BadRedirectUri` | `Unavailable` | `InvalidRedirectUri` |
/// | `Port(error)` | `error` | [`ConnectError::from`] it |
///
/// The refusals carry the platform's words into the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The code or token is not (or no longer) accepted: expired, spent, revoked, or
    /// refused for any reason but the app's credentials. Repeating the request cannot
    /// make it succeed; only a new authorization helps.
    #[error("the token endpoint refused the grant (HTTP {status}): {message}")]
    GrantRefused {
        /// The HTTP status it came with.
        status: u16,
        /// The platform's error code (`invalid_grant`, Pinterest's `283`, Graph's
        /// `190`); empty where it gave none.
        error: String,
        /// What the platform said, for [`Reason::platform_message`].
        message: String,
        /// What the dead grant is recorded with: `authorization_invalid` unless the
        /// platform says more.
        reason: ReasonCode,
    },
    /// The app's own client id or secret was refused (RFC 6749 §5.2 `invalid_client`,
    /// or a 401), or the app may not use this grant type (`unauthorized_client`): a
    /// configuration problem, not the author's.
    #[error("the token endpoint refused the app's credentials (HTTP {status}): {message}")]
    ClientRefused {
        /// The HTTP status it came with.
        status: u16,
        /// The platform's error code; empty where it gave none.
        error: String,
        /// What the platform said, for [`Reason::platform_message`].
        message: String,
    },
    /// The author (or the platform) withdrew the app's authorization (TikTok's
    /// `access_denied`).
    #[error("the token endpoint says the authorization was withdrawn (HTTP {status}): {message}")]
    AccessDenied {
        /// The HTTP status it came with.
        status: u16,
        /// The platform's error code.
        error: String,
        /// What the platform said, for [`Reason::platform_message`].
        message: String,
    },
    /// A refresh was asked of a grant without a refresh token.
    #[error("the grant has no refresh token")]
    NotRenewable,
    /// The redirect URI given for a code exchange is not an absolute URL.
    #[error("the redirect URI is not an absolute URL: {0}")]
    BadRedirectUri(String),
    /// Neither the grant nor the app was refused: a rate limit, a passing fault or an
    /// unreadable answer — or, on Meta's platforms, whose token endpoints answer in the
    /// same envelope as the rest of their API, what that API's classification makes of
    /// the answer. The actors get it as it is.
    #[error(transparent)]
    Port(PortError),
}

impl TokenError {
    /// What a refresh or revocation that failed so means for the actors (see the table
    /// on [`TokenError`]).
    pub fn into_port_error(self) -> PortError {
        match self {
            TokenError::GrantRefused {
                message, reason, ..
            } => PortError::GrantDead(Reason::with_platform_message(reason, message)),
            TokenError::ClientRefused { message, .. } => PortError::RequirementUnmet(
                Reason::with_platform_message(ReasonCode::AppCredentialsRejected, message),
            ),
            TokenError::AccessDenied { message, .. } => PortError::GrantDead(
                Reason::with_platform_message(ReasonCode::RevokedByUser, message),
            ),
            TokenError::NotRenewable => PortError::GrantDead(Reason::new(ReasonCode::GrantExpired)),
            // Only a code exchange takes a redirect URI; reaching here is a caller bug,
            // which retrying cannot fix but must not kill a grant either.
            TokenError::BadRedirectUri(detail) => PortError::Unavailable {
                detail,
                maybe_delivered: false,
            },
            TokenError::Port(error) => error,
        }
    }

    /// What a code exchange that failed so means for the connect flow: a refused code
    /// (expired, replayed, wrong verifier or redirect URI) means the author must start
    /// over.
    pub fn into_connect_error(self) -> ConnectError {
        match self {
            TokenError::GrantRefused { message, .. } => ConnectError::CodeRejected {
                platform_message: Some(message),
            },
            TokenError::ClientRefused { message, .. } => ConnectError::AppCredentialsRejected {
                platform_message: Some(message),
            },
            TokenError::AccessDenied { message, .. } => ConnectError::AccessDenied {
                platform_message: Some(message),
            },
            TokenError::NotRenewable => ConnectError::CodeRejected {
                platform_message: None,
            },
            TokenError::BadRedirectUri(detail) => ConnectError::InvalidRedirectUri(detail),
            TokenError::Port(error) => ConnectError::from(error),
        }
    }

    /// A refresh of a grant without a refresh token, as Pinterest's and TikTok's own
    /// token calls have always reported it: the grant is dead, with a reason that says
    /// why. (The OAuth core answers [`TokenError::NotRenewable`], recorded as
    /// `grant_expired`.)
    pub(super) fn no_refresh_token() -> TokenError {
        TokenError::Port(PortError::GrantDead(Reason::with_platform_message(
            ReasonCode::AuthorizationInvalid,
            "the grant has no refresh token",
        )))
    }

    /// A 2xx token answer that could not be read. The server may well have acted —
    /// rotated the refresh token, spent the code — so this is an answer lost, not a
    /// request refused. Neither the body nor serde's message goes into the detail: a
    /// token answer holds the tokens, and serde quotes the values it could not read.
    pub(super) fn unreadable(whose: &str, error: &serde_json::Error) -> TokenError {
        TokenError::Port(PortError::Unavailable {
            detail: format!(
                "{whose} token answer could not be read: {:?} error at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ),
            maybe_delivered: true,
        })
    }
}

/// An OAuth 2.0 client for one platform: its app credentials, endpoints and dialect.
/// Holds no grant; every call is given the one it acts on.
pub struct OAuthClient {
    /// The oauth2 crate's client: builds authorize URLs and token requests, and reads
    /// token answers.
    inner: Oauth2Client,
    /// Sends them; built with redirects disabled.
    http: reqwest::Client,
    /// Counts them, as the platform's.
    meter: CallMeter,
    /// The RFC 7009 endpoint, where the platform has one.
    revoke_url: Option<Url>,
    /// The app's credentials again, for revocation, which this module sends itself.
    client_id: String,
    client_secret: Secret,
    profile: OAuthProfile,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The oauth2 client's own Debug redacts the secret, but listing only what
        // identifies the client keeps that guarantee independent of the crate.
        f.debug_struct("OAuthClient")
            .field("client_id", &self.inner.client_id().as_str())
            .field("token_url", &self.inner.token_uri().as_str())
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// A client for the platform the settings describe. `http` must not follow
    /// redirects (use [`outbound::Outbound::client`]); every call is counted by `meter`.
    pub fn new(
        settings: &PlatformSettings,
        profile: OAuthProfile,
        http: reqwest::Client,
        meter: CallMeter,
    ) -> Result<OAuthClient, SettingsError> {
        let auth_url = AuthUrl::from_url(check_endpoint("auth_url", &settings.auth_url)?);
        let token_url = TokenUrl::from_url(check_endpoint("token_url", &settings.token_url)?);
        let revoke_url = match &settings.revoke_url {
            Some(url) => Some(check_endpoint("revoke_url", url)?),
            None => None,
        };
        let auth_type = match profile.client_auth {
            ClientAuth::Basic => AuthType::BasicAuth,
            ClientAuth::RequestBody => AuthType::RequestBody,
        };
        let inner = oauth2::Client::<
            BasicErrorResponse,
            TokenAnswer,
            BasicTokenIntrospectionResponse,
            StandardRevocableToken,
            BasicRevocationErrorResponse,
        >::new(ClientId::new(settings.client_id.clone()))
        .set_client_secret(ClientSecret::new(
            settings.client_secret.expose().to_owned(),
        ))
        .set_auth_type(auth_type)
        .set_auth_uri(auth_url)
        .set_token_uri(token_url);
        Ok(OAuthClient {
            inner,
            http,
            meter,
            revoke_url,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            profile,
        })
    }

    /// The platform's dialect.
    pub fn profile(&self) -> &OAuthProfile {
        &self.profile
    }

    /// Builds the authorize URL for `state` and the exact `redirect_uri`, with a fresh
    /// PKCE S256 verifier where the profile asks for PKCE.
    pub fn authorize(
        &self,
        state: &str,
        redirect_uri: &str,
    ) -> Result<AuthorizeRequest, ConnectError> {
        let redirect = redirect_url(redirect_uri).map_err(ConnectError::InvalidRedirectUri)?;
        let state = state.to_owned();
        let mut request = self
            .inner
            .authorize_url(move || CsrfToken::new(state))
            .set_redirect_uri(Cow::Owned(redirect))
            .add_scopes(
                self.profile
                    .scopes
                    .iter()
                    .map(|s| Scope::new((*s).to_owned())),
            );
        let pkce_verifier = if self.profile.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            Some(Secret::new(verifier.into_secret()))
        } else {
            None
        };
        for (name, value) in &self.profile.authorize_params {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        let (url, _state) = request.url();
        Ok(AuthorizeRequest {
            url: url.into(),
            pkce_verifier,
        })
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3) for a grant issued at `now`.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Grant, TokenError> {
        let redirect = redirect_url(redirect_uri).map_err(TokenError::BadRedirectUri)?;
        let mut request = self
            .inner
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(verifier) = pkce_verifier {
            request =
                request.set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
        }
        let answer = request
            .request_async(&self.transport(TokenRequest::CodeExchange, now))
            .await
            .map_err(token_error)?;
        Ok(self.grant_from(&answer, now, None))
    }

    /// Renews `grant` with its refresh token (RFC 6749 §6). The new grant is issued at
    /// `now`; with rotating refresh tokens it carries the successor, which the caller must
    /// store before using it — the one sent is spent from this moment.
    pub async fn refresh(&self, grant: &Grant, now: Timestamp) -> Result<Grant, TokenError> {
        let Some(refresh_token) = &grant.refresh_token else {
            return Err(TokenError::NotRenewable);
        };
        let refresh_token = RefreshToken::new(refresh_token.expose().to_owned());
        let answer = self
            .inner
            .exchange_refresh_token(&refresh_token)
            .request_async(&self.transport(TokenRequest::Refresh, now))
            .await
            .map_err(token_error)?;
        Ok(self.grant_from(&answer, now, Some(grant)))
    }

    /// Revokes the grant (RFC 7009): its refresh token first — servers revoke the whole
    /// grant with it — then its access token, which some servers keep alive otherwise.
    /// Unknown or already revoked tokens are not an error (RFC 7009 §2.2).
    pub async fn revoke(&self, grant: &Grant, now: Timestamp) -> Result<RevokeOutcome, TokenError> {
        let Some(revoke_url) = &self.revoke_url else {
            return Ok(RevokeOutcome::NotSupported);
        };
        if let Some(refresh_token) = &grant.refresh_token {
            self.revoke_one(revoke_url, refresh_token, "refresh_token", now)
                .await?;
        }
        self.revoke_one(revoke_url, &grant.access_token, "access_token", now)
            .await?;
        Ok(RevokeOutcome::Revoked)
    }

    /// One RFC 7009 request: `token` and `token_type_hint`, form-encoded, with the
    /// profile's client authentication. Any 2xx means the token is gone.
    async fn revoke_one(
        &self,
        revoke_url: &Url,
        token: &Secret,
        type_hint: &str,
        now: Timestamp,
    ) -> Result<(), TokenError> {
        let mut form = vec![("token", token.expose()), ("token_type_hint", type_hint)];
        let mut request = self
            .http
            .post(revoke_url.clone())
            .header(ACCEPT, "application/json");
        match self.profile.client_auth {
            ClientAuth::Basic => {
                request = basic_auth(request, &self.client_id, &self.client_secret);
            }
            ClientAuth::RequestBody => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.client_secret.expose()));
            }
        }
        self.transport(TokenRequest::Revocation, now)
            .send(request.form(&form))
            .await
            .map(|_| ())
    }

    /// Sends `request` for the oauth2 crate or for revocation, classifying what is not a
    /// 2xx with the profile's reading.
    fn transport(&self, request: TokenRequest, now: Timestamp) -> Transport<'_> {
        Transport {
            http: &self.http,
            meter: &self.meter,
            request,
            now,
            grant_refusals: self.profile.grant_refusals,
        }
    }

    /// A token answer as a grant issued at `now`. `previous` is the grant refreshed, if
    /// any: what the answer leaves out is kept from it where the RFC says it stays.
    fn grant_from(&self, answer: &TokenAnswer, now: Timestamp, previous: Option<&Grant>) -> Grant {
        let (refresh_token, refresh_expires_at) = match answer.refresh_token() {
            Some(token) => (
                Some(Secret::new(token.secret().clone())),
                answer
                    .extra_fields()
                    .refresh_lifetime()
                    .map(|lifetime| now.saturating_add(lifetime)),
            ),
            None => match (self.profile.refresh_tokens, previous) {
                (RefreshTokens::Reusable, Some(previous)) => {
                    (previous.refresh_token.clone(), previous.refresh_expires_at)
                }
                _ => (None, None),
            },
        };
        let issued = Grant {
            access_token: Secret::new(answer.access_token().secret().clone()),
            refresh_token,
            token_type: answer.token_type().as_ref().to_owned(),
            // The crate reads a `scope` that is present as at least one entry.
            scopes: answer
                .scopes()
                .map(|scopes| scopes.iter().map(|s| s.as_str().to_owned()).collect())
                .unwrap_or_default(),
            issued_at: now,
            expires_at: answer
                .expires_in()
                .map(|lifetime| now.saturating_add(lifetime)),
            refresh_expires_at,
            target_tokens: Vec::new(),
            endpoint: None,
        };
        carry_over(issued, previous, self.profile.scopes)
    }
}

/// Completes a grant a token answer just issued with what no answer says. Where the
/// answer named no scope, it was granted the scope of the grant refreshed (RFC 6749 §6),
/// or at connect the scope `requested` (§5.1); a refreshed grant keeps its targets'
/// tokens and its endpoint, which token answers never carry.
pub(super) fn carry_over(mut issued: Grant, previous: Option<&Grant>, requested: &[&str]) -> Grant {
    if issued.scopes.is_empty() {
        issued.scopes = match previous {
            Some(previous) => previous.scopes.clone(),
            None => requested.iter().map(|s| (*s).to_owned()).collect(),
        };
    }
    if let Some(previous) = previous {
        issued.target_tokens = previous.target_tokens.clone();
        issued.endpoint = previous.endpoint.clone();
    }
    issued
}

/// Posts a token request's form to an endpoint a platform module speaks itself rather
/// than through the oauth2 crate (Pinterest's, TikTok's), asking for JSON: the whole
/// answer, whatever its status, or the transport failure.
pub(super) async fn post_form(
    request: reqwest::RequestBuilder,
    call: Call<'_>,
    form: &[(&str, &str)],
) -> Result<(StatusCode, HeaderMap, Vec<u8>), TokenError> {
    outbound::exchange(request.header(ACCEPT, "application/json").form(form), call)
        .await
        .map_err(TokenError::Port)
}

/// Parses a configured endpoint and refuses one that would carry secrets in clear text:
/// HTTPS, or plain HTTP to a loopback address (the sandbox, a local test server).
pub fn check_endpoint(field: &'static str, value: &str) -> Result<Url, SettingsError> {
    let url = Url::parse(value).map_err(|source| SettingsError::InvalidUrl {
        field,
        value: value.to_owned(),
        source,
    })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(SettingsError::InsecureUrl {
            field,
            value: value.to_owned(),
        }),
    }
}

/// Parses a redirect URI, keeping the exact string: the token request must repeat it
/// byte for byte (RFC 6749 §4.1.3), and oauth2's `RedirectUrl` sends the string given.
fn redirect_url(redirect_uri: &str) -> Result<RedirectUrl, String> {
    RedirectUrl::new(redirect_uri.to_owned()).map_err(|error| format!("{redirect_uri:?}: {error}"))
}

/// Adds RFC 6749 §2.3.1 HTTP Basic client authentication to a request to an
/// authorization server: each part is form-encoded before they are joined.
pub(super) fn basic_auth(
    request: reqwest::RequestBuilder,
    client_id: &str,
    client_secret: &Secret,
) -> reqwest::RequestBuilder {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String =
        form_urlencoded::byte_serialize(client_secret.expose().as_bytes()).collect();
    request.basic_auth(id, Some(secret))
}

/// A scope list as Pinterest and TikTok write it: with commas in their documentation,
/// with spaces in answers seen in the wild. Both are read.
pub(super) fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The HTTP client for one request to the authorization server, handed to the oauth2
/// crate (and used for revocation): reqwest, with every non-2xx answer classified into a
/// [`TokenError`] before the crate sees it. A named type with a boxed `Send` future
/// rather than a closure, because a closure's future is not provably `Send` for every
/// lifetime the crate's bounds quantify over.
#[derive(Debug, Clone, Copy)]
struct Transport<'a> {
    /// Built with redirects disabled.
    http: &'a reqwest::Client,
    /// Counts the call.
    meter: &'a CallMeter,
    /// What the request is, for the profile's reading of a refusal (and its count).
    request: TokenRequest,
    /// When it is sent: a `Retry-After` date is measured from here.
    now: Timestamp,
    /// The profile's reading of refusals.
    grant_refusals: Option<ReadRefusal>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Transport<'_> {
    type Error = TokenError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, TokenError>> + Send + Sync + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|e| TokenError::Port(outbound::transport_failure(e)))?;
            let (status, headers, body) = self
                .send(reqwest::RequestBuilder::from_parts(
                    self.http.clone(),
                    request,
                ))
                .await?;
            let mut answer = oauth2::HttpResponse::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

impl Transport<'_> {
    /// Sends a request to an authorization-server endpoint: a 2xx answer is returned
    /// whole, anything else classified.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), TokenError> {
        let (status, headers, body) =
            outbound::exchange(request, self.meter.call(self.request.endpoint()))
                .await
                .map_err(TokenError::Port)?;
        if !status.is_success() {
            return Err(classify_status(
                status,
                &headers,
                &body,
                self.now,
                self.request,
                self.grant_refusals,
            ));
        }
        Ok((status, headers, body))
    }
}

/// Classifies what the oauth2 crate returned for a token request.
fn token_error(error: RequestTokenError<TokenError, BasicErrorResponse>) -> TokenError {
    let lost = |detail: String| {
        TokenError::Port(PortError::Unavailable {
            detail,
            maybe_delivered: true,
        })
    };
    match error {
        RequestTokenError::Request(error) => error,
        // Everything else is a 2xx answer the crate could not read as tokens. The server
        // may well have acted — rotated the refresh token, spent the code — so this is an
        // answer lost, not a request refused.
        // Neither the body nor serde's message goes into the detail: a token answer
        // holds the tokens, and serde quotes the values it could not read.
        RequestTokenError::Parse(error, _body) => lost(format!(
            "the token answer could not be read: {:?} error at `{}`",
            error.inner().classify(),
            error.path()
        )),
        RequestTokenError::ServerResponse(error) => lost(format!(
            "the token endpoint answered a success status with an error: {error}"
        )),
        RequestTokenError::Other(detail) => {
            lost(format!("the token answer could not be read: {detail}"))
        }
    }
}

/// The RFC 6749 §5.2 error body.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Classifies an authorization server's answer to `request` that is not a 2xx, with
/// the platform's reading of refusals where it has one.
pub(super) fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
    request: TokenRequest,
    grant_refusals: Option<ReadRefusal>,
) -> TokenError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return TokenError::Port(PortError::RateLimited {
            retry_after: outbound::retry_after(headers, now).unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
            scope: LimitScope::Connection,
        });
    }
    if status.is_server_error() {
        return TokenError::Port(outbound::server_error(status, body_excerpt(body)));
    }
    if status.is_redirection() {
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere");
        return TokenError::Port(PortError::Unavailable {
            detail: format!(
                "HTTP {status}: the token endpoint redirects to {location}; redirects are not \
                 followed, so configure the final URL"
            ),
            maybe_delivered: false,
        });
    }
    let (error, description) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => (parsed.error, parsed.error_description),
        // A 401 is client authentication failing, whatever the body looks like.
        Err(_) if status == StatusCode::UNAUTHORIZED => (
            String::new(),
            Some(body_excerpt(body)).filter(|b| !b.is_empty()),
        ),
        // Another 4xx without an OAuth body came from something in front of the
        // authorization server (a proxy, a firewall), not from it: it says nothing about
        // the grant, so nothing is killed.
        Err(_) => {
            return TokenError::Port(PortError::Unavailable {
                detail: format!(
                    "HTTP {status} without an OAuth error body: {}",
                    body_excerpt(body)
                ),
                maybe_delivered: false,
            })
        }
    };
    let status = status.as_u16();
    // What the platform said: its description when it gave one, otherwise its code.
    let message = match &description {
        Some(description) if !description.is_empty() => description.clone(),
        _ if error.is_empty() => format!("HTTP {status}"),
        _ => error.clone(),
    };
    let platform_reason =
        grant_refusals.and_then(|read| read(request, &error, description.as_deref()));
    match platform_reason {
        Some(reason) => TokenError::GrantRefused {
            status,
            error,
            message,
            reason,
        },
        // RFC 6749 §5.2 answers a failed client authentication with 401
        // `invalid_client`, and `unauthorized_client` means the app may not use this
        // grant type: both are about the app, not the author's grant.
        None if status == 401
            || matches!(error.as_str(), "invalid_client" | "unauthorized_client") =>
        {
            TokenError::ClientRefused {
                status,
                error,
                message,
            }
        }
        // Any other refusal kills the grant (or the code): whatever its code, a request
        // the server refused cannot succeed by being repeated.
        None => TokenError::GrantRefused {
            status,
            error,
            message,
            reason: ReasonCode::AuthorizationInvalid,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
    }

    fn status(code: u16, body: &str) -> TokenError {
        classify_status(
            StatusCode::from_u16(code).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            now(),
            TokenRequest::Refresh,
            None,
        )
    }

    #[test]
    fn token_endpoint_answers_are_classified_for_refresh() {
        // oidc-provider's one body for every refused grant.
        let dead = status(
            400,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        )
        .into_port_error();
        assert_eq!(
            dead,
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::AuthorizationInvalid,
                "grant request is invalid"
            ))
        );
        let client = status(
            401,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        )
        .into_port_error();
        assert!(matches!(
            client,
            PortError::RequirementUnmet(ref r) if r.code == ReasonCode::AppCredentialsRejected
        ));
        let bare_401 = status(401, "Unauthorized").into_port_error();
        assert!(matches!(
            bare_401,
            PortError::RequirementUnmet(ref r) if r.code == ReasonCode::AppCredentialsRejected
        ));
        assert_eq!(
            status(503, "down").into_port_error(),
            PortError::Unavailable {
                detail: "HTTP 503 Service Unavailable: down".into(),
                maybe_delivered: false
            }
        );
        let proxy = status(403, "<html>blocked</html>").into_port_error();
        assert!(matches!(
            proxy,
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ));
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        let error = classify_status(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"",
            now(),
            TokenRequest::Refresh,
            None,
        );
        assert_eq!(
            error.into_port_error(),
            PortError::RateLimited {
                retry_after: Duration::from_secs(30),
                scope: LimitScope::Connection
            }
        );
    }

    #[test]
    fn code_exchange_refusals_name_the_code_or_the_app() {
        assert_eq!(
            status(400, r#"{"error":"invalid_grant"}"#).into_connect_error(),
            ConnectError::CodeRejected {
                platform_message: Some("invalid_grant".into())
            }
        );
        assert_eq!(
            status(
                401,
                r#"{"error":"unauthorized_client","error_description":"Missing header"}"#
            )
            .into_connect_error()
            .code(),
            "app_credentials_rejected"
        );
    }

    /// A token endpoint on loopback that always gives `answer` (status 200, JSON).
    async fn token_endpoint(answer: &'static str) -> String {
        use axum::routing::post;
        let app = axum::Router::new().route(
            "/token",
            post(move || async move {
                (
                    [(reqwest::header::CONTENT_TYPE, "application/json")],
                    answer,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn client(base: &str, refresh_tokens: RefreshTokens) -> OAuthClient {
        let settings = PlatformSettings {
            client_id: "app".into(),
            client_secret: Secret::new("secret"),
            auth_url: format!("{base}/authorize"),
            token_url: format!("{base}/token"),
            revoke_url: None,
            api_base: base.into(),
            allow_private_media_urls: false,
        };
        let profile = OAuthProfile {
            scopes: &["a", "b"],
            client_auth: ClientAuth::RequestBody,
            pkce: false,
            authorize_params: vec![
                ("access_type".into(), "offline".into()),
                ("prompt".into(), "consent".into()),
            ],
            refresh_tokens,
            grant_refusals: None,
        };
        OAuthClient::new(
            &settings,
            profile,
            outbound::client(Duration::from_secs(5)).unwrap(),
            outbound::Outbound::default().meter(social_studio_storage::Platform::X),
        )
        .unwrap()
    }

    fn grant() -> Grant {
        Grant {
            access_token: Secret::new("old-access"),
            refresh_token: Some(Secret::new("old-refresh")),
            token_type: "bearer".into(),
            scopes: vec!["a".into()],
            issued_at: now(),
            expires_at: None,
            refresh_expires_at: Some(now().saturating_add(Duration::from_secs(60))),
            target_tokens: Vec::new(),
            endpoint: Some("https://pds.example".into()),
        }
    }

    #[tokio::test]
    async fn a_refresh_without_a_new_token_keeps_the_old_one_only_where_tokens_do_not_rotate() {
        let base = token_endpoint(
            r#"{"access_token":"new-access","token_type":"Bearer","expires_in":3600}"#,
        )
        .await;
        let later = now().saturating_add(Duration::from_secs(10));

        let kept = client(&base, RefreshTokens::Reusable)
            .refresh(&grant(), later)
            .await
            .unwrap();
        assert_eq!(kept.access_token.expose(), "new-access");
        assert_eq!(kept.refresh_token, Some(Secret::new("old-refresh")));
        assert_eq!(kept.refresh_expires_at, grant().refresh_expires_at);
        assert_eq!(kept.issued_at, later);
        assert_eq!(
            kept.expires_at,
            Some(later.saturating_add(Duration::from_secs(3600)))
        );
        assert_eq!(
            kept.scopes,
            ["a"],
            "no scope in the answer: the grant's own"
        );
        assert_eq!(kept.endpoint.as_deref(), Some("https://pds.example"));

        let rotated = client(&base, RefreshTokens::Rotating)
            .refresh(&grant(), later)
            .await
            .unwrap();
        assert_eq!(rotated.refresh_token, None, "a spent token is never kept");
        assert_eq!(rotated.refresh_expires_at, None);
    }

    #[tokio::test]
    async fn an_unreadable_token_answer_is_a_lost_answer_that_never_shows_the_tokens() {
        let base = token_endpoint(
            r#"{"access_token":"SECRET-A","refresh_token":"SECRET-R","expires_in":"soon"}"#,
        )
        .await;
        let error = client(&base, RefreshTokens::Rotating)
            .refresh(&grant(), now())
            .await
            .unwrap_err();
        let TokenError::Port(PortError::Unavailable {
            detail,
            maybe_delivered,
        }) = &error
        else {
            panic!("{error:?}");
        };
        assert!(maybe_delivered, "the server may have rotated the token");
        assert!(!detail.contains("SECRET"), "{detail}");
        assert!(!format!("{error:?}").contains("SECRET"));
    }

    #[test]
    fn authorize_urls_carry_the_profile_and_keep_the_redirect_uri_exact() {
        let client = client("http://127.0.0.1:9", RefreshTokens::Reusable);
        let request = client.authorize("st", "http://127.0.0.1:9/cb?x=1").unwrap();
        assert_eq!(request.pkce_verifier, None, "this profile has no PKCE");
        let url = Url::parse(&request.url).unwrap();
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("redirect_uri"), Some("http://127.0.0.1:9/cb?x=1"));
        assert_eq!(get("scope"), Some("a b"));
        assert_eq!(get("access_type"), Some("offline"));
        assert_eq!(get("prompt"), Some("consent"));
        assert_eq!(get("code_challenge"), None);
    }

    #[test]
    fn endpoints_must_be_https_or_loopback() {
        for ok in [
            "https://api.x.com/2/oauth2/token",
            "http://127.0.0.1:4000/x/2/oauth2/token",
            "http://[::1]:4000/token",
            "http://localhost:3000/token",
        ] {
            assert!(check_endpoint("token_url", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.x.com/token",
            "http://10.0.0.1/token",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                matches!(
                    check_endpoint("token_url", bad),
                    Err(SettingsError::InsecureUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_endpoint("token_url", "not a url"),
            Err(SettingsError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn refresh_lifetime_is_read_from_numbers_and_strings() {
        let fields: LifetimeFields =
            serde_json::from_str(r#"{"refresh_token_expires_in": 31536000}"#).unwrap();
        assert_eq!(
            fields.refresh_lifetime(),
            Some(Duration::from_secs(31_536_000))
        );
        let fields: LifetimeFields =
            serde_json::from_str(r#"{"refresh_token_expires_in": "60"}"#).unwrap();
        assert_eq!(fields.refresh_lifetime(), Some(Duration::from_secs(60)));
        let fields: LifetimeFields = serde_json::from_str("{}").unwrap();
        assert_eq!(fields.refresh_lifetime(), None);
    }
}
