//! The walk that makes a resource's de-identified copy (`deid.rs` states the rules): every
//! JSON property resolved to its element in the R4 tables, kept only by an explicit rule —
//! what no rule keeps is removed.

use crate::deid::{AGE_BAND, Today, age, masked, parse_date};
use crate::{AddressRule, BirthDate, Project};
use issho_model::{Child, R4, TypeDef, TypeKind};
use serde_json::{Map, Value, json};
use std::cell::Cell;

/// Types never released, whatever a profile says: they hold requests, URLs and links with
/// real ids and search values (Bundle), whole identities (Person, RelatedPerson), consent and
/// audit records, raw files, and addresses of systems.
pub const NEVER_RELEASED: &[&str] = &[
    "AuditEvent",
    "Binary",
    "Bundle",
    "Consent",
    "Endpoint",
    "OperationOutcome",
    "Parameters",
    "Person",
    "Provenance",
    "RelatedPerson",
    "Subscription",
    // Views are read and kept through the API (issho's own type, not study data).
    "ViewDefinition",
];

/// Code systems whose displays are the system's own words (not a clinician's free text).
const STANDARD_SYSTEMS: &[&str] = &[
    "http://terminology.hl7.org/",
    "http://loinc.org",
    "http://snomed.info/",
    "http://unitsofmeasure.org",
    "http://hl7.org/fhir/",
    "http://jpfhir.jp/fhir/",
    "http://capstandard.jp/",
    "urn:oid:1.2.392.200119.",
    "urn:oid:1.2.392.100495.20.2.",
];

/// The JP code of a diagnosis written in words ("コード化されていない病名"): its display is
/// free text.
const UNCODED: &str = "0000999";

/// A `Coding.display` that is the code system's word for the code.
fn standard_display(coding: &Map<String, Value>) -> bool {
    let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
    let code = coding.get("code").and_then(Value::as_str).unwrap_or("");
    code != UNCODED && STANDARD_SYSTEMS.iter().any(|s| system.starts_with(s))
}

pub(crate) struct Walk<'a> {
    pub p: &'a Project,
    pub shift: i64,
    pub today: Today,
    pub r4: &'static R4,
    /// A modifier extension was met: its meaning cannot be kept, so the resource is not
    /// released.
    pub withhold: Cell<bool>,
}

impl Walk<'_> {
    /// Rewrite a resource in place; false: do not release it. `contained`: a contained
    /// resource (its id is local to its container).
    pub fn resource(&self, o: &mut Map<String, Value>, contained: bool) -> bool {
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
                for k in ["contact", "maritalStatus", "multipleBirthBoolean"] {
                    o.remove(k);
                }
                o.remove("multipleBirthInteger");
                o.remove("communication");
            }
            "Location" => {
                o.remove("position");
            }
            "Organization" => {
                // An institution leaves as its type.
                o.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "resourceType" | "id" | "meta" | "type" | "active"
                    )
                });
            }
            _ => {}
        }
        // An age band is made here, never taken from the input.
        if let Some(exts) = o.get_mut("extension").and_then(Value::as_array_mut) {
            exts.retain(|e| e["url"] != AGE_BAND);
        }
        if let Some(id) = o.get("id").and_then(Value::as_str) {
            let p = if contained {
                self.p.pseudonym("contained", id)
            } else {
                self.p.pseudonym("id", &format!("{rt}/{id}"))
            };
            o.insert("id".into(), Value::String(p));
        }
        o.remove("_id");
        if let Some(meta) = o.get_mut("meta") {
            meta_rule(meta);
        }
        self.object(td, "", o, &["resourceType", "id", "meta"]);
        if rt == "Composition"
            && let Some(sections) = o.get_mut("section").and_then(Value::as_array_mut)
        {
            crate::deid::keep_sections(sections);
        }
        if rt == "Organization" {
            // org-1 wants a name or an identifier: the name, masked.
            o.insert("_name".into(), masked());
        }
        if rt == "Patient"
            && let Some(b) = birth.as_ref().and_then(Value::as_str)
        {
            self.birth_date(o, b);
        }
        !self.withhold.get()
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
                let ext = json!({"url": AGE_BAND, "valueRange": range});
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
    pub fn object(&self, owner: &TypeDef, prefix: &str, o: &mut Map<String, Value>, skip: &[&str]) {
        let keys: Vec<String> = o.keys().cloned().collect();
        let mut masks: Vec<(String, bool, bool)> = Vec::new();
        for key in keys {
            if skip.contains(&key.as_str()) || key.starts_with('_') {
                continue;
            }
            if key == "id" {
                // An element's own id: any text; nothing refers to it from outside.
                o.remove("id");
                continue;
            }
            if key == "modifierExtension" {
                self.withhold.set(true);
                o.remove(&key);
                continue;
            }
            let ext = format!("_{key}");
            let Some(c) = self.r4.child(owner, prefix, &key) else {
                o.remove(&key);
                o.remove(&ext);
                continue;
            };
            let primitive = self.is_primitive(c.type_code);
            let array = o.get(&key).is_some_and(Value::is_array);
            let keep = if primitive {
                self.primitive_property(&c, o, &key)
            } else {
                match o.get_mut(&key).expect("key listed") {
                    Value::Array(items) => {
                        items.retain_mut(|x| self.value(&c, x));
                        !items.is_empty()
                    }
                    x => self.value(&c, x),
                }
            };
            if !keep {
                o.remove(&key);
                o.remove(&ext);
                if c.element.min >= 1 {
                    masks.push((key, primitive, array));
                }
            }
        }
        // Primitives given by their extensions only (`_x` without `x`).
        let orphans: Vec<String> = o
            .keys()
            .filter(|k| k.starts_with('_') && !o.contains_key(&k[1..]))
            .cloned()
            .collect();
        for k in orphans {
            let kept = match self.r4.child(owner, prefix, &k[1..]) {
                Some(c) if self.keeps_type(&c) => {
                    let v = o.get_mut(&k).expect("listed");
                    self.element_ext(v)
                }
                _ => false,
            };
            if !kept {
                o.remove(&k);
            }
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

    /// A primitive property `key` of `o` (one value or an array, with its `_key`): the
    /// values no rule keeps become null, their `_key` entries walked; false when nothing is
    /// left.
    fn primitive_property(&self, c: &Child<'_>, o: &mut Map<String, Value>, key: &str) -> bool {
        let ext = format!("_{key}");
        let v = o.get_mut(key).expect("key listed");
        // Per position: the value is kept (Some(true)), removed (Some(false)), or was null
        // (None: the position has extensions only).
        let kept: Vec<Option<bool>> = match v {
            Value::Array(items) => items
                .iter_mut()
                .map(|x| {
                    if x.is_null() {
                        return None;
                    }
                    let k = self.value(c, x);
                    if !k {
                        *x = Value::Null;
                    }
                    Some(k)
                })
                .collect(),
            x => vec![Some(self.value(c, x))],
        };
        if !kept.contains(&Some(true)) {
            return false;
        }
        let mut ext_left = false;
        match o.get_mut(&ext) {
            Some(Value::Array(items)) => {
                for (i, x) in items.iter_mut().enumerate() {
                    let value_stays = kept.get(i).copied().flatten() != Some(false);
                    if !value_stays || !self.element_ext(x) {
                        *x = Value::Null;
                    } else {
                        ext_left = true;
                    }
                }
            }
            Some(x) => ext_left = self.element_ext(x),
            None => {}
        }
        if !ext_left {
            o.remove(&ext);
        }
        true
    }

    /// A primitive's `_x` object (its id and extensions): false when nothing is left.
    fn element_ext(&self, v: &mut Value) -> bool {
        let Some(x) = v.as_object_mut() else {
            return false;
        };
        let element = self.r4.type_def("Element").expect("Element");
        self.object(element, "", x, &[]);
        !x.is_empty()
    }

    fn is_primitive(&self, t: &str) -> bool {
        t.starts_with("http://hl7.org/fhirpath/")
            || self
                .r4
                .type_def(t)
                .is_some_and(|d| d.kind == TypeKind::Primitive)
    }

    /// Whether some value of this element's type can be kept at all (for extension-only
    /// primitives: their extensions on free text go with the text).
    fn keeps_type(&self, c: &Child<'_>) -> bool {
        !matches!(
            c.type_code,
            "string" | "markdown" | "base64Binary" | "xhtml" | "url" | "oid" | "uuid" | "id"
        )
    }

    /// Rewrite one value of element `c`; false: remove it.
    fn value(&self, c: &Child<'_>, v: &mut Value) -> bool {
        let t = c.type_code;
        let owner = c.owner.name.as_str();
        let path = c.element.path.as_str();
        match t {
            "HumanName" | "ContactPoint" | "Annotation" | "Attachment" | "Signature"
            | "Narrative" | "base64Binary" | "xhtml" | "url" | "oid" | "uuid" | "id" => false,
            "Identifier" => false,
            "Address" => self.address(v),
            "Reference" => self.reference(v),
            "Resource" => v
                .as_object_mut()
                .is_some_and(|o| self.resource(o, path == "contained")),
            "date" | "dateTime" | "instant" => match v.as_str().and_then(|s| self.shift(s)) {
                Some(s) => {
                    *v = Value::String(s);
                    true
                }
                None => false,
            },
            // Free text: only a coding's display (checked against its system with the
            // Coding) and a quantity's short unit.
            "string" | "markdown" => {
                let quantity = matches!(
                    owner,
                    "Quantity"
                        | "Age"
                        | "Count"
                        | "Distance"
                        | "Duration"
                        | "SimpleQuantity"
                        | "MoneyQuantity"
                );
                (owner == "Coding" && path == "display")
                    || (quantity
                        && path == "unit"
                        && v.as_str().is_some_and(|u| u.chars().count() <= 20))
            }
            // A code from a code system, or of an element bound to a value set; not a code
            // anywhere (an extension's valueCode may hold any words).
            "code" => {
                (owner == "Coding" && path == "code")
                    || c.element.binding.is_some()
                    || c.element.extensible.is_some()
                    || (owner != "Extension" && path == "code")
            }
            // A system's URI, an extension's URL; definitions' canonical URLs.
            "uri" => {
                path == "system"
                    || path.ends_with(".system")
                    || (owner == "Extension" && path == "url")
            }
            "canonical" => true,
            _ if self.is_primitive(t) => !v.is_object() && !v.is_array() && !v.is_null(),
            _ => self.complex(c, v),
        }
    }

    fn complex(&self, c: &Child<'_>, v: &mut Value) -> bool {
        let t = c.type_code;
        let path = c.element.path.as_str();
        let Some(o) = v.as_object_mut() else {
            return false;
        };
        let (owner, prefix) = if c.element.is_backbone() || c.element.content_ref.is_some() {
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
        match t {
            "Coding" if !standard_display(o) => {
                o.remove("display");
                o.remove("_display");
            }
            "Age" => {
                // Ages from the top age on are one group.
                let top = f64::from(self.p.profile.top_age);
                if o.get("value")
                    .and_then(Value::as_f64)
                    .is_some_and(|a| a >= top)
                {
                    o.insert("value".into(), json!(self.p.profile.top_age));
                    o.insert("comparator".into(), json!(">="));
                }
            }
            // An extension whose value went says nothing (and would break ext-1).
            "Extension" => return o.keys().any(|k| k.starts_with("value") || k == "extension"),
            _ => {}
        }
        !o.is_empty()
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
        o.remove("_type");
        let td = self.r4.type_def("Reference").expect("Reference");
        self.object(td, "", o, &[]);
        if let Some(r) = reference
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|r| self.rewrite(r))
        {
            o.insert("reference".into(), Value::String(r));
        }
        if let Some(t) = ty.filter(|t| t.as_str().is_some_and(|t| self.r4.is_resource_type(t))) {
            o.insert("type".into(), t);
        }
        !o.is_empty()
    }

    /// A reference's pseudonym: `Type/[pseudonym]` for a relative one, `#[pseudonym]` for a
    /// contained one, `urn:uuid:[pseudonym]` for an absolute one (the same URL always gives
    /// the same); `None` for anything else (conditional references).
    fn rewrite(&self, r: &str) -> Option<String> {
        if let Some(local) = r.strip_prefix('#') {
            return Some(if local.is_empty() {
                "#".to_string()
            } else {
                format!("#{}", self.p.pseudonym("contained", local))
            });
        }
        if r.starts_with("urn:") || r.starts_with("http://") || r.starts_with("https://") {
            let hex = self.p.pseudonym("url", r);
            return Some(format!(
                "urn:uuid:{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            ));
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
    pub fn shift(&self, s: &str) -> Option<String> {
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

/// `meta`: the version and profiles; security labels of HL7's code systems (tags, source and
/// the time of the last change go).
fn meta_rule(meta: &mut Value) {
    if let Some(m) = meta.as_object_mut() {
        m.retain(|k, _| matches!(k.as_str(), "versionId" | "profile" | "security"));
        if let Some(a) = m.get_mut("security").and_then(Value::as_array_mut) {
            a.retain(|c| {
                c["system"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("http://terminology.hl7.org/"))
                    && c["code"].is_string()
            });
            for c in a.iter_mut().filter_map(Value::as_object_mut) {
                c.retain(|k, _| matches!(k.as_str(), "system" | "code"));
            }
            if a.is_empty() {
                m.remove("security");
            }
        }
        if m.get("profile").is_some_and(|p| !p.is_array()) {
            m.remove("profile");
        }
    }
}
