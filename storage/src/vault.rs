//! The vault: authenticated encryption of secrets before they reach sled.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per seal, so nonces never need
//! coordinating. The caller's associated data (the connection key for a grant) is bound
//! into the tag: a sealed grant copied under another connection's key fails to open.
//!
//! The master key comes from `SOCIAL_STUDIO_MASTER_KEY` (base64 of 32 bytes) or from a key
//! file, by default `master.key` in the data directory, created on first open with mode
//! 0600. A key beside the data it protects is a convenience for local use only; the
//! [`KeySource`] tells the service so it can say that when it starts.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

/// Environment variable that carries the master key (base64, 32 bytes).
pub const MASTER_KEY_ENV: &str = "SOCIAL_STUDIO_MASTER_KEY";
/// File name of the generated key inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

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
    #[error("the master key does not open this store's data: it is not the key the data was sealed with")]
    WrongMasterKey,
    #[error("sealed value {what} cannot be opened: it was altered, moved from another key, or sealed with another master key")]
    Unopenable { what: String },
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
    Environment,
    File { path: PathBuf, created: bool },
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

    /// Reads `SOCIAL_STUDIO_MASTER_KEY`, falling back to the key file in `data_dir`.
    pub fn from_environment_or_file(data_dir: &Path) -> Result<(MasterKey, KeySource), VaultError> {
        let env = std::env::var(MASTER_KEY_ENV).ok();
        Self::resolve(data_dir, env.as_deref())
    }

    pub fn load_or_create_file(path: &Path) -> Result<(MasterKey, KeySource), VaultError> {
        let io = |source| VaultError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((
                MasterKey::from_base64(&text)?,
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

/// Seals and opens values under one master key.
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault([redacted])")
    }
}

impl Vault {
    pub fn new(key: &MasterKey) -> Vault {
        Vault {
            cipher: XChaCha20Poly1305::new(key.0.as_ref().into()),
        }
    }

    /// `[version][nonce 24][ciphertext + tag]`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
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
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`Vault::seal`] produced with the same `aad`. `what` names the value in
    /// the error.
    pub fn open(
        &self,
        aad: &[u8],
        sealed: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEAL_VERSION {
            return Err(VaultError::Unopenable { what: what() });
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Unopenable { what: what() })
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
