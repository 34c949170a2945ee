//! Documents in the person's record (JP-CLINS referral letters, discharge summaries, checkup
//! reports: a Composition and what it holds) rendered readably and printable: the title, date
//! and authoring institution, then each section — its narrative as plain text (the sending
//! system's XHTML is never passed through), its entries as rows, its subsections below it. The
//! document is read through the engine as the person may (`Composition/[id]/$document`).

use crate::html::{self, esc};
use crate::i18n::{Lang, t};
use crate::portal::{Record, date_of, text_of};
use crate::{Signed, Web, blocking, error_page};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The text of an XHTML narrative: tags dropped, the usual entities read, blank runs folded.
pub fn plain_text(xhtml: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in xhtml.chars() {
        match (c, in_tag) {
            ('<', _) => {
                in_tag = true;
                out.push(' ');
            }
            ('>', true) => in_tag = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The documents of the record, each with a button to read it.
pub(crate) fn list(lang: Lang, s: &Signed, rec: &Record) -> String {
    let docs: Vec<Value> = rec.of("Composition").cloned().collect();
    list_of(lang, s, &docs, "/portal/document")
}

/// Documents (Compositions), each with a button posting to `action`.
pub(crate) fn list_of(lang: Lang, s: &Signed, docs: &[Value], action: &str) -> String {
    let mut docs: Vec<&Value> = docs.iter().collect();
    docs.sort_by(|a, b| b["date"].as_str().cmp(&a["date"].as_str()));
    if docs.is_empty() {
        return html::p(t(lang, "documents-none"));
    }
    let rows: Vec<Vec<String>> = docs
        .iter()
        .map(|d| {
            vec![
                esc(&d["date"].as_str().unwrap_or("").chars().take(10).collect::<String>()),
                esc(d["title"].as_str().unwrap_or("")),
                format!(
                    "<form method=\"post\" action=\"{action}\" class=\"inline\">{}<input type=\"hidden\" name=\"id\" value=\"{}\"><button class=\"secondary\" type=\"submit\">{}</button></form>",
                    html::csrf(&s.session),
                    esc(d["id"].as_str().unwrap_or("")),
                    t(lang, "open")
                ),
            ]
        })
        .collect();
    html::table("", &[t(lang, "when"), t(lang, "what"), ""], &rows)
}

fn section_html(lang: Lang, sec: &Value, by_ref: &HashMap<String, &Value>, depth: usize) -> String {
    let h = if depth == 0 { "h2" } else { "h3" };
    let mut out = format!("<{h}>{}</{h}>\n", esc(sec["title"].as_str().unwrap_or("")));
    if let Some(div) = sec["text"]["div"].as_str() {
        let text = plain_text(div);
        if !text.is_empty() {
            out.push_str(&html::p(&text));
        }
    }
    let rows: Vec<Vec<String>> = sec["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reference"].as_str())
        .filter_map(|r| by_ref.get(r).copied())
        .map(|r| {
            vec![
                esc(&date_of(r)
                    .unwrap_or("")
                    .chars()
                    .take(10)
                    .collect::<String>()),
                esc(&text_of(r)),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&html::table("", &[t(lang, "when"), t(lang, "what")], &rows));
    }
    for sub in sec["section"].as_array().into_iter().flatten() {
        if depth < 4 {
            out.push_str(&section_html(lang, sub, by_ref, depth + 1));
        }
    }
    out
}

/// A document Bundle as HTML.
pub fn render(lang: Lang, bundle: &Value, names: &HashMap<String, String>) -> (String, String) {
    let entries: Vec<(&str, &Value)> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["fullUrl"].as_str().unwrap_or(""), &e["resource"]))
        .collect();
    // Entries by their fullUrl and by `Type/id`.
    let mut by_ref: HashMap<String, &Value> = HashMap::new();
    for (full, r) in &entries {
        if !full.is_empty() {
            by_ref.insert(full.to_string(), r);
        }
        if let (Some(rt), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) {
            by_ref.insert(format!("{rt}/{id}"), r);
        }
    }
    let Some((_, comp)) = entries
        .iter()
        .find(|(_, r)| r["resourceType"] == "Composition")
    else {
        return (String::new(), String::new());
    };
    let title = comp["title"].as_str().unwrap_or("").to_string();
    let custodian = comp["custodian"]["reference"]
        .as_str()
        .map(|o| names.get(o).cloned().unwrap_or(o.to_string()))
        .unwrap_or_default();
    let mut out = format!(
        "<p>{} · {}: {}</p>\n",
        esc(comp["date"].as_str().unwrap_or("")),
        t(lang, "institution"),
        esc(&custodian)
    );
    for sec in comp["section"].as_array().into_iter().flatten() {
        out.push_str(&section_html(lang, sec, &by_ref, 0));
    }
    out.push_str(&format!("<p class=\"muted\">{}</p>", t(lang, "print-hint")));
    (title, out)
}

/// `POST /portal/document`: one document of the person's record.
pub(crate) async fn show(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, _pid, f) = match web.person_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    show_as(web, s, f, "/portal").await
}

/// `POST /clinician/document`: a document of a record the clinician may read.
pub(crate) async fn show_clinician(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = crate::form(&body);
    let s = match web.posted(&headers, &f) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    show_as(web, s, f, "/clinician").await
}

async fn show_as(
    web: Arc<Web>,
    s: Signed,
    f: HashMap<String, String>,
    back: &'static str,
) -> Response {
    let lang = s.lang;
    let id = f.get("id").cloned().unwrap_or_default();
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let base = format!("{}/fhir", web.origin);
    let res = blocking(move || {
        let doc = engine.composition_document(&ctx, &id, &base)?;
        let all: Vec<Value> = doc["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .collect();
        let mut names = crate::portal::institution_names(&engine, &ctx, &all)?;
        for r in &all {
            if r["resourceType"] == "Organization"
                && let (Some(i), Some(n)) = (r["id"].as_str(), r["name"].as_str())
            {
                names.insert(format!("Organization/{i}"), n.to_string());
            }
        }
        Ok((doc, names))
    })
    .await;
    match res {
        Ok((doc, names)) => {
            let (title, body) = render(lang, &doc, &names);
            crate::html(
                200,
                html::page(
                    lang,
                    &title,
                    Some(&s.session),
                    back,
                    &format!(
                        "{body}<p><a href=\"{back}#documents\">{}</a></p>",
                        t(lang, "back")
                    ),
                ),
            )
        }
        Err(e) => error_page(lang, Some(&s.session), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrative_becomes_plain_text() {
        assert_eq!(
            plain_text(
                "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>血圧&amp;脈拍</p><script>alert(1)</script></div>"
            ),
            "血圧&脈拍 alert(1)"
        );
        // What comes out is text: escaped where it is put on a page.
        assert!(!html::p(&plain_text("&lt;b&gt;x")).contains("<b>"));
    }
}
