//! The kick-off's parameters of a Bulk Data `$export`: the export request (`_type`,
//! `_since`, `_typeFilter`, `includeAssociatedData`, `_outputFormat`), and `_elements` — each
//! checked, and refused (400) rather than ignored when not supported.

use crate::bulk::BulkLevel;
use crate::export::{Associated, ExportRequest};
use crate::{FhirError, Result};
use issho_model::IssueType;
use serde_json::Value;

/// The kick-off's parameters as an export request; what is not supported is refused (400)
/// rather than ignored.
pub(crate) fn request_of(level: &BulkLevel, params: &[(String, String)]) -> Result<ExportRequest> {
    let mut req = ExportRequest::default();
    for (k, v) in params {
        match k.as_str() {
            "_outputFormat" => {
                if !matches!(
                    v.as_str(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(FhirError::bad_request(format!(
                        "_outputFormat '{v}' is not supported (application/fhir+ndjson is)"
                    )));
                }
            }
            "_type" => req.types.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            ),
            "_since" => req.since = Some(v.clone()),
            "_typeFilter" => {
                for f in type_filters(v) {
                    let f = f.as_str();
                    let (t, q) = f.trim().split_once('?').ok_or_else(|| {
                        FhirError::bad_request(format!(
                            "_typeFilter '{f}' is not Type?search-parameters"
                        ))
                    })?;
                    req.type_filters
                        .push((t.to_string(), crate::search::parse_query(q)));
                }
            }
            "_elements" => {}
            "includeAssociatedData" => {
                for value in v.split(',').map(str::trim) {
                    let mode = match value {
                        "LatestProvenanceResources" => Associated::LatestProvenance,
                        "RelevantProvenanceResources" => Associated::RelevantProvenance,
                        other => {
                            return Err(FhirError::new(
                                400,
                                IssueType::NotSupported,
                                format!(
                                    "includeAssociatedData '{other}' is not offered (LatestProvenanceResources, RelevantProvenanceResources)"
                                ),
                            ));
                        }
                    };
                    // Both asked: every relevant Provenance holds the latest.
                    if req.associated != Some(Associated::RelevantProvenance) {
                        req.associated = Some(mode);
                    }
                }
            }
            "patient" => {
                return Err(FhirError::new(
                    400,
                    IssueType::NotSupported,
                    format!("the $export parameter {k} is not yet supported here"),
                ));
            }
            other => {
                return Err(FhirError::bad_request(format!(
                    "unknown $export parameter '{other}'"
                )));
            }
        }
    }
    // The same type or filter twice would export it twice.
    let mut seen = std::collections::HashSet::new();
    req.types.retain(|t| seen.insert(t.clone()));
    let mut seen = std::collections::HashSet::new();
    req.type_filters.retain(|f| seen.insert(f.clone()));
    if *level != BulkLevel::System {
        let model = issho_model::r4();
        let in_compartment = |t: &str| model.always_personal(t);
        if req.types.is_empty() {
            req.types = model
                .resource_types()
                .iter()
                .filter(|t| in_compartment(t))
                .cloned()
                .collect();
        } else if let Some(t) = req.types.iter().find(|t| !in_compartment(t)) {
            return Err(FhirError::bad_request(format!(
                "_type: {t} is not in the patient compartment (Patient-level $export)"
            )));
        }
    }
    Ok(req)
}

/// The queries of a `_typeFilter` value: comma-separated, but a comma inside a query (a
/// decoded `%2C` between OR values) stays in it — a query starts with `Type?`.
fn type_filters(v: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in v.split(',') {
        let starts_query = part.split_once('?').is_some_and(|(t, _)| {
            t.trim().starts_with(|c: char| c.is_ascii_uppercase())
                && t.trim().chars().all(|c| c.is_ascii_alphanumeric())
        });
        match out.last_mut() {
            Some(last) if !starts_query => {
                last.push(',');
                last.push_str(part);
            }
            _ => out.push(part.to_string()),
        }
    }
    out.retain(|f| !f.trim().is_empty());
    out
}

/// `_elements`: (type or none, element name); only root elements, as Bulk Data allows.
pub(crate) fn elements_of(params: &[(String, String)]) -> Result<Vec<(Option<String>, String)>> {
    let mut out = Vec::new();
    for (_, v) in params.iter().filter(|(k, _)| k == "_elements") {
        for e in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (t, name) = match e.split_once('.') {
                Some((t, n)) => (Some(t.to_string()), n),
                None => (None, e),
            };
            let known = match &t {
                Some(t) => issho_model::r4()
                    .type_def(t)
                    .is_some_and(|td| td.element(name).is_some() || is_choice_root(td, name)),
                None => !name.contains('.'),
            };
            if !known || name.contains('.') {
                return Err(FhirError::bad_request(format!(
                    "_elements: '{e}' is not a root element ([Type.]element)"
                )));
            }
            out.push((t, name.to_string()));
        }
    }
    Ok(out)
}

fn is_choice_root(td: &issho_model::TypeDef, name: &str) -> bool {
    td.element(&format!("{name}[x]")).is_some()
}

/// A resource's JSON with only the `_elements` that apply to its type (and the mandatory
/// ones), marked SUBSETTED; unchanged when none applies.
pub(crate) fn subset(
    rt: &str,
    body: &[u8],
    elements: &[(Option<String>, String)],
) -> Option<Vec<u8>> {
    let names: Vec<String> = elements
        .iter()
        .filter(|(t, _)| t.as_deref().is_none_or(|t| t == rt))
        .map(|(_, n)| n.clone())
        .collect();
    if names.is_empty() {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    // A choice element (`value`, for `value[x]`) keeps its typed key (`valueQuantity`).
    let mut names = names;
    if let (Some(o), Some(td)) = (v.as_object(), issho_model::r4().type_def(rt)) {
        let choices: Vec<&String> = names.iter().filter(|n| is_choice_root(td, n)).collect();
        let typed: Vec<String> = o
            .keys()
            .filter(|k| {
                choices.iter().any(|n| {
                    k.len() > n.len()
                        && k.starts_with(n.as_str())
                        && k.as_bytes()[n.len()].is_ascii_uppercase()
                })
            })
            .cloned()
            .collect();
        names.extend(typed);
    }
    let shaped = issho_search::shape(v, issho_search::Summary::False, Some(&names));
    serde_json::to_vec(&shaped).ok()
}
