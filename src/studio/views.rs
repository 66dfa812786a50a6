//! The shapes the engine shows the outside world (the HTTP API's JSON, and what an
//! embedding application reads): times are [`Timestamp`]s, written as RFC 3339; states
//! and outcomes are enums, written as lowercase strings; every reason comes with its
//! message and remedy; never a secret. Each derives `ToSchema`, so the OpenAPI document
//! describes exactly these shapes (the storage crate's types through [`super::schema`]).

use serde::Serialize;
use social_studio_storage::{
    Account, Event, Media, Platform, Post, Reason, ReasonCode, Receipt, StateLabel, Target,
    Timestamp, UnreadableRecord,
};
use utoipa::ToSchema;

use super::schema::{
    AccountSchema, EventKindName, MediaKindName, PlatformId, PostKindName, StateName, TargetSchema,
};

/// Timestamps written as RFC 3339 strings (UTC, to the millisecond where there are
/// any), as the API has always shown them; the storage crate writes them as numbers.
mod rfc3339 {
    use serde::Serializer;
    use social_studio_storage::Timestamp;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    pub mod option {
        use serde::Serializer;
        use social_studio_storage::Timestamp;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&t.to_rfc3339()),
                None => s.serialize_none(),
            }
        }
    }
}

/// Why something needs attention: a stable code, what happened, and what to do.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
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

/// Where a platform stands for a pen name, as the API writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Connected and publishing.
    Active,
    /// The grant lapsed or was revoked: the author must reconnect (the reason says why).
    Expired,
    /// A requirement is unmet, or the record cannot be read (the reason says which).
    Error,
    /// Nobody connected an account.
    NotConnected,
    /// The service has no app credentials for the platform.
    NotConfigured,
}

impl ConnectionState {
    /// The lowercase name the API writes.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Active => "active",
            ConnectionState::Expired => "expired",
            ConnectionState::Error => "error",
            ConnectionState::NotConnected => "not_connected",
            ConnectionState::NotConfigured => "not_configured",
        }
    }
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the name the API writes (`entry.status == "active"`).
impl PartialEq<&str> for ConnectionState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One platform's connection for a pen name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionEntry {
    #[schema(value_type = PlatformId)]
    pub platform: Platform,
    pub status: ConnectionState,
    pub reason: Option<ReasonView>,
    #[schema(value_type = Option<AccountSchema>)]
    pub account: Option<Account>,
    #[schema(value_type = Vec<TargetSchema>)]
    pub targets: Vec<Target>,
    /// The ids of the targets chosen (`PUT …/connections/{platform}/targets`): where a
    /// post that names no target goes, one post per chosen target.
    pub chosen_targets: Vec<String>,
    /// When the grant lapses unless renewed.
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
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
                ConnectionState::NotConnected
            } else {
                ConnectionState::NotConfigured
            },
            reason: None,
            account: None,
            targets: Vec::new(),
            chosen_targets: Vec::new(),
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
            status: ConnectionState::Error,
            ..ConnectionEntry::not_connected(platform, true)
        }
    }
}

/// A stored record that cannot be read, named so a person can find what it belonged to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct UnreadableView {
    /// The kind of record (`connection`, `post`, `event`…).
    pub kind: String,
    /// Where it is stored.
    pub key: String,
    pub pen_name: Option<String>,
    #[schema(value_type = Option<PlatformId>)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttentionItem {
    pub pen_name: String,
    #[schema(value_type = PlatformId)]
    pub platform: Platform,
    pub status: ConnectionState,
    pub reason: ReasonView,
    pub expiring_soon: bool,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    pub paused_posts: usize,
}

/// Something wrong with the engine itself rather than with one connection, for an
/// operator: today, a store that refuses the engine's writes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EngineAttentionItem {
    /// `storage_failing`, with what happened and what to do.
    pub reason: ReasonView,
    /// The first failed write of this streak.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    /// The store's last error, as it said it (an I/O condition; never a record's content).
    pub detail: String,
    /// Writes the store refused since the engine started.
    pub commit_failures: u64,
}

/// The reason a store that refuses writes is shown with, in `/readyz` and the attention
/// list.
pub fn storage_failing() -> ReasonView {
    ReasonView {
        code: "storage_failing",
        message: "The store refuses the engine's writes (a full disk, a file size limit, a failed write or fsync). Posts wait, Scheduled, and nothing new is published until it takes writes again; the engine tries again after a backoff of up to a minute.",
        remedy: "Free disk space or check the disk (the log names the error), then restart the engine: the embedded store keeps refusing writes after a failed one until the process restarts. Every post accepted before is kept and publishes after the restart.",
        platform_message: None,
    }
}

/// An image or video of a post.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaView {
    pub url: String,
    #[schema(value_type = MediaKindName)]
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

/// What the platform answered a published post with.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptView {
    /// The platform's id for the post.
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

/// One post.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostView {
    pub id: String,
    /// Shared by the posts one request made on several platforms.
    pub group_id: Option<String>,
    pub pen_name: String,
    #[schema(value_type = PlatformId)]
    pub platform: Platform,
    pub target: Option<String>,
    #[schema(value_type = PostKindName)]
    pub kind: social_studio_storage::PostKind,
    pub text: String,
    pub title: Option<String>,
    pub links: Vec<String>,
    pub media: Vec<MediaView>,
    /// When it is due.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_at: Timestamp,
    /// When the next try is, where it is later than the due time (a rate limit or a
    /// passing fault is being waited out).
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// `scheduled|paused|publishing|published|failed|unconfirmed|held|cancelled`.
    #[schema(value_type = StateName)]
    pub state: StateLabel,
    pub reason: Option<ReasonView>,
    pub attempts: u32,
    pub receipt: Option<ReceiptView>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
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
            scheduled_at: p.due_at,
            next_attempt_at: p.next_attempt_at.filter(|t| *t > p.due_at),
            state: p.state.label(),
            reason: p.reason().map(ReasonView::from),
            attempts: p.attempts,
            receipt: p.receipt().map(ReceiptView::from),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Something that happened to a connection or a post.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Store-wide sequence number; the SSE event id.
    pub id: u64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub pen_name: String,
    #[schema(value_type = PlatformId)]
    pub platform: Platform,
    pub post_id: Option<String>,
    #[schema(value_type = EventKindName)]
    pub kind: social_studio_storage::EventKind,
    #[schema(value_type = Option<StateName>)]
    pub from: Option<StateLabel>,
    #[schema(value_type = Option<StateName>)]
    pub to: Option<StateLabel>,
    pub reason: Option<ReasonView>,
    pub detail: Option<String>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> EventView {
        EventView {
            id: e.seq,
            at: e.at,
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

/// The answer to beginning a connect: send the author's browser to `authorize_url`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorizeStart {
    pub authorize_url: String,
    /// The single-use `state` the callback must bring back.
    pub state: String,
    /// When `state` stops being accepted.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// What became of the grant at the platform when a connection was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevokeOutcome {
    /// The platform revoked it.
    Revoked,
    /// The platform has no revoke endpoint: the author removes the app there.
    NotSupported,
    /// Revoking failed; the grant was erased here anyway.
    Failed,
}

impl RevokeOutcome {
    /// The lowercase name the API writes.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeOutcome::Revoked => "revoked",
            RevokeOutcome::NotSupported => "not_supported",
            RevokeOutcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RevokeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the name the API writes (`view.revoke == "revoked"`).
impl PartialEq<&str> for RevokeOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What a disconnect did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisconnectView {
    #[schema(value_type = PlatformId)]
    pub platform: Platform,
    pub revoke: RevokeOutcome,
    /// Why revoking did not happen, in words, where it did not.
    pub revoke_note: Option<String>,
    pub posts_failed: usize,
}

/// The answer to a verify.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyView {
    pub connection: ConnectionEntry,
    pub test_post: Option<PostView>,
}

/// What erasing a pen name did.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionErased {
    #[schema(value_type = PlatformId)]
    pub platform: Platform,
    /// As in [`DisconnectView::revoke`].
    pub revoke: RevokeOutcome,
}
