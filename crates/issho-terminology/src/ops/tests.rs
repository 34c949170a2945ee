use super::*;
use crate::tests::{SYS, src};

fn q(pairs: &[(&str, &str)]) -> Params {
    Params::from_query(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
}

fn get<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
    p["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["name"] == name)
        .collect()
}

#[test]
fn lookup_names_display_designations_and_hierarchy() {
    let s = src();
    let out = lookup(&s, &q(&[("system", SYS), ("code", "t2")]), None).unwrap();
    assert_eq!(get(&out, "name")[0]["valueString"], "Dx");
    assert_eq!(get(&out, "version")[0]["valueString"], "1");
    assert_eq!(get(&out, "display")[0]["valueString"], "Type 2");
    assert_eq!(
        get(&out, "designation")[0]["part"][1]["valueString"],
        "2型糖尿病"
    );
    let props = get(&out, "property");
    assert!(
        props
            .iter()
            .any(|p| p["part"][0]["valueCode"] == "parent"
                && p["part"][1]["valueCode"] == "diabetes")
    );
    let ja = lookup(
        &s,
        &q(&[
            ("system", SYS),
            ("code", "t2"),
            ("displayLanguage", "ja-JP,en;q=0.5"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(get(&ja, "display")[0]["valueString"], "2型糖尿病");
    let only = lookup(
        &s,
        &q(&[
            ("coding", &format!("{SYS}|diabetes")),
            ("property", "child"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(get(&only, "property").len(), 2);
    assert_eq!(
        lookup(&s, &q(&[("system", SYS), ("code", "nope")]), None)
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        lookup(&s, &q(&[("system", "http://x"), ("code", "a")]), None)
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        lookup(&s, &q(&[("system", SYS)]), None).unwrap_err().status,
        400
    );
    let jlac = lookup(
        &s,
        &q(&[
            ("system", "urn:oid:1.2.392.200119.4.504"),
            ("code", "3A015000002329101"),
        ]),
        None,
    )
    .unwrap_err();
    assert!(
        jlac.issue.diagnostics.contains("JLAC10"),
        "{}",
        jlac.issue.diagnostics
    );
}

fn result(v: &Value) -> bool {
    get(v, "result")[0]["valueBoolean"].as_bool().unwrap()
}

#[test]
fn validate_code_in_systems_and_value_sets() {
    let s = src();
    assert!(result(
        &validate_code_in_system(&s, &q(&[("url", SYS), ("code", "gout")]), None).unwrap()
    ));
    assert!(!result(
        &validate_code_in_system(&s, &q(&[("url", SYS), ("code", "flu")]), None).unwrap()
    ));
    let wrong = validate_code_in_system(
        &s,
        &q(&[("url", SYS), ("code", "gout"), ("display", "Goat")]),
        None,
    )
    .unwrap();
    assert!(!result(&wrong));
    assert!(
        get(&wrong, "message")[0]["valueString"]
            .as_str()
            .unwrap()
            .contains("Gout")
    );
    // A designation is a display too.
    assert!(result(
        &validate_code_in_system(
            &s,
            &q(&[("url", SYS), ("code", "t2"), ("display", "2型糖尿病")]),
            None
        )
        .unwrap()
    ));
    // Format rules where the content is not loaded.
    let yj = "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCodeYJ_CS";
    let ok =
        validate_code_in_system(&s, &q(&[("url", yj), ("code", "2171014F1020")]), None).unwrap();
    assert!(result(&ok));
    assert!(
        get(&ok, "message")[0]["valueString"]
            .as_str()
            .unwrap()
            .contains("only its format")
    );
    assert!(!result(
        &validate_code_in_system(&s, &q(&[("url", yj), ("code", "2171")]), None).unwrap()
    ));

    let vs = "https://issho.example/vs/dm";
    assert!(result(
        &validate_code_in_value_set(
            &s,
            &q(&[("url", vs), ("system", SYS), ("code", "t1")]),
            None
        )
        .unwrap()
    ));
    let no = validate_code_in_value_set(
        &s,
        &q(&[("url", vs), ("system", SYS), ("code", "gout")]),
        None,
    )
    .unwrap();
    assert!(!result(&no));
    assert!(
        get(&no, "message")[0]["valueString"]
            .as_str()
            .unwrap()
            .contains("not in")
    );
    let cc = Params::from_parameters(&json!({"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": vs},
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
            {"system": "http://other", "code": "x"}, {"system": SYS, "code": "t2"}]}}]}))
    .unwrap();
    assert!(result(&validate_code_in_value_set(&s, &cc, None).unwrap()));
    assert_eq!(
        validate_code_in_value_set(&s, &q(&[("code", "t1")]), None)
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        validate_code_in_value_set(&s, &q(&[("url", "http://nope"), ("code", "t1")]), None)
            .unwrap_err()
            .status,
        404
    );
}

#[test]
fn expand_filters_pages_and_speaks_japanese() {
    let s = src();
    let all = "https://issho.example/vs/all-dx";
    let out = expand_value_set(
        &s,
        &q(&[("url", all), ("filter", "糖尿病")]),
        None,
        "2026-12-04T00:00:00Z",
    )
    .unwrap();
    let codes: Vec<&str> = out["expansion"]["contains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["diabetes", "t2"]);
    assert_eq!(out["expansion"]["total"], 2);
    let page = expand_value_set(
        &s,
        &q(&[("url", all), ("offset", "2"), ("count", "3")]),
        None,
        "t",
    )
    .unwrap();
    assert_eq!(page["expansion"]["total"], 8);
    let codes: Vec<&str> = page["expansion"]["contains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["t1", "t2", "gout"]);
    let ja = expand_value_set(
        &s,
        &q(&[
            ("url", "https://issho.example/vs/dm"),
            ("displayLanguage", "ja"),
            ("includeDesignations", "true"),
        ]),
        None,
        "t",
    )
    .unwrap();
    assert_eq!(ja["expansion"]["contains"][0]["display"], "糖尿病");
    assert_eq!(
        ja["expansion"]["contains"][0]["designation"][0]["value"],
        "糖尿病"
    );
    assert_eq!(ja["url"], "https://issho.example/vs/dm");
    assert!(ja.get("compose").is_none());
    assert_eq!(
        expand_value_set(&s, &q(&[("url", all), ("count", "-1")]), None, "t")
            .unwrap_err()
            .status,
        400
    );
    let none = expand_value_set(&s, &q(&[("url", all), ("filter", "xyz")]), None, "t").unwrap();
    assert_eq!(none["expansion"]["total"], 0);
}

#[test]
fn subsumes_and_translate() {
    let s = src();
    let o = |a: &str, b: &str| {
        subsumes(&s, &q(&[("system", SYS), ("codeA", a), ("codeB", b)]), None).unwrap()["parameter"]
            [0]["valueCode"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(o("metabolic", "t2"), "subsumes");
    assert_eq!(o("t2", "metabolic"), "subsumed-by");
    assert_eq!(o("t2", "t2"), "equivalent");
    assert_eq!(o("gout", "htn"), "not-subsumed");
    assert_eq!(
        subsumes(
            &s,
            &q(&[("system", SYS), ("codeA", "x"), ("codeB", "t2")]),
            None
        )
        .unwrap_err()
        .status,
        404
    );

    let t = translate(&s, &q(&[("system", SYS), ("code", "t2")]), None).unwrap();
    assert!(result(&t));
    let m = get(&t, "match");
    assert_eq!(m[0]["part"][1]["valueCoding"]["code"], "E11");
    let back = translate(
        &s,
        &q(&[
            ("system", "http://hl7.org/fhir/sid/icd-10"),
            ("code", "I10"),
            ("reverse", "true"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(
        get(&back, "match")[0]["part"][1]["valueCoding"]["code"],
        "htn"
    );
    let none = translate(&s, &q(&[("system", SYS), ("code", "gout")]), None).unwrap();
    assert!(!result(&none));
    let narrowed = translate(
        &s,
        &q(&[
            ("system", SYS),
            ("code", "t2"),
            ("targetsystem", "http://snomed.info/sct"),
        ]),
        None,
    )
    .unwrap();
    assert!(!result(&narrowed));
}
