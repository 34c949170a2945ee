//! Recompute a whole audit chain, wherever it is kept ([`walk`] over a [`Source`]): the
//! report, and the first bad entry with what is wrong with it.

use crate::chain::{self, HEAD_FILE, Hash, Head, ZERO};

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries checked.
    pub entries: u64,
    /// The first entry checked: 1, or the first after the segments retention removed.
    pub first_seq: i64,
    /// The last entry's seq (0 when empty) and hash.
    pub last_seq: i64,
    pub last_hash: Hash,
    /// The entry recorded in the head file; entries after it were committed but not yet
    /// anchored (the writer was stopped between its commit and the head update).
    pub anchored_seq: i64,
    /// Segments checked (0 for a log kept in one table: PostgreSQL's, or the first format).
    pub segments: u32,
}

impl VerifyReport {
    pub(crate) fn empty() -> VerifyReport {
        VerifyReport {
            entries: 0,
            first_seq: 1,
            last_seq: 0,
            last_hash: ZERO,
            anchored_seq: 0,
            segments: 0,
        }
    }
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
        if self.segments > 0 {
            write!(f, " in {} segment(s)", self.segments)?;
        }
        if self.first_seq > 1 {
            write!(
                f,
                "; entries before seq {} were removed by retention (not checked: verify with \
                 --archive to include their archived segments)",
                self.first_seq
            )?;
        }
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
    /// The entry's agent column is not its agent's key (searches by agent would miss it).
    AgentIndex,
    /// The log ends before this entry, but its anchor (the head file, or `audit_head` on
    /// PostgreSQL) records entry `head_seq`: the last entries were removed.
    Truncated { head_seq: i64 },
    /// The entry differs from the one recorded in the anchor: the chain was rewritten.
    HeadMismatch,
    /// The block of entries from this one to `last` (committed together, hashed together)
    /// does not match its hash: an entry, or a text of the segment one refers to, was edited,
    /// removed or moved.
    BlockAltered { last: i64 },
    /// The entry is stored after the last block: no hash covers it (added behind the writer).
    Unchained,
    /// A segment is missing, replaced or inconsistent with its neighbours.
    Segment(String),
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
            Problem::AgentIndex => write!(f, "its agent column is not its agent's key"),
            Problem::Truncated { head_seq } => write!(
                f,
                "missing: the log ends before it but its anchor ({HEAD_FILE}, or audit_head \
                 on PostgreSQL) records entry {head_seq} (the last entries were removed)"
            ),
            Problem::BlockAltered { last } => write!(
                f,
                "the block of entries up to seq {last} (committed and hashed together) does not \
                 match its hash: an entry in it, or a text it refers to, was edited, removed or \
                 moved"
            ),
            Problem::Unchained => write!(f, "stored after the last block: no hash covers it"),
            Problem::Segment(why) => write!(f, "{why}"),
            Problem::HeadMismatch => write!(
                f,
                "differs from the entry recorded in its anchor ({HEAD_FILE}, or audit_head on \
                 PostgreSQL): the chain was rewritten"
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

pub(crate) fn broken(seq: i64, problem: Problem) -> VerifyError {
    VerifyError::Broken { seq, problem }
}

pub(crate) fn unreadable(e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unreadable(e.to_string())
}

/// One stored entry as read (a column of the wrong type is `None`: malformed).
pub(crate) struct StoredEntry {
    pub seq: i64,
    pub time: Option<i64>,
    pub agent: Option<Vec<u8>>,
    pub patients: Option<Vec<u8>>,
    pub body: Option<Vec<u8>>,
    pub prev: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
}

/// Where a chain is read from, in one consistent snapshot.
pub(crate) trait Source {
    /// The next entry in `seq` order.
    fn next_entry(&mut self) -> Result<Option<StoredEntry>, VerifyError>;
    /// The next per-patient index row `(seq, patient)`, in `(seq, patient)` order.
    fn next_patient(&mut self) -> Result<Option<(i64, Vec<u8>)>, VerifyError>;
    /// The first entry whose hash is `hash`.
    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, VerifyError>;
}

/// Index rows with one row of look-ahead.
struct PatientRows<'s> {
    src: &'s mut dyn Source,
    peeked: Option<(i64, Vec<u8>)>,
}

impl PatientRows<'_> {
    fn peek(&mut self) -> Result<Option<&(i64, Vec<u8>)>, VerifyError> {
        if self.peeked.is_none() {
            self.peeked = self.src.next_patient()?;
        }
        Ok(self.peeked.as_ref())
    }

    /// The next index row's patient when it belongs to entry `seq`.
    fn take_if_seq(&mut self, seq: i64) -> Result<Option<Vec<u8>>, VerifyError> {
        match self.peek()? {
            Some((s, _)) if *s == seq => Ok(self.peeked.take().map(|(_, p)| p)),
            _ => Ok(None),
        }
    }
}

/// Recompute the chain from its first entry, check the per-patient index against it, and
/// compare its end with the anchor `head`.
pub(crate) fn walk(
    entries: &mut dyn Source,
    index: &mut dyn Source,
    head: Option<Head>,
) -> Result<VerifyReport, VerifyError> {
    let mut index = PatientRows {
        src: index,
        peeked: None,
    };
    let (mut last_seq, mut last_hash, mut count) = (0i64, ZERO, 0u64);
    let mut anchored: Option<Hash> = None;
    while let Some(r) = entries.next_entry()? {
        let seq = r.seq;
        if seq != last_seq + 1 {
            return Err(broken(last_seq + 1, Problem::Missing));
        }
        let (Some(time), Some(agent), Some(patients), Some(body), Some(prev), Some(hash)) =
            (r.time, r.agent, r.patients, r.body, r.prev, r.hash)
        else {
            return Err(broken(seq, Problem::Malformed));
        };
        if prev != last_hash {
            let follows = entries.seq_of_hash(&prev)?;
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
        None => Ok(VerifyReport::empty()),
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
            first_seq: 1,
            last_seq,
            last_hash,
            anchored_seq: h.seq,
            segments: 0,
        }),
    }
}
