//! Patching resources: RFC 6902 JSON Patch and FHIRPath Patch (FHIR R4 fhirpatch.html).
//!
//! Both are all-or-nothing: they work on a copy and only replace the caller's resource when
//! every operation succeeded. Failures are [`Issue`]s that say which operation failed and why.

mod fhirpath_patch;
mod json_patch;

pub use fhirpath_patch::apply_fhirpath_patch;
pub use json_patch::apply_json_patch;

use issho_model::{Issue, IssueType};
use serde_json::Value;

pub(crate) fn invalid(msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invalid, msg)
}

/// JSON equality where numbers compare by value (`1` equals `1.0`) and object member order
/// does not matter.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || match (
                    issho_fhirpath::Decimal::parse(&x.to_string()),
                    issho_fhirpath::Decimal::parse(&y.to_string()),
                ) {
                    (Some(p), Some(q)) => p == q,
                    _ => false,
                }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
