//! Which node owns which connection: the [`Ownership`] port, written once for every
//! backend so the engine that uses it is written once too.
//!
//! Several engine nodes on one database split the connections between them; each
//! connection is owned by one live node through a **lease** (owner, [`Epoch`], expiry).
//! The epoch is the one [`Batch::fence`](crate::Batch::fence) checks: acquiring a lease
//! supersedes every earlier epoch of the connection in the same transaction, so a node
//! that lost a lease cannot write for that connection afterwards, whatever it believes.
//!
//! How a node uses it (the engine's loop):
//!
//! 1. every `lease / 3`: [`Ownership::renew`] (the leases it still holds, the ones it
//!    lost, the ones it should hand over, and for how long the renewal is good), then
//!    [`Ownership::acquire`] (the connections it should take now, each with the epoch to
//!    fence its writes with). In this order a connection acquired is covered by the
//!    renewal just before it (its lease started later), so one [`HeldUntil`] serves
//!    every connection the node holds, from the first tick on; and a lease that lapsed
//!    while the node was paused, but that nobody took, is renewed at its epoch rather
//!    than acquired again under a new one;
//! 2. before every platform call for a connection: [`HeldUntil::allows_call_at`] from
//!    the *last confirmed renewal* ([`LeaseRenewal::held_until`]), on the local monotonic
//!    clock — no database round trip. The margin covers the local clock running slower
//!    than the database's and a pause of up to the margin between that check and the
//!    call's send; a longer pause right there (GC, SIGSTOP) can still send one call after
//!    the lease ran out. Writes after it are refused by the epoch all the same;
//! 3. the connections reported lost: stop their work (their writes are refused already).
//!    The ones reported released: stop calling the platform for them now and stop their
//!    work, then hand them over at once with [`Ownership::release`] rather than let their
//!    leases lapse;
//! 4. graceful shutdown: stop every connection's work, then [`Ownership::release_all`], so
//!    the survivors take them at their next `acquire` without waiting for expiry.
//!
//! On a database shared by nodes, [`Store::claim`](crate::Store::claim) is not for the
//! engine: it supersedes a lease's epoch without taking the lease.
//!
//! The PostgreSQL backend keeps leases in the database, on the database's clock
//! (`storage/src/pg_store/leases.rs`). The sled backend is one process that owns every
//! connection: its answers are the trivial ones (`sled_store/ownership.rs`).

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::batch::Epoch;
use crate::{ConnectionKey, StoreError};

/// The longest node id, in bytes.
pub const NODE_ID_MAX_LEN: usize = 200;

/// The name of one engine node, unique among the nodes sharing a database (the engine's
/// default is the host name and the process id, so a restarted process is a new node).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    #[error("a node id cannot be empty")]
    Empty,
    #[error("a node id is at most {NODE_ID_MAX_LEN} bytes (this one is {0})")]
    TooLong(usize),
    /// Control characters would garble logs and `/v1/supervisor`.
    #[error("a node id cannot hold control characters")]
    ControlCharacter,
}

impl NodeId {
    pub fn parse(id: &str) -> Result<NodeId, NodeIdError> {
        if id.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if id.len() > NODE_ID_MAX_LEN {
            return Err(NodeIdError::TooLong(id.len()));
        }
        if id.chars().any(char::is_control) {
            return Err(NodeIdError::ControlCharacter);
        }
        Ok(NodeId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A node id read back from the store (written from a parsed one).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn stored(id: String) -> NodeId {
        NodeId(id)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one [`Ownership::renew`] found.
#[derive(Debug, Clone)]
pub struct LeaseRenewal {
    /// The leases the node holds, renewed, each with the epoch its writes are fenced with
    /// (the one [`Ownership::acquire`] gave).
    pub held: Vec<(ConnectionKey, Epoch)>,
    /// Leases the node held and holds no more: another node took the connection over
    /// (its epoch moved on) or it was released. Their writes are already refused; stop
    /// their work.
    pub lost: Vec<ConnectionKey>,
    /// Leases the node holds beyond its fair share (a node joined): not renewed, so they
    /// lapse when this renewal's predecessor runs out, and the node must stop calling the
    /// platform for them now. Stop their work and hand them over at once with
    /// [`Ownership::release`].
    pub released: Vec<ConnectionKey>,
    /// When the renewal was sent, on the local monotonic clock: every lease in `held`
    /// runs at least until `started_at + valid_for` in real time.
    pub started_at: Instant,
    /// How long the leases in `held` are good from `started_at` ([`Duration::MAX`]:
    /// forever, on a backend where one process owns everything).
    pub valid_for: Duration,
}

impl LeaseRenewal {
    /// Until when the node may call the platform for the connections in `held`: `margin`
    /// before the leases run out, for a pause between the check and the call's send and
    /// for the local clock running slower than the database's.
    pub fn held_until(&self, margin: Duration) -> HeldUntil {
        HeldUntil::after(self.started_at, self.valid_for, margin)
    }
}

/// Until when a node may act for the connections it holds: a plain value, checked on the
/// local monotonic clock before every platform call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldUntil {
    /// `None`: forever.
    deadline: Option<Instant>,
}

impl HeldUntil {
    /// Never runs out (one process owns every connection).
    pub fn forever() -> HeldUntil {
        HeldUntil { deadline: None }
    }

    /// Nothing is held (before the first renewal).
    pub fn nothing() -> HeldUntil {
        HeldUntil {
            deadline: Some(Instant::now()),
        }
    }

    /// Good until `margin` before `started_at + valid_for`; a `valid_for` too long to
    /// add is forever, and a `margin` at least as long as `valid_for` allows nothing.
    pub fn after(started_at: Instant, valid_for: Duration, margin: Duration) -> HeldUntil {
        let Some(end) = started_at.checked_add(valid_for) else {
            return HeldUntil::forever();
        };
        HeldUntil {
            deadline: Some(
                end.checked_sub(margin)
                    .unwrap_or(started_at)
                    .max(started_at),
            ),
        }
    }

    /// Whether a platform call may be sent at `now`.
    pub fn allows_call_at(&self, now: Instant) -> bool {
        self.deadline.is_none_or(|d| now < d)
    }

    /// Whether a platform call may be sent now.
    pub fn allows_call_now(&self) -> bool {
        self.allows_call_at(Instant::now())
    }

    /// What is left at `now` (`None`: forever; zero once it ran out).
    pub fn remaining_at(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }
}

/// The ownership port: which node owns which connection. See the module documentation
/// for how the engine uses it. `node` is the calling node; `lease` is how long a lease it
/// takes or renews runs (the same value on every call of one node).
#[async_trait]
pub trait Ownership: Send + Sync + 'static {
    /// Takes connections that no live node holds — never owned, released, or whose lease
    /// lapsed — up to this node's fair share (`ceil(connections / live nodes)`, counting
    /// the leases it holds already), each with a new epoch that supersedes every earlier
    /// one. Two nodes acquiring at once never take the same connection. Registers the
    /// node if it is new.
    async fn acquire(
        &self,
        node: &NodeId,
        lease: Duration,
    ) -> Result<Vec<(ConnectionKey, Epoch)>, StoreError>;

    /// Takes the lease on one connection if no live node holds it — the node that has
    /// just created the connection, so that its own actor answers the request that
    /// created it — with a new epoch, whatever the node's fair share (a node over its
    /// share hands the excess over at a later renewal). `None`: a live node holds it.
    /// Registers the node if it is new.
    async fn acquire_key(
        &self,
        node: &NodeId,
        lease: Duration,
        key: &ConnectionKey,
    ) -> Result<Option<Epoch>, StoreError>;

    /// Renews every lease the node holds, and its heartbeat, in one statement; reports
    /// what it lost and what it should hand over ([`LeaseRenewal`]). Only the leases
    /// this store handle acquired for the node are renewed (a process restarted under the
    /// same node id runs no work for its predecessor's: they lapse and are acquired
    /// again). A connection deleted stays held until released: release it with its
    /// deletion.
    async fn renew(&self, node: &NodeId, lease: Duration) -> Result<LeaseRenewal, StoreError>;

    /// Hands these connections over now (their work stopped first): another node's next
    /// `acquire` takes them without waiting for expiry.
    async fn release(&self, node: &NodeId, keys: &[ConnectionKey]) -> Result<(), StoreError>;

    /// Hands every connection of the node over and leaves (graceful shutdown, every
    /// connection's work stopped first).
    async fn release_all(&self, node: &NodeId) -> Result<(), StoreError>;

    /// How many connections each node holds a live lease on, by node id; every live node
    /// is listed, with 0 when it holds none.
    async fn owners(&self) -> Result<Vec<(NodeId, u64)>, StoreError>;

    /// The live node holding a lease on `key`, if any (a command for the connection is
    /// for that node to carry out).
    async fn owner_of(&self, key: &ConnectionKey) -> Result<Option<NodeId>, StoreError>;
}

/// Rebalancing: a node holding more than its fair share plus this many releases the
/// excess (so a count that moves by one does not move connections back and forth).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn slack(share: u64) -> u64 {
    1 + share / 20
}

/// The fair share of one of `live` nodes: `ceil(connections / live)`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn fair_share(connections: u64, live: u64) -> u64 {
    connections.div_ceil(live.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        assert_eq!(NodeId::parse(""), Err(NodeIdError::Empty));
        assert_eq!(NodeId::parse("a\nb"), Err(NodeIdError::ControlCharacter));
        assert!(matches!(
            NodeId::parse(&"x".repeat(NODE_ID_MAX_LEN + 1)),
            Err(NodeIdError::TooLong(_))
        ));
        assert_eq!(NodeId::parse("web-1:4242").unwrap().as_str(), "web-1:4242");
    }

    #[test]
    fn held_until_leaves_the_margin() {
        let start = Instant::now();
        let held = HeldUntil::after(start, Duration::from_secs(15), Duration::from_secs(2));
        assert!(held.allows_call_at(start + Duration::from_secs(12)));
        assert!(!held.allows_call_at(start + Duration::from_secs(13)));
        assert_eq!(
            held.remaining_at(start + Duration::from_secs(3)),
            Some(Duration::from_secs(10))
        );
        let none = HeldUntil::after(start, Duration::from_secs(1), Duration::from_secs(2));
        assert!(!none.allows_call_at(start));
        let forever = HeldUntil::after(start, Duration::MAX, Duration::from_secs(2));
        assert_eq!(forever, HeldUntil::forever());
        assert!(forever.allows_call_at(start + Duration::from_secs(1 << 40)));
        assert!(!HeldUntil::nothing().allows_call_now());
    }

    #[test]
    fn fair_shares_cover_every_connection() {
        assert_eq!(fair_share(300, 3), 100);
        assert_eq!(fair_share(301, 3), 101);
        assert_eq!(fair_share(0, 2), 0);
        assert_eq!(fair_share(5, 0), 5);
        assert_eq!(slack(100), 6);
        assert_eq!(slack(3), 1);
    }
}
