//! Opening a store where one was just dropped. sled's own I/O threads let go of the
//! directory lock a moment after the last handle is dropped, so a test that drops a store
//! and opens it again at once can be refused with "could not acquire lock" on a loaded
//! machine. These wait for the lock, to a deadline; any other error is answered at once.

#![allow(dead_code)] // each test binary uses what it needs

use std::path::Path;
use std::time::{Duration, Instant};

use social_studio_storage::{KeySource, MasterKey, SledStore, StoreConfig, StoreError};

/// How long a lock left by a dropped store may take to be released.
const LOCK_RELEASED_WITHIN: Duration = Duration::from_secs(10);

/// Runs `open` again while it is refused for sled's directory lock (up to
/// [`LOCK_RELEASED_WITHIN`]), and answers its first other outcome.
pub fn when_unlocked<T>(mut open: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let deadline = Instant::now() + LOCK_RELEASED_WITHIN;
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Opens the store in `dir` with `key`; panics on anything but a lock still held.
pub fn open(dir: &Path, key: &MasterKey) -> SledStore {
    when_unlocked(|| SledStore::open_with_key(&StoreConfig::new(dir), key, KeySource::Provided))
        .unwrap_or_else(|e| panic!("open store: {e:?}"))
}
