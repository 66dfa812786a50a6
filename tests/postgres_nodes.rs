//! Several engine nodes on one PostgreSQL database (issue 13): each connection runs on
//! exactly one node, under a lease whose epoch fences its writes.
//!
//! Two engines in this process, each on its own `PgStore` of one real database (started
//! by the test, `tests/support/postgres.rs`), share one in-process fake platform, so its
//! counts outlive either node: every post it received, every refresh token resent after
//! its rotation. Leases of 3 s (renewed every second, the platform-call gate closing 1 s
//! before they run out) keep the run short.
//!
//! - 30 connections made on node A are split with node B when B joins (A hands over
//!   its excess), each run by one node; a command sent to the node that does not run
//!   the connection (schedule, verify) is carried to the one that does through the
//!   database and answered as if asked there;
//! - node A is cut off from the leases (its renewals fail, as for a node paused or
//!   partitioned; its other writes still reach the database): from `lease − margin`
//!   after the cut it sends nothing to the platform (posts fall due all along), B takes its connections over and publishes
//!   their posts and refreshes every grant, A's former ones included (rotating refresh
//!   tokens); every post ends published exactly once (or Unconfirmed), no rotated
//!   refresh token is ever sent again; once A reaches the database again it lets go of
//!   what it lost;
//! - a disconnect sent to the node that does not run the connection is carried out by
//!   the one that does;
//! - B shuts down gracefully: its connections move to A at once (released, not lapsed).

#[path = "support/node.rs"]
#[allow(dead_code)] // only its npm install is used here
mod node;
#[path = "support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use social_studio::wait::poll_until;
use social_studio_actors::lease::lease_margin;
use social_studio_actors::testkit::{post_due, FakePlatform, FaultyStore};
use social_studio_actors::{
    Clock, Engine, EngineConfig, LostRefreshPolicy, PlatformPort, PortError, RevokeOutcome,
    SystemClock,
};
use social_studio_storage::{
    Account, ConnectionKey, Grant, GrantFacts, MasterKey, NodeId, PenName, PgConfig, PgStore,
    Platform, Post, PostState, Reason, Receipt, SharedStore, Store, Timestamp,
};

const CONNECTIONS: usize = 30;
const POSTS_PER_CONNECTION: usize = 2;
const LEASE: Duration = Duration::from_secs(3);
const PATIENCE: Duration = Duration::from_secs(60);
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// The platform as one node sees it: the shared fake, with the instant of every call
/// this node sent.
struct NodePort {
    inner: Arc<FakePlatform>,
    calls: Arc<Mutex<Vec<(Instant, Call)>>>,
}

/// What a node sent the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Refresh,
    Other,
}

impl NodePort {
    fn sent(&self, call: Call) {
        self.calls.lock().unwrap().push((Instant::now(), call));
    }
}

#[async_trait]
impl PlatformPort for NodePort {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        self.sent(Call::Refresh);
        self.inner.refresh(grant).await
    }
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        self.sent(Call::Other);
        self.inner.check(grant).await
    }
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        self.sent(Call::Other);
        self.inner.publish(grant, post).await
    }
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        self.sent(Call::Other);
        self.inner.revoke(grant).await
    }
    fn renewable(&self, grant: &GrantFacts) -> bool {
        self.inner.renewable(grant)
    }
    fn lost_refresh_policy(&self) -> LostRefreshPolicy {
        self.inner.lost_refresh_policy()
    }
    fn expiry_reason(&self) -> Reason {
        self.inner.expiry_reason()
    }
}

struct Node {
    engine: Engine,
    store: FaultyStore,
    calls: Arc<Mutex<Vec<(Instant, Call)>>>,
}

impl Node {
    async fn start(name: &str, url: &str, key: &MasterKey, platform: &Arc<FakePlatform>) -> Node {
        let pg = PgStore::open_with_key(&PgConfig::new(url), key)
            .await
            .unwrap_or_else(|e| panic!("node {name} opening the database: {e}"));
        let store = FaultyStore::new(Arc::new(pg));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let port: Arc<dyn PlatformPort> = Arc::new(NodePort {
            inner: platform.clone(),
            calls: calls.clone(),
        });
        let config = EngineConfig {
            node: NodeId::parse(name).unwrap(),
            lease: LEASE,
            jitter_seed: Some(7),
            ..EngineConfig::default()
        };
        let shared: SharedStore = Arc::new(store.clone());
        let engine = Engine::start(shared, vec![port], Arc::new(SystemClock), config)
            .await
            .unwrap_or_else(|e| panic!("node {name} starting: {e}"));
        Node {
            engine,
            store,
            calls,
        }
    }

    async fn running(&self) -> usize {
        self.engine.tree().await.unwrap().running_here
    }

    fn calls_after(&self, t: Instant) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c > t)
            .count()
    }

    fn refreshes_after(&self, t: Instant) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, call)| *c > t && *call == Call::Refresh)
            .count()
    }
}

fn key(i: usize) -> ConnectionKey {
    ConnectionKey::new(PenName::parse(&format!("pen-{i:02}")).unwrap(), Platform::X)
}

/// How many connections each node holds a lease on, by node name.
async fn owners(store: &FaultyStore) -> HashMap<String, u64> {
    store
        .ownership()
        .owners()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_split_the_connections_fence_a_lost_one_and_hand_over_on_shutdown() {
    let server = postgres::Postgres::start().await;
    let url = server.create_database("nodes").await;
    let key_material = MasterKey::generate();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Access tokens of 8 s, refreshed at 75–90 % of that (6–7.2 s) with rotating refresh
    // tokens: the grants rotate after the takeover below, on the node holding them then.
    let platform = Arc::new(FakePlatform::new(
        Platform::X,
        clock.clone(),
        Duration::from_secs(8),
    ));

    // Node A alone: every connection made through it runs on it.
    let a = Node::start("node-a", &url, &key_material, &platform).await;
    for i in 0..CONNECTIONS {
        let user = format!("user{i}");
        a.engine
            .connect(
                key(i),
                platform.account(&user),
                Vec::new(),
                platform.issue_grant(&user),
                false,
            )
            .await
            .unwrap_or_else(|e| panic!("connecting {i}: {e}"));
    }
    assert_eq!(a.running().await, CONNECTIONS);

    // Node B joins: A hands over what exceeds its share, B takes it.
    let b = Node::start("node-b", &url, &key_material, &platform).await;
    let split = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let (ra, rb) = (a.running().await, b.running().await);
        (ra + rb == CONNECTIONS && ra.abs_diff(rb) <= 2).then_some(())
    })
    .await;
    if split.is_none() {
        panic!(
            "the nodes never split the connections: {:?}",
            owners(&a.store).await
        );
    }
    let split = owners(&a.store).await;
    assert_eq!(split.values().sum::<u64>(), CONNECTIONS as u64, "{split:?}");

    // Any node takes any command: one the other node runs is carried to it through the
    // database, and answered as if it had been asked there.
    let now = Timestamp::now_system();
    let mut posts = Vec::new();
    for i in 0..CONNECTIONS {
        let owner = a
            .store
            .ownership()
            .owner_of(&key(i))
            .await
            .unwrap()
            .unwrap();
        let (here, elsewhere) = if owner.as_str() == "node-a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        for n in 0..POSTS_PER_CONNECTION {
            // Due one after another from 1 s to about 6 s: across the cut below, the
            // closing of node A's gate and the takeover.
            let j = (n * CONNECTIONS + i) as u64;
            let due = now.saturating_add(Duration::from_millis(1000 + 80 * j));
            let post = post_due(&key(i), due, &format!("post {n} of {i}"));
            let through = if n == 0 { elsewhere } else { here };
            let scheduled = through.engine.schedule(post.clone()).await.unwrap();
            assert_eq!(scheduled.id, post.id);
            assert_eq!(scheduled.state, PostState::Scheduled);
            posts.push(post.id);
        }
        if i == 0 {
            let view = elsewhere.engine.verify(key(i)).await.unwrap();
            assert_eq!(view.connection.key, key(i));
        }
    }
    // The relayed posts are queued on their owners, not only stored: each owner's queues
    // hold exactly the posts of the connections it runs.
    let queued = |tree: social_studio_actors::TreeReport| {
        tree.queues.iter().map(|(_, q)| q.scheduled).sum::<usize>()
    };
    let (qa, qb) = (
        queued(a.engine.tree().await.unwrap()),
        queued(b.engine.tree().await.unwrap()),
    );
    assert_eq!(qa + qb, posts.len(), "queued on A {qa}, on B {qb}");
    assert_eq!(qa, a.running().await * POSTS_PER_CONNECTION);

    // Node A loses the database for its leases (a pause, a partition): from one lease
    // after the cut it calls nothing; B takes its connections over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut = Instant::now();
    a.store.cut_leases(true);
    let took = poll_until(PATIENCE, LOOK_AGAIN, async || {
        (owners(&b.store).await.get("node-b") == Some(&(CONNECTIONS as u64))).then_some(())
    })
    .await;
    if took.is_none() {
        panic!(
            "node B never took node A's connections: {:?}",
            owners(&b.store).await
        );
    }
    let taken_over = cut.elapsed();

    // Every post ends once: published, or Unconfirmed when it was on its way as A lost
    // it; never sent twice.
    let finished = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let mut states = Vec::new();
        for id in &posts {
            let p = b.store.post(*id).await.unwrap().unwrap();
            if !matches!(p.state, PostState::Published(_) | PostState::Unconfirmed) {
                return None;
            }
            states.push(p.state);
        }
        Some(states)
    })
    .await
    .expect("posts did not all finish");
    let mut sent: HashMap<_, usize> = HashMap::new();
    for p in platform.published() {
        *sent.entry(p.post).or_default() += 1;
    }
    assert!(
        sent.values().all(|n| *n == 1),
        "a post was sent twice: {sent:?}"
    );
    // What the store says agrees with what the platform received: a Published post was
    // received (once), a received post is Published or Unconfirmed (its outcome lost
    // with the node that sent it).
    let mut published = 0;
    for (id, state) in posts.iter().zip(&finished) {
        if matches!(state, PostState::Published(_)) {
            published += 1;
            assert_eq!(
                sent.get(id),
                Some(&1),
                "post {id} is Published but was not received"
            );
        }
    }
    assert!(
        sent.keys().all(|id| posts.contains(id)),
        "the platform received a post nobody scheduled"
    );
    assert!(published > 0);
    assert_eq!(
        platform.spent_token_sends(),
        0,
        "a rotated refresh token was sent again"
    );
    // Its gate closed `lease − margin` after its last renewal went out (before the
    // cut); a call checked just before may be recorded a moment later.
    let last_renewal = a
        .store
        .last_renewal()
        .expect("node A renewed before the cut");
    assert!(last_renewal < cut);
    let gate_closed = last_renewal + LEASE - lease_margin(LEASE) + Duration::from_millis(150);
    assert_eq!(
        a.calls_after(gate_closed),
        0,
        "node A called the platform after its gate closed"
    );
    assert!(b.calls_after(cut) > 0, "node B did the work it took over");
    // Every grant rotates after the takeover — node A's former ones too — and only B
    // sends the refreshes; no spent refresh token ever reaches the platform.
    let took_over_at = Timestamp::now_system();
    poll_until(PATIENCE, LOOK_AGAIN, async || {
        for i in 0..CONNECTIONS {
            let c = b.store.connection(&key(i)).await.ok()??;
            if c.grant?.issued_at <= took_over_at {
                return None;
            }
        }
        Some(())
    })
    .await
    .expect("not every grant was refreshed after the takeover");
    assert!(b.refreshes_after(cut) >= CONNECTIONS);
    assert_eq!(
        platform.spent_token_sends(),
        0,
        "a spent refresh token was sent"
    );
    assert_eq!(
        a.calls_after(gate_closed),
        0,
        "node A called after its gate closed"
    );

    // A reaches the database again: it learns what it lost, stops those actors, and
    // runs exactly the connections it holds a lease on from then on.
    a.store.cut_leases(false);
    poll_until(PATIENCE, LOOK_AGAIN, async || {
        let held = *owners(&a.store).await.get("node-a")?;
        (a.running().await as u64 == held).then_some(())
    })
    .await
    .expect("node A never came back running only what it holds");

    // A disconnect asked of the node that does not run the connection is carried out
    // by the one that does: the grant revoked, the connection gone, its lease released.
    let gone = key(1);
    let owner = a.store.ownership().owner_of(&gone).await.unwrap();
    let other = if owner.as_ref().map(NodeId::as_str) == Some("node-a") {
        &b
    } else {
        &a
    };
    let report = other.engine.disconnect(gone.clone()).await.unwrap();
    assert_eq!(report.posts_failed, 0, "its posts had all finished");
    assert!(a.store.connection(&gone).await.unwrap().is_none());
    let remaining = CONNECTIONS - 1;

    // B shuts down gracefully: it releases its leases, so A takes everything without
    // waiting for them to lapse.
    let leaving = Instant::now();
    b.engine.shutdown().await;
    poll_until(PATIENCE, LOOK_AGAIN, async || {
        (a.running().await == remaining).then_some(())
    })
    .await
    .expect("node A never took node B's connections over");
    let handed_over = leaving.elapsed();
    assert_eq!(
        owners(&a.store).await,
        HashMap::from([("node-a".to_owned(), remaining as u64)])
    );
    println!(
        "takeover after the cut: {taken_over:.1?} (lease {LEASE:?}); handover at shutdown: {handed_over:.1?}; published {published} of {}",
        posts.len()
    );
    a.engine.shutdown().await;
}
