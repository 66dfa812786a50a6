//! HTTP plumbing every adapter shares: the one way to build a reqwest client for talking
//! to platforms, and the one classification of a failed exchange into a [`PortError`].
//!
//! Two facts drive this module. Redirects are never followed: the oauth2 crate asks for
//! it (a token endpoint that redirects could make the engine post secrets to another
//! host — SSRF), and no platform API the engine calls answers with one. And a request
//! that left the machine may have been acted on even when no answer came back, so
//! whether a failure is `maybe_delivered` is decided conservatively: only a connection
//! that never opened proves nothing was sent.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use social_studio_actors::PortError;
use social_studio_storage::Timestamp;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

/// Whole-request timeout for token, identity and publish calls: long enough for an image
/// upload on a slow link, short enough that a stalled platform is noticed and retried.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Opening a connection takes milliseconds when the platform is up; waiting longer only
/// delays the retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sent with every request so that platforms (and the sandbox's logs) can tell the engine
/// from other clients.
const USER_AGENT: &str = concat!("social-studio/", env!("CARGO_PKG_VERSION"));

/// The HTTP client could not be built (the TLS backend failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// A reqwest client for platform calls: redirects disabled, the given whole-request
/// timeout, a bounded connect timeout.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
        .build()
        .map_err(ClientBuildError)
}

/// Classifies a request that failed without an HTTP answer.
///
/// Only a failure to connect (or to build the request) proves the platform never saw
/// it. Everything else — a timeout after sending, a connection closed before the answer
/// (hyper's "incomplete message"), a body cut short — leaves open that the platform
/// acted: a refresh may have rotated the token, a publish may have happened.
pub fn transport_failure(error: &reqwest::Error) -> PortError {
    let never_sent = error.is_connect() || error.is_builder();
    PortError::Unavailable {
        detail: describe(error),
        maybe_delivered: !never_sent,
    }
}

/// Classifies a 5xx answer. A gateway that answers 502 or 504 lost the origin's answer,
/// so the origin may have acted; any other 5xx is the platform saying it did not.
pub fn server_error(status: StatusCode, detail: impl Into<String>) -> PortError {
    PortError::Unavailable {
        detail: format!("HTTP {status}: {}", detail.into()),
        maybe_delivered: matches!(
            status,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        ),
    }
}

/// A transport error with its chain of causes, because reqwest's own message ("error
/// sending request") hides the cause a person needs (connection refused, incomplete
/// message, timed out).
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The wait a `Retry-After` header asks for (RFC 9110 §10.2.3: delay-seconds or an
/// HTTP-date), measured from `now`.
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let at_millis = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some(now.until(Timestamp::from_unix_millis(at_millis)))
}

/// A short, printable excerpt of an answer body for error details: platform messages are
/// small, but a proxy's HTML error page is not, and a detail must stay readable.
pub fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sat, 28 Nov 2026 09:01:30 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn gateway_errors_may_have_been_delivered_and_others_not() {
        let delivered = |status| match server_error(status, "x") {
            PortError::Unavailable {
                maybe_delivered, ..
            } => maybe_delivered,
            other => panic!("{other:?}"),
        };
        assert!(!delivered(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!delivered(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(delivered(StatusCode::GATEWAY_TIMEOUT));
        assert!(delivered(StatusCode::BAD_GATEWAY));
    }

    #[test]
    fn excerpts_stay_short() {
        let long = "a".repeat(1000);
        assert_eq!(body_excerpt(long.as_bytes()).chars().count(), 301);
        assert_eq!(body_excerpt(b"  short  "), "short");
    }
}
