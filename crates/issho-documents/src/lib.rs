//! JP-CLINS documents and information items, as a sender submits them.
//!
//! A referral letter (診療情報提供書, `JP_Bundle_eReferral`, Composition type `57133-1`), a
//! discharge summary (退院時サマリー, `18842-5`), a care plan (ePCS 計画書, `56447-6`), a checkup
//! report (健診結果報告書, `53576-5`) — each a `document` Bundle whose first entry is the
//! Composition — or a collection of the six information items (`JP_Bundle_CLINS`, `collection`).
//! [`plan`] checks what the document must hold (the Patient, the identifiers, the required
//! sections of its type) and turns it into one FHIR **transaction** into the person's record:
//!
//! - the document as received, kept whole as a `Binary` (`application/fhir+json`), described
//!   by a `DocumentReference` (type, date, author, custodian, version, the Composition);
//! - every entry extracted as a resource of its own: the Patient by its institution's patient
//!   ID and Organizations by their medical-institution number (conditional creates: an
//!   existing one is used), every other resource under an id derived from the sender's
//!   institution and its `resourceInstance-identifier` (or, without one, from the document's
//!   identity and its entry) — so re-sending a document or an item replaces what it sent
//!   before instead of duplicating it;
//! - a `Provenance` from the extracted resources back to the DocumentReference;
//! - for a referral, a `ServiceRequest` to the receiving institution (a care relationship:
//!   its clinicians see the record, as the person's consent allows).
//!
//! Nothing here touches a store; the engine runs the transaction with the sender's access.

mod sections;

use issho_model::{Issue, IssueType};
use sections::{check_sections, codes_of};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

pub const RESOURCE_INSTANCE: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier";
pub const INSTITUTION_NO: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
const INSTITUTION_EXT: &str =
    "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber";
pub const VERSION_EXT: &str =
    "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber";
const DOC_TYPES: &str = "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes";
const CLINS_PROFILE: &str = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS";
const MEMBER_ID: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

/// What was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Referral,
    DischargeSummary,
    CarePlan,
    Checkup,
    /// A `JP_Bundle_CLINS` collection of information items.
    Items,
}

impl Kind {
    /// The document type code (doc-typecodes), or `CLINS` for an item collection.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Referral => "57133-1",
            Kind::DischargeSummary => "18842-5",
            Kind::CarePlan => "56447-6",
            Kind::Checkup => "53576-5",
            Kind::Items => "CLINS",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Kind::Referral => "診療情報提供書",
            Kind::DischargeSummary => "退院時サマリー",
            Kind::CarePlan => "計画書",
            Kind::Checkup => "健診結果報告書",
            Kind::Items => "6情報",
        }
    }
}

/// What a Bundle is, if it is one issho takes in (`None`: an ordinary Bundle).
pub fn kind_of(bundle: &Value) -> Option<Kind> {
    if bundle["resourceType"].as_str() != Some("Bundle") {
        return None;
    }
    match bundle["type"].as_str()? {
        "document" => {
            let c = &bundle["entry"][0]["resource"];
            if c["resourceType"].as_str() != Some("Composition") {
                return None;
            }
            let codes: Vec<&str> = c["type"]["coding"]
                .as_array()?
                .iter()
                .filter(|x| x["system"].as_str().is_none_or(|s| s == DOC_TYPES))
                .filter_map(|x| x["code"].as_str())
                .collect();
            [
                Kind::Referral,
                Kind::DischargeSummary,
                Kind::CarePlan,
                Kind::Checkup,
            ]
            .into_iter()
            .find(|k| codes.contains(&k.code()))
        }
        "collection" => bundle["meta"]["profile"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .any(|p| p.split('|').next() == Some(CLINS_PROFILE))
            .then_some(Kind::Items),
        _ => None,
    }
}

/// A resource id derived from `key` (SHA-256, 40 hex digits: the same key, the same id).
pub fn id_for(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.as_bytes());
    let hex: String = h.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("clins-{hex}")
}

/// A document version (`composition-clinicaldocument-versionNumber`, e.g. `1.0`, `2`), as
/// comparable numbers.
pub fn version_of(text: &str) -> Option<Vec<u64>> {
    text.trim()
        .split('.')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()
        .filter(|v| !v.is_empty())
}

/// The plan of one submission.
#[derive(Debug, Clone)]
pub struct Intake {
    pub kind: Kind,
    /// The document's identity: Bundle.identifier `system|value` (or, lacking one, the
    /// Composition's identifier, or a digest of the content).
    pub key: String,
    /// The document's version as written (`1.0`), if it has one.
    pub version: Option<String>,
    /// The ids issho gives the DocumentReference and the Binary holding the document.
    pub document_reference: String,
    pub binary: String,
    /// Information items and other clinical resources extracted (not the Patient,
    /// organizations or practitioners).
    pub items: usize,
    /// The FHIR transaction that stores the document and extracts it.
    pub transaction: Value,
}

pub(crate) fn err(msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invariant, msg)
}

fn first_identifier<'a>(r: &'a Value, system: &str) -> Option<&'a str> {
    let ids: Vec<&Value> = match &r["identifier"] {
        Value::Array(a) => a.iter().collect(),
        v @ Value::Object(_) => vec![v],
        _ => Vec::new(),
    };
    ids.into_iter()
        .find(|i| i["system"].as_str() == Some(system))
        .and_then(|i| i["value"].as_str())
        .filter(|v| !v.trim().is_empty())
}

/// The institution that sent the document: its custodian's medical-institution number, an
/// item's institution-number extension, or the Bundle identifier's first part.
fn sender(bundle: &Value, by_url: &HashMap<&str, &Value>, composition: Option<&Value>) -> String {
    if let Some(c) = composition
        && let Some(org) = c["custodian"]["reference"]
            .as_str()
            .and_then(|u| by_url.get(u))
        && let Some(no) = first_identifier(org, INSTITUTION_NO)
    {
        return no.to_string();
    }
    for e in bundle["entry"].as_array().into_iter().flatten() {
        for x in e["resource"]["extension"].as_array().into_iter().flatten() {
            if x["url"].as_str() == Some(INSTITUTION_EXT)
                && let Some(v) = x["valueIdentifier"]["value"].as_str()
            {
                return v.to_string();
            }
        }
    }
    bundle["identifier"]["value"]
        .as_str()
        .and_then(|v| v.split('^').next())
        .unwrap_or_default()
        .to_string()
}

/// The id of the stored Organization with this medical-institution number, if there is one.
pub type Known<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The id an institution gets when a document first names it (the same number, the same id).
pub fn organization_id(institution_no: &str) -> String {
    id_for(&format!("organization|{institution_no}"))
}

/// Checks a submitted document or item collection and plans its transaction. `received`:
/// the instant it arrived (the Provenance's `recorded`); `known`: the stored organizations
/// by medical-institution number (the sender's becomes the extracted data's `meta.source`).
pub fn plan(bundle: &Value, received: &str, known: &Known<'_>) -> Result<Intake, Vec<Issue>> {
    let kind = kind_of(bundle).ok_or_else(|| {
        vec![err(
            "not a JP-CLINS document (a document Bundle whose Composition is a referral, discharge summary, care plan or checkup report) nor a JP_Bundle_CLINS collection",
        )]
    })?;
    let mut issues = Vec::new();
    let entries: Vec<&Value> = bundle["entry"].as_array().into_iter().flatten().collect();
    let mut by_url: HashMap<&str, &Value> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        match (
            e["fullUrl"].as_str(),
            e["resource"]["resourceType"].as_str(),
        ) {
            (Some(u), Some(_)) => {
                if by_url.insert(u, &e["resource"]).is_some() {
                    issues.push(
                        err(format!("fullUrl '{u}' appears more than once"))
                            .at(format!("Bundle.entry[{i}]")),
                    );
                }
            }
            _ => issues.push(
                err("every entry needs a fullUrl and a resource").at(format!("Bundle.entry[{i}]")),
            ),
        }
    }
    let patients: Vec<&&Value> = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .collect();
    if patients.len() != 1 {
        issues.push(err(format!(
            "a {} names exactly one Patient entry (found {})",
            kind.label(),
            patients.len()
        )));
    }
    let composition = (kind != Kind::Items).then(|| &entries[0]["resource"]);
    if let Some(c) = composition {
        check_sections(kind, c, &mut issues);
        let subject = c["subject"]["reference"].as_str();
        let patient_url = patients.first().and_then(|p| p["fullUrl"].as_str());
        if subject.is_none() || subject != patient_url {
            issues.push(
                err("the Composition's subject must be the document's Patient entry")
                    .at("Bundle.entry[0].resource.subject"),
            );
        }
        if bundle["identifier"]["value"].as_str().is_none() {
            issues.push(
                err("a document needs its Bundle.identifier (system and value)")
                    .at("Bundle.identifier"),
            );
        }
        if let Some(v) = version_text(c)
            && version_of(&v).is_none()
        {
            issues.push(err(format!(
                "the document version '{v}' is not a number such as 1 or 1.0"
            )));
        }
    }
    let patient = patients.first().map(|p| &p["resource"]);
    let patient_key = patient.and_then(|p| {
        match &p["identifier"] {
            Value::Array(a) => a.iter().find(|i| i["system"].as_str() != Some(MEMBER_ID)),
            _ => None,
        }
        .and_then(|i| Some((i["system"].as_str()?, i["value"].as_str()?)))
    });
    if patient.is_some() && patient_key.is_none() {
        issues.push(err(
            "the Patient needs an identifier of the sending institution (its patient ID), by which the person is found",
        ));
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let (psys, pval) = patient_key.unwrap_or_default();
    let key = match (
        bundle["identifier"]["system"].as_str(),
        bundle["identifier"]["value"].as_str(),
    ) {
        (s, Some(v)) => format!("{}|{v}", s.unwrap_or_default()),
        _ => format!("digest|{}", id_for(&bundle.to_string())),
    };
    let from = sender(bundle, &by_url, composition);
    let source = match known(&from) {
        Some(id) => format!("Organization/{id}"),
        None => format!("Organization/{}", organization_id(&from)),
    };
    let cx = Ctx {
        from: &from,
        key: &key,
        patient: (psys, pval),
        source: &source,
        known,
    };
    Ok(build(
        kind,
        bundle,
        &entries,
        &by_url,
        composition,
        &cx,
        received,
    ))
}

fn version_text(composition: &Value) -> Option<String> {
    composition["extension"]
        .as_array()?
        .iter()
        .find(|x| x["url"].as_str() == Some(VERSION_EXT))
        .and_then(|x| x["valueString"].as_str().map(str::to_string))
}

/// The transaction entry of one document entry: (entry, is an item).
/// What every entry of one submission shares.
struct Ctx<'a> {
    /// The sender's medical-institution number.
    from: &'a str,
    /// The document's identity.
    key: &'a str,
    /// The Patient's identifier (system, value) at the sender.
    patient: (&'a str, &'a str),
    /// `Organization/[id]` of the sender: the extracted data's `meta.source`.
    source: &'a str,
    known: &'a Known<'a>,
}

fn entry_for(
    e: &Value,
    cx: &Ctx<'_>,
    unique: &HashSet<(String, String)>,
    patient_url: &str,
) -> (Value, bool) {
    let (from, key, patient) = (cx.from, cx.key, cx.patient);
    let url = e["fullUrl"].as_str().unwrap_or_default();
    let mut r = e["resource"].clone();
    let rt = r["resourceType"].as_str().unwrap_or_default().to_string();
    if let Some(m) = r.get_mut("meta").and_then(Value::as_object_mut) {
        m.remove("versionId");
        m.remove("lastUpdated");
    }
    let conditional = |r: &mut Value, q: String| {
        if let Some(o) = r.as_object_mut() {
            o.remove("id");
        }
        json!({"fullUrl": url, "resource": r.clone(),
            "request": {"method": "POST", "url": rt, "ifNoneExist": q}})
    };
    // A search value: FHIR escapes (`\\`, `\|`, `\,`, `\$`), then the URL's own characters.
    let enc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('|', "\\|")
            .replace(',', "\\,")
            .replace('$', "\\$")
            .replace('%', "%25")
            .replace('&', "%26")
            .replace('#', "%23")
            .replace('+', "%2B")
    };
    match rt.as_str() {
        "Patient" => {
            let q = format!("identifier={}|{}", enc(patient.0), enc(patient.1));
            return (conditional(&mut r, q), false);
        }
        "Organization" => {
            if let Some(no) = first_identifier(&r, INSTITUTION_NO).map(str::to_string) {
                if (cx.known)(&no).is_some() {
                    let q = format!("identifier={}|{}", enc(INSTITUTION_NO), enc(&no));
                    return (conditional(&mut r, q), false);
                }
                // First named here: under the id its number gives (what `meta.source` says).
                let id = organization_id(&no);
                r["id"] = json!(id);
                return (
                    json!({"fullUrl": url, "resource": r,
                        "request": {"method": "PUT", "url": format!("Organization/{id}")}}),
                    false,
                );
            }
        }
        "Practitioner" => {
            let ident = match rt.as_str() {
                "Organization" => first_identifier(&r, INSTITUTION_NO)
                    .map(|v| (INSTITUTION_NO.to_string(), v.to_string())),
                _ => match &r["identifier"] {
                    Value::Array(a) => a.first().and_then(|i| {
                        Some((
                            i["system"].as_str()?.to_string(),
                            i["value"].as_str()?.to_string(),
                        ))
                    }),
                    _ => None,
                },
            };
            if let Some((s, v)) = ident {
                let q = format!("identifier={}|{}", enc(&s), enc(&v));
                return (conditional(&mut r, q), false);
            }
        }
        _ => {}
    }
    fill_subject(&rt, &mut r, patient_url);
    let instance = first_identifier(&r, RESOURCE_INSTANCE);
    let id_key = match instance {
        Some(v) if unique.contains(&(rt.clone(), v.to_string())) => format!("{from}|{rt}|{v}"),
        _ => format!("{key}|{url}"),
    };
    let id = id_for(&id_key);
    r["id"] = json!(id);
    let item = !matches!(
        rt.as_str(),
        "Organization" | "Practitioner" | "PractitionerRole"
    );
    if item {
        // The sending institution holds this data.
        if !r["meta"].is_object() {
            r["meta"] = json!({});
        }
        r["meta"]["source"] = json!(cx.source);
    }
    (
        json!({"fullUrl": url, "resource": r, "request": {"method": "PUT", "url": format!("{rt}/{id}")}}),
        item,
    )
}

/// A document's entries are about its subject: a resource of a type that is always a
/// patient's data and that names no Patient (an Encounter or a DocumentReference without a
/// subject, as JP-CLINS documents carry them) gets the document's Patient in its patient
/// element (`subject`, `patient`, `beneficiary` or `for`, whichever the type has).
fn fill_subject(rt: &str, r: &mut Value, patient_url: &str) {
    let r4 = issho_model::r4();
    if rt == "Patient" || !r4.always_personal(rt) || names_a_patient(r, patient_url) {
        return;
    }
    let Some(td) = r4.type_def(rt) else { return };
    for name in ["subject", "patient", "beneficiary", "for"] {
        let Some(e) = td.element(name) else { continue };
        let takes_patient = e.types.iter().any(|t| {
            t.code == "Reference"
                && (t.targets.is_empty() || t.targets.iter().any(|x| x == "Patient"))
        });
        if !takes_patient || r.get(name).is_some() {
            continue;
        }
        let reference = json!({"reference": patient_url});
        r[name] = if e.is_array() {
            json!([reference])
        } else {
            reference
        };
        return;
    }
}

/// True when `v` refers to the document's Patient or to any Patient.
fn names_a_patient(v: &Value, patient_url: &str) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, c)| match (k.as_str(), c) {
            ("reference", Value::String(s)) => s == patient_url || s.starts_with("Patient/"),
            ("contained", _) => false,
            _ => names_a_patient(c, patient_url),
        }),
        Value::Array(a) => a.iter().any(|c| names_a_patient(c, patient_url)),
        _ => false,
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    kind: Kind,
    bundle: &Value,
    entries: &[&Value],
    by_url: &HashMap<&str, &Value>,
    composition: Option<&Value>,
    cx: &Ctx<'_>,
    received: &str,
) -> Intake {
    let (from, key) = (cx.from, cx.key);
    // (type, resourceInstance-identifier) pairs that occur once in the Bundle: the sender's
    // identity of that resource. Pairs used twice cannot both be one resource.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for e in entries {
        let r = &e["resource"];
        if let Some(v) = first_identifier(r, RESOURCE_INSTANCE) {
            *seen
                .entry((
                    r["resourceType"].as_str().unwrap_or_default().to_string(),
                    v.to_string(),
                ))
                .or_default() += 1;
        }
    }
    let unique: HashSet<(String, String)> = seen
        .into_iter()
        .filter(|(_, n)| *n == 1)
        .map(|(k, _)| k)
        .collect();
    let docref = id_for(&format!("docref|{key}"));
    let binary = id_for(&format!("binary|{key}"));
    let patient_url = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .and_then(|e| e["fullUrl"].as_str())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut targets = Vec::new();
    let mut items = 0;
    for e in entries {
        let (t, item) = entry_for(e, cx, &unique, patient_url);
        if item && t["resource"]["resourceType"] != "Patient" {
            items += 1;
            targets.push(json!({"reference": e["fullUrl"]}));
        }
        out.push(t);
    }
    let version = composition.and_then(version_text);
    let text = serde_json::to_vec(bundle).unwrap_or_default();
    // The document whole carries what any of its entries carries: the JP-CLINS indications
    // (UNINFORMED, UNDELIVERED…) and security labels, so the Binary and its reference are
    // hidden wherever an entry would be.
    let labels = |list: &str| -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for e in entries {
            for t in e["resource"]["meta"][list].as_array().into_iter().flatten() {
                let t = json!({"system": t["system"], "code": t["code"]});
                if t["code"].is_string() && !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        out
    };
    let mut doc_meta = json!({"source": cx.source});
    for list in ["tag", "security"] {
        let l = labels(list);
        if !l.is_empty() {
            doc_meta[list] = json!(l);
        }
    }
    out.push(json!({"resource": {
        "resourceType": "Binary", "id": binary, "meta": doc_meta.clone(),
        "contentType": "application/fhir+json",
        "securityContext": {"reference": format!("DocumentReference/{docref}")},
        "data": issho_model::base64::encode(&text, false)},
        "request": {"method": "PUT", "url": format!("Binary/{binary}")}}));
    let mut dr = Map::new();
    dr.insert("resourceType".into(), json!("DocumentReference"));
    dr.insert("id".into(), json!(docref));
    dr.insert("meta".into(), doc_meta);
    if let Some(v) = &version {
        dr.insert(
            "extension".into(),
            json!([{"url": VERSION_EXT, "valueString": v}]),
        );
    }
    let (sys, val) = key.split_once('|').unwrap_or(("", key));
    dr.insert(
        "masterIdentifier".into(),
        json!({"system": sys, "value": val}),
    );
    dr.insert("status".into(), json!("current"));
    dr.insert("docStatus".into(), json!("final"));
    dr.insert(
        "type".into(),
        match composition {
            Some(c) => c["type"].clone(),
            None => json!({"text": kind.label()}),
        },
    );
    if let Some(c) = composition {
        if c.get("category").is_some() {
            dr.insert("category".into(), c["category"].clone());
        }
        if let Some(a) = c.get("author") {
            dr.insert("author".into(), a.clone());
        }
        if let Some(cu) = c.get("custodian") {
            dr.insert("custodian".into(), cu.clone());
        }
        // DocumentReference.date is an instant: a Composition date without a time (a
        // dateTime may be a day) is not copied.
        if let Some(d) = c["date"].as_str().filter(|d| is_instant(d)) {
            dr.insert("date".into(), json!(d));
        }
        if let Some(t) = c.get("title") {
            dr.insert("description".into(), t.clone());
        }
    }
    dr.insert("subject".into(), json!({"reference": patient_url}));
    let title = composition
        .and_then(|c| c["title"].as_str())
        .unwrap_or(kind.label());
    dr.insert(
        "content".into(),
        json!([{"attachment": {"contentType": "application/fhir+json",
            "url": format!("Binary/{binary}"), "title": title, "size": text.len()}}]),
    );
    let mut context = Map::new();
    if let Some(c) = composition {
        if let Some(enc) = c.get("encounter") {
            context.insert("encounter".into(), json!([enc]));
        }
        context.insert(
            "related".into(),
            json!([{"reference": entries[0]["fullUrl"]}]),
        );
    }
    if !context.is_empty() {
        dr.insert("context".into(), Value::Object(context));
    }
    out.push(json!({"resource": Value::Object(dr),
        "request": {"method": "PUT", "url": format!("DocumentReference/{docref}")}}));
    let provenance = id_for(&format!("provenance|{key}"));
    let mut prov = json!({
        "resourceType": "Provenance", "id": provenance, "meta": {"source": cx.source},
        "target": targets,
        "recorded": received,
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]},
        "entity": [{"role": "source", "what": {"reference": format!("DocumentReference/{docref}")}}],
    });
    let agent = composition
        .and_then(|c| c["custodian"]["reference"].as_str())
        .map(str::to_string);
    prov["agent"] = match agent {
        Some(a) => json!([{"who": {"reference": a}}]),
        None => json!([{"who": {"display": format!("医療機関 {from}")}}]),
    };
    out.push(json!({"resource": prov,
        "request": {"method": "PUT", "url": format!("Provenance/{provenance}")}}));
    if kind == Kind::Referral
        && let Some(c) = composition
    {
        let mut sr = referral(c, by_url, key, patient_url, &docref);
        sr["resource"]["meta"] = json!({"source": cx.source});
        out.push(sr);
    }
    Intake {
        kind,
        key: key.to_string(),
        version,
        document_reference: docref,
        binary,
        items,
        transaction: json!({"resourceType": "Bundle", "type": "transaction", "entry": out}),
    }
}

/// True when `d` is a FHIR instant (a day, a time and a zone).
fn is_instant(d: &str) -> bool {
    let zone = d.ends_with('Z')
        || d.get(19..)
            .is_some_and(|t| t.contains('+') || t.contains('-'));
    d.len() >= 20 && d.as_bytes().get(10) == Some(&b'T') && zone
}

/// The referral as a ServiceRequest to the receiving institution (section 910).
fn referral(
    c: &Value,
    by_url: &HashMap<&str, &Value>,
    key: &str,
    patient_url: &str,
    docref: &str,
) -> Value {
    let section = |code: &str| {
        c["section"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| codes_of(s).contains(&code))
    };
    let pick = |code: &str, rt: &str| -> Option<String> {
        section(code)?["entry"]
            .as_array()?
            .iter()
            .filter_map(|e| e["reference"].as_str())
            .find(|u| by_url.get(u).is_some_and(|r| r["resourceType"] == rt))
            .map(str::to_string)
    };
    let id = id_for(&format!("referral|{key}"));
    let mut sr = json!({
        "resourceType": "ServiceRequest", "id": id,
        "status": "active", "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}], "text": "紹介"}],
        "code": {"text": "診療情報提供（紹介）"},
        "subject": {"reference": patient_url},
        "supportingInfo": [{"reference": format!("DocumentReference/{docref}")}],
    });
    if let Some(d) = c["date"].as_str() {
        sr["authoredOn"] = json!(d);
    }
    if let Some(r) = pick("920", "Practitioner").or_else(|| pick("920", "Organization")) {
        sr["requester"] = json!({"reference": r});
    }
    let mut performer = Vec::new();
    if let Some(o) = pick("910", "Organization") {
        performer.push(json!({"reference": o}));
    }
    if let Some(p) = pick("910", "Practitioner") {
        performer.push(json!({"reference": p}));
    }
    if !performer.is_empty() {
        sr["performer"] = json!(performer);
    }
    json!({"resource": sr, "request": {"method": "PUT", "url": format!("ServiceRequest/{id}")}})
}

#[cfg(test)]
mod tests;
