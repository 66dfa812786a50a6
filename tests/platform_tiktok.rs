//! The TikTok adapter against the sandbox's TikTok, over real loopback HTTP: the consent
//! a browser gives, then every call the actors make, with the failures TikTok answers.
//! Each test starts its own sandbox on port 0.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use social_studio::platforms::tiktok::{UploadMode, SCOPES};
use social_studio::platforms::{
    Adapter, ConnectError, Connected, ContentError, PlatformSettings, TiktokAdapter,
};
use social_studio::sandbox::browser::consent;
use social_studio::sandbox::{Sandbox, TokenOutcome};
use social_studio_actors::{LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    AccountKind, Content, Media, MediaKind, Platform, Post, PostKind, ReasonCode, TargetKind,
    Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{param, query, settings, settings_with_secret, video, StoppedClock};

/// The client key the sandbox's TikTok registers, as the authorize request must carry it.
const CLIENT_KEY: &str = "sandbox-tiktok-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/tiktok/callback";
const JANE: &str = "jane_tok";
const JANE_OPEN_ID: &str = "-000jane-open-id";
const QUIET: &str = "quiet_tok";
const BANNED: &str = "banned_tok";
const MIB: usize = 1024 * 1024;

type World = platform_support::World<TiktokAdapter>;

/// Polls fast, so that tests see several status fetches in milliseconds.
fn fast(adapter: TiktokAdapter) -> TiktokAdapter {
    adapter.with_status_polling(Duration::from_millis(5), Duration::from_secs(10))
}

async fn world() -> World {
    World::start("tiktok", |settings| {
        fast(TiktokAdapter::new(settings).unwrap())
    })
    .await
}

impl World {
    /// Authorize and consent as `who`; returns the code.
    async fn code(&self, adapter: &TiktokAdapter, who: &str) -> String {
        platform_support::code(adapter, who, REDIRECT_URI)
            .await
            .code
    }

    async fn connect_as(&self, who: &str) -> Result<Connected, ConnectError> {
        platform_support::connect(&self.adapter, who, REDIRECT_URI, Timestamp::now_system()).await
    }

    async fn connect(&self) -> Connected {
        self.connect_as(JANE).await.unwrap()
    }

    fn video_url(&self, name: &str) -> String {
        format!("{}/tiktok/media/{name}", self.base())
    }

    fn assert_no_spent_token_sent(&self) {
        platform_support::assert_no_spent_token_sent(&self.sandbox.tiktok().token_requests());
    }
}

/// A valid TikTok video post.
fn clip(video_url: &str) -> Post {
    let mut post = platform_support::post(
        Platform::Tiktok,
        Content {
            text: "Chapter one, read aloud. #booktok".into(),
            title: None,
            links: vec![],
            media: vec![video(video_url)],
        },
    );
    post.kind = PostKind::Video;
    post
}

/// What an error must look like.
type Expectation = Box<dyn Fn(&PortError) -> bool>;

#[tokio::test]
async fn connect_speaks_client_key_without_pkce_and_identifies_the_creator() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    assert!(request
        .url
        .starts_with(&format!("{}/tiktok/v2/auth/authorize/?", w.base())));
    let authorize = query(&request.url);
    assert_eq!(param(&authorize, "client_key"), Some(CLIENT_KEY));
    assert_eq!(param(&authorize, "client_id"), None);
    assert_eq!(
        param(&authorize, "scope"),
        Some("user.info.basic,video.publish")
    );
    assert_eq!(SCOPES, ["user.info.basic", "video.publish"]);
    assert_eq!(param(&authorize, "response_type"), Some("code"));
    assert_eq!(param(&authorize, "redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(param(&authorize, "state"), Some("state-1"));
    assert_eq!(
        param(&authorize, "code_challenge"),
        None,
        "web apps send no PKCE"
    );
    assert!(request.pkce_verifier.is_none());

    let location = consent(&request.url, JANE, "authorize").await.unwrap();
    let callback = query(&location);
    assert_eq!(param(&callback, "state"), Some("state-1"));
    let code = param(&callback, "code").unwrap().to_owned();
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
        Some(at.saturating_add(Duration::from_secs(2 * 3600)))
    );
    assert_eq!(
        grant.refresh_expires_at,
        Some(at.saturating_add(Duration::from_secs(180 * 24 * 3600)))
    );
    assert_eq!(grant.scopes, ["user.info.basic", "video.publish"]);
    assert_eq!(connected.account.platform_id, JANE_OPEN_ID);
    assert_eq!(connected.account.handle, JANE);
    assert_eq!(connected.account.display_name, "Jane Writes");
    assert_eq!(connected.account.kind, AccountKind::Creator);
    assert_eq!(
        connected.account.picture.as_deref(),
        Some(format!("https://p16-sign.tiktokcdn-us.com/sandbox/{JANE_OPEN_ID}.jpeg").as_str())
    );
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].kind, TargetKind::Profile);
    assert_eq!(connected.targets[0].id, JANE_OPEN_ID);
    assert_eq!(connected.targets[0].name, "@jane_tok");

    // The code is single-use.
    let again = w.adapter.connect(&code, None, REDIRECT_URI, at).await;
    assert!(
        matches!(again, Err(ConnectError::CodeRejected { ref platform_message })
            if platform_message.as_deref().is_some_and(|m| m.contains("invalid_grant"))),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_declined_consent_and_a_wrong_secret_are_named() {
    let w = world().await;
    let request = w.adapter.authorize("state-2", REDIRECT_URI).unwrap();
    let location = consent(&request.url, JANE, "cancel").await.unwrap();
    let callback = query(&location);
    assert_eq!(param(&callback, "state"), Some("state-2"));
    let error = ConnectError::from_callback(
        param(&callback, "error").unwrap(),
        param(&callback, "error_description"),
    );
    assert_eq!(error.code(), "access_denied");

    let wrong =
        TiktokAdapter::new(&settings_with_secret(&w.base(), "tiktok", "not-the-secret")).unwrap();
    let code = w.code(&wrong, JANE).await;
    let refused = wrong
        .connect(&code, None, REDIRECT_URI, Timestamp::now_system())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ConnectError::AppCredentialsRejected { ref platform_message }
            if platform_message.as_deref().is_some_and(|m| m.starts_with("invalid_client"))),
        "{refused:?}"
    );
    assert_eq!(refused.code(), "app_credentials_rejected");
}

#[tokio::test]
async fn an_account_banned_from_posting_is_refused_as_not_eligible() {
    let w = world().await;
    let refused = w.connect_as(BANNED).await.unwrap_err();
    match &refused {
        ConnectError::RequirementUnmet(reason) => {
            assert_eq!(reason.code, ReasonCode::TiktokAccountNotEligible);
            assert!(reason
                .platform_message
                .as_deref()
                .is_some_and(|m| m.contains("spam_risk_user_banned_from_posting")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(refused.code(), "tiktok_account_not_eligible");
    // The grant the refusal discarded was revoked at TikTok.
    assert_eq!(w.sandbox.tiktok().revoke_calls(), 1);
}

#[tokio::test]
async fn refresh_rotates_the_token_and_never_resends_a_spent_one() {
    let w = world().await;
    let connected = w.connect().await;
    let at = Timestamp::parse_rfc3339("2026-12-01T10:00:00Z").unwrap();
    let adapter = fast(
        TiktokAdapter::new(&settings(&w.base(), "tiktok"))
            .unwrap()
            .with_clock(Arc::new(StoppedClock(at))),
    );

    let first = adapter.refresh(&connected.grant).await.unwrap();
    assert_ne!(first.refresh_token, connected.grant.refresh_token);
    assert_ne!(first.access_token, connected.grant.access_token);
    assert_eq!(first.issued_at, at);
    assert_eq!(
        first.expires_at,
        Some(at.saturating_add(Duration::from_secs(2 * 3600)))
    );
    assert_eq!(
        first.refresh_expires_at,
        Some(at.saturating_add(Duration::from_secs(180 * 24 * 3600)))
    );
    let second = adapter.refresh(&first).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    // The rotated grant still works.
    assert_eq!(
        adapter.check(&second).await.unwrap().platform_id,
        JANE_OPEN_ID
    );

    // Each refresh sent a different token: the spent one was never sent again.
    let sent: Vec<_> = w
        .sandbox
        .tiktok()
        .token_requests()
        .into_iter()
        .filter(|r| r.grant_type == "refresh_token")
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.outcome == TokenOutcome::Issued));
    assert_ne!(sent[0].credential, sent[1].credential);
    w.assert_no_spent_token_sent();

    // A refresh whose answer is lost may have rotated the token.
    w.sandbox.tiktok().drop_next(1);
    let lost = adapter.refresh(&second).await.unwrap_err();
    assert!(
        matches!(
            lost,
            PortError::Unavailable {
                maybe_delivered: true,
                ..
            }
        ),
        "{lost:?}"
    );
}

#[tokio::test]
async fn a_revoked_authorization_is_a_dead_grant_and_a_refused_token() {
    let w = world().await;
    let connected = w.connect().await;
    w.sandbox.tiktok().revoke_user_grants(JANE).unwrap();
    let refresh = w.adapter.refresh(&connected.grant).await.unwrap_err();
    assert!(
        matches!(refresh, PortError::GrantDead(ref r) if r.code == ReasonCode::AuthorizationInvalid),
        "{refresh:?}"
    );
    let check = w.adapter.check(&connected.grant).await.unwrap_err();
    assert_eq!(check, PortError::Unauthorized);
    w.assert_no_spent_token_sent();
}

#[tokio::test]
async fn revoke_ends_the_authorization_at_tiktok() {
    let w = world().await;
    let connected = w.connect().await;
    assert_eq!(
        w.adapter.revoke(&connected.grant).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(w.sandbox.tiktok().revoke_calls(), 1);
    assert_eq!(
        w.adapter.check(&connected.grant).await.unwrap_err(),
        PortError::Unauthorized
    );
    // Revoking again is harmless.
    assert_eq!(
        w.adapter.revoke(&connected.grant).await.unwrap(),
        RevokeOutcome::Revoked
    );

    let mut no_revoke = settings(&w.base(), "tiktok");
    no_revoke.revoke_url = None;
    let adapter = TiktokAdapter::new(&no_revoke).unwrap();
    assert_eq!(
        adapter.revoke(&connected.grant).await.unwrap(),
        RevokeOutcome::NotSupported
    );
}

#[tokio::test]
async fn publish_by_pull_polls_the_status_until_complete() {
    let w = world().await;
    let connected = w.connect().await;
    w.sandbox.tiktok().set_processing_polls(2);
    let post = clip(&w.video_url("sample.mp4"));
    let receipt = w.adapter.publish(&connected.grant, &post).await.unwrap();

    let posts = w.sandbox.tiktok().posts(JANE);
    assert_eq!(posts.len(), 1);
    let published = &posts[0];
    assert_eq!(published.source, "PULL_FROM_URL");
    assert_eq!(
        published.video_url.as_deref(),
        Some(w.video_url("sample.mp4").as_str())
    );
    assert_eq!(published.title, "Chapter one, read aloud. #booktok");
    assert_eq!(published.privacy_level, "PUBLIC_TO_EVERYONE");
    assert_eq!(published.status, "PUBLISH_COMPLETE");
    // Two PROCESSING_DOWNLOAD answers, then the outcome.
    assert_eq!(published.status_fetches, 3);
    let post_id = published.post_id.clone().unwrap();
    assert_eq!(receipt.platform_post_id, post_id);
    assert_eq!(
        receipt.url.as_deref(),
        Some(format!("https://www.tiktok.com/@jane_tok/video/{post_id}").as_str())
    );
}

#[tokio::test]
async fn publish_by_chunked_upload_sends_every_chunk_in_order() {
    let w = world().await;
    let connected = w.connect().await;
    w.sandbox.tiktok().add_video("long.mp4", 11 * MIB);
    let adapter = w
        .adapter
        .with_upload_mode(UploadMode::FileUpload)
        .with_chunk_size(5 * MIB as u64);
    let post = clip(&format!("{}/tiktok/media/long.mp4", w.sandbox.base_url()));
    let receipt = adapter.publish(&connected.grant, &post).await.unwrap();

    let posts = w.sandbox.tiktok().posts(JANE);
    assert_eq!(posts.len(), 1);
    let published = &posts[0];
    assert_eq!(published.source, "FILE_UPLOAD");
    assert_eq!(published.video_size, 11 * MIB as u64);
    assert_eq!(published.received_bytes, 11 * MIB as u64);
    // 11 MiB in 5 MiB chunks: floor(11/5) = 2, the last one holding 6 MiB.
    assert_eq!(published.chunks_received, 2);
    assert_eq!(published.status, "PUBLISH_COMPLETE");
    assert_eq!(Some(receipt.platform_post_id), published.post_id);
}

#[tokio::test]
async fn a_video_longer_than_the_creator_may_post_is_refused_before_it_is_uploaded() {
    let w = world().await;
    let connected = w.connect().await;
    // Jane's creator info allows 600 s.
    w.sandbox
        .tiktok()
        .add_video_lasting("too-long.mp4", 256 * 1024, 601);
    w.sandbox
        .tiktok()
        .add_video_lasting("just-right.mp4", 256 * 1024, 600);
    let too_long = clip(&w.video_url("too-long.mp4"));
    let just_right = clip(&w.video_url("just-right.mp4"));
    let adapter = w.adapter.with_upload_mode(UploadMode::FileUpload);
    match adapter.publish(&connected.grant, &too_long).await {
        Err(PortError::ContentRejected(reason)) => {
            assert_eq!(reason.code, ReasonCode::ContentRejected);
            let said = reason.platform_message.unwrap_or_default();
            assert!(said.contains("601.0 s") && said.contains("600 s"), "{said}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        w.sandbox.tiktok().posts(JANE).is_empty(),
        "nothing was sent to TikTok"
    );
    adapter
        .publish(&connected.grant, &just_right)
        .await
        .unwrap();
    assert_eq!(w.sandbox.tiktok().posts(JANE).len(), 1);
}

#[tokio::test]
async fn auto_mode_uploads_a_plain_http_video_from_another_host() {
    let sandbox = Sandbox::start().await.unwrap();
    let base = sandbox.base_url();
    // The API is reached as localhost, the video as 127.0.0.1: another origin, plain
    // http, so TikTok could not pull it and the engine uploads it.
    let api_base = base.replace("127.0.0.1", "localhost");
    let two_hosts = PlatformSettings {
        api_base: settings(&api_base, "tiktok").api_base,
        ..settings(&base, "tiktok")
    };
    let adapter = fast(TiktokAdapter::new(&two_hosts).unwrap());
    let w = World { sandbox, adapter };
    let connected = w.connect().await;
    w.adapter
        .publish(&connected.grant, &clip(&w.video_url("sample.mp4")))
        .await
        .unwrap();
    let posts = w.sandbox.tiktok().posts(JANE);
    assert_eq!(posts[0].source, "FILE_UPLOAD");
    assert_eq!(posts[0].chunks_received, 1, "under 5 MB goes whole");
    assert_eq!(
        posts[0].received_bytes,
        w.sandbox.tiktok().video("sample.mp4").unwrap().len() as u64
    );
}

#[tokio::test]
async fn a_post_that_never_settles_may_have_been_delivered() {
    let w = world().await;
    let connected = w.connect().await;
    w.sandbox.tiktok().set_processing_polls(u32::MAX);
    let post = clip(&w.video_url("sample.mp4"));
    let adapter = w
        .adapter
        .with_status_polling(Duration::from_millis(5), Duration::from_millis(60));
    let error = adapter.publish(&connected.grant, &post).await.unwrap_err();
    assert!(
        matches!(
            error,
            PortError::Unavailable {
                maybe_delivered: true,
                ref detail,
            } if detail.contains("PROCESSING_DOWNLOAD")
        ),
        "{error:?}"
    );
    assert!(w.sandbox.tiktok().posts(JANE)[0].status_fetches >= 2);
}

#[tokio::test]
async fn a_failed_post_is_classified_by_its_fail_reason() {
    let w = world().await;
    let connected = w.connect().await;
    w.sandbox
        .tiktok()
        .fail_next_publish("duration_check_failed");
    let error = w
        .adapter
        .publish(&connected.grant, &clip(&w.video_url("sample.mp4")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PortError::ContentRejected(ref r)
            if r.code == ReasonCode::ContentRejected
                && r.platform_message.as_deref().is_some_and(|m| m.contains("duration_check_failed"))),
        "{error:?}"
    );
    // A video the sandbox cannot pull fails the same way, named.
    let error = w
        .adapter
        .publish(&connected.grant, &clip(&w.video_url("missing.mp4")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PortError::ContentRejected(ref r)
            if r.platform_message.as_deref().is_some_and(|m| m.contains("video_pull_failed"))),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unaudited_app_is_named_for_public_accounts_and_posts_privately_for_private_ones() {
    let w = world().await;
    w.sandbox.tiktok().set_audited(false);
    let jane = w.connect().await;
    let error = w
        .adapter
        .publish(&jane.grant, &clip(&w.video_url("sample.mp4")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PortError::RequirementUnmet(ref r) if r.code == ReasonCode::TiktokAppNotAudited
            && r.platform_message.as_deref().is_some_and(|m| m.contains("unaudited_client_can_only_post_to_private_accounts"))),
        "{error:?}"
    );
    assert!(w.sandbox.tiktok().posts(JANE).is_empty());

    let quiet = w.connect_as(QUIET).await.unwrap();
    let receipt = w
        .adapter
        .publish(&quiet.grant, &clip(&w.video_url("sample.mp4")))
        .await
        .unwrap();
    let posts = w.sandbox.tiktok().posts(QUIET);
    assert_eq!(posts.len(), 1);
    // The engine asked for the widest audience a private account has; TikTok kept the
    // unaudited app's post to the creator alone, so it has no public id.
    assert_eq!(posts[0].privacy_level, "SELF_ONLY");
    assert_eq!(posts[0].post_id, None);
    assert_eq!(receipt.platform_post_id, posts[0].publish_id);
    assert_eq!(receipt.url, None);
}

#[tokio::test]
async fn every_tiktok_error_code_is_classified() {
    let w = world().await;
    let connected = w.connect().await;
    let post = clip(&w.video_url("sample.mp4"));
    // Pull only, so that url_ownership_unverified is reported rather than worked around.
    let adapter = w.adapter.with_upload_mode(UploadMode::PullFromUrl);
    let day = Duration::from_secs(24 * 3600);
    let rejected = |code: ReasonCode| move |e: &PortError| matches!(e, PortError::ContentRejected(r) if r.code == code);
    let unmet = |code: ReasonCode| move |e: &PortError| matches!(e, PortError::RequirementUnmet(r) if r.code == code);
    let cases: Vec<(&str, Expectation)> = vec![
        (
            "access_token_invalid",
            Box::new(|e| *e == PortError::Unauthorized),
        ),
        (
            "scope_not_authorized",
            Box::new(unmet(ReasonCode::PermissionRemoved)),
        ),
        (
            "rate_limit_exceeded",
            Box::new(|e| {
                *e == PortError::RateLimited {
                    retry_after: Duration::from_secs(60),
                    scope: LimitScope::Connection,
                }
            }),
        ),
        (
            "spam_risk_too_many_posts",
            Box::new(move |e| {
                *e == PortError::RateLimited {
                    retry_after: day,
                    scope: LimitScope::Connection,
                }
            }),
        ),
        (
            "reached_active_user_cap",
            Box::new(move |e| {
                *e == PortError::RateLimited {
                    retry_after: day,
                    scope: LimitScope::Connection,
                }
            }),
        ),
        (
            "spam_risk_user_banned_from_posting",
            Box::new(unmet(ReasonCode::TiktokAccountNotEligible)),
        ),
        (
            "unaudited_client_can_only_post_to_private_accounts",
            Box::new(unmet(ReasonCode::TiktokAppNotAudited)),
        ),
        (
            "url_ownership_unverified",
            Box::new(rejected(ReasonCode::ContentRejected)),
        ),
        (
            "privacy_level_option_mismatch",
            Box::new(|e| {
                matches!(
                    e,
                    PortError::Unavailable {
                        maybe_delivered: false,
                        ..
                    }
                )
            }),
        ),
        (
            "invalid_params",
            Box::new(rejected(ReasonCode::ContentRejected)),
        ),
        (
            "internal_error",
            Box::new(|e| {
                matches!(
                    e,
                    PortError::Unavailable {
                        maybe_delivered: false,
                        ..
                    }
                )
            }),
        ),
    ];
    for (code, expected) in cases {
        w.sandbox.tiktok().fail_next_init(code);
        let error = adapter.publish(&connected.grant, &post).await.unwrap_err();
        assert!(expected(&error), "{code}: {error:?}");
        if let PortError::ContentRejected(r) | PortError::RequirementUnmet(r) = &error {
            assert!(
                r.platform_message
                    .as_deref()
                    .is_some_and(|m| m.contains(code)),
                "{code}: TikTok's words are kept: {r:?}"
            );
        }
    }
    assert!(w.sandbox.tiktok().posts(JANE).is_empty());
}

#[tokio::test]
async fn rate_limits_and_outages_wait_without_failing() {
    let w = world().await;
    let connected = w.connect().await;
    let tiktok = w.sandbox.tiktok();
    tiktok.rate_limit_next(1, 0);
    assert_eq!(
        w.adapter.check(&connected.grant).await.unwrap_err(),
        PortError::RateLimited {
            retry_after: Duration::from_secs(60),
            scope: LimitScope::Connection,
        }
    );
    tiktok
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    assert!(matches!(
        w.adapter.check(&connected.grant).await.unwrap_err(),
        PortError::Unavailable {
            maybe_delivered: false,
            ..
        }
    ));
    // A rate limit while polling the status is waited out: the post still completes.
    tiktok.set_processing_polls(3);
    let post = clip(&w.video_url("sample.mp4"));
    let adapter = w
        .adapter
        .with_status_polling(Duration::from_millis(20), Duration::from_secs(10));
    let receipt = {
        let publish = adapter.publish(&connected.grant, &post);
        tokio::pin!(publish);
        // Armed once init has been answered (the post exists): the next call is a
        // status fetch.
        let mut armed = false;
        loop {
            tokio::select! {
                result = &mut publish => break result.unwrap(),
                () = tokio::time::sleep(Duration::from_millis(1)), if !armed => {
                    if !tiktok.posts(JANE).is_empty() {
                        tiktok.rate_limit_next(1, 0);
                        armed = true;
                    }
                }
            }
        }
    };
    assert_eq!(
        tiktok.pending_faults().rate_limited,
        0,
        "the 429 was answered"
    );
    assert_eq!(tiktok.posts(JANE)[0].status, "PUBLISH_COMPLETE");
    assert_eq!(
        Some(receipt.platform_post_id),
        tiktok.posts(JANE)[0].post_id.clone()
    );
    tiktok.set_processing_polls(0);

    // TikTok's own limit: 6 inits a minute per user.
    let mut limited = None;
    for _ in 0..6 {
        match adapter.publish(&connected.grant, &post).await {
            Ok(_) => {}
            Err(error) => {
                limited = Some(error);
                break;
            }
        }
    }
    assert_eq!(
        limited,
        Some(PortError::RateLimited {
            retry_after: Duration::from_secs(60),
            scope: LimitScope::Connection,
        })
    );
}

#[tokio::test]
async fn validation_names_every_refusal() {
    let w = world().await;
    let url = w.video_url("sample.mp4");
    let ok = clip(&url);
    assert_eq!(w.adapter.validate(&ok), Ok(()));

    let mut feed = clip(&url);
    feed.kind = PostKind::Feed;
    assert_eq!(
        w.adapter.validate(&feed),
        Err(vec![ContentError::KindNotOffered {
            kind: PostKind::Feed
        }])
    );

    let mut nothing = clip(&url);
    nothing.content.media.clear();
    assert!(matches!(
        w.adapter.validate(&nothing).unwrap_err().as_slice(),
        [ContentError::MediaRequired { .. }]
    ));

    let mut photo = clip(&url);
    photo.content.media = vec![Media {
        url: "https://example.com/cover.jpg".into(),
        kind: MediaKind::Image,
        alt: None,
    }];
    assert!(matches!(
        w.adapter.validate(&photo).unwrap_err().as_slice(),
        [ContentError::MediaRequired { .. }]
    ));

    let mut mixed = clip(&url);
    mixed.content.media.push(Media {
        url: "https://example.com/cover.jpg".into(),
        kind: MediaKind::Image,
        alt: None,
    });
    assert_eq!(
        w.adapter.validate(&mixed),
        Err(vec![ContentError::MixedMedia])
    );

    let mut two = clip(&url);
    two.content.media.push(video(&url));
    assert_eq!(
        w.adapter.validate(&two),
        Err(vec![ContentError::TooManyVideos {
            limit: 1,
            actual: 2
        }])
    );

    // 2200 UTF-16 units pass; each emoji is two of them.
    let mut longest = clip(&url);
    longest.content.text = "😀".repeat(1100);
    assert_eq!(w.adapter.validate(&longest), Ok(()));
    let mut too_long = clip(&url);
    too_long.content.text = "😀".repeat(1100) + "a";
    assert_eq!(
        w.adapter.validate(&too_long),
        Err(vec![ContentError::TextTooLong {
            limit: 2200,
            actual: 2201
        }])
    );

    // Publishing re-checks: nothing reaches TikTok.
    let connected = w.connect().await;
    let error = w
        .adapter
        .publish(&connected.grant, &too_long)
        .await
        .unwrap_err();
    assert!(matches!(error, PortError::ContentRejected(_)), "{error:?}");
    assert!(w.sandbox.tiktok().posts(JANE).is_empty());
}

#[tokio::test]
async fn an_unverified_video_domain_falls_back_to_uploading_the_file() {
    let w = world().await;
    let connected = w.connect().await;
    // Auto mode pulls from the API's own host; TikTok refuses the domain once.
    w.sandbox
        .tiktok()
        .fail_next_init("url_ownership_unverified");
    let receipt = w
        .adapter
        .publish(&connected.grant, &clip(&w.video_url("sample.mp4")))
        .await
        .unwrap();
    let posts = w.sandbox.tiktok().posts(JANE);
    assert_eq!(posts.len(), 1, "the refused pull created nothing");
    assert_eq!(posts[0].source, "FILE_UPLOAD");
    assert_eq!(posts[0].status, "PUBLISH_COMPLETE");
    assert_eq!(Some(receipt.platform_post_id), posts[0].post_id.clone());
}
