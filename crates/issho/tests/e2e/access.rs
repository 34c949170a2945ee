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
pub(crate) const CLINS: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication";
pub(crate) const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The record; with `consent`, p1 refuses mental-health (PSY) records to everyone.
pub(crate) fn data(consent: bool) -> Vec<Value> {
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
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "provision": {"type": "deny", "securityLabel": [{"system": ACT, "code": "PSY"}]}}));
    }
    out
}

pub(crate) fn has_meta(r: &Value, list: &str, code: &str) -> bool {
    r["meta"][list]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["code"] == code)
}

pub(crate) fn patient_of(r: &Value) -> Option<String> {
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
pub(crate) enum Who {
    Patient1,
    Patient1Lab,
    DoctorA,
    DoctorB,
    Admin,
    Service,
    Researcher,
}

pub(crate) const ALL: [Who; 7] = [
    Who::Patient1,
    Who::Patient1Lab,
    Who::DoctorA,
    Who::DoctorB,
    Who::Admin,
    Who::Service,
    Who::Researcher,
];

/// The rules, independently: may `who` see `r` (with p1's consent in force or not)?
pub(crate) fn may_see(who: Who, r: &Value, consent: bool) -> bool {
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

pub(crate) fn user(who: Who) -> (User, Option<&'static str>) {
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

pub(crate) fn token(auth: &Auth, who: Who) -> String {
    let (u, scope) = user(who);
    auth.put_user(&u, "a long password").unwrap();
    auth.issue_for_user(&u, scope).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) struct Ctx {
    pub(crate) s: Server,
    pub(crate) data: Vec<Value>,
    pub(crate) tokens: Vec<(Who, String)>,
    pub(crate) consent: bool,
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
        let text = r.text().unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
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
        let text = r.text().unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    pub(crate) fn visible(&self, who: Who, rt: &str) -> BTreeSet<String> {
        self.data
            .iter()
            .filter(|r| r["resourceType"] == rt && may_see(who, r, self.consent))
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }
    /// Every resource anywhere in `v` must be one `who` may see (the leak check).
    pub(crate) fn assert_no_leak(&self, who: Who, v: &Value, what: &str) {
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

pub(crate) fn collect_resources(v: &Value, out: &mut Vec<(String, String)>) {
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

pub(crate) fn ids_of(b: &Value) -> BTreeSet<String> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn setup() -> Ctx {
    setup_with(false)
}

pub(crate) fn setup_with(consent: bool) -> Ctx {
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
