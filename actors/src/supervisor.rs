//! The supervisor: boots every connection and unfinished post from storage, routes
//! commands, and restarts failed children from storage within a restart budget.
//!
//! ractor's default supervisor stops itself when a child dies; this one never does. A
//! connection that keeps failing goes to Error("too many restarts") while its siblings run
//! on. Shutdown drains mailboxes (never `stop`, which drops queued messages).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use social_studio_storage::{
    Account, Batch, Connection, ConnectionKey, ConnectionStatus, Durability, Epoch, Event,
    EventKind, Grant, NodeId, PenName, Platform, Post, PostId, PostStatus, Reason, ReasonCode,
    SharedStore, StateLabel, StoreError, Target, UnreadableRecord,
};

use crate::connection::{ConnectionActor, ConnectionArgs};
use crate::lease::{lease_margin, LeaseGate, LeasedPort};
use crate::messages::{
    ConnectionMsg, ConnectionView, DisconnectReport, QueueMsg, QueueStats, DISCONNECTED,
};
use crate::queue::{QueueActor, QueueArgs};
use crate::{BootProgress, Clock, EngineConfig, EngineError, PlatformPort, StoreHealth};

/// The actor tree at a glance.
#[derive(Debug, Clone, Default)]
pub struct TreeReport {
    pub connections_active: usize,
    pub connections_expired: usize,
    pub connections_error: usize,
    /// Connection actors restarted since boot.
    pub restarts: u64,
    pub queues: Vec<(Platform, QueueStats)>,
    /// Stored records that cannot be read, each named with what it belonged to.
    pub unreadable: Vec<UnreadableRecord>,
    /// This engine's node.
    pub node: Option<NodeId>,
    /// The connections whose actors run on this node.
    pub running_here: usize,
    /// How many connections each live node sharing the store holds (one node on sled).
    pub owners: Vec<(NodeId, u64)>,
}

type Reply<T> = RpcReplyPort<Result<T, EngineError>>;

pub enum SupervisorMsg {
    Connect {
        request: Box<ConnectRequest>,
        reply: Reply<ConnectionView>,
    },
    Disconnect {
        key: ConnectionKey,
        reply: Reply<DisconnectReport>,
    },
    Status {
        key: ConnectionKey,
        reply: Reply<Option<ConnectionView>>,
    },
    Verify {
        key: ConnectionKey,
        reply: Reply<ConnectionView>,
    },
    ChooseTargets {
        key: ConnectionKey,
        targets: Vec<String>,
        reply: Reply<ConnectionView>,
    },
    Schedule {
        post: Box<Post>,
        reply: Reply<Post>,
    },
    Cancel {
        pen: PenName,
        id: PostId,
        reply: Reply<Post>,
    },
    Retry {
        pen: PenName,
        id: PostId,
        reply: Reply<Post>,
    },
    Resolve {
        pen: PenName,
        id: PostId,
        published: bool,
        reply: Reply<Post>,
    },
    Update {
        post: Box<Post>,
        reply: Reply<Post>,
    },
    Tree(RpcReplyPort<TreeReport>),
    Shutdown(RpcReplyPort<()>),
    /// Renew this node's leases, let go of the connections it lost, take the ones it
    /// should run (sent by the supervisor to itself every third of the lease).
    LeaseTick,
}

/// A finished authorization to attach to a connection.
pub struct ConnectRequest {
    pub key: ConnectionKey,
    pub account: Account,
    pub targets: Vec<Target>,
    pub grant: Grant,
    /// Accept a different account than the one connected.
    pub replace: bool,
}

pub struct SupervisorArgs {
    pub store: SharedStore,
    /// Set by every commit of every actor (see [`StoreHealth`]).
    pub health: StoreHealth,
    pub ports: HashMap<Platform, Arc<dyn PlatformPort>>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<EngineConfig>,
    /// Where the start reports how far it has come (connections started of how many,
    /// then the posts), for readiness probes and the log while it runs.
    pub boot: BootProgress,
}

pub struct Supervisor;

/// How long a status question waits for a busy connection before the store answers.
pub const STATUS_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// A connection's view built from what the store holds.
struct StoredView {
    store: SharedStore,
    ports: HashMap<Platform, Arc<dyn PlatformPort>>,
    clock: Arc<dyn Clock>,
    expiring_soon_warning: std::time::Duration,
}

impl StoredView {
    async fn of(&self, key: &ConnectionKey) -> Result<Option<ConnectionView>, EngineError> {
        let Some(connection) = self.store.connection(key).await? else {
            return Ok(None);
        };
        Ok(Some(ConnectionView::of(
            connection,
            self.ports.get(&key.platform).map(|p| &**p),
            self.clock.now(),
            self.expiring_soon_warning,
        )))
    }
}

pub struct SupervisorState {
    store: SharedStore,
    health: StoreHealth,
    ports: HashMap<Platform, Arc<dyn PlatformPort>>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    queues: HashMap<Platform, ActorRef<QueueMsg>>,
    queue_ids: HashMap<ActorId, Platform>,
    connections: HashMap<ConnectionKey, ActorRef<ConnectionMsg>>,
    connection_ids: HashMap<ActorId, ConnectionKey>,
    restarts: HashMap<ConnectionKey, VecDeque<tokio::time::Instant>>,
    restart_total: u64,
    seed: u64,
    /// Per platform: until when an app-wide rate limit holds (shared with its connections).
    platform_limits: HashMap<Platform, Arc<std::sync::atomic::AtomicI64>>,
    /// The connections this node holds a lease on, each with the epoch its writes are
    /// fenced with. Only these have actors here.
    held: HashMap<ConnectionKey, Epoch>,
    /// Whether platform calls may go out: set from each confirmed renewal.
    gate: LeaseGate,
    /// One process owns every connection for good (sled): no renewals run.
    forever: bool,
    /// Actors draining before their connection is handed over (this node held more than
    /// its share): the lease is released once the actor stopped.
    handing_over: HashMap<ActorId, ConnectionKey>,
    /// The last renewal failed (logged once per streak).
    renew_failing: bool,
}

impl SupervisorState {
    fn next_seed(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed
    }

    async fn spawn_queue(
        &mut self,
        platform: Platform,
        myself: &ActorCell,
    ) -> Result<ActorRef<QueueMsg>, ActorProcessingErr> {
        let args = QueueArgs {
            platform,
            store: self.store.clone(),
            health: self.health.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            idempotent_publish: self
                .ports
                .get(&platform)
                .is_some_and(|p| p.idempotent_publish()),
            gate: self.gate.clone(),
        };
        let (q, _) = Actor::spawn_linked(None, QueueActor, args, myself.clone()).await?;
        self.queue_ids.insert(q.get_id(), platform);
        self.queues.insert(platform, q.clone());
        Ok(q)
    }

    fn queue(&self, platform: Platform) -> Result<&ActorRef<QueueMsg>, EngineError> {
        self.queues
            .get(&platform)
            .ok_or_else(|| EngineError::Unavailable(format!("no queue for {platform}")))
    }

    /// Spawns the actor of a stored connection. `None` when the platform has no port (its
    /// posts stay paused with a reason an administrator can act on).
    async fn spawn_connection(
        &mut self,
        record: Connection,
        grant: Option<Grant>,
        myself: &ActorCell,
    ) -> Result<Option<ActorRef<ConnectionMsg>>, ActorProcessingErr> {
        let key = record.key.clone();
        let Some(epoch) = self.held.get(&key).copied() else {
            // Not this node's to run: its owner has the actor.
            return Ok(None);
        };
        let Some(port) = self.ports.get(&key.platform).cloned() else {
            tracing::error!(connection = %key, "no adapter configured for this platform");
            return Ok(None);
        };
        let queue = self.queue(key.platform)?.clone();
        let seed = self.next_seed();
        let args = ConnectionArgs {
            record,
            grant,
            store: self.store.clone(),
            health: self.health.clone(),
            port,
            clock: self.clock.clone(),
            config: self.config.clone(),
            queue,
            seed,
            platform_limit: self
                .platform_limits
                .get(&key.platform)
                .cloned()
                .unwrap_or_default(),
            epoch,
        };
        let (actor, _) = Actor::spawn_linked(None, ConnectionActor, args, myself.clone()).await?;
        self.connection_ids.insert(actor.get_id(), key.clone());
        self.connections.insert(key, actor.clone());
        Ok(Some(actor))
    }

    fn live_connection(&self, key: &ConnectionKey) -> Option<&ActorRef<ConnectionMsg>> {
        self.connections.get(key).filter(|a| {
            matches!(
                a.get_status(),
                ractor::ActorStatus::Running
                    | ractor::ActorStatus::Starting
                    | ractor::ActorStatus::Upgrading
            )
        })
    }

    /// The actor of a connection, respawning one from storage for a connection that ran
    /// out of restarts (a reconnect or disconnect gives it a fresh start).
    async fn ensure_connection(
        &mut self,
        key: &ConnectionKey,
        myself: &ActorCell,
    ) -> Result<Option<ActorRef<ConnectionMsg>>, EngineError> {
        if let Some(a) = self.live_connection(key) {
            return Ok(Some(a.clone()));
        }
        self.runs_here(key).await?;
        let record = match self.store.connection(key).await {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            // A record that cannot be read has no actor; a new connect replaces it.
            Err(StoreError::Codec(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let grant = self.store.grant(key).await.ok().flatten();
        self.restarts.remove(key);
        let actor = self
            .spawn_connection(record, grant, myself)
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        self.queue(key.platform)?
            .cast(QueueMsg::ConnectionRestarted {
                key: key.clone(),
                actor: actor.clone(),
            })?;
        Ok(actor)
    }

    /// Whether a command for `key` is this node's to carry out: a connection it holds,
    /// or one that does not exist (nobody runs it; connecting it makes it this node's).
    /// Otherwise the refusal names the node that runs it.
    async fn runs_here(&self, key: &ConnectionKey) -> Result<(), EngineError> {
        if self.forever || self.held.contains_key(key) {
            return Ok(());
        }
        if let Ok(None) = self.store.connection(key).await {
            return Ok(());
        }
        let owner = self.store.ownership().owner_of(key).await.ok().flatten();
        Err(EngineError::NotOwnerHere {
            key: key.clone(),
            owner,
        })
    }

    /// Runs the connections this node has just acquired: each one's actor from its
    /// stored record, registered with its queue under the lease's epoch, then their
    /// waiting posts.
    async fn take(&mut self, taken: Vec<(ConnectionKey, Epoch)>, myself: &ActorCell) {
        if taken.is_empty() {
            return;
        }
        let keys: std::collections::HashSet<ConnectionKey> =
            taken.iter().map(|(k, _)| k.clone()).collect();
        for (key, epoch) in taken {
            self.held.insert(key.clone(), epoch);
            let Ok(queue) = self.queue(key.platform).cloned() else {
                continue;
            };
            let (actor, paused) = match self.store.connection(&key).await {
                Ok(Some(record)) => {
                    let paused = record.status.reason().cloned();
                    let grant = self.store.grant(&key).await.ok().flatten();
                    match self.spawn_connection(record, grant, myself).await {
                        Ok(Some(actor)) => (Some(actor), paused),
                        Ok(None) => (None, Some(not_configured())),
                        Err(e) => {
                            tracing::error!(connection = %key, error = %e, "cannot start the actor of a connection taken over");
                            (None, paused)
                        }
                    }
                }
                Ok(None) => {
                    // Disconnected meanwhile: nothing to run.
                    self.held.remove(&key);
                    let _ = self.store.ownership().release(&self.node(), &[key]).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(connection = %key, error = %e, "a connection taken over cannot be read; its posts wait");
                    (
                        None,
                        Some(Reason::with_platform_message(
                            ReasonCode::RecordUnreadable,
                            e.to_string(),
                        )),
                    )
                }
            };
            tracing::info!(connection = %key, epoch = epoch.0, "this node runs the connection now");
            let _ = queue.cast(QueueMsg::Register {
                key,
                actor,
                paused,
                epoch: Some(epoch),
            });
        }
        if let Err(e) = self.load_posts(|key| keys.contains(key)).await {
            tracing::error!(error = %e, "cannot load the posts of the connections taken over");
        }
    }

    /// This node no longer holds `key` (another node took it over): its actor stops at
    /// once and its queue forgets it (their writes are refused already).
    fn let_go(&mut self, key: &ConnectionKey) {
        self.held.remove(key);
        self.restarts.remove(key);
        if let Some(actor) = self.connections.remove(key) {
            self.connection_ids.remove(&actor.get_id());
            actor.stop(Some("lease lost".into()));
        }
        if let Ok(q) = self.queue(key.platform) {
            let _ = q.cast(QueueMsg::Forget { key: key.clone() });
        }
        tracing::warn!(connection = %key, "another node runs this connection now");
    }

    /// This node holds more than its share: the connection's actor finishes what its
    /// mailbox holds (the queue sends it nothing more), then the queue forgets it and
    /// the lease is released, so another node takes it without waiting for expiry.
    async fn hand_over(&mut self, key: ConnectionKey) {
        self.held.remove(&key);
        self.restarts.remove(&key);
        match self.connections.remove(&key) {
            Some(actor) => {
                self.connection_ids.remove(&actor.get_id());
                self.handing_over.insert(actor.get_id(), key);
                let _ = actor.drain();
            }
            None => self.handed_over(key).await,
        }
    }

    async fn handed_over(&mut self, key: ConnectionKey) {
        if let Ok(q) = self.queue(key.platform) {
            let _ = q.cast(QueueMsg::Forget { key: key.clone() });
        }
        if let Err(e) = self
            .store
            .ownership()
            .release(&self.node(), std::slice::from_ref(&key))
            .await
        {
            tracing::warn!(connection = %key, error = %e, "could not release the lease; it lapses instead");
        }
        tracing::info!(connection = %key, "handed over to another node");
    }

    fn node(&self) -> NodeId {
        self.config.node.clone()
    }

    /// The epoch a queue fences the connection's post writes with: the lease's, where
    /// several nodes may share the store; none where one process owns everything for
    /// good, as nobody else can write for it (its actor's writes still carry one).
    fn queue_fence(&self, key: &ConnectionKey) -> Option<Epoch> {
        if self.forever {
            None
        } else {
            self.held.get(key).copied()
        }
    }

    /// One lease period's work: renew, let go of what was lost, hand over the excess,
    /// take what is free.
    async fn lease_tick(&mut self, myself: &ActorCell) {
        let store = self.store.clone();
        let node = self.node();
        match store.ownership().renew(&node, self.config.lease).await {
            Ok(renewal) => {
                if self.renew_failing {
                    tracing::info!(node = %node, "lease renewals go through again");
                    self.renew_failing = false;
                }
                self.gate
                    .set(renewal.held_until(lease_margin(self.config.lease)));
                for key in &renewal.lost {
                    self.let_go(key);
                }
                for key in renewal.released {
                    self.hand_over(key).await;
                }
                // Posts held back while the gate was closed may go now.
                for q in self.queues.values() {
                    let _ = q.cast(QueueMsg::Wake);
                }
            }
            Err(e) => {
                if !self.renew_failing {
                    tracing::error!(node = %node, error = %e, "cannot renew this node's leases: its platform calls stop when they run out, and other nodes take its connections over");
                    self.renew_failing = true;
                }
                return;
            }
        }
        match store.ownership().acquire(&node, self.config.lease).await {
            Ok(taken) => self.take(taken, myself).await,
            Err(e) => tracing::warn!(node = %node, error = %e, "cannot acquire connections"),
        }
    }

    async fn view_from_store(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<ConnectionView>, EngineError> {
        self.stored_view().of(key).await
    }

    /// What answering from the store needs, detached from the supervisor's state.
    fn stored_view(&self) -> StoredView {
        StoredView {
            store: self.store.clone(),
            ports: self.ports.clone(),
            clock: self.clock.clone(),
            expiring_soon_warning: self.config.expiring_soon_warning,
        }
    }

    async fn connect(
        &mut self,
        request: ConnectRequest,
        reply: Reply<ConnectionView>,
        myself: &ActorCell,
    ) {
        let ConnectRequest {
            key,
            account,
            targets,
            grant,
            replace,
        } = request;
        match self.ensure_connection(&key, myself).await {
            Ok(Some(actor)) => {
                let msg = ConnectionMsg::Reconnect {
                    account,
                    targets,
                    grant: Box::new(grant),
                    replace,
                    reply,
                };
                if let Err(ractor::MessagingErr::SendErr(ConnectionMsg::Reconnect {
                    reply, ..
                })) = actor.cast(msg)
                {
                    let _ = reply.send(Err(EngineError::Unavailable(
                        "the connection actor stopped".into(),
                    )));
                }
            }
            Ok(None) => {
                let now = self.clock.now();
                let record = Connection {
                    key: key.clone(),
                    status: ConnectionStatus::Active,
                    account,
                    chosen_targets: Connection::default_choice(&targets),
                    targets,
                    connected_at: now,
                    status_since: now,
                    refresh_in_flight: None,
                    grant: Some(grant.facts()),
                };
                let mut b = Batch::new();
                b.put_connection(&record).put_grant(&key, &grant).event(
                    Event::new(now, key.clone(), EventKind::ConnectionStatus)
                        .transition(Some(StateLabel::NotConnected), Some(StateLabel::Active)),
                );
                let result = async {
                    self.health
                        .commit(&self.store, b, Durability::Durable)
                        .await?;
                    // The node that connected it runs it, unless another node took the
                    // new connection first (it then answers from the store).
                    let epoch = self
                        .store
                        .ownership()
                        .acquire_key(&self.node(), self.config.lease, &key)
                        .await?;
                    let Some(epoch) = epoch else {
                        return self
                            .view_from_store(&key)
                            .await?
                            .ok_or(EngineError::NotConnected(key.clone()));
                    };
                    self.held.insert(key.clone(), epoch);
                    let actor = self
                        .spawn_connection(record, Some(grant), myself)
                        .await
                        .map_err(|e| EngineError::Unavailable(e.to_string()))?;
                    self.queue(key.platform)?.cast(QueueMsg::Register {
                        key: key.clone(),
                        actor: actor.clone(),
                        paused: None,
                        epoch: self.queue_fence(&key),
                    })?;
                    // Posts a record that could not be read had paused go again.
                    self.queue(key.platform)?
                        .cast(QueueMsg::Resume { key: key.clone() })?;
                    match actor {
                        Some(a) => Ok(ractor::call!(a, ConnectionMsg::Status)?),
                        None => self
                            .view_from_store(&key)
                            .await?
                            .ok_or(EngineError::NotConnected(key.clone())),
                    }
                }
                .await;
                let _ = reply.send(result);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The post, if it belongs to this pen name (another pen name's post is "not found").
    async fn owned_post(&self, pen: &PenName, id: PostId) -> Result<Post, EngineError> {
        match self.store.post(id).await? {
            Some(p) if p.connection.pen_name == *pen => Ok(p),
            _ => Err(EngineError::PostNotFound(id)),
        }
    }

    async fn connection_failed(&mut self, key: ConnectionKey, myself: &ActorCell) {
        self.connections.remove(&key);
        if !self.held.contains_key(&key) {
            return; // no longer this node's
        }
        let now = tokio::time::Instant::now();
        let window = self.config.restart_window;
        let history = self.restarts.entry(key.clone()).or_default();
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            history.pop_front();
        }
        history.push_back(now);
        let over_budget = history.len() as u32 > self.config.restart_budget;
        let Ok(queue) = self.queue(key.platform).cloned() else {
            return;
        };
        let record = match self.store.connection(&key).await {
            Ok(Some(r)) => r,
            Ok(None) => return, // disconnected meanwhile
            Err(e) => {
                tracing::error!(connection = %key, error = %e, "cannot reload a failed connection");
                return;
            }
        };
        if over_budget {
            let reason = Reason::new(ReasonCode::TooManyRestarts);
            tracing::error!(connection = %key, "connection actor failed too often; giving up until reconnect");
            let mut record = record;
            let from = record.status.label();
            record.status = ConnectionStatus::Error(reason.clone());
            record.status_since = self.clock.now();
            let mut b = Batch::new();
            b.put_connection(&record).event(
                Event::new(
                    record.status_since,
                    key.clone(),
                    EventKind::ConnectionStatus,
                )
                .transition(Some(from), Some(StateLabel::Error))
                .reason(Some(reason.clone())),
            );
            match self
                .health
                .commit(&self.store, b, Durability::Durable)
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(connection = %key, error = %e, "cannot record too many restarts")
                }
            }
            let _ = queue.cast(QueueMsg::ConnectionRestarted {
                key: key.clone(),
                actor: None,
            });
            let _ = queue.cast(QueueMsg::Pause { key, reason });
            return;
        }
        self.restart_total += 1;
        let grant = self.store.grant(&key).await.ok().flatten();
        match self.spawn_connection(record, grant, myself).await {
            Ok(actor) => {
                tracing::warn!(connection = %key, "connection actor restarted from storage");
                let _ = queue.cast(QueueMsg::ConnectionRestarted { key, actor });
            }
            Err(e) => {
                tracing::error!(connection = %key, error = %e, "cannot restart connection actor")
            }
        }
    }

    /// Disconnects a connection whose record cannot be read (it has no actor): revokes
    /// its grant where the grant still opens, fails its readable posts as any disconnect
    /// does, and erases it. A connection that does not exist at all is "not connected".
    async fn disconnect_unreadable(
        &mut self,
        key: ConnectionKey,
    ) -> Result<DisconnectReport, EngineError> {
        match self.store.connection(&key).await {
            Err(StoreError::Codec(_)) => {}
            Ok(_) => return Err(EngineError::NotConnected(key)),
            Err(e) => return Err(e.into()),
        }
        let revoke = match (self.store.grant(&key).await, self.ports.get(&key.platform)) {
            (Ok(Some(grant)), Some(port)) => port.revoke(&grant).await,
            (_, None) => Ok(crate::RevokeOutcome::NotSupported),
            (_, Some(_)) => Err(crate::PortError::Unavailable {
                detail: "the connection's stored grant cannot be read, so it could not be revoked at the platform".into(),
                maybe_delivered: false,
            }),
        };
        let queue = self.queue(key.platform)?.clone();
        let posts_failed = crate::connection::CallResultExt::success_or_unavailable(
            queue
                .call(
                    |r| QueueMsg::Disconnected {
                        key: key.clone(),
                        reply: r,
                    },
                    None,
                )
                .await?,
        )??;
        let mut b = Batch::new();
        b.delete_connection(&key).delete_grant(&key).event(
            Event::new(self.clock.now(), key.clone(), EventKind::ConnectionStatus)
                .transition(None, Some(StateLabel::NotConnected))
                .reason(Some(Reason::new(ReasonCode::AccountDisconnected))),
        );
        self.health
            .commit(&self.store, b, Durability::Durable)
            .await?;
        Ok(DisconnectReport {
            revoke,
            posts_failed,
        })
    }

    async fn queue_failed(&mut self, platform: Platform, myself: &ActorCell) {
        tracing::error!(%platform, "platform queue failed; rebuilding it from storage");
        let Ok(queue) = self.spawn_queue(platform, myself).await else {
            return;
        };
        let connections: Vec<_> = self
            .connections
            .iter()
            .filter(|(k, _)| k.platform == platform)
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        for (key, actor) in &connections {
            let paused = self
                .store
                .connection(key)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status.reason().cloned());
            let _ = queue.cast(QueueMsg::Register {
                key: key.clone(),
                actor: Some(actor.clone()),
                paused,
                epoch: self.queue_fence(key),
            });
            let _ = actor.cast(ConnectionMsg::Rebind(queue.clone()));
        }
        let mine = |key: &ConnectionKey| key.platform == platform && self.held.contains_key(key);
        if let Err(e) = self.load_posts(mine).await {
            tracing::error!(%platform, error = %e, "cannot reload the rebuilt queue's posts");
        }
    }

    /// Hands each queue the waiting posts (Scheduled, Paused, Publishing) of the
    /// connections `mine` picks, as the store holds them; answers the queued posts that
    /// could not be read.
    async fn load_posts(
        &self,
        mine: impl Fn(&ConnectionKey) -> bool,
    ) -> Result<Vec<UnreadableRecord>, EngineError> {
        let posts = self.store.queued_posts().await?;
        let mut by_platform: HashMap<Platform, Vec<PostStatus>> = HashMap::new();
        for p in posts.items.into_iter().filter(|p| mine(&p.connection)) {
            by_platform
                .entry(p.connection.platform)
                .or_default()
                .push(p);
        }
        for (platform, posts) in by_platform {
            self.queue(platform)?.cast(QueueMsg::Load(posts))?;
        }
        Ok(posts.unreadable)
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let seed = args.config.jitter_seed.unwrap_or_else(rand::random);
        let boot = args.boot;
        // This node's leases first: a renewal (a new node holds nothing yet; it tells
        // whether leases run out at all), then the connections it should run.
        let node = args.config.node.clone();
        let lease = args.config.lease;
        let ownership = args.store.ownership();
        let renewal = ownership.renew(&node, lease).await?;
        let forever = renewal.valid_for == std::time::Duration::MAX;
        let (gate, ports) = if forever {
            (LeaseGate::forever(), args.ports)
        } else {
            let gate = LeaseGate::closed();
            gate.set(renewal.held_until(lease_margin(lease)));
            let ports = args
                .ports
                .into_iter()
                .map(|(p, port)| (p, LeasedPort::wrap(port, gate.clone())))
                .collect();
            (gate, ports)
        };
        // Every stored connection, read once: on a store one process owns for good each
        // is taken as it is read (no second scan); otherwise the node's share is
        // acquired first, then read.
        let (held, loaded) = if forever {
            let loaded = args.store.all_connections().await?;
            let mut held = HashMap::with_capacity(loaded.items.len());
            let keys = loaded.items.iter().map(|c| &c.key).chain(
                loaded
                    .unreadable
                    .iter()
                    .filter_map(|u| u.connection.as_ref()),
            );
            for key in keys {
                if let Some(epoch) = ownership.acquire_key(&node, lease, key).await? {
                    held.insert(key.clone(), epoch);
                }
            }
            (held, loaded)
        } else {
            let held: HashMap<_, _> = ownership.acquire(&node, lease).await?.into_iter().collect();
            tracing::info!(node = %node, connections = held.len(), lease_secs = lease.as_secs(), "this node's share of the connections");
            (held, args.store.all_connections().await?)
        };
        let mut state = SupervisorState {
            store: args.store,
            health: args.health,
            ports,
            clock: args.clock,
            config: args.config,
            queues: HashMap::new(),
            queue_ids: HashMap::new(),
            connections: HashMap::new(),
            connection_ids: HashMap::new(),
            restarts: HashMap::new(),
            restart_total: 0,
            seed,
            platform_limits: Platform::ALL
                .into_iter()
                .map(|p| (p, Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN))))
                .collect(),
            held,
            gate,
            forever,
            handing_over: HashMap::new(),
            renew_failing: false,
        };
        let cell = myself.get_cell();
        for platform in Platform::ALL {
            state.spawn_queue(platform, &cell).await?;
        }
        // Every connection this node holds, then their unfinished posts, from storage.
        boot.starting_connections(state.held.len() as u64);
        for record in loaded.items {
            if !state.held.contains_key(&record.key) {
                continue;
            }
            let key = record.key.clone();
            let paused = record.status.reason().cloned();
            let grant = match state.store.grant(&key).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(connection = %key, error = %e, "stored grant unreadable");
                    None
                }
            };
            let actor = state.spawn_connection(record, grant, &cell).await?;
            let paused = match (&actor, paused) {
                (None, _) => Some(not_configured()),
                (_, p) => p,
            };
            let epoch = state.queue_fence(&key);
            state.queue(key.platform)?.cast(QueueMsg::Register {
                key,
                actor,
                paused,
                epoch,
            })?;
            boot.connection_started();
        }
        // A connection whose record cannot be read has no actor, but its posts are kept:
        // they wait, paused with a reason, instead of being failed as disconnected.
        for unreadable in &loaded.unreadable {
            tracing::error!(record = %unreadable.key, problem = %unreadable.problem, "a connection record cannot be read; its posts wait");
            if let Some(key) = unreadable
                .connection
                .clone()
                .filter(|k| state.held.contains_key(k))
            {
                let reason = Reason::with_platform_message(
                    ReasonCode::RecordUnreadable,
                    unreadable.problem.clone(),
                );
                let epoch = state.queue_fence(&key);
                state.queue(key.platform)?.cast(QueueMsg::Register {
                    key,
                    actor: None,
                    paused: Some(reason),
                    epoch,
                })?;
            }
        }
        boot.loading_posts();
        let unreadable = state.load_posts(|key| state.held.contains_key(key)).await?;
        for e in &unreadable {
            tracing::error!(record = %e.key, problem = %e.problem, "a queued post cannot be read; it is named as unreadable and not sent");
        }
        if !state.forever {
            myself.send_after(state.config.lease / 3, || SupervisorMsg::LeaseTick);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = myself.get_cell();
        match msg {
            SupervisorMsg::Connect { request, reply } => {
                state.connect(*request, reply, &cell).await;
            }
            SupervisorMsg::Disconnect { key, reply } => {
                match state.ensure_connection(&key, &cell).await {
                    Ok(Some(actor)) => {
                        if let Err(ractor::MessagingErr::SendErr(ConnectionMsg::Disconnect(
                            reply,
                        ))) = actor.cast(ConnectionMsg::Disconnect(reply))
                        {
                            let _ = reply.send(Err(EngineError::Unavailable(
                                "the connection actor stopped".into(),
                            )));
                        }
                    }
                    Ok(None) => {
                        let r = state.disconnect_unreadable(key).await;
                        let _ = reply.send(r);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            SupervisorMsg::Status { key, reply } => match state.live_connection(&key) {
                Some(actor) => {
                    let actor = actor.clone();
                    let stored = state.stored_view();
                    // Answered off the supervisor's mailbox: a busy connection never
                    // holds up routing. A connection busy for longer than STATUS_WITHIN
                    // (a platform call that hangs) is answered from the store: the state
                    // it last made durable.
                    tokio::spawn(async move {
                        let asked = async { ractor::call!(actor, ConnectionMsg::Status) };
                        let r = match tokio::time::timeout(STATUS_WITHIN, asked).await {
                            Ok(answer) => answer.map(Some).map_err(EngineError::from),
                            Err(_) => stored.of(&key).await,
                        };
                        let _ = reply.send(r);
                    });
                }
                None => {
                    let _ = reply.send(state.view_from_store(&key).await);
                }
            },
            SupervisorMsg::Verify { key, reply } => match state.live_connection(&key) {
                Some(actor) => {
                    if let Err(ractor::MessagingErr::SendErr(ConnectionMsg::Verify(reply))) =
                        actor.cast(ConnectionMsg::Verify(reply))
                    {
                        let _ = reply.send(Err(EngineError::Unavailable(
                            "the connection actor stopped".into(),
                        )));
                    }
                }
                None => {
                    let r = match state.runs_here(&key).await {
                        Err(e) => Err(e),
                        Ok(()) => state.view_from_store(&key).await,
                    };
                    let r = match r {
                        Ok(Some(v)) => Err(EngineError::ConnectionNotActive {
                            status: v.connection.status.label(),
                            reason: v
                                .connection
                                .status
                                .reason()
                                .cloned()
                                .unwrap_or(Reason::new(ReasonCode::TooManyRestarts)),
                        }),
                        Ok(None) => Err(EngineError::NotConnected(key)),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(r);
                }
            },
            SupervisorMsg::ChooseTargets {
                key,
                targets,
                reply,
            } => match state.live_connection(&key) {
                Some(actor) => {
                    if let Err(ractor::MessagingErr::SendErr(ConnectionMsg::ChooseTargets {
                        reply,
                        ..
                    })) = actor.cast(ConnectionMsg::ChooseTargets { targets, reply })
                    {
                        let _ = reply.send(Err(EngineError::Unavailable(
                            "the connection actor stopped".into(),
                        )));
                    }
                }
                // No actor speaks for it (its record cannot be read, or the engine gave
                // up on it): refused as Verify refuses, nothing written.
                None => {
                    let r = match state.runs_here(&key).await {
                        Err(e) => Err(e),
                        Ok(()) => state.view_from_store(&key).await,
                    };
                    let r = match r {
                        Ok(Some(v)) => Err(EngineError::ConnectionNotActive {
                            status: v.connection.status.label(),
                            reason: v
                                .connection
                                .status
                                .reason()
                                .cloned()
                                .unwrap_or(Reason::new(ReasonCode::TooManyRestarts)),
                        }),
                        Ok(None) => Err(EngineError::NotConnected(key)),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(r);
                }
            },
            SupervisorMsg::Schedule { post, reply } => {
                if let Err(e) = state.runs_here(&post.connection).await {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                match state.queue(post.connection.platform) {
                    Ok(q) => forward(q, QueueMsg::Schedule { post, reply }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            SupervisorMsg::Update { post, reply } => {
                let existing = match state.owned_post(&post.connection.pen_name, post.id).await {
                    Ok(existing) => state
                        .runs_here(&existing.connection)
                        .await
                        .map(|()| existing),
                    Err(e) => Err(e),
                };
                match existing {
                    Ok(existing) => match state.queue(existing.connection.platform) {
                        Ok(q) => forward(q, QueueMsg::Update { post, reply }),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    },
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            SupervisorMsg::Cancel { pen, id, reply } => {
                route_post(state, &pen, id, reply, |id, reply| QueueMsg::Cancel {
                    id,
                    reply,
                })
                .await
            }
            SupervisorMsg::Retry { pen, id, reply } => {
                route_post(state, &pen, id, reply, |id, reply| QueueMsg::Retry {
                    id,
                    reply,
                })
                .await
            }
            SupervisorMsg::Resolve {
                pen,
                id,
                published,
                reply,
            } => {
                route_post(state, &pen, id, reply, move |id, reply| QueueMsg::Resolve {
                    id,
                    published,
                    reply,
                })
                .await
            }
            SupervisorMsg::LeaseTick => {
                state.lease_tick(&cell).await;
                myself.send_after(state.config.lease / 3, || SupervisorMsg::LeaseTick);
            }
            SupervisorMsg::Tree(reply) => {
                let mut report = TreeReport {
                    restarts: state.restart_total,
                    unreadable: state.store.unreadable(),
                    node: Some(state.node()),
                    running_here: state.connections.len(),
                    owners: state.store.ownership().owners().await.unwrap_or_default(),
                    ..TreeReport::default()
                };
                // Counted by the store as statuses change: constant time at any size.
                if let Ok(counts) = state.store.connection_counts().await {
                    report.connections_active = counts.active as usize;
                    report.connections_expired = counts.expired as usize;
                    report.connections_error = counts.error as usize;
                }
                let queues: Vec<_> = state.queues.iter().map(|(p, q)| (*p, q.clone())).collect();
                tokio::spawn(async move {
                    for (p, q) in queues {
                        if let Ok(s) = ractor::call!(q, QueueMsg::Stats) {
                            report.queues.push((p, s));
                        }
                    }
                    report.queues.sort_by_key(|(p, _)| p.id());
                    let _ = reply.send(report);
                });
            }
            SupervisorMsg::Shutdown(reply) => {
                // Stop dispatching, let connections finish what they hold (their outcomes
                // still reach the queues), then let the queues record them.
                for q in state.queues.values() {
                    // Waited for, so no queue hands a post to a connection after the
                    // connections start draining.
                    let _ = ractor::call!(q, QueueMsg::Freeze);
                }
                let conns: Vec<_> = state.connections.values().cloned().collect();
                state.connections.clear();
                for c in &conns {
                    let _ = c.drain();
                }
                for c in conns {
                    let _ = c.wait(None).await;
                }
                let queues: Vec<_> = state.queues.drain().map(|(_, q)| q).collect();
                for q in queues {
                    let _ = q.drain_and_wait(None).await;
                }
                if let Err(e) = state.store.sync().await {
                    tracing::error!(error = %e, "final flush failed");
                }
                // Every connection's work has stopped: hand them all over now rather than
                // let the other nodes wait for the leases to lapse.
                if let Err(e) = state.store.ownership().release_all(&state.node()).await {
                    tracing::warn!(error = %e, "could not hand this node's connections over; they move when its leases lapse");
                }
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Never stop because a child died: restart it from storage instead.
        let cell = myself.get_cell();
        match evt {
            SupervisionEvent::ActorFailed(child, err) => {
                let id = child.get_id();
                if let Some(key) = state.connection_ids.remove(&id) {
                    tracing::error!(connection = %key, error = %err, "connection actor failed");
                    if state
                        .connections
                        .get(&key)
                        .is_some_and(|a| a.get_id() == id)
                    {
                        state.connection_failed(key, &cell).await;
                    }
                } else if let Some(platform) = state.queue_ids.remove(&id) {
                    if state
                        .queues
                        .get(&platform)
                        .is_some_and(|q| q.get_id() == id)
                    {
                        state.queue_failed(platform, &cell).await;
                    }
                }
            }
            SupervisionEvent::ActorTerminated(child, _, reason) => {
                let id = child.get_id();
                if let Some(key) = state.handing_over.remove(&id) {
                    state.handed_over(key).await;
                    return Ok(());
                }
                if reason.as_deref() == Some(DISCONNECTED) && !state.forever {
                    // Its connection is gone: the lease goes back with it.
                    if let Some(key) = state.connection_ids.get(&id).cloned() {
                        state.held.remove(&key);
                        let node = state.node();
                        let _ = state.store.ownership().release(&node, &[key]).await;
                    }
                }
                if let Some(key) = state.connection_ids.remove(&id) {
                    if state
                        .connections
                        .get(&key)
                        .is_some_and(|a| a.get_id() == id)
                    {
                        state.connections.remove(&key);
                    }
                }
                state.queue_ids.remove(&id);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Why a connection's posts wait when its platform has no adapter on this node.
fn not_configured() -> Reason {
    Reason::with_platform_message(
        ReasonCode::AppCredentialsRejected,
        "this platform is not configured",
    )
}

fn forward(q: &ActorRef<QueueMsg>, msg: QueueMsg) {
    if let Err(ractor::MessagingErr::SendErr(msg)) = q.cast(msg) {
        let err = || {
            Err(EngineError::Unavailable(
                "the platform queue stopped".into(),
            ))
        };
        match msg {
            QueueMsg::Schedule { reply, .. }
            | QueueMsg::Cancel { reply, .. }
            | QueueMsg::Retry { reply, .. }
            | QueueMsg::Resolve { reply, .. }
            | QueueMsg::Update { reply, .. } => {
                let _ = reply.send(err());
            }
            _ => {}
        }
    }
}

async fn route_post(
    state: &SupervisorState,
    pen: &PenName,
    id: PostId,
    reply: Reply<Post>,
    make: impl FnOnce(PostId, Reply<Post>) -> QueueMsg,
) {
    let post = match state.owned_post(pen, id).await {
        Ok(p) => state.runs_here(&p.connection).await.map(|()| p),
        Err(e) => Err(e),
    };
    match post.and_then(|p| state.queue(p.connection.platform).cloned()) {
        Ok(q) => forward(&q, make(id, reply)),
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

#[cfg(test)]
mod tests;
