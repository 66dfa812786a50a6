//! The Bluesky adapter against the sandbox's PDS and PLC directory, over real loopback
//! HTTP: the app-password connect, session rotation with its grace, verify noticing a
//! revoked app password, idempotent publishing with facets and images, every mapped
//! error, and — with the real binary — a crash between the publish call and its answer.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use social_studio::config::Config;
use social_studio::platforms::bluesky::{
    BlueskySettings, SessionEndpoint, PROVEN_WITHIN, REFRESH_GRACE,
};
use social_studio::platforms::{Adapter, BlueskyAdapter, ConnectError, Connected, ContentError};
use social_studio::sandbox::bluesky::{
    ALEX_DID, APP_PASSWORD_NAME, JANE_APP_PASSWORD, JANE_DID, JANE_HANDLE, MAIN_PASSWORD,
};
use social_studio::sandbox::{RefreshOutcome, Sandbox};
use social_studio::studio::{Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_actors::{LimitScope, LostRefreshPolicy, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    ConnectionKey, Content, Media, MediaKind, PenName, Platform, Post, PostKind, ReasonCode,
    Secret, Timestamp,
};

const POST: &str = "app.bsky.feed.post";

#[path = "support/platform.rs"]
mod platform_support;

use platform_support::{bluesky_settings, now, unix_now, StoppedClock};

type World = platform_support::World<BlueskyAdapter>;

async fn world() -> World {
    let sandbox = Sandbox::start().await.unwrap();
    let adapter = BlueskyAdapter::new(&bluesky_settings(&sandbox.base_url())).unwrap();
    World { sandbox, adapter }
}

impl World {
    async fn connect(&self) -> Connected {
        self.adapter
            .connect_with_app_password(JANE_HANDLE, Secret::new(JANE_APP_PASSWORD), now())
            .await
            .unwrap()
    }
}

fn post(text: &str) -> Post {
    let mut post = platform_support::post(
        Platform::Bluesky,
        Content {
            text: text.into(),
            title: None,
            links: vec![],
            media: vec![],
        },
    );
    post.kind = PostKind::Feed;
    post.target = None;
    post.attempts = 1;
    post
}

fn image(url: &str, alt: Option<&str>) -> Media {
    Media {
        alt: alt.map(str::to_owned),
        ..platform_support::image(url)
    }
}

fn connect_code(error: &ConnectError) -> &'static str {
    error.code()
}

#[tokio::test]
async fn connect_resolves_the_handle_opens_a_session_and_keeps_no_password() {
    let w = world().await;
    let at = now();
    let connected = w
        .adapter
        .connect_with_app_password(
            &format!("@{JANE_HANDLE}"),
            Secret::new(JANE_APP_PASSWORD),
            at,
        )
        .await
        .unwrap();
    assert_eq!(connected.account.platform_id, JANE_DID);
    assert_eq!(connected.account.handle, format!("@{JANE_HANDLE}"));
    // The avatar is in the profile, which the adapter does not read.
    assert_eq!(connected.account.picture, None);
    assert_eq!(connected.targets.len(), 1);
    assert_eq!(connected.targets[0].id, JANE_DID);
    let grant = &connected.grant;
    let endpoint = SessionEndpoint::of(grant).unwrap();
    assert_eq!(endpoint.pds, w.sandbox.bluesky().pds_url());
    assert_eq!(endpoint.did, JANE_DID);
    assert_eq!(endpoint.handle, JANE_HANDLE);
    // Lifetimes from the JWTs: 2 hours of access, 90 days of refresh.
    assert_eq!(grant.issued_at, at);
    assert_eq!(
        grant.expires_at,
        Some(at.saturating_add(Duration::from_secs(7200)))
    );
    assert_eq!(
        grant.refresh_expires_at,
        Some(at.saturating_add(Duration::from_secs(90 * 86_400)))
    );
    assert_eq!(grant.scopes, ["com.atproto.appPass"]);
    // Nothing of the password is kept anywhere in the grant.
    let stored = serde_json::to_string(grant).unwrap();
    assert!(!stored.contains(JANE_APP_PASSWORD), "{stored}");
    assert!(!format!("{connected:?}").contains(JANE_APP_PASSWORD));
    assert_eq!(w.sandbox.bluesky().sessions_created(), 1);
    assert_eq!(
        w.adapter.lost_refresh_policy(),
        LostRefreshPolicy::GracePeriod(REFRESH_GRACE)
    );
    assert!(w.adapter.idempotent_publish());
}

#[tokio::test]
async fn without_a_did_document_in_the_session_the_plc_directory_names_the_pds() {
    let w = world().await;
    w.sandbox.bluesky().set_session_did_doc(false);
    let connected = w.connect().await;
    assert_eq!(
        SessionEndpoint::of(&connected.grant).unwrap().pds,
        w.sandbox.bluesky().pds_url()
    );
    // The PLC directory is really asked: with it unreachable the connect cannot finish.
    let base = w.sandbox.base_url();
    let adapter = BlueskyAdapter::new(&BlueskySettings {
        service: format!("{base}/bluesky"),
        plc_directory: "http://127.0.0.1:9/plc".into(),
        allow_private_media_urls: true,
    })
    .unwrap();
    let error = adapter
        .connect_with_app_password(JANE_HANDLE, Secret::new(JANE_APP_PASSWORD), now())
        .await
        .unwrap_err();
    assert_eq!(connect_code(&error), "platform_unavailable", "{error:?}");
}

/// A DID document naming a PDS outside the public internet is refused at connect unless
/// `allow_private_media_urls`: the engine's calls, with the account's tokens, never go
/// there. The configured service (here reached as `localhost`) is the operator's choice
/// and stays reachable; the PDS the sandbox's DID document names is on 127.0.0.1,
/// another origin.
#[tokio::test]
async fn a_pds_outside_the_public_internet_is_refused_unless_allowed() {
    let sandbox = Sandbox::start().await.unwrap();
    let as_localhost = bluesky_settings(&sandbox.base_url().replace("127.0.0.1", "localhost"));
    let refusing = BlueskyAdapter::new(&BlueskySettings {
        allow_private_media_urls: false,
        ..as_localhost.clone()
    })
    .unwrap();
    let error = refusing
        .connect_with_app_password(JANE_HANDLE, Secret::new(JANE_APP_PASSWORD), now())
        .await
        .unwrap_err();
    assert_eq!(connect_code(&error), "pds_not_public", "{error:?}");

    let allowing = BlueskyAdapter::new(&as_localhost).unwrap();
    let connected = allowing
        .connect_with_app_password(JANE_HANDLE, Secret::new(JANE_APP_PASSWORD), now())
        .await
        .unwrap();
    assert_eq!(
        SessionEndpoint::of(&connected.grant).unwrap().pds,
        sandbox.bluesky().pds_url()
    );
}

#[tokio::test]
async fn what_is_not_an_app_password_is_refused_before_any_call() {
    let w = world().await;
    for password in [MAIN_PASSWORD, "hunter2", "abcd-efgh-ijkl", ""] {
        let error = w
            .adapter
            .connect_with_app_password(JANE_HANDLE, Secret::new(password), now())
            .await
            .unwrap_err();
        assert_eq!(
            connect_code(&error),
            "app_password_required",
            "{password}: {error:?}"
        );
    }
    assert_eq!(w.sandbox.bluesky().sessions_created(), 0);
}

#[tokio::test]
async fn a_wrong_or_revoked_app_password_and_an_unknown_handle_are_named_refusals() {
    let w = world().await;
    let error = w
        .adapter
        .connect_with_app_password(JANE_HANDLE, Secret::new("zzzz-zzzz-zzzz-zzzz"), now())
        .await
        .unwrap_err();
    assert_eq!(connect_code(&error), "app_password_rejected");
    match &error {
        ConnectError::AuthorizationRefused(reason) => assert_eq!(
            reason.platform_message.as_deref(),
            Some("AuthenticationRequired: Invalid identifier or password")
        ),
        other => panic!("{other:?}"),
    }
    w.sandbox
        .bluesky()
        .revoke_app_password(JANE_HANDLE, APP_PASSWORD_NAME)
        .unwrap();
    let error = w
        .adapter
        .connect_with_app_password(JANE_HANDLE, Secret::new(JANE_APP_PASSWORD), now())
        .await
        .unwrap_err();
    assert_eq!(connect_code(&error), "app_password_rejected");
    let error = w
        .adapter
        .connect_with_app_password("ghost.sandbox.test", Secret::new(JANE_APP_PASSWORD), now())
        .await
        .unwrap_err();
    assert_eq!(connect_code(&error), "app_password_rejected");
    assert_eq!(w.sandbox.bluesky().sessions_created(), 0);
}

#[tokio::test]
async fn a_taken_down_account_and_a_rate_limited_sign_in_are_classified() {
    let w = world().await;
    w.sandbox.bluesky().rate_limit_next(1, unix_now() + 300);
    let error = w
        .adapter
        .connect_with_app_password(JANE_HANDLE, Secret::new(JANE_APP_PASSWORD), now())
        .await
        .unwrap_err();
    match error {
        ConnectError::RateLimited { retry_after } => {
            assert!(retry_after > Duration::from_secs(200), "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
    let grant = w.connect().await.grant;
    w.sandbox.bluesky().take_down(JANE_HANDLE).unwrap();
    // The session names the takedown...
    match w.adapter.refresh(&grant).await {
        Err(PortError::RequirementUnmet(reason)) => {
            assert_eq!(reason.code, ReasonCode::AccountSuspended)
        }
        other => panic!("{other:?}"),
    }
    // ...a new sign-in with an app password cannot: the reference PDS refuses it as a
    // wrong password (tests/pds_conformance.rs shows it).
    let error = w
        .adapter
        .connect_with_app_password(JANE_HANDLE, Secret::new(JANE_APP_PASSWORD), now())
        .await
        .unwrap_err();
    assert_eq!(connect_code(&error), "app_password_rejected", "{error:?}");
}

#[tokio::test]
async fn refresh_rotates_both_tokens_and_the_old_one_has_a_two_hour_grace() {
    let w = world().await;
    let first = w.connect().await.grant;
    let second = w.adapter.refresh(&first).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.endpoint, first.endpoint);
    // Within the grace the spent token still answers (with the same successor).
    let again = w.adapter.refresh(&first).await.unwrap();
    let third = w.adapter.refresh(&again).await.unwrap();
    assert_eq!(
        w.sandbox.bluesky().refreshes(),
        [
            RefreshOutcome::Rotated,
            RefreshOutcome::GraceReplay,
            RefreshOutcome::Rotated
        ]
    );
    // Past the grace the spent token is dead; the newest one lives on.
    w.sandbox
        .bluesky()
        .advance(REFRESH_GRACE + Duration::from_secs(1));
    match w.adapter.refresh(&first).await {
        Err(PortError::GrantDead(reason)) => {
            assert_eq!(
                reason.platform_message.as_deref(),
                Some("ExpiredToken: Token has been revoked")
            )
        }
        other => panic!("{other:?}"),
    }
    w.adapter.refresh(&third).await.unwrap();
}

#[tokio::test]
async fn check_demands_a_renewal_and_a_revoked_app_password_kills_the_refresh() {
    let w = world().await;
    let grant = w.connect().await.grant;
    // Freshly issued: the session is read back.
    let account = w.adapter.check(&grant).await.unwrap();
    assert_eq!(account.platform_id, JANE_DID);
    w.sandbox
        .bluesky()
        .revoke_app_password(JANE_HANDLE, APP_PASSWORD_NAME)
        .unwrap();
    // The access token outlives the revocation (as on the reference PDS)...
    assert!(w.adapter.check(&grant).await.is_ok());
    // ...so a grant not renewed just now must be renewed before it counts as alive,
    let later = BlueskyAdapter::new(&bluesky_settings(&w.sandbox.base_url()))
        .unwrap()
        .with_clock(Arc::new(StoppedClock(
            grant
                .issued_at
                .saturating_add(PROVEN_WITHIN + Duration::from_secs(1)),
        )));
    assert_eq!(later.check(&grant).await, Err(PortError::Unauthorized));
    // ...and the renewal says the app password was revoked.
    match later.refresh(&grant).await {
        Err(PortError::GrantDead(reason)) => {
            assert_eq!(reason.code, ReasonCode::RevokedByUser);
            assert_eq!(
                reason.platform_message.as_deref(),
                Some("ExpiredToken: Token has been revoked")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_text_post_carries_link_mention_and_hashtag_facets_at_byte_offsets() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let text = "Café news → https://example.com/book-two, thanks @alex.sandbox.test and @ghost.sandbox.test #amwriting #été";
    let mut p = post(text);
    p.content.links = vec![
        "https://example.com/book-two".into(),
        "https://example.com/tour".into(),
    ];
    let receipt = w.adapter.publish(&grant, &p).await.unwrap();
    let records = w.sandbox.bluesky().records(JANE_DID);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.collection, POST);
    assert_eq!(record.rkey.len(), 13);
    assert_eq!(
        receipt.platform_post_id,
        format!("at://{JANE_DID}/{POST}/{}", record.rkey)
    );
    assert_eq!(
        receipt.url.as_deref(),
        Some(
            format!(
                "https://bsky.app/profile/{JANE_HANDLE}/post/{}",
                record.rkey
            )
            .as_str()
        )
    );
    let stored_text = record.value["text"].as_str().unwrap();
    // The link the text lacks is appended on its own line.
    assert_eq!(stored_text, format!("{text}\nhttps://example.com/tour"));
    let facets = record.value["facets"].as_array().unwrap();
    let span = |needle: &str| {
        let start = stored_text.find(needle).unwrap();
        json!({"byteStart": start, "byteEnd": start + needle.len()})
    };
    let find = |kind: &str| -> Vec<&Value> {
        facets
            .iter()
            .filter(|f| f["features"][0]["$type"] == kind)
            .collect()
    };
    let links = find("app.bsky.richtext.facet#link");
    assert_eq!(links.len(), 2);
    assert_eq!(links[0]["index"], span("https://example.com/book-two"));
    // Byte offsets, not characters: "Café" and "→" are multi-byte.
    assert_ne!(
        links[0]["index"]["byteStart"],
        json!(stored_text[..stored_text.find("https").unwrap()]
            .chars()
            .count())
    );
    assert_eq!(
        links[0]["features"][0]["uri"],
        "https://example.com/book-two"
    );
    let mentions = find("app.bsky.richtext.facet#mention");
    assert_eq!(mentions.len(), 1, "the unknown handle stays plain text");
    assert_eq!(mentions[0]["index"], span("@alex.sandbox.test"));
    assert_eq!(mentions[0]["features"][0]["did"], ALEX_DID);
    let tags = find("app.bsky.richtext.facet#tag");
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[1]["index"], span("#été"));
    assert_eq!(tags[1]["features"][0]["tag"], "été");
    assert_eq!(tags[0]["features"][0]["tag"], "amwriting");
    // Without images, the first link is a card.
    assert_eq!(record.value["embed"]["$type"], "app.bsky.embed.external");
    assert_eq!(
        record.value["embed"]["external"]["uri"],
        "https://example.com/book-two"
    );
    // Listable through the lexicon too.
    let list: Value = reqwest::get(format!(
        "{}/xrpc/com.atproto.repo.listRecords?repo={JANE_DID}&collection={POST}",
        w.sandbox.bluesky().pds_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(list["records"][0]["uri"], receipt.platform_post_id);
}

#[tokio::test]
async fn images_are_uploaded_as_blobs_with_their_alt_text() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let base = w.sandbox.base_url();
    let mut p = post("Two covers");
    p.content.media = vec![
        image(
            &format!("{base}/sandbox/bluesky/media/one.png"),
            Some("A blue book cover"),
        ),
        image(&format!("{base}/sandbox/bluesky/media/two.png"), None),
    ];
    p.content.links = vec!["https://example.com/covers".into()];
    w.adapter.publish(&grant, &p).await.unwrap();
    let blobs = w.sandbox.bluesky().blobs();
    assert_eq!(blobs.len(), 2);
    assert_eq!(blobs[0].1, "image/png");
    let record = &w.sandbox.bluesky().records(JANE_DID)[0];
    let embed = &record.value["embed"];
    assert_eq!(embed["$type"], "app.bsky.embed.images");
    assert_eq!(embed["images"][0]["alt"], "A blue book cover");
    assert_eq!(embed["images"][1]["alt"], "");
    assert_eq!(
        embed["images"][0]["image"]["ref"]["$link"],
        blobs[0].0.as_str()
    );
}

#[tokio::test]
async fn publishing_the_same_post_again_confirms_the_record_instead_of_duplicating_it() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let p = post("Only once, however often it is sent");
    let first = w.adapter.publish(&grant, &p).await.unwrap();
    // The same post sent again on a first attempt: the PDS refuses the taken key (500,
    // like the reference PDS), and the adapter finds its record.
    let second = w.adapter.publish(&grant, &p).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(w.sandbox.bluesky().records(JANE_DID).len(), 1);

    // A lost answer: the record is written and the answer never comes; the adapter
    // looks it up at once and confirms it.
    let q = post("The answer to this one is lost");
    w.sandbox.bluesky().drop_next(1);
    let receipt = w.adapter.publish(&grant, &q).await.unwrap();
    assert_eq!(w.sandbox.bluesky().records(JANE_DID).len(), 2);
    assert!(receipt
        .platform_post_id
        .ends_with(&w.sandbox.bluesky().records(JANE_DID)[1].rkey));

    // The look-up lost too: maybe delivered (the engine retries, never duplicates), and
    // the retry finds the record before creating anything.
    let mut r = post("Both answers are lost");
    w.sandbox.bluesky().drop_next(2);
    match w.adapter.publish(&grant, &r).await {
        Err(PortError::Unavailable {
            maybe_delivered, ..
        }) => assert!(maybe_delivered),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sandbox.bluesky().records(JANE_DID).len(), 3);
    r.attempts = 2;
    let receipt = w.adapter.publish(&grant, &r).await.unwrap();
    assert_eq!(w.sandbox.bluesky().records(JANE_DID).len(), 3);
    assert!(receipt
        .platform_post_id
        .ends_with(&w.sandbox.bluesky().records(JANE_DID)[2].rkey));
}

#[tokio::test]
async fn platform_errors_are_classified() {
    let w = world().await;
    let grant = w.connect().await.grant;
    let bsky = w.sandbox.bluesky();

    // 429 RateLimitExceeded: wait until RateLimit-Reset.
    bsky.rate_limit_next(1, unix_now() + 600);
    match w.adapter.publish(&grant, &post("limited")).await {
        Err(PortError::RateLimited { retry_after, scope }) => {
            assert_eq!(scope, LimitScope::Connection);
            assert!(
                retry_after > Duration::from_secs(500) && retry_after <= Duration::from_secs(601),
                "{retry_after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A 5xx that is not a duplicate: nothing there, the failure stands, not delivered.
    bsky.fail_next(1, StatusCode::SERVICE_UNAVAILABLE).unwrap();
    match w.adapter.publish(&grant, &post("unavailable")).await {
        Err(PortError::Unavailable {
            maybe_delivered, ..
        }) => assert!(!maybe_delivered),
        other => panic!("{other:?}"),
    }
    // An over-long post that slipped past validation: the PDS's words.
    let mut long = post("");
    long.content.text = "a".repeat(301);
    assert!(matches!(
        w.adapter.publish(&grant, &long).await,
        Err(PortError::ContentRejected(_))
    ));
    // InvalidToken (a token the PDS did not issue): refresh, then retry.
    let mut forged = grant.clone();
    forged.access_token = Secret::new(format!("{}x", grant.access_token.expose()));
    assert_eq!(
        w.adapter.publish(&forged, &post("forged")).await,
        Err(PortError::Unauthorized)
    );
    let mut forged_refresh = grant.clone();
    forged_refresh.refresh_token = Some(Secret::new("e30.e30.nope"));
    match w.adapter.refresh(&forged_refresh).await {
        Err(PortError::GrantDead(reason)) => {
            assert_eq!(reason.code, ReasonCode::AuthorizationInvalid)
        }
        other => panic!("{other:?}"),
    }
    // ExpiredToken on an access token: refresh (Unauthorized), and the refresh works.
    bsky.advance(Duration::from_secs(2 * 3600 + 1));
    assert_eq!(
        w.adapter.publish(&grant, &post("expired")).await,
        Err(PortError::Unauthorized)
    );
    let renewed = w.adapter.refresh(&grant).await.unwrap();
    w.adapter.publish(&renewed, &post("renewed")).await.unwrap();
    // AccountTakedown: the account is suspended.
    bsky.take_down(JANE_HANDLE).unwrap();
    match w.adapter.publish(&renewed, &post("taken down")).await {
        Err(PortError::RequirementUnmet(reason)) => {
            assert_eq!(reason.code, ReasonCode::AccountSuspended)
        }
        other => panic!("{other:?}"),
    }
    match w.adapter.refresh(&renewed).await {
        Err(PortError::RequirementUnmet(reason)) => {
            assert_eq!(reason.code, ReasonCode::AccountSuspended)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bsky.records(JANE_DID).len(), 1);
}

#[tokio::test]
async fn disconnect_deletes_the_session() {
    let w = world().await;
    let grant = w.connect().await.grant;
    assert_eq!(w.adapter.revoke(&grant).await, Ok(RevokeOutcome::Revoked));
    assert_eq!(w.sandbox.bluesky().deleted_sessions(), 1);
    assert!(matches!(
        w.adapter.refresh(&grant).await,
        Err(PortError::GrantDead(_))
    ));
    // Revoking an already-ended session is not an error.
    assert_eq!(w.adapter.revoke(&grant).await, Ok(RevokeOutcome::Revoked));
}

#[tokio::test]
async fn validation_counts_graphemes_and_bytes_separately() {
    let w = world().await;
    // 300 family emoji: 300 graphemes (allowed) but 7500 bytes (not).
    let family = "👨\u{200d}👩\u{200d}👧";
    let heavy = post(&family.repeat(300));
    assert_eq!(
        w.adapter.validate(&heavy),
        Err(vec![ContentError::TextTooManyBytes {
            limit: 3000,
            actual: family.len() * 300
        }])
    );
    let long = post(&"é".repeat(301));
    assert_eq!(
        w.adapter.validate(&long),
        Err(vec![ContentError::TextTooLong {
            limit: 300,
            actual: 301
        }])
    );
    assert_eq!(w.adapter.validate(&post(&"é".repeat(300))), Ok(()));
    let mut many = post("five");
    many.content.media = (0..5)
        .map(|i| image(&format!("https://example.com/{i}.png"), None))
        .collect();
    assert_eq!(
        w.adapter.validate(&many),
        Err(vec![ContentError::TooManyImages {
            limit: 4,
            actual: 5
        }])
    );
    let mut video = post("clip");
    video.content.media = vec![Media {
        url: "https://example.com/a.mp4".into(),
        kind: MediaKind::Video,
        alt: None,
    }];
    assert_eq!(
        w.adapter.validate(&video),
        Err(vec![ContentError::VideoNotSupported])
    );
    assert_eq!(
        w.adapter.validate(&post("  ")),
        Err(vec![ContentError::EmptyPost])
    );
}

// ---- through the engine ----

async fn studio(sandbox: &Sandbox, dir: &Path) -> Studio {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        admin_token: Some(Secret::new("test-admin-token")),
        // The sandbox's media and DID documents are on 127.0.0.1.
        allow_private_media_urls: true,
        ..Config::default()
    };
    config.use_sandbox_for_unconfigured(&sandbox.base_url());
    Studio::open(config, StudioOptions::default())
        .await
        .unwrap()
}

fn bsky_key() -> ConnectionKey {
    ConnectionKey::new(PenName::parse("jane").unwrap(), Platform::Bluesky)
}

#[tokio::test]
async fn the_engine_connects_stores_no_password_verifies_by_refreshing_and_ends_the_session() {
    let sandbox = Sandbox::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let studio = studio(&sandbox, dir.path()).await;
    let pen = PenName::parse("jane").unwrap();
    // Not an app password: refused, nothing created.
    let error = studio
        .connect_with_app_password(
            &pen,
            Platform::Bluesky,
            JANE_HANDLE,
            Secret::new(MAIN_PASSWORD),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "app_password_required");
    assert!(studio
        .store()
        .connection(&bsky_key())
        .await
        .unwrap()
        .is_none());
    // The OAuth flow is the wrong one for Bluesky, and the app password the wrong one for X.
    assert_eq!(
        studio
            .begin_connect(&bsky_key(), false)
            .await
            .unwrap_err()
            .code(),
        "wrong_connect_flow"
    );
    let error = studio
        .connect_with_app_password(
            &pen,
            Platform::X,
            "jane",
            Secret::new(JANE_APP_PASSWORD),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "wrong_connect_flow");

    let entry = studio
        .connect_with_app_password(
            &pen,
            Platform::Bluesky,
            JANE_HANDLE,
            Secret::new(JANE_APP_PASSWORD),
            false,
        )
        .await
        .unwrap();
    assert_eq!(entry.status, "active");
    let grant = studio.store().grant(&bsky_key()).await.unwrap().unwrap();
    assert!(!serde_json::to_string(&grant)
        .unwrap()
        .contains(JANE_APP_PASSWORD));
    assert_eq!(SessionEndpoint::of(&grant).unwrap().did, JANE_DID);

    // Verify refreshes (the stored grant rotates) and passes.
    studio.verify(&bsky_key(), None).await.unwrap();
    let rotated = studio.store().grant(&bsky_key()).await.unwrap().unwrap();
    assert_ne!(rotated.refresh_token, grant.refresh_token);
    assert!(sandbox
        .bluesky()
        .refreshes()
        .contains(&RefreshOutcome::Rotated));

    // Revoked in Bluesky's settings: verify notices, though the access token still works.
    sandbox
        .bluesky()
        .revoke_app_password(JANE_HANDLE, APP_PASSWORD_NAME)
        .unwrap();
    let error = studio.verify(&bsky_key(), None).await.unwrap_err();
    assert_eq!(error.code(), "revoked_by_user", "{error}");
    let entry = studio.connection(&bsky_key()).await.unwrap();
    assert_eq!(entry.status, "expired");

    // Reconnect with a new app password, then disconnect: the session is deleted.
    let fresh = sandbox
        .bluesky()
        .create_app_password(JANE_HANDLE, "second")
        .unwrap();
    studio
        .connect_with_app_password(
            &pen,
            Platform::Bluesky,
            JANE_HANDLE,
            Secret::new(fresh),
            false,
        )
        .await
        .unwrap();
    let view = studio.disconnect(&bsky_key(), true).await.unwrap();
    assert_eq!(view.revoke, "revoked");
    assert_eq!(sandbox.bluesky().deleted_sessions(), 1);
    studio.shutdown().await;
}

// ---- the real binary, killed between the publish call and its answer ----

const ADMIN: &str = "crash-test-admin-token";

struct Engine {
    child: tokio::process::Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn_engine(data_dir: &Path, sandbox: &Sandbox) -> Engine {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let bluesky = bluesky_settings(&sandbox.base_url());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_social-studio"))
        .arg("serve")
        .env_remove("SOCIAL_STUDIO_CONFIG")
        .env("SOCIAL_STUDIO_DATA_DIR", data_dir)
        .env("SOCIAL_STUDIO_LISTEN", format!("127.0.0.1:{port}"))
        .env("SOCIAL_STUDIO_PUBLIC_URL", &base)
        .env("SOCIAL_STUDIO_ADMIN_TOKEN", ADMIN)
        .env("SOCIAL_STUDIO_BLUESKY_SERVICE", &bluesky.service)
        .env(
            "SOCIAL_STUDIO_BLUESKY_PLC_DIRECTORY",
            &bluesky.plc_directory,
        )
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let engine = Engine { child, base };
    // Up when the health route answers (bounded, polling the real condition).
    let client = reqwest::Client::new();
    let up = poll_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        async || {
            client
                .get(format!("{}/v1/pen-names/jane/connections", engine.base))
                .bearer_auth(ADMIN)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        },
    )
    .await;
    assert!(up.is_some(), "the engine did not come up");
    engine
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn a_crash_between_create_record_and_its_answer_leaves_exactly_one_post() {
    let sandbox = Sandbox::start().await.unwrap();
    let bsky = sandbox.bluesky();
    let data = tempfile::tempdir().unwrap();
    let mut engine = spawn_engine(data.path(), &sandbox).await;

    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/v1/pen-names/jane/connections/bluesky", engine.base),
        Some(json!({"identifier": JANE_HANDLE, "app_password": JANE_APP_PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active", "{body}");

    // The PDS writes the record, then holds the answer: the engine is mid-call.
    bsky.hold_next_create_record(1);
    let now = Timestamp::now_system().to_rfc3339();
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/v1/pen-names/jane/posts", engine.base),
        Some(json!({"platform": "bluesky", "text": "Published exactly once, crash or not #amwriting", "scheduled_at": now})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["posts"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        bsky.wait_for_records(1, Duration::from_secs(30)).await,
        "the record was never written"
    );
    let (_, before) = call(
        reqwest::Method::GET,
        format!("{}/v1/pen-names/jane/posts/{id}", engine.base),
        None,
    )
    .await;
    assert_eq!(
        before["state"], "publishing",
        "the engine is waiting for the answer: {before}"
    );

    // SIGKILL: no shutdown, no flush beyond what was already durable.
    engine.child.start_kill().unwrap();
    engine.child.wait().await.unwrap();
    let engine = spawn_engine(data.path(), &sandbox).await;
    let url = format!("{}/v1/pen-names/jane/posts/{id}", engine.base);
    let mut last = Value::Null;
    let post = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        async || {
            let (status, body) = call(reqwest::Method::GET, url.clone(), None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let state = body["state"].as_str().unwrap_or_default().to_owned();
            if state == "published" {
                return Some(body);
            }
            assert!(
                matches!(state.as_str(), "scheduled" | "publishing"),
                "the post went {state}: {body}"
            );
            last = body;
            None
        },
    )
    .await
    .unwrap_or_else(|| panic!("not published in time: {last}"));
    // Sent again after the restart (idempotent publishing), and confirmed, not duplicated.
    assert!(post["attempts"].as_u64().unwrap() >= 2, "{post}");
    let records = bsky.records(JANE_DID);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(post["receipt"]["id"], records[0].uri.as_str(), "{post}");
    bsky.release_held();
}
