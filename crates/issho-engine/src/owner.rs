//! Whose record a resource belongs to: the one ownership rule.
//!
//! Every write stores the resource's person (the store's `person` column, the distribution
//! key) by this rule, and every access check — read, search, chains, `_has`, includes, paging,
//! history, export and the writes' own guards — compares that person with the caller's reach.
//! There is no second notion of "within reach".
//!
//! The rule, over the resource's JSON (contained resources, Bundle entries and extensions
//! included — any `Reference` anywhere counts):
//! - a Patient belongs to its person: itself, or the person it was linked into by a
//!   certain match or a registrar (`identity.rs`; its stored key, never its own references:
//!   writing `Patient.link` links nobody);
//! - a literal reference `Patient/X` names X's person (X itself when X is not stored); a reference to another resource
//!   (`Encounter/E`, `Observation/O`, `Device/D`…) names that resource's own person, if it has
//!   one (one hop, as stored);
//! - a resource naming exactly one person belongs to that person;
//! - a resource naming several persons, holding a patient's data inline (a contained or
//!   entry Patient), or referring to a resource that is itself [`Owner::Restricted`], is
//!   [`Owner::Restricted`]: patient data no single person's reach covers, visible only to
//!   callers who see everything;
//! - a resource naming no person is [`Owner::Restricted`] when its type is always a patient's
//!   data (the types of the R4 Patient compartment) or when it refers to a resource not stored
//!   (yet) of a type that can hold a patient's data (whose it will be is unknown), and
//!   [`Owner::Shared`] otherwise (Organization, Practitioner, Medication, a Device assigned to
//!   nobody…). A transaction keys its entries again by its final state ([`rekey_written`]).
//!
//! So the types that can hold a patient's data are not listed by hand: any resource of any
//! type that refers to a person's data belongs to that person's record.

use crate::Result;
use serde_json::Value;
use std::collections::BTreeSet;

/// The stored person of a restricted resource: never a FHIR id (ids cannot contain `#`).
pub(crate) const RESTRICTED: &str = "#restricted";

/// The version of this rule; stores keyed by an older rule are re-keyed at open.
/// 3: a Bundle can hold a patient's data (its entries are whole resources), so a reference to
/// one not stored makes the referrer nobody's alone, as for the other such types.
pub(crate) const RULE_VERSION: &str = "3";

/// Whose record a resource belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Not a person's data.
    Shared,
    /// The record of this person (a Patient id).
    Person(String),
    /// Patient data that no single person's reach covers.
    Restricted,
}

impl Owner {
    /// The value of the store's `person` column.
    pub fn column(&self) -> Option<&str> {
        match self {
            Owner::Shared => None,
            Owner::Person(p) => Some(p),
            Owner::Restricted => Some(RESTRICTED),
        }
    }
}

/// True when every resource of `rt` is a patient's data (the R4 tables decide).
pub(crate) fn always_personal(rt: &str) -> bool {
    issho_model::r4().always_personal(rt)
}

/// True when resources of `rt` can hold a patient's data (the R4 tables decide).
pub(crate) fn may_hold_patient_data(rt: &str) -> bool {
    issho_model::r4().may_hold_patient_data(rt)
}

/// Looks up the stored person of a referenced resource: `None` when it is not stored,
/// `Some(person column)` otherwise.
pub(crate) type Lookup<'a> = dyn FnMut(&str, &str) -> Result<Option<Option<String>>> + 'a;

/// What the walk over a resource found.
#[derive(Default)]
struct Found {
    refs: BTreeSet<(String, String)>,
    inline_patient: bool,
}

fn walk(v: &Value, top: bool, out: &mut Found) {
    match v {
        Value::Object(m) => {
            if !top && m.get("resourceType").and_then(Value::as_str) == Some("Patient") {
                out.inline_patient = true;
            }
            for (k, child) in m {
                match (k.as_str(), child) {
                    ("reference", Value::String(r)) => {
                        if let Some((t, id)) = literal(r) {
                            out.refs.insert((t.to_string(), id.to_string()));
                        }
                    }
                    // Values with no references inside.
                    ("text" | "meta" | "id", _) if top => {}
                    (_, Value::Object(_) | Value::Array(_)) => walk(child, false, out),
                    _ => {}
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, false, out)),
        _ => {}
    }
}

/// A relative literal reference `Type/id` (or `Type/id/_history/v`) to a resource of this
/// server; absolute URLs, `urn:` and `#contained` references are not (as in the search index).
fn literal(r: &str) -> Option<(&str, &str)> {
    if r.contains(':') || r.starts_with('#') {
        return None;
    }
    let mut parts = r.split('/');
    let (t, id) = (parts.next()?, parts.next()?);
    match parts.next() {
        None => {}
        Some("_history") if parts.next().is_some() && parts.next().is_none() => {}
        _ => return None,
    }
    (issho_model::r4().is_resource_type(t) && crate::valid_id(id)).then_some((t, id))
}

/// Every relative literal reference (`Type`, `id`) anywhere in `body`.
pub(crate) fn literal_refs(body: &Value) -> BTreeSet<(String, String)> {
    let mut found = Found::default();
    walk(body, true, &mut found);
    found.refs
}

/// The owner of `body` (a resource of type `rt` whose id is set), looking up referenced
/// resources' persons with `lookup`.
pub(crate) fn owner_of(rt: &str, body: &Value, lookup: &mut Lookup<'_>) -> Result<Owner> {
    if rt == "Patient" {
        // Its person: the stored key (a linked Patient shares its person's), or itself.
        return Ok(match body.get("id").and_then(Value::as_str) {
            Some(id) => Owner::Person(patient_person(lookup, id)?),
            None => Owner::Restricted,
        });
    }
    let mut found = Found::default();
    walk(body, true, &mut found);
    let me = body.get("id").and_then(Value::as_str).unwrap_or_default();
    let mut persons: BTreeSet<String> = BTreeSet::new();
    let mut restricted = found.inline_patient;
    // A reference to a resource not (yet) stored, of a type that can hold a patient's data:
    // whose it will be is unknown, so the referrer is not shared data.
    let mut unknown = false;
    for (t, id) in &found.refs {
        if t == "Patient" {
            persons.insert(patient_person(lookup, id)?);
        } else if !(t == rt && id == me) {
            match lookup(t, id)? {
                Some(Some(p)) if p == RESTRICTED => restricted = true,
                Some(Some(p)) => {
                    persons.insert(p);
                }
                Some(None) => {}
                None => unknown |= may_hold_patient_data(t),
            }
        }
    }
    Ok(match persons.len() {
        _ if restricted => Owner::Restricted,
        1 => Owner::Person(persons.into_iter().next().unwrap_or_default()),
        0 if !always_personal(rt) && !unknown => Owner::Shared,
        _ => Owner::Restricted,
    })
}

/// The person of `Patient/id`: the stored key of a stored Patient (the person it was linked
/// into, `identity.rs`), otherwise the id itself.
fn patient_person(lookup: &mut Lookup<'_>, id: &str) -> Result<String> {
    Ok(match lookup("Patient", id)? {
        Some(Some(p)) if p != RESTRICTED => p,
        _ => id.to_string(),
    })
}

/// [`owner_of`] over a store snapshot (the transaction writing `body`, or a reader).
pub(crate) fn owner_in(r: &dyn issho_store::StoreRead, rt: &str, body: &Value) -> Result<Owner> {
    owner_of(rt, body, &mut |t, id| Ok(r.person(t, id)?))
}

/// [`owner_in`] for a resource that has never been stored (a create with a new id): a new
/// Patient has no stored key to keep, so it is its own person — the rule's answer without
/// asking the store.
pub(crate) fn owner_of_new(
    r: &dyn issho_store::StoreRead,
    rt: &str,
    body: &Value,
) -> Result<Owner> {
    if rt == "Patient" {
        return owner_of(rt, body, &mut |_, _| Ok(None));
    }
    owner_in(r, rt, body)
}

/// After every entry of a transaction is written: the entries keyed as shared or restricted
/// (possibly for want of a resource written later in the same transaction) are keyed again by
/// the transaction's final state, until nothing changes (at most four rounds: references
/// within one transaction are rarely deeper).
pub(crate) fn rekey_written(
    tx: &mut dyn issho_store::StoreTx,
    written: &[(String, String)],
) -> Result<()> {
    // Those keyed to a person already stay so (a later link re-keys in the store itself).
    let persons = tx.persons_of(written)?;
    let open: Vec<&(String, String)> = written
        .iter()
        .zip(persons)
        .filter(|(_, p)| {
            matches!(p, Some(None)) || p.as_ref().is_some_and(|p| p.as_deref() == Some(RESTRICTED))
        })
        .map(|(w, _)| w)
        .collect();
    for _ in 0..4 {
        let mut changed = false;
        for (rt, id) in &open {
            let Some(s) = tx.current(rt, id)? else {
                continue;
            };
            if s.person.as_deref().is_some_and(|p| p != RESTRICTED) {
                continue;
            }
            let Some(body) = s.json() else { continue };
            let owner = owner_in(&*tx, rt, &body)?;
            if owner.column() != s.person.as_deref() {
                tx.set_person(s.rid, owner.column())?;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(())
}

impl crate::Engine {
    /// Re-key every current resource by this rule when the store was keyed by an earlier one
    /// (in `rid` order, 1,000 resources per transaction; then the rule's version is recorded).
    pub(crate) fn rekey_persons(&self) -> Result<()> {
        const KEY: &str = "person_rule";
        let permit = self.system_permit("person-rule")?;
        let r = self.store.reader(&permit)?;
        if r.meta(KEY)?.as_deref() == Some(RULE_VERSION) {
            return Ok(());
        }
        let max = r.max_rid()?;
        drop(r);
        let mut after = 0;
        let mut changed = 0usize;
        while after < max {
            let upto = (after + 1000).min(max);
            let n = issho_store::write(&*self.store, &permit, move |tx| -> Result<usize> {
                let rids: Vec<i64> = (after + 1..=upto).collect();
                let mut n = 0;
                for s in tx.current_by_rids(&rids)? {
                    let Some(body) = s.json() else { continue };
                    let owner = owner_in(tx, &s.resource_type, &body)?;
                    if owner.column() != s.person.as_deref() {
                        tx.set_person(s.rid, owner.column())?;
                        n += 1;
                    }
                }
                Ok(n)
            })??;
            changed += n;
            after = upto;
        }
        issho_store::write(&*self.store, &permit, |tx| tx.set_meta(KEY, RULE_VERSION))??;
        if changed > 0 {
            tracing::info!(changed, "re-keyed resources by the ownership rule");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none(_: &str, _: &str) -> Result<Option<Option<String>>> {
        Ok(None)
    }

    #[test]
    fn one_person_several_or_none() {
        let own = |rt: &str, v: Value| owner_of(rt, &v, &mut none).unwrap();
        let c = json!({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p1"},
            "asserter": {"reference": "Patient/p1"}});
        assert_eq!(own("Condition", c), Owner::Person("p1".into()));
        // Written into another person's record while naming oneself: nobody's alone.
        let c = json!({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p2"},
            "asserter": {"reference": "Patient/p1"}});
        assert_eq!(own("Condition", c), Owner::Restricted);
        assert_eq!(
            own(
                "Patient",
                json!({"resourceType": "Patient", "id": "me", "link": [{"other": {"reference": "Patient/x"}}]})
            ),
            Owner::Person("me".into())
        );
        // Types outside the compartment: a Task for a patient is theirs; without one, shared.
        let t = json!({"resourceType": "Task", "id": "t", "for": {"reference": "Patient/p3"}});
        assert_eq!(own("Task", t), Owner::Person("p3".into()));
        assert_eq!(
            own(
                "Organization",
                json!({"resourceType": "Organization", "id": "o"})
            ),
            Owner::Shared
        );
        // A compartment type with no patient is still patient data.
        let o =
            json!({"resourceType": "Observation", "id": "o", "subject": {"reference": "Group/g"}});
        assert_eq!(own("Observation", o), Owner::Restricted);
        // Inline patient data, extensions and absolute URLs.
        let b = json!({"resourceType": "Bundle", "id": "b", "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}]});
        assert_eq!(own("Bundle", b), Owner::Restricted);
        let d = json!({"resourceType": "Device", "id": "d", "extension": [{"url": "u", "valueReference": {"reference": "Patient/p4"}}]});
        assert_eq!(own("Device", d), Owner::Person("p4".into()));
        let d = json!({"resourceType": "Device", "id": "d", "patient": {"reference": "http://elsewhere/fhir/Patient/p4"}});
        assert_eq!(own("Device", d), Owner::Shared);
    }

    #[test]
    fn references_to_other_records_count_one_hop() {
        let mut lookup = |t: &str, id: &str| -> Result<Option<Option<String>>> {
            Ok(match (t, id) {
                ("Observation", "o-p2") => Some(Some("p2".into())),
                ("Group", "g") => Some(Some(RESTRICTED.into())),
                ("Practitioner", _) => Some(None),
                _ => None,
            })
        };
        let task = json!({"resourceType": "Task", "id": "t", "focus": {"reference": "Observation/o-p2"},
            "owner": {"reference": "Practitioner/d"}});
        assert_eq!(
            owner_of("Task", &task, &mut lookup).unwrap(),
            Owner::Person("p2".into())
        );
        let obs = json!({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p1"},
            "hasMember": [{"reference": "Observation/o-p2"}]});
        assert_eq!(
            owner_of("Observation", &obs, &mut lookup).unwrap(),
            Owner::Restricted
        );
        // A reference to what is not stored yet, of a type that can hold a patient's data:
        // not shared (whose it will be is unknown); to an organization: still shared.
        let task = json!({"resourceType": "Task", "id": "t2", "focus": {"reference": "Observation/later"}});
        assert_eq!(
            owner_of("Task", &task, &mut lookup).unwrap(),
            Owner::Restricted
        );
        let bin = json!({"resourceType": "Binary", "id": "b", "securityContext": {"reference": "DocumentReference/later"}});
        assert_eq!(
            owner_of("Binary", &bin, &mut lookup).unwrap(),
            Owner::Restricted
        );
        let role = json!({"resourceType": "PractitionerRole", "id": "r", "organization": {"reference": "Organization/later"}});
        assert_eq!(
            owner_of("PractitionerRole", &role, &mut lookup).unwrap(),
            Owner::Shared
        );
        assert!(!may_hold_patient_data("Organization") && !may_hold_patient_data("Practitioner"));
        assert!(may_hold_patient_data("Binary") && may_hold_patient_data("Task"));
        let flag = json!({"resourceType": "Flag", "id": "f", "subject": {"reference": "Group/g"}});
        assert_eq!(
            owner_of("Flag", &flag, &mut lookup).unwrap(),
            Owner::Restricted
        );
    }

    /// Invariant: every resource type with an element that may refer to a Patient (by the R4
    /// tables' reference targets) puts a resource naming one patient there into that
    /// patient's record.
    #[test]
    fn every_type_that_can_refer_to_a_patient_is_keyed_by_it() {
        let r4 = issho_model::r4();
        let mut checked = 0;
        for rt in r4.resource_types() {
            if rt == "Patient" {
                continue;
            }
            let td = r4.type_def(rt).unwrap();
            for e in &td.elements {
                let refers = e.types.iter().any(|t| {
                    t.code == "Reference"
                        && (t.targets.is_empty()
                            || t.targets.iter().any(|x| x == "Patient" || x == "Resource"))
                });
                if !refers || e.is_choice {
                    continue;
                }
                // The reference at its place, nested through the backbone elements above it.
                let mut v = json!({"reference": "Patient/px"});
                let segs: Vec<&str> = e.path.split('.').collect();
                for i in (0..segs.len()).rev() {
                    let path = segs[..=i].join(".");
                    let def = td.element(&path).unwrap();
                    if def.is_array() {
                        v = json!([v]);
                    }
                    v = json!({segs[i]: v});
                }
                let mut body = v;
                body["resourceType"] = json!(rt);
                body["id"] = json!("x");
                assert_eq!(
                    owner_of(rt, &body, &mut none).unwrap(),
                    Owner::Person("px".into()),
                    "{rt}.{}",
                    e.name
                );
                checked += 1;
            }
        }
        assert!(checked >= 200, "{checked}");
    }
}
