//! Bulk Data's `includeAssociatedData` over HTTP: the Provenance of what an export holds —
//! every one (`RelevantProvenanceResources`) or each resource's latest
//! (`LatestProvenanceResources`) — only as far as the caller may export Provenance, never one
//! of a resource left out, and never twice.

use crate::bulk::{download, kickoff, setup, wait};
use crate::common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn provenance(id: &str, recorded: &str, targets: &[&str]) -> Value {
    json!({"resourceType": "Provenance", "id": id, "recorded": recorded,
        "target": targets.iter().map(|t| json!({"reference": t})).collect::<Vec<_>>(),
        "agent": [{"who": {"reference": "Organization/org-b"}}]})
}

/// The export's files: type → ids (and the manifest).
fn export_ids(c: &Signed, who: &str, path: &str) -> (Value, Vec<(String, BTreeSet<String>)>) {
    let (st, loc, body) = kickoff(c, who, path, true);
    assert_eq!(st, 202, "{path}: {body}");
    let manifest = wait(c, who, &loc.unwrap());
    let mut out = Vec::new();
    for o in manifest["output"].as_array().unwrap() {
        let (st, rs) = download(c, who, o["url"].as_str().unwrap());
        assert_eq!(st, 200);
        let ids: Vec<String> = rs
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "written twice: {ids:?}");
        assert_eq!(o["count"], ids.len());
        out.push((o["type"].as_str().unwrap().to_string(), set));
    }
    (manifest, out)
}

fn of(files: &[(String, BTreeSet<String>)], t: &str) -> Vec<String> {
    files
        .iter()
        .find(|(x, _)| x == t)
        .map(|(_, ids)| ids.iter().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn associated_provenance_follows_what_the_export_holds() {
    let c = setup();
    for p in [
        provenance("prov-a", "2026-01-01T00:00:00Z", &["Observation/p1-o0"]),
        provenance(
            "prov-b",
            "2026-02-01T00:00:00+09:00",
            &["Observation/p1-o0", "Observation/p1-o1"],
        ),
        provenance("prov-c", "2026-01-05T00:00:00Z", &["Observation/p2-o0"]),
        provenance("prov-d", "2026-01-06T00:00:00Z", &["Organization/org-b"]),
        provenance(
            "prov-e",
            "2025-12-01T00:00:00Z",
            &["Observation/p1-o2/_history/1"],
        ),
    ] {
        c.store_as("admin", &p);
    }
    let obs = "$export?_type=Observation&includeAssociatedData=";
    // Every Provenance of an exported resource; not that of the Organization left out.
    let (_, files) = export_ids(&c, "svc", &format!("{obs}RelevantProvenanceResources"));
    assert_eq!(of(&files, "Observation").len(), 6);
    assert_eq!(
        of(&files, "Provenance"),
        ["prov-a", "prov-b", "prov-c", "prov-e"]
    );
    // The latest of each: prov-b is later than prov-a for p1-o0.
    let (_, files) = export_ids(&c, "svc", &format!("{obs}LatestProvenanceResources"));
    assert_eq!(of(&files, "Provenance"), ["prov-b", "prov-c", "prov-e"]);
    // Both asked: every relevant one.
    let (_, files) = export_ids(
        &c,
        "svc",
        &format!("{obs}LatestProvenanceResources,RelevantProvenanceResources"),
    );
    assert_eq!(of(&files, "Provenance").len(), 4);
    // Only what the filter exported.
    let (_, files) = export_ids(
        &c,
        "svc",
        &format!("{obs}RelevantProvenanceResources&_typeFilter=Observation%3F_id%3Dp2-o0"),
    );
    assert_eq!(of(&files, "Observation"), ["p2-o0"]);
    assert_eq!(of(&files, "Provenance"), ["prov-c"]);
    // Provenance asked for as a type as well: each once, in one file.
    let (m, files) = export_ids(
        &c,
        "svc",
        "$export?_type=Observation,Provenance&_typeFilter=Provenance%3F_id%3Dprov-d,prov-a&includeAssociatedData=RelevantProvenanceResources",
    );
    assert_eq!(
        of(&files, "Provenance"),
        ["prov-a", "prov-b", "prov-c", "prov-d", "prov-e"]
    );
    let provenance_files = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "Provenance")
        .count();
    assert_eq!(provenance_files, 1, "{m}");
    // A patient: their own record's Provenance only, never another person's.
    let (_, files) = export_ids(
        &c,
        "pat",
        "Patient/$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources",
    );
    assert_eq!(of(&files, "Observation").len(), 3);
    assert_eq!(of(&files, "Provenance"), ["prov-a", "prov-b", "prov-e"]);
    // A clinician with no patient in care: nothing, and no Provenance either.
    let (_, files) = export_ids(
        &c,
        "doc-b",
        "$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources",
    );
    assert!(of(&files, "Provenance").is_empty(), "{files:?}");
    // A value not offered, and a client whose scopes leave Provenance out.
    let (st, _, oo) = kickoff(&c, "svc", &format!("{obs}_all"), true);
    assert_eq!(st, 400, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let (st, _, oo) = kickoff(
        &c,
        "svc-obs",
        &format!("{obs}RelevantProvenanceResources"),
        true,
    );
    assert_eq!(st, 403, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    // Without the parameter, the same client exports its Observations.
    let (_, files) = export_ids(&c, "svc-obs", "$export?_type=Observation");
    assert_eq!(of(&files, "Observation").len(), 6);
}
