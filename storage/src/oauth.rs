//! Pending OAuth authorizations: what the engine remembers between sending an author to
//! a platform's consent page and the platform sending them back with a code.
//!
//! The `state` is random, single-use, bound to (pen name, platform) and expires. The PKCE
//! verifier is a secret, so the pending record is sealed like a grant.
//!
//! The same single-use, expiring, TTL-purged records carry the Social Accounts page's
//! links ([`StatePurpose::PageLink`]): a link opened once, on any node, because it is kept
//! in the store.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecProblem, Record};
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
    /// What the state is for (version 2; version 1 records read as
    /// `Connect { return_to: None }`, and so does a serde form without it — the
    /// fixtures' manifests of format-1 data directories). `default` changes no stored
    /// byte: the codec writes and reads every field in order.
    #[serde(default)]
    pub purpose: StatePurpose,
}

/// What a stored `state` is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatePurpose {
    /// A connect through the platform's consent page. `return_to` is the path of the
    /// Social Accounts page that began it (as the browser reached it, host prefix
    /// included): a callback opened without a window to report to sends the browser back
    /// there with the outcome. `None` for a connect begun through the API.
    Connect { return_to: Option<String> },
    /// A page link for `connection.pen_name`: opening it once gives the browser a page
    /// cookie for that pen name. It connects nothing; `connection.platform` means nothing
    /// for it, and the OAuth callback refuses it as an unknown state.
    PageLink,
}

impl Record for PendingAuthorization {
    const KIND: &'static str = "pending_authorization";
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<PendingAuthorization, CodecProblem> {
        /// Version 1: a connect begun through the API, nothing more.
        #[derive(Deserialize)]
        struct PendingAuthorizationV1 {
            connection: ConnectionKey,
            pkce_verifier: Option<Secret>,
            redirect_uri: String,
            created_at: Timestamp,
            expires_at: Timestamp,
            replace: bool,
        }
        match version {
            1 => {
                let v1: PendingAuthorizationV1 = codec::decode_body(body)?;
                Ok(PendingAuthorization {
                    connection: v1.connection,
                    pkce_verifier: v1.pkce_verifier,
                    redirect_uri: v1.redirect_uri,
                    created_at: v1.created_at,
                    expires_at: v1.expires_at,
                    replace: v1.replace,
                    purpose: StatePurpose::Connect { return_to: None },
                })
            }
            other => Err(CodecProblem::UnknownVersion(other)),
        }
    }
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

impl Default for StatePurpose {
    /// A connect begun through the API: what every state was before page links.
    fn default() -> StatePurpose {
        StatePurpose::Connect { return_to: None }
    }
}
