//! `Event`: the audit record of every state change — when, which connection or post,
//! from what, to what, and why. Events are stored and also broadcast to subscribers.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_body, CodecProblem, Record};
use crate::{ConnectionKey, PostId, Reason, StateLabel, Timestamp};

/// What kind of change an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A connection's status changed (including connect and disconnect).
    ConnectionStatus,
    /// A post's state changed.
    PostState,
    /// A grant that cannot be renewed without the author lapses soon.
    ExpiringSoon,
    /// A connection came back (reconnected or recovered from an error).
    Recovered,
    /// A grant was renewed (no secret in the event).
    GrantRenewed,
    /// The author chose the targets a post naming none goes to; `detail` lists their
    /// ids, comma-separated.
    TargetsChosen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Store-wide sequence number, increasing; also the SSE event id.
    pub seq: u64,
    pub at: Timestamp,
    pub connection: ConnectionKey,
    pub post: Option<PostId>,
    pub kind: EventKind,
    pub from: Option<StateLabel>,
    pub to: Option<StateLabel>,
    pub reason: Option<Reason>,
    /// Extra fact for the reader (for `ExpiringSoon`, when it lapses), never a secret.
    pub detail: Option<String>,
}

impl Event {
    /// A new event without a sequence number yet; the store assigns it on commit.
    pub fn new(at: Timestamp, connection: ConnectionKey, kind: EventKind) -> Event {
        Event {
            seq: 0,
            at,
            connection,
            post: None,
            kind,
            from: None,
            to: None,
            reason: None,
            detail: None,
        }
    }

    pub fn post(mut self, id: PostId) -> Event {
        self.post = Some(id);
        self
    }

    pub fn transition(mut self, from: Option<StateLabel>, to: Option<StateLabel>) -> Event {
        self.from = from;
        self.to = to;
        self
    }

    pub fn reason(mut self, reason: Option<Reason>) -> Event {
        self.reason = reason;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = Some(detail.into());
        self
    }
}

impl Record for Event {
    const KIND: &'static str = "event";
    /// 2: `EventKind::TargetsChosen`, which a version-1 reader cannot decode.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Event, CodecProblem> {
        match version {
            // Version 1 is version 2 without the newer kind: its bytes read as they are.
            1 => decode_body(body),
            v => Err(CodecProblem::UnknownVersion(v)),
        }
    }
}
