//! One person, many Patients: the person key of a Patient, linking by a certain match, and
//! a registrar's link and unlink (the comparison itself is issho-identity's).
//!
//! The store's person column (the distribution key) holds the person, which is the id of one
//! of their Patients: an unlinked Patient is its own person; Patients linked into one person
//! share the key of the person they joined, and every resource of their records moves with
//! them (`owner.rs`: a reference to `Patient/X` names X's person). The FHIR-visible form is
//! the R4 `Person` resource, kept by the server: its `link.target`s are the person's
//! Patients (`assurance` level3 for a certain match by member ID, level4 for a registrar's
//! link), its identifiers the normalised member IDs (the matching index), and an extension
//! ([`DISTINCT`]) lists Patients a registrar said are someone else (never linked again
//! automatically).

use crate::owner::{RESTRICTED, owner_in};
use crate::*;
use issho_identity::{Grade, MEMBER_ID, Traits, compare, member_ids};
use issho_search::{Filter, SearchQuery, Test};
use issho_store::{StoreRead, StoreTx};
use serde_json::json;

/// `valueString` `Patient/[id]`: a Patient a registrar said is not this person.
pub(crate) const DISTINCT: &str = "urn:issho:fhir:extension:distinct-person";

/// True when `ctx`'s writes may link Patients into persons by a certain match: registrars,
/// administrators, backend services and the server's own principals (intake, demo, import).
/// A clinician's or a patient's write never merges two records (either could otherwise pull
/// someone else's record into one they reach, or learn that a member ID is registered).
pub(crate) fn may_link(ctx: &AccessContext) -> bool {
    use issho_access::Role;
    ctx.grant().is_none_or(|g| {
        matches!(
            g.role,
            Role::Administrator | Role::Registrar | Role::Service
        )
    })
}

/// The person of `Patient/id`: its stored key, or itself when not stored (yet).
pub(crate) fn person_of_patient(r: &dyn StoreRead, id: &str) -> Result<String> {
    Ok(match r.person("Patient", id)? {
        Some(Some(p)) if p != RESTRICTED => p,
        _ => id.to_string(),
    })
}

/// The current resources (of `types`, or all) in `person`'s record.
pub(crate) fn in_person(r: &dyn StoreRead, types: &[&str], person: &str) -> Result<Vec<Stored>> {
    let q = SearchQuery {
        types: types.iter().map(|t| t.to_string()).collect(),
        filters: vec![Filter {
            name: "_person".into(),
            test: Test::PersonIn(vec![person.to_string()]),
        }],
        ..Default::default()
    };
    let rids = r.search(&q)?;
    let mut out = Vec::with_capacity(rids.len());
    for chunk in rids.chunks(500) {
        out.extend(r.current_by_rids(chunk)?);
    }
    Ok(out)
}

/// The ids of the person's Patients, sorted.
pub(crate) fn members(r: &dyn StoreRead, person: &str) -> Result<Vec<String>> {
    let mut ids: Vec<String> = in_person(r, &["Patient"], person)?
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    Ok(ids)
}

fn person_resource(r: &dyn StoreRead, person: &str) -> Result<Option<Value>> {
    Ok(in_person(r, &["Person"], person)?
        .into_iter()
        .next()
        .and_then(|s| s.json()))
}

/// The Patients a Person links (`link.target` to a Patient), with their assurance.
fn links(person: &Value) -> Vec<(String, String)> {
    person["link"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let id = l["target"]["reference"]
                .as_str()?
                .strip_prefix("Patient/")?;
            let level = l["assurance"].as_str().unwrap_or("level3");
            Some((id.to_string(), level.to_string()))
        })
        .collect()
}

/// The Patients a Person's [`DISTINCT`] extension names.
fn distinct_of(person: &Value) -> Vec<String> {
    person["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"].as_str() == Some(DISTINCT))
        .filter_map(|e| e["valueString"].as_str()?.strip_prefix("Patient/"))
        .map(str::to_string)
        .collect()
}

/// Writes the Person of `person` as its Patients are now: one link per Patient (existing
/// links keep their assurance, new ones get `level` for those in `new`, level3 otherwise),
/// the member IDs, the demographics of the first Patient, and the Patients said to be
/// someone else (`distinct`, added to those already noted). Nothing is written when nothing
/// changed; a person with one Patient, no member ID and nothing noted has no Person.
fn refresh_person(
    tx: &mut dyn StoreTx,
    person: &str,
    distinct: &[String],
    new: &[String],
    level: &str,
) -> Result<()> {
    let current = person_resource(tx, person)?;
    let ids = members(tx, person)?;
    let mut patients = Vec::new();
    for id in &ids {
        if let Some(v) = tx.current("Patient", id)?.and_then(|s| s.json()) {
            patients.push(v);
        }
    }
    let mut member: Vec<String> = patients.iter().flat_map(member_ids).collect();
    member.sort();
    member.dedup();
    let known = current.as_ref().map(links).unwrap_or_default();
    let mut not_them: Vec<String> = current.as_ref().map(distinct_of).unwrap_or_default();
    not_them.extend(distinct.iter().cloned());
    not_them.retain(|p| !ids.contains(p));
    not_them.sort();
    not_them.dedup();
    if current.is_none() && ids.len() < 2 && member.is_empty() && not_them.is_empty() {
        return Ok(());
    }
    let Some(first) = patients.first() else {
        return Ok(());
    };
    let link: Vec<Value> = ids
        .iter()
        .map(|id| {
            let assurance = known
                .iter()
                .find(|(p, _)| p == id)
                .map(|(_, l)| l.as_str())
                .unwrap_or(if new.contains(id) { level } else { "level3" });
            json!({"target": {"reference": format!("Patient/{id}")}, "assurance": assurance})
        })
        .collect();
    let mut body = json!({"resourceType": "Person", "active": true, "link": link});
    if !member.is_empty() {
        body["identifier"] = member
            .iter()
            .map(|m| json!({"system": MEMBER_ID, "value": m}))
            .collect();
    }
    for k in ["name", "gender", "birthDate"] {
        if let Some(v) = first.get(k) {
            body[k] = v.clone();
        }
    }
    if !not_them.is_empty() {
        body["extension"] = not_them
            .iter()
            .map(|p| json!({"url": DISTINCT, "valueString": format!("Patient/{p}")}))
            .collect();
    }
    let id = match &current {
        Some(c) => c["id"].as_str().unwrap_or_default().to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    body["id"] = json!(id);
    if let Some(c) = &current {
        let mut same = c.clone();
        if let Some(o) = same.as_object_mut() {
            o.remove("meta");
        }
        if same == body {
            return Ok(());
        }
    }
    let owner = owner_in(&*tx, "Person", &body)?;
    tx.put("Person", &id, &mut body, owner.column(), "PUT")?;
    Ok(())
}

/// Moves every resource of `joining`'s record into `survivor`'s, and the joining person's
/// Person goes (what it noted carries over).
fn merge_persons(tx: &mut dyn StoreTx, survivor: &str, joining: &str, level: &str) -> Result<()> {
    if survivor == joining {
        return Ok(());
    }
    let newcomers = members(tx, joining)?;
    let mut noted = Vec::new();
    if let Some(p) = person_resource(tx, joining)? {
        noted = distinct_of(&p);
        if let Some(id) = p["id"].as_str() {
            tx.delete("Person", id)?;
        }
    }
    for s in in_person(tx, &[], joining)? {
        tx.set_person(s.rid, Some(survivor))?;
    }
    refresh_person(tx, survivor, &noted, &newcomers, level)
}

/// True when a registrar said the two persons are not the same (either Person notes a
/// Patient of the other).
fn said_distinct(tx: &dyn StoreTx, a: &str, b: &str) -> Result<bool> {
    for (x, y) in [(a, b), (b, a)] {
        if let Some(p) = person_resource(tx, x)? {
            let noted = distinct_of(&p);
            if members(tx, y)?.iter().any(|m| noted.contains(m)) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// After a Patient is written: a certain match (the same member ID and birth date, see
/// issho-identity) with a Patient of another person links it into that person, unless a
/// registrar said they are not the same; then the person's Person is brought up to date.
pub(crate) fn patient_written(
    tx: &mut dyn StoreTx,
    id: &str,
    body: &Value,
    first: bool,
) -> Result<()> {
    let me = Traits::of(body);
    if first && me.member_ids.is_empty() {
        // A Patient's first version without a member ID matches no one, and no Person can
        // name it yet (a person's key is the id of a Patient that existed when it was
        // written): nothing to link or refresh — most Patients of a large load.
        return Ok(());
    }
    let mut person = person_of_patient(tx, id)?;
    for m in &me.member_ids {
        // Two institutions registering the same person at once: one after the other.
        tx.lock_key(&format!("member-id {m}"))?;
        let q = issho_search::parse(
            Some("Person"),
            &[("identifier".into(), format!("{MEMBER_ID}|{m}"))],
            true,
        )
        .map_err(|issues| FhirError {
            status: 500,
            issues,
        })?;
        let found = tx.search(&q)?;
        for s in tx.current_by_rids(&found)? {
            let Some(other) = s.person.clone() else {
                continue;
            };
            if other == person || other == RESTRICTED || said_distinct(&*tx, &person, &other)? {
                continue;
            }
            let certain = {
                let mut any = false;
                for p in members(tx, &other)? {
                    if let Some(v) = tx.current("Patient", &p)?.and_then(|s| s.json()) {
                        any |= compare(&me, &Traits::of(&v)).grade == Grade::Certain;
                    }
                }
                any
            };
            if certain {
                merge_persons(tx, &other, &person, "level3")?;
                person = other;
            }
        }
    }
    refresh_person(tx, &person, &[], &[], "level3")
}

/// A registrar's link: `other`'s person joins `patient`'s (both must be known Patients).
pub(crate) fn link(tx: &mut dyn StoreTx, patient: &str, other: &str) -> Result<()> {
    for p in [patient, other] {
        if tx.current("Patient", p)?.is_none_or(|s| s.is_deleted()) {
            return Err(FhirError::not_found(format!("Patient/{p} is not known")));
        }
    }
    let survivor = person_of_patient(tx, patient)?;
    let joining = person_of_patient(tx, other)?;
    if survivor == joining {
        return Err(FhirError::new(
            422,
            IssueType::BusinessRule,
            format!("Patient/{patient} and Patient/{other} are already one person"),
        ));
    }
    // What was noted as distinct between them no longer holds.
    for (x, y) in [
        (survivor.as_str(), joining.as_str()),
        (joining.as_str(), survivor.as_str()),
    ] {
        if let Some(mut p) = person_resource(tx, x)? {
            let theirs = members(tx, y)?;
            let before = distinct_of(&p).len();
            if let Some(ext) = p.get_mut("extension").and_then(Value::as_array_mut) {
                ext.retain(|e| {
                    e["valueString"]
                        .as_str()
                        .and_then(|v| v.strip_prefix("Patient/"))
                        .is_none_or(|v| !theirs.iter().any(|t| t == v))
                });
            }
            if distinct_of(&p).len() != before {
                let id = p["id"].as_str().unwrap_or_default().to_string();
                let owner = owner_in(&*tx, "Person", &p)?;
                tx.put("Person", &id, &mut p, owner.column(), "PUT")?;
            }
        }
    }
    merge_persons(tx, &survivor, &joining, "level4")
}

/// A registrar's unlink: `patient` leaves its person and becomes a person of its own (noted
/// as distinct from the others, so no certain match links it again); every resource of the
/// record is keyed again by the ownership rule.
pub(crate) fn unlink(tx: &mut dyn StoreTx, patient: &str) -> Result<()> {
    if tx
        .current("Patient", patient)?
        .is_none_or(|s| s.is_deleted())
    {
        return Err(FhirError::not_found(format!(
            "Patient/{patient} is not known"
        )));
    }
    let key = person_of_patient(tx, patient)?;
    let all = members(tx, &key)?;
    let rest: Vec<String> = all.iter().filter(|p| *p != patient).cloned().collect();
    let Some(first) = rest.first() else {
        return Err(FhirError::new(
            422,
            IssueType::BusinessRule,
            format!("Patient/{patient} is not linked to another Patient"),
        ));
    };
    let rest_key = if key == patient {
        first.clone()
    } else {
        key.clone()
    };
    let record = in_person(&*tx, &[], &key)?;
    // The Patients first: the rest of the record follows them.
    for s in record.iter().filter(|s| s.resource_type == "Patient") {
        let to = if s.id == patient { patient } else { &rest_key };
        if s.person.as_deref() != Some(to) {
            tx.set_person(s.rid, Some(to))?;
        }
    }
    // The remaining person's Person: without the patient, noting them as someone else.
    if let Some(mut p) = person_resource(&*tx, &key)? {
        if let Some(l) = p.get_mut("link").and_then(Value::as_array_mut) {
            l.retain(|x| x["target"]["reference"].as_str() != Some(&format!("Patient/{patient}")));
        }
        let id = p["id"].as_str().unwrap_or_default().to_string();
        let owner = owner_in(&*tx, "Person", &p)?;
        tx.put("Person", &id, &mut p, owner.column(), "PUT")?;
    }
    // Every other resource by the rule, in rounds (a resource follows what it refers to).
    let others: Vec<i64> = record
        .iter()
        .filter(|s| s.resource_type != "Patient")
        .map(|s| s.rid)
        .collect();
    for _ in 0..4 {
        let mut changed = false;
        for chunk in others.chunks(500) {
            for s in tx.current_by_rids(chunk)? {
                let Some(body) = s.json() else { continue };
                let owner = owner_in(&*tx, &s.resource_type, &body)?;
                if owner.column() != s.person.as_deref() {
                    tx.set_person(s.rid, owner.column())?;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    refresh_person(tx, &rest_key, &[patient.to_string()], &[], "level3")?;
    refresh_person(tx, patient, &rest, &[], "level3")
}
