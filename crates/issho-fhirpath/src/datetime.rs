//! Partial dates, date-times and times with their precision and optional time-zone offset.

use std::cmp::Ordering;
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl Precision {
    fn rank(self) -> usize {
        match self {
            Precision::Year => 0,
            Precision::Month => 1,
            Precision::Day => 2,
            Precision::Hour => 3,
            Precision::Minute => 4,
            // Seconds and milliseconds are one precision for comparisons.
            Precision::Second | Precision::Millisecond => 5,
        }
    }
}

/// A date, date-time or time value. For times the date fields are unused; for dates the
/// time fields are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialDateTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    pub precision: Precision,
    /// Offset from UTC in minutes.
    pub tz: Option<i32>,
}

fn num(s: &str, len: usize) -> Option<(u32, &str)> {
    if s.len() < len || !s.as_bytes()[..len].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..len].parse().ok()?, &s[len..]))
}

pub fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    issho_model::instant::days_from_civil(y as i64, m, d)
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let (y, m, d) = issho_model::instant::civil_from_days(z);
    (y as i32, m, d)
}

const MS_PER_DAY: i64 = 86_400_000;

impl PartialDateTime {
    fn empty(precision: Precision) -> PartialDateTime {
        PartialDateTime {
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
            precision,
            tz: None,
        }
    }

    /// `YYYY`, `YYYY-MM`, `YYYY-MM-DD`.
    pub fn parse_date(s: &str) -> Option<PartialDateTime> {
        let (d, rest) = Self::parse_date_part(s)?;
        rest.is_empty().then_some(d)
    }

    fn parse_date_part(s: &str) -> Option<(PartialDateTime, &str)> {
        let (y, mut rest) = num(s, 4)?;
        let mut d = Self::empty(Precision::Year);
        d.year = y as i32;
        if let Some(r) = rest.strip_prefix('-') {
            let (m, r) = num(r, 2)?;
            if !(1..=12).contains(&m) {
                return None;
            }
            d.month = m;
            d.precision = Precision::Month;
            rest = r;
            if let Some(r) = rest.strip_prefix('-') {
                let (day, r) = num(r, 2)?;
                if day == 0 || day > days_in_month(d.year, m) {
                    return None;
                }
                d.day = day;
                d.precision = Precision::Day;
                rest = r;
            }
        }
        Some((d, rest))
    }

    /// `HH`, `HH:MM`, `HH:MM:SS`, `HH:MM:SS.fff` into `d`; returns the rest.
    fn parse_time_part<'s>(s: &'s str, d: &mut PartialDateTime) -> Option<&'s str> {
        let (h, mut rest) = num(s, 2)?;
        if h > 23 {
            return None;
        }
        d.hour = h;
        d.precision = Precision::Hour;
        if let Some(r) = rest.strip_prefix(':') {
            let (m, r) = num(r, 2)?;
            if m > 59 {
                return None;
            }
            d.minute = m;
            d.precision = Precision::Minute;
            rest = r;
            if let Some(r) = rest.strip_prefix(':') {
                let (sec, r) = num(r, 2)?;
                if sec > 59 {
                    return None;
                }
                d.second = sec;
                d.precision = Precision::Second;
                rest = r;
                if let Some(r) = rest.strip_prefix('.') {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    if n == 0 {
                        return None;
                    }
                    let frac = &r[..n];
                    let mut ms = 0;
                    for i in 0..3 {
                        ms = ms * 10 + frac.as_bytes().get(i).map_or(0, |b| (b - b'0') as u32);
                    }
                    d.millis = ms;
                    d.precision = Precision::Millisecond;
                    rest = &r[n..];
                }
            }
        }
        Some(rest)
    }

    fn parse_tz(s: &str) -> Option<Option<i32>> {
        if s.is_empty() {
            return Some(None);
        }
        if s == "Z" {
            return Some(Some(0));
        }
        let sign = match s.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, r) = num(&s[1..], 2)?;
        let r = r.strip_prefix(':')?;
        let (m, r) = num(r, 2)?;
        if !r.is_empty() || h > 14 || m > 59 {
            return None;
        }
        Some(Some(sign * (h as i32 * 60 + m as i32)))
    }

    /// A date-time: a date, optionally `T` and a (possibly empty) time and a zone.
    pub fn parse_datetime(s: &str) -> Option<PartialDateTime> {
        let (mut d, rest) = Self::parse_date_part(s)?;
        let Some(rest) = rest.strip_prefix('T') else {
            return rest.is_empty().then_some(d);
        };
        if rest.is_empty() {
            return Some(d);
        }
        if d.precision != Precision::Day {
            return None;
        }
        let rest = Self::parse_time_part(rest, &mut d)?;
        d.tz = Self::parse_tz(rest)?;
        Some(d)
    }

    /// A time of day without zone.
    pub fn parse_time(s: &str) -> Option<PartialDateTime> {
        let mut d = Self::empty(Precision::Hour);
        let rest = Self::parse_time_part(s, &mut d)?;
        rest.is_empty().then_some(d)
    }

    pub fn format_date(&self) -> String {
        let mut s = format!("{:04}", self.year);
        if self.precision >= Precision::Month {
            let _ = write!(s, "-{:02}", self.month);
        }
        if self.precision >= Precision::Day {
            let _ = write!(s, "-{:02}", self.day);
        }
        s
    }

    pub fn format_time(&self) -> String {
        let mut s = format!("{:02}", self.hour);
        if self.precision >= Precision::Minute {
            let _ = write!(s, ":{:02}", self.minute);
        }
        if self.precision >= Precision::Second {
            let _ = write!(s, ":{:02}", self.second);
        }
        if self.precision >= Precision::Millisecond {
            let _ = write!(s, ".{:03}", self.millis);
        }
        s
    }

    pub fn format_datetime(&self) -> String {
        let mut s = self.format_date();
        if self.precision >= Precision::Hour {
            s.push('T');
            s.push_str(&self.format_time());
            if let Some(tz) = self.tz {
                if tz == 0 {
                    s.push('Z');
                } else {
                    let a = tz.abs();
                    let sign = if tz < 0 { '-' } else { '+' };
                    let _ = write!(s, "{sign}{:02}:{:02}", a / 60, a % 60);
                }
            }
        }
        s
    }

    fn epoch_ms(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * MS_PER_DAY
            + ((self.hour as i64 * 60 + self.minute as i64) * 60 + self.second as i64) * 1000
            + self.millis as i64
    }

    fn set_epoch_ms(&mut self, ms: i64) {
        let days = ms.div_euclid(MS_PER_DAY);
        let rem = ms.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        self.year = y;
        self.month = m;
        self.day = d;
        self.hour = (rem / 3_600_000) as u32;
        self.minute = (rem / 60_000 % 60) as u32;
        self.second = (rem / 1000 % 60) as u32;
        self.millis = (rem % 1000) as u32;
    }

    /// The same instant in UTC (values without zone are taken as UTC).
    pub fn to_utc(&self) -> PartialDateTime {
        let mut d = *self;
        if let Some(tz) = self.tz
            && tz != 0
            && self.precision >= Precision::Hour
        {
            d.set_epoch_ms(self.epoch_ms() - tz as i64 * 60_000);
            d.tz = Some(0);
        }
        d
    }

    fn components(&self) -> [i64; 6] {
        [
            self.year as i64,
            self.month as i64,
            self.day as i64,
            self.hour as i64,
            self.minute as i64,
            self.second as i64 * 1000 + self.millis as i64,
        ]
    }

    /// Compare two date-times (or two times with `time` set). `None` when the answer depends
    /// on digits one of them does not have.
    pub fn compare(&self, o: &PartialDateTime, time: bool) -> Option<Ordering> {
        let (a, b) = if !time
            && (self.tz.is_some() || o.tz.is_some())
            && self.precision >= Precision::Hour
            && o.precision >= Precision::Hour
        {
            (self.to_utc(), o.to_utc())
        } else {
            (*self, *o)
        };
        let (ca, cb) = (a.components(), b.components());
        let start = if time { 3 } else { 0 };
        let (ra, rb) = (a.precision.rank(), b.precision.rank());
        for i in start..=ra.min(rb) {
            match ca[i].cmp(&cb[i]) {
                Ordering::Equal => {}
                other => return Some(other),
            }
        }
        if ra == rb {
            Some(Ordering::Equal)
        } else {
            None
        }
    }

    /// Add an amount of a calendar unit (`year` … `millisecond`). Whole units only.
    pub fn add(&self, amount: i64, unit: &str) -> Option<PartialDateTime> {
        let mut d = *self;
        match unit {
            "year" => d.year = i32::try_from(d.year as i64 + amount).ok()?,
            "month" => {
                let m = d.year as i64 * 12 + (d.month as i64 - 1) + amount;
                d.year = i32::try_from(m.div_euclid(12)).ok()?;
                d.month = (m.rem_euclid(12) + 1) as u32;
            }
            _ => {
                let ms = match unit {
                    "week" => amount.checked_mul(7 * MS_PER_DAY)?,
                    "day" => amount.checked_mul(MS_PER_DAY)?,
                    "hour" => amount.checked_mul(3_600_000)?,
                    "minute" => amount.checked_mul(60_000)?,
                    "second" => amount.checked_mul(1000)?,
                    "millisecond" => amount,
                    _ => return None,
                };
                let base = d.epoch_ms();
                d.set_epoch_ms(base.checked_add(ms)?);
                return Some(d);
            }
        }
        let max = days_in_month(d.year, d.month);
        if d.day > max {
            d.day = max;
        }
        Some(d)
    }

    /// Add to a time of day, wrapping around midnight.
    pub fn add_time(&self, amount: i64, unit: &str) -> Option<PartialDateTime> {
        let ms = match unit {
            "hour" => amount.checked_mul(3_600_000)?,
            "minute" => amount.checked_mul(60_000)?,
            "second" => amount.checked_mul(1000)?,
            "millisecond" => amount,
            _ => return None,
        };
        let mut d = *self;
        let cur = ((d.hour as i64 * 60 + d.minute as i64) * 60 + d.second as i64) * 1000
            + d.millis as i64;
        let t = (cur + ms).rem_euclid(MS_PER_DAY);
        d.hour = (t / 3_600_000) as u32;
        d.minute = (t / 60_000 % 60) as u32;
        d.second = (t / 1000 % 60) as u32;
        d.millis = (t % 1000) as u32;
        Some(d)
    }

    /// Number of digits of the value's precision (`@2014` → 4, milliseconds → 17).
    pub fn date_digits(&self) -> i64 {
        match self.precision {
            Precision::Year => 4,
            Precision::Month => 6,
            Precision::Day => 8,
            Precision::Hour => 10,
            Precision::Minute => 12,
            Precision::Second => 14,
            Precision::Millisecond => 17,
        }
    }

    pub fn time_digits(&self) -> i64 {
        match self.precision {
            Precision::Hour => 2,
            Precision::Minute => 4,
            Precision::Second => 6,
            _ => 9,
        }
    }

    /// Earliest (`high` false) or latest possible value at the given precision.
    pub fn boundary(&self, precision: Precision, high: bool) -> PartialDateTime {
        let mut d = *self;
        let p = self.precision;
        if p < Precision::Month {
            d.month = if high { 12 } else { 1 };
        }
        if p < Precision::Day {
            d.day = if high {
                days_in_month(d.year, d.month)
            } else {
                1
            };
        }
        if p < Precision::Hour {
            d.hour = if high { 23 } else { 0 };
        }
        if p < Precision::Minute {
            d.minute = if high { 59 } else { 0 };
        }
        if p < Precision::Second {
            d.second = if high { 59 } else { 0 };
        }
        if p < Precision::Millisecond {
            d.millis = if high { 999 } else { 0 };
        }
        d.precision = precision;
        d
    }
}

pub fn precision_from_date_digits(n: i64) -> Option<Precision> {
    Some(match n {
        4 => Precision::Year,
        6 => Precision::Month,
        8 => Precision::Day,
        10 => Precision::Hour,
        12 => Precision::Minute,
        14 => Precision::Second,
        17 => Precision::Millisecond,
        _ => return None,
    })
}

pub fn precision_from_time_digits(n: i64) -> Option<Precision> {
    Some(match n {
        2 => Precision::Hour,
        4 => Precision::Minute,
        6 => Precision::Second,
        9 => Precision::Millisecond,
        _ => return None,
    })
}

/// The current UTC time as a date-time with millisecond precision.
pub fn now_utc() -> PartialDateTime {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut d = PartialDateTime::empty(Precision::Millisecond);
    d.set_epoch_ms(ms);
    d.tz = Some(0);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_format_compare() {
        let a = PartialDateTime::parse_datetime("2017-11-05T01:30:00.0-04:00").unwrap();
        let b = PartialDateTime::parse_datetime("2017-11-05T00:30:00.0-05:00").unwrap();
        assert_eq!(a.compare(&b, false), Some(Ordering::Equal));
        assert_eq!(a.format_datetime(), "2017-11-05T01:30:00.000-04:00");
        let c = PartialDateTime::parse_date("2018-03").unwrap();
        let d = PartialDateTime::parse_date("2018-03-01").unwrap();
        assert_eq!(c.compare(&d, false), None);
        let e = PartialDateTime::parse_date("1973-12-25").unwrap();
        assert_eq!(e.add(1, "month").unwrap().format_date(), "1974-01-25");
        assert_eq!(e.add(7, "day").unwrap().format_date(), "1974-01-01");
        assert!(PartialDateTime::parse_date("2015-02-30").is_none());
    }
}
