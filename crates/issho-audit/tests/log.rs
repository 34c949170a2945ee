//! The audit log on disk: records round-trip, searches find them, the chain verifies, writers
//! run concurrently, a failing disk is reported, one process at a time. Tampering:
//! `tamper.rs`; segments, archives, retention and the first format: `segments.rs`.

mod common;

use common::*;
use issho_audit::*;
use rusqlite::Connection;
use std::sync::Arc;

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
        "DELETE FROM ev_patient WHERE patient = (SELECT id FROM patient WHERE text = 'Patient/b')",
    );
    assert_eq!(broken_at(dir.path()), (1, Problem::PatientIndex));
}

#[test]
fn the_append_only_triggers_refuse_edits() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 3);
    let conn = Connection::open(segment(dir.path(), 1)).unwrap();
    for sql in [
        "UPDATE ev SET x = x'00' WHERE seq = 2",
        "DELETE FROM ev WHERE seq = 3",
        "UPDATE dict SET text = 'x'",
        "DELETE FROM ev_patient",
        "DELETE FROM block",
        "UPDATE meta SET value = 0 WHERE key = 'first_seq'",
        "DELETE FROM patient",
        "UPDATE agent SET text = 'x'",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(verify(dir.path()).unwrap().entries, 3);
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
    let conn = Connection::open(segment(dir.path(), 1)).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON ev BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
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
    let head_file = dir.path().join(SEGMENTS_DIR).join(SEG_HEAD_FILE);
    let head = std::fs::read(&head_file).unwrap();
    let err = match AuditLog::open(dir.path()) {
        Ok(_) => panic!("a second log on one directory was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in use by another issho process"), "{err}");
    assert_eq!(std::fs::read(&head_file).unwrap(), head);
    for i in 10..20 {
        first.record(rec(i)).unwrap();
    }
    first.close().unwrap();
    // Released with the log: the directory opens again, and the chain is whole.
    drop(AuditLog::open(dir.path()).unwrap());
    assert_eq!(verify(dir.path()).unwrap().entries, 20);
}

/// Reads' records gather for a moment (1 ms) and are then committed without anyone waiting:
/// they become searchable by themselves, and the head file catches up with them (the head
/// names only synced blocks, so the chain verifies in full once it moved).
#[test]
fn reads_records_are_committed_and_anchored_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    for i in 0..40 {
        log.record(rec(i)).unwrap();
    }
    let began = std::time::Instant::now();
    let mut found = 0;
    while began.elapsed() < std::time::Duration::from_secs(10) {
        found = log.search(None, None, None, None, 100).unwrap().len();
        if found == 40 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(found, 40, "committed without a flush");
    // The head moves within ~100 ms of idleness; until then verify reports the tail as after
    // the anchored seq, never as missing.
    let began = std::time::Instant::now();
    loop {
        let report = verify(dir.path()).unwrap();
        assert_eq!(report.entries, 40);
        if report.anchored_seq == 40 || began.elapsed() > std::time::Duration::from_secs(10) {
            assert_eq!(report.anchored_seq, 40, "{report:?}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(log);
}
