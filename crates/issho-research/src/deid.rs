//! The de-identified copy of a resource, walked by the R4 tables (every element's type is
//! known, so rules are written per data type, not per resource).
//!
//! Removed: every `HumanName`, `ContactPoint`, `Identifier`, `Annotation`, `Attachment`,
//! `Signature` and `Narrative` (names in kanji and kana, insurance and patient numbers, phone,
//! email, notes, photos and documents, the readable narrative); every `string` and `markdown`
//! (free text) except a coding's display and version and a quantity's unit; `base64Binary`;
//! elements the tables do not know (nothing unvetted leaves); a reference's identifier and
//! display; `meta.lastUpdated` and `meta.source`; a Patient's contacts; a Location's
//! position; an Organization's address ("institution to type": its `type` stays); the birth
//! dates of practitioners and related persons.
//! Kept, rewritten: resource ids and references (keyed pseudonyms, so links within the export
//! hold), dates (moved by the person's shift, keeping intervals), addresses (the prefecture),
//! the Patient's birth date (an age band or year, [`crate::BirthDate`]). A Patient gets one
//! identifier: the person's pseudonym in the project, the same for every Patient of the person.
//! An element the base requires that was removed is kept as an extension-only element with
//! data-absent-reason `masked`, so the output stays valid FHIR.

use crate::Project;
use crate::walk::Walk;
use serde_json::{Value, json};

/// The extension that replaces a birth date by an age band (`valueRange`, years, at the
/// export's date; without `high` for the top band).
pub const AGE_BAND: &str = "https://issho.example/fhir/StructureDefinition/age-band";

/// HL7's data-absent-reason extension (`masked`: removed by de-identification).
pub const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// The identifier system of a person's pseudonym in a project (followed by the project id).
pub const PERSON_SYSTEM: &str = "https://issho.example/fhir/research/person/";

/// The export's date (ages are computed at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Today {
    pub year: i64,
    pub month: u32,
    pub day: u32,
}

impl Today {
    pub fn now() -> Today {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (year, month, day) = issho_model::instant::civil_from_days(secs.div_euclid(86_400));
        Today { year, month, day }
    }
}

/// Whole years from (y, m, d) to `today`.
pub(crate) fn age(y: i64, m: u32, d: u32, today: Today) -> i64 {
    let mut a = today.year - y;
    if (today.month, today.day) < (m, d) {
        a -= 1;
    }
    a
}

pub(crate) fn masked() -> Value {
    json!({"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]})
}

/// Parse the date part of a FHIR date/dateTime/instant: (y, m, d, precision, rest after the
/// date).
pub(crate) fn parse_date(s: &str) -> Option<(i64, u32, u32, usize, &str)> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|x| x.iter().all(u8::is_ascii_digit))
            .map(|_| s[r].parse::<u32>().expect("digits"))
    };
    let y = digits(0..4)?;
    if b.len() == 4 {
        return Some((y.into(), 7, 1, 4, ""));
    }
    if b.get(4) != Some(&b'-') {
        return None;
    }
    let m = digits(5..7).filter(|m| (1..=12).contains(m))?;
    if b.len() == 7 {
        return Some((y.into(), m, 15, 7, ""));
    }
    if b.get(7) != Some(&b'-') {
        return None;
    }
    let d = digits(8..10).filter(|d| (1..=31).contains(d))?;
    Some((y.into(), m, d, 10, &s[10..]))
}

impl Project {
    /// The de-identified copy of `body` (a resource of type `rt` in `person`'s record; `None`:
    /// shared data), or `None` when the profile does not release its type.
    pub fn deidentify(
        &self,
        rt: &str,
        body: &Value,
        person: Option<&str>,
        today: Today,
    ) -> Option<Value> {
        if !self.profile.releases(rt) {
            return None;
        }
        let w = Walk {
            p: self,
            shift: person.map(|p| self.shift_days(p)).unwrap_or(0),
            today,
            r4: issho_model::r4(),
            withhold: Default::default(),
        };
        let mut out = body.clone();
        let o = out.as_object_mut()?;
        if !w.resource(o, false) {
            return None;
        }
        if rt == "Patient"
            && let Some(person) = person
        {
            o.insert(
                "identifier".into(),
                json!([{
                    "system": format!("{PERSON_SYSTEM}{}", self.id),
                    "value": self.pseudonym("person", person),
                }]),
            );
        }
        Some(out)
    }

    /// A released Patient's quasi-identifiers, in the profile's order.
    pub fn quasi_values(&self, released: &Value) -> Vec<String> {
        self.profile
            .quasi_identifiers
            .iter()
            .map(|q| match q {
                crate::Quasi::Age => age_of(released),
                crate::Quasi::Gender => released["gender"].as_str().unwrap_or("-").to_string(),
                crate::Quasi::Prefecture => released["address"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|a| a["state"].as_str())
                    .unwrap_or("-")
                    .to_string(),
            })
            .collect()
    }
}

/// The released age: the band (`40-49`, `90+`) or the birth year, or `-`.
fn age_of(released: &Value) -> String {
    for e in released["extension"].as_array().into_iter().flatten() {
        if e["url"] == AGE_BAND {
            let low = e["valueRange"]["low"]["value"].as_i64().unwrap_or(0);
            return match e["valueRange"]["high"]["value"].as_i64() {
                Some(h) => format!("{low}-{h}"),
                None => format!("{low}+"),
            };
        }
    }
    released["birthDate"].as_str().unwrap_or("-").to_string()
}

/// cmp-2: a section holds a narrative, entries or sections; one whose narrative went (and
/// nothing else is left) gets a narrative saying so.
pub(crate) fn keep_sections(sections: &mut [Value]) {
    for s in sections.iter_mut().filter_map(Value::as_object_mut) {
        if let Some(inner) = s.get_mut("section").and_then(Value::as_array_mut) {
            keep_sections(inner);
        }
        if !["text", "entry", "section"]
            .iter()
            .any(|k| s.contains_key(*k))
        {
            s.insert(
                "text".into(),
                json!({"status": "empty", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">masked</div>"}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Profile, Project};

    const TODAY: Today = Today {
        year: 2026,
        month: 12,
        day: 4,
    };

    fn project() -> Project {
        Project::new("study", "t", vec![], Profile::default()).unwrap()
    }

    #[test]
    fn dates_move_by_the_persons_shift_at_their_precision() {
        let p = project();
        let w = Walk {
            p: &p,
            shift: 10,
            today: TODAY,
            r4: issho_model::r4(),
            withhold: Default::default(),
        };
        assert_eq!(w.shift("2026-01-25").unwrap(), "2026-02-04");
        assert_eq!(
            w.shift("2026-12-25T10:00:00+09:00").unwrap(),
            "2027-01-04T10:00:00+09:00"
        );
        assert_eq!(w.shift("2026-02").unwrap(), "2026-02");
        assert_eq!(w.shift("2026").unwrap(), "2026");
        assert!(w.shift("26-1-1").is_none());
    }

    #[test]
    fn a_patient_leaves_without_what_identifies_them() {
        let p = project();
        let patient = json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {"lastUpdated": "2026-01-01T00:00:00Z", "source": "Organization/h1", "versionId": "2"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">山田 太郎</div>"},
            "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11311234567", "value": "00012345"}],
            "name": [{"family": "山田", "given": ["太郎"]}, {"family": "ヤマダ", "given": ["タロウ"], "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}]}],
            "telecom": [{"system": "phone", "value": "03-1234-5678"}],
            "gender": "male",
            "birthDate": "1950-03-02",
            "address": [{"text": "東京都千代田区1-1", "line": ["1-1"], "city": "千代田区", "state": "東京都", "postalCode": "100-0001", "country": "JP"}],
            "contact": [{"name": {"family": "山田"}, "telecom": [{"system": "phone", "value": "090"}]}],
            "generalPractitioner": [{"reference": "Practitioner/d1", "display": "佐藤 医師"}],
            "extension": [{"url": "http://example.org/note", "valueString": "離れに住む"}],
            "maritalStatus": {"text": "既婚", "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married"}]}
        });
        let out = p
            .deidentify("Patient", &patient, Some("person-1"), TODAY)
            .unwrap();
        let s = out.to_string();
        for secret in [
            "山田",
            "ヤマダ",
            "太郎",
            "00012345",
            "03-1234",
            "千代田",
            "100-0001",
            "佐藤",
            "離れ",
            "既婚",
            "\"p1\"",
            "Practitioner/d1",
            // A year as a value (not inside a random pseudonym's hex digits).
            "\"1950",
            "lastUpdated",
            "Organization/h1",
        ] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert_eq!(
            out["address"],
            json!([{"state": "東京都", "country": "JP"}])
        );
        assert_eq!(out["gender"], "male");
        assert_eq!(out["meta"], json!({"versionId": "2"}));
        let band = &out["extension"][0];
        assert_eq!(band["url"], AGE_BAND);
        assert_eq!(band["valueRange"]["low"]["value"], 70);
        assert_eq!(band["valueRange"]["high"]["value"], 79);
        assert_eq!(
            out["identifier"][0]["value"].as_str().unwrap(),
            p.pseudonym("person", "person-1")
        );
        assert_eq!(
            out["generalPractitioner"][0]["reference"].as_str().unwrap(),
            format!("Practitioner/{}", p.pseudonym("id", "Practitioner/d1"))
        );
        assert_eq!(out["id"].as_str().unwrap(), p.pseudonym("id", "Patient/p1"));
        assert_eq!(p.quasi_values(&out), vec!["70-79", "male", "東京都"]);
        // Ninety and over is one band.
        let old = json!({"resourceType": "Patient", "birthDate": "1930-01-01"});
        let out = p.deidentify("Patient", &old, Some("x"), TODAY).unwrap();
        assert_eq!(
            out["extension"][0]["valueRange"],
            json!({"low": {"value": 90, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}})
        );
        assert_eq!(p.quasi_values(&out)[0], "90+");
    }

    #[test]
    fn required_elements_are_masked_and_free_text_goes() {
        let p = project();
        let comm = json!({
            "resourceType": "Communication", "status": "completed",
            "subject": {"reference": "Patient/p1"},
            "sent": "2026-03-01T09:00:00+09:00",
            "payload": [{"contentString": "山田さんの検査結果"}],
            "note": [{"text": "電話済み"}]
        });
        let out = p
            .deidentify("Communication", &comm, Some("person-1"), TODAY)
            .unwrap();
        assert_eq!(out["payload"][0]["_contentString"], masked());
        assert!(out.get("note").is_none());
        assert!(!out.to_string().contains("山田"));
        let days = p.shift_days("person-1");
        let want = issho_model::instant::civil_from_days(
            issho_model::instant::days_from_civil(2026, 3, 1) + days,
        );
        assert!(out["sent"].as_str().unwrap().starts_with(&format!(
            "{:04}-{:02}-{:02}T09:00:00",
            want.0, want.1, want.2
        )));
        let obs = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6", "display": "ALT"}], "text": "ALT (山田)"},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 130, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"},
            "referenceRange": [{"low": {"value": 10}, "high": {"value": 42}, "text": "10-42"}],
            "contained": [{"resourceType": "Practitioner", "id": "c1", "name": [{"family": "佐藤"}], "birthDate": "1970-01-01"}],
            "performer": [{"reference": "#c1"}]
        });
        let out = p
            .deidentify("Observation", &obs, Some("person-1"), TODAY)
            .unwrap();
        assert_eq!(
            out["code"],
            json!({"coding": [{"system": "http://loinc.org", "code": "1742-6", "display": "ALT"}]})
        );
        assert_eq!(out["valueQuantity"]["unit"], "U/L");
        assert!(out["referenceRange"][0].get("text").is_none());
        // A contained resource's id and the references to it change together (dom-3).
        let local = out["contained"][0]["id"].as_str().unwrap();
        assert_ne!(local, "c1");
        assert_eq!(out["performer"][0]["reference"], format!("#{local}"));
        assert!(!out.to_string().contains("佐藤"));
        assert!(!out.to_string().contains("1970"));
        // Types never released, whatever a profile says.
        let open = Project::new(
            "open",
            "t",
            vec![],
            Profile {
                exclude_types: vec!["Media".into()],
                ..Profile::default()
            },
        )
        .unwrap();
        for t in ["Bundle", "Consent", "Provenance", "AuditEvent", "Person"] {
            assert!(
                open.deidentify(t, &json!({"resourceType": t}), None, TODAY)
                    .is_none(),
                "{t}"
            );
        }
        // Types the profile keeps back are not released.
        assert!(
            p.deidentify("Consent", &json!({"resourceType": "Consent"}), None, TODAY)
                .is_none()
        );
    }

    #[test]
    fn only_what_a_rule_keeps_leaves() {
        let p = project();
        let obs = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"id": "山田太郎-03-1234", "coding": [
                {"system": "http://loinc.org", "code": "1742-6", "display": "ALT", "version": "2.7"},
                {"system": "urn:oid:1.2.392.200250.2.2.20", "code": "0000999", "display": "山田さんの腹痛"},
                {"system": "http://hospital.example/local", "code": "L1", "display": "山田 太郎 専用"}]},
            "_status": {"id": "x", "extension": [{"url": "http://example.org/n", "valueString": "電話 090"}]},
            "subject": {"reference": "Patient/p1", "type": "山田"},
            "extension": [
                {"url": "http://example.org/code", "valueCode": "山田 太郎"},
                {"url": "http://example.org/uri", "valueUri": "mailto:taro@example.org"},
                {"url": "https://issho.example/fhir/StructureDefinition/age-band", "valueRange": {"low": {"value": 20}}}
            ],
            "valueQuantity": {"value": 3, "unit": "U/L", "code": "U/L", "system": "http://unitsofmeasure.org"}
        });
        let out = p.deidentify("Observation", &obs, Some("x"), TODAY).unwrap();
        let text = out.to_string();
        for secret in ["山田", "090", "mailto", "専用", "2.7", "\"id\":\"x\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(out["code"]["coding"][0]["display"], "ALT");
        assert!(out["code"]["coding"][1].get("display").is_none());
        assert!(out["code"].get("id").is_none());
        assert!(
            out.get("_status").is_none(),
            "an emptied _status goes: {out}"
        );
        assert!(out["subject"].get("type").is_none());
        assert!(out.get("extension").is_none(), "{out}");
        // An age from the top on is one group; an unknown element goes.
        let cond = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
            "onsetAge": {"value": 97, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
            "madeUp": "山田"});
        let out = p.deidentify("Condition", &cond, Some("x"), TODAY).unwrap();
        assert_eq!(out["onsetAge"]["value"], 90);
        assert_eq!(out["onsetAge"]["comparator"], ">=");
        assert!(out.get("madeUp").is_none());
        // A modifier extension changes the meaning: the resource is not released.
        let modified = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
            "modifierExtension": [{"url": "http://example.org/negated", "valueBoolean": true}]});
        assert!(
            p.deidentify("Condition", &modified, Some("x"), TODAY)
                .is_none()
        );
        // Arrays of dates keep their places with their extensions.
        let timing = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "x"}]},
            "dosageInstruction": [{"timing": {"event": [null, "2026-01-01"],
                "_event": [{"extension": [{"url": "http://example.org/d", "valueBoolean": true}]}, null]}}]});
        let out = p
            .deidentify("MedicationRequest", &timing, Some("x"), TODAY)
            .unwrap();
        let t = &out["dosageInstruction"][0]["timing"];
        assert_eq!(t["event"][0], Value::Null);
        assert!(t["event"][1].is_string());
        assert_eq!(t["_event"][0]["extension"][0]["valueBoolean"], true);
        // An institution leaves as its type.
        let org = json!({"resourceType": "Organization", "id": "h1", "name": "山田病院",
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
            "extension": [{"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Organization_PrefectureNo", "valueCoding": {"code": "13"}}],
            "address": [{"state": "東京都"}]});
        let out = p.deidentify("Organization", &org, None, TODAY).unwrap();
        let keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["resourceType", "id", "type", "_name"]);
    }
}
