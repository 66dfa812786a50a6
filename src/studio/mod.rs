//! `Studio`: the engine as an embedding application (and the HTTP API) uses it.
//!
//! Opened from a [`Config`], it opens the store, builds an adapter for every configured
//! platform, starts the supervisor, and offers everything the product needs: each pen
//! name's connections with status, reason and remedy; the OAuth connect flow (state,
//! PKCE, callback); verify (with an optional test post); disconnect with a dry run;
//! scheduling validated for every platform a request names; post edits, cancel, retry
//! and resolve; the attention list; the event stream; and graceful shutdown.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | `Studio`: opening, connections, the connect flows, disconnect, attention, erasure |
//! | `new_post.rs` | [`PostRequest`] as sent, parsed once into a validated [`NewPost`] |
//! | `posts.rs` | scheduling, listing, editing, cancel, retry, resolve, verify |
//! | `store_choice.rs` | the store opened: sled in the data directory, or PostgreSQL, and what each asks for |
//! | `admin_tokens.rs` | the admin tokens accepted (current and previous), reloaded while serving |
//! | `error.rs` | one error type per use case, each with its code, remedy and reason |
//! | `views.rs` | what the engine shows: typed views, serialised as the API writes them |
//! | `schema.rs` | OpenAPI schemas for the storage types the views show |

mod admin_tokens;
pub(crate) mod error;
mod new_post;
mod page_links;
mod posts;
pub mod schema;
mod store_choice;
mod targets;
mod upkeep;
pub mod views;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore;
use social_studio_actors::{Clock, Engine, EngineConfig, PlatformPort, SystemClock, TreeReport};
use social_studio_storage::{
    Batch, Connection, ConnectionKey, ConnectionStatus, Durability, Event, EventPage, KeySource,
    MasterKeys, PenName, PendingAuthorization, Platform, Secret, SharedStore, StateLabel,
    StateLookup, StatePurpose, StoreError, StoreInfo, Timestamp, UnreadableRecord,
};
use tokio::sync::broadcast;

pub use error::{
    AddressError, ConnectingError, ConnectionError, DisconnectPreview, EngineRefusal, EraseError,
    ErasurePreview, FieldError, PlatformRefusal, PostError,
};
pub use new_post::{MediaInput, NewPost, PlatformTarget, PostRequest};
pub use posts::{PostList, PostPatch};
pub use social_studio_actors::{BootPhase, BootProgress, BootState};
pub use store_choice::StoreRefusal;
pub use targets::TargetsError;
pub use upkeep::{Purged, RETENTION_EVERY};
use views::{
    AttentionItem, AuthorizeStart, ConnectionEntry, ConnectionErased, ConnectionState,
    DisconnectView, ErasureReport, EventView, ReasonView, RevokeOutcome, UnreadableView,
};

use crate::config::Config;
use crate::platforms::bluesky::BlueskySettings;
pub use crate::platforms::outbound::HttpClientBuilder;
use crate::platforms::outbound::{MediaBudget, Outbound, PlatformCallMetrics};
use crate::platforms::{
    Adapter, BlueskyAdapter, ConnectError, Connected, FacebookAdapter, InstagramAdapter,
    LinkedinAdapter, PinterestAdapter, ThreadsAdapter, TiktokAdapter, XAdapter, YoutubeAdapter,
};

/// File in the data directory holding the generated admin token.
/// The admin token file in the data directory: the current token on the first line,
/// tokens still accepted during a rotation on the lines after it.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

pub use admin_tokens::{rotate_token_file, AdminTokens, TokenFileRotation};
pub use page_links::{PageLink, PageLinkError};

/// A connect that did not finish, and the connection it was for once the `state` said.
#[derive(Debug)]
pub struct ConnectFailure {
    pub connection: Option<ConnectionKey>,
    pub error: ConnectingError,
    /// The Social Accounts page to bring a browser back to, when the connect began there
    /// (the `state` said so).
    pub return_to: Option<String>,
}

/// A connect that finished: whose, the connection as it now stands, and the Social
/// Accounts page to bring the browser back to when the connect began there.
#[derive(Debug)]
pub struct ConnectFinished {
    pub pen_name: PenName,
    pub entry: ConnectionEntry,
    pub return_to: Option<String>,
}

/// What `/readyz` answers from: see [`Studio::readiness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The supervisor is running and no shutdown has begun.
    pub running: bool,
    /// Stored records that cannot be read: counted, never a reason to be unready.
    pub unreadable_records: usize,
    /// The store refuses the engine's writes (the last commit an actor made failed): a
    /// reason to be unready, `storage_failing`.
    pub storage_failing: bool,
}

/// How the service came up, for the operator (printed once by the binary).
#[derive(Debug, Clone)]
pub struct StartupNotes {
    /// The file the admin token was generated into just now, when it was: where to read
    /// it (the token itself is never printed — a service's output is its log).
    pub generated_admin_token_file: Option<PathBuf>,
    pub key_source: KeySource,
    /// Platforms without an adapter or credentials (they report `not_configured`).
    pub not_configured: Vec<Platform>,
    /// The store, and what opening it did (an upgrade of an older data directory, a
    /// replayed journal, a finished erasure).
    pub store: StoreInfo,
}

/// Options that are not configuration: what the binary or a test decides.
#[derive(Clone, Default)]
pub struct StudioOptions {
    /// Wall-clock source; the system clock when `None`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Overrides of the engine's timing (tests).
    pub engine: Option<EngineConfig>,
    /// Capacity of the store's event feed (a subscriber that falls further behind lags
    /// and replays from the store); the store's default when `None`.
    pub event_capacity: Option<usize>,
    /// Wraps the store before the engine and `Studio` use it — instrumentation, or in
    /// tests a store that fails on command; the store as opened when `None`.
    pub store_layer: Option<StoreLayer>,
    /// The master keys from the host's own secret store: the current key, and during a
    /// rotation the previous ones ([`MasterKeys::with_previous`]). When given, neither
    /// `SOCIAL_STUDIO_MASTER_KEY`, `SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS` nor a key file is
    /// read, and no key file is created; the store checks the key against its data as it
    /// does any other ([`VaultError::WrongMasterKey`](social_studio_storage::VaultError::WrongMasterKey)
    /// when it is not the one the data was sealed with), and
    /// [`StartupNotes::key_source`] says [`KeySource::Provided`]. The keys are wiped from
    /// memory when dropped and never printed. From the environment or the key file when
    /// `None`.
    pub master_keys: Option<MasterKeys>,
    /// Where [`Studio::open`] reports how far the start has come — opening the store,
    /// then connections started of how many, then the posts — for a server that answers
    /// probes while it runs ([`crate::http::Booting`]); a progress of its own when
    /// `None`. Either way the start logs its progress every few seconds and its duration
    /// when done.
    pub boot_progress: Option<BootProgress>,
    /// The host's reqwest setup for every platform call (proxy, TLS roots, resolver,
    /// default headers, local address), as a builder factory; the engine still sets its
    /// redirect policy (none), timeouts and user agent on top — see
    /// [`HttpClientBuilder`] for what is whose. reqwest's defaults when `None`.
    pub http_client: Option<HttpClientBuilder>,
}

/// A wrapper around the store port ([`StudioOptions::store_layer`]).
pub type StoreLayer = Arc<dyn Fn(SharedStore) -> SharedStore + Send + Sync>;

/// The engine, opened. Cheap to clone.
#[derive(Clone)]
pub struct Studio {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: SharedStore,
    engine: Engine,
    adapters: HashMap<Platform, Arc<dyn Adapter>>,
    clock: Arc<dyn Clock>,
    /// Swapped whole by [`Studio::reload_admin_tokens`].
    admin_tokens: std::sync::RwLock<Arc<AdminTokens>>,
    notes: StartupNotes,
    /// The background upkeep ([`upkeep::housekeeping`], [`upkeep::retention`]), stopped
    /// with the studio.
    upkeep: tokio::task::AbortHandle,
    /// Set when shutdown begins: from then on the studio is not ready, and every event
    /// stream of every router built on it ends.
    closing: tokio::sync::watch::Sender<bool>,
    /// The memory every adapter holds fetched media against (`media_memory_bytes`).
    media: MediaBudget,
    /// Every adapter's calls to its platform, counted: `/metrics` renders them.
    platform_calls: PlatformCallMetrics,
    /// Signs the Social Accounts page's cookies ([`Studio::page_key`]).
    page_key: [u8; 32],
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

/// How often a start that is still running says how far it has come.
pub const BOOT_PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

/// Logs the start's progress every [`BOOT_PROGRESS_LOG_EVERY`] until it is ready — at a
/// million connections a start takes over a minute, and an operator watching the log
/// should see it move.
async fn log_boot_progress(boot: BootProgress) {
    let mut every = tokio::time::interval(BOOT_PROGRESS_LOG_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: nothing to say yet.
    every.tick().await;
    loop {
        tokio::select! {
            () = boot.ready() => return,
            _ = every.tick() => {}
        }
        let state = boot.state();
        match (state.phase, state.total) {
            (BootPhase::StartingConnections, Some(total)) => tracing::info!(
                phase = %state.phase,
                loaded = state.loaded,
                total,
                "boot: {} of {total} connections started",
                state.loaded
            ),
            (BootPhase::LoadingPosts, total) => tracing::info!(
                phase = %state.phase,
                loaded = state.loaded,
                total,
                "boot: {} connections started; loading the unfinished posts",
                state.loaded
            ),
            (phase, _) => tracing::info!(
                phase = %phase,
                "boot: opening the store ({:.0?} so far)",
                state.elapsed
            ),
        }
    }
}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// An adapter for each platform that has settings and an implementation.
fn build_adapters(
    config: &Config,
    clock: &Arc<dyn Clock>,
    media: &MediaBudget,
    outbound: &Outbound,
) -> HashMap<Platform, Arc<dyn Adapter>> {
    let mut adapters: HashMap<Platform, Arc<dyn Adapter>> = HashMap::new();
    for platform in Platform::ALL {
        let Some(settings) = config.platform_settings(platform) else {
            continue;
        };
        let built: Result<Arc<dyn Adapter>, crate::platforms::SettingsError> = match platform {
            Platform::X => XAdapter::new_with(&settings, outbound).map(|a| {
                Arc::new(a.with_clock(clock.clone()).with_media_budget(media.clone())) as _
            }),
            Platform::Linkedin => LinkedinAdapter::new_with(&settings, outbound).map(|a| {
                Arc::new(a.with_clock(clock.clone()).with_media_budget(media.clone())) as _
            }),
            Platform::Pinterest => PinterestAdapter::new_with(&settings, outbound)
                .map(|a| Arc::new(a.with_clock(clock.clone())) as _),
            Platform::Tiktok => TiktokAdapter::new_with(&settings, outbound).map(|a| {
                Arc::new(a.with_clock(clock.clone()).with_media_budget(media.clone())) as _
            }),
            Platform::Facebook => FacebookAdapter::new_with(&settings, outbound)
                .map(|a| Arc::new(a.with_clock(clock.clone())) as _),
            Platform::Instagram => InstagramAdapter::new_with(&settings, outbound)
                .map(|a| Arc::new(a.with_clock(clock.clone())) as _),
            Platform::Threads => ThreadsAdapter::new_with(&settings, outbound)
                .map(|a| Arc::new(a.with_clock(clock.clone())) as _),
            Platform::Youtube => YoutubeAdapter::new_with(&settings, outbound).map(|a| {
                Arc::new(a.with_clock(clock.clone()).with_media_budget(media.clone())) as _
            }),
            Platform::Bluesky => BlueskyAdapter::new_with(
                &BlueskySettings {
                    service: settings.api_base.clone(),
                    plc_directory: config.bluesky_plc_directory(),
                    allow_private_media_urls: config.allow_private_media_urls,
                },
                outbound,
            )
            .map(|a| Arc::new(a.with_clock(clock.clone()).with_media_budget(media.clone())) as _),
        };
        match built {
            Ok(adapter) => {
                adapters.insert(platform, adapter);
            }
            Err(e) => {
                tracing::error!(%platform, error = %e, "the platform's settings are unusable")
            }
        }
    }
    adapters
}

impl Studio {
    /// Opens the store in `config.data_dir`, starts every actor, and rebuilds every
    /// connection and unfinished post — reporting how far it has come into
    /// [`StudioOptions::boot_progress`], and logging it every
    /// [`BOOT_PROGRESS_LOG_EVERY`] until it is done.
    pub async fn open(config: Config, options: StudioOptions) -> Result<Studio, EngineRefusal> {
        let boot = options.boot_progress.clone().unwrap_or_default();
        // Stopped when the start ends, whether it succeeded or not.
        let _progress_log = AbortOnDrop(tokio::spawn(log_boot_progress(boot.clone())));
        let clock = options
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock));
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            EngineRefusal::Unavailable(format!("data directory {}: {e}", config.data_dir.display()))
        })?;
        let (store, source, keys) = store_choice::open(&config, &options).await?;
        let page_key = page_links::derive_page_key(&keys.current);
        drop(keys);
        let store = match &options.store_layer {
            Some(layer) => layer(store),
            None => store,
        };
        let admin_tokens::Loaded {
            tokens: admin_tokens,
            generated,
        } = admin_tokens::load(&config, true)?;
        // One budget for every adapter that fetches media to upload it.
        let media = MediaBudget::new(config.media_memory_bytes);
        // One count of platform calls, and the host's client settings, for every adapter.
        let platform_calls = PlatformCallMetrics::new();
        let outbound = Outbound::new(
            options.http_client.clone().unwrap_or_default(),
            platform_calls.clone(),
        );
        let adapters = build_adapters(&config, &clock, &media, &outbound);
        let ports: Vec<Arc<dyn PlatformPort>> = adapters
            .values()
            .map(|a| a.clone() as Arc<dyn PlatformPort>)
            .collect();
        let mut engine_config = options.engine.clone().unwrap_or_default();
        if options.engine.is_none() {
            engine_config.expiring_soon_warning =
                Duration::from_secs(u64::from(config.expiring_soon_days) * 86_400);
            engine_config.lateness_window = config.lateness_window_secs.map(Duration::from_secs);
            engine_config.publish_concurrency = config.publish_concurrency;
            engine_config.node = config.store.node();
            engine_config.lease = Duration::from_secs(u64::from(config.store.lease_secs));
        }
        let engine = Engine::start_reporting(
            store.clone(),
            ports,
            clock.clone(),
            engine_config,
            boot.clone(),
        )
        .await?;
        let not_configured = Platform::ALL
            .into_iter()
            .filter(|p| !adapters.contains_key(p))
            .collect();
        let notes = StartupNotes {
            generated_admin_token_file: generated.then(|| config.data_dir.join(ADMIN_TOKEN_FILE)),
            key_source: source,
            not_configured,
            store: store.info(),
        };
        let upkeep = tokio::spawn({
            let oauth_states = upkeep::housekeeping(
                Arc::downgrade(&store),
                clock.clone(),
                config.oauth_state_ttl,
            );
            let retention =
                upkeep::retention(Arc::downgrade(&store), clock.clone(), config.retention);
            async move { tokio::join!(oauth_states, retention) }
        })
        .abort_handle();
        let booted = boot.state();
        tracing::info!(
            connections = booted.loaded,
            took_ms = booted.elapsed.as_millis() as u64,
            "boot: ready in {:.1?}: {} connections started",
            booted.elapsed,
            booted.loaded
        );
        Ok(Studio {
            inner: Arc::new(Inner {
                config,
                store,
                engine,
                adapters,
                clock,
                admin_tokens: std::sync::RwLock::new(Arc::new(admin_tokens)),
                notes,
                upkeep,
                closing: tokio::sync::watch::channel(false).0,
                media,
                platform_calls,
                page_key,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn startup_notes(&self) -> &StartupNotes {
        &self.inner.notes
    }

    /// The admin token clients should use (the current one of [`Studio::admin_tokens`]).
    pub fn admin_token(&self) -> Secret {
        self.admin_tokens().current().clone()
    }

    /// Every admin token the HTTP API accepts now: the current one and, during a
    /// rotation, the previous ones.
    pub fn admin_tokens(&self) -> Arc<AdminTokens> {
        self.inner
            .admin_tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the admin tokens again from `config` (`admin_token`, `previous_admin_tokens`)
    /// and the token file, and accepts those from now on, without a restart. Nothing else
    /// of `config` is applied. A missing or empty token file is refused and the tokens
    /// stay as they were.
    pub fn reload_admin_tokens(&self, config: &Config) -> Result<Arc<AdminTokens>, EngineRefusal> {
        let tokens = Arc::new(admin_tokens::load(config, false)?.tokens);
        *self
            .inner
            .admin_tokens
            .write()
            .unwrap_or_else(|e| e.into_inner()) = tokens.clone();
        tracing::info!(
            previous = tokens.previous().len(),
            "admin tokens reloaded: the current token and {} previous ones are accepted",
            tokens.previous().len()
        );
        Ok(tokens)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.inner.config.data_dir.clone()
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn adapter(&self, platform: Platform) -> Result<&Arc<dyn Adapter>, ConnectingError> {
        self.inner
            .adapters
            .get(&platform)
            .ok_or(ConnectingError::PlatformNotConfigured(platform))
    }

    pub fn is_configured(&self, platform: Platform) -> bool {
        self.inner.adapters.contains_key(&platform)
    }

    /// Parses path segments the way every entry point must: a bad pen name is a named
    /// error, an unknown platform is "not found".
    pub fn parse_key(pen: &str, platform: &str) -> Result<ConnectionKey, AddressError> {
        let pen = PenName::parse(pen)?;
        let platform = Platform::from_id(platform)
            .ok_or_else(|| AddressError::UnknownPlatform(platform.to_string()))?;
        Ok(ConnectionKey::new(pen, platform))
    }

    // ---- connections ----

    /// One platform's entry, from the store alone: the connection record (which keeps its
    /// grant's facts beside its status) and its post counts, both constant-time reads —
    /// no actor is asked and no token is unsealed.
    async fn entry(&self, key: &ConnectionKey) -> Result<ConnectionEntry, EngineRefusal> {
        match self.inner.store.connection(key).await {
            Ok(Some(c)) => self.entry_of(c).await,
            Ok(None) => Ok(ConnectionEntry::not_connected(
                key.platform,
                self.is_configured(key.platform),
            )),
            Err(StoreError::Codec(e)) => Ok(ConnectionEntry::unreadable(
                key.platform,
                &e.problem.to_string(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn entry_of(&self, c: Connection) -> Result<ConnectionEntry, EngineRefusal> {
        let counts = self.inner.store.post_counts(&c.key).await?;
        let view = self.inner.engine.view(c);
        let c = view.connection;
        let (status, reason) = match &c.status {
            ConnectionStatus::Active => (ConnectionState::Active, None),
            ConnectionStatus::Expired(r) => (ConnectionState::Expired, Some(ReasonView::from(r))),
            ConnectionStatus::Error(r) => (ConnectionState::Error, Some(ReasonView::from(r))),
        };
        let chosen_targets = c.chosen().into_iter().map(|t| t.id.clone()).collect();
        Ok(ConnectionEntry {
            platform: c.key.platform,
            status,
            reason,
            account: Some(c.account),
            chosen_targets,
            targets: c.targets,
            expires_at: view.expires_at,
            expiring_soon: view.expiring_soon,
            renewable: view.renewable,
            scheduled: counts.scheduled as usize,
            paused: counts.paused as usize,
        })
    }

    /// One entry per platform, in platform order. A pen name nobody has used has every
    /// platform `not_connected` (or `not_configured`); a connection whose record cannot be
    /// read is `error` with `record_unreadable`.
    pub async fn connections(
        &self,
        pen: &PenName,
    ) -> Result<Vec<ConnectionEntry>, ConnectionError> {
        let loaded = self.inner.store.connections_of(pen).await?;
        let mut by_platform: HashMap<Platform, Connection> = loaded
            .items
            .into_iter()
            .map(|c| (c.key.platform, c))
            .collect();
        let unreadable: HashMap<Platform, String> = loaded
            .unreadable
            .into_iter()
            .filter_map(|u| Some((u.connection?.platform, u.problem)))
            .collect();
        let mut out = Vec::with_capacity(Platform::ALL.len());
        for p in Platform::ALL {
            if let Some(c) = by_platform.remove(&p) {
                out.push(self.entry_of(c).await?);
            } else if let Some(problem) = unreadable.get(&p) {
                out.push(ConnectionEntry::unreadable(p, problem));
            } else {
                out.push(ConnectionEntry::not_connected(p, self.is_configured(p)));
            }
        }
        Ok(out)
    }

    pub async fn connection(
        &self,
        key: &ConnectionKey,
    ) -> Result<ConnectionEntry, ConnectionError> {
        Ok(self.entry(key).await?)
    }

    /// The connection's most recent events, newest first.
    pub async fn connection_events(
        &self,
        key: &ConnectionKey,
        limit: usize,
    ) -> Result<Vec<EventView>, ConnectionError> {
        Ok(self
            .inner
            .store
            .events_of_connection(key, EventPage::newest(limit))
            .await?
            .iter()
            .map(EventView::from)
            .collect())
    }

    /// Starts a connect: the URL to send the author's browser to. The `state` is random,
    /// single-use, bound to this pen name and platform, and expires.
    pub async fn begin_connect(
        &self,
        key: &ConnectionKey,
        replace: bool,
    ) -> Result<AuthorizeStart, ConnectingError> {
        self.begin_connect_returning(key, replace, None).await
    }

    /// [`begin_connect`](Studio::begin_connect) from the Social Accounts page at the path
    /// `return_to` (as the browser reached it): bound to the `state`, so that a callback
    /// with no window to report to brings the author back there.
    pub async fn begin_connect_returning(
        &self,
        key: &ConnectionKey,
        replace: bool,
        return_to: Option<String>,
    ) -> Result<AuthorizeStart, ConnectingError> {
        if key.platform == Platform::Bluesky {
            return Err(ConnectingError::WrongConnectFlow(key.platform));
        }
        let adapter = self.adapter(key.platform)?;
        let state = random_token(24);
        let redirect_uri = self.inner.config.redirect_uri();
        let request = adapter.authorize(&state, &redirect_uri)?;
        let now = self.now();
        let expires_at = now.saturating_add(self.inner.config.oauth_state_ttl);
        let mut b = Batch::new();
        b.put_oauth_state(
            &state,
            &PendingAuthorization {
                connection: key.clone(),
                pkce_verifier: request.pkce_verifier,
                redirect_uri,
                created_at: now,
                expires_at,
                replace,
                purpose: StatePurpose::Connect { return_to },
            },
        );
        self.commit(b, Durability::Durable).await?;
        Ok(AuthorizeStart {
            authorize_url: request.url,
            state,
            expires_at,
        })
    }

    /// Finishes a connect from the platform's redirect. The state is checked (and spent)
    /// before anything else, so a forged or replayed callback changes nothing.
    pub async fn finish_connect(
        &self,
        state: Option<&str>,
        code: Option<&str>,
        error: Option<&str>,
        error_description: Option<&str>,
    ) -> Result<(PenName, ConnectionEntry), ConnectFailure> {
        self.finish_connect_returning(state, code, error, error_description)
            .await
            .map(|done| (done.pen_name, done.entry))
    }

    /// [`finish_connect`](Studio::finish_connect), answering also the page to return to.
    pub async fn finish_connect_returning(
        &self,
        state: Option<&str>,
        code: Option<&str>,
        error: Option<&str>,
        error_description: Option<&str>,
    ) -> Result<ConnectFinished, ConnectFailure> {
        let unknown = |error: ConnectingError| ConnectFailure {
            connection: None,
            error,
            return_to: None,
        };
        let state = state
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| unknown(ConnectingError::InvalidState))?;
        let lookup = self
            .inner
            .store
            .take_oauth_state(state, self.now())
            .await
            .map_err(|e| unknown(e.into()))?;
        let pending = match lookup {
            // A page link is no connect: as if the engine never issued it.
            StateLookup::Taken(PendingAuthorization {
                purpose: StatePurpose::PageLink,
                ..
            }) => return Err(unknown(ConnectingError::InvalidState)),
            StateLookup::Taken(p) => p,
            StateLookup::Expired => return Err(unknown(ConnectingError::StateExpired)),
            StateLookup::AlreadyUsed => return Err(unknown(ConnectingError::StateUsed)),
            StateLookup::Unknown => return Err(unknown(ConnectingError::InvalidState)),
        };
        let key = pending.connection.clone();
        let return_to = match &pending.purpose {
            StatePurpose::Connect { return_to } => return_to.clone(),
            StatePurpose::PageLink => None,
        };
        match self
            .finish_pending(pending, code, error, error_description)
            .await
        {
            Ok((pen_name, entry)) => Ok(ConnectFinished {
                pen_name,
                entry,
                return_to,
            }),
            Err(error) => Err(ConnectFailure {
                connection: Some(key),
                error,
                return_to,
            }),
        }
    }

    async fn finish_pending(
        &self,
        pending: PendingAuthorization,
        code: Option<&str>,
        error: Option<&str>,
        error_description: Option<&str>,
    ) -> Result<(PenName, ConnectionEntry), ConnectingError> {
        let key = pending.connection.clone();
        if let Some(error) = error {
            return Err(ConnectError::from_callback(error, error_description).into());
        }
        let code = code
            .filter(|c| !c.is_empty())
            .ok_or(ConnectingError::MissingParameter("code"))?;
        let adapter = self.adapter(key.platform)?;
        let connected = adapter
            .connect(
                code,
                pending.pkce_verifier.as_ref(),
                &pending.redirect_uri,
                self.now(),
            )
            .await?;
        let entry = self.install(&key, connected, pending.replace).await?;
        Ok((key.pen_name, entry))
    }

    /// Creates or replaces the connection with what a finished connect produced: the
    /// engine seals and stores the grant and starts the connection's actor.
    async fn install(
        &self,
        key: &ConnectionKey,
        connected: Connected,
        replace: bool,
    ) -> Result<ConnectionEntry, ConnectingError> {
        self.inner
            .engine
            .connect(
                key.clone(),
                connected.account,
                connected.targets,
                connected.grant,
                replace,
            )
            .await?;
        Ok(self.entry(key).await?)
    }

    /// Connects a platform that signs in with an identifier and an app password
    /// (Bluesky) instead of a consent page. The password is consumed by the adapter's
    /// one sign-in call and never stored; the connection is created (or, with `replace`,
    /// replaced by another account) exactly as an OAuth callback does.
    pub async fn connect_with_app_password(
        &self,
        pen: &PenName,
        platform: Platform,
        identifier: &str,
        app_password: Secret,
        replace: bool,
    ) -> Result<ConnectionEntry, ConnectingError> {
        if platform != Platform::Bluesky {
            return Err(ConnectingError::WrongConnectFlow(platform));
        }
        let key = ConnectionKey::new(pen.clone(), platform);
        let adapter = self.adapter(platform)?;
        let connected = adapter
            .connect_with_app_password(identifier, app_password, self.now())
            .await?;
        self.install(&key, connected, replace).await
    }

    /// Disconnects: without `confirm`, a dry run that says how many scheduled posts would
    /// fail; with it, revokes at the platform where possible, erases the grant, and fails
    /// the scheduled posts with `account_disconnected`.
    pub async fn disconnect(
        &self,
        key: &ConnectionKey,
        confirm: bool,
    ) -> Result<DisconnectView, ConnectionError> {
        match self.inner.store.connection(key).await {
            Ok(Some(_)) | Err(StoreError::Codec(_)) => {}
            Ok(None) => return Err(EngineRefusal::NotConnected(key.platform).into()),
            Err(e) => return Err(e.into()),
        }
        if !confirm {
            let counts = self.inner.store.post_counts(key).await?;
            let affected = [StateLabel::Scheduled, StateLabel::Paused, StateLabel::Held]
                .iter()
                .map(|&l| counts.get(l) as usize)
                .sum();
            return Err(ConnectionError::ConfirmationRequired(DisconnectPreview {
                platform: key.platform,
                scheduled_posts_affected: affected,
            }));
        }
        let report = self.inner.engine.disconnect(key.clone()).await?;
        let (revoke, revoke_note) = match &report.revoke {
            Ok(social_studio_actors::RevokeOutcome::Revoked) => (RevokeOutcome::Revoked, None),
            Ok(social_studio_actors::RevokeOutcome::NotSupported) => (
                RevokeOutcome::NotSupported,
                Some(format!(
                    "{} offers no way for apps to revoke access; remove the app in the account's settings on {} to finish.",
                    key.platform.display_name(),
                    key.platform.display_name()
                )),
            ),
            Err(e) => (RevokeOutcome::Failed, Some(format!("revoking at the platform failed ({e}); the grant was erased here anyway"))),
        };
        Ok(DisconnectView {
            platform: key.platform,
            revoke,
            revoke_note,
            posts_failed: report.posts_failed,
        })
    }

    /// Connections across pen names (or one pen name's) that need a person, and the
    /// stored records that cannot be read.
    pub async fn attention(
        &self,
        pen: Option<&PenName>,
    ) -> Result<(Vec<AttentionItem>, Vec<UnreadableView>), EngineRefusal> {
        let connections = match pen {
            Some(p) => self.inner.store.connections_of(p).await?.items,
            None => self.inner.store.all_connections().await?.items,
        };
        let mut out = Vec::new();
        for c in connections {
            let pen_name = c.key.pen_name.to_string();
            let entry = self.entry_of(c).await?;
            let reason = match (&entry.reason, entry.expiring_soon) {
                (Some(r), _) => r.clone(),
                (None, true) => ReasonView {
                    code: social_studio_storage::ReasonCode::GrantExpired.code(),
                    message: "The platform's authorization for this account lapses soon and cannot be renewed without you.",
                    remedy: "Reconnect the account before it lapses; nothing is lost if you do.",
                    platform_message: entry.expires_at.map(|e| format!("lapses at {}", e.to_rfc3339())),
                },
                (None, false) => continue,
            };
            out.push(AttentionItem {
                pen_name,
                platform: entry.platform,
                status: entry.status,
                reason,
                expiring_soon: entry.expiring_soon,
                expires_at: entry.expires_at,
                paused_posts: entry.paused,
            });
        }
        let unreadable = self.unreadable(pen);
        // A connection whose own record cannot be read needs a person like any other.
        for u in &unreadable {
            if u.kind == "connection" {
                if let (Some(pen_name), Some(platform)) = (&u.pen_name, u.platform) {
                    out.push(AttentionItem {
                        pen_name: pen_name.clone(),
                        platform,
                        status: ConnectionState::Error,
                        reason: u.reason.clone(),
                        expiring_soon: false,
                        expires_at: None,
                        paused_posts: 0,
                    });
                }
            }
        }
        Ok((out, unreadable))
    }

    /// Stored records that cannot be read (of one pen name, or all), each with what it
    /// belonged to, why, and what to do.
    pub fn unreadable(&self, pen: Option<&PenName>) -> Vec<UnreadableView> {
        self.inner
            .store
            .unreadable()
            .iter()
            .filter(|u| pen.is_none() || u.pen_name.as_ref() == pen)
            .map(UnreadableView::from)
            .collect()
    }

    /// Erases a pen name: without `confirm`, says what it would remove; with it, revokes
    /// every grant where possible and erases its connections, posts and events — also the
    /// records among them that cannot be read.
    pub async fn erase_pen_name(
        &self,
        pen: &PenName,
        confirm: bool,
    ) -> Result<ErasureReport, EraseError> {
        let connections = self.inner.store.connections_of(pen).await?;
        let posts = self.inner.store.posts_of_pen(pen).await?;
        if !confirm {
            let scheduled = posts.items.iter().filter(|p| p.state.is_pending()).count();
            return Err(EraseError::ConfirmationRequired(ErasurePreview {
                connections: connections
                    .items
                    .iter()
                    .map(|c| c.key.platform)
                    .chain(
                        connections
                            .unreadable
                            .iter()
                            .filter_map(|u| u.connection.as_ref().map(|c| c.platform)),
                    )
                    .collect(),
                posts: posts.items.len() + posts.unreadable.len(),
                scheduled_posts_affected: scheduled,
            }));
        }
        // Counted before the disconnects below, which already remove an unreadable
        // connection record.
        let unreadable_before = self.unreadable(Some(pen)).len();
        let keys = connections.items.iter().map(|c| c.key.clone()).chain(
            connections
                .unreadable
                .iter()
                .filter_map(|u: &UnreadableRecord| u.connection.clone()),
        );
        let mut revoked = Vec::new();
        for key in keys {
            if let Ok(v) = self.disconnect(&key, true).await {
                revoked.push(ConnectionErased {
                    platform: v.platform,
                    revoke: v.revoke,
                });
            }
        }
        let erased = self.inner.store.erase_pen_name(pen).await?;
        Ok(ErasureReport {
            pen_name: pen.to_string(),
            connections: revoked,
            posts_erased: erased.posts,
            events_erased: erased.events,
            unreadable_erased: erased.unreadable.max(unreadable_before),
        })
    }

    // ---- events and status ----

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.engine.subscribe()
    }

    /// Stored events after `seq`, in order (replay for a reconnecting event stream).
    pub async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, EngineRefusal> {
        Ok(self.inner.store.events_after(seq, limit).await?)
    }

    /// Commits a batch of the studio's own (an OAuth state, an idempotency record) through
    /// the engine's store-health flag, as every actor commit goes: a store refusing these
    /// writes is named by `/readyz` at once, not only once an actor meets it.
    pub(crate) fn commit(
        &self,
        batch: Batch,
        durability: Durability,
    ) -> social_studio_storage::CommitFuture {
        self.inner
            .engine
            .store_health()
            .commit(&self.inner.store, batch, durability)
    }

    /// The memory fetched media are held in (`media_memory_bytes`): how much is held
    /// now and how many fetches wait for room.
    pub fn media_budget(&self) -> &MediaBudget {
        &self.inner.media
    }

    /// Every call the adapters made to their platforms, counted by platform, endpoint
    /// and status, and timed: what `/metrics` shows as
    /// `social_studio_platform_requests_total` and
    /// `social_studio_platform_request_duration_seconds`.
    pub fn platform_call_metrics(&self) -> &PlatformCallMetrics {
        &self.inner.platform_calls
    }

    /// Readiness from state kept as the engine runs — whether the supervisor is running,
    /// whether the store takes writes, and how many stored records cannot be read —
    /// without a message to any actor, so that an unauthenticated probe cannot delay the
    /// engine's work.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            running: self.inner.engine.is_running() && !*self.inner.closing.borrow(),
            unreadable_records: self.inner.store.unreadable().len(),
            storage_failing: !self.inner.engine.store_health().is_healthy(),
        }
    }

    /// Whether the store takes the engine's writes, as every actor's last commit found:
    /// read without a message (see [`social_studio_actors::StoreHealth`]).
    pub fn store_health(&self) -> &social_studio_actors::StoreHealth {
        self.inner.engine.store_health()
    }

    /// What needs an operator about the engine itself: a store that refuses writes.
    pub fn engine_attention(&self) -> Vec<views::EngineAttentionItem> {
        let health = self.store_health();
        health
            .failing()
            .map(|f| views::EngineAttentionItem {
                reason: views::storage_failing(),
                since: f.since,
                detail: f.error,
                commit_failures: health.commit_failures(),
            })
            .into_iter()
            .collect()
    }

    pub async fn supervisor(&self) -> Result<TreeReport, EngineRefusal> {
        Ok(self.inner.engine.tree().await?)
    }

    /// Becomes `true` when [`Studio::shutdown`] begins.
    pub(crate) fn closing_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Stops every actor after it finishes what it holds, and flushes. Every open event
    /// stream of a router built on this studio ends at once, so a host's graceful
    /// shutdown does not wait for them.
    pub async fn shutdown(&self) {
        self.inner.closing.send_replace(true);
        self.inner.upkeep.abort();
        self.inner.engine.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the log said, as text.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_start_logs_its_progress_every_few_seconds_until_ready() {
        let captured = Captured::default();
        let writer = captured.clone();
        let _log = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish(),
        );
        let boot = BootProgress::new();
        let logging = tokio::spawn(log_boot_progress(boot.clone()));
        // Just past each tick, so the log has had its turn.
        let past_a_tick = BOOT_PROGRESS_LOG_EVERY + Duration::from_millis(1);
        tokio::time::sleep(past_a_tick).await;
        assert!(
            captured.text().contains("boot: opening the store"),
            "{}",
            captured.text()
        );

        boot.starting_connections(10);
        for _ in 0..4 {
            boot.connection_started();
        }
        tokio::time::sleep(BOOT_PROGRESS_LOG_EVERY).await;
        assert!(
            captured
                .text()
                .contains("boot: 4 of 10 connections started"),
            "{}",
            captured.text()
        );

        boot.finished();
        tokio::time::timeout(BOOT_PROGRESS_LOG_EVERY, logging)
            .await
            .expect("the log stops once the start has finished")
            .unwrap();
    }
}
