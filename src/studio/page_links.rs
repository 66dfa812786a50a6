//! Access to the Social Accounts page without the admin token: page links and the page
//! cookie's key.
//!
//! A host application mints a link for one pen name ([`Studio::mint_page_link`]); the
//! link's token is a random, single-use, expiring record in the store — a pending
//! authorization of purpose [`StatePurpose::PageLink`], so it is purged like the OAuth
//! states and opens on any node that shares the store. Opening it
//! ([`Studio::open_page_link`]) spends it and names the pen name; the HTTP layer then
//! gives the browser a cookie for that pen name alone, signed with
//! [`Studio::page_key`], a key derived from the master key (every node that opens the
//! store has it; a master key rotation ends the page cookies signed before it).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use social_studio_storage::{
    Batch, ConnectionKey, Durability, MasterKey, PenName, PendingAuthorization, Platform,
    StateLookup, StatePurpose, Timestamp,
};

use super::error::EngineRefusal;
use super::{random_token, Studio};

/// A page link just minted: the token for its URL, and when it stops opening.
#[derive(Debug, Clone)]
pub struct PageLink {
    pub token: String,
    pub expires_at: Timestamp,
}

/// A page link that does not open.
#[derive(Debug, thiserror::Error)]
pub enum PageLinkError {
    #[error("this page link is not one the service issued")]
    Invalid,
    #[error("this page link expired")]
    Expired,
    #[error("this page link was already used")]
    Used,
    #[error(transparent)]
    Engine(#[from] EngineRefusal),
}

impl PageLinkError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PageLinkError::Invalid => "invalid_page_link",
            PageLinkError::Expired => "page_link_expired",
            PageLinkError::Used => "page_link_used",
            PageLinkError::Engine(e) => e.code(),
        }
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            PageLinkError::Invalid | PageLinkError::Expired | PageLinkError::Used => {
                "Page links open once and only for a short while. Open Social Accounts again from the application."
            }
            PageLinkError::Engine(e) => e.remedy(),
        }
    }
}

/// The page cookie's key: HMAC-SHA256 of a fixed label under the master key, so it is
/// the same on every node and never the master key itself.
pub(super) fn derive_page_key(master: &MasterKey) -> [u8; 32] {
    let secret = master.to_base64();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"social-studio page cookie v1");
    mac.finalize().into_bytes().into()
}

impl Studio {
    /// Mints a single-use link to the Social Accounts page of `pen`, valid for
    /// `page_link_ttl_secs`. The token is stored durably before it is answered.
    pub async fn mint_page_link(&self, pen: &PenName) -> Result<PageLink, EngineRefusal> {
        let token = random_token(24);
        let now = self.now();
        let expires_at = now.saturating_add(self.inner.config.page_link_ttl);
        let mut b = Batch::new();
        b.put_oauth_state(
            &token,
            &PendingAuthorization {
                // A page link is for a pen name; the platform is not read.
                connection: ConnectionKey::new(pen.clone(), Platform::X),
                pkce_verifier: None,
                redirect_uri: String::new(),
                created_at: now,
                expires_at,
                replace: false,
                purpose: StatePurpose::PageLink,
            },
        );
        self.commit(b, Durability::Durable).await?;
        Ok(PageLink { token, expires_at })
    }

    /// Opens a page link: spends it (a second opening is refused) and answers its pen
    /// name. A connect's OAuth state is no page link (it is spent all the same).
    pub async fn open_page_link(&self, token: &str) -> Result<PenName, PageLinkError> {
        if token.is_empty() || token.len() > 256 {
            return Err(PageLinkError::Invalid);
        }
        let lookup = self
            .inner
            .store
            .take_oauth_state(token, self.now())
            .await
            .map_err(EngineRefusal::from)?;
        match lookup {
            StateLookup::Taken(PendingAuthorization {
                connection,
                purpose: StatePurpose::PageLink,
                ..
            }) => Ok(connection.pen_name),
            StateLookup::Taken(_) | StateLookup::Unknown => Err(PageLinkError::Invalid),
            StateLookup::Expired => Err(PageLinkError::Expired),
            StateLookup::AlreadyUsed => Err(PageLinkError::Used),
        }
    }

    /// The key the page cookie and its CSRF token are signed with (see the module).
    pub fn page_key(&self) -> &[u8; 32] {
        &self.inner.page_key
    }
}
