//! The master key as a value from the host's own secret store
//! (`StudioOptions::master_keys`): the store is sealed with it and checked against it as
//! with a key from the environment or a file, and no key file is read or created.

use std::path::Path;

use social_studio::config::Config;
use social_studio::studio::{EngineRefusal, Studio, StudioOptions};
use social_studio::wait::poll_until;
use social_studio_storage::{
    KeySource, MasterKey, MasterKeys, Secret, SledStore, StoreConfig, StoreError, VaultError,
};
use tempfile::TempDir;

use crate::helpers::{LOOK_AGAIN, PATIENCE};

/// A configuration with no platform, whose key file — were it read — would be `key_file`.
fn config(data_dir: &Path, key_file: &Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        admin_token: Some(Secret::new("host-key-test-admin-token-01")),
        master_key_file: Some(key_file.to_path_buf()),
        ..Config::default()
    }
}

/// Opens the studio with `keys` from the host, waiting (with a deadline) while the
/// previous studio on the same directory still lets go of the database; answers what the
/// first attempt that was not refused for that reason answered.
async fn open_with(config: &Config, keys: MasterKeys) -> Result<Studio, EngineRefusal> {
    let mut outcome = None;
    poll_until(PATIENCE, LOOK_AGAIN, async || {
        let options = StudioOptions {
            master_keys: Some(keys.clone()),
            ..StudioOptions::default()
        };
        match Studio::open(config.clone(), options).await {
            // sled's lock on a directory the last studio has not let go of yet.
            Err(EngineRefusal::Storage(StoreError::Sled(_))) => None,
            other => {
                outcome = Some(other);
                Some(())
            }
        }
    })
    .await
    .expect("the database is let go of after a shutdown");
    outcome.expect("an outcome")
}

fn is_wrong_key(refused: &EngineRefusal) -> bool {
    matches!(
        refused,
        EngineRefusal::Storage(StoreError::Vault(VaultError::WrongMasterKey))
    )
}

#[tokio::test]
async fn a_studio_opened_with_the_host_s_key_is_sealed_with_it_and_refuses_another() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("keys").join("master.key");
    let config = config(&data, &key_file);
    let host_key = MasterKey::generate();
    let another = MasterKey::generate();

    let studio = open_with(&config, MasterKeys::new(host_key.clone()))
        .await
        .expect("the engine opens with the host's key");
    assert_eq!(studio.startup_notes().key_source, KeySource::Provided);
    studio.shutdown().await;
    drop(studio);

    // Neither the configured key file nor the default one was created (or read).
    assert!(!key_file.exists(), "a key file appeared at {key_file:?}");
    assert!(!key_file.parent().unwrap().exists());
    assert!(!data
        .join(social_studio_storage::vault::MASTER_KEY_FILE)
        .exists());

    // The same key opens it again; another is refused with the key-mismatch error.
    let studio = open_with(&config, MasterKeys::new(host_key.clone()))
        .await
        .expect("the host's key opens its store again");
    studio.shutdown().await;
    drop(studio);
    match open_with(&config, MasterKeys::new(another.clone())).await {
        Err(refused) => assert!(is_wrong_key(&refused), "{refused}"),
        Ok(_) => panic!("another key opened the store"),
    }

    // The store itself was sealed with the host's key.
    let stored = poll_until(
        PATIENCE,
        LOOK_AGAIN,
        async || match SledStore::open_with_key(
            &StoreConfig::new(&data),
            &another,
            KeySource::Provided,
        ) {
            Err(StoreError::Sled(_)) => None,
            other => Some(other.map(|_| ())),
        },
    )
    .await
    .expect("the store can be opened");
    assert!(
        matches!(stored, Err(StoreError::Vault(VaultError::WrongMasterKey))),
        "{stored:?}"
    );
    assert!(!key_file.exists());
}

#[tokio::test]
async fn the_host_rotates_its_key_by_giving_the_previous_one_beside_the_new() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let config = config(&data, &dir.path().join("master.key"));
    let old = MasterKey::generate();
    let new = MasterKey::generate();

    let studio = open_with(&config, MasterKeys::new(old.clone()))
        .await
        .unwrap();
    studio.shutdown().await;
    drop(studio);

    let studio = open_with(
        &config,
        MasterKeys::with_previous(new.clone(), vec![old.clone()]),
    )
    .await
    .expect("the new key with the old one beside it opens the store");
    studio.shutdown().await;
    drop(studio);

    // The rotation finished at that open: the new key alone opens it, the old one no more.
    let studio = open_with(&config, MasterKeys::new(new.clone()))
        .await
        .expect("the new key alone opens the rotated store");
    studio.shutdown().await;
    drop(studio);
    match open_with(&config, MasterKeys::new(old)).await {
        Err(refused) => assert!(is_wrong_key(&refused), "{refused}"),
        Ok(_) => panic!("the old key still opens the store"),
    }
}

/// The test below, in a process of its own whose `SOCIAL_STUDIO_MASTER_KEY` and
/// `SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS` are not keys at all: an engine that read them
/// would refuse to open. (Setting them in this process would reach every other test.)
#[tokio::test]
async fn the_environment_s_keys_are_not_read_when_the_host_gives_its_own() {
    use social_studio_storage::vault::{MASTER_KEY_ENV, PREVIOUS_MASTER_KEYS_ENV};
    let child = "host_key::opens_with_the_host_s_key_whatever_the_environment_says";
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([child, "--exact", "--ignored", "--nocapture"])
        .env(MASTER_KEY_ENV, "not-a-key")
        .env(PREVIOUS_MASTER_KEYS_ENV, "not-a-key-either")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child test ran: {stdout}");
}

#[tokio::test]
#[ignore = "run by the_environment_s_keys_are_not_read_when_the_host_gives_its_own, with the variables set"]
async fn opens_with_the_host_s_key_whatever_the_environment_says() {
    let dir = TempDir::new().unwrap();
    let config = config(&dir.path().join("data"), &dir.path().join("master.key"));
    let studio = open_with(&config, MasterKeys::new(MasterKey::generate()))
        .await
        .expect("the engine opens with the host's key, whatever the environment holds");
    assert_eq!(studio.startup_notes().key_source, KeySource::Provided);
    studio.shutdown().await;
}
