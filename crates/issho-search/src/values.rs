//! Value helpers shared by extraction (indexing) and request parsing: string normalisation,
//! precision-aware date ranges, significant-figure number ranges and UCUM canonical units.

use unicode_normalization::UnicodeNormalization;

/// Normalise text for the default (`starts-with`) and `:contains` string searches.
///
/// NFKC (full-width/half-width forms, compatibility characters, half-width kana become
/// full-width kana), Unicode lower case, Latin/Greek/Cyrillic diacritics removed (`é` → `e`;
/// the Japanese voiced sound marks are kept, so `ガ` stays distinct from `カ`), whitespace runs
/// collapsed to one space and trimmed.
pub fn normalize(s: &str) -> String {
    if s.is_ascii() {
        // NFKC and NFD leave ASCII unchanged and it has no diacritics: lower-case and fold
        // whitespace only.
        let mut out = String::with_capacity(s.len());
        for word in s.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(word.bytes().map(|b| b.to_ascii_lowercase() as char));
        }
        return out;
    }
    let lowered = s.nfkc().collect::<String>().to_lowercase();
    let stripped: String = lowered.nfd().filter(|c| !is_diacritic(*c)).nfc().collect();
    let mut out = String::with_capacity(stripped.len());
    for word in stripped.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn is_diacritic(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// The stored form of a code system URI (token and quantity rows): 0 for none, otherwise a
/// 47-bit FNV-1a hash, which SQLite stores in 6 bytes instead of the whole URI. Only equality
/// is ever tested on systems; a false match needs two systems with the same hash *and* the same
/// code in the same parameter.
pub fn system_id(system: &str) -> i64 {
    if system.is_empty() {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in system.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h >> 17) as i64).max(1)
}

/// The smallest string greater than every string that starts with `prefix` (for range scans).
pub fn prefix_upper_bound(prefix: &str) -> String {
    let mut s = prefix.to_string();
    s.push(char::MAX);
    s
}

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// An inclusive range of instants `[lo, hi]` covered by a date, dateTime or instant value at its
/// precision: `2020` covers the whole year, `2020-03-01T10:00` the whole minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub lo: Micros,
    pub hi: Micros,
}

/// Days since 1970-01-01 of a proleptic Gregorian civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse a FHIR date, dateTime or instant (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mm[:ss[.fff…]][Z|±hh:mm]`) into the range it covers. A time without a
/// zone is taken as UTC. Returns `None` for anything malformed (month 13, 31 February…).
pub fn parse_date_range(s: &str) -> Option<DateRange> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y = digits(parts.next()?, 4)? as i64;
    let m = parts.next().map(|p| digits(p, 2)).unwrap_or(Some(0))?;
    let d = parts.next().map(|p| digits(p, 2)).unwrap_or(Some(0))?;
    if parts.next().is_some() || m > 12 || (m == 0 && d != 0) {
        return None;
    }
    if m == 0 {
        if time.is_some() {
            return None;
        }
        let lo = days_from_civil(y, 1, 1) * MICROS_PER_DAY;
        let hi = days_from_civil(y + 1, 1, 1) * MICROS_PER_DAY - 1;
        return Some(DateRange { lo, hi });
    }
    if d == 0 {
        if time.is_some() {
            return None;
        }
        let lo = days_from_civil(y, m, 1) * MICROS_PER_DAY;
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let hi = days_from_civil(ny, nm, 1) * MICROS_PER_DAY - 1;
        return Some(DateRange { lo, hi });
    }
    if d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let day = days_from_civil(y, m, d) * MICROS_PER_DAY;
    let Some(time) = time else {
        return Some(DateRange {
            lo: day,
            hi: day + MICROS_PER_DAY - 1,
        });
    };
    // Split off the zone.
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0i64)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z[1..].split_once(':')?;
        let (zh, zm) = (digits(zh, 2)?, digits(zm, 2)?);
        if zh > 14 || zm > 59 {
            return None;
        }
        (
            c,
            sign * (zh as i64 * 3600 + zm as i64 * 60) * MICROS_PER_SEC,
        )
    } else {
        (time, 0)
    };
    let mut hms = clock.split(':');
    let h = digits(hms.next()?, 2)?;
    let mi = digits(hms.next()?, 2)?;
    let sec = hms.next();
    if hms.next().is_some() || h > 23 || mi > 59 {
        return None;
    }
    let mut lo = day + (h as i64 * 3600 + mi as i64 * 60) * MICROS_PER_SEC - offset;
    let width = match sec {
        None => 60 * MICROS_PER_SEC,
        Some(sec) => {
            let (whole, frac) = match sec.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (sec, None),
            };
            let s = digits(whole, 2)?;
            if s > 60 {
                return None;
            }
            lo += s.min(59) as i64 * MICROS_PER_SEC;
            match frac {
                None => MICROS_PER_SEC,
                Some(f) => {
                    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let used = &f[..f.len().min(6)];
                    let scale = 10i64.pow(6 - used.len() as u32);
                    lo += used.parse::<i64>().ok()? * scale;
                    scale
                }
            }
        }
    };
    Some(DateRange {
        lo,
        hi: lo + width - 1,
    })
}

/// A decimal search value with the range implied by its significant figures: `100` stands
/// for `[99.5, 100.5)`, `1e2` for `[50, 150)`, `100.00` for `[99.995, 100.005)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decimal {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Parse a FHIR decimal (optionally with an exponent, as search values allow).
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let unsigned = mantissa.strip_prefix(['-', '+']).unwrap_or(mantissa);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let value: f64 = s.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let half = 0.5 * 10f64.powi(exp.saturating_sub(frac.len() as i32));
    // A precision finer than a double's (`1.000000000000000000E-245`) still brackets the
    // value: at least the neighbouring doubles, so the value finds itself.
    let (lo, hi) = (value - half, value + half);
    Some(Decimal {
        value,
        lo: if lo < value { lo } else { value.next_down() },
        hi: if hi > value { hi } else { value.next_up() },
    })
}

/// The canonical form of a UCUM unit code for comparisons across units: the unit in base
/// units (`g`, `L`, `m`, `s`, `mol`, and quotients and powers of them) and the factor that
/// converts a value in `code` to it. `mg/dL` → (`g/L`, 0.01). Units the table does not know are
/// their own canonical form (factor 1), so they still match themselves exactly.
pub fn ucum_canonical(code: &str) -> (String, f64) {
    if let Some((num, den)) = code.split_once('/')
        && !den.contains('/')
    {
        let n = if num.is_empty() || num == "1" {
            Some((String::new(), 1.0))
        } else {
            ucum_simple(num)
        };
        if let (Some((nu, nf)), Some((du, df))) = (n, ucum_simple(den)) {
            return (format!("{nu}/{du}"), nf / df);
        }
        return (code.to_string(), 1.0);
    }
    ucum_simple(code).unwrap_or_else(|| (code.to_string(), 1.0))
}

/// A unit without division, optionally followed by an integer power (`m2`, `cm3`).
fn ucum_simple(code: &str) -> Option<(String, f64)> {
    let body = code.trim_end_matches(|c: char| c.is_ascii_digit());
    let power: i32 = if body.len() < code.len() {
        code[body.len()..].parse().ok()?
    } else {
        1
    };
    if body.is_empty() || power == 0 {
        return None;
    }
    let (unit, factor) = ucum_atom(body)?;
    let unit = if power == 1 {
        unit.to_string()
    } else {
        format!("{unit}{power}")
    };
    Some((unit, factor.powi(power)))
}

fn ucum_atom(atom: &str) -> Option<(&'static str, f64)> {
    // Atoms that are not metric-prefixed forms of a base unit (checked first: `min`, `d`, `h`
    // would otherwise parse as prefixes).
    let special = match atom {
        "min" => Some(("s", 60.0)),
        "h" => Some(("s", 3_600.0)),
        "d" => Some(("s", 86_400.0)),
        "wk" => Some(("s", 604_800.0)),
        "mo" => Some(("s", 2_629_800.0)),
        "a" => Some(("s", 31_557_600.0)),
        "[lb_av]" => Some(("g", 453.592_37)),
        "[oz_av]" => Some(("g", 28.349_523_125)),
        "[in_i]" => Some(("m", 0.0254)),
        "[ft_i]" => Some(("m", 0.3048)),
        "[mi_i]" => Some(("m", 1_609.344)),
        "[gal_us]" => Some(("L", 3.785_411_784)),
        "[foz_us]" => Some(("L", 0.029_573_529_562_5)),
        "l" => Some(("L", 1.0)),
        _ => None,
    };
    if special.is_some() {
        return special;
    }
    let base = |u: &str| -> Option<&'static str> {
        match u {
            "g" => Some("g"),
            "L" | "l" => Some("L"),
            "m" => Some("m"),
            "s" => Some("s"),
            "mol" => Some("mol"),
            "eq" => Some("eq"),
            "Pa" => Some("Pa"),
            _ => None,
        }
    };
    if let Some(b) = base(atom) {
        return Some((b, 1.0));
    }
    let prefixes: [(&str, f64); 11] = [
        ("da", 1e1),
        ("k", 1e3),
        ("h", 1e2),
        ("d", 1e-1),
        ("c", 1e-2),
        ("m", 1e-3),
        ("u", 1e-6),
        ("\u{3bc}", 1e-6),
        ("n", 1e-9),
        ("p", 1e-12),
        ("f", 1e-15),
    ];
    for (p, f) in prefixes {
        if let Some(rest) = atom.strip_prefix(p)
            && let Some(b) = base(rest)
        {
            return Some((b, f));
        }
    }
    None
}

/// Split a search value on an unescaped separator (`,` `|` `$`), then unescape `\,` `\|` `\$`
/// and `\\` in each part.
pub fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) if n == sep => out.last_mut().unwrap().push(n),
                Some(n) => {
                    out.last_mut().unwrap().push('\\');
                    out.last_mut().unwrap().push(n);
                }
                None => out.last_mut().unwrap().push('\\'),
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
    }
    out
}

/// Remove the remaining escapes (`\,` `\|` `\$` `\\`) of a value part.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '|' | '$' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize("  José   GARCÍA "), "jose garcia");
        // Full-width Latin and half-width katakana fold; voiced marks survive.
        assert_eq!(normalize("ＹＡＭＡＤＡ"), "yamada");
        assert_eq!(normalize("ﾔﾏﾀﾞ"), "ヤマダ");
        assert_ne!(normalize("ガ"), normalize("カ"));
        assert_eq!(normalize("Straße"), "straße");
    }

    #[test]
    fn date_ranges() {
        let y = parse_date_range("2020").unwrap();
        assert_eq!(y.lo, parse_date_range("2020-01-01T00:00:00Z").unwrap().lo);
        assert_eq!(
            y.hi + 1,
            parse_date_range("2021-01-01T00:00:00Z").unwrap().lo
        );
        let m = parse_date_range("2020-02").unwrap();
        assert_eq!(m.hi + 1, parse_date_range("2020-03-01").unwrap().lo);
        assert_eq!(parse_date_range("1970-01-01T00:00:00Z").unwrap().lo, 0);
        let z = parse_date_range("2011-02-02T16:30:49-05:00").unwrap();
        assert_eq!(z, parse_date_range("2011-02-02T21:30:49Z").unwrap());
        assert_eq!(z.hi - z.lo + 1, 1_000_000);
        let f = parse_date_range("2011-02-02T21:30:49.825Z").unwrap();
        assert_eq!(f.hi - f.lo + 1, 1_000);
        assert_eq!(f.lo - z.lo, 825_000);
        for bad in [
            "2020-13",
            "2021-02-29",
            "20-01-01",
            "2020-01-01T25:00",
            "2020-01-01T10:00+1:00",
            "2020-01-01T",
            "x",
            "",
        ] {
            assert!(parse_date_range(bad).is_none(), "{bad}");
        }
        assert!(parse_date_range("2020-02-29").is_some());
        assert!(parse_date_range("1850-06-01").unwrap().lo < 0);
    }

    #[test]
    fn decimals() {
        let d = parse_decimal("100").unwrap();
        assert_eq!((d.lo, d.hi), (99.5, 100.5));
        let d = parse_decimal("1e2").unwrap();
        assert_eq!((d.lo, d.hi), (50.0, 150.0));
        let d = parse_decimal("-0.50").unwrap();
        assert!((d.lo + 0.505).abs() < 1e-12 && (d.hi + 0.495).abs() < 1e-12);
        for bad in ["", ".", "1.2.3", "abc", "1e", "--1", "inf", "NaN"] {
            assert!(parse_decimal(bad).is_none(), "{bad}");
        }
        // More precision than a double holds: the range still contains the value.
        for fine in [
            "1.5000000000000000000000",
            "1.000000000000000000E-245",
            "0e-400",
        ] {
            let d = parse_decimal(fine).unwrap();
            assert!(d.lo < d.value && d.value < d.hi, "{fine}: {d:?}");
        }
    }

    #[test]
    fn ucum() {
        assert_eq!(ucum_canonical("mg"), ("g".to_string(), 1e-3));
        assert_eq!(ucum_canonical("kg").0, "g");
        let (u, f) = ucum_canonical("mg/dL");
        assert_eq!(u, "g/L");
        assert!((f - 0.01).abs() < 1e-15);
        assert_eq!(ucum_canonical("min"), ("s".to_string(), 60.0));
        assert_eq!(ucum_canonical("cm2").0, "m2");
        assert_eq!(ucum_canonical("mm[Hg]"), ("mm[Hg]".to_string(), 1.0));
        assert_eq!(ucum_canonical("/min"), ("/s".to_string(), 1.0 / 60.0));
        assert_eq!(ucum_canonical("{score}").0, "{score}");
    }

    #[test]
    fn escaping() {
        assert_eq!(split_escaped(r"a\,b,c", ','), vec!["a,b", "c"]);
        assert_eq!(split_escaped(r"s\|x|c", '|'), vec!["s|x", "c"]);
        assert_eq!(unescape(r"a\$b\\c"), r"a$b\c");
    }
}
