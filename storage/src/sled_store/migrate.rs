//! The data directory's format: found at open, upgraded when older, refused when newer.
//!
//! A data directory names its layout in the file `format`. Without it, the directory is
//! either new or format 1 (the single sled database in `db/` that releases up to 178a3f8
//! wrote). An upgrade writes the new database beside the old one, makes it durable, and
//! only then switches over, in steps that are each atomic on their own and safe to repeat:
//!
//! 1. build `sled-migrating/` from `db/` (a crash here: the next start builds it again);
//! 2. rename it to `sled/`;
//! 3. write `format` (write a temporary file, `fsync`, rename, `fsync` the directory) —
//!    from this moment the directory is format 2;
//! 4. remove `db/` and put a file named `db` in its place, so a format-1 release started on
//!    this directory fails to open it instead of starting with an empty store.
//!
//! A start that finds `format` naming a newer format refuses with
//! [`StoreError::NewerFormat`] before reading anything.

use std::io::Write as _;
use std::path::Path;

use crate::vault::{KeyId, Vault, VaultError};
use crate::StoreError;

use super::layout::{self, Trees, FORMAT, T};
use super::legacy;

/// Readies the data directory for opening `sled/` at [`FORMAT`]: refuses a newer format,
/// upgrades an older one, tidies what an interrupted upgrade left. Returns what it did.
pub(crate) fn prepare(data_dir: &Path, vault: &Vault) -> Result<Vec<String>, StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::DataDir { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let mut done = Vec::new();
    let v1 = data_dir.join(layout::V1_DIR);
    match read_format(data_dir)? {
        Some(found) if found > FORMAT => {
            return Err(StoreError::NewerFormat {
                path: data_dir.to_path_buf(),
                found,
                supported: FORMAT,
            })
        }
        Some(FORMAT) => {
            let migrating = data_dir.join(layout::MIGRATING_DIR);
            if migrating.exists() {
                std::fs::remove_dir_all(&migrating).map_err(io(&migrating))?;
            }
            if v1.is_dir() {
                // The upgrade switched over and stopped before removing the old database.
                retire_v1(data_dir)?;
                done.push(
                    "removed the format-1 database an interrupted upgrade left behind".into(),
                );
            }
        }
        Some(other) => {
            return Err(StoreError::Migration {
                path: data_dir.to_path_buf(),
                detail: format!("its `format` file names format {other}, which no release wrote"),
            })
        }
        None if v1.is_dir() => {
            done.extend(legacy::migrate_v1(data_dir, vault)?);
            switch_over(data_dir)?;
        }
        None => write_format(data_dir)?,
    }
    Ok(done)
}

/// Steps 2–4 of the upgrade, once `sled-migrating/` is complete and durable: rename it to
/// `sled/`, write `format`, retire the format-1 database.
fn switch_over(data_dir: &Path) -> Result<(), StoreError> {
    let target = data_dir.join(layout::MIGRATING_DIR);
    let sled_dir = data_dir.join(layout::SLED_DIR);
    if sled_dir.exists() {
        // A directory from an attempt that renamed but never wrote `format`.
        std::fs::remove_dir_all(&sled_dir).map_err(|source| StoreError::DataDir {
            path: sled_dir.clone(),
            source,
        })?;
    }
    std::fs::rename(&target, &sled_dir).map_err(|source| StoreError::DataDir {
        path: sled_dir.clone(),
        source,
    })?;
    sync_dir(data_dir)?;
    write_format(data_dir)?;
    retire_v1(data_dir)?;
    Ok(())
}

/// What the key check found: whether a master key rotation must (still) re-seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// The check value is sealed with the current key and no rotation is under way.
    Current,
    /// A previous key sealed the check value, or a rotation began and has not finished.
    Rotating,
}

/// Checks the opened database: its own format record, and that the master key (or, during
/// a rotation, one of the previous keys) is the one its data was sealed with (a new
/// database records both).
pub(crate) fn check_opened(
    db: &sled::Db,
    trees: &Trees,
    vault: &Vault,
    data_dir: &Path,
) -> Result<KeyCheck, StoreError> {
    let meta = trees.get(T::Meta);
    match meta.get(layout::META_FORMAT)? {
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .unwrap_or(u32::MAX);
            if found > FORMAT {
                return Err(StoreError::NewerFormat {
                    path: data_dir.to_path_buf(),
                    found,
                    supported: FORMAT,
                });
            }
        }
        None => {
            meta.insert(layout::META_FORMAT, &FORMAT.to_be_bytes())?;
        }
    }
    let rotating_to = meta.get(layout::META_KEY_ROTATION)?;
    match meta.get(layout::META_KEY_CHECK)? {
        Some(sealed) if vault.current_opens(layout::META_KEY_CHECK, &sealed) => {
            Ok(if rotating_to.is_some() {
                // The check moved and the marker stayed (a stop between the two), or the
                // rotation is being rolled back to this key: the re-seal sorts out which.
                KeyCheck::Rotating
            } else {
                KeyCheck::Current
            })
        }
        Some(sealed) => {
            if vault
                .open(layout::META_KEY_CHECK, &sealed, String::new)
                .is_ok()
            {
                return Ok(KeyCheck::Rotating);
            }
            match rotating_to.and_then(|id| KeyId::from_slice(&id)) {
                Some(target) if target == vault.key_id() => {
                    Err(VaultError::RotationUnfinished { current: target }.into())
                }
                _ => Err(VaultError::WrongMasterKey.into()),
            }
        }
        None => {
            meta.insert(
                layout::META_KEY_CHECK,
                vault.seal(layout::META_KEY_CHECK, layout::KEY_CHECK_PLAINTEXT),
            )?;
            db.flush()?;
            Ok(KeyCheck::Current)
        }
    }
}

/// The format the data directory says it is at (`None`: no `format` file).
pub(crate) fn read_format(data_dir: &Path) -> Result<Option<u32>, StoreError> {
    let path = data_dir.join(layout::FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|e| StoreError::Migration {
                path: data_dir.to_path_buf(),
                detail: format!(
                    "its `format` file holds {:?}, not a format number ({e})",
                    text.trim()
                ),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::DataDir { path, source }),
    }
}

/// Writes `format` atomically: a temporary file made durable, renamed over, and the
/// directory made durable.
pub(crate) fn write_format(data_dir: &Path) -> Result<(), StoreError> {
    let path = data_dir.join(layout::FORMAT_FILE);
    let tmp = data_dir.join(".format.tmp");
    let io = |source| StoreError::DataDir {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    writeln!(f, "{FORMAT}").map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io)?;
    sync_dir(data_dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::DataDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Removes the format-1 database and leaves a file in its place that format-1 releases
/// cannot open as a database, with a sentence for whoever looks.
fn retire_v1(data_dir: &Path) -> Result<(), StoreError> {
    let v1 = data_dir.join(layout::V1_DIR);
    let io = |source| StoreError::DataDir {
        path: v1.clone(),
        source,
    };
    if v1.is_dir() {
        std::fs::remove_dir_all(&v1).map_err(io)?;
    }
    let mut f = std::fs::File::create(&v1).map_err(io)?;
    writeln!(
        f,
        "This data directory was upgraded to store format {FORMAT} (see the file `format`); the database is in `sled/`. Releases that read format 1 cannot open it."
    )
    .map_err(io)?;
    f.sync_all().map_err(io)?;
    sync_dir(data_dir)
}
