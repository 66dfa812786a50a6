//! Storage errors. Each says what failed and where, so an operator can act on it.

use crate::codec::{CodecError, EncodeError};
use crate::vault::VaultError;
use crate::ConnectionKey;

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
    #[error("the data directory {path} was written by a newer release (store format {found}); this release reads formats up to {supported}. Run that release again, or restore a backup taken before the upgrade")]
    NewerFormat {
        path: std::path::PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("the data directory {path} cannot be upgraded: {detail}")]
    Migration {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("a write for {key} was refused: its writer no longer owns the connection (epoch {epoch}, newest {newest})")]
    Fenced {
        key: ConnectionKey,
        epoch: u64,
        newest: u64,
    },
    #[error("the store's flusher has stopped; durable writes are no longer possible")]
    FlusherStopped,
    #[error("the flush to disk failed: {0}")]
    Flush(String),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// The PostgreSQL backend (feature `postgres`) failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] crate::pg_store::PgError),
    #[error("cannot restore into {path}: {detail}")]
    RestoreTarget {
        path: std::path::PathBuf,
        detail: String,
    },
}
