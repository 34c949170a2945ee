//! [`verify`] and [`verify_with_archives`]: recompute the whole chain of a data directory's
//! audit trail, segment after segment, and compare its end with the head file.

use crate::chain::{self, BlockHasher, DB_FILE, Hash, SegHead, ZERO};
use crate::codec::{self, Kind, Row};
use crate::directory::Directory;
use crate::event::{agent_key, patient_keys};
use crate::segment::{self, SEGMENTS_DIR};
use crate::walk::{Problem, VerifyError, VerifyReport, broken, unreadable};
use rusqlite::{Connection, OptionalExtension};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Recompute the chain of the audit trail in `dir` (every segment still there) and compare
/// its end with the head file. Reads a consistent snapshot of each segment, so it may run
/// while the server writes.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    verify_with_archives(dir, &[])
}

/// [`verify`] over the segments in `dir` and in `archives` (directories holding copies of
/// sealed segments, as `segment-NNNNNN.db` files, or data directories with an `audit`
/// directory): the chain is checked from the first segment found — from the very first entry
/// when the archives hold every segment retention removed.
pub fn verify_with_archives(dir: &Path, archives: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    let segdir = dir.join(SEGMENTS_DIR);
    // The head first: the writer moves it only after committing, so what is read next is
    // never behind it.
    let head = chain::read_seg_head(&segdir).map_err(VerifyError::Anchor)?;
    let live = segment::list(&segdir).map_err(unreadable)?;
    if live.is_empty() && dir.join(DB_FILE).exists() && head.is_none_or(|h| h.seq == 0) {
        // A log of the first format, not converted yet (no server has opened it since).
        return crate::v1::verify_v1(dir);
    }
    let mut all: BTreeMap<u32, PathBuf> = BTreeMap::new();
    for a in archives {
        let inner = a.join(SEGMENTS_DIR);
        let a = if inner.is_dir() { inner } else { a.clone() };
        if !a.is_dir() {
            return Err(unreadable(format!("{} is not a directory", a.display())));
        }
        all.extend(segment::list(&a).map_err(unreadable)?);
    }
    // A segment both archived and still in place is read where the server keeps it.
    all.extend(live.iter().cloned());
    let Some(&first) = all.keys().next() else {
        return match head {
            None => Err(unreadable(format!("no audit log in {}", dir.display()))),
            Some(h) if h.seq > 0 => Err(broken(1, Problem::Truncated { head_seq: h.seq })),
            Some(_) => Ok(VerifyReport::empty()),
        };
    };
    let removed = crate::log::read_removed(&segdir).map_err(VerifyError::Anchor)?;
    let mut walk = Walk {
        seq: 0,
        hash: ZERO,
        entries: 0,
        head,
        anchored: None,
    };
    if first > 1 {
        let Some(r) = removed.iter().find(|r| r.number == first - 1) else {
            return Err(broken(
                1,
                Problem::Segment(format!(
                    "segments 1 to {} are missing and {} does not record their removal",
                    first - 1,
                    crate::log::REMOVED_FILE
                )),
            ));
        };
        (walk.seq, walk.hash) = (r.last, r.hash);
    }
    let first_seq = walk.seq + 1;
    let numbers: Vec<u32> = all.keys().copied().collect();
    for (i, (n, path)) in all.iter().enumerate() {
        if i > 0 && *n != numbers[i - 1] + 1 {
            return Err(broken(
                walk.seq + 1,
                Problem::Segment(format!("segment {} is missing", numbers[i - 1] + 1)),
            ));
        }
        walk.segment(*n, path, i + 1 == numbers.len())?;
    }
    check_directory(&segdir, &live)?;
    walk.finish(first_seq, numbers.len() as u32)
}

/// The directory of sealed segments (`crate::directory`) lists exactly the keys of each
/// segment it covers: a person whose row was removed would not find that segment's events.
fn check_directory(segdir: &Path, live: &[(u32, PathBuf)]) -> Result<(), VerifyError> {
    let Some(dir) = Directory::open_existing(segdir).map_err(unreadable)? else {
        return Ok(());
    };
    let covered = dir.covered().map_err(unreadable)?;
    for (n, path) in live.iter().filter(|(n, _)| covered.contains(n)) {
        let conn = segment::open_ro(path).map_err(unreadable)?;
        let meta = segment::read_meta(&conn).map_err(unreadable)?;
        // A segment is covered only once sealed (its keys never change after).
        let why = match meta.sealed {
            None => Some(format!(
                "{} covers segment {n}, which is being written",
                crate::directory::DIRECTORY_FILE
            )),
            Some(_) => dir.check(*n, &conn).map_err(unreadable)?,
        };
        if let Some(why) = why {
            return Err(broken(meta.first_seq, Problem::Segment(why)));
        }
    }
    Ok(())
}

/// The chain as recomputed so far.
struct Walk {
    seq: i64,
    hash: Hash,
    entries: u64,
    head: Option<SegHead>,
    /// The head file's entry, once passed: whether its hash matched.
    anchored: Option<bool>,
}

fn bad(seq: i64, n: u32, why: impl std::fmt::Display) -> VerifyError {
    broken(seq, Problem::Segment(format!("segment {n}: {why}")))
}

impl Walk {
    fn segment(&mut self, n: u32, path: &Path, last: bool) -> Result<(), VerifyError> {
        let conn = segment::open_ro(path).map_err(unreadable)?;
        conn.execute_batch("BEGIN").map_err(unreadable)?;
        let next = self.seq + 1;
        let meta = segment::read_meta(&conn).map_err(|e| bad(next, n, e))?;
        if meta.number != n {
            return Err(bad(
                next,
                n,
                format!("it says it is segment {}", meta.number),
            ));
        }
        if meta.first_seq != next || meta.prev != self.hash {
            return Err(bad(
                next,
                n,
                "it does not start where the segment before it ends (one of them was replaced)",
            ));
        }
        if let Some(h) = self.head
            && h.segment == n
            && h.seq == self.seq
        {
            self.anchored = Some(h.hash == self.hash);
        }
        // The key tables are what searches find entries by: one id per text.
        for table in ["agent", "patient"] {
            let twice: Option<String> = conn
                .query_row(
                    &format!("SELECT text FROM {table} GROUP BY text HAVING count(*) > 1 LIMIT 1"),
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unreadable)?;
            if let Some(t) = twice {
                return Err(bad(next, n, format!("its {table} table holds {t} twice")));
            }
        }
        let times = self.blocks(&conn, n, meta.base)?;
        match meta.sealed {
            Some(s) if s.last != self.seq || s.hash != self.hash => {
                Err(bad(s.last, n, "its seal does not match its entries"))
            }
            // Searches by time skip a sealed segment by these: they must be its entries' own.
            Some(s) if times.is_some_and(|t| t != (s.min_time, s.max_time)) => Err(bad(
                s.last,
                n,
                "its seal's time range does not match its entries",
            )),
            None if !last => Err(bad(
                self.seq + 1,
                n,
                "it is not sealed, yet a later segment follows",
            )),
            _ => {
                let _ = conn.execute_batch("COMMIT");
                Ok(())
            }
        }
    }

    /// Recompute each block of the segment in `conn`, checking the per-patient index and the
    /// agent key of each entry; the entries' earliest and latest times.
    fn blocks(
        &mut self,
        conn: &Connection,
        n: u32,
        base: i64,
    ) -> Result<Option<(i64, i64)>, VerifyError> {
        let mut times: Option<(i64, i64)> = None;
        let mut blocks = conn
            .prepare("SELECT last, hash FROM block ORDER BY last")
            .map_err(unreadable)?;
        let mut blocks = blocks.query([]).map_err(unreadable)?;
        let mut events = conn
            .prepare("SELECT seq, t, k, agent, ctx, x FROM ev ORDER BY seq")
            .map_err(unreadable)?;
        let mut events = events.query([]).map_err(unreadable)?;
        let mut index = conn
            .prepare("SELECT seq, patient FROM ev_patient ORDER BY seq, patient")
            .map_err(unreadable)?;
        let mut index = index.query([]).map_err(unreadable)?;
        let mut pending: Option<(i64, i64)> = None;
        let mut texts = HashMap::new();
        while let Some(b) = blocks.next().map_err(unreadable)? {
            let first = self.seq + 1;
            let (Ok(last), Ok(stored)) = (b.get::<_, i64>(0), b.get::<_, Vec<u8>>(1)) else {
                return Err(broken(first, Problem::Malformed));
            };
            let mut hasher = BlockHasher::new(&self.hash);
            for seq in first..=last {
                let Some(r) = events.next().map_err(unreadable)? else {
                    return Err(broken(seq, Problem::Missing));
                };
                let row = match (r.get::<_, i64>(0), read_row(r)) {
                    (Ok(s), _) if s != seq => {
                        return Err(broken(seq.min(s), Problem::Missing));
                    }
                    (Ok(_), Some(row)) => row,
                    _ => return Err(broken(seq, Problem::Malformed)),
                };
                let mut dict = Dict {
                    conn,
                    texts: &mut texts,
                };
                let rec = codec::decode(&row, base, &mut dict)
                    .map_err(|_| broken(first, Problem::BlockAltered { last }))?;
                hasher.add(seq, &rec).map_err(unreadable)?;
                // The agent column is what a search by agent finds the entry by.
                if dict.text(Kind::Agent, row.agent).ok() != Some(agent_key(&rec)) {
                    return Err(broken(seq, Problem::AgentIndex));
                }
                times = Some(match times {
                    None => (rec.time, rec.time),
                    Some((a, b)) => (a.min(rec.time), b.max(rec.time)),
                });
                // The index rows of this entry must be exactly its patients.
                let mut got = Vec::new();
                loop {
                    if pending.is_none() {
                        pending = match index.next().map_err(unreadable)? {
                            Some(r) => {
                                Some((r.get(0).map_err(unreadable)?, r.get(1).map_err(unreadable)?))
                            }
                            None => None,
                        };
                    }
                    match pending {
                        Some((s, _)) if s < seq => return Err(broken(s, Problem::PatientIndex)),
                        Some((s, p)) if s == seq => {
                            got.push(
                                dict.text(Kind::Patient, p)
                                    .map_err(|_| broken(seq, Problem::PatientIndex))?,
                            );
                            pending = None;
                        }
                        _ => break,
                    }
                }
                got.sort();
                if got != patient_keys(&rec) {
                    return Err(broken(seq, Problem::PatientIndex));
                }
            }
            if hasher.finish()[..] != stored[..] {
                return Err(broken(first, Problem::BlockAltered { last }));
            }
            self.hash = stored.try_into().expect("compared with 32 bytes");
            self.seq = last;
            self.entries += (last - first + 1) as u64;
            if let Some(h) = self.head
                && h.segment == n
                && h.seq == last
            {
                self.anchored = Some(h.hash == self.hash);
            }
        }
        if let Some(r) = events.next().map_err(unreadable)? {
            let seq = r.get::<_, i64>(0).unwrap_or(self.seq + 1);
            return Err(broken(seq, Problem::Unchained));
        }
        if let Some((s, _)) = pending {
            return Err(broken(s, Problem::PatientIndex));
        }
        if let Some(r) = index.next().map_err(unreadable)? {
            return Err(broken(r.get(0).unwrap_or(0), Problem::PatientIndex));
        }
        Ok(times)
    }

    fn finish(self, first_seq: i64, segments: u32) -> Result<VerifyReport, VerifyError> {
        let report = VerifyReport {
            entries: self.entries,
            first_seq,
            last_seq: self.seq,
            last_hash: self.hash,
            anchored_seq: self.head.map_or(0, |h| h.seq),
            segments,
        };
        match self.head {
            None if self.entries > 0 => Err(VerifyError::Anchor(format!(
                "{SEGMENTS_DIR}/{} is missing while the log holds {} entries: removal of the \
                 last entries cannot be ruled out",
                chain::SEG_HEAD_FILE,
                self.entries
            ))),
            None => Ok(report),
            Some(h) if h.seq > self.seq => {
                Err(broken(self.seq + 1, Problem::Truncated { head_seq: h.seq }))
            }
            Some(h) if self.anchored != Some(true) && h.seq >= first_seq => {
                Err(broken(h.seq, Problem::HeadMismatch))
            }
            Some(_) => Ok(report),
        }
    }
}

fn read_row(r: &rusqlite::Row) -> Option<Row> {
    Some(Row {
        t: r.get(1).ok()?,
        k: r.get(2).ok()?,
        agent: r.get(3).ok()?,
        ctx: r.get(4).ok()?,
        x: r.get(5).ok()?,
        patients: Vec::new(),
    })
}

/// A segment's texts, for decoding.
struct Dict<'a> {
    conn: &'a Connection,
    texts: &'a mut HashMap<(Kind, i64), String>,
}

impl Dict<'_> {
    fn text(&mut self, kind: Kind, id: i64) -> Result<String, String> {
        segment::resolve_in(self.conn, self.texts, kind, id)
    }
}

impl codec::Resolve for Dict<'_> {
    fn resolve(&mut self, kind: Kind, id: i64) -> Result<String, String> {
        self.text(kind, id)
    }
}
