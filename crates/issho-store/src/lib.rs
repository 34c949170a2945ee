//! issho's storage layer.
//!
//! One trait family ([`Store`], [`StoreRead`], [`StoreTx`]) and the embedded SQLite
//! implementation ([`SqliteStore`]). The store keeps **every version** of every resource, assigns
//! `meta.versionId` / `meta.lastUpdated`, and runs all writes on one writer thread that commits
//! concurrent requests together (group commit). A write is acknowledged only after its
//! transaction is durable (WAL with `synchronous=FULL`: the WAL is fsynced at every commit).
//!
//! Architecture invariants:
//! - this crate knows nothing of HTTP and nothing of access control; it is reachable only
//!   through `issho-engine`, which passes every call through the access gate first;
//! - search index rows are written by an [`Indexer`] in the same transaction as the resource.

mod keyed;
mod sqlite;

pub use sqlite::SqliteStore;

pub use issho_access::Permit;
use serde_json::Value;
use std::any::Any;

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Stored {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    /// Microseconds since the Unix epoch (UTC).
    pub last_updated: i64,
    /// `None` for a deletion marker.
    pub body: Option<Vec<u8>>,
    /// How this version was made: `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Internal row key of the logical resource.
    pub rid: i64,
    /// The patient whose record holds the resource (the distribution key; current version).
    pub person: Option<String>,
}

impl Stored {
    pub fn is_deleted(&self) -> bool {
        self.body.is_none()
    }
    pub fn json(&self) -> Option<Value> {
        self.body
            .as_ref()
            .and_then(|b| serde_json::from_slice(b).ok())
    }
}

#[derive(Debug)]
pub enum StoreError {
    Db(String),
    /// The writer thread is gone (shutting down).
    Closed,
    /// A write job panicked; its changes were rolled back.
    JobPanicked,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "storage error: {e}"),
            StoreError::Closed => write!(f, "storage is shutting down"),
            StoreError::JobPanicked => {
                write!(f, "internal error while writing; nothing was stored")
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What a history request covers.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// Only versions made at or after this time (micros).
    pub since: Option<i64>,
    /// `_at`: only versions that were current at some point during this period (inclusive
    /// micros): made before its end and not superseded before its start.
    pub at: Option<(i64, i64)>,
    pub count: usize,
    pub offset: usize,
    /// Versions made after this sequence number are ignored, so that paging through history
    /// is stable while new versions arrive.
    pub max_seq: Option<i64>,
}

/// Result of writing one version.
#[derive(Debug, Clone)]
pub struct PutResult {
    pub rid: i64,
    pub version: u64,
    pub last_updated: i64,
    /// True when this version created the resource (no earlier version existed).
    pub created: bool,
}

/// What an [`Indexer`] computed about a resource before its write transaction.
pub type Prepared = Box<dyn Any + Send>;

/// Maintains search index rows in the same transaction as the resource.
pub trait Indexer: Send + Sync {
    /// Work on `resource` that can be done before the write transaction, off the single
    /// writer thread (e.g. extracting index rows); handed back to [`Indexer::index_prepared`]
    /// through [`StoreTx::put_prepared`]. The store may change only `meta.versionId` and
    /// `meta.lastUpdated` of the resource in between.
    fn prepare(&self, _resource: &Value) -> Option<Prepared> {
        None
    }
    /// [`Indexer::index`] with the result of [`Indexer::prepare`] for this very resource.
    fn index_prepared(
        &self,
        conn: &rusqlite::Connection,
        rid: i64,
        resource: &Value,
        previous: Option<&[u8]>,
        _prepared: Prepared,
    ) -> rusqlite::Result<()> {
        self.index(conn, rid, resource, previous)
    }
    /// Create or upgrade the index tables; run once at open, after the store's own tables
    /// exist (idempotent).
    fn open(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()>;
    /// Write the index rows of `resource`. `previous` is the JSON of the version it
    /// supersedes, whose rows are to be replaced (`None` when there is none, or it was a
    /// deletion).
    fn index(
        &self,
        conn: &rusqlite::Connection,
        rid: i64,
        resource: &Value,
        previous: Option<&[u8]>,
    ) -> rusqlite::Result<()>;
    /// Remove the index rows of `rid`, whose current version's JSON is `previous`.
    fn unindex(
        &self,
        conn: &rusqlite::Connection,
        rid: i64,
        previous: &[u8],
    ) -> rusqlite::Result<()>;
    /// Add the rows of parameters defined after `resource` (the current version of `rid`)
    /// was indexed; idempotent (see [`StoreTx::reindex`]).
    fn reindex(
        &self,
        _conn: &rusqlite::Connection,
        _rid: i64,
        _resource: &Value,
    ) -> rusqlite::Result<()> {
        Ok(())
    }
    /// Change the index definition in the current write transaction (what `task` means is
    /// the indexer's business: new parameters, removed ones, finished rebuilds).
    fn maintain(
        &self,
        _conn: &rusqlite::Connection,
        _task: &(dyn Any + Send),
    ) -> rusqlite::Result<Box<dyn Any + Send>> {
        Ok(Box::new(()))
    }
}

/// Read access to a consistent snapshot.
pub trait StoreRead {
    /// The current version of a resource (a deletion marker when it was deleted).
    fn current(&self, resource_type: &str, id: &str) -> Result<Option<Stored>>;
    /// One version of a resource.
    fn version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<Stored>>;
    /// Versions, newest first, and the total number matching.
    fn history(&self, q: &HistoryQuery) -> Result<(Vec<Stored>, u64)>;
    /// The newest version sequence number (a high-water mark for stable paging).
    fn max_seq(&self) -> Result<i64>;
    /// Run an index query that yields `rid`s (as compiled by issho-search) and return them.
    fn query_rids(&self, sql: &str, params: &[rusqlite::types::Value]) -> Result<Vec<i64>>;
    /// The database's plan for a query (`EXPLAIN QUERY PLAN`), one line per step.
    fn explain(&self, sql: &str, params: &[rusqlite::types::Value]) -> Result<Vec<String>>;
    /// Run a count query compiled by issho-search.
    fn query_count(&self, sql: &str, params: &[rusqlite::types::Value]) -> Result<u64>;
    /// The current versions of these resources, in the given order (missing ones skipped).
    fn current_by_rids(&self, rids: &[i64]) -> Result<Vec<Stored>>;
    /// The distinct persons (distribution keys) of these resources, without reading bodies.
    fn persons_by_rids(&self, rids: &[i64]) -> Result<Vec<String>>;
    /// The largest row key so far (resources created later have larger ones): a snapshot
    /// bound for paging in `rid` order.
    fn max_rid(&self) -> Result<i64>;
    /// How many current resources the given types have.
    fn count_current(&self, types: &[String]) -> Result<u64>;
    /// The person (distribution key) of a current resource: `None` when there is no such
    /// resource (or it was deleted), `Some(None)` when it belongs to no person.
    fn person(&self, resource_type: &str, id: &str) -> Result<Option<Option<String>>>;
    /// A setting of the store itself (e.g. which version of the ownership rule keyed it).
    fn meta(&self, key: &str) -> Result<Option<String>>;
    /// The current version of a resource and whether it is deleted, without its body.
    fn state(&self, resource_type: &str, id: &str) -> Result<Option<(u64, bool)>>;
}

/// Read-write access inside one store transaction.
pub trait StoreTx: StoreRead {
    /// Write a new version. Sets `meta.versionId` and `meta.lastUpdated` in `body`.
    /// `person` is the distribution key (the patient whose record this belongs to).
    fn put(
        &mut self,
        resource_type: &str,
        id: &str,
        body: &mut Value,
        person: Option<&str>,
        method: &str,
    ) -> Result<PutResult> {
        self.put_prepared(resource_type, id, body, person, method, None)
    }
    /// [`StoreTx::put`] with what the indexer prepared for `body` before the transaction
    /// ([`Indexer::prepare`]).
    fn put_prepared(
        &mut self,
        resource_type: &str,
        id: &str,
        body: &mut Value,
        person: Option<&str>,
        method: &str,
        prepared: Option<Prepared>,
    ) -> Result<PutResult>;
    /// Logically delete: a new version that is a deletion marker. Returns the marker's version,
    /// or None when there was nothing (or only a deletion) to delete.
    fn delete(&mut self, resource_type: &str, id: &str) -> Result<Option<PutResult>>;
    /// Let the indexer add rows to the current resources of `types` whose `rid` is above
    /// `after_rid`, at most `limit` of them, in `rid` order ([`Indexer::reindex`]). Returns
    /// how many were done and the last `rid` (0 done: none were left).
    fn reindex(&mut self, types: &[String], after_rid: i64, limit: usize) -> Result<(usize, i64)>;
    /// Re-key a current resource to another person (e.g. after the ownership rule changed).
    fn set_person(&mut self, rid: i64, person: Option<&str>) -> Result<()>;
    /// Change a setting of the store ([`StoreRead::meta`]).
    fn set_meta(&mut self, key: &str, value: &str) -> Result<()>;
    /// Run an index-definition change ([`Indexer::maintain`]) in this transaction.
    fn maintain_index(&mut self, task: &(dyn Any + Send)) -> Result<Box<dyn Any + Send>>;
}

/// A write job: runs on the writer thread; returns (commit?, output).
pub type Job = Box<dyn FnOnce(&mut dyn StoreTx) -> (bool, Box<dyn Any + Send>) + Send>;

/// A store: snapshots for reading, jobs for writing. Both take a [`Permit`]: only the access
/// gate (issho-access) makes one, so nothing reaches the data without asking the gate first
/// (what the permit allows is applied by the engine, which owns the store).
pub trait Store: Send + Sync {
    fn reader(&self, permit: &Permit) -> Result<Box<dyn StoreRead + '_>>;
    /// Run a job in a write transaction; returns once it is durable (or rolled back).
    fn submit(&self, permit: &Permit, job: Job) -> Result<Box<dyn Any + Send>>;
}

/// Run `f` in a write transaction: committed when it returns `Ok`, rolled back when `Err`.
/// The outer result reports storage failures (nothing written); the inner is `f`'s own.
pub fn write<R, E, F>(store: &dyn Store, permit: &Permit, f: F) -> Result<std::result::Result<R, E>>
where
    R: Send + 'static,
    E: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> std::result::Result<R, E> + Send + 'static,
{
    let out = store.submit(
        permit,
        Box::new(move |tx| {
            let r = f(tx);
            (r.is_ok(), Box::new(r) as Box<dyn Any + Send>)
        }),
    )?;
    Ok(*out
        .downcast::<std::result::Result<R, E>>()
        .expect("job output type"))
}
