//! What a request carrying an `Idempotency-Key` created, so a retry creates nothing new.

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::{PostId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentRequest {
    /// A digest of the request body, so a different request reusing the key is refused.
    pub request_digest: [u8; 8],
    pub posts: Vec<PostId>,
    pub created_at: Timestamp,
}

impl Record for IdempotentRequest {
    const KIND: &'static str = "idempotent_request";
    const VERSION: u8 = 1;
}
