//! SQLite index tables: one table per value shape, keyed by parameter id, value and `rid`.

use issho_search::geo::unit_vector;
use issho_search::values::system_id;
use issho_search::{IndexRow, Prepared, Registry, Row, extract_in};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// Version of the index format (tables and extraction rules). When it changes, [`SqliteIndex::open`]
/// drops the index tables and rebuilds them from the current resources: an update removes the
/// rows of the superseded version by extracting them again from its JSON, which is only exact
/// when they were written by the same rules. (4: composites that share their components'
/// rows have none of their own, issho-search `composite`; 5: the other composites' groups
/// numbered as in format 3 again.)
pub const INDEX_FORMAT: i64 = 5;

/// The FTS5 table of the narrative and content tokens, one row per resource (`rowid` = `rid`).
/// Its `ascii` tokenizer keeps every non-ASCII character and splits only on ASCII
/// non-alphanumerics, so FTS5 sees exactly the tokens issho-search made (space-separated).
pub(crate) const FTS_DDL: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS sp_text USING fts5(\
narrative, content, content='', contentless_delete=1, tokenize='ascii')";

/// DDL of the index tables.
///
/// - `sp_param` numbers the parameter keys (`Observation.code`, `Observation.code#text`,
///   `Observation.code-value-quantity$0`); every index row carries the small integer `param`.
///   Ids are assigned once and never change; new keys get new ids.
/// - Every value table is a `WITHOUT ROWID` table whose primary key starts with the parameter
///   and the searched value and ends with `rid`, so a search reads one key range and yields
///   rids. `grp` ties the components of one composite value together (0 outside composites;
///   0 and 1 cost no bytes in SQLite's record format).
/// - There is no general `(rid, …)` index: a resource's rows are removed by extracting them
///   from the superseded version's JSON and deleting them by primary key. Only `sp_ref`
///   (`_include`, `_has`) and `sp_date` (sorting by date) have a `(rid, param)` index.
/// - Code systems are stored as [`system_id`]s (a 6-byte hash instead of the URI).
/// - `sp_geo` holds positions (`near`) with their points on the unit sphere (`x`, `y`, `z`), so
///   that the exact great-circle test needs no trigonometry in SQL (see `geo`).
/// - `sp_text` is an FTS5 table of the full-text tokens (`_text`, `_content`), one row per
///   resource with `rowid` = `rid`. It is contentless (the tokens are not stored again, only
///   the inverted index) with `contentless_delete=1`, so a row is deleted by its rowid.
/// - Only current, non-deleted versions have rows.
const DDL: &str = "
CREATE TABLE IF NOT EXISTS sp_param (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);

CREATE TABLE IF NOT EXISTS sp_token (
  param INTEGER NOT NULL, code TEXT NOT NULL, system INTEGER NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, code, system, rid, grp)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sp_string (
  param INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, norm, exact, rid, grp)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sp_ref (
  param INTEGER NOT NULL, ref_id TEXT NOT NULL, ref_type TEXT NOT NULL,
  url TEXT NOT NULL, version TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, ref_id, ref_type, url, version, rid, grp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_ref_rid ON sp_ref (rid, param);

CREATE TABLE IF NOT EXISTS sp_date (
  param INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, lo, hi, rid, grp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_date_hi ON sp_date (param, hi);
CREATE INDEX IF NOT EXISTS sp_date_rid ON sp_date (rid, param);

CREATE TABLE IF NOT EXISTS sp_number (
  param INTEGER NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, lo, hi, rid, grp)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sp_quantity (
  param INTEGER NOT NULL, canon INTEGER NOT NULL, code TEXT NOT NULL,
  lo REAL NOT NULL, hi REAL NOT NULL, system INTEGER NOT NULL, unit TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, canon, code, lo, hi, system, unit, rid, grp)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sp_uri (
  param INTEGER NOT NULL, value TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, value, rid, grp)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sp_geo (
  param INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
  x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL,
  PRIMARY KEY (param, lat, lon, rid, grp)) WITHOUT ROWID;
";

/// The columns of each value table (in the order of [`TABLES`]), as inserted.
const COLUMNS: [&str; 8] = [
    "param, code, system, rid, grp",
    "param, norm, exact, rid, grp",
    "param, ref_id, ref_type, url, version, rid, grp",
    "param, lo, hi, rid, grp",
    "param, lo, hi, rid, grp",
    "param, canon, code, lo, hi, system, unit, rid, grp",
    "param, value, rid, grp",
    "param, lat, lon, x, y, z, rid, grp",
];

/// Rows per insert statement: a table's rows go in chunks of these sizes (largest first).
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// The table (index into [`TABLES`]) of a row; `sp_text` rows are written one by one.
fn table_of(row: &Row) -> usize {
    match row {
        Row::Token { .. } => 0,
        Row::Str { .. } => 1,
        Row::Ref { .. } => 2,
        Row::Date { .. } => 3,
        Row::Number { .. } => 4,
        Row::Quantity { .. } => 5,
        Row::Uri(_) => 6,
        Row::Geo { .. } => 7,
        Row::Text { .. } => TEXT,
    }
}

/// Order of two rows of the same table by the first column of its key after `param` (the
/// rest of the key is left to SQLite): enough to keep consecutive inserts on the same pages.
fn leading_cmp(a: &Row, b: &Row) -> Ordering {
    match (a, b) {
        (Row::Token { code: x, .. }, Row::Token { code: y, .. }) => x.cmp(y),
        (Row::Str { norm: x, .. }, Row::Str { norm: y, .. }) => x.cmp(y),
        (Row::Ref { ref_id: x, .. }, Row::Ref { ref_id: y, .. }) => x.cmp(y),
        (Row::Date { lo: x, .. }, Row::Date { lo: y, .. }) => x.cmp(y),
        (Row::Number { lo: x, .. }, Row::Number { lo: y, .. }) => x.total_cmp(y),
        (
            Row::Quantity {
                canon: c1, code: x, ..
            },
            Row::Quantity {
                canon: c2, code: y, ..
            },
        ) => c1.cmp(c2).then_with(|| x.cmp(y)),
        (Row::Uri(x), Row::Uri(y)) => x.cmp(y),
        (Row::Geo { lat: x, .. }, Row::Geo { lat: y, .. }) => x.total_cmp(y),
        _ => Ordering::Equal,
    }
}

/// `INSERT OR IGNORE INTO <table> (...) VALUES (...), ...` for `n` rows (one of [`CHUNKS`]).
fn insert_sql(table: usize, n: usize) -> &'static str {
    static SQL: OnceLock<Vec<Vec<String>>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..TABLES.len())
            .map(|t| {
                let cols = COLUMNS[t].split(", ").count();
                let one = format!("({})", vec!["?"; cols].join(", "));
                CHUNKS
                    .iter()
                    .map(|&c| {
                        format!(
                            "INSERT OR IGNORE INTO {} ({}) VALUES {}",
                            TABLES[t],
                            COLUMNS[t],
                            vec![one.as_str(); c].join(", ")
                        )
                    })
                    .collect()
            })
            .collect()
    });
    let i = CHUNKS
        .iter()
        .position(|&c| c == n)
        .unwrap_or(CHUNKS.len() - 1);
    &all[table][i]
}

/// [`table_of`] for `sp_text`, which is not one of [`TABLES`] (it has no `param`).
const TEXT: usize = usize::MAX;

/// The value tables.
pub(crate) const TABLES: [&str; 8] = [
    "sp_token",
    "sp_string",
    "sp_ref",
    "sp_date",
    "sp_number",
    "sp_quantity",
    "sp_uri",
    "sp_geo",
];

/// The search index of one SQLite database: the tables, and the database ids of the
/// parameter keys (loaded at open).
pub struct SqliteIndex {
    /// The parameters whose rows this index writes.
    reg: Arc<Registry>,
    /// Database id of each key of [`Registry::keys`], by its number.
    ids: Vec<i64>,
    /// Numbers of the keys whose rows are still being built (of pending custom parameters).
    pending: HashSet<u32>,
}

/// `sp_meta` name marking a key whose rows are still being built.
const PENDING: &str = "pending:";

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

impl SqliteIndex {
    /// Create (or upgrade) the index tables, number the parameter keys, and load their ids.
    /// When the tables were written by another [`INDEX_FORMAT`] they are dropped and rebuilt
    /// from the current bodies in the store's `resources` table (`rid`, `deleted`, `body`).
    pub fn open(conn: &Connection) -> rusqlite::Result<SqliteIndex> {
        conn.execute_batch("SAVEPOINT issho_index_open")?;
        let r = Self::open_inner(conn, Registry::r4_shared().clone());
        conn.execute_batch(if r.is_ok() {
            "RELEASE issho_index_open"
        } else {
            "ROLLBACK TO issho_index_open; RELEASE issho_index_open"
        })?;
        r
    }

    fn open_inner(conn: &Connection, reg: Arc<Registry>) -> rusqlite::Result<SqliteIndex> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sp_meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;",
        )?;
        let format: Option<i64> = conn
            .query_row("SELECT value FROM sp_meta WHERE name = 'format'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let rebuild =
            format != Some(INDEX_FORMAT) && (format.is_some() || table_exists(conn, "sp_token")?);
        if rebuild {
            // Older tables (also the first format, which had no `sp_meta`).
            for t in TABLES.iter().chain(&["sp_text", "sp_param"]) {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS {t}"))?;
            }
        }
        conn.execute_batch(DDL)?;
        conn.execute_batch(FTS_DDL)?;
        conn.execute(
            "INSERT OR REPLACE INTO sp_meta (name, value) VALUES ('format', ?1)",
            [INDEX_FORMAT],
        )?;
        let (index, _) = Self::number_keys(conn, reg)?;
        if rebuild && table_exists(conn, "resources")? {
            index.rebuild(conn)?;
        }
        Ok(index)
    }

    /// Database ids for every key of `reg` (new keys get new ids); returns the index and the
    /// keys that were new.
    fn number_keys(
        conn: &Connection,
        reg: Arc<Registry>,
    ) -> rusqlite::Result<(SqliteIndex, Vec<String>)> {
        let known = Self::known_keys(conn)?;
        let keys = reg.keys();
        let mut ids = Vec::with_capacity(keys.len());
        let mut added = Vec::new();
        {
            let mut ins = conn.prepare_cached("INSERT INTO sp_param (key) VALUES (?1)")?;
            for k in keys {
                let id = match known.get(k) {
                    Some(id) => *id,
                    None => {
                        ins.execute([k])?;
                        added.push(k.clone());
                        conn.last_insert_rowid()
                    }
                };
                ids.push(id);
            }
        }
        let index = SqliteIndex {
            reg,
            ids,
            pending: HashSet::new(),
        };
        Ok((index, added))
    }

    fn known_keys(conn: &Connection) -> rusqlite::Result<HashMap<String, i64>> {
        let mut known = HashMap::new();
        let mut st = conn.prepare_cached("SELECT key, id FROM sp_param")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (k, id) = row?;
            known.insert(k, id);
        }
        Ok(known)
    }

    /// The parameters this index writes (with their pending flags).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.reg
    }

    /// Switch to the parameters of `reg` (the R4 ones plus the deployment's custom ones), in
    /// the caller's write transaction:
    /// - keys new to the database are numbered and marked pending: their rows must be built
    ///   for the resources already stored ([`SqliteIndex::reindex`]) before a search may
    ///   use them; keys marked pending earlier stay pending;
    /// - keys in the database that `reg` no longer has (a removed or changed custom
    ///   parameter) lose all their rows and their number, so that defining them again
    ///   starts clean.
    ///
    /// Returns the index to use from now on; its registry has the pending flags set.
    pub fn sync(&self, conn: &Connection, reg: Registry) -> rusqlite::Result<SqliteIndex> {
        let wanted: HashSet<&str> = reg.keys().iter().map(String::as_str).collect();
        let spec: HashSet<&str> = Registry::r4().keys().iter().map(String::as_str).collect();
        for (k, id) in Self::known_keys(conn)? {
            if wanted.contains(k.as_str()) || spec.contains(k.as_str()) {
                continue;
            }
            for t in TABLES {
                conn.prepare_cached(&format!("DELETE FROM {t} WHERE param = ?1"))?
                    .execute([id])?;
            }
            conn.prepare_cached("DELETE FROM sp_param WHERE id = ?1")?
                .execute([id])?;
            conn.prepare_cached("DELETE FROM sp_meta WHERE name = ?1")?
                .execute([format!("{PENDING}{k}")])?;
        }
        let (_, added) = Self::number_keys(conn, Arc::new(reg.clone()))?;
        for k in &added {
            conn.prepare_cached("INSERT OR REPLACE INTO sp_meta (name, value) VALUES (?1, 1)")?
                .execute([format!("{PENDING}{k}")])?;
        }
        let pending = Self::pending_keys(conn)?;
        let mut reg = reg;
        reg.set_pending(&pending);
        let (mut index, _) = Self::number_keys(conn, Arc::new(reg))?;
        index.pending = index
            .reg
            .keys()
            .iter()
            .enumerate()
            .filter(|(_, k)| pending.contains(*k))
            .map(|(i, _)| i as u32)
            .collect();
        Ok(index)
    }

    /// Keys whose rows are still being built.
    pub fn pending_keys(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
        let mut st = conn.prepare_cached("SELECT name FROM sp_meta WHERE name LIKE 'pending:%'")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = HashSet::new();
        for r in rows {
            out.insert(r?[PENDING.len()..].to_string());
        }
        Ok(out)
    }

    /// The keys this index is building rows for.
    pub fn pending(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .pending
            .iter()
            .map(|&n| self.reg.keys()[n as usize].clone())
            .collect();
        v.sort();
        v
    }

    /// Write the rows of the pending keys for resource `rid` (current version `resource`);
    /// idempotent. Runs in the caller's write transaction, so the body read there is the one
    /// indexed.
    pub fn reindex(&self, conn: &Connection, rid: i64, resource: &Value) -> rusqlite::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = extract_in(&self.reg, resource);
        self.insert_rows(
            conn,
            rid,
            rows.iter().filter(|r| self.pending.contains(&r.key)),
        )
    }

    /// The rows of `keys` are complete: clear their pending marks (keys no longer pending
    /// in the database stay as they are). Returns the index to use from now on.
    pub fn finish(&self, conn: &Connection, keys: &[String]) -> rusqlite::Result<SqliteIndex> {
        for k in keys {
            conn.prepare_cached("DELETE FROM sp_meta WHERE name = ?1")?
                .execute([format!("{PENDING}{k}")])?;
        }
        let mut reg = (*self.reg).clone();
        self.sync(conn, {
            reg.set_pending(&HashSet::new());
            reg
        })
    }

    /// Index every current resource again (after a format change).
    fn rebuild(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut st =
            conn.prepare("SELECT rid, body FROM resources WHERE deleted = 0 AND body IS NOT NULL")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let rid: i64 = row.get(0)?;
            let body = row.get_ref(1)?;
            let bytes = match body {
                rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => b,
                _ => continue,
            };
            if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
                self.insert(conn, rid, &v)?;
            }
        }
        Ok(())
    }

    /// Write the index rows of resource `rid`, which has none yet (just created, or created
    /// again after a deletion). Runs inside the caller's transaction.
    pub fn insert(&self, conn: &Connection, rid: i64, resource: &Value) -> rusqlite::Result<()> {
        let rows = extract_in(&self.reg, resource);
        self.insert_rows(conn, rid, rows.iter())
    }

    /// Extract the index rows of `resource` ahead of its write transaction, off the writer
    /// thread. What the store sets in the transaction (`meta.versionId`, `meta.lastUpdated`)
    /// has no index rows (`_lastUpdated` is the `resources.last_updated` column), so the rows
    /// are those of the stored version.
    pub fn prepare(&self, resource: &Value) -> Prepared {
        Prepared::new(&self.reg, resource)
    }

    /// [`SqliteIndex::insert`] with rows from [`SqliteIndex::prepare`]; when the parameters
    /// changed in between (another registry), the rows are extracted afresh.
    pub fn insert_prepared(
        &self,
        conn: &Connection,
        rid: i64,
        resource: &Value,
        prepared: Prepared,
    ) -> rusqlite::Result<()> {
        if !prepared.is_for(&self.reg) {
            return self.insert(conn, rid, resource);
        }
        self.insert_rows(conn, rid, prepared.rows().iter())
    }

    /// Insert rows, several per statement (one statement runs per table and chunk of up to
    /// [`CHUNKS`]`[0]` rows instead of one per row).
    fn insert_rows<'r>(
        &self,
        conn: &Connection,
        rid: i64,
        rows: impl Iterator<Item = &'r IndexRow>,
    ) -> rusqlite::Result<()> {
        let mut by_table: [Vec<(i64, &IndexRow)>; 8] = Default::default();
        for r in rows {
            match table_of(&r.row) {
                TEXT => self.write(conn, rid, r, true)?,
                t => by_table[t].push((rid, r)),
            }
        }
        self.insert_tables(conn, &by_table)
    }

    /// The rows of a resource about to be created, for [`SqliteIndex::insert_many`]: its
    /// prepared rows when they were extracted with this index's parameters, else extracted
    /// now.
    pub fn rows_of(&self, resource: &Value, prepared: Option<Prepared>) -> Vec<IndexRow> {
        match prepared {
            Some(p) if p.is_for(&self.reg) => p.into_rows(),
            _ => extract_in(&self.reg, resource),
        }
    }

    /// Write the rows of several resources that have none yet (a job's new resources,
    /// gathered by the writer): per table, sorted by the table's key, so that consecutive
    /// inserts land on the same B-tree pages, in statements of up to [`CHUNKS`]`[0]` rows.
    pub fn insert_many(
        &self,
        conn: &Connection,
        gathered: &[(i64, Vec<IndexRow>)],
    ) -> rusqlite::Result<()> {
        let mut by_table: [Vec<(i64, &IndexRow)>; 8] = Default::default();
        for (rid, rows) in gathered {
            for r in rows {
                match table_of(&r.row) {
                    TEXT => self.write(conn, *rid, r, true)?,
                    t => by_table[t].push((*rid, r)),
                }
            }
        }
        for rows in &mut by_table {
            rows.sort_unstable_by(|(ra, a), (rb, b)| {
                self.ids[a.key as usize]
                    .cmp(&self.ids[b.key as usize])
                    .then_with(|| leading_cmp(&a.row, &b.row))
                    .then(ra.cmp(rb))
            });
        }
        self.insert_tables(conn, &by_table)
    }

    /// Insert each table's rows in chunks of [`CHUNKS`].
    fn insert_tables(
        &self,
        conn: &Connection,
        by_table: &[Vec<(i64, &IndexRow)>; 8],
    ) -> rusqlite::Result<()> {
        let mut args: Vec<ToSqlOutput<'_>> = Vec::new();
        for (t, rows) in by_table.iter().enumerate() {
            let mut rest: &[(i64, &IndexRow)] = rows;
            while !rest.is_empty() {
                let n = CHUNKS
                    .iter()
                    .copied()
                    .find(|&c| c <= rest.len())
                    .unwrap_or(1);
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                args.clear();
                for (rid, r) in chunk {
                    self.values(*rid, r, &mut args);
                }
                conn.prepare_cached(insert_sql(t, n))?
                    .execute(rusqlite::params_from_iter(args.iter()))?;
            }
        }
        Ok(())
    }

    /// The column values of a row, in the order of [`COLUMNS`].
    fn values<'r>(&self, rid: i64, r: &'r IndexRow, out: &mut Vec<ToSqlOutput<'r>>) {
        let int = |v: i64| ToSqlOutput::Owned(SqlValue::Integer(v));
        let real = |v: f64| ToSqlOutput::Owned(SqlValue::Real(v));
        let text = |v: &'r str| ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes()));
        out.push(int(self.ids[r.key as usize]));
        match &r.row {
            Row::Token { system, code } => {
                out.extend([text(code), int(system_id(system))]);
            }
            Row::Str { norm, exact } => out.extend([text(norm), text(exact)]),
            Row::Ref {
                ref_type,
                ref_id,
                version,
                url,
            } => out.extend([text(ref_id), text(ref_type), text(url), text(version)]),
            Row::Date { lo, hi } => out.extend([int(*lo), int(*hi)]),
            Row::Number { lo, hi } => out.extend([real(*lo), real(*hi)]),
            Row::Quantity {
                canon,
                system,
                code,
                unit,
                lo,
                hi,
            } => out.extend([
                int(*canon as i64),
                text(code),
                real(*lo),
                real(*hi),
                int(system_id(system)),
                text(unit),
            ]),
            Row::Uri(v) => out.push(text(v)),
            Row::Geo { lat, lon } => {
                let [x, y, z] = unit_vector(*lat, *lon);
                out.extend([real(*lat), real(*lon), real(x), real(y), real(z)]);
            }
            // Written by `write` (see `insert_rows`).
            Row::Text { .. } => {}
        }
        out.extend([int(rid), int(i64::from(r.grp))]);
    }

    /// Replace the rows of `previous` (the version being superseded, exactly as it was
    /// indexed) by those of `resource`: only the rows that differ are deleted or inserted.
    pub fn replace(
        &self,
        conn: &Connection,
        rid: i64,
        previous: &Value,
        resource: &Value,
    ) -> rusqlite::Result<()> {
        let old = extract_in(&self.reg, previous);
        let new = extract_in(&self.reg, resource);
        let mut added = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let ord = match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    self.write(conn, rid, &old[i], false)?;
                    i += 1;
                }
                Ordering::Greater => {
                    added.push(&new[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            }
        }
        self.insert_rows(conn, rid, added.into_iter())
    }

    /// Remove the index rows of resource `rid`, whose current version is `previous` (on
    /// delete).
    pub fn remove(&self, conn: &Connection, rid: i64, previous: &Value) -> rusqlite::Result<()> {
        for r in extract_in(&self.reg, previous) {
            self.write(conn, rid, &r, false)?;
        }
        Ok(())
    }

    /// Remove every index row of resource `rid` without knowing what was indexed: scans the
    /// tables that have no `rid` index (slow; for when the previous version is unreadable).
    pub fn remove_all(&self, conn: &Connection, rid: i64) -> rusqlite::Result<()> {
        for t in TABLES {
            conn.prepare_cached(&format!("DELETE FROM {t} WHERE rid = ?1"))?
                .execute([rid])?;
        }
        conn.prepare_cached("DELETE FROM sp_text WHERE rowid = ?1")?
            .execute([rid])?;
        Ok(())
    }

    /// Insert (or delete) one row.
    fn write(
        &self,
        conn: &Connection,
        rid: i64,
        r: &IndexRow,
        insert: bool,
    ) -> rusqlite::Result<()> {
        let k = self.ids[r.key as usize];
        let g = r.grp;
        let sql = |ins: &'static str, del: &'static str| if insert { ins } else { del };
        match &r.row {
            Row::Token { system, code } => {
                conn.prepare_cached(sql(
                    "INSERT OR IGNORE INTO sp_token (param, code, system, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                    "DELETE FROM sp_token WHERE param = ?1 AND code = ?2 AND system = ?3 AND rid = ?4 AND grp = ?5",
                ))?
                .execute(params![k, code, system_id(system), rid, g])?;
            }
            Row::Str { norm, exact } => {
                conn.prepare_cached(sql(
                    "INSERT OR IGNORE INTO sp_string (param, norm, exact, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                    "DELETE FROM sp_string WHERE param = ?1 AND norm = ?2 AND exact = ?3 AND rid = ?4 AND grp = ?5",
                ))?
                .execute(params![k, norm, exact, rid, g])?;
            }
            Row::Ref {
                ref_type,
                ref_id,
                version,
                url,
            } => {
                conn.prepare_cached(sql(
                    "INSERT OR IGNORE INTO sp_ref (param, ref_id, ref_type, url, version, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    "DELETE FROM sp_ref WHERE param = ?1 AND ref_id = ?2 AND ref_type = ?3 AND url = ?4 AND version = ?5 AND rid = ?6 AND grp = ?7",
                ))?
                .execute(params![k, ref_id, ref_type, url, version, rid, g])?;
            }
            Row::Date { lo, hi } => {
                conn.prepare_cached(sql(
                    "INSERT OR IGNORE INTO sp_date (param, lo, hi, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                    "DELETE FROM sp_date WHERE param = ?1 AND lo = ?2 AND hi = ?3 AND rid = ?4 AND grp = ?5",
                ))?
                .execute(params![k, lo, hi, rid, g])?;
            }
            Row::Number { lo, hi } => {
                conn.prepare_cached(sql(
                    "INSERT OR IGNORE INTO sp_number (param, lo, hi, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                    "DELETE FROM sp_number WHERE param = ?1 AND lo = ?2 AND hi = ?3 AND rid = ?4 AND grp = ?5",
                ))?
                .execute(params![k, lo, hi, rid, g])?;
            }
            Row::Quantity {
                canon,
                system,
                code,
                unit,
                lo,
                hi,
            } => {
                conn.prepare_cached(sql(
                    "INSERT OR IGNORE INTO sp_quantity (param, canon, code, lo, hi, system, unit, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    "DELETE FROM sp_quantity WHERE param = ?1 AND canon = ?2 AND code = ?3 AND lo = ?4 AND hi = ?5 AND system = ?6 AND unit = ?7 AND rid = ?8 AND grp = ?9",
                ))?
                .execute(params![
                    k,
                    *canon as i64,
                    code,
                    lo,
                    hi,
                    system_id(system),
                    unit,
                    rid,
                    g
                ])?;
            }
            Row::Uri(v) => {
                conn.prepare_cached(sql(
                    "INSERT OR IGNORE INTO sp_uri (param, value, rid, grp) VALUES (?1, ?2, ?3, ?4)",
                    "DELETE FROM sp_uri WHERE param = ?1 AND value = ?2 AND rid = ?3 AND grp = ?4",
                ))?
                .execute(params![k, v, rid, g])?;
            }
            Row::Geo { lat, lon } => {
                if insert {
                    let [x, y, z] = unit_vector(*lat, *lon);
                    conn.prepare_cached(
                        "INSERT OR IGNORE INTO sp_geo (param, lat, lon, x, y, z, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![k, lat, lon, x, y, z, rid, g])?;
                } else {
                    conn.prepare_cached(
                        "DELETE FROM sp_geo WHERE param = ?1 AND lat = ?2 AND lon = ?3 AND rid = ?4 AND grp = ?5",
                    )?
                    .execute(params![k, lat, lon, rid, g])?;
                }
            }
            Row::Text { narrative, content } => {
                // One row per resource: its rowid is the rid.
                if insert {
                    conn.prepare_cached(
                        "INSERT INTO sp_text (rowid, narrative, content) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![rid, narrative, content])?;
                } else {
                    conn.prepare_cached("DELETE FROM sp_text WHERE rowid = ?1")?
                        .execute([rid])?;
                }
            }
        }
        Ok(())
    }
}
