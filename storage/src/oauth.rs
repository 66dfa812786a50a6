//! Pending OAuth authorizations: what the engine remembers between sending an author to
//! a platform's consent page and the platform sending them back with a code.
//!
//! The `state` is random, single-use, bound to (pen name, platform) and expires. The PKCE
//! verifier is a secret, so the pending record is sealed like a grant.

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::{ConnectionKey, Secret, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub connection: ConnectionKey,
    /// PKCE verifier, where the platform supports PKCE.
    pub pkce_verifier: Option<Secret>,
    /// The exact redirect URI sent in the authorize request (the token request must match).
    pub redirect_uri: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The caller asked to replace the connected account with whatever account comes back.
    pub replace: bool,
}

impl Record for PendingAuthorization {
    const KIND: &'static str = "pending_authorization";
    const VERSION: u8 = 1;
}

/// What looking up a `state` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLookup {
    /// Valid and now consumed: it cannot be used again.
    Taken(PendingAuthorization),
    /// It existed but its time ran out (it is consumed too).
    Expired,
    /// It was already used once.
    AlreadyUsed,
    /// The engine never issued it.
    Unknown,
}
