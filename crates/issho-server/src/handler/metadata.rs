//! `GET [base]/metadata`: the CapabilityStatement (~400 KB: every parameter of every type),
//! which clients fetch on every start. It is built once per search-parameter registry (a new
//! one comes with every change of the custom SearchParameters) and base URL, kept serialised —
//! the plain JSON form also gzip- and brotli-compressed — and served with an `ETag`
//! (`If-None-Match` → 304). `_summary`, `_elements`, `_format` and `_pretty` make variants of
//! their own, cached alongside.

use super::respond::Render;
use crate::AppState;
use crate::format::{self, Summary};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use issho_search::Registry;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Variants kept at most (base URLs × renderings); more, and the cache starts again.
const MAX_VARIANTS: usize = 32;

/// The cached renderings of the CapabilityStatement for one registry.
#[derive(Default)]
pub(crate) struct MetadataCache {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Held, so that its address cannot be reused by a later registry while compared.
    registry: Option<Arc<Registry>>,
    variants: HashMap<String, Arc<Variant>>,
}

/// One rendering, ready to send.
struct Variant {
    body: Bytes,
    gzip: Option<Bytes>,
    br: Option<Bytes>,
    etag: HeaderValue,
    content_type: &'static str,
}

impl MetadataCache {
    fn get(&self, registry: &Arc<Registry>, key: &str) -> Option<Arc<Variant>> {
        let c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let same = c
            .registry
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, registry));
        same.then(|| c.variants.get(key).cloned()).flatten()
    }

    fn put(&self, registry: &Arc<Registry>, key: String, v: Arc<Variant>) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let same = c
            .registry
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, registry));
        if !same || c.variants.len() >= MAX_VARIANTS {
            c.variants.clear();
            c.registry = Some(registry.clone());
        }
        c.variants.insert(key, v);
    }
}

/// The answer to `GET` / `HEAD [base]/metadata`.
pub(super) async fn metadata(
    st: &Arc<AppState>,
    headers: &HeaderMap,
    base: &str,
    render: &Render,
    head: bool,
) -> Response {
    let registry = st.engine.registry();
    let key = format!(
        "{base}\n{:?}\n{}\n{:?}\n{:?}",
        render.out.format, render.out.pretty, render.summary, render.elements
    );
    let variant = match st.metadata.get(&registry, &key) {
        Some(v) => v,
        None => {
            let (st2, reg, base) = (st.clone(), registry.clone(), base.to_string());
            let (out, summary, elements) = (render.out, render.summary, render.elements.clone());
            let built = tokio::task::spawn_blocking(move || {
                build(&st2, &reg, &base, out, summary, elements.as_deref())
            })
            .await;
            let Ok(Some(v)) = built else {
                return super::respond::outcome_response(
                    500,
                    &[issho_model::Issue::error(
                        issho_model::IssueType::Exception,
                        "the CapabilityStatement could not be written in this format",
                    )],
                    format::Out::JSON,
                );
            };
            let v = Arc::new(v);
            st.metadata.put(&registry, key, v.clone());
            v
        }
    };
    respond(&variant, headers, head)
}

fn respond(v: &Variant, headers: &HeaderMap, head: bool) -> Response {
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    h.insert(header::ETAG, v.etag.clone());
    if v.gzip.is_some() || v.br.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if matches_etag(headers, &v.etag) {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(v.content_type),
    );
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|a| a.to_str().ok());
    let (body, encoding) = match (accepts(accept, "br"), accepts(accept, "gzip")) {
        (true, _) if v.br.is_some() => (v.br.clone(), Some("br")),
        (_, true) if v.gzip.is_some() => (v.gzip.clone(), Some("gzip")),
        _ => (None, None),
    };
    if let Some(e) = encoding {
        // Already compressed: the compression layer leaves an encoded body alone.
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
    }
    let body = body.unwrap_or_else(|| v.body.clone());
    if head {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    } else {
        *r.body_mut() = Body::from(body);
    }
    r
}

/// Build one rendering (blocking work: ~20 ms and 400 KB for the full statement).
fn build(
    st: &AppState,
    registry: &Registry,
    base: &str,
    out: format::Out,
    summary: Summary,
    elements: Option<&[String]>,
) -> Option<Variant> {
    let mut cs = crate::capability_statement(base, registry);
    if let Some(auth) = st.config.auth.as_ref().filter(|_| !st.config.dev_open) {
        cs["rest"][0]["security"] = crate::capability::security(auth);
    }
    let plain = summary == Summary::False && elements.is_none();
    if !plain {
        cs = format::shape(cs, summary, elements);
    }
    let body = Bytes::from(out.bytes(&cs)?);
    // Compressed once for the form every client asks for; other variants are compressed per
    // response by the compression layer.
    let precompress = plain && out == format::Out::JSON;
    Some(Variant {
        gzip: precompress.then(|| gzip(&body)).flatten(),
        br: precompress.then(|| brotli(&body)).flatten(),
        etag: etag_of(&body),
        content_type: out.content_type(),
        body,
    })
}

/// A weak validator from the bytes (the same for every content coding of them).
fn etag_of(body: &[u8]) -> HeaderValue {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    HeaderValue::from_str(&format!("W/\"cs-{:016x}\"", h.finish()))
        .expect("hex digits make a valid ETag")
}

/// `If-None-Match` lists this ETag (weak comparison) or is `*`.
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let mine = opaque(etag.to_str().unwrap_or(""));
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == mine)
}

/// Does `Accept-Encoding` allow `coding` (listed, or through `*`, with a non-zero q)?
fn accepts(accept: Option<&str>, coding: &str) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut star = None;
    for part in accept.split(',') {
        let mut fields = part.split(';');
        let name = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = fields
            .filter_map(|f| f.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if name == coding || (coding == "gzip" && name == "x-gzip") {
            return q > 0.0;
        }
        if name == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(body).ok()?;
    enc.finish().ok().map(Bytes::from)
}

fn brotli(body: &[u8]) -> Option<Bytes> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 9, 22);
        w.write_all(body).ok()?;
    }
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding() {
        assert!(accepts(Some("gzip, deflate, br"), "br"));
        assert!(accepts(Some("gzip;q=0.5"), "gzip"));
        assert!(!accepts(Some("gzip;q=0"), "gzip"));
        assert!(accepts(Some("*"), "br"));
        assert!(!accepts(Some("*, br;q=0"), "br"));
        assert!(!accepts(Some("identity"), "gzip"));
        assert!(!accepts(None, "gzip"));
    }

    #[test]
    fn etags_compare_weakly() {
        let tag = etag_of(b"x");
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!matches_etag(&h, &tag));
        let opaque = tag.to_str().unwrap().trim_start_matches("W/").to_string();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"a\", {opaque}")).unwrap(),
        );
        assert!(matches_etag(&h, &tag));
    }
}
