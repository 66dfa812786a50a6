//! `Grant`: what authorising produced. Secret. Stored only sealed by the vault.

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::{Secret, Timestamp};

/// A token a platform issues for one target inside the account (Facebook Page tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetToken {
    pub target_id: String,
    pub token: Secret,
    /// `None` where the platform issues non-expiring target tokens.
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub access_token: Secret,
    /// Present where the platform issues one (and rotates it where it rotates).
    pub refresh_token: Option<Secret>,
    pub token_type: String,
    pub scopes: Vec<String>,
    /// When this grant (its access token) was issued; refresh timing is a fraction of
    /// `expires_at - issued_at`.
    pub issued_at: Timestamp,
    /// When the access token lapses; `None` where it does not.
    pub expires_at: Option<Timestamp>,
    /// When the refresh token lapses, where the platform says.
    pub refresh_expires_at: Option<Timestamp>,
    pub target_tokens: Vec<TargetToken>,
    /// Non-secret endpoint facts the adapter learned at connect time (Bluesky's PDS URL
    /// and DID), kept with the grant because they only matter when using it.
    pub endpoint: Option<String>,
}

impl Record for Grant {
    const KIND: &'static str = "grant";
    const VERSION: u8 = 1;
}

/// What can be said about a grant without opening it: its lifetimes and whether it holds
/// a refresh token. Stored with the connection, so showing a connection's status never
/// unseals a token, on any node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFacts {
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub refresh_expires_at: Option<Timestamp>,
    pub has_refresh_token: bool,
}

impl Grant {
    /// The grant's non-secret facts.
    pub fn facts(&self) -> GrantFacts {
        GrantFacts {
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            refresh_expires_at: self.refresh_expires_at,
            has_refresh_token: self.refresh_token.is_some(),
        }
    }

    /// A non-reversible 8-byte fingerprint of the refresh token, to recognise it later
    /// without storing it in plain text (see `RefreshInFlight`).
    pub fn refresh_fingerprint(&self) -> Option<[u8; 8]> {
        self.refresh_token.as_ref().map(|t| fingerprint(t.expose()))
    }
}

/// FNV-1a, truncated: enough to tell two tokens apart, useless to recover one.
pub fn fingerprint(value: &str) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.to_be_bytes()
}
