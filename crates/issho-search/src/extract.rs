//! Extraction: the index rows of one resource, from the compiled parameter paths.

mod emit;

use crate::registry::{NO_KEY, Registry, SearchParam, Source};
use emit::Emitter;
pub(crate) use emit::may_index;
use serde_json::Value;

pub(crate) const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const CURRENCY: &str = "urn:iso:std:iso:4217";

/// Suffix of the key of display/text rows (string rows used by token `:text`).
pub const TEXT_SUFFIX: &str = "#text";
/// Suffix of the key of Identifier.type rows (token rows used by `:of-type`).
pub const OF_TYPE_SUFFIX: &str = "#type";
/// Suffix of the key of Reference.identifier rows (token rows used by `:identifier`).
pub const IDENTIFIER_SUFFIX: &str = "#identifier";
/// Separator between Identifier.type code and Identifier.value in `:of-type` rows.
pub const OF_TYPE_SEP: char = '\u{1f}';

/// One extracted value, shaped like the row of its index table.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Row {
    /// `sp_token`: system (`""` when absent) and code.
    Token { system: String, code: String },
    /// `sp_string`: normalised and exact text; `exact` is empty when it equals `norm` (and
    /// always in `:text` rows, which are searched by `norm` only).
    Str { norm: String, exact: String },
    /// `sp_ref`: a literal reference (`ref_type`/`ref_id`/`version`) or a URL (absolute,
    /// canonical, contained `#id`); all `""` for a reference with neither.
    Ref {
        ref_type: String,
        ref_id: String,
        version: String,
        url: String,
    },
    /// `sp_date`: inclusive microsecond range.
    Date { lo: i64, hi: i64 },
    /// `sp_number`: value range (a point for plain numbers).
    Number { lo: f64, hi: f64 },
    /// `sp_quantity`: `canon` rows hold the value converted to UCUM base units.
    Quantity {
        canon: bool,
        system: String,
        code: String,
        unit: String,
        lo: f64,
        hi: f64,
    },
    /// `sp_uri`.
    Uri(String),
    /// `sp_geo`: a position in degrees (its point on the unit sphere is stored with it).
    Geo { lat: f64, lon: f64 },
    /// `sp_text`: the full-text tokens of the narrative and of the content (one row per
    /// resource, under the key of `_content`; see `fulltext`).
    Text { narrative: String, content: String },
}

/// A row with its parameter key and composite group (0 outside composites).
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct IndexRow {
    /// The key's number in [`Registry::keys`].
    pub key: u32,
    pub grp: u32,
    pub row: Row,
}

impl IndexRow {
    /// The key (`Observation.code`, `Observation.code#text`, …).
    pub fn key_name(&self) -> &'static str {
        &Registry::r4().keys()[self.key as usize]
    }
}

/// All index rows of `resource` (by its `resourceType`) for the R4 parameters, sorted and
/// without duplicates.
pub fn extract(resource: &Value) -> Vec<IndexRow> {
    extract_in(Registry::r4(), resource)
}

/// [`extract`] for the parameters of `reg`; keys are numbers into `reg.keys()`.
pub fn extract_in(reg: &Registry, resource: &Value) -> Vec<IndexRow> {
    let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut grp = 0;
    for p in reg.params_for(rt).filter(|p| p.is_indexed()) {
        extract_param(p, resource, &mut out, &mut grp);
    }
    if let Some(p) = reg
        .param(rt, "_content")
        .filter(|p| matches!(p.source, Source::Content))
        && let Some(row) = crate::fulltext::text_row(resource)
    {
        out.push(IndexRow {
            key: p.kid.base,
            grp: 0,
            row,
        });
    }
    // Values found by several paths, and texts repeated in codings, are written once.
    out.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    out.dedup();
    out
}

/// The index rows of one parameter; `grp` numbers the composite values of the resource.
pub(crate) fn extract_param(
    p: &SearchParam,
    resource: &Value,
    out: &mut Vec<IndexRow>,
    grp: &mut u32,
) {
    match &p.source {
        Source::Paths(paths) => {
            let mut e = Emitter {
                key: p.kid.base,
                text_key: p.kid.text,
                of_type_key: p.kid.of_type,
                identifier_key: p.kid.identifier,
                grp: 0,
                out,
            };
            for path in paths {
                for node in path.eval(resource, resource) {
                    e.value(p.kind, path, node);
                }
            }
        }
        Source::Composite(roots) => {
            // A composite value exists only where every component has a value at the same
            // place: its rows are written only then. A composite whose components are other
            // parameters' rows (`SearchParam::shares_parts`) writes none, but still numbers
            // its values' groups as when it had rows of its own (index format 3): PostgreSQL
            // keeps the rows written before that, and removes a superseded version's rows by
            // extracting them again — which must give the same group numbers.
            let shared = p.shares_parts;
            let mut parts = Vec::new();
            for (root, comps) in roots {
                for node in root.eval(resource, resource) {
                    parts.clear();
                    let g = *grp + 1;
                    let mut complete = comps.len() == p.components.len() && !comps.is_empty();
                    for (i, paths) in comps.iter().enumerate() {
                        // Shared: the rows only tell whether the component has a value.
                        let key = if shared { Some(&0) } else { p.kid.comps.get(i) };
                        let (Some(kind), Some(key)) = (p.components.get(i), key) else {
                            complete = false;
                            break;
                        };
                        let before = parts.len();
                        let mut e = Emitter {
                            key: *key,
                            text_key: NO_KEY,
                            of_type_key: NO_KEY,
                            identifier_key: NO_KEY,
                            grp: g,
                            out: &mut parts,
                        };
                        for path in paths {
                            for v in path.eval(resource, node) {
                                e.value(*kind, path, v);
                            }
                        }
                        if parts.len() == before {
                            complete = false;
                            break;
                        }
                    }
                    if complete {
                        *grp = g;
                        if !shared {
                            out.append(&mut parts);
                        }
                    }
                }
            }
        }
        Source::Deceased => {
            let code = match (
                resource.get("deceasedBoolean").and_then(Value::as_bool),
                resource.get("deceasedDateTime").is_some(),
            ) {
                (Some(b), _) => b,
                (None, has_date) => has_date,
            };
            out.push(IndexRow {
                key: p.kid.base,
                grp: 0,
                row: Row::Token {
                    system: String::new(),
                    code: code.to_string(),
                },
            });
        }
        Source::FhirPath(expr) => {
            let mut e = Emitter {
                key: p.kid.base,
                text_key: p.kid.text,
                of_type_key: p.kid.of_type,
                identifier_key: p.kid.identifier,
                grp: 0,
                out,
            };
            let ctx = issho_fhirpath::Context::new();
            // An expression that fails on this resource (e.g. a singleton check) yields no
            // rows, like a path that finds nothing.
            for item in issho_fhirpath::evaluate(expr, resource, &ctx).unwrap_or_default() {
                match &item {
                    issho_fhirpath::Item::Node(n) => {
                        let t = n.ty.map(|t| t.code).unwrap_or("");
                        e.typed_value(p.kind, t, None, &[], n.value);
                    }
                    issho_fhirpath::Item::Value(v) => {
                        let json = item.to_json();
                        let t = match v {
                            issho_fhirpath::Val::Boolean(_) => "boolean",
                            issho_fhirpath::Val::Integer(_) => "integer",
                            issho_fhirpath::Val::Decimal(_) => "decimal",
                            issho_fhirpath::Val::String(_) => "string",
                            issho_fhirpath::Val::Date(_) => "date",
                            issho_fhirpath::Val::DateTime(_) => "dateTime",
                            issho_fhirpath::Val::Time(_) => "time",
                            _ => continue,
                        };
                        e.typed_value(p.kind, t, None, &[], &json);
                    }
                }
            }
        }
        Source::Position(paths) => {
            for path in paths {
                for node in path.eval(resource, resource) {
                    let coord = |k: &str| node.get(k).and_then(Value::as_f64);
                    if let (Some(lat), Some(lon)) = (coord("latitude"), coord("longitude"))
                        && crate::geo::valid_position(lat, lon)
                    {
                        out.push(IndexRow {
                            key: p.kid.base,
                            grp: 0,
                            row: Row::Geo { lat, lon },
                        });
                    }
                }
            }
        }
        // The full-text row is one per resource, written by `extract_in`.
        Source::Narrative | Source::Content => {}
        Source::Id | Source::LastUpdated | Source::Unsupported(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::parse_date_range;
    use serde_json::json;

    fn rows_for<'a>(rows: &'a [IndexRow], key: &str) -> Vec<&'a Row> {
        rows.iter()
            .filter(|r| r.key_name() == key)
            .map(|r| &r.row)
            .collect()
    }

    fn tok(system: &str, code: &str) -> Row {
        Row::Token {
            system: system.into(),
            code: code.into(),
        }
    }

    #[test]
    fn patient_rows() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "meta": {"tag": [{"system": "http://t", "code": "x"}], "profile": ["http://p|1"]},
            "identifier": [{"system": "urn:mrn", "value": "123",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
            "name": [{"family": "Ｙａｍａｄａ", "given": ["Tarō", "ﾀﾛｳ"]}],
            "telecom": [{"system": "phone", "value": "555-1"}, {"system": "email", "value": "a@b.c"}],
            "gender": "female", "birthDate": "1970-02",
            "active": true,
            "address": [{"city": "Tōkyō", "postalCode": "100-0001"}],
            "generalPractitioner": [{"reference": "Practitioner/9"}, {"identifier": {"system": "s", "value": "v"}}],
            "managingOrganization": {"reference": "http://other/fhir/Organization/1"}
        });
        let rows = extract(&p);
        assert_eq!(
            rows_for(&rows, "Patient.gender"),
            vec![
                &tok("", "female"),
                &tok("http://hl7.org/fhir/administrative-gender", "female")
            ]
        );
        assert_eq!(rows_for(&rows, "Patient.active"), vec![&tok("", "true")]);
        assert_eq!(
            rows_for(&rows, "Patient.identifier"),
            vec![&tok("urn:mrn", "123")]
        );
        assert_eq!(
            rows_for(&rows, "Patient.identifier#type"),
            vec![&tok(
                "http://terminology.hl7.org/CodeSystem/v2-0203",
                "MR\u{1f}123"
            )]
        );
        assert_eq!(
            rows_for(&rows, "Patient.phone"),
            vec![&tok("phone", "555-1")]
        );
        assert_eq!(
            rows_for(&rows, "Patient.email"),
            vec![&tok("email", "a@b.c")]
        );
        assert_eq!(rows_for(&rows, "Patient.telecom").len(), 2);
        let names: Vec<_> = rows_for(&rows, "Patient.name")
            .into_iter()
            .map(|r| match r {
                Row::Str { norm, .. } => norm.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, vec!["taro", "yamada", "タロウ"]);
        assert!(!rows_for(&rows, "Patient.family").is_empty());
        assert_eq!(rows_for(&rows, "Patient.address-city").len(), 1);
        let d = rows_for(&rows, "Patient.birthdate");
        let r = parse_date_range("1970-02").unwrap();
        assert_eq!(d, vec![&Row::Date { lo: r.lo, hi: r.hi }]);
        assert_eq!(rows_for(&rows, "_tag"), vec![&tok("http://t", "x")]);
        assert_eq!(
            rows_for(&rows, "_profile"),
            vec![&Row::Uri("http://p".into()), &Row::Uri("http://p|1".into())]
        );
        let gp = rows_for(&rows, "Patient.general-practitioner");
        assert_eq!(gp.len(), 2);
        assert!(
            gp.iter().any(|r| matches!(r, Row::Ref { ref_type, ref_id, .. } if ref_type == "Practitioner" && ref_id == "9"))
        );
        assert_eq!(
            rows_for(&rows, "Patient.general-practitioner#identifier"),
            vec![&tok("s", "v")]
        );
        assert!(matches!(rows_for(&rows, "Patient.organization")[0],
            Row::Ref { url, ref_type, .. } if url == "http://other/fhir/Organization/1" && ref_type.is_empty()));
        assert_eq!(rows_for(&rows, "Patient.deceased"), vec![&tok("", "false")]);
    }

    #[test]
    fn observation_rows() {
        let o = json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}], "text": "BP"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2020-01-01"},
        "valueQuantity": {"value": 1000, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "a"}]}, "valueQuantity": {"value": 1, "code": "x"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "b"}]}, "valueQuantity": {"value": 2, "code": "y"}}
        ]});
        let rows = extract(&o);
        assert_eq!(
            rows_for(&rows, "Observation.code"),
            vec![&tok("http://loinc.org", "8480-6")]
        );
        assert_eq!(rows_for(&rows, "Observation.code#text").len(), 2);
        // Components have no `:text` rows.
        assert!(rows.iter().all(|r| !r.key_name().contains("$0#")));
        assert_eq!(rows_for(&rows, "Observation.patient").len(), 1);
        assert_eq!(rows_for(&rows, "Observation.subject").len(), 1);
        let d = rows_for(&rows, "Observation.date");
        assert!(matches!(d[0], Row::Date { hi, .. } if *hi == i64::MAX));
        let q = rows_for(&rows, "Observation.value-quantity");
        assert_eq!(q.len(), 2);
        assert!(
            matches!(q[1], Row::Quantity { canon: true, code, lo, .. } if code == "g" && (*lo - 1.0).abs() < 1e-12)
        );
        // Composite: groups keep code and value of the same component together.
        let grps = |key: &str| -> Vec<u32> {
            rows.iter()
                .filter(|r| r.key_name() == key)
                .map(|r| r.grp)
                .collect()
        };
        let c0 = grps("Observation.component-code-value-quantity$0");
        let c1 = grps("Observation.component-code-value-quantity$1");
        assert_eq!(c0.len(), 2);
        assert_ne!(c0[0], c0[1]);
        assert!(c1.iter().all(|g| c0.contains(g)));
        // combo-* parameters are searched through the rows of the plain and component ones.
        assert!(grps("Observation.combo-code-value-quantity$1").is_empty());
        // code-value-quantity is searched through `code` and `value-quantity` (group 0).
        assert!(grps("Observation.code-value-quantity$1").is_empty());
        assert!(grps("Observation.value-quantity").iter().all(|g| *g == 0));
        // Groups are distinct across composites.
        assert!(
            grps("Observation.code-value-string$0")
                .iter()
                .all(|g| !c0.contains(g) && *g > 0)
        );
    }

    /// A composite has rows only where all its components have values at the same place.
    #[test]
    fn composites_need_every_component() {
        let o = json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "a"}]},
             "valueCodeableConcept": {"coding": [{"system": "http://s", "code": "pos"}]}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "b"}]}}
        ]});
        let rows = extract(&o);
        let keys: std::collections::BTreeSet<&str> = rows
            .iter()
            .filter(|r| r.key_name().contains('$'))
            .map(|r| r.key_name())
            .collect();
        // Group numbers are those of index format 3: the root's code-value-quantity tuple
        // (no rows now) still takes group 1, so the component's tuple is in group 2 — the
        // rows PostgreSQL stored before are found again when this version is replaced.
        let c0 = rows
            .iter()
            .filter(|r| r.key_name() == "Observation.component-code-value-concept$0")
            .map(|r| r.grp)
            .collect::<Vec<_>>();
        assert_eq!(c0, vec![2]);
        // code-value-quantity has no rows of its own (see `composite`).
        let expected: std::collections::BTreeSet<&str> = [
            "Observation.component-code-value-concept$0",
            "Observation.component-code-value-concept$1",
        ]
        .into_iter()
        .collect();
        assert_eq!(keys, expected);
        // component-code-value-concept: only component `a` (code `b` has no value).
        let c0 = rows_for(&rows, "Observation.component-code-value-concept$0");
        assert_eq!(c0, vec![&tok("http://loinc.org", "a")]);
        // Every group has rows for every component.
        for r in rows.iter().filter(|r| r.grp > 0) {
            let base = r.key_name().split('$').next().unwrap();
            for i in 0..2 {
                let k = format!("{base}${i}");
                assert!(
                    rows.iter().any(|x| x.grp == r.grp && x.key_name() == k),
                    "group {} lacks {k}",
                    r.grp
                );
            }
        }
        // An Observation without any value has no composite rows at all.
        let bare = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "x"}]}});
        assert!(
            extract(&bare)
                .iter()
                .all(|r| r.grp == 0 && !r.key_name().contains('$'))
        );
    }
}
