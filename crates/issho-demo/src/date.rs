//! Calendar arithmetic on day numbers (days since 1970-01-01), without the wall clock.
//!
//! All generated dates are relative to [`REFERENCE_DAY`], a fixed "today" of the demo world.

/// 2025-04-01, the fixed "today" of the demo population.
pub const REFERENCE_DAY: i64 = days_from_civil(2025, 4, 1);

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day number.
pub const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD`.
pub fn date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDThh:mm:00+09:00` (Japan Standard Time) for a day and minute of the day.
pub fn date_time(day: i64, minute: u32) -> String {
    let day = day + (minute / 1440) as i64;
    let minute = minute % 1440;
    let (y, m, d) = civil_from_days(day);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:00+09:00",
        minute / 60,
        minute % 60
    )
}

/// Year of a day number.
pub fn year(day: i64) -> i64 {
    civil_from_days(day).0
}

/// Completed years between `birth` and `day`.
pub fn age_at(birth: i64, day: i64) -> i64 {
    let (by, bm, bd) = civil_from_days(birth);
    let (y, m, d) = civil_from_days(day);
    let mut age = y - by;
    if (m, d) < (bm, bd) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(date(REFERENCE_DAY), "2025-04-01");
        for z in [-800_000i64, -1, 0, 1, 18_000, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(date(days_from_civil(2024, 2, 29) + 1), "2024-03-01");
        assert_eq!(date_time(0, 9 * 60 + 5), "1970-01-01T09:05:00+09:00");
        assert_eq!(date_time(0, 1440 + 1), "1970-01-02T00:01:00+09:00");
        assert_eq!(age_at(days_from_civil(2000, 4, 2), REFERENCE_DAY), 24);
        assert_eq!(age_at(days_from_civil(2000, 4, 1), REFERENCE_DAY), 25);
    }
}
