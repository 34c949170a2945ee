//! The operations on a person's record and its audit: `Patient/$match`, `$merge`,
//! `$unmerge`, `$link`/`$unlink`, `$summary`, `$break-glass`, `$access-log`,
//! `Composition/$document`, `DocumentReference/$withdraw` and `[base]/$audit` — thin: each
//! hands its parameters to the engine.

use super::request::*;
use super::respond::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use issho_engine::{AccessContext, Engine, FhirError};
use issho_model::Issue;
use serde_json::{Value, json};

/// The record operation `method` `seg` names, answered (`None`: not one of them).
#[allow(clippy::too_many_arguments)]
pub(super) async fn dispatch(
    engine: &Engine,
    ctx: &AccessContext,
    method: &Method,
    seg: &[&str],
    pairs: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
    base: &str,
    render: &Render,
) -> Result<Option<Response>, FhirError> {
    let (engine, ctx) = (engine.clone(), ctx.clone());
    Ok(match (method.as_str(), seg) {
        ("POST", ["Patient", "$match"]) => {
            let input = parse_json(headers, body, false)?;
            let base = base.to_string();
            let b = blocking(move || engine.match_patients(&ctx, &input, &base)).await?;
            Some(body_response(200, &b, render.out))
        }
        ("POST", ["Patient", "$merge"]) => {
            // A registrar merges a duplicate Patient (source) into the one that stays.
            let input = parse_json(headers, body, false)?;
            let out = blocking(move || engine.merge_patients(&ctx, &input)).await?;
            Some(body_response(200, &out, render.out))
        }
        ("POST", ["Patient", id, "$unmerge"]) => {
            let id = id.to_string();
            let out = blocking(move || engine.unmerge_patient(&ctx, &id)).await?;
            Some(body_response(200, &out, render.out))
        }
        ("POST", ["Patient", id, op @ ("$link" | "$unlink")]) => {
            // A registrar links two Patients into one person, or takes one out.
            let input = if body.is_empty() && *op == "$unlink" {
                serde_json::json!({"resourceType": "Parameters"})
            } else {
                parse_json(headers, body, false)?
            };
            let (id, op) = (id.to_string(), op.to_string());
            let person = blocking(move || match op.as_str() {
                "$link" => engine.link_patients(&ctx, &id, &input),
                _ => engine.unlink_patient(&ctx, &id),
            })
            .await?;
            Some(body_response(200, &person, render.out))
        }
        ("GET" | "POST", ["Composition", id, "$document"]) => {
            // The document a Composition heads (as received, or put together).
            let (id, base) = (id.to_string(), base.to_string());
            let b = blocking(move || engine.composition_document(&ctx, &id, &base)).await?;
            Some(body_response(200, &b, render.out))
        }
        ("GET" | "POST", ["Patient", id, "$summary"]) => {
            // The person's record across institutions as a document (six items, emergency,
            // pharmacy).
            let mut p = pairs.to_vec();
            if method == Method::POST {
                p.extend(form_pairs(headers, body)?);
            }
            let kind = p
                .iter()
                .find(|(k, _)| k == "kind")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "six-items".into());
            let (id, base) = (id.to_string(), base.to_string());
            let b = blocking(move || engine.summary(&ctx, &id, &kind, &base)).await?;
            Some(body_response(200, &b, render.out))
        }
        ("POST", ["DocumentReference", id, "$withdraw"]) => {
            // The sender takes a document back (and what it alone brought).
            let id = id.to_string();
            let oo = blocking(move || engine.withdraw_document(&ctx, &id)).await?;
            Some(body_response(200, &oo, render.out))
        }
        ("POST", ["Patient", id, "$break-glass"]) => {
            // An emergency physician opens a record in an emergency, stating why.
            let input = parse_json(headers, body, false)?;
            let reason = input["parameter"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "reason")
                .and_then(|p| p["valueString"].as_str())
                .unwrap_or_default()
                .to_string();
            let id = id.to_string();
            let e2 = engine.clone();
            blocking(move || e2.break_glass(&ctx, &id, &reason)).await?;
            Some(outcome_response(
                200,
                &[Issue::information(format!(
                    "the record is open for {} minutes; every access is recorded and reviewed, and the person is told",
                    engine.config().break_glass_for.as_secs() / 60
                ))],
                render.out,
            ))
        }
        ("GET", ["Patient", id, "$access-log"]) => {
            // A person's own access log: who read or changed their record, when, and why.
            let since = pairs
                .iter()
                .find(|(k, _)| k == "_since")
                .map(|(_, v)| parse_instant_param("_since", v))
                .transpose()?;
            let count = count_param(pairs)?;
            let id = id.to_string();
            let events = blocking(move || engine.access_log(&ctx, &id, since, count)).await?;
            Some(body_response(200, &audit_bundle(events), render.out))
        }
        ("GET", ["$audit"]) => {
            let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let since = get("_since")
                .map(|v| parse_instant_param("_since", &v))
                .transpose()?;
            let count = count_param(pairs)?;
            let (agent, patient) = (get("agent"), get("patient"));
            let events = blocking(move || {
                engine.audit_search(&ctx, agent.as_deref(), patient.as_deref(), since, count)
            })
            .await?;
            Some(body_response(200, &audit_bundle(events), render.out))
        }
        _ => None,
    })
}

/// `_count` for the audit views (default 100, at most 1,000).
fn count_param(pairs: &[(String, String)]) -> Result<usize, FhirError> {
    match pairs.iter().find(|(k, _)| k == "_count") {
        None => Ok(100),
        Some((_, v)) => v
            .parse::<usize>()
            .map(|n| n.min(1000))
            .map_err(|_| FhirError::bad_request(format!("_count '{v}' is not a number"))),
    }
}

/// AuditEvents as a searchset Bundle.
fn audit_bundle(events: Vec<Value>) -> Value {
    let entries: Vec<Value> = events
        .into_iter()
        .map(|e| json!({"resource": e, "search": {"mode": "match"}}))
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "id": issho_engine::new_bundle_id(),
        "type": "searchset",
        "total": entries.len(),
    });
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}
