//! SQLite index tables: one table per value shape, keyed by parameter key, value and `rid`.

use crate::extract::{Row, extract};
use rusqlite::{Connection, params};
use serde_json::Value;

/// DDL of the index tables. Every table starts its main index with the parameter key and the
/// value, ends it with `rid`, so a search reads one index range and yields rids; the
/// `(rid, param)` indexes serve re-indexing, `:missing` and sorting. `grp` ties the components
/// of one composite value together (0 outside composites; costs no bytes in SQLite's record
/// format). Only current, non-deleted versions have rows.
pub const SQLITE_DDL: &str = "
CREATE TABLE IF NOT EXISTS sp_token (
  param TEXT NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (param, code, system, rid, grp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_token_rid ON sp_token (rid, param);

CREATE TABLE IF NOT EXISTS sp_string (
  param TEXT NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (param, norm, exact, rid, grp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_string_rid ON sp_string (rid, param);

CREATE TABLE IF NOT EXISTS sp_ref (
  param TEXT NOT NULL, ref_id TEXT NOT NULL, ref_type TEXT NOT NULL,
  version TEXT NOT NULL, url TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (param, ref_id, ref_type, url, version, rid, grp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_ref_url ON sp_ref (param, url, version, rid) WHERE url <> '';
CREATE INDEX IF NOT EXISTS sp_ref_target ON sp_ref (ref_type, ref_id, param, rid);
CREATE INDEX IF NOT EXISTS sp_ref_rid ON sp_ref (rid, param);

CREATE TABLE IF NOT EXISTS sp_date (
  rid INTEGER NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sp_date_lo ON sp_date (param, lo, hi, rid);
CREATE INDEX IF NOT EXISTS sp_date_hi ON sp_date (param, hi, lo, rid);
CREATE INDEX IF NOT EXISTS sp_date_rid ON sp_date (rid, param);

CREATE TABLE IF NOT EXISTS sp_number (
  rid INTEGER NOT NULL, param TEXT NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
  grp INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sp_number_lo ON sp_number (param, lo, hi, rid);
CREATE INDEX IF NOT EXISTS sp_number_rid ON sp_number (rid, param);

CREATE TABLE IF NOT EXISTS sp_quantity (
  rid INTEGER NOT NULL, param TEXT NOT NULL, canon INTEGER NOT NULL,
  system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL,
  lo REAL NOT NULL, hi REAL NOT NULL, grp INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sp_quantity_code ON sp_quantity (param, canon, code, lo, hi, rid);
CREATE INDEX IF NOT EXISTS sp_quantity_lo ON sp_quantity (param, canon, lo, hi, rid);
CREATE INDEX IF NOT EXISTS sp_quantity_rid ON sp_quantity (rid, param);

CREATE TABLE IF NOT EXISTS sp_uri (
  param TEXT NOT NULL, value TEXT NOT NULL,
  rid INTEGER NOT NULL, grp INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (param, value, rid, grp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_uri_rid ON sp_uri (rid, param);
";

pub(crate) const TABLES: [&str; 7] = [
    "sp_token",
    "sp_string",
    "sp_ref",
    "sp_date",
    "sp_number",
    "sp_quantity",
    "sp_uri",
];

/// Replace the index rows of resource `rid` with those extracted from `resource` (its
/// current version). Runs inside the caller's transaction.
pub fn sqlite_index(tx: &Connection, rid: i64, resource: &Value) -> rusqlite::Result<()> {
    sqlite_unindex(tx, rid)?;
    sqlite_index_new(tx, rid, resource)
}

/// Write the index rows of a resource that has none yet (just created, or re-created after a
/// deletion): skips the seven deletes of [`sqlite_index`].
pub fn sqlite_index_new(tx: &Connection, rid: i64, resource: &Value) -> rusqlite::Result<()> {
    for r in extract(resource) {
        let (k, g) = (r.key.as_str(), r.grp);
        match &r.row {
            Row::Token { system, code } => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO sp_token (param, code, system, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![k, code, system, rid, g])?;
            }
            Row::Str { norm, exact } => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO sp_string (param, norm, exact, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![k, norm, exact, rid, g])?;
            }
            Row::Ref {
                ref_type,
                ref_id,
                version,
                url,
            } => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO sp_ref (param, ref_id, ref_type, version, url, rid, grp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![k, ref_id, ref_type, version, url, rid, g])?;
            }
            Row::Date { lo, hi } => {
                tx.prepare_cached(
                    "INSERT INTO sp_date (rid, param, lo, hi, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![rid, k, lo, hi, g])?;
            }
            Row::Number { lo, hi } => {
                tx.prepare_cached(
                    "INSERT INTO sp_number (rid, param, lo, hi, grp) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![rid, k, lo, hi, g])?;
            }
            Row::Quantity {
                canon,
                system,
                code,
                unit,
                lo,
                hi,
            } => {
                tx.prepare_cached(
                    "INSERT INTO sp_quantity (rid, param, canon, system, code, unit, lo, hi, grp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![rid, k, *canon as i64, system, code, unit, lo, hi, g])?;
            }
            Row::Uri(v) => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO sp_uri (param, value, rid, grp) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![k, v, rid, g])?;
            }
        }
    }
    Ok(())
}

/// Remove every index row of resource `rid` (on delete).
pub fn sqlite_unindex(tx: &Connection, rid: i64) -> rusqlite::Result<()> {
    for t in TABLES {
        tx.prepare_cached(&format!("DELETE FROM {t} WHERE rid = ?1"))?
            .execute([rid])?;
    }
    Ok(())
}
