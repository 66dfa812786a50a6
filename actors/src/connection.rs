//! The connection actor: one per (pen name, platform). It owns the grant — the token
//! leaves it only inside a call to the platform port — and keeps it alive:
//!
//! - proactive refresh at a jittered 75–90% of the grant's own lifetime, reactive refresh
//!   when a publish comes back unauthorised (once), one refresh at a time (the mailbox is
//!   the lock, so concurrent needs share one refresh);
//! - rotation safety: the refresh in flight is recorded durably before the call and the
//!   rotated grant is stored durably before it is used; a rotated grant whose store fails
//!   is kept (its predecessor is spent) and stored before any other platform call, so a
//!   spent refresh token is never sent again; a refresh whose answer was lost (crash, cut
//!   connection) is resent once with the same token, and if the platform then calls the
//!   grant dead the reason is `refresh_interrupted`;
//! - grants that cannot be renewed without the author warn "expiring soon", then expire;
//! - a health check at least daily and before a post is due;
//! - every status change is persisted, recorded as an event, broadcast, then told to the
//!   platform queue (pause or resume). The record in memory changes only once its write
//!   holds: after a failed write the actor shows what the store holds, and a later attempt
//!   makes the change.
//!
//! One timer per actor: the next wake-up is the earliest of its deadlines.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use social_studio_storage::{
    fingerprint, Batch, Connection, ConnectionKey, ConnectionStatus, Durability, Epoch, Event,
    EventKind, Grant, Post, Reason, ReasonCode, RefreshInFlight, SharedStore, StateLabel,
    Timestamp,
};
use tracing::Instrument as _;

use crate::messages::{ConnectionMsg, ConnectionView, DisconnectReport, PublishOutcome, QueueMsg};
use crate::{
    Clock, EngineConfig, EngineError, LimitScope, LostRefreshPolicy, PlatformPort, PortError,
    RevokeOutcome,
};

pub struct ConnectionArgs {
    pub record: Connection,
    /// `None` when the stored grant cannot be read: the connection is then Expired.
    pub grant: Option<Grant>,
    pub store: SharedStore,
    /// Set by this actor's commits (see [`crate::StoreHealth`]).
    pub health: crate::StoreHealth,
    pub port: Arc<dyn PlatformPort>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<EngineConfig>,
    pub queue: ActorRef<QueueMsg>,
    pub seed: u64,
    /// Shared by every connection of the platform: until when an app-wide rate limit holds.
    pub platform_limit: Arc<std::sync::atomic::AtomicI64>,
    /// This node's lease on the connection (`Ownership::acquire`): every write the actor
    /// makes is fenced with it.
    pub epoch: Epoch,
}

pub struct ConnectionActor;

pub struct ConnectionState {
    record: Connection,
    grant: Option<Grant>,
    store: SharedStore,
    health: crate::StoreHealth,
    /// This node's lease on the connection: every write the actor makes is fenced by it,
    /// so a node that lost the connection can never write over its new owner.
    epoch: Epoch,
    /// A write was refused by the fence: another node owns the connection now, and this
    /// actor stops after the message at hand.
    fenced: bool,
    port: Arc<dyn PlatformPort>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    queue: ActorRef<QueueMsg>,
    rng: SmallRng,
    /// The armed timer: when, and the task that will send `Wake`.
    timer: crate::Timer<ConnectionMsg>,
    /// Planned proactive refresh (renewable grants).
    refresh_at: Option<Timestamp>,
    /// Planned health check.
    check_at: Timestamp,
    last_checked: Option<Timestamp>,
    /// Consecutive passing faults of refresh or check, for backoff.
    fault_streak: u32,
    /// A refresh answer was lost since the last definite answer: a later "grant dead" is
    /// then `refresh_interrupted`.
    answer_lost: bool,
    /// The "expiring soon" event went out for the current grant.
    warned: bool,
    /// `grant` is a rotated grant whose store failed. Its predecessor's refresh token is
    /// spent, so it is the only grant that works: it is stored before the next platform
    /// call, and nothing refreshes until it is.
    grant_unstored: bool,
    /// A write failed: no deadline fires before this backoff ends.
    write_retry_at: Option<Timestamp>,
    /// Until when this connection's rate limit holds: publishes already in the mailbox
    /// wait it out instead of meeting the platform.
    limited_until: Option<Timestamp>,
    platform_limit: Arc<std::sync::atomic::AtomicI64>,
}

impl ConnectionState {
    fn key(&self) -> &ConnectionKey {
        &self.record.key
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn renewable(&self) -> bool {
        self.grant
            .as_ref()
            .is_some_and(|g| self.port.renewable(&g.facts()))
    }

    fn view(&self) -> ConnectionView {
        ConnectionView::of(
            self.record.clone(),
            Some(&*self.port),
            self.now(),
            self.config.expiring_soon_warning,
        )
    }

    /// A batch fenced by this actor's claim on the connection.
    fn batch(&self) -> Batch {
        let mut b = Batch::new();
        b.fence(self.key(), self.epoch);
        b
    }

    fn jitter(&mut self) -> f64 {
        self.rng.gen::<f64>()
    }

    /// Plans the proactive refresh from the grant's own lifetime.
    fn plan_refresh(&mut self) {
        self.refresh_at = None;
        let Some(g) = &self.grant else { return };
        if !self.port.renewable(&g.facts()) {
            return;
        }
        let Some(expires) = g.expires_at else { return };
        let lifetime = g.issued_at.until(expires);
        let (lo, hi) = self.config.refresh_window;
        let frac = lo + (hi - lo) * self.rng.gen::<f64>();
        self.refresh_at = Some(g.issued_at.saturating_add(lifetime.mul_f64(frac)));
    }

    fn plan_check(&mut self, from: Timestamp) {
        let interval = self.config.health_check_interval;
        // Between 75% and 100% of the interval, so checks spread out over a fleet.
        let frac = 0.75 + 0.25 * self.jitter();
        self.check_at = from.saturating_add(interval.mul_f64(frac));
    }

    fn plan_retry(&mut self) -> Timestamp {
        let j = self.jitter();
        let at = self
            .now()
            .saturating_add(self.config.backoff(self.fault_streak, j));
        self.fault_streak = self.fault_streak.saturating_add(1);
        at
    }

    /// When to try again after a write failed: the backoff that failure already planned.
    fn after_write_failure(&mut self) -> Timestamp {
        match self.write_retry_at {
            Some(at) => at,
            None => self.plan_retry(),
        }
    }

    /// The next moment this connection must wake.
    fn next_deadline(&self) -> Option<Timestamp> {
        let next = self.next_due()?;
        Some(self.write_retry_at.map_or(next, |hold| next.max(hold)))
    }

    /// The earliest of this connection's own deadlines.
    fn next_due(&self) -> Option<Timestamp> {
        match &self.record.status {
            ConnectionStatus::Expired(_) => None,
            ConnectionStatus::Error(r) if r.code == ReasonCode::TooManyRestarts => None,
            ConnectionStatus::Error(_) => Some(self.check_at),
            ConnectionStatus::Active => {
                let mut next = self.check_at;
                if let Some(r) = self.refresh_at {
                    next = next.min(r);
                }
                if !self.renewable() {
                    if let Some(e) = self.grant.as_ref().and_then(|g| g.expires_at) {
                        next = next.min(e);
                        if !self.warned {
                            next = next.min(e.saturating_sub(self.config.expiring_soon_warning));
                        }
                    }
                }
                Some(next)
            }
        }
    }

    fn rearm(&mut self, myself: &ActorRef<ConnectionMsg>) {
        let next = self.next_deadline();
        if let (Some((at, _)), Some(n)) = (&self.timer, next) {
            if *at == n {
                return;
            }
        }
        if let Some((_, handle)) = self.timer.take() {
            handle.abort();
        }
        if let Some(at) = next {
            let delay = self.now().until(at);
            let handle = myself.send_after(delay, || ConnectionMsg::Wake);
            self.timer = Some((at, handle));
        }
    }

    /// Commits durably; the store publishes the events once they are on disk. After a
    /// failed write every deadline waits for a backoff, so a deadline the write was
    /// meant to settle (an expiry, a warning, a dead grant) is not retried in a loop.
    async fn persist(&mut self, batch: Batch) -> Result<(), EngineError> {
        match self
            .health
            .commit(&self.store, batch, Durability::Durable)
            .await
        {
            Ok(_) => {
                self.write_retry_at = None;
                Ok(())
            }
            Err(e) => {
                if matches!(e, social_studio_storage::StoreError::Fenced { .. }) {
                    self.fenced = true;
                }
                self.write_retry_at = Some(self.plan_retry());
                Err(e.into())
            }
        }
    }

    /// Persist, record, broadcast, then tell the queue — in that order.
    async fn set_status(&mut self, status: ConnectionStatus) -> Result<(), EngineError> {
        if self.record.status == status {
            return Ok(());
        }
        let from = self.record.status.clone();
        let now = self.now();
        let mut record = self.record.clone();
        record.status = status.clone();
        record.status_since = now;
        let mut b = self.batch();
        b.put_connection(&record).event(
            Event::new(now, self.key().clone(), EventKind::ConnectionStatus)
                .transition(Some(from.label()), Some(status.label()))
                .reason(status.reason().cloned()),
        );
        if status.is_active() {
            b.event(
                Event::new(now, self.key().clone(), EventKind::Recovered)
                    .transition(Some(from.label()), Some(StateLabel::Active))
                    .reason(from.reason().cloned()),
            );
        }
        if let Err(e) = self.persist(b).await {
            // Nothing changed: the next check classifies again (after a backoff, so a
            // failing disk is not asked in a loop) and makes the change then.
            tracing::warn!(connection = %self.key(), error = %e, "a status change could not be stored; it is tried again");
            if let Some(retry) = self.write_retry_at {
                self.check_at = self.check_at.min(retry);
            }
            return Err(e);
        }
        self.record = record;
        self.tell_queue(status);
        Ok(())
    }

    /// Tells the platform queue to pause or resume this connection's posts, as `status`
    /// wants.
    fn tell_queue(&self, status: ConnectionStatus) {
        let msg = match status {
            ConnectionStatus::Active => QueueMsg::Resume {
                key: self.key().clone(),
            },
            ConnectionStatus::Expired(r) | ConnectionStatus::Error(r) => QueueMsg::Pause {
                key: self.key().clone(),
                reason: r,
            },
        };
        let _ = self.queue.cast(msg);
    }

    /// Stores a new grant (and clears any refresh marker) durably before it is used,
    /// with `record` as the connection's record around it.
    /// Stores the author's choice of targets (those still listed, in their listed order)
    /// with a `TargetsChosen` event; a choice equal to the current one changes nothing.
    async fn choose_targets(&mut self, ids: Vec<String>) -> Result<ConnectionView, EngineError> {
        let chosen: Vec<String> = self
            .record
            .targets
            .iter()
            .filter(|t| ids.contains(&t.id))
            .map(|t| t.id.clone())
            .collect();
        if chosen != self.record.chosen_targets {
            let mut record = self.record.clone();
            record.chosen_targets = chosen;
            let mut b = self.batch();
            b.put_connection(&record).event(
                Event::new(self.now(), self.key().clone(), EventKind::TargetsChosen)
                    .detail(record.chosen_targets.join(",")),
            );
            self.persist(b).await?;
            self.record = record;
        }
        Ok(self.view())
    }

    async fn install_grant(
        &mut self,
        grant: Grant,
        mut record: Connection,
        kind: EventKind,
    ) -> Result<(), EngineError> {
        record.refresh_in_flight = None;
        record.grant = Some(grant.facts());
        let mut b = self.batch();
        b.put_grant(self.key(), &grant)
            .put_connection(&record)
            .event(
                Event::new(self.now(), self.key().clone(), kind).detail(
                    grant
                        .expires_at
                        .map(|e| format!("valid until {e}"))
                        .unwrap_or_default(),
                ),
            );
        self.persist(b).await?;
        self.record = record;
        self.grant = Some(grant);
        self.grant_unstored = false;
        self.warned = false;
        self.answer_lost = false;
        self.fault_streak = 0;
        self.plan_refresh();
        Ok(())
    }

    fn sent_fingerprint(grant: &Grant) -> [u8; 8] {
        grant
            .refresh_fingerprint()
            .unwrap_or_else(|| fingerprint(grant.access_token.expose()))
    }

    async fn mark_refresh_in_flight(&mut self, grant: &Grant) -> Result<(), EngineError> {
        let mut record = self.record.clone();
        record.refresh_in_flight = Some(RefreshInFlight {
            started_at: self.now(),
            token_fingerprint: Self::sent_fingerprint(grant),
        });
        let mut b = self.batch();
        b.put_connection(&record);
        self.persist(b).await?;
        self.record = record;
        Ok(())
    }

    async fn clear_refresh_marker(&mut self) -> Result<(), EngineError> {
        if self.record.refresh_in_flight.is_some() {
            let mut record = self.record.clone();
            record.refresh_in_flight = None;
            let mut b = self.batch();
            b.put_connection(&record);
            self.persist(b).await?;
            self.record = record;
        }
        Ok(())
    }

    /// Stores the rotated grant whose store failed, if there is one. `false`: it is still
    /// not stored, and no platform call may be made (a refresh would send the spent token;
    /// a crash after any other call would lose the only working grant).
    async fn store_unstored_grant(&mut self) -> bool {
        if !self.grant_unstored {
            return true;
        }
        let Some(grant) = self.grant.clone() else {
            self.grant_unstored = false;
            return true;
        };
        match self
            .install_grant(grant, self.record.clone(), EventKind::GrantRenewed)
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(connection = %self.key(), %error, "the rotated grant still cannot be stored");
                false
            }
        }
    }

    /// One refresh, with rotation safety. `Ok(true)`: a fresh grant is installed.
    /// `Ok(false)`: a passing fault; a retry is planned and the connection stays Active.
    /// `Err(reason)`: the connection left Active with that reason.
    async fn refresh(&mut self) -> Result<bool, Reason> {
        if self.grant_unstored {
            // The grant in hand is already fresh: it needs storing, not renewing.
            if self.store_unstored_grant().await {
                return Ok(true);
            }
            self.refresh_at = Some(self.after_write_failure());
            return Ok(false);
        }
        let Some(grant) = self.grant.clone() else {
            return Err(Reason::new(ReasonCode::AuthorizationInvalid));
        };
        if self.mark_refresh_in_flight(&grant).await.is_err() {
            // Without the marker a crash could not be recognised: do not send.
            self.refresh_at = Some(self.after_write_failure());
            return Ok(false);
        }
        let mut resent = false;
        loop {
            match self.port.refresh(&grant).await {
                Ok(new) => {
                    let record = self.record.clone();
                    if let Err(error) = self
                        .install_grant(new.clone(), record, EventKind::GrantRenewed)
                        .await
                    {
                        // The platform has rotated: the old refresh token is spent and
                        // this is the only grant that works. Keep it, and store it before
                        // anything else reaches the platform. (The stored marker stays:
                        // a crash before the store holds can only resend.)
                        tracing::warn!(connection = %self.key(), %error, "a rotated grant could not be stored; it is kept and stored before the next call");
                        self.grant = Some(new);
                        self.grant_unstored = true;
                        self.warned = false;
                        self.answer_lost = false;
                        self.refresh_at = Some(self.after_write_failure());
                        return Ok(false);
                    }
                    return Ok(true);
                }
                Err(PortError::Unavailable {
                    maybe_delivered: true,
                    detail,
                }) => {
                    self.answer_lost = true;
                    if !resent {
                        // The old token may be spent, but it is the only way back: resend
                        // it once, now.
                        resent = true;
                        tracing::warn!(connection = %self.key(), %detail, "refresh answer lost; resending once");
                        continue;
                    }
                    self.refresh_at = Some(self.plan_retry());
                    return Ok(false);
                }
                Err(PortError::Unavailable { .. }) | Err(PortError::RateLimited { .. }) => {
                    let _ = self.clear_refresh_marker().await;
                    self.refresh_at = Some(self.plan_retry());
                    return Ok(false);
                }
                Err(PortError::GrantDead(reason)) | Err(PortError::ContentRejected(reason)) => {
                    return self.refresh_rejected(&grant, reason).await;
                }
                Err(PortError::Unauthorized) => {
                    return self
                        .refresh_rejected(&grant, Reason::new(ReasonCode::AuthorizationInvalid))
                        .await;
                }
                Err(PortError::RequirementUnmet(reason)) => {
                    let _ = self.clear_refresh_marker().await;
                    let _ = self
                        .set_status(ConnectionStatus::Error(reason.clone()))
                        .await;
                    return Err(reason);
                }
            }
        }
    }

    /// The platform rejected the refresh. Another path may have rotated the grant: reload
    /// it and check it before declaring the connection Expired.
    async fn refresh_rejected(&mut self, sent: &Grant, reason: Reason) -> Result<bool, Reason> {
        if let Ok(Some(stored)) = self.store.grant(self.key()).await {
            if Self::sent_fingerprint(&stored) != Self::sent_fingerprint(sent)
                && self.port.check(&stored).await.is_ok()
            {
                self.grant = Some(stored);
                let _ = self.clear_refresh_marker().await;
                self.plan_refresh();
                return Ok(true);
            }
        }
        let reason = if self.answer_lost {
            Reason {
                code: ReasonCode::RefreshInterrupted,
                platform_message: reason.platform_message,
            }
        } else {
            reason
        };
        self.answer_lost = false;
        let _ = self.clear_refresh_marker().await;
        let _ = self
            .set_status(ConnectionStatus::Expired(reason.clone()))
            .await;
        Err(reason)
    }

    /// Health check. Returns the classified failure when the connection left Active.
    async fn check(&mut self) -> Result<(), Reason> {
        let Some(grant) = self.grant.clone() else {
            let r = Reason::new(ReasonCode::AuthorizationInvalid);
            let _ = self.set_status(ConnectionStatus::Expired(r.clone())).await;
            return Err(r);
        };
        let mut refreshed = false;
        loop {
            let grant = if refreshed {
                self.grant.clone().unwrap_or_else(|| grant.clone())
            } else {
                grant.clone()
            };
            if !self.store_unstored_grant().await {
                self.check_at = self.after_write_failure();
                return Ok(());
            }
            match self.port.check(&grant).await {
                Ok(_) => {
                    let now = self.now();
                    self.last_checked = Some(now);
                    self.fault_streak = 0;
                    self.plan_check(now);
                    if matches!(&self.record.status, ConnectionStatus::Error(r) if r.code != ReasonCode::TooManyRestarts)
                    {
                        let _ = self.set_status(ConnectionStatus::Active).await;
                    }
                    return Ok(());
                }
                Err(PortError::Unauthorized) if !refreshed && self.renewable() => {
                    refreshed = true;
                    match self.refresh().await {
                        Ok(true) => continue,
                        // The refresh failed in passing and is planned again; the check
                        // waits too, or the next wake would check (and refresh) at once.
                        Ok(false) => {
                            self.check_at = self.plan_retry();
                            return Ok(());
                        }
                        Err(r) => return Err(r),
                    }
                }
                Err(PortError::Unauthorized) => {
                    let r = if self
                        .grant
                        .as_ref()
                        .and_then(|g| g.expires_at)
                        .is_some_and(|e| e <= self.now())
                    {
                        self.port.expiry_reason()
                    } else {
                        Reason::new(ReasonCode::AuthorizationInvalid)
                    };
                    let _ = self.set_status(ConnectionStatus::Expired(r.clone())).await;
                    return Err(r);
                }
                Err(PortError::GrantDead(r)) => {
                    let _ = self.set_status(ConnectionStatus::Expired(r.clone())).await;
                    return Err(r);
                }
                Err(PortError::RequirementUnmet(r)) => {
                    let _ = self.set_status(ConnectionStatus::Error(r.clone())).await;
                    return Err(r);
                }
                Err(PortError::Unavailable { .. })
                | Err(PortError::RateLimited { .. })
                | Err(PortError::ContentRejected(_)) => {
                    self.check_at = self.plan_retry();
                    return Ok(());
                }
            }
        }
    }

    async fn on_wake(&mut self) {
        let now = self.now();
        if !self.record.status.is_active() {
            if now >= self.check_at {
                let _ = self.check().await;
            }
            return;
        }
        if self.renewable() {
            if self.refresh_at.is_some_and(|r| r <= now) && self.refresh().await.is_err() {
                return;
            }
        } else if let Some(expires) = self.grant.as_ref().and_then(|g| g.expires_at) {
            if expires <= now {
                let reason = self.port.expiry_reason();
                let _ = self.set_status(ConnectionStatus::Expired(reason)).await;
                return;
            }
            if !self.warned && now >= expires.saturating_sub(self.config.expiring_soon_warning) {
                self.warn_expiring(expires).await;
            }
        }
        if now >= self.check_at {
            let _ = self.check().await;
        }
    }

    async fn warn_expiring(&mut self, expires: Timestamp) {
        let detail = format!(
            "the authorization lapses at {expires} and cannot be renewed without the author"
        );
        // Not repeated after a restart: the newest events say whether it already went out.
        let already = self
            .store
            .events_of_connection(self.key(), social_studio_storage::EventPage::newest(20))
            .await
            .map(|es| {
                es.iter().any(|e| {
                    e.kind == EventKind::ExpiringSoon && e.detail.as_deref() == Some(&detail)
                })
            })
            .unwrap_or(false);
        if !already {
            let mut b = self.batch();
            b.event(
                Event::new(self.now(), self.key().clone(), EventKind::ExpiringSoon)
                    .transition(Some(StateLabel::Active), Some(StateLabel::Active))
                    .reason(Some(self.port.expiry_reason()))
                    .detail(detail),
            );
            if self.persist(b).await.is_err() {
                return;
            }
        }
        self.warned = true;
    }

    async fn publish(&mut self, post: &Post) -> PublishOutcome {
        if let Some(reason) = self.record.status.reason() {
            // The queue still dispatches here: the pause this connection asked for has not
            // arrived, or did not hold (its write failed). Asked again; a pause that holds
            // already costs the queue nothing.
            self.tell_queue(self.record.status.clone());
            return PublishOutcome::NotActive(reason.clone());
        }
        // A limit answered to an earlier publish still holds for the ones that were
        // already on their way.
        let now = self.now();
        let app_wide = Timestamp::from_unix_millis(
            self.platform_limit
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        if app_wide > now {
            return PublishOutcome::RateLimited {
                until: app_wide,
                scope: LimitScope::Platform,
            };
        }
        if let Some(until) = self.limited_until.filter(|u| *u > now) {
            return PublishOutcome::RateLimited {
                until,
                scope: LimitScope::Connection,
            };
        }
        let mut refreshed = false;
        loop {
            if !self.store_unstored_grant().await {
                let j = self.jitter();
                let at = self
                    .now()
                    .saturating_add(self.config.backoff(post.attempts.saturating_sub(1), j));
                return PublishOutcome::Retry {
                    at,
                    reason: Reason::with_platform_message(
                        ReasonCode::PlatformUnavailable,
                        "the renewed authorization could not be stored yet",
                    ),
                };
            }
            let Some(grant) = self.grant.clone() else {
                return PublishOutcome::NotActive(Reason::new(ReasonCode::AuthorizationInvalid));
            };
            let result = self.port.publish(&grant, post).await;
            match result {
                Ok(receipt) => return PublishOutcome::Published(receipt),
                Err(PortError::ContentRejected(r)) => return PublishOutcome::Rejected(r),
                Err(PortError::RateLimited { retry_after, scope }) => {
                    let until = self.now().saturating_add(retry_after);
                    match scope {
                        LimitScope::Connection => self.limited_until = Some(until),
                        LimitScope::Platform => {
                            self.platform_limit.fetch_max(
                                until.unix_millis(),
                                std::sync::atomic::Ordering::Relaxed,
                            );
                        }
                    }
                    return PublishOutcome::RateLimited { until, scope };
                }
                Err(PortError::Unavailable {
                    maybe_delivered,
                    detail,
                }) => {
                    if maybe_delivered && !self.port.idempotent_publish() {
                        tracing::warn!(connection = %self.key(), post = %post.id, %detail, "publish answer lost");
                        return PublishOutcome::Unconfirmed;
                    }
                    let j = self.jitter();
                    let at = self
                        .now()
                        .saturating_add(self.config.backoff(post.attempts.saturating_sub(1), j));
                    return PublishOutcome::Retry {
                        at,
                        reason: Reason::with_platform_message(
                            ReasonCode::PlatformUnavailable,
                            detail,
                        ),
                    };
                }
                Err(PortError::GrantDead(r)) => {
                    let _ = self.set_status(ConnectionStatus::Expired(r.clone())).await;
                    return PublishOutcome::NotActive(r);
                }
                Err(PortError::RequirementUnmet(r)) => {
                    let _ = self.set_status(ConnectionStatus::Error(r.clone())).await;
                    return PublishOutcome::NotActive(r);
                }
                Err(PortError::Unauthorized) if !refreshed => {
                    refreshed = true;
                    if self.renewable() {
                        match self.refresh().await {
                            Ok(true) => continue,
                            Ok(false) => {
                                let at = self.refresh_at.unwrap_or_else(|| self.now());
                                return PublishOutcome::Retry {
                                    at,
                                    reason: Reason::new(ReasonCode::PlatformUnavailable),
                                };
                            }
                            Err(r) => return PublishOutcome::NotActive(r),
                        }
                    }
                    // Not renewable: let the check classify why the token was refused.
                    match self.check().await {
                        Ok(()) if self.record.status.is_active() => continue,
                        Ok(()) => {
                            return PublishOutcome::NotActive(
                                self.record
                                    .status
                                    .reason()
                                    .cloned()
                                    .unwrap_or(Reason::new(ReasonCode::AuthorizationInvalid)),
                            )
                        }
                        Err(r) => return PublishOutcome::NotActive(r),
                    }
                }
                Err(PortError::Unauthorized) => {
                    let r = Reason::new(ReasonCode::AuthorizationInvalid);
                    let _ = self.set_status(ConnectionStatus::Expired(r.clone())).await;
                    return PublishOutcome::NotActive(r);
                }
            }
        }
    }

    /// After a crash with a refresh in flight: complete it where the platform allows, or
    /// name the reason. Never silent.
    async fn recover_refresh(&mut self, marker: RefreshInFlight) {
        let Some(grant) = self.grant.clone() else {
            return;
        };
        if Self::sent_fingerprint(&grant) != marker.token_fingerprint {
            // The rotated grant was stored; only the marker was left behind.
            let _ = self.clear_refresh_marker().await;
            return;
        }
        let age = marker.started_at.until(self.now());
        let within_grace =
            matches!(self.port.lost_refresh_policy(), LostRefreshPolicy::GracePeriod(g) if age < g);
        tracing::warn!(connection = %self.key(), within_grace, "a refresh was in flight at the last stop; resending it once");
        // Resending the only token we have is the one way back. Where the platform has no
        // grace period a rejection is named `refresh_interrupted`.
        self.answer_lost = !within_grace;
        let _ = self.refresh().await;
    }
}

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ConnectionArgs,
    ) -> Result<ConnectionState, ActorProcessingErr> {
        let now = args.clock.now();
        let epoch = args.epoch;
        let mut state = ConnectionState {
            record: args.record,
            grant: args.grant,
            store: args.store,
            health: args.health,
            epoch,
            fenced: false,
            port: args.port,
            clock: args.clock,
            config: args.config,
            queue: args.queue,
            rng: SmallRng::seed_from_u64(args.seed),
            timer: None,
            refresh_at: None,
            check_at: now,
            last_checked: None,
            fault_streak: 0,
            answer_lost: false,
            warned: false,
            grant_unstored: false,
            write_retry_at: None,
            limited_until: None,
            platform_limit: args.platform_limit,
        };
        // The first check lands anywhere in the coming interval: a fleet that boots
        // together does not check together.
        let first = state.jitter();
        state.check_at = now.saturating_add(state.config.health_check_interval.mul_f64(first));
        state.plan_refresh();
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        if state.grant.is_none() && state.record.status.is_active() {
            let _ = state
                .set_status(ConnectionStatus::Expired(Reason::with_platform_message(
                    ReasonCode::AuthorizationInvalid,
                    "the stored authorization could not be read",
                )))
                .await;
        }
        if let Some(marker) = state.record.refresh_in_flight.clone() {
            let span = tracing::info_span!(
                "connection",
                pen_name = state.key().pen_name.as_str(),
                platform = state.key().platform.id(),
                handling = "start"
            );
            state.recover_refresh(marker).instrument(span).await;
        }
        // A grant that lapsed while the engine was down: refresh (or expire) now.
        state.rearm(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, h)) = state.timer.take() {
            h.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: ConnectionMsg,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        // The handler's state machine (refresh, check, publish, disconnect: ~2.5 KiB) is
        // boxed for the length of one message instead of being held inline, all the time,
        // in every idle actor's message loop. It runs in the connection's span, so every
        // line logged on the way — the adapter's, the outbound call's — names the pen
        // name, the platform and the post.
        let span = message_span(state.key(), &msg);
        let handled = Box::pin(handle_message(myself.clone(), msg, state))
            .instrument(span)
            .await;
        if state.fenced {
            tracing::warn!(connection = %state.key(), "another node owns this connection now: its actor here stops");
            myself.stop(Some("lease lost".into()));
        }
        handled
    }
}

/// The span one message is handled in: `pen_name` and `platform`, and `post` for a
/// publish. Info for what may reach the platform, so the adapter's lines carry it at the
/// usual level; debug for what only reads or rewires the actor.
fn message_span(key: &ConnectionKey, msg: &ConnectionMsg) -> tracing::Span {
    let (pen_name, platform) = (key.pen_name.as_str(), key.platform.id());
    match msg {
        ConnectionMsg::Publish { post, .. } => {
            tracing::info_span!("connection", pen_name, platform, post = %post.id, handling = "publish")
        }
        ConnectionMsg::Status(_) | ConnectionMsg::Rebind(_) => {
            tracing::debug_span!("connection", pen_name, platform)
        }
        ConnectionMsg::Wake => {
            tracing::info_span!("connection", pen_name, platform, handling = "wake")
        }
        ConnectionMsg::CheckBeforePost => {
            tracing::info_span!(
                "connection",
                pen_name,
                platform,
                handling = "check_before_post"
            )
        }
        ConnectionMsg::Verify(_) => {
            tracing::info_span!("connection", pen_name, platform, handling = "verify")
        }
        ConnectionMsg::Reconnect { .. } => {
            tracing::info_span!("connection", pen_name, platform, handling = "reconnect")
        }
        ConnectionMsg::Disconnect(_) => {
            tracing::info_span!("connection", pen_name, platform, handling = "disconnect")
        }
        ConnectionMsg::ChooseTargets { .. } => {
            tracing::info_span!(
                "connection",
                pen_name,
                platform,
                handling = "choose_targets"
            )
        }
    }
}

async fn handle_message(
    myself: ActorRef<ConnectionMsg>,
    msg: ConnectionMsg,
    state: &mut ConnectionState,
) -> Result<(), ActorProcessingErr> {
    {
        match msg {
            ConnectionMsg::Publish { post, queue } => {
                let outcome = state.publish(&post).await;
                let _ = queue.cast(QueueMsg::Outcome { post, outcome });
            }
            ConnectionMsg::Wake => {
                state.timer = None;
                state.on_wake().await;
            }
            ConnectionMsg::CheckBeforePost => {
                let now = state.now();
                let fresh = state
                    .last_checked
                    .is_some_and(|t| t.saturating_add(state.config.precheck_lead) > now);
                if state.record.status.is_active() && !fresh {
                    let _ = state.check().await;
                }
            }
            ConnectionMsg::Status(reply) => {
                let _ = reply.send(state.view());
            }
            ConnectionMsg::ChooseTargets { targets, reply } => {
                let _ = reply.send(state.choose_targets(targets).await);
            }
            ConnectionMsg::Verify(reply) => {
                let result = async {
                    if state.record.status.is_active() && state.renewable() {
                        if let Err(r) = state.refresh().await {
                            return Err(EngineError::ConnectionNotActive {
                                status: state.record.status.label(),
                                reason: r,
                            });
                        }
                    }
                    match state.check().await {
                        Ok(()) => Ok(state.view()),
                        Err(r) => Err(EngineError::ConnectionNotActive {
                            status: state.record.status.label(),
                            reason: r,
                        }),
                    }
                }
                .await;
                let _ = reply.send(result);
            }
            ConnectionMsg::Reconnect {
                account,
                targets,
                grant,
                replace,
                reply,
            } => {
                if account.platform_id != state.record.account.platform_id && !replace {
                    let reason = Reason::with_platform_message(
                        ReasonCode::WrongAccount,
                        format!(
                            "connected as {}, the reconnect signed in as {}",
                            state.record.account.handle, account.handle
                        ),
                    );
                    let _ = reply.send(Err(EngineError::WrongAccount {
                        key: state.key().clone(),
                        reason,
                    }));
                } else {
                    let mut record = state.record.clone();
                    record.account = account;
                    record.set_targets(targets);
                    let result = async {
                        state
                            .install_grant(*grant, record, EventKind::GrantRenewed)
                            .await?;
                        if state.record.status.is_active() {
                            // Already Active: no status change will tell the queue, yet a
                            // resume of its posts may not have held before. Told again.
                            state.tell_queue(ConnectionStatus::Active);
                        }
                        state.set_status(ConnectionStatus::Active).await?;
                        let now = state.now();
                        state.last_checked = Some(now);
                        state.plan_check(now);
                        Ok(state.view())
                    }
                    .await;
                    let _ = reply.send(result);
                }
            }
            ConnectionMsg::Rebind(queue) => {
                state.queue = queue;
            }
            ConnectionMsg::Disconnect(reply) => {
                let revoke = match &state.grant {
                    Some(g) => state.port.revoke(g).await,
                    None => Ok(RevokeOutcome::NotSupported),
                };
                let result = async {
                    let posts_failed = state
                        .queue
                        .call(
                            |r| QueueMsg::Disconnected {
                                key: state.key().clone(),
                                reply: r,
                            },
                            None,
                        )
                        .await?
                        .success_or_unavailable()??;
                    let mut b = state.batch();
                    b.delete_connection(state.key())
                        .delete_grant(state.key())
                        .event(
                            Event::new(
                                state.now(),
                                state.key().clone(),
                                EventKind::ConnectionStatus,
                            )
                            .transition(
                                Some(state.record.status.label()),
                                Some(StateLabel::NotConnected),
                            )
                            .reason(Some(Reason::new(ReasonCode::AccountDisconnected))),
                        );
                    state.persist(b).await?;
                    Ok(DisconnectReport {
                        revoke,
                        posts_failed,
                    })
                }
                .await;
                let ok = result.is_ok();
                let _ = reply.send(result);
                if ok {
                    myself.stop(Some(crate::messages::DISCONNECTED.into()));
                    return Ok(());
                }
            }
        }
        state.rearm(&myself);
        Ok(())
    }
}

/// Turns a `CallResult` into the answer or an engine error.
pub(crate) trait CallResultExt<T> {
    fn success_or_unavailable(self) -> Result<T, EngineError>;
}

impl<T> CallResultExt<T> for ractor::rpc::CallResult<T> {
    fn success_or_unavailable(self) -> Result<T, EngineError> {
        match self {
            ractor::rpc::CallResult::Success(v) => Ok(v),
            ractor::rpc::CallResult::Timeout => Err(EngineError::Unavailable("timed out".into())),
            ractor::rpc::CallResult::SenderError => {
                Err(EngineError::Unavailable("the actor stopped".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
