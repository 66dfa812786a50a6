//! Actor scale benchmark: what the engine costs per connection and how fast it moves due
//! posts, on real time, a multi-thread tokio runtime and a sled store in a tempdir.
//!
//! ```text
//! cargo bench -p social-studio-actors --bench scale -- [--connections N] [--section NAME]...
//!     [--idle-secs S] [--dispatch-posts P] [--dispatch-connections C]
//!     [--publish-concurrency K] [--max-publish-secs S] [--sled-writers W] [--sled-secs S]
//! ```
//!
//! Sections (default: all, in this order; `--section` may be repeated or comma-separated):
//!
//! 1. `memory`: RSS (and heap, through a counting allocator) per engine connection — each
//!    with a grant and one post due in a year, written to the store first, then booted by
//!    `Engine::start` — beside the same figures for N bare ractor actors.
//! 2. `boot`: writing that store, then `Engine::start` and the time until `Engine::tree`
//!    answers (every queue has loaded its posts).
//! 3. `idle`: process CPU over `--idle-secs` of wall time with nothing due.
//! 4. `sled`: durable commits per second through the store port from 64 concurrent
//!    writers; the CPU of one post transition through the port; sled alone with format
//!    1's write shape; and sled's own batched durable write rate with format 2's write
//!    shape, which the dispatch figure is compared with.
//! 5. `dispatch`: posts/s from the due instant until every post is durably Published, to an
//!    in-process port that answers at once (1,000 connections, 100,000 posts by default).
//! 6. `burst`: the same to a fake platform served over loopback HTTP by a child process
//!    (this binary again, with `--fake-platform-server`): lateness and CPU per 1,000 posts.
//!
//! Sections 5 and 6 each run on a tokio runtime of their own, dropped afterwards, and stop
//! measuring `--max-publish-secs` (default 60) after the due instant, so that the default
//! run stays within about five minutes whatever the engine's speed; a run cut off says so,
//! and its throughput is the rate up to the cut-off. `--max-publish-secs 900` measures to
//! the end.
//!
//! The bench allocates through mimalloc, as the `social-studio` binary does.
//!
//! Prints Markdown. Figures taken while other work runs on the machine are provisional:
//! the load average is printed at every section.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use social_studio_actors::connection::{ConnectionActor, ConnectionArgs, ConnectionState};
use social_studio_actors::messages::{ConnectionMsg, QueueMsg};
use social_studio_actors::{
    Engine, EngineConfig, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::fixtures;
use social_studio_storage::{
    Account, AccountKind, Batch, Connection, ConnectionKey, Durability, Event, EventKind, Grant,
    KeySource, MasterKey, Platform, Post, PostState, Receipt, Secret, SharedStore, SledStore,
    StateLabel, Store, StoreConfig, Timestamp,
};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DAY: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------------------------------
// A counting allocator: live heap bytes and allocations, counted only while switched on
// (the memory windows), so the throughput sections pay one relaxed load per call.

struct Counting;

/// The allocator underneath the counting: mimalloc, as the engine's binary uses.
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_ALLOCS: AtomicI64 = AtomicI64::new(0);

/// Live allocations by size (8-byte classes up to 16 KiB; the last class holds the rest),
/// so that a per-actor figure can be broken down into the allocations behind it.
const CLASSES: usize = 2049;
static CLASS_COUNT: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
static CLASS_BYTES: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    size.div_ceil(8).min(CLASSES - 1)
}

fn count_alloc(size: usize) {
    LIVE_BYTES.fetch_add(size as i64, Ordering::Relaxed);
    LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
    let c = class(size);
    CLASS_COUNT[c].fetch_add(1, Ordering::Relaxed);
    CLASS_BYTES[c].fetch_add(size as i64, Ordering::Relaxed);
}

fn count_free(size: usize) {
    LIVE_BYTES.fetch_sub(size as i64, Ordering::Relaxed);
    LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
    let c = class(size);
    CLASS_COUNT[c].fetch_sub(1, Ordering::Relaxed);
    CLASS_BYTES[c].fetch_sub(size as i64, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc(layout);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc_zeroed(layout);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        INNER.dealloc(ptr, layout);
        if COUNTING.load(Ordering::Relaxed) {
            count_free(layout.size());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = INNER.realloc(ptr, layout, new_size);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            count_free(layout.size());
            count_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

type Classes = Vec<(i64, i64)>;

fn classes() -> Classes {
    CLASS_COUNT
        .iter()
        .zip(CLASS_BYTES.iter())
        .map(|(c, b)| (c.load(Ordering::SeqCst), b.load(Ordering::SeqCst)))
        .collect()
}

/// The largest net size classes between two snapshots, per unit: "~size B × count".
fn top_classes(before: &Classes, after: &Classes, units: usize, top: usize) -> String {
    let mut d: Vec<(usize, f64, f64)> = before
        .iter()
        .zip(after.iter())
        .enumerate()
        .map(|(i, (b, a))| {
            (
                i,
                (a.0 - b.0) as f64 / units as f64,
                (a.1 - b.1) as f64 / units as f64,
            )
        })
        .filter(|(_, c, b)| *c >= 0.05 || b.abs() >= 4.0)
        .collect();
    d.sort_by(|x, y| y.2.total_cmp(&x.2));
    d.iter()
        .take(top)
        .map(|(i, c, b)| {
            if *i == CLASSES - 1 {
                format!("{b:.0} B in >16 KiB blocks ({c:.2})")
            } else {
                format!("{}–{} B × {c:.2}", i * 8 - 7, i * 8)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn counting(on: bool) {
    COUNTING.store(on, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------------------
// Process measurements.

/// Resident set size, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of the whole process (every thread).
fn cpu_time() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time per thread name (summed over threads of the same name), in seconds.
fn cpu_by_thread() -> BTreeMap<String, f64> {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            rest.get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / tick;
    }
    out
}

fn cpu_by_thread_delta(before: &BTreeMap<String, f64>) -> String {
    let after = cpu_by_thread();
    let mut d: Vec<(String, f64)> = after
        .into_iter()
        .map(|(k, v)| {
            let b = before.get(&k).copied().unwrap_or(0.0);
            (k, v - b)
        })
        .filter(|(_, v)| *v >= 0.005)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    if d.is_empty() {
        return "none above 10 ms".into();
    }
    d.iter()
        .map(|(k, v)| format!("{k} {v:.2}s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Gives freed heap back to the OS so that RSS deltas measure what is live.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[derive(Debug, Clone, Copy)]
struct Snap {
    rss_kib: u64,
    heap: i64,
    allocs: i64,
}

fn snap() -> Snap {
    Snap {
        rss_kib: rss_kib(),
        heap: LIVE_BYTES.load(Ordering::SeqCst),
        allocs: LIVE_ALLOCS.load(Ordering::SeqCst),
    }
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn per(total_kib: i64, n: usize) -> String {
    format!("{:.2}", total_kib as f64 / n.max(1) as f64)
}

// ---------------------------------------------------------------------------------------
// Options.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Memory,
    Boot,
    Idle,
    Sled,
    Dispatch,
    Burst,
}

impl Section {
    const ALL: [Section; 6] = [
        Section::Memory,
        Section::Boot,
        Section::Idle,
        Section::Sled,
        Section::Dispatch,
        Section::Burst,
    ];

    fn parse(s: &str) -> Option<Section> {
        Some(match s {
            "memory" => Section::Memory,
            "boot" => Section::Boot,
            "idle" => Section::Idle,
            "sled" => Section::Sled,
            "dispatch" => Section::Dispatch,
            "burst" => Section::Burst,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Opts {
    connections: usize,
    sections: Vec<Section>,
    idle_secs: u64,
    dispatch_connections: usize,
    dispatch_posts: usize,
    publish_concurrency: usize,
    sled_writers: usize,
    sled_secs: f64,
    max_publish_secs: u64,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            connections: 100_000,
            sections: Vec::new(),
            idle_secs: 60,
            dispatch_connections: 1_000,
            dispatch_posts: 100_000,
            publish_concurrency: 256,
            sled_writers: 64,
            sled_secs: 5.0,
            max_publish_secs: 60,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let num = |v: String| {
                v.replace('_', "")
                    .parse::<usize>()
                    .map_err(|e| e.to_string())
            };
            match a.as_str() {
                "--bench" => {} // added by `cargo bench`
                "--connections" => o.connections = num(value(a)?)?,
                "--idle-secs" => o.idle_secs = num(value(a)?)? as u64,
                "--dispatch-connections" => o.dispatch_connections = num(value(a)?)?.max(1),
                "--dispatch-posts" => o.dispatch_posts = num(value(a)?)?.max(1),
                "--publish-concurrency" => o.publish_concurrency = num(value(a)?)?.max(1),
                "--max-publish-secs" => o.max_publish_secs = num(value(a)?)?.max(1) as u64,
                "--sled-writers" => o.sled_writers = num(value(a)?)?.max(1),
                "--sled-secs" => {
                    o.sled_secs = value(a)?.parse::<f64>().map_err(|e| e.to_string())?
                }
                "--section" => {
                    for s in value(a)?.split(',') {
                        if s == "all" {
                            o.sections.extend(Section::ALL);
                        } else {
                            o.sections.push(Section::parse(s).ok_or_else(|| {
                                format!(
                                    "unknown section {s:?} (memory, boot, idle, sled, dispatch, burst, all)"
                                )
                            })?);
                        }
                    }
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.sections.is_empty() {
            o.sections.extend(Section::ALL);
        }
        o.sections.sort();
        o.sections.dedup();
        o.connections = o.connections.max(1);
        Ok(o)
    }

    fn has(&self, s: Section) -> bool {
        self.sections.contains(&s)
    }
}

// ---------------------------------------------------------------------------------------
// Platform ports: answer at once, or over loopback HTTP.

#[derive(Default)]
struct Calls {
    publish: AtomicU64,
    check: AtomicU64,
    refresh: AtomicU64,
    errors: AtomicU64,
    /// Wall-clock millis of the last publish answer.
    last_publish_ms: AtomicI64,
}

impl Calls {
    fn totals(&self) -> (u64, u64, u64) {
        (
            self.check.load(Ordering::Relaxed),
            self.refresh.load(Ordering::Relaxed),
            self.publish.load(Ordering::Relaxed),
        )
    }
}

#[derive(Clone)]
struct HttpTarget {
    client: reqwest::Client,
    url: String,
}

struct BenchPort {
    platform: Platform,
    calls: Arc<Calls>,
    lifetime: Duration,
    http: Option<HttpTarget>,
}

fn unavailable(detail: impl ToString, maybe_delivered: bool) -> PortError {
    PortError::Unavailable {
        detail: detail.to_string(),
        maybe_delivered,
    }
}

#[async_trait]
impl PlatformPort for BenchPort {
    fn platform(&self) -> Platform {
        self.platform
    }

    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        self.calls.refresh.fetch_add(1, Ordering::Relaxed);
        let now = Timestamp::now_system();
        let mut g = grant.clone();
        g.issued_at = now;
        g.expires_at = Some(now.saturating_add(self.lifetime));
        Ok(g)
    }

    async fn check(&self, _grant: &Grant) -> Result<Account, PortError> {
        self.calls.check.fetch_add(1, Ordering::Relaxed);
        Ok(Account {
            platform_id: "bench".into(),
            handle: "@bench".into(),
            display_name: "bench".into(),
            kind: AccountKind::Personal,
            picture: None,
        })
    }

    async fn publish(&self, _grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        self.calls.publish.fetch_add(1, Ordering::Relaxed);
        let receipt = match &self.http {
            None => Receipt {
                platform_post_id: post.id.to_string(),
                url: None,
            },
            Some(h) => {
                let body = format!("{} {}", post.id, post.due_at.unix_millis());
                let sent = h.client.post(&h.url).body(body).send().await;
                let resp = match sent {
                    Ok(r) if r.status().is_success() => r,
                    Ok(r) => {
                        self.calls.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(unavailable(r.status(), false));
                    }
                    Err(e) => {
                        self.calls.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(unavailable(&e, !e.is_connect()));
                    }
                };
                let id = resp.text().await.map_err(|e| {
                    self.calls.errors.fetch_add(1, Ordering::Relaxed);
                    unavailable(e, true)
                })?;
                Receipt {
                    platform_post_id: id,
                    url: None,
                }
            }
        };
        self.calls
            .last_publish_ms
            .fetch_max(Timestamp::now_system().unix_millis(), Ordering::Relaxed);
        Ok(receipt)
    }

    async fn revoke(&self, _grant: &Grant) -> Result<RevokeOutcome, PortError> {
        Ok(RevokeOutcome::Revoked)
    }
}

fn ports(calls: &Arc<Calls>, http: Option<&HttpTarget>) -> Vec<Arc<dyn PlatformPort>> {
    Platform::ALL
        .into_iter()
        .map(|platform| {
            Arc::new(BenchPort {
                platform,
                calls: calls.clone(),
                lifetime: 30 * DAY,
                http: http.cloned(),
            }) as Arc<dyn PlatformPort>
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Writing a store.

/// Connection `i`: pen names of nine connections each, one per platform.
fn conn_key(i: usize) -> ConnectionKey {
    fixtures::key(&format!("pen{:07}", i / 9), Platform::ALL[i % 9])
}

/// A renewable grant with a 30-day lifetime, issued now.
fn bench_grant(i: usize, now: Timestamp) -> Grant {
    Grant {
        access_token: Secret::new(format!("at-bench-{i:07}-0123456789abcdef")),
        refresh_token: Some(Secret::new(format!("rt-bench-{i:07}-0123456789abcdef"))),
        token_type: "bearer".into(),
        scopes: vec!["post".into(), "offline.access".into()],
        issued_at: now,
        expires_at: Some(now.saturating_add(30 * DAY)),
        refresh_expires_at: None,
        target_tokens: Vec::new(),
        endpoint: None,
    }
}

fn open_store(dir: &std::path::Path) -> Res<SledStore> {
    open_store_with_feed(dir, social_studio_storage::DEFAULT_EVENT_CAPACITY)
}

/// A store whose event feed holds `capacity` events, so a counting subscriber never lags.
fn open_store_with_feed(dir: &std::path::Path, capacity: usize) -> Res<SledStore> {
    let mut config = StoreConfig::new(dir);
    config.event_capacity = capacity;
    Ok(SledStore::open_with_key(
        &config,
        &MasterKey::generate(),
        KeySource::Provided,
    )?)
}

fn shared(store: &SledStore) -> SharedStore {
    Arc::new(store.clone())
}

const CONN_BATCH: usize = 256;
const POST_BATCH: usize = 512;

/// Connections `0..n` with their grants, committed (buffered) in batches.
fn write_connections(store: &SledStore, n: usize, now: Timestamp) -> Res<Duration> {
    let t = Instant::now();
    let mut b = Batch::new();
    for i in 0..n {
        let k = conn_key(i);
        let mut c: Connection = fixtures::connection(&k);
        c.connected_at = now;
        c.status_since = now;
        let grant = bench_grant(i, now);
        c.grant = Some(grant.facts());
        b.put_connection(&c).put_grant(&k, &grant);
        if (i + 1) % CONN_BATCH == 0 {
            store.commit_blocking(std::mem::take(&mut b), Durability::Buffered)?;
        }
    }
    if !b.is_empty() {
        store.commit_blocking(b, Durability::Buffered)?;
    }
    Ok(t.elapsed())
}

/// `posts` Scheduled posts spread round-robin over connections `0..conns`, all due `due`.
fn write_posts(
    store: &SledStore,
    posts: usize,
    conns: usize,
    due: Timestamp,
    now: Timestamp,
) -> Res<Duration> {
    let t = Instant::now();
    let mut b = Batch::new();
    for j in 0..posts {
        let k = conn_key(j % conns);
        let mut p = fixtures::post(&k, j as u64);
        p.due_at = due;
        p.created_at = now;
        p.updated_at = now;
        b.put_post(&p);
        if (j + 1) % POST_BATCH == 0 {
            store.commit_blocking(std::mem::take(&mut b), Durability::Buffered)?;
        }
    }
    if !b.is_empty() {
        store.commit_blocking(b, Durability::Buffered)?;
    }
    Ok(t.elapsed())
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------------------
// Bare actors, for comparison.

/// An actor with a unit state that does nothing.
#[derive(Clone, Copy)]
struct Bare;

impl Actor for Bare {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

type TimerHandle = tokio::task::JoinHandle<Result<(), ractor::MessagingErr<()>>>;

/// A bare actor that arms one `send_after` a day away, as every connection actor does.
#[derive(Clone, Copy)]
struct BareWithTimer;

impl Actor for BareWithTimer {
    type Msg = ();
    type State = Option<TimerHandle>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<()>,
        _: (),
    ) -> Result<Option<TimerHandle>, ActorProcessingErr> {
        Ok(None)
    }

    async fn post_start(
        &self,
        myself: ActorRef<()>,
        state: &mut Option<TimerHandle>,
    ) -> Result<(), ActorProcessingErr> {
        *state = Some(myself.send_after(DAY, || ()));
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<()>,
        state: &mut Option<TimerHandle>,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(h) = state.take() {
            h.abort();
        }
        Ok(())
    }
}

struct ActorCost {
    /// RSS KiB, heap bytes, allocations per actor.
    rss_kib: f64,
    classes: String,
    heap: f64,
    allocs: f64,
    spawn: Duration,
}

/// Spawns `n` actors, measures the delta, stops them.
async fn actor_cost<A>(n: usize, actor: A) -> Res<ActorCost>
where
    A: Actor<Arguments = ()> + Copy,
{
    let mut refs = Vec::with_capacity(n);
    let mut joins = Vec::with_capacity(n);
    trim();
    counting(true);
    let before = snap();
    let classes0 = classes();
    let t = Instant::now();
    for _ in 0..n {
        let (r, j) = Actor::spawn(None, actor, ()).await?;
        refs.push(r);
        joins.push(j);
    }
    let spawn = t.elapsed();
    // Let every actor's post_start run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    trim();
    let after = snap();
    let classes1 = classes();
    counting(false);
    for r in &refs {
        r.stop(None);
    }
    for j in joins {
        let _ = j.await;
    }
    drop(refs);
    trim();
    Ok(ActorCost {
        rss_kib: (after.rss_kib as f64 - before.rss_kib as f64) / n as f64,
        classes: top_classes(&classes0, &classes1, n, 8),
        heap: (after.heap - before.heap) as f64 / n as f64,
        allocs: (after.allocs - before.allocs) as f64 / n as f64,
        spawn,
    })
}

/// Actors that accept the engine's message types, to build a connection state by hand.
struct ConnSink;

impl Actor for ConnSink {
    type Msg = ConnectionMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<ConnectionMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

struct QueueSink;

impl Actor for QueueSink {
    type Msg = QueueMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<QueueMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// Inline sizes of what a connection keeps, for the per-connection breakdown.
async fn struct_sizes(store: &SledStore) -> Res<Vec<(&'static str, usize)>> {
    let (cs, cj) = Actor::spawn(None, ConnSink, ()).await?;
    let (qs, qj) = Actor::spawn(None, QueueSink, ()).await?;
    let k = conn_key(0);
    let calls = Arc::new(Calls::default());
    let now = Timestamp::now_system();
    let args = ConnectionArgs {
        record: fixtures::connection(&k),
        grant: Some(bench_grant(0, now)),
        store: shared(store),
        health: social_studio_actors::StoreHealth::new(Arc::new(SystemClock)),
        port: ports(&calls, None).swap_remove(0),
        clock: Arc::new(SystemClock),
        config: Arc::new(EngineConfig::default()),
        queue: qs.clone(),
        seed: 1,
        platform_limit: Arc::new(AtomicI64::new(0)),
        epoch: store.claim(&k).await?,
    };
    let mut state = ConnectionActor.pre_start(cs.clone(), args).await?;
    let handle_future = {
        let f = ConnectionActor.handle(cs.clone(), ConnectionMsg::Wake, &mut state);
        std::mem::size_of_val(&f)
    };
    drop(state);
    cs.stop(None);
    qs.stop(None);
    let _ = cj.await;
    let _ = qj.await;
    Ok(vec![
        (
            "ConnectionState (the actor's state, inline)",
            std::mem::size_of::<ConnectionState>(),
        ),
        (
            "ConnectionActor::handle future (held inline in the actor's boxed loop)",
            handle_future,
        ),
        ("ConnectionMsg", std::mem::size_of::<ConnectionMsg>()),
        ("QueueMsg", std::mem::size_of::<QueueMsg>()),
        ("Connection (record)", std::mem::size_of::<Connection>()),
        ("Grant", std::mem::size_of::<Grant>()),
        ("ConnectionKey", std::mem::size_of::<ConnectionKey>()),
        ("Post", std::mem::size_of::<Post>()),
        ("Event", std::mem::size_of::<Event>()),
    ])
}

// ---------------------------------------------------------------------------------------
// Sections 1–3: a fleet of N connections.

async fn fleet(opts: &Opts) -> Res<()> {
    let n = opts.connections;
    let want_memory = opts.has(Section::Memory);
    let load_start = loadavg();

    // Bare actors first, while the heap is small; each measured as a delta and stopped.
    let (bare, timed) = if want_memory {
        let bare = actor_cost(n, Bare).await?;
        let timed = actor_cost(n, BareWithTimer).await?;
        (Some(bare), Some(timed))
    } else {
        (None, None)
    };

    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path())?;
    let now = Timestamp::now_system();
    let d_conns = write_connections(&store, n, now)?;
    let d_posts = write_posts(&store, n, n, now.saturating_add(365 * DAY), now)?;
    let t = Instant::now();
    store.sync().await?;
    let d_flush = t.elapsed();
    let disk = dir_bytes(dir.path());
    let load_written = loadavg();

    let calls = Arc::new(Calls::default());
    let config = EngineConfig {
        jitter_seed: Some(42),
        ..EngineConfig::default()
    };
    trim();
    counting(want_memory);
    let base = snap();
    let classes0 = classes();
    let t = Instant::now();
    let engine = Engine::start(
        shared(&store),
        ports(&calls, None),
        Arc::new(SystemClock),
        config,
    )
    .await?;
    let d_start = t.elapsed();
    let s_start = snap();
    let tree = engine.tree().await?;
    let d_tree = t.elapsed();
    let s_tree = snap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s_settled = snap();
    // A status call once everything is loaded: the supervisor answers it by decoding every
    // connection record.
    let t = Instant::now();
    engine.tree().await?;
    let d_tree_again = t.elapsed();
    trim();
    let s_trimmed = snap();
    let engine_classes = top_classes(&classes0, &classes(), n, 24);
    counting(false);
    let queued: usize = tree.queues.iter().map(|(_, q)| q.scheduled).sum();
    let load_booted = loadavg();

    // Idle.
    let idle = if opts.has(Section::Idle) {
        let calls0 = calls.totals();
        let flush0 = store.flush_stats();
        let threads0 = cpu_by_thread();
        let cpu0 = cpu_time();
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(opts.idle_secs)).await;
        let wall = t.elapsed();
        let cpu = cpu_time() - cpu0;
        let calls1 = calls.totals();
        let flush1 = store.flush_stats();
        Some((
            wall,
            cpu,
            (
                calls1.0 - calls0.0,
                calls1.1 - calls0.1,
                calls1.2 - calls0.2,
            ),
            flush1.flushes - flush0.flushes,
            cpu_by_thread_delta(&threads0),
            loadavg(),
        ))
    } else {
        None
    };

    let sizes = if want_memory {
        struct_sizes(&store).await?
    } else {
        Vec::new()
    };
    let t = Instant::now();
    engine.shutdown().await;
    let d_shutdown = t.elapsed();
    drop(engine);
    drop(store);
    drop(dir);
    trim();

    if want_memory {
        println!("## 1. memory — {n} connections\n");
        println!(
            "Load average: {load_start} at start, {load_written} when the store was written, {load_booted} after boot.\n"
        );
        println!(
            "Each connection: a grant (30-day lifetime, renewable) and one post due in a year, written to the store, then booted by `Engine::start`. Baseline: the store written and flushed, `malloc_trim(0)`. Heap is what the counting allocator saw requested (net of frees) in the window; RSS includes allocator overhead and sled's page cache (capped at 64 MiB by `StoreConfig::new`).\n"
        );
        println!(
            "| stage | RSS MiB | ΔRSS KiB per connection | Δheap bytes per connection | Δallocations per connection |"
        );
        println!("|---|---:|---:|---:|---:|");
        let row = |name: &str, s: Snap| {
            println!(
                "| {name} | {} | {} | {:.0} | {:.1} |",
                mib(s.rss_kib),
                per(s.rss_kib as i64 - base.rss_kib as i64, n),
                (s.heap - base.heap) as f64 / n as f64,
                (s.allocs - base.allocs) as f64 / n as f64
            );
        };
        row("baseline (store written, trimmed)", base);
        row("`Engine::start` returned", s_start);
        row("`tree()` answered (queues loaded)", s_tree);
        row("2 s later", s_settled);
        row("after `malloc_trim(0)`", s_trimmed);
        println!();
        let engine_kib = (s_trimmed.rss_kib as f64 - base.rss_kib as f64) / n as f64;
        println!("| per-actor comparison (same process) | RSS KiB | heap bytes | allocations | spawn time |");
        println!("|---|---:|---:|---:|---:|");
        println!(
            "| engine connection (connection actor, its timer, queue slot and post index, supervisor maps, sled cache growth) | {engine_kib:.2} | {:.0} | {:.1} | {:.2} s (`Engine::start`) |",
            (s_trimmed.heap - base.heap) as f64 / n as f64,
            (s_trimmed.allocs - base.allocs) as f64 / n as f64,
            d_start.as_secs_f64()
        );
        for (name, c) in [
            ("bare ractor actor (unit state, `Actor::spawn`)", &bare),
            ("bare ractor actor + one armed `send_after` (1 day)", &timed),
        ] {
            if let Some(c) = c {
                println!(
                    "| {name} | {:.2} | {:.0} | {:.1} | {:.2} s |",
                    c.rss_kib,
                    c.heap,
                    c.allocs,
                    c.spawn.as_secs_f64()
                );
            }
        }
        if let Some(b) = &bare {
            println!(
                "\nEngine connection ÷ bare actor (RSS): {:.1}×. Target at 1,000,000: ≤ 10 KiB per connection → {} at N = {n}.\n",
                engine_kib / b.rss_kib.max(0.001),
                if engine_kib <= 10.0 { "met" } else { "missed" }
            );
        }
        println!(
            "Live heap by allocation size, per actor or connection (size class × allocations):\n"
        );
        println!("- engine connection: {engine_classes}");
        for (name, c) in [("bare actor", &bare), ("bare actor + timer", &timed)] {
            if let Some(c) = c {
                println!("- {name}: {}", c.classes);
            }
        }
        println!();
        println!("| inline size (`size_of`) | bytes |");
        println!("|---|---:|");
        for (name, size) in &sizes {
            println!("| {name} | {size} |");
        }
        println!();
    }

    if opts.has(Section::Boot) {
        println!("## 2. boot — {n} connections, {n} posts\n");
        println!("Load average: {load_start} at start, {load_written} when the store was written, {load_booted} after boot. Heap counting was {} during boot.\n", if want_memory { "on" } else { "off" });
        println!("| step | time s | rate |");
        println!("|---|---:|---:|");
        let rate = |count: usize, d: Duration| format!("{:.0}/s", count as f64 / d.as_secs_f64());
        println!(
            "| write {n} connections + grants (buffered commits, {CONN_BATCH} per batch) | {:.2} | {} connections |",
            d_conns.as_secs_f64(),
            rate(n, d_conns)
        );
        println!(
            "| write {n} posts (buffered commits, {POST_BATCH} per batch) | {:.2} | {} posts |",
            d_posts.as_secs_f64(),
            rate(n, d_posts)
        );
        println!(
            "| one flush (`Store::sync`) | {:.2} | {:.0} MiB on disk |",
            d_flush.as_secs_f64(),
            disk as f64 / (1024.0 * 1024.0)
        );
        println!(
            "| `Engine::start` (supervisor pre_start: every actor spawned) | {:.2} | {} connections |",
            d_start.as_secs_f64(),
            rate(n, d_start)
        );
        println!(
            "| … until `tree()` answers (every queue loaded) | {:.2} | {} connections |",
            d_tree.as_secs_f64(),
            rate(n, d_tree)
        );
        println!(
            "| a later `tree()` call (connection counts kept by the store) | {:.2} | |",
            d_tree_again.as_secs_f64()
        );
        println!("| `Engine::shutdown` | {:.2} | |", d_shutdown.as_secs_f64());
        println!(
            "\nTree: {} active connections, {} scheduled posts in the queues, {} restarts. Target at 1,000,000: boot ≤ 60 s → {} at N = {n} ({:.1} s).\n",
            tree.connections_active,
            queued,
            tree.restarts,
            if d_tree.as_secs_f64() <= 60.0 { "met" } else { "missed" },
            d_tree.as_secs_f64()
        );
    }

    if let Some((wall, cpu, (checks, refreshes, publishes), flushes, threads, load_end)) = idle {
        let per_min = cpu.as_secs_f64() * 60.0 / wall.as_secs_f64();
        println!("## 3. idle — {n} connections\n");
        println!(
            "Load average: {load_booted} at start, {load_end} at end. Grants live 30 days, posts are due in a year; health checks are daily (`EngineConfig::default`), the first one jittered over the first day.\n"
        );
        println!("| measure | value |");
        println!("|---|---:|");
        println!("| wall time | {:.1} s |", wall.as_secs_f64());
        println!("| process CPU (user + sys) | {:.3} s |", cpu.as_secs_f64());
        println!("| CPU-seconds per minute | {per_min:.3} |");
        println!("| % of one core | {:.2} % |", per_min / 60.0 * 100.0);
        println!("| port calls in the window (check / refresh / publish) | {checks} / {refreshes} / {publishes} |");
        println!("| group-commit flushes in the window | {flushes} |");
        println!("\nCPU by thread: {threads}.\n");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Section 4: sled's durable write rate.

struct SledRow {
    what: String,
    changes: u64,
    secs: f64,
    cpu: Duration,
    flushes: u64,
    acknowledged: u64,
}

async fn sled_rate(writers: usize, run_for: Duration, with_event: bool) -> Res<SledRow> {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path())?;
    let stats0 = store.flush_stats();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let k = conn_key(w);
            let mut n = 0u64;
            while Instant::now() < deadline {
                let p = fixtures::post(&k, n);
                let mut b = Batch::new();
                b.put_post(&p);
                if with_event {
                    b.event(
                        Event::new(Timestamp::now_system(), k.clone(), EventKind::PostState)
                            .post(p.id)
                            .transition(Some(StateLabel::Publishing), Some(StateLabel::Published)),
                    );
                }
                store.commit(b, Durability::Durable).await?;
                n += 1;
            }
            Ok::<u64, social_studio_storage::StoreError>(n)
        }));
    }
    let mut changes = 0;
    for t in tasks {
        changes += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    let stats = store.flush_stats();
    Ok(SledRow {
        what: format!(
            "store port, {writers} writers, `commit(Durable)`, {}",
            if with_event {
                "new post + event"
            } else {
                "one new post put"
            }
        ),
        changes,
        secs,
        cpu,
        flushes: stats.flushes - stats0.flushes,
        acknowledged: stats.acknowledged - stats0.acknowledged,
    })
}

/// The CPU of one post transition through the store port alone: one thread applying
/// (no flush waited for) what the queue writes for a transition — the post's status in
/// its next state plus one event — `per_batch` transitions per commit, over 10,000 posts.
fn apply_cost(per_batch: usize, run_for: Duration) -> Res<SledRow> {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path())?;
    let now = Timestamp::now_system();
    let mut posts: Vec<Post> = (0..10_000)
        .map(|j| {
            let mut p = fixtures::post(&conn_key(j % 100), j as u64);
            p.due_at = now;
            p
        })
        .collect();
    for chunk in posts.chunks(POST_BATCH) {
        let mut b = Batch::new();
        for p in chunk {
            b.put_post(p);
        }
        store.commit_blocking(b, Durability::Buffered)?;
    }
    let stats0 = store.flush_stats();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let deadline = start + run_for;
    let mut changes = 0u64;
    let mut next = 0usize;
    while Instant::now() < deadline {
        let mut b = Batch::new();
        for _ in 0..per_batch {
            let p = &mut posts[next % 10_000];
            next += 1;
            let from = p.state.label();
            p.state = if from == StateLabel::Publishing {
                PostState::Scheduled
            } else {
                PostState::Publishing
            };
            p.updated_at = Timestamp::now_system();
            b.put_post_status(p).event(
                Event::new(p.updated_at, p.connection.clone(), EventKind::PostState)
                    .post(p.id)
                    .transition(Some(from), Some(p.state.label())),
            );
        }
        store.commit_blocking(b, Durability::Buffered)?;
        changes += per_batch as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    let stats = store.flush_stats();
    Ok(SledRow {
        what: format!(
            "store port, 1 thread, buffered: a post transition (status + event), {per_batch} per commit"
        ),
        changes,
        secs,
        cpu,
        flushes: stats.flushes - stats0.flushes,
        acknowledged: stats.acknowledged - stats0.acknowledged,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RawSled {
    /// Format 1's write per transition: one read and eight writes in a sled transaction
    /// over eight trees (the post, both index entries re-keyed, the event and its two
    /// index entries).
    Transaction,
    /// Format 2's write per transition as plain inserts: the status overwritten in place,
    /// the connection's counts overwritten, and the commit's events appended as one record
    /// (a group per `per` transitions); then one flush and `fdatasync` per commit.
    Format2Durable,
}

/// sled itself, without the store's codec, journal, sealing or event numbering: the cost
/// of the write shape of a post transition, on one thread, over 10,000 posts.
fn raw_sled(mode: RawSled, per: u64, run_for: Duration) -> Res<SledRow> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .cache_capacity(social_studio_storage::DEFAULT_CACHE_CAPACITY)
        .flush_every_ms(Some(500))
        .open()?;
    let log_file = std::fs::File::open(dir.path().join("db").join("db"))?;
    let names = [
        "connections",
        "grants",
        "posts",
        "by_conn",
        "due",
        "events",
        "oauth",
        "by_subject",
    ];
    use sled::Transactional;
    let trees: Vec<sled::Tree> = names
        .iter()
        .map(|n| db.open_tree(n))
        .collect::<Result<_, _>>()?;
    let status = db.open_tree("post_status")?;
    let counts = db.open_tree("post_counts")?;
    let groups = db.open_tree("event_groups")?;
    const POSTS: u64 = 10_000;
    let id = |i: u64| {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&i.to_be_bytes());
        k[8..].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
        k
    };
    let conn_index = |i: u64, state: u8| {
        let mut k = format!("pen{:07}\0x\0", i % 100).into_bytes();
        k.push(state);
        k.extend_from_slice(&id(i));
        k
    };
    let due_index = |i: u64, state: u8| {
        let mut k = vec![3u8];
        k.extend_from_slice(&(1_800_000_000_000u64 + u64::from(state)).to_be_bytes());
        k.extend_from_slice(&id(i));
        k
    };
    let conn = |i: u64| format!("pen{:07}\0x", i % 100).into_bytes();
    let value = vec![7u8; 300];
    let small = vec![5u8; 60];
    let event = vec![9u8; 120];
    for i in 0..POSTS {
        trees[2].insert(id(i), value.as_slice())?;
        trees[3].insert(conn_index(i, 1), &[][..])?;
        trees[4].insert(due_index(i, 1), &[][..])?;
        status.insert(id(i), small.as_slice())?;
    }
    db.flush()?;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let deadline = start + run_for;
    let mut changes = 0u64;
    let mut seq = 0u64;
    let transition = |n: u64| {
        let i = n % POSTS;
        let (old, new) = if (n / POSTS) % 2 == 0 {
            (1u8, 3u8)
        } else {
            (3u8, 1u8)
        };
        (i, old, new)
    };
    let subject = |i: u64, tag: u8, seq: &[u8; 8]| {
        let mut k = format!("pen{:07}\0", i % 100).into_bytes();
        k.push(tag);
        k.extend_from_slice(seq);
        k
    };
    let mut flushes = 0;
    while Instant::now() < deadline {
        match mode {
            RawSled::Transaction => {
                let seqs: Vec<[u8; 8]> = (0..per)
                    .map(|_| db.generate_id().map(|s| s.to_be_bytes()))
                    .collect::<Result<_, _>>()?;
                let t = &trees;
                let r: Result<(), sled::transaction::TransactionError<()>> = (
                    &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7],
                )
                    .transaction(|(_, _, posts, by_conn, due, events, _, by_subject)| {
                        for (n, seq) in (changes..changes + per).zip(&seqs) {
                            let (i, old, new) = transition(n);
                            posts.get(id(i))?;
                            by_conn.remove(conn_index(i, old))?;
                            due.remove(due_index(i, old))?;
                            posts.insert(&id(i), value.as_slice())?;
                            by_conn.insert(conn_index(i, new), &[][..])?;
                            due.insert(due_index(i, new), &[][..])?;
                            events.insert(seq, event.as_slice())?;
                            by_subject.insert(subject(i, b'c', seq), &[][..])?;
                            by_subject.insert(subject(i, b'p', seq), &[][..])?;
                        }
                        Ok(())
                    });
                r.map_err(|e| format!("{e:?}"))?;
            }
            RawSled::Format2Durable => {
                let mut touched = std::collections::BTreeSet::new();
                for n in changes..changes + per {
                    let (i, _, _) = transition(n);
                    status.get(id(i))?;
                    status.insert(id(i), small.as_slice())?;
                    touched.insert(conn(i));
                }
                for c in touched {
                    counts.get(&c)?;
                    counts.insert(c, &[1u8; 34][..])?;
                }
                seq += per;
                groups.insert(seq.to_be_bytes(), vec![9u8; 120 * per as usize])?;
                db.flush()?;
                log_file.sync_data()?;
                flushes += 1;
            }
        }
        changes += per;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    Ok(SledRow {
        what: match mode {
            RawSled::Transaction => format!("raw sled, 1 thread, buffered: format 1's transition — an 8-tree transaction, 1 read + 8 writes, {per} per transaction"),
            RawSled::Format2Durable => format!("raw sled, 1 thread, **durable**: format 2's transition as plain writes (status, counts, event group), {per} per flush + `fdatasync`"),
        },
        changes,
        secs,
        cpu,
        flushes,
        acknowledged: if flushes > 0 { changes } else { 0 },
    })
}

async fn sled_section(opts: &Opts) -> Res<f64> {
    let load_start = loadavg();
    let run_for = Duration::from_secs_f64(opts.sled_secs);
    let a = sled_rate(opts.sled_writers, run_for, false).await?;
    let b = sled_rate(opts.sled_writers, run_for, true).await?;
    let short = Duration::from_secs_f64((opts.sled_secs / 5.0).max(0.5));
    let c = apply_cost(1, short)?;
    let d = apply_cost(64, short)?;
    let e = raw_sled(RawSled::Transaction, 1, short)?;
    let f = raw_sled(RawSled::Format2Durable, 256, run_for)?;
    println!(
        "## 4. sled — durable commits, {} concurrent writers\n",
        opts.sled_writers
    );
    println!(
        "Load average: {load_start} at start, {} at end. Rows 1–2: each writer `store.commit(batch, Durability::Durable)` in a loop for {:.0} s; durable commits share flushes (group commit). Rows 3–4: the CPU of a post transition through the store port (no flush waited for). Row 5: sled alone with format 1's write shape. Row 6: sled alone, batched and durable, with format 2's write shape — *sled's own batched durable write rate*, the reference for the dispatch figure below.\n",
        loadavg(),
        opts.sled_secs
    );
    println!("| what | changes | time s | changes/s | CPU ms per 1,000 changes | flushes | changes per flush | mean flush ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in [&a, &b, &c, &d, &e, &f] {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {} | {} | {} |",
            r.what,
            r.changes,
            r.secs,
            r.changes as f64 / r.secs,
            r.cpu.as_secs_f64() * 1e6 / r.changes.max(1) as f64,
            r.flushes,
            if r.flushes > 0 {
                format!("{:.1}", r.acknowledged as f64 / r.flushes as f64)
            } else {
                "–".into()
            },
            if r.flushes > 0 {
                format!("{:.2}", r.secs * 1000.0 / r.flushes as f64)
            } else {
                "–".into()
            }
        );
    }
    println!();
    // The reference for dispatch: transitions per second, sled alone, batched and durable.
    Ok(f.changes as f64 / f.secs)
}

// ---------------------------------------------------------------------------------------
// Sections 5 and 6: due posts through the queues.

/// How long a publish run waits for `Engine::shutdown` before dropping its runtime.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

struct RunReport {
    /// Every post reached a final state before `--max-publish-secs`.
    finished: bool,
    /// `Engine::shutdown` returned within [`SHUTDOWN_LIMIT`].
    shut_down: bool,
    /// Posts whose `attempts` is above 1 (the ports here never fail), and the highest.
    retried: usize,
    max_attempts: u32,
    shutdown_secs: f64,
    boot_secs: f64,
    /// How long before the due instant the engine was ready (negative: after).
    slack_secs: f64,
    /// Due instant → last Published event (durable).
    secs: f64,
    /// Due instant → last publish answer at the port.
    port_secs: f64,
    published: usize,
    other: usize,
    lagged: u64,
    verified: usize,
    cpu: Duration,
    flushes: u64,
    acknowledged: u64,
    threads: String,
    errors: u64,
    load_start: String,
    load_due: String,
    load_end: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    published: usize,
    other: usize,
    lagged: u64,
    last: Option<Instant>,
}

/// Counts post outcomes in the store's event feed until `target` posts are final.
async fn count_outcomes(
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    target: usize,
    shared: Arc<Mutex<Progress>>,
) {
    loop {
        let event = rx.recv().await;
        let mut p = shared.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Ok(e) if e.kind == EventKind::PostState => match e.to {
                Some(StateLabel::Published) => {
                    p.published += 1;
                    p.last = Some(Instant::now());
                }
                Some(
                    StateLabel::Failed
                    | StateLabel::Unconfirmed
                    | StateLabel::Held
                    | StateLabel::Paused,
                ) => p.other += 1,
                _ => {}
            },
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => p.lagged += n,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
        if p.published + p.other >= target {
            break;
        }
    }
}

fn http_client() -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(None)
        .build()?)
}

/// A publish run on a runtime of its own (on a thread of its own), dropped afterwards, so
/// that whatever the engine still has running after a cut-off cannot leak into the next
/// section.
fn isolated_publish_run(opts: &Opts, publish_url: Option<String>) -> Res<RunReport> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(async {
                let http = match publish_url {
                    Some(url) => Some(HttpTarget {
                        client: http_client()?,
                        url,
                    }),
                    None => None,
                };
                publish_run(opts, http.as_ref()).await
            });
            rt.shutdown_timeout(Duration::from_secs(5));
            result
        })
        .join()
        .map_err(|_| "the publish run panicked")?
    })
}

async fn publish_run(opts: &Opts, http: Option<&HttpTarget>) -> Res<RunReport> {
    let conns = opts.dispatch_connections;
    let posts = opts.dispatch_posts;
    let load_start = loadavg();
    let dir = tempfile::tempdir()?;
    let store = open_store_with_feed(dir.path(), 2 * posts + 1024)?;
    let now = Timestamp::now_system();
    write_connections(&store, conns, now)?;
    // Far enough ahead that the posts are written and the engine has booted before they
    // fall due (checked and reported below).
    let lead = Duration::from_secs(4)
        + Duration::from_micros(90 * posts as u64)
        + Duration::from_micros(1_000 * conns as u64);
    let due = Timestamp::now_system().saturating_add(lead);
    write_posts(&store, posts, conns, due, now)?;
    store.sync().await?;

    let calls = Arc::new(Calls::default());
    let config = EngineConfig {
        publish_concurrency: opts.publish_concurrency,
        jitter_seed: Some(7),
        ..EngineConfig::default()
    };
    let t = Instant::now();
    let engine = Engine::start(
        shared(&store),
        ports(&calls, http),
        Arc::new(SystemClock),
        config,
    )
    .await?;
    let rx = engine.subscribe();
    let tree = engine.tree().await?;
    let boot_secs = t.elapsed().as_secs_f64();
    let queued: usize = tree.queues.iter().map(|(_, q)| q.scheduled).sum();
    let ready_at = Timestamp::now_system();
    let slack_secs = (due.unix_millis() - ready_at.unix_millis()) as f64 / 1000.0;
    if queued != posts && slack_secs > 0.0 {
        return Err(format!("the queues hold {queued} posts, expected {posts}").into());
    }
    let shared = Arc::new(Mutex::new(Progress::default()));
    let mut counter = tokio::spawn(count_outcomes(rx, posts, shared.clone()));

    // Wait for the due instant, then measure from it.
    tokio::time::sleep(ready_at.until(due)).await;
    let late = due.until(Timestamp::now_system());
    let start = Instant::now()
        .checked_sub(late)
        .unwrap_or_else(Instant::now);
    let cpu0 = cpu_time();
    let threads0 = cpu_by_thread();
    let flush0 = store.flush_stats();
    let load_due = loadavg();

    let cutoff = Duration::from_secs(opts.max_publish_secs);
    let finished = tokio::time::timeout(cutoff.saturating_sub(start.elapsed()), &mut counter)
        .await
        .is_ok();
    if !finished {
        counter.abort();
    }
    let progress = *shared.lock().unwrap_or_else(|e| e.into_inner());
    let end = if finished {
        progress.last.unwrap_or_else(Instant::now)
    } else {
        Instant::now()
    };
    let cpu = cpu_time() - cpu0;
    let threads = cpu_by_thread_delta(&threads0);
    let flush1 = store.flush_stats();
    let load_end = loadavg();
    let port_secs =
        (calls.last_publish_ms.load(Ordering::Relaxed) - due.unix_millis()) as f64 / 1000.0;

    let t = Instant::now();
    let shut_down = tokio::time::timeout(SHUTDOWN_LIMIT, engine.shutdown())
        .await
        .is_ok();
    let shutdown_secs = t.elapsed().as_secs_f64();
    let mut verified = 0;
    let mut retried = 0;
    let mut max_attempts = 0;
    for i in 0..conns {
        for p in store.posts_of_connection(&conn_key(i)).await?.items {
            if p.state.label() == StateLabel::Published {
                verified += 1;
            }
            if p.attempts > 1 {
                retried += 1;
            }
            max_attempts = max_attempts.max(p.attempts);
        }
    }
    drop(engine);
    drop(store);
    drop(dir);
    Ok(RunReport {
        finished,
        shut_down,
        retried,
        max_attempts,
        shutdown_secs,
        boot_secs,
        slack_secs,
        secs: end.saturating_duration_since(start).as_secs_f64(),
        port_secs,
        published: progress.published,
        other: progress.other,
        lagged: progress.lagged,
        verified,
        cpu,
        flushes: flush1.flushes - flush0.flushes,
        acknowledged: flush1.acknowledged - flush0.acknowledged,
        threads,
        errors: calls.errors.load(Ordering::Relaxed),
        load_start,
        load_due,
        load_end,
    })
}

fn run_rows(opts: &Opts, r: &RunReport) {
    let posts = opts.dispatch_posts;
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| connections / platforms / posts | {} / 9 / {posts} |",
        opts.dispatch_connections
    );
    println!(
        "| `EngineConfig.publish_concurrency` (per platform) | {} |",
        opts.publish_concurrency
    );
    println!(
        "| boot (`Engine::start` → `tree()`), slack before the due instant | {:.2} s, {:.2} s{} |",
        r.boot_secs,
        r.slack_secs,
        if r.slack_secs < 0.0 {
            " (**late: the run includes boot**)"
        } else {
            ""
        }
    );
    if r.finished {
        println!(
            "| due instant → last Published (durable, in the event feed) | {:.2} s |",
            r.secs
        );
    } else {
        println!(
            "| due instant → cut off by `--max-publish-secs` (**not finished**) | {:.2} s |",
            r.secs
        );
    }
    println!(
        "| due instant → last publish answer at the port | {:.2} s |",
        r.port_secs
    );
    println!(
        "| throughput | **{:.0} posts/s** |",
        r.published as f64 / r.secs.max(1e-9)
    );
    println!(
        "| Published (events / verified in the store), other outcomes, lagged events | {} / {}, {}, {} |",
        r.published, r.verified, r.other, r.lagged
    );
    println!(
        "| process CPU from the due instant to the last Published (or the cut-off) | {:.2} s ({:.0} ms per 1,000 posts published) |",
        r.cpu.as_secs_f64(),
        r.cpu.as_secs_f64() * 1000.0 / (r.published.max(1) as f64 / 1000.0)
    );
    println!(
        "| group-commit flushes, durable commits acknowledged | {} flushes, {} commits ({:.1} per flush, {:.2} posts per flush, {:.2} ms per flush) |",
        r.flushes,
        r.acknowledged,
        r.acknowledged as f64 / r.flushes.max(1) as f64,
        r.published as f64 / r.flushes.max(1) as f64,
        r.secs * 1000.0 / r.flushes.max(1) as f64
    );
    if r.errors > 0 {
        println!("| port errors | {} |", r.errors);
    }
    if r.shut_down {
        println!(
            "| `Engine::shutdown` afterwards (drains what is in flight) | {:.2} s |",
            r.shutdown_secs
        );
    } else {
        println!(
            "| `Engine::shutdown` afterwards | **did not return within {:.0} s** (runtime dropped) |",
            r.shutdown_secs
        );
    }
    println!(
        "| posts with `attempts` > 1 afterwards (the port never fails), highest `attempts` | {}, {} |",
        r.retried, r.max_attempts
    );
}

async fn dispatch_section(opts: &Opts, sled: Option<f64>) -> Res<()> {
    let r = isolated_publish_run(opts, None)?;
    let rate = r.published as f64 / r.secs.max(1e-9);
    println!(
        "## 5. dispatch — {} posts over {} connections, in-process port\n",
        opts.dispatch_posts, opts.dispatch_connections
    );
    println!(
        "Load average: {} at start, {} at the due instant, {} at end. Every post written before boot, all due at one instant; the port answers each publish at once. Every transition is durable as the engine makes it: Scheduled → Publishing committed durably (one commit per dispatch batch, carrying the outcomes gathered since the last) before the connection is asked; Publishing → Published applied with the next batch (or on its own within 2 ms), made durable by the next group commit before its event goes out.\n",
        r.load_start, r.load_due, r.load_end
    );
    run_rows(opts, &r);
    match sled {
        Some(s) => println!(
            "| ratio to sled's own batched durable write rate (section 4, row 6: {s:.0} transitions/s; a post is two transitions) | {:.2} ({:.0} transitions/s / {s:.0}) |",
            2.0 * rate / s,
            2.0 * rate
        ),
        None => println!("| ratio to sled's batched durable write rate | n/a (section sled not run) |"),
    }
    println!(
        "\nCPU by thread: {}.\n\nTarget ≥ 15,000 posts/s → {}.\n",
        r.threads,
        if rate >= 15_000.0 { "met" } else { "missed" }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Section 6: a burst to a fake platform over loopback HTTP, served by a child process.

/// The child: an axum server on 127.0.0.1:0 that records, for each publish, its receive
/// time minus the post's due time. Exits when its stdin closes.
fn fake_platform_server() {
    struct Srv {
        lateness_ms: Mutex<Vec<i64>>,
    }
    async fn publish(
        axum::extract::State(s): axum::extract::State<Arc<Srv>>,
        body: String,
    ) -> String {
        let now = Timestamp::now_system().unix_millis();
        let mut parts = body.split(' ');
        let id = parts.next().unwrap_or_default().to_string();
        if let Some(due) = parts.next().and_then(|d| d.parse::<i64>().ok()) {
            s.lateness_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(now - due);
        }
        format!("fp-{id}")
    }
    async fn stats(axum::extract::State(s): axum::extract::State<Arc<Srv>>) -> String {
        let mut l = s
            .lateness_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        l.sort_unstable();
        let pct = |p: f64| -> i64 {
            if l.is_empty() {
                return 0;
            }
            let rank = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len());
            l[rank - 1]
        };
        format!(
            "{} {} {} {} {}",
            l.len(),
            pct(0.50),
            pct(0.99),
            l.last().copied().unwrap_or(0),
            cpu_time().as_micros()
        )
    }
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let srv = Arc::new(Srv {
            lateness_ms: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/publish", axum::routing::post(publish))
            .route("/stats", axum::routing::get(stats))
            .with_state(srv);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let mut out = std::io::stdout();
        let _ = writeln!(out, "LISTENING {port}");
        let _ = out.flush();
        axum::serve(listener, app).await.expect("serve");
    });
}

struct ChildStats {
    count: usize,
    p50: i64,
    p99: i64,
    max: i64,
    cpu: Duration,
}

async fn child_stats(client: &reqwest::Client, base: &str) -> Res<ChildStats> {
    let text = client
        .get(format!("{base}/stats"))
        .send()
        .await?
        .text()
        .await?;
    let v: Vec<i64> = text
        .split_whitespace()
        .map(|x| x.parse::<i64>())
        .collect::<Result<_, _>>()?;
    if v.len() != 5 {
        return Err(format!("unexpected stats {text:?}").into());
    }
    Ok(ChildStats {
        count: v[0] as usize,
        p50: v[1],
        p99: v[2],
        max: v[3],
        cpu: Duration::from_micros(v[4] as u64),
    })
}

async fn burst_section(opts: &Opts) -> Res<()> {
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--fake-platform-server")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("LISTENING ")
        .ok_or_else(|| format!("unexpected child output {line:?}"))?
        .parse()?;
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client()?;
    let result = async {
        let before = child_stats(&client, &base).await?;
        let r = isolated_publish_run(opts, Some(format!("{base}/publish")))?;
        let after = child_stats(&client, &base).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((r, before, after))
    }
    .await;
    // Closing stdin ends the child; it is ours, so make sure by its id.
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.wait();
    let (r, before, after) = result?;

    let posts = opts.dispatch_posts;
    let per_k = |d: Duration| d.as_secs_f64() * 1000.0 / (r.published.max(1) as f64 / 1000.0);
    println!(
        "## 6. burst — {posts} posts over {} connections, all due at one instant, fake platform over loopback HTTP\n",
        opts.dispatch_connections
    );
    println!(
        "Load average: {} at start, {} at the due instant, {} at end. The fake platform is an axum server on 127.0.0.1 in a child process (current-thread runtime); the port POSTs each publish with reqwest (HTTP/1.1 keep-alive) and returns the platform's id as the receipt. Lateness = platform-side receive time − due time.\n",
        r.load_start, r.load_due, r.load_end
    );
    run_rows(opts, &r);
    let cpu_ms_per_k = per_k(r.cpu);
    println!(
        "| publishes received by the platform | {} |",
        after.count - before.count
    );
    let received = after.count - before.count;
    // Cut off before the end: the posts not received are later than any received.
    let p99_known = r.finished || received * 100 >= posts * 99;
    println!(
        "| lateness p50 / p99 / max{} | **{:.2} s / {} / {:.2} s** |",
        if r.finished {
            String::new()
        } else {
            format!(" (of the {received} received before the cut-off)")
        },
        after.p50 as f64 / 1000.0,
        if p99_known {
            format!("{:.2} s", after.p99 as f64 / 1000.0)
        } else {
            format!("> {:.0} s", r.secs)
        },
        after.max as f64 / 1000.0
    );
    println!("| engine process CPU per 1,000 posts | **{cpu_ms_per_k:.0} ms** |");
    println!(
        "| fake platform process CPU per 1,000 posts (whole run, separate process) | {:.0} ms |",
        per_k(after.cpu.saturating_sub(before.cpu))
    );
    println!(
        "\nCPU by thread (engine process): {}.\n\nTargets: p99 lateness ≤ 10 s → {}; ≤ 100 ms CPU per 1,000 posts → {}. Run `../shared/peers/bullmq` in the same hour for the comparison (README, Figures).\n",
        r.threads,
        if p99_known && after.p99 <= 10_000 {
            "met"
        } else {
            "missed"
        },
        if cpu_ms_per_k <= 100.0 { "met" } else { "missed" }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------

async fn run(opts: Opts, args: &[String]) -> Res<()> {
    let nproc = command_output("nproc", &[]).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default()
    });
    let arch = command_output("uname", &["-m"]).unwrap_or_else(|| std::env::consts::ARCH.into());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "?".into());
    println!("# Social Studio engine: actor scale benchmark\n");
    println!("- machine: nproc {nproc}, {arch}, {model}, {mem_total} RAM");
    let user_args: Vec<&str> = args
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    println!(
        "- command: `cargo bench -p social-studio-actors --bench scale --{}{}` (argv: `{}`)",
        if user_args.is_empty() { "" } else { " " },
        user_args.join(" "),
        args.join(" ")
    );
    println!(
        "- started: {}, load average {}",
        Timestamp::now_system(),
        loadavg()
    );
    println!(
        "- runtime: tokio multi-thread ({} workers), `SystemClock`, sled store in a tempdir with `StoreConfig::new` defaults",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "- sections: {:?}; N = {}; idle {} s",
        opts.sections, opts.connections, opts.idle_secs
    );
    println!(
        "- figures are provisional: other builds may share this machine (see the load averages)\n"
    );
    let started = Instant::now();
    let took = |t: Instant| println!("_(section took {:.0} s)_\n", t.elapsed().as_secs_f64());
    if opts.has(Section::Memory) || opts.has(Section::Boot) || opts.has(Section::Idle) {
        let t = Instant::now();
        fleet(&opts).await?;
        took(t);
    }
    let sled = if opts.has(Section::Sled) {
        let t = Instant::now();
        let rate = sled_section(&opts).await?;
        took(t);
        Some(rate)
    } else {
        None
    };
    if opts.has(Section::Dispatch) {
        let t = Instant::now();
        dispatch_section(&opts, sled).await?;
        took(t);
    }
    if opts.has(Section::Burst) {
        let t = Instant::now();
        burst_section(&opts).await?;
        took(t);
    }
    println!(
        "Total run time: {:.0} s; load average at end {}.",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--fake-platform-server") {
        fake_platform_server();
        return;
    }
    let opts = match Opts::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(opts, &args)) {
        eprintln!("scale: {e}");
        std::process::exit(1);
    }
}
