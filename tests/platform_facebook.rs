//! The Facebook Page adapter against the sandbox's Graph API, over real loopback HTTP:
//! Facebook Login, Page targets with their tokens, `debug_token` checks, publishing to
//! a Page, Graph's error codes and usage headers, and revocation. Each test starts its
//! own sandbox on port 0.

use std::time::Duration;

use social_studio::platforms::facebook::SCOPES;
use social_studio::platforms::{Adapter, ConnectError, Connected, ContentError, FacebookAdapter};
use social_studio::sandbox::browser::consent;
use social_studio::sandbox::meta::{FACEBOOK_CLIENT_ID, LONG_LIVED_SECS};
use social_studio::sandbox::{GraphFault, MetaControl};
use social_studio_actors::{LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    Content, Media, MediaKind, Platform, Post, PostKind, ReasonCode, TargetKind, Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{image, param, query, settings, settings_with_secret};

const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/facebook/callback";
const PUBLISHER: &str = "meta_publisher";
const JANE_PAGE: &str = "2001";

type World = platform_support::World<FacebookAdapter>;

async fn world() -> World {
    World::start("facebook", |settings| {
        FacebookAdapter::new(settings).unwrap()
    })
    .await
}

fn at() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
}

impl World {
    fn meta(&self) -> MetaControl {
        self.sandbox.meta()
    }

    fn media(&self, name: &str) -> String {
        MetaControl::media_url(&self.sandbox.base_url(), "facebook", name)
    }

    async fn try_connect(&self, username: &str) -> Result<Connected, ConnectError> {
        platform_support::connect(&self.adapter, username, REDIRECT_URI, at()).await
    }

    async fn connect(&self) -> Connected {
        self.try_connect(PUBLISHER).await.unwrap()
    }
}

fn page_post(content: Content) -> Post {
    let mut post = platform_support::post(Platform::Facebook, content);
    post.kind = PostKind::Feed;
    post.target = Some(JANE_PAGE.into());
    post
}

#[tokio::test]
async fn connect_offers_the_pages_with_their_tokens_and_no_expiry() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    assert!(request.url.starts_with(&format!(
        "{}/facebook/v25.0/dialog/oauth?",
        w.sandbox.base_url()
    )));
    assert_eq!(
        param(&query(&request.url), "scope"),
        Some(SCOPES.join(",").as_str())
    );
    assert_eq!(param(&query(&request.url), "response_type"), Some("code"));
    assert_eq!(
        param(&query(&request.url), "client_id"),
        Some(FACEBOOK_CLIENT_ID)
    );
    assert!(
        request.pkce_verifier.is_none(),
        "no PKCE in Facebook Login's code flow"
    );
    assert_eq!(param(&query(&request.url), "code_challenge"), None);

    let connected = w.connect().await;
    assert_eq!(connected.account.platform_id, "1001");
    assert_eq!(connected.account.display_name, "Jane Writes");
    // `picture` is asked for on `/me` (the user's; the Pages are the targets).
    let picture = connected.account.picture.as_deref().expect("a picture");
    assert!(
        picture.starts_with("https://platform-lookaside.fbsbx.com/platform/profilepic/"),
        "{picture}"
    );
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].kind, TargetKind::Page);
    assert_eq!(connected.targets[0].id, JANE_PAGE);
    let grant = &connected.grant;
    assert_eq!(grant.refresh_token, None);
    assert_eq!(grant.expires_at, None, "Page tokens do not expire");
    assert_eq!(grant.target_tokens.len(), 1);
    assert_eq!(grant.target_tokens[0].target_id, JANE_PAGE);
    assert_eq!(grant.target_tokens[0].expires_at, None);
    assert_ne!(grant.target_tokens[0].token, grant.access_token);
    for scope in SCOPES {
        assert!(grant.scopes.iter().any(|s| s == scope), "{scope}");
    }
    assert!(!w.adapter.renewable(&grant.facts()));
    assert!(!format!("{connected:?}").contains(grant.access_token.expose()));
    // Short-lived, long-lived, and the Page token from /me/accounts.
    assert_eq!(
        w.meta().live_tokens(PUBLISHER, FACEBOOK_CLIENT_ID).unwrap(),
        3
    );
    // The grant keeps the long-lived user token (about 60 days), not the short-lived one,
    // and the Page token it listed does not expire.
    let lifetime = w
        .meta()
        .token_lifetime(grant.access_token.expose())
        .unwrap()
        .unwrap();
    assert!(lifetime > LONG_LIVED_SECS - 60, "{lifetime}");
    assert_eq!(
        w.meta()
            .token_lifetime(grant.target_tokens[0].token.expose()),
        Some(None)
    );

    // check asks debug_token about the Page token.
    let debug = w
        .adapter
        .check(grant)
        .await
        .expect("the Page token is valid");
    assert_eq!(debug.platform_id, "1001");
}

#[tokio::test]
async fn every_page_of_me_accounts_is_offered_not_only_the_first_answer() {
    let w = world().await;
    let (second, _) = w
        .meta()
        .add_page(PUBLISHER, "Jane's Backlist", None)
        .unwrap();
    let (third, _) = w.meta().add_page(PUBLISHER, "Jane's Events", None).unwrap();
    // Graph answers one Page at a time; the rest sit behind paging.cursors.after.
    w.meta().set_page_size(1);
    let connected = w.connect().await;
    let ids: Vec<&str> = connected.targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [JANE_PAGE, second.as_str(), third.as_str()]);
    let tokens: Vec<&str> = connected
        .grant
        .target_tokens
        .iter()
        .map(|t| t.target_id.as_str())
        .collect();
    assert_eq!(
        tokens, ids,
        "each Page from a later answer brings its token"
    );
    // The Page from the last answer is publishable with that token.
    let mut post = page_post(Content {
        text: "Signing at the library on Saturday.".into(),
        ..Content::default()
    });
    post.target = Some(third.clone());
    w.adapter.publish(&connected.grant, &post).await.unwrap();
    assert_eq!(w.meta().page_posts(&third).len(), 1);
}

#[tokio::test]
async fn the_long_lived_exchange_gives_sixty_days() {
    let w = world().await;
    let connected = w.connect().await;
    let renewed = w.adapter.refresh(&connected.grant).await.unwrap();
    assert_ne!(renewed.access_token, connected.grant.access_token);
    assert_eq!(renewed.target_tokens, connected.grant.target_tokens);
    let lifetime = w
        .meta()
        .token_lifetime(renewed.access_token.expose())
        .unwrap()
        .unwrap();
    assert!(lifetime > LONG_LIVED_SECS - 60, "{lifetime}");
    // An invalidated user token cannot be exchanged: the grant is dead, by name.
    w.meta().invalidate_tokens(PUBLISHER, Some(460)).unwrap();
    match w.adapter.refresh(&renewed).await {
        Err(PortError::GrantDead(r)) => assert_eq!(r.code, ReasonCode::PasswordChanged),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn each_requirement_refusal_is_named() {
    let w = world().await;
    let refused = |r: Result<Connected, ConnectError>| match r {
        Err(ConnectError::RequirementUnmet(reason)) => reason.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(w.try_connect("meta_personal").await),
        ReasonCode::PersonalProfileNotAllowed
    );
    assert_eq!(
        refused(w.try_connect("meta_analyst").await),
        ReasonCode::NotPageAdmin
    );
    w.meta().decline_scope(PUBLISHER, "pages_manage_posts");
    let missing = w.try_connect(PUBLISHER).await;
    assert_eq!(refused(missing.clone()), ReasonCode::PermissionRemoved);
    assert!(format!("{missing:?}").contains("pages_manage_posts"));
}

#[tokio::test]
async fn declined_used_and_misconfigured_codes_are_named() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    let location = consent(&request.url, PUBLISHER, "cancel").await.unwrap();
    assert_eq!(param(&query(&location), "error"), Some("access_denied"));
    assert_eq!(param(&query(&location), "state"), Some("state-1"));
    assert_eq!(
        ConnectError::from_callback("access_denied", None).code(),
        "access_denied"
    );

    let request = w.adapter.authorize("state-2", REDIRECT_URI).unwrap();
    let location = consent(&request.url, PUBLISHER, "authorize").await.unwrap();
    let code = param(&query(&location), "code").unwrap().to_owned();
    w.adapter
        .connect(&code, None, REDIRECT_URI, at())
        .await
        .unwrap();
    let again = w.adapter.connect(&code, None, REDIRECT_URI, at()).await;
    assert!(
        matches!(&again, Err(ConnectError::CodeRejected { platform_message: Some(m) }) if m.contains("36009")),
        "{again:?}"
    );

    let wrong = FacebookAdapter::new(&settings_with_secret(
        &w.sandbox.base_url(),
        "facebook",
        "wrong",
    ))
    .unwrap();
    let request = wrong.authorize("state-3", REDIRECT_URI).unwrap();
    let location = consent(&request.url, PUBLISHER, "authorize").await.unwrap();
    let code = param(&query(&location), "code").unwrap().to_owned();
    let refused = wrong.connect(&code, None, REDIRECT_URI, at()).await;
    assert!(
        matches!(refused, Err(ConnectError::AppCredentialsRejected { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn publishes_text_links_one_photo_and_several_photos_to_the_page() {
    let w = world().await;
    let grant = w.connect().await.grant;

    let text = page_post(Content {
        text: "Book two is out.".into(),
        links: vec!["https://example.com/book-two".into()],
        ..Content::default()
    });
    assert_eq!(w.adapter.validate(&text), Ok(()));
    let receipt = w.adapter.publish(&grant, &text).await.unwrap();
    assert!(receipt.platform_post_id.starts_with("2001_"));
    assert_eq!(
        receipt.url.as_deref(),
        Some(format!("https://www.facebook.com/{}", receipt.platform_post_id).as_str())
    );

    let one = page_post(Content {
        text: "The cover.".into(),
        media: vec![image(w.media("cover.jpg"))],
        ..Content::default()
    });
    w.adapter.publish(&grant, &one).await.unwrap();

    let many = page_post(Content {
        text: "Front and back.".into(),
        media: vec![image(w.media("cover.jpg")), image(w.media("back.jpg"))],
        ..Content::default()
    });
    let receipt = w.adapter.publish(&grant, &many).await.unwrap();

    let posts = w.meta().page_posts(JANE_PAGE);
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[0].message, "Book two is out.");
    assert_eq!(
        posts[0].link.as_deref(),
        Some("https://example.com/book-two")
    );
    assert_eq!(posts[1].photos, [w.media("cover.jpg")]);
    assert_eq!(posts[1].message, "The cover.");
    assert_eq!(posts[2].id, receipt.platform_post_id);
    assert_eq!(posts[2].photos, [w.media("cover.jpg"), w.media("back.jpg")]);
}

#[tokio::test]
async fn a_page_without_a_token_and_refused_content_are_classified() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let mut other = page_post(Content {
        text: "Elsewhere.".into(),
        ..Content::default()
    });
    other.target = Some("2002".into());
    match w.adapter.publish(&grant, &other).await {
        Err(PortError::RequirementUnmet(reason)) => {
            assert_eq!(reason.code, ReasonCode::NotPageAdmin)
        }
        other => panic!("{other:?}"),
    }
    let post = page_post(Content {
        text: "Once.".into(),
        ..Content::default()
    });
    w.adapter.publish(&grant, &post).await.unwrap();
    match w.adapter.publish(&grant, &post).await {
        Err(PortError::ContentRejected(reason)) => {
            assert!(reason.platform_message.unwrap().contains("506"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_code_190_subcode_names_its_reason() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let post = page_post(Content {
        text: "Hello.".into(),
        ..Content::default()
    });
    for (subcode, reason) in [
        (Some(458), ReasonCode::RevokedByUser),
        (Some(459), ReasonCode::AccountCheckpointed),
        (Some(460), ReasonCode::PasswordChanged),
        (Some(463), ReasonCode::GrantExpired),
        (Some(464), ReasonCode::AccountUnconfirmed),
        (Some(467), ReasonCode::AuthorizationInvalid),
        (None, ReasonCode::AuthorizationInvalid),
    ] {
        w.meta().fail_next(GraphFault::token(subcode));
        match w.adapter.publish(&grant, &post).await {
            Err(PortError::GrantDead(r)) => {
                assert_eq!(r.code, reason, "{subcode:?}");
                assert!(r.platform_message.unwrap().contains("access token"));
            }
            other => panic!("{subcode:?}: {other:?}"),
        }
    }
    assert!(w.meta().page_posts(JANE_PAGE).is_empty());
}

#[tokio::test]
async fn check_reads_debug_token_and_finds_a_changed_password() {
    let w = world().await;
    let grant = w.connect().await.grant;
    w.adapter.check(&grant).await.unwrap();
    w.meta().invalidate_tokens(PUBLISHER, Some(460)).unwrap();
    match w.adapter.check(&grant).await {
        Err(PortError::GrantDead(r)) => {
            assert_eq!(r.code, ReasonCode::PasswordChanged);
            assert!(r.platform_message.unwrap().contains("password"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn permission_errors_are_requirements_unmet() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let post = page_post(Content {
        text: "Hello.".into(),
        ..Content::default()
    });
    for code in [10, 200, 299] {
        w.meta()
            .fail_next(GraphFault::new(403, code, None, "(#200) Permissions error"));
        match w.adapter.publish(&grant, &post).await {
            Err(PortError::RequirementUnmet(r)) => {
                assert_eq!(r.code, ReasonCode::PermissionRemoved)
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn rate_limit_codes_and_usage_headers_make_the_queue_back_off() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let post = page_post(Content {
        text: "Hello.".into(),
        ..Content::default()
    });
    for (code, scope) in [
        (4, LimitScope::Platform),
        (17, LimitScope::Connection),
        (32, LimitScope::Connection),
        (613, LimitScope::Connection),
        (80_001, LimitScope::Connection),
    ] {
        w.meta().fail_next(GraphFault::new(
            400,
            code,
            None,
            "(#4) Application request limit reached",
        ));
        match w.adapter.publish(&grant, &post).await {
            Err(PortError::RateLimited {
                retry_after,
                scope: s,
            }) => {
                assert_eq!(s, scope, "{code}");
                assert!(retry_after > Duration::ZERO);
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    // The Business Use Case header says how long, in minutes.
    w.meta().fail_next(
        GraphFault::new(400, 80_001, None, "(#80001) There have been too many calls to this Page account.")
            .with_header(
                "X-Business-Use-Case-Usage",
                r#"{"2001":[{"type":"pages","call_count":100,"total_cputime":12,"total_time":40,"estimated_time_to_regain_access":17}]}"#,
            ),
    );
    match w.adapter.publish(&grant, &post).await {
        Err(PortError::RateLimited { retry_after, scope }) => {
            assert_eq!(retry_after, Duration::from_secs(17 * 60));
            assert_eq!(scope, LimitScope::Connection);
        }
        other => panic!("{other:?}"),
    }
    w.meta().fail_next(
        GraphFault::new(400, 32, None, "(#32) Page request limit reached")
            .with_header("X-Page-Usage", r#"{"call_count":100,"total_cputime":3,"total_time":9,"estimated_time_to_regain_access":3}"#),
    );
    match w.adapter.publish(&grant, &post).await {
        Err(PortError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Duration::from_secs(3 * 60))
        }
        other => panic!("{other:?}"),
    }
    // Nothing was published while limited; the next call goes through.
    assert!(w.meta().page_posts(JANE_PAGE).is_empty());
    w.adapter.publish(&grant, &post).await.unwrap();
}

#[tokio::test]
async fn usage_at_its_limit_on_a_successful_answer_holds_off_the_next_publish() {
    let w = world().await;
    let grant = w.connect().await.grant;
    // Graph refuses the same message twice in a row (#506): each post says something new.
    let post = |n: u32| {
        page_post(Content {
            text: format!("News, part {n}."),
            ..Content::default()
        })
    };
    // Below 100% nothing is held.
    w.meta().set_usage_headers(&[(
        "X-App-Usage",
        r#"{"call_count":88,"total_cputime":20,"total_time":31}"#,
    )]);
    w.adapter.publish(&grant, &post(1)).await.unwrap();
    w.adapter.publish(&grant, &post(2)).await.unwrap();
    // The Page's usage reaches its limit on a publish that succeeds, with Meta's estimate:
    // the next publish with that Page is held for it, without a call.
    w.meta().set_usage_headers(&[(
        "X-Business-Use-Case-Usage",
        r#"{"2001":[{"type":"pages","call_count":100,"total_cputime":9,"total_time":14,"estimated_time_to_regain_access":12}]}"#,
    )]);
    w.adapter.publish(&grant, &post(3)).await.unwrap();
    w.meta().set_usage_headers(&[]);
    match w.adapter.publish(&grant, &post(4)).await {
        Err(PortError::RateLimited { retry_after, scope }) => {
            assert_eq!(scope, LimitScope::Connection);
            assert!(
                retry_after <= Duration::from_secs(12 * 60)
                    && retry_after > Duration::from_secs(11 * 60),
                "{retry_after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.meta().page_posts(JANE_PAGE).len(),
        3,
        "the held post was not sent"
    );

    // The app's own usage at 100% without an estimate holds every connection of the app,
    // for the default wait.
    let other = FacebookAdapter::new(&settings(&w.sandbox.base_url(), "facebook")).unwrap();
    w.meta().set_usage_headers(&[(
        "X-App-Usage",
        r#"{"call_count":100,"total_cputime":40,"total_time":52}"#,
    )]);
    other.publish(&grant, &post(5)).await.unwrap();
    w.meta().set_usage_headers(&[]);
    match other.publish(&grant, &post(6)).await {
        Err(PortError::RateLimited { retry_after, scope }) => {
            assert_eq!(scope, LimitScope::Platform);
            assert!(retry_after > Duration::ZERO, "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.meta().page_posts(JANE_PAGE).len(), 4);
}

#[tokio::test]
async fn a_server_error_is_a_passing_fault() {
    let w = world().await;
    let grant = w.connect().await.grant;
    w.meta().fail_next(GraphFault::new(
        500,
        2,
        None,
        "An unexpected error has occurred. Please retry your request later.",
    ));
    let post = page_post(Content {
        text: "Hello.".into(),
        ..Content::default()
    });
    assert!(matches!(
        w.adapter.publish(&grant, &post).await,
        Err(PortError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn revoke_deletes_the_permissions_and_ends_the_page_tokens() {
    let w = world().await;
    let grant = w.connect().await.grant;
    assert_eq!(
        w.adapter.revoke(&grant).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        w.meta().revocations(),
        [(FACEBOOK_CLIENT_ID.to_owned(), "1001".to_owned())]
    );
    assert_eq!(
        w.meta().live_tokens(PUBLISHER, FACEBOOK_CLIENT_ID).unwrap(),
        0
    );
    match w.adapter.check(&grant).await {
        Err(PortError::GrantDead(r)) => assert_eq!(r.code, ReasonCode::RevokedByUser),
        other => panic!("{other:?}"),
    }
    // Revoking again is harmless: the grant is already gone.
    assert_eq!(
        w.adapter.revoke(&grant).await.unwrap(),
        RevokeOutcome::Revoked
    );
}

#[test]
fn validation_names_every_refusal() {
    let adapter =
        FacebookAdapter::new(&settings_with_secret("http://127.0.0.1:9", "facebook", "s")).unwrap();
    let mut post = page_post(Content::default());
    post.target = None;
    post.kind = PostKind::Story;
    let errors = adapter.validate(&post).unwrap_err();
    assert!(errors.contains(&ContentError::EmptyPost));
    assert!(errors.contains(&ContentError::KindNotOffered {
        kind: PostKind::Story
    }));
    assert!(errors.contains(&ContentError::TargetRequired {
        target: "Page".into()
    }));

    let mut video = page_post(Content {
        text: "x".repeat(63_207),
        media: vec![Media {
            url: "https://example.com/v.mp4".into(),
            kind: MediaKind::Video,
            alt: None,
        }],
        ..Content::default()
    });
    let errors = adapter.validate(&video).unwrap_err();
    assert!(errors.contains(&ContentError::VideoNotSupported));
    assert!(errors.contains(&ContentError::TextTooLong {
        limit: 63_206,
        actual: 63_207
    }));
    video.content = Content {
        media: (0..11)
            .map(|i| image(format!("https://example.com/{i}.jpg")))
            .collect(),
        ..Content::default()
    };
    assert_eq!(
        adapter.validate(&video),
        Err(vec![ContentError::TooManyImages {
            limit: 10,
            actual: 11
        }])
    );
}
