//! The store port's contract: round trips, counts, event order and paging, fencing,
//! OAuth state use, idempotency records, erasure and durability across a reopen. Every
//! test talks to the store through [`Store`] only.

use std::time::Duration;

use super::Backend;
use crate::fixtures::{connection, grant, key, post};
use crate::vault::VaultError;
use crate::*;

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

/// Commits, durably, a connection (expired, with a target and a refresh in flight), its
/// grant with extras, a post in every state with an event each, and one connection
/// event; returns the connection's key, the posts and the events.
pub async fn every_kind_of_record(store: &dyn Store) -> (ConnectionKey, Vec<Post>, Vec<Event>) {
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

/// A grant with a refresh token, a target token and an endpoint.
pub fn grant_with_extras() -> Grant {
    let mut g = grant("access-1", Some("refresh-1"));
    g.target_tokens.push(TargetToken {
        target_id: "1234".into(),
        token: Secret::new("page-token"),
        expires_at: None,
    });
    g.endpoint = Some("https://pds.example".into());
    g
}

pub async fn every_record_type_round_trips_and_survives_reopen<B: Backend>(backend: B) {
    let (k, posts, events) = {
        let store = backend.open().await;
        every_kind_of_record(&store).await
    };
    assert_eq!(events.len(), posts.len() + 1);
    assert!(
        events.windows(2).all(|w| w[0].seq + 1 == w[1].seq),
        "one commit's events are numbered in order"
    );

    let store = backend.open().await;
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

pub async fn counts_follow_every_transition_and_queued_posts_are_exactly_the_queued_ones<
    B: Backend,
>(
    backend: B,
) {
    let store = backend.open().await;
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

pub async fn event_pages_and_the_events_of_one_post<B: Backend>(backend: B) {
    let store = backend.open().await;
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

pub async fn a_wrong_master_key_is_a_typed_error_and_changes_nothing<B: Backend>(backend: B) {
    let k = key("jane", Platform::Youtube);
    {
        let store = backend.open().await;
        let mut b = Batch::new();
        b.put_connection(&connection(&k))
            .put_grant(&k, &grant("yt-access", Some("yt-refresh")));
        store.commit(b, Durability::Durable).await.unwrap();
    }
    let wrong = MasterKey::generate();
    match backend.open_with_key(&wrong).await {
        Err(StoreError::Vault(VaultError::WrongMasterKey)) => {}
        Err(other) => panic!("expected WrongMasterKey, got {other}"),
        Ok(_) => panic!("a wrong key opened the store"),
    }
    let store = backend.open().await;
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

pub async fn oauth_states_are_single_use_and_expire<B: Backend>(backend: B) {
    let store = backend.open().await;
    let pending = |expires: i64| PendingAuthorization {
        connection: key("jane", Platform::X),
        pkce_verifier: Some(Secret::new("v")),
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(expires),
        replace: false,
        purpose: crate::StatePurpose::Connect { return_to: None },
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

pub async fn a_state_keeps_its_purpose<B: Backend>(backend: B) {
    // The Social Accounts page's records: a connect that returns to the page, and a page
    // link; each comes back as it was stored, once.
    let store = backend.open().await;
    let connect = PendingAuthorization {
        connection: key("jane", Platform::X),
        pkce_verifier: Some(Secret::new("v")),
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(600_000),
        replace: true,
        purpose: crate::StatePurpose::Connect {
            return_to: Some("/social/page/jane".into()),
        },
    };
    let link = PendingAuthorization {
        pkce_verifier: None,
        redirect_uri: String::new(),
        replace: false,
        purpose: crate::StatePurpose::PageLink,
        ..connect.clone()
    };
    let mut b = Batch::new();
    b.put_oauth_state("connect", &connect)
        .put_oauth_state("link", &link);
    store.commit(b, Durability::Durable).await.unwrap();
    let now = Timestamp::from_unix_millis(1_000);
    assert_eq!(
        store.take_oauth_state("connect", now).await.unwrap(),
        StateLookup::Taken(connect)
    );
    assert_eq!(
        store.take_oauth_state("link", now).await.unwrap(),
        StateLookup::Taken(link)
    );
    assert_eq!(
        store.take_oauth_state("link", now).await.unwrap(),
        StateLookup::AlreadyUsed
    );
}

pub async fn a_used_state_stays_used_across_a_restart<B: Backend>(backend: B) {
    // Taking a state is a journaled write like any other: a restart that replays the
    // journal must not bring the state back to life.
    let pending = PendingAuthorization {
        connection: key("jane", Platform::X),
        pkce_verifier: None,
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(600_000),
        replace: false,
        purpose: crate::StatePurpose::Connect { return_to: None },
    };
    {
        let store = backend.open().await;
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
    let store = backend.open().await;
    assert_eq!(
        store
            .take_oauth_state("once", Timestamp::from_unix_millis(2))
            .await
            .unwrap(),
        StateLookup::AlreadyUsed
    );
}

pub async fn deleting_a_connection_and_its_posts_leaves_no_index_behind<B: Backend>(backend: B) {
    let store = backend.open().await;
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

pub async fn a_fenced_writer_cannot_write_after_it_lost_the_connection<B: Backend>(backend: B) {
    let store = backend.open().await;
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
pub async fn events_become_visible_in_sequence_order_under_concurrent_writers<B: Backend>(
    backend: B,
) {
    const WRITERS: usize = 8;
    const EACH: usize = 150;
    let store: SharedStore = std::sync::Arc::new(backend.open().await);
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

/// A connection's events stay listable, newest first and page by page, across as many
/// commits as it takes for its references to spill into older chunks; another
/// connection's events in the same commits never show; erasure takes exactly them.
pub async fn a_long_event_history_pages_newest_first_and_erases_cleanly<B: Backend>(backend: B) {
    let store = backend.open().await;
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

pub async fn a_durable_commit_s_events_can_be_replayed_as_soon_as_it_resolves<B: Backend>(
    backend: B,
) {
    let store = backend.open().await;
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

pub async fn erasing_a_pen_name_removes_its_pending_oauth_states_and_no_one_else_s<B: Backend>(
    backend: B,
) {
    let store = backend.open().await;
    let pending = |pen: &str| PendingAuthorization {
        connection: key(pen, Platform::X),
        pkce_verifier: Some(Secret::new("v")),
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(600_000),
        replace: false,
        purpose: crate::StatePurpose::Connect { return_to: None },
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

pub async fn a_batch_replaces_an_idempotency_record_and_the_first_claim_still_wins<B: Backend>(
    backend: B,
) {
    let k = key("jane", Platform::X);
    let planned = post(&k, 1);
    let record = IdempotentRequest {
        request_digest: [3; 8],
        posts: vec![planned.id],
        created_at: Timestamp::from_unix_millis(1),
        unfinished: vec![planned.body()],
    };
    {
        let store = backend.open().await;
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
    let store = backend.open().await;
    let stored = store
        .idempotent_result(&k.pen_name, "order-1")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.is_finished());
    assert_eq!(stored.posts, vec![planned.id]);
}
