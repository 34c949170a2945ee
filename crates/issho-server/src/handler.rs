//! The one FHIR handler: method + path + headers + body → engine interaction → response.

mod bulk;
mod cds;
mod conformance;
mod history;
mod metadata;
mod record_ops;
mod request;
mod respond;
mod views;

pub use cds::{cds_discovery, cds_service};
pub(crate) use metadata::MetadataCache;
pub(crate) use request::context;
pub(crate) use respond::panic_response;

use crate::AppState;
use crate::format::{self, Summary};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::Response;
use history::history;
use issho_engine::{AccessContext, Engine, FhirError, HistoryScope, Return, SearchResult};
use issho_model::{Issue, IssueType};
use request::*;
use respond::*;
use serde_json::Value;
use std::sync::Arc;

pub async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({"status": "ok", "uptimeSeconds": st.started.elapsed().as_secs()});
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub async fn not_found(uri: Uri) -> Response {
    outcome_response(
        404,
        &[Issue::error(
            IssueType::NotFound,
            format!("no such endpoint '{}'; the FHIR base is /fhir", uri.path()),
        )],
        format::Out::JSON,
    )
}

/// The FHIR endpoint.
pub async fn fhir(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Rate limit per caller (the bearer token; anonymous callers share one budget).
    let caller = header_str(&headers, "authorization").unwrap_or("anonymous");
    if let Err(wait) = st.admit(caller) {
        let mut r = outcome_response(
            429,
            &[Issue::error(
                IssueType::Throttled,
                format!("too many requests; retry in {wait} s"),
            )],
            format::Out {
                format: format::Format::Json,
                pretty: false,
            },
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if let Err(e) = precheck(&headers, &uri, st.config.max_body) {
        let mut r = error_response(&e, format::Out::JSON);
        if e.status == 413 {
            // The body is left unread: this connection cannot carry another request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return r;
    }
    let query = uri.query().unwrap_or("").to_string();
    let pairs = issho_engine::parse_query(&query);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let pretty = get("_pretty") == Some("true");
    // Bulk Data's files are NDJSON whatever the Accept (the spec's clients ask for
    // application/fhir+ndjson); their errors are FHIR JSON.
    let accept = if uri.path().contains("/$export-file/") {
        None
    } else {
        header_str(&headers, "accept")
    };
    // A view run's `_format` names its rows' format (csv, ndjson, parquet), not FHIR's.
    let fhir_format = if uri.path().ends_with("/$viewdefinition-run") {
        None
    } else {
        get("_format")
    };
    let out = match format::negotiate(fhir_format, accept) {
        Ok(format) => format::Out { format, pretty },
        Err(issue) => {
            return outcome_response(
                406,
                &[issue],
                format::Out {
                    format: format::Format::Json,
                    pretty,
                },
            );
        }
    };
    let summary = match get("_summary").map(format::parse_summary).transpose() {
        Ok(s) => s.unwrap_or(Summary::False),
        Err(issue) => return outcome_response(400, &[issue], out),
    };
    let elements = get("_elements").map(|e| {
        e.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let render = Render {
        out,
        summary,
        elements,
    };
    let bytes = match axum::body::to_bytes(body, st.config.max_body).await {
        Ok(b) => b,
        Err(_) => return error_response(&too_large(st.config.max_body), out),
    };
    // Exactly one "/fhir" prefix: "/fhir/fhirPatient" is not "/fhir/Patient".
    let path = uri
        .path()
        .strip_prefix("/fhir")
        .unwrap_or("")
        .trim_matches('/')
        .to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            // UTF-8 after `precheck`.
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let base = base_url(&st, &headers, &uri);
    let ctx = match context(&st, &headers) {
        Ok(c) => c,
        Err(e) => return error_response(&e, out),
    };
    match dispatch(
        &st, ctx, &method, &segs, &pairs, &query, &headers, bytes, &base, &render,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => error_response(&e, out),
    }
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    st: &Arc<AppState>,
    ctx: AccessContext,
    method: &Method,
    segs: &[String],
    pairs: &[(String, String)],
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    base: &str,
    render: &Render,
) -> Result<Response, FhirError> {
    let engine = st.engine.clone();
    let pref = prefer(headers);
    let if_match = header_str(headers, "if-match").map(str::to_string);
    let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
    let not_allowed = || {
        FhirError::new(
            405,
            IssueType::NotSupported,
            format!("{method} is not supported on /{}", segs.join("/")),
        )
    };
    if let Some(r) = record_ops::dispatch(
        &engine, &ctx, method, &seg, pairs, headers, &body, base, render,
    )
    .await?
    {
        return Ok(r);
    }
    match (method.as_str(), seg.as_slice()) {
        ("GET" | "POST", ["$export"]) | ("GET" | "POST", ["Patient", "$export"]) => {
            let level = if seg.len() == 1 {
                issho_engine::BulkLevel::System
            } else {
                issho_engine::BulkLevel::Patient
            };
            bulk::kickoff(
                engine, ctx, level, method, pairs, query, headers, body, base,
            )
            .await
        }
        ("GET" | "POST", ["Group", id, "$export"]) => {
            let level = issho_engine::BulkLevel::Group(id.to_string());
            bulk::kickoff(
                engine, ctx, level, method, pairs, query, headers, body, base,
            )
            .await
        }
        ("POST", ["$viewdefinition-run"] | ["ViewDefinition", "$viewdefinition-run"])
        | ("GET" | "POST", ["ViewDefinition", _, "$viewdefinition-run"]) => {
            let at = views::RunAt {
                pairs,
                method: method.as_str(),
                instance: (seg.len() == 3).then(|| seg[1].to_string()),
                base: base.to_string(),
            };
            views::run(engine, ctx, headers, body, at).await
        }
        ("GET" | "DELETE", ["$export-status", id]) => {
            bulk::status_or_cancel(engine, ctx, method, id.to_string(), base).await
        }
        ("GET", ["$export-file", id, name]) => {
            bulk::file(engine, ctx, id.to_string(), name.to_string()).await
        }
        ("GET", ["Observation", "$lastn"]) => {
            // The newest `max` Observations of each code among those the search finds.
            let (p, base2) = (pairs.to_vec(), base.to_string());
            let res = blocking(move || {
                let r = engine.lastn(&ctx, &p)?;
                Ok(engine.search_bundle(&r, "Observation/$lastn", Some(&base2)))
            })
            .await?;
            Ok(body_response(200, &shape_bundle(res, render), render.out))
        }
        ("GET" | "HEAD", ["metadata"]) => {
            let head = method == Method::HEAD;
            Ok(metadata::metadata(st, headers, base, render, head).await)
        }
        ("GET", [".well-known", "smart-configuration"]) => {
            let Some(auth) = st.config.auth.as_ref().filter(|_| !st.config.dev_open) else {
                return Err(FhirError::not_found(
                    "this server runs without authorization",
                ));
            };
            let mut r = Response::new(Body::from(
                crate::oauth::smart_configuration(auth).to_string(),
            ));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        ("GET", [".well-known", "openid-configuration"]) => {
            let Some(auth) = st.config.auth.as_ref().filter(|_| !st.config.dev_open) else {
                return Err(FhirError::not_found(
                    "this server runs without authorization",
                ));
            };
            let mut r = Response::new(Body::from(
                crate::oauth::openid_configuration(auth).to_string(),
            ));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        ("GET", [".well-known", "jwks.json"]) => {
            let Some(auth) = &st.config.auth else {
                return Err(FhirError::not_found("this server signs no tokens"));
            };
            let jwks = auth
                .jwks()
                .map_err(|e| FhirError::internal(e.to_string()))?;
            let mut r = Response::new(Body::from(jwks.to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        ("POST", ["$install-package"]) => {
            // A FHIR package (.tgz) for a running server (administrators).
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !matches!(
                ct.as_str(),
                "application/gzip" | "application/x-gzip" | "application/octet-stream"
            ) {
                return Err(FhirError::new(
                    415,
                    IssueType::NotSupported,
                    "$install-package takes the package file itself (Content-Type: application/gzip)",
                ));
            }
            let bytes = body.to_vec();
            let out = blocking(move || engine.install_package_file(&ctx, &bytes)).await?;
            Ok(body_response(200, &out, render.out))
        }
        ("GET", ["$reindex"]) | ("POST", ["$reindex"]) => {
            let (status, params) = blocking(move || engine.reindex_status(&ctx)).await?;
            Ok(body_response(
                200,
                &reindex_parameters(&status, &params),
                render.out,
            ))
        }
        ("POST", []) => {
            let bundle = parse_json(headers, &body, false)?;
            let ret = if pref.ret_given {
                pref.ret
            } else {
                Return::Minimal
            };
            let base2 = base.to_string();
            let resp =
                blocking(move || engine.process_bundle(&ctx, bundle, Some(&base2), ret)).await?;
            Ok(body_response(200, &resp, render.out))
        }
        ("GET", []) | ("POST", ["_search"]) => {
            let mut p = pairs.to_vec();
            if method == Method::POST {
                p.extend(form_pairs(headers, &body)?);
            }
            search(st, ctx, None, p, pref.strict, render, base, "").await
        }
        ("GET", ["_history"]) => {
            history(
                st,
                ctx,
                HistoryScope::System,
                pairs,
                render,
                base,
                "_history",
            )
            .await
        }
        ("GET", [t, "_history"]) => {
            history(
                st,
                ctx,
                HistoryScope::Type(t.to_string()),
                pairs,
                render,
                base,
                &format!("{t}/_history"),
            )
            .await
        }
        ("GET", [t, id, "_history"]) => {
            history(
                st,
                ctx,
                HistoryScope::Instance(t.to_string(), id.to_string()),
                pairs,
                render,
                base,
                &format!("{t}/{id}/_history"),
            )
            .await
        }
        ("GET", [t, id, "_history", v]) => {
            let (t, id, v) = (t.to_string(), id.to_string(), v.to_string());
            let s = if engine.reads_in_place() {
                in_place(|| engine.vread(&ctx, &t, &id, &v))?
            } else {
                blocking(move || engine.vread(&ctx, &t, &id, &v)).await?
            };
            Ok(stored_response(&s, render, base))
        }
        ("GET", ["Patient", "$everything"]) | ("GET", ["Patient", _, "$everything"]) => {
            let id = if seg.len() == 3 {
                Some(seg[1].to_string())
            } else {
                None
            };
            let p = pairs.to_vec();
            let e2 = engine.clone();
            let res = blocking(move || e2.everything(&ctx, id.as_deref(), &p)).await?;
            let path = segs.join("/");
            Ok(bundle_response(&st.engine, &res, &path, base, render))
        }
        ("GET", [c, id, t]) if !t.starts_with('$') && !t.starts_with('_') => {
            if !issho_model::r4().is_resource_type(c) {
                return Err(FhirError::new(
                    404,
                    IssueType::NotSupported,
                    format!("'{c}' is not a FHIR R4 resource type"),
                ));
            }
            if *c != "Patient" {
                return Err(FhirError::new(
                    400,
                    IssueType::NotSupported,
                    format!(
                        "compartment searches are supported for the Patient compartment, not '{c}'"
                    ),
                ));
            }
            let (id, t, p) = (id.to_string(), t.to_string(), pairs.to_vec());
            let strict = pref.strict;
            let e2 = engine.clone();
            let res = blocking(move || e2.compartment_search(&ctx, &id, &t, &p, strict)).await?;
            let path = segs.join("/");
            Ok(bundle_response(&st.engine, &res, &path, base, render))
        }
        ("GET", [t]) => {
            search(
                st,
                ctx,
                Some(t.to_string()),
                pairs.to_vec(),
                pref.strict,
                render,
                base,
                t,
            )
            .await
        }
        ("POST", [t, "_search"]) => {
            let mut p = pairs.to_vec();
            p.extend(form_pairs(headers, &body)?);
            search(
                st,
                ctx,
                Some(t.to_string()),
                p,
                pref.strict,
                render,
                base,
                t,
            )
            .await
        }
        ("GET" | "POST", [rt, op] | [rt, _, op]) if conformance::handles(rt, op) => {
            let q = conformance::OpRequest {
                engine,
                ctx,
                method,
                seg: &seg,
                pairs,
                headers,
                body,
                render,
            };
            conformance::operation(q, rt, op).await
        }
        ("POST", [t, "$validate"]) | ("POST", [t, _, "$validate"]) => {
            let input = parse_json(headers, &body, false)?;
            let (resource, mode, profile) = validate_input(input)?;
            // `profile` may also come in the query (`$validate?profile=URL`).
            let profile = profile.or_else(|| {
                pairs
                    .iter()
                    .find(|(k, _)| k == "profile")
                    .map(|(_, v)| v.clone())
            });
            let t = t.to_string();
            if let Some(id) = seg.get(1).filter(|_| seg.len() == 3) {
                if mode.as_deref() == Some("delete") {
                    let (e2, c2, t2, id2) =
                        (engine.clone(), ctx.clone(), t.clone(), id.to_string());
                    blocking(move || e2.read(&c2, &t2, &id2)).await?;
                    return Ok(outcome_response(
                        200,
                        &[Issue::information("the resource may be deleted")],
                        render.out,
                    ));
                }
                if mode.as_deref() == Some("update")
                    && let Some(r) = &resource
                    && r.get("id").and_then(Value::as_str) != Some(id)
                {
                    return Ok(outcome_response(
                        200,
                        &[Issue::error(
                            IssueType::Invalid,
                            format!("mode update: the resource id must be '{id}'"),
                        )],
                        render.out,
                    ));
                }
            }
            let Some(resource) = resource else {
                return Err(FhirError::bad_request(
                    "$validate needs a resource (the body, or a 'resource' parameter)",
                ));
            };
            let issues =
                blocking(move || engine.validate(&ctx, Some(&t), &resource, profile.as_deref()))
                    .await?;
            let issues = if issues.is_empty() {
                vec![Issue::information("validation passed: no issues")]
            } else {
                issues
            };
            Ok(outcome_response(200, &issues, render.out))
        }
        ("POST", [t]) => {
            let resource = parse_json(headers, &body, false)?;
            let t = t.to_string();
            let ine = header_str(headers, "if-none-exist").map(|c| {
                let c = c.trim();
                if c.contains('?') {
                    c.to_string()
                } else {
                    format!("{t}?{c}")
                }
            });
            let w = blocking(move || engine.create(&ctx, &t, resource, ine)).await?;
            Ok(write_response(w, &pref, base, render))
        }
        ("PUT", [t]) => {
            if query.is_empty() {
                return Err(FhirError::bad_request(
                    "PUT on a type needs search criteria (conditional update) or an id",
                ));
            }
            let resource = parse_json(headers, &body, false)?;
            let (t, q) = (t.to_string(), query.to_string());
            let w = blocking(move || engine.conditional_update(&ctx, &t, &q, resource, if_match))
                .await?;
            Ok(write_response(w, &pref, base, render))
        }
        ("DELETE", [t]) => {
            if query.is_empty() {
                return Err(FhirError::bad_request(
                    "DELETE on a type needs search criteria (conditional delete)",
                ));
            }
            let (t, q) = (t.to_string(), query.to_string());
            let w = blocking(move || engine.conditional_delete(&ctx, &t, &q)).await?;
            Ok(delete_response(w, &pref, render))
        }
        ("PATCH", [t]) => {
            if query.is_empty() {
                return Err(FhirError::bad_request(
                    "PATCH on a type needs search criteria (conditional patch)",
                ));
            }
            let patch = parse_patch(headers, &body)?;
            let (t, q) = (t.to_string(), query.to_string());
            let w =
                blocking(move || engine.conditional_patch(&ctx, &t, &q, patch, if_match)).await?;
            Ok(write_response(w, &pref, base, render))
        }
        ("GET", [t, id]) | ("HEAD", [t, id]) => {
            let (t, id) = (t.to_string(), id.to_string());
            let s = if engine.reads_in_place() {
                in_place(|| engine.read(&ctx, &t, &id))?
            } else {
                blocking(move || engine.read(&ctx, &t, &id)).await?
            };
            if let Some(r) = not_modified(headers, &s) {
                return Ok(r);
            }
            let mut r = stored_response(&s, render, base);
            if method == Method::HEAD {
                *r.body_mut() = Body::empty();
            }
            Ok(r)
        }
        ("PUT", [t, id]) => {
            let resource = parse_json(headers, &body, false)?;
            let (t, id) = (t.to_string(), id.to_string());
            let w = blocking(move || engine.update(&ctx, &t, &id, resource, if_match)).await?;
            Ok(write_response(w, &pref, base, render))
        }
        ("PATCH", [t, id]) => {
            let patch = parse_patch(headers, &body)?;
            let (t, id) = (t.to_string(), id.to_string());
            let w = blocking(move || engine.patch(&ctx, &t, &id, patch, if_match)).await?;
            Ok(write_response(w, &pref, base, render))
        }
        ("DELETE", [t, id]) => {
            let (t, id) = (t.to_string(), id.to_string());
            let w = blocking(move || engine.delete(&ctx, &t, &id, if_match)).await?;
            Ok(delete_response(w, &pref, render))
        }
        _ => Err(
            if segs.is_empty()
                || issho_model::r4().is_resource_type(&segs[0])
                || segs[0] == "metadata"
            {
                not_allowed()
            } else {
                FhirError::new(
                    404,
                    IssueType::NotSupported,
                    format!("'{}' is not a FHIR R4 resource type", segs[0]),
                )
            },
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn search(
    st: &Arc<AppState>,
    ctx: AccessContext,
    t: Option<String>,
    pairs: Vec<(String, String)>,
    strict: bool,
    render: &Render,
    base: &str,
    path: &str,
) -> Result<Response, FhirError> {
    let engine = st.engine.clone();
    let res = blocking(move || engine.search(&ctx, t.as_deref(), &pairs, strict)).await?;
    Ok(bundle_response(&st.engine, &res, path, base, render))
}

/// A search result's Bundle: resources as stored are copied into it as they are (JSON without
/// `_summary` / `_elements`), else the Bundle is built as a tree and shaped.
fn bundle_response(
    engine: &Engine,
    res: &SearchResult,
    path: &str,
    base: &str,
    render: &Render,
) -> Response {
    if render.shows_as_stored() {
        return raw_response(
            200,
            engine.search_bundle_json(res, path, Some(base)),
            render.out,
        );
    }
    let bundle = engine.search_bundle(res, path, Some(base));
    body_response(200, &shape_bundle(bundle, render), render.out)
}

/// Apply `_summary` / `_elements` to the resources of a result Bundle.
fn shape_bundle(mut bundle: Value, render: &Render) -> Value {
    if (render.summary != Summary::False || render.elements.is_some())
        && let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut)
    {
        if render.summary == Summary::Count {
            entries.clear();
        }
        for e in entries.iter_mut() {
            if e["search"]["mode"] == "outcome" {
                continue;
            }
            if let Some(r) = e.get_mut("resource") {
                *r = format::shape(r.take(), render.summary, render.elements.as_deref());
            }
        }
    }
    if bundle["entry"].as_array().is_some_and(Vec::is_empty)
        && let Some(b) = bundle.as_object_mut()
    {
        b.remove("entry");
    }
    bundle
}

use serde_json::json;

/// `$reindex` answer: a Parameters resource with the worker's progress and every custom
/// search parameter's state.
fn reindex_parameters(
    status: &issho_engine::ReindexStatus,
    params: &[issho_engine::CustomParam],
) -> Value {
    let mut out = vec![
        json!({"name": "running", "valueBoolean": status.running}),
        json!({"name": "done", "valueUnsignedInt": status.done}),
        json!({"name": "total", "valueUnsignedInt": status.total}),
        json!({"name": "passes", "valueUnsignedInt": status.passes}),
    ];
    for k in &status.keys {
        out.push(json!({"name": "key", "valueString": k}));
    }
    for t in &status.types {
        out.push(json!({"name": "type", "valueCode": t}));
    }
    if let Some(e) = &status.error {
        out.push(json!({"name": "error", "valueString": e}));
    }
    for p in params {
        let mut part = vec![
            json!({"name": "url", "valueUri": p.url}),
            json!({"name": "state", "valueCode": p.state}),
        ];
        if !p.code.is_empty() {
            part.push(json!({"name": "code", "valueCode": p.code}));
        }
        for b in &p.base {
            part.push(json!({"name": "base", "valueCode": b}));
        }
        if let Some(r) = &p.reason {
            part.push(json!({"name": "reason", "valueString": r}));
        }
        out.push(json!({"name": "parameter", "part": part}));
    }
    json!({"resourceType": "Parameters", "parameter": out})
}
