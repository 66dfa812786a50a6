//! `migrate-store` (feature `postgres`): a stopped engine's sled data directory copied into
//! an empty PostgreSQL database, then checked.
//!
//! The copy goes through the backup archive both backends already speak: the sled store
//! is opened (which refuses while a running engine holds its lock, and checks the master
//! key), backed up into a file beside its data, and the archive restored into the
//! database ([`PgStore::restore`]: every record as stored — grants stay sealed under the
//! same master key — events with their numbers, idempotency records and OAuth states
//! too; refused when the database holds anything). Then the database is backed up in
//! turn and what both archives hold is compared kind by kind, count and digest
//! ([`Contents`]): the report says they are equal, or the migration fails naming what
//! differs. The sled data directory is left as it was.
//!
//! [`restore_archive`] is the second half alone: a backup archive of either backend
//! (`social-studio backup`) into an empty database, checked the same way — how a
//! PostgreSQL store is restored from its backup, or a sled backup moved without its data
//! directory.

use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use social_studio_storage::contents::Contents;
use social_studio_storage::{
    KeySource, MasterKeys, PgConfig, PgStore, SledStore, Store, StoreConfig, StoreError,
};

/// What a migration copied, and what the check at its end found.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    /// Where the target is, without its password.
    pub target: String,
    /// Records in the archive copied (the sled store's, derived records included).
    pub archive_records: u64,
    /// What the source holds, per kind — equal to what the target holds, or the
    /// migration would have failed.
    pub contents: Contents,
}

/// Why a migration did not happen, or did not check out.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{} holds no engine's data directory (no store format file in it)", .0.display())]
    NoSource(PathBuf),
    #[error("the store in {} is open by a running engine (its lock is held): stop the engine, then migrate", .0.display())]
    SourceInUse(PathBuf),
    #[error("the sled store in {} cannot be opened: {source}", .path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("the archive {} cannot be read: {source}", .path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("the copy into PostgreSQL failed: {0}")]
    Target(#[source] StoreError),
    #[error("the spool file for the archive failed: {0}")]
    Spool(#[from] std::io::Error),
    /// The check after the copy: the target does not hold what the source does.
    #[error("the copy does not match its source: {} differ (counts or digests); the target database holds a partial or altered copy — empty it before trying again", .kinds.join(", "))]
    Mismatch { kinds: Vec<&'static str> },
}

/// Copies the sled store in `data_dir` into the empty database at `url`, sealed with
/// `keys` (the key the sled store is sealed with), then checks the copy.
pub async fn migrate_store(
    data_dir: &Path,
    url: &str,
    keys: &MasterKeys,
) -> Result<MigrationReport, MigrateError> {
    // Opening creates what is missing: never a new store in a mistyped directory.
    if !data_dir.join("format").is_file() {
        return Err(MigrateError::NoSource(data_dir.to_path_buf()));
    }
    let source_error = |source: StoreError| {
        // sled 0.34 says so in its own words (an I/O error of kind Other).
        if source.to_string().contains("could not acquire lock") {
            MigrateError::SourceInUse(data_dir.to_path_buf())
        } else {
            MigrateError::Source {
                path: data_dir.to_path_buf(),
                source,
            }
        }
    };
    let sled = SledStore::open_with_keys(&StoreConfig::new(data_dir), keys, KeySource::Provided)
        .map_err(source_error)?;
    // Beside the data it copies: as private as the data directory, on the same disk.
    let mut spool = tempfile::Builder::new()
        .prefix(".migrate-store.")
        .suffix(".archive")
        .tempfile_in(data_dir)?;
    let mut file = spool.reopen()?;
    let written = tokio::task::spawn_blocking(move || {
        let written = sled.backup_blocking(&mut file);
        // Closed before the copy goes on: the directory is free again for an engine.
        drop(sled);
        written
    })
    .await
    .map_err(|e| MigrateError::Spool(std::io::Error::other(e)))?
    .map_err(source_error)?;
    spool.as_file_mut().sync_all()?;
    let report = copy_and_check(spool.path(), data_dir, url, keys).await?;
    debug_assert_eq!(report.archive_records, written.records);
    Ok(report)
}

/// Copies a backup archive — of a sled store or of a PostgreSQL one, as `backup` writes
/// them — into the empty database at `url`, sealed with `keys` (the key the backed-up
/// store was sealed with), then checks the copy as [`migrate_store`] does. The archive
/// is read whole and checked before anything is written.
pub async fn restore_archive(
    archive: &Path,
    url: &str,
    keys: &MasterKeys,
) -> Result<MigrationReport, MigrateError> {
    let beside = match archive.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    copy_and_check(archive, beside, url, keys).await
}

/// The archive at `archive` into the database, then the database backed up (into a
/// temporary file in `spool_dir`) and compared with the archive.
async fn copy_and_check(
    archive: &Path,
    spool_dir: &Path,
    url: &str,
    keys: &MasterKeys,
) -> Result<MigrationReport, MigrateError> {
    let unreadable = |source: StoreError| MigrateError::Archive {
        path: archive.to_path_buf(),
        source,
    };
    let input = std::fs::File::open(archive).map_err(|source| {
        unreadable(StoreError::DataDir {
            path: archive.to_path_buf(),
            source,
        })
    })?;
    let source = Contents::of_archive(BufReader::new(input)).map_err(unreadable)?;

    let config = PgConfig::new(url);
    let restored = PgStore::restore(&config, keys, archive)
        .await
        .map_err(MigrateError::Target)?;

    // The check: the target as a backup of its own, compared with the source.
    let target = PgStore::open_with_keys(&config, keys)
        .await
        .map_err(MigrateError::Target)?;
    let mut copy = tempfile::Builder::new()
        .prefix(".migrate-store.")
        .suffix(".check")
        .tempfile_in(spool_dir)?;
    target
        .backup(copy.as_file_mut())
        .await
        .map_err(MigrateError::Target)?;
    let location = target.info().location;
    drop(target);
    copy.as_file_mut().seek(SeekFrom::Start(0))?;
    let copied =
        Contents::of_archive(BufReader::new(copy.as_file_mut())).map_err(MigrateError::Target)?;
    let kinds = source.differences(&copied);
    if !kinds.is_empty() {
        return Err(MigrateError::Mismatch { kinds });
    }
    Ok(MigrationReport {
        target: location,
        archive_records: restored.records,
        contents: source,
    })
}
