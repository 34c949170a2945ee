//! Regression tests for the leaks an attack on the demo server found (issue 9): each probe is
//! what a malicious patient, a clinician elsewhere or a researcher tried, over HTTP against a
//! server that requires tokens.
//!
//! The record: p1 treated at hospital A, p2 at hospital B, p3 nowhere.

use crate::common::*;
use issho_access::Role;
use issho_auth::{Auth, User};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Who {
    P1,
    P2,
    /// p1 with `patient/Observation.rs?category=vital-signs` only.
    P1Vitals,
    DoctorA,
    DoctorB,
    PharmacistA,
    EmergencyA,
    Researcher,
    Admin,
}

const WHO: [Who; 9] = [
    Who::P1,
    Who::P2,
    Who::P1Vitals,
    Who::DoctorA,
    Who::DoctorB,
    Who::PharmacistA,
    Who::EmergencyA,
    Who::Researcher,
    Who::Admin,
];

fn user(who: Who) -> User {
    let u = |name: &str, role: Role, scopes: &str| User {
        name: name.into(),
        role,
        patient: None,
        organization: None,
        fhir_user: None,
        scopes: scopes.into(),
        display: name.into(),
    };
    let org = |o: &str| Some(format!("Organization/{o}"));
    match who {
        Who::P1 => User {
            patient: Some("p1".into()),
            ..u("p1", Role::Patient, "patient/*.cruds")
        },
        Who::P2 => User {
            patient: Some("p2".into()),
            ..u("p2", Role::Patient, "patient/*.cruds")
        },
        Who::P1Vitals => User {
            patient: Some("p1".into()),
            ..u(
                "p1v",
                Role::Patient,
                "patient/Observation.crus?category=vital-signs",
            )
        },
        Who::DoctorA => User {
            organization: org("org-a"),
            ..u("doc-a", Role::Physician, "user/*.cruds")
        },
        Who::DoctorB => User {
            organization: org("org-b"),
            ..u("doc-b", Role::Physician, "user/*.cruds")
        },
        Who::PharmacistA => User {
            organization: org("org-a"),
            ..u("pharm-a", Role::Pharmacist, "user/*.rs")
        },
        Who::EmergencyA => User {
            organization: org("org-a"),
            ..u("er-a", Role::EmergencyPhysician, "user/*.rs")
        },
        Who::Researcher => u("res", Role::Researcher, "user/*.rs"),
        Who::Admin => u("admin", Role::Administrator, "user/*.cruds"),
    }
}

pub(crate) struct Ctx {
    pub s: Server,
    tokens: Vec<(Who, String)>,
}

impl Ctx {
    pub(crate) fn tok(&self, who: Who) -> &str {
        &self.tokens.iter().find(|(w, _)| *w == who).unwrap().1
    }
    pub(crate) fn get(&self, who: Who, path: &str) -> (u16, Value) {
        let r = self
            .s
            .req("GET", path)
            .bearer_auth(self.tok(who))
            .send()
            .unwrap();
        let st = r.status().as_u16();
        (
            st,
            serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
        )
    }
    /// GET an absolute URL (a paging link).
    pub(crate) fn get_url(&self, who: Who, url: &str) -> (u16, Value) {
        let r = self
            .s
            .client
            .get(url)
            .bearer_auth(self.tok(who))
            .send()
            .unwrap();
        let st = r.status().as_u16();
        (
            st,
            serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
        )
    }
    pub(crate) fn send(&self, who: Who, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .s
            .req(method, path)
            .bearer_auth(self.tok(who))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap();
        let st = r.status().as_u16();
        (
            st,
            serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
        )
    }
    pub(crate) fn put(&self, r: &Value) {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let (st, b) = self.send(Who::Admin, "PUT", &path, r);
        assert!(st == 201 || st == 200, "{path}: {st} {b}");
    }
    pub(crate) fn ids(&self, who: Who, path: &str) -> Vec<String> {
        let (st, b) = self.get(who, path);
        assert_eq!(st, 200, "{who:?} {path}: {b}");
        entry_ids(&b)
    }
}

pub(crate) fn entry_ids(b: &Value) -> Vec<String> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let r = &e["resource"];
            Some(format!(
                "{}/{}",
                r["resourceType"].as_str()?,
                r["id"].as_str()?
            ))
        })
        .collect()
}

pub(crate) fn obs(id: &str, p: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{p}")}})
}

pub(crate) fn setup() -> Ctx {
    let (s, auth) = Server::start_secure();
    let tokens = WHO
        .iter()
        .map(|w| (*w, token(&auth, *w)))
        .collect::<Vec<_>>();
    let c = Ctx { s, tokens };
    c.put(&json!({"resourceType": "Organization", "id": "org-a", "name": "A病院"}));
    c.put(&json!({"resourceType": "Organization", "id": "org-b", "name": "B病院"}));
    for (p, gender, org) in [
        ("p1", "female", Some("org-a")),
        ("p2", "male", Some("org-b")),
        ("p3", "male", None),
    ] {
        c.put(&json!({"resourceType": "Patient", "id": p, "gender": gender}));
        if let Some(org) = org {
            c.put(&json!({"resourceType": "Encounter", "id": format!("{p}-enc"), "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{p}")},
                "serviceProvider": {"reference": format!("Organization/{org}")}}));
        }
        for i in 0..3 {
            c.put(&obs(&format!("{p}-obs{i}"), p, "vital-signs"));
        }
    }
    c
}

fn token(auth: &Auth, who: Who) -> String {
    let u = user(who);
    auth.put_user(&u, "a long password").unwrap();
    auth.issue_for_user(&u, None).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Leak 1: a resource naming the caller somewhere (asserter, performer) but belonging to
/// another person is not within the caller's reach: the write is refused, and nobody's
/// clinicians see it.
#[test]
fn a_patient_cannot_write_into_another_record() {
    let c = setup();
    let cond = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p2"},
        "asserter": {"reference": "Patient/p1"}, "code": {"text": "planted"}});
    let (st, b) = c.send(Who::P1, "POST", "Condition", &cond);
    assert!(st == 400 || st == 403, "{b}");
    let perf = json!({"resourceType": "Observation", "status": "final", "code": {"text": "planted"},
        "subject": {"reference": "Patient/p2"}, "performer": [{"reference": "Patient/p1"}]});
    assert!([400, 403].contains(&c.send(Who::P1, "POST", "Observation", &perf).0));
    // An update of one's own resource that moves it into another record is refused too.
    let (st, b) = c.send(Who::P1, "PUT", "Observation/p1-obs0", &{
        let mut o = obs("p1-obs0", "p2", "vital-signs");
        o["performer"] = json!([{"reference": "Patient/p1"}]);
        o
    });
    assert!(st == 400 || st == 403, "{b}");
    // Nothing arrived in p2's record.
    assert!(c.ids(Who::DoctorB, "Condition").is_empty());
    assert_eq!(c.ids(Who::DoctorB, "Observation?code=8867-4").len(), 3);
    // Resources naming two persons are nobody's alone: written by the hospital system, they
    // are hidden from both patients and from both hospitals.
    c.put(
        &json!({"resourceType": "Condition", "id": "two", "subject": {"reference": "Patient/p2"},
        "asserter": {"reference": "Patient/p1"}, "code": {"text": "two persons"}}),
    );
    for who in [Who::P1, Who::P2, Who::DoctorA, Who::DoctorB] {
        assert_eq!(c.get(who, "Condition/two").0, 404, "{who:?}");
        let (_, b) = c.get(who, "Condition?_id=two&_summary=count");
        assert_eq!(b["total"], 0, "{who:?}");
    }
    assert_eq!(c.get(Who::Admin, "Condition/two").0, 200);
}

/// Leak 1: chains, `_has` and `:iterate` only pass through what the caller may read.
#[test]
fn links_only_pass_through_readable_resources() {
    let c = setup();
    // p1's panel names an Observation that did not exist yet; it is later created for p2.
    let mut panel = obs("p1-panel", "p1", "vital-signs");
    panel["hasMember"] = json!([{"reference": "Observation/later"}]);
    c.put(&panel);
    c.put(
        &json!({"resourceType": "Practitioner", "id": "p2-doctor", "name": [{"family": "秘密"}]}),
    );
    let mut later = obs("later", "p2", "laboratory");
    later["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "HIV-1"}]});
    later["performer"] = json!([{"reference": "Practitioner/p2-doctor"}]);
    c.put(&later);
    // Yes/no questions about p2's Observation through p1's own panel.
    let (_, b) = c.get(
        Who::P1,
        "Observation?_id=p1-panel&has-member:Observation.code=HIV-1&_summary=count",
    );
    assert_eq!(b["total"], 0, "a chain answered through p2's Observation");
    let (_, b) = c.get(
        Who::P1,
        "Observation?_has:Observation:has-member:code=8867-4&_summary=count",
    );
    assert_eq!(b["total"], 0, "{b}");
    // `_include:iterate` continues from p2's Observation to its performer.
    let ids = c.ids(
        Who::P1,
        "Observation?_id=p1-panel&_include=Observation:has-member&_include:iterate=Observation:performer",
    );
    assert_eq!(ids, vec!["Observation/p1-panel"], "{ids:?}");
    // Chains into a type the token may not read at all: the vital-signs scope has no Patient.
    let (_, b) = c.get(
        Who::P1Vitals,
        "Observation?subject:Patient.gender=female&_summary=count",
    );
    assert_eq!(b["total"], 0, "{b}");
    // A clinician's chains stay inside the patients in their care.
    let (_, b) = c.get(
        Who::DoctorA,
        "Encounter?subject:Patient.gender=male&_summary=count",
    );
    assert_eq!(b["total"], 0, "{b}");
    // The administrator still sees through everything.
    let (_, b) = c.get(
        Who::Admin,
        "Observation?_id=p1-panel&has-member:Observation.code=HIV-1&_summary=count",
    );
    assert_eq!(b["total"], 1, "{b}");
}

/// Leak 2: care relationships are made by those who may make them, never by a patient.
#[test]
fn a_patient_cannot_open_a_record_to_an_organization() {
    let c = setup();
    let sr = |subject: &str| {
        json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": {"reference": format!("Patient/{subject}")},
            "performer": [{"reference": "Patient/p1"}, {"reference": "Organization/org-b"}]})
    };
    assert!([400, 403].contains(&c.send(Who::P1, "POST", "ServiceRequest", &sr("p3")).0));
    assert_eq!(c.get(Who::DoctorB, "Patient/p3").0, 404);
    // Not even into their own record: the hospital records referrals.
    let own = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Organization/org-b"}]});
    assert_eq!(c.send(Who::P1, "POST", "ServiceRequest", &own).0, 403);
    let enc = json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"}, "serviceProvider": {"reference": "Organization/org-b"}});
    assert_eq!(c.send(Who::P1, "POST", "Encounter", &enc).0, 403);
    assert_eq!(c.get(Who::DoctorB, "Patient/p1").0, 404);
    // A clinician records visits for their own organization only…
    assert_eq!(c.send(Who::DoctorA, "POST", "Encounter", &enc).0, 403);
    // … and may refer a patient in their care elsewhere.
    let (st, b) = c.send(Who::DoctorA, "POST", "ServiceRequest", &own);
    assert_eq!(st, 201, "{b}");
    assert_eq!(c.get(Who::DoctorB, "Patient/p1").0, 200);
}

/// Leak 3: patient data in types outside the R4 Patient compartment (Task, Device, Bundle…)
/// belongs to the person's record.
#[test]
fn patient_data_outside_the_compartment_is_guarded() {
    let c = setup();
    c.put(
        &json!({"resourceType": "Task", "id": "t2", "status": "requested", "intent": "order",
        "for": {"reference": "Patient/p2"}, "description": "HIV test follow-up"}),
    );
    c.put(&json!({"resourceType": "Device", "id": "d2", "patient": {"reference": "Patient/p2"}}));
    c.put(&json!({"resourceType": "Device", "id": "d-shared", "deviceName": [{"name": "ward scale", "type": "user-friendly-name"}]}));
    c.put(&json!({"resourceType": "Bundle", "id": "b2", "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "x", "name": [{"family": "Suzuki"}]}}]}));
    // A Task about p2's Observation (one hop) is p2's too.
    c.put(
        &json!({"resourceType": "Task", "id": "t2-focus", "status": "requested", "intent": "order",
        "focus": {"reference": "Observation/p2-obs0"}}),
    );
    for who in [Who::P1, Who::DoctorA, Who::PharmacistA, Who::EmergencyA] {
        for path in ["Task", "Device", "Bundle"] {
            let ids = c.ids(who, path);
            assert!(
                ids.iter().all(|i| i == "Device/d-shared"),
                "{who:?} {path}: {ids:?}"
            );
        }
        for path in ["Task/t2", "Device/d2", "Bundle/b2", "Task/t2-focus"] {
            assert_eq!(c.get(who, path).0, 404, "{who:?} {path}");
        }
    }
    assert_eq!(c.get(Who::Researcher, "Task").0, 403);
    let mut b_sees = c.ids(Who::DoctorB, "Task");
    b_sees.sort();
    assert_eq!(b_sees, vec!["Task/t2", "Task/t2-focus"]);
    assert_eq!(
        c.ids(Who::P2, "Device?patient=Patient/p2"),
        vec!["Device/d2"]
    );
    // The person's whole record, types outside the compartment included.
    let all = c.ids(Who::DoctorB, "Patient/p2/$everything?_count=100");
    for r in ["Task/t2", "Task/t2-focus", "Device/d2", "Patient/p2"] {
        assert!(all.contains(&r.to_string()), "{r} missing: {all:?}");
    }
    assert!(!all.contains(&"Device/d-shared".to_string()), "{all:?}");
    let mine = c.ids(Who::P1, "Patient/p1/$everything?_count=100");
    assert!(
        mine.iter().all(|r| !r.contains("t2") && !r.contains("d2")),
        "{mine:?}"
    );
    // A clinician writes a Task for a patient in their care; that patient sees it.
    let task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "for": {"reference": "Patient/p1"}});
    assert_eq!(c.send(Who::DoctorA, "POST", "Task", &task).0, 201);
    assert_eq!(c.ids(Who::P1, "Task").len(), 1);
    // …and not for a patient elsewhere.
    let task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "for": {"reference": "Patient/p2"}});
    assert!([400, 403].contains(&c.send(Who::DoctorA, "POST", "Task", &task).0));
    // A patient may register their own device, but not change shared data.
    let dev = json!({"resourceType": "Device", "patient": {"reference": "Patient/p1"}});
    assert_eq!(c.send(Who::P1, "POST", "Device", &dev).0, 201);
    let (st, _) = c.send(
        Who::P1,
        "PUT",
        "Device/d-shared",
        &json!({"resourceType": "Device", "id": "d-shared"}),
    );
    assert_eq!(st, 403);
    assert_eq!(
        c.send(Who::P1, "DELETE", "Device/d-shared", &json!({})).0,
        403
    );
}

/// Leak 4: a paging link taken before a consent refusal does not return the refused data.
#[test]
fn paging_links_follow_consent_changes() {
    let c = setup();
    for path in ["Observation?_count=1", "Observation?_count=1&_sort=_id"] {
        let (st, first) = c.get(Who::DoctorA, path);
        assert_eq!(st, 200);
        let next = next_link(&first);
        c.put(&json!({"resourceType": "Consent", "id": "p1-refuses", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "provision": {"type": "deny"}}));
        let (st, page) = c.get_url(Who::DoctorA, &next);
        assert_eq!(st, 200);
        assert!(entry_ids(&page).is_empty(), "{path}: {page}");
        assert_eq!(c.get(Who::Admin, "Consent/p1-refuses").0, 200);
        let r =
            c.s.req("DELETE", "Consent/p1-refuses")
                .bearer_auth(c.tok(Who::Admin))
                .send()
                .unwrap();
        assert!(r.status().is_success());
    }
    // The same for $everything's remembered pages, with a refusal of one category (the
    // record stays open, its mental-health resources close).
    c.put(&json!({"resourceType": "Condition", "id": "p1-psy", "subject": {"reference": "Patient/p1"},
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]},
        "code": {"text": "depression"}}));
    let mut urls = Vec::new();
    let mut url = format!("{}/Patient/p1/$everything?_count=1", c.s.base);
    let mut seen_psy = false;
    loop {
        let (st, page) = c.get_url(Who::DoctorA, &url);
        assert_eq!(st, 200, "{page}");
        seen_psy |= entry_ids(&page).contains(&"Condition/p1-psy".to_string());
        urls.push(url.clone());
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(l) => url = l["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    assert!(
        seen_psy,
        "the control: the PSY Condition is on a page before the refusal"
    );
    c.put(&json!({"resourceType": "Consent", "id": "p1-psy-refused", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "provision": {"type": "deny", "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}}));
    for u in urls {
        let (_, page) = c.get_url(Who::DoctorA, &u);
        assert!(
            !entry_ids(&page).contains(&"Condition/p1-psy".to_string()),
            "{u}: {page}"
        );
    }
}

/// Leak 5: a refusal committed while other writes run is enforced on the next request.
#[test]
fn a_refusal_is_enforced_at_once_under_concurrent_writes() {
    let c = setup();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (client, base, tok, stop) = (
                c.s.client.clone(),
                c.s.base.clone(),
                c.tok(Who::Admin).to_string(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // Care-relevant writes too (Encounters), so that generations race.
                    let body = if i % 2 == 0 {
                        json!({"resourceType": "Encounter", "status": "finished",
                            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                            "subject": {"reference": "Patient/p3"}})
                    } else {
                        obs(&format!("w{w}-{i}"), "p3", "vital-signs")
                    };
                    let rt = body["resourceType"].as_str().unwrap().to_string();
                    let _ = client
                        .post(format!("{base}/{rt}"))
                        .bearer_auth(&tok)
                        .header("content-type", "application/fhir+json")
                        .body(body.to_string())
                        .send();
                    i += 1;
                }
            })
        })
        .collect();
    // Clinicians' reads fill the care cache at every moment of the race.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (client, base, tok, stop) = (
                c.s.client.clone(),
                c.s.base.clone(),
                c.tok(Who::DoctorA).to_string(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = client
                        .get(format!("{base}/Patient/p1"))
                        .bearer_auth(&tok)
                        .send();
                }
            })
        })
        .collect();
    let consent = |status: &str| {
        json!({"resourceType": "Consent", "id": "p1-refuses", "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "provision": {"type": "deny"}})
    };
    let mut failures = Vec::new();
    for round in 0..60 {
        c.put(&consent("active"));
        if c.get(Who::DoctorA, "Patient/p1").0 != 404 {
            failures.push(format!("round {round}: refusal not enforced"));
        }
        c.put(&consent("inactive"));
        if c.get(Who::DoctorA, "Patient/p1").0 != 200 {
            failures.push(format!("round {round}: withdrawal not enforced"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writers
        .into_iter()
        .chain(readers)
        .for_each(|w| w.join().unwrap());
    assert!(failures.is_empty(), "{failures:?}");
}

/// Leak 8: a GET entry of a batch or transaction gets exactly the status and body of the same
/// request on its own, and the same audit record.
#[test]
fn bundle_get_entries_are_the_plain_interactions() {
    let c = setup();
    let mut v1 = obs("x", "p1", "laboratory");
    c.put(&v1);
    v1["category"][0]["coding"][0]["code"] = json!("vital-signs");
    c.put(&v1);
    let urls = [
        "Observation/x",
        "Observation/x/_history/1",
        "Observation/x/_history/2",
        "Observation/x/_history",
        "Observation/_history",
        "Observation?code=8867-4",
        "Observation/p2-obs0",
        "Patient/p1",
        "Patient/p1/Observation",
        "Patient/p2/Observation",
        "Patient/p1/$everything",
        "Patient/p2/$everything",
    ];
    for who in [Who::P1Vitals, Who::DoctorA, Who::P1] {
        for kind in ["batch", "transaction"] {
            let entries: Vec<Value> = urls
                .iter()
                .map(|u| json!({"request": {"method": "GET", "url": u}}))
                .collect();
            let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
            let (st, resp) = c.send(who, "POST", "", &bundle);
            if kind == "transaction" && st != 200 {
                // A transaction fails as a whole when one entry fails: its outcome must be the
                // first failing entry's own status.
                let (plain, _) = c.get(who, "Observation/x/_history/1");
                assert_eq!(st, plain, "{resp}");
                continue;
            }
            assert_eq!(st, 200, "{kind}: {resp}");
            for (i, u) in urls.iter().enumerate() {
                let (plain, body) = c.get(who, u);
                let e = &resp["entry"][i];
                let status: u16 = e["response"]["status"].as_str().unwrap()[..3]
                    .parse()
                    .unwrap();
                assert_eq!(status, plain, "{who:?} {kind} {u}: {e} vs {body}");
            }
        }
    }
    // The audit record of a batch GET names the patient and the resource, like a plain read.
    let bundle = json!({"resourceType": "Bundle", "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Observation/p1-obs1"}}]});
    assert_eq!(c.send(Who::DoctorA, "POST", "", &bundle).0, 200);
    let (st, log) = c.get(Who::Admin, "$audit?agent=doc-a&_count=1000");
    assert_eq!(st, 200);
    let text = log.to_string();
    assert!(text.contains("Observation/p1-obs1"), "{text}");
    let read = log["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.to_string().contains("Observation/p1-obs1"))
        .unwrap()
        .to_string();
    assert!(read.contains("Patient/p1"), "{read}");
}

/// Leak 6: a person's access log names only that person's data; it is read by the person and
/// administrators, not by clinicians.
#[test]
fn the_access_log_names_only_the_person() {
    let c = setup();
    // Doctor A now cares for p1 and p3 and searches across both.
    c.put(&json!({"resourceType": "Encounter", "id": "p3-enc-a", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p3"}, "serviceProvider": {"reference": "Organization/org-a"}}));
    let ids = c.ids(Who::DoctorA, "Observation?_count=100");
    assert!(
        ids.iter().any(|i| i.starts_with("Observation/p3-")),
        "{ids:?}"
    );
    assert_eq!(c.get(Who::DoctorA, "Observation?subject=Patient/p3").0, 200);
    let (st, log) = c.get(Who::P1, "Patient/p1/$access-log");
    assert_eq!(st, 200, "{log}");
    let text = log.to_string();
    assert!(text.contains("Observation/p1-obs0"), "{text}");
    assert!(
        !text.contains("p3"),
        "another patient in p1's access log: {text}"
    );
    assert_eq!(c.get(Who::P1, "Patient/p3/$access-log").0, 404);
    assert_eq!(c.get(Who::DoctorA, "Patient/p1/$access-log").0, 403);
    assert_eq!(c.get(Who::DoctorB, "Patient/p1/$access-log").0, 404);
    let (st, log) = c.get(Who::Admin, "Patient/p1/$access-log");
    assert_eq!(st, 200);
    assert!(
        log.to_string().contains("p3"),
        "administrators see records whole"
    );
}

/// Leak 7: a Consent the gate cannot enforce exactly is refused (422), never stored as if in
/// force.
#[test]
fn unenforceable_consents_are_refused() {
    let c = setup();
    let consent = |provision: Value, scope: &str| {
        json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"}, "provision": provision})
    };
    let base = c.s.base.clone();
    for (why, body) in [
        (
            "absolute actor",
            consent(
                json!({"type": "deny", "actor": [{"role": {"text": "x"},
            "reference": {"reference": format!("{base}/Organization/org-a")}}]}),
                "patient-privacy",
            ),
        ),
        (
            "practitioner actor",
            consent(
                json!({"type": "deny", "actor": [{"role": {"text": "x"},
            "reference": {"reference": "Practitioner/x"}}]}),
                "patient-privacy",
            ),
        ),
        (
            "by class",
            consent(
                json!({"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]}),
                "patient-privacy",
            ),
        ),
        (
            "by period",
            consent(
                json!({"type": "deny", "period": {"start": "2020-01-01"}}),
                "patient-privacy",
            ),
        ),
        (
            "exception",
            consent(
                json!({"type": "deny", "provision": [{"type": "permit"}]}),
                "patient-privacy",
            ),
        ),
        ("treatment", consent(json!({"type": "deny"}), "treatment")),
        (
            // Research Consents are enforced for all research or none (research.rs).
            "research by actor",
            consent(
                json!({"type": "deny", "actor": [{"role": {"text": "x"},
            "reference": {"reference": "Organization/org-a"}}]}),
                "research",
            ),
        ),
    ] {
        let (st, b) = c.send(Who::P1, "POST", "Consent", &body);
        assert_eq!(st, 422, "{why}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome", "{why}");
    }
    // Doctor A still reads p1's record: nothing was stored as a refusal.
    assert_eq!(c.get(Who::DoctorA, "Patient/p1").0, 200);
    // What is enforced is accepted, and enforced.
    let ok = consent(
        json!({"type": "permit", "provision": [{"type": "deny", "actor": [{"role": {"text": "x"},
            "reference": {"reference": "Organization/org-a"}}]}]}),
        "patient-privacy",
    );
    let (st, b) = c.send(Who::P1, "POST", "Consent", &ok);
    assert_eq!(st, 201, "{b}");
    assert_eq!(c.get(Who::DoctorA, "Patient/p1").0, 404);
}
