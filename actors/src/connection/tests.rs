//! The connection actor on virtual time: how it classifies each platform failure, keeps a
//! grant alive through refreshes and checks, and takes a reconnect.

use std::time::Duration;

use social_studio_storage::{
    ConnectionStatus, EventKind, PostState, ReasonCode, StateLabel, Timestamp,
};

use crate::test_world::{memory_and_disk_agree, reason, until, world, DAY, HOUR};
use crate::testkit::{wait_for_event, Fault, FaultyStore, Op};
use crate::{LimitScope, PortError};

#[tokio::test(start_paused = true)]
async fn grant_dead_expires_the_connection_and_pauses_its_posts() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(
        Op::Publish,
        [Fault::Error(PortError::GrantDead(reason(
            ReasonCode::PasswordChanged,
        )))],
    );
    let first = w.schedule(&key, Duration::from_secs(60), "one").await;
    let second = w.schedule(&key, HOUR, "two").await;
    let e = w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::PasswordChanged);
    w.post_reaches(first, StateLabel::Paused, DAY).await;
    assert!(
        matches!(w.post_state(first).await, PostState::Paused(r) if r.code == ReasonCode::PasswordChanged)
    );
    assert!(
        matches!(w.post_state(second).await, PostState::Paused(_)),
        "not failed: paused"
    );
    let status = w.engine.status(key).await.unwrap().unwrap();
    assert!(
        matches!(status.connection.status, ConnectionStatus::Expired(r) if r.code == ReasonCode::PasswordChanged)
    );
}

#[tokio::test(start_paused = true)]
async fn requirement_unmet_is_an_error_and_pauses_posts() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(
        Op::Publish,
        [Fault::Error(PortError::RequirementUnmet(reason(
            ReasonCode::NotPageAdmin,
        )))],
    );
    let id = w.schedule(&key, Duration::from_secs(60), "one").await;
    let e = w.connection_becomes(&key, StateLabel::Error, DAY).await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::NotPageAdmin);
    w.post_reaches(id, StateLabel::Paused, DAY).await;
}

#[tokio::test(start_paused = true)]
async fn rate_limits_and_passing_faults_keep_the_connection_active_and_the_post_waits() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(
        Op::Publish,
        [
            Fault::Error(PortError::RateLimited {
                retry_after: Duration::from_secs(900),
                scope: LimitScope::Connection,
            }),
            Fault::Unavailable,
            Fault::Error(PortError::Unavailable {
                detail: "reset".into(),
                maybe_delivered: false,
            }),
        ],
    );
    let id = w.schedule(&key, Duration::from_secs(60), "one").await;
    let due = w.now().saturating_add(Duration::from_secs(60));
    let published = w.post_reaches(id, StateLabel::Published, DAY).await;
    // The 15-minute limit was respected before the later attempts.
    assert!(
        published.at >= due.saturating_add(Duration::from_secs(900)),
        "published at {}",
        published.at
    );
    assert_eq!(w.fake.publish_calls(), 4);
    assert!(w
        .engine
        .status(key.clone())
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
    let evs = w
        .store
        .events_of_connection(&key, social_studio_storage::EventPage::newest(100))
        .await
        .unwrap();
    assert!(!evs
        .iter()
        .any(|e| e.to == Some(StateLabel::Failed) || e.to == Some(StateLabel::Paused)));
    // Each wait named why: the limit first, then the passing faults.
    let waits: Vec<Option<ReasonCode>> = evs
        .iter()
        .rev()
        .filter(|e| e.post == Some(id) && e.to == Some(StateLabel::Scheduled))
        .filter(|e| e.from == Some(StateLabel::Publishing))
        .map(|e| e.reason.as_ref().map(|r| r.code))
        .collect();
    assert_eq!(
        waits,
        [
            Some(ReasonCode::RateLimited),
            Some(ReasonCode::PlatformUnavailable),
            Some(ReasonCode::PlatformUnavailable)
        ],
        "{evs:?}"
    );
    assert!(w.store.post(id).await.unwrap().unwrap().waiting.is_none());
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_publishes_that_need_a_refresh_cause_one_refresh() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.expire_access("jane");
    let a = w.schedule(&key, Duration::from_secs(10), "a").await;
    let b = w.schedule(&key, Duration::from_secs(10), "b").await;
    w.post_reaches(a, StateLabel::Published, HOUR).await;
    w.post_reaches(b, StateLabel::Published, HOUR).await;
    assert_eq!(w.fake.refresh_calls(), 1);
    assert_eq!(w.fake.spent_token_sends(), 0);
}

#[tokio::test(start_paused = true)]
async fn sixty_days_of_rotation_never_send_a_spent_refresh_token() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    // Some refreshes fail in passing along the way.
    w.fake.script(
        Op::Refresh,
        [
            Fault::Unavailable,
            Fault::Stall(Duration::from_secs(30)),
            Fault::Unavailable,
        ],
    );
    tokio::time::sleep(60 * DAY).await;
    let calls = w.fake.refresh_calls();
    // A 2-hour token refreshed at 75–90% of its life: every 1.5–1.8 hours, 13–16 a day.
    assert!(
        (60 * 13..=60 * 16).contains(&calls),
        "{calls} refreshes in 60 days"
    );
    assert_eq!(w.fake.spent_token_sends(), 0);
    assert!(w
        .engine
        .status(key.clone())
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
    let id = w
        .schedule(&key, Duration::from_secs(1), "still alive")
        .await;
    w.post_reaches(id, StateLabel::Published, HOUR).await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_refresh_answer_is_resent_once_and_a_rejection_is_named_refresh_interrupted() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    // The platform rotates, the answer is lost; the resend meets a spent token.
    w.fake.script(Op::Refresh, [Fault::AnswerLost]);
    let e = w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::RefreshInterrupted);
    assert_eq!(w.fake.refresh_calls(), 2, "sent, then resent exactly once");
}

#[tokio::test(start_paused = true)]
async fn within_a_grace_period_a_lost_refresh_answer_is_completed() {
    let mut w = world(2 * HOUR, |f| f.with_grace_period(2 * HOUR)).await;
    let key = w.connect("jane", "jane").await;
    w.fake.script(Op::Refresh, [Fault::AnswerLost]);
    let e = wait_for_event(&mut w.events, DAY, |e| e.kind == EventKind::GrantRenewed).await;
    assert!(e.is_some());
    assert!(w
        .engine
        .status(key)
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
}

#[tokio::test(start_paused = true)]
async fn a_grant_that_cannot_be_renewed_warns_then_expires() {
    let mut w = world(60 * DAY, |f| f.without_refresh()).await;
    let key = w.connect("jane", "jane").await;
    let start = w.now();
    let warn = wait_for_event(&mut w.events, 90 * DAY, |e| {
        e.kind == EventKind::ExpiringSoon
    })
    .await
    .unwrap();
    let lapses = start.saturating_add(60 * DAY);
    assert!(warn.at >= lapses.saturating_sub(7 * DAY) && warn.at < lapses);
    let status = w.engine.status(key.clone()).await.unwrap().unwrap();
    assert!(status.expiring_soon && !status.renewable);
    let e = w
        .connection_becomes(&key, StateLabel::Expired, 90 * DAY)
        .await;
    assert_eq!(e.reason.unwrap().code, ReasonCode::GrantExpired);
    assert!(e.at >= lapses);
}

#[tokio::test(start_paused = true)]
async fn a_silently_revoked_grant_is_found_before_the_post_is_due() {
    let mut w = world(60 * DAY, |f| f.without_refresh()).await;
    let key = w.connect("jane", "jane").await;
    let id = w.schedule(&key, 3 * DAY, "later").await;
    w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
    let e = w
        .connection_becomes(&key, StateLabel::Expired, 10 * DAY)
        .await;
    let due = w.store.post(id).await.unwrap().unwrap().due_at;
    assert!(
        e.at <= due.saturating_sub(HOUR),
        "found at {} for a post due {}",
        e.at,
        due
    );
    assert_eq!(e.reason.unwrap().code, ReasonCode::RevokedByUser);
    w.post_reaches(id, StateLabel::Paused, DAY).await;
    assert_eq!(
        w.fake.publish_calls(),
        0,
        "the post never met the revoked grant"
    );
}

/// A health check that finds the access token refused refreshes; when that refresh fails
/// in passing, the check backs off with it instead of checking (and refreshing) again at
/// once in a loop.
#[tokio::test(start_paused = true)]
async fn a_check_whose_refresh_fails_in_passing_backs_off_instead_of_spinning() {
    let w = world(30 * DAY, |f| f).await;
    let _key = w.connect("jane", "jane").await;
    w.fake.expire_access("jane");
    w.fake.script(
        Op::Refresh,
        [Fault::Unavailable, Fault::Unavailable, Fault::Unavailable],
    );
    // The daily health check comes within a day; then the refreshes, the last one good.
    let deadline = tokio::time::Instant::now() + 3 * DAY;
    while w.fake.refresh_calls() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let at: Vec<Timestamp> = w
        .fake
        .calls()
        .iter()
        .filter(|c| matches!(c.op, Op::Refresh))
        .map(|c| c.at)
        .collect();
    for pair in at.windows(2) {
        assert!(
            pair[0].until(pair[1]) >= Duration::from_secs(1),
            "refreshes at {at:?}: a failed refresh was followed at once by another"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn reconnecting_resumes_paused_posts_in_due_order_and_a_different_account_is_refused() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
    let ids = [
        w.schedule(&key, HOUR, "first").await,
        w.schedule(&key, 2 * HOUR, "second").await,
        w.schedule(&key, 3 * HOUR, "third").await,
    ];
    w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    tokio::time::sleep(DAY).await;
    for id in ids {
        assert!(matches!(w.post_state(id).await, PostState::Paused(_)));
    }
    // Another account is refused and changes nothing.
    let other = w.fake.issue_grant("mallory");
    let err = w
        .engine
        .connect(key.clone(), w.fake.account("mallory"), vec![], other, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::EngineError::WrongAccount { ref reason, .. } if reason.code == ReasonCode::WrongAccount)
    );
    assert!(matches!(w.post_state(ids[0]).await, PostState::Paused(_)));
    // The same account comes back: everything publishes, overdue, in due order.
    let grant = w.fake.issue_grant("jane");
    w.engine
        .connect(key.clone(), w.fake.account("jane"), vec![], grant, false)
        .await
        .unwrap();
    for id in ids {
        w.post_reaches(id, StateLabel::Published, HOUR).await;
    }
    let order: Vec<_> = w.fake.published().iter().map(|p| p.text.clone()).collect();
    assert_eq!(order, ["first", "second", "third"]);
}

/// A refresh rotated the grant but storing the new one failed: the new grant is kept, the
/// next step stores it before anything else reaches the platform, and the spent refresh
/// token is never sent again (on X, TikTok and Pinterest that would kill the grant).
#[tokio::test(start_paused = true)]
async fn a_rotated_grant_that_could_not_be_stored_is_kept_and_stored_before_the_next_call() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    let issued = w.store.grant(&key).await.unwrap().unwrap();
    w.faults.fail_commits(FaultyStore::stores_a_grant);
    // The proactive refresh comes at 75–90% of the two hours; its answer cannot be stored.
    until(3 * HOUR, "a refresh whose grant was refused", || {
        w.fake.refresh_calls() == 1 && w.faults.refused() == 1
    })
    .await;
    // The disk fails on for a while: the next steps retry the store and call nothing.
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    assert_eq!(
        w.fake.spent_token_sends(),
        0,
        "the spent refresh token was resent"
    );
    assert_eq!(
        w.fake.refresh_calls(),
        1,
        "no second refresh while one is unstored"
    );
    assert!(w.faults.refused() >= 3, "the store was retried");
    memory_and_disk_agree(&w, &key).await;
    // The fault clears: the kept grant is stored, not refreshed again.
    w.faults.heal();
    let deadline = tokio::time::Instant::now() + DAY;
    let stored = loop {
        let g = w.store.grant(&key).await.unwrap().unwrap();
        if g.refresh_token.as_ref().map(|t| t.expose().to_string())
            != issued
                .refresh_token
                .as_ref()
                .map(|t| t.expose().to_string())
        {
            break g;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kept grant was never stored"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(w.fake.refresh_calls(), 1);
    memory_and_disk_agree(&w, &key).await;
    // And it is the grant in use.
    let id = w
        .schedule(&key, Duration::from_secs(60), "after the fault")
        .await;
    w.post_reaches(id, StateLabel::Published, HOUR).await;
    assert_eq!(
        w.fake.published()[0].access_token_fingerprint,
        social_studio_storage::fingerprint(stored.access_token.expose())
    );
    tokio::time::sleep(2 * DAY).await;
    assert_eq!(
        w.fake.spent_token_sends(),
        0,
        "a spent refresh token was resent"
    );
    assert!(w
        .engine
        .status(key.clone())
        .await
        .unwrap()
        .unwrap()
        .connection
        .status
        .is_active());
}

/// A reconnect whose status change cannot be written leaves the connection as the store
/// holds it (not Active in memory and Expired on disk); once the fault clears, the next
/// reconnect brings both forward and the paused posts go.
#[tokio::test(start_paused = true)]
async fn a_status_change_that_could_not_be_written_is_not_shown_and_the_next_attempt_makes_it() {
    let mut w = world(2 * HOUR, |f| f).await;
    let key = w.connect("jane", "jane").await;
    w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
    let id = w.schedule(&key, HOUR, "waiting").await;
    w.connection_becomes(&key, StateLabel::Expired, DAY).await;
    w.post_reaches(id, StateLabel::Paused, DAY).await;
    w.faults
        .fail_commits(|b| FaultyStore::records(b, EventKind::ConnectionStatus));
    let grant = w.fake.issue_grant("jane");
    let refused = w
        .engine
        .connect(key.clone(), w.fake.account("jane"), vec![], grant, false)
        .await;
    assert!(refused.is_err(), "the reconnect could not be written");
    memory_and_disk_agree(&w, &key).await;
    assert!(matches!(
        w.store.connection(&key).await.unwrap().unwrap().status,
        ConnectionStatus::Expired(_)
    ));
    assert!(matches!(w.post_state(id).await, PostState::Paused(_)));
    w.faults.heal();
    let grant = w.fake.issue_grant("jane");
    w.engine
        .connect(key.clone(), w.fake.account("jane"), vec![], grant, false)
        .await
        .unwrap();
    memory_and_disk_agree(&w, &key).await;
    assert!(w
        .store
        .connection(&key)
        .await
        .unwrap()
        .unwrap()
        .status
        .is_active());
    w.post_reaches(id, StateLabel::Published, DAY).await;
}
