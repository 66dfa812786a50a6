//! The store [`Studio::open`](super::Studio::open) opens: the embedded sled store in the
//! data directory, or — `store.backend = "postgres"`, feature `postgres` — a PostgreSQL
//! database, with what a database shared by several nodes asks for: the master key and
//! the admin token given explicitly (`SOCIAL_STUDIO_MASTER_KEY` or
//! [`StudioOptions::master_keys`](super::StudioOptions::master_keys), `admin_token` or
//! `SOCIAL_STUDIO_ADMIN_TOKEN`), never generated into one node's data directory. The store
//! then checks the key against the database's check value, as sled checks its own.

use std::sync::Arc;

use social_studio_storage::{KeySource, MasterKeys, SharedStore, SledStore, StoreConfig};

use super::{EngineRefusal, StudioOptions};
use crate::config::{Backend, Config};

/// Why the configured store is refused before it is opened. It reaches the caller of
/// [`Studio::open`](super::Studio::open) as [`EngineRefusal::Store`],
/// which names the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum StoreRefusal {
    #[error("store.backend is \"postgres\" but this build has no PostgreSQL backend: build social-studio with `--features postgres`")]
    NotBuilt,
    #[error("store.backend is \"postgres\" but store.url (SOCIAL_STUDIO_STORE_URL) is not set")]
    NoUrl,
    #[error("store.backend is \"postgres\": the master key must be given explicitly — SOCIAL_STUDIO_MASTER_KEY, or the host's StudioOptions::master_keys — and be the same on every node; no key file is read or generated")]
    MasterKeyRequired,
    #[error("store.backend is \"postgres\": the admin token must be given explicitly — admin_token or SOCIAL_STUDIO_ADMIN_TOKEN — and be the same on every node; no token file is read or generated")]
    AdminTokenRequired,
}

impl StoreRefusal {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreRefusal::NotBuilt => "store_backend_not_built",
            StoreRefusal::NoUrl => "store_url_missing",
            StoreRefusal::MasterKeyRequired => "master_key_required",
            StoreRefusal::AdminTokenRequired => "admin_token_required",
        }
    }
}

/// Opens the configured store with its master keys; says where the keys came from, and
/// hands the keys back (the page cookie's key is derived from the current one).
pub(super) async fn open(
    config: &Config,
    options: &StudioOptions,
) -> Result<(SharedStore, KeySource, MasterKeys), EngineRefusal> {
    match config.store.backend {
        Backend::Sled => open_sled(config, options),
        Backend::Postgres => open_postgres(config, options).await,
    }
}

fn open_sled(
    config: &Config,
    options: &StudioOptions,
) -> Result<(SharedStore, KeySource, MasterKeys), EngineRefusal> {
    let mut store_config = StoreConfig::new(&config.data_dir);
    if let Some(capacity) = options.event_capacity {
        store_config.event_capacity = capacity;
    }
    let (keys, source) = match &options.master_keys {
        Some(keys) => (keys.clone(), KeySource::Provided),
        None => MasterKeys::from_environment_or_file(
            &config.data_dir,
            config.master_key_file.as_deref(),
        )
        .map_err(|e| EngineRefusal::Storage(e.into()))?,
    };
    if let KeySource::File { path, created } = &source {
        tracing::warn!(
            path = %path.display(),
            created,
            "the master key is a file beside the data it protects: fine for local use; in production set SOCIAL_STUDIO_MASTER_KEY"
        );
    }
    let store = SledStore::open_with_keys(&store_config, &keys, source.clone())?;
    Ok((Arc::new(store), source, keys))
}

/// The master keys a node sharing a database uses: the host's, or the environment's —
/// never a file.
#[cfg(feature = "postgres")]
pub(crate) fn explicit_keys(
    config: &Config,
    options: &StudioOptions,
) -> Result<(MasterKeys, KeySource), EngineRefusal> {
    use social_studio_storage::vault::{MASTER_KEY_ENV, PREVIOUS_MASTER_KEYS_ENV};
    if let Some(keys) = &options.master_keys {
        return Ok((keys.clone(), KeySource::Provided));
    }
    let key = std::env::var(MASTER_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or(StoreRefusal::MasterKeyRequired)?;
    let previous = std::env::var(PREVIOUS_MASTER_KEYS_ENV).ok();
    MasterKeys::resolve(&config.data_dir, None, Some(&key), previous.as_deref())
        .map_err(|e| EngineRefusal::Storage(e.into()))
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    config: &Config,
    options: &StudioOptions,
) -> Result<(SharedStore, KeySource, MasterKeys), EngineRefusal> {
    let url = config.store.url.as_ref().ok_or(StoreRefusal::NoUrl)?;
    let (keys, source) = explicit_keys(config, options)?;
    if config.admin_token.is_none() {
        return Err(StoreRefusal::AdminTokenRequired.into());
    }
    let mut pg = social_studio_storage::PgConfig::new(url.expose());
    if let Some(capacity) = options.event_capacity {
        pg.event_capacity = capacity;
    }
    let store = social_studio_storage::PgStore::open_with_keys(&pg, &keys).await?;
    tracing::info!(
        node_id = %config.store.node_id(),
        "store: PostgreSQL; this node keeps nothing of the store in its data directory"
    );
    Ok((Arc::new(store), source, keys))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(
    _config: &Config,
    _options: &StudioOptions,
) -> Result<(SharedStore, KeySource, MasterKeys), EngineRefusal> {
    Err(StoreRefusal::NotBuilt.into())
}
