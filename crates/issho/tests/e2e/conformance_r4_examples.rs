//! Conformance: every resource of the FHIR R4 examples package is created over HTTP and read
//! back equal (apart from the server-assigned meta.versionId / meta.lastUpdated).
//! Needs ../shared; prints SKIPPED without it.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// Resources the R4 package itself gets wrong, so that a correct server must refuse them.
/// Each entry: file name → why it is refused. A correct validator must refuse these, so they
/// are counted separately and must FAIL to be created.
const KNOWN_INVALID: &[(&str, &str)] = &[
    (
        "DeviceMetric-example.json",
        "parent references a DeviceDefinition; R4 allows only Device",
    ),
    (
        "DeviceUseStatement-example.json",
        "reasonReference to a Procedure is not an allowed target",
    ),
    (
        "ImplementationGuide-fhir.json",
        "no name/status (required); a reference id longer than 64 characters",
    ),
    (
        "ig-r4.json",
        "no name/status (required); a reference id longer than 64 characters",
    ),
    (
        "MedicationRequest-medrx0301.json",
        "dispenseRequest.performer references a Practitioner; only Organization is allowed",
    ),
    (
        "Observation-clinical-gender.json",
        "performer references an Encounter",
    ),
    (
        "Questionnaire-qs1.json",
        "nested items without the required linkId",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-author.json",
        "no base (required)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-effective.json",
        "no base (required)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-end.json",
        "no base (required)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-keyword.json",
        "no base (required)",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-workflow.json",
        "no base (required)",
    ),
    (
        "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
        "id longer than 64 characters",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-author.json",
        "no base (required)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-effective.json",
        "no base (required)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-end.json",
        "no base (required)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-keyword.json",
        "no base (required)",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-workflow.json",
        "no base (required)",
    ),
];

fn strip_server_meta(v: &mut Value) {
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            v.as_object_mut().unwrap().remove("meta");
        }
    }
}

#[test]
fn r4_examples_round_trip() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIPPED r4_examples_round_trip: ../shared is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("tar")
        .arg("xzf")
        .arg(shared.join("fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz"))
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("tar");
    assert!(st.success());
    let mut files: Vec<_> = std::fs::read_dir(tmp.path().join("package"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(".json") && !n.starts_with('.') && n != "package.json"
        })
        .collect();
    files.sort();
    let s = Server::start();
    let conformance = [
        "StructureDefinition",
        "SearchParameter",
        "ValueSet",
        "CodeSystem",
        "ConceptMap",
        "OperationDefinition",
        "CompartmentDefinition",
        "CapabilityStatement",
        "NamingSystem",
        "ImplementationGuide",
        "StructureMap",
        "GraphDefinition",
        "MessageDefinition",
    ];
    let (mut total, mut passed, mut ex_total, mut ex_passed) = (0, 0, 0, 0);
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let original: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let rt = original["resourceType"].as_str().unwrap_or("").to_string();
        let is_example = !conformance.contains(&rt.as_str());
        total += 1;
        if is_example {
            ex_total += 1;
        }
        let (r, id) = match original.get("id").and_then(Value::as_str) {
            Some(id) => (s.put(&format!("{rt}/{id}"), &original), id.to_string()),
            None => {
                let r = s.post(&rt, &original);
                let loc = r
                    .headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let id = loc.split('/').rev().nth(2).unwrap_or("").to_string();
                (r, id)
            }
        };
        let status = r.status().as_u16();
        if status != 200 && status != 201 {
            let body = r.text().unwrap_or_default();
            let diag = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v["issue"].as_array().map(|a| {
                        a.iter()
                            .filter(|i| i["severity"] == "error")
                            .take(3)
                            .map(|i| {
                                format!(
                                    "{} @ {}",
                                    i["diagnostics"].as_str().unwrap_or(""),
                                    i["expression"][0].as_str().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                })
                .unwrap_or(body);
            if !KNOWN_INVALID.iter().any(|(n, _)| *n == name) {
                failures
                    .entry(format!("HTTP {status}"))
                    .or_default()
                    .push(format!("{name}: {diag}"));
            }
            continue;
        }
        if KNOWN_INVALID.iter().any(|(n, _)| *n == name) {
            failures
                .entry("accepted although invalid".into())
                .or_default()
                .push(name.clone());
        }
        let mut back = json(s.get(&format!("{rt}/{id}")));
        strip_server_meta(&mut back);
        let mut want = original.clone();
        strip_server_meta(&mut want);
        if original.get("id").is_none() {
            want.as_object_mut()
                .unwrap()
                .insert("id".into(), Value::String(id.clone()));
        }
        if back == want {
            passed += 1;
            if is_example {
                ex_passed += 1;
            }
        } else {
            failures
                .entry("read back differs".into())
                .or_default()
                .push(name);
        }
    }
    eprintln!(
        "R4 examples package: {passed} of {total} resources created and read back equal ({:.2}%)",
        100.0 * passed as f64 / total as f64
    );
    eprintln!(
        "  of which non-conformance examples: {ex_passed} of {ex_total} ({:.2}%)",
        100.0 * ex_passed as f64 / ex_total as f64
    );
    eprintln!(
        "  refused as invalid in the package itself (listed in KNOWN_INVALID with reasons): {}",
        KNOWN_INVALID.len()
    );
    for (why, list) in &failures {
        eprintln!("  {why}: {}", list.len());
        for l in list.iter().take(40) {
            eprintln!("    {l}");
        }
    }
    let rate = passed as f64 / (total - KNOWN_INVALID.len()) as f64;
    eprintln!("  round trip of the valid ones: {:.2}%", 100.0 * rate);
    assert!(rate >= 0.99, "round trip rate {rate:.4} is below 99%");
    assert!(
        !failures.contains_key("accepted although invalid"),
        "invalid examples were accepted"
    );
}
