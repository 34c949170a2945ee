//! `Observation/$lastn` (FHIR R4): for each code, the `max` most recent Observations (by
//! `effective`, newest first) among those an Observation search with the same parameters
//! finds — through the same gate, views and consent as that search. A code is the first coding
//! (`system|code`; its text when it has none). The search is read in pages of the deployment's
//! largest page, newest first, up to [`SCANNED`] Observations; what lies beyond is reported as
//! a warning rather than silently left out.

use crate::*;

/// Observations read at most for one `$lastn`.
pub const SCANNED: usize = 100_000;

/// The group of an Observation: its first coding, or its text.
fn code_key(o: &Value) -> String {
    let c = &o["code"]["coding"][0];
    match (c["system"].as_str(), c["code"].as_str()) {
        (s, Some(code)) => format!("{}|{code}", s.unwrap_or("")),
        _ => o["code"]["text"].as_str().unwrap_or("").to_string(),
    }
}

impl Engine {
    /// `Observation/$lastn`: `params` are an Observation search's (`patient`, `category`,
    /// `code`, `date`…) and `max` (a positive integer, default 1).
    pub fn lastn(&self, ctx: &AccessContext, params: &[(String, String)]) -> Result<SearchResult> {
        let max = match params.iter().find(|(k, _)| k == "max") {
            None => 1,
            Some((_, v)) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    FhirError::bad_request(format!(
                        "max: '{v}' is not a positive integer (at most 1000)"
                    ))
                })?,
        };
        for (k, _) in params {
            if matches!(
                k.as_str(),
                "_sort"
                    | "_count"
                    | "_offset"
                    | "_page"
                    | "_include"
                    | "_revinclude"
                    | "_summary"
                    | "_elements"
            ) {
                return Err(FhirError::bad_request(format!(
                    "$lastn orders and pages its answer itself: {k} is not one of its parameters"
                )));
            }
        }
        let page = self.config.max_count.max(1);
        let mut base: Vec<(String, String)> =
            params.iter().filter(|(k, _)| k != "max").cloned().collect();
        base.push(("_sort".into(), "-date".into()));
        base.push(("_count".into(), page.to_string()));
        let mut groups: std::collections::HashMap<String, usize> = Default::default();
        let mut kept: Vec<Stored> = Vec::new();
        let mut offset = 0;
        let mut warnings = Vec::new();
        let query = format!("Observation/$lastn?max={max}");
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            None,
            Some(query),
            || {
                let r = self.snapshot(ctx, Action::Search, Some("Observation"))?;
                loop {
                    let mut p = base.clone();
                    p.push(("_offset".into(), offset.to_string()));
                    let res = self.search_in(ctx, &*r, Some("Observation"), &p, true)?;
                    let n = res.matches.len();
                    for s in res.matches {
                        let Some(o) = s.json() else { continue };
                        let seen = groups.entry(code_key(&o)).or_default();
                        if *seen < max {
                            *seen += 1;
                            kept.push(s);
                        }
                    }
                    offset += n;
                    if !res.has_next || n == 0 {
                        break;
                    }
                    if offset >= SCANNED {
                        warnings.push(Issue::warning(
                            IssueType::TooCostly,
                            format!(
                                "$lastn read the newest {SCANNED} Observations that match; older ones were not considered"
                            ),
                        ));
                        break;
                    }
                }
                Ok(SearchResult {
                    total: Some(kept.len() as u64),
                    count: kept.len(),
                    offset: 0,
                    has_next: false,
                    params: params.to_vec(),
                    warnings: std::mem::take(&mut warnings),
                    page_token: None,
                    matches: std::mem::take(&mut kept),
                    included: Vec::new(),
                })
            },
            |r, t| t.result(r),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_group_by_their_first_coding() {
        let a = serde_json::json!({"code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}, {"code": "x"}]}});
        assert_eq!(code_key(&a), "http://loinc.org|4548-4");
        let b = serde_json::json!({"code": {"text": "体重"}});
        assert_eq!(code_key(&b), "体重");
    }
}
