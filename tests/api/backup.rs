//! `GET /v1/admin/backup` while the engine runs and writes: the archive it streams
//! restores into a new data directory that a `Studio` opens with the same master key,
//! with every connection, grant, post and event of the snapshot in it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use serde_json::json;
use social_studio::studio::{Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_storage::archive::{self, ArchiveReader};
use social_studio_storage::vault::MASTER_KEY_FILE;
use social_studio_storage::{
    ConnectionKey, KeySource, MasterKey, PostCounts, PostId, SledStore, Store, StoreConfig,
    Timestamp,
};

use crate::helpers::{in_a_day, spawn_app, JANE, LOOK_AGAIN, OTHER, PATIENCE};

/// What the archive itself says the snapshot holds.
struct Snapshot {
    connections: BTreeSet<ConnectionKey>,
    posts: Vec<PostId>,
    /// The highest event number handed out when it was taken.
    seq_high: u64,
}

fn read_snapshot(bytes: &[u8]) -> Snapshot {
    let mut reader = ArchiveReader::open(bytes).expect("an archive");
    let mut snapshot = Snapshot {
        connections: BTreeSet::new(),
        posts: Vec::new(),
        seq_high: 0,
    };
    while let Some(r) = reader.next_record().expect("a whole archive") {
        match r.tree.as_str() {
            "connections" => {
                snapshot
                    .connections
                    .insert(ConnectionKey::from_storage_key(&r.key).expect("a connection key"));
            }
            "post_bodies" => snapshot.posts.push(PostId::from_bytes(
                <[u8; 16]>::try_from(r.key.as_slice()).expect("a post id"),
            )),
            "meta" if r.key == b"seq_high" => {
                snapshot.seq_high =
                    u64::from_be_bytes(<[u8; 8]>::try_from(r.value.as_slice()).unwrap());
            }
            _ => {}
        }
    }
    snapshot
}

/// Opens the store in `dir` once whatever had it open has let go of it.
async fn open_store(dir: &Path, key: &MasterKey) -> SledStore {
    poll_until(PATIENCE, LOOK_AGAIN, async || {
        SledStore::open_with_key(&StoreConfig::new(dir), key, KeySource::Provided).ok()
    })
    .await
    .expect("the restored store opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_posts_are_scheduled_and_published_restores_with_nothing_lost() {
    let app = spawn_app().await;
    app.connect_x("jane", JANE).await;
    app.connect_x("ann", OTHER).await;

    // Without the token, no backup.
    let refused = app
        .client
        .get(app.url("/v1/admin/backup"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // Writers: posts scheduled without pause, every other one due at once, so the engine
    // publishes while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for pen in ["jane", "ann"] {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/pen-names/{pen}/posts"));
        let token = app.admin_token.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let due = if n % 2 == 0 {
                    Timestamp::now_system().to_rfc3339()
                } else {
                    in_a_day()
                };
                let answer = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"platform": "x", "text": format!("{pen} {n}"), "scheduled_at": due}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), StatusCode::CREATED);
                n += 1;
            }
            n
        }));
    }
    // Some posts are published before the backup starts, and more keep coming.
    let published = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let (_, body) = app.get("/v1/pen-names/jane/posts?state=published").await;
        (body["posts"].as_array().map_or(0, Vec::len) >= 2).then_some(())
    })
    .await;
    assert!(published.is_some(), "posts are published");

    let answer = app
        .request(Method::GET, "/v1/admin/backup")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    let announced = answer.content_length();
    let bytes = answer.bytes().await.unwrap().to_vec();
    assert_eq!(announced, Some(bytes.len() as u64));
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    let summary = archive::verify(bytes.as_slice()).expect("the archive checks out");
    let snapshot = read_snapshot(&bytes);
    assert_eq!(snapshot.connections.len(), 2);
    assert!(!snapshot.posts.is_empty());
    eprintln!(
        "backup while writing: {} records, {} posts of {written} scheduled in all, events up to {}",
        summary.records,
        snapshot.posts.len(),
        snapshot.seq_high
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("backup.ssbackup");
    std::fs::write(&file, &bytes).unwrap();
    let restored_dir = elsewhere.path().join("restored");
    SledStore::restore(&file, &restored_dir).expect("restore");
    // The key is not in the backup: the operator brings it (here, the original's file).
    std::fs::copy(
        app.data_dir.path().join(MASTER_KEY_FILE),
        restored_dir.join(MASTER_KEY_FILE),
    )
    .unwrap();
    let (master_key, _) =
        MasterKey::load_or_create_file(&restored_dir.join(MASTER_KEY_FILE)).unwrap();

    // The copy as it is, before an engine acts on it.
    {
        let restored = open_store(&restored_dir, &master_key).await;
        let original = app.studio.store();
        original.sync().await.unwrap();
        let all = restored.all_connections().await.unwrap();
        assert!(all.unreadable.is_empty());
        assert_eq!(
            all.items
                .iter()
                .map(|c| c.key.clone())
                .collect::<BTreeSet<_>>(),
            snapshot.connections
        );
        let mut posts_seen = 0;
        for key in &snapshot.connections {
            let grant = restored.grant(key).await.unwrap().expect("its grant");
            assert_eq!(grant, original.grant(key).await.unwrap().unwrap());
            let posts = restored.posts_of_connection(key).await.unwrap();
            assert!(posts.unreadable.is_empty());
            let mut counted = PostCounts::default();
            for p in &posts.items {
                counted.apply(None, Some(p.state.label()));
                let now = original
                    .post(p.id)
                    .await
                    .unwrap()
                    .expect("a post the original has");
                assert_eq!(
                    (&now.content, now.due_at, &now.connection),
                    (&p.content, p.due_at, &p.connection)
                );
            }
            assert_eq!(
                restored.post_counts(key).await.unwrap(),
                counted,
                "the counts of {key} agree with its posts"
            );
            posts_seen += posts.items.len();
        }
        assert_eq!(
            posts_seen,
            snapshot.posts.len(),
            "every post of the snapshot"
        );
        let events = restored.events_after(0, 1_000_000).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=snapshot.seq_high).collect::<Vec<_>>(),
            "every event of the snapshot, contiguous"
        );
        let originals = original.events_after(0, events.len()).await.unwrap();
        assert_eq!(
            events, originals,
            "the snapshot's events are the original's"
        );
        let report = restored.check_integrity().await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    // An engine opens it with the same key: its connections are there and their grants work.
    let studio = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let config = social_studio::config::Config {
            data_dir: restored_dir.clone(),
            ..app.config.clone()
        };
        Studio::open(config, StudioOptions::default()).await.ok()
    })
    .await
    .expect("a Studio opens the restored data directory");
    for key in &snapshot.connections {
        let entry = serde_json::to_value(studio.connection(key).await.unwrap()).unwrap();
        assert_eq!(entry["status"], "active", "{entry}");
        studio
            .verify(key, None)
            .await
            .expect("the restored grant is usable");
    }
    for id in &snapshot.posts {
        assert!(studio.store().post(*id).await.unwrap().is_some());
    }
    studio.shutdown().await;
    drop(studio);
    // (The original is not used again: a renewal by either engine spends the refresh
    // token the other holds — the two must never run at once.)
    tokio::time::timeout(Duration::from_secs(60), app.stop())
        .await
        .expect("the app stops");
}
