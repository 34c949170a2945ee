//! The writers: several threads, each with its own connection, take queued jobs and commit
//! them in groups (each job in its own savepoint).
//!
//! Writers in this process and in other processes on the same database meet only in
//! PostgreSQL: a job holds the identity of every resource it reads for writing or writes, and
//! the condition of a conditional create or update, as transaction-scoped advisory locks
//! (released at the commit). Only a job that runs before any job of its group was kept may
//! wait for such a lock; a later job that finds one held gives up at once — its savepoint is rolled back and it runs again,
//! first, in the writer's next group. A group therefore never waits while it holds another
//! job's locks, and two groups cannot deadlock through issho's own locks. A job that loses to
//! another transaction anyway (a deadlock PostgreSQL breaks, a serialization failure, a key
//! inserted meanwhile) is run again the same way.

use super::*;

/// How many times a job is run before it is answered with [`StoreError::Conflict`].
const MAX_RUNS: u32 = 20;

/// The advisory lock name every group holds shared and a change of the search parameters
/// holds exclusively (the rows a group writes follow one index definition).
const INDEX_LOCK: &str = "issho:index";

/// The `store_meta` key counting changes of the search parameters.
pub(crate) const INDEX_GENERATION: &str = "index_generation";

/// A writer's connection, named for operators in `pg_stat_activity`: `issho-writer <schema>`.
pub(crate) fn connect_writer(url: &str) -> Result<Conn> {
    let mut c = connect(url)?;
    c.batch("SELECT set_config('application_name', 'issho-writer ' || current_schema(), false)")?;
    Ok(c)
}

pub(crate) struct Request {
    pub(crate) job: Job,
    pub(crate) reply: Reply,
    /// Runs so far.
    pub(crate) runs: u32,
}

pub(crate) struct Writer {
    pub(crate) url: String,
    pub(crate) index: IndexCell,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) clock: Arc<AtomicI64>,
    /// The index generation this process's index follows.
    pub(crate) generation: Arc<AtomicI64>,
}

pub(crate) struct WriterTx<'a> {
    pub(crate) c: RefCell<&'a mut Conn>,
    pub(crate) w: &'a Writer,
    pub(crate) index: Arc<PgIndex>,
    pub(crate) index_changed: bool,
    /// Index rows of resources created in this job, not yet inserted.
    pub(crate) staged: RefCell<Staged>,
    /// No job of its group was kept before it: it may wait for a lock (its transaction holds
    /// no other job's).
    pub(crate) may_wait: bool,
    /// Keys this job holds already.
    pub(crate) held: RefCell<std::collections::HashSet<String>>,
    /// The index generation this job's change of the search parameters made.
    pub(crate) generation: Option<i64>,
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
    fn hold_identity(&self, t: &str, id: &str) -> Result<()> {
        self.hold(&format!("{t}/{id}"))
    }
}

impl WriterTx<'_> {
    /// Hold `key` until the transaction ends (see the module's text).
    pub(crate) fn hold(&self, key: &str) -> Result<()> {
        if self.held.borrow().contains(key) {
            return Ok(());
        }
        let mut c = self.conn();
        if self.may_wait {
            c.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext($1))",
                &[&key],
            )?;
        } else {
            let got: bool = c
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtext(current_schema()), hashtext($1))",
                    &[&key],
                )?
                .get(0);
            if !got {
                c.mark_conflict();
                return Err(StoreError::Conflict(format!(
                    "another write holds {key} (tried {MAX_RUNS} times)"
                )));
            }
        }
        self.held.borrow_mut().insert(key.to_string());
        Ok(())
    }

    /// Before the search parameters change: no other group may be writing rows meanwhile.
    pub(crate) fn hold_index(&mut self) -> Result<()> {
        self.hold(INDEX_LOCK)?;
        // The next groups (here and in other processes) see that the index changed.
        let g: i64 = self
            .conn()
            .query_one(
                "INSERT INTO store_meta (key, value) VALUES ($1, '1') ON CONFLICT (key) \
                 DO UPDATE SET value = (store_meta.value::bigint + 1)::text \
                 RETURNING value::bigint",
                &[&INDEX_GENERATION],
            )?
            .get(0);
        self.generation = Some(g);
        Ok(())
    }
}

/// A job's new index when it changed the search parameters, with the index generation it
/// made (none when the keys stayed the same).
type NewIndex = Option<(Arc<PgIndex>, Option<i64>)>;

/// The jobs of one group, and what became of each.
enum Outcome {
    Answer(Reply, Result<Box<dyn Any + Send>>),
    Again(Request),
}

impl Writer {
    pub(crate) fn run(&self, mut conn: Conn, rx: Arc<Mutex<mpsc::Receiver<Request>>>) {
        let mut again: Vec<Request> = Vec::new();
        loop {
            let mut batch = std::mem::take(&mut again);
            {
                let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                if batch.is_empty() {
                    match rx.recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => return,
                    }
                }
                while batch.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
            }
            if conn.is_closed() {
                // The server restarted or the network failed: connect again.
                match connect_writer(&self.url) {
                    Ok(c) => conn = c,
                    Err(e) => {
                        for r in batch {
                            let _ = r.reply.send(Err(StoreError::Db(e.to_string())));
                        }
                        continue;
                    }
                }
            }
            again = self.group(&mut conn, batch);
        }
    }

    /// Start a group's transaction: hold the index shared, and follow a change of the search
    /// parameters committed meanwhile.
    fn begin(&self, conn: &mut Conn) -> Result<()> {
        conn.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock_shared(hashtext(current_schema()), \
             hashtext('{INDEX_LOCK}'))"
        ))?;
        let now: i64 = conn
            .query_opt(
                "SELECT value::bigint FROM store_meta WHERE key = $1",
                &[&INDEX_GENERATION],
            )?
            .map(|r| r.get(0))
            .unwrap_or(0);
        // A writer of this process that changed it installs its index just after its commit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.generation.load(Ordering::SeqCst) < now {
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Db(
                    "the search parameters were changed by another issho process; restart \
                     this one to take them in (not yet automatic)"
                        .into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    /// Run the jobs in one transaction, each in its own savepoint (PostgreSQL aborts a
    /// transaction at its first failed statement; the savepoint confines that to the job),
    /// commit, then answer each. Returns the jobs to run again.
    fn group(&self, conn: &mut Conn, batch: Vec<Request>) -> Vec<Request> {
        if let Err(e) = self.begin(conn) {
            let _ = conn.batch("ROLLBACK");
            for r in batch {
                let _ = r.reply.send(Err(StoreError::Db(e.to_string())));
            }
            return Vec::new();
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut new_index: NewIndex = None;
        let mut broken: Option<String> = None;
        // Whether a kept job holds locks: from then on no job waits for one.
        let mut holding = false;
        for mut req in batch {
            if let Some(why) = &broken {
                outcomes.push(Outcome::Answer(req.reply, Err(StoreError::Db(why.clone()))));
                continue;
            }
            if let Err(e) = conn.batch("SAVEPOINT job") {
                broken = Some(format!("cannot start a savepoint: {e}"));
                outcomes.push(Outcome::Answer(
                    req.reply,
                    Err(StoreError::Db(e.to_string())),
                ));
                continue;
            }
            req.runs += 1;
            let index = match &new_index {
                Some((i, _)) => i.clone(),
                None => current_index(&self.index),
            };
            let (keep, out, index) = self.run_job(conn, &mut req.job, index, !holding);
            let conflict = conn.take_conflict();
            holding |= keep && !conflict;
            let end = conn.batch(if keep && !conflict {
                "RELEASE SAVEPOINT job"
            } else {
                "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
            });
            if let Err(e) = end {
                broken = Some(format!("cannot end a savepoint: {e}"));
            }
            if conflict && req.runs < MAX_RUNS {
                outcomes.push(Outcome::Again(req));
                continue;
            }
            let out = match (conflict, out) {
                (true, Err(StoreError::Conflict(e))) => Err(StoreError::Conflict(e)),
                (true, _) => Err(StoreError::Conflict(format!(
                    "lost to other writes {MAX_RUNS} times"
                ))),
                (false, out) => out,
            };
            if keep
                && !conflict
                && let Some(i) = index
            {
                new_index = Some(i);
            }
            outcomes.push(Outcome::Answer(req.reply, out));
        }
        self.commit(conn, outcomes, broken, new_index)
    }

    /// Run one job (and insert its staged index rows before its savepoint ends), inside the
    /// panic guard: (keep?, output, its new index when it changed the search parameters).
    fn run_job(
        &self,
        conn: &mut Conn,
        job: &mut Job,
        index: Arc<PgIndex>,
        may_wait: bool,
    ) -> (bool, Result<Box<dyn Any + Send>>, NewIndex) {
        let mut tx = WriterTx {
            c: RefCell::new(conn),
            w: self,
            index,
            index_changed: false,
            staged: RefCell::new(Staged::default()),
            may_wait,
            held: RefCell::new(Default::default()),
            generation: None,
        };
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
        let generation = tx.generation;
        (
            keep,
            out,
            tx.index_changed.then_some((tx.index, generation)),
        )
    }

    /// Commit the group and answer its jobs; returns those to run again (in a new group, once
    /// this one's locks are released).
    fn commit(
        &self,
        conn: &mut Conn,
        outcomes: Vec<Outcome>,
        broken: Option<String>,
        new_index: NewIndex,
    ) -> Vec<Request> {
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
        let mut again = Vec::new();
        match done {
            Ok(()) => {
                if let Some((index, g)) = new_index {
                    *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
                    if let Some(g) = g {
                        self.generation.fetch_max(g, Ordering::SeqCst);
                    }
                }
                for o in outcomes {
                    match o {
                        Outcome::Answer(reply, out) => {
                            let _ = reply.send(out);
                        }
                        Outcome::Again(r) => again.push(r),
                    }
                }
            }
            Err(why) => {
                let _ = conn.batch("ROLLBACK");
                let msg = if why.starts_with("nothing was stored") || why.contains("unknown") {
                    why.clone()
                } else {
                    format!("nothing was stored: {why}")
                };
                for o in outcomes {
                    let reply = match o {
                        Outcome::Answer(reply, _) => reply,
                        Outcome::Again(r) => r.reply,
                    };
                    let _ = reply.send(Err(StoreError::Db(msg.clone())));
                }
            }
        }
        again
    }

    /// Strictly increasing timestamps in this process (see `write.rs` for one resource's
    /// versions across processes).
    pub(crate) fn tick(&self) -> i64 {
        let now = now_micros();
        let mut prev = self.clock.load(Ordering::Relaxed);
        loop {
            let t = if now > prev { now } else { prev + 1 };
            match self
                .clock
                .compare_exchange(prev, t, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return t,
                Err(p) => prev = p,
            }
        }
    }
}
