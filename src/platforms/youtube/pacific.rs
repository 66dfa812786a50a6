//! Pacific time, as far as YouTube's quota needs it: which Pacific day an instant falls
//! on, and when the next Pacific midnight is — the moment Google resets every project's
//! daily quota.
//!
//! The project has no time-zone database (no `chrono-tz`, `jiff` or `tzdb` in
//! `Cargo.toml`), so the rules of `America/Los_Angeles` are written out here: UTC−8
//! (PST), and UTC−7 (PDT) from the second Sunday of March at 02:00 PST (10:00 UTC) until
//! the first Sunday of November at 02:00 PDT (09:00 UTC) — the US rules in force since
//! 2007 (Energy Policy Act of 2005). Should the US change them again, this file is the
//! one place to follow.

use std::time::Duration;

use social_studio_storage::Timestamp;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, Weekday};

const HOUR_SECS: i64 = 3600;
/// Pacific standard time, UTC−8.
const PST_OFFSET: i64 = -8 * HOUR_SECS;
/// Pacific daylight time, UTC−7.
const PDT_OFFSET: i64 = -7 * HOUR_SECS;

/// The `n`th `weekday` of `month` in `year` (n ≥ 1).
fn nth_weekday(year: i32, month: Month, weekday: Weekday, n: u8) -> Option<Date> {
    let first = Date::from_calendar_date(year, month, 1).ok()?;
    let ahead =
        (7 + weekday.number_days_from_monday() - first.weekday().number_days_from_monday()) % 7;
    first.checked_add(time::Duration::days(
        i64::from(ahead) + 7 * i64::from(n - 1),
    ))
}

/// The instants (unix seconds) daylight time starts and ends in `year`.
fn daylight_span(year: i32) -> Option<(i64, i64)> {
    let start = nth_weekday(year, Month::March, Weekday::Sunday, 2)?;
    let end = nth_weekday(year, Month::November, Weekday::Sunday, 1)?;
    // 02:00 PST is 10:00 UTC; 02:00 PDT is 09:00 UTC.
    let at = |date: Date, hour_utc: u8| -> Option<i64> {
        let time = Time::from_hms(hour_utc, 0, 0).ok()?;
        Some(
            PrimitiveDateTime::new(date, time)
                .assume_utc()
                .unix_timestamp(),
        )
    };
    Some((at(start, 10)?, at(end, 9)?))
}

/// The UTC offset (seconds) of Pacific time at the instant `unix_secs`.
fn offset_at(unix_secs: i64) -> i64 {
    let Ok(utc) = OffsetDateTime::from_unix_timestamp(unix_secs) else {
        return PST_OFFSET;
    };
    match daylight_span(utc.year()) {
        Some((start, end)) if (start..end).contains(&unix_secs) => PDT_OFFSET,
        _ => PST_OFFSET,
    }
}

/// The Pacific calendar date `at` falls on: the key of a quota day.
pub fn pacific_date(at: Timestamp) -> Option<Date> {
    let secs = at.unix_millis().div_euclid(1000);
    let local = OffsetDateTime::from_unix_timestamp(secs.checked_add(offset_at(secs))?).ok()?;
    Some(local.date())
}

/// The first Pacific midnight after `at` (a quota reset), as an instant.
pub fn next_pacific_midnight(at: Timestamp) -> Option<Timestamp> {
    let tomorrow = pacific_date(at)?.next_day()?;
    let midnight_as_utc = PrimitiveDateTime::new(tomorrow, Time::MIDNIGHT)
        .assume_utc()
        .unix_timestamp();
    // Midnight is never inside a switch (they happen at 02:00), so the offset in force
    // at midnight is the one of the hour before it and after it alike; reading it at
    // midnight read as PST is safe on both switch days.
    let offset = offset_at(midnight_as_utc - PST_OFFSET);
    let instant = midnight_as_utc.checked_sub(offset)?;
    Some(Timestamp::from_unix_millis(instant.checked_mul(1000)?))
}

/// How long from `now` until the next Pacific midnight; a day when the date cannot be
/// computed (a timestamp beyond the calendar), which only waits longer than needed.
pub fn until_next_pacific_midnight(now: Timestamp) -> Duration {
    next_pacific_midnight(now)
        .map(|midnight| now.until(midnight))
        .unwrap_or(Duration::from_secs(24 * 60 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn daylight_time_follows_the_us_rules() {
        // 2026: 8 March to 1 November; 2027: 14 March to 7 November.
        assert_eq!(
            nth_weekday(2026, Month::March, Weekday::Sunday, 2),
            Date::from_calendar_date(2026, Month::March, 8).ok()
        );
        assert_eq!(
            nth_weekday(2026, Month::November, Weekday::Sunday, 1),
            Date::from_calendar_date(2026, Month::November, 1).ok()
        );
        assert_eq!(
            nth_weekday(2027, Month::March, Weekday::Sunday, 2),
            Date::from_calendar_date(2027, Month::March, 14).ok()
        );
        assert_eq!(
            offset_at(at("2026-03-08T09:59:59Z").unix_millis() / 1000),
            PST_OFFSET
        );
        assert_eq!(
            offset_at(at("2026-03-08T10:00:00Z").unix_millis() / 1000),
            PDT_OFFSET
        );
        assert_eq!(
            offset_at(at("2026-11-01T08:59:59Z").unix_millis() / 1000),
            PDT_OFFSET
        );
        assert_eq!(
            offset_at(at("2026-11-01T09:00:00Z").unix_millis() / 1000),
            PST_OFFSET
        );
    }

    #[test]
    fn the_next_midnight_is_eight_hours_after_utc_in_winter_and_seven_in_summer() {
        // Winter: 28 Nov 2026 09:00 UTC is 01:00 PST on the 28th.
        assert_eq!(
            next_pacific_midnight(at("2026-11-28T09:00:00Z")),
            Some(at("2026-11-29T08:00:00Z"))
        );
        // 07:59 UTC on the 28th is still the 27th in Pacific time.
        assert_eq!(
            next_pacific_midnight(at("2026-11-28T07:59:00Z")),
            Some(at("2026-11-28T08:00:00Z"))
        );
        // Summer: PDT.
        assert_eq!(
            next_pacific_midnight(at("2026-07-04T12:00:00Z")),
            Some(at("2026-07-05T07:00:00Z"))
        );
        assert_eq!(
            until_next_pacific_midnight(at("2026-07-05T06:00:00Z")),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn switch_days_have_twenty_three_and_twenty_five_hours() {
        // The day daylight time starts (8 March 2026) is 23 hours long.
        let start_of_day = at("2026-03-08T08:00:00Z");
        assert_eq!(
            next_pacific_midnight(start_of_day),
            Some(at("2026-03-09T07:00:00Z"))
        );
        // The day it ends (1 November 2026) is 25 hours long.
        let start_of_day = at("2026-11-01T07:00:00Z");
        assert_eq!(
            next_pacific_midnight(start_of_day),
            Some(at("2026-11-02T08:00:00Z"))
        );
        assert_eq!(
            pacific_date(at("2026-11-02T07:59:59Z")),
            Date::from_calendar_date(2026, Month::November, 1).ok()
        );
    }
}
