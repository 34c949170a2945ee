//! The directory of sealed segments (`audit/directory.db`): searches by person or agent
//! open only the sealed segments that mention them, find the same events as a search of every
//! segment, and `verify` finds a directory that hides a segment from someone.

mod common;

use common::*;
use issho_audit::*;
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

fn directory(dir: &Path) -> Connection {
    Connection::open(dir.join(SEGMENTS_DIR).join("directory.db")).unwrap()
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn ids(events: &[serde_json::Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Every entry of `rec(i)` for `i < n` that `keep` accepts, newest first (the log's ids are
/// seqs: `i + 1`).
fn expected(n: usize, keep: impl Fn(usize) -> bool) -> Vec<i64> {
    (0..n)
        .rev()
        .filter(|i| keep(*i))
        .map(|i| i as i64 + 1)
        .collect()
}

#[test]
fn searches_by_person_and_agent_find_every_event_through_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    // A person seen only at the start: one segment mentions them.
    let mut first = rec(0);
    first.patients = vec!["Patient/rare".into()];
    log.record(first).unwrap();
    append(&log, 1, 2999);
    let numbers = log.segment_numbers();
    assert!(numbers.len() >= 4, "{numbers:?}");
    let d = directory(dir.path());
    // Every sealed segment is covered; the one being written is not.
    assert_eq!(
        count(&d, "SELECT count(*) FROM covered") as usize,
        numbers.len() - 1
    );
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM mention WHERE key = 'Patient/rare'"
        ),
        1
    );
    let p3 = log.for_patient("Patient/p3", None, 10_000).unwrap();
    assert_eq!(ids(&p3), expected(3000, |i| i % 5 == 3));
    let rare = log.for_patient("Patient/rare", None, 10).unwrap();
    assert_eq!(ids(&rare), vec![1]);
    assert!(
        log.for_patient("Patient/nobody", None, 10)
            .unwrap()
            .is_empty()
    );
    let dr1 = log
        .search(Some("Practitioner/dr1"), None, None, None, 10_000)
        .unwrap();
    assert_eq!(ids(&dr1), expected(3000, |i| i % 3 == 1));
    // Both: only segments mentioning both are read.
    let both = log
        .search(
            Some("Practitioner/dr1"),
            Some("Patient/p3"),
            None,
            None,
            10_000,
        )
        .unwrap();
    assert_eq!(ids(&both), expected(3000, |i| i % 3 == 1 && i % 5 == 3));
    // Surrounding spaces are ignored, as by the segments' own search.
    assert_eq!(
        log.for_patient(" Patient/rare ", None, 10).unwrap().len(),
        1
    );
    drop(log);
    assert!(verify(dir.path()).is_ok());
}

#[test]
fn a_directory_that_hides_a_segment_is_found_and_a_lost_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 3000);
    drop(log);
    // Someone removes a person's row for segment 1: searches go by the directory, so that
    // segment's events are missing from the person's log…
    let d = directory(dir.path());
    assert_eq!(
        d.execute(
            "DELETE FROM mention WHERE key = 'Patient/p3' AND seg = 1",
            []
        )
        .unwrap(),
        1
    );
    drop(d);
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    let p3 = log.for_patient("Patient/p3", None, 10_000).unwrap();
    assert!(p3.len() < 600, "{}", p3.len());
    drop(log);
    // …and verify says so.
    let Problem::Segment(why) = broken_at(dir.path()).1 else {
        panic!("a segment's problem expected")
    };
    assert!(
        why.contains("does not list Patient/p3 for segment 1"),
        "{why}"
    );
    // A row added for a person a segment does not mention is found too.
    let d = directory(dir.path());
    d.execute_batch(
        "INSERT INTO mention (kind, key, seg) VALUES (1, 'Patient/p3', 1), (1, 'Patient/x', 2)",
    )
    .unwrap();
    drop(d);
    assert!(matches!(broken_at(dir.path()).1, Problem::Segment(_)));
    // The directory is derived: removed, it is built again at open, complete.
    for suffix in ["", "-wal", "-shm"] {
        let p = dir
            .path()
            .join(SEGMENTS_DIR)
            .join(format!("directory.db{suffix}"));
        let _ = std::fs::remove_file(p);
    }
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    let p3 = log.for_patient("Patient/p3", None, 10_000).unwrap();
    assert_eq!(ids(&p3), expected(3000, |i| i % 5 == 3));
    drop(log);
    assert!(verify(dir.path()).is_ok());
}

#[test]
fn retention_removes_a_segments_rows_from_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 3000);
    let numbers = log.segment_numbers();
    drop(log);
    // The records are of 2023: a year's retention removes every sealed segment.
    let keep = small(Some(Duration::from_secs(365 * 86_400)));
    let log = AuditLog::open_with(dir.path(), keep).unwrap();
    assert_eq!(log.segment_numbers(), vec![*numbers.last().unwrap()]);
    let d = directory(dir.path());
    assert_eq!(count(&d, "SELECT count(*) FROM covered"), 0);
    assert_eq!(count(&d, "SELECT count(*) FROM mention"), 0);
    // What is written next is found.
    append(&log, 3000, 10);
    let left = log.for_patient("Patient/p0", None, 10_000).unwrap();
    assert_eq!(ids(&left)[0], 3006); // rec(3005)
    drop(log);
    assert!(verify(dir.path()).is_ok());
}

#[test]
fn a_directory_out_of_step_with_the_segments_is_mended_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 1000);
    let active = *log.segment_numbers().last().unwrap();
    drop(log);
    // A directory that says the segment being written is covered (and mentions nobody): its
    // people would be hidden once it is sealed. Verify names it…
    let d = directory(dir.path());
    d.execute("INSERT INTO covered (seg) VALUES (?1)", [active])
        .unwrap();
    d.execute("INSERT INTO covered (seg) VALUES (9999)", [])
        .unwrap();
    drop(d);
    let Problem::Segment(why) = broken_at(dir.path()).1 else {
        panic!("a segment's problem expected")
    };
    assert!(why.contains("which is being written"), "{why}");
    // …and the next opening drops the rows of segments that are not sealed and present.
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    let d = directory(dir.path());
    assert_eq!(
        count(
            &d,
            &format!("SELECT count(*) FROM covered WHERE seg IN ({active}, 9999)")
        ),
        0
    );
    // Sealed later, the segment is added with its people.
    append(&log, 1000, 2000);
    assert!(*log.segment_numbers().last().unwrap() > active);
    let p3 = log.for_patient("Patient/p3", None, 10_000).unwrap();
    assert_eq!(ids(&p3), expected(3000, |i| i % 5 == 3));
    drop(log);
    assert!(verify(dir.path()).is_ok());
}

#[test]
fn an_unreadable_directory_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 3000);
    drop(log);
    let path = dir.path().join(SEGMENTS_DIR).join("directory.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::write(&path, b"not a database, not a database, not a database").unwrap();
    // Searches read every segment and find everything.
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    let p3 = log.for_patient("Patient/p3", None, 10_000).unwrap();
    assert_eq!(ids(&p3), expected(3000, |i| i % 5 == 3));
    append(&log, 3000, 10);
    drop(log);
    // Verify says the directory cannot be read.
    assert!(verify(dir.path()).is_err());
}
