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

use crate::*;
use issho_access::{Permit, Reach};
use issho_search::{Filter, Test};
use issho_store::StoreRead;
use std::collections::BTreeSet;

pub(crate) use crate::guard::{CARE, Guard, decides_access};

/// The limits of one permit for one resource type.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// The gate's permit this view was made from (it opens the store for writes).
    pub permit: Permit,
    pub reach: Reach,
    pub scope_filters: Vec<(String, String)>,
    /// For `Reach::CareOf`: the patients in a care relationship whose consent lets this
    /// organization see their record (computed once per request).
    pub persons: Option<Vec<String>>,
    /// Categories patients refused to share (a security label `system|code`, and the patients
    /// who refused it): their resources carrying it are hidden.
    pub refused_labels: Vec<(String, Vec<String>)>,
    /// Institutions whose data patients refused to share (`Organization/[id]`, compared with
    /// `meta.source`, and the patients who refused it).
    pub refused_sources: Vec<(String, Vec<String>)>,
    /// Under "share after consent": the patients in care who have not agreed yet (this
    /// organization sees only the data it holds itself).
    pub not_agreed: Vec<String>,
}

/// JP-CLINS indication tags (`meta.tag`): `UNINFORMED` (not yet told to the patient: hidden
/// from the patient), `UNDELIVERED` (not shared beyond the authoring institution).
pub(crate) const CLINS_INDICATION: &str =
    "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication";

pub(crate) use crate::consent::{ConsentDecision, consent_decision};

/// Most patients a care-relationship view is computed over (beyond: refused as too costly).
const MAX_CARE_PERSONS: usize = 50_000;

impl View {
    pub fn of(permit: &Permit) -> View {
        View {
            permit: permit.clone(),
            reach: permit.reach().clone(),
            scope_filters: permit.filters().to_vec(),
            persons: None,
            refused_labels: Vec::new(),
            refused_sources: Vec::new(),
            not_agreed: Vec::new(),
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
        // Labels come from stored Consents: built as the token match itself, never parsed (a
        // label with search syntax in it must not break, or widen, the condition).
        if param == "_tag" || param == "_security" {
            let (system, code) = label.split_once('|').unwrap_or(("", label));
            return Ok(Test::Values {
                keys: vec![param.to_string()],
                kind: issho_search::ParamKind::Token,
                components: Vec::new(),
                parts: Vec::new(),
                matches: vec![issho_search::Match::Token {
                    system: Some(system.to_string()),
                    code: Some(code.to_string()),
                }],
                negate: false,
            });
        }
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
        q.filters.into_iter().next().map(|f| f.test).ok_or_else(|| {
            FhirError::internal(format!("the label '{label}' gives no {param} condition"))
        })
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
                out.extend(self.refusal_filters(reg, rt)?);
                // Not agreed yet (share after consent): only what this organization holds.
                if !self.not_agreed.is_empty() {
                    let own = Self::label_test(reg, rt, "_source", org)?;
                    out.push(Filter {
                        name: "_consent".into(),
                        test: Test::NotAll(vec![
                            Test::PersonIn(self.not_agreed.clone()),
                            Test::NotAll(vec![own]),
                        ]),
                    });
                }
            }
            Reach::Research(_) => {
                // Not yet told to the patient, or not delivered beyond its institution:
                // not for research either.
                for code in ["UNINFORMED", "UNDELIVERED"] {
                    let t =
                        Self::label_test(reg, rt, "_tag", &format!("{CLINS_INDICATION}|{code}"))?;
                    out.push(Filter {
                        name: "_consent".into(),
                        test: Test::NotAll(vec![t]),
                    });
                }
                out.extend(self.refusal_filters(reg, rt)?);
            }
            Reach::All => {}
        }
        Ok(out)
    }

    /// Categories and institutions' data the persons refused (`refused_labels`,
    /// `refused_sources`): their resources so labelled or held there are hidden.
    fn refusal_filters(&self, reg: &issho_search::Registry, rt: &str) -> Result<Vec<Filter>> {
        let mut out = Vec::new();
        for (label, persons) in &self.refused_labels {
            let sec = Self::label_test(reg, rt, "_security", label)?;
            let whose = Test::PersonIn(persons.clone());
            out.push(Filter {
                name: "_consent".into(),
                test: Test::NotAll(vec![whose, sec]),
            });
        }
        for (source, persons) in &self.refused_sources {
            let from = Self::label_test(reg, rt, "_source", source)?;
            out.push(Filter {
                name: "_consent".into(),
                test: Test::NotAll(vec![Test::PersonIn(persons.clone()), from]),
            });
        }
        Ok(out)
    }

    /// The persons whose records this view reaches (`None`: everything).
    pub(crate) fn reached(&self) -> Option<Vec<String>> {
        match &self.reach {
            Reach::All => None,
            // The person of the token's Patient (computed per request, `view_with`).
            Reach::Patient(p) => Some(self.persons.clone().unwrap_or_else(|| vec![p.clone()])),
            Reach::CareOf(_) | Reach::Research(_) => Some(self.persons.clone().unwrap_or_default()),
        }
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
        if let Some(persons) = self.reached() {
            out.push(persons_filter(rt, persons));
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
        if self.unrestricted() {
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
        Ok(!r.search(&q)?.is_empty())
    }

    /// Whether a version's body (not necessarily current) lies within the reach: its owner by
    /// the ownership rule (for history and vread, whose versions may have belonged to another
    /// record), and the consent and JP-CLINS labels it carried.
    pub fn body_in_reach(&self, r: &dyn StoreRead, rt: &str, body: &Value) -> Result<bool> {
        let Some(ids) = self.reached() else {
            return Ok(true);
        };
        let owner = crate::owner::owner_in(r, rt, body)?;
        let person = match &owner {
            crate::owner::Owner::Person(p) if ids.contains(p) => Some(p.clone()),
            crate::owner::Owner::Shared => None,
            _ => return Ok(false),
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
        Ok(match &self.reach {
            Reach::Patient(_) => !has("tag", CLINS_INDICATION, "UNINFORMED"),
            Reach::CareOf(org) => {
                let source = body["meta"]["source"].as_str().unwrap_or_default();
                if has("tag", CLINS_INDICATION, "UNDELIVERED") && source != org {
                    return Ok(false);
                }
                let theirs =
                    |persons: &Vec<String>| person.as_ref().is_some_and(|p| persons.contains(p));
                let refused_label = self.refused_labels.iter().any(|(label, persons)| {
                    let (system, code) = label.split_once('|').unwrap_or(("", label));
                    has("security", system, code) && theirs(persons)
                });
                let refused_source = self
                    .refused_sources
                    .iter()
                    .any(|(s, persons)| s == source && theirs(persons));
                let waiting = source != org && theirs(&self.not_agreed);
                !(refused_label || refused_source || waiting)
            }
            // Research reaches de-identified exports only, never a version by itself.
            Reach::Research(_) => false,
            Reach::All => true,
        })
    }
}

/// "In the record of one of these patients" (the store's person column; any number of
/// them); for types that are patient data only when they refer to a person, also shared data
/// (no person).
fn persons_filter(rt: &str, persons: Vec<String>) -> Filter {
    let persons: Vec<String> = persons
        .into_iter()
        .filter(|p| p != crate::owner::RESTRICTED)
        .collect();
    Filter {
        name: "_reach".into(),
        test: if crate::owner::always_personal(rt) {
            Test::PersonIn(persons)
        } else {
            Test::PersonOrShared(persons)
        },
    }
}

impl Engine {
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
            only = Some(crate::identity::person_of_patient(r, p)?);
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
        if let Reach::Patient(p) = &view.reach {
            // A person's token reaches their whole record: every Patient linked to theirs.
            view.persons = Some(vec![crate::identity::person_of_patient(r, p)?]);
        }
        if let Reach::Research(_) = &view.reach {
            self.research_view(r, &mut view)?;
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
                    let fresh = self.store.reader(&permit)?;
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
            let mut sources: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (p, d) in &decisions {
                for s in &d.sources {
                    sources.entry(s.clone()).or_default().push(p.clone());
                }
            }
            view.refused_sources = sources.into_iter().collect();
            if self.config.consent_policy == crate::consent::ConsentPolicy::ShareAfterConsent {
                view.not_agreed = persons
                    .iter()
                    .filter(|p| !decisions.get(*p).is_some_and(|d| d.permitted))
                    .cloned()
                    .collect();
            }
            // Break-the-glass: patients opened in an emergency, whatever their consent.
            if let Some(g) = ctx.grant() {
                for p in self.glass_opened(r, g)? {
                    if !persons.contains(&p) {
                        persons.push(p.clone());
                    }
                    // The emergency opens the whole record, refused data included.
                    for (_, who) in view
                        .refused_labels
                        .iter_mut()
                        .chain(view.refused_sources.iter_mut())
                    {
                        who.retain(|x| x != &p);
                    }
                    view.not_agreed.retain(|x| x != &p);
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
        let rids = crate::consent::active_consents(r)?;
        let mut out: std::collections::HashMap<String, ConsentDecision> = Default::default();
        for chunk in rids.chunks(500) {
            for s in r.current_by_rids(chunk)? {
                let Some(v) = s.json() else { continue };
                // The Consent's person (the store's key: a linked person's Consents at
                // any of their Patients decide for the whole record).
                if v["patient"]["reference"].as_str().is_none() {
                    continue;
                }
                let Some(p) = s.person.clone().filter(|p| p != crate::owner::RESTRICTED) else {
                    continue;
                };
                consent_decision(&v, org, out.entry(p).or_default());
            }
        }
        Ok(out)
    }

    /// Patients in a care relationship with `org`: an Encounter there (service provider), an
    /// EpisodeOfCare managed there, or a referral (ServiceRequest) to it.
    fn care_persons(&self, r: &dyn StoreRead, org: &str) -> Result<Vec<String>> {
        let mut persons: BTreeSet<String> = BTreeSet::new();
        for (rt, _, param) in CARE {
            let pairs = vec![
                (param.to_string(), org.to_string()),
                ("_count".to_string(), (MAX_CARE_PERSONS * 4).to_string()),
            ];
            let q = issho_search::parse(Some(rt), &pairs, true).map_err(|issues| FhirError {
                status: 500,
                issues,
            })?;
            let rids = r.search(&q)?;
            // The store's person column (the patient of each record), not the bodies.
            persons.extend(
                r.persons_by_rids(&rids)?
                    .into_iter()
                    .filter(|p| p != crate::owner::RESTRICTED),
            );
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

    /// Under a restricted reach a search names one type (a search across all types is not
    /// offered); what chains and `_has` may pass through is decided hop by hop (`links.rs`).
    pub(crate) fn check_query_reach(&self, view: &View, rt: Option<&str>) -> Result<()> {
        if view.reach == Reach::All || rt.is_some() {
            return Ok(());
        }
        Err(FhirError::new(
            403,
            IssueType::Forbidden,
            "a search across all types is not available with this token; search one type, or use Patient/[id]/$everything",
        ))
    }

    /// A resource outside the view: reported as unknown.
    pub(crate) fn hidden(rt: &str, id: &str) -> FhirError {
        FhirError::not_found(format!("{rt}/{id} is not known"))
    }
}
