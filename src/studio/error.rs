//! Every way a request to the engine can be refused, one type per use case:
//!
//! | type | returned by |
//! |---|---|
//! | [`AddressError`] | reading a request's address: pen name, platform, post id |
//! | [`ConnectingError`] | the connect flows: OAuth begin and callback, Bluesky's app password |
//! | [`ConnectionError`] | a connection's reads, verify (with its test post) and disconnect |
//! | [`PostError`] | scheduling, listing, editing, cancelling, retrying and resolving posts |
//! | [`EraseError`] | erasing a pen name |
//! | [`TargetsError`](super::TargetsError) | choosing a connection's targets (beside its use case, in `targets.rs`) |
//! | [`EngineRefusal`] | what the engine, the store and the platforms answer any of them with |
//!
//! Each has a stable machine-readable [`code`](PostError::code) (clients depend on them:
//! they never change), a sentence (`Display`), a [`remedy`](PostError::remedy) a person can
//! act on, chosen by variant, and where there is one, the [`Reason`] behind it. Which
//! HTTP status and which body a refusal is answered with is the HTTP API's decision, made
//! in one place (`http/error.rs`), not the engine's.

use serde::Serialize;
use social_studio_actors::EngineError;
use social_studio_storage::{
    PenNameError, Platform, PostId, Reason, ReasonCode, StateLabel, StoreError, TimestampParseError,
};

use crate::platforms::{ConnectError, ContentError};

/// What one platform refused about a post.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PlatformRefusal {
    /// The platform's id as the request named it (empty when the request named none).
    pub platform: String,
    pub errors: Vec<FieldError>,
}

/// One refusal: a code, a sentence, and where it applies.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub code: String,
    pub message: String,
}

impl From<&ContentError> for FieldError {
    fn from(e: &ContentError) -> FieldError {
        FieldError {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

impl FieldError {
    pub fn new(code: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// The remedy of every refusal that names no reason of its own and knows no better.
const CHECK_THE_REQUEST: &str = "Check the request and try again.";
const ADMIN_APP_SETTINGS: &str =
    "The service's app settings for this platform need an administrator.";
const BUSY: &str = "The platform or the service is busy. Try again in a few minutes.";
const REPEAT_CONFIRMED: &str = "Repeat the request with ?confirm=true if this is what you want.";
const START_AGAIN: &str =
    "This link did not come from Social Studio or is incomplete. Start connecting again from Social Studio.";

/// What the engine underneath every use case can answer with: the actors' refusals, the
/// platforms' answers, the store's failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineRefusal {
    #[error("{} is not connected for this pen name", .0.display_name())]
    NotConnected(Platform),
    /// A reconnect came back with another account than the connected one.
    #[error("{} {}", .reason.message(), .reason.remedy())]
    WrongAccount { reason: Reason },
    /// The connection is Expired or Error; the reason says why.
    #[error("the connection needs attention: {} {}", .reason.message(), .reason.remedy())]
    ConnectionNotActive { status: StateLabel, reason: Reason },
    #[error("post {0} not found")]
    PostNotFound(PostId),
    #[error("post {id} is {state} and cannot be {action}")]
    InvalidTransition {
        id: PostId,
        state: StateLabel,
        action: &'static str,
    },
    /// The platform refused or failed a call made for the request.
    #[error("{0}")]
    Platform(#[from] ConnectError),
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
    #[error("the engine is not available: {0}")]
    Unavailable(String),
    /// Several nodes share the store and another one runs this connection (`owner`), or
    /// none does for a moment (`None`: its node stopped and the lease has not moved yet).
    /// Nothing was done.
    #[error("{}", match owner { Some(o) => format!("node {o} runs this connection, not this node"), None => "no node runs this connection at the moment (its node stopped; another takes it over within the lease)".to_owned() })]
    NotOwnerHere { owner: Option<String> },
    /// The configured store cannot be opened as configured (at start).
    #[error("{0}")]
    Store(#[from] super::store_choice::StoreRefusal),
}

impl EngineRefusal {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineRefusal::NotConnected(_) => "not_connected",
            EngineRefusal::WrongAccount { .. } => "wrong_account",
            EngineRefusal::ConnectionNotActive { reason, .. } => reason.code.code(),
            EngineRefusal::PostNotFound(_) => "not_found",
            EngineRefusal::InvalidTransition { .. } => "invalid_transition",
            EngineRefusal::Platform(e) => e.code(),
            EngineRefusal::Storage(e) if is_record_problem(e) => "record_unreadable",
            EngineRefusal::Storage(_) => "storage_error",
            EngineRefusal::Unavailable(_) => "engine_unavailable",
            EngineRefusal::NotOwnerHere { .. } => "not_owner_here",
            EngineRefusal::Store(e) => e.code(),
        }
    }

    /// What a person can do about it (a reason's own remedy where there is a reason).
    pub fn remedy(&self) -> &'static str {
        if let Some(reason) = self.named_reason() {
            return reason.remedy();
        }
        match self {
            EngineRefusal::NotConnected(_) => "Connect the account first.",
            EngineRefusal::InvalidTransition { .. } => {
                "Check the post's state: only some states allow this."
            }
            EngineRefusal::Platform(e) => platform_remedy(e),
            EngineRefusal::Storage(e) if is_record_problem(e) => {
                ReasonCode::RecordUnreadable.remedy()
            }
            EngineRefusal::Storage(_) => {
                "The engine could not save this and changed nothing; send it again once /readyz \
                 answers ready. An administrator should check the disk under the data directory \
                 (its space, its errors in the log) and restart the engine."
            }
            EngineRefusal::Unavailable(_) => BUSY,
            EngineRefusal::Store(_) => {
                "Correct the [store] configuration (or the environment) as the message says, \
                 then start again."
            }
            EngineRefusal::NotOwnerHere { .. } => {
                "Send the request to the node named in `owner` (route each pen name's requests \
                 to its node), or send it again in a few seconds when no node is named."
            }
            EngineRefusal::WrongAccount { .. }
            | EngineRefusal::ConnectionNotActive { .. }
            | EngineRefusal::PostNotFound(_) => CHECK_THE_REQUEST,
        }
    }

    /// The reason behind the refusal, where there is one: a connection's, a platform's, or
    /// a stored record's that cannot be read.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            EngineRefusal::Storage(e) if is_record_problem(e) => Some(
                Reason::with_platform_message(ReasonCode::RecordUnreadable, e.to_string()),
            ),
            _ => self.named_reason().cloned(),
        }
    }

    fn named_reason(&self) -> Option<&Reason> {
        match self {
            EngineRefusal::WrongAccount { reason }
            | EngineRefusal::ConnectionNotActive { reason, .. }
            | EngineRefusal::Platform(
                ConnectError::RequirementUnmet(reason) | ConnectError::AuthorizationRefused(reason),
            ) => Some(reason),
            _ => None,
        }
    }
}

/// The remedy of a platform's refusal that carries no reason.
fn platform_remedy(e: &ConnectError) -> &'static str {
    match e {
        ConnectError::AccessDenied { .. } => {
            "Authorization was declined on the platform. Start connecting again and choose to authorize the app."
        }
        ConnectError::CodeRejected { .. } => {
            "The platform did not accept the authorization. Start connecting again."
        }
        ConnectError::AppCredentialsRejected { .. } | ConnectError::InvalidRedirectUri(_) => {
            ADMIN_APP_SETTINGS
        }
        ConnectError::RateLimited { .. } | ConnectError::Unavailable { .. } => BUSY,
        ConnectError::RequirementUnmet(reason) | ConnectError::AuthorizationRefused(reason) => {
            reason.remedy()
        }
    }
}

/// A stored record that does not decode or open: named `record_unreadable`, with its
/// reason and remedy, rather than a bare storage error.
pub(crate) fn is_record_problem(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Codec(_)
            | StoreError::Vault(
                social_studio_storage::VaultError::Unopenable { .. }
                    | social_studio_storage::VaultError::UnknownKey { .. }
            )
    )
}

impl From<EngineError> for EngineRefusal {
    fn from(e: EngineError) -> EngineRefusal {
        match e {
            EngineError::Store(s) => EngineRefusal::Storage(s),
            EngineError::NotConnected(key) => EngineRefusal::NotConnected(key.platform),
            EngineError::WrongAccount { reason, .. } => EngineRefusal::WrongAccount { reason },
            EngineError::PostNotFound(id) => EngineRefusal::PostNotFound(id),
            EngineError::InvalidTransition { id, state, action } => {
                EngineRefusal::InvalidTransition { id, state, action }
            }
            EngineError::ConnectionNotActive { status, reason } => {
                EngineRefusal::ConnectionNotActive { status, reason }
            }
            EngineError::Platform(p) => EngineRefusal::Platform(ConnectError::from(p)),
            EngineError::Unavailable(m) => EngineRefusal::Unavailable(m),
            EngineError::NotOwnerHere { owner, .. } => EngineRefusal::NotOwnerHere {
                owner: owner.map(|o| o.to_string()),
            },
        }
    }
}

/// Lets each use case's error take the engine's, the store's and the platforms' errors
/// with `?`, as its `Engine` variant.
macro_rules! wraps_engine_refusal {
    ($name:ident) => {
        impl From<EngineError> for $name {
            fn from(e: EngineError) -> $name {
                $name::Engine(e.into())
            }
        }
        impl From<StoreError> for $name {
            fn from(e: StoreError) -> $name {
                $name::Engine(e.into())
            }
        }
        impl From<ConnectError> for $name {
            fn from(e: ConnectError) -> $name {
                $name::Engine(e.into())
            }
        }
    };
}

/// A request's address that names nothing: a pen name that is not one, a platform that
/// does not exist, a post id that cannot be one.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("invalid pen name: {0}")]
    InvalidPenName(#[from] PenNameError),
    #[error("unknown platform {0:?}")]
    UnknownPlatform(String),
    /// A post id that does not parse names no post.
    #[error("not found")]
    UnknownPost,
}

impl AddressError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AddressError::InvalidPenName(_) => "invalid_pen_name",
            AddressError::UnknownPlatform(_) => "unknown_platform",
            AddressError::UnknownPost => "not_found",
        }
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        CHECK_THE_REQUEST
    }
}

/// A connect (OAuth begin and callback, or an app password) that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ConnectingError {
    #[error("{} is not configured on this service: an administrator must add its app credentials", .0.display_name())]
    PlatformNotConfigured(Platform),
    #[error("{} connects with an identifier and an app password, not through a browser redirect", .0.display_name())]
    WrongConnectFlow(Platform),
    #[error("this authorization link is not one the service issued")]
    InvalidState,
    #[error("this authorization link expired; start connecting again")]
    StateExpired,
    #[error("this authorization link was already used; start connecting again")]
    StateUsed,
    #[error("the request is missing {0}")]
    MissingParameter(&'static str),
    #[error(transparent)]
    Engine(#[from] EngineRefusal),
}

wraps_engine_refusal!(ConnectingError);

impl ConnectingError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectingError::PlatformNotConfigured(_) => "platform_not_configured",
            ConnectingError::WrongConnectFlow(_) => "wrong_connect_flow",
            ConnectingError::InvalidState => "invalid_state",
            ConnectingError::StateExpired => "state_expired",
            ConnectingError::StateUsed => "state_used",
            ConnectingError::MissingParameter(_) => "missing_parameter",
            ConnectingError::Engine(e) => e.code(),
        }
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            ConnectingError::PlatformNotConfigured(_) => ADMIN_APP_SETTINGS,
            ConnectingError::WrongConnectFlow(_) => CHECK_THE_REQUEST,
            ConnectingError::InvalidState | ConnectingError::MissingParameter(_) => START_AGAIN,
            ConnectingError::StateExpired => {
                "The connect took too long. Start connecting again from Social Studio and finish within a few minutes."
            }
            ConnectingError::StateUsed => {
                "This authorization was already completed or attempted. Check the connection in Social Studio, and start connecting again if it is not connected."
            }
            ConnectingError::Engine(e) => e.remedy(),
        }
    }

    /// The reason behind the refusal, where there is one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ConnectingError::Engine(e) => e.reason(),
            _ => None,
        }
    }
}

/// What a disconnect would do: the answer of a dry run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DisconnectPreview {
    #[schema(value_type = super::schema::PlatformId)]
    pub platform: Platform,
    /// Scheduled, paused and held posts that would fail with `account_disconnected`.
    pub scheduled_posts_affected: usize,
}

/// A refused read, verify or disconnect of a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// A disconnect without `confirm`: what it would affect.
    #[error(
        "this would affect {} scheduled posts; repeat with ?confirm=true",
        .0.scheduled_posts_affected
    )]
    ConfirmationRequired(DisconnectPreview),
    /// Verify's test post was published and the platform refused it.
    #[error("the test post was not published: {} {}", .reason.message(), .reason.remedy())]
    TestPostFailed { reason: Reason },
    /// Verify's test post could not be scheduled.
    #[error(transparent)]
    TestPost(#[from] PostError),
    /// Verify's test post was scheduled, yet nothing came back to follow.
    #[error("not found")]
    TestPostMissing,
    #[error(transparent)]
    Engine(#[from] EngineRefusal),
}

wraps_engine_refusal!(ConnectionError);

impl ConnectionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectionError::ConfirmationRequired(_) => "confirmation_required",
            ConnectionError::TestPostFailed { reason } => reason.code.code(),
            ConnectionError::TestPost(e) => e.code(),
            ConnectionError::TestPostMissing => "not_found",
            ConnectionError::Engine(e) => e.code(),
        }
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            ConnectionError::ConfirmationRequired(_) => REPEAT_CONFIRMED,
            ConnectionError::TestPostFailed { reason } => reason.remedy(),
            ConnectionError::TestPost(e) => e.remedy(),
            ConnectionError::TestPostMissing => CHECK_THE_REQUEST,
            ConnectionError::Engine(e) => e.remedy(),
        }
    }

    /// The reason behind the refusal, where there is one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ConnectionError::TestPostFailed { reason } => Some(reason.clone()),
            ConnectionError::TestPost(e) => e.reason(),
            ConnectionError::Engine(e) => e.reason(),
            ConnectionError::ConfirmationRequired(_) | ConnectionError::TestPostMissing => None,
        }
    }
}

/// A refused schedule, read or change of a post.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Every platform the request named, with what each refused; nothing was stored.
    #[error("the post is not valid for every platform it names")]
    ValidationFailed(Vec<PlatformRefusal>),
    #[error("{field}: {source}")]
    InvalidTime {
        field: &'static str,
        #[source]
        source: TimestampParseError,
    },
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Engine(#[from] EngineRefusal),
}

wraps_engine_refusal!(PostError);

impl PostError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PostError::ValidationFailed(_) => "validation_failed",
            PostError::InvalidTime { .. } => "invalid_time",
            PostError::IdempotencyKeyReused => "idempotency_key_reused",
            PostError::Engine(e) => e.code(),
        }
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            PostError::ValidationFailed(_) => {
                "Change the post as each platform's errors say, then send it again."
            }
            PostError::InvalidTime { .. } => CHECK_THE_REQUEST,
            PostError::IdempotencyKeyReused => "Use a new Idempotency-Key for a different request.",
            PostError::Engine(e) => e.remedy(),
        }
    }

    /// The reason behind the refusal, where there is one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            PostError::Engine(e) => e.reason(),
            _ => None,
        }
    }
}

/// What erasing a pen name would remove: the answer of a dry run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErasurePreview {
    /// The platforms connected (their records readable or not).
    #[schema(value_type = Vec<super::schema::PlatformId>)]
    pub connections: Vec<Platform>,
    /// Every post of the pen name, readable or not.
    pub posts: usize,
    /// Of them, those still waiting to be published.
    pub scheduled_posts_affected: usize,
}

/// A refused erasure of a pen name.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// An erasure without `confirm`: what it would remove.
    #[error(
        "this would affect {} scheduled posts; repeat with ?confirm=true",
        .0.scheduled_posts_affected
    )]
    ConfirmationRequired(ErasurePreview),
    #[error(transparent)]
    Engine(#[from] EngineRefusal),
}

wraps_engine_refusal!(EraseError);

impl EraseError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EraseError::ConfirmationRequired(_) => "confirmation_required",
            EraseError::Engine(e) => e.code(),
        }
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            EraseError::ConfirmationRequired(_) => REPEAT_CONFIRMED,
            EraseError::Engine(e) => e.remedy(),
        }
    }

    /// The reason behind the refusal, where there is one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            EraseError::Engine(e) => e.reason(),
            EraseError::ConfirmationRequired(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_brings_its_own_code_and_remedy() {
        let reason = Reason::new(ReasonCode::RevokedByUser);
        let e = ConnectionError::from(EngineRefusal::ConnectionNotActive {
            status: StateLabel::Expired,
            reason: reason.clone(),
        });
        assert_eq!(e.code(), "revoked_by_user");
        assert_eq!(e.remedy(), reason.remedy());
        assert_eq!(e.reason(), Some(reason));
    }

    #[test]
    fn platform_refusals_keep_their_codes_and_remedies() {
        let denied = ConnectingError::from(ConnectError::AccessDenied {
            platform_message: None,
        });
        assert_eq!(denied.code(), "access_denied");
        assert!(denied.remedy().starts_with("Authorization was declined"));
        let busy = PostError::from(ConnectError::RateLimited {
            retry_after: std::time::Duration::from_secs(1),
        });
        assert_eq!(busy.code(), "rate_limited");
        assert_eq!(busy.remedy(), BUSY);
        assert_eq!(
            ConnectingError::PlatformNotConfigured(Platform::X).remedy(),
            ADMIN_APP_SETTINGS
        );
    }
}
