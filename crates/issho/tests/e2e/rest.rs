//! End-to-end tests of the FHIR REST interactions (FHIR R4 http.html) over HTTP.

use crate::common::*;
use serde_json::{Value, json};

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345670", "value": family}],
        "name": [{"family": family, "given": ["太郎"]}],
        "gender": "male",
        "birthDate": "1970-01-01"
    })
}

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn metadata_and_health() {
    let s = Server::start();
    let r = s.get("metadata");
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/fhir+json"));
    let cs = json(r);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), issho_model::r4().resource_types().len());
    let pat = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    assert!(
        pat["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "identifier")
    );
    let h = s
        .client
        .get(s.base.replace("/fhir", "/healthz"))
        .send()
        .unwrap();
    assert_eq!(h.status(), 200);
}

#[test]
fn create_read_vread_update_delete() {
    let s = Server::start();
    let mut p = patient("Yamada");
    p["id"] = json!("client-chosen");
    let r = s.post("Patient", &p);
    assert_eq!(r.status(), 201);
    let loc = header(&r, "location");
    assert!(
        loc.starts_with(&s.url("Patient/")) && loc.ends_with("/_history/1"),
        "{loc}"
    );
    assert_eq!(header(&r, "etag"), "W/\"1\"");
    assert!(!header(&r, "last-modified").is_empty());
    let created = json(r);
    let id = created["id"].as_str().unwrap().to_string();
    assert_ne!(id, "client-chosen", "create ignores the client's id");
    assert_eq!(created["meta"]["versionId"], "1");

    let r = s.get(&format!("Patient/{id}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), "W/\"1\"");
    let read = json(r);
    assert_eq!(read, created);

    // update with the right version
    let mut upd = read.clone();
    upd["gender"] = json!("female");
    let r = s
        .req("PUT", &format!("Patient/{id}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(upd.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), "W/\"2\"");
    // stale If-Match
    let r = s
        .req("PUT", &format!("Patient/{id}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(upd.to_string())
        .send()
        .unwrap();
    let msg = assert_outcome(r, 412);
    assert!(msg.contains("version"), "{msg}");
    // malformed If-Match
    let r = s
        .req("PUT", &format!("Patient/{id}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "banana")
        .body(upd.to_string())
        .send()
        .unwrap();
    assert_outcome(r, 400);

    // vread both versions
    assert_eq!(
        json(s.get(&format!("Patient/{id}/_history/1")))["gender"],
        "male"
    );
    assert_eq!(
        json(s.get(&format!("Patient/{id}/_history/2")))["gender"],
        "female"
    );
    assert_outcome(s.get(&format!("Patient/{id}/_history/9")), 404);

    // delete, then read is 410, old versions remain
    let r = s.req("DELETE", &format!("Patient/{id}")).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_outcome(s.get(&format!("Patient/{id}")), 410);
    assert_eq!(s.get(&format!("Patient/{id}/_history/2")).status(), 200);
    let h = json(s.get(&format!("Patient/{id}/_history")));
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 3);
    assert_eq!(h["entry"][0]["request"]["method"], "DELETE");
    assert!(h["entry"][0].get("resource").is_none());
    assert_eq!(h["entry"][2]["resource"]["meta"]["versionId"], "1");
    // deleting again, or deleting what never existed, is not an error (http.html#delete)
    assert_eq!(
        s.req("DELETE", &format!("Patient/{id}"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        s.req("DELETE", "Patient/never-was")
            .send()
            .unwrap()
            .status(),
        204
    );
    let r = s
        .req("DELETE", "Patient/never-was")
        .header("if-match", "W/\"1\"")
        .send()
        .unwrap();
    assert_outcome(r, 412);
    // update after delete brings it back
    let r = s.put(&format!("Patient/{id}"), &upd);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "etag"), "W/\"4\"");
}

#[test]
fn update_as_create_and_id_rules() {
    let s = Server::start();
    let mut p = patient("Sato");
    p["id"] = json!("sato-1");
    let r = s.put("Patient/sato-1", &p);
    assert_eq!(r.status(), 201);
    assert!(header(&r, "location").ends_with("Patient/sato-1/_history/1"));
    assert_eq!(s.put("Patient/sato-1", &p).status(), 200);
    // id mismatch and missing id
    let msg = assert_outcome(s.put("Patient/other", &p), 400);
    assert!(msg.contains("does not match"), "{msg}");
    let mut no_id = p.clone();
    no_id.as_object_mut().unwrap().remove("id");
    assert_outcome(s.put("Patient/sato-1", &no_id), 400);
    // resourceType mismatch with the URL
    let msg = assert_outcome(s.post("Observation", &p), 400);
    assert!(msg.contains("does not match"), "{msg}");
    // unknown type
    assert_outcome(s.post("Patientx", &p), 404);
    assert_outcome(s.get("Patientx/1"), 404);
}

#[test]
fn conditional_create_update_delete() {
    let s = Server::start();
    let crit = "identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|Suzuki";
    let r = s
        .req("POST", "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", crit)
        .body(patient("Suzuki").to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = json(r)["id"].as_str().unwrap().to_string();
    let r = s
        .req("POST", "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", crit)
        .body(patient("Suzuki").to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "a match is returned, nothing created");
    assert_eq!(json(r)["id"], id.as_str());

    // conditional update: one match → updated in place
    let mut p = patient("Suzuki");
    p["gender"] = json!("female");
    let r = s.put(&format!("Patient?{crit}"), &p);
    assert_eq!(r.status(), 200);
    let body = json(r);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["meta"]["versionId"], "2");
    // no match → created
    let r = s.put(
        "Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|Tanaka",
        &patient("Tanaka"),
    );
    assert_eq!(r.status(), 201);
    // two matches → 412 for create, update and delete
    s.post("Patient", &patient("Suzuki"));
    let r = s
        .req("POST", "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", crit)
        .body(patient("Suzuki").to_string())
        .send()
        .unwrap();
    assert_outcome(r, 412);
    assert_outcome(s.put(&format!("Patient?{crit}"), &p), 412);
    assert_outcome(
        s.req("DELETE", &format!("Patient?{crit}")).send().unwrap(),
        412,
    );
    // conditional delete of one
    let r = s
        .req(
            "DELETE",
            "Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|Tanaka",
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let b = json(s.get("Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|Tanaka"));
    assert_eq!(b["entry"].as_array().map(Vec::len).unwrap_or(0), 0);
}

#[test]
fn patch_json_and_fhirpath() {
    let s = Server::start();
    let id = json(s.post("Patient", &patient("Ito")))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jp = json!([{"op": "replace", "path": "/gender", "value": "female"}, {"op": "add", "path": "/active", "value": true}]);
    let r = s
        .req("PATCH", &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(jp.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = json(r);
    assert_eq!(b["gender"], "female");
    assert_eq!(b["active"], true);
    assert_eq!(b["meta"]["versionId"], "2");
    let fp = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.birthDate"},
        {"name": "value", "valueDate": "1980-02-03"}]}]});
    let r = s
        .req("PATCH", &format!("Patient/{id}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"2\"")
        .body(fp.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r)["birthDate"], "1980-02-03");
    // stale version
    let r = s
        .req("PATCH", &format!("Patient/{id}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"2\"")
        .body(fp.to_string())
        .send()
        .unwrap();
    assert_outcome(r, 412);
    // a patch producing an invalid resource is refused, nothing changes
    let bad = json!([{"op": "add", "path": "/birthDate", "value": "not-a-date"}]);
    let r = s
        .req("PATCH", &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(bad.to_string())
        .send()
        .unwrap();
    assert_outcome(r, 422);
    let failing = json!([{"op": "test", "path": "/gender", "value": "male"}]);
    let r = s
        .req("PATCH", &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(failing.to_string())
        .send()
        .unwrap();
    assert_outcome(r, 422);
    assert_eq!(
        json(s.get(&format!("Patient/{id}")))["meta"]["versionId"],
        "3"
    );
}

#[test]
fn history_levels_since_and_paging() {
    let s = Server::start();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            json(s.post("Patient", &patient(&format!("P{i}"))))["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    s.post("Observation", &obs);
    let all = json(s.get("_history"));
    assert_eq!(all["total"], 6);
    let t = json(s.get("Patient/_history"));
    assert_eq!(t["total"], 5);
    // newest first
    assert_eq!(t["entry"][0]["resource"]["id"], ids[4].as_str());
    // _since: only versions at or after the third patient's lastUpdated
    let third = json(s.get(&format!("Patient/{}", ids[2])));
    let since = third["meta"]["lastUpdated"].as_str().unwrap().to_string();
    let h = json(s.get(&format!(
        "Patient/_history?_since={}",
        since.replace('+', "%2B")
    )));
    assert_eq!(h["total"], 3);
    // paging with _count; a write between pages does not shift the pages
    let p1 = json(s.get("Patient/_history?_count=2"));
    assert_eq!(p1["entry"].as_array().unwrap().len(), 2);
    let next = next_link(&p1);
    s.post("Patient", &patient("Late"));
    let p2 = json(s.client.get(&next).send().unwrap());
    assert_eq!(p2["entry"][0]["resource"]["id"], ids[2].as_str());
    // _at: the state at the first patient's creation time holds one patient version
    let first = json(s.get(&format!("Patient/{}", ids[0])));
    let at = first["meta"]["lastUpdated"].as_str().unwrap().to_string();
    let h = json(s.get(&format!("Patient/_history?_at={at}")));
    assert_eq!(h["total"], 1);
    assert_outcome(s.get("Patient/_history?_since=yesterday"), 400);
    assert_outcome(s.get("Patient/nope/_history"), 404);
}

#[test]
fn conditional_read_and_prefer() {
    let s = Server::start();
    let r = s
        .req("POST", "Patient")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient("Kato").to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = header(&r, "location");
    assert!(r.text().unwrap().is_empty());
    let id = loc.split('/').rev().nth(2).unwrap().to_string();
    let r = s
        .req("POST", "Patient")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(patient("Kato").to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(json(r)["resourceType"], "OperationOutcome");
    let r = s
        .req("GET", &format!("Patient/{id}"))
        .header("if-none-match", "W/\"1\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = s
        .req("GET", &format!("Patient/{id}"))
        .header("if-none-match", "W/\"7\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let lm = header(&s.get(&format!("Patient/{id}")), "last-modified");
    let r = s
        .req("GET", &format!("Patient/{id}"))
        .header("if-modified-since", lm.as_str())
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = s
        .req("GET", &format!("Patient/{id}"))
        .header("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn formats_summary_elements_pretty_compression() {
    let s = Server::start();
    let mut p = patient("Kobayashi");
    p["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">小林</div>"});
    p["photo"] = json!([{"contentType": "image/png", "data": "iVBORw0KGgo="}]);
    let id = json(s.post("Patient", &p))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = json(s.get(&format!("Patient/{id}?_summary=true")));
    assert!(r.get("photo").is_none() && r.get("name").is_some());
    assert!(
        r["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "SUBSETTED")
    );
    let r = json(s.get(&format!("Patient/{id}?_elements=gender")));
    assert!(r.get("name").is_none() && r["gender"] == "male");
    let r = json(s.get(&format!("Patient/{id}?_summary=text")));
    assert!(r.get("text").is_some() && r.get("gender").is_none());
    let r = json(s.get(&format!("Patient/{id}?_summary=data")));
    assert!(r.get("text").is_none() && r.get("gender").is_some());
    assert_outcome(s.get(&format!("Patient/{id}?_summary=bogus")), 400);
    let text = s.get(&format!("Patient/{id}?_pretty=true")).text().unwrap();
    assert!(text.contains("\n  \"resourceType\""), "{text}");
    // formats
    assert_eq!(s.get(&format!("Patient/{id}?_format=json")).status(), 200);
    assert_outcome(s.get(&format!("Patient/{id}?_format=turtle")), 406);
    assert_outcome(
        s.req("GET", &format!("Patient/{id}"))
            .header("accept", "image/png")
            .send()
            .unwrap(),
        406,
    );
    assert_eq!(
        s.req("GET", &format!("Patient/{id}"))
            .header("accept", "application/json")
            .send()
            .unwrap()
            .status(),
        200
    );
    // compression
    let r = s
        .req("GET", "metadata")
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(header(&r, "content-encoding"), "gzip");
    let r = s
        .req("GET", "metadata")
        .header("accept-encoding", "br")
        .send()
        .unwrap();
    assert_eq!(header(&r, "content-encoding"), "br");
}

#[test]
fn decimals_keep_their_text() {
    let s = Server::start();
    let obs = r#"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c"},"valueQuantity":{"value":6.50,"unit":"%"},"referenceRange":[{"low":{"value":1234567890.1234500}}]}"#;
    let r = s
        .req("POST", "Observation")
        .header("content-type", "application/fhir+json")
        .body(obs)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = json(r)["id"].as_str().unwrap().to_string();
    let text = s.get(&format!("Observation/{id}")).text().unwrap();
    assert!(text.contains("\"value\":6.50"), "{text}");
    assert!(text.contains("1234567890.1234500"), "{text}");
}

#[test]
fn bad_input_is_refused_with_operation_outcome_and_nothing_stored() {
    let s = Server::start_with(|c| c.max_body = 64 * 1024);
    let post_raw = |ct: &str, body: String| {
        s.req("POST", "Patient")
            .header("content-type", ct)
            .body(body)
            .send()
            .unwrap()
    };
    let msg = assert_outcome(
        post_raw(
            "application/fhir+json",
            "{\"resourceType\": \"Patient\",".into(),
        ),
        400,
    );
    assert!(msg.contains("not valid JSON"), "{msg}");
    assert_outcome(post_raw("text/plain", patient("X").to_string()), 415);
    // XML that is not FHIR (no namespace), and XML nested absurdly deep
    let r = post_raw("application/fhir+xml", "<Patient/>".into());
    assert_eq!(r.status(), 400);

    assert_outcome(
        s.req("POST", "Patient")
            .body(patient("X").to_string())
            .send()
            .unwrap(),
        415,
    );
    assert_outcome(post_raw("application/fhir+json", String::new()), 400);
    // over the size limit
    let mut big = patient("Big");
    big["name"][0]["text"] = json!("x".repeat(70 * 1024));
    assert_outcome(post_raw("application/fhir+json", big.to_string()), 413);
    // pathological nesting
    let deep = format!("{}{}", "{\"extension\":[".repeat(400), "]}".repeat(400));
    assert_outcome(post_raw("application/fhir+json", deep), 400);
    // not an object, no resourceType, unknown resourceType
    assert_outcome(post_raw("application/fhir+json", "[1,2]".into()), 400);
    assert_outcome(
        post_raw("application/fhir+json", "{\"name\":[]}".into()),
        400,
    );
    assert_outcome(s.post("Foo", &json!({"resourceType": "Foo"})), 404);
    // validation: unknown element, wrong type, bad date, bad code — each named with its location
    let mut bad = patient("Bad");
    bad["favouriteColour"] = json!("blue");
    bad["birthDate"] = json!("1970-13-01");
    bad["gender"] = json!("robot");
    let r = s.post("Patient", &bad);
    assert_eq!(r.status(), 400);
    let oo = json(r);
    // each issue names its place: the FHIRPath location, plus the element's name for unknown ones
    let exprs: Vec<String> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["expression"][0].as_str().unwrap_or(""),
                i["diagnostics"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in ["favouriteColour", "birthDate", "gender"] {
        assert!(
            exprs.iter().any(|e| e.contains(want)),
            "no issue located at {want}: {oo}"
        );
    }
    // nothing was stored by any of the above
    assert_eq!(json(s.get("_history"))["total"], 0);
}

#[test]
fn validate_operation() {
    let s = Server::start();
    let r = s.post("Patient/$validate", &patient("Ok"));
    assert_eq!(r.status(), 200);
    let oo = json(r);
    assert!(
        oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["severity"] != "error"),
        "{oo}"
    );
    let mut bad = patient("Bad");
    bad["birthDate"] = json!(19700101);
    let oo = json(s.post("Patient/$validate", &bad));
    assert!(
        oo["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "error"),
        "{oo}"
    );
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient("P")}, {"name": "mode", "valueCode": "create"}]});
    assert_eq!(s.post("Patient/$validate", &params).status(), 200);
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "sideways"}]});
    assert_outcome(s.post("Patient/$validate", &params), 400);
    // nothing is stored by $validate
    assert_eq!(json(s.get("_history"))["total"], 0);
}

/// The R4 base invariants hold on every write (400 naming the rule, nothing stored) and
/// `$validate` reports their warnings too.
#[test]
fn base_invariants_are_enforced_on_writes() {
    let s = Server::start();
    let obs = |period: Value| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "体重"},
               "valueQuantity": {"value": 60, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
               "effectivePeriod": period})
    };
    let bad = obs(json!({"start": "2024-02-01", "end": "2024-01-01"}));
    let r = s.post("Observation", &bad);
    assert_eq!(r.status(), 400);
    let oo = json(r);
    assert!(oo.to_string().contains("per-1 failed"), "{oo}");
    assert_eq!(
        oo["issue"][0]["expression"][0],
        "Observation.effectivePeriod"
    );
    // Update and transaction entries too.
    let good = obs(json!({"start": "2024-01-01", "end": "2024-02-01"}));
    let created = json(s.post("Observation", &good));
    let id = created["id"].as_str().unwrap().to_string();
    let mut worse = created.clone();
    worse["valueQuantity"] = json!({"value": 60, "code": "kg"});
    let r = s.put(&format!("Observation/{id}"), &worse);
    assert_eq!(r.status(), 400);
    assert!(json(r).to_string().contains("qty-3 failed"));
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "Observation"}},
        {"resource": bad, "request": {"method": "POST", "url": "Observation"}}]});
    let r = s.post("", &tx);
    assert_eq!(r.status(), 400);
    assert!(json(r).to_string().contains("per-1 failed"));
    // An unreferenced contained resource (dom-3).
    let mr = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": "ロキソプロフェン"},
        "subject": {"reference": "Patient/nobody"},
        "contained": [{"resourceType": "Medication", "id": "m1"}]});
    let r = s.post("MedicationRequest/$validate", &mr);
    assert!(json(r).to_string().contains("dom-3 failed"));
    // $validate: warnings (dom-6, no narrative) beside no errors.
    let oo = json(s.post(
        "Observation/$validate",
        &obs(json!({"start": "2024-01-01"})),
    ));
    let issues = oo["issue"].as_array().unwrap();
    assert!(issues.iter().all(|i| i["severity"] != "error"), "{oo}");
    assert!(oo.to_string().contains("dom-6 failed"), "{oo}");
    // Only the good Observation was stored.
    assert_eq!(json(s.get("Observation"))["total"], 1);
}

#[test]
fn conditions_without_criteria_are_refused() {
    let s = Server::start();
    let id = json(s.post("Patient", &patient("Only")))["id"]
        .as_str()
        .unwrap()
        .to_string();
    for q in ["identifier=", "_count=10", "_format=json", "_sort=family"] {
        assert_outcome(
            s.req("DELETE", &format!("Patient?{q}")).send().unwrap(),
            400,
        );
        let mut p = patient("Other");
        p["gender"] = json!("female");
        assert_outcome(s.put(&format!("Patient?{q}"), &p), 400);
    }
    let r = s
        .req("POST", "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "identifier=")
        .body(patient("X").to_string())
        .send()
        .unwrap();
    assert_outcome(r, 400);
    let kept = json(s.get(&format!("Patient/{id}")));
    assert_eq!(kept["meta"]["versionId"], "1");
    assert_eq!(kept["name"][0]["family"], "Only");
}

#[test]
fn history_at_covers_the_whole_period() {
    let s = Server::start();
    let mut p = patient("At");
    p["id"] = json!("at1");
    s.put("Patient/at1", &p);
    p["gender"] = json!("female");
    s.put("Patient/at1", &p);
    p["gender"] = json!("other");
    s.put("Patient/at1", &p);
    // all three versions were current at some point during this year
    let year = &json(s.get("Patient/at1"))["meta"]["lastUpdated"]
        .as_str()
        .unwrap()[..4]
        .to_string();
    let h = json(s.get(&format!("Patient/at1/_history?_at={year}")));
    assert_eq!(h["total"], 3, "{h}");
    // and only the last one during the instant it was written
    let last = json(s.get("Patient/at1"))["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    let h = json(s.get(&format!("Patient/at1/_history?_at={last}")));
    assert_eq!(h["total"], 1);
    assert_eq!(h["entry"][0]["resource"]["gender"], "other");
}

#[test]
fn hostile_paths_and_parameters() {
    let s = Server::start();
    let mut p = patient("H");
    p["id"] = json!("h");
    s.put("Patient/h", &p);
    assert_outcome(s.get("fhirPatient/h"), 404);
    assert_eq!(
        s.client
            .get(s.base.replace("/fhir", "/fhir/fhir/Patient/h"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_outcome(
        s.get("Patient/h/_history?_offset=18446744073709551615"),
        400,
    );
    assert_outcome(s.get("Patient?_offset=18446744073709551615"), 400);
    // content negotiation is case-insensitive, and an unencoded '+' in _format still means '+'
    let r = s
        .client
        .get(format!(
            "{}/Patient/h?_format=application/fhir+json",
            s.base
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.req("GET", "Patient/h")
            .header("accept", "Application/FHIR+JSON")
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_outcome(
        s.req("GET", "Patient/h")
            .header("accept", "text/plain")
            .send()
            .unwrap(),
        406,
    );
}

#[test]
fn search_paging_is_stable_while_data_changes() {
    let s = Server::start();
    for i in 0..7 {
        s.post("Patient", &patient(&format!("Page{i}")));
    }
    let p1 = json(s.get("Patient?_count=3&_sort=family"));
    assert_eq!(p1["total"], 7);
    let fam = |b: &Value| {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .map(|e| {
                e["resource"]["name"][0]["family"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(fam(&p1), ["Page0", "Page1", "Page2"]);
    let next = next_link(&p1);
    // a new resource that sorts first would shift offset paging; the remembered result does not move
    s.post("Patient", &patient("Aaa"));
    let p2 = json(s.client.get(&next).send().unwrap());
    assert_eq!(fam(&p2), ["Page3", "Page4", "Page5"]);
    let next = next_link(&p2);
    let p3 = json(s.client.get(&next).send().unwrap());
    assert_eq!(fam(&p3), ["Page6"]);
    assert!(
        !p3["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next")
    );
    assert!(
        p3["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "previous")
    );
    // a fresh search sees the new one
    assert_eq!(json(s.get("Patient?_count=3&_sort=family"))["total"], 8);
    // _summary=count: only the total
    let c = json(s.get("Patient?_summary=count"));
    assert_eq!(c["total"], 8);
    assert!(c["entry"].as_array().map(Vec::is_empty).unwrap_or(true));
}

/// A large result in `rid` order is read a window at a time over a snapshot: pages neither
/// repeat nor skip resources while others are created, updated and deleted, and the total is
/// reported without `_total` only when it is known without counting.
#[test]
fn large_results_page_through_a_snapshot() {
    let s = Server::start();
    let n = 2_500;
    for chunk in (0..n).collect::<Vec<usize>>().chunks(500) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"resource": {"resourceType": "Patient", "id": format!("s{i}"), "gender": "female"},
                           "request": {"method": "PUT", "url": format!("Patient/s{i}")}}))
            .collect();
        let r = s.post(
            "",
            &json!({"resourceType": "Bundle", "type": "batch", "entry": entries}),
        );
        assert_eq!(r.status(), 200);
    }
    let first = json(s.get("Patient?gender=female&_count=400"));
    // More than the first window matched: no total unless asked for.
    assert!(first.get("total").is_none(), "{}", first["total"]);
    let counted = json(s.get("Patient?gender=female&_count=400&_total=accurate"));
    assert_eq!(counted["total"], n);
    let ids = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let next = |b: &Value| -> Option<String> {
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string())
    };
    let mut seen: Vec<String> = ids(&first);
    let mut page = first;
    let mut round = 0;
    while let Some(url) = next(&page) {
        // Meanwhile: new matching resources, an update and a deletion further on.
        round += 1;
        let r = s.put(
            &format!("Patient/new{round}"),
            &json!({"resourceType": "Patient", "id": format!("new{round}"), "gender": "female"}),
        );
        assert_eq!(r.status(), 201);
        if round == 1 {
            let r = s.put(
                "Patient/s2400",
                &json!({"resourceType": "Patient", "id": "s2400", "gender": "female", "active": true}),
            );
            assert_eq!(r.status(), 200);
            assert!(
                s.req("DELETE", "Patient/s2450")
                    .send()
                    .unwrap()
                    .status()
                    .is_success()
            );
        }
        page = json(s.client.get(&url).send().unwrap());
        seen.extend(ids(&page));
    }
    let mut want: Vec<String> = (0..n)
        .filter(|&i| i != 2450)
        .map(|i| format!("s{i}"))
        .collect();
    let mut got = seen.clone();
    got.sort();
    want.sort();
    assert_eq!(got.len(), seen.len(), "a resource was repeated");
    assert_eq!(got, want);
    // A fresh search sees the new ones.
    let c = json(s.get("Patient?gender=female&_summary=count"));
    assert_eq!(c["total"], n - 1 + round);
}

#[test]
fn xml_in_and_out() {
    let s = Server::start();
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <identifier><system value="urn:oid:1.2.392.100495.20.3.51.11312345670"/><value value="X1"/></identifier>
  <name><family value="山田"/><given value="太郎"/></name>
  <gender value="male"/>
  <birthDate value="1970-01-01"/>
</Patient>"#;
    let r = s
        .req("POST", "Patient")
        .header("content-type", "application/fhir+xml")
        .header("accept", "application/fhir+xml")
        .body(xml)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(header(&r, "content-type").starts_with("application/fhir+xml"));
    let loc = header(&r, "location");
    let body = r.text().unwrap();
    assert!(body.contains("<family value=\"山田\"/>"), "{body}");
    assert!(body.contains("<versionId value=\"1\"/>"), "{body}");
    // the same resource as JSON
    let id = loc.split('/').rev().nth(2).unwrap();
    let j = json(s.get(&format!("Patient/{id}")));
    assert_eq!(j["name"][0]["given"][0], "太郎");
    assert_eq!(j["birthDate"], "1970-01-01");
    // _format=xml on a search Bundle and on an error
    let b = s.get("Patient?_format=xml").text().unwrap();
    assert!(
        b.contains("<Bundle xmlns=\"http://hl7.org/fhir\">")
            && b.contains("<type value=\"searchset\"/>"),
        "{b}"
    );
    let r = s.get("Patient/nope?_format=xml");
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("<OperationOutcome"));
    let cs = json(s.get("metadata"));
    assert!(
        cs["format"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "application/fhir+xml")
    );
}

#[test]
fn deeply_nested_xml_is_refused_and_the_server_lives() {
    let s = Server::start();
    for n in [1_000, 50_000] {
        let xml = format!(
            "<Patient xmlns=\"http://hl7.org/fhir\">{}{}</Patient>",
            "<extension url=\"http://x\">".repeat(n),
            "</extension>".repeat(n)
        );
        let r = s
            .req("POST", "Patient")
            .header("content-type", "application/fhir+xml")
            .body(xml)
            .send()
            .unwrap();
        let msg = assert_outcome(r, 400);
        assert!(msg.contains("nested"), "{msg}");
    }
    assert_eq!(s.get("metadata").status(), 200);
}

#[test]
fn pathological_fhirpath_patch_is_refused_and_the_server_lives() {
    let s = Server::start();
    let id = json(s.post("Patient", &patient("Deep")))["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("{}Patient{}", "(".repeat(50_000), ")".repeat(50_000)),
        format!("Patient{}", ".name".repeat(50_000)),
    ] {
        let fp = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": path}]}]});
        let r = s
            .req("PATCH", &format!("Patient/{id}"))
            .header("content-type", "application/fhir+json")
            .body(fp.to_string())
            .send()
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert_eq!(
        json(s.get(&format!("Patient/{id}")))["meta"]["versionId"],
        "1"
    );
}

/// Paging and self links keep parameter names readable: unreserved characters and the
/// modifier separator are not percent-encoded; values are.
#[test]
fn links_encode_only_what_they_must() {
    let s = Server::start();
    let b = json(s.get("Patient?_summary=count&name:exact=%E5%B1%B1%E7%94%B0&gender:not=male"));
    let link = b["link"][0]["url"].as_str().unwrap().to_string();
    assert!(link.contains("_summary=count"), "{link}");
    assert!(link.contains("name:exact=%E5%B1%B1%E7%94%B0"), "{link}");
    assert!(link.contains("gender:not=male"), "{link}");
    // The link works as given.
    assert_eq!(s.client.get(&link).send().unwrap().status(), 200);
}
