//! The vault: authenticated encryption of secrets before they reach sled.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per seal, so nonces never need
//! coordinating. The caller's associated data (the connection key for a grant) is bound
//! into the tag: a sealed grant copied under another connection's key fails to open.
//!
//! The master key comes from `SOCIAL_STUDIO_MASTER_KEY` (base64 of 32 bytes) or from a key
//! file, by default `master.key` in the data directory, created on first open with mode
//! 0600 — or, from a program that embeds the engine, as a value from its own secret store
//! ([`KeySource::Provided`]). A key beside the data it protects is a convenience for local
//! use only; the [`KeySource`] tells the service so it can say that when it starts.
//!
//! **Rotation.** A vault holds one current key and any number of previous ones
//! ([`MasterKeys`]): it seals with the current key only and opens with whichever key
//! sealed the value. Previous keys come from `SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS`
//! (base64, comma-separated) or from the key file's further lines (the first line is the
//! current key). A seal names its key:
//!
//! - version 1 (releases before key rotation): `[1][nonce 24][ciphertext + tag]`, opened by
//!   trying each known key, the current one first;
//! - version 2: `[2][key id 8][nonce 24][ciphertext + tag]`, where the [`KeyId`] is a hash
//!   of the key under a fixed label (its first 8 bytes): it names a key, and the key cannot
//!   be recovered from it.
//!
//! The store re-seals everything an old key sealed when it opens (see the sled backend).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Environment variable that carries the master key (base64, 32 bytes).
pub const MASTER_KEY_ENV: &str = "SOCIAL_STUDIO_MASTER_KEY";
/// Environment variable that carries the previous master keys during a rotation (base64,
/// comma-separated).
pub const PREVIOUS_MASTER_KEYS_ENV: &str = "SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS";
/// File name of the generated key inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// The seal format before key rotation: no key id.
const SEAL_V1: u8 = 1;
/// The seal format that names its key.
const SEAL_V2: u8 = 2;
const NONCE_LEN: usize = 24;
const KEY_ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// The label hashed with a key into its [`KeyId`].
const KEY_ID_LABEL: &[u8] = b"social-studio vault key id v1\0";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the master key must be base64 of exactly 32 bytes: {0}")]
    InvalidMasterKey(String),
    #[error("the master key file {path} cannot be used: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the master key does not open this store's data: it is not the key the data was sealed with (to rotate keys, set the new key as the master key and the old one in SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS or the key file's second line until the store says the rotation is finished)")]
    WrongMasterKey,
    #[error("a rotation to master key {current} began and has not finished, and no previous key that opens the rest of this store's data is configured: start once more with the previous key in SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS (or the key file's second line) so the store can re-seal what remains; once it says the rotation is finished the previous key can be dropped")]
    RotationUnfinished { current: KeyId },
    #[error("sealed value {what} cannot be opened: it was altered, moved from another key, or sealed with another master key")]
    Unopenable { what: String },
    #[error("sealed value {what} was sealed with master key {key_id}, which is neither the master key nor one of the previous master keys configured")]
    UnknownKey { what: String, key_id: KeyId },
}

/// Names a master key in seals and messages: the first 8 bytes of SHA-256 over a fixed
/// label and the key. Printed as hex; the key cannot be recovered from it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<KeyId> {
        bytes.try_into().ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit key. Wiped from memory when dropped; never printed.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Where the master key came from, so the service can warn about a key kept on disk
/// beside the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `SOCIAL_STUDIO_MASTER_KEY` (and `SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS`).
    Environment,
    /// A key file: the one at `path`, read, or `created` with a fresh key just now.
    File { path: PathBuf, created: bool },
    /// Passed in by the program that opened the store, as a value: a host application's
    /// own secret store (the root crate's `StudioOptions::master_keys`), a tool, a test.
    /// Neither the environment nor a key file was read.
    Provided,
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        MasterKey(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }

    pub fn from_base64(text: &str) -> Result<MasterKey, VaultError> {
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| VaultError::InvalidMasterKey(e.to_string()))?,
        );
        let arr: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::InvalidMasterKey(format!("decoded to {} bytes", raw.len())))?;
        Ok(MasterKey::from_bytes(arr))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }

    /// The id seals made with this key carry.
    pub fn id(&self) -> KeyId {
        let mut h = Sha256::new();
        h.update(KEY_ID_LABEL);
        h.update(self.0.as_ref());
        let digest = h.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// Keys in base64, separated by commas or whitespace (the form of
    /// `SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS` and of the key file).
    pub fn parse_list(text: &str) -> Result<Vec<MasterKey>, VaultError> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(MasterKey::from_base64)
            .collect()
    }

    /// The environment's key if `env_value` is set, else the key file in `data_dir`,
    /// created (mode 0600) if it does not exist yet.
    pub fn resolve(
        data_dir: &Path,
        env_value: Option<&str>,
    ) -> Result<(MasterKey, KeySource), VaultError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return Ok((MasterKey::from_base64(v)?, KeySource::Environment));
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        Self::load_or_create_file(&path)
    }

    /// Reads `SOCIAL_STUDIO_MASTER_KEY`, falling back to the key file in `data_dir`. The
    /// current key only: [`MasterKeys::from_environment_or_file`] reads the previous ones
    /// too.
    pub fn from_environment_or_file(data_dir: &Path) -> Result<(MasterKey, KeySource), VaultError> {
        let env = std::env::var(MASTER_KEY_ENV).ok();
        Self::resolve(data_dir, env.as_deref())
    }

    /// The key on the first line of the key file at `path` (further lines are previous
    /// keys: see [`MasterKeys::resolve`]), or a new key written to a new file there
    /// (mode 0600) if it does not exist.
    pub fn load_or_create_file(path: &Path) -> Result<(MasterKey, KeySource), VaultError> {
        let io = |source| VaultError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((
                MasterKey::from_base64(text.lines().next().unwrap_or_default())?,
                KeySource::File {
                    path: path.to_owned(),
                    created: false,
                },
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let key = MasterKey::generate();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(io)?;
                f.write_all(key.to_base64().as_bytes()).map_err(io)?;
                f.write_all(b"\n").map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok((
                    key,
                    KeySource::File {
                        path: path.to_owned(),
                        created: true,
                    },
                ))
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// The current master key and the previous ones a rotation still needs.
#[derive(Clone, Debug)]
pub struct MasterKeys {
    pub current: MasterKey,
    /// Keys that may have sealed what the store holds; never used to seal.
    pub previous: Vec<MasterKey>,
}

impl MasterKeys {
    pub fn new(current: MasterKey) -> MasterKeys {
        MasterKeys {
            current,
            previous: Vec::new(),
        }
    }

    pub fn with_previous(current: MasterKey, previous: Vec<MasterKey>) -> MasterKeys {
        MasterKeys { current, previous }
    }

    /// The current key and the previous ones: from the environment's values if
    /// `env_key` is set (`env_previous` is `SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS`), else
    /// from the key file — `key_file`, or `master.key` in `data_dir` — created with one
    /// fresh key if it does not exist yet. In the key file the first line is the current
    /// key and every further line a previous one; `env_previous` adds to those too.
    pub fn resolve(
        data_dir: &Path,
        key_file: Option<&Path>,
        env_key: Option<&str>,
        env_previous: Option<&str>,
    ) -> Result<(MasterKeys, KeySource), VaultError> {
        let (mut keys, source) = match env_key.filter(|v| !v.trim().is_empty()) {
            Some(v) => (
                MasterKeys::new(MasterKey::from_base64(v)?),
                KeySource::Environment,
            ),
            None => {
                let default = data_dir.join(MASTER_KEY_FILE);
                let path = key_file.unwrap_or(&default);
                let (current, source) = MasterKey::load_or_create_file(path)?;
                let previous = match std::fs::read_to_string(path) {
                    Ok(text) => {
                        MasterKey::parse_list(&text.lines().skip(1).collect::<Vec<_>>().join("\n"))?
                    }
                    Err(source) => {
                        return Err(VaultError::KeyFile {
                            path: path.to_owned(),
                            source,
                        })
                    }
                };
                (MasterKeys::with_previous(current, previous), source)
            }
        };
        if let Some(list) = env_previous {
            keys.previous.extend(MasterKey::parse_list(list)?);
        }
        Ok((keys, source))
    }

    /// [`MasterKeys::resolve`] with `SOCIAL_STUDIO_MASTER_KEY` and
    /// `SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS` from the environment.
    pub fn from_environment_or_file(
        data_dir: &Path,
        key_file: Option<&Path>,
    ) -> Result<(MasterKeys, KeySource), VaultError> {
        let env_key = std::env::var(MASTER_KEY_ENV).ok();
        let env_previous = std::env::var(PREVIOUS_MASTER_KEYS_ENV).ok();
        MasterKeys::resolve(
            data_dir,
            key_file,
            env_key.as_deref(),
            env_previous.as_deref(),
        )
    }
}

/// What [`rotate_key_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileRotation {
    /// The new current key's id.
    pub current: KeyId,
    /// The keys the file holds after it, as previous keys, in order.
    pub previous: Vec<KeyId>,
}

/// Puts a fresh key at the head of the key file at `path`, keeping the keys it held below
/// it as previous keys: the store re-seals everything under the new key at its next
/// start. The file is replaced atomically (a temporary file made durable with mode 0600,
/// renamed over). A missing or unreadable file is an error: rotating needs the old key.
pub fn rotate_key_file(path: &Path) -> Result<KeyFileRotation, VaultError> {
    let io = |source| VaultError::KeyFile {
        path: path.to_owned(),
        source,
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let held = MasterKey::parse_list(&text)?;
    if held.is_empty() {
        return Err(VaultError::InvalidMasterKey(format!(
            "the key file {} holds no key",
            path.display()
        )));
    }
    let new = MasterKey::generate();
    let mut out = Zeroizing::new(String::new());
    for key in std::iter::once(&new).chain(&held) {
        out.push_str(&key.to_base64());
        out.push('\n');
    }
    let tmp = path.with_extension("key.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(out.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(KeyFileRotation {
        current: new.id(),
        previous: held.iter().map(MasterKey::id).collect(),
    })
}

/// One key's cipher and id.
struct Sealer {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    fn new(key: &MasterKey) -> Sealer {
        Sealer {
            id: key.id(),
            cipher: XChaCha20Poly1305::new(key.0.as_ref().into()),
        }
    }

    fn open(&self, aad: &[u8], nonce: &[u8], ct: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .ok()
    }
}

/// Seals values under the current master key and opens them under any known one.
pub struct Vault {
    current: Sealer,
    previous: Vec<Sealer>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault([redacted])")
    }
}

/// Which key a sealed value says sealed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedBy {
    /// A version-1 seal: it does not say.
    Unnamed,
    Key(KeyId),
    /// Not a seal this build knows.
    Malformed,
}

impl Vault {
    /// A vault with one key and no previous ones.
    pub fn new(key: &MasterKey) -> Vault {
        Vault::with_keys(&MasterKeys::new(key.clone()))
    }

    pub fn with_keys(keys: &MasterKeys) -> Vault {
        let current = Sealer::new(&keys.current);
        let mut previous: Vec<Sealer> = Vec::new();
        for key in &keys.previous {
            let sealer = Sealer::new(key);
            if sealer.id != current.id && previous.iter().all(|p| p.id != sealer.id) {
                previous.push(sealer);
            }
        }
        Vault { current, previous }
    }

    /// The id of the key this vault seals with.
    pub fn key_id(&self) -> KeyId {
        self.current.id
    }

    /// Whether previous keys are configured.
    pub fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    /// `[2][key id 8][nonce 24][ciphertext + tag]`, under the current key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Encryption only fails for plaintexts beyond ~256 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + ct.len());
        out.push(SEAL_V2);
        out.extend_from_slice(self.current.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Which key `sealed` names.
    pub fn sealed_by(sealed: &[u8]) -> SealedBy {
        match sealed.first() {
            Some(&SEAL_V1) if sealed.len() >= 1 + NONCE_LEN + TAG_LEN => SealedBy::Unnamed,
            Some(&SEAL_V2) if sealed.len() >= 1 + KEY_ID_LEN + NONCE_LEN + TAG_LEN => {
                KeyId::from_slice(&sealed[1..1 + KEY_ID_LEN])
                    .map_or(SealedBy::Malformed, SealedBy::Key)
            }
            _ => SealedBy::Malformed,
        }
    }

    /// Whether `sealed` is a version-2 seal under the current key: nothing a rotation
    /// must re-seal.
    pub fn is_sealed_with_current(&self, sealed: &[u8]) -> bool {
        Vault::sealed_by(sealed) == SealedBy::Key(self.current.id)
    }

    /// Whether the current key (not a previous one) opens `sealed`.
    pub fn current_opens(&self, aad: &[u8], sealed: &[u8]) -> bool {
        match Vault::sealed_by(sealed) {
            SealedBy::Malformed => false,
            SealedBy::Unnamed => {
                let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
                self.current.open(aad, nonce, ct).is_some()
            }
            SealedBy::Key(id) => {
                id == self.current.id && self.open(aad, sealed, String::new).is_ok()
            }
        }
    }

    /// Opens what [`Vault::seal`] produced (or a version-1 seal) with the same `aad`,
    /// under whichever known key sealed it. `what` names the value in the error.
    pub fn open(
        &self,
        aad: &[u8],
        sealed: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        match Vault::sealed_by(sealed) {
            SealedBy::Malformed => Err(VaultError::Unopenable { what: what() }),
            SealedBy::Unnamed => {
                let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
                std::iter::once(&self.current)
                    .chain(&self.previous)
                    .find_map(|s| s.open(aad, nonce, ct))
                    .ok_or_else(|| VaultError::Unopenable { what: what() })
            }
            SealedBy::Key(id) => {
                let Some(sealer) = std::iter::once(&self.current)
                    .chain(&self.previous)
                    .find(|s| s.id == id)
                else {
                    return Err(VaultError::UnknownKey {
                        what: what(),
                        key_id: id,
                    });
                };
                let (nonce, ct) = sealed[1 + KEY_ID_LEN..].split_at(NONCE_LEN);
                sealer
                    .open(aad, nonce, ct)
                    .ok_or_else(|| VaultError::Unopenable { what: what() })
            }
        }
    }

    /// Opens `sealed` and, unless the current key sealed it, seals it again under the
    /// current key: `None` when there is nothing to do.
    pub fn reseal(
        &self,
        aad: &[u8],
        sealed: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        if self.is_sealed_with_current(sealed) {
            return Ok(None);
        }
        let plain = self.open(aad, sealed, what)?;
        Ok(Some(self.seal(aad, &plain)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_associated_data() {
        let v = Vault::new(&MasterKey::generate());
        let sealed = v.seal(b"jane\0x", b"token-abc");
        assert!(!sealed.windows(9).any(|w| w == b"token-abc"));
        assert_eq!(
            &v.open(b"jane\0x", &sealed, String::new).unwrap()[..],
            b"token-abc"
        );
        assert!(matches!(
            v.open(b"john\0x", &sealed, || "grant".into()),
            Err(VaultError::Unopenable { .. })
        ));
        let other = Vault::new(&MasterKey::generate());
        assert!(other.open(b"jane\0x", &sealed, String::new).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(v.open(b"jane\0x", &tampered, String::new).is_err());
        assert!(v.open(b"jane\0x", &[1, 2, 3], String::new).is_err());
    }

    #[test]
    fn a_version_1_seal_still_opens() {
        // Made by the sealing code of releases before key rotation: see the HOW.md beside it.
        let sealed = include_bytes!("../tests/fixtures/vault/seal.v1.bin");
        let old = MasterKey::from_bytes([7; 32]);
        let v = Vault::new(&old);
        assert_eq!(Vault::sealed_by(sealed), SealedBy::Unnamed);
        assert_eq!(
            &v.open(b"jane\0x", sealed, String::new).unwrap()[..],
            b"token-from-format-1-seal"
        );
        assert!(!v.is_sealed_with_current(sealed), "a rotation re-seals it");
        // As a previous key too.
        let rotated = Vault::with_keys(&MasterKeys::with_previous(
            MasterKey::generate(),
            vec![old.clone()],
        ));
        assert_eq!(
            &rotated.open(b"jane\0x", sealed, String::new).unwrap()[..],
            b"token-from-format-1-seal"
        );
        let resealed = rotated
            .reseal(b"jane\0x", sealed, String::new)
            .unwrap()
            .expect("an old seal is re-sealed");
        assert!(rotated.is_sealed_with_current(&resealed));
        assert_eq!(
            &rotated.open(b"jane\0x", &resealed, String::new).unwrap()[..],
            b"token-from-format-1-seal"
        );
        // Without the key it is unopenable, as before.
        assert!(matches!(
            Vault::new(&MasterKey::generate()).open(b"jane\0x", sealed, || "grant".into()),
            Err(VaultError::Unopenable { .. })
        ));
    }

    #[test]
    fn a_seal_names_its_key_and_opens_under_any_known_key() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        assert_ne!(old.id(), new.id());
        assert_eq!(
            old.id(),
            MasterKey::from_base64(&old.to_base64()).unwrap().id()
        );
        let before = Vault::new(&old);
        let sealed = before.seal(b"aad", b"plain");
        assert_eq!(sealed[0], SEAL_V2);
        assert_eq!(Vault::sealed_by(&sealed), SealedBy::Key(old.id()));
        assert_eq!(&sealed[1..9], old.id().as_bytes());

        let during = Vault::with_keys(&MasterKeys::with_previous(new.clone(), vec![old.clone()]));
        assert_eq!(during.key_id(), new.id());
        assert_eq!(
            &during.open(b"aad", &sealed, String::new).unwrap()[..],
            b"plain"
        );
        let fresh = during.seal(b"aad", b"plain");
        assert_eq!(Vault::sealed_by(&fresh), SealedBy::Key(new.id()));
        assert!(during.is_sealed_with_current(&fresh));
        assert_eq!(during.reseal(b"aad", &fresh, String::new).unwrap(), None);
        let resealed = during
            .reseal(b"aad", &sealed, String::new)
            .unwrap()
            .unwrap();

        // After the rotation only the new key is needed; the old seal names a key it lacks.
        let after = Vault::new(&new);
        assert_eq!(
            &after.open(b"aad", &resealed, String::new).unwrap()[..],
            b"plain"
        );
        match after.open(b"aad", &sealed, || "grant jane/x".into()) {
            Err(e @ VaultError::UnknownKey { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&old.id().to_string()), "{text}");
                assert!(text.contains("grant jane/x"), "{text}");
            }
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        // A key id never carries the key.
        assert!(!format!("{:?}{}", old.id(), old.id()).contains(old.to_base64().as_str()));
    }

    #[test]
    fn previous_keys_come_from_the_environment_and_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            MasterKey::generate(),
            MasterKey::generate(),
            MasterKey::generate(),
        );
        let file = dir.path().join("keys");
        std::fs::write(
            &file,
            format!("{}\n{}\n", a.to_base64().as_str(), b.to_base64().as_str()),
        )
        .unwrap();
        let (keys, source) = MasterKeys::resolve(
            dir.path(),
            Some(&file),
            None,
            Some(&format!(" {} ,", c.to_base64().as_str())),
        )
        .unwrap();
        assert!(matches!(source, KeySource::File { created: false, .. }));
        assert_eq!(keys.current.id(), a.id());
        let previous: Vec<KeyId> = keys.previous.iter().map(MasterKey::id).collect();
        assert_eq!(previous, vec![b.id(), c.id()]);
        let (keys, source) = MasterKeys::resolve(
            dir.path(),
            Some(&file),
            Some(&c.to_base64()),
            Some(&format!(
                "{},{}",
                a.to_base64().as_str(),
                b.to_base64().as_str()
            )),
        )
        .unwrap();
        assert_eq!(source, KeySource::Environment);
        assert_eq!(keys.current.id(), c.id());
        assert_eq!(keys.previous.len(), 2);
        assert!(matches!(
            MasterKeys::resolve(dir.path(), Some(&file), None, Some("not-a-key")),
            Err(VaultError::InvalidMasterKey(_))
        ));
    }

    #[test]
    fn rotating_the_key_file_puts_a_new_key_first_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (old, _) = MasterKey::resolve(dir.path(), None).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let done = rotate_key_file(&path).unwrap();
        assert_eq!(done.previous, vec![old.id()]);
        let (keys, _) = MasterKeys::resolve(dir.path(), None, None, None).unwrap();
        assert_eq!(keys.current.id(), done.current);
        assert_ne!(done.current, old.id());
        assert_eq!(keys.previous.len(), 1);
        assert_eq!(keys.previous[0].id(), old.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            rotate_key_file(&dir.path().join("absent.key")),
            Err(VaultError::KeyFile { .. })
        ));
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, s1) = MasterKey::resolve(dir.path(), None).unwrap();
        assert!(matches!(s1, KeySource::File { created: true, .. }));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, s2) = MasterKey::resolve(dir.path(), None).unwrap();
        assert!(matches!(s2, KeySource::File { created: false, .. }));
        assert_eq!(k1.to_base64(), k2.to_base64());
        // The environment wins over the file.
        let env_key = MasterKey::generate();
        let (k3, s3) = MasterKey::resolve(dir.path(), Some(&env_key.to_base64())).unwrap();
        assert_eq!(s3, KeySource::Environment);
        assert_eq!(k3.to_base64(), env_key.to_base64());
        assert!(matches!(
            MasterKey::resolve(dir.path(), Some("c2hvcnQ=")),
            Err(VaultError::InvalidMasterKey(_))
        ));
        assert_eq!(format!("{k1:?}"), "MasterKey([redacted])");
    }
}
