//! issho's storage layer.
//!
//! One trait family ([`Store`], [`StoreRead`], [`StoreTx`]) that every backend implements
//! (`issho-store-sqlite`, the embedded store). The store keeps **every version** of every resource, assigns
//! `meta.versionId` / `meta.lastUpdated`, and runs all writes on one writer thread that commits
//! concurrent requests together (group commit). A write is acknowledged only after its
//! transaction is durable (WAL with `synchronous=FULL`: the WAL is fsynced at every commit).
//!
//! Architecture invariants:
//! - this crate knows nothing of HTTP and nothing of access control; it is reachable only
//!   through `issho-engine`, which passes every call through the access gate first;
//! - searches cross the boundary as parsed queries ([`SearchQuery`]), never as SQL: each
//!   backend compiles them in its own crate (`issho-store-sqlite`); the engine knows no
//!   database (this crate depends on none: a test checks its manifest);
//! - search index rows are written by the store in the same transaction as the resource.

pub use issho_access::Permit;
pub use issho_search::Prepared;
use issho_search::{Registry, SearchQuery, Test};
use serde_json::Value;
use std::any::Any;
use std::sync::Arc;

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
    /// The job lost a conflict with another writer too many times (each run was rolled
    /// back): nothing was stored, and the same request may be sent again.
    Conflict(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "storage error: {e}"),
            StoreError::Closed => write!(f, "storage is shutting down"),
            StoreError::JobPanicked => {
                write!(f, "internal error while writing; nothing was stored")
            }
            StoreError::Conflict(e) => write!(f, "busy: {e}; nothing was stored, try again"),
        }
    }
}

/// Any backend's error (a database driver's, JSON, I/O) becomes [`StoreError::Db`] with `?`.
/// `StoreError` itself is therefore not a `std::error::Error` (the blanket conversion would
/// otherwise overlap with `From<T> for T`, the pattern `anyhow::Error` follows).
impl<E: std::error::Error + Send + Sync + 'static> From<E> for StoreError {
    fn from(e: E) -> Self {
        // With its causes: a driver's own message is often only "db error".
        let mut msg = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        StoreError::Db(msg)
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

/// Told of every resource a write job changes, on the writer inside the job (before its
/// commit): the engine notes there what decides access or the search parameters.
pub trait Observer: Send + Sync {
    fn changed(&self, resource_type: &str);
}

/// Observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    fn changed(&self, _: &str) {}
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
    /// The `rid`s of the current resources matching `q`, in its order, with its `count`,
    /// `offset` and `rid` window applied.
    fn search(&self, q: &SearchQuery) -> Result<Vec<i64>>;
    /// How many current resources match `q` (sort and paging ignored).
    fn count(&self, q: &SearchQuery) -> Result<u64>;
    /// The `rid`s that `q`'s `_include` / `_revinclude` rules add to a page of `rid`s (may
    /// repeat rids of the page); with `iterate_only`, only the `:iterate` rules (for the
    /// following rounds). Empty when there is no such rule.
    fn includes(&self, q: &SearchQuery, page: &[i64], iterate_only: bool) -> Result<Vec<i64>>;
    /// How many resources (up to `limit`) a chain's or `_has`'s inner condition matches (the
    /// targets of a chain, the referring resources of a `_has`): how broad it is, for the
    /// planner. 0 for other tests.
    fn link_breadth(&self, t: &Test, limit: usize) -> Result<u64>;
    /// The code systems (as `values::system_id`s) the index holds for `code` under the index
    /// key `key` (a token parameter), so that a match without a system can probe by key.
    fn token_systems(&self, key: &str, code: &str) -> Result<Vec<i64>>;
    /// The database's plan for `q`, one line per step (for `_explain`).
    fn explain(&self, q: &SearchQuery) -> Result<Vec<String>>;
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
    /// [`StoreRead::person`] of many resources at once, in the given order (a store may
    /// answer them in one round trip).
    fn persons_of(&self, resources: &[(String, String)]) -> Result<Vec<Option<Option<String>>>> {
        resources.iter().map(|(t, id)| self.person(t, id)).collect()
    }
    /// A setting of the store itself (e.g. which version of the ownership rule keyed it).
    fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Every setting of the store (for copying it).
    fn settings(&self) -> Result<Vec<(String, String)>>;
    /// The current version of a resource and whether it is deleted, without its body.
    fn state(&self, resource_type: &str, id: &str) -> Result<Option<(u64, bool)>>;
    /// Every version in the order it was written, after sequence number `after_seq`, at most
    /// `limit`, with its sequence number (a deletion has no body; `person` is the resource's
    /// current one): for copying a whole store.
    fn versions(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Stored)>>;
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
    /// [`StoreTx::put`] with the index rows extracted from `body` before the transaction
    /// ([`Store::prepare`]).
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
    /// Add the rows of the pending search parameters ([`StoreTx::sync_params`]) to the
    /// current resources of `types` whose `rid` is above `after_rid`, at most `limit` of them,
    /// in `rid` order (idempotent). Returns how many were done and the last `rid` (0 done:
    /// none were left).
    fn reindex(&mut self, types: &[String], after_rid: i64, limit: usize) -> Result<(usize, i64)>;
    /// Write a version exactly as given (its number, time, method, body or deletion, person),
    /// as the next version of its resource: for copying a store into an empty one. Refused
    /// when the resource already has this version or a later one.
    fn put_version(&mut self, v: &Stored) -> Result<()>;
    /// Re-key a current resource to another person (e.g. after the ownership rule changed).
    fn set_person(&mut self, rid: i64, person: Option<&str>) -> Result<()>;
    /// Change a setting of the store ([`StoreRead::meta`]).
    fn set_meta(&mut self, key: &str, value: &str) -> Result<()>;
    /// Index the parameters of `reg` (R4 + the deployment's custom ones) from now on: keys new
    /// to the store are pending until their rows are built ([`StoreTx::reindex`],
    /// [`StoreTx::finish_params`]); keys `reg` no longer has lose their rows. Takes effect for
    /// [`Store::registry`] when this transaction commits.
    fn sync_params(&mut self, reg: Registry) -> Result<()>;
    /// The rows of these pending keys are complete: searches may use them.
    fn finish_params(&mut self, keys: &[String]) -> Result<()>;
    /// Hold `key` (e.g. a conditional create's type and criteria) until this transaction ends:
    /// another transaction asking for the same key waits. A store with one writer has nothing
    /// to do; one with several writers makes a conditional create or update that searches and
    /// then writes unique this way.
    fn lock_key(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }
    /// Whether this store may run the job again after it returned (a store with several
    /// writers re-runs a job that lost a lock or a conflict): a job that consumes what it was
    /// given keeps a copy only then (a store with one writer runs each job once).
    fn may_run_again(&self) -> bool {
        false
    }
}

/// A write job: runs on a writer thread; returns (commit?, output). A store with several
/// writers may run it again, from the start and on a clean transaction, when its first run
/// lost a conflict with another writer (a deadlock, or a serialization failure): a job keeps
/// no state between runs that its effects on the transaction depend on.
pub type Job = Box<dyn FnMut(&mut dyn StoreTx) -> (bool, Box<dyn Any + Send>) + Send>;

/// A store: snapshots for reading, jobs for writing. Both take a [`Permit`]: only the access
/// gate (issho-access) makes one, so nothing reaches the data without asking the gate first
/// (what the permit allows is applied by the engine, which owns the store).
pub trait Store: Send + Sync {
    fn reader(&self, permit: &Permit) -> Result<Box<dyn StoreRead + '_>>;
    /// Run a job in a write transaction; returns once it is durable (or rolled back).
    fn submit(&self, permit: &Permit, job: Job) -> Result<Box<dyn Any + Send>>;
    /// The search parameters the store indexes (with the pending ones flagged): searches are
    /// parsed with it.
    fn registry(&self) -> Arc<Registry>;
    /// The index keys whose rows are still being built.
    fn pending_params(&self) -> Vec<String>;
    /// Whether a read may run on an async runtime's worker thread: true for a store whose
    /// reads are plain calls that wait on nothing (the embedded store, WAL readers); false
    /// (the default) for one whose client runs a runtime of its own — PostgreSQL's synchronous
    /// client panics when called inside another runtime.
    fn reads_in_place(&self) -> bool {
        false
    }
    /// The index rows of `resource`, extracted before its write transaction (off the writer).
    fn prepare(&self, resource: &Value) -> Prepared {
        Prepared::new(&self.registry(), resource)
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Set `meta.versionId` and `meta.lastUpdated` (micros) in a resource being stored: what
/// every backend does to a new version.
pub fn stamp(body: &mut Value, version: u64, ts: i64) {
    if let Some(obj) = body.as_object_mut() {
        let meta = obj
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            *meta = Value::Object(Default::default());
        }
        if let Some(m) = meta.as_object_mut() {
            m.insert("versionId".into(), Value::String(version.to_string()));
            m.insert(
                "lastUpdated".into(),
                Value::String(issho_model::instant::format_instant(ts)),
            );
        }
    }
}

/// Run `f` in a write transaction: committed when it returns `Ok`, rolled back when `Err`.
/// The outer result reports storage failures (nothing written); the inner is `f`'s own.
pub fn write<R, E, F>(store: &dyn Store, permit: &Permit, f: F) -> Result<std::result::Result<R, E>>
where
    R: Send + 'static,
    E: Send + 'static,
    F: FnMut(&mut dyn StoreTx) -> std::result::Result<R, E> + Send + 'static,
{
    let mut f = f;
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

#[cfg(test)]
mod invariants {
    /// The boundary stays store-neutral: no database driver among this crate's dependencies.
    #[test]
    fn no_database_dependency() {
        let manifest = include_str!("../Cargo.toml");
        for db in ["rusqlite", "postgres", "sqlx"] {
            assert!(
                !manifest.contains(db),
                "issho-store must not depend on {db}"
            );
        }
    }
}
