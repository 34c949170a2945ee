//! Engine behaviour that needs no shared data.

use issho_fhirpath::{Context, Item, Step, Val, eval_str, evaluate, parse};
use serde_json::{Value, json};

fn obs() -> Value {
    // parsed from text so that 185.50 keeps its two decimals
    let v = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": 185.50, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
        "component": [
            {"code": {"text": "a"}, "valueQuantity": {"value": 1, "code": "mm[Hg]", "system": "http://unitsofmeasure.org"}},
            {"code": {"text": "b"}, "valueString": "x", "_valueString": {"id": "s1"}}
        ]
    });
    serde_json::from_str(&v.to_string().replace("185.5", "185.50")).unwrap()
}

fn strings(items: &[Item<'_>]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Item::Node(n) => match n.value {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            },
            Item::Value(v) => v.to_string(),
        })
        .collect()
}

#[test]
fn nodes_carry_locations_and_types() {
    let r = obs();
    let ctx = Context::new();
    let items = eval_str("Observation.component.value", &r, &ctx).unwrap();
    assert_eq!(items.len(), 2);
    let n0 = items[0].node().unwrap();
    assert_eq!(
        n0.location.steps(),
        vec![
            Step::Key("component"),
            Step::Index(0),
            Step::Key("valueQuantity")
        ]
    );
    assert_eq!(items[0].type_name(), Some("Quantity"));
    assert_eq!(items[1].type_name(), Some("string"));
    assert_eq!(
        items[1].location().unwrap().to_path(),
        "component[1].valueString"
    );
    // the primitive's `_valueString` sibling
    let id = eval_str("Observation.component[1].value.id", &r, &ctx).unwrap();
    assert_eq!(strings(&id), vec!["s1"]);
    assert_eq!(
        id[0].location().unwrap().to_path(),
        "component[1]._valueString.id"
    );
}

#[test]
fn decimals_are_exact_and_quantities_convert() {
    let r = obs();
    let ctx = Context::new();
    let t = |e: &str| strings(&eval_str(e, &r, &ctx).unwrap());
    assert_eq!(t("Observation.value.value"), vec!["185.50"]);
    assert_eq!(t("Observation.value.value + 0.25"), vec!["185.75"]);
    assert_eq!(t("0.1 + 0.2 = 0.3"), vec!["true"]);
    assert_eq!(t("Observation.value > 80 'kg'"), vec!["true"]);
    assert_eq!(t("Observation.value < 85 'kg'"), vec!["true"]);
    assert_eq!(
        t("(Observation.component.value as Quantity).value"),
        vec!["1"]
    );
    assert_eq!(t("1 / 3"), vec!["0.3333333333333333"]);
    assert_eq!(t("@2020-01-31 + 1 month"), vec!["2020-02-29"]);
}

#[test]
fn errors_are_reported() {
    let r = obs();
    let ctx = Context::new();
    assert!(parse("Observation.(").is_err());
    assert!(eval_str("Observation.component.code.text.substring(1)", &r, &ctx).is_err());
    assert!(eval_str("'a' < 1", &r, &ctx).is_err());
    assert!(eval_str("%undefined", &r, &ctx).is_err());
    assert!(eval_str("foo()", &r, &ctx).is_err());
}

#[test]
fn one_context_serves_many_resources_with_variables_and_hooks() {
    let target = json!({"resourceType": "Patient", "id": "p1", "gender": "female"});
    let resolver = |r: &str| (r == "Patient/p1").then_some(&target);
    let mut ctx = Context::new().with_variable("limit", vec![Item::Value(Val::Integer(2))]);
    ctx.resolver = Some(&resolver);
    let expr = parse("subject.resolve().gender | (%limit + 1).toString()").unwrap();
    for i in 0..3 {
        let doc = json!({"resourceType": "Observation", "id": format!("o{i}"), "subject": {"reference": "Patient/p1"}});
        let out = evaluate(&expr, &doc, &ctx).unwrap();
        assert_eq!(strings(&out), vec!["female", "3"]);
    }
}

#[test]
fn type_functions_know_the_fhir_hierarchy() {
    let r = json!({"resourceType": "Patient", "gender": "male", "contained": [{"resourceType": "Organization", "id": "o"}]});
    let ctx = Context::new();
    let t = |e: &str| strings(&eval_str(e, &r, &ctx).unwrap());
    assert_eq!(t("Patient.gender.is(code)"), vec!["true"]);
    assert_eq!(t("Patient.gender is string"), vec!["true"]);
    assert_eq!(t("Patient.contained.ofType(Organization).id"), vec!["o"]);
    assert_eq!(t("Patient.is(DomainResource)"), vec!["true"]);
    assert_eq!(t("Patient.gender.type().name"), vec!["code"]);
}

/// A choice primitive with extensions and no value (`_valueString` alone) is still there.
#[test]
fn a_choice_primitive_with_only_extensions_exists() {
    let r = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "extension": [{
            "url": "http://example.org/a",
            "_valueString": {"extension": [{"url": "http://example.org/b", "valueCode": "nl"}]}
        }]
    });
    let ctx = Context::new();
    let t = |e: &str| strings(&eval_str(e, &r, &ctx).unwrap());
    assert_eq!(t("Observation.extension.value.exists()"), vec!["true"]);
    assert_eq!(
        t("Observation.extension.value.extension.url"),
        vec!["http://example.org/b"]
    );
    assert_eq!(t("Observation.extension.value.hasValue()"), vec!["false"]);
}
