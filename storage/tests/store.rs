//! The store through its public API, on real sled on disk.

use std::path::Path;
use std::time::Duration;

use social_studio_storage::fixtures::{connection, grant, key, post};
use social_studio_storage::vault::VaultError;
use social_studio_storage::*;

fn open(dir: &Path, key: &MasterKey) -> Store {
    Store::open_with_key(&StoreConfig::new(dir), key, KeySource::Provided).expect("open store")
}

fn every_kind_of_record(store: &Store) -> (ConnectionKey, Vec<Post>, Vec<Event>) {
    let k = key("jane", Platform::Facebook);
    let mut c = connection(&k);
    c.status = ConnectionStatus::Expired(Reason::with_platform_message(
        ReasonCode::PasswordChanged,
        "The session has been invalidated because the user changed their password",
    ));
    c.targets.push(Target {
        kind: TargetKind::Page,
        id: "1234".into(),
        name: "Jane's Books".into(),
    });
    c.refresh_in_flight = Some(RefreshInFlight {
        started_at: Timestamp::from_unix_millis(5),
        token_fingerprint: fingerprint("r1"),
    });
    let mut g = grant("access-1", Some("refresh-1"));
    g.target_tokens.push(TargetToken {
        target_id: "1234".into(),
        token: Secret::new("page-token"),
        expires_at: None,
    });
    g.endpoint = Some("https://pds.example".into());
    let mut posts = Vec::new();
    let states = [
        PostState::Scheduled,
        PostState::Paused(Reason::new(ReasonCode::ConnectionNotActive)),
        PostState::Publishing,
        PostState::Published(Receipt {
            platform_post_id: "1_2".into(),
            url: Some("https://fb/1_2".into()),
        }),
        PostState::Failed(Reason::with_platform_message(
            ReasonCode::ContentRejected,
            "duplicate",
        )),
        PostState::Unconfirmed,
        PostState::Held(Reason::new(ReasonCode::TooLate)),
        PostState::Cancelled,
    ];
    let mut batch = Batch::new();
    batch.put_connection(&c).put_grant(&k, &g);
    for (i, s) in states.into_iter().enumerate() {
        let mut p = post(&k, i as u64);
        p.state = s;
        p.group_id = Some(PostId::new());
        p.target = Some("1234".into());
        p.kind = PostKind::ALL[i % PostKind::ALL.len()];
        p.next_attempt_at = (i % 2 == 0).then(|| Timestamp::from_unix_millis(1_900_000_000_000));
        p.content.title = Some(format!("title {i}"));
        p.content.media.push(Media {
            url: "https://v".into(),
            kind: MediaKind::Video,
            alt: None,
        });
        batch.put_post(&p);
        batch.event(
            Event::new(
                Timestamp::from_unix_millis(i as i64),
                k.clone(),
                EventKind::PostState,
            )
            .post(p.id)
            .transition(Some(StateLabel::Scheduled), Some(p.state.label()))
            .reason(p.state.reason().cloned()),
        );
        posts.push(p);
    }
    batch.event(
        Event::new(
            Timestamp::from_unix_millis(99),
            k.clone(),
            EventKind::ExpiringSoon,
        )
        .transition(Some(StateLabel::Active), Some(StateLabel::Active))
        .detail("lapses 2026-12-05"),
    );
    let events = store.commit_blocking(batch, Durability::Durable).unwrap();
    (k, posts, events)
}

#[test]
fn every_record_type_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    let (k, posts, events) = {
        let store = open(dir.path(), &mk);
        every_kind_of_record(&store)
    };
    assert_eq!(events.len(), posts.len() + 1);
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequence numbers increase"
    );

    let store = open(dir.path(), &mk);
    let c = store.connection(&k).unwrap().expect("connection survives");
    assert_eq!(c.status.reason().unwrap().code, ReasonCode::PasswordChanged);
    assert_eq!(c.targets.len(), 2);
    assert!(c.refresh_in_flight.is_some());
    let g = store.grant(&k).unwrap().expect("grant survives");
    assert_eq!(g.access_token.expose(), "access-1");
    assert_eq!(g.refresh_token.as_ref().unwrap().expose(), "refresh-1");
    assert_eq!(g.target_tokens[0].token.expose(), "page-token");
    assert_eq!(g, grant_with_extras());
    for p in &posts {
        assert_eq!(store.post(p.id).unwrap().as_ref(), Some(p));
    }
    for e in &events {
        assert_eq!(store.event(e.seq).unwrap().as_ref(), Some(e));
    }
    assert_eq!(
        store.posts_of_connection(&k, None).unwrap().len(),
        posts.len()
    );
    let report = store.check_integrity().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.posts, report.events), (8, 9));

    fn grant_with_extras() -> Grant {
        let mut g = grant("access-1", Some("refresh-1"));
        g.target_tokens.push(TargetToken {
            target_id: "1234".into(),
            token: Secret::new("page-token"),
            expires_at: None,
        });
        g.endpoint = Some("https://pds.example".into());
        g
    }
}

#[test]
fn queries_by_state_due_time_and_event_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let (k, posts, _) = every_kind_of_record(&store);

    let paused = store
        .posts_of_connection(&k, Some(StateLabel::Paused))
        .unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].id, posts[1].id);
    assert!(store
        .posts_of_connection(&k, Some(StateLabel::Active))
        .unwrap()
        .is_empty());

    // Due index: Scheduled, Paused and Publishing only, in ready order, this platform only.
    let other = key("jane", Platform::X);
    let mut b = Batch::new();
    b.put_post(&post(&other, 0));
    store.commit_blocking(b, Durability::Buffered).unwrap();
    let far = Timestamp::from_unix_millis(i64::MAX);
    let due = store.due_posts(Platform::Facebook, far).unwrap();
    let ids: Vec<_> = due.iter().map(|p| p.id).collect();
    // posts[1] (paused, no retry time) is ready first; 0 and 2 wait for next_attempt_at.
    assert_eq!(ids, vec![posts[1].id, posts[0].id, posts[2].id]);
    assert!(due.windows(2).all(|w| w[0].ready_at() <= w[1].ready_at()));
    let early = store
        .due_posts(Platform::Facebook, posts[1].due_at)
        .unwrap();
    assert!(early.is_empty(), "before is exclusive");

    // Moving a post to Published takes it out of the due index and changes its state index.
    let mut p = posts[1].clone();
    p.state = PostState::Published(Receipt {
        platform_post_id: "9".into(),
        url: None,
    });
    let mut b = Batch::new();
    b.put_post(&p);
    store.commit_blocking(b, Durability::Buffered).unwrap();
    assert_eq!(store.due_posts(Platform::Facebook, far).unwrap().len(), 2);
    assert!(store
        .posts_of_connection(&k, Some(StateLabel::Paused))
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .posts_of_connection(&k, Some(StateLabel::Published))
            .unwrap()
            .len(),
        2
    );

    // Events newest first, paged.
    let page1 = store
        .events_of_connection(&k, EventPage::newest(4))
        .unwrap();
    assert_eq!(page1.len(), 4);
    assert_eq!(page1[0].kind, EventKind::ExpiringSoon);
    let page2 = store
        .events_of_connection(
            &k,
            EventPage {
                before: Some(page1[3].seq),
                limit: 100,
            },
        )
        .unwrap();
    assert_eq!(page2.len(), 5);
    assert!(page1
        .iter()
        .chain(&page2)
        .collect::<Vec<_>>()
        .windows(2)
        .all(|w| w[0].seq > w[1].seq));
    let of_post = store
        .events_of_post(&k.pen_name, posts[3].id, EventPage::newest(10))
        .unwrap();
    assert_eq!(of_post.len(), 1);
    assert_eq!(of_post[0].to, Some(StateLabel::Published));
    let replay = store.events_after(page1[1].seq, 100).unwrap();
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].seq, page1[0].seq);
    assert!(store.check_integrity().unwrap().problems.is_empty());
}

#[test]
fn tokens_never_reach_the_disk_in_plain_text() {
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
            },
        );
        store.commit_blocking(b, Durability::Durable).unwrap();
        // Rotate a few times so older versions of the grant also pass through sled's log.
        for i in 0..5 {
            let mut b = Batch::new();
            b.put_grant(
                &k,
                &grant(&format!("{access}-{i}"), Some(&format!("{refresh}-{i}"))),
            );
            store.commit_blocking(b, Durability::Durable).unwrap();
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
    let g = store.grant(&k).unwrap().unwrap();
    assert_eq!(g.access_token.expose(), format!("{access}-4"));
    assert_eq!(g.refresh_token.unwrap().expose(), format!("{refresh}-4"));
    match store
        .take_oauth_state("state-1", Timestamp::from_unix_millis(1))
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
fn two_pen_names_on_one_platform_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    // "jane" is a prefix of "jane2": the separator must keep them apart.
    let a = key("jane", Platform::X);
    let b = key("jane2", Platform::X);
    let mut batch = Batch::new();
    for (k, tok) in [(&a, "tok-a"), (&b, "tok-b")] {
        batch
            .put_connection(&connection(k))
            .put_grant(k, &grant(tok, None));
        for i in 0..3 {
            let p = post(k, i);
            batch.put_post(&p);
            batch.event(
                Event::new(
                    Timestamp::from_unix_millis(1),
                    k.clone(),
                    EventKind::PostState,
                )
                .post(p.id),
            );
        }
        batch.event(Event::new(
            Timestamp::from_unix_millis(1),
            k.clone(),
            EventKind::ConnectionStatus,
        ));
    }
    store.commit_blocking(batch, Durability::Buffered).unwrap();

    for (mine, theirs, tok) in [(&a, &b, "tok-a"), (&b, &a, "tok-b")] {
        let conns = store.connections_of(&mine.pen_name).unwrap();
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].key, *mine);
        assert_eq!(
            store.grant(mine).unwrap().unwrap().access_token.expose(),
            tok
        );
        let posts = store.posts_of_pen(&mine.pen_name).unwrap();
        assert_eq!(posts.len(), 3);
        assert!(posts.iter().all(|p| p.connection == *mine));
        assert!(store
            .posts_of_connection(mine, None)
            .unwrap()
            .iter()
            .all(|p| p.connection == *mine));
        let events = store
            .events_of_connection(mine, EventPage::newest(100))
            .unwrap();
        assert_eq!(events.len(), 4);
        assert!(events.iter().all(|e| e.connection == *mine));
        // A post id of the other pen name is not found through this pen name's events.
        let their_post = store.posts_of_pen(&theirs.pen_name).unwrap()[0].id;
        assert!(store
            .events_of_post(&mine.pen_name, their_post, EventPage::newest(10))
            .unwrap()
            .is_empty());
    }
    // A grant sealed for one connection does not open under another's key.
    let sealed = store
        .raw_get_for_tests("grants", &a.storage_key())
        .unwrap()
        .unwrap();
    store
        .raw_insert_for_tests("grants", &b.storage_key(), &sealed)
        .unwrap();
    assert!(matches!(
        store.grant(&b),
        Err(StoreError::Vault(VaultError::Unopenable { .. }))
    ));
    assert_eq!(
        store.grant(&a).unwrap().unwrap().access_token.expose(),
        "tok-a"
    );
}

#[test]
fn a_corrupt_record_is_a_typed_error_and_the_rest_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let k = key("jane", Platform::Pinterest);
    let good = post(&k, 1);
    let bad = post(&k, 2);
    let mut b = Batch::new();
    b.put_connection(&connection(&k))
        .put_post(&good)
        .put_post(&bad);
    store.commit_blocking(b, Durability::Durable).unwrap();

    // Flip the version byte of one post, and write garbage over one connection.
    let mut raw = store
        .raw_get_for_tests("posts", bad.id.as_bytes())
        .unwrap()
        .unwrap();
    raw[0] = 77;
    store
        .raw_insert_for_tests("posts", bad.id.as_bytes(), &raw)
        .unwrap();
    let broken = key("john", Platform::Pinterest);
    store
        .raw_insert_for_tests("connections", &broken.storage_key(), &[1, 0xff, 0xff, 0xff])
        .unwrap();

    match store.post(bad.id) {
        Err(StoreError::Codec(e)) => {
            assert_eq!(e.tree, "posts");
            assert_eq!(e.problem, CodecProblem::UnknownVersion(77));
            let text = e.to_string();
            assert!(
                text.contains("posts") && text.contains("version 77"),
                "{text}"
            );
        }
        other => panic!("expected a codec error, got {other:?}"),
    }
    match store.connection(&broken) {
        Err(StoreError::Codec(e)) => {
            assert_eq!(e.tree, "connections");
            assert!(e.key.to_string().contains("john"), "{}", e.key);
        }
        other => panic!("expected a codec error, got {other:?}"),
    }
    // The rest reads fine; a boot scan reports the bad record without hiding the good ones.
    assert_eq!(store.post(good.id).unwrap().unwrap(), good);
    assert_eq!(store.connection(&k).unwrap().unwrap().key, k);
    let all = store.all_connections().unwrap();
    assert_eq!(all.items.len(), 1);
    assert_eq!(all.unreadable.len(), 1);
    let queued = store.queued_posts().unwrap();
    assert_eq!(queued.items.len(), 1);
    assert_eq!(queued.unreadable.len(), 1);
    // The store still takes writes, including over the corrupt record.
    let mut b = Batch::new();
    b.put_post(&bad);
    store.commit_blocking(b, Durability::Durable).unwrap();
    assert_eq!(store.post(bad.id).unwrap().unwrap(), bad);
    let report = store.check_integrity().unwrap();
    assert_eq!(
        report.problems.len(),
        1,
        "only the garbage connection remains: {:?}",
        report.problems
    );
}

#[test]
fn a_wrong_master_key_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let right = MasterKey::generate();
    let k = key("jane", Platform::Youtube);
    {
        let store = open(dir.path(), &right);
        let mut b = Batch::new();
        b.put_connection(&connection(&k))
            .put_grant(&k, &grant("yt-access", Some("yt-refresh")));
        store.commit_blocking(b, Durability::Durable).unwrap();
    }
    let wrong = MasterKey::generate();
    match Store::open_with_key(&StoreConfig::new(dir.path()), &wrong, KeySource::Provided) {
        Err(StoreError::Vault(VaultError::WrongMasterKey)) => {}
        Err(other) => panic!("expected WrongMasterKey, got {other}"),
        Ok(_) => panic!("a wrong key opened the store"),
    }
    // The right key still opens everything.
    let store = open(dir.path(), &right);
    assert_eq!(
        store.grant(&k).unwrap().unwrap().access_token.expose(),
        "yt-access"
    );
    assert!(store.check_integrity().unwrap().problems.is_empty());
}

#[test]
fn master_key_comes_from_the_environment_or_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path());
    // No environment key in the test environment: a key file is created beside the data.
    if std::env::var(vault::MASTER_KEY_ENV).is_err() {
        let store = Store::open(&config).unwrap();
        assert!(matches!(
            store.key_source(),
            KeySource::File { created: true, .. }
        ));
        drop(store);
        let store = Store::open(&config).unwrap();
        assert!(matches!(
            store.key_source(),
            KeySource::File { created: false, .. }
        ));
    }
}

#[test]
fn oauth_states_are_single_use_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let pending = |expires: i64| PendingAuthorization {
        connection: key("jane", Platform::X),
        pkce_verifier: Some(Secret::new("v")),
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(expires),
        replace: false,
    };
    let mut b = Batch::new();
    b.put_oauth_state("fresh", &pending(600_000))
        .put_oauth_state("stale", &pending(1_000));
    store.commit_blocking(b, Durability::Durable).unwrap();
    let now = Timestamp::from_unix_millis(2_000);
    assert!(
        matches!(store.take_oauth_state("fresh", now).unwrap(), StateLookup::Taken(p) if p == pending(600_000))
    );
    assert_eq!(
        store.take_oauth_state("fresh", now).unwrap(),
        StateLookup::AlreadyUsed
    );
    assert_eq!(
        store.take_oauth_state("stale", now).unwrap(),
        StateLookup::Expired
    );
    assert_eq!(
        store.take_oauth_state("forged", now).unwrap(),
        StateLookup::Unknown
    );
    let later = Timestamp::from_unix_millis(600_000 + 3_600_000);
    assert_eq!(
        store
            .purge_oauth_states(later, Duration::from_secs(3600))
            .unwrap(),
        2
    );
    assert_eq!(
        store.take_oauth_state("fresh", later).unwrap(),
        StateLookup::Unknown
    );
}

#[test]
fn deleting_a_connection_and_its_posts_leaves_no_index_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let k = key("jane", Platform::Threads);
    let p = post(&k, 0);
    let mut b = Batch::new();
    b.put_connection(&connection(&k))
        .put_grant(&k, &grant("t", None))
        .put_post(&p);
    store.commit_blocking(b, Durability::Buffered).unwrap();
    let mut b = Batch::new();
    b.delete_connection(&k).delete_grant(&k).delete_post(p.id);
    store.commit_blocking(b, Durability::Buffered).unwrap();
    assert!(store.connection(&k).unwrap().is_none());
    assert!(store.grant(&k).unwrap().is_none());
    assert!(store.post(p.id).unwrap().is_none());
    assert!(store
        .due_posts(Platform::Threads, Timestamp::from_unix_millis(i64::MAX))
        .unwrap()
        .is_empty());
    assert!(store.posts_of_pen(&k.pen_name).unwrap().is_empty());
    assert!(store.check_integrity().unwrap().problems.is_empty());
}

#[tokio::test]
async fn erasing_a_pen_name_removes_everything_it_owns_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let gone = key("gone", Platform::X);
    let kept = key("gone2", Platform::X);
    let mut b = Batch::new();
    for k in [&gone, &kept] {
        let p = post(k, 1);
        b.put_connection(&connection(k))
            .put_grant(k, &grant("t", Some("r")))
            .put_post(&p)
            .event(
                Event::new(
                    Timestamp::from_unix_millis(1),
                    k.clone(),
                    EventKind::PostState,
                )
                .post(p.id),
            );
    }
    store.commit(b, Durability::Durable).await.unwrap();
    let record = IdempotentRequest {
        request_digest: [1; 8],
        posts: vec![],
        created_at: Timestamp::from_unix_millis(1),
    };
    store
        .remember_idempotent(&gone.pen_name, "req-1", &record)
        .await
        .unwrap();
    // A second request with the same key gets the first record back.
    let other = IdempotentRequest {
        request_digest: [2; 8],
        ..record.clone()
    };
    assert_eq!(
        store
            .remember_idempotent(&gone.pen_name, "req-1", &other)
            .await
            .unwrap(),
        record
    );

    let erased = store.erase_pen_name(&gone.pen_name).await.unwrap();
    assert_eq!((erased.connections, erased.posts, erased.events), (1, 1, 1));
    assert!(store.connections_of(&gone.pen_name).unwrap().is_empty());
    assert!(store.grant(&gone).unwrap().is_none());
    assert!(store.posts_of_pen(&gone.pen_name).unwrap().is_empty());
    assert!(store
        .events_of_connection(&gone, EventPage::newest(10))
        .unwrap()
        .is_empty());
    assert!(store
        .idempotent_result(&gone.pen_name, "req-1")
        .unwrap()
        .is_none());
    // The pen name whose id starts the same way is untouched.
    assert_eq!(store.connections_of(&kept.pen_name).unwrap().len(), 1);
    assert_eq!(store.posts_of_pen(&kept.pen_name).unwrap().len(), 1);
    assert_eq!(
        store
            .events_of_connection(&kept, EventPage::newest(10))
            .unwrap()
            .len(),
        1
    );
    assert!(store.check_integrity().unwrap().problems.is_empty());
}
