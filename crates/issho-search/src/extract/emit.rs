//! Values of FHIR types as index rows of a parameter's kind (`Emitter`): tokens, strings,
//! references, dates, numbers, quantities and URIs, as the search tables hold them.

use super::{CURRENCY, IndexRow, OF_TYPE_SEP, Row, UCUM};
use crate::expr::{Path, parse_literal_reference};
use crate::registry::{NO_KEY, ParamKind};
use crate::values::{normalize, parse_date_range, ucum_canonical};
use issho_model::r4;
use serde_json::Value;

/// Writes the rows of one parameter (or composite component). Keys are numbers in
/// [`Registry::keys`]; [`NO_KEY`] suppresses the rows of that key (composite components have
/// no `:text`, `:of-type` or `:identifier` rows).
pub(super) struct Emitter<'a> {
    pub(super) key: u32,
    pub(super) text_key: u32,
    pub(super) of_type_key: u32,
    pub(super) identifier_key: u32,
    pub(super) grp: u32,
    pub(super) out: &'a mut Vec<IndexRow>,
}

fn s<'v>(v: &'v Value, k: &str) -> Option<&'v str> {
    v.get(k).and_then(Value::as_str)
}

fn strs<'v>(v: &'v Value, k: &str) -> Vec<&'v str> {
    match v.get(k) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(x)) => vec![x.as_str()],
        _ => Vec::new(),
    }
}

fn items<'v>(v: &'v Value, k: &str) -> Vec<&'v Value> {
    match v.get(k) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(x) => vec![x],
        None => Vec::new(),
    }
}

fn is_stringish(type_code: &str) -> bool {
    matches!(
        type_code,
        "string" | "code" | "id" | "uri" | "url" | "canonical" | "oid" | "uuid" | "markdown"
    )
}

/// False when values of FHIR type `type_code` never give rows of `kind` (only said where
/// certain: a quantity parameter indexes quantities, `Money` and `Range`; see
/// `Emitter::quantity_value`).
pub(crate) fn may_index(kind: ParamKind, type_code: &str) -> bool {
    kind != ParamKind::Quantity || is_quantity(type_code) || matches!(type_code, "Money" | "Range")
}

fn is_quantity(type_code: &str) -> bool {
    matches!(
        type_code,
        "Quantity" | "Age" | "Duration" | "Count" | "Distance" | "SimpleQuantity" | "MoneyQuantity"
    )
}

impl Emitter<'_> {
    fn push(&mut self, row: Row) {
        self.push_key(self.key, row);
    }
    fn push_key(&mut self, key: u32, row: Row) {
        // Duplicates are removed by `extract`.
        if key != NO_KEY {
            self.out.push(IndexRow {
                key,
                grp: self.grp,
                row,
            });
        }
    }
    fn token(&mut self, system: Option<&str>, code: &str) {
        self.push(Row::Token {
            system: system.unwrap_or("").to_string(),
            code: code.to_string(),
        });
    }
    /// A `:text` row: only the normalised text is searched, so `exact` stays empty.
    fn text(&mut self, text: Option<&str>) {
        if self.text_key == NO_KEY {
            return;
        }
        if let Some(t) = text.filter(|t| !t.trim().is_empty()) {
            self.push_key(
                self.text_key,
                Row::Str {
                    norm: normalize(t),
                    exact: String::new(),
                },
            );
        }
    }
    fn string(&mut self, text: &str) {
        if !text.trim().is_empty() {
            self.push(str_row(text));
        }
    }

    pub(super) fn value(&mut self, kind: ParamKind, path: &Path, v: &Value) {
        self.typed_value(
            kind,
            &path.type_code,
            path.binding.as_deref(),
            &path.code_systems,
            v,
        );
    }

    /// A value of FHIR type `type_code`; `binding`/`code_systems`: the required value set of
    /// a `code` element and its systems (so that `system|code` matches too).
    pub(super) fn typed_value(
        &mut self,
        kind: ParamKind,
        type_code: &str,
        binding: Option<&str>,
        code_systems: &[String],
        v: &Value,
    ) {
        match kind {
            ParamKind::Token => {
                self.token_value(type_code, v);
                // A code with a required binding also matches `system|code`.
                if type_code == "code"
                    && let (Some(vs), Some(code)) = (binding, v.as_str())
                    && let Some(set) = r4().value_set(vs)
                {
                    for system in code_systems {
                        if set.contains(&(system.clone(), code.to_string())) {
                            self.token(Some(system), code);
                        }
                    }
                }
            }
            ParamKind::String => self.string_value(type_code, v),
            ParamKind::Reference => self.reference_value(type_code, v),
            ParamKind::Date => self.date_value(type_code, v),
            ParamKind::Number => {
                if let Some(n) = v.as_f64() {
                    self.push(Row::Number { lo: n, hi: n });
                }
            }
            ParamKind::Quantity => self.quantity_value(type_code, v),
            ParamKind::Uri => {
                if let Some(u) = v.as_str() {
                    self.push(Row::Uri(u.to_string()));
                    // A versioned canonical also matches its bare URL.
                    if type_code == "canonical"
                        && let Some((url, _)) = u.split_once('|')
                    {
                        self.push(Row::Uri(url.to_string()));
                    }
                }
            }
            ParamKind::Composite | ParamKind::Special => {}
        }
    }

    fn coding(&mut self, c: &Value) {
        if let Some(code) = s(c, "code") {
            self.token(s(c, "system"), code);
        } else if let Some(system) = s(c, "system") {
            // A coding without a code still matches `system|`.
            self.push(Row::Token {
                system: system.to_string(),
                code: String::new(),
            });
        }
        self.text(s(c, "display"));
    }

    fn token_value(&mut self, type_code: &str, v: &Value) {
        match type_code {
            "Coding" => self.coding(v),
            "CodeableConcept" => {
                for c in items(v, "coding") {
                    self.coding(c);
                }
                self.text(s(v, "text"));
            }
            "Identifier" => {
                if let Some(value) = s(v, "value") {
                    self.token(s(v, "system"), value);
                    if let Some(t) = v.get("type") {
                        for c in items(t, "coding") {
                            if let Some(tc) = s(c, "code")
                                && self.of_type_key != NO_KEY
                            {
                                self.push_key(
                                    self.of_type_key,
                                    Row::Token {
                                        system: s(c, "system").unwrap_or("").to_string(),
                                        code: format!("{tc}{OF_TYPE_SEP}{value}"),
                                    },
                                );
                            }
                        }
                    }
                }
                if let Some(t) = v.get("type") {
                    self.text(s(t, "text"));
                }
            }
            "ContactPoint" => {
                if let Some(value) = s(v, "value") {
                    self.token(s(v, "system"), value);
                }
            }
            "boolean" => {
                if let Some(b) = v.as_bool() {
                    self.token(None, if b { "true" } else { "false" });
                }
            }
            t if is_stringish(t) => {
                if let Some(x) = v.as_str() {
                    self.token(None, x);
                }
            }
            _ => {}
        }
    }

    fn string_value(&mut self, type_code: &str, v: &Value) {
        match type_code {
            "HumanName" => {
                for k in ["family", "given", "prefix", "suffix", "text"] {
                    for x in strs(v, k) {
                        self.string(x);
                    }
                }
            }
            "Address" => {
                for k in [
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                    "text",
                ] {
                    for x in strs(v, k) {
                        self.string(x);
                    }
                }
            }
            "CodeableConcept" => {
                for x in strs(v, "text") {
                    self.string(x);
                }
                for c in items(v, "coding") {
                    for x in strs(c, "display") {
                        self.string(x);
                    }
                }
            }
            "Coding" => {
                for x in strs(v, "display") {
                    self.string(x);
                }
            }
            "ContactPoint" | "Identifier" => {
                for x in strs(v, "value") {
                    self.string(x);
                }
            }
            "Annotation" => {
                for x in strs(v, "text") {
                    self.string(x);
                }
            }
            _ => {
                if let Some(x) = v.as_str() {
                    self.string(x);
                }
            }
        }
    }

    fn reference_value(&mut self, type_code: &str, v: &Value) {
        match type_code {
            "Reference" => {
                let mut any = false;
                if let Some(r) = s(v, "reference") {
                    any = true;
                    self.push(reference_row(r));
                }
                if let Some(i) = v.get("identifier")
                    && let Some(value) = s(i, "value")
                    && self.identifier_key != NO_KEY
                {
                    self.push_key(
                        self.identifier_key,
                        Row::Token {
                            system: s(i, "system").unwrap_or("").to_string(),
                            code: value.to_string(),
                        },
                    );
                }
                if !any {
                    self.push(Row::Ref {
                        ref_type: String::new(),
                        ref_id: String::new(),
                        version: String::new(),
                        url: String::new(),
                    });
                }
            }
            "canonical" => {
                if let Some(c) = v.as_str() {
                    let (url, version) = c.split_once('|').unwrap_or((c, ""));
                    self.push(Row::Ref {
                        ref_type: String::new(),
                        ref_id: String::new(),
                        version: version.to_string(),
                        url: url.to_string(),
                    });
                }
            }
            "Resource" => {
                if let (Some(t), Some(id)) = (s(v, "resourceType"), s(v, "id")) {
                    self.push(Row::Ref {
                        ref_type: t.to_string(),
                        ref_id: id.to_string(),
                        version: String::new(),
                        url: String::new(),
                    });
                }
            }
            t if is_stringish(t) => {
                if let Some(u) = v.as_str() {
                    self.push(reference_row(u));
                }
            }
            _ => {}
        }
    }

    fn date_value(&mut self, type_code: &str, v: &Value) {
        match type_code {
            "date" | "dateTime" | "instant" => {
                if let Some(r) = v.as_str().and_then(parse_date_range) {
                    self.push(Row::Date { lo: r.lo, hi: r.hi });
                }
            }
            "Period" => {
                let lo = s(v, "start").and_then(parse_date_range).map(|r| r.lo);
                let hi = s(v, "end").and_then(parse_date_range).map(|r| r.hi);
                if lo.is_some() || hi.is_some() {
                    self.push(Row::Date {
                        lo: lo.unwrap_or(i64::MIN),
                        hi: hi.unwrap_or(i64::MAX),
                    });
                }
            }
            "Timing" => {
                for e in strs(v, "event") {
                    self.date_value("dateTime", &Value::String(e.to_string()));
                }
                if let Some(b) = v.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                    self.date_value("Period", b);
                }
            }
            _ => {}
        }
    }

    fn quantity_value(&mut self, type_code: &str, v: &Value) {
        match type_code {
            t if is_quantity(t) => {
                if let Some(n) = v.get("value").and_then(Value::as_f64) {
                    self.quantity(v, n, n);
                }
            }
            "Money" => {
                if let Some(n) = v.get("value").and_then(Value::as_f64) {
                    self.push(Row::Quantity {
                        canon: false,
                        system: CURRENCY.to_string(),
                        code: s(v, "currency").unwrap_or("").to_string(),
                        unit: String::new(),
                        lo: n,
                        hi: n,
                    });
                }
            }
            "Range" => {
                let low = v.get("low");
                let high = v.get("high");
                let lo = low.and_then(|q| q.get("value")).and_then(Value::as_f64);
                let hi = high.and_then(|q| q.get("value")).and_then(Value::as_f64);
                if lo.is_some() || hi.is_some() {
                    let units = low.filter(|_| lo.is_some()).or(high).unwrap_or(v);
                    self.quantity(units, lo.unwrap_or(f64::MIN), hi.unwrap_or(f64::MAX));
                }
            }
            _ => {}
        }
    }

    /// Rows of a quantity (value range `lo..hi`) with the units of `q`.
    fn quantity(&mut self, q: &Value, lo: f64, hi: f64) {
        let system = s(q, "system").unwrap_or("");
        let code = s(q, "code").unwrap_or("");
        self.push(Row::Quantity {
            canon: false,
            system: system.to_string(),
            code: code.to_string(),
            unit: s(q, "unit").unwrap_or("").to_string(),
            lo,
            hi,
        });
        if system == UCUM && !code.is_empty() {
            let (canon, f) = ucum_canonical(code);
            let scale = |x: f64| {
                if x == f64::MIN || x == f64::MAX {
                    x
                } else {
                    x * f
                }
            };
            self.push(Row::Quantity {
                canon: true,
                system: UCUM.to_string(),
                code: canon,
                unit: String::new(),
                lo: scale(lo),
                hi: scale(hi),
            });
        }
    }
}

fn str_row(t: &str) -> Row {
    let norm = normalize(t);
    let exact = if norm == t {
        String::new()
    } else {
        t.to_string()
    };
    Row::Str { norm, exact }
}

/// The row of a literal reference string: relative `Type/id[/_history/v]` → type and id;
/// anything else (absolute URL, `urn:`, `#contained`) → url.
fn reference_row(r: &str) -> Row {
    let absolute = r.contains(':') || r.starts_with('#');
    match parse_literal_reference(r).filter(|_| !absolute) {
        Some((t, id, version)) => Row::Ref {
            ref_type: t,
            ref_id: id,
            version: version.unwrap_or_default(),
            url: String::new(),
        },
        None => Row::Ref {
            ref_type: String::new(),
            ref_id: String::new(),
            version: String::new(),
            url: r.to_string(),
        },
    }
}
