//! Token `:in`, `:not-in`, `:below` and `:above` over HTTP, against CodeSystem and ValueSet
//! resources stored in the server (and the specification's required value sets). Expected
//! answers are computed here from the test data, not through the search code.

use crate::common::*;
use serde_json::{Value, json};

const SYS: &str = "https://issho.example/fhir/CodeSystem/dx";
const ICD: &str = "http://hl7.org/fhir/sid/icd-10";

fn code_system() -> Value {
    json!({
        "resourceType": "CodeSystem", "id": "dx", "url": SYS, "status": "active",
        "content": "complete", "hierarchyMeaning": "is-a",
        "valueSet": "https://issho.example/fhir/ValueSet/dx-all",
        "concept": [
            {"code": "metabolic", "display": "代謝疾患", "concept": [
                {"code": "diabetes", "display": "糖尿病", "concept": [
                    {"code": "t1dm", "display": "1型糖尿病"},
                    {"code": "t2dm", "display": "2型糖尿病"}
                ]},
                {"code": "gout", "display": "痛風"}
            ]},
            {"code": "circulatory", "display": "循環器疾患", "concept": [
                {"code": "htn", "display": "高血圧症"}
            ]}
        ]
    })
}

fn value_sets() -> Vec<Value> {
    vec![
        json!({"resourceType": "ValueSet", "id": "diabetes", "status": "active",
            "url": "https://issho.example/fhir/ValueSet/diabetes",
            "compose": {"include": [{"system": SYS, "filter": [
                {"property": "concept", "op": "is-a", "value": "diabetes"}]}]}}),
        // Mixed systems: hypertension by ICD-10 and by the local system, gout excluded.
        json!({"resourceType": "ValueSet", "id": "watch", "status": "active",
        "url": "https://issho.example/fhir/ValueSet/watch", "version": "2",
        "compose": {
            "include": [
                {"system": ICD, "concept": [{"code": "I10"}, {"code": "E11.9"}]},
                {"system": SYS, "filter": [{"property": "concept", "op": "descendent-of", "value": "metabolic"}]}
            ],
            "exclude": [{"system": SYS, "concept": [{"code": "gout"}]}]
        }}),
    ]
}

/// (id, system, code) of each Condition.
fn conditions() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("c1", SYS, "t1dm"),
        ("c2", SYS, "t2dm"),
        ("c3", SYS, "diabetes"),
        ("c4", SYS, "gout"),
        ("c5", SYS, "htn"),
        ("c6", ICD, "I10"),
        ("c7", ICD, "E11.9"),
        ("c8", "http://other.example", "t2dm"),
        ("c9", SYS, "metabolic"),
    ]
}

fn setup() -> Server {
    let s = Server::start();
    assert_eq!(s.put("CodeSystem/dx", &code_system()).status(), 201);
    for vs in value_sets() {
        let id = vs["id"].as_str().unwrap().to_string();
        assert_eq!(s.put(&format!("ValueSet/{id}"), &vs).status(), 201);
    }
    assert_eq!(
        s.put(
            "Patient/p",
            &json!({"resourceType": "Patient", "id": "p", "gender": "female"})
        )
        .status(),
        201
    );
    for (id, system, code) in conditions() {
        let c = json!({"resourceType": "Condition", "id": id,
            "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": system, "code": code}]}});
        assert_eq!(s.put(&format!("Condition/{id}"), &c).status(), 201);
    }
    s
}

fn ids(s: &Server, q: &str) -> Vec<String> {
    let r = s
        .req("GET", q)
        .header("prefer", "handling=strict")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{q}: {}", r.text().unwrap());
    let b = json(r);
    let mut v: Vec<String> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn want(f: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut v: Vec<String> = conditions()
        .into_iter()
        .filter(|(_, s, c)| f(s, c))
        .map(|(id, _, _)| id.to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn in_and_not_in() {
    let s = setup();
    let dm = |sys: &str, c: &str| sys == SYS && matches!(c, "diabetes" | "t1dm" | "t2dm");
    assert_eq!(
        ids(
            &s,
            "Condition?code:in=https://issho.example/fhir/ValueSet/diabetes"
        ),
        want(dm)
    );
    assert_eq!(ids(&s, "Condition?code:in=ValueSet/diabetes"), want(dm));
    assert_eq!(
        ids(
            &s,
            "Condition?code:not-in=https://issho.example/fhir/ValueSet/diabetes"
        ),
        want(|a, b| !dm(a, b))
    );
    let watch = |sys: &str, c: &str| {
        (sys == ICD && matches!(c, "I10" | "E11.9"))
            || (sys == SYS && matches!(c, "diabetes" | "t1dm" | "t2dm"))
    };
    assert_eq!(
        ids(
            &s,
            "Condition?code:in=https://issho.example/fhir/ValueSet/watch|2"
        ),
        want(watch)
    );
    // OR of two value sets; AND with another parameter.
    assert_eq!(
        ids(
            &s,
            "Condition?code:in=https://issho.example/fhir/ValueSet/watch,https://issho.example/fhir/ValueSet/dx-all"
        ),
        want(|a, b| watch(a, b) || a == SYS)
    );
    assert_eq!(
        ids(&s, "Condition?code:in=ValueSet/diabetes&_id=c1,c4,c5"),
        vec!["c1".to_string()]
    );
    // Through a chain: patients with a diabetic condition (reverse chain).
    assert_eq!(
        ids(
            &s,
            "Patient?_has:Condition:subject:code:in=ValueSet/diabetes"
        ),
        vec!["p".to_string()]
    );
    // The specification's value sets work without being stored.
    assert_eq!(
        ids(
            &s,
            "Patient?gender:in=http://hl7.org/fhir/ValueSet/administrative-gender"
        ),
        vec!["p".to_string()]
    );
    // Unknown value set: 400 with an OperationOutcome naming it.
    let r = s.get("Condition?code:in=https://nowhere.example/ValueSet/x");
    let msg = assert_outcome(r, 400);
    assert!(msg.contains("nowhere.example"), "{msg}");
    assert_outcome(s.get("Condition?code:in=not-a-url"), 400);
}

#[test]
fn below_and_above() {
    let s = setup();
    let below = |q: &str, codes: &[&str]| {
        assert_eq!(
            ids(&s, q),
            want(|sys, c| sys == SYS && codes.contains(&c)),
            "{q}"
        );
    };
    below(
        &format!("Condition?code:below={SYS}|metabolic"),
        &["metabolic", "diabetes", "t1dm", "t2dm", "gout"],
    );
    below(
        &format!("Condition?code:below={SYS}|diabetes"),
        &["diabetes", "t1dm", "t2dm"],
    );
    below(
        &format!("Condition?code:above={SYS}|t2dm"),
        &["t2dm", "diabetes", "metabolic"],
    );
    below(&format!("Condition?code:below={SYS}|htn"), &["htn"]);
    // A code system that is not stored, a code not in it, or no system: 400.
    assert_outcome(
        s.get("Condition?code:below=http://snomed.info/sct|73211009"),
        400,
    );
    assert_outcome(s.get(&format!("Condition?code:below={SYS}|nope")), 400);
    assert_outcome(s.get("Condition?code:below=diabetes"), 400);
    // A change of the code system takes effect on the next search.
    let mut cs = code_system();
    cs["concept"][1]["concept"]
        .as_array_mut()
        .unwrap()
        .push(json!({"code": "gout"}));
    let mut cs2 = cs.clone();
    cs2["concept"][0]["concept"][1] = json!({"code": "obesity"});
    assert_eq!(s.put("CodeSystem/dx", &cs2).status(), 200);
    below(
        &format!("Condition?code:below={SYS}|circulatory"),
        &["circulatory", "htn", "gout"],
    );
}
