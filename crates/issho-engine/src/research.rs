//! Research: which persons a research project reaches (their research Consents and the
//! deployment's default), what its exports may ask, and what they receive (the project's
//! de-identification and k-anonymity, `issho-research`).
//!
//! A research Consent: `scope` `consentscope#research`, `patient` `Patient/[id]`, a top-level
//! `provision.type` `permit` (the person takes part) or `deny` (the person refuses), optionally
//! `provision.period` (when it holds). The newest active research Consent of a person decides
//! (the one written last; a refusal wins a tie); without one, the deployment's
//! [`ResearchDefault`]. A person who refused their whole record to everyone (a privacy
//! Consent) is never released; categories they refused to everyone stay out.

use crate::*;
use issho_access::Reach;
use issho_search::{Filter, Test};
use issho_store::StoreRead;
use std::collections::{BTreeMap, BTreeSet};

const RESEARCH: (&str, &str) = (
    "http://terminology.hl7.org/CodeSystem/consentscope",
    "research",
);

/// Resources read per step when the persons of a project are gathered.
const WINDOW: usize = 1000;

/// Whether research takes persons who said nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResearchDefault {
    /// Persons take part unless they refused (Japan's Next-Generation Medical Infrastructure
    /// Act: notified, with the right to refuse).
    #[default]
    OptOut,
    /// Only persons who agreed (an active research Consent that permits).
    OptIn,
}

/// Whether a Consent is about research.
pub(crate) fn is_research(consent: &Value) -> bool {
    consent["scope"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["system"] == RESEARCH.0 && c["code"] == RESEARCH.1)
}

/// Refuse (422) a research Consent issho could not enforce exactly.
pub(crate) fn check_research_consent(consent: &Value) -> Result<()> {
    use crate::consent::unenforceable;
    let codings = consent["scope"]["coding"].as_array().map_or(0, Vec::len);
    if codings != 1 {
        return Err(unenforceable(
            "Consent.scope",
            "a research Consent has the one scope research".into(),
        ));
    }
    for k in ["policy", "modifierExtension"] {
        if consent.get(k).is_some() {
            return Err(unenforceable(
                &format!("Consent.{k}"),
                format!("a research Consent with '{k}' is not enforced"),
            ));
        }
    }
    crate::consent::check_patient(consent)?;
    let Some(p) = consent.get("provision").and_then(Value::as_object) else {
        return Err(unenforceable(
            "Consent.provision",
            "a research Consent says permit or deny in provision.type".into(),
        ));
    };
    for k in p.keys() {
        if !matches!(k.as_str(), "type" | "period" | "id" | "extension") {
            return Err(unenforceable(
                &format!("Consent.provision.{k}"),
                format!(
                    "a research provision by '{k}' is not enforced (a person takes part in all research or in none)"
                ),
            ));
        }
    }
    if !matches!(
        p.get("type").and_then(Value::as_str),
        Some("permit" | "deny")
    ) {
        return Err(unenforceable(
            "Consent.provision.type",
            "a research Consent's provision.type is permit or deny".into(),
        ));
    }
    Ok(())
}

/// Today as `YYYY-MM-DD`.
fn today_text() -> String {
    let t = issho_research::Today::now();
    format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
}

/// Whether a research Consent holds today, and its vote (true: takes part).
fn research_vote(consent: &Value, today: &str) -> Option<bool> {
    if consent["status"] != "active" || !is_research(consent) {
        return None;
    }
    let p = &consent["provision"];
    let date = |v: &Value| v.as_str().map(|s| s.get(..10).unwrap_or(s).to_string());
    if date(&p["period"]["start"]).is_some_and(|s| s.as_str() > today)
        || date(&p["period"]["end"]).is_some_and(|e| e.as_str() < today)
    {
        return None;
    }
    match p["type"].as_str() {
        Some("permit") => Some(true),
        Some("deny") => Some(false),
        _ => None,
    }
}

/// Every rid of `rt` within `persons` (all persons when `None`), in windows.
fn rids_of(r: &dyn StoreRead, rt: &str, persons: Option<&[String]>) -> Result<Vec<Vec<i64>>> {
    let mut q = issho_search::SearchQuery {
        resource_type: Some(rt.to_string()),
        count: Some(WINDOW),
        ..Default::default()
    };
    if let Some(p) = persons {
        q.filters.push(Filter {
            name: "_research".into(),
            test: Test::PersonIn(p.to_vec()),
        });
    }
    let mut out = Vec::new();
    loop {
        let rids = r.search(&q)?;
        let full = rids.len() == WINDOW;
        q.rid_after = rids.last().copied();
        out.push(rids);
        if !full {
            return Ok(out);
        }
    }
}

impl Engine {
    /// Gives the deployment's research projects to the gate (their members get de-identified
    /// exports only) and to exports (their pseudonyms and profiles).
    pub fn enable_research(&mut self, projects: issho_research::Projects) {
        self.gate =
            issho_access::Gate::with_research(projects.membership(), projects.former_members());
        self.research = Arc::new(projects);
    }

    /// How many research projects are registered.
    pub fn research_projects(&self) -> usize {
        self.research.list().count()
    }

    pub(crate) fn research_project(&self, id: &str) -> Result<&issho_research::Project> {
        self.research.get(id).ok_or_else(|| {
            FhirError::new(
                403,
                IssueType::Forbidden,
                format!("the research project '{id}' is not registered"),
            )
        })
    }

    /// A research view: the persons who take part (their research Consents, the default), and
    /// what they refused to everyone.
    pub(crate) fn research_view(&self, r: &dyn StoreRead, view: &mut view::View) -> Result<()> {
        let today = today_text();
        // Per person: the newest research vote (date, takes part), and privacy refusals.
        let mut votes: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut privacy: BTreeMap<String, view::ConsentDecision> = BTreeMap::new();
        for chunk in crate::consent::active_consents(r)?.chunks(500) {
            for s in r.current_by_rids(chunk)? {
                let Some(v) = s.json() else { continue };
                let Some(p) = s.person.clone().filter(|p| p != crate::owner::RESTRICTED) else {
                    continue;
                };
                if v["patient"]["reference"].as_str().is_none() {
                    continue;
                }
                // Only refusals addressed to everyone apply to research (no organization
                // is named "research").
                crate::consent::consent_decision(&v, "", privacy.entry(p.clone()).or_default());
                if let Some(vote) = research_vote(&v, &today) {
                    // The newest by when it was written (the server's time), not by the
                    // date it claims: a missing or future `dateTime` cannot outvote a
                    // later refusal.
                    let at = v["meta"]["lastUpdated"].as_str().unwrap_or("").to_string();
                    match votes.get_mut(&p) {
                        None => {
                            votes.insert(p, (at, vote));
                        }
                        Some(e) if at > e.0 => *e = (at, vote),
                        // The same moment: a refusal wins.
                        Some(e) if at == e.0 => e.1 = e.1 && vote,
                        Some(_) => {}
                    }
                }
            }
        }
        let takes_part = |p: &String| match votes.get(p) {
            Some((_, v)) => *v,
            None => self.config.research_default == ResearchDefault::OptOut,
        };
        let mut persons: BTreeSet<String> = BTreeSet::new();
        match self.config.research_default {
            ResearchDefault::OptIn => {
                persons.extend(votes.keys().filter(|p| takes_part(p)).cloned())
            }
            ResearchDefault::OptOut => {
                for rids in rids_of(r, "Patient", None)? {
                    persons.extend(
                        r.persons_by_rids(&rids)?
                            .into_iter()
                            .filter(|p| p != crate::owner::RESTRICTED && takes_part(p)),
                    );
                }
            }
        }
        persons.retain(|p| !privacy.get(p).is_some_and(|d| d.refused));
        let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (p, d) in privacy.iter().filter(|(p, _)| persons.contains(*p)) {
            for l in &d.labels {
                labels.entry(l.clone()).or_default().push(p.clone());
            }
            for s in &d.sources {
                sources.entry(s.clone()).or_default().push(p.clone());
            }
        }
        view.refused_labels = labels.into_iter().collect();
        view.refused_sources = sources.into_iter().collect();
        view.persons = Some(persons.into_iter().collect());
        Ok(())
    }

    /// The persons of a research export that are released (k-anonymity over the released
    /// Patients' quasi-identifiers, l-diversity over their diagnoses), and the report.
    pub(crate) fn research_release(
        &self,
        r: &dyn StoreRead,
        project: &issho_research::Project,
        persons: &[String],
        today: issho_research::Today,
    ) -> Result<(Vec<String>, issho_research::Report)> {
        // Every Patient of a person is released (linked by the person's pseudonym): the
        // person's quasi-identifiers are all their Patients' values together.
        let mut seen: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
        for rids in rids_of(r, "Patient", Some(persons))? {
            for s in r.current_by_rids(&rids)? {
                let (Some(v), Some(p)) = (s.json(), s.person.clone()) else {
                    continue;
                };
                if let Some(released) = project.deidentify("Patient", &v, Some(&p), today) {
                    let values = project.quasi_values(&released);
                    let e = seen
                        .entry(p)
                        .or_insert_with(|| vec![BTreeSet::new(); values.len()]);
                    for (set, value) in e.iter_mut().zip(values) {
                        set.insert(value);
                    }
                }
            }
        }
        let mut quasi: BTreeMap<String, Vec<String>> = seen
            .into_iter()
            .map(|(p, sets)| {
                let joined = sets
                    .into_iter()
                    .map(|s| s.into_iter().collect::<Vec<_>>().join("|"))
                    .collect();
                (p, joined)
            })
            .collect();
        // A person without a Patient resource has no known quasi-identifiers: a class of
        // unknowns.
        for p in persons {
            quasi
                .entry(p.clone())
                .or_insert_with(|| vec!["-".into(); project.profile.quasi_identifiers.len()]);
        }
        let mut diagnoses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for rids in rids_of(r, "Condition", Some(persons))? {
            for s in r.current_by_rids(&rids)? {
                let (Some(v), Some(p)) = (s.json(), s.person.clone()) else {
                    continue;
                };
                let codes = v["code"]["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        Some(format!("{}|{}", c["system"].as_str()?, c["code"].as_str()?))
                    });
                diagnoses.entry(p).or_default().extend(codes);
            }
        }
        Ok(issho_research::assess(
            &project.id,
            &project.profile,
            &quasi,
            &diagnoses,
        ))
    }
}

/// What a research export may ask: no `_since` (it would let the true times of changes be
/// found by bisection, and with them each person's date shift), `_typeFilter` only by token
/// parameters that are codes (not identifiers, ids, references, dates, text or chains),
/// types the project's profile releases.
pub(crate) fn check_research_request(
    project: &issho_research::Project,
    reg: &issho_search::Registry,
    req: &crate::export::ExportRequest,
) -> Result<()> {
    if req.since.is_some() {
        return Err(FhirError::bad_request(
            "_since is not available to research exports: the true times of changes would reveal each person's date shift",
        ));
    }
    for t in &req.types {
        if !project.profile.releases(t) {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "{t} is not released to the research project '{}' (its de-identification profile keeps it back)",
                    project.id
                ),
            ));
        }
    }
    for (t, filter) in &req.type_filters {
        for (name, _) in filter {
            let (code, modifier) = match name.split_once(':') {
                Some((c, m)) => (c, Some(m)),
                None => (name.as_str(), None),
            };
            // The specification's token parameters over coded elements only (a custom one, or
            // one over an identifier such as a specimen's accession number, could select a
            // person by what identifies them).
            let coded = RESEARCH_FILTERS.contains(&code)
                && reg
                    .param(t, code)
                    .is_some_and(|p| p.kind == issho_search::ParamKind::Token && !p.custom);
            let modifier_ok = matches!(
                modifier,
                None | Some("in" | "not-in" | "below" | "above" | "not")
            );
            if !coded || !modifier_ok {
                return Err(FhirError::bad_request(format!(
                    "_typeFilter: '{name}' is not available to research exports, which filter by codes only ({}; modifiers :in, :not-in, :below, :above, :not)",
                    RESEARCH_FILTERS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The search parameters a research export's `_typeFilter` may use: codes, not identifiers.
const RESEARCH_FILTERS: &[&str] = &[
    "code",
    "category",
    "status",
    "clinical-status",
    "verification-status",
    "combo-code",
    "component-code",
    "vaccine-code",
    "type",
    "class",
    "criticality",
    "severity",
    "intent",
    "priority",
    "gender",
    "_security",
];

/// The reach of a research permit, if it is one.
pub(crate) fn research_of(reach: &Reach) -> Option<&str> {
    match reach {
        Reach::Research(p) => Some(p),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consent(kind: &str, extra: Value) -> Value {
        let mut c = json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": RESEARCH.0, "code": RESEARCH.1}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p"}, "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": {"type": kind}});
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        c
    }

    #[test]
    fn research_consents_are_enforced_or_refused() {
        assert!(check_research_consent(&consent("deny", json!({}))).is_ok());
        assert!(check_research_consent(&consent("permit", json!({}))).is_ok());
        let by_actor = consent(
            "deny",
            json!({"provision": {"type": "deny", "actor": [{"reference": {"reference": "Organization/x"}}]}}),
        );
        assert_eq!(check_research_consent(&by_actor).unwrap_err().status, 422);
        let two = consent(
            "deny",
            json!({"scope": {"coding": [{"system": RESEARCH.0, "code": RESEARCH.1}, {"system": RESEARCH.0, "code": "patient-privacy"}]}}),
        );
        assert_eq!(check_research_consent(&two).unwrap_err().status, 422);
        assert_eq!(
            check_research_consent(&consent(
                "deny",
                json!({"patient": {"reference": "http://x/Patient/p"}})
            ))
            .unwrap_err()
            .status,
            422
        );
        assert_eq!(
            research_vote(&consent("deny", json!({})), "2026-12-04"),
            Some(false)
        );
        let later = consent(
            "permit",
            json!({"provision": {"type": "permit", "period": {"start": "2027-01-01"}}}),
        );
        assert_eq!(research_vote(&later, "2026-12-04"), None);
        assert_eq!(research_vote(&later, "2027-01-01"), Some(true));
        // A privacy Consent decides nothing about research, and the reverse.
        let mut d = view::ConsentDecision::default();
        crate::consent::consent_decision(&consent("deny", json!({})), "", &mut d);
        assert!(!d.refused);
    }
}
