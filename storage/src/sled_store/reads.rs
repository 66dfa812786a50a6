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

use super::layout::{self, EventGroup, EventRefs, T};
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
        let status = match self.tree(T::Status).get(key)? {
            Some(bytes) => Some(self.decode::<PostStatus>(T::Status, key, &bytes)?),
            None => None,
        };
        let body = self.tree(T::PostBodies).get(key)?;
        match (status, body) {
            (None, None) => Ok(None),
            (Some(status), Some(body)) => {
                let body: PostBody = self.decode(T::PostBodies, key, &body)?;
                Ok(Some(Post::from_parts(body, status)))
            }
            (Some(_), None) => Err(self.missing(T::PostBodies, "post_body", key, "its body")),
            (None, Some(_)) => Err(self.missing(T::Status, "post_status", key, "its status")),
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
                    for tree in [T::Status, T::PostBodies] {
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

    /// The statuses of the posts in `posts_queued`, read in id order (which is the
    /// status tree's order, so a cold boot reads each page once).
    pub(crate) fn queued_sync(&self) -> Result<Loaded<PostStatus>, StoreError> {
        let mut loaded = Loaded::default();
        for k in self.tree(T::Queued).iter().keys() {
            let k = k?;
            let Some(v) = self.tree(T::Status).get(&k)? else {
                let problem = layout::missing("its status");
                self.note_unreadable(T::Status, "post_status", &k, &problem.to_string());
                loaded.unreadable.push(describe_unreadable(
                    T::Status,
                    "post_status",
                    &k,
                    &problem.to_string(),
                ));
                continue;
            };
            match self.decode::<PostStatus>(T::Status, &k, &v) {
                Ok(s) => loaded.items.push(s),
                Err(e) => {
                    let mut record =
                        describe_unreadable(T::Status, "post_status", &k, &problem_of(&e));
                    self.name_post_owner(&mut record, &k);
                    loaded.unreadable.push(record);
                }
            }
        }
        Ok(loaded)
    }

    /// Fills in who an unreadable post record belonged to, from whichever half of the
    /// post still reads, and names it so in the unreadable list — so the pen name's own
    /// attention list shows it before anyone has listed its posts.
    pub(crate) fn name_post_owner(&self, record: &mut UnreadableRecord, id_key: &[u8]) {
        let owner = self
            .tree(T::PostBodies)
            .get(id_key)
            .ok()
            .flatten()
            .and_then(|b| codec::decode::<PostBody>("post_bodies", id_key, &b).ok())
            .map(|b| b.connection)
            .or_else(|| {
                let status = self.tree(T::Status).get(id_key).ok().flatten()?;
                codec::decode::<PostStatus>("post_status", id_key, &status)
                    .ok()
                    .map(|s| s.connection)
            });
        let Some(owner) = owner else { return };
        record.pen_name = Some(owner.pen_name.clone());
        record.connection = Some(owner.clone());
        let mut map = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for tree in [T::Status, T::PostBodies] {
            if let Some(r) = map.get_mut(&(tree.name().to_string(), id_key.to_vec())) {
                r.connection = Some(owner.clone());
                r.pen_name = Some(owner.pen_name.clone());
            }
        }
    }

    pub(crate) fn counts_sync(&self, key: &ConnectionKey) -> Result<PostCounts, StoreError> {
        let k = key.storage_key();
        match self.tree(T::Counts).get(&k)? {
            Some(v) => self.decode(T::Counts, &k, &v),
            None => Ok(PostCounts::default()),
        }
    }

    // ---- derived records rebuilt from what they summarise ----
    //
    // Counts and event references only summarise other records. When one of them cannot
    // be read, a writer rebuilds it from those records (and says so) rather than start
    // it again from zero.

    /// A connection's post counts, read, or recounted from its posts' statuses when the
    /// stored counts cannot be read.
    pub(crate) fn counts_or_recount(&self, key: &ConnectionKey) -> Result<PostCounts, StoreError> {
        match self.counts_sync(key) {
            Err(e) if is_record_problem(&e) => {
                tracing::warn!(connection = %key, error = %e, "the post counts cannot be read; recounting them from the posts");
                let mut counts = PostCounts::default();
                let prefix = layout::connection_prefix(key);
                for k in self.tree(T::PostsByConnection).scan_prefix(&prefix).keys() {
                    let Some(id) = layout::id_suffix(&k?) else {
                        continue;
                    };
                    if let Some(v) = self.tree(T::Status).get(id.as_bytes())? {
                        if let Ok(s) =
                            codec::decode::<PostStatus>(T::Status.name(), id.as_bytes(), &v)
                        {
                            counts.apply(None, Some(s.state.label()));
                        }
                    }
                }
                Ok(counts)
            }
            other => other,
        }
    }

    /// The store-wide connection counts, read, or recounted from the connections when
    /// they cannot be read.
    pub(crate) fn connection_counts_or_recount(&self) -> Result<ConnectionCounts, StoreError> {
        match self.connection_counts_sync() {
            Err(e) if is_record_problem(&e) => {
                tracing::warn!(error = %e, "the connection counts cannot be read; recounting them from the connections");
                self.count_connections(&[])
            }
            other => other,
        }
    }

    /// Counts the connections that read, leaving out those under `except` (none when it
    /// is empty).
    pub(crate) fn count_connections(&self, except: &[u8]) -> Result<ConnectionCounts, StoreError> {
        let mut counts = ConnectionCounts::default();
        for item in self.tree(T::Connections).iter() {
            let (k, v) = item?;
            if !except.is_empty() && k.starts_with(except) {
                continue;
            }
            if let Ok(c) = codec::decode::<Connection>(T::Connections.name(), &k, &v) {
                counts.apply(None, Some(c.status.label()));
            }
        }
        Ok(counts)
    }

    /// The first sequence numbers of the event groups that hold an event `wanted`
    /// picks, by reading every group: for rebuilding references that cannot be read.
    pub(crate) fn groups_holding(
        &self,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(T::Events).iter() {
            let (k, v) = item?;
            let (Some(first), Ok(group)) = (
                layout::seq_suffix(&k),
                codec::decode::<EventGroup>(T::Events.name(), &k, &v),
            ) else {
                continue;
            };
            if group.events.iter().any(&wanted) {
                out.push(first);
            }
        }
        Ok(out)
    }

    /// The newest references of a connection's events: read, or rebuilt when they cannot
    /// be read — every group holding its events that no older chunk lists.
    pub(crate) fn event_refs_head_or_rebuild(
        &self,
        key: &ConnectionKey,
    ) -> Result<EventRefs, StoreError> {
        let head_key = layout::event_refs_head(key);
        let refs = self.tree(T::EventsByConnection);
        let Some(v) = refs.get(&head_key)? else {
            return Ok(EventRefs::default());
        };
        match self.decode::<EventRefs>(T::EventsByConnection, &head_key, &v) {
            Err(e) if is_record_problem(&e) => {
                tracing::warn!(connection = %key, error = %e, "the newest event references cannot be read; rebuilding them from the events");
                let mut chunked = HashSet::new();
                for item in refs.range(layout::connection_prefix(key)..head_key.clone()) {
                    let (k, v) = item?;
                    if let Ok(chunk) =
                        codec::decode::<EventRefs>(T::EventsByConnection.name(), &k, &v)
                    {
                        chunked.extend(chunk.groups);
                    }
                }
                let groups = self
                    .groups_holding(|e| e.connection == *key)?
                    .into_iter()
                    .filter(|g| !chunked.contains(g))
                    .collect();
                Ok(EventRefs { groups })
            }
            other => other,
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
        let events = self.tree(T::Events);
        // The group holding seq + 1 may begin before it.
        let from = match events
            .range(..=seq.saturating_add(1).to_be_bytes())
            .next_back()
        {
            Some(item) => item?.0.to_vec(),
            None => seq.saturating_add(1).to_be_bytes().to_vec(),
        };
        for item in events.range(from..=durable.to_be_bytes().to_vec()) {
            let (k, v) = item?;
            // A group that cannot be read is named (and logged) rather than ending the
            // stream for good at its numbers.
            let Ok(group) = self.decode_logged::<EventGroup>(T::Events, &k, &v) else {
                continue;
            };
            for e in group.events {
                if e.seq > seq && e.seq <= durable {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// A connection's events, newest first: its references (the head, then older
    /// chunks), each group read and filtered to the connection.
    pub(crate) fn events_of_connection_sync(
        &self,
        key: &ConnectionKey,
        page: EventPage,
    ) -> Result<Vec<Event>, StoreError> {
        let refs_tree = self.tree(T::EventsByConnection);
        let head_key = layout::event_refs_head(key);
        let mut lists: Vec<Vec<u64>> = Vec::new();
        if let Some(v) = refs_tree.get(&head_key)? {
            lists.push(
                self.decode::<EventRefs>(T::EventsByConnection, &head_key, &v)?
                    .groups,
            );
        }
        let mut chunks = refs_tree
            .range(layout::connection_prefix(key)..head_key.clone())
            .rev();
        let mut out = Vec::new();
        loop {
            let Some(groups) = lists.pop() else {
                match chunks.next() {
                    Some(item) => {
                        let (k, v) = item?;
                        lists.push(
                            self.decode::<EventRefs>(T::EventsByConnection, &k, &v)?
                                .groups,
                        );
                        continue;
                    }
                    None => break,
                }
            };
            for first in groups.into_iter().rev() {
                if out.len() >= page.limit {
                    return Ok(out);
                }
                if page.before.is_some_and(|b| first >= b) {
                    continue;
                }
                let gk = first.to_be_bytes();
                let Some(v) = self.tree(T::Events).get(gk)? else {
                    continue;
                };
                let Ok(group) = self.decode_logged::<EventGroup>(T::Events, &gk, &v) else {
                    continue;
                };
                for e in group.events.into_iter().rev() {
                    if out.len() >= page.limit {
                        break;
                    }
                    if page.before.is_none_or(|b| e.seq < b) && e.connection == *key {
                        out.push(e);
                    }
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn event_sync(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        let Some(item) = self.tree(T::Events).range(..=seq.to_be_bytes()).next_back() else {
            return Ok(None);
        };
        let (k, v) = item?;
        let group: EventGroup = self.decode(T::Events, &k, &v)?;
        Ok(group.events.into_iter().find(|e| e.seq == seq))
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
        let mut queued_states = HashSet::new();
        for item in self.tree(T::Status).iter() {
            let (k, v) = item?;
            let Some(id) = layout::post_id_key(&k) else {
                r.problems.push(format!(
                    "malformed post key {} in post_status",
                    KeyDisplay(k.to_vec())
                ));
                continue;
            };
            statuses.insert(id);
            match self.decode::<PostStatus>(T::Status, &k, &v) {
                Ok(s) => {
                    if s.state.is_queued() {
                        queued_states.insert(id);
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
        let mut in_queue = HashSet::new();
        for k in self.tree(T::Queued).iter().keys() {
            let k = k?;
            match layout::post_id_key(&k) {
                Some(id) => {
                    in_queue.insert(id);
                }
                None => r.problems.push(format!(
                    "malformed key {} in posts_queued",
                    KeyDisplay(k.to_vec())
                )),
            }
        }
        for id in queued_states.symmetric_difference(&in_queue) {
            r.problems.push(format!(
                "post {id} is {} posts_queued but its state says otherwise",
                if in_queue.contains(id) {
                    "in"
                } else {
                    "missing from"
                }
            ));
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
        // Every group in order; every connection with events in a group lists that group,
        // and lists nothing else.
        let mut holds: HashMap<ConnectionKey, HashSet<u64>> = HashMap::new();
        let mut last_seq = 0;
        for item in self.tree(T::Events).iter() {
            let (k, v) = item?;
            let key_seq = layout::seq_suffix(&k).unwrap_or(0);
            match self.decode::<EventGroup>(T::Events, &k, &v) {
                Ok(g) => {
                    r.events += g.events.len();
                    let ordered = g.events.windows(2).all(|w| w[0].seq < w[1].seq);
                    let first = g.events.first().map_or(0, |e| e.seq);
                    if g.events.is_empty() || !ordered || first < key_seq || key_seq <= last_seq {
                        r.problems.push(format!("event group {key_seq} is empty, out of order, or overlaps the one before"));
                    }
                    last_seq = g.last();
                    for e in &g.events {
                        holds
                            .entry(e.connection.clone())
                            .or_default()
                            .insert(key_seq);
                    }
                }
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        let mut listed: HashMap<ConnectionKey, HashSet<u64>> = HashMap::new();
        for item in self.tree(T::EventsByConnection).iter() {
            let (k, v) = item?;
            let Some(c) = layout::connection_of_index_key(&k) else {
                r.problems.push(format!(
                    "malformed event reference key {}",
                    KeyDisplay(k.to_vec())
                ));
                continue;
            };
            match self.decode::<EventRefs>(T::EventsByConnection, &k, &v) {
                Ok(refs) => listed.entry(c).or_default().extend(refs.groups),
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        for (c, groups) in &holds {
            if listed.get(c) != Some(groups) {
                r.problems.push(format!(
                    "the event references of {c} disagree with the groups that hold its events"
                ));
            }
        }
        for c in listed.keys() {
            if !holds.contains_key(c) {
                r.problems.push(format!(
                    "{c} lists event groups that hold none of its events"
                ));
            }
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
