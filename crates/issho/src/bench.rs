//! `issho bench`: a reproducible benchmark on this machine, optionally side by side with a peer
//! FHIR server (Helios `helios-hfs`) and always against a raw-store baseline.
//!
//! Every server under test runs as its own process (`issho serve` on a fresh store; the peer's
//! binary on a fresh data directory), so its memory is measured alone. The bench process is the
//! load generator: it loads the same generated population into each server over real HTTP
//! (transaction Bundles, concurrent keep-alive clients, resources/s sampled every second),
//! measures read by id (with `wrk` when it is installed, else a built-in keep-alive client),
//! a clinical search mix, export of everything as NDJSON, `issho import` of that export into a
//! fresh store, disk bytes per resource, and RSS at rest and under load. It prints a Markdown
//! report (the source of BENCHMARKS.md), writes SVG plots with `--out`, and never asserts
//! timings.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The peer: the Rust FHIR server Helios, from crates.io.
const PEER_CRATE: &str = "helios-hfs";
const PEER_VERSION: &str = "0.2.7";

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Persons in the generated population (about 200 resources each).
    #[arg(long, default_value_t = 200)]
    pub persons: usize,
    /// Concurrent HTTP clients for ingest and reads.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Seconds of read-by-id load.
    #[arg(long, default_value_t = 5)]
    pub read_seconds: u64,
    /// Repetitions of each search of the mix (each query stops after 30 s).
    #[arg(long, default_value_t = 200)]
    pub search_reps: usize,
    /// Work directory (default: a fresh temporary one, removed afterwards).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also measure the peer server (Helios helios-hfs 0.2.7, R4 + SQLite) on the same data.
    /// Without --peer-bin it is built once with `cargo install` into --peer-cache (about 30
    /// minutes on 2 cores) and reused from there.
    #[arg(long)]
    pub peer: bool,
    /// The peer's binary (`hfs`), instead of installing it.
    #[arg(long)]
    pub peer_bin: Option<PathBuf>,
    /// Where the peer is installed and cached (default: ~/.cache/issho-bench).
    #[arg(long)]
    pub peer_cache: Option<PathBuf>,
    /// The R4 SearchParameter Bundle the peer needs (default:
    /// $ISSHO_SHARED/fhir-r4/Bundle-searchParams.json, else ../shared/fhir-r4/…).
    #[arg(long)]
    pub search_params: Option<PathBuf>,
    /// Write report.md and the SVG plots (ingest rate over time, latency percentiles) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Read-by-id load generator: auto (wrk when installed), wrk, or builtin.
    #[arg(long, default_value = "auto")]
    pub load: String,
    /// Skip the raw-store baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

// ---- HTTP client ----------------------------------------------------------------------------

/// A minimal HTTP/1.1 keep-alive client for loopback benchmarking.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true).ok();
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    fn call(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        match self.request(method, path, &[], body) {
            Ok(r) => (r.status, r.body),
            Err(e) => (0, e.to_string().into_bytes()),
        }
    }

    /// Send a request and read the whole response.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Reply> {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nAccept: application/fhir+json\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        self.writer.write_all(req.as_bytes())?;
        if let Some(b) = body {
            self.writer.write_all(b)?;
        }
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut len, mut chunked) = (0usize, false);
        let mut hs = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                break;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_string(), v.trim().to_string());
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                    chunked = true;
                }
                hs.push((k, v));
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                out.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else {
            out.resize(len, 0);
            self.reader.read_exact(&mut out)?;
        }
        Ok(Reply {
            status,
            headers: hs,
            body: out,
        })
    }
}

// ---- servers under test -----------------------------------------------------------------------

/// A server under test, running as a child process.
struct Server {
    name: String,
    child: Child,
    addr: SocketAddr,
    /// The FHIR base path ("/fhir" for issho, "" for the peer).
    base: String,
    dir: PathBuf,
}

impl Server {
    fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }

    fn root(&self) -> String {
        if self.base.is_empty() {
            "/".into()
        } else {
            self.base.clone()
        }
    }

    /// `issho serve` on `dir`, open mode (no tokens: the load generator measures the server,
    /// not the token issuer), validation on, every read and write audited.
    fn issho(dir: &Path) -> Result<Server, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.with_extension("log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["serve", "--dev-open", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting issho serve: {e}"))?;
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let addr = loop {
            line.clear();
            if out.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                let _ = child.kill();
                return Err(format!(
                    "issho serve stopped at start; see {}",
                    dir.with_extension("log").display()
                ));
            }
            if let Some(rest) = line.strip_prefix("issho listening on http://") {
                break rest
                    .split('/')
                    .next()
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .ok_or_else(|| format!("unexpected start line: {line}"))?;
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let s = Server {
            name: "issho".into(),
            child,
            addr,
            base: "/fhir".into(),
            dir: dir.to_path_buf(),
        };
        s.wait_ready("/fhir/metadata")?;
        Ok(s)
    }

    /// The peer's `hfs` on `dir`, with the R4 search parameters, SQLite, no auth or audit
    /// (its defaults), a request timeout long enough for big bundles.
    fn peer(bin: &Path, dir: &Path, search_params: &Path) -> Result<Server, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        std::fs::copy(search_params, dir.join("search-parameters-r4.json"))
            .map_err(|e| format!("{}: {e}", search_params.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = std::fs::File::create(dir.with_extension("log")).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--port")
            .arg(port.to_string())
            .args(["--host", "127.0.0.1", "--log-level", "warn"])
            .args(["--request-timeout", "3600"])
            .arg("--base-url")
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--database-url")
            .arg(dir.join("fhir.db"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let s = Server {
            name: format!("Helios {PEER_VERSION}"),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            base: String::new(),
            dir: dir.to_path_buf(),
        };
        s.wait_ready("/metadata")?;
        Ok(s)
    }

    fn wait_ready(&self, path: &str) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            if let Ok(mut c) = Conn::open(self.addr)
                && c.call("GET", path, None).0 == 200
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("{} did not become ready", self.name))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Current resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        proc_status_kib(&self.pid().to_string(), "VmRSS:").unwrap_or(0)
    }

    /// Stop it (SIGINT: graceful shutdown, audit flushed), killing it after 30 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A field of /proc/PID/status in KiB (`pid` may be "self").
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Samples a process's RSS every 100 ms until dropped; keeps the peak.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(k) = proc_status_kib(&pid.to_string(), "VmRSS:") {
                    p.fetch_max(k, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            peak,
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

// ---- measurements -------------------------------------------------------------------------

#[derive(Default, Clone)]
struct Ingest {
    resources: usize,
    secs: f64,
    failed: usize,
    first_failure: Option<String>,
    /// (seconds since start, resources loaded in that second)
    samples: Vec<(f64, usize)>,
    disk: u64,
    peak_rss_kib: u64,
}

#[derive(Default, Clone)]
struct Reads {
    requests: u64,
    rate: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    errors: u64,
    generator: String,
}

#[derive(Clone)]
struct MixResult {
    name: &'static str,
    reps: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    /// Sequential requests per second (one client).
    rate: f64,
    matches: String,
    error: Option<String>,
}

#[derive(Default, Clone)]
struct Export {
    resources: u64,
    secs: f64,
    peak_rss_kib: u64,
    note: String,
}

#[derive(Default, Clone)]
struct Measured {
    name: String,
    ingest: Ingest,
    rest_rss_kib: u64,
    /// Of which anonymous memory (heap, caches; the rest is file-backed: memory-mapped
    /// database pages, which the kernel can drop at any time).
    rest_anon_kib: u64,
    reads: Option<Reads>,
    load_peak_rss_kib: u64,
    mix: Vec<MixResult>,
    export: Option<Export>,
    import: Option<(u64, f64, String)>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn ingest(s: &Server, cfg: &issho_demo::DemoConfig, clients: usize) -> Result<Ingest, String> {
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
    let next = AtomicUsize::new(0);
    let loaded = AtomicUsize::new(reference_n);
    let failures = AtomicUsize::new(0);
    let first_failure: Mutex<Option<String>> = Mutex::new(None);
    let done = AtomicBool::new(false);
    let mut samples = Vec::new();
    let rss = RssSampler::start(s.pid());
    let start = Instant::now();
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..clients.max(1))
            .map(|_| {
                sc.spawn(|| {
                    let Ok(mut c) = Conn::open(s.addr) else {
                        return;
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= cfg.persons {
                            break;
                        }
                        let b = issho_demo::person_bundle(cfg, i);
                        let n = b["entry"].as_array().map(Vec::len).unwrap_or(0);
                        let body = serde_json::to_vec(&b).unwrap();
                        let (st, resp) = c.call("POST", &s.root(), Some(&body));
                        if st == 200 {
                            loaded.fetch_add(n, Ordering::Relaxed);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                            let mut f = first_failure.lock().unwrap();
                            if f.is_none() {
                                *f = Some(format!(
                                    "HTTP {st}: {}",
                                    String::from_utf8_lossy(&resp)
                                        .chars()
                                        .take(300)
                                        .collect::<String>()
                                ));
                            }
                            if st == 0 {
                                match Conn::open(s.addr) {
                                    Ok(n) => c = n,
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                })
            })
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
            let now = loaded.load(Ordering::Relaxed);
            samples.push((start.elapsed().as_secs_f64(), now - last));
            last = now;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    Ok(Ingest {
        resources: loaded.into_inner(),
        secs,
        failed: failures.into_inner(),
        first_failure: first_failure.into_inner().unwrap(),
        samples,
        disk: 0,
        peak_rss_kib: rss.finish(),
    })
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

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Read by id under `wrk` (2 threads, `clients` connections), ids cycled by a Lua script.
fn reads_wrk(s: &Server, ids: &[String], secs: u64, clients: usize, tmp: &Path) -> Reads {
    let script = tmp.join("reads.lua");
    let list = ids
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(",");
    let lua = format!(
        r#"local ids = {{{list}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "{base}/Observation/" .. ids[(i * 7) % #ids + 1], {{["Accept"] = "application/fhir+json"}})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("ISSHO-BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#,
        base = s.base
    );
    if std::fs::write(&script, lua).is_err() {
        return Reads::default();
    }
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{}", clients.max(2)),
            &format!("-d{secs}s"),
        ])
        .args(["--timeout", "5s", "-s"])
        .arg(&script)
        .arg(format!("http://{}", s.addr))
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("ISSHO-BENCH ")) else {
        return Reads {
            generator: format!("wrk (no result: {})", text.trim()),
            ..Reads::default()
        };
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 6 {
        return Reads::default();
    }
    Reads {
        requests: v[0] as u64,
        rate: v[0] / (v[1] / 1e6).max(1e-9),
        p50: v[2] / 1e3,
        p95: v[3] / 1e3,
        p99: v[4] / 1e3,
        errors: v[5] as u64,
        generator: format!("wrk 4 (2 threads, {} connections)", clients.max(2)),
    }
}

/// Read by id with the built-in keep-alive client, `clients` threads.
fn reads_builtin(s: &Server, ids: &[String], secs: u64, clients: usize) -> Reads {
    let lat: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
    let errors = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for k in 0..clients.max(1) {
            let (lat, errors) = (&lat, &errors);
            sc.spawn(move || {
                let Ok(mut c) = Conn::open(s.addr) else {
                    return;
                };
                let mut mine = Vec::new();
                let mut i = k;
                while Instant::now() < until {
                    let path = s.url(&format!("/Observation/{}", ids[i % ids.len()]));
                    let t = Instant::now();
                    let (st, _) = c.call("GET", &path, None);
                    mine.push(t.elapsed());
                    if st != 200 {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 7;
                }
                lat.lock().unwrap().extend(mine);
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut l = lat.into_inner().unwrap();
    l.sort();
    Reads {
        requests: l.len() as u64,
        rate: l.len() as f64 / secs,
        p50: percentile(&l, 0.5),
        p95: percentile(&l, 0.95),
        p99: percentile(&l, 0.99),
        errors: errors.into_inner(),
        generator: format!("built-in keep-alive client ({} threads)", clients.max(1)),
    }
}

struct Mix {
    name: &'static str,
    url: &'static str,
}

const MIXES: [Mix; 7] = [
    Mix {
        name: "patient + code",
        url: "/Observation?subject=Patient/{p}&code={c}",
    },
    Mix {
        name: "patient + code + date",
        url: "/Observation?subject=Patient/{p}&code={c}&date=ge2020-01-01",
    },
    Mix {
        name: "patient + category, newest first",
        url: "/Observation?subject=Patient/{p}&category=laboratory&_sort=-date&_count=20",
    },
    Mix {
        name: "chain: code + subject:Patient.gender",
        url: "/Observation?code={c}&subject:Patient.gender=female&_count=20",
    },
    Mix {
        name: "_has: patients with an observation of code",
        url: "/Patient?_has:Observation:subject:code={c}&_count=20",
    },
    Mix {
        name: "_include requester",
        url: "/MedicationRequest?subject=Patient/{p}&_include=MedicationRequest:requester",
    },
    Mix {
        name: "count by code (_summary=count)",
        url: "/Observation?code={c}&_summary=count",
    },
];

/// The persons of the mix: (patient id, `system|code` of one of their observations).
fn mix_persons(cfg: &issho_demo::DemoConfig) -> Vec<(String, String)> {
    (0..cfg.persons.min(50))
        .filter_map(|i| {
            let rs = issho_demo::person_resources(cfg, i);
            let pat = rs.iter().find(|r| r.resource_type == "Patient")?.id.clone();
            let obs = rs.iter().find(|r| {
                r.resource_type == "Observation"
                    && r.resource["subject"]["reference"] == format!("Patient/{pat}").as_str()
            })?;
            let code = &obs.resource["code"]["coding"][0];
            Some((
                pat,
                format!("{}|{}", code["system"].as_str()?, code["code"].as_str()?),
            ))
        })
        .collect()
}

fn search_mix(s: &Server, persons: &[(String, String)], reps: usize) -> Vec<MixResult> {
    let mut out = Vec::new();
    let Some((_, code0)) = persons.first() else {
        return out;
    };
    let Ok(mut c) = Conn::open(s.addr) else {
        return out;
    };
    for m in &MIXES {
        let mut lat = Vec::with_capacity(reps);
        let mut matches = String::new();
        let mut error = None;
        let began = Instant::now();
        for rep in 0..reps {
            let (p, code) = &persons[rep % persons.len()];
            let code = if m.url.contains("{p}") { code } else { code0 };
            let url = s.url(
                &m.url
                    .replace("{p}", p)
                    .replace("{c}", &code.replace('|', "%7C")),
            );
            let t = Instant::now();
            let r = c.request("GET", &url, &[("Prefer", "handling=strict")], None);
            lat.push(t.elapsed());
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    error = Some(e.to_string());
                    c = match Conn::open(s.addr) {
                        Ok(c) => c,
                        Err(_) => break,
                    };
                    break;
                }
            };
            if r.status != 200 {
                let text = String::from_utf8_lossy(&r.body);
                let why = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["issue"][0]["diagnostics"].as_str().map(str::to_string))
                    .unwrap_or_else(|| text.chars().take(120).collect());
                error = Some(format!("HTTP {}: {why}", r.status));
                break;
            }
            if rep == 0 {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                matches = match v["total"].as_u64() {
                    Some(t) => t.to_string(),
                    None => v["entry"]
                        .as_array()
                        .map(|a| format!("{} on the first page", a.len()))
                        .unwrap_or_default(),
                };
            }
            if began.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        let total: f64 = lat.iter().map(Duration::as_secs_f64).sum();
        let n = lat.len();
        lat.sort();
        out.push(MixResult {
            name: m.name,
            reps: n,
            p50: percentile(&lat, 0.5),
            p95: percentile(&lat, 0.95),
            p99: percentile(&lat, 0.99),
            rate: n as f64 / total.max(1e-9),
            matches,
            error,
        });
    }
    out
}

/// `issho export` of the stopped server's store, as a child process.
fn export_issho(dir: &Path, out: &Path) -> Result<Export, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let o = Command::new(exe)
        .args(["export", "--data"])
        .arg(dir)
        .arg("--out")
        .arg(out)
        .output()
        .map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    if !o.status.success() {
        return Err(format!(
            "issho export failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let number_after = |key: &str| -> u64 {
        text.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok(Export {
        resources: number_after("exported "),
        secs,
        peak_rss_kib: number_after("peak RSS ") * 1024,
        note: "`issho export` (its own process), NDJSON per type".into(),
    })
}

/// FHIR Bulk Data export from a running server: kick-off, poll, download every file.
fn export_bulk(s: &Server) -> Result<Export, String> {
    let mut c = Conn::open(s.addr).map_err(|e| e.to_string())?;
    let rss = RssSampler::start(s.pid());
    let t = Instant::now();
    let r = c
        .request(
            "GET",
            &s.url("/$export"),
            &[("Prefer", "respond-async")],
            None,
        )
        .map_err(|e| e.to_string())?;
    if r.status != 202 {
        return Err(format!("kick-off answered HTTP {}", r.status));
    }
    let status = r
        .header("Content-Location")
        .ok_or("no Content-Location")?
        .to_string();
    let path = status
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or(status);
    let manifest = loop {
        let r = c
            .request("GET", &path, &[], None)
            .map_err(|e| e.to_string())?;
        match r.status {
            200 => break serde_json::from_slice::<Value>(&r.body).map_err(|e| e.to_string())?,
            202 => std::thread::sleep(Duration::from_millis(250)),
            st => return Err(format!("status answered HTTP {st}")),
        }
        if t.elapsed() > Duration::from_secs(3600) {
            return Err("export did not finish within an hour".into());
        }
    };
    let mut n = 0u64;
    for o in manifest["output"].as_array().cloned().unwrap_or_default() {
        let url = o["url"].as_str().unwrap_or("");
        let p = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_default();
        let r = c.request("GET", &p, &[], None).map_err(|e| e.to_string())?;
        n += r.body.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok(Export {
        resources: n,
        secs: t.elapsed().as_secs_f64(),
        peak_rss_kib: rss.finish(),
        note: "Bulk Data `$export` over HTTP (kick-off, poll, download)".into(),
    })
}

/// `issho import` of an NDJSON directory into a fresh store; (resources, seconds, its output).
fn import_issho(ndjson: &Path, dir: &Path) -> Result<(u64, f64, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let o = Command::new(exe)
        .args(["import", "--data"])
        .arg(dir)
        .arg(ndjson)
        .output()
        .map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !o.status.success() {
        return Err(format!(
            "issho import failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let n = text
        .split("imported ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok((n, secs, text))
}

/// The physical limit for ingest on this machine: the demo population's JSON bodies and all
/// their index rows written by a minimal loop into SQLite (same index code and tables as the
/// store, one transaction per 1,000 resources). Returns (resources, seconds, bytes on disk).
fn raw_baseline(cfg: &issho_demo::DemoConfig, dir: &Path) -> Result<(usize, f64, u64), String> {
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
    let index = issho_store_sqlite::SqliteIndex::open(&conn).map_err(db)?;
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

/// Bytes of all files under `dir`, recursively.
fn dir_size(dir: &Path) -> u64 {
    let Ok(it) = std::fs::read_dir(dir) else {
        return 0;
    };
    it.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The peer's binary: given, cached, or installed now into the cache.
fn peer_binary(a: &BenchArgs) -> Result<PathBuf, String> {
    if let Some(b) = &a.peer_bin {
        return Ok(b.clone());
    }
    let cache = a.peer_cache.clone().unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .join(".cache/issho-bench")
    });
    let root = cache.join(format!("{PEER_CRATE}-{PEER_VERSION}"));
    let bin = root.join("bin/hfs");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "installing the peer {PEER_CRATE} {PEER_VERSION} into {} (once; about 30 minutes on 2 cores)…",
        root.display()
    );
    let st = Command::new("cargo")
        .args(["install", PEER_CRATE, "--version", PEER_VERSION, "--locked"])
        .args(["--no-default-features", "--features", "R4,sqlite", "--root"])
        .arg(&root)
        .status()
        .map_err(|e| format!("cargo install: {e}"))?;
    if !st.success() || !bin.exists() {
        return Err(format!("cargo install {PEER_CRATE} failed"));
    }
    Ok(bin)
}

fn search_params_file(a: &BenchArgs) -> Result<PathBuf, String> {
    if let Some(p) = &a.search_params {
        return Ok(p.clone());
    }
    let shared = std::env::var_os("ISSHO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let p = shared.join("fhir-r4/Bundle-searchParams.json");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "the peer needs the R4 SearchParameter Bundle: {} not found (--search-params)",
            p.display()
        ))
    }
}

/// Load, read, search and (for issho) export/import one server.
fn measure(
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
    m.ingest.disk = dir_size(&s.dir);
    m.rest_rss_kib = s.rss_kib();
    m.rest_anon_kib = proc_status_kib(&s.pid().to_string(), "RssAnon:").unwrap_or(0);
    eprintln!("{}: reads and searches…", s.name);
    let ids = observation_ids(&s);
    let rss = RssSampler::start(s.pid());
    if !ids.is_empty() {
        m.reads = Some(if use_wrk {
            reads_wrk(&s, &ids, a.read_seconds, a.clients, work)
        } else {
            reads_builtin(&s, &ids, a.read_seconds, a.clients)
        });
    }
    m.mix = search_mix(&s, &mix_persons(cfg), a.search_reps);
    m.load_peak_rss_kib = rss.finish();
    if s.name == "issho" {
        let dir = s.dir.clone();
        s.stop();
        eprintln!("issho: export and import…");
        let out = work.join("export");
        match export_issho(&dir, &out) {
            Ok(e) => {
                m.export = Some(e);
                let fresh = work.join("imported");
                m.import = Some(import_issho(&out, &fresh)?);
                let _ = std::fs::remove_dir_all(&fresh);
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

pub fn run(a: BenchArgs) -> Result<String, String> {
    let work = match &a.data {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("issho-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let cfg = issho_demo::DemoConfig {
        persons: a.persons,
        seed: a.seed,
    };
    let use_wrk = match a.load.as_str() {
        "wrk" => true,
        "builtin" => false,
        _ => wrk_available(),
    };
    // The peer first: its installation is the step most likely to fail.
    let peer = if a.peer {
        let bin = peer_binary(&a)?;
        let params = search_params_file(&a)?;
        Some((bin, params))
    } else {
        None
    };
    let mut results = Vec::new();
    let issho = Server::issho(&work.join("issho"))?;
    results.push(measure(issho, &cfg, &a, &work, use_wrk)?);
    if let Some((bin, params)) = &peer {
        let s = Server::peer(bin, &work.join("peer"), params)?;
        results.push(measure(s, &cfg, &a, &work, use_wrk)?);
    }
    let baseline = if a.no_baseline {
        None
    } else {
        eprintln!("raw-store baseline…");
        Some(raw_baseline(&cfg, &work.join("raw-baseline"))?)
    };
    let report = report(&a, &cfg, &results, baseline, peer.is_some(), &work);
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
        std::fs::write(out.join("report.md"), &report).map_err(|e| e.to_string())?;
        std::fs::write(out.join("ingest.svg"), ingest_svg(&results)).map_err(|e| e.to_string())?;
        std::fs::write(out.join("latency.svg"), latency_svg(&results))
            .map_err(|e| e.to_string())?;
    }
    if a.data.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(report)
}

// ---- report -----------------------------------------------------------------------------------

fn mib(kib: u64) -> String {
    format!("{}", kib / 1024)
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.1}×", a / b)
    } else {
        "—".into()
    }
}

fn report(
    a: &BenchArgs,
    cfg: &issho_demo::DemoConfig,
    rs: &[Measured],
    baseline: Option<(usize, f64, u64)>,
    with_peer: bool,
    work: &Path,
) -> String {
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
    let mut r = String::new();
    let generator = rs
        .iter()
        .find_map(|m| m.reads.as_ref().map(|x| x.generator.clone()))
        .unwrap_or_default();
    r.push_str(&format!(
        "### issho bench — {} persons, {} clients\n\nMachine: {cores} cores ({cpu}); work directory {}; build: {}; \
         servers run as their own processes, the load generator is this process; read load: {generator}.\n\n",
        cfg.persons,
        a.clients,
        work.display(),
        if cfg!(debug_assertions) { "debug (numbers not representative)" } else { "release" },
    ));
    if !with_peer {
        r.push_str("Peer: not measured (run with `--peer`).\n\n");
    }
    let issho = &rs[0];
    let peer = rs.get(1);
    let mut head = "| measure | issho |".to_string();
    let mut sep = "|---|---|".to_string();
    if let Some(p) = peer {
        head.push_str(&format!(" {} | issho / peer |", p.name));
        sep.push_str("---|---|");
    }
    r.push_str(&head);
    r.push('\n');
    r.push_str(&sep);
    r.push('\n');
    // Rows: (label, issho value, peer value, ratio where higher is better (+1) / lower (-1)).
    let mut row = |label: &str, f: &dyn Fn(&Measured) -> (String, f64), better: i32| {
        let (iv, inum) = f(issho);
        let mut line = format!("| {label} | {iv} |");
        if let Some(p) = peer {
            let (pv, pnum) = f(p);
            let rat = match better {
                1 => ratio(inum, pnum),
                -1 => ratio(pnum, inum),
                _ => String::new(),
            };
            line.push_str(&format!(" {pv} | {rat} |"));
        }
        r.push_str(&line);
        r.push('\n');
    };
    row(
        "ingest: resources loaded (failed bundles)",
        &|m| {
            (
                format!("{} ({})", m.ingest.resources, m.ingest.failed),
                m.ingest.resources as f64,
            )
        },
        0,
    );
    row(
        "ingest: resources/s (transaction Bundles over HTTP)",
        &|m| {
            let v = m.ingest.resources as f64 / m.ingest.secs.max(1e-9);
            (format!("**{v:.0}** ({:.1} s)", m.ingest.secs), v)
        },
        1,
    );
    row(
        "disk bytes/resource",
        &|m| {
            let v = m.ingest.disk as f64 / m.ingest.resources.max(1) as f64;
            (format!("{v:.0}"), v)
        },
        -1,
    );
    row(
        "RSS peak during ingest, MiB",
        &|m| (mib(m.ingest.peak_rss_kib), m.ingest.peak_rss_kib as f64),
        -1,
    );
    row(
        "RSS at rest after loading, MiB",
        &|m| {
            (
                format!(
                    "{} (anonymous {}, file-backed {})",
                    mib(m.rest_rss_kib),
                    mib(m.rest_anon_kib),
                    mib(m.rest_rss_kib.saturating_sub(m.rest_anon_kib))
                ),
                m.rest_rss_kib as f64,
            )
        },
        -1,
    );
    row(
        "read by id: requests/s",
        &|m| match &m.reads {
            Some(x) => (
                format!(
                    "**{:.0}** ({} requests, {} errors)",
                    x.rate, x.requests, x.errors
                ),
                x.rate,
            ),
            None => ("—".into(), 0.0),
        },
        1,
    );
    row(
        "read by id: p50 / p95 / p99 ms",
        &|m| match &m.reads {
            Some(x) => (format!("{:.3} / {:.3} / {:.3}", x.p50, x.p95, x.p99), x.p99),
            None => ("—".into(), 0.0),
        },
        -1,
    );
    row(
        "RSS peak under read and search load, MiB",
        &|m| (mib(m.load_peak_rss_kib), m.load_peak_rss_kib as f64),
        -1,
    );
    for (i, mx) in MIXES.iter().enumerate() {
        row(
            &format!("search p50 / p95 ms: {}", mx.name),
            &|m| match m.mix.get(i) {
                Some(x) if x.error.is_none() => (
                    format!("{:.2} / **{:.2}** ({})", x.p50, x.p95, x.matches),
                    x.p95,
                ),
                Some(x) => (format!("failed: {}", x.error.as_deref().unwrap_or("")), 0.0),
                None => ("—".into(), 0.0),
            },
            -1,
        );
    }
    row(
        "search throughput, one client, all queries (requests/s)",
        &|m| {
            let ok: Vec<&MixResult> = m.mix.iter().filter(|x| x.error.is_none()).collect();
            let n: usize = ok.iter().map(|x| x.reps).sum();
            let t: f64 = ok.iter().map(|x| x.reps as f64 / x.rate.max(1e-9)).sum();
            let v = n as f64 / t.max(1e-9);
            (format!("{v:.0}"), v)
        },
        1,
    );
    row(
        "export: resources/s (peak RSS MiB)",
        &|m| match &m.export {
            Some(e) if e.resources > 0 => {
                let v = e.resources as f64 / e.secs.max(1e-9);
                (
                    format!(
                        "**{v:.0}** ({} in {:.1} s; {} MiB)",
                        e.resources,
                        e.secs,
                        e.peak_rss_kib / 1024
                    ),
                    v,
                )
            }
            Some(e) => (e.note.clone(), 0.0),
            None => ("—".into(), 0.0),
        },
        1,
    );
    r.push('\n');
    for m in rs {
        if let Some(e) = &m.export {
            r.push_str(&format!("Export of {}: {}.\n", m.name, e.note));
        }
        if let Some(f) = &m.ingest.first_failure {
            r.push_str(&format!("First failed bundle of {}: {f}\n", m.name));
        }
        for x in &m.mix {
            if let Some(e) = &x.error {
                r.push_str(&format!("{} — {}: {e}\n", m.name, x.name));
            }
        }
    }
    if let Some((n, secs, text)) = &issho.import {
        r.push_str(&format!(
            "\n`issho import` of that NDJSON export into a fresh store (its own process): {n} resources in {secs:.1} s = **{:.0} resources/s**. It printed: {text}\n",
            *n as f64 / secs.max(1e-9)
        ));
    }
    for m in rs {
        let per10: Vec<String> = m
            .ingest
            .samples
            .chunks(10)
            .map(|c| {
                format!(
                    "{:.0}",
                    c.iter().map(|(_, n)| *n as f64).sum::<f64>() / c.len() as f64
                )
            })
            .collect();
        r.push_str(&format!(
            "\nIngest rate of {} over time (mean resources/s per 10 s): {}\n",
            m.name,
            per10.join(" ")
        ));
    }
    if let Some((n, secs, bytes)) = baseline {
        let raw = n as f64 / secs.max(1e-9);
        let ours = issho.ingest.resources as f64 / issho.ingest.secs.max(1e-9);
        r.push_str("\n#### Raw-store baseline (the same resources: JSON and every index row written straight into SQLite, WAL, synchronous=FULL, 1,000 per transaction; no HTTP, validation, versions, history or audit)\n\n");
        r.push_str("| resources | seconds | resources/s | disk bytes/resource | issho ingest / baseline |\n|---|---|---|---|---|\n");
        r.push_str(&format!(
            "| {n} | {secs:.1} | {raw:.0} | {:.0} | {:.2} |\n",
            bytes as f64 / n.max(1) as f64,
            ours / raw
        ));
    }
    r
}

// ---- plots (SVG, written by hand: two simple charts need no plotting library) ---------------------

const COLORS: [&str; 3] = ["#c0392b", "#2471a3", "#7f8c8d"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// Ingest rate over time: resources/s per 5-second window, one line per server.
fn ingest_svg(rs: &[Measured]) -> String {
    let (w, h, l, b, t, rgt) = (760.0, 380.0, 70.0, 50.0, 40.0, 20.0);
    let series: Vec<Vec<(f64, f64)>> = rs
        .iter()
        .map(|m| {
            m.ingest
                .samples
                .chunks(5)
                .map(|c| {
                    (
                        c.last().map(|x| x.0).unwrap_or(0.0),
                        c.iter().map(|x| x.1 as f64).sum::<f64>() / c.len() as f64,
                    )
                })
                .collect()
        })
        .collect();
    let xmax = nice(series.iter().flatten().map(|p| p.0).fold(1.0, f64::max));
    let ymax = nice(series.iter().flatten().map(|p| p.1).fold(1.0, f64::max));
    let (pw, ph) = (w - l - rgt, h - t - b);
    let x = |v: f64| l + v / xmax * pw;
    let y = |v: f64| t + ph - v / ymax * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{l}\" y=\"22\" font-size=\"15\">Ingest rate over time (transaction Bundles over HTTP, mean per 5 s)</text>\n"
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>\n",
            l + pw,
            l - 6.0,
            y(v) + 4.0,
            y = y(v)
        ));
        let xv = xmax * i as f64 / 5.0;
        let digits = if xmax < 10.0 { 1 } else { 0 };
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{xv:.digits$}</text>\n",
            x(xv),
            t + ph + 18.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the start of the load</text>\n\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">resources/s</text>\n",
        l + pw / 2.0,
        h - 10.0,
        t + ph / 2.0,
        t + ph / 2.0
    ));
    for (i, (m, pts)) in rs.iter().zip(&series).enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            path.join(" "),
            l + pw - 160.0,
            t + 8.0 + 18.0 * i as f64,
            l + pw - 142.0,
            t + 18.0 + 18.0 * i as f64,
            esc(&m.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// Latency percentiles (p50, p95, p99; log scale) of read by id and each search, per server.
fn latency_svg(rs: &[Measured]) -> String {
    let mut rows: Vec<(String, Vec<Option<[f64; 3]>>)> = Vec::new();
    rows.push((
        "read by id".into(),
        rs.iter()
            .map(|m| m.reads.as_ref().map(|x| [x.p50, x.p95, x.p99]))
            .collect(),
    ));
    for (i, mx) in MIXES.iter().enumerate() {
        rows.push((
            mx.name.to_string(),
            rs.iter()
                .map(|m| {
                    m.mix
                        .get(i)
                        .filter(|x| x.error.is_none() && x.reps > 0)
                        .map(|x| [x.p50, x.p95, x.p99])
                })
                .collect(),
        ));
    }
    let (l, rgt, t) = (300.0, 30.0, 60.0);
    let w = 900.0;
    let band = 12.0 * rs.len() as f64 + 10.0;
    let h = t + band * rows.len() as f64 + 50.0;
    let pw = w - l - rgt;
    let (lo, hi) = (0.01f64, 100_000.0f64); // ms, log scale
    let x = |v: f64| l + (v.clamp(lo, hi).log10() - lo.log10()) / (hi.log10() - lo.log10()) * pw;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">Latency, ms (log scale): bar to p95, tick at p50, whisker to p99</text>\n"
    );
    let mut v = lo;
    while v <= hi * 1.0001 {
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            t - 10.0,
            h - 40.0,
            h - 26.0,
            if v < 1.0 { format!("{v}") } else { format!("{v:.0}") },
            x = x(v)
        ));
        v *= 10.0;
    }
    for (i, m) in rs.iter().enumerate() {
        s.push_str(&format!(
            "<rect x=\"{}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"42\">{}</text>\n",
            l + 160.0 * i as f64,
            COLORS[i % COLORS.len()],
            l + 160.0 * i as f64 + 18.0,
            esc(&m.name)
        ));
    }
    for (r, (name, vals)) in rows.iter().enumerate() {
        let y0 = t + band * r as f64;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            l - 8.0,
            y0 + band / 2.0 + 2.0,
            esc(name)
        ));
        for (i, v) in vals.iter().enumerate() {
            let yy = y0 + 4.0 + 12.0 * i as f64;
            let c = COLORS[i % COLORS.len()];
            match v {
                Some([p50, p95, p99]) => s.push_str(&format!(
                    "<rect x=\"{l}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"9\" fill=\"{c}\" opacity=\"0.75\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n",
                    (x(*p95) - l).max(1.0),
                    x(*p95),
                    x(*p99),
                    yy + 4.5,
                    yy + 4.5,
                    x(*p50),
                    x(*p50),
                    yy + 9.0
                )),
                None => s.push_str(&format!(
                    "<text x=\"{}\" y=\"{:.1}\" fill=\"{c}\">not measured / failed</text>\n",
                    l + 4.0,
                    yy + 9.0
                )),
            }
        }
    }
    s.push_str("</svg>\n");
    s
}
