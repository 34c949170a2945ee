//! FHIR date/time text ⇄ microseconds since the Unix epoch (UTC), without a calendar crate.
//!
//! Used for `meta.lastUpdated`, `_since`/`_at` and date search ranges. Partial dates
//! (`2024`, `2024-05`, `2024-05-01`) map to the *start* of the period with [`parse_lower`] and
//! to the last microsecond of it with [`parse_upper`].

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of a day number since 1970-01-01.
pub const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub const fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Format microseconds since the epoch as a FHIR `instant` in UTC with microsecond precision:
/// `2026-11-22T02:30:00.123456Z`.
pub fn format_instant(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// HTTP date (RFC 7231 IMF-fixdate) for `Last-Modified`.
pub fn format_http_date(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        MON[(m - 1) as usize],
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Parse an HTTP date (IMF-fixdate) into microseconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let d: u32 = parts[1].parse().ok()?;
    let m = MON.iter().position(|x| *x == parts[2])? as u32 + 1;
    let y: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(secs * 1_000_000)
}

/// A parsed FHIR date / dateTime / instant: its start and the precision it was given with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First microsecond of the period (UTC).
    pub lo: i64,
    /// Last microsecond of the period (UTC), inclusive.
    pub hi: i64,
}

/// Parse `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm(:ss(.fff))(Z|±hh:mm)`.
/// Times without a zone are taken as UTC. Returns None for anything malformed.
pub fn parse_range(s: &str) -> Option<DateRange> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let y = num(0, 4)?;
    if b.len() == 4 {
        let lo = days_from_civil(y, 1, 1) * 86_400_000_000;
        let hi = days_from_civil(y + 1, 1, 1) * 86_400_000_000 - 1;
        return Some(DateRange { lo, hi });
    }
    if b.get(4) != Some(&b'-') {
        return None;
    }
    let m = num(5, 2)? as u32;
    if !(1..=12).contains(&m) {
        return None;
    }
    if b.len() == 7 {
        let lo = days_from_civil(y, m, 1) * 86_400_000_000;
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let hi = days_from_civil(ny, nm, 1) * 86_400_000_000 - 1;
        return Some(DateRange { lo, hi });
    }
    if b.get(7) != Some(&b'-') {
        return None;
    }
    let d = num(8, 2)? as u32;
    if d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let day = days_from_civil(y, m, d) * 86_400_000_000;
    if b.len() == 10 {
        return Some(DateRange {
            lo: day,
            hi: day + 86_400_000_000 - 1,
        });
    }
    if b.get(10) != Some(&b'T') {
        return None;
    }
    let hh = num(11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let mi = num(14, 2)?;
    let mut pos = 16;
    let mut sec = 0;
    let mut micros = 0i64;
    let mut unit = 60_000_000i64; // precision of what was given
    if b.get(pos) == Some(&b':') {
        sec = num(pos + 1, 2)?;
        pos += 3;
        unit = 1_000_000;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            let digits = &s[start..pos];
            if digits.is_empty() {
                return None;
            }
            let mut frac = 0i64;
            let mut scale = 1_000_000i64;
            for c in digits.bytes().take(6) {
                scale /= 10;
                frac += (c - b'0') as i64 * scale;
            }
            micros = frac;
            unit = scale.max(1);
        }
    }
    if hh > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset = match &s[pos..] {
        "" | "Z" => 0,
        tz => {
            let tb = tz.as_bytes();
            if tb.len() != 6 || tb[3] != b':' || !(tb[0] == b'+' || tb[0] == b'-') {
                return None;
            }
            let oh: i64 = tz[1..3].parse().ok()?;
            let om: i64 = tz[4..6].parse().ok()?;
            let o = (oh * 3600 + om * 60) * 1_000_000;
            if tb[0] == b'-' { -o } else { o }
        }
    };
    let lo = day + ((hh * 3600 + mi * 60 + sec) * 1_000_000 + micros) - offset;
    Some(DateRange {
        lo,
        hi: lo + unit - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = parse_range("2026-11-22T02:30:00.123456Z").unwrap();
        assert_eq!(format_instant(r.lo), "2026-11-22T02:30:00.123456Z");
        assert_eq!(r.lo, r.hi);
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:01 GMT"),
            Some(1_000_000)
        );
    }

    #[test]
    fn partial_precision() {
        let y = parse_range("2024").unwrap();
        assert_eq!(format_instant(y.lo), "2024-01-01T00:00:00.000000Z");
        assert_eq!(format_instant(y.hi), "2024-12-31T23:59:59.999999Z");
        let m = parse_range("2024-02").unwrap();
        assert_eq!(format_instant(m.hi), "2024-02-29T23:59:59.999999Z");
        let t = parse_range("2024-02-01T09:00:00+09:00").unwrap();
        assert_eq!(format_instant(t.lo), "2024-02-01T00:00:00.000000Z");
        assert!(parse_range("2024-02-30").is_none());
        assert!(parse_range("2024-13").is_none());
        assert!(parse_range("20x4").is_none());
        assert!(parse_range("2024-01-01T25:00:00Z").is_none());
    }
}
