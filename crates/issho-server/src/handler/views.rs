//! SQL on FHIR v2 `$viewdefinition-run` (FHIR R4 mode: at the system level): `POST
//! [base]/$viewdefinition-run` with a Parameters body — `viewResource` (the ViewDefinition),
//! `_format` (`ndjson`, the default; `csv`; `json`; `parquet`), `header` (CSV), `_limit`, `patient`,
//! `group` — answers the rows at once. The engine runs the view over what the caller may
//! export (`views.rs`).

use super::request::{blocking, parse_json};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use issho_engine::{AccessContext, Engine, FhirError, ViewScope};
use serde_json::Value;

/// What a `$viewdefinition-run` asks.
struct RunRequest {
    view: Value,
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
            "viewReference" | "resource" | "source" | "_since" => {
                return Err(FhirError::bad_request(format!(
                    "{name} is not supported yet: give the view as viewResource; the rows come from the server's resources the token may export"
                )));
            }
            other => {
                return Err(FhirError::bad_request(format!(
                    "'{other}' is not a parameter of $viewdefinition-run"
                )));
            }
        }
    }
    if r.view.is_null() {
        return Err(FhirError::bad_request(
            "viewResource (the ViewDefinition to run) is required",
        ));
    }
    Ok(r)
}

pub(super) async fn run(
    engine: Engine,
    ctx: AccessContext,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, FhirError> {
    let p = parse_json(headers, &body, false)?;
    let req = run_request(&p)?;
    let (bytes, media) = blocking(move || {
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
