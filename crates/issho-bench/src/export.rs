//! Export of everything (`issho export`, or the peer's Bulk Data `$export`) and `issho import`
//! of that export into a fresh store.

use crate::http::Conn;
use crate::server::{RssSampler, Server};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Export figures, or why there are none (`note`).
#[derive(Default, Clone)]
pub struct Export {
    pub resources: u64,
    pub secs: f64,
    pub peak_rss_kib: u64,
    pub note: String,
}

/// `issho export` of the stopped server's store, as a child process.
pub fn export_issho(
    issho: &Path,
    dir: &Path,
    out: &Path,
    store: Option<&str>,
) -> Result<Export, String> {
    let t = Instant::now();
    let mut cmd = Command::new(issho);
    cmd.args(["export", "--data"])
        .arg(dir)
        .arg("--out")
        .arg(out);
    if let Some(url) = store {
        cmd.args(["--store", url]);
    }
    let o = cmd.output().map_err(|e| e.to_string())?;
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

/// The flat Observation view of the benchmark (SQL on FHIR v2): one row per Observation.
pub const OBSERVATION_VIEW: &str = r#"{"resourceType": "ViewDefinition", "name": "observations",
 "resource": "Observation", "select": [{"column": [
  {"name": "id", "path": "getResourceKey()"},
  {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
  {"name": "code", "path": "code.coding.code.first()"},
  {"name": "value", "path": "value.ofType(Quantity).value"},
  {"name": "unit", "path": "value.ofType(Quantity).code"},
  {"name": "effective", "path": "effective.ofType(dateTime)"}]}]}"#;

/// `issho view run` of [`OBSERVATION_VIEW`] over the stopped server's store into a CSV file
/// (its own process): rows, seconds (the whole process), peak memory.
pub fn view_issho(
    issho: &Path,
    dir: &Path,
    out: &Path,
    store: Option<&str>,
) -> Result<Export, String> {
    let view = out.with_extension("json");
    std::fs::write(&view, OBSERVATION_VIEW).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut cmd = Command::new(issho);
    cmd.args(["view", "run", "--data"])
        .arg(dir)
        .arg(&view)
        .arg("--out")
        .arg(out);
    if let Some(url) = store {
        cmd.args(["--store", url]);
    }
    let o = cmd.output().map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&view);
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    if !o.status.success() {
        return Err(format!("issho view run failed: {text}"));
    }
    let rows = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let peak = text
        .split("peak RSS ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Export {
        resources: rows,
        secs,
        peak_rss_kib: peak * 1024,
        note: format!(
            "`issho view run` (its own process), a flat Observation view to CSV; it printed: {}",
            text.trim()
        ),
    })
}

/// FHIR Bulk Data export from a running server: kick-off, poll, download every file.
pub fn export_bulk(s: &Server) -> Result<Export, String> {
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
pub fn import_issho(
    issho: &Path,
    ndjson: &Path,
    dir: &Path,
    store: Option<&str>,
) -> Result<(u64, f64, String), String> {
    let t = Instant::now();
    let mut cmd = Command::new(issho);
    cmd.args(["import", "--data"]).arg(dir);
    if let Some(url) = store {
        cmd.args(["--store", url]);
    }
    let o = cmd.arg(ndjson).output().map_err(|e| e.to_string())?;
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
