//! `shared/conformance/fhir-patch/json-patch-tests.json`: RFC 6902 cases. Cases with `error`
//! must fail and leave the document unchanged; the others must produce `expected`.

use issho_patch::apply_json_patch;
use serde_json::Value;
use std::path::PathBuf;

fn shared_dir() -> Option<PathBuf> {
    let p = match std::env::var("ISSHO_SHARED") {
        Ok(s) => PathBuf::from(s),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    p.join("conformance/fhir-patch").is_dir().then_some(p)
}

#[test]
fn json_patch_conformance() {
    let Some(shared) = shared_dir() else {
        println!("JSON Patch conformance: SKIPPED (shared folder not found; set ISSHO_SHARED)");
        return;
    };
    let text = std::fs::read_to_string(shared.join("conformance/fhir-patch/json-patch-tests.json"))
        .expect("read json-patch-tests.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("json");
    let (mut passed, mut total, mut disabled) = (0, 0, 0);
    let mut failures = Vec::new();
    for c in &cases {
        let name = c["comment"].as_str().unwrap_or("?").to_string();
        if c.get("disabled").and_then(Value::as_bool) == Some(true) {
            disabled += 1;
            println!("  skipped (disabled in the suite): {name}");
            continue;
        }
        total += 1;
        let mut doc = c["doc"].clone();
        let r = apply_json_patch(&mut doc, &c["patch"]);
        let ok = if c.get("error").is_some() {
            r.is_err() && doc == c["doc"]
        } else {
            r.is_ok() && doc == c["expected"]
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{name}: {r:?} -> {doc}"));
        }
    }
    println!(
        "JSON Patch conformance: passed {passed} of {total} ({disabled} disabled cases skipped)"
    );
    for f in &failures {
        println!("  FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{} JSON Patch cases failed",
        failures.len()
    );
}
