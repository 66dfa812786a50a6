//! Format 1, read for the upgrade to format 2.
//!
//! Format 1 was one sled database in `db/` whose records all began with the version byte 1,
//! with posts stored whole. Its `Post` changed shape once without a new version (commit
//! 1b8d4ad added `waiting`), so a format-1 post is read as the later shape and, failing
//! that, as the earlier one: the two cannot be mistaken for each other, because the
//! decoder insists every byte is used (the earlier shape is one field short of the later).
//!
//! Every record is carried over; one that cannot be read is kept whole in the quarantine
//! tree and named as unreadable, never dropped.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::codec::{self, CodecProblem, KeyDisplay, Record};
use crate::port::{ConnectionCounts, PostCounts};
use crate::vault::{Vault, VaultError};
use crate::{
    Connection, ConnectionKey, Content, Event, Grant, IdempotentRequest, Platform, Post, PostId,
    PostKind, PostState, Reason, StoreError, Timestamp,
};

use super::layout::{self, OAuthStateRecord, Quarantined, Trees, Write, T};
use super::writer::apply_writes;

/// A format-1 post as written from 1b8d4ad on: the earlier shape with `waiting` after it.
/// bincode writes a struct as its fields in order, with nothing around them, so the
/// nested `before` reads the same bytes as the flat record did.
#[derive(Deserialize)]
struct PostWithWaiting {
    before: PostBeforeWaiting,
    waiting: Option<Reason>,
}

/// A format-1 post as written before 1b8d4ad.
#[derive(Deserialize)]
struct PostBeforeWaiting {
    id: PostId,
    group_id: Option<PostId>,
    connection: ConnectionKey,
    target: Option<String>,
    kind: PostKind,
    content: Content,
    due_at: Timestamp,
    next_attempt_at: Option<Timestamp>,
    state: PostState,
    attempts: u32,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl PostBeforeWaiting {
    fn into_post(self, waiting: Option<Reason>) -> Post {
        Post {
            id: self.id,
            group_id: self.group_id,
            connection: self.connection,
            target: self.target,
            kind: self.kind,
            content: self.content,
            due_at: self.due_at,
            next_attempt_at: self.next_attempt_at,
            state: self.state,
            attempts: self.attempts,
            created_at: self.created_at,
            updated_at: self.updated_at,
            waiting,
        }
    }
}

/// Which shape a format-1 post had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V1PostShape {
    WithWaiting,
    BeforeWaiting,
}

/// Reads a format-1 post of either shape.
pub(crate) fn decode_v1_post(bytes: &[u8]) -> Result<(Post, V1PostShape), CodecProblem> {
    let (&version, body) = bytes.split_first().ok_or(CodecProblem::Empty)?;
    if version != 1 {
        return Err(CodecProblem::UnknownVersion(version));
    }
    let later = match codec::decode_body::<PostWithWaiting>(body) {
        Ok(p) => return Ok((p.before.into_post(p.waiting), V1PostShape::WithWaiting)),
        Err(e) => e,
    };
    match codec::decode_body::<PostBeforeWaiting>(body) {
        Ok(p) => Ok((p.into_post(None), V1PostShape::BeforeWaiting)),
        Err(earlier) => Err(CodecProblem::Malformed(format!(
            "neither format-1 post shape reads it: {later} / {earlier}"
        ))),
    }
}

#[derive(Default)]
struct Tally {
    connections: usize,
    grants: usize,
    posts: usize,
    posts_before_waiting: usize,
    events: usize,
    oauth_states: usize,
    idempotency: usize,
    quarantined: usize,
}

/// Copies every record of the format-1 tree `tree` that reads as `R` into `to` unchanged,
/// and hands the rest to `quarantine`; answers how many were copied.
fn carry_verbatim<R: Record>(
    old: &sled::Db,
    tree: &'static str,
    to: T,
    out: &mut Batcher<'_>,
    tally: &mut Tally,
    quarantine: &impl Fn(&mut Batcher<'_>, &mut Tally, Quarantined) -> Result<(), StoreError>,
) -> Result<usize, StoreError> {
    let mut carried = 0;
    for item in old.open_tree(tree)?.iter() {
        let (k, v) = item?;
        match codec::decode::<R>(tree, &k, &v) {
            Ok(_) => {
                out.put(to, k.to_vec(), v.to_vec())?;
                carried += 1;
            }
            Err(e) => quarantine(
                out,
                tally,
                Quarantined {
                    kind: R::KIND.into(),
                    tree: tree.into(),
                    key: k.to_vec(),
                    value: v.to_vec(),
                    problem: e.problem.to_string(),
                    connection: None,
                    post: None,
                },
            )?,
        }
    }
    Ok(carried)
}

/// Builds `data_dir/sled-migrating` (format 2) from `data_dir/db` (format 1), durable on
/// return: step 1 of the upgrade in the `migrate` module, which then switches over.
pub(crate) fn migrate_v1(data_dir: &Path, vault: &Vault) -> Result<Vec<String>, StoreError> {
    let fail = |detail: String| StoreError::Migration {
        path: data_dir.to_path_buf(),
        detail,
    };
    let v1_path = data_dir.join(layout::V1_DIR);
    let old = sled::Config::new().path(&v1_path).open().map_err(|e| {
        fail(format!(
            "the format-1 database in {} does not open: {e}",
            v1_path.display()
        ))
    })?;
    // The key first: a wrong key changes nothing.
    let old_meta = old.open_tree("meta")?;
    if let Some(sealed) = old_meta.get(layout::META_KEY_CHECK)? {
        vault
            .open(layout::META_KEY_CHECK, &sealed, String::new)
            .map_err(|_| VaultError::WrongMasterKey)?;
    }
    let target = data_dir.join(layout::MIGRATING_DIR);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|source| StoreError::DataDir {
            path: target.clone(),
            source,
        })?;
    }
    let new = sled::Config::new().path(&target).open()?;
    let trees = Trees::open(&new)?;
    let mut tally = Tally::default();
    let mut out = Batcher::new(&trees);

    // Who each post and event belonged to, from the old indexes, to name a record that
    // cannot be read.
    let mut post_owner: HashMap<PostId, ConnectionKey> = HashMap::new();
    for k in old.open_tree("posts_by_connection")?.iter().keys() {
        let k = k?;
        if let (Some(c), Some(id)) = (layout::connection_of_index_key(&k), layout::id_suffix(&k)) {
            post_owner.insert(id, c);
        }
    }
    let mut event_owner: HashMap<u64, ConnectionKey> = HashMap::new();
    for k in old.open_tree("events_by_subject")?.iter().keys() {
        let k = k?;
        if let (Some(c), Some(seq)) = (v1_event_subject(&k), layout::seq_suffix(&k)) {
            event_owner.insert(seq, c);
        }
    }

    let quarantine = |out: &mut Batcher,
                      tally: &mut Tally,
                      q: Quarantined|
     -> Result<(), StoreError> {
        tracing::warn!(tree = %q.tree, key = %KeyDisplay(q.key.clone()), problem = %q.problem, "a format-1 record cannot be read; keeping it in quarantine");
        tally.quarantined += 1;
        out.put(
            T::Quarantine,
            layout::quarantine_key(&q.tree, &q.key),
            codec::encode(&q)?,
        )
    };

    let old_grants = old.open_tree("grants")?;
    let mut by_status = ConnectionCounts::default();
    for item in old.open_tree("connections")?.iter() {
        let (k, v) = item?;
        match codec::decode::<Connection>("connections", &k, &v) {
            Ok(mut c) => {
                by_status.apply(None, Some(c.status.label()));
                if let Some(sealed) = old_grants.get(&k)? {
                    let facts = vault
                        .open(&layout::grant_aad(&k), &sealed, String::new)
                        .ok()
                        .and_then(|plain| codec::decode::<Grant>("grants", &k, &plain).ok())
                        .map(|g| g.facts());
                    c.grant = facts;
                }
                out.put(T::Connections, k.to_vec(), codec::encode(&c)?)?;
                tally.connections += 1;
            }
            Err(e) => quarantine(
                &mut out,
                &mut tally,
                Quarantined {
                    kind: Connection::KIND.into(),
                    tree: "connections".into(),
                    key: k.to_vec(),
                    value: v.to_vec(),
                    problem: e.problem.to_string(),
                    connection: ConnectionKey::from_storage_key(&k),
                    post: None,
                },
            )?,
        }
    }
    // Sealed grants move as they are: same key, same associated data. One that does not
    // open stays where it is and is named when the engine reads it at boot.
    for item in old_grants.iter() {
        let (k, v) = item?;
        out.put(T::Grants, k.to_vec(), v.to_vec())?;
        tally.grants += 1;
    }

    let mut counts: HashMap<ConnectionKey, PostCounts> = HashMap::new();
    for item in old.open_tree("posts")?.iter() {
        let (k, v) = item?;
        let problem = match decode_v1_post(&v) {
            Ok((post, shape)) if post.id.as_bytes() == k.as_ref() => {
                let id = post.id.as_bytes().to_vec();
                out.put(T::Status, id.clone(), codec::encode(&post.status())?)?;
                if post.state.is_queued() {
                    out.put(T::Queued, id.clone(), Vec::new())?;
                }
                out.put(T::PostBodies, id, codec::encode(&post.body())?)?;
                out.put(
                    T::PostsByConnection,
                    layout::by_connection_key(&post.connection, post.id),
                    Vec::new(),
                )?;
                counts
                    .entry(post.connection.clone())
                    .or_default()
                    .apply(None, Some(post.state.label()));
                tally.posts += 1;
                if shape == V1PostShape::BeforeWaiting {
                    tally.posts_before_waiting += 1;
                }
                continue;
            }
            Ok((post, _)) => format!("it is stored under another id than its own ({})", post.id),
            Err(problem) => problem.to_string(),
        };
        quarantine(
            &mut out,
            &mut tally,
            Quarantined {
                kind: "post".into(),
                tree: "posts".into(),
                key: k.to_vec(),
                value: v.to_vec(),
                problem,
                connection: layout::post_id_key(&k).and_then(|id| post_owner.get(&id).cloned()),
                post: layout::post_id_key(&k),
            },
        )?;
    }
    for (key, c) in &counts {
        out.put(T::Counts, key.storage_key(), codec::encode(c)?)?;
    }
    out.put(
        T::Meta,
        layout::META_CONNECTION_COUNTS.to_vec(),
        codec::encode(&by_status)?,
    )?;

    let mut seq_high = 0;
    // Format-1 events become groups of consecutive events, and each connection's list of
    // the groups that hold its events.
    let mut group: Vec<Event> = Vec::new();
    let mut refs: HashMap<ConnectionKey, Vec<u64>> = HashMap::new();
    let flush_group = |out: &mut Batcher,
                       group: &mut Vec<Event>,
                       refs: &mut HashMap<ConnectionKey, Vec<u64>>|
     -> Result<(), StoreError> {
        let Some(first) = group.first().map(|e| e.seq) else {
            return Ok(());
        };
        for e in group.iter() {
            let list = refs.entry(e.connection.clone()).or_default();
            if list.last() != Some(&first) {
                list.push(first);
            }
        }
        let events = std::mem::take(group);
        out.put(
            T::Events,
            first.to_be_bytes().to_vec(),
            codec::encode(&layout::EventGroup { events })?,
        )
    };
    for item in old.open_tree("events")?.iter() {
        let (k, v) = item?;
        let seq = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).ok();
        seq_high = seq_high.max(seq.unwrap_or(0));
        match codec::decode::<Event>("events", &k, &v) {
            Ok(e) if Some(e.seq) == seq => {
                group.push(e);
                if group.len() >= layout::EVENT_GROUP_MAX {
                    flush_group(&mut out, &mut group, &mut refs)?;
                }
                tally.events += 1;
            }
            other => quarantine(
                &mut out,
                &mut tally,
                Quarantined {
                    kind: Event::KIND.into(),
                    tree: "events".into(),
                    key: k.to_vec(),
                    value: v.to_vec(),
                    problem: match other {
                        Err(e) => e.problem.to_string(),
                        Ok(e) => {
                            format!("it is stored under another number than its own ({})", e.seq)
                        }
                    },
                    connection: seq.and_then(|s| event_owner.get(&s).cloned()),
                    post: None,
                },
            )?,
        }
    }

    flush_group(&mut out, &mut group, &mut refs)?;
    for (key, list) in refs {
        let chunks: Vec<&[u64]> = list.chunks(layout::EVENT_REFS_HEAD_MAX).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let refs = layout::EventRefs {
                groups: chunk.to_vec(),
            };
            let k = if i + 1 == chunks.len() {
                layout::event_refs_head(&key)
            } else {
                layout::event_refs_chunk(&key, chunk[0])
            };
            out.put(T::EventsByConnection, k, codec::encode(&refs)?)?;
        }
    }
    // OAuth states and idempotency answers keep their format-1 encoding: carried byte for
    // byte once they are known to read.
    tally.oauth_states = carry_verbatim::<OAuthStateRecord>(
        &old,
        "oauth_states",
        T::OAuthStates,
        &mut out,
        &mut tally,
        &quarantine,
    )?;
    tally.idempotency = carry_verbatim::<IdempotentRequest>(
        &old,
        "idempotency",
        T::Idempotency,
        &mut out,
        &mut tally,
        &quarantine,
    )?;
    if let Some(check) = old_meta.get(layout::META_KEY_CHECK)? {
        out.put(T::Meta, layout::META_KEY_CHECK.to_vec(), check.to_vec())?;
    }
    out.put(
        T::Meta,
        super::writer::SEQ_HIGH.to_vec(),
        seq_high.to_be_bytes().to_vec(),
    )?;
    out.put(
        T::Meta,
        layout::META_FORMAT.to_vec(),
        layout::FORMAT.to_be_bytes().to_vec(),
    )?;
    out.finish()?;

    // Durable, closed, then switched over.
    new.flush()?;
    let log = target.join("db");
    std::fs::File::open(&log)
        .and_then(|f| f.sync_data())
        .map_err(|source| StoreError::DataDir { path: log, source })?;
    drop(trees);
    drop(new);
    drop(old_grants);
    drop(old_meta);
    drop(old);

    let mut said = vec![format!(
        "upgraded the data directory from store format 1 to {}: {} connections, {} grants, {} posts ({} written before posts said why they wait), {} events, {} OAuth states, {} idempotency records carried over",
        layout::FORMAT,
        tally.connections,
        tally.grants,
        tally.posts,
        tally.posts_before_waiting,
        tally.events,
        tally.oauth_states,
        tally.idempotency,
    )];
    if tally.quarantined > 0 {
        said.push(format!(
            "{} format-1 records could not be read; they are kept whole in quarantine and listed as unreadable",
            tally.quarantined
        ));
    }
    Ok(said)
}

/// The connection of a format-1 `events_by_subject` key: `pen \0 'c' platform \0 seq`
/// (connection entries) or `pen \0 'p' id seq` (post entries, which name no platform).
fn v1_event_subject(key: &[u8]) -> Option<ConnectionKey> {
    let at = key.iter().position(|&b| b == 0)?;
    if key.get(at + 1) != Some(&b'c') {
        return None;
    }
    let rest = &key[at + 2..];
    let end = rest.iter().position(|&b| b == 0)?;
    let pen = std::str::from_utf8(&key[..at]).ok()?;
    let platform = std::str::from_utf8(&rest[..end]).ok()?;
    Some(ConnectionKey::new(
        crate::PenName::parse(pen).ok()?,
        Platform::from_id(platform)?,
    ))
}

/// Writes the new database in batches of plain inserts (it is not live yet: atomicity
/// comes from the switch-over, not from each write).
struct Batcher<'a> {
    trees: &'a Trees,
    writes: Vec<Write>,
}

impl<'a> Batcher<'a> {
    fn new(trees: &'a Trees) -> Batcher<'a> {
        Batcher {
            trees,
            writes: Vec::with_capacity(4096),
        }
    }

    fn put(&mut self, t: T, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.writes.push(Write::put(t, key, value));
        if self.writes.len() >= 4096 {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StoreError> {
        apply_writes(self.trees, &self.writes)?;
        self.writes.clear();
        Ok(())
    }
}
