//! FHIR Bulk Data 2.0 over HTTP (the jobs are the engine's, `bulk.rs`): the kick-off
//! (`[base]/$export`, `[base]/Patient/$export`, `[base]/Group/[id]/$export`; `Prefer: respond-async`; parameters in the
//! query or, with POST, a Parameters body) answers 202 with the status URL in
//! `Content-Location`; `GET $export-status/JOB` answers 202 with `X-Progress` and
//! `Retry-After` while the job runs and 200 with the manifest when it is done; `DELETE` cancels;
//! `GET $export-file/JOB/FILE` streams an NDJSON file to the client that started the job.

use super::request::{blocking, header_str, parse_json};
use super::respond::status;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use issho_engine::{AccessContext, BulkLevel, BulkStatus, Engine, FhirError};
use issho_model::{Issue, IssueType};
use serde_json::Value;

fn json_response(code: u16, v: &Value, content_type: &'static str) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status(code);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The kick-off's parameters: the query's, or a Parameters body's (`valueString`,
/// `valueInstant`, `valueCode`… as text).
fn kickoff_params(
    method: &Method,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, FhirError> {
    if *method != Method::POST || body.is_empty() {
        return Ok(pairs.to_vec());
    }
    let p = parse_json(headers, body, false)?;
    if p["resourceType"] != "Parameters" {
        return Err(FhirError::bad_request(
            "a POST $export carries a Parameters resource",
        ));
    }
    let mut out = pairs.to_vec();
    for x in p["parameter"].as_array().into_iter().flatten() {
        let name = x["name"].as_str().unwrap_or_default().to_string();
        let value = x
            .as_object()
            .into_iter()
            .flatten()
            .find(|(k, _)| k.starts_with("value"))
            .and_then(|(_, v)| v.as_str().map(str::to_string))
            .ok_or_else(|| {
                FhirError::bad_request(format!("$export parameter '{name}' has no value"))
            })?;
        out.push((name, value));
    }
    Ok(out)
}

/// `[base]/$export` or `[base]/Patient/$export`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn kickoff(
    engine: Engine,
    ctx: AccessContext,
    level: BulkLevel,
    method: &Method,
    pairs: &[(String, String)],
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    base: &str,
) -> Result<Response, FhirError> {
    let prefer = header_str(headers, "prefer").unwrap_or("");
    if !prefer
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
    {
        return Err(FhirError::bad_request(
            "$export runs asynchronously: send 'Prefer: respond-async'",
        ));
    }
    if let Some(accept) = header_str(headers, "accept") {
        let ok = accept.split(',').any(|a| {
            let a = a.split(';').next().unwrap_or("").trim();
            matches!(a, "application/fhir+json" | "application/json" | "*/*")
        });
        if !ok {
            return Err(FhirError::new(
                406,
                IssueType::NotSupported,
                "the kick-off answers application/fhir+json",
            ));
        }
    }
    let params = kickoff_params(method, pairs, headers, &body)?;
    let path = match &level {
        BulkLevel::System => "$export".to_string(),
        BulkLevel::Patient => "Patient/$export".to_string(),
        BulkLevel::Group(id) => format!("Group/{id}/$export"),
    };
    let request = if query.is_empty() {
        format!("{base}/{path}")
    } else {
        format!("{base}/{path}?{query}")
    };
    let id = blocking(move || engine.bulk_kickoff(&ctx, level, &params, &request)).await?;
    let oo = issho_model::operation_outcome(&[Issue::information(
        "the export has started; poll the Content-Location for its status",
    )]);
    let mut r = json_response(202, &oo, "application/fhir+json");
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/$export-status/{id}")) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(r)
}

/// `GET` (status) or `DELETE` (cancel) `[base]/$export-status/JOB`.
pub(super) async fn status_or_cancel(
    engine: Engine,
    ctx: AccessContext,
    method: &Method,
    id: String,
    base: &str,
) -> Result<Response, FhirError> {
    if *method == Method::DELETE {
        blocking(move || engine.bulk_cancel(&ctx, &id)).await?;
        let oo = issho_model::operation_outcome(&[Issue::information(
            "the export was cancelled and its files removed",
        )]);
        return Ok(json_response(202, &oo, "application/fhir+json"));
    }
    let base = base.to_string();
    match blocking(move || engine.bulk_status(&ctx, &id, &base)).await? {
        BulkStatus::Running { progress } => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status(202);
            if let Ok(v) = HeaderValue::from_str(&progress) {
                r.headers_mut().insert("x-progress", v);
            }
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            Ok(r)
        }
        BulkStatus::Complete(manifest) => Ok(json_response(200, &manifest, "application/json")),
    }
}

/// `GET [base]/$export-file/JOB/FILE`: the NDJSON file, streamed.
pub(super) async fn file(
    engine: Engine,
    ctx: AccessContext,
    id: String,
    name: String,
) -> Result<Response, FhirError> {
    let path = blocking(move || engine.bulk_file(&ctx, &id, &name)).await?;
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|_| FhirError::not_found("no such export file"))?;
    let stream = tokio_util::io::ReaderStream::new(f);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(r)
}
