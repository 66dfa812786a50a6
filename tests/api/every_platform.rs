//! Every platform the product promises, through the HTTP API only and against its
//! sandbox: connect, schedule, the grant dies at the platform, verify names why and the
//! post pauses — it does not fail — the author reconnects, and the post publishes
//! exactly once. One test per platform, so a failure names its platform.

use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::sandbox::Sandbox;

use crate::helpers::{in_a_day, spawn_app, TestApp};

const PEN: &str = "jane";

/// How the author connects.
enum Login {
    /// OAuth through the sandbox's consent page, signed in as this user.
    OAuth(&'static str),
    /// Bluesky: identifier and app password.
    AppPassword(&'static str, String),
}

/// One platform's life.
struct Case {
    platform: &'static str,
    /// Asked at every connect (a Bluesky reconnect needs a new app password).
    login: fn(&Sandbox) -> Login,
    /// The post's fields besides platform, target and time.
    post: Value,
    /// The author removes the app at the platform: the grant is dead there.
    kill_grant: fn(&Sandbox),
    /// How many posts the platform holds for the account.
    on_platform: fn(&Sandbox) -> usize,
}

async fn connect(app: &TestApp, case: &Case) -> Value {
    match (case.login)(&app.sandbox) {
        Login::OAuth(username) => app.connect_oauth(PEN, case.platform, username).await,
        Login::AppPassword(identifier, password) => {
            let (status, body) = app
                .post(
                    &format!("/v1/pen-names/{PEN}/connections/{}", case.platform),
                    json!({"identifier": identifier, "app_password": password}),
                )
                .await;
            assert!(status.is_success(), "{status} {body}");
            app.connection(PEN, case.platform).await
        }
    }
}

async fn whole_life(case: Case) {
    let app = spawn_app().await;
    let platform = case.platform;

    let entry = connect(&app, &case).await;
    assert_eq!(entry["status"], "active", "{entry}");
    assert!(entry["account"]["platform_id"].is_string(), "{entry}");

    let mut body = app.sandbox.fill_in(&case.post);
    body["platform"] = json!(platform);
    if let Some(target) = entry["targets"].get(0) {
        body["target"] = target["id"].clone();
    }
    body["scheduled_at"] = json!(in_a_day());
    let (status, created) = app.post(&format!("/v1/pen-names/{PEN}/posts"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["posts"][0]["id"]
        .as_str()
        .expect("post id")
        .to_string();

    // The grant dies at the platform; verify notices and names why.
    (case.kill_grant)(&app.sandbox);
    let (_status, verify) = app
        .post(
            &format!("/v1/pen-names/{PEN}/connections/{platform}/verify"),
            json!({}),
        )
        .await;
    let entry = app.connection(PEN, platform).await;
    assert_eq!(
        entry["status"], "expired",
        "verify: {verify}; entry: {entry}"
    );
    let reason = entry["reason"]["code"].as_str().expect("a named reason");
    assert!(
        entry["reason"]["remedy"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{entry}"
    );

    // The post pauses with that reason; nothing fails.
    let paused = app
        .post_until(PEN, &id, "paused", |p| p["state"] == "paused")
        .await;
    assert_eq!(paused["reason"]["code"], reason, "{paused}");

    // Reconnect the same account: active, and the post is scheduled again.
    let entry = connect(&app, &case).await;
    assert_eq!(entry["status"], "active", "{entry}");
    app.post_until(PEN, &id, "scheduled", |p| p["state"] == "scheduled")
        .await;

    // Bring it forward and watch it publish, once.
    app.bring_forward(PEN, &id).await;
    let published = app
        .post_until(PEN, &id, "published", |p| {
            matches!(p["state"].as_str(), Some("published" | "failed" | "held"))
        })
        .await;
    assert_eq!(published["state"], "published", "{published}");
    assert!(published["receipt"]["id"].is_string(), "{published}");
    assert_eq!(
        (case.on_platform)(&app.sandbox),
        1,
        "exactly one post on {platform}"
    );
}

#[tokio::test]
async fn x() {
    whole_life(Case {
        platform: "x",
        login: |_| Login::OAuth("jane_writes"),
        post: json!({"text": "Chapter one is out today"}),
        kill_grant: |s| {
            s.x().revoke_user_grants("2244994945").unwrap();
        },
        on_platform: |s| s.x().tweets("2244994945").len(),
    })
    .await;
}

#[tokio::test]
async fn linkedin() {
    whole_life(Case {
        platform: "linkedin",
        login: |_| Login::OAuth("jane_writes"),
        post: json!({"text": "Chapter one is out today"}),
        kill_grant: |s| {
            s.linkedin().revoke_member_grants("li-member-1").unwrap();
        },
        on_platform: |s| s.linkedin().posts().len(),
    })
    .await;
}

#[tokio::test]
async fn pinterest() {
    whole_life(Case {
        platform: "pinterest",
        login: |_| Login::OAuth("jane_writes"),
        post: json!({
            "kind": "pin",
            "title": "The cover of book two",
            "text": "Out in the spring",
            "media": [{"url": "https://example.com/covers/book-two.jpg", "kind": "image", "alt": "A blue book cover"}],
        }),
        kill_grant: |s| {
            s.pinterest().revoke_user_grants("549755885175").unwrap();
        },
        on_platform: |s| s.pinterest().pins("549755885175").len(),
    })
    .await;
}

#[tokio::test]
async fn tiktok() {
    whole_life(Case {
        platform: "tiktok",
        login: |_| Login::OAuth("jane_tok"),
        post: json!({
            "kind": "video",
            "text": "Chapter one, read aloud. #booktok",
            "media": [{"url": "{sandbox}/tiktok/media/sample.mp4", "kind": "video"}],
        }),
        kill_grant: |s| {
            s.tiktok().revoke_user_grants("jane_tok").unwrap();
        },
        on_platform: |s| {
            s.tiktok()
                .posts("jane_tok")
                .iter()
                .filter(|p| p.post_id.is_some())
                .count()
        },
    })
    .await;
}

#[tokio::test]
async fn facebook() {
    whole_life(Case {
        platform: "facebook",
        login: |_| Login::OAuth("meta_publisher"),
        post: json!({
            "text": "Book two is out.",
            "links": ["https://example.com/book-two"],
            "media": [{"url": "{sandbox}/facebook/media/cover.jpg", "kind": "image", "alt": "The cover"}],
        }),
        kill_grant: |s| {
            s.meta()
                .remove_app("meta_publisher", "sandbox-facebook-client")
                .unwrap();
        },
        on_platform: |s| s.meta().page_posts("2001").len(),
    })
    .await;
}

#[tokio::test]
async fn instagram() {
    whole_life(Case {
        platform: "instagram",
        login: |_| Login::OAuth("meta_publisher"),
        post: json!({
            "text": "The cover. #books",
            "media": [{"url": "{sandbox}/instagram/media/cover.jpg", "kind": "image", "alt": "The cover"}],
        }),
        kill_grant: |s| {
            s.meta()
                .remove_app("meta_publisher", "sandbox-instagram-client")
                .unwrap();
        },
        on_platform: |s| s.meta().instagram_media("3001").len(),
    })
    .await;
}

#[tokio::test]
async fn threads() {
    whole_life(Case {
        platform: "threads",
        login: |_| Login::OAuth("jane_threads"),
        post: json!({
            "text": "Book two is out",
            "links": ["https://example.com/book-two"],
            "media": [{"url": "{sandbox}/threads/media/cover.jpg", "kind": "image", "alt": "The cover"}],
        }),
        kill_grant: |s| {
            s.threads()
                .invalidate_tokens("jane_threads", 460, "password changed")
                .unwrap();
        },
        on_platform: |s| s.threads().posts("jane_threads").len(),
    })
    .await;
}

#[tokio::test]
async fn youtube() {
    whole_life(Case {
        platform: "youtube",
        login: |_| Login::OAuth("jane_writes"),
        post: json!({
            "kind": "video",
            "title": "Book two: chapter one",
            "text": "Chapter one, read aloud.",
            "media": [{"url": "{sandbox}/sandbox/youtube/media/sample.mp4", "kind": "video"}],
        }),
        kill_grant: |s| {
            s.youtube().revoke_user_grants("jane_writes").unwrap();
        },
        on_platform: |s| s.youtube().videos().len(),
    })
    .await;
}

/// Each Bluesky connect signs in with a new app password; the grant dies when the
/// author revokes the one in use.
static BLUESKY_APP_PASSWORDS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

fn bluesky_app_password_name(n: usize) -> String {
    format!("studio-{n}")
}

#[tokio::test]
async fn bluesky() {
    whole_life(Case {
        platform: "bluesky",
        login: |s| {
            let n = BLUESKY_APP_PASSWORDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let password = s
                .bluesky()
                .create_app_password("jane.sandbox.test", &bluesky_app_password_name(n))
                .unwrap();
            Login::AppPassword("jane.sandbox.test", password)
        },
        post: json!({
            "text": "Book two is out! https://example.com/book-two thanks @alex.sandbox.test #amwriting",
            "links": ["https://example.com/book-two"],
        }),
        kill_grant: |s| {
            let n = BLUESKY_APP_PASSWORDS.load(std::sync::atomic::Ordering::SeqCst);
            s.bluesky()
                .revoke_app_password("jane.sandbox.test", &bluesky_app_password_name(n))
                .unwrap();
        },
        on_platform: |s| s.bluesky().records("did:plc:janewritessandbox0000").len(),
    })
    .await;
}
