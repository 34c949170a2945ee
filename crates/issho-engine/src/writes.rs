//! The write of one resource inside a store transaction — create with an id, update (or
//! create) honouring If-Match, delete, patch — each keyed by the ownership rule and checked
//! for enforceable Consents; shared by the plain interactions and transactions.

use crate::rest::{etag_matches, parse_body_id, stored_json};
use crate::*;
use issho_store::{PutResult, StoreTx};

/// The stored person of `body` by the ownership rule (`owner.rs`), over the transaction.
fn person_in(tx: &dyn StoreTx, rt: &str, body: &Value) -> Result<Option<String>> {
    let owner = crate::owner::owner_in(tx, rt, body)?;
    Ok(owner.column().map(str::to_string))
}

/// What the structure alone does not tell: an active Consent the gate could not enforce
/// exactly, and a ViewDefinition that cannot be run (422 either way; nothing is written).
pub(crate) fn check_content(rt: &str, resource: &Value) -> Result<()> {
    crate::consent::check_enforceable(rt, resource)?;
    if rt == "ViewDefinition" {
        issho_views::View::compile(resource).map_err(|e| {
            let mut issue = Issue::error(
                IssueType::Invariant,
                format!("the ViewDefinition cannot be run: {e}"),
            );
            issue.expression = Some("ViewDefinition".into());
            FhirError {
                status: 422,
                issues: vec![issue],
            }
        })?;
    }
    Ok(())
}

pub(crate) fn set_id(resource: &mut Value, id: &str) {
    if let Some(o) = resource.as_object_mut() {
        o.insert("id".into(), Value::String(id.to_string()));
    }
}

/// Write a brand-new resource with the given id.
pub(crate) fn put_new(
    tx: &mut dyn StoreTx,
    rt: &str,
    id: &str,
    resource: &mut Value,
    method: &str,
    prepared: Option<issho_store::Prepared>,
    link: bool,
) -> Result<WriteOutcome> {
    set_id(resource, id);
    check_content(rt, resource)?;
    let person = crate::owner::owner_of_new(tx, rt, resource)?
        .column()
        .map(str::to_string);
    let p = tx.put_prepared(rt, id, resource, person.as_deref(), method, prepared)?;
    after_put(tx, rt, id, resource, link, p.version == 1)?;
    Ok(written(rt, id, resource, p))
}

/// What follows a write inside its transaction: a Patient may be one person with Patients
/// at other institutions (a certain match links them, `identity.rs`) — when the writer may
/// link persons (`identity::may_link`): a clinician's write never merges two records.
/// `first`: this is the resource's first version ever.
fn after_put(
    tx: &mut dyn StoreTx,
    rt: &str,
    id: &str,
    resource: &Value,
    link: bool,
    first: bool,
) -> Result<()> {
    if rt == "Patient" && link {
        crate::identity::patient_written(tx, id, resource, first)?;
    }
    Ok(())
}

/// The outcome of a write; takes the stored resource out of `resource` (no copy).
fn written(rt: &str, id: &str, resource: &mut Value, p: PutResult) -> WriteOutcome {
    WriteOutcome {
        status: if p.created { 201 } else { 200 },
        resource_type: rt.to_string(),
        id: id.to_string(),
        resource: Some(std::mem::take(resource)),
        version: Some(p.version),
        last_updated: Some(p.last_updated),
        issues: Vec::new(),
    }
}

/// Update (or create) `rt/id` inside a transaction, honouring If-Match.
///
/// `may_create` is asked when the update would create the resource (update-as-create, or
/// re-creation after a deletion): creating needs the create permission, not only update.
/// `prepared`: the indexer's work on `resource` done before the transaction
/// (`Indexer::prepare`), for the resource exactly as given here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn update_in(
    tx: &mut dyn StoreTx,
    rt: &str,
    id: &str,
    resource: &mut Value,
    if_match: Option<&str>,
    may_create: &dyn Fn() -> Result<()>,
    prepared: Option<issho_store::Prepared>,
    link: bool,
) -> Result<WriteOutcome> {
    let current = tx.current(rt, id)?;
    match &current {
        Some(s) => etag_matches(if_match, s.version)?,
        None if if_match.is_some() => {
            return Err(FhirError::precondition(format!(
                "If-Match was given but {rt}/{id} does not exist"
            )));
        }
        None => {}
    }
    if current.as_ref().is_none_or(Stored::is_deleted) {
        may_create()?;
    }
    let method = "PUT";
    check_content(rt, resource)?;
    let person = person_in(tx, rt, resource)?;
    let p = tx.put_prepared(rt, id, resource, person.as_deref(), method, prepared)?;
    after_put(tx, rt, id, resource, link, p.version == 1)?;
    Ok(written(rt, id, resource, p))
}

pub(crate) fn delete_in(
    tx: &mut dyn StoreTx,
    rt: &str,
    id: &str,
    if_match: Option<&str>,
) -> Result<WriteOutcome> {
    let current = tx.current(rt, id)?;
    let Some(cur) = current else {
        if if_match.is_some() {
            return Err(FhirError::precondition(format!(
                "If-Match was given but {rt}/{id} does not exist"
            )));
        }
        // http.html: deleting a resource that does not exist at all is not an error.
        return Ok(WriteOutcome {
            status: 204,
            resource_type: rt.to_string(),
            id: id.to_string(),
            resource: None,
            version: None,
            last_updated: None,
            issues: vec![Issue::information(format!(
                "{rt}/{id} does not exist; nothing to delete"
            ))],
        });
    };
    etag_matches(if_match, cur.version)?;
    let p = tx.delete(rt, id)?;
    Ok(WriteOutcome {
        status: 204,
        resource_type: rt.to_string(),
        id: id.to_string(),
        resource: None,
        version: p.as_ref().map(|p| p.version),
        last_updated: p.as_ref().map(|p| p.last_updated),
        issues: vec![Issue::information(match p {
            Some(p) => format!("{rt}/{id} deleted (version {})", p.version),
            None => format!("{rt}/{id} was already deleted"),
        })],
    })
}

pub(crate) fn patch_in(
    tx: &mut dyn StoreTx,
    rt: &str,
    id: &str,
    patch: &Patch,
    if_match: Option<&str>,
    validate: bool,
    link: bool,
) -> Result<WriteOutcome> {
    let cur = match tx.current(rt, id)? {
        None => return Err(FhirError::not_found(format!("{rt}/{id} is not known"))),
        Some(s) if s.is_deleted() => {
            return Err(FhirError::new(
                410,
                IssueType::Deleted,
                format!("{rt}/{id} was deleted"),
            ));
        }
        Some(s) => s,
    };
    etag_matches(if_match, cur.version)?;
    let mut doc = stored_json(&cur)?;
    let res = match patch {
        Patch::Json(p) => issho_patch::apply_json_patch(&mut doc, p),
        Patch::FhirPath(p) => issho_patch::apply_fhirpath_patch(&mut doc, p),
    };
    res.map_err(|issue| FhirError {
        status: 422,
        issues: vec![issue],
    })?;
    if doc.get("resourceType").and_then(Value::as_str) != Some(rt)
        || parse_body_id(&doc) != Some(id)
    {
        return Err(FhirError::new(
            422,
            IssueType::Invalid,
            "the patch must not change the resource's type or id",
        ));
    }
    let issues = check_resource(Some(rt), &doc, validate, false);
    if let Some(mut e) = errors_only(issues) {
        e.status = 422;
        e.issues.insert(
            0,
            Issue::error(
                IssueType::Invalid,
                "the patched resource is not valid; nothing was changed",
            ),
        );
        return Err(e);
    }
    check_content(rt, &doc)?;
    let person = person_in(tx, rt, &doc)?;
    let p = tx.put(rt, id, &mut doc, person.as_deref(), "PATCH")?;
    after_put(tx, rt, id, &doc, link, p.version == 1)?;
    Ok(written(rt, id, &mut doc, p))
}
