//! UTC calendar arithmetic without a date library: Howard Hinnant's `days_from_civil` and
//! `civil_from_days` (proleptic Gregorian calendar), and the month and year boundaries that
//! quotas reset on. `access_log::rfc3339_ms` formats timestamps with the same helper.
//!
//! Everything here is total: no input panics. Timestamps are unix milliseconds (`u64`, so
//! never before 1970); a boundary past `u64::MAX` milliseconds saturates to `u64::MAX`.

/// Milliseconds in a UTC day (no leap seconds, as in unix time).
pub const MS_PER_DAY: u64 = 86_400_000;

/// The civil date of a day count since 1970-01-01: `(year, month 1..=12, day 1..=31)`.
/// Runs whenever a timestamp is formatted or a quota period is computed; never fails (for
/// any `i64` that `days + 719_468` does not overflow, far beyond any unix-ms timestamp).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction; the casts cannot truncate.
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of the civil date `year-month-day` (negative before 1970).
/// `month` must be 1..=12 and `day` 1..=31 for a meaningful answer; other values do not
/// panic but give an unspecified day. Inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Unix milliseconds of the first instant of the UTC month containing `ms`.
pub fn month_start_ms(ms: u64) -> u64 {
    let (year, month, _) = civil_from_days(day_of(ms));
    day_to_ms(days_from_civil(year, month, 1))
}

/// Unix milliseconds of the first instant of the UTC month after the one containing `ms`
/// (saturates at `u64::MAX`).
pub fn next_month_start_ms(ms: u64) -> u64 {
    let (year, month, _) = civil_from_days(day_of(ms));
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    day_to_ms(days_from_civil(year, month, 1))
}

/// Unix milliseconds of 1 January 00:00 UTC of the year containing `ms`.
pub fn year_start_ms(ms: u64) -> u64 {
    let (year, _, _) = civil_from_days(day_of(ms));
    day_to_ms(days_from_civil(year, 1, 1))
}

/// Unix milliseconds of 1 January 00:00 UTC of the year after the one containing `ms`
/// (saturates at `u64::MAX`).
pub fn next_year_start_ms(ms: u64) -> u64 {
    let (year, _, _) = civil_from_days(day_of(ms));
    day_to_ms(days_from_civil(year + 1, 1, 1))
}

fn day_of(ms: u64) -> i64 {
    // u64::MAX / MS_PER_DAY < i64::MAX: the conversion cannot fail.
    i64::try_from(ms / MS_PER_DAY).unwrap_or(i64::MAX)
}

fn day_to_ms(days: i64) -> u64 {
    u64::try_from(days).unwrap_or(0).saturating_mul(MS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_day_over_800_years() {
        // 1970-01-01 .. about 2770: more than two 400-year eras, every leap rule.
        for days in -1_000..292_000 {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{days}");
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn civil_table() {
        for (days, civil) in [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (19_782, (2024, 2, 29)),
            (47_540, (2100, 2, 28)),
            (47_541, (2100, 3, 1)),
        ] {
            assert_eq!(civil_from_days(days), civil, "{days}");
        }
    }

    #[test]
    fn boundaries_saturate_at_the_end_of_time() {
        assert_eq!(next_month_start_ms(u64::MAX), u64::MAX);
        assert_eq!(next_year_start_ms(u64::MAX), u64::MAX);
        assert!(month_start_ms(u64::MAX) <= u64::MAX - MS_PER_DAY);
        assert_eq!(year_start_ms(0), 0);
        assert_eq!(month_start_ms(0), 0);
    }
}
