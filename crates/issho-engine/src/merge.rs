//! Merging duplicate Patients: `Patient/$merge` (defined by FHIR R5, which R4 lacks; issho
//! follows its parameters) and issho's `Patient/[id]/$unmerge`, which reverses one.
//!
//! A merge makes the target Patient the one that stays: every resource of the record that
//! refers to the source Patient gets a new version referring to the target (the old versions
//! stay in its history), the source gets `active: false` and a `replaced-by` link, the target
//! a `replaces` link; two persons become one (`identity::link`). A server-kept Provenance
//! ([`MERGE_POLICY`]) lists every version the merge wrote: that is what `$unmerge` reverses —
//! a resource not changed since gets its version from before the merge back, one changed
//! since has its references to the target turned back to the source — and when the merge
//! joined two persons, the source's person is parted again (`identity::unlink`, noting them
//! as distinct). Registrars and administrators only; audited.

use crate::*;
use issho_store::{StoreRead, StoreTx};
use serde_json::json;

/// `Provenance.policy` of the record of a merge (written by the server only).
pub const MERGE_POLICY: &str = "urn:issho:policy:patient-merge";
/// `Provenance.policy` of the record of an unmerge (written by the server only).
pub const UNMERGE_POLICY: &str = "urn:issho:policy:patient-unmerge";
/// Extension on a merge's Provenance: the merge joined two persons (`valueBoolean`).
pub const JOINED_PERSONS: &str = "urn:issho:fhir:extension:merge-joined-persons";

/// True for the Provenances of merges and unmerges, which no client writes.
pub(crate) fn server_kept(rt: &str, body: &Value) -> bool {
    rt == "Provenance"
        && body["policy"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| matches!(p.as_str(), Some(MERGE_POLICY | UNMERGE_POLICY)))
}

/// The parameters of `$merge`, as read.
struct Request {
    source: Who,
    target: Who,
    result: Option<Value>,
    preview: bool,
}

/// A Patient named by reference or by identifiers.
#[derive(Clone)]
enum Who {
    Id(String),
    Identifiers(Vec<(String, String)>),
}

fn parameters_named<'a>(input: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> {
    input["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |p| p["name"].as_str() == Some(name))
}

fn who(input: &Value, side: &str) -> Result<Who> {
    let ref_name = format!("{side}-patient");
    let by_ref = parameters_named(input, &ref_name).next();
    let name = format!("{side}-patient-identifier");
    let ids: Vec<(String, String)> = parameters_named(input, &name)
        .map(|p| {
            let i = &p["valueIdentifier"];
            match (i["system"].as_str(), i["value"].as_str()) {
                (Some(s), Some(v)) if !v.is_empty() => Ok((s.to_string(), v.to_string())),
                _ => Err(FhirError::bad_request(format!(
                    "{name} must be a valueIdentifier with a system and a value"
                ))),
            }
        })
        .collect::<Result<_>>()?;
    match (by_ref, ids.is_empty()) {
        (Some(p), _) => {
            let v = p["valueReference"]["reference"]
                .as_str()
                .unwrap_or_default();
            match v.strip_prefix("Patient/") {
                Some(id) if crate::valid_id(id) && !id.contains('/') => Ok(Who::Id(id.into())),
                _ => Err(FhirError::bad_request(format!(
                    "{side}-patient must be a valueReference to Patient/[id] of this server, not '{v}'"
                ))),
            }
        }
        (None, false) => Ok(Who::Identifiers(ids)),
        (None, true) => Err(FhirError::bad_request(format!(
            "name the {side} Patient with {side}-patient or {side}-patient-identifier"
        ))),
    }
}

fn request(input: &Value) -> Result<Request> {
    if input["resourceType"].as_str() != Some("Parameters") {
        return Err(FhirError::bad_request("$merge takes a Parameters resource"));
    }
    let preview = match parameters_named(input, "preview").next() {
        None => false,
        Some(p) => p["valueBoolean"]
            .as_bool()
            .ok_or_else(|| FhirError::bad_request("preview must be a valueBoolean"))?,
    };
    let result = match parameters_named(input, "result-patient").next() {
        None => None,
        Some(p) if p["resource"]["resourceType"].as_str() == Some("Patient") => {
            Some(p["resource"].clone())
        }
        Some(_) => {
            return Err(FhirError::bad_request(
                "result-patient must be a Patient resource",
            ));
        }
    };
    Ok(Request {
        source: who(input, "source")?,
        target: who(input, "target")?,
        result,
        preview,
    })
}

/// The id of the current Patient `w` names: by identifiers, exactly one Patient must carry
/// all of them.
fn resolve(r: &dyn StoreRead, w: &Who, side: &str) -> Result<(String, Value)> {
    let id = match w {
        Who::Id(id) => id.clone(),
        Who::Identifiers(ids) => {
            let pairs: Vec<(String, String)> = ids
                .iter()
                .map(|(s, v)| ("identifier".to_string(), format!("{s}|{v}")))
                .collect();
            let q =
                issho_search::parse(Some("Patient"), &pairs, true).map_err(|issues| FhirError {
                    status: 400,
                    issues,
                })?;
            let found = r.current_by_rids(&r.search(&q)?)?;
            match found.as_slice() {
                [one] => one.id.clone(),
                [] => {
                    return Err(FhirError::not_found(format!(
                        "no Patient carries the {side}-patient-identifier"
                    )));
                }
                _ => {
                    return Err(FhirError::new(
                        422,
                        IssueType::MultipleMatches,
                        format!("more than one Patient carries the {side}-patient-identifier"),
                    ));
                }
            }
        }
    };
    match r.current("Patient", &id)?.and_then(|s| s.json()) {
        Some(v) => Ok((id, v)),
        None => Err(FhirError::not_found(format!("Patient/{id} is not known"))),
    }
}

/// The Patient `p` was merged into (its `replaced-by` link), if any.
fn replaced_by(p: &Value) -> Option<String> {
    p["link"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["type"].as_str() == Some("replaced-by"))
        .find_map(|l| {
            l["other"]["reference"]
                .as_str()?
                .strip_prefix("Patient/")
                .map(str::to_string)
        })
}

/// Turns every reference to `Patient/from` (also versioned) in `v` into `Patient/to`;
/// returns how many.
fn repoint(v: &mut Value, from: &str, to: &str) -> usize {
    let plain = format!("Patient/{from}");
    let versioned = format!("Patient/{from}/_history/");
    match v {
        Value::Object(o) => {
            let mut n = 0;
            for (k, child) in o.iter_mut() {
                match child {
                    Value::String(s) if k == "reference" => {
                        if *s == plain || s.starts_with(&versioned) {
                            *s = format!("Patient/{to}");
                            n += 1;
                        }
                    }
                    _ => n += repoint(child, from, to),
                }
            }
            n
        }
        Value::Array(a) => a.iter_mut().map(|x| repoint(x, from, to)).sum(),
        _ => 0,
    }
}

/// The resources of `person`'s record that refer to `Patient/source` (not the Patients
/// themselves, the server-kept Person or the records of merges).
fn referrers(r: &dyn StoreRead, person: &str, source: &str) -> Result<Vec<(Stored, Value)>> {
    let mut out = Vec::new();
    for s in crate::identity::in_person(r, &[], person)? {
        if matches!(s.resource_type.as_str(), "Patient" | "Person") {
            continue;
        }
        let Some(body) = s.json() else { continue };
        if server_kept(&s.resource_type, &body) {
            continue;
        }
        let refs = crate::owner::literal_refs(&body);
        if refs.contains(&("Patient".to_string(), source.to_string())) {
            out.push((s, body));
        }
    }
    Ok(out)
}

/// Writes `body` as a new version of `rt/id`, keyed by the ownership rule; its versioned
/// reference.
fn put(tx: &mut dyn StoreTx, rt: &str, id: &str, mut body: Value) -> Result<String> {
    let owner = crate::owner::owner_in(&*tx, rt, &body)?;
    let p = tx.put(rt, id, &mut body, owner.column(), "PUT")?;
    Ok(format!("{rt}/{id}/_history/{}", p.version))
}

fn add_link(p: &mut Value, other: &str, kind: &str) {
    let link = json!({"other": {"reference": format!("Patient/{other}")}, "type": kind});
    match p.get_mut("link").and_then(Value::as_array_mut) {
        Some(l) => {
            if !l.contains(&link) {
                l.push(link)
            }
        }
        None => p["link"] = json!([link]),
    }
}

fn drop_link(p: &mut Value, other: &str, kind: &str) {
    if let Some(l) = p.get_mut("link").and_then(Value::as_array_mut) {
        l.retain(|x| {
            !(x["type"].as_str() == Some(kind)
                && x["other"]["reference"].as_str() == Some(&format!("Patient/{other}")))
        });
        if l.is_empty()
            && let Some(o) = p.as_object_mut()
        {
            o.remove("link");
        }
    }
}

fn provenance(policy: &str, who: &str, targets: &[String], entity: &str) -> Value {
    json!({
        "resourceType": "Provenance",
        "target": targets.iter().map(|t| json!({"reference": t})).collect::<Vec<_>>(),
        "recorded": issho_model::instant::format_instant(issho_store::now_micros()),
        "policy": [policy],
        "activity": {"text": if policy == MERGE_POLICY { "merge" } else { "unmerge" }},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"display": who}
        }],
        "entity": [{"role": "source", "what": {"reference": entity}}],
    })
}

/// What a merge did or would do.
struct Merged {
    target: Value,
    changed: usize,
    joined: bool,
}

/// The merge inside one transaction (or, with `preview`, what it would do).
fn merge_in(tx: &mut dyn StoreTx, req: &Request, who: &str) -> Result<Merged> {
    let (source, mut src) = resolve(&*tx, &req.source, "source")?;
    let (target, tgt) = resolve(&*tx, &req.target, "target")?;
    if source == target {
        return Err(FhirError::bad_request(
            "the source and the target are the same Patient",
        ));
    }
    for (id, p, what) in [(&source, &src, "source"), (&target, &tgt, "target")] {
        if let Some(into) = replaced_by(p) {
            return Err(FhirError::new(
                422,
                IssueType::BusinessRule,
                format!("the {what} Patient/{id} was already merged into Patient/{into}"),
            ));
        }
    }
    let mut result = match &req.result {
        Some(r) => {
            if r["id"].as_str().is_some_and(|i| i != target) {
                return Err(FhirError::bad_request(
                    "result-patient must be the target Patient (its id)",
                ));
            }
            let mut r = r.clone();
            r["id"] = json!(target);
            r
        }
        None => tgt.clone(),
    };
    add_link(&mut result, &source, "replaces");
    let src_person = crate::identity::person_of_patient(&*tx, &source)?;
    let tgt_person = crate::identity::person_of_patient(&*tx, &target)?;
    let joined = src_person != tgt_person;
    if req.preview {
        let mut changed = referrers(&*tx, &src_person, &source)?.len();
        if joined {
            changed += referrers(&*tx, &tgt_person, &source)?.len();
        }
        return Ok(Merged {
            target: result,
            changed,
            joined,
        });
    }
    if joined {
        crate::identity::link(tx, &target, &source)?;
    }
    let person = crate::identity::person_of_patient(&*tx, &target)?;
    let mut written = Vec::new();
    for (s, mut body) in referrers(&*tx, &person, &source)? {
        repoint(&mut body, &source, &target);
        written.push(put(tx, &s.resource_type, &s.id, body)?);
    }
    let changed = written.len();
    src["active"] = json!(false);
    add_link(&mut src, &target, "replaced-by");
    written.push(put(tx, "Patient", &source, src)?);
    written.push(put(tx, "Patient", &target, result.clone())?);
    let mut prov = provenance(MERGE_POLICY, who, &written, &format!("Patient/{source}"));
    if joined {
        prov["extension"] = json!([{"url": JOINED_PERSONS, "valueBoolean": true}]);
    }
    put(tx, "Provenance", &crate::new_id(), prov)?;
    let target_now = tx
        .current("Patient", &target)?
        .and_then(|s| s.json())
        .unwrap_or(result);
    Ok(Merged {
        target: target_now,
        changed,
        joined,
    })
}

/// The newest record of a merge of `source` into `target`.
fn merge_record(r: &dyn StoreRead, source: &str, target: &str) -> Result<Option<Value>> {
    let q = issho_search::parse(
        Some("Provenance"),
        &[("entity".into(), format!("Patient/{source}"))],
        true,
    )
    .map_err(|issues| FhirError {
        status: 500,
        issues,
    })?;
    let into = format!("Patient/{target}/_history/");
    let mut found: Vec<Value> = r
        .current_by_rids(&r.search(&q)?)?
        .into_iter()
        .filter_map(|s| s.json())
        .filter(|p| {
            p["policy"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x == MERGE_POLICY)
                && p["target"].as_array().into_iter().flatten().any(|t| {
                    t["reference"]
                        .as_str()
                        .is_some_and(|x| x.starts_with(&into))
                })
        })
        .collect();
    found.sort_by(|a, b| a["recorded"].as_str().cmp(&b["recorded"].as_str()));
    Ok(found.pop())
}

/// The unmerge of `source` inside one transaction: the number of resources given back.
fn unmerge_in(tx: &mut dyn StoreTx, source: &str, who: &str) -> Result<(usize, Value)> {
    let (_, src) = resolve(&*tx, &Who::Id(source.to_string()), "source")?;
    let Some(target) = replaced_by(&src) else {
        return Err(FhirError::new(
            422,
            IssueType::BusinessRule,
            format!("Patient/{source} was not merged into another Patient"),
        ));
    };
    let Some(record) = merge_record(&*tx, source, &target)? else {
        return Err(FhirError::new(
            422,
            IssueType::BusinessRule,
            format!("no record of the merge of Patient/{source} into Patient/{target} is kept"),
        ));
    };
    let mut written = Vec::new();
    let mut given_back = 0;
    for t in record["target"].as_array().into_iter().flatten() {
        let Some(r) = t["reference"].as_str() else {
            continue;
        };
        let parts: Vec<&str> = r.split('/').collect();
        let [rt, id, "_history", v] = parts[..] else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        let Some(cur) = tx.current(rt, id)?.filter(|s| !s.is_deleted()) else {
            continue;
        };
        let before = if cur.version == v && v > 1 {
            tx.version(rt, id, v - 1)?.and_then(|s| s.json())
        } else {
            None
        };
        let body = match before {
            // Unchanged since the merge: as it was before.
            Some(b) => b,
            // Changed since: only what the merge changed is turned back.
            None => {
                let Some(mut b) = cur.json() else { continue };
                if rt == "Patient" && id == source {
                    drop_link(&mut b, &target, "replaced-by");
                    if let Some(o) = b.as_object_mut() {
                        o.remove("active");
                    }
                } else if rt == "Patient" && id == target {
                    drop_link(&mut b, source, "replaces");
                } else {
                    repoint(&mut b, &target, source);
                }
                b
            }
        };
        if rt != "Patient" {
            given_back += 1;
        }
        written.push(put(tx, rt, id, body)?);
    }
    if record["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["url"] == JOINED_PERSONS && e["valueBoolean"] == true)
        && crate::identity::person_of_patient(&*tx, source)?
            == crate::identity::person_of_patient(&*tx, &target)?
    {
        crate::identity::unlink(tx, source)?;
    }
    let merge_ref = format!("Provenance/{}", record["id"].as_str().unwrap_or_default());
    if !written.is_empty() {
        let prov = provenance(UNMERGE_POLICY, who, &written, &merge_ref);
        put(tx, "Provenance", &crate::new_id(), prov)?;
    }
    let now = tx
        .current("Patient", source)?
        .and_then(|s| s.json())
        .unwrap_or_default();
    Ok((given_back, now))
}

impl Engine {
    /// `POST Patient/$merge` (R5's parameters: `source-patient`/`-identifier`,
    /// `target-patient`/`-identifier`, `result-patient`, `preview`): returns Parameters with
    /// `input`, `outcome` and `result` (the target Patient as it is, or would be).
    pub fn merge_patients(&self, ctx: &AccessContext, input: &Value) -> Result<Value> {
        let named = request(input).ok();
        let label = |w: &Who| match w {
            Who::Id(id) => Some(format!("Patient/{id}")),
            Who::Identifiers(_) => None,
        };
        let target = named.as_ref().and_then(|r| label(&r.target));
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            target,
            Some("Patient/$merge".into()),
            || {
                let req = request(input)?;
                let permit = self.registrar(ctx, "merging Patients")?;
                let who = ctx.who();
                let preview = req.preview;
                let m = self.write(&permit, move |tx| {
                    crate::params::CARE_TOUCHED.with(|c| c.set(true));
                    merge_in(tx, &req, &who)
                })??;
                let text = match (preview, m.joined) {
                    (true, _) => format!(
                        "preview: {} resources would refer to the target instead of the source{}; nothing was changed",
                        m.changed,
                        if m.joined { ", and two persons would become one" } else { "" }
                    ),
                    (false, j) => format!(
                        "merged: {} resources now refer to the target{}; reversed by Patient/[source]/$unmerge",
                        m.changed,
                        if j { ", and two persons became one" } else { "" }
                    ),
                };
                Ok(json!({"resourceType": "Parameters", "parameter": [
                    {"name": "input", "resource": input},
                    {"name": "outcome", "resource": issho_model::operation_outcome(&[Issue::information(text)])},
                    {"name": "result", "resource": m.target},
                ]}))
            },
            |out: &Value, t| {
                for p in out["parameter"].as_array().into_iter().flatten() {
                    if let Some(id) = p["resource"]["id"].as_str()
                        && p["resource"]["resourceType"] == "Patient"
                    {
                        t.patients.push(format!("Patient/{id}"));
                        t.entities.push(format!("Patient/{id}"));
                    }
                }
                if let Some(Who::Id(s)) = named.as_ref().map(|r| r.source.clone()) {
                    t.patients.push(format!("Patient/{s}"));
                    t.entities.push(format!("Patient/{s}"));
                }
            },
        )
    }

    /// `POST Patient/[id]/$unmerge`: reverses the newest merge of this (source) Patient;
    /// returns Parameters with `outcome` and `result` (the source Patient).
    pub fn unmerge_patient(&self, ctx: &AccessContext, source: &str) -> Result<Value> {
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            Some(format!("Patient/{source}")),
            Some(format!("Patient/{source}/$unmerge")),
            || {
                let permit = self.registrar(ctx, "merging Patients")?;
                let (who, id) = (ctx.who(), source.to_string());
                let (n, patient) = self.write(&permit, move |tx| {
                    crate::params::CARE_TOUCHED.with(|c| c.set(true));
                    unmerge_in(tx, &id, &who)
                })??;
                Ok(json!({"resourceType": "Parameters", "parameter": [
                    {"name": "outcome", "resource": issho_model::operation_outcome(&[Issue::information(
                        format!("unmerged: {n} resources refer to Patient/{source} again"))])},
                    {"name": "result", "resource": patient},
                ]}))
            },
            |_, _| {},
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repoint_turns_plain_and_versioned_references_only() {
        let mut v = json!({"subject": {"reference": "Patient/a"},
            "performer": [{"reference": "Patient/a/_history/3"}, {"reference": "Patient/ab"}],
            "note": [{"text": "Patient/a"}], "focus": [{"reference": "Practitioner/a"}]});
        assert_eq!(repoint(&mut v, "a", "b"), 2);
        assert_eq!(v["subject"]["reference"], "Patient/b");
        assert_eq!(v["performer"][0]["reference"], "Patient/b");
        assert_eq!(v["performer"][1]["reference"], "Patient/ab");
        assert_eq!(v["note"][0]["text"], "Patient/a");
        assert_eq!(v["focus"][0]["reference"], "Practitioner/a");
    }

    #[test]
    fn links_are_added_once_and_dropped() {
        let mut p = json!({"resourceType": "Patient"});
        add_link(&mut p, "t", "replaces");
        add_link(&mut p, "t", "replaces");
        assert_eq!(p["link"].as_array().unwrap().len(), 1);
        assert_eq!(replaced_by(&p), None);
        add_link(&mut p, "u", "replaced-by");
        assert_eq!(replaced_by(&p).as_deref(), Some("u"));
        drop_link(&mut p, "t", "replaces");
        drop_link(&mut p, "u", "replaced-by");
        assert!(p.get("link").is_none());
    }

    #[test]
    fn the_records_of_merges_are_server_kept() {
        let p = provenance(
            MERGE_POLICY,
            "x",
            &["Patient/a/_history/2".into()],
            "Patient/b",
        );
        assert!(server_kept("Provenance", &p));
        assert!(!server_kept(
            "Provenance",
            &json!({"policy": ["urn:other"]})
        ));
        assert!(!server_kept("Communication", &p));
    }
}
