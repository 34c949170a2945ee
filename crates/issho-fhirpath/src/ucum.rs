//! A small UCUM unit reader: enough of the grammar (prefixes, exponents, `.` `/`, parentheses,
//! annotations, powers of ten) and the common atoms to compare and convert the quantities
//! clinical data uses. Units are reduced to a factor and a vector of base dimensions.

use crate::decimal::Decimal;

/// Exponents of the base units m, g, s, rad, K, C, cd, mol.
pub type Dims = [i8; 8];

#[derive(Clone, Copy, Debug)]
pub struct Canonical {
    pub factor: Decimal,
    pub dims: Dims,
}

const M: usize = 0;
const G: usize = 1;
const S: usize = 2;
const RAD: usize = 3;
const K: usize = 4;
const C: usize = 5;
const CD: usize = 6;
const MOL: usize = 7;

fn d(s: &str) -> Decimal {
    Decimal::parse(s).expect("valid decimal constant")
}

fn dims(pairs: &[(usize, i8)]) -> Dims {
    let mut out = [0; 8];
    for &(i, e) in pairs {
        out[i] = e;
    }
    out
}

/// (code, factor, dimensions, may take a prefix)
fn atom(code: &str) -> Option<(Decimal, Dims, bool)> {
    let r = match code {
        "m" => (d("1"), dims(&[(M, 1)]), true),
        "g" => (d("1"), dims(&[(G, 1)]), true),
        "s" => (d("1"), dims(&[(S, 1)]), true),
        "rad" => (d("1"), dims(&[(RAD, 1)]), true),
        "K" => (d("1"), dims(&[(K, 1)]), true),
        "C" => (d("1"), dims(&[(C, 1)]), true),
        "cd" => (d("1"), dims(&[(CD, 1)]), true),
        "mol" => (d("1"), dims(&[(MOL, 1)]), true),
        "eq" => (d("1"), dims(&[(MOL, 1)]), true),
        "kat" => (d("1"), dims(&[(MOL, 1), (S, -1)]), true),
        "U" => (
            d("0.0000166666666666666667"),
            dims(&[(MOL, 1), (S, -1)]),
            true,
        ),
        "sr" => (d("1"), dims(&[(RAD, 2)]), true),
        "l" | "L" => (d("0.001"), dims(&[(M, 3)]), true),
        "min" => (d("60"), dims(&[(S, 1)]), false),
        "h" => (d("3600"), dims(&[(S, 1)]), false),
        "d" => (d("86400"), dims(&[(S, 1)]), false),
        "wk" => (d("604800"), dims(&[(S, 1)]), false),
        "mo" => (d("2629800"), dims(&[(S, 1)]), false),
        "a" => (d("31557600"), dims(&[(S, 1)]), false),
        "Hz" => (d("1"), dims(&[(S, -1)]), true),
        "N" => (d("1000"), dims(&[(G, 1), (M, 1), (S, -2)]), true),
        "Pa" => (d("1000"), dims(&[(G, 1), (M, -1), (S, -2)]), true),
        "bar" => (d("100000000"), dims(&[(G, 1), (M, -1), (S, -2)]), true),
        "J" => (d("1000"), dims(&[(G, 1), (M, 2), (S, -2)]), true),
        "cal" => (d("4184"), dims(&[(G, 1), (M, 2), (S, -2)]), true),
        "W" => (d("1000"), dims(&[(G, 1), (M, 2), (S, -3)]), true),
        "A" => (d("1"), dims(&[(C, 1), (S, -1)]), true),
        "V" => (d("1000"), dims(&[(G, 1), (M, 2), (S, -2), (C, -1)]), true),
        "t" => (d("1000000"), dims(&[(G, 1)]), true),
        "m[Hg]" => (d("133322000"), dims(&[(G, 1), (M, -1), (S, -2)]), true),
        "m[H2O]" => (d("9806650"), dims(&[(G, 1), (M, -1), (S, -2)]), true),
        "%" => (d("0.01"), [0; 8], false),
        "[ppm]" => (d("0.000001"), [0; 8], false),
        "[ppb]" => (d("0.000000001"), [0; 8], false),
        "[in_i]" => (d("0.0254"), dims(&[(M, 1)]), false),
        "[ft_i]" => (d("0.3048"), dims(&[(M, 1)]), false),
        "[yd_i]" => (d("0.9144"), dims(&[(M, 1)]), false),
        "[mi_i]" => (d("1609.344"), dims(&[(M, 1)]), false),
        "[lb_av]" => (d("453.59237"), dims(&[(G, 1)]), false),
        "[oz_av]" => (d("28.349523125"), dims(&[(G, 1)]), false),
        "[gr]" => (d("0.06479891"), dims(&[(G, 1)]), false),
        "[foz_us]" => (d("0.0000295735295625"), dims(&[(M, 3)]), false),
        "[gal_us]" => (d("0.003785411784"), dims(&[(M, 3)]), false),
        "[pt_us]" => (d("0.000473176473"), dims(&[(M, 3)]), false),
        "[qt_us]" => (d("0.000946352946"), dims(&[(M, 3)]), false),
        "[tsp_us]" => (d("0.00000492892159375"), dims(&[(M, 3)]), false),
        "[tbs_us]" => (d("0.0000147867647812"), dims(&[(M, 3)]), false),
        "[cup_us]" => (d("0.0002365882365"), dims(&[(M, 3)]), false),
        "[degF]" | "Cel" => (d("1"), dims(&[(K, 1)]), false),
        "deg" => (d("0.0174532925199432958"), dims(&[(RAD, 1)]), false),
        "[iU]" | "[IU]" => (d("1"), [0; 8], true),
        "[pH]" => (d("1"), [0; 8], false),
        "/min" => return None,
        _ => return None,
    };
    Some(r)
}

fn prefix(p: &str) -> Option<Decimal> {
    Some(d(match p {
        "Y" => "1000000000000000000000000",
        "Z" => "1000000000000000000000",
        "E" => "1000000000000000000",
        "P" => "1000000000000000",
        "T" => "1000000000000",
        "G" => "1000000000",
        "M" => "1000000",
        "k" => "1000",
        "h" => "100",
        "da" => "10",
        "d" => "0.1",
        "c" => "0.01",
        "m" => "0.001",
        "u" => "0.000001",
        "n" => "0.000000001",
        "p" => "0.000000000001",
        "f" => "0.000000000000001",
        "a" => "0.000000000000000001",
        _ => return None,
    }))
}

fn simple(code: &str) -> Option<Canonical> {
    if code == "1" {
        return Some(Canonical {
            factor: d("1"),
            dims: [0; 8],
        });
    }
    if code.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Canonical {
            factor: Decimal::parse(code)?,
            dims: [0; 8],
        });
    }
    for sep in ["10*", "10^"] {
        if let Some(e) = code.strip_prefix(sep) {
            let e: i32 = e.parse().ok()?;
            let f = if e >= 0 {
                Decimal::parse(&format!("1e{e}"))?
            } else {
                Decimal {
                    mantissa: 1,
                    scale: (-e) as u32,
                }
            };
            return Some(Canonical {
                factor: f,
                dims: [0; 8],
            });
        }
    }
    if let Some((f, dm, _)) = atom(code) {
        return Some(Canonical {
            factor: f,
            dims: dm,
        });
    }
    for plen in [1, 2] {
        if code.len() > plen && code.is_char_boundary(plen) {
            let (p, rest) = code.split_at(plen);
            if let (Some(pf), Some((f, dm, true))) = (prefix(p), atom(rest)) {
                return Some(Canonical {
                    factor: pf.checked_mul(f)?,
                    dims: dm,
                });
            }
        }
    }
    None
}

fn pow(c: Canonical, e: i32) -> Option<Canonical> {
    let mut f = d("1");
    for _ in 0..e.unsigned_abs() {
        f = f.checked_mul(c.factor)?;
    }
    if e < 0 {
        f = d("1").checked_div(f)?;
    }
    let mut dims = c.dims;
    for x in dims.iter_mut() {
        *x = (*x as i32 * e) as i8;
    }
    Some(Canonical { factor: f, dims })
}

fn combine(a: Canonical, b: Canonical, divide: bool) -> Option<Canonical> {
    let factor = if divide {
        a.factor.checked_div(b.factor)?
    } else {
        a.factor.checked_mul(b.factor)?
    };
    let mut dims = a.dims;
    for (x, y) in dims.iter_mut().zip(b.dims) {
        *x = if divide { *x - y } else { *x + y };
    }
    Some(Canonical { factor, dims })
}

struct Reader<'s> {
    s: &'s [u8],
    pos: usize,
}

impl Reader<'_> {
    fn term(&mut self) -> Option<Canonical> {
        let mut acc = if self.peek() == Some(b'/') {
            Canonical {
                factor: d("1"),
                dims: [0; 8],
            }
        } else {
            self.component()?
        };
        while let Some(op) = self.peek() {
            if op != b'.' && op != b'/' {
                break;
            }
            self.pos += 1;
            let c = self.component()?;
            acc = combine(acc, c, op == b'/')?;
        }
        Some(acc)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn component(&mut self) -> Option<Canonical> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let t = self.term()?;
            if self.peek() != Some(b')') {
                return None;
            }
            self.pos += 1;
            return Some(t);
        }
        if self.peek() == Some(b'{') {
            self.skip_annotation()?;
            return Some(Canonical {
                factor: d("1"),
                dims: [0; 8],
            });
        }
        // Read up to the next operator, keeping brackets together.
        let start = self.pos;
        let mut depth = 0;
        while let Some(b) = self.peek() {
            match b {
                b'[' => depth += 1,
                b']' => depth -= 1,
                b'.' | b'/' | b'(' | b')' | b'{' if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
        if self.peek() == Some(b'{') {
            self.skip_annotation()?;
        }
        if text.is_empty() {
            return None;
        }
        if let Some(c) = simple(text) {
            return Some(c);
        }
        // Trailing exponent: `m2`, `s-1`, `cm+3`.
        let bytes = text.as_bytes();
        let mut i = bytes.len();
        while i > 0 && bytes[i - 1].is_ascii_digit() {
            i -= 1;
        }
        if i > 0 && (bytes[i - 1] == b'-' || bytes[i - 1] == b'+') {
            i -= 1;
        }
        if i == 0 || i == bytes.len() {
            return None;
        }
        let e: i32 = text[i..].parse().ok()?;
        pow(simple(&text[..i])?, e)
    }

    fn skip_annotation(&mut self) -> Option<()> {
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == b'}' {
                return Some(());
            }
        }
        None
    }
}

/// Reduce a UCUM unit expression to a factor and base dimensions.
pub fn canonical(unit: &str) -> Option<Canonical> {
    if unit.is_empty() {
        return Some(Canonical {
            factor: d("1"),
            dims: [0; 8],
        });
    }
    let mut r = Reader {
        s: unit.as_bytes(),
        pos: 0,
    };
    let c = r.term()?;
    (r.pos == unit.len()).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        let mg = canonical("mg").unwrap();
        assert_eq!(mg.factor, d("0.001"));
        let m2 = canonical("m2").unwrap();
        assert_eq!(m2.dims[M], 2);
        let x = canonical("cm.m").unwrap();
        assert_eq!(x.factor, d("0.01"));
        assert_eq!(x.dims, m2.dims);
        assert_eq!(canonical("g/m").unwrap().dims[M], -1);
        assert!(canonical("[s]").is_none());
        assert_eq!(canonical("mm[Hg]").unwrap().factor, d("133322"));
        assert_eq!(canonical("kg/m2").unwrap().factor, d("1000"));
        assert!(canonical("mL/min/{1.73_m2}").is_some());
        assert_eq!(canonical("10*3/uL").unwrap().factor, d("1000000000000"));
    }
}
