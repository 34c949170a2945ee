//! Behaviour tests that need no shared data.

use issho_patch::{apply_fhirpath_patch, apply_json_patch};
use serde_json::{Value, json};

fn op(kind: &str, path: &str, extra: Vec<Value>) -> Value {
    let mut parts = vec![
        json!({"name": "type", "valueCode": kind}),
        json!({"name": "path", "valueString": path}),
    ];
    parts.extend(extra);
    json!({"name": "operation", "part": parts})
}

fn params(ops: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": ops})
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
        "deceasedBoolean": false
    })
}

#[test]
fn replace_reports_match_count_and_leaves_resource_unchanged() {
    let mut p = patient();
    let before = p.clone();
    let patch = params(vec![
        op(
            "replace",
            "Patient.birthDate",
            vec![json!({"name": "value", "valueDate": "1980-01-01"})],
        ),
        op(
            "replace",
            "Patient.name.where(use='x')",
            vec![json!({"name": "value", "valueString": "z"})],
        ),
    ]);
    let e = apply_fhirpath_patch(&mut p, &patch).unwrap_err();
    assert_eq!(
        e.diagnostics,
        "path Patient.name.where(use='x') matched 0 elements; replace needs exactly one"
    );
    assert_eq!(e.expression.as_deref(), Some("Patient.name.where(use='x')"));
    assert_eq!(p, before, "all-or-nothing");
}

#[test]
fn choice_replace_changes_the_key() {
    let mut p = patient();
    let patch = params(vec![op(
        "replace",
        "Patient.deceased",
        vec![json!({"name": "value", "valueDateTime": "2020-01-01"})],
    )]);
    apply_fhirpath_patch(&mut p, &patch).unwrap();
    assert_eq!(p["deceasedDateTime"], "2020-01-01");
    assert!(p.get("deceasedBoolean").is_none());
}

#[test]
fn add_choice_by_name_uses_value_type() {
    let mut p = json!({"resourceType": "Patient"});
    let patch = params(vec![op(
        "add",
        "Patient",
        vec![
            json!({"name": "name", "valueString": "deceased"}),
            json!({"name": "value", "valueBoolean": true}),
        ],
    )]);
    apply_fhirpath_patch(&mut p, &patch).unwrap();
    assert_eq!(
        p,
        json!({"resourceType": "Patient", "deceasedBoolean": true})
    );
}

#[test]
fn primitive_lists_keep_extensions_aligned() {
    let mut p = json!({
        "resourceType": "Patient",
        "name": [{"given": ["A", "B"], "_given": [null, {"extension": [{"url": "u", "valueString": "v"}]}]}]
    });
    let patch = params(vec![op(
        "insert",
        "Patient.name[0].given",
        vec![
            json!({"name": "value", "valueString": "Z"}),
            json!({"name": "index", "valueInteger": 0}),
        ],
    )]);
    apply_fhirpath_patch(&mut p, &patch).unwrap();
    assert_eq!(p["name"][0]["given"], json!(["Z", "A", "B"]));
    assert_eq!(p["name"][0]["_given"][2]["extension"][0]["url"], "u");
    let patch = params(vec![op("delete", "Patient.name[0].given[2]", vec![])]);
    apply_fhirpath_patch(&mut p, &patch).unwrap();
    assert_eq!(p["name"][0], json!({"given": ["Z", "A"]}));
}

#[test]
fn delete_prunes_empty_parents_and_tolerates_no_match() {
    let mut p = json!({"resourceType": "Patient", "contact": [{"name": {"text": "x"}}]});
    let patch = params(vec![
        op("delete", "Patient.contact[0].name.text", vec![]),
        op("delete", "Patient.telecom", vec![]),
    ]);
    apply_fhirpath_patch(&mut p, &patch).unwrap();
    assert_eq!(p, json!({"resourceType": "Patient"}));
}

#[test]
fn complex_values_from_parts_use_the_model_for_lists() {
    let mut p = json!({"resourceType": "Patient"});
    let patch = params(vec![op(
        "add",
        "Patient",
        vec![
            json!({"name": "name", "valueString": "contact"}),
            json!({"name": "value", "part": [
                {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}},
                {"name": "gender", "valueCode": "male"}
            ]}),
        ],
    )]);
    apply_fhirpath_patch(&mut p, &patch).unwrap();
    assert_eq!(
        p["contact"],
        json!([{"telecom": [{"system": "phone", "value": "1"}], "gender": "male"}])
    );
}

#[test]
fn move_and_bad_indexes() {
    let mut p = json!({"resourceType": "Patient", "identifier": [{"value": "1"}, {"value": "2"}, {"value": "3"}]});
    let mv = |s: i64, d: i64| {
        params(vec![op(
            "move",
            "Patient.identifier",
            vec![
                json!({"name": "source", "valueInteger": s}),
                json!({"name": "destination", "valueInteger": d}),
            ],
        )])
    };
    apply_fhirpath_patch(&mut p, &mv(0, 2)).unwrap();
    assert_eq!(
        p["identifier"],
        json!([{"value": "2"}, {"value": "3"}, {"value": "1"}])
    );
    let e = apply_fhirpath_patch(&mut p, &mv(0, 3)).unwrap_err();
    assert!(
        e.diagnostics.contains("destination 3 is out of range"),
        "{}",
        e.diagnostics
    );
}

#[test]
fn json_patch_is_all_or_nothing() {
    let mut doc = json!({"a": 1, "b": [1, 2]});
    let before = doc.clone();
    let patch = json!([
        {"op": "add", "path": "/c", "value": 3},
        {"op": "remove", "path": "/b/5"}
    ]);
    let e = apply_json_patch(&mut doc, &patch).unwrap_err();
    assert!(e.diagnostics.contains("out of bounds"), "{}", e.diagnostics);
    assert_eq!(doc, before);
    let patch = json!([
        {"op": "copy", "from": "/b/0", "path": "/b/-"},
        {"op": "test", "path": "/a", "value": 1.0},
        {"op": "move", "from": "/a", "path": "/z"}
    ]);
    apply_json_patch(&mut doc, &patch).unwrap();
    assert_eq!(doc, json!({"b": [1, 2, 1], "z": 1}));
}
