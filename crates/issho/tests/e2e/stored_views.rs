//! Stored SQL on FHIR ViewDefinitions over HTTP: kept as a resource type (validated, and
//! refused when the view cannot be run), searched, and run by reference (`viewReference`,
//! `ViewDefinition/[id]/$viewdefinition-run`) with the same reach as a view given inline —
//! and the probes of research projects' members (who keep their own project's views and
//! change no other), a patient, a clinician elsewhere and a researcher outside every project.

use crate::bulk::kickoff;
use crate::common::*;
use crate::research::{direct_identifiers, leaks, world};
use serde_json::{Value, json};

fn observations(name: &str) -> Value {
    json!({"resourceType": "ViewDefinition", "name": name, "status": "active",
    "resource": "Observation",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
        {"name": "code", "path": "code.coding.code.first()"},
        {"name": "value", "path": "value.ofType(Quantity).value"}
    ]}]})
}

/// A run: (status, body text).
fn run(
    c: &Signed,
    who: &str,
    method: &str,
    path: &str,
    params: Option<Vec<Value>>,
) -> (u16, String) {
    let mut r = c.s.req(method, path).bearer_auth(c.tok(who));
    if let Some(p) = params {
        r = r
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Parameters", "parameter": p}).to_string());
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn reference(r: &str) -> Value {
    json!({"name": "viewReference", "valueReference": {"reference": r}})
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn outcome(status: u16, text: &str) {
    let oo: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    assert_eq!(oo["resourceType"], "OperationOutcome", "{status}: {text}");
}

#[test]
fn stored_views_are_kept_searched_and_run_by_reference() {
    let w = world(Default::default());
    let c = &w.c;

    // An administrator keeps a view; it is searched by name, resource and status.
    let (st, made) = c.call(
        "admin",
        "POST",
        "ViewDefinition",
        Some(&observations("obs")),
    );
    assert_eq!(st, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    for q in [
        "ViewDefinition?name=obs",
        "ViewDefinition?resource=Observation&status=active",
        "ViewDefinition?url:missing=true",
    ] {
        let (st, b) = c.call("res", "GET", q, None);
        assert_eq!(st, 200, "{q}: {b}");
        assert_eq!(b["total"], 1, "{q}: {b}");
        assert_eq!(b["entry"][0]["resource"]["id"], id.as_str());
    }
    let (_, b) = c.call("res", "GET", "ViewDefinition?resource=Patient", None);
    assert_eq!(b["total"], 0);
    let (st, meta) = c.call("res", "GET", "metadata", None);
    assert_eq!(st, 200);
    let entry = meta["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "ViewDefinition")
        .unwrap();
    assert!(
        entry["operation"]
            .to_string()
            .contains("viewdefinition-run")
    );

    // Views that are not valid or cannot be run are not kept.
    let mut unnamed_status = observations("x");
    unnamed_status.as_object_mut().unwrap().remove("status");
    let mut twice = observations("twice");
    twice["select"][0]["column"][1]["name"] = json!("id");
    let mut odd = observations("odd");
    odd["selection"] = json!([]);
    let mut bad_path = observations("bad");
    bad_path["select"][0]["column"][0]["path"] = json!("name.where(");
    for v in [unnamed_status, twice, odd, bad_path] {
        let (st, b) = c.call("admin", "POST", "ViewDefinition", Some(&v));
        assert!(st == 400 || st == 422, "{st}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    let (_, b) = c.call("admin", "GET", "ViewDefinition", None);
    assert_eq!(b["total"], 1, "{b}");

    // Run by reference: the rows of the same view given inline, for every way of naming it.
    let inline = json!({"name": "viewResource", "resource": observations("obs")});
    let (st, text) = run(
        c,
        "svc",
        "POST",
        "/$viewdefinition-run",
        Some(vec![inline.clone()]),
    );
    assert_eq!(st, 200, "{text}");
    let all = lines(&text);
    assert!(all.len() > 100);
    let absolute = format!("{}/ViewDefinition/{id}", c.s.base);
    for (method, path, params) in [
        (
            "POST",
            "/$viewdefinition-run".to_string(),
            Some(vec![reference(&format!("ViewDefinition/{id}"))]),
        ),
        (
            "POST",
            "/$viewdefinition-run".to_string(),
            Some(vec![reference(&absolute)]),
        ),
        (
            "POST",
            "/$viewdefinition-run".to_string(),
            Some(vec![reference(&format!("ViewDefinition/{id}/_history/1"))]),
        ),
        (
            "POST",
            "/ViewDefinition/$viewdefinition-run".to_string(),
            Some(vec![reference(&format!("ViewDefinition/{id}"))]),
        ),
        (
            "GET",
            format!("/ViewDefinition/{id}/$viewdefinition-run"),
            None,
        ),
        (
            "POST",
            format!("/ViewDefinition/{id}/$viewdefinition-run"),
            None,
        ),
        (
            "POST",
            format!("/ViewDefinition/{id}/$viewdefinition-run"),
            Some(vec![json!({"name": "_format", "valueCode": "ndjson"})]),
        ),
    ] {
        let (st, text) = run(c, "svc", method, &path, params);
        assert_eq!(st, 200, "{method} {path}: {text}");
        assert_eq!(lines(&text), all, "{method} {path}");
    }
    let (st, csv) = run(
        c,
        "svc",
        "GET",
        &format!("/ViewDefinition/{id}/$viewdefinition-run?_format=csv&_limit=5"),
        None,
    );
    assert_eq!(st, 200, "{csv}");
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert_eq!(csv.lines().next().unwrap(), "id,patient,code,value");

    // A research member runs the stored view: its consenting persons, de-identified — the
    // rows of the same view given inline.
    let (st, text) = run(
        c,
        "res",
        "GET",
        &format!("/ViewDefinition/{id}/$viewdefinition-run"),
        None,
    );
    assert_eq!(st, 200, "{text}");
    let research = lines(&text);
    let (_, text) = run(c, "res", "POST", "/$viewdefinition-run", Some(vec![inline]));
    assert_eq!(research, lines(&text));
    assert!(!research.is_empty() && research.len() < all.len());
    let found = leaks(&research, &direct_identifiers(&w.all));
    assert!(found.is_empty(), "{found:?}");
    // A patient: their own record; a clinician with no patient in care: nothing.
    let (st, text) = run(
        c,
        "pat0",
        "GET",
        &format!("/ViewDefinition/{id}/$viewdefinition-run"),
        None,
    );
    assert_eq!(st, 200, "{text}");
    let mine = lines(&text);
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|r| {
        r["id"]
            .as_str()
            .unwrap()
            .starts_with("Observation/demo-p0-")
    }));
    let (st, text) = run(
        c,
        "doc-x",
        "GET",
        &format!("/ViewDefinition/{id}/$viewdefinition-run"),
        None,
    );
    assert_eq!(st, 200, "{text}");
    assert!(text.trim().is_empty(), "{text}");

    // Naming what is not a stored view, or naming it twice.
    for (who, method, path, params, want) in [
        (
            "svc",
            "POST",
            "/$viewdefinition-run".to_string(),
            Some(vec![reference("ViewDefinition/nope")]),
            404,
        ),
        (
            "svc",
            "POST",
            "/$viewdefinition-run".to_string(),
            Some(vec![reference("Observation/demo-p0-obs1")]),
            400,
        ),
        (
            "svc",
            "POST",
            "/$viewdefinition-run".to_string(),
            Some(vec![reference(
                "http://elsewhere.example/fhir/ViewDefinition/x",
            )]),
            400,
        ),
        (
            "svc",
            "POST",
            "/$viewdefinition-run".to_string(),
            Some(vec![
                reference(&format!("ViewDefinition/{id}")),
                json!({"name": "viewResource", "resource": observations("obs")}),
            ]),
            400,
        ),
        (
            "svc",
            "POST",
            format!("/ViewDefinition/{id}/$viewdefinition-run"),
            Some(vec![reference(&format!("ViewDefinition/{id}"))]),
            400,
        ),
        (
            "svc",
            "GET",
            "/ViewDefinition/nope/$viewdefinition-run".to_string(),
            None,
            404,
        ),
        (
            "svc",
            "GET",
            format!("/ViewDefinition/{id}/$viewdefinition-run?viewResource=x"),
            None,
            400,
        ),
        // A researcher outside every project reads no views and runs none.
        (
            "outsider",
            "GET",
            format!("/ViewDefinition/{id}/$viewdefinition-run"),
            None,
            403,
        ),
        // A research member naming a patient.
        (
            "res",
            "GET",
            format!("/ViewDefinition/{id}/$viewdefinition-run?patient=Patient/demo-p0-pat1"),
            None,
            403,
        ),
    ] {
        let (st, text) = run(c, who, method, &path, params);
        assert_eq!(st, want, "{who} {method} {path}: {text}");
        outcome(st, &text);
    }
    let (st, b) = c.call("outsider", "GET", &format!("ViewDefinition/{id}"), None);
    assert_eq!(st, 403, "{b}");

    // A research member whose scopes only read may not keep views.
    let (st, b) = c.call("res", "POST", "ViewDefinition", Some(&observations("mine")));
    assert_eq!(st, 403, "{b}");
    // The research service keeps its project's view: marked as the project's.
    let (st, kept) = c.call(
        "svc-r",
        "POST",
        "ViewDefinition",
        Some(&observations("study-a-obs")),
    );
    assert_eq!(st, 201, "{kept}");
    let vid = kept["id"].as_str().unwrap().to_string();
    assert_eq!(kept["meta"]["source"], "urn:issho:research-project:study-a");
    // It may change it, but not move it to another project.
    let mut moved = kept.clone();
    moved["meta"]["source"] = json!("urn:issho:research-project:study-b");
    moved["title"] = json!("ALT");
    let (st, b) = c.call(
        "svc-r",
        "PUT",
        &format!("ViewDefinition/{vid}"),
        Some(&moved),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["meta"]["source"], "urn:issho:research-project:study-a");
    let patch = json!([{"op": "replace", "path": "/meta/source", "value": "urn:issho:research-project:study-b"}]);
    let r =
        c.s.req("PATCH", &format!("/ViewDefinition/{vid}"))
            .bearer_auth(c.tok("svc-r"))
            .header("content-type", "application/json-patch+json")
            .body(patch.to_string())
            .send()
            .unwrap();
    assert_eq!(r.status().as_u16(), 403, "{}", r.text().unwrap());
    // Another project's member changes neither it nor the administrators' view.
    let mut theirs = b.clone();
    theirs["title"] = json!("taken");
    for (who, path, body) in [
        ("res-b-w", format!("ViewDefinition/{vid}"), theirs.clone()),
        ("svc-r", format!("ViewDefinition/{id}"), made.clone()),
    ] {
        let (st, b) = c.call(who, "PUT", &path, Some(&body));
        assert_eq!(st, 403, "{who} PUT {path}: {b}");
        let (st, b) = c.call(who, "DELETE", &path, None);
        assert_eq!(st, 403, "{who} DELETE {path}: {b}");
    }
    let (_, now) = c.call("admin", "GET", &format!("ViewDefinition/{vid}"), None);
    assert_eq!(now["title"], "ALT");
    // A research member's transaction may not carry anything but views: nothing is written.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observations("in-tx"), "request": {"method": "POST", "url": "ViewDefinition"}},
        {"resource": {"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/demo-p0-pat1"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (st, b) = c.call("svc-r", "POST", "", Some(&tx));
    assert_eq!(st, 403, "{b}");
    let (_, b) = c.call("admin", "GET", "ViewDefinition?name=in-tx", None);
    assert_eq!(b["total"], 0);
    // Searching views includes nothing else; no search of other types or the system.
    let (st, b) = c.call(
        "res",
        "GET",
        "ViewDefinition?_revinclude=Provenance:target&_revinclude=AuditEvent:entity",
        None,
    );
    assert_eq!(st, 200, "{b}");
    assert!(
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["resourceType"] == "ViewDefinition"),
        "{b}"
    );
    for path in [
        "Observation",
        "_history",
        "?_type=ViewDefinition,Patient",
        "Observation/demo-p0-obs1",
    ] {
        let (st, b) = c.call("res", "GET", path, None);
        assert_eq!(st, 403, "{path}: {b}");
    }
    // A patient keeps no views (shared data).
    let (st, b) = c.call("pat2", "POST", "ViewDefinition", Some(&observations("p")));
    assert_eq!(st, 403, "{b}");
    // Views never leave in a research export.
    let (st, _, b) = kickoff(c, "res", "/$export?_type=ViewDefinition", true);
    assert_eq!(st, 403, "{b}");
    // The owner deletes its view; a run by reference then answers that it is gone.
    let (st, b) = c.call("svc-r", "DELETE", &format!("ViewDefinition/{vid}"), None);
    assert!(st == 200 || st == 204, "{b}");
    let (st, text) = run(
        c,
        "svc",
        "GET",
        &format!("/ViewDefinition/{vid}/$viewdefinition-run"),
        None,
    );
    assert_eq!(st, 410, "{text}");
    outcome(st, &text);
}
