//! The schema, versioned in the repository (`migrations/NNNN_name.sql`, embedded), and the
//! master key check.
//!
//! At open, one transaction takes a transaction-scoped advisory lock (so nodes opening
//! one database at once apply each migration once, one after another), makes the
//! `schema_migrations` table if it is missing, applies every migration it does not list
//! in order, and lists them. A database listing a version this build does not know was
//! upgraded by a newer release and is refused before anything is read.

use deadpool_postgres::Pool;

use crate::sled_store::layout::{KEY_CHECK_PLAINTEXT, META_KEY_CHECK};
use crate::vault::{Vault, VaultError};
use crate::StoreError;

use super::PgError;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "leases", include_str!("migrations/0002_leases.sql")),
    (3, "commands", include_str!("migrations/0003_commands.sql")),
];

/// The schema version this build reads and writes.
pub(super) const SCHEMA_VERSION: i64 = 3;

/// The advisory lock key migrations are applied under ("socialst" in ASCII).
const MIGRATION_LOCK: i64 = 0x736f_6369_616c_7374;

/// Applies the migrations the database lacks; returns what it did, in sentences.
pub(super) async fn apply(pool: &Pool) -> Result<Vec<String>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    bigint PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i64> = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(&found) = applied.iter().max() {
        if found > SCHEMA_VERSION {
            return Err(StoreError::Postgres(PgError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            }));
        }
    }
    let mut done = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await?;
        done.push(format!("applied schema migration {version:04} ({name})"));
    }
    tx.commit().await?;
    Ok(done)
}

/// Checks that the master key is the one the database's data was sealed with; a new
/// database records its check value (the first node to open it wins; the others check
/// against it).
pub(super) async fn check_key(pool: &Pool, vault: &Vault) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let name = std::str::from_utf8(META_KEY_CHECK).unwrap_or("master_key_check");
    client
        .execute(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &vault.seal(META_KEY_CHECK, KEY_CHECK_PLAINTEXT)],
        )
        .await?;
    let sealed: Vec<u8> = client
        .query_one("SELECT value FROM meta WHERE name = $1", &[&name])
        .await?
        .get(0);
    if vault.current_opens(META_KEY_CHECK, &sealed) {
        return Ok(());
    }
    if vault.open(META_KEY_CHECK, &sealed, String::new).is_ok() {
        return Err(StoreError::Postgres(PgError::RotationUnsupported));
    }
    Err(VaultError::WrongMasterKey.into())
}
