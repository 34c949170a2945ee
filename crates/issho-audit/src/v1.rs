//! The first format of the SQLite audit trail (`issho-audit-v1`: `audit.db` and `audit.head`
//! in the data directory, one hash per entry, the record as JSON): checked and read once, when
//! [`crate::AuditLog::open`] converts it into segments ([`convert`]).

use crate::chain::{self, DB_FILE};
use crate::record::AuditRecord;
use crate::walk::*;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// The bytes of a TEXT or BLOB column; None for any other type.
fn bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(b.to_vec()),
        _ => None,
    }
}

/// Recompute the chain of the audit log in `dir` from its first entry, check the per-patient
/// index against it, and compare its end with the head file. Reads a consistent snapshot, so
/// it may run while the server writes.
pub(crate) fn verify_v1(dir: &Path) -> Result<VerifyReport, VerifyError> {
    // The head first: the writer moves it only after committing, so the snapshot read next
    // is never behind it.
    let head = chain::read_head(dir).map_err(VerifyError::Anchor)?;
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return match head {
            None => Err(unreadable(format!("no audit log in {}", dir.display()))),
            Some(h) if h.seq > 0 => Err(broken(1, Problem::Truncated { head_seq: h.seq })),
            Some(h) => Ok(VerifyReport {
                anchored_seq: h.seq,
                ..VerifyReport::empty()
            }),
        };
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(unreadable)?;
    conn.execute_batch("BEGIN").map_err(unreadable)?;
    let report = {
        let mut entries = conn
            .prepare("SELECT seq, time, agent, patients, body, prev, hash FROM audit ORDER BY seq")
            .map_err(unreadable)?;
        let mut index = conn
            .prepare("SELECT seq, patient FROM audit_patient ORDER BY seq, patient")
            .map_err(unreadable)?;
        let by_hash = conn
            .prepare("SELECT seq FROM audit WHERE hash = ?1 ORDER BY seq LIMIT 1")
            .map_err(unreadable)?;
        let mut entries = Rows {
            rows: entries.query([]).map_err(unreadable)?,
            by_hash: Some(by_hash),
        };
        let mut index = Rows {
            rows: index.query([]).map_err(unreadable)?,
            by_hash: None,
        };
        walk(&mut entries, &mut index, head)?
    };
    let _ = conn.execute_batch("COMMIT");
    Ok(report)
}

/// A query's rows as a [`Source`].
struct Rows<'s> {
    rows: rusqlite::Rows<'s>,
    by_hash: Option<rusqlite::Statement<'s>>,
}

impl Source for Rows<'_> {
    fn next_entry(&mut self) -> Result<Option<StoredEntry>, VerifyError> {
        let Some(r) = self.rows.next().map_err(unreadable)? else {
            return Ok(None);
        };
        let col = |i| r.get_ref(i).map(bytes).map_err(unreadable);
        Ok(Some(StoredEntry {
            seq: r.get(0).map_err(unreadable)?,
            time: r.get::<_, i64>(1).ok(),
            agent: col(2)?,
            patients: col(3)?,
            body: col(4)?,
            prev: col(5)?,
            hash: col(6)?,
        }))
    }

    fn next_patient(&mut self) -> Result<Option<(i64, Vec<u8>)>, VerifyError> {
        let Some(r) = self.rows.next().map_err(unreadable)? else {
            return Ok(None);
        };
        let seq: i64 = r.get(0).map_err(unreadable)?;
        let patient = bytes(r.get_ref(1).map_err(unreadable)?)
            .ok_or_else(|| broken(seq, Problem::PatientIndex))?;
        Ok(Some((seq, patient)))
    }

    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, VerifyError> {
        let Some(stmt) = self.by_hash.as_mut() else {
            return Ok(None);
        };
        stmt.query_row([hash], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(unreadable(e)),
            })
    }
}

/// Every record of the v1 log in `dir`, in seq order, handed to `f` in batches of `batch`.
pub(crate) fn read_records(
    dir: &Path,
    batch: usize,
    f: &mut dyn FnMut(&[AuditRecord]) -> Result<(), String>,
) -> Result<u64, String> {
    let conn = Connection::open_with_flags(dir.join(DB_FILE), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare("SELECT seq, body FROM audit ORDER BY seq")
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let (mut buf, mut n) = (Vec::with_capacity(batch), 0u64);
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        let seq: i64 = r.get(0).map_err(|e| e.to_string())?;
        let body: Vec<u8> = r.get(1).map_err(|e| e.to_string())?;
        if seq != n as i64 + 1 {
            return Err(format!("entry {} is missing", n + 1));
        }
        buf.push(serde_json::from_slice(&body).map_err(|e| format!("entry {seq}: {e}"))?);
        n += 1;
        if buf.len() == batch {
            f(&buf)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        f(&buf)?;
    }
    Ok(n)
}
