//! JP-CLINS documents between a person's institutions: a referral letter (診療情報提供書) from
//! the first institution that attended them to the second, and a discharge summary
//! (退院時サマリー) from the hospital of their latest stay. Their sections are narratives (the
//! diagnoses, allergies and course as text), so taking them in adds the documents to the
//! person's record — and, for the referral, the receiving institution's care relationship —
//! without copying the structured items already there. The Patient and organizations are the
//! demo's own (matched by their identifiers when taken in).

use crate::codes::MEDICAL_INSTITUTION_NO;
use crate::{DemoConfig, DemoResource};
use serde_json::{Value, json};

const SECTION: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/document-section";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(code: &str, title: &str, text: &str, sub: Vec<Value>) -> Value {
    let mut s = json!({"title": title,
        "code": {"coding": [{"system": SECTION, "code": code}]},
        "text": {"status": "generated",
            "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", escape(text))}});
    if !sub.is_empty() {
        s["section"] = json!(sub);
    }
    s
}

fn display(cc: &Value) -> String {
    cc["text"]
        .as_str()
        .or_else(|| cc["coding"][0]["display"].as_str())
        .unwrap_or("—")
        .to_string()
}

/// Texts of the person's diagnoses and allergies.
fn texts(rs: &[DemoResource]) -> (String, String) {
    let list = |rt: &str| -> String {
        let v: Vec<String> = rs
            .iter()
            .filter(|r| r.resource_type == rt)
            .map(|r| display(&r.resource["code"]))
            .collect();
        if v.is_empty() {
            "なし".into()
        } else {
            v.join("、")
        }
    };
    (list("Condition"), list("AllergyIntolerance"))
}

/// The organization `Organization/{id}` of the reference data, as an entry resource.
fn organization(reference: &[DemoResource], r: &str) -> Option<Value> {
    let id = r.strip_prefix("Organization/")?;
    let o = reference
        .iter()
        .find(|x| x.resource_type == "Organization" && x.id == id)?;
    let mut v = o.resource.clone();
    v.as_object_mut()?.remove("id");
    Some(v)
}

fn institution_no(org: &Value) -> Option<&str> {
    org["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"].as_str() == Some(MEDICAL_INSTITUTION_NO))?["value"]
        .as_str()
}

/// One document: (kind code, category, title, sections) about `patient`, from `from` (to `to`).
struct Doc<'a> {
    kind: &'static str,
    category: &'static str,
    title: &'static str,
    patient: &'a Value,
    from: Value,
    to: Option<Value>,
    sections: Vec<Value>,
}

fn bundle(i: usize, n: u64, d: Doc<'_>) -> Option<Value> {
    let url = |k: u64| format!("urn:uuid:{i:08x}-{n:04x}-4000-8000-{k:012x}");
    let (c, p, a, b) = (url(0), url(1), url(2), url(3));
    let no = institution_no(&d.from)?;
    let mut patient = d.patient.clone();
    patient.as_object_mut()?.remove("id");
    let mut entries = vec![
        Value::Null,
        json!({"fullUrl": p, "resource": patient}),
        json!({"fullUrl": a, "resource": d.from}),
    ];
    let mut sections = Vec::new();
    if let Some(to) = d.to {
        entries.push(json!({"fullUrl": b, "resource": to}));
        sections.push(
            json!({"title": "紹介元情報", "code": {"coding": [{"system": SECTION, "code": "920"}]},
            "entry": [{"reference": a}]}),
        );
        sections.push(
            json!({"title": "紹介先情報", "code": {"coding": [{"system": SECTION, "code": "910"}]},
            "entry": [{"reference": b}]}),
        );
    }
    sections.extend(d.sections);
    entries[0] = json!({"fullUrl": c, "resource": {
        "resourceType": "Composition", "status": "final",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber", "valueString": "1"}],
        "identifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier", "value": format!("demo-{}-{i}", d.kind)},
        "type": {"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes", "code": d.kind, "display": d.title}]},
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes", "code": d.category}]}],
        "subject": {"reference": p}, "date": "2025-03-15T10:00:00+09:00", "title": d.title,
        "author": [{"reference": a}], "custodian": {"reference": a}, "section": sections}});
    Some(json!({"resourceType": "Bundle", "type": "document",
        "identifier": {"system": "http://jpfhir.jp/fhir/clins/bundle-identifier", "value": format!("{no}^2025^demo-{}-{i}", d.kind)},
        "timestamp": "2025-03-15T10:00:00+09:00",
        "entry": entries}))
}

/// The documents of person `i`: a referral from their first institution to their second, and
/// a discharge summary from the hospital of their latest stay (when they have those).
pub fn documents(cfg: &DemoConfig, i: usize) -> Vec<Value> {
    let rs = crate::person_resources(cfg, i);
    let reference = crate::reference_resources();
    let patients: Vec<&Value> = rs
        .iter()
        .filter(|r| r.resource_type == "Patient")
        .map(|r| &r.resource)
        .collect();
    let org_of = |p: &Value| {
        p["managingOrganization"]["reference"]
            .as_str()
            .map(str::to_string)
    };
    let (diagnoses, allergies) = texts(&rs);
    let mut out = Vec::new();
    if let [first, second, ..] = patients.as_slice()
        && let (Some(a), Some(b)) = (org_of(first), org_of(second))
        && let (Some(from), Some(to)) = (organization(&reference, &a), organization(&reference, &b))
    {
        let structured = section(
            "300",
            "構造情報",
            "診療情報",
            vec![
                section("950", "紹介目的", "継続診療のお願い", vec![]),
                section("340", "傷病名・主訴", &diagnoses, vec![]),
                section(
                    "360",
                    "現病歴",
                    "当院で加療中。詳細は傷病名を参照。",
                    vec![],
                ),
                section("510", "アレルギー・不耐性反応", &allergies, vec![]),
            ],
        );
        let doc = Doc {
            kind: "57133-1",
            category: "OUTPATIENT",
            title: "診療情報提供書",
            patient: first,
            from,
            to: Some(to),
            sections: vec![structured],
        };
        out.extend(bundle(i, 1, doc));
    }
    // The latest inpatient stay, at its hospital.
    let stay = rs
        .iter()
        .filter(|r| r.resource_type == "Encounter" && r.resource["class"]["code"] == "IMP")
        .max_by_key(|r| {
            r.resource["period"]["start"]
                .as_str()
                .unwrap_or("")
                .to_string()
        });
    if let Some(stay) = stay
        && let Some(h) = stay.resource["serviceProvider"]["reference"].as_str()
        && let Some(patient) = patients.iter().find(|p| org_of(p).as_deref() == Some(h))
        && let Some(hospital) = organization(&reference, h)
    {
        let period = format!(
            "{} – {}",
            stay.resource["period"]["start"].as_str().unwrap_or("?"),
            stay.resource["period"]["end"].as_str().unwrap_or("?")
        );
        let s = |code: &str, title: &str, text: &str| section(code, title, text, vec![]);
        let structured = section(
            "300",
            "構造情報",
            "入院診療",
            vec![
                s("322", "入院時詳細", &format!("入院期間 {period}")),
                s("342", "入院時診断", &diagnoses),
                s("352", "主訴", "症状の増悪"),
                s("312", "入院理由", "精査加療のため"),
                s("362", "現病歴", "外来で加療中に症状が増悪し入院。"),
                s("333", "入院中経過", "治療により症状は改善した。"),
                s("324", "退院時詳細", "軽快退院"),
                s("344", "退院時診断", &diagnoses),
                s("444", "退院時投薬指示", "入院前の処方を継続"),
                s("424", "退院時方針指示", "かかりつけ医で経過観察"),
                s("510", "アレルギー・不耐性反応", &allergies),
            ],
        );
        let doc = Doc {
            kind: "18842-5",
            category: "DISCHARGE",
            title: "退院時サマリー",
            patient,
            from: hospital,
            to: None,
            sections: vec![structured],
        };
        out.extend(bundle(i, 2, doc));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's documents are what an intake takes: every one plans without an issue, and
    /// both kinds occur.
    #[test]
    fn every_document_is_one_an_intake_takes() {
        let cfg = DemoConfig {
            persons: 60,
            seed: 1,
        };
        let mut kinds = std::collections::BTreeMap::new();
        for i in 0..cfg.persons {
            for d in documents(&cfg, i) {
                let plan = issho_documents::plan(&d, "2025-04-01T00:00:00Z", &|_| None)
                    .unwrap_or_else(|e| panic!("person {i}: {e:?}"));
                *kinds.entry(plan.kind.code()).or_insert(0) += 1;
                let p = d["entry"][1]["resource"]["identifier"][0]["system"]
                    .as_str()
                    .unwrap();
                assert!(p.starts_with("urn:oid:1.2.392.100495.20.3.51.1"), "{p}");
            }
        }
        assert!(kinds.get("57133-1").is_some_and(|n| *n >= 10), "{kinds:?}");
        assert!(kinds.contains_key("18842-5"), "{kinds:?}");
    }
}
