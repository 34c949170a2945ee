//! SQL on FHIR v2 `$viewdefinition-run` over HTTP: the rows of a view come from what the
//! token may export — everything for a backend service, the person's own record for a
//! patient, and for a research project's member only its consenting persons, de-identified
//! (the view runs over the de-identified copies: no direct identifier in any row) — and the
//! probes of a researcher, a patient and a malformed request.

use crate::common::*;
use crate::research::{direct_identifiers, leaks, world};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A flat Observation view: id, subject key, code, value, unit, effective time.
fn observations() -> Value {
    json!({"resourceType": "ViewDefinition", "name": "obs", "status": "active",
    "resource": "Observation",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
        {"name": "code", "path": "code.coding.code.first()"},
        {"name": "value", "path": "value.ofType(Quantity).value"},
        {"name": "unit", "path": "value.ofType(Quantity).unit"},
        {"name": "effective", "path": "effective.ofType(dateTime)"}
    ]}]})
}

fn patients() -> Value {
    json!({"resourceType": "ViewDefinition", "name": "pat", "status": "active",
    "resource": "Patient",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "gender", "path": "gender"},
        {"name": "family", "path": "name.family.first()"},
        {"name": "birth", "path": "birthDate"}
    ]}]})
}

fn run(c: &Signed, who: &str, params: Vec<Value>) -> (u16, String, String) {
    let body = json!({"resourceType": "Parameters", "parameter": params});
    let r =
        c.s.req("POST", "/$viewdefinition-run")
            .bearer_auth(c.tok(who))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap();
    let st = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (st, ct, r.text().unwrap())
}

fn view(v: Value) -> Value {
    json!({"name": "viewResource", "resource": v})
}

fn fmt(f: &str) -> Value {
    json!({"name": "_format", "valueCode": f})
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn views_run_over_what_the_token_may_export() {
    let w = world(Default::default());
    let c = &w.c;
    let total = w
        .all
        .keys()
        .filter(|k| k.starts_with("Observation/"))
        .count();

    // A backend service: every Observation, as NDJSON (the default), CSV and JSON.
    let (st, ct, text) = run(c, "svc", vec![view(observations())]);
    assert_eq!(st, 200, "{text}");
    assert_eq!(ct, "application/x-ndjson");
    let rows = ndjson(&text);
    assert!(
        rows.len() >= total && total > 100,
        "{} of {total}",
        rows.len()
    );
    let ids: BTreeSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains("Observation/demo-p0-obs1"));
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["id", "patient", "code", "value", "unit", "effective"]
    );
    let (st, ct, csv) = run(c, "svc", vec![view(observations()), fmt("csv")]);
    assert_eq!(st, 200);
    assert!(ct.starts_with("text/csv"));
    assert_eq!(
        csv.lines().next().unwrap(),
        "id,patient,code,value,unit,effective"
    );
    assert_eq!(csv.lines().count(), rows.len() + 1);
    let (_, _, csv) = run(
        c,
        "svc",
        vec![
            view(observations()),
            fmt("csv"),
            json!({"name": "header", "valueBoolean": false}),
            json!({"name": "_limit", "valueInteger": 7}),
        ],
    );
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.starts_with("Observation/"));
    let (st, ct, text) = run(c, "svc", vec![view(patients()), fmt("json")]);
    assert_eq!(st, 200);
    assert_eq!(ct, "application/json");
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(list.iter().any(|r| r["family"].is_string()));
    let (st, ct, text) = run(c, "svc", vec![view(observations()), fmt("parquet")]);
    assert_eq!(st, 200);
    assert_eq!(ct, "application/vnd.apache.parquet");
    assert!(text.starts_with("PAR1") && text.ends_with("PAR1"));

    // A patient: their own record only.
    let (st, _, text) = run(c, "pat0", vec![view(observations())]);
    assert_eq!(st, 200, "{text}");
    let mine = ndjson(&text);
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|r| {
        r["id"]
            .as_str()
            .unwrap()
            .starts_with("Observation/demo-p0-")
    }));

    // Another person's record by name: not found for the patient; a clinician elsewhere (no
    // patient in care there) gets no rows.
    let (st, _, text) = run(
        c,
        "pat0",
        vec![
            view(observations()),
            json!({"name": "patient", "valueReference": {"reference": "Patient/demo-p1-pat1"}}),
        ],
    );
    assert_eq!(st, 404, "{text}");
    let (st, _, text) = run(c, "doc-x", vec![view(observations())]);
    assert_eq!(st, 200, "{text}");
    assert!(text.trim().is_empty(), "{text}");

    // A research project's member: consenting persons, de-identified, before the view runs.
    let (st, _, text) = run(c, "res", vec![view(patients())]);
    assert_eq!(st, 200, "{text}");
    let pats = ndjson(&text);
    assert!(!pats.is_empty());
    assert!(
        pats.iter()
            .all(|r| r["family"].is_null() && r["birth"].is_null())
    );
    let (st, _, text) = run(c, "res", vec![view(observations())]);
    assert_eq!(st, 200);
    let research_rows = ndjson(&text);
    let found = leaks(&research_rows, &direct_identifiers(&w.all));
    assert!(found.is_empty(), "{found:?}");
    let released: BTreeSet<String> = pats
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for r in &research_rows {
        let p = r["patient"].as_str().unwrap();
        assert!(released.contains(p), "{p}");
        let id = r["id"].as_str().unwrap();
        assert!(!id.contains("demo-"), "{id}");
    }
    assert!(research_rows.len() < rows.len());
    for i in &w.refused {
        for p in &w.patients[i] {
            let key = format!("Patient/{}", w.a.pseudonym("id", &format!("Patient/{p}")));
            assert!(
                research_rows.iter().all(|r| r["patient"] != key.as_str()),
                "person {i}"
            );
        }
    }

    // Probes: a malformed view, parameters not offered, a research member naming a patient,
    // a scope that does not cover the type, no token.
    let bad_view = json!({"resourceType": "ViewDefinition", "resource": "Patient",
        "select": [{"column": [{"name": "x", "path": "name.family"}, {"name": "x", "path": "id"}]}]});
    for (who, params, want) in [
        ("svc", vec![view(bad_view)], 400),
        ("svc", vec![view(json!({"select": []}))], 400),
        ("svc", vec![fmt("csv")], 400),
        ("svc", vec![view(observations()), fmt("xlsx")], 400),
        (
            "svc",
            vec![
                view(observations()),
                json!({"name": "resource", "resource": {"resourceType": "Observation"}}),
            ],
            400,
        ),
        (
            "svc",
            vec![
                view(observations()),
                json!({"name": "nope", "valueString": "x"}),
            ],
            400,
        ),
        (
            "res",
            vec![
                view(observations()),
                json!({"name": "patient", "valueReference": {"reference": "Patient/demo-p0-pat1"}}),
            ],
            403,
        ),
        ("res-obs", vec![view(patients())], 403),
        ("outsider", vec![view(patients())], 403),
    ] {
        let (st, _, text) = run(c, who, params.clone());
        assert_eq!(st, want, "{who} {params:?}: {text}");
        let oo: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    // A view that cannot be run on some resource: 422, not half an answer.
    let many = json!({"resourceType": "ViewDefinition", "resource": "Patient",
        "select": [{"column": [{"name": "given", "path": "name.given"}]}]});
    let (st, _, text) = run(c, "svc", vec![view(many)]);
    assert_eq!(st, 422, "{text}");
    let r = c
        .s
        .req("POST", "/$viewdefinition-run")
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Parameters", "parameter": [view(patients())]}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The patient's own view of a patient: one Patient's record.
    let (st, _, text) = run(
        c,
        "svc",
        vec![
            view(observations()),
            json!({"name": "patient", "valueReference": {"reference": "Patient/demo-p1-pat1"}}),
        ],
    );
    assert_eq!(st, 200, "{text}");
    let one = ndjson(&text);
    assert!(
        !one.is_empty()
            && one.iter().all(|r| r["id"]
                .as_str()
                .unwrap()
                .starts_with("Observation/demo-p1-"))
    );
}

#[test]
fn a_study_runs_over_a_research_members_views() {
    let w = world(Default::default());
    let out = tempfile::tempdir().unwrap();
    let run = |who: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_issho"))
            .args(["study", "drug-lab", "--server"])
            .arg(&w.c.s.base)
            .arg("--token")
            .arg(w.c.tok(who))
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap()
    };
    let o = run("res");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("risk ratio 2189015F1082 vs 2189017F1022"),
        "{stdout}"
    );
    // The table is over pseudonymised persons: no demo id in it.
    assert!(!stdout.contains("demo-"), "{stdout}");
    let csv = std::fs::read_to_string(out.path().join("study.csv")).unwrap();
    assert!(csv.starts_with("drug,sex,age_band,persons,events,incidence"));
    let svg = std::fs::read_to_string(out.path().join("study.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<rect"));
    // A researcher outside every project gets nothing to study.
    let o = run("outsider");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("403"));
}
