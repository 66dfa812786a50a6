//! The outbound side of HTTP: how every adapter talks to its platform. The one way to
//! build a reqwest client for platform calls ([`Outbound`], from the host's
//! [`HttpClientBuilder`] when it gave one), the one classification of a failed exchange
//! into a [`PortError`], the count of every call ([`call_metrics`]), and fetching an
//! author's media for upload. (The engine's own inbound API, which hosts and browsers
//! call, is `crate::http`.)
//!
//! It is also where credentials are kept out of error text, once for every adapter: a
//! transport error is described without its URL ([`describe`]), an answer that is not a
//! 2xx comes back from [`exchange`] with the request's own credentials masked, and every
//! body quoted into an error goes through [`body_excerpt`], which masks the values of
//! credential-bearing keys.
//!
//! Three facts drive this module. Redirects are never followed: the oauth2 crate asks for
//! it (a token endpoint that redirects could make the engine post secrets to another
//! host — SSRF), and no platform API the engine calls answers with one; so a host's own
//! client settings are taken as a builder, under which the engine sets its redirect
//! policy last. A request that left the machine may have been acted on even when no
//! answer came back, so whether a failure is `maybe_delivered` is decided
//! conservatively: only a connection that never opened proves nothing was sent. And an
//! answer is read only up to [`ANSWER_MAX_BYTES`]: a platform (or whatever answers in
//! its place) cannot make the engine buffer without bound.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use social_studio_actors::PortError;
use social_studio_storage::{Platform, Timestamp};
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

pub mod call_metrics;
pub mod media_budget;
pub mod public_only;

pub use call_metrics::{Call, CallMeter, Endpoint, Outcome, PlatformCallMetrics};
pub use media_budget::{MediaBudget, MediaBytes};
pub use public_only::{GuardedClient, Reach};

/// Whole-request timeout for token, identity and publish calls: long enough for an image
/// upload on a slow link, short enough that a stalled platform is noticed and retried.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Opening a connection takes milliseconds when the platform is up; waiting longer only
/// delays the retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an API answer (anything but fetched media, which
/// [`fetch_media`] bounds by the platform's limit) the engine reads: platforms answer
/// JSON of a few kilobytes, so 4 MiB is far beyond any real answer and small enough that
/// many at once do not matter.
pub const ANSWER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Sent with every request so that platforms (and the sandbox's logs) can tell the engine
/// from other clients.
const USER_AGENT: &str = concat!("social-studio/", env!("CARGO_PKG_VERSION"));

/// The HTTP client could not be built (the TLS backend failed to initialise, or a
/// host's builder holds a setting reqwest refuses).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// The host's reqwest setup for platform calls: a factory of `reqwest::ClientBuilder`s
/// (a ready `Client` cannot be checked for its redirect policy, so the engine takes the
/// builder and sets its own limits on top).
///
/// What the host's builder sets survives — proxy, TLS roots and settings, DNS resolver,
/// default headers, local address, connection pool and HTTP version settings — except
/// what the engine owns, which it sets after the factory runs and so always wins:
///
/// - the redirect policy: none (see the module doc);
/// - the whole-request timeout ([`DEFAULT_TIMEOUT`], longer for uploads) and the
///   connect timeout ([`CONNECT_TIMEOUT`]);
/// - the `User-Agent` (`social-studio/<version>`), even where the host's default headers
///   name one.
///
/// For fetches of addresses others chose ([`GuardedClient`] with
/// [`Reach::PublicOnly`]) the engine also sets its public-only DNS resolver and turns
/// proxies off, so the host's resolver and proxy do not apply there; addresses the host
/// pinned with `ClientBuilder::resolve` are the host's own decision and are used as given.
#[derive(Clone)]
pub struct HttpClientBuilder(Arc<dyn Fn() -> reqwest::ClientBuilder + Send + Sync>);

impl HttpClientBuilder {
    /// Builds every platform client from what `builder` returns, under the engine's limits.
    pub fn new(
        builder: impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> HttpClientBuilder {
        HttpClientBuilder(Arc::new(builder))
    }

    /// A fresh builder from the host's factory.
    fn builder(&self) -> reqwest::ClientBuilder {
        (self.0)()
    }
}

impl Default for HttpClientBuilder {
    /// reqwest's own defaults.
    fn default() -> HttpClientBuilder {
        HttpClientBuilder::new(reqwest::Client::builder)
    }
}

impl std::fmt::Debug for HttpClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClientBuilder(..)")
    }
}

/// What every adapter's HTTP side is built from: the host's client settings and the
/// engine's one count of platform calls. `Studio` makes one and hands it to every
/// adapter; an adapter built without one (`new`) uses reqwest's defaults and counts into
/// a count of its own.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    clients: HttpClientBuilder,
    metrics: PlatformCallMetrics,
}

impl Outbound {
    /// Clients from `clients`, calls counted into `metrics`.
    pub fn new(clients: HttpClientBuilder, metrics: PlatformCallMetrics) -> Outbound {
        Outbound { clients, metrics }
    }

    /// A client for platform calls: the host's settings, then the engine's — redirects
    /// disabled, the given whole-request timeout, a bounded connect timeout, the
    /// engine's user agent.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, ClientBuildError> {
        engine_limits(self.clients.builder(), timeout)
            .build()
            .map_err(ClientBuildError)
    }

    /// A client for addresses others chose, as [`GuardedClient`] says, counting its
    /// fetches as `platform`'s.
    pub fn guarded(
        &self,
        platform: Platform,
        timeout: Duration,
        reach: Reach,
    ) -> Result<GuardedClient, ClientBuildError> {
        GuardedClient::build(self.clients.builder(), timeout, reach, self.meter(platform))
    }

    /// `platform`'s view of the call count, for [`exchange`].
    pub fn meter(&self, platform: Platform) -> CallMeter {
        CallMeter::new(platform, self.metrics.clone())
    }
}

/// The settings the engine owns, set on top of whatever the host's builder holds.
fn engine_limits(builder: reqwest::ClientBuilder, timeout: Duration) -> reqwest::ClientBuilder {
    builder
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
}

/// A reqwest client for platform calls with reqwest's defaults under the engine's limits
/// ([`Outbound::client`] of a default [`Outbound`]): redirects disabled, the given
/// whole-request timeout, a bounded connect timeout.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ClientBuildError> {
    Outbound::default().client(timeout)
}

/// Classifies a request that failed without an HTTP answer.
///
/// Only a failure to connect (or to build the request) proves the platform never saw
/// it. Everything else — a timeout after sending, a connection closed before the answer
/// (hyper's "incomplete message"), a body cut short — leaves open that the platform
/// acted: a refresh may have rotated the token, a publish may have happened.
pub fn transport_failure(error: reqwest::Error) -> PortError {
    let never_sent = error.is_connect() || error.is_builder();
    PortError::Unavailable {
        detail: describe(error),
        maybe_delivered: !never_sent,
    }
}

/// Sends one request and reads its whole answer: status, headers and body, whatever the
/// status. A failure to send or to read is classified by [`transport_failure`]; what
/// the status means is the caller's to judge. `call` names the call, which is counted
/// and timed ([`call_metrics`]) and logged at DEBUG.
///
/// The body is read up to [`ANSWER_MAX_BYTES`]. A 2xx answer longer than that (announced
/// or found while reading) is refused without reading the rest, as an answer lost
/// (`Unavailable`, `maybe_delivered`: the platform did act, whatever the request was);
/// any other answer is cut there, as it is only ever read for an error.
///
/// The body of an answer that is not a 2xx comes back with every credential the request
/// carried (see [`carried_secrets`]) masked: such a body is only ever read for an error
/// and quoted into one, and a platform (or a proxy in front of it) that echoes the
/// request — "invalid code …", a debug page — must not put the client secret or a token
/// into error text. A 2xx body is returned as it came: a token answer may hold the same
/// refresh token the request sent, and the caller needs it.
pub async fn exchange(
    request: reqwest::RequestBuilder,
    call: Call<'_>,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), PortError> {
    exchange_with(request, call, transport_failure).await
}

/// [`exchange`], with `unsent` judging an error of the send itself (the media guard's
/// client names a refused destination there).
pub(crate) async fn exchange_with(
    request: reqwest::RequestBuilder,
    call: Call<'_>,
    unsent: impl FnOnce(reqwest::Error) -> PortError,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), PortError> {
    let (client, request) = request.build_split();
    let request = request.map_err(transport_failure)?;
    let carried = carried_secrets(&request);
    let started = Instant::now();
    let mut response = match client.execute(request).await {
        Ok(response) => response,
        Err(error) => {
            // A destination the guard refused was never called.
            if public_only::not_public(&error).is_none() {
                call.finished(Outcome::of_error(&error), started.elapsed());
            }
            return Err(unsent(error));
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_bounded(&mut response, ANSWER_MAX_BYTES).await;
    call.finished(
        match &body {
            Err(BodyFailure::Broken(error)) => Outcome::of_error(error),
            _ => Outcome::Answered(status),
        },
        started.elapsed(),
    );
    let body = match body {
        Ok(body) => body,
        Err(BodyFailure::Broken(error)) => return Err(transport_failure(error)),
        Err(BodyFailure::TooLong(read)) if !status.is_success() => read,
        Err(BodyFailure::TooLong(_)) => {
            return Err(PortError::Unavailable {
                detail: format!(
                    "the {} answer (HTTP {status}) is longer than the {ANSWER_MAX_BYTES} \
                     bytes the engine reads; it was not read further",
                    call.endpoint()
                ),
                maybe_delivered: true,
            })
        }
    };
    if status.is_success() {
        return Ok((status, headers, body));
    }
    // Read as text even when it is not quite UTF-8 (an error body is only ever read as
    // text), so that no byte sequence keeps a secret out of reach of the mask.
    let body = without_secrets(&String::from_utf8_lossy(&body), &carried).into_bytes();
    Ok((status, headers, body))
}

/// Why an answer's body was not read whole.
enum BodyFailure {
    /// The connection failed while reading it.
    Broken(reqwest::Error),
    /// It is longer than the cap (announced, or found while reading): what was read.
    TooLong(Vec<u8>),
}

/// Reads `response`'s body in chunks, stopping past `cap` bytes: a `Content-Length` over
/// the cap is refused before anything is read, and a body without one (or longer than
/// it said) is read no further than the chunk that crosses the cap.
async fn read_bounded(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, BodyFailure> {
    let announced = response
        .content_length()
        .map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if announced.is_some_and(|length| length > cap) {
        return Err(BodyFailure::TooLong(Vec::new()));
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(BodyFailure::Broken)? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Err(BodyFailure::TooLong(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Secrets shorter than this are not masked by value: a real credential is far longer,
/// and masking every occurrence of a short string would garble the text around it.
const SHORTEST_MASKED: usize = 8;

/// The credentials a request carries: the values of credential-bearing keys (see
/// [`redact`]) in its query string and in a form or JSON body, and what its
/// `Authorization` header presents (a bearer token; a Basic header's encoded form and
/// the password inside it).
pub fn carried_secrets(request: &reqwest::Request) -> Vec<String> {
    use base64::Engine as _;
    use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

    let mut secrets: Vec<String> = request
        .url()
        .query_pairs()
        .filter(|(key, _)| is_credential_key(key))
        .map(|(_, value)| value.into_owned())
        .collect();
    // Only a form or JSON body names its credentials; an upload's bytes are not read.
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(body) = request.body().and_then(|body| body.as_bytes()) {
        if content_type.starts_with("application/json") {
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
                credential_values(&json, &mut secrets);
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            secrets.extend(
                form_urlencoded::parse(body)
                    .filter(|(key, _)| is_credential_key(key))
                    .map(|(_, value)| value.into_owned()),
            );
        }
    }
    if let Some(value) = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, credentials) = value.split_once(' ').unwrap_or(("", value));
        secrets.push(credentials.trim().to_owned());
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some((_, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                secrets.push(password.to_owned());
                // RFC 6749 §2.3.1 form-encodes the secret before Basic encoding.
                secrets.extend(
                    form_urlencoded::parse(format!("p={password}").as_bytes())
                        .map(|(_, value)| value.into_owned()),
                );
            }
        }
    }
    secrets.retain(|secret| secret.len() >= SHORTEST_MASKED);
    // As an echo may quote them: form-encoded too (Graph's app token `id|secret` is
    // `id%7Csecret` in a query string).
    let encoded: Vec<String> = secrets
        .iter()
        .map(|secret| form_urlencoded::byte_serialize(secret.as_bytes()).collect())
        .filter(|encoded: &String| !secrets.contains(encoded))
        .collect();
    secrets.extend(encoded);
    // Longest first, so that a secret inside another (the app secret inside the app
    // token) does not leave the rest of the longer one behind.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets
}

/// Whether `key` names a credential (one of the keys [`redact`] masks).
fn is_credential_key(key: &str) -> bool {
    CREDENTIAL_KEYS
        .split('|')
        .any(|credential| credential.trim().eq_ignore_ascii_case(key))
}

/// The string values of credential-bearing keys anywhere in `json`.
fn credential_values(json: &serde_json::Value, into: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(members) => {
            for (key, value) in members {
                match value {
                    serde_json::Value::String(text) if is_credential_key(key) => {
                        into.push(text.clone());
                    }
                    other => credential_values(other, into),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                credential_values(item, into);
            }
        }
        _ => {}
    }
}

/// `text` with every occurrence of each of `secrets` replaced by [`REDACTED`].
pub fn without_secrets(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= SHORTEST_MASKED) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
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
///
/// Without the URL: reqwest's message ends with the whole request URL, query string
/// included, and Meta's and Threads' token calls carry the client secret, the code and
/// tokens there. The causes below it (hyper's, the OS's) never name the URL.
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
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
///
/// This is the one way an answer body reaches error text, so it is where credentials
/// are taken out: the value of every credential-bearing key (see [`redact`]) is masked
/// before the cut, whether the body is JSON, a form or a page quoting either.
pub fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = redact(&String::from_utf8_lossy(body));
    let trimmed = text.trim();
    match trimmed.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

/// Names of the fields that carry credentials in the platforms' token answers and
/// requests: OAuth 2.0's (RFC 6749, OpenID Connect's `id_token`), Meta's
/// (`fb_exchange_token`, `input_token`), and the AT Protocol's session (`accessJwt`,
/// `refreshJwt`, `password`).
const CREDENTIAL_KEYS: &str = "access_token|refresh_token|id_token|client_secret|code|\
    code_verifier|fb_exchange_token|input_token|accessJwt|refreshJwt|password|\
    app_secret|token";

/// What replaces a credential in error text.
pub const REDACTED: &str = "[redacted]";

/// `text` with the value of every credential-bearing key masked: a JSON member
/// (`"access_token": "…"`, escapes included) or a form or query pair
/// (`access_token=…`), also where the JSON is quoted inside another JSON string
/// (`\"password\":\"…\"`). Numbers are left alone, so Graph's numeric error `code` stays
/// readable. Keys are matched whole and case-insensitively.
pub fn redact(text: &str) -> String {
    use std::sync::LazyLock;
    static JSON_MEMBER: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(&format!(
            r#"(?i)("(?:{CREDENTIAL_KEYS})"\s*:\s*)"(?:[^"\\]|\\.)*"?"#
        ))
        .unwrap_or_else(|error| unreachable!("a constant pattern: {error}"))
    });
    static FORM_PAIR: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(&format!(
            r#"(?i)(^|[?&;,\s"'])((?:{CREDENTIAL_KEYS})=)[^&\s"'<>;,]*"#
        ))
        .unwrap_or_else(|error| unreachable!("a constant pattern: {error}"))
    });
    // The same member inside a JSON string (a body quoting a request body): its quotes
    // are escaped, and its value ends at the first escaped quote.
    static QUOTED_JSON_MEMBER: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(&format!(
            r#"(?i)(\\"(?:{CREDENTIAL_KEYS})\\"\s*:\s*)\\"[^"\\]*(?:\\")?"#
        ))
        .unwrap_or_else(|error| unreachable!("a constant pattern: {error}"))
    });
    let text = JSON_MEMBER.replace_all(text, format!("${{1}}\"{REDACTED}\""));
    let text = QUOTED_JSON_MEMBER.replace_all(&text, format!("${{1}}\\\"{REDACTED}\\\""));
    FORM_PAIR
        .replace_all(&text, format!("${{1}}${{2}}{REDACTED}"))
        .into_owned()
}

/// Why a body could not be read as JSON, without serde's message: it quotes the values
/// it could not read ("invalid type: string \"…\""), and in a token answer those are
/// the tokens. The kind of error and where it is say what a person needs.
pub fn json_failure(error: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

/// Fetches one image from its public URL for a platform that wants the bytes uploaded.
/// `limit_for` gives the platform's size limit for a content type; anything but an
/// image (or an untyped body) is refused. See [`fetch_media`].
pub async fn fetch_image(
    client: &GuardedClient,
    media: &social_studio_storage::Media,
    limit_for: impl Fn(&str) -> usize,
) -> Result<(MediaBytes, String), PortError> {
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
/// the platform accepts. The bytes are reserved in the client's [`MediaBudget`] before
/// the body is read (waiting while others hold it) and stay reserved until the returned
/// [`MediaBytes`] is dropped; a file larger than the whole budget is refused
/// (`ContentRejected`). A client that reaches only the public internet
/// ([`Reach::PublicOnly`]) refuses a host outside it before anything is sent
/// (`ContentRejected` with [`ReasonCode::MediaUrlNotPublic`](social_studio_storage::ReasonCode::MediaUrlNotPublic)),
/// whatever listens there.
///
/// The fetch is counted as the client's platform's `media_fetch` ([`call_metrics`]),
/// from sending to the last byte read (a wait for room in the budget included).
pub async fn fetch_media(
    client: &GuardedClient,
    media: &social_studio_storage::Media,
    accept: impl Fn(&str) -> Result<(String, usize), String>,
) -> Result<(MediaBytes, String), PortError> {
    let started = Instant::now();
    let mut outcome = None;
    let fetched = fetch_media_counted(client, media, accept, &mut outcome).await;
    if let Some(outcome) = outcome {
        client
            .meter()
            .call(Endpoint::MediaFetch)
            .finished(outcome, started.elapsed());
    }
    fetched
}

/// [`fetch_media`], leaving in `outcome` how the fetch ended once it was sent.
async fn fetch_media_counted(
    client: &GuardedClient,
    media: &social_studio_storage::Media,
    accept: impl Fn(&str) -> Result<(String, usize), String>,
    outcome: &mut Option<Outcome>,
) -> Result<(MediaBytes, String), PortError> {
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
        |error: reqwest::Error| not_sent(format!("fetching {}: {}", media.url, describe(error)));
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
                None => {
                    *outcome = Some(Outcome::of_error(&error));
                    fetch_failed(error)
                }
            },
        )?;
    let status = response.status();
    *outcome = Some(Outcome::Answered(status));
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
    let budget = client.media_budget();
    let beyond_budget = || {
        unusable(format!(
            "is larger than the {} bytes this engine may hold in media at once \
             (configuration key media_memory_bytes)",
            budget.capacity()
        ))
    };
    if announced.is_some_and(|length| length > budget.capacity()) {
        return Err(beyond_budget());
    }
    // Without an announced length, room for the most it may be, given back once read.
    let reserved = budget
        .reserve(announced.unwrap_or(limit.min(budget.capacity())))
        .await
        .ok_or_else(beyond_budget)?;
    let room = announced.unwrap_or(usize::MAX).min(limit);
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        *outcome = Some(Outcome::of_error(&error));
        fetch_failed(error)
    })? {
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        if bytes.len() + chunk.len() > room.min(budget.capacity()) {
            // A host sending more than it announced, or more than the budget holds.
            return Err(if bytes.len() + chunk.len() > budget.capacity() {
                beyond_budget()
            } else {
                unusable(format!("sent more than the {room} bytes it announced"))
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(unusable("is empty".to_owned()));
    }
    Ok((MediaBytes::new(bytes, reserved), content_type))
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
    fn excerpts_mask_credentials_in_json_forms_and_quoted_urls() {
        let body = br#"{"access_token": "tok-1\"x", "error": {"code": 190, "message": "m"},
            "next": "https://h/p?client_secret=sec-2&code=code-3&b=1", "refreshJwt":"jwt-4"}"#;
        let excerpt = body_excerpt(body);
        for secret in ["tok-1", "sec-2", "code-3", "jwt-4"] {
            assert!(!excerpt.contains(secret), "{excerpt}");
        }
        // Numbers (Graph's error code) and other keys stay readable.
        assert!(excerpt.contains(r#""code": 190"#), "{excerpt}");
        assert!(excerpt.contains("&b=1"), "{excerpt}");
        let quoted = br#"{"message": "you sent {\"identifier\":\"me\",\"password\":\"pw-7\"}"}"#;
        assert_eq!(
            body_excerpt(quoted),
            r#"{"message": "you sent {\"identifier\":\"me\",\"password\":\"[redacted]\"}"}"#
        );
        assert_eq!(
            body_excerpt(b"refresh_token=r-5&expires_in=60"),
            "refresh_token=[redacted]&expires_in=60"
        );
    }

    #[test]
    fn json_failures_do_not_quote_the_values_serde_could_not_read() {
        #[derive(Debug, serde::Deserialize)]
        struct Answer {
            #[allow(dead_code)]
            expires_in: u64,
        }
        let error = serde_json::from_slice::<Answer>(br#"{"expires_in": "tok-6"}"#)
            .expect_err("a string is not a number");
        assert!(error.to_string().contains("tok-6"));
        assert!(
            !json_failure(&error).contains("tok-6"),
            "{}",
            json_failure(&error)
        );
    }

    #[test]
    fn a_request_carries_its_query_form_and_authorization_secrets() {
        let client = reqwest::Client::new();
        let request = client
            .post("http://127.0.0.1:1/token?client_secret=query-secret&fields=id")
            .basic_auth("app", Some("basic-secret"))
            .form(&[
                ("refresh_token", "form-refresh"),
                ("grant_type", "refresh_token"),
            ])
            .build()
            .expect("a valid request");
        let carried = carried_secrets(&request);
        for secret in ["query-secret", "basic-secret", "form-refresh"] {
            assert!(carried.iter().any(|c| c == secret), "{secret}: {carried:?}");
        }
        assert!(!carried.iter().any(|c| c == "refresh_token" || c == "id"));
        let bearer = client
            .get("http://127.0.0.1:1/me")
            .bearer_auth("bearer-token")
            .build()
            .expect("a valid request");
        assert_eq!(
            without_secrets("you sent bearer-token", &carried_secrets(&bearer)),
            "you sent [redacted]"
        );
    }

    #[test]
    fn transport_failures_do_not_name_the_url() {
        let client = reqwest::Client::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let error = runtime
            .block_on(
                client
                    .get("http://127.0.0.1:1/token?client_secret=query-secret")
                    .send(),
            )
            .expect_err("nothing listens on port 1");
        let detail = describe(error);
        assert!(!detail.contains("query-secret"), "{detail}");
        assert!(!detail.contains("127.0.0.1"), "{detail}");
    }

    /// A loopback server for the client tests: `/redirect` answers 302 towards
    /// `/sink`, which counts its visits; `/echo` answers the `x-host-header` and
    /// `user-agent` it was sent; `/endless` streams a body that never ends, `/announced`
    /// announces one larger than the cap, and `/endless-error` is a 500 whose body never
    /// ends.
    async fn loopback() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use axum::body::Body;
        use axum::http::HeaderMap as Headers;
        use axum::routing::get;
        use std::sync::atomic::{AtomicUsize, Ordering};

        fn endless() -> Body {
            let chunk = axum::body::Bytes::from(vec![b'a'; 64 * 1024]);
            Body::from_stream(tokio_stream::iter(
                std::iter::repeat(chunk).map(Ok::<_, std::io::Error>),
            ))
        }
        let sink_visits = Arc::new(AtomicUsize::new(0));
        let visits = sink_visits.clone();
        let app = axum::Router::new()
            .route(
                "/redirect",
                get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, "/sink")],
                    )
                }),
            )
            .route(
                "/sink",
                get(move || async move {
                    visits.fetch_add(1, Ordering::SeqCst);
                    "followed"
                }),
            )
            .route(
                "/echo",
                get(|headers: Headers| async move {
                    let read = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    format!("{}|{}", read("x-host-header"), read("user-agent"))
                }),
            )
            .route("/endless", get(|| async { endless() }))
            .route(
                "/announced",
                get(|| async {
                    let length = (ANSWER_MAX_BYTES + 1).to_string();
                    ([(axum::http::header::CONTENT_LENGTH, length)], endless())
                }),
            )
            .route(
                "/endless-error",
                get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, endless()) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), sink_visits)
    }

    /// A host's builder that asks for everything the engine must not do: follow
    /// redirects, a long timeout, its own user agent; and one setting the engine keeps,
    /// a default header.
    fn hosts_outbound() -> Outbound {
        Outbound::new(
            HttpClientBuilder::new(|| {
                let mut headers = HeaderMap::new();
                headers.insert("x-host-header", HeaderValue::from_static("from-the-host"));
                headers.insert(
                    reqwest::header::USER_AGENT,
                    HeaderValue::from_static("host-agent/1"),
                );
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::limited(10))
                    .timeout(Duration::from_secs(3600))
                    .default_headers(headers)
            }),
            PlatformCallMetrics::new(),
        )
    }

    #[tokio::test]
    async fn a_hosts_client_never_follows_a_redirect() {
        let (base, sink_visits) = loopback().await;
        let outbound = hosts_outbound();
        let meter = outbound.meter(Platform::X);
        let client = outbound.client(DEFAULT_TIMEOUT).unwrap();
        let (status, _, _) = exchange(
            client.get(format!("{base}/redirect")),
            meter.call(Endpoint::Identity),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::FOUND);
        // The guarded client (media, a PDS) is built from the host's builder too.
        let guarded = outbound
            .guarded(Platform::X, DEFAULT_TIMEOUT, Reach::Any)
            .unwrap();
        let answer = guarded
            .http()
            .get(format!("{base}/redirect"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FOUND);
        assert_eq!(
            sink_visits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a redirect was followed"
        );
    }

    #[tokio::test]
    async fn a_hosts_default_headers_reach_the_platform_under_the_engines_user_agent() {
        let (base, _) = loopback().await;
        let outbound = hosts_outbound();
        let meter = outbound.meter(Platform::X);
        let client = outbound.client(DEFAULT_TIMEOUT).unwrap();
        let (status, _, body) = exchange(
            client.get(format!("{base}/echo")),
            meter.call(Endpoint::Identity),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("from-the-host|{USER_AGENT}")
        );
        let guarded = outbound
            .guarded(Platform::X, DEFAULT_TIMEOUT, Reach::Any)
            .unwrap();
        let echoed = guarded
            .http()
            .get(format!("{base}/echo"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(echoed, format!("from-the-host|{USER_AGENT}"));
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_cap_is_refused_without_reading_it_all() {
        let (base, _) = loopback().await;
        let outbound = Outbound::default();
        let meter = outbound.meter(Platform::X);
        let client = outbound.client(DEFAULT_TIMEOUT).unwrap();
        for path in ["/endless", "/announced"] {
            let sent = exchange(
                client.get(format!("{base}{path}")),
                meter.call(Endpoint::Publish),
            );
            // An endless body read whole would never end.
            let answer = tokio::time::timeout(Duration::from_secs(20), sent)
                .await
                .unwrap_or_else(|_| panic!("{path}: the body was read without end"));
            match answer {
                Err(PortError::Unavailable {
                    detail,
                    maybe_delivered,
                }) => {
                    assert!(
                        maybe_delivered,
                        "{path}: the platform answered, so it acted"
                    );
                    assert!(detail.contains("publish answer"), "{path}: {detail}");
                    assert!(detail.contains("longer than"), "{path}: {detail}");
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        // An error answer is read only for its excerpt: cut at the cap, its status kept.
        let sent = exchange(
            client.get(format!("{base}/endless-error")),
            meter.call(Endpoint::Publish),
        );
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), sent)
            .await
            .expect("the error body was read without end")
            .unwrap();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body.len(), ANSWER_MAX_BYTES);
    }

    #[test]
    fn excerpts_stay_short() {
        let long = "a".repeat(1000);
        assert_eq!(body_excerpt(long.as_bytes()).chars().count(), 301);
        assert_eq!(body_excerpt(b"  short  "), "short");
    }
}
