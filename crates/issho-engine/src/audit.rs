//! Every interaction is recorded in the audit trail (issho-audit): who (user or client, role,
//! organization), why (purpose of use), what (interaction, resources, query), whose data (the
//! patients concerned), and the outcome — denials included.
//!
//! The public interaction methods of the engine are these wrappers: each runs the interaction
//! and records it. A read whose record cannot be written is refused (503): an access that
//! cannot be audited does not happen. A write that committed stays committed; the failure is
//! logged and reported by the audit log's health.

use crate::rest::person_of;
use crate::*;
use issho_access::{Principal, Purpose};
use issho_audit::{AuditRecord, Interaction, Outcome};

/// Most resources named in one audit record (searches name the query as well).
const MAX_ENTITIES: usize = 50;

/// What an interaction touched.
#[derive(Default)]
pub(crate) struct Touched {
    pub(crate) patients: Vec<String>,
    pub(crate) entities: Vec<String>,
}

impl Touched {
    /// A resource touched, and the patient whose record holds it (the store's person rule).
    fn add(&mut self, rt: &str, id: &str, version: Option<u64>, person: Option<String>) {
        if self.entities.len() < MAX_ENTITIES {
            self.entities.push(match version {
                Some(v) => format!("{rt}/{id}/_history/{v}"),
                None => format!("{rt}/{id}"),
            });
        }
        if let Some(p) = person {
            let r = format!("Patient/{p}");
            if !self.patients.contains(&r) {
                self.patients.push(r);
            }
        }
    }
    fn stored(&mut self, s: &Stored) {
        self.add(&s.resource_type, &s.id, Some(s.version), s.person.clone());
    }
    fn write(&mut self, w: &WriteOutcome) {
        if !w.id.is_empty() {
            let person = w
                .resource
                .as_ref()
                .and_then(|b| person_of(&w.resource_type, b));
            self.add(&w.resource_type, &w.id, w.version, person);
        }
    }
    pub(crate) fn result(&mut self, r: &SearchResult) {
        for s in r.matches.iter().chain(&r.included) {
            self.stored(s);
        }
    }
}

fn purpose_code(p: Purpose) -> &'static str {
    match p {
        Purpose::Treatment => "TREAT",
        Purpose::EmergencyTreatment => "ETREAT",
        Purpose::Operations => "HOPERAT",
        Purpose::Research => "HRESCH",
        Purpose::PatientRequest => "PATRQT",
    }
}

fn query_string(path: &str, params: &[(String, String)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "_page")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

impl Engine {
    /// Run `f` and record it.
    pub(crate) fn audited<T>(
        &self,
        ctx: &AccessContext,
        interaction: Interaction,
        target: Option<String>,
        query: Option<String>,
        f: impl FnOnce() -> Result<T>,
        touched: impl FnOnce(&T, &mut Touched),
    ) -> Result<T> {
        let Some(log) = &self.audit else {
            return f();
        };
        let out = f();
        let mut t = Touched::default();
        if let Some(target) = &target {
            let mut parts = target.splitn(3, '/');
            if let (Some(rt), Some(id)) = (parts.next(), parts.next())
                && rt == "Patient"
            {
                t.patients.push(format!("Patient/{id}"));
            }
            t.entities.push(target.clone());
        }
        if let Ok(v) = &out {
            touched(v, &mut t);
        }
        let mut rec = AuditRecord::new(interaction, &ctx.who(), "issho");
        match &ctx.principal {
            Principal::Token(g) => {
                rec.agent.name = Some(g.subject.clone());
                rec.agent.role = Some(g.role.code().to_string());
                rec.on_behalf_of = g.organization.clone();
                if let Some(u) = &g.fhir_user {
                    rec.agent.id = u.clone();
                    rec.agent.name = Some(g.subject.clone());
                }
            }
            Principal::DevOpen => rec.agent.role = Some("developer (open mode)".into()),
            Principal::System { .. } => rec.agent.role = Some("system".into()),
            Principal::Anonymous => rec.agent.role = Some("anonymous".into()),
        }
        rec.purpose_of_use = vec![purpose_code(ctx.purpose).to_string()];
        // Under a break-the-glass opening of one of the patients concerned: flagged for
        // review, and visible as such in the person's access log.
        let opened = self.glass_opened_for(ctx).unwrap_or_default();
        rec.break_glass = ctx.purpose == Purpose::EmergencyTreatment
            || t.patients
                .iter()
                .any(|p| opened.iter().any(|o| p == &format!("Patient/{o}")));
        if rec.break_glass && !rec.purpose_of_use.iter().any(|p| p == "ETREAT") {
            rec.purpose_of_use.push("ETREAT".into());
        }
        rec.patients = t.patients;
        rec.entities = t.entities;
        rec.query = query;
        if let Err(e) = &out {
            rec.outcome = if e.status >= 500 {
                Outcome::SeriousFailure
            } else {
                Outcome::MinorFailure
            };
            rec.reason = Some(
                e.issues
                    .iter()
                    .map(|i| i.diagnostics.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        if let Err(e) = log.record(rec) {
            tracing::error!(error = %e, "audit trail failure");
            let is_read = matches!(
                interaction,
                Interaction::Read
                    | Interaction::Vread
                    | Interaction::SearchType
                    | Interaction::SearchSystem
                    | Interaction::HistoryInstance
                    | Interaction::HistoryType
                    | Interaction::HistorySystem
                    | Interaction::Operation
            );
            if is_read {
                return Err(FhirError::new(
                    503,
                    IssueType::Transient,
                    "the audit trail cannot record this access, so it is not performed",
                ));
            }
        }
        out
    }

    /// The whole audit trail (administrators): by agent and/or patient, in a time window.
    pub fn audit_search(
        &self,
        ctx: &AccessContext,
        agent: Option<&str>,
        patient: Option<&str>,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>> {
        self.gate.check(ctx, Action::Admin, None)?;
        let Some(log) = &self.audit else {
            return Ok(Vec::new());
        };
        log.flush()
            .map_err(|e| FhirError::internal(e.to_string()))?;
        log.search(agent, patient, since, None, limit)
            .map_err(|e| FhirError::internal(e.to_string()))
    }

    /// Whether a read by id may run on an async runtime's worker thread rather than a thread
    /// of its own (the store's [`issho_store::Store::reads_in_place`]).
    pub fn reads_in_place(&self) -> bool {
        self.store.reads_in_place()
    }

    /// Wait until every audit record so far is durable (tests, shutdown).
    pub fn flush_audit(&self) -> Result<()> {
        match &self.audit {
            Some(log) => log.flush().map_err(|e| FhirError::internal(e.to_string())),
            None => Ok(()),
        }
    }

    // ---- the audited interactions ------------------------------------------------------

    pub fn read(&self, ctx: &AccessContext, resource_type: &str, id: &str) -> Result<Stored> {
        self.audited_read_in(ctx, None, resource_type, id)
    }

    pub fn vread(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<Stored> {
        self.audited_vread_in(ctx, None, resource_type, id, version)
    }

    pub fn create(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        resource: Value,
        if_none_exist: Option<String>,
    ) -> Result<WriteOutcome> {
        if resource_type == "Bundle" && issho_documents::kind_of(&resource).is_some() {
            // A JP-CLINS document or item collection: taken into the person's record.
            return self.submit_document(ctx, resource);
        }
        let q = if_none_exist
            .as_deref()
            .map(|c| search::condition_url(resource_type, c));
        let warnings = self.order_checks(ctx, resource_type, &resource);
        self.audited(
            ctx,
            Interaction::Create,
            None,
            q,
            || {
                self.refuse_conflicts(&warnings)?;
                let mut w = self.create_unaudited(ctx, resource_type, resource, if_none_exist)?;
                w.issues.extend(warnings);
                Ok(w)
            },
            |w, t| t.write(w),
        )
    }

    /// The medication checks of a MedicationRequest being written (`cds.rs`), as warnings.
    fn order_checks(&self, ctx: &AccessContext, rt: &str, resource: &Value) -> Vec<Issue> {
        if rt == "MedicationRequest" {
            self.order_warnings(ctx, resource)
        } else {
            Vec::new()
        }
    }

    /// A deployment that refuses conflicting prescriptions (`EngineConfig`): 409 with them.
    fn refuse_conflicts(&self, warnings: &[Issue]) -> Result<()> {
        if !self.config.refuse_conflicting_orders || warnings.is_empty() {
            return Ok(());
        }
        let mut issues: Vec<Issue> = warnings
            .iter()
            .map(|w| Issue::error(w.code, w.diagnostics.clone()))
            .collect();
        issues.insert(
            0,
            Issue::error(
                IssueType::BusinessRule,
                "this prescription conflicts with the person's record; nothing was written",
            ),
        );
        Err(FhirError {
            status: 409,
            issues,
        })
    }

    pub fn update(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        let warnings = self.order_checks(ctx, resource_type, &resource);
        self.audited(
            ctx,
            Interaction::Update,
            None,
            None,
            || {
                self.refuse_conflicts(&warnings)?;
                let mut w = self.update_unaudited(ctx, resource_type, id, resource, if_match)?;
                w.issues.extend(warnings);
                Ok(w)
            },
            |w, t| t.write(w),
        )
    }

    pub fn conditional_update(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        criteria: &str,
        resource: Value,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.audited(
            ctx,
            Interaction::Update,
            None,
            Some(format!("{resource_type}?{criteria}")),
            || self.conditional_update_unaudited(ctx, resource_type, criteria, resource, if_match),
            |w, t| t.write(w),
        )
    }

    pub fn patch(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        patch: Patch,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.audited(
            ctx,
            Interaction::Patch,
            None,
            None,
            || self.patch_unaudited(ctx, resource_type, id, patch, if_match),
            |w, t| t.write(w),
        )
    }

    pub fn conditional_patch(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        criteria: &str,
        patch: Patch,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.audited(
            ctx,
            Interaction::Patch,
            None,
            Some(format!("{resource_type}?{criteria}")),
            || self.conditional_patch_unaudited(ctx, resource_type, criteria, patch, if_match),
            |w, t| t.write(w),
        )
    }

    pub fn delete(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        id: &str,
        if_match: Option<String>,
    ) -> Result<WriteOutcome> {
        self.audited(
            ctx,
            Interaction::Delete,
            Some(format!("{resource_type}/{id}")),
            None,
            || self.delete_unaudited(ctx, resource_type, id, if_match),
            |_, _| {},
        )
    }

    pub fn conditional_delete(
        &self,
        ctx: &AccessContext,
        resource_type: &str,
        criteria: &str,
    ) -> Result<WriteOutcome> {
        self.audited(
            ctx,
            Interaction::Delete,
            None,
            Some(format!("{resource_type}?{criteria}")),
            || self.conditional_delete_unaudited(ctx, resource_type, criteria),
            |w, t| t.write(w),
        )
    }

    pub fn history(&self, ctx: &AccessContext, q: HistoryQuery) -> Result<(Vec<Stored>, u64, i64)> {
        self.audited_history(ctx, None, q)
    }

    /// History over the snapshot `r` (`None`: a fresh one, opened with the caller's permit),
    /// recorded like the plain interaction — denials included.
    pub(crate) fn audited_history(
        &self,
        ctx: &AccessContext,
        r: Option<&dyn issho_store::StoreRead>,
        q: HistoryQuery,
    ) -> Result<(Vec<Stored>, u64, i64)> {
        let (interaction, target) = match &q.scope {
            HistoryScope::System => (Interaction::HistorySystem, None),
            HistoryScope::Type(t) => (Interaction::HistoryType, Some(t.clone())),
            HistoryScope::Instance(t, id) => {
                (Interaction::HistoryInstance, Some(format!("{t}/{id}")))
            }
        };
        self.audited(
            ctx,
            interaction,
            target,
            None,
            || match r {
                Some(r) => self.history_in(ctx, r, q),
                None => {
                    let t = match &q.scope {
                        HistoryScope::System => None,
                        HistoryScope::Type(t) | HistoryScope::Instance(t, _) => Some(t.clone()),
                    };
                    let r = self.snapshot(ctx, Action::History, t.as_deref())?;
                    self.history_in(ctx, &*r, q)
                }
            },
            |(rows, _, _), t| rows.iter().for_each(|s| t.stored(s)),
        )
    }

    /// Read over the snapshot `r` (GET entries of batches and transactions; `None`: a fresh
    /// one, the plain interaction), recorded — denials included.
    pub(crate) fn audited_read_in(
        &self,
        ctx: &AccessContext,
        r: Option<&dyn issho_store::StoreRead>,
        resource_type: &str,
        id: &str,
    ) -> Result<Stored> {
        self.audited(
            ctx,
            Interaction::Read,
            Some(format!("{resource_type}/{id}")),
            None,
            || match r {
                Some(r) => self.read_in(ctx, r, resource_type, id),
                None => self.read_unaudited(ctx, resource_type, id),
            },
            |s, t| t.stored(s),
        )
    }

    /// Vread over the snapshot `r` (`None`: a fresh one), recorded like [`Engine::read`].
    pub(crate) fn audited_vread_in(
        &self,
        ctx: &AccessContext,
        r: Option<&dyn issho_store::StoreRead>,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<Stored> {
        self.audited(
            ctx,
            Interaction::Vread,
            Some(format!("{resource_type}/{id}/_history/{version}")),
            None,
            || match r {
                Some(r) => self.vread_in(ctx, r, resource_type, id, version),
                None => self.vread_unaudited(ctx, resource_type, id, version),
            },
            |s, t| t.stored(s),
        )
    }

    /// Type search over the snapshot `r`, recorded like the plain interaction.
    pub(crate) fn audited_search_in(
        &self,
        ctx: &AccessContext,
        r: Option<&dyn issho_store::StoreRead>,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<SearchResult> {
        self.audited(
            ctx,
            Interaction::SearchType,
            None,
            Some(query_string(resource_type, params)),
            || match r {
                Some(r) => self.search_in(ctx, r, Some(resource_type), params, false),
                None => self.search_unaudited(ctx, Some(resource_type), params, false),
            },
            |r, t| t.result(r),
        )
    }

    pub fn search(
        &self,
        ctx: &AccessContext,
        resource_type: Option<&str>,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchResult> {
        let interaction = if resource_type.is_some() {
            Interaction::SearchType
        } else {
            Interaction::SearchSystem
        };
        self.audited(
            ctx,
            interaction,
            None,
            Some(query_string(resource_type.unwrap_or(""), params)),
            || self.search_unaudited(ctx, resource_type, params, strict),
            |r, t| t.result(r),
        )
    }

    pub fn compartment_search(
        &self,
        ctx: &AccessContext,
        patient_id: &str,
        resource_type: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchResult> {
        self.audited_compartment_search(ctx, None, patient_id, resource_type, params, strict)
    }

    /// Compartment search over `snapshot` (`None`: a fresh one), recorded — denials included.
    pub(crate) fn audited_compartment_search(
        &self,
        ctx: &AccessContext,
        snapshot: Option<&dyn issho_store::StoreRead>,
        patient_id: &str,
        resource_type: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchResult> {
        self.audited(
            ctx,
            Interaction::SearchType,
            Some(format!("Patient/{patient_id}")),
            Some(query_string(
                &format!("Patient/{patient_id}/{resource_type}"),
                params,
            )),
            || match snapshot {
                Some(r) => {
                    self.compartment_search_on(ctx, r, patient_id, resource_type, params, strict)
                }
                None => self.compartment_search_unaudited(
                    ctx,
                    patient_id,
                    resource_type,
                    params,
                    strict,
                ),
            },
            |r, t| t.result(r),
        )
    }

    pub fn everything(
        &self,
        ctx: &AccessContext,
        patient_id: Option<&str>,
        params: &[(String, String)],
    ) -> Result<SearchResult> {
        self.audited_everything(ctx, None, patient_id, params)
    }

    /// `$everything` over `snapshot` (`None`: a fresh one), recorded — denials included.
    pub(crate) fn audited_everything(
        &self,
        ctx: &AccessContext,
        snapshot: Option<&dyn issho_store::StoreRead>,
        patient_id: Option<&str>,
        params: &[(String, String)],
    ) -> Result<SearchResult> {
        let path = match patient_id {
            Some(id) => format!("Patient/{id}/$everything"),
            None => "Patient/$everything".to_string(),
        };
        self.audited(
            ctx,
            Interaction::Operation,
            patient_id.map(|id| format!("Patient/{id}")),
            Some(query_string(&path, params)),
            || match snapshot {
                Some(r) => self.everything_on(ctx, r, patient_id, params),
                None => self.everything_unaudited(ctx, patient_id, params),
            },
            |r, t| t.result(r),
        )
    }

    pub fn process_bundle(
        &self,
        ctx: &AccessContext,
        bundle: Value,
        base: Option<&str>,
        ret: Return,
    ) -> Result<Value> {
        let kind = bundle
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let interaction = if kind == "batch" {
            Interaction::Batch
        } else {
            Interaction::Transaction
        };
        // The patients of the entries, from the request itself (responses may carry no body).
        let mut pre = Touched::default();
        for e in bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = e.get("resource")
                && let (Some(rt), id) = (
                    r.get("resourceType").and_then(Value::as_str),
                    r.get("id").and_then(Value::as_str).unwrap_or(""),
                )
            {
                pre.add(rt, id, None, person_of(rt, r));
            }
        }
        self.audited(
            ctx,
            interaction,
            None,
            None,
            || self.process_bundle_unaudited(ctx, bundle, base, ret),
            |resp, t| {
                t.patients = std::mem::take(&mut pre.patients);
                for e in resp
                    .get("entry")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(loc) = e["response"]["location"].as_str()
                        && t.entities.len() < MAX_ENTITIES
                    {
                        t.entities.push(loc.to_string());
                    }
                }
            },
        )
    }
}
