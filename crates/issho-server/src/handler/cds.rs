//! CDS Hooks 2.0 endpoints beside the FHIR base: `GET /cds-services` (discovery, public) and
//! `POST /cds-services/{id}` (a hook call, with a bearer access token of this server: the
//! person's record is read as that token may see it).

use super::request::{blocking, context, header_str};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use issho_engine::FhirError;
use serde_json::Value;
use std::sync::Arc;

fn json_response(status: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &FhirError) -> Response {
    json_response(e.status, &issho_model::operation_outcome(&e.issues))
}

pub async fn cds_discovery() -> Response {
    json_response(200, &issho_engine::cds_discovery())
}

pub async fn cds_service(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match context(&st, &headers) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    if header_str(&headers, "content-type")
        .is_none_or(|c| !c.to_ascii_lowercase().starts_with("application/json"))
    {
        return error(&FhirError::new(
            415,
            issho_model::IssueType::NotSupported,
            "a CDS Hooks request is application/json",
        ));
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(&FhirError::bad_request(format!(
                "the request is not JSON: {e}"
            )));
        }
    };
    let engine = st.engine.clone();
    match blocking(move || engine.cds_call(&ctx, &id, &request)).await {
        Ok(v) => json_response(200, &v),
        Err(e) => error(&e),
    }
}
