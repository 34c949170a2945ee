//! Transactions (http.html#transaction): every entry in one store transaction, all or
//! nothing. Phase 1, without the store: static checks, the identities that need no lookup,
//! reference rewriting with them, validation and index rows. Phase 2, in the writer:
//! conditional identities and references (a conditional reference may name what a
//! conditional create of the same transaction makes). Phase 3: the entries in the
//! specification's order (DELETE, POST, PUT/PATCH, GET), each checked by its guard before;
//! the guards' checks after the write run once every entry is written.

use crate::bundle::{
    Entry, Method, TxAccess, at, criteria_key, entry_error, entry_patch, error_entry,
    rewrite_known, rewrite_refs, stored_entry, write_response,
};
use crate::rest::{delete_in, parse_body_id, patch_in, put_new, update_in};
use crate::*;
use issho_store::{StoreRead, StoreTx};
use std::collections::HashMap;

/// What phase 1 prepared for the writer (cloned for each run of the job: a store with
/// several writers may run it again after a conflict).
#[derive(Clone)]
pub(crate) struct Plan {
    entries: Vec<Entry>,
    /// Each entry's id, when known without the store.
    assigned: Vec<Option<String>>,
    /// Index rows extracted before the transaction (entries whose identity and references
    /// are final).
    prepared: Vec<Option<issho_store::Prepared>>,
    /// Some references still need the store (conditional ones).
    unresolved: bool,
    /// The gate's permit of the first entry (each entry was checked): it opens the store.
    permit: Option<issho_access::Permit>,
}

/// What phase 2 found in the store.
struct Found {
    /// fullUrl → `Type/id` of entries whose identity was conditional.
    late: HashMap<String, String>,
    /// Criteria (canonical) → `Type/id` of resources conditional creates make here.
    created: HashMap<String, String>,
    /// The stored resource a conditional create matched.
    matched: Vec<Option<Stored>>,
    /// Entries whose id the server chose just now (nothing to check before writing).
    fresh: Vec<bool>,
}

/// A write whose after-checks wait for the end of the transaction.
type Pending = (crate::view::Guard, String, String, usize);

fn prefix(e: &Entry, mut err: FhirError) -> FhirError {
    for i in err.issues.iter_mut() {
        if i.expression.is_none() {
            i.expression = Some(at(e.index));
        }
        i.diagnostics = format!("entry {}: {}", e.index, i.diagnostics);
    }
    err
}

impl Engine {
    pub(crate) fn transaction(
        &self,
        ctx: &AccessContext,
        entries: Vec<Entry>,
        ret: Return,
    ) -> Result<Value> {
        let mut plan = self.plan_transaction(ctx, entries)?;
        let Some(permit) = plan.permit.take() else {
            // Nothing to write (only reads, or no entries): each read is the request on its
            // own, answered in its entry.
            let entry: Vec<Value> = plan
                .entries
                .iter()
                .map(|e| {
                    self.get_entry(
                        ctx,
                        None,
                        &e.url,
                        e.method == Method::Get,
                        e.base.as_deref(),
                    )
                    .unwrap_or_else(|err| error_entry(&err))
                })
                .collect();
            return Ok(serde_json::json!({
                "resourceType": "Bundle",
                "id": new_id(),
                "type": "transaction-response",
                "entry": entry,
            }));
        };
        let engine = self.clone();
        let ctx2 = ctx.clone();
        // The plan is consumed by its run: copied only for a store that may run the job again
        // (a copy of every entry's body and index rows cost the embedded ingest 6%).
        let mut plan = Some(plan);
        let responses = self.write(&permit, move |tx| -> Result<Vec<Value>> {
            let run = if tx.may_run_again() {
                plan.clone()
            } else {
                plan.take()
            };
            let run = run.ok_or_else(|| FhirError::internal("a transaction ran twice"))?;
            engine.run_transaction(&ctx2, tx, run, ret)
        })??;
        Ok(serde_json::json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "transaction-response",
            "entry": responses,
        }))
    }

    /// Phase 1.
    fn plan_transaction(&self, ctx: &AccessContext, mut entries: Vec<Entry>) -> Result<Plan> {
        // Phase 1, without the store: static checks, the identities that need no lookup,
        // reference rewriting with them, and validation. Only what truly needs the store
        // (conditional identities and references) is left for the writer.
        let mut seen = std::collections::HashSet::new();
        let mut permit = None;
        for e in &entries {
            if let Some(p) = self.check_entry(ctx, e).map_err(|err| prefix(e, err))? {
                permit.get_or_insert(p);
            }
            if let Some(f) = &e.full_url
                && !seen.insert(f.clone())
            {
                return Err(FhirError::bad_request(format!(
                    "fullUrl '{f}' appears more than once"
                ))
                .with_at(at(e.index)));
            }
        }
        let n = entries.len();
        let mut assigned: Vec<Option<String>> = vec![None; n];
        let mut known: HashMap<String, String> = HashMap::new();
        for (k, e) in entries.iter().enumerate() {
            assigned[k] = match e.method {
                Method::Post if e.if_none_exist.is_none() => Some(new_id()),
                Method::Put | Method::Patch if e.criteria().is_none() => {
                    e.instance_id().map(str::to_string)
                }
                _ => None,
            };
            if let (Some(id), Some(f)) = (&assigned[k], &e.full_url) {
                known.insert(f.clone(), format!("{}/{id}", e.resource_type()));
            }
        }
        let mut unresolved = false;
        for e in entries.iter_mut() {
            if let Some(r) = e.resource.as_mut() {
                unresolved |= rewrite_known(r, &known);
                if matches!(e.method, Method::Post | Method::Put) {
                    crate::origin::mark(ctx, self.gate.project_of(ctx), r);
                }
            }
        }
        if self.config.validate {
            for e in &entries {
                if let (Method::Post | Method::Put, Some(r)) = (e.method, &e.resource) {
                    let mut issues = check_resource(Some(e.resource_type()), r, true, true);
                    issues.retain(Issue::is_error);
                    if !issues.is_empty() {
                        return Err(prefix(
                            e,
                            FhirError {
                                status: 400,
                                issues,
                            },
                        ));
                    }
                    self.check_profiles(r).map_err(|err| prefix(e, err))?;
                }
            }
        }
        // Index rows of the entries whose identity and references are final are extracted
        // here, not on the single writer thread (the resource gets its id as the writer would).
        let mut prepared: Vec<Option<issho_store::Prepared>> = (0..n).map(|_| None).collect();
        if !unresolved {
            for (k, e) in entries.iter_mut().enumerate() {
                if let (Method::Post | Method::Put, Some(id), Some(r)) =
                    (e.method, &assigned[k], e.resource.as_mut())
                    && r.is_object()
                {
                    r["id"] = Value::String(id.clone());
                    prepared[k] = Some(self.store.prepare(r));
                }
            }
        }
        Ok(Plan {
            entries,
            assigned,
            prepared,
            unresolved,
            permit,
        })
    }

    /// Phases 2 and 3, in the write transaction.
    fn run_transaction(
        &self,
        ctx: &AccessContext,
        tx: &mut dyn StoreTx,
        mut plan: Plan,
        ret: Return,
    ) -> Result<Vec<Value>> {
        let access = TxAccess::new(self, ctx);
        // The conditions that decide a write (not conditional references, not reads).
        search::hold_conditions(
            tx,
            plan.entries.iter().filter_map(|e| match e.method {
                Method::Post => e.if_none_exist.as_deref().map(|c| (e.resource_type(), c)),
                Method::Put | Method::Patch | Method::Delete => {
                    e.criteria().map(|c| (e.resource_type(), c))
                }
                Method::Get | Method::Head => None,
            }),
        )?;
        let found = conditional_identities(&self.registry(), &access, tx, &mut plan)?;
        unique_identities(&plan)?;
        // References that needed the store: to conditional entries, and conditional ones.
        if plan.unresolved || !found.late.is_empty() {
            let mut cache = found.created.clone();
            for e in plan.entries.iter_mut() {
                if let Some(r) = e.resource.as_mut() {
                    let loc = format!("{}.resource", at(e.index));
                    rewrite_refs(&access, r, &found.late, tx, &mut cache, &loc)?;
                }
            }
        }
        let n = plan.entries.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&k| (plan.entries[k].method.rank(), k));
        let mut out: Vec<Value> = vec![Value::Null; n];
        let mut pending: Vec<Pending> = Vec::new();
        for k in order {
            out[k] = self.write_entry(ctx, &access, tx, &mut plan, &found, k, ret, &mut pending)?;
        }
        // Ownership by the transaction's final state (entries refer to each other in any
        // order), before the guards check what was written.
        let written: Vec<(String, String)> = pending
            .iter()
            .map(|(_, rt, id, _)| (rt.clone(), id.clone()))
            .collect();
        crate::owner::rekey_written(tx, &written)?;
        for (g, rt, id, k) in pending {
            g.after(tx, &rt, &id)
                .map_err(|err| entry_error(&plan.entries[k], err))?;
        }
        Ok(out)
    }

    /// Phase 3 for one entry: its guard before, the write (or read), its response.
    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &self,
        ctx: &AccessContext,
        access: &TxAccess<'_>,
        tx: &mut dyn StoreTx,
        plan: &mut Plan,
        found: &Found,
        k: usize,
        ret: Return,
        pending: &mut Vec<Pending>,
    ) -> Result<Value> {
        let e = &mut plan.entries[k];
        let rt = e.resource_type().to_string();
        // Access: the entry's target must be visible before and after the change.
        let action = match e.method {
            Method::Post => Some(Action::Create),
            Method::Put | Method::Patch => Some(Action::Update),
            Method::Delete => Some(Action::Delete),
            Method::Get | Method::Head => None,
        };
        let guard = match action {
            Some(a) => Some(
                access
                    .guard(tx, a, &rt)
                    .map_err(|err| err.with_at(at(e.index)))?,
            ),
            None => None,
        };
        let target = match e.method {
            Method::Delete => match e.criteria() {
                None => e.instance_id().map(str::to_string),
                Some(_) => plan.assigned[k].clone(),
            },
            Method::Put | Method::Patch => plan.assigned[k].clone(),
            _ => None,
        };
        if let (Some(g), Some(id), false) = (&guard, &target, found.fresh[k]) {
            g.before(tx, &rt, id)
                .map_err(|err| err.with_at(at(e.index)))?;
        }
        let prepared = plan.prepared[k].take();
        let res = self.apply_entry(
            ctx,
            tx,
            e,
            plan.assigned[k].clone(),
            found.matched[k].as_ref(),
            prepared,
            ret,
        );
        // After the write: still within reach (a created resource's id is in its
        // response location).
        let res = match (res, &guard) {
            (Ok(v), Some(g)) if e.method != Method::Delete => {
                let written = v["response"]["location"]
                    .as_str()
                    .and_then(|l| l.split('/').nth(1))
                    .map(str::to_string)
                    .or_else(|| target.clone());
                // Checked once every entry is written: entries may refer to each
                // other in any order.
                if let Some(id) = written {
                    pending.push((g.clone(), rt.clone(), id, k));
                }
                Ok(v)
            }
            (res, _) => res,
        };
        res.map_err(|err| entry_error(e, err))
    }

    /// The write (or read) of one entry, as its response entry.
    #[allow(clippy::too_many_arguments)]
    fn apply_entry(
        &self,
        ctx: &AccessContext,
        tx: &mut dyn StoreTx,
        e: &mut Entry,
        assigned: Option<String>,
        matched: Option<&Stored>,
        prepared: Option<issho_store::Prepared>,
        ret: Return,
    ) -> Result<Value> {
        let rt = e.resource_type().to_string();
        let link = crate::identity::may_link(ctx);
        match e.method {
            Method::Delete => match e.criteria() {
                None => match e.instance_id() {
                    Some(id) => delete_in(tx, &rt, id, e.if_match.as_deref()),
                    None => Err(FhirError::bad_request(format!(
                        "DELETE needs Type/id or Type?criteria, not '{}'",
                        e.url
                    ))),
                },
                Some(_) => match &assigned {
                    Some(id) => delete_in(tx, &rt, id, None),
                    None => Ok(WriteOutcome {
                        status: 204,
                        resource_type: rt.clone(),
                        id: String::new(),
                        resource: None,
                        version: None,
                        last_updated: None,
                        issues: vec![],
                    }),
                },
            }
            .map(|w| write_response(&w, ret)),
            Method::Post => {
                if let Some(s) = &matched {
                    let mut entry = stored_entry(s, ret == Return::Representation);
                    entry["response"]["status"] = Value::String("200 OK".into());
                    entry["response"]["location"] = Value::String(format!(
                        "{}/{}/_history/{}",
                        s.resource_type, s.id, s.version
                    ));
                    Ok(entry)
                } else {
                    let id = assigned.clone().unwrap_or_else(new_id);
                    let mut r = e.resource.take().unwrap_or(Value::Null);
                    put_new(tx, &rt, &id, &mut r, "POST", prepared, link)
                        .map(|w| write_response(&w, ret))
                }
            }
            Method::Put => {
                let id = assigned.clone().unwrap_or_default();
                let mut r = e.resource.take().unwrap_or(Value::Null);
                if let Some(o) = r.as_object_mut() {
                    o.insert("id".into(), Value::String(id.clone()));
                }
                update_in(
                    tx,
                    &rt,
                    &id,
                    &mut r,
                    e.if_match.as_deref(),
                    &self.create_check(ctx, &rt),
                    prepared,
                    link,
                )
                .map(|w| write_response(&w, ret))
            }
            Method::Patch => {
                let id = assigned.clone().unwrap_or_default();
                let patch = entry_patch(e.resource.take().unwrap_or(Value::Null))?;
                patch_in(
                    tx,
                    &rt,
                    &id,
                    &patch,
                    e.if_match.as_deref(),
                    self.config.validate,
                    link,
                )
                .map(|w| write_response(&w, ret))
            }
            // A failed read changes nothing: it is reported in its entry, not fatal.
            Method::Get | Method::Head => Ok(self
                .get_entry(
                    ctx,
                    Some(&*tx),
                    &e.url,
                    e.method == Method::Get,
                    e.base.as_deref(),
                )
                .unwrap_or_else(|err| error_entry(&err))),
        }
    }
}

/// Phase 2: the identities of conditional entries (`ifNoneExist`, conditional update, patch
/// and delete).
fn conditional_identities(
    reg: &issho_search::Registry,
    access: &TxAccess<'_>,
    tx: &dyn StoreRead,
    plan: &mut Plan,
) -> Result<Found> {
    // Phase 2, in the write transaction: conditional identities.
    let mut found = Found {
        late: HashMap::new(),
        created: HashMap::new(),
        matched: vec![None; plan.entries.len()],
        fresh: vec![false; plan.entries.len()],
    };
    for (k, e) in plan.entries.iter().enumerate() {
        if plan.assigned[k].is_some()
            || matches!(e.method, Method::Get | Method::Head)
            || (e.method == Method::Delete && e.criteria().is_none())
        {
            continue;
        }
        let Some((target, matched, fresh)) =
            conditional_target(reg, access, tx, e, &mut found.created)?
        else {
            continue;
        };
        found.matched[k] = matched;
        found.fresh[k] = fresh;
        if let Some(f) = &e.full_url {
            found
                .late
                .insert(f.clone(), format!("{}/{target}", e.resource_type()));
        }
        plan.assigned[k] = Some(target);
    }
    Ok(found)
}

/// The identity of one conditional entry (`None`: a conditional delete of nothing), and the
/// stored resource a conditional create matched.
fn conditional_target(
    reg: &issho_search::Registry,
    access: &TxAccess<'_>,
    tx: &dyn StoreRead,
    e: &Entry,
    created: &mut HashMap<String, String>,
) -> Result<Option<(String, Option<Stored>, bool)>> {
    if e.method == Method::Post {
        return conditional_create_target(reg, access, tx, e, created)
            .map(|(id, matched)| Some((id, matched, false)));
    }
    let rt = e.resource_type().to_string();
    let mut fresh = false;
    let target = {
        {
            let c = e.criteria().unwrap_or_default();
            let found = search::find(
                reg,
                tx,
                &rt,
                &format!("{rt}?{c}"),
                access.find_filters(tx, &rt)?,
            )
            .map_err(|err| err.with_at(at(e.index)))?;
            let body_id = e
                .resource
                .as_ref()
                .and_then(parse_body_id)
                .map(str::to_string);
            let fail = |status: u16, code: IssueType, msg: String| FhirError {
                status,
                issues: vec![
                    Issue::error(code, format!("entry {}: {msg}", e.index)).at(at(e.index)),
                ],
            };
            match (e.method, found.len()) {
                // Conditional delete of nothing: nothing to do.
                (Method::Delete, 0) => return Ok(None),
                // A restricted caller creates with a server-assigned id only (an id of their
                // choosing would tell a hidden resource from an absent one).
                (Method::Put, 0)
                    if body_id.is_some()
                        && !access.guard(tx, Action::Update, &rt)?.write.unrestricted() =>
                {
                    return Err(Engine::hidden(&rt, body_id.as_deref().unwrap_or_default())
                        .with_at(at(e.index)));
                }
                (Method::Put, 0) => match body_id {
                    Some(id) if tx.current(&rt, &id)?.is_some_and(|s| !s.is_deleted()) => {
                        return Err(fail(
                            400,
                            IssueType::Invalid,
                            format!(
                                "no match for '{}', but {rt}/{id} named by the body exists; the body's id cannot be used to create",
                                e.url
                            ),
                        ));
                    }
                    Some(id) => id,
                    None => {
                        fresh = true;
                        new_id()
                    }
                },
                (_, 1) => {
                    let id = found[0].id.clone();
                    if e.method == Method::Put && body_id.as_ref().is_some_and(|b| *b != id) {
                        return Err(fail(
                            400,
                            IssueType::Invalid,
                            format!(
                                "'{}' matches {rt}/{id} but the body's id is '{}'",
                                e.url,
                                body_id.unwrap_or_default()
                            ),
                        ));
                    }
                    id
                }
                (_, 0) => {
                    return Err(fail(
                        404,
                        IssueType::NotFound,
                        format!("'{}' matches no resource", e.url),
                    ));
                }
                (_, m) => {
                    return Err(fail(
                        412,
                        IssueType::MultipleMatches,
                        format!(
                            "'{}' matches {m} resources; it must match exactly one",
                            e.url
                        ),
                    ));
                }
            }
        }
    };
    Ok(Some((target, None, fresh)))
}

/// The identity of a conditional create (`ifNoneExist`): the one visible match, or a new id
/// that conditional references with the same criteria resolve to.
fn conditional_create_target(
    reg: &issho_search::Registry,
    access: &TxAccess<'_>,
    tx: &dyn StoreRead,
    e: &Entry,
    created: &mut HashMap<String, String>,
) -> Result<(String, Option<Stored>)> {
    let rt = e.resource_type().to_string();
    let c = e.if_none_exist.as_deref().unwrap_or_default();
    let crit = search::condition_url(&rt, c);
    let found = search::find(reg, tx, &rt, &crit, access.find_filters(tx, &rt)?)
        .map_err(|err| err.with_at(at(e.index)))?;
    match found.len() {
        0 => {
            let id = new_id();
            created.insert(criteria_key(&crit), format!("{rt}/{id}"));
            Ok((id, None))
        }
        1 => {
            let id = found[0].id.clone();
            Ok((id, found.into_iter().next()))
        }
        m => Err(FhirError::precondition(format!(
            "entry {}: ifNoneExist '{c}' matches {m} resources",
            e.index
        ))
        .with_at(at(e.index))),
    }
}

/// The same resource must not be written twice in one transaction (http.html#trules).
fn unique_identities(plan: &Plan) -> Result<()> {
    // The same resource must not be written twice in one transaction (http.html#trules).
    let mut identities: HashMap<String, usize> = HashMap::new();
    for (k, e) in plan.entries.iter().enumerate() {
        if matches!(e.method, Method::Get | Method::Head) {
            continue;
        }
        let id = match (e.method, &plan.assigned[k]) {
            (_, Some(id)) => id.clone(),
            (Method::Delete, None) => match e.instance_id() {
                Some(id) => id.to_string(),
                None => continue,
            },
            _ => continue,
        };
        let key = format!("{}/{id}", e.resource_type());
        if let Some(first) = identities.insert(key.clone(), e.index) {
            return Err(FhirError::bad_request(format!(
                "entries {first} and {} both act on {key}; a transaction may touch each resource once",
                e.index
            ))
            .with_at(at(e.index)));
        }
    }
    Ok(())
}
