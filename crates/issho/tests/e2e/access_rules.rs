//! Access rules over HTTP beyond the matrix (see `access.rs` for the principals and the
//! data): writes within reach, tokens and paging links, the audit trail and access log,
//! consent, JP-CLINS tags and break-the-glass, care relationships.

use crate::access::*;
use crate::common::*;
use issho_access::Role;
use issho_auth::User;
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[test]
fn writes_stay_within_reach() {
    let c = setup();
    let obs = |p: &str, ident: &str| {
        json!({"resourceType": "Observation", "status": "final",
            "identifier": [{"system": "urn:test", "value": ident}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": format!("Patient/{p}")}})
    };
    let refused = |st: u16| st == 400 || st == 403;
    let count = |ident: &str| {
        c.get(
            Who::Admin,
            &format!("Observation?identifier=urn:test|{ident}&_summary=count"),
        )
        .1["total"]
            .as_u64()
            .unwrap()
    };
    // A patient writes to their own record only.
    let (st, b) = c.send(Who::Patient1, "POST", "Observation", &obs("p1", "mine"));
    assert_eq!(st, 201, "{b}");
    let mine = b["id"].as_str().unwrap().to_string();
    let (st, b) = c.send(Who::Patient1, "POST", "Observation", &obs("p2", "theirs"));
    assert!(refused(st), "{b}");
    assert_eq!(count("theirs"), 0, "nothing written");
    // Restricted callers create with POST: an id of their choosing would tell a hidden
    // resource from an absent one, so it is "not known" like a hidden one.
    let mut with_id = obs("p1", "chosen");
    with_id["id"] = json!("chosen");
    assert_eq!(
        c.send(Who::Patient1, "PUT", "Observation/chosen", &with_id)
            .0,
        404
    );
    // Moving one's own resource into another record is refused, and rolled back.
    let mut moved = obs("p2", "mine");
    moved["id"] = json!(mine);
    let (st, _) = c.send(Who::Patient1, "PUT", &format!("Observation/{mine}"), &moved);
    assert!(refused(st));
    assert_eq!(
        c.get(Who::Admin, &format!("Observation/{mine}")).1["subject"]["reference"],
        "Patient/p1"
    );
    // Another patient's resource cannot be overwritten, patched or deleted: it is unknown.
    let mut over = obs("p1", "over");
    over["id"] = json!("p2-laboratory");
    let (st, _) = c.send(Who::Patient1, "PUT", "Observation/p2-laboratory", &over);
    assert_eq!(st, 404);
    let (st, _) = c.send(
        Who::Patient1,
        "DELETE",
        "Observation/p2-laboratory",
        &Value::Null,
    );
    assert_eq!(st, 404);
    // … exactly as for one that does not exist.
    assert_eq!(
        c.send(Who::Patient1, "DELETE", "Observation/no-such", &Value::Null)
            .0,
        404
    );
    let patch = json!([{"op": "replace", "path": "/status", "value": "cancelled"}]);
    let r =
        c.s.req("PATCH", "Observation/p2-laboratory")
            .bearer_auth(c.tok(Who::Patient1))
            .header("content-type", "application/json-patch+json")
            .body(patch.to_string())
            .send()
            .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        c.get(Who::Admin, "Observation/p2-laboratory").1["status"],
        "final"
    );
    // Shared data is not a patient's (nor a clinician's) to change.
    for who in [Who::Patient1, Who::DoctorA] {
        let (st, _) = c.send(
            who,
            "PUT",
            "Practitioner/pr1",
            &json!({"resourceType": "Practitioner", "id": "pr1"}),
        );
        assert_eq!(st, 403, "{who:?}");
    }
    // Conditional interactions never match what the caller cannot see.
    let r =
        c.s.req("POST", "Observation")
            .bearer_auth(c.tok(Who::Patient1))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", "_id=p2-laboratory")
            .body(obs("p1", "x").to_string())
            .send()
            .unwrap();
    assert_eq!(
        r.status(),
        201,
        "created, not matched to another's resource"
    );
    let r =
        c.s.req("DELETE", "Observation?_id=p2-laboratory")
            .bearer_auth(c.tok(Who::Patient1))
            .send()
            .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        c.get(Who::Admin, "Observation/p2-laboratory").0,
        200,
        "not deleted"
    );
    // Transactions: an entry outside reach fails the whole transaction.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": obs("p1", "t1"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": obs("p2", "t2"), "request": {"method": "POST", "url": "Observation"}},
    ]});
    let (st, _) = c.send(Who::Patient1, "POST", "", &tx);
    assert!(refused(st));
    assert_eq!(count("t1"), 0, "all or nothing");
    // Read-only scopes cannot write at all.
    let (st, _) = c.send(Who::DoctorB, "POST", "Observation", &obs("p2", "db"));
    assert_eq!(st, 403);
    // A doctor writes within their patients' records.
    let (st, _) = c.send(Who::DoctorA, "POST", "Observation", &obs("p1", "da"));
    assert_eq!(st, 201);
    let (st, _) = c.send(Who::DoctorA, "POST", "Observation", &obs("p2", "da2"));
    assert!(refused(st));
}

#[test]
fn tokens_and_paging_links() {
    let c = setup();
    // No token: 401 with a Bearer challenge, except the CapabilityStatement.
    let r = c.s.get("Patient");
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(c.s.get("metadata").status(), 200);
    // Malformed, forged and alg=none tokens: 401 invalid_token.
    let good = c.tok(Who::Admin).to_string();
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        "not-a-jwt".to_string(),
        format!("{}.{}.{}", parts[0], parts[1], "AAAA"),
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]),
    ] {
        let r = c.s.req("GET", "Patient").bearer_auth(&bad).send().unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // A paging link belongs to whoever searched: another caller cannot use it to read the
    // remembered result set.
    let (_, b) = c.get(Who::Admin, "Observation?_count=1");
    let next = next_link(&b);
    let r =
        c.s.client
            .get(&next)
            .bearer_auth(c.tok(Who::Patient1))
            .send()
            .unwrap();
    let page = json(r);
    c.assert_no_leak(Who::Patient1, &page, "replayed paging link");
    // JWKS is public; it holds no private key material.
    let r = c.s.get(".well-known/jwks.json");
    assert_eq!(r.status(), 200);
    let jwks = json(r);
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0].get("d").is_none());
}

#[test]
fn audit_trail_and_access_log() {
    let c = setup();
    // Doctor A reads p1's record, doctor B tries to, the patient looks at their own.
    assert_eq!(c.get(Who::DoctorA, "Observation?subject=Patient/p1").0, 200);
    assert_eq!(c.get(Who::DoctorA, "Patient/p1").0, 200);
    assert_eq!(c.get(Who::DoctorB, "Patient/p1").0, 404);
    assert_eq!(c.get(Who::Researcher, "Patient/p1").0, 403);
    // The person's access log shows who looked, including the refused attempts.
    let (st, log) = c.get(Who::Patient1, "Patient/p1/$access-log");
    assert_eq!(st, 200, "{log}");
    let events: Vec<&Value> = log["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let by = |name: &str| {
        events
            .iter()
            .filter(|e| e.to_string().contains(name))
            .count()
    };
    assert!(by("doc-a") >= 2, "{log}");
    assert!(by("doc-b") >= 1, "refused attempts are recorded too: {log}");
    assert!(by("res") >= 1);
    for e in &events {
        assert_eq!(e["resourceType"], "AuditEvent");
        assert!(
            e.to_string().contains("Patient/p1"),
            "only events about this person: {e}"
        );
    }
    let denied = events
        .iter()
        .find(|e| e.to_string().contains("doc-b"))
        .unwrap();
    assert_ne!(denied["outcome"], "0", "{denied}");
    // Someone else's access log is not theirs to read; administrators search everything.
    assert_eq!(c.get(Who::Patient1, "Patient/p2/$access-log").0, 404);
    assert_eq!(c.get(Who::Patient1, "$audit").0, 403);
    let (st, all) = c.get(Who::Admin, "$audit?agent=doc-a&_count=1000");
    assert_eq!(st, 200);
    assert!(all["total"].as_u64().unwrap() >= 2);
    // The chain verifies (in the data directory, or in the PostgreSQL store's database).
    let store = crate::common::store_choice(c.s.dir());
    let report = issho::verify_audit(&store, c.s.dir(), &[]).expect("audit trail intact");
    // 17 writes while loading, the reads and denials above, the log reads.
    assert!(report.entries >= 23, "{report:?}");
}

/// Consent ("share unless refused"), JP-CLINS indication tags, and break-the-glass.
#[test]
fn consent_tags_and_break_glass() {
    let (s, auth) = Server::start_secure();
    let mk = |name: &str, role: Role, org: Option<&str>, patient: Option<&str>, scopes: &str| {
        let u = User {
            name: name.into(),
            role,
            patient: patient.map(str::to_string),
            organization: org.map(|o| format!("Organization/{o}")),
            fhir_user: None,
            scopes: scopes.into(),
            display: name.into(),
        };
        auth.put_user(&u, "a long password").unwrap();
        auth.issue_for_user(&u, None).unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let admin = mk("admin", Role::Administrator, None, None, "user/*.cruds");
    let doc_a = mk("doc-a", Role::Physician, Some("org-a"), None, "user/*.rs");
    let doc_a2 = mk("doc-a2", Role::Physician, Some("org-c"), None, "user/*.rs");
    let er_b = mk(
        "er-b",
        Role::EmergencyPhysician,
        Some("org-b"),
        None,
        "user/*.rs",
    );
    let pat = mk("pat", Role::Patient, None, Some("p1"), "patient/*.rs");
    let put = |path: &str, body: Value| {
        let r = s
            .req("PUT", path)
            .bearer_auth(&admin)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.text().unwrap());
    };
    let get = |tok: &str, path: &str| -> (u16, Value) {
        let r = s.req("GET", path).bearer_auth(tok).send().unwrap();
        let st = r.status().as_u16();
        (
            st,
            serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
        )
    };
    let ids = |b: &Value| -> BTreeSet<String> { ids_of(b) };
    const CLINS: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication";
    put("Patient/p1", json!({"resourceType": "Patient", "id": "p1"}));
    for org in ["org-a", "org-c"] {
        put(
            &format!("Encounter/e-{org}"),
            json!({"resourceType": "Encounter", "id": format!("e-{org}"), "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"}, "serviceProvider": {"reference": format!("Organization/{org}")}}),
        );
    }
    let cond = |id: &str, meta: Value| {
        let mut c = json!({"resourceType": "Condition", "id": id,
            "code": {"text": id}, "subject": {"reference": "Patient/p1"}});
        if !meta.is_null() {
            c["meta"] = meta;
        }
        c
    };
    put("Condition/plain", cond("plain", Value::Null));
    put(
        "Condition/psy",
        cond(
            "psy",
            json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}),
        ),
    );
    put(
        "Condition/uninformed",
        cond(
            "uninformed",
            json!({"tag": [{"system": CLINS, "code": "UNINFORMED"}]}),
        ),
    );
    put(
        "Condition/undelivered",
        cond(
            "undelivered",
            json!({"source": "Organization/org-a", "tag": [{"system": CLINS, "code": "UNDELIVERED"}]}),
        ),
    );
    let all: BTreeSet<String> = ["plain", "psy", "uninformed", "undelivered"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    // Without any consent: shared with the care providers; the tags apply.
    assert_eq!(ids(&get(&doc_a, "Condition?_count=50").1), all);
    assert_eq!(
        ids(&get(&doc_a2, "Condition?_count=50").1),
        set(&["plain", "psy", "uninformed"]),
        "UNDELIVERED stays at org-a"
    );
    assert_eq!(
        ids(&get(&pat, "Condition?_count=50").1),
        set(&["plain", "psy", "undelivered"]),
        "UNINFORMED is not shown to the patient"
    );
    assert_eq!(get(&pat, "Condition/uninformed").0, 404);
    // The person refuses mental-health records to everyone.
    put(
        "Consent/c1",
        json!({"resourceType": "Consent", "id": "c1", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "permit", "provision": [{"type": "deny",
            "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}]}}),
    );
    assert_eq!(
        ids(&get(&doc_a, "Condition?_count=50").1),
        set(&["plain", "uninformed", "undelivered"])
    );
    assert_eq!(get(&doc_a, "Condition/psy").0, 404);
    assert_eq!(get(&doc_a, "Condition?_summary=count").1["total"], 3);
    // ... and refuses org-c entirely: takes effect on the next request.
    put(
        "Consent/c2",
        json!({"resourceType": "Consent", "id": "c2", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "provision": {"type": "deny", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
            "reference": {"reference": "Organization/org-c"}}]}}),
    );
    assert_eq!(get(&doc_a2, "Patient/p1").0, 404);
    assert!(ids(&get(&doc_a2, "Condition?_count=50").1).is_empty());
    assert_eq!(get(&doc_a, "Patient/p1").0, 200, "org-a still may");
    // Withdrawn: shared again.
    let mut c2 = json!({"resourceType": "Consent", "id": "c2", "status": "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"}});
    put("Consent/c2", c2.take());
    assert_eq!(get(&doc_a2, "Patient/p1").0, 200);
    // Break-the-glass: an emergency physician at a hospital with no care relationship.
    assert_eq!(get(&er_b, "Patient/p1").0, 404);
    let btg = |tok: &str, reason: &str| {
        s.req("POST", "Patient/p1/$break-glass")
            .bearer_auth(tok)
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]}).to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        btg(&doc_a, "unconscious patient"),
        403,
        "only emergency physicians"
    );
    assert_eq!(btg(&er_b, ""), 400, "a reason is required");
    assert_eq!(
        btg(&er_b, "unconscious patient in the ER, allergies unknown"),
        200
    );
    assert_eq!(get(&er_b, "Patient/p1").0, 200);
    assert!(
        ids(&get(&er_b, "Condition?_count=50").1).contains("psy"),
        "consent is overridden"
    );
    // The person sees it in their access log, flagged.
    let (_, log) = get(&pat, "Patient/p1/$access-log?_count=1000");
    let text = log.to_string();
    assert!(
        text.contains("break-the-glass: unconscious patient"),
        "{text}"
    );
    let flagged = log["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"].to_string().contains("er-b")
                && e["resource"].to_string().contains("ETREAT")
        })
        .count();
    assert!(
        flagged >= 3,
        "the declaration and the accesses under it: {flagged}"
    );
}

/// A hospital with more patients in care than SQLite allows terms in one compound SELECT
/// (regression: clinicians' searches failed with 500 beyond ~500 patients).
#[test]
fn care_of_many_patients() {
    let c = setup();
    let n = 700;
    let mut entries = Vec::new();
    for i in 0..n {
        entries.push(
            json!({"resource": {"resourceType": "Patient", "id": format!("m{i}")},
            "request": {"method": "PUT", "url": format!("Patient/m{i}")}}),
        );
        entries.push(json!({"resource": {"resourceType": "Encounter", "id": format!("m{i}-enc"), "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/m{i}")},
            "serviceProvider": {"reference": "Organization/org-a"}},
            "request": {"method": "PUT", "url": format!("Encounter/m{i}-enc")}}));
    }
    let (st, _) = c.send(
        Who::Admin,
        "POST",
        "",
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    );
    assert_eq!(st, 200);
    let (st, b) = c.get(Who::DoctorA, "Patient?_summary=count");
    assert_eq!(st, 200, "{b}");
    // p1 and the 700 new patients.
    assert_eq!(b["total"], n + 1);
    let (st, b) = c.get(Who::DoctorA, "Encounter?_count=5&_total=accurate");
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["total"], n + 1);
    assert_eq!(c.get(Who::DoctorA, "Patient/m650").0, 200);
    assert_eq!(c.get(Who::DoctorB, "Patient/m650").0, 404);
}

/// Care relationships follow the data: a new Encounter opens a record on the next request
/// (the cached care set is refreshed); a clinician cannot open one by writing the Encounter.
#[test]
fn care_relationships_follow_writes() {
    let c = setup();
    assert_eq!(c.get(Who::DoctorA, "Patient/p3").0, 404);
    let enc = |id: &str, p: &str| {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{p}")},
            "serviceProvider": {"reference": "Organization/org-a"}})
    };
    let (st, _) = c.send(Who::Admin, "PUT", "Encounter/p3-a", &enc("p3-a", "p3"));
    assert_eq!(st, 201);
    assert_eq!(
        c.get(Who::DoctorA, "Patient/p3").0,
        200,
        "a new care relationship counts at once"
    );
    // A clinician cannot grant themselves a record by writing an Encounter for a patient
    // outside their care: refused, nothing written.
    let (st, _) = c.send(
        Who::Admin,
        "PUT",
        "Patient/p9",
        &json!({"resourceType": "Patient", "id": "p9"}),
    );
    assert_eq!(st, 201);
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": enc("p9-a", "p9"), "request": {"method": "PUT", "url": "Encounter/p9-a"}},
        {"resource": {"resourceType": "Observation", "id": "p9-obs", "status": "final",
            "code": {"text": "体温"}, "subject": {"reference": "Patient/p9"}},
         "request": {"method": "PUT", "url": "Observation/p9-obs"}}
    ]});
    let (st, _) = c.send(Who::DoctorA, "POST", "", &tx);
    assert!(st == 403 || st == 404, "{st}");
    assert_eq!(
        c.get(Who::Admin, "Encounter/p9-a").0,
        404,
        "nothing written"
    );
    assert_eq!(c.get(Who::DoctorA, "Patient/p9").0, 404);
    // The hospital's system registers the visit; then the clinician writes to the record.
    let (st, _) = c.send(Who::Admin, "PUT", "Encounter/p9-a", &enc("p9-a", "p9"));
    assert_eq!(st, 201);
    let (st, b) = c.send(
        Who::DoctorA,
        "POST",
        "Observation",
        &json!({"resourceType": "Observation",
        "status": "final", "code": {"text": "体温"}, "subject": {"reference": "Patient/p9"}}),
    );
    assert_eq!(st, 201, "{b}");
    let obs = format!("Observation/{}", b["id"].as_str().unwrap());
    assert_eq!(c.get(Who::DoctorA, &obs).0, 200);
    // Doctor B still cannot.
    assert_eq!(c.get(Who::DoctorB, &obs).0, 404);
}

/// A resource of a type that is never in a person's record (an Organization) still belongs to
/// the person it names — here in an extension — by the ownership rule, whichever tables the
/// store keeps that type in (PostgreSQL: the shared tables): its person reads and finds it,
/// another person's does neither.
#[test]
fn a_shared_type_naming_a_person_is_in_their_record() {
    let c = setup();
    for p in ["p1", "p2"] {
        let org = json!({"resourceType": "Organization", "id": format!("o-{p}"),
            "name": format!("Family pharmacy {p}"),
            "extension": [{"url": "urn:test:for",
                "valueReference": {"reference": format!("Patient/{p}")}}]});
        let (st, b) = c.send(Who::Admin, "PUT", &format!("Organization/o-{p}"), &org);
        assert!(st == 201 || st == 200, "{b}");
    }
    let ids = |who: Who, q: &str| -> Vec<String> {
        let (st, b) = c.get(who, q);
        assert_eq!(st, 200, "{who:?} {q}: {b}");
        let mut v: Vec<String> = b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(c.get(Who::Patient1, "Organization/o-p1").0, 200);
    let (st, b) = c.get(Who::Patient1, "Organization/o-p2");
    assert_ne!(st, 200, "{b}");
    assert!(b["name"].is_null(), "{b}");
    assert_eq!(ids(Who::Patient1, "Organization?_id=o-p1,o-p2"), ["o-p1"]);
    assert_eq!(ids(Who::Patient1, "Organization?name=Family"), ["o-p1"]);
    assert_eq!(
        ids(Who::Admin, "Organization?_id=o-p1,o-p2"),
        ["o-p1", "o-p2"]
    );
}

/// A Bundle holds patients' data inline (a document, a collection): a patient's reference to
/// another person's Bundle must answer exactly as one to a Bundle that does not exist, or the
/// answer would tell that it exists.
#[test]
fn a_reference_to_someone_elses_bundle_tells_nothing() {
    let c = setup();
    let doc = json!({"resourceType": "Bundle", "id": "b-p2", "type": "collection",
        "entry": [{"fullUrl": "urn:uuid:7c2f0d2e-1b7e-4d7e-9a57-0f5b2f7f0c11",
            "resource": {"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}}}]});
    let (st, b) = c.send(Who::Admin, "PUT", "Bundle/b-p2", &doc);
    assert!(st == 201 || st == 200, "{b}");
    let obs = |focus: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "mine"},
            "subject": {"reference": "Patient/p1"}, "focus": [{"reference": focus}]})
    };
    let (st_there, b_there) = c.send(Who::Patient1, "POST", "Observation", &obs("Bundle/b-p2"));
    let (st_absent, b_absent) = c.send(
        Who::Patient1,
        "POST",
        "Observation",
        &obs("Bundle/no-such-bundle"),
    );
    assert_eq!(
        st_there, st_absent,
        "another person's Bundle: {b_there}; an absent one: {b_absent}"
    );
    assert_ne!(st_there, 201, "{b_there}");
}
