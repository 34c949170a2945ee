//! The whole end-to-end suite again on PostgreSQL: this test runs this very test binary once
//! more with `ISSHO_TEST_STORE` set (every server of the suite then opens a schema of its own
//! in that database), so the same tests check both stores. It needs a database:
//! `ISSHO_TEST_PG=postgres://USER:PASSWORD@HOST/DB` (`.ci/run` starts PostgreSQL 15 and sets
//! it). Without it the run is skipped and says so on the test process's stderr, which the test
//! harness does not capture.

use std::io::Write;

#[test]
fn the_suite_passes_on_postgresql() {
    if crate::common::test_store().is_some() {
        return; // this is the PostgreSQL run itself
    }
    let mut err = std::io::stderr();
    let Some(url) = std::env::var("ISSHO_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        let _ = writeln!(
            err,
            "\n[issho] ISSHO_TEST_PG is not set: the end-to-end suite on PostgreSQL was SKIPPED \
             (.ci/run starts PostgreSQL and runs it)"
        );
        return;
    };
    if let Err(e) = issho_store_pg::connect(&url) {
        let _ = writeln!(
            err,
            "\n[issho] PostgreSQL at {} is not reachable ({e:?}): the end-to-end suite on \
             PostgreSQL was SKIPPED",
            issho::redact(&url)
        );
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .env("ISSHO_TEST_STORE", &url)
        .args(["--skip", "postgres_suite", "--test-threads", "2"])
        .output()
        .expect("run the suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test result") || l.contains("FAILED") || l.contains("panicked"))
        .collect();
    let _ = writeln!(
        err,
        "\n[issho] the end-to-end suite on PostgreSQL ({}): {}",
        issho::redact(&url),
        summary.join("\n[issho]   ")
    );
    assert!(
        out.status.success(),
        "the suite failed on PostgreSQL:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
