//! Several `PgStore`s on one database — several nodes, as far as the store can tell:
//! each one's event feed carries every node's events, in sequence order, each once
//! (LISTEN/NOTIFY, the read from the table after a lost listener connection, the timed
//! read), on a real PostgreSQL started by this test binary (`tests/support/postgres.rs`).
//!
//! The stores here read the table on a timer only once an hour unless a test says
//! otherwise, so an event reaches another node's subscriber within a test only through
//! a notification or the read after the listener connected again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use social_studio_storage::fixtures::{connection, grant, key};
use social_studio_storage::{
    Batch, ConnectionKey, Durability, Event, EventKind, MasterKey, PgConfig, PgStore, Platform,
    Store, Timestamp,
};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_postgres::{AsyncMessage, NoTls};

// The harness waits with the engine's `social_studio::wait::poll_until`: the same file,
// compiled into this test crate under that name.
extern crate self as social_studio;
#[path = "../../src/wait.rs"]
mod wait;

#[path = "../../tests/support/node.rs"]
#[allow(dead_code)] // only its npm install is used here, not its server scripts
mod node;
#[path = "../../tests/support/postgres.rs"]
#[allow(dead_code)] // only the server's URL is used here
mod postgres;

use postgres::Postgres;

/// How long a test waits for what it awaits before it fails.
const WITHIN: Duration = Duration::from_secs(30);

/// The timed read of the stores in these tests: never, within a test.
const NO_TIMED_READ: Duration = Duration::from_secs(3600);

/// The server the running tests share (started by the first, stopped after the last).
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

/// A database of its own on the shared server: the nodes of one test open it.
struct Db {
    url: String,
    name: String,
    key: MasterKey,
    /// Declared last: the server outlives the test's stores.
    _server: Arc<Postgres>,
}

impl Db {
    async fn new() -> Db {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let server = server().await;
        let name = format!(
            "nodes_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = server.create_database(&name).await;
        Db {
            url,
            name,
            key: MasterKey::generate(),
            _server: server,
        }
    }

    /// A plain client on the test's database, for looking past the stores.
    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
        tokio::spawn(connection);
        client
    }

    fn config(&self) -> PgConfig {
        let mut config = PgConfig::new(&self.url);
        config.pool_size = 4;
        config.feed_poll_interval = NO_TIMED_READ;
        config
    }

    async fn open(&self, config: &PgConfig) -> PgStore {
        PgStore::open_with_key(config, &self.key)
            .await
            .unwrap_or_else(|e| panic!("open store: {e:?}"))
    }

    /// A node of its own login role (a superuser like the harness's, with its password),
    /// so that a test can refuse that node's connections alone.
    async fn node_as(&self, role: &str, config: PgConfig) -> PgStore {
        let (scheme, rest) = self.url.split_once("://").expect("a URL");
        let (user, rest) = rest.split_once(':').expect("a user and password");
        let password = rest.split_once('@').expect("a password").0;
        self.client()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"
            ))
            .await
            .unwrap_or_else(|e| panic!("CREATE ROLE {role}: {e:?}"));
        assert_eq!(user, "postgres");
        let mut config = PgConfig {
            url: format!("{scheme}://{role}:{rest}"),
            ..config
        };
        config.pool_size = 4;
        self.open(&config).await
    }
}

fn event(k: &ConnectionKey, detail: &str) -> Event {
    Event::new(
        Timestamp::from_unix_millis(1),
        k.clone(),
        EventKind::ConnectionStatus,
    )
    .detail(detail)
}

/// Commits `n` batches of one event each, all called at once (so they are applied in
/// groups); their sequence numbers, in commit order.
async fn commit_events(store: &PgStore, k: &ConnectionKey, label: &str, n: usize) -> Vec<u64> {
    let futures: Vec<_> = (0..n)
        .map(|i| {
            let mut b = Batch::new();
            b.event(event(k, &format!("{label} {i}")));
            store.commit(b, Durability::Durable)
        })
        .collect();
    let mut seqs = Vec::new();
    for f in futures {
        seqs.extend(f.await.expect("a commit").events.iter().map(|e| e.seq));
    }
    seqs
}

/// The next event of a feed, awaited for at most [`WITHIN`].
async fn next(rx: &mut broadcast::Receiver<Event>, whose: &str) -> Event {
    match tokio::time::timeout(WITHIN, rx.recv()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("{whose}'s feed: {e}"),
        Err(_) => panic!("{whose}'s feed delivered nothing (more) within {WITHIN:?}"),
    }
}

/// The next `n` events of a feed.
async fn take(rx: &mut broadcast::Receiver<Event>, n: usize, whose: &str) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(rx, whose).await);
    }
    out
}

/// Nothing more is on any of `feeds` before a marker committed now through `via`:
/// what was taken from each was each event once.
async fn nothing_more(feeds: &mut [(&mut broadcast::Receiver<Event>, &str)], via: &PgStore) {
    let k = key("marker", Platform::X);
    let seq = commit_events(via, &k, "marker", 1).await[0];
    for (rx, whose) in feeds {
        let after = next(rx, whose).await;
        assert_eq!(
            (after.seq, after.detail.as_deref()),
            (seq, Some("marker 0")),
            "{whose}'s feed delivered more than each event once"
        );
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Events committed through one node reach a subscriber of the other, in order, each
/// once, as they were committed.
#[tokio::test]
async fn events_committed_on_one_node_reach_the_other_in_order_each_once() {
    let db = Db::new().await;
    let a = db.open(&db.config()).await;
    let b = db.open(&db.config()).await;
    let mut on_b = b.subscribe();
    let k = key("jane", Platform::X);
    let committed = commit_events(&a, &k, "from a", 40).await;
    let got = take(&mut on_b, committed.len(), "B").await;
    assert_eq!(seqs(&got), committed);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.detail.as_deref(), Some(format!("from a {i}").as_str()));
        assert_eq!(e.connection, k);
    }
    nothing_more(&mut [(&mut on_b, "B")], &b).await;
}

/// Both nodes commit at once: both feeds deliver every event, in the same total order
/// (the table's), with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_interleaved_from_two_nodes_reach_both_in_one_order_without_gaps() {
    let db = Db::new().await;
    let a = db.open(&db.config()).await;
    let b = db.open(&db.config()).await;
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    let per_node = 30;
    let rounds = 3;
    let mut total = 0;
    for round in 0..rounds {
        let (ka, kb) = (key("jane", Platform::X), key("john", Platform::Threads));
        let (la, lb) = (format!("a{round}"), format!("b{round}"));
        let (from_a, from_b) = tokio::join!(
            commit_events(&a, &ka, &la, per_node),
            commit_events(&b, &kb, &lb, per_node),
        );
        total += from_a.len() + from_b.len();
    }
    let (got_a, got_b) = tokio::join!(take(&mut on_a, total, "A"), take(&mut on_b, total, "B"));
    let in_table = a.events_after(0, total + 1).await.unwrap();
    assert_eq!(in_table.len(), total);
    assert_eq!(
        seqs(&got_a),
        seqs(&in_table),
        "A's feed is the table's order"
    );
    assert_eq!(
        seqs(&got_b),
        seqs(&in_table),
        "B's feed is the table's order"
    );
    assert!(
        seqs(&in_table).windows(2).all(|w| w[0] + 1 == w[1]),
        "no gap: {:?}",
        seqs(&in_table)
    );
    assert!(
        got_b
            .iter()
            .any(|e| e.detail.as_deref().is_some_and(|d| d.starts_with('a')))
            && got_a
                .iter()
                .any(|e| e.detail.as_deref().is_some_and(|d| d.starts_with('b'))),
        "each feed carries the other node's events"
    );
    nothing_more(&mut [(&mut on_a, "A"), (&mut on_b, "B")], &a).await;
}

/// The process id of a node's listening connection, once it is listening.
async fn listener_of(admin: &tokio_postgres::Client, role: &str) -> i32 {
    wait::poll_until(WITHIN, Duration::from_millis(20), async || {
        admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE usename = $1 \
                 AND application_name = 'social-studio event feed' AND query LIKE 'LISTEN%'",
                &[&role],
            )
            .await
            .unwrap()
            .map(|row| row.get::<_, i32>(0))
    })
    .await
    .unwrap_or_else(|| panic!("{role}'s listener never listened"))
}

/// Cuts a node's listener off: its role may no longer log in (so it cannot connect
/// again) and its listening connection is ended with `pg_terminate_backend`.
async fn cut_listener(admin: &tokio_postgres::Client, role: &str) {
    let pid = listener_of(admin, role).await;
    admin
        .batch_execute(&format!("ALTER ROLE {role} NOLOGIN"))
        .await
        .unwrap();
    let ended: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(ended, "the listener's backend was not terminated");
    let gone = wait::poll_until(WITHIN, Duration::from_millis(20), async || {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        (n == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the listener's backend never ended");
}

/// B's listening connection is killed and cannot come back while A commits: the
/// notifications of those commits are lost, and once B connects again its feed reads
/// them from the table — in order, each once.
#[tokio::test]
async fn a_node_whose_listener_was_killed_connects_again_and_misses_nothing() {
    let db = Db::new().await;
    let admin = db.client().await;
    let role = format!("{}_b", db.name);
    let a = db.open(&db.config()).await;
    let b = db.node_as(&role, db.config()).await;
    let mut on_b = b.subscribe();
    let k = key("jane", Platform::X);

    let before = commit_events(&a, &k, "before", 3).await;
    assert_eq!(seqs(&take(&mut on_b, 3, "B").await), before);

    cut_listener(&admin, &role).await;
    let meanwhile = commit_events(&a, &k, "meanwhile", 25).await;
    admin
        .batch_execute(&format!("ALTER ROLE {role} LOGIN"))
        .await
        .unwrap();
    let got = take(&mut on_b, meanwhile.len(), "B").await;
    assert_eq!(seqs(&got), meanwhile);
    // It listens again: later commits are announced to it.
    listener_of(&admin, &role).await;
    let after = commit_events(&a, &k, "after", 3).await;
    assert_eq!(seqs(&take(&mut on_b, 3, "B").await), after);
    nothing_more(&mut [(&mut on_b, "B")], &b).await;
}

/// A node whose listener is gone for good still delivers the other node's events,
/// through the timed read, within its `feed_poll_interval`.
#[tokio::test]
async fn the_timed_read_delivers_while_the_listener_is_gone() {
    let db = Db::new().await;
    let admin = db.client().await;
    let role = format!("{}_b", db.name);
    let a = db.open(&db.config()).await;
    let mut config = db.config();
    config.feed_poll_interval = Duration::from_millis(200);
    let b = db.node_as(&role, config).await;
    let mut on_b = b.subscribe();
    let k = key("jane", Platform::X);
    cut_listener(&admin, &role).await;
    let committed = commit_events(&a, &k, "unannounced", 5).await;
    assert_eq!(seqs(&take(&mut on_b, 5, "B").await), committed);
    nothing_more(&mut [(&mut on_b, "B")], &b).await;
}

/// What a commit tells the other nodes, seen on a plain `LISTEN` connection: the new
/// high number on the channel `social_studio_events.<schema>` — never record data, and
/// nothing for a commit without events.
#[tokio::test]
async fn the_notification_carries_the_high_number_and_no_record_data() {
    let db = Db::new().await;
    let store = db.open(&db.config()).await;
    let (listener, mut session) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| session.poll_message(cx)).await {
            if let Ok(AsyncMessage::Notification(note)) = message {
                let _ = tx.send((note.channel().to_owned(), note.payload().to_owned()));
            }
        }
    });
    listener
        .batch_execute("LISTEN \"social_studio_events.public\"")
        .await
        .unwrap();

    let k = key("jane", Platform::X);
    let secret = "refresh-token-never-in-a-notification";
    let detail = "detail-never-in-a-notification";
    let mut quiet = Batch::new();
    quiet.put_connection(&connection(&k));
    store.commit(quiet, Durability::Durable).await.unwrap();
    let mut b = Batch::new();
    b.put_grant(&k, &grant("access-never-in-a-notification", Some(secret)))
        .event(event(&k, detail))
        .event(event(&k, detail));
    let committed = store.commit(b, Durability::Durable).await.unwrap();
    let high = committed.events.last().unwrap().seq;

    let (channel, payload) = tokio::time::timeout(WITHIN, notes.recv())
        .await
        .expect("a notification within the wait")
        .expect("the listening connection is open");
    assert_eq!(channel, "social_studio_events.public");
    assert_eq!(
        payload,
        high.to_string(),
        "the payload is the new high number, and the eventless commit sent nothing"
    );
    assert!(!payload.contains(secret) && !payload.contains(detail));
}

/// A subscriber that falls behind by more than the feed's capacity is told how many
/// events it missed (`Lagged`), as on sled, and goes on with the newest.
#[tokio::test]
async fn a_subscriber_that_lags_past_the_capacity_is_told() {
    let db = Db::new().await;
    let a = db.open(&db.config()).await;
    let mut config = db.config();
    config.event_capacity = 4;
    let b = db.open(&config).await;
    let mut slow = b.subscribe();
    let k = key("jane", Platform::X);
    let committed = commit_events(&a, &k, "burst", 10).await;
    // Until B's feed has sent all ten (the count includes what was overwritten).
    let sent = wait::poll_until(WITHIN, Duration::from_millis(10), async || {
        (slow.len() >= 10).then_some(())
    })
    .await;
    assert!(sent.is_some(), "B's feed sent {} of 10", slow.len());
    match slow.recv().await {
        Err(RecvError::Lagged(missed)) => assert_eq!(missed, 6),
        other => panic!("expected Lagged, got {other:?}"),
    }
    assert_eq!(seqs(&take(&mut slow, 4, "B").await), committed[6..]);
}

/// A store's listening connection is its own, one per store, and ends with the store.
#[tokio::test]
async fn each_store_listens_on_one_connection_of_its_own_until_dropped() {
    let db = Db::new().await;
    let admin = db.client().await;
    let listeners = async || -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'social-studio event feed' AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    let awaited = async |n: i64| {
        wait::poll_until(WITHIN, Duration::from_millis(20), async || {
            (listeners().await == n).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} listening connections"))
    };
    let a = db.open(&db.config()).await;
    let b = db.open(&db.config()).await;
    awaited(2).await;
    drop(a);
    awaited(1).await;
    drop(b);
    awaited(0).await;
}
