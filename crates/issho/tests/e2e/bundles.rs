//! Batch and transaction Bundles over HTTP (FHIR R4 http.html#transaction).

use crate::common::*;
use serde_json::{Value, json};

fn tx(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn post_entry(full_url: &str, resource: Value) -> Value {
    let rt = resource["resourceType"].as_str().unwrap().to_string();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rt}})
}

#[test]
fn transaction_resolves_urn_uuid_and_conditional_references() {
    let s = Server::start();
    // a practitioner to reference conditionally
    let pr = json!({"resourceType": "Practitioner", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.41", "value": "D001"}], "name": [{"family": "医師"}]});
    assert_eq!(s.post("Practitioner", &pr).status(), 201);
    let pat_url = "urn:uuid:5c7b2a8e-3d4f-4e6a-9b1c-2d3e4f5a6b7c";
    let bundle = tx(vec![
        post_entry(
            "urn:uuid:11111111-2222-4333-8444-555555555555",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "体重"},
                   "subject": {"reference": pat_url},
                   "performer": [{"reference": "Practitioner?identifier=urn:oid:1.2.392.100495.20.3.41|D001"}],
                   "valueQuantity": {"value": 62.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}),
        ),
        post_entry(
            pat_url,
            json!({"resourceType": "Patient", "name": [{"family": "山田"}]}),
        ),
    ]);
    let r = s.post("", &bundle);
    assert_eq!(r.status(), 200);
    let resp = json(r);
    assert_eq!(resp["type"], "transaction-response");
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(e["response"]["status"], "201 Created");
        assert_eq!(e["response"]["etag"], "W/\"1\"");
    }
    let obs_loc = entries[0]["response"]["location"].as_str().unwrap();
    let pat_loc = entries[1]["response"]["location"].as_str().unwrap();
    let pat_ref = pat_loc.split("/_history").next().unwrap();
    let obs = json(s.get(obs_loc.split("/_history").next().unwrap()));
    assert_eq!(obs["subject"]["reference"], pat_ref);
    assert!(
        obs["performer"][0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Practitioner/")
    );
    assert_eq!(obs["valueQuantity"]["value"].to_string(), "62.5");
}

#[test]
fn transaction_is_atomic() {
    let s = Server::start();
    let bundle = tx(vec![
        post_entry(
            "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001",
            json!({"resourceType": "Patient", "name": [{"family": "A"}]}),
        ),
        post_entry(
            "urn:uuid:aaaaaaaa-0000-4000-8000-000000000002",
            json!({"resourceType": "Patient", "birthDate": "not a date"}),
        ),
    ]);
    let msg = assert_outcome(s.post("", &bundle), 400);
    assert!(msg.contains("entry 1"), "{msg}");
    assert_eq!(json(s.get("_history"))["total"], 0);
    // a failure found while writing (stale ifMatch) also rolls everything back
    let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "B"}]});
    assert_eq!(s.put("Patient/p1", &p).status(), 201);
    let bundle = tx(vec![
        post_entry(
            "urn:uuid:aaaaaaaa-0000-4000-8000-000000000003",
            json!({"resourceType": "Patient", "name": [{"family": "C"}]}),
        ),
        json!({"resource": p, "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": "W/\"9\""}}),
    ]);
    assert_outcome(s.post("", &bundle), 412);
    assert_eq!(json(s.get("_history"))["total"], 1);
    // a conditional reference that matches nothing fails the transaction
    let bundle = tx(vec![post_entry(
        "urn:uuid:aaaaaaaa-0000-4000-8000-000000000004",
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient?identifier=none|none"}}),
    )]);
    assert_outcome(s.post("", &bundle), 404);
    assert_eq!(json(s.get("_history"))["total"], 1);
}

#[test]
fn transaction_order_conditional_create_and_get() {
    let s = Server::start();
    let p = json!({"resourceType": "Patient", "id": "old", "name": [{"family": "Old"}]});
    s.put("Patient/old", &p);
    let ident = json!([{"system": "http://example.jp/ids", "value": "X1"}]);
    let bundle = tx(vec![
        json!({"request": {"method": "GET", "url": "Patient/old"}}),
        json!({"fullUrl": "urn:uuid:bbbbbbbb-0000-4000-8000-000000000001",
               "resource": {"resourceType": "Patient", "identifier": ident},
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://example.jp/ids|X1"}}),
        json!({"request": {"method": "DELETE", "url": "Patient/old"}}),
    ]);
    let resp = json(s.post("", &bundle));
    let e = resp["entry"].as_array().unwrap();
    // DELETE ran before GET: the GET sees the deletion
    assert_eq!(e[2]["response"]["status"], "204 No Content");
    assert!(
        e[0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("410"),
        "{}",
        e[0]
    );
    assert_eq!(e[1]["response"]["status"], "201 Created");
    // the same conditional create again matches the existing one
    let bundle = tx(vec![
        json!({"fullUrl": "urn:uuid:bbbbbbbb-0000-4000-8000-000000000002",
        "resource": {"resourceType": "Patient", "identifier": ident},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://example.jp/ids|X1"}}),
    ]);
    let resp = json(s.post("", &bundle));
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK");
}

#[test]
fn transaction_with_a_gap_fails_as_a_whole_but_batch_entries_are_independent() {
    let s = Server::start();
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Ok"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "robot"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
    ]});
    let resp = json(s.post("", &bundle));
    assert_eq!(resp["type"], "batch-response");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert!(
        e[1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("400")
    );
    assert_eq!(
        e[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert!(
        e[2]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404")
    );
    assert_eq!(json(s.get("_history"))["total"], 1);
    // bad Bundle shapes
    assert_outcome(
        s.post("", &json!({"resourceType": "Bundle", "type": "collection"})),
        400,
    );
    assert_outcome(s.post("", &json!({"resourceType": "Patient"})), 400);
    assert_outcome(s.post("", &json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]})), 400);
}

#[test]
fn large_transaction() {
    let s = Server::start();
    let mut entries = Vec::new();
    for i in 0..3000 {
        let pat = format!("urn:uuid:00000000-0000-4000-8000-{i:012}");
        entries.push(post_entry(
            &pat,
            json!({"resourceType": "Patient", "name": [{"family": format!("F{i}")}]}),
        ));
        if i % 3 == 0 {
            entries.push(post_entry(
                &format!("urn:uuid:10000000-0000-4000-8000-{i:012}"),
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"}, "subject": {"reference": pat}}),
            ));
        }
    }
    let n = entries.len();
    let r = s.post("", &tx(entries));
    assert_eq!(r.status(), 200);
    assert_eq!(json(r)["entry"].as_array().unwrap().len(), n);
    assert_eq!(json(s.get("_history?_count=1"))["total"], n as u64);
}

#[test]
fn synthea_patient_bundle_loads_as_is() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIPPED synthea_patient_bundle_loads_as_is: ../shared is absent");
        return;
    };
    let s = Server::start();
    let dir = shared.join("synthea/bulk-data-server-100");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for prefix in ["hospitalInformation", "practitionerInformation"] {
        for f in files
            .iter()
            .filter(|f| f.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        {
            let b: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            assert_eq!(s.post("", &b).status(), 200, "{}", f.display());
        }
    }
    let patient_file = files
        .iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Abram_")
        })
        .unwrap();
    let b: Value = serde_json::from_slice(&std::fs::read(patient_file).unwrap()).unwrap();
    let n = b["entry"].as_array().unwrap().len();
    let r = s.post("", &b);
    assert_eq!(r.status(), 200);
    let resp = json(r);
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), n);
    assert!(
        entries
            .iter()
            .all(|e| e["response"]["status"] == "201 Created")
    );
    // references were rewritten: an Encounter's subject points at the stored Patient
    let pat_loc = entries
        .iter()
        .map(|e| e["response"]["location"].as_str().unwrap())
        .find(|l| l.starts_with("Patient/"))
        .unwrap();
    let pat_ref = pat_loc.split("/_history").next().unwrap().to_string();
    let enc_loc = entries
        .iter()
        .map(|e| e["response"]["location"].as_str().unwrap())
        .find(|l| l.starts_with("Encounter/"))
        .unwrap();
    let enc = json(s.get(enc_loc.split("/_history").next().unwrap()));
    assert_eq!(enc["subject"]["reference"], pat_ref.as_str());
    assert!(
        enc["serviceProvider"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Organization/"),
        "{}",
        enc["serviceProvider"]
    );
    eprintln!(
        "synthea: {} entries of {} created",
        n,
        patient_file.display()
    );
}

#[test]
fn transaction_identity_rules() {
    let s = Server::start();
    let p = json!({"resourceType": "Patient", "id": "x", "identifier": [{"system": "urn:s", "value": "A"}]});
    assert_eq!(s.put("Patient/x", &p).status(), 201);
    // the same resource twice in one transaction
    let bundle = tx(vec![
        json!({"request": {"method": "DELETE", "url": "Patient/x"}}),
        json!({"resource": p, "request": {"method": "PUT", "url": "Patient/x"}}),
    ]);
    let msg = assert_outcome(s.post("", &bundle), 400);
    assert!(msg.contains("Patient/x"), "{msg}");
    // conditional PUT whose match is not the body's id
    let mut other = p.clone();
    other["id"] = json!("other");
    let bundle = tx(vec![
        json!({"resource": other, "request": {"method": "PUT", "url": "Patient?identifier=urn:s|A"}}),
    ]);
    assert_outcome(s.post("", &bundle), 400);
    assert_eq!(json(s.get("Patient/x"))["meta"]["versionId"], "1");
    // a conditional DELETE resolving to the same resource as a PUT
    let bundle = tx(vec![
        json!({"request": {"method": "DELETE", "url": "Patient?identifier=urn:s|A"}}),
        json!({"resource": p, "request": {"method": "PUT", "url": "Patient/x"}}),
    ]);
    assert_outcome(s.post("", &bundle), 400);
    // urn:uuid values that are not references are left alone
    let doc_id = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0";
    let bundle = tx(vec![
        json!({"fullUrl": doc_id, "resource": {"resourceType": "Patient",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": doc_id}]}, "request": {"method": "POST", "url": "Patient"}}),
    ]);
    let resp = json(s.post("", &bundle));
    let loc = resp["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split("/_history")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(json(s.get(&loc))["identifier"][0]["value"], doc_id);
}

/// Regression (issue 9, item 12): a conditional reference to a resource that a conditional
/// create earlier in the same transaction makes resolves to it (same criteria, any order of
/// the parameters); a second run matches the stored one.
#[test]
fn conditional_reference_to_a_conditional_create_in_the_same_transaction() {
    let s = Server::start();
    let bundle = || {
        tx(vec![
            json!({"resource": {"resourceType": "Patient",
                    "identifier": [{"system": "http://example.jp/ids", "value": "C1"}], "gender": "female"},
                   "request": {"method": "POST", "url": "Patient",
                               "ifNoneExist": "identifier=http://example.jp/ids|C1&gender=female"}}),
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "体重"},
                    "subject": {"reference": "Patient?gender=female&identifier=http://example.jp/ids|C1"}},
                   "request": {"method": "POST", "url": "Observation"}}),
        ])
    };
    let r = s.post("", &bundle());
    assert_eq!(r.status().as_u16(), 200);
    let resp = json(r);
    let created = resp["entry"][0]["response"]["location"].as_str().unwrap();
    let id = created.split('/').nth(1).unwrap().to_string();
    let obs = resp["entry"][1]["response"]["location"].as_str().unwrap();
    let o = json(s.get(obs.split("/_history").next().unwrap()));
    assert_eq!(o["subject"]["reference"], format!("Patient/{id}"));
    // Again: the conditional create matches, the reference finds the stored Patient.
    let resp = json(s.post("", &bundle()));
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK");
    let obs = resp["entry"][1]["response"]["location"].as_str().unwrap();
    let o = json(s.get(obs.split("/_history").next().unwrap()));
    assert_eq!(o["subject"]["reference"], format!("Patient/{id}"));
}
