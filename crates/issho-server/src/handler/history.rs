//! History interactions (instance, type, system) as history Bundles.

use super::request::{blocking, parse_instant_param};
use super::respond::Render;
use super::respond::body_response;
use crate::AppState;
use crate::format::{self, Summary};
use axum::response::Response;
use issho_engine::{AccessContext, FhirError, HistoryScope};
use serde_json::Value;
use std::sync::Arc;

/// Largest `_offset` accepted (deeper paging goes through `_since`/search criteria).
const MAX_OFFSET: usize = 1_000_000_000;

pub(super) async fn history(
    st: &Arc<AppState>,
    ctx: AccessContext,
    scope: HistoryScope,
    pairs: &[(String, String)],
    render: &Render,
    base: &str,
    path: &str,
) -> Result<Response, FhirError> {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let since = get("_since")
        .map(|v| parse_instant_param("_since", v))
        .transpose()?;
    let at = get("_at")
        .map(|v| {
            issho_model::instant::parse_range(v)
                .map(|r| (r.lo, r.hi))
                .ok_or_else(|| {
                    FhirError::bad_request(format!("_at '{v}' is not a valid date/time"))
                })
        })
        .transpose()?;
    let cfg = st.engine.config().clone();
    let count = match get("_count") {
        Some(c) => c.parse::<usize>().map_err(|_| {
            FhirError::bad_request(format!("_count '{c}' is not a non-negative integer"))
        })?,
        None => cfg.default_count,
    }
    .min(cfg.max_count);
    let offset = get("_offset")
        .map(|o| o.parse::<usize>().ok().filter(|&n| n <= MAX_OFFSET))
        .map(|o| {
            o.ok_or_else(|| {
                FhirError::bad_request(format!("_offset must be an integer from 0 to {MAX_OFFSET}"))
            })
        })
        .transpose()?
        .unwrap_or(0);
    let snapshot = get("_snapshot")
        .map(|o| o.parse::<i64>())
        .transpose()
        .map_err(|_| FhirError::bad_request("_snapshot must be an integer"))?;
    for (k, _) in pairs {
        if !matches!(
            k.as_str(),
            "_since"
                | "_at"
                | "_count"
                | "_offset"
                | "_snapshot"
                | "_format"
                | "_pretty"
                | "_summary"
                | "_elements"
        ) {
            return Err(FhirError::bad_request(format!(
                "history does not support the parameter '{k}'"
            )));
        }
    }
    let engine = st.engine.clone();
    let (rows, total, snap) = blocking(move || {
        let q = issho_engine::HistoryQuery {
            scope,
            since,
            at,
            count,
            offset,
            max_seq: snapshot,
        };
        engine.history(&ctx, q)
    })
    .await?;
    let link = |off: usize| {
        let mut q = vec![format!("_count={count}"), format!("_snapshot={snap}")];
        if let Some(s) = get("_since") {
            q.push(format!(
                "_since={}",
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        if let Some(a) = get("_at") {
            q.push(format!(
                "_at={}",
                percent_encoding::utf8_percent_encode(a, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        if off > 0 {
            q.push(format!("_offset={off}"));
        }
        format!("{base}/{path}?{}", q.join("&"))
    };
    let mut links = vec![
        serde_json::json!({"relation": "self", "url": link(offset)}),
        serde_json::json!({"relation": "first", "url": link(0)}),
    ];
    if offset > 0 {
        links.push(
            serde_json::json!({"relation": "previous", "url": link(offset.saturating_sub(count))}),
        );
    }
    if (offset + rows.len()) < total as usize && count > 0 {
        links.push(serde_json::json!({"relation": "next", "url": link(offset + count)}));
    }
    let entries: Vec<Value> = rows
        .iter()
        .map(|s| {
            let mut e = serde_json::Map::new();
            e.insert("fullUrl".into(), Value::String(format!("{base}/{}/{}", s.resource_type, s.id)));
            if let Some(v) = s.json() {
                let v = if render.summary != Summary::False || render.elements.is_some() {
                    format::shape(v, render.summary, render.elements.as_deref())
                } else {
                    v
                };
                e.insert("resource".into(), v);
            }
            let url = match s.method.as_str() {
                "POST" => s.resource_type.clone(),
                _ => format!("{}/{}", s.resource_type, s.id),
            };
            e.insert("request".into(), serde_json::json!({"method": if s.method == "PATCH" { "PATCH" } else { s.method.as_str() }, "url": url}));
            let code = match s.method.as_str() {
                "POST" => "201 Created",
                "DELETE" => "204 No Content",
                _ if s.version == 1 => "201 Created",
                _ => "200 OK",
            };
            e.insert(
                "response".into(),
                serde_json::json!({
                    "status": code,
                    "etag": format!("W/\"{}\"", s.version),
                    "lastModified": issho_model::instant::format_instant(s.last_updated),
                }),
            );
            Value::Object(e)
        })
        .collect();
    let mut bundle = serde_json::json!({
        "resourceType": "Bundle",
        "id": issho_engine::new_bundle_id(),
        "type": "history",
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Ok(body_response(200, &bundle, render.out))
}
