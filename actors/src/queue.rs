//! The platform queue actor: one per platform, holding the scheduled posts of every
//! connection on it.
//!
//! - Posts are ordered by ready time in one ordered set, with **one** timer for the next
//!   thing due — no timer per post, no polling. The order lives only here: the store
//!   keeps no index by time, and the queue rebuilds the order at boot from the statuses
//!   of the posts it held.
//! - Each post is dispatched through its connection actor (the token never leaves it).
//! - Pause and resume per connection; rate limits hold back the connection or the whole
//!   platform, whichever the limit covers, without failing or pausing any post; at most
//!   `publish_concurrency` publishes at once.
//! - Transitions are persisted before the next step: a post is durably Publishing before
//!   its connection may call the platform. A post found Publishing at boot may have
//!   reached the platform, so it becomes Unconfirmed and is never re-sent silently
//!   (unless the platform's publishing is idempotent).
//! - Throughput comes from batching, never from weakening those promises: one dispatch
//!   batch at a time is on its way to the disk (the slots freed meanwhile all go into the
//!   next one), and publish outcomes that arrive together are applied as one commit,
//!   before the queue handles anything else.
//! - The queue is the only writer of post records once a post is scheduled.
//! - A commit that fails (a full disk, a failed fsync: sled then refuses every write
//!   until the process restarts) never makes the queue spin: it backs off, from
//!   [`STORE_BACKOFF_FIRST`] (1 s) doubling up to [`STORE_BACKOFF_CAP`] (60 s), logs once
//!   per step, and tries again; its posts stay Scheduled meanwhile (never Failed, never
//!   Held because of the store) and go in due order once a dispatch holds. The lateness
//!   window still applies as configured: a post later than it when the store takes writes
//!   again is Held (`too_late`), as after any other delay. Every commit also sets the
//!   engine's [`crate::StoreHealth`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use social_studio_storage::{
    Batch, ConnectionKey, ConnectionStanding, Durability, Epoch, Event, EventKind, Platform, Post,
    PostId, PostState, PostStatus, Reason, ReasonCode, SharedStore, StateLabel, Timestamp,
};

use crate::lease::LeaseGate;
use crate::messages::{ConnectionMsg, PublishOutcome, QueueMsg, QueueStats, UnheldCommit};
use crate::{Clock, EngineConfig, EngineError, LimitScope, StoreHealth};

/// The most posts one dispatch commit carries.
const DISPATCH_BATCH: usize = 512;

/// How long publish outcomes may gather before they are applied on their own. Most are
/// applied sooner, in the same commit as the next dispatch batch.
const OUTCOME_GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// After a failed commit the queue writes nothing for this long, then tries again…
pub const STORE_BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_secs(1);

/// …doubling after each failure up to this; a dispatch that holds starts it over.
pub const STORE_BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(60);

pub struct QueueArgs {
    pub platform: Platform,
    pub store: SharedStore,
    /// Set by this queue's commits.
    pub health: StoreHealth,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<EngineConfig>,
    /// The platform's publishing is idempotent (engine-chosen record keys).
    pub idempotent_publish: bool,
    /// This node's hold on its connections: nothing is dispatched while it is closed.
    pub gate: LeaseGate,
}

pub struct QueueActor;

struct Slot {
    actor: Option<ActorRef<ConnectionMsg>>,
    /// This node's lease on the connection: its post writes are fenced with it.
    epoch: Option<Epoch>,
    paused: Option<Reason>,
    backoff_until: Option<Timestamp>,
    /// Waiting posts of this connection (Scheduled or Paused), by ready time.
    posts: BTreeSet<(Timestamp, PostId)>,
}

impl Slot {
    fn dispatchable(&self, now: Timestamp) -> bool {
        self.paused.is_none() && self.backoff_until.is_none_or(|t| t <= now) && self.actor.is_some()
    }
}

struct Entry {
    key: ConnectionKey,
    ready_at: Timestamp,
    /// Publishing on disk (or on its way there).
    publishing: bool,
    /// Handed to its connection actor: its outcome will come back.
    sent: bool,
}

pub struct QueueState {
    platform: Platform,
    store: SharedStore,
    health: StoreHealth,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    idempotent: bool,
    gate: LeaseGate,
    slots: HashMap<ConnectionKey, Slot>,
    entries: HashMap<PostId, Entry>,
    /// Dispatchable posts by ready time: the one ordered set the timer follows.
    ready: BTreeSet<(Timestamp, PostId)>,
    backoffs: BTreeSet<(Timestamp, ConnectionKey)>,
    platform_backoff: Option<Timestamp>,
    /// Posts whose connection should be checked before they are due.
    prechecks: BTreeSet<(Timestamp, PostId)>,
    /// Posts handed to connection actors whose outcome has not come back.
    in_flight: usize,
    /// Posts dispatched as Publishing whose flush has not finished: not yet sent, but
    /// counted against the concurrency cap.
    flushing: usize,
    /// A dispatch batch is on its way to the disk; the next waits for it, and takes every
    /// slot freed meanwhile.
    dispatching: bool,
    /// Outcomes received and not yet applied, with the state each post left.
    outcomes: Vec<(Post, StateLabel)>,
    /// A `CommitOutcomes` is on its way.
    outcomes_scheduled: bool,
    /// Freeze requests waiting for the batches still flushing.
    freeze_waiters: Vec<RpcReplyPort<()>>,
    timer: crate::Timer<QueueMsg>,
    frozen: bool,
    /// After a failed commit: nothing is dispatched or applied before this.
    store_retry: Option<Timestamp>,
    /// Failed commits in a row (each a backoff step): the next backoff is
    /// `STORE_BACKOFF_FIRST` doubled this many times, up to `STORE_BACKOFF_CAP`.
    store_streak: u32,
}

/// The wait after `streak` failed commits in a row.
fn store_backoff(streak: u32) -> std::time::Duration {
    STORE_BACKOFF_FIRST
        .saturating_mul(2u32.saturating_pow(streak.min(16)))
        .min(STORE_BACKOFF_CAP)
}

/// The event of a post's transition from `from` to the status it has now.
fn post_event(now: Timestamp, status: &PostStatus, from: StateLabel) -> Event {
    Event::new(now, status.connection.clone(), EventKind::PostState)
        .post(status.id)
        .transition(Some(from), Some(status.state.label()))
        .reason(status.reason().cloned())
}

impl QueueState {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Adds a waiting (Scheduled or Paused) post to its connection and, if it can go,
    /// to the ready set.
    fn track(&mut self, post: &Post) {
        self.track_parts(
            post.id,
            &post.connection,
            post.ready_at(),
            post.due_at,
            matches!(post.state, PostState::Scheduled),
        );
    }

    fn track_parts(
        &mut self,
        id: PostId,
        key: &ConnectionKey,
        at: Timestamp,
        due_at: Timestamp,
        scheduled: bool,
    ) {
        let now = self.now();
        self.entries.insert(
            id,
            Entry {
                key: key.clone(),
                ready_at: at,
                publishing: false,
                sent: false,
            },
        );
        if let Some(slot) = self.slots.get_mut(key) {
            slot.posts.insert((at, id));
            if slot.dispatchable(now) && scheduled {
                self.ready.insert((at, id));
            }
        }
        if due_at > now {
            self.prechecks
                .insert((due_at.saturating_sub(self.config.precheck_lead), id));
        }
    }

    fn untrack(&mut self, id: PostId) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.ready.remove(&(e.ready_at, id));
        if let Some(slot) = self.slots.get_mut(&e.key) {
            slot.posts.remove(&(e.ready_at, id));
        }
        Some(e)
    }

    /// Applies post transitions durably (each with its event) before the caller goes on.
    async fn commit_posts(&self, posts: &[(Post, StateLabel)]) -> Result<(), EngineError> {
        if posts.is_empty() {
            return Ok(());
        }
        self.health
            .commit(&self.store, self.transitions(posts), Durability::Durable)
            .await?;
        Ok(())
    }

    /// The batch of status writes (and their events) for these transitions.
    fn transitions(&self, posts: &[(Post, StateLabel)]) -> Batch {
        let mut b = Batch::new();
        self.add_transitions(&mut b, posts);
        b
    }

    /// Adds the status writes (and events) of these transitions, each connection's
    /// fenced by this node's lease on it: a node that lost the connection writes nothing
    /// for it.
    fn add_transitions(&self, b: &mut Batch, posts: &[(Post, StateLabel)]) {
        let now = self.now();
        for (p, from) in posts {
            self.fence(b, &p.connection);
            let status = p.status();
            if p.state.label() != *from {
                b.event(post_event(now, &status, *from));
            }
            b.put_status(&status);
        }
    }

    fn fence(&self, b: &mut Batch, key: &ConnectionKey) {
        if let Some(epoch) = self.slots.get(key).and_then(|s| s.epoch) {
            b.fence(key, epoch);
        }
    }

    /// This node lost the connection: its posts leave memory, nothing more is written
    /// for them (the new owner loads them from the store). A post handed to its actor,
    /// which is stopped, frees its place: the new owner settles it as after a crash.
    fn forget(&mut self, key: &ConnectionKey) {
        let Some(slot) = self.slots.remove(key) else {
            return;
        };
        for (_, id) in slot.posts {
            self.untrack(id);
        }
        let ids: Vec<PostId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.key == *key)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(e) = self.untrack(id) {
                if e.sent {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
            }
        }
        self.prechecks
            .retain(|(_, id)| self.entries.contains_key(id));
        self.outcomes.retain(|(p, _)| p.connection != *key);
        self.backoffs.retain(|(_, k)| k != key);
        tracing::info!(connection = %key, "this node no longer holds the connection: its posts are left to the node that does");
    }

    /// Applies the outcomes gathered so far as one commit of their own. Made durable by
    /// the next group commit (their next step is only telling people). During a storage
    /// backoff they wait for its end, unless `force` (the last try, at stop).
    fn commit_outcomes(&mut self, myself: Option<&ActorRef<QueueMsg>>, force: bool) {
        if self.outcomes.is_empty() || (!force && self.store_holding()) {
            return;
        }
        let outcomes = std::mem::take(&mut self.outcomes);
        // The place in the commit order is taken here; the future only reports.
        let commit = self.health.commit(
            &self.store,
            self.transitions(&outcomes),
            Durability::Buffered,
        );
        let platform = self.platform;
        let queue = myself.cloned();
        let unheld = outcomes.clone();
        tokio::spawn(async move {
            if let Err(error) = commit.await {
                let back = UnheldCommit::of(&error, Vec::new(), unheld);
                // Gone only at stop: the outcomes then stay as the store last held them
                // (a post Publishing there becomes Unconfirmed at the next boot).
                let sent =
                    queue.is_some_and(|q| q.cast(QueueMsg::OutcomesUnheld(Box::new(back))).is_ok());
                if !sent {
                    tracing::error!(%platform, %error, "could not record publish outcomes");
                }
            }
        });
        self.track_outcomes(&outcomes);
    }

    /// Posts whose outcome sends them back to wait are tracked once their transition has
    /// its place in the commit order, so a later dispatch of them lands after it. A post
    /// tracked already (its outcome is being applied again after a failed commit) is
    /// left as it is.
    fn track_outcomes(&mut self, outcomes: &[(Post, StateLabel)]) {
        for (post, _) in outcomes {
            if post.state.is_pending() && !self.entries.contains_key(&post.id) {
                self.track(post);
            }
        }
    }

    /// A storage backoff is running: nothing is written before it ends.
    fn store_holding(&self) -> bool {
        self.store_retry.is_some_and(|t| t > self.now())
    }

    /// A commit failed: writes wait for the next backoff step (one log line per step).
    /// A failure while a backoff already runs (another commit of the same attempt) adds
    /// no step.
    fn store_failed(&mut self, error: &str) {
        if self.store_holding() {
            tracing::debug!(platform = %self.platform, %error, "another commit failed during the storage backoff");
            return;
        }
        let wait = store_backoff(self.store_streak);
        self.store_streak = self.store_streak.saturating_add(1);
        self.store_retry = Some(self.now().saturating_add(wait));
        tracing::error!(
            platform = %self.platform,
            %error,
            failures_in_a_row = self.store_streak,
            retry_in_secs = wait.as_secs(),
            "the store refuses writes: this queue's posts stay Scheduled and wait; writes are tried again after the backoff"
        );
    }

    /// A dispatch held: the storage backoff is over.
    fn store_held(&mut self) {
        if self.store_streak > 0 {
            tracing::info!(platform = %self.platform, failures_in_a_row = self.store_streak, "the store takes writes again: this queue resumes");
        }
        self.store_streak = 0;
        self.store_retry = None;
    }

    /// Takes back what a failed commit carried: outcomes to apply again (before any
    /// gathered since, in their order), and posts it was holding for lateness, which
    /// wait again as Scheduled. An outcome whose post went on meanwhile (dispatched
    /// again) is superseded and dropped.
    fn take_back(&mut self, unheld: UnheldCommit, myself: &ActorRef<QueueMsg>) {
        let UnheldCommit {
            error,
            fenced,
            held,
            outcomes,
        } = unheld;
        match &fenced {
            // Not the store failing: this node lost one connection. The rest goes again.
            Some(key) => self.forget(key),
            None => self.store_failed(&error),
        }
        let lost = |key: &ConnectionKey| fenced.as_ref() == Some(key);
        let outcomes: Vec<_> = outcomes
            .into_iter()
            .filter(|(p, _)| !lost(&p.connection))
            .collect();
        let held: Vec<_> = held.into_iter().filter(|p| !lost(&p.connection)).collect();
        let mut back: Vec<(Post, StateLabel)> = outcomes
            .into_iter()
            .filter(|(p, _)| !self.entries.get(&p.id).is_some_and(|e| e.publishing))
            .collect();
        if !back.is_empty() {
            back.append(&mut self.outcomes);
            self.outcomes = back;
            if !self.outcomes_scheduled {
                myself.send_after(OUTCOME_GATHER, || QueueMsg::CommitOutcomes);
                self.outcomes_scheduled = true;
            }
        }
        for mut post in held {
            post.state = PostState::Scheduled;
            if !self.entries.contains_key(&post.id) {
                self.track(&post);
            }
        }
    }

    async fn load_post(&self, id: PostId) -> Result<Post, EngineError> {
        self.store
            .post(id)
            .await?
            .ok_or(EngineError::PostNotFound(id))
    }

    /// Moves a connection's Scheduled posts into or out of the ready set.
    fn refresh_slot_readiness(&mut self, key: &ConnectionKey) {
        let now = self.now();
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        let go = slot.dispatchable(now);
        for &(at, id) in &slot.posts {
            if go {
                self.ready.insert((at, id));
            } else {
                self.ready.remove(&(at, id));
            }
        }
    }

    /// Cuts the next dispatch batch, if one can go, and commits it together with the
    /// outcomes gathered so far; otherwise commits those outcomes on their own.
    async fn dispatch(&mut self, myself: &ActorRef<QueueMsg>) {
        let sent = self.dispatch_batch(myself).await;
        if !sent {
            self.commit_outcomes(Some(myself), false);
        }
        self.rearm(myself);
    }

    /// Returns whether a batch (carrying the gathered outcomes too) was committed.
    async fn dispatch_batch(&mut self, myself: &ActorRef<QueueMsg>) -> bool {
        if self.frozen {
            return false;
        }
        let now = self.now();
        // Connection backoffs that ran out.
        while let Some((t, key)) = self.backoffs.first().cloned() {
            if t > now {
                break;
            }
            self.backoffs.pop_first();
            if let Some(slot) = self.slots.get_mut(&key) {
                if slot.backoff_until.is_some_and(|b| b <= now) {
                    slot.backoff_until = None;
                }
            }
            self.refresh_slot_readiness(&key);
        }
        // Checks before posts fall due, one per connection per pass.
        let mut checked = std::collections::HashSet::new();
        while let Some(&(t, id)) = self.prechecks.first() {
            if t > now {
                break;
            }
            self.prechecks.pop_first();
            if let Some(e) = self.entries.get(&id) {
                if checked.insert(e.key.clone()) {
                    if let Some(actor) = self.slots.get(&e.key).and_then(|s| s.actor.as_ref()) {
                        let _ = actor.cast(ConnectionMsg::CheckBeforePost);
                    }
                }
            }
        }
        if self.store_holding() {
            // The store refused the last write: nothing goes before the backoff ends.
            return false;
        }
        if !self.gate.open() {
            // This node's leases are not confirmed: nothing is sent until a renewal
            // confirms them (the supervisor wakes the queue then) or another node takes
            // the connections over.
            return false;
        }
        if self.platform_backoff.is_some_and(|t| t > now) {
            return false;
        }
        self.platform_backoff = None;
        if self.dispatching {
            // The batch on its way to the disk comes back as `Flushed`, and the next one
            // is cut then, with every slot freed meanwhile.
            return false;
        }
        let cap = self.config.publish_concurrency.max(1);
        let mut batch = Vec::new();
        let mut held = Vec::new();
        while self.in_flight + self.flushing + batch.len() < cap && batch.len() < DISPATCH_BATCH {
            let Some(&(at, id)) = self.ready.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.ready.pop_first();
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let key = entry.key.clone();
            let (mut post, from) = match self.store.post(id).await {
                Ok(Some(p)) if matches!(p.state, PostState::Scheduled) => {
                    (p, StateLabel::Scheduled)
                }
                // Publishing in the store while this queue holds it waiting: a dispatch of
                // it failed, and so did the write putting it back (a store that applied
                // the dispatch in memory, then could not make it durable). It never
                // reached its connection, so it goes as the Scheduled post it is.
                Ok(Some(mut p)) if matches!(p.state, PostState::Publishing) => {
                    p.attempts = p.attempts.saturating_sub(1);
                    (p, StateLabel::Publishing)
                }
                Ok(_) => {
                    self.untrack(id);
                    continue;
                }
                Err(error) => {
                    // Named in the store's unreadable list; it cannot be sent.
                    tracing::error!(post = %id, %error, "a queued post cannot be read; it is not sent");
                    self.untrack(id);
                    continue;
                }
            };
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.posts.remove(&(at, id));
            }
            let late = self
                .config
                .lateness_window
                .is_some_and(|w| post.due_at.saturating_add(w) < now);
            post.updated_at = now;
            if late {
                post.state = PostState::Held(Reason::new(ReasonCode::TooLate));
                self.entries.remove(&id);
                held.push((post, from));
                continue;
            }
            post.state = PostState::Publishing;
            post.waiting = None;
            post.attempts += 1;
            if let Some(e) = self.entries.get_mut(&id) {
                e.publishing = true;
            }
            batch.push((post, from));
        }
        if held.is_empty() && batch.is_empty() {
            return false;
        }
        // One commit for the whole batch and the outcomes gathered so far, made durable by
        // the store's group commit while this queue goes on with other messages: every
        // post is Publishing on disk before any of them reaches its connection (`Flushed`
        // sends them).
        let outcomes = std::mem::take(&mut self.outcomes);
        let mut b = self.transitions(&outcomes);
        self.add_transitions(&mut b, &held);
        self.add_transitions(&mut b, &batch);
        let commit = self.health.commit(&self.store, b, Durability::Durable);
        self.track_outcomes(&outcomes);
        let posts: Vec<Post> = batch.into_iter().map(|(p, _)| p).collect();
        self.flushing += posts.len();
        self.dispatching = true;
        let queue = myself.clone();
        let held: Vec<Post> = held.into_iter().map(|(p, _)| p).collect();
        tokio::spawn(async move {
            // Logged once by the queue, as a step of its storage backoff.
            let failed = commit
                .await
                .err()
                .map(|error| Box::new(UnheldCommit::of(&error, held, outcomes)));
            // The queue is gone only at shutdown, after it froze with nothing flushing.
            let _ = queue.cast(QueueMsg::Flushed { posts, failed });
        });
        true
    }

    /// A dispatched batch is durable (or could not be made so): hands each post that is
    /// still wanted to its connection, or puts it back to wait.
    async fn flushed(
        &mut self,
        posts: Vec<Post>,
        failed: Option<Box<UnheldCommit>>,
        myself: &ActorRef<QueueMsg>,
    ) {
        self.dispatching = false;
        let durable = failed.is_none();
        match failed {
            None => self.store_held(),
            Some(unheld) => self.take_back(*unheld, myself),
        }
        self.flushing = self.flushing.saturating_sub(posts.len());
        let mut back_to_wait = Vec::new();
        for post in posts {
            // Forgotten meanwhile (its connection was disconnected): nothing to send.
            let wanted = self
                .entries
                .get(&post.id)
                .is_some_and(|e| e.publishing && !e.sent);
            if !wanted {
                continue;
            }
            let key = post.connection.clone();
            let actor = self.slots.get(&key).and_then(|s| s.actor.clone());
            let sent = durable
                && !self.frozen
                && actor.is_some_and(|a| {
                    post_span(&post).in_scope(|| {
                        tracing::debug!("durably publishing: handed to its connection");
                        a.cast(ConnectionMsg::Publish {
                            post: Box::new(post.clone()),
                            queue: myself.clone(),
                        })
                        .is_ok()
                    })
                });
            if sent {
                self.in_flight += 1;
                if let Some(e) = self.entries.get_mut(&post.id) {
                    e.sent = true;
                }
                continue;
            }
            // Never reached the connection, so it can wait again — but not on an actor
            // that is gone, or the queue would spin on it: the supervisor registers the
            // connection's next actor when there is one.
            if durable && !self.frozen {
                if let Some(slot) = self.slots.get_mut(&key) {
                    slot.actor = None;
                }
            }
            if let Some(e) = self.entries.get_mut(&post.id) {
                e.publishing = false;
            }
            let mut back = post;
            back.state = PostState::Scheduled;
            back.attempts = back.attempts.saturating_sub(1);
            back_to_wait.push((back, StateLabel::Publishing));
        }
        if !back_to_wait.is_empty() {
            // Only a dispatch that holds ends a storage backoff: a store that takes this
            // write but refuses dispatches must not be asked again at once.
            if let Err(e) = self.commit_posts(&back_to_wait).await {
                // The store refuses writes: they are Scheduled in memory and wait for the
                // backoff (a store that failed the dispatch holds them Scheduled too).
                self.store_failed(&e.to_string());
            }
            for (p, _) in &back_to_wait {
                self.track(p);
            }
        }
        if self.flushing == 0 {
            for waiter in self.freeze_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        if let Some(t) = self.store_retry.filter(|&t| t > self.now()) {
            // Nothing is written before it; then the ready posts and gathered outcomes.
            consider(t);
        } else if let Some(t) = self.platform_backoff {
            consider(t);
        } else if !self.dispatching
            && self.in_flight + self.flushing < self.config.publish_concurrency.max(1)
        {
            if let Some(&(t, _)) = self.ready.first() {
                consider(t);
            }
        }
        if let Some((t, _)) = self.backoffs.first() {
            consider(*t);
        }
        if let Some(&(t, _)) = self.prechecks.first() {
            consider(t);
        }
        next
    }

    fn rearm(&mut self, myself: &ActorRef<QueueMsg>) {
        let next = self.next_deadline();
        if let (Some((at, _)), Some(n)) = (&self.timer, next) {
            if *at == n {
                return;
            }
        }
        if let Some((_, h)) = self.timer.take() {
            h.abort();
        }
        if let Some(at) = next {
            let handle = myself.send_after(self.now().until(at), || QueueMsg::Wake);
            self.timer = Some((at, handle));
        }
    }

    /// Pauses a connection's posts. The slot is paused only once its posts' change
    /// holds, so memory never says paused where the store says scheduled; meanwhile the
    /// connection itself refuses to publish while it is not Active.
    async fn pause(&mut self, key: &ConnectionKey, reason: Reason) -> Result<(), EngineError> {
        let Some(slot) = self.slots.get(key) else {
            return Ok(());
        };
        if slot.paused.as_ref() == Some(&reason) {
            // Already held: its posts were written Paused before the slot was.
            return Ok(());
        }
        let ids: Vec<PostId> = slot.posts.iter().map(|&(_, id)| id).collect();
        let now = self.now();
        let mut changed = Vec::new();
        for id in ids {
            let mut p = self.load_post(id).await?;
            if matches!(p.state, PostState::Scheduled)
                || matches!(&p.state, PostState::Paused(r) if *r != reason)
            {
                let from = p.state.label();
                p.state = PostState::Paused(reason.clone());
                p.updated_at = now;
                changed.push((p, from));
            }
        }
        self.commit_posts(&changed).await?;
        if let Some(slot) = self.slots.get_mut(key) {
            slot.paused = Some(reason);
        }
        self.refresh_slot_readiness(key);
        Ok(())
    }

    /// Resumes a connection's posts. The slot stays paused until its posts' change holds:
    /// after a failed write the queue holds them paused as the store does, and the next
    /// resume (a reconnect) tries again.
    async fn resume(&mut self, key: &ConnectionKey) -> Result<(), EngineError> {
        let Some(slot) = self.slots.get(key) else {
            return Ok(());
        };
        let ids: Vec<PostId> = slot.posts.iter().map(|&(_, id)| id).collect();
        let now = self.now();
        let mut changed = Vec::new();
        for id in ids {
            let mut p = self.load_post(id).await?;
            if matches!(p.state, PostState::Paused(_)) {
                p.state = PostState::Scheduled;
                p.updated_at = now;
                changed.push((p, StateLabel::Paused));
            }
        }
        // Persisted before they become dispatchable; overdue posts then go in due order.
        self.commit_posts(&changed).await?;
        if let Some(slot) = self.slots.get_mut(key) {
            slot.paused = None;
        }
        self.refresh_slot_readiness(key);
        Ok(())
    }

    /// Takes in one connection's answer. Nothing is written yet: outcomes are applied
    /// together by [`QueueState::commit_outcomes`] before the queue handles anything else.
    fn outcome(&mut self, mut post: Post, outcome: PublishOutcome, myself: &ActorRef<QueueMsg>) {
        let id = post.id;
        let key = post.connection.clone();
        let Some(entry) = self.entries.get(&id) else {
            return; // forgotten meanwhile (disconnected, or its actor restarted)
        };
        if !entry.sent {
            return;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.entries.remove(&id);
        let from = post.state.label();
        let now = self.now();
        post.updated_at = now;
        match outcome {
            PublishOutcome::Published(receipt) => {
                post.state = PostState::Published(receipt);
                post.next_attempt_at = None;
                post.waiting = None;
            }
            PublishOutcome::Rejected(reason) => post.state = PostState::Failed(reason),
            PublishOutcome::Unconfirmed => post.state = PostState::Unconfirmed,
            PublishOutcome::NotActive(reason) => {
                let paused = self.slots.get(&key).and_then(|s| s.paused.clone());
                post.state = PostState::Paused(paused.unwrap_or(reason));
                post.next_attempt_at = None;
                post.waiting = None;
            }
            PublishOutcome::RateLimited { until, scope } => {
                post.state = PostState::Scheduled;
                post.next_attempt_at = Some(until);
                post.waiting = Some(Reason::with_platform_message(
                    ReasonCode::RateLimited,
                    format!(
                        "the platform takes no more until {until} ({})",
                        match scope {
                            LimitScope::Connection => "this account",
                            LimitScope::Platform => "every account on it",
                        }
                    ),
                ));
                match scope {
                    LimitScope::Connection => {
                        if let Some(slot) = self.slots.get_mut(&key) {
                            let until = slot.backoff_until.map_or(until, |b| b.max(until));
                            slot.backoff_until = Some(until);
                            self.backoffs.insert((until, key.clone()));
                        }
                        self.refresh_slot_readiness(&key);
                    }
                    LimitScope::Platform => {
                        self.platform_backoff =
                            Some(self.platform_backoff.map_or(until, |b| b.max(until)));
                    }
                }
            }
            PublishOutcome::Retry { at, reason } => {
                post.state = PostState::Scheduled;
                post.next_attempt_at = Some(at);
                post.waiting = Some(reason);
            }
        }
        self.outcomes.push((post, from));
        if !self.outcomes_scheduled {
            // Most of the time a dispatch batch carries them sooner.
            myself.send_after(OUTCOME_GATHER, || QueueMsg::CommitOutcomes);
            self.outcomes_scheduled = true;
        }
    }

    /// Posts of `key` that were handed to a connection actor that has since died: they
    /// may have reached the platform.
    async fn settle_in_flight(&mut self, key: &ConnectionKey) -> Result<(), EngineError> {
        let ids: Vec<PostId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.sent && e.key == *key)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.entries.remove(&id);
            let mut p = self.load_post(id).await?;
            if !matches!(p.state, PostState::Publishing) {
                continue;
            }
            p.state = if self.idempotent {
                PostState::Scheduled
            } else {
                PostState::Unconfirmed
            };
            p.updated_at = self.now();
            self.commit_posts(&[(p.clone(), StateLabel::Publishing)])
                .await?;
            if self.idempotent {
                self.track(&p);
            }
        }
        Ok(())
    }

    /// Rebuilds the queue from the statuses its posts had at the last stop.
    async fn load(&mut self, statuses: Vec<PostStatus>) -> Result<(), EngineError> {
        let now = self.now();
        let mut batch = Batch::new();
        let mut waiting = Vec::new();
        for mut s in statuses {
            if s.connection.platform != self.platform {
                continue;
            }
            let from = s.state.label();
            let paused = self
                .slots
                .get(&s.connection)
                .map(|slot| slot.paused.clone());
            match (&s.state, paused) {
                // Its connection is gone: nothing can publish it; fail it with the reason.
                (_, None) if !matches!(s.state, PostState::Publishing) => {
                    s.state = PostState::Failed(Reason::new(ReasonCode::AccountDisconnected));
                }
                (PostState::Publishing, _) => {
                    s.state = if self.idempotent {
                        PostState::Scheduled
                    } else {
                        PostState::Unconfirmed
                    };
                }
                (PostState::Scheduled, Some(Some(reason))) => s.state = PostState::Paused(reason),
                (PostState::Paused(r), Some(Some(reason))) if *r != reason => {
                    s.state = PostState::Paused(reason)
                }
                (PostState::Paused(_), Some(None)) => s.state = PostState::Scheduled,
                _ => {}
            }
            if s.state.label() != from {
                s.updated_at = now;
                self.fence(&mut batch, &s.connection);
                batch.put_status(&s).event(post_event(now, &s, from));
            }
            if s.state.is_pending() {
                waiting.push(s);
            }
        }
        if !batch.is_empty() {
            self.health
                .commit(&self.store, batch, Durability::Durable)
                .await?;
        }
        for s in &waiting {
            self.track_parts(
                s.id,
                &s.connection,
                s.ready_at(),
                s.due_at,
                matches!(s.state, PostState::Scheduled),
            );
        }
        Ok(())
    }

    async fn schedule(&mut self, mut post: Post) -> Result<Post, EngineError> {
        // A post is created once. A retried request that finishes what an earlier attempt
        // began may send a post that attempt already scheduled: it gets the post as it is
        // now (perhaps published or cancelled since), never a second start. This queue is
        // the only writer of its platform's new posts, so the check cannot race.
        if let Some(existing) = self.store.post(post.id).await? {
            if existing.connection == post.connection {
                return Ok(existing);
            }
            return Err(EngineError::InvalidTransition {
                id: post.id,
                state: existing.state.label(),
                action: "scheduled",
            });
        }
        let Some(slot) = self.slots.get(&post.connection) else {
            return Err(EngineError::NotConnected(post.connection.clone()));
        };
        post.state = match &slot.paused {
            Some(r) => PostState::Paused(r.clone()),
            None => PostState::Scheduled,
        };
        let mut b = Batch::new();
        self.fence(&mut b, &post.connection);
        b.put_post(&post).event(
            Event::new(self.now(), post.connection.clone(), EventKind::PostState)
                .post(post.id)
                .transition(None, Some(post.state.label()))
                .reason(post.state.reason().cloned()),
        );
        self.health
            .commit(&self.store, b, Durability::Durable)
            .await?;
        self.track(&post);
        // Due within the lead time already: check the grant now.
        if post.due_at.saturating_sub(self.config.precheck_lead) <= self.now() {
            if let Some(a) = self
                .slots
                .get(&post.connection)
                .and_then(|s| s.actor.as_ref())
            {
                let _ = a.cast(ConnectionMsg::CheckBeforePost);
            }
        }
        Ok(post)
    }

    /// Where `key` stands in this queue, for the post rules that put a post back to wait.
    fn standing(&self, key: &ConnectionKey) -> ConnectionStanding<'_> {
        match self.slots.get(key) {
            None => ConnectionStanding::NotConnected,
            Some(Slot {
                paused: Some(reason),
                ..
            }) => ConnectionStanding::Paused(reason),
            Some(_) => ConnectionStanding::Active,
        }
    }

    async fn cancel(&mut self, id: PostId) -> Result<Post, EngineError> {
        let mut post = self.load_post(id).await?;
        if post.connection.platform != self.platform {
            return Err(EngineError::PostNotFound(id));
        }
        let from = post.cancel(self.now())?;
        // Forgotten only once the cancel holds: a cancel that failed leaves it queued.
        self.commit_posts(&[(post.clone(), from)]).await?;
        self.untrack(id);
        Ok(post)
    }

    async fn retry(&mut self, id: PostId) -> Result<Post, EngineError> {
        let mut post = self.load_post(id).await?;
        let from = post.retry(self.now(), self.standing(&post.connection))?;
        self.commit_posts(&[(post.clone(), from)]).await?;
        self.track(&post);
        Ok(post)
    }

    async fn resolve(&mut self, id: PostId, published: bool) -> Result<Post, EngineError> {
        let mut post = self.load_post(id).await?;
        let from = post.resolve(self.now(), published, self.standing(&post.connection))?;
        self.commit_posts(&[(post.clone(), from)]).await?;
        if !published {
            self.track(&post);
        }
        Ok(post)
    }

    async fn update(&mut self, new: Post) -> Result<Post, EngineError> {
        let mut post = self.load_post(new.id).await?;
        post.edit(new, self.now())?;
        // The body changed too: the whole post is written, and re-queued at its new time
        // only once that holds (a failed edit leaves it queued as it was).
        let mut b = Batch::new();
        self.fence(&mut b, &post.connection);
        b.put_post(&post);
        self.health
            .commit(&self.store, b, Durability::Durable)
            .await?;
        if self.untrack(post.id).is_some() {
            self.track(&post);
        }
        Ok(post)
    }

    async fn disconnected(&mut self, key: &ConnectionKey) -> Result<usize, EngineError> {
        let now = self.now();
        let reason = Reason::new(ReasonCode::AccountDisconnected);
        let mut changed = Vec::new();
        let posts = self.store.posts_of_connection(key).await?;
        for unreadable in &posts.unreadable {
            tracing::error!(connection = %key, record = %unreadable.key, problem = %unreadable.problem, "a post of a disconnected account cannot be read; it stays as it is and is named as unreadable");
        }
        for p in posts.items {
            if matches!(
                p.state,
                PostState::Scheduled
                    | PostState::Paused(_)
                    | PostState::Held(_)
                    | PostState::Publishing
            ) {
                let from = p.state.label();
                let mut p = p;
                p.state = PostState::Failed(reason.clone());
                p.updated_at = now;
                changed.push((p, from));
            }
        }
        // The queue lets go of them only once their failure holds: a disconnect whose
        // write failed leaves the connection and its posts as they were.
        self.commit_posts(&changed).await?;
        for (p, _) in &changed {
            if self.entries.get(&p.id).is_some_and(|e| e.sent) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            self.untrack(p.id);
        }
        if let Some(slot) = self.slots.remove(key) {
            for (_, id) in slot.posts {
                self.entries.remove(&id);
            }
        }
        self.backoffs.retain(|(_, k)| k != key);
        Ok(changed.len())
    }

    fn stats(&self) -> QueueStats {
        let mut s = QueueStats::default();
        for slot in self.slots.values() {
            if slot.paused.is_some() {
                s.paused += slot.posts.len();
            } else {
                s.scheduled += slot.posts.len();
            }
            if slot.backoff_until.is_some() {
                s.backed_off_connections += 1;
            }
        }
        s.publishing = self.in_flight + self.flushing;
        s.platform_backed_off = self.platform_backoff.is_some();
        s
    }
}

impl Actor for QueueActor {
    type Msg = QueueMsg;
    type State = QueueState;
    type Arguments = QueueArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<QueueMsg>,
        args: QueueArgs,
    ) -> Result<QueueState, ActorProcessingErr> {
        Ok(QueueState {
            platform: args.platform,
            store: args.store,
            health: args.health,
            clock: args.clock,
            config: args.config,
            idempotent: args.idempotent_publish,
            gate: args.gate,
            slots: HashMap::new(),
            entries: HashMap::new(),
            ready: BTreeSet::new(),
            backoffs: BTreeSet::new(),
            platform_backoff: None,
            prechecks: BTreeSet::new(),
            in_flight: 0,
            flushing: 0,
            dispatching: false,
            outcomes: Vec::new(),
            outcomes_scheduled: false,
            freeze_waiters: Vec::new(),
            timer: None,
            frozen: false,
            store_retry: None,
            store_streak: 0,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<QueueMsg>,
        state: &mut QueueState,
    ) -> Result<(), ActorProcessingErr> {
        // A stop after a drain has nothing pending; anything else still gets written.
        state.commit_outcomes(None, true);
        if let Some((_, h)) = state.timer.take() {
            h.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<QueueMsg>,
        msg: QueueMsg,
        state: &mut QueueState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            QueueMsg::Outcome { post, outcome } => {
                // Gathered; applied with the next dispatch batch, or on their own when
                // `CommitOutcomes` comes first.
                post_span(&post).in_scope(|| state.outcome(*post, outcome, &myself));
                return Ok(());
            }
            // These only free slots or time: their dispatch applies the outcomes.
            QueueMsg::CommitOutcomes
            | QueueMsg::Wake
            | QueueMsg::Flushed { .. }
            | QueueMsg::OutcomesUnheld(_) => {}
            // Every other message sees the outcomes already applied (unless a storage
            // backoff holds them).
            _ => state.commit_outcomes(Some(&myself), false),
        }
        match msg {
            QueueMsg::Outcome { .. } => {}
            QueueMsg::CommitOutcomes => state.outcomes_scheduled = false,
            QueueMsg::Register {
                key,
                actor,
                paused,
                epoch,
            } => {
                let slot = state.slots.entry(key.clone()).or_insert_with(|| Slot {
                    actor: None,
                    epoch: None,
                    paused: None,
                    backoff_until: None,
                    posts: BTreeSet::new(),
                });
                slot.actor = actor;
                slot.paused = paused;
                slot.epoch = epoch;
                state.refresh_slot_readiness(&key);
            }
            QueueMsg::Forget { key } => state.forget(&key),
            QueueMsg::ConnectionRestarted { key, actor } => {
                if let Err(e) = state.settle_in_flight(&key).await {
                    tracing::error!(connection = %key, error = %e, "could not settle in-flight posts");
                }
                if let Some(slot) = state.slots.get_mut(&key) {
                    slot.actor = actor;
                }
                state.refresh_slot_readiness(&key);
            }
            QueueMsg::Load(statuses) => {
                if let Err(e) = state.load(statuses).await {
                    tracing::error!(platform = %state.platform, error = %e, "could not load posts");
                }
            }
            QueueMsg::Schedule { post, reply } => {
                let r = state.schedule(*post).await;
                let _ = reply.send(r);
            }
            QueueMsg::Cancel { id, reply } => {
                let r = state.cancel(id).await;
                let _ = reply.send(r);
            }
            QueueMsg::Retry { id, reply } => {
                let r = state.retry(id).await;
                let _ = reply.send(r);
            }
            QueueMsg::Resolve {
                id,
                published,
                reply,
            } => {
                let r = state.resolve(id, published).await;
                let _ = reply.send(r);
            }
            QueueMsg::Update { post, reply } => {
                let r = state.update(*post).await;
                let _ = reply.send(r);
            }
            QueueMsg::Pause { key, reason } => {
                if let Err(e) = state.pause(&key, reason).await {
                    tracing::error!(connection = %key, error = %e, "could not pause posts");
                }
            }
            QueueMsg::Resume { key } => {
                if let Err(e) = state.resume(&key).await {
                    tracing::error!(connection = %key, error = %e, "could not resume posts");
                }
            }
            QueueMsg::Disconnected { key, reply } => {
                let r = state.disconnected(&key).await;
                let _ = reply.send(r);
            }
            QueueMsg::Stats(reply) => {
                let _ = reply.send(state.stats());
            }
            QueueMsg::Freeze(reply) => {
                state.frozen = true;
                if let Some((_, h)) = state.timer.take() {
                    h.abort();
                }
                if state.flushing == 0 {
                    let _ = reply.send(());
                } else {
                    state.freeze_waiters.push(reply);
                }
            }
            QueueMsg::Wake => {
                state.timer = None;
            }
            QueueMsg::Flushed { posts, failed } => {
                state.flushed(posts, failed, &myself).await;
            }
            QueueMsg::OutcomesUnheld(unheld) => state.take_back(*unheld, &myself),
        }
        state.dispatch(&myself).await;
        Ok(())
    }
}

/// The span of one post's publish as the queue sees it (handed to its connection, its
/// outcome gathered): its pen name, platform and id, the same fields as the connection's
/// span in which the platform call itself runs.
fn post_span(post: &Post) -> tracing::Span {
    tracing::info_span!(
        "queue",
        pen_name = post.connection.pen_name.as_str(),
        platform = post.connection.platform.id(),
        post = %post.id
    )
}

#[cfg(test)]
mod tests;
