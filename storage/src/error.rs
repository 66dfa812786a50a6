//! Storage errors. Each says what failed and where, so an operator can act on it.

use crate::codec::{CodecError, EncodeError};
use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("the data directory {path} cannot be used: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store's flusher has stopped; durable writes are no longer possible")]
    FlusherStopped,
    #[error("the flush to disk failed: {0}")]
    Flush(String),
}
