//! The access attack matrix, over HTTP against a server that requires tokens: principals
//! (patients, query-restricted scopes, doctors at two hospitals, administrator, backend
//! service, researcher, anonymous, forged tokens) × interactions (read, vread, search with
//! `_include`/`_revinclude`/chains/`_has`/totals/counts, history, `$everything`, compartment
//! search, batch and transaction entries, writes, conditional writes, paging links).
//!
//! What each principal may see is computed here from the test data and the rules (never
//! through the server), and every response is checked for any resource outside it: zero leaks.

use crate::common::*;
use issho_access::Role;
use issho_auth::{Auth, User};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The record: three patients; p1 treated at hospital A, p2 at hospital B, p3 nowhere.
const CLINS: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication";
const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The record; with `consent`, p1 refuses mental-health (PSY) records to everyone.
fn data(consent: bool) -> Vec<Value> {
    let mut out = vec![
        json!({"resourceType": "Organization", "id": "org-a", "name": "A病院"}),
        json!({"resourceType": "Organization", "id": "org-b", "name": "B病院"}),
        json!({"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "医師"}]}),
    ];
    for (p, family, org) in [
        ("p1", "Sato", Some("org-a")),
        ("p2", "Suzuki", Some("org-b")),
        ("p3", "Takahashi", None),
    ] {
        out.push(json!({"resourceType": "Patient", "id": p, "name": [{"family": family}], "gender": "female"}));
        if let Some(org) = org {
            out.push(json!({"resourceType": "Encounter", "id": format!("{p}-enc"), "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{p}")},
                "serviceProvider": {"reference": format!("Organization/{org}")}}));
        }
        for (kind, code) in [("laboratory", "2345-7"), ("vital-signs", "8867-4")] {
            out.push(json!({"resourceType": "Observation", "id": format!("{p}-{kind}"), "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": kind}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": format!("Patient/{p}")},
                "performer": [{"reference": "Practitioner/pr1"}],
                "valueQuantity": {"value": 100, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}));
        }
        out.push(
            json!({"resourceType": "Condition", "id": format!("{p}-cond"),
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11"}]},
            "subject": {"reference": format!("Patient/{p}")}}),
        );
        // Sensitive and tagged records (JP-CLINS indications, a mental-health label).
        out.push(
            json!({"resourceType": "Condition", "id": format!("{p}-psy"),
            "meta": {"security": [{"system": ACT, "code": "PSY"}]},
            "code": {"text": "depression"}, "subject": {"reference": format!("Patient/{p}")}}),
        );
        out.push(
            json!({"resourceType": "Condition", "id": format!("{p}-uninformed"),
            "meta": {"tag": [{"system": CLINS, "code": "UNINFORMED"}]},
            "code": {"text": "not yet told"}, "subject": {"reference": format!("Patient/{p}")}}),
        );
        out.push(json!({"resourceType": "Condition", "id": format!("{p}-undelivered"),
            "meta": {"source": "Organization/org-b", "tag": [{"system": CLINS, "code": "UNDELIVERED"}]},
            "code": {"text": "kept at B"}, "subject": {"reference": format!("Patient/{p}")}}));
    }
    if consent {
        out.push(json!({"resourceType": "Consent", "id": "p1-consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "provision": {"type": "deny", "securityLabel": [{"system": ACT, "code": "PSY"}]}}));
    }
    out
}

fn has_meta(r: &Value, list: &str, code: &str) -> bool {
    r["meta"][list]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["code"] == code)
}

fn patient_of(r: &Value) -> Option<String> {
    if r["resourceType"] == "Patient" {
        return r["id"].as_str().map(str::to_string);
    }
    r["subject"]["reference"]
        .as_str()
        .or(r["patient"]["reference"].as_str())
        .and_then(|s| s.strip_prefix("Patient/"))
        .map(str::to_string)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Patient1,
    Patient1Lab,
    DoctorA,
    DoctorB,
    Admin,
    Service,
    Researcher,
}

const ALL: [Who; 7] = [
    Who::Patient1,
    Who::Patient1Lab,
    Who::DoctorA,
    Who::DoctorB,
    Who::Admin,
    Who::Service,
    Who::Researcher,
];

/// The rules, independently: may `who` see `r` (with p1's consent in force or not)?
fn may_see(who: Who, r: &Value, consent: bool) -> bool {
    let shared = patient_of(r).is_none();
    let p = patient_of(r);
    let source = r["meta"]["source"].as_str().unwrap_or("");
    // A clinician of `org` on a patient in their care: tags and consent.
    let clinician = |org: &str, patient: &str| {
        p.as_deref() == Some(patient)
            && !(has_meta(r, "tag", "UNDELIVERED") && source != format!("Organization/{org}"))
            && !(consent && patient == "p1" && has_meta(r, "security", "PSY"))
    };
    match who {
        Who::Admin | Who::Service => true,
        Who::Researcher => false,
        Who::Patient1 => {
            shared || (p.as_deref() == Some("p1") && !has_meta(r, "tag", "UNINFORMED"))
        }
        Who::Patient1Lab => {
            r["resourceType"] == "Observation"
                && p.as_deref() == Some("p1")
                && r["category"][0]["coding"][0]["code"] == "laboratory"
        }
        Who::DoctorA => shared || clinician("org-a", "p1"),
        Who::DoctorB => shared || clinician("org-b", "p2"),
    }
}

fn user(who: Who) -> (User, Option<&'static str>) {
    let base = |name: &str, role: Role, scopes: &str| User {
        name: name.into(),
        role,
        patient: None,
        organization: None,
        fhir_user: None,
        scopes: scopes.into(),
        display: name.into(),
    };
    match who {
        Who::Patient1 => (
            User {
                patient: Some("p1".into()),
                ..base("pat1", Role::Patient, "patient/*.cruds")
            },
            None,
        ),
        Who::Patient1Lab => (
            User {
                patient: Some("p1".into()),
                ..base(
                    "pat1lab",
                    Role::Patient,
                    "patient/Observation.rs?category=laboratory",
                )
            },
            None,
        ),
        Who::DoctorA => (
            User {
                organization: Some("Organization/org-a".into()),
                ..base("doc-a", Role::Physician, "user/*.cruds")
            },
            None,
        ),
        Who::DoctorB => (
            User {
                organization: Some("Organization/org-b".into()),
                ..base("doc-b", Role::Physician, "user/*.rs")
            },
            None,
        ),
        Who::Admin => (base("admin", Role::Administrator, "user/*.cruds"), None),
        Who::Service => (base("svc", Role::Service, "system/*.rs"), None),
        Who::Researcher => (base("res", Role::Researcher, "user/*.rs"), None),
    }
}

fn token(auth: &Auth, who: Who) -> String {
    let (u, scope) = user(who);
    auth.put_user(&u, "a long password").unwrap();
    auth.issue_for_user(&u, scope).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

struct Ctx {
    s: Server,
    data: Vec<Value>,
    tokens: Vec<(Who, String)>,
    consent: bool,
}

impl Ctx {
    fn tok(&self, who: Who) -> &str {
        &self.tokens.iter().find(|(w, _)| *w == who).unwrap().1
    }
    fn get(&self, who: Who, path: &str) -> (u16, Value) {
        let r = self
            .s
            .req("GET", path)
            .bearer_auth(self.tok(who))
            .send()
            .unwrap();
        let st = r.status().as_u16();
        let text = r.text().unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    fn send(&self, who: Who, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .s
            .req(method, path)
            .bearer_auth(self.tok(who))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap();
        let st = r.status().as_u16();
        let text = r.text().unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    fn visible(&self, who: Who, rt: &str) -> BTreeSet<String> {
        self.data
            .iter()
            .filter(|r| r["resourceType"] == rt && may_see(who, r, self.consent))
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }
    /// Every resource anywhere in `v` must be one `who` may see (the leak check).
    fn assert_no_leak(&self, who: Who, v: &Value, what: &str) {
        let mut found = Vec::new();
        collect_resources(v, &mut found);
        for (rt, id) in found {
            if let Some(r) = self
                .data
                .iter()
                .find(|r| r["resourceType"] == rt.as_str() && r["id"] == id.as_str())
            {
                assert!(
                    may_see(who, r, self.consent),
                    "{who:?} {what}: leaked {rt}/{id}"
                );
            }
        }
        // References in text too (diagnostics, links) must not name hidden patients.
        let text = v.to_string();
        for p in ["p1", "p2", "p3"] {
            let pat = self.data.iter().find(|r| r["id"] == p).unwrap();
            if !may_see(who, pat, self.consent) && who != Who::Patient1Lab {
                assert!(
                    !text.contains(&format!("Patient/{p}\"")),
                    "{who:?} {what}: names Patient/{p}: {text}"
                );
            }
        }
    }
}

fn collect_resources(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            if let (Some(rt), Some(id)) = (
                o.get("resourceType").and_then(Value::as_str),
                o.get("id").and_then(Value::as_str),
            ) && rt != "Bundle"
                && rt != "OperationOutcome"
            {
                out.push((rt.to_string(), id.to_string()));
            }
            for x in o.values() {
                collect_resources(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_resources(x, out)),
        _ => {}
    }
}

fn ids_of(b: &Value) -> BTreeSet<String> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn setup() -> Ctx {
    setup_with(false)
}

fn setup_with(consent: bool) -> Ctx {
    let (s, auth) = Server::start_secure();
    let tokens: Vec<(Who, String)> = ALL.iter().map(|w| (*w, token(&auth, *w))).collect();
    let data = data(consent);
    let ctx = Ctx {
        s,
        data,
        tokens,
        consent,
    };
    for r in &ctx.data {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let (st, b) = ctx.send(Who::Admin, "PUT", &path, r);
        assert_eq!(st, 201, "{path}: {b}");
    }
    ctx
}

#[test]
fn attack_matrix() {
    // Both consent states: p1 sharing everything, and p1 refusing mental-health records.
    for consent in [false, true] {
        attack_matrix_in(setup_with(consent));
    }
}

fn attack_matrix_in(c: Ctx) {
    let types = [
        "Patient",
        "Observation",
        "Condition",
        "Encounter",
        "Consent",
        "Practitioner",
        "Organization",
    ];
    let mut checks = 0;
    for who in ALL {
        for r in &c.data {
            let rt = r["resourceType"].as_str().unwrap();
            let id = r["id"].as_str().unwrap();
            for path in [
                format!("{rt}/{id}"),
                format!("{rt}/{id}/_history/1"),
                format!("{rt}/{id}/_history"),
            ] {
                let (st, b) = c.get(who, &path);
                let scope_ok = match who {
                    Who::Researcher => false,
                    Who::Patient1Lab => rt == "Observation",
                    _ => true,
                };
                let restricted_history = who == Who::Patient1Lab && path.ends_with("/_history");
                if !scope_ok || (may_see(who, r, c.consent) && restricted_history) {
                    assert_eq!(st, 403, "{who:?} {path}: {b}");
                } else if may_see(who, r, c.consent) {
                    assert_eq!(st, 200, "{who:?} {path}: {b}");
                } else {
                    // Hidden looks exactly like absent.
                    assert_eq!(st, 404, "{who:?} {path}: {b}");
                    let (st2, b2) = c.get(who, &format!("{rt}/no-such-id"));
                    assert_eq!(st2, 404);
                    assert_eq!(
                        b["issue"][0]["diagnostics"]
                            .as_str()
                            .unwrap()
                            .replace(id, "X"),
                        b2["issue"][0]["diagnostics"]
                            .as_str()
                            .unwrap()
                            .replace("no-such-id", "X")
                    );
                }
                c.assert_no_leak(who, &b, &path);
                checks += 1;
            }
        }
        for rt in types {
            let scope_ok = match who {
                Who::Researcher => false,
                Who::Patient1Lab => rt == "Observation",
                _ => true,
            };
            for q in [
                format!("{rt}?_count=100"),
                format!("{rt}?_count=100&_total=accurate"),
                format!("{rt}?_summary=count"),
            ] {
                let (st, b) = c.get(who, &q);
                if !scope_ok {
                    assert_eq!(st, 403, "{who:?} {q}");
                    continue;
                }
                assert_eq!(st, 200, "{who:?} {q}: {b}");
                let want = c.visible(who, rt);
                if q.contains("_summary=count") || q.contains("_total") {
                    assert_eq!(b["total"], want.len(), "{who:?} {q}");
                }
                if !q.contains("_summary") {
                    assert_eq!(ids_of(&b), want, "{who:?} {q}");
                }
                c.assert_no_leak(who, &b, &q);
                checks += 1;
            }
        }
        // Includes, reverse includes, chains, _has, and the compartment.
        for q in [
            "Observation?_include=Observation:subject&_include=Observation:performer&_count=100",
            "Patient?_revinclude=Observation:subject&_revinclude=Condition:subject&_count=100",
            "Observation?subject:Patient.family=Suzuki",
            "Observation?subject.gender=female&_total=accurate",
            "Patient?_has:Observation:subject:code=2345-7&_total=accurate",
            "Practitioner?_has:Observation:performer:code=2345-7",
            "Patient/p2/Observation",
            "Patient/p1/Observation",
            "Patient/p2/$everything",
            "Patient/p1/$everything",
            "Patient/$everything",
            "Observation/_history",
            "_history",
            "?_type=Observation",
        ] {
            let (st, b) = c.get(who, q);
            assert!(st != 500, "{who:?} {q}: {b}");
            c.assert_no_leak(who, &b, q);
            if st == 200 && q.contains("_total=accurate") {
                // Totals count only what may be seen.
                let rt = q.split('?').next().unwrap();
                assert!(
                    b["total"].as_u64().unwrap() as usize <= c.visible(who, rt).len(),
                    "{who:?} {q}"
                );
            }
            checks += 1;
        }
        // Batch GET entries obey the same rules.
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient/p2"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/p2"}},
            {"request": {"method": "GET", "url": "Observation/p2-laboratory/_history/1"}},
        ]});
        let (st, b) = c.send(who, "POST", "", &batch);
        assert!(st == 200 || st == 403, "{who:?} batch: {b}");
        c.assert_no_leak(who, &b, "batch");
        checks += 1;
    }
    println!("access matrix: {checks} checks, no leak");
}

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
    let next = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
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
    // The chain verifies.
    let report = issho_audit::verify(c.s.dir()).expect("audit trail intact");
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
