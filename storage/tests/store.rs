//! The store on real sled on disk, where it is sled's own: the files on disk, the format
//! file, the key file, the erasure marker, and the derived records of sled's layout
//! (counts, event references) corrupted on purpose through its raw trees. Apart from
//! opening and corrupting, every test talks to `&dyn Store`. The port's contract itself
//! is the conformance suite (`social_studio_storage::conformance`, run on sled by
//! `conformance_sled.rs`).

use std::path::Path;

use social_studio_storage::conformance::store::every_kind_of_record;
use social_studio_storage::fixtures::{connection, grant, key, post};
use social_studio_storage::*;

#[path = "support/reopen.rs"]
mod reopen;
use reopen::open;

#[tokio::test]
async fn tokens_never_reach_the_disk_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    let access = "AT-9f3c2a7e-plain-access-token-4d1b";
    let refresh = "RT-51aa0c9e-plain-refresh-token-77e2";
    let verifier = "PKCE-verifier-0a9b8c7d6e5f-never-plain";
    let k = key("jane", Platform::X);
    {
        let store = open(dir.path(), &mk);
        let mut b = Batch::new();
        b.put_connection(&connection(&k))
            .put_grant(&k, &grant(access, Some(refresh)));
        b.put_oauth_state(
            "state-1",
            &PendingAuthorization {
                connection: k.clone(),
                pkce_verifier: Some(Secret::new(verifier)),
                redirect_uri: "http://127.0.0.1/cb".into(),
                created_at: Timestamp::from_unix_millis(0),
                expires_at: Timestamp::from_unix_millis(600_000),
                replace: false,
                purpose: social_studio_storage::StatePurpose::Connect { return_to: None },
            },
        );
        store.commit(b, Durability::Durable).await.unwrap();
        // Rotate a few times so older versions of the grant also pass through the journal
        // and sled's log.
        for i in 0..5 {
            let mut b = Batch::new();
            b.put_grant(
                &k,
                &grant(&format!("{access}-{i}"), Some(&format!("{refresh}-{i}"))),
            );
            store.commit(b, Durability::Durable).await.unwrap();
        }
    }
    let mut bytes_seen = 0usize;
    for entry in walk(dir.path()) {
        let data = std::fs::read(&entry).unwrap();
        bytes_seen += data.len();
        for needle in [access, refresh, verifier, "AT-9f3c2a7e", "RT-51aa0c9e"] {
            assert!(
                !data.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in plain text in {}",
                entry.display()
            );
        }
    }
    assert!(bytes_seen > 0, "the data directory holds the store");
    let store = open(dir.path(), &mk);
    let g = store.grant(&k).await.unwrap().unwrap();
    assert_eq!(g.access_token.expose(), format!("{access}-4"));
    assert_eq!(g.refresh_token.unwrap().expose(), format!("{refresh}-4"));
    match store
        .take_oauth_state("state-1", Timestamp::from_unix_millis(1))
        .await
        .unwrap()
    {
        StateLookup::Taken(p) => assert_eq!(p.pkce_verifier.unwrap().expose(), verifier),
        other => panic!("expected the state, got {other:?}"),
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn master_key_comes_from_the_environment_or_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path());
    // No environment key in the test environment: a key file is created beside the data.
    if std::env::var(vault::MASTER_KEY_ENV).is_err() {
        let store = SledStore::open(&config).unwrap();
        assert!(matches!(
            store.key_source(),
            KeySource::File { created: true, .. }
        ));
        drop(store);
        let store = SledStore::open(&config).unwrap();
        assert!(matches!(
            store.key_source(),
            KeySource::File { created: false, .. }
        ));
    }
}

#[tokio::test]
async fn an_erasure_that_was_interrupted_is_finished_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    let gone = key("gone", Platform::X);
    {
        let sled = open(dir.path(), &mk);
        let mut b = Batch::new();
        b.put_connection(&connection(&gone))
            .put_grant(&gone, &grant("t", None))
            .put_post(&post(&gone, 1));
        sled.commit(b, Durability::Durable).await.unwrap();
        // The marker an erasure writes first, as if the process died right after it.
        sled.raw_insert_for_tests("meta", b"erasing\0gone", b"")
            .unwrap();
        sled.sync().await.unwrap();
    }
    let store = open(dir.path(), &mk);
    assert!(store.connection(&gone).await.unwrap().is_none());
    assert!(store
        .posts_of_pen(&gone.pen_name)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(
        store
            .info()
            .opened
            .iter()
            .any(|l| l.contains("finished erasing pen name gone")),
        "{:?}",
        store.info().opened
    );
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn a_data_directory_of_a_newer_format_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    {
        let store = open(dir.path(), &mk);
        let k = key("jane", Platform::X);
        let mut b = Batch::new();
        b.put_connection(&connection(&k));
        store.commit(b, Durability::Durable).await.unwrap();
    }
    std::fs::write(dir.path().join("format"), "3\n").unwrap();
    let before = std::fs::read(dir.path().join("sled/db")).unwrap();
    match SledStore::open_with_key(&StoreConfig::new(dir.path()), &mk, KeySource::Provided) {
        Err(
            e @ StoreError::NewerFormat {
                found: 3,
                supported: 2,
                ..
            },
        ) => {
            assert!(e.to_string().contains("newer release"), "{e}")
        }
        Err(other) => panic!("expected NewerFormat, got {other}"),
        Ok(_) => panic!("a newer format was opened"),
    }
    assert_eq!(
        std::fs::read(dir.path().join("sled/db")).unwrap(),
        before,
        "nothing was touched"
    );
}

/// The key of a connection's newest event references (`storage key`, 0, then eight 0xff
/// bytes): the layout's, spelled out so the test can break that record.
fn event_refs_head_key(k: &ConnectionKey) -> Vec<u8> {
    let mut key = k.storage_key();
    key.push(0);
    key.extend_from_slice(&[0xff; 8]);
    key
}

const UNREADABLE: &[u8] = b"\x01\xff\xff\xff\xff";

#[tokio::test]
async fn unreadable_counts_are_recounted_from_the_records_they_summarise() {
    let dir = tempfile::tempdir().unwrap();
    let sled = open(dir.path(), &MasterKey::generate());
    let store: &dyn Store = &sled;
    let (k, posts, _) = every_kind_of_record(store).await;
    let other = key("john", Platform::X);
    let mut b = Batch::new();
    b.put_connection(&connection(&other));
    store.commit(b, Durability::Durable).await.unwrap();
    let before = (
        store.post_counts(&k).await.unwrap(),
        store.connection_counts().await.unwrap(),
    );
    assert_eq!(before.0.total(), 8);
    assert_eq!(before.1.total(), 2);

    sled.raw_insert_for_tests("post_counts", &k.storage_key(), UNREADABLE)
        .unwrap();
    sled.raw_insert_for_tests("meta", b"connection_counts", UNREADABLE)
        .unwrap();
    assert!(store.post_counts(&k).await.is_err());
    assert!(store.connection_counts().await.is_err());

    // A transition and a status change: each writer recounts rather than start from zero.
    let mut scheduled = posts[0].clone();
    scheduled.state = PostState::Publishing;
    let mut c = store.connection(&other).await.unwrap().unwrap();
    c.status = ConnectionStatus::Expired(Reason::new(ReasonCode::PasswordChanged));
    let mut b = Batch::new();
    b.put_post_status(&scheduled).put_connection(&c);
    store.commit(b, Durability::Durable).await.unwrap();

    let counts = store.post_counts(&k).await.unwrap();
    assert_eq!(counts.total(), 8, "{counts:?}");
    assert_eq!(counts.scheduled, before.0.scheduled - 1);
    assert_eq!(counts.publishing, before.0.publishing + 1);
    let connections = store.connection_counts().await.unwrap();
    assert_eq!(
        (connections.active, connections.expired),
        (before.1.active - 1, before.1.expired + 1),
        "{connections:?}"
    );
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(store.unreadable().is_empty(), "{:?}", store.unreadable());
}

#[tokio::test]
async fn unreadable_event_references_are_rebuilt_and_never_hide_events() {
    let dir = tempfile::tempdir().unwrap();
    let sled = open(dir.path(), &MasterKey::generate());
    let store: &dyn Store = &sled;
    let mine = key("jane", Platform::X);
    let other = key("john", Platform::X);
    let event = |k: &ConnectionKey, i: i64| {
        Event::new(
            Timestamp::from_unix_millis(i),
            k.clone(),
            EventKind::GrantRenewed,
        )
    };
    // More than one chunk of references, so the rebuilt head must leave the older ones
    // to their chunks.
    let mut expected = Vec::new();
    for i in 0..600 {
        let mut b = Batch::new();
        b.event(event(&mine, i)).event(event(&other, i));
        expected.push(store.commit(b, Durability::Buffered).await.unwrap().events[0].seq);
    }
    store.sync().await.unwrap();
    sled.raw_insert_for_tests(
        "events_by_connection",
        &event_refs_head_key(&mine),
        UNREADABLE,
    )
    .unwrap();

    let mut b = Batch::new();
    b.event(event(&mine, 600));
    expected.push(store.commit(b, Durability::Durable).await.unwrap().events[0].seq);

    let seen: Vec<u64> = store
        .events_of_connection(&mine, EventPage::newest(10_000))
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    expected.reverse();
    assert_eq!(
        seen, expected,
        "every event of the connection, newest first, once"
    );
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(store.unreadable().is_empty(), "{:?}", store.unreadable());
}

#[tokio::test]
async fn erasing_a_pen_name_whose_event_references_cannot_be_read_leaves_none_of_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let sled = open(dir.path(), &MasterKey::generate());
    let store: &dyn Store = &sled;
    let gone = key("gone", Platform::X);
    let kept = key("kept", Platform::X);
    for i in 0..5 {
        let mut b = Batch::new();
        for k in [&gone, &kept] {
            b.event(Event::new(
                Timestamp::from_unix_millis(i),
                k.clone(),
                EventKind::GrantRenewed,
            ));
        }
        store.commit(b, Durability::Durable).await.unwrap();
    }
    sled.raw_insert_for_tests(
        "events_by_connection",
        &event_refs_head_key(&gone),
        UNREADABLE,
    )
    .unwrap();

    let erased = store.erase_pen_name(&gone.pen_name).await.unwrap();
    assert_eq!(erased.events, 5);
    let left = store.events_after(0, 100).await.unwrap();
    assert_eq!(left.len(), 5);
    assert!(left.iter().all(|e| e.connection == kept), "{left:?}");
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
