//! The Threads adapter against the sandbox's Threads, over real loopback HTTP: consent,
//! the short-to-long-lived exchange, refreshes only once a token is 24 hours old,
//! container publishing with status polling, the publishing limit, every Graph error
//! body the adapter classifies, and disconnect without a revoke endpoint. Each test
//! starts its own sandbox on port 0.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use social_studio::platforms::threads::{MAX_TEXT, SCOPES};
use social_studio::platforms::{Adapter, ConnectError, Connected, ContentError, ThreadsAdapter};
use social_studio::sandbox::browser::consent;
use social_studio::sandbox::Sandbox;
use social_studio_actors::{LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    fixtures, Content, Grant, Media, MediaKind, Platform, Post, PostKind, Reason, ReasonCode,
    TargetKind, Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{
    described, now, param, query, settings, settings_with_secret, unix_now, StoppedClock,
};

/// The client id the sandbox's Threads registers, as the authorize request must carry it.
const CLIENT_ID: &str = "sandbox-threads-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/threads/callback";
const JANE: &str = "jane_threads";
const JANE_ID: &str = "17841400000000001";
/// `expires_in` of a long-lived token in Threads' docs, which the sandbox answers.
const LONG_LIVED: Duration = Duration::from_secs(5_183_944);
const HOUR: Duration = Duration::from_secs(3600);

type World = platform_support::World<ThreadsAdapter>;

fn fast(adapter: ThreadsAdapter) -> ThreadsAdapter {
    adapter.with_polling(Duration::from_millis(5), Duration::from_secs(10))
}

async fn world() -> World {
    World::start("threads", |settings| {
        fast(ThreadsAdapter::new(settings).unwrap())
    })
    .await
}

impl World {
    fn media(&self, name: &str) -> String {
        format!("{}/threads/media/{name}", self.base())
    }

    /// An adapter on the same sandbox reading time from a stopped clock.
    fn adapter_at(&self, at: Timestamp) -> ThreadsAdapter {
        fast(ThreadsAdapter::new(&settings(&self.base(), "threads")).unwrap())
            .with_clock(Arc::new(StoppedClock(at)))
    }

    async fn code(&self, adapter: &ThreadsAdapter) -> String {
        platform_support::code(adapter, JANE, REDIRECT_URI)
            .await
            .code
    }

    async fn connect(&self, at: Timestamp) -> Connected {
        platform_support::connect(&self.adapter, JANE, REDIRECT_URI, at)
            .await
            .unwrap()
    }
}

fn media(url: &str, kind: MediaKind) -> Media {
    described(platform_support::media(url, kind), "A blue book cover")
}

fn post(text: &str, media: Vec<Media>) -> Post {
    let mut post = platform_support::post(
        Platform::Threads,
        Content {
            text: text.into(),
            title: None,
            links: Vec::new(),
            media,
        },
    );
    post.kind = PostKind::Feed;
    post.target = Some(JANE_ID.into());
    post
}

#[tokio::test]
async fn connect_exchanges_the_code_for_a_long_lived_token_with_its_lifetime() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    assert!(request
        .url
        .starts_with(&format!("{}/threads/oauth/authorize?", w.base())));
    let authorize = query(&request.url);
    assert_eq!(param(&authorize, "client_id"), Some(CLIENT_ID));
    assert_eq!(param(&authorize, "redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(param(&authorize, "response_type"), Some("code"));
    assert_eq!(param(&authorize, "state"), Some("state-1"));
    assert_eq!(
        param(&authorize, "scope"),
        Some("threads_basic,threads_content_publish")
    );
    assert_eq!(
        param(&authorize, "code_challenge"),
        None,
        "no PKCE on Threads"
    );
    assert!(request.pkce_verifier.is_none());

    let at = Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
    let code = w.code(&w.adapter).await;
    let connected = w
        .adapter
        .connect(&code, None, REDIRECT_URI, at)
        .await
        .unwrap();
    let grant = &connected.grant;
    assert_eq!(grant.issued_at, at);
    assert_eq!(grant.expires_at, Some(at.saturating_add(LONG_LIVED)));
    assert_eq!(grant.refresh_token, None, "Threads has no refresh token");
    assert_eq!(grant.endpoint.as_deref(), Some(JANE_ID));
    assert_eq!(grant.scopes, SCOPES);
    assert_eq!(w.sandbox.threads().exchange_calls(), 1);
    assert!(
        w.sandbox
            .threads()
            .is_long_lived(grant.access_token.expose()),
        "the grant holds the long-lived token, not the one-hour one"
    );
    assert!(w.adapter.renewable(&grant.facts()));
    assert_eq!(connected.account.platform_id, JANE_ID);
    assert_eq!(connected.account.handle, JANE);
    assert_eq!(
        connected.account.picture.as_deref(),
        Some("https://sandbox.invalid/jane.jpg")
    );
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].kind, TargetKind::Profile);
    assert_eq!(connected.targets[0].id, JANE_ID);
    assert!(!format!("{connected:?}").contains(grant.access_token.expose()));

    // A code is single-use.
    let again = w
        .adapter
        .connect(&code, None, REDIRECT_URI, at)
        .await
        .unwrap_err();
    assert_eq!(again.code(), "code_rejected", "{again:?}");
    assert!(format!("{again:?}").contains("has been used"), "{again:?}");
}

#[tokio::test]
async fn declining_bad_codes_and_wrong_app_credentials_are_named() {
    let w = world().await;
    let request = w.adapter.authorize("state-9", REDIRECT_URI).unwrap();
    let location = consent(&request.url, JANE, "cancel").await.unwrap();
    let callback = query(&location);
    assert_eq!(param(&callback, "state"), Some("state-9"));
    let error = ConnectError::from_callback(
        param(&callback, "error").unwrap(),
        param(&callback, "error_description"),
    );
    assert!(
        matches!(error, ConnectError::AccessDenied { .. }),
        "{error:?}"
    );

    let code = w.code(&w.adapter).await;
    let error = w
        .adapter
        .connect(&code, None, "http://127.0.0.1:9/other", now())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "code_rejected", "{error:?}");

    let misconfigured = fast(
        ThreadsAdapter::new(&settings_with_secret(&w.base(), "threads", "wrong-secret")).unwrap(),
    );
    let code = w.code(&misconfigured).await;
    let error = misconfigured
        .connect(&code, None, REDIRECT_URI, now())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ConnectError::AppCredentialsRejected { platform_message: Some(m) } if m.contains("client secret")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_refresh_is_sent_only_once_the_token_is_24_hours_old_and_before_it_lapses() {
    let w = world().await;
    let issued = now();
    let grant = w.connect(issued).await.grant;

    // One hour old: not sent; the wait is what is left of the 24 hours.
    let early = w.adapter_at(issued.saturating_add(HOUR));
    assert_eq!(
        early.refresh(&grant).await.unwrap_err(),
        PortError::RateLimited {
            retry_after: 23 * HOUR,
            scope: LimitScope::Connection,
        }
    );
    assert_eq!(w.sandbox.threads().refresh_calls(), 0);

    // 25 hours later (for the adapter and the sandbox alike): refreshed for 60 days.
    w.sandbox.threads().advance_clock(25 * HOUR);
    let later = issued.saturating_add(25 * HOUR);
    let renewed = w.adapter_at(later).refresh(&grant).await.unwrap();
    assert_eq!(w.sandbox.threads().refresh_calls(), 1);
    assert_ne!(renewed.access_token, grant.access_token);
    assert_eq!(renewed.issued_at, later);
    assert_eq!(renewed.expires_at, Some(later.saturating_add(LONG_LIVED)));
    assert_eq!(renewed.endpoint, grant.endpoint);
    assert_eq!(renewed.refresh_token, None);
    assert_eq!(w.adapter.check(&renewed).await.unwrap().handle, JANE);

    // The renewed token is itself too young to refresh.
    assert!(matches!(
        w.adapter_at(later.saturating_add(HOUR))
            .refresh(&renewed)
            .await,
        Err(PortError::RateLimited { .. })
    ));
    // A lapsed token is never sent: Threads refreshes only unexpired tokens.
    let lapsed = w.adapter_at(issued.saturating_add(LONG_LIVED + HOUR));
    assert!(matches!(
        lapsed.refresh(&grant).await,
        Err(PortError::GrantDead(ref r)) if r.code == ReasonCode::GrantExpired
    ));
    assert_eq!(w.sandbox.threads().refresh_calls(), 1);
}

#[tokio::test]
async fn a_token_that_lapses_within_24_hours_is_not_renewable() {
    let w = world().await;
    w.sandbox.threads().set_long_lived_lifetime(12 * HOUR);
    let grant = w.connect(now()).await.grant;
    assert_eq!(
        grant.expires_at,
        Some(grant.issued_at.saturating_add(12 * HOUR))
    );
    assert!(!w.adapter.renewable(&grant.facts()));
}

#[tokio::test]
async fn publishes_text_image_video_and_carousel_through_polled_containers() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let threads = w.sandbox.threads();

    let mut text = post("Book two is out", Vec::new());
    text.content.links = vec!["https://example.com/book-two".into()];
    let receipt = w.adapter.publish(&grant, &text).await.unwrap();
    let permalink = receipt.url.clone().unwrap();
    assert!(
        permalink.starts_with("https://www.threads.net/@jane_threads/post/"),
        "{permalink}"
    );

    let polls = threads.status_polls();
    w.adapter
        .publish(
            &grant,
            &post(
                "The cover",
                vec![media(&w.media("cover.jpg"), MediaKind::Image)],
            ),
        )
        .await
        .unwrap();
    // One IN_PROGRESS, then FINISHED.
    assert_eq!(threads.status_polls() - polls, 2);

    threads.set_processing_polls(1, 4);
    let polls = threads.status_polls();
    w.adapter
        .publish(
            &grant,
            &post(
                "The trailer",
                vec![media(&w.media("clip.mp4"), MediaKind::Video)],
            ),
        )
        .await
        .unwrap();
    assert_eq!(threads.status_polls() - polls, 5);

    w.adapter
        .publish(
            &grant,
            &post(
                "Three things",
                vec![
                    media(&w.media("cover.jpg"), MediaKind::Image),
                    media(&w.media("desk.png"), MediaKind::Image),
                    media(&w.media("clip.mp4"), MediaKind::Video),
                ],
            ),
        )
        .await
        .unwrap();

    let posts = threads.posts(JANE);
    let kinds: Vec<&str> = posts.iter().map(|p| p.media_type.as_str()).collect();
    assert_eq!(kinds, ["TEXT_POST", "IMAGE", "VIDEO", "CAROUSEL_ALBUM"]);
    assert_eq!(
        posts[0].text.as_deref(),
        Some("Book two is out\nhttps://example.com/book-two")
    );
    assert_eq!(posts[0].id, receipt.platform_post_id);
    assert_eq!(posts[0].permalink, permalink);
    assert_eq!(posts[1].media_urls, [w.media("cover.jpg")]);
    assert_eq!(posts[1].alt_texts, ["A blue book cover"]);
    assert_eq!(posts[2].media_urls, [w.media("clip.mp4")]);
    assert_eq!(posts[3].media_urls.len(), 3);
    assert_eq!(posts[3].text.as_deref(), Some("Three things"));

    // The sandbox serves the media it names.
    let served = reqwest::get(w.media("cover.jpg")).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
}

#[tokio::test]
async fn container_errors_and_the_polling_deadline_are_classified() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let threads = w.sandbox.threads();

    threads.fail_next_container("FAILED_PROCESSING_VIDEO");
    let error = w
        .adapter
        .publish(
            &grant,
            &post("clip", vec![media(&w.media("clip.mp4"), MediaKind::Video)]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::ContentRejected(r) if r.platform_message.as_deref().is_some_and(|m| m.contains("FAILED_PROCESSING_VIDEO"))),
        "{error:?}"
    );

    let error = w
        .adapter
        .publish(
            &grant,
            &post(
                "gone",
                vec![media(&w.media("missing.mp4"), MediaKind::Video)],
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::ContentRejected(r) if r.platform_message.as_deref().is_some_and(|m| m.contains("FAILED_DOWNLOADING_VIDEO"))),
        "{error:?}"
    );

    // A video that never finishes: the adapter gives up at its deadline, nothing public.
    threads.set_processing_polls(0, 10_000);
    let impatient = w
        .adapter_at(now())
        .with_polling(Duration::from_millis(5), Duration::from_millis(60));
    let error = impatient
        .publish(
            &grant,
            &post("slow", vec![media(&w.media("clip.mp4"), MediaKind::Video)]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::Unavailable { maybe_delivered: false, detail } if detail.contains("not ready")),
        "{error:?}"
    );
    assert!(threads.posts(JANE).is_empty());
}

#[tokio::test]
async fn a_used_up_publishing_quota_holds_the_connection_until_the_window_frees() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let threads = w.sandbox.threads();
    threads.set_publishing_quota(1);
    w.adapter
        .publish(&grant, &post("one", Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        w.adapter
            .publish(&grant, &post("two", Vec::new()))
            .await
            .unwrap_err(),
        PortError::RateLimited {
            retry_after: HOUR,
            scope: LimitScope::Connection,
        }
    );
    assert_eq!(threads.posts(JANE).len(), 1, "no container was published");

    threads.advance_clock(24 * HOUR);
    w.adapter
        .publish(&grant, &post("two", Vec::new()))
        .await
        .unwrap();
    assert_eq!(threads.posts(JANE).len(), 2);
}

#[tokio::test]
async fn every_graph_error_body_is_classified() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let threads = w.sandbox.threads();
    let hour = HOUR;
    let cases: Vec<(StatusCode, serde_json::Value, PortError)> = vec![
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Error validating access token: The session has been invalidated because the user changed their password.", "type": "OAuthException", "code": 190, "error_subcode": 460}),
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::PasswordChanged,
                "Error validating access token: The session has been invalidated because the user changed their password. (code 190, subcode 460)",
            )),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Session has expired", "type": "OAuthException", "code": 190, "error_subcode": 463}),
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::GrantExpired,
                "Session has expired (code 190, subcode 463)",
            )),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "The user has not authorized application", "type": "OAuthException", "code": 190, "error_subcode": 458}),
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::RevokedByUser,
                "The user has not authorized application (code 190, subcode 458)",
            )),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}),
            PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::AuthorizationInvalid,
                "Invalid OAuth access token (code 190)",
            )),
        ),
        (
            StatusCode::FORBIDDEN,
            json!({"message": "(#10) Application does not have permission for this action", "type": "OAuthException", "code": 10}),
            PortError::RequirementUnmet(Reason::with_platform_message(
                ReasonCode::PermissionRemoved,
                "(#10) Application does not have permission for this action (code 10)",
            )),
        ),
        (
            StatusCode::FORBIDDEN,
            json!({"message": "(#200) Permissions error", "type": "OAuthException", "code": 200}),
            PortError::RequirementUnmet(Reason::with_platform_message(
                ReasonCode::PermissionRemoved,
                "(#200) Permissions error (code 200)",
            )),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Blocked", "error_user_msg": "You're temporarily blocked from posting.", "type": "OAuthException", "code": 368}),
            PortError::RequirementUnmet(Reason::with_platform_message(
                ReasonCode::AccountSuspended,
                "You're temporarily blocked from posting. (code 368)",
            )),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4}),
            PortError::RateLimited {
                retry_after: hour,
                scope: LimitScope::Platform,
            },
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "(#17) User request limit reached", "type": "OAuthException", "code": 17}),
            PortError::RateLimited {
                retry_after: hour,
                scope: LimitScope::Connection,
            },
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "(#9) too many actions", "type": "OAuthException", "code": 9}),
            PortError::RateLimited {
                retry_after: hour,
                scope: LimitScope::Connection,
            },
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "code": 2, "is_transient": true}),
            PortError::Unavailable {
                detail: "HTTP 503 Service Unavailable: An unexpected error has occurred. Please retry your request later. (code 2)".into(),
                maybe_delivered: false,
            },
        ),
    ];
    for (status, error, expected) in cases {
        threads.answer_next_with(status, error.clone());
        assert_eq!(
            w.adapter.check(&grant).await.unwrap_err(),
            expected,
            "{error}"
        );
    }

    // On a content step, Threads' other refusals are the post's.
    for (code, message) in [
        (100, "(#100) Invalid parameter"),
        (506, "Duplicate status message"),
    ] {
        threads.answer_next_container_with(
            StatusCode::BAD_REQUEST,
            json!({"message": message, "type": "THApiException", "code": code}),
        );
        assert_eq!(
            w.adapter
                .publish(&grant, &post("hello", Vec::new()))
                .await
                .unwrap_err(),
            PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                format!("{message} (code {code})"),
            ))
        );
    }
    assert!(threads.posts(JANE).is_empty());
}

#[tokio::test]
async fn an_image_threads_cannot_download_fails_its_container() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let error = w
        .adapter
        .publish(
            &grant,
            &post("x", vec![media(&w.media("missing.jpg"), MediaKind::Image)]),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, PortError::ContentRejected(_)), "{error:?}");
    assert!(w.sandbox.threads().posts(JANE).is_empty());
}

#[tokio::test]
async fn platform_side_changes_reach_the_adapter_classified() {
    let w = world().await;
    let threads = w.sandbox.threads();

    let grant = w.connect(now()).await.grant;
    threads
        .remove_permission(JANE, "threads_content_publish")
        .unwrap();
    let error = w
        .adapter
        .publish(&grant, &post("hello", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::RequirementUnmet(r) if r.code == ReasonCode::PermissionRemoved),
        "{error:?}"
    );

    let grant = w.connect(now()).await.grant;
    threads
        .invalidate_tokens(JANE, 460, "Error validating access token: The session has been invalidated because the user changed their password.")
        .unwrap();
    assert!(matches!(
        w.adapter.check(&grant).await,
        Err(PortError::GrantDead(ref r)) if r.code == ReasonCode::PasswordChanged
    ));

    let grant = w.connect(now()).await.grant;
    threads.expire_tokens(JANE).unwrap();
    assert!(matches!(
        w.adapter.check(&grant).await,
        Err(PortError::GrantDead(ref r)) if r.code == ReasonCode::GrantExpired
    ));
    // The sandbox's clock says lapsed, the adapter's does not: Threads refuses the
    // refresh with 190/463 and the grant is dead.
    threads.advance_clock(25 * HOUR);
    assert!(matches!(
        w.adapter_at(grant.issued_at.saturating_add(25 * HOUR)).refresh(&grant).await,
        Err(PortError::GrantDead(ref r)) if r.code == ReasonCode::GrantExpired
    ));
}

#[tokio::test]
async fn rate_limits_and_passing_faults_are_classified() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let threads = w.sandbox.threads();

    threads.rate_limit_next(1, unix_now() + 5 * 60);
    match w.adapter.check(&grant).await.unwrap_err() {
        PortError::RateLimited { retry_after, scope } => {
            assert_eq!(scope, LimitScope::Connection);
            // Minutes, rounded up by Threads' header.
            assert!(
                (Duration::from_secs(4 * 60)..=Duration::from_secs(5 * 60)).contains(&retry_after),
                "{retry_after:?}"
            );
        }
        other => panic!("{other:?}"),
    }

    threads
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    assert!(matches!(
        w.adapter.check(&grant).await,
        Err(PortError::Unavailable {
            maybe_delivered: false,
            ..
        })
    ));
}

#[tokio::test]
async fn a_lost_answer_is_delivered_only_if_it_was_the_publishing_call() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let threads = w.sandbox.threads();
    // The quota read's answer is lost: nothing can have been published.
    threads.drop_next(1);
    assert!(matches!(
        w.adapter.publish(&grant, &post("hello", Vec::new())).await,
        Err(PortError::Unavailable {
            maybe_delivered: false,
            ..
        })
    ));
    assert!(threads.posts(JANE).is_empty());

    // threads_publish is processed and its answer lost: the post may exist (it does).
    threads.drop_next_publish();
    assert!(matches!(
        w.adapter.publish(&grant, &post("hello", Vec::new())).await,
        Err(PortError::Unavailable {
            maybe_delivered: true,
            ..
        })
    ));
    assert_eq!(threads.posts(JANE).len(), 1);
}

#[tokio::test]
async fn validation_names_each_refusal_before_scheduling() {
    let w = world().await;
    let adapter = &w.adapter;
    assert!(adapter.validate(&post("hello", Vec::new())).is_ok());

    let mut thread = post("hello", Vec::new());
    thread.kind = PostKind::Thread;
    assert_eq!(
        adapter.validate(&thread).unwrap_err(),
        [ContentError::KindNotOffered {
            kind: PostKind::Thread
        }]
    );
    assert_eq!(
        adapter.validate(&post("  ", Vec::new())).unwrap_err(),
        [ContentError::EmptyPost]
    );
    assert_eq!(
        adapter
            .validate(&post(&"a".repeat(MAX_TEXT + 1), Vec::new()))
            .unwrap_err(),
        [ContentError::TextTooLong {
            limit: MAX_TEXT,
            actual: MAX_TEXT + 1
        }]
    );
    // U+2B50 (a star emoji) counts its three UTF-8 bytes.
    let mut star = "a".repeat(MAX_TEXT - 1);
    star.push('\u{2B50}');
    assert_eq!(
        adapter.validate(&post(&star, Vec::new())).unwrap_err(),
        [ContentError::TextTooLong {
            limit: MAX_TEXT,
            actual: MAX_TEXT + 2
        }]
    );
    // Emoji count their UTF-8 bytes: 125 four-byte emoji are exactly 500.
    assert!(adapter
        .validate(&post(&"😀".repeat(125), Vec::new()))
        .is_ok());
    assert_eq!(
        adapter
            .validate(&post(&"😀".repeat(126), Vec::new()))
            .unwrap_err(),
        [ContentError::TextTooLong {
            limit: MAX_TEXT,
            actual: 504
        }]
    );
    let images: Vec<Media> = (0..21)
        .map(|i| media(&format!("https://example.com/{i}.jpg"), MediaKind::Image))
        .collect();
    assert_eq!(
        adapter.validate(&post("many", images)).unwrap_err(),
        [ContentError::TooManyImages {
            limit: 20,
            actual: 21
        }]
    );
    let mut described = media("https://example.com/a.jpg", MediaKind::Image);
    described.alt = Some("x".repeat(1001));
    assert_eq!(
        adapter.validate(&post("alt", vec![described])).unwrap_err(),
        [ContentError::AltTextTooLong {
            limit: 1000,
            actual: 1001
        }]
    );

    // Publishing an invalid post refuses it without creating anything.
    let grant = w.connect(now()).await.grant;
    assert!(matches!(
        adapter
            .publish(&grant, &post(&"a".repeat(MAX_TEXT + 1), Vec::new()))
            .await,
        Err(PortError::ContentRejected(_))
    ));
    assert!(w.sandbox.threads().posts(JANE).is_empty());
}

#[tokio::test]
async fn disconnect_says_threads_cannot_revoke() {
    let w = world().await;
    let grant: Grant = w.connect(now()).await.grant;
    assert_eq!(
        w.adapter.revoke(&grant).await.unwrap(),
        RevokeOutcome::NotSupported
    );
    // Nothing was revoked: the token still works.
    assert_eq!(w.adapter.check(&grant).await.unwrap().handle, JANE);
}

#[tokio::test]
async fn the_studio_connects_threads_and_disconnect_says_it_cannot_revoke() {
    use social_studio::config::Config;
    use social_studio::studio::{Studio, StudioOptions};

    let sandbox = Sandbox::start().await.unwrap();
    let data_dir = tempfile::TempDir::new().unwrap();
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        // The sandbox serves media on 127.0.0.1.
        allow_private_media_urls: true,
        ..Config::default()
    };
    config.use_sandbox_for_unconfigured(&sandbox.base_url());
    let studio = Studio::open(config, StudioOptions::default())
        .await
        .unwrap();
    assert!(studio.is_configured(Platform::Threads));

    let key = fixtures::key("jane", Platform::Threads);
    let start = studio.begin_connect(&key, false).await.unwrap();
    let location = consent(&start.authorize_url, JANE, "authorize")
        .await
        .unwrap();
    let callback = query(&location);
    let (_, entry) = studio
        .finish_connect(
            param(&callback, "state"),
            param(&callback, "code"),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(entry.status, "active");
    assert!(entry.renewable, "the engine renews Threads tokens itself");
    assert_eq!(entry.account.as_ref().unwrap().handle, JANE);
    assert_eq!(sandbox.threads().exchange_calls(), 1);

    let disconnected = studio.disconnect(&key, true).await.unwrap();
    assert_eq!(disconnected.revoke, "not_supported");
    assert!(
        disconnected
            .revoke_note
            .as_deref()
            .is_some_and(|n| n.contains("Threads")),
        "{disconnected:?}"
    );
    studio.shutdown().await;
}
