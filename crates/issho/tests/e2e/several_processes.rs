//! Two `issho serve` processes on one PostgreSQL database and schema (runs on PostgreSQL; the
//! embedded store has one process per data directory, see `concurrency.rs`): both serve reads
//! and writes, conditional create stays unique and `If-Match` loses no update across them, and
//! their audit records form one intact chain.

use crate::cli::{Proc, serve};
use crate::common::{self, send};
use serde_json::json;

const CLIENTS: usize = 32;

fn start_two() -> Option<(tempfile::TempDir, String, Proc, Proc)> {
    common::test_store()?;
    let dir = tempfile::tempdir().unwrap();
    let issho::StoreChoice::Postgres(url) = common::store_choice(dir.path()) else {
        unreachable!("a PostgreSQL run");
    };
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let args = [
        "--store",
        &url,
        "--data",
        data,
        "--listen",
        "127.0.0.1:0",
        "--dev-open",
    ];
    let a = serve(&args, &[]);
    let b = serve(&args, &[]);
    Some((dir, url, a, b))
}

fn verify(url: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_issho"))
        .args(["audit", "verify", "--store", url])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn two_processes_serve_one_database_together() {
    let Some((_dir, url, a, b)) = start_two() else {
        eprintln!("skipped: two processes on one database need PostgreSQL (ISSHO_TEST_STORE)");
        return;
    };
    let bases = [a.base.as_str(), b.base.as_str()];
    // Written through one, read and searched through the other at once.
    let p = json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "二重"}]});
    assert_eq!(
        send(bases[0], "PUT", "Patient/p2", &[], Some(&p)).status(),
        201
    );
    let r = send(bases[1], "GET", "Patient/p2", &[], None);
    assert_eq!(r.status(), 200);
    assert_eq!(common::json(r)["name"][0]["family"], "二重");
    let found = common::json(send(bases[1], "GET", "Patient?family=二重", &[], None));
    assert_eq!(found["total"], 1);

    // Conditional create from 32 clients, half on each process: one creates, the others find it.
    let body = json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:issho:test", "value": "two-processes"}]});
    let crit = "identifier=urn:issho:test|two-processes";
    common::conditional_create_race(&bases, CLIENTS, crit, &body);
    // If-Match: every client increments a counter 3 times through its process.
    common::increment_counter_with_if_match(&bases, CLIENTS, 3);

    // Both processes' audit records: one chain, intact, holding every access made above (each
    // request is recorded; the writers commit them within moments).
    // (3 first requests, the creates and their 2 counts, the counter's first version, and a
    // read and a write per increment.)
    let at_least = 3 + CLIENTS + 2 + 1 + CLIENTS * 3 * 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, out) = verify(&url);
        assert_eq!(code, Some(0), "{out}");
        let n: usize = out
            .strip_prefix("audit log intact: ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        if n >= at_least {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {n} entries: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The chain is one chain, not one per process: removing an entry written by either process is
/// found, and so is cutting the end off with the anchor left in place.
#[test]
fn tampering_with_the_shared_chain_is_found() {
    let Some((_dir, url, a, b)) = start_two() else {
        eprintln!("skipped: the audit trail in PostgreSQL needs PostgreSQL (ISSHO_TEST_STORE)");
        return;
    };
    for (i, base) in [&a.base, &b.base, &a.base, &b.base].iter().enumerate() {
        let p = json!({"resourceType": "Patient", "id": format!("t{i}")});
        assert_eq!(
            send(base, "PUT", &format!("Patient/t{i}"), &[], Some(&p)).status(),
            201
        );
    }
    drop((a, b));
    let (code, out) = verify(&url);
    assert_eq!(code, Some(0), "{out}");
    let mut c = issho_store_pg::connect(&url).unwrap();
    // The log refuses changes...
    let refused = c.batch("DELETE FROM audit WHERE seq = 2").unwrap_err();
    let why = refused.as_db_error().map(|d| d.message().to_string());
    assert!(
        why.as_deref().is_some_and(|w| w.contains("append-only")),
        "{refused:?}"
    );
    assert!(
        c.batch("UPDATE audit_head SET seq = 1 WHERE one = 1")
            .is_err()
    );
    // ...but someone who drops the triggers can edit it: verify names the entry.
    c.batch(
        "ALTER TABLE audit DISABLE TRIGGER USER; ALTER TABLE audit_patient DISABLE TRIGGER USER",
    )
    .unwrap();
    let agent: String = c
        .query_one("SELECT agent FROM audit WHERE seq = 2", &[])
        .unwrap()
        .get(0);
    c.batch("UPDATE audit SET agent = 'someone-else' WHERE seq = 2")
        .unwrap();
    let (code, out) = verify(&url);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("first bad entry seq 2"), "{out}");
    c.execute("UPDATE audit SET agent = $1 WHERE seq = 2", &[&agent])
        .unwrap();
    assert_eq!(verify(&url).0, Some(0), "restored");
    // Cutting off the end, the anchor left in place: found too.
    let last: i64 = c
        .query_one("SELECT max(seq) FROM audit", &[])
        .unwrap()
        .get(0);
    c.batch(&format!(
        "DELETE FROM audit_patient WHERE seq = {last}; DELETE FROM audit WHERE seq = {last}"
    ))
    .unwrap();
    let (code, out) = verify(&url);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("last entries were removed"), "{out}");
    // A server refuses to append to a chain that lost its end.
    let data = _dir.path().join("data2");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_issho"));
    let out = cmd
        .args(["serve", "--store", &url, "--data", data.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--dev-open"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("entries were removed"), "{text}");
}
