//! The distribution key (`person`) of single resources, and the store's own settings
//! (`store_meta`): small statements shared by the readers and the writer.

use issho_store::Result;
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// `None`: no such resource (or deleted); `Some(None)`: a resource that belongs to no person.
pub(crate) fn person_of(conn: &Connection, t: &str, id: &str) -> Result<Option<Option<String>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT person FROM resources WHERE type = ?1 AND id = ?2 AND deleted = 0",
    )?;
    Ok(stmt
        .query_row(params![t, id], |r| r.get::<_, Option<String>>(0))
        .optional()?)
}

pub(crate) fn set_person(conn: &Connection, rid: i64, person: Option<&str>) -> Result<()> {
    conn.prepare_cached("UPDATE resources SET person = ?2 WHERE rid = ?1")?
        .execute(params![rid, person])?;
    Ok(())
}

pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT value FROM store_meta WHERE key = ?1")?;
    Ok(stmt.query_row([key], |r| r.get(0)).optional()?)
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO store_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// The version and deletion flag of a resource's row, without its body.
pub(crate) fn state(conn: &Connection, t: &str, id: &str) -> Result<Option<(u64, bool)>> {
    let mut stmt =
        conn.prepare_cached("SELECT version, deleted FROM resources WHERE type = ?1 AND id = ?2")?;
    Ok(stmt
        .query_row(params![t, id], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? != 0))
        })
        .optional()?)
}

pub(crate) fn settings(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM store_meta ORDER BY key")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
