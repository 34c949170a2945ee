//! The attack matrix over every resource type that can hold a patient's data (derived from
//! the R4 tables: every type with an element that may refer to a Patient), for a patient,
//! a clinician, a pharmacist and an emergency physician at another hospital, and a researcher:
//! read, vread, history, search, counts, batch and transaction GET entries, writes, and
//! paging links taken before a consent refusal. Positive controls (the owner and their
//! hospital's doctor) keep the matrix from passing vacuously.

use crate::common::*;
use issho_access::Role;
use issho_auth::User;
use serde_json::{Value, json};

/// Every resource type (but Patient) with an element that may refer to a Patient, and a
/// minimal body of that type whose only patient reference names `patient` there.
fn patient_data_types(patient: &str) -> Vec<(String, Value)> {
    let r4 = issho_model::r4();
    let mut out = Vec::new();
    for rt in r4.resource_types() {
        // Person is kept by the server, written by no client (its probes: identity.rs).
        if rt == "Patient" || rt == "Person" {
            continue;
        }
        let td = r4.type_def(rt).unwrap();
        let refers = |e: &&issho_model::ElementDef| {
            !e.is_choice
                && e.types.iter().any(|t| {
                    t.code == "Reference"
                        && (t.targets.is_empty()
                            || t.targets.iter().any(|x| x == "Patient" || x == "Resource"))
                })
        };
        let candidates: Vec<&issho_model::ElementDef> = td.elements.iter().filter(refers).collect();
        let preferred = ["subject", "patient", "for", "beneficiary", "member.entity"];
        let Some(e) = preferred
            .iter()
            .find_map(|p| candidates.iter().find(|e| e.path == *p))
            .or(candidates.first())
        else {
            continue;
        };
        let mut v = json!({"reference": format!("Patient/{patient}")});
        let segs: Vec<&str> = e.path.split('.').collect();
        for i in (0..segs.len()).rev() {
            if td.element(&segs[..=i].join(".")).unwrap().is_array() {
                v = json!([v]);
            }
            v = json!({segs[i]: v});
        }
        v["resourceType"] = json!(rt);
        out.push((rt.clone(), v));
    }
    out
}

/// A reference search parameter of `rt` that may point at an Organization, on a top-level
/// element other than `patient_element`: (parameter code, element name, is an array).
fn organization_param(rt: &str, patient_element: &str) -> Option<(String, String, bool)> {
    let r4 = issho_model::r4();
    let td = r4.type_def(rt)?;
    for sp in r4.search_parameters() {
        if sp.kind != "reference"
            || !sp.base.iter().any(|b| b == rt)
            || !sp.target.iter().any(|t| t == "Organization")
        {
            continue;
        }
        for part in sp.expression.as_deref().unwrap_or_default().split('|') {
            let Some(path) = part.trim().strip_prefix(&format!("{rt}.")) else {
                continue;
            };
            let path = path
                .strip_suffix(".where(resolve() is Organization)")
                .unwrap_or(path);
            if !path.chars().all(|c| c.is_ascii_alphanumeric()) || path == patient_element {
                continue;
            }
            let Some(e) = td.element(path) else { continue };
            let reference = e.types.iter().any(|t| {
                t.code == "Reference"
                    && (t.targets.is_empty()
                        || t.targets
                            .iter()
                            .any(|x| x == "Organization" || x == "Resource"))
            });
            if reference && !e.is_choice {
                return Some((sp.code.clone(), path.to_string(), e.is_array()));
            }
        }
    }
    None
}

/// The top-level element of a minimal body that holds its patient reference.
fn patient_element(body: &Value) -> String {
    body.as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "resourceType" && *k != "id")
        .cloned()
        .unwrap_or_default()
}

type M = Signed;

impl Signed {
    fn get_url(&self, who: &str, url: &str) -> (u16, Value) {
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
}

fn users() -> Vec<(&'static str, User)> {
    let u = user;
    vec![
        (
            "p1",
            u("p1", Role::Patient, "patient/*.cruds", Some("p1"), None),
        ),
        (
            "p2",
            u("p2", Role::Patient, "patient/*.cruds", Some("p2"), None),
        ),
        (
            "doc-a",
            u(
                "doc-a",
                Role::Physician,
                "user/*.cruds",
                None,
                Some("org-a"),
            ),
        ),
        (
            "pharm-a",
            u(
                "pharm-a",
                Role::Pharmacist,
                "user/*.rs user/MedicationDispense.cruds",
                None,
                Some("org-a"),
            ),
        ),
        (
            "er-a",
            u(
                "er-a",
                Role::EmergencyPhysician,
                "user/*.rs",
                None,
                Some("org-a"),
            ),
        ),
        ("res", u("res", Role::Researcher, "user/*.rs", None, None)),
        (
            "doc-b",
            u(
                "doc-b",
                Role::Physician,
                "user/*.cruds",
                None,
                Some("org-b"),
            ),
        ),
        (
            "admin",
            u("admin", Role::Administrator, "user/*.cruds", None, None),
        ),
    ]
}

fn setup() -> (M, Vec<(String, Value)>) {
    let config = issho_engine::EngineConfig {
        validate: false,
        ..Default::default()
    };
    let m = Signed::start(config, users());
    let put = |path: &str, body: &Value| {
        let (st, b) = m.call("admin", "PUT", path, Some(body));
        assert!(st == 200 || st == 201, "{path}: {st} {b}");
    };
    for (p, org) in [("p1", "org-a"), ("p2", "org-b")] {
        put(
            &format!("Organization/{org}"),
            &json!({"resourceType": "Organization", "id": org}),
        );
        put(
            &format!("Patient/{p}"),
            &json!({"resourceType": "Patient", "id": p}),
        );
        put(
            &format!("Encounter/{p}-enc"),
            &json!({"resourceType": "Encounter", "id": format!("{p}-enc"), "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{p}")},
                "serviceProvider": {"reference": format!("Organization/{org}")}}),
        );
    }
    put(
        "Organization/org-x",
        &json!({"resourceType": "Organization", "id": "org-x", "name": "X"}),
    );
    let types = patient_data_types("p2");
    // p1's own Observations, each naming (before it exists) a resource of p2's: probes for
    // chains and includes from what the attackers may read into what they may not.
    for (rt, _) in &types {
        let id = format!("probe-{}", rt.to_lowercase());
        put(
            &format!("Observation/{id}"),
            &json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "probe"},
                "subject": {"reference": "Patient/p1"},
                "focus": [{"reference": format!("{rt}/m1-{}", rt.to_lowercase())}]}),
        );
    }
    for (rt, body) in &types {
        for n in 1..=2 {
            let id = format!("m{n}-{}", rt.to_lowercase());
            let mut b = body.clone();
            b["id"] = json!(id);
            // The second one also names a shared Organization (nobody's care), for `_has`.
            if n == 2
                && let Some((_, element, array)) = organization_param(rt, &patient_element(body))
            {
                let r = json!({"reference": "Organization/org-x"});
                b[element] = if array { json!([r]) } else { r };
            }
            // Encounters are p2's care at hospital B already; others must not change care.
            put(&format!("{rt}/{id}"), &b);
        }
    }
    (m, types)
}

fn denied(st: u16) -> bool {
    st == 403 || st == 404
}

#[test]
fn no_principal_outside_a_record_reaches_any_patient_data_type() {
    let (m, types) = setup();
    assert!(types.len() >= 77, "{}", types.len());
    let mut leaks: Vec<String> = Vec::new();
    let mut has_probes = 0;
    for (rt, body) in &types {
        let id = format!("m1-{}", rt.to_lowercase());
        // Positive controls: the owner and their hospital's doctor see it.
        for who in ["p2", "doc-b", "admin"] {
            let (st, b) = m.call(who, "GET", &format!("{rt}/{id}"), None);
            if st != 200 {
                leaks.push(format!("control {who} cannot read {rt}/{id}: {st} {b}"));
            }
        }
        for who in ["p1", "doc-a", "pharm-a", "er-a", "res"] {
            let mut probe = |what: &str, ok: bool| {
                if !ok {
                    leaks.push(format!("{who} {rt}: {what}"));
                }
            };
            let get = |path: &str| m.call(who, "GET", path, None);
            probe("read", denied(get(&format!("{rt}/{id}")).0));
            probe("vread", denied(get(&format!("{rt}/{id}/_history/1")).0));
            probe("history", denied(get(&format!("{rt}/{id}/_history")).0));
            let holds = |b: &Value| {
                b["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["resource"]["id"] == id.as_str())
            };
            let (st, b) = get(&format!("{rt}?_id={id}"));
            probe(
                &format!("search {st}"),
                denied(st) || (st == 200 && !holds(&b)),
            );
            let (st, b) = get(&format!("{rt}?_id={id}&_summary=count"));
            probe(&format!("count {b}"), denied(st) || b["total"] == 0);
            let (st, b) = get(rt);
            probe("search all", denied(st) || (st == 200 && !holds(&b)));
            for kind in ["batch", "transaction"] {
                let bundle = json!({"resourceType": "Bundle", "type": kind,
                    "entry": [{"request": {"method": "GET", "url": format!("{rt}/{id}")}}]});
                let (st, b) = m.call(who, "POST", "", Some(&bundle));
                let inner = b["entry"][0]["response"]["status"].as_str().unwrap_or("");
                probe(
                    &format!("{kind} GET {st} {inner}"),
                    denied(st) || inner.starts_with("403") || inner.starts_with("404"),
                );
            }
            // Chains and includes from p1's probe Observation into p2's resource.
            let probe_id = format!("probe-{}", rt.to_lowercase());
            let (st, b) = get(&format!(
                "Observation?_id={probe_id}&focus:{rt}._id={id}&_summary=count"
            ));
            probe(&format!("chain {b}"), denied(st) || b["total"] == 0);
            let (st, b) = get(&format!(
                "Observation?_id={probe_id}&_include=Observation:focus&_include:iterate={rt}:*"
            ));
            probe("include", denied(st) || !holds(&b));
            // `_has` from shared data the attacker may read, through p2's resource.
            if let Some((code, _, _)) = organization_param(rt, &patient_element(body)) {
                let (st, b) = get(&format!(
                    "Organization?_id=org-x&_has:{rt}:{code}:_id=m2-{}&_summary=count",
                    rt.to_lowercase()
                ));
                probe(&format!("_has {b}"), denied(st) || b["total"] == 0);
            }
            let mut changed = body.clone();
            changed["id"] = json!(id);
            changed["language"] = json!("en");
            let (st, _) = m.call(who, "PUT", &format!("{rt}/{id}"), Some(&changed));
            probe(&format!("update {st}"), !(200..300).contains(&st));
            let (st, _) = m.call(who, "DELETE", &format!("{rt}/{id}"), None);
            probe(&format!("delete {st}"), !(200..300).contains(&st));
        }
        // Controls for the probes: the administrator's chain and include do reach it.
        let probe_id = format!("probe-{}", rt.to_lowercase());
        let (_, b) = m.call(
            "admin",
            "GET",
            &format!("Observation?_id={probe_id}&focus:{rt}._id={id}&_summary=count"),
            None,
        );
        if b["total"] != 1 {
            leaks.push(format!("control: admin chain into {rt}: {b}"));
        }
        let (_, b) = m.call(
            "admin",
            "GET",
            &format!("Observation?_id={probe_id}&_include=Observation:focus"),
            None,
        );
        let included = b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["resource"]["id"] == id.as_str());
        if !included {
            leaks.push(format!("control: admin include of {rt}: {b}"));
        }
        if let Some((code, _, _)) = organization_param(rt, &patient_element(body)) {
            has_probes += 1;
            let path = format!(
                "Organization?_id=org-x&_has:{rt}:{code}:_id=m2-{}&_summary=count",
                rt.to_lowercase()
            );
            let (_, b) = m.call("admin", "GET", &path, None);
            if b["total"] != 1 {
                leaks.push(format!("control: admin {path}: {b}"));
            }
        }
        let (_, b) = m.call("admin", "GET", &format!("{rt}/{id}"), None);
        if b["meta"]["versionId"] != "1" {
            leaks.push(format!("{rt}/{id} was changed: {b}"));
        }
    }
    assert!(has_probes >= 20, "{has_probes} types probed with _has");
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[test]
fn paging_links_of_every_patient_data_type_follow_a_refusal() {
    let (m, types) = setup();
    // Doctor B takes the first page of every type (p2 has two of each).
    let mut nexts = Vec::new();
    for (rt, _) in &types {
        let (st, b) = m.call("doc-b", "GET", &format!("{rt}?_count=1&_sort=_id"), None);
        assert_eq!(st, 200, "{rt}: {b}");
        let next = b["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        let next = next.unwrap_or_else(|| panic!("{rt}: no next link: {b}"));
        nexts.push((rt.clone(), next));
    }
    let consent = json!({"resourceType": "Consent", "id": "p2-refuses", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p2"}, "provision": {"type": "deny"}});
    let (st, b) = m.call("p2", "POST", "Consent", Some(&consent));
    assert_eq!(st, 201, "{b}");
    let mut leaks = Vec::new();
    for (rt, next) in nexts {
        let (st, b) = m.get_url("doc-b", &next);
        let entries = b["entry"].as_array().map_or(0, |e| {
            e.iter().filter(|x| x["search"]["mode"] == "match").count()
        });
        if st != 200 || entries != 0 {
            leaks.push(format!("{rt}: {st} {entries} entries after the refusal"));
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}
