//! Who wrote a record: what a person writes into their own record (measurements, their own
//! notes, devices, Consents…) is marked as theirs (`meta.tag` `urn:issho:record-origin|patient`),
//! and a person may change or delete only what is theirs — never what their care providers
//! recorded (a prescription, a lab result, a diagnosis), which stays as the provider wrote it.
//! A person's Consents are theirs to change whoever recorded them.

use crate::*;
use issho_access::Role;

/// The code system of the mark.
pub(crate) const ORIGIN_SYSTEM: &str = "urn:issho:record-origin";

/// True when `ctx` writes as the person themself.
pub(crate) fn writes_as_patient(ctx: &AccessContext) -> bool {
    ctx.grant().is_some_and(|g| g.role == Role::Patient)
}

/// Mark who wrote a resource (before validation and indexing): what the person writes as
/// theirs, what a clinician writes as their organization's ([`stamp_source`]), a view a
/// research project's member writes as that project's ([`project_source`]).
pub(crate) fn mark(ctx: &AccessContext, project: Option<&str>, body: &mut Value) {
    stamp_source(ctx, body);
    // What a person writes is not an institution's data: no `meta.source` of theirs may say
    // so (a clinician would take it for that institution's, and a refusal of it would hide it).
    if writes_as_patient(ctx)
        && let Some(meta) = body.get_mut("meta").and_then(Value::as_object_mut)
    {
        meta.remove("source");
    }
    if let Some(p) = project
        && body["resourceType"] == "ViewDefinition"
        && let Some(o) = body.as_object_mut()
    {
        let meta = o
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("source".into(), Value::String(project_source(p)));
        }
    }
    if !writes_as_patient(ctx) || marked(body) {
        return;
    }
    let Some(o) = body.as_object_mut() else {
        return;
    };
    let meta = o
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let tags = meta
        .entry("tag")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(tags) = tags.as_array_mut() {
        tags.push(
            serde_json::json!({"system": ORIGIN_SYSTEM, "code": "patient",
            "display": "written by the person"}),
        );
    }
}

/// True when `body` carries the mark.
pub(crate) fn marked(body: &Value) -> bool {
    body["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["system"] == ORIGIN_SYSTEM && t["code"] == "patient")
}

/// A person may change `rt` with this current body: their own records, and their Consents.
pub(crate) fn patient_may_change(rt: &str, body: &Value) -> bool {
    rt == "Consent" || marked(body)
}

/// A clinician's writes hold their organization's data: `meta.source` is their organization
/// (`Organization/[id]`), whatever the client wrote there — the source a person's refusal of
/// an institution's data is about (`consent.rs`), and the `UNDELIVERED` tag's holder.
fn stamp_source(ctx: &AccessContext, body: &mut Value) {
    let Some(g) = ctx.grant() else { return };
    let Some(org) = g.organization.as_deref().filter(|_| g.role.is_clinician()) else {
        return;
    };
    let Some(o) = body.as_object_mut() else {
        return;
    };
    let meta = o
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("source".into(), Value::String(org.to_string()));
    }
}

/// The `meta.source` of the views (ViewDefinitions) a research project's members keep: a
/// project's members change only their project's views.
pub(crate) fn project_source(project: &str) -> String {
    format!("urn:issho:research-project:{project}")
}
