//! Leases between nodes on a real PostgreSQL ([`Ownership`] on `PgStore`): each node is a
//! store handle of its own (its own pool, as a process would have), every test a database
//! of its own on a server this binary starts (`tests/support/postgres.rs`).
//!
//! Leases are short (1 s) where a test waits for one to lapse, and that wait is a poll of
//! the condition (`social_studio::wait::poll_until`), never a fixed sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use social_studio_storage::fixtures::{connection, key};
use social_studio_storage::{
    Batch, ConnectionKey, Durability, Epoch, MasterKey, NodeId, Ownership, PgConfig, PgStore,
    Platform, Store, StoreError,
};
use tokio_postgres::NoTls;

// The tests wait with the engine's `social_studio::wait::poll_until`: the same file,
// compiled into this test crate under that name.
extern crate self as social_studio;
#[path = "../../src/wait.rs"]
mod wait;

#[path = "../../tests/support/node.rs"]
#[allow(dead_code)] // only its npm install is used here, not its server scripts
mod node;
#[path = "../../tests/support/postgres.rs"]
#[allow(dead_code)] // the tests need only the server's URL
mod postgres;

use postgres::Postgres;
use wait::poll_until;

/// The server the running tests share (it stops when the last of them lets go).
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

/// A database of its own on the shared server.
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
            "leases_{}_{}",
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

    /// One node's handle on the database.
    async fn node(&self) -> PgStore {
        let mut config = PgConfig::new(&self.url);
        config.pool_size = 4;
        PgStore::open_with_key(&config, &self.key)
            .await
            .unwrap_or_else(|e| panic!("open store: {e:?}"))
    }

    /// Every lease as the database holds it: key → (owner, epoch, live), past the store.
    async fn leases(&self) -> BTreeMap<Vec<u8>, (Option<String>, i64, bool)> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
        tokio::spawn(connection);
        client
            .query(
                "SELECT e.key, e.owner, e.epoch, coalesce(e.expires_at > now(), false) \
                 FROM epochs e JOIN connections c ON c.key = e.key",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect()
    }
}

fn node(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

fn keys(range: std::ops::Range<usize>) -> Vec<ConnectionKey> {
    range
        .map(|i| key(&format!("pen{i:03}"), Platform::X))
        .collect()
}

/// Creates the connections, unfenced, as any node's API would.
async fn create(store: &PgStore, keys: &[ConnectionKey]) {
    let mut batch = Batch::new();
    for k in keys {
        batch.put_connection(&connection(k));
    }
    store.commit(batch, Durability::Durable).await.unwrap();
}

fn key_set<'a>(
    leases: impl IntoIterator<Item = &'a (ConnectionKey, Epoch)>,
) -> BTreeSet<ConnectionKey> {
    leases.into_iter().map(|(k, _)| k.clone()).collect()
}

const SHORT: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(60);

/// A node alone takes every connection, once; a connection created afterwards is
/// nobody's until an acquire takes it.
#[tokio::test]
async fn one_node_acquires_every_connection_once() {
    let pg = Pg::new().await;
    let a = pg.node().await;
    let all = keys(0..12);
    create(&a, &all).await;
    let n = node("a");
    let taken = a.acquire(&n, LONG).await.unwrap();
    assert_eq!(key_set(&taken), all.iter().cloned().collect());
    assert!(taken.iter().all(|(_, e)| *e == Epoch(1)), "{taken:?}");
    assert!(a.acquire(&n, LONG).await.unwrap().is_empty(), "taken twice");
    assert_eq!(a.owners().await.unwrap(), vec![(n.clone(), 12)]);
    // A write fenced with the acquired epoch applies.
    let mut batch = Batch::new();
    batch
        .fence(&all[0], taken[0].1)
        .put_connection(&connection(&all[0]));
    a.commit(batch, Durability::Durable).await.unwrap();

    let new = key("pen999", Platform::Bluesky);
    create(&a, std::slice::from_ref(&new)).await;
    assert_eq!(
        a.owners().await.unwrap(),
        vec![(n.clone(), 12)],
        "owned by nobody yet"
    );
    let renewal = a.renew(&n, LONG).await.unwrap();
    assert_eq!(key_set(&renewal.held), all.iter().cloned().collect());
    assert!(renewal.lost.is_empty() && renewal.released.is_empty());
    assert_eq!(renewal.valid_for, LONG);
    assert_eq!(a.acquire(&n, LONG).await.unwrap(), vec![(new, Epoch(1))]);
    assert_eq!(a.owners().await.unwrap(), vec![(n, 13)]);
}

/// Every connection has exactly one live owner, and the nodes' own views agree with the
/// database's.
async fn assert_one_live_owner_each(
    pg: &Pg,
    all: &[ConnectionKey],
    views: &[(&str, &BTreeSet<ConnectionKey>)],
) {
    let leases = pg.leases().await;
    for k in all {
        let (owner, _, live) = leases
            .get(&k.storage_key())
            .unwrap_or_else(|| panic!("{k} has never been owned"));
        assert!(*live, "{k} has no live owner");
        let claimed: Vec<_> = views.iter().filter(|(_, held)| held.contains(k)).collect();
        assert_eq!(claimed.len(), 1, "{k} is held by {claimed:?}");
        assert_eq!(owner.as_deref(), Some(claimed[0].0), "{k}");
    }
}

/// A second node joins: the first lets its excess lapse (the last keys), the second
/// takes them once they did, and at every step each connection has one live owner.
#[tokio::test]
async fn a_joining_node_gets_about_half_and_no_connection_has_two_owners() {
    let pg = Pg::new().await;
    let (a, b) = (pg.node().await, pg.node().await);
    let (na, nb) = (node("a"), node("b"));
    let all = keys(0..20);
    create(&a, &all).await;
    assert_eq!(a.acquire(&na, SHORT).await.unwrap().len(), 20);
    let joined = b.renew(&nb, SHORT).await.unwrap();
    assert!(joined.held.is_empty());
    assert!(
        b.acquire(&nb, SHORT).await.unwrap().is_empty(),
        "all are held"
    );
    let shed = a.renew(&na, SHORT).await.unwrap();
    assert_eq!(shed.held.len(), 10, "the fair share of two nodes");
    assert_eq!(
        shed.released,
        all[10..].to_vec(),
        "the excess is the last in key order"
    );
    let mut a_held = key_set(&shed.held);
    let mut b_held = BTreeSet::new();
    let balanced = poll_until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        async || {
            // Both nodes' engines at work: renew, then acquire.
            a_held = key_set(&a.renew(&na, SHORT).await.unwrap().held);
            a_held.extend(key_set(&a.acquire(&na, SHORT).await.unwrap()));
            b_held = key_set(&b.renew(&nb, SHORT).await.unwrap().held);
            b_held.extend(key_set(&b.acquire(&nb, SHORT).await.unwrap()));
            assert!(a_held.is_disjoint(&b_held), "{a_held:?} and {b_held:?}");
            (a_held.len() == 10 && b_held.len() == 10).then_some(())
        },
    )
    .await;
    assert!(
        balanced.is_some(),
        "not balanced: a {a_held:?}, b {b_held:?}"
    );
    assert_eq!(b_held, all[10..].iter().cloned().collect());
    assert_one_live_owner_each(&pg, &all, &[("a", &a_held), ("b", &b_held)]).await;
    assert_eq!(
        a.owners().await.unwrap(),
        vec![(na.clone(), 10), (nb.clone(), 10)]
    );
}

/// Two nodes acquiring the same connections at the same moment never both take one —
/// connections never claimed (the insert) and released ones (the locked update) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_racing_to_acquire_never_take_the_same_connection() {
    let pg = Pg::new().await;
    let (a, b) = (pg.node().await, pg.node().await);
    let mut all = Vec::new();
    for round in 0..25 {
        // Ten new connections each round, beside the ones the last round released.
        let new = keys(round * 10..round * 10 + 10);
        create(&a, &new).await;
        all.extend(new);
        let (na, nb) = (node(&format!("a{round}")), node(&format!("b{round}")));
        // Both live before they race, so each wants the same first half.
        a.renew(&na, LONG).await.unwrap();
        b.renew(&nb, LONG).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let race = |store: PgStore, n: NodeId| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                store.acquire(&n, LONG).await.unwrap()
            })
        };
        let (ta, tb) = (race(a.clone(), na.clone()), race(b.clone(), nb.clone()));
        let (ta, tb) = (ta.await.unwrap(), tb.await.unwrap());
        let (sa, sb) = (key_set(&ta), key_set(&tb));
        assert!(
            sa.is_disjoint(&sb),
            "round {round}: both took {:?}",
            sa.intersection(&sb).collect::<Vec<_>>()
        );
        // What each was told is what the database says.
        let leases = pg.leases().await;
        for (owner, taken) in [(&na, &ta), (&nb, &tb)] {
            for (k, epoch) in taken {
                let (o, e, live) = &leases[&k.storage_key()];
                assert_eq!(
                    (o.as_deref(), *e as u64, *live),
                    (Some(owner.as_str()), epoch.0, true)
                );
            }
        }
        // Whatever one did not take, the other takes next (nothing left unowned).
        let mut sa = sa;
        sa.extend(key_set(&a.acquire(&na, LONG).await.unwrap()));
        let mut sb = sb;
        sb.extend(key_set(&b.acquire(&nb, LONG).await.unwrap()));
        assert!(sa.is_disjoint(&sb));
        assert_eq!(sa.len() + sb.len(), all.len(), "round {round}");
        a.release_all(&na).await.unwrap();
        b.release_all(&nb).await.unwrap();
    }
}

/// A node that stops renewing loses its connections once its lease lapsed: the survivor
/// takes them with newer epochs, the old owner's fenced writes are refused, and its next
/// renewal reports them lost.
#[tokio::test]
async fn a_node_that_stops_renewing_loses_its_connections_and_its_writes() {
    let pg = Pg::new().await;
    let (a, b) = (pg.node().await, pg.node().await);
    let (na, nb) = (node("a"), node("b"));
    let all = keys(0..6);
    create(&a, &all).await;
    let acquired_at = std::time::Instant::now();
    let a_took = a.acquire(&na, SHORT).await.unwrap();
    assert_eq!(a_took.len(), 6);
    b.renew(&nb, SHORT).await.unwrap();
    assert!(
        b.acquire(&nb, SHORT).await.unwrap().is_empty(),
        "taken while a's lease runs"
    );
    // a stops renewing (paused); b goes on with its engine's loop.
    let mut b_took = Vec::new();
    let took_over = poll_until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        async || {
            b.renew(&nb, SHORT).await.unwrap();
            b_took.extend(b.acquire(&nb, SHORT).await.unwrap());
            (b_took.len() == 6).then_some(())
        },
    )
    .await;
    assert!(took_over.is_some(), "b took only {b_took:?}");
    assert!(
        acquired_at.elapsed() >= SHORT,
        "taken over before a's lease ran out"
    );
    let before: BTreeMap<_, _> = a_took.iter().cloned().collect();
    for (k, epoch) in &b_took {
        assert!(*epoch > before[k], "{k}: {epoch:?} after {:?}", before[k]);
    }
    // a wakes: its writes are refused, and its renewal says what it lost.
    let (k, old) = &a_took[0];
    let mut batch = Batch::new();
    batch.fence(k, *old).put_connection(&connection(k));
    match a.commit(batch, Durability::Durable).await {
        Err(StoreError::Fenced { epoch, newest, .. }) => {
            assert_eq!(epoch, old.0);
            assert!(newest > old.0);
        }
        other => panic!("the paused owner wrote: {other:?}"),
    }
    let woke = a.renew(&na, SHORT).await.unwrap();
    assert!(woke.held.is_empty(), "{:?}", woke.held);
    assert_eq!(
        woke.lost.iter().cloned().collect::<BTreeSet<_>>(),
        all.iter().cloned().collect()
    );
    assert!(
        a.acquire(&na, SHORT).await.unwrap().is_empty(),
        "b holds its fair share and a's share is taken"
    );
}

/// A graceful shutdown hands over at once: with leases of a minute, the survivor takes
/// every connection at its next acquire; `release` hands over a few the same way.
#[tokio::test]
async fn release_hands_over_without_waiting_for_expiry() {
    let pg = Pg::new().await;
    let (a, b) = (pg.node().await, pg.node().await);
    let (na, nb) = (node("a"), node("b"));
    let all = keys(0..8);
    create(&a, &all).await;
    let a_took = a.acquire(&na, LONG).await.unwrap();
    assert_eq!(a_took.len(), 8);
    b.renew(&nb, LONG).await.unwrap();
    assert!(b.acquire(&nb, LONG).await.unwrap().is_empty());

    a.release(&na, &all[..2]).await.unwrap();
    let some = b.acquire(&nb, LONG).await.unwrap();
    assert_eq!(key_set(&some), all[..2].iter().cloned().collect());
    // (a holds six of eight beside a live b: two more than its share, so it lets the
    // last two lapse.)
    let renewal = a.renew(&na, LONG).await.unwrap();
    assert_eq!(key_set(&renewal.held), all[2..6].iter().cloned().collect());
    assert_eq!(renewal.released, all[6..].to_vec());
    assert!(
        renewal.lost.is_empty(),
        "released is not lost: {:?}",
        renewal.lost
    );

    a.release_all(&na).await.unwrap();
    assert_eq!(b.owners().await.unwrap(), vec![(nb.clone(), 2)], "a left");
    let rest = b.acquire(&nb, LONG).await.unwrap();
    assert_eq!(key_set(&rest), all[2..].iter().cloned().collect());
    let first: BTreeMap<_, _> = a_took.into_iter().collect();
    assert!(rest.iter().all(|(k, e)| *e > first[k]), "{rest:?}");
    let mut b_held = key_set(&some);
    b_held.extend(key_set(&rest));
    assert_one_live_owner_each(&pg, &all, &[("b", &b_held)]).await;
}

/// A process restarted under the same node id is a new holder: it does not renew its
/// predecessor's leases (it runs no work for them), takes them once they lapsed with
/// newer epochs, and the predecessor — same id, older epochs — has lost them.
#[tokio::test]
async fn a_restart_under_the_same_node_id_takes_over_by_epoch() {
    let pg = Pg::new().await;
    let (before, after) = (pg.node().await, pg.node().await);
    let n = node("web-1");
    let all = keys(0..4);
    create(&before, &all).await;
    let old = before.acquire(&n, SHORT).await.unwrap();
    assert_eq!(old.len(), 4);
    let fresh = after.renew(&n, SHORT).await.unwrap();
    assert!(
        fresh.held.is_empty(),
        "renewed leases it never took: {:?}",
        fresh.held
    );
    let mut taken = Vec::new();
    let took = poll_until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        async || {
            after.renew(&n, SHORT).await.unwrap();
            taken.extend(after.acquire(&n, SHORT).await.unwrap());
            (taken.len() == 4).then_some(())
        },
    )
    .await;
    assert!(took.is_some(), "took only {taken:?}");
    let stale = before.renew(&n, SHORT).await.unwrap();
    assert!(stale.held.is_empty(), "{:?}", stale.held);
    assert_eq!(key_set(&old), stale.lost.iter().cloned().collect());
    let renewed = after.renew(&n, SHORT).await.unwrap();
    assert_eq!(key_set(&renewed.held), key_set(&taken));
}
