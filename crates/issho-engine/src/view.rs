//! What a caller may see: the gate's [`Permit`] turned into search filters and checks that
//! every interaction applies.
//!
//! One rule serves every path: a resource is visible when the search `Type?_id=ID` with the
//! permit's conditions finds it. The conditions are the patient compartment (`Reach::Patient`),
//! the compartments of the patients in a care relationship with an organization
//! (`Reach::CareOf`), and the search parameters of a query-restricted scope. Searches get the
//! same conditions as extra filters, so reads, searches, counts, includes, history entries,
//! `$everything` and writes can never disagree. A resource outside the caller's reach is
//! reported as not found (404), never as forbidden, so its existence does not leak.

use crate::everything::compartment_filter;
use crate::*;
use issho_access::{Permit, Reach};
use issho_search::{Filter, Test};
use issho_store::StoreRead;
use std::collections::BTreeSet;

/// The limits of one permit for one resource type.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub reach: Reach,
    pub scope_filters: Vec<(String, String)>,
    /// For `Reach::CareOf`: the patients in a care relationship whose consent lets this
    /// organization see their record (computed once per request).
    pub persons: Option<Vec<String>>,
    /// Categories patients refused to share (a security label `system|code`, and the patients
    /// who refused it): their resources carrying it are hidden.
    pub refused_labels: Vec<(String, Vec<String>)>,
}

/// JP-CLINS indication tags (`meta.tag`): `UNINFORMED` (not yet told to the patient: hidden
/// from the patient), `UNDELIVERED` (not shared beyond the authoring institution).
pub(crate) const CLINS_INDICATION: &str =
    "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication";

/// What a person's active privacy Consents say for one organization.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConsentDecision {
    /// The whole record is refused to this organization (or to everyone).
    pub refused: bool,
    /// Security labels (`system|code`) whose resources are refused.
    pub labels: Vec<String>,
}

/// Read a Consent resource (R4, scope patient-privacy): `deny` provisions (top level and
/// nested) with no actor or with `org` among their actors; without class/code/securityLabel
/// they refuse the whole record, with security labels they refuse those categories.
pub(crate) fn consent_decision(consent: &Value, org: &str, out: &mut ConsentDecision) {
    fn walk(p: &Value, org: &str, out: &mut ConsentDecision) {
        let deny = p.get("type").and_then(Value::as_str) == Some("deny");
        let actors: Vec<&str> = p
            .get("actor")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a["reference"]["reference"].as_str())
            .collect();
        let applies = actors.is_empty() || actors.contains(&org);
        if deny && applies {
            let labels: Vec<String> = p
                .get("securityLabel")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| {
                    Some(format!(
                        "{}|{}",
                        l.get("system")?.as_str()?,
                        l.get("code")?.as_str()?
                    ))
                })
                .collect();
            if labels.is_empty() && p.get("class").is_none() && p.get("code").is_none() {
                out.refused = true;
            }
            out.labels.extend(labels);
        }
        for child in p
            .get("provision")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, org, out);
        }
    }
    if consent.get("status").and_then(Value::as_str) != Some("active") {
        return;
    }
    if let Some(p) = consent.get("provision") {
        walk(p, org, out);
    }
}

/// Most patients a care-relationship view is computed over (beyond: refused as too costly).
const MAX_CARE_PERSONS: usize = 50_000;

impl View {
    pub fn of(permit: &Permit) -> View {
        View {
            reach: permit.reach.clone(),
            scope_filters: permit.filters.clone(),
            persons: None,
            refused_labels: Vec::new(),
        }
    }

    pub fn unrestricted(&self) -> bool {
        self.reach == Reach::All && self.scope_filters.is_empty()
    }

    /// A `_tag`/`_security` filter test of `rt` for one `system|code`.
    fn label_test(
        reg: &issho_search::Registry,
        rt: &str,
        param: &str,
        label: &str,
    ) -> Result<Test> {
        let q = issho_search::parse_in(
            reg,
            Some(rt),
            &[(param.to_string(), label.to_string())],
            true,
        )
        .map_err(|issues| FhirError {
            status: 500,
            issues,
        })?;
        Ok(q.filters
            .into_iter()
            .next()
            .map(|f| f.test)
            .expect("one filter"))
    }

    /// Conditions from consent and JP-CLINS tags for `rt` (patient data only).
    fn consent_filters(&self, reg: &issho_search::Registry, rt: &str) -> Result<Vec<Filter>> {
        let mut out = Vec::new();
        match &self.reach {
            Reach::Patient(_) => {
                // Not yet told to the patient: hidden from the patient.
                let t =
                    Self::label_test(reg, rt, "_tag", &format!("{CLINS_INDICATION}|UNINFORMED"))?;
                out.push(Filter {
                    name: "_consent".into(),
                    test: Test::NotAll(vec![t]),
                });
            }
            Reach::CareOf(org) => {
                // Not delivered beyond the authoring institution (`meta.source` names it).
                let tag =
                    Self::label_test(reg, rt, "_tag", &format!("{CLINS_INDICATION}|UNDELIVERED"))?;
                let own = Self::label_test(reg, rt, "_source", org)?;
                out.push(Filter {
                    name: "_consent".into(),
                    test: Test::NotAll(vec![tag, Test::NotAll(vec![own])]),
                });
                // Categories a patient refused: their resources with that label.
                for (label, persons) in &self.refused_labels {
                    let sec = Self::label_test(reg, rt, "_security", label)?;
                    let whose = persons_filter(rt, persons)?.test;
                    out.push(Filter {
                        name: "_consent".into(),
                        test: Test::NotAll(vec![whose, sec]),
                    });
                }
            }
            Reach::All => {}
        }
        Ok(out)
    }

    /// True when `rt` holds patient data this view restricts (Patient and the types of the
    /// patient compartment).
    pub fn restricts(&self, rt: &str) -> bool {
        self.reach != Reach::All
            && (rt == "Patient" || issho_model::r4().patient_compartment_params(rt).is_some())
    }

    /// The filters a search of `rt` must carry.
    pub fn filters(&self, reg: &issho_search::Registry, rt: &str) -> Result<Vec<Filter>> {
        let mut out = Vec::new();
        if !self.scope_filters.is_empty() {
            let q = issho_search::parse_in(reg, Some(rt), &self.scope_filters, true).map_err(
                |issues| FhirError {
                    status: 403,
                    issues,
                },
            )?;
            out.extend(q.filters);
        }
        if self.restricts(rt) {
            match &self.reach {
                Reach::Patient(pid) => {
                    out.extend(compartment_filter(rt, Some(pid))?);
                }
                Reach::CareOf(_) => {
                    let persons = self.persons.as_deref().unwrap_or_default();
                    out.push(persons_filter(rt, persons)?);
                }
                Reach::All => {}
            }
            out.extend(self.consent_filters(reg, rt)?);
        }
        Ok(out)
    }

    /// Whether `rt/id` (its current version) is visible.
    pub fn sees(
        &self,
        reg: &issho_search::Registry,
        r: &dyn StoreRead,
        rt: &str,
        id: &str,
    ) -> Result<bool> {
        if self.unrestricted() || (!self.restricts(rt) && self.scope_filters.is_empty()) {
            return Ok(true);
        }
        let mut filters = self.filters(reg, rt)?;
        filters.push(Filter {
            name: "_id".into(),
            test: Test::Id {
                ids: vec![id.to_string()],
                negate: false,
            },
        });
        let q = issho_search::SearchQuery {
            resource_type: Some(rt.to_string()),
            filters,
            count: Some(1),
            ..Default::default()
        };
        let (sql, args) = issho_search::sqlite_select(&q);
        Ok(!r.query_rids(&sql, &args)?.is_empty())
    }

    /// Whether a version's body (not necessarily current) lies within the reach: compartment
    /// membership read from the body itself (for history and vread).
    pub fn body_in_reach(&self, rt: &str, body: &Value) -> bool {
        if !self.restricts(rt) {
            return true;
        }
        let ids: Vec<&str> = match &self.reach {
            Reach::All => return true,
            Reach::Patient(p) => vec![p.as_str()],
            Reach::CareOf(_) => self
                .persons
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(String::as_str)
                .collect(),
        };
        let has = |list: &str, system: &str, code: &str| {
            body["meta"][list]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c.get("system").and_then(Value::as_str) == Some(system)
                        && c.get("code").and_then(Value::as_str) == Some(code)
                })
        };
        let pats: Vec<String> = if rt == "Patient" {
            vec![
                body.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ]
        } else {
            compartment_patients(rt, body)
        };
        if !pats.iter().any(|p| ids.contains(&p.as_str())) {
            return false;
        }
        match &self.reach {
            Reach::Patient(_) => !has("tag", CLINS_INDICATION, "UNINFORMED"),
            Reach::CareOf(org) => {
                let source = body["meta"]["source"].as_str().unwrap_or_default();
                if has("tag", CLINS_INDICATION, "UNDELIVERED") && source != org {
                    return false;
                }
                !self.refused_labels.iter().any(|(label, persons)| {
                    let (system, code) = label.split_once('|').unwrap_or(("", label));
                    has("security", system, code) && pats.iter().any(|p| persons.contains(p))
                })
            }
            Reach::All => true,
        }
    }
}

/// The Patient ids whose compartment holds `body` (by the compartment parameters' rows).
pub(crate) fn compartment_patients(rt: &str, body: &Value) -> Vec<String> {
    let keys = compartment_keys(rt);
    let reg = issho_search::Registry::r4();
    let mut out = Vec::new();
    for row in issho_search::extract(body) {
        let key = &reg.keys()[row.key as usize];
        if !keys.contains(key) {
            continue;
        }
        if let issho_search::Row::Ref {
            ref_type, ref_id, ..
        } = &row.row
            && ref_type == "Patient"
            && !out.contains(ref_id)
        {
            out.push(ref_id.clone());
        }
    }
    out
}

/// The index keys of `rt`'s patient-compartment parameters.
fn compartment_keys(rt: &str) -> BTreeSet<String> {
    match compartment_filter(rt, Some("x")) {
        Ok(Some(Filter {
            test: Test::Values { keys, .. },
            ..
        })) => keys.into_iter().collect(),
        _ => BTreeSet::new(),
    }
}

/// "In the record of one of these patients" (the store's person column; any number of them).
fn persons_filter(_rt: &str, persons: &[String]) -> Result<Filter> {
    Ok(Filter {
        name: "_reach".into(),
        test: Test::PersonIn(persons.to_vec()),
    })
}

/// The access checks of one write, run inside its transaction: what the caller may change
/// (`write`), and what its conditions may match (`find`).
#[derive(Clone)]
pub(crate) struct Guard {
    pub reg: Arc<issho_search::Registry>,
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
    /// reported as unknown).
    pub fn before(&self, r: &dyn StoreRead, rt: &str, id: &str) -> Result<()> {
        if self.write.unrestricted() {
            return Ok(());
        }
        match r.current(rt, id)? {
            Some(s) if !s.is_deleted() => {
                if self.write.sees(&self.reg, r, rt, id)? {
                    Ok(())
                } else {
                    Err(Engine::hidden(rt, id))
                }
            }
            _ => Ok(()),
        }
    }

    /// After writing `rt/id`: the new version must still be within reach, or the write is
    /// refused (and rolled back with its transaction).
    pub fn after(&self, r: &dyn StoreRead, rt: &str, id: &str) -> Result<()> {
        if self.write.unrestricted() || self.write.sees(&self.reg, r, rt, id)? {
            Ok(())
        } else {
            Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "{rt}/{id} would be outside what this token may write (another patient's record, or outside its scope)"
                ),
            ))
        }
    }
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
        let r = self.store.reader()?;
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
        let write = self.view_with(ctx, action, Some(rt), r, true)?;
        // Patient-facing tokens write only their own record: not shared data such as
        // Practitioner, Organization or Medication.
        if matches!(write.reach, Reach::Patient(_)) && !write.restricts(rt) {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "{rt} is shared data, not part of a patient's record; this token may not change it"
                ),
            ));
        }
        let find = if conditional {
            Some(self.view_with(ctx, Action::Search, Some(rt), r, true)?)
        } else {
            None
        };
        Ok(Guard {
            reg: self.registry(),
            write,
            find,
        })
    }

    /// Ask the gate and turn the permit into a view (computing a care relationship's patients
    /// when needed).
    pub(crate) fn view(
        &self,
        ctx: &AccessContext,
        action: Action,
        rt: Option<&str>,
        r: &dyn StoreRead,
    ) -> Result<View> {
        self.view_with(ctx, action, rt, r, false)
    }

    /// `direct`: compute care relationships and consents on `r` itself, bypassing the cache
    /// (writes: inside a transaction `r` also holds its own uncommitted changes, such as the
    /// Encounter that starts a care relationship).
    pub(crate) fn view_with(
        &self,
        ctx: &AccessContext,
        action: Action,
        rt: Option<&str>,
        r: &dyn StoreRead,
        direct: bool,
    ) -> Result<View> {
        let permit = self.gate.check(ctx, action, rt)?;
        let mut view = View::of(&permit);
        // A clinician's app launched on one patient (patient/ scopes): that patient, within
        // the clinician's care relationships and the patient's consent.
        let mut only: Option<String> = None;
        if let (Reach::Patient(p), Some(g)) = (&view.reach, ctx.grant())
            && g.role != issho_access::Role::Patient
        {
            only = Some(p.clone());
            view.reach = match &g.organization {
                Some(org) if g.role.is_clinician() => Reach::CareOf(org.clone()),
                _ if g.role == issho_access::Role::Administrator => Reach::Patient(p.clone()),
                _ => {
                    return Err(FhirError::new(
                        403,
                        IssueType::Forbidden,
                        "this role has no access to a patient's record",
                    ));
                }
            };
        }
        if let Reach::CareOf(org) = &view.reach {
            // Care relationships and consents of the organization, recomputed after a write
            // of an Encounter, EpisodeOfCare, ServiceRequest, Consent or Patient (the
            // generation is incremented after such a commit). On a miss they are computed on a
            // snapshot taken after reading the generation, so the entry holds every write that
            // generation counts.
            let seq = self
                .care_generation
                .load(std::sync::atomic::Ordering::SeqCst);
            let cached = if direct {
                None
            } else {
                let c = self.care_cache.lock().unwrap_or_else(|e| e.into_inner());
                c.get(org).filter(|(s, _, _)| *s == seq).cloned()
            };
            let (mut persons, decisions) = match cached {
                Some((_, p, d)) => (p, d),
                None if direct => (self.care_persons(r, org)?, self.consent_decisions(r, org)?),
                None => {
                    let fresh = self.store.reader()?;
                    let p = self.care_persons(&*fresh, org)?;
                    let d = self.consent_decisions(&*fresh, org)?;
                    let mut c = self.care_cache.lock().unwrap_or_else(|e| e.into_inner());
                    if c.len() > 1000 {
                        c.clear();
                    }
                    c.insert(org.clone(), (seq, p.clone(), d.clone()));
                    (p, d)
                }
            };
            // Consent: "share unless refused".
            persons.retain(|p| !decisions.get(p).is_some_and(|d| d.refused));
            let mut labels: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (p, d) in &decisions {
                for l in &d.labels {
                    labels.entry(l.clone()).or_default().push(p.clone());
                }
            }
            view.refused_labels = labels.into_iter().collect();
            // Break-the-glass: patients opened in an emergency, whatever their consent.
            if let Some(g) = ctx.grant() {
                for p in self.break_glass_patients(&g.subject) {
                    if !persons.contains(&p) {
                        persons.push(p.clone());
                    }
                    for (_, who) in view.refused_labels.iter_mut() {
                        who.retain(|x| x != &p);
                    }
                }
            }
            if let Some(p) = &only {
                persons.retain(|x| x == p);
            }
            view.persons = Some(persons);
        }
        Ok(view)
    }

    /// The privacy decisions of every patient with an active patient-privacy Consent, for
    /// `org`.
    fn consent_decisions(
        &self,
        r: &dyn StoreRead,
        org: &str,
    ) -> Result<std::collections::HashMap<String, ConsentDecision>> {
        let pairs = vec![
            ("status".to_string(), "active".to_string()),
            ("_count".to_string(), "100000".to_string()),
        ];
        let q = issho_search::parse(Some("Consent"), &pairs, true).map_err(|issues| FhirError {
            status: 500,
            issues,
        })?;
        let (sql, args) = issho_search::sqlite_select(&q);
        let rids = r.query_rids(&sql, &args)?;
        let mut out: std::collections::HashMap<String, ConsentDecision> = Default::default();
        for chunk in rids.chunks(500) {
            for s in r.current_by_rids(chunk)? {
                let Some(v) = s.json() else { continue };
                let Some(p) = v["patient"]["reference"]
                    .as_str()
                    .and_then(|x| x.strip_prefix("Patient/"))
                else {
                    continue;
                };
                consent_decision(&v, org, out.entry(p.to_string()).or_default());
            }
        }
        Ok(out)
    }

    /// Patients in a care relationship with `org`: an Encounter there (service provider), an
    /// EpisodeOfCare managed there, or a referral (ServiceRequest) to it.
    fn care_persons(&self, r: &dyn StoreRead, org: &str) -> Result<Vec<String>> {
        let mut persons: BTreeSet<String> = BTreeSet::new();
        for (rt, param) in [
            ("Encounter", "service-provider"),
            ("EpisodeOfCare", "organization"),
            ("ServiceRequest", "performer"),
        ] {
            let pairs = vec![
                (param.to_string(), org.to_string()),
                ("_count".to_string(), (MAX_CARE_PERSONS * 4).to_string()),
            ];
            let q = issho_search::parse(Some(rt), &pairs, true).map_err(|issues| FhirError {
                status: 500,
                issues,
            })?;
            let (sql, args) = issho_search::sqlite_select(&q);
            let rids = r.query_rids(&sql, &args)?;
            // The store's person column (the patient of each record), not the bodies.
            persons.extend(r.persons_by_rids(&rids)?);
            if persons.len() > MAX_CARE_PERSONS {
                return Err(FhirError::new(
                    403,
                    IssueType::TooCostly,
                    format!("{org} has more than {MAX_CARE_PERSONS} patients in care"),
                ));
            }
        }
        Ok(persons.into_iter().collect())
    }

    /// Refuse search constructs that could reveal patient data outside the view: under a
    /// restricted reach, `_has` and chains may only start from a type whose results are
    /// themselves restricted, and a search across all types is not offered.
    pub(crate) fn check_query_reach(
        &self,
        view: &View,
        rt: Option<&str>,
        q: &issho_search::SearchQuery,
    ) -> Result<()> {
        if view.reach == Reach::All {
            return Ok(());
        }
        let Some(rt) = rt else {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                "a search across all types is not available with this token; search one type, or use Patient/[id]/$everything",
            ));
        };
        if view.restricts(rt) {
            return Ok(());
        }
        for f in &q.filters {
            if matches!(f.test, Test::Has { .. } | Test::Chain { .. }) {
                return Err(FhirError::new(
                    403,
                    IssueType::Forbidden,
                    format!(
                        "'{}' on {rt} would look into patient records beyond this token's reach",
                        f.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A resource outside the view: reported as unknown.
    pub(crate) fn hidden(rt: &str, id: &str) -> FhirError {
        FhirError::not_found(format!("{rt}/{id} is not known"))
    }
}
