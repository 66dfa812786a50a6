//! Reads, and the integrity check. No read takes the writer's lock; every record that does
//! not decode is named in the unreadable list on the way.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use crate::codec::{self, KeyDisplay};
use crate::port::{
    ConnectionCounts, EventPage, IntegrityReport, Loaded, PostCounts, UnreadableRecord,
};
use crate::{
    Connection, ConnectionKey, Event, Grant, Post, PostBody, PostId, PostStatus, StoreError,
};

use super::layout::{self, T};
use super::{describe_unreadable, SledStore};

impl SledStore {
    pub(crate) fn connection_sync(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<Connection>, StoreError> {
        let k = key.storage_key();
        match self.tree(T::Connections).get(&k)? {
            Some(v) => Ok(Some(self.decode(T::Connections, &k, &v)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn connections_with_prefix(
        &self,
        prefix: &[u8],
    ) -> Result<Loaded<Connection>, StoreError> {
        let mut loaded = Loaded::default();
        for item in self.tree(T::Connections).scan_prefix(prefix) {
            let (k, v) = item?;
            match self.decode::<Connection>(T::Connections, &k, &v) {
                Ok(c) => loaded.items.push(c),
                Err(e) => loaded.unreadable.push(describe_unreadable(
                    T::Connections,
                    "connection",
                    &k,
                    &problem_of(&e),
                )),
            }
        }
        Ok(loaded)
    }

    pub(crate) fn connection_counts_sync(&self) -> Result<ConnectionCounts, StoreError> {
        match self.tree(T::Meta).get(layout::META_CONNECTION_COUNTS)? {
            Some(v) => self.decode(T::Meta, layout::META_CONNECTION_COUNTS, &v),
            None => Ok(ConnectionCounts::default()),
        }
    }

    pub(crate) fn grant_sync(&self, key: &ConnectionKey) -> Result<Option<Grant>, StoreError> {
        let k = key.storage_key();
        match self.tree(T::Grants).get(&k)? {
            Some(sealed) => Ok(Some(self.open_grant(&k, &sealed)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn post_sync(&self, id: PostId) -> Result<Option<Post>, StoreError> {
        let key = id.as_bytes();
        let mut status = None;
        for tree in [T::Queued, T::Settled] {
            if let Some(bytes) = self.tree(tree).get(key)? {
                status = Some(self.decode::<PostStatus>(tree, key, &bytes)?);
                break;
            }
        }
        let body = self.tree(T::PostBodies).get(key)?;
        match (status, body) {
            (None, None) => Ok(None),
            (Some(status), Some(body)) => {
                let body: PostBody = self.decode(T::PostBodies, key, &body)?;
                Ok(Some(Post::from_parts(body, status)))
            }
            (Some(_), None) => Err(self.missing(T::PostBodies, "post_body", key, "its body")),
            (None, Some(_)) => Err(self.missing(T::Queued, "post_status", key, "its status")),
        }
    }

    fn missing(&self, t: T, kind: &str, key: &[u8], what: &str) -> StoreError {
        let problem = layout::missing(what);
        self.note_unreadable(t, kind, key, &problem.to_string());
        StoreError::Codec(codec::CodecError {
            tree: t.name(),
            key: KeyDisplay(key.to_vec()),
            problem,
        })
    }

    /// Posts listed under a by-connection prefix; one that cannot be read is named with
    /// the connection its index entry says it belongs to.
    pub(crate) fn posts_by_index_prefix(&self, prefix: &[u8]) -> Result<Loaded<Post>, StoreError> {
        let mut loaded = Loaded::default();
        for k in self.tree(T::PostsByConnection).scan_prefix(prefix).keys() {
            let k = k?;
            let Some(id) = layout::id_suffix(&k) else {
                continue;
            };
            match self.post_sync(id) {
                Ok(Some(p)) => loaded.items.push(p),
                Ok(None) => {}
                Err(e) if is_record_problem(&e) => {
                    let mut record =
                        describe_unreadable(T::PostsByConnection, "post", &k, &problem_of(&e));
                    record.key = format!("post {id}");
                    // The richer name replaces the bare one the read left.
                    let mut map = self
                        .inner
                        .unreadable
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    for tree in [T::Queued, T::Settled, T::PostBodies] {
                        if let Some(r) =
                            map.get_mut(&(tree.name().to_string(), id.as_bytes().to_vec()))
                        {
                            r.connection = record.connection.clone();
                            r.pen_name = record.pen_name.clone();
                        }
                    }
                    drop(map);
                    loaded.unreadable.push(record);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(loaded)
    }

    pub(crate) fn queued_sync(&self) -> Result<Loaded<PostStatus>, StoreError> {
        let mut loaded = Loaded::default();
        for item in self.tree(T::Queued).iter() {
            let (k, v) = item?;
            match self.decode::<PostStatus>(T::Queued, &k, &v) {
                Ok(s) => loaded.items.push(s),
                Err(e) => loaded.unreadable.push(describe_unreadable(
                    T::Queued,
                    "post_status",
                    &k,
                    &problem_of(&e),
                )),
            }
        }
        Ok(loaded)
    }

    pub(crate) fn counts_sync(&self, key: &ConnectionKey) -> Result<PostCounts, StoreError> {
        let k = key.storage_key();
        match self.tree(T::Counts).get(&k)? {
            Some(v) => self.decode(T::Counts, &k, &v),
            None => Ok(PostCounts::default()),
        }
    }

    /// Durable events only: a number a reader has seen is never handed out again, even
    /// after a crash that loses what was not yet durable.
    pub(crate) fn events_after_sync(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let durable = self.inner.feed.durable_seq.load(Ordering::Acquire);
        let mut out = Vec::new();
        if seq >= durable {
            return Ok(out);
        }
        let start = seq.saturating_add(1).to_be_bytes();
        let end = durable.to_be_bytes();
        for item in self.tree(T::Events).range(start..=end) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            // An event that cannot be read is named (and logged) rather than ending the
            // stream for good at its number.
            if let Ok(e) = self.decode_logged::<Event>(T::Events, &k, &v) {
                out.push(e);
            }
        }
        Ok(out)
    }

    pub(crate) fn events_of_connection_sync(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        let prefix = layout::connection_prefix(key);
        let end = match page.before {
            Some(seq) => layout::event_by_connection_key(key, seq),
            None => layout::prefix_end(&prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 9]),
        };
        let mut out = Vec::new();
        for k in self
            .tree(T::EventsByConnection)
            .range(prefix.clone()..end)
            .keys()
            .rev()
        {
            if out.len() >= page.limit {
                break;
            }
            let k = k?;
            let Some(seq) = layout::seq_suffix(&k) else {
                continue;
            };
            let key = seq.to_be_bytes();
            if let Some(v) = self.tree(T::Events).get(key)? {
                if let Ok(e) = self.decode_logged::<Event>(T::Events, &key, &v) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn event_sync(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        let k = seq.to_be_bytes();
        match self.tree(T::Events).get(k)? {
            Some(v) => Ok(Some(self.decode(T::Events, &k, &v)?)),
            None => Ok(None),
        }
    }

    fn decode_logged<R: codec::Record>(
        &self,
        t: T,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<R, StoreError> {
        self.decode(t, key, bytes).inspect_err(|error| {
            tracing::error!(%error, "an unreadable record was left out of a listing; it is named in the unreadable list");
        })
    }

    /// Walks every tree: records decode, each post has one body, one status in the tree
    /// its state belongs to and its index entry, counts agree with the statuses, and every
    /// event index entry points at an event.
    pub(crate) fn check_integrity_sync(&self) -> Result<IntegrityReport, StoreError> {
        let mut r = IntegrityReport::default();
        let mut connections = HashSet::new();
        let mut by_status = ConnectionCounts::default();
        for item in self.tree(T::Connections).iter() {
            let (k, v) = item?;
            r.connections += 1;
            let decoded = self.decode::<Connection>(T::Connections, &k, &v);
            if let Ok(c) = &decoded {
                by_status.apply(None, Some(c.status.label()));
            }
            match decoded {
                Ok(c) if c.key.storage_key() != k.as_ref() => r.problems.push(format!(
                    "connection under {} claims key {}",
                    KeyDisplay(k.to_vec()),
                    c.key
                )),
                Ok(_) => {}
                Err(e) => r.problems.push(e.to_string()),
            }
            connections.insert(k.to_vec());
        }
        let stored = self.connection_counts_sync()?;
        if stored != by_status {
            r.problems.push(format!(
                "connection counts say {stored:?}, the connections say {by_status:?}"
            ));
        }
        for item in self.tree(T::Grants).iter() {
            let (k, v) = item?;
            r.grants += 1;
            if !connections.contains(k.as_ref()) {
                r.problems.push(format!(
                    "grant {} has no connection",
                    KeyDisplay(k.to_vec())
                ));
            }
            if let Err(e) = self.open_grant(&k, &v) {
                r.problems.push(e.to_string());
            }
        }
        let mut indexed: HashMap<PostId, ConnectionKey> = HashMap::new();
        for k in self.tree(T::PostsByConnection).iter().keys() {
            let k = k?;
            match (layout::connection_of_index_key(&k), layout::id_suffix(&k)) {
                (Some(c), Some(id)) => {
                    if indexed.insert(id, c).is_some() {
                        r.problems
                            .push(format!("post {id} is indexed under two connections"));
                    }
                }
                _ => r.problems.push(format!(
                    "malformed post index key {}",
                    KeyDisplay(k.to_vec())
                )),
            }
        }
        let mut counted: HashMap<ConnectionKey, PostCounts> = HashMap::new();
        let mut statuses = HashSet::new();
        for tree in [T::Queued, T::Settled] {
            for item in self.tree(tree).iter() {
                let (k, v) = item?;
                let Some(id) = layout::post_id_key(&k) else {
                    r.problems.push(format!(
                        "malformed post key {} in {}",
                        KeyDisplay(k.to_vec()),
                        tree.name()
                    ));
                    continue;
                };
                if !statuses.insert(id) {
                    r.problems
                        .push(format!("post {id} has a status in both status trees"));
                }
                match self.decode::<PostStatus>(tree, &k, &v) {
                    Ok(s) => {
                        if s.state.is_queued() != (tree == T::Queued) {
                            r.problems.push(format!(
                                "post {id} is {} but filed in {}",
                                s.state.label(),
                                tree.name()
                            ));
                        }
                        if indexed.get(&id) != Some(&s.connection) {
                            r.problems.push(format!(
                                "post {id} has no index entry under {}",
                                s.connection
                            ));
                        }
                        counted
                            .entry(s.connection.clone())
                            .or_default()
                            .apply(None, Some(s.state.label()));
                    }
                    Err(e) => r.problems.push(e.to_string()),
                }
            }
        }
        for item in self.tree(T::PostBodies).iter() {
            let (k, v) = item?;
            r.posts += 1;
            let id = layout::post_id_key(&k);
            if id.is_none_or(|id| !statuses.contains(&id)) {
                r.problems.push(format!(
                    "post body {} has no status",
                    KeyDisplay(k.to_vec())
                ));
            }
            if let Err(e) = self.decode::<PostBody>(T::PostBodies, &k, &v) {
                r.problems.push(e.to_string());
            }
        }
        if statuses.len() != r.posts {
            r.problems.push(format!(
                "{} post statuses for {} post bodies",
                statuses.len(),
                r.posts
            ));
        }
        for id in indexed.keys() {
            if !statuses.contains(id) {
                r.problems.push(format!("stale post index entry for {id}"));
            }
        }
        let mut stored_counts = HashSet::new();
        for item in self.tree(T::Counts).iter() {
            let (k, v) = item?;
            let Some(key) = ConnectionKey::from_storage_key(&k) else {
                r.problems
                    .push(format!("malformed counts key {}", KeyDisplay(k.to_vec())));
                continue;
            };
            stored_counts.insert(key.clone());
            match self.decode::<PostCounts>(T::Counts, &k, &v) {
                Ok(c) => {
                    let expected = counted.get(&key).copied().unwrap_or_default();
                    if c != expected {
                        r.problems.push(format!(
                            "counts of {key} say {c:?}, the posts say {expected:?}"
                        ));
                    }
                }
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        for (key, c) in &counted {
            if c.total() > 0 && !stored_counts.contains(key) {
                r.problems.push(format!("{key} has posts but no counts"));
            }
        }
        let mut events = HashSet::new();
        for item in self.tree(T::Events).iter() {
            let (k, v) = item?;
            r.events += 1;
            match self.decode::<Event>(T::Events, &k, &v) {
                Ok(e) => {
                    events.insert(e.seq);
                    if e.seq.to_be_bytes() != k.as_ref() {
                        r.problems
                            .push(format!("event {} is stored under another number", e.seq));
                    }
                }
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        let mut indexed_events = 0;
        for k in self.tree(T::EventsByConnection).iter().keys() {
            let k = k?;
            indexed_events += 1;
            match layout::seq_suffix(&k) {
                Some(seq) if self.tree(T::Events).contains_key(seq.to_be_bytes())? => {}
                _ => r.problems.push(format!(
                    "event index {} points at no event",
                    KeyDisplay(k.to_vec())
                )),
            }
        }
        if indexed_events != r.events {
            r.problems.push(format!(
                "{indexed_events} event index entries for {} events",
                r.events
            ));
        }
        Ok(r)
    }
}

/// Whether an error is about one record (it does not decode or open), rather than the
/// store as a whole (I/O).
pub(crate) fn is_record_problem(e: &StoreError) -> bool {
    matches!(e, StoreError::Codec(_)) || super::is_unopenable(e)
}

pub(crate) fn problem_of(e: &StoreError) -> String {
    match e {
        StoreError::Codec(c) => c.problem.to_string(),
        other => other.to_string(),
    }
}

impl From<&StoreError> for UnreadableRecord {
    fn from(e: &StoreError) -> UnreadableRecord {
        UnreadableRecord {
            kind: "record".into(),
            key: String::new(),
            pen_name: None,
            connection: None,
            post: None,
            problem: e.to_string(),
        }
    }
}
