//! Values of one parameter: comparison prefixes, dates, numbers and quantities, tokens,
//! references, strings and URIs, composites, and the special parameters (`near`, `_text`…).

use super::*;

/// Split a leading comparison prefix off a date, number or quantity value.
pub(super) fn split_prefix<'v>(name: &str, v: &'v str) -> Result<(Prefix, &'v str), Fail> {
    let b = v.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
        let p = Prefix::from_code(&v[..2]).ok_or_else(|| {
            invalid(
                name,
                format!(
                    "unknown prefix '{}' in '{v}' (use eq, ne, gt, lt, ge, le, sa, eb or ap)",
                    &v[..2]
                ),
            )
        })?;
        Ok((p, &v[2..]))
    } else {
        Ok((Prefix::Eq, v))
    }
}

pub(super) fn parse_date(name: &str, v: &str) -> Result<Match, Fail> {
    let (prefix, rest) = split_prefix(name, v)?;
    let r = parse_date_range(rest)
        .ok_or_else(|| invalid(name, format!("bad date '{rest}' for parameter {name}")))?;
    Ok(Match::Date {
        prefix,
        lo: r.lo,
        hi: r.hi,
    })
}

pub(super) fn parse_number(name: &str, v: &str) -> Result<(Prefix, Decimal), Fail> {
    let (prefix, rest) = split_prefix(name, v)?;
    if let Err(why) = issho_model::decimal::check_indexable(rest) {
        return Err(invalid(name, format!("parameter {name}: {why}")));
    }
    let d = parse_decimal(rest)
        .ok_or_else(|| invalid(name, format!("bad number '{rest}' for parameter {name}")))?;
    Ok((prefix, d))
}

/// Parse one (OR-part of a) value of a parameter of `kind`.
pub(super) fn parse_value(
    name: &str,
    kind: ParamKind,
    modifier: Option<&str>,
    type_modifier: Option<&str>,
    v: &str,
) -> Result<Match, Fail> {
    let opt = |s: &str| {
        if s.is_empty() {
            None
        } else {
            Some(unescape(s))
        }
    };
    match kind {
        ParamKind::Token => {
            if modifier == Some("text") {
                let t = normalize(&unescape(v));
                if t.is_empty() {
                    return Err(invalid(name, "empty :text value"));
                }
                return Ok(Match::TokenText(t));
            }
            let parts = split_escaped(v, '|');
            if modifier == Some("of-type") {
                if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                    return Err(invalid(
                        name,
                        format!(":of-type needs system|code|value, got '{v}'"),
                    ));
                }
                return Ok(Match::OfType {
                    system: unescape(&parts[0]),
                    code: unescape(&parts[1]),
                    value: unescape(&parts[2]),
                });
            }
            match parts.as_slice() {
                [code] => Ok(Match::Token {
                    system: None,
                    code: Some(unescape(code)),
                }),
                [system, code] if !(system.is_empty() && code.is_empty()) => Ok(Match::Token {
                    system: Some(unescape(system)),
                    code: opt(code),
                }),
                _ => Err(invalid(name, format!("'{v}' is not [system|]code"))),
            }
        }
        ParamKind::String => {
            let raw = unescape(v);
            let (mode, value) = match modifier {
                Some("exact") => (StringMode::Exact, raw),
                Some("contains") => (StringMode::Contains, normalize(&raw)),
                _ => (StringMode::StartsWith, normalize(&raw)),
            };
            if value.is_empty() {
                return Err(invalid(name, format!("'{v}' has no searchable text")));
            }
            Ok(Match::String { mode, value })
        }
        ParamKind::Reference => {
            if modifier == Some("identifier") {
                let parts = split_escaped(v, '|');
                return match parts.as_slice() {
                    [value] => Ok(Match::ReferenceIdentifier {
                        system: None,
                        value: unescape(value),
                    }),
                    [system, value] if !value.is_empty() => Ok(Match::ReferenceIdentifier {
                        system: Some(unescape(system)),
                        value: unescape(value),
                    }),
                    _ => Err(invalid(name, format!("'{v}' is not [system|]value"))),
                };
            }
            let v = unescape(v);
            if v.contains("://") || v.starts_with("urn:") {
                let (url, version) = match v.split_once('|') {
                    Some((u, ver)) => (u.to_string(), Some(ver.to_string())),
                    None => (v.clone(), None),
                };
                return Ok(Match::ReferenceUrl { url, version });
            }
            if v.contains('/') {
                let (t, id, version) = parse_literal_reference(&v)
                    .ok_or_else(|| invalid(name, format!("'{v}' is not a reference (Type/id)")))?;
                if let Some(m) = type_modifier
                    && m != t
                {
                    return Err(invalid(
                        name,
                        format!("'{v}' contradicts the type modifier ':{m}'"),
                    ));
                }
                return Ok(Match::Reference {
                    ref_type: Some(t),
                    id,
                    version,
                });
            }
            Ok(Match::Reference {
                ref_type: type_modifier.map(str::to_string),
                id: v,
                version: None,
            })
        }
        ParamKind::Date => parse_date(name, v),
        ParamKind::Number => {
            let (prefix, value) = parse_number(name, v)?;
            Ok(Match::Number { prefix, value })
        }
        ParamKind::Quantity => {
            let parts = split_escaped(v, '|');
            let (num, system, code) = match parts.as_slice() {
                [n] => (n.as_str(), None, None),
                [n, s, c] => (n.as_str(), opt(s), opt(c)),
                _ => {
                    return Err(invalid(
                        name,
                        format!("'{v}' is not [prefix]number[|system|code]"),
                    ));
                }
            };
            let (prefix, value) = parse_number(name, num)?;
            if system.as_deref() == Some(UCUM)
                && let Some(c) = &code
            {
                let (canon, f) = ucum_canonical(c);
                return Ok(Match::Quantity {
                    prefix,
                    value: Decimal {
                        value: value.value * f,
                        lo: value.lo * f,
                        hi: value.hi * f,
                    },
                    system,
                    code: Some(canon),
                    canonical: true,
                });
            }
            Ok(Match::Quantity {
                prefix,
                value,
                system,
                code,
                canonical: false,
            })
        }
        ParamKind::Uri => Ok(Match::Uri {
            mode: match modifier {
                Some("above") => UriMode::Above,
                Some("below") => UriMode::Below,
                _ => UriMode::Exact,
            },
            value: unescape(v),
        }),
        ParamKind::Composite | ParamKind::Special => Err(not_supported(
            name,
            format!("nested {} parameter", kind.code()),
        )),
    }
}

/// Parameters whose values have a syntax of their own.
#[derive(Clone, Copy)]
pub(super) enum Special {
    FullText(TextField),
    Near,
}

pub(super) fn special_values(p: &SearchParam) -> Option<Special> {
    match p.source {
        Source::Narrative => Some(Special::FullText(TextField::Narrative)),
        Source::Content => Some(Special::FullText(TextField::Content)),
        Source::Position(_) => Some(Special::Near),
        _ => None,
    }
}

/// `_text`, `_content` (full text) and `near`: values ORed by commas, no modifiers.
pub(super) fn parse_special(
    special: Special,
    keys: &[String],
    name: &str,
    code: &str,
    modifier: Option<&str>,
    value: &str,
) -> Result<Test, Fail> {
    if let Some(m) = modifier {
        return Err(not_supported(
            name,
            format!("modifier ':{m}' is not supported on '{code}'"),
        ));
    }
    let values = split_escaped(value, ',');
    match special {
        Special::FullText(field) => {
            let values: Vec<String> = values.iter().map(|v| unescape(v)).collect();
            let terms = text_terms(&values).map_err(|e| invalid(name, e))?;
            Ok(Test::FullText { field, terms })
        }
        Special::Near => {
            let mut matches = Vec::new();
            for v in &values {
                let (lat, lon, distance_m) =
                    crate::geo::parse_near(v).map_err(|e| invalid(name, e))?;
                matches.push(Match::Near {
                    lat,
                    lon,
                    distance_m,
                });
            }
            Ok(Test::Values {
                keys: keys.to_vec(),
                kind: ParamKind::Special,
                components: Vec::new(),
                parts: Vec::new(),
                matches,
                negate: false,
            })
        }
    }
}
