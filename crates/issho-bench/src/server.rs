//! The servers under test, each its own child process, and the memory figures read from /proc.

use crate::http::Conn;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A server under test, running as a child process.
pub struct Server {
    pub name: String,
    child: Child,
    pub addr: SocketAddr,
    /// The FHIR base path ("/fhir" for issho, "" for the peer).
    pub base: String,
    pub dir: PathBuf,
    /// The executable it runs.
    pub bin: PathBuf,
    /// issho on PostgreSQL: its schema.
    pub store: Option<PgSchema>,
}

/// A schema of its own in a PostgreSQL database, for one run.
#[derive(Debug, Clone)]
pub struct PgSchema {
    /// The database's URL.
    pub base: String,
    pub schema: String,
    /// The URL that selects the schema (`options=-csearch_path=…`).
    pub url: String,
}

/// Make a new schema in the database at `base`.
pub fn fresh_schema(base: &str) -> Result<PgSchema, String> {
    let schema = format!(
        "bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let mut c = issho_store_pg::connect(base).map_err(|e| e.to_string())?;
    c.batch(&format!("CREATE SCHEMA {schema}"))
        .map_err(|e| e.to_string())?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(PgSchema {
        base: base.to_string(),
        url: format!("{base}{sep}options=-csearch_path%3D{schema}"),
        schema,
    })
}

impl PgSchema {
    /// Bytes of its tables, indexes and TOAST.
    pub fn size(&self) -> u64 {
        let Ok(mut c) = issho_store_pg::connect(&self.base) else {
            return 0;
        };
        c.query_one(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
            &[&self.schema],
        )
        .map(|r| r.get::<_, i64>(0) as u64)
        .unwrap_or(0)
    }

    /// Remove the schema and everything in it.
    pub fn drop_schema(&self) {
        if let Ok(mut c) = issho_store_pg::connect(&self.base) {
            let _ = c.batch(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

impl Server {
    pub fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }

    pub fn root(&self) -> String {
        if self.base.is_empty() {
            "/".into()
        } else {
            self.base.clone()
        }
    }

    /// `issho serve` on `dir`, open mode (no tokens: the load generator measures the server,
    /// not the token issuer), validation on, every read and write audited.
    pub fn issho(bin: &Path, dir: &Path, store: Option<&PgSchema>) -> Result<Server, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.with_extension("log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--dev-open", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir);
        if let Some(pg) = store {
            cmd.args(["--store", &pg.url]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {} serve: {e}", bin.display()))?;
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
            name: match store {
                Some(_) => "issho (PostgreSQL)".into(),
                None => "issho".into(),
            },
            child,
            addr,
            base: "/fhir".into(),
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            store: store.cloned(),
        };
        s.wait_ready("/fhir/metadata")?;
        Ok(s)
    }

    /// The peer's `hfs` on `dir`, with the R4 search parameters, SQLite, no auth or audit
    /// (its defaults), a request timeout long enough for big bundles.
    pub fn peer(bin: &Path, dir: &Path, search_params: &Path) -> Result<Server, String> {
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
            name: format!("Helios {}", crate::peer::PEER_VERSION),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            base: String::new(),
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            store: None,
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Current resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(&self.pid().to_string(), "VmRSS:").unwrap_or(0)
    }

    /// Stop it (SIGINT: graceful shutdown, audit flushed), killing it after 30 s.
    pub fn stop(mut self) {
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
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
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

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU seconds (user and system) the process `pid` has used so far, from `/proc/PID/stat`
/// (clock ticks of USER_HZ, 100 on Linux).
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: the
    // state (field 3) first, so utime and stime (fields 14 and 15) are the 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The bytes the audit trail's segments in `dir/audit` hold (their pages in use, WAL
/// included, as SQLite counts them), while the server runs.
pub fn audit_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0u64;
    for e in std::fs::read_dir(dir.join("audit")).ok()? {
        let path = e.ok()?.path();
        let name = path.file_name()?.to_str()?.to_string();
        if !(name.starts_with("segment-") && name.ends_with(".db")) {
            continue;
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        let pragma = |p: &str| -> Option<u64> {
            conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0))
                .ok()
                .map(|v| v as u64)
        };
        let size = pragma("page_size")?;
        total += (pragma("page_count")? - pragma("freelist_count")?) * size;
    }
    Some(total)
}

/// Bytes of all files under `dir`, recursively.
pub fn dir_size(dir: &Path) -> u64 {
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
