//! Profile validation: a resource against a StructureDefinition's snapshot (JP Core,
//! JP-CLINS, eCheckupReport, any installed profile). The walk ([`walk`]) follows the
//! snapshot's element tree over the instance: cardinality, types, `fixed[x]` and
//! `pattern[x]`, slicing with the discriminators R4 defines (value, pattern, type, profile,
//! exists) and open, closed and ordered rules, extensions against their own definitions and
//! contexts, reference targets (`targetProfile`, by type), bindings by strength through
//! issho-terminology (required: error; extensible: warning), and invariants
//! (`constraint.expression`) with issho-fhirpath at their severity ([`checks`]).
//!
//! Messages name the profile, the element (its FHIRPath location) and the rule.
//! Definitions come through [`Definitions`] (the store, in the engine); a definition without
//! a snapshot gets one generated from its differential ([`snapshot_elements`]). The R4 base
//! invariants of every resource, profiled or not, are [`base_invariants`]'.

mod base;
mod checks;
mod memory;
pub mod profile;
mod snapshot;
mod walk;

use issho_model::{Issue, IssueType, Severity};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use base::{
    base_invariant_errors, base_invariant_warnings, base_invariants, base_invariants_checked,
};
pub use memory::Resources;
pub use profile::Profile;
pub use snapshot::snapshot_elements;

/// Where StructureDefinitions come from.
pub trait Definitions {
    /// The profile with this canonical URL (`url` or `url|version`), indexed.
    fn profile(&self, url: &str) -> Option<Arc<Profile>>;
    /// Value set expansions kept across validations (by url), when the caller keeps them.
    fn expansions(&self) -> Option<&Expansions> {
        None
    }
}

/// A value set's codes (system, code), or why there are none.
pub type Expansion = Arc<Result<HashSet<(String, String)>, String>>;

/// Value set expansions by url.
pub type Expansions = std::sync::Mutex<HashMap<String, Expansion>>;

/// How deep profiles may nest (extensions of extensions, entries of Bundles).
const MAX_DEPTH: usize = 12;

/// One validation run: the definitions, terminology, and what was found.
pub(crate) struct Run<'a> {
    pub defs: &'a dyn Definitions,
    pub terminology: &'a dyn issho_terminology::Source,
    pub issues: Vec<Issue>,
    seen: HashSet<(String, Option<String>)>,
    /// Value set expansions of this run: url → codes (or why there are none).
    pub expansions: HashMap<String, Expansion>,
    pub depth: usize,
    /// The Bundle being validated, whose entries references resolve to.
    pub bundle: Option<&'a Value>,
}

impl<'a> Run<'a> {
    fn new(
        resource: &'a Value,
        defs: &'a dyn Definitions,
        terminology: &'a dyn issho_terminology::Source,
    ) -> Run<'a> {
        Run {
            defs,
            terminology,
            issues: Vec::new(),
            seen: HashSet::new(),
            expansions: HashMap::new(),
            depth: 0,
            bundle: (resource["resourceType"] == "Bundle").then_some(resource),
        }
    }

    /// The entry of the Bundle a reference names (by `fullUrl`, or `Type/id`).
    pub fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let b = self.bundle?;
        b["entry"].as_array()?.iter().find_map(|e| {
            let full = e["fullUrl"].as_str().unwrap_or_default();
            let r = &e["resource"];
            let by_id = reference.split_once('/').is_some_and(|(t, id)| {
                r["resourceType"].as_str() == Some(t) && r["id"].as_str() == Some(id)
            });
            (full == reference
                || (!full.is_empty() && full.ends_with(&format!("/{reference}")))
                || by_id)
                .then_some(r)
        })
    }

    /// Records an issue once (a value is checked against an element and its slices, which
    /// share their inherited rules).
    pub fn report(&mut self, severity: Severity, code: IssueType, at: &str, msg: String) {
        if self.seen.insert((msg.clone(), Some(at.to_string()))) {
            let i = match severity {
                Severity::Error | Severity::Fatal => Issue::error(code, msg),
                Severity::Warning => Issue::warning(code, msg),
                Severity::Information => Issue::information(msg),
            };
            self.issues.push(i.at(at));
        }
    }
}

/// Validates `resource` against the profile `url`. An unknown profile is one error issue.
pub fn validate<'a>(
    resource: &'a Value,
    url: &str,
    defs: &'a dyn Definitions,
    terminology: &'a dyn issho_terminology::Source,
) -> Vec<Issue> {
    let mut run = Run::new(resource, defs, terminology);
    let rt = resource["resourceType"]
        .as_str()
        .unwrap_or("Resource")
        .to_string();
    walk::against(&mut run, resource, url, &rt, "", resource);
    inner(&mut run, resource, &rt);
    run.issues
}

/// The resources inside `resource` (a Bundle's entries, contained resources) against their
/// own installed `meta.profile`s.
pub fn validate_inner<'a>(
    resource: &'a Value,
    defs: &'a dyn Definitions,
    terminology: &'a dyn issho_terminology::Source,
) -> Vec<Issue> {
    let mut run = Run::new(resource, defs, terminology);
    let rt = resource["resourceType"]
        .as_str()
        .unwrap_or("Resource")
        .to_string();
    inner(&mut run, resource, &rt);
    run.issues
}

fn inner(run: &mut Run, resource: &Value, rt: &str) {
    let inner: Vec<(String, &Value)> = resource["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(k, e)| (format!("{rt}.entry[{k}].resource"), &e["resource"]))
        .chain(
            resource["contained"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(k, c)| (format!("{rt}.contained[{k}]"), c)),
        )
        .collect();
    for (at, r) in inner {
        for p in r["meta"]["profile"].as_array().into_iter().flatten() {
            if let Some(p) = p.as_str()
                && run.defs.profile(p).is_some()
            {
                walk::against(run, r, p, &at, "", r);
            }
        }
    }
}

/// The issues that are errors.
pub fn errors(issues: &[Issue]) -> impl Iterator<Item = &Issue> {
    issues.iter().filter(|i| i.is_error())
}

#[cfg(test)]
mod jp_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
