//! SQL on FHIR v2 `$viewdefinition-run` (issho-views runs the view): a ViewDefinition run
//! over what the caller may export of its resource type — the export's gate, views, consent
//! and, for a research project's member, its consenting persons de-identified and
//! k-anonymous — into rows. Audited as the export it is (with every person it covered).

use crate::export::{ExportRequest, Flow};
use crate::*;

/// Rows a run answers at most (`_limit` may ask for fewer).
pub const MAX_VIEW_ROWS: u64 = 1_000_000;

/// Threads that parse resources and run the view.
const WORKERS: usize = 2;

/// Resources handed to a worker at a time (fewer hand-overs, fewer thread switches).
const BATCH: usize = 256;

/// Batches in flight per worker: the reading thread runs ahead of the workers by this much
/// (the rows are still written in order).
const AHEAD: usize = 8;

/// A batch of stored resources' JSON, one after another in one buffer (one allocation per
/// batch, not per resource), and where each ends.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn push(&mut self, body: &[u8]) {
        self.bytes.extend_from_slice(body);
        self.ends.push(self.bytes.len());
    }
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.bytes[a..b])
    }
}

/// A batch's rows, or why the view cannot be run on one of its resources.
type Rows = std::result::Result<Vec<Vec<Value>>, FhirError>;

fn io_error(e: std::io::Error) -> FhirError {
    FhirError::new(500, IssueType::Exception, format!("view output: {e}"))
}

/// The rows of a batch of resources (stored JSON), in order.
fn evaluate(v: &issho_views::View, batch: &Batch) -> Rows {
    let mut out = Vec::new();
    for body in batch.iter() {
        let resource = v
            .parse(body)
            .map_err(|e| FhirError::internal(format!("a stored resource: {e}")))?;
        let rows = v.rows(&resource).map_err(|e| {
            FhirError::new(
                422,
                IssueType::Processing,
                format!(
                    "the view cannot be run on {}/{}: {e}",
                    v.resource,
                    resource["id"].as_str().unwrap_or("?")
                ),
            )
        })?;
        out.extend(rows);
    }
    Ok(out)
}

/// Where a view's rows come from.
#[derive(Debug, Clone, Default)]
pub struct ViewScope {
    /// `patient`: one Patient's record (its person's).
    pub patient: Option<String>,
    /// `group`: the persons of a Group's active Patient members.
    pub group: Option<String>,
    /// `_limit`: at most this many rows.
    pub limit: Option<u64>,
}

impl Engine {
    /// A stored ViewDefinition named by a reference (`viewReference`, or the instance of
    /// `ViewDefinition/[id]/$viewdefinition-run`): `ViewDefinition/[id]`, optionally
    /// `/_history/[vid]`, relative or under this server's `base`. Read as `ctx` may (audited;
    /// unknown or not permitted: the read's answer).
    pub fn stored_view(&self, ctx: &AccessContext, reference: &str, base: &str) -> Result<Value> {
        let base = base.trim_end_matches('/');
        let local = match reference.strip_prefix(base) {
            Some(rest) if !base.is_empty() && rest.starts_with('/') => &rest[1..],
            _ => reference,
        };
        let bad = || {
            FhirError::bad_request(format!(
                "viewReference: '{reference}' names no ViewDefinition of this server (ViewDefinition/[id], optionally /_history/[version])"
            ))
        };
        let parts: Vec<&str> = local.split('/').collect();
        let stored = match parts.as_slice() {
            ["ViewDefinition", id] if !id.is_empty() => self.read(ctx, "ViewDefinition", id)?,
            ["ViewDefinition", id, "_history", vid] if !id.is_empty() => {
                self.vread(ctx, "ViewDefinition", id, vid)?
            }
            _ => return Err(bad()),
        };
        let body = stored
            .body
            .ok_or_else(|| FhirError::internal("a read answered no body"))?;
        serde_json::from_slice(&body)
            .map_err(|e| FhirError::internal(format!("a stored ViewDefinition: {e}")))
    }

    /// Run `view` (a ViewDefinition's JSON, checked first: 400 when it cannot be run) over
    /// the resources `ctx` may export; `row` receives each row (its columns in the view's
    /// order). Answers the view (its columns) and the rows written.
    pub fn run_view(
        &self,
        ctx: &AccessContext,
        view: &Value,
        scope: &ViewScope,
        row: &mut dyn FnMut(&[Value]) -> std::io::Result<()>,
    ) -> Result<(issho_views::View, u64)> {
        let v = issho_views::View::compile(view)
            .map_err(|e| FhirError::bad_request(format!("ViewDefinition: {e}")))?;
        let limit = scope.limit.unwrap_or(MAX_VIEW_ROWS).min(MAX_VIEW_ROWS);
        let persons = match (&scope.patient, &scope.group) {
            (Some(_), Some(_)) => {
                return Err(FhirError::bad_request("give patient or group, not both"));
            }
            (Some(p), None) => {
                let id = p.strip_prefix("Patient/").unwrap_or(p);
                // Read as the caller may (unknown or hidden: 404).
                self.read(ctx, "Patient", id)?;
                let r = self.snapshot(ctx, Action::Read, Some("Patient"))?;
                Some(vec![crate::identity::person_of_patient(&*r, id)?])
            }
            (None, Some(g)) => {
                Some(self.group_persons(ctx, g.strip_prefix("Group/").unwrap_or(g))?)
            }
            (None, None) => None,
        };
        let req = ExportRequest {
            types: vec![v.resource.clone()],
            persons,
            operation: Some(format!(
                "$viewdefinition-run?resource={}{}",
                v.resource,
                v.name
                    .as_deref()
                    .map(|n| format!("&name={n}"))
                    .unwrap_or_default()
            )),
            ..Default::default()
        };
        // The export reads on this thread; two workers parse and run the view over batches
        // of resources (two cores: reading and evaluating overlap); the rows are written here,
        // batch after batch in the export's order.
        let mut n = 0u64;
        let mut failed: Option<FhirError> = None;
        std::thread::scope(|scope| -> Result<()> {
            let mut lanes = Vec::new();
            for _ in 0..WORKERS {
                let (to_worker, work) = std::sync::mpsc::sync_channel::<Batch>(AHEAD);
                let (done, from_worker) = std::sync::mpsc::sync_channel::<Rows>(AHEAD);
                let v = &v;
                scope.spawn(move || {
                    for batch in work {
                        if done.send(evaluate(v, &batch)).is_err() {
                            return;
                        }
                    }
                });
                lanes.push((to_worker, from_worker));
            }
            let mut sent = 0usize;
            let mut received = 0usize;
            let mut batch = Batch::default();
            // Write the next finished batch's rows; Stop once enough or a resource failed.
            let mut take = |received: &mut usize,
                            n: &mut u64,
                            failed: &mut Option<FhirError>|
             -> std::io::Result<Flow> {
                let (_, from) = &lanes[*received % WORKERS];
                *received += 1;
                let rows = from
                    .recv()
                    .map_err(|_| std::io::Error::other("a view worker stopped"))?;
                match rows {
                    Err(e) => {
                        *failed = Some(e);
                        return Ok(Flow::Stop);
                    }
                    Ok(rows) => {
                        for r in rows {
                            if *n >= limit {
                                return Ok(Flow::Stop);
                            }
                            row(&r)?;
                            *n += 1;
                        }
                    }
                }
                Ok(if *n >= limit { Flow::Stop } else { Flow::Go })
            };
            let send = |batch: Batch, sent: &mut usize| -> std::io::Result<()> {
                lanes[*sent % WORKERS]
                    .0
                    .send(batch)
                    .map_err(|_| std::io::Error::other("a view worker stopped"))?;
                *sent += 1;
                Ok(())
            };
            let mut stopped = false;
            self.export_until(ctx, &req, &mut |_, body| {
                batch.push(body);
                if batch.len() < BATCH {
                    return Ok(Flow::Go);
                }
                send(std::mem::take(&mut batch), &mut sent)?;
                // Keep at most AHEAD batches in flight per worker.
                if sent - received > WORKERS * AHEAD
                    && take(&mut received, &mut n, &mut failed)? == Flow::Stop
                {
                    stopped = true;
                    return Ok(Flow::Stop);
                }
                Ok(Flow::Go)
            })?;
            if !stopped && !batch.is_empty() {
                send(std::mem::take(&mut batch), &mut sent).map_err(io_error)?;
            }
            while received < sent {
                if stopped {
                    // Drain what the workers still answer.
                    let _ = lanes[received % WORKERS].1.recv();
                    received += 1;
                } else if take(&mut received, &mut n, &mut failed).map_err(io_error)? == Flow::Stop
                {
                    stopped = true;
                }
            }
            Ok(())
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok((v, n)),
        }
    }
}
