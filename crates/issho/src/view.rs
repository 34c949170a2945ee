//! `issho view run`: a SQL on FHIR v2 ViewDefinition (a JSON file) run over the store's
//! resources of its type, as the operator's system context, streamed as CSV or NDJSON (to a
//! file or standard output); the rows of one resource at a time are in memory, no more. A
//! research project's members run views over HTTP (`$viewdefinition-run`), where the gate
//! gives them their project's de-identified, consenting persons.

use issho_engine::{AccessContext, EngineConfig, ViewScope};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    #[command(subcommand)]
    pub cmd: ViewCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum ViewCmd {
    /// Run a ViewDefinition over the store.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    pub data: PathBuf,
    /// Where the resources are kept: `embedded` (the default) or a `postgres://` URL.
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The ViewDefinition (JSON).
    pub view: PathBuf,
    /// `csv` (with a header), `ndjson` or `parquet`.
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<u64>,
}

pub fn run(a: ViewArgs) -> i32 {
    let ViewCmd::Run(a) = a.cmd;
    match run_view(&a) {
        Ok(summary) => {
            eprintln!("{summary}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn run_view(a: &RunArgs) -> Result<String, String> {
    let format = issho_views::Format::parse(&a.format)
        .ok_or_else(|| format!("--format {}: csv, ndjson or parquet", a.format))?;
    let def: serde_json::Value = std::fs::read(&a.view)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", a.view.display()))?;
    let view =
        issho_views::View::compile(&def).map_err(|e| format!("{}: {e}", a.view.display()))?;
    let engine = crate::open_engine(&a.data, a.store.as_deref(), EngineConfig::default())?;
    let out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = issho_views::Writer::new(
        format,
        view.columns(),
        std::io::BufWriter::with_capacity(1 << 20, out),
    )
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let scope = ViewScope {
        limit: a.limit,
        ..Default::default()
    };
    let (_, rows) = engine
        .run_view(&AccessContext::system("view"), &def, &scope, &mut |r| {
            w.row(r)
        })
        .map_err(|e| crate::package::outcome_text(&e.issues))?;
    w.finish()
        .and_then(|mut o| o.flush())
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "{rows} rows of {} columns in {secs:.2} s ({:.0} rows/s); peak RSS {} MiB",
        view.columns().len(),
        rows as f64 / secs.max(1e-9),
        crate::export::peak_rss_kib().unwrap_or(0) / 1024
    ))
}
