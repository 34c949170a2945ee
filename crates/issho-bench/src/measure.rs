//! The figures of one server: ingest over HTTP, then reads, searches, export and import.

use crate::BenchArgs;
use crate::export::{Export, export_bulk, export_issho, import_issho};
use crate::http::Conn;
use crate::reads::{Reads, reads_builtin, reads_wrk};
use crate::search::{MixResult, mix_persons, search_mix};
use crate::server::{RssSampler, Server, audit_bytes, dir_size, proc_cpu_secs, proc_status_kib};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Ingest figures.
#[derive(Default, Clone)]
pub struct Ingest {
    pub resources: usize,
    pub secs: f64,
    pub failed: usize,
    pub first_failure: Option<String>,
    /// (seconds since start, resources loaded in that second)
    pub samples: Vec<(f64, usize)>,
    pub disk: u64,
    pub peak_rss_kib: u64,
    /// Server process CPU seconds (user + system) during the loading.
    pub cpu_secs: Option<f64>,
}

/// Everything measured of one server.
#[derive(Default, Clone)]
pub struct Measured {
    pub name: String,
    pub ingest: Ingest,
    pub rest_rss_kib: u64,
    /// Of which anonymous memory (heap, caches; the rest is file-backed: memory-mapped
    /// database pages, which the kernel can drop at any time).
    pub rest_anon_kib: u64,
    pub reads: Option<Reads>,
    pub load_peak_rss_kib: u64,
    pub mix: Vec<MixResult>,
    /// The lifelong record's operations (issho only): `$everything`, `$summary`, `$match`,
    /// document intake.
    pub record: Vec<MixResult>,
    pub export: Option<Export>,
    pub import: Option<(u64, f64, String)>,
    /// A flat Observation view run over the store (`issho view run`, CSV).
    pub view: Option<Export>,
    /// The web application's pages over the store (issho only; `pages.rs`).
    pub pages: Vec<MixResult>,
}

/// The `p` percentile of sorted latencies, in ms.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Load the population into `s` over HTTP: the reference data first, then one transaction
/// Bundle per person from `clients` keep-alive connections; resources loaded sampled every second.
pub(crate) fn ingest(
    s: &Server,
    cfg: &issho_demo::DemoConfig,
    clients: usize,
) -> Result<Ingest, String> {
    let reference_n = load_reference(s, cfg)?;
    let load = Loading {
        next: AtomicUsize::new(0),
        loaded: AtomicUsize::new(reference_n),
        failures: AtomicUsize::new(0),
        first_failure: Mutex::new(None),
    };
    let done = AtomicBool::new(false);
    let mut samples = Vec::new();
    let rss = RssSampler::start(s.pid());
    let cpu0 = proc_cpu_secs(s.pid());
    let start = Instant::now();
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..clients.max(1))
            .map(|_| sc.spawn(|| load.client(s, cfg)))
            .collect();
        let mut last = reference_n;
        let mut tick = start;
        while !done.load(Ordering::Relaxed) {
            tick += Duration::from_secs(1);
            while Instant::now() < tick {
                std::thread::sleep(Duration::from_millis(20));
                if workers.iter().all(|w| w.is_finished()) {
                    done.store(true, Ordering::Relaxed);
                    break;
                }
            }
            let now = load.loaded.load(Ordering::Relaxed);
            samples.push((start.elapsed().as_secs_f64(), now - last));
            last = now;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu0.zip(proc_cpu_secs(s.pid())).map(|(a, b)| b - a);
    Ok(Ingest {
        cpu_secs: cpu,
        resources: load.loaded.into_inner(),
        secs,
        failed: load.failures.into_inner(),
        first_failure: load.first_failure.into_inner().unwrap(),
        samples,
        disk: 0,
        peak_rss_kib: rss.finish(),
    })
}

/// The reference data (organizations, practitioners…) as one Bundle; how many resources.
fn load_reference(s: &Server, cfg: &issho_demo::DemoConfig) -> Result<usize, String> {
    let mut c = Conn::open(s.addr).map_err(|e| e.to_string())?;
    let reference_bundle = issho_demo::reference_bundle(cfg);
    let reference_n = reference_bundle["entry"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let reference = serde_json::to_vec(&reference_bundle).unwrap();
    let (st, body) = c.call("POST", &s.root(), Some(&reference));
    if st != 200 {
        return Err(format!(
            "{}: loading the reference data failed with HTTP {st}: {}",
            s.name,
            String::from_utf8_lossy(&body)
                .chars()
                .take(400)
                .collect::<String>()
        ));
    }
    Ok(reference_n)
}

/// The state the ingest clients share.
struct Loading {
    /// The next person to load.
    next: AtomicUsize,
    /// Resources loaded so far.
    loaded: AtomicUsize,
    /// Bundles that failed.
    failures: AtomicUsize,
    first_failure: Mutex<Option<String>>,
}

impl Loading {
    /// One client: takes the next person and posts their Bundle until none is left.
    fn client(&self, s: &Server, cfg: &issho_demo::DemoConfig) {
        let Ok(mut c) = Conn::open(s.addr) else {
            return;
        };
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= cfg.persons {
                break;
            }
            let b = issho_demo::person_bundle(cfg, i);
            let n = b["entry"].as_array().map(Vec::len).unwrap_or(0);
            let body = serde_json::to_vec(&b).unwrap();
            let (st, resp) = c.call("POST", &s.root(), Some(&body));
            if st == 200 {
                self.loaded.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            self.failed(st, &resp);
            if st == 0 {
                match Conn::open(s.addr) {
                    Ok(n) => c = n,
                    Err(_) => break,
                }
            }
        }
    }

    fn failed(&self, st: u16, resp: &[u8]) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_failure.lock().unwrap();
        if f.is_none() {
            *f = Some(format!(
                "HTTP {st}: {}",
                String::from_utf8_lossy(resp)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
        }
    }
}

fn observation_ids(s: &Server) -> Vec<String> {
    let Ok(mut c) = Conn::open(s.addr) else {
        return Vec::new();
    };
    let (_, body) = c.call("GET", &s.url("/Observation?_count=1000&_elements=id"), None);
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| {
            b["entry"].as_array().map(|a| {
                a.iter()
                    .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Load, read, search and (for issho) export/import one server.
pub fn measure(
    s: Server,
    cfg: &issho_demo::DemoConfig,
    a: &BenchArgs,
    work: &Path,
    use_wrk: bool,
) -> Result<Measured, String> {
    let mut m = Measured {
        name: s.name.clone(),
        ..Measured::default()
    };
    eprintln!("{}: loading {} persons…", s.name, cfg.persons);
    m.ingest = ingest(&s, cfg, a.clients)?;
    std::thread::sleep(Duration::from_secs(2));
    // On PostgreSQL: its tables and indexes, plus the data directory (audit trail, keys).
    m.ingest.disk = dir_size(&s.dir) + s.store.as_ref().map(|p| p.size()).unwrap_or(0);
    m.rest_rss_kib = s.rss_kib();
    m.rest_anon_kib = proc_status_kib(&s.pid().to_string(), "RssAnon:").unwrap_or(0);
    eprintln!("{}: reads and searches…", s.name);
    let ids = observation_ids(&s);
    let rss = RssSampler::start(s.pid());
    if !ids.is_empty() {
        let embedded = s.name.starts_with("issho") && s.store.is_none();
        let audit = |s: &Server| if embedded { audit_bytes(&s.dir) } else { None };
        let (cpu0, audit0) = (proc_cpu_secs(s.pid()), audit(&s));
        let mut r = if use_wrk {
            reads_wrk(&s, &ids, a.read_seconds, a.clients, work)
        } else {
            reads_builtin(&s, &ids, a.read_seconds, a.clients)
        };
        let cpu1 = proc_cpu_secs(s.pid());
        // The audit writer commits what the last reads queued.
        std::thread::sleep(Duration::from_millis(500));
        let per = |d: f64| d / r.requests.max(1) as f64;
        r.cpu_ms = cpu0.zip(cpu1).map(|(a, b)| per(b - a) * 1e3);
        r.audit_bytes = audit0
            .zip(audit(&s))
            .map(|(a, b)| per(b.saturating_sub(a) as f64));
        m.reads = Some(r);
    }
    m.mix = search_mix(&s, &mix_persons(cfg), a.search_reps);
    m.load_peak_rss_kib = rss.finish();
    if s.name.starts_with("issho") {
        eprintln!(
            "{}: the lifelong record ($everything, $summary, $match, intake)…",
            s.name
        );
        m.record = crate::record::record_ops(&s, cfg, a.search_reps, a.clients);
    }
    if s.name.starts_with("issho") {
        let (dir, bin, store) = (s.dir.clone(), s.bin.clone(), s.store.clone());
        s.stop();
        eprintln!("{}: export and import…", m.name);
        let out = work.join("export");
        let url = store.as_ref().map(|p| p.url.as_str());
        eprintln!("{}: the web pages…", m.name);
        m.pages = crate::pages::pages_issho(&bin, &dir, url, a.search_reps.clamp(5, 50));
        eprintln!("{}: a SQL on FHIR view…", m.name);
        m.view = Some(
            crate::export::view_issho(&bin, &dir, &work.join("view.csv"), url).unwrap_or_else(
                |e| Export {
                    note: e,
                    ..Export::default()
                },
            ),
        );
        let _ = std::fs::remove_file(work.join("view.csv"));
        match export_issho(&bin, &dir, &out, url) {
            Ok(e) => {
                m.export = Some(e);
                let fresh = work.join("imported");
                // Into a fresh store of the same kind.
                let target = match &store {
                    Some(p) => Some(crate::server::fresh_schema(&p.base)?),
                    None => None,
                };
                let turl = target.as_ref().map(|p| p.url.as_str());
                m.import = Some(import_issho(&bin, &out, &fresh, turl)?);
                let _ = std::fs::remove_dir_all(&fresh);
                if let Some(t) = target {
                    t.drop_schema();
                }
            }
            Err(e) => {
                m.export = Some(Export {
                    note: e,
                    ..Export::default()
                })
            }
        }
        let _ = std::fs::remove_dir_all(&out);
    } else {
        eprintln!("{}: export…", s.name);
        m.export = Some(export_bulk(&s).unwrap_or_else(|e| Export {
            note: format!("Bulk Data `$export` failed: {e}"),
            ..Export::default()
        }));
        s.stop();
    }
    Ok(m)
}
