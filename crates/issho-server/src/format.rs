//! Wire formats: content negotiation, rendering, `_summary` and `_elements` shaping.

use issho_model::{Issue, IssueType};
use serde_json::Value;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

/// Output formats issho can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// How a response body is written: format and pretty-printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Out {
    pub format: Format,
    pub pretty: bool,
}

impl Out {
    pub const JSON: Out = Out {
        format: Format::Json,
        pretty: false,
    };

    pub fn content_type(self) -> &'static str {
        match self.format {
            Format::Json => FHIR_JSON,
            Format::Xml => FHIR_XML,
        }
    }

    /// Serialise a resource. XML conversion failures fall back to JSON's error-free path by
    /// returning None (the caller answers 500 with an OperationOutcome).
    ///
    /// The last check of every body: FHIR allows no empty arrays or objects, so any left by
    /// the code that built `v` (an empty page, an element emptied by `_elements`) are removed.
    pub fn bytes(self, v: &Value) -> Option<Vec<u8>> {
        if has_empty(v) {
            tracing::debug!("empty arrays or objects removed from a response body");
            let mut v = v.clone();
            prune_empty(&mut v);
            return self.write(&v);
        }
        self.write(v)
    }

    fn write(self, v: &Value) -> Option<Vec<u8>> {
        match self.format {
            Format::Json => Some(to_bytes(v, self.pretty)),
            Format::Xml => issho_model::xml::json_to_xml(v)
                .ok()
                .map(|x| format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{x}").into_bytes()),
        }
    }
}

/// Pick the response format from `_format` (which wins) or `Accept`.
pub fn negotiate(format_param: Option<&str>, accept: Option<&str>) -> Result<Format, Issue> {
    if let Some(f) = format_param {
        // An unencoded `+` in the query string arrives as a space: `application/fhir json`.
        let f = f
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .replace(' ', "+")
            .to_ascii_lowercase();
        let f = f.as_str();
        return match f {
            "json" | "application/json" | "application/fhir+json" | "application/json+fhir" => {
                Ok(Format::Json)
            }
            "xml"
            | "text/xml"
            | "application/xml"
            | "application/fhir+xml"
            | "application/xml+fhir" => Ok(Format::Xml),
            _ => Err(Issue::error(
                IssueType::NotSupported,
                format!("_format '{f}' is not a FHIR format this server supports"),
            )),
        };
    }
    let Some(accept) = accept else {
        return Ok(Format::Json);
    };
    let mut any_listed = false;
    for part in accept.split(',') {
        let mime = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let mime = mime.as_str();
        if mime.is_empty() {
            continue;
        }
        any_listed = true;
        // q=0 means "not acceptable".
        if part.split(';').skip(1).any(|p| {
            let p = p.trim();
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        }) {
            continue;
        }
        if matches!(
            mime,
            "application/fhir+json"
                | "application/json"
                | "application/json+fhir"
                | "*/*"
                | "application/*"
        ) {
            return Ok(Format::Json);
        }
        if matches!(
            mime,
            "application/fhir+xml" | "application/xml" | "application/xml+fhir" | "text/xml"
        ) {
            return Ok(Format::Xml);
        }
    }
    if !any_listed {
        return Ok(Format::Json);
    }
    Err(Issue::error(
        IssueType::NotSupported,
        format!(
            "none of the formats in Accept ('{accept}') is available; this server produces application/fhir+json and application/fhir+xml"
        ),
    ))
}

/// Is a request body's Content-Type FHIR XML?
pub fn is_fhir_xml(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/fhir+xml" | "application/xml" | "application/xml+fhir" | "text/xml"
    )
}

/// Is a request body's Content-Type acceptable for a FHIR resource?
pub fn is_fhir_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

/// Does `v` hold an empty array or object anywhere (itself included)?
pub fn has_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty() || a.iter().any(has_empty),
        Value::Object(o) => o.is_empty() || o.values().any(has_empty),
        _ => false,
    }
}

/// Remove empty arrays and objects, bottom up (an object left empty goes too). Inside the
/// arrays of primitive extensions (`_given`), an emptied item becomes `null` to keep the
/// alignment with the values; such an array of nulls only goes as a whole. Returns true
/// when `v` itself is now empty.
pub fn prune_empty(v: &mut Value) -> bool {
    match v {
        Value::Object(o) => {
            o.retain(|k, child| match child {
                Value::Array(a) => {
                    let aligned = k.starts_with('_');
                    prune_array(a, aligned);
                    !a.is_empty()
                }
                _ => !prune_empty(child),
            });
            o.is_empty()
        }
        Value::Array(a) => {
            prune_array(a, false);
            a.is_empty()
        }
        _ => false,
    }
}

fn prune_array(a: &mut Vec<Value>, aligned: bool) {
    if aligned {
        for item in a.iter_mut() {
            if prune_empty(item) {
                *item = Value::Null;
            }
        }
        if a.iter().all(Value::is_null) {
            a.clear();
        }
    } else {
        a.retain_mut(|item| !prune_empty(item));
    }
}

/// Serialise for the wire.
pub fn to_bytes(v: &Value, pretty: bool) -> Vec<u8> {
    if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    }
    .unwrap_or_default()
}

/// `_summary` modes (the search crate's: one definition for searches and reads).
pub use issho_search::Summary;

pub fn parse_summary(s: &str) -> Result<Summary, Issue> {
    Ok(match s {
        "true" => Summary::True,
        "text" => Summary::Text,
        "data" => Summary::Data,
        "count" => Summary::Count,
        "false" => Summary::False,
        _ => {
            return Err(Issue::error(
                IssueType::Invalid,
                format!("_summary must be one of true, text, data, count, false (not '{s}')"),
            ));
        }
    })
}

/// `_summary` / `_elements` applied to one resource (store-neutral, in issho-search: the
/// export's `_elements` uses it too).
pub use issho_search::shape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None, None).unwrap(), Format::Json);
        assert_eq!(
            negotiate(None, Some("application/fhir+json")).unwrap(),
            Format::Json
        );
        assert_eq!(
            negotiate(None, Some("text/html,application/xhtml+xml,*/*;q=0.8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            negotiate(None, Some("application/fhir+xml")).unwrap(),
            Format::Xml
        );
        assert_eq!(negotiate(Some("xml"), None).unwrap(), Format::Xml);
        assert!(negotiate(None, Some("image/png")).is_err());
        assert!(negotiate(Some("turtle"), None).is_err());
        assert_eq!(
            negotiate(Some("json"), Some("application/fhir+xml")).unwrap(),
            Format::Json
        );
    }

    #[test]
    fn empty_arrays_and_objects_are_removed() {
        let v = serde_json::json!({
            "resourceType": "Bundle", "type": "searchset", "link": [], "entry": [{}],
            "meta": {"tag": []},
            "x": {"name": [{"given": ["a", "b"], "_given": [{}, {"id": "g"}]}, {}]},
            "y": {"_given": [{}, {"extension": []}]}
        });
        assert!(has_empty(&v));
        let out: Value = serde_json::from_slice(&Out::JSON.bytes(&v).unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "resourceType": "Bundle", "type": "searchset",
                "x": {"name": [{"given": ["a", "b"], "_given": [null, {"id": "g"}]}]}
            })
        );
        assert!(!has_empty(&out));
    }

    #[test]
    fn summary_keeps_summary_elements() {
        let p = serde_json::json!({
            "resourceType": "Patient", "id": "a", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "name": [{"family": "Yamada"}], "photo": [{"contentType": "image/png"}],
            "contact": [{"name": {"family": "X"}}]
        });
        let s = shape(p.clone(), Summary::True, None);
        assert!(s.get("name").is_some());
        assert!(s.get("photo").is_none());
        assert!(s.get("text").is_none());
        assert!(s.get("contact").is_none());
        assert_eq!(s["meta"]["tag"][0]["code"], "SUBSETTED");
        let e = shape(p, Summary::False, Some(&["name".to_string()]));
        assert!(e.get("name").is_some() && e.get("photo").is_none() && e.get("id").is_some());
    }
}
