//! `Timestamp`: a wall-clock instant in milliseconds since the Unix epoch.
//!
//! Due times are wall-clock (an author schedules "Tuesday 09:00"), so the engine stores
//! plain milliseconds and converts to RFC 3339 only at its edges.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// A string that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 date-time (for example 2026-11-28T09:00:00Z): {0}")]
pub struct TimestampParseError(String);

impl Timestamp {
    pub const fn from_unix_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Reads the system clock. Actors read time through their clock port instead, so
    /// that tests can drive it; this is for the edges (CLI, benchmarks).
    pub fn now_system() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }

    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimestampParseError> {
        let t =
            OffsetDateTime::parse(s, &Rfc3339).map_err(|e| TimestampParseError(e.to_string()))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms)
            .map(Timestamp)
            .map_err(|_| TimestampParseError("out of range".into()))
    }

    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("@{}ms", self.0))
    }

    pub fn saturating_add(self, d: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    pub fn saturating_sub(self, d: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// Time from `self` until `later`, zero if `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(later.0.saturating_sub(self.0).max(0) as u64)
    }

    /// Big-endian bytes that sort like the timestamps (sign bit flipped), for index keys.
    pub fn to_sortable_bytes(self) -> [u8; 8] {
        ((self.0 as u64) ^ (1 << 63)).to_be_bytes()
    }

    pub fn from_sortable_bytes(b: [u8; 8]) -> Timestamp {
        Timestamp((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_and_sortable_bytes_keep_order() {
        let t = Timestamp::parse_rfc3339("2026-11-28T09:00:00.250Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T09:00:00.25Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("tomorrow").is_err());
        let samples = [-5_000i64, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in samples.windows(2) {
            let (a, b) = (Timestamp(w[0]), Timestamp(w[1]));
            assert!(a.to_sortable_bytes() < b.to_sortable_bytes());
            assert_eq!(Timestamp::from_sortable_bytes(a.to_sortable_bytes()), a);
        }
    }
}
