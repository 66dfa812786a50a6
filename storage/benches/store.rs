//! Storage benchmark: durable changes per second with 1, 16 and 256 concurrent writers,
//! with group commit and with a flush per change; and bytes on disk per connection and
//! per post. Run with `cargo bench -p social-studio-storage`; prints a Markdown table.
//!
//! One "change" is what the engine writes when it schedules a post: the post (body,
//! status, index entry, counts) and an event, in one atomic commit, durable before it
//! returns.

use std::path::Path;
use std::time::{Duration, Instant};

use social_studio_storage::fixtures::{connection, grant, key, post};
use social_studio_storage::*;

const RUN_FOR: Duration = Duration::from_secs(3);

fn fresh_store(dir: &Path) -> SledStore {
    SledStore::open_with_key(
        &StoreConfig::new(dir),
        &MasterKey::generate(),
        KeySource::Provided,
    )
    .expect("open store")
}

fn change(k: &ConnectionKey, n: u64) -> Batch {
    let p = post(k, n);
    let mut b = Batch::new();
    b.put_post(&p).event(
        Event::new(Timestamp::now_system(), k.clone(), EventKind::PostState)
            .post(p.id)
            .transition(None, Some(StateLabel::Scheduled)),
    );
    b
}

async fn durable_rate(writers: usize, grouped: bool) -> (f64, FlushStats) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(dir.path());
    let deadline = Instant::now() + RUN_FOR;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let k = key(&format!("pen{w}"), Platform::ALL[w % 9]);
            let mut n = 0u64;
            while Instant::now() < deadline {
                if grouped {
                    store
                        .commit(change(&k, n), Durability::Durable)
                        .await
                        .expect("commit");
                } else {
                    let s = store.clone();
                    let b = change(&k, n);
                    tokio::task::spawn_blocking(move || {
                        s.commit_blocking(b, Durability::Buffered).expect("apply");
                        s.flush_unshared().expect("flush");
                    })
                    .await
                    .expect("join");
                }
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    (
        total as f64 / start.elapsed().as_secs_f64(),
        store.flush_stats(),
    )
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

/// Bytes the directory grows by per record, after writing `n` records and closing.
fn bytes_per(n: u64, write: impl Fn(&SledStore, u64) -> Batch) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = {
        let s = fresh_store(dir.path());
        s.flush_unshared().expect("flush");
        drop(s);
        dir_bytes(dir.path())
    };
    let mk = MasterKey::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open_with_key(&StoreConfig::new(dir.path()), &mk, KeySource::Provided)
        .expect("open");
    for i in 0..n {
        store
            .commit_blocking(write(&store, i), Durability::Buffered)
            .expect("apply");
    }
    store.flush_unshared().expect("flush");
    let sled_size = store.size_on_disk().expect("size");
    drop(store);
    let after = dir_bytes(dir.path());
    (
        (after.saturating_sub(base)) as f64 / n as f64,
        sled_size as f64 / n as f64,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("| writers | group commit: changes/s | flushes per change | flush per change: changes/s | speed-up |");
    println!("|---:|---:|---:|---:|---:|");
    for writers in [1usize, 16, 256] {
        let (grouped, stats) = rt.block_on(durable_rate(writers, true));
        let (single, _) = rt.block_on(durable_rate(writers, false));
        println!(
            "| {writers} | {grouped:.0} | {:.3} | {single:.0} | {:.1}× |",
            stats.flushes as f64 / stats.acknowledged.max(1) as f64,
            grouped / single
        );
    }
    const N: u64 = 50_000;
    let (conn_bytes, conn_sled) = bytes_per(N, |_, i| {
        let k = key(&format!("pen-{i}"), Platform::ALL[(i % 9) as usize]);
        let mut b = Batch::new();
        b.put_connection(&connection(&k)).put_grant(
            &k,
            &grant(
                &format!("access-token-{i:032}"),
                Some(&format!("refresh-token-{i:032}")),
            ),
        );
        b
    });
    let (post_bytes, post_sled) = bytes_per(N, |_, i| {
        let k = key(
            &format!("pen-{}", i % 1000),
            Platform::ALL[(i % 9) as usize],
        );
        let mut b = Batch::new();
        b.put_post(&post(&k, i));
        b
    });
    println!();
    println!(
        "| record ({N} written) | bytes on disk each (directory growth) | sled size_on_disk each |"
    );
    println!("|---|---:|---:|");
    println!("| connection + sealed grant | {conn_bytes:.0} | {conn_sled:.0} |");
    println!("| post (body, status, index entry, counts) | {post_bytes:.0} | {post_sled:.0} |");
}
