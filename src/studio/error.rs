//! `StudioError`: every way a request to the engine can be refused, each with a stable
//! machine-readable code, a sentence, and its HTTP status — mapped here, in one place.

use serde::Serialize;
use social_studio_actors::EngineError;
use social_studio_storage::{
    PenNameError, Platform, PostId, Reason, ReasonCode, StateLabel, StoreError, TimestampParseError,
};

use crate::platforms::{ConnectError, ContentError};

/// What one platform refused about a post.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlatformRefusal {
    pub platform: String,
    pub errors: Vec<FieldError>,
}

/// One refusal: a code, a sentence, and where it applies.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

#[derive(Debug, thiserror::Error)]
pub enum StudioError {
    #[error("invalid pen name: {0}")]
    InvalidPenName(#[from] PenNameError),
    #[error("unknown platform {0:?}")]
    UnknownPlatform(String),
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
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{} {}", .reason.message(), .reason.remedy())]
    WrongAccount { reason: Reason },
    #[error("{} is not connected for this pen name", .0.display_name())]
    NotConnected(Platform),
    #[error("the connection needs attention: {} {}", .reason.message(), .reason.remedy())]
    ConnectionNotActive { status: StateLabel, reason: Reason },
    #[error("the post is not valid for every platform it names")]
    ValidationFailed(Vec<PlatformRefusal>),
    #[error("{field}: {source}")]
    InvalidTime {
        field: &'static str,
        #[source]
        source: TimestampParseError,
    },
    #[error(
        "this would affect {scheduled_posts_affected} scheduled posts; repeat with ?confirm=true"
    )]
    ConfirmationRequired {
        scheduled_posts_affected: usize,
        detail: serde_json::Value,
    },
    #[error("post {0} not found")]
    PostNotFound(PostId),
    #[error("not found")]
    NotFound,
    #[error("post {id} is {state} and cannot be {action}")]
    InvalidTransition {
        id: PostId,
        state: StateLabel,
        action: &'static str,
    },
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the test post was not published: {} {}", .reason.message(), .reason.remedy())]
    TestPostFailed { reason: Reason },
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
    #[error("the engine is not available: {0}")]
    Unavailable(String),
}

impl StudioError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StudioError::InvalidPenName(_) => "invalid_pen_name",
            StudioError::UnknownPlatform(_) => "unknown_platform",
            StudioError::PlatformNotConfigured(_) => "platform_not_configured",
            StudioError::WrongConnectFlow(_) => "wrong_connect_flow",
            StudioError::InvalidState => "invalid_state",
            StudioError::StateExpired => "state_expired",
            StudioError::StateUsed => "state_used",
            StudioError::MissingParameter(_) => "missing_parameter",
            StudioError::Connect(e) => e.code(),
            StudioError::WrongAccount { .. } => "wrong_account",
            StudioError::NotConnected(_) => "not_connected",
            StudioError::ConnectionNotActive { reason, .. } => reason.code.code(),
            StudioError::ValidationFailed(_) => "validation_failed",
            StudioError::InvalidTime { .. } => "invalid_time",
            StudioError::ConfirmationRequired { .. } => "confirmation_required",
            StudioError::PostNotFound(_) | StudioError::NotFound => "not_found",
            StudioError::InvalidTransition { .. } => "invalid_transition",
            StudioError::IdempotencyKeyReused => "idempotency_key_reused",
            StudioError::TestPostFailed { reason } => reason.code.code(),
            StudioError::Storage(e) if is_record_problem(e) => "record_unreadable",
            StudioError::Storage(_) => "storage_error",
            StudioError::Unavailable(_) => "engine_unavailable",
        }
    }

    /// What a person can do about it, for refusals that carry no reason of their own
    /// (a reason's remedy comes with the reason, in [`StudioError::detail`]).
    pub fn remedy(&self) -> &'static str {
        if let StudioError::WrongAccount { reason }
        | StudioError::ConnectionNotActive { reason, .. }
        | StudioError::TestPostFailed { reason }
        | StudioError::Connect(ConnectError::RequirementUnmet(reason))
        | StudioError::Connect(ConnectError::AuthorizationRefused(reason)) = self
        {
            return reason.remedy();
        }
        match self.code() {
            "invalid_state" | "missing_parameter" => {
                "This link did not come from Social Studio or is incomplete. Start connecting again from Social Studio."
            }
            "state_expired" => "The connect took too long. Start connecting again from Social Studio and finish within a few minutes.",
            "state_used" => "This authorization was already completed or attempted. Check the connection in Social Studio, and start connecting again if it is not connected.",
            "access_denied" => "Authorization was declined on the platform. Start connecting again and choose to authorize the app.",
            "code_rejected" => "The platform did not accept the authorization. Start connecting again.",
            "platform_not_configured" | "app_credentials_rejected" | "invalid_redirect_uri" => {
                "The service's app settings for this platform need an administrator."
            }
            "rate_limited" | "platform_unavailable" | "engine_unavailable" => "The platform or the service is busy. Try again in a few minutes.",
            "validation_failed" => "Change the post as each platform's errors say, then send it again.",
            "confirmation_required" => "Repeat the request with ?confirm=true if this is what you want.",
            "not_connected" => "Connect the account first.",
            "idempotency_key_reused" => "Use a new Idempotency-Key for a different request.",
            "invalid_transition" => "Check the post's state: only some states allow this.",
            "storage_error" => "An administrator should check the service's data directory and logs.",
            "record_unreadable" => ReasonCode::RecordUnreadable.remedy(),
            _ => "Check the request and try again.",
        }
    }

    /// The HTTP status this refusal is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            StudioError::InvalidPenName(_)
            | StudioError::InvalidState
            | StudioError::StateExpired
            | StudioError::StateUsed
            | StudioError::MissingParameter(_)
            | StudioError::InvalidTime { .. } => 400,
            StudioError::Connect(ConnectError::AccessDenied { .. })
            | StudioError::Connect(ConnectError::CodeRejected { .. })
            | StudioError::Connect(ConnectError::InvalidRedirectUri(_)) => 400,
            StudioError::Connect(ConnectError::RequirementUnmet(_))
            | StudioError::Connect(ConnectError::AuthorizationRefused(_)) => 422,
            StudioError::Connect(ConnectError::AppCredentialsRejected { .. }) => 502,
            StudioError::Connect(ConnectError::RateLimited { .. }) => 429,
            StudioError::Connect(ConnectError::Unavailable { .. }) => 503,
            StudioError::UnknownPlatform(_)
            | StudioError::PostNotFound(_)
            | StudioError::NotFound => 404,
            StudioError::PlatformNotConfigured(_)
            | StudioError::WrongConnectFlow(_)
            | StudioError::WrongAccount { .. }
            | StudioError::NotConnected(_)
            | StudioError::ConnectionNotActive { .. }
            | StudioError::ConfirmationRequired { .. }
            | StudioError::InvalidTransition { .. }
            | StudioError::IdempotencyKeyReused => 409,
            StudioError::ValidationFailed(_) | StudioError::TestPostFailed { .. } => 422,
            StudioError::Storage(_) => 500,
            StudioError::Unavailable(_) => 503,
        }
    }

    /// Extra structured detail for the error body (validation errors, affected counts,
    /// the reason and remedy of a connection problem).
    pub fn detail(&self) -> Option<serde_json::Value> {
        match self {
            StudioError::ValidationFailed(platforms) => {
                Some(serde_json::json!({ "platforms": platforms }))
            }
            StudioError::ConfirmationRequired {
                scheduled_posts_affected,
                detail,
            } => {
                let mut d = detail.clone();
                if let Some(obj) = d.as_object_mut() {
                    obj.insert(
                        "scheduled_posts_affected".into(),
                        (*scheduled_posts_affected).into(),
                    );
                }
                Some(d)
            }
            StudioError::WrongAccount { reason }
            | StudioError::ConnectionNotActive { reason, .. }
            | StudioError::TestPostFailed { reason } => {
                Some(serde_json::json!({ "reason": super::views::ReasonView::from(reason) }))
            }
            StudioError::Connect(ConnectError::RequirementUnmet(reason))
            | StudioError::Connect(ConnectError::AuthorizationRefused(reason)) => {
                Some(serde_json::json!({ "reason": super::views::ReasonView::from(reason) }))
            }
            StudioError::Storage(e) if is_record_problem(e) => {
                let reason =
                    Reason::with_platform_message(ReasonCode::RecordUnreadable, e.to_string());
                Some(serde_json::json!({ "reason": super::views::ReasonView::from(&reason) }))
            }
            _ => None,
        }
    }
}

/// A stored record that does not decode or open: named `record_unreadable`, with its
/// reason and remedy, rather than a bare storage error.
fn is_record_problem(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Codec(_)
            | StoreError::Vault(social_studio_storage::VaultError::Unopenable { .. })
    )
}

impl From<EngineError> for StudioError {
    fn from(e: EngineError) -> StudioError {
        match e {
            EngineError::Store(s) => StudioError::Storage(s),
            EngineError::NotConnected(key) => StudioError::NotConnected(key.platform),
            EngineError::WrongAccount { reason, .. } => StudioError::WrongAccount { reason },
            EngineError::PostNotFound(id) => StudioError::PostNotFound(id),
            EngineError::InvalidTransition { id, state, action } => {
                StudioError::InvalidTransition { id, state, action }
            }
            EngineError::ConnectionNotActive { status, reason } => {
                StudioError::ConnectionNotActive { status, reason }
            }
            EngineError::Platform(p) => StudioError::Connect(ConnectError::from(p)),
            EngineError::Unavailable(m) => StudioError::Unavailable(m),
        }
    }
}
