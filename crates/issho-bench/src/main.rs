//! `issho-bench`: a reproducible benchmark of issho on this machine, optionally side by side with
//! a peer FHIR server (Helios `helios-hfs`) and always against a raw-store baseline.
//!
//! Every server under test runs as its own process (the `issho` binary's `serve` on a fresh
//! store; the peer's binary on a fresh data directory), so its memory is measured alone. This
//! process is the load generator: it loads the same generated population into each server over
//! real HTTP (transaction Bundles, concurrent keep-alive clients, resources/s sampled every
//! second), measures read by id (with `wrk` when it is installed, else a built-in keep-alive
//! client), a clinical search mix, export of everything as NDJSON, `issho import` of that export
//! into a fresh store, disk bytes per resource, and RSS at rest and under load. It prints a
//! Markdown report (the source of BENCHMARKS.md), writes SVG plots with `--out`, and never
//! asserts timings.
//!
//! The harness is not part of the shipping `issho` binary; it finds that binary next to its own
//! executable (or at `--issho-bin`), and when run with `cargo run` it first builds it with the
//! same profile, so the server measured is always the current source.

mod audit;
mod baseline;
mod export;
mod http;
mod measure;
mod pages;
mod peer;
mod plots;
mod profiles;
mod reads;
mod record;
mod report;
mod search;
mod server;
mod terminology;

use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "issho-bench",
    version,
    about = "Measure issho's ingest, reads and searches over HTTP on a generated population (see BENCHMARKS.md)"
)]
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
    /// The `issho` binary to measure (default: `issho` next to this executable, built first
    /// with the same profile when run through `cargo run`).
    #[arg(long)]
    pub issho_bin: Option<PathBuf>,
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
    /// Also measure `Patient/$match` on a fresh store of this many synthetic persons (Patients
    /// only; a third at two institutions, linked by member ID); 0: skip.
    #[arg(long, default_value_t = 0)]
    pub match_persons: usize,
    /// Also measure `ValueSet/$expand` (a filter), `$validate-code` and `$lookup` over a
    /// code system of this many concepts, on a fresh store; 0: skip.
    #[arg(long, default_value_t = 0)]
    pub terminology_concepts: usize,
    /// Also measure profile validation (the validator alone, and ingest with JP Core
    /// installed against without), with the packages of this reference data folder.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Also measure the audit trail's searches (a person's access log, an agent's events)
    /// over this many sealed segments, in process; 0: skip.
    #[arg(long, default_value_t = 0)]
    pub audit_segments: usize,
    /// Run issho on PostgreSQL: a database (`postgres://USER:PASSWORD@HOST/DB`) in which the
    /// benchmark makes a fresh schema of its own for the run (and one for the import).
    #[arg(long)]
    pub store: Option<String>,
}

fn main() {
    match run(BenchArgs::parse()) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn run(a: BenchArgs) -> Result<String, String> {
    let issho_bin = issho_binary(&a)?;
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
        _ => reads::wrk_available(),
    };
    // The peer first: its installation is the step most likely to fail.
    let peer = if a.peer {
        let bin = peer::peer_binary(&a)?;
        let params = peer::search_params_file(&a)?;
        Some((bin, params))
    } else {
        None
    };
    let mut results = Vec::new();
    let store = match &a.store {
        Some(url) => Some(server::fresh_schema(url)?),
        None => None,
    };
    let issho = server::Server::issho(&issho_bin, &work.join("issho"), store.as_ref())?;
    results.push(measure::measure(issho, &cfg, &a, &work, use_wrk)?);
    if let Some((bin, params)) = &peer {
        let s = server::Server::peer(bin, &work.join("peer"), params)?;
        results.push(measure::measure(s, &cfg, &a, &work, use_wrk)?);
    }
    let baseline = if a.no_baseline {
        None
    } else {
        eprintln!("raw-store baseline…");
        Some(baseline::raw_baseline(&cfg, &work.join("raw-baseline"))?)
    };
    let mut report = report::report(&a, &cfg, &results, baseline, peer.is_some(), &work);
    if a.match_persons > 0 {
        let (rate, m) = record::match_at_scale(
            &issho_bin,
            &work.join("match"),
            a.match_persons,
            a.clients,
            a.search_reps.max(200),
        )?;
        report.push_str(&match m.error {
            None => format!(
                "\n`Patient/$match` over {} persons (Patients only, loaded at {rate:.0} Patients/s with linking): p50 {:.2} ms, p95 **{:.2}** ms, p99 {:.2} ms ({} requests, {})\n",
                a.match_persons, m.p50, m.p95, m.p99, m.reps, m.matches
            ),
            Some(e) => format!("\n`Patient/$match` over {} persons failed: {e}\n", a.match_persons),
        });
    }
    if let Some(shared) = &a.profiles {
        report.push_str(&profiles::profiles_bench(
            &issho_bin, &work, shared, &cfg, a.clients,
        )?);
    }
    if a.terminology_concepts > 0 {
        let rows = terminology::terminology_at_scale(
            &issho_bin,
            &work.join("terminology"),
            a.terminology_concepts,
            a.search_reps.max(200),
        )?;
        report.push_str(&format!(
            "\nTerminology over a code system of {} concepts (one client, sequential):\n\n| operation | p50 ms | p95 ms | p99 ms | requests |\n|---|---|---|---|---|\n",
            a.terminology_concepts
        ));
        for m in rows {
            report.push_str(&match m.error {
                None => format!(
                    "| {} | {:.2} | **{:.2}** | {:.2} | {} |\n",
                    m.name, m.p50, m.p95, m.p99, m.reps
                ),
                Some(e) => format!("| {} | failed: {e} | | | |\n", m.name),
            });
        }
    }
    if a.audit_segments > 0 {
        report.push_str(&audit::searches_over_segments(
            &work.join("audit-segments"),
            a.audit_segments,
            a.search_reps.max(20),
        )?);
    }
    if let Some(out) = &a.out {
        write_out(out, &report, &results)?;
    }
    if a.data.is_none() {
        let _ = std::fs::remove_dir_all(&work);
        if let Some(p) = &store {
            p.drop_schema();
        }
    }
    Ok(report)
}

/// report.md and the two plots into `out`.
fn write_out(out: &Path, report: &str, results: &[measure::Measured]) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.md"), report).map_err(|e| e.to_string())?;
    std::fs::write(out.join("ingest.svg"), plots::ingest_svg(results))
        .map_err(|e| e.to_string())?;
    std::fs::write(out.join("latency.svg"), plots::latency_svg(results)).map_err(|e| e.to_string())
}

/// The `issho` binary to start as the server: `--issho-bin`, else the one next to this
/// executable (`cargo build` puts both into the same target directory). When this process was
/// started by `cargo run`, the binary is built first with the same profile (a no-op when it is
/// up to date), and cargo says where it is.
fn issho_binary(a: &BenchArgs) -> Result<PathBuf, String> {
    if let Some(b) = &a.issho_bin {
        return Ok(b.clone());
    }
    if let (Some(cargo), Some(dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        let manifest = Path::new(&dir).join("../../Cargo.toml");
        if manifest.exists() {
            return cargo_build_issho(Path::new(&cargo), &manifest);
        }
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name(format!("issho{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        Ok(bin)
    } else {
        let release = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        Err(format!(
            "{} not found: build it (`cargo build{release} -p issho`) or give --issho-bin",
            bin.display()
        ))
    }
}

/// What `cargo run` sets for the program it runs (besides `CARGO`). Passed on to the inner
/// build they would differ from a plain `cargo build`'s environment, and build scripts that
/// watch them (ring's: `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`…) would run again each time.
const CARGO_RUN_VARS: [&str; 7] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_TARGET_TMPDIR",
];

/// `cargo build -p issho --bin issho` with this process's profile; the executable's path from
/// cargo's JSON messages.
fn cargo_build_issho(cargo: &Path, manifest: &Path) -> Result<PathBuf, String> {
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "issho", "--bin", "issho"])
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--message-format", "json-render-diagnostics"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_") || CARGO_RUN_VARS.contains(&k.as_ref()) {
            cmd.env_remove(k.as_ref());
        }
    }
    eprintln!("building the issho binary (cargo build -p issho)…");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo build -p issho: {e}"))?;
    if !out.status.success() {
        return Err("cargo build -p issho failed".into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "issho")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo build -p issho named no issho executable".into())
}
