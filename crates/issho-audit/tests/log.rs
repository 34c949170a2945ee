//! The audit log on disk: records round-trip, the chain verifies, and every kind of tampering
//! with the file (made here with raw SQL, as an attacker would) is found.

use issho_audit::*;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;

fn rec(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new(
        Interaction::Read,
        &format!("Practitioner/dr{}", i % 3),
        "test",
    );
    r.time = 1_700_000_000_000_000 + i as i64 * 1000;
    r.patients = vec![format!("Patient/p{}", i % 5)];
    r.entities = vec![format!("Observation/o{i}")];
    r.purpose_of_use = vec!["TREAT".into()];
    r
}

fn write(dir: &Path, n: usize) {
    let log = AuditLog::open(dir).unwrap();
    for i in 0..n {
        log.record(rec(i)).unwrap();
    }
    log.close().unwrap();
}

/// Raw SQL on the file, past the append-only triggers (which an attacker would drop).
fn tamper(dir: &Path, sql: &str) {
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;
         DROP TRIGGER IF EXISTS audit_patient_no_update;
         DROP TRIGGER IF EXISTS audit_patient_no_delete;",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
}

fn broken_at(dir: &Path) -> (i64, Problem) {
    match verify(dir) {
        Err(VerifyError::Broken { seq, problem }) => (seq, problem),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn a_thousand_records_verify_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.entries, 1000);
    assert_eq!(report.last_seq, 1000);
    assert_eq!(report.anchored_seq, 1000);
    assert!(
        report
            .to_string()
            .starts_with("audit log intact: 1000 entries")
    );

    let log = AuditLog::open(dir.path()).unwrap();
    // a person's own log: only their entries, newest first
    let mine = log.for_patient("Patient/p3", None, 1000).unwrap();
    assert_eq!(mine.len(), 200);
    for ev in &mine {
        assert_eq!(ev["resourceType"], "AuditEvent");
        assert_eq!(ev["entity"][0]["what"]["reference"], "Patient/p3");
        let issues = issho_model::validate::validate_resource(ev, &Default::default());
        assert!(issues.is_empty(), "{issues:?}");
    }
    let ids: Vec<i64> = mine
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(ids[0], 999); // rec(998) is seq 999, the last of p3
    assert_eq!(log.for_patient("Patient/p3", None, 5).unwrap().len(), 5);
    assert!(
        log.for_patient("Patient/nobody", None, 10)
            .unwrap()
            .is_empty()
    );
    // since: the last 100 records' times
    let since = 1_700_000_000_000_000 + 900 * 1000;
    assert_eq!(
        log.for_patient("Patient/p3", Some(since), 1000)
            .unwrap()
            .len(),
        20
    );

    // administrators: by agent, by agent and patient, by time window
    let by_agent = log
        .search(Some("Practitioner/dr1"), None, None, None, 10_000)
        .unwrap();
    assert_eq!(by_agent.len(), 333);
    assert!(
        by_agent
            .iter()
            .all(|e| e["agent"][0]["who"]["reference"] == "Practitioner/dr1")
    );
    let both = log
        .search(
            Some("Practitioner/dr1"),
            Some("Patient/p1"),
            None,
            None,
            10_000,
        )
        .unwrap();
    assert_eq!(both.len(), 67); // i ≡ 1 (mod 15)
    let window = log
        .search(None, None, Some(since), Some(since + 10 * 1000), 10_000)
        .unwrap();
    assert_eq!(window.len(), 10);
    // the log is still intact and appendable after a reopen
    log.record(rec(1000)).unwrap();
    log.flush().unwrap();
    assert_eq!(verify(dir.path()).unwrap().entries, 1001);
}

#[test]
fn an_event_for_several_patients_is_in_each_ones_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let mut r = AuditRecord::new(Interaction::SearchType, "client-app", "test");
    r.patients = vec!["Patient/b".into(), "Patient/a".into(), "Patient/b".into()];
    r.query = Some("Observation?code=1234-5".into());
    log.record(r).unwrap();
    log.flush().unwrap();
    assert_eq!(log.for_patient("Patient/a", None, 10).unwrap().len(), 1);
    assert_eq!(log.for_patient("Patient/b", None, 10).unwrap().len(), 1);
    drop(log);
    assert_eq!(verify(dir.path()).unwrap().entries, 1);
    // dropping a patient from the index hides an access from that person: detected
    tamper(
        dir.path(),
        "DELETE FROM audit_patient WHERE patient = 'Patient/b'",
    );
    assert_eq!(broken_at(dir.path()), (1, Problem::PatientIndex));
}

#[test]
fn the_append_only_triggers_refuse_edits() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 3);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let err = conn
        .execute("UPDATE audit SET body = x'00' WHERE seq = 2", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(conn.execute("DELETE FROM audit WHERE seq = 3", []).is_err());
    assert_eq!(verify(dir.path()).unwrap().entries, 3);
}

#[test]
fn an_edited_body_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    tamper(
        dir.path(),
        "UPDATE audit SET body = replace(body, 'Observation/o416', 'Observation/o417') \
         WHERE seq = 417",
    );
    assert_eq!(broken_at(dir.path()), (417, Problem::Altered));
    let msg = verify(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("seq 417"), "{msg}");
}

#[test]
fn an_edited_body_with_a_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    let (time, agent, patients, prev): (i64, String, String, Vec<u8>) = conn
        .query_row(
            "SELECT time, agent, patients, prev FROM audit WHERE seq = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let body = b"{\"resourceType\":\"AuditEvent\"}".to_vec();
    let hash = entry_hash(4, time, &prev, agent.as_bytes(), patients.as_bytes(), &body);
    conn.execute(
        "UPDATE audit SET body = ?1, hash = ?2 WHERE seq = 4",
        rusqlite::params![body, &hash[..]],
    )
    .unwrap();
    assert_eq!(broken_at(dir.path()), (5, Problem::BrokenLink));
}

#[test]
fn a_removed_middle_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    tamper(dir.path(), "DELETE FROM audit WHERE seq = 500");
    assert_eq!(broken_at(dir.path()), (500, Problem::Missing));
}

#[test]
fn a_cut_off_tail_is_found_through_the_head_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    tamper(
        dir.path(),
        "DELETE FROM audit WHERE seq > 990; DELETE FROM audit_patient WHERE seq > 990",
    );
    assert_eq!(
        broken_at(dir.path()),
        (991, Problem::Truncated { head_seq: 1000 })
    );
    // and the log refuses to open: appending would overwrite the evidence
    match AuditLog::open(dir.path()) {
        Err(AuditError::Tampered(why)) => assert!(why.contains("990"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a truncated log was opened"),
    }
    // removing the head file as well does not help
    std::fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
    assert!(matches!(verify(dir.path()), Err(VerifyError::Anchor(_))));
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Tampered(_))
    ));
}

#[test]
fn a_removed_database_is_found_through_the_head_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 5);
    for f in ["audit.db", "audit.db-wal", "audit.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    assert_eq!(
        broken_at(dir.path()),
        (1, Problem::Truncated { head_seq: 5 })
    );
}

#[test]
fn swapped_bodies_are_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    tamper(
        dir.path(),
        "CREATE TEMP TABLE t AS SELECT seq, body FROM audit WHERE seq IN (200, 300);
         UPDATE audit SET body = (SELECT body FROM t WHERE t.seq = 500 - audit.seq)
           WHERE seq IN (200, 300);",
    );
    assert_eq!(broken_at(dir.path()), (200, Problem::Altered));
}

#[test]
fn reordered_entries_are_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 20);
    // swap whole rows 7 and 8 (every column but seq): the entry now at 7 follows the one
    // now at 8
    tamper(
        dir.path(),
        "UPDATE audit SET seq = -7 WHERE seq = 7;
         UPDATE audit SET seq = 7 WHERE seq = 8;
         UPDATE audit SET seq = 8 WHERE seq = -7;",
    );
    assert_eq!(
        broken_at(dir.path()),
        (7, Problem::Reordered { follows: 8 })
    );
}

#[test]
fn a_rewritten_chain_differs_from_the_head() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 3);
    // rebuild a consistent chain with a different last entry
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    let (time, prev): (i64, Vec<u8>) = conn
        .query_row("SELECT time, prev FROM audit WHERE seq = 3", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let body = b"{}".to_vec();
    let hash = entry_hash(3, time, &prev, b"someone", b"", &body);
    conn.execute(
        "UPDATE audit SET agent = 'someone', patients = '', body = ?1, hash = ?2 WHERE seq = 3",
        rusqlite::params![body, &hash[..]],
    )
    .unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_patient_no_delete; DELETE FROM audit_patient WHERE seq = 3",
    )
    .unwrap();
    assert_eq!(broken_at(dir.path()), (3, Problem::HeadMismatch));
}

#[test]
fn four_threads_record_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    log.record(rec(t * 500 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    log.flush().unwrap();
    // verified while the log is open (a snapshot of the live file)
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.entries, 2000);
    assert_eq!(report.anchored_seq, 2000);
    log.health().unwrap();
}

#[test]
fn a_failing_writer_is_reported_not_silent() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    log.record(rec(0)).unwrap();
    log.flush().unwrap();
    // the file refuses inserts from now on (as a full or broken disk would)
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
    )
    .unwrap();
    log.record(rec(1)).unwrap(); // queued: the failure is not known yet
    let err = log.flush().unwrap_err();
    assert!(err.to_string().contains("disk says no"), "{err}");
    assert!(log.health().is_err());
    assert!(matches!(
        log.record(rec(2)),
        Err(AuditError::WriterFailed(_))
    ));
    assert!(log.close().is_err());
    // what was stored before the failure is intact
    assert_eq!(verify(dir.path()).unwrap().entries, 1);
}

#[test]
fn dropping_the_log_writes_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..300 {
            log.record(rec(i)).unwrap();
        }
    }
    assert_eq!(verify(dir.path()).unwrap().entries, 300);
}

#[test]
fn no_log_is_unreadable_and_an_empty_one_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(VerifyError::Unreadable(_))
    ));
    drop(AuditLog::open(dir.path()).unwrap());
    assert_eq!(verify(dir.path()).unwrap().entries, 0);
}

/// Regression (CI, 2026-12-03): a second process opening a data directory in use — `issho
/// export` beside a running server — re-anchored the head file while the server's writer was
/// replacing it, and one of the two renames failed. The second opening is now refused before
/// it reads or writes anything, and the chain stays the first log's.
#[test]
fn a_second_opening_is_refused_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = AuditLog::open(dir.path()).unwrap();
    for i in 0..10 {
        first.record(rec(i)).unwrap();
    }
    first.flush().unwrap();
    let head = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
    let err = match AuditLog::open(dir.path()) {
        Ok(_) => panic!("a second log on one directory was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in use by another issho process"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(HEAD_FILE)).unwrap(), head);
    for i in 10..20 {
        first.record(rec(i)).unwrap();
    }
    first.close().unwrap();
    // Released with the log: the directory opens again, and the chain is whole.
    drop(AuditLog::open(dir.path()).unwrap());
    assert_eq!(verify(dir.path()).unwrap().entries, 20);
}
