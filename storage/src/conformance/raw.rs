//! The contract for records a backend holds but cannot read, and for grants sealed to
//! their connection: tests that need to overwrite stored bytes, so they run only on a
//! backend that lets them ([`RawRecords`]).

use super::RawRecords;
use crate::fixtures::{connection, grant, key, post};
use crate::vault::VaultError;
use crate::*;

pub async fn two_pen_names_on_one_platform_never_see_each_other<B: RawRecords>(backend: B) {
    let stored = backend.open().await;
    let store: &dyn Store = &stored;
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
    let sealed = B::raw_get(&stored, "grants", &a.storage_key())
        .unwrap()
        .unwrap();
    B::raw_insert(&stored, "grants", &b.storage_key(), &sealed).unwrap();
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

pub async fn an_unreadable_record_is_named_everywhere_and_the_rest_stays_usable<B: RawRecords>(
    backend: B,
) {
    let stored = backend.open().await;
    let store: &dyn Store = &stored;
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
    let mut raw = B::raw_get(&stored, "post_status", bad.id.as_bytes())
        .unwrap()
        .unwrap();
    raw[0] = 77;
    B::raw_insert(&stored, "post_status", bad.id.as_bytes(), &raw).unwrap();
    let broken = key("jane", Platform::X);
    B::raw_insert(
        &stored,
        "connections",
        &broken.storage_key(),
        &[2, 0xff, 0xff, 0xff],
    )
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

pub async fn erasing_a_pen_name_removes_everything_it_owns_even_unreadable_and_nothing_else<
    B: RawRecords,
>(
    backend: B,
) {
    let stored = backend.open().await;
    let store: &dyn Store = &stored;
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
    B::raw_insert(
        &stored,
        "connections",
        &gone_yt.storage_key(),
        b"\x02garbage",
    )
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
