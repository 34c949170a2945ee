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
    let documents = AtomicUsize::new(0);
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
                    // Referral letters and discharge summaries between their institutions.
                    for doc in issho_demo::documents(&cfg, i) {
                        match engine.create(&ctx, "Bundle", doc, None) {
                            Ok(_) => {
                                documents.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                *failed.lock().unwrap() =
                                    Some(format!("person {i}'s document: {:?}", e.issues));
                            }
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
        "demo population: {persons} persons (seed {seed}), {resources} resources and {} JP-CLINS documents (referral letters, discharge summaries) in {secs:.1} s ({:.0} resources/s)",
        documents.into_inner(),
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

/// Resources per transaction when importing NDJSON.
const IMPORT_CHUNK: usize = 500;

/// Import `docs` (resources from NDJSON) as one transaction of PUT (with id) / POST entries;
/// if the transaction is refused, each resource alone, so that one bad line costs only itself.
/// Returns (imported, errors).
fn import_chunk(engine: &Engine, ctx: &AccessContext, docs: Vec<Value>) -> (usize, Vec<String>) {
    let entries: Vec<Value> = docs
        .iter()
        .map(|r| {
            let rt = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
            let request = match r.get("id").and_then(Value::as_str) {
                Some(id) => serde_json::json!({"method": "PUT", "url": format!("{rt}/{id}")}),
                None => serde_json::json!({"method": "POST", "url": rt}),
            };
            serde_json::json!({"resource": r, "request": request})
        })
        .collect();
    let n = entries.len();
    let bundle =
        serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    if engine
        .process_bundle(ctx, bundle, None, Return::Minimal)
        .is_ok()
    {
        return (n, Vec::new());
    }
    let mut ok = 0;
    let mut errors = Vec::new();
    for d in docs {
        match import_resource(engine, ctx, d) {
            Ok(k) => ok += k,
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

/// `issho import`: load files and directories. Bundles are processed as they are; NDJSON is
/// streamed (never read whole) in transactions of [`IMPORT_CHUNK`] resources by `jobs`
/// workers. The summary ends with the rate over time (resources/s per 10 s).
pub fn import_paths(engine: &Engine, paths: &[PathBuf], jobs: usize) -> Result<String, String> {
    let files = collect(paths)?;
    let ctx = AccessContext::system("import");
    let start = Instant::now();
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} resources {per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let total = AtomicUsize::new(0);
    let mut skipped = 0usize;
    let errors: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let samples: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    let finished = std::sync::atomic::AtomicBool::new(false);
    let add = |n: usize| {
        total.fetch_add(n, Ordering::Relaxed);
        pb.inc(n as u64);
    };
    // Work items: a whole Bundle file, or a chunk of NDJSON lines.
    enum Work {
        File(PathBuf),
        Chunk(PathBuf, Vec<Value>),
    }
    let process = |w: Work| match w {
        Work::File(f) => {
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) => {
                    errors.lock().unwrap().push(format!("{}: {e}", f.display()));
                    return;
                }
            };
            match serde_json::from_str(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| import_resource(engine, &ctx, v))
            {
                Ok(n) => add(n),
                Err(e) => errors.lock().unwrap().push(format!("{}: {e}", f.display())),
            }
        }
        Work::Chunk(f, docs) => {
            let (n, errs) = import_chunk(engine, &ctx, docs);
            add(n);
            errors
                .lock()
                .unwrap()
                .extend(errs.into_iter().map(|e| format!("{}: {e}", f.display())));
        }
    };
    // Reference data (hospitals, practitioners) first and alone, then the rest in parallel.
    let split = files
        .iter()
        .position(|f| {
            !f.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("hospitalInformation") || n.starts_with("practitionerInformation")
            })
        })
        .unwrap_or(files.len());
    for f in &files[..split] {
        process(Work::File(f.clone()));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Work>(jobs * 2);
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let w = rx.lock().unwrap().recv();
                        match w {
                            Ok(w) => process(w),
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let mut last = 0;
            let mut tick = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                tick += std::time::Duration::from_secs(1);
                while Instant::now() < tick && !finished.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let now = total.load(Ordering::Relaxed);
                samples.lock().unwrap().push(now - last);
                last = now;
            }
        });
        // The reader: this thread.
        for f in &files[split..] {
            pb.set_message(
                f.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string(),
            );
            if f.extension().is_none_or(|x| x != "ndjson") {
                let _ = tx.send(Work::File(f.clone()));
                continue;
            }
            let file = match std::fs::File::open(f) {
                Ok(file) => file,
                Err(e) => {
                    errors.lock().unwrap().push(format!("{}: {e}", f.display()));
                    continue;
                }
            };
            let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
            for (no, line) in std::io::BufRead::lines(std::io::BufReader::new(file)).enumerate() {
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        errors.lock().unwrap().push(format!("{}: {e}", f.display()));
                        break;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    // Kept by the server (identity matching rebuilds them from the Patients).
                    Ok(v) if v["resourceType"] == "Person" => skipped += 1,
                    Ok(v) => chunk.push(v),
                    Err(e) => {
                        errors.lock().unwrap().push(format!(
                            "{} line {}: {e}",
                            f.display(),
                            no + 1
                        ));
                        continue;
                    }
                }
                if chunk.len() == IMPORT_CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(IMPORT_CHUNK));
                    let _ = tx.send(Work::Chunk(f.clone(), full));
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(Work::Chunk(f.clone(), chunk));
            }
        }
        drop(tx);
        // Workers end when the channel is drained; then the sampler.
        for w in workers {
            let _ = w.join();
        }
        finished.store(true, Ordering::Relaxed);
    });
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let n = total.into_inner();
    let errors = errors.into_inner().unwrap();
    let per10: Vec<String> = samples
        .into_inner()
        .unwrap()
        .chunks(10)
        .map(|c| format!("{:.0}", c.iter().sum::<usize>() as f64 / c.len() as f64))
        .collect();
    let mut summary = format!(
        "imported {n} resources from {} files in {secs:.1} s ({:.0} resources/s); resources/s per 10 s: {}",
        files.len(),
        n as f64 / secs.max(1e-9),
        per10.join(" ")
    );
    if skipped > 0 {
        summary.push_str(&format!(
            "; skipped {skipped} Person resources (the server keeps them, linking Patients by insurance member ID; a registrar's links move with `issho copy`)"
        ));
    }
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
