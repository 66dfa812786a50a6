//! Meta Graph-style error answers, as Threads sends them: the body
//! `{"error":{"message","type","code","error_subcode","error_user_msg","is_transient","fbtrace_id"}}`,
//! rate limits signalled by codes in the body (not reliably by HTTP 429), and the
//! `X-Business-Use-Case-Usage` header that says how long until access returns.
//!
//! Nothing here is Threads-specific: Facebook and Instagram answer the same way, so the
//! lead can fold this module into a shared Graph module later. The judgement of what an
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

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;
use social_studio_actors::{LimitScope, PortError};
use social_studio_storage::{Reason, ReasonCode, Timestamp};

use super::super::http::{self, body_excerpt};

/// What to wait after a rate limit that does not say how long.
pub const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(60 * 60);

/// The `error` object of a Graph error answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GraphError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub error_user_title: Option<String>,
    #[serde(default)]
    pub error_user_msg: Option<String>,
    #[serde(default)]
    pub is_transient: Option<bool>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: GraphError,
}

impl GraphError {
    /// Reads a Graph error answer; `None` when the body is not one (a proxy's page).
    pub fn parse(body: &[u8]) -> Option<GraphError> {
        serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error)
            .filter(|e| e.code.is_some() || e.message.is_some())
    }

    /// What the platform said, for a reason: the message meant for people where there is
    /// one, the developer message otherwise, and the codes either way.
    pub fn said(&self) -> String {
        let message = self
            .error_user_msg
            .as_deref()
            .or(self.message.as_deref())
            .filter(|m| !m.is_empty())
            .unwrap_or("no message");
        match (self.code, self.error_subcode) {
            (Some(code), Some(sub)) => format!("{message} (code {code}, subcode {sub})"),
            (Some(code), None) => format!("{message} (code {code})"),
            _ => message.to_owned(),
        }
    }

    /// The reason a dead token (code 190, 102) is recorded with, by subcode.
    pub fn token_reason(&self) -> Reason {
        let code = match self.error_subcode {
            Some(458) => ReasonCode::RevokedByUser,
            Some(460) => ReasonCode::PasswordChanged,
            Some(463) => ReasonCode::GrantExpired,
            _ => ReasonCode::AuthorizationInvalid,
        };
        Reason::with_platform_message(code, self.said())
    }

    /// Whether the error kills the token.
    pub fn is_token_error(&self) -> bool {
        matches!(self.code, Some(190 | 102))
    }

    /// Whether the error is a missing permission.
    pub fn is_permission_error(&self) -> bool {
        matches!(self.code, Some(10 | 200..=299))
    }

    /// The scope of a rate-limit error, `None` when it is not one.
    pub fn rate_limit_scope(&self) -> Option<LimitScope> {
        match self.code? {
            4 => Some(LimitScope::Platform),
            9 | 17 | 32 | 613 | 80_000..=80_099 => Some(LimitScope::Connection),
            _ => None,
        }
    }

    /// Whether Meta says trying again may work.
    pub fn is_transient(&self) -> bool {
        self.is_transient == Some(true) || matches!(self.code, Some(1 | 2))
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
/// `X-Business-Use-Case-Usage` (minutes), else `Retry-After`.
pub fn rate_limit_wait(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let buc = headers
        .get("x-business-use-case-usage")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|usage| {
            let minutes = usage
                .as_object()?
                .values()
                .filter_map(|entries| entries.as_array())
                .flatten()
                .filter_map(|entry| entry.get("estimated_time_to_regain_access")?.as_u64())
                .max()?;
            Some(Duration::from_secs(minutes.saturating_mul(60)))
        })
        .filter(|wait| !wait.is_zero());
    buc.or_else(|| http::retry_after(headers, now))
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
            status if status.is_server_error() => http::server_error(status, body_excerpt(body)),
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
    if error.code == Some(368) {
        return PortError::RequirementUnmet(Reason::with_platform_message(
            ReasonCode::AccountSuspended,
            error.said(),
        ));
    }
    if error.is_transient() || status.is_server_error() {
        // Code 1 is "an unknown error": on the publishing call itself the post may exist.
        let maybe_delivered = step == Step::Publish && error.code == Some(1)
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
