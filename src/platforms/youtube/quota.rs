//! The project's daily YouTube quota, counted by the adapter so that an upload the day
//! cannot pay for is held back before any byte is sent.
//!
//! Google counts units per project (every connection shares them) per Pacific day, and
//! resets at Pacific midnight ([`super::pacific`]). Google's answer stays the authority:
//! a 403 `quotaExceeded` marks the day spent whatever the count said, and the count
//! starts again at the next Pacific midnight.

use std::sync::Mutex;

use social_studio_storage::Timestamp;
use time::Date;

use super::pacific::pacific_date;

/// What the adapter counts, and against how much.
///
/// ⚠ Google's documentation disagrees with itself: the `videos.insert` page and the
/// cost table charge 1600 units out of the 10,000 a day, while the quota page's newer
/// text says `videos.insert` has its own bucket of 100 calls a day at 1 unit each. The
/// default follows the cost table — the stricter reading, under which the adapter never
/// starts an upload that the older accounting would refuse (six a day). A project on the
/// separate bucket sets `daily_units: 100, upload_units: 1, list_units: 0`, and a project
/// granted more quota raises `daily_units`: [`super::YoutubeAdapter::with_quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPolicy {
    /// Units the project may spend per Pacific day (Google's default: 10,000).
    pub daily_units: u32,
    /// Units one `videos.insert` costs (1600 by the cost table).
    pub upload_units: u32,
    /// Units one `channels.list` costs (1).
    pub list_units: u32,
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        QuotaPolicy {
            daily_units: DEFAULT_DAILY_UNITS,
            upload_units: UPLOAD_UNITS,
            list_units: LIST_UNITS,
        }
    }
}

/// Google's default daily allocation for a project.
pub const DEFAULT_DAILY_UNITS: u32 = 10_000;
/// `videos.insert` in Google's cost table.
pub const UPLOAD_UNITS: u32 = 1600;
/// `channels.list` in Google's cost table.
pub const LIST_UNITS: u32 = 1;

/// Units spent on one Pacific day.
#[derive(Debug)]
struct Day {
    date: Option<Date>,
    spent: u32,
}

/// The running count; one per adapter, so per project.
#[derive(Debug)]
pub struct QuotaLedger {
    policy: QuotaPolicy,
    day: Mutex<Day>,
}

impl QuotaLedger {
    pub fn new(policy: QuotaPolicy) -> QuotaLedger {
        QuotaLedger {
            policy,
            day: Mutex::new(Day {
                date: None,
                spent: 0,
            }),
        }
    }

    pub fn policy(&self) -> QuotaPolicy {
        self.policy
    }

    /// Runs `f` on today's count, starting a new count when the Pacific day changed.
    fn today<T>(&self, now: Timestamp, f: impl FnOnce(&mut Day) -> T) -> T {
        let date = pacific_date(now);
        // A poisoned lock only means a panic mid-update of two integers: keep counting.
        let mut day = self
            .day
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if day.date != date {
            day.date = date;
            day.spent = 0;
        }
        f(&mut day)
    }

    /// Units left today.
    pub fn remaining(&self, now: Timestamp) -> u32 {
        let daily = self.policy.daily_units;
        self.today(now, |day| daily.saturating_sub(day.spent))
    }

    /// Spends `units` if today has them; false (and nothing spent) if not.
    pub fn try_spend(&self, now: Timestamp, units: u32) -> bool {
        let daily = self.policy.daily_units;
        self.today(now, |day| {
            if daily.saturating_sub(day.spent) < units {
                return false;
            }
            day.spent = day.spent.saturating_add(units);
            true
        })
    }

    /// Counts `units` Google charged whatever today's count says (a call already made).
    pub fn charge(&self, now: Timestamp, units: u32) {
        self.today(now, |day| day.spent = day.spent.saturating_add(units));
    }

    /// Google said the quota is spent: nothing more today.
    pub fn exhaust(&self, now: Timestamp) {
        let daily = self.policy.daily_units;
        self.today(now, |day| day.spent = day.spent.max(daily));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_starts_again_at_pacific_midnight() {
        let ledger = QuotaLedger::new(QuotaPolicy::default());
        // 23:00 PST on 27 November.
        let evening = Timestamp::parse_rfc3339("2026-11-28T07:00:00Z").unwrap();
        for _ in 0..6 {
            assert!(ledger.try_spend(evening, UPLOAD_UNITS));
        }
        assert_eq!(ledger.remaining(evening), 400);
        assert!(!ledger.try_spend(evening, UPLOAD_UNITS));
        assert_eq!(ledger.remaining(evening), 400, "a refusal spends nothing");
        // 00:00 PST on 28 November.
        let midnight = Timestamp::parse_rfc3339("2026-11-28T08:00:00Z").unwrap();
        assert_eq!(ledger.remaining(midnight), DEFAULT_DAILY_UNITS);
        ledger.exhaust(midnight);
        assert_eq!(ledger.remaining(midnight), 0);
    }
}
