//! This node's hold on its connections, as the actors see it: the [`LeaseGate`] every
//! platform call passes, set from the last confirmed lease renewal, and [`LeasedPort`],
//! the platform port wrapped so that no call is sent once the node's leases may have run
//! out.
//!
//! The supervisor renews the node's leases every `lease / 3`
//! ([`Ownership::renew`](social_studio_storage::Ownership::renew)) and sets the gate to
//! what the renewal confirmed: `margin` before the leases run out, on the local monotonic
//! clock ([`HeldUntil`]). A node that stops renewing — its database unreachable, or the
//! process paused — sends nothing from `margin` before its leases lapse, so by the time
//! another node may take a connection over this one has stopped calling for it. The one
//! window left is a pause longer than the margin between the check and the call's send.
//! Its writes afterwards are refused by the epoch (`StoreError::Fenced`).
//!
//! On sled one process holds everything forever ([`HeldUntil::forever`]) and the gate
//! never closes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use social_studio_storage::{
    Account, Grant, GrantFacts, HeldUntil, Platform, Post, Reason, Receipt,
};

use crate::{LostRefreshPolicy, PlatformPort, PortError, RevokeOutcome};

/// What is left of the lease between the gate's closing and its running out: the time
/// a call checked just before the gate closed may take to be sent, and how much slower
/// the local clock may run than the database's over one lease. A fifth of the lease,
/// at least a second.
pub fn lease_margin(lease: Duration) -> Duration {
    (lease / 5).max(Duration::from_secs(1))
}

/// Whether this node may call the platform for the connections it holds now. Cheap to
/// clone; every clone sees the same hold.
#[derive(Clone)]
pub struct LeaseGate(Arc<RwLock<HeldUntil>>);

impl LeaseGate {
    /// Closed until the first renewal says otherwise.
    pub fn closed() -> LeaseGate {
        LeaseGate(Arc::new(RwLock::new(HeldUntil::nothing())))
    }

    /// Open for good: one process owns every connection.
    pub fn forever() -> LeaseGate {
        LeaseGate(Arc::new(RwLock::new(HeldUntil::forever())))
    }

    pub fn set(&self, held: HeldUntil) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = held;
    }

    pub fn held(&self) -> HeldUntil {
        *self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a platform call may be sent now.
    pub fn open(&self) -> bool {
        self.held().allows_call_now()
    }

    /// The refusal a call meets when the gate is closed: a passing fault that delivered
    /// nothing, so a publish waits and a refresh is tried again — by whichever node holds
    /// the connection then.
    fn refusal() -> PortError {
        PortError::Unavailable {
            detail:
                "this node's lease on the connection is not confirmed, so the call was not sent"
                    .into(),
            maybe_delivered: false,
        }
    }
}

/// A platform port whose calls pass the node's [`LeaseGate`] first.
pub struct LeasedPort {
    inner: Arc<dyn PlatformPort>,
    gate: LeaseGate,
}

impl LeasedPort {
    pub fn wrap(inner: Arc<dyn PlatformPort>, gate: LeaseGate) -> Arc<dyn PlatformPort> {
        Arc::new(LeasedPort { inner, gate })
    }

    fn pass(&self) -> Result<(), PortError> {
        if self.gate.open() {
            Ok(())
        } else {
            Err(LeaseGate::refusal())
        }
    }
}

#[async_trait]
impl PlatformPort for LeasedPort {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }

    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        self.pass()?;
        self.inner.refresh(grant).await
    }

    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        self.pass()?;
        self.inner.check(grant).await
    }

    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        self.pass()?;
        self.inner.publish(grant, post).await
    }

    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        self.pass()?;
        self.inner.revoke(grant).await
    }

    fn renewable(&self, grant: &GrantFacts) -> bool {
        self.inner.renewable(grant)
    }

    fn lost_refresh_policy(&self) -> LostRefreshPolicy {
        self.inner.lost_refresh_policy()
    }

    fn idempotent_publish(&self) -> bool {
        self.inner.idempotent_publish()
    }

    fn expiry_reason(&self) -> Reason {
        self.inner.expiry_reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_margin_is_a_fifth_of_the_lease_and_at_least_a_second() {
        assert_eq!(
            lease_margin(Duration::from_secs(15)),
            Duration::from_secs(3)
        );
        assert_eq!(lease_margin(Duration::from_secs(2)), Duration::from_secs(1));
    }

    #[test]
    fn the_gate_follows_the_last_renewal() {
        let gate = LeaseGate::closed();
        assert!(!gate.open());
        let other = gate.clone();
        other.set(HeldUntil::after(
            Instant::now(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        ));
        assert!(gate.open(), "a clone sees the renewal");
        other.set(HeldUntil::after(
            Instant::now() - Duration::from_secs(61),
            Duration::from_secs(60),
            Duration::from_secs(1),
        ));
        assert!(!gate.open(), "a renewal that ran out closes it");
        assert!(LeaseGate::forever().open());
    }
}
