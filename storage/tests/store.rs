//! The store through its port, on real sled on disk. Every test talks to `&dyn Store`;
//! only opening, reopening and corrupting bytes on purpose use the sled backend directly.

use std::path::Path;
use std::time::Duration;

use social_studio_storage::fixtures::{connection, grant, key, post};
use social_studio_storage::vault::VaultError;
use social_studio_storage::*;

#[path = "support/reopen.rs"]
mod reopen;
use reopen::open;

fn states() -> Vec<PostState> {
    vec![
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
    ]
}

async fn every_kind_of_record(store: &dyn Store) -> (ConnectionKey, Vec<Post>, Vec<Event>) {
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
    let g = grant_with_extras();
    c.grant = Some(g.facts());
    let mut posts = Vec::new();
    let mut batch = Batch::new();
    batch.put_connection(&c).put_grant(&k, &g);
    for (i, s) in states().into_iter().enumerate() {
        let mut p = post(&k, i as u64);
        p.state = s;
        p.group_id = Some(PostId::new());
        p.target = Some("1234".into());
        p.kind = PostKind::ALL[i % PostKind::ALL.len()];
        p.next_attempt_at = (i % 2 == 0).then(|| Timestamp::from_unix_millis(1_900_000_000_000));
        p.waiting = (i == 0).then(|| Reason::new(ReasonCode::RateLimited));
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
    let events = store
        .commit(batch, Durability::Durable)
        .await
        .unwrap()
        .events;
    (k, posts, events)
}

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

#[tokio::test]
async fn every_record_type_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    let (k, posts, events) = {
        let store = open(dir.path(), &mk);
        every_kind_of_record(&store).await
    };
    assert_eq!(events.len(), posts.len() + 1);
    assert!(
        events.windows(2).all(|w| w[0].seq + 1 == w[1].seq),
        "one commit's events are numbered in order"
    );

    let store = open(dir.path(), &mk);
    let c = store
        .connection(&k)
        .await
        .unwrap()
        .expect("connection survives");
    assert_eq!(c.status.reason().unwrap().code, ReasonCode::PasswordChanged);
    assert_eq!(c.targets.len(), 2);
    assert!(c.refresh_in_flight.is_some());
    assert_eq!(c.grant, Some(grant_with_extras().facts()));
    let g = store.grant(&k).await.unwrap().expect("grant survives");
    assert_eq!(g, grant_with_extras());
    for p in &posts {
        assert_eq!(store.post(p.id).await.unwrap().as_ref(), Some(p));
    }
    for e in &events {
        assert_eq!(store.event(e.seq).await.unwrap().as_ref(), Some(e));
    }
    assert_eq!(
        store.posts_of_connection(&k).await.unwrap().items.len(),
        posts.len()
    );
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.posts, report.events), (8, 9));
    // The numbers go on after a reopen, never back.
    let mut b = Batch::new();
    b.event(Event::new(
        Timestamp::from_unix_millis(1),
        k.clone(),
        EventKind::GrantRenewed,
    ));
    let next = store.commit(b, Durability::Durable).await.unwrap().events;
    assert_eq!(next[0].seq, events.last().unwrap().seq + 1);
}

#[tokio::test]
async fn counts_follow_every_transition_and_queued_posts_are_exactly_the_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let (k, posts, _) = every_kind_of_record(&store).await;
    let counts = store.post_counts(&k).await.unwrap();
    for label in StateLabel::POST {
        assert_eq!(counts.get(label), 1, "{label}");
    }
    let queued = store.queued_posts().await.unwrap();
    let mut ids: Vec<_> = queued.items.iter().map(|s| s.id).collect();
    ids.sort();
    let mut expected: Vec<_> = posts[..3].iter().map(|p| p.id).collect();
    expected.sort();
    assert_eq!(ids, expected, "Scheduled, Paused and Publishing only");

    // Scheduled → Publishing → Published, and a Failed post retried to Scheduled.
    let mut p = posts[0].clone();
    for state in [
        PostState::Publishing,
        PostState::Published(Receipt {
            platform_post_id: "9".into(),
            url: None,
        }),
    ] {
        p.state = state;
        let mut b = Batch::new();
        b.put_post_status(&p);
        store.commit(b, Durability::Buffered).await.unwrap();
    }
    let mut retried = posts[4].clone();
    retried.state = PostState::Scheduled;
    let mut b = Batch::new();
    b.put_post_status(&retried);
    store.commit(b, Durability::Buffered).await.unwrap();
    let counts = store.post_counts(&k).await.unwrap();
    assert_eq!(
        (
            counts.scheduled,
            counts.publishing,
            counts.published,
            counts.failed
        ),
        (1, 1, 2, 0)
    );
    assert_eq!(counts.total(), 8);
    assert_eq!(store.post(p.id).await.unwrap().unwrap(), p);
    let queued: Vec<_> = store
        .queued_posts()
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(!queued.contains(&p.id) && queued.contains(&retried.id));
    // Another connection's counts are its own.
    assert_eq!(
        store
            .post_counts(&key("jane", Platform::X))
            .await
            .unwrap()
            .total(),
        0
    );
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn event_pages_and_the_events_of_one_post() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let (k, posts, _) = every_kind_of_record(&store).await;
    let page1 = store
        .events_of_connection(&k, EventPage::newest(4))
        .await
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
        .await
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
        .await
        .unwrap();
    assert_eq!(of_post.len(), 1);
    assert_eq!(of_post[0].to, Some(StateLabel::Published));
    let replay = store.events_after(page1[1].seq, 100).await.unwrap();
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].seq, page1[0].seq);
}

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

#[tokio::test]
async fn two_pen_names_on_one_platform_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let sled = open(dir.path(), &MasterKey::generate());
    let store: &dyn Store = &sled;
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
    store.commit(batch, Durability::Buffered).await.unwrap();

    for (mine, theirs, tok) in [(&a, &b, "tok-a"), (&b, &a, "tok-b")] {
        let conns = store.connections_of(&mine.pen_name).await.unwrap().items;
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].key, *mine);
        assert_eq!(
            store
                .grant(mine)
                .await
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            tok
        );
        let posts = store.posts_of_pen(&mine.pen_name).await.unwrap().items;
        assert_eq!(posts.len(), 3);
        assert!(posts.iter().all(|p| p.connection == *mine));
        assert_eq!(store.post_counts(mine).await.unwrap().scheduled, 3);
        let events = store
            .events_of_connection(mine, EventPage::newest(100))
            .await
            .unwrap();
        assert_eq!(events.len(), 4);
        assert!(events.iter().all(|e| e.connection == *mine));
        // A post id of the other pen name is not found through this pen name's events.
        let their_post = store.posts_of_pen(&theirs.pen_name).await.unwrap().items[0].id;
        assert!(store
            .events_of_post(&mine.pen_name, their_post, EventPage::newest(10))
            .await
            .unwrap()
            .is_empty());
    }
    // A grant sealed for one connection does not open under another's key.
    let sealed = sled
        .raw_get_for_tests("grants", &a.storage_key())
        .unwrap()
        .unwrap();
    sled.raw_insert_for_tests("grants", &b.storage_key(), &sealed)
        .unwrap();
    assert!(matches!(
        store.grant(&b).await,
        Err(StoreError::Vault(VaultError::Unopenable { .. }))
    ));
    assert_eq!(
        store
            .grant(&a)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "tok-a"
    );
}

#[tokio::test]
async fn an_unreadable_record_is_named_everywhere_and_the_rest_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let sled = open(dir.path(), &MasterKey::generate());
    let store: &dyn Store = &sled;
    let k = key("jane", Platform::Pinterest);
    let good = post(&k, 1);
    let mut bad = post(&k, 2);
    let mut b = Batch::new();
    b.put_connection(&connection(&k))
        .put_post(&good)
        .put_post(&bad);
    store.commit(b, Durability::Durable).await.unwrap();
    assert!(store.unreadable().is_empty());

    // A status from a newer release, and garbage over one connection.
    let mut raw = sled
        .raw_get_for_tests("post_status", bad.id.as_bytes())
        .unwrap()
        .unwrap();
    raw[0] = 77;
    sled.raw_insert_for_tests("post_status", bad.id.as_bytes(), &raw)
        .unwrap();
    let broken = key("jane", Platform::X);
    sled.raw_insert_for_tests("connections", &broken.storage_key(), &[2, 0xff, 0xff, 0xff])
        .unwrap();

    match store.post(bad.id).await {
        Err(StoreError::Codec(e)) => {
            assert_eq!(e.tree, "post_status");
            assert_eq!(
                e.problem,
                CodecProblem::NewerVersion {
                    found: 77,
                    supported: 1
                }
            );
            let text = e.to_string();
            assert!(
                text.contains("version 77") && text.contains("newer"),
                "{text}"
            );
        }
        other => panic!("expected a codec error, got {other:?}"),
    }
    // The pen name's posts: the readable one, and the unreadable one named by id and
    // connection — not an error.
    let listed = store.posts_of_pen(&k.pen_name).await.unwrap();
    assert_eq!(listed.items, vec![good.clone()]);
    assert_eq!(listed.unreadable.len(), 1);
    assert_eq!(listed.unreadable[0].post, Some(bad.id));
    assert_eq!(listed.unreadable[0].connection, Some(k.clone()));
    // Every scan reports what it could not read without hiding the rest.
    let all = store.all_connections().await.unwrap();
    assert_eq!(all.items.len(), 1);
    assert_eq!(all.unreadable.len(), 1);
    assert_eq!(all.unreadable[0].connection, Some(broken.clone()));
    let queued = store.queued_posts().await.unwrap();
    assert_eq!(queued.items.len(), 1);
    assert_eq!(queued.unreadable.len(), 1);
    // And the store names both, with their owners.
    let named = store.unreadable();
    assert!(named
        .iter()
        .any(|r| r.connection.as_ref() == Some(&broken) && r.kind == "connection"));
    assert!(named
        .iter()
        .any(|r| r.post == Some(bad.id) && r.pen_name.as_ref() == Some(&k.pen_name)));
    assert_eq!(
        store.post(good.id).await.unwrap().unwrap(),
        good,
        "the rest reads fine"
    );
    // Writing over the bad record repairs it, and it is no longer named.
    bad.state = PostState::Cancelled;
    let mut b = Batch::new();
    b.put_post(&bad);
    store.commit(b, Durability::Durable).await.unwrap();
    assert_eq!(store.post(bad.id).await.unwrap().unwrap(), bad);
    assert!(!store.unreadable().iter().any(|r| r.post == Some(bad.id)));
    let report = store.check_integrity().await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.contains("jane\\x00x") || p.contains("counts")),
        "only the garbage connection (and the counts the corrupt status hid) remain: {:?}",
        report.problems
    );
}

#[tokio::test]
async fn a_wrong_master_key_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let right = MasterKey::generate();
    let k = key("jane", Platform::Youtube);
    {
        let store = open(dir.path(), &right);
        let mut b = Batch::new();
        b.put_connection(&connection(&k))
            .put_grant(&k, &grant("yt-access", Some("yt-refresh")));
        store.commit(b, Durability::Durable).await.unwrap();
    }
    let wrong = MasterKey::generate();
    match SledStore::open_with_key(&StoreConfig::new(dir.path()), &wrong, KeySource::Provided) {
        Err(StoreError::Vault(VaultError::WrongMasterKey)) => {}
        Err(other) => panic!("expected WrongMasterKey, got {other}"),
        Ok(_) => panic!("a wrong key opened the store"),
    }
    let store = open(dir.path(), &right);
    assert_eq!(
        store
            .grant(&k)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "yt-access"
    );
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
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
async fn oauth_states_are_single_use_and_expire() {
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
    store.commit(b, Durability::Durable).await.unwrap();
    let now = Timestamp::from_unix_millis(2_000);
    assert!(
        matches!(store.take_oauth_state("fresh", now).await.unwrap(), StateLookup::Taken(p) if p == pending(600_000))
    );
    assert_eq!(
        store.take_oauth_state("fresh", now).await.unwrap(),
        StateLookup::AlreadyUsed
    );
    assert_eq!(
        store.take_oauth_state("stale", now).await.unwrap(),
        StateLookup::Expired
    );
    assert_eq!(
        store.take_oauth_state("forged", now).await.unwrap(),
        StateLookup::Unknown
    );
    let later = Timestamp::from_unix_millis(600_000 + 3_600_000);
    assert_eq!(
        store
            .purge_oauth_states(later, Duration::from_secs(3600))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.take_oauth_state("fresh", later).await.unwrap(),
        StateLookup::Unknown
    );
}

#[tokio::test]
async fn a_used_state_stays_used_across_a_restart() {
    // Taking a state is a journaled write like any other: a restart that replays the
    // journal must not bring the state back to life.
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    let pending = PendingAuthorization {
        connection: key("jane", Platform::X),
        pkce_verifier: None,
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(600_000),
        replace: false,
    };
    {
        let store = open(dir.path(), &mk);
        let mut b = Batch::new();
        b.put_oauth_state("once", &pending);
        store.commit(b, Durability::Durable).await.unwrap();
        assert!(matches!(
            store
                .take_oauth_state("once", Timestamp::from_unix_millis(1))
                .await
                .unwrap(),
            StateLookup::Taken(_)
        ));
        store.sync().await.unwrap();
    }
    let store = open(dir.path(), &mk);
    assert_eq!(
        store
            .take_oauth_state("once", Timestamp::from_unix_millis(2))
            .await
            .unwrap(),
        StateLookup::AlreadyUsed
    );
}

#[tokio::test]
async fn deleting_a_connection_and_its_posts_leaves_no_index_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let k = key("jane", Platform::Threads);
    let p = post(&k, 0);
    let mut b = Batch::new();
    b.put_connection(&connection(&k))
        .put_grant(&k, &grant("t", None))
        .put_post(&p);
    store.commit(b, Durability::Buffered).await.unwrap();
    let mut b = Batch::new();
    b.delete_connection(&k).delete_grant(&k).delete_post(p.id);
    store.commit(b, Durability::Buffered).await.unwrap();
    assert!(store.connection(&k).await.unwrap().is_none());
    assert!(store.grant(&k).await.unwrap().is_none());
    assert!(store.post(p.id).await.unwrap().is_none());
    assert!(store.queued_posts().await.unwrap().items.is_empty());
    assert!(store
        .posts_of_pen(&k.pen_name)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(store.post_counts(&k).await.unwrap().total(), 0);
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn erasing_a_pen_name_removes_everything_it_owns_even_unreadable_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let sled = open(dir.path(), &MasterKey::generate());
    let store: &dyn Store = &sled;
    let gone = key("gone", Platform::X);
    let gone_yt = key("gone", Platform::Youtube);
    let kept = key("gone2", Platform::X);
    let mut b = Batch::new();
    for k in [&gone, &gone_yt, &kept] {
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
        unfinished: vec![],
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
    // One of its records cannot be read.
    sled.raw_insert_for_tests("connections", &gone_yt.storage_key(), b"\x02garbage")
        .unwrap();
    assert!(
        store
            .connections_of(&gone.pen_name)
            .await
            .unwrap()
            .unreadable
            .len()
            == 1
    );

    let erased = store.erase_pen_name(&gone.pen_name).await.unwrap();
    assert_eq!(
        (
            erased.connections,
            erased.posts,
            erased.events,
            erased.unreadable
        ),
        (2, 2, 2, 1)
    );
    let after = store.connections_of(&gone.pen_name).await.unwrap();
    assert!(after.items.is_empty() && after.unreadable.is_empty());
    assert!(store.grant(&gone).await.unwrap().is_none());
    assert!(store
        .posts_of_pen(&gone.pen_name)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(store.post_counts(&gone).await.unwrap().total(), 0);
    assert!(store
        .events_of_connection(&gone, EventPage::newest(10))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .idempotent_result(&gone.pen_name, "req-1")
        .await
        .unwrap()
        .is_none());
    assert!(store.unreadable().is_empty(), "{:?}", store.unreadable());
    // The pen name whose id starts the same way is untouched.
    assert_eq!(
        store
            .connections_of(&kept.pen_name)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store
            .posts_of_pen(&kept.pen_name)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store
            .events_of_connection(&kept, EventPage::newest(10))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
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
async fn a_fenced_writer_cannot_write_after_it_lost_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let k = key("jane", Platform::X);
    let first = store.claim(&k).await.unwrap();
    let mut c = connection(&k);
    let mut b = Batch::new();
    b.fence(&k, first).put_connection(&c);
    store.commit(b, Durability::Durable).await.unwrap();
    let second = store.claim(&k).await.unwrap();
    assert!(second > first);
    c.status = ConnectionStatus::Expired(Reason::new(ReasonCode::GrantExpired));
    let mut b = Batch::new();
    b.fence(&k, first).put_connection(&c).event(Event::new(
        Timestamp::from_unix_millis(1),
        k.clone(),
        EventKind::ConnectionStatus,
    ));
    match store.commit(b, Durability::Durable).await {
        Err(StoreError::Fenced { epoch, newest, .. }) => {
            assert_eq!((epoch, newest), (first.0, second.0))
        }
        other => panic!("a superseded writer wrote: {other:?}"),
    }
    assert!(store
        .connection(&k)
        .await
        .unwrap()
        .unwrap()
        .status
        .is_active());
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
    let mut b = Batch::new();
    b.fence(&k, second).put_connection(&c);
    store.commit(b, Durability::Durable).await.unwrap();
    assert!(!store
        .connection(&k)
        .await
        .unwrap()
        .unwrap()
        .status
        .is_active());
}

/// Many writers commit events at once while a reader follows `events_after` and a
/// subscriber follows the feed: neither ever sees a number before the one below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_visible_in_sequence_order_under_concurrent_writers() {
    const WRITERS: usize = 8;
    const EACH: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = std::sync::Arc::new(open(dir.path(), &MasterKey::generate()));
    let mut feed = store.subscribe();
    let total = WRITERS * EACH;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut seen = 0usize;
            while seen < total {
                for e in store.events_after(last, 64).await.unwrap() {
                    assert_eq!(
                        e.seq,
                        last + 1,
                        "event {} visible before {}",
                        e.seq,
                        last + 1
                    );
                    last = e.seq;
                    seen += 1;
                }
                tokio::task::yield_now().await;
            }
            last
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let k = key(&format!("writer{w}"), Platform::ALL[w % 9]);
            for i in 0..EACH {
                let mut b = Batch::new();
                for _ in 0..(1 + i % 3) {
                    b.event(Event::new(
                        Timestamp::from_unix_millis(i as i64),
                        k.clone(),
                        EventKind::ConnectionStatus,
                    ));
                }
                let durability = if i % 2 == 0 {
                    Durability::Durable
                } else {
                    Durability::Buffered
                };
                store.commit(b, durability).await.unwrap();
            }
        }));
    }
    let mut expected = 0;
    for w in writers {
        w.await.unwrap();
    }
    for i in 0..EACH {
        expected += WRITERS * (1 + i % 3);
    }
    let _ = total;
    let reader = tokio::spawn(async move { reader.await.unwrap() });
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while last < expected as u64 {
        let e = tokio::time::timeout_at(deadline, feed.recv())
            .await
            .expect("the feed delivers every event")
            .expect("the feed keeps up (capacity)");
        assert_eq!(e.seq, last + 1, "the feed skipped or reordered");
        last = e.seq;
    }
    assert!(reader.await.unwrap() >= WRITERS as u64 * EACH as u64);
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

/// A connection's events stay listable, newest first and page by page, across as many
/// commits as it takes for its references to spill into older chunks; another
/// connection's events in the same commits never show; erasure takes exactly them.
#[tokio::test]
async fn a_long_event_history_pages_newest_first_and_erases_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let mine = key("jane", Platform::X);
    let other = key("john", Platform::X);
    let mut expected = Vec::new();
    for i in 0..700i64 {
        let mut b = Batch::new();
        b.event(
            Event::new(
                Timestamp::from_unix_millis(i),
                mine.clone(),
                EventKind::GrantRenewed,
            )
            .detail(format!("{i}")),
        );
        b.event(Event::new(
            Timestamp::from_unix_millis(i),
            other.clone(),
            EventKind::GrantRenewed,
        ));
        let events = store.commit(b, Durability::Buffered).await.unwrap().events;
        expected.push(events[0].seq);
    }
    store.sync().await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .events_of_connection(&mine, EventPage { before, limit: 100 })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.iter().all(|e| e.connection == mine));
        before = page.last().map(|e| e.seq);
        seen.extend(page.iter().map(|e| e.seq));
    }
    expected.reverse();
    assert_eq!(seen, expected, "every event, newest first, once");
    assert_eq!(store.events_after(0, 10_000).await.unwrap().len(), 1400);
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
    let erased = store.erase_pen_name(&mine.pen_name).await.unwrap();
    assert_eq!(erased.events, 700);
    let left = store.events_after(0, 10_000).await.unwrap();
    assert_eq!(left.len(), 700);
    assert!(left.iter().all(|e| e.connection == other));
    assert!(store.check_integrity().await.unwrap().problems.is_empty());
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

#[tokio::test]
async fn a_durable_commit_s_events_can_be_replayed_as_soon_as_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let k = key("jane", Platform::X);
    for i in 0..300 {
        let mut b = Batch::new();
        b.event(Event::new(
            Timestamp::from_unix_millis(i),
            k.clone(),
            EventKind::GrantRenewed,
        ));
        let seq = store.commit(b, Durability::Durable).await.unwrap().events[0].seq;
        let replay = store.events_after(seq - 1, 10).await.unwrap();
        assert_eq!(replay.first().map(|e| e.seq), Some(seq), "commit {i}");
    }
}

#[tokio::test]
async fn erasing_a_pen_name_removes_its_pending_oauth_states_and_no_one_else_s() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate());
    let pending = |pen: &str| PendingAuthorization {
        connection: key(pen, Platform::X),
        pkce_verifier: Some(Secret::new("v")),
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(600_000),
        replace: false,
    };
    let mut b = Batch::new();
    b.put_oauth_state("gone-1", &pending("gone"))
        .put_oauth_state("gone-2", &pending("gone"))
        .put_oauth_state("kept-1", &pending("kept"));
    store.commit(b, Durability::Durable).await.unwrap();

    store
        .erase_pen_name(&PenName::parse("gone").unwrap())
        .await
        .unwrap();
    let now = Timestamp::from_unix_millis(1_000);
    for state in ["gone-1", "gone-2"] {
        assert_eq!(
            store.take_oauth_state(state, now).await.unwrap(),
            StateLookup::Unknown,
            "{state} outlived its pen name"
        );
    }
    assert_eq!(
        store.take_oauth_state("kept-1", now).await.unwrap(),
        StateLookup::Taken(pending("kept"))
    );
}

#[tokio::test]
async fn a_batch_replaces_an_idempotency_record_and_the_first_claim_still_wins() {
    let dir = tempfile::tempdir().unwrap();
    let mk = MasterKey::generate();
    let k = key("jane", Platform::X);
    let planned = post(&k, 1);
    let record = IdempotentRequest {
        request_digest: [3; 8],
        posts: vec![planned.id],
        created_at: Timestamp::from_unix_millis(1),
        unfinished: vec![planned.body()],
    };
    {
        let store = open(dir.path(), &mk);
        let claimed = store
            .remember_idempotent(&k.pen_name, "order-1", &record)
            .await
            .unwrap();
        assert_eq!(claimed, record);
        assert!(!claimed.is_finished());
        let mut b = Batch::new();
        b.put_idempotent(&k.pen_name, "order-1", &record.finished());
        store.commit(b, Durability::Durable).await.unwrap();
        // A later claim of the key gets the stored record, now finished.
        let later = IdempotentRequest {
            request_digest: [4; 8],
            ..record.clone()
        };
        let winner = store
            .remember_idempotent(&k.pen_name, "order-1", &later)
            .await
            .unwrap();
        assert_eq!(winner, record.finished());
    }
    let store = open(dir.path(), &mk);
    let stored = store
        .idempotent_result(&k.pen_name, "order-1")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.is_finished());
    assert_eq!(stored.posts, vec![planned.id]);
}
