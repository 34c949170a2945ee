//! Every error answer carries an OperationOutcome — also the ones that are not made by the FHIR
//! handler: axum's rejections and 405s, the fallback, and the answers hyper gives on its own
//! to requests it cannot parse (see `conn.rs`).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use issho_model::{Issue, IssueType};

/// The issue type that fits an HTTP error status.
pub(crate) fn issue_type(status: StatusCode) -> IssueType {
    match status.as_u16() {
        401 => IssueType::Login,
        403 => IssueType::Forbidden,
        404 => IssueType::NotFound,
        405 | 406 | 415 | 501 => IssueType::NotSupported,
        408 | 504 => IssueType::Timeout,
        409 => IssueType::Conflict,
        413 | 414 | 431 => IssueType::TooLong,
        429 => IssueType::Throttled,
        503 => IssueType::Transient,
        500..=599 => IssueType::Exception,
        _ => IssueType::Invalid,
    }
}

/// An OperationOutcome with one error issue, as compact JSON.
pub(crate) fn outcome_json(status: StatusCode, diagnostics: &str) -> Vec<u8> {
    let oo = issho_model::operation_outcome(&[Issue::error(issue_type(status), diagnostics)]);
    serde_json::to_vec(&oo).unwrap_or_default()
}

/// What to say when a layer gave no reason.
pub(crate) fn default_reason(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "the request could not be read as HTTP: the request line or a header is \
                malformed (for example a path or query with bytes that are not percent-encoded, \
                or a method or header name with characters HTTP does not allow)"
            .to_string(),
        405 => "this method is not supported on this endpoint".to_string(),
        414 => "the request URI is longer than 65,534 bytes; send a long search as \
                POST [type]/_search with a form body"
            .to_string(),
        431 => "the request headers are too large (more than 100 headers, or over the \
                server's header buffer)"
            .to_string(),
        _ => format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        ),
    }
}

/// Router middleware, the net under every route and the fallback: a 4xx/5xx answer with no
/// body or a plain-text one (axum's rejections, a route's 405) gets an OperationOutcome body,
/// with the text as diagnostics. Answers with a body of another type (OperationOutcomes,
/// OAuth JSON errors, the sign-in page) pass unchanged.
pub(crate) async fn outcome_net(r: Response) -> Response {
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let plain = match r.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    };
    if !plain {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let reason = match text.trim() {
        "" => default_reason(status),
        t => t.to_string(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::format::FHIR_JSON),
    );
    Response::from_parts(parts, Body::from(outcome_json(status, &reason)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_errors_become_outcomes() {
        let mut r = Response::new(Body::from("Failed to buffer the request body"));
        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let r = outcome_net(r).await;
        assert_eq!(r.status(), 413);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/fhir+json")
        );
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["issue"][0]["code"], "too-long");
        assert_eq!(
            v["issue"][0]["diagnostics"],
            "Failed to buffer the request body"
        );
        // Success and typed error bodies pass unchanged.
        let ok = outcome_net(Response::new(Body::from("x"))).await;
        assert_eq!(ok.status(), 200);
        assert!(ok.headers().get(header::CONTENT_TYPE).is_none());
    }
}
