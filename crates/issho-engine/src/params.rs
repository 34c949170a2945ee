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
use issho_search::Registry;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Resources per reindex write transaction.
const REINDEX_BATCH: usize = 500;

/// Watches the store's writes for what changes the search parameters or access (the store's
/// [`issho_store::Observer`]); the store itself writes the index rows.
#[derive(Default)]
pub(crate) struct SearchIndexer {
    /// Set when a SearchParameter resource was written or deleted: the registry may change.
    dirty: AtomicBool,
    /// Incremented whenever the set of pending keys is redefined.
    generation: AtomicU64,
    /// Incremented when a StructureDefinition, ValueSet, CodeSystem or ConceptMap is written
    /// (profiles and expansions may change).
    pub(crate) conformance: AtomicU64,
}

thread_local! {
    /// Set on the writer thread while a write job changes a resource that decides care
    /// relationships or consent (Encounter, EpisodeOfCare, ServiceRequest, Consent, Patient):
    /// each job reads and clears its own flag (`Engine::write`), so one job's change can never
    /// be claimed, or cleared, by another job committed in the same group.
    pub(crate) static CARE_TOUCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl issho_store::Observer for SearchIndexer {
    fn changed(&self, resource_type: &str) {
        match resource_type {
            "SearchParameter" => self.dirty.store(true, Ordering::SeqCst),
            "StructureDefinition" | "ValueSet" | "CodeSystem" | "ConceptMap" => {
                self.conformance.fetch_add(1, Ordering::SeqCst);
            }
            rt if crate::view::decides_access(rt) => CARE_TOUCHED.with(|c| c.set(true)),
            _ => {}
        }
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
        self.store.registry()
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
            let indexer = self.indexer.clone();
            // The generation moves on the writer, in the same job as the redefinition.
            issho_store::write(&*self.store, &permit, move |tx| {
                tx.sync_params(reg.clone())?;
                indexer.generation.fetch_add(1, Ordering::SeqCst);
                Ok::<(), issho_store::StoreError>(())
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
        let rids = r.search(&q)?;
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
        if self.store.pending_params().is_empty() {
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
                if !engine.store.pending_params().is_empty()
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
            let keys = self.store.pending_params();
            if keys.is_empty() {
                return Ok(());
            }
            let types = self.store.registry().pending_types();
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
            let indexer = self.indexer.clone();
            // Finished unless the parameters were redefined meanwhile (checked on the writer,
            // where every redefinition runs, so none can slip in between).
            let finished = issho_store::write(&*self.store, &permit, move |tx| {
                if indexer.generation.load(Ordering::SeqCst) != generation {
                    return Ok(false);
                }
                tx.finish_params(&k).map(|_| true)
            })??;
            if finished {
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
            let idle = self.store.pending_params().is_empty();
            if idle {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }
}
