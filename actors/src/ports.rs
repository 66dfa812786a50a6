//! Ports: the traits through which actors reach platforms and the clock.
//!
//! Actors never speak HTTP. They call a [`PlatformPort`] that `social-studio`'s
//! `platforms/` implements with reqwest and oauth2, and that tests and examples implement
//! with in-process fakes (`testkit`, behind the feature of that name). Every failure a port returns is already
//! *classified* ([`PortError`]), so the actors decide what happens from the class, never
//! from strings.

use std::time::Duration;

use async_trait::async_trait;
use social_studio_storage::{
    Account, Grant, GrantFacts, Platform, Post, Reason, Receipt, Timestamp,
};

/// How far a rate limit reaches, which decides what the queue holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LimitScope {
    /// Per user, per token or per Page (X user limits, Meta codes 17 and 32, TikTok):
    /// only this connection waits.
    Connection,
    /// App-wide (Meta code 4, X app limits): every connection on the platform waits.
    Platform,
}

/// A platform failure, classified. The table in DESIGN.md maps each class to what the
/// connection and its posts do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum PortError {
    /// The grant is dead (revoked, expired, password changed, `invalid_grant`, Graph 190…):
    /// the connection becomes Expired with this reason and its posts pause.
    #[error("the grant is dead: {0}")]
    GrantDead(Reason),
    /// The access token was refused but the grant may be renewable (HTTP 401 on a call):
    /// refresh once, then retry.
    #[error("the access token was refused")]
    Unauthorized,
    /// A requirement is unmet (personal profile, lost Page role, missing permission):
    /// the connection goes to Error with this reason and its posts pause.
    #[error("a requirement is unmet: {0}")]
    RequirementUnmet(Reason),
    /// The platform refused this post's content; retrying cannot help.
    #[error("the content was rejected: {0}")]
    ContentRejected(Reason),
    /// Slow down: nothing fails, the queue waits `retry_after` for the scope.
    #[error("rate limited for {retry_after:?} ({scope:?})")]
    RateLimited {
        retry_after: Duration,
        scope: LimitScope,
    },
    /// A passing fault (timeout, 5xx, connection reset). `maybe_delivered` is true when the
    /// request may have reached the platform and only the answer was lost — a refresh may
    /// have rotated the token, a publish may have happened.
    #[error("the platform is unavailable: {detail}")]
    Unavailable {
        detail: String,
        maybe_delivered: bool,
    },
}

/// What the engine may do after a refresh whose answer was lost (a crash, a cut
/// connection): the old refresh token is the only way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostRefreshPolicy {
    /// The platform answers a resend of the previous refresh token with the same successor
    /// for this long (Bluesky: 2 hours): resending within it completes the refresh.
    GracePeriod(Duration),
    /// Resend once; if the platform calls the grant dead, the reason is
    /// `refresh_interrupted`.
    ResendOnce,
}

/// Outcome of revoking a grant at disconnect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RevokeOutcome {
    Revoked,
    /// The platform has no revoke endpoint; disconnect says so.
    NotSupported,
}

/// One platform's API, as the actors need it. The grant passed in is the connection's;
/// implementations use it for the one call and keep nothing.
#[async_trait]
pub trait PlatformPort: Send + Sync + 'static {
    fn platform(&self) -> Platform;

    /// Renews the grant: with its refresh token, or (Threads) with the long-lived token
    /// itself. Returns the whole new grant (rotated refresh token included).
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError>;

    /// Proves the grant still authorises posting and returns the account behind it.
    async fn check(&self, grant: &Grant) -> Result<Account, PortError>;

    /// Publishes one post.
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError>;

    /// Revokes the grant at the platform, where it can.
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError>;

    /// Whether a grant can be renewed without the author, judged from its non-secret
    /// facts (so a status page can say it without unsealing a token). Defaults to "has a
    /// refresh token"; Threads renews its access token itself.
    fn renewable(&self, grant: &GrantFacts) -> bool {
        grant.has_refresh_token
    }

    /// What to do about a refresh whose answer was lost.
    fn lost_refresh_policy(&self) -> LostRefreshPolicy {
        LostRefreshPolicy::ResendOnce
    }

    /// Whether publishing the same post twice is harmless because the engine chooses the
    /// record key (Bluesky `createRecord` with a TID): then a post interrupted mid-call is
    /// sent again and confirmed instead of becoming Unconfirmed.
    fn idempotent_publish(&self) -> bool {
        false
    }

    /// The reason recorded when a grant that cannot be renewed reaches its expiry
    /// (LinkedIn self-serve apps say why here).
    fn expiry_reason(&self) -> Reason {
        Reason::new(social_studio_storage::ReasonCode::GrantExpired)
    }
}

/// Wall-clock time for the actors. Due times are wall-clock; tests drive the clock in
/// step with tokio's paused time so that sixty days run in milliseconds.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_system()
    }
}

/// Wall-clock time that advances with tokio's clock: `base` plus the tokio time elapsed
/// since creation. Under `tokio::time::pause()` it jumps exactly as timers do, so wall
/// deadlines and tokio sleeps never disagree.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(base: Timestamp) -> TokioClock {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base.saturating_add(self.start.elapsed())
    }
}
