//! The one way records become bytes and back.
//!
//! Every stored value is `[format version][bincode 2 (serde, standard config)]`. Decoding
//! checks the version, caps the size it will allocate, and insists every byte is used; a
//! record that fails any of these is a [`CodecError`] naming the tree and the key — never
//! a panic. bincode cannot round-trip internally tagged enums, `flatten` or
//! `skip_serializing_if`, so stored types stay plain (externally tagged enums, no skips).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version byte written before every record. Bump it (and keep a decoder for the old one)
/// when a stored type changes shape.
pub const FORMAT_VERSION: u8 = 1;

/// The largest record the decoder will accept; far above any real record, and small
/// enough that a corrupt length prefix cannot make the decoder allocate gigabytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_RECORD_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Why stored bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecProblem {
    Empty,
    UnknownVersion(u8),
    Malformed(String),
    TrailingBytes(usize),
}

/// A record that does not decode, with where it lives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {key} in tree `{tree}` cannot be read: {problem}")]
pub struct CodecError {
    pub tree: &'static str,
    pub key: KeyDisplay,
    pub problem: CodecProblem,
}

impl fmt::Display for CodecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecProblem::Empty => f.write_str("it is empty"),
            CodecProblem::UnknownVersion(v) => write!(
                f,
                "it has format version {v}, this build reads version {FORMAT_VERSION}"
            ),
            CodecProblem::Malformed(m) => write!(f, "it does not decode ({m})"),
            CodecProblem::TrailingBytes(n) => write!(f, "{n} unexpected bytes follow it"),
        }
    }
}

/// A storage key shown readably: printable ASCII as is, other bytes as `\xNN`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyDisplay(pub Vec<u8>);

impl fmt::Display for KeyDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in &self.0 {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Debug for KeyDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A value that could not be encoded (over the size limit, or a serde error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a record could not be encoded: {0}")]
pub struct EncodeError(pub String);

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, CodecError> {
    let fail = |problem| CodecError {
        tree,
        key: KeyDisplay(key.to_vec()),
        problem,
    };
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| fail(CodecProblem::Empty))?;
    if version != FORMAT_VERSION {
        return Err(fail(CodecProblem::UnknownVersion(version)));
    }
    if body.len() > MAX_RECORD_BYTES {
        return Err(fail(CodecProblem::Malformed(format!(
            "{} bytes is over the {MAX_RECORD_BYTES}-byte record limit",
            body.len()
        ))));
    }
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(body, config())
        .map_err(|e| fail(CodecProblem::Malformed(e.to_string())))?;
    if used != body.len() {
        return Err(fail(CodecProblem::TrailingBytes(body.len() - used)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        n: u64,
        tags: Vec<String>,
        opt: Option<i64>,
    }

    fn sample() -> Sample {
        Sample {
            name: "jane".into(),
            n: 42,
            tags: vec!["a".into()],
            opt: Some(-3),
        }
    }

    #[test]
    fn round_trips_behind_a_version_byte() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: Sample = decode("t", b"k", &bytes).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn bad_bytes_are_typed_errors_naming_tree_and_key() {
        let good = encode(&sample()).unwrap();
        let err = decode::<Sample>("posts", b"k\x01", &[]).unwrap_err();
        assert_eq!(err.problem, CodecProblem::Empty);
        assert_eq!(err.tree, "posts");
        assert_eq!(err.key.to_string(), "\"k\\x01\"");

        let mut v9 = good.clone();
        v9[0] = 9;
        assert_eq!(
            decode::<Sample>("posts", b"k", &v9).unwrap_err().problem,
            CodecProblem::UnknownVersion(9)
        );

        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            decode::<Sample>("posts", b"k", &trailing)
                .unwrap_err()
                .problem,
            CodecProblem::TrailingBytes(1)
        );

        let truncated = &good[..good.len() - 2];
        assert!(matches!(
            decode::<Sample>("posts", b"k", truncated)
                .unwrap_err()
                .problem,
            CodecProblem::Malformed(_)
        ));

        // A length prefix claiming ~2^62 bytes must be refused, not allocated.
        let huge = [
            FORMAT_VERSION,
            0xfd,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x3f,
        ];
        assert!(decode::<Sample>("posts", b"k", &huge).is_err());
    }

    #[test]
    fn random_garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..5_000 {
            let len = rng.gen_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if !bytes.is_empty() && rng.gen_bool(0.8) {
                bytes[0] = FORMAT_VERSION;
            }
            let _ = decode::<Sample>("t", b"k", &bytes);
            let _ = decode::<crate::Post>("t", b"k", &bytes);
            let _ = decode::<crate::Connection>("t", b"k", &bytes);
        }
    }
}
