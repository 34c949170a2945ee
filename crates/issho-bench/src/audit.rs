//! The audit trail's searches over years of segments, in process (issho-audit alone, no
//! server): a person's access log and an agent's events when the trail has many sealed
//! segments. Each segment holds about 500 reads' records (a small `segment_bytes`, so that
//! hundreds of segments are written in seconds); record `i` is a read of person `i % 2000` by
//! agent `i % 50`, so a person is in about one segment in four.

use crate::measure::percentile;
use issho_audit::{AuditConfig, AuditLog, AuditRecord, Interaction};
use std::path::Path;
use std::time::{Duration, Instant};

const PERSONS: usize = 2000;

fn record(i: usize, t0: i64) -> AuditRecord {
    let mut r = AuditRecord::new(
        Interaction::Read,
        &format!("Practitioner/dr{}", i % 50),
        "bench",
    );
    r.time = t0 + i as i64 * 1000;
    r.patients = vec![format!("Patient/p{}", i % PERSONS)];
    r.entities = vec![format!("Observation/o{i}")];
    r
}

/// Write a trail of `segments` sealed segments in `dir`, reopen it, and time the searches
/// (`reps` times each after a first, cold one). Returns the report's section.
pub fn searches_over_segments(dir: &Path, segments: usize, reps: usize) -> Result<String, String> {
    let cfg = AuditConfig {
        segment_bytes: 48 * 1024,
        segment_age: Duration::from_secs(20 * 365 * 86_400),
        retention: None,
    };
    let e = |e: issho_audit::AuditError| e.to_string();
    let began = Instant::now();
    let log = AuditLog::open_with(dir, cfg).map_err(e)?;
    let t0 = issho_audit::now_micros() - 86_400_000_000;
    // One person read once, at the start; one read at the end.
    let mut once = record(0, t0);
    once.patients = vec!["Patient/once".into()];
    log.record(once).map_err(e)?;
    let mut i = 1;
    while log.segment_numbers().len() <= segments {
        for _ in 0..500 {
            log.record(record(i, t0)).map_err(e)?;
            i += 1;
        }
        log.flush().map_err(e)?;
    }
    let mut last = record(i, t0);
    last.patients = vec!["Patient/recent".into()];
    log.record(last).map_err(e)?;
    log.close().map_err(e)?;
    let written = began.elapsed();
    let log = AuditLog::open_with(dir, cfg).map_err(e)?;
    let queries: [(&str, Option<&str>, Option<&str>, usize); 5] = [
        (
            "a person in a quarter of the segments, whole log",
            None,
            Some("Patient/p7"),
            10_000,
        ),
        ("the same person, newest 20", None, Some("Patient/p7"), 20),
        (
            "a person read once, years ago",
            None,
            Some("Patient/once"),
            100,
        ),
        ("a person never read", None, Some("Patient/nobody"), 100),
        (
            "an agent's newest 100 (`$audit`)",
            Some("Practitioner/dr7"),
            None,
            100,
        ),
    ];
    let mut out = format!(
        "\nThe audit trail's searches over {} segments ({} records written in {:.1} s; in process, one thread):\n\n| search | events | first (cold) ms | p50 ms | p95 ms |\n|---|---|---|---|---|\n",
        log.segment_numbers().len(),
        i + 1,
        written.as_secs_f64()
    );
    for (name, agent, patient, limit) in queries {
        let t = Instant::now();
        let n = log
            .search(agent, patient, None, None, limit)
            .map_err(e)?
            .len();
        let cold = t.elapsed();
        let mut lat = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            log.search(agent, patient, None, None, limit).map_err(e)?;
            lat.push(t.elapsed());
        }
        lat.sort();
        out.push_str(&format!(
            "| {name} | {n} | {:.2} | {:.2} | **{:.2}** |\n",
            cold.as_secs_f64() * 1e3,
            percentile(&lat, 0.5),
            percentile(&lat, 0.95)
        ));
    }
    Ok(out)
}
