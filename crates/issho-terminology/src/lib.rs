//! Terminology without a store. The server's CodeSystem, ValueSet and ConceptMap resources
//! reach it through [`Source`]; it indexes code systems ([`system`]), expands value sets
//! ([`expand`]), answers the terminology operations ([`ops`]: `$lookup`, `$validate-code`,
//! `$expand`, `$subsumes`, `$translate`) and the search modifiers `:in`, `:not-in`,
//! `:below`, `:above` ([`codes`], [`subsumption`]), and knows Japanese code systems
//! ([`jp`]: the J-FAGY loader, CSV loaders for JLAC10, YJ, HOT and MEDIS, and their format
//! rules).

pub mod expand;
pub mod jp;
mod memory;
pub mod ops;
pub mod system;
pub mod text;

use issho_model::{Issue, IssueType};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

pub use memory::Resources;
pub use system::CodeSystem;

/// The largest expansion a search may use.
pub const MAX_CODES: usize = 10_000;

/// Where terminology resources come from (the store, or a list in tests).
pub trait Source {
    /// The resource of `resource_type` with this canonical `url` (and `version`, when given);
    /// when several versions are stored and none is asked for, the newest.
    fn by_url(&self, resource_type: &str, url: &str, version: Option<&str>) -> Option<Value>;
    /// A resource by id (`ValueSet/id` references).
    fn by_id(&self, resource_type: &str, id: &str) -> Option<Value>;
    /// A CodeSystem whose `valueSet` (its implicit value set of all codes) is `url`.
    fn code_system_for_value_set(&self, url: &str) -> Option<Value>;
    /// The ConceptMaps that map from `source_system` (all, when `None`).
    fn concept_maps(&self, source_system: Option<&str>) -> Vec<Value>;
    /// The code system `url` (`version`), indexed; a source may keep them.
    fn code_system(&self, url: &str, version: Option<&str>) -> Option<Arc<CodeSystem>> {
        self.by_url("CodeSystem", url, version)
            .map(|v| Arc::new(CodeSystem::of(&v)))
    }
}

pub(crate) fn issue(code: IssueType, msg: impl Into<String>) -> Issue {
    Issue::error(code, msg)
}

/// The (system, code) pairs of a value set reference, for `:in` / `:not-in`.
pub fn codes(src: &dyn Source, reference: &str) -> Result<BTreeSet<(String, String)>, Issue> {
    let o = expand::Options {
        limit: MAX_CODES,
        lang: None,
    };
    Ok(expand::expand(src, reference, &o)?
        .entries
        .into_iter()
        .filter(|e| !e.is_abstract)
        .map(|e| (e.system, e.code))
        .collect())
}

/// `:below` / `:above`: the code and its descendants (or ancestors) in its code system.
pub fn subsumption(
    src: &dyn Source,
    system: Option<&str>,
    code: &str,
    above: bool,
) -> Result<BTreeSet<(String, String)>, Issue> {
    let m = if above { "above" } else { "below" };
    let Some(system) = system else {
        return Err(issue(
            IssueType::Invalid,
            format!(":{m} needs system|code (the hierarchy belongs to a code system)"),
        ));
    };
    let Some(cs) = src.code_system(system, None) else {
        return Err(issue(
            IssueType::NotSupported,
            format!(
                ":{m} needs the hierarchy of {system}, and no CodeSystem with that url is stored"
            ),
        ));
    };
    if cs.get(code).is_none() {
        return Err(issue(
            IssueType::CodeInvalid,
            format!("'{code}' is not a code of {system}"),
        ));
    }
    let found = cs.closure(code, !above, true);
    if found.len() > MAX_CODES {
        return Err(issue(
            IssueType::TooCostly,
            format!("more than {MAX_CODES} codes are {m} '{code}'"),
        ));
    }
    Ok(found
        .into_iter()
        .map(|c| (system.to_string(), c.code.clone()))
        .collect())
}

#[cfg(test)]
mod tests;
