//! What the platform tests (`tests/platform_*.rs`) share, so that each file keeps only
//! what is specific to its platform: an adapter's settings read from the sandbox's own
//! route table, a sandbox with one adapter pointed at it, the consent a browser gives
//! and the code it brings back, a redirect's query read as pairs, clocks, and the media
//! and posts most tests start from. Included with `#[path]` by each platform test
//! binary; not every binary uses every part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use reqwest::Url;
use social_studio::platforms::bluesky::BlueskySettings;
use social_studio::platforms::{Adapter, ConnectError, Connected, PlatformSettings};
use social_studio::sandbox::{browser, Endpoints, Sandbox, TokenOutcome, TokenRequest};
use social_studio_actors::Clock;
use social_studio_storage::{
    fixtures, Content, Media, MediaKind, Platform, Post, Secret, Timestamp,
};

/// The `state` [`code`] and [`connect`] authorize with and expect back.
pub const STATE: &str = "state-1";

/// The settings that point an adapter for `platform_id` at the sandbox served at
/// `base`, with the app registration the sandbox accepts: all of it from the sandbox's
/// route table, so a route that moves there moves here.
pub fn settings(base: &str, platform_id: &str) -> PlatformSettings {
    let Some(Endpoints::Oauth(oauth)) = Endpoints::at(base, platform_id) else {
        panic!("{platform_id} is not an OAuth platform of the sandbox");
    };
    PlatformSettings {
        client_id: oauth.client_id,
        client_secret: Secret::new(oauth.client_secret.expose()),
        auth_url: oauth.auth_url,
        token_url: oauth.token_url,
        revoke_url: oauth.revoke_url,
        api_base: oauth.api_base,
        // The sandbox serves media on 127.0.0.1.
        allow_private_media_urls: true,
    }
}

/// [`settings`] with another client secret: an app the platform does not recognise.
pub fn settings_with_secret(
    base: &str,
    platform_id: &str,
    client_secret: &str,
) -> PlatformSettings {
    PlatformSettings {
        client_secret: Secret::new(client_secret),
        ..settings(base, platform_id)
    }
}

/// Bluesky's service and PLC directory in the sandbox served at `base`.
pub fn bluesky_settings(base: &str) -> BlueskySettings {
    let Some(Endpoints::AtProto(at)) = Endpoints::at(base, "bluesky") else {
        panic!("bluesky is the sandbox's AT Protocol platform");
    };
    BlueskySettings {
        service: at.service,
        plc_directory: at.plc_directory,
        // The sandbox's DID documents and media are on 127.0.0.1.
        allow_private_media_urls: true,
    }
}

/// A sandbox of its own (on port 0, so tests run in parallel without sharing state) and
/// one adapter pointed at it.
pub struct World<A> {
    pub sandbox: Sandbox,
    pub adapter: A,
}

impl<A> World<A> {
    /// Starts a sandbox and builds the adapter for `platform_id` from its [`settings`].
    pub async fn start(platform_id: &str, new: impl FnOnce(&PlatformSettings) -> A) -> Self {
        let sandbox = Sandbox::start().await.unwrap();
        let adapter = new(&settings(&sandbox.base_url(), platform_id));
        World { sandbox, adapter }
    }

    /// The sandbox's base URL, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        self.sandbox.base_url()
    }
}

/// A URL's query as pairs, in order.
pub fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The first value of `name` in a query.
pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a person does in the browser: open `authorize_url`, sign in as `who`, choose
/// `decision` (`authorize` or `cancel`). Returns the query of the redirect back to the
/// service, after checking it goes to `redirect_uri`.
pub async fn consent(
    authorize_url: &str,
    who: &str,
    decision: &str,
    redirect_uri: &str,
) -> Vec<(String, String)> {
    let location = browser::consent(authorize_url, who, decision)
        .await
        .unwrap();
    assert!(location.starts_with(redirect_uri), "{location}");
    query(&location)
}

/// What a finished consent gives the service: the code, and the PKCE verifier of the
/// authorize request where the platform uses PKCE.
pub struct Code {
    pub code: String,
    pub verifier: Option<Secret>,
}

/// Authorize with `adapter`, consent as `who`, and read the code from the redirect
/// (after checking that the `state` came back).
pub async fn code<A: Adapter + ?Sized>(adapter: &A, who: &str, redirect_uri: &str) -> Code {
    let request = adapter.authorize(STATE, redirect_uri).unwrap();
    let callback = consent(&request.url, who, "authorize", redirect_uri).await;
    assert_eq!(param(&callback, "state"), Some(STATE));
    Code {
        code: param(&callback, "code").unwrap().to_owned(),
        verifier: request.pkce_verifier,
    }
}

/// The whole connect as `who`: authorize, consent, the code exchange and identity, with
/// lifetimes measured from `now`.
pub async fn connect<A: Adapter + ?Sized>(
    adapter: &A,
    who: &str,
    redirect_uri: &str,
    now: Timestamp,
) -> Result<Connected, ConnectError> {
    let Code { code, verifier } = code(adapter, who, redirect_uri).await;
    adapter
        .connect(&code, verifier.as_ref(), redirect_uri, now)
        .await
}

/// Asserts that no spent refresh token ever reached the platform, from its token log.
pub fn assert_no_spent_token_sent(requests: &[TokenRequest]) {
    assert!(
        requests
            .iter()
            .all(|r| r.outcome != TokenOutcome::RefreshTokenReused),
        "{requests:?}"
    );
}

/// Serves `routes` on a free loopback port, for media an adapter fetches from elsewhere.
pub async fn serve(routes: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await });
    addr
}

/// The wall clock, as the engine reads it.
pub fn now() -> Timestamp {
    Timestamp::now_system()
}

/// The wall clock in seconds since the epoch, as platforms announce resets.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A clock stopped at one instant, to show which clock an adapter reads.
pub struct StoppedClock(pub Timestamp);

impl Clock for StoppedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// Media of `kind` at `url`, without alt text.
pub fn media(url: impl Into<String>, kind: MediaKind) -> Media {
    Media {
        url: url.into(),
        kind,
        alt: None,
    }
}

/// An image at `url`, without alt text.
pub fn image(url: impl Into<String>) -> Media {
    media(url, MediaKind::Image)
}

/// A video at `url`.
pub fn video(url: impl Into<String>) -> Media {
    media(url, MediaKind::Video)
}

/// `media` with alt text.
pub fn described(media: Media, alt: &str) -> Media {
    Media {
        alt: Some(alt.into()),
        ..media
    }
}

/// Jane's post on `platform` (the storage fixture's) carrying `content`.
pub fn post(platform: Platform, content: Content) -> Post {
    let mut post = fixtures::post(&fixtures::key("jane", platform), 0);
    post.content = content;
    post
}

/// Content that is text alone.
pub fn text(text: &str) -> Content {
    Content {
        text: text.into(),
        ..Content::default()
    }
}
