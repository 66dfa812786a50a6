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
        let (admin, connection) = tokio_postgres::connect(server.url(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
        let driver = tokio::spawn(connection);
        let name = format!(
            "store_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
        drop(admin);
        let _ = driver.await;
        let base = server
            .url()
            .strip_suffix("/postgres")
            .expect("the harness's URL names the postgres database");
        Pg {
            url: format!("{base}/{name}"),
            key: MasterKey::generate(),
            _server: server,
        }
    }

    fn config(&self) -> PgConfig {
        let mut config = PgConfig::new(&self.url);
        config.pool_size = 8;
        config
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
