//! Bulk Data's `includeAssociatedData`: after the asked types, the Provenance of what was
//! exported — every Provenance whose `target` names an exported resource
//! (`RelevantProvenanceResources`), or for each exported resource only its most recent one by
//! `recorded` (`LatestProvenanceResources`; a tie goes to the one written last). Only the
//! Provenance the caller may export (its own view of Provenance, the request's persons, the
//! same snapshot); one already in the export (Provenance asked for as a type) is not written
//! twice.
//!
//! The Provenance in reach is read window by window; the targets a window names are checked
//! against the export's own searches (with an `_id` condition), so nothing is kept per
//! exported resource. Memory grows only with the Provenance written (their row keys, to write
//! each once) and, for the latest, with the exported resources that have a Provenance.

use crate::export::{Associated, ExportRequest, Flow, Out};
use crate::*;
use issho_search::{Filter, SearchQuery, Test};
use issho_store::StoreRead;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Provenance read per step.
const WINDOW: usize = 1000;

/// `Type/id` of a reference to this server's resource (relative, or a version of one).
fn local_target(reference: &str) -> Option<(String, String)> {
    let mut parts = reference.split('/');
    let (t, id) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) | (Some("_history"), Some(_), None) => {}
        _ => return None,
    }
    (!id.is_empty() && issho_model::r4().is_resource_type(t))
        .then(|| (t.to_string(), id.to_string()))
}

/// When a Provenance was recorded (its first microsecond; `None` sorts first).
fn recorded_at(p: &Value) -> Option<i64> {
    p["recorded"]
        .as_str()
        .and_then(issho_model::instant::parse_range)
        .map(|r| r.lo)
}

/// The `Type/id` targets of a Provenance.
fn targets(p: &Value) -> Vec<(String, String)> {
    p["target"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["reference"].as_str())
        .filter_map(local_target)
        .collect()
}

impl Engine {
    /// Write the Provenance associated with what `exported` selected (each type with the
    /// searches that selected it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn associated_provenance(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        mode: Associated,
        exported: &[(String, Vec<SearchQuery>)],
        req: &ExportRequest,
        upto: i64,
        out: &mut Out<'_, '_>,
    ) -> Result<()> {
        let searches: HashMap<&str, &[SearchQuery]> = exported
            .iter()
            .map(|(t, q)| (t.as_str(), q.as_slice()))
            .collect();
        // Every Provenance the caller may export, as a Provenance export of these persons.
        let view = self.view(ctx, Action::Export, Some("Provenance"), r)?;
        let plain = ExportRequest {
            persons: req.persons.clone(),
            ..Default::default()
        };
        let mut all = self.type_queries(ctx, r, "Provenance", &view, &[], &plain, upto)?;
        let mut q = all.pop().expect("one search without filters");
        q.count = Some(WINDOW);
        // Latest: for each exported resource, its best Provenance so far (recorded, row key).
        let mut latest: BTreeMap<(String, String), (Option<i64>, i64)> = BTreeMap::new();
        let mut written: HashSet<i64> = HashSet::new();
        loop {
            let rids = r.search(&q)?;
            let full = rids.len() == WINDOW;
            let after = rids.last().copied();
            let window: Vec<(Stored, Value)> = r
                .current_by_rids(&rids)?
                .into_iter()
                .filter_map(|s| s.json().map(|v| (s, v)))
                .collect();
            let named: Vec<Vec<(String, String)>> =
                window.iter().map(|(_, v)| targets(v)).collect();
            let hits = exported_among(r, &searches, named.iter().flatten())?;
            let mut relevant = Vec::new();
            for ((s, v), ts) in window.iter().zip(&named) {
                let found: Vec<&(String, String)> =
                    ts.iter().filter(|t| hits.contains(*t)).collect();
                match mode {
                    Associated::RelevantProvenance if !found.is_empty() => relevant.push(s),
                    Associated::LatestProvenance => {
                        let when = recorded_at(v);
                        for t in found {
                            if latest.get(t).is_none_or(|best| (when, s.rid) > *best) {
                                latest.insert(t.clone(), (when, s.rid));
                            }
                        }
                    }
                    _ => {}
                }
            }
            let fresh = not_yet(r, &searches, relevant.into_iter(), &mut written)?;
            for s in fresh {
                if out.write("Provenance", s)? == Flow::Stop {
                    return Ok(());
                }
            }
            if !full {
                break;
            }
            q.rid_after = after;
        }
        if mode == Associated::LatestProvenance {
            let mut rids: Vec<i64> = latest.values().map(|(_, rid)| *rid).collect();
            rids.sort_unstable();
            rids.dedup();
            for chunk in rids.chunks(WINDOW) {
                let stored = r.current_by_rids(chunk)?;
                for s in not_yet(r, &searches, stored.iter(), &mut written)? {
                    if out.write("Provenance", s)? == Flow::Stop {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The Provenance of `candidates` neither written by this pass nor already in the export as
/// a type of its own; marks them written.
fn not_yet<'a>(
    r: &dyn StoreRead,
    searches: &HashMap<&str, &[SearchQuery]>,
    candidates: impl Iterator<Item = &'a Stored>,
    written: &mut HashSet<i64>,
) -> Result<Vec<&'a Stored>> {
    let list: Vec<&Stored> = candidates.filter(|s| !written.contains(&s.rid)).collect();
    let ids: Vec<(String, String)> = list
        .iter()
        .map(|s| ("Provenance".to_string(), s.id.clone()))
        .collect();
    let already = exported_among(r, searches, ids.iter())?;
    let mut out = Vec::new();
    for s in list {
        if written.insert(s.rid) && !already.contains(&("Provenance".to_string(), s.id.clone())) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Which of `refs` the export wrote: for each type it exported, its searches with an `_id`
/// condition over the ids named.
fn exported_among<'a>(
    r: &dyn StoreRead,
    searches: &HashMap<&str, &[SearchQuery]>,
    refs: impl Iterator<Item = &'a (String, String)>,
) -> Result<HashSet<(String, String)>> {
    let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (t, id) in refs {
        if searches.contains_key(t.as_str()) {
            by_type.entry(t.as_str()).or_default().push(id.clone());
        }
    }
    let mut found = HashSet::new();
    for (t, mut ids) in by_type {
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(WINDOW) {
            for q in searches[t] {
                let mut q = q.clone();
                q.filters.push(Filter {
                    name: "_id".into(),
                    test: Test::Id {
                        ids: chunk.to_vec(),
                        negate: false,
                    },
                });
                q.count = Some(chunk.len());
                q.rid_after = None;
                for s in r.current_by_rids(&r.search(&q)?)? {
                    found.insert((t.to_string(), s.id));
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_this_servers_resources() {
        let p = serde_json::json!({"target": [
            {"reference": "Observation/a"},
            {"reference": "Observation/b/_history/2"},
            {"reference": "http://elsewhere.example/fhir/Observation/c"},
            {"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
            {"reference": "Nothing/d"},
            {"display": "no reference"}
        ]});
        assert_eq!(
            targets(&p),
            [
                ("Observation".to_string(), "a".to_string()),
                ("Observation".to_string(), "b".to_string())
            ]
        );
    }
}
