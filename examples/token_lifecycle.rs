//! Sixty days of virtual time: proactive refreshes with rotation; then the platform
//! revokes the grant → Expired with that reason → the queue pauses the connection's
//! posts (Paused, not Failed) → the author reconnects → they publish in due order.
//!
//! `cargo run --example token_lifecycle` — exits non-zero if any step does not hold.

mod support;

use social_studio_actors::testkit::{wait_for_event, FakePlatform};
use social_studio_actors::EngineConfig;
use social_studio_storage::{ConnectionStatus, EventKind, Platform, ReasonCode, StateLabel};
use support::{world, Narrator, DAY, HOUR};

fn main() {
    support::virtual_runtime().block_on(async {
        let mut n = Narrator::new("token_lifecycle", "sixty days of a connection's life on virtual time");
        let mut w = world(|c| FakePlatform::new(Platform::X, c, 2 * HOUR), EngineConfig::default()).await;
        let key = w.connect("jane-doe", "jane", Platform::X).await;
        n.say(format!("{}: connected @jane on X; access tokens live 2 hours, refresh tokens rotate on every use", w.now()));

        let start = w.now();
        let posts = [
            w.schedule(&key, start.saturating_add(61 * DAY), "Chapter one is out").await,
            w.schedule(&key, start.saturating_add(61 * DAY + 2 * HOUR), "Signing in Leeds on Saturday").await,
            w.schedule(&key, start.saturating_add(61 * DAY + 4 * HOUR), "Thank you, readers").await,
        ];
        n.say("scheduled three posts for day 61");

        tokio::time::sleep(60 * DAY).await;
        let refreshes = w.fake.refresh_calls();
        n.say(format!("{}: sixty days later, {refreshes} refreshes were made", w.now()));
        n.check(refreshes >= 60 * 13, format!("the grant was renewed ahead of every expiry ({refreshes} ≥ 780)"));
        n.check(w.fake.spent_token_sends() == 0, "no spent refresh token was ever sent");
        let status = w.engine.status(key.clone()).await.ok().flatten();
        n.check(status.is_some_and(|s| s.connection.status.is_active()), "the connection is still Active");

        n.say("the author revokes the app in X's settings");
        w.fake.revoke_user("jane", ReasonCode::RevokedByUser);
        let expired = wait_for_event(&mut w.events, DAY, |e| {
            e.kind == EventKind::ConnectionStatus && e.to == Some(StateLabel::Expired)
        })
        .await;
        n.check(expired.is_some(), "the engine noticed at its next refresh, within the day");
        let reason = expired.and_then(|e| e.reason);
        n.say(format!(
            "{}: connection Expired: {}",
            w.now(),
            reason.as_ref().map(|r| format!("{} — remedy: {}", r.code, r.remedy())).unwrap_or_default()
        ));
        n.check(reason.is_some_and(|r| r.code == ReasonCode::RevokedByUser), "its reason is revoked_by_user");

        tokio::time::sleep(2 * DAY).await;
        n.say(format!("{}: the posts' due times have passed", w.now()));
        for id in posts {
            n.check(w.state(id).await == StateLabel::Paused, format!("post {id} is Paused, not Failed"));
        }
        n.check(w.fake.publish_calls() == 0, "nothing was sent with the dead grant");

        n.say("the author reconnects the same account");
        let grant = w.fake.issue_grant("jane");
        let view = w.engine.connect(key.clone(), w.fake.account("jane"), vec![], grant, false).await;
        n.check(view.is_ok_and(|v| v.connection.status == ConnectionStatus::Active), "the connection is Active again");
        for id in posts {
            let published = w.post_reaches(id, StateLabel::Published, HOUR).await;
            n.check(published.is_some(), format!("post {id} published"));
        }
        let order: Vec<String> = w.fake.published().into_iter().map(|p| p.text).collect();
        n.say(format!("published in this order: {order:?}"));
        n.check(
            order == ["Chapter one is out", "Signing in Leeds on Saturday", "Thank you, readers"],
            "overdue posts went out in due order",
        );
        n.done();
        w.engine.shutdown().await;
    });
}
