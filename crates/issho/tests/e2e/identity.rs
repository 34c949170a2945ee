//! One person, many Patients, over HTTP: a certain match by JP insurance member ID links
//! two institutions' Patients; the person's token, `$everything`, compartment searches and
//! the clinicians in care reach the whole record; `$match` grades candidates; a registrar
//! links and unlinks; and the probes a patient, a clinician elsewhere and an impostor
//! registration would try.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const MEMBER: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

type Ctx = Signed;

impl Signed {
    fn get(&self, who: &str, path: &str) -> (u16, Value) {
        self.call(who, "GET", path, None)
    }
    fn put(&self, r: &Value) {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let (st, b) = self.call("admin", "PUT", &path, Some(r));
        assert!(st == 200 || st == 201, "{path}: {b}");
    }
    fn ids(&self, who: &str, path: &str) -> BTreeSet<String> {
        let (st, b) = self.get(who, path);
        assert_eq!(st, 200, "{path}: {b}");
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] != "outcome")
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap()
                )
            })
            .collect()
    }
}

fn patient(id: &str, org: &str, member: &str, birth: &str) -> Value {
    json!({"resourceType": "Patient", "id": id,
        "identifier": [{"system": MEMBER, "value": member}],
        "name": [
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}],
             "family": "牧野", "given": ["爛漫"]},
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}],
             "family": "マキノ", "given": ["ランマン"]}],
        "gender": "female", "birthDate": birth,
        "managingOrganization": {"reference": format!("Organization/{org}")}})
}

fn setup() -> Ctx {
    let c = Signed::start(
        Default::default(),
        vec![
            (
                "admin",
                user("admin", Role::Administrator, "user/*.cruds", None, None),
            ),
            (
                "pat-b",
                user("pat-b", Role::Patient, "patient/*.cruds", Some("pb"), None),
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
                "doc-c",
                user(
                    "doc-c",
                    Role::Physician,
                    "user/*.cruds",
                    None,
                    Some("org-c"),
                ),
            ),
            (
                "registrar",
                user("registrar", Role::Registrar, "user/*.cruds", None, None),
            ),
        ],
    );
    for o in ["org-a", "org-b", "org-c"] {
        c.put(&json!({"resourceType": "Organization", "id": o, "name": o}));
    }
    // Hospital A: the member ID as a receptionist typed it, full width.
    c.put(&patient(
        "pa",
        "org-a",
        "０００１２３４５:あいう:１８７:05",
        "1930-06-28",
    ));
    c.put(&json!({"resourceType": "Encounter", "id": "ea", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pa"}, "serviceProvider": {"reference": "Organization/org-a"}}));
    c.put(&json!({"resourceType": "Condition", "id": "ca",
        "code": {"text": "狭心症"}, "subject": {"reference": "Patient/pa"},
        "encounter": {"reference": "Encounter/ea"}}));
    c.put(&json!({"resourceType": "AllergyIntolerance", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}, "id": "aa",
        "code": {"text": "ペニシリン"}, "patient": {"reference": "Patient/pa"}}));
    // Clinic B registers the same person (half width, katakana): one person.
    c.put(&patient(
        "pb",
        "org-b",
        "00012345:アイウ:187:05",
        "1930-06-28",
    ));
    c.put(&json!({"resourceType": "Encounter", "id": "eb", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pb"}, "serviceProvider": {"reference": "Organization/org-b"}}));
    // Clinic C registers someone with the same member ID but another birth date: not them.
    c.put(&patient(
        "pc",
        "org-c",
        "00012345:アイウ:187:05",
        "1950-01-01",
    ));
    c.put(&json!({"resourceType": "Encounter", "id": "ec", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pc"}, "serviceProvider": {"reference": "Organization/org-c"}}));
    c
}

fn person_links(c: &Ctx, patient: &str) -> BTreeSet<String> {
    let (st, b) = c.get("admin", &format!("Person?patient={patient}"));
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["total"], 1, "one Person: {b}");
    b["entry"][0]["resource"]["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["target"]["reference"].as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_certain_match_makes_one_record_across_institutions() {
    let c = setup();
    // The Person: both Patients, the member ID as compared.
    assert_eq!(person_links(&c, "pa"), set(&["Patient/pa", "Patient/pb"]));
    let (_, b) = c.get("admin", "Person?patient=pb");
    let person = &b["entry"][0]["resource"];
    assert_eq!(person["identifier"][0]["value"], "00012345:アイウ:187:05");
    assert_eq!(person["link"][0]["assurance"], "level3");
    // The impostor registration is a person of its own.
    assert_eq!(person_links(&c, "pc"), set(&["Patient/pc"]));

    // The person's token at clinic B reaches hospital A's data.
    assert_eq!(c.get("pat-b", "Condition/ca").0, 200);
    let all = c.ids("pat-b", "Patient/pb/$everything");
    for r in [
        "Patient/pa",
        "Patient/pb",
        "Condition/ca",
        "AllergyIntolerance/aa",
        "Encounter/ea",
        "Encounter/eb",
    ] {
        assert!(all.contains(r), "{r} in {all:?}");
    }
    assert!(
        !all.contains("Patient/pc") && !all.contains("Encounter/ec"),
        "{all:?}"
    );
    assert_eq!(
        c.ids("pat-b", "Patient"),
        set(&["Patient/pa", "Patient/pb"])
    );
    // Compartment searches cover the person; the search parameter asks for one part.
    assert_eq!(
        c.ids("pat-b", "Patient/pb/Encounter"),
        set(&["Encounter/ea", "Encounter/eb"])
    );
    assert_eq!(
        c.ids("pat-b", "Patient/pb/Encounter?patient=pb"),
        set(&["Encounter/eb"])
    );
    assert_eq!(
        c.ids("admin", "Patient/pa/Encounter"),
        set(&["Encounter/ea", "Encounter/eb"])
    );

    // Clinic B's doctor (the person is in their care) sees A's allergy: the sharing.
    assert_eq!(c.get("doc-b", "AllergyIntolerance/aa").0, 200);
    assert_eq!(
        c.ids("doc-b", "Condition?patient=pa"),
        set(&["Condition/ca"])
    );
    assert_eq!(
        c.ids("doc-b", "Patient/pb/Condition"),
        set(&["Condition/ca"])
    );
    // Clinic C's doctor, whose patient only shares the member ID, sees none of it.
    assert_eq!(c.get("doc-c", "AllergyIntolerance/aa").0, 404);
    assert_eq!(c.get("doc-c", "Patient/pa").0, 404);
    assert!(c.ids("doc-c", "Condition").is_empty());
    assert_eq!(c.ids("doc-c", "Patient"), set(&["Patient/pc"]));
    let (_, b) = c.get("doc-c", "AllergyIntolerance?_summary=count");
    assert_eq!(b["total"], 0, "counts included: {b}");

    // The Person is in the person's record: theirs and their care providers', nobody else's.
    let (_, b) = c.get("admin", "Person?patient=pa");
    let pid = b["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.get("pat-b", &format!("Person/{pid}")).0, 200);
    assert_eq!(c.get("doc-b", &format!("Person/{pid}")).0, 200);
    for probe in [
        format!("Person/{pid}"),
        format!("Person/{pid}/_history"),
        format!("Person/{pid}/_history/1"),
    ] {
        assert_eq!(c.get("doc-c", &probe).0, 404, "{probe}");
    }
    for q in [
        "Person?patient=pa",
        "Person?identifier=00012345:アイウ:187:05",
        "Person?_summary=count&name=牧野",
    ] {
        let (st, b) = c.get("doc-c", q);
        assert_eq!(st, 200, "{q}: {b}");
        let seen: Vec<&Value> = b["entry"].as_array().into_iter().flatten().collect();
        assert!(
            seen.iter()
                .all(|e| e["resource"]["link"][0]["target"]["reference"] == "Patient/pc"),
            "{q}: {b}"
        );
    }
    let (_, b) = c.get("doc-c", "Person?_summary=count");
    assert_eq!(b["total"], 1, "only pc's Person: {b}");

    // The person's access log shows doctor B's read of A's allergy.
    let (st, log) = c.get("pat-b", "Patient/pb/$access-log");
    assert_eq!(st, 200, "{log}");
    let text = log.to_string();
    assert!(
        text.contains("AllergyIntolerance/aa") && text.contains("doc-b"),
        "{text}"
    );
    // … also asked through the other Patient of the same person.
    assert_eq!(c.get("pat-b", "Patient/pa/$access-log").0, 200);
    assert_eq!(c.get("pat-b", "Patient/pc/$access-log").0, 404);
}

#[test]
fn match_grades_candidates_within_reach() {
    let c = setup();
    let input = |onlycertain: bool| {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": patient("q", "org-a", "00012345:あいう:187:05", "1930-06-28")},
            {"name": "onlyCertainMatches", "valueBoolean": onlycertain}]})
    };
    let (st, b) = c.call("admin", "POST", "Patient/$match", Some(&input(false)));
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["type"], "searchset");
    let grades: Vec<(String, String)> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource"]["id"].as_str().unwrap().to_string(),
                e["search"]["extension"][0]["valueCode"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        grades,
        vec![
            ("pa".to_string(), "certain".to_string()),
            ("pb".to_string(), "certain".to_string()),
            ("pc".to_string(), "possible".to_string())
        ],
        "{b}"
    );
    assert!(
        b["entry"][0]["search"]["score"].as_f64().unwrap()
            > b["entry"][2]["search"]["score"].as_f64().unwrap()
    );
    // Only certain matches: both Patients of the one person.
    let (_, b) = c.call("admin", "POST", "Patient/$match", Some(&input(true)));
    assert_eq!(b["total"], 2, "{b}");
    // A clinician matches only among the patients in their care: no oracle for others.
    let (st, b) = c.call("doc-c", "POST", "Patient/$match", Some(&input(false)));
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(b["entry"][0]["resource"]["id"], "pc");
    // Bad input: 400 with an OperationOutcome.
    for bad in [
        json!({"resourceType": "Patient"}),
        json!({"resourceType": "Parameters", "parameter": []}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient"}}]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient("q", "o", "1", "1930-06-28")}, {"name": "count", "valueInteger": 0}]}),
    ] {
        let (st, b) = c.call("admin", "POST", "Patient/$match", Some(&bad));
        assert_eq!(
            (st, b["resourceType"].as_str()),
            (400, Some("OperationOutcome")),
            "{bad}: {b}"
        );
    }
}

#[test]
fn only_a_registrar_links_and_unlinks_and_both_reverse() {
    let c = setup();
    let other = |p: &str| json!({"resourceType": "Parameters", "parameter": [{"name": "other", "valueReference": {"reference": format!("Patient/{p}")}}]});
    // Nobody writes a Person, and only administrators link or unlink.
    let person = json!({"resourceType": "Person", "link": [{"target": {"reference": "Patient/pc"}}, {"target": {"reference": "Patient/pb"}}]});
    for who in ["pat-b", "doc-b", "admin"] {
        let (st, b) = c.call(who, "POST", "Person", Some(&person));
        assert_eq!(st, 403, "{who}: {b}");
        let mut p = person.clone();
        p["id"] = json!("forged");
        assert!(
            matches!(c.call(who, "PUT", "Person/forged", Some(&p)).0, 403 | 404),
            "{who}"
        );
    }
    for who in ["pat-b", "doc-b", "doc-c"] {
        let (st, b) = c.call(who, "POST", "Patient/pb/$link", Some(&other("pc")));
        assert!(matches!(st, 403 | 404), "{who}: {st} {b}");
        let (st, _) = c.call(who, "POST", "Patient/pb/$unlink", None);
        assert!(matches!(st, 403 | 404), "{who}: {st}");
    }
    // A clinician's write never links: clinic C copies the member ID and birth date of
    // hospital A's patient into its own patient's record — still a person of its own, and
    // the answer is the same as for any update (no oracle of registered member IDs).
    let mut pc = patient(
        "pc",
        "org-c",
        "０００１２３４５:あいう:１８７:05",
        "1930-06-28",
    );
    pc["id"] = json!("pc");
    let (st, b) = c.call("doc-c", "PUT", "Patient/pc", Some(&pc));
    assert_eq!(st, 200, "{b}");
    assert_eq!(person_links(&c, "pc"), set(&["Patient/pc"]));
    assert_eq!(c.call("doc-c", "GET", "Condition/ca", None).0, 404);
    c.put(&patient(
        "pc",
        "org-c",
        "00012345:アイウ:187:05",
        "1950-01-01",
    ));
    // Patient.link written by an administrator links nobody.
    let mut pb = patient("pb", "org-b", "00012345:アイウ:187:05", "1930-06-28");
    pb["link"] = json!([{"other": {"reference": "Patient/pc"}, "type": "seealso"}]);
    c.put(&pb);
    assert_eq!(c.get("doc-c", "Condition/ca").0, 404);
    assert_eq!(person_links(&c, "pc"), set(&["Patient/pc"]));
    // A registrar matches and links, but reads no clinical data.
    let (st, b) = c.call("registrar", "POST", "Patient/pc/$link", Some(&other("pb")));
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        person_links(&c, "pc"),
        set(&["Patient/pa", "Patient/pb", "Patient/pc"])
    );
    assert_eq!(c.call("registrar", "GET", "Condition/ca", None).0, 403);
    assert_eq!(
        c.call("registrar", "GET", "Observation?patient=pa", None).0,
        403
    );
    let (st, b) = c.call("registrar", "POST", "Patient/pc/$unlink", None);
    assert_eq!(st, 200, "{b}");
    assert_eq!(person_links(&c, "pa"), set(&["Patient/pa", "Patient/pb"]));
    // Bad input.
    assert_eq!(
        c.call(
            "admin",
            "POST",
            "Patient/pb/$link",
            Some(&json!({"resourceType": "Parameters"}))
        )
        .0,
        400
    );
    assert_eq!(
        c.call("admin", "POST", "Patient/pb/$link", Some(&other("nobody")))
            .0,
        404
    );
    assert_eq!(
        c.call("admin", "POST", "Patient/pb/$link", Some(&other("pa")))
            .0,
        422
    );
    assert_eq!(c.call("admin", "POST", "Patient/pc/$unlink", None).0, 422);

    // Unlink: clinic B's Patient is someone else after all.
    let (st, b) = c.call("admin", "POST", "Patient/pb/$unlink", None);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["resourceType"], "Person");
    assert_eq!(person_links(&c, "pa"), set(&["Patient/pa"]));
    assert_eq!(c.get("doc-b", "AllergyIntolerance/aa").0, 404);
    assert_eq!(c.get("pat-b", "Condition/ca").0, 404);
    assert_eq!(c.get("pat-b", "Encounter/eb").0, 200);
    assert_eq!(c.get("doc-b", "Encounter/eb").0, 200);
    assert!(
        !c.ids("pat-b", "Patient/pb/$everything")
            .contains("Condition/ca")
    );
    // A certain match does not link them again.
    c.put(&patient(
        "pb",
        "org-b",
        "00012345:アイウ:187:05",
        "1930-06-28",
    ));
    assert_eq!(person_links(&c, "pb"), set(&["Patient/pb"]));
    assert_eq!(c.get("pat-b", "Condition/ca").0, 404);

    // A registrar links them again (and the impostor too, if they say so).
    let (st, b) = c.call("admin", "POST", "Patient/pa/$link", Some(&other("pb")));
    assert_eq!(st, 200, "{b}");
    assert_eq!(person_links(&c, "pb"), set(&["Patient/pa", "Patient/pb"]));
    let (_, b) = c.get("admin", "Person?patient=pb");
    let levels: Vec<&str> = b["entry"][0]["resource"]["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["assurance"].as_str().unwrap())
        .collect();
    assert!(levels.contains(&"level4"), "{b}");
    assert_eq!(c.get("doc-b", "AllergyIntolerance/aa").0, 200);
    assert_eq!(c.get("pat-b", "Condition/ca").0, 200);
    // Every link and unlink is in the audit trail.
    let (_, audit) = c.get("admin", "$audit?agent=admin&_count=200");
    let text = audit.to_string();
    assert!(
        text.contains("Patient/pb/$unlink") && text.contains("Patient/pa/$link"),
        "{text}"
    );
}
