use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::fixtures::{connection, key, post};
use crate::Platform;

fn open_with_hook(dir: &Path, hook: FlushHook) -> SledStore {
    SledStore::open_inner(
        &StoreConfig {
            background_flush_ms: None,
            ..StoreConfig::new(dir)
        },
        &MasterKeys::new(MasterKey::generate()),
        KeySource::Provided,
        Some(hook),
        None,
    )
    .unwrap()
}

/// A durable commit must not return before the flush that covers it has completed:
/// hold the flusher inside its flush and see the commit wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_commit_returns_only_after_its_flush_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let store = open_with_hook(
        dir.path(),
        Box::new(move || {
            let _ = entered_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        }),
    );
    let post = post(&key("jane", Platform::X), 1);
    let mut batch = Batch::new();
    batch.put_post(&post);
    let mut commit = tokio::spawn(store.commit(batch, Durability::Durable));

    // The flusher has started this commit's flush and is held inside it.
    tokio::task::spawn_blocking(move || entered_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("flusher began a flush");
    // Applied (visible) but not acknowledged while the flush is held.
    assert!(store.post(post.id).await.unwrap().is_some());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut commit)
            .await
            .is_err(),
        "commit returned while its flush was still running"
    );
    assert_eq!(store.flush_stats().flushes, 0);
    release_tx.send(()).unwrap();
    commit.await.unwrap().unwrap();
    assert_eq!(store.flush_stats().flushes, 1);
    assert_eq!(store.flush_stats().acknowledged, 1);
}

/// Commits queued while a flush runs are answered together by the next one; their events
/// are published only once that flush is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_commits_share_flushes_and_events_wait_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let store = open_with_hook(
        dir.path(),
        Box::new(move || {
            let _ = release_rx.lock().unwrap().recv();
        }),
    );
    let mut feed = store.subscribe();
    let key = key("jane", Platform::X);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let p = post(&key, i);
        let mut b = Batch::new();
        b.put_post(&p).event(
            Event::new(
                Timestamp::from_unix_millis(0),
                key.clone(),
                crate::EventKind::PostState,
            )
            .post(p.id),
        );
        tasks.push(tokio::spawn(store.commit(b, Durability::Durable)));
    }
    // Every change is applied (and so queued for a flush) while the flusher is held.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.posts_of_connection(&key).await.unwrap().items.len() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "commits were not applied"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        feed.try_recv().is_err(),
        "no event goes out before its flush"
    );
    for _ in 0..100 {
        let _ = release_tx.send(());
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = store.flush_stats();
    assert_eq!(stats.acknowledged, 50);
    assert!(
        stats.flushes <= 5,
        "50 concurrent commits took {} flushes",
        stats.flushes
    );
    for expect in 1..=50 {
        assert_eq!(feed.recv().await.unwrap().seq, expect);
    }
}

/// A crash after the journal was written and before every write was applied: the next
/// open replays the journal and the commit is whole.
#[tokio::test]
async fn a_commit_cut_off_after_its_journal_is_finished_at_open() {
    for size in [3usize, 2_000] {
        let dir = tempfile::tempdir().unwrap();
        let key_ = key("jane", Platform::X);
        let mk = MasterKey::generate();
        let config = StoreConfig::new(dir.path());
        let posts: Vec<_> = (0..size as u64).map(|i| post(&key_, i)).collect();
        {
            let store = SledStore::open_with_key(&config, &mk, KeySource::Provided).unwrap();
            let mut b = Batch::new();
            b.put_connection(&connection(&key_));
            for p in &posts {
                b.put_post(p).event(
                    Event::new(
                        Timestamp::from_unix_millis(0),
                        key_.clone(),
                        crate::EventKind::PostState,
                    )
                    .post(p.id),
                );
            }
            // Plan and journal the commit exactly as `apply` does, then stop before the
            // writes land: what a crash between the journal and the writes leaves.
            let staged = std::mem::take(&mut b.ops)
                .into_iter()
                .map(|op| store.stage(op))
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let mut w = store.inner.writer.lock().unwrap();
            let mut plan = writer_plan_for_tests(&store, &mut w, staged);
            let journal_only = std::mem::take(&mut plan);
            write_journal_only(&store, w.seq_high, &journal_only);
            drop(w);
            store.inner.db.flush().unwrap();
            // Dropped without the clean close that clears the journal.
            store.inner.close_cleanly.store(false, Ordering::Relaxed);
        }
        let store = SledStore::open_with_key(&config, &mk, KeySource::Provided).unwrap();
        assert!(
            store.info().opened.iter().any(|l| l.contains("replayed")),
            "{:?}",
            store.info().opened
        );
        assert_eq!(
            store.posts_of_connection(&key_).await.unwrap().items.len(),
            size
        );
        assert_eq!(
            store.post_counts(&key_).await.unwrap().scheduled,
            size as u32
        );
        assert_eq!(store.events_after(0, 10_000).await.unwrap().len(), size);
        assert!(store.check_integrity().await.unwrap().problems.is_empty());
        // The next event is numbered after the replayed ones.
        let mut b = Batch::new();
        b.event(Event::new(
            Timestamp::from_unix_millis(0),
            key_.clone(),
            crate::EventKind::GrantRenewed,
        ));
        let e = store.commit(b, Durability::Durable).await.unwrap().events;
        assert_eq!(e[0].seq, size as u64 + 1);
    }
}

fn writer_plan_for_tests(
    store: &SledStore,
    w: &mut WriterState,
    staged: Vec<super::writer::StagedForTests>,
) -> Vec<layout::Write> {
    super::writer::plan_for_tests(store, w, staged)
}

fn write_journal_only(store: &SledStore, seq_high: u64, writes: &[layout::Write]) {
    super::writer::journal_only_for_tests(store, seq_high, writes)
}

/// An open while the directory is still held — by a store of this process that is about
/// to let go (an engine restarted in-process, whose old store's sled threads are still
/// finishing) — waits for it instead of failing.
#[test]
fn an_open_waits_for_a_store_that_is_letting_go() {
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    let config = StoreConfig::new(dir.path());
    let held = SledStore::open_with_key(&config, &mk, KeySource::Provided).unwrap();
    let letting_go = std::thread::spawn(move || {
        // Still held for a moment after the open below has begun.
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let reopened = SledStore::open_with_key(&config, &mk, KeySource::Provided);
    letting_go.join().unwrap();
    assert!(reopened.is_ok(), "{:?}", reopened.err());
}
