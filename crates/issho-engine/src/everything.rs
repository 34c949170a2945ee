//! The patient compartment: compartment search (`Patient/ID/Observation?…`) and
//! `Patient/$everything` (instance and type level).
//!
//! Membership follows the R4 CompartmentDefinition for Patient: a resource of type T is in the
//! compartment of Patient/ID when any of T's compartment parameters (e.g. `subject`,
//! `performer`) refers to Patient/ID. The condition is one search filter over all those
//! parameters, so it composes with any other search parameters, sorting and paging.

use crate::*;
use issho_search::{Filter, ParamKind, Test};
use issho_store::StoreRead;
use std::collections::HashSet;

/// The filter "in the compartment of Patient/`id`" for resources of `rt` (None when `rt` is
/// never in a patient compartment). `person = None`: in any patient's compartment; `Some`:
/// the whole record of Patient/`id`'s person (the store's person column, `owner.rs`) — the
/// resources referring to that Patient and to every Patient linked with it (`identity.rs`)
/// and what belongs to them. A client asks for one institution's part with the search
/// parameters themselves (`Patient/[id]/Observation?patient=[id]`). Resources naming
/// several persons are in no one's record (only callers who see everything see them).
pub(crate) fn compartment_filter(rt: &str, person: Option<&str>) -> Result<Option<Filter>> {
    let in_compartment =
        rt == "Patient" || issho_model::r4().patient_compartment_params(rt).is_some();
    if !in_compartment {
        return Ok(None);
    }
    if let Some(person) = person {
        return Ok(Some(Filter {
            name: "_compartment".into(),
            test: Test::PersonIn(vec![person.to_string()]),
        }));
    }
    let Some(params) = issho_model::r4().patient_compartment_params(rt) else {
        return Ok(None);
    };
    let mut keys = Vec::new();
    for p in params {
        // Let the search crate resolve each parameter to its index keys.
        let probe = [(p.clone(), "Patient/x".to_string())];
        let q = issho_search::parse(Some(rt), &probe, true).map_err(|issues| FhirError {
            status: 500,
            issues,
        })?;
        for f in q.filters {
            if let Test::Values {
                keys: k,
                kind: ParamKind::Reference,
                ..
            } = f.test
            {
                keys.extend(k);
            }
        }
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(Filter {
        name: "_compartment".into(),
        test: Test::Missing {
            keys,
            kind: ParamKind::Reference,
            components: Vec::new(),
            parts: Vec::new(),
            missing: false,
        },
    }))
}

/// The value of a query parameter.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Engine {
    /// Search inside a patient's compartment: `GET Patient/{id}/{type}?…` (`type = "*"`: every
    /// type of the compartment, like a system search).
    pub(crate) fn compartment_search_unaudited(
        &self,
        ctx: &AccessContext,
        patient_id: &str,
        resource_type: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchResult> {
        let r = self.snapshot(ctx, Action::Read, Some("Patient"))?;
        self.compartment_search_on(ctx, &*r, patient_id, resource_type, params, strict)
    }

    /// [`Engine::compartment_search_unaudited`] over the snapshot `r` (a GET entry of a batch
    /// or transaction).
    pub(crate) fn compartment_search_on(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        patient_id: &str,
        resource_type: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchResult> {
        let pv = self.view(ctx, Action::Read, Some("Patient"), r)?;
        match r.current("Patient", patient_id)? {
            Some(s)
                if !s.is_deleted() && pv.sees(&self.registry(), r, "Patient", patient_id)? => {}
            _ => {
                return Err(FhirError::not_found(format!(
                    "Patient/{patient_id} is not known"
                )));
            }
        }
        if resource_type == "*" {
            return self.everything_in(ctx, r, Some(patient_id), params, false);
        }
        if !issho_model::r4().is_resource_type(resource_type) {
            return Err(FhirError::new(
                404,
                IssueType::NotSupported,
                format!("unknown resource type '{resource_type}'"),
            ));
        }
        let view = self.view(ctx, Action::Search, Some(resource_type), r)?;
        let person = crate::identity::person_of_patient(r, patient_id)?;
        let Some(filter) = compartment_filter(resource_type, Some(&person))? else {
            return Err(FhirError::bad_request(format!(
                "{resource_type} is not part of the Patient compartment"
            )));
        };
        self.search_with(
            ctx,
            &view,
            r,
            Some(resource_type),
            params,
            strict,
            vec![filter],
        )
    }

    /// `Patient/{id}/$everything` (or, with `None`, `Patient/$everything` over every patient).
    /// Parameters: `_since`, `_type`, `start`, `end`, `_count`.
    pub(crate) fn everything_unaudited(
        &self,
        ctx: &AccessContext,
        patient_id: Option<&str>,
        params: &[(String, String)],
    ) -> Result<SearchResult> {
        let r = self.snapshot(ctx, Action::Operation, Some("Patient"))?;
        self.everything_on(ctx, &*r, patient_id, params)
    }

    /// [`Engine::everything_unaudited`] over the snapshot `r` (a GET entry of a bundle).
    pub(crate) fn everything_on(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        patient_id: Option<&str>,
        params: &[(String, String)],
    ) -> Result<SearchResult> {
        let view = self.view(ctx, Action::Operation, Some("Patient"), r)?;
        // Type level (every patient) narrows to the one patient of a patient-facing token;
        // other restricted callers name the patient.
        let own;
        let patient_id = match (patient_id, &view.reach) {
            (Some(id), _) => Some(id),
            (None, issho_access::Reach::Patient(p)) => {
                own = p.clone();
                Some(own.as_str())
            }
            (None, issho_access::Reach::All) => None,
            (None, _) => {
                return Err(FhirError::new(
                    403,
                    IssueType::Forbidden,
                    "name the patient: Patient/[id]/$everything",
                ));
            }
        };
        if let Some(id) = patient_id {
            match r.current("Patient", id)? {
                Some(s) if !s.is_deleted() && view.sees(&self.registry(), r, "Patient", id)? => {}
                _ => return Err(FhirError::not_found(format!("Patient/{id} is not known"))),
            }
        }
        self.everything_in(ctx, r, patient_id, params, true)
    }

    fn everything_in(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        patient_id: Option<&str>,
        params: &[(String, String)],
        with_referenced: bool,
    ) -> Result<SearchResult> {
        for (k, _) in params {
            if !matches!(
                k.as_str(),
                "_since"
                    | "_type"
                    | "start"
                    | "end"
                    | "_count"
                    | "_page"
                    | "_offset"
                    | "_format"
                    | "_pretty"
                    | "_summary"
                    | "_elements"
            ) {
                return Err(FhirError::bad_request(format!(
                    "$everything does not support the parameter '{k}'"
                )));
            }
        }
        let types: Vec<String> = match param(params, "_type") {
            Some(list) => {
                let v: Vec<String> = list
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                if let Some(bad) = v.iter().find(|t| !issho_model::r4().is_resource_type(t)) {
                    return Err(FhirError::bad_request(format!(
                        "_type: '{bad}' is not a resource type"
                    )));
                }
                v
            }
            None => {
                let mut v: Vec<String> = issho_model::r4()
                    .resource_types()
                    .iter()
                    .filter(|t| {
                        *t == "Patient" || issho_model::r4().patient_compartment_params(t).is_some()
                    })
                    .cloned()
                    .collect();
                v.sort_by_key(|t| t != "Patient");
                v
            }
        };
        let count = param(params, "_count")
            .map(|c| {
                c.parse::<usize>().map_err(|_| {
                    FhirError::bad_request(format!("_count '{c}' is not a non-negative integer"))
                })
            })
            .transpose()?
            .unwrap_or(self.config.default_count)
            .min(self.config.max_count);
        let offset = param(params, "_offset")
            .and_then(|o| o.parse::<usize>().ok())
            .unwrap_or(0);
        let check_date = |name: &str| -> Result<Option<String>> {
            match param(params, name) {
                None => Ok(None),
                Some(v) if issho_model::instant::parse_range(v).is_some() => {
                    Ok(Some(v.to_string()))
                }
                Some(v) => Err(FhirError::bad_request(format!(
                    "{name} '{v}' is not a valid date"
                ))),
            }
        };
        let (start, end, since) = (
            check_date("start")?,
            check_date("end")?,
            check_date("_since")?,
        );
        // The remembered result set, or a fresh one.
        let token = param(params, "_page").map(str::to_string);
        // A paging token serves only the caller and the very request it was made for.
        let bound: Vec<Option<&str>> = ["_type", "start", "end", "_since"]
            .iter()
            .map(|k| param(params, k))
            .collect();
        let owner = format!("{}\neverything {patient_id:?} {bound:?}", ctx.owner());
        let cached = token.as_deref().and_then(|t| self.pages.get(t, &owner));
        let set = match cached {
            Some(c) => c,
            None => {
                let mut rids: Vec<i64> = Vec::new();
                let mut seen: HashSet<i64> = HashSet::new();
                let person = match patient_id {
                    Some(id) => Some(crate::identity::person_of_patient(r, id)?),
                    None => None,
                };
                for t in &types {
                    let Ok(view) = self.view(ctx, Action::Search, Some(t), r) else {
                        continue;
                    };
                    let access = view.filters(&self.registry(), t)?;
                    let Some(filter) = compartment_filter(t, person.as_deref())? else {
                        continue;
                    };
                    let mut p: Vec<(String, String)> = Vec::new();
                    let has_date = issho_search::Registry::r4().param(t, "date").is_some();
                    if has_date {
                        if let Some(s) = &start {
                            p.push(("date".into(), format!("ge{s}")));
                        }
                        if let Some(e) = &end {
                            p.push(("date".into(), format!("le{e}")));
                        }
                    }
                    if let Some(s) = &since {
                        p.push(("_lastUpdated".into(), format!("ge{s}")));
                    }
                    let mut q =
                        issho_search::parse(Some(t), &p, true).map_err(|issues| FhirError {
                            status: 400,
                            issues,
                        })?;
                    q.filters.push(filter);
                    q.filters.extend(access);
                    q.count = None;
                    rids.extend(r.search(&q)?.into_iter().filter(|rid| seen.insert(*rid)));
                }
                // The person's data in types outside the R4 compartment (a Task for them, their
                // Device…): by the ownership rule's person column, each checked like a read.
                if let Some(pid) = &person {
                    let outside: Vec<String> = issho_model::r4()
                        .resource_types()
                        .iter()
                        .filter(|t| {
                            !crate::owner::always_personal(t)
                                && (param(params, "_type").is_none() || types.contains(t))
                        })
                        .cloned()
                        .collect();
                    // (`_type` may name compartment types only: nothing more to find.)
                    let mut q = issho_search::SearchQuery {
                        types: outside.clone(),
                        ..Default::default()
                    };
                    q.filters.push(issho_search::Filter {
                        name: "_person".into(),
                        test: Test::PersonIn(vec![pid.to_string()]),
                    });
                    if let Some(s) = &since {
                        let lu = issho_search::parse(
                            None,
                            &[("_lastUpdated".into(), format!("ge{s}"))],
                            true,
                        )
                        .map_err(|issues| FhirError {
                            status: 400,
                            issues,
                        })?;
                        q.filters.extend(lu.filters);
                    }
                    let found: Vec<i64> = if outside.is_empty() {
                        Vec::new()
                    } else {
                        r.search(&q)?
                            .into_iter()
                            .filter(|rid| !seen.contains(rid))
                            .collect()
                    };
                    for s in self.visible_only(ctx, r, r.current_by_rids(&found)?)? {
                        if seen.insert(s.rid) {
                            rids.push(s.rid);
                        }
                    }
                }
                if with_referenced {
                    // Resources the record refers to (practitioners, organizations, medications…),
                    // but never another patient's data.
                    let mut extra = Vec::new();
                    for chunk in rids.chunks(500) {
                        for s in r.current_by_rids(chunk)? {
                            if let Some(v) = s.json() {
                                collect_refs(&v, &mut extra);
                            }
                        }
                    }
                    extra.sort();
                    extra.dedup();
                    let mut candidates = Vec::new();
                    for (t, id) in extra {
                        if t == "Patient"
                            || issho_model::r4().patient_compartment_params(&t).is_some()
                            || (param(params, "_type").is_some() && !types.contains(&t))
                        {
                            continue;
                        }
                        if let Some(s) = r.current(&t, &id)?
                            && !s.is_deleted()
                            && seen.insert(s.rid)
                        {
                            candidates.push(s);
                        }
                    }
                    // What the caller may read, with one view per type.
                    rids.extend(
                        self.visible_only(ctx, r, candidates)?
                            .into_iter()
                            .map(|s| s.rid),
                    );
                }
                let total = Some(rids.len() as u64);
                std::sync::Arc::new(pages::CachedSearch::new(rids, true, total))
            }
        };
        let page: Vec<i64> = set.rids.iter().skip(offset).take(count).copied().collect();
        let has_next = offset + count < set.rids.len();
        let token = match token {
            Some(t) if self.pages.get(&t, &owner).is_some() => Some(t),
            _ if has_next || offset > 0 => Some(self.pages.insert(set.clone(), &owner)),
            _ => None,
        };
        let mut echo: Vec<(String, String)> = Vec::new();
        for k in ["_type", "start", "end", "_since"] {
            if let Some(v) = param(params, k) {
                echo.push((k.to_string(), v.to_string()));
            }
        }
        // The paging rule: a page is filtered by the caller's access as it is now.
        let matches = self.visible_only(ctx, r, r.current_by_rids(&page)?)?;
        Ok(SearchResult {
            matches,
            included: Vec::new(),
            total: set.total,
            offset,
            count,
            has_next,
            params: echo,
            warnings: Vec::new(),
            page_token: token,
        })
    }
}

/// Every literal `Type/id` reference in a resource.
fn collect_refs(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, c) in o {
                if k == "reference"
                    && let Value::String(s) = c
                {
                    let mut parts = s.split('/');
                    if let (Some(t), Some(id), None) = (parts.next(), parts.next(), parts.next())
                        && issho_model::r4().is_resource_type(t)
                    {
                        out.push((t.to_string(), id.to_string()));
                    }
                    continue;
                }
                collect_refs(c, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}
