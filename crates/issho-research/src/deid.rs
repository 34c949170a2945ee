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

use crate::{AddressRule, BirthDate, Project};
use issho_model::{Child, R4, TypeDef, TypeKind};
use serde_json::{Map, Value, json};

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
fn age(y: i64, m: u32, d: u32, today: Today) -> i64 {
    let mut a = today.year - y;
    if (today.month, today.day) < (m, d) {
        a -= 1;
    }
    a
}

fn masked() -> Value {
    json!({"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]})
}

fn uuid(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parse the date part of a FHIR date/dateTime/instant: (y, m, d, precision, rest after the
/// date).
fn parse_date(s: &str) -> Option<(i64, u32, u32, usize, &str)> {
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
        };
        let mut out = body.clone();
        let o = out.as_object_mut()?;
        if !w.resource(o) {
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
fn keep_sections(sections: &mut [Value]) {
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

struct Walk<'a> {
    p: &'a Project,
    shift: i64,
    today: Today,
    r4: &'static R4,
}

impl Walk<'_> {
    /// Rewrite a resource in place; false: drop it (an unknown type).
    fn resource(&self, o: &mut Map<String, Value>) -> bool {
        let Some(rt) = o
            .get("resourceType")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return false;
        };
        let Some(td) = self
            .r4
            .type_def(&rt)
            .filter(|t| t.kind == TypeKind::Resource)
        else {
            return false;
        };
        if !self.p.profile.releases(&rt) {
            return false;
        }
        let birth = o.remove("birthDate");
        o.remove("_birthDate");
        match rt.as_str() {
            "Patient" => {
                o.remove("contact");
            }
            "Location" => {
                o.remove("position");
            }
            "Organization" => {
                o.remove("address");
                o.remove("contact");
            }
            _ => {}
        }
        if let Some(id) = o.get("id").and_then(Value::as_str) {
            let p = self.p.pseudonym("id", &format!("{rt}/{id}"));
            o.insert("id".into(), Value::String(p));
        }
        o.remove("_id");
        if let Some(meta) = o.get_mut("meta") {
            Self::meta(meta);
        }
        self.object(td, "", o, &["resourceType", "id", "meta"]);
        if rt == "Composition"
            && let Some(sections) = o.get_mut("section").and_then(Value::as_array_mut)
        {
            keep_sections(sections);
        }
        if rt == "Organization" && !o.contains_key("name") && !o.contains_key("identifier") {
            // org-1 wants a name or an identifier: the name, masked.
            o.insert("_name".into(), masked());
        }
        if rt == "Patient"
            && let Some(b) = birth.as_ref().and_then(Value::as_str)
        {
            self.birth_date(o, b);
        }
        true
    }

    fn meta(meta: &mut Value) {
        if let Some(m) = meta.as_object_mut() {
            m.retain(|k, _| matches!(k.as_str(), "versionId" | "profile" | "security" | "tag"));
            for list in ["security", "tag"] {
                if let Some(a) = m.get_mut(list).and_then(Value::as_array_mut) {
                    for c in a.iter_mut().filter_map(Value::as_object_mut) {
                        c.retain(|k, _| matches!(k.as_str(), "system" | "code" | "version"));
                    }
                }
            }
        }
    }

    fn birth_date(&self, o: &mut Map<String, Value>, b: &str) {
        let Some((y, m, d, precision, _)) = parse_date(b) else {
            return;
        };
        let (m, d) = if precision == 4 { (1, 1) } else { (m, d) };
        let a = age(y, m, d, self.today);
        let top = i64::from(self.p.profile.top_age);
        match self.p.profile.birth_date {
            BirthDate::Remove => {}
            BirthDate::Year => {
                let year = if a >= top { self.today.year - top } else { y };
                o.insert("birthDate".into(), Value::String(format!("{year:04}")));
            }
            BirthDate::AgeBand => {
                let w = i64::from(self.p.profile.age_band_years);
                let low = (a.max(0) / w) * w;
                let years = |v: i64| json!({"value": v, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"});
                let range = if low + w > top || a >= top {
                    json!({"low": years(low.min(top))})
                } else {
                    json!({"low": years(low), "high": years(low + w - 1)})
                };
                let ext = json!({"url": crate::AGE_BAND, "valueRange": range});
                match o.get_mut("extension").and_then(Value::as_array_mut) {
                    Some(a) => a.push(ext),
                    None => {
                        o.insert("extension".into(), json!([ext]));
                    }
                }
            }
        }
    }

    /// Rewrite the children of the element at `prefix` of `owner` held by `o`.
    fn object(&self, owner: &TypeDef, prefix: &str, o: &mut Map<String, Value>, skip: &[&str]) {
        let keys: Vec<String> = o.keys().cloned().collect();
        let mut masks: Vec<(String, bool, bool)> = Vec::new();
        for key in keys {
            if skip.contains(&key.as_str()) || key.starts_with('_') {
                continue;
            }
            if key == "id" {
                // An element's own id (internal to the resource).
                continue;
            }
            let Some(c) = self.r4.child(owner, prefix, &key) else {
                o.remove(&key);
                o.remove(&format!("_{key}"));
                continue;
            };
            let primitive = self.is_primitive(c.type_code);
            let v = o.get_mut(&key).expect("key listed");
            let keep = match v {
                Value::Array(items) => {
                    items.retain_mut(|x| self.value(&c, x));
                    !items.is_empty()
                }
                x => self.value(&c, x),
            };
            let ext = format!("_{key}");
            if !keep {
                let array = o.get(&key).is_some_and(Value::is_array);
                o.remove(&key);
                o.remove(&ext);
                if c.element.min >= 1 {
                    masks.push((key, primitive, array));
                }
            } else if primitive && let Some(e) = o.get_mut(&ext) {
                // A primitive's id and extensions.
                let element = self.r4.type_def("Element").expect("Element");
                match e {
                    Value::Array(items) => {
                        for x in items.iter_mut().filter_map(Value::as_object_mut) {
                            self.object(element, "", x, &[]);
                        }
                    }
                    Value::Object(x) => self.object(element, "", x, &[]),
                    _ => {}
                }
            }
        }
        // Primitive extensions whose value went.
        let orphans: Vec<String> = o
            .keys()
            .filter(|k| k.starts_with('_') && !o.contains_key(&k[1..]))
            .cloned()
            .collect();
        for k in orphans {
            o.remove(&k);
        }
        for (key, primitive, array) in masks {
            let m = if array { json!([masked()]) } else { masked() };
            if primitive {
                o.insert(format!("_{key}"), m);
            } else {
                o.insert(key, m);
            }
        }
    }

    fn is_primitive(&self, t: &str) -> bool {
        t.starts_with("http://hl7.org/fhirpath/")
            || self
                .r4
                .type_def(t)
                .is_some_and(|d| d.kind == TypeKind::Primitive)
    }

    /// Rewrite one value of element `c`; false: remove it.
    fn value(&self, c: &Child<'_>, v: &mut Value) -> bool {
        let t = c.type_code;
        let path = c.element.path.as_str();
        match t {
            "HumanName" | "ContactPoint" | "Annotation" | "Attachment" | "Signature"
            | "Narrative" | "base64Binary" | "xhtml" => false,
            "Identifier" if c.owner.name == "Bundle" && path == "identifier" => {
                // A document Bundle must have one (bdl-9): a pseudonym.
                let raw = format!(
                    "{}|{}",
                    v["system"].as_str().unwrap_or(""),
                    v["value"].as_str().unwrap_or("")
                );
                *v = json!({
                    "system": format!("https://issho.example/fhir/research/identifier/{}", self.p.id),
                    "value": self.p.pseudonym("identifier", &raw),
                });
                true
            }
            "Identifier" => false,
            "Address" => self.address(v),
            "Reference" => self.reference(v),
            "Resource" => v.as_object_mut().is_some_and(|o| self.resource(o)),
            "date" | "dateTime" | "instant" => match v.as_str().and_then(|s| self.shift(s)) {
                Some(s) => {
                    *v = Value::String(s);
                    true
                }
                None => false,
            },
            "uri" if c.owner.name == "Bundle" && path == "entry.fullUrl" => {
                match v.as_str().and_then(|r| self.rewrite(r)) {
                    Some(r) => {
                        *v = Value::String(r);
                        true
                    }
                    None => false,
                }
            }
            "string" | "markdown" => {
                let quantity = matches!(
                    c.owner.name.as_str(),
                    "Quantity"
                        | "Age"
                        | "Count"
                        | "Distance"
                        | "Duration"
                        | "SimpleQuantity"
                        | "MoneyQuantity"
                );
                (c.owner.name == "Coding" && (path == "display" || path == "version"))
                    || (quantity && path == "unit")
            }
            _ if self.is_primitive(t) => !v.is_object() && !v.is_array(),
            _ => {
                let Some(o) = v.as_object_mut() else {
                    return false;
                };
                let (owner, prefix) = if c.element.is_backbone() || c.element.content_ref.is_some()
                {
                    match self.r4.children_scope(c.owner, path) {
                        Some((owner, prefix)) => (owner, prefix),
                        None => return false,
                    }
                } else {
                    match self.r4.type_def(t) {
                        Some(d) => (d, String::new()),
                        None => return false,
                    }
                };
                self.object(owner, &prefix, o, &[]);
                if t == "Extension" {
                    // An extension whose value went says nothing (and would break ext-1).
                    return o.keys().any(|k| k.starts_with("value") || k == "extension");
                }
                o.keys().any(|k| k != "id")
            }
        }
    }

    fn address(&self, v: &mut Value) -> bool {
        if self.p.profile.address == AddressRule::Remove {
            return false;
        }
        let Some(o) = v.as_object_mut() else {
            return false;
        };
        o.retain(|k, x| matches!(k.as_str(), "state" | "country") && x.is_string());
        o.contains_key("state")
    }

    fn reference(&self, v: &mut Value) -> bool {
        let Some(o) = v.as_object_mut() else {
            return false;
        };
        let reference = o.remove("reference");
        let ty = o.remove("type");
        o.remove("_reference");
        let td = self.r4.type_def("Reference").expect("Reference");
        self.object(td, "", o, &[]);
        if let Some(r) = reference
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|r| self.rewrite(r))
        {
            o.insert("reference".into(), Value::String(r));
        }
        if let Some(t) = ty {
            o.insert("type".into(), t);
        }
        o.keys().any(|k| k != "id")
    }

    /// A reference's (or full URL's) pseudonym: `Type/[pseudonym]` for a relative one,
    /// `urn:uuid:[pseudonym]` for an absolute one (the same URL always gives the same), a
    /// contained one as it was; `None` for anything else (conditional references).
    fn rewrite(&self, r: &str) -> Option<String> {
        if r.starts_with('#') {
            return Some(r.to_string());
        }
        if r.starts_with("urn:") || r.starts_with("http://") || r.starts_with("https://") {
            return Some(format!("urn:uuid:{}", uuid(&self.p.pseudonym("url", r))));
        }
        let mut parts = r.split('/');
        let (t, id) = (parts.next()?, parts.next()?);
        let valid = self.r4.is_resource_type(t)
            && !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        valid.then(|| format!("{t}/{}", self.p.pseudonym("id", &format!("{t}/{id}"))))
    }

    /// A date moved by the person's shift, at its own precision.
    fn shift(&self, s: &str) -> Option<String> {
        let (y, m, d, precision, rest) = parse_date(s)?;
        if self.shift == 0 {
            return Some(s.to_string());
        }
        let days = issho_model::instant::days_from_civil(y, m, d) + self.shift;
        let (y, m, d) = issho_model::instant::civil_from_days(days);
        Some(match precision {
            4 => format!("{y:04}"),
            7 => format!("{y:04}-{m:02}"),
            _ => format!("{y:04}-{m:02}-{d:02}{rest}"),
        })
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
            "1950",
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
        assert_eq!(out["performer"][0]["reference"], "#c1");
        assert!(!out.to_string().contains("佐藤"));
        assert!(!out.to_string().contains("1970"));
        // Types the profile keeps back are not released.
        assert!(
            p.deidentify("Consent", &json!({"resourceType": "Consent"}), None, TODAY)
                .is_none()
        );
    }
}
