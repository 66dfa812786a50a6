//! Posts: content scheduled for one connection and target, and its lifecycle.
//!
//! `Scheduled → Publishing → Published(receipt)`; `Scheduled ⇄ Paused(reason)` while the
//! connection is not Active; `→ Held(reason)` when too late to publish unreviewed;
//! `→ Failed(reason)` only for what a retry cannot fix; `→ Cancelled`. A post whose
//! platform call may have happened before a crash is `Unconfirmed` and is never sent
//! again without a person deciding.
//!
//! What a person may do to a post — cancel, retry, resolve, edit ([`PostAction`]) — is
//! decided here, by methods on [`Post`] that change the post or answer a typed
//! [`PostRefusal`]; the platform queue calls them and persists what they changed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::{ConnectionKey, PostKind, Reason, StateLabel, Timestamp};

/// What a person may ask of a post that is already scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostAction {
    /// Never publish it: from Scheduled, Paused or Held.
    Cancel,
    /// Try a Failed or Held post again.
    Retry,
    /// Say whether an Unconfirmed post reached the platform.
    Resolve,
    /// Change the content, target or due time of a Scheduled, Paused or Held post.
    Edit,
}

impl PostAction {
    /// Whether a post in `state` may have this done to it.
    pub fn allowed_from(self, state: &PostState) -> bool {
        match self {
            PostAction::Cancel | PostAction::Edit => matches!(
                state,
                PostState::Scheduled | PostState::Paused(_) | PostState::Held(_)
            ),
            PostAction::Retry => matches!(state, PostState::Failed(_) | PostState::Held(_)),
            PostAction::Resolve => matches!(state, PostState::Unconfirmed),
        }
    }

    /// The action as the refusal words it: "post … cannot be cancelled".
    pub fn past_tense(self) -> &'static str {
        match self {
            PostAction::Cancel => "cancelled",
            PostAction::Retry => "retried",
            PostAction::Resolve => "resolved",
            PostAction::Edit => "edited",
        }
    }
}

/// Worded as a refusal uses it: "cancelled", "retried", "resolved", "edited".
impl fmt::Display for PostAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.past_tense())
    }
}

/// Why a post refused a [`PostAction`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostRefusal {
    /// The post's state does not allow the action (code `invalid_transition`).
    #[error("post {id} is {state} and cannot be {action}")]
    InvalidTransition {
        id: PostId,
        state: StateLabel,
        action: PostAction,
    },
    /// The action would put the post back to wait, but its connection is gone, so nothing
    /// could publish it (code `not_connected`).
    #[error("{0} is not connected")]
    NotConnected(ConnectionKey),
}

impl PostRefusal {
    /// The stable machine-readable code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            PostRefusal::InvalidTransition { .. } => "invalid_transition",
            PostRefusal::NotConnected(_) => "not_connected",
        }
    }
}

/// Where a post's connection stands in its platform queue, for the actions that put the
/// post back to wait (a retry, or an Unconfirmed post resolved as not published).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStanding<'a> {
    /// The queue knows no such connection: the post would wait for nothing.
    NotConnected,
    /// The connection is paused for this reason: the post waits Paused with it.
    Paused(&'a Reason),
    /// The connection can publish: the post waits Scheduled.
    Active,
}

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
    /// Whether this post's state allows `action`; refuses with the state it is in.
    pub fn allows(&self, action: PostAction) -> Result<(), PostRefusal> {
        if action.allowed_from(&self.state) {
            Ok(())
        } else {
            Err(PostRefusal::InvalidTransition {
                id: self.id,
                state: self.state.label(),
                action,
            })
        }
    }

    /// Cancels a Scheduled, Paused or Held post at `now`. Returns the state it left.
    pub fn cancel(&mut self, now: Timestamp) -> Result<StateLabel, PostRefusal> {
        self.allows(PostAction::Cancel)?;
        let from = self.state.label();
        self.state = PostState::Cancelled;
        self.updated_at = now;
        Ok(from)
    }

    /// Puts a Failed or Held post back to wait, to be tried at once (Paused if its
    /// connection is). Returns the state it left. A refusal leaves the post unchanged.
    pub fn retry(
        &mut self,
        now: Timestamp,
        connection: ConnectionStanding<'_>,
    ) -> Result<StateLabel, PostRefusal> {
        self.allows(PostAction::Retry)?;
        let from = self.state.label();
        self.wait_again(now, connection)?;
        Ok(from)
    }

    /// A person's decision about an Unconfirmed post: `published`, it becomes Published
    /// with an empty receipt (the platform's id is unknown); otherwise it waits again like
    /// a retried post. Returns the state it left. A refusal leaves the post unchanged.
    pub fn resolve(
        &mut self,
        now: Timestamp,
        published: bool,
        connection: ConnectionStanding<'_>,
    ) -> Result<StateLabel, PostRefusal> {
        self.allows(PostAction::Resolve)?;
        let from = self.state.label();
        if published {
            self.state = PostState::Published(Receipt {
                platform_post_id: String::new(),
                url: None,
            });
            self.updated_at = now;
        } else {
            self.wait_again(now, connection)?;
        }
        Ok(from)
    }

    /// Takes the content, target and due time of `edited` into a Scheduled, Paused or
    /// Held post; any planned retry time and waiting reason are dropped, since they were
    /// about the old due time. The state stays as it is.
    pub fn edit(&mut self, edited: Post, now: Timestamp) -> Result<(), PostRefusal> {
        self.allows(PostAction::Edit)?;
        self.content = edited.content;
        self.due_at = edited.due_at;
        self.target = edited.target;
        self.next_attempt_at = None;
        self.waiting = None;
        self.updated_at = now;
        Ok(())
    }

    /// Back to wait, due at once: Paused if the connection is, Scheduled if it is active.
    fn wait_again(
        &mut self,
        now: Timestamp,
        connection: ConnectionStanding<'_>,
    ) -> Result<(), PostRefusal> {
        self.state = match connection {
            ConnectionStanding::NotConnected => {
                return Err(PostRefusal::NotConnected(self.connection.clone()))
            }
            ConnectionStanding::Paused(reason) => PostState::Paused(reason.clone()),
            ConnectionStanding::Active => PostState::Scheduled,
        };
        self.next_attempt_at = Some(now);
        self.waiting = None;
        self.updated_at = now;
        Ok(())
    }

    /// The reason a person sees on this post: its state's, or why it is waiting.
    pub fn reason(&self) -> Option<&Reason> {
        self.state.reason().or(self.waiting.as_ref())
    }

    /// When the queue should next try this post: its due time, or a later retry time.
    pub fn ready_at(&self) -> Timestamp {
        ready_at(self.due_at, self.next_attempt_at)
    }

    pub fn receipt(&self) -> Option<&Receipt> {
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

#[cfg(test)]
mod tests {
    //! The rules for what a person may do to a post: allowed from which states, refused
    //! from which, with which code, and what an allowed action changes.

    use super::*;
    use crate::fixtures::{key, post};
    use crate::{Platform, ReasonCode};

    fn now() -> Timestamp {
        Timestamp::from_unix_millis(1_900_000_000_000)
    }

    fn reason(code: ReasonCode) -> Reason {
        Reason::new(code)
    }

    /// One post in each of the eight states.
    fn every_state() -> Vec<PostState> {
        vec![
            PostState::Scheduled,
            PostState::Paused(reason(ReasonCode::AuthorizationInvalid)),
            PostState::Publishing,
            PostState::Published(Receipt {
                platform_post_id: "42".into(),
                url: None,
            }),
            PostState::Failed(reason(ReasonCode::AccountDisconnected)),
            PostState::Unconfirmed,
            PostState::Held(reason(ReasonCode::TooLate)),
            PostState::Cancelled,
        ]
    }

    fn in_state(state: PostState) -> Post {
        let mut p = post(&key("jane", Platform::X), 0);
        p.state = state;
        p.next_attempt_at = Some(Timestamp::from_unix_millis(1_850_000_000_000));
        p.waiting = Some(reason(ReasonCode::RateLimited));
        p
    }

    /// Runs `act` on a post in every state: the states it is allowed from must be exactly
    /// `allowed`; from every other it refuses with `invalid_transition`, naming the state
    /// and the action, and leaves the post as it was.
    fn check_rule(
        action: PostAction,
        allowed: &[StateLabel],
        act: impl Fn(&mut Post) -> Result<(), PostRefusal>,
    ) {
        for state in every_state() {
            let label = state.label();
            let mut p = in_state(state);
            let before = p.clone();
            let result = act(&mut p);
            if allowed.contains(&label) {
                assert_eq!(result, Ok(()), "{action} from {label}");
            } else {
                let Err(refusal) = result else {
                    panic!("{action} from {label} must be refused");
                };
                assert_eq!(refusal.code(), "invalid_transition");
                assert_eq!(
                    refusal,
                    PostRefusal::InvalidTransition {
                        id: before.id,
                        state: label,
                        action,
                    }
                );
                assert_eq!(
                    refusal.to_string(),
                    format!(
                        "post {} is {label} and cannot be {}",
                        before.id,
                        action.past_tense()
                    )
                );
                assert_eq!(p, before, "a refused {action} changes nothing");
            }
        }
    }

    #[test]
    fn cancel_is_allowed_from_scheduled_paused_and_held_only() {
        check_rule(
            PostAction::Cancel,
            &[StateLabel::Scheduled, StateLabel::Paused, StateLabel::Held],
            |p| {
                let from = p.state.label();
                assert_eq!(p.cancel(now())?, from);
                assert_eq!(p.state, PostState::Cancelled);
                assert_eq!(p.updated_at, now());
                Ok(())
            },
        );
    }

    #[test]
    fn retry_is_allowed_from_failed_and_held_only_and_waits_again_at_once() {
        check_rule(
            PostAction::Retry,
            &[StateLabel::Failed, StateLabel::Held],
            |p| {
                let from = p.state.label();
                assert_eq!(p.retry(now(), ConnectionStanding::Active)?, from);
                assert_eq!(p.state, PostState::Scheduled);
                assert_eq!(p.next_attempt_at, Some(now()));
                assert_eq!(p.waiting, None);
                assert_eq!(p.updated_at, now());
                Ok(())
            },
        );
    }

    #[test]
    fn resolve_is_allowed_from_unconfirmed_only() {
        check_rule(PostAction::Resolve, &[StateLabel::Unconfirmed], |p| {
            assert_eq!(
                p.resolve(now(), false, ConnectionStanding::Active)?,
                StateLabel::Unconfirmed
            );
            assert_eq!(p.state, PostState::Scheduled);
            assert_eq!(p.next_attempt_at, Some(now()));
            assert_eq!(p.waiting, None);
            Ok(())
        });
        check_rule(PostAction::Resolve, &[StateLabel::Unconfirmed], |p| {
            p.resolve(now(), true, ConnectionStanding::NotConnected)
                .map(|_| ())
        });
    }

    #[test]
    fn resolved_as_published_carries_an_empty_receipt_and_needs_no_connection() {
        let mut p = in_state(PostState::Unconfirmed);
        let planned = p.next_attempt_at;
        let from = p.resolve(now(), true, ConnectionStanding::NotConnected);
        assert_eq!(from, Ok(StateLabel::Unconfirmed));
        assert_eq!(
            p.state,
            PostState::Published(Receipt {
                platform_post_id: String::new(),
                url: None,
            })
        );
        assert_eq!(p.updated_at, now());
        // Only the state and time change.
        assert_eq!(p.next_attempt_at, planned);
        assert_eq!(p.waiting, Some(reason(ReasonCode::RateLimited)));
    }

    #[test]
    fn edit_is_allowed_from_scheduled_paused_and_held_only_and_keeps_the_state() {
        check_rule(
            PostAction::Edit,
            &[StateLabel::Scheduled, StateLabel::Paused, StateLabel::Held],
            |p| {
                let state = p.state.clone();
                let mut edited = p.clone();
                edited.content.text = "edited".into();
                edited.target = Some("page-7".into());
                edited.due_at = now();
                edited.state = PostState::Cancelled; // not taken
                edited.attempts = 99; // not taken
                p.edit(edited, now())?;
                assert_eq!(p.content.text, "edited");
                assert_eq!(p.target.as_deref(), Some("page-7"));
                assert_eq!(p.due_at, now());
                assert_eq!(p.state, state);
                assert_eq!(p.attempts, 0);
                assert_eq!(p.next_attempt_at, None);
                assert_eq!(p.waiting, None);
                assert_eq!(p.updated_at, now());
                Ok(())
            },
        );
    }

    #[test]
    fn a_post_put_back_to_wait_follows_its_connection() {
        let paused = reason(ReasonCode::AuthorizationInvalid);
        let mut p = in_state(PostState::Failed(reason(ReasonCode::RateLimited)));
        p.retry(now(), ConnectionStanding::Paused(&paused)).unwrap();
        assert_eq!(p.state, PostState::Paused(paused.clone()));

        let mut p = in_state(PostState::Unconfirmed);
        p.resolve(now(), false, ConnectionStanding::Paused(&paused))
            .unwrap();
        assert_eq!(p.state, PostState::Paused(paused));
    }

    #[test]
    fn a_post_whose_connection_is_gone_is_not_put_back_to_wait() {
        for mut p in [
            in_state(PostState::Held(reason(ReasonCode::TooLate))),
            in_state(PostState::Unconfirmed),
        ] {
            let before = p.clone();
            let refusal = if matches!(p.state, PostState::Unconfirmed) {
                p.resolve(now(), false, ConnectionStanding::NotConnected)
            } else {
                p.retry(now(), ConnectionStanding::NotConnected)
            }
            .unwrap_err();
            assert_eq!(
                refusal,
                PostRefusal::NotConnected(before.connection.clone())
            );
            assert_eq!(refusal.code(), "not_connected");
            assert_eq!(p, before, "a refused action changes nothing");
        }
    }

    #[test]
    fn the_state_is_judged_before_the_connection() {
        let mut p = in_state(PostState::Published(Receipt {
            platform_post_id: "42".into(),
            url: None,
        }));
        let refusal = p
            .retry(now(), ConnectionStanding::NotConnected)
            .unwrap_err();
        assert_eq!(refusal.code(), "invalid_transition");
    }
}
