//! The shapes the engine shows the outside world (the HTTP API's JSON, and what an
//! embedding application reads): times as RFC 3339, states and codes as lowercase
//! strings, every reason with its message and remedy, never a secret.

use serde::Serialize;
use social_studio_storage::{
    Account, Event, Media, Platform, Post, Reason, ReasonCode, Receipt, StateLabel, Target,
    Timestamp, UnreadableRecord,
};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReasonView {
    pub code: &'static str,
    pub message: &'static str,
    pub remedy: &'static str,
    pub platform_message: Option<String>,
}

impl From<&Reason> for ReasonView {
    fn from(r: &Reason) -> ReasonView {
        ReasonView {
            code: r.code.code(),
            message: r.message(),
            remedy: r.remedy(),
            platform_message: r.platform_message.clone(),
        }
    }
}

/// One platform's connection for a pen name.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionEntry {
    pub platform: Platform,
    /// `active`, `expired`, `error`, `not_connected` or `not_configured`.
    pub status: &'static str,
    pub reason: Option<ReasonView>,
    pub account: Option<Account>,
    pub targets: Vec<Target>,
    /// When the grant lapses unless renewed.
    pub expires_at: Option<String>,
    /// A grant that cannot be renewed without the author is within its warning window.
    pub expiring_soon: bool,
    /// Whether the engine renews the grant on its own.
    pub renewable: bool,
    pub scheduled: usize,
    pub paused: usize,
}

impl ConnectionEntry {
    pub fn not_connected(platform: Platform, configured: bool) -> ConnectionEntry {
        ConnectionEntry {
            platform,
            status: if configured {
                "not_connected"
            } else {
                "not_configured"
            },
            reason: None,
            account: None,
            targets: Vec::new(),
            expires_at: None,
            expiring_soon: false,
            renewable: false,
            scheduled: 0,
            paused: 0,
        }
    }
}

impl ConnectionEntry {
    /// A connection whose stored record cannot be read: it needs a person, and says so.
    pub fn unreadable(platform: Platform, problem: &str) -> ConnectionEntry {
        ConnectionEntry {
            reason: Some(ReasonView::from(&Reason::with_platform_message(
                ReasonCode::RecordUnreadable,
                problem,
            ))),
            status: "error",
            ..ConnectionEntry::not_connected(platform, true)
        }
    }
}

/// A stored record that cannot be read, named so a person can find what it belonged to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnreadableView {
    /// The kind of record (`connection`, `post`, `event`…).
    pub kind: String,
    /// Where it is stored.
    pub key: String,
    pub pen_name: Option<String>,
    pub platform: Option<Platform>,
    pub post_id: Option<String>,
    /// `record_unreadable`, why, and what to do.
    pub reason: ReasonView,
}

impl From<&UnreadableRecord> for UnreadableView {
    fn from(u: &UnreadableRecord) -> UnreadableView {
        UnreadableView {
            kind: u.kind.clone(),
            key: u.key.clone(),
            pen_name: u.pen_name.as_ref().map(|p| p.to_string()),
            platform: u.connection.as_ref().map(|c| c.platform),
            post_id: u.post.map(|p| p.to_string()),
            reason: ReasonView::from(&Reason::with_platform_message(
                ReasonCode::RecordUnreadable,
                u.problem.clone(),
            )),
        }
    }
}

/// A connection that needs a person (the in-app banner).
#[derive(Debug, Clone, Serialize)]
pub struct AttentionItem {
    pub pen_name: String,
    pub platform: Platform,
    pub status: &'static str,
    pub reason: ReasonView,
    pub expiring_soon: bool,
    pub expires_at: Option<String>,
    pub paused_posts: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MediaView {
    pub url: String,
    pub kind: social_studio_storage::MediaKind,
    pub alt: Option<String>,
}

impl From<&Media> for MediaView {
    fn from(m: &Media) -> MediaView {
        MediaView {
            url: m.url.clone(),
            kind: m.kind,
            alt: m.alt.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceiptView {
    pub id: String,
    pub url: Option<String>,
}

impl From<&Receipt> for ReceiptView {
    fn from(r: &Receipt) -> ReceiptView {
        ReceiptView {
            id: r.platform_post_id.clone(),
            url: r.url.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PostView {
    pub id: String,
    pub group_id: Option<String>,
    pub pen_name: String,
    pub platform: Platform,
    pub target: Option<String>,
    pub kind: social_studio_storage::PostKind,
    pub text: String,
    pub title: Option<String>,
    pub links: Vec<String>,
    pub media: Vec<MediaView>,
    pub scheduled_at: String,
    pub next_attempt_at: Option<String>,
    /// `scheduled|paused|publishing|published|failed|unconfirmed|held|cancelled`.
    pub state: StateLabel,
    pub reason: Option<ReasonView>,
    pub attempts: u32,
    pub receipt: Option<ReceiptView>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Post> for PostView {
    fn from(p: &Post) -> PostView {
        PostView {
            id: p.id.to_string(),
            group_id: p.group_id.map(|g| g.to_string()),
            pen_name: p.connection.pen_name.to_string(),
            platform: p.connection.platform,
            target: p.target.clone(),
            kind: p.kind,
            text: p.content.text.clone(),
            title: p.content.title.clone(),
            links: p.content.links.clone(),
            media: p.content.media.iter().map(MediaView::from).collect(),
            scheduled_at: p.due_at.to_rfc3339(),
            next_attempt_at: p
                .next_attempt_at
                .filter(|t| *t > p.due_at)
                .map(Timestamp::to_rfc3339),
            state: p.state.label(),
            reason: p.reason().map(ReasonView::from),
            attempts: p.attempts,
            receipt: p.receipt().map(ReceiptView::from),
            created_at: p.created_at.to_rfc3339(),
            updated_at: p.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// Store-wide sequence number; the SSE event id.
    pub id: u64,
    pub at: String,
    pub pen_name: String,
    pub platform: Platform,
    pub post_id: Option<String>,
    pub kind: social_studio_storage::EventKind,
    pub from: Option<StateLabel>,
    pub to: Option<StateLabel>,
    pub reason: Option<ReasonView>,
    pub detail: Option<String>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> EventView {
        EventView {
            id: e.seq,
            at: e.at.to_rfc3339(),
            pen_name: e.connection.pen_name.to_string(),
            platform: e.connection.platform,
            post_id: e.post.map(|p| p.to_string()),
            kind: e.kind,
            from: e.from,
            to: e.to,
            reason: e.reason.as_ref().map(ReasonView::from),
            detail: e.detail.clone(),
        }
    }
}

/// The answer to beginning a connect.
#[derive(Debug, Clone, Serialize)]
pub struct AuthorizeStart {
    pub authorize_url: String,
    pub state: String,
    pub expires_at: String,
}

/// What a disconnect did.
#[derive(Debug, Clone, Serialize)]
pub struct DisconnectView {
    pub platform: Platform,
    /// `revoked`, `not_supported` (the platform has no revoke endpoint), or `failed`.
    pub revoke: &'static str,
    /// Why revoking did not happen, in words, where it did not.
    pub revoke_note: Option<String>,
    pub posts_failed: usize,
}

/// The answer to a verify.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyView {
    pub connection: ConnectionEntry,
    pub test_post: Option<PostView>,
}

/// What erasing a pen name did.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReport {
    pub pen_name: String,
    /// Each connection disconnected on the way, with what revoking did.
    pub connections: Vec<ConnectionErased>,
    pub posts_erased: usize,
    pub events_erased: usize,
    /// Records among the erased that could not be read.
    pub unreadable_erased: usize,
}

/// One connection an erasure disconnected.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionErased {
    pub platform: Platform,
    /// As in [`DisconnectView::revoke`].
    pub revoke: &'static str,
}
