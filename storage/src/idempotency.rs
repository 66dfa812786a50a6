//! What a request carrying an `Idempotency-Key` created, so a retry creates nothing new —
//! and, until every post of it is scheduled, what it still has to create, so a retry after
//! a failed or interrupted attempt finishes it instead of answering with posts missing.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecProblem, Record};
use crate::{PostBody, PostId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentRequest {
    /// A digest of the request body, so a different request reusing the key is refused.
    pub request_digest: [u8; 8],
    /// Every post the request creates, in the request's order.
    pub posts: Vec<PostId>,
    pub created_at: Timestamp,
    /// The posts not yet known to be scheduled, as the request planned them: the key is
    /// stored before its posts are (they go through their platforms' queues one by one),
    /// so whichever attempt comes next schedules these before it answers. Emptied once
    /// every post is scheduled; empty in records written before version 2. (`default`
    /// only lets a JSON description without it read; bincode always writes it.)
    #[serde(default)]
    pub unfinished: Vec<PostBody>,
}

impl IdempotentRequest {
    /// Whether every post the request creates is known to be scheduled.
    pub fn is_finished(&self) -> bool {
        self.unfinished.is_empty()
    }

    /// The same record with nothing left to schedule.
    pub fn finished(&self) -> IdempotentRequest {
        IdempotentRequest {
            unfinished: Vec::new(),
            ..self.clone()
        }
    }
}

/// Version 1: the posts' ids only. Its requests read as finished (nothing to go on).
#[derive(Deserialize)]
struct IdempotentRequestV1 {
    request_digest: [u8; 8],
    posts: Vec<PostId>,
    created_at: Timestamp,
}

impl Record for IdempotentRequest {
    const KIND: &'static str = "idempotent_request";
    /// 2: gained `unfinished` (the posts a retry still has to schedule).
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<IdempotentRequest, CodecProblem> {
        match version {
            1 => {
                let v1: IdempotentRequestV1 = codec::decode_body(body)?;
                Ok(IdempotentRequest {
                    request_digest: v1.request_digest,
                    posts: v1.posts,
                    created_at: v1.created_at,
                    unfinished: Vec::new(),
                })
            }
            other => Err(CodecProblem::UnknownVersion(other)),
        }
    }
}
