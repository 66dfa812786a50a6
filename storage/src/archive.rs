//! The backup archive: a store's every record, as stored, in one file of our own format.
//!
//! A backend writes it from a consistent snapshot ([`Store::backup`](crate::Store::backup))
//! and reads it back into a new data directory
//! ([`SledStore::restore`](crate::SledStore::restore)). Records are copied as the store
//! holds them: grants and pending authorizations stay sealed, and the master key is never
//! in an archive — a backup is useless without its key, and must be kept apart from it.
//!
//! Layout (integers big-endian):
//!
//! | part | bytes |
//! |---|---|
//! | magic | `SSBACKUP` (8) |
//! | archive format | u16 ([`ARCHIVE_FORMAT`]) |
//! | backend | u8 length, then its name (`sled`) |
//! | store format | u32: the layout the records are in |
//! | written at | i64, Unix milliseconds (the writer's wall clock) |
//! | records | per record: tag `0x01`, u8 tree-name length, tree name, u32 key length, key, u32 value length, value |
//! | end | tag `0xff`, u64 record count, SHA-256 (32) of every byte before it |
//!
//! A reader refuses, each with its own [`ArchiveError`]: another magic, a newer archive
//! format, a truncated file, a checksum or count that does not match, and anything after
//! the end. Nothing read from an archive is to be trusted until its end has been checked:
//! [`verify`] reads it whole first.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};

use sha2::{Digest, Sha256};

use crate::Timestamp;

/// The first bytes of every archive.
pub const MAGIC: &[u8; 8] = b"SSBACKUP";
/// The archive format this build writes and reads.
pub const ARCHIVE_FORMAT: u16 = 1;
/// No key or value in an archive is longer (records are far smaller: the codec caps a
/// record at [`crate::codec::MAX_RECORD_BYTES`]); a longer length means a damaged file,
/// refused before anything is allocated for it.
pub const MAX_FIELD_BYTES: usize = 16 << 20;

const TAG_RECORD: u8 = 0x01;
const TAG_END: u8 = 0xff;

/// Why an archive cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a Social Studio backup archive (its first bytes are not `SSBACKUP`)")]
    NotAnArchive,
    #[error("the archive is in archive format {found}, written by a newer release; this release reads formats up to {supported}")]
    NewerArchiveFormat { found: u16, supported: u16 },
    #[error("the archive holds a {found} store; this backend is {expected}")]
    OtherBackend { found: String, expected: String },
    #[error("the archive holds store format {found}, written by a newer release; this release restores format {supported}")]
    NewerStoreFormat { found: u32, supported: u32 },
    #[error("the archive holds store format {found}; this release restores format {supported} only (restore it with the release that wrote it, then upgrade)")]
    OlderStoreFormat { found: u32, supported: u32 },
    #[error("the archive is truncated: it ends before its checksum (a copy cut short?)")]
    Truncated,
    #[error("the archive's checksum does not match its content: it was altered or damaged")]
    ChecksumMismatch,
    #[error("the archive is malformed: {0}")]
    Malformed(String),
    #[error("the archive names a tree this store does not have: {0:?}")]
    UnknownTree(String),
    #[error("archive I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// What an archive says about itself before its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// The backend that wrote it (`sled`).
    pub backend: String,
    /// The store layout format its records are in.
    pub store_format: u32,
    /// When it was written, by the writer's wall clock.
    pub written_at: Timestamp,
}

/// One record: its tree, key and value, as the store holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecord {
    pub tree: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// What a whole archive holds, once its end has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub header: ArchiveHeader,
    pub records: u64,
    /// Records per tree.
    pub per_tree: BTreeMap<String, u64>,
    /// The archive's length in bytes.
    pub bytes: u64,
}

/// Counts and hashes every byte that passes through.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Writes an archive record by record; [`ArchiveWriter::finish`] writes its end. An
/// archive never finished has no end, and every reader refuses it as truncated.
pub struct ArchiveWriter<W: Write> {
    out: Hashing<BufWriter<W>>,
    records: u64,
    per_tree: BTreeMap<String, u64>,
    header: ArchiveHeader,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the header.
    pub fn new(out: W, header: ArchiveHeader) -> Result<ArchiveWriter<W>, ArchiveError> {
        let backend = u8::try_from(header.backend.len())
            .map_err(|_| ArchiveError::Malformed("backend name longer than 255 bytes".into()))?;
        let mut out = Hashing {
            inner: BufWriter::with_capacity(256 * 1024, out),
            hash: Sha256::new(),
            bytes: 0,
        };
        out.write_all(MAGIC)?;
        out.write_all(&ARCHIVE_FORMAT.to_be_bytes())?;
        out.write_all(&[backend])?;
        out.write_all(header.backend.as_bytes())?;
        out.write_all(&header.store_format.to_be_bytes())?;
        out.write_all(&header.written_at.unix_millis().to_be_bytes())?;
        Ok(ArchiveWriter {
            out,
            records: 0,
            per_tree: BTreeMap::new(),
            header,
        })
    }

    /// Appends one record.
    pub fn record(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), ArchiveError> {
        let name = u8::try_from(tree.len())
            .map_err(|_| ArchiveError::Malformed(format!("tree name {tree:?} too long")))?;
        let field = |what: &str, bytes: &[u8]| {
            if bytes.len() > MAX_FIELD_BYTES {
                return Err(ArchiveError::Malformed(format!(
                    "a {what} of {} bytes in tree {tree:?} is longer than an archive holds",
                    bytes.len()
                )));
            }
            Ok((bytes.len() as u32).to_be_bytes())
        };
        let key_len = field("key", key)?;
        let value_len = field("value", value)?;
        self.out.write_all(&[TAG_RECORD, name])?;
        self.out.write_all(tree.as_bytes())?;
        self.out.write_all(&key_len)?;
        self.out.write_all(key)?;
        self.out.write_all(&value_len)?;
        self.out.write_all(value)?;
        self.records += 1;
        match self.per_tree.get_mut(tree) {
            Some(n) => *n += 1,
            None => {
                self.per_tree.insert(tree.to_string(), 1);
            }
        }
        Ok(())
    }

    /// Writes the end (record count and checksum) and flushes; returns what was written
    /// and the sink.
    pub fn finish(mut self) -> Result<(ArchiveSummary, W), ArchiveError> {
        self.out.write_all(&[TAG_END])?;
        self.out.write_all(&self.records.to_be_bytes())?;
        let digest = self.out.hash.clone().finalize();
        self.out.inner.write_all(&digest)?;
        self.out.inner.flush()?;
        let bytes = self.out.bytes + digest.len() as u64;
        let sink = self
            .out
            .inner
            .into_inner()
            .map_err(|e| ArchiveError::Io(e.into_error()))?;
        Ok((
            ArchiveSummary {
                header: self.header,
                records: self.records,
                per_tree: self.per_tree,
                bytes,
            },
            sink,
        ))
    }
}

/// Reads an archive record by record. A record it hands out is not yet vouched for: only
/// when [`ArchiveReader::next_record`] has returned `None` has the end been checked.
pub struct ArchiveReader<R: Read> {
    input: Hashing<R>,
    header: ArchiveHeader,
    records: u64,
    per_tree: BTreeMap<String, u64>,
    done: bool,
}

/// Reads exactly `buf.len()` bytes; an early end is [`ArchiveError::Truncated`].
fn fill(input: &mut impl Read, buf: &mut [u8]) -> Result<(), ArchiveError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::Truncated,
        _ => ArchiveError::Io(e),
    })
}

fn array<const N: usize>(input: &mut impl Read) -> Result<[u8; N], ArchiveError> {
    let mut buf = [0u8; N];
    fill(input, &mut buf)?;
    Ok(buf)
}

fn field(input: &mut impl Read, len: usize, what: &str) -> Result<Vec<u8>, ArchiveError> {
    if len > MAX_FIELD_BYTES {
        return Err(ArchiveError::Malformed(format!(
            "a {what} claims {len} bytes, more than an archive holds"
        )));
    }
    let mut buf = vec![0u8; len];
    fill(input, &mut buf)?;
    Ok(buf)
}

impl<R: Read> ArchiveReader<R> {
    /// Reads and checks the header: the magic and the archive format.
    pub fn open(input: R) -> Result<ArchiveReader<R>, ArchiveError> {
        let mut input = Hashing {
            inner: input,
            hash: Sha256::new(),
            bytes: 0,
        };
        let magic: [u8; 8] = match array(&mut input) {
            Ok(m) => m,
            Err(ArchiveError::Truncated) => return Err(ArchiveError::NotAnArchive),
            Err(e) => return Err(e),
        };
        if &magic != MAGIC {
            return Err(ArchiveError::NotAnArchive);
        }
        let format = u16::from_be_bytes(array(&mut input)?);
        if format > ARCHIVE_FORMAT {
            return Err(ArchiveError::NewerArchiveFormat {
                found: format,
                supported: ARCHIVE_FORMAT,
            });
        }
        if format == 0 {
            return Err(ArchiveError::Malformed("archive format 0".into()));
        }
        let [backend_len] = array(&mut input)?;
        let backend = String::from_utf8(field(&mut input, backend_len.into(), "backend name")?)
            .map_err(|_| ArchiveError::Malformed("the backend name is not UTF-8".into()))?;
        let store_format = u32::from_be_bytes(array(&mut input)?);
        let written_at = Timestamp::from_unix_millis(i64::from_be_bytes(array(&mut input)?));
        Ok(ArchiveReader {
            input,
            header: ArchiveHeader {
                backend,
                store_format,
                written_at,
            },
            records: 0,
            per_tree: BTreeMap::new(),
            done: false,
        })
    }

    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// The next record, or `None` once the end has been read and found whole: the record
    /// count and checksum match and nothing follows.
    pub fn next_record(&mut self) -> Result<Option<ArchiveRecord>, ArchiveError> {
        if self.done {
            return Ok(None);
        }
        let [tag] = array(&mut self.input)?;
        match tag {
            TAG_RECORD => {
                let [name_len] = array(&mut self.input)?;
                let tree = String::from_utf8(field(&mut self.input, name_len.into(), "tree name")?)
                    .map_err(|_| ArchiveError::Malformed("a tree name is not UTF-8".into()))?;
                let key_len = u32::from_be_bytes(array(&mut self.input)?) as usize;
                let key = field(&mut self.input, key_len, "key")?;
                let value_len = u32::from_be_bytes(array(&mut self.input)?) as usize;
                let value = field(&mut self.input, value_len, "value")?;
                self.records += 1;
                match self.per_tree.get_mut(&tree) {
                    Some(n) => *n += 1,
                    None => {
                        self.per_tree.insert(tree.clone(), 1);
                    }
                }
                Ok(Some(ArchiveRecord { tree, key, value }))
            }
            TAG_END => {
                let count = u64::from_be_bytes(array(&mut self.input)?);
                let expected = self.input.hash.clone().finalize();
                let found: [u8; 32] = array(&mut self.input.inner)?;
                if expected.as_slice() != found {
                    return Err(ArchiveError::ChecksumMismatch);
                }
                if count != self.records {
                    return Err(ArchiveError::Malformed(format!(
                        "its end counts {count} records, it holds {}",
                        self.records
                    )));
                }
                let mut rest = [0u8; 1];
                loop {
                    match self.input.inner.read(&mut rest) {
                        Ok(0) => break,
                        Ok(_) => {
                            return Err(ArchiveError::Malformed(
                                "bytes follow its end (two archives joined?)".into(),
                            ))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                self.input.bytes += found.len() as u64;
                self.done = true;
                Ok(None)
            }
            other => Err(ArchiveError::Malformed(format!(
                "unknown tag {other:#04x} after {} records (damaged?)",
                self.records
            ))),
        }
    }

    /// What the archive held; `None` until its end has been checked.
    pub fn summary(&self) -> Option<ArchiveSummary> {
        self.done.then(|| ArchiveSummary {
            header: self.header.clone(),
            records: self.records,
            per_tree: self.per_tree.clone(),
            bytes: self.input.bytes,
        })
    }
}

/// Reads a whole archive and checks it: header, every record, count and checksum.
pub fn verify(input: impl Read) -> Result<ArchiveSummary, ArchiveError> {
    let mut reader = ArchiveReader::open(input)?;
    while reader.next_record()?.is_some() {}
    reader
        .summary()
        .ok_or_else(|| ArchiveError::Malformed("its end was not read".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = ArchiveWriter::new(
            Vec::new(),
            ArchiveHeader {
                backend: "sled".into(),
                store_format: 2,
                written_at: Timestamp::from_unix_millis(1_700_000_000_000),
            },
        )
        .unwrap();
        w.record("connections", b"jane\0x", &[1, 2, 3]).unwrap();
        w.record("grants", b"jane\0x", &[0xde; 300]).unwrap();
        w.record("meta", b"empty", &[]).unwrap();
        w.finish().unwrap().1
    }

    #[test]
    fn what_is_written_reads_back_whole() {
        let bytes = sample();
        let mut r = ArchiveReader::open(bytes.as_slice()).unwrap();
        assert_eq!(r.header().backend, "sled");
        assert_eq!(r.header().store_format, 2);
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            got.push(rec);
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].tree, "grants");
        assert_eq!(got[1].value, vec![0xde; 300]);
        assert_eq!(got[2].value, Vec::<u8>::new());
        let summary = r.summary().unwrap();
        assert_eq!(summary.records, 3);
        assert_eq!(summary.bytes, bytes.len() as u64);
        assert_eq!(summary.per_tree["grants"], 1);
    }

    #[test]
    fn every_cut_short_archive_is_refused() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let e = verify(&bytes[..len]).unwrap_err();
            assert!(
                matches!(e, ArchiveError::Truncated | ArchiveError::NotAnArchive),
                "cut at {len}: {e}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = sample();
        for at in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= 0x40;
            assert!(verify(altered.as_slice()).is_err(), "flip at {at} passed");
        }
    }

    #[test]
    fn bytes_after_the_end_are_refused() {
        let mut bytes = sample();
        bytes.push(0);
        assert!(matches!(
            verify(bytes.as_slice()),
            Err(ArchiveError::Malformed(_))
        ));
    }

    #[test]
    fn a_newer_archive_format_is_refused_by_name() {
        let mut bytes = sample();
        bytes[8..10].copy_from_slice(&(ARCHIVE_FORMAT + 1).to_be_bytes());
        assert!(matches!(
            verify(bytes.as_slice()),
            Err(ArchiveError::NewerArchiveFormat { found, .. }) if found == ARCHIVE_FORMAT + 1
        ));
    }
}
