//! The terminology operations (`CodeSystem`, `ValueSet`, `ConceptMap`) and
//! `StructureDefinition/$snapshot`: parameters from the query (GET) or a Parameters body
//! (POST), the work in the engine.

use super::request::{blocking, parse_json};
use super::respond::{Render, body_response};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use issho_engine::{AccessContext, Engine, FhirError};
use serde_json::Value;

/// One request to a conformance operation.
pub(super) struct OpRequest<'a> {
    pub engine: Engine,
    pub ctx: AccessContext,
    pub method: &'a Method,
    pub seg: &'a [&'a str],
    pub pairs: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub render: &'a Render,
}

/// The operation `op` (`$name`) on `rt` is one of these.
pub(super) fn handles(rt: &str, op: &str) -> bool {
    match op.strip_prefix('$') {
        Some("snapshot") => rt == "StructureDefinition",
        Some(o) => issho_engine::TermOp::of(rt, o).is_some(),
        None => false,
    }
}

/// Runs the operation `op` on `rt` ([`handles`]).
pub(super) async fn operation(q: OpRequest<'_>, rt: &str, op: &str) -> Result<Response, FhirError> {
    let name = op.trim_start_matches('$');
    match issho_engine::TermOp::of(rt, name) {
        Some(t) => terminology(q, rt, t).await,
        None => snapshot(q).await,
    }
}

/// `[CodeSystem|ValueSet|ConceptMap]/[id/]$op`.
async fn terminology(
    q: OpRequest<'_>,
    rt: &str,
    op: issho_engine::TermOp,
) -> Result<Response, FhirError> {
    let id = match q.seg {
        [_, id, _] => Some(id.to_string()),
        _ => None,
    };
    let input = if *q.method == Method::POST && !q.body.is_empty() {
        issho_engine::TermInput::Parameters(parse_json(q.headers, &q.body, false)?)
    } else {
        issho_engine::TermInput::Query(q.pairs.to_vec())
    };
    let lang = q
        .headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let rt = rt.to_string();
    let (engine, ctx) = (q.engine, q.ctx);
    let out = blocking(move || {
        engine.terminology_operation(&ctx, &rt, id.as_deref(), op, input, lang.as_deref())
    })
    .await?;
    Ok(body_response(200, &out, q.render.out))
}

/// `StructureDefinition/$snapshot` (`url`, or a `definition` in a Parameters body) and
/// `StructureDefinition/[id]/$snapshot`.
async fn snapshot(q: OpRequest<'_>) -> Result<Response, FhirError> {
    use issho_engine::SnapshotOf;
    let of = if let [_, id, _] = q.seg {
        SnapshotOf::Id(id.to_string())
    } else if *q.method == Method::POST && !q.body.is_empty() {
        let p: Value = parse_json(q.headers, &q.body, false)?;
        let params = p["parameter"].as_array().cloned().unwrap_or_default();
        if p["resourceType"] == "StructureDefinition" {
            SnapshotOf::Definition(p)
        } else if let Some(d) = params.iter().find(|x| x["name"] == "definition") {
            SnapshotOf::Definition(d["resource"].clone())
        } else if let Some(u) = params
            .iter()
            .find(|x| x["name"] == "url")
            .and_then(|x| x["valueUri"].as_str().or(x["valueCanonical"].as_str()))
        {
            SnapshotOf::Url(u.to_string())
        } else {
            return Err(FhirError::bad_request(
                "$snapshot takes a definition (StructureDefinition) or a url parameter",
            ));
        }
    } else {
        match q.pairs.iter().find(|(k, _)| k == "url") {
            Some((_, u)) => SnapshotOf::Url(u.clone()),
            None => {
                return Err(FhirError::bad_request(
                    "$snapshot takes a url parameter (or POST a definition)",
                ));
            }
        }
    };
    let (engine, ctx) = (q.engine, q.ctx);
    let out = blocking(move || engine.snapshot_operation(&ctx, of)).await?;
    Ok(body_response(200, &out, q.render.out))
}
