//! Exact decimal numbers: an `i128` mantissa and a decimal scale (`1.50` = 150 × 10⁻²).
//!
//! The scale is kept as written, so `1.50` prints as `1.50` and reports a precision of 2,
//! while comparisons look at the value only (`1.50 = 1.5`).

use std::cmp::Ordering;
use std::fmt;

/// Digits kept after the point by division and by conversions from floating point.
pub const DIV_SCALE: u32 = 16;
/// Largest scale kept by multiplication before rounding.
const MAX_SCALE: u32 = 28;

#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    pub fn from_int(i: i64) -> Decimal {
        Decimal {
            mantissa: i as i128,
            scale: 0,
        }
    }

    /// Parse `-12.50`, `3`, `1e-3`, `2.5E+2`. Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<Decimal> {
        let (num, exp) = match s.find(['e', 'E']) {
            Some(p) => (&s[..p], s[p + 1..].parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (neg, digits) = match num.as_bytes().first()? {
            b'-' => (true, &num[1..]),
            b'+' => (false, &num[1..]),
            _ => (false, num),
        };
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if digits.contains('.') && (int.is_empty() || frac.is_empty()) {
            return None;
        }
        let mut m: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            m = m.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        let mut scale = frac.len() as i32 - exp;
        if scale < 0 {
            m = m.checked_mul(pow10((-scale) as u32)?)?;
            scale = 0;
        }
        Some(Decimal {
            mantissa: if neg { -m } else { m },
            scale: scale as u32,
        })
    }

    pub fn from_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        let d = Decimal::parse(&format!("{f}"))?;
        Some(
            d.round(DIV_SCALE.max(d.scale.min(MAX_SCALE)))
                .normalized_min(0),
        )
    }

    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The same value written with `scale` digits after the point (only upward).
    pub fn rescale(self, scale: u32) -> Option<Decimal> {
        if scale >= self.scale {
            Some(Decimal {
                mantissa: self.mantissa.checked_mul(pow10(scale - self.scale)?)?,
                scale,
            })
        } else {
            None
        }
    }

    fn align(a: Decimal, b: Decimal) -> Option<(i128, i128, u32)> {
        let s = a.scale.max(b.scale);
        Some((a.rescale(s)?.mantissa, b.rescale(s)?.mantissa, s))
    }

    pub fn checked_add(self, o: Decimal) -> Option<Decimal> {
        let (a, b, s) = Decimal::align(self, o)?;
        Some(Decimal {
            mantissa: a.checked_add(b)?,
            scale: s,
        })
    }

    pub fn checked_sub(self, o: Decimal) -> Option<Decimal> {
        self.checked_add(-o)
    }

    pub fn abs(self) -> Decimal {
        Decimal {
            mantissa: self.mantissa.abs(),
            scale: self.scale,
        }
    }

    pub fn checked_mul(self, o: Decimal) -> Option<Decimal> {
        let mut d = Decimal {
            mantissa: self.mantissa.checked_mul(o.mantissa)?,
            scale: self.scale + o.scale,
        };
        if d.scale > MAX_SCALE {
            d = d.round(MAX_SCALE);
        }
        Some(d)
    }

    /// Division with [`DIV_SCALE`] digits after the point, trailing zeros removed.
    pub fn checked_div(self, o: Decimal) -> Option<Decimal> {
        if o.mantissa == 0 {
            return None;
        }
        // self / o = (a × 10^k) / b × 10^-(sa + k - sb)
        let target = DIV_SCALE.max(self.scale).max(o.scale);
        let k = target + o.scale - self.scale.min(target + o.scale);
        let num = self.mantissa.checked_mul(pow10(k)?)?;
        let q = num / o.mantissa;
        let r = num % o.mantissa;
        // round half away from zero
        let mut q = q;
        if r.abs().checked_mul(2)? >= o.mantissa.abs() {
            q += if (num < 0) ^ (o.mantissa < 0) { -1 } else { 1 };
        }
        let scale = self.scale + k - o.scale;
        Some(Decimal { mantissa: q, scale }.normalized_min(0))
    }

    /// Drop trailing zeros while the scale stays at least `min`.
    pub fn normalized_min(mut self, min: u32) -> Decimal {
        while self.scale > min && self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.scale -= 1;
        }
        self
    }

    /// Round half away from zero to `digits` after the point.
    pub fn round(self, digits: u32) -> Decimal {
        if digits >= self.scale {
            return self;
        }
        let f = pow10(self.scale - digits).unwrap_or(i128::MAX);
        let q = self.mantissa / f;
        let r = self.mantissa % f;
        let q = if r.abs() * 2 >= f {
            q + self.mantissa.signum()
        } else {
            q
        };
        Decimal {
            mantissa: q,
            scale: digits,
        }
    }

    /// Truncate toward zero to `digits` after the point.
    pub fn truncate(self, digits: u32) -> Decimal {
        if digits >= self.scale {
            return self;
        }
        let f = pow10(self.scale - digits).unwrap_or(i128::MAX);
        Decimal {
            mantissa: self.mantissa / f,
            scale: digits,
        }
    }

    pub fn floor(self, digits: u32) -> Decimal {
        let t = self.truncate(digits);
        if self.mantissa < 0 && t.cmp_value(&self) != Ordering::Equal {
            Decimal {
                mantissa: t.mantissa - 1,
                scale: t.scale,
            }
        } else {
            t
        }
    }

    pub fn ceil(self, digits: u32) -> Decimal {
        let t = self.truncate(digits);
        if self.mantissa > 0 && t.cmp_value(&self) != Ordering::Equal {
            Decimal {
                mantissa: t.mantissa + 1,
                scale: t.scale,
            }
        } else {
            t
        }
    }

    pub fn is_integer(self) -> bool {
        self.truncate(0).cmp_value(&self) == Ordering::Equal
    }

    /// The integer part, when it fits in an `i64`.
    pub fn to_i64(self) -> Option<i64> {
        i64::try_from(self.truncate(0).mantissa).ok()
    }

    pub fn cmp_value(&self, o: &Decimal) -> Ordering {
        match Decimal::align(*self, *o) {
            Some((a, b, _)) => a.cmp(&b),
            None => self.to_f64().total_cmp(&o.to_f64()),
        }
    }

    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }
}

impl std::ops::Neg for Decimal {
    type Output = Decimal;
    fn neg(self) -> Decimal {
        Decimal {
            mantissa: -self.mantissa,
            scale: self.scale,
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, o: &Decimal) -> bool {
        self.cmp_value(o) == Ordering::Equal
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.mantissa < 0;
        let digits = self.mantissa.unsigned_abs().to_string();
        let s = self.scale as usize;
        if neg {
            f.write_str("-")?;
        }
        if s == 0 {
            f.write_str(&digits)
        } else if digits.len() > s {
            let (i, fr) = digits.split_at(digits.len() - s);
            write!(f, "{i}.{fr}")
        } else {
            write!(f, "0.{}{}", "0".repeat(s - digits.len()), digits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_arith() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        assert_eq!(d("1.50").to_string(), "1.50");
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(d("1e3").to_string(), "1000");
        assert_eq!(d("1.2").checked_add(d("1.8")).unwrap().to_string(), "3.0");
        assert_eq!(d("1").checked_div(d("2")).unwrap().to_string(), "0.5");
        assert_eq!(d("1.2").checked_div(d("1.8")).unwrap().round(2), d("0.67"));
        assert_eq!(d("3.14159").round(3).to_string(), "3.142");
        assert_eq!(d("-2.1").floor(0).to_string(), "-3");
        assert_eq!(d("-1.1").ceil(0).to_string(), "-1");
        assert!(d("1.10") == d("1.1"));
        assert!(Decimal::parse("1.").is_none());
        assert!(Decimal::parse("1.a").is_none());
    }
}
