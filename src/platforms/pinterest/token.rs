//! Pinterest's token endpoint (`POST /v5/oauth/token`), spoken directly rather than
//! through the shared [`OAuthClient`](super::super::oauth::OAuthClient), for two reasons
//! the shared core cannot accommodate without a change to every platform:
//!
//! - The code exchange carries `continuous_refresh=true`, which apps created before
//!   25 Sept 2025 must send to get a continuous (rotating, 60-day, renewable) refresh
//!   token; for newer apps it is the default and the parameter changes nothing.
//! - Pinterest answers failures with its own body, `{"code": int, "message": …}`, not
//!   RFC 6749's `{"error": …}`, and answers a dead refresh token with **401** code 283
//!   "The authorization grant is invalid" (reported against Pinterest's own Python SDK,
//!   pinterest-python-sdk#114). The shared core reads every 401 as the app's credentials
//!   failing, which would send an administrator after a problem only the author can fix.
//!
//! Both grants are form-encoded with HTTP Basic client authentication, as the spec
//! declares. RFC 6749 error bodies are read too, in case Pinterest (or a proxy in front
//! of it that speaks OAuth) answers with one. Failures are the shared [`TokenError`];
//! what is Pinterest's own is how [`classify`] reads its answers into it.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;
use social_studio_actors::{LimitScope, PortError};
use social_studio_storage::{Grant, ReasonCode, Secret, Timestamp};
use url::Url;

use super::super::oauth::{basic_auth, carry_over, post_form, split_scopes, TokenError};
use super::super::outbound::{self, body_excerpt, Endpoint};
use super::{rate_limit_wait, DEFAULT_RATE_WAIT, SCOPES};

/// Pinterest's error code for a code or refresh token it no longer accepts (expired,
/// spent, revoked, or never issued).
pub(super) const GRANT_INVALID: i64 = 283;

/// The token endpoint and the app's credentials.
pub(super) struct TokenEndpoint {
    /// Built with redirects disabled ([`outbound::Outbound::client`]).
    pub(super) http: reqwest::Client,
    /// Counts every call, as Pinterest's.
    pub(super) meter: outbound::CallMeter,
    pub(super) url: Url,
    pub(super) client_id: String,
    pub(super) client_secret: Secret,
}

/// A token answer. Every field but the access token is optional so that a missing one
/// never loses the whole answer — with rotating refresh tokens that would lose the grant.
#[derive(Deserialize)]
struct Answer {
    access_token: Secret,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    refresh_token_expires_in: Option<u64>,
    /// Unix seconds; used only when `refresh_token_expires_in` is missing, because a
    /// lifetime measured from the engine's own clock is what the rest of the grant uses.
    #[serde(default)]
    refresh_token_expires_at: Option<i64>,
}

/// Pinterest's error body (RFC 6749's fields read as well).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) code: Option<i64>,
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl ErrorBody {
    /// Some of its fields were present: the answer came from an authorization server,
    /// not from a proxy's error page.
    fn is_recognised(&self) -> bool {
        self.code.is_some() || self.message.is_some() || self.error.is_some()
    }

    fn said(&self, status: StatusCode) -> String {
        self.message
            .clone()
            .or_else(|| self.error_description.clone())
            .or_else(|| self.error.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("HTTP {status}"))
    }
}

impl TokenEndpoint {
    /// `grant_type=authorization_code`, issued at `now`.
    pub(super) async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Grant, TokenError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("continuous_refresh", "true"),
        ];
        let answer = self.request(&form, Endpoint::Token, now).await?;
        Ok(grant_from(answer, now, None))
    }

    /// `grant_type=refresh_token`, issued at `now`. The token sent is spent from this
    /// moment: the new grant carries its successor, which must be stored before use.
    pub(super) async fn refresh(&self, grant: &Grant, now: Timestamp) -> Result<Grant, TokenError> {
        let Some(refresh_token) = &grant.refresh_token else {
            return Err(TokenError::no_refresh_token());
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let answer = self.request(&form, Endpoint::Refresh, now).await?;
        Ok(grant_from(answer, now, Some(grant)))
    }

    async fn request(
        &self,
        form: &[(&str, &str)],
        endpoint: Endpoint,
        now: Timestamp,
    ) -> Result<Answer, TokenError> {
        let request = self.http.post(self.url.clone());
        let request = basic_auth(request, &self.client_id, &self.client_secret);
        let (status, headers, body) = post_form(request, self.meter.call(endpoint), form).await?;
        if !status.is_success() {
            return Err(classify(status, &headers, &body, now));
        }
        // Pinterest answered 2xx, so it may have spent the code or the refresh token.
        serde_json::from_slice::<Answer>(&body)
            .map_err(|error| TokenError::unreadable("Pinterest's", &error))
    }
}

/// Classifies a token-endpoint answer that is not a 2xx.
///
/// | answer | class |
/// |---|---|
/// | 429 | rate limited (this connection) |
/// | 5xx | unavailable |
/// | code 283, or `invalid_grant` | `GrantRefused` (any status: Pinterest uses 401) |
/// | other 401, `invalid_client`, `unauthorized_client` | `ClientRefused` |
/// | another 4xx with a Pinterest or OAuth body | `GrantRefused` (a malformed request: repeating it cannot succeed) |
/// | a 4xx without one (a proxy) | unavailable, nothing spent |
pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> TokenError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return TokenError::Port(PortError::RateLimited {
            retry_after: rate_limit_wait(headers, now).unwrap_or(DEFAULT_RATE_WAIT),
            scope: LimitScope::Connection,
        });
    }
    if status.is_server_error() {
        return TokenError::Port(outbound::server_error(status, body_excerpt(body)));
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed.said(status);
    let error = parsed
        .code
        .map(|code| code.to_string())
        .or_else(|| parsed.error.clone())
        .unwrap_or_default();
    let status_code = status.as_u16();
    let refused = |message: String| TokenError::GrantRefused {
        status: status_code,
        error: error.clone(),
        message,
        reason: ReasonCode::AuthorizationInvalid,
    };
    if parsed.code == Some(GRANT_INVALID) || parsed.error.as_deref() == Some("invalid_grant") {
        return refused(message);
    }
    if status == StatusCode::UNAUTHORIZED
        || matches!(
            parsed.error.as_deref(),
            Some("invalid_client" | "unauthorized_client")
        )
    {
        let message = if parsed.is_recognised() {
            message
        } else {
            body_excerpt(body)
        };
        return TokenError::ClientRefused {
            status: status_code,
            error,
            message,
        };
    }
    if parsed.is_recognised() {
        return refused(message);
    }
    TokenError::Port(PortError::Unavailable {
        detail: format!(
            "HTTP {status} without a Pinterest error body: {}",
            body_excerpt(body)
        ),
        maybe_delivered: false,
    })
}

/// A token answer as a grant issued at `now`. `previous` is the grant refreshed, if any.
fn grant_from(answer: Answer, now: Timestamp, previous: Option<&Grant>) -> Grant {
    // Continuous refresh rotates: an answer without a successor leaves the grant without
    // a refresh token rather than keeping the spent one.
    let refresh_expires_at = answer.refresh_token.as_ref().and_then(|_| {
        match (
            answer.refresh_token_expires_in,
            answer.refresh_token_expires_at,
        ) {
            (Some(lifetime), _) => Some(now.saturating_add(Duration::from_secs(lifetime))),
            (None, Some(at)) => Some(Timestamp::from_unix_millis(at.saturating_mul(1000))),
            (None, None) => None,
        }
    });
    let issued = Grant {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token,
        token_type: answer.token_type.unwrap_or_else(|| "bearer".to_owned()),
        scopes: answer
            .scope
            .as_deref()
            .map(split_scopes)
            .unwrap_or_default(),
        issued_at: now,
        expires_at: answer
            .expires_in
            .map(|lifetime| now.saturating_add(Duration::from_secs(lifetime))),
        refresh_expires_at,
        target_tokens: Vec::new(),
        endpoint: None,
    };
    carry_over(issued, previous, SCOPES)
}

#[cfg(test)]
mod tests {
    use super::super::super::ConnectError;
    use super::*;
    use social_studio_storage::Reason;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
    }

    fn status(code: u16, body: &str) -> TokenError {
        classify(
            StatusCode::from_u16(code).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            now(),
        )
    }

    #[test]
    fn a_dead_grant_is_told_apart_from_the_apps_credentials() {
        let dead = status(
            401,
            r#"{"code":283,"message":"The authorization grant is invalid"}"#,
        );
        assert_eq!(
            dead.clone().into_port_error(),
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::AuthorizationInvalid,
                "The authorization grant is invalid"
            ))
        );
        assert_eq!(dead.into_connect_error().code(), "code_rejected");
        assert_eq!(
            status(400, r#"{"error":"invalid_grant"}"#).into_connect_error(),
            ConnectError::CodeRejected {
                platform_message: Some("invalid_grant".into())
            }
        );
        let client = status(401, r#"{"code":2,"message":"Authentication failed."}"#);
        assert!(matches!(
            client.into_port_error(),
            PortError::RequirementUnmet(ref r) if r.code == ReasonCode::AppCredentialsRejected
        ));
        assert!(matches!(
            status(403, "<html>blocked</html>").into_port_error(),
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ));
        assert!(matches!(
            status(502, "bad gateway").into_port_error(),
            PortError::Unavailable {
                maybe_delivered: true,
                ..
            }
        ));
    }

    #[test]
    fn scopes_are_read_with_commas_or_spaces() {
        assert_eq!(
            split_scopes("boards:read,pins:write user_accounts:read"),
            ["boards:read", "pins:write", "user_accounts:read"]
        );
    }
}
