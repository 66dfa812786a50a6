//! The real binary's `backup` and `restore`, end to end: a running server's store is
//! fetched into a file that is whole and checked before it carries its name (never a
//! partial file, also when the server refuses), restored into a new data directory that
//! opens with the same master key holding every record of the archive, and a restore
//! refuses a directory that holds anything. `backup --from-data-dir` copies a stopped
//! engine's store.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use social_studio::wait::poll_until;
use social_studio_storage::archive::{self, ArchiveReader, ArchiveRecord};
use social_studio_storage::fixtures::{connection, grant, key, post};
use social_studio_storage::{
    Batch, Durability, Event, EventKind, KeySource, MasterKey, Platform, SledStore, StateLabel,
    Store, StoreConfig, Timestamp,
};

const PATIENCE: Duration = Duration::from_secs(60);
const LOOK_AGAIN: Duration = Duration::from_millis(50);
const TOKEN: &str = "backup-test-admin-token-1b7d";

fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_social-studio"));
    command
        .env_remove("SOCIAL_STUDIO_CONFIG")
        .env_remove("SOCIAL_STUDIO_ADMIN_TOKEN")
        .env_remove("SOCIAL_STUDIO_MASTER_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn run(command: &mut tokio::process::Command) -> Output {
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("the command finishes")
        .expect("the command runs")
}

fn records(bytes: &[u8]) -> Vec<ArchiveRecord> {
    let mut reader = ArchiveReader::open(bytes).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        out.push(r);
    }
    out
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Opens a store in `dir` once whatever had it open has let go of it.
async fn open_store(dir: &Path, key: &MasterKey) -> SledStore {
    poll_until(PATIENCE, LOOK_AGAIN, async || {
        SledStore::open_with_key(&StoreConfig::new(dir), key, KeySource::Provided).ok()
    })
    .await
    .expect("the store opens")
}

/// Starts `serve` on `data`; while the store just written there is still being let go of
/// (sled's own threads, for a moment after a drop) the server exits at once and is
/// started again.
async fn serve(data: &Path, master_key: &str) -> (tokio::process::Child, String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = binary()
            .arg("serve")
            .env("SOCIAL_STUDIO_DATA_DIR", data)
            .env("SOCIAL_STUDIO_LISTEN", format!("127.0.0.1:{port}"))
            .env("SOCIAL_STUDIO_PUBLIC_URL", &url)
            .env("SOCIAL_STUDIO_ADMIN_TOKEN", TOKEN)
            .env("SOCIAL_STUDIO_MASTER_KEY", master_key)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let up = poll_until(PATIENCE, LOOK_AGAIN, async || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            let ready = client.get(format!("{url}/readyz")).send().await;
            ready.is_ok_and(|r| r.status().is_success()).then_some(true)
        })
        .await;
        match up {
            Some(true) => return (child, url),
            Some(false) => {
                let output = child.wait_with_output().await.unwrap();
                let said = String::from_utf8_lossy(&output.stderr).into_owned();
                assert!(
                    said.contains("lock") && tokio::time::Instant::now() < deadline,
                    "the server exited: {said}"
                );
            }
            None => panic!("the server did not come up at {url}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_commands_end_to_end() {
    let data = tempfile::tempdir().unwrap();
    let master_key = MasterKey::generate();
    let master_key_b64 = master_key.to_base64().to_string();
    // A store with connections, sealed grants, posts and events, written before the
    // server starts.
    {
        let store = open_store(data.path(), &master_key).await;
        for (n, k) in [key("jane", Platform::X), key("ann", Platform::Bluesky)]
            .iter()
            .enumerate()
        {
            let mut b = Batch::new();
            b.put_connection(&connection(k))
                .put_grant(k, &grant(&format!("access-{n}"), Some("refresh")));
            for i in 0..10 {
                let p = post(k, i);
                b.put_post(&p).event(
                    Event::new(
                        Timestamp::from_unix_millis(1),
                        k.clone(),
                        EventKind::PostState,
                    )
                    .post(p.id)
                    .transition(None, Some(StateLabel::Scheduled)),
                );
            }
            store.commit(b, Durability::Durable).await.unwrap();
        }
    }
    let (mut server, url) = serve(data.path(), &master_key_b64).await;

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("store.ssbackup");
    let backup = run(binary()
        .args(["backup", "--out"])
        .arg(&file)
        .args(["--url", &url])
        .env("SOCIAL_STUDIO_ADMIN_TOKEN", TOKEN))
    .await;
    let said = String::from_utf8_lossy(&backup.stdout);
    assert!(
        backup.status.success(),
        "backup failed: {said}{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(said.contains("checked whole"), "{said}");
    assert!(
        said.contains("master key"),
        "it says the key is needed: {said}"
    );
    assert_eq!(
        entries(out.path()),
        vec!["store.ssbackup"],
        "no partial file left"
    );
    let bytes = std::fs::read(&file).unwrap();
    let summary = archive::verify(bytes.as_slice()).unwrap();
    assert!(summary.per_tree["post_bodies"] >= 20, "{summary:?}");

    // A refused backup leaves nothing under its name, nor a partial file.
    let refused = run(binary()
        .args(["backup", "--out"])
        .arg(out.path().join("refused.ssbackup"))
        .args(["--url", &url])
        .env("SOCIAL_STUDIO_ADMIN_TOKEN", "wrong-token"))
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unauthorized"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(entries(out.path()), vec!["store.ssbackup"]);

    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // Restore into a new directory; a second restore into it is refused.
    let restored = out.path().join("restored");
    let restore = run(binary()
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored))
    .await;
    assert!(
        restore.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let said = String::from_utf8_lossy(&restore.stdout);
    assert!(
        said.contains("master key"),
        "it says the key is needed: {said}"
    );
    let again = run(binary()
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored))
    .await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The restored directory opens with the same key and holds every record of the archive.
    {
        let store = open_store(&restored, &master_key).await;
        for r in records(&bytes) {
            assert_eq!(
                store.raw_get_for_tests(&r.tree, &r.key).unwrap().as_deref(),
                Some(r.value.as_slice()),
                "{} restored",
                r.tree
            );
        }
        let g = store.grant(&key("ann", Platform::Bluesky)).await.unwrap();
        assert_eq!(g.unwrap().access_token.expose(), "access-1");
        assert_eq!(
            store
                .posts_of_connection(&key("jane", Platform::X))
                .await
                .unwrap()
                .items
                .len(),
            10
        );
        let report = store.check_integrity().await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    // A stopped engine's data directory, backed up directly.
    let offline = out.path().join("offline.ssbackup");
    let backup = run(binary()
        .args(["backup", "--out"])
        .arg(&offline)
        .arg("--from-data-dir")
        .arg(data.path())
        .env("SOCIAL_STUDIO_MASTER_KEY", &master_key_b64))
    .await;
    assert!(
        backup.status.success(),
        "offline backup failed: {}",
        String::from_utf8_lossy(&backup.stderr)
    );
    // A directory that holds no engine's data is refused, and nothing is created there.
    let nowhere = out.path().join("nowhere");
    let refused = run(binary()
        .args(["backup", "--out"])
        .arg(out.path().join("nothing.ssbackup"))
        .arg("--from-data-dir")
        .arg(&nowhere)
        .env("SOCIAL_STUDIO_MASTER_KEY", &master_key_b64))
    .await;
    assert!(!refused.status.success());
    assert!(!nowhere.exists(), "no store was created");
    assert!(!out.path().join("nothing.ssbackup").exists());
    let offline_bytes = std::fs::read(&offline).unwrap();
    let offline_summary = archive::verify(offline_bytes.as_slice()).unwrap();
    assert_eq!(
        offline_summary.per_tree["post_bodies"],
        summary.per_tree["post_bodies"]
    );
}
