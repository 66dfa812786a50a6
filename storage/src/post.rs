//! Posts: content scheduled for one connection and target, and its lifecycle.
//!
//! `Scheduled → Publishing → Published(receipt)`; `Scheduled ⇄ Paused(reason)` while the
//! connection is not Active; `→ Held(reason)` when too late to publish unreviewed;
//! `→ Failed(reason)` only for what a retry cannot fix; `→ Cancelled`. A post whose
//! platform call may have happened before a crash is `Unconfirmed` and is never sent
//! again without a person deciding.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::{ConnectionKey, PostKind, Reason, StateLabel, Timestamp};

/// A post id: a UUIDv7, so ids sort roughly by creation time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PostId(uuid::Uuid);

impl PostId {
    pub fn new() -> PostId {
        PostId(uuid::Uuid::now_v7())
    }

    pub fn from_bytes(b: [u8; 16]) -> PostId {
        PostId(uuid::Uuid::from_bytes(b))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn parse(s: &str) -> Option<PostId> {
        uuid::Uuid::parse_str(s).ok().map(PostId)
    }
}

impl Default for PostId {
    fn default() -> Self {
        PostId::new()
    }
}

impl fmt::Display for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostId({})", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
}

/// A media item given by public URL; the engine fetches it where a platform wants an
/// upload and hands the URL on where the platform pulls it itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub url: String,
    pub kind: MediaKind,
    pub alt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Content {
    pub text: String,
    /// A title where the platform has one (Pinterest pins, YouTube videos).
    pub title: Option<String>,
    pub links: Vec<String>,
    pub media: Vec<Media>,
}

/// Proof that the platform published the post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub platform_post_id: String,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostState {
    Scheduled,
    Paused(Reason),
    Publishing,
    Published(Receipt),
    Failed(Reason),
    Unconfirmed,
    Held(Reason),
    Cancelled,
}

impl PostState {
    pub fn label(&self) -> StateLabel {
        match self {
            PostState::Scheduled => StateLabel::Scheduled,
            PostState::Paused(_) => StateLabel::Paused,
            PostState::Publishing => StateLabel::Publishing,
            PostState::Published(_) => StateLabel::Published,
            PostState::Failed(_) => StateLabel::Failed,
            PostState::Unconfirmed => StateLabel::Unconfirmed,
            PostState::Held(_) => StateLabel::Held,
            PostState::Cancelled => StateLabel::Cancelled,
        }
    }

    pub fn reason(&self) -> Option<&Reason> {
        match self {
            PostState::Paused(r) | PostState::Failed(r) | PostState::Held(r) => Some(r),
            _ => None,
        }
    }

    /// Waiting to be published.
    pub fn is_pending(&self) -> bool {
        matches!(self, PostState::Scheduled | PostState::Paused(_))
    }

    /// Held by a platform queue: waiting, paused, or mid-publish. These are the posts a
    /// queue rebuilds at boot; every other state waits for a person or is finished.
    pub fn is_queued(&self) -> bool {
        matches!(
            self,
            PostState::Scheduled | PostState::Paused(_) | PostState::Publishing
        )
    }

    /// Nothing further will happen to the post without a person.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            PostState::Published(_) | PostState::Failed(_) | PostState::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: PostId,
    /// Shared by the posts one request made for several platforms.
    pub group_id: Option<PostId>,
    pub connection: ConnectionKey,
    /// Target id inside the account (Page, board, organisation); `None` for the profile.
    pub target: Option<String>,
    pub kind: PostKind,
    pub content: Content,
    /// When the author wants it published (wall clock).
    pub due_at: Timestamp,
    /// Set while waiting out a rate limit or a passing fault: not before this time.
    pub next_attempt_at: Option<Timestamp>,
    pub state: PostState,
    /// Platform calls made for this post.
    pub attempts: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why a Scheduled post waits past its due time (`rate_limited` — a platform's limit
    /// or daily quota — or `platform_unavailable`), cleared when it is tried again.
    pub waiting: Option<Reason>,
}

impl Post {
    /// The reason a person sees on this post: its state's, or why it is waiting.
    pub fn reason(&self) -> Option<&Reason> {
        self.state.reason().or(self.waiting.as_ref())
    }

    /// When the queue should next try this post: its due time, or a later retry time.
    pub fn ready_at(&self) -> Timestamp {
        ready_at(self.due_at, self.next_attempt_at)
    }

    pub fn receipt(&self) -> Option<&crate::post::Receipt> {
        match &self.state {
            PostState::Published(r) => Some(r),
            _ => None,
        }
    }

    /// What the author wrote: the part of a post that changes only when it is edited.
    pub fn body(&self) -> PostBody {
        PostBody {
            id: self.id,
            group_id: self.group_id,
            connection: self.connection.clone(),
            target: self.target.clone(),
            kind: self.kind,
            content: self.content.clone(),
            due_at: self.due_at,
            created_at: self.created_at,
        }
    }

    /// Where the post stands: the part every transition rewrites.
    pub fn status(&self) -> PostStatus {
        PostStatus {
            id: self.id,
            connection: self.connection.clone(),
            due_at: self.due_at,
            next_attempt_at: self.next_attempt_at,
            state: self.state.clone(),
            attempts: self.attempts,
            updated_at: self.updated_at,
            waiting: self.waiting.clone(),
        }
    }

    /// A post from its two stored halves.
    pub fn from_parts(body: PostBody, status: PostStatus) -> Post {
        Post {
            id: body.id,
            group_id: body.group_id,
            connection: body.connection,
            target: body.target,
            kind: body.kind,
            content: body.content,
            due_at: status.due_at,
            next_attempt_at: status.next_attempt_at,
            state: status.state,
            attempts: status.attempts,
            created_at: body.created_at,
            updated_at: status.updated_at,
            waiting: status.waiting,
        }
    }
}

/// The stored half of a post that an edit changes: its content, target and kind. Written
/// when the post is scheduled or edited, never by a state transition, so a transition
/// rewrites a few dozen bytes instead of the whole post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostBody {
    pub id: PostId,
    pub group_id: Option<PostId>,
    pub connection: ConnectionKey,
    pub target: Option<String>,
    pub kind: PostKind,
    pub content: Content,
    /// The due time as scheduled (the status carries the one the queue follows; they agree).
    pub due_at: Timestamp,
    pub created_at: Timestamp,
}

impl Record for PostBody {
    const KIND: &'static str = "post_body";
    const VERSION: u8 = 1;
}

/// The stored half of a post that every transition rewrites. It carries the connection
/// and due time too, so a platform queue rebuilds itself at boot from statuses alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostStatus {
    pub id: PostId,
    pub connection: ConnectionKey,
    pub due_at: Timestamp,
    pub next_attempt_at: Option<Timestamp>,
    pub state: PostState,
    pub attempts: u32,
    pub updated_at: Timestamp,
    pub waiting: Option<Reason>,
}

impl PostStatus {
    /// See [`Post::reason`].
    pub fn reason(&self) -> Option<&Reason> {
        self.state.reason().or(self.waiting.as_ref())
    }

    /// See [`Post::ready_at`].
    pub fn ready_at(&self) -> Timestamp {
        ready_at(self.due_at, self.next_attempt_at)
    }
}

fn ready_at(due_at: Timestamp, next_attempt_at: Option<Timestamp>) -> Timestamp {
    match next_attempt_at {
        Some(t) if t > due_at => t,
        _ => due_at,
    }
}

impl Record for PostStatus {
    const KIND: &'static str = "post_status";
    const VERSION: u8 = 1;
}
