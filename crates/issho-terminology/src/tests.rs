use super::*;
use crate::Resources;
use crate::expand::{Options, code_regex, expand};
use serde_json::json;

pub(crate) const SYS: &str = "https://issho.example/cs/dx";

pub(crate) fn cs() -> Value {
    json!({"resourceType": "CodeSystem", "url": SYS, "valueSet": "https://issho.example/vs/all-dx",
    "name": "Dx", "content": "complete", "version": "1",
    "concept": [
      {"code": "metabolic", "display": "Metabolic", "concept": [
          {"code": "diabetes", "display": "Diabetes", "designation": [{"language": "ja", "value": "糖尿病"}],
           "concept": [{"code": "t1", "display": "Type 1"}, {"code": "t2", "display": "Type 2",
               "designation": [{"language": "ja", "value": "2型糖尿病"}]}]},
          {"code": "gout", "display": "Gout"}
      ]},
      {"code": "circulatory", "display": "Circulatory", "concept": [{"code": "htn", "display": "Hypertension"}]},
      {"code": "mi", "display": "Myocardial infarction", "property": [{"code": "parent", "valueCode": "circulatory"}]}
    ]})
}

pub(crate) fn src() -> Resources {
    Resources::new(vec![
        cs(),
        json!({"resourceType": "ValueSet", "id": "dm", "url": "https://issho.example/vs/dm",
          "compose": {"include": [{"system": SYS, "filter": [{"property": "concept", "op": "is-a", "value": "diabetes"}]}]}}),
        json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/circ-no-htn",
          "compose": {"include": [{"system": SYS, "filter": [{"property": "concept", "op": "descendent-of", "value": "circulatory"}]}],
                      "exclude": [{"system": SYS, "concept": [{"code": "htn"}]}]}}),
        json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/t-codes",
          "compose": {"include": [{"system": SYS, "filter": [{"property": "code", "op": "regex", "value": "t[0-9]+"}]}]}}),
        json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/import",
          "compose": {"include": [{"valueSet": ["https://issho.example/vs/dm"], "system": SYS,
                                   "concept": [{"code": "t2"}, {"code": "gout"}]}]}}),
        json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/expanded",
          "expansion": {"timestamp": "2026-01-01", "contains": [
             {"system": SYS, "code": "metabolic", "abstract": true, "contains": [{"system": SYS, "code": "gout"}]}]}}),
        json!({"resourceType": "ConceptMap", "url": "https://issho.example/cm/dx-icd",
          "group": [{"source": SYS, "target": "http://hl7.org/fhir/sid/icd-10", "element": [
              {"code": "t2", "target": [{"code": "E11", "display": "Type 2 diabetes mellitus", "equivalence": "equivalent"}]},
              {"code": "htn", "target": [{"code": "I10", "equivalence": "wider"}]}]}]}),
    ])
}

fn codes_of(r: &str) -> Result<String, Issue> {
    codes(&src(), r).map(|c| {
        c.iter()
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

#[test]
fn hierarchy_and_filters() {
    assert_eq!(
        codes_of("https://issho.example/vs/dm").unwrap(),
        "diabetes t1 t2"
    );
    assert_eq!(codes_of("ValueSet/dm").unwrap(), "diabetes t1 t2");
    assert_eq!(
        codes_of("https://issho.example/vs/circ-no-htn").unwrap(),
        "mi"
    );
    assert_eq!(
        codes_of("https://issho.example/vs/t-codes").unwrap(),
        "t1 t2"
    );
    assert_eq!(codes_of("https://issho.example/vs/import").unwrap(), "t2");
    assert_eq!(
        codes_of("https://issho.example/vs/expanded").unwrap(),
        "gout"
    );
    assert_eq!(
        codes_of("https://issho.example/vs/all-dx").unwrap(),
        "circulatory diabetes gout htn metabolic mi t1 t2"
    );
    // The specification's required value sets.
    assert_eq!(
        codes_of("http://hl7.org/fhir/ValueSet/administrative-gender").unwrap(),
        "female male other unknown"
    );
    assert_eq!(
        codes_of("https://nowhere.example/vs").unwrap_err().code,
        IssueType::NotFound
    );
    let s = src();
    let c = |v: BTreeSet<(String, String)>| v.into_iter().map(|(_, c)| c).collect::<Vec<_>>();
    assert_eq!(
        c(subsumption(&s, Some(SYS), "metabolic", false).unwrap()),
        vec!["diabetes", "gout", "metabolic", "t1", "t2"]
    );
    assert_eq!(
        c(subsumption(&s, Some(SYS), "t2", true).unwrap()),
        vec!["diabetes", "metabolic", "t2"]
    );
    assert_eq!(
        c(subsumption(&s, Some(SYS), "circulatory", false).unwrap()),
        vec!["circulatory", "htn", "mi"]
    );
    assert!(subsumption(&s, Some(SYS), "nope", false).is_err());
    assert!(subsumption(&s, Some("http://unknown"), "x", false).is_err());
    assert!(subsumption(&s, None, "x", false).is_err());
}

#[test]
fn expansions_keep_order_and_displays_in_the_asked_language() {
    let o = |lang: Option<&str>| Options {
        limit: 100,
        lang: lang.map(str::to_string),
    };
    let e = expand(&src(), "https://issho.example/vs/dm", &o(None)).unwrap();
    let shown: Vec<(&str, Option<&str>)> = e
        .entries
        .iter()
        .map(|e| (e.code.as_str(), e.display.as_deref()))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("diabetes", Some("Diabetes")),
            ("t1", Some("Type 1")),
            ("t2", Some("Type 2"))
        ]
    );
    let ja = expand(&src(), "https://issho.example/vs/dm", &o(Some("ja"))).unwrap();
    assert_eq!(ja.entries[0].display.as_deref(), Some("糖尿病"));
    assert_eq!(
        ja.entries[1].display.as_deref(),
        Some("Type 1"),
        "no Japanese: the display"
    );
    assert_eq!(ja.entries[2].version.as_deref(), Some("1"));
}

#[test]
fn regex_subset() {
    let ok = |p: &str, s: &str| code_regex(p).unwrap().is_match(s);
    assert!(ok("t[0-9]+", "t12"));
    assert!(!ok("t[0-9]+", "t"));
    assert!(ok("E1.*", "E11.9"));
    assert!(!ok("E1.*", "XE11"));
    assert!(ok("^A\\d?$", "A"));
    assert!(ok("(a|b)c", "bc"));
    assert!(code_regex("(a").is_err());
}

#[test]
fn too_large_expansions_are_refused() {
    let concepts: Vec<Value> = (0..=MAX_CODES)
        .map(|i| json!({"code": format!("c{i}")}))
        .collect();
    let s = Resources::new(vec![
        json!({"resourceType": "CodeSystem", "url": SYS, "concept": concepts}),
        json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/big",
          "compose": {"include": [{"system": SYS}]}}),
    ]);
    assert_eq!(
        codes(&s, "https://issho.example/vs/big").unwrap_err().code,
        IssueType::TooCostly
    );
}
