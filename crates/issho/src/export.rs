//! `issho export`: every current resource as NDJSON, one file per resource type (the output
//! format of FHIR Bulk Data), through the engine's access gate as the operator's system
//! context. Streams over one snapshot: memory stays constant whatever the store's size.

use issho_engine::{AccessContext, Engine, ExportRequest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    pub data: PathBuf,
    /// Where the resources are kept: `embedded` (the default) or a `postgres://` URL.
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Output directory (created); one `Type.ndjson` per exported type.
    #[arg(long)]
    pub out: PathBuf,
    /// Only these resource types (comma-separated), like Bulk Data `_type`.
    #[arg(long = "type", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Only resources updated at or after this instant, like Bulk Data `_since`.
    #[arg(long)]
    pub since: Option<String>,
    /// Export from this running server over HTTP (its FHIR base, `http://HOST:PORT/fhir`)
    /// with Bulk Data `$export`, instead of reading the store (which a running server holds).
    #[arg(long, env = "ISSHO_SERVER")]
    pub server: Option<String>,
    /// The access token for `--server` (`issho token --user NAME`; none in `--dev-open`).
    #[arg(long, env = "ISSHO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Export from a running server (`a.server`) with Bulk Data `$export`: kick-off, polling,
/// then each file downloaded into `a.out` (appended per type); returns the summary line.
pub fn export_over_http(a: &ExportArgs, server: &str) -> Result<String, String> {
    let base = server.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(format!(
            "--server {base}: only http:// servers are reached (https is not yet supported here)"
        ));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .map_err(|e| e.to_string())?;
    let auth = |r: reqwest::blocking::RequestBuilder| match &a.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let start = Instant::now();
    let mut query: Vec<(&str, String)> = Vec::new();
    if !a.types.is_empty() {
        query.push(("_type", a.types.join(",")));
    }
    if let Some(s) = &a.since {
        query.push(("_since", s.clone()));
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            let v = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
            format!("{k}={v}")
        })
        .collect();
    let r = auth(client.get(format!("{base}/$export?{}", q.join("&"))))
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .send()
        .map_err(|e| format!("{base}: {e}"))?;
    if r.status().as_u16() != 202 {
        return Err(format!(
            "the kick-off answered {}: {}",
            r.status(),
            r.text().unwrap_or_default()
        ));
    }
    let status = r
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .ok_or("the kick-off answered no Content-Location")?
        .to_string();
    if !status.starts_with(&format!("{base}/")) {
        return Err(format!("the status URL {status} is not on {base}"));
    }
    let pb = indicatif::ProgressBar::new_spinner();
    let manifest: serde_json::Value = loop {
        let r = auth(client.get(&status))
            .send()
            .map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            202 => {
                let progress = r
                    .headers()
                    .get("x-progress")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("running");
                pb.set_message(progress.to_string());
                pb.tick();
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 30);
                std::thread::sleep(std::time::Duration::from_secs(wait));
            }
            200 => {
                let text = r.text().map_err(|e| e.to_string())?;
                break serde_json::from_str(&text).map_err(|e| format!("the manifest: {e}"))?;
            }
            other => {
                return Err(format!(
                    "the export failed ({other}): {}",
                    r.text().unwrap_or_default()
                ));
            }
        }
    };
    let mut total = 0u64;
    let mut types = std::collections::BTreeSet::new();
    for o in manifest["output"].as_array().into_iter().flatten() {
        let (Some(t), Some(url)) = (o["type"].as_str(), o["url"].as_str()) else {
            continue;
        };
        // The token goes only to this server, and a file's name is its resource type.
        if !issho_model::r4().is_resource_type(t) || !url.starts_with(&format!("{base}/")) {
            return Err(format!(
                "the manifest names a file this client will not fetch: {o}"
            ));
        }
        pb.set_message(format!("downloading {t}"));
        let mut r = auth(client.get(url)).send().map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("{url} answered {}", r.status()));
        }
        let path = a.out.join(format!("{t}.ndjson"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(types.contains(t))
            .write(true)
            .truncate(!types.contains(t))
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::copy(&mut r, &mut f).map_err(|e| format!("{}: {e}", path.display()))?;
        total += o["count"].as_u64().unwrap_or(0);
        types.insert(t.to_string());
    }
    // The export's files are not needed on the server any more.
    let _ = auth(client.delete(&status)).send();
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "exported {total} resources of {} types from {base} (as of {}) to {} in {secs:.1} s",
        types.len(),
        manifest["transactionTime"].as_str().unwrap_or("?"),
        a.out.display()
    ))
}

/// Export into `out`; returns the summary line.
pub fn export_to(engine: &Engine, out: &Path, req: &ExportRequest) -> Result<String, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let ctx = AccessContext::system("export");
    let start = Instant::now();
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} resources {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut current: Option<(String, std::io::BufWriter<std::fs::File>)> = None;
    let mut sink = |rt: &str, json: &[u8]| -> std::io::Result<()> {
        if current.as_ref().is_none_or(|(t, _)| t != rt) {
            if let Some((_, mut w)) = current.take() {
                w.flush()?;
            }
            let f = std::fs::File::create(out.join(format!("{rt}.ndjson")))?;
            current = Some((
                rt.to_string(),
                std::io::BufWriter::with_capacity(1 << 20, f),
            ));
            pb.set_message(rt.to_string());
        }
        let w = &mut current.as_mut().expect("opened above").1;
        w.write_all(json)?;
        w.write_all(b"\n")?;
        pb.inc(1);
        Ok(())
    };
    let summary = engine
        .export(&ctx, req, &mut sink)
        .map_err(|e| format!("{:?}", e.issues))?;
    if let Some((_, mut w)) = current.take() {
        w.flush().map_err(|e| e.to_string())?;
    }
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let n = summary.total();
    let peak = peak_rss_kib().unwrap_or(0);
    Ok(format!(
        "exported {n} resources of {} types ({} persons) to {} in {secs:.1} s ({:.0} resources/s); peak RSS {} MiB",
        summary.counts.len(),
        summary.persons,
        out.display(),
        n as f64 / secs.max(1e-9),
        peak / 1024
    ))
}

/// This process's peak resident memory (VmHWM of /proc/self/status), in KiB.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
