//! SQL on FHIR v2 `$viewdefinition-run` (issho-views runs the view): a ViewDefinition run
//! over what the caller may export of its resource type — the export's gate, views, consent
//! and, for a research project's member, its consenting persons de-identified and
//! k-anonymous — into rows. Audited as the export it is (with every person it covered).

use crate::export::{ExportRequest, Flow};
use crate::*;

/// Rows a run answers at most (`_limit` may ask for fewer).
pub const MAX_VIEW_ROWS: u64 = 1_000_000;

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
        let mut n = 0u64;
        let mut failed: Option<FhirError> = None;
        self.export_until(ctx, &req, &mut |_, body| {
            let resource: Value = serde_json::from_slice(body).map_err(std::io::Error::other)?;
            let rows = match v.rows(&resource) {
                Ok(r) => r,
                Err(e) => {
                    failed = Some(FhirError::new(
                        422,
                        IssueType::Processing,
                        format!(
                            "the view cannot be run on {}/{}: {e}",
                            v.resource,
                            resource["id"].as_str().unwrap_or("?")
                        ),
                    ));
                    return Ok(Flow::Stop);
                }
            };
            for r in rows {
                if n >= limit {
                    return Ok(Flow::Stop);
                }
                row(&r)?;
                n += 1;
            }
            Ok(if n >= limit { Flow::Stop } else { Flow::Go })
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok((v, n)),
        }
    }
}
