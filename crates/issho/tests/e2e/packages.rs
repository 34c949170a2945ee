//! FHIR packages over HTTP: an administrator installs JP Core, JP-CLINS and eCheckupReport
//! into a running server (`POST [base]/$install-package`), JP-CLINS only once what it builds
//! on is there; their definitions are then read and searched by canonical URL and version,
//! their SearchParameters join the registry, installing again duplicates nothing — and
//! what a clinician, a patient or a malformed upload gets.

use crate::common::*;
use issho_access::Role;
use serde_json::Value;
use std::path::Path;

fn upload(c: &Signed, who: &str, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
    let r =
        c.s.req("POST", "$install-package")
            .bearer_auth(c.tok(who))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .unwrap();
    let st = r.status().as_u16();
    (
        st,
        serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
    )
}

fn install(c: &Signed, file: &Path) -> (u16, Value) {
    upload(c, "admin", std::fs::read(file).unwrap(), "application/gzip")
}

fn total(c: &Signed, path: &str) -> u64 {
    let (st, b) = c.call("admin", "GET", path, None);
    assert_eq!(st, 200, "{path}: {b}");
    b["total"].as_u64().unwrap_or_else(|| panic!("{path}: {b}"))
}

#[test]
fn an_administrator_installs_the_japanese_packages_into_a_running_server() {
    let Some(shared) = shared_dir() else {
        eprintln!(
            "SKIPPED an_administrator_installs_the_japanese_packages_into_a_running_server: ../shared is absent"
        );
        return;
    };
    let jp = shared.join("jp");
    let c = Signed::start(
        Default::default(),
        vec![
            (
                "admin",
                user("admin", Role::Administrator, "user/*.cruds", None, None),
            ),
            (
                "doc",
                user("doc", Role::Physician, "user/*.cruds", None, Some("org")),
            ),
            (
                "pat",
                user("pat", Role::Patient, "patient/*.cruds", Some("p"), None),
            ),
            (
                "researcher",
                user("researcher", Role::Researcher, "user/*.rs", None, None),
            ),
        ],
    );
    let clins = jp.join("jp-clins.r4-1.5.2.tgz");
    // JP-CLINS builds on JP Core's profiles: refused, naming them, nothing written.
    let (st, b) = install(&c, &clins);
    assert_eq!(st, 422, "{b}");
    let text = b.to_string();
    assert!(
        text.contains("http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition"),
        "{text}"
    );
    assert_eq!(total(&c, "StructureDefinition?_summary=count"), 0);

    // Clinicians, patients and researchers install nothing; the body is not even read for them.
    for who in ["doc", "pat", "researcher"] {
        let (st, b) = upload(&c, who, std::fs::read(&clins).unwrap(), "application/gzip");
        assert_eq!(st, 403, "{who}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    // Bad uploads: not a package, a FHIR resource instead, the wrong content type.
    let (st, b) = upload(&c, "admin", b"not a package".to_vec(), "application/gzip");
    assert_eq!(st, 400, "{b}");
    assert!(b.to_string().contains("not a FHIR package"), "{b}");
    let (st, _) = upload(&c, "admin", b"{}".to_vec(), "application/fhir+json");
    assert_eq!(st, 415);

    // JP Core, then JP-CLINS and eCheckupReport.
    let (st, b) = install(&c, &jp.join("jp-core.r4-1.1.2.tgz"));
    assert_eq!(st, 200, "{b}");
    assert!(
        b.to_string()
            .contains("installed jp-core.r4#1.1.2: 22 CodeSystem, 22 NamingSystem, 8 SearchParameter, 89 StructureDefinition, 37 ValueSet"),
        "{b}"
    );
    // Three MedicationAdministration profiles publish snapshots with empty definitions
    // (sdf-3): installed with their differentials, their snapshots generated when used.
    assert_eq!(
        b.to_string()
            .matches("installed without its published snapshot")
            .count(),
        3,
        "{b}"
    );
    let admin_profile =
        "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationAdministration";
    let (st, oo) = c.call(
        "doc",
        "POST",
        &format!("MedicationAdministration/$validate?profile={admin_profile}"),
        Some(
            &serde_json::json!({"resourceType": "MedicationAdministration",
            "status": "completed", "subject": {"reference": "Patient/x"},
            "medicationCodeableConcept": {"text": "アムロジピン"},
            "effectiveDateTime": "2024-04-01"}),
        ),
    );
    assert_eq!(st, 200, "{oo}");
    let errors: Vec<&Value> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .collect();
    // Validated against the generated snapshot: the errors name the profile.
    assert!(!errors.is_empty(), "{oo}");
    assert!(
        errors.iter().all(|i| i["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("JP_MedicationAdministration")),
        "{oo}"
    );
    let (st, b) = install(&c, &clins);
    assert_eq!(st, 200, "{b}");
    let (st, b) = install(&c, &jp.join("jp-eCheckupReport.r4.tgz"));
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        total(&c, "StructureDefinition?_summary=count"),
        89 + 49 + 26
    );

    // Read and searched by canonical URL and version, tagged with their package.
    let jp_patient = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient";
    let (st, b) = c.call(
        "doc",
        "GET",
        &format!("StructureDefinition?url={jp_patient}&version=1.1.2"),
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(b["total"], 1, "{b}");
    let sd = &b["entry"][0]["resource"];
    assert_eq!(sd["type"], "Patient");
    assert!(sd["snapshot"]["element"].as_array().unwrap().len() > 10);
    assert_eq!(
        total(
            &c,
            "ValueSet?_tag=urn:issho:package|jp-core.r4%231.1.2&_summary=count"
        ),
        37
    );
    // The packages' records, with their dependencies.
    let (_, igs) = c.call(
        "doc",
        "GET",
        "ImplementationGuide?_tag=urn:issho:package|&_sort=url",
        None,
    );
    let ids: Vec<&str> = igs["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["packageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["jp-core.r4", "jp-eCSCLINS.r4", "jp-eCheckupReport.r4"]
    );
    assert_eq!(
        igs["entry"][0]["resource"]["dependsOn"][0]["packageId"],
        "hl7.fhir.r4.core"
    );

    // JP Core's SearchParameters joined the registry: the CapabilityStatement lists them.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (st, r) = c.call("admin", "GET", "$reindex", None);
        assert_eq!(st, 200, "{r}");
        let running = r["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "running" && p["valueBoolean"] == true);
        if !running && !r.to_string().contains("\"indexing\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "reindexing did not finish: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (_, cs) = c.call("doc", "GET", "metadata", None);
    assert!(
        cs.to_string().contains("jp-kana-sort"),
        "JP Core's search parameter listed"
    );

    // Installing again replaces, never duplicates.
    let (st, b) = install(&c, &jp.join("jp-core.r4-1.1.2.tgz"));
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        total(&c, "StructureDefinition?_summary=count"),
        89 + 49 + 26
    );
    let (_, again) = c.call(
        "admin",
        "GET",
        &format!("StructureDefinition?url={jp_patient}"),
        None,
    );
    assert_eq!(again["total"], 1);
    assert_eq!(again["entry"][0]["resource"]["meta"]["versionId"], "2");

    // A clinician can read what was installed, but neither change nor remove it.
    let id = again["entry"][0]["resource"]["id"].as_str().unwrap();
    let (st, b) = c.call("doc", "DELETE", &format!("StructureDefinition/{id}"), None);
    assert_eq!(st, 403, "{b}");
    let mut changed = again["entry"][0]["resource"].clone();
    changed["status"] = serde_json::json!("retired");
    let (st, b) = c.call(
        "doc",
        "PUT",
        &format!("StructureDefinition/{id}"),
        Some(&changed),
    );
    assert_eq!(st, 403, "{b}");
}
