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
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
