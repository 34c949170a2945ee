//! [`AuditRecord`] → FHIR R4 AuditEvent, following the IHE Basic Audit Log Patterns (BALP):
//!
//! - `type`: `audit-event-type|rest` with the `restful-interaction` code as subtype for
//!   RESTful interactions; DICOM `110114` User Authentication (`110122` Login / `110123`
//!   Logout) for logins; DICOM `110110` Patient Record with subtype `v3-ActCode|BTG` for a
//!   break-the-glass declaration.
//! - `agent`: the user or client (`v3-ParticipationType|IRCP` information recipient for reads
//!   and queries, `AUT` author for writes; requestor), the organization it acts for
//!   (`v3-RoleClass|PROV`), the client's network address (DICOM `110153` Source Role ID) and
//!   the server (DICOM `110152` Destination Role ID).
//! - `entity`: each patient (`audit-entity-type|1` Person, `object-role|1` Patient), each
//!   resource touched (`2` System Object, `4` Domain Resource), the query (`24` Query, the
//!   request in base64 and as description).
//! - break the glass: `ETREAT` among the purposes of use and a `v3-ActCode|BTG` security tag.

use crate::record::{AuditRecord, Interaction};
use serde_json::{Map, Value, json};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ROLE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";

/// The resource types `AuditEvent.agent.who` may refer to.
const AGENT_TARGETS: [&str; 6] = [
    "PractitionerRole",
    "Practitioner",
    "Organization",
    "Device",
    "Patient",
    "RelatedPerson",
];

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// A FHIR string: trimmed, control characters dropped; None when nothing is left.
fn text(s: &str) -> Option<String> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .collect();
    (!t.is_empty()).then_some(t)
}

/// The agent's key in the log (`audit.agent`): its id as written into the event.
pub(crate) fn agent_key(rec: &AuditRecord) -> String {
    text(&rec.agent.id).unwrap_or_else(|| "anonymous".into())
}

/// The patients' keys in the log (`audit_patient`): trimmed, on one line each, sorted, once.
pub(crate) fn patient_keys(rec: &AuditRecord) -> Vec<String> {
    let mut keys: Vec<String> = rec
        .patients
        .iter()
        .filter_map(|p| text(&p.replace(['\n', '\r', '\t'], " ")))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The resource type of a relative reference `Type/id` or `Type/id/_history/vid`.
fn reference_type(r: &str) -> Option<&str> {
    let parts: Vec<&str> = r.split('/').collect();
    let ok = match parts.as_slice() {
        [_, id] => is_id(id),
        [_, id, "_history", v] => is_id(id) && is_id(v),
        _ => false,
    };
    (ok && issho_model::r4().is_resource_type(parts[0])).then_some(parts[0])
}

/// A Reference: `reference` when `r` is a relative reference to one of `targets` (any type
/// when empty), else an identifier with that value; with a display when given.
fn reference(r: &str, targets: &[&str], display: Option<&str>) -> Option<Value> {
    let r = text(r)?;
    let mut m = Map::new();
    match reference_type(&r) {
        Some(t) if targets.is_empty() || targets.contains(&t) => {
            m.insert("reference".into(), Value::String(r));
        }
        _ => {
            m.insert("identifier".into(), json!({ "value": r }));
        }
    }
    if let Some(d) = display.and_then(text) {
        m.insert("display".into(), Value::String(d));
    }
    Some(Value::Object(m))
}

/// A purpose of use: `CODE` of v3-ActReason, or `system|code`.
fn purpose(p: &str) -> Option<Value> {
    let p = text(p)?;
    let (system, code) = match p.split_once('|') {
        Some((s, c)) => (text(s)?, text(c)?),
        None => (ACT_REASON.to_string(), p),
    };
    if code.contains(char::is_whitespace) || system.contains(char::is_whitespace) {
        return Some(json!({ "text": format!("{system}|{code}") }));
    }
    let mut c = json!({"system": system, "code": code});
    let display = match (system.as_str(), code.as_str()) {
        (ACT_REASON, "TREAT") => Some("treatment"),
        (ACT_REASON, "ETREAT") => Some("Emergency Treatment"),
        (ACT_REASON, "PATRQT") => Some("patient requested"),
        (ACT_REASON, "HOPERAT") => Some("healthcare operations"),
        (ACT_REASON, "HRESCH") => Some("healthcare research"),
        (ACT_REASON, "PUBHLTH") => Some("public health"),
        _ => None,
    };
    if let Some(d) = display {
        c["display"] = Value::String(d.into());
    }
    Some(json!({ "coding": [c] }))
}

/// `agent.role`: `system|code` as a coding, anything else as text.
fn role(r: &str) -> Option<Value> {
    let r = text(r)?;
    if let Some((s, c)) = r.split_once('|')
        && let (Some(s), Some(c)) = (text(s), text(c))
        && !s.contains(char::is_whitespace)
        && !c.contains(char::is_whitespace)
    {
        return Some(json!({"coding": [{"system": s, "code": c}]}));
    }
    Some(json!({ "text": r }))
}

/// `agent.network.type`: `2` IP address, else `1` machine name.
fn network(address: &str) -> Option<Value> {
    let a = text(address)?;
    let ip = a.parse::<std::net::IpAddr>().is_ok() || a.parse::<std::net::SocketAddr>().is_ok();
    Some(json!({"address": a, "type": if ip { "2" } else { "1" }}))
}

fn event_type(i: Interaction) -> (Value, Value) {
    match i {
        Interaction::Login => (
            coding(DCM, "110114", "User Authentication"),
            coding(DCM, "110122", "Login"),
        ),
        Interaction::Logout => (
            coding(DCM, "110114", "User Authentication"),
            coding(DCM, "110123", "Logout"),
        ),
        Interaction::BreakGlass => (
            coding(DCM, "110110", "Patient Record"),
            coding(ACT_CODE, "BTG", "break the glass"),
        ),
        rest => (
            coding(EVENT_TYPE, "rest", "Restful Operation"),
            json!({"system": RESTFUL, "code": rest.code()}),
        ),
    }
}

/// The AuditEvent (FHIR R4, BALP patterns) for `rec`, with logical id `id`. The output is
/// valid R4 for any record: strings are trimmed, and identities that are not relative
/// references become identifiers.
pub fn to_audit_event(rec: &AuditRecord, id: &str) -> Value {
    let mut ev = Map::new();
    ev.insert("resourceType".into(), "AuditEvent".into());
    ev.insert("id".into(), id.into());
    if rec.break_glass {
        ev.insert(
            "meta".into(),
            json!({"security": [coding(ACT_CODE, "BTG", "break the glass")]}),
        );
    }
    let (ty, subtype) = event_type(rec.interaction);
    ev.insert("type".into(), ty);
    ev.insert("subtype".into(), json!([subtype]));
    ev.insert("action".into(), rec.action.code().into());
    ev.insert(
        "recorded".into(),
        issho_model::instant::format_instant(rec.time).into(),
    );
    ev.insert("outcome".into(), rec.outcome.code().into());
    if let Some(r) = rec.reason.as_deref().and_then(text) {
        ev.insert("outcomeDesc".into(), r.into());
    }

    // Purposes of use; a break-the-glass access is emergency treatment.
    let mut purposes: Vec<Value> = rec
        .purpose_of_use
        .iter()
        .filter_map(|p| purpose(p))
        .collect();
    if rec.break_glass {
        let etreat = purpose("ETREAT").expect("a valid code");
        if !purposes.contains(&etreat) {
            purposes.push(etreat);
        }
    }
    if !purposes.is_empty() {
        ev.insert("purposeOfEvent".into(), Value::Array(purposes.clone()));
    }

    let mut agents = Vec::new();
    let who_id = agent_key(rec);
    let mut user = Map::new();
    let user_type = if matches!(rec.action, crate::Action::Read | crate::Action::Execute) {
        coding(PARTICIPATION, "IRCP", "information recipient")
    } else {
        coding(PARTICIPATION, "AUT", "author (originator)")
    };
    user.insert("type".into(), json!({ "coding": [user_type] }));
    if let Some(r) = rec.agent.role.as_deref().and_then(role) {
        user.insert("role".into(), json!([r]));
    }
    if let Some(who) = reference(&who_id, &AGENT_TARGETS, rec.agent.name.as_deref()) {
        user.insert("who".into(), who);
    }
    if let Some(n) = rec.agent.name.as_deref().and_then(text) {
        user.insert("name".into(), n.into());
    }
    user.insert("requestor".into(), rec.agent.requestor.into());
    if !purposes.is_empty() {
        user.insert("purposeOfUse".into(), Value::Array(purposes));
    }
    agents.push(Value::Object(user));
    if let Some(org) = rec
        .on_behalf_of
        .as_deref()
        .and_then(|o| reference(o, &["Organization"], None))
    {
        agents.push(json!({
            "type": {"coding": [coding(ROLE_CLASS, "PROV", "healthcare provider")]},
            "who": org,
            "requestor": false,
        }));
    }
    if let Some(net) = rec.address.as_deref().and_then(network) {
        agents.push(json!({
            "type": {"coding": [coding(DCM, "110153", "Source Role ID")]},
            "requestor": false,
            "network": net,
        }));
    }
    let source = text(&rec.source).unwrap_or_else(|| "issho".into());
    agents.push(json!({
        "type": {"coding": [coding(DCM, "110152", "Destination Role ID")]},
        "who": {"display": source},
        "requestor": false,
    }));
    ev.insert("agent".into(), Value::Array(agents));

    ev.insert(
        "source".into(),
        json!({
            "site": source,
            "observer": {"display": source},
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        }),
    );

    let mut entities = Vec::new();
    for p in &rec.patients {
        if let Some(what) = reference(p, &["Patient"], None) {
            entities.push(json!({
                "what": what,
                "type": coding(ENTITY_TYPE, "1", "Person"),
                "role": coding(OBJECT_ROLE, "1", "Patient"),
            }));
        }
    }
    for e in &rec.entities {
        if let Some(what) = reference(e, &[], None) {
            entities.push(json!({
                "what": what,
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
            }));
        }
    }
    if let Some(q) = rec.query.as_deref().and_then(text) {
        entities.push(json!({
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "24", "Query"),
            "description": q,
            "query": issho_model::base64::encode(q.as_bytes(), false),
        }));
    }
    if !entities.is_empty() {
        ev.insert("entity".into(), Value::Array(entities));
    }
    Value::Object(ev)
}

/// A stored entry (its seq and compact record) as the AuditEvent it is read as.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn stored_event(seq: i64, body: &[u8]) -> Result<Value, crate::AuditError> {
    let rec: crate::AuditRecord = serde_json::from_slice(body)
        .map_err(|e| crate::AuditError::Io(format!("entry {seq} is not a record: {e}")))?;
    Ok(to_audit_event(&rec, &seq.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::*;
    use issho_model::validate::validate_resource;

    fn sample() -> AuditRecord {
        let mut r = AuditRecord::new(Interaction::Read, "Practitioner/dr-sato", "issho.example");
        r.time = 1_790_000_000_123_456;
        r.agent.name = Some("佐藤 花子".into());
        r.agent.role = Some("http://terminology.hl7.org/CodeSystem/v3-RoleCode|PHYS".into());
        r.on_behalf_of = Some("Organization/hosp-1".into());
        r.purpose_of_use = vec!["TREAT".into()];
        r.patients = vec!["Patient/p1".into()];
        r.entities = vec!["Observation/o1/_history/3".into()];
        r.address = Some("192.0.2.10:51234".into());
        r
    }

    fn assert_valid(ev: &Value) {
        let issues = validate_resource(ev, &Default::default());
        assert!(issues.is_empty(), "{issues:#?}\n{ev:#}");
    }

    #[test]
    fn a_read_is_a_valid_balp_patient_read() {
        let ev = to_audit_event(&sample(), "42");
        assert_valid(&ev);
        assert_eq!(ev["id"], "42");
        assert_eq!(ev["type"]["code"], "rest");
        assert_eq!(ev["subtype"][0]["system"], RESTFUL);
        assert_eq!(ev["subtype"][0]["code"], "read");
        assert_eq!(ev["action"], "R");
        assert_eq!(ev["outcome"], "0");
        assert_eq!(ev["recorded"], "2026-09-21T14:13:20.123456Z");
        assert_eq!(ev["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        let user = &ev["agent"][0];
        assert_eq!(user["who"]["reference"], "Practitioner/dr-sato");
        assert_eq!(user["who"]["display"], "佐藤 花子");
        assert_eq!(user["requestor"], true);
        assert_eq!(user["type"]["coding"][0]["code"], "IRCP");
        assert_eq!(user["role"][0]["coding"][0]["code"], "PHYS");
        let org = &ev["agent"][1];
        assert_eq!(org["who"]["reference"], "Organization/hosp-1");
        assert_eq!(org["type"]["coding"][0]["code"], "PROV");
        assert_eq!(ev["agent"][2]["network"]["type"], "2");
        assert_eq!(ev["agent"][3]["type"]["coding"][0]["code"], "110152");
        assert_eq!(ev["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(ev["entity"][0]["role"]["code"], "1");
        assert_eq!(
            ev["entity"][1]["what"]["reference"],
            "Observation/o1/_history/3"
        );
        assert!(ev.get("meta").is_none());
    }

    #[test]
    fn every_interaction_gives_a_valid_event() {
        for i in Interaction::ALL {
            let mut r = sample();
            r.interaction = i;
            r.action = i.default_action();
            assert_eq!(Interaction::from_code(i.code()), Some(i));
            let ev = to_audit_event(&r, "1");
            assert_valid(&ev);
            if i.is_restful() {
                assert_eq!(ev["subtype"][0]["code"], i.code());
            }
        }
    }

    #[test]
    fn a_search_carries_its_query() {
        let mut r = sample();
        r.interaction = Interaction::SearchType;
        r.action = Action::Execute;
        r.entities.clear();
        r.query = Some("Observation?subject=Patient/p1&code=http://loinc.org|1234-5".into());
        let ev = to_audit_event(&r, "7");
        assert_valid(&ev);
        let q = &ev["entity"][1];
        assert_eq!(q["role"]["code"], "24");
        let raw = issho_model::base64::decode(q["query"].as_str().unwrap()).unwrap();
        assert_eq!(raw, r.query.unwrap().as_bytes());
    }

    #[test]
    fn break_the_glass_is_tagged_and_emergency_treatment() {
        let mut r = sample();
        r.break_glass = true;
        let ev = to_audit_event(&r, "9");
        assert_valid(&ev);
        assert_eq!(ev["meta"]["security"][0]["system"], ACT_CODE);
        assert_eq!(ev["meta"]["security"][0]["code"], "BTG");
        let codes: Vec<&Value> = ev["agent"][0]["purposeOfUse"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["coding"][0]["code"])
            .collect();
        assert_eq!(codes, ["TREAT", "ETREAT"]);
        // the declaration itself
        r.interaction = Interaction::BreakGlass;
        r.action = Action::Execute;
        let ev = to_audit_event(&r, "10");
        assert_valid(&ev);
        assert_eq!(ev["type"]["code"], "110110");
        assert_eq!(ev["subtype"][0]["code"], "BTG");
    }

    #[test]
    fn a_denial_and_odd_identities_stay_valid() {
        let mut r = AuditRecord::new(Interaction::Delete, "  client: app 1 ", " ");
        r.outcome = Outcome::MinorFailure;
        r.reason = Some("access denied: no consent\u{1}".into());
        r.on_behalf_of = Some("hospital 7".into());
        r.patients = vec!["p1".into(), "Patient/".into()];
        r.entities = vec!["Observation/has space".into()];
        r.purpose_of_use = vec!["".into(), "urn:x|a b".into()];
        r.agent.role = Some("nurse".into());
        r.address = Some("client.example".into());
        let ev = to_audit_event(&r, "11");
        assert_valid(&ev);
        assert_eq!(ev["outcome"], "4");
        assert_eq!(ev["outcomeDesc"], "access denied: no consent");
        assert_eq!(
            ev["agent"][0]["who"]["identifier"]["value"],
            "client: app 1"
        );
        assert_eq!(ev["agent"][0]["type"]["coding"][0]["code"], "AUT");
        assert_eq!(ev["agent"][1]["who"]["identifier"]["value"], "hospital 7");
        assert_eq!(ev["agent"][2]["network"]["type"], "1");
        assert_eq!(ev["source"]["observer"]["display"], "issho");
        assert_eq!(ev["entity"][0]["what"]["identifier"]["value"], "p1");
    }
}
