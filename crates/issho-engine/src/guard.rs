//! The write guard: what one write may change (`Guard::before`), what it may leave behind
//! (`Guard::after`) — within the writer's reach, their own organization's data, the
//! server-kept resources untouched, references only to what they may read — and the care
//! relationships (`CARE`) that open a person's record to an organization.

use crate::view::View;
use crate::*;
use issho_access::Reach;
use issho_search::Filter;
use issho_store::StoreRead;

/// The access checks of one write, run inside its transaction: what the caller may change
/// (`write`), and what its conditions may match (`find`).
#[derive(Clone)]
pub(crate) struct Guard {
    pub reg: Arc<issho_search::Registry>,
    /// Who writes, and the gate: the references they write are checked type by type.
    pub ctx: AccessContext,
    pub gate: issho_access::Gate,
    pub write: View,
    pub find: Option<View>,
}

impl Guard {
    /// Filters for the search part of a conditional interaction.
    pub fn find_filters(&self, rt: &str) -> Result<Vec<Filter>> {
        match &self.find {
            Some(v) => v.filters(&self.reg, rt),
            None => Ok(Vec::new()),
        }
    }

    /// Before changing `rt/id`: an existing resource must be visible (otherwise it is
    /// reported as unknown), and within what this caller may change. Restricted callers
    /// neither create with an id of their choosing nor delete what is not there: both would
    /// tell a hidden resource from an absent one, so both are "not known" too (they create
    /// with POST, the server assigning the id).
    pub fn before(&self, r: &dyn StoreRead, rt: &str, id: &str) -> Result<()> {
        if matches!(rt, "Communication" | "Provenance")
            && let Some(s) = r.current(rt, id)?
            && !s.is_deleted()
        {
            refuse_server_kept(rt, id, &s.json().unwrap_or_default())?;
        }
        if rt == "ViewDefinition"
            && let Some(s) = r.current(rt, id)?
            && !s.is_deleted()
        {
            self.project_view(id, &s.json().unwrap_or_default())?;
        }
        if self.write.unrestricted() {
            return Ok(());
        }
        match r.current(rt, id)? {
            Some(s) if !s.is_deleted() => {
                if !self.write.sees(&self.reg, r, rt, id)? {
                    return Err(Engine::hidden(rt, id));
                }
                let body = s.json().unwrap_or_default();
                self.own_record(rt, id, s.person.as_deref())?;
                self.held_elsewhere(rt, id, &body)?;
                self.patient_may_change(rt, id, &body, "change")
            }
            _ => Err(Engine::hidden(rt, id)),
        }
    }

    /// After writing `rt/id`: every resource it refers to must be one the caller may read
    /// (checked first, so that a reference to a hidden resource and to an absent one get the
    /// same answer), the new version must still be within reach and in a record this caller
    /// may change, or the write is refused (and rolled back with its transaction).
    pub fn after(&self, r: &dyn StoreRead, rt: &str, id: &str) -> Result<()> {
        if matches!(rt, "Communication" | "Provenance")
            && let Some(s) = r.current(rt, id)?
        {
            refuse_server_kept(rt, id, &s.json().unwrap_or_default())?;
        }
        if rt == "ViewDefinition"
            && let Some(s) = r.current(rt, id)?
            && !s.is_deleted()
        {
            self.project_view(id, &s.json().unwrap_or_default())?;
        }
        if self.write.unrestricted() {
            return Ok(());
        }
        // The version just written, read once for every check below.
        let Some(s) = r.current(rt, id)? else {
            return Ok(());
        };
        let body = s.json().unwrap_or_default();
        self.references_known(r, rt, id, &body)?;
        if !self.write.sees(&self.reg, r, rt, id)? {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "{rt}/{id} would be outside what this token may write (another patient's record, or outside its scope)"
                ),
            ));
        }
        self.own_record(rt, id, s.person.as_deref())?;
        self.patient_may_change(rt, id, &body, "write")?;
        if crate::origin::writes_as_patient(&self.ctx) && body["meta"]["source"].is_string() {
            // (A patch could add one: `origin::mark` removes it from every other write.)
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!("{rt}/{id}: a person's own data names no institution in meta.source"),
            ));
        }
        if let Reach::CareOf(org) = &self.write.reach
            && let Some(source) = body["meta"]["source"].as_str()
            && source != org
        {
            // A clinician's data is their organization's (a patch cannot move it to another
            // institution, out of what a person refused).
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "{rt}/{id}: meta.source must be this clinician's organization ({org}), not '{source}'"
                ),
            ));
        }
        self.may_open_care(rt, &body)
    }

    /// A research project's member changes only its project's views (ViewDefinitions whose
    /// `meta.source` names the project, as the engine marks them: `origin::mark`), never
    /// another project's or the administrators'.
    fn project_view(&self, id: &str, body: &Value) -> Result<()> {
        let Some(project) = self.gate.project_of(&self.ctx) else {
            return Ok(());
        };
        if body["meta"]["source"].as_str() == Some(&crate::origin::project_source(project)) {
            return Ok(());
        }
        Err(FhirError::new(
            403,
            IssueType::Forbidden,
            format!(
                "ViewDefinition/{id} is kept by another research project or by the administrators; a project's members change only their project's views"
            ),
        ))
    }

    /// A clinician changes or deletes only what their own organization holds: another
    /// institution's data (its `meta.source`) stays as that institution recorded it (and
    /// cannot be moved out of what a person refused, or hidden from its holder).
    fn held_elsewhere(&self, rt: &str, id: &str, body: &Value) -> Result<()> {
        if let Reach::CareOf(org) = &self.write.reach
            && let Some(source) = body["meta"]["source"].as_str()
            && source != org
        {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "{rt}/{id} is held by another institution ({source}); a clinician changes only their own organization's data"
                ),
            ));
        }
        Ok(())
    }

    /// A person changes only what they wrote themself (and their Consents), never what their
    /// care providers recorded (`origin.rs`).
    fn patient_may_change(&self, rt: &str, id: &str, body: &Value, what: &str) -> Result<()> {
        if !crate::origin::writes_as_patient(&self.ctx)
            || crate::origin::patient_may_change(rt, body)
        {
            return Ok(());
        }
        Err(FhirError::new(
            403,
            IssueType::Forbidden,
            format!(
                "{rt}/{id} was recorded by a care provider; a patient may {what} only what they wrote themself (marked {}|patient)",
                crate::origin::ORIGIN_SYSTEM
            ),
        ))
    }

    /// Restricted writers' references to what can hold a patient's data name resources they
    /// may read with this token (the gate for its type, their reach, the scope's search
    /// conditions) — so a reference answers alike for a hidden and an absent resource.
    fn references_known(&self, r: &dyn StoreRead, rt: &str, id: &str, body: &Value) -> Result<()> {
        for (t, rid) in crate::owner::literal_refs(body) {
            // Itself; a Patient (the ownership rule decides: another person's or an absent
            // one's makes the resource nobody's alone, refused alike); or a type that never
            // holds a patient's data (Organization, Practitioner…: shared, not a secret).
            if (t == rt && rid == id) || t == "Patient" || !crate::owner::may_hold_patient_data(&t)
            {
                continue;
            }
            let readable = match self.gate.check(&self.ctx, Action::Read, Some(&t)) {
                Ok(permit) => View {
                    permit: permit.clone(),
                    reach: self.write.reach.clone(),
                    scope_filters: permit.filters().to_vec(),
                    persons: self.write.persons.clone(),
                    refused_labels: self.write.refused_labels.clone(),
                    refused_sources: self.write.refused_sources.clone(),
                    not_agreed: self.write.not_agreed.clone(),
                }
                .sees(&self.reg, r, &t, &rid)?,
                Err(_) => false,
            };
            if readable {
                continue;
            }
            return Err(FhirError::new(
                400,
                IssueType::Invalid,
                format!("the reference to {t}/{rid} names a resource that is not known"),
            ));
        }
        Ok(())
    }

    /// Restricted callers change only the records within their reach: a patient their own,
    /// a clinician those of the patients in their care — never shared data (organizations,
    /// practitioners, search parameters and other definitions are the administrators'). A
    /// person's privacy Consents are theirs: a clinician may read but not change them.
    fn own_record(&self, rt: &str, id: &str, person: Option<&str>) -> Result<()> {
        let refuse = |why: String| Err(FhirError::new(403, IssueType::Forbidden, why));
        let own = self.write.reached().unwrap_or_default();
        match &self.write.reach {
            Reach::Patient(_) if person.is_none_or(|p| !own.iter().any(|o| o == p)) => refuse(format!(
                "{rt}/{id} is shared data, not part of this patient's record; this token may not change it"
            )),
            Reach::CareOf(_) if rt == "Consent" => refuse(
                "a person's Consents are written by that person (or an administrator), not by their clinicians"
                    .into(),
            ),
            Reach::CareOf(_)
                if person.is_none_or(|p| {
                    !self
                        .write
                        .persons
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|x| x == p)
                }) =>
            {
                refuse(format!(
                    "{rt}/{id} is shared data (or no single patient's); administrators maintain it"
                ))
            }
            _ => Ok(()),
        }
    }

    /// Care relationships (an Encounter at, an EpisodeOfCare managed by, or a referral to an
    /// organization) open a person's record to that organization's clinicians: only those
    /// who can create them may write them — a clinician for their own organization (or a
    /// referral by a clinician who already cares for the person), registrars and the
    /// intake with full reach. Never a patient.
    fn may_open_care(&self, rt: &str, body: &Value) -> Result<()> {
        let Some(param) = care_param(rt) else {
            return Ok(());
        };
        let orgs = care_organizations(param, body);
        if orgs.is_empty() {
            return Ok(());
        }
        let refuse = |why: String| Err(FhirError::new(403, IssueType::Forbidden, why));
        match &self.write.reach {
            Reach::Patient(_) => refuse(format!(
                "a patient's token may not write the care relationship of {rt}.{param} ({}); the organization's clinicians or registrars record it",
                orgs.join(", ")
            )),
            Reach::CareOf(own) if rt != "ServiceRequest" && orgs.iter().any(|o| o != own) => {
                refuse(format!(
                    "{rt}.{param} names another organization ({}); a clinician records care relationships for their own organization ({own})",
                    orgs.join(", ")
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The notifications issho writes to a person (`break_glass.rs`) and the records of merges
/// (`merge.rs`) are written by no client.
fn refuse_server_kept(rt: &str, id: &str, body: &Value) -> Result<()> {
    if crate::merge::server_kept(rt, body) {
        return Err(FhirError::new(
            403,
            IssueType::Forbidden,
            format!("{rt}/{id} records a merge of Patients (kept by issho); no client writes one"),
        ));
    }
    if crate::break_glass::server_kept(rt, body) {
        return Err(FhirError::new(
            403,
            IssueType::Forbidden,
            format!(
                "{rt}/{id} is a notification issho keeps (category {}); no client writes one",
                crate::break_glass::NOTIFICATION
            ),
        ));
    }
    Ok(())
}

/// The element of `rt` that makes a care relationship (see `Engine::care_persons`).
pub(crate) fn care_param(rt: &str) -> Option<&'static str> {
    CARE.iter().find(|(t, _, _)| *t == rt).map(|(_, e, _)| *e)
}

/// What makes a care relationship with an organization, one row per type: (type, element,
/// search parameter) — an Encounter there, an EpisodeOfCare it manages, a referral to it, a
/// dispensing by it (a pharmacy: `MedicationDispense.performer.actor`).
pub(crate) const CARE: [(&str, &str, &str); 4] = [
    ("Encounter", "serviceProvider", "service-provider"),
    ("EpisodeOfCare", "managingOrganization", "organization"),
    ("ServiceRequest", "performer", "performer"),
    ("MedicationDispense", "performer", "performer"),
];

/// True when writing a resource of `rt` can change who sees which record: the care
/// relationships, Consents, and Patients (their persons).
pub(crate) fn decides_access(rt: &str) -> bool {
    rt == "Consent" || rt == "Patient" || care_param(rt).is_some()
}

/// The organizations (`Organization/id`) a care element of `body` names.
fn care_organizations(param: &str, body: &Value) -> Vec<String> {
    let refs: Vec<&Value> = match body.get(param) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    refs.into_iter()
        // A Reference, or a performer whose `actor` is one (MedicationDispense).
        .filter_map(|r| {
            r.get("reference")
                .or_else(|| r["actor"].get("reference"))
                .and_then(Value::as_str)
        })
        .filter(|r| r.starts_with("Organization/"))
        .map(str::to_string)
        .collect()
}

impl Engine {
    /// The guard for a write of `action` on `rt` (and its conditional search, if any).
    pub(crate) fn guard(
        &self,
        ctx: &AccessContext,
        action: Action,
        rt: &str,
        conditional: bool,
    ) -> Result<Guard> {
        let r = self.snapshot(ctx, action, Some(rt))?;
        self.guard_in(ctx, action, rt, conditional, &*r)
    }

    /// [`Engine::guard`] over a given snapshot (inside a transaction).
    pub(crate) fn guard_in(
        &self,
        ctx: &AccessContext,
        action: Action,
        rt: &str,
        conditional: bool,
        r: &dyn StoreRead,
    ) -> Result<Guard> {
        if rt == "Person" && matches!(action, Action::Create | Action::Update | Action::Delete) {
            // Who is one person is decided by matching and registrars, never by a write.
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                "Person resources are kept by the server (a certain match by insurance member ID links Patients); a registrar uses Patient/[id]/$link and $unlink",
            ));
        }
        let write = self.view_with(ctx, action, Some(rt), r, true)?;
        let find = if conditional {
            Some(self.view_with(ctx, Action::Search, Some(rt), r, true)?)
        } else {
            None
        };
        Ok(Guard {
            reg: self.registry(),
            ctx: ctx.clone(),
            gate: self.gate.clone(),
            write,
            find,
        })
    }
}
