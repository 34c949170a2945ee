//! The rules of one element on one value: fixed and pattern values, type, reference targets,
//! bindings, invariants; and an extension's context.

use crate::Run;
use crate::profile::{Profile, type_codes};
use crate::walk::Here;
use issho_fhirpath::Expr;
use issho_model::{IssueType, Severity};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Exact equality (`fixed[x]`): the same JSON, numbers by value.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.to_string().parse::<f64>().ok() == y.to_string().parse::<f64>().ok()
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| equal(v, w))
        }
        _ => a == b,
    }
}

/// `pattern[x]`: every property of the pattern is in the value (arrays: each pattern item
/// matches some item of the value).
pub(crate) fn pattern(value: &Value, pat: &Value) -> bool {
    match (value, pat) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| pattern(vv, pv))),
        (Value::Array(v), Value::Array(p)) => p.iter().all(|pv| v.iter().any(|vv| pattern(vv, pv))),
        (v, Value::Array(p)) => p.len() == 1 && pattern(v, &p[0]),
        _ => equal(value, pat),
    }
}

/// The rules of element `e` (of profile `p`) for the value `here`.
pub(crate) fn value_rules(run: &mut Run, p: &Profile, i: usize, here: &Here, root: &Value) {
    let info = &p.info[i];
    if let Some((fixed, x)) = &info.fixed {
        let ok = if *fixed {
            equal(here.value, x)
        } else {
            pattern(here.value, x)
        };
        if !ok {
            run.report(
                Severity::Error,
                IssueType::Value,
                &here.at,
                format!(
                    "{}: {}: must {} {} ({})",
                    p.name,
                    here.at,
                    if *fixed { "be" } else { "match the pattern" },
                    x,
                    info.id
                ),
            );
        }
    }
    if let Some(t) = &here.type_
        && info.is_choice()
        && !info.types.is_empty()
        && !info.types.iter().any(|a| a.eq_ignore_ascii_case(t))
    {
        run.report(
            Severity::Error,
            IssueType::Structure,
            &here.at,
            format!(
                "{}: {}: type {t} is not allowed here (allowed: {})",
                p.name,
                here.at,
                info.types.join(", ")
            ),
        );
    }
    if !info.targets.is_empty() {
        target_profiles(run, p, &info.targets, here);
    }
    if let Some((strength, vs)) = &info.binding {
        binding(run, p, strength, vs, here);
    }
    if !info.constraints.is_empty() {
        invariants(run, p, i, here, root);
    }
}

/// A Reference's target must be of a type its `targetProfile`s allow.
fn target_profiles(run: &mut Run, p: &Profile, targets: &[String], here: &Here) {
    let Some(r) = here.value["reference"].as_str() else {
        return;
    };
    if targets.is_empty() || r.starts_with('#') || r.starts_with("urn:") {
        return;
    }
    let Some(rt) = r.split('/').rev().nth(1) else {
        return;
    };
    let types: Vec<String> = targets
        .iter()
        .map(|u| match run.defs.profile(u) {
            Some(pp) => pp.type_.clone(),
            None => u.rsplit('/').next().unwrap_or_default().to_string(),
        })
        .collect();
    if !types.iter().any(|t| t == rt || t == "Resource") {
        run.report(
            Severity::Error,
            IssueType::Structure,
            &here.at,
            format!(
                "{}: {}: refers to a {rt}, where {} is required",
                p.name,
                here.at,
                types.join(" or ")
            ),
        );
    }
}

/// The codes of a value to check against a binding: (system, code).
fn codings(v: &Value) -> Vec<(Option<String>, String)> {
    match v {
        Value::String(s) => vec![(None, s.clone())],
        Value::Object(o) if o.contains_key("coding") => o["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["system"].as_str().map(str::to_string),
                    c["code"].as_str()?.to_string(),
                ))
            })
            .collect(),
        Value::Object(o) if o.contains_key("code") => {
            vec![(
                o.get("system").and_then(Value::as_str).map(str::to_string),
                o["code"].as_str().unwrap_or_default().to_string(),
            )]
        }
        _ => Vec::new(),
    }
}

/// Whether `v` is in the value set bound to `e` (`None`: cannot tell — the value set or its
/// code systems are not here).
pub(crate) fn in_binding(run: &mut Run, vs: &str, v: &Value) -> Option<bool> {
    let codes = codings(v);
    if codes.is_empty() {
        return Some(false);
    }
    if !run.expansions.contains_key(vs) {
        let kept = run
            .defs
            .expansions()
            .and_then(|m| m.lock().ok().and_then(|m| m.get(vs).cloned()));
        let got = match kept {
            Some(k) => k,
            None => {
                let o = issho_terminology::expand::Options {
                    limit: 100_000,
                    lang: None,
                };
                let got = std::sync::Arc::new(
                    issho_terminology::expand::expand(run.terminology, vs, &o)
                        .map(|x| {
                            x.entries
                                .into_iter()
                                .map(|e| (e.system, e.code))
                                .collect::<HashSet<_>>()
                        })
                        .map_err(|i| i.diagnostics),
                );
                if let Some(m) = run.defs.expansions()
                    && let Ok(mut m) = m.lock()
                {
                    if m.len() > 2_000 {
                        m.clear();
                    }
                    m.insert(vs.to_string(), got.clone());
                }
                got
            }
        };
        run.expansions.insert(vs.to_string(), got);
    }
    let set = run.expansions.get(vs)?.as_ref().as_ref().ok()?;
    Some(codes.iter().any(|(s, c)| match s {
        Some(s) => set.contains(&(s.clone(), c.clone())),
        None => set.iter().any(|(_, x)| x == c),
    }))
}

fn binding(run: &mut Run, p: &Profile, strength: &str, vs: &str, here: &Here) {
    if !matches!(strength, "required" | "extensible") {
        return;
    }
    // Coded values (a code, Coding, CodeableConcept, Quantity with a code) — and, for a
    // required binding, a CodeableConcept with text only, which has no code from the set.
    let text_only = here.value.get("coding").is_none() && here.value.get("text").is_some();
    if codings(here.value).is_empty()
        && !here.value.is_string()
        && !(strength == "required" && text_only)
    {
        return;
    }
    let vs = vs.to_string();
    match in_binding(run, &vs, here.value) {
        Some(true) => {}
        Some(false) => {
            let shown: Vec<String> = codings(here.value)
                .into_iter()
                .map(|(s, c)| match s {
                    Some(s) => format!("{s}|{c}"),
                    None => c,
                })
                .collect();
            run.report(
                if strength == "required" {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                IssueType::CodeInvalid,
                &here.at,
                format!(
                    "{}: {}: {} is not in the value set {vs} ({strength} binding)",
                    p.name,
                    here.at,
                    if shown.is_empty() {
                        "no code".to_string()
                    } else {
                        shown.join(", ")
                    }
                ),
            );
        }
        None => {
            let why = run
                .expansions
                .get(&vs)
                .and_then(|r| r.as_ref().as_ref().err().cloned())
                .unwrap_or_default();
            run.report(
                Severity::Information,
                IssueType::NotSupported,
                &here.at,
                format!(
                    "{}: {}: the {strength} binding to {vs} was not checked: {why}",
                    p.name, here.at
                ),
            );
        }
    }
}

thread_local! {
    static PARSED: RefCell<HashMap<String, Option<Rc<Expr>>>> = RefCell::new(HashMap::new());
}

/// An expression parsed once per thread.
pub(crate) fn parsed(src: &str) -> Option<Rc<Expr>> {
    PARSED.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(e) = m.get(src) {
            return e.clone();
        }
        if m.len() > 20_000 {
            m.clear();
        }
        let e = issho_fhirpath::parse(src).ok().map(Rc::new);
        m.insert(src.to_string(), e.clone());
        e
    })
}

/// The element's invariants, evaluated on the value (the focus) with `%resource` the
/// resource it is in.
fn invariants(run: &mut Run, p: &Profile, i: usize, here: &Here, root: &Value) {
    let list = &p.info[i].constraints;
    // ele-1 (every element has a value or children), natively: an object with nothing but
    // an id.
    if list.iter().any(|c| c.key == "ele-1")
        && let Some(o) = here.value.as_object()
        && o.keys().all(|k| k == "id")
    {
        run.report(
            Severity::Error,
            IssueType::Invariant,
            &here.at,
            format!(
                "{}: {}: ele-1 failed: All FHIR elements must have a @value or children",
                p.name, here.at
            ),
        );
    }
    if list.iter().all(|c| c.key == "ele-1") {
        return;
    }
    let ctx = issho_fhirpath::Context {
        resource: Some(root),
        ..Default::default()
    };
    // The focus: the value's node, reached from the resource by its relative path.
    let focus = if here.rel.is_empty() {
        None
    } else {
        match parsed(&here.rel) {
            Some(loc) => match issho_fhirpath::evaluate(&loc, root, &ctx) {
                Ok(items) if items.len() == 1 => Some(items),
                _ => return,
            },
            None => return,
        }
    };
    for c in list.iter().filter(|c| c.key != "ele-1") {
        let Some(x) = parsed(&c.expression) else {
            continue;
        };
        let got = match &focus {
            None => issho_fhirpath::evaluate(&x, root, &ctx),
            Some(items) => issho_fhirpath::evaluate_items(&x, items, root, &ctx),
        };
        let holds = match got {
            Ok(items) => !(items.len() == 1 && items[0].to_json() == Value::Bool(false)),
            // An expression this evaluator cannot run is not a violation.
            Err(_) => true,
        };
        if !holds {
            run.report(
                if c.error {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                IssueType::Invariant,
                &here.at,
                format!(
                    "{}: {}: {} failed: {} ({})",
                    p.name, here.at, c.key, c.human, c.expression
                ),
            );
        }
    }
}

/// An extension used on element `parent` (its definition) must be allowed there by its
/// definition's `context`.
pub(crate) fn extension_context(run: &mut Run, url: &str, parent: &Value, at: &str) {
    let Some(ext) = run.defs.profile(url) else {
        return;
    };
    if ext.context.is_empty() {
        return;
    }
    let path = parent["path"].as_str().unwrap_or_default();
    let types = type_codes(parent);
    let ok = ext.context.iter().any(|(kind, x)| match kind.as_str() {
        "element" => {
            matches!(
                x.as_str(),
                "Element" | "Resource" | "DomainResource" | "Base"
            ) || x == path
                || path.starts_with(&format!("{x}."))
                || types.iter().any(|t| t == x)
                || x.split('.').next() == path.split('.').next()
                    && x.ends_with(path.rsplit('.').next().unwrap_or(""))
        }
        "extension" => true,
        "fhirpath" => true,
        _ => true,
    });
    if !ok {
        let allowed: Vec<&str> = ext.context.iter().map(|(_, x)| x.as_str()).collect();
        run.report(
            Severity::Error,
            IssueType::Extension,
            at,
            format!(
                "{}: {at}: the extension may not be used on {path} (its contexts: {})",
                ext.name,
                allowed.join(", ")
            ),
        );
    }
}
