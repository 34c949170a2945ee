//! [`verify`]: recompute the whole chain of a data directory's audit log.

use crate::chain::{self, DB_FILE, HEAD_FILE, Hash, Head, ZERO};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries.
    pub entries: u64,
    /// The last entry's seq (0 when empty) and hash.
    pub last_seq: i64,
    pub last_hash: Hash,
    /// The entry recorded in the head file; entries after it were committed but not yet
    /// anchored (the writer was stopped between its commit and the head update).
    pub anchored_seq: i64,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "audit log intact: {} entries, last seq {}, head {}",
            self.entries,
            self.last_seq,
            chain::hex(&self.last_hash)
        )?;
        if self.anchored_seq < self.last_seq {
            write!(
                f,
                " ({} entries after the anchored seq {})",
                self.last_seq - self.anchored_seq,
                self.anchored_seq
            )?;
        }
        Ok(())
    }
}

/// What is wrong with the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry is absent: it was removed.
    Missing,
    /// Its contents (body, time, agent or patients) do not match its hash: edited.
    Altered,
    /// Its `prev` is not the hash of the entry before it: that one, or this one, was
    /// rewritten.
    BrokenLink,
    /// Its `prev` is the hash of entry `follows`: entries were moved.
    Reordered { follows: i64 },
    /// Its stored hash or prev is not 32 bytes, or a column has the wrong type.
    Malformed,
    /// The per-patient index does not list exactly the entry's patients.
    PatientIndex,
    /// The log ends before this entry, but the head file records entry `head_seq`: the last
    /// entries were removed.
    Truncated { head_seq: i64 },
    /// The entry differs from the one recorded in the head file: the chain was rewritten.
    HeadMismatch,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => write!(f, "missing (removed)"),
            Problem::Altered => write!(
                f,
                "contents do not match its hash (body, time, agent or patients edited)"
            ),
            Problem::BrokenLink => write!(
                f,
                "its prev is not the hash of the entry before it (one of them was rewritten)"
            ),
            Problem::Reordered { follows } => {
                write!(
                    f,
                    "its prev is the hash of entry {follows} (entries reordered)"
                )
            }
            Problem::Malformed => write!(f, "malformed row (hash, prev or a column type)"),
            Problem::PatientIndex => {
                write!(f, "the per-patient index does not match its patients")
            }
            Problem::Truncated { head_seq } => write!(
                f,
                "missing: the log ends before it but {HEAD_FILE} records entry {head_seq} \
                 (the last entries were removed)"
            ),
            Problem::HeadMismatch => write!(
                f,
                "differs from the entry recorded in {HEAD_FILE} (the chain was rewritten)"
            ),
        }
    }
}

/// Why a log is not intact, or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Entry `seq` is the first bad one.
    Broken { seq: i64, problem: Problem },
    /// The head file is missing or unreadable while the log has entries: a removal of the
    /// last entries cannot be ruled out.
    Anchor(String),
    /// There is no audit log, or it could not be read.
    Unreadable(String),
}

impl VerifyError {
    /// The first bad entry, when there is one.
    pub fn seq(&self) -> Option<i64> {
        match self {
            VerifyError::Broken { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Broken { seq, problem } => {
                write!(
                    f,
                    "audit log NOT intact: first bad entry seq {seq}: {problem}"
                )
            }
            VerifyError::Anchor(why) => write!(f, "audit log NOT intact: {why}"),
            VerifyError::Unreadable(why) => write!(f, "cannot check the audit log: {why}"),
        }
    }
}

impl std::error::Error for VerifyError {}

fn broken(seq: i64, problem: Problem) -> VerifyError {
    VerifyError::Broken { seq, problem }
}

fn unreadable(e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unreadable(e.to_string())
}

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
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    // The head first: the writer moves it only after committing, so the snapshot read next
    // is never behind it.
    let head = chain::read_head(dir).map_err(VerifyError::Anchor)?;
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return match head {
            None => Err(unreadable(format!("no audit log in {}", dir.display()))),
            Some(h) if h.seq > 0 => Err(broken(1, Problem::Truncated { head_seq: h.seq })),
            Some(h) => Ok(VerifyReport {
                entries: 0,
                last_seq: 0,
                last_hash: ZERO,
                anchored_seq: h.seq,
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
    let report = walk(&conn, head)?;
    let _ = conn.execute_batch("COMMIT");
    Ok(report)
}

/// Index rows `(seq, patient)` in order, with one row of look-ahead.
struct PatientRows<'s> {
    rows: rusqlite::Rows<'s>,
    peeked: Option<(i64, Vec<u8>)>,
}

impl PatientRows<'_> {
    fn peek(&mut self) -> Result<Option<&(i64, Vec<u8>)>, VerifyError> {
        if self.peeked.is_none()
            && let Some(r) = self.rows.next().map_err(unreadable)?
        {
            let seq: i64 = r.get(0).map_err(unreadable)?;
            let patient = bytes(r.get_ref(1).map_err(unreadable)?)
                .ok_or_else(|| broken(seq, Problem::PatientIndex))?;
            self.peeked = Some((seq, patient));
        }
        Ok(self.peeked.as_ref())
    }

    fn take(&mut self) -> Option<(i64, Vec<u8>)> {
        self.peeked.take()
    }
}

fn walk(conn: &Connection, head: Option<Head>) -> Result<VerifyReport, VerifyError> {
    let mut entries = conn
        .prepare("SELECT seq, time, agent, patients, body, prev, hash FROM audit ORDER BY seq")
        .map_err(unreadable)?;
    let mut index = conn
        .prepare("SELECT seq, patient FROM audit_patient ORDER BY seq, patient")
        .map_err(unreadable)?;
    let mut by_hash = conn
        .prepare("SELECT seq FROM audit WHERE hash = ?1 ORDER BY seq LIMIT 1")
        .map_err(unreadable)?;
    let mut index = PatientRows {
        rows: index.query([]).map_err(unreadable)?,
        peeked: None,
    };
    let mut rows = entries.query([]).map_err(unreadable)?;
    let (mut last_seq, mut last_hash, mut count) = (0i64, ZERO, 0u64);
    let mut anchored: Option<Hash> = None;
    while let Some(r) = rows.next().map_err(unreadable)? {
        let seq: i64 = r.get(0).map_err(unreadable)?;
        if seq != last_seq + 1 {
            return Err(broken(last_seq + 1, Problem::Missing));
        }
        let cols = (
            r.get::<_, i64>(1).ok(),
            bytes(r.get_ref(2).map_err(unreadable)?),
            bytes(r.get_ref(3).map_err(unreadable)?),
            bytes(r.get_ref(4).map_err(unreadable)?),
            bytes(r.get_ref(5).map_err(unreadable)?),
            bytes(r.get_ref(6).map_err(unreadable)?),
        );
        let (Some(time), Some(agent), Some(patients), Some(body), Some(prev), Some(hash)) = cols
        else {
            return Err(broken(seq, Problem::Malformed));
        };
        if prev != last_hash {
            let follows: Option<i64> =
                by_hash
                    .query_row([&prev], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(unreadable(e)),
                    })?;
            return Err(broken(
                seq,
                match follows {
                    Some(f) if f != seq - 1 => Problem::Reordered { follows: f },
                    _ => Problem::BrokenLink,
                },
            ));
        }
        let Ok(hash) = Hash::try_from(hash) else {
            return Err(broken(seq, Problem::Malformed));
        };
        if chain::entry_hash(seq, time, &prev, &agent, &patients, &body) != hash {
            return Err(broken(seq, Problem::Altered));
        }
        // The index rows of this entry must be exactly its patients.
        if let Some((s, _)) = index.peek()?
            && *s < seq
        {
            return Err(broken(*s, Problem::PatientIndex));
        }
        if !patients.is_empty() {
            for p in patients.split(|b| *b == b'\n') {
                match index.take_if_seq(seq)? {
                    Some(got) if got == p => {}
                    _ => return Err(broken(seq, Problem::PatientIndex)),
                }
            }
        }
        if let Some((s, _)) = index.peek()?
            && *s == seq
        {
            return Err(broken(seq, Problem::PatientIndex));
        }
        if head.is_some_and(|h| h.seq == seq) {
            anchored = Some(hash);
        }
        (last_seq, last_hash) = (seq, hash);
        count += 1;
    }
    if let Some((s, _)) = index.peek()? {
        return Err(broken(*s, Problem::PatientIndex));
    }
    match head {
        None if count > 0 => Err(VerifyError::Anchor(format!(
            "{HEAD_FILE} is missing while the log holds {count} entries: removal of the last \
             entries cannot be ruled out"
        ))),
        None => Ok(VerifyReport {
            entries: 0,
            last_seq: 0,
            last_hash: ZERO,
            anchored_seq: 0,
        }),
        Some(h) if h.seq > last_seq => {
            Err(broken(last_seq + 1, Problem::Truncated { head_seq: h.seq }))
        }
        Some(h) if h.seq > 0 && anchored != Some(h.hash) => {
            Err(broken(h.seq, Problem::HeadMismatch))
        }
        Some(h) if h.seq == 0 && h.hash != ZERO => Err(VerifyError::Anchor(format!(
            "{HEAD_FILE} is not valid for an empty anchor"
        ))),
        Some(h) => Ok(VerifyReport {
            entries: count,
            last_seq,
            last_hash,
            anchored_seq: h.seq,
        }),
    }
}

impl PatientRows<'_> {
    /// The next index row's patient when it belongs to entry `seq`.
    fn take_if_seq(&mut self, seq: i64) -> Result<Option<Vec<u8>>, VerifyError> {
        match self.peek()? {
            Some((s, _)) if *s == seq => Ok(self.take().map(|(_, p)| p)),
            _ => Ok(None),
        }
    }
}
