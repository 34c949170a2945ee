//! SQL on FHIR v2 `$viewdefinition-run`: `POST [base]/$viewdefinition-run` (R4 mode) or
//! `POST [base]/ViewDefinition/$viewdefinition-run` with a Parameters body — `viewResource`
//! (the ViewDefinition) or `viewReference` (a stored one), `_format` (`ndjson`, the default;
//! `csv`; `json`; `parquet`), `header` (CSV), `_limit`, `patient`, `group` — and `GET` or
//! `POST [base]/ViewDefinition/[id]/$viewdefinition-run` (the stored view; the other
//! parameters in the query or the body) answer the rows at once. The engine runs the view
//! over what the caller may export (`views.rs`).

use super::request::{blocking, parse_json};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use issho_engine::{AccessContext, Engine, FhirError, ViewScope};
use serde_json::{Value, json};

/// What a `$viewdefinition-run` asks.
struct RunRequest {
    /// `viewResource`.
    view: Value,
    /// `viewReference`.
    reference: Option<String>,
    /// `None`: a JSON array of row objects (`_format=json`).
    format: Option<issho_views::Format>,
    header: bool,
    scope: ViewScope,
}

fn run_request(p: &Value) -> Result<RunRequest, FhirError> {
    if p["resourceType"] != "Parameters" {
        return Err(FhirError::bad_request(
            "$viewdefinition-run takes a Parameters resource",
        ));
    }
    let mut r = RunRequest {
        view: Value::Null,
        reference: None,
        format: Some(issho_views::Format::Ndjson),
        header: true,
        scope: ViewScope::default(),
    };
    for x in p["parameter"].as_array().into_iter().flatten() {
        let name = x["name"].as_str().unwrap_or_default();
        let reference = || {
            x["valueReference"]["reference"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    FhirError::bad_request(format!("{name}: a valueReference is expected"))
                })
        };
        match name {
            "viewResource" => r.view = x["resource"].clone(),
            "_format" => {
                let f = x["valueCode"]
                    .as_str()
                    .or(x["valueString"].as_str())
                    .unwrap_or("");
                r.format = match f {
                    "json" | "application/json" => None,
                    other => Some(issho_views::Format::parse(other).ok_or_else(|| {
                        FhirError::bad_request(format!(
                            "_format: '{other}' is not offered (ndjson, csv, json, parquet)"
                        ))
                    })?),
                };
            }
            "header" => {
                r.header = x["valueBoolean"]
                    .as_bool()
                    .ok_or_else(|| FhirError::bad_request("header: a valueBoolean is expected"))?
            }
            "_limit" => {
                let n = x["valueInteger"]
                    .as_u64()
                    .or(x["valuePositiveInt"].as_u64())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        FhirError::bad_request("_limit: a positive integer is expected")
                    })?;
                r.scope.limit = Some(n);
            }
            "patient" => r.scope.patient = Some(reference()?),
            "group" => r.scope.group = Some(reference()?),
            "viewReference" => r.reference = Some(reference()?),
            "resource" | "source" | "_since" => {
                return Err(FhirError::bad_request(format!(
                    "{name} is not supported yet: the rows come from the server's resources the token may export"
                )));
            }
            other => {
                return Err(FhirError::bad_request(format!(
                    "'{other}' is not a parameter of $viewdefinition-run"
                )));
            }
        }
    }
    Ok(r)
}

/// A GET's query as the Parameters a POST would carry (`_format`, `header`, `_limit`,
/// `patient`, `group`, `viewReference`; a view itself cannot travel in a query).
fn query_parameters(pairs: &[(String, String)]) -> Result<Value, FhirError> {
    let mut list = Vec::new();
    for (k, v) in pairs {
        let value = match k.as_str() {
            "_format" => json!({"valueCode": v}),
            "header" => json!({"valueBoolean": match v.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(FhirError::bad_request("header: true or false")),
            }}),
            "_limit" => json!({"valueInteger": v.parse::<u64>().map_err(|_| {
                FhirError::bad_request("_limit: a positive integer is expected")
            })?}),
            "patient" | "group" | "viewReference" => json!({"valueReference": {"reference": v}}),
            "viewResource" => {
                return Err(FhirError::bad_request(
                    "viewResource travels in a POST's Parameters body, not in a query",
                ));
            }
            _ => json!({}),
        };
        let mut p = json!({"name": k});
        p.as_object_mut()
            .expect("an object")
            .extend(value.as_object().cloned().unwrap_or_default());
        list.push(p);
    }
    Ok(json!({"resourceType": "Parameters", "parameter": list}))
}

/// Where a run was asked.
pub(super) struct RunAt<'a> {
    /// The query (a GET's parameters).
    pub pairs: &'a [(String, String)],
    pub method: &'a str,
    /// `ViewDefinition/[id]/$viewdefinition-run`: the stored view's id.
    pub instance: Option<String>,
    /// This server's base URL (for absolute references to its views).
    pub base: String,
}

pub(super) async fn run(
    engine: Engine,
    ctx: AccessContext,
    headers: &HeaderMap,
    body: Bytes,
    at: RunAt<'_>,
) -> Result<Response, FhirError> {
    let p = if at.method == "GET" || (body.is_empty() && at.instance.is_some()) {
        query_parameters(at.pairs)?
    } else {
        parse_json(headers, &body, false)?
    };
    let mut req = run_request(&p)?;
    if let Some(id) = &at.instance {
        if !req.view.is_null() || req.reference.is_some() {
            return Err(FhirError::bad_request(
                "ViewDefinition/[id]/$viewdefinition-run runs that view: give no viewResource or viewReference",
            ));
        }
        req.reference = Some(format!("ViewDefinition/{id}"));
    }
    match (&req.reference, req.view.is_null()) {
        (Some(_), false) => {
            return Err(FhirError::bad_request(
                "give viewResource or viewReference, not both",
            ));
        }
        (None, true) => {
            return Err(FhirError::bad_request(
                "viewResource or viewReference (the ViewDefinition to run) is required",
            ));
        }
        _ => {}
    }
    let base = at.base;
    let (bytes, media) = blocking(move || {
        if let Some(reference) = &req.reference {
            req.view = engine.stored_view(&ctx, reference, &base)?;
        }
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let (view, _) = engine.run_view(&ctx, &req.view, &req.scope, &mut |r| {
            rows.push(r.to_vec());
            Ok(())
        })?;
        let io = |e: std::io::Error| FhirError::internal(format!("view output: {e}"));
        Ok(match req.format {
            Some(f) => {
                let mut w =
                    issho_views::Writer::with_header(f, view.columns(), Vec::new(), req.header)
                        .map_err(io)?;
                for r in &rows {
                    w.row(r).map_err(io)?;
                }
                (w.finish().map_err(io)?, f.media_type())
            }
            None => {
                let names: Vec<&str> = view.columns().iter().map(|c| c.name.as_str()).collect();
                let list: Vec<Value> = rows
                    .into_iter()
                    .map(|r| Value::Object(names.iter().map(|n| n.to_string()).zip(r).collect()))
                    .collect();
                (
                    Value::Array(list).to_string().into_bytes(),
                    "application/json",
                )
            }
        })
    })
    .await?;
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    Ok(r)
}
