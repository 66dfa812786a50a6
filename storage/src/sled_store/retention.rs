//! Retention: forgetting old events, idempotency records and finished posts, in bounded
//! batches. Each batch is one journaled commit made under the writer, so commits wait for
//! at most one batch, never for a whole purge; whatever a batch re-reads under the writer
//! (a post's state, a connection's event references) cannot change before it is written.
//!
//! No purge needs a record by time the layout does not have:
//! - events are kept in sequence order, so a purge takes groups from the oldest end and
//!   stops at the first group holding an event at or after the cutoff;
//! - idempotency records and post statuses are small and carry their own time: a purge
//!   reads them all once, which an hourly purge can afford, and removes the stale ones.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use crate::batch::encoded;
use crate::{
    ConnectionKey, IdempotentRequest, PostId, PostState, PostStatus, StoreError, Timestamp,
};

use super::layout::{self, EventGroup, EventRefs, Write, T};
use super::SledStore;

/// Event groups removed in one batch (a group holds up to 512 events; most hold a few)…
const EVENT_GROUPS_PER_BATCH: usize = 256;
/// …and events, so that a batch of large groups is read as quickly as one of small ones.
const EVENTS_PER_BATCH: usize = 4096;
/// Idempotency records removed in one batch.
const RECORDS_PER_BATCH: usize = 1024;
/// Posts removed in one batch (four records each, and their connections' counts).
const POSTS_PER_BATCH: usize = 256;

/// Whether a post is finished: nothing moves it out of Published or Cancelled. Failed,
/// Held and Unconfirmed wait for a person and are never purged by age.
fn is_finished(state: &PostState) -> bool {
    matches!(state, PostState::Published(_) | PostState::Cancelled)
}

impl SledStore {
    pub(crate) fn purge_events_before_sync(&self, before: Timestamp) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let (events, more) = self.purge_event_batch(before)?;
            removed += events;
            if !more {
                return Ok(removed);
            }
        }
    }

    /// One batch: the oldest groups whose every event is durable and older than `before`.
    /// Returns how many events it removed and whether there may be more.
    fn purge_event_batch(&self, before: Timestamp) -> Result<(usize, bool), StoreError> {
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let durable = self.inner.feed.durable_seq.load(Ordering::Acquire);
        let mut groups = Vec::new();
        let mut connections: BTreeSet<ConnectionKey> = BTreeSet::new();
        let mut events = 0;
        let mut through = 0;
        let mut more = true;
        for item in self.tree(T::Events).iter() {
            if groups.len() >= EVENT_GROUPS_PER_BATCH || events >= EVENTS_PER_BATCH {
                break;
            }
            let (k, v) = item?;
            let Some(first) = layout::seq_suffix(&k) else {
                more = false;
                break;
            };
            let group = match self.decode::<EventGroup>(T::Events, &k, &v) {
                Ok(group) => group,
                Err(error) => {
                    // Its times and owners are unknown: everything after it waits for a
                    // person to look (it is named in the unreadable list).
                    tracing::error!(%error, "an unreadable event group stops the purge of older events");
                    more = false;
                    break;
                }
            };
            if group.last() > durable || group.events.iter().any(|e| e.at >= before) {
                more = false;
                break;
            }
            connections.extend(group.events.iter().map(|e| e.connection.clone()));
            events += group.events.len();
            through = through.max(group.last()).max(first);
            groups.push(first);
        }
        if groups.is_empty() {
            return Ok((0, false));
        }
        let gone: BTreeSet<u64> = groups.iter().copied().collect();
        let mut writes: Vec<Write> = groups
            .iter()
            .map(|first| Write::remove(T::Events, first.to_be_bytes().to_vec()))
            .collect();
        for key in &connections {
            self.trim_event_refs(key, &gone, &mut writes)?;
        }
        let purged = self.events_purged_through_sync()?.max(through);
        writes.push(Write::put(
            T::Meta,
            layout::META_EVENTS_PURGED_THROUGH.to_vec(),
            purged.to_be_bytes().to_vec(),
        ));
        self.write_locked(w.seq_high, &writes)?;
        drop(w);
        self.forget_unreadable(writes.into_iter().map(|w| (w.tree, w.key)));
        Ok((events, more))
    }

    /// Takes the removed groups out of a connection's event references: a record left
    /// empty is removed, so no connection lists groups that hold none of its events. The
    /// removed groups are the oldest, so only the oldest records change. A record that
    /// cannot be read is left as it is (named in the unreadable list; a writer rebuilds a
    /// head it cannot read).
    fn trim_event_refs(
        &self,
        key: &ConnectionKey,
        gone: &BTreeSet<u64>,
        writes: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        let newest_gone = gone.last().copied().unwrap_or(0);
        let head = layout::event_refs_head(key);
        for item in self
            .tree(T::EventsByConnection)
            .range(layout::connection_prefix(key)..=head)
        {
            let (k, v) = item?;
            let Ok(mut refs) = self.decode::<EventRefs>(T::EventsByConnection, &k, &v) else {
                continue;
            };
            let before = refs.groups.len();
            refs.groups.retain(|g| !gone.contains(g));
            if refs.groups.len() != before {
                writes.push(if refs.groups.is_empty() {
                    Write::remove(T::EventsByConnection, k.to_vec())
                } else {
                    Write::put(T::EventsByConnection, k.to_vec(), encoded(&refs)?)
                });
            }
            if refs.groups.first().is_some_and(|g| *g > newest_gone) {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn events_purged_through_sync(&self) -> Result<u64, StoreError> {
        Ok(self
            .tree(T::Meta)
            .get(layout::META_EVENTS_PURGED_THROUGH)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    pub(crate) fn purge_idempotency_before_sync(
        &self,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        let stale = |k: &[u8], v: &[u8]| {
            self.decode::<IdempotentRequest>(T::Idempotency, k, v)
                .is_ok_and(|r| r.created_at < before)
        };
        let mut removed = 0;
        let mut candidates = Vec::new();
        for item in self.tree(T::Idempotency).iter() {
            let (k, v) = item?;
            if stale(&k, &v) {
                candidates.push(k.to_vec());
            }
            if candidates.len() >= RECORDS_PER_BATCH {
                removed +=
                    self.remove_if(T::Idempotency, &std::mem::take(&mut candidates), stale)?;
            }
        }
        removed += self.remove_if(T::Idempotency, &candidates, stale)?;
        Ok(removed)
    }

    /// Removes those of `keys` that `still` judges stale when read again under the writer.
    fn remove_if(
        &self,
        t: T,
        keys: &[Vec<u8>],
        still: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut writes = Vec::new();
        for k in keys {
            if let Some(v) = self.tree(t).get(k)? {
                if still(k, &v) {
                    writes.push(Write::remove(t, k.clone()));
                }
            }
        }
        if !writes.is_empty() {
            self.write_locked(w.seq_high, &writes)?;
        }
        Ok(writes.len())
    }

    pub(crate) fn purge_finished_posts_before_sync(
        &self,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        let stale = |s: &PostStatus| is_finished(&s.state) && s.updated_at < before;
        let mut removed = 0;
        let mut candidates = Vec::new();
        for item in self.tree(T::Status).iter() {
            let (k, v) = item?;
            let Some(id) = layout::post_id_key(&k) else {
                continue;
            };
            // One that does not decode is named in the unreadable list and kept.
            if self
                .decode::<PostStatus>(T::Status, &k, &v)
                .is_ok_and(|s| stale(&s))
            {
                candidates.push(id);
            }
            if candidates.len() >= POSTS_PER_BATCH {
                removed += self.delete_posts_if(&std::mem::take(&mut candidates), stale)?;
            }
        }
        removed += self.delete_posts_if(&candidates, stale)?;
        Ok(removed)
    }

    /// Deletes those of `ids` whose status `still` judges stale when read again under
    /// the writer, as one commit.
    fn delete_posts_if(
        &self,
        ids: &[PostId],
        still: impl Fn(&PostStatus) -> bool,
    ) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut doomed = Vec::new();
        for id in ids {
            if let Some(Some(status)) = self.locate_post(*id)? {
                if still(&status) {
                    doomed.push(*id);
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let writes = self.plan_deletions(doomed.iter().copied())?;
        self.write_locked(w.seq_high, &writes)?;
        drop(w);
        self.forget_unreadable(writes.into_iter().map(|w| (w.tree, w.key)));
        Ok(doomed.len())
    }
}
