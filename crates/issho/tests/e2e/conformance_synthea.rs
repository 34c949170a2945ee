//! Conformance: all 100 Synthea patients of ../shared load as they are, as transaction
//! Bundles over HTTP, with every entry created. Prints SKIPPED without ../shared.

use crate::common::*;
use serde_json::Value;

#[test]
fn all_synthea_bundles_load_as_they_are() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIPPED all_synthea_bundles_load_as_they_are: ../shared is absent");
        return;
    };
    let s = Server::start();
    let dir = shared.join("synthea/bulk-data-server-100");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let name = |f: &std::path::PathBuf| f.file_name().unwrap().to_str().unwrap().to_string();
    let (reference, rest): (Vec<_>, Vec<_>) = files.iter().partition(|f| {
        name(f).starts_with("hospitalInformation") || name(f).starts_with("practitionerInformation")
    });
    let start = std::time::Instant::now();
    let mut created = 0usize;
    let load = |f: &std::path::PathBuf| {
        let body: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        if name(f).starts_with("groupInformation") {
            // a single Group resource, not a Bundle
            let r = s.post("Group", &body);
            assert_eq!(r.status(), 201, "{}", name(f));
            return 1;
        }
        let r = s.post("", &body);
        assert_eq!(
            r.status(),
            200,
            "{}: {}",
            name(f),
            r.text().unwrap_or_default()
        );
        let resp = json(r);
        let entries = resp["entry"].as_array().unwrap();
        assert_eq!(entries.len(), body["entry"].as_array().unwrap().len());
        for e in entries {
            let st = e["response"]["status"].as_str().unwrap();
            assert!(st == "201 Created" || st == "200 OK", "{}: {e}", name(f));
        }
        entries.len()
    };
    for f in &reference {
        created += load(f);
    }
    for f in &rest {
        created += load(f);
    }
    let secs = start.elapsed().as_secs_f64();
    let total = json(s.get("_history?_count=1"))["total"].as_u64().unwrap();
    eprintln!(
        "Synthea: {} files, {created} entries processed, {total} versions stored in {secs:.1} s ({:.0} resources/s, debug build, one client)",
        files.len(),
        created as f64 / secs
    );
    assert!(created >= 38_970, "{created}");
    // every Patient is there and searchable
    let pats = json(s.get("Patient?_summary=count"));
    assert!(pats["total"].as_u64().unwrap() >= 100, "{pats}");
}
