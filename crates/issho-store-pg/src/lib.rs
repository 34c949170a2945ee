//! The PostgreSQL store: the backend of `issho-store`'s traits on PostgreSQL 15 or later.
//!
//! The embedded store's tables (`resources`, `history`, the `sp_*` index tables), each with the
//! distribution key `pk` in its keys, and `resource_ids` (see `schema.rs`), applied by numbered migrations at open; searches compiled by issho-store-sql
//! in PostgreSQL's dialect (full text as `tsvector @@ tsquery` over issho's own tokens).
//!
//! Writes: one writer connection per process runs the write jobs in order, several per
//! transaction (group commit, each job in its own savepoint), as the embedded store does —
//! versions, `lastUpdated` and history sequence numbers therefore stay strictly ordered.
//! Reads: a pool of at most 32 connections (a request waits for one), each statement prepared
//! once per connection; the writer reconnects (and takes its lock again) when its connection
//! broke.
//! Not yet: several writers or several processes writing to one database, TLS.

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
/// The advisory lock of the writing process, with the schema's name: one writer per schema
/// (a database with several issho schemas serves several deployments).
const WRITER_LOCK: i32 = 7_349_002;

type IndexCell = Arc<RwLock<Arc<PgIndex>>>;

fn current_index(cell: &IndexCell) -> Arc<PgIndex> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

type Reply = mpsc::SyncSender<Result<Box<dyn Any + Send>>>;

struct Request {
    job: Job,
    reply: Reply,
}

/// Connect to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?options=…]`), without TLS.
pub fn connect(url: &str) -> Result<Conn> {
    let client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| StoreError::Db(format!("cannot connect to PostgreSQL: {e}")))?;
    Ok(Conn::new(client))
}

/// One writing process per database and schema (as one per data directory for the embedded
/// store): the writer's connection holds this lock for as long as it lives.
fn take_writer_lock(conn: &mut Conn) -> Result<()> {
    let alone: bool = conn
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
            &[&WRITER_LOCK],
        )?
        .get(0);
    if alone {
        Ok(())
    } else {
        Err(StoreError::Db(
            "another issho process is writing to this PostgreSQL database and schema (one \
             process at a time for now; stop it first)"
                .into(),
        ))
    }
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
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    index: IndexCell,
}

impl PgStore {
    /// Open the store at `url`: apply pending migrations, load the search index's keys, start
    /// the writer.
    pub fn open(url: &str, observer: Arc<dyn Observer>) -> Result<PgStore> {
        let mut conn = connect(url)?;
        schema::migrate(conn.client())?;
        let distributed = schema::distribute(conn.client())?;
        take_writer_lock(&mut conn)?;
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
        let w = Writer {
            url: url.to_string(),
            index: index.clone(),
            observer,
            clock: AtomicI64::new(last),
        };
        let handle = std::thread::Builder::new()
            .name("issho-pg-writer".into())
            .stack_size(16 << 20)
            .spawn(move || w.run(conn, rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(PgStore {
            url: url.to_string(),
            readers: Mutex::new(Readers::default()),
            returned: std::sync::Condvar::new(),
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            index,
        })
    }

    /// Stop the writer after the queued jobs.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
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
            fn meta(&self, key: &str) -> Result<Option<String>> {
                meta(&mut self.conn(), key)
            }
            fn state(&self, t: &str, id: &str) -> Result<Option<(u64, bool)>> {
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

// ---- the writer ------------------------------------------------------------------------

struct Writer {
    url: String,
    index: IndexCell,
    observer: Arc<dyn Observer>,
    clock: AtomicI64,
}

struct WriterTx<'a> {
    c: RefCell<&'a mut Conn>,
    w: &'a Writer,
    index: Arc<PgIndex>,
    index_changed: bool,
    /// Index rows of resources created in this job, not yet inserted.
    staged: RefCell<Staged>,
}

impl OnConn for WriterTx<'_> {
    fn conn(&self) -> RefMut<'_, Conn> {
        RefMut::map(self.c.borrow_mut(), |c| &mut **c)
    }
    fn index(&self) -> Arc<PgIndex> {
        self.index.clone()
    }
    fn ready(&self) -> Result<RefMut<'_, Conn>> {
        let mut c = self.conn();
        let mut staged = self.staged.borrow_mut();
        if !staged.is_empty() {
            self.index.flush(&mut c, &mut staged)?;
        }
        Ok(c)
    }
}

mod write;

impl Writer {
    fn run(&self, mut conn: Conn, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            if conn.is_closed() {
                // The server restarted or the network failed: connect again and take the
                // writer's lock again before writing anything.
                match self.reconnect() {
                    Ok(c) => conn = c,
                    Err(e) => {
                        let _ = first.reply.send(Err(e));
                        continue;
                    }
                }
            }
            let mut batch = vec![first];
            while batch.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.group(&mut conn, batch);
        }
    }

    /// Run the jobs in one transaction, each in its own savepoint (PostgreSQL aborts a
    /// transaction at its first failed statement; the savepoint confines that to the job),
    /// commit, then answer each.
    fn group(&self, conn: &mut Conn, batch: Vec<Request>) {
        if let Err(e) = conn.batch("BEGIN") {
            for r in batch {
                let _ = r.reply.send(Err(StoreError::Db(e.to_string())));
            }
            return;
        }
        let mut outputs = Vec::with_capacity(batch.len());
        let mut new_index: Option<Arc<PgIndex>> = None;
        let mut broken: Option<String> = None;
        for req in batch {
            if let Some(why) = &broken {
                outputs.push((req.reply, Err(StoreError::Db(why.clone()))));
                continue;
            }
            if let Err(e) = conn.batch("SAVEPOINT job") {
                broken = Some(format!("cannot start a savepoint: {e}"));
                outputs.push((req.reply, Err(StoreError::Db(e.to_string()))));
                continue;
            }
            let (keep, out, index) = {
                let mut tx = WriterTx {
                    c: RefCell::new(&mut *conn),
                    w: self,
                    index: new_index
                        .clone()
                        .unwrap_or_else(|| current_index(&self.index)),
                    index_changed: false,
                    staged: RefCell::new(Staged::default()),
                };
                let job = req.job;
                // The job, then its staged index rows (before its savepoint is released), both
                // inside the panic guard.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let (keep, out) = job(&mut tx);
                    if !keep {
                        return (false, Ok(out));
                    }
                    match tx.ready() {
                        Ok(_) => (true, Ok(out)),
                        Err(e) => (false, Err(e)),
                    }
                }));
                let (keep, out) = match run {
                    Ok(r) => r,
                    Err(_) => (false, Err(StoreError::JobPanicked)),
                };
                (keep, out, tx.index_changed.then_some(tx.index))
            };
            let end = conn.batch(if keep {
                "RELEASE SAVEPOINT job"
            } else {
                "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
            });
            if let Err(e) = end {
                broken = Some(format!("cannot end a savepoint: {e}"));
            }
            if keep && let Some(i) = index {
                new_index = Some(i);
            }
            outputs.push((req.reply, out));
        }
        let done = match &broken {
            Some(why) => Err(why.clone()),
            None => conn.batch("COMMIT").map_err(|e| {
                if conn.is_closed() {
                    // The server may have committed before the connection broke.
                    format!(
                        "the connection to PostgreSQL broke during the commit, so whether \
                             it was stored is unknown (read before retrying): {e}"
                    )
                } else {
                    format!("nothing was stored: commit failed: {e}")
                }
            }),
        };
        match done {
            Ok(()) => {
                if let Some(index) = new_index {
                    *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
                }
                for (reply, out) in outputs {
                    let _ = reply.send(out);
                }
            }
            Err(why) => {
                let _ = conn.batch("ROLLBACK");
                for (reply, _) in outputs {
                    let msg = if why.starts_with("nothing was stored") || why.contains("unknown") {
                        why.clone()
                    } else {
                        format!("nothing was stored: {why}")
                    };
                    let _ = reply.send(Err(StoreError::Db(msg)));
                }
            }
        }
    }

    fn reconnect(&self) -> Result<Conn> {
        let mut c = connect(&self.url)?;
        take_writer_lock(&mut c)?;
        Ok(c)
    }

    /// Strictly increasing timestamps: versions are ordered by time as well as by seq.
    fn tick(&self) -> i64 {
        let now = now_micros();
        let prev = self.clock.load(Ordering::Relaxed);
        let t = if now > prev { now } else { prev + 1 };
        self.clock.store(t, Ordering::Relaxed);
        t
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.write_str("PgStore")
    }
}
