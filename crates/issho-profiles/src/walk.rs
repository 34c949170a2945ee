//! The walk of an instance along a profile's element tree.

use crate::checks;
use crate::profile::{Group, Profile, max_of, min_of, type_codes, type_profiles};
use crate::{MAX_DEPTH, Run};
use issho_model::{IssueType, Severity};
use serde_json::Value;
use std::sync::Arc;

/// One value at a place in the instance.
pub(crate) struct Here<'v> {
    pub value: &'v Value,
    /// Its FHIRPath location from the resource (`Patient.name[0].family`), for messages.
    pub at: String,
    /// Its FHIRPath path from the resource it is in (`name[0].family`; empty: the resource).
    pub rel: String,
    /// Its type code, when known (a choice element's, from the key).
    pub type_: Option<String>,
}

/// Validates `value` (at `at`; `rel` from `root`, the resource it is in) against the whole
/// profile `url`. A resource is its own root.
pub(crate) fn against(run: &mut Run, value: &Value, url: &str, at: &str, rel: &str, root: &Value) {
    let (root, rel) = if value.get("resourceType").is_some() {
        (value, "")
    } else {
        (root, rel)
    };
    if run.depth >= MAX_DEPTH {
        return;
    }
    let Some(p) = run.defs.profile(url) else {
        run.report(
            Severity::Error,
            IssueType::NotFound,
            at,
            format!("{at}: the profile {url} is not installed (issho package install)"),
        );
        return;
    };
    run.depth += 1;
    let here = Here {
        value,
        at: at.to_string(),
        rel: rel.to_string(),
        type_: Some(p.type_.clone()),
    };
    element(run, &p, 0, &here, root);
    run.depth -= 1;
}

/// A value against element `i` of `p`, then its children.
pub(crate) fn element(run: &mut Run, p: &Arc<Profile>, i: usize, here: &Here, root: &Value) {
    checks::value_rules(run, p, i, here, root);
    // A type's own profile (an extension's definition, a profiled data type or resource).
    let own: Vec<&str> = p.info[i].profiles.iter().map(String::as_str).collect();
    let children = p.children(i);
    if children.is_empty() {
        let path = p.info[i].path.as_str();
        let own: Vec<&str> = own
            .into_iter()
            .filter(|u| !u.starts_with("http://hl7.org/fhir/StructureDefinition/"))
            .collect();
        if let Some(parent) = path
            .strip_suffix(".extension")
            .or_else(|| path.strip_suffix(".modifierExtension"))
        {
            let place = serde_json::json!({"path": parent});
            for url in &own {
                checks::extension_context(run, url, &place, &here.at);
            }
        }
        match own.as_slice() {
            [] => {}
            [one] => against(run, here.value, one, &here.at, &here.rel, root),
            // Several profiles: the value meets at least one of them.
            many => one_of(run, many, here, root, &p.name),
        }
        return;
    }
    let Some(obj) = here.value.as_object() else {
        return;
    };
    for g in children {
        group(run, p, g, here, root);
    }
    // Extensions no slice claims: checked against their own definitions when installed.
    if let Some(exts) = obj.get("extension").and_then(Value::as_array) {
        let sliced = children
            .iter()
            .any(|g| g.name == "extension" && !g.slices.is_empty());
        for (k, x) in exts.iter().enumerate() {
            let Some(url) = x["url"].as_str() else {
                continue;
            };
            let claimed = sliced
                && children
                    .iter()
                    .filter(|g| g.name == "extension")
                    .flat_map(|g| &g.slices)
                    .any(|&s| extension_url(p, s).as_deref() == Some(url));
            if !claimed && run.defs.profile(url).is_some() {
                let at = format!("{}.extension[{k}]", here.at);
                let rel = join(&here.rel, &format!("extension[{k}]"));
                checks::extension_context(run, url, &p.elements[i], &here.at);
                against(run, x, url, &at, &rel, root);
            }
        }
    }
}

fn join(rel: &str, step: &str) -> String {
    if rel.is_empty() {
        step.to_string()
    } else {
        format!("{rel}.{step}")
    }
}

/// The values of a child group in an object: (value, location, type).
fn values<'v>(
    obj: &'v serde_json::Map<String, Value>,
    name: &str,
    parent: &Here,
    e: &Value,
) -> Vec<Here<'v>> {
    let (at, rel) = (&parent.at, &parent.rel);
    let mut out = Vec::new();
    let mut push = |v: &'v Value, key: &str, ty: Option<String>| match v {
        Value::Array(a) => {
            for (k, x) in a.iter().enumerate() {
                out.push(Here {
                    value: x,
                    at: format!("{at}.{key}[{k}]"),
                    rel: join(rel, &format!("{key}[{k}]")),
                    type_: ty.clone(),
                });
            }
        }
        x => out.push(Here {
            value: x,
            at: format!("{at}.{key}"),
            rel: join(rel, key),
            type_: ty,
        }),
    };
    if let Some(prefix) = name.strip_suffix("[x]") {
        for (k, v) in obj {
            if let Some(t) = k.strip_prefix(prefix)
                && t.starts_with(|c: char| c.is_ascii_uppercase())
            {
                let code = type_codes(e)
                    .into_iter()
                    .find(|c| c.eq_ignore_ascii_case(t))
                    .map(str::to_string)
                    .unwrap_or_else(|| t.to_string());
                let loc = format!("{prefix}.ofType({code})");
                push(v, &loc, Some(code));
            }
        }
    } else if let Some(v) = obj.get(name) {
        let ty = type_codes(e).first().map(|s| s.to_string());
        push(v, name, ty);
    }
    out
}

/// A child group: cardinality, slicing, and each value against its element.
fn group(run: &mut Run, p: &Arc<Profile>, g: &Group, parent: &Here, root: &Value) {
    let Some(obj) = parent.value.as_object() else {
        return;
    };
    let base = &p.elements[g.base];
    let vals = values(obj, &g.name, parent, base);
    cardinality(run, p, g.base, vals.len(), &parent.at);
    if vals.is_empty() {
        // Slices may still require something.
        for &s in &g.slices {
            cardinality(run, p, s, 0, &parent.at);
        }
        return;
    }
    let mut matched: Vec<Option<usize>> = vec![None; vals.len()];
    if !g.slices.is_empty() {
        for (k, v) in vals.iter().enumerate() {
            matched[k] = g
                .slices
                .iter()
                .copied()
                .find(|&s| crate::walk::slice_matches(run, p, g.base, s, v, root));
        }
        let rules = base["slicing"]["rules"].as_str().unwrap_or("open");
        for (k, v) in vals.iter().enumerate() {
            if matched[k].is_none() && rules == "closed" {
                run.report(
                    Severity::Error,
                    IssueType::Structure,
                    &v.at,
                    format!(
                        "{}: {}: matches none of the slices of {} (slicing is closed)",
                        p.name,
                        v.at,
                        base["path"].as_str().unwrap_or_default()
                    ),
                );
            }
        }
        if base["slicing"]["ordered"].as_bool() == Some(true) {
            let order: Vec<usize> = matched
                .iter()
                .flatten()
                .map(|s| g.slices.iter().position(|x| x == s).unwrap_or(0))
                .collect();
            if order.windows(2).any(|w| w[0] > w[1]) {
                run.report(
                    Severity::Error,
                    IssueType::Structure,
                    &parent.at,
                    format!(
                        "{}: {}: the slices of {} are out of order (slicing is ordered)",
                        p.name,
                        parent.at,
                        base["path"].as_str().unwrap_or_default()
                    ),
                );
            }
        }
        for &s in &g.slices {
            let n = matched.iter().filter(|m| **m == Some(s)).count();
            cardinality(run, p, s, n, &parent.at);
        }
    }
    for (k, v) in vals.iter().enumerate() {
        element(run, p, g.base, v, root);
        if let Some(s) = matched[k] {
            element(run, p, s, v, root);
        }
    }
}

fn cardinality(run: &mut Run, p: &Profile, i: usize, n: usize, at: &str) {
    let info = &p.info[i];
    if n < info.min {
        run.report(
            Severity::Error,
            IssueType::Required,
            at,
            format!(
                "{}: {at}: {} needs at least {}, has {n}",
                p.name, info.id, info.min
            ),
        );
    }
    if let Some(max) = info.max
        && n > max
    {
        run.report(
            Severity::Error,
            IssueType::Structure,
            at,
            format!(
                "{}: {at}: {} allows at most {max}, has {n}",
                p.name, info.id
            ),
        );
    }
}

/// The url an extension slice stands for: its `url` child's fixed value, or its type's
/// profile.
pub(crate) fn extension_url(p: &Profile, s: usize) -> Option<String> {
    if let Some((_, u)) = p.below(s, "url").and_then(|i| p.info[i].fixed.as_ref())
        && let Some(u) = u.as_str()
    {
        return Some(u.to_string());
    }
    p.info[s].profiles.first().cloned()
}

/// The values at a discriminator path (`$this`, `url`, `coding.system`, `resource`).
fn at_path<'v>(v: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut cur = vec![v];
    if path == "$this" || path.is_empty() {
        return cur;
    }
    for step in path.split('.') {
        let step = step.trim_end_matches("()");
        let mut next = Vec::new();
        for c in cur {
            match c.get(step) {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        cur = next;
    }
    cur
}

/// The definition a discriminator path reaches inside slice `s` (its id `slice.path`), or
/// the slice itself for `$this`.
fn def_at(p: &Profile, s: usize, path: &str) -> Option<usize> {
    if path == "$this" || path.is_empty() {
        return Some(s);
    }
    p.below(s, path)
}

/// True when value `v` belongs to slice `s` of the element `base` (every discriminator holds;
/// a discriminator the slice does not constrain holds).
pub(crate) fn slice_matches(
    run: &mut Run,
    p: &Arc<Profile>,
    base: usize,
    s: usize,
    v: &Here,
    root: &Value,
) -> bool {
    let ds = &p.info[base].discriminators;
    // A choice element sliced by type (`value[x]:valueQuantity`).
    let slice_name = p.info[s].slice_name.as_str();
    if ds.is_empty() {
        return v
            .type_
            .as_deref()
            .is_some_and(|t| slice_name.ends_with(t) || p.info[s].types.iter().any(|x| x == t));
    }
    ds.iter().all(|(kind, path)| {
        let (kind, path) = (kind.as_str(), path.as_str());
        // `resolve()`: the reference itself stands for its target here.
        let found = if path.ends_with("resolve()") {
            at_path(
                v.value,
                path.trim_end_matches("resolve()")
                    .trim_end_matches('.')
                    .trim(),
            )
        } else {
            at_path(v.value, path)
        };
        match kind {
            "value" | "pattern" => {
                let expected = def_at(p, s, path)
                    .and_then(|i| p.info[i].fixed.clone())
                    .or_else(|| {
                        // The slice's own pattern, followed down the path.
                        let (f, x) = p.info[s].fixed.as_ref().map(|(f, x)| (*f, x))?;
                        let inner = if path == "$this" {
                            vec![x]
                        } else {
                            at_path(x, path)
                        };
                        inner.first().map(|y| (f, (*y).clone()))
                    })
                    .or_else(|| {
                        (path == "url")
                            .then(|| extension_url(p, s))
                            .flatten()
                            .map(|u| (true, Value::String(u)))
                    });
                match expected {
                    Some((fixed, x)) => found.iter().any(|f| {
                        if fixed {
                            checks::equal(f, &x)
                        } else {
                            checks::pattern(f, &x)
                        }
                    }),
                    // A value by binding: the slice's required value set.
                    None => match def_at(p, s, path).and_then(|i| p.info[i].binding.clone()) {
                        Some((strength, vs)) if strength == "required" => found
                            .iter()
                            .any(|f| checks::in_binding(run, &vs, f).unwrap_or(true)),
                        _ => true,
                    },
                }
            }
            "exists" => {
                let e = def_at(p, s, path).map(|i| &p.elements[i]);
                match e {
                    Some(e) if max_of(e) == Some(0) => found.is_empty(),
                    Some(e) if min_of(e) > 0 => !found.is_empty(),
                    _ => true,
                }
            }
            "type" => {
                let Some(i) = def_at(p, s, path) else {
                    return true;
                };
                let want = type_codes(&p.elements[i]);
                if path == "$this" {
                    return v.type_.as_deref().is_none_or(|t| want.contains(&t));
                }
                found.iter().any(|f| {
                    let target = match f["reference"].as_str() {
                        Some(r) => run.resolve(r),
                        None => Some(*f),
                    };
                    match target {
                        Some(t) => t["resourceType"]
                            .as_str()
                            .is_some_and(|t| want.contains(&t)),
                        None => true,
                    }
                })
            }
            "profile" => {
                let Some(i) = def_at(
                    p,
                    s,
                    path.trim_end_matches(".resolve()")
                        .trim_end_matches("resolve()")
                        .trim_end_matches('.'),
                )
                .or(Some(s)) else {
                    return true;
                };
                let e = p.elements[i].clone();
                let profiles: Vec<String> = type_profiles(&e, "profile")
                    .into_iter()
                    .chain(type_profiles(&e, "targetProfile"))
                    .map(str::to_string)
                    .collect();
                if profiles.is_empty() {
                    return true;
                }
                found.iter().any(|f| {
                    if let Some(target) = f["reference"].as_str().and_then(|r| run.resolve(r)) {
                        return profiles.iter().any(|u| conforms(run, target, u, target));
                    }
                    if f.get("resourceType").is_none() {
                        // A reference: by the type its target profile constrains.
                        let rt = f["reference"]
                            .as_str()
                            .and_then(|r| r.split('/').rev().nth(1));
                        return profiles.iter().any(|u| {
                            run.defs
                                .profile(u)
                                .is_none_or(|pp| rt.is_none_or(|t| pp.type_ == t))
                        });
                    }
                    profiles.iter().any(|u| conforms(run, f, u, root))
                })
            }
            _ => true,
        }
    })
}

/// A value that must meet one of several profiles: validated against the first it meets;
/// when it meets none, the errors against each are reported with that.
fn one_of(run: &mut Run, urls: &[&str], here: &Here, root: &Value, profile: &str) {
    let mut tries = Vec::new();
    for u in urls {
        let mut trial = trial_of(run);
        against(&mut trial, here.value, u, &here.at, &here.rel, root);
        run.expansions = std::mem::take(&mut trial.expansions);
        if !trial.issues.iter().any(|i| i.is_error()) {
            for i in trial.issues {
                run.report(i.severity, i.code, &here.at, i.diagnostics);
            }
            return;
        }
        tries.push(trial.issues);
    }
    run.report(
        Severity::Error,
        IssueType::Structure,
        &here.at,
        format!(
            "{profile}: {}: meets none of its profiles {}",
            here.at,
            urls.join(", ")
        ),
    );
    for issues in tries {
        for i in issues.into_iter().filter(|i| i.is_error()) {
            run.report(i.severity, i.code, &here.at, i.diagnostics);
        }
    }
}

/// A run of its own for trying a profile, sharing the expansions.
fn trial_of<'a>(run: &mut Run<'a>) -> Run<'a> {
    Run {
        defs: run.defs,
        terminology: run.terminology,
        issues: Vec::new(),
        seen: Default::default(),
        expansions: std::mem::take(&mut run.expansions),
        depth: run.depth,
        bundle: run.bundle,
    }
}

/// True when `v` meets the profile `url` (no errors).
fn conforms(run: &mut Run, v: &Value, url: &str, root: &Value) -> bool {
    let Some(pp) = run.defs.profile(url) else {
        return false;
    };
    if v["resourceType"].as_str().is_some_and(|t| t != pp.type_) {
        return false;
    }
    let mut trial = trial_of(run);
    against(&mut trial, v, url, "$this", "", root);
    run.expansions = std::mem::take(&mut trial.expansions);
    !trial.issues.iter().any(|i| i.is_error())
}
