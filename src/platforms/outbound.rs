//! The outbound side of HTTP: how every adapter talks to its platform. The one way to
//! build a reqwest client for platform calls, the one classification of a failed
//! exchange into a [`PortError`], and fetching an author's media for upload. (The
//! engine's own inbound API, which hosts and browsers call, is `crate::http`.)
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

pub mod public_only;

pub use public_only::{GuardedClient, Reach};

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

/// Sends one request and reads its whole answer: status, headers and body, whatever the
/// status. A failure to send or to read is classified by [`transport_failure`]; what
/// the status means is the caller's to judge.
pub async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), PortError> {
    let response = request
        .send()
        .await
        .map_err(|error| transport_failure(&error))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|error| transport_failure(&error))?;
    Ok((status, headers, body.to_vec()))
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

/// Fetches one image from its public URL for a platform that wants the bytes uploaded.
/// `limit_for` gives the platform's size limit for a content type; anything but an
/// image (or an untyped body) is refused. See [`fetch_media`].
pub async fn fetch_image(
    client: &GuardedClient,
    media: &social_studio_storage::Media,
    limit_for: impl Fn(&str) -> usize,
) -> Result<(Vec<u8>, String), PortError> {
    fetch_media(client, media, |content_type| {
        if content_type.starts_with("image/") || content_type == "application/octet-stream" {
            Ok((content_type.to_owned(), limit_for(content_type)))
        } else {
            Err(format!("is not an image ({content_type})"))
        }
    })
    .await
}

/// Fetches one image or video from its public URL for a platform that wants the bytes
/// uploaded. `accept` looks at the content type the host announced (lowercase, without
/// parameters; `application/octet-stream` when it sent none) and answers the type to
/// upload as and the platform's size limit for it, or why the platform cannot take it.
///
/// Nothing has reached the platform yet, so no failure here can have published anything:
/// a refusal of the file is `ContentRejected`, a passing fault of its host `Unavailable`
/// (never delivered). Redirects are not followed, and the body is read in chunks so that
/// a host lying about (or not sending) its length cannot make the engine buffer more than
/// the platform accepts. A client that reaches only the public internet
/// ([`Reach::PublicOnly`]) refuses a host outside it before anything is sent
/// (`ContentRejected` with [`ReasonCode::MediaUrlNotPublic`](social_studio_storage::ReasonCode::MediaUrlNotPublic)),
/// whatever listens there.
pub async fn fetch_media(
    client: &GuardedClient,
    media: &social_studio_storage::Media,
    accept: impl Fn(&str) -> Result<(String, usize), String>,
) -> Result<(Vec<u8>, String), PortError> {
    use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
    use social_studio_storage::{MediaKind, Reason, ReasonCode};

    let noun = match media.kind {
        MediaKind::Image => "image",
        MediaKind::Video => "video",
    };
    let unusable = |why: String| {
        PortError::ContentRejected(Reason::with_platform_message(
            ReasonCode::ContentRejected,
            format!("the {noun} at {} {why}", media.url),
        ))
    };
    let not_sent = |detail: String| PortError::Unavailable {
        detail,
        maybe_delivered: false,
    };
    let fetch_failed =
        |error: reqwest::Error| not_sent(format!("fetching {}: {}", media.url, describe(&error)));
    let not_public = || {
        PortError::ContentRejected(Reason::with_platform_message(
            ReasonCode::MediaUrlNotPublic,
            format!(
                "the {noun} at {} is not on the public internet, so it was not fetched",
                media.url
            ),
        ))
    };
    client.check(&media.url).map_err(|_| not_public())?;
    let mut response =
        client.http().get(&media.url).send().await.map_err(
            |error| match public_only::not_public(&error) {
                Some(_) => not_public(),
                None => fetch_failed(error),
            },
        )?;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(not_sent(format!(
            "fetching {} answered HTTP {status}",
            media.url
        )));
    }
    if status.is_redirection() {
        return Err(unusable(format!(
            "redirects (HTTP {status}); redirects are not followed, so give the \
             {noun}'s final address"
        )));
    }
    if !status.is_success() {
        return Err(unusable(format!("could not be fetched (HTTP {status})")));
    }
    let announced_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let (content_type, limit) = accept(&announced_type).map_err(unusable)?;
    let too_large = || {
        unusable(format!(
            "is larger than the platform's limit of {limit} bytes"
        ))
    };
    let announced = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(chunk) = response.chunk().await.map_err(fetch_failed)? {
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(unusable("is empty".to_owned()));
    }
    Ok((bytes, content_type))
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
