//! A person's access log (`Patient/[id]/$access-log`): who read or changed their record,
//! when and why — for that person (reduced to their own data) and for administrators (whole).

use crate::*;
use issho_access::Action;

impl Engine {
    /// The audit trail's records about one patient, newest first: a person's own access log
    /// (who looked at their record, when, why). The caller must be able to read that Patient.
    pub fn access_log(
        &self,
        ctx: &AccessContext,
        patient_id: &str,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>> {
        // A person's access log is theirs (it names only their data) and the
        // administrators' (auditors see the records whole); clinicians do not read it.
        let auditor = self.gate.check(ctx, Action::Admin, None).is_ok();
        // The person's: any of their Patients (linked at several institutions) asks.
        let (person, mine) = {
            let permit = self.system_permit("access log")?;
            let r = self.store.reader(&permit)?;
            let person = crate::identity::person_of_patient(&*r, patient_id)?;
            let mut mine = crate::identity::members(&*r, &person)?;
            if !mine.iter().any(|m| m == patient_id) {
                mine.push(patient_id.to_string());
            }
            (person, mine)
        };
        let own = ctx.grant().is_some_and(|g| {
            g.role == issho_access::Role::Patient
                && g.patient
                    .as_deref()
                    .is_some_and(|p| mine.iter().any(|m| m == p))
        });
        if !auditor && !own {
            self.read(ctx, "Patient", patient_id)?;
            // The refusal is recorded like every denial.
            return self.audited(
                ctx,
                issho_audit::Interaction::Operation,
                Some(format!("Patient/{patient_id}")),
                Some(format!("Patient/{patient_id}/$access-log")),
                || {
                    Err(FhirError::new(
                        403,
                        IssueType::Forbidden,
                        "a person's access log is read by that person and by administrators",
                    ))
                },
                |_: &Vec<Value>, _| {},
            );
        }
        self.read(ctx, "Patient", patient_id)?;
        let Some(log) = &self.audit else {
            return Ok(Vec::new());
        };
        // Everything recorded so far, including this request's own read of the Patient.
        log.flush()
            .map_err(|e| FhirError::internal(e.to_string()))?;
        let me: Vec<String> = mine.iter().map(|m| format!("Patient/{m}")).collect();
        let mut events: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for m in &me {
            for ev in log
                .search(None, Some(m), since, None, limit)
                .map_err(|e| FhirError::internal(e.to_string()))?
            {
                if seen.insert(ev["id"].as_str().unwrap_or_default().to_string()) {
                    events.push(ev);
                }
            }
        }
        // Newest first across the person's Patients.
        events.sort_by(|a, b| {
            b["recorded"]
                .as_str()
                .unwrap_or_default()
                .cmp(a["recorded"].as_str().unwrap_or_default())
        });
        events.truncate(limit);
        if auditor {
            return Ok(events);
        }
        let r = self.snapshot(ctx, Action::Read, Some("Patient"))?;
        // The person's own view decides (what is not yet told to them stays hidden here too).
        let mut views: std::collections::HashMap<String, Option<crate::view::View>> =
            Default::default();
        let reg = self.registry();
        // Each resource is decided once (the same ones recur from event to event: a person's
        // portal reads the same record every time).
        let mut decided: std::collections::HashMap<(String, String), bool> = Default::default();
        let mut visible = |t: &str, id: &str| -> Result<bool> {
            if let Some(v) = decided.get(&(t.to_string(), id.to_string())) {
                return Ok(*v);
            }
            if !views.contains_key(t) {
                let v = self.view(ctx, Action::Read, Some(t), &*r).ok();
                views.insert(t.to_string(), v);
            }
            let seen = match views.get(t).and_then(Option::as_ref) {
                Some(v) => {
                    r.person(t, id)?.flatten().as_deref() == Some(person.as_str())
                        && v.sees(&reg, &*r, t, id)?
                }
                None => false,
            };
            decided.insert((t.to_string(), id.to_string()), seen);
            Ok(seen)
        };
        events
            .into_iter()
            .map(|ev| only_this_person(ev, &me, &mut visible))
            .collect()
    }
}

/// An AuditEvent as the person it concerns sees it: the entities of their own record only
/// (their Patient, resources whose person is them), and the query only when the access
/// concerned no one else (a search over several patients names others in its query).
fn only_this_person(
    mut ev: Value,
    me: &[String],
    visible: &mut dyn FnMut(&str, &str) -> Result<bool>,
) -> Result<Value> {
    let by_me = ev["agent"].as_array().into_iter().flatten().any(|a| {
        a["who"]["reference"]
            .as_str()
            .is_some_and(|w| me.iter().any(|m| m == w))
    });
    // The outcome's words may name what the person may not see (another resource, a query);
    // a break-the-glass declaration's are the physician's stated reason, which the person is
    // owed.
    let declaration = ev["subtype"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["code"] == "BTG");
    if !declaration && let Some(o) = ev.as_object_mut() {
        o.remove("outcomeDesc");
    }
    let Some(entities) = ev.get_mut("entity").and_then(Value::as_array_mut) else {
        return Ok(ev);
    };
    let others = entities.iter().any(|e| {
        e["role"]["code"] == "1"
            && e["what"]["reference"]
                .as_str()
                .is_some_and(|p| !me.iter().any(|m| m == p))
    });
    let mut kept = Vec::new();
    for e in entities.drain(..) {
        let keep = match (e["role"]["code"].as_str(), e["what"]["reference"].as_str()) {
            (Some("1"), Some(p)) => me.iter().any(|m| m == p),
            // A query is the asker's words (other people's names, ids, search terms): shown
            // only for the person's own accesses.
            (Some("24"), _) => !others && by_me,
            (_, Some(reference)) => {
                let mut parts = reference.split('/');
                match (parts.next(), parts.next()) {
                    (Some(rt), Some(id)) => visible(rt, id)?,
                    _ => false,
                }
            }
            _ => false,
        };
        if keep {
            kept.push(e);
        }
    }
    if kept.is_empty() {
        ev.as_object_mut().map(|o| o.remove("entity"));
    } else {
        ev["entity"] = Value::Array(kept);
    }
    Ok(ev)
}
