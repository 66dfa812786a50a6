//! `Batch`: a set of changes a store applies atomically, in the words of the domain.
//!
//! Backends turn each [`BatchOp`] into their own writes (the sled backend also keeps the
//! post indexes and per-connection counts current, and numbers the events). A value that
//! cannot be encoded fails the whole batch at commit, before anything is written.

use zeroize::Zeroizing;

use crate::codec::{self, Record};
use crate::{
    Connection, ConnectionKey, Event, Grant, IdempotentRequest, PenName, PendingAuthorization,
    Post, PostId, PostStatus, StoreError, Timestamp,
};

/// A writer's ownership of one connection. Claiming a connection again supersedes every
/// earlier epoch: batches fenced by them are refused ([`StoreError::Fenced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

/// A set of changes applied as one.
#[derive(Default)]
pub struct Batch {
    pub(crate) ops: Vec<BatchOp>,
    pub(crate) fences: Vec<(ConnectionKey, Epoch)>,
    pub(crate) error: Option<StoreError>,
}

/// One change of a [`Batch`].
pub enum BatchOp {
    PutConnection(Box<Connection>),
    DeleteConnection(ConnectionKey),
    /// The grant, encoded but not yet sealed (the backend seals it with the connection
    /// key as associated data); wiped from memory when dropped.
    PutGrant(ConnectionKey, Zeroizing<Vec<u8>>),
    DeleteGrant(ConnectionKey),
    /// A new or edited post: its body and its status.
    PutPost(Box<Post>),
    /// A transition: the status only (the body is unchanged).
    PutPostStatus(Box<PostStatus>),
    DeletePost(PostId),
    /// An event; the store numbers it.
    Event(Box<Event>),
    /// A pending OAuth authorization under its `state`, encoded but not yet sealed.
    PutOAuthState(String, Zeroizing<Vec<u8>>, Timestamp),
    /// The record of a pen name's `Idempotency-Key`, replacing the one stored (the first
    /// writer of a key is chosen by [`crate::Store::remember_idempotent`]; this records
    /// what became of its request).
    PutIdempotent(PenName, String, Box<IdempotentRequest>),
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Applies only while `epoch` is the newest claim on `key` ([`crate::Store::claim`]).
    pub fn fence(&mut self, key: &ConnectionKey, epoch: Epoch) -> &mut Batch {
        // Once per key and epoch, however many of its records the batch carries.
        if !self.fences.iter().any(|(k, e)| *e == epoch && k == key) {
            self.fences.push((key.clone(), epoch));
        }
        self
    }

    pub fn put_connection(&mut self, c: &Connection) -> &mut Batch {
        self.ops.push(BatchOp::PutConnection(Box::new(c.clone())));
        self
    }

    pub fn delete_connection(&mut self, key: &ConnectionKey) -> &mut Batch {
        self.ops.push(BatchOp::DeleteConnection(key.clone()));
        self
    }

    pub fn put_grant(&mut self, key: &ConnectionKey, grant: &Grant) -> &mut Batch {
        match codec::encode(grant) {
            Ok(bytes) => self
                .ops
                .push(BatchOp::PutGrant(key.clone(), Zeroizing::new(bytes))),
            Err(e) => self.fail(e.into()),
        }
        self
    }

    pub fn delete_grant(&mut self, key: &ConnectionKey) -> &mut Batch {
        self.ops.push(BatchOp::DeleteGrant(key.clone()));
        self
    }

    /// A new post, or an edit of its content, target or time.
    pub fn put_post(&mut self, post: &Post) -> &mut Batch {
        self.ops.push(BatchOp::PutPost(Box::new(post.clone())));
        self
    }

    /// A state transition of a post whose body is unchanged.
    pub fn put_post_status(&mut self, post: &Post) -> &mut Batch {
        self.put_status(&post.status())
    }

    /// A state transition, from the status alone (a queue rebuilt at boot holds no more).
    pub fn put_status(&mut self, status: &PostStatus) -> &mut Batch {
        self.ops
            .push(BatchOp::PutPostStatus(Box::new(status.clone())));
        self
    }

    pub fn delete_post(&mut self, id: PostId) -> &mut Batch {
        self.ops.push(BatchOp::DeletePost(id));
        self
    }

    /// Records an event; the store assigns its sequence number on commit.
    pub fn event(&mut self, event: Event) -> &mut Batch {
        self.ops.push(BatchOp::Event(Box::new(event)));
        self
    }

    pub fn put_oauth_state(&mut self, state: &str, pending: &PendingAuthorization) -> &mut Batch {
        match codec::encode(pending) {
            Ok(bytes) => self.ops.push(BatchOp::PutOAuthState(
                state.to_owned(),
                Zeroizing::new(bytes),
                pending.expires_at,
            )),
            Err(e) => self.fail(e.into()),
        }
        self
    }

    /// Replaces the record of `pen`'s `Idempotency-Key` `key` (see [`BatchOp::PutIdempotent`]).
    pub fn put_idempotent(
        &mut self,
        pen: &PenName,
        key: &str,
        record: &IdempotentRequest,
    ) -> &mut Batch {
        self.ops.push(BatchOp::PutIdempotent(
            pen.clone(),
            key.to_owned(),
            Box::new(record.clone()),
        ));
        self
    }

    fn fail(&mut self, e: StoreError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Takes the first encoding error, if any.
    pub(crate) fn take_error(&mut self) -> Option<StoreError> {
        self.error.take()
    }
}

/// Encodes a record for a batch op, turning failure into the store's error.
pub(crate) fn encoded<T: Record>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(codec::encode(value)?)
}
