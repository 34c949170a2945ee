//! JP-CLINS documents over HTTP, with the examples of `../shared` (a conformance test: skipped,
//! and said so, without them): every example Bundle and the eCheckupReport sample are taken
//! in and extracted, re-sending changes no counts, the receiving hospital sees the referral,
//! versions replace, `Composition/[id]/$document` gives the document back, and the probes a
//! patient, a researcher and a hospital elsewhere would try.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const INSTITUTION_NO: &str = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";

fn examples() -> Option<Vec<(String, Value)>> {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared is not there (JP-CLINS examples)");
        return None;
    };
    let dir = shared.join("jp/jp-clins-examples");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bundle-")
        })
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_str().unwrap().to_string(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    // The checkup report sample inside its package.
    let tgz = shared.join("jp/jp-eCheckupReport.r4.tgz");
    let tmp = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("tar")
        .args([
            "xzf",
            tgz.to_str().unwrap(),
            "-C",
            tmp.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let sample = tmp
        .path()
        .join("package/Bundle-Bundle-eCheckupReport-Sample-01.json");
    out.push((
        "eCheckupReport-Sample-01".into(),
        serde_json::from_str(&std::fs::read_to_string(sample).unwrap()).unwrap(),
    ));
    Some(out)
}

fn users() -> Vec<(&'static str, issho_auth::User)> {
    vec![
        (
            "admin",
            user("admin", Role::Administrator, "user/*.cruds", None, None),
        ),
        (
            "svc",
            user("svc", Role::Service, "system/*.cruds", None, None),
        ),
        (
            "pat",
            user(
                "pat",
                Role::Patient,
                "patient/*.cruds",
                Some("makino"),
                None,
            ),
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
            "res",
            user("res", Role::Researcher, "user/*.rs", None, None),
        ),
    ]
}

/// Hospital A (the referral's sender, 1319876543), clinic B (its receiver, 1311234567), C
/// (elsewhere), and the person as hospital A registered her before (her patient ID there).
fn setup() -> Signed {
    let c = Signed::start(Default::default(), users());
    let put = |r: Value| {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let (st, b) = c.call("admin", "PUT", &path, Some(&r));
        assert_eq!(st, 201, "{path}: {b}");
    };
    for (id, no) in [
        ("org-a", "1319876543"),
        ("org-b", "1311234567"),
        ("org-c", "1310000009"),
    ] {
        put(json!({"resourceType": "Organization", "id": id, "name": id,
            "identifier": [{"system": INSTITUTION_NO, "value": no}]}));
    }
    put(json!({"resourceType": "Patient", "id": "makino",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11318814790", "value": "000999739"}],
        "name": [{"family": "牧野", "given": ["爛漫"]}], "gender": "female", "birthDate": "1930-06-28"}));
    c
}

fn counts(c: &Signed, who: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for rt in [
        "Patient",
        "Organization",
        "Practitioner",
        "Composition",
        "Condition",
        "AllergyIntolerance",
        "Observation",
        "Encounter",
        "CarePlan",
        "MedicationRequest",
        "DocumentReference",
        "Binary",
        "Provenance",
        "ServiceRequest",
        "Coverage",
    ] {
        let (st, b) = c.call(who, "GET", &format!("{rt}?_summary=count"), None);
        assert_eq!(st, 200, "{rt}: {b}");
        out.insert(rt.to_string(), b["total"].as_u64().unwrap());
    }
    out
}

fn submit(c: &Signed, who: &str, doc: &Value) -> (u16, Value) {
    c.call(who, "POST", "Bundle", Some(doc))
}

#[test]
fn every_example_is_taken_in_and_resending_changes_no_counts() {
    let Some(examples) = examples() else { return };
    assert!(examples.len() >= 5, "{}", examples.len());
    let c = setup();
    for (name, doc) in &examples {
        let (st, b) = submit(&c, "svc", doc);
        assert!(st == 201 || st == 200, "{name}: {st} {b}");
        assert_eq!(b["resourceType"], "DocumentReference", "{name}: {b}");
        let before = counts(&c, "admin");
        let (st, b) = submit(&c, "svc", doc);
        assert_eq!(st, 200, "{name} again: {b}");
        assert_eq!(
            counts(&c, "admin"),
            before,
            "{name}: re-sending changed counts"
        );
    }
    let n = counts(&c, "admin");
    // The referral's five diagnoses, three allergies; the four laboratory results of the
    // item collection kept apart although they share one instance identifier; the care plan;
    // the checkup's results.
    assert!(n["Condition"] >= 7, "{n:?}");
    assert_eq!(n["AllergyIntolerance"], 3, "{n:?}");
    assert!(n["Observation"] >= 4 + 30, "{n:?}");
    assert_eq!(n["CarePlan"], 1, "{n:?}");
    // Hospital A's patient is the one the documents name: no second Patient for her.
    let (_, b) = c.call(
        "admin",
        "GET",
        "Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11318814790|000999739",
        None,
    );
    assert_eq!(b["total"], 1, "{b}");
    // The organizations already known are used, not copied.
    let (_, b) = c.call(
        "admin",
        "GET",
        &format!("Organization?identifier={INSTITUTION_NO}|1311234567"),
        None,
    );
    assert_eq!(b["total"], 1, "{b}");
}

#[test]
fn a_referral_reaches_the_receiving_clinic_and_comes_back_whole() {
    let Some(examples) = examples() else { return };
    let referral = examples
        .iter()
        .find(|(n, _)| n == "Bundle-Bundle-CLINS-Referral-Example-01.json")
        .unwrap()
        .1
        .clone();
    let c = setup();
    // Probes first: a patient, a researcher, an unknown token: refused, nothing written.
    let empty = counts(&c, "admin");
    assert_eq!(submit(&c, "pat", &referral).0, 403);
    assert_eq!(submit(&c, "res", &referral).0, 403);
    let r =
        c.s.req("POST", "Bundle")
            .header("content-type", "application/fhir+json")
            .body(referral.to_string())
            .send()
            .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A clinic with no care relationship cannot file a document into her record.
    let (st, b) = submit(&c, "doc-c", &referral);
    assert!(st == 403 || st == 404 || st == 400, "{st} {b}");
    assert_eq!(counts(&c, "admin"), empty, "nothing half-written");
    // A document missing a required section: 422 with the section named.
    let mut broken = referral.clone();
    broken["entry"][0]["resource"]["section"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let (st, b) = submit(&c, "svc", &broken);
    assert_eq!(st, 422, "{b}");
    assert!(b.to_string().contains("910"), "{b}");

    let (st, dr) = submit(&c, "svc", &referral);
    assert_eq!(st, 201, "{dr}");
    assert_eq!(dr["subject"]["reference"], "Patient/makino", "{dr}");
    let drid = dr["id"].as_str().unwrap().to_string();
    // Clinic B's doctor (the referral's receiver) sees the letter and what it carries.
    assert_eq!(
        c.call("doc-b", "GET", &format!("DocumentReference/{drid}"), None)
            .0,
        200
    );
    let (_, b) = c.call(
        "doc-b",
        "GET",
        "AllergyIntolerance?patient=makino&_summary=count",
        None,
    );
    assert_eq!(b["total"], 3, "{b}");
    let (_, b) = c.call(
        "doc-b",
        "GET",
        "ServiceRequest?performer=Organization/org-b",
        None,
    );
    assert_eq!(b["total"], 1, "{b}");
    // Clinic C still sees nothing.
    assert_eq!(
        c.call("doc-c", "GET", &format!("DocumentReference/{drid}"), None)
            .0,
        404
    );
    // The person sees it too, and every extracted item points back to the document.
    assert_eq!(
        c.call("pat", "GET", &format!("DocumentReference/{drid}"), None)
            .0,
        200
    );
    let (_, prov) = c.call(
        "admin",
        "GET",
        &format!("Provenance?entity=DocumentReference/{drid}"),
        None,
    );
    assert_eq!(prov["total"], 1, "{prov}");
    let targets = prov["entry"][0]["resource"]["target"].as_array().unwrap();
    assert!(targets.len() >= 10, "{prov}");
    assert!(
        targets
            .iter()
            .all(|t| !t["reference"].as_str().unwrap().starts_with("urn:"))
    );
    // Composition/$document: the document as it was received.
    let (_, b) = c.call("admin", "GET", "Composition?_count=1", None);
    let comp = b["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, back) = c.call(
        "doc-b",
        "GET",
        &format!("Composition/{comp}/$document"),
        None,
    );
    assert_eq!(st, 200, "{back}");
    assert_eq!(back, referral);
    assert_eq!(
        c.call(
            "doc-c",
            "GET",
            &format!("Composition/{comp}/$document"),
            None
        )
        .0,
        404
    );

    // Versions: an older one is refused, a newer one replaces (no new resources).
    let before = counts(&c, "admin");
    let mut older = referral.clone();
    older["entry"][0]["resource"]["extension"][0]["valueString"] = json!("0.9");
    assert_eq!(submit(&c, "svc", &older).0, 409);
    let mut newer = referral.clone();
    newer["entry"][0]["resource"]["extension"][0]["valueString"] = json!("2.0");
    newer["entry"][0]["resource"]["title"] = json!("診療情報提供書（訂正）");
    let (st, b) = submit(&c, "svc", &newer);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["extension"][0]["valueString"], "2.0");
    assert_eq!(counts(&c, "admin"), before);
    let (_, back) = c.call(
        "admin",
        "GET",
        &format!("Composition/{comp}/$document"),
        None,
    );
    assert_eq!(
        back["entry"][0]["resource"]["title"],
        "診療情報提供書（訂正）"
    );
}

#[test]
fn the_sender_withdraws_a_document_and_what_it_alone_brought() {
    let Some(examples) = examples() else { return };
    let letter = examples
        .iter()
        .find(|(x, _)| x == "Bundle-Bundle-CLINS-Referral-Example-01.json")
        .unwrap()
        .1
        .clone();
    // A second letter from the same hospital carrying the same items (another document).
    let mut second = letter.clone();
    second["identifier"]["value"] = json!("1319876543^2024^second-letter");
    let c = setup();
    let empty = counts(&c, "admin");
    let (st, first) = submit(&c, "svc", &letter);
    assert_eq!(st, 201, "{first}");
    let (st, other) = submit(&c, "svc", &second);
    assert_eq!(st, 201, "{other}");
    let both = counts(&c, "admin");
    assert_eq!(
        both["AllergyIntolerance"], 3,
        "the same items, once: {both:?}"
    );
    let fid = first["id"].as_str().unwrap();
    // Not by a patient, nor by a clinic that cannot see it.
    assert_eq!(
        c.call(
            "pat",
            "POST",
            &format!("DocumentReference/{fid}/$withdraw"),
            None
        )
        .0,
        403
    );
    assert_eq!(
        c.call(
            "doc-c",
            "POST",
            &format!("DocumentReference/{fid}/$withdraw"),
            None
        )
        .0,
        404
    );
    assert_eq!(counts(&c, "admin"), both);
    let (st, b) = c.call(
        "svc",
        "POST",
        &format!("DocumentReference/{fid}/$withdraw"),
        None,
    );
    assert_eq!(st, 200, "{b}");
    let after = counts(&c, "admin");
    // The items stay: the second letter still carries them; the first's letter, provenance
    // and referral are gone.
    assert_eq!(after["AllergyIntolerance"], 3, "{after:?}");
    assert_eq!(after["Binary"], both["Binary"] - 1, "{after:?}");
    assert_eq!(after["Provenance"], both["Provenance"] - 1, "{after:?}");
    assert_eq!(
        after["ServiceRequest"],
        both["ServiceRequest"] - 1,
        "{after:?}"
    );
    let (_, dr) = c.call("admin", "GET", &format!("DocumentReference/{fid}"), None);
    assert_eq!(dr["status"], "entered-in-error");
    assert_eq!(
        c.call(
            "svc",
            "POST",
            &format!("DocumentReference/{fid}/$withdraw"),
            None
        )
        .0,
        409
    );
    // Withdrawing the second takes the items, and clinic B's care relationship, with it.
    let oid = other["id"].as_str().unwrap();
    assert_eq!(
        c.call("doc-b", "GET", &format!("DocumentReference/{oid}"), None)
            .0,
        200
    );
    assert_eq!(
        c.call(
            "svc",
            "POST",
            &format!("DocumentReference/{oid}/$withdraw"),
            None
        )
        .0,
        200
    );
    assert_eq!(
        c.call("doc-b", "GET", &format!("DocumentReference/{oid}"), None)
            .0,
        404
    );
    let end = counts(&c, "admin");
    for rt in [
        "AllergyIntolerance",
        "Condition",
        "Composition",
        "Observation",
        "Encounter",
        "Binary",
        "Provenance",
        "ServiceRequest",
    ] {
        assert_eq!(end[rt], empty[rt], "{rt}: {end:?}");
    }
    // The two references stay, withdrawn (and the clinical-course reference it carried goes).
    assert_eq!(
        end["DocumentReference"],
        empty["DocumentReference"] + 2,
        "{end:?}"
    );
}
