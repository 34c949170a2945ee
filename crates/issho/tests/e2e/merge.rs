//! Merging a duplicate Patient over HTTP (`Patient/$merge` with R5's parameters) and
//! reversing it (`Patient/[id]/$unmerge`): what the record looks like to the person and
//! their clinicians before, during (preview) and after, the history kept, the Provenance
//! that records it — and the probes a patient, a clinician and a researcher would try.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};

const MRN: &str = "urn:oid:1.2.392.100495.20.3.51.11311234567";

fn setup() -> Signed {
    let c = Signed::start(
        Default::default(),
        vec![
            (
                "admin",
                user("admin", Role::Administrator, "user/*.cruds", None, None),
            ),
            (
                "registrar",
                user("registrar", Role::Registrar, "user/*.cruds", None, None),
            ),
            (
                "pat-1",
                user(
                    "pat-1",
                    Role::Patient,
                    "patient/*.cruds",
                    Some("dup1"),
                    None,
                ),
            ),
            (
                "pat-2",
                user(
                    "pat-2",
                    Role::Patient,
                    "patient/*.cruds",
                    Some("dup2"),
                    None,
                ),
            ),
            (
                "doc-a",
                user(
                    "doc-a",
                    Role::Physician,
                    "user/*.cruds",
                    None,
                    Some("org-a"),
                ),
            ),
            (
                "researcher",
                user("researcher", Role::Researcher, "user/*.rs", None, None),
            ),
        ],
    );
    let put = |r: Value| c.store_as("admin", &r);
    put(json!({"resourceType": "Organization", "id": "org-a", "name": "A病院"}));
    // The same person registered twice at hospital A (two patient numbers).
    for (id, mrn) in [("dup1", "1001"), ("dup2", "1002")] {
        put(json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": MRN, "value": mrn}],
            "name": [{"family": "山田", "given": ["太郎"]}], "birthDate": "1960-01-01",
            "managingOrganization": {"reference": "Organization/org-a"}}));
    }
    let enc = |id: &str, p: &str| {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{p}")},
        "serviceProvider": {"reference": "Organization/org-a"}})
    };
    put(enc("e1", "dup1"));
    put(enc("e2", "dup2"));
    put(
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "HbA1c"}, "subject": {"reference": "Patient/dup1"}}),
    );
    put(
        json!({"resourceType": "Observation", "id": "o2", "status": "final",
        "code": {"text": "HbA1c"}, "subject": {"reference": "Patient/dup2"},
        "encounter": {"reference": "Encounter/e2"}}),
    );
    put(
        json!({"resourceType": "Condition", "id": "c2", "code": {"text": "糖尿病"},
        "subject": {"reference": "Patient/dup2"}, "encounter": {"reference": "Encounter/e2"}}),
    );
    c
}

fn merge_params(source: &str, preview: bool) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": format!("Patient/{source}")}},
        {"name": "target-patient-identifier", "valueIdentifier": {"system": MRN, "value": "1001"}},
        {"name": "preview", "valueBoolean": preview}]})
}

fn param<'a>(b: &'a Value, name: &str) -> &'a Value {
    b["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["resource"])
        .unwrap_or_else(|| panic!("{name} in {b}"))
}

fn subject(c: &Signed, path: &str) -> String {
    let (st, b) = c.call("admin", "GET", path, None);
    assert_eq!(st, 200, "{b}");
    b["subject"]["reference"].as_str().unwrap().to_string()
}

fn links(c: &Signed, id: &str) -> Vec<(String, String)> {
    let (_, b) = c.call("admin", "GET", &format!("Patient/{id}"), None);
    b["link"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["type"].as_str().unwrap().to_string(),
                l["other"]["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_registrar_merges_a_duplicate_and_unmerges_it() {
    let c = setup();
    // Two persons before: the patient of dup1 does not see dup2's record.
    assert_eq!(c.call("pat-1", "GET", "Observation/o2", None).0, 404);

    // Preview: what would change, nothing changed.
    let (st, b) = c.call(
        "registrar",
        "POST",
        "Patient/$merge",
        Some(&merge_params("dup2", true)),
    );
    assert_eq!(st, 200, "{b}");
    let text = param(&b, "outcome").to_string();
    assert!(text.contains("preview: 3 resources"), "{text}");
    assert!(text.contains("two persons would become one"), "{text}");
    assert_eq!(param(&b, "result")["id"], "dup1");
    assert_eq!(subject(&c, "Observation/o2"), "Patient/dup2");
    assert!(links(&c, "dup1").is_empty());

    // The merge: dup2 into dup1 (named by its patient number).
    let (st, b) = c.call(
        "registrar",
        "POST",
        "Patient/$merge",
        Some(&merge_params("dup2", false)),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(param(&b, "input")["resourceType"], "Parameters");
    assert!(
        param(&b, "outcome")
            .to_string()
            .contains("merged: 3 resources"),
        "{b}"
    );
    assert_eq!(param(&b, "result")["id"], "dup1");
    for r in ["Observation/o2", "Condition/c2", "Encounter/e2"] {
        assert_eq!(subject(&c, r), "Patient/dup1", "{r}");
    }
    // The earlier version stays in the history.
    let (st, old) = c.call("admin", "GET", "Observation/o2/_history/1", None);
    assert_eq!(st, 200);
    assert_eq!(old["subject"]["reference"], "Patient/dup2");
    let (_, src) = c.call("admin", "GET", "Patient/dup2", None);
    assert_eq!(src["active"], false);
    assert_eq!(
        links(&c, "dup2"),
        vec![("replaced-by".into(), "Patient/dup1".into())]
    );
    assert_eq!(
        links(&c, "dup1"),
        vec![("replaces".into(), "Patient/dup2".into())]
    );
    // One person, one record: the person and the clinician see it whole.
    assert_eq!(c.call("pat-1", "GET", "Observation/o2", None).0, 200);
    let (st, everything) = c.call("doc-a", "GET", "Patient/dup1/$everything", None);
    assert_eq!(st, 200);
    let text = everything.to_string();
    for id in ["\"o1\"", "\"o2\"", "\"c2\"", "\"e2\""] {
        assert!(text.contains(id), "{id} in $everything");
    }
    let (_, obs) = c.call("admin", "GET", "Observation?subject=Patient/dup1", None);
    assert_eq!(obs["total"], 2, "{obs}");
    // The server-kept record of the merge.
    let (_, prov) = c.call("admin", "GET", "Provenance?entity=Patient/dup2", None);
    assert_eq!(prov["total"], 1, "{prov}");
    let p = &prov["entry"][0]["resource"];
    assert_eq!(p["policy"][0], "urn:issho:policy:patient-merge");
    assert_eq!(p["target"].as_array().unwrap().len(), 5, "{p}");

    // Merged already; the same Patient; unknown; bad parameters.
    let (st, _) = c.call(
        "registrar",
        "POST",
        "Patient/$merge",
        Some(&merge_params("dup2", false)),
    );
    assert_eq!(st, 422);
    assert_eq!(
        c.call(
            "registrar",
            "POST",
            "Patient/$merge",
            Some(&merge_params("dup1", false))
        )
        .0,
        400
    );
    assert_eq!(
        c.call(
            "registrar",
            "POST",
            "Patient/$merge",
            Some(&merge_params("nobody", false))
        )
        .0,
        404
    );
    for bad in [
        json!({"resourceType": "Parameters"}),
        json!({"resourceType": "Patient"}),
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": "http://elsewhere/Patient/x"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/dup1"}}]}),
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": "Patient/e1"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/dup1"}},
            {"name": "preview", "valueString": "yes"}]}),
    ] {
        let (st, b) = c.call("registrar", "POST", "Patient/$merge", Some(&bad));
        assert_eq!(st, 400, "{bad}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }

    // A clinician changes one of the moved resources after the merge: the unmerge keeps
    // the change and turns only the reference back.
    let (_, mut c2) = c.call("admin", "GET", "Condition/c2", None);
    c2["note"] = json!([{"text": "追記"}]);
    let (st, b) = c.call("doc-a", "PUT", "Condition/c2", Some(&c2));
    assert_eq!(st, 200, "{b}");

    // The unmerge.
    let (st, b) = c.call("registrar", "POST", "Patient/dup2/$unmerge", None);
    assert_eq!(st, 200, "{b}");
    assert!(
        param(&b, "outcome")
            .to_string()
            .contains("unmerged: 3 resources"),
        "{b}"
    );
    for r in ["Observation/o2", "Condition/c2", "Encounter/e2"] {
        assert_eq!(subject(&c, r), "Patient/dup2", "{r}");
    }
    let (_, c2) = c.call("admin", "GET", "Condition/c2", None);
    assert_eq!(c2["note"][0]["text"], "追記");
    let (_, src) = c.call("admin", "GET", "Patient/dup2", None);
    assert!(src.get("active").is_none(), "{src}");
    assert!(links(&c, "dup2").is_empty());
    assert!(links(&c, "dup1").is_empty());
    // Two persons again.
    assert_eq!(c.call("pat-1", "GET", "Observation/o2", None).0, 404);
    assert_eq!(c.call("pat-2", "GET", "Observation/o2", None).0, 200);
    assert_eq!(c.call("pat-2", "GET", "Observation/o1", None).0, 404);
    // Nothing left to unmerge.
    assert_eq!(
        c.call("registrar", "POST", "Patient/dup2/$unmerge", None).0,
        422
    );
    assert_eq!(
        c.call("registrar", "POST", "Patient/nobody/$unmerge", None)
            .0,
        404
    );
    // Both are in the audit trail.
    let (_, audit) = c.call("admin", "GET", "$audit?agent=registrar&_count=200", None);
    let text = audit.to_string();
    assert!(
        text.contains("Patient/$merge") && text.contains("Patient/dup2/$unmerge"),
        "{text}"
    );
}

#[test]
fn no_one_but_a_registrar_merges_and_no_one_forges_a_merge() {
    let c = setup();
    for who in ["pat-1", "pat-2", "doc-a", "researcher"] {
        let (st, b) = c.call(
            who,
            "POST",
            "Patient/$merge",
            Some(&merge_params("dup2", false)),
        );
        assert!(matches!(st, 403 | 404), "{who}: {st} {b}");
        let (st, _) = c.call(who, "POST", "Patient/dup2/$unmerge", None);
        assert!(matches!(st, 403 | 404), "{who}: {st}");
    }
    // A patient's preview tells nothing either.
    let (st, b) = c.call(
        "pat-2",
        "POST",
        "Patient/$merge",
        Some(&merge_params("dup2", true)),
    );
    assert!(matches!(st, 403 | 404), "{st} {b}");
    assert!(!b.to_string().contains("resources would"), "{b}");
    assert_eq!(subject(&c, "Observation/o2"), "Patient/dup2");
    assert!(links(&c, "dup2").is_empty());

    // A forged record of a merge (to have $unmerge move someone's data) is refused to
    // every client, administrators included.
    let forged = json!({"resourceType": "Provenance",
        "target": [{"reference": "Observation/o1/_history/1"}],
        "recorded": "2026-01-01T00:00:00Z",
        "policy": ["urn:issho:policy:patient-merge"],
        "agent": [{"who": {"display": "x"}}],
        "entity": [{"role": "source", "what": {"reference": "Patient/dup2"}}]});
    for who in ["admin", "doc-a", "pat-2"] {
        let (st, b) = c.call(who, "POST", "Provenance", Some(&forged));
        assert_eq!(st, 403, "{who}: {b}");
        assert!(b.to_string().contains("no client writes one"), "{who}: {b}");
    }
    // Even with a replaced-by link written by hand, there is nothing to unmerge.
    let (_, mut p2) = c.call("admin", "GET", "Patient/dup2", None);
    p2["link"] = json!([{"other": {"reference": "Patient/dup1"}, "type": "replaced-by"}]);
    assert_eq!(c.call("admin", "PUT", "Patient/dup2", Some(&p2)).0, 200);
    let (st, b) = c.call("registrar", "POST", "Patient/dup2/$unmerge", None);
    assert_eq!(st, 422, "{b}");
    assert_eq!(subject(&c, "Observation/o1"), "Patient/dup1");
    // A registrar merges but never reads what moved.
    let (st, _) = c.call(
        "registrar",
        "POST",
        "Patient/$merge",
        Some(&json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": "Patient/dup1"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/dup2"}}]})),
    );
    assert_eq!(st, 422, "dup2 says it was replaced by dup1: not a target");
    assert_eq!(c.call("registrar", "GET", "Observation/o2", None).0, 403);
}
