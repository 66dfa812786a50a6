//! In-process fakes of the platform port and a store that fails on command, for unit
//! tests, examples and benchmarks. Not part of the engine's API: compiled only for this
//! crate's tests and behind the `testkit` feature, which only dev-dependencies enable.
//!
//! [`FakePlatform`] behaves like a platform with rotating single-use refresh tokens (as
//! X and TikTok do), optionally a grace period for a resent refresh token (Bluesky), and
//! lets a test act as the platform or its user: revoke, expire, rate-limit, fail, lose
//! answers, hang, or panic. Time comes from the engine's clock, so it runs under paused
//! tokio time.
//!
//! [`FaultyStore`] is the store port over a real store, refusing the commits a test
//! chooses until told to heal: a failed write, for what memory and disk must agree on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use social_studio_storage::{
    fingerprint, Account, AccountKind, Grant, Platform, Post, PostId, Reason, ReasonCode, Receipt,
    Secret, Timestamp,
};

use crate::{Clock, LimitScope, LostRefreshPolicy, PlatformPort, PortError, RevokeOutcome};

/// Which call a scripted fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Refresh,
    Check,
    Publish,
}

/// A scripted misbehaviour for the next call of an [`Op`].
#[derive(Debug, Clone)]
pub enum Fault {
    /// A 5xx or refused connection: nothing happened at the platform.
    Unavailable,
    /// The call is carried out, but its answer is lost.
    AnswerLost,
    /// 429 with a retry-after, for a scope.
    RateLimited(Duration, LimitScope),
    /// Wait this long (tokio time), then behave normally.
    Stall(Duration),
    /// Never answer.
    Hang,
    /// The adapter panics (a bug), to exercise supervision.
    Panic,
    /// Answer with exactly this classified error.
    Error(PortError),
}

#[derive(Debug, Clone)]
pub struct Published {
    pub post: PostId,
    pub text: String,
    pub at: Timestamp,
    pub access_token_fingerprint: [u8; 8],
}

/// One call the platform received, for checking timing (backoff) afterwards.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: Op,
    pub at: Timestamp,
    /// `ok`, `rate_limited`, `unavailable`, `answer_lost`, `unauthorized`, `dead`, `error`.
    pub result: &'static str,
    /// For `rate_limited`: the retry-after it asked for.
    pub retry_after: Option<Duration>,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// access token → (user, expires_at)
    access: HashMap<String, (String, Timestamp)>,
    /// refresh token → (user, family, spent, successor)
    refresh: HashMap<String, RefreshToken>,
    revoked_families: std::collections::HashSet<u64>,
    revoked_users: HashMap<String, Reason>,
    faults: HashMap<Op, VecDeque<Fault>>,
    published: Vec<Published>,
    refresh_calls: u64,
    spent_token_sends: u64,
    publish_calls: u64,
    check_calls: u64,
    next_family: u64,
    counter: u64,
}

#[derive(Clone)]
struct RefreshToken {
    user: String,
    family: u64,
    spent_at: Option<Timestamp>,
    successor: Option<(String, String)>,
}

/// A fake platform. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakePlatform {
    platform: Platform,
    clock: Arc<dyn Clock>,
    access_lifetime: Duration,
    grace: Option<Duration>,
    refreshable: bool,
    idempotent: bool,
    state: Arc<Mutex<State>>,
}

impl FakePlatform {
    /// A platform with rotating refresh tokens and `access_lifetime` access tokens.
    pub fn new(
        platform: Platform,
        clock: Arc<dyn Clock>,
        access_lifetime: Duration,
    ) -> FakePlatform {
        FakePlatform {
            platform,
            clock,
            access_lifetime,
            grace: None,
            refreshable: true,
            idempotent: false,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// A resent refresh token gets the same successor within `grace` (Bluesky).
    pub fn with_grace_period(mut self, grace: Duration) -> FakePlatform {
        self.grace = Some(grace);
        self
    }

    /// Grants without refresh tokens that lapse at `access_lifetime` (Instagram, LinkedIn
    /// self-serve).
    pub fn without_refresh(mut self) -> FakePlatform {
        self.refreshable = false;
        self
    }

    pub fn with_idempotent_publish(mut self) -> FakePlatform {
        self.idempotent = true;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a fresh grant for `user`, as a finished OAuth flow would.
    pub fn issue_grant(&self, user: &str) -> Grant {
        let now = self.clock.now();
        let mut s = self.lock();
        s.revoked_users.remove(user);
        s.next_family += 1;
        let family = s.next_family;
        let (access, refresh) = self.mint(&mut s, user, family, now);
        self.grant_from(access, refresh, now)
    }

    fn mint(
        &self,
        s: &mut State,
        user: &str,
        family: u64,
        now: Timestamp,
    ) -> (String, Option<String>) {
        s.counter += 1;
        let access = format!("at-{}-{user}-{}", self.platform, s.counter);
        s.access.insert(
            access.clone(),
            (user.to_string(), now.saturating_add(self.access_lifetime)),
        );
        let refresh = self.refreshable.then(|| {
            let r = format!("rt-{}-{user}-{}", self.platform, s.counter);
            s.refresh.insert(
                r.clone(),
                RefreshToken {
                    user: user.to_string(),
                    family,
                    spent_at: None,
                    successor: None,
                },
            );
            r
        });
        (access, refresh)
    }

    fn grant_from(&self, access: String, refresh: Option<String>, now: Timestamp) -> Grant {
        Grant {
            access_token: Secret::new(access),
            refresh_token: refresh.map(Secret::new),
            token_type: "bearer".into(),
            scopes: vec!["post".into()],
            issued_at: now,
            expires_at: Some(now.saturating_add(self.access_lifetime)),
            refresh_expires_at: None,
            target_tokens: Vec::new(),
            endpoint: None,
        }
    }

    pub fn account(&self, user: &str) -> Account {
        Account {
            platform_id: format!("id-{user}"),
            handle: format!("@{user}"),
            display_name: user.to_string(),
            kind: AccountKind::Personal,
            picture: None,
        }
    }

    /// The user revoked the app: every token of theirs stops working.
    pub fn revoke_user(&self, user: &str, reason: ReasonCode) {
        self.lock().revoked_users.insert(
            user.to_string(),
            Reason::with_platform_message(reason, "revoked in the platform's settings"),
        );
    }

    /// Access tokens of `user` lapse now.
    pub fn expire_access(&self, user: &str) {
        let now = self.clock.now();
        for (u, exp) in self.lock().access.values_mut() {
            if u == user {
                *exp = now;
            }
        }
    }

    pub fn script(&self, op: Op, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.entry(op).or_default().extend(faults);
    }

    pub fn published(&self) -> Vec<Published> {
        self.lock().published.clone()
    }

    pub fn refresh_calls(&self) -> u64 {
        self.lock().refresh_calls
    }

    /// Refresh requests that carried an already-spent refresh token.
    pub fn spent_token_sends(&self) -> u64 {
        self.lock().spent_token_sends
    }

    pub fn publish_calls(&self) -> u64 {
        self.lock().publish_calls
    }

    /// How many scripted faults for `op` are still waiting for a call to take them.
    pub fn scripted(&self, op: Op) -> usize {
        self.lock().faults.get(&op).map_or(0, VecDeque::len)
    }

    pub fn check_calls(&self) -> u64 {
        self.lock().check_calls
    }

    /// Every call received, in order, with its result.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    fn record<T>(&self, op: Op, result: &Result<T, PortError>) {
        let (label, retry_after) = match result {
            Ok(_) => ("ok", None),
            Err(PortError::RateLimited { retry_after, .. }) => ("rate_limited", Some(*retry_after)),
            Err(PortError::Unavailable {
                maybe_delivered: true,
                ..
            }) => ("answer_lost", None),
            Err(PortError::Unavailable { .. }) => ("unavailable", None),
            Err(PortError::Unauthorized) => ("unauthorized", None),
            Err(PortError::GrantDead(_)) => ("dead", None),
            Err(_) => ("error", None),
        };
        let at = self.clock.now();
        self.lock().calls.push(Call {
            op,
            at,
            result: label,
            retry_after,
        });
    }

    async fn fault(&self, op: Op) -> Option<Fault> {
        let f = self.lock().faults.get_mut(&op).and_then(|q| q.pop_front());
        match f {
            Some(Fault::Stall(d)) => {
                tokio::time::sleep(d).await;
                None
            }
            Some(Fault::Hang) => {
                std::future::pending::<()>().await;
                None
            }
            Some(Fault::Panic) => panic!("fake adapter bug in {op:?}"),
            other => other,
        }
    }

    fn user_of(&self, s: &State, token: &str, now: Timestamp) -> Result<String, PortError> {
        let (user, exp) = s.access.get(token).ok_or(PortError::Unauthorized)?;
        if let Some(r) = s.revoked_users.get(user) {
            return Err(PortError::GrantDead(r.clone()));
        }
        if *exp <= now {
            return Err(PortError::Unauthorized);
        }
        Ok(user.clone())
    }
}

impl FakePlatform {
    async fn refresh_inner(&self, grant: &Grant) -> Result<Grant, PortError> {
        let fault = self.fault(Op::Refresh).await;
        if let Some(Fault::Error(e)) = fault {
            self.lock().refresh_calls += 1;
            return Err(e);
        }
        let now = self.clock.now();
        let mut s = self.lock();
        s.refresh_calls += 1;
        match fault {
            Some(Fault::Unavailable) => return Err(unavailable(false)),
            Some(Fault::RateLimited(d, scope)) => {
                return Err(PortError::RateLimited {
                    retry_after: d,
                    scope,
                })
            }
            _ => {}
        }
        let Some(token) = grant.refresh_token.as_ref().map(|t| t.expose().to_string()) else {
            return Err(PortError::GrantDead(Reason::new(ReasonCode::GrantExpired)));
        };
        let Some(rt) = s.refresh.get(&token).cloned() else {
            return Err(PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::AuthorizationInvalid,
                "invalid_grant",
            )));
        };
        if let Some(r) = s.revoked_users.get(&rt.user) {
            return Err(PortError::GrantDead(r.clone()));
        }
        if s.revoked_families.contains(&rt.family) {
            return Err(PortError::GrantDead(Reason::with_platform_message(
                ReasonCode::AuthorizationInvalid,
                "invalid_grant",
            )));
        }
        let result = match (rt.spent_at, &rt.successor) {
            (Some(spent), Some((a, r))) => {
                s.spent_token_sends += 1;
                if self.grace.is_some_and(|g| spent.until(now) < g) {
                    Ok(self.grant_from(a.clone(), Some(r.clone()), now))
                } else {
                    // Reuse of a rotated token: the whole family is revoked.
                    s.revoked_families.insert(rt.family);
                    Err(PortError::GrantDead(Reason::with_platform_message(
                        ReasonCode::RefreshTokenReused,
                        "refresh token reused",
                    )))
                }
            }
            _ => {
                let (a, r) = self.mint(&mut s, &rt.user, rt.family, now);
                let r = r.unwrap_or_default();
                if let Some(entry) = s.refresh.get_mut(&token) {
                    entry.spent_at = Some(now);
                    entry.successor = Some((a.clone(), r.clone()));
                }
                Ok(self.grant_from(a, Some(r), now))
            }
        };
        if matches!(fault, Some(Fault::AnswerLost)) {
            return Err(unavailable(true));
        }
        result
    }

    async fn check_inner(&self, grant: &Grant) -> Result<Account, PortError> {
        let fault = self.fault(Op::Check).await;
        if let Some(Fault::Error(e)) = fault {
            self.lock().check_calls += 1;
            return Err(e);
        }
        let now = self.clock.now();
        let mut s = self.lock();
        s.check_calls += 1;
        match fault {
            Some(Fault::Unavailable) | Some(Fault::AnswerLost) => return Err(unavailable(false)),
            Some(Fault::RateLimited(d, scope)) => {
                return Err(PortError::RateLimited {
                    retry_after: d,
                    scope,
                })
            }
            _ => {}
        }
        let user = self.user_of(&s, grant.access_token.expose(), now)?;
        drop(s);
        Ok(self.account(&user))
    }

    async fn publish_inner(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        let fault = self.fault(Op::Publish).await;
        if let Some(Fault::Error(e)) = fault {
            self.lock().publish_calls += 1;
            return Err(e);
        }
        let now = self.clock.now();
        let mut s = self.lock();
        s.publish_calls += 1;
        match fault {
            Some(Fault::Unavailable) => return Err(unavailable(false)),
            Some(Fault::RateLimited(d, scope)) => {
                return Err(PortError::RateLimited {
                    retry_after: d,
                    scope,
                })
            }
            _ => {}
        }
        self.user_of(&s, grant.access_token.expose(), now)?;
        if post.content.text.contains("#rejected") {
            return Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                "duplicate content",
            )));
        }
        let already = s.published.iter().any(|p| p.post == post.id);
        if !(self.idempotent && already) {
            s.published.push(Published {
                post: post.id,
                text: post.content.text.clone(),
                at: now,
                access_token_fingerprint: fingerprint(grant.access_token.expose()),
            });
        }
        if matches!(fault, Some(Fault::AnswerLost)) {
            return Err(unavailable(true));
        }
        Ok(Receipt {
            platform_post_id: format!("{}", s.published.len()),
            url: None,
        })
    }
}

fn unavailable(maybe_delivered: bool) -> PortError {
    PortError::Unavailable {
        detail: "503 Service Unavailable".into(),
        maybe_delivered,
    }
}

#[async_trait]
impl PlatformPort for FakePlatform {
    fn platform(&self) -> Platform {
        self.platform
    }

    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let result = self.refresh_inner(grant).await;
        self.record(Op::Refresh, &result);
        result
    }

    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        let result = self.check_inner(grant).await;
        self.record(Op::Check, &result);
        result
    }

    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        let result = self.publish_inner(grant, post).await;
        self.record(Op::Publish, &result);
        result
    }

    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        let mut s = self.lock();
        if let Some(rt) = grant
            .refresh_token
            .as_ref()
            .and_then(|t| s.refresh.get(t.expose()).cloned())
        {
            s.revoked_families.insert(rt.family);
        }
        s.access.remove(grant.access_token.expose());
        Ok(RevokeOutcome::Revoked)
    }

    fn renewable(&self, grant: &social_studio_storage::GrantFacts) -> bool {
        self.refreshable && grant.has_refresh_token
    }

    fn lost_refresh_policy(&self) -> LostRefreshPolicy {
        match self.grace {
            Some(g) => LostRefreshPolicy::GracePeriod(g),
            None => LostRefreshPolicy::ResendOnce,
        }
    }

    fn idempotent_publish(&self) -> bool {
        self.idempotent
    }
}

/// Opens a store for virtual-time runs: flush waits hold the paused clock still, and the
/// master key lives in a key file in `dir` so a reopen finds it.
pub fn open_store(
    dir: &std::path::Path,
) -> Result<social_studio_storage::SharedStore, social_studio_storage::StoreError> {
    let mut config = social_studio_storage::StoreConfig::new(dir);
    config.hold_virtual_time = true;
    config.background_flush_ms = None;
    Ok(Arc::new(social_studio_storage::SledStore::open(&config)?))
}

/// Waits for the first event matching `pred`, for at most `within` of (virtual) time.
pub async fn wait_for_event(
    rx: &mut tokio::sync::broadcast::Receiver<social_studio_storage::Event>,
    within: Duration,
    mut pred: impl FnMut(&social_studio_storage::Event) -> bool,
) -> Option<social_studio_storage::Event> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return Some(e),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok().flatten()
}

/// A post for `key` due at `due`.
pub fn post_due(key: &social_studio_storage::ConnectionKey, due: Timestamp, text: &str) -> Post {
    let mut p = social_studio_storage::fixtures::post(key, 0);
    p.due_at = due;
    p.content.text = text.to_string();
    p.created_at = due;
    p.updated_at = due;
    p
}

/// Which commits a [`FaultyStore`] refuses.
pub type CommitFilter = Arc<dyn Fn(&social_studio_storage::Batch) -> bool + Send + Sync>;

/// The store port over another store, refusing commits on command: a write failure (a
/// full disk, a failed fsync) that a test switches on and off, for the paths that must
/// keep memory and disk in agreement when a write does not hold. Reads and everything
/// else pass through. Cheap to clone; clones share the switch.
#[derive(Clone)]
pub struct FaultyStore {
    inner: social_studio_storage::SharedStore,
    filter: Arc<Mutex<Option<CommitFilter>>>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    /// Woken at every refusal, for [`FaultyStore::refused_reaches`].
    refusal: Arc<tokio::sync::Notify>,
    /// Commits still to apply and then report failed.
    apply_then_fail: Arc<std::sync::atomic::AtomicU32>,
    /// Lease renewals and acquisitions fail (a node cut off from the database, or
    /// paused): see [`FaultyStore::cut_leases`].
    leases_cut: Arc<std::sync::atomic::AtomicBool>,
    /// When the last renewal that went through was sent.
    last_renewal: Arc<Mutex<Option<std::time::Instant>>>,
}

impl FaultyStore {
    pub fn new(inner: social_studio_storage::SharedStore) -> FaultyStore {
        FaultyStore {
            inner,
            filter: Arc::new(Mutex::new(None)),
            refused: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            refusal: Arc::new(tokio::sync::Notify::new()),
            apply_then_fail: Arc::new(std::sync::atomic::AtomicU32::new(0)),
            leases_cut: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            last_renewal: Arc::new(Mutex::new(None)),
        }
    }

    /// When the last lease renewal that went through was sent (the node's platform-call
    /// gate closes `lease − margin` after it, unless another renewal follows).
    pub fn last_renewal(&self) -> Option<std::time::Instant> {
        *self.last_renewal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// While `cut`, the node's lease renewals and acquisitions fail as they do for a node
    /// that cannot reach the database or is paused; everything else passes through, so
    /// its writes meet the fence the other nodes moved.
    pub fn cut_leases(&self, cut: bool) {
        self.leases_cut
            .store(cut, std::sync::atomic::Ordering::SeqCst);
    }

    fn leases_reachable(&self) -> Result<(), social_studio_storage::StoreError> {
        if self.leases_cut.load(std::sync::atomic::Ordering::SeqCst) {
            Err(social_studio_storage::StoreError::Flush(
                "the database cannot be reached (cut by the test)".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// The next `n` commits are applied and then reported failed, as a store does whose
    /// write reached memory but whose flush to disk failed (sled after a failed fsync or
    /// a full disk: reads then show the change, though it is not durable and the caller
    /// was told it failed). They count as refused. Checked before [`Self::fail_commits`].
    pub fn apply_then_fail_next(&self, n: u32) {
        self.apply_then_fail
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on, refuses every commit for which `which` is true (nothing is applied).
    pub fn fail_commits(
        &self,
        which: impl Fn(&social_studio_storage::Batch) -> bool + Send + Sync + 'static,
    ) {
        *self.filter.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(which));
    }

    /// The fault clears: every commit goes through again.
    pub fn heal(&self) {
        *self.filter.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many commits were refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves once `n` commits have been refused in all. Raced against a (virtual) wait,
    /// it tells a writer that retries in a loop — which never lets paused time advance —
    /// from one that backs off.
    pub async fn refused_reaches(&self, n: u64) {
        loop {
            let refusal = self.refusal.notified();
            tokio::pin!(refusal);
            refusal.as_mut().enable();
            if self.refused() >= n {
                return;
            }
            refusal.await;
        }
    }

    /// Whether a batch stores a grant.
    pub fn stores_a_grant(batch: &social_studio_storage::Batch) -> bool {
        batch
            .ops()
            .iter()
            .any(|op| matches!(op, social_studio_storage::BatchOp::PutGrant(..)))
    }

    /// Whether a batch records an event of this kind.
    pub fn records(
        batch: &social_studio_storage::Batch,
        kind: social_studio_storage::EventKind,
    ) -> bool {
        batch
            .ops()
            .iter()
            .any(|op| matches!(op, social_studio_storage::BatchOp::Event(e) if e.kind == kind))
    }
}

#[async_trait]
impl social_studio_storage::Store for FaultyStore {
    fn commit(
        &self,
        batch: social_studio_storage::Batch,
        durability: social_studio_storage::Durability,
    ) -> social_studio_storage::CommitFuture {
        let apply_then_fail = self
            .apply_then_fail
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if apply_then_fail {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.refusal.notify_waiters();
            let applied = self.inner.commit(batch, durability);
            return Box::pin(async move {
                let _ = applied.await;
                Err(social_studio_storage::StoreError::Flush(
                    "injected flush failure after the write was applied".into(),
                ))
            });
        }
        let filter = self
            .filter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if filter.is_some_and(|refuse| refuse(&batch)) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.refusal.notify_waiters();
            return Box::pin(async {
                Err(social_studio_storage::StoreError::Flush(
                    "injected write failure".into(),
                ))
            });
        }
        self.inner.commit(batch, durability)
    }

    async fn sync(&self) -> Result<(), social_studio_storage::StoreError> {
        self.inner.sync().await
    }

    async fn purge_events_before(
        &self,
        before: social_studio_storage::Timestamp,
    ) -> Result<usize, social_studio_storage::StoreError> {
        self.inner.purge_events_before(before).await
    }

    async fn events_purged_through(&self) -> Result<u64, social_studio_storage::StoreError> {
        self.inner.events_purged_through().await
    }

    async fn purge_idempotency_before(
        &self,
        before: social_studio_storage::Timestamp,
    ) -> Result<usize, social_studio_storage::StoreError> {
        self.inner.purge_idempotency_before(before).await
    }

    async fn purge_finished_posts_before(
        &self,
        before: social_studio_storage::Timestamp,
    ) -> Result<usize, social_studio_storage::StoreError> {
        self.inner.purge_finished_posts_before(before).await
    }

    async fn backup(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<social_studio_storage::BackupSummary, social_studio_storage::StoreError> {
        self.inner.backup(out).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<social_studio_storage::Event> {
        self.inner.subscribe()
    }

    async fn claim(
        &self,
        key: &social_studio_storage::ConnectionKey,
    ) -> Result<social_studio_storage::Epoch, social_studio_storage::StoreError> {
        self.inner.claim(key).await
    }

    async fn connection(
        &self,
        key: &social_studio_storage::ConnectionKey,
    ) -> Result<Option<social_studio_storage::Connection>, social_studio_storage::StoreError> {
        self.inner.connection(key).await
    }

    async fn connections_of(
        &self,
        pen: &social_studio_storage::PenName,
    ) -> Result<
        social_studio_storage::Loaded<social_studio_storage::Connection>,
        social_studio_storage::StoreError,
    > {
        self.inner.connections_of(pen).await
    }

    async fn all_connections(
        &self,
    ) -> Result<
        social_studio_storage::Loaded<social_studio_storage::Connection>,
        social_studio_storage::StoreError,
    > {
        self.inner.all_connections().await
    }

    async fn connection_counts(
        &self,
    ) -> Result<social_studio_storage::ConnectionCounts, social_studio_storage::StoreError> {
        self.inner.connection_counts().await
    }

    async fn grant(
        &self,
        key: &social_studio_storage::ConnectionKey,
    ) -> Result<Option<Grant>, social_studio_storage::StoreError> {
        self.inner.grant(key).await
    }

    async fn post(&self, id: PostId) -> Result<Option<Post>, social_studio_storage::StoreError> {
        self.inner.post(id).await
    }

    async fn posts_of_connection(
        &self,
        key: &social_studio_storage::ConnectionKey,
    ) -> Result<social_studio_storage::Loaded<Post>, social_studio_storage::StoreError> {
        self.inner.posts_of_connection(key).await
    }

    async fn posts_of_pen(
        &self,
        pen: &social_studio_storage::PenName,
    ) -> Result<social_studio_storage::Loaded<Post>, social_studio_storage::StoreError> {
        self.inner.posts_of_pen(pen).await
    }

    async fn queued_posts(
        &self,
    ) -> Result<
        social_studio_storage::Loaded<social_studio_storage::PostStatus>,
        social_studio_storage::StoreError,
    > {
        self.inner.queued_posts().await
    }

    async fn post_counts(
        &self,
        key: &social_studio_storage::ConnectionKey,
    ) -> Result<social_studio_storage::PostCounts, social_studio_storage::StoreError> {
        self.inner.post_counts(key).await
    }

    async fn events_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<social_studio_storage::Event>, social_studio_storage::StoreError> {
        self.inner.events_after(seq, limit).await
    }

    async fn events_of_connection(
        &self,
        key: &social_studio_storage::ConnectionKey,
        page: social_studio_storage::EventPage,
    ) -> Result<Vec<social_studio_storage::Event>, social_studio_storage::StoreError> {
        self.inner.events_of_connection(key, page).await
    }

    async fn event(
        &self,
        seq: u64,
    ) -> Result<Option<social_studio_storage::Event>, social_studio_storage::StoreError> {
        self.inner.event(seq).await
    }

    async fn take_oauth_state(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<social_studio_storage::StateLookup, social_studio_storage::StoreError> {
        self.inner.take_oauth_state(state, now).await
    }

    async fn purge_oauth_states(
        &self,
        now: Timestamp,
        keep: Duration,
    ) -> Result<usize, social_studio_storage::StoreError> {
        self.inner.purge_oauth_states(now, keep).await
    }

    async fn idempotent_result(
        &self,
        pen: &social_studio_storage::PenName,
        key: &str,
    ) -> Result<Option<social_studio_storage::IdempotentRequest>, social_studio_storage::StoreError>
    {
        self.inner.idempotent_result(pen, key).await
    }

    async fn remember_idempotent(
        &self,
        pen: &social_studio_storage::PenName,
        key: &str,
        record: &social_studio_storage::IdempotentRequest,
    ) -> Result<social_studio_storage::IdempotentRequest, social_studio_storage::StoreError> {
        self.inner.remember_idempotent(pen, key, record).await
    }

    async fn erase_pen_name(
        &self,
        pen: &social_studio_storage::PenName,
    ) -> Result<social_studio_storage::ErasedCounts, social_studio_storage::StoreError> {
        self.inner.erase_pen_name(pen).await
    }

    fn unreadable(&self) -> Vec<social_studio_storage::UnreadableRecord> {
        self.inner.unreadable()
    }

    async fn check_integrity(
        &self,
    ) -> Result<social_studio_storage::IntegrityReport, social_studio_storage::StoreError> {
        self.inner.check_integrity().await
    }

    fn info(&self) -> social_studio_storage::StoreInfo {
        self.inner.info()
    }

    fn ownership(&self) -> &dyn social_studio_storage::Ownership {
        self
    }

    fn commands(&self) -> Option<&dyn social_studio_storage::CommandRelay> {
        self.inner.commands()
    }
}

#[async_trait]
impl social_studio_storage::Ownership for FaultyStore {
    async fn acquire(
        &self,
        node: &social_studio_storage::NodeId,
        lease: Duration,
    ) -> Result<
        Vec<(
            social_studio_storage::ConnectionKey,
            social_studio_storage::Epoch,
        )>,
        social_studio_storage::StoreError,
    > {
        self.leases_reachable()?;
        self.inner.ownership().acquire(node, lease).await
    }

    async fn acquire_key(
        &self,
        node: &social_studio_storage::NodeId,
        lease: Duration,
        key: &social_studio_storage::ConnectionKey,
    ) -> Result<Option<social_studio_storage::Epoch>, social_studio_storage::StoreError> {
        self.leases_reachable()?;
        self.inner.ownership().acquire_key(node, lease, key).await
    }

    async fn renew(
        &self,
        node: &social_studio_storage::NodeId,
        lease: Duration,
    ) -> Result<social_studio_storage::LeaseRenewal, social_studio_storage::StoreError> {
        self.leases_reachable()?;
        let sent = std::time::Instant::now();
        let renewal = self.inner.ownership().renew(node, lease).await?;
        *self.last_renewal.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
        Ok(renewal)
    }

    async fn release(
        &self,
        node: &social_studio_storage::NodeId,
        keys: &[social_studio_storage::ConnectionKey],
    ) -> Result<(), social_studio_storage::StoreError> {
        self.leases_reachable()?;
        self.inner.ownership().release(node, keys).await
    }

    async fn release_all(
        &self,
        node: &social_studio_storage::NodeId,
    ) -> Result<(), social_studio_storage::StoreError> {
        self.leases_reachable()?;
        self.inner.ownership().release_all(node).await
    }

    async fn owners(
        &self,
    ) -> Result<Vec<(social_studio_storage::NodeId, u64)>, social_studio_storage::StoreError> {
        self.inner.ownership().owners().await
    }

    async fn owner_of(
        &self,
        key: &social_studio_storage::ConnectionKey,
    ) -> Result<Option<social_studio_storage::NodeId>, social_studio_storage::StoreError> {
        self.inner.ownership().owner_of(key).await
    }
}
