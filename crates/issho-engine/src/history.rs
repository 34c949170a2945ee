//! The history interaction as a request: parameters in, a `history` Bundle out — one code
//! path for `GET [base]/…/_history` and for history GET entries of batches and transactions.

use crate::*;
use issho_store::{HistoryQuery, HistoryScope, StoreRead};

/// Largest `_offset` accepted (deeper paging goes through `_since`).
const MAX_OFFSET: usize = 1_000_000_000;

/// A `_since`/`_at` style instant parameter (micros).
pub fn parse_instant_param(name: &str, v: &str) -> Result<i64> {
    issho_model::instant::parse_range(v)
        .map(|r| r.lo)
        .ok_or_else(|| {
            FhirError::bad_request(format!(
                "{name} '{v}' is not a valid FHIR instant or dateTime"
            ))
        })
}

impl Engine {
    /// `GET …/_history?…`: parse the parameters, read the versions the caller may see, and
    /// build the Bundle (`base` for fullUrls and links, `path` the history path), audited.
    pub fn history_request(
        &self,
        ctx: &AccessContext,
        scope: HistoryScope,
        pairs: &[(String, String)],
        base: &str,
        path: &str,
    ) -> Result<Value> {
        self.history_request_in(ctx, None, scope, pairs, base, path)
    }

    /// [`Engine::history_request`] over the snapshot `r` (`None`: a fresh one).
    pub(crate) fn history_request_in(
        &self,
        ctx: &AccessContext,
        r: Option<&dyn StoreRead>,
        scope: HistoryScope,
        pairs: &[(String, String)],
        base: &str,
        path: &str,
    ) -> Result<Value> {
        let q = self.history_query(scope, pairs)?;
        let (count, offset) = (q.count, q.offset);
        let (rows, total, snap) = self.audited_history(ctx, r, q)?;
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let link = |off: usize| {
            let mut q = vec![format!("_count={count}"), format!("_snapshot={snap}")];
            for k in ["_since", "_at"] {
                if let Some(v) = get(k) {
                    q.push(format!("{k}={}", enc(v)));
                }
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
            links.push(serde_json::json!({"relation": "previous", "url": link(offset.saturating_sub(count))}));
        }
        if (offset + rows.len()) < total as usize && count > 0 {
            links.push(serde_json::json!({"relation": "next", "url": link(offset + count)}));
        }
        let entries: Vec<Value> = rows.iter().map(|s| history_entry(s, base)).collect();
        let mut bundle = serde_json::json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "history",
            "total": total,
            "link": links,
        });
        if !entries.is_empty() {
            bundle["entry"] = Value::Array(entries);
        }
        Ok(bundle)
    }

    fn history_query(
        &self,
        scope: HistoryScope,
        pairs: &[(String, String)],
    ) -> Result<HistoryQuery> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
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
        let count = match get("_count") {
            Some(c) => c.parse::<usize>().map_err(|_| {
                FhirError::bad_request(format!("_count '{c}' is not a non-negative integer"))
            })?,
            None => self.config.default_count,
        }
        .min(self.config.max_count);
        let offset = match get("_offset") {
            Some(o) => o
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= MAX_OFFSET)
                .ok_or_else(|| {
                    FhirError::bad_request(format!(
                        "_offset must be an integer from 0 to {MAX_OFFSET}"
                    ))
                })?,
            None => 0,
        };
        let max_seq = get("_snapshot")
            .map(|o| o.parse::<i64>())
            .transpose()
            .map_err(|_| FhirError::bad_request("_snapshot must be an integer"))?;
        Ok(HistoryQuery {
            scope,
            since,
            at,
            count,
            offset,
            max_seq,
        })
    }
}

/// One version as a history Bundle entry.
fn history_entry(s: &Stored, base: &str) -> Value {
    let mut e = serde_json::Map::new();
    e.insert(
        "fullUrl".into(),
        Value::String(format!("{base}/{}/{}", s.resource_type, s.id)),
    );
    if let Some(v) = s.json() {
        e.insert("resource".into(), v);
    }
    let url = match s.method.as_str() {
        "POST" => s.resource_type.clone(),
        _ => format!("{}/{}", s.resource_type, s.id),
    };
    e.insert(
        "request".into(),
        serde_json::json!({"method": s.method.as_str(), "url": url}),
    );
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
}
