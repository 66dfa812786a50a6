//! The one way records become bytes and back: every stored value is
//! `[record version][bincode 2 (serde, standard config)]`.
//!
//! Each kind of record ([`Record`]) carries its own version. A record written by an older
//! version of its kind is read through that kind's [`Record::upgrade`]; one written by a
//! newer version is refused ([`CodecProblem::NewerVersion`]), never half-read. Decoding
//! caps the size it will allocate and insists every byte is used. A record that fails any
//! of this is a [`CodecError`] naming the tree and the key — never a panic.
//!
//! Changing a stored type's shape means: bump its `VERSION`, teach `upgrade` the old
//! shape, and add the old golden record to `storage/tests/records/`. The golden-record
//! test (`tests/records.rs`) fails until all three are done. bincode cannot round-trip
//! internally tagged enums, `flatten` or `skip_serializing_if`, so stored types stay plain
//! (externally tagged enums, no skips).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// A kind of stored record, with the version of its shape this build writes.
pub trait Record: Serialize + DeserializeOwned {
    /// The kind's name in errors and reports (`post_status`, `connection`…).
    const KIND: &'static str;
    /// The version this build writes. Never reuse a number for another shape.
    const VERSION: u8;

    /// Reads a record written at an older `version` of this kind. The default knows none:
    /// a kind that has only ever had one shape refuses anything else.
    fn upgrade(version: u8, _body: &[u8]) -> Result<Self, CodecProblem> {
        Err(CodecProblem::UnknownVersion(version))
    }
}

/// Why stored bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecProblem {
    Empty,
    /// A version this build never wrote and cannot read.
    UnknownVersion(u8),
    /// Written by a newer build: refused rather than half-read.
    NewerVersion {
        found: u8,
        supported: u8,
    },
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
            CodecProblem::UnknownVersion(v) => {
                write!(f, "it has format version {v}, which this build cannot read")
            }
            CodecProblem::NewerVersion { found, supported } => write!(
                f,
                "it has format version {found}, written by a newer release; this build reads up to version {supported}"
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

/// `[T::VERSION][bincode of value]`.
pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, EncodeError> {
    encode_as(T::VERSION, value)
}

/// The bytes of `value` under an explicit version byte — for writing the golden records
/// of older shapes in tests, and nothing else.
pub fn encode_as<T: Serialize + ?Sized>(version: u8, value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.push(version);
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| EncodeError(e.to_string()))?;
    // bincode's limit binds only the decoder: refuse here what `decode` would refuse, so
    // that no record is ever written that cannot be read back.
    let body = out.len() - 1;
    if body > MAX_RECORD_BYTES {
        return Err(EncodeError(format!(
            "{body} bytes is over the {MAX_RECORD_BYTES}-byte record limit"
        )));
    }
    Ok(out)
}

/// Reads a record of kind `T`, upgrading an older version, refusing a newer one.
pub fn decode<T: Record>(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<T, CodecError> {
    let fail = |problem| CodecError {
        tree,
        key: KeyDisplay(key.to_vec()),
        problem,
    };
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| fail(CodecProblem::Empty))?;
    if version > T::VERSION {
        return Err(fail(CodecProblem::NewerVersion {
            found: version,
            supported: T::VERSION,
        }));
    }
    if version < T::VERSION {
        return T::upgrade(version, body).map_err(fail);
    }
    decode_body(body).map_err(fail)
}

/// bincode of a record body (after its version byte), with every byte used.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecProblem> {
    if body.len() > MAX_RECORD_BYTES {
        return Err(CodecProblem::Malformed(format!(
            "{} bytes is over the {MAX_RECORD_BYTES}-byte record limit",
            body.len()
        )));
    }
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(body, config())
        .map_err(|e| CodecProblem::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecProblem::TrailingBytes(body.len() - used));
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

    impl Record for Sample {
        const KIND: &'static str = "sample";
        const VERSION: u8 = 3;

        fn upgrade(version: u8, body: &[u8]) -> Result<Sample, CodecProblem> {
            #[derive(serde::Deserialize)]
            struct SampleV2 {
                name: String,
                n: u64,
            }
            match version {
                2 => {
                    let old: SampleV2 = decode_body(body)?;
                    Ok(Sample {
                        name: old.name,
                        n: old.n,
                        tags: Vec::new(),
                        opt: None,
                    })
                }
                v => Err(CodecProblem::UnknownVersion(v)),
            }
        }
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
    fn round_trips_behind_its_kinds_version_byte() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], Sample::VERSION);
        let back: Sample = decode("t", b"k", &bytes).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn an_older_version_is_upgraded_and_a_newer_one_refused() {
        #[derive(serde::Serialize)]
        struct V2<'a> {
            name: &'a str,
            n: u64,
        }
        let old = encode_as(2, &V2 { name: "jane", n: 7 }).unwrap();
        let up: Sample = decode("t", b"k", &old).unwrap();
        assert_eq!((up.name.as_str(), up.n, up.tags.len()), ("jane", 7, 0));

        let mut newer = encode(&sample()).unwrap();
        newer[0] = 4;
        assert_eq!(
            decode::<Sample>("t", b"k", &newer).unwrap_err().problem,
            CodecProblem::NewerVersion {
                found: 4,
                supported: 3
            }
        );
        let mut unknown = encode(&sample()).unwrap();
        unknown[0] = 1;
        assert_eq!(
            decode::<Sample>("t", b"k", &unknown).unwrap_err().problem,
            CodecProblem::UnknownVersion(1)
        );
    }

    #[test]
    fn bad_bytes_are_typed_errors_naming_tree_and_key() {
        let good = encode(&sample()).unwrap();
        let err = decode::<Sample>("posts", b"k\x01", &[]).unwrap_err();
        assert_eq!(err.problem, CodecProblem::Empty);
        assert_eq!(err.tree, "posts");
        assert_eq!(err.key.to_string(), "\"k\\x01\"");

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
            Sample::VERSION,
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

    /// Whatever `encode` accepts, `decode` reads back: a record over the limit is refused
    /// when written, not discovered unreadable later.
    #[test]
    fn a_record_over_the_limit_is_refused_when_encoded() {
        let mut big = sample();
        big.name = "x".repeat(MAX_RECORD_BYTES);
        let err = encode(&big).unwrap_err();
        assert!(err.0.contains("record limit"), "{err}");

        let mut fits = sample();
        fits.name = "x".repeat(MAX_RECORD_BYTES - 64);
        let bytes = encode(&fits).unwrap();
        assert_eq!(decode::<Sample>("t", b"k", &bytes).unwrap(), fits);
    }

    #[test]
    fn random_garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..5_000 {
            let len = rng.gen_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if !bytes.is_empty() && rng.gen_bool(0.8) {
                bytes[0] = rng.gen_range(0..4);
            }
            let _ = decode::<Sample>("t", b"k", &bytes);
            let _ = decode::<crate::PostBody>("t", b"k", &bytes);
            let _ = decode::<crate::PostStatus>("t", b"k", &bytes);
            let _ = decode::<crate::Connection>("t", b"k", &bytes);
            let _ = decode::<crate::Event>("t", b"k", &bytes);
        }
    }
}
