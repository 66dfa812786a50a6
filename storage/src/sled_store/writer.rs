//! The commit path: a batch becomes a list of plain writes, recorded in the journal, then
//! applied — one writer at a time, so sequence numbers are handed out in the order
//! commits become visible.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use crate::batch::{encoded, Batch, BatchOp};
use crate::codec::{self, Record};
use crate::connection::pen_prefix;
use crate::port::{ErasedCounts, PostCounts};
use crate::{
    ConnectionKey, Event, IdempotentRequest, PenName, PostBody, PostId, PostStatus, StateLabel,
    StateLookup, StoreError, Timestamp,
};

use super::flusher::Request;
use super::layout::{
    self, EventGroup, EventRefs, Journal, JournalRef, OAuthStateRecord, Quarantined, Trees, Write,
    T,
};
use super::{SledStore, WriterState};

/// A batch op with every byte that does not depend on the store already computed.
pub(crate) enum Staged {
    Write(Write),
    /// A connection record written (`Some`, with its status) or removed (`None`).
    Connection {
        key: Vec<u8>,
        value: Option<(Vec<u8>, StateLabel)>,
    },
    Post {
        status: Box<PostStatus>,
        status_bytes: Vec<u8>,
        body_bytes: Option<Vec<u8>>,
    },
    DeletePost(PostId),
    Event(Box<Event>),
}

/// Whether a post has a status, and what it says (`Some(None)`: it has one that does not
/// decode).
type Located = Option<Option<PostStatus>>;

#[derive(Default)]
struct Plan {
    writes: Vec<Write>,
    /// The batch's events, numbered once the batch is planned (grouped by connection).
    pending_events: Vec<Event>,
    events: Vec<Event>,
    /// Posts this batch already moved: later ops of the same batch see them there.
    posts: HashMap<PostId, Located>,
    /// (connection, from, to) for every post that changed state, in order.
    moves: Vec<(ConnectionKey, Option<StateLabel>, Option<StateLabel>)>,
    /// Connections this batch already wrote, with their status now (`None`: removed).
    connections: HashMap<Vec<u8>, Option<StateLabel>>,
    /// (from, to) for every connection whose status changed, in order.
    connection_moves: Vec<(Option<StateLabel>, Option<StateLabel>)>,
}

/// Writes in one erasure commit; an erasure of a large pen name is several, protected by
/// its marker.
const ERASE_CHUNK: usize = 4096;

impl SledStore {
    /// Applies a batch: visible to readers when this returns, durable at the next flush.
    pub(crate) fn apply(&self, mut batch: Batch) -> Result<Vec<Event>, StoreError> {
        if let Some(e) = batch.take_error() {
            return Err(e);
        }
        let staged = std::mem::take(&mut batch.ops)
            .into_iter()
            .map(|op| self.stage(op))
            .collect::<Result<Vec<_>, _>>()?;
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        for (key, epoch) in &batch.fences {
            let newest = w.epochs.get(key).copied().unwrap_or(0);
            if newest != epoch.0 {
                return Err(StoreError::Fenced {
                    key: key.clone(),
                    epoch: epoch.0,
                    newest,
                });
            }
        }
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let mut plan = Plan::default();
        let seq_before = w.seq_high;
        for s in staged {
            // On failure nothing was written; numbers handed out are simply not used.
            self.plan(&mut plan, s)?;
        }
        self.plan_events(&mut plan, &mut w)?;
        self.plan_counts(&mut plan)?;
        self.write_locked(w.seq_high, &plan.writes)?;
        if w.seq_high != seq_before {
            let mut pending = self
                .inner
                .feed
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.extend(plan.events.iter().cloned());
            drop(pending);
            self.inner
                .feed
                .applied_seq
                .store(w.seq_high, Ordering::Release);
        }
        drop(w);
        if !plan.events.is_empty() {
            let _ = self.inner.flusher.request(Request::Events);
        }
        self.forget_unreadable(plan.writes.into_iter().map(|w| (w.tree, w.key)));
        Ok(plan.events)
    }

    pub(crate) fn stage(&self, op: BatchOp) -> Result<Staged, StoreError> {
        Ok(match op {
            BatchOp::PutConnection(c) => Staged::Connection {
                key: c.key.storage_key(),
                value: Some((encoded(&*c)?, c.status.label())),
            },
            BatchOp::DeleteConnection(k) => Staged::Connection {
                key: k.storage_key(),
                value: None,
            },
            BatchOp::PutGrant(k, plain) => {
                let key = k.storage_key();
                let sealed = self.inner.vault.seal(&layout::grant_aad(&key), &plain);
                Staged::Write(Write::put(T::Grants, key, sealed))
            }
            BatchOp::DeleteGrant(k) => Staged::Write(Write::remove(T::Grants, k.storage_key())),
            BatchOp::PutPost(p) => {
                let status = Box::new(p.status());
                Staged::Post {
                    status_bytes: encoded(&*status)?,
                    body_bytes: Some(encoded(&p.body())?),
                    status,
                }
            }
            BatchOp::PutPostStatus(status) => Staged::Post {
                status_bytes: encoded(&*status)?,
                body_bytes: None,
                status,
            },
            BatchOp::DeletePost(id) => Staged::DeletePost(id),
            BatchOp::Event(e) => Staged::Event(e),
            BatchOp::PutOAuthState(state, plain, expires_at) => {
                let sealed = self.inner.vault.seal(&layout::oauth_aad(&state), &plain);
                let value = encoded(&OAuthStateRecord {
                    expires_at,
                    used: false,
                    sealed,
                })?;
                Staged::Write(Write::put(T::OAuthStates, state.into_bytes(), value))
            }
            BatchOp::PutIdempotent(pen, key, record) => Staged::Write(Write::put(
                T::Idempotency,
                layout::idempotency_key(&pen, &key),
                encoded(&*record)?,
            )),
        })
    }

    fn plan(&self, plan: &mut Plan, s: Staged) -> Result<(), StoreError> {
        match s {
            Staged::Write(write) => plan.writes.push(write),
            Staged::Connection { key, value } => {
                let before = match plan.connections.get(&key) {
                    Some(known) => *known,
                    None => self.tree(T::Connections).get(&key)?.and_then(|v| {
                        codec::decode::<crate::Connection>("connections", &key, &v)
                            .ok()
                            .map(|c| c.status.label())
                    }),
                };
                let after = value.as_ref().map(|(_, label)| *label);
                if before != after {
                    plan.connection_moves.push((before, after));
                }
                plan.connections.insert(key.clone(), after);
                plan.writes.push(match value {
                    Some((bytes, _)) => Write::put(T::Connections, key, bytes),
                    None => Write::remove(T::Connections, key),
                });
            }
            Staged::Post {
                status,
                status_bytes,
                body_bytes,
            } => {
                let id = status.id;
                let key = id.as_bytes().to_vec();
                let old = match plan.posts.get(&id) {
                    Some(located) => located.clone(),
                    None => self.locate_post(id)?,
                };
                let was_queued = old
                    .as_ref()
                    .and_then(|o| o.as_ref())
                    .map(|s| s.state.is_queued());
                match (was_queued, status.state.is_queued()) {
                    (Some(true), true) | (Some(false), false) => {}
                    (_, true) => plan
                        .writes
                        .push(Write::put(T::Queued, key.clone(), Vec::new())),
                    (_, false) => {
                        if old.is_some() {
                            plan.writes.push(Write::remove(T::Queued, key.clone()));
                        }
                    }
                }
                plan.writes
                    .push(Write::put(T::Status, key.clone(), status_bytes));
                if let Some(body) = body_bytes {
                    plan.writes.push(Write::put(T::PostBodies, key, body));
                }
                if old.is_none() {
                    plan.writes.push(Write::put(
                        T::PostsByConnection,
                        layout::by_connection_key(&status.connection, id),
                        Vec::new(),
                    ));
                }
                let from = old.flatten().map(|s| s.state.label());
                plan.moves
                    .push((status.connection.clone(), from, Some(status.state.label())));
                plan.posts.insert(id, Some(Some(*status)));
            }
            Staged::DeletePost(id) => {
                let old = match plan.posts.get(&id) {
                    Some(located) => located.clone(),
                    None => self.locate_post(id)?,
                };
                let key = id.as_bytes().to_vec();
                let label = old
                    .as_ref()
                    .and_then(|o| o.as_ref())
                    .map(|s| s.state.label());
                let connection = match old.as_ref().and_then(|o| o.as_ref()) {
                    Some(status) => Some(status.connection.clone()),
                    None => self
                        .tree(T::PostBodies)
                        .get(&key)?
                        .and_then(|b| codec::decode::<PostBody>("post_bodies", &key, &b).ok())
                        .map(|b| b.connection),
                };
                if old.is_some() {
                    if let Some(c) = &connection {
                        plan.moves.push((c.clone(), label, None));
                    }
                }
                for t in [T::Status, T::Queued, T::PostBodies] {
                    plan.writes.push(Write::remove(t, key.clone()));
                }
                if let Some(c) = &connection {
                    plan.writes.push(Write::remove(
                        T::PostsByConnection,
                        layout::by_connection_key(c, id),
                    ));
                }
                plan.posts.insert(id, None);
            }
            Staged::Event(e) => plan.pending_events.push(*e),
        }
        Ok(())
    }

    /// Numbers the batch's events in order and writes them as one group (several past
    /// [`layout::EVENT_GROUP_MAX`]); each connection among them gets the group's key
    /// appended to its references, rewritten in place.
    fn plan_events(&self, plan: &mut Plan, w: &mut WriterState) -> Result<(), StoreError> {
        if plan.pending_events.is_empty() {
            return Ok(());
        }
        let mut refs: Vec<(ConnectionKey, Vec<u64>)> = Vec::new();
        let pending = std::mem::take(&mut plan.pending_events);
        for chunk in pending.chunks(layout::EVENT_GROUP_MAX) {
            let first = w.seq_high + 1;
            let mut events = chunk.to_vec();
            for e in &mut events {
                w.seq_high += 1;
                e.seq = w.seq_high;
                match refs.iter_mut().find(|(k, _)| *k == e.connection) {
                    Some((_, keys)) => {
                        if keys.last() != Some(&first) {
                            keys.push(first);
                        }
                    }
                    None => refs.push((e.connection.clone(), vec![first])),
                }
            }
            let group = EventGroup { events };
            plan.writes.push(Write::put(
                T::Events,
                first.to_be_bytes().to_vec(),
                encoded(&group)?,
            ));
            plan.events.extend(group.events);
        }
        for (key, groups) in refs {
            let head_key = layout::event_refs_head(&key);
            let mut head = self.event_refs_head_or_rebuild(&key)?;
            head.groups.extend(groups);
            if head.groups.len() > layout::EVENT_REFS_HEAD_MAX {
                let chunk_key = layout::event_refs_chunk(&key, head.groups[0]);
                plan.writes.push(Write::put(
                    T::EventsByConnection,
                    chunk_key,
                    encoded(&head)?,
                ));
                head = EventRefs::default();
            }
            plan.writes
                .push(Write::put(T::EventsByConnection, head_key, encoded(&head)?));
        }
        Ok(())
    }

    /// Whether a post has a status now, and what it says (a status that does not decode
    /// is overwritten all the same; the post's counts may then be off by one, which
    /// `check_integrity` reports).
    pub(super) fn locate_post(&self, id: PostId) -> Result<Located, StoreError> {
        Ok(self
            .tree(T::Status)
            .get(id.as_bytes())?
            .map(|bytes| codec::decode::<PostStatus>(T::Status.name(), id.as_bytes(), &bytes).ok()))
    }

    /// One counts record per connection the batch moved posts of, and the store's
    /// connection counts when a status changed.
    fn plan_counts(&self, plan: &mut Plan) -> Result<(), StoreError> {
        if !plan.connection_moves.is_empty() {
            let mut counts = self.connection_counts_or_recount()?;
            for (from, to) in std::mem::take(&mut plan.connection_moves) {
                counts.apply(from, to);
            }
            plan.writes.push(Write::put(
                T::Meta,
                layout::META_CONNECTION_COUNTS.to_vec(),
                encoded(&counts)?,
            ));
        }
        if plan.moves.is_empty() {
            return Ok(());
        }
        let mut counts: Vec<(ConnectionKey, PostCounts)> = Vec::new();
        for (key, from, to) in std::mem::take(&mut plan.moves) {
            if from == to {
                continue;
            }
            let at = match counts.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    let current = self.counts_or_recount(&key)?;
                    counts.push((key, current));
                    counts.len() - 1
                }
            };
            counts[at].1.apply(from, to);
        }
        for (key, c) in counts {
            plan.writes
                .push(Write::put(T::Counts, key.storage_key(), encoded(&c)?));
        }
        Ok(())
    }

    /// The writes that delete the posts `ids` — status, body, queue and index entries,
    /// and their connections' counts — planned as a batch of deletions is. The caller
    /// holds the writer.
    pub(super) fn plan_deletions(
        &self,
        ids: impl IntoIterator<Item = PostId>,
    ) -> Result<Vec<Write>, StoreError> {
        let mut plan = Plan::default();
        for id in ids {
            self.plan(&mut plan, Staged::DeletePost(id))?;
        }
        self.plan_counts(&mut plan)?;
        Ok(plan.writes)
    }

    /// Records `writes` in the journal, then applies them. The caller holds the writer.
    pub(crate) fn write_locked(&self, seq_high: u64, writes: &[Write]) -> Result<(), StoreError> {
        self.journal(seq_high, writes)?;
        apply_writes(&self.inner.trees, writes)
    }

    /// Records `writes` as the last commit: in the head when they fit, else in chunks
    /// written before the head that names them.
    pub(crate) fn journal(&self, seq_high: u64, writes: &[Write]) -> Result<(), StoreError> {
        let journal = &self.inner.trees.journal;
        let head = codec::encode_as(
            Journal::VERSION,
            &JournalRef {
                seq_high,
                chunks: 0,
                writes,
            },
        )?;
        if head.len() <= layout::JOURNAL_INLINE_BYTES {
            journal.insert(layout::JOURNAL_HEAD, head)?;
        } else {
            let mut chunks = 0u32;
            let mut start = 0;
            let mut size = 0;
            for (i, write) in writes.iter().enumerate() {
                size += write.key.len() + write.value.as_ref().map_or(0, Vec::len) + 16;
                if size >= layout::JOURNAL_INLINE_BYTES || i + 1 == writes.len() {
                    let chunk = codec::encode_as(Journal::VERSION, &writes[start..=i])?;
                    journal.insert(layout::journal_chunk_key(chunks), chunk)?;
                    chunks += 1;
                    start = i + 1;
                    size = 0;
                }
            }
            let head = codec::encode_as(
                Journal::VERSION,
                &JournalRef {
                    seq_high,
                    chunks,
                    writes: &[],
                },
            )?;
            journal.insert(layout::JOURNAL_HEAD, head)?;
        }
        Ok(())
    }

    /// One journaled commit of plain writes, under the writer.
    pub(super) fn write(&self, writes: &[Write]) -> Result<(), StoreError> {
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.write_locked(w.seq_high, writes)?;
        drop(w);
        self.forget_unreadable(writes.iter().map(|w| (w.tree, w.key.clone())));
        Ok(())
    }

    // ---- single-record changes that must read before they write ----

    pub(crate) fn take_oauth_state_sync(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<StateLookup, StoreError> {
        let key = state.as_bytes();
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = self.tree(T::OAuthStates).get(key)? else {
            return Ok(StateLookup::Unknown);
        };
        let mut record: OAuthStateRecord = self.decode(T::OAuthStates, key, &current)?;
        if record.used {
            return Ok(StateLookup::AlreadyUsed);
        }
        // Of two callbacks with one state, the writer lets one take it.
        let sealed = std::mem::take(&mut record.sealed);
        record.used = true;
        self.write_locked(
            w.seq_high,
            &[Write::put(T::OAuthStates, key.to_vec(), encoded(&record)?)],
        )?;
        drop(w);
        if record.expires_at <= now {
            return Ok(StateLookup::Expired);
        }
        let plain = self
            .inner
            .vault
            .open(&layout::oauth_aad(state), &sealed, || {
                "an OAuth state".to_string()
            })?;
        Ok(StateLookup::Taken(self.decode(
            T::OAuthStates,
            key,
            &plain,
        )?))
    }

    pub(crate) fn purge_oauth_states_sync(
        &self,
        now: Timestamp,
        keep: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let mut removals = Vec::new();
        for item in self.tree(T::OAuthStates).iter() {
            let (k, v) = item?;
            let stale = match codec::decode::<OAuthStateRecord>("oauth_states", &k, &v) {
                Ok(r) => r.expires_at.saturating_add(keep) <= now,
                Err(e) => {
                    // A pending connect nobody can finish: say so as it goes.
                    tracing::warn!(error = %e, "removing an unreadable OAuth state");
                    true
                }
            };
            if stale {
                removals.push(Write::remove(T::OAuthStates, k.to_vec()));
            }
        }
        for chunk in removals.chunks(ERASE_CHUNK) {
            self.write(chunk)?;
        }
        Ok(removals.len())
    }

    pub(crate) fn remember_idempotent_sync(
        &self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> Result<IdempotentRequest, StoreError> {
        let k = layout::idempotency_key(pen, key);
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.tree(T::Idempotency).get(&k)? {
            return self.decode(T::Idempotency, &k, &v);
        }
        self.write_locked(
            w.seq_high,
            &[Write::put(T::Idempotency, k, encoded(record)?)],
        )?;
        Ok(record.clone())
    }

    // ---- erasure ----

    /// Erases a pen name's every key without decoding a value, so an unreadable record
    /// cannot stop it. A marker written first makes it atomic across a crash: a store that
    /// opens with the marker finishes the erasure.
    pub(crate) fn erase_blocking(&self, pen: &PenName) -> Result<ErasedCounts, StoreError> {
        let marker = layout::erasing_key(pen);
        self.write(&[Write::put(T::Meta, marker.clone(), Vec::new())])?;
        let prefix = pen_prefix(pen);
        let keys = |t: T| -> Result<Vec<Vec<u8>>, StoreError> {
            self.tree(t)
                .scan_prefix(&prefix)
                .keys()
                .map(|k| k.map(|k| k.to_vec()).map_err(StoreError::from))
                .collect()
        };
        let mut counts = ErasedCounts::default();
        let mut removals = Vec::new();
        let connections = keys(T::Connections)?;
        counts.connections = connections.len();
        // The store-wide connection counts lose the erased connections that could be read
        // (an unreadable one was never counted).
        let mut totals = self.connection_counts_or_recount()?;
        let mut recount = false;
        for k in &connections {
            if let Some(v) = self.tree(T::Connections).get(k)? {
                match codec::decode::<crate::Connection>("connections", k, &v) {
                    Ok(c) => totals.apply(Some(c.status.label()), None),
                    // What it counted as is unknown: count the survivors afresh instead.
                    Err(_) => recount = true,
                }
            }
        }
        if recount {
            totals = self.count_connections(&prefix)?;
        }
        for (t, list) in [
            (T::Connections, connections),
            (T::Grants, keys(T::Grants)?),
            (T::Counts, keys(T::Counts)?),
            (T::Idempotency, keys(T::Idempotency)?),
        ] {
            removals.extend(list.into_iter().map(|k| Write::remove(t, k)));
        }
        for k in keys(T::PostsByConnection)? {
            if let Some(id) = layout::id_suffix(&k) {
                counts.posts += 1;
                for t in [T::PostBodies, T::Status, T::Queued] {
                    removals.push(Write::remove(t, id.as_bytes().to_vec()));
                }
            }
            removals.push(Write::remove(T::PostsByConnection, k));
        }
        // Event groups hold several pen names' events: each one this pen name appears in
        // is rewritten without its events (or removed when nothing is left).
        let mut groups = std::collections::BTreeSet::new();
        let mut refs_unreadable = false;
        for item in self.tree(T::EventsByConnection).scan_prefix(&prefix) {
            let (k, v) = item?;
            match codec::decode::<EventRefs>("events_by_connection", &k, &v) {
                Ok(refs) => groups.extend(refs.groups),
                Err(_) => refs_unreadable = true,
            }
            removals.push(Write::remove(T::EventsByConnection, k.to_vec()));
        }
        if refs_unreadable {
            // Which groups the unreadable references named is unknown: look in all of them.
            groups.extend(self.groups_holding(|e| e.connection.pen_name == *pen)?);
        }
        for first in groups {
            let gk = first.to_be_bytes();
            let Some(v) = self.tree(T::Events).get(gk)? else {
                continue;
            };
            match codec::decode::<EventGroup>("events", &gk, &v) {
                Ok(mut group) => {
                    let before = group.events.len();
                    group.events.retain(|e| e.connection.pen_name != *pen);
                    counts.events += before - group.events.len();
                    removals.push(if group.events.is_empty() {
                        Write::remove(T::Events, gk.to_vec())
                    } else {
                        Write::put(T::Events, gk.to_vec(), encoded(&group)?)
                    });
                }
                // Named in the unreadable list when read; which pen names it held cannot
                // be told, so it stays.
                Err(e) => {
                    tracing::error!(error = %e, "an event group of an erased pen name cannot be read; left as it is")
                }
            }
        }
        // Pending OAuth authorizations are keyed by their random `state`, with the pen name
        // sealed inside: each one not yet used is opened to see whose it is. Left behind, a
        // late callback would connect the erased pen name again.
        for item in self.tree(T::OAuthStates).iter() {
            let (k, v) = item?;
            let Ok(record) = codec::decode::<OAuthStateRecord>("oauth_states", &k, &v) else {
                continue;
            };
            if record.used {
                continue;
            }
            let Ok(state) = std::str::from_utf8(&k) else {
                continue;
            };
            let owned = self
                .inner
                .vault
                .open(&layout::oauth_aad(state), &record.sealed, || {
                    "an OAuth state".to_string()
                })
                .ok()
                .and_then(|plain| {
                    codec::decode::<crate::PendingAuthorization>("oauth_states", &k, &plain).ok()
                })
                .is_some_and(|p| p.connection.pen_name == *pen);
            if owned {
                removals.push(Write::remove(T::OAuthStates, k.to_vec()));
            }
        }
        for item in self.tree(T::Quarantine).iter() {
            let (k, v) = item?;
            let owned = codec::decode::<Quarantined>("quarantine", &k, &v)
                .ok()
                .and_then(|q| q.connection)
                .is_some_and(|c| c.pen_name == *pen);
            if owned {
                removals.push(Write::remove(T::Quarantine, k.to_vec()));
            }
        }
        {
            let map = self
                .inner
                .unreadable
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let removed: HashSet<(&str, &[u8])> = removals
                .iter()
                .filter_map(|w| Some((T::from_index(w.tree)?.name(), w.key.as_slice())))
                .collect();
            counts.unreadable = map
                .iter()
                .filter(|((tree, key), record)| {
                    removed.contains(&(tree.as_str(), key.as_slice()))
                        || record
                            .connection
                            .as_ref()
                            .is_some_and(|c| c.pen_name == *pen)
                })
                .count();
        }
        for chunk in removals.chunks(ERASE_CHUNK) {
            self.write(chunk)?;
        }
        self.write(&[
            Write::put(
                T::Meta,
                layout::META_CONNECTION_COUNTS.to_vec(),
                encoded(&totals)?,
            ),
            Write::remove(T::Meta, marker),
        ])?;
        self.inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, r| r.pen_name.as_ref() != Some(pen));
        Ok(counts)
    }

    pub(crate) fn erasures_in_progress(&self) -> Result<Vec<PenName>, StoreError> {
        let mut out = Vec::new();
        for key in self.tree(T::Meta).scan_prefix(layout::META_ERASING).keys() {
            let key = key?;
            let pen = std::str::from_utf8(&key[layout::META_ERASING.len()..])
                .ok()
                .and_then(|s| PenName::parse(s).ok());
            match pen {
                Some(p) => out.push(p),
                None => tracing::error!(key = ?key, "an erasure marker names no pen name"),
            }
        }
        Ok(out)
    }

    /// Names every quarantined record in the unreadable list.
    pub(crate) fn load_quarantine(&self) -> Result<(), StoreError> {
        let mut map = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for item in self.tree(T::Quarantine).iter() {
            let (k, v) = item?;
            let record = match codec::decode::<Quarantined>("quarantine", &k, &v) {
                Ok(q) => crate::UnreadableRecord {
                    kind: q.kind,
                    key: format!("{}/{}", q.tree, codec::KeyDisplay(q.key)),
                    pen_name: q.connection.as_ref().map(|c| c.pen_name.clone()),
                    connection: q.connection,
                    post: q.post,
                    problem: q.problem,
                },
                Err(e) => crate::UnreadableRecord::from(e),
            };
            map.insert((T::Quarantine.name().to_string(), k.to_vec()), record);
        }
        Ok(())
    }
}

pub(crate) fn apply_writes(trees: &Trees, writes: &[Write]) -> Result<(), StoreError> {
    for w in writes {
        let Some(t) = T::from_index(w.tree) else {
            continue;
        };
        let tree = trees.get(t);
        match &w.value {
            Some(v) => {
                tree.insert(w.key.as_slice(), v.as_slice())?;
            }
            None => {
                tree.remove(w.key.as_slice())?;
            }
        }
    }
    Ok(())
}

/// Redoes the last commit if the journal holds one (idempotent: its writes were the last to
/// every key they touch), and returns the highest event number ever handed out with how
/// many writes were replayed.
pub(crate) fn replay_journal(trees: &Trees) -> Result<(u64, usize), StoreError> {
    let last_event = match trees.get(T::Events).last()? {
        Some((k, v)) => codec::decode::<EventGroup>("events", &k, &v)
            .map(|g| g.last())
            .unwrap_or_else(|_| <[u8; 8]>::try_from(k.as_ref()).map_or(0, u64::from_be_bytes)),
        None => 0,
    };
    let meta_number = |name: &[u8]| -> Result<u64, StoreError> {
        Ok(trees
            .get(T::Meta)
            .get(name)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    };
    // A purge may have removed every event: the numbers it removed are never handed out
    // again either.
    let stored_high = meta_number(SEQ_HIGH)?.max(meta_number(layout::META_EVENTS_PURGED_THROUGH)?);
    let Some(head) = trees.journal.get(layout::JOURNAL_HEAD)? else {
        return Ok((last_event.max(stored_high), 0));
    };
    let journal: Journal = codec::decode("journal", layout::JOURNAL_HEAD, &head)?;
    let mut writes = journal.writes;
    for i in 0..journal.chunks {
        let key = layout::journal_chunk_key(i);
        let chunk = trees.journal.get(&key)?.ok_or_else(|| {
            StoreError::Codec(codec::CodecError {
                tree: "journal",
                key: codec::KeyDisplay(key.clone()),
                problem: layout::missing("a journal chunk"),
            })
        })?;
        let body = match chunk.split_first() {
            Some((&Journal::VERSION, body)) => body,
            _ => {
                return Err(StoreError::Codec(codec::CodecError {
                    tree: "journal",
                    key: codec::KeyDisplay(key),
                    problem: codec::CodecProblem::UnknownVersion(
                        chunk.first().copied().unwrap_or(0),
                    ),
                }))
            }
        };
        let more: Vec<Write> = codec::decode_body(body).map_err(|problem| {
            StoreError::Codec(codec::CodecError {
                tree: "journal",
                key: codec::KeyDisplay(key.clone()),
                problem,
            })
        })?;
        writes.extend(more);
    }
    apply_writes(trees, &writes)?;
    let seq_high = last_event.max(stored_high).max(journal.seq_high);
    Ok((seq_high, writes.len()))
}

/// `meta` key of the highest event number handed out, written at a clean close (when the
/// journal, which otherwise carries it, is cleared).
pub(crate) const SEQ_HIGH: &[u8] = b"seq_high";

/// A clean close: the journal is no longer needed; keep the number it carried.
pub(crate) fn close(trees: &Trees, db: &sled::Db, seq_high: u64) {
    let result = (|| -> Result<(), sled::Error> {
        trees
            .get(T::Meta)
            .insert(SEQ_HIGH, &seq_high.to_be_bytes())?;
        trees.journal.remove(layout::JOURNAL_HEAD)?;
        db.flush()?;
        Ok(())
    })();
    if let Err(error) = result {
        tracing::error!(%error, "could not close the store cleanly; the next start replays its journal");
    }
}

#[cfg(test)]
pub(crate) type StagedForTests = Staged;

/// The writes `apply` would make for `staged`, without making them.
#[cfg(test)]
pub(crate) fn plan_for_tests(
    store: &SledStore,
    w: &mut WriterState,
    staged: Vec<Staged>,
) -> Vec<Write> {
    let mut plan = Plan::default();
    for s in staged {
        store.plan(&mut plan, s).unwrap();
    }
    store.plan_events(&mut plan, w).unwrap();
    store.plan_counts(&mut plan).unwrap();
    plan.writes
}

/// Records `writes` in the journal and stops there, as a crash would.
#[cfg(test)]
pub(crate) fn journal_only_for_tests(store: &SledStore, seq_high: u64, writes: &[Write]) {
    store.journal(seq_high, writes).unwrap();
}
