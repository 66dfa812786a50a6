//! Master key rotation: everything a previous key sealed is sealed again under the
//! current one, and only then does the key check move to the current key.
//!
//! It runs when the store opens with a [`KeyCheck::Rotating`] check (see
//! [`migrate::check_opened`](super::migrate::check_opened)), in steps that are each safe
//! to stop after:
//!
//! 1. the rotation's target — the current key's id — is recorded in `meta`, durably, so a
//!    later start with only the new key can say that a rotation is unfinished rather than
//!    that the key is wrong;
//! 2. every grant and every unused OAuth state not yet sealed with the current key is
//!    opened and sealed again, [`StoreConfig::reseal_chunk`](super::StoreConfig) records
//!    per write. Each write goes through the journal (atomic) under the writer lock, and is
//!    a compare-and-set: a record whose bytes changed since they were read — a connection
//!    that rotated its grant meanwhile, sealing it with the current key — is left as it
//!    now is;
//! 3. the database is flushed, then the check value is sealed with the current key and the
//!    target removed, in one sled batch.
//!
//! A stop anywhere before 3 leaves a store the next start with the same keys finishes: the
//! records already re-sealed are skipped. A record no configured key opens because it
//! names a key that is not configured stops the rotation with
//! [`VaultError::UnknownKey`](crate::VaultError); one that opens with no key at all was
//! unreadable before and is left, named in [`Store::unreadable`](crate::Store).

use crate::batch::encoded;
use crate::codec::KeyDisplay;
use crate::vault::VaultError;
use crate::StoreError;

use super::layout::{self, OAuthStateRecord, Write, T};
use super::SledStore;

/// How often a long rotation says how far it got.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Called before each compare-and-set write of a rotation with the number of records
/// re-sealed so far; an error stops the rotation there (tests use it to stop mid-way and
/// to write between a read and its compare-and-set).
pub type ResealHook = Box<dyn FnMut(&SledStore, usize) -> Result<(), StoreError> + Send>;

/// What a finished rotation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealCounts {
    /// Grants sealed again under the current key.
    pub grants: usize,
    /// Unused OAuth states sealed again under the current key.
    pub oauth_states: usize,
    /// Records already under the current key (re-sealed by an earlier, interrupted run,
    /// or written since). Used OAuth states hold nothing sealed and are not counted.
    pub already_current: usize,
    /// Records that changed between their read and their compare-and-set, and were left
    /// as they now are.
    pub changed_meanwhile: usize,
    /// Records no key opens (unreadable before the rotation too), left as they are.
    pub unopenable: usize,
}

/// A record read, and what it becomes.
struct Pending {
    key: Vec<u8>,
    read: sled::IVec,
    resealed: Vec<u8>,
}

impl SledStore {
    /// Steps 1–3 above. Runs before the store is handed out; the writer lock makes it
    /// correct even beside other writers.
    pub(super) fn finish_key_rotation(
        &self,
        chunk: usize,
        hook: &mut Option<ResealHook>,
    ) -> Result<ResealCounts, StoreError> {
        let vault = &self.inner.vault;
        let meta = self.tree(T::Meta);
        let target = vault.key_id();
        if meta.get(layout::META_KEY_ROTATION)?.as_deref() != Some(target.as_bytes()) {
            meta.insert(layout::META_KEY_ROTATION, target.as_bytes())?;
            self.inner.db.flush()?;
        }
        tracing::info!(key = %target, "store: master key rotation: re-sealing what previous keys sealed");
        let mut counts = ResealCounts::default();
        let chunk = chunk.max(1);
        let mut done = 0usize;
        // Progress at most every few seconds: a large store writes many chunks.
        let mut last_said = std::time::Instant::now();
        for t in [T::Grants, T::OAuthStates] {
            let mut pending = Vec::new();
            for item in self.tree(t).iter() {
                let (key, read) = item?;
                let resealed = match t {
                    T::Grants => self.reseal_grant(&key, &read),
                    _ => self.reseal_oauth_state(&key, &read),
                };
                match resealed {
                    Ok(Some(resealed)) => pending.push(Pending {
                        key: key.to_vec(),
                        read,
                        resealed,
                    }),
                    Ok(None) => {
                        if !matches!(t, T::OAuthStates) || self.holds_sealed(&read) {
                            counts.already_current += 1;
                        }
                    }
                    Err(StoreError::Vault(VaultError::Unopenable { what })) => {
                        tracing::warn!("store: master key rotation: {what} opens with no configured key; left as it is");
                        self.note_unreadable(
                            t,
                            t.name(),
                            &key,
                            "no configured master key opens it",
                        );
                        counts.unopenable += 1;
                    }
                    Err(e) => return Err(e),
                }
                if pending.len() >= chunk {
                    done += self.compare_and_reseal(t, &mut pending, hook, done, &mut counts)?;
                    if last_said.elapsed() >= PROGRESS_EVERY {
                        tracing::info!(
                            "store: master key rotation: {done} records re-sealed so far"
                        );
                        last_said = std::time::Instant::now();
                    }
                }
            }
            done += self.compare_and_reseal(t, &mut pending, hook, done, &mut counts)?;
        }
        self.inner.db.flush()?;
        let mut batch = sled::Batch::default();
        batch.insert(
            layout::META_KEY_CHECK,
            vault.seal(layout::META_KEY_CHECK, layout::KEY_CHECK_PLAINTEXT),
        );
        batch.remove(layout::META_KEY_ROTATION);
        meta.apply_batch(batch)?;
        self.inner.db.flush()?;
        Ok(counts)
    }

    /// A grant's sealed bytes under the current key (`None`: they already are).
    fn reseal_grant(&self, key: &[u8], sealed: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .vault
            .reseal(&layout::grant_aad(key), sealed, || {
                format!("grant {}", KeyDisplay(key.to_vec()))
            })?)
    }

    /// An OAuth state record with its sealed part under the current key (`None`: it
    /// already is, or it was used and holds nothing sealed).
    fn reseal_oauth_state(&self, key: &[u8], bytes: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut record: OAuthStateRecord = self.decode(T::OAuthStates, key, bytes)?;
        if record.used || record.sealed.is_empty() {
            return Ok(None);
        }
        let state = String::from_utf8_lossy(key);
        let Some(resealed) =
            self.inner
                .vault
                .reseal(&layout::oauth_aad(&state), &record.sealed, || {
                    "an OAuth state".to_string()
                })?
        else {
            return Ok(None);
        };
        record.sealed = resealed;
        Ok(Some(encoded(&record)?))
    }

    /// Whether an OAuth state record still holds a sealed part (a used one does not).
    fn holds_sealed(&self, bytes: &[u8]) -> bool {
        crate::codec::decode::<OAuthStateRecord>("oauth_states", b"", bytes)
            .is_ok_and(|r| !r.used && !r.sealed.is_empty())
    }

    /// Writes the re-sealed records whose bytes are still the ones read, in one journaled
    /// write under the writer lock. Returns how many it wrote.
    fn compare_and_reseal(
        &self,
        t: T,
        pending: &mut Vec<Pending>,
        hook: &mut Option<ResealHook>,
        done: usize,
        counts: &mut ResealCounts,
    ) -> Result<usize, StoreError> {
        if pending.is_empty() {
            return Ok(0);
        }
        if let Some(hook) = hook.as_mut() {
            hook(self, done)?;
        }
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut writes = Vec::with_capacity(pending.len());
        for p in pending.drain(..) {
            if self.tree(t).get(&p.key)?.as_ref() == Some(&p.read) {
                writes.push(Write::put(t, p.key, p.resealed));
            } else {
                counts.changed_meanwhile += 1;
            }
        }
        if !writes.is_empty() {
            self.write_locked(w.seq_high, &writes)?;
        }
        drop(w);
        match t {
            T::Grants => counts.grants += writes.len(),
            _ => counts.oauth_states += writes.len(),
        }
        Ok(writes.len())
    }
}
