//! Export: every current resource the caller may see, type by type, as the raw JSON of each
//! resource (one per line makes FHIR Bulk Data's NDJSON). Streamed in `rid` order over one
//! snapshot in windows of [`WINDOW`] resources, so memory stays constant whatever the size of
//! the store. It passes the same gate and the same visibility rule as search (`view.rs`): an
//! export never holds a resource that `Type?_id=ID` would not show the caller.

use crate::view::View;
use crate::{Engine, FhirError, Result};
use issho_access::{AccessContext, Action};
use issho_audit::Interaction;
use issho_model::IssueType;
use issho_search::SearchQuery;
use issho_store::{StoreRead, Stored};
use std::collections::HashSet;

/// Resources read from the store per step.
const WINDOW: usize = 1000;

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// Resource types, in output order; empty = every resource type the caller may read (types
    /// the caller's scopes exclude are then skipped, not refused).
    pub types: Vec<String>,
    /// Only resources last updated at or after this FHIR instant (Bulk Data `_since`).
    pub since: Option<String>,
    /// Only the records of these persons (a Group's members; the store's person key).
    pub persons: Option<Vec<String>>,
    /// Bulk Data `_typeFilter`: for a type, searches its resources must match (any of them;
    /// a type without one is exported whole).
    pub type_filters: Vec<(String, Vec<(String, String)>)>,
    /// What the audit record names (default: `$export` with the types and `_since`).
    pub operation: Option<String>,
    /// Bulk Data `includeAssociatedData`: the Provenance of the exported resources.
    pub associated: Option<Associated>,
}

/// Bulk Data's `includeAssociatedData` values issho offers (`associated.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Associated {
    /// `LatestProvenanceResources`: each exported resource's most recent Provenance (by
    /// `recorded`).
    LatestProvenance,
    /// `RelevantProvenanceResources`: every Provenance of an exported resource.
    RelevantProvenance,
}

/// Whether an export goes on after a resource (a sink that has enough says `Stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Go,
    Stop,
}

/// What an export wrote: resources per type (types with none left out), and how many distinct
/// persons' records they came from.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub counts: Vec<(String, u64)>,
    pub persons: usize,
    /// For a research project's export: who was released and held back (k-anonymity).
    pub deidentification: Option<issho_research::Report>,
}

impl ExportSummary {
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// What an export will read.
struct Plan {
    types: Vec<String>,
    explicit: bool,
    params: Vec<(String, String)>,
    permit: issho_access::Permit,
}

/// A research export's project, its day, and the view of its released persons.
type Research<'a> = Option<(&'a issho_research::Project, issho_research::Today, View)>;

impl Engine {
    /// Export what `ctx` may see; `sink(type, json)` receives each resource's JSON (compact,
    /// with `meta.versionId` and `meta.lastUpdated`). One audit record names the types and
    /// every person whose data was exported.
    pub fn export(
        &self,
        ctx: &AccessContext,
        req: &ExportRequest,
        sink: &mut dyn FnMut(&str, &[u8]) -> std::io::Result<()>,
    ) -> Result<ExportSummary> {
        self.export_until(ctx, req, &mut |rt, body| sink(rt, body).map(|_| Flow::Go))
    }

    /// [`Engine::export`] with a sink that may end it early ([`Flow::Stop`]).
    pub fn export_until(
        &self,
        ctx: &AccessContext,
        req: &ExportRequest,
        sink: &mut dyn FnMut(&str, &[u8]) -> std::io::Result<Flow>,
    ) -> Result<ExportSummary> {
        let mut persons: HashSet<String> = HashSet::new();
        let out = self.export_unaudited(ctx, req, sink, &mut persons);
        let mut people: Vec<String> = persons.into_iter().collect();
        people.sort();
        let query = req.operation.clone().unwrap_or_else(|| {
            format!(
                "$export?_type={}{}",
                req.types.join(","),
                req.since
                    .as_deref()
                    .map(|s| format!("&_since={s}"))
                    .unwrap_or_default()
            )
        });
        self.audited(
            ctx,
            Interaction::Operation,
            None,
            Some(query),
            || out,
            |s: &ExportSummary, t| {
                for (rt, _) in &s.counts {
                    t.entities.push(rt.clone());
                }
                t.patients = people.iter().map(|p| format!("Patient/{p}")).collect();
            },
        )
    }

    /// Checks an export request before it runs (`$export`'s kick-off): its types and
    /// `_since`, and that the gate lets the caller search at least one type it asks for.
    pub(crate) fn export_check(&self, ctx: &AccessContext, req: &ExportRequest) -> Result<()> {
        self.export_plan(ctx, req).map(|_| ())
    }

    /// The types to export (and whether they were asked for), the search parameters of the
    /// request, and the permit the snapshot opens with.
    fn export_plan(&self, ctx: &AccessContext, req: &ExportRequest) -> Result<Plan> {
        let model = issho_model::r4();
        for rt in &req.types {
            if !model.is_resource_type(rt) {
                return Err(FhirError::bad_request(format!(
                    "_type: '{rt}' is not a resource type"
                )));
            }
        }
        let explicit = !req.types.is_empty();
        let types: Vec<String> = if explicit {
            req.types.clone()
        } else {
            model.resource_types().to_vec()
        };
        let mut params = Vec::new();
        if let Some(since) = &req.since {
            // Byte checks only (a non-ASCII value must not be sliced inside a character).
            let b = since.as_bytes();
            let zoned = b.len() > 19
                && b.get(10) == Some(&b'T')
                && (b.ends_with(b"Z") || matches!(b.get(b.len() - 6), Some(b'+' | b'-')));
            if !zoned || issho_model::instant::parse_range(since).is_none() {
                return Err(FhirError::bad_request(format!(
                    "_since: '{since}' is not a FHIR instant (for example 2026-01-01T00:00:00Z)"
                )));
            }
            params.push(("_lastUpdated".to_string(), format!("ge{since}")));
        }
        let reg = self.registry();
        for (t, f) in &req.type_filters {
            if !model.is_resource_type(t) {
                return Err(FhirError::bad_request(format!(
                    "_typeFilter: '{t}' is not a resource type"
                )));
            }
            let q = issho_search::parse_in(&reg, Some(t), f, true).map_err(|issues| FhirError {
                status: 400,
                issues,
            })?;
            if !q.sort.is_empty()
                || q.offset > 0
                || q.count.is_some()
                || q.summary.is_some()
                || !q.elements.is_empty()
                || !q.include.is_empty()
                || !q.revinclude.is_empty()
            {
                return Err(FhirError::bad_request(format!(
                    "_typeFilter: '{t}?…' may hold search criteria only, not result parameters \
                     (_sort, _count, _offset, _summary, _elements, _include, _revinclude)"
                )));
            }
        }
        // One snapshot for every type, opened with the gate's permit for the first type the
        // caller may export (each type is then checked on its own below).
        let permit = match types
            .iter()
            .find_map(|t| self.gate.check(ctx, Action::Export, Some(t)).ok())
        {
            Some(p) => p,
            None => self
                .gate
                .check(ctx, Action::Export, types.first().map(String::as_str))?,
        };
        if let Some(project) = crate::research::research_of(permit.reach()) {
            let project = self.research_project(project)?;
            crate::research::check_research_request(project, &reg, req)?;
            if req.associated.is_some() {
                return Err(FhirError::new(
                    403,
                    IssueType::Forbidden,
                    "includeAssociatedData: Provenance is never released to research",
                ));
            }
            // Released in batches: only what was last changed before the latest boundary.
            if let Some(b) = project.release_boundary(issho_research::Today::now()) {
                params.push(("_lastUpdated".to_string(), format!("lt{b}")));
            }
        }
        if req.associated.is_some() {
            // The associated Provenance is exported as the caller may export Provenance.
            self.gate.check(ctx, Action::Export, Some("Provenance"))?;
        }
        Ok(Plan {
            types,
            explicit,
            params,
            permit,
        })
    }

    fn export_unaudited(
        &self,
        ctx: &AccessContext,
        req: &ExportRequest,
        sink: &mut dyn FnMut(&str, &[u8]) -> std::io::Result<Flow>,
        persons: &mut HashSet<String>,
    ) -> Result<ExportSummary> {
        let plan = self.export_plan(ctx, req)?;
        let r = self.store.reader(&plan.permit)?;
        let upto = r.max_rid()?;
        let mut summary = ExportSummary::default();
        let research = self.research_base(ctx, req, &plan, &*r, &mut summary)?;
        // The types exported, with the searches that selected them (for associated data).
        let mut exported: Vec<(String, Vec<SearchQuery>)> = Vec::new();
        for rt in &plan.types {
            let Some(view) = self.type_view(ctx, rt, &plan, &research, &*r)? else {
                continue;
            };
            let queries = self.type_queries(ctx, &*r, rt, &view, &plan.params, req, upto)?;
            let mut out = Out {
                sink: &mut *sink,
                persons: &mut *persons,
                research: &research,
                n: 0,
            };
            let flow = Self::write_matches(&*r, rt, &queries, &mut out)?;
            let n = out.n;
            if n > 0 {
                summary.counts.push((rt.clone(), n));
            }
            if flow == Flow::Stop {
                summary.persons = persons.len();
                return Ok(summary);
            }
            exported.push((rt.clone(), queries));
        }
        if let Some(mode) = req.associated {
            let mut out = Out {
                sink: &mut *sink,
                persons: &mut *persons,
                research: &research,
                n: 0,
            };
            self.associated_provenance(ctx, &*r, mode, &exported, req, upto, &mut out)?;
            if out.n > 0 {
                match summary.counts.iter_mut().find(|(t, _)| t == "Provenance") {
                    Some((_, n)) => *n += out.n,
                    None => summary.counts.push(("Provenance".into(), out.n)),
                }
            }
        }
        summary.persons = persons.len();
        Ok(summary)
    }

    /// A research project's export: its consenting persons, those of them k-anonymity
    /// releases (the report goes into `summary`), each resource de-identified by the
    /// project's profile.
    fn research_base<'a>(
        &'a self,
        ctx: &AccessContext,
        req: &ExportRequest,
        plan: &Plan,
        r: &dyn StoreRead,
        summary: &mut ExportSummary,
    ) -> Result<Research<'a>> {
        let Some(id) = crate::research::research_of(plan.permit.reach()) else {
            return Ok(None);
        };
        let project = self.research_project(id)?;
        let today = project.today();
        let first = plan
            .types
            .iter()
            .find(|t| self.gate.check(ctx, Action::Export, Some(t)).is_ok());
        let mut base = self.view(ctx, Action::Export, first.map(String::as_str), r)?;
        let mut persons = base.persons.clone().unwrap_or_default();
        if let Some(group) = &req.persons {
            persons.retain(|p| group.contains(p));
        }
        let (released, report) = self.research_release(r, project, &persons, today)?;
        base.persons = Some(released);
        summary.deidentification = Some(report);
        Ok(Some((project, today, base)))
    }

    /// The caller's view of `rt` for this export (`None`: the type is left out — every type
    /// was asked for and the caller may not export this one).
    fn type_view(
        &self,
        ctx: &AccessContext,
        rt: &str,
        plan: &Plan,
        research: &Research<'_>,
        r: &dyn StoreRead,
    ) -> Result<Option<View>> {
        let explicit = plan.explicit;
        Ok(Some(match research {
            Some((project, _, base)) => match self.gate.check(ctx, Action::Export, Some(rt)) {
                Ok(_) if project.profile.releases(rt) => base.clone(),
                Ok(_) if !explicit => return Ok(None),
                Err(e) if !explicit && e.status == 403 => return Ok(None),
                Ok(_) => {
                    return Err(FhirError::new(
                        403,
                        IssueType::Forbidden,
                        format!("{rt} is not released to research"),
                    ));
                }
                Err(e) => return Err(e.into()),
            },
            None => match self.view(ctx, Action::Export, Some(rt), r) {
                Ok(v) => v,
                // Every type was asked for: the ones the caller's scopes exclude are left out.
                Err(e) if !explicit && e.status == 403 => return Ok(None),
                Err(e) => return Err(e),
            },
        }))
    }

    /// The searches that select `rt`'s resources for this export: one per `_typeFilter` of
    /// the type (or one), each with the request's parameters, the caller's view, the
    /// request's persons, and the snapshot's bound.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn type_queries(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        rt: &str,
        view: &View,
        params: &[(String, String)],
        req: &ExportRequest,
        upto: i64,
    ) -> Result<Vec<SearchQuery>> {
        let reg = self.registry();
        let filters: Vec<&Vec<(String, String)>> = req
            .type_filters
            .iter()
            .filter(|(t, _)| t == rt)
            .map(|(_, f)| f)
            .collect();
        let none = Vec::new();
        let sets = if filters.is_empty() {
            vec![&none]
        } else {
            filters
        };
        let mut out = Vec::new();
        for set in sets {
            let mut all = params.to_vec();
            all.extend(set.iter().cloned());
            let mut q =
                issho_search::parse_in(&reg, Some(rt), &all, true).map_err(|issues| FhirError {
                    status: 400,
                    issues,
                })?;
            // As a search prepares its query: value sets and hierarchies resolved, every
            // chain and `_has` limited to what the caller may see of the types it passes.
            self.resolve_terminology(r, &mut q)?;
            self.guard_links(ctx, view, r, &mut q)?;
            q.filters.extend(view.filters(&reg, rt)?);
            if let Some(p) = &req.persons {
                q.filters.push(issho_search::Filter {
                    name: "_group".into(),
                    test: issho_search::Test::PersonIn(p.clone()),
                });
            }
            self.plan_links(r, &mut q)?;
            q.rid_upto = Some(upto);
            out.push(q);
        }
        Ok(out)
    }

    /// Write what `queries` match (a resource matching several once), window by window.
    fn write_matches(
        r: &dyn StoreRead,
        rt: &str,
        queries: &[SearchQuery],
        out: &mut Out<'_, '_>,
    ) -> Result<Flow> {
        let mut seen: HashSet<i64> = HashSet::new();
        for q in queries {
            let mut q = q.clone();
            q.count = Some(WINDOW);
            loop {
                let mut rids = r.search(&q)?;
                let full = rids.len() == WINDOW;
                let after = rids.last().copied();
                if queries.len() > 1 {
                    rids.retain(|x| seen.insert(*x));
                }
                for s in r.current_by_rids(&rids)? {
                    if out.write(rt, &s)? == Flow::Stop {
                        return Ok(Flow::Stop);
                    }
                }
                if !full {
                    break;
                }
                q.rid_after = after;
            }
        }
        Ok(Flow::Go)
    }
}

/// Where an export's resources go: the sink, the persons they came from, de-identified first
/// for a research project.
pub(crate) struct Out<'s, 'r> {
    sink: &'s mut dyn FnMut(&str, &[u8]) -> std::io::Result<Flow>,
    persons: &'s mut HashSet<String>,
    research: &'s Research<'r>,
    /// Resources written.
    pub(crate) n: u64,
}

impl Out<'_, '_> {
    /// Write one stored resource (a research copy de-identified; one a profile withholds is
    /// skipped).
    pub(crate) fn write(&mut self, rt: &str, s: &Stored) -> Result<Flow> {
        let Some(body) = &s.body else {
            return Ok(Flow::Go);
        };
        let person = s.person.clone().filter(|p| p != crate::owner::RESTRICTED);
        let written = match self.research {
            Some((project, today, _)) => {
                let Some(copy) = s
                    .json()
                    .and_then(|v| project.deidentify(rt, &v, person.as_deref(), *today))
                else {
                    return Ok(Flow::Go);
                };
                (self.sink)(rt, copy.to_string().as_bytes())
            }
            None => (self.sink)(rt, body),
        };
        let flow = written.map_err(|e| {
            FhirError::new(500, IssueType::Exception, format!("export output: {e}"))
        })?;
        if let Some(p) = person {
            self.persons.insert(p);
        }
        self.n += 1;
        Ok(flow)
    }
}
