//! Every kind of tampering with the audit trail's files — made here with raw SQL and file
//! operations, as an attacker with the files would — is found by `verify`, and the log refuses
//! to open where appending would bury the evidence.

mod common;

use common::*;
use issho_audit::*;
use rusqlite::Connection;

#[test]
fn an_edited_text_is_found_in_its_block() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    // the resource read by entry 417, as kept in the segment's dictionary
    tamper(
        dir.path(),
        "UPDATE dict SET text = 'Observation/o999' WHERE text = 'Observation/o416'",
    );
    let (first, problem) = block_of(dir.path(), 417);
    assert_eq!(broken_at(dir.path()), (first, problem.clone()));
    let Problem::BlockAltered { last } = problem else {
        unreachable!()
    };
    assert!(first <= 417 && 417 <= last);
    let msg = verify(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("seq {first}:")) && msg.contains(&format!("up to seq {last}")),
        "{msg}"
    );
}

#[test]
fn an_edited_row_is_found_in_its_block() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 200);
    // entry 120's outcome made a failure, its time moved, its agent exchanged
    for sql in [
        "UPDATE ev SET k = k | 256 WHERE seq = 120",
        "UPDATE ev SET t = t + 1 WHERE seq = 120",
        "UPDATE ev SET agent = (SELECT id FROM agent WHERE text = 'Practitioner/dr0') \
           WHERE seq = 120 AND agent <> (SELECT id FROM agent WHERE text = 'Practitioner/dr0')",
    ] {
        let copy = tempfile::tempdir().unwrap();
        write(copy.path(), 200);
        tamper(copy.path(), sql);
        assert_eq!(broken_at(copy.path()), block_of(copy.path(), 120), "{sql}");
    }
    assert_eq!(verify(dir.path()).unwrap().entries, 200);
}

#[test]
fn a_removed_middle_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    tamper(dir.path(), "DELETE FROM ev WHERE seq = 500");
    assert_eq!(broken_at(dir.path()), (500, Problem::Missing));
}

#[test]
fn swapped_and_reordered_entries_are_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    // two entries' contents exchanged
    tamper(
        dir.path(),
        "CREATE TEMP TABLE t AS SELECT seq, x FROM ev WHERE seq IN (20, 30);
         UPDATE ev SET x = (SELECT x FROM t WHERE t.seq = 50 - ev.seq) WHERE seq IN (20, 30);",
    );
    assert_eq!(broken_at(dir.path()), block_of(dir.path(), 20));
    // whole entries moved (every column but seq, and their index rows with them)
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    tamper(
        dir.path(),
        "UPDATE ev SET seq = -7 WHERE seq = 7;
         UPDATE ev SET seq = 7 WHERE seq = 8;
         UPDATE ev SET seq = 8 WHERE seq = -7;
         UPDATE ev_patient SET seq = -7 WHERE seq = 7;
         UPDATE ev_patient SET seq = 7 WHERE seq = 8;
         UPDATE ev_patient SET seq = 8 WHERE seq = -7;",
    );
    assert_eq!(broken_at(dir.path()), block_of(dir.path(), 7));
}

#[test]
fn a_dropped_patient_index_row_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    // hiding an access from the person's own log
    tamper(dir.path(), "DELETE FROM ev_patient WHERE seq = 42");
    assert_eq!(broken_at(dir.path()), (42, Problem::PatientIndex));
    // or showing it to another person
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    tamper(
        dir.path(),
        "INSERT INTO ev_patient (patient, seq) \
           SELECT id, 42 FROM patient WHERE text = 'Patient/p0' \
           AND NOT EXISTS (SELECT 1 FROM ev_patient e WHERE e.seq = 42 AND e.patient = patient.id)",
    );
    assert_eq!(broken_at(dir.path()), (42, Problem::PatientIndex));
}

#[test]
fn an_entry_slipped_in_behind_the_writer_is_unchained() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10);
    tamper(
        dir.path(),
        "INSERT INTO ev (seq, t, k, agent, ctx, x) SELECT 11, t, k, agent, ctx, x FROM ev WHERE seq = 10",
    );
    assert_eq!(broken_at(dir.path()), (11, Problem::Unchained));
}

#[test]
fn a_cut_off_tail_is_found_through_the_head_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1000);
    // the last blocks removed, as a whole: what is left is a consistent, shorter chain
    let (first, _) = block_of(dir.path(), 950);
    let end = first - 1;
    tamper(
        dir.path(),
        &format!(
            "DELETE FROM ev WHERE seq > {end}; DELETE FROM ev_patient WHERE seq > {end};
             DELETE FROM block WHERE last > {end}"
        ),
    );
    assert_eq!(
        broken_at(dir.path()),
        (end + 1, Problem::Truncated { head_seq: 1000 })
    );
    // and the log refuses to open: appending would overwrite the evidence
    match AuditLog::open(dir.path()) {
        Err(AuditError::Tampered(why)) => assert!(why.contains(&end.to_string()), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a truncated log was opened"),
    }
    // removing the head file as well does not help
    std::fs::remove_file(dir.path().join(SEGMENTS_DIR).join(SEG_HEAD_FILE)).unwrap();
    assert!(matches!(verify(dir.path()), Err(VerifyError::Anchor(_))));
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Tampered(_))
    ));
}

#[test]
fn removed_segments_are_found_through_the_head_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 5);
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{f}", segment(dir.path(), 1).display()));
    }
    assert_eq!(
        broken_at(dir.path()),
        (1, Problem::Truncated { head_seq: 5 })
    );
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Tampered(_))
    ));
}

#[test]
fn a_replaced_segment_differs_from_the_head() {
    // another log, consistent in itself, put in place of the real one
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 60);
    let other = tempfile::tempdir().unwrap();
    {
        let log = AuditLog::open(other.path()).unwrap();
        let mut r = rec(0);
        r.agent.id = "someone".into();
        log.record(r).unwrap();
        append(&log, 1, 59);
        log.close().unwrap();
    }
    std::fs::copy(segment(other.path(), 1), segment(dir.path(), 1)).unwrap();
    for f in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{f}", segment(dir.path(), 1).display()));
    }
    assert_eq!(broken_at(dir.path()), (60, Problem::HeadMismatch));
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Tampered(_))
    ));
}

#[test]
fn a_log_edited_while_closed_is_still_opened_but_verify_names_it() {
    // Opening checks the anchor only (a lookup); the full check is `issho audit verify`.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    tamper(dir.path(), "UPDATE ev SET k = k | 256 WHERE seq = 3");
    let log = AuditLog::open(dir.path()).unwrap();
    append(&log, 100, 10);
    drop(log);
    assert_eq!(broken_at(dir.path()), block_of(dir.path(), 3));
    let conn = Connection::open(segment(dir.path(), 1)).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM ev", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 110);
}

/// Review of the segments (2026-12-05): an entry moved to another agent's key, with a context
/// naming its own agent so that the record itself reads the same, vanished from searches by
/// agent without `verify` noticing.
#[test]
fn an_entry_moved_to_another_agents_key_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    // entry 42 is rec(41), by Practitioner/dr2
    tamper(
        dir.path(),
        "INSERT INTO dict (text) SELECT replace(text, '\"id\":null', '\"id\":\"Practitioner/dr2\"') \
           FROM dict WHERE id = (SELECT ctx FROM ev WHERE seq = 42);
         UPDATE ev SET ctx = last_insert_rowid(),
           agent = (SELECT id FROM agent WHERE text = 'Practitioner/dr0') WHERE seq = 42;",
    );
    assert_eq!(broken_at(dir.path()), (42, Problem::AgentIndex));
}

/// Review of the segments: a second row for a patient's key, with index rows pointing at it,
/// hid those entries from the person's own log.
#[test]
fn a_key_table_naming_a_patient_twice_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    tamper(
        dir.path(),
        "CREATE TABLE p2 AS SELECT * FROM patient; DROP TABLE patient;
         CREATE TABLE patient (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
         INSERT INTO patient SELECT * FROM p2; DROP TABLE p2;
         INSERT INTO patient (text) VALUES ('Patient/p1');",
    );
    match broken_at(dir.path()) {
        (_, Problem::Segment(why)) => assert!(why.contains("Patient/p1 twice"), "{why}"),
        other => panic!("{other:?}"),
    }
}
