//! The store port's conformance suite ([`social_studio_storage::conformance`]) on the
//! PostgreSQL backend, on a real PostgreSQL started by this test binary
//! (`tests/support/postgres.rs`, from the package pinned in `tests/pg/`).
//!
//! One server is shared by the tests that run at once (it stops when the last of them
//! lets go of it, and a later test starts another); every test gets a database of its
//! own on it, so no test sees another's records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use social_studio_storage::conformance::{Backend, RawRecords};
use social_studio_storage::{MasterKey, PgConfig, PgStore, StoreError};
use tokio_postgres::NoTls;

// The harness waits with the engine's `social_studio::wait::poll_until`: the same file,
// compiled into this test crate under that name.
extern crate self as social_studio;
#[path = "../../src/wait.rs"]
mod wait;

#[path = "../../tests/support/node.rs"]
#[allow(dead_code)] // only its npm install is used here, not its server scripts
mod node;
#[path = "../../tests/support/postgres.rs"]
#[allow(dead_code)] // the suite needs only the server's URL
mod postgres;

use postgres::Postgres;

/// The server the running tests share.
static SERVER: tokio::sync::Mutex<Weak<Postgres>> = tokio::sync::Mutex::const_new(Weak::new());

/// The shared server, started if no running test holds one.
async fn server() -> Arc<Postgres> {
    let mut shared = SERVER.lock().await;
    if let Some(server) = shared.upgrade() {
        return server;
    }
    let server = Arc::new(Postgres::start().await);
    *shared = Arc::downgrade(&server);
    server
}

/// A database of its own on the shared server, and the master key its store was made
/// with.
struct Pg {
    url: String,
    key: MasterKey,
    /// Declared last: the server outlives the test's stores.
    _server: Arc<Postgres>,
}

impl Pg {
    async fn new() -> Pg {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let server = server().await;
        let name = format!(
            "store_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = server.create_database(&name).await;
        Pg {
            url,
            key: MasterKey::generate(),
            _server: server,
        }
    }

    /// A plain client on the test's database, for looking past the store.
    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
        tokio::spawn(connection);
        client
    }

    fn config(&self) -> PgConfig {
        let mut config = PgConfig::new(&self.url);
        config.pool_size = 8;
        config
    }

    async fn open_backend(&self) -> PgStore {
        Backend::open(self).await
    }
}

#[async_trait]
impl Backend for Pg {
    type Store = PgStore;

    async fn open(&self) -> PgStore {
        PgStore::open_with_key(&self.config(), &self.key)
            .await
            .unwrap_or_else(|e| panic!("open store: {e:?}"))
    }

    async fn open_with_key(&self, key: &MasterKey) -> Result<PgStore, StoreError> {
        PgStore::open_with_key(&self.config(), key).await
    }
}

impl RawRecords for Pg {
    fn raw_get(store: &PgStore, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        store.raw_get_for_tests(kind, key)
    }

    fn raw_insert(store: &PgStore, kind: &str, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
        store.raw_insert_for_tests(kind, key, bytes)
    }
}

social_studio_storage::conformance_tests!(Pg::new().await, raw_records);

// ---- what is particular to this backend ----

mod postgres_backend {
    use social_studio_storage::conformance::store::every_kind_of_record;
    use social_studio_storage::fixtures::{connection, grant, key, post};
    use social_studio_storage::{
        archive, Batch, Durability, Event, EventKind, MasterKey, MasterKeys, PendingAuthorization,
        PgError, PgStore, Platform, PostState, Secret, Store, StoreError, Timestamp,
    };

    use tokio_postgres::NoTls;

    use super::Pg;

    /// Nodes that open one new database at once apply the schema once, and all open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_opening_a_new_database_at_once_apply_the_schema_once() {
        let pg = Pg::new().await;
        let config = pg.config();
        // Each node's first connection made before any of them goes on, so that their
        // migrations meet.
        let nodes = 6;
        let ready = std::sync::Arc::new(tokio::sync::Barrier::new(nodes));
        let opens: Vec<_> = (0..nodes)
            .map(|_| {
                let config = config.clone();
                let key = pg.key.clone();
                let ready = ready.clone();
                tokio::spawn(async move {
                    let (warm, connection) = tokio_postgres::connect(&config.url, NoTls)
                        .await
                        .expect("a connection");
                    tokio::spawn(connection);
                    ready.wait().await;
                    drop(warm);
                    PgStore::open_with_key(&config, &key).await
                })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every node opens"));
        }
        let client = pg.client().await;
        let versions: Vec<i64> = client
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let every: Vec<i64> = (1..=i64::from(stores[0].info().format)).collect();
        assert_eq!(versions, every, "each applied once");
        let opened: Vec<_> = stores.iter().map(|s| s.info().opened).collect();
        assert_eq!(
            opened.iter().filter(|o| !o.is_empty()).count(),
            1,
            "one node applied the migration, the others found it: {opened:?}"
        );
    }

    #[tokio::test]
    async fn a_schema_from_a_newer_release_is_refused() {
        let pg = Pg::new().await;
        let known = i64::from(pg.open_backend().await.info().format);
        pg.client()
            .await
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')",
                &[],
            )
            .await
            .unwrap();
        match PgStore::open_with_key(&pg.config(), &pg.key).await {
            Err(StoreError::Postgres(PgError::NewerSchema { found, supported })) => {
                assert_eq!((found, supported), (99, known))
            }
            Err(other) => panic!("expected NewerSchema, got {other}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
    }

    /// Two handles on one database (two nodes, as far as the store can tell): a claim
    /// through one fences the other's writes, and the epochs outlive both handles.
    #[tokio::test]
    async fn a_claim_through_another_handle_fences_and_outlives_a_reopen() {
        let pg = Pg::new().await;
        let k = key("jane", Platform::X);
        let a = pg.open_backend().await;
        let b = pg.open_backend().await;
        let first = a.claim(&k).await.unwrap();
        let second = b.claim(&k).await.unwrap();
        assert!(second > first);
        let mut batch = Batch::new();
        batch.fence(&k, first).put_connection(&connection(&k));
        match a.commit(batch, Durability::Durable).await {
            Err(StoreError::Fenced { epoch, newest, .. }) => {
                assert_eq!((epoch, newest), (first.0, second.0))
            }
            other => panic!("a superseded handle wrote: {other:?}"),
        }
        assert!(b.connection(&k).await.unwrap().is_none());
        drop((a, b));
        let c = pg.open_backend().await;
        let third = c.claim(&k).await.unwrap();
        assert!(
            third > second,
            "epochs never go back: {third:?} after {second:?}"
        );
        let mut batch = Batch::new();
        batch.fence(&k, second).put_connection(&connection(&k));
        assert!(matches!(
            c.commit(batch, Durability::Durable).await,
            Err(StoreError::Fenced { .. })
        ));
    }

    /// A commit's place in the order is fixed when `commit` is called, not when its
    /// future is polled.
    #[tokio::test]
    async fn the_commit_order_is_the_order_of_the_calls() {
        let pg = Pg::new().await;
        let store = pg.open_backend().await;
        let k = key("jane", Platform::X);
        let event = || {
            Event::new(
                Timestamp::from_unix_millis(1),
                k.clone(),
                EventKind::GrantRenewed,
            )
        };
        let mut futures = Vec::new();
        for _ in 0..20 {
            let mut b = Batch::new();
            b.event(event());
            futures.push(store.commit(b, Durability::Buffered));
        }
        let mut seqs = Vec::new();
        // Awaited last to first.
        while let Some(f) = futures.pop() {
            seqs.push(f.await.unwrap().events[0].seq);
        }
        seqs.reverse();
        assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
    }

    /// Every column of every table, read as text: no token, verifier or refresh token is
    /// there in plain bytes (nor as the hex a bytea reads as).
    #[tokio::test]
    async fn the_database_never_sees_a_plaintext_token() {
        let pg = Pg::new().await;
        let store = pg.open_backend().await;
        let k = key("jane", Platform::X);
        let secrets = [
            "access-token-never-in-the-database",
            "refresh-token-never-in-the-database",
            "pkce-verifier-never-in-the-database",
        ];
        let mut b = Batch::new();
        b.put_connection(&connection(&k))
            .put_grant(&k, &grant(secrets[0], Some(secrets[1])))
            .put_oauth_state(
                "state-1",
                &PendingAuthorization {
                    connection: k.clone(),
                    pkce_verifier: Some(Secret::new(secrets[2])),
                    redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
                    created_at: Timestamp::from_unix_millis(0),
                    expires_at: Timestamp::from_unix_millis(600_000),
                    replace: false,
                    purpose: social_studio_storage::StatePurpose::Connect { return_to: None },
                },
            );
        store.commit(b, Durability::Durable).await.unwrap();
        assert_eq!(
            store
                .grant(&k)
                .await
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            secrets[0]
        );
        let client = pg.client().await;
        let tables: Vec<String> = client
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(tables.len() >= 9, "{tables:?}");
        for table in tables {
            let rows = client
                .query(&format!("SELECT t::text FROM {table} t"), &[])
                .await
                .unwrap();
            for row in rows {
                let text: String = row.get(0);
                for secret in secrets {
                    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
                    assert!(
                        !text.contains(secret) && !text.contains(&hex),
                        "{secret} is readable in table {table}"
                    );
                }
            }
        }
    }

    /// A backup is the archive format, whole (its checksum verifies), with every record
    /// and the grants still sealed.
    #[tokio::test]
    async fn a_backup_is_a_verified_archive_of_every_record_with_grants_sealed() {
        let pg = Pg::new().await;
        let store = pg.open_backend().await;
        let (_, posts, events) = every_kind_of_record(&store).await;
        let mut out = Vec::new();
        let summary = store.backup(&mut out).await.unwrap();
        let verified = archive::verify(out.as_slice()).unwrap();
        assert_eq!(verified.header.backend, "postgres");
        assert_eq!(verified.records, summary.records);
        assert_eq!(verified.bytes, summary.bytes);
        let per_tree = |tree: &str| summary.per_tree.get(tree).copied().unwrap_or(0);
        assert_eq!(per_tree("connections"), 1);
        assert_eq!(per_tree("grants"), 1);
        assert_eq!(per_tree("post_bodies"), posts.len() as u64);
        assert_eq!(per_tree("post_status"), posts.len() as u64);
        assert_eq!(per_tree("events"), events.len() as u64);
        let plain = b"access-1";
        assert!(
            !out.windows(plain.len()).any(|w| w == plain),
            "a plaintext token is in the archive"
        );
    }

    #[tokio::test]
    async fn what_it_shows_never_holds_the_password() {
        let pg = Pg::new().await;
        let store = pg.open_backend().await;
        let password = pg
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(user, _)| user.split_once(':'))
            .map(|(_, password)| password.to_owned())
            .expect("the harness's URL has a password");
        let info = store.info();
        assert_eq!(info.backend, "postgres");
        assert!(!info.location.contains(&password), "{}", info.location);
        assert!(info.location.ends_with(pg.url.rsplit('/').next().unwrap()));
        assert!(!format!("{:?}", pg.config()).contains(&password));
        // A refused login names neither.
        let wrong = pg.url.replace(&password, "not-the-password");
        let refused = PgStore::open_with_key(
            &social_studio_storage::PgConfig::new(&wrong),
            &MasterKey::generate(),
        )
        .await
        .err()
        .expect("a wrong password is refused");
        let said = format!("{refused} {refused:?}");
        assert!(
            !said.contains(&password) && !said.contains("not-the-password"),
            "{said}"
        );
    }

    /// The database aborts one of two transactions that wait for each other (here a
    /// commit and another session; in production a purge, an erasure or another node):
    /// nothing of the commit was applied, and the store applies it again.
    #[tokio::test]
    async fn a_commit_aborted_to_break_a_deadlock_is_applied_again() {
        let pg = Pg::new().await;
        // A session looks for a deadlock once, `deadlock_timeout` after it began to wait.
        // The store's sessions look after 3 s (the cycle is closed well before, even on a
        // busy machine) and the other session not for a minute, so the store's is the one
        // the server aborts.
        let database = pg.url.rsplit('/').next().unwrap().to_owned();
        pg.client()
            .await
            .batch_execute(&format!(
                "ALTER DATABASE {database} SET deadlock_timeout = '3s'"
            ))
            .await
            .unwrap();
        let store = pg.open_backend().await;
        let k = key("jane", Platform::X);
        let (x, y) = (post(&k, 1), post(&k, 2));
        let mut b = Batch::new();
        b.put_post(&x).put_post(&y);
        store.commit(b, Durability::Durable).await.unwrap();

        let other = pg.client().await;
        let touch = "UPDATE posts SET due_at = due_at WHERE id = $1";
        other
            .batch_execute("SET deadlock_timeout = '60s'; BEGIN")
            .await
            .unwrap();
        other
            .execute(touch, &[&x.id.as_bytes().as_slice()])
            .await
            .unwrap();
        // The commit writes y, then waits for x…
        let (mut x2, mut y2) = (x.clone(), y.clone());
        x2.state = PostState::Cancelled;
        y2.state = PostState::Cancelled;
        let mut b = Batch::new();
        b.put_post_status(&y2).put_post_status(&x2);
        let pending = tokio::spawn(store.commit(b, Durability::Durable));
        // Watched from a session of its own: PostgreSQL collects what `pg_stat_activity`
        // shows once per transaction, when it is first asked, so a first look from inside
        // `other`'s open transaction, taken before the commit began to wait, would show
        // it never waiting.
        let watcher = pg.client().await;
        let waiting = crate::wait::poll_until(
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(10),
            async || {
                let n: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                         AND application_name = 'social-studio' AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (n > 0).then_some(())
            },
        )
        .await;
        assert!(waiting.is_some(), "the commit never waited for the row");
        // …and the other session now waits for y: a cycle. The store's session finds it
        // (see deadlock_timeout above) and is aborted; the other one goes on.
        other
            .execute(touch, &[&y.id.as_bytes().as_slice()])
            .await
            .unwrap();
        other.batch_execute("COMMIT").await.unwrap();
        let committed = pending.await.unwrap();
        assert!(committed.is_ok(), "{committed:?}");
        assert_eq!(
            store.post(x.id).await.unwrap().unwrap().state,
            PostState::Cancelled
        );
        assert_eq!(
            store.post(y.id).await.unwrap().unwrap().state,
            PostState::Cancelled
        );
    }

    /// A master key rotation is not supported on PostgreSQL yet: a database sealed with
    /// a key now configured as a previous one is refused with a sentence saying so, and
    /// left as it was.
    #[tokio::test]
    async fn a_store_sealed_with_a_previous_key_is_refused_not_rotated() {
        let pg = Pg::new().await;
        drop(pg.open_backend().await);
        let keys = MasterKeys::with_previous(MasterKey::generate(), vec![pg.key.clone()]);
        match PgStore::open_with_keys(&pg.config(), &keys).await {
            Err(StoreError::Postgres(PgError::RotationUnsupported)) => {}
            Err(other) => panic!("expected RotationUnsupported, got {other}"),
            Ok(_) => panic!("a store sealed with a previous key opened"),
        }
        drop(pg.open_backend().await);
    }

    /// Commits queued together are applied together (group commit), and a fenced one
    /// among them is refused alone: the ones before and after it are applied, in order.
    #[tokio::test]
    async fn a_fenced_batch_in_a_group_is_refused_alone() {
        let pg = Pg::new().await;
        let store = pg.open_backend().await;
        let (mine, lost) = (key("jane", Platform::X), key("jane", Platform::Threads));
        let stale = store.claim(&lost).await.unwrap();
        let newest = store.claim(&lost).await.unwrap();
        let event = |k: &social_studio_storage::ConnectionKey| {
            Event::new(
                Timestamp::from_unix_millis(1),
                k.clone(),
                EventKind::ConnectionStatus,
            )
        };
        let mut futures = Vec::new();
        for i in 0..30 {
            let mut b = Batch::new();
            if i == 10 {
                b.fence(&lost, stale)
                    .put_connection(&connection(&lost))
                    .event(event(&lost));
            } else {
                b.put_post(&post(&mine, i)).event(event(&mine));
            }
            futures.push(store.commit(b, Durability::Durable));
        }
        let mut seqs = Vec::new();
        for (i, f) in futures.into_iter().enumerate() {
            match f.await {
                Ok(c) => {
                    assert_ne!(i, 10, "the stale epoch wrote");
                    seqs.push(c.events[0].seq);
                }
                Err(StoreError::Fenced {
                    epoch, newest: n, ..
                }) => {
                    assert_eq!((i, epoch, n), (10, stale.0, newest.0))
                }
                Err(other) => panic!("commit {i}: {other}"),
            }
        }
        assert_eq!(seqs.len(), 29);
        assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
        assert!(store.connection(&lost).await.unwrap().is_none());
        assert_eq!(
            store.posts_of_connection(&mine).await.unwrap().items.len(),
            29
        );
        // Rows written by one transaction carry its id (xmin): the 29 posts took a
        // transaction or two, not one each.
        let transactions: i64 = pg
            .client()
            .await
            .query_one(
                "SELECT count(DISTINCT xmin::text) FROM posts WHERE connection = $1",
                &[&mine.storage_key()],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            transactions <= 2,
            "{transactions} transactions for 29 batches"
        );
    }

    /// One batch of a group that cannot be written (here an event over the record size
    /// limit, found only when it is numbered) fails alone: the group is applied again
    /// batch by batch, and the others are applied once each.
    #[tokio::test]
    async fn a_batch_that_fails_in_a_group_fails_alone() {
        let pg = Pg::new().await;
        let store = pg.open_backend().await;
        let k = key("jane", Platform::X);
        let mut futures = Vec::new();
        for i in 0..10 {
            let mut event = Event::new(
                Timestamp::from_unix_millis(1),
                k.clone(),
                EventKind::ConnectionStatus,
            );
            if i == 4 {
                event = event.detail("x".repeat(2 << 20));
            }
            let mut b = Batch::new();
            b.put_post(&post(&k, i)).event(event);
            futures.push(store.commit(b, Durability::Durable));
        }
        let mut seqs = Vec::new();
        for (i, f) in futures.into_iter().enumerate() {
            match f.await {
                Ok(c) => seqs.push(c.events[0].seq),
                Err(StoreError::Encode(_)) if i == 4 => {}
                Err(other) => panic!("commit {i}: {other}"),
            }
        }
        assert_eq!(seqs.len(), 9);
        assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
        assert_eq!(store.posts_of_connection(&k).await.unwrap().items.len(), 9);
        assert_eq!(
            store.events_after(0, 100).await.unwrap().len(),
            9,
            "each once"
        );
    }
}
