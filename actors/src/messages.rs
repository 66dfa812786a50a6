//! The messages the actors send each other, and the answers they carry.
//!
//! Kept apart from the actors so that the dependency goes one way: the connection actor
//! and the platform queue each import this module, never each other.

use ractor::{ActorRef, RpcReplyPort};
use social_studio_storage::{
    Account, Connection, ConnectionKey, Epoch, Grant, Post, PostId, PostStatus, Reason, Receipt,
    StateLabel, Target, Timestamp,
};

use crate::{EngineError, LimitScope, PlatformPort, PortError, RevokeOutcome};

/// What a connection looks like from outside (status API, the embedding app).
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub connection: Connection,
    /// When the grant lapses unless renewed.
    pub expires_at: Option<Timestamp>,
    /// Whether the engine can renew the grant without the author.
    pub renewable: bool,
    /// A grant that cannot be renewed without the author is within its warning window.
    pub expiring_soon: bool,
}

impl ConnectionView {
    /// How a stored connection stands now, from its record alone: the grant's facts are
    /// kept beside the status, so no token is unsealed and no actor is asked. `port`
    /// decides what "renewable" means for its platform (`None`: not configured).
    pub fn of(
        connection: Connection,
        port: Option<&dyn PlatformPort>,
        now: Timestamp,
        warning: std::time::Duration,
    ) -> ConnectionView {
        let renewable = match (&connection.grant, port) {
            (Some(f), Some(p)) => p.renewable(f),
            _ => false,
        };
        let expires_at = connection.grant.as_ref().and_then(|f| {
            if renewable {
                f.refresh_expires_at.or(f.expires_at)
            } else {
                f.expires_at
            }
        });
        let expiring_soon = !renewable
            && connection.status.is_active()
            && expires_at.is_some_and(|e| now >= e.saturating_sub(warning));
        ConnectionView {
            connection,
            expires_at,
            renewable,
            expiring_soon,
        }
    }
}

/// What disconnecting did.
#[derive(Debug, Clone)]
pub struct DisconnectReport {
    /// Whether the grant was revoked at the platform, and if not, why.
    pub revoke: Result<RevokeOutcome, PortError>,
    /// Scheduled, paused or held posts that were failed with `account_disconnected`.
    pub posts_failed: usize,
}

pub enum ConnectionMsg {
    /// Publish this post (already durably Publishing) and answer the queue.
    Publish {
        post: Box<Post>,
        queue: ActorRef<QueueMsg>,
    },
    /// The timer fired.
    Wake,
    /// A post is due soon: check the grant unless it was checked within the lead time.
    CheckBeforePost,
    Status(RpcReplyPort<ConnectionView>),
    /// Prove the whole grant is alive now (refreshing where a token can outlive a
    /// revocation), and say how it stands.
    Verify(RpcReplyPort<Result<ConnectionView, EngineError>>),
    /// A reconnect brought a fresh grant.
    Reconnect {
        account: Account,
        targets: Vec<Target>,
        grant: Box<Grant>,
        replace: bool,
        reply: RpcReplyPort<Result<ConnectionView, EngineError>>,
    },
    /// The author chose where posts naming no target go: `targets` are ids the caller
    /// checked against the connection's listed targets; any no longer listed are dropped.
    ChooseTargets {
        targets: Vec<String>,
        reply: RpcReplyPort<Result<ConnectionView, EngineError>>,
    },
    /// Revoke at the platform where possible, fail the posts, erase, stop.
    Disconnect(RpcReplyPort<Result<DisconnectReport, EngineError>>),
    /// The platform queue was rebuilt: talk to this one from now on.
    Rebind(ActorRef<QueueMsg>),
}

/// What a connection answers about one publish.
#[derive(Debug, Clone)]
pub enum PublishOutcome {
    Published(Receipt),
    /// The platform refused the content: Failed.
    Rejected(Reason),
    /// The connection is not Active (or just left Active): the post pauses.
    NotActive(Reason),
    /// Slow down until `until`, for the scope of the limit.
    RateLimited {
        until: Timestamp,
        scope: LimitScope,
    },
    /// A passing fault: try again at `at`.
    Retry {
        at: Timestamp,
        reason: Reason,
    },
    /// The call may have reached the platform and its answer was lost.
    Unconfirmed,
}

/// Queue depth figures, for the supervisor's status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub scheduled: usize,
    pub paused: usize,
    pub publishing: usize,
    /// Connections currently backed off by a rate limit.
    pub backed_off_connections: usize,
    pub platform_backed_off: bool,
}

/// The reason a connection actor stops with once its connection is disconnected: the
/// supervisor hands its lease back then.
pub(crate) const DISCONNECTED: &str = "disconnected";

pub enum QueueMsg {
    /// A connection exists (again); `paused` when it is not Active (or its record cannot
    /// be read, so no actor speaks for it).
    Register {
        key: ConnectionKey,
        actor: Option<ActorRef<ConnectionMsg>>,
        paused: Option<Reason>,
        /// This node's lease on the connection: every post write for it is fenced with it.
        epoch: Option<Epoch>,
    },
    /// This node no longer holds the connection (another node took it over, or it was
    /// handed over): drop its posts from memory, write nothing more for them. A post
    /// handed to its (stopped) actor is the new owner's to settle, as after a crash.
    Forget {
        key: ConnectionKey,
    },
    /// The connection's actor died and was replaced (or not): its in-flight posts may or
    /// may not have reached the platform.
    ConnectionRestarted {
        key: ConnectionKey,
        actor: Option<ActorRef<ConnectionMsg>>,
    },
    /// Rebuild from storage: the statuses of this platform's Scheduled, Paused and
    /// Publishing posts.
    Load(Vec<PostStatus>),
    Schedule {
        post: Box<Post>,
        reply: RpcReplyPort<Result<Post, EngineError>>,
    },
    Cancel {
        id: PostId,
        reply: RpcReplyPort<Result<Post, EngineError>>,
    },
    /// A Failed or Held post goes back to Scheduled.
    Retry {
        id: PostId,
        reply: RpcReplyPort<Result<Post, EngineError>>,
    },
    /// A person decided about an Unconfirmed post.
    Resolve {
        id: PostId,
        published: bool,
        reply: RpcReplyPort<Result<Post, EngineError>>,
    },
    /// Change a Scheduled, Paused or Held post's content or due time.
    Update {
        post: Box<Post>,
        reply: RpcReplyPort<Result<Post, EngineError>>,
    },
    Pause {
        key: ConnectionKey,
        reason: Reason,
    },
    Resume {
        key: ConnectionKey,
    },
    /// A connection's answer about a post it was handed (the post comes back with it).
    Outcome {
        post: Box<Post>,
        outcome: PublishOutcome,
    },
    /// Apply the outcomes gathered so far (sent by the queue to itself, a moment after
    /// the first).
    CommitOutcomes,
    /// The connection is being disconnected: fail its posts (`account_disconnected`) and
    /// forget it. Answers how many posts failed.
    Disconnected {
        key: ConnectionKey,
        reply: RpcReplyPort<Result<usize, EngineError>>,
    },
    Stats(RpcReplyPort<QueueStats>),
    /// Shutting down: dispatch nothing more; outcomes of calls in flight are still recorded.
    /// Answered once every message before it has been handled and no dispatched batch is
    /// still waiting for its flush (those go back to Scheduled, never sent).
    Freeze(RpcReplyPort<()>),
    Wake,
    /// A dispatched batch's flush finished or failed: its posts may now go to their
    /// connections, or go back to waiting.
    Flushed {
        posts: Vec<Post>,
        /// `None`: durable. `Some`: the commit failed, and nothing in it holds — the
        /// store's error, and what the batch carried besides its posts, to be tried again
        /// after the queue's storage backoff.
        failed: Option<Box<UnheldCommit>>,
    },
    /// A commit of publish outcomes alone failed: they are applied again after the
    /// queue's storage backoff.
    OutcomesUnheld(Box<UnheldCommit>),
}

impl UnheldCommit {
    pub fn of(
        error: &social_studio_storage::StoreError,
        held: Vec<Post>,
        outcomes: Vec<(Post, StateLabel)>,
    ) -> UnheldCommit {
        UnheldCommit {
            error: error.to_string(),
            fenced: match error {
                social_studio_storage::StoreError::Fenced { key, .. } => Some(key.clone()),
                _ => None,
            },
            held,
            outcomes,
        }
    }
}

/// What a failed queue commit carried, returned to the queue to be tried again.
pub struct UnheldCommit {
    /// The store's error, for the one log line per backoff step.
    pub error: String,
    /// The commit was refused because this node lost its lease on this connection
    /// (`StoreError::Fenced`): not a storage failure, no backoff; the connection is
    /// forgotten and the rest is tried again.
    pub fenced: Option<ConnectionKey>,
    /// Posts the batch was holding for lateness (`too_late`): they wait again, Scheduled.
    pub held: Vec<Post>,
    /// Publish outcomes the batch applied, each with the state its post left.
    pub outcomes: Vec<(Post, StateLabel)>,
}
