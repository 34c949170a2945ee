//! The audit trail in segments: rotation by size and by age, searches across segments, the
//! chain verified across them and across an archive, retention with its ledger, the
//! conversion of a log of the first format, and the bytes a read costs.

mod common;

use common::*;
use issho_audit::*;
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

#[test]
fn segments_rotate_by_size_and_searches_and_verify_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 3000);
    let numbers = log.segment_numbers();
    assert!(numbers.len() >= 4, "{numbers:?}");
    // every sealed segment stays near the size asked for (it is sealed at the first commit
    // past it)
    for n in &numbers[..numbers.len() - 1] {
        let size = std::fs::metadata(segment(dir.path(), *n)).unwrap().len();
        assert!(size < 64 * 1024 + 32 * 1024, "segment {n}: {size} bytes");
    }
    // a person's log runs across segments, newest first, complete
    let mine = log.for_patient("Patient/p3", None, 10_000).unwrap();
    assert_eq!(mine.len(), 600);
    let ids: Vec<i64> = mine
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(ids[0], 2999);
    assert_eq!(*ids.last().unwrap(), 4);
    // a limit stops early; a time window finds entries in an older segment only
    assert_eq!(log.for_patient("Patient/p3", None, 7).unwrap().len(), 7);
    let t = |i: i64| 1_700_000_000_000_000 + i * 1000;
    let old = log
        .search(None, None, Some(t(10)), Some(t(20)), 100)
        .unwrap();
    let ids: Vec<&str> = old.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        (11..=20).rev().map(|i| i.to_string()).collect::<Vec<_>>()
    );
    let by_agent = log
        .search(Some("Practitioner/dr1"), None, None, None, 10_000)
        .unwrap();
    assert_eq!(by_agent.len(), 1000);
    // verified while open, then after a reopen that appends on
    let report = verify(dir.path()).unwrap();
    assert_eq!((report.entries, report.first_seq), (3000, 1));
    assert_eq!(report.segments as usize, numbers.len());
    assert!(report.to_string().contains("segment(s)"), "{report}");
    drop(log);
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 3000, 100);
    drop(log);
    assert_eq!(verify(dir.path()).unwrap().entries, 3100);
}

#[test]
fn segments_rotate_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        segment_age: Duration::ZERO,
        ..AuditConfig::default()
    };
    let log = AuditLog::open_with(dir.path(), cfg).unwrap();
    for b in 0..4 {
        append(&log, b * BLOCK, BLOCK);
    }
    // each commit found its segment due: at least one sealed per block written, and an
    // empty one being written
    let numbers = log.segment_numbers();
    assert!(numbers.len() >= 5, "{numbers:?}");
    drop(log);
    for n in &numbers[..numbers.len() - 1] {
        let conn = Connection::open(segment(dir.path(), *n)).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM ev", [], |r| r.get(0))
            .unwrap();
        assert!(rows > 0, "segment {n} was sealed empty");
    }
    // reopened at the start of an empty segment
    let log = AuditLog::open_with(dir.path(), cfg).unwrap();
    assert_eq!(log.for_patient("Patient/p0", None, 1000).unwrap().len(), 40);
    drop(log);
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.entries, 200);
    assert_eq!(report.segments as usize, numbers.len());
}

#[test]
fn a_missing_or_replaced_middle_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 2000);
    assert!(log.segment_numbers().len() >= 3);
    drop(log);
    let two = segment(dir.path(), 2);
    let saved = std::fs::read(&two).unwrap();
    std::fs::remove_file(&two).unwrap();
    match verify(dir.path()) {
        Err(VerifyError::Broken {
            problem: Problem::Segment(why),
            ..
        }) => assert!(why.contains("segment 2 is missing"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Tampered(_))
    ));
    // segment 3 put in the place of segment 2
    std::fs::copy(segment(dir.path(), 3), &two).unwrap();
    match verify(dir.path()) {
        Err(VerifyError::Broken {
            problem: Problem::Segment(why),
            ..
        }) => assert!(why.contains("segment 2"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(&two, saved).unwrap();
    assert_eq!(verify(dir.path()).unwrap().entries, 2000);
}

fn copy_sealed(dir: &Path, to: &Path, numbers: &[u32]) {
    std::fs::create_dir_all(to).unwrap();
    for n in numbers {
        let from = segment(dir, *n);
        std::fs::copy(&from, to.join(from.file_name().unwrap())).unwrap();
    }
}

#[test]
fn retention_removes_old_segments_and_an_archive_verifies_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 3000);
    let numbers = log.segment_numbers();
    drop(log);
    // the operator archives the sealed segments elsewhere
    let archive = tempfile::tempdir().unwrap();
    let sealed = &numbers[..numbers.len() - 1];
    copy_sealed(dir.path(), archive.path(), sealed);
    // a server keeping a year: the records (of 2023) are older, so every sealed segment goes
    let keep = small(Some(Duration::from_secs(365 * 86_400)));
    let log = AuditLog::open_with(dir.path(), keep).unwrap();
    assert_eq!(log.segment_numbers(), vec![*numbers.last().unwrap()]);
    for n in sealed {
        assert!(!segment(dir.path(), *n).exists());
    }
    append(&log, 3000, 10);
    drop(log);
    // what is left verifies from the ledger of removals on
    let report = verify(dir.path()).unwrap();
    assert!(report.first_seq > 1);
    // the person's log now holds what the remaining segment has
    let log = AuditLog::open_with(dir.path(), keep).unwrap();
    let left = log.for_patient("Patient/p0", None, 10_000).unwrap();
    assert_eq!(left[0]["id"], "3006"); // rec(3005)
    let oldest: i64 = left.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(oldest >= report.first_seq, "{oldest} {}", report.first_seq);
    drop(log);
    assert_eq!(report.last_seq, 3010);
    assert!(
        report.to_string().contains("removed by retention"),
        "{report}"
    );
    // with the archive: the whole chain from the first entry
    let whole = verify_with_archives(dir.path(), &[archive.path().to_path_buf()]).unwrap();
    assert_eq!((whole.first_seq, whole.entries), (1, 3010));
    // an edited archived segment is found
    let conn = Connection::open(archive.path().join("segment-000002.db")).unwrap();
    conn.execute_batch("DROP TRIGGER dict_no_update; UPDATE dict SET text = text || ' '")
        .unwrap();
    drop(conn);
    assert!(matches!(
        verify_with_archives(dir.path(), &[archive.path().to_path_buf()]),
        Err(VerifyError::Broken { .. })
    ));
    // an archive missing a segment is named
    std::fs::remove_file(archive.path().join("segment-000002.db")).unwrap();
    match verify_with_archives(dir.path(), &[archive.path().to_path_buf()]) {
        Err(VerifyError::Broken {
            problem: Problem::Segment(why),
            ..
        }) => assert!(why.contains("segment 2 is missing"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_edited_ledger_of_removals_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 2000);
    drop(log);
    let keep = small(Some(Duration::from_secs(86_400)));
    drop(AuditLog::open_with(dir.path(), keep).unwrap());
    verify(dir.path()).unwrap();
    let ledger = dir.path().join(SEGMENTS_DIR).join(REMOVED_FILE);
    let text = std::fs::read_to_string(&ledger).unwrap();
    // a removal not recorded: the oldest remaining segment's predecessors are unaccounted for
    std::fs::write(&ledger, "").unwrap();
    assert!(matches!(broken_at(dir.path()).1, Problem::Segment(_)));
    // a removal recorded with another end hash
    let last = text.lines().last().unwrap().to_string();
    let mut f: Vec<String> = last.split(' ').map(String::from).collect();
    f[3] = "00".repeat(32);
    std::fs::write(&ledger, format!("{}\n", f.join(" "))).unwrap();
    assert!(matches!(broken_at(dir.path()).1, Problem::Segment(_)));
    std::fs::write(&ledger, text).unwrap();
    verify(dir.path()).unwrap();
}

/// A log of the first format (one hash per entry, the record as JSON), as earlier versions
/// wrote it.
fn write_v1(dir: &Path, n: usize) -> Hash {
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    conn.execute_batch(
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, agent TEXT NOT NULL,
           patients TEXT NOT NULL, body BLOB NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL);
         CREATE TABLE audit_patient (patient TEXT NOT NULL, seq INTEGER NOT NULL,
           PRIMARY KEY (patient, seq)) WITHOUT ROWID;",
    )
    .unwrap();
    let mut prev = [0u8; 32];
    for i in 0..n {
        let r = rec(i);
        let seq = i as i64 + 1;
        let body = serde_json::to_vec(&r).unwrap();
        let patients = r.patients.join("\n");
        let hash = entry_hash(
            seq,
            r.time,
            &prev,
            r.agent.id.as_bytes(),
            patients.as_bytes(),
            &body,
        );
        conn.execute(
            "INSERT INTO audit VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                seq,
                r.time,
                r.agent.id,
                patients,
                body,
                &prev[..],
                &hash[..]
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO audit_patient VALUES (?1, ?2)",
            rusqlite::params![patients, seq],
        )
        .unwrap();
        prev = hash;
    }
    let hex: String = prev.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.join(HEAD_FILE), format!("{n} {hex}\n")).unwrap();
    prev
}

#[test]
fn a_log_of_the_first_format_is_converted_once() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(dir.path(), 120);
    // before any server opened it, verify reads the old format
    assert_eq!(verify(dir.path()).unwrap().entries, 120);
    let log = AuditLog::open(dir.path()).unwrap();
    assert!(!dir.path().join(DB_FILE).exists());
    assert!(dir.path().join("audit.v1.db").exists());
    // the old entries keep their numbers and are found as before
    let mine = log.for_patient("Patient/p2", None, 1000).unwrap();
    assert_eq!(mine.len(), 24);
    assert_eq!(mine[0]["id"], "118");
    append(&log, 120, 30);
    drop(log);
    assert_eq!(verify(dir.path()).unwrap().entries, 150);
    let conn = Connection::open(segment(dir.path(), 1)).unwrap();
    let note: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'converted_from'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(note.starts_with("audit.db (120 entries"), "{note}");
    // opened again: nothing converted twice
    drop(AuditLog::open(dir.path()).unwrap());
    assert_eq!(verify(dir.path()).unwrap().entries, 150);
}

#[test]
fn a_tampered_log_of_the_first_format_is_not_converted() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(dir.path(), 20);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute("DELETE FROM audit WHERE seq = 7", []).unwrap();
    drop(conn);
    match AuditLog::open(dir.path()) {
        Err(AuditError::Tampered(why)) => assert!(why.contains("seq 7"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a broken log was converted"),
    }
    assert!(dir.path().join(DB_FILE).exists());
    assert!(
        !dir.path()
            .join(SEGMENTS_DIR)
            .join("segment-000001.db")
            .exists()
    );
}

/// The goal for the compact trail: at most 100 bytes on disk per audited read. Reads
/// as the engine records them (a practitioner of one of a few institutions, one patient of
/// many, one resource with a UUID id and version), committed in blocks as a busy server's
/// writer does.
#[test]
fn a_read_costs_at_most_100_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let n = 20_000;
    for i in 0..n {
        let mut r = AuditRecord::new(
            Interaction::Read,
            &format!("Practitioner/{}", i % 40),
            "issho",
        );
        r.agent.role = Some("doctor".into());
        r.on_behalf_of = Some(format!("Organization/org-{:03}", i % 40 / 8));
        r.purpose_of_use = vec!["TREAT".into()];
        r.patients = vec![format!(
            "Patient/{:08x}-1d0f-4a57-9a31-2f4f0c1d2e3f",
            i % 2000
        )];
        r.entities = vec![format!(
            "Observation/{:08x}-7b3d-4c5e-8f9a-1b2c3d4e5f60/_history/1",
            i
        )];
        r.address = Some("192.0.2.7".into());
        log.record(r).unwrap();
        if i % 200 == 199 {
            log.flush().unwrap();
        }
    }
    log.close().unwrap();
    let bytes: u64 = std::fs::read_dir(dir.path().join(SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let per_read = bytes as f64 / n as f64;
    eprintln!("{per_read:.1} bytes per read ({bytes} bytes for {n} reads)");
    assert!(per_read <= 100.0, "{per_read:.1} bytes per read");
    assert_eq!(verify(dir.path()).unwrap().entries, n as u64);
}

/// Review of the segments: a sealed segment's time range is what searches by time skip it
/// by (and retention removes it by); one edited must not pass.
#[test]
fn an_edited_time_range_of_a_sealed_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with(dir.path(), small(None)).unwrap();
    append(&log, 0, 2000);
    drop(log);
    tamper_in(
        dir.path(),
        1,
        "UPDATE meta SET value = 0 WHERE key = 'max_time'",
    );
    match broken_at(dir.path()) {
        (_, Problem::Segment(why)) => assert!(why.contains("time range"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// Review of the segments: the old log put back in place of the segments passed `verify`
/// (and would have been converted again), hiding every entry since the conversion.
#[test]
fn the_old_log_put_back_in_place_of_the_segments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(dir.path(), 20);
    let log = AuditLog::open(dir.path()).unwrap();
    append(&log, 20, 30);
    drop(log);
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{f}", segment(dir.path(), 1).display()));
    }
    std::fs::rename(dir.path().join("audit.v1.db"), dir.path().join(DB_FILE)).unwrap();
    std::fs::rename(dir.path().join("audit.v1.head"), dir.path().join(HEAD_FILE)).unwrap();
    assert_eq!(
        broken_at(dir.path()),
        (1, Problem::Truncated { head_seq: 50 })
    );
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Tampered(_))
    ));
}

/// Review of the segments: the head moves lazily under load, but an idle writer catches it
/// up — it does not trail the chain until the next flush.
#[test]
fn an_idle_log_anchors_its_last_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    log.record(rec(0)).unwrap();
    log.flush().unwrap();
    // committed lazily (no flush waits for them)
    for i in 1..5 {
        log.record(rec(i)).unwrap();
    }
    let head = dir.path().join(SEGMENTS_DIR).join(SEG_HEAD_FILE);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&head).unwrap();
        if text.split_whitespace().nth(1) == Some("5") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the head stayed at {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(log);
}

/// Review of the segments: stopped after starting the next segment but before moving the
/// head there, with the head at the start of the segment before (filled within 100 ms), the
/// log must still open and verify; and a half-made segment file left by a crash is ignored.
#[test]
fn a_head_at_the_start_of_an_earlier_segment_and_leftovers_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        segment_age: Duration::ZERO,
        ..AuditConfig::default()
    };
    let log = AuditLog::open_with(dir.path(), cfg).unwrap();
    append(&log, 0, BLOCK);
    let numbers = log.segment_numbers();
    drop(log);
    assert!(numbers.len() >= 2, "{numbers:?}");
    // the head as it was before segment 1 was filled: its start
    std::fs::write(
        dir.path().join(SEGMENTS_DIR).join(SEG_HEAD_FILE),
        format!("1 0 {}\n", "00".repeat(32)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join(SEGMENTS_DIR).join("segment-000009.db.new"),
        b"half made",
    )
    .unwrap();
    let log = AuditLog::open_with(dir.path(), AuditConfig::default()).unwrap();
    append(&log, BLOCK, 10);
    drop(log);
    assert_eq!(verify(dir.path()).unwrap().entries, BLOCK as u64 + 10);
}
