//! Regression tests for what an attack review of the fixes for issue 9 found (a tester with
//! the demo users' tokens against a running server): paging tokens replayed on another
//! request, clinicians changing a person's Consents or shared data, answers that told a hidden
//! resource from an absent one, query plans for non-administrators, and Consents accepted
//! though not enforced exactly.

use crate::common::next_link;
use crate::leaks::{Who, entry_ids, obs, setup};
use serde_json::{Value, json};

fn consent(provision: Value) -> Value {
    json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"}, "provision": provision})
}

/// A paging token serves only the request it was made for: replayed on another patient's
/// `$everything` (or another search), it is treated as expired and the page is computed for
/// the request as it stands.
#[test]
fn paging_tokens_are_bound_to_their_request() {
    let c = setup();
    c.put(&json!({"resourceType": "Encounter", "id": "p3-enc-a", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p3"}, "serviceProvider": {"reference": "Organization/org-a"}}));
    let token_of = |b: &Value| {
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .and_then(|u| u.split("_page=").nth(1))
            .map(|t| t.split('&').next().unwrap().to_string())
            .unwrap()
    };
    let (_, first) = c.get(Who::DoctorA, "Patient/p1/$everything?_count=1");
    let t = token_of(&first);
    let ids = c.ids(
        Who::DoctorA,
        &format!("Patient/p3/$everything?_count=50&_page={t}&_offset=1"),
    );
    assert!(ids.iter().all(|i| !i.contains("p1")), "{ids:?}");
    let (_, first) = c.get(Who::DoctorA, "Observation?subject=Patient/p1&_count=1");
    let t = token_of(&first);
    let ids = c.ids(
        Who::DoctorA,
        &format!("Observation?subject=Patient/p3&_count=50&_page={t}&_offset=1"),
    );
    assert!(ids.iter().all(|i| !i.contains("p1")), "{ids:?}");
}

/// A person's Consents are theirs: their clinicians read them but may not change, withdraw
/// or write them for the person.
#[test]
fn clinicians_do_not_write_a_persons_consents() {
    let c = setup();
    let refusal = consent(json!({"type": "deny", "actor": [{"role": {"text": "x"},
        "reference": {"reference": "Organization/org-b"}}]}));
    let (st, b) = c.send(Who::P1, "POST", "Consent", &refusal);
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let path = format!("Consent/{id}");
    assert_eq!(
        c.get(Who::DoctorA, &path).0,
        200,
        "readable by the care team"
    );
    let mut withdrawn = b.clone();
    withdrawn["status"] = json!("inactive");
    assert_eq!(c.send(Who::DoctorA, "PUT", &path, &withdrawn).0, 403);
    let r =
        c.s.req("PATCH", &path)
            .bearer_auth(c.tok(Who::DoctorA))
            .header("content-type", "application/json-patch+json")
            .body(r#"[{"op":"replace","path":"/status","value":"inactive"}]"#)
            .send()
            .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(c.send(Who::DoctorA, "DELETE", &path, &Value::Null).0, 403);
    let lockout = consent(json!({"type": "deny"}));
    assert_eq!(c.send(Who::DoctorA, "POST", "Consent", &lockout).0, 403);
    assert_eq!(c.get(Who::Admin, &path).1["status"], "active");
    // The person withdraws it themself.
    assert_eq!(c.send(Who::P1, "PUT", &path, &withdrawn).0, 200);
}

/// Shared data and the server's configuration are the administrators'.
#[test]
fn clinicians_do_not_change_shared_data_or_configuration() {
    let c = setup();
    let org = json!({"resourceType": "Organization", "id": "org-a", "name": "PWNED"});
    assert_eq!(
        c.send(Who::DoctorB, "PUT", "Organization/org-a", &org).0,
        403
    );
    let sp = json!({"resourceType": "SearchParameter", "url": "http://evil/sp", "name": "evil",
        "status": "active", "description": "x", "code": "evilcode", "base": ["Observation"],
        "type": "string", "expression": "Observation.code.text"});
    assert_eq!(c.send(Who::DoctorB, "POST", "SearchParameter", &sp).0, 403);
    let (_, b) = c.get(Who::Admin, "SearchParameter?_summary=count");
    assert_eq!(b["total"], 0);
    assert_eq!(c.get(Who::Admin, "Organization/org-a").1["name"], "A病院");
}

/// Writes answer a hidden resource exactly as an absent one.
#[test]
fn writes_do_not_tell_hidden_from_absent() {
    let c = setup();
    let same = |a: (u16, Value), b: (u16, Value), what: &str| {
        let text = |v: &Value| {
            v["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or_default()
                .replace("p2-obs0", "X")
                .replace("absent-x", "X")
        };
        assert_eq!(a.0, b.0, "{what}: {} vs {}", a.1, b.1);
        assert_eq!(text(&a.1), text(&b.1), "{what}");
    };
    let put = |id: &str| {
        let mut o = obs(id, "p1", "vital-signs");
        o["id"] = json!(id);
        c.send(Who::P1, "PUT", &format!("Observation/{id}"), &o)
    };
    same(put("p2-obs0"), put("absent-x"), "update");
    let del = |id: &str| {
        c.send(
            Who::P1,
            "DELETE",
            &format!("Observation/{id}"),
            &Value::Null,
        )
    };
    same(del("p2-obs0"), del("absent-x"), "delete");
    let refer = |id: &str| {
        let mut o = obs("new", "p1", "vital-signs");
        o.as_object_mut().unwrap().remove("id");
        o["focus"] = json!([{"reference": format!("Observation/{id}")}]);
        c.send(Who::P1, "POST", "Observation", &o)
    };
    let (a, b) = (refer("p2-obs0"), refer("absent-x"));
    same(a, b, "reference");
    let patient = |id: &str| {
        c.send(
            Who::P1,
            "PUT",
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id}),
        )
    };
    let (a, b) = (patient("p2"), patient("absent-x"));
    assert_eq!(a.0, b.0, "{} vs {}", a.1, b.1);
    // The hidden resource is untouched.
    assert_eq!(
        c.get(Who::Admin, "Observation/p2-obs0").1["meta"]["versionId"],
        "1"
    );
}

/// Query plans are administrators' insight on every search path.
#[test]
fn query_plans_need_an_administrator_everywhere() {
    let c = setup();
    for who in [Who::DoctorA, Who::P1] {
        assert_eq!(
            c.get(who, "Patient/p1/Observation?_explain=true").0,
            403,
            "{who:?}"
        );
        assert_eq!(c.get(who, "Observation?_explain=true").0, 403);
    }
    let (st, b) = c.get(Who::Admin, "Patient/p1/Observation?_explain=true");
    assert_eq!(st, 200);
    assert!(b.to_string().contains("plan"), "{b}");
}

/// What the person may not see yet is not in their access log either, and a remembered
/// search whose access changed is counted afresh (its old total would count what is now
/// refused).
#[test]
fn hidden_things_stay_hidden_in_logs_and_totals() {
    let c = setup();
    let mut secret = obs("p1-secret", "p1", "laboratory");
    secret["meta"] = json!({"tag": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication", "code": "UNINFORMED"}]});
    let (st, _) = c.send(Who::DoctorA, "PUT", "Observation/p1-obs0", &{
        let mut o = secret.clone();
        o["id"] = json!("p1-obs0");
        o
    });
    assert_eq!(st, 200);
    let (_, log) = c.get(Who::P1, "Patient/p1/$access-log");
    assert!(!log.to_string().contains("Observation/p1-obs0"), "{log}");
    // Totals of a remembered search after a refusal.
    let (_, first) = c.get(Who::DoctorA, "Observation?_count=1&_total=accurate");
    assert_eq!(first["total"], 3);
    let next = next_link(&first);
    let (st, b) = c.send(
        Who::P1,
        "POST",
        "Consent",
        &consent(json!({"type": "deny"})),
    );
    assert_eq!(st, 201, "{b}");
    let (st, page) = c.get_url(Who::DoctorA, &next);
    assert_eq!(st, 200);
    assert!(entry_ids(&page).is_empty(), "{page}");
    assert_ne!(page["total"], 3, "{page}");
}

/// Consents whose meaning issho does not enforce exactly are refused.
#[test]
fn more_unenforceable_consents_are_refused() {
    let c = setup();
    let mut modifier = consent(json!({"type": "deny"}));
    modifier["modifierExtension"] = json!([{"url": "http://example.org/x", "valueBoolean": true}]);
    let mut optin = consent(json!({"type": "deny"}));
    optin["policyRule"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]});
    let mut mixed = consent(json!({"type": "deny"}));
    mixed["scope"]["coding"].as_array_mut().unwrap().push(
        json!({"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}),
    );
    for (why, body) in [("modifier", modifier), ("mixed scope", mixed)] {
        let (st, b) = c.send(Who::P1, "POST", "Consent", &body);
        assert_eq!(st, 422, "{why}: {b}");
    }
    let mut optout = consent(json!({"type": "deny"}));
    optout["policyRule"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]});
    assert_eq!(c.send(Who::P1, "POST", "Consent", &optout).0, 201);
    // Opt-in is enforced: what the provisions do not permit is refused (here: everything).
    assert_eq!(c.send(Who::P1, "POST", "Consent", &optin).0, 201);
}

/// Second round (F1): whose record a resource is does not depend on the order things are
/// written — within a transaction (a Binary before the DocumentReference it belongs to) and
/// across requests (a Task about an Observation written later is not shared data meanwhile).
#[test]
fn ownership_does_not_depend_on_write_order() {
    let c = setup();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0a000000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Binary", "contentType": "text/plain", "data": "SElWIHBvc2l0aXZl",
            "securityContext": {"reference": "urn:uuid:0a000000-0000-4000-8000-000000000002"}},
         "request": {"method": "POST", "url": "Binary"}},
        {"fullUrl": "urn:uuid:0a000000-0000-4000-8000-000000000002",
         "resource": {"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "Patient/p2"},
            "content": [{"attachment": {"contentType": "text/plain", "url": "urn:uuid:0a000000-0000-4000-8000-000000000001"}}]},
         "request": {"method": "POST", "url": "DocumentReference"}}
    ]});
    let (st, b) = c.send(Who::Admin, "POST", "", &tx);
    assert_eq!(st, 200, "{b}");
    let bin = b["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split("/_history")
        .next()
        .unwrap()
        .to_string();
    for who in [Who::P1, Who::DoctorA, Who::PharmacistA] {
        assert_eq!(c.get(who, &bin).0, 404, "{who:?} {bin}");
        assert!(c.ids(who, "Binary").is_empty(), "{who:?}");
    }
    assert_eq!(c.get(Who::DoctorB, &bin).0, 200, "p2's own doctor");
    // Across requests: the Task is written first, its Observation later.
    c.put(
        &json!({"resourceType": "Task", "id": "early", "status": "requested", "intent": "order",
        "description": "call about the result", "focus": {"reference": "Observation/later-obs"}}),
    );
    c.put(&obs("later-obs", "p2", "laboratory"));
    for who in [Who::P1, Who::DoctorA] {
        assert_eq!(c.get(who, "Task/early").0, 404, "{who:?}");
        assert!(c.ids(who, "Task?_content=result").is_empty(), "{who:?}");
    }
}

/// Second round (F2, F7): a conditional update that creates stores the resource with its id
/// (a Patient made so is its own person), also inside a transaction for restricted callers.
#[test]
fn conditional_updates_that_create_keep_their_id() {
    let c = setup();
    let r = c
        .s
        .req("PUT", "Patient?identifier=urn:x|cu-1")
        .bearer_auth(c.tok(Who::Admin))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "cu-1"}]}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let b: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    let id = b["id"]
        .as_str()
        .expect("the stored body has its id")
        .to_string();
    c.put(
        &json!({"resourceType": "Encounter", "id": "cu-enc", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{id}")},
        "serviceProvider": {"reference": "Organization/org-a"}}),
    );
    let (st, p) = c.get(Who::DoctorA, &format!("Patient/{id}"));
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["id"], id.as_str());
    // A patient's conditional PUT with no match creates, in a transaction as on its own.
    let body = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/p1"}});
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Observation?code:text=nomatch-2"}, "resource": body}]});
    let (st, b) = c.send(Who::P1, "POST", "", &tx);
    assert_eq!(st, 200, "{b}");
}

/// Second round (F3): a person's access log never shows other people's queries.
#[test]
fn the_access_log_shows_no_one_elses_queries() {
    let c = setup();
    c.put(&json!({"resourceType": "Encounter", "id": "p3-enc-a", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p3"}, "serviceProvider": {"reference": "Organization/org-a"}}));
    let (st, _) = c.get(
        Who::DoctorA,
        "Observation?subject=Patient/p1,Patient/p3&_id=p1-obs1",
    );
    assert_eq!(st, 200);
    let (_, log) = c.get(Who::P1, "Patient/p1/$access-log");
    let text = log.to_string();
    assert!(text.contains("Observation/p1-obs1"), "{text}");
    assert!(!text.contains("p3"), "{text}");
    assert!(!text.contains("\"24\""), "no query entity: {text}");
}

/// Second round (F4): with a search-restricted scope, references answer alike for what the
/// token may not read and what does not exist.
#[test]
fn scoped_references_do_not_tell_hidden_from_absent() {
    let c = setup();
    c.put(&json!({"resourceType": "Condition", "id": "p1-cond", "subject": {"reference": "Patient/p1"},
        "code": {"text": "x"}}));
    let refer = |target: &str| {
        let mut o = obs("n", "p1", "vital-signs");
        o.as_object_mut().unwrap().remove("id");
        o["focus"] = json!([{"reference": target}]);
        c.send(Who::P1Vitals, "POST", "Observation", &o).0
    };
    c.put(&obs("p1-lab", "p1", "laboratory"));
    // Hidden by the scope (another category, another type) or absent: the same 400.
    let a = refer("Condition/p1-cond");
    assert_eq!(a, 400);
    assert_eq!(a, refer("Condition/absent-zz"));
    assert_eq!(refer("Observation/p1-lab"), refer("Observation/absent-zz"));
    assert_eq!(refer("Observation/p1-obs0"), 201, "a readable one is fine");
}

/// Second round (F9, F10): a batch GET with `_explain` is the plain request (403 for a
/// clinician); Consents naming policies are refused.
#[test]
fn explain_in_bundles_and_consent_policies() {
    let c = setup();
    let bundle = json!({"resourceType": "Bundle", "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Observation?_explain=true"}}]});
    let (st, b) = c.send(Who::DoctorA, "POST", "", &bundle);
    assert_eq!(st, 200);
    assert!(
        b["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("403"),
        "{b}"
    );
    let mut with_policy = consent(json!({"type": "deny"}));
    with_policy["policy"] = json!([{"uri": "http://example.org/policies/opt-in-only-research"}]);
    assert_eq!(c.send(Who::P1, "POST", "Consent", &with_policy).0, 422);
}

/// Both attack rounds: a person may change only what they wrote themself (and their
/// Consents), never what their care providers recorded — a prescription stays as written.
#[test]
fn patients_do_not_rewrite_what_care_providers_recorded() {
    let c = setup();
    // Recorded by the hospital.
    c.put(
        &json!({"resourceType": "MedicationRequest", "id": "p1-mr", "status": "completed",
        "intent": "order", "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "metformin 500 mg"}}),
    );
    let (st, mut mr) = c.get(Who::P1, "MedicationRequest/p1-mr");
    assert_eq!(st, 200, "the person reads it");
    mr["status"] = json!("active");
    mr["note"] = json!([{"text": "dose x10"}]);
    assert_eq!(
        c.send(Who::P1, "PUT", "MedicationRequest/p1-mr", &mr).0,
        403
    );
    let r =
        c.s.req("PATCH", "MedicationRequest/p1-mr")
            .bearer_auth(c.tok(Who::P1))
            .header("content-type", "application/json-patch+json")
            .body(r#"[{"op":"replace","path":"/status","value":"active"}]"#)
            .send()
            .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        c.send(Who::P1, "DELETE", "MedicationRequest/p1-mr", &Value::Null)
            .0,
        403
    );
    assert_eq!(
        c.get(Who::Admin, "MedicationRequest/p1-mr").1["meta"]["versionId"],
        "1"
    );
    // What the person writes is marked as theirs, and stays theirs to change.
    let (st, mine) = c.send(Who::P1, "POST", "Observation", &{
        let mut o = obs("x", "p1", "vital-signs");
        o.as_object_mut().unwrap().remove("id");
        o
    });
    assert_eq!(st, 201, "{mine}");
    assert!(
        mine["meta"]["tag"]
            .to_string()
            .contains("urn:issho:record-origin"),
        "{mine}"
    );
    let id = mine["id"].as_str().unwrap().to_string();
    let mut changed = mine.clone();
    changed["status"] = json!("amended");
    assert_eq!(
        c.send(Who::P1, "PUT", &format!("Observation/{id}"), &changed)
            .0,
        200
    );
    // Removing the mark would hand the record to nobody: refused.
    let r =
        c.s.req("PATCH", &format!("Observation/{id}"))
            .bearer_auth(c.tok(Who::P1))
            .header("content-type", "application/json-patch+json")
            .body(r#"[{"op":"remove","path":"/meta/tag"}]"#)
            .send()
            .unwrap();
    assert_eq!(r.status(), 403);
    // Their clinicians may still annotate it; the person's mark stays.
    let (st, _) = c.send(Who::DoctorA, "PUT", &format!("Observation/{id}"), &changed);
    assert_eq!(st, 200);
}

/// Second round (F8): whoever could read a deleted resource reads its history too (as a read
/// answers 410 to them); to others it stays unknown.
#[test]
fn the_history_of_a_deleted_resource_stays_readable_to_its_readers() {
    let c = setup();
    c.put(&obs("gone", "p1", "vital-signs"));
    let r =
        c.s.req("DELETE", "Observation/gone")
            .bearer_auth(c.tok(Who::Admin))
            .send()
            .unwrap();
    assert!(r.status().is_success());
    assert_eq!(c.get(Who::DoctorA, "Observation/gone").0, 410);
    let (st, h) = c.get(Who::DoctorA, "Observation/gone/_history");
    assert_eq!(st, 200, "{h}");
    assert_eq!(c.get(Who::DoctorA, "Observation/gone/_history/1").0, 200);
    for path in [
        "Observation/gone",
        "Observation/gone/_history",
        "Observation/gone/_history/1",
    ] {
        assert_eq!(c.get(Who::DoctorB, path).0, 404, "{path}");
    }
}

/// Review of the change: reads in bundles are the requests on their own — a transaction of
/// reads only answers each one, and a denied read in a batch is recorded like a plain one; a
/// refused `$access-log` is recorded too.
#[test]
fn bundle_reads_and_refusals_are_recorded_like_plain_requests() {
    let c = setup();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Observation/p1-obs0"}},
        {"request": {"method": "GET", "url": "Observation/p2-obs0"}}]});
    let (st, b) = c.send(Who::P1, "POST", "", &tx);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["entry"][0]["response"]["status"], "200 OK", "{b}");
    assert!(
        b["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404"),
        "{b}"
    );
    let batch = json!({"resourceType": "Bundle", "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Observation/p1-obs2"}}]});
    assert_eq!(c.send(Who::DoctorB, "POST", "", &batch).0, 200);
    assert_eq!(c.get(Who::DoctorA, "Patient/p1/$access-log").0, 403);
    let (_, log) = c.get(Who::Admin, "$audit?_count=1000");
    let text = log.to_string();
    for who in ["doc-b", "doc-a"] {
        let failed = log["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.to_string().contains(&format!("\"{who}\"")))
            .any(|e| e["resource"]["outcome"] != "0");
        assert!(failed, "{who}: no denial recorded in {text}");
    }
}
