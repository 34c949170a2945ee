//! The PostgreSQL store: the backend of `issho-store`'s traits on PostgreSQL 15 or later.
//!
//! The embedded store's tables (`resources`, `history`, the `sp_*` index tables), each with the
//! distribution key `pk` in its keys, and `resource_ids` (see `schema.rs`), applied by numbered migrations at open; searches compiled by issho-store-sql
//! in PostgreSQL's dialect (full text as `tsvector @@ tsquery` over issho's own tokens).
//!
//! Writes: [`WRITERS`] writer threads, each with its own connection, run the queued jobs,
//! several per transaction (group commit, each job in its own savepoint); several processes
//! may write to one database at once. Writers meet only in PostgreSQL, through locks on what
//! a job writes (`writer.rs`): one resource's versions stay strictly ordered (also in time),
//! and a conditional create or update finds what a concurrent one with the same condition
//! wrote. A job that loses to another writer is run again.
//! Reads: a pool of at most 32 connections (a request waits for one), each statement prepared
//! once per connection; a writer reconnects when its connection broke.
//! Not yet: TLS; a change of the search parameters reaching other running processes (they
//! refuse writes until restarted).

mod args;
mod conn;
mod index;
mod read;
mod schema;

pub use conn::Conn;
pub use index::{PgIndex, Staged};

use args::{params, wrap};
use issho_search::{Registry, SearchQuery, Test};
use issho_store::*;
use issho_store_sql::{Arg, Dialect::Postgres, Target};
use read::*;
use std::any::Any;
use std::cell::{RefCell, RefMut};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};

/// Most queued write jobs committed in one transaction.
const MAX_GROUP: usize = 256;
/// Reader connections open at most (a burst of requests waits for one rather than going past
/// the server's `max_connections`).
const MAX_READERS: usize = 32;

/// The readers' connections: the idle ones, and how many are open in all.
#[derive(Default)]
struct Readers {
    idle: Vec<Conn>,
    open: usize,
}
/// Writer threads (and connections) per process: enough to keep two cores busy while
/// others wait for commits or locks.
pub const WRITERS: usize = 4;

type IndexCell = Arc<RwLock<Arc<PgIndex>>>;

fn current_index(cell: &IndexCell) -> Arc<PgIndex> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

type Reply = mpsc::SyncSender<Result<Box<dyn Any + Send>>>;

/// Connect to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?options=…]`), without TLS.
pub fn connect(url: &str) -> Result<Conn> {
    let client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| StoreError::Db(format!("cannot connect to PostgreSQL: {e}")))?;
    Ok(Conn::new(client))
}

/// Apply the schema migrations not yet applied; returns the versions applied now.
pub fn migrate(url: &str) -> Result<Vec<i32>> {
    let mut c = connect(url)?;
    Ok(schema::migrate(c.client())?)
}

/// The highest migration this build knows.
pub fn schema_version() -> i32 {
    schema::MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

pub struct PgStore {
    url: String,
    readers: Mutex<Readers>,
    /// Signalled when a reader connection is returned or closed.
    returned: std::sync::Condvar,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    index: IndexCell,
}

impl PgStore {
    /// Open the store at `url`: apply pending migrations, load the search index's keys, start
    /// the writers.
    pub fn open(url: &str, observer: Arc<dyn Observer>) -> Result<PgStore> {
        let mut conn = connect(url)?;
        schema::migrate(conn.client())?;
        let distributed = schema::distribute(conn.client())?;
        let moved = schema::place_sides(conn.client())?;
        if moved > 0 {
            tracing::info!(
                moved,
                "resources moved to the tables of their kind (shared or a person's record)"
            );
        }
        let generation: i64 = conn
            .query_opt(
                "SELECT value::bigint FROM store_meta WHERE key = $1",
                &[&writer::INDEX_GENERATION],
            )?
            .map(|r| r.get(0))
            .unwrap_or(0);
        let index: IndexCell = Arc::new(RwLock::new(Arc::new(PgIndex::open(
            &mut conn,
            distributed,
        )?)));
        let last: i64 = conn
            .query_one(
                "SELECT coalesce(max(last_updated), 0)::bigint FROM history",
                &[],
            )?
            .get(0);
        let (tx, rx) = mpsc::channel::<Request>();
        let rx = Arc::new(Mutex::new(rx));
        let clock = Arc::new(AtomicI64::new(last));
        let generation = Arc::new(AtomicI64::new(generation));
        let mut writers = Vec::with_capacity(WRITERS);
        drop(conn);
        for n in 0..WRITERS {
            let conn = writer::connect_writer(url)?;
            let w = Writer {
                url: url.to_string(),
                index: index.clone(),
                observer: observer.clone(),
                clock: clock.clone(),
                generation: generation.clone(),
            };
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("issho-pg-writer-{n}"))
                .stack_size(16 << 20)
                .spawn(move || w.run(conn, rx))
                .map_err(|e| StoreError::Db(e.to_string()))?;
            writers.push(handle);
        }
        Ok(PgStore {
            url: url.to_string(),
            readers: Mutex::new(Readers::default()),
            returned: std::sync::Condvar::new(),
            sender: Mutex::new(Some(tx)),
            writers: Mutex::new(writers),
            index,
        })
    }

    /// Stop the writers after the queued jobs.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        let writers = std::mem::take(&mut *self.writers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in writers {
            let _ = h.join();
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
        // A client closes by blocking on its own runtime, which panics on a thread that drives
        // asynchronous tasks (the store may be dropped with a server's state): close the idle
        // connections on a thread of their own.
        let idle = std::mem::take(&mut self.readers.lock().unwrap_or_else(|e| e.into_inner()).idle);
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

struct PooledReader<'a> {
    store: &'a PgStore,
    conn: RefCell<Option<Conn>>,
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.get_mut().take() {
            let mut readers = self.store.readers.lock().unwrap_or_else(|e| e.into_inner());
            if c.is_closed() {
                readers.open = readers.open.saturating_sub(1);
            } else {
                readers.idle.push(c);
            }
            self.store.returned.notify_one();
        }
    }
}

/// A connection the shared read code runs on, and the index its queries are compiled with.
trait OnConn {
    fn conn(&self) -> RefMut<'_, Conn>;
    fn index(&self) -> Arc<PgIndex>;
    /// The connection, with everything this transaction wrote visible to a query.
    fn ready(&self) -> Result<RefMut<'_, Conn>> {
        Ok(self.conn())
    }
    /// Before reading a resource that a write job may then write: hold its identity (a
    /// writer; nothing for a reader).
    fn hold_identity(&self, _t: &str, _id: &str) -> Result<()> {
        Ok(())
    }
}

impl OnConn for PooledReader<'_> {
    fn conn(&self) -> RefMut<'_, Conn> {
        RefMut::map(self.conn.borrow_mut(), |c| {
            c.as_mut().expect("pooled connection")
        })
    }
    fn index(&self) -> Arc<PgIndex> {
        current_index(&self.store.index)
    }
}

fn target(index: &PgIndex) -> Target<'_> {
    Target {
        dialect: Postgres,
        param_ids: Some(index.key_ids()),
        distributed: index.distributed(),
        shared_tables: true,
    }
}

fn rids(c: &mut Conn, (sql, args): (String, Vec<Arg>)) -> Result<Vec<i64>> {
    let bound = wrap(&args);
    Ok(c.query(&sql, &params(&bound))?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect())
}

fn count_of(c: &mut Conn, (sql, args): (String, Vec<Arg>)) -> Result<u64> {
    let bound = wrap(&args);
    Ok(c.query_one(&sql, &params(&bound))?.get::<_, i64>(0) as u64)
}

fn explain(c: &mut Conn, (sql, args): (String, Vec<Arg>)) -> Result<Vec<String>> {
    let bound = wrap(&args);
    let mut plan = vec!["PostgreSQL:".to_string()];
    for r in c.query(&format!("EXPLAIN {sql}"), &params(&bound))? {
        plan.push(r.get(0));
    }
    plan.push(format!("SQL: {sql}"));
    Ok(plan)
}

/// The read interface of both connection kinds.
macro_rules! store_read {
    ($t:ty) => {
        impl StoreRead for $t {
            fn current(&self, t: &str, id: &str) -> Result<Option<Stored>> {
                self.hold_identity(t, id)?;
                read_current(&mut self.conn(), self.index().distributed(), t, id)
            }
            fn version(&self, t: &str, id: &str, v: u64) -> Result<Option<Stored>> {
                read_version(&mut self.conn(), self.index().distributed(), t, id, v)
            }
            fn history(&self, q: &HistoryQuery) -> Result<(Vec<Stored>, u64)> {
                read_history(&mut self.conn(), q)
            }
            fn max_seq(&self) -> Result<i64> {
                read_max_seq(&mut self.conn())
            }
            fn search(&self, q: &SearchQuery) -> Result<Vec<i64>> {
                rids(
                    &mut *self.ready()?,
                    issho_store_sql::select(target(&self.index()), q),
                )
            }
            fn count(&self, q: &SearchQuery) -> Result<u64> {
                count_of(
                    &mut *self.ready()?,
                    issho_store_sql::count(target(&self.index()), q),
                )
            }
            fn includes(
                &self,
                q: &SearchQuery,
                page: &[i64],
                iterate_only: bool,
            ) -> Result<Vec<i64>> {
                match issho_store_sql::includes(target(&self.index()), q, page, iterate_only) {
                    Some(stmt) => rids(&mut *self.ready()?, stmt),
                    None => Ok(Vec::new()),
                }
            }
            fn link_breadth(&self, t: &Test, limit: usize) -> Result<u64> {
                match issho_store_sql::link_breadth(target(&self.index()), t, limit) {
                    Some(stmt) => count_of(&mut *self.ready()?, stmt),
                    None => Ok(0),
                }
            }
            fn token_systems(&self, key: &str, code: &str) -> Result<Vec<i64>> {
                rids(
                    &mut *self.ready()?,
                    issho_store_sql::token_systems(target(&self.index()), key, code),
                )
            }
            fn explain(&self, q: &SearchQuery) -> Result<Vec<String>> {
                explain(
                    &mut *self.ready()?,
                    issho_store_sql::select(target(&self.index()), q),
                )
            }
            fn current_by_rids(&self, rids: &[i64]) -> Result<Vec<Stored>> {
                current_by_rids(&mut self.conn(), rids)
            }
            fn persons_by_rids(&self, rids: &[i64]) -> Result<Vec<String>> {
                persons_by_rids(&mut self.conn(), rids)
            }
            fn max_rid(&self) -> Result<i64> {
                max_rid(&mut self.conn())
            }
            fn count_current(&self, types: &[String]) -> Result<u64> {
                count_current(&mut self.conn(), types)
            }
            fn person(&self, t: &str, id: &str) -> Result<Option<Option<String>>> {
                person_of(&mut self.conn(), self.index().distributed(), t, id)
            }
            fn persons_of(
                &self,
                resources: &[(String, String)],
            ) -> Result<Vec<Option<Option<String>>>> {
                persons_of(&mut self.conn(), resources)
            }
            fn meta(&self, key: &str) -> Result<Option<String>> {
                meta(&mut self.conn(), key)
            }
            fn state(&self, t: &str, id: &str) -> Result<Option<(u64, bool)>> {
                self.hold_identity(t, id)?;
                state(&mut self.conn(), self.index().distributed(), t, id)
            }
            fn versions(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Stored)>> {
                versions(&mut self.conn(), after_seq, limit)
            }
            fn settings(&self) -> Result<Vec<(String, String)>> {
                settings(&mut self.conn())
            }
        }
    };
}

store_read!(PooledReader<'_>);
store_read!(WriterTx<'_>);

impl Store for PgStore {
    fn reader(&self, _permit: &Permit) -> Result<Box<dyn StoreRead + '_>> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        // A request may hold two readers at once: after a while a waiting one opens a
        // connection past the limit rather than wait for ever.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let conn = loop {
            if let Some(c) = readers.idle.pop() {
                break c;
            }
            if readers.open < MAX_READERS || std::time::Instant::now() >= deadline {
                readers.open += 1;
                drop(readers);
                match connect(&self.url) {
                    Ok(c) => break c,
                    Err(e) => {
                        let mut r = self.readers.lock().unwrap_or_else(|e| e.into_inner());
                        r.open -= 1;
                        self.returned.notify_one();
                        return Err(e);
                    }
                }
            }
            readers = self
                .returned
                .wait_timeout(readers, std::time::Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        Ok(Box::new(PooledReader {
            store: self,
            conn: RefCell::new(Some(conn)),
        }))
    }

    fn submit(&self, permit: &Permit, job: Job) -> Result<Box<dyn Any + Send>> {
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
                .send(Request {
                    job,
                    reply,
                    runs: 0,
                })
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

mod write;
mod writer;
use writer::{Request, Writer, WriterTx};

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.write_str("PgStore")
    }
}
