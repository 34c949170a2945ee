//! The whole end-to-end suite again on PostgreSQL, and again on Citus: each test here runs
//! this very test binary once more with `ISSHO_TEST_STORE` set (every server of the suite then
//! opens a schema of its own in that database), so the same tests check every store.
//!
//! - PostgreSQL: `ISSHO_TEST_PG=postgres://USER:PASSWORD@HOST/DB`.
//! - Citus: `ISSHO_TEST_CITUS=postgres://USER@COORDINATOR/DB`, a database with the `citus`
//!   extension and workers (`../shared/citus/cluster.sh start`); the store distributes its
//!   tables by the person key when it opens them.
//!
//! `.ci/run` sets both. The Citus run leaves out the bulk loads of the conformance suites (see
//! [`the_suite_passes_on_citus`]). Without them the runs are skipped and say so on the test process's
//! stderr, which the test harness does not capture.

use std::io::Write;

/// Run the suite on the database named by `var` (without the tests named in `skip`), or say
/// why it was skipped.
fn rerun_suite(var: &str, label: &str, skip: &[&str]) {
    if crate::common::test_store().is_some() {
        return; // this is the run on a database itself
    }
    let mut err = std::io::stderr();
    let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) else {
        let _ = writeln!(
            err,
            "\n[issho] {var} is not set: the end-to-end suite on {label} was SKIPPED \
             (.ci/run starts {label} and runs it)"
        );
        return;
    };
    if let Err(e) = issho_store_pg::connect(&url) {
        let _ = writeln!(
            err,
            "\n[issho] {label} at {} is not reachable ({e:?}): the end-to-end suite on \
             {label} was SKIPPED",
            issho::redact(&url)
        );
        return;
    }
    // One run on a database at a time (two cores: the runs would slow each other past the
    // suite's timeouts).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .env("ISSHO_TEST_STORE", &url)
        .args(["--skip", "postgres_suite", "--test-threads", "2"])
        .args(skip.iter().flat_map(|s| ["--skip", s]))
        .output()
        .expect("run the suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test result") || l.contains("FAILED") || l.contains("panicked"))
        .collect();
    let _ = writeln!(
        err,
        "\n[issho] the end-to-end suite on {label} ({}): {}",
        issho::redact(&url),
        summary.join("\n[issho]   ")
    );
    assert!(
        out.status.success(),
        "the suite failed on {label}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_suite_passes_on_postgresql() {
    rerun_suite("ISSHO_TEST_PG", "PostgreSQL", &[]);
}

#[test]
fn the_suite_passes_on_citus() {
    // The two bulk loads of the conformance suites (every R4 example, every Synthea patient
    // over HTTP) write what the PostgreSQL run already wrote through the same statements, and
    // take a quarter of an hour through the coordinator: left to the PostgreSQL run. Synthea's
    // searches against independent answers (store_synthea) run here too.
    rerun_suite(
        "ISSHO_TEST_CITUS",
        "Citus",
        &["conformance_r4_examples", "conformance_synthea"],
    );
}
