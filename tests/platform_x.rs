//! The X adapter against the sandbox's X, over real loopback HTTP: the consent dance a
//! browser does, then every call the actors make, with the failures X is known for.
//! Each test starts its own sandbox on port 0, so tests run in parallel without sharing
//! state.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use social_studio::platforms::x::{weighted_length, MAX_WEIGHTED_LENGTH, SCOPES};
use social_studio::platforms::{
    Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, PlatformSettings, XAdapter,
};
use social_studio_actors::{LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    AccountKind, Grant, Media, Platform, Post, PostKind, Reason, ReasonCode, Secret, TargetKind,
    Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{
    assert_no_spent_token_sent, connect, consent, image, now, param, query, settings,
    settings_with_secret, text, unix_now, StoppedClock,
};

/// The client id the sandbox's X registers, as the authorize request must carry it.
const CLIENT_ID: &str = "sandbox-x-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/x/callback";
const JANE: &str = "2244994945";
/// Jane's username on the consent page.
const JANE_USERNAME: &str = "jane_writes";

type World = platform_support::World<XAdapter>;

async fn world() -> World {
    World::start("x", |settings| XAdapter::new(settings).unwrap()).await
}

impl World {
    /// What Jane does in the browser: open the authorize URL, log in, choose. Returns
    /// the query of the redirect back to the service.
    async fn consent(&self, request: &AuthorizeRequest, decision: &str) -> Vec<(String, String)> {
        consent(&request.url, JANE_USERNAME, decision, REDIRECT_URI).await
    }

    /// The whole connect: authorize, consent, code exchange and identity.
    async fn connect(&self, now: Timestamp) -> Connected {
        connect(&self.adapter, JANE_USERNAME, REDIRECT_URI, now)
            .await
            .unwrap()
    }

    /// Asserts that no spent refresh token ever reached X.
    fn assert_no_spent_token_sent(&self) {
        assert_no_spent_token_sent(&self.sandbox.x().token_requests());
    }
}

fn post(words: &str) -> Post {
    platform_support::post(Platform::X, text(words))
}

fn dead(message: &str) -> PortError {
    PortError::GrantDead(Reason::with_platform_message(
        ReasonCode::AuthorizationInvalid,
        message,
    ))
}

const X_INVALID_TOKEN: &str = "Value passed for the token was invalid.";

#[tokio::test]
async fn connect_identifies_the_account_and_keeps_lifetimes_from_now() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    let query = query(&request.url);
    assert_eq!(param(&query, "response_type"), Some("code"));
    assert_eq!(param(&query, "client_id"), Some(CLIENT_ID));
    assert_eq!(param(&query, "redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(param(&query, "state"), Some("state-1"));
    assert_eq!(param(&query, "code_challenge_method"), Some("S256"));
    assert_eq!(param(&query, "scope"), Some(SCOPES.join(" ").as_str()));
    assert!(request.pkce_verifier.is_some());
    assert!(!format!("{request:?}").contains(request.pkce_verifier.as_ref().unwrap().expose()));

    let callback = w.consent(&request, "authorize").await;
    let code = param(&callback, "code").unwrap().to_owned();
    let at = Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
    let connected = w
        .adapter
        .connect(&code, request.pkce_verifier.as_ref(), REDIRECT_URI, at)
        .await
        .unwrap();

    let grant = &connected.grant;
    assert!(
        grant.refresh_token.is_some(),
        "offline.access gives a refresh token"
    );
    assert_eq!(grant.issued_at, at);
    assert_eq!(
        grant.expires_at,
        Some(at.saturating_add(Duration::from_secs(7200)))
    );
    assert_eq!(grant.token_type, "bearer");
    for scope in SCOPES {
        assert!(grant.scopes.iter().any(|s| s == scope), "{scope}");
    }
    assert_eq!(connected.account.platform_id, JANE);
    assert_eq!(connected.account.handle, "@jane_writes");
    assert_eq!(connected.account.display_name, "Jane Writes");
    assert_eq!(connected.account.kind, AccountKind::Personal);
    // Asked for with `user.fields=profile_image_url`, which X answers only when asked.
    assert_eq!(
        connected.account.picture.as_deref(),
        Some(format!("https://pbs.twimg.com/profile_images/{JANE}/sandbox_normal.png").as_str())
    );
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].kind, TargetKind::Profile);
    assert_eq!(connected.targets[0].id, JANE);
    assert!(!format!("{connected:?}").contains(grant.access_token.expose()));

    // A code is single-use.
    let again = w
        .adapter
        .connect(&code, request.pkce_verifier.as_ref(), REDIRECT_URI, at)
        .await
        .unwrap_err();
    assert_eq!(
        again,
        ConnectError::CodeRejected {
            platform_message: Some(X_INVALID_TOKEN.into())
        }
    );
}

#[tokio::test]
async fn a_code_with_the_wrong_verifier_or_redirect_is_refused_by_name() {
    let w = world().await;
    let request = w.adapter.authorize("s", REDIRECT_URI).unwrap();
    let callback = w.consent(&request, "authorize").await;
    let code = param(&callback, "code").unwrap();
    let wrong = Secret::new("a".repeat(64));
    let error = w
        .adapter
        .connect(code, Some(&wrong), REDIRECT_URI, now())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "code_rejected");

    let request = w.adapter.authorize("s", REDIRECT_URI).unwrap();
    let callback = w.consent(&request, "authorize").await;
    let code = param(&callback, "code").unwrap();
    let error = w
        .adapter
        .connect(
            code,
            request.pkce_verifier.as_ref(),
            "http://127.0.0.1:9/other",
            now(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "code_rejected");

    let error = w
        .adapter
        .connect(code, None, REDIRECT_URI, now())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "code_rejected", "X requires PKCE");
    assert!(matches!(
        w.adapter.authorize("s", "not a url"),
        Err(ConnectError::InvalidRedirectUri(_))
    ));
}

#[tokio::test]
async fn declining_on_the_consent_page_reads_as_access_denied() {
    let w = world().await;
    let request = w.adapter.authorize("state-9", REDIRECT_URI).unwrap();
    let callback = w.consent(&request, "cancel").await;
    assert_eq!(param(&callback, "state"), Some("state-9"));
    let error = ConnectError::from_callback(
        param(&callback, "error").unwrap(),
        param(&callback, "error_description"),
    );
    assert!(
        matches!(error, ConnectError::AccessDenied { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_spent_token_is_never_sent() {
    let w = world().await;
    let issued = Timestamp::parse_rfc3339("2027-01-01T00:00:00Z").unwrap();
    let adapter = XAdapter::new(&settings(&w.base(), "x"))
        .unwrap()
        .with_clock(Arc::new(StoppedClock(issued)));
    let first = w.connect(now()).await.grant;

    let second = adapter.refresh(&first).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(second.refresh_token.is_some());
    assert_eq!(second.issued_at, issued, "the adapter's clock issues it");
    assert_eq!(
        second.expires_at,
        Some(issued.saturating_add(Duration::from_secs(7200)))
    );
    assert_eq!(second.scopes, first.scopes);
    assert_eq!(adapter.check(&second).await.unwrap().platform_id, JANE);

    let third = adapter.refresh(&second).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    assert_eq!(w.sandbox.x().refresh_calls(), 2);
    w.assert_no_spent_token_sent();

    // What X does with a spent token, which the engine never sends: the token is
    // refused, and the whole grant with it — the newest token included.
    assert_eq!(
        adapter.refresh(&first).await.unwrap_err(),
        dead(X_INVALID_TOKEN)
    );
    assert_eq!(
        adapter.refresh(&third).await.unwrap_err(),
        dead(X_INVALID_TOKEN)
    );
}

#[tokio::test]
async fn an_expired_access_token_is_unauthorized_until_refreshed() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.sandbox.x().expire_access_tokens(JANE).unwrap();
    assert_eq!(
        w.adapter.check(&grant).await.unwrap_err(),
        PortError::Unauthorized
    );
    let renewed = w.adapter.refresh(&grant).await.unwrap();
    let account = w.adapter.check(&renewed).await.unwrap();
    assert_eq!(account.handle, "@jane_writes");
}

#[tokio::test]
async fn publishes_text_with_a_receipt_that_links_to_the_post() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let mut post = post("Chapter one is out today.");
    post.content.links = vec!["https://example.com/book".into()];
    let receipt = w.adapter.publish(&grant, &post).await.unwrap();
    assert_eq!(
        receipt.url.as_deref(),
        Some(format!("https://x.com/i/web/status/{}", receipt.platform_post_id).as_str())
    );
    let tweets = w.sandbox.x().tweets(JANE);
    assert_eq!(tweets.len(), 1);
    assert_eq!(tweets[0].id, receipt.platform_post_id);
    assert_eq!(
        tweets[0].text,
        "Chapter one is out today.\nhttps://example.com/book"
    );
    assert!(tweets[0].media_ids.is_empty());
}

#[tokio::test]
async fn publishes_images_fetched_from_the_post_media() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let png: &'static [u8] = b"\x89PNG\r\n\x1a\n-not-really-an-image-but-bytes";
    let media = platform_support::serve(
        Router::new()
            .route(
                "/cover.png",
                get(move || async move { ([(header::CONTENT_TYPE, "image/png")], png) }),
            )
            .route(
                "/back.jpg",
                get(|| async { ([(header::CONTENT_TYPE, "image/jpeg")], vec![0xFFu8; 2048]) }),
            ),
    )
    .await;
    let mut covers = post("Both covers");
    covers.content.media = vec![
        image(format!("http://{media}/cover.png")),
        image(format!("http://{media}/back.jpg")),
    ];
    let receipt = w.adapter.publish(&grant, &covers).await.unwrap();
    let tweets = w.sandbox.x().tweets(JANE);
    assert_eq!(tweets.len(), 1);
    assert_eq!(tweets[0].id, receipt.platform_post_id);
    assert_eq!(tweets[0].media_ids.len(), 2);

    // An image that is gone cannot be published, ever: the post fails by name.
    let mut missing = post("Missing cover");
    missing.content.media = vec![image(format!("http://{media}/gone.png"))];
    let error = w.adapter.publish(&grant, &missing).await.unwrap_err();
    assert!(
        matches!(&error, PortError::ContentRejected(r)
            if r.code == ReasonCode::ContentRejected
            && r.platform_message.as_deref().is_some_and(|m| m.contains("404"))),
        "{error:?}"
    );
    assert_eq!(w.sandbox.x().tweets(JANE).len(), 1);
}

#[tokio::test]
async fn duplicate_content_is_rejected_content() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.adapter
        .publish(&grant, &post("Same words"))
        .await
        .unwrap();
    let error = w
        .adapter
        .publish(&grant, &post("Same words"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PortError::ContentRejected(Reason::with_platform_message(
            ReasonCode::ContentRejected,
            "You are not allowed to create a Tweet with duplicate content."
        ))
    );
}

#[tokio::test]
async fn a_user_who_revoked_the_app_is_unauthorized_then_dead() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.sandbox.x().revoke_user_grants(JANE).unwrap();
    assert_eq!(
        w.adapter.publish(&grant, &post("hello")).await.unwrap_err(),
        PortError::Unauthorized
    );
    assert_eq!(
        w.adapter.check(&grant).await.unwrap_err(),
        PortError::Unauthorized
    );
    assert_eq!(
        w.adapter.refresh(&grant).await.unwrap_err(),
        dead(X_INVALID_TOKEN)
    );
    assert!(w.sandbox.x().tweets(JANE).is_empty());
}

#[tokio::test]
async fn a_wrong_client_secret_is_the_apps_problem_not_the_authors() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let misconfigured =
        XAdapter::new(&settings_with_secret(&w.base(), "x", "wrong-secret")).unwrap();

    let refused = misconfigured.refresh(&grant).await.unwrap_err();
    assert!(
        matches!(&refused, PortError::RequirementUnmet(r)
            if r.code == ReasonCode::AppCredentialsRejected),
        "{refused:?}"
    );
    // The refused request spent nothing: the real client can still refresh.
    w.adapter.refresh(&grant).await.unwrap();

    let request = misconfigured.authorize("s", REDIRECT_URI).unwrap();
    let callback = w.consent(&request, "authorize").await;
    let error = misconfigured
        .connect(
            param(&callback, "code").unwrap(),
            request.pkce_verifier.as_ref(),
            REDIRECT_URI,
            now(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ConnectError::AppCredentialsRejected {
            platform_message: Some("Missing valid authorization header".into())
        }
    );
    w.assert_no_spent_token_sent();
}

#[tokio::test]
async fn rate_limits_wait_until_xs_announced_reset() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.sandbox.x().rate_limit_next(1, unix_now() + 120);
    let error = w.adapter.publish(&grant, &post("later")).await.unwrap_err();
    let PortError::RateLimited { retry_after, scope } = error else {
        panic!("{error:?}");
    };
    assert_eq!(scope, LimitScope::Connection);
    assert!(
        (Duration::from_secs(115)..=Duration::from_secs(120)).contains(&retry_after),
        "{retry_after:?}"
    );
    // Nothing was published, and the next call goes through.
    assert!(w.sandbox.x().tweets(JANE).is_empty());
    w.adapter.publish(&grant, &post("later")).await.unwrap();
}

#[tokio::test]
async fn a_5xx_is_a_passing_fault_that_delivered_nothing() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.sandbox
        .x()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    let error = w.adapter.publish(&grant, &post("soon")).await.unwrap_err();
    assert!(
        matches!(
            error,
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(w.sandbox.x().tweets(JANE).is_empty());

    // A refused refresh spent nothing either: the same token still renews the grant.
    w.sandbox
        .x()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    let error = w.adapter.refresh(&grant).await.unwrap_err();
    assert!(
        matches!(
            error,
            PortError::Unavailable {
                maybe_delivered: false,
                ..
            }
        ),
        "{error:?}"
    );
    w.adapter.refresh(&grant).await.unwrap();
    w.assert_no_spent_token_sent();
}

#[tokio::test]
async fn a_lost_answer_may_have_been_delivered() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.sandbox.x().drop_next(1);
    let error = w
        .adapter
        .publish(&grant, &post("did it?"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PortError::Unavailable {
                maybe_delivered: true,
                ..
            }
        ),
        "{error:?}"
    );
    // It did: X published and only the answer was lost.
    assert_eq!(w.sandbox.x().tweets(JANE).len(), 1);

    w.sandbox.x().drop_next(1);
    let error = w.adapter.refresh(&grant).await.unwrap_err();
    assert!(
        matches!(
            error,
            PortError::Unavailable {
                maybe_delivered: true,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn revoke_ends_the_grant_at_x() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    assert_eq!(
        w.adapter.revoke(&grant).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        w.adapter.check(&grant).await.unwrap_err(),
        PortError::Unauthorized
    );
    assert_eq!(
        w.adapter.refresh(&grant).await.unwrap_err(),
        dead(X_INVALID_TOKEN)
    );
    w.assert_no_spent_token_sent();

    let no_endpoint = PlatformSettings {
        revoke_url: None,
        ..settings(&w.base(), "x")
    };
    let adapter = XAdapter::new(&no_endpoint).unwrap();
    assert_eq!(
        adapter.revoke(&grant).await.unwrap(),
        RevokeOutcome::NotSupported
    );
}

fn with_media(text: &str, media: Vec<Media>) -> Post {
    let mut post = post(text);
    post.content.media = media;
    post
}

fn images(n: usize) -> Vec<Media> {
    (0..n)
        .map(|i| image(format!("https://example.com/{i}.jpg")))
        .collect()
}

fn video() -> Media {
    platform_support::video("https://example.com/trailer.mp4")
}

#[tokio::test]
async fn validation_counts_like_x_and_names_every_refusal() {
    let w = world().await;
    let url = "https://example.com/a/very/long/path/that/is/much/longer/than/23";
    let cases: Vec<(String, usize)> = vec![
        ("a".repeat(280), 280),
        ("a".repeat(281), 281),
        (format!("{} {url}", "a".repeat(256)), 280),
        (format!("{} {url}", "a".repeat(257)), 281),
        ("日".repeat(140), 280),
        ("日".repeat(141), 282),
        ("👨\u{200D}👩\u{200D}👧".repeat(140), 280),
        (format!("{}😀", "a".repeat(279)), 281),
    ];
    for (text, weight) in cases {
        assert_eq!(weighted_length(&text), weight, "{text}");
        let verdict = w.adapter.validate(&post(&text));
        if weight <= MAX_WEIGHTED_LENGTH {
            assert_eq!(verdict, Ok(()), "{text}");
        } else {
            assert_eq!(
                verdict,
                Err(vec![ContentError::TextTooLong {
                    limit: 280,
                    actual: weight
                }]),
                "{text}"
            );
        }
    }

    // Links are part of the text X receives, and count 23 each.
    let mut linked = post(&"a".repeat(256));
    linked.content.links = vec![url.into()];
    assert_eq!(w.adapter.validate(&linked), Ok(()));
    linked.content.text.push('a');
    assert_eq!(
        w.adapter.validate(&linked).unwrap_err()[0].code(),
        "text_too_long"
    );

    let refusals = |post: &Post| -> Vec<&'static str> {
        match w.adapter.validate(post) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(ContentError::code).collect(),
        }
    };
    assert_eq!(refusals(&with_media("four", images(4))), Vec::<&str>::new());
    assert_eq!(refusals(&with_media("", images(1))), Vec::<&str>::new());
    assert_eq!(
        refusals(&with_media("five", images(5))),
        ["too_many_images"]
    );
    assert_eq!(refusals(&post("")), ["empty_post"]);
    assert_eq!(refusals(&post("   ")), ["empty_post"]);
    assert_eq!(
        refusals(&with_media("two videos", vec![video(), video()])),
        ["too_many_videos", "video_not_supported"]
    );
    let mut mixed = images(1);
    mixed.push(video());
    assert_eq!(
        refusals(&with_media("mixed", mixed)),
        ["mixed_media", "video_not_supported"]
    );
    let gif_and_more = vec![
        image("https://example.com/dance.GIF?v=2"),
        image("https://example.com/1.jpg"),
    ];
    assert_eq!(
        refusals(&with_media("gif", gif_and_more)),
        ["gif_not_alone"]
    );
    let mut pin = post("a pin");
    pin.kind = PostKind::Pin;
    assert_eq!(refusals(&pin), ["not_offered_by_platform"]);

    // Publishing checks again, so an invalid post never reaches X.
    let grant: Grant = w.connect(now()).await.grant;
    let error = w
        .adapter
        .publish(&grant, &post(&"a".repeat(281)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::ContentRejected(r) if r.code == ReasonCode::ContentRejected),
        "{error:?}"
    );
    assert!(w.sandbox.x().tweets(JANE).is_empty());
}
