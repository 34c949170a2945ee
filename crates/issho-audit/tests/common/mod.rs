//! What the audit trail's tests share: records, a log written in blocks of known size, and
//! raw access to a segment as an attacker with the files would have it.
#![allow(dead_code)]

use issho_audit::*;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// Segments of 64 KiB (a few hundred records), sealed after a day.
pub fn small(retention: Option<std::time::Duration>) -> AuditConfig {
    AuditConfig {
        segment_bytes: 64 * 1024,
        segment_age: std::time::Duration::from_secs(86_400),
        retention,
    }
}

pub fn rec(i: usize) -> AuditRecord {
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

/// Records one block: flushed together, so each block holds `BLOCK` entries.
pub const BLOCK: usize = 50;

pub fn append(log: &AuditLog, from: usize, n: usize) {
    for i in from..from + n {
        log.record(rec(i)).unwrap();
        if (i + 1) % BLOCK == 0 {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
}

pub fn write(dir: &Path, n: usize) {
    let log = AuditLog::open(dir).unwrap();
    append(&log, 0, n);
    log.close().unwrap();
}

pub fn segment(dir: &Path, n: u32) -> PathBuf {
    dir.join(SEGMENTS_DIR).join(format!("segment-{n:06}.db"))
}

/// Raw SQL on segment `n`, past the append-only triggers (which an attacker would drop).
pub fn tamper_in(dir: &Path, n: u32, sql: &str) {
    let conn = Connection::open(segment(dir, n)).unwrap();
    let triggers: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in triggers {
        conn.execute_batch(&format!("DROP TRIGGER {t}")).unwrap();
    }
    conn.execute_batch(sql).unwrap();
}

pub fn tamper(dir: &Path, sql: &str) {
    tamper_in(dir, 1, sql)
}

pub fn broken_at(dir: &Path) -> (i64, Problem) {
    match verify(dir) {
        Err(VerifyError::Broken { seq, problem }) => (seq, problem),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

/// The block (committed together, hashed together) of entry `seq`, as `verify` names it:
/// its first entry, and the problem naming its last (read from the segment: the writer
/// commits whatever is queued, so blocks are not of a fixed size).
pub fn block_of(dir: &Path, seq: i64) -> (i64, Problem) {
    let conn = Connection::open(segment(dir, 1)).unwrap();
    let last: i64 = conn
        .query_row("SELECT min(last) FROM block WHERE last >= ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap();
    let before: Option<i64> = conn
        .query_row("SELECT max(last) FROM block WHERE last < ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap();
    (before.unwrap_or(0) + 1, Problem::BlockAltered { last })
}
