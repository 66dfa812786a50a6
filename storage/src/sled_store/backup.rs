//! Backup and restore: the store's every record into an archive ([`crate::archive`]), and
//! an archive into a new data directory.
//!
//! **Backup** holds the writer — the one commit path — while it copies every tree, so no
//! batch is half in the copy; the journal is not copied (with the writer held, the last
//! commit is wholly applied), and the highest event number handed out is written as the
//! `meta` record a clean close leaves, so the copy opens as a store closed cleanly at the
//! moment of the snapshot.
//!
//! **Restore** reads the archive whole and checks it before it writes anything; then
//! builds the data directory beside its destination and renames it into place, so a
//! restore cut short never leaves a data directory that looks whole.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::archive::{
    self, ArchiveError, ArchiveHeader, ArchiveReader, ArchiveSummary, ArchiveWriter,
};
use crate::port::BackupSummary;
use crate::{StoreError, Timestamp};

use super::layout::{self, Trees, FORMAT, T};
use super::{migrate, writer, SledStore, DEFAULT_CACHE_CAPACITY};

/// The backend name archives of this store carry.
const BACKEND: &str = "sled";

impl SledStore {
    /// [`Store::backup`](crate::Store::backup) on this thread: commits wait from the first
    /// record copied to the last.
    pub fn backup_blocking(&self, out: &mut dyn Write) -> Result<BackupSummary, StoreError> {
        let mut archive = ArchiveWriter::new(
            out,
            ArchiveHeader {
                backend: BACKEND.to_string(),
                store_format: FORMAT,
                written_at: Timestamp::now_system(),
            },
        )?;
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let held = Instant::now();
        for t in T::ALL {
            for item in self.tree(t).iter() {
                let (key, value) = item?;
                if t == T::Meta && key.as_ref() == writer::SEQ_HIGH {
                    continue;
                }
                archive.record(t.name(), &key, &value)?;
            }
            if t == T::Meta {
                archive.record(t.name(), writer::SEQ_HIGH, &w.seq_high.to_be_bytes())?;
            }
        }
        drop(w);
        let commits_held = held.elapsed();
        let (summary, _) = archive.finish()?;
        tracing::info!(
            records = summary.records,
            bytes = summary.bytes,
            commits_held_ms = commits_held.as_millis() as u64,
            "store: backup written"
        );
        Ok(BackupSummary {
            records: summary.records,
            per_tree: summary.per_tree,
            bytes: summary.bytes,
            commits_held,
        })
    }

    /// Makes the data directory `data_dir` from the archive at `archive`, ready for the
    /// engine to open with the master key the original was sealed with (the archive does
    /// not hold it; with another key the store refuses to open).
    ///
    /// `data_dir` must not exist or be an empty directory. The archive is read whole and
    /// checked first — a truncated or altered archive, or one of another backend or a
    /// newer format, is refused with nothing written; the directory is then built beside
    /// `data_dir` and renamed into place.
    pub fn restore(archive: &Path, data_dir: &Path) -> Result<ArchiveSummary, StoreError> {
        check_target(data_dir)?;
        let open = || {
            std::fs::File::open(archive)
                .map(BufReader::new)
                .map_err(|source| StoreError::DataDir {
                    path: archive.to_path_buf(),
                    source,
                })
        };
        let summary = archive::verify(open()?)?;
        check_header(&summary.header)?;
        let staging = staging_dir(data_dir)?;
        let built = build(&staging, open()?).and_then(|()| {
            if data_dir.exists() {
                // Empty, as checked: make way for the rename.
                std::fs::remove_dir(data_dir).map_err(|source| StoreError::DataDir {
                    path: data_dir.to_path_buf(),
                    source,
                })?;
            }
            std::fs::rename(&staging, data_dir).map_err(|source| StoreError::DataDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
            migrate::sync_dir(parent_of(data_dir))
        });
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        Ok(summary)
    }
}

fn parent_of(dir: &Path) -> &Path {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The destination must be new or an empty directory: a restore never mixes with data.
fn check_target(data_dir: &Path) -> Result<(), StoreError> {
    let refuse = |detail: String| StoreError::RestoreTarget {
        path: data_dir.to_path_buf(),
        detail,
    };
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(refuse(
                    "it is not empty; restore into a new directory".into(),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if data_dir.exists() && !data_dir.is_dir() => {
            Err(refuse(format!("it is not a directory ({e})")))
        }
        Err(source) => Err(StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        }),
    }
}

fn check_header(header: &ArchiveHeader) -> Result<(), ArchiveError> {
    if header.backend != BACKEND {
        return Err(ArchiveError::OtherBackend {
            found: header.backend.clone(),
            expected: BACKEND.into(),
        });
    }
    if header.store_format > FORMAT {
        return Err(ArchiveError::NewerStoreFormat {
            found: header.store_format,
            supported: FORMAT,
        });
    }
    if header.store_format < FORMAT {
        return Err(ArchiveError::OlderStoreFormat {
            found: header.store_format,
            supported: FORMAT,
        });
    }
    Ok(())
}

/// `.NAME.restoring` beside the destination, emptied of an earlier attempt's leftovers.
fn staging_dir(data_dir: &Path) -> Result<PathBuf, StoreError> {
    let parent = parent_of(data_dir);
    let name = data_dir
        .file_name()
        .ok_or_else(|| StoreError::RestoreTarget {
            path: data_dir.to_path_buf(),
            detail: "it names no directory".into(),
        })?;
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(".restoring");
    let staging = parent.join(staging_name);
    let io = |source| StoreError::DataDir {
        path: staging.clone(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(io)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io)?;
    }
    std::fs::create_dir(&staging).map_err(io)?;
    Ok(staging)
}

/// Writes every record of the archive into a new database in `dir`, durably. The archive
/// is checked again as it is read (it may have changed since it was verified).
fn build(dir: &Path, input: impl std::io::Read) -> Result<(), StoreError> {
    migrate::write_format(dir)?;
    let db = sled::Config::new()
        .path(dir.join(layout::SLED_DIR))
        .cache_capacity(DEFAULT_CACHE_CAPACITY)
        .open()?;
    let trees = Trees::open(&db)?;
    let mut reader = ArchiveReader::open(input)?;
    check_header(reader.header())?;
    while let Some(record) = reader.next_record()? {
        let t = T::ALL
            .into_iter()
            .find(|t| t.name() == record.tree)
            .ok_or_else(|| ArchiveError::UnknownTree(record.tree.clone()))?;
        trees.get(t).insert(record.key, record.value)?;
    }
    db.flush()?;
    drop(trees);
    drop(db);
    migrate::sync_dir(dir)
}
