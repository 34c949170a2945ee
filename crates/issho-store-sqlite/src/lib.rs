//! The embedded store: SQLite in WAL mode, one writer thread with group commit, a pool of
//! reader connections.
//!
//! The backend of `issho-store`'s traits: it compiles the store-neutral [`SearchQuery`]s of
//! issho-search to SQLite SQL (`query`) and keeps the search index tables (`index`).
//!
//! Tables (see docs/store.md):
//! - `resources`: one row per logical resource (`rid`), its current version, deletion flag,
//!   distribution key `person` and current body;
//! - `history`: one row per version (`seq` orders all versions globally); the body of a
//!   superseded version lives here, the current version's body lives in `resources` (its history
//!   row's body is NULL), so each version's JSON is stored once.

use issho_search::{Registry, SearchQuery, Test};
use issho_store::*;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

mod alloc;
mod durable;
#[cfg(test)]
mod fts_tests;
mod index;
mod keyed;
mod read;
mod write;
pub use alloc::use_global_allocator;
pub use index::{INDEX_FORMAT, SqliteIndex};
use read::*;
use std::sync::RwLock;
use write::{Writer, WriterTx};

/// The index the writer writes with, replaced when the search parameters change.
type IndexCell = Arc<RwLock<Arc<SqliteIndex>>>;

fn current_index(cell: &IndexCell) -> Arc<SqliteIndex> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS resources (
  rid INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  person TEXT,
  body BLOB,
  UNIQUE(type, id)
);
CREATE INDEX IF NOT EXISTS resources_person ON resources(person) WHERE person IS NOT NULL;
-- The resources of a type in rid order (an index on `type` holds the rowid): searches with no
-- selective condition read a type's resources in result order and stop after a page.
CREATE INDEX IF NOT EXISTS resources_type ON resources(type);
CREATE TABLE IF NOT EXISTS history (
  seq INTEGER PRIMARY KEY,
  rid INTEGER NOT NULL,
  version INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  method TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  body BLOB,
  UNIQUE(rid, version)
);
CREATE INDEX IF NOT EXISTS history_time ON history(last_updated);
"#;

/// Maximum number of queued write jobs committed in one transaction.
const MAX_GROUP: usize = 512;

type Reply = mpsc::SyncSender<Result<Box<dyn Any + Send>>>;

struct Request {
    job: Job,
    reply: Reply,
}

/// The current row of a logical resource: (rid, version, deleted).
type Head = (i64, u64, bool);

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    /// `issho.lock`, exclusively locked while the store is open: one process per data
    /// directory (a second one would run a second writer and a second audit chain head).
    _lock: std::fs::File,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<Checkpointer>>,
    /// The search index as last committed (read by `registry`, replaced by the writer).
    index: IndexCell,
}

/// WAL pages at which the writer checkpoints by itself (a safety net: normally the
/// checkpointer thread keeps the WAL far below it).
const WRITER_CHECKPOINT_PAGES: i64 = 65_536;

/// WAL pages (16 MiB) beyond which the writer completes a checkpoint so that the WAL restarts.
const RESTART_PAGES: i64 = 4_096;

/// Copies committed WAL pages into the database file on its own thread and connection, so the
/// writer never waits for a checkpoint's page copies and database-file fsync (SQLite's
/// automatic checkpoint runs inside the committing writer's COMMIT).
struct Checkpointer {
    /// Commits since the last checkpoint; the writer counts, the checkpointer resets.
    commits: Arc<AtomicI64>,
    /// Set by the checkpointer when the WAL is past RESTART_PAGES; the writer then completes a
    /// checkpoint between transactions so that the WAL restarts.
    wal_big: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer> {
        let conn = open_conn(path, 2 * 1024)?;
        let commits = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wal_big = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, st, big) = (commits.clone(), stop.clone(), wal_big.clone());
        let handle = std::thread::Builder::new()
            .name("issho-checkpoint".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    if c.swap(0, Ordering::Relaxed) > 0 {
                        // PASSIVE: copies what no reader still needs, never blocks the writer
                        // or readers; the next write transaction restarts the WAL when it
                        // was copied entirely.
                        let frames = conn
                            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
                            .unwrap_or(0);
                        // Under continuous writing a PASSIVE checkpoint here never catches up
                        // with the last commit, and the WAL starts over only after a complete
                        // one: past RESTART_PAGES the writer finishes it between two
                        // transactions (copying only the few frames left).
                        if frames > RESTART_PAGES {
                            big.store(true, Ordering::Relaxed);
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(Checkpointer {
            wal_big,
            commits,
            stop,
            handle: Some(handle),
        })
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Open a connection; `cache_kib` is its private page cache. Memory budget: the writer keeps
/// 64 MiB of dirty and hot pages, each reader 8 MiB; reads beyond the caches go through the
/// shared memory map (256 MiB window) and the OS page cache.
fn open_conn(path: &Path, cache_kib: i64) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // The writer alone uses ~25 statements (resource, history, index tables); the default
    // cache of 16 would evict and re-prepare them on every write.
    conn.set_prepared_statement_cache_capacity(256);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is synced at every commit, so an acknowledged write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Plans must not depend on bound values: otherwise SQLite re-prepares statements whose
    // plan it considers value-dependent on every new binding (every read of the current
    // version was re-prepared, 14% of the writer's time).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Open (creating if needed) the store in directory `dir` (file `issho.db`).
    pub fn open(dir: &Path, observer: Arc<dyn Observer>) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("issho.lock"))
            .map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
        if let Err(e) = lock.try_lock() {
            return Err(StoreError::Db(match e {
                std::fs::TryLockError::WouldBlock => format!(
                    "the data directory {} is in use by another issho process (stop it first)",
                    dir.display()
                ),
                std::fs::TryLockError::Error(e) => format!("{}: {e}", dir.display()),
            }));
        }
        let path = dir.join("issho.db");
        let conn = open_conn(&path, 64 * 1024)?;
        // The writer's commits do not wait for the disk: its durability thread syncs the WAL
        // before they are answered (see `durable`).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        // A WAL that once grew large is truncated back to 64 MiB when it restarts.
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::keyed::SCHEMA)?;
        let index: IndexCell = Arc::new(RwLock::new(Arc::new(SqliteIndex::open(&conn)?)));
        let writer_index = index.clone();
        let last: i64 = conn.query_row(
            "SELECT coalesce(max(last_updated), 0) FROM history",
            [],
            |r| r.get(0),
        )?;
        let (tx, rx) = mpsc::channel::<Request>();
        let checkpointer = Checkpointer::start(&path)?;
        let commits = checkpointer.commits.clone();
        let wal_big = checkpointer.wal_big.clone();
        let db = path.clone();
        let handle = std::thread::Builder::new()
            .name("issho-writer".into())
            // Jobs run validation, FHIRPath (patch) and JSON work, all depth-bounded; a roomy
            // stack keeps those bounds far from the thread's limit.
            .stack_size(16 << 20)
            .spawn(move || {
                let w = Writer {
                    index: writer_index,
                    observer,
                    clock: AtomicI64::new(last),
                    commits,
                    wal_big,
                };
                w.run(conn, rx, &db)
            })
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(SqliteStore {
            _lock: lock,
            path,
            sender: Mutex::new(Some(tx)),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpointer)),
            index,
        })
    }

    /// Stop the writer after the queued jobs (called on shutdown; also on drop).
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        if let Some(c) = self
            .checkpointer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            c.finish();
        }
    }

    /// Size of the database files on disk, in bytes (main file + WAL).
    pub fn disk_size(&self) -> u64 {
        let wal = self.path.with_extension("db-wal");
        [&self.path, &wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

struct PooledReader<'a> {
    store: &'a SqliteStore,
    conn: Option<Connection>,
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut pool = self.store.readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 8 {
                pool.push(c);
            }
        }
    }
}

/// A connection the shared read code runs on (a pooled reader, or the writer's transaction).
trait OnConn {
    fn conn(&self) -> &Connection;
    /// The connection for a read of the index tables (the writer first writes the index rows
    /// it gathered).
    fn index_conn(&self) -> Result<&Connection> {
        Ok(self.conn())
    }
    /// The person of one resource (the writer remembers them for its job).
    fn person_of(&self, t: &str, id: &str) -> Result<Option<Option<String>>> {
        crate::keyed::person_of(self.conn(), t, id)
    }
}

impl OnConn for PooledReader<'_> {
    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("pooled connection")
    }
}

/// The read interface of both connection kinds (a macro: a blanket impl of the foreign
/// trait is not allowed).
macro_rules! store_read {
    ($t:ty) => {
        impl StoreRead for $t {
            fn current(&self, t: &str, id: &str) -> Result<Option<Stored>> {
                read_current(self.conn(), t, id)
            }
            fn version(&self, t: &str, id: &str, v: u64) -> Result<Option<Stored>> {
                read_version(self.conn(), t, id, v)
            }
            fn history(&self, q: &HistoryQuery) -> Result<(Vec<Stored>, u64)> {
                read_history(self.conn(), q)
            }
            fn max_seq(&self) -> Result<i64> {
                read_max_seq(self.conn())
            }
            fn search(&self, q: &SearchQuery) -> Result<Vec<i64>> {
                let (sql, args) = sqlite_sql::select(q);
                query_rids(self.index_conn()?, &sql, &args)
            }
            fn count(&self, q: &SearchQuery) -> Result<u64> {
                let (sql, args) = sqlite_sql::count(q);
                query_count(self.index_conn()?, &sql, &args)
            }
            fn includes(
                &self,
                q: &SearchQuery,
                page: &[i64],
                iterate_only: bool,
            ) -> Result<Vec<i64>> {
                match sqlite_sql::includes(q, page, iterate_only) {
                    Some((sql, args)) => query_rids(self.index_conn()?, &sql, &args),
                    None => Ok(Vec::new()),
                }
            }
            fn link_breadth(&self, t: &Test, limit: usize) -> Result<u64> {
                match sqlite_sql::link_breadth(t, limit) {
                    Some((sql, args)) => query_count(self.index_conn()?, &sql, &args),
                    None => Ok(0),
                }
            }
            fn token_systems(&self, key: &str, code: &str) -> Result<Vec<i64>> {
                let (sql, args) = sqlite_sql::token_systems(key, code);
                query_rids(self.index_conn()?, &sql, &args)
            }
            fn explain(&self, q: &SearchQuery) -> Result<Vec<String>> {
                let (sql, args) = sqlite_sql::select(q);
                let mut plan = vec!["SQLite (embedded store):".to_string()];
                plan.extend(explain(self.index_conn()?, &sql, &args)?);
                plan.push(format!("SQL: {sql}"));
                Ok(plan)
            }
            fn current_by_rids(&self, rids: &[i64]) -> Result<Vec<Stored>> {
                current_by_rids(self.conn(), rids)
            }
            fn persons_by_rids(&self, rids: &[i64]) -> Result<Vec<String>> {
                persons_by_rids(self.conn(), rids)
            }
            fn max_rid(&self) -> Result<i64> {
                max_rid(self.conn())
            }
            fn count_current(&self, types: &[String]) -> Result<u64> {
                count_current(self.conn(), types)
            }
            fn person(&self, t: &str, id: &str) -> Result<Option<Option<String>>> {
                self.person_of(t, id)
            }
            fn meta(&self, key: &str) -> Result<Option<String>> {
                crate::keyed::meta(self.conn(), key)
            }
            fn state(&self, t: &str, id: &str) -> Result<Option<(u64, bool)>> {
                crate::keyed::state(self.conn(), t, id)
            }
            fn versions(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Stored)>> {
                versions(self.conn(), after_seq, limit)
            }
            fn settings(&self) -> Result<Vec<(String, String)>> {
                crate::keyed::settings(self.conn())
            }
        }
    };
}

store_read!(PooledReader<'_>);
store_read!(WriterTx<'_>);

impl Store for SqliteStore {
    fn reads_in_place(&self) -> bool {
        true
    }
    fn reader(&self, _permit: &Permit) -> Result<Box<dyn StoreRead + '_>> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(&self.path, 8 * 1024)?,
        };
        // Each read runs in its own implicit transaction per statement; multi-statement
        // consistency for paging comes from seq high-water marks.
        Ok(Box::new(PooledReader {
            store: self,
            conn: Some(conn),
        }))
    }

    fn submit(&self, permit: &Permit, job: Job) -> Result<Box<dyn Any + Send>> {
        // A write job needs a permit to change data (a read's permit opens snapshots only).
        if !permit.allows_writing() {
            return Err(StoreError::Db(
                "a write job needs the gate's permit to change data".into(),
            ));
        }
        let (reply, wait) = mpsc::sync_channel(1);
        {
            let guard = self.sender.lock().unwrap_or_else(|e| e.into_inner());
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(Request { job, reply })
                .map_err(|_| StoreError::Closed)?;
        }
        wait.recv().map_err(|_| StoreError::Closed)?
    }

    fn registry(&self) -> Arc<Registry> {
        current_index(&self.index).registry().clone()
    }

    fn pending_params(&self) -> Vec<String> {
        current_index(&self.index).pending()
    }
}

/// The shared compiler (issho-store-sql) in SQLite's dialect, with the bound values as
/// rusqlite's; public for the compiler's tests against real tables and the benchmark's raw
/// baseline. Nothing above the store uses it: the engine hands [`SearchQuery`]s to
/// [`StoreRead`] and does not depend on this crate.
pub mod sqlite_sql {
    use issho_search::{SearchQuery, Test};
    use issho_store_sql::{Arg, Dialect::Sqlite};
    use rusqlite::types::Value;

    type Stmt = (String, Vec<Value>);

    fn values((sql, args): (String, Vec<Arg>)) -> Stmt {
        let args = args
            .into_iter()
            .map(|a| match a {
                Arg::Int(v) => Value::Integer(v),
                Arg::Real(v) => Value::Real(v),
                Arg::Text(v) => Value::Text(v),
                // The SQLite dialect binds lists as JSON text; these never occur in it.
                Arg::Ints(v) => Value::Text(serde_json::Value::from(v).to_string()),
                Arg::Texts(v) => Value::Text(serde_json::Value::from(v).to_string()),
            })
            .collect();
        (sql, args)
    }
    pub fn select(q: &SearchQuery) -> Stmt {
        values(issho_store_sql::select(Sqlite, q))
    }
    pub fn count(q: &SearchQuery) -> Stmt {
        values(issho_store_sql::count(Sqlite, q))
    }
    pub fn includes(q: &SearchQuery, rids: &[i64], iterate_only: bool) -> Option<Stmt> {
        issho_store_sql::includes(Sqlite, q, rids, iterate_only).map(values)
    }
    pub fn link_breadth(t: &Test, limit: usize) -> Option<Stmt> {
        issho_store_sql::link_breadth(Sqlite, t, limit).map(values)
    }
    pub fn token_systems(key: &str, code: &str) -> Stmt {
        values(issho_store_sql::token_systems(Sqlite, key, code))
    }
}
