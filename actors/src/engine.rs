//! `Engine`: the handle an embedding application (or the service) holds. It starts the
//! supervisor and turns its messages into plain async methods.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorRef};
use social_studio_storage::{
    Account, Connection, ConnectionKey, Event, Grant, PenName, Post, PostId, SharedStore, Target,
};
use tokio::sync::broadcast;

use crate::messages::{ConnectionView, DisconnectReport};
use crate::relay::{self, Command};
use crate::supervisor::{ConnectRequest, Supervisor, SupervisorArgs, SupervisorMsg, TreeReport};
use crate::{BootProgress, Clock, EngineConfig, EngineError, PlatformPort};

/// A running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    supervisor: ActorRef<SupervisorMsg>,
    store: SharedStore,
    ports: Arc<HashMap<social_studio_storage::Platform, Arc<dyn PlatformPort>>>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    health: crate::StoreHealth,
    join: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// The loop answering commands other nodes send for this node's connections.
    commands: Arc<std::sync::Mutex<Option<tokio::task::AbortHandle>>>,
}

impl Engine {
    /// Boots from `store`: every connection and unfinished post is rebuilt before this
    /// returns.
    pub async fn start(
        store: SharedStore,
        ports: Vec<Arc<dyn PlatformPort>>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        Engine::start_reporting(store, ports, clock, config, BootProgress::new()).await
    }

    /// [`Engine::start`], reporting how far the start has come into `boot` as it goes —
    /// the connections started of how many, then the posts — and [`BootPhase::Ready`]
    /// once every actor is live, just before this returns. Whoever holds a clone of `boot`
    /// reads it meanwhile without waiting for the engine (a readiness probe, a progress
    /// log).
    ///
    /// [`BootPhase::Ready`]: crate::BootPhase::Ready
    pub async fn start_reporting(
        store: SharedStore,
        ports: Vec<Arc<dyn PlatformPort>>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        boot: BootProgress,
    ) -> Result<Engine, EngineError> {
        let ports: HashMap<_, _> = ports.into_iter().map(|p| (p.platform(), p)).collect();
        let config = Arc::new(config);
        let health = crate::StoreHealth::new(clock.clone());
        let args = SupervisorArgs {
            store: store.clone(),
            health: health.clone(),
            ports: ports.clone(),
            clock: clock.clone(),
            config: config.clone(),
            boot: boot.clone(),
        };
        let (supervisor, join) = Actor::spawn(None, Supervisor, args)
            .await
            .map_err(|e| EngineError::Unavailable(format!("the supervisor did not start: {e}")))?;
        boot.finished();
        let node = config.node.clone();
        let engine = Engine {
            supervisor,
            store,
            ports: Arc::new(ports),
            clock,
            config,
            health,
            join: Arc::new(tokio::sync::Mutex::new(Some(join))),
            commands: Arc::new(std::sync::Mutex::new(None)),
        };
        if engine.store.commands().is_some() {
            let serving = tokio::spawn(crate::relay::serve(engine.clone(), node));
            *engine.commands_slot() = Some(serving.abort_handle());
        }
        Ok(engine)
    }

    fn commands_slot(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::AbortHandle>> {
        self.commands.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects (or reconnects) an account. A reconnect that brings another account than
    /// the one connected is refused with `wrong_account` unless `replace`. On a store
    /// several nodes share, a connection another node runs is reconnected by that node
    /// (the request is carried to it through the store).
    pub async fn connect(
        &self,
        key: ConnectionKey,
        account: Account,
        targets: Vec<Target>,
        grant: Grant,
        replace: bool,
    ) -> Result<ConnectionView, EngineError> {
        let here = self
            .connect_here(
                key,
                account.clone(),
                targets.clone(),
                grant.clone(),
                replace,
            )
            .await;
        let command = || Command::Connect {
            account,
            targets,
            grant,
            replace,
        };
        self.here_or_owner(here, command, |a, engine| a.into_view(engine))
            .await
    }

    /// What this node answered, or — refused because another node runs the connection —
    /// `command` carried to that node through the store, its answer read with `read`.
    async fn here_or_owner<T>(
        &self,
        here: Result<T, EngineError>,
        command: impl FnOnce() -> Command,
        read: impl FnOnce(relay::Answer, &Engine) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match here {
            Err(EngineError::NotOwnerHere { key, owner }) => {
                read(relay::send(&self.store, key, owner, command()).await?, self)
            }
            other => other,
        }
    }

    /// Revokes at the platform where possible, fails the scheduled posts with
    /// `account_disconnected`, and erases the connection and its grant (on the node
    /// that runs it).
    pub async fn disconnect(&self, key: ConnectionKey) -> Result<DisconnectReport, EngineError> {
        let here = self.disconnect_here(key).await;
        self.here_or_owner(here, || Command::Disconnect, |a, _| a.into_report())
            .await
    }

    pub async fn verify(&self, key: ConnectionKey) -> Result<ConnectionView, EngineError> {
        let here = self.verify_here(key).await;
        self.here_or_owner(here, || Command::Verify, |a, engine| a.into_view(engine))
            .await
    }

    /// Chooses the targets a post naming none goes to (ids the caller checked against the
    /// connection's listed targets), with a `TargetsChosen` event when the choice changes.
    pub async fn choose_targets(
        &self,
        key: ConnectionKey,
        targets: Vec<String>,
    ) -> Result<ConnectionView, EngineError> {
        let here = self.choose_targets_here(key, targets.clone()).await;
        self.here_or_owner(
            here,
            || Command::ChooseTargets { targets },
            |a, engine| a.into_view(engine),
        )
        .await
    }

    /// Schedules a post (already validated for its platform by the caller). It is Paused at
    /// once if its connection is not Active. A post whose id is already stored is answered
    /// as it is, unchanged: scheduling the same post twice creates it once.
    pub async fn schedule(&self, post: Post) -> Result<Post, EngineError> {
        let here = self.schedule_here(post.clone()).await;
        self.here_or_owner(here, || Command::Schedule { post }, |a, _| a.into_post())
            .await
    }

    pub async fn update(&self, post: Post) -> Result<Post, EngineError> {
        let here = self.update_here(post.clone()).await;
        self.here_or_owner(here, || Command::Update { post }, |a, _| a.into_post())
            .await
    }

    pub async fn cancel(&self, pen: PenName, id: PostId) -> Result<Post, EngineError> {
        let here = self.cancel_here(pen, id).await;
        self.here_or_owner(here, || Command::Cancel { id }, |a, _| a.into_post())
            .await
    }

    pub async fn retry(&self, pen: PenName, id: PostId) -> Result<Post, EngineError> {
        let here = self.retry_here(pen, id).await;
        self.here_or_owner(here, || Command::Retry { id }, |a, _| a.into_post())
            .await
    }

    /// A person says whether an Unconfirmed post reached the platform; `false` sends it
    /// again.
    pub async fn resolve(
        &self,
        pen: PenName,
        id: PostId,
        published: bool,
    ) -> Result<Post, EngineError> {
        let here = self.resolve_here(pen, id, published).await;
        self.here_or_owner(
            here,
            || Command::Resolve { id, published },
            |a, _| a.into_post(),
        )
        .await
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Every event from now on (connection status, post state, expiring soon, recovered),
    /// once durable, in sequence order: the store's own feed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.store.subscribe()
    }

    /// How a stored connection stands now, without asking its actor: any node that can
    /// read the store can answer.
    pub fn view(&self, connection: Connection) -> ConnectionView {
        let port = self.ports.get(&connection.key.platform).map(|p| &**p);
        ConnectionView::of(
            connection,
            port,
            self.clock.now(),
            self.config.expiring_soon_warning,
        )
    }

    /// [`Engine::connect`] on this node only: `NotOwnerHere` when another node runs the
    /// connection. So are the other `…_here` methods: what a command from another node
    /// is carried out with.
    pub(crate) async fn connect_here(
        &self,
        key: ConnectionKey,
        account: Account,
        targets: Vec<Target>,
        grant: Grant,
        replace: bool,
    ) -> Result<ConnectionView, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Connect {
            request: Box::new(ConnectRequest {
                key,
                account,
                targets,
                grant,
                replace
            }),
            reply
        })?
    }

    pub(crate) async fn disconnect_here(
        &self,
        key: ConnectionKey,
    ) -> Result<DisconnectReport, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Disconnect {
            key,
            reply
        })?
    }

    /// The connection's view, or `None` when not connected.
    pub async fn status(&self, key: ConnectionKey) -> Result<Option<ConnectionView>, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Status {
            key,
            reply
        })?
    }

    pub(crate) async fn verify_here(
        &self,
        key: ConnectionKey,
    ) -> Result<ConnectionView, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Verify {
            key,
            reply
        })?
    }

    pub(crate) async fn choose_targets_here(
        &self,
        key: ConnectionKey,
        targets: Vec<String>,
    ) -> Result<ConnectionView, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::ChooseTargets {
            key,
            targets,
            reply
        })?
    }

    pub(crate) async fn schedule_here(&self, post: Post) -> Result<Post, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Schedule {
            post: Box::new(post),
            reply
        })?
    }

    pub(crate) async fn update_here(&self, post: Post) -> Result<Post, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Update {
            post: Box::new(post),
            reply
        })?
    }

    pub(crate) async fn cancel_here(&self, pen: PenName, id: PostId) -> Result<Post, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Cancel {
            pen,
            id,
            reply
        })?
    }

    pub(crate) async fn retry_here(&self, pen: PenName, id: PostId) -> Result<Post, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Retry {
            pen,
            id,
            reply
        })?
    }

    pub(crate) async fn resolve_here(
        &self,
        pen: PenName,
        id: PostId,
        published: bool,
    ) -> Result<Post, EngineError> {
        ractor::call!(self.supervisor, |reply| SupervisorMsg::Resolve {
            pen,
            id,
            published,
            reply
        })?
    }

    /// Whether the supervisor is running, read from the actor's own status without sending
    /// it a message: a readiness probe, which anyone may call, never queues in front of
    /// the commands the supervisor routes.
    pub fn is_running(&self) -> bool {
        matches!(self.supervisor.get_status(), ractor::ActorStatus::Running)
    }

    /// Whether the store takes the actors' writes, read from the flag every actor's
    /// commit sets, without a message: see [`crate::StoreHealth`].
    pub fn store_health(&self) -> &crate::StoreHealth {
        &self.health
    }

    pub async fn tree(&self) -> Result<TreeReport, EngineError> {
        Ok(ractor::call!(self.supervisor, SupervisorMsg::Tree)?)
    }

    /// Stops dispatching, lets every actor finish what its mailbox holds, flushes, stops.
    pub async fn shutdown(&self) {
        if let Some(serving) = self.commands_slot().take() {
            serving.abort();
        }
        let _ = ractor::call!(self.supervisor, SupervisorMsg::Shutdown);
        if let Some(join) = self.join.lock().await.take() {
            let _ = join.await;
        }
    }
}
