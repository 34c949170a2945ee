//! Research projects over HTTP (issue 14): a researcher's and a research backend service's
//! `$export` holds only the persons whose research consent allows it, k-anonymous and
//! de-identified — no direct identifier of the demo population survives — and the members
//! get nothing else, whatever they try.

use crate::bulk::{download, kickoff, on, wait};
use crate::common::*;
use issho_access::Role;
use issho_research::{AddressRule, Profile, Project, Projects, Quasi};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const PERSONS: usize = 40;
pub(crate) const DEID: &str = "https://issho.example/fhir/bulk/deidentification";

fn users() -> Vec<(&'static str, issho_auth::User)> {
    vec![
        (
            "admin",
            user("admin", Role::Administrator, "user/*.cruds", None, None),
        ),
        (
            "res",
            user("res", Role::Researcher, "user/*.rs", None, None),
        ),
        (
            "res-obs",
            user(
                "res-obs",
                Role::Researcher,
                "user/Observation.rs",
                None,
                None,
            ),
        ),
        (
            "res-b",
            user("res-b", Role::Researcher, "user/*.rs", None, None),
        ),
        (
            "res-b-w",
            user(
                "res-b-w",
                Role::Researcher,
                "user/*.rs user/ViewDefinition.cud",
                None,
                None,
            ),
        ),
        (
            "res-c",
            user("res-c", Role::Researcher, "user/*.rs", None, None),
        ),
        (
            "outsider",
            user("outsider", Role::Researcher, "user/*.rs", None, None),
        ),
        (
            "svc-r",
            user("svc-r", Role::Service, "system/*.cruds", None, None),
        ),
        ("svc", user("svc", Role::Service, "system/*.rs", None, None)),
        (
            "pat2",
            user("pat2", Role::Patient, "patient/*.cruds", Some("p2"), None),
        ),
        (
            "pat0",
            user(
                "pat0",
                Role::Patient,
                "patient/*.rs",
                Some("demo-p0-pat1"),
                None,
            ),
        ),
        (
            "doc-x",
            user("doc-x", Role::Physician, "user/*.rs", None, Some("nowhere")),
        ),
    ]
}

/// The projects: `study-a` (20-year age band and sex; k = 3) for `res`, `res-obs` and the backend
/// service `svc-r`; `study-b` (the standard profile: with the prefecture, k = 5) for `res-b`;
/// and `res-b-w` (who may also write views); both release at once (the test's data is new); `study-c` (the standard profile, released in
/// half-year batches) for `res-c`.
fn projects(dir: &std::path::Path) -> (Project, Project) {
    let mut ps = Projects::open(dir).unwrap();
    let a = Project::new(
        "study-a",
        "A",
        vec!["res".into(), "res-obs".into(), "svc-r".into()],
        Profile {
            address: AddressRule::Remove,
            quasi_identifiers: vec![Quasi::Age, Quasi::Gender],
            age_band_years: 20,
            k: 3,
            release_every_months: 0,
            ..Profile::default()
        },
    )
    .unwrap();
    let at_once = Profile {
        release_every_months: 0,
        ..Profile::default()
    };
    let b = Project::new(
        "study-b",
        "B",
        vec!["res-b".into(), "res-b-w".into()],
        at_once,
    )
    .unwrap();
    let c = Project::new("study-c", "C", vec!["res-c".into()], Profile::default()).unwrap();
    ps.put(a).unwrap();
    ps.put(b).unwrap();
    ps.put(c).unwrap();
    let ps = Projects::open(dir).unwrap();
    (
        ps.get("study-a").unwrap().clone(),
        ps.get("study-b").unwrap().clone(),
    )
}

pub(crate) struct World {
    pub(crate) c: Signed,
    pub(crate) a: Project,
    pub(crate) b: Project,
    /// Every demo resource, by "Type/id".
    pub(crate) all: BTreeMap<String, Value>,
    /// Person number → its Patients' ids.
    pub(crate) patients: BTreeMap<usize, Vec<String>>,
    /// Persons who refused research.
    pub(crate) refused: BTreeSet<usize>,
}

pub(crate) fn world(config: issho_engine::EngineConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = projects(dir.path());
    let c = Signed::start_in(dir, config, users());
    let cfg = issho_demo::DemoConfig {
        persons: PERSONS,
        seed: 5,
    };
    let (st, body) = c.call(
        "admin",
        "POST",
        "",
        Some(&issho_demo::reference_bundle(&cfg)),
    );
    assert_eq!(st, 200, "{body}");
    let mut all = BTreeMap::new();
    for r in issho_demo::reference_resources() {
        all.insert(format!("{}/{}", r.resource_type, r.id), r.resource);
    }
    let mut patients: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut refused = BTreeSet::new();
    for i in 0..PERSONS {
        let (st, body) = c.call(
            "admin",
            "POST",
            "",
            Some(&issho_demo::person_bundle(&cfg, i)),
        );
        assert_eq!(st, 200, "{body}");
        for r in issho_demo::person_resources(&cfg, i) {
            if r.resource_type == "Patient" {
                patients.entry(i).or_default().push(r.id.clone());
            }
            if r.resource_type == "Consent" && r.resource["provision"]["type"] == "deny" {
                refused.insert(i);
            }
            all.insert(format!("{}/{}", r.resource_type, r.id), r.resource);
        }
        // Referral letters and discharge summaries (JP-CLINS documents), with the
        // Patients, practitioners and institutions they carry.
        for (k, doc) in issho_demo::documents(&cfg, i).into_iter().enumerate() {
            let (st, body) = c.call("admin", "POST", "/Bundle", Some(&doc));
            assert_eq!(st, 201, "{body}");
            for (n, e) in doc["entry"].as_array().unwrap().iter().enumerate() {
                let rt = e["resource"]["resourceType"].as_str().unwrap();
                all.insert(format!("{rt}/doc-{i}-{k}-{n}"), e["resource"].clone());
            }
        }
    }
    assert!(
        !refused.is_empty(),
        "the demo population has persons who refused research"
    );
    World {
        c,
        a,
        b,
        all,
        patients,
        refused,
    }
}

/// Runs an export to its end: the manifest and every file's resources.
fn export(c: &Signed, who: &str, path: &str) -> (Value, Vec<Value>) {
    let (st, loc, body) = kickoff(c, who, path, true);
    assert_eq!(st, 202, "{who} {path}: {body}");
    let manifest = wait(c, who, &loc.unwrap());
    let mut out = Vec::new();
    for f in manifest["output"].as_array().unwrap() {
        let (st, rs) = download(c, who, f["url"].as_str().unwrap());
        assert_eq!(st, 200);
        out.extend(rs);
    }
    (manifest, out)
}

/// Strings of the demo population that identify a person or an institution directly.
pub(crate) fn direct_identifiers(all: &BTreeMap<String, Value>) -> BTreeSet<String> {
    fn strings(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                out.insert(s.clone());
            }
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for (key, r) in all {
        let t = key.split('/').next().unwrap();
        for field in [
            "name",
            "telecom",
            "identifier",
            "address",
            "contact",
            "photo",
        ] {
            if let Some(v) = r.get(field) {
                let mut s = BTreeSet::new();
                strings(v, &mut s);
                // The parts that name: not the systems, uses and countries they share.
                out.extend(s.into_iter().filter(|x| {
                    !x.starts_with("http")
                        && !x.starts_with("urn:")
                        && !matches!(
                            x.as_str(),
                            "official"
                                | "usual"
                                | "home"
                                | "work"
                                | "phone"
                                | "email"
                                | "JP"
                                | "mobile"
                                | "IDE"
                                | "SYL"
                                | "ABC"
                        )
                        && x.chars().count() >= 2
                }));
            }
        }
        // Birth dates are checked on the released Patients (none has one): elsewhere, a
        // person's shifted date may equal another person's birth date by chance.
        if t == "Patient" && !key.contains("/doc-") {
            out.insert(key.split('/').nth(1).unwrap().to_string());
        }
        if t == "Coverage" {
            out.insert(r["subscriberId"].as_str().unwrap().to_string());
            for e in r["extension"].as_array().into_iter().flatten() {
                if let Some(s) = e["valueString"].as_str() {
                    out.insert(s.to_string());
                }
            }
        }
    }
    // A prefecture is kept on purpose by the standard profile (not by study-a's); short
    // shared words are not identifiers.
    out.retain(|s| s.chars().count() >= 2);
    out
}

pub(crate) fn leaks(output: &[Value], secrets: &BTreeSet<String>) -> Vec<String> {
    let text: String = output.iter().map(|r| r.to_string()).collect();
    secrets
        .iter()
        .filter(|s| {
            let whole = text.contains(&format!("\"{s}\"")) || text.contains(&format!("/{s}\""));
            match (s.is_ascii(), s.chars().count()) {
                // Numbers and codes of fewer than four characters identify nobody (and
                // are every prefecture's and category's codes).
                (true, n) if n < 4 => false,
                // As a whole JSON string or a reference's id.
                (true, _) => whole,
                // Two-character names in kanji or kana as whole strings (not inside a
                // drug's name), longer ones anywhere (in free text too).
                (false, 2) => whole,
                (false, _) => text.contains(s.as_str()),
            }
        })
        .cloned()
        .collect()
}

#[test]
fn a_researchers_export_holds_consenting_persons_only_and_no_direct_identifier() {
    let w = world(Default::default());
    let (manifest, out) = export(&w.c, "res", "/$export");
    let report = &manifest["extension"][DEID];
    assert_eq!(report["project"], "study-a", "{manifest}");
    assert_eq!(
        report["personsConsidered"].as_u64().unwrap() as usize,
        PERSONS - w.refused.len(),
        "{report}"
    );
    let released = report["personsReleased"].as_u64().unwrap() as usize;
    assert!(released > PERSONS / 2, "{report}");
    assert!(
        report["classes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["persons"].as_u64().unwrap() >= 3)
    );

    // No direct identifier of the demo population survives (names in kanji and kana,
    // patient and insurance numbers, phones, addresses, ids; birth dates below).
    let secrets = direct_identifiers(&w.all);
    assert!(secrets.len() > 200, "{}", secrets.len());
    let found = leaks(&out, &secrets);
    assert!(
        found.is_empty(),
        "direct identifiers in a research export: {found:?}"
    );
    // The same check finds them in a service's ordinary export (the check can fail).
    let (_, plain) = export(&w.c, "svc", "/$export?_type=Patient,Coverage");
    assert!(leaks(&plain, &secrets).len() > 100);

    // Only persons who did not refuse; each released person under its pseudonyms.
    let ids: BTreeSet<&str> = out
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut persons_seen = BTreeSet::new();
    for (i, pats) in &w.patients {
        let seen = pats
            .iter()
            .filter(|p| ids.contains(w.a.pseudonym("id", &format!("Patient/{p}")).as_str()))
            .count();
        if w.refused.contains(i) {
            assert_eq!(seen, 0, "person {i} refused research");
        } else if seen > 0 {
            assert_eq!(seen, pats.len(), "all Patients of person {i}");
            persons_seen.insert(*i);
        }
    }
    assert_eq!(persons_seen.len(), released);
    // Every Patient carries the person's pseudonym, and no birth date but an age band.
    let mut person_pseudonyms = BTreeSet::new();
    for p in out.iter().filter(|r| r["resourceType"] == "Patient") {
        assert!(p.get("birthDate").is_none());
        assert!(p.get("name").is_none() && p.get("address").is_none());
        assert_eq!(p["identifier"].as_array().unwrap().len(), 1);
        person_pseudonyms.insert(p["identifier"][0]["value"].as_str().unwrap().to_string());
        assert!(
            p["extension"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["url"] == issho_research::AGE_BAND)
        );
    }
    assert_eq!(person_pseudonyms.len(), released);
    // References hold within the export: every subject is an exported Patient.
    for r in out.iter().filter(|r| r["resourceType"] == "Observation") {
        let s = r["subject"]["reference"].as_str().unwrap();
        assert!(ids.contains(s.strip_prefix("Patient/").unwrap()), "{s}");
        assert!(r.get("meta").and_then(|m| m.get("lastUpdated")).is_none());
    }
    // Types the profile keeps back are not there.
    for t in ["Consent", "AuditEvent", "Provenance"] {
        assert!(out.iter().all(|r| r["resourceType"] != t), "{t}");
    }
    // Dates moved, intervals kept: each exported Encounter's length is the original's.
    let mut moved = 0;
    let mut checked = 0;
    for (key, orig) in w.all.iter().filter(|(k, _)| k.starts_with("Encounter/")) {
        let (Some(s0), Some(e0)) = (
            orig["period"]["start"].as_str(),
            orig["period"]["end"].as_str(),
        ) else {
            continue;
        };
        let pid = w.a.pseudonym("id", key);
        let Some(got) = out
            .iter()
            .find(|r| r["resourceType"] == "Encounter" && r["id"] == pid.as_str())
        else {
            continue;
        };
        let (s1, e1) = (
            got["period"]["start"].as_str().unwrap(),
            got["period"]["end"].as_str().unwrap(),
        );
        let day = |s: &str| {
            issho_model::instant::days_from_civil(
                s[..4].parse().unwrap(),
                s[5..7].parse().unwrap(),
                s[8..10].parse().unwrap(),
            )
        };
        assert_eq!(day(e1) - day(s1), day(e0) - day(s0), "{key}");
        assert_eq!(s1[10..], s0[10..], "the time of day stays");
        if s1 != s0 {
            moved += 1;
        }
        checked += 1;
    }
    assert!(checked > 20 && moved > checked / 2, "{moved} of {checked}");

    // The output is valid FHIR: each type's first resources pass $validate (documents'
    // Compositions, whose narrative went, included).
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &out {
        let t = r["resourceType"].as_str().unwrap();
        let n = by_type.entry(t).or_default();
        if *n >= 20 {
            continue;
        }
        *n += 1;
        let (st, oo) =
            w.c.call("admin", "POST", &format!("/{t}/$validate"), Some(r));
        let errors: Vec<&Value> = oo["issue"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["severity"] == "error" || i["severity"] == "fatal")
            .collect();
        assert!(st == 200 && errors.is_empty(), "{t}: {st} {errors:?}\n{r}");
    }
    assert!(by_type.len() >= 8, "{by_type:?}");
    assert!(by_type.contains_key("Composition"), "{by_type:?}");

    // Another project gets other pseudonyms for the same persons, and applies its own
    // k-anonymity (the prefecture as well, k = 5): rare combinations are held back.
    let (manifest_b, out_b) = export(&w.c, "res-b", "/$export?_type=Patient");
    let ids_b: BTreeSet<&str> = out_b.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.is_disjoint(&ids_b));
    let rb = &manifest_b["extension"][DEID];
    assert_eq!(rb["project"], "study-b");
    assert!(rb["personsSuppressed"].as_u64().unwrap() > 0, "{rb}");
    for c in rb["classes"].as_array().unwrap() {
        assert!(c["persons"].as_u64().unwrap() >= 5, "{c}");
        assert_eq!(c["values"].as_array().unwrap().len(), 3);
    }
    for p in &out_b {
        assert!(p["address"][0].get("city").is_none());
    }
}

#[test]
fn research_members_get_nothing_but_de_identified_exports() {
    let w = world(Default::default());
    let c = &w.c;
    let pat = &w.patients[&0][0];
    for who in ["res", "svc-r"] {
        // Individual records, searches, history, operations and writes: refused.
        for (method, path) in [
            ("GET", format!("/Patient/{pat}")),
            ("GET", "/Patient".to_string()),
            (
                "GET",
                "/Observation?code=http://loinc.org|4548-4".to_string(),
            ),
            ("GET", format!("/Patient/{pat}/$everything")),
            ("GET", format!("/Patient/{pat}/_history")),
            ("GET", "/_history".to_string()),
            ("GET", "/?_type=Patient".to_string()),
            ("GET", "/Group".to_string()),
            ("GET", "/AuditEvent".to_string()),
            ("GET", format!("/Patient/{pat}/$access-log")),
        ] {
            let (st, body) = c.call(who, method, &path, None);
            assert!(st == 403 || st == 404, "{who} {method} {path}: {st} {body}");
            assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
        }
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": format!("Patient/{pat}")}});
        let (st, _) = c.call(who, "POST", "/Observation", Some(&obs));
        assert_eq!(st, 403, "{who} writes");
    }
    // Export requests that would re-identify: refused at the kick-off.
    for (path, want) in [
        ("/$export?_since=2020-01-01T00:00:00Z", 400),
        (
            "/$export?_type=Patient&_typeFilter=Patient%3Fname%3D%E5%B1%B1%E7%94%B0",
            400,
        ),
        (
            "/$export?_type=Patient&_typeFilter=Patient%3Fidentifier%3D00000001",
            400,
        ),
        (
            "/$export?_type=Patient&_typeFilter=Patient%3Fbirthdate%3D1950-01-01",
            400,
        ),
        (
            "/$export?_type=Observation&_typeFilter=Observation%3Fsubject%3DPatient%2Fdemo-p0-pat1",
            400,
        ),
        (
            "/$export?_type=Observation&_typeFilter=Observation%3F_id%3Dx",
            400,
        ),
        (
            "/$export?_type=Observation&_typeFilter=Observation%3Fsubject.name%3Dx",
            400,
        ),
        ("/$export?_type=Consent", 403),
        ("/$export?_type=AuditEvent", 403),
        (
            "/$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources",
            403,
        ),
    ] {
        let (st, _, body) = kickoff(c, "res", path, true);
        assert_eq!(st, want, "{path}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    // Released in half-year batches: what was written since the last boundary is not out yet.
    let (m, out) = export(c, "res-c", "/$export?_type=Patient,Observation");
    assert!(out.is_empty(), "{m}");
    assert!(m["extension"][DEID]["personsConsidered"].as_u64().unwrap() > 0);
    // A researcher outside every project, and a member whose scopes do not cover a type.
    let (st, _, _) = kickoff(c, "outsider", "/$export", true);
    assert_eq!(st, 403);
    let (st, _, _) = kickoff(c, "res-obs", "/$export?_type=Patient", true);
    assert_eq!(st, 403);
    // Filtering by codes is fine, and still de-identified; the files are the owner's only.
    let (m, out) = export(
        c,
        "res",
        "/$export?_type=Observation&_typeFilter=Observation%3Fcategory%3Dlaboratory",
    );
    assert!(m["extension"][DEID].is_object());
    assert!(!out.is_empty());
    assert!(
        out.iter()
            .all(|r| r.get("text").is_none()
                && r.get("meta").and_then(|m| m.get("source")).is_none())
    );
    let url = m["output"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(download(c, "res", &url).0, 200);
    assert_eq!(download(c, "svc-r", &url).0, 404, "another member's file");
    assert_eq!(download(c, "svc", &url).0, 404, "another client's file");
    // The research backend service gets the research export whatever its scope says.
    let (m, out) = export(c, "svc-r", "/$export?_type=Patient");
    assert_eq!(m["extension"][DEID]["project"], "study-a");
    assert!(out.iter().all(|p| p.get("name").is_none()));
    // A Patient-level and a Group export too.
    let (_, out) = export(c, "res", "/Patient/$export?_type=Patient");
    assert!(!out.is_empty() && out.iter().all(|p| p.get("name").is_none()));
    let members: Vec<Value> = w
        .patients
        .values()
        .take(10)
        .map(|p| json!({"entity": {"reference": format!("Patient/{}", p[0])}}))
        .collect();
    let group = json!({"resourceType": "Group", "id": "cohort", "type": "person",
        "actual": true, "member": members});
    let (st, _) = c.call("admin", "PUT", "/Group/cohort", Some(&group));
    assert!(st == 200 || st == 201);
    let (m, out) = export(c, "res", "/Group/cohort/$export?_type=Patient");
    let considered = m["extension"][DEID]["personsConsidered"].as_u64().unwrap();
    let refused_in_group = w
        .patients
        .keys()
        .take(10)
        .filter(|i| w.refused.contains(i))
        .count();
    assert_eq!(considered as usize, 10 - refused_in_group);
    let released = m["extension"][DEID]["personsReleased"].as_u64().unwrap() as usize;
    let group_patients: BTreeSet<String> = w
        .patients
        .values()
        .take(10)
        .flatten()
        .map(|p| w.a.pseudonym("id", &format!("Patient/{p}")))
        .collect();
    assert!(
        out.iter()
            .all(|p| group_patients.contains(p["id"].as_str().unwrap()))
    );
    assert!(out.len() >= released);
}

#[test]
fn research_consent_decides_who_takes_part() {
    let cases = [
        (issho_engine::ResearchDefault::OptOut, vec!["p1", "p2"]),
        (issho_engine::ResearchDefault::OptIn, vec!["p1"]),
    ];
    for (default, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut ps = Projects::open(dir.path()).unwrap();
        let project = Project::new(
            "s",
            "S",
            vec!["res".into()],
            Profile {
                k: 1,
                release_every_months: 0,
                ..Profile::default()
            },
        )
        .unwrap();
        ps.put(project).unwrap();
        let project = Projects::open(dir.path())
            .unwrap()
            .get("s")
            .unwrap()
            .clone();
        let c = Signed::start_in(
            dir,
            issho_engine::EngineConfig {
                research_default: default,
                ..Default::default()
            },
            users(),
        );
        for p in ["p1", "p2", "p3", "p4"] {
            c.store_as(
                "admin",
                &json!({"resourceType": "Patient", "id": p, "gender": "female",
                    "birthDate": "1960-05-05", "name": [{"family": format!("姓{p}")}]}),
            );
        }
        let research = |p: &str, kind: &str| {
            json!({"resourceType": "Consent", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": format!("Patient/{p}")},
                "dateTime": "2026-01-01",
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                "provision": {"type": kind}})
        };
        let (st, b) = c.call("admin", "POST", "/Consent", Some(&research("p1", "permit")));
        assert_eq!(st, 201, "{b}");
        let (st, _) = c.call("admin", "POST", "/Consent", Some(&research("p3", "deny")));
        assert_eq!(st, 201);
        // p4 refused their whole record to everyone (privacy): never released to research.
        let privacy = json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p4"},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": {"type": "deny"}});
        let (st, b) = c.call("admin", "POST", "/Consent", Some(&privacy));
        assert_eq!(st, 201, "{b}");
        // A research Consent issho could not enforce exactly is refused, not stored.
        let mut odd = research("p2", "deny");
        odd["provision"]["actor"] = json!([{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "Organization/x"}}]);
        let (st, b) = c.call("admin", "POST", "/Consent", Some(&odd));
        assert_eq!(st, 422, "{b}");
        let (_, out) = export(&c, "res", "/$export?_type=Patient");
        let got: BTreeSet<String> = out
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = want
            .iter()
            .map(|p| project.pseudonym("id", &format!("Patient/{p}")))
            .collect();
        assert_eq!(got, want, "{default:?}");
        // A later refusal takes the person out of the next export.
        let mut later = research("p1", "deny");
        later["dateTime"] = json!("2026-06-01");
        let (st, _) = c.call("admin", "POST", "/Consent", Some(&later));
        assert_eq!(st, 201);
        // The person refuses with their own token.
        let mut own = research("p2", "deny");
        own["dateTime"] = json!("2026-06-01");
        let (st, b) = c.call("pat2", "POST", "/Consent", Some(&own));
        assert_eq!(st, 201, "{b}");
        let (_, out) = export(&c, "res", "/$export?_type=Patient");
        for p in ["p1", "p2"] {
            let id = project.pseudonym("id", &format!("Patient/{p}"));
            assert!(
                out.iter().all(|r| r["id"] != id.as_str()),
                "{p} {default:?}"
            );
        }
    }
}

#[test]
fn a_members_jobs_are_bound_to_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let mut ps = Projects::open(dir.path()).unwrap();
    let one = Profile {
        k: 1,
        release_every_months: 0,
        ..Profile::default()
    };
    ps.put(Project::new("s", "S", vec!["res".into(), "svc-r".into()], one.clone()).unwrap())
        .unwrap();
    let c = Signed::start_in(dir, Default::default(), users());
    c.store_as(
        "admin",
        &json!({"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1970-01-01"}),
    );
    let (manifest, out) = export(&c, "res", "/$export?_type=Patient");
    assert_eq!(out.len(), 1);
    let file = manifest["output"][0]["url"].as_str().unwrap().to_string();
    let (_, status, _) = kickoff(&c, "res", "/$export?_type=Patient", true);
    let status = status.unwrap();
    wait(&c, "res", &status);
    // The researcher moves to another project: the first project's files are not theirs
    // any more (nor are its pseudonyms to be met with the new project's).
    let dir = c.s.stop();
    let mut ps = Projects::open(dir.path()).unwrap();
    ps.put(Project::new("s", "S", vec![], one.clone()).unwrap())
        .unwrap();
    ps.put(Project::new("t", "T", vec!["res".into()], one).unwrap())
        .unwrap();
    let c = Signed::start_in(dir, Default::default(), users());
    let file = on(&file, &c.s.base);
    assert_eq!(download(&c, "res", &file).0, 404);
    let r =
        c.s.client
            .get(on(&status, &c.s.base))
            .bearer_auth(c.tok("res"))
            .send()
            .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, out) = export(&c, "res", "/$export?_type=Patient");
    assert_eq!(out.len(), 1);
    assert_ne!(out[0]["id"], json!("p1"));
    // The research service taken off the project does not fall back to its system scopes.
    for path in ["/Patient/p1", "/Patient"] {
        let (st, body) = c.call("svc-r", "GET", path, None);
        assert_eq!(st, 403, "{path}: {body}");
    }
    let (st, _, _) = kickoff(&c, "svc-r", "/$export", true);
    assert_eq!(st, 403);
    // A Group a member asks for that does not exist is an empty cohort, not a 404.
    let (st, _, body) = kickoff(
        &c,
        "res",
        "/Group/no-such-group/$export?_type=Patient",
        true,
    );
    assert_eq!(st, 202, "{body}");
}
