//! Responses: status, body in the negotiated format, OperationOutcomes, and the headers of
//! reads and writes (`ETag`, `Last-Modified`, `Location`, 304).

use super::request::{Prefer, header_str};
use crate::format::{self, Summary};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use issho_engine::{FhirError, Return, Stored, WriteOutcome};
use issho_model::{Issue, IssueType};
use serde_json::Value;

/// Rendering options common to every response.
pub(super) struct Render {
    pub(super) out: format::Out,
    pub(super) summary: Summary,
    pub(super) elements: Option<Vec<String>>,
}

impl Render {
    /// True when resources go out as they are stored: JSON, not pretty, without `_summary`
    /// or `_elements`.
    pub(super) fn shows_as_stored(&self) -> bool {
        self.out == format::Out::JSON && self.summary == Summary::False && self.elements.is_none()
    }
}

pub(super) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(super) fn raw_response(code: u16, body: Vec<u8>, out: format::Out) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status(code);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(out.content_type()),
    );
    r
}

/// A resource in the negotiated format.
pub(super) fn body_response(code: u16, v: &Value, out: format::Out) -> Response {
    match out.bytes(v) {
        Some(b) => raw_response(code, b, out),
        None => raw_response(
            500,
            format::to_bytes(
                &issho_model::operation_outcome(&[Issue::error(
                    IssueType::Exception,
                    "the resource could not be written as XML",
                )]),
                false,
            ),
            format::Out::JSON,
        ),
    }
}

pub(super) fn outcome_response(code: u16, issues: &[Issue], out: format::Out) -> Response {
    body_response(code, &issho_model::operation_outcome(issues), out)
}

pub(super) fn error_response(e: &FhirError, out: format::Out) -> Response {
    let mut r = outcome_response(e.status, &e.issues, out);
    if e.status == 401 {
        let invalid = e
            .issues
            .iter()
            .any(|i| i.diagnostics.starts_with("invalid token"));
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(if invalid {
                "Bearer realm=\"issho\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"issho\""
            }),
        );
    }
    r
}

pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    outcome_response(
        500,
        &[Issue::error(
            IssueType::Exception,
            "internal error; nothing was changed",
        )],
        format::Out::JSON,
    )
}

/// `ETag: W/"n"` (a version number is always a valid header value).
pub(super) fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).expect("a version makes a valid ETag")
}

pub(super) fn write_headers(r: &mut Response, w: &WriteOutcome, base: &str, location: bool) {
    if let Some(v) = w.version {
        r.headers_mut().insert(header::ETAG, etag(v));
    }
    if let Some(t) = w.last_updated
        && let Ok(h) = HeaderValue::from_str(&issho_model::instant::format_http_date(t))
    {
        r.headers_mut().insert(header::LAST_MODIFIED, h);
    }
    if location
        && let Some(loc) = w.location()
        && let Ok(h) = HeaderValue::from_str(&format!("{base}/{loc}"))
    {
        r.headers_mut().insert(header::LOCATION, h.clone());
        r.headers_mut().insert(header::CONTENT_LOCATION, h);
    }
}

pub(super) fn write_response(
    w: WriteOutcome,
    pref: &Prefer,
    base: &str,
    render: &Render,
) -> Response {
    let mut r = match pref.ret {
        Return::Minimal => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status(w.status);
            r
        }
        Return::OperationOutcome => {
            let issues = if w.issues.is_empty() {
                vec![Issue::information(format!(
                    "{} {}/{} ({})",
                    if w.status == 201 { "created" } else { "done" },
                    w.resource_type,
                    w.id,
                    w.status
                ))]
            } else {
                w.issues.clone()
            };
            outcome_response(
                if w.status == 204 { 200 } else { w.status },
                &issues,
                render.out,
            )
        }
        Return::Representation => match &w.resource {
            Some(res) => body_response(w.status, res, render.out),
            None => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = status(w.status);
                r
            }
        },
    };
    write_headers(&mut r, &w, base, w.status == 201 || w.status == 200);
    r
}

pub(super) fn stored_response(s: &Stored, render: &Render, base: &str) -> Response {
    // The stored JSON goes out as it is unless something asks for a different rendering.
    let plain = render.shows_as_stored();
    let mut r = match (&s.body, plain) {
        (Some(b), true) => raw_response(200, b.clone(), render.out),
        (Some(_), false) => {
            let v = s.json().unwrap_or(Value::Null);
            body_response(
                200,
                &format::shape(v, render.summary, render.elements.as_deref()),
                render.out,
            )
        }
        (None, _) => raw_response(200, Vec::new(), render.out),
    };
    r.headers_mut().insert(header::ETAG, etag(s.version));
    if let Ok(h) = HeaderValue::from_str(&issho_model::instant::format_http_date(s.last_updated)) {
        r.headers_mut().insert(header::LAST_MODIFIED, h);
    }
    if let Ok(h) = HeaderValue::from_str(&format!(
        "{base}/{}/{}/_history/{}",
        s.resource_type, s.id, s.version
    )) {
        r.headers_mut().insert(header::CONTENT_LOCATION, h);
    }
    r
}

pub(super) fn delete_response(w: WriteOutcome, pref: &Prefer, render: &Render) -> Response {
    let mut r = if pref.ret == Return::OperationOutcome && pref.ret_given {
        outcome_response(200, &w.issues, render.out)
    } else {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    };
    if let Some(v) = w.version {
        r.headers_mut().insert(header::ETAG, etag(v));
    }
    r
}

/// 304 for `If-None-Match` / `If-Modified-Since` that the current version satisfies.
pub(super) fn not_modified(headers: &HeaderMap, s: &Stored) -> Option<Response> {
    let mut hit = false;
    if let Some(inm) = header_str(headers, "if-none-match") {
        hit = inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || issho_engine::parse_etag(t) == Some(s.version)
        });
    } else if let Some(ims) = header_str(headers, "if-modified-since")
        && let Some(t) = issho_model::instant::parse_http_date(ims)
    {
        // HTTP dates have second precision.
        hit = s.last_updated / 1_000_000 <= t / 1_000_000;
    }
    if !hit {
        return None;
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r.headers_mut().insert(header::ETAG, etag(s.version));
    Some(r)
}
