//! Bulk loading: the demo population and `issho import`.

use indicatif::{ProgressBar, ProgressStyle};
use issho_engine::{AccessContext, Engine, Return};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

fn entry_count(b: &Value) -> usize {
    b.get("entry")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0)
}

/// Generate and load `persons` demo persons. Returns a printable summary.
pub fn load_demo(
    engine: &Engine,
    persons: usize,
    seed: u64,
    progress: bool,
) -> Result<String, String> {
    let cfg = issho_demo::DemoConfig { persons, seed };
    let ctx = AccessContext::system("demo");
    let start = Instant::now();
    let reference = issho_demo::reference_bundle(&cfg);
    let mut resources = entry_count(&reference);
    engine
        .process_bundle(&ctx, reference, None, Return::Minimal)
        .map_err(|e| format!("reference data: {:?}", e.issues))?;
    let pb = if progress {
        bar(persons as u64, "persons")
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let loaded = AtomicUsize::new(0);
    let failed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= persons || failed.lock().unwrap().is_some() {
                        break;
                    }
                    let b = issho_demo::person_bundle(&cfg, i);
                    let n = entry_count(&b);
                    match engine.process_bundle(&ctx, b, None, Return::Minimal) {
                        Ok(_) => {
                            loaded.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            *failed.lock().unwrap() = Some(format!("person {i}: {:?}", e.issues));
                        }
                    }
                    pb.inc(1);
                }
            });
        }
    });
    pb.finish_and_clear();
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e);
    }
    resources += loaded.into_inner();
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "demo population: {persons} persons (seed {seed}), {resources} resources in {secs:.1} s ({:.0} resources/s)",
        resources as f64 / secs.max(1e-9)
    ))
}

/// Files to import, in load order: Synthea's hospital and practitioner bundles first.
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json" || x == "ndjson"))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(p.clone());
        }
    }
    let rank = |f: &Path| {
        let n = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if n.starts_with("hospitalInformation") {
            0
        } else if n.starts_with("practitionerInformation") {
            1
        } else {
            2
        }
    };
    files.sort_by_key(|f| rank(f));
    Ok(files)
}

/// Import one resource: keep its id when it has one (update-as-create), else create.
fn import_resource(engine: &Engine, ctx: &AccessContext, r: Value) -> Result<usize, String> {
    let rt = r
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if rt == "Bundle"
        && matches!(
            r.get("type").and_then(Value::as_str),
            Some("transaction" | "batch")
        )
    {
        let n = entry_count(&r);
        let resp = engine
            .process_bundle(ctx, r, None, Return::Minimal)
            .map_err(|e| format!("{:?}", e.issues))?;
        let failed: Vec<String> = resp["entry"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| {
                        !e["response"]["status"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with('2')
                    })
                    .map(|e| e["response"].to_string())
                    .collect()
            })
            .unwrap_or_default();
        if !failed.is_empty() {
            return Err(format!(
                "{} entries failed, first: {}",
                failed.len(),
                failed[0]
            ));
        }
        return Ok(n);
    }
    let res = match r.get("id").and_then(Value::as_str).map(str::to_string) {
        Some(id) => engine.update(ctx, &rt, &id, r, None),
        None => engine.create(ctx, &rt, r, None),
    };
    res.map(|_| 1).map_err(|e| format!("{rt}: {:?}", e.issues))
}

/// `issho import`: load files and directories.
pub fn import_paths(engine: &Engine, paths: &[PathBuf], jobs: usize) -> Result<String, String> {
    let files = collect(paths)?;
    let ctx = AccessContext::system("import");
    let start = Instant::now();
    let pb = bar(files.len() as u64, "files");
    let total = AtomicUsize::new(0);
    let errors: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    // Reference data (hospitals, practitioners) first and alone, then the rest in parallel.
    let split = files
        .iter()
        .position(|f| {
            !f.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("hospitalInformation") || n.starts_with("practitionerInformation")
            })
        })
        .unwrap_or(files.len());
    let load_file = |f: &PathBuf| {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                errors.lock().unwrap().push(format!("{}: {e}", f.display()));
                return;
            }
        };
        let is_ndjson = f.extension().is_some_and(|x| x == "ndjson");
        let docs: Vec<Result<Value, String>> = if is_ndjson {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
                .collect()
        } else {
            vec![serde_json::from_str(&text).map_err(|e| e.to_string())]
        };
        for d in docs {
            match d.and_then(|v| import_resource(engine, &ctx, v)) {
                Ok(n) => {
                    total.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => errors.lock().unwrap().push(format!("{}: {e}", f.display())),
            }
        }
        pb.inc(1);
    };
    files[..split].iter().for_each(load_file);
    let next = AtomicUsize::new(split);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files.len() {
                        break;
                    }
                    load_file(&files[i]);
                }
            });
        }
    });
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let n = total.into_inner();
    let errors = errors.into_inner().unwrap();
    let summary = format!(
        "imported {n} resources from {} files in {secs:.1} s ({:.0} resources/s)",
        files.len(),
        n as f64 / secs.max(1e-9)
    );
    if errors.is_empty() {
        Ok(summary)
    } else {
        Err(format!(
            "{summary}; {} errors, first: {}",
            errors.len(),
            errors[0]
        ))
    }
}
