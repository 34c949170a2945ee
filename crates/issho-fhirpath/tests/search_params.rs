//! Every R4 search parameter expression must parse; with the shared Synthea data present,
//! every expression must also evaluate without error on real resources (and we print the
//! throughput, as indexing runs these expressions on every write).

use issho_fhirpath::{Context, Expr, evaluate, parse};
use std::path::PathBuf;
use std::time::Instant;

fn parsed() -> Vec<(String, Vec<String>, Expr)> {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for sp in issho_model::r4().search_parameters() {
        let Some(x) = &sp.expression else { continue };
        match parse(x) {
            Ok(e) => out.push((sp.url.clone(), sp.base.clone(), e)),
            Err(e) => failures.push(format!("{}: {x}: {e}", sp.url)),
        }
    }
    assert!(
        failures.is_empty(),
        "unparsable expressions:\n{}",
        failures.join("\n")
    );
    out
}

#[test]
fn all_search_parameter_expressions_parse() {
    let n = parsed().len();
    assert!(n > 1000, "only {n} expressions");
}

#[test]
fn search_parameter_expressions_evaluate_on_synthea() {
    let shared = match std::env::var("ISSHO_SHARED") {
        Ok(s) => PathBuf::from(s),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let dir = shared.join("synthea/bulk-data-server-100");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("search parameter evaluation: SKIPPED (no shared Synthea data)");
        return;
    };
    let exprs = parsed();
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    let ctx = Context::new();
    // A few patients by default; FHIRPATH_ALL_SYNTHEA=1 runs all of them.
    let limit = if std::env::var("FHIRPATH_ALL_SYNTHEA").is_ok() {
        usize::MAX
    } else {
        4
    };
    let (mut evaluations, mut results, mut errors) = (0usize, 0usize, Vec::new());
    let mut elapsed = std::time::Duration::ZERO;
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "json"))
        .take(limit)
    {
        let bundle: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let res = &entry["resource"];
            let Some(rt) = res["resourceType"].as_str() else {
                continue;
            };
            let t = Instant::now();
            for (url, base, e) in &exprs {
                if !base
                    .iter()
                    .any(|b| b == rt || b == "Resource" || b == "DomainResource")
                {
                    continue;
                }
                evaluations += 1;
                match evaluate(e, res, &ctx) {
                    Ok(r) => results += r.len(),
                    Err(err) => {
                        if errors.len() < 20 {
                            errors.push(format!("{url} on {rt}: {err}"));
                        }
                    }
                }
            }
            elapsed += t.elapsed();
        }
    }
    println!(
        "search parameter evaluation: {evaluations} evaluations, {results} result items, {} errors, {:.1} µs per evaluation",
        errors.len(),
        elapsed.as_secs_f64() * 1e6 / evaluations.max(1) as f64
    );
    assert!(
        errors.is_empty(),
        "evaluation errors:\n{}",
        errors.join("\n")
    );
}
