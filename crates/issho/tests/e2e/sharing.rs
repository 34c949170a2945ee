//! Sharing across institutions under the person's consent, over HTTP, with the JP-CLINS
//! referral example (skipped without `../shared`): hospital A refers the person to clinic B;
//! B sees A's data until the person refuses A's sharing (counts included), A and the person
//! keep seeing it, an emergency physician sees it after breaking the glass; under the policy
//! "share after consent" B sees only its own data until the person agrees.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};

const INSTITUTION_NO: &str = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
const CST: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

fn referral() -> Option<Value> {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared is not there (JP-CLINS referral example)");
        return None;
    };
    let p = shared.join("jp/jp-clins-examples/Bundle-Bundle-CLINS-Referral-Example-01.json");
    Some(serde_json::from_str(&std::fs::read_to_string(p).ok()?).unwrap())
}

fn setup(policy: issho_engine::ConsentPolicy) -> Signed {
    setup_with(issho_engine::EngineConfig {
        consent_policy: policy,
        ..Default::default()
    })
}

fn setup_with(config: issho_engine::EngineConfig) -> Signed {
    let c = Signed::start(
        config,
        vec![
            (
                "admin",
                user("admin", Role::Administrator, "user/*.cruds", None, None),
            ),
            (
                "svc",
                user("svc", Role::Service, "system/*.cruds", None, None),
            ),
            (
                "pat",
                user(
                    "pat",
                    Role::Patient,
                    "patient/*.cruds",
                    Some("makino"),
                    None,
                ),
            ),
            (
                "doc-a",
                user(
                    "doc-a",
                    Role::Physician,
                    "user/*.cruds",
                    None,
                    Some("org-a"),
                ),
            ),
            (
                "doc-b",
                user(
                    "doc-b",
                    Role::Physician,
                    "user/*.cruds",
                    None,
                    Some("org-b"),
                ),
            ),
            (
                "er",
                user(
                    "er",
                    Role::EmergencyPhysician,
                    "user/*.rs",
                    None,
                    Some("org-er"),
                ),
            ),
            (
                "pharm",
                user(
                    "pharm",
                    Role::Pharmacist,
                    "user/*.rs user/MedicationDispense.cruds",
                    None,
                    Some("org-ph"),
                ),
            ),
            (
                "res",
                user("res", Role::Researcher, "user/*.rs", None, None),
            ),
        ],
    );
    for (id, no) in [
        ("org-a", "1319876543"),
        ("org-b", "1311234567"),
        ("org-er", "1310000001"),
        ("org-ph", "1340000002"),
    ] {
        let r = json!({"resourceType": "Organization", "id": id, "name": id,
            "identifier": [{"system": INSTITUTION_NO, "value": no}]});
        assert_eq!(
            c.call("admin", "PUT", &format!("Organization/{id}"), Some(&r))
                .0,
            201
        );
    }
    let p = json!({"resourceType": "Patient", "id": "makino",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "000999739"}]});
    assert_eq!(c.call("admin", "PUT", "Patient/makino", Some(&p)).0, 201);
    // Hospital A treats her (its own encounter, recorded by its registrar).
    let e = json!({"resourceType": "Encounter", "status": "finished",
        "meta": {"source": "Organization/org-a"},
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/makino"}, "serviceProvider": {"reference": "Organization/org-a"}});
    let (st, b) = c.call("admin", "POST", "Encounter", Some(&e));
    assert_eq!(st, 201, "{b}");
    c
}

fn count(c: &Signed, who: &str, q: &str) -> u64 {
    let (st, b) = c.call(who, "GET", &format!("{q}&_summary=count"), None);
    assert_eq!(st, 200, "{q}: {b}");
    b["total"].as_u64().unwrap()
}

/// The entries of the summary section whose title starts with `title`: (reference,
/// holding institution's name).
fn section(summary: &Value, title: &str) -> Vec<(String, String)> {
    let comp = &summary["entry"][0]["resource"];
    assert_eq!(comp["resourceType"], "Composition", "{summary}");
    let s = comp["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"].as_str().unwrap().starts_with(title))
        .unwrap_or_else(|| panic!("no section {title}: {summary}"));
    s["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reference"].as_str().unwrap().to_string(),
                e["extension"][0]["valueReference"]["display"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn refuse_a() -> Value {
    json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/makino"},
        "provision": {"type": "permit", "provision": [{"type": "deny",
            "actor": [{"role": {"coding": [{"system": CST, "code": "CST"}]},
                       "reference": {"reference": "Organization/org-a"}}]}]}})
}

#[test]
fn the_person_refuses_hospital_as_sharing_and_clinic_b_no_longer_sees_it() {
    let Some(doc) = referral() else { return };
    let c = setup(Default::default());
    let (st, b) = c.call("svc", "POST", "Bundle", Some(&doc));
    assert_eq!(st, 201, "{b}");
    // Clinic B writes its own observation.
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "血圧"},
        "subject": {"reference": "Patient/makino"}, "meta": {"source": "Organization/org-a"}});
    let (st, b) = c.call("doc-b", "POST", "Observation", Some(&obs));
    assert_eq!(st, 201, "{b}");
    assert_eq!(
        b["meta"]["source"], "Organization/org-b",
        "stamped with B, whatever was sent"
    );
    let b_obs = b["id"].as_str().unwrap().to_string();
    // … and cannot move it to another institution by a patch.
    let r =
        c.s.req("PATCH", &format!("Observation/{b_obs}"))
            .bearer_auth(c.tok("doc-b"))
            .header("content-type", "application/json-patch+json")
            .body(
                json!([{"op": "replace", "path": "/meta/source", "value": "Organization/org-a"}])
                    .to_string(),
            )
            .send()
            .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Shared: B sees A's allergies and the letter.
    assert_eq!(count(&c, "doc-b", "AllergyIntolerance?patient=makino"), 3);
    assert_eq!(
        count(&c, "doc-b", "DocumentReference?subject=Patient/makino"),
        2
    );
    // The six items across institutions, each with the institution holding it.
    let (st, sum) = c.call("doc-b", "GET", "Patient/makino/$summary", None);
    assert_eq!(st, 200, "{sum}");
    assert_eq!(sum["type"], "document");
    assert_eq!(section(&sum, "傷病名").len(), 3, "active diagnoses: {sum}");
    let allergies = section(&sum, "アレルギー");
    assert_eq!(allergies.len(), 2, "{sum}");
    assert!(
        allergies.iter().all(|(_, org)| org == "org-a"),
        "{allergies:?}"
    );
    assert_eq!(section(&sum, "禁忌薬").len(), 1, "the drug allergy: {sum}");
    // The pharmacy view: prescriptions with the drug allergies first.
    let (st, ph) = c.call(
        "doc-b",
        "GET",
        "Patient/makino/$summary?kind=pharmacy",
        None,
    );
    assert_eq!(st, 200, "{ph}");
    assert_eq!(section(&ph, "禁忌薬").len(), 1);
    assert_eq!(
        c.call("doc-b", "GET", "Patient/makino/$summary?kind=other", None)
            .0,
        400
    );
    // The person refuses A's sharing.
    let (st, b) = c.call("pat", "POST", "Consent", Some(&refuse_a()));
    assert_eq!(st, 201, "{b}");
    assert_eq!(count(&c, "doc-b", "AllergyIntolerance?patient=makino"), 0);
    assert_eq!(
        count(&c, "doc-b", "DocumentReference?subject=Patient/makino"),
        0
    );
    assert_eq!(count(&c, "doc-b", "Condition?patient=makino"), 0);
    let (_, all) = c.call(
        "doc-b",
        "GET",
        "Patient/makino/$everything?_count=500",
        None,
    );
    assert!(
        !all.to_string().contains("Organization/org-a\"}")
            || all["entry"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["resource"]["meta"]["source"] != "Organization/org-a"),
        "{all}"
    );
    // B cannot change, delete or withdraw what A holds (even while it saw it).
    let (_, a_allergy) = c.call(
        "admin",
        "GET",
        "AllergyIntolerance?patient=makino&_count=1",
        None,
    );
    let aid = a_allergy["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut changed = a_allergy["entry"][0]["resource"].clone();
    changed["criticality"] = json!("low");
    assert!(matches!(
        c.call(
            "doc-b",
            "PUT",
            &format!("AllergyIntolerance/{aid}"),
            Some(&changed)
        )
        .0,
        403 | 404
    ));
    assert!(matches!(
        c.call(
            "doc-b",
            "DELETE",
            &format!("AllergyIntolerance/{aid}"),
            None
        )
        .0,
        403 | 404
    ));
    let (_, docs) = c.call("admin", "GET", "DocumentReference?type=57133-1", None);
    let did = docs["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(matches!(
        c.call(
            "doc-b",
            "POST",
            &format!("DocumentReference/{did}/$withdraw"),
            None
        )
        .0,
        403 | 404
    ));
    assert_eq!(
        c.call("admin", "GET", &format!("AllergyIntolerance/{aid}"), None)
            .0,
        200
    );
    // B's own data stays B's to see.
    assert_eq!(
        c.call("doc-b", "GET", &format!("Observation/{b_obs}"), None)
            .0,
        200
    );
    // A sees what it holds, the person sees everything.
    assert_eq!(count(&c, "doc-a", "AllergyIntolerance?patient=makino"), 3);
    assert_eq!(count(&c, "pat", "AllergyIntolerance?patient=makino"), 3);
    // The emergency overrides the refusal (stated rule), audited and told.
    assert_eq!(count(&c, "er", "AllergyIntolerance?patient=makino"), 0);
    let reason = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "アナフィラキシー疑い"}]});
    assert_eq!(
        c.call("er", "POST", "Patient/makino/$break-glass", Some(&reason))
            .0,
        200
    );
    assert_eq!(count(&c, "er", "AllergyIntolerance?patient=makino"), 3);
    let (st, em) = c.call("er", "GET", "Patient/makino/$summary?kind=emergency", None);
    assert_eq!(st, 200, "{em}");
    assert_eq!(section(&em, "アレルギー・禁忌").len(), 3, "{em}");
    assert_eq!(section(&em, "既往歴").len(), 2, "resolved diagnoses: {em}");
    // B's summary no longer holds A's data.
    let (_, sum) = c.call("doc-b", "GET", "Patient/makino/$summary", None);
    assert!(
        section(&sum, "傷病名").is_empty() && section(&sum, "アレルギー").is_empty(),
        "{sum}"
    );
    // A Consent that names a custodian in a permit is not enforced: refused, not stored.
    let mut odd = refuse_a();
    odd["provision"]["provision"][0]["type"] = json!("permit");
    assert_eq!(c.call("pat", "POST", "Consent", Some(&odd)).0, 422);
}

#[test]
fn share_after_consent_waits_for_the_person() {
    let Some(doc) = referral() else { return };
    let c = setup(issho_engine::ConsentPolicy::ShareAfterConsent);
    assert_eq!(c.call("svc", "POST", "Bundle", Some(&doc)).0, 201);
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "血圧"},
        "subject": {"reference": "Patient/makino"}});
    assert_eq!(c.call("doc-b", "POST", "Observation", Some(&obs)).0, 201);
    // Not agreed yet: B sees only what it holds; A its own.
    assert_eq!(count(&c, "doc-b", "AllergyIntolerance?patient=makino"), 0);
    assert_eq!(count(&c, "doc-b", "Observation?patient=makino"), 1);
    assert_eq!(count(&c, "doc-a", "AllergyIntolerance?patient=makino"), 3);
    // The person agrees.
    let agree = json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/makino"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit"}});
    let (st, b) = c.call("pat", "POST", "Consent", Some(&agree));
    assert_eq!(st, 201, "{b}");
    assert_eq!(count(&c, "doc-b", "AllergyIntolerance?patient=makino"), 3);
    assert_eq!(count(&c, "doc-b", "Observation?patient=makino"), 2);
}

#[test]
fn cds_hooks_and_prescriptions_warn_of_an_allergy_recorded_elsewhere() {
    let Some(doc) = referral() else { return };
    let c = setup(Default::default());
    assert_eq!(c.call("svc", "POST", "Bundle", Some(&doc)).0, 201);
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    let http = reqwest::blocking::Client::new();
    // Discovery: public, both hooks, prefetch templates.
    let d: Value = serde_json::from_str(
        &http
            .get(format!("{root}/cds-services"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    let hooks: Vec<&str> = d["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hook"].as_str().unwrap())
        .collect();
    assert_eq!(hooks, vec!["order-select", "order-sign"]);
    assert!(
        d["services"][0]["prefetch"]["allergies"]
            .as_str()
            .unwrap()
            .contains("{{context.patientId}}")
    );
    // Povidone-iodine (YJ 2260701…): hospital A recorded a drug allergy to it.
    let draft = |id: &str, yj: &str, name: &str| {
        json!({"resourceType": "MedicationRequest", "id": id, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/makino"},
            "medicationCodeableConcept": {"coding": [{"system": "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code", "code": yj, "display": name}]}})
    };
    let call = |who: Option<&str>, service: &str, body: &Value| -> (u16, Value) {
        let mut r = http
            .post(format!("{root}/cds-services/{service}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(w) = who {
            r = r.bearer_auth(c.tok(w));
        }
        let r = r.send().unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
        )
    };
    let sign = |orders: Vec<Value>| {
        json!({"hook": "order-sign", "hookInstance": "d1bf2e3e-0000-4000-8000-000000000001",
            "context": {"userId": "Practitioner/x", "patientId": "makino",
                "draftOrders": {"resourceType": "Bundle", "type": "collection",
                    "entry": orders.into_iter().map(|o| json!({"resource": o})).collect::<Vec<_>>()}}})
    };
    let (st, b) = call(
        Some("doc-b"),
        "issho-medication-order-sign",
        &sign(vec![draft("d1", "2260701Q1038", "イソジンガーグル液７％")]),
    );
    assert_eq!(st, 200, "{b}");
    let cards = b["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{b}");
    assert!(
        cards[0]["summary"]
            .as_str()
            .unwrap()
            .contains("薬剤アレルギー"),
        "{b}"
    );
    assert!(matches!(
        cards[0]["indicator"].as_str(),
        Some("warning" | "critical")
    ));
    assert_eq!(
        cards[0]["suggestions"][0]["actions"][0]["resourceId"][0],
        "MedicationRequest/d1"
    );
    assert!(cards[0]["source"]["label"].as_str().is_some());
    // Another drug: no card. order-select checks only the selected orders.
    let (_, b) = call(
        Some("doc-b"),
        "issho-medication-order-sign",
        &sign(vec![draft("d2", "1141007F1063", "カロナール錠３００")]),
    );
    assert!(b["cards"].as_array().unwrap().is_empty(), "{b}");
    let mut select = sign(vec![
        draft("d1", "2260701Q1038", "イソジン"),
        draft("d2", "1141007F1063", "カロナール錠３００"),
    ]);
    select["hook"] = json!("order-select");
    select["context"]["selections"] = json!(["MedicationRequest/d2"]);
    let (st, b) = call(Some("doc-b"), "issho-medication-order-select", &select);
    assert_eq!(st, 200, "{b}");
    assert!(
        b["cards"].as_array().unwrap().is_empty(),
        "only d2 selected: {b}"
    );
    // Probes: no token, another hook, an unknown service, someone the caller cannot see.
    assert_eq!(
        call(None, "issho-medication-order-sign", &sign(vec![])).0,
        401,
        "anonymous: a token is needed"
    );
    assert_eq!(
        call(
            Some("doc-b"),
            "issho-medication-order-select",
            &sign(vec![])
        )
        .0,
        400
    );
    assert_eq!(call(Some("doc-b"), "nope", &sign(vec![])).0, 404);
    let mut other = sign(vec![draft("d1", "2260701Q1038", "イソジン")]);
    other["context"]["patientId"] = json!("nobody");
    assert_eq!(
        call(Some("doc-b"), "issho-medication-order-sign", &other).0,
        404
    );
    // The same check on a prescription written through the API: written, with its warning.
    let mut order = draft("x", "2260701Q1038", "イソジンガーグル液７％");
    order.as_object_mut().unwrap().remove("id");
    order["status"] = json!("active");
    let r =
        c.s.req("POST", "MedicationRequest")
            .bearer_auth(c.tok("doc-b"))
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=OperationOutcome")
            .body(order.to_string())
            .send()
            .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let oo: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert!(
        oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "warning"
                && i["diagnostics"]
                    .as_str()
                    .unwrap()
                    .contains("薬剤アレルギー")),
        "{oo}"
    );
    // Now also a duplicate of the prescription just written.
    let (_, b) = call(
        Some("doc-b"),
        "issho-medication-order-sign",
        &sign(vec![draft("d3", "2260701Q1046", "イソジンガーグル")]),
    );
    let topics: Vec<&str> = b["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"]["topic"]["code"].as_str().unwrap())
        .collect();
    assert!(
        topics.contains(&"drug-allergy") && topics.contains(&"duplicate-prescription"),
        "{b}"
    );
}

#[test]
fn a_deployment_can_refuse_conflicting_prescriptions() {
    let Some(doc) = referral() else { return };
    let c = setup_with(issho_engine::EngineConfig {
        refuse_conflicting_orders: true,
        ..Default::default()
    });
    assert_eq!(c.call("svc", "POST", "Bundle", Some(&doc)).0, 201);
    let order = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/makino"},
        "medicationCodeableConcept": {"coding": [{"system": "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code", "code": "2260701Q1038", "display": "イソジンガーグル液７％"}]}});
    let (st, b) = c.call("doc-b", "POST", "MedicationRequest", Some(&order));
    assert_eq!(st, 409, "{b}");
    assert!(b.to_string().contains("薬剤アレルギー"), "{b}");
    assert_eq!(
        count(&c, "admin", "MedicationRequest?patient=makino"),
        0,
        "nothing written"
    );
}

#[test]
fn a_pharmacy_that_dispensed_to_the_person_sees_their_allergies() {
    let c = setup(Default::default());
    let allergy = json!({"resourceType": "AllergyIntolerance", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}, "category": ["medication"],
        "code": {"text": "ペニシリン"}, "patient": {"reference": "Patient/makino"},
        "meta": {"source": "Organization/org-a"}});
    assert_eq!(
        c.call("admin", "POST", "AllergyIntolerance", Some(&allergy))
            .0,
        201
    );
    assert_eq!(count(&c, "pharm", "AllergyIntolerance?patient=makino"), 0);
    let dispense = |org: &str| {
        json!({"resourceType": "MedicationDispense", "status": "completed",
            "medicationCodeableConcept": {"text": "アムロジピン錠５ｍｇ"},
            "subject": {"reference": "Patient/makino"},
            "performer": [{"actor": {"reference": format!("Organization/{org}")}}]})
    };
    // Neither the patient nor another pharmacy's pharmacist records a dispensing by it.
    assert!(matches!(
        c.call(
            "pat",
            "POST",
            "MedicationDispense",
            Some(&dispense("org-ph"))
        )
        .0,
        403 | 404
    ));
    // The dispensing (recorded by the pharmacy's system) is the pharmacy's care relationship.
    let (st, b) = c.call(
        "admin",
        "POST",
        "MedicationDispense",
        Some(&dispense("org-ph")),
    );
    assert_eq!(st, 201, "{b}");
    assert_eq!(count(&c, "pharm", "AllergyIntolerance?patient=makino"), 1);
    assert_eq!(c.call("pharm", "GET", "Patient/makino", None).0, 200);
    // Its pharmacist records further dispensings for the pharmacy, not for another one.
    assert_eq!(
        c.call(
            "pharm",
            "POST",
            "MedicationDispense",
            Some(&dispense("org-ph"))
        )
        .0,
        201
    );
    assert_eq!(
        c.call(
            "pharm",
            "POST",
            "MedicationDispense",
            Some(&dispense("org-b"))
        )
        .0,
        403
    );
    // Read-only otherwise.
    assert_eq!(
        c.call("pharm", "POST", "AllergyIntolerance", Some(&allergy))
            .0,
        403
    );
}

/// The record's operations probed by those who may not see the person: an emergency
/// physician before breaking the glass, another person's token, a researcher; and a summary
/// that must not carry an Organization the caller may not read.
#[test]
fn summaries_checks_and_matches_tell_outsiders_nothing() {
    let c = setup(Default::default());
    let other = json!({"resourceType": "Patient", "id": "other",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11319876543", "value": "x9"}]});
    assert_eq!(c.call("admin", "PUT", "Patient/other", Some(&other)).0, 201);
    // An Organization that names the other person is in their record, not shared data.
    let secret = json!({"resourceType": "Organization", "id": "secret", "name": "秘密",
        "extension": [{"url": "urn:test", "valueReference": {"reference": "Patient/other"}}]});
    assert_eq!(
        c.call("admin", "PUT", "Organization/secret", Some(&secret))
            .0,
        201
    );
    for (who, path) in [
        ("er", "Patient/makino/$summary"),
        ("er", "Patient/makino/$summary?kind=emergency"),
        ("pat", "Patient/other/$summary"),
        ("doc-b", "Patient/makino/$summary?kind=pharmacy"),
    ] {
        let (st, b) = c.call(who, "GET", path, None);
        assert_eq!(st, 404, "{who} {path}: {b}");
    }
    assert_eq!(c.call("res", "GET", "Patient/makino/$summary", None).0, 403);
    let find = json!({"resourceType": "Parameters", "parameter": [{"name": "resource",
        "resource": {"resourceType": "Patient", "birthDate": "1930-06-28", "name": [{"family": "牧野"}]}}]});
    assert_eq!(c.call("res", "POST", "Patient/$match", Some(&find)).0, 403);
    let (st, b) = c.call("pat", "POST", "Patient/$match", Some(&find));
    assert!(
        st == 200 && b["total"] == 0,
        "only their own record is searched: {b}"
    );
    // A patient's own result naming that Organization as its source: the summary leaves the
    // Organization out.
    let obs = json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"text": "血糖"}, "valueQuantity": {"value": 101, "unit": "mg/dL"},
        "subject": {"reference": "Patient/makino"}, "meta": {"source": "Organization/secret"}});
    assert_eq!(c.call("pat", "POST", "Observation", Some(&obs)).0, 201);
    let (st, sum) = c.call("pat", "GET", "Patient/makino/$summary", None);
    assert_eq!(st, 200, "{sum}");
    assert!(section(&sum, "検査結果").len() == 1, "{sum}");
    assert!(!sum.to_string().contains("秘密"), "{sum}");
    // The CDS service for someone outside the caller's care.
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    let call = json!({"hook": "order-sign", "hookInstance": "d1bf2e3e-0000-4000-8000-000000000009",
        "context": {"userId": "Practitioner/x", "patientId": "makino",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": []}}});
    let r = reqwest::blocking::Client::new()
        .post(format!("{root}/cds-services/issho-medication-order-sign"))
        .bearer_auth(c.tok("er"))
        .header("content-type", "application/json")
        .body(call.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
