//! Retention through the store port: what each purge removes, what it must leave, and
//! that every derived record (counts, the queue index, event references) stays true
//! afterwards.

use super::Backend;
use crate::fixtures::{connection, key, post};
use crate::*;

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

fn assert_whole(report: &IntegrityReport) {
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

/// 700 commits of two events each (two connections, one commit a millisecond): each
/// connection's references span a head and older chunks, and a purge takes several
/// batches.
pub async fn old_events_go_oldest_first_and_references_stay_true<B: Backend>(backend: B) {
    let store = backend.open().await;
    let jane = key("jane", Platform::X);
    let john = key("john", Platform::Bluesky);
    let mut seqs = Vec::new();
    for i in 0..700i64 {
        let mut b = Batch::new();
        b.event(Event::new(at(i), jane.clone(), EventKind::GrantRenewed))
            .event(Event::new(at(i), john.clone(), EventKind::GrantRenewed));
        let events = store.commit(b, Durability::Buffered).await.unwrap().events;
        seqs.push((events[0].seq, events[1].seq));
    }
    store.sync().await.unwrap();
    assert_eq!(store.events_purged_through().await.unwrap(), 0);

    let removed = store.purge_events_before(at(400)).await.unwrap();
    assert_eq!(removed, 800, "the events recorded before the cutoff");
    let through = seqs[399].1;
    assert_eq!(store.events_purged_through().await.unwrap(), through);
    let left = store.events_after(0, 10_000).await.unwrap();
    assert_eq!(left.len(), 600);
    assert!(
        left.iter().all(|e| e.at >= at(400)),
        "nothing newer touched"
    );
    assert_eq!(left[0].seq, seqs[400].0);
    for k in [&jane, &john] {
        let page = store
            .events_of_connection(k, EventPage::newest(10_000))
            .await
            .unwrap();
        assert_eq!(page.len(), 300, "{k}");
        assert!(page.iter().all(|e| e.connection == *k && e.at >= at(400)));
    }
    assert_whole(&store.check_integrity().await.unwrap());

    // Nothing more is old enough: a second purge removes nothing.
    assert_eq!(store.purge_events_before(at(400)).await.unwrap(), 0);

    // New events after a purge are numbered after everything ever handed out, and the
    // connections' references take them as before.
    let mut b = Batch::new();
    b.event(Event::new(at(800), jane.clone(), EventKind::GrantRenewed));
    let newer = store.commit(b, Durability::Durable).await.unwrap().events;
    assert!(newer[0].seq > seqs[699].1);
    assert_whole(&store.check_integrity().await.unwrap());

    // Everything purged, then reopened: the watermark holds, and no number is handed out
    // twice.
    assert_eq!(store.purge_events_before(at(10_000)).await.unwrap(), 601);
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
    assert_whole(&store.check_integrity().await.unwrap());
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.events_purged_through().await.unwrap(), newer[0].seq);
    let mut b = Batch::new();
    b.event(Event::new(at(900), john.clone(), EventKind::GrantRenewed));
    let after_reopen = store.commit(b, Durability::Durable).await.unwrap().events;
    assert!(after_reopen[0].seq > newer[0].seq);
    assert_whole(&store.check_integrity().await.unwrap());
}

/// Events are kept in sequence order: a purge stops at the first event at or after the
/// cutoff, even if an older one (a clock that ran back) comes after it.
pub async fn an_event_purge_stops_at_the_first_newer_event<B: Backend>(backend: B) {
    let store = backend.open().await;
    let jane = key("jane", Platform::X);
    let mut seqs = Vec::new();
    for t in [1, 2, 50, 3] {
        let mut b = Batch::new();
        b.event(Event::new(at(t), jane.clone(), EventKind::GrantRenewed));
        seqs.push(store.commit(b, Durability::Durable).await.unwrap().events[0].seq);
    }
    assert_eq!(store.purge_events_before(at(10)).await.unwrap(), 2);
    let left: Vec<u64> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, seqs[2..]);
    assert_eq!(store.events_purged_through().await.unwrap(), seqs[1]);
    assert_whole(&store.check_integrity().await.unwrap());
}

pub async fn old_idempotency_records_are_forgotten_and_newer_ones_kept<B: Backend>(backend: B) {
    let store = backend.open().await;
    let jane = PenName::parse("jane").unwrap();
    let john = PenName::parse("john").unwrap();
    let record = |created: i64| IdempotentRequest {
        request_digest: [1; 8],
        posts: vec![PostId::new()],
        created_at: at(created),
        unfinished: vec![],
    };
    // More than one batch of old records.
    for i in 0..1500 {
        store
            .remember_idempotent(&jane, &format!("old-{i}"), &record(i))
            .await
            .unwrap();
    }
    store
        .remember_idempotent(&john, "old", &record(10))
        .await
        .unwrap();
    let fresh = record(5_000);
    store
        .remember_idempotent(&jane, "fresh", &fresh)
        .await
        .unwrap();
    store
        .remember_idempotent(&john, "at-the-cutoff", &record(2_000))
        .await
        .unwrap();

    assert_eq!(
        store.purge_idempotency_before(at(2_000)).await.unwrap(),
        1501
    );
    for i in [0, 999, 1499] {
        assert_eq!(
            store
                .idempotent_result(&jane, &format!("old-{i}"))
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(store.idempotent_result(&john, "old").await.unwrap(), None);
    assert_eq!(
        store.idempotent_result(&jane, "fresh").await.unwrap(),
        Some(fresh)
    );
    assert!(store
        .idempotent_result(&john, "at-the-cutoff")
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.purge_idempotency_before(at(2_000)).await.unwrap(), 0);
}

/// Every state, old and new, on two connections: only the old Published and Cancelled
/// posts go. Failed, Held and Unconfirmed wait for a person, whatever their age, and
/// queued posts are never finished.
pub async fn only_old_finished_posts_are_removed_with_their_index_entries_and_counts<B: Backend>(
    backend: B,
) {
    let store = backend.open().await;
    let jane = key("jane", Platform::X);
    let john = key("john", Platform::X);
    let states = [
        PostState::Scheduled,
        PostState::Paused(Reason::new(ReasonCode::ConnectionNotActive)),
        PostState::Publishing,
        PostState::Published(Receipt {
            platform_post_id: "1".into(),
            url: None,
        }),
        PostState::Failed(Reason::new(ReasonCode::ContentRejected)),
        PostState::Unconfirmed,
        PostState::Held(Reason::new(ReasonCode::TooLate)),
        PostState::Cancelled,
    ];
    let cutoff = at(1_800_000_000_000);
    let old = at(1_700_000_000_000);
    let new = cutoff;
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    let mut b = Batch::new();
    b.put_connection(&connection(&jane))
        .put_connection(&connection(&john));
    let mut i = 0;
    for k in [&jane, &john] {
        for state in &states {
            for updated in [old, new] {
                let mut p = post(k, i);
                i += 1;
                p.state = state.clone();
                p.updated_at = updated;
                let finished = matches!(state, PostState::Published(_) | PostState::Cancelled);
                if finished && updated < cutoff {
                    gone.push(p.id);
                } else {
                    kept.push(p.id);
                }
                b.put_post(&p);
            }
        }
    }
    // More than one batch of old published posts on jane's connection.
    for _ in 0..600 {
        let mut p = post(&jane, i);
        i += 1;
        p.state = states[3].clone();
        p.updated_at = old;
        gone.push(p.id);
        b.put_post(&p);
    }
    b.event(
        Event::new(old, jane.clone(), EventKind::PostState)
            .post(gone[0])
            .transition(Some(StateLabel::Publishing), Some(StateLabel::Published)),
    );
    store.commit(b, Durability::Durable).await.unwrap();
    let queued_before = store.queued_posts().await.unwrap().items.len();

    let removed = store.purge_finished_posts_before(cutoff).await.unwrap();
    assert_eq!(removed, gone.len());
    for id in &gone {
        assert_eq!(store.post(*id).await.unwrap(), None, "{id} should be gone");
    }
    for id in &kept {
        assert!(store.post(*id).await.unwrap().is_some(), "{id} should stay");
    }
    for k in [&jane, &john] {
        let posts = store.posts_of_connection(k).await.unwrap();
        assert!(posts.unreadable.is_empty());
        let counts = store.post_counts(k).await.unwrap();
        assert_eq!(counts.total(), posts.items.len() as u64, "{k}");
        assert_eq!(
            posts.items.len(),
            14,
            "{k}: 16 less the two old finished ones"
        );
        assert_eq!(counts.published, 1);
        assert_eq!(counts.cancelled, 1);
        for label in [
            StateLabel::Failed,
            StateLabel::Unconfirmed,
            StateLabel::Held,
        ] {
            assert_eq!(counts.get(label), 2, "{k}: {label:?}, old and new");
        }
    }
    assert_eq!(
        store
            .posts_of_pen(&jane.pen_name)
            .await
            .unwrap()
            .items
            .len(),
        14
    );
    assert_eq!(
        store.queued_posts().await.unwrap().items.len(),
        queued_before
    );
    // The event about a removed post stays for the events' own retention; the post's
    // event listing no longer finds an owner for it.
    assert_eq!(store.events_after(0, 10).await.unwrap().len(), 1);
    assert_whole(&store.check_integrity().await.unwrap());

    assert_eq!(store.purge_finished_posts_before(cutoff).await.unwrap(), 0);
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.post(gone[0]).await.unwrap(), None);
    assert_whole(&store.check_integrity().await.unwrap());
}

/// A commit of thousands of events is stored as several full groups: a purge takes them
/// over several batches and leaves every reference true.
pub async fn large_event_groups_are_purged_over_several_batches<B: Backend>(backend: B) {
    let store = backend.open().await;
    let keys = [
        key("jane", Platform::X),
        key("jane", Platform::Threads),
        key("john", Platform::X),
    ];
    let mut b = Batch::new();
    for i in 0..5_000 {
        b.event(Event::new(
            at(1),
            keys[i % 3].clone(),
            EventKind::GrantRenewed,
        ));
    }
    store.commit(b, Durability::Durable).await.unwrap();
    let mut b = Batch::new();
    b.event(Event::new(at(5), keys[0].clone(), EventKind::GrantRenewed));
    let kept = store.commit(b, Durability::Durable).await.unwrap().events;

    assert_eq!(store.purge_events_before(at(2)).await.unwrap(), 5_000);
    assert_eq!(store.events_after(0, 10).await.unwrap(), kept);
    assert_eq!(
        store.events_purged_through().await.unwrap(),
        kept[0].seq - 1
    );
    for k in &keys[1..] {
        let left = store
            .events_of_connection(k, EventPage::newest(10))
            .await
            .unwrap();
        assert!(left.is_empty(), "{k}");
    }
    assert_whole(&store.check_integrity().await.unwrap());
}
