//! The terminology operations over HTTP (issho-terminology's `ops`): `CodeSystem/$lookup`,
//! `$validate-code` and `$subsumes`, `ValueSet/$expand` and `$validate-code`,
//! `ConceptMap/$translate`, at type and instance level, each through the gate (reading the
//! operation's resource type) and audited. `displayLanguage` defaults to the request's
//! `Accept-Language`.

use crate::terminology::StoreSource;
use crate::*;
use issho_terminology::ops::{self, OpError, Params};

/// A terminology operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermOp {
    Lookup,
    ValidateCode,
    Subsumes,
    Expand,
    Translate,
}

impl TermOp {
    /// The operation named `name` (without `$`) on `rt`, when there is one.
    pub fn of(rt: &str, name: &str) -> Option<TermOp> {
        Some(match (rt, name) {
            ("CodeSystem", "lookup") => TermOp::Lookup,
            ("CodeSystem" | "ValueSet", "validate-code") => TermOp::ValidateCode,
            ("CodeSystem", "subsumes") => TermOp::Subsumes,
            ("ValueSet", "expand") => TermOp::Expand,
            ("ConceptMap", "translate") => TermOp::Translate,
            _ => return None,
        })
    }
}

/// Where the parameters come from.
pub enum TermInput {
    Query(Vec<(String, String)>),
    Parameters(Value),
}

fn op_error(e: OpError) -> FhirError {
    FhirError {
        status: e.status,
        issues: vec![e.issue],
    }
}

impl Engine {
    /// Runs a terminology operation on `rt` (and the instance `id`, when given).
    pub fn terminology_operation(
        &self,
        ctx: &AccessContext,
        rt: &str,
        id: Option<&str>,
        op: TermOp,
        input: TermInput,
        accept_language: Option<&str>,
    ) -> Result<Value> {
        let name = match op {
            TermOp::Lookup => "$lookup",
            TermOp::ValidateCode => "$validate-code",
            TermOp::Subsumes => "$subsumes",
            TermOp::Expand => "$expand",
            TermOp::Translate => "$translate",
        };
        let target = id.map(|i| format!("{rt}/{i}"));
        let label = match &target {
            Some(t) => format!("{t}/{name}"),
            None => format!("{rt}/{name}"),
        };
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            target.clone(),
            Some(label),
            || self.terminology_unaudited(ctx, rt, id, op, input, accept_language),
            |_, _| {},
        )
    }

    fn terminology_unaudited(
        &self,
        ctx: &AccessContext,
        rt: &str,
        id: Option<&str>,
        op: TermOp,
        input: TermInput,
        accept_language: Option<&str>,
    ) -> Result<Value> {
        let r = self.snapshot(ctx, Action::Read, Some(rt))?;
        let mut p = match input {
            TermInput::Query(q) => Params::from_query(&q),
            TermInput::Parameters(v) => Params::from_parameters(&v).map_err(op_error)?,
        };
        if let Some(l) = accept_language.filter(|l| !l.trim().is_empty() && l.trim() != "*") {
            p.default("displayLanguage", l);
        }
        let instance = match id {
            Some(i) => Some(
                r.current(rt, i)?
                    .filter(|s| !s.is_deleted())
                    .and_then(|s| s.json())
                    .ok_or_else(|| FhirError::not_found(format!("{rt}/{i} is not known")))?,
            ),
            None => None,
        };
        let src = StoreSource {
            r: &*r,
            cache: Some(&self.code_systems),
        };
        let now = issho_model::instant::format_instant(issho_store::now_micros());
        let i = instance.as_ref();
        match (op, rt) {
            (TermOp::Lookup, _) => ops::lookup(&src, &p, i),
            (TermOp::ValidateCode, "CodeSystem") => ops::validate_code_in_system(&src, &p, i),
            (TermOp::ValidateCode, _) => ops::validate_code_in_value_set(&src, &p, i),
            (TermOp::Subsumes, _) => ops::subsumes(&src, &p, i),
            (TermOp::Expand, _) => ops::expand_value_set(&src, &p, i, &now),
            (TermOp::Translate, _) => ops::translate(&src, &p, i),
        }
        .map_err(op_error)
    }
}

/// The id a loaded CodeSystem is stored under: the id of the stored one with the same url
/// and version, else the url's last segment made an id (with a hash of the url when that id
/// holds another code system).
fn code_system_id(r: &dyn issho_store::StoreRead, cs: &Value) -> Result<String> {
    let url = cs["url"].as_str().unwrap_or_default();
    let version = cs["version"].as_str();
    use crate::packages::{by_canonical, clip, id_chars, short_hash};
    if let Some(s) = by_canonical(r, "CodeSystem", url, version)?
        .into_iter()
        .next()
    {
        return Ok(s.id);
    }
    let tail = clip(
        &id_chars(url.rsplit('/').next().unwrap_or("codesystem")),
        40,
    );
    let id = clip(
        &match version {
            Some(v) => id_chars(&format!("{tail}-{v}")),
            None => tail,
        },
        64,
    );
    match r.current("CodeSystem", &id)?.and_then(|s| s.json()) {
        Some(other) if other["url"].as_str() != Some(url) => {
            Ok(format!("{}-{}", clip(&id, 55), short_hash(url)))
        }
        _ => Ok(id),
    }
}

impl Engine {
    /// Stores loaded code systems (administrators and the operator's tools): each as the
    /// CodeSystem of its url and version, replacing the one stored for them, in one
    /// transaction. Returns one line per code system.
    pub fn import_code_systems(&self, ctx: &AccessContext, systems: Vec<Value>) -> Result<String> {
        self.gate.check(ctx, Action::Admin, None)?;
        let permit = self.system_permit("terminology import")?;
        let r = self.store.reader(&permit)?;
        let mut entries = Vec::new();
        let mut lines = Vec::new();
        for mut cs in systems {
            let id = code_system_id(&*r, &cs)?;
            cs["id"] = Value::String(id.clone());
            lines.push(format!(
                "CodeSystem/{id}: {} version {} ({} concepts)",
                cs["url"].as_str().unwrap_or("?"),
                cs["version"].as_str().unwrap_or("-"),
                cs["count"]
            ));
            entries.push(serde_json::json!({
                "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                "resource": cs,
                "request": {"method": "PUT", "url": format!("CodeSystem/{id}")},
            }));
        }
        drop(r);
        let bundle =
            serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        self.process_bundle(ctx, bundle, None, Return::Minimal)?;
        Ok(lines.join("\n"))
    }
}
