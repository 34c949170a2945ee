//! Calendar arithmetic on day numbers (days since 1970-01-01), without the wall clock.
//!
//! All generated dates are relative to [`REFERENCE_DAY`], a fixed "today" of the demo world.

/// 2025-04-01, the fixed "today" of the demo population.
pub const REFERENCE_DAY: i64 = days_from_civil(2025, 4, 1);

/// The calendar arithmetic is the model's (one implementation in the workspace).
pub use issho_model::instant::{civil_from_days, days_from_civil};

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
