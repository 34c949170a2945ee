//! The raw-store baseline: the physical limit for ingest on this machine.

use crate::server::dir_size;
use std::path::Path;
use std::time::Instant;

/// The physical limit for ingest on this machine: the demo population's JSON bodies and all
/// their index rows written by a minimal loop into SQLite (same index code and tables as the
/// store, one transaction per 1,000 resources). Returns (resources, seconds, bytes on disk).
pub fn raw_baseline(cfg: &issho_demo::DemoConfig, dir: &Path) -> Result<(usize, f64, u64), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let db = |e: rusqlite::Error| e.to_string();
    let conn = rusqlite::Connection::open(dir.join("raw.db")).map_err(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE resources (rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, \
         body BLOB NOT NULL, UNIQUE(type, id));",
    )
    .map_err(db)?;
    let index = issho_store_sqlite::SqliteIndex::open(&conn).map_err(db)?;
    let start = Instant::now();
    let mut n = 0usize;
    let mut in_tx = 0usize;
    conn.execute_batch("BEGIN").map_err(db)?;
    let mut put = |rt: &str, id: &str, body: &serde_json::Value| -> Result<(), String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        conn.prepare_cached("INSERT INTO resources (type, id, body) VALUES (?1, ?2, ?3)")
            .map_err(db)?
            .execute(rusqlite::params![rt, id, bytes])
            .map_err(db)?;
        index
            .insert(&conn, conn.last_insert_rowid(), body)
            .map_err(db)?;
        n += 1;
        in_tx += 1;
        if in_tx >= 1000 {
            conn.execute_batch("COMMIT; BEGIN").map_err(db)?;
            in_tx = 0;
        }
        Ok(())
    };
    for r in issho_demo::reference_resources() {
        put(r.resource_type, &r.id, &r.resource)?;
    }
    for i in 0..cfg.persons {
        for r in issho_demo::person_resources(cfg, i) {
            put(r.resource_type, &r.id, &r.resource)?;
        }
    }
    conn.execute_batch("COMMIT").map_err(db)?;
    let secs = start.elapsed().as_secs_f64();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(db)?;
    drop(conn);
    let bytes = dir_size(dir);
    let _ = std::fs::remove_dir_all(dir);
    Ok((n, secs, bytes))
}
