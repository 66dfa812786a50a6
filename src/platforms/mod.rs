//! Platform adapters: one module per platform, each speaking that platform's OAuth
//! dialect and API, behind one interface.
//!
//! - [`Adapter`] is what the service needs at connect time (authorize, connect,
//!   validate) on top of [`PlatformPort`], which is what the actors need afterwards
//!   (refresh, check, publish, revoke). Every failure leaves an adapter already
//!   classified — [`PortError`] for the actors, [`ConnectError`] for the connect flow,
//!   [`ContentError`] for scheduling — so nobody downstream reads platform strings.
//! - [`oauth`] is the shared OAuth 2.0 core on the `oauth2` crate (PKCE, client
//!   authentication, token responses to [`Grant`]s, token-endpoint error
//!   classification, RFC 7009 revocation), and [`oauth::TokenError`], the one failure
//!   of every adapter's token calls. Nothing platform-specific lives there: a platform
//!   brings its dialect in an [`oauth::OAuthProfile`], or reads its own token answers
//!   into a `TokenError` in its module.
//! - [`outbound`] is the engine's HTTP client side towards the platforms (the inbound
//!   API is `crate::http`): it builds the reqwest clients from the host's builder
//!   ([`outbound::Outbound`]; redirects off, the engine's timeouts), sends and reads
//!   exchanges (answers bounded), counts every call by platform and endpoint
//!   ([`outbound::call_metrics`]), classifies transport failures and 5xx answers, and
//!   fetches media. Each adapter's `new_with(settings, &outbound)` builds it on the
//!   engine's [`outbound::Outbound`]; `new(settings)` on reqwest's defaults.
//! - [`x`]: X (API v2).
//! - [`linkedin`]: LinkedIn (Posts API, members and organisations).
//! - [`pinterest`]: Pinterest (API v5).
//! - [`tiktok`]: TikTok (Content Posting API, Direct Post).
//! - [`graph`]: the Meta Graph API parts Facebook and Instagram share; [`facebook`]:
//!   Facebook Pages; [`instagram`]: Instagram through Facebook Login.
//! - [`threads`]: Threads (containers, self-renewing long-lived tokens).
//! - [`youtube`]: YouTube (Data API v3, resumable uploads, the project's daily quota).
//! - [`bluesky`]: Bluesky (AT Protocol, app passwords).
//!
//! Each adapter keeps its platform's real endpoints beside it (`x::ENDPOINTS`,
//! `graph::ENDPOINTS` for Facebook and Instagram, Bluesky's default service and session
//! methods); [`real_endpoints`] gathers them for configuration, which overrides them key
//! by key.
//!
//! Adapters never read the system clock where an expiry is stored: connect takes `now`,
//! and the calls of [`PlatformPort`] (which has no `now`) read the clock the adapter was
//! given (`with_clock`), so the actors' virtual clock reaches them in tests.

pub mod bluesky;
pub mod facebook;
pub mod graph;
pub mod instagram;
pub mod linkedin;
pub mod oauth;
pub mod outbound;
pub mod pinterest;
pub mod threads;
pub mod tiktok;
pub mod x;
pub mod youtube;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use social_studio_actors::{PlatformPort, PortError};
use social_studio_storage::{
    Account, Grant, Platform, Post, PostKind, Reason, ReasonCode, Secret, Target, Timestamp,
};

pub use bluesky::BlueskyAdapter;
pub use facebook::FacebookAdapter;
pub use instagram::InstagramAdapter;
pub use linkedin::LinkedinAdapter;
pub use pinterest::PinterestAdapter;
pub use threads::ThreadsAdapter;
pub use tiktok::TiktokAdapter;
pub use x::XAdapter;
pub use youtube::YoutubeAdapter;

/// A platform's OAuth 2.0 endpoints and API base, as constants: absolute for the real
/// ones ([`real_endpoints`]), or paths under a prefix where a simulation serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// The consent page.
    pub auth_url: &'static str,
    /// The token endpoint.
    pub token_url: &'static str,
    /// An RFC 7009-style revocation endpoint, where the platform has one.
    pub revoke_url: Option<&'static str>,
    /// The API base, without a trailing slash.
    pub api_base: &'static str,
}

/// How a platform is reached: OAuth 2.0 endpoints, or an AT Protocol service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// An OAuth 2.0 platform.
    OAuth(Endpoints),
    /// Bluesky: the service to sign in at and the directory that resolves `did:plc`.
    AtProto {
        service: &'static str,
        plc_directory: &'static str,
    },
}

/// The platform's real endpoints (PLATFORMS.md, from each platform's documentation),
/// each kept beside its adapter. `revoke_url` is an RFC 7009-style endpoint only: Meta
/// revokes through the Graph API, Threads documents none, and Pinterest's revokes only
/// system-user tokens.
pub fn real_endpoints(p: Platform) -> Reach {
    Reach::OAuth(match p {
        Platform::X => x::ENDPOINTS,
        Platform::Linkedin => linkedin::ENDPOINTS,
        Platform::Pinterest => pinterest::ENDPOINTS,
        Platform::Tiktok => tiktok::ENDPOINTS,
        Platform::Youtube => youtube::ENDPOINTS,
        // Instagram through Facebook Login for Business: the same hosts as Facebook.
        Platform::Facebook | Platform::Instagram => graph::ENDPOINTS,
        Platform::Threads => threads::ENDPOINTS,
        Platform::Bluesky => {
            return Reach::AtProto {
                service: bluesky::DEFAULT_SERVICE,
                plc_directory: bluesky::DEFAULT_PLC_DIRECTORY,
            }
        }
    })
}

/// Endpoints and app credentials of one platform, from configuration. Every URL is
/// overridable so that any platform can be pointed at the sandbox or another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSettings {
    /// The app's client id, sent in every authorize and token request.
    pub client_id: String,
    /// The app's client secret; `Debug` prints `[redacted]`.
    pub client_secret: Secret,
    /// Where the author's browser is sent to consent.
    pub auth_url: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_url: String,
    /// RFC 7009 revocation endpoint, where the platform has one; disconnect revokes there.
    pub revoke_url: Option<String>,
    /// Base of the platform's API (`https://api.x.com`), without a trailing slash.
    pub api_base: String,
    /// Whether an author's media may be fetched from addresses outside the public
    /// internet (loopback, private networks, link-local): configuration key
    /// `allow_private_media_urls`, for a sandbox serving media on 127.0.0.1.
    pub allow_private_media_urls: bool,
}

/// The settings could not make an adapter.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A configured endpoint is not an absolute URL.
    #[error("{field} is not an absolute URL ({value:?}): {source}")]
    InvalidUrl {
        field: &'static str,
        value: String,
        #[source]
        source: url::ParseError,
    },
    /// A configured endpoint would carry secrets in clear text: it must be HTTPS, or
    /// plain HTTP to a loopback address.
    #[error("{field} must be an https:// URL (plain http only to a loopback address): {value:?}")]
    InsecureUrl { field: &'static str, value: String },
    /// The HTTP client could not be built.
    #[error(transparent)]
    HttpClient(#[from] outbound::ClientBuildError),
}

/// Where the author's browser is sent to authorize the app, and what the service must
/// keep (sealed, with the `state`) until the platform sends the author back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// The platform's consent page, with every parameter of the request.
    pub url: String,
    /// PKCE verifier (RFC 7636), where the platform supports PKCE; the code exchange
    /// must present it.
    pub pkce_verifier: Option<Secret>,
}

/// What a finished connect produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The tokens, with their lifetimes measured from the `now` connect was given.
    pub grant: Grant,
    /// Who authorized: what "same account" means on a reconnect.
    pub account: Account,
    /// Where posts can land inside the account.
    pub targets: Vec<Target>,
}

/// Why a connect failed, classified so that the service answers with a code and a
/// remedy rather than a platform's words alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The author chose not to authorize the app on the consent page.
    #[error("the author declined to authorize the app{}", said(.platform_message))]
    AccessDenied { platform_message: Option<String> },
    /// The platform would not exchange the code (expired, already used, or the verifier
    /// or redirect URI did not match): the author must start the connect again.
    #[error("the platform refused the authorization code{}", said(.platform_message))]
    CodeRejected { platform_message: Option<String> },
    /// The platform rejected the app's own client id or secret: a configuration problem
    /// for an administrator, not something the author can fix.
    #[error("the platform rejected the app's credentials{}", said(.platform_message))]
    AppCredentialsRejected { platform_message: Option<String> },
    /// The account cannot be published to as authorized (a permission was not granted,
    /// the account kind is not allowed…): the reason names what and how to fix it.
    #[error("a posting requirement is unmet: {}", reason_text(.0))]
    RequirementUnmet(Reason),
    /// The platform refused the tokens it had just issued.
    #[error("the platform refused the new authorization: {}", reason_text(.0))]
    AuthorizationRefused(Reason),
    /// The redirect URI handed to the adapter is not an absolute URL.
    #[error("the redirect URI is not an absolute URL: {0}")]
    InvalidRedirectUri(String),
    /// The platform asked to slow down; the author can try again after the wait.
    #[error("the platform is rate limiting; try again in {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// A passing fault (timeout, 5xx, unreadable answer): trying again may work.
    #[error("the platform is unavailable: {detail}")]
    Unavailable { detail: String },
}

impl ConnectError {
    /// Stable machine-readable code for the HTTP API.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::AccessDenied { .. } => "access_denied",
            ConnectError::CodeRejected { .. } => "code_rejected",
            ConnectError::AppCredentialsRejected { .. } => {
                ReasonCode::AppCredentialsRejected.code()
            }
            ConnectError::RequirementUnmet(reason) | ConnectError::AuthorizationRefused(reason) => {
                reason.code.code()
            }
            ConnectError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            ConnectError::RateLimited { .. } => ReasonCode::RateLimited.code(),
            ConnectError::Unavailable { .. } => ReasonCode::PlatformUnavailable.code(),
        }
    }

    /// Classifies the `error` a platform put on the redirect back to the service instead
    /// of a code (RFC 6749 §4.1.2.1).
    pub fn from_callback(error: &str, description: Option<&str>) -> ConnectError {
        let said = match description {
            Some(description) => format!("{error}: {description}"),
            None => error.to_owned(),
        };
        match error {
            // LinkedIn reports a member who cancels as user_cancelled_*.
            "access_denied" | "user_cancelled_authorize" | "user_cancelled_login" => {
                ConnectError::AccessDenied {
                    platform_message: Some(said),
                }
            }
            "temporarily_unavailable" | "server_error" => {
                ConnectError::Unavailable { detail: said }
            }
            // unauthorized_client, invalid_client, and the refusals of the request the
            // service built (invalid_request, invalid_scope, unsupported_response_type):
            // only an administrator can fix them.
            _ => ConnectError::AppCredentialsRejected {
                platform_message: Some(said),
            },
        }
    }
}

impl From<PortError> for ConnectError {
    fn from(error: PortError) -> ConnectError {
        match error {
            PortError::GrantDead(reason) => ConnectError::AuthorizationRefused(reason),
            PortError::Unauthorized => {
                ConnectError::AuthorizationRefused(Reason::new(ReasonCode::AuthorizationInvalid))
            }
            PortError::RequirementUnmet(reason)
                if reason.code == ReasonCode::AppCredentialsRejected =>
            {
                ConnectError::AppCredentialsRejected {
                    platform_message: reason.platform_message,
                }
            }
            PortError::RequirementUnmet(reason) => ConnectError::RequirementUnmet(reason),
            PortError::RateLimited { retry_after, .. } => ConnectError::RateLimited { retry_after },
            PortError::Unavailable { detail, .. } => ConnectError::Unavailable { detail },
            // Connect publishes nothing; a content refusal here means the platform
            // answered something the adapter did not expect.
            PortError::ContentRejected(reason) => ConnectError::Unavailable {
                detail: reason_text(&reason),
            },
        }
    }
}

/// ": what the platform said", or nothing when it said nothing.
fn said(platform_message: &Option<String>) -> String {
    platform_message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// The scopes a connection needs that `granted` lacks, as the reason its author sees:
/// `permission_removed`, naming what `who` did not grant (consent screens let a person
/// untick scopes). `None` when every needed scope was granted.
pub(crate) fn ungranted(who: &str, needed: &[&str], granted: &[String]) -> Option<Reason> {
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|needed| !granted.iter().any(|s| s == needed))
        .collect();
    (!missing.is_empty()).then(|| {
        Reason::with_platform_message(
            ReasonCode::PermissionRemoved,
            format!("{who} did not grant {}", missing.join(", ")),
        )
    })
}

/// The longest picture URL an account keeps; platforms' CDN addresses are far shorter.
const PICTURE_URL_MAX: usize = 2048;

/// An account's picture as a platform's identity answer gave it, kept only when it is an
/// absolute `https` URL with a host (and no credentials) of at most [`PICTURE_URL_MAX`]
/// bytes: anything else — empty, `http`, `data:`, relative, unparseable — is no picture.
pub(crate) fn picture_url(raw: Option<&str>) -> Option<String> {
    let raw = raw?.trim();
    if raw.is_empty() || raw.len() > PICTURE_URL_MAX {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    (url.scheme() == "https"
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none())
    .then(|| url.to_string())
}

fn reason_text(reason: &Reason) -> String {
    match &reason.platform_message {
        Some(m) => format!("{} ({m})", reason.code),
        None => reason.code.to_string(),
    }
}

/// One reason a post's content cannot be published on a platform, named so that the
/// author sees exactly what to change. Serialises as `{"code": "...", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ContentError {
    /// Neither text nor media.
    #[error("the post is empty: add text or media")]
    EmptyPost,
    /// The text is longer than the platform allows, counted the platform's way.
    #[error("the text counts {actual} characters; the limit is {limit}")]
    TextTooLong { limit: usize, actual: usize },
    #[error("the post has {actual} images; the limit is {limit}")]
    TooManyImages { limit: usize, actual: usize },
    #[error("the post has {actual} videos; the limit is {limit}")]
    TooManyVideos { limit: usize, actual: usize },
    /// Images and a video together, which the platform does not allow.
    #[error("images and a video cannot be combined in one post")]
    MixedMedia,
    /// An animated GIF must be the only media of its post.
    #[error("an animated GIF must be the only media of its post")]
    GifNotAlone,
    /// The engine cannot upload video to this platform yet.
    #[error("video posts are not supported on this platform yet")]
    VideoNotSupported,
    /// The platform has no such kind of post (or none its public API can publish).
    /// Its code is the catalogue's word, `not_offered_by_platform`.
    #[error("this platform does not offer {kind:?} posts")]
    #[serde(rename = "not_offered_by_platform")]
    KindNotOffered { kind: PostKind },
    /// The title is longer than the platform allows (Pinterest: 100 characters).
    #[error("the title has {actual} characters; the limit is {limit}")]
    TitleTooLong { limit: usize, actual: usize },
    /// A link is longer than the platform allows (Pinterest: 2048 characters).
    #[error("the link has {actual} characters; the limit is {limit}")]
    LinkTooLong { limit: usize, actual: usize },
    /// An image's alt text is longer than the platform allows (Pinterest: 500 characters).
    #[error("the alt text has {actual} characters; the limit is {limit}")]
    AltTextTooLong { limit: usize, actual: usize },
    /// The platform publishes only into a chosen target (a Pinterest board), and none
    /// was chosen.
    #[error("choose where to publish (a {target}) before scheduling")]
    TargetRequired { target: String },
    /// The platform publishes nothing without media of this kind (a Pinterest pin needs
    /// an image).
    #[error("the post needs {what}")]
    MediaRequired { what: String },
    /// More hashtags than the platform allows (Instagram: 30).
    #[error("the text has {actual} hashtags; the limit is {limit}")]
    TooManyHashtags { limit: usize, actual: usize },
    /// More @mentions than the platform allows (Instagram: 20).
    #[error("the text has {actual} mentions; the limit is {limit}")]
    TooManyMentions { limit: usize, actual: usize },
    /// The platform publishes nothing without a title (a YouTube video).
    #[error("the post needs a title")]
    TitleRequired,
    /// The text is longer than the platform allows, counted in UTF-8 bytes (YouTube
    /// descriptions: 5000 bytes).
    #[error("the text takes {actual} bytes; the limit is {limit} bytes")]
    TextTooManyBytes { limit: usize, actual: usize },
    /// A field holds characters the platform refuses (YouTube: `<` and `>` in a title
    /// or description).
    #[error("the {field} may not contain {characters}")]
    ForbiddenCharacters { field: String, characters: String },
}

impl ContentError {
    /// Stable machine-readable code (the same string the JSON form carries).
    pub fn code(&self) -> &'static str {
        match self {
            ContentError::EmptyPost => "empty_post",
            ContentError::TextTooLong { .. } => "text_too_long",
            ContentError::TooManyImages { .. } => "too_many_images",
            ContentError::TooManyVideos { .. } => "too_many_videos",
            ContentError::MixedMedia => "mixed_media",
            ContentError::GifNotAlone => "gif_not_alone",
            ContentError::VideoNotSupported => "video_not_supported",
            ContentError::KindNotOffered { .. } => "not_offered_by_platform",
            ContentError::TitleTooLong { .. } => "title_too_long",
            ContentError::LinkTooLong { .. } => "link_too_long",
            ContentError::AltTextTooLong { .. } => "alt_text_too_long",
            ContentError::TargetRequired { .. } => "target_required",
            ContentError::MediaRequired { .. } => "media_required",
            ContentError::TooManyHashtags { .. } => "too_many_hashtags",
            ContentError::TooManyMentions { .. } => "too_many_mentions",
            ContentError::TitleRequired => "title_required",
            ContentError::TextTooManyBytes { .. } => "text_too_many_bytes",
            ContentError::ForbiddenCharacters { .. } => "forbidden_characters",
        }
    }
}

/// A platform adapter: the connect flow and content rules, on top of the
/// [`PlatformPort`] the actors use.
#[async_trait]
pub trait Adapter: PlatformPort {
    /// Where to send the author's browser. `state` comes from the service's single-use
    /// store; a PKCE S256 verifier is generated here where the platform supports it.
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError>;

    /// Exchanges the code (with the verifier and the exact `redirect_uri` of the
    /// authorize request), then identifies the account and its targets and checks the
    /// posting requirements. Lifetimes in the grant are measured from `now`.
    async fn connect(
        &self,
        code: &str,
        pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError>;

    /// Connects with an identifier and an app password instead of a consent page
    /// (Bluesky). The password is consumed: an adapter sends it once and keeps nothing.
    /// Platforms that connect through OAuth refuse it.
    async fn connect_with_app_password(
        &self,
        _identifier: &str,
        _app_password: Secret,
        _now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        Err(ConnectError::RequirementUnmet(
            Reason::with_platform_message(
                ReasonCode::NotOfferedByPlatform,
                "this platform connects through its consent page, not with an app password",
            ),
        ))
    }

    /// The least scopes posting needs.
    fn scopes(&self) -> &'static [&'static str];

    /// Checks a post's content against the platform's rules before it is scheduled;
    /// every refusal is named.
    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_is_an_https_url_or_none() {
        assert_eq!(
            picture_url(Some(" https://cdn.example.com/a.jpg?s=64 ")).as_deref(),
            Some("https://cdn.example.com/a.jpg?s=64")
        );
        for bad in [
            "",
            "   ",
            "http://cdn.example.com/a.jpg",
            "data:image/png;base64,AAAA",
            "javascript:alert(1)",
            "/relative/a.jpg",
            "https://user:pw@cdn.example.com/a.jpg",
            "not a url",
        ] {
            assert_eq!(picture_url(Some(bad)), None, "{bad:?}");
        }
        let long = format!("https://cdn.example.com/{}", "a".repeat(PICTURE_URL_MAX));
        assert_eq!(picture_url(Some(&long)), None);
        assert_eq!(picture_url(None), None);
    }

    #[test]
    fn content_error_codes_match_their_json_form() {
        let all = [
            ContentError::EmptyPost,
            ContentError::TextTooLong {
                limit: 280,
                actual: 281,
            },
            ContentError::TooManyImages {
                limit: 4,
                actual: 5,
            },
            ContentError::TooManyVideos {
                limit: 1,
                actual: 2,
            },
            ContentError::MixedMedia,
            ContentError::GifNotAlone,
            ContentError::VideoNotSupported,
            ContentError::KindNotOffered {
                kind: PostKind::Pin,
            },
            ContentError::TitleTooLong {
                limit: 100,
                actual: 101,
            },
            ContentError::LinkTooLong {
                limit: 2048,
                actual: 2049,
            },
            ContentError::AltTextTooLong {
                limit: 500,
                actual: 501,
            },
            ContentError::TargetRequired {
                target: "board".into(),
            },
            ContentError::MediaRequired {
                what: "an image".into(),
            },
            ContentError::TooManyHashtags {
                limit: 30,
                actual: 31,
            },
            ContentError::TooManyMentions {
                limit: 20,
                actual: 21,
            },
            ContentError::TitleRequired,
            ContentError::TextTooManyBytes {
                limit: 5000,
                actual: 5001,
            },
            ContentError::ForbiddenCharacters {
                field: "title".into(),
                characters: "< and >".into(),
            },
        ];
        for error in all {
            let json = serde_json::to_value(&error).unwrap();
            assert_eq!(json["code"], error.code(), "{json}");
        }
        let json = serde_json::to_value(ContentError::TextTooLong {
            limit: 280,
            actual: 281,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "text_too_long", "limit": 280, "actual": 281})
        );
    }

    #[test]
    fn callback_errors_are_classified() {
        assert_eq!(
            ConnectError::from_callback("access_denied", None).code(),
            "access_denied"
        );
        assert_eq!(
            ConnectError::from_callback("unauthorized_client", Some("nope")).code(),
            "app_credentials_rejected"
        );
        assert_eq!(
            ConnectError::from_callback("user_cancelled_authorize", None).code(),
            "access_denied"
        );
        assert_eq!(
            ConnectError::from_callback("temporarily_unavailable", None).code(),
            "platform_unavailable"
        );
    }

    #[test]
    fn settings_never_show_the_secret() {
        let settings = PlatformSettings {
            client_id: "id".into(),
            client_secret: Secret::new("s3cr3t-value"),
            auth_url: "https://x.com/i/oauth2/authorize".into(),
            token_url: "https://api.x.com/2/oauth2/token".into(),
            revoke_url: None,
            api_base: "https://api.x.com".into(),
            allow_private_media_urls: false,
        };
        assert!(!format!("{settings:?}").contains("s3cr3t-value"));
    }
}
