//! [`AuditLog`]: the append-only, hash-chained log in `audit.db`, written by one background
//! thread.
//!
//! Tables:
//! - `audit(seq, time, agent, patients, body, prev, hash)`: one row per event; `body` is the
//!   compact record (the [`AuditRecord`] as JSON) exactly as hashed, rendered as an AuditEvent
//!   when read (writing the full AuditEvent for every read of a busy server cost ~100 µs per
//!   access; the record costs a few); `patients` the patients concerned (sorted,
//!   one per line); `prev`/`hash` the chain (see [`crate::chain`]). Index `(agent, seq)`.
//! - `audit_patient(patient, seq)`: one row per patient concerned, the `(patient, seq)` index
//!   behind a person's own access log (an event may concern several patients).
//!
//! Triggers refuse `UPDATE` and `DELETE` on both tables. They stop mistakes, not an attacker
//! with the file: the chain and the head file are what detect tampering ([`crate::verify`]).

use crate::AuditError;
use crate::chain::{self, DB_FILE, Hash, Head, ZERO};
use crate::event::stored_event;
use crate::queue::{Queue, chain_on};
use crate::record::AuditRecord;
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  agent TEXT NOT NULL,
  patients TEXT NOT NULL,
  body BLOB NOT NULL,
  prev BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_agent ON audit(agent, seq);
CREATE TABLE IF NOT EXISTS audit_patient (
  patient TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (patient, seq)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_patient_no_update BEFORE UPDATE ON audit_patient
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_patient_no_delete BEFORE DELETE ON audit_patient
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

impl From<rusqlite::Error> for AuditError {
    fn from(e: rusqlite::Error) -> Self {
        AuditError::Io(e.to_string())
    }
}

/// The audit trail of one data directory (`audit.db` and `audit.head` in it).
///
/// Share it behind an `Arc`: [`AuditLog::record`] only queues the record for the writer
/// thread, which commits batches (WAL, `synchronous=FULL`) and keeps the hash chain.
/// Dropping the log writes what was queued.
pub struct AuditLog {
    dir: PathBuf,
    queue: Queue,
    reader: Mutex<Connection>,
    /// Held for the log's lifetime: one writer per chain (a second process appending, or
    /// merely re-anchoring the head, would fork or rewind it).
    _lock: std::fs::File,
}

/// The lock file beside the log; an exclusive lock on it is held while a log is open.
pub const LOCK_FILE: &str = "audit.lock";

/// Take the exclusive lock of the audit trail in `dir`, or say that another process holds it.
fn lock_dir(dir: &Path) -> Result<std::fs::File, AuditError> {
    let io = |e: std::io::Error| AuditError::Io(format!("{}: {e}", dir.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Io(format!(
            "the data directory {} is in use by another issho process (stop it first)",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is synced at every commit, so a flushed record survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// The last entry: (seq, hash), (0, zeros) when the log is empty.
fn last_entry(conn: &Connection) -> Result<(i64, Hash), String> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e.to_string()),
        })?;
    match row {
        None => Ok((0, ZERO)),
        Some((seq, h)) => {
            let hash: Hash = h
                .try_into()
                .map_err(|_| format!("entry {seq} has a malformed hash"))?;
            Ok((seq, hash))
        }
    }
}

/// Does the database agree with the head file? The full check is [`crate::verify`]; this
/// one costs a lookup, for opening.
fn check_anchor(conn: &Connection, head: Option<Head>, last: i64) -> Result<(), String> {
    let Some(head) = head else {
        return if last == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} is missing while {DB_FILE} holds {last} entries",
                chain::HEAD_FILE
            ))
        };
    };
    if head.seq > last {
        return Err(format!(
            "{DB_FILE} ends at entry {last} but {} records entry {}: entries were removed",
            chain::HEAD_FILE,
            head.seq
        ));
    }
    let stored: Option<Vec<u8>> = if head.seq == 0 {
        Some(ZERO.to_vec())
    } else {
        conn.query_row("SELECT hash FROM audit WHERE seq = ?1", [head.seq], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e.to_string()),
        })?
    };
    if stored.as_deref() != Some(&head.hash[..]) {
        return Err(format!(
            "entry {} is not the one recorded in {}",
            head.seq,
            chain::HEAD_FILE
        ));
    }
    Ok(())
}

impl AuditLog {
    /// Open (creating if needed) the audit log in `dir`. Refuses a log whose database
    /// disagrees with its head file (entries removed from the end, or rewritten):
    /// appending to it would bury the evidence. Holds an exclusive lock on `audit.lock` until
    /// dropped: a second opening (another process on the same data directory) is refused
    /// before it reads or writes anything.
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| AuditError::Io(format!("{}: {e}", dir.display())))?;
        // Before anything is read or written: a refused process must leave the chain alone.
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let head = chain::read_head(dir).map_err(AuditError::Tampered)?;
        let conn = open_conn(&path)?;
        conn.execute_batch(SCHEMA)?;
        let (last, hash) = last_entry(&conn).map_err(AuditError::Tampered)?;
        check_anchor(&conn, head, last).map_err(AuditError::Tampered)?;
        // A new log gets its anchor at once (so that a missing head file always means
        // tampering); entries committed before a crash interrupted the head update get theirs.
        let now = Head { seq: last, hash };
        if head != Some(now) {
            chain::write_head(dir, now).map_err(AuditError::Io)?;
        }
        let reader = open_conn(&path)?;
        reader.pragma_update(None, "query_only", true)?;
        let queue = {
            let (dir, mut conn) = (dir.to_path_buf(), conn);
            Queue::start(Duration::ZERO, move |records| {
                append(&mut conn, &dir, records)
            })?
        };
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            queue,
            reader: Mutex::new(reader),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queue one record; it is durable after the writer's next commit ([`AuditLog::flush`]
    /// waits for that). Fails — and logs at error level — once the writer has failed: the
    /// caller must then refuse the access it was about to record.
    pub fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        self.queue.record(rec)
    }

    /// Wait until every record queued so far is committed (and anchored in the head file).
    pub fn flush(&self) -> Result<(), AuditError> {
        self.queue.flush()
    }

    /// Ok while the writer works; the failure otherwise (for health checks).
    pub fn health(&self) -> Result<(), AuditError> {
        self.queue.health()
    }

    /// Write what is queued, stop the writer and report whether everything was stored.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.queue.stop()
    }

    /// A person's own access log: the events concerning `patient` (`Patient/id`), newest
    /// first, recorded at or after `since` (microseconds since the epoch), at most `limit`.
    pub fn for_patient(
        &self,
        patient: &str,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError> {
        self.search(None, Some(patient), since, None, limit)
    }

    /// Events by `agent` (the [`crate::Agent::id`]) and/or concerning `patient`, recorded in
    /// `[since, until)` (microseconds since the epoch), newest first, at most `limit`.
    pub fn search(
        &self,
        agent: Option<&str>,
        patient: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError> {
        let mut sql = String::from("SELECT a.seq, a.body FROM ");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let order;
        if let Some(p) = patient {
            sql.push_str("audit_patient p JOIN audit a ON a.seq = p.seq WHERE p.patient = ?");
            args.push(p.trim().to_string().into());
            order = "p.seq";
        } else {
            sql.push_str("audit a WHERE 1");
            order = "a.seq";
        }
        if let Some(a) = agent {
            sql.push_str(" AND a.agent = ?");
            args.push(a.trim().to_string().into());
        }
        if let Some(t) = since {
            sql.push_str(" AND a.time >= ?");
            args.push(t.into());
        }
        if let Some(t) = until {
            sql.push_str(" AND a.time < ?");
            args.push(t.into());
        }
        sql.push_str(&format!(" ORDER BY {order} DESC LIMIT ?"));
        args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            // Entries hold the compact record; the AuditEvent is rendered when read.
            out.push(stored_event(seq, &body)?);
        }
        Ok(out)
    }
}

/// Append `records` in one transaction, continuing the chain from the last stored entry
/// (read inside the transaction, so a second writer on the same file cannot fork it), then
/// move the anchor.
fn append(conn: &mut Connection, dir: &Path, records: &[AuditRecord]) -> Result<(), String> {
    let db = |e: rusqlite::Error| e.to_string();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let (seq, prev) = last_entry(&tx)?;
    let entries = chain_on(seq, prev, records)?;
    {
        let mut entry = tx
            .prepare_cached(
                "INSERT INTO audit (seq, time, agent, patients, body, prev, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db)?;
        let mut by_patient = tx
            .prepare_cached("INSERT INTO audit_patient (patient, seq) VALUES (?1, ?2)")
            .map_err(db)?;
        for e in &entries {
            entry
                .execute(params![
                    e.seq,
                    e.time,
                    e.agent,
                    e.joined,
                    e.body,
                    &e.prev[..],
                    &e.hash[..]
                ])
                .map_err(db)?;
            for p in &e.patients {
                by_patient.execute(params![p, e.seq]).map_err(db)?;
            }
        }
    }
    tx.commit().map_err(db)?;
    match entries.last() {
        Some(e) => chain::write_head(
            dir,
            Head {
                seq: e.seq,
                hash: e.hash,
            },
        ),
        None => Ok(()),
    }
}

impl crate::AuditTrail for AuditLog {
    fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        AuditLog::record(self, rec)
    }
    fn flush(&self) -> Result<(), AuditError> {
        AuditLog::flush(self)
    }
    fn search(
        &self,
        agent: Option<&str>,
        patient: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError> {
        AuditLog::search(self, agent, patient, since, until, limit)
    }
}
