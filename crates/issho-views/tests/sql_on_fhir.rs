//! The SQL on FHIR v2 test suite (`shared/conformance/sql-on-fhir-v2/tests/*.json`): each
//! test's view is run over the file's resources, and its rows compared with `expect` (as a
//! multiset: the suite does not fix the order of rows from different branches), its columns
//! with `expectColumns`, or it must fail (`expectError`: when checked or when run). Prints
//! the count; every test must pass. Skips when the shared folder is absent.

use issho_views::View;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Columns whose direct reading was compared with FHIRPath.
static DIRECT: AtomicUsize = AtomicUsize::new(0);

fn shared_dir() -> Option<PathBuf> {
    let p = match std::env::var("ISSHO_SHARED") {
        Ok(s) => PathBuf::from(s),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    p.join("conformance/sql-on-fhir-v2/tests")
        .is_dir()
        .then_some(p)
}

/// Numbers compared by value (`5` and `5.0`), objects by their keys.
fn normal(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| Value::String(format!("{f}")))
            .unwrap_or_else(|| v.clone()),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Value::Array(
                keys.into_iter()
                    .map(|k| Value::Array(vec![Value::String(k.clone()), normal(&o[k])]))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

fn run(view: &Value, resources: &[Value]) -> Result<(Vec<String>, Vec<Value>), String> {
    let v = View::compile(view).map_err(|e| e.0)?;
    let names: Vec<String> = v.columns().iter().map(|c| c.name.clone()).collect();
    let mut rows = Vec::new();
    for r in resources {
        // Every column read directly from the JSON gives what FHIRPath gives.
        if r["resourceType"] == v.resource.as_str() {
            let n = v.check_direct(r).map_err(|e| format!("direct path: {e}"))?;
            DIRECT.fetch_add(n, Ordering::Relaxed);
        }
        // As the server reads it: from its JSON, only the elements the view reads.
        let r = v.parse(r.to_string().as_bytes()).map_err(|e| e.0)?;
        for row in v.rows(&r).map_err(|e| e.0)? {
            let obj: serde_json::Map<String, Value> = names.iter().cloned().zip(row).collect();
            rows.push(Value::Object(obj));
        }
    }
    Ok((names, rows))
}

#[test]
fn sql_on_fhir_v2_suite() {
    let Some(shared) = shared_dir() else {
        println!("SQL on FHIR v2 suite: SKIPPED (shared folder not found; set ISSHO_SHARED)");
        return;
    };
    let dir = shared.join("conformance/sql-on-fhir-v2/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut passed, mut total) = (0, 0);
    let mut failures = Vec::new();
    for f in files {
        let suite: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let resources = suite["resources"].as_array().cloned().unwrap_or_default();
        let file = f.file_name().unwrap().to_string_lossy().to_string();
        for t in suite["tests"].as_array().unwrap() {
            total += 1;
            let title = t["title"].as_str().unwrap_or("?");
            let got = run(&t["view"], &resources);
            let ok = if t.get("expectError").is_some_and(|e| e == true) {
                got.is_err()
            } else {
                match &got {
                    Err(_) => false,
                    Ok((names, rows)) => {
                        let cols_ok = match t["expectColumns"].as_array() {
                            Some(want) => {
                                want.iter()
                                    .map(|c| c.as_str().unwrap_or(""))
                                    .collect::<Vec<_>>()
                                    == names.iter().map(String::as_str).collect::<Vec<_>>()
                            }
                            None => true,
                        };
                        let rows_ok = match t["expect"].as_array() {
                            Some(want) => {
                                let mut a: Vec<String> =
                                    rows.iter().map(|r| normal(r).to_string()).collect();
                                let mut b: Vec<String> =
                                    want.iter().map(|r| normal(r).to_string()).collect();
                                a.sort();
                                b.sort();
                                a == b
                            }
                            None => true,
                        };
                        cols_ok && rows_ok
                    }
                }
            };
            if ok {
                passed += 1;
            } else {
                failures.push(format!(
                    "{file}: {title}: got {}",
                    match &got {
                        Ok((_, rows)) => serde_json::to_string(rows).unwrap(),
                        Err(e) => format!("error {e}"),
                    }
                ));
            }
        }
    }
    println!("SQL on FHIR v2 suite: {passed}/{total} passed");
    let direct = DIRECT.load(Ordering::Relaxed);
    println!("  columns read directly and checked against FHIRPath: {direct}");
    assert!(direct > 100, "the direct paths are exercised");
    for f in &failures {
        println!("  FAILED {f}");
    }
    assert!(failures.is_empty(), "{} failed", failures.len());
}
