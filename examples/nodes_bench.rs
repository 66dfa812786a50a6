//! Dispatch on PostgreSQL with one and with several engine nodes, beside sled, in one run:
//!
//! ```text
//! cargo run --release --features postgres --example nodes_bench -- [--posts N] [--connections N] [--nodes 1,3]
//! ```
//!
//! Starts a PostgreSQL of its own (the test harness: the npm package pinned in
//! `tests/pg/`, run as `nobody` under root), then for each store — sled in a temporary
//! directory, PostgreSQL with each node count — writes `connections` connections and
//! `posts` Scheduled posts all due at one instant, starts the engine(s) (several nodes:
//! several engines in this process, each with its own `PgStore` and pool, splitting the
//! connections by lease before the due instant), and measures from the due instant until
//! every post is Published: posts per second, and lateness (the in-process platform's
//! receive time minus the due time) at p50 and p99. Every transition is durable, as in
//! production; publish concurrency 256 per platform and node, as in the actors' scale
//! bench. Several nodes on one machine show the cost of coordinating them (leases,
//! fences, one event counter), not scale: they share the same two cores and the same
//! database.

#[path = "../tests/support/node.rs"]
#[allow(dead_code)]
mod node;
#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::sync::Arc;
use std::time::{Duration, Instant};

use social_studio_actors::testkit::FakePlatform;
use social_studio_actors::{Clock, Engine, EngineConfig, PlatformPort, SystemClock};
use social_studio_storage::{
    fixtures, Batch, ConnectionKey, Durability, KeySource, MasterKey, NodeId, PenName, PgConfig,
    PgStore, Platform, SharedStore, SledStore, StoreConfig, Timestamp,
};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Opts {
    posts: usize,
    connections: usize,
    nodes: Vec<usize>,
}

fn opts() -> Res<Opts> {
    let mut o = Opts {
        posts: 20_000,
        connections: 1_000,
        nodes: vec![1, 3],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--posts" => o.posts = value()?.parse()?,
            "--connections" => o.connections = value()?.parse()?,
            "--nodes" => {
                o.nodes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

fn key(i: usize) -> ConnectionKey {
    ConnectionKey::new(PenName::parse(&format!("pen-{i:05}")).unwrap(), Platform::X)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Writes the connections (grants from the fake platform) and the posts, all due `due`.
async fn fill(store: &SharedStore, platform: &FakePlatform, o: &Opts, due: Timestamp) -> Res<()> {
    let now = Timestamp::now_system();
    let mut b = Batch::new();
    for i in 0..o.connections {
        let user = format!("user{i}");
        let grant = platform.issue_grant(&user);
        let mut c = fixtures::connection(&key(i));
        c.account = platform.account(&user);
        c.connected_at = now;
        c.status_since = now;
        c.grant = Some(grant.facts());
        b.put_connection(&c).put_grant(&key(i), &grant);
        if (i + 1) % 200 == 0 {
            store
                .commit(std::mem::take(&mut b), Durability::Durable)
                .await?;
        }
    }
    for j in 0..o.posts {
        let mut p = fixtures::post(&key(j % o.connections), j as u64);
        p.due_at = due;
        p.created_at = now;
        p.updated_at = now;
        b.put_post(&p);
        if (j + 1) % 500 == 0 {
            store
                .commit(std::mem::take(&mut b), Durability::Durable)
                .await?;
        }
    }
    if !b.is_empty() {
        store.commit(b, Durability::Durable).await?;
    }
    Ok(())
}

struct Figures {
    posts_per_sec: f64,
    p50: f64,
    p99: f64,
    load: String,
}

/// Starts one engine per store, waits for the due instant, measures until every post
/// reached the platform, shuts the engines down.
async fn run(
    stores: Vec<SharedStore>,
    platform: Arc<FakePlatform>,
    o: &Opts,
    due: Timestamp,
) -> Res<Figures> {
    let mut engines = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let port: Arc<dyn PlatformPort> = platform.clone();
        let config = EngineConfig {
            node: NodeId::parse(&format!("bench-{n}"))?,
            // As the actors' scale bench: the platform answers at once, so the
            // concurrency cap, not the platform, would otherwise bound the rate.
            publish_concurrency: 256,
            jitter_seed: Some(7),
            ..EngineConfig::default()
        };
        engines
            .push(Engine::start(store.clone(), vec![port], Arc::new(SystemClock), config).await?);
    }
    // Every connection running on some node before the due instant.
    loop {
        let mut running = 0;
        for e in &engines {
            running += e.tree().await?.running_here;
        }
        if running == o.connections {
            break;
        }
        if Timestamp::now_system() >= due {
            return Err(format!(
                "only {running} connections running at the due instant; give it more lead"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Timestamp::now_system().until(due)).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // A counter, not the list of what was published: the poll takes no CPU from
        // the run it measures.
        if platform.publish_calls() >= o.posts as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {} published after 600 s",
                platform.publish_calls(),
                o.posts
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let load = loadavg();
    let mut late: Vec<i64> = platform
        .published()
        .iter()
        .map(|p| p.at.unix_millis() - due.unix_millis())
        .collect();
    late.sort_unstable();
    let pct = |p: f64| late[((p * late.len() as f64).ceil() as usize).clamp(1, late.len()) - 1];
    let last = *late.last().unwrap_or(&0);
    for e in &engines {
        e.shutdown().await;
    }
    Ok(Figures {
        posts_per_sec: o.posts as f64 / (last.max(1) as f64 / 1000.0),
        p50: pct(0.50) as f64 / 1000.0,
        p99: pct(0.99) as f64 / 1000.0,
        load,
    })
}

fn lead(o: &Opts) -> Duration {
    Duration::from_secs(5) + Duration::from_millis(o.connections as u64 * 5)
}

fn row(what: &str, f: &Figures) {
    println!(
        "| {what} | {:.0} | {:.2} s / {:.2} s | {} |",
        f.posts_per_sec, f.p50, f.p99, f.load
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Res<()> {
    let o = opts()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    println!(
        "# nodes_bench: {} posts over {} connections, all due at one instant ({})\n",
        o.posts,
        o.connections,
        Timestamp::now_system()
    );
    println!("| store | posts/s | lateness p50 / p99 | load average at the end |");
    println!("|---|---:|---:|---|");

    // sled, one node.
    let dir = tempfile::tempdir()?;
    let sled: SharedStore = Arc::new(SledStore::open_with_key(
        &StoreConfig::new(dir.path()),
        &MasterKey::generate(),
        KeySource::Provided,
    )?);
    let platform = Arc::new(FakePlatform::new(
        Platform::X,
        clock.clone(),
        Duration::from_secs(30 * 86_400),
    ));
    let due = Timestamp::now_system()
        .saturating_add(lead(&o) + Duration::from_millis(o.posts as u64 / 4));
    fill(&sled, &platform, &o, due).await?;
    let f = run(vec![sled], platform, &o, due).await?;
    row("sled, 1 node", &f);
    drop(dir);

    let server = postgres::Postgres::start().await;
    for (round, &nodes) in o.nodes.iter().enumerate() {
        let name = format!("bench_{round}");
        let url = server.create_database(&name).await;
        let key = MasterKey::generate();
        let mut stores: Vec<SharedStore> = Vec::new();
        for _ in 0..nodes {
            stores.push(Arc::new(
                PgStore::open_with_key(&PgConfig::new(url.clone()), &key).await?,
            ));
        }
        let platform = Arc::new(FakePlatform::new(
            Platform::X,
            clock.clone(),
            Duration::from_secs(30 * 86_400),
        ));
        // Writing to PostgreSQL takes longer than to sled: the due instant follows it.
        let due = Timestamp::now_system()
            .saturating_add(lead(&o) + Duration::from_millis(o.posts as u64));
        fill(&stores[0], &platform, &o, due).await?;
        let f = run(stores, platform, &o, due).await?;
        row(
            &format!(
                "PostgreSQL, {nodes} node{}",
                if nodes == 1 { "" } else { "s" }
            ),
            &f,
        );
    }
    Ok(())
}
