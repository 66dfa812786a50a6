//! TikTok's token and revoke endpoints (`POST /v2/oauth/token/`, `POST
//! /v2/oauth/revoke/`), spoken directly with reqwest: TikTok departs from RFC 6749 by
//! naming the client `client_key` and sending the client's credentials as form fields,
//! which the `oauth2` crate cannot express.
//!
//! - Code exchange: `client_key`, `client_secret`, `code`, `grant_type=authorization_code`,
//!   `redirect_uri`, and `code_verifier` only when the authorize request carried a PKCE
//!   challenge (TikTok asks for it from mobile and desktop apps, not web apps).
//! - Refresh: `grant_type=refresh_token`. The newest doc says refresh tokens rotate and
//!   the previous one stops working once a new one is issued: the new grant carries the
//!   successor, and the spent token is never kept, so it is never sent again.
//! - Every lifetime (`expires_in`, `refresh_expires_in`) is read from the answer.
//! - Errors: `{"error","error_description","log_id"}`; ⚠ TikTok has been seen answering
//!   them with HTTP 200, so an answer is classified by its body before its status.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT};
use reqwest::StatusCode;
use serde::Deserialize;
use social_studio_actors::{LimitScope, PortError};
use social_studio_storage::{Grant, Reason, ReasonCode, Secret, Timestamp};
use url::Url;

use super::super::outbound::{self, body_excerpt};
use super::super::ConnectError;
use super::{rate_limit_wait, SCOPES};

/// The token and revoke endpoints and the app's credentials.
pub(super) struct TokenEndpoint {
    /// Built with redirects disabled ([`outbound::client`]).
    pub(super) http: reqwest::Client,
    pub(super) url: Url,
    pub(super) revoke_url: Option<Url>,
    pub(super) client_key: String,
    pub(super) client_secret: Secret,
}

/// A token answer. Only the access token is required, so that a missing field never
/// loses the whole answer — with rotating refresh tokens that would lose the grant.
#[derive(Deserialize)]
struct Answer {
    access_token: Secret,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    refresh_expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    open_id: Option<String>,
}

/// TikTok's OAuth error body; the API envelope's `error.code` is read too, in case an
/// answer comes from the API gateway rather than the authorization server.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorField>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Code(String),
    Envelope {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    },
}

impl ErrorBody {
    fn code(&self) -> Option<&str> {
        match &self.error {
            Some(ErrorField::Code(code)) => Some(code.as_str()),
            Some(ErrorField::Envelope { code, .. }) => code.as_deref(),
            None => None,
        }
        .filter(|c| !c.is_empty() && *c != "ok")
    }

    fn said(&self, status: StatusCode) -> String {
        let message = match &self.error {
            Some(ErrorField::Envelope { message, .. }) => message.clone(),
            _ => None,
        };
        let description = self.error_description.clone().or(message);
        match (self.code(), description.filter(|d| !d.is_empty())) {
            (Some(code), Some(description)) => format!("{code}: {description}"),
            (Some(code), None) => code.to_owned(),
            (None, Some(description)) => description,
            (None, None) => format!("HTTP {status}"),
        }
    }
}

/// A token request that produced no grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokenFailure {
    /// The code or refresh token is not (or no longer) accepted.
    GrantRefused {
        message: String,
    },
    /// The app's own credentials were refused.
    ClientRefused {
        message: String,
    },
    /// The author (or TikTok) withdrew the authorization.
    AccessDenied {
        message: String,
    },
    RateLimited {
        retry_after: Duration,
    },
    Unavailable {
        detail: String,
        maybe_delivered: bool,
    },
}

impl TokenFailure {
    /// For the actors (a refresh).
    pub(super) fn into_port_error(self) -> PortError {
        match self {
            TokenFailure::GrantRefused { message } => PortError::GrantDead(
                Reason::with_platform_message(ReasonCode::AuthorizationInvalid, message),
            ),
            TokenFailure::AccessDenied { message } => PortError::GrantDead(
                Reason::with_platform_message(ReasonCode::RevokedByUser, message),
            ),
            TokenFailure::ClientRefused { message } => PortError::RequirementUnmet(
                Reason::with_platform_message(ReasonCode::AppCredentialsRejected, message),
            ),
            TokenFailure::RateLimited { retry_after } => PortError::RateLimited {
                retry_after,
                scope: LimitScope::Connection,
            },
            TokenFailure::Unavailable {
                detail,
                maybe_delivered,
            } => PortError::Unavailable {
                detail,
                maybe_delivered,
            },
        }
    }

    /// For the connect flow (a code exchange).
    pub(super) fn into_connect_error(self) -> ConnectError {
        match self {
            TokenFailure::GrantRefused { message } => ConnectError::CodeRejected {
                platform_message: Some(message),
            },
            TokenFailure::AccessDenied { message } => ConnectError::AccessDenied {
                platform_message: Some(message),
            },
            TokenFailure::ClientRefused { message } => ConnectError::AppCredentialsRejected {
                platform_message: Some(message),
            },
            TokenFailure::RateLimited { retry_after } => ConnectError::RateLimited { retry_after },
            TokenFailure::Unavailable { detail, .. } => ConnectError::Unavailable { detail },
        }
    }
}

impl TokenEndpoint {
    /// `grant_type=authorization_code`, issued at `now`; returns the grant and the
    /// `open_id` TikTok names the account with.
    pub(super) async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&Secret>,
        now: Timestamp,
    ) -> Result<(Grant, Option<String>), TokenFailure> {
        let mut form = vec![
            ("client_key", self.client_key.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(verifier) = code_verifier {
            form.push(("code_verifier", verifier.expose()));
        }
        let answer = self.request(&form, now).await?;
        let open_id = answer.open_id.clone();
        Ok((grant_from(answer, now, None), open_id))
    }

    /// `grant_type=refresh_token`, issued at `now`. The token sent is spent from this
    /// moment: the new grant carries its successor, which must be stored before use.
    pub(super) async fn refresh(
        &self,
        grant: &Grant,
        now: Timestamp,
    ) -> Result<Grant, TokenFailure> {
        let Some(refresh_token) = &grant.refresh_token else {
            return Err(TokenFailure::GrantRefused {
                message: "the grant has no refresh token".into(),
            });
        };
        let form = [
            ("client_key", self.client_key.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let answer = self.request(&form, now).await?;
        Ok(grant_from(answer, now, Some(grant)))
    }

    /// `POST /v2/oauth/revoke/` with the access token: TikTok ends the author's
    /// authorization of the app. `Ok(false)` when no revoke URL is configured.
    pub(super) async fn revoke(
        &self,
        token: &Secret,
        now: Timestamp,
    ) -> Result<bool, TokenFailure> {
        let Some(url) = &self.revoke_url else {
            return Ok(false);
        };
        let form = [
            ("client_key", self.client_key.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("token", token.expose()),
        ];
        let (status, headers, body) = self.send(url.clone(), &form).await?;
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        if status.is_success() && parsed.code().is_none() {
            return Ok(true);
        }
        match classify(status, &headers, &body, now) {
            // The token is already dead: there is nothing left to revoke.
            TokenFailure::GrantRefused { .. } | TokenFailure::AccessDenied { .. } => Ok(true),
            other => Err(other),
        }
    }

    async fn send(
        &self,
        url: Url,
        form: &[(&str, &str)],
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), TokenFailure> {
        let response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|error| transport(&error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|error| transport(&error))?;
        Ok((status, headers, body.to_vec()))
    }

    async fn request(&self, form: &[(&str, &str)], now: Timestamp) -> Result<Answer, TokenFailure> {
        let (status, headers, body) = self.send(self.url.clone(), form).await?;
        if !status.is_success() {
            return Err(classify(status, &headers, &body, now));
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(answer) => Ok(answer),
            // A 200 carrying an error body (TikTok does this) is a refusal.
            Err(_)
                if serde_json::from_slice::<ErrorBody>(&body).is_ok_and(|b| b.code().is_some()) =>
            {
                Err(classify(status, &headers, &body, now))
            }
            Err(error) => Err(TokenFailure::Unavailable {
                // Neither the body nor serde's message goes into the detail: the answer
                // holds the tokens. TikTok answered 2xx, so it may have spent the code
                // or the refresh token.
                detail: format!(
                    "TikTok's token answer could not be read: {:?} error at line {} column {}",
                    error.classify(),
                    error.line(),
                    error.column()
                ),
                maybe_delivered: true,
            }),
        }
    }
}

fn transport(error: &reqwest::Error) -> TokenFailure {
    match outbound::transport_failure(error) {
        PortError::Unavailable {
            detail,
            maybe_delivered,
        } => TokenFailure::Unavailable {
            detail,
            maybe_delivered,
        },
        other => TokenFailure::Unavailable {
            detail: other.to_string(),
            maybe_delivered: true,
        },
    }
}

/// Classifies a token or revoke answer that is a refusal.
///
/// | answer | class |
/// |---|---|
/// | 429, or `rate_limit_exceeded` | `RateLimited` |
/// | 5xx, or `internal_error` / `server_error` / `temporarily_unavailable` | `Unavailable` |
/// | `invalid_grant`, `access_token_invalid`, `invalid_request` about the code or token | `GrantRefused` |
/// | `access_denied` | `AccessDenied` |
/// | `invalid_client`, `unauthorized_client`, or a 401 without a code | `ClientRefused` |
/// | another code | `GrantRefused` (repeating a refused request cannot succeed) |
/// | a 4xx without a TikTok body (a proxy) | `Unavailable`, nothing spent |
pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> TokenFailure {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed.said(status);
    let code = parsed.code();
    if status == StatusCode::TOO_MANY_REQUESTS || code == Some("rate_limit_exceeded") {
        return TokenFailure::RateLimited {
            retry_after: rate_limit_wait(headers, now),
        };
    }
    if status.is_server_error()
        || matches!(
            code,
            Some("internal_error" | "server_error" | "temporarily_unavailable")
        )
    {
        let maybe_delivered = match outbound::server_error(status, String::new()) {
            PortError::Unavailable {
                maybe_delivered, ..
            } => maybe_delivered,
            _ => false,
        };
        return TokenFailure::Unavailable {
            detail: format!("TikTok answered HTTP {status}: {}", body_excerpt(body)),
            maybe_delivered,
        };
    }
    match code {
        Some("access_denied") => TokenFailure::AccessDenied { message },
        Some("invalid_client" | "unauthorized_client") => TokenFailure::ClientRefused { message },
        Some(_) => TokenFailure::GrantRefused { message },
        None if status == StatusCode::UNAUTHORIZED => TokenFailure::ClientRefused {
            message: body_excerpt(body),
        },
        None => TokenFailure::Unavailable {
            detail: format!(
                "HTTP {status} without a TikTok error body: {}",
                body_excerpt(body)
            ),
            maybe_delivered: false,
        },
    }
}

/// A token answer as a grant issued at `now`. `previous` is the grant refreshed, if any.
fn grant_from(answer: Answer, now: Timestamp, previous: Option<&Grant>) -> Grant {
    let after = |seconds: u64| now.saturating_add(Duration::from_secs(seconds));
    // Rotation: an answer without a successor leaves the grant without a refresh token
    // rather than keeping the spent one.
    let refresh_expires_at = answer
        .refresh_token
        .as_ref()
        .and(answer.refresh_expires_in)
        .map(after);
    let scopes = match answer.scope.as_deref().map(split_scopes) {
        Some(scopes) if !scopes.is_empty() => scopes,
        _ => match previous {
            Some(previous) => previous.scopes.clone(),
            None => SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        },
    };
    Grant {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token,
        token_type: answer.token_type.unwrap_or_else(|| "Bearer".to_owned()),
        scopes,
        issued_at: now,
        expires_at: answer.expires_in.map(after),
        refresh_expires_at,
        target_tokens: previous
            .map(|p| p.target_tokens.clone())
            .unwrap_or_default(),
        endpoint: previous.and_then(|p| p.endpoint.clone()),
    }
}

/// TikTok writes scope lists with commas; spaces are read too.
pub(super) fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
    }

    fn status(code: u16, body: &str) -> TokenFailure {
        classify(
            StatusCode::from_u16(code).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            now(),
        )
    }

    #[test]
    fn token_errors_name_the_grant_the_app_or_a_passing_fault() {
        let dead = status(
            400,
            r#"{"error":"invalid_grant","error_description":"Refresh token is invalid or expired.","log_id":"1"}"#,
        );
        assert_eq!(
            dead.clone().into_port_error(),
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::AuthorizationInvalid,
                "invalid_grant: Refresh token is invalid or expired."
            ))
        );
        assert_eq!(dead.into_connect_error().code(), "code_rejected");
        // TikTok's 200-with-an-error answers classify by their body.
        assert!(matches!(
            status(200, r#"{"error":"invalid_client","error_description":"bad","log_id":"1"}"#)
                .into_port_error(),
            PortError::RequirementUnmet(ref r) if r.code == ReasonCode::AppCredentialsRejected
        ));
        assert!(matches!(
            status(429, r#"{"error":"rate_limit_exceeded"}"#),
            TokenFailure::RateLimited { .. }
        ));
        assert!(matches!(
            status(403, "<html>blocked</html>"),
            TokenFailure::Unavailable {
                maybe_delivered: false,
                ..
            }
        ));
        assert!(matches!(
            status(504, "gateway"),
            TokenFailure::Unavailable {
                maybe_delivered: true,
                ..
            }
        ));
    }

    #[test]
    fn scopes_are_read_with_commas_or_spaces() {
        assert_eq!(
            split_scopes("user.info.basic,video.publish video.upload"),
            ["user.info.basic", "video.publish", "video.upload"]
        );
    }
}
