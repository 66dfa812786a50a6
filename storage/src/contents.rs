//! What a store holds, whichever backend wrote it: per kind of record, how many and a
//! SHA-256 over them in key order — computed from a backup archive
//! ([`crate::archive`]), so that two stores can be compared after a copy between
//! backends (`migrate-store`).
//!
//! Records are compared as the store holds them (sealed grants and authorizations stay
//! sealed; the digest is no secret, and neither backend can open it back). Where the
//! backends lay a record out differently it is brought to one form first: sled keeps a
//! commit's events in one record, PostgreSQL one row per event, so events are compared
//! one by one (number and content); an OAuth state is compared by its fields. What one
//! backend derives and the other counts (queue membership, indexes, counts) and what
//! each keeps for itself (its format, its key check value) is left out; the highest
//! event number handed out is a kind of its own, so a copy that would hand a number out
//! twice does not compare equal.

use std::collections::BTreeMap;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::archive::ArchiveReader;
use crate::codec;
use crate::sled_store::layout::{EventGroup, OAuthStateRecord};
use crate::{Event, StoreError};

/// Per kind of record: how many, and the SHA-256 of them in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub kinds: BTreeMap<&'static str, KindContents>,
}

/// One kind's count and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindContents {
    pub count: u64,
    /// Lower-case hex.
    pub digest: String,
}

/// The kinds compared, in the order they are reported.
pub const KINDS: [&str; 8] = [
    "connections",
    "grants",
    "post_bodies",
    "post_status",
    "events",
    "oauth_states",
    "idempotency",
    "event_numbers",
];

impl Contents {
    /// The kinds whose count or digest differ between `self` and `other`.
    pub fn differences(&self, other: &Contents) -> Vec<&'static str> {
        KINDS
            .into_iter()
            .filter(|k| self.kinds.get(k) != other.kinds.get(k))
            .collect()
    }

    /// Reads a whole archive (checked to its end) and summarises what it holds.
    pub fn of_archive(input: impl Read) -> Result<Contents, StoreError> {
        let mut reader = ArchiveReader::open(input)?;
        let sled = reader.header().backend == "sled";
        // Per kind, (canonical key, canonical value) pairs: sorted before hashing, since
        // a sled archive's event groups and a PostgreSQL one's rows arrive in other orders.
        let mut items: BTreeMap<&'static str, Vec<Item>> = BTreeMap::new();
        let mut seq_high = 0u64;
        while let Some(r) = reader.next_record()? {
            let kind = match KINDS.iter().find(|k| **k == r.tree) {
                Some(k) => *k,
                None if r.tree == "meta" && r.key == b"seq_high" => {
                    seq_high = <[u8; 8]>::try_from(r.value.as_slice())
                        .map(u64::from_be_bytes)
                        .unwrap_or(u64::MAX);
                    continue;
                }
                None => continue,
            };
            let list = items.entry(kind).or_default();
            match kind {
                "events" => {
                    let events: Vec<Event> = if sled {
                        codec::decode::<EventGroup>("events", &r.key, &r.value)?.events
                    } else {
                        vec![codec::decode("events", &r.key, &r.value)?]
                    };
                    for e in events {
                        list.push((e.seq.to_be_bytes().to_vec(), codec::encode(&e)?));
                    }
                }
                "oauth_states" => {
                    let s: OAuthStateRecord = codec::decode("oauth_states", &r.key, &r.value)?;
                    let mut value = s.expires_at.unix_millis().to_be_bytes().to_vec();
                    value.push(u8::from(s.used));
                    value.extend_from_slice(&s.sealed);
                    list.push((r.key, value));
                }
                _ => list.push((r.key, r.value)),
            }
        }
        let mut kinds = BTreeMap::new();
        for kind in KINDS {
            let mut list = items.remove(kind).unwrap_or_default();
            if kind == "event_numbers" {
                list.push((Vec::new(), seq_high.to_be_bytes().to_vec()));
            }
            list.sort();
            let mut hash = Sha256::new();
            for (k, v) in &list {
                hash.update((k.len() as u64).to_be_bytes());
                hash.update(k);
                hash.update((v.len() as u64).to_be_bytes());
                hash.update(v);
            }
            let count = if kind == "event_numbers" {
                seq_high
            } else {
                list.len() as u64
            };
            kinds.insert(
                kind,
                KindContents {
                    count,
                    digest: hex(&hash.finalize()),
                },
            );
        }
        Ok(Contents { kinds })
    }
}

/// A record brought to one form: (key, value).
type Item = (Vec<u8>, Vec<u8>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveHeader, ArchiveWriter};
    use crate::{ConnectionKey, EventKind, PenName, Platform, Timestamp};

    fn event(seq: u64) -> Event {
        let mut e = Event::new(
            Timestamp::from_unix_millis(1_700_000_000_000 + seq as i64),
            ConnectionKey::new(PenName::parse("ana").unwrap(), Platform::X),
            EventKind::ConnectionStatus,
        );
        e.seq = seq;
        e
    }

    /// An archive as `backend` lays it out, with `grant` as the one grant's bytes.
    fn archive(backend: &str, grant: &[u8]) -> Vec<u8> {
        let header = ArchiveHeader {
            backend: backend.into(),
            store_format: 1,
            written_at: Timestamp::from_unix_millis(0),
        };
        let mut w = ArchiveWriter::new(Vec::new(), header).unwrap();
        w.record("meta", b"seq_high", &3u64.to_be_bytes()).unwrap();
        w.record("grants", b"ana\0x", grant).unwrap();
        let state = OAuthStateRecord {
            expires_at: Timestamp::from_unix_millis(5),
            used: false,
            sealed: vec![7; 9],
        };
        w.record("oauth_states", b"s1", &codec::encode(&state).unwrap())
            .unwrap();
        if backend == "sled" {
            // One commit's events in one record, and the trees only sled keeps.
            let group = EventGroup {
                events: vec![event(1), event(2), event(3)],
            };
            w.record(
                "events",
                &1u64.to_be_bytes(),
                &codec::encode(&group).unwrap(),
            )
            .unwrap();
            w.record("post_counts", b"ana\0x", b"derived").unwrap();
            w.record("meta", b"master_key_check", b"sled's own")
                .unwrap();
        } else {
            for seq in [3u64, 1, 2] {
                w.record(
                    "events",
                    &seq.to_be_bytes(),
                    &codec::encode(&event(seq)).unwrap(),
                )
                .unwrap();
            }
            w.record("epochs", b"ana\0x", &1u64.to_be_bytes()).unwrap();
        }
        w.finish().unwrap().1
    }

    #[test]
    fn the_same_records_laid_out_by_either_backend_compare_equal_and_a_change_is_named() {
        let sled = Contents::of_archive(archive("sled", b"sealed").as_slice()).unwrap();
        let pg = Contents::of_archive(archive("postgres", b"sealed").as_slice()).unwrap();
        assert_eq!(sled.differences(&pg), Vec::<&str>::new());
        assert_eq!(sled.kinds["events"].count, 3);
        assert_eq!(sled.kinds["event_numbers"].count, 3);
        assert_eq!(sled.kinds["grants"].count, 1);

        let altered = Contents::of_archive(archive("postgres", b"sealeD").as_slice()).unwrap();
        assert_eq!(sled.differences(&altered), vec!["grants"]);
        assert_eq!(sled.kinds["grants"].count, altered.kinds["grants"].count);
    }
}
