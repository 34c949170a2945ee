//! Reading a request: headers, the caller, the base URL, and bodies (resources, forms,
//! patches, `$validate` input).

use crate::AppState;
use crate::format;
use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use issho_engine::{AccessContext, FhirError, Patch, Return};
use issho_model::IssueType;
use serde_json::Value;

pub(super) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `Prefer` header fields.
pub(super) struct Prefer {
    pub(super) ret: Return,
    pub(super) ret_given: bool,
    pub(super) strict: bool,
}

pub(super) fn prefer(h: &HeaderMap) -> Prefer {
    let mut p = Prefer {
        ret: Return::Representation,
        ret_given: false,
        strict: false,
    };
    for v in h.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
        for part in v.split([',', ';']) {
            let part = part.trim().replace(' ', "");
            match part.as_str() {
                "return=minimal" => (p.ret, p.ret_given) = (Return::Minimal, true),
                "return=representation" => (p.ret, p.ret_given) = (Return::Representation, true),
                "return=OperationOutcome" => {
                    (p.ret, p.ret_given) = (Return::OperationOutcome, true)
                }
                "handling=strict" => p.strict = true,
                "handling=lenient" => p.strict = false,
                _ => {}
            }
        }
    }
    p
}

pub(super) fn base_url(st: &AppState, h: &HeaderMap, uri: &Uri) -> String {
    if let Some(b) = &st.config.base_url {
        return b.trim_end_matches('/').to_string();
    }
    // Without a configured base URL (development), the Host header names the server; only a
    // syntactically plain host[:port] is accepted, so a request cannot inject text into
    // Location headers or links. Deployments set --base-url.
    // HTTP/2 carries the authority in the request URI (`:authority`), not in a Host header.
    let authority = uri.authority().map(|a| a.as_str());
    let host = header_str(h, "host")
        .or(authority)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 255
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if st.config.tls { "https" } else { "http" };
    format!("{scheme}://{host}/fhir")
}

/// Run engine work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FhirError> + Send + 'static,
) -> Result<T, FhirError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(FhirError::internal("internal error; nothing was changed")))
}

/// Engine work that is one indexed lookup — a read or vread by id on a store whose reads wait
/// on nothing (`Engine::reads_in_place`: the embedded store's WAL readers) and only queue
/// their audit record — run in place on the runtime's worker: handing it to the blocking pool
/// costs two thread switches, more CPU than the read itself (BENCHMARKS.md, issue 15). Never
/// for PostgreSQL: its synchronous client runs a runtime of its own, which panics inside this
/// one. A panic is answered as `blocking` answers it.
pub(super) fn in_place<T>(f: impl FnOnce() -> Result<T, FhirError>) -> Result<T, FhirError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(FhirError::internal("internal error; nothing was changed")))
}

/// Who is asking: the development principal in open mode; otherwise the verified bearer
/// token, or anonymous when there is none (the gate then allows only the CapabilityStatement).
pub(crate) fn context(st: &AppState, headers: &HeaderMap) -> Result<AccessContext, FhirError> {
    if st.config.dev_open {
        return Ok(AccessContext::dev_open());
    }
    let Some(auth) = header_str(headers, "authorization") else {
        return Ok(AccessContext::anonymous());
    };
    let Some(token) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    else {
        return Err(FhirError::new(
            401,
            IssueType::Login,
            "the Authorization header must be 'Bearer <access token>'",
        ));
    };
    let Some(keys) = &st.config.auth else {
        return Err(FhirError::new(
            401,
            IssueType::Login,
            "this server accepts no tokens (no authentication is configured)",
        ));
    };
    keys.verify(token.trim())
        .map(AccessContext::token)
        .map_err(|e| FhirError::new(401, IssueType::Login, e.to_string()))
}

/// Parse a request body as JSON, with the right 4xx when it is not.
pub(super) fn parse_json(
    headers: &HeaderMap,
    body: &Bytes,
    allow_patch: bool,
) -> Result<Value, FhirError> {
    let ct = header_str(headers, "content-type").unwrap_or("");
    if ct.is_empty() {
        return Err(FhirError::new(
            415,
            IssueType::NotSupported,
            "the request has a body but no Content-Type; send application/fhir+json",
        ));
    }
    let is_patch = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json-patch+json");
    let is_xml = format::is_fhir_xml(ct);
    if !(format::is_fhir_json(ct) || is_xml || (allow_patch && is_patch)) {
        return Err(FhirError::new(
            415,
            IssueType::NotSupported,
            format!(
                "Content-Type '{ct}' is not supported; send application/fhir+json or application/fhir+xml{}",
                if allow_patch {
                    " or application/json-patch+json"
                } else {
                    ""
                }
            ),
        ));
    }
    if body.is_empty() {
        return Err(FhirError::new(
            400,
            IssueType::Required,
            "the request body is empty",
        ));
    }
    if is_xml {
        let text = std::str::from_utf8(body)
            .map_err(|_| FhirError::new(400, IssueType::Structure, "the XML body is not UTF-8"))?;
        // Nesting is bounded like JSON's: the converter follows the type tables, whose depth
        // is finite except through extensions and contained items.
        if text.matches('<').count() > 2_000_000 {
            return Err(FhirError::new(
                413,
                IssueType::TooLong,
                "the XML body has too many elements",
            ));
        }
        return issho_model::xml::xml_to_json(text).map_err(|e| {
            FhirError::new(
                400,
                IssueType::Structure,
                format!("the body is not valid FHIR XML: {e}"),
            )
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let hint = if msg.contains("recursion limit") {
            " (the JSON is nested too deeply)"
        } else {
            ""
        };
        FhirError::new(
            400,
            IssueType::Structure,
            format!("the body is not valid JSON: {msg}{hint}"),
        )
    })
}

pub(super) fn form_pairs(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, FhirError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let ct = header_str(headers, "content-type").unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(FhirError::new(
            415,
            IssueType::NotSupported,
            "POST _search needs Content-Type application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .ok()
        .filter(|t| decodes_to_utf8(t));
    let Some(text) = text else {
        return Err(FhirError::bad_request(
            "the form body is not UTF-8 (once percent-decoded); FHIR search values are UTF-8",
        ));
    };
    Ok(issho_engine::parse_query(text))
}

/// Is `s` UTF-8 once percent-decoded? (`%FF` is not.)
fn decodes_to_utf8(s: &str) -> bool {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .is_ok()
}

/// What must be refused before the body is read: a path or query that is not UTF-8 once
/// percent-decoded (400), and a `Content-Length` over the limit (413, at once: the body is
/// never read).
pub(super) fn precheck(headers: &HeaderMap, uri: &Uri, max_body: usize) -> Result<(), FhirError> {
    if !decodes_to_utf8(uri.path()) {
        return Err(FhirError::bad_request(
            "the request path is not UTF-8 once percent-decoded (for example '%FF'); FHIR URLs are UTF-8",
        ));
    }
    if !decodes_to_utf8(uri.query().unwrap_or("")) {
        return Err(FhirError::bad_request(
            "the query string is not UTF-8 once percent-decoded (for example '%FF'); FHIR search values are UTF-8",
        ));
    }
    if let Some(len) = header_str(headers, "content-length")
        && len
            .trim()
            .parse::<u64>()
            .map_or(true, |n| n > max_body as u64)
    {
        return Err(too_large(max_body));
    }
    Ok(())
}

/// 413 for a body over `max_body` bytes.
pub(super) fn too_large(max_body: usize) -> FhirError {
    FhirError::new(
        413,
        IssueType::TooLong,
        format!("the request body is larger than the limit of {max_body} bytes"),
    )
}

pub(super) fn parse_instant_param(name: &str, v: &str) -> Result<i64, FhirError> {
    issho_model::instant::parse_range(v)
        .map(|r| r.lo)
        .ok_or_else(|| {
            FhirError::bad_request(format!(
                "{name} '{v}' is not a valid FHIR instant or dateTime"
            ))
        })
}

pub(super) fn parse_patch(headers: &HeaderMap, body: &Bytes) -> Result<Patch, FhirError> {
    let v = parse_json(headers, body, true)?;
    let ct = header_str(headers, "content-type").unwrap_or("");
    if ct.starts_with("application/json-patch+json") {
        return Ok(Patch::Json(v));
    }
    match v.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => Ok(Patch::FhirPath(v)),
        _ if v.is_array() => Ok(Patch::Json(v)),
        _ => Err(FhirError::new(
            415,
            IssueType::NotSupported,
            "PATCH takes a JSON Patch (application/json-patch+json) or a FHIRPath Patch Parameters resource (application/fhir+json)",
        )),
    }
}

/// `$validate` input: a resource, or Parameters with `resource` and `mode`.
/// `$validate`'s input: the resource, the mode and the profile.
pub(super) type ValidateInput = (Option<Value>, Option<String>, Option<String>);

pub(super) fn validate_input(input: Value) -> Result<ValidateInput, FhirError> {
    if input.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        let params = input
            .get("parameter")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut resource = None;
        let mut mode = None;
        let mut profile = None;
        for p in params {
            match p.get("name").and_then(Value::as_str) {
                Some("resource") => resource = p.get("resource").cloned(),
                Some("mode") => {
                    mode = p
                        .get("valueCode")
                        .or(p.get("valueString"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }
                Some("profile") => {
                    let prof = p
                        .get("valueUri")
                        .or(p.get("valueCanonical"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if prof.is_empty() {
                        return Err(FhirError::bad_request(
                            "the profile parameter needs a valueUri or valueCanonical",
                        ));
                    }
                    profile = Some(prof.to_string());
                }
                _ => {}
            }
        }
        if let Some(m) = &mode
            && !matches!(m.as_str(), "create" | "update" | "delete")
        {
            return Err(FhirError::bad_request(format!(
                "$validate mode must be create, update or delete (not '{m}')"
            )));
        }
        return Ok((resource, mode, profile));
    }
    Ok((Some(input), None, None))
}
