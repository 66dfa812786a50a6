//! Three `social-studio serve` processes on one PostgreSQL database, sharing one standalone
//! sandbox (`social-studio-sandbox`, started with `serve --sandbox-url`), issue 13: the
//! deployment as an operator runs it, every part a process of its own, reached only
//! through HTTP on 127.0.0.1.
//!
//! - 280 pen names connect Bluesky with an app password and the first 20 of them X
//!   through its consent page: 300 connections, each made through one node's API or
//!   another's; `/v1/supervisor`'s `owners` shows them split over the three nodes;
//! - a post for every connection falls due over 15 s, each scheduled through a node other
//!   than the one that made its connection; once the sandbox has received a third of
//!   them, one node is SIGKILLed. The two others take its connections over (the time it
//!   took is printed, with the lease) and every post ends Published or Unconfirmed;
//! - a rolling restart: each surviving node in turn is stopped with SIGTERM (its
//!   connections handed over at once) and replaced by a node with a new id, while more
//!   posts, scheduled before and between the restarts, fall due.
//!
//! At the end the sandbox's own record — Bluesky's repositories, X's tweets — holds every
//! post at most once and every Published post exactly once, every post of the rolling
//! restart is Published, and every connection is still there, active, owned by a live
//! node.
//!
//! The second test is the fencing scenario with a real SIGSTOP and SIGCONT
//! ([`a_node_stopped_past_its_lease_wakes_fenced_and_sends_nothing_stale`]), which ends
//! with the event streams read through both nodes; the two take turns, as both time
//! leases of a few seconds on two cores.
//!
//! Leases of 5 s (the least the configuration takes) keep the run short: about a minute
//! on two cores, the PostgreSQL start included, within a budget of three (every wait has
//! its own patience too, and says what it waited for). The sandbox binary belongs to
//! another package of the workspace, so Cargo does not build it for this test: the test
//! runs `cargo build --offline` for it, a no-op when it is up to date. Every child runs in
//! a process group of its own, killed when the test lets go of it, and asks the kernel
//! for SIGKILL when the test's thread dies, so that none outlives a test binary killed
//! outright.

#[path = "support/node.rs"]
#[allow(dead_code)] // only its npm install is used here
mod node;
#[path = "support/postgres.rs"]
#[allow(dead_code)] // the test needs only the server's URL
mod postgres;
#[path = "support/sse.rs"]
mod sse;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use serde_json::{json, Value};
use social_studio::sandbox::browser;
use social_studio::wait::poll_until;
use social_studio_storage::{MasterKey, Timestamp};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

use sse::{SseEvent, SseReader};

/// Pen names with a Bluesky connection; the first [`X_PENS`] of them have X too.
const BLUESKY_PENS: usize = 280;
const X_PENS: usize = 20;
const CONNECTIONS: usize = BLUESKY_PENS + X_PENS;
/// The sandbox's seeded Bluesky accounts (handle, app password); pen names take turns.
const BLUESKY_ACCOUNTS: [(&str, &str); 2] = [
    ("jane.sandbox.test", "abcd-efgh-ijkl-mnop"),
    ("alex.sandbox.test", "qrst-uvwx-yz23-4567"),
];
/// The sandbox's seeded X users (username, id): ten pen names each, well inside X's
/// per-user limit on `users/me` (75 in 15 minutes), which every connect and check spends.
const X_USERS: [(&str, &str); 2] = [
    ("jane_writes", "2244994945"),
    ("other_account", "1111111111"),
];
/// The least lease the configuration takes: renewed every 1.7 s, taken over within
/// about 6.7 s of its last renewal.
const LEASE_SECS: u64 = 5;
const ADMIN_TOKEN: &str = "postgres-processes-admin-token-5f1c";
/// How the burst's posts are spread, and how far ahead of the first the scheduling starts.
const BURST_SPREAD: Duration = Duration::from_secs(15);
const BURST_LEAD: Duration = Duration::from_secs(10);
/// Posts of the rolling restart: before it (over 20 s), and between its two steps.
const BEFORE_RESTART_POSTS: usize = 40;
const DURING_RESTART_POSTS: usize = 20;
/// Requests in flight at once, over all nodes.
const LANES: usize = 6;
/// How long a node may take to answer `/readyz`; a phase to finish.
const START_PATIENCE: Duration = Duration::from_secs(60);
const PHASE_PATIENCE: Duration = Duration::from_secs(90);
/// Longer than any takeover the engine promises (lease + lease/3) by far: a timeout here
/// means the connections never moved.
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(45);
const LOOK_AGAIN: Duration = Duration::from_millis(100);
/// The whole scenario, from the PostgreSQL start to the last check (about a minute on two
/// cores); the sandbox binary's build, which may compile, comes before it.
const BUDGET: Duration = Duration::from_secs(180);

/// The scenarios time leases of a few seconds on two cores: one runs at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_a_sandbox_survive_a_kill_and_a_rolling_restart() {
    run(scenario).await;
}

/// Runs `scenario` once no other scenario runs, with the sandbox binary built, within
/// [`BUDGET`] (the build, which may compile, before it).
async fn run<F: Future<Output = ()>>(scenario: impl FnOnce(PathBuf) -> F) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let built = Instant::now();
    let sandbox_bin = sandbox_binary().await;
    println!("sandbox binary ready after {:.1?}", built.elapsed());
    tokio::time::timeout(BUDGET, scenario(sandbox_bin))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the scenario did not finish within its budget of {BUDGET:?} (the logs are above)"
            )
        });
}

async fn scenario(sandbox_bin: PathBuf) {
    let started = Instant::now();
    let server = postgres::Postgres::start().await;
    let database = server.create_database("processes").await;
    println!("PostgreSQL up after {:.1?}", started.elapsed());
    let mut cluster = Cluster::start(&sandbox_bin, database, CONNECTIONS).await;
    for id in ["node-1", "node-2", "node-3"] {
        cluster.start_node(id).await;
    }
    println!("three nodes up after {:.1?}", started.elapsed());

    // 300 connections, each made through the nodes in turn.
    let made = Instant::now();
    let connections = wanted_connections();
    let apis = cluster.apis();
    in_lanes(connections.clone(), LANES, move |i, wanted| {
        let api = apis[i % apis.len()].clone();
        async move { wanted.connect(&api).await }
    })
    .await;
    println!("{CONNECTIONS} connections made in {:.1?}", made.elapsed());
    let split = cluster
        .owned_by(&["node-1", "node-2", "node-3"], START_PATIENCE)
        .await
        .unwrap_or_else(|last| {
            panic!("the {CONNECTIONS} connections are not split over the three nodes: {last:?}")
        });
    assert!(split.values().all(|n| *n > 0), "{split:?}");
    println!("split: {split:?}");

    // The burst: a post for every connection, due over 15 s, scheduled through a node
    // that (mostly) does not run it.
    let first_due = Timestamp::now_system().saturating_add(BURST_LEAD);
    let step = BURST_SPREAD / CONNECTIONS as u32;
    let requests: Vec<_> = connections
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let due = first_due.saturating_add(step * i as u32);
            (
                c.clone(),
                format!("burst {i}: {} on {}", c.pen, c.platform),
                due,
            )
        })
        .collect();
    let scheduling = Instant::now();
    let burst = cluster.schedule(requests, 1).await;
    println!(
        "{} posts scheduled in {:.1?} (the first due {BURST_LEAD:?} after the start)",
        burst.len(),
        scheduling.elapsed()
    );

    // Mid-burst: a third received, node-2 dies without a word.
    let third = CONNECTIONS / 3;
    let received = poll_until(PHASE_PATIENCE, LOOK_AGAIN, async || {
        let n = sandbox_record(&cluster.sandbox_url).await.len();
        (n >= third).then_some(n)
    })
    .await
    .unwrap_or_else(|| panic!("the sandbox never received {third} posts of the burst"));
    let killed = Instant::now();
    cluster.kill("node-2").await;
    println!("node-2 SIGKILLed with {received} posts received");
    let owners = cluster
        .owned_by(&["node-1", "node-3"], TAKEOVER_PATIENCE)
        .await
        .unwrap_or_else(|last| {
            panic!(
                "node-2's connections were not taken over within {TAKEOVER_PATIENCE:?} of its SIGKILL \
                 (lease {LEASE_SECS} s); owners last seen: {last:?}"
            )
        });
    let takeover = killed.elapsed();
    println!(
        "takeover after SIGKILL: {takeover:.1?} (lease {LEASE_SECS} s, so lease + lease/3 = {:.1} s); owners {owners:?}",
        LEASE_SECS as f64 * 4.0 / 3.0
    );
    let burst_views = cluster.settled(&burst, PHASE_PATIENCE).await;
    println!("burst settled: {:?}", by_state(&burst_views));

    // The rolling restart, with posts falling due all along.
    let mut targets = connections
        .iter()
        .step_by(CONNECTIONS / BEFORE_RESTART_POSTS);
    let before: Vec<_> = (0..BEFORE_RESTART_POSTS)
        .filter_map(|i| {
            let c = targets.next()?;
            let due = Timestamp::now_system()
                .saturating_add(Duration::from_secs(3) + Duration::from_millis(500) * i as u32);
            Some((
                c.clone(),
                format!("rolling {i}: {} on {}", c.pen, c.platform),
                due,
            ))
        })
        .collect();
    let mut rolling = cluster.schedule(before, 0).await;
    let handed = cluster.stop("node-1").await;
    let owners = cluster
        .owned_by(&["node-3"], TAKEOVER_PATIENCE)
        .await
        .unwrap_or_else(|last| panic!("node-1's connections did not move to node-3: {last:?}"));
    println!(
        "node-1 stopped (SIGTERM); its connections on node-3 {:.1?} after the signal: {owners:?}",
        handed.elapsed()
    );
    cluster.start_node("node-4").await;
    let owners = cluster.shared_with("node-4").await;
    println!("node-4 joined: {owners:?}");
    let during: Vec<_> = (0..DURING_RESTART_POSTS)
        .map(|i| {
            let c = &connections[(i * 13 + 5) % CONNECTIONS];
            let due = Timestamp::now_system()
                .saturating_add(Duration::from_secs(2) + Duration::from_millis(400) * i as u32);
            (
                c.clone(),
                format!("restarting {i}: {} on {}", c.pen, c.platform),
                due,
            )
        })
        .collect();
    rolling.extend(cluster.schedule(during, 0).await);
    let handed = cluster.stop("node-3").await;
    let owners = cluster
        .owned_by(&["node-4"], TAKEOVER_PATIENCE)
        .await
        .unwrap_or_else(|last| panic!("node-3's connections did not move to node-4: {last:?}"));
    println!(
        "node-3 stopped (SIGTERM); its connections on node-4 {:.1?} after the signal: {owners:?}",
        handed.elapsed()
    );
    cluster.start_node("node-5").await;
    let owners = cluster.shared_with("node-5").await;
    println!("node-5 joined: {owners:?}");
    let rolling_views = cluster.settled(&rolling, PHASE_PATIENCE).await;
    println!("rolling restart settled: {:?}", by_state(&rolling_views));

    // Nothing lost, nothing twice.
    let unconfirmed_rolling: Vec<_> = rolling
        .iter()
        .filter(|p| rolling_views[&p.id]["state"] != "published")
        .map(|p| &rolling_views[&p.id])
        .collect();
    assert!(
        unconfirmed_rolling.is_empty(),
        "a graceful stop finishes what is in flight, yet these posts of the rolling restart are not Published: {unconfirmed_rolling:#?}"
    );
    let record = sandbox_record(&cluster.sandbox_url).await;
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (_, text) in &record {
        *times.entry(text.as_str()).or_default() += 1;
    }
    let by_id: HashMap<&str, &str> = record
        .iter()
        .map(|(id, text)| (id.as_str(), text.as_str()))
        .collect();
    let ours: HashMap<&str, &Scheduled> = burst
        .iter()
        .chain(&rolling)
        .map(|p| (p.text.as_str(), p))
        .collect();
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "posts the sandbox received more than once: {twice:?}"
    );
    let strangers: Vec<_> = times.keys().filter(|t| !ours.contains_key(*t)).collect();
    assert!(
        strangers.is_empty(),
        "the sandbox received posts nobody scheduled: {strangers:?}"
    );
    let views: HashMap<&str, &Value> = burst_views
        .iter()
        .chain(&rolling_views)
        .map(|(id, v)| (id.as_str(), v))
        .collect();
    let mut unconfirmed = 0;
    for post in burst.iter().chain(&rolling) {
        let view = views[post.id.as_str()];
        match view["state"].as_str() {
            Some("published") => {
                assert_eq!(
                    times.get(post.text.as_str()),
                    Some(&1),
                    "Published, yet the sandbox has not received it once: {view}"
                );
                let id = view["receipt"]["id"].as_str().unwrap_or_default();
                assert_eq!(
                    by_id.get(id),
                    Some(&post.text.as_str()),
                    "the receipt names what the sandbox holds under that id: {view}"
                );
            }
            Some("unconfirmed") => unconfirmed += 1,
            _ => panic!("not settled: {view}"),
        }
    }
    cluster.every_connection_active(&connections).await;
    let owners = cluster
        .owned_by(&["node-4", "node-5"], START_PATIENCE)
        .await
        .unwrap_or_else(|last| {
            panic!("the connections are not all owned by the live nodes: {last:?}")
        });
    let posts = burst.len() + rolling.len();
    println!(
        "{CONNECTIONS} connections, {posts} posts ({} received by the sandbox, {unconfirmed} unconfirmed), \
         takeover after SIGKILL {takeover:.1?} with a {LEASE_SECS} s lease; owners at the end {owners:?}; \
         the whole test {:.1?}",
        record.len(),
        started.elapsed()
    );
    cluster.passed = true;
}

/// The fencing test's X connections (two seeded users, four pen names each).
const STOPPED_PENS: usize = 8;
/// X's access tokens in the fencing test: refreshed every 7.5–9 s, so that every refresh
/// the stopped node had planned falls due while it is stopped, and every grant rotates
/// on the node that took it over before the stopped one wakes.
const X_TOKEN_SECS: u64 = 10;

/// Issue 13's fencing scenario with a real signal: two nodes share eight X connections,
/// whose access tokens last 10 s and whose refresh tokens rotate (X kills the whole grant
/// when a spent one comes back). Each connection has a post due while node-1 is
/// SIGSTOPped; node-2 takes node-1's connections over, publishes their posts and rotates
/// every grant. Then node-1 gets SIGCONT: its leases lapsed, its access tokens expired,
/// every refresh and post it had planned is overdue and fires at once — and must be
/// refused by its gate and its fences. Afterwards the sandbox has seen no spent refresh
/// token and every post exactly once, every connection is active, node-1 runs exactly
/// what it holds again, and every grant rotates once more on whichever node holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_wakes_fenced_and_sends_nothing_stale() {
    run(stopped_scenario).await;
}

async fn stopped_scenario(sandbox_bin: PathBuf) {
    let started = Instant::now();
    let server = postgres::Postgres::start().await;
    let database = server.create_database("sigstop").await;
    let mut cluster = Cluster::start(&sandbox_bin, database, STOPPED_PENS).await;
    let set = sandbox_call(
        &cluster.sandbox_url,
        reqwest::Method::PUT,
        "/sandbox/x/access-token-lifetime",
        Some(json!({"secs": X_TOKEN_SECS})),
    )
    .await;
    assert_eq!(set["access_token_lifetime_secs"], X_TOKEN_SECS, "{set}");
    cluster.start_node("node-1").await;
    cluster.start_node("node-2").await;
    let connections: Vec<Wanted> = (0..STOPPED_PENS)
        .map(|i| Wanted {
            pen: format!("stop-{i}"),
            platform: "x",
            account: i % X_USERS.len(),
        })
        .collect();
    let apis = cluster.apis();
    in_lanes(connections.clone(), 2, move |i, wanted| {
        let api = apis[i % apis.len()].clone();
        async move { wanted.connect(&api).await }
    })
    .await;
    let split = cluster
        .owned_by(&["node-1", "node-2"], START_PATIENCE)
        .await
        .unwrap_or_else(|last| panic!("the connections are not split over both nodes: {last:?}"));
    println!("split: {split:?}");

    // A post for every connection, due while node-1 will be stopped: node-1's are in its
    // queues, their timers running.
    let due = Timestamp::now_system().saturating_add(Duration::from_secs(4));
    let requests = connections
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), format!("while stopped {i}: {}", c.pen), due))
        .collect();
    let posts = cluster.schedule(requests, 0).await;

    let stopped = cluster.take("node-1");
    stopped.process.signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    assert!(
        Timestamp::now_system() < due,
        "node-1 is stopped before its posts fall due, or the scenario tests nothing"
    );
    let owners = cluster
        .owned_by(&["node-2"], TAKEOVER_PATIENCE)
        .await
        .unwrap_or_else(|last| {
            panic!(
                "node-2 did not take node-1's connections over within {TAKEOVER_PATIENCE:?} of its SIGSTOP: {last:?}"
            )
        });
    let takeover = stopped_at.elapsed();
    println!("node-1 SIGSTOPped; node-2 holds everything after {takeover:.1?}: {owners:?}");

    // Node-2 publishes the posts and rotates every grant: node-1's refresh tokens are spent.
    let views = cluster.settled(&posts, PHASE_PATIENCE).await;
    let took_over = Timestamp::now_system();
    cluster
        .every_grant_issued_after(&connections, took_over)
        .await;
    let before_waking = cluster.token_requests().await.len();
    println!(
        "every post settled {:?} and every grant rotated on node-2, {:.1?} after the SIGSTOP",
        by_state(&views),
        stopped_at.elapsed()
    );
    // Every token node-1 holds was issued before the SIGSTOP, so a token lifetime after
    // it each has expired and every refresh node-1 planned is overdue: that moment is the
    // condition, so it is waited for as such (usually it has passed already).
    tokio::time::sleep_until((stopped_at + Duration::from_secs(X_TOKEN_SECS)).into()).await;

    // Node-1 wakes with every lease lapsed, every token it holds expired or spent, and
    // every refresh and post it planned overdue.
    stopped.process.signal(libc::SIGCONT);
    let woke = Instant::now();
    let node1 = stopped.api.clone();
    cluster.nodes.push(stopped);
    let rebalanced = cluster
        .owned_by(&["node-1", "node-2"], TAKEOVER_PATIENCE)
        .await
        .unwrap_or_else(|last| panic!("node-1 was given no share again after waking: {last:?}"));
    let runs = poll_until(PHASE_PATIENCE, LOOK_AGAIN, async || {
        let report = node1.get("/v1/supervisor").await.ok()?;
        let here = report["running_here"].as_u64()?;
        let held = *owners_in(&report).ok()?.get("node-1")?;
        (here == held && held > 0).then_some(here)
    })
    .await
    .unwrap_or_else(|| panic!("node-1 does not run exactly the connections it holds"));
    println!(
        "node-1 woke: shares {rebalanced:?} {:.1?} after SIGCONT, runs {runs}",
        woke.elapsed()
    );
    // Every grant rotates once more, on whichever node now holds it: one that node-1 had
    // overwritten with what it held before the stop would fail here.
    let rebalanced_at = Timestamp::now_system();
    cluster
        .every_grant_issued_after(&connections, rebalanced_at)
        .await;

    let requests = cluster.token_requests().await;
    let not_issued: Vec<_> = requests
        .iter()
        .filter(|r| r["outcome"] != "issued")
        .collect();
    assert!(
        not_issued.is_empty(),
        "token requests the sandbox refused (a spent refresh token is `refresh_token_reused`): {not_issued:?}"
    );
    let after_waking = requests.len() - before_waking;
    assert!(
        after_waking >= STOPPED_PENS,
        "{after_waking} refreshes after the wake"
    );

    // Every post exactly once, published by the node that took it over.
    let record = sandbox_record(&cluster.sandbox_url).await;
    for post in &posts {
        let view = &views[&post.id];
        assert_eq!(
            view["state"], "published",
            "node-1 was stopped before it was due, so nothing was in flight: {view}"
        );
        let received = record.iter().filter(|(_, text)| *text == post.text).count();
        assert_eq!(
            received, 1,
            "the sandbox received {:?} {received} times",
            post.text
        );
    }
    assert_eq!(record.len(), posts.len(), "{record:?}");
    cluster.every_connection_active(&connections).await;

    // Events reach every node, whoever wrote them: the history read through either node
    // is the same, in the same order, and holds every post's publication — half of them
    // written by node-2 while node-1 was stopped; a client resuming with `Last-Event-ID`
    // on the other node misses none. A post scheduled once both streams are open marks
    // where to stop reading.
    let node2 = cluster.nodes[0].api.clone();
    let mut on_1 = node1.events(0).await;
    let mut on_2 = node2.events(0).await;
    let later = Timestamp::now_system().saturating_add(Duration::from_secs(3600));
    let marker = cluster
        .schedule(
            vec![(connections[0].clone(), "the marker".to_owned(), later)],
            0,
        )
        .await
        .remove(0);
    let is_marker = |e: &SseEvent| e.data["post_id"] == marker.id.as_str();
    let (_, history) = on_1.until(is_marker).await;
    let (_, through_2) = on_2.until(is_marker).await;
    assert_eq!(
        ids(&through_2),
        ids(&history),
        "the same history through either node"
    );
    for post in &posts {
        assert!(
            history
                .iter()
                .any(|e| e.event.as_deref() == Some("post_state")
                    && e.data["post_id"] == post.id.as_str()
                    && e.data["to"] == "published"),
            "no publication of {post:?} in the history"
        );
    }
    let from = history
        .iter()
        .find(|e| e.data["to"] == "published")
        .and_then(|e| e.id)
        .expect("a publication in the history");
    let (_, resumed) = node2.events(from).await.until(is_marker).await;
    let missed: Vec<u64> = ids(&history).into_iter().filter(|id| *id > from).collect();
    assert_eq!(
        ids(&resumed),
        missed,
        "resumed on node-2 after event {from}, read on node-1"
    );
    println!(
        "events: {} through either node, {} resumed on node-2 after {from}",
        history.len(),
        resumed.len()
    );
    println!(
        "fenced: after the SIGCONT no spent refresh token, no post twice; {} token requests, {after_waking} after the wake; \
         takeover {takeover:.1?}; the whole test {:.1?}",
        requests.len(),
        started.elapsed()
    );
    cluster.passed = true;
}

/// One connection the test makes: a pen name's Bluesky (with a seeded account) or X (as a
/// seeded user, through the consent page).
#[derive(Debug, Clone)]
struct Wanted {
    pen: String,
    platform: &'static str,
    /// Which seeded account.
    account: usize,
}

fn wanted_connections() -> Vec<Wanted> {
    let mut wanted = Vec::with_capacity(CONNECTIONS);
    for i in 0..BLUESKY_PENS {
        let pen = format!("pen-{i:03}");
        wanted.push(Wanted {
            pen: pen.clone(),
            platform: "bluesky",
            account: i % BLUESKY_ACCOUNTS.len(),
        });
        if i < X_PENS {
            wanted.push(Wanted {
                pen,
                platform: "x",
                account: i % X_USERS.len(),
            });
        }
    }
    wanted
}

impl Wanted {
    /// Connects through `api`, as the product's backend and an author's browser would.
    async fn connect(&self, api: &Api) {
        let pen = &self.pen;
        match self.platform {
            "bluesky" => {
                let (handle, password) = BLUESKY_ACCOUNTS[self.account];
                api.post(
                    &format!("/v1/pen-names/{pen}/connections/bluesky"),
                    &json!({"identifier": handle, "app_password": password}),
                )
                .await
                .unwrap_or_else(|e| {
                    panic!("{pen}'s Bluesky does not connect through {}: {e}", api.node)
                });
            }
            "x" => {
                let (user, _) = X_USERS[self.account];
                let start = api
                    .post(
                        &format!("/v1/pen-names/{pen}/connections/x/authorize"),
                        &json!({}),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{pen}'s X authorize through {}: {e}", api.node));
                let url = start["authorize_url"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no authorize_url in {start}"));
                let back = browser::consent(url, user, "authorize")
                    .await
                    .unwrap_or_else(|e| panic!("{pen}'s X consent: {e}"));
                assert!(
                    back.starts_with(&api.base),
                    "X sends the browser back to the node that began the connect, not to {back}"
                );
                let page = api
                    .http
                    .get(&back)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{pen}'s X callback on {}: {e}", api.node));
                let ok = page.status().is_success();
                let html = page.text().await.unwrap_or_default();
                assert!(
                    ok && html.contains("postMessage"),
                    "{pen}'s X callback on {} did not report success: {html}",
                    api.node
                );
            }
            other => unreachable!("{other}"),
        }
    }
}

/// A post the test scheduled.
#[derive(Debug, Clone)]
struct Scheduled {
    pen: String,
    id: String,
    text: String,
}

/// The processes of the test: the sandbox and the live nodes, the data directories and
/// logs of every node that ran (kept for a failure's message).
struct Cluster {
    database: String,
    master_key: String,
    sandbox_url: String,
    nodes: Vec<NodeProcess>,
    /// Declared after the nodes, its clients: killed once they are gone.
    _sandbox: Process,
    /// How many connections the scenario makes: what the live nodes must hold between them.
    connections: usize,
    /// Every log written, for a failure's message.
    logs: Vec<PathBuf>,
    /// Set once every check held; until then, a drop (a panic, the budget spent) prints
    /// the logs.
    passed: bool,
    /// Declared last: removed once every process is gone.
    dir: TempDir,
}

impl Cluster {
    /// Starts the sandbox binary and reads its address; no node yet. The scenario will make
    /// `connections` connections.
    async fn start(sandbox_bin: &Path, database: String, connections: usize) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("social-studio-processes-")
            .tempdir()
            .expect("a temporary directory");
        let log = dir.path().join("sandbox.log");
        let mut command = std::process::Command::new(sandbox_bin);
        command
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&log).expect("the sandbox's log"),
            ));
        let mut sandbox = Process::spawn(command);
        let stdout = sandbox.child.stdout.take().expect("stdout is piped");
        // Both lines are read before the pipe may close: the sandbox exits when it cannot
        // write the second.
        let mut lines = BufReader::new(stdout).lines();
        let mut next_line = async || {
            tokio::time::timeout(START_PATIENCE, lines.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the sandbox said nothing within {START_PATIENCE:?}: {}",
                        tail(&log)
                    )
                })
                .expect("the sandbox's stdout is readable")
                .unwrap_or_else(|| panic!("the sandbox exited at start: {}", tail(&log)))
        };
        let first = next_line().await;
        let routes = next_line().await;
        let sandbox_url = first
            .strip_prefix("sandbox listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the sandbox: {first:?}"))
            .to_owned();
        assert!(
            sandbox_url.starts_with("http://127.0.0.1:"),
            "{sandbox_url}"
        );
        let routes: Value = serde_json::from_str(&routes)
            .unwrap_or_else(|e| panic!("the sandbox's route table is not JSON ({e}): {routes}"));
        assert_eq!(routes["base_url"], sandbox_url.as_str(), "{routes}");
        Cluster {
            database,
            master_key: MasterKey::generate().to_base64().to_string(),
            sandbox_url,
            nodes: Vec::new(),
            _sandbox: sandbox,
            connections,
            logs: vec![log],
            passed: false,
            dir,
        }
    }

    /// Starts `social-studio serve --sandbox-url` as node `id` and waits until it is ready.
    /// The port is chosen here (the OAuth redirect URI names it) and is confirmed from
    /// the line the engine logs when it listens; one taken meanwhile by another process
    /// is tried again with another.
    async fn start_node(&mut self, id: &str) {
        let data = self.dir.path().join(id);
        let log = self.dir.path().join(format!("{id}.log"));
        self.logs.push(log.clone());
        for _ in 0..5 {
            let port = free_port();
            let config = self.dir.path().join(format!("{id}.toml"));
            let text = format!(
                "data_dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\nadmin_token = {ADMIN_TOKEN:?}\n\n\
                 [store]\nbackend = \"postgres\"\nurl = {url:?}\nnode_id = {id:?}\nlease_secs = {LEASE_SECS}\n",
                url = self.database,
            );
            std::fs::write(&config, text).expect("the node's configuration is written");
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_social-studio"));
            command
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--sandbox-url")
                .arg(&self.sandbox_url);
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("SOCIAL_STUDIO_") {
                    command.env_remove(name);
                }
            }
            command
                .env(
                    social_studio_storage::vault::MASTER_KEY_ENV,
                    &self.master_key,
                )
                .env("RUST_LOG", "warn,social_studio=info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut process = Process::spawn(command);
            let listening = copy_log(&mut process.child, &log);
            let addr = tokio::time::timeout(START_PATIENCE, async {
                tokio::select! {
                    addr = listening => addr.ok(),
                    _ = process.child.wait() => None,
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{id} did not say where it listens within {START_PATIENCE:?}:\n{}",
                    tail(&log)
                )
            });
            let Some(addr) = addr else {
                // Bound by someone else, most likely; the log says.
                eprintln!("{id} did not start on port {port}:\n{}", tail(&log));
                continue;
            };
            assert_eq!(addr.port(), port, "{id} listens where it was told to");
            let api = Api::new(id, format!("http://{addr}"));
            let mut node = NodeProcess {
                id: id.to_owned(),
                api,
                process,
            };
            let ready = poll_until(START_PATIENCE, LOOK_AGAIN, async || {
                if let Ok(Some(status)) = node.process.child.try_wait() {
                    return Some(Err(status));
                }
                node.api.ready().await.then_some(Ok(()))
            })
            .await;
            match ready {
                Some(Ok(())) => {
                    self.nodes.push(node);
                    return;
                }
                Some(Err(status)) => panic!("{id} exited with {status} at start:\n{}", tail(&log)),
                None => panic!(
                    "{id} was not ready within {START_PATIENCE:?}:\n{}",
                    tail(&log)
                ),
            }
        }
        panic!("{id} found no free port in 5 tries:\n{}", tail(&log));
    }

    /// The live nodes' APIs.
    fn apis(&self) -> Vec<Api> {
        self.nodes.iter().map(|n| n.api.clone()).collect()
    }

    fn take(&mut self, id: &str) -> NodeProcess {
        let at = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no live node {id}"));
        self.nodes.remove(at)
    }

    /// SIGKILL: no shutdown, no release, no goodbye.
    async fn kill(&mut self, id: &str) {
        let mut node = self.take(id);
        node.process.signal_group(libc::SIGKILL);
        let _ = node.process.child.wait().await;
    }

    /// SIGTERM, and the graceful shutdown waited for (it must exit 0); when the signal
    /// was sent.
    async fn stop(&mut self, id: &str) -> Instant {
        let mut node = self.take(id);
        let sent = Instant::now();
        node.process.signal(libc::SIGTERM);
        let status = tokio::time::timeout(PHASE_PATIENCE, node.process.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{id} did not stop within {PHASE_PATIENCE:?} of SIGTERM"))
            .expect("the node is reaped");
        assert!(
            status.success(),
            "{id} stopped with {status} after SIGTERM:\n{}",
            tail(&self.dir.path().join(format!("{id}.log")))
        );
        sent
    }

    /// Waits until the connections' leases are held by exactly `nodes` (each listed, none
    /// other with any) and add up to every connection, as the first live node answers
    /// `/v1/supervisor`; the owners then, or the last ones seen.
    async fn owned_by(
        &self,
        nodes: &[&str],
        within: Duration,
    ) -> Result<BTreeMap<String, u64>, Option<BTreeMap<String, u64>>> {
        let api = &self.nodes[0].api;
        let mut last = None;
        let done = poll_until(within, LOOK_AGAIN, async || {
            let owners = api.owners().await.ok()?;
            let holding: BTreeMap<String, u64> = owners
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let exact = holding.keys().map(String::as_str).eq(nodes.iter().copied())
                && holding.values().sum::<u64>() == self.connections as u64;
            last = Some(owners.clone());
            exact.then_some(owners)
        })
        .await;
        done.ok_or(last)
    }

    /// Waits until `joined` holds some of the connections and the live nodes hold them
    /// all.
    async fn shared_with(&self, joined: &str) -> BTreeMap<String, u64> {
        let live: Vec<&str> = {
            let mut ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
            ids.sort();
            ids
        };
        assert!(live.contains(&joined));
        self.owned_by(&live, PHASE_PATIENCE).await.unwrap_or_else(|last| {
            panic!("{joined} was given no share of the connections within {PHASE_PATIENCE:?}: {last:?}")
        })
    }

    /// Schedules each post through a live node: the one after the one its connection was
    /// made through (`shift` 1), or any (`shift` 0). A refusal that says to try again
    /// (421 `not_owner_here` while a lease moves, 503 while a node stops) is sent again
    /// with the same `Idempotency-Key`, so no post is ever scheduled twice.
    async fn schedule(
        &self,
        requests: Vec<(Wanted, String, Timestamp)>,
        shift: usize,
    ) -> Vec<Scheduled> {
        let apis = self.apis();
        let index: HashMap<String, usize> = wanted_connections()
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("{}/{}", w.pen, w.platform), i))
            .collect();
        let index = Arc::new(index);
        in_lanes(requests, LANES, move |i, (wanted, text, due)| {
            let apis = apis.clone();
            let index = index.clone();
            async move {
                let body = json!({
                    "platform": wanted.platform,
                    "text": text,
                    "scheduled_at": due.to_rfc3339(),
                });
                let key = format!("schedule-{}", text.replace([' ', ':'], "-"));
                let path = format!("/v1/pen-names/{}/posts", wanted.pen);
                let mut tries = Vec::new();
                // The node after the one that made the connection, or any.
                let lane = if shift == 0 {
                    i
                } else {
                    index[&format!("{}/{}", wanted.pen, wanted.platform)] + shift
                };
                for attempt in 0..10 {
                    let api = &apis[(lane + attempt) % apis.len()];
                    match api
                        .call(reqwest::Method::POST, &path, Some(&body), Some(&key))
                        .await
                    {
                        Ok((201, created)) => {
                            let id = created["posts"][0]["id"]
                                .as_str()
                                .unwrap_or_else(|| panic!("no post id in {created}"))
                                .to_owned();
                            if !tries.is_empty() {
                                println!("{text:?} scheduled after {tries:?}");
                            }
                            return Scheduled {
                                pen: wanted.pen,
                                id,
                                text,
                            };
                        }
                        Ok((status @ (421 | 503), answer)) => tries.push(format!(
                            "{}: {status} {}",
                            api.node, answer["error"]["code"]
                        )),
                        Ok((status, answer)) => {
                            panic!(
                                "scheduling {text:?} through {}: {status} {answer}",
                                api.node
                            )
                        }
                        Err(e) => panic!("scheduling {text:?} through {}: {e}", api.node),
                    }
                }
                panic!("{text:?} could not be scheduled: {tries:?}")
            }
        })
        .await
    }

    /// Waits until every post of `posts` is Published or Unconfirmed, reading them through
    /// the live nodes in turn; their views by id. A post that fails, is held or cancelled
    /// fails the test at once.
    async fn settled(&self, posts: &[Scheduled], within: Duration) -> HashMap<String, Value> {
        let mut views: HashMap<String, Value> = HashMap::new();
        let mut round = 0;
        let done = poll_until(within, Duration::from_millis(500), async || {
            let mut pens: Vec<String> = posts
                .iter()
                .filter(|p| !views.get(&p.id).is_some_and(finished))
                .map(|p| p.pen.clone())
                .collect();
            pens.sort();
            pens.dedup();
            if pens.is_empty() {
                return Some(());
            }
            round += 1;
            let apis = self.apis();
            let lists = in_lanes(pens, LANES, move |i, pen| {
                let api = apis[(i + round) % apis.len()].clone();
                async move {
                    api.get(&format!("/v1/pen-names/{pen}/posts"))
                        .await
                        .unwrap_or_else(|e| {
                            panic!("reading {pen}'s posts through {}: {e}", api.node)
                        })
                }
            })
            .await;
            for list in lists {
                for post in list["posts"].as_array().into_iter().flatten() {
                    if let Some(id) = post["id"].as_str() {
                        views.insert(id.to_owned(), post.clone());
                    }
                }
            }
            let wrong: Vec<_> = views
                .values()
                .filter(|v| matches!(v["state"].as_str(), Some("failed" | "held" | "cancelled")))
                .collect();
            assert!(
                wrong.is_empty(),
                "posts that can no longer be published: {wrong:#?}"
            );
            None
        })
        .await;
        if done.is_none() {
            let waiting: Vec<_> = posts
                .iter()
                .filter(|p| !views.get(&p.id).is_some_and(finished))
                .map(|p| {
                    views
                        .get(&p.id)
                        .cloned()
                        .unwrap_or(json!({"id": p.id, "never": "read"}))
                })
                .collect();
            panic!(
                "{} of {} posts are not Published or Unconfirmed after {within:?} (states {:?}); \
                 the first of them: {:#?}",
                waiting.len(),
                posts.len(),
                by_state(&views),
                &waiting[..waiting.len().min(5)]
            );
        }
        let ids: std::collections::HashSet<&str> = posts.iter().map(|p| p.id.as_str()).collect();
        views.retain(|id, _| ids.contains(id.as_str()));
        assert_eq!(
            views.len(),
            posts.len(),
            "every post is listed under its pen name"
        );
        views
    }

    /// Every request X's token endpoint received, oldest first (`{grant_type,
    /// credential, outcome}`).
    async fn token_requests(&self) -> Vec<Value> {
        let list = sandbox_call(
            &self.sandbox_url,
            reqwest::Method::GET,
            "/sandbox/x/token-requests",
            None,
        )
        .await;
        list.as_array()
            .unwrap_or_else(|| panic!("token requests are a list: {list}"))
            .clone()
    }

    /// Waits until every connection's grant was issued after `after`: its access token
    /// lapses a whole lifetime after it (the engine dates a grant by the answer's
    /// arrival, so this counts only grants issued by the node holding the lease then).
    /// A connection that leaves Active fails the test at once.
    async fn every_grant_issued_after(&self, connections: &[Wanted], after: Timestamp) {
        let fresh_from = after.saturating_add(Duration::from_secs(X_TOKEN_SECS));
        let mut last = Vec::new();
        let done = poll_until(PHASE_PATIENCE, Duration::from_millis(250), async || {
            last.clear();
            for (i, c) in connections.iter().enumerate() {
                let api = &self.nodes[i % self.nodes.len()].api;
                let list = api
                    .get(&format!("/v1/pen-names/{}/connections", c.pen))
                    .await
                    .ok()?;
                let entry = list["connections"]
                    .as_array()?
                    .iter()
                    .find(|e| e["platform"] == c.platform)?;
                let expires = entry["expires_at"]
                    .as_str()
                    .and_then(|t| Timestamp::parse_rfc3339(t).ok());
                last.push((c.pen.clone(), entry["status"].clone(), expires));
            }
            if last.iter().any(|(_, status, _)| *status != "active") {
                // Left Active (a grant family X killed for a spent refresh token): final.
                return Some(Err(()));
            }
            last.iter()
                .all(|(_, _, expires)| expires.is_some_and(|t| t >= fresh_from))
                .then_some(Ok(()))
        })
        .await;
        match done {
            Some(Ok(())) => {}
            Some(Err(())) => panic!("a connection is no longer active (status, expiry): {last:?}"),
            None => panic!(
                "not every grant was issued after {} within {PHASE_PATIENCE:?} (status, expiry): {last:?}",
                after.to_rfc3339()
            ),
        }
    }

    /// Every connection made is listed, active, under its pen name.
    async fn every_connection_active(&self, connections: &[Wanted]) {
        let mut wanted: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for c in connections {
            wanted.entry(c.pen.clone()).or_default().push(c.platform);
        }
        let apis = self.apis();
        in_lanes(
            wanted.into_iter().collect(),
            LANES,
            move |i, (pen, mut platforms)| {
                let api = apis[i % apis.len()].clone();
                async move {
                    let list = api
                        .get(&format!("/v1/pen-names/{pen}/connections"))
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{pen}'s connections through {}: {e}", api.node)
                        });
                    let mut active: Vec<&str> = list["connections"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| c["status"] == "active")
                        .filter_map(|c| c["platform"].as_str())
                        .collect();
                    active.sort();
                    platforms.sort();
                    assert_eq!(active, platforms, "{pen}'s active connections: {list}");
                }
            },
        )
        .await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every child is killed by its own drop; a failing test shows what they said.
        if !self.passed {
            for log in &self.logs {
                eprintln!("---- {} ----\n{}", log.display(), tail(log));
            }
        }
    }
}

/// A live `social-studio serve`.
struct NodeProcess {
    id: String,
    api: Api,
    process: Process,
}

/// A child process in a process group of its own. Dropping it kills the group; the
/// kernel kills it too if the thread that started it dies (`PR_SET_PDEATHSIG`) — the
/// test's own thread, or a worker of its runtime: both live until the test ends.
struct Process {
    child: Child,
}

impl Process {
    fn spawn(mut command: std::process::Command) -> Process {
        command.process_group(0);
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls
        // (prctl, getppid) and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the request was made: nobody will kill us.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the test is gone"));
                }
                Ok(())
            });
        }
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("the child starts");
        Process { child }
    }

    /// Sends `signal` to the process alone.
    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill has no memory-safety preconditions.
            let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
            assert_eq!(
                sent,
                0,
                "signal {signal} to {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Sends `signal` to the process and everything it started.
    fn signal_group(&self, signal: libc::c_int) {
        if let Some(pid) = self.child.id() {
            // SAFETY: killpg has no memory-safety preconditions; the group is the child's
            // own (`process_group(0)`), never the test's.
            unsafe {
                libc::killpg(pid as libc::pid_t, signal);
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal_group(libc::SIGKILL);
        // kill_on_drop kills the child itself, and tokio reaps it.
    }
}

/// Copies the child's stderr into `log`, line by line, in the background; resolves with
/// the address of the line `social-studio listening on http://ADDR …` once it comes.
fn copy_log(child: &mut Child, log: &Path) -> oneshot::Receiver<SocketAddr> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = oneshot::channel();
    let log = log.to_path_buf();
    tokio::spawn(async move {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .await
            .expect("the node's log opens");
        let mut tx = Some(tx);
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("social-studio listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                if let (Some(tx), Some(addr)) = (tx.take(), addr) {
                    let _ = tx.send(addr);
                }
            }
            let _ = file.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    rx
}

/// One node's HTTP API, as the product's backend calls it.
#[derive(Clone)]
struct Api {
    node: String,
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(node: &str, base: String) -> Api {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Api {
            node: node.to_owned(),
            base,
            http,
        }
    }

    async fn ready(&self) -> bool {
        self.http
            .get(format!("{}/readyz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// One request with the admin token: the status and the body (JSON, or the text as a
    /// string); `Err` when no answer came.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let answer = request.send().await.map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        let text = answer.text().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        match self.call(reqwest::Method::GET, path, None, None).await? {
            (status, body) if status < 300 => Ok(body),
            (status, body) => Err(format!("GET {path}: {status} {body}")),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        match self
            .call(reqwest::Method::POST, path, Some(body), None)
            .await?
        {
            (status, body) if status < 300 => Ok(body),
            (status, body) => Err(format!("POST {path}: {status} {body}")),
        }
    }

    /// `/v1/events` from after event `after` (0: every stored event), then live ones. Its
    /// own client: the API's has a timeout for the whole answer, a stream none.
    async fn events(&self, after: u64) -> SseReader {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/events", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("Last-Event-ID", after.to_string())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("{}'s event stream: {e}", self.node));
        SseReader::new(response, PHASE_PATIENCE)
    }

    /// `/v1/supervisor`'s `owners`: connections by the node holding their lease.
    async fn owners(&self) -> Result<BTreeMap<String, u64>, String> {
        owners_in(&self.get("/v1/supervisor").await?)
    }
}

/// The `owners` of a `/v1/supervisor` answer: connections by the node holding their lease.
fn owners_in(supervisor: &Value) -> Result<BTreeMap<String, u64>, String> {
    let owners = supervisor["owners"]
        .as_array()
        .ok_or_else(|| format!("no owners in {supervisor}"))?;
    Ok(owners
        .iter()
        .map(|o| {
            (
                o["node"].as_str().unwrap_or("?").to_owned(),
                o["connections"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// Every post the sandbox received, from its own record, as (the platform's id, text):
/// the records in Bluesky's repositories (at their URI) and the tweets of X's users.
/// Bluesky keeps one record a key, and the engine writes a post at a key made from its
/// id: a post sent twice would show as a refused write, not as a second record, so what
/// is counted here is the records a post ended up with.
async fn sandbox_record(sandbox: &str) -> Vec<(String, String)> {
    let read = |path: String| async move {
        sandbox_call(sandbox, reqwest::Method::GET, &path, None).await
    };
    let pair = |id: &Value, text: &Value| {
        (
            id.as_str().unwrap_or_default().to_owned(),
            text.as_str().unwrap_or_default().to_owned(),
        )
    };
    let mut posts = Vec::new();
    let bluesky = read("/sandbox/bluesky/state".to_owned()).await;
    for record in bluesky["records"].as_array().into_iter().flatten() {
        posts.push(pair(&record["uri"], &record["value"]["text"]));
    }
    for (_, user) in X_USERS {
        let tweets = read(format!("/sandbox/x/users/{user}/tweets")).await;
        for tweet in tweets.as_array().into_iter().flatten() {
            posts.push(pair(&tweet["id"], &tweet["text"]));
        }
    }
    posts
}

/// The events' ids, in the order read; an event without one (`gap`) fails the test.
fn ids(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            e.id.unwrap_or_else(|| panic!("an event without an id: {e:?}"))
        })
        .collect()
}

/// A call to the sandbox's controls at `sandbox`: the JSON it answers (a failure fails
/// the test).
async fn sandbox_call(
    sandbox: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = reqwest::Client::new().request(method, format!("{sandbox}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("the sandbox's {path}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("the sandbox's {path} is not JSON: {e}"))
}

fn finished(view: &Value) -> bool {
    matches!(view["state"].as_str(), Some("published" | "unconfirmed"))
}

fn by_state(views: &HashMap<String, Value>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for view in views.values() {
        *counts
            .entry(view["state"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
}

/// Runs `work` on every item, at most `lanes` at once; the results in the items' order.
/// A panic in one is the caller's.
async fn in_lanes<I, T, F, Fut>(items: Vec<I>, lanes: usize, work: F) -> Vec<T>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(usize, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let work = Arc::new(work);
    let permits = Arc::new(Semaphore::new(lanes));
    let mut tasks = JoinSet::new();
    let count = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let (work, permits) = (work.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            (i, work(i, item).await)
        });
    }
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, result)) => results[i] = Some(result),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every task answered"))
        .collect()
}

/// The `social-studio-sandbox` binary beside this test's (`target/<profile>/`), built
/// first: it belongs to another package, which `cargo test` of this one does not build.
/// Offline, so nothing is downloaded; a no-op when it is up to date. Built together with
/// this test target (up to date: untouched), so that Cargo unifies the dependencies'
/// features as it did for this test: built alone, the sandbox's dependencies would be
/// rebuilt with other features in place of this test's, and back at the next `cargo test`.
async fn sandbox_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/postgres_processes-HASH
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory above {}", exe.display()),
    };
    let mut cargo = tokio::process::Command::new(env!("CARGO"));
    // What Cargo set for this test's process describes this crate, not a build: left in,
    // build scripts that read it (ring's reads CARGO_MANIFEST_DIR) would run again, and
    // everything above them be rebuilt, here and at the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_the_crate = ["CARGO_PKG_", "CARGO_BIN_EXE_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if set_for_the_crate {
            cargo.env_remove(name.as_ref());
        }
    }
    let status = cargo
        .args(["build", "--offline", "--quiet", "--all-features"])
        .args([
            "--package",
            env!("CARGO_PKG_NAME"),
            "--test",
            env!("CARGO_CRATE_NAME"),
        ])
        .args([
            "--package",
            "social-studio-sandbox",
            "--bin",
            "social-studio-sandbox",
        ])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .await
        .expect("cargo runs");
    assert!(status.success(), "building social-studio-sandbox: {status}");
    let bin = profile_dir.join("social-studio-sandbox");
    assert!(bin.is_file(), "no {}", bin.display());
    bin
}

/// A free loopback port, found by binding one and letting it go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// The last lines of a log.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
