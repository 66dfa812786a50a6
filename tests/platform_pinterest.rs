//! The Pinterest adapter against the sandbox's Pinterest, over real loopback HTTP: the
//! consent a browser gives, then every call the actors make, with the failures Pinterest
//! answers. Each test starts its own sandbox on port 0.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use social_studio::platforms::pinterest::SCOPES;
use social_studio::platforms::{Adapter, ConnectError, Connected, ContentError, PinterestAdapter};
use social_studio::sandbox::browser::consent;
use social_studio_actors::{LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    AccountKind, Content, Media, MediaKind, Platform, Post, PostKind, Reason, ReasonCode,
    TargetKind, Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{
    described, now, param, query, settings, settings_with_secret, unix_now, StoppedClock,
};

/// The client id the sandbox's Pinterest registers, as the authorize request must carry it.
const CLIENT_ID: &str = "sandbox-pinterest-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/pinterest/callback";
const JANE: &str = "jane_writes";
const BOOK_COVERS: &str = "549755813001";
const WRITING_DESK: &str = "549755813002";
const OTHERS_BOARD: &str = "549755813003";
const GRANT_INVALID: &str = "The authorization grant is invalid";

type World = platform_support::World<PinterestAdapter>;

async fn world() -> World {
    World::start("pinterest", |settings| {
        PinterestAdapter::new(settings).unwrap()
    })
    .await
}

impl World {
    /// Authorize and consent as jane; returns the code.
    async fn code(&self, adapter: &PinterestAdapter) -> String {
        platform_support::code(adapter, JANE, REDIRECT_URI)
            .await
            .code
    }

    async fn connect(&self, now: Timestamp) -> Connected {
        platform_support::connect(&self.adapter, JANE, REDIRECT_URI, now)
            .await
            .unwrap()
    }

    fn assert_no_spent_token_sent(&self) {
        platform_support::assert_no_spent_token_sent(&self.sandbox.pinterest().token_requests());
    }
}

fn image(url: &str) -> Media {
    described(platform_support::image(url), "A blue book cover")
}

/// A valid pin to `board`.
fn pin(board: &str) -> Post {
    let mut post = platform_support::post(
        Platform::Pinterest,
        Content {
            text: "The cover of book two.".into(),
            title: Some("Book two".into()),
            links: vec!["https://example.com/book-two".into()],
            media: vec![image("https://example.com/cover.jpg")],
        },
    );
    post.kind = PostKind::Pin;
    post.target = Some(board.into());
    post
}

#[tokio::test]
async fn connect_identifies_the_account_and_lists_every_board() {
    let w = world().await;
    // One board per page, so that connecting must follow the bookmark.
    w.sandbox.pinterest().set_max_page_size(1);
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    let authorize = query(&request.url);
    assert!(request
        .url
        .starts_with(&format!("{}/pinterest/oauth/?", w.base())));
    assert_eq!(param(&authorize, "response_type"), Some("code"));
    assert_eq!(param(&authorize, "client_id"), Some(CLIENT_ID));
    assert_eq!(param(&authorize, "redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(param(&authorize, "scope"), Some(SCOPES.join(",").as_str()));
    assert_eq!(
        param(&authorize, "code_challenge"),
        None,
        "no PKCE on Pinterest"
    );
    assert!(request.pkce_verifier.is_none());

    let location = consent(&request.url, JANE, "authorize").await.unwrap();
    let code = param(&query(&location), "code").unwrap().to_owned();
    let at = Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
    let connected = w
        .adapter
        .connect(&code, None, REDIRECT_URI, at)
        .await
        .unwrap();

    let grant = &connected.grant;
    assert!(grant.refresh_token.is_some());
    assert_eq!(grant.issued_at, at);
    assert_eq!(
        grant.expires_at,
        Some(at.saturating_add(Duration::from_secs(30 * 24 * 3600)))
    );
    assert_eq!(
        grant.refresh_expires_at,
        Some(at.saturating_add(Duration::from_secs(60 * 24 * 3600)))
    );
    for scope in SCOPES {
        assert!(grant.scopes.iter().any(|s| s == scope), "{scope}");
    }
    assert_eq!(w.sandbox.pinterest().continuous_refresh_asked(), [true]);
    assert_eq!(connected.account.platform_id, "549755885175");
    assert_eq!(connected.account.handle, JANE);
    assert_eq!(connected.account.display_name, "Jane Writes");
    assert_eq!(connected.account.kind, AccountKind::Business);
    let picture = connected.account.picture.as_deref().expect("a picture");
    assert!(
        picture.starts_with("https://i.pinimg.com/sandbox/"),
        "{picture}"
    );
    let boards: Vec<(TargetKind, &str, &str)> = connected
        .targets
        .iter()
        .map(|t| (t.kind, t.id.as_str(), t.name.as_str()))
        .collect();
    assert_eq!(
        boards,
        [
            (TargetKind::Board, BOOK_COVERS, "Book covers"),
            (TargetKind::Board, WRITING_DESK, "Writing desk"),
        ]
    );
    assert!(!format!("{connected:?}").contains(grant.access_token.expose()));

    // A code is single-use.
    let again = w
        .adapter
        .connect(&code, None, REDIRECT_URI, at)
        .await
        .unwrap_err();
    assert_eq!(
        again,
        ConnectError::CodeRejected {
            platform_message: Some(GRANT_INVALID.into())
        }
    );
}

#[tokio::test]
async fn declining_and_bad_codes_are_named() {
    let w = world().await;
    let request = w.adapter.authorize("state-9", REDIRECT_URI).unwrap();
    let location = consent(&request.url, JANE, "cancel").await.unwrap();
    let callback = query(&location);
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
    assert_eq!(error.code(), "code_rejected");

    let misconfigured = PinterestAdapter::new(&settings_with_secret(
        &w.base(),
        "pinterest",
        "wrong-secret",
    ))
    .unwrap();
    let code = w.code(&misconfigured).await;
    assert_eq!(
        misconfigured
            .connect(&code, None, REDIRECT_URI, now())
            .await
            .unwrap_err(),
        ConnectError::AppCredentialsRejected {
            platform_message: Some("Authentication failed.".into())
        }
    );
}

#[tokio::test]
async fn refresh_stores_each_new_refresh_token_and_never_resends_a_spent_one() {
    let w = world().await;
    let issued = Timestamp::parse_rfc3339("2027-01-01T00:00:00Z").unwrap();
    let adapter = PinterestAdapter::new(&settings(&w.base(), "pinterest"))
        .unwrap()
        .with_clock(Arc::new(StoppedClock(issued)));
    let first = w.connect(now()).await.grant;

    let second = adapter.refresh(&first).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert!(second.refresh_token.is_some());
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.issued_at, issued);
    assert_eq!(
        second.refresh_expires_at,
        Some(issued.saturating_add(Duration::from_secs(60 * 24 * 3600)))
    );
    assert_eq!(second.scopes, first.scopes);
    assert_eq!(adapter.check(&second).await.unwrap().handle, JANE);

    let third = adapter.refresh(&second).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    assert_eq!(w.sandbox.pinterest().refresh_calls(), 2);
    w.assert_no_spent_token_sent();

    // What the sandbox (strictly) does with a spent token, which the engine never sends:
    // refused, and the whole grant with it.
    let dead = PortError::GrantDead(Reason::with_platform_message(
        ReasonCode::AuthorizationInvalid,
        GRANT_INVALID,
    ));
    assert_eq!(adapter.refresh(&first).await.unwrap_err(), dead);
    assert_eq!(adapter.refresh(&third).await.unwrap_err(), dead);
}

#[tokio::test]
async fn an_expired_access_token_is_unauthorized_until_refreshed_and_a_revoked_grant_is_dead() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.sandbox.pinterest().expire_access_tokens(JANE).unwrap();
    assert_eq!(
        w.adapter.check(&grant).await.unwrap_err(),
        PortError::Unauthorized
    );
    let renewed = w.adapter.refresh(&grant).await.unwrap();
    assert_eq!(w.adapter.check(&renewed).await.unwrap().handle, JANE);

    w.sandbox.pinterest().revoke_user_grants(JANE).unwrap();
    assert_eq!(
        w.adapter
            .publish(&renewed, &pin(BOOK_COVERS))
            .await
            .unwrap_err(),
        PortError::Unauthorized
    );
    assert_eq!(
        w.adapter.refresh(&renewed).await.unwrap_err(),
        PortError::GrantDead(Reason::with_platform_message(
            ReasonCode::AuthorizationInvalid,
            GRANT_INVALID
        ))
    );
    w.assert_no_spent_token_sent();
}

#[tokio::test]
async fn publishes_a_pin_from_an_image_url_to_the_chosen_board() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let receipt = w.adapter.publish(&grant, &pin(WRITING_DESK)).await.unwrap();
    assert_eq!(
        receipt.url.as_deref(),
        Some(
            format!(
                "https://www.pinterest.com/pin/{}/",
                receipt.platform_post_id
            )
            .as_str()
        )
    );
    let pins = w.sandbox.pinterest().pins(JANE);
    assert_eq!(pins.len(), 1);
    let created = &pins[0];
    assert_eq!(created.id, receipt.platform_post_id);
    assert_eq!(created.board_id, WRITING_DESK);
    assert_eq!(created.title.as_deref(), Some("Book two"));
    assert_eq!(
        created.description.as_deref(),
        Some("The cover of book two.")
    );
    assert_eq!(
        created.link.as_deref(),
        Some("https://example.com/book-two")
    );
    assert_eq!(created.alt_text.as_deref(), Some("A blue book cover"));
    assert_eq!(created.image_url, "https://example.com/cover.jpg");
}

#[tokio::test]
async fn pinterest_errors_are_classified() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    let pinterest = w.sandbox.pinterest();

    // 404: the board was deleted; retrying cannot help, and the reason names the board.
    pinterest.delete_board(BOOK_COVERS).unwrap();
    let error = w
        .adapter
        .publish(&grant, &pin(BOOK_COVERS))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::ContentRejected(r)
            if r.code == ReasonCode::ContentRejected
            && r.platform_message.as_deref().is_some_and(|m| m.contains(BOOK_COVERS)
                && m.contains("Board not found."))),
        "{error:?}"
    );

    // 403: a board the account may not write to.
    let error = w
        .adapter
        .publish(&grant, &pin(OTHERS_BOARD))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::RequirementUnmet(r)
            if r.code == ReasonCode::PermissionRemoved
            && r.platform_message.as_deref().is_some_and(|m| m.contains(OTHERS_BOARD))),
        "{error:?}"
    );

    // 400: Pinterest's own words. The adapter validates first, so only a post that slipped
    // past validation (here, a non-http image URL) reaches Pinterest to be refused.
    let mut bad_url = pin(WRITING_DESK);
    bad_url.content.media = vec![image("ftp://example.com/cover.jpg")];
    assert_eq!(
        w.adapter.publish(&grant, &bad_url).await.unwrap_err(),
        PortError::ContentRejected(Reason::with_platform_message(
            ReasonCode::ContentRejected,
            "media_source.url must be an http(s) URL."
        ))
    );

    // 5xx: a passing fault that delivered nothing.
    pinterest
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    assert!(matches!(
        w.adapter
            .publish(&grant, &pin(WRITING_DESK))
            .await
            .unwrap_err(),
        PortError::Unavailable {
            maybe_delivered: false,
            ..
        }
    ));
    pinterest.fail_next(1, StatusCode::BAD_GATEWAY).unwrap();
    assert!(matches!(
        w.adapter.refresh(&grant).await.unwrap_err(),
        PortError::Unavailable {
            maybe_delivered: true,
            ..
        }
    ));

    // A lost answer: the pin exists, the engine cannot know.
    pinterest.drop_next(1);
    assert!(matches!(
        w.adapter
            .publish(&grant, &pin(WRITING_DESK))
            .await
            .unwrap_err(),
        PortError::Unavailable {
            maybe_delivered: true,
            ..
        }
    ));
    assert_eq!(pinterest.pins(JANE).len(), 1);

    // The app's own credentials refused at refresh: an administrator's problem.
    let misconfigured = PinterestAdapter::new(&settings_with_secret(
        &w.base(),
        "pinterest",
        "wrong-secret",
    ))
    .unwrap();
    assert_eq!(
        misconfigured.refresh(&grant).await.unwrap_err(),
        PortError::RequirementUnmet(Reason::with_platform_message(
            ReasonCode::AppCredentialsRejected,
            "Authentication failed."
        ))
    );
    // Nothing was spent: the real client still refreshes.
    w.adapter.refresh(&grant).await.unwrap();
    w.assert_no_spent_token_sent();
}

#[tokio::test]
async fn rate_limits_wait_until_the_announced_reset() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    w.sandbox.pinterest().rate_limit_next(1, unix_now() + 120);
    let error = w
        .adapter
        .publish(&grant, &pin(BOOK_COVERS))
        .await
        .unwrap_err();
    let PortError::RateLimited { retry_after, scope } = error else {
        panic!("{error:?}");
    };
    assert_eq!(scope, LimitScope::Connection);
    assert!(
        (Duration::from_secs(115)..=Duration::from_secs(120)).contains(&retry_after),
        "{retry_after:?}"
    );
    assert!(w.sandbox.pinterest().pins(JANE).is_empty());
    w.adapter.publish(&grant, &pin(BOOK_COVERS)).await.unwrap();
}

#[tokio::test]
async fn revoke_is_not_supported_for_user_tokens() {
    let w = world().await;
    let grant = w.connect(now()).await.grant;
    assert_eq!(
        w.adapter.revoke(&grant).await.unwrap(),
        RevokeOutcome::NotSupported
    );
    // Nothing happened to the grant.
    assert_eq!(w.adapter.check(&grant).await.unwrap().handle, JANE);
}

#[tokio::test]
async fn validation_names_every_refusal() {
    let w = world().await;
    let refusals = |post: &Post| -> Vec<&'static str> {
        match w.adapter.validate(post) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(ContentError::code).collect(),
        }
    };
    let edit = |change: &dyn Fn(&mut Post)| {
        let mut post = pin(BOOK_COVERS);
        change(&mut post);
        post
    };
    let cases: Vec<(Post, Vec<&str>)> = vec![
        (pin(BOOK_COVERS), vec![]),
        (edit(&|p| p.content.title = Some("t".repeat(100))), vec![]),
        (
            edit(&|p| p.content.title = Some("t".repeat(101))),
            vec!["title_too_long"],
        ),
        (edit(&|p| p.content.text = "é".repeat(800)), vec![]),
        (
            edit(&|p| p.content.text = "é".repeat(801)),
            vec!["text_too_long"],
        ),
        (
            edit(&|p| p.content.links = vec![format!("https://e.com/{}", "a".repeat(2048))]),
            vec!["link_too_long"],
        ),
        (
            edit(&|p| p.content.media[0].alt = Some("a".repeat(501))),
            vec!["alt_text_too_long"],
        ),
        (edit(&|p| p.target = None), vec!["target_required"]),
        (edit(&|p| p.content.media.clear()), vec!["media_required"]),
        (
            edit(&|p| p.content.media[0].kind = MediaKind::Video),
            vec!["video_not_supported"],
        ),
        (
            edit(&|p| p.content.media.push(image("https://example.com/2.jpg"))),
            vec!["too_many_images"],
        ),
        (
            edit(&|p| p.kind = PostKind::Feed),
            vec!["not_offered_by_platform"],
        ),
        (
            edit(&|p| {
                p.target = None;
                p.content.media.clear();
            }),
            vec!["target_required", "media_required"],
        ),
    ];
    for (post, expected) in cases {
        assert_eq!(refusals(&post), expected, "{:?}", post.content);
    }
    assert_eq!(
        w.adapter
            .validate(&edit(&|p| p.content.title = Some("t".repeat(101))))
            .unwrap_err(),
        [ContentError::TitleTooLong {
            limit: 100,
            actual: 101
        }]
    );

    // Publishing checks again, so an invalid pin never reaches Pinterest.
    let grant = w.connect(now()).await.grant;
    let error = w
        .adapter
        .publish(&grant, &edit(&|p| p.target = None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::ContentRejected(r) if r.code == ReasonCode::ContentRejected),
        "{error:?}"
    );
    assert!(w.sandbox.pinterest().pins(JANE).is_empty());
}
