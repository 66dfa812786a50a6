//! Meta Graph-style error answers, as Threads sends them: the body
//! `{"error":{"message","type","code","error_subcode","error_user_msg","is_transient","fbtrace_id"}}`,
//! rate limits signalled by codes in the body (not reliably by HTTP 429), and the
//! `X-Business-Use-Case-Usage` header that says how long until access returns.
//!
//! The envelope, its quoting, the subcodes of a dead token and the usage headers are the
//! shared [`crate::platforms::graph`] ones; what stays here is how Threads judges them
//! for each step of its calls. The judgement of what an
//! error means for one call (a content refusal on a publish, an unexpected answer
//! elsewhere) stays with the caller through [`Step`].
//!
//! | Graph answered | class |
//! |---|---|
//! | code 190, subcode 458 (app removed) | `GrantDead(revoked_by_user)` |
//! | code 190, subcode 460 (password changed) | `GrantDead(password_changed)` |
//! | code 190, subcode 463 (expired) | `GrantDead(grant_expired)` |
//! | code 190, other or no subcode; code 102 | `GrantDead(authorization_invalid)` |
//! | code 10, 200–299 (permission) | `RequirementUnmet(permission_removed)` |
//! | code 368 (blocked for policy) | `RequirementUnmet(account_suspended)` |
//! | code 4 (app limit) | `RateLimited` (platform) |
//! | code 9, 17, 32, 613, 80000–80099 (user, Page, BUC limits) | `RateLimited` (connection) |
//! | code 1, 2, or `is_transient: true` | `Unavailable` |
//! | code 506 (duplicate), other codes on a content step | `ContentRejected` |
//! | other codes elsewhere | `Unavailable`, nothing delivered |
//! | no Graph body: 401 | `Unauthorized` |
//! | no Graph body: 429 | `RateLimited` (connection) |
//! | no Graph body: 5xx | `Unavailable` |
//!
//! Waits: the largest `estimated_time_to_regain_access` (minutes) of
//! `X-Business-Use-Case-Usage`, else `Retry-After`, else an hour — Meta's app and user
//! limits are rolling one-hour windows.
//!
//! Token requests are read first for what they say about the app and the token
//! ([`classify_token`]):
//!
//! | Graph answered a token request | class |
//! |---|---|
//! | code 101, 1349026, or a message about the client secret | `ClientRefused` |
//! | a limit, a transient error, a 5xx | as the table above |
//! | another error, to the code exchange | `GrantRefused`: the author starts over |
//! | another error, to the short-lived token's exchange | `GrantDead`: the token just issued is refused |
//! | a permission error, to a refresh | `RequirementUnmet(permission_removed)`: refreshing needs `threads_basic` |
//! | another error, to a refresh | `GrantRefused`, by subcode for a dead token (190, 102), else `authorization_invalid` |

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use social_studio_actors::{LimitScope, PortError};
use social_studio_storage::{Reason, ReasonCode, Timestamp};

pub use super::super::graph::GraphError;
use super::super::graph::{dead_grant_reason, usage_wait};
use super::super::oauth::{TokenError, TokenRequest};
use super::super::outbound::{self, body_excerpt};

/// What to wait after a rate limit that does not say how long.
pub const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(60 * 60);

/// What Threads' answers mean beyond the shared Graph envelope ([`GraphError`], parsed
/// and quoted the same way for Facebook, Instagram and Threads).
pub trait ThreadsReading {
    /// The reason a dead token (code 190, 102) is recorded with, by subcode.
    fn token_reason(&self) -> Reason;
    /// Whether the error kills the token.
    fn is_token_error(&self) -> bool;
    /// Whether the error is a missing permission.
    fn is_permission_error(&self) -> bool;
    /// The scope of a rate-limit error, `None` when it is not one.
    fn rate_limit_scope(&self) -> Option<LimitScope>;
    /// Whether Meta says trying again may work.
    fn is_transient(&self) -> bool;
}

impl ThreadsReading for GraphError {
    fn token_reason(&self) -> Reason {
        Reason::with_platform_message(
            dead_grant_reason(self.code, self.error_subcode),
            self.said(),
        )
    }

    fn is_token_error(&self) -> bool {
        matches!(self.code, 190 | 102)
    }

    fn is_permission_error(&self) -> bool {
        matches!(self.code, 10 | 200..=299)
    }

    fn rate_limit_scope(&self) -> Option<LimitScope> {
        match self.code {
            4 => Some(LimitScope::Platform),
            9 | 17 | 32 | 613 | 80_000..=80_099 => Some(LimitScope::Connection),
            _ => None,
        }
    }

    fn is_transient(&self) -> bool {
        self.is_transient == Some(true) || matches!(self.code, 1 | 2)
    }
}

/// What the failed call was for: the same code means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the account, a status or a limit: nothing is created.
    Read,
    /// Creating a media container: the post's content is judged here.
    CreateContainer,
    /// `threads_publish`: the call that makes the post public.
    Publish,
    /// A token exchange or refresh.
    Token,
}

/// The wait a rate limit announces: the largest `estimated_time_to_regain_access` of
/// Meta's usage headers, else `Retry-After`.
pub fn rate_limit_wait(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    usage_wait(headers).or_else(|| outbound::retry_after(headers, now))
}

/// Classifies an answer that is not a 2xx.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
    step: Step,
) -> PortError {
    let rate_limited = |scope| PortError::RateLimited {
        retry_after: rate_limit_wait(headers, now).unwrap_or(DEFAULT_RATE_WAIT),
        scope,
    };
    let Some(error) = GraphError::parse(body) else {
        return match status {
            StatusCode::UNAUTHORIZED => PortError::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => rate_limited(LimitScope::Connection),
            status if status.is_server_error() => {
                outbound::server_error(status, body_excerpt(body))
            }
            status => PortError::Unavailable {
                detail: format!(
                    "HTTP {status} without a Graph error body: {}",
                    body_excerpt(body)
                ),
                maybe_delivered: false,
            },
        };
    };
    if error.is_token_error() {
        return PortError::GrantDead(error.token_reason());
    }
    if let Some(scope) = error.rate_limit_scope() {
        return rate_limited(scope);
    }
    if error.is_permission_error() {
        return PortError::RequirementUnmet(Reason::with_platform_message(
            ReasonCode::PermissionRemoved,
            error.said(),
        ));
    }
    if error.code == 368 {
        return PortError::RequirementUnmet(Reason::with_platform_message(
            ReasonCode::AccountSuspended,
            error.said(),
        ));
    }
    if error.is_transient() || status.is_server_error() {
        // Code 1 is "an unknown error": on the publishing call itself the post may exist.
        let maybe_delivered = step == Step::Publish && error.code == 1
            || matches!(
                status,
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
            );
        return PortError::Unavailable {
            detail: format!("HTTP {status}: {}", error.said()),
            maybe_delivered,
        };
    }
    match step {
        Step::CreateContainer | Step::Publish => PortError::ContentRejected(
            Reason::with_platform_message(ReasonCode::ContentRejected, error.said()),
        ),
        Step::Read | Step::Token => PortError::Unavailable {
            detail: format!("HTTP {status}: {}", error.said()),
            maybe_delivered: false,
        },
    }
}

/// Classifies a token endpoint's answer to `request` that is not a 2xx: what it says
/// about the app or the token first, then as any answer ([`classify`]).
pub fn classify_token(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
    request: TokenRequest,
) -> TokenError {
    if let Some(error) = GraphError::parse(body) {
        // 101: invalid application id; 1349026: a Meta app id where the Threads app id
        // belongs; code 1 "Error validating client secret".
        let about_client = matches!(error.code, 101 | 1_349_026)
            || error.message.to_ascii_lowercase().contains("client secret");
        if about_client {
            return TokenError::ClientRefused {
                status: status.as_u16(),
                error: error.code.to_string(),
                message: error.said(),
            };
        }
        if error.rate_limit_scope().is_none() && !error.is_transient() && !status.is_server_error()
        {
            return refused(status, &error, request);
        }
    }
    TokenError::Port(classify(status, headers, body, now, Step::Token))
}

/// A token request Threads refused for the code or token itself.
fn refused(status: StatusCode, error: &GraphError, request: TokenRequest) -> TokenError {
    let reason = if error.is_token_error() {
        dead_grant_reason(error.code, error.error_subcode)
    } else {
        ReasonCode::AuthorizationInvalid
    };
    match request {
        // Refreshing needs threads_basic.
        TokenRequest::Refresh if error.is_permission_error() => {
            TokenError::Port(PortError::RequirementUnmet(Reason::with_platform_message(
                ReasonCode::PermissionRemoved,
                error.said(),
            )))
        }
        // The short-lived token was refused moments after it was issued: not the code,
        // which Threads already took.
        TokenRequest::TokenExchange => TokenError::Port(PortError::GrantDead(
            Reason::with_platform_message(reason, error.said()),
        )),
        // The code (used, expired, wrong redirect URI: start over), or the token being
        // refreshed or revoked: any refusal cannot succeed by being repeated.
        TokenRequest::CodeExchange | TokenRequest::Refresh | TokenRequest::Revocation => {
            TokenError::GrantRefused {
                status: status.as_u16(),
                error: error.code.to_string(),
                message: error.said(),
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
    }

    fn answer(status: u16, body: &str, step: Step) -> PortError {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            now(),
            step,
        )
    }

    #[test]
    fn token_errors_name_their_cause() {
        let dead = |sub: &str| match answer(
            400,
            &format!(
                r#"{{"error":{{"message":"Error validating access token","type":"OAuthException","code":190{sub}}}}}"#
            ),
            Step::Read,
        ) {
            PortError::GrantDead(reason) => reason.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(dead(r#","error_subcode":460"#), ReasonCode::PasswordChanged);
        assert_eq!(dead(r#","error_subcode":463"#), ReasonCode::GrantExpired);
        assert_eq!(dead(r#","error_subcode":458"#), ReasonCode::RevokedByUser);
        assert_eq!(dead(""), ReasonCode::AuthorizationInvalid);
    }

    #[test]
    fn limits_permissions_and_transient_errors() {
        assert!(matches!(
            answer(400, r#"{"error":{"message":"x","code":4}}"#, Step::Read),
            PortError::RateLimited {
                scope: LimitScope::Platform,
                retry_after: DEFAULT_RATE_WAIT
            }
        ));
        assert!(matches!(
            answer(400, r#"{"error":{"message":"x","code":17}}"#, Step::Read),
            PortError::RateLimited {
                scope: LimitScope::Connection,
                ..
            }
        ));
        assert!(matches!(
            answer(403, r#"{"error":{"message":"x","code":10}}"#, Step::Publish),
            PortError::RequirementUnmet(ref r) if r.code == ReasonCode::PermissionRemoved
        ));
        assert!(matches!(
            answer(
                500,
                r#"{"error":{"message":"x","code":2,"is_transient":true}}"#,
                Step::Publish
            ),
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ));
        assert!(matches!(
            answer(500, r#"{"error":{"message":"x","code":1}}"#, Step::Publish),
            PortError::Unavailable {
                maybe_delivered: true,
                ..
            }
        ));
        assert!(matches!(
            answer(
                400,
                r#"{"error":{"message":"bad","code":100}}"#,
                Step::CreateContainer
            ),
            PortError::ContentRejected(_)
        ));
        assert!(matches!(
            answer(400, r#"{"error":{"message":"bad","code":100}}"#, Step::Read),
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ));
        assert_eq!(answer(401, "", Step::Read), PortError::Unauthorized);
    }

    #[test]
    fn the_business_use_case_header_gives_the_wait() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"123":[{"type":"threads","call_count":100,"estimated_time_to_regain_access":7},{"estimated_time_to_regain_access":3}]}"#,
            ),
        );
        assert_eq!(
            rate_limit_wait(&headers, now()),
            Some(Duration::from_secs(7 * 60))
        );
        assert_eq!(rate_limit_wait(&HeaderMap::new(), now()), None);
    }
}
