//! Engine settings that shape the actors' timing and limits.

use std::time::Duration;

use social_studio_storage::NodeId;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A renewable grant is refreshed at a random point in this fraction of its lifetime
    /// (75–90%), so a fleet issued at once never refreshes at once.
    pub refresh_window: (f64, f64),
    /// How long before a grant that cannot be renewed without the author lapses the
    /// "expiring soon" event goes out.
    pub expiring_soon_warning: Duration,
    /// Every grant is checked at least this often, with jitter.
    pub health_check_interval: Duration,
    /// A grant is checked again this long before any of its posts is due, so a silently
    /// revoked grant is found before a post meets it.
    pub precheck_lead: Duration,
    /// Passing faults back off exponentially from this…
    pub backoff_base: Duration,
    /// …up to this.
    pub backoff_cap: Duration,
    /// A connection actor may be restarted this many times…
    pub restart_budget: u32,
    /// …within this window; past it the connection goes to Error("too many restarts").
    pub restart_window: Duration,
    /// Concurrent publishes per platform.
    pub publish_concurrency: usize,
    /// A post more than this late when it could finally be sent is Held (`too_late`)
    /// for review instead of published. `None`: publish however late.
    pub lateness_window: Option<Duration>,
    /// Seed for the jitter, for reproducible runs; `None` draws one.
    pub jitter_seed: Option<u64>,
    /// This engine's name among the nodes sharing a store (default `node-{process id}`).
    pub node: NodeId,
    /// How long this node's lease on a connection runs before another node may take the
    /// connection over; renewed every third of it. Irrelevant on sled (one process owns
    /// everything, for good).
    pub lease: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            refresh_window: (0.75, 0.90),
            expiring_soon_warning: Duration::from_secs(7 * 24 * 3600),
            health_check_interval: Duration::from_secs(24 * 3600),
            precheck_lead: Duration::from_secs(3600),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(15 * 60),
            restart_budget: 5,
            restart_window: Duration::from_secs(60),
            publish_concurrency: 8,
            lateness_window: None,
            jitter_seed: None,
            node: NodeId::parse(&format!("node-{}", std::process::id()))
                .expect("a process id makes a node id"),
            lease: Duration::from_secs(15),
        }
    }
}

impl EngineConfig {
    /// Capped exponential backoff for the `attempt`-th consecutive fault (0-based),
    /// with up to 25% jitter added from `jitter` in [0, 1).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self.backoff_base.as_millis() as f64;
        let exp = base * 2f64.powi(attempt.min(30) as i32);
        let capped = exp.min(self.backoff_cap.as_millis() as f64);
        Duration::from_millis((capped * (1.0 + 0.25 * jitter.clamp(0.0, 1.0))) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        let c = EngineConfig::default();
        assert_eq!(c.backoff(0, 0.0), Duration::from_secs(2));
        assert_eq!(c.backoff(3, 0.0), Duration::from_secs(16));
        assert_eq!(c.backoff(40, 0.0), Duration::from_secs(900));
        assert!(c.backoff(40, 0.99) <= Duration::from_millis(900_000 * 125 / 100));
    }
}
