//! The engine on PostgreSQL (`store.backend = "postgres"`, issue 13, single node), on a
//! real PostgreSQL started by this test binary (`tests/support/postgres.rs`) and the
//! sandbox over loopback: `Studio::open` on the database — a Bluesky account connected,
//! posts scheduled and published, all of it there again after a restart — the start-up
//! refusals (no explicit master key, no admin token, the wrong key), and
//! `migrate-store`: a sled data directory with connections, grants, posts in several
//! states, events, an idempotency record and an OAuth state copied into an empty
//! database and opened there, the grant usable and the event numbers going on.

#[path = "support/node.rs"]
#[allow(dead_code)] // only its npm install is used here, not its server scripts
mod node;
#[path = "support/postgres.rs"]
#[allow(dead_code)] // the tests need only the server's URL
mod postgres;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use postgres::Postgres;
use social_studio::config::{Backend, Config, StoreSettings};
use social_studio::migrate::{migrate_store, restore_archive, MigrateError};
use social_studio::sandbox::Sandbox;
use social_studio::studio::{EngineRefusal, PostRequest, StoreRefusal, Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_storage::vault::{MASTER_KEY_ENV, MASTER_KEY_FILE};
use social_studio_storage::{
    ConnectionKey, KeySource, MasterKey, MasterKeys, PenName, PgError, Platform, PostId, Secret,
    StateLabel, StoreError, Timestamp, VaultError,
};
use tempfile::TempDir;
use tokio_postgres::NoTls;

/// The sandbox's Bluesky account.
const HANDLE: &str = "jane.sandbox.test";
const APP_PASSWORD: &str = "abcd-efgh-ijkl-mnop";
const ADMIN_TOKEN: &str = "postgres-engine-test-admin-token";
const PATIENCE: Duration = Duration::from_secs(30);
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// The server the running tests share (stopped when the last lets go of it).
static SERVER: tokio::sync::Mutex<Weak<Postgres>> = tokio::sync::Mutex::const_new(Weak::new());

async fn server() -> Arc<Postgres> {
    let mut shared = SERVER.lock().await;
    if let Some(server) = shared.upgrade() {
        return server;
    }
    let server = Arc::new(Postgres::start().await);
    *shared = Arc::downgrade(&server);
    server
}

/// A new, empty database on the shared server: its URL (with the password).
struct Database {
    url: String,
    _server: Arc<Postgres>,
}

impl Database {
    async fn new() -> Database {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let server = server().await;
        let name = format!(
            "engine_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = server.create_database(&name).await;
        Database {
            url,
            _server: server,
        }
    }

    fn password(&self) -> String {
        let config: tokio_postgres::Config = self.url.parse().expect("the harness's URL");
        String::from_utf8(config.get_password().expect("a password").to_vec()).unwrap()
    }

    /// How many rows `table` holds, looked at past the store.
    async fn count(&self, table: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// A configuration on `backend` with the sandbox for every platform.
fn config(data_dir: &Path, sandbox: &Sandbox, store: StoreSettings) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        allow_private_media_urls: true,
        store,
        ..Config::default()
    };
    config.use_sandbox_for_unconfigured(&sandbox.base_url());
    config
}

fn on_postgres(url: &str) -> StoreSettings {
    StoreSettings {
        backend: Backend::Postgres,
        url: Some(Secret::new(url)),
        ..StoreSettings::default()
    }
}

fn with_key(key: &MasterKey) -> StudioOptions {
    StudioOptions {
        master_keys: Some(MasterKeys::new(key.clone())),
        ..StudioOptions::default()
    }
}

/// Opens the studio, waiting (with a deadline) while a previous studio on the same sled
/// directory still lets go of it.
async fn open(config: &Config, key: &MasterKey) -> Studio {
    let mut last = None;
    let studio = poll_until(PATIENCE, LOOK_AGAIN, async || {
        match Studio::open(config.clone(), with_key(key)).await {
            Ok(studio) => Some(studio),
            Err(e) => {
                last = Some(e.to_string());
                None
            }
        }
    })
    .await;
    studio.unwrap_or_else(|| panic!("the engine does not open: {last:?}"))
}

fn pen() -> PenName {
    PenName::parse("jane").unwrap()
}

fn bluesky() -> ConnectionKey {
    ConnectionKey::new(pen(), Platform::Bluesky)
}

fn request(text: &str, at: Timestamp) -> PostRequest {
    PostRequest {
        platform: Some("bluesky".into()),
        platforms: None,
        target: None,
        kind: None,
        text: text.into(),
        title: None,
        links: vec![],
        media: vec![],
        scheduled_at: at.to_rfc3339(),
    }
}

async fn connect(studio: &Studio) {
    let entry = studio
        .connect_with_app_password(
            &pen(),
            Platform::Bluesky,
            HANDLE,
            Secret::new(APP_PASSWORD),
            false,
        )
        .await
        .expect("the Bluesky account connects");
    assert_eq!(
        serde_json::to_value(entry.status).unwrap(),
        "active",
        "{entry:?}"
    );
}

/// Schedules one post; its id.
async fn schedule(studio: &Studio, text: &str, at: Timestamp, key: Option<&str>) -> String {
    let (posts, _) = studio
        .schedule(&pen(), request(text, at), key)
        .await
        .expect("scheduled");
    posts[0].id.clone()
}

/// The state of each of `pen`'s posts, by text.
async fn states(studio: &Studio) -> Vec<(String, StateLabel)> {
    let mut list: Vec<(String, StateLabel)> = studio
        .posts(&pen(), None)
        .await
        .expect("the posts")
        .posts
        .into_iter()
        .map(|p| (p.text, p.state))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

async fn until_published(studio: &Studio, text: &str) {
    let published = poll_until(PATIENCE, LOOK_AGAIN, async || {
        states(studio)
            .await
            .iter()
            .any(|(t, s)| t == text && *s == StateLabel::Published)
            .then_some(())
    })
    .await;
    assert!(
        published.is_some(),
        "{text:?} was not published: {:?}",
        states(studio).await
    );
}

async fn last_event(studio: &Studio) -> u64 {
    studio
        .events_after(0, 100_000)
        .await
        .expect("the events")
        .last()
        .map_or(0, |e| e.seq)
}

fn tomorrow() -> Timestamp {
    Timestamp::now_system().saturating_add(Duration::from_secs(86_400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_studio_on_postgres_publishes_and_keeps_everything_across_a_restart() {
    let db = Database::new().await;
    let sandbox = Sandbox::start().await.expect("the sandbox starts");
    let dir = TempDir::new().unwrap();
    let config = config(dir.path(), &sandbox, on_postgres(&db.url));
    let key = MasterKey::generate();

    let studio = open(&config, &key).await;
    let notes = studio.startup_notes().clone();
    assert_eq!(notes.store.backend, "postgres");
    assert_eq!(notes.key_source, KeySource::Provided);
    assert!(
        notes.store.location.starts_with("postgres://127.0.0.1:"),
        "{}",
        notes.store.location
    );
    let password = db.password();
    assert!(
        !format!("{notes:?}").contains(&password),
        "the database's password in {notes:?}"
    );
    assert!(!format!("{config:?}").contains(&password));

    connect(&studio).await;
    schedule(&studio, "now on postgres", Timestamp::now_system(), None).await;
    schedule(&studio, "tomorrow on postgres", tomorrow(), None).await;
    until_published(&studio, "now on postgres").await;
    let before = last_event(&studio).await;
    assert!(before > 0);
    studio.shutdown().await;
    drop(studio);

    // Nothing of the store, and no generated secret, is in the data directory.
    for local in ["sled", "format", MASTER_KEY_FILE, "admin.token"] {
        assert!(
            !dir.path().join(local).exists(),
            "{local} in the data directory of a node on PostgreSQL"
        );
    }
    assert_eq!(db.count("connections").await, 1);

    let studio = open(&config, &key).await;
    let entry = studio.connection(&bluesky()).await.expect("the connection");
    assert_eq!(serde_json::to_value(entry.status).unwrap(), "active");
    assert_eq!(
        states(&studio).await,
        vec![
            ("now on postgres".to_owned(), StateLabel::Published),
            ("tomorrow on postgres".to_owned(), StateLabel::Scheduled),
        ]
    );
    assert_eq!(last_event(&studio).await, before);
    // The grant read back from the database works: a test post through it.
    let verified = studio
        .verify(&bluesky(), Some("after the restart".into()))
        .await
        .expect("verify with a test post");
    assert_eq!(
        verified.test_post.map(|p| p.state),
        Some(StateLabel::Published)
    );
    assert!(last_event(&studio).await > before);
    studio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_to_start_without_an_explicit_master_key_or_admin_token_or_with_another_key(
) {
    // Nothing in this test binary sets it: the refusal below is for its absence.
    assert!(
        std::env::var_os(MASTER_KEY_ENV).is_none(),
        "{MASTER_KEY_ENV} is set in the test's environment"
    );
    let db = Database::new().await;
    let sandbox = Sandbox::start().await.expect("the sandbox starts");
    let dir = TempDir::new().unwrap();
    let config = config(dir.path(), &sandbox, on_postgres(&db.url));

    let refused = Studio::open(config.clone(), StudioOptions::default())
        .await
        .err()
        .expect("no master key: refused");
    assert!(
        matches!(
            &refused,
            EngineRefusal::Store(StoreRefusal::MasterKeyRequired)
        ) && refused.to_string().contains("SOCIAL_STUDIO_MASTER_KEY"),
        "{refused:?}"
    );
    assert!(
        !dir.path().join(MASTER_KEY_FILE).exists(),
        "a key file was made"
    );

    let key = MasterKey::generate();
    let no_token = Config {
        admin_token: None,
        ..config.clone()
    };
    let refused = Studio::open(no_token, with_key(&key))
        .await
        .err()
        .expect("no admin token: refused");
    assert!(
        matches!(
            &refused,
            EngineRefusal::Store(StoreRefusal::AdminTokenRequired)
        ) && refused.to_string().contains("SOCIAL_STUDIO_ADMIN_TOKEN"),
        "{refused:?}"
    );
    assert!(
        !dir.path().join("admin.token").exists(),
        "a token file was made"
    );
    // Neither refusal touched the database.
    assert_eq!(
        db.count("pg_catalog.pg_tables WHERE schemaname = 'public'")
            .await,
        0
    );

    let studio = open(&config, &key).await;
    studio.shutdown().await;
    drop(studio);
    let refused = Studio::open(config.clone(), with_key(&MasterKey::generate()))
        .await
        .err()
        .expect("another key: refused");
    assert!(
        matches!(
            refused,
            EngineRefusal::Storage(StoreError::Vault(VaultError::WrongMasterKey))
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_sled_data_directory_into_postgres_with_everything_in_it() {
    let db = Database::new().await;
    let sandbox = Sandbox::start().await.expect("the sandbox starts");
    let dir = TempDir::new().unwrap();
    let sled_dir = dir.path().join("sled-node");
    let key = MasterKey::generate();
    let on_sled = config(&sled_dir, &sandbox, StoreSettings::default());

    // A sled store with a grant, posts in several states, events, an idempotency record
    // and an OAuth state nobody redeemed.
    let studio = open(&on_sled, &key).await;
    connect(&studio).await;
    schedule(&studio, "a published post", Timestamp::now_system(), None).await;
    let keyed_due = tomorrow();
    schedule(&studio, "a scheduled post", keyed_due, Some("request-1")).await;
    let cancelled = schedule(&studio, "a cancelled post", tomorrow(), None).await;
    studio
        .cancel_post(&pen(), PostId::parse(&cancelled).expect("a post id"))
        .await
        .expect("cancelled");
    until_published(&studio, "a published post").await;
    studio
        .begin_connect(&ConnectionKey::new(pen(), Platform::X), false)
        .await
        .expect("an authorization begun");
    let before = states(&studio).await;
    let last = last_event(&studio).await;

    // While the engine runs, its store is not copied.
    let running = migrate_store(&sled_dir, &db.url, &MasterKeys::new(key.clone())).await;
    assert!(
        matches!(running, Err(MigrateError::SourceInUse(_))),
        "{running:?}"
    );
    studio.shutdown().await;
    drop(studio);

    let report = poll_until(PATIENCE, LOOK_AGAIN, async || {
        match migrate_store(&sled_dir, &db.url, &MasterKeys::new(key.clone())).await {
            // The engine just stopped may still be letting go of the directory.
            Err(MigrateError::SourceInUse(_)) => None,
            other => Some(other),
        }
    })
    .await
    .expect("the directory is let go of")
    .expect("the migration succeeds");
    let count = |kind: &str| report.contents.kinds[kind].count;
    assert_eq!(count("connections"), 1);
    assert_eq!(count("grants"), 1);
    assert_eq!(count("post_status"), 3);
    assert_eq!(count("post_bodies"), 3);
    assert_eq!(count("idempotency"), 1);
    assert_eq!(count("oauth_states"), 1);
    assert_eq!(count("events"), last);
    assert_eq!(count("event_numbers"), last);

    // A second copy into the same database is refused: it is no longer empty.
    let again = migrate_store(&sled_dir, &db.url, &MasterKeys::new(key.clone())).await;
    assert!(
        matches!(
            again,
            Err(MigrateError::Target(StoreError::Postgres(
                PgError::RestoreTargetNotEmpty { .. }
            )))
        ),
        "{again:?}"
    );

    // The engine on PostgreSQL has everything, and goes on from there.
    let pg_dir = dir.path().join("pg-node");
    let on_pg = config(&pg_dir, &sandbox, on_postgres(&db.url));
    let studio = open(&on_pg, &key).await;
    let entry = studio.connection(&bluesky()).await.expect("the connection");
    assert_eq!(serde_json::to_value(entry.status).unwrap(), "active");
    assert_eq!(states(&studio).await, before);
    assert_eq!(last_event(&studio).await, last);
    // The idempotency record came along: the same key answers the same posts.
    let (replayed, fresh) = studio
        .schedule(
            &pen(),
            request("a scheduled post", keyed_due),
            Some("request-1"),
        )
        .await
        .expect("the keyed request replayed");
    assert!(!fresh, "a keyed request made new posts after the migration");
    assert_eq!(replayed.len(), 1);
    // The grant, sealed on sled, opens here: a test post goes out through it, and its
    // events are numbered after the last migrated one.
    let verified = studio
        .verify(&bluesky(), Some("after the migration".into()))
        .await
        .expect("verify with a test post");
    assert_eq!(
        verified.test_post.map(|p| p.state),
        Some(StateLabel::Published)
    );
    let after = studio.events_after(last, 1000).await.unwrap();
    assert!(!after.is_empty(), "no event after the migrated ones");
    assert_eq!(after[0].seq, last + 1);

    // The PostgreSQL store's own backup restores into another empty database the same way.
    let archive = dir.path().join("pg.backup");
    let mut file = std::fs::File::create(&archive).unwrap();
    studio.store().backup(&mut file).await.expect("a backup");
    drop(file);
    let states_now = states(&studio).await;
    let last_now = last_event(&studio).await;
    studio.shutdown().await;
    drop(studio);
    let db2 = Database::new().await;
    // An archive cut short is refused before anything reaches the database.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = dir.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let refused = restore_archive(&cut, &db2.url, &MasterKeys::new(key.clone())).await;
    assert!(
        matches!(refused, Err(MigrateError::Archive { .. })),
        "{refused:?}"
    );
    assert_eq!(
        db2.count("pg_catalog.pg_tables WHERE schemaname = 'public'")
            .await,
        0
    );
    let restored = restore_archive(&archive, &db2.url, &MasterKeys::new(key.clone()))
        .await
        .expect("the archive restores into an empty database");
    assert_eq!(restored.contents.kinds["events"].count, last_now);
    let studio = open(&config(&pg_dir, &sandbox, on_postgres(&db2.url)), &key).await;
    assert_eq!(states(&studio).await, states_now);
    assert_eq!(last_event(&studio).await, last_now);
    studio.shutdown().await;
}

fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_social-studio"));
    command
        .env_remove("SOCIAL_STUDIO_CONFIG")
        .env_remove("SOCIAL_STUDIO_ADMIN_TOKEN")
        .env_remove(MASTER_KEY_ENV)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

async fn run(command: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the command finishes")
        .expect("the command runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_store_command_reads_the_engine_s_configuration_and_says_what_it_checked() {
    let db = Database::new().await;
    let sandbox = Sandbox::start().await.expect("the sandbox starts");
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let key = MasterKey::generate();
    let studio = open(&config(&data, &sandbox, StoreSettings::default()), &key).await;
    connect(&studio).await;
    schedule(&studio, "one post", tomorrow(), None).await;
    studio.shutdown().await;
    drop(studio);

    // The configuration the engine will run with on PostgreSQL; the URL from the
    // environment.
    let file = dir.path().join("social-studio.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = \"{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n[store]\nbackend = \"postgres\"\n",
            data.display()
        ),
    )
    .unwrap();
    let password = db.password();

    let no_key = run(binary()
        .args(["migrate-store", "--config"])
        .arg(&file)
        .env("SOCIAL_STUDIO_STORE_URL", &db.url))
    .await;
    let said = String::from_utf8_lossy(&no_key.stderr);
    assert!(!no_key.status.success());
    assert!(said.contains("set SOCIAL_STUDIO_MASTER_KEY"), "{said}");
    assert_eq!(
        db.count("pg_catalog.pg_tables WHERE schemaname = 'public'")
            .await,
        0
    );

    let done = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let out = run(binary()
            .args(["migrate-store", "--config"])
            .arg(&file)
            .env("SOCIAL_STUDIO_STORE_URL", &db.url)
            .env(MASTER_KEY_ENV, key.to_base64().as_str()))
        .await;
        // The engine just stopped may still be letting go of the directory.
        let busy = String::from_utf8_lossy(&out.stderr).contains("open by a running engine");
        (!busy).then_some(out)
    })
    .await
    .expect("the directory is let go of");
    let stdout = String::from_utf8_lossy(&done.stdout);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("then checked: the database holds what the source holds"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("connections")
                && l.contains(" 1 ")
                && l.ends_with("equal")),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&password) && !stderr.contains(&password),
        "the database's password in the output"
    );
    assert_eq!(db.count("posts").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_names_the_database_without_its_password_and_refuses_without_a_token() {
    let db = Database::new().await;
    let password = db.password();
    let dir = TempDir::new().unwrap();
    let key = MasterKey::generate();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let serve = || {
        let mut command = binary();
        command
            .arg("serve")
            .env("SOCIAL_STUDIO_DATA_DIR", dir.path())
            .env("SOCIAL_STUDIO_LISTEN", format!("127.0.0.1:{port}"))
            .env("SOCIAL_STUDIO_PUBLIC_URL", &url)
            .env("SOCIAL_STUDIO_STORE_BACKEND", "postgres")
            .env("SOCIAL_STUDIO_STORE_URL", &db.url)
            .env(MASTER_KEY_ENV, key.to_base64().as_str())
            .stdout(std::process::Stdio::null());
        command
    };

    // Without an admin token: refused at start, naming the key; nothing generated.
    let refused = run(&mut serve()).await;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("admin_token"), "{said}");
    assert!(said.contains("SOCIAL_STUDIO_ADMIN_TOKEN"), "{said}");
    assert!(!said.contains(&password), "the password in {said}");
    assert!(!dir.path().join("admin.token").exists());

    let log = dir.path().join("serve.log");
    let mut server = serve()
        .env("SOCIAL_STUDIO_ADMIN_TOKEN", ADMIN_TOKEN)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let up = poll_until(PATIENCE, LOOK_AGAIN, async || {
        if let Ok(Some(status)) = server.try_wait() {
            return Some(Err(status));
        }
        let ready = client.get(format!("{url}/readyz")).send().await;
        ready
            .is_ok_and(|r| r.status().is_success())
            .then_some(Ok(()))
    })
    .await;
    let said = || std::fs::read_to_string(&log).unwrap();
    assert!(
        matches!(up, Some(Ok(()))),
        "the server did not come up: {up:?}\n{}",
        said()
    );
    let (status, body) = {
        let answer = client
            .get(format!("{url}/v1/pen-names/jane/connections"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        (answer.status(), answer.text().await.unwrap())
    };
    assert!(status.is_success(), "{status} {body}");
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let said = said();
    assert!(
        said.contains("store: postgres (format ") && said.contains(") in postgres://127.0.0.1:"),
        "{said}"
    );
    assert!(!said.contains(&password), "the password in the log: {said}");
    assert!(!dir.path().join("admin.token").exists());
    assert!(!dir.path().join(MASTER_KEY_FILE).exists());
}
