//! Read by id under load: `wrk` when installed, else a built-in keep-alive client.

use crate::http::Conn;
use crate::measure::percentile;
use crate::server::Server;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Read-by-id figures (latencies in ms).
#[derive(Default, Clone)]
pub struct Reads {
    pub requests: u64,
    pub rate: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub errors: u64,
    pub generator: String,
    /// Server process CPU per request, ms (user + system, the whole process).
    pub cpu_ms: Option<f64>,
    /// Growth of the audit trail per request, bytes (the embedded store's segments).
    pub audit_bytes: Option<f64>,
}

/// Whether `wrk` is installed.
pub fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Read by id under `wrk` (2 threads, `clients` connections), ids cycled by a Lua script.
pub fn reads_wrk(s: &Server, ids: &[String], secs: u64, clients: usize, tmp: &Path) -> Reads {
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
        ..Reads::default()
    }
}

/// Read by id with the built-in keep-alive client, `clients` threads.
pub fn reads_builtin(s: &Server, ids: &[String], secs: u64, clients: usize) -> Reads {
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
        ..Reads::default()
    }
}
