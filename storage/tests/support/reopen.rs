//! Opening a store in a test, where one may just have been dropped (the store waits for
//! sled's directory lock itself: `LOCK_RELEASE_WAIT`).

use std::path::Path;

use social_studio_storage::{KeySource, MasterKey, SledStore, StoreConfig};

/// Opens the store in `dir` with `key`; panics with the error otherwise.
pub fn open(dir: &Path, key: &MasterKey) -> SledStore {
    SledStore::open_with_key(&StoreConfig::new(dir), key, KeySource::Provided)
        .unwrap_or_else(|e| panic!("open store: {e:?}"))
}
