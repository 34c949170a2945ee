//! Test helpers: an in-memory store with the lead's `resources` table and the index DDL.
#![allow(dead_code)]

use rusqlite::{Connection, params_from_iter};
use serde_json::Value;

pub const RESOURCES_DDL: &str = "CREATE TABLE resources (
  rid INTEGER PRIMARY KEY,
  type TEXT NOT NULL, id TEXT NOT NULL,
  version INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  person TEXT,
  body BLOB,
  UNIQUE(type, id));";

/// An in-memory database with the index tables, and its index.
pub struct Db {
    pub conn: Connection,
    pub index: issho_store_sqlite::SqliteIndex,
}

impl std::ops::Deref for Db {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

pub fn open() -> Db {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(RESOURCES_DDL).unwrap();
    let index = issho_store_sqlite::SqliteIndex::open(&c).unwrap();
    Db { conn: c, index }
}

/// Store and index a resource; returns its rid.
pub fn put(
    c: &Connection,
    index: &issho_store_sqlite::SqliteIndex,
    r: &Value,
    last_updated: i64,
) -> i64 {
    let t = r["resourceType"].as_str().unwrap();
    let id = r["id"].as_str().unwrap();
    c.execute(
        "INSERT INTO resources (type, id, version, last_updated, body) VALUES (?1, ?2, 1, ?3, ?4)",
        rusqlite::params![t, id, last_updated, r.to_string()],
    )
    .unwrap();
    let rid = c.last_insert_rowid();
    index.insert(c, rid, r).unwrap();
    rid
}

/// Parse `query` (`a=1&b=2`, not URL-encoded) for `rt`.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn rids_of(c: &Connection, sql: &str, args: &[rusqlite::types::Value]) -> Vec<i64> {
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    st.query_map(params_from_iter(args.iter()), |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// `type/id` of rids, in the given order.
pub fn names(c: &Connection, rids: &[i64]) -> Vec<String> {
    rids.iter()
        .map(|rid| {
            c.query_row(
                "SELECT type || '/' || id FROM resources WHERE rid = ?1",
                [rid],
                |r| r.get(0),
            )
            .unwrap()
        })
        .collect()
}

/// Run a search; returns `Type/id` in result order.
pub fn search(c: &Connection, rt: Option<&str>, query: &str) -> Vec<String> {
    let q =
        issho_search::parse(rt, &pairs(query), true).unwrap_or_else(|e| panic!("{query}: {e:?}"));
    let (sql, args) = issho_store_sqlite::sqlite_sql::select(&q);
    names(c, &rids_of(c, &sql, &args))
}

pub fn count(c: &Connection, rt: Option<&str>, query: &str) -> i64 {
    let q = issho_search::parse(rt, &pairs(query), true).unwrap();
    let (sql, args) = issho_store_sqlite::sqlite_sql::count(&q);
    c.query_row(&sql, params_from_iter(args.iter()), |r| r.get(0))
        .unwrap()
}

/// Sorted ids (without type) of a search.
pub fn ids(c: &Connection, rt: &str, query: &str) -> Vec<String> {
    let mut v: Vec<String> = search(c, Some(rt), query)
        .into_iter()
        .map(|n| n.split_once('/').unwrap().1.to_string())
        .collect();
    v.sort();
    v
}
