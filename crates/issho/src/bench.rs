//! `issho bench`: a reproducible benchmark on this machine.
//!
//! Starts the server in this process on a free loopback port with a fresh store, generates the
//! demo population, and measures over real HTTP (keep-alive connections on loopback):
//! ingest of transaction Bundles with concurrent clients (resources/s over time), read by id,
//! and a clinical search mix; then disk bytes per resource and the process's memory.
//! It prints a Markdown report (the source of BENCHMARKS.md) and never asserts timings.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Persons in the generated population (about 190 resources each).
    #[arg(long, default_value_t = 200)]
    pub persons: usize,
    /// Concurrent HTTP clients for ingest and reads.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Seconds of read-by-id load.
    #[arg(long, default_value_t = 5)]
    pub read_seconds: u64,
    /// Repetitions of each search of the mix.
    #[arg(long, default_value_t = 200)]
    pub search_reps: usize,
    /// Store directory (default: a fresh temporary one, removed afterwards).
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A minimal HTTP/1.1 keep-alive client for loopback benchmarking.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).ok();
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    /// Send a request and read the whole response; returns (status, body).
    fn call(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nAccept: application/fhir+json\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        self.writer.write_all(req.as_bytes()).expect("write");
        if let Some(b) = body {
            self.writer.write_all(b).expect("write body");
        }
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut len, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).expect("chunk size");
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk).expect("chunk");
                out.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else {
            out.resize(len, 0);
            self.reader.read_exact(&mut out).expect("body");
        }
        (status, out)
    }
}

/// The physical limit for ingest on this machine: the demo population's JSON bodies and all
/// their index rows written by a minimal loop into SQLite (same index code and tables as the
/// store, one transaction per 1,000 resources). Returns (resources, seconds, bytes on disk).
fn raw_baseline(
    cfg: &issho_demo::DemoConfig,
    dir: &std::path::Path,
) -> Result<(usize, f64, u64), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let db = |e: rusqlite::Error| e.to_string();
    let conn = rusqlite::Connection::open(dir.join("raw.db")).map_err(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE resources (rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, \
         body BLOB NOT NULL, UNIQUE(type, id));",
    )
    .map_err(db)?;
    let index = issho_search::SqliteIndex::open(&conn).map_err(db)?;
    let start = Instant::now();
    let mut n = 0usize;
    let mut in_tx = 0usize;
    conn.execute_batch("BEGIN").map_err(db)?;
    let mut put = |rt: &str, id: &str, body: &serde_json::Value| -> Result<(), String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        conn.prepare_cached("INSERT INTO resources (type, id, body) VALUES (?1, ?2, ?3)")
            .map_err(db)?
            .execute(rusqlite::params![rt, id, bytes])
            .map_err(db)?;
        index
            .insert(&conn, conn.last_insert_rowid(), body)
            .map_err(db)?;
        n += 1;
        in_tx += 1;
        if in_tx >= 1000 {
            conn.execute_batch("COMMIT; BEGIN").map_err(db)?;
            in_tx = 0;
        }
        Ok(())
    };
    for r in issho_demo::reference_resources() {
        put(r.resource_type, &r.id, &r.resource)?;
    }
    for i in 0..cfg.persons {
        for r in issho_demo::person_resources(cfg, i) {
            put(r.resource_type, &r.id, &r.resource)?;
        }
    }
    conn.execute_batch("COMMIT").map_err(db)?;
    let secs = start.elapsed().as_secs_f64();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(db)?;
    drop(conn);
    let bytes = dir_size(dir);
    let _ = std::fs::remove_dir_all(dir);
    Ok((n, secs, bytes))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Mix {
    name: &'static str,
    url: String,
}

pub fn run(a: BenchArgs) -> Result<String, String> {
    let tmp;
    let dir = match &a.data {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("issho-bench-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            tmp.clone()
        }
    };
    let engine = issho_engine::Engine::open_sqlite(&dir, Default::default())
        .map_err(|e| format!("{:?}", e.issues))?;
    let config = issho_server::ServerConfig {
        base_url: None,
        max_body: 256 * 1024 * 1024,
        dev_open: true,
        auth: None,
        tls: false,
        rate_limit: None,
    };
    let app = issho_server::router(engine, config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let cfg = issho_demo::DemoConfig {
        persons: a.persons,
        seed: a.seed,
    };
    let mut report = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    report.push_str(&format!(
        "### issho bench — {} persons, {} clients\n\nMachine: {cores} cores ({cpu}); store: embedded SQLite in {}; build: {}.\n\n",
        a.persons,
        a.clients,
        dir.display(),
        if cfg!(debug_assertions) { "debug (numbers not representative)" } else { "release" }
    ));

    // ---- ingest ----------------------------------------------------------------------
    let mut c = Conn::open(addr);
    let reference = serde_json::to_vec(&issho_demo::reference_bundle(&cfg)).unwrap();
    let (st, _) = c.call("POST", "/fhir", Some(&reference));
    if st != 200 {
        return Err(format!("loading the reference data failed with HTTP {st}"));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let loaded = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let samples: Arc<Mutex<Vec<(f64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.clients.max(1) {
            let (next, loaded, failures, cfg) =
                (next.clone(), loaded.clone(), failures.clone(), &cfg);
            s.spawn(move || {
                let mut c = Conn::open(addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cfg.persons {
                        break;
                    }
                    let b = issho_demo::person_bundle(cfg, i);
                    let n = b["entry"].as_array().map(Vec::len).unwrap_or(0);
                    let body = serde_json::to_vec(&b).unwrap();
                    let (st, _) = c.call("POST", "/fhir", Some(&body));
                    if st == 200 {
                        loaded.fetch_add(n, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // sampler: resources loaded per second, over time
        let (loaded, next, samples) = (loaded.clone(), next.clone(), samples.clone());
        let persons = cfg.persons;
        s.spawn(move || {
            let mut last = 0;
            // Each client takes one index past the end before it stops.
            while next.load(Ordering::Relaxed) < persons + a.clients.max(1) {
                std::thread::sleep(Duration::from_secs(1));
                let now = loaded.load(Ordering::Relaxed);
                samples
                    .lock()
                    .unwrap()
                    .push((start.elapsed().as_secs_f64(), now - last));
                last = now;
            }
        });
    });
    let ingest_secs = start.elapsed().as_secs_f64();
    let n_loaded = loaded.load(Ordering::Relaxed);
    let fails = failures.load(Ordering::Relaxed);
    let db_bytes = dir_size(&dir);
    report.push_str("#### Ingest (transaction Bundles over HTTP, every search parameter indexed, validation on)\n\n");
    report.push_str("| resources | seconds | resources/s | failed bundles | disk bytes/resource |\n|---|---|---|---|---|\n");
    report.push_str(&format!(
        "| {n_loaded} | {ingest_secs:.1} | {:.0} | {fails} | {:.0} |\n\n",
        n_loaded as f64 / ingest_secs,
        db_bytes as f64 / n_loaded.max(1) as f64
    ));
    let s = samples.lock().unwrap().clone();
    if !s.is_empty() {
        report.push_str("Rate over time (resources/s per second of the run): ");
        report.push_str(
            &s.iter()
                .map(|(_, n)| n.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
        report.push_str("\n\n");
    }

    // ---- read by id ------------------------------------------------------------------
    let (_, body) = c.call("GET", "/fhir/Observation?_count=1000&_elements=id", None);
    let ids: Vec<String> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| {
            b["entry"].as_array().map(|a| {
                a.iter()
                    .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    if !ids.is_empty() {
        let lat: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
        let until = Instant::now() + Duration::from_secs(a.read_seconds);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for k in 0..a.clients.max(1) {
                let (lat, ids) = (lat.clone(), &ids);
                s.spawn(move || {
                    let mut c = Conn::open(addr);
                    let mut mine = Vec::new();
                    let mut i = k;
                    while Instant::now() < until {
                        let path = format!("/fhir/Observation/{}", ids[i % ids.len()]);
                        let t = Instant::now();
                        let (st, _) = c.call("GET", &path, None);
                        mine.push(t.elapsed());
                        assert_eq!(st, 200);
                        i += 7;
                    }
                    lat.lock().unwrap().extend(mine);
                });
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        let mut l = lat.lock().unwrap().clone();
        l.sort();
        report.push_str("#### Read by id (GET Observation/{id}, keep-alive, loopback)\n\n| requests | requests/s | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|\n");
        report.push_str(&format!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} |\n\n",
            l.len(),
            l.len() as f64 / secs,
            percentile(&l, 0.5),
            percentile(&l, 0.95),
            percentile(&l, 0.99)
        ));
    }

    // ---- search mix ------------------------------------------------------------------
    let persons: Vec<(String, String, String)> = (0..a.persons.min(50))
        .filter_map(|i| {
            let rs = issho_demo::person_resources(&cfg, i);
            let pat = rs.iter().find(|r| r.resource_type == "Patient")?.id.clone();
            let obs = rs.iter().find(|r| {
                r.resource_type == "Observation"
                    && r.resource["subject"]["reference"] == format!("Patient/{pat}").as_str()
            })?;
            let code = &obs.resource["code"]["coding"][0];
            Some((
                pat,
                format!("{}|{}", code["system"].as_str()?, code["code"].as_str()?),
                obs.resource["code"]["coding"][0]["code"]
                    .as_str()?
                    .to_string(),
            ))
        })
        .collect();
    if let Some((pat0, code0, _)) = persons.first().cloned() {
        let mixes = [
            Mix { name: "patient + code", url: "/fhir/Observation?subject=Patient/{p}&code={c}".into() },
            Mix { name: "patient + code + date", url: "/fhir/Observation?subject=Patient/{p}&code={c}&date=ge2020-01-01".into() },
            Mix { name: "patient + category, newest first", url: "/fhir/Observation?subject=Patient/{p}&category=laboratory&_sort=-date&_count=20".into() },
            Mix { name: "chain: code + subject:Patient.gender", url: "/fhir/Observation?code={c}&subject:Patient.gender=female&_count=20".into() },
            Mix { name: "_has: patients with an observation of code", url: "/fhir/Patient?_has:Observation:subject:code={c}&_count=20".into() },
            Mix { name: "_include requester", url: "/fhir/MedicationRequest?subject=Patient/{p}&_include=MedicationRequest:requester".into() },
            Mix { name: "count by code (_summary=count)", url: "/fhir/Observation?code={c}&_summary=count".into() },
        ];
        report.push_str("#### Search mix (sequential, one client)\n\n| query | reps | p50 ms | p95 ms | p99 ms | matches (first) |\n|---|---|---|---|---|---|\n");
        for m in &mixes {
            let mut lat = Vec::with_capacity(a.search_reps);
            let mut first_total = String::new();
            for rep in 0..a.search_reps {
                let (p, code, _) = &persons[rep % persons.len()];
                let code = if m.url.contains("{p}") {
                    code.clone()
                } else {
                    code0.clone()
                };
                let url = m
                    .url
                    .replace("{p}", p)
                    .replace("{c}", &code.replace('|', "%7C"));
                let t = Instant::now();
                let (st, body) = c.call("GET", &url, None);
                lat.push(t.elapsed());
                if st != 200 {
                    return Err(format!(
                        "{} answered HTTP {st}: {}",
                        url,
                        String::from_utf8_lossy(&body)
                    ));
                }
                if rep == 0 {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    first_total = match v["total"].as_u64() {
                        Some(t) => t.to_string(),
                        None => v["entry"]
                            .as_array()
                            .map(|a| a.len().to_string())
                            .unwrap_or_default(),
                    };
                }
            }
            lat.sort();
            report.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:.3} | {first_total} |\n",
                m.name,
                lat.len(),
                percentile(&lat, 0.5),
                percentile(&lat, 0.95),
                percentile(&lat, 0.99)
            ));
        }
        let _ = pat0;
        report.push('\n');
    }
    report.push_str(&format!(
        "Memory: RSS now {} MiB, peak {} MiB (server and load generator in one process).\n",
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    ));
    drop(rt);

    // ---- physical-limit baseline -------------------------------------------------------
    let raw_dir = dir.join("raw-baseline");
    let (raw_n, raw_secs, raw_bytes) = raw_baseline(&cfg, &raw_dir)?;
    report.push_str("\n#### Raw-store baseline (the same resources: JSON and every index row written straight into SQLite, WAL, synchronous=FULL, 1,000 per transaction; no HTTP, validation, versions, history or audit)\n\n");
    report.push_str("| resources | seconds | resources/s | disk bytes/resource | issho ingest / baseline |\n|---|---|---|---|---|\n");
    let raw_rate = raw_n as f64 / raw_secs;
    report.push_str(&format!(
        "| {raw_n} | {raw_secs:.1} | {raw_rate:.0} | {:.0} | {:.2} |\n",
        raw_bytes as f64 / raw_n.max(1) as f64,
        (n_loaded as f64 / ingest_secs) / raw_rate
    ));
    if a.data.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
