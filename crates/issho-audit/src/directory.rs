//! Which sealed segments mention a person or an agent: `audit/directory.db`, so that a
//! person's access log (and an agent's `$audit`) over years of segments opens only the
//! segments that hold their events, not every one.
//!
//! - It is derived from the sealed segments' key tables (`patient`, `agent`): when a segment
//!   is sealed its keys are added, in one transaction with the row saying the segment is
//!   covered; when retention removes a segment, its rows go. At open, rows of segments that
//!   are not sealed and present go (a directory out of step with the segments), and sealed
//!   segments not covered yet (a log written before the directory, or a crash between
//!   sealing and adding) are added.
//! - It only narrows searches: a segment it does not cover is searched as before, the
//!   segment being written always is, and a directory that cannot be read is not used. Nothing in it is part of the hash chain; `verify`
//!   compares it with the segments it covers (a row removed to hide a segment from a person's
//!   log is found).
//! - A failure to write it is logged and leaves the segment uncovered (searched directly):
//!   the audit writer does not stop for it.

use crate::segment;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// The directory's file, in the segments' directory.
pub const DIRECTORY_FILE: &str = "directory.db";

const DDL: &str = "
CREATE TABLE IF NOT EXISTS covered (seg INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS mention (
  kind INTEGER NOT NULL, key TEXT NOT NULL, seg INTEGER NOT NULL,
  PRIMARY KEY (kind, key, seg)
) WITHOUT ROWID;
";

/// What a key names: the segment tables they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Patient = 1,
    Agent = 2,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Patient => "patient",
            Kind::Agent => "agent",
        }
    }
}

fn db(e: rusqlite::Error) -> String {
    format!("{DIRECTORY_FILE}: {e}")
}

pub(crate) struct Directory {
    conn: Connection,
}

impl Directory {
    /// Open (creating if needed) the directory in `segdir`.
    pub(crate) fn open(segdir: &Path) -> Result<Directory, String> {
        let conn = Connection::open(segdir.join(DIRECTORY_FILE)).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(db)?;
        conn.execute_batch(DDL).map_err(db)?;
        Ok(Directory { conn })
    }

    /// Open the directory in `segdir` for reading, if there is one.
    pub(crate) fn open_existing(segdir: &Path) -> Result<Option<Directory>, String> {
        let path = segdir.join(DIRECTORY_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let conn = segment::open_ro(&path)?;
        Ok(Some(Directory { conn }))
    }

    /// The segments it covers.
    pub(crate) fn covered(&self) -> Result<HashSet<u32>, String> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seg FROM covered")
            .map_err(db)?;
        let rows = stmt.query_map([], |r| r.get::<_, u32>(0)).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// The covered segments that mention `key` as a `kind`.
    pub(crate) fn segments_with(&self, kind: Kind, key: &str) -> Result<HashSet<u32>, String> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seg FROM mention WHERE kind = ?1 AND key = ?2")
            .map_err(db)?;
        let rows = stmt
            .query_map(params![kind as i64, key], |r| r.get::<_, u32>(0))
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Add sealed segment `number` (at `path`): its patients and agents, and that it is
    /// covered, in one transaction. Adding a covered segment again changes nothing.
    pub(crate) fn add(&mut self, number: u32, path: &Path) -> Result<(), String> {
        let seg = segment::open_ro(path)?;
        let tx = self.conn.transaction().map_err(db)?;
        let done: Option<i64> = tx
            .query_row("SELECT seg FROM covered WHERE seg = ?1", [number], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        if done.is_some() {
            return Ok(());
        }
        {
            let mut insert = tx
                .prepare("INSERT OR IGNORE INTO mention (kind, key, seg) VALUES (?1, ?2, ?3)")
                .map_err(db)?;
            for kind in [Kind::Patient, Kind::Agent] {
                for key in keys_of(&seg, kind)? {
                    insert
                        .execute(params![kind as i64, key, number])
                        .map_err(db)?;
                }
            }
            tx.execute("INSERT INTO covered (seg) VALUES (?1)", [number])
                .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// Forget every segment but `sealed` (the sealed segments present): rows left by a crash
    /// between a removal and its directory update, or by a directory out of step with the
    /// segments (restored from elsewhere), never stand for a segment they do not describe.
    pub(crate) fn keep_only(&mut self, sealed: &HashSet<u32>) -> Result<(), String> {
        let stale: Vec<u32> = self
            .covered()?
            .into_iter()
            .filter(|n| !sealed.contains(n))
            .collect();
        // (Rows of a segment that is not covered are never read: `add` and `remove` write a
        // segment's rows with its covered row.)
        stale.into_iter().try_for_each(|n| self.remove(n))
    }

    /// Forget segment `number` (removed by retention).
    pub(crate) fn remove(&mut self, number: u32) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute("DELETE FROM mention WHERE seg = ?1", [number])
            .map_err(db)?;
        tx.execute("DELETE FROM covered WHERE seg = ?1", [number])
            .map_err(db)?;
        tx.commit().map_err(db)
    }

    /// The keys it holds for segment `number`.
    fn keys_for(&self, number: u32, kind: Kind) -> Result<BTreeSet<String>, String> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key FROM mention WHERE seg = ?1 AND kind = ?2")
            .map_err(db)?;
        let rows = stmt
            .query_map(params![number, kind as i64], |r| r.get::<_, String>(0))
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Does what it holds for covered segment `number` equal the segment's own keys (`seg`)?
    /// The difference, said, when not.
    pub(crate) fn check(&self, number: u32, seg: &Connection) -> Result<Option<String>, String> {
        for kind in [Kind::Patient, Kind::Agent] {
            let mine = self.keys_for(number, kind)?;
            let theirs = keys_of(seg, kind)?;
            if let Some(k) = theirs.difference(&mine).next() {
                return Ok(Some(format!(
                    "{DIRECTORY_FILE} does not list {k} for segment {number}, which mentions it"
                )));
            }
            if let Some(k) = mine.difference(&theirs).next() {
                return Ok(Some(format!(
                    "{DIRECTORY_FILE} lists {k} for segment {number}, which does not mention it"
                )));
            }
        }
        Ok(None)
    }
}

/// The keys of `kind` a segment holds.
fn keys_of(seg: &Connection, kind: Kind) -> Result<BTreeSet<String>, String> {
    let mut stmt = seg
        .prepare(&format!("SELECT text FROM {}", kind.table()))
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
}
