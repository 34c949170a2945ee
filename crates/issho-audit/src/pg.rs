//! [`PgAuditLog`]: the audit trail in PostgreSQL, beside a PostgreSQL store — one chain for
//! every issho process that serves the database.
//!
//! Tables (in the store's schema): `audit` and `audit_patient` as in the SQLite log, and
//! `audit_head (one = 1, seq, hash)`: the chain's end. Each process queues records for its
//! writer thread (as the SQLite log does); a batch is appended in one transaction that first
//! locks the `audit_head` row, so processes append one after the other and every batch
//! continues the chain where the last one, from whatever process, ended. Triggers refuse
//! `UPDATE`, `DELETE` and `TRUNCATE` on the three tables but the head's own move.
//!
//! The anchor is `audit_head`, in the same database as the entries: removing the last entries
//! is detected unless `audit_head` is rewritten too (by someone who can drop the triggers).
//! The head printed by `issho audit verify`, kept elsewhere, detects that as well.
//!
//! A batch of reads' records (reads, searches, histories) gathers for [`COMMIT_WINDOW`]
//! before it commits — at once when a flush waits or any other record (a write, an operation,
//! a sign-in) arrives: at most ~20 commits a second under read load. Each commit waits for the WAL to
//! reach the disk, and on the machine of BENCHMARKS.md every such flush stalled the other
//! backends' reads for tens to hundreds of milliseconds (pgbench alone shows it): committing
//! whatever was queued, hundreds of times a second under read load, made the read p99 tens of
//! milliseconds. The price: a crash may lose the records of the reads of the last window (a
//! read is answered before its record is durable, on either log; a write's record is
//! committed as soon as the writer takes it, as before).

use crate::AuditError;
use crate::chain::{Hash, Head, ZERO};
use crate::event::stored_event;
use crate::queue::{Queue, chain_on};
use crate::record::AuditRecord;
use crate::walk::*;
use postgres::{Client, NoTls};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How long a batch of audit records gathers before it commits.
pub const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit (
  seq bigint PRIMARY KEY,
  time bigint NOT NULL,
  agent text COLLATE "C" NOT NULL,
  patients text COLLATE "C" NOT NULL,
  body bytea NOT NULL,
  prev bytea NOT NULL,
  hash bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_agent ON audit (agent, seq);
CREATE INDEX IF NOT EXISTS audit_hash ON audit (hash);
CREATE TABLE IF NOT EXISTS audit_patient (
  patient text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  PRIMARY KEY (patient, seq)
);
CREATE INDEX IF NOT EXISTS audit_patient_seq ON audit_patient (seq, patient);
CREATE TABLE IF NOT EXISTS audit_head (
  one int PRIMARY KEY CHECK (one = 1),
  seq bigint NOT NULL,
  hash bytea NOT NULL
);
INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
  ON CONFLICT (one) DO NOTHING;
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'audit_head' AND TG_OP = 'UPDATE' AND NEW.seq > OLD.seq THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'the audit log is append-only';
END $$;
CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_patient_no_change BEFORE UPDATE OR DELETE ON audit_patient
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_patient_no_truncate BEFORE TRUNCATE ON audit_patient
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"#;

fn db(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    }
}

fn connect(url: &str) -> Result<Client, AuditError> {
    Client::connect(url, NoTls)
        .map_err(|e| AuditError::Io(format!("cannot connect to PostgreSQL: {}", db(e))))
}

/// The audit trail of a PostgreSQL database (and schema): see the module's text.
pub struct PgAuditLog {
    queue: Queue,
    reader: Mutex<Client>,
}

impl PgAuditLog {
    /// Open (creating its tables if needed) the audit trail at `url`; refuses a trail whose
    /// entries end before its anchor or disagree with it.
    pub fn open(url: &str) -> Result<PgAuditLog, AuditError> {
        let mut c = connect(url)?;
        // One process creates the tables; the others wait and find them.
        let mut tx = c.transaction().map_err(|e| AuditError::Io(db(e)))?;
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext('issho:audit'))",
        )
        .map_err(|e| AuditError::Io(db(e)))?;
        tx.batch_execute(SCHEMA)
            .map_err(|e| AuditError::Io(db(e)))?;
        tx.commit().map_err(|e| AuditError::Io(db(e)))?;
        check_anchor(&mut c).map_err(AuditError::Tampered)?;
        let mut writer = c;
        // Each batch moves the anchor (`audit_head`) in its own transaction: nothing lazy.
        let queue = Queue::start(COMMIT_WINDOW, move |records, _| {
            if records.is_empty() {
                return Ok(());
            }
            append(&mut writer, records)
        })?;
        Ok(PgAuditLog {
            queue,
            reader: Mutex::new(connect(url)?),
        })
    }

    /// Ok while the writer works; the failure otherwise (for health checks).
    pub fn health(&self) -> Result<(), AuditError> {
        self.queue.health()
    }

    /// Write what is queued, stop the writer and report whether everything was stored.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.queue.stop()
    }
}

/// What the engine records to (the queue, and the search of [`crate::AuditLog::search`]).
impl crate::AuditTrail for PgAuditLog {
    fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        self.queue.record(rec)
    }
    fn flush(&self) -> Result<(), AuditError> {
        self.queue.flush()
    }
    /// Events by `agent` and/or concerning `patient`, recorded in `[since, until)`, newest
    /// first, at most `limit` (see [`crate::AuditLog::search`]).
    fn search(
        &self,
        agent: Option<&str>,
        patient: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError> {
        let (from, order) = match patient {
            Some(_) => (
                "audit_patient p JOIN audit a ON a.seq = p.seq WHERE p.patient = $1",
                "p.seq",
            ),
            None => ("audit a WHERE $1::text IS NULL", "a.seq"),
        };
        let sql = format!(
            "SELECT a.seq, a.body FROM {from} AND ($2::text IS NULL OR a.agent = $2) \
             AND ($3::bigint IS NULL OR a.time >= $3) AND ($4::bigint IS NULL OR a.time < $4) \
             ORDER BY {order} DESC LIMIT $5"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (patient, agent) = (patient.map(str::trim), agent.map(str::trim));
        let mut c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let rows = c
            .query(&sql, &[&patient, &agent, &since, &until, &limit])
            .map_err(|e| AuditError::Io(db(e)))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(stored_event(r.get(0), r.get::<_, &[u8]>(1))?);
        }
        Ok(out)
    }
}

fn head_of(c: &mut impl postgres::GenericClient, lock: bool) -> Result<Head, String> {
    let sql = if lock {
        "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE"
    } else {
        "SELECT seq, hash FROM audit_head WHERE one = 1"
    };
    let row = c
        .query_opt(sql, &[])
        .map_err(db)?
        .ok_or("audit_head has no row: the anchor was removed")?;
    let seq: i64 = row.get(0);
    let hash: Hash = row
        .get::<_, Vec<u8>>(1)
        .try_into()
        .map_err(|_| "audit_head holds a malformed hash".to_string())?;
    Ok(Head { seq, hash })
}

/// Does the chain's last entry agree with the anchor? (The full check is [`verify_pg`].)
fn check_anchor(c: &mut Client) -> Result<(), String> {
    let head = head_of(c, false)?;
    let last: Option<(i64, Vec<u8>)> = c
        .query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
        .map_err(db)?
        .map(|r| (r.get(0), r.get(1)));
    let (seq, hash) = last.unwrap_or((0, ZERO.to_vec()));
    if seq < head.seq {
        return Err(format!(
            "the audit log ends at entry {seq} but audit_head records entry {}: entries were \
             removed",
            head.seq
        ));
    }
    if seq > head.seq || hash[..] != head.hash[..] {
        return Err(format!(
            "the audit log's last entry {seq} is not the one audit_head records (entry {})",
            head.seq
        ));
    }
    Ok(())
}

/// Append `records` after the chain's end, in one transaction holding the anchor's row.
fn append(c: &mut Client, records: &[AuditRecord]) -> Result<(), String> {
    let mut tx = c.transaction().map_err(db)?;
    let head = head_of(&mut tx, true)?;
    let entries = chain_on(head.seq, head.hash, records)?;
    let Some(last) = entries.last() else {
        return Ok(());
    };
    let mut cols = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut p_patient, mut p_seq) = (Vec::new(), Vec::new());
    for e in &entries {
        cols.0.push(e.seq);
        cols.1.push(e.time);
        cols.2.push(e.agent.as_str());
        cols.3.push(e.joined.as_str());
        cols.4.push(e.body.as_slice());
        cols.5.push(&e.prev[..]);
        cols.6.push(&e.hash[..]);
        for p in &e.patients {
            p_patient.push(p.as_str());
            p_seq.push(e.seq);
        }
    }
    tx.execute(
        "INSERT INTO audit (seq, time, agent, patients, body, prev, hash) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], \
         $6::bytea[], $7::bytea[])",
        &[
            &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6,
        ],
    )
    .map_err(db)?;
    if !p_seq.is_empty() {
        tx.execute(
            "INSERT INTO audit_patient (patient, seq) SELECT * FROM unnest($1::text[], $2::bigint[])",
            &[&p_patient, &p_seq],
        )
        .map_err(db)?;
    }
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE one = 1",
        &[&last.seq, &&last.hash[..]],
    )
    .map_err(db)?;
    tx.commit().map_err(db)
}

/// Rows read from a portal page by page (a long log is never held in memory at once), in the
/// verifying transaction's snapshot.
struct Side<'s, 'a> {
    tx: &'s RefCell<postgres::Transaction<'a>>,
    portal: postgres::Portal,
    buf: VecDeque<postgres::Row>,
}

/// Rows per page.
const PAGE: i32 = 5000;

impl Side<'_, '_> {
    fn next(&mut self) -> Result<Option<postgres::Row>, VerifyError> {
        if self.buf.is_empty() {
            self.buf = self
                .tx
                .borrow_mut()
                .query_portal(&self.portal, PAGE)
                .map_err(|e| unreadable(db(e)))?
                .into();
        }
        Ok(self.buf.pop_front())
    }
}

fn text(r: &postgres::Row, i: usize) -> Option<Vec<u8>> {
    r.try_get::<_, String>(i).ok().map(String::into_bytes)
}

impl Source for Side<'_, '_> {
    fn next_entry(&mut self) -> Result<Option<StoredEntry>, VerifyError> {
        let Some(r) = self.next()? else {
            return Ok(None);
        };
        Ok(Some(StoredEntry {
            seq: r.get(0),
            time: r.try_get(1).ok(),
            agent: text(&r, 2),
            patients: text(&r, 3),
            body: r.try_get(4).ok(),
            prev: r.try_get(5).ok(),
            hash: r.try_get(6).ok(),
        }))
    }

    fn next_patient(&mut self) -> Result<Option<(i64, Vec<u8>)>, VerifyError> {
        let Some(r) = self.next()? else {
            return Ok(None);
        };
        let seq: i64 = r.get(0);
        let patient = text(&r, 1).ok_or_else(|| broken(seq, Problem::PatientIndex))?;
        Ok(Some((seq, patient)))
    }

    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, VerifyError> {
        Ok(self
            .tx
            .borrow_mut()
            .query_opt(
                "SELECT seq FROM audit WHERE hash = $1 ORDER BY seq LIMIT 1",
                &[&hash],
            )
            .map_err(|e| unreadable(db(e)))?
            .map(|r| r.get(0)))
    }
}

/// Recompute the whole chain of the audit trail at `url` from its first entry, check the
/// per-patient index against it, and compare its end with `audit_head` — in one snapshot, so
/// it may run while servers write.
pub fn verify_pg(url: &str) -> Result<VerifyReport, VerifyError> {
    let mut c = connect(url).map_err(unreadable)?;
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| unreadable(db(e)))?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('audit_head') IS NOT NULL", &[])
        .map_err(|e| unreadable(db(e)))?
        .get(0);
    if !exists {
        return Err(unreadable("no audit trail in this database and schema"));
    }
    let head = head_of(&mut tx, false).map_err(VerifyError::Anchor)?;
    let entries = tx
        .bind(
            "SELECT seq, time, agent, patients, body, prev, hash FROM audit ORDER BY seq",
            &[],
        )
        .map_err(|e| unreadable(db(e)))?;
    let index = tx
        .bind(
            "SELECT seq, patient FROM audit_patient ORDER BY seq, patient",
            &[],
        )
        .map_err(|e| unreadable(db(e)))?;
    let tx = RefCell::new(tx);
    let side = |portal| Side {
        tx: &tx,
        portal,
        buf: VecDeque::new(),
    };
    let (mut e, mut i) = (side(entries), side(index));
    walk(&mut e, &mut i, Some(head))
}
