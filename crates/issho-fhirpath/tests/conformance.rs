//! The official FHIRPath R4 test suite (`shared/conformance/fhirpath/cases/fhir-r4.yaml`).
//!
//! Prints `FHIRPath R4 conformance: passed P of N (X%)` and the failing cases, and fails when
//! fewer than `FLOOR` cases pass. Cases the suite itself marks `disable: true` are counted
//! separately (run, and reported, but not part of N). Skips when the shared folder is absent.
//! Set `FHIRPATH_VERBOSE=1` to see expected and actual results of failures.

use issho_fhirpath::{Context, Item, Val, evaluate, parse};
use serde_yaml_ng::Value as Yaml;
use std::collections::HashMap;
use std::path::PathBuf;

/// Regression floor: the number of enabled cases that must pass.
const FLOOR: usize = 891;

fn shared_dir() -> Option<PathBuf> {
    let p = match std::env::var("ISSHO_SHARED") {
        Ok(s) => PathBuf::from(s),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    p.join("conformance/fhirpath").is_dir().then_some(p)
}

struct Case {
    name: String,
    input: Option<String>,
    expression: String,
    expect_error: bool,
    result: Vec<Yaml>,
    disabled: bool,
}

fn load_cases(path: &PathBuf) -> Vec<Case> {
    let text = std::fs::read_to_string(path).expect("read yaml");
    let doc: Yaml = serde_yaml_ng::from_str(&text).expect("parse yaml");
    let mut out = Vec::new();
    for group in doc["tests"].as_sequence().expect("tests list") {
        let map = group.as_mapping().expect("group map");
        let group_disabled = map
            .get(Yaml::from("disable"))
            .and_then(Yaml::as_bool)
            .unwrap_or(false);
        for (k, v) in map {
            if k.as_str().is_none_or(|k| !k.starts_with("group:")) {
                continue;
            }
            for c in v.as_sequence().into_iter().flatten() {
                let s = |f: &str| c.get(f).and_then(Yaml::as_str).map(str::to_string);
                out.push(Case {
                    name: s("desc")
                        .unwrap_or_default()
                        .trim_start_matches("** ")
                        .to_string(),
                    input: s("inputfile"),
                    expression: s("expression").unwrap_or_default(),
                    expect_error: c.get("error").and_then(Yaml::as_bool).unwrap_or(false),
                    result: c
                        .get("result")
                        .and_then(Yaml::as_sequence)
                        .cloned()
                        .unwrap_or_default(),
                    disabled: group_disabled
                        || c.get("disable").and_then(Yaml::as_bool).unwrap_or(false),
                });
            }
        }
    }
    out
}

fn item_matches(item: &Item<'_>, exp: &Yaml) -> bool {
    let val = match item {
        Item::Node(n) => match n.value {
            serde_json::Value::String(s) => return exp.as_str() == Some(s.as_str()),
            serde_json::Value::Bool(b) => return exp.as_bool() == Some(*b),
            serde_json::Value::Number(x) => {
                let got: f64 = x.to_string().parse().unwrap_or(f64::NAN);
                return exp.as_f64().is_some_and(|e| (e - got).abs() < 1e-9);
            }
            _ => return false,
        },
        Item::Value(v) => v,
    };
    match exp {
        Yaml::Bool(b) => matches!(val, Val::Boolean(x) if x == b),
        Yaml::Number(n) => {
            let e = n.as_f64().unwrap_or(f64::NAN);
            match val {
                Val::Integer(i) => (*i as f64 - e).abs() < 1e-9,
                Val::Decimal(d) => (d.to_f64() - e).abs() < 1e-9,
                _ => false,
            }
        }
        Yaml::String(s) => !matches!(val, Val::Boolean(_)) && val.to_string() == *s,
        _ => false,
    }
}

fn show(items: &[Item<'_>]) -> String {
    let v: Vec<String> = items
        .iter()
        .map(|i| match i {
            Item::Node(n) => n.value.to_string(),
            Item::Value(v) => format!("{v} ({})", v.type_name()),
        })
        .collect();
    format!("[{}]", v.join(", "))
}

#[test]
fn fhirpath_r4_conformance() {
    let Some(shared) = shared_dir() else {
        println!("FHIRPath R4 conformance: SKIPPED (shared folder not found; set ISSHO_SHARED)");
        return;
    };
    let base = shared.join("conformance/fhirpath");
    // FHIRPATH_CASES=<file> runs another case file of the folder (informational, no floor).
    let other = std::env::var("FHIRPATH_CASES").ok();
    let cases = load_cases(
        &base
            .join("cases")
            .join(other.as_deref().unwrap_or("fhir-r4.yaml")),
    );
    let verbose = std::env::var("FHIRPATH_VERBOSE").is_ok();
    let mut inputs: HashMap<String, serde_json::Value> = HashMap::new();
    let empty = serde_json::json!({});
    for f in cases.iter().filter_map(|c| c.input.as_ref()) {
        if !inputs.contains_key(f) {
            let Ok(text) = std::fs::read_to_string(base.join("resources/r4").join(f)) else {
                continue;
            };
            inputs.insert(f.clone(), serde_json::from_str(&text).expect("input json"));
        }
    }
    let ctx = Context::new();
    let (mut passed, mut total, mut disabled, mut disabled_passed) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut disabled_failing = Vec::new();
    for case in &cases {
        let root = case
            .input
            .as_ref()
            .and_then(|f| inputs.get(f))
            .unwrap_or(&empty);
        let outcome = parse(&case.expression).and_then(|e| evaluate(&e, root, &ctx));
        let ok = match &outcome {
            Err(_) => case.expect_error,
            Ok(items) => {
                !case.expect_error
                    && items.len() == case.result.len()
                    && items
                        .iter()
                        .zip(&case.result)
                        .all(|(i, e)| item_matches(i, e))
            }
        };
        if case.disabled {
            disabled += 1;
            disabled_passed += ok as usize;
            if !ok {
                disabled_failing.push(case.name.clone());
            }
            continue;
        }
        total += 1;
        if ok {
            passed += 1;
        } else {
            let got = match &outcome {
                Err(e) => format!("error: {e}"),
                Ok(items) => show(items),
            };
            let want = if case.expect_error {
                "error".to_string()
            } else {
                format!("{:?}", case.result)
            };
            failures.push(if verbose {
                format!(
                    "{}\n      expression: {}\n      expected:   {want}\n      got:        {got}",
                    case.name, case.expression
                )
            } else {
                case.name.clone()
            });
        }
    }
    println!(
        "FHIRPath R4 conformance: passed {passed} of {total} ({:.1}%)",
        passed as f64 * 100.0 / total.max(1) as f64
    );
    println!(
        "  {disabled} cases are disabled in the suite itself (not counted); {disabled_passed} of them pass anyway"
    );
    if verbose {
        println!("  disabled and failing: {}", disabled_failing.join(", "));
    }
    for f in &failures {
        println!("  FAIL {f}");
    }
    if other.is_some() {
        return;
    }
    assert!(
        passed >= FLOOR,
        "conformance regressed: {passed} < floor {FLOOR}"
    );
}
