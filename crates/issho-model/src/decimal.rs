//! The decimals issho can index and compare.
//!
//! A FHIR decimal is exact and of any precision, and issho stores the JSON as it was written.
//! Search, however, indexes and compares numbers and quantities as 64-bit binary floating point
//! (SQLite `REAL`): a value beyond that range could be stored but never found again. So writes
//! and search values are held to what a double keeps:
//!
//! - at most [`MAX_SIGNIFICANT_DIGITS`] significant digits (trailing zeros, which only state
//!   precision, are not counted): 17 digits identify a double, so every value printed from one
//!   (Synthea's `337.24800000000005`, C's `%.17g`) is accepted; up to 15 digits compare exactly;
//! - a magnitude from `1e-300` up to, but not including, `1e300` — or zero.

/// Significant digits a decimal may have (trailing zeros not counted).
pub const MAX_SIGNIFICANT_DIGITS: usize = 17;

/// Decimal exponent bound: `1e-300 <= |x| < 1e300` (or `x == 0`).
pub const MAX_EXPONENT: i64 = 300;

/// The limits in words, for messages and documentation.
pub const LIMITS: &str = "issho indexes numbers as 64-bit floating point, so a decimal may have at \
     most 17 significant digits and, unless it is 0, a magnitude from 1e-300 to below 1e300";

/// `Ok` when the decimal literal `s` (`-1.50`, `1e-3`; a leading `+` is allowed, as in search
/// values) can be indexed and compared; otherwise what is wrong with it, naming the limit.
/// Text that is not a decimal at all is the caller's to report (`Err` with a generic reason).
pub fn check_indexable(s: &str) -> Result<(), String> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(format!("'{}' is not a decimal number", shorten(s)));
    }
    let exp = match exp {
        None => 0,
        Some(e) => {
            let d = e.strip_prefix(['-', '+']).unwrap_or(e);
            if d.is_empty() || !digits_ok(d) {
                return Err(format!("'{}' is not a decimal number", shorten(s)));
            }
            let d = d.trim_start_matches('0');
            // Beyond 18 digits the exponent is out of any range; keep it out without overflow.
            let n: i64 = if d.len() > 18 {
                i64::MAX / 4
            } else {
                d.parse().unwrap_or(0)
            };
            if e.starts_with('-') { -n } else { n }
        }
    };
    let all = int.bytes().chain(frac.bytes());
    let Some(first) = all.clone().position(|b| b != b'0') else {
        return Ok(()); // zero, at whatever precision
    };
    let last = int.len() + frac.len() - 1 - all.rev().position(|b| b != b'0').unwrap_or(0);
    let significant = last - first + 1;
    // The power of ten of the leading digit.
    let magnitude = exp.saturating_add(int.len() as i64 - 1 - first as i64);
    if magnitude >= MAX_EXPONENT {
        return Err(format!(
            "{} is too large to be indexed: {LIMITS}",
            shorten(s)
        ));
    }
    if magnitude < -MAX_EXPONENT {
        return Err(format!(
            "{} is too small to be indexed: {LIMITS}",
            shorten(s)
        ));
    }
    if significant > MAX_SIGNIFICANT_DIGITS {
        return Err(format!(
            "{} has {significant} significant digits, more than can be indexed and compared: {LIMITS}",
            shorten(s)
        ));
    }
    Ok(())
}

/// A long literal cut for a message: its start, its end and its length.
fn shorten(s: &str) -> String {
    if s.len() <= 40 {
        return s.to_string();
    }
    // Decimal literals are ASCII; anything else is cut on a character boundary.
    let head: String = s.chars().take(16).collect();
    let tail: String = {
        let v: Vec<char> = s.chars().rev().take(8).collect();
        v.into_iter().rev().collect()
    };
    format!("{head}…{tail} ({} characters)", s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_limits() {
        for ok in [
            "0",
            "-0.000",
            "0e999999",
            "1.5",
            "-1.50",
            "+7",
            "337.24800000000005",
            "66.899999999999991",
            "1.000000000000000000E-245",
            "-1.000000000000000000E+245",
            "1000000000000000000",
            "1e-300",
            "9.99e299",
            "0.00123",
            "12345678901234567",
            "1.2345678901234567000000000000",
        ] {
            assert_eq!(check_indexable(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn beyond_limits() {
        for (bad, why) in [
            ("1e999999", "too large"),
            ("-1e300", "too large"),
            ("1e99999999999999999999999", "too large"),
            ("1e-301", "too small"),
            ("0.00000000000000000000000000000000000001e-290", "too small"),
            ("123456789012345678", "18 significant digits"),
            ("1.0000000000000000001", "20 significant digits"),
            ("", "not a decimal"),
            ("1e", "not a decimal"),
            ("abc", "not a decimal"),
        ] {
            let e = check_indexable(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("0.{}", "3".repeat(100_000));
        let e = check_indexable(&long).unwrap_err();
        assert!(
            e.contains("100000 significant digits") && e.len() < 400,
            "{e}"
        );
        assert!(e.contains("at most 17 significant digits"), "{e}");
    }
}
