//! Search results as searchset Bundles: as a JSON tree, or written straight to bytes with each
//! resource's stored JSON copied as it is (no parse and no second serialisation of the
//! resources: most of a large page's cost).

use crate::search::SearchResult;
use crate::*;

impl Engine {
    /// Render a search result as a searchset Bundle. `base` is the base URL used for fullUrls
    /// and links; `path` the search path (`Patient`, or empty for system level).
    pub fn search_bundle(&self, res: &SearchResult, path: &str, base: Option<&str>) -> Value {
        let mut b = self.searchset_head(res, path, base);
        let mut entries: Vec<Value> = Vec::new();
        for (s, mode) in entries_of(res) {
            if let Some(v) = s.json() {
                entries.push(serde_json::json!({
                    "fullUrl": full_url(base, &s.resource_type, &s.id),
                    "resource": v,
                    "search": {"mode": mode},
                }));
            }
        }
        if !res.warnings.is_empty() {
            entries.push(outcome_entry(res));
        }
        // FHIR JSON has no empty arrays: no matches, no `entry`.
        if !entries.is_empty() {
            b["entry"] = Value::Array(entries);
        }
        b
    }

    /// [`Engine::search_bundle`] written as JSON bytes: the same Bundle (the same members in
    /// the same order), but each resource's stored JSON is copied into its entry as it is.
    /// For answers that show resources as stored (JSON without `_summary` / `_elements`).
    /// A stored body is copied unchecked, as a read by id sends it: every body was written
    /// by issho's own serialiser (the tree form leaves out one that does not parse).
    pub fn search_bundle_json(
        &self,
        res: &SearchResult,
        path: &str,
        base: Option<&str>,
    ) -> Vec<u8> {
        let head = self.searchset_head(res, path, base);
        let mut out = serde_json::to_vec(&head).unwrap_or_default();
        // Reopen the object: `…"link":[…]}` becomes `…"link":[…],"entry":[…]}`.
        out.pop();
        let mut entries = 0;
        let mut next_entry = |out: &mut Vec<u8>| {
            out.extend_from_slice(if entries == 0 { b",\"entry\":[" } else { b"," });
            entries += 1;
        };
        for (s, mode) in entries_of(res) {
            let Some(body) = &s.body else { continue };
            next_entry(&mut out);
            out.extend_from_slice(b"{\"fullUrl\":");
            let url = full_url(base, &s.resource_type, &s.id);
            out.extend_from_slice(&serde_json::to_vec(&url).unwrap_or_default());
            out.extend_from_slice(b",\"resource\":");
            out.extend_from_slice(body);
            out.extend_from_slice(b",\"search\":{\"mode\":\"");
            out.extend_from_slice(mode.as_bytes());
            out.extend_from_slice(b"\"}}");
        }
        if !res.warnings.is_empty() {
            next_entry(&mut out);
            out.extend_from_slice(&serde_json::to_vec(&outcome_entry(res)).unwrap_or_default());
        }
        if entries > 0 {
            out.push(b']');
        }
        out.push(b'}');
        out
    }

    /// The Bundle without its entries: id, type, total and links.
    fn searchset_head(&self, res: &SearchResult, path: &str, base: Option<&str>) -> Value {
        let base = base.unwrap_or("");
        let link_url = |offset: usize| {
            let mut qs: Vec<String> = res
                .params
                .iter()
                .filter(|(k, _)| k != "_offset" && k != "_count")
                .map(|(k, v)| format!("{}={}", enc_name(k), enc(v)))
                .collect();
            qs.push(format!("_count={}", res.count));
            if let Some(t) = &res.page_token {
                qs.push(format!("_page={t}"));
            }
            if offset > 0 {
                qs.push(format!("_offset={offset}"));
            }
            let p = if base.is_empty() {
                path.to_string()
            } else {
                format!("{base}/{path}")
            };
            format!("{}?{}", p.trim_end_matches('/'), qs.join("&"))
        };
        let mut links = vec![serde_json::json!({"relation": "self", "url": link_url(res.offset)})];
        links.push(serde_json::json!({"relation": "first", "url": link_url(0)}));
        // An empty page (`_count=0`) has no neighbours: their links would equal `self`.
        if res.offset > 0 && res.count > 0 {
            links.push(serde_json::json!({"relation": "previous", "url": link_url(res.offset.saturating_sub(res.count))}));
        }
        if res.has_next && res.count > 0 {
            links.push(
                serde_json::json!({"relation": "next", "url": link_url(res.offset + res.count)}),
            );
        }
        let mut b = serde_json::json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "searchset",
        });
        if let Some(t) = res.total {
            b["total"] = Value::from(t);
        }
        b["link"] = Value::Array(links);
        b
    }
}

/// The page's resources with their search mode: the matches, then the included ones.
fn entries_of(res: &SearchResult) -> impl Iterator<Item = (&Stored, &'static str)> {
    res.matches
        .iter()
        .map(|s| (s, "match"))
        .chain(res.included.iter().map(|s| (s, "include")))
}

fn full_url(base: Option<&str>, rt: &str, id: &str) -> String {
    match base.unwrap_or("") {
        "" => format!("{rt}/{id}"),
        b => format!("{b}/{rt}/{id}"),
    }
}

/// The entry of the search's warnings.
fn outcome_entry(res: &SearchResult) -> Value {
    serde_json::json!({
        "resource": issho_model::operation_outcome(&res.warnings),
        "search": {"mode": "outcome"},
    })
}

/// Percent-encoding for query components: everything but RFC 3986's unreserved characters
/// (and `:` between a parameter and its modifier) is encoded.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY).to_string()
}

/// A parameter name (`code:in`, `_has:Observation:subject:code`).
fn enc_name(s: &str) -> String {
    s.split(':').map(enc).collect::<Vec<_>>().join(":")
}
