//! The Markdown report (the source of BENCHMARKS.md).

use crate::BenchArgs;
use crate::export::Export;
use crate::measure::Measured;
use crate::search::{MIXES, MixResult};
use std::path::Path;

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

/// The report: a header naming the machine and the run, one table (issho, and the peer with the
/// ratio when measured), notes, the ingest rate over time, and the raw-store baseline.
pub fn report(
    a: &BenchArgs,
    cfg: &issho_demo::DemoConfig,
    rs: &[Measured],
    baseline: Option<(usize, f64, u64)>,
    with_peer: bool,
    work: &Path,
) -> String {
    let mut r = header(a, cfg, rs, with_peer, work);
    let mut t = Table::new(&rs[0], rs.get(1));
    ingest_rows(&mut t);
    read_rows(&mut t);
    search_rows(&mut t);
    record_rows(&mut t);
    export_row(&mut t);
    page_rows(&mut t);
    view_row(&mut t);
    r.push_str(&t.out);
    r.push('\n');
    notes(&mut r, rs);
    if let Some(b) = baseline {
        baseline_section(&mut r, &rs[0], b);
    }
    r
}

/// The title and the machine.
fn header(
    a: &BenchArgs,
    cfg: &issho_demo::DemoConfig,
    rs: &[Measured],
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
    r
}

/// The table of measures: a column for issho, and for the peer its value and the ratio.
struct Table<'a> {
    issho: &'a Measured,
    peer: Option<&'a Measured>,
    out: String,
}

impl<'a> Table<'a> {
    fn new(issho: &'a Measured, peer: Option<&'a Measured>) -> Table<'a> {
        let mut head = "| measure | issho |".to_string();
        let mut sep = "|---|---|".to_string();
        if let Some(p) = peer {
            head.push_str(&format!(" {} | issho / peer |", p.name));
            sep.push_str("---|---|");
        }
        Table {
            issho,
            peer,
            out: format!("{head}\n{sep}\n"),
        }
    }

    /// A row: (label, issho value, peer value, ratio where higher is better (+1) / lower (-1)).
    fn row(&mut self, label: &str, f: &dyn Fn(&Measured) -> (String, f64), better: i32) {
        let (iv, inum) = f(self.issho);
        let mut line = format!("| {label} | {iv} |");
        if let Some(p) = self.peer {
            let (pv, pnum) = f(p);
            let rat = match better {
                1 => ratio(inum, pnum),
                -1 => ratio(pnum, inum),
                _ => String::new(),
            };
            line.push_str(&format!(" {pv} | {rat} |"));
        }
        self.out.push_str(&line);
        self.out.push('\n');
    }
}

fn ingest_rows(t: &mut Table) {
    t.row(
        "ingest: resources loaded (failed bundles)",
        &|m| {
            (
                format!("{} ({})", m.ingest.resources, m.ingest.failed),
                m.ingest.resources as f64,
            )
        },
        0,
    );
    t.row(
        "ingest: resources/s (transaction Bundles over HTTP)",
        &|m| {
            let v = m.ingest.resources as f64 / m.ingest.secs.max(1e-9);
            (format!("**{v:.0}** ({:.1} s)", m.ingest.secs), v)
        },
        1,
    );
    t.row(
        "ingest: server CPU ms per resource (user + system)",
        &|m| match m.ingest.cpu_secs {
            Some(c) => {
                let v = c * 1e3 / m.ingest.resources.max(1) as f64;
                (format!("{v:.3}"), v)
            }
            None => ("—".into(), 0.0),
        },
        -1,
    );
    t.row(
        "disk bytes/resource",
        &|m| {
            let v = m.ingest.disk as f64 / m.ingest.resources.max(1) as f64;
            (format!("{v:.0}"), v)
        },
        -1,
    );
    t.row(
        "RSS peak during ingest, MiB",
        &|m| (mib(m.ingest.peak_rss_kib), m.ingest.peak_rss_kib as f64),
        -1,
    );
    t.row(
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
}

fn read_rows(t: &mut Table) {
    t.row(
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
    t.row(
        "read by id: p50 / p95 / p99 ms",
        &|m| match &m.reads {
            Some(x) => (format!("{:.3} / {:.3} / {:.3}", x.p50, x.p95, x.p99), x.p99),
            None => ("—".into(), 0.0),
        },
        -1,
    );
    t.row(
        "read by id: server CPU ms per request (user + system)",
        &|m| match m.reads.as_ref().and_then(|x| x.cpu_ms) {
            Some(v) => (format!("{v:.3}"), v),
            None => ("—".into(), 0.0),
        },
        -1,
    );
    t.row(
        "read by id: audit trail bytes per read",
        &|m| match m.reads.as_ref().and_then(|x| x.audit_bytes) {
            Some(v) => (format!("{v:.0}"), v),
            None => ("—".into(), 0.0),
        },
        -1,
    );
    t.row(
        "RSS peak under read and search load, MiB",
        &|m| (mib(m.load_peak_rss_kib), m.load_peak_rss_kib as f64),
        -1,
    );
}

/// One operation's p50 / p95 cell (sorted by p95), its failure, or "—" when not measured.
fn latency_cell(x: Option<&MixResult>) -> (String, f64) {
    match x {
        Some(x) if x.error.is_none() => (
            format!("{:.2} / **{:.2}** ({})", x.p50, x.p95, x.matches),
            x.p95,
        ),
        Some(x) => (format!("failed: {}", x.error.as_deref().unwrap_or("")), 0.0),
        None => ("—".into(), 0.0),
    }
}

fn search_rows(t: &mut Table) {
    for (i, mx) in MIXES.iter().enumerate() {
        t.row(
            &format!("search p50 / p95 ms: {}", mx.name),
            &|m| latency_cell(m.mix.get(i)),
            -1,
        );
    }
    t.row(
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
}

/// The lifelong record's operations (issho only; "—" for a peer).
fn record_rows(t: &mut Table) {
    let names = [
        "$everything of a person at several institutions",
        "$summary (six items across institutions)",
        "Patient/$match (member ID, name, birth date)",
    ];
    for (i, name) in names.iter().enumerate() {
        t.row(
            &format!("record p50 / p95 ms: {name}"),
            &|m| latency_cell(m.record.get(i)),
            -1,
        );
    }
    t.row(
        "JP-CLINS referral intake, documents/s (p95 ms)",
        &|m| match m.record.get(3) {
            Some(x) if x.error.is_none() => (
                format!("**{:.0}** ({:.1} ms; {})", x.rate, x.p95, x.matches),
                x.rate,
            ),
            other => latency_cell(other),
        },
        1,
    );
}

/// A row of one phase's rate: `what` per second (count, seconds, peak memory), or its note.
fn rate_row(t: &mut Table, label: &str, what: &'static str, of: fn(&Measured) -> Option<&Export>) {
    t.row(
        label,
        &|m| match of(m) {
            Some(e) if e.resources > 0 => {
                let v = e.resources as f64 / e.secs.max(1e-9);
                (
                    format!(
                        "**{v:.0}** ({} {what} in {:.1} s; {} MiB)",
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
}

/// The web application's pages (issho only; "—" for a peer).
fn page_rows(t: &mut Table) {
    let names = [
        "the person's portal (demo-patient)",
        "a doctor's record page (demo-doctor-a or -b, the demo patient open)",
    ];
    for (i, name) in names.iter().enumerate() {
        t.row(
            &format!("web page p50 / p95 ms: {name}"),
            &|m| latency_cell(m.pages.get(i)),
            -1,
        );
    }
}

fn view_row(t: &mut Table) {
    rate_row(
        t,
        "SQL on FHIR view (flat Observation): rows/s (peak RSS MiB)",
        "rows",
        |m| m.view.as_ref(),
    );
}

fn export_row(t: &mut Table) {
    rate_row(t, "export: resources/s (peak RSS MiB)", "resources", |m| {
        m.export.as_ref()
    });
}

/// Export notes, failures, the import and the ingest rate over time.
fn notes(r: &mut String, rs: &[Measured]) {
    let issho = &rs[0];
    for m in rs {
        if let Some(e) = &m.export {
            r.push_str(&format!("Export of {}: {}.\n", m.name, e.note));
        }
        if let Some(e) = &m.view {
            r.push_str(&format!("View of {}: {}.\n", m.name, e.note));
        }
        if let Some(f) = &m.ingest.first_failure {
            r.push_str(&format!("First failed bundle of {}: {f}\n", m.name));
        }
        for x in m.mix.iter().chain(&m.record).chain(&m.pages) {
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
}

/// The raw-store baseline and issho's ingest relative to it.
fn baseline_section(r: &mut String, issho: &Measured, (n, secs, bytes): (usize, f64, u64)) {
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
