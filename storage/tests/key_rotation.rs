//! Master key rotation on real sled on disk: a new master key with the old one among the
//! previous keys re-seals every grant and OAuth state when the store opens; a stop
//! mid-way is finished by the next start; a grant written between a record's read and its
//! re-sealed write is kept; and only after the last record does the key check move.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use social_studio_storage::fixtures::{connection, grant, key};
use social_studio_storage::vault::VaultError;
use social_studio_storage::*;

const GRANTS: usize = 12;

fn config(dir: &Path, chunk: usize) -> StoreConfig {
    StoreConfig {
        reseal_chunk: chunk,
        ..StoreConfig::new(dir)
    }
}

/// Opens with the given keys, re-seal chunk and (optionally) re-seal hook.
fn try_open(
    dir: &Path,
    keys: &MasterKeys,
    chunk: usize,
    hook: Option<ResealHook>,
) -> Result<SledStore, StoreError> {
    let hook = hook.map(|h| Arc::new(std::sync::Mutex::new(h)));
    match &hook {
        Some(h) => {
            let h = h.clone();
            SledStore::open_with_reseal_hook(
                &config(dir, chunk),
                keys,
                KeySource::Provided,
                Box::new(move |store, done| (h.lock().unwrap())(store, done)),
            )
        }
        None => SledStore::open_with_keys(&config(dir, chunk), keys, KeySource::Provided),
    }
}

fn open(dir: &Path, keys: &MasterKeys) -> SledStore {
    try_open(dir, keys, DEFAULT_RESEAL_CHUNK, None).unwrap_or_else(|e| panic!("open: {e}"))
}

fn keys() -> Vec<ConnectionKey> {
    (0..GRANTS)
        .map(|i| key(&format!("author{i}"), Platform::X))
        .collect()
}

/// A store under `old` with a grant per key, an unused OAuth state and a used one.
async fn fill(dir: &Path, old: &MasterKey) {
    let store = open(dir, &MasterKeys::new(old.clone()));
    let mut b = Batch::new();
    for (i, k) in keys().iter().enumerate() {
        b.put_connection(&connection(k)).put_grant(
            k,
            &grant(&format!("access-{i}"), Some(&format!("refresh-{i}"))),
        );
    }
    b.put_oauth_state("pending-state", &pending())
        .put_oauth_state("used-state", &pending());
    store.commit(b, Durability::Durable).await.unwrap();
    assert!(matches!(
        store
            .take_oauth_state("used-state", Timestamp::from_unix_millis(0))
            .await
            .unwrap(),
        StateLookup::Taken(_)
    ));
}

fn pending() -> PendingAuthorization {
    PendingAuthorization {
        connection: key("author0", Platform::X),
        pkce_verifier: Some(Secret::new("verifier")),
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(i64::MAX / 2),
        replace: false,
        purpose: social_studio_storage::StatePurpose::Connect { return_to: None },
    }
}

/// Every grant opens with only `keys`, holding `access-{i}` with `prefix`; each is sealed
/// with the current key (version 2, its key id).
async fn assert_every_grant(dir: &Path, current: &MasterKey, prefix: &str) {
    let store = open(dir, &MasterKeys::new(current.clone()));
    for (i, k) in keys().iter().enumerate() {
        let g = store.grant(k).await.unwrap().expect("grant kept");
        assert_eq!(g.access_token.expose(), format!("{prefix}access-{i}"));
        let raw = store
            .raw_get_for_tests("grants", &k.storage_key())
            .unwrap()
            .unwrap();
        assert_eq!(raw[0], 2, "a version-2 seal");
        assert_eq!(&raw[1..9], current.id().as_bytes(), "it names the new key");
    }
    assert!(store.unreadable().is_empty(), "{:?}", store.unreadable());
}

#[tokio::test]
async fn a_new_master_key_with_the_old_one_as_previous_reseals_everything_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    fill(dir.path(), &old).await;

    // Only the new key, before any rotation: refused, with what to do.
    match try_open(dir.path(), &MasterKeys::new(new.clone()), 256, None) {
        Err(StoreError::Vault(e @ VaultError::WrongMasterKey)) => {
            assert!(
                e.to_string().contains("SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS"),
                "{e}"
            )
        }
        Err(other) => panic!("expected WrongMasterKey, got {other}"),
        Ok(_) => panic!("a key that sealed nothing opened the store"),
    }

    {
        let store = open(
            dir.path(),
            &MasterKeys::with_previous(new.clone(), vec![old.clone()]),
        );
        let opened = store.info().opened.join("\n");
        assert!(
            opened.contains(&format!(
                "{GRANTS} grants and 1 OAuth states re-sealed, 0 already under this key"
            )),
            "{opened}"
        );
    }
    // A second start with both keys has nothing left to do and says the old one can go.
    {
        let store = open(
            dir.path(),
            &MasterKeys::with_previous(new.clone(), vec![old.clone()]),
        );
        let opened = store.info().opened.join("\n");
        assert!(opened.contains("they can be removed"), "{opened}");
    }

    assert_every_grant(dir.path(), &new, "").await;
    let store = open(dir.path(), &MasterKeys::new(new.clone()));
    assert!(matches!(
        store
            .take_oauth_state("pending-state", Timestamp::from_unix_millis(0))
            .await
            .unwrap(),
        StateLookup::Taken(p) if p == pending()
    ));
    assert_eq!(
        store
            .take_oauth_state("used-state", Timestamp::from_unix_millis(0))
            .await
            .unwrap(),
        StateLookup::AlreadyUsed
    );
    drop(store);
    // The old key alone no longer opens it.
    assert!(matches!(
        try_open(dir.path(), &MasterKeys::new(old), 256, None),
        Err(StoreError::Vault(VaultError::WrongMasterKey))
    ));
}

#[tokio::test]
async fn a_rotation_stopped_mid_way_is_finished_by_the_next_start_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    fill(dir.path(), &old).await;
    let both = MasterKeys::with_previous(new.clone(), vec![old.clone()]);

    // One record per write; the fourth write never happens.
    let stop: ResealHook = Box::new(|_, done| {
        if done == 3 {
            Err(StoreError::FlusherStopped)
        } else {
            Ok(())
        }
    });
    assert!(matches!(
        try_open(dir.path(), &both, 1, Some(stop)),
        Err(StoreError::FlusherStopped)
    ));

    // Half-way, neither key alone opens the store, and each says why.
    match try_open(dir.path(), &MasterKeys::new(new.clone()), 1, None) {
        Err(StoreError::Vault(e @ VaultError::RotationUnfinished { .. })) => {
            let text = e.to_string();
            assert!(text.contains(&new.id().to_string()), "{text}");
            assert!(text.contains("previous key"), "{text}");
        }
        Err(other) => panic!("expected RotationUnfinished, got {other}"),
        Ok(_) => panic!("the new key alone opened a half-rotated store"),
    }
    match try_open(dir.path(), &MasterKeys::new(old.clone()), 1, None) {
        Err(StoreError::Vault(VaultError::UnknownKey { key_id, .. })) => {
            assert_eq!(key_id, new.id())
        }
        Err(other) => panic!("expected UnknownKey, got {other}"),
        Ok(_) => panic!("the old key alone opened a half-rotated store"),
    }

    // The same configuration again finishes the job.
    {
        let store = try_open(dir.path(), &both, 1, None).unwrap();
        let opened = store.info().opened.join("\n");
        assert!(
            opened.contains(&format!(
                "{} grants and 1 OAuth states re-sealed, 3 already under this key",
                GRANTS - 3
            )),
            "{opened}"
        );
    }
    assert_every_grant(dir.path(), &new, "").await;
}

#[tokio::test]
async fn a_grant_rotated_between_its_read_and_its_reseal_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    fill(dir.path(), &old).await;

    // Before the first compare-and-set write — after every grant of the chunk was read —
    // each connection commits a renewed grant, as a connection actor would.
    let renewed = Arc::new(AtomicBool::new(false));
    let flag = renewed.clone();
    let hook: ResealHook = Box::new(move |store, _| {
        if !flag.swap(true, Ordering::SeqCst) {
            let mut b = Batch::new();
            for (i, k) in keys().iter().enumerate() {
                b.put_grant(k, &grant(&format!("renewed-access-{i}"), None));
            }
            store.commit_blocking(b, Durability::Durable)?;
        }
        Ok(())
    });
    // Opening is synchronous; the hook's commit waits for its flush on this thread.
    let path = dir.path().to_path_buf();
    let both = MasterKeys::with_previous(new.clone(), vec![old]);
    let store = tokio::task::spawn_blocking(move || try_open(&path, &both, 256, Some(hook)))
        .await
        .unwrap()
        .unwrap();
    assert!(renewed.load(Ordering::SeqCst));
    let opened = store.info().opened.join("\n");
    drop(store);
    // The renewed grants, not the re-sealed old ones.
    assert_every_grant(dir.path(), &new, "renewed-").await;
    assert!(
        opened.contains(&format!("{GRANTS} changed meanwhile and kept")),
        "{opened}"
    );
}
