//! Profile validation over HTTP with JP Core and JP-CLINS installed: `$validate` with
//! `profile=` (type and instance level, query or Parameters), writes validated against the
//! installed profiles of their `meta.profile` (422 naming the profile, the element and the
//! rule), a profile nobody installed (a warning, or refused when the deployment says so), and
//! a profile the deployment requires for a type.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};
use std::path::Path;

const JP_PATIENT: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient";
const CLINS_PATIENT: &str = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS";

fn users() -> Vec<(&'static str, issho_auth::User)> {
    vec![
        (
            "admin",
            user("admin", Role::Administrator, "user/*.cruds", None, None),
        ),
        (
            "doc",
            user("doc", Role::Physician, "user/*.cruds", None, Some("org")),
        ),
    ]
}

fn start(shared: &Path, config: issho_engine::EngineConfig) -> Signed {
    let c = Signed::start(config, users());
    for f in ["jp-core.r4-1.1.2.tgz", "jp-clins.r4-1.5.2.tgz"] {
        c.install_package(&shared.join("jp").join(f));
    }
    c
}

fn example(shared: &Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(shared.join("jp/jp-clins-examples").join(name)).unwrap())
        .unwrap()
}

fn errors(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["severity"] == "error")
        .map(|i| i["diagnostics"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn patient(member: bool) -> Value {
    let mut p = json!({"resourceType": "Patient",
        "meta": {"profile": [CLINS_PATIENT]},
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11311234567", "value": "00001"}],
        "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}],
                  "use": "official", "text": "東京 太郎", "family": "東京", "given": ["太郎"]}],
        "gender": "male", "birthDate": "1970-01-01",
        "address": [{"text": "東京都千代田区千代田1-1", "postalCode": "100-0001", "country": "JP"}]});
    if member {
        p["identifier"].as_array_mut().unwrap().push(json!({
            "system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID",
            "value": "00012345:あいう:187:05"}));
    }
    p
}

#[test]
fn validate_and_writes_follow_the_installed_profiles() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIPPED validate_and_writes_follow_the_installed_profiles: ../shared is absent");
        return;
    };
    let c = start(&shared, Default::default());
    // $validate against a JP Core profile, by query and by Parameters.
    let plain = json!({"resourceType": "Patient", "gender": "female",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11311234567", "value": "2"}]});
    let (st, b) = c.call(
        "doc",
        "POST",
        &format!("Patient/$validate?profile={JP_PATIENT}"),
        Some(&plain),
    );
    assert_eq!(st, 200, "{b}");
    assert!(errors(&b).is_empty(), "{b}");
    let (st, b) = c.call(
        "doc",
        "POST",
        "Patient/$validate",
        Some(&json!({"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": patient(false)},
            {"name": "profile", "valueUri": CLINS_PATIENT}]})),
    );
    assert_eq!(st, 200, "{b}");
    let e = errors(&b);
    assert!(
        e.iter().any(|m| m.starts_with(
            "JP_Patient_eCS: Patient: valid-system-insurance-patientIdentifier failed"
        )),
        "{e:?}"
    );
    // Every issue says where.
    assert!(
        b["issue"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["severity"] == "error")
            .all(|i| i["expression"].is_array()),
        "{b}"
    );
    let (_, b) = c.call(
        "doc",
        "POST",
        &format!("Patient/$validate?profile={CLINS_PATIENT}"),
        Some(&patient(true)),
    );
    assert!(errors(&b).is_empty(), "{b}");
    // A profile nobody installed, asked for: an error issue (the answer is still 200).
    let (st, b) = c.call(
        "doc",
        "POST",
        "Patient/$validate?profile=https://nowhere.example/sd",
        Some(&plain),
    );
    assert_eq!(st, 200);
    assert!(
        errors(&b).iter().any(|m| m.contains("not installed")),
        "{b}"
    );

    // The JP-CLINS error example is refused on write, naming the rule it breaks.
    let bad = example(
        &shared,
        "MedicationRequest-ErrorExample-JP-MedReq-ExtEye-Total1.json",
    );
    let (st, b) = c.call(
        "admin",
        "PUT",
        "MedicationRequest/ErrorExample-JP-MedReq-ExtEye-Total1",
        Some(&bad),
    );
    assert_eq!(st, 422, "{b}");
    assert!(
        errors(&b)
            .iter()
            .any(|m| m.contains("needs-anyOfStandardCode-medication")),
        "{b}"
    );
    assert_eq!(
        c.call(
            "admin",
            "GET",
            "MedicationRequest/ErrorExample-JP-MedReq-ExtEye-Total1",
            None
        )
        .0,
        404
    );
    // A conforming example is written; so is the same resource through a transaction.
    let good = example(
        &shared,
        "MedicationRequest-Example-JP-MedReq-PO-BID-2d.json",
    );
    let id = good["id"].as_str().unwrap().to_string();
    let (st, b) = c.call(
        "admin",
        "PUT",
        &format!("MedicationRequest/{id}"),
        Some(&good),
    );
    assert!(st == 201 || st == 200, "{b}");
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": bad, "request": {"method": "POST", "url": "MedicationRequest"}}]});
    let (st, b) = c.call("admin", "POST", "", Some(&tx));
    assert_eq!(st, 422, "{b}");
    assert!(
        b.to_string().contains("needs-anyOfStandardCode-medication"),
        "{b}"
    );

    // A Patient claiming JP-CLINS's profile without an insurance member ID: refused.
    // (Validation comes before access: a clinician learns the same about the body.)
    let (st, b) = c.call("doc", "POST", "Patient", Some(&patient(false)));
    assert_eq!(st, 422, "{b}");
    assert!(b.to_string().contains("R1012"), "{b}");
    let (st, b) = c.call("admin", "POST", "Patient", Some(&patient(true)));
    assert_eq!(st, 201, "{b}");

    // A profile nobody installed in meta.profile: written, with a warning.
    let mut unknown = plain.clone();
    unknown["meta"] = json!({"profile": ["https://nowhere.example/sd"]});
    let r =
        c.s.req("POST", "Patient")
            .bearer_auth(c.tok("admin"))
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=OperationOutcome")
            .body(unknown.to_string())
            .send()
            .unwrap();
    assert_eq!(r.status(), 201);
    let b: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert!(b.to_string().contains("is not installed here"), "{b}");
}

#[test]
fn a_deployment_requires_profiles_and_known_ones() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIPPED a_deployment_requires_profiles_and_known_ones: ../shared is absent");
        return;
    };
    let c = start(
        &shared,
        issho_engine::EngineConfig {
            required_profiles: vec![("Patient".into(), CLINS_PATIENT.into())],
            unknown_profiles_are_errors: true,
            ..Default::default()
        },
    );
    // No meta.profile, yet every Patient must meet JP_Patient_eCS.
    let mut p = patient(false);
    p.as_object_mut().unwrap().remove("meta");
    let (st, b) = c.call("admin", "POST", "Patient", Some(&p));
    assert_eq!(st, 422, "{b}");
    assert!(b.to_string().contains("R1012"), "{b}");
    let mut ok = patient(true);
    ok.as_object_mut().unwrap().remove("meta");
    let (st, b) = c.call("admin", "POST", "Patient", Some(&ok));
    assert_eq!(st, 201, "{b}");
    // Other types are not concerned; an unknown profile is refused here.
    let org = json!({"resourceType": "Organization", "name": "x", "meta": {"profile": ["https://nowhere.example/sd"]}});
    let (st, b) = c.call("admin", "POST", "Organization", Some(&org));
    assert_eq!(st, 422, "{b}");
    assert!(b.to_string().contains("not installed"), "{b}");
}

const BODY_WEIGHT: &str = "https://issho.example/fhir/StructureDefinition/body-weight";

/// A profile written as a differential only (no snapshot), on R4's Observation.
fn differential_only() -> Value {
    json!({"resourceType": "StructureDefinition", "id": "body-weight", "url": BODY_WEIGHT,
    "name": "BodyWeight", "status": "active", "kind": "resource", "abstract": false,
    "type": "Observation", "derivation": "constraint",
    "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
    "differential": {"element": [
        {"id": "Observation", "path": "Observation"},
        {"id": "Observation.code.coding", "path": "Observation.code.coding", "min": 1,
         "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
        {"id": "Observation.code.coding:jlac", "path": "Observation.code.coding",
         "sliceName": "jlac", "min": 1, "max": "1"},
        {"id": "Observation.code.coding:jlac.system", "path": "Observation.code.coding.system",
         "min": 1, "fixedUri": "urn:oid:1.2.392.200119.4.504"},
        {"id": "Observation.value[x]", "path": "Observation.value[x]", "min": 1,
         "type": [{"code": "Quantity"}]}
    ]}})
}

/// A profile without snapshot: `$snapshot` generates it (instance, url, or a definition in
/// the request), writes are validated against it; bad requests and probes are refused.
#[test]
fn snapshots_are_generated_from_differentials() {
    let mut all = users();
    all.push((
        "obs-only",
        user(
            "obs-only",
            Role::Physician,
            "user/Observation.rs",
            None,
            Some("org"),
        ),
    ));
    let c = Signed::start(Default::default(), all);
    let (st, b) = c.call(
        "admin",
        "PUT",
        "StructureDefinition/body-weight",
        Some(&differential_only()),
    );
    assert_eq!(st, 201, "{b}");
    let ids = |sd: &Value| -> Vec<String> {
        sd["snapshot"]["element"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, by_id) = c.call(
        "doc",
        "GET",
        "StructureDefinition/body-weight/$snapshot",
        None,
    );
    assert_eq!(st, 200, "{by_id}");
    let got = ids(&by_id);
    for want in [
        "Observation.code.coding",
        "Observation.code.coding:jlac",
        "Observation.code.coding:jlac.system",
        "Observation.subject",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} not in {got:?}");
    }
    let (st, by_url) = c.call(
        "doc",
        "GET",
        &format!("StructureDefinition/$snapshot?url={BODY_WEIGHT}"),
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(ids(&by_url), got);
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "definition", "resource": differential_only()}]});
    let (st, given) = c.call(
        "doc",
        "POST",
        "StructureDefinition/$snapshot",
        Some(&params),
    );
    assert_eq!(st, 200);
    assert_eq!(ids(&given), got);

    // Writes naming the profile are validated against the generated snapshot.
    let obs = |system: &str| {
        json!({"resourceType": "Observation", "status": "final",
            "meta": {"profile": [BODY_WEIGHT]},
            "code": {"coding": [{"system": system, "code": "9A110160812345678"}]},
            "valueQuantity": {"value": 60.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
    };
    let (st, b) = c.call("doc", "POST", "Observation", Some(&obs("http://loinc.org")));
    assert_eq!(st, 422, "{b}");
    assert!(
        b.to_string().contains("Observation.code.coding:jlac"),
        "{b}"
    );
    let (st, b) = c.call(
        "admin",
        "POST",
        "Observation",
        Some(&obs("urn:oid:1.2.392.200119.4.504")),
    );
    assert_eq!(st, 201, "{b}");

    // Probes: no StructureDefinition scope, no parameter, unknown ids and urls, a definition
    // that is not one, a base that is itself, an element the base does not have.
    let (st, _) = c.call(
        "obs-only",
        "GET",
        "StructureDefinition/body-weight/$snapshot",
        None,
    );
    assert_eq!(st, 403);
    for (method, path, body, want) in [
        ("GET", "StructureDefinition/$snapshot", None, 400),
        ("GET", "StructureDefinition/nothing/$snapshot", None, 404),
        (
            "GET",
            "StructureDefinition/$snapshot?url=https://nowhere.example/sd",
            None,
            404,
        ),
        (
            "POST",
            "StructureDefinition/$snapshot",
            Some(json!({"resourceType": "Parameters",
            "parameter": [{"name": "definition", "resource": {"resourceType": "Patient"}}]})),
            400,
        ),
    ] {
        let (st, b) = c.call("doc", method, path, body.as_ref());
        assert_eq!(st, want, "{path}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    // Two profiles each based on the other.
    for (id, base) in [("loop-a", "loop-b"), ("loop-b", "loop-a")] {
        let mut sd = differential_only();
        sd["id"] = json!(id);
        sd["url"] = json!(format!(
            "https://issho.example/fhir/StructureDefinition/{id}"
        ));
        sd["baseDefinition"] = json!(format!(
            "https://issho.example/fhir/StructureDefinition/{base}"
        ));
        let (st, b) = c.call(
            "admin",
            "PUT",
            &format!("StructureDefinition/{id}"),
            Some(&sd),
        );
        assert_eq!(st, 201, "{b}");
    }
    let (st, b) = c.call("doc", "GET", "StructureDefinition/loop-a/$snapshot", None);
    assert_eq!(st, 422, "{b}");
    let mut cycle = differential_only();
    cycle["baseDefinition"] = json!("https://issho.example/fhir/StructureDefinition/loop-a");
    let mut unknown = differential_only();
    unknown["differential"]["element"][1]["id"] = json!("Observation.nothing");
    unknown["differential"]["element"][1]["path"] = json!("Observation.nothing");
    for bad in [cycle, unknown] {
        let params = json!({"resourceType": "Parameters", "parameter": [
            {"name": "definition", "resource": bad}]});
        let (st, b) = c.call(
            "doc",
            "POST",
            "StructureDefinition/$snapshot",
            Some(&params),
        );
        assert_eq!(st, 422, "{b}");
        assert!(
            b.to_string().contains("no snapshot can be generated"),
            "{b}"
        );
    }
}
