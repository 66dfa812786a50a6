//! Opening data directories written by earlier releases, with nothing lost.
//!
//! `tests/fixtures/format1-*/data` are data directories written by the binaries of the
//! commits in their names (see each `HOW.md`); `manifest.json` beside each is every record
//! they hold, dumped by that same commit's code. Each test copies a fixture, opens it with
//! this build (which upgrades it), and compares every record with the manifest.
//!
//! - `format1-178a3f8`: the last format-1 release, whose posts carry `waiting`.
//! - `format1-4802bb2`: the commit before 1b8d4ad, whose posts lack `waiting` — the
//!   directory 178a3f8 itself could not read.
//!
//! `tests/fixtures/format2-220b761` is a store-format-2 directory written by `SledStore` of
//! 220b761 (its `HOW.md`, and the generator beside it): connections as record version 2
//! stored them, before the account picture and the chosen targets.
//!
//! The fixtures' master keys are test-only keys that guard nothing but these fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use social_studio_storage::*;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    key: MasterKey,
    manifest: Value,
}

fn fixture(name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&fixture_dir(name).join("data"), &data);
    let key = MasterKey::from_base64(
        &std::fs::read_to_string(data.join("master.key")).expect("the fixture's test key"),
    )
    .unwrap();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir(name).join("manifest.json")).unwrap(),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        data,
        key,
        manifest,
    }
}

fn open(f: &Fixture) -> SledStore {
    SledStore::open_with_key(&StoreConfig::new(&f.data), &f.key, KeySource::Provided)
        .unwrap_or_else(|e| panic!("the fixture does not open: {e}"))
}

fn list<'a>(m: &'a Value, field: &str) -> &'a Vec<Value> {
    m[field]
        .as_array()
        .unwrap_or_else(|| panic!("manifest has no {field}"))
}

/// A format-1 post in the manifest, read as today's `Post` (the earliest fixture's posts
/// have no `waiting`: they were never waiting for a reason).
fn manifest_post(v: &Value) -> Post {
    let mut v = v.clone();
    if v.get("waiting").is_none() {
        v["waiting"] = Value::Null;
    }
    serde_json::from_value(v).expect("a manifest post")
}

/// Opens the fixture and checks every record in its manifest is there, unchanged.
async fn opens_with_nothing_lost(name: &str, posts_before_waiting: usize) {
    let f = fixture(name);
    let m = &f.manifest;
    let store = open(&f);
    let opened = store.info().opened;
    assert!(
        opened.iter().any(|l| l.contains("from store format 1 to 2")
            && l.contains(&format!(
                "{} posts ({posts_before_waiting} written before",
                list(m, "posts").len()
            ))),
        "the store says what it did: {opened:?}"
    );
    assert_eq!(
        std::fs::read_to_string(f.data.join("format"))
            .unwrap()
            .trim(),
        "2"
    );
    assert!(
        f.data.join("db").is_file(),
        "the format-1 database is replaced by a file a format-1 release cannot open"
    );
    assert!(store.unreadable().is_empty(), "{:?}", store.unreadable());

    // Connections and grants.
    let all = store.all_connections().await.unwrap();
    assert!(all.unreadable.is_empty());
    assert_eq!(all.items.len(), list(m, "connections").len());
    let grants: BTreeMap<String, Grant> = list(m, "grants")
        .iter()
        .map(|g| {
            let key: ConnectionKey = serde_json::from_value(g["key"].clone()).unwrap();
            (
                key.to_string(),
                serde_json::from_value(g["grant"].clone()).unwrap(),
            )
        })
        .collect();
    for c in list(m, "connections") {
        let key: ConnectionKey = serde_json::from_value(c["key"].clone()).unwrap();
        let stored = store
            .connection(&key)
            .await
            .unwrap()
            .expect("connection kept");
        let mut as_json = serde_json::to_value(&stored).unwrap();
        let facts = as_json.as_object_mut().unwrap().remove("grant");
        // Fields of connection version 3, which format 1 never held: defaulted.
        assert_eq!(stored.account.picture, None, "{key}");
        assert_eq!(
            stored.chosen_targets,
            Connection::default_choice(&stored.targets),
            "{key}"
        );
        as_json.as_object_mut().unwrap().remove("chosen_targets");
        as_json["account"]
            .as_object_mut()
            .unwrap()
            .remove("picture");
        assert_eq!(&as_json, c, "connection {key}");
        let grant = store.grant(&key).await.unwrap().expect("grant kept");
        assert_eq!(Some(&grant), grants.get(&key.to_string()), "grant of {key}");
        assert_eq!(
            facts,
            Some(serde_json::to_value(Some(grant.facts())).unwrap()),
            "the upgrade filled in {key}'s grant facts from its sealed grant"
        );
    }

    // Posts, by id and by pen name, and the counts and queues they imply.
    let posts: Vec<Post> = list(m, "posts").iter().map(manifest_post).collect();
    let mut by_pen: BTreeMap<String, usize> = BTreeMap::new();
    for p in &posts {
        assert_eq!(
            store.post(p.id).await.unwrap().as_ref(),
            Some(p),
            "post {}",
            p.id
        );
        *by_pen.entry(p.connection.pen_name.to_string()).or_default() += 1;
    }
    for (pen, n) in &by_pen {
        let listed = store
            .posts_of_pen(&PenName::parse(pen).unwrap())
            .await
            .unwrap();
        assert_eq!(
            (listed.items.len(), listed.unreadable.len()),
            (*n, 0),
            "{pen}"
        );
    }
    let mut queued: Vec<PostId> = store
        .queued_posts()
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.id)
        .collect();
    queued.sort();
    let mut expected: Vec<PostId> = posts
        .iter()
        .filter(|p| p.state.is_queued())
        .map(|p| p.id)
        .collect();
    expected.sort();
    assert_eq!(queued, expected);
    for p in &posts {
        let counts = store.post_counts(&p.connection).await.unwrap();
        let same = posts
            .iter()
            .filter(|q| q.connection == p.connection && q.state.label() == p.state.label())
            .count();
        assert_eq!(
            counts.get(p.state.label()) as usize,
            same,
            "{} {}",
            p.connection,
            p.state.label()
        );
    }

    // Every event, in order, and the next number after the last.
    let events: Vec<Event> = list(m, "events")
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap())
        .collect();
    assert_eq!(store.events_after(0, 10_000).await.unwrap(), events);
    let last = events.last().unwrap().seq;

    // OAuth states: the used ones stay used; the pending ones still finish a connect.
    for s in list(m, "oauth_states") {
        let state = s["state"].as_str().unwrap();
        if s["used"].as_bool().unwrap() {
            assert_eq!(
                store
                    .take_oauth_state(state, Timestamp::from_unix_millis(0))
                    .await
                    .unwrap(),
                StateLookup::AlreadyUsed,
                "{state}"
            );
        }
    }
    for input in list(m, "generator_oauth_inputs") {
        if input["consumed"].as_bool().unwrap() {
            continue;
        }
        let pending: PendingAuthorization =
            serde_json::from_value(input["pending"].clone()).unwrap();
        match store
            .take_oauth_state(
                input["state"].as_str().unwrap(),
                Timestamp::from_unix_millis(0),
            )
            .await
            .unwrap()
        {
            StateLookup::Taken(p) => assert_eq!(p, pending),
            other => panic!("a pending state came back as {other:?}"),
        }
    }
    for r in list(m, "idempotency") {
        let pen = PenName::parse(r["pen_name"].as_str().unwrap()).unwrap();
        let record: IdempotentRequest = serde_json::from_value(r["record"].clone()).unwrap();
        assert_eq!(
            store
                .idempotent_result(&pen, r["key"].as_str().unwrap())
                .await
                .unwrap(),
            Some(record)
        );
    }
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (
            report.connections,
            report.grants,
            report.posts,
            report.events
        ),
        (
            list(m, "connections").len(),
            list(m, "grants").len(),
            posts.len(),
            events.len()
        )
    );

    // The upgraded store takes writes, numbers on from the last event, and reopens as is.
    let k = posts[0].connection.clone();
    let mut b = Batch::new();
    b.event(Event::new(
        Timestamp::from_unix_millis(1),
        k,
        EventKind::GrantRenewed,
    ));
    let e = store.commit(b, Durability::Durable).await.unwrap().events;
    assert_eq!(e[0].seq, last + 1);
    drop(store);
    let again = open(&f);
    assert!(
        again.info().opened.is_empty(),
        "a second open has nothing to do: {:?}",
        again.info().opened
    );
    assert_eq!(
        again.events_after(0, 10_000).await.unwrap().len(),
        events.len() + 1
    );
}

#[tokio::test]
async fn the_last_format_1_release_opens_with_nothing_lost() {
    opens_with_nothing_lost("format1-178a3f8", 0).await;
}

#[tokio::test]
async fn a_directory_from_before_posts_said_why_they_wait_opens_with_nothing_lost() {
    let posts = list(&fixture("format1-4802bb2").manifest, "posts").len();
    opens_with_nothing_lost("format1-4802bb2", posts).await;
}

#[tokio::test]
async fn an_upgrade_cut_off_at_any_step_is_redone_or_finished() {
    let f = fixture("format1-4802bb2");
    let pristine = tempfile::tempdir().unwrap();
    copy_dir(&f.data, pristine.path());

    // 1. Cut off while building: a half-built directory beside the old database.
    std::fs::create_dir_all(f.data.join("sled-migrating/leftover")).unwrap();
    std::fs::write(f.data.join("sled-migrating/db"), b"half a database").unwrap();
    let store = open(&f);
    assert!(store.unreadable().is_empty());
    let posts = store.queued_posts().await.unwrap().items.len();
    drop(store);

    // 2. Cut off after the switch-over but before `format` was written: the old database
    // is back beside the new one, and the upgrade is done again from it.
    std::fs::remove_file(f.data.join("format")).unwrap();
    std::fs::remove_file(f.data.join("db")).unwrap();
    copy_dir(&pristine.path().join("db"), &f.data.join("db"));
    let store = open(&f);
    assert_eq!(store.queued_posts().await.unwrap().items.len(), posts);
    assert!(store.info().opened.iter().any(|l| l.contains("upgraded")));
    drop(store);

    // 3. Cut off after `format` but before the old database was removed.
    std::fs::remove_file(f.data.join("db")).unwrap();
    copy_dir(&pristine.path().join("db"), &f.data.join("db"));
    let store = open(&f);
    assert!(
        store
            .info()
            .opened
            .iter()
            .any(|l| l.contains("removed the format-1 database")),
        "{:?}",
        store.info().opened
    );
    assert!(f.data.join("db").is_file());
    assert_eq!(store.queued_posts().await.unwrap().items.len(), posts);
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn a_format_1_record_that_cannot_be_read_is_kept_and_named_not_dropped() {
    let f = fixture("format1-178a3f8");
    let posts = list(&f.manifest, "posts").len();
    let victim = manifest_post(&list(&f.manifest, "posts")[0]);
    {
        // Corrupt one post in the old database, as a torn write or a bad disk would.
        let old = sled::open(f.data.join("db")).unwrap();
        let tree = old.open_tree("posts").unwrap();
        tree.insert(victim.id.as_bytes(), &[1u8, 0xde, 0xad][..])
            .unwrap();
        old.flush().unwrap();
    }
    let store = open(&f);
    assert!(store
        .info()
        .opened
        .iter()
        .any(|l| l.contains("1 format-1 records could not be read")));
    let named = store.unreadable();
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].post, Some(victim.id));
    assert_eq!(named[0].connection.as_ref(), Some(&victim.connection));
    assert!(store.post(victim.id).await.unwrap().is_none());
    // Every other post of its pen name is there.
    let of_pen = list(&f.manifest, "posts")
        .iter()
        .map(manifest_post)
        .filter(|p| p.connection.pen_name == victim.connection.pen_name)
        .count();
    let listed = store
        .posts_of_pen(&victim.connection.pen_name)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), of_pen - 1);
    assert!(listed.items.iter().all(|p| p.id != victim.id));
    assert_eq!(store.check_integrity().await.unwrap().posts, posts - 1);
    drop(store);
    // Still named after a restart: the quarantine keeps it.
    let store = open(&f);
    assert_eq!(store.unreadable().len(), 1);
    // Erasing the pen name that owned it erases it too.
    store
        .erase_pen_name(&victim.connection.pen_name)
        .await
        .unwrap();
    assert!(store.unreadable().is_empty());
}

#[tokio::test]
async fn connections_from_before_pictures_and_chosen_targets_open_with_nothing_lost() {
    let f = fixture("format2-220b761");
    let m = &f.manifest;
    let store = open(&f);
    assert!(store.unreadable().is_empty(), "{:?}", store.unreadable());

    let all = store.all_connections().await.unwrap();
    assert!(all.unreadable.is_empty());
    assert_eq!(all.items.len(), list(m, "connections").len());
    let mut chosen = BTreeMap::new();
    for c in list(m, "connections") {
        let key: ConnectionKey = serde_json::from_value(c["key"].clone()).unwrap();
        let stored = store
            .connection(&key)
            .await
            .unwrap()
            .expect("connection kept");
        assert_eq!(
            stored.account.picture, None,
            "{key}: no picture was read then"
        );
        chosen.insert(key.to_string(), stored.chosen_targets.clone());
        // Everything the old record held is there, unchanged.
        let mut as_json = serde_json::to_value(&stored).unwrap();
        let object = as_json.as_object_mut().unwrap();
        object.remove("chosen_targets");
        object["account"].as_object_mut().unwrap().remove("picture");
        assert_eq!(&as_json, c, "connection {key}");
    }
    // The choice is where a post naming no target went: the account itself where it is
    // a target, none where every target is inside the account.
    let want = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(chosen["ada/facebook"], want(&[]));
    assert_eq!(chosen["ada/pinterest"], want(&[]));
    assert_eq!(chosen["ada/linkedin"], want(&["urn:li:person:ada"]));
    assert_eq!(chosen["ada/x"], want(&["x-ada"]));
    assert_eq!(chosen["bea/bluesky"], want(&["did:plc:bea"]));

    for g in list(m, "grants") {
        let key: ConnectionKey = serde_json::from_value(g["key"].clone()).unwrap();
        let grant: Grant = serde_json::from_value(g["grant"].clone()).unwrap();
        assert_eq!(
            store.grant(&key).await.unwrap(),
            Some(grant),
            "grant of {key}"
        );
    }
    for p in list(m, "posts") {
        let p: Post = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(
            store.post(p.id).await.unwrap(),
            Some(p.clone()),
            "post {}",
            p.id
        );
    }
    let events: Vec<Event> = list(m, "events")
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap())
        .collect();
    assert_eq!(store.events_after(0, 10_000).await.unwrap(), events);
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // The upgraded record takes the new fields, and a reopen reads them back.
    let key: ConnectionKey =
        serde_json::from_value(list(m, "connections")[1]["key"].clone()).unwrap();
    let mut c = store.connection(&key).await.unwrap().unwrap();
    c.chosen_targets = vec!["board-2".into(), "board-3".into()];
    c.account.picture = Some("https://example.com/ada.jpg".into());
    let mut b = Batch::new();
    b.put_connection(&c).event(
        Event::new(
            Timestamp::from_unix_millis(1),
            key.clone(),
            EventKind::TargetsChosen,
        )
        .detail("board-2,board-3"),
    );
    store.commit(b, Durability::Durable).await.unwrap();
    drop(store);
    let again = open(&f);
    assert_eq!(again.connection(&key).await.unwrap(), Some(c));
    let after = again.events_after(0, 10_000).await.unwrap();
    assert_eq!(after.len(), events.len() + 1);
    assert_eq!(after.last().unwrap().kind, EventKind::TargetsChosen);
}
