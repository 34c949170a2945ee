//! The writer: its transaction (`WriterTx`: new versions, deletions, copies of versions,
//! re-keying, settings, search-parameter changes) and its thread (`Writer`: group commit).

use super::*;
use crate::durable::Answer;
use issho_search::IndexRow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

/// A resource's person as `StoreRead::person` answers it (`None`: no such resource).
type PersonOf = Option<Option<String>>;

pub(crate) struct WriterTx<'a> {
    conn: &'a Connection,
    w: &'a Writer,
    /// The index of this transaction (a parameter change inside it replaces it).
    index: Arc<SqliteIndex>,
    index_changed: bool,
    /// Index rows of resources this job created, not yet written: they go in together,
    /// sorted, at the job's end or before the index is read or changed ([`WriterTx::flush`]).
    gathered: RefCell<Vec<(i64, Vec<IndexRow>)>>,
    /// Persons of resources looked up in this job (`None`: no such resource), forgotten when
    /// the resource is written or any person changes.
    persons: RefCell<HashMap<(String, String), PersonOf>>,
    /// Why writing gathered rows failed during the job: the job may not be kept, even if it
    /// went on without the error.
    flush_failed: RefCell<Option<String>>,
}

impl OnConn for WriterTx<'_> {
    fn conn(&self) -> &Connection {
        self.conn
    }
    fn index_conn(&self) -> Result<&Connection> {
        self.flush()?;
        Ok(self.conn)
    }
    fn person_of(&self, t: &str, id: &str) -> Result<Option<Option<String>>> {
        let key = (t.to_string(), id.to_string());
        if let Some(p) = self.persons.borrow().get(&key) {
            return Ok(p.clone());
        }
        let p = crate::keyed::person_of(self.conn, t, id)?;
        self.persons.borrow_mut().insert(key, p.clone());
        Ok(p)
    }
}

impl<'a> WriterTx<'a> {
    fn new(conn: &'a Connection, w: &'a Writer, index: Arc<SqliteIndex>) -> WriterTx<'a> {
        WriterTx {
            conn,
            w,
            index,
            index_changed: false,
            gathered: RefCell::new(Vec::new()),
            persons: RefCell::new(HashMap::new()),
            flush_failed: RefCell::new(None),
        }
    }

    /// Write the gathered index rows.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(why) = self.flush_failed.borrow().as_ref() {
            return Err(StoreError::Db(why.clone()));
        }
        let gathered = std::mem::take(&mut *self.gathered.borrow_mut());
        if !gathered.is_empty()
            && let Err(e) = self.index.insert_many(self.conn, &gathered)
        {
            let why = format!("the search index rows could not be written: {e}");
            *self.flush_failed.borrow_mut() = Some(why.clone());
            return Err(StoreError::Db(why));
        }
        Ok(())
    }

    /// Before `t/id` is written: its person may change, and the index rows gathered so far
    /// must be in the tables (an update or deletion replaces rows by difference).
    fn before_write(&self, t: &str, id: &str) -> Result<()> {
        self.forget_person(t, id);
        self.flush()
    }

    /// `t/id` is about to be written: its remembered person may change.
    fn forget_person(&self, t: &str, id: &str) {
        self.persons
            .borrow_mut()
            .remove(&(t.to_string(), id.to_string()));
    }

    /// Strictly increasing timestamps: versions are ordered by time as well as by seq.
    fn tick(&self) -> i64 {
        let now = now_micros();
        let prev = self.w.clock.load(Ordering::Relaxed);
        let t = if now > prev { now } else { prev + 1 };
        self.w.clock.store(t, Ordering::Relaxed);
        t
    }

    fn new_version(&self, t: &str, id: &str) -> Result<(Option<Head>, i64)> {
        let row: Option<Head> = self
            .conn
            .prepare_cached(
                "SELECT rid, version, deleted FROM resources WHERE type = ?1 AND id = ?2",
            )?
            .query_row(params![t, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
            })
            .optional()?;
        Ok((row, self.tick()))
    }

    /// The JSON of the current version of `rid` (for the indexer, before it is superseded).
    fn current_body(&self, rid: i64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT body FROM resources WHERE rid = ?1")?
            .query_row([rid], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten())
    }

    /// Move the current body of `rid` into its history row before it is replaced.
    fn retire_current(&self, rid: i64, version: u64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE history SET body = (SELECT body FROM resources WHERE rid = ?1) \
                 WHERE rid = ?1 AND version = ?2",
            )?
            .execute(params![rid, version])?;
        Ok(())
    }
    /// Write the rows of a new version of `t/id` (the resource's row, superseding its current
    /// version, and a history row); `body` `None` is a deletion marker. Returns the row key,
    /// whether it created the resource (none, or only a deletion, was there), and the body of
    /// the version it superseded when that was not a deletion.
    #[allow(clippy::too_many_arguments)]
    fn write_version(
        &self,
        existing: Option<Head>,
        (t, id): (&str, &str),
        version: u64,
        ts: i64,
        method: &str,
        person: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(i64, bool, Option<Vec<u8>>)> {
        let deleted = i64::from(body.is_none());
        let mut previous = None;
        let (rid, created) = match existing {
            Some((rid, old, was_deleted)) => {
                if !was_deleted {
                    previous = self.current_body(rid)?;
                }
                self.retire_current(rid, old)?;
                self.conn
                    .prepare_cached(
                        "UPDATE resources SET version = ?2, last_updated = ?3, deleted = ?4, \
                         person = ?5, body = ?6 WHERE rid = ?1",
                    )?
                    .execute(params![rid, version, ts, deleted, person, body])?;
                (rid, was_deleted)
            }
            None => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO resources (type, id, version, last_updated, deleted, person, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![t, id, version, ts, deleted, person, body])?;
                (self.conn.last_insert_rowid(), true)
            }
        };
        self.conn
            .prepare_cached(
                "INSERT INTO history (rid, version, last_updated, method, deleted, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
            )?
            .execute(params![rid, version, ts, method, deleted])?;
        self.w.observer.changed(t);
        Ok((rid, created, previous))
    }
}

impl StoreTx for WriterTx<'_> {
    fn put_prepared(
        &mut self,
        t: &str,
        id: &str,
        body: &mut Value,
        person: Option<&str>,
        method: &str,
        prepared: Option<Prepared>,
    ) -> Result<PutResult> {
        let (existing, ts) = self.new_version(t, id)?;
        // A new resource has no index rows to replace: nothing gathered must be written yet.
        if existing.is_some() {
            self.before_write(t, id)?;
        } else {
            self.forget_person(t, id);
        }
        let version = existing.map(|(_, v, _)| v + 1).unwrap_or(1);
        stamp(body, version, ts);
        let bytes = serde_json::to_vec(body).map_err(|e| StoreError::Db(e.to_string()))?;
        let (rid, created, previous) =
            self.write_version(existing, (t, id), version, ts, method, person, Some(&bytes))?;
        let index = &self.index;
        match (
            previous.map(|b| serde_json::from_slice::<Value>(&b)),
            prepared,
        ) {
            // A new resource, or one re-created after a deletion, has no index rows to
            // replace: its rows are gathered and written with the job's others.
            (None, p) => {
                let rows = index.rows_of(body, p);
                self.gathered.borrow_mut().push((rid, rows));
            }
            // An update replaces the superseded version's rows by difference.
            (Some(Ok(old)), _) => index.replace(self.conn, rid, &old, body)?,
            (Some(Err(_)), _) => {
                index.remove_all(self.conn, rid)?;
                index.insert(self.conn, rid, body)?;
            }
        }
        Ok(PutResult {
            rid,
            version,
            last_updated: ts,
            created,
        })
    }

    fn delete(&mut self, t: &str, id: &str) -> Result<Option<PutResult>> {
        self.before_write(t, id)?;
        let (existing, ts) = self.new_version(t, id)?;
        let Some((rid, old, false)) = existing else {
            return Ok(None);
        };
        let version = old + 1;
        let previous = self.current_body(rid)?;
        self.retire_current(rid, old)?;
        self.conn
            .prepare_cached(
                "UPDATE resources SET version = ?2, last_updated = ?3, deleted = 1, body = NULL WHERE rid = ?1",
            )?
            .execute(params![rid, version, ts])?;
        self.conn
            .prepare_cached(
                "INSERT INTO history (rid, version, last_updated, method, deleted, body) \
                 VALUES (?1, ?2, ?3, 'DELETE', 1, NULL)",
            )?
            .execute(params![rid, version, ts])?;
        self.w.observer.changed(t);
        match previous.map(|b| serde_json::from_slice::<Value>(&b)) {
            Some(Ok(old)) => self.index.remove(self.conn, rid, &old)?,
            _ => self.index.remove_all(self.conn, rid)?,
        }
        Ok(Some(PutResult {
            rid,
            version,
            last_updated: ts,
            created: false,
        }))
    }

    fn reindex(&mut self, types: &[String], after_rid: i64, limit: usize) -> Result<(usize, i64)> {
        if types.is_empty() {
            return Ok((0, after_rid));
        }
        self.flush()?;
        let marks = vec!["?"; types.len()].join(", ");
        let sql = format!(
            "SELECT rid, body FROM resources WHERE rid > ?1 AND deleted = 0 AND type IN ({marks}) \
             ORDER BY rid LIMIT {limit}"
        );
        let mut args: Vec<rusqlite::types::Value> = vec![after_rid.into()];
        args.extend(types.iter().map(|t| t.clone().into()));
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        let (mut n, mut last) = (0, after_rid);
        while let Some(row) = rows.next()? {
            let rid: i64 = row.get(0)?;
            if let Some(body) = row.get::<_, Option<Vec<u8>>>(1)?
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                self.index.reindex(self.conn, rid, &v)?;
            }
            n += 1;
            last = rid;
        }
        Ok((n, last))
    }

    fn put_version(&mut self, v: &Stored) -> Result<()> {
        self.before_write(&v.resource_type, &v.id)?;
        let (existing, _) = self.new_version(&v.resource_type, &v.id)?;
        if existing.is_some_and(|(_, old, _)| old >= v.version) {
            return Err(StoreError::Db(format!(
                "{}/{} already has version {} or later",
                v.resource_type, v.id, v.version
            )));
        }
        self.w.clock.fetch_max(v.last_updated, Ordering::Relaxed);
        let (rid, _, previous) = self.write_version(
            existing,
            (&v.resource_type, &v.id),
            v.version,
            v.last_updated,
            &v.method,
            v.person.as_deref(),
            v.body.as_deref(),
        )?;
        let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
        let old = previous.as_deref().and_then(parse);
        let new = v.body.as_deref().and_then(parse);
        match (old, new) {
            (Some(old), Some(new)) => self.index.replace(self.conn, rid, &old, &new)?,
            (Some(old), None) => self.index.remove(self.conn, rid, &old)?,
            (None, Some(new)) => {
                if previous.is_some() {
                    self.index.remove_all(self.conn, rid)?;
                }
                self.index.insert(self.conn, rid, &new)?
            }
            (None, None) => {
                if previous.is_some() {
                    self.index.remove_all(self.conn, rid)?;
                }
            }
        }
        Ok(())
    }

    fn set_person(&mut self, rid: i64, person: Option<&str>) -> Result<()> {
        self.persons.borrow_mut().clear();
        crate::keyed::set_person(self.conn, rid, person)
    }
    fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        crate::keyed::set_meta(self.conn, key, value)
    }
    fn sync_params(&mut self, reg: Registry) -> Result<()> {
        self.flush()?;
        self.index = Arc::new(self.index.sync(self.conn, reg)?);
        self.index_changed = true;
        Ok(())
    }
    fn finish_params(&mut self, keys: &[String]) -> Result<()> {
        self.flush()?;
        self.index = Arc::new(self.index.finish(self.conn, keys)?);
        self.index_changed = true;
        Ok(())
    }
}

/// What [`Writer::run_jobs`] did in one transaction.
struct Ran {
    outputs: Vec<Answer>,
    any_committed: bool,
    broken: Option<String>,
    /// A search-parameter change made by a kept job, published after the commit.
    new_index: Option<Arc<SqliteIndex>>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) index: IndexCell,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) clock: AtomicI64,
    pub(crate) commits: Arc<AtomicI64>,
    pub(crate) wal_big: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    /// Run groups of jobs until the store closes; their answers go out through the
    /// durability thread ([`crate::durable`]) once the WAL holding them is synced.
    pub(crate) fn run(&self, conn: Connection, rx: mpsc::Receiver<Request>, db: &Path) {
        let (done, synced) = mpsc::channel::<Vec<Answer>>();
        std::thread::scope(|s| {
            // Without the thread (it could not start) each commit is synced here.
            let done = std::thread::Builder::new()
                .name("issho-sync".into())
                .spawn_scoped(s, move || crate::durable::run(db, synced))
                .is_ok()
                .then_some(done);
            while let Ok(first) = rx.recv() {
                self.group(&conn, first, &rx, done.as_ref(), db);
            }
            drop(done);
        });
    }

    /// Run the queued jobs (up to [`MAX_GROUP`]) in one transaction and answer each.
    fn group(
        &self,
        conn: &Connection,
        first: Request,
        rx: &mpsc::Receiver<Request>,
        done: Option<&mpsc::Sender<Vec<Answer>>>,
        db: &Path,
    ) {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for r in batch {
                let _ = r.reply.send(Err(StoreError::Db(e.to_string())));
            }
            return;
        }
        let ran = self.run_jobs(conn, batch);
        self.finish(conn, ran, done, db);
    }

    /// Run the jobs of one transaction (begun): each job's answer, whether any job is kept,
    /// why the transaction cannot be committed (if so), and a search-parameter change made by a
    /// kept job.
    fn run_jobs(&self, conn: &Connection, batch: Vec<Request>) -> Ran {
        // A job needs a savepoint only when an earlier job of this transaction is kept: until
        // then a failed job is undone by rolling the whole transaction back (and beginning it
        // again for the next one). Savepoints cost a statement journal of every page they
        // touch, so a lone job, and the first of a group, run without one.
        let (mut any_committed, mut broken): (bool, Option<String>) = (false, None);
        let mut new_index: Option<Arc<SqliteIndex>> = None;
        let mut outputs: Vec<Answer> = Vec::with_capacity(batch.len());
        let last = batch.len() - 1;
        for (i, req) in batch.into_iter().enumerate() {
            if let Some(why) = &broken {
                outputs.push((req.reply, Err(StoreError::Db(why.clone()))));
                continue;
            }
            let guarded = any_committed;
            if guarded && let Err(e) = conn.execute_batch("SAVEPOINT job") {
                broken = Some(format!("cannot start a savepoint: {e}"));
                outputs.push((
                    req.reply,
                    Err(StoreError::Db(format!("cannot start a savepoint: {e}"))),
                ));
                continue;
            }
            let mut tx = WriterTx::new(
                conn,
                self,
                new_index
                    .clone()
                    .unwrap_or_else(|| current_index(&self.index)),
            );
            let mut job = req.job;
            // The job's gathered index rows are written before it counts as done (inside the
            // unwind guard too).
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let (keep, out) = job(&mut tx);
                match keep.then(|| tx.flush()) {
                    Some(Err(e)) => (false, Err(e)),
                    _ => (keep, Ok(out)),
                }
            }));
            let (keep, out) = match run {
                Ok((keep, out)) => (keep, out),
                Err(_) => (false, Err(StoreError::JobPanicked)),
            };
            if keep && tx.index_changed {
                new_index = Some(tx.index.clone());
            }
            if guarded {
                let end = conn.execute_batch(if keep {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                });
                if let Err(e) = end {
                    broken = Some(format!("cannot end a savepoint: {e}"));
                }
            } else if !keep && i < last {
                // Nothing kept yet: start over for the next job (SQLite may have rolled the
                // transaction back on its own already).
                let again = if conn.is_autocommit() {
                    conn.execute_batch("BEGIN IMMEDIATE")
                } else {
                    conn.execute_batch("ROLLBACK; BEGIN IMMEDIATE")
                };
                if let Err(e) = again {
                    broken = Some(format!("cannot begin again: {e}"));
                }
            }
            // SQLite may have rolled the whole transaction back on its own (disk full, I/O
            // error): then nothing of this group is stored, and no later job may run outside it.
            if conn.is_autocommit() {
                broken.get_or_insert_with(|| {
                    "the transaction was rolled back by the database".to_string()
                });
            }
            any_committed |= keep;
            outputs.push((req.reply, out));
        }
        Ran {
            outputs,
            any_committed,
            broken,
            new_index,
        }
    }

    /// Commit (or roll back) what [`Writer::run_jobs`] ran and answer the jobs.
    fn finish(
        &self,
        conn: &Connection,
        ran: Ran,
        done: Option<&mpsc::Sender<Vec<Answer>>>,
        db: &Path,
    ) {
        let Ran {
            outputs,
            any_committed,
            broken,
            new_index,
        } = ran;
        let (commits, wal_big) = (&self.commits, &self.wal_big);
        if let Some(why) = broken {
            let _ = conn.execute_batch("ROLLBACK");
            for (reply, _) in outputs {
                let _ = reply.send(Err(StoreError::Db(format!("nothing was stored: {why}"))));
            }
            return;
        }
        if !any_committed {
            // Nothing to keep (a lone failed job, or all failed): undo and answer.
            let _ = conn.execute_batch("ROLLBACK");
            for (reply, out) in outputs {
                let _ = reply.send(out);
            }
            return;
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                if let Some(index) = new_index {
                    *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
                }
                commits.fetch_add(1, Ordering::Relaxed);
                // Answered once the WAL is synced, while this thread goes on.
                let inline = match done {
                    Some(d) => d.send(outputs).err().map(|e| e.0),
                    None => Some(outputs),
                };
                if let Some(outputs) = inline {
                    crate::durable::answer(&crate::durable::wal_path(db), db, outputs.into_iter());
                }
                // Between transactions nothing new is appended, so this
                // PASSIVE checkpoint completes (unless a reader still needs old frames) and the
                // next transaction restarts the WAL.
                if wal_big.swap(false, Ordering::Relaxed) {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                for (reply, _) in outputs {
                    let _ = reply.send(Err(StoreError::Db(format!("commit failed: {e}"))));
                }
            }
        }
    }
}

// ---- shared read helpers ---------------------------------------------------------------
