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
//!   them with HTTP 200, so an answer is classified by its body before its status. They
//!   are the shared [`TokenError`]; what is TikTok's own is how [`classify`] reads them.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;
use social_studio_actors::{LimitScope, PortError};
use social_studio_storage::{Grant, ReasonCode, Secret, Timestamp};
use url::Url;

use super::super::oauth::{carry_over, post_form, split_scopes, TokenError};
use super::super::outbound::{self, body_excerpt, Endpoint};
use super::{rate_limit_wait, SCOPES};

/// The token and revoke endpoints and the app's credentials.
pub(super) struct TokenEndpoint {
    /// Built with redirects disabled ([`outbound::Outbound::client`]).
    pub(super) http: reqwest::Client,
    /// Counts every call, as TikTok's.
    pub(super) meter: outbound::CallMeter,
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

impl TokenEndpoint {
    /// `grant_type=authorization_code`, issued at `now`; returns the grant and the
    /// `open_id` TikTok names the account with.
    pub(super) async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&Secret>,
        now: Timestamp,
    ) -> Result<(Grant, Option<String>), TokenError> {
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
        let answer = self.request(&form, Endpoint::Token, now).await?;
        let open_id = answer.open_id.clone();
        Ok((grant_from(answer, now, None), open_id))
    }

    /// `grant_type=refresh_token`, issued at `now`. The token sent is spent from this
    /// moment: the new grant carries its successor, which must be stored before use.
    pub(super) async fn refresh(&self, grant: &Grant, now: Timestamp) -> Result<Grant, TokenError> {
        let Some(refresh_token) = &grant.refresh_token else {
            return Err(TokenError::no_refresh_token());
        };
        let form = [
            ("client_key", self.client_key.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let answer = self.request(&form, Endpoint::Refresh, now).await?;
        Ok(grant_from(answer, now, Some(grant)))
    }

    /// `POST /v2/oauth/revoke/` with the access token: TikTok ends the author's
    /// authorization of the app. `Ok(false)` when no revoke URL is configured.
    pub(super) async fn revoke(&self, token: &Secret, now: Timestamp) -> Result<bool, TokenError> {
        let Some(url) = &self.revoke_url else {
            return Ok(false);
        };
        let form = [
            ("client_key", self.client_key.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("token", token.expose()),
        ];
        let request = self.http.post(url.clone());
        let (status, headers, body) =
            post_form(request, self.meter.call(Endpoint::Revoke), &form).await?;
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        if status.is_success() && parsed.code().is_none() {
            return Ok(true);
        }
        match classify(status, &headers, &body, now) {
            // The token is already dead: there is nothing left to revoke.
            TokenError::GrantRefused { .. } | TokenError::AccessDenied { .. } => Ok(true),
            other => Err(other),
        }
    }

    async fn request(
        &self,
        form: &[(&str, &str)],
        endpoint: Endpoint,
        now: Timestamp,
    ) -> Result<Answer, TokenError> {
        let request = self.http.post(self.url.clone());
        let (status, headers, body) = post_form(request, self.meter.call(endpoint), form).await?;
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
            // TikTok answered 2xx, so it may have spent the code or the refresh token.
            Err(error) => Err(TokenError::unreadable("TikTok's", &error)),
        }
    }
}

/// Classifies a token or revoke answer that is a refusal.
///
/// | answer | class |
/// |---|---|
/// | 429, or `rate_limit_exceeded` | rate limited (this connection) |
/// | 5xx, or `internal_error` / `server_error` / `temporarily_unavailable` | unavailable |
/// | `invalid_grant`, `access_token_invalid`, `invalid_request` about the code or token | `GrantRefused` |
/// | `access_denied` | `AccessDenied` |
/// | `invalid_client`, `unauthorized_client`, or a 401 without a code | `ClientRefused` |
/// | another code | `GrantRefused` (repeating a refused request cannot succeed) |
/// | a 4xx without a TikTok body (a proxy) | unavailable, nothing spent |
pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> TokenError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed.said(status);
    let code = parsed.code();
    if status == StatusCode::TOO_MANY_REQUESTS || code == Some("rate_limit_exceeded") {
        return TokenError::Port(PortError::RateLimited {
            retry_after: rate_limit_wait(headers, now),
            scope: LimitScope::Connection,
        });
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
        return TokenError::Port(PortError::Unavailable {
            detail: format!("TikTok answered HTTP {status}: {}", body_excerpt(body)),
            maybe_delivered,
        });
    }
    let status_code = status.as_u16();
    let error = code.unwrap_or_default().to_owned();
    match code {
        Some("access_denied") => TokenError::AccessDenied {
            status: status_code,
            error,
            message,
        },
        Some("invalid_client" | "unauthorized_client") => TokenError::ClientRefused {
            status: status_code,
            error,
            message,
        },
        Some(_) => TokenError::GrantRefused {
            status: status_code,
            error,
            message,
            reason: ReasonCode::AuthorizationInvalid,
        },
        None if status == StatusCode::UNAUTHORIZED => TokenError::ClientRefused {
            status: status_code,
            error,
            message: body_excerpt(body),
        },
        None => TokenError::Port(PortError::Unavailable {
            detail: format!(
                "HTTP {status} without a TikTok error body: {}",
                body_excerpt(body)
            ),
            maybe_delivered: false,
        }),
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
    let issued = Grant {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token,
        token_type: answer.token_type.unwrap_or_else(|| "Bearer".to_owned()),
        scopes: answer
            .scope
            .as_deref()
            .map(split_scopes)
            .unwrap_or_default(),
        issued_at: now,
        expires_at: answer.expires_in.map(after),
        refresh_expires_at,
        target_tokens: Vec::new(),
        endpoint: None,
    };
    carry_over(issued, previous, SCOPES)
}

#[cfg(test)]
mod tests {
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
            TokenError::Port(PortError::RateLimited { .. })
        ));
        assert!(matches!(
            status(403, "<html>blocked</html>"),
            TokenError::Port(PortError::Unavailable {
                maybe_delivered: false,
                ..
            })
        ));
        assert!(matches!(
            status(504, "gateway"),
            TokenError::Port(PortError::Unavailable {
                maybe_delivered: true,
                ..
            })
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
