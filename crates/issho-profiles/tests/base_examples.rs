//! The published R4 examples against the R4 base invariants. Needs the reference data
//! folder (`../shared` beside the repository, or `ISSHO_SHARED`); without it the test prints
//! what it skipped and passes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Examples that break a base invariant of the specification, with the invariant and why.
const BREAK_AN_INVARIANT: &[(&str, &str, &str)] = &[
    (
        "Bundle-dataelements.json",
        "bdl-7",
        "a collection whose entries repeat fullUrls (the de-Quantity.* elements, three times \
         each) without distinct meta.versionId",
    ),
    (
        "StructureDefinition-Definition.json",
        "sdf-4",
        "a logical model of the workflow patterns, not abstract, without a baseDefinition",
    ),
    (
        "StructureDefinition-Event.json",
        "sdf-4",
        "a logical model of the workflow patterns, not abstract, without a baseDefinition",
    ),
    (
        "StructureDefinition-FiveWs.json",
        "sdf-4",
        "a logical model of the workflow patterns, not abstract, without a baseDefinition",
    ),
    (
        "StructureDefinition-Request.json",
        "sdf-4",
        "a logical model of the workflow patterns, not abstract, without a baseDefinition",
    ),
];

fn examples() -> Option<PathBuf> {
    let shared = match std::env::var_os("ISSHO_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let tgz = shared.join("fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz");
    if !tgz.is_file() {
        return None;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("r4-examples-profiles");
    if !out.join("package/Patient-example.json").is_file() {
        let tmp = out.with_extension(format!("partial-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let ok = Command::new("tar")
            .arg("xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&tmp)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar failed on {}", tgz.display());
        if std::fs::rename(&tmp, &out).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Some(out.join("package"))
}

#[test]
fn every_r4_example_meets_the_base_invariants() {
    let Some(dir) = examples() else {
        println!("SKIPPED: the R4 examples package (../shared/fhir-r4) was not found");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".json") && !n.starts_with('.') && n != "package.json"
        })
        .collect();
    files.sort();
    let (mut checked, mut warned) = (0, 0);
    let mut unexpected = Vec::new();
    let mut explained_seen = Vec::new();
    let mut not_run = Vec::new();
    let mut warn_keys = std::collections::BTreeMap::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(f).unwrap()) else {
            continue;
        };
        if v.get("resourceType").is_none() {
            continue;
        }
        checked += 1;
        let (issues, unevaluated) = issho_profiles::base_invariants_checked(&v);
        for u in unevaluated {
            not_run.push(format!("{name}: {u}"));
        }
        warned += issues.iter().filter(|i| !i.is_error()).count();
        for i in issues.iter().filter(|i| !i.is_error()) {
            let k = i
                .diagnostics
                .split(" failed")
                .next()
                .unwrap_or("")
                .rsplit(' ')
                .next()
                .unwrap_or("")
                .to_string();
            *warn_keys.entry(k).or_insert(0) += 1;
        }
        let errors: Vec<String> = issues
            .iter()
            .filter(|i| i.is_error())
            .map(|i| i.diagnostics.clone())
            .collect();
        if errors.is_empty() {
            continue;
        }
        match BREAK_AN_INVARIANT.iter().find(|(n, _, _)| *n == name) {
            Some((_, key, _)) if errors.iter().all(|e| e.contains(&format!(" {key} failed"))) => {
                explained_seen.push(name)
            }
            _ => unexpected.push(format!("{name}: {}", errors.join(" | "))),
        }
    }
    println!(
        "{checked} R4 examples checked against the base invariants: {} break one as explained, \
         {warned} warnings",
        explained_seen.len()
    );
    println!("warnings by invariant: {warn_keys:?}");
    assert!(checked > 5000, "only {checked} examples read");
    assert!(
        not_run.is_empty(),
        "{} invariants could not be evaluated:\n{}",
        not_run.len(),
        not_run.join("\n")
    );
    assert!(
        unexpected.is_empty(),
        "{} examples break a base invariant:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    for (n, key, _) in BREAK_AN_INVARIANT {
        assert!(
            explained_seen.contains(n),
            "{n} no longer breaks {key}: remove it from the list"
        );
    }
}
