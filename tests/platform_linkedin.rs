//! The LinkedIn adapter against the sandbox's LinkedIn, over real loopback HTTP: the
//! consent a browser gives, identity and targets, the 60-day self-serve grant and the
//! partner refresh, publishing (text, little-format escaping, images) and every error
//! LinkedIn is known to answer. Each test starts its own sandbox on port 0.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use reqwest::Url;
use social_studio::platforms::linkedin::{EXPIRY_MESSAGE, MEMBER_SCOPES, SCOPES};
use social_studio::platforms::{Adapter, Connected, ContentError, LinkedinAdapter};
use social_studio::sandbox::browser;
use social_studio_actors::{LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    AccountKind, Media, MediaKind, Platform, Post, PostKind, Reason, ReasonCode, Secret,
    TargetKind, Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{
    connect, described, now, param, query, settings, settings_with_secret, text, StoppedClock,
};

/// The client id the sandbox's LinkedIn registers, as the authorize request must carry it.
const CLIENT_ID: &str = "sandbox-linkedin-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/linkedin/callback";
const JANE: &str = "li-member-1";
const JANE_URN: &str = "urn:li:person:li-member-1";
const ORG_URN: &str = "urn:li:organization:5515715";
/// Jane's username on the consent page.
const JANE_USERNAME: &str = "jane_writes";

type World = platform_support::World<LinkedinAdapter>;

async fn world() -> World {
    World::start("linkedin", |settings| {
        LinkedinAdapter::new(settings).unwrap()
    })
    .await
}

impl World {
    /// Authorize, consent as Jane in the "browser", exchange the code.
    async fn connect_with(&self, adapter: &LinkedinAdapter) -> Connected {
        connect(adapter, JANE_USERNAME, REDIRECT_URI, now())
            .await
            .unwrap()
    }

    async fn connect(&self) -> Connected {
        self.connect_with(&self.adapter).await
    }
}

fn post(words: &str) -> Post {
    platform_support::post(Platform::Linkedin, text(words))
}

fn to_org(mut post: Post) -> Post {
    post.target = Some(ORG_URN.into());
    post
}

fn image(url: String) -> Media {
    described(platform_support::image(url), "The cover")
}

#[tokio::test]
async fn connect_asks_the_least_scopes_without_pkce_and_finds_the_member_and_organisation() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    assert_eq!(
        request.pkce_verifier, None,
        "LinkedIn's web flow has no PKCE"
    );
    let url = Url::parse(&request.url).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(param(&pairs, "scope"), Some(SCOPES.join(" ").as_str()));
    assert_eq!(param(&pairs, "code_challenge"), None);
    assert_eq!(param(&pairs, "client_id"), Some(CLIENT_ID));

    let connected = w.connect().await;
    assert_eq!(connected.account.platform_id, JANE_URN);
    assert_eq!(connected.account.display_name, "Jane Writes");
    assert_eq!(connected.account.kind, AccountKind::Personal);
    assert_eq!(
        connected.account.picture.as_deref(),
        Some(format!("https://media.licdn.com/dms/image/sandbox/{JANE}").as_str())
    );
    let targets: Vec<(TargetKind, &str, &str)> = connected
        .targets
        .iter()
        .map(|t| (t.kind, t.id.as_str(), t.name.as_str()))
        .collect();
    // The ANALYST role Jane also holds (on Devtestco) cannot post, so it is no target.
    assert_eq!(
        targets,
        [
            (TargetKind::Person, JANE_URN, "Jane Writes"),
            (TargetKind::Organisation, ORG_URN, "Jane Writes Books Ltd"),
        ]
    );
    for scope in SCOPES {
        assert!(
            connected.grant.scopes.iter().any(|s| s == scope),
            "{scope} in {:?}",
            connected.grant.scopes
        );
    }
    assert_eq!(connected.grant.endpoint.as_deref(), Some(JANE_URN));
    let account = w.adapter.check(&connected.grant).await.unwrap();
    assert_eq!(account, connected.account);
}

#[tokio::test]
async fn a_member_only_adapter_lists_no_organisations() {
    let w = world().await;
    let settings = settings(&w.base(), "linkedin");
    let adapter = LinkedinAdapter::member_only(&settings).unwrap();
    assert_eq!(adapter.scopes(), MEMBER_SCOPES);
    let connected = w.connect_with(&adapter).await;
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].kind, TargetKind::Person);
}

#[tokio::test]
async fn cancelling_on_the_consent_page_comes_back_with_linkedin_s_error() {
    let w = world().await;
    let request = w.adapter.authorize("state-2", REDIRECT_URI).unwrap();
    let location = browser::consent(&request.url, "jane_writes", "cancel")
        .await
        .unwrap();
    let callback = query(&location);
    assert_eq!(param(&callback, "error"), Some("user_cancelled_authorize"));
    assert_eq!(param(&callback, "state"), Some("state-2"));
}

#[tokio::test]
async fn a_self_serve_grant_cannot_be_renewed_and_lapses_after_60_days_with_a_named_reason() {
    let w = world().await;
    let before = now();
    let connected = w.connect().await;
    let grant = &connected.grant;
    assert_eq!(grant.refresh_token, None);
    assert!(!w.adapter.renewable(&grant.facts()));
    let lifetime = grant.issued_at.until(grant.expires_at.unwrap());
    assert_eq!(lifetime, Duration::from_secs(60 * 24 * 60 * 60));
    assert!(grant.issued_at >= before);

    let reason = w.adapter.expiry_reason();
    assert_eq!(reason.code, ReasonCode::GrantExpired);
    let message = reason.platform_message.unwrap();
    assert_eq!(message, EXPIRY_MESSAGE);
    assert!(message.starts_with(
        "LinkedIn self-serve apps get no refresh token; LinkedIn requires reconnecting every 60 days"
    ));

    // Asked to refresh anyway, nothing is sent and the grant is named expired.
    let refused = w.adapter.refresh(grant).await.unwrap_err();
    assert!(matches!(refused, PortError::GrantDead(ref r) if r.code == ReasonCode::GrantExpired));
    assert_eq!(w.sandbox.linkedin().refresh_calls(), 0);
}

#[tokio::test]
async fn a_partner_grant_refreshes_and_keeps_its_refresh_token() {
    let w = world().await;
    w.sandbox.linkedin().set_partner_app(true);
    let connected = w.connect().await;
    let grant = connected.grant;
    let refresh = grant.refresh_token.clone().unwrap();
    assert!(w.adapter.renewable(&grant.facts()));
    let refresh_lifetime = grant.issued_at.until(grant.refresh_expires_at.unwrap());
    assert_eq!(refresh_lifetime, Duration::from_secs(365 * 24 * 60 * 60));

    let renewed = w.adapter.refresh(&grant).await.unwrap();
    assert_ne!(renewed.access_token, grant.access_token);
    assert_eq!(renewed.refresh_token, Some(refresh), "not rotated");
    assert!(renewed.refresh_expires_at.unwrap() <= grant.refresh_expires_at.unwrap());
    assert_eq!(renewed.endpoint.as_deref(), Some(JANE_URN));
    assert!(renewed.scopes.iter().any(|s| s == "w_member_social"));
    assert_eq!(
        w.adapter.check(&renewed).await.unwrap().platform_id,
        JANE_URN
    );
    // Refreshing again with the same token works: LinkedIn's tokens do not rotate.
    w.adapter.refresh(&renewed).await.unwrap();
    assert_eq!(w.sandbox.linkedin().refresh_calls(), 2);

    // A refresh token whose lifetime ran out is not renewable.
    let mut lapsed = renewed.clone();
    lapsed.refresh_expires_at = Some(now().saturating_sub(Duration::from_secs(1)));
    assert!(!w.adapter.renewable(&lapsed.facts()));
}

#[tokio::test]
async fn refresh_refusals_name_the_grant_or_the_app() {
    let w = world().await;
    w.sandbox.linkedin().set_partner_app(true);
    let grant = w.connect().await.grant;

    let wrong_secret = LinkedinAdapter::new(&settings_with_secret(
        &w.base(),
        "linkedin",
        "not-the-secret",
    ))
    .unwrap();
    let refused = wrong_secret.refresh(&grant).await.unwrap_err();
    assert!(
        matches!(refused, PortError::RequirementUnmet(ref r) if r.code == ReasonCode::AppCredentialsRejected),
        "{refused:?}"
    );

    w.sandbox.linkedin().revoke_member_grants(JANE).unwrap();
    let dead = w.adapter.refresh(&grant).await.unwrap_err();
    assert!(
        matches!(dead, PortError::GrantDead(ref r) if r.code == ReasonCode::AuthorizationInvalid),
        "{dead:?}"
    );
}

#[tokio::test]
async fn text_is_published_to_the_member_and_to_the_organisation() {
    let w = world().await;
    let grant = w.connect().await.grant;

    let receipt = w
        .adapter
        .publish(&grant, &post("Chapter one is done."))
        .await
        .unwrap();
    assert!(receipt.platform_post_id.starts_with("urn:li:share:"));
    assert_eq!(
        receipt.url.as_deref(),
        Some(
            format!(
                "https://www.linkedin.com/feed/update/{}/",
                receipt.platform_post_id
            )
            .as_str()
        )
    );
    let org_receipt = w
        .adapter
        .publish(&grant, &to_org(post("Our spring list is out.")))
        .await
        .unwrap();

    let posts = w.sandbox.linkedin().posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].urn, receipt.platform_post_id);
    assert_eq!(posts[0].author, JANE_URN);
    assert_eq!(posts[0].rendered, "Chapter one is done.");
    assert_eq!(posts[0].visibility, "PUBLIC");
    assert_eq!(posts[1].urn, org_receipt.platform_post_id);
    assert_eq!(posts[1].author, ORG_URN);
    assert_eq!(posts[1].published_by, JANE);
}

#[tokio::test]
async fn little_text_escaping_keeps_every_reserved_character_end_to_end() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let text =
        r"New book (out now!) #amreading — *50% off* [today] <3 @jane_writes {x|y} a\b ~fin~";
    let mut post = post(text);
    post.content.links = vec!["https://example.com/my_book_(2nd)".into()];
    w.adapter.publish(&grant, &post).await.unwrap();

    let stored = &w.sandbox.linkedin().posts()[0];
    assert_eq!(
        stored.rendered,
        format!("{text}\nhttps://example.com/my_book_(2nd)"),
        "nothing was cut"
    );
    assert!(stored
        .commentary
        .starts_with(r"New book \(out now!\) \#amreading"));
    assert!(stored.commentary.contains(r"a\\b"));
}

#[tokio::test]
async fn images_are_uploaded_and_attached_one_or_several() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let png: &'static [u8] = b"\x89PNG\r\n\x1a\nsandbox-image-bytes";
    let addr = platform_support::serve(Router::new().route(
        "/cover.png",
        get(move || async move { ([(header::CONTENT_TYPE, "image/png")], png) }),
    ))
    .await;
    let url = format!("http://{addr}/cover.png");

    let mut one = post("The cover!");
    one.content.media = vec![image(url.clone())];
    w.adapter.publish(&grant, &one).await.unwrap();
    let mut two = to_org(post("Both covers"));
    two.content.media = vec![image(url.clone()), image(url)];
    w.adapter.publish(&grant, &two).await.unwrap();

    let posts = w.sandbox.linkedin().posts();
    let uploaded = w.sandbox.linkedin().uploaded_images();
    assert_eq!(posts[0].images.len(), 1);
    assert_eq!(posts[1].images.len(), 2);
    assert_eq!(posts[1].author, ORG_URN);
    for urn in posts.iter().flat_map(|p| &p.images) {
        assert!(urn.starts_with("urn:li:image:"), "{urn}");
        assert_eq!(uploaded.get(urn), Some(&png.len()));
    }
}

#[tokio::test]
async fn a_member_who_revoked_the_app_is_a_dead_grant() {
    let w = world().await;
    let grant = w.connect().await.grant;
    w.sandbox.linkedin().revoke_member_grants(JANE).unwrap();
    let error = w.adapter.publish(&grant, &post("hello")).await.unwrap_err();
    assert_eq!(
        error,
        PortError::GrantDead(Reason::with_platform_message(
            ReasonCode::RevokedByUser,
            "The token used in the request has been revoked by the user"
        ))
    );
    assert_eq!(w.adapter.check(&grant).await.unwrap_err(), error);
}

#[tokio::test]
async fn an_expired_or_unknown_token_asks_for_a_refresh() {
    let w = world().await;
    let mut grant = w.connect().await.grant;
    w.sandbox.linkedin().expire_access_tokens(JANE).unwrap();
    assert_eq!(
        w.adapter.check(&grant).await.unwrap_err(),
        PortError::Unauthorized
    );
    grant.access_token = Secret::new("never-issued");
    assert_eq!(
        w.adapter.publish(&grant, &post("hi")).await.unwrap_err(),
        PortError::Unauthorized
    );
}

#[tokio::test]
async fn losing_the_organisation_role_is_named_and_the_member_can_still_post() {
    let w = world().await;
    let grant = w.connect().await.grant;
    w.sandbox.linkedin().remove_org_role(JANE, ORG_URN).unwrap();
    let error = w
        .adapter
        .publish(&grant, &to_org(post("As the company")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PortError::RequirementUnmet(ref r) if r.code == ReasonCode::LinkedinOrgRoleMissing
            && r.platform_message.as_deref().is_some_and(|m| m.starts_with("Not enough permissions"))),
        "{error:?}"
    );
    w.adapter.publish(&grant, &post("As myself")).await.unwrap();
}

#[tokio::test]
async fn another_members_page_is_a_permission_problem() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let mut as_someone_else = post("not mine");
    as_someone_else.target = Some("urn:li:person:li-member-2".into());
    let error = w
        .adapter
        .publish(&grant, &as_someone_else)
        .await
        .unwrap_err();
    assert!(
        matches!(error, PortError::RequirementUnmet(ref r) if r.code == ReasonCode::PermissionRemoved),
        "{error:?}"
    );
}

#[tokio::test]
async fn content_linkedin_refuses_is_rejected_with_its_message() {
    let w = world().await;
    let grant = w.connect().await.grant;
    w.sandbox
        .linkedin()
        .reject_next_posts(1, "ERROR :: /commentary :: the text is considered spam");
    let error = w
        .adapter
        .publish(&grant, &post("buy now"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PortError::ContentRejected(Reason::with_platform_message(
            ReasonCode::ContentRejected,
            "ERROR :: /commentary :: the text is considered spam"
        ))
    );
}

#[tokio::test]
async fn a_429_waits_until_midnight_utc_for_this_connection() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let at = Timestamp::parse_rfc3339("2026-11-28T21:30:00Z").unwrap();
    let adapter = LinkedinAdapter::new(&settings(&w.base(), "linkedin"))
        .unwrap()
        .with_clock(Arc::new(StoppedClock(at)));
    w.sandbox.linkedin().rate_limit_next(1);
    assert_eq!(
        adapter.publish(&grant, &post("hi")).await.unwrap_err(),
        PortError::RateLimited {
            retry_after: Duration::from_secs(2 * 60 * 60 + 30 * 60),
            scope: LimitScope::Connection,
        }
    );
    assert!(w.sandbox.linkedin().posts().is_empty());
    adapter.publish(&grant, &post("hi")).await.unwrap();
}

#[tokio::test]
async fn a_5xx_is_a_passing_fault() {
    let w = world().await;
    let grant = w.connect().await.grant;
    w.sandbox
        .linkedin()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    let error = w.adapter.publish(&grant, &post("hi")).await.unwrap_err();
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
    w.adapter.publish(&grant, &post("hi")).await.unwrap();
}

#[tokio::test]
async fn revoke_ends_the_grant_at_linkedin() {
    let w = world().await;
    let grant = w.connect().await.grant;
    assert_eq!(
        w.adapter.revoke(&grant).await.unwrap(),
        RevokeOutcome::Revoked
    );
    let after = w.adapter.check(&grant).await.unwrap_err();
    assert!(matches!(after, PortError::GrantDead(_)), "{after:?}");
}

#[tokio::test]
async fn validation_names_every_refusal_before_scheduling() {
    let w = world().await;
    let adapter = &w.adapter;
    assert_eq!(
        adapter.validate(&post("   ")),
        Err(vec![ContentError::EmptyPost])
    );
    assert_eq!(
        adapter.validate(&post(&"a".repeat(3001))),
        Err(vec![ContentError::TextTooLong {
            limit: 3000,
            actual: 3001
        }])
    );
    // The author's characters count, not the escapes LinkedIn receives.
    assert_eq!(adapter.validate(&post(&"(".repeat(3000))), Ok(()));

    let mut video = post("trailer");
    video.content.media = vec![Media {
        url: "https://example.com/trailer.mp4".into(),
        kind: MediaKind::Video,
        alt: None,
    }];
    assert_eq!(
        adapter.validate(&video),
        Err(vec![ContentError::VideoNotSupported])
    );

    let mut many = post("covers");
    many.content.media = (0..21)
        .map(|i| image(format!("https://example.com/{i}.png")))
        .collect();
    assert_eq!(
        adapter.validate(&many),
        Err(vec![ContentError::TooManyImages {
            limit: 20,
            actual: 21
        }])
    );

    let mut pin = post("a pin");
    pin.kind = PostKind::Pin;
    assert_eq!(
        adapter.validate(&pin),
        Err(vec![ContentError::KindNotOffered {
            kind: PostKind::Pin
        }])
    );
}
