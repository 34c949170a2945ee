//! Custom search parameters and background reindexing.
//!
//! A SearchParameter resource with `status` `active` whose definition issho can evaluate joins
//! the registry of this deployment as soon as it is stored: from then on every write indexes
//! it. The resources stored before it get their rows from a background worker that walks
//! them in `rid` order, a few hundred per write transaction, so reads and writes go on
//! meanwhile. Until the worker has finished, a search naming the parameter is refused as not
//! yet supported (lenient handling: ignored with a warning), so no search ever sees a partial
//! answer. Progress: `GET [base]/$reindex`.
//!
//! The state survives restarts: index keys still being built are marked in the index tables
//! (`sp_meta`), and the worker resumes when the engine opens.

use crate::*;
use issho_search::{Registry, SqliteIndex};
use issho_store::Indexer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Resources per reindex write transaction.
const REINDEX_BATCH: usize = 500;

/// Writes search index rows (issho-search) in the store's transactions, with the registry of
/// this deployment.
#[derive(Default)]
pub(crate) struct SearchIndexer {
    current: RwLock<Option<Arc<SqliteIndex>>>,
    /// Set when a SearchParameter resource was written or deleted: the registry may change.
    dirty: AtomicBool,
    /// Incremented whenever the set of pending keys is redefined.
    generation: AtomicU64,
}

thread_local! {
    /// Set on the writer thread while a write job changes a resource that decides care
    /// relationships or consent (Encounter, EpisodeOfCare, ServiceRequest, Consent, Patient):
    /// each job reads and clears its own flag (`Engine::write`), so one job's change can never
    /// be claimed, or cleared, by another job committed in the same group.
    pub(crate) static CARE_TOUCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Index-definition changes run on the writer (see [`issho_store::StoreTx::maintain_index`]).
enum IndexTask {
    /// Use this registry (R4 + the active custom parameters).
    Sync(Registry),
    /// These keys' rows are complete (if nothing was redefined since `generation`).
    Finish(Vec<String>, u64),
}

impl SearchIndexer {
    fn get(&self) -> rusqlite::Result<Arc<SqliteIndex>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(rusqlite::Error::InvalidQuery)
    }

    fn set(&self, index: SqliteIndex) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(index));
    }

    /// The registry searches are parsed with.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        match self.get() {
            Ok(i) => i.registry().clone(),
            Err(_) => Registry::r4_shared().clone(),
        }
    }

    fn note(&self, resource: &Value) {
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("SearchParameter") => self.dirty.store(true, Ordering::SeqCst),
            Some(rt) if crate::view::decides_access(rt) => CARE_TOUCHED.with(|c| c.set(true)),
            _ => {}
        }
    }
}

impl Indexer for SearchIndexer {
    fn open(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        self.set(SqliteIndex::open(conn)?);
        Ok(())
    }
    fn prepare(&self, resource: &Value) -> Option<issho_store::Prepared> {
        let index = self.get().ok()?;
        Some(Box::new(index.prepare(resource)))
    }
    fn index_prepared(
        &self,
        conn: &rusqlite::Connection,
        rid: i64,
        resource: &Value,
        previous: Option<&[u8]>,
        prepared: issho_store::Prepared,
    ) -> rusqlite::Result<()> {
        match (previous, prepared.downcast::<issho_search::Prepared>()) {
            (None, Ok(p)) => {
                self.note(resource);
                self.get()?.insert_prepared(conn, rid, resource, *p)
            }
            // An update replaces the superseded version's rows by difference: in the writer.
            _ => self.index(conn, rid, resource, previous),
        }
    }
    fn index(
        &self,
        conn: &rusqlite::Connection,
        rid: i64,
        resource: &Value,
        previous: Option<&[u8]>,
    ) -> rusqlite::Result<()> {
        self.note(resource);
        let index = self.get()?;
        match previous.map(serde_json::from_slice::<Value>) {
            None => index.insert(conn, rid, resource),
            Some(Ok(old)) => index.replace(conn, rid, &old, resource),
            Some(Err(_)) => {
                index.remove_all(conn, rid)?;
                index.insert(conn, rid, resource)
            }
        }
    }
    fn unindex(
        &self,
        conn: &rusqlite::Connection,
        rid: i64,
        previous: &[u8],
    ) -> rusqlite::Result<()> {
        let index = self.get()?;
        match serde_json::from_slice::<Value>(previous) {
            Ok(old) => {
                self.note(&old);
                index.remove(conn, rid, &old)
            }
            Err(_) => index.remove_all(conn, rid),
        }
    }
    fn reindex(
        &self,
        conn: &rusqlite::Connection,
        rid: i64,
        resource: &Value,
    ) -> rusqlite::Result<()> {
        self.get()?.reindex(conn, rid, resource)
    }
    fn maintain(
        &self,
        conn: &rusqlite::Connection,
        task: &(dyn std::any::Any + Send),
    ) -> rusqlite::Result<Box<dyn std::any::Any + Send>> {
        let Some(task) = task.downcast_ref::<IndexTask>() else {
            return Ok(Box::new(false));
        };
        let index = self.get()?;
        let changed = match task {
            IndexTask::Sync(reg) => {
                let next = index.sync(conn, reg.clone())?;
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.set(next);
                true
            }
            IndexTask::Finish(keys, generation) => {
                if self.generation.load(Ordering::SeqCst) != *generation {
                    false
                } else {
                    self.set(index.finish(conn, keys)?);
                    true
                }
            }
        };
        Ok(Box::new(changed))
    }
}

/// Progress of background reindexing (`GET [base]/$reindex`).
#[derive(Debug, Clone, Default)]
pub struct ReindexStatus {
    /// A worker is running.
    pub running: bool,
    /// Index keys whose rows are being built.
    pub keys: Vec<String>,
    /// Resource types being walked.
    pub types: Vec<String>,
    /// Resources done and to do in the current pass.
    pub done: u64,
    pub total: u64,
    /// Completed passes since the engine opened.
    pub passes: u64,
    /// The last failure of the worker, if any.
    pub error: Option<String>,
}

/// A custom parameter as this deployment sees it.
#[derive(Debug, Clone)]
pub struct CustomParam {
    pub url: String,
    pub code: String,
    pub base: Vec<String>,
    /// `ready`, `indexing` or `rejected`.
    pub state: &'static str,
    pub reason: Option<String>,
}

#[derive(Default)]
pub(crate) struct Reindexer {
    status: Mutex<ReindexStatus>,
    rejected: Mutex<Vec<(String, String)>>,
}

impl Reindexer {
    fn update(&self, f: impl FnOnce(&mut ReindexStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Why an active SearchParameter resource cannot be used (for writes and `$validate`).
pub(crate) fn search_parameter_issues(resource: &Value) -> Vec<Issue> {
    if resource.get("resourceType").and_then(Value::as_str) != Some("SearchParameter")
        || resource.get("status").and_then(Value::as_str) != Some("active")
    {
        return Vec::new();
    }
    match serde_json::from_value::<issho_model::SearchParamDef>(resource.clone()) {
        Err(e) => vec![Issue::error(
            IssueType::BusinessRule,
            format!("this active SearchParameter cannot be used: {e}"),
        )],
        Ok(def) => match Registry::check_custom_definition(&def) {
            Some(why) => vec![Issue::error(
                IssueType::BusinessRule,
                format!(
                    "this active SearchParameter cannot be used: {why} \
                     (store it with status 'draft' to keep it without searching by it)"
                ),
            )],
            None => Vec::new(),
        },
    }
}

impl Engine {
    /// The search parameters of this deployment (R4 + custom).
    pub fn registry(&self) -> Arc<Registry> {
        self.indexer.registry()
    }

    /// Bring the registry in line with the stored active SearchParameter resources when one
    /// was written since the last check; start the background worker when rows must be built.
    /// Called after every write (cheap when nothing changed) and when the engine opens.
    pub(crate) fn refresh_search_parameters(&self, force: bool) -> Result<()> {
        if !self.indexer.dirty.swap(false, Ordering::SeqCst) && !force {
            return Ok(());
        }
        let defs = self.active_search_parameters()?;
        let current = self.registry();
        let (reg, rejected) = Registry::with_custom(&defs);
        for (url, why) in &rejected {
            tracing::warn!(%url, reason = %why, "custom search parameter not used");
        }
        *self
            .reindexer
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = rejected;
        let same = {
            let mut a = current.custom_keys();
            let mut b = reg.custom_keys();
            a.sort();
            b.sort();
            a == b
        };
        if !same || force {
            let permit = self.system_permit("search-parameters")?;
            issho_store::write(&*self.store, &permit, move |tx| {
                tx.maintain_index(&IndexTask::Sync(reg)).map(|_| ())
            })??;
        }
        self.start_reindex();
        Ok(())
    }

    /// The definitions of the stored SearchParameter resources with status `active`.
    fn active_search_parameters(&self) -> Result<Vec<issho_model::SearchParamDef>> {
        let r = self
            .store
            .reader(&self.system_permit("search-parameters")?)?;
        let pairs = vec![
            ("status".to_string(), "active".to_string()),
            ("_sort".to_string(), "_id".to_string()),
        ];
        let mut q =
            issho_search::parse(Some("SearchParameter"), &pairs, true).map_err(|issues| {
                FhirError {
                    status: 500,
                    issues,
                }
            })?;
        q.count = Some(100_000);
        let (sql, params) = issho_search::sqlite_select(&q);
        let rids = r.query_rids(&sql, &params)?;
        let mut defs = Vec::new();
        for s in r.current_by_rids(&rids)? {
            if let Some(v) = s.json()
                && let Ok(def) = serde_json::from_value::<issho_model::SearchParamDef>(v)
            {
                defs.push(def);
            }
        }
        Ok(defs)
    }

    /// Start the worker unless it runs or there is nothing to build.
    fn start_reindex(&self) {
        let Ok(index) = self.indexer.get() else {
            return;
        };
        if index.pending().is_empty() {
            return;
        }
        {
            let mut st = self
                .reindexer
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if st.running {
                return;
            }
            st.running = true;
        }
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name("issho-reindex".into())
            .spawn(move || {
                let r = engine.reindex_loop();
                engine.reindexer.update(|s| {
                    s.running = false;
                    if let Err(e) = r {
                        s.error = Some(
                            e.issues
                                .first()
                                .map(|i| i.diagnostics.clone())
                                .unwrap_or_default(),
                        );
                    }
                });
                // Something may have become pending while the worker was finishing.
                if engine.indexer.get().is_ok_and(|i| !i.pending().is_empty())
                    && engine
                        .reindexer
                        .status
                        .lock()
                        .is_ok_and(|s| s.error.is_none())
                {
                    engine.start_reindex();
                }
            });
        if spawned.is_err() {
            self.reindexer.update(|s| s.running = false);
        }
    }

    fn reindex_loop(&self) -> Result<()> {
        let permit = self.system_permit("reindex")?;
        loop {
            let generation = self.indexer.generation.load(Ordering::SeqCst);
            let index = self
                .indexer
                .get()
                .map_err(|e| FhirError::internal(e.to_string()))?;
            let keys = index.pending();
            if keys.is_empty() {
                return Ok(());
            }
            let types = index.registry().pending_types();
            let total = self.store.reader(&permit)?.count_current(&types)?;
            tracing::info!(
                ?keys,
                ?types,
                total,
                "building index rows of new search parameters"
            );
            self.reindexer.update(|s| {
                s.keys = keys.clone();
                s.types = types.clone();
                s.done = 0;
                s.total = total;
                s.error = None;
            });
            let mut after = 0i64;
            loop {
                if self.indexer.generation.load(Ordering::SeqCst) != generation {
                    break;
                }
                let t = types.clone();
                let (n, last) = issho_store::write(&*self.store, &permit, move |tx| {
                    tx.reindex(&t, after, REINDEX_BATCH)
                })??;
                if n == 0 {
                    break;
                }
                after = last;
                self.reindexer.update(|s| s.done += n as u64);
            }
            let k = keys.clone();
            let finished = issho_store::write(&*self.store, &permit, move |tx| {
                tx.maintain_index(&IndexTask::Finish(k, generation))
            })??;
            if finished.downcast_ref::<bool>() == Some(&true) {
                tracing::info!(?keys, "search parameters ready");
                self.reindexer.update(|s| {
                    s.passes += 1;
                    s.keys.clear();
                });
            }
        }
    }

    /// Reindexing progress and the custom parameters (an administrator's view).
    pub fn reindex_status(&self, ctx: &AccessContext) -> Result<(ReindexStatus, Vec<CustomParam>)> {
        self.gate.check(ctx, Action::Admin, None)?;
        let status = self
            .reindexer
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let reg = self.registry();
        let mut out: Vec<CustomParam> = Vec::new();
        for p in reg.custom_params() {
            match out.iter_mut().find(|c| c.url == p.url) {
                Some(c) => {
                    c.base.push(p.resource_type.clone());
                    if p.pending {
                        c.state = "indexing";
                    }
                }
                None => out.push(CustomParam {
                    url: p.url.clone(),
                    code: p.code.clone(),
                    base: vec![p.resource_type.clone()],
                    state: if p.pending { "indexing" } else { "ready" },
                    reason: None,
                }),
            }
        }
        for (url, why) in self
            .reindexer
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push(CustomParam {
                url: url.clone(),
                code: String::new(),
                base: Vec::new(),
                state: "rejected",
                reason: Some(why.clone()),
            });
        }
        out.sort_by(|a, b| a.url.cmp(&b.url));
        Ok((status, out))
    }

    /// Wait until no custom parameter is pending (for tools and tests); false on timeout.
    pub fn wait_for_reindex(&self, timeout: std::time::Duration) -> bool {
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end {
            let idle = self.indexer.get().is_ok_and(|i| i.pending().is_empty());
            if idle {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }
}
