//! The Instagram adapter (Instagram API with Facebook Login) against the sandbox's Graph
//! API, over real loopback HTTP: connect and its refusals, professional accounts as
//! targets, the container flow for feed images, carousels, Reels and Stories, container
//! polling, the publishing limit, validation, and that the Instagram grant outlives a
//! disconnected Facebook connection.

use std::time::Duration;

use social_studio::platforms::instagram::{POLL_DEADLINE, SCOPES};
use social_studio::platforms::{
    Adapter, ConnectError, Connected, ContentError, FacebookAdapter, InstagramAdapter,
};
use social_studio::sandbox::meta::{FACEBOOK_CLIENT_ID, INSTAGRAM_CLIENT_ID, LONG_LIVED_SECS};
use social_studio::sandbox::{GraphFault, MetaControl};
use social_studio_actors::{LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    Content, Media, MediaKind, Platform, Post, PostKind, ReasonCode, TargetKind, Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{param, query, settings, settings_with_secret};

const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/instagram/callback";
const PUBLISHER: &str = "meta_publisher";
const BUSINESS_IG: &str = "3001";
const CREATOR_IG: &str = "3002";

type World = platform_support::World<InstagramAdapter>;

async fn world() -> World {
    World::start("instagram", |settings| {
        InstagramAdapter::new(settings).unwrap()
    })
    .await
}

fn at() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
}

async fn connect_with<A: Adapter>(adapter: &A, username: &str) -> Result<Connected, ConnectError> {
    platform_support::connect(adapter, username, REDIRECT_URI, at()).await
}

impl World {
    fn meta(&self) -> MetaControl {
        self.sandbox.meta()
    }

    fn media(&self, name: &str, kind: MediaKind) -> Media {
        Media {
            url: MetaControl::media_url(&self.sandbox.base_url(), "instagram", name),
            kind,
            alt: None,
        }
    }

    fn image(&self, name: &str) -> Media {
        self.media(name, MediaKind::Image)
    }

    fn video(&self) -> Media {
        self.media("trailer.mp4", MediaKind::Video)
    }

    async fn connect(&self, username: &str) -> Connected {
        connect_with(&self.adapter, username).await.unwrap()
    }
}

fn ig_post(target: &str, kind: PostKind, text: &str, media: Vec<Media>) -> Post {
    let mut post = platform_support::post(
        Platform::Instagram,
        Content {
            text: text.into(),
            media,
            ..Content::default()
        },
    );
    post.kind = kind;
    post.target = Some(target.into());
    post
}

#[tokio::test]
async fn connect_offers_the_professional_account_with_a_sixty_day_grant() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    assert_eq!(
        param(&query(&request.url), "scope"),
        Some(SCOPES.join(",").as_str())
    );
    assert!(request.pkce_verifier.is_none());
    let connected = w.connect(PUBLISHER).await;
    assert_eq!(connected.account.platform_id, "1001");
    assert!(connected
        .account
        .picture
        .as_deref()
        .is_some_and(|p| p.contains("asid=1001")));
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].id, BUSINESS_IG);
    assert_eq!(connected.targets[0].kind, TargetKind::Profile);
    assert!(connected.targets[0].name.contains("@janewrites"));
    let grant = &connected.grant;
    assert_eq!(grant.refresh_token, None);
    assert_eq!(
        grant.expires_at,
        Some(at().saturating_add(Duration::from_secs(LONG_LIVED_SECS))),
        "the long-lived token's lifetime, read from the exchange"
    );
    assert!(grant.target_tokens.is_empty());
    assert!(
        !w.adapter.renewable(&grant.facts()),
        "warned about, not renewed"
    );
    assert_eq!(w.adapter.check(grant).await.unwrap().platform_id, "1001");
}

#[tokio::test]
async fn professional_accounts_behind_later_pages_of_me_accounts_are_offered() {
    let w = world().await;
    let (_, second) = w
        .meta()
        .add_page(PUBLISHER, "Jane's Backlist", Some("janebacklist"))
        .unwrap();
    w.meta().add_page(PUBLISHER, "No Instagram", None).unwrap();
    let (_, fourth) = w
        .meta()
        .add_page(PUBLISHER, "Jane's Events", Some("janeevents"))
        .unwrap();
    w.meta().set_page_size(2);
    let connected = w.connect(PUBLISHER).await;
    let ids: Vec<String> = connected.targets.iter().map(|t| t.id.clone()).collect();
    assert_eq!(
        ids,
        [BUSINESS_IG.to_string(), second.unwrap(), fourth.unwrap()],
        "a Page without Instagram is skipped; the others, on both answers, are offered"
    );
    assert!(connected.targets[2].name.contains("@janeevents"));
}

#[tokio::test]
async fn each_requirement_refusal_is_named() {
    let w = world().await;
    let code = |r: Result<Connected, ConnectError>| match r {
        Err(ConnectError::RequirementUnmet(reason)) => reason.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(connect_with(&w.adapter, "meta_personal_ig").await),
        ReasonCode::InstagramNotProfessional
    );
    assert_eq!(
        code(connect_with(&w.adapter, "meta_unlinked").await),
        ReasonCode::InstagramNotLinkedToPage
    );
    assert_eq!(
        code(connect_with(&w.adapter, "meta_personal").await),
        ReasonCode::InstagramNotLinkedToPage
    );
    w.meta()
        .decline_scope(PUBLISHER, "instagram_content_publish");
    assert_eq!(
        code(connect_with(&w.adapter, PUBLISHER).await),
        ReasonCode::PermissionRemoved
    );
}

#[tokio::test(start_paused = true)]
async fn publishes_an_image_polling_the_container_until_finished() {
    let w = world().await;
    let grant = w.connect(PUBLISHER).await.grant;
    w.meta().set_polls_to_finish(3);
    let post = ig_post(
        BUSINESS_IG,
        PostKind::Feed,
        "The cover. #books",
        vec![w.image("cover.jpg")],
    );
    assert_eq!(w.adapter.validate(&post), Ok(()));
    let receipt = w.adapter.publish(&grant, &post).await.unwrap();
    assert!(receipt
        .url
        .unwrap()
        .starts_with("https://www.instagram.com/p/"));
    assert_eq!(
        w.meta().container_polls(),
        4,
        "three IN_PROGRESS, then FINISHED"
    );
    let media = w.meta().instagram_media(BUSINESS_IG);
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].id, receipt.platform_post_id);
    assert_eq!(media[0].media_type, "IMAGE");
    assert_eq!(media[0].caption, "The cover. #books");
}

#[tokio::test(start_paused = true)]
async fn publishes_carousels_reels_and_stories() {
    let w = world().await;
    let grant = w.connect(PUBLISHER).await.grant;
    let carousel = ig_post(
        BUSINESS_IG,
        PostKind::Feed,
        "Front, back, trailer.",
        vec![w.image("cover.jpg"), w.image("back.jpg"), w.video()],
    );
    w.adapter.publish(&grant, &carousel).await.unwrap();
    let reel = ig_post(BUSINESS_IG, PostKind::Reel, "The trailer.", vec![w.video()]);
    w.adapter.publish(&grant, &reel).await.unwrap();
    let story = ig_post(BUSINESS_IG, PostKind::Story, "", vec![w.image("spine.jpg")]);
    w.adapter.publish(&grant, &story).await.unwrap();

    let media = w.meta().instagram_media(BUSINESS_IG);
    let types: Vec<&str> = media.iter().map(|m| m.media_type.as_str()).collect();
    assert_eq!(types, ["CAROUSEL", "REELS", "STORIES"]);
    assert_eq!(media[0].urls.len(), 3);
    assert_eq!(media[1].caption, "The trailer.");
}

#[tokio::test(start_paused = true)]
async fn stories_are_refused_for_creator_accounts_by_name() {
    let w = world().await;
    let grant = w.connect("meta_creator").await.grant;
    let story = ig_post(CREATOR_IG, PostKind::Story, "", vec![w.image("spine.jpg")]);
    match w.adapter.publish(&grant, &story).await {
        Err(PortError::ContentRejected(reason)) => {
            assert_eq!(reason.code, ReasonCode::NotOfferedByPlatform);
            assert!(reason
                .platform_message
                .unwrap()
                .contains("business accounts"));
        }
        other => panic!("{other:?}"),
    }
    // A creator's feed image is fine.
    let feed = ig_post(
        CREATOR_IG,
        PostKind::Feed,
        "Hi.",
        vec![w.image("cover.jpg")],
    );
    w.adapter.publish(&grant, &feed).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_and_stuck_containers_are_classified() {
    let w = world().await;
    let grant = w.connect(PUBLISHER).await.grant;
    let post = ig_post(BUSINESS_IG, PostKind::Feed, "x", vec![w.image("cover.jpg")]);
    w.meta().fail_next_containers(1);
    match w.adapter.publish(&grant, &post).await {
        Err(PortError::ContentRejected(reason)) => {
            assert!(reason.platform_message.unwrap().contains("2207026"))
        }
        other => panic!("{other:?}"),
    }
    // A container that never finishes: the adapter gives up at its deadline, in virtual
    // time, having published nothing.
    w.meta().set_polls_to_finish(u32::MAX);
    let started = tokio::time::Instant::now();
    match w.adapter.publish(&grant, &post).await {
        Err(PortError::Unavailable {
            maybe_delivered, ..
        }) => assert!(!maybe_delivered),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() <= POLL_DEADLINE);
    assert!(started.elapsed() >= POLL_DEADLINE / 2);
    assert!(w.meta().instagram_media(BUSINESS_IG).is_empty());
    // A media URL Meta cannot fetch is a content refusal.
    w.meta().set_polls_to_finish(0);
    let bad = ig_post(
        BUSINESS_IG,
        PostKind::Feed,
        "x",
        vec![Media {
            url: format!("{}/instagram/media/missing.jpg", w.sandbox.base_url()),
            kind: MediaKind::Image,
            alt: None,
        }],
    );
    assert!(matches!(
        w.adapter.publish(&grant, &bad).await,
        Err(PortError::ContentRejected(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_publishing_limit_makes_the_queue_wait() {
    let w = world().await;
    let grant = w.connect(PUBLISHER).await.grant;
    w.meta().set_polls_to_finish(0);
    w.meta().set_publishing_quota(1);
    let post = ig_post(
        BUSINESS_IG,
        PostKind::Feed,
        "one",
        vec![w.image("cover.jpg")],
    );
    w.adapter.publish(&grant, &post).await.unwrap();
    let created = w.meta().containers_created();
    match w.adapter.publish(&grant, &post).await {
        Err(PortError::RateLimited { retry_after, scope }) => {
            assert_eq!(scope, LimitScope::Connection);
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(86_400));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.meta().containers_created(), created, "no container spent");
    // Instagram's own code 9 at media_publish is a rate limit too.
    w.meta().set_publishing_quota(50);
    w.meta().fail_next(GraphFault::new(
        400,
        80_002,
        None,
        "(#80002) There have been too many calls to this Instagram account.",
    ));
    assert!(matches!(
        w.adapter.publish(&grant, &post).await,
        Err(PortError::RateLimited {
            scope: LimitScope::Connection,
            ..
        })
    ));
}

#[tokio::test]
async fn a_dead_token_is_named_at_check() {
    let w = world().await;
    let grant = w.connect(PUBLISHER).await.grant;
    w.meta().invalidate_tokens(PUBLISHER, Some(459)).unwrap();
    match w.adapter.check(&grant).await {
        Err(PortError::GrantDead(r)) => assert_eq!(r.code, ReasonCode::AccountCheckpointed),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn disconnecting_facebook_leaves_the_instagram_grant_working() {
    let w = world().await;
    let facebook = FacebookAdapter::new(&settings(&w.sandbox.base_url(), "facebook")).unwrap();
    let fb = connect_with(&facebook, PUBLISHER).await.unwrap().grant;
    let ig = w.connect(PUBLISHER).await.grant;
    assert_eq!(facebook.revoke(&fb).await.unwrap(), RevokeOutcome::Revoked);
    assert!(matches!(
        facebook.check(&fb).await,
        Err(PortError::GrantDead(_))
    ));
    assert_eq!(
        w.meta().live_tokens(PUBLISHER, FACEBOOK_CLIENT_ID).unwrap(),
        0
    );

    w.adapter.check(&ig).await.unwrap();
    w.meta().set_polls_to_finish(0);
    let post = ig_post(
        BUSINESS_IG,
        PostKind::Feed,
        "Still here.",
        vec![w.image("cover.jpg")],
    );
    w.adapter.publish(&ig, &post).await.unwrap();

    // And revoking Instagram ends its own grant.
    assert_eq!(w.adapter.revoke(&ig).await.unwrap(), RevokeOutcome::Revoked);
    assert_eq!(
        w.meta().revocations(),
        [
            (FACEBOOK_CLIENT_ID.to_owned(), "1001".to_owned()),
            (INSTAGRAM_CLIENT_ID.to_owned(), "1001".to_owned())
        ]
    );
    match w.adapter.check(&ig).await {
        Err(PortError::GrantDead(r)) => assert_eq!(r.code, ReasonCode::RevokedByUser),
        other => panic!("{other:?}"),
    }
}

#[test]
fn validation_names_every_refusal() {
    let adapter = InstagramAdapter::new(&settings_with_secret(
        "http://127.0.0.1:9",
        "instagram",
        "s",
    ))
    .unwrap();
    let image = |i: usize| Media {
        url: format!("https://example.com/{i}.jpg"),
        kind: MediaKind::Image,
        alt: None,
    };
    let video = Media {
        url: "https://example.com/v.mp4".into(),
        kind: MediaKind::Video,
        alt: None,
    };
    let errors = |post: &Post| adapter.validate(post).unwrap_err();

    let mut empty = ig_post("3001", PostKind::Feed, "words only", vec![]);
    empty.target = None;
    let found = errors(&empty);
    assert!(found.contains(&ContentError::MediaRequired {
        what: "an image or a video".into()
    }));
    assert!(found.contains(&ContentError::TargetRequired {
        target: "Instagram account".into()
    }));

    let long = "x".repeat(2201);
    assert_eq!(
        errors(&ig_post("3001", PostKind::Feed, &long, vec![image(0)])),
        [ContentError::TextTooLong {
            limit: 2200,
            actual: 2201
        }]
    );
    let tags: String = (0..31).map(|i| format!("#tag{i} ")).collect();
    assert_eq!(
        errors(&ig_post("3001", PostKind::Feed, &tags, vec![image(0)])),
        [ContentError::TooManyHashtags {
            limit: 30,
            actual: 31
        }]
    );
    let at: String = (0..21).map(|i| format!("@friend{i} ")).collect();
    assert_eq!(
        errors(&ig_post("3001", PostKind::Feed, &at, vec![image(0)])),
        [ContentError::TooManyMentions {
            limit: 20,
            actual: 21
        }]
    );
    assert_eq!(
        errors(&ig_post(
            "3001",
            PostKind::Feed,
            "",
            (0..11).map(image).collect()
        )),
        [ContentError::TooManyImages {
            limit: 10,
            actual: 11
        }]
    );
    assert_eq!(
        errors(&ig_post("3001", PostKind::Reel, "", vec![image(0)])),
        [ContentError::MediaRequired {
            what: "one video".into()
        }]
    );
    assert_eq!(
        errors(&ig_post(
            "3001",
            PostKind::Reel,
            "",
            vec![video.clone(), image(0)]
        )),
        [ContentError::MixedMedia]
    );
    assert_eq!(
        errors(&ig_post(
            "3001",
            PostKind::Story,
            "",
            vec![image(0), image(1)]
        )),
        [ContentError::TooManyImages {
            limit: 1,
            actual: 2
        }]
    );
    assert_eq!(
        errors(&ig_post("3001", PostKind::Pin, "", vec![image(0)])),
        [ContentError::KindNotOffered {
            kind: PostKind::Pin
        }]
    );
    // Two to ten items make a carousel; one is a single post.
    assert_eq!(
        adapter.validate(&ig_post(
            "3001",
            PostKind::Feed,
            "",
            (0..10).map(image).collect()
        )),
        Ok(())
    );
    assert_eq!(
        adapter.validate(&ig_post("3001", PostKind::Reel, "", vec![video])),
        Ok(())
    );
}
