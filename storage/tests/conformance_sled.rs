//! The store port's conformance suite ([`social_studio_storage::conformance`]) on the
//! sled backend, on real sled on disk.

use async_trait::async_trait;
use social_studio_storage::conformance::{Backend, RawRecords};
use social_studio_storage::{KeySource, MasterKey, SledStore, StoreConfig, StoreError};

#[path = "support/reopen.rs"]
mod reopen;

/// A data directory of its own and the master key its store was made with.
struct Sled {
    dir: tempfile::TempDir,
    key: MasterKey,
}

impl Sled {
    fn new() -> Sled {
        Sled {
            dir: tempfile::tempdir().expect("a temporary directory"),
            key: MasterKey::generate(),
        }
    }
}

#[async_trait]
impl Backend for Sled {
    type Store = SledStore;

    async fn open(&self) -> SledStore {
        reopen::open(self.dir.path(), &self.key)
    }

    async fn open_with_key(&self, key: &MasterKey) -> Result<SledStore, StoreError> {
        SledStore::open_with_key(&StoreConfig::new(self.dir.path()), key, KeySource::Provided)
    }
}

impl RawRecords for Sled {
    fn raw_get(store: &SledStore, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        store.raw_get_for_tests(kind, key)
    }

    fn raw_insert(
        store: &SledStore,
        kind: &str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        store.raw_insert_for_tests(kind, key, bytes)
    }
}

social_studio_storage::conformance_tests!(Sled::new(), raw_records);
