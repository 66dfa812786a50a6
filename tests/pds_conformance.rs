//! Conformance of the Bluesky adapter against the reference AT Protocol PDS: Bluesky's
//! own `@atproto/pds`, the server self-hosters run, started by `tests/pds/server.mjs` on
//! loopback with an in-memory PLC directory (see `tests/pds/README.md`). The sandbox PDS
//! is the adapter's author's reading of the protocol; this is the protocol's authors'
//! code, so every behaviour the adapter relies on is checked here against it: the
//! app-password sign-in and its refusals, session rotation and its grace, a revoked app
//! password found by a refresh, facets and image blobs in records the PDS validates, the
//! record key that makes a resent publish idempotent, takedowns, and disconnect.
//!
//! One PDS serves the whole test binary (it takes seconds to start); every test makes its
//! own accounts on it, so tests do not share state. Node.js and npm are required:
//! `tests/pds/node_modules` is installed with `npm ci` on first use (which compiles
//! better-sqlite3), and a missing `node`/`npm` fails the test with a message saying so.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::config::{Config, PlatformConfig};
use social_studio::platforms::bluesky::{BlueskySettings, SessionEndpoint};
use social_studio::platforms::{Adapter, BlueskyAdapter, Connected};
use social_studio::sandbox::Sandbox;
use social_studio::studio::{PostRequest, Studio, StudioOptions};
use social_studio_actors::{PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    fixtures, Content, EventKind, Media, MediaKind, PenName, Platform, Post, PostKind, ReasonCode,
    Secret, StateLabel, Timestamp,
};

#[path = "support/node.rs"]
mod node;
use node::NodeServer;

const POST: &str = "app.bsky.feed.post";

/// The running reference PDS and its PLC directory.
struct Pds {
    pds: String,
    plc: String,
    admin_password: String,
    node: NodeServer,
}

/// The binary's one PDS. It is never dropped: when the test process exits its stdin
/// closes, and `server.mjs` exits with it.
fn pds() -> &'static Pds {
    static PDS: OnceLock<Pds> = OnceLock::new();
    PDS.get_or_init(|| {
        let dir = node::peer_dir("pds");
        node::ensure_node_modules(
            &dir,
            "better-sqlite3/build/Release/better_sqlite3.node",
            "the PDS conformance tests (tests/pds/server.mjs)",
        );
        let node = NodeServer::start(&dir, "server.mjs", &[], Duration::from_secs(60));
        let ready: Value = serde_json::from_str(&node.ready)
            .unwrap_or_else(|e| panic!("READY payload {:?}: {e}", node.ready));
        let field = |name: &str| ready[name].as_str().unwrap_or_default().to_owned();
        Pds {
            pds: field("pds"),
            plc: field("plc"),
            admin_password: field("admin_password"),
            node,
        }
    })
}

impl Pds {
    fn settings(&self) -> BlueskySettings {
        BlueskySettings {
            service: self.pds.clone(),
            plc_directory: self.plc.clone(),
            // The reference PDS and its media are on loopback.
            allow_private_media_urls: true,
        }
    }

    fn adapter(&self) -> BlueskyAdapter {
        BlueskyAdapter::new(&self.settings()).unwrap()
    }

    fn xrpc(&self, method: &str) -> String {
        format!("{}/xrpc/{method}", self.pds)
    }

    /// An XRPC call: the status and the JSON body (`null` when there is none).
    async fn call(
        &self,
        method: reqwest::Method,
        nsid: &str,
        auth: Auth<'_>,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new()
            .request(method, self.xrpc(nsid))
            .query(query);
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Admin => request.basic_auth("admin", Some(&self.admin_password)),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post_ok(&self, nsid: &str, auth: Auth<'_>, body: Value) -> Value {
        let (status, answer) = self
            .call(reqwest::Method::POST, nsid, auth, &[], Some(body))
            .await;
        assert!(
            status.is_success(),
            "{nsid}: {status} {answer}\n{}",
            self.node.log()
        );
        answer
    }

    /// A new account `{name}.test` with a main password and one app password.
    async fn account(&self, name: &str) -> Author {
        let handle = format!("{name}.test");
        let main_password = format!("main-password-of-{name}");
        let created = self
            .post_ok(
                "com.atproto.server.createAccount",
                Auth::None,
                json!({"handle": handle, "email": format!("{name}@example.com"), "password": main_password}),
            )
            .await;
        let main_jwt = created["accessJwt"].as_str().unwrap().to_owned();
        let mut author = Author {
            did: created["did"].as_str().unwrap().to_owned(),
            handle,
            main_password,
            main_jwt,
            app_password: String::new(),
        };
        author.app_password = self.app_password(&author, "studio").await;
        author
    }

    /// A new app password for `author`, made with the main session as in Bluesky's
    /// settings.
    async fn app_password(&self, author: &Author, name: &str) -> String {
        let answer = self
            .post_ok(
                "com.atproto.server.createAppPassword",
                Auth::Bearer(&author.main_jwt),
                json!({"name": name}),
            )
            .await;
        answer["password"].as_str().unwrap().to_owned()
    }

    async fn revoke_app_password(&self, author: &Author, name: &str) {
        self.post_ok(
            "com.atproto.server.revokeAppPassword",
            Auth::Bearer(&author.main_jwt),
            json!({"name": name}),
        )
        .await;
    }

    async fn record(&self, at_uri: &str) -> Value {
        let (repo, rest) = at_uri
            .strip_prefix("at://")
            .and_then(|r| r.split_once('/'))
            .unwrap();
        let (collection, rkey) = rest.split_once('/').unwrap();
        let (status, answer) = self
            .call(
                reqwest::Method::GET,
                "com.atproto.repo.getRecord",
                Auth::None,
                &[("repo", repo), ("collection", collection), ("rkey", rkey)],
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}\n{}", self.node.log());
        answer
    }

    async fn posts_of(&self, author: &Author) -> Vec<Value> {
        let (status, answer) = self
            .call(
                reqwest::Method::GET,
                "com.atproto.repo.listRecords",
                Auth::None,
                &[("repo", &author.did), ("collection", POST)],
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["records"].as_array().cloned().unwrap_or_default()
    }
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Admin,
}

struct Author {
    did: String,
    handle: String,
    main_password: String,
    main_jwt: String,
    app_password: String,
}

async fn connect(adapter: &BlueskyAdapter, author: &Author) -> Connected {
    adapter
        .connect_with_app_password(
            &author.handle,
            Secret::new(&author.app_password),
            Timestamp::now_system(),
        )
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e:?}\n{}", author.handle, pds().node.log()))
}

fn post(text: &str) -> Post {
    let mut post = fixtures::post(&fixtures::key("jane", Platform::Bluesky), 0);
    post.kind = PostKind::Feed;
    post.target = None;
    post.attempts = 1;
    post.content = Content {
        text: text.into(),
        title: None,
        links: vec![],
        media: vec![],
    };
    post
}

/// The text between UTF-8 byte offsets, as an AppView reads a facet.
fn by_bytes(text: &str, facet: &Value) -> String {
    let start = facet["index"]["byteStart"].as_u64().unwrap() as usize;
    let end = facet["index"]["byteEnd"].as_u64().unwrap() as usize;
    String::from_utf8(text.as_bytes()[start..end].to_vec()).unwrap()
}

#[tokio::test]
async fn an_app_password_opens_a_session_whose_grant_names_the_pds_and_keeps_no_password() {
    let pds = pds();
    let jane = pds.account("conn-jane").await;
    let connected = connect(&pds.adapter(), &jane).await;
    assert_eq!(connected.account.platform_id, jane.did);
    assert_eq!(connected.account.handle, format!("@{}", jane.handle));
    assert_eq!(connected.targets.len(), 1);
    let grant = &connected.grant;
    let endpoint = SessionEndpoint::of(grant).unwrap();
    assert_eq!(endpoint.did, jane.did);
    assert_eq!(endpoint.handle, jane.handle);
    // The PDS the DID document names (dev mode: http://localhost:PORT).
    assert_eq!(endpoint.pds, pds.pds);
    // Lifetimes read from the reference PDS's JWTs: access shorter than refresh, both
    // in the future.
    let access = grant.expires_at.unwrap();
    let refresh = grant.refresh_expires_at.unwrap();
    assert!(access > grant.issued_at, "{grant:?}");
    assert!(refresh > access, "{grant:?}");
    assert_eq!(grant.scopes, ["com.atproto.appPass"]);
    let stored = serde_json::to_string(grant).unwrap();
    assert!(!stored.contains(&jane.app_password));
    assert!(!stored.contains(&jane.main_password));
    // A fresh grant is read back with getSession.
    let account = pds.adapter().check(grant).await.unwrap();
    assert_eq!(account.platform_id, jane.did);
}

#[tokio::test]
async fn the_main_password_a_wrong_app_password_and_an_unknown_handle_are_refused_by_name() {
    let pds = pds();
    let jane = pds.account("refuse-jane").await;
    let adapter = pds.adapter();
    let code = |password: &str, handle: &str| {
        let adapter = &adapter;
        let password = password.to_owned();
        let handle = handle.to_owned();
        async move {
            adapter
                .connect_with_app_password(&handle, Secret::new(password), Timestamp::now_system())
                .await
                .unwrap_err()
                .code()
        }
    };
    // The main password would work at createSession; the engine never sends it.
    assert_eq!(
        code(&jane.main_password, &jane.handle).await,
        "app_password_required"
    );
    // Well-formed, but not one of Jane's: the PDS refuses it.
    assert_eq!(
        code("abcd-efgh-ijkl-mnop", &jane.handle).await,
        "app_password_rejected"
    );
    assert_eq!(
        code(&jane.app_password, "nobody-here.test").await,
        "app_password_rejected"
    );
    // Revoked in settings: refused at sign-in too.
    pds.revoke_app_password(&jane, "studio").await;
    assert_eq!(
        code(&jane.app_password, &jane.handle).await,
        "app_password_rejected"
    );
}

#[tokio::test]
async fn refresh_rotates_both_tokens_and_a_spent_refresh_token_is_answered_within_its_grace() {
    let pds = pds();
    let jane = pds.account("rotate-jane").await;
    let adapter = pds.adapter();
    let first = connect(&adapter, &jane).await.grant;
    let second = adapter.refresh(&first).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    // (The access JWT has no nonce: two issued in one second are the same string.)
    assert_eq!(second.endpoint, first.endpoint);
    // The answer to the first refresh lost: the spent token still answers (the grace the
    // adapter's LostRefreshPolicy::GracePeriod relies on), and what it gives works.
    let replayed = adapter.refresh(&first).await.unwrap();
    let third = adapter.refresh(&replayed).await.unwrap();
    assert_eq!(adapter.check(&third).await.unwrap().platform_id, jane.did);
    adapter.publish(&third, &post("Still here")).await.unwrap();
}

#[tokio::test]
async fn a_revoked_app_password_outlives_its_access_token_only_until_the_refresh() {
    let pds = pds();
    let jane = pds.account("revoke-jane").await;
    let adapter = pds.adapter();
    let grant = connect(&adapter, &jane).await.grant;
    pds.revoke_app_password(&jane, "studio").await;
    // The reference PDS still accepts the access token (why verify refreshes)...
    assert!(adapter.check(&grant).await.is_ok());
    // ...and the refresh names the revocation.
    match adapter.refresh(&grant).await {
        Err(PortError::GrantDead(reason)) => {
            assert_eq!(reason.code, ReasonCode::RevokedByUser, "{reason:?}")
        }
        other => panic!("{other:?}\n{}", pds.node.log()),
    }
}

#[tokio::test]
async fn facets_and_images_make_a_record_the_pds_validates() {
    let pds = pds();
    let jane = pds.account("facet-jane").await;
    let alex = pds.account("facet-alex").await;
    let sandbox = Sandbox::start().await.unwrap();
    let adapter = pds.adapter();
    let grant = connect(&adapter, &jane).await.grant;
    let text = format!(
        "Café news → https://example.com/book-two, thanks @{} and @ghost.test #amwriting #été",
        alex.handle
    );
    let mut p = post(&text);
    let media = format!("{}/sandbox/bluesky/media/one.png", sandbox.base_url());
    p.content.media = vec![Media {
        url: media.clone(),
        kind: MediaKind::Image,
        alt: Some("A blue book cover".into()),
    }];
    assert_eq!(adapter.validate(&p), Ok(()));
    let receipt = adapter.publish(&grant, &p).await.unwrap();
    assert!(receipt
        .platform_post_id
        .starts_with(&format!("at://{}/{POST}/", jane.did)));

    let record = pds.record(&receipt.platform_post_id).await;
    let value = &record["value"];
    assert_eq!(value["text"], text.as_str());
    let facets = value["facets"].as_array().unwrap();
    let mut seen: Vec<(String, String, String)> = facets
        .iter()
        .map(|f| {
            let feature = &f["features"][0];
            let target = feature["uri"]
                .as_str()
                .or(feature["did"].as_str())
                .or(feature["tag"].as_str())
                .unwrap()
                .to_owned();
            (
                feature["$type"].as_str().unwrap().to_owned(),
                by_bytes(&text, f),
                target,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "app.bsky.richtext.facet#link".to_owned(),
                "https://example.com/book-two".to_owned(),
                "https://example.com/book-two".to_owned()
            ),
            (
                "app.bsky.richtext.facet#mention".to_owned(),
                format!("@{}", alex.handle),
                alex.did.clone()
            ),
            (
                "app.bsky.richtext.facet#tag".to_owned(),
                "#amwriting".to_owned(),
                "amwriting".to_owned()
            ),
            (
                "app.bsky.richtext.facet#tag".to_owned(),
                "#été".to_owned(),
                "été".to_owned()
            ),
        ],
        "an unknown handle stays plain text"
    );

    // The image is a blob of the repository, byte for byte what the media URL served.
    let image = &value["embed"]["images"][0];
    assert_eq!(value["embed"]["$type"], "app.bsky.embed.images");
    assert_eq!(image["alt"], "A blue book cover");
    let cid = image["image"]["ref"]["$link"].as_str().unwrap();
    let served = reqwest::get(&media).await.unwrap().bytes().await.unwrap();
    let blob = reqwest::Client::new()
        .get(pds.xrpc("com.atproto.sync.getBlob"))
        .query(&[("did", jane.did.as_str()), ("cid", cid)])
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(blob.bytes().await.unwrap(), served);
    assert_eq!(image["image"]["size"].as_u64(), Some(served.len() as u64));
}

#[tokio::test]
async fn a_publish_sent_again_finds_its_record_instead_of_writing_a_second() {
    let pds = pds();
    let jane = pds.account("twice-jane").await;
    let adapter = pds.adapter();
    let grant = connect(&adapter, &jane).await.grant;
    let p = post("Only once, however often it is sent");
    let first = adapter.publish(&grant, &p).await.unwrap();
    // What the reference PDS answers a second create at the same record key — the
    // answer the adapter's confirmation path starts from.
    let rkey = first.platform_post_id.rsplit('/').next().unwrap();
    let access = grant.access_token.expose().to_owned();
    let (status, answer) = pds
        .call(
            reqwest::Method::POST,
            "com.atproto.repo.createRecord",
            Auth::Bearer(&access),
            &[],
            Some(json!({
                "repo": jane.did, "collection": POST, "rkey": rkey,
                "record": {"$type": POST, "text": "a second value", "createdAt": "2026-11-28T09:00:00Z"}
            })),
        )
        .await;
    // Not a named error: its repository refuses a second value at a key, and the PDS
    // answers that as a 500. The adapter therefore looks the key up after any failed
    // create instead of trusting the error's name.
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["error"], "InternalServerError", "{answer}");
    // The same post published again (a retry after a lost answer or a crash).
    let second = adapter.publish(&grant, &p).await.unwrap();
    assert_eq!(first, second);
    let records = pds.posts_of(&jane).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["value"]["text"],
        "Only once, however often it is sent"
    );
}

#[tokio::test]
async fn a_taken_down_account_is_named_by_its_session_not_at_a_new_sign_in() {
    let pds = pds();
    let jane = pds.account("takedown-jane").await;
    let adapter = pds.adapter();
    let grant = connect(&adapter, &jane).await.grant;
    pds.post_ok(
        "com.atproto.admin.updateSubjectStatus",
        Auth::Admin,
        json!({
            "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": jane.did},
            "takedown": {"applied": true, "ref": "conformance-test"}
        }),
    )
    .await;
    match adapter.refresh(&grant).await {
        Err(PortError::RequirementUnmet(reason)) => {
            assert_eq!(reason.code, ReasonCode::AccountSuspended, "{reason:?}")
        }
        other => panic!("{other:?}"),
    }
    // A new sign-in does not say why: the reference PDS refuses a taken-down account's
    // app password as a wrong one (only its main password would hear `AccountTakedown`,
    // and the engine never sends that).
    let error = adapter
        .connect_with_app_password(
            &jane.handle,
            Secret::new(&jane.app_password),
            Timestamp::now_system(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "app_password_rejected", "{error:?}");
    // A call with the session's access token names it too.
    match adapter.publish(&grant, &post("After the takedown")).await {
        Err(PortError::RequirementUnmet(reason)) => {
            assert_eq!(reason.code, ReasonCode::AccountSuspended, "{reason:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn disconnect_deletes_the_session_at_the_pds() {
    let pds = pds();
    let jane = pds.account("bye-jane").await;
    let adapter = pds.adapter();
    let grant = connect(&adapter, &jane).await.grant;
    assert_eq!(adapter.revoke(&grant).await, Ok(RevokeOutcome::Revoked));
    assert!(
        matches!(adapter.refresh(&grant).await, Err(PortError::GrantDead(_))),
        "the refresh token died with the session"
    );
    // Ending a session already ended is not an error.
    assert_eq!(adapter.revoke(&grant).await, Ok(RevokeOutcome::Revoked));
}

/// The whole life through the engine: connect, a scheduled post, the app password
/// revoked in settings, verify names it and the post pauses; a new app password, the post
/// resumes and publishes once.
#[tokio::test]
async fn through_the_engine_a_revoked_app_password_pauses_and_a_reconnect_publishes() {
    let pds = pds();
    let jane = pds.account("engine-jane").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        admin_token: Some(Secret::new("test-admin-token")),
        // The reference PDS and its media are on loopback.
        allow_private_media_urls: true,
        ..Config::default()
    };
    config.platforms.insert(
        Platform::Bluesky,
        PlatformConfig {
            service: Some(pds.pds.clone()),
            plc_directory: Some(pds.plc.clone()),
            ..PlatformConfig::default()
        },
    );
    let studio = Studio::open(config, StudioOptions::default())
        .await
        .unwrap();
    let pen = PenName::parse("jane").unwrap();
    let key = Studio::parse_key("jane", "bluesky").unwrap();
    let entry = studio
        .connect_with_app_password(
            &pen,
            Platform::Bluesky,
            &jane.handle,
            Secret::new(&jane.app_password),
            false,
        )
        .await
        .unwrap();
    assert_eq!(entry.status, "active");

    let later = Timestamp::now_system().saturating_add(Duration::from_secs(3600));
    let (posts, _) = studio
        .schedule(
            &pen,
            PostRequest {
                platform: Some("bluesky".into()),
                platforms: None,
                target: None,
                kind: None,
                text: "Launch day #amwriting".into(),
                title: None,
                links: vec![],
                media: vec![],
                scheduled_at: later.to_rfc3339(),
            },
            None,
        )
        .await
        .unwrap();
    let id = social_studio_storage::PostId::parse(&posts[0].id).unwrap();

    pds.revoke_app_password(&jane, "studio").await;
    let error = studio.verify(&key, None).await.unwrap_err();
    assert_eq!(error.code(), "revoked_by_user", "{error}");
    assert_eq!(studio.connection(&key).await.unwrap().status, "expired");
    let paused = studio.post(&pen, id).await.unwrap();
    assert_eq!(paused.state, StateLabel::Paused);
    assert_eq!(paused.reason.unwrap().code, "revoked_by_user");

    let fresh = pds.app_password(&jane, "studio-again").await;
    let mut events = studio.subscribe();
    studio
        .connect_with_app_password(
            &pen,
            Platform::Bluesky,
            &jane.handle,
            Secret::new(fresh),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        studio.post(&pen, id).await.unwrap().state,
        StateLabel::Scheduled
    );
    studio
        .update_post(
            &pen,
            id,
            social_studio::studio::PostPatch {
                scheduled_at: Some(Timestamp::now_system().to_rfc3339()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let published = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.post == Some(id)
                && event.kind == EventKind::PostState
                && event.to == Some(StateLabel::Published)
            {
                return event;
            }
        }
    })
    .await
    .expect("the post published within 30 s");
    drop(published);
    let records = pds.posts_of(&jane).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["value"]["text"], "Launch day #amwriting");
    let view = studio.post(&pen, id).await.unwrap();
    assert_eq!(view.state, StateLabel::Published);
    assert_eq!(
        view.receipt.unwrap().id,
        records[0]["uri"].as_str().unwrap()
    );
    studio.shutdown().await;
}

#[test]
fn the_peer_is_pinned_by_its_lock_file() {
    // npm ci installs exactly the committed lock; a package.json range would let the
    // reference drift under the tests.
    let dir = node::peer_dir("pds");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("package.json")).unwrap()).unwrap();
    for (name, version) in manifest["dependencies"].as_object().unwrap() {
        let version = version.as_str().unwrap();
        assert!(
            version.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{name} is not pinned: {version}"
        );
    }
    assert!(dir.join("package-lock.json").is_file());
}
