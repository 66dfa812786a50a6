//! The YouTube adapter against the sandbox's YouTube, over real loopback HTTP: Google's
//! consent (PKCE, `state`, `access_type=offline`, `prompt=consent`), the channel as
//! account and target, refresh tokens that do not rotate, revocation, the resumable
//! upload with a dropped chunk, the project's quota and Pacific midnight, and the
//! content rules. Each test starts its own sandbox on port 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use social_studio::platforms::youtube::{QuotaPolicy, READONLY_SCOPE, SCOPES, UPLOAD_SCOPE};
use social_studio::platforms::{Adapter, ConnectError, Connected, ContentError, YoutubeAdapter};
use social_studio::sandbox::{RevokeCause, Sandbox, TokenKind, TokenOutcome};
use social_studio_actors::{Clock, LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    fixtures, Content, Media, MediaKind, Platform, Post, PostKind, ReasonCode, Secret, TargetKind,
    Timestamp,
};

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{param, query, settings, video};

/// The client id the sandbox's YouTube registers, as the authorize request must carry it.
const CLIENT_ID: &str = "sandbox-youtube-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/youtube/callback";
const JANE: &str = "jane_writes";
const JANE_CHANNEL: &str = "UCjanewrites0000000000aa";
const NO_CHANNEL: &str = "no_channel";
const CHUNK: usize = 256 * 1024;

/// A wall clock the test sets by hand (the adapter's Pacific day follows it).
#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl TestClock {
    fn at(rfc3339: &str) -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(
            Timestamp::parse_rfc3339(rfc3339).unwrap(),
        )))
    }

    fn set(&self, rfc3339: &str) {
        *self.0.lock().unwrap() = Timestamp::parse_rfc3339(rfc3339).unwrap();
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

struct World {
    sandbox: Sandbox,
    adapter: YoutubeAdapter,
    clock: Arc<TestClock>,
}

/// 04:00 PST on 28 November 2026: twenty hours to the next Pacific midnight.
const MORNING: &str = "2026-11-28T12:00:00Z";
const NEXT_PACIFIC_MIDNIGHT: &str = "2026-11-29T08:00:00Z";
const TWENTY_HOURS: Duration = Duration::from_secs(20 * 3600);

async fn world_with(tweak: impl FnOnce(YoutubeAdapter) -> YoutubeAdapter) -> World {
    let sandbox = Sandbox::start().await.unwrap();
    let clock = TestClock::at(MORNING);
    let adapter = tweak(
        YoutubeAdapter::new(&settings(&sandbox.base_url(), "youtube"))
            .unwrap()
            .with_clock(clock.clone())
            .with_chunk_size(CHUNK),
    );
    World {
        sandbox,
        adapter,
        clock,
    }
}

async fn world() -> World {
    world_with(|adapter| adapter).await
}

impl World {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Authorize and consent as `user`; returns the code and the verifier.
    async fn code(&self, user: &str) -> (String, Secret) {
        let code = platform_support::code(&self.adapter, user, REDIRECT_URI).await;
        (code.code, code.verifier.expect("Google gets PKCE"))
    }

    async fn try_connect(&self, user: &str) -> Result<Connected, ConnectError> {
        let (code, verifier) = self.code(user).await;
        self.adapter
            .connect(&code, Some(&verifier), REDIRECT_URI, self.now())
            .await
    }

    async fn connect(&self) -> Connected {
        self.try_connect(JANE).await.unwrap()
    }

    fn sample_url(&self) -> String {
        format!(
            "{}/sandbox/youtube/media/sample.mp4",
            self.sandbox.base_url()
        )
    }

    /// A valid video post pointing at the sandbox's sample video.
    fn video_post(&self) -> Post {
        let mut post = fixtures::post(&fixtures::key("jane", Platform::Youtube), 0);
        post.kind = PostKind::Video;
        post.target = Some(JANE_CHANNEL.into());
        post.content = Content {
            text: "Chapter one, read aloud.".into(),
            title: Some("Book two: chapter one".into()),
            links: vec!["https://example.com/book-two".into()],
            media: vec![video(self.sample_url())],
        };
        post
    }
}

#[tokio::test]
async fn connect_asks_for_offline_access_with_pkce_and_identifies_the_channel() {
    let w = world().await;
    let request = w.adapter.authorize("state-1", REDIRECT_URI).unwrap();
    let asked = query(&request.url);
    assert_eq!(param(&asked, "response_type"), Some("code"));
    assert_eq!(param(&asked, "client_id"), Some(CLIENT_ID));
    assert_eq!(param(&asked, "state"), Some("state-1"));
    assert_eq!(param(&asked, "code_challenge_method"), Some("S256"));
    assert_eq!(param(&asked, "code_challenge").map(str::len), Some(43));
    assert_eq!(param(&asked, "access_type"), Some("offline"));
    assert_eq!(param(&asked, "prompt"), Some("consent"));
    let scopes: Vec<&str> = param(&asked, "scope").unwrap().split(' ').collect();
    assert_eq!(scopes, SCOPES);
    assert_eq!(scopes, [UPLOAD_SCOPE, READONLY_SCOPE]);

    let connected = w.connect().await;
    let seen = w.sandbox.youtube().authorize_requests();
    let last = seen.last().unwrap();
    assert_eq!(last.access_type.as_deref(), Some("offline"));
    assert_eq!(last.prompt.as_deref(), Some("consent"));
    assert_eq!(last.code_challenge_method.as_deref(), Some("S256"));

    assert_eq!(connected.account.platform_id, JANE_CHANNEL);
    assert_eq!(connected.account.handle, "@janewrites");
    assert_eq!(connected.account.display_name, "Jane Writes");
    // The medium thumbnail of the channel's snippet.
    assert_eq!(
        connected.account.picture.as_deref(),
        Some(format!("https://yt3.ggpht.com/sandbox/{JANE_CHANNEL}=s240").as_str())
    );
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].id, JANE_CHANNEL);
    assert_eq!(connected.targets[0].kind, TargetKind::Profile);
    assert!(connected.grant.refresh_token.is_some());
    assert_eq!(connected.grant.issued_at, w.now());
    assert_eq!(
        connected.grant.expires_at,
        Some(w.now().saturating_add(Duration::from_secs(3599)))
    );
    // check() reads the same channel.
    let account = w.adapter.check(&connected.grant).await.unwrap();
    assert_eq!(account, connected.account);

    // Without the verifier Google refuses the code.
    let (code, _verifier) = w.code(JANE).await;
    let refused = w
        .adapter
        .connect(&code, None, REDIRECT_URI, w.now())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "code_rejected", "{refused:?}");
}

#[tokio::test]
async fn a_google_account_without_a_channel_is_refused_by_name() {
    let w = world().await;
    let error = w.try_connect(NO_CHANNEL).await.unwrap_err();
    match &error {
        ConnectError::RequirementUnmet(reason) => {
            assert_eq!(reason.code, ReasonCode::YoutubeChannelRequired);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(error.code(), "youtube_channel_required");
    // The tokens nobody will store were revoked.
    let revoked = w.sandbox.youtube().revoked_tokens();
    assert!(
        revoked
            .iter()
            .any(|t| t.kind == TokenKind::Refresh && t.cause == RevokeCause::RevokeEndpoint),
        "{revoked:?}"
    );
}

#[tokio::test]
async fn refresh_keeps_the_refresh_token_google_does_not_rotate() {
    let w = world().await;
    let connected = w.connect().await;
    let old_refresh = connected.grant.refresh_token.clone().unwrap();
    w.clock.set("2026-11-28T13:30:00Z");
    let renewed = w.adapter.refresh(&connected.grant).await.unwrap();
    assert_ne!(
        renewed.access_token.expose(),
        connected.grant.access_token.expose()
    );
    assert_eq!(
        renewed.refresh_token.as_ref().map(Secret::expose),
        Some(old_refresh.expose()),
        "a refresh answer without refresh_token keeps the old one"
    );
    assert_eq!(renewed.issued_at, w.now());
    assert_eq!(renewed.scopes, connected.grant.scopes);
    // The same refresh token works again: nothing was spent.
    let again = w.adapter.refresh(&renewed).await.unwrap();
    assert_eq!(again.refresh_token, renewed.refresh_token);
    assert!(w.adapter.check(&again).await.is_ok());
    let youtube = w.sandbox.youtube();
    assert_eq!(youtube.refresh_calls(), 2);
    assert!(youtube
        .token_requests()
        .iter()
        .all(|r| r.outcome == TokenOutcome::Issued));
}

#[tokio::test]
async fn an_expired_or_revoked_refresh_token_kills_the_grant() {
    let w = world().await;
    let connected = w.connect().await;
    let youtube = w.sandbox.youtube();
    youtube.expire_access_tokens(JANE).unwrap();
    assert_eq!(
        w.adapter.check(&connected.grant).await,
        Err(PortError::Unauthorized)
    );
    youtube.revoke_user_grants(JANE).unwrap();
    match w.adapter.refresh(&connected.grant).await {
        Err(PortError::GrantDead(reason)) => {
            assert_eq!(reason.code, ReasonCode::GrantExpired);
            assert_eq!(
                reason.platform_message.as_deref(),
                Some("Token has been expired or revoked.")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn revoke_ends_the_whole_grant() {
    let w = world().await;
    let connected = w.connect().await;
    assert_eq!(
        w.adapter.revoke(&connected.grant).await,
        Ok(RevokeOutcome::Revoked)
    );
    let revoked = w.sandbox.youtube().revoked_tokens();
    assert!(revoked
        .iter()
        .any(|t| t.kind == TokenKind::Refresh && t.cause == RevokeCause::RevokeEndpoint));
    assert!(matches!(
        w.adapter.refresh(&connected.grant).await,
        Err(PortError::GrantDead(_))
    ));
    assert_eq!(
        w.adapter.check(&connected.grant).await,
        Err(PortError::Unauthorized)
    );
    // Revoking again (a retried disconnect) is not an error either.
    assert_eq!(
        w.adapter.revoke(&connected.grant).await,
        Ok(RevokeOutcome::Revoked)
    );
}

#[tokio::test]
async fn publishes_by_resumable_upload_and_resumes_after_a_dropped_chunk() {
    let w = world().await;
    let connected = w.connect().await;
    let youtube = w.sandbox.youtube();
    let quota_before = youtube.remaining_quota();
    // The second chunk keeps half its bytes and loses its answer.
    youtube.drop_next_chunks(1);
    let first = w
        .adapter
        .publish(&connected.grant, &w.video_post())
        .await
        .unwrap();
    youtube.drop_next_chunks(2);
    let post = w.video_post();
    let receipt = w.adapter.publish(&connected.grant, &post).await.unwrap();
    assert_ne!(first.platform_post_id, receipt.platform_post_id);
    assert_eq!(
        receipt.url.as_deref(),
        Some(
            format!(
                "https://www.youtube.com/watch?v={}",
                receipt.platform_post_id
            )
            .as_str()
        )
    );
    let videos = youtube.videos();
    assert_eq!(videos.len(), 2);
    for video in &videos {
        assert!(video.matches_sample, "the bytes arrived whole and in order");
        assert_eq!(video.size, 600 * 1024);
        assert_eq!(video.channel_id, JANE_CHANNEL);
        assert_eq!(video.title, "Book two: chapter one");
        assert_eq!(
            video.description,
            "Chapter one, read aloud.\nhttps://example.com/book-two"
        );
        assert_eq!(video.privacy_status, "public");
        assert_eq!(video.content_type, "video/mp4");
    }
    assert_eq!(videos[1].id, receipt.platform_post_id);
    assert_eq!(
        youtube.pending_chunk_drops(),
        0,
        "both dropped chunks happened"
    );
    // Two inserts at 1600 units each, counted alike by Google and the adapter.
    assert_eq!(youtube.remaining_quota(), quota_before - 2 * 1600);
    assert_eq!(w.adapter.remaining_quota(), 10_000 - 1 - 2 * 1600);
}

#[tokio::test]
async fn an_upload_the_day_cannot_pay_for_waits_for_pacific_midnight() {
    let w = world_with(|adapter| {
        adapter.with_quota(QuotaPolicy {
            daily_units: 3200,
            upload_units: 1600,
            list_units: 0,
        })
    })
    .await;
    let connected = w.connect().await;
    let post = w.video_post();
    w.adapter.publish(&connected.grant, &post).await.unwrap();
    w.adapter.publish(&connected.grant, &post).await.unwrap();
    let held = w.adapter.publish(&connected.grant, &post).await;
    assert_eq!(
        held,
        Err(PortError::RateLimited {
            retry_after: TWENTY_HOURS,
            scope: LimitScope::Platform,
        })
    );
    assert_eq!(
        w.sandbox.youtube().videos().len(),
        2,
        "nothing was sent for the held upload"
    );
    // A minute before midnight it is still held, until exactly midnight.
    w.clock.set("2026-11-29T07:59:00Z");
    assert_eq!(
        w.adapter.publish(&connected.grant, &post).await,
        Err(PortError::RateLimited {
            retry_after: Duration::from_secs(60),
            scope: LimitScope::Platform,
        })
    );
    w.clock.set(NEXT_PACIFIC_MIDNIGHT);
    assert!(w.adapter.publish(&connected.grant, &post).await.is_ok());
    assert_eq!(w.sandbox.youtube().videos().len(), 3);
}

#[tokio::test]
async fn google_quota_and_upload_limit_answers_hold_posts_until_pacific_midnight() {
    let w = world().await;
    let connected = w.connect().await;
    let youtube = w.sandbox.youtube();
    let post = w.video_post();

    // Google's count says the day is spent although the adapter's does not.
    youtube.set_remaining_quota(100);
    assert_eq!(
        w.adapter.publish(&connected.grant, &post).await,
        Err(PortError::RateLimited {
            retry_after: TWENTY_HOURS,
            scope: LimitScope::Platform,
        })
    );
    assert_eq!(
        w.adapter.remaining_quota(),
        0,
        "Google's word wins for today"
    );
    assert!(youtube.videos().is_empty());

    // The next Pacific day: Google resets, and so does the adapter's count.
    youtube.set_remaining_quota(10_000);
    w.clock.set(NEXT_PACIFIC_MIDNIGHT);
    assert_eq!(w.adapter.remaining_quota(), 10_000);

    // The channel uploaded all it may today: only this connection waits.
    youtube.limit_uploads(JANE).unwrap();
    assert_eq!(
        w.adapter.publish(&connected.grant, &post).await,
        Err(PortError::RateLimited {
            retry_after: Duration::from_secs(24 * 3600),
            scope: LimitScope::Connection,
        })
    );
    youtube.clear_upload_limit(JANE).unwrap();
    assert!(w.adapter.publish(&connected.grant, &post).await.is_ok());

    // An access token Google no longer takes is Unauthorized (refresh, then retry).
    youtube.expire_access_tokens(JANE).unwrap();
    assert_eq!(
        w.adapter.publish(&connected.grant, &post).await,
        Err(PortError::Unauthorized)
    );
}

#[tokio::test]
async fn a_5xx_starting_an_upload_publishes_nothing() {
    let w = world().await;
    let connected = w.connect().await;
    let youtube = w.sandbox.youtube();
    youtube
        .fail_next(1, axum::http::StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    match w.adapter.publish(&connected.grant, &w.video_post()).await {
        Err(PortError::Unavailable {
            maybe_delivered, ..
        }) => assert!(!maybe_delivered, "starting a session publishes nothing"),
        other => panic!("{other:?}"),
    }
    assert!(youtube.videos().is_empty());
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
    let valid = w.video_post();
    assert_eq!(refusals(&valid), Vec::<&str>::new());

    let edit = |f: &dyn Fn(&mut Post)| {
        let mut post = valid.clone();
        f(&mut post);
        post
    };
    let community = edit(&|p| p.kind = PostKind::Community);
    assert_eq!(refusals(&community), ["not_offered_by_platform"]);
    let json = serde_json::to_value(&w.adapter.validate(&community).unwrap_err()[0]).unwrap();
    assert_eq!(json["code"], "not_offered_by_platform");

    let cases: Vec<(Post, Vec<&str>)> = vec![
        (edit(&|p| p.content.title = None), vec!["title_required"]),
        (
            edit(&|p| p.content.title = Some("   ".into())),
            vec!["title_required"],
        ),
        (
            edit(&|p| p.content.title = Some("é".repeat(101))),
            vec!["title_too_long"],
        ),
        (edit(&|p| p.content.title = Some("é".repeat(100))), vec![]),
        (
            edit(&|p| p.content.title = Some("A <b>bold</b> title".into())),
            vec!["forbidden_characters"],
        ),
        (
            edit(&|p| {
                // 2501 characters, 5002 bytes.
                p.content.text = "é".repeat(2501);
                p.content.links.clear();
            }),
            vec!["text_too_many_bytes"],
        ),
        (
            edit(&|p| {
                p.content.text = "a".repeat(5000);
                p.content.links.clear();
            }),
            vec![],
        ),
        (
            edit(&|p| p.content.text = "1 > 0".into()),
            vec!["forbidden_characters"],
        ),
        (edit(&|p| p.content.media.clear()), vec!["media_required"]),
        (
            edit(&|p| {
                p.content.media = vec![
                    video("https://a.example/1.mp4"),
                    video("https://a.example/2.mp4"),
                ]
            }),
            vec!["too_many_videos"],
        ),
        (
            edit(&|p| {
                p.content.media = vec![Media {
                    url: "https://a.example/cover.jpg".into(),
                    kind: MediaKind::Image,
                    alt: None,
                }]
            }),
            vec!["too_many_images", "media_required"],
        ),
    ];
    for (post, expected) in cases {
        assert_eq!(refusals(&post), expected, "{:?}", post.content);
    }

    // A post that slipped past validation is refused before any quota is spent.
    let connected = w.connect().await;
    let before = w.adapter.remaining_quota();
    match w.adapter.publish(&connected.grant, &community).await {
        Err(PortError::ContentRejected(reason)) => {
            assert_eq!(reason.code, ReasonCode::ContentRejected)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.adapter.remaining_quota(), before);
}

/// The whole path on virtual time: the engine's queue and connection actor with the real
/// adapter against the sandbox. The project's count allows one upload a day; of two posts
/// due together, one publishes and the other is held — still scheduled, not failed — until
/// the next Pacific midnight, when it publishes.
#[tokio::test(start_paused = true)]
async fn the_queue_holds_a_post_beyond_the_quota_and_publishes_it_after_pacific_midnight() {
    use social_studio_actors::testkit::{open_store, post_due, wait_for_event};
    use social_studio_actors::{Engine, EngineConfig, TokioClock};
    use social_studio_storage::{ConnectionKey, PenName, PostState, StateLabel};

    let sandbox = Sandbox::start().await.unwrap();
    let start = Timestamp::parse_rfc3339(MORNING).unwrap();
    let midnight = Timestamp::parse_rfc3339(NEXT_PACIFIC_MIDNIGHT).unwrap();
    let clock = Arc::new(TokioClock::starting_at(start));
    let adapter = Arc::new(
        YoutubeAdapter::new(&settings(&sandbox.base_url(), "youtube"))
            .unwrap()
            .with_clock(clock.clone())
            .with_chunk_size(CHUNK)
            .with_quota(QuotaPolicy {
                daily_units: 1600,
                upload_units: 1600,
                list_units: 0,
            }),
    );
    let connected = platform_support::connect(adapter.as_ref(), JANE, REDIRECT_URI, start)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let config = EngineConfig {
        jitter_seed: Some(7),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), vec![adapter.clone()], clock.clone(), config)
        .await
        .unwrap();
    let mut events = engine.subscribe();
    let key = ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::Youtube);
    engine
        .connect(
            key.clone(),
            connected.account,
            connected.targets,
            connected.grant,
            false,
        )
        .await
        .unwrap();

    let due = start.saturating_add(Duration::from_secs(60));
    let sample = format!("{}/sandbox/youtube/media/sample.mp4", sandbox.base_url());
    let mut ids = Vec::new();
    for text in ["first", "second"] {
        let mut post = post_due(&key, due, text);
        post.kind = PostKind::Video;
        post.target = Some(JANE_CHANNEL.into());
        post.content.title = Some(format!("The {text} video"));
        post.content.links.clear();
        post.content.media = vec![video(&sample)];
        ids.push(engine.schedule(post).await.unwrap().id);
    }

    // One publishes when due; the other goes back to waiting with the limit. The two
    // may be tried concurrently, so their events come in either order.
    let mut published = None;
    let mut sent_back = Vec::new();
    wait_for_event(&mut events, Duration::from_secs(3600), |e| {
        match (e.post, e.from, e.to) {
            (Some(id), _, Some(StateLabel::Published)) => published = Some(id),
            (Some(id), Some(StateLabel::Publishing), Some(to)) => sent_back.push((id, to)),
            _ => {}
        }
        published.is_some() && !sent_back.is_empty()
    })
    .await
    .expect("one post publishes and the other is tried when due");
    let first_id = published.unwrap();
    let held_id = *ids.iter().find(|id| **id != first_id).unwrap();
    assert_eq!(
        sent_back,
        [(held_id, StateLabel::Scheduled)],
        "held, not failed"
    );
    let held = store.post(held_id).await.unwrap().unwrap();
    assert_eq!(held.state, PostState::Scheduled);
    assert_eq!(held.next_attempt_at, Some(midnight));
    assert_eq!(
        held.reason().map(|r| r.code),
        Some(ReasonCode::RateLimited),
        "held with the reason a person sees"
    );
    assert_eq!(sandbox.youtube().videos().len(), 1);

    // Virtual time runs on to Pacific midnight; the queue tries again by itself.
    let second = wait_for_event(&mut events, Duration::from_secs(24 * 3600), |e| {
        e.post == Some(held_id) && e.to == Some(StateLabel::Published)
    })
    .await
    .expect("the held post publishes after Pacific midnight");
    assert!(second.at >= midnight, "published at {:?}", second.at);
    let videos = sandbox.youtube().videos();
    assert_eq!(videos.len(), 2);
    assert!(videos.iter().all(|v| v.matches_sample));
    let held = store.post(held_id).await.unwrap().unwrap();
    assert!(
        matches!(held.state, PostState::Published(_)),
        "{:?}",
        held.state
    );
    engine.shutdown().await;
}
