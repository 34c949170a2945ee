//! The FHIR engine: every interaction (create, read, vread, update, patch, delete, history,
//! search, batch, transaction, `$validate`) with the semantics of FHIR R4 http.html.
//!
//! The engine owns the store privately: callers (the HTTP server, the CLI) hand it an
//! [`AccessContext`] and an interaction, the engine asks the access gate for a permit and only
//! then touches the store. Validation, id and version assignment, conditional logic and
//! transaction ordering live here; nothing here knows about HTTP headers or wire formats.

mod access_log;
mod associated;
mod audit;
mod break_glass;
mod bulk;
mod bulk_params;
mod bundle;
mod cds;
mod consent;
mod everything;
mod export;
mod guard;
mod history;
mod identity;
mod identity_ops;
mod intake;
mod lastn;
mod links;
mod merge;
mod origin;
mod owner;
mod packages;
mod pages;
mod params;
mod profiles;
pub use profiles::SnapshotOf;
mod research;
pub use research::ResearchDefault;
mod rest;
mod search;
mod searchset;
mod summary;
mod terminology;
mod terminology_ops;
mod transaction;
mod view;
mod views;
pub use views::{MAX_VIEW_ROWS, ViewScope};
mod writes;

pub use break_glass::BREAK_GLASS_SECONDS;
pub use bulk::{BulkJobs, BulkLevel, BulkStatus};
pub use bundle::Return;
pub use cds::cds_discovery;
pub use consent::ConsentPolicy;
pub use export::{Associated, ExportRequest, ExportSummary, Flow};
pub use issho_access::{AccessContext, Action, Gate};
pub use issho_store::{HistoryQuery, HistoryScope, Stored};
pub use params::{CustomParam, ReindexStatus};
pub use rest::parse_etag;
pub use search::{SearchResult, parse_query};
pub use terminology_ops::{TermInput, TermOp};

/// A fresh id for a response Bundle.
pub fn new_bundle_id() -> String {
    new_id()
}

use issho_model::{Issue, IssueType};
use issho_store::Store;
use serde_json::Value;
use std::sync::Arc;

/// An error answer: HTTP status plus the issues for its OperationOutcome.
#[derive(Debug, Clone)]
pub struct FhirError {
    pub status: u16,
    pub issues: Vec<Issue>,
}

impl FhirError {
    pub fn new(status: u16, code: IssueType, msg: impl Into<String>) -> FhirError {
        FhirError {
            status,
            issues: vec![Issue::error(code, msg)],
        }
    }
    pub fn bad_request(msg: impl Into<String>) -> FhirError {
        FhirError::new(400, IssueType::Invalid, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> FhirError {
        FhirError::new(404, IssueType::NotFound, msg)
    }
    pub fn precondition(msg: impl Into<String>) -> FhirError {
        FhirError::new(412, IssueType::Conflict, msg)
    }
    pub fn internal(msg: impl Into<String>) -> FhirError {
        FhirError::new(500, IssueType::Exception, msg)
    }
    pub fn outcome(&self) -> Value {
        issho_model::operation_outcome(&self.issues)
    }
}

impl From<issho_store::StoreError> for FhirError {
    fn from(e: issho_store::StoreError) -> Self {
        // Lost to other writers: transient, the client may send it again.
        let (status, code) = match e {
            issho_store::StoreError::Conflict(_) => (503, IssueType::Transient),
            _ => (500, IssueType::Exception),
        };
        FhirError::new(status, code, e.to_string())
    }
}

impl From<issho_access::Denied> for FhirError {
    fn from(d: issho_access::Denied) -> Self {
        FhirError {
            status: d.status,
            issues: vec![d.issue],
        }
    }
}

pub type Result<T> = std::result::Result<T, FhirError>;

/// The result of a write (or of a conditional create that found its match).
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// 200 (updated / matched), 201 (created), 204 (deleted / nothing to do).
    pub status: u16,
    pub resource_type: String,
    pub id: String,
    /// The resource as stored (None after a delete).
    pub resource: Option<Value>,
    pub version: Option<u64>,
    pub last_updated: Option<i64>,
    /// Informational issues (for `Prefer: return=OperationOutcome`).
    pub issues: Vec<Issue>,
}

impl WriteOutcome {
    /// `Type/id/_history/v`.
    pub fn location(&self) -> Option<String> {
        self.version
            .map(|v| format!("{}/{}/_history/{}", self.resource_type, self.id, v))
    }
}

/// A patch document.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 6902 JSON Patch (`application/json-patch+json`).
    Json(Value),
    /// FHIRPath Patch: a Parameters resource.
    FhirPath(Value),
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Validate every write against the R4 definitions (on by default).
    pub validate: bool,
    /// Largest page a search or history request may ask for.
    pub max_count: usize,
    pub default_count: usize,
    /// How many matches of a search are remembered for stable paging (beyond: offset paging).
    pub page_cache_rids: usize,
    /// How many matches the first request of a search in `rid` order reads (its total is
    /// reported without counting when they are all; later pages read on from there).
    pub first_window: usize,
    /// How many result sets are remembered, and for how long.
    pub page_cache_sets: usize,
    pub page_cache_ttl: std::time::Duration,
    /// How long a break-the-glass opening lasts (`break_glass.rs`).
    pub break_glass_for: std::time::Duration,
    /// Share a person's record unless they refused, or only after they agreed (`consent.rs`).
    pub consent_policy: ConsentPolicy,
    /// Refuse (409) a MedicationRequest that conflicts with the person's drug allergies,
    /// contraindicated drugs or current prescriptions; by default it is written with warnings.
    pub refuse_conflicting_orders: bool,
    /// Profiles every resource of a type must meet (type, canonical url), beside those in
    /// its `meta.profile` (`profiles.rs`).
    pub required_profiles: Vec<(String, String)>,
    /// A profile named in `meta.profile` that is not installed refuses the write (otherwise
    /// it is a warning).
    pub unknown_profiles_are_errors: bool,
    /// Whether research takes persons who said nothing (opt-out, the default) or only those
    /// who agreed (`research.rs`).
    pub research_default: ResearchDefault,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            validate: true,
            max_count: 1000,
            default_count: 50,
            page_cache_rids: 10_000,
            first_window: 1_000,
            page_cache_sets: 1_000,
            page_cache_ttl: std::time::Duration::from_secs(600),
            break_glass_for: std::time::Duration::from_secs(break_glass::BREAK_GLASS_SECONDS),
            consent_policy: ConsentPolicy::default(),
            refuse_conflicting_orders: false,
            required_profiles: Vec::new(),
            unknown_profiles_are_errors: false,
            research_default: ResearchDefault::default(),
        }
    }
}

/// Care relationships and consent decisions by organization, valid for one store sequence.
type CareCache = std::collections::HashMap<
    String,
    (
        i64,
        Vec<String>,
        std::collections::HashMap<String, view::ConsentDecision>,
    ),
>;

/// The engine. Cheap to clone (shared store).
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    indexer: Arc<params::SearchIndexer>,
    reindexer: Arc<params::Reindexer>,
    /// The audit trail (segments beside the embedded store, or tables of the PostgreSQL one);
    /// every interaction is recorded.
    audit: Option<Arc<dyn issho_audit::AuditTrail>>,
    /// Per organization: (care generation, patients in care, consent decisions).
    care_cache: Arc<std::sync::Mutex<CareCache>>,
    /// Incremented after each committed write of a resource that decides care relationships
    /// or consent (so other writes keep the cache).
    care_generation: Arc<std::sync::atomic::AtomicI64>,
    gate: Gate,
    config: EngineConfig,
    pages: Arc<pages::PageCache>,
    /// Indexed code systems (`terminology.rs`).
    code_systems: Arc<terminology::CodeSystemCache>,
    /// Indexed profiles (`profiles.rs`).
    profiles: Arc<profiles::ProfileCache>,
    /// Bulk Data `$export` jobs and their files (`bulk.rs`), when there is a data directory.
    bulk: Option<Arc<bulk::BulkJobs>>,
    /// Research projects (`research.rs`): their members, secrets and profiles.
    research: Arc<issho_research::Projects>,
}

impl Engine {
    fn new(
        store: Arc<dyn Store>,
        indexer: Arc<params::SearchIndexer>,
        gate: Gate,
        config: EngineConfig,
    ) -> Engine {
        let pages = Arc::new(pages::PageCache::new(
            config.page_cache_sets,
            config.page_cache_ttl,
        ));
        Engine {
            store,
            indexer,
            reindexer: Arc::default(),
            audit: None,
            care_cache: Arc::default(),
            care_generation: Arc::default(),
            gate,
            config,
            pages,
            code_systems: Arc::default(),
            profiles: Arc::default(),
            bulk: None,
            research: Arc::default(),
        }
    }

    /// Keeps Bulk Data `$export` jobs and their files in `dir` (finished ones are served again
    /// after a restart).
    pub fn enable_bulk(&mut self, dir: std::path::PathBuf) -> std::io::Result<()> {
        self.bulk = Some(Arc::new(bulk::BulkJobs::open(dir)?));
        Ok(())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Validate a resource for `$validate` or a write: structure and the resource type named by
    /// the URL. Returns all issues (errors and warnings).
    /// `$validate`: the R4 structure, then the profiles (its `meta.profile`, the required
    /// ones, and `profile`, which must be installed).
    pub fn validate(
        &self,
        ctx: &AccessContext,
        resource_type: Option<&str>,
        resource: &Value,
        profile: Option<&str>,
    ) -> Result<Vec<Issue>> {
        self.gate.check(ctx, Action::Operation, resource_type)?;
        let mut issues = check_resource(resource_type, resource, true, false);
        if !issues.iter().any(Issue::is_error) {
            issues.extend(issho_profiles::base_invariant_warnings(resource));
            issues.extend(self.profile_issues(&self.as_stored(resource), profile)?);
        }
        Ok(issues)
    }
}

/// Structural checks shared by every write and `$validate`.
/// `in_bundle`: the resource is a transaction/batch entry, so conditional references are allowed.
pub(crate) fn check_resource(
    resource_type: Option<&str>,
    resource: &Value,
    validate: bool,
    in_bundle: bool,
) -> Vec<Issue> {
    let Some(obj) = resource.as_object() else {
        return vec![Issue::error(
            IssueType::Structure,
            "the body must be a JSON object holding a FHIR resource",
        )];
    };
    let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else {
        return vec![
            Issue::error(IssueType::Required, "the resource has no resourceType")
                .at("resourceType"),
        ];
    };
    if let Some(expected) = resource_type
        && rt != expected
    {
        return vec![Issue::error(
            IssueType::Invalid,
            format!("resourceType '{rt}' does not match the type in the URL ('{expected}')"),
        )];
    }
    if !issho_model::r4().is_resource_type(rt) {
        return vec![Issue::error(
            IssueType::NotSupported,
            format!("'{rt}' is not a FHIR R4 resource type"),
        )];
    }
    if validate {
        let opts = issho_model::validate::ValidateOptions {
            allow_conditional_references: in_bundle,
            ..Default::default()
        };
        let mut issues = issho_model::validate::validate_resource(resource, &opts);
        issues.extend(params::search_parameter_issues(resource));
        // The R4 base invariants of a well-formed resource: their errors (the warnings, such
        // as dom-6's "should have narrative", only for `$validate`).
        if !issues.iter().any(Issue::is_error) {
            issues.extend(issho_profiles::base_invariant_errors(resource));
        }
        issues
    } else {
        params::search_parameter_issues(resource)
    }
}

pub(crate) fn errors_only(issues: Vec<Issue>) -> Option<FhirError> {
    if issues.iter().any(Issue::is_error) {
        // Business rules (422) when the resource is otherwise well-formed.
        let business = issues
            .iter()
            .filter(|i| i.is_error())
            .all(|i| i.code == IssueType::BusinessRule);
        Some(FhirError {
            status: if business { 422 } else { 400 },
            issues,
        })
    } else {
        None
    }
}

/// A new server-assigned id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Check a logical id's syntax (FHIR `id`: 1–64 of `A-Za-z0-9-.`).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Engine {
    /// Open the engine over a store and an audit trail, with the default gate.
    /// `open_store` opens the backend with the engine's observer (changes that decide access
    /// or the search parameters are noted on the writer, inside each write job); `audit` is
    /// the trail every interaction is recorded to (`None`: nothing is recorded).
    pub fn open(
        open_store: impl FnOnce(Arc<dyn issho_store::Observer>) -> Result<Arc<dyn Store>>,
        audit: Option<Arc<dyn issho_audit::AuditTrail>>,
        config: EngineConfig,
    ) -> Result<Engine> {
        let indexer = Arc::new(params::SearchIndexer::default());
        let store = open_store(indexer.clone())?;
        let mut engine = Engine::new(store, indexer, Gate::new(), config);
        engine.audit = audit;
        // Custom search parameters stored earlier; resumes unfinished reindexing.
        engine.refresh_search_parameters(true)?;
        // Stores keyed by an earlier ownership rule are re-keyed before serving.
        engine.rekey_persons()?;
        Ok(engine)
    }

    /// Run `f` in a write transaction, then take in any change of the stored
    /// SearchParameter resources (the registry; background reindexing). The store may run `f`
    /// again after a conflict with another writer ([`issho_store::Job`]).
    pub(crate) fn write<R, E, F>(
        &self,
        permit: &issho_access::Permit,
        f: F,
    ) -> issho_store::Result<std::result::Result<R, E>>
    where
        R: Send + 'static,
        E: Send + 'static,
        F: FnMut(&mut dyn issho_store::StoreTx) -> std::result::Result<R, E> + Send + 'static,
    {
        use params::CARE_TOUCHED;
        let mut f = f;
        let out = issho_store::write(&*self.store, permit, move |tx| {
            CARE_TOUCHED.with(|c| c.set(false));
            let out = f(tx);
            let touched = CARE_TOUCHED.with(|c| c.replace(false));
            out.map(|v| (v, touched))
        });
        // After this job's commit, before its answer: clinicians' care relationships and
        // consents are recomputed on every request that starts from now on (cached sets carry
        // the generation they were computed for).
        let out = out.map(|r| {
            r.map(|(v, touched)| {
                if touched {
                    self.care_generation
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                v
            })
        });
        if let Err(e) = self.refresh_search_parameters(false) {
            tracing::error!(error = ?e.issues, "could not apply search parameter changes");
        }
        out
    }

    /// True when nothing was ever written (an operator's check, e.g. before loading demo data).
    pub fn is_empty(&self, ctx: &AccessContext) -> Result<bool> {
        let permit = self.gate.check(ctx, Action::Admin, None)?;
        Ok(self.store.reader(&permit)?.max_seq()? == 0)
    }

    /// A snapshot for `ctx`'s `action` on `rt`: the gate first, its permit opens the store.
    pub(crate) fn snapshot(
        &self,
        ctx: &AccessContext,
        action: Action,
        rt: Option<&str>,
    ) -> Result<Box<dyn issho_store::StoreRead + '_>> {
        let permit = self.gate.check(ctx, action, rt)?;
        Ok(self.store.reader(&permit)?)
    }

    /// The permit of the engine's own upkeep (search-parameter registry and reindexing,
    /// re-keying by the ownership rule): the system principal's, from the gate like any other.
    pub(crate) fn system_permit(&self, why: &str) -> Result<issho_access::Permit> {
        Ok(self
            .gate
            .check(&AccessContext::system(why), Action::Admin, None)?)
    }
}

#[cfg(test)]
mod invariants {
    /// The engine knows no database: it depends on the store's traits (issho-store) and the
    /// audit trail's (issho-audit without its `sqlite` feature), never on a backend, so
    /// `cargo tree -p issho-engine` shows no database driver.
    #[test]
    fn the_engine_depends_on_no_database() {
        let manifest = include_str!("../Cargo.toml");
        for db in [
            "rusqlite",
            "postgres",
            "sqlx",
            "issho-store-sqlite",
            "issho-store-pg",
        ] {
            assert!(
                !manifest.contains(db),
                "issho-engine must not depend on {db}"
            );
        }
        assert!(
            !manifest.contains("features = [\"sqlite\"]"),
            "the engine uses issho-audit without its SQLite log"
        );
        let workspace = include_str!("../../../Cargo.toml");
        let audit = workspace
            .lines()
            .find(|l| l.starts_with("issho-audit ="))
            .expect("issho-audit in the workspace");
        assert!(
            audit.contains("default-features = false"),
            "issho-audit's SQLite log is opted into by the binary only: {audit}"
        );
    }
}
