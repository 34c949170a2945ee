//! One segment of the SQLite audit trail: `audit/segment-NNNNNN.db` in the data directory.
//!
//! Tables (format `issho-audit-v2`):
//! - `meta(key, value)`: `format`, `segment` (its number), `first_seq`, `prev` (the hash the
//!   chain had before this segment, in hex), `base` (the time rows count from, µs), `created`;
//!   when sealed also `sealed_last`, `sealed_hash`, `min_time`, `max_time`.
//! - `agent(id, text UNIQUE)`, `patient(id, text UNIQUE)`: the keys searched by;
//!   `dict(id, text)`: every other text a row refers to (contexts, resource types, queries).
//! - `ev(seq, t, k, agent, ctx, x)`: one row per event ([`crate::codec`]); index `(agent)`.
//! - `ev_patient(patient, seq)`: the per-patient index behind a person's access log.
//! - `block(last, hash)`: the chain ([`crate::chain::BlockHasher`]): one row per committed
//!   batch, covering the events after the previous block up to `last`.
//!
//! Triggers refuse `UPDATE` and `DELETE` on every table: they stop mistakes, not an attacker
//! with the file; the chain and the head file are what detect tampering.

use crate::chain::{self, BlockHasher, Hash};
use crate::codec::{self, Intern, Kind, Resolve, Row};
use crate::record::AuditRecord;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(crate) const FORMAT: &str = "issho-audit-v2";
/// The directory of the segments, in the data directory.
pub const SEGMENTS_DIR: &str = "audit";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS patient (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS dict (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ev (
  seq INTEGER PRIMARY KEY,
  t INTEGER NOT NULL,
  k INTEGER NOT NULL,
  agent INTEGER NOT NULL,
  ctx INTEGER NOT NULL,
  x BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ev_agent ON ev(agent);
CREATE TABLE IF NOT EXISTS ev_patient (
  patient INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (patient, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS block (last INTEGER PRIMARY KEY, hash BLOB NOT NULL);
"#;

const TABLES: [&str; 7] = [
    "meta",
    "agent",
    "patient",
    "dict",
    "ev",
    "ev_patient",
    "block",
];

fn db(e: rusqlite::Error) -> String {
    e.to_string()
}

/// The file of segment `n` in `segments` (the `audit` directory).
pub(crate) fn segment_path(segments: &Path, n: u32) -> PathBuf {
    segments.join(format!("segment-{n:06}.db"))
}

/// The segments in `dir`, by number (files named `segment-NNNNNN.db`).
pub(crate) fn list(dir: &Path) -> Result<Vec<(u32, PathBuf)>, String> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".db"))
            .filter(|n| n.len() == 6)
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        out.push((n, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// What a segment says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub number: u32,
    pub first_seq: i64,
    pub prev: Hash,
    pub base: i64,
    pub created: i64,
    pub sealed: Option<Sealed>,
}

/// A closed segment's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub last: i64,
    pub hash: Hash,
    /// The earliest and latest event times (µs), for skipping it in a search by time.
    pub min_time: i64,
    pub max_time: i64,
}

pub(crate) fn read_meta(conn: &Connection) -> Result<Meta, String> {
    let mut stmt = conn.prepare("SELECT key, value FROM meta").map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, rusqlite::types::Value>(1)?,
            ))
        })
        .map_err(db)?;
    let mut m: HashMap<String, rusqlite::types::Value> = HashMap::new();
    for r in rows {
        let (k, v) = r.map_err(db)?;
        m.insert(k, v);
    }
    use rusqlite::types::Value as V;
    let int = |k: &str| match m.get(k) {
        Some(V::Integer(i)) => Ok(*i),
        _ => Err(format!("segment meta `{k}` is missing or malformed")),
    };
    let hash = |k: &str| match m.get(k) {
        Some(V::Text(t)) => chain::unhex(t).ok_or(format!("segment meta `{k}` is malformed")),
        _ => Err(format!("segment meta `{k}` is missing or malformed")),
    };
    if !matches!(m.get("format"), Some(V::Text(f)) if f == FORMAT) {
        return Err(format!("not a segment of format {FORMAT}"));
    }
    let sealed = if m.contains_key("sealed_last") {
        Some(Sealed {
            last: int("sealed_last")?,
            hash: hash("sealed_hash")?,
            min_time: int("min_time")?,
            max_time: int("max_time")?,
        })
    } else {
        None
    };
    Ok(Meta {
        number: u32::try_from(int("segment")?).map_err(|_| "segment number is malformed")?,
        first_seq: int("first_seq")?,
        prev: hash("prev")?,
        base: int("base")?,
        created: int("created")?,
        sealed,
    })
}

pub(crate) fn open_rw(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    // NORMAL: a commit does not wait for the disk; the writer syncs the WAL
    // ([`Active::sync`]) before the head file names what it committed, and SQLite syncs it
    // before every checkpoint (sealing folds the WAL in with one).
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db)?;
    Ok(conn)
}

pub(crate) fn open_ro(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(db)?;
    Ok(conn)
}

/// The last block of a segment: (last seq, hash), or the segment's start when it has none.
pub(crate) fn end_of(conn: &Connection, meta: &Meta) -> Result<(i64, Hash), String> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT last, hash FROM block ORDER BY last DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    match row {
        None => Ok((meta.first_seq - 1, meta.prev)),
        Some((last, h)) => Ok((
            last,
            h.try_into()
                .map_err(|_| format!("block {last} has a malformed hash"))?,
        )),
    }
}

/// The hash of the block ending at `last`, if there is one.
pub(crate) fn block_hash_at(conn: &Connection, last: i64) -> Result<Option<Vec<u8>>, String> {
    conn.query_row("SELECT hash FROM block WHERE last = ?1", [last], |r| {
        r.get(0)
    })
    .optional()
    .map_err(db)
}

/// Texts seen lately, by kind (bounded: a miss only costs a lookup or a repeated entry).
#[derive(Default)]
struct Caches {
    ids: HashMap<(Kind, String), i64>,
}

const CACHE_MAX: usize = 500_000;

/// Interning inside the writer's transaction.
struct Interner<'a> {
    conn: &'a Connection,
    caches: &'a mut Caches,
}

impl Intern for Interner<'_> {
    fn intern(&mut self, kind: Kind, text: &str) -> Result<i64, String> {
        if let Some(id) = self.caches.ids.get(&(kind, text.to_string())) {
            return Ok(*id);
        }
        let id = match kind {
            Kind::Agent | Kind::Patient => {
                let table = if kind == Kind::Agent {
                    "agent"
                } else {
                    "patient"
                };
                let found: Option<i64> = self
                    .conn
                    .prepare_cached(&format!("SELECT id FROM {table} WHERE text = ?1"))
                    .and_then(|mut s| s.query_row([text], |r| r.get(0)).optional())
                    .map_err(db)?;
                match found {
                    Some(id) => id,
                    None => self
                        .conn
                        .prepare_cached(&format!("INSERT INTO {table} (text) VALUES (?1)"))
                        .and_then(|mut s| s.insert([text]))
                        .map_err(db)?,
                }
            }
            // Only ever looked up by id: a text cached out is written again, which is harmless.
            Kind::Text => self
                .conn
                .prepare_cached("INSERT INTO dict (text) VALUES (?1)")
                .and_then(|mut s| s.insert([text]))
                .map_err(db)?,
        };
        if self.caches.ids.len() >= CACHE_MAX {
            self.caches.ids.clear();
        }
        self.caches.ids.insert((kind, text.to_string()), id);
        Ok(id)
    }
}

/// The segment being written.
pub(crate) struct Active {
    conn: Connection,
    pub meta: Meta,
    pub path: PathBuf,
    /// The chain's end: the last committed block (or the segment's start).
    pub last: i64,
    pub hash: Hash,
    caches: Caches,
    times: Option<(i64, i64)>,
    /// The segment's WAL, opened once with the segment: a failed write-back is reported to
    /// every descriptor open when it happened, so a sync through this one cannot miss it (one
    /// opened afresh could, when SQLite's own sync saw the error first).
    wal: Option<std::fs::File>,
}

impl Active {
    /// Create segment `number` continuing the chain after entry `last` whose hash is `prev`.
    pub(crate) fn create(
        segments: &Path,
        number: u32,
        last: i64,
        prev: Hash,
    ) -> Result<Active, String> {
        let path = segment_path(segments, number);
        if path.exists() {
            return Err(format!("{} exists already", path.display()));
        }
        // Made whole under another name, then renamed: a crash half way leaves no segment
        // without its meta (which would keep the log from opening again).
        let tmp = segments.join(format!("segment-{number:06}.db.new"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
        }
        Active::fill(&tmp, number, last, prev)?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::File::open(segments)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", segments.display()))?;
        Active::open(path)
    }

    /// The new segment's schema and meta, in `path` (closed again, its WAL folded in).
    fn fill(path: &Path, number: u32, last: i64, prev: Hash) -> Result<(), String> {
        let mut conn = open_rw(path)?;
        let now = crate::now_micros();
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(SCHEMA).map_err(db)?;
        for (k, v) in [
            ("format", rusqlite::types::Value::Text(FORMAT.into())),
            ("segment", i64::from(number).into()),
            ("first_seq", (last + 1).into()),
            ("prev", chain::hex(&prev).into()),
            ("base", now.into()),
            ("created", now.into()),
        ] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(db)?;
        }
        tx.execute_batch(&append_only_triggers()).map_err(db)?;
        tx.commit().map_err(db)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db)?;
        drop(conn);
        Ok(())
    }

    /// Open an existing segment for appending.
    pub(crate) fn open(path: PathBuf) -> Result<Active, String> {
        let conn = open_rw(&path)?;
        let meta = read_meta(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        let (last, hash) = end_of(&conn, &meta)?;
        let times: Option<(i64, i64)> = conn
            .query_row("SELECT min(t), max(t) FROM ev", [], |r| {
                Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
            })
            .map_err(db)?
            .map(|(a, b)| (a.saturating_add(meta.base), b.saturating_add(meta.base)));
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = std::fs::File::open(&wal_path).ok();
        Ok(Active {
            conn,
            meta,
            path,
            last,
            hash,
            caches: Caches::default(),
            times,
            wal,
        })
    }

    /// Append `records` as one block in one transaction.
    pub(crate) fn append(&mut self, records: &[AuditRecord]) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(db)?;
        let mut hasher = BlockHasher::new(&self.hash);
        let mut seq = self.last;
        let mut times = self.times;
        {
            let mut interner = Interner {
                conn: &tx,
                caches: &mut self.caches,
            };
            for rec in records {
                seq += 1;
                hasher.add(seq, rec)?;
                let row = codec::encode(rec, self.meta.base, &mut interner)?;
                tx.prepare_cached(
                    "INSERT INTO ev (seq, t, k, agent, ctx, x) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| s.execute(params![seq, row.t, row.k, row.agent, row.ctx, row.x]))
                .map_err(db)?;
                let mut by_patient = tx
                    .prepare_cached("INSERT INTO ev_patient (patient, seq) VALUES (?1, ?2)")
                    .map_err(db)?;
                for p in &row.patients {
                    by_patient.execute(params![p, seq]).map_err(db)?;
                }
                times = Some(match times {
                    None => (rec.time, rec.time),
                    Some((a, b)) => (a.min(rec.time), b.max(rec.time)),
                });
            }
        }
        let hash = hasher.finish();
        tx.execute(
            "INSERT INTO block (last, hash) VALUES (?1, ?2)",
            params![seq, &hash[..]],
        )
        .map_err(db)?;
        if let Err(e) = tx.commit() {
            // Ids cached during the failed transaction were never written.
            self.caches.ids.clear();
            return Err(db(e));
        }
        (self.last, self.hash, self.times) = (seq, hash, times);
        Ok(())
    }

    /// Make every committed block durable: `fdatasync` of the segment's WAL (where commits
    /// go), or of the file itself when there is no WAL.
    pub(crate) fn sync(&self) -> Result<(), String> {
        let synced = match &self.wal {
            Some(f) => f.sync_data(),
            // No WAL when the segment was opened: sync it if it exists now, else the file.
            None => {
                let mut wal = self.path.as_os_str().to_owned();
                wal.push("-wal");
                match std::fs::File::open(&wal) {
                    Ok(f) => f.sync_data(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        std::fs::File::open(&self.path).and_then(|f| f.sync_data())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        synced.map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// The file's size in bytes (its pages; the WAL is checkpointed into them).
    pub(crate) fn size(&self) -> Result<u64, String> {
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(db)?;
        let size: i64 = self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(db)?;
        Ok((pages * size) as u64)
    }

    /// The chain's end as the head file records it.
    pub(crate) fn head(&self) -> chain::SegHead {
        chain::SegHead {
            segment: self.meta.number,
            seq: self.last,
            hash: self.hash,
        }
    }

    /// Add a note to the segment's meta (a key it does not have yet).
    pub(crate) fn note(&self, key: &str, value: &str) -> Result<(), String> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
            .map_err(db)
    }

    /// True when no event was appended to it.
    pub(crate) fn is_empty(&self) -> bool {
        self.last < self.meta.first_seq
    }

    /// Close the segment for good: record its end and time range in its meta.
    pub(crate) fn seal(mut self) -> Result<Sealed, String> {
        let (min_time, max_time) = self.times.unwrap_or((self.meta.base, self.meta.base));
        let sealed = Sealed {
            last: self.last,
            hash: self.hash,
            min_time,
            max_time,
        };
        let tx = self.conn.transaction().map_err(db)?;
        for (k, v) in [
            ("sealed_last", rusqlite::types::Value::Integer(sealed.last)),
            ("sealed_hash", chain::hex(&sealed.hash).into()),
            ("min_time", min_time.into()),
            ("max_time", max_time.into()),
        ] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        // On disk before the head names the next segment, whatever the checkpoint below does
        // (a reader may keep it from copying everything).
        self.sync()?;
        // Fold the WAL into the file, so that the sealed segment is one file to archive.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db)?;
        Ok(sealed)
    }
}

fn append_only_triggers() -> String {
    TABLES
        .iter()
        .map(|t| {
            format!(
                "CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t} \
                   BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                 CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} \
                   BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;\n"
            )
        })
        .collect()
}

/// A segment opened for reading, with the texts it resolved lately.
pub(crate) struct Reader {
    pub conn: Connection,
    pub meta: Meta,
    texts: HashMap<(Kind, i64), String>,
}

impl Resolve for Reader {
    fn resolve(&mut self, kind: Kind, id: i64) -> Result<String, String> {
        resolve_in(&self.conn, &mut self.texts, kind, id)
    }
}

/// Resolve `id` of `kind` in `conn`, through `cache`.
pub(crate) fn resolve_in(
    conn: &Connection,
    cache: &mut HashMap<(Kind, i64), String>,
    kind: Kind,
    id: i64,
) -> Result<String, String> {
    if let Some(t) = cache.get(&(kind, id)) {
        return Ok(t.clone());
    }
    let table = match kind {
        Kind::Agent => "agent",
        Kind::Patient => "patient",
        Kind::Text => "dict",
    };
    let text: String = conn
        .prepare_cached(&format!("SELECT text FROM {table} WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(db)?
        .ok_or_else(|| format!("{table} entry {id} is missing"))?;
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.insert((kind, id), text.clone());
    Ok(text)
}

/// A search in one segment.
pub(crate) struct Query<'a> {
    pub agent: Option<&'a str>,
    pub patient: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: usize,
}

impl Reader {
    pub(crate) fn open(path: &Path) -> Result<Reader, String> {
        let conn = open_ro(path)?;
        let meta = read_meta(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Reader {
            conn,
            meta,
            texts: HashMap::new(),
        })
    }

    fn key_id(&self, table: &str, text: &str) -> Result<Option<i64>, String> {
        self.conn
            .prepare_cached(&format!("SELECT id FROM {table} WHERE text = ?1"))
            .and_then(|mut s| s.query_row([text], |r| r.get(0)).optional())
            .map_err(db)
    }

    /// The events matching `q`, newest first, as (seq, record).
    pub(crate) fn search(&mut self, q: &Query) -> Result<Vec<(i64, AuditRecord)>, String> {
        let base = self.meta.base;
        let mut sql = String::from("SELECT e.seq, e.t, e.k, e.agent, e.ctx, e.x FROM ");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let order;
        if let Some(p) = q.patient {
            let Some(id) = self.key_id("patient", p.trim())? else {
                return Ok(Vec::new());
            };
            sql.push_str("ev_patient p JOIN ev e ON e.seq = p.seq WHERE p.patient = ?");
            args.push(id.into());
            order = "p.seq";
        } else {
            sql.push_str("ev e WHERE 1");
            order = "e.seq";
        }
        if let Some(a) = q.agent {
            let Some(id) = self.key_id("agent", a.trim())? else {
                return Ok(Vec::new());
            };
            sql.push_str(" AND e.agent = ?");
            args.push(id.into());
        }
        if let Some(t) = q.since {
            sql.push_str(" AND e.t >= ?");
            args.push(t.saturating_sub(base).into());
        }
        if let Some(t) = q.until {
            sql.push_str(" AND e.t < ?");
            args.push(t.saturating_sub(base).into());
        }
        sql.push_str(&format!(" ORDER BY {order} DESC LIMIT ?"));
        args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
        let rows: Vec<(i64, Row)> = {
            let mut stmt = self.conn.prepare_cached(&sql).map_err(db)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        Row {
                            t: r.get(1)?,
                            k: r.get(2)?,
                            agent: r.get(3)?,
                            ctx: r.get(4)?,
                            x: r.get(5)?,
                            patients: Vec::new(),
                        },
                    ))
                })
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (seq, row) in rows {
            let rec = codec::decode(&row, base, self).map_err(|e| format!("entry {seq}: {e}"))?;
            out.push((seq, rec));
        }
        Ok(out)
    }
}
