//! The identity operations: `Patient/$match` (R4), and a registrar's `Patient/[id]/$link` and
//! `Patient/[id]/$unlink` (issho's), each through the gate and recorded in the audit trail.

use crate::*;
use issho_access::{Reach, Role};
use issho_identity::{Grade, MEMBER_ID, Traits, compare};
use issho_search::{Filter, SearchQuery, Test};
use issho_store::StoreRead;
use serde_json::json;
use std::collections::BTreeMap;

/// The R4 extension on `Bundle.entry.search` that grades a match.
pub const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";

/// Candidates looked at per query of `$match` (member ID, birth date, family name).
const CANDIDATES: usize = 500;

/// The most matches `$match` returns (and its default).
const MAX_MATCHES: usize = 100;
const DEFAULT_MATCHES: usize = 10;

/// One parameter of a Parameters resource.
fn parameter<'a>(input: &'a Value, name: &str) -> Option<&'a Value> {
    input["parameter"]
        .as_array()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
}

fn parameters(input: &Value) -> Result<()> {
    if input["resourceType"].as_str() != Some("Parameters") {
        return Err(FhirError::bad_request(
            "the operation takes a Parameters resource",
        ));
    }
    Ok(())
}

/// `other` of `$link`: `valueReference` (`Patient/[id]`) or `valueString` (`Patient/[id]` or
/// the id).
fn other_patient(input: &Value) -> Result<String> {
    let p = parameter(input, "other")
        .ok_or_else(|| FhirError::bad_request("name the other Patient in the parameter 'other'"))?;
    let v = p["valueReference"]["reference"]
        .as_str()
        .or_else(|| p["valueString"].as_str())
        .unwrap_or_default();
    let id = v.strip_prefix("Patient/").unwrap_or(v);
    if !crate::valid_id(id) || id.contains('/') {
        return Err(FhirError::bad_request(format!(
            "'other' must name a Patient of this server (Patient/[id]), not '{v}'"
        )));
    }
    Ok(id.to_string())
}

impl Engine {
    /// `POST Patient/$match`: the Patients (of those the caller may search) that may be the
    /// person described by the `resource` parameter, graded and scored (issho-identity), best
    /// first. `onlyCertainMatches`: only certain matches, and none when they are of more than
    /// one person; `count`: at most this many (default 10, at most 100).
    pub fn match_patients(&self, ctx: &AccessContext, input: &Value, base: &str) -> Result<Value> {
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            None,
            Some("Patient/$match".into()),
            || self.match_unaudited(ctx, input, base),
            |b: &Value, t| {
                for e in b["entry"].as_array().into_iter().flatten() {
                    if let Some(id) = e["resource"]["id"].as_str() {
                        t.patients.push(format!("Patient/{id}"));
                        t.entities.push(format!("Patient/{id}"));
                    }
                }
            },
        )
    }

    fn match_unaudited(&self, ctx: &AccessContext, input: &Value, base: &str) -> Result<Value> {
        parameters(input)?;
        let resource = parameter(input, "resource")
            .map(|p| &p["resource"])
            .filter(|r| r["resourceType"].as_str() == Some("Patient"))
            .ok_or_else(|| {
                FhirError::bad_request("$match needs a Patient in the parameter 'resource'")
            })?;
        let only_certain = match parameter(input, "onlyCertainMatches") {
            None => false,
            Some(p) => p["valueBoolean"].as_bool().ok_or_else(|| {
                FhirError::bad_request("onlyCertainMatches must be a valueBoolean")
            })?,
        };
        let count = match parameter(input, "count") {
            None => DEFAULT_MATCHES,
            Some(p) => match p["valueInteger"].as_u64() {
                Some(n) if n >= 1 => (n as usize).min(MAX_MATCHES),
                _ => {
                    return Err(FhirError::bad_request(
                        "count must be a valueInteger of at least 1",
                    ));
                }
            },
        };
        let r = self.snapshot(ctx, Action::Search, Some("Patient"))?;
        let view = self.view(ctx, Action::Search, Some("Patient"), &*r)?;
        let me = Traits::of(resource);
        if me.member_ids.is_empty()
            && me.birth_date.is_none()
            && me.kana.is_empty()
            && me.kanji.is_empty()
        {
            return Err(FhirError::bad_request(
                "$match needs at least an insurance member ID, a birth date or a name",
            ));
        }
        let mut found: BTreeMap<String, Value> = BTreeMap::new();
        for rid_set in self.match_candidates(&*r, &view, resource, &me)? {
            for s in r.current_by_rids(&rid_set)? {
                if let Some(v) = s.json() {
                    found.entry(s.id.clone()).or_insert(v);
                }
            }
        }
        let mut scored: Vec<(issho_identity::Score, String, Value)> = found
            .into_iter()
            .map(|(id, v)| (compare(&me, &Traits::of(&v)), id, v))
            .filter(|(s, _, _)| s.grade != Grade::CertainlyNot)
            .collect();
        scored.sort_by(|a, b| {
            (a.0.grade, -a.0.score, &a.1)
                .partial_cmp(&(b.0.grade, -b.0.score, &b.1))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut warning = None;
        if only_certain {
            scored.retain(|(s, _, _)| s.grade == Grade::Certain);
            let persons: std::collections::BTreeSet<String> = scored
                .iter()
                .map(|(_, id, _)| crate::identity::person_of_patient(&*r, id))
                .collect::<Result<_>>()?;
            if persons.len() > 1 {
                scored.clear();
                warning = Some(
                    "certain matches of more than one person: none is returned with onlyCertainMatches",
                );
            }
        }
        scored.truncate(count);
        let mut entries: Vec<Value> = scored
            .into_iter()
            .map(|(s, id, v)| {
                json!({
                    "fullUrl": format!("{base}/Patient/{id}"),
                    "resource": v,
                    "search": {
                        "extension": [{"url": MATCH_GRADE, "valueCode": s.grade.code()}],
                        "mode": "match",
                        "score": s.score,
                    }
                })
            })
            .collect();
        let total = entries.len();
        if let Some(w) = warning {
            entries.push(json!({
                "resource": issho_model::operation_outcome(&[Issue::warning(IssueType::MultipleMatches, w)]),
                "search": {"mode": "outcome"}
            }));
        }
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "entry": entries,
        }))
    }

    /// The row keys of candidate Patients: by member ID (the Persons' normalised identifiers
    /// and the Patients' own), by birth date, and by family name when no birth date is given
    /// — each query with the caller's view.
    fn match_candidates(
        &self,
        r: &dyn StoreRead,
        view: &crate::view::View,
        resource: &Value,
        me: &Traits,
    ) -> Result<Vec<Vec<i64>>> {
        let reg = self.registry();
        let access = view.filters(&reg, "Patient")?;
        let run = |pairs: Vec<(String, String)>, extra: Option<Filter>| -> Result<Vec<i64>> {
            let mut q =
                issho_search::parse(Some("Patient"), &pairs, true).map_err(|issues| FhirError {
                    status: 400,
                    issues,
                })?;
            q.filters.extend(extra);
            q.filters.extend(access.iter().cloned());
            q.count = Some(CANDIDATES);
            Ok(r.search(&q)?)
        };
        let mut out = Vec::new();
        for m in &me.member_ids {
            // The persons whose Person carries the member ID (any spelling of it).
            let q = SearchQuery {
                resource_type: Some("Person".into()),
                count: Some(CANDIDATES),
                ..issho_search::parse(
                    Some("Person"),
                    &[("identifier".into(), format!("{MEMBER_ID}|{m}"))],
                    true,
                )
                .map_err(|issues| FhirError {
                    status: 400,
                    issues,
                })?
            };
            let persons = r.persons_by_rids(&r.search(&q)?)?;
            if !persons.is_empty() {
                out.push(run(
                    Vec::new(),
                    Some(Filter {
                        name: "_person".into(),
                        test: Test::PersonIn(persons),
                    }),
                )?);
            }
        }
        for i in resource["identifier"].as_array().into_iter().flatten() {
            if let (Some(MEMBER_ID), Some(v)) = (i["system"].as_str(), i["value"].as_str()) {
                out.push(run(
                    vec![("identifier".into(), format!("{MEMBER_ID}|{v}"))],
                    None,
                )?);
            }
        }
        match resource["birthDate"].as_str() {
            Some(d) if issho_model::instant::parse_range(d).is_some() => {
                out.push(run(vec![("birthdate".into(), d.to_string())], None)?);
            }
            _ => {
                for n in resource["name"].as_array().into_iter().flatten() {
                    if let Some(f) = n["family"].as_str().filter(|f| !f.trim().is_empty()) {
                        out.push(run(vec![("family".into(), f.to_string())], None)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// A registrar's permit: registrars and administrators (and the server's own principals)
    /// with the whole store in reach. Clinicians and patients never link, unlink or merge
    /// (`task` names what was refused).
    pub(crate) fn registrar(
        &self,
        ctx: &AccessContext,
        task: &str,
    ) -> Result<issho_access::Permit> {
        let permit = self.gate.check(ctx, Action::Update, Some("Patient"))?;
        let role_ok = ctx
            .grant()
            .is_none_or(|g| matches!(g.role, Role::Administrator | Role::Registrar));
        if *permit.reach() != Reach::All || !role_ok {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!("{task} is a registrar's task (registrars and administrators)"),
            ));
        }
        Ok(permit)
    }

    /// The Person of `patient_id`'s person after a link or unlink (an OperationOutcome when
    /// it has none).
    fn person_of(&self, permit: &issho_access::Permit, patient_id: &str) -> Result<Value> {
        let r = self.store.reader(permit)?;
        let person = crate::identity::person_of_patient(&*r, patient_id)?;
        let q = SearchQuery {
            resource_type: Some("Person".into()),
            filters: vec![Filter {
                name: "_person".into(),
                test: Test::PersonIn(vec![person]),
            }],
            ..Default::default()
        };
        let rids = r.search(&q)?;
        Ok(r.current_by_rids(&rids)?
            .into_iter()
            .next()
            .and_then(|s| s.json())
            .unwrap_or_else(|| {
                issho_model::operation_outcome(&[Issue::information(format!(
                    "Patient/{patient_id} is a person of its own"
                ))])
            }))
    }

    /// `POST Patient/[id]/$link` (`other`: `Patient/[id]`): a registrar says the two Patients
    /// are one person; `other`'s person joins this one's, with every resource of its record.
    /// Returns the Person. Reversed by `$unlink`.
    pub fn link_patients(
        &self,
        ctx: &AccessContext,
        patient_id: &str,
        input: &Value,
    ) -> Result<Value> {
        let other = other_patient(input).ok();
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            Some(format!("Patient/{patient_id}")),
            Some(format!("Patient/{patient_id}/$link")),
            || {
                parameters(input)?;
                let other = other_patient(input)?;
                let permit = self.registrar(ctx, "linking and unlinking persons")?;
                let (a, b) = (patient_id.to_string(), other.clone());
                self.write(&permit, move |tx| {
                    crate::params::CARE_TOUCHED.with(|c| c.set(true));
                    crate::identity::link(tx, &a, &b)
                })??;
                self.person_of(&permit, patient_id)
            },
            |_, t| {
                if let Some(o) = &other {
                    t.patients.push(format!("Patient/{o}"));
                    t.entities.push(format!("Patient/{o}"));
                }
            },
        )
    }

    /// `POST Patient/[id]/$unlink`: a registrar takes this Patient out of its person (noted as
    /// someone else, so no match links it again); the records are keyed again by the
    /// ownership rule. Returns the Patient's own Person.
    pub fn unlink_patient(&self, ctx: &AccessContext, patient_id: &str) -> Result<Value> {
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            Some(format!("Patient/{patient_id}")),
            Some(format!("Patient/{patient_id}/$unlink")),
            || {
                let permit = self.registrar(ctx, "linking and unlinking persons")?;
                let id = patient_id.to_string();
                self.write(&permit, move |tx| {
                    crate::params::CARE_TOUCHED.with(|c| c.set(true));
                    crate::identity::unlink(tx, &id)
                })??;
                self.person_of(&permit, patient_id)
            },
            |_, _| {},
        )
    }
}
