//! Instance and type level interactions: create, read, vread, update, patch, delete, history.

pub(crate) use crate::writes::{delete_in, patch_in, put_new, set_id, update_in};
use crate::*;
use issho_store::{HistoryQuery, StoreRead};

/// The person a resource names directly (the ownership rule without looking up referenced
/// resources): for audit records of writes, which name the patients concerned.
pub(crate) fn person_of(resource_type: &str, body: &Value) -> Option<String> {
    match crate::owner::owner_of(resource_type, body, &mut |_, _| Ok(None)) {
        Ok(crate::owner::Owner::Person(p)) => Some(p),
        _ => None,
    }
}

pub(crate) fn etag_matches(if_match: Option<&str>, current: u64) -> Result<()> {
    let Some(raw) = if_match else { return Ok(()) };
    match parse_etag(raw) {
        Some(v) if v == current => Ok(()),
        Some(v) => Err(FhirError::precondition(format!(
            "version conflict: If-Match names version {v} but the current version is {current}"
        ))),
        None => Err(FhirError::bad_request(format!(
            "If-Match value '{raw}' is not an ETag of the form W/\"<version>\""
        ))),
    }
}

/// `W/"3"` (or `"3"`, or `3`) → 3.
pub fn parse_etag(raw: &str) -> Option<u64> {
    let s = raw.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    let s = s.trim_matches('"');
    s.parse().ok()
}

pub(crate) fn parse_body_id(resource: &Value) -> Option<&str> {
    resource.get("id").and_then(Value::as_str)
}

/// Stored JSON → Value (the store only keeps valid JSON it wrote itself).
pub(crate) fn stored_json(s: &Stored) -> Result<Value> {
    s.json().ok_or_else(|| {
        FhirError::internal(format!(
            "stored {}/{} is not readable",
            s.resource_type, s.id
        ))
    })
}

impl Engine {
    /// The permission check for an update that turns out to create the resource.
    pub(crate) fn create_check(
        &self,
        ctx: &AccessContext,
        rt: &str,
    ) -> impl Fn() -> Result<()> + Send + 'static {
        let (gate, ctx, rt) = (self.gate.clone(), ctx.clone(), rt.to_string());
        move || -> Result<()> { Ok(gate.check(&ctx, Action::Create, Some(&rt)).map(|_| ())?) }
    }

    /// Visible now, or — deleted — its last version lay within reach (as a read answers 410
    /// rather than 404 to whoever could read it): its history stays theirs to read.
    fn sees_or_saw(
        &self,
        view: &crate::view::View,
        r: &dyn StoreRead,
        rt: &str,
        id: &str,
    ) -> Result<bool> {
        if view.sees(&self.registry(), r, rt, id)? {
            return Ok(true);
        }
        // The row's state only (no body): only a deleted resource's last version is read.
        let Some((version, true)) = r.state(rt, id)? else {
            return Ok(false);
        };
        if version < 2 || (!view.scope_filters.is_empty() && !view.unrestricted()) {
            return Ok(false);
        }
        if view.unrestricted() {
            return Ok(true);
        }
        match r.version(rt, id, version - 1)?.and_then(|s| s.json()) {
            Some(b) => view.body_in_reach(r, rt, &b),
            None => Ok(false),
        }
    }

    pub(crate) fn check_type(&self, resource_type: &str) -> Result<()> {
        if issho_model::r4().is_resource_type(resource_type) {
            Ok(())
        } else {
            Err(FhirError::new(
                404,
                IssueType::NotSupported,
                format!("unknown resource type '{resource_type}'"),
            ))
        }
    }

    fn prepare_write(&self, resource_type: &str, resource: &Value) -> Result<Vec<Issue>> {
        let mut issues = check_resource(Some(resource_type), resource, self.config.validate, false);
        if let Some(e) = errors_only(issues.clone()) {
            return Err(e);
        }
        if self.config.validate {
            issues.extend(self.check_profiles(resource)?);
        }
        Ok(issues)
    }

    // ---- read ------------------------------------------------------------------------

    pub(crate) fn read_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
    ) -> Result<Stored> {
        let r = self.snapshot(ctx, Action::Read, Some(resource_type))?;
        self.read_in(ctx, &*r, resource_type, id)
    }

    /// Read over the snapshot `r` (a plain read, or a GET entry of a batch or transaction).
    pub(crate) fn read_in(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        resource_type: &str,
        id: &str,
    ) -> Result<Stored> {
        self.check_type(resource_type)?;
        let view = self.view(ctx, Action::Read, Some(resource_type), r)?;
        // Visibility first, from the index and row state alone: an absent and a hidden
        // resource take the same work (no body is read for what the caller may not see).
        if view.sees(&self.registry(), r, resource_type, id)?
            && let Some(s) = r.current(resource_type, id)?
            && !s.is_deleted()
        {
            return Ok(s);
        }
        // A deleted resource is reported as deleted only to those who could read it.
        match r.state(resource_type, id)? {
            Some((version, true)) if self.sees_or_saw(&view, r, resource_type, id)? => {
                Err(FhirError::new(
                    410,
                    IssueType::Deleted,
                    format!("{resource_type}/{id} was deleted (version {version})"),
                ))
            }
            _ => Err(Engine::hidden(resource_type, id)),
        }
    }

    pub(crate) fn vread_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<Stored> {
        let r = self.snapshot(ctx, Action::Read, Some(resource_type))?;
        self.vread_in(ctx, &*r, resource_type, id, version)
    }

    /// Vread over the snapshot `r`.
    pub(crate) fn vread_in(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<Stored> {
        self.check_type(resource_type)?;
        let view = self.view(ctx, Action::Read, Some(resource_type), r)?;
        let v: u64 = version.parse().map_err(|_| {
            FhirError::not_found(format!(
                "'{version}' is not a version of {resource_type}/{id}"
            ))
        })?;
        // An old version is shown when the resource is visible now and that version lay
        // within reach too (it may have belonged to another patient before).
        if !view.unrestricted() {
            let now = self.sees_or_saw(&view, r, resource_type, id)?;
            let then = match r.version(resource_type, id, v)?.and_then(|s| s.json()) {
                Some(b) => view.body_in_reach(r, resource_type, &b)?,
                None => false,
            };
            if !(now && then) {
                return Err(Engine::hidden(resource_type, id));
            }
            let current = r.current(resource_type, id)?.map(|s| s.version);
            if !view.scope_filters.is_empty() && current != Some(v) {
                return Err(FhirError::new(
                    403,
                    IssueType::Forbidden,
                    "earlier versions are not available with a search-restricted scope",
                ));
            }
        }
        match r.version(resource_type, id, v)? {
            None => Err(FhirError::not_found(format!(
                "{resource_type}/{id} has no version {v}"
            ))),
            Some(s) if s.is_deleted() => Err(FhirError::new(
                410,
                IssueType::Deleted,
                format!("version {v} of {resource_type}/{id} is a deletion"),
            )),
            Some(s) => Ok(s),
        }
    }

    // ---- create ----------------------------------------------------------------------

    /// Create with a server-assigned id; with `if_none_exist`, a conditional create.
    pub(crate) fn create_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        mut resource: Value,
        if_none_exist: Option<String>,
    ) -> Result<WriteOutcome> {
        self.check_type(resource_type)?;
        let guard = self.guard(ctx, Action::Create, resource_type, if_none_exist.is_some())?;
        crate::origin::mark(ctx, self.gate.project_of(ctx), &mut resource);
        let issues = self.prepare_write(resource_type, &resource)?;
        let rt = resource_type.to_string();
        let reg = self.registry();
        let link = crate::identity::may_link(ctx);
        let result = self.write(&guard.write.permit.clone(), move |tx| -> Result<WriteOutcome> {
            if let Some(criteria) = &if_none_exist {
                search::hold_conditions(tx, [(rt.as_str(), criteria.as_str())])?;
                let found = search::find(&reg, tx, &rt, criteria, guard.find_filters(&rt)?)?;
                match found.len() {
                    0 => {}
                    1 => {
                        let s = &found[0];
                        return Ok(WriteOutcome {
                            status: 200,
                            resource_type: rt.clone(),
                            id: s.id.clone(),
                            resource: Some(stored_json(s)?),
                            version: Some(s.version),
                            last_updated: Some(s.last_updated),
                            issues: vec![Issue::information(format!(
                                "conditional create: {}/{} already matches '{criteria}'; nothing created",
                                s.resource_type, s.id
                            ))],
                        });
                    }
                    n => {
                        return Err(FhirError::precondition(format!(
                            "conditional create: '{criteria}' matches {n} resources; it must match at most one"
                        )));
                    }
                }
            }
            let id = new_id();
            let out = put_new(tx, &rt, &id, &mut resource, "POST", None, link)?;
            guard.after(tx, &rt, &id)?;
            Ok(out)
        })??;
        Ok(WriteOutcome {
            issues: [issues, result.issues.clone()].concat(),
            ..result
        })
    }

    // ---- update ----------------------------------------------------------------------

    /// Update (or create with the client's id). `if_match` is the raw If-Match header.
    pub(crate) fn update_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        mut resource: Value,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.check_type(resource_type)?;
        let guard = self.guard(ctx, Action::Update, resource_type, false)?;
        if !valid_id(id) {
            return Err(FhirError::bad_request(format!(
                "'{id}' is not a valid FHIR id"
            )));
        }
        match parse_body_id(&resource) {
            None => {
                return Err(FhirError::new(
                    400,
                    IssueType::Required,
                    format!("the resource in an update must carry its id ('{id}')"),
                ));
            }
            Some(bid) if bid != id => {
                return Err(FhirError::bad_request(format!(
                    "the resource id '{bid}' does not match the id in the URL ('{id}')"
                )));
            }
            _ => {}
        }
        crate::origin::mark(ctx, self.gate.project_of(ctx), &mut resource);
        let issues = self.prepare_write(resource_type, &resource)?;
        let (rt, id) = (resource_type.to_string(), id.to_string());
        let may_create = self.create_check(ctx, resource_type);
        // Index rows are extracted here, not on the single writer thread.
        let mut prepared = Some(self.store.prepare(&resource));
        let link = crate::identity::may_link(ctx);
        let out = self.write(
            &guard.write.permit.clone(),
            move |tx| -> Result<WriteOutcome> {
                guard.before(tx, &rt, &id)?;
                let out = update_in(
                    tx,
                    &rt,
                    &id,
                    &mut resource,
                    if_match.as_deref(),
                    &may_create,
                    // A second run (after a conflict) lets the store extract the rows again.
                    prepared.take(),
                    link,
                )?;
                guard.after(tx, &rt, &id)?;
                Ok(out)
            },
        )??;
        Ok(WriteOutcome { issues, ..out })
    }

    /// Conditional update: `PUT Type?criteria`.
    pub(crate) fn conditional_update_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        criteria: &str,
        mut resource: Value,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.check_type(resource_type)?;
        let guard = self.guard(ctx, Action::Update, resource_type, true)?;
        crate::origin::mark(ctx, self.gate.project_of(ctx), &mut resource);
        let issues = self.prepare_write(resource_type, &resource)?;
        let (rt, criteria) = (resource_type.to_string(), criteria.to_string());
        let may_create = self.create_check(ctx, resource_type);
        let reg = self.registry();
        let link = crate::identity::may_link(ctx);
        let out = self.write(&guard.write.permit.clone(), move |tx| -> Result<WriteOutcome> {
            search::hold_conditions(tx, [(rt.as_str(), criteria.as_str())])?;
            let found = search::find(
                &reg,
                tx,
                &rt,
                &format!("{rt}?{criteria}"),
                guard.find_filters(&rt)?,
            )?;
            let body_id = parse_body_id(&resource).map(str::to_string);
            match found.len() {
                0 => {
                    let chosen = body_id.is_some();
                    let id = match body_id {
                        // A restricted caller creates with a server-assigned id only (an id of
                        // their choosing would tell a hidden resource from an absent one).
                        Some(id) if !guard.write.unrestricted() => {
                            return Err(Engine::hidden(&rt, &id));
                        }
                        Some(id) => {
                            if tx.current(&rt, &id)?.is_some_and(|s| !s.is_deleted()) {
                                return Err(FhirError::bad_request(format!(
                                    "conditional update: no match for '{criteria}', but {rt}/{id} exists; \
                                     the body's id cannot be used to create"
                                )));
                            }
                            id
                        }
                        None => new_id(),
                    };
                    if chosen {
                        guard.before(tx, &rt, &id)?;
                    }
                    // The stored body carries its id (also when the server chose it).
                    set_id(&mut resource, &id);
                    let out = update_in(
                        tx,
                        &rt,
                        &id,
                        &mut resource,
                        if_match.as_deref(),
                        &may_create,
                        None,
                        link,
                    )?;
                    guard.after(tx, &rt, &id)?;
                    Ok(out)
                }
                1 => {
                    let id = found[0].id.clone();
                    if let Some(bid) = body_id
                        && bid != id
                    {
                        return Err(FhirError::bad_request(format!(
                            "conditional update: '{criteria}' matches {rt}/{id} but the body's id is '{bid}'"
                        )));
                    }
                    set_id(&mut resource, &id);
                    let out = update_in(
                        tx,
                        &rt,
                        &id,
                        &mut resource,
                        if_match.as_deref(),
                        &may_create,
                        None,
                        link,
                    )?;
                    guard.after(tx, &rt, &id)?;
                    Ok(out)
                }
                n => Err(FhirError::precondition(format!(
                    "conditional update: '{criteria}' matches {n} resources; it must match at most one"
                ))),
            }
        })??;
        Ok(WriteOutcome { issues, ..out })
    }

    // ---- patch -----------------------------------------------------------------------

    pub(crate) fn patch_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        patch: Patch,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.check_type(resource_type)?;
        let guard = self.guard(ctx, Action::Update, resource_type, false)?;
        let (rt, id) = (resource_type.to_string(), id.to_string());
        let validate = self.config.validate;
        let link = crate::identity::may_link(ctx);
        self.write(
            &guard.write.permit.clone(),
            move |tx| -> Result<WriteOutcome> {
                guard.before(tx, &rt, &id)?;
                let out = patch_in(tx, &rt, &id, &patch, if_match.as_deref(), validate, link)?;
                guard.after(tx, &rt, &id)?;
                Ok(out)
            },
        )?
    }

    /// Conditional patch: `PATCH Type?criteria`.
    pub(crate) fn conditional_patch_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        criteria: &str,
        patch: Patch,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.check_type(resource_type)?;
        let guard = self.guard(ctx, Action::Update, resource_type, true)?;
        let (rt, criteria) = (resource_type.to_string(), criteria.to_string());
        let validate = self.config.validate;
        let reg = self.registry();
        let link = crate::identity::may_link(ctx);
        self.write(&guard.write.permit.clone(), move |tx| -> Result<WriteOutcome> {
            search::hold_conditions(tx, [(rt.as_str(), criteria.as_str())])?;
            let found = search::find(
                &reg,
                tx,
                &rt,
                &format!("{rt}?{criteria}"),
                guard.find_filters(&rt)?,
            )?;
            match found.len() {
                0 => Err(FhirError::not_found(format!(
                    "conditional patch: nothing matches '{criteria}'"
                ))),
                1 => {
                    let id = found[0].id.clone();
                    let out = patch_in(tx, &rt, &id, &patch, if_match.as_deref(), validate, link)?;
                    guard.after(tx, &rt, &id)?;
                    Ok(out)
                }
                n => Err(FhirError::precondition(format!(
                    "conditional patch: '{criteria}' matches {n} resources; it must match exactly one"
                ))),
            }
        })?
    }

    // ---- delete ----------------------------------------------------------------------

    pub(crate) fn delete_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.check_type(resource_type)?;
        let guard = self.guard(ctx, Action::Delete, resource_type, false)?;
        let (rt, id) = (resource_type.to_string(), id.to_string());
        self.write(
            &guard.write.permit.clone(),
            move |tx| -> Result<WriteOutcome> {
                guard.before(tx, &rt, &id)?;
                delete_in(tx, &rt, &id, if_match.as_deref())
            },
        )?
    }

    /// Conditional delete: `DELETE Type?criteria` (at most one match).
    pub(crate) fn conditional_delete_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        criteria: &str,
    ) -> Result<WriteOutcome> {
        self.check_type(resource_type)?;
        let guard = self.guard(ctx, Action::Delete, resource_type, true)?;
        let (rt, criteria) = (resource_type.to_string(), criteria.to_string());
        let reg = self.registry();
        self.write(&guard.write.permit.clone(), move |tx| -> Result<WriteOutcome> {
            search::hold_conditions(tx, [(rt.as_str(), criteria.as_str())])?;
            let found = search::find(
                &reg,
                tx,
                &rt,
                &format!("{rt}?{criteria}"),
                guard.find_filters(&rt)?,
            )?;
            match found.len() {
                0 => Ok(WriteOutcome {
                    status: 204,
                    resource_type: rt.clone(),
                    id: String::new(),
                    resource: None,
                    version: None,
                    last_updated: None,
                    issues: vec![Issue::information(format!(
                        "conditional delete: nothing matches '{criteria}'"
                    ))],
                }),
                1 => delete_in(tx, &rt, &found[0].id, None),
                n => Err(FhirError::precondition(format!(
                    "conditional delete: '{criteria}' matches {n} resources; issho deletes at most one at a time"
                ))),
            }
        })?
    }

    // ---- history ---------------------------------------------------------------------

    /// History at system, type or instance level. `q.max_seq` is the paging snapshot (None =
    /// now). Returns versions newest first, the total, and the sequence high-water mark used.
    /// History over the snapshot `r`.
    pub(crate) fn history_in(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        mut q: HistoryQuery,
    ) -> Result<(Vec<Stored>, u64, i64)> {
        let rt = match &q.scope {
            HistoryScope::System => None,
            HistoryScope::Type(t) | HistoryScope::Instance(t, _) => {
                self.check_type(t)?;
                Some(t.as_str())
            }
        };
        let view = self.view(ctx, Action::History, rt, r)?;
        let max_seq = match q.max_seq {
            Some(s) => s,
            None => r.max_seq()?,
        };
        if let HistoryScope::Instance(t, id) = &q.scope
            && r.current(t, id)?.is_none()
        {
            return Err(FhirError::not_found(format!("{t}/{id} is not known")));
        }
        if !view.unrestricted() {
            // Restricted callers: the history of one resource they can see now, showing only
            // the versions that lay within their reach. Type and system history would mix
            // everyone's changes (and their counts), so they are not offered.
            let HistoryScope::Instance(t, id) = &q.scope else {
                return Err(FhirError::new(
                    403,
                    IssueType::Forbidden,
                    "type and system history are not available with this token; read the history of one resource, or use Patient/[id]/$everything?_since=…",
                ));
            };
            if !self.sees_or_saw(&view, r, t, id)? {
                return Err(Engine::hidden(t, id));
            }
            if !view.scope_filters.is_empty() {
                // Earlier versions may not have met the scope's search conditions.
                return Err(FhirError::new(
                    403,
                    IssueType::Forbidden,
                    "history is not available with a search-restricted scope; read the current version",
                ));
            }
            let mut all = q.clone();
            all.count = usize::MAX;
            all.offset = 0;
            all.max_seq = Some(max_seq);
            let (rows, _) = r.history(&all)?;
            let mut visible: Vec<Stored> = Vec::new();
            for s in rows {
                if let Some(b) = s.json()
                    && view.body_in_reach(r, t, &b)?
                {
                    visible.push(s);
                }
            }
            let total = visible.len() as u64;
            let count = q.count.min(self.config.max_count);
            let page = visible.into_iter().skip(q.offset).take(count).collect();
            return Ok((page, total, max_seq));
        }
        q.count = q.count.min(self.config.max_count);
        q.max_seq = Some(max_seq);
        let (rows, total) = r.history(&q)?;
        Ok((rows, total, max_seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_follows_the_compartment_elements() {
        let c = serde_json::json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}});
        assert_eq!(person_of("Condition", &c).as_deref(), Some("p1"));
        let o = serde_json::json!({"resourceType": "Observation", "performer": [{"reference": "Practitioner/d"}, {"reference": "Patient/p2"}]});
        assert_eq!(person_of("Observation", &o).as_deref(), Some("p2"));
        let i = serde_json::json!({"resourceType": "Immunization", "patient": {"reference": "Patient/p3/_history/2"}});
        assert_eq!(person_of("Immunization", &i).as_deref(), Some("p3"));
        let org = serde_json::json!({"resourceType": "Organization"});
        assert_eq!(person_of("Organization", &org), None);
        assert_eq!(
            person_of("Patient", &serde_json::json!({"id": "me"})).as_deref(),
            Some("me")
        );
    }
}
