use super::*;
use serde_json::json;

fn check(v: &Value) -> Vec<Issue> {
    validate_resource(v, &ValidateOptions::default())
}

fn errors(v: &Value) -> Vec<Issue> {
    check(v).into_iter().filter(Issue::is_error).collect()
}

#[track_caller]
fn assert_valid(v: Value) {
    let e = errors(&v);
    assert!(e.is_empty(), "expected no errors, got {e:#?}");
}

/// Expect exactly one error, with this code and location.
#[track_caller]
fn assert_error(v: Value, code: IssueType, at: &str) {
    let e = errors(&v);
    assert_eq!(e.len(), 1, "expected one error at {at}, got {e:#?}");
    assert_eq!(e[0].code, code, "{e:#?}");
    assert_eq!(e[0].expression.as_deref(), Some(at), "{e:#?}");
}

/// Expect at least one error with this code and location.
#[track_caller]
fn assert_has_error(v: Value, code: IssueType, at: &str) {
    let e = errors(&v);
    assert!(
        e.iter()
            .any(|i| i.code == code && i.expression.as_deref() == Some(at)),
        "expected {code:?} at {at}, got {e:#?}"
    );
}

fn patient(extra: Value) -> Value {
    let mut p = json!({"resourceType": "Patient", "id": "p1"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[test]
fn root_must_be_a_known_resource() {
    let e = errors(&json!([1]));
    assert_eq!(e[0].code, IssueType::Structure);
    let e = errors(&json!({"id": "x"}));
    assert_eq!(e[0].code, IssueType::Required);
    let e = errors(&json!({"resourceType": "Patientt"}));
    assert_eq!(e[0].code, IssueType::NotSupported);
    assert!(e[0].diagnostics.contains("Patientt"));
    let e = errors(&json!({"resourceType": "DomainResource"}));
    assert_eq!(e[0].code, IssueType::NotSupported);
    let e = errors(&json!({"resourceType": "HumanName"}));
    assert_eq!(e[0].code, IssueType::NotSupported);
    let e = errors(&json!({"resourceType": 5}));
    assert_eq!(e[0].code, IssueType::Structure);
    assert_valid(json!({"resourceType": "Patient"}));
    assert_valid(json!({"resourceType": "Basic", "code": {"text": "x"}}));
}

#[test]
fn unknown_elements() {
    assert_error(patient(json!({"foo": 1})), IssueType::Structure, "Patient");
    let e = errors(&patient(json!({"name": [{"familyy": "x"}]})));
    assert_eq!(e.len(), 1);
    assert!(e[0].diagnostics.contains("familyy"));
    assert_eq!(e[0].expression.as_deref(), Some("Patient.name[0]"));
    // resourceType only at a resource root
    assert_error(
        patient(json!({"name": [{"resourceType": "HumanName", "family": "x"}]})),
        IssueType::Structure,
        "Patient.name[0]",
    );
    // `_` on a complex element is not a primitive extension
    assert_error(
        patient(json!({"_name": [{"extension": []}]})),
        IssueType::Structure,
        "Patient",
    );
    // backbone elements and content references resolve
    assert_valid(json!({"resourceType": "Patient", "contact": [{"name": {"family": "x"}}]}));
    assert_valid(json!({"resourceType": "Questionnaire", "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}]}));
    assert_error(
        json!({"resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "bogus": true}]}]}),
        IssueType::Structure,
        "Questionnaire.item[0].item[0]",
    );
}

#[test]
fn arrays_exactly_where_max_is_above_one() {
    assert_error(
        patient(json!({"name": {"family": "x"}})),
        IssueType::Structure,
        "Patient.name",
    );
    assert_error(
        patient(json!({"gender": ["male"]})),
        IssueType::Structure,
        "Patient.gender",
    );
    assert_error(
        patient(json!({"maritalStatus": [{"text": "x"}]})),
        IssueType::Structure,
        "Patient.maritalStatus",
    );
    assert_error(
        patient(json!({"name": [{"given": "Pat"}]})),
        IssueType::Structure,
        "Patient.name[0].given",
    );
    assert_valid(patient(json!({"name": [{"given": ["Pat", "Q"]}]})));
}

#[test]
fn empty_values_and_nulls() {
    assert_error(
        patient(json!({"name": []})),
        IssueType::Structure,
        "Patient.name",
    );
    assert_error(
        patient(json!({"name": [{}]})),
        IssueType::Structure,
        "Patient.name[0]",
    );
    assert_error(
        patient(json!({"name": [{"family": ""}]})),
        IssueType::Value,
        "Patient.name[0].family",
    );
    assert_error(
        patient(json!({"gender": null})),
        IssueType::Structure,
        "Patient.gender",
    );
    assert_error(
        patient(json!({"name": [null]})),
        IssueType::Structure,
        "Patient.name[0]",
    );
    assert_error(
        patient(json!({"name": [{"given": ["a", null]}]})),
        IssueType::Structure,
        "Patient.name[0].given[1]",
    );
    // an element with only an id has no content (ele-1)
    assert_error(
        patient(json!({"maritalStatus": {"id": "a"}})),
        IssueType::Structure,
        "Patient.maritalStatus",
    );
    // leading/trailing whitespace in a string: a warning only
    let issues = check(&patient(json!({"name": [{"family": " x "}]})));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].severity, crate::Severity::Warning);
}

#[test]
fn primitive_extensions() {
    let ext = json!({"extension": [{"url": "http://example.org/x", "valueString": "y"}]});
    assert_valid(patient(
        json!({"birthDate": "1970-01-01", "_birthDate": ext}),
    ));
    assert_valid(patient(json!({"_birthDate": ext})));
    assert_valid(patient(
        json!({"birthDate": "1970", "_birthDate": {"id": "b"}}),
    ));
    // `_x` must be an object with id/extension only
    assert_error(
        patient(json!({"_birthDate": "x"})),
        IssueType::Structure,
        "Patient.birthDate",
    );
    assert_error(
        patient(json!({"birthDate": "1970", "_birthDate": {"value": "x"}})),
        IssueType::Structure,
        "Patient.birthDate",
    );
    assert_error(
        patient(json!({"_birthDate": {"id": "a"}})),
        IssueType::Structure,
        "Patient.birthDate",
    );
    assert_error(
        patient(json!({"birthDate": "1970", "_birthDate": {}})),
        IssueType::Structure,
        "Patient.birthDate",
    );
    // aligned arrays
    assert_valid(patient(json!({"name": [{
        "given": ["a", null, "c"],
        "_given": [null, ext, {"id": "g3"}]
    }]})));
    assert_valid(patient(json!({"name": [{"_given": [ext]}]})));
    assert_error(
        patient(json!({"name": [{"given": ["a", "b"], "_given": [null]}]})),
        IssueType::Structure,
        "Patient.name[0].given",
    );
    assert_error(
        patient(json!({"name": [{"given": ["a", null], "_given": [null, null]}]})),
        IssueType::Structure,
        "Patient.name[0].given[1]",
    );
    assert_error(
        patient(json!({"name": [{"given": ["a"], "_given": ext}]})),
        IssueType::Structure,
        "Patient.name[0].given",
    );
    // extension problems inside `_x` are located under the primitive
    assert_error(
        patient(json!({"birthDate": "1970", "_birthDate": {"extension": [{"valueString": "y"}]}})),
        IssueType::Required,
        "Patient.birthDate.extension[0]",
    );
    // Element.id and Extension.url take no extensions
    assert_error(
        patient(json!({"name": [{"family": "x", "id": "a", "_id": ext}]})),
        IssueType::Structure,
        "Patient.name[0]",
    );
    assert_error(
        patient(json!({"extension": [{"url": "http://e.org", "_url": ext, "valueString": "x"}]})),
        IssueType::Structure,
        "Patient.extension[0]",
    );
    // a primitive extension satisfies a required element
    assert_valid(json!({"resourceType": "Bundle", "_type": ext}));
}

#[test]
fn cardinality() {
    assert_error(
        json!({"resourceType": "Observation", "code": {"text": "x"}}),
        IssueType::Required,
        "Observation",
    );
    let e = errors(&json!({"resourceType": "Observation", "status": "final"}));
    assert!(e[0].diagnostics.contains("'code'"), "{e:?}");
    // required element inside a backbone element
    assert_error(
        json!({"resourceType": "Patient", "link": [{"type": "seealso"}]}),
        IssueType::Required,
        "Patient.link[0]",
    );
    // max 0: xhtml has no extensions
    assert_has_error(
        json!({"resourceType": "Basic", "code": {"text": "x"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>",
                "_div": {"extension": [{"url": "http://e.org", "valueString": "y"}]}}}),
        IssueType::Structure,
        "Basic.text.div",
    );
    // a repeating element with a numeric maximum
    let e = errors(&json!({"resourceType": "Basic", "code": {"text": "x"}}));
    assert!(e.is_empty());
}

#[test]
fn choice_types() {
    let obs = |extra: Value| {
        let mut o =
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    assert_valid(obs(json!({"valueQuantity": {"value": 1.50, "unit": "mg"}})));
    assert_valid(obs(
        json!({"valueString": "x", "effectiveDateTime": "2020-01-01T10:00:00Z"}),
    ));
    assert_error(
        obs(json!({"valueString": "x", "valueBoolean": true})),
        IssueType::Structure,
        "Observation",
    );
    assert_error(
        obs(json!({"valueFoo": "x"})),
        IssueType::Structure,
        "Observation",
    );
    assert_error(
        obs(json!({"value": "x"})),
        IssueType::Structure,
        "Observation",
    );
    assert_error(
        obs(json!({"valueQuantity": {"value": "1"}})),
        IssueType::Structure,
        "Observation.value.ofType(Quantity).value",
    );
    // a required choice: Extension value[x] is optional, but e.g. Timing-free
    // Condition.onset[x] is optional too; use Observation.component.code + value
    assert_valid(obs(
        json!({"component": [{"code": {"text": "a"}, "valueInteger": 5}]}),
    ));
    // `_valueString` counts as the same choice as `valueString`
    assert_valid(json!({"resourceType": "Patient", "extension": [{
        "url": "http://e.org", "valueString": "x", "_valueString": {"id": "a"}}]}));
}

#[test]
fn primitive_json_types() {
    assert_error(
        patient(json!({"active": "true"})),
        IssueType::Structure,
        "Patient.active",
    );
    assert_valid(patient(json!({"active": true, "multipleBirthInteger": 2})));
    assert_error(
        patient(json!({"multipleBirthInteger": "2"})),
        IssueType::Structure,
        "Patient.multipleBirth.ofType(integer)",
    );
    assert_error(
        patient(json!({"multipleBirthInteger": 2.0})),
        IssueType::Value,
        "Patient.multipleBirth.ofType(integer)",
    );
    let big: Value =
        serde_json::from_str(r#"{"resourceType":"Patient","multipleBirthInteger":2147483648}"#)
            .unwrap();
    assert_error(
        big,
        IssueType::Value,
        "Patient.multipleBirth.ofType(integer)",
    );
    let exp: Value =
        serde_json::from_str(r#"{"resourceType":"Patient","multipleBirthInteger":1e2}"#).unwrap();
    assert_error(
        exp,
        IssueType::Value,
        "Patient.multipleBirth.ofType(integer)",
    );
    assert_error(
        patient(json!({"birthDate": 1970})),
        IssueType::Structure,
        "Patient.birthDate",
    );
    // decimals keep their precision up to what the search index can compare (17 significant
    // digits, trailing zeros not counted), and must be numbers
    let dec = |v: &str| -> Value {
        serde_json::from_str(&format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},
                "valueQuantity":{{"value":{v}}}}}"#
        ))
        .unwrap()
    };
    assert_valid(dec("1234567890123456.7"));
    assert_valid(dec("1.000000000000000000E-245"));
    assert_error(
        dec("12345678901234567890.123456789"),
        IssueType::Value,
        "Observation.value.ofType(Quantity).value",
    );
    assert_error(
        dec("1e999999"),
        IssueType::Value,
        "Observation.value.ofType(Quantity).value",
    );
    // positiveInt / unsignedInt
    let pr = |n: Value| json!({"resourceType": "Patient", "extension": [{"url": "http://e.org", "valuePositiveInt": n}]});
    assert_valid(pr(json!(1)));
    assert_error(
        pr(json!(0)),
        IssueType::Value,
        "Patient.extension[0].value.ofType(positiveInt)",
    );
    let ur = |n: Value| json!({"resourceType": "Patient", "extension": [{"url": "http://e.org", "valueUnsignedInt": n}]});
    assert_valid(ur(json!(0)));
    assert_error(
        ur(json!(-1)),
        IssueType::Value,
        "Patient.extension[0].value.ofType(unsignedInt)",
    );
}

#[test]
fn primitive_formats() {
    let ext = |key: &str, v: Value| {
        let mut e = json!({"url": "http://e.org"});
        e[key] = v;
        json!({"resourceType": "Basic", "code": {"text": "x"}, "extension": [e]})
    };
    let cases: &[(&str, &str, bool)] = &[
        ("valueId", "abc-1.2", true),
        ("valueId", "abc_1", false),
        ("valueDate", "2020-02-29", true),
        ("valueDate", "2021-02-29", false),
        ("valueDateTime", "2020-01-01T10:00:00+09:00", true),
        ("valueDateTime", "2020-01-01T10:00:00", false),
        ("valueInstant", "2020-01-01T10:00:00.123Z", true),
        ("valueInstant", "2020-01-01", false),
        ("valueTime", "23:59:59", true),
        ("valueTime", "24:00:00", false),
        ("valueUri", "http://example.org/a", true),
        ("valueUri", "http://example.org/a b", false),
        ("valueUrl", "http://example.org/a b", false),
        ("valueCanonical", "http://example.org/a|1.0", true),
        ("valueCanonical", "http://example.org/a |1.0", false),
        ("valueCode", "a b", true),
        ("valueCode", "a  b", false),
        ("valueCode", "a ", false),
        ("valueOid", "urn:oid:2.16.840.1", true),
        ("valueOid", "2.16.840.1", false),
        (
            "valueUuid",
            "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
            true,
        ),
        (
            "valueUuid",
            "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
            false,
        ),
        ("valueBase64Binary", "aGVsbG8gd29ybGQ=", true),
        ("valueBase64Binary", "aGVsbG8gd29ybGQ", false),
        ("valueMarkdown", "# title\n\ntext\n", true),
    ];
    for &(key, value, ok) in cases {
        let e = errors(&ext(key, json!(value)));
        assert_eq!(e.is_empty(), ok, "{key} {value:?}: {e:#?}");
        if !ok {
            assert_eq!(e[0].code, IssueType::Value, "{key} {value:?}");
            let suffix = &key["value".len()..];
            let mut t = suffix.to_string();
            t[..1].make_ascii_lowercase();
            assert_eq!(
                e[0].expression.as_deref(),
                Some(format!("Basic.extension[0].value.ofType({t})").as_str())
            );
        }
    }
    // resource id uses the id syntax; element ids are plain strings
    assert_error(
        json!({"resourceType": "Patient", "id": "a_b"}),
        IssueType::Value,
        "Patient.id",
    );
    assert_valid(json!({"resourceType": "Patient", "name": [{"id": "a_b", "family": "x"}]}));
    // whitespace-only strings and control characters: warnings
    for odd in ["   ", "a\u{1}b"] {
        let issues = check(&ext("valueString", json!(odd)));
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!(issues[0].severity, crate::Severity::Warning);
    }
    // strings over 1 MiB
    let long = "x".repeat(MAX_STRING_CHARS + 1);
    assert_error(
        patient(json!({"name": [{"text": long}]})),
        IssueType::TooLong,
        "Patient.name[0].text",
    );
}

#[test]
fn narrative() {
    let with_div =
        |div: &str| json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
    assert_valid(with_div(
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Pat <b>Q</b> &amp; co</p></div>",
    ));
    for bad in [
        "<div>no namespace</div>",
        "<p xmlns=\"http://www.w3.org/1999/xhtml\">x</p>",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</div>",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"a\" onerror=\"x()\"/></div>",
    ] {
        assert_error(with_div(bad), IssueType::Value, "Patient.text.div");
    }
    assert_error(
        json!({"resourceType": "Patient", "text": {"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}),
        IssueType::Required,
        "Patient.text",
    );
}

#[test]
fn required_bindings() {
    assert_valid(patient(json!({"gender": "female"})));
    assert_error(
        patient(json!({"gender": "femal"})),
        IssueType::CodeInvalid,
        "Patient.gender",
    );
    let no_bindings = ValidateOptions {
        check_bindings: false,
        ..Default::default()
    };
    assert!(validate_resource(&patient(json!({"gender": "femal"})), &no_bindings).is_empty());
    // Coding with the value set's system
    let enc =
        |class: Value| json!({"resourceType": "Encounter", "status": "finished", "class": class});
    let _ = enc;
    // CodeableConcept with a required binding: AllergyIntolerance.clinicalStatus
    let allergy = |system: &str, code: &str| {
        json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p"},
            "clinicalStatus": {"coding": [{"system": system, "code": code}]}})
    };
    assert_valid(allergy(
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        "active",
    ));
    assert_error(
        allergy(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "bogus",
        ),
        IssueType::CodeInvalid,
        "AllergyIntolerance.clinicalStatus.coding[0]",
    );
    // another system: not checked
    assert_valid(allergy("http://example.org/other", "bogus"));
    // Quantity.comparator (a code bound inside a data type)
    assert_error(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1, "comparator": "=="}}),
        IssueType::CodeInvalid,
        "Observation.value.ofType(Quantity).comparator",
    );
}

#[test]
fn references() {
    let obs = |reference: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": reference}})
    };
    for ok in [
        "Patient/123",
        "Patient/123/_history/2",
        "Group/g.1",
        "http://example.org/fhir/Patient/123",
        "https://example.org/fhir/Patient/123/_history/1",
        "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
        "urn:oid:1.2.3.4",
    ] {
        assert_valid(obs(ok));
    }
    for bad in [
        "Patient",
        "Patient/",
        "Patient/a_b",
        "Foo/123",
        "Patient/1/2",
        "urn:uuid:xyz",
        "#missing",
        "Patient?identifier=x",
    ] {
        let e = errors(&obs(bad));
        assert_eq!(e.len(), 1, "{bad}: {e:#?}");
        assert_eq!(
            e[0].expression.as_deref(),
            Some("Observation.subject.reference"),
            "{bad}"
        );
    }
    // target types
    assert_error(
        obs("Practitioner/1"),
        IssueType::Invalid,
        "Observation.subject.reference",
    );
    assert_error(
        obs("http://example.org/fhir/Practitioner/1"),
        IssueType::Invalid,
        "Observation.subject.reference",
    );
    // Reference(Any)
    assert_valid(
        json!({"resourceType": "Provenance", "target": [{"reference": "Practitioner/1"}],
        "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": {"display": "x"}}]}),
    );
    // Reference.type
    assert_valid(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"type": "Patient", "identifier": {"value": "1"}}}),
    );
    // An unknown type: a warning (the binding is extensible), not an error.
    let v = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"type": "Patientt", "display": "x"}});
    assert_valid(v.clone());
    assert!(
        check(&v).iter().any(|i| i.code == IssueType::Value
            && i.expression.as_deref() == Some("Observation.subject.type")),
        "{:#?}",
        check(&v)
    );
    // conditional references are allowed inside transactions only
    let tx = |ty: &str| {
        json!({"resourceType": "Bundle", "type": ty, "entry": [{
            "resource": obs("Patient?identifier=http://e.org|1"),
            "request": {"method": "POST", "url": "Observation"}}]})
    };
    assert_valid(tx("transaction"));
    assert_error(
        tx("collection"),
        IssueType::Value,
        "Bundle.entry[0].resource.ofType(Observation).subject.reference",
    );
}

#[test]
fn contained_resources() {
    let ok = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "p1"}],
        "subject": {"reference": "#p1"}});
    assert_valid(ok.clone());
    assert!(check(&ok).is_empty());
    // no id
    assert_has_error(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "contained": [{"resourceType": "Patient"}]}),
        IssueType::Required,
        "Observation.contained[0].ofType(Patient)",
    );
    // nested contained
    assert_has_error(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "#p1"},
            "contained": [{"resourceType": "Patient", "id": "p1",
                "contained": [{"resourceType": "Patient", "id": "p2"}]}]}),
        IssueType::Invariant,
        "Observation.contained[0].ofType(Patient)",
    );
    // meta.versionId: warning only
    let issues = check(
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "#p1"},
        "contained": [{"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}}]}),
    );
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].severity, crate::Severity::Warning);
    // validated recursively, with locations inside
    assert_error(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "#p1"},
            "contained": [{"resourceType": "Patient", "id": "p1", "gender": "x"}]}),
        IssueType::CodeInvalid,
        "Observation.contained[0].ofType(Patient).gender",
    );
    // a contained resource referring to the container with "#"
    assert_valid(json!({"resourceType": "Patient", "id": "x",
        "contained": [{"resourceType": "Provenance", "id": "prov",
            "target": [{"reference": "#"}], "recorded": "2020-01-01T00:00:00Z",
            "agent": [{"who": {"display": "x"}}]}]}));
    // not referenced at all: dom-3 warning
    let issues = check(&json!({"resourceType": "Patient",
        "contained": [{"resourceType": "Patient", "id": "p2"}]}));
    assert_eq!(issues.len(), 1);
    assert!(issues[0].diagnostics.contains("dom-3"));
    // unknown contained type
    assert_error(
        json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope", "id": "a"}]}),
        IssueType::NotSupported,
        "Patient.contained[0]",
    );
}

#[test]
fn bundles_and_parameters_validate_nested_resources() {
    assert_error(
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}},
            {"resource": {"resourceType": "Patient", "id": "b"}},
            {"resource": {"resourceType": "Patient", "id": "c", "birthDate": "1970-13-01"}}
        ]}),
        IssueType::Value,
        "Bundle.entry[2].resource.ofType(Patient).birthDate",
    );
    assert_error(
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "p", "resource": {"resourceType": "Patient", "foo": 1}}]}),
        IssueType::Structure,
        "Parameters.parameter[0].resource.ofType(Patient)",
    );
    assert_valid(json!({"resourceType": "Parameters", "parameter": [
        {"name": "p", "part": [{"name": "q", "valueString": "x"}]}]}));
    // a resource element must hold a resource
    assert_error(
        json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "x"}}]}),
        IssueType::Required,
        "Bundle.entry[0].resource",
    );
}

#[test]
fn extensions() {
    assert_valid(patient(
        json!({"extension": [{"url": "http://e.org", "extension": [{"url": "a", "valueCode": "x"}]}]}),
    ));
    assert_error(
        patient(json!({"extension": [{"url": "http://e.org"}]})),
        IssueType::Invariant,
        "Patient.extension[0]",
    );
    assert_error(
        patient(
            json!({"extension": [{"url": "http://e.org", "valueString": "x",
            "extension": [{"url": "a", "valueCode": "x"}]}]}),
        ),
        IssueType::Invariant,
        "Patient.extension[0]",
    );
    assert_error(
        patient(json!({"extension": [{"valueString": "x"}]})),
        IssueType::Required,
        "Patient.extension[0]",
    );
    assert_error(
        patient(json!({"modifierExtension": [{"url": "http://e.org"}]})),
        IssueType::Invariant,
        "Patient.modifierExtension[0]",
    );
    // complex extension values are validated by their type
    assert_error(
        patient(json!({"extension": [{"url": "http://e.org", "valueHumanName": {"family": 1}}]})),
        IssueType::Structure,
        "Patient.extension[0].value.ofType(HumanName).family",
    );
}

#[test]
fn every_scope_fits_the_seen_array() {
    let s = schema();
    let max = s.scopes.iter().map(|sc| sc.elements.len()).max().unwrap();
    assert!(max <= MAX_SCOPE_ELEMENTS, "{max}");
    assert!(
        s.scopes
            .iter()
            .all(|sc| sc.elements.iter().all(|e| e.types.len() < UNSEEN as usize))
    );
}

/// Rough speed check in release mode: `cargo test --release -p issho-model -- --ignored
/// --nocapture validation_speed`. Prints the time per validation; asserts nothing about it.
#[test]
#[ignore]
fn validation_speed() {
    let mut obs = json!({
        "resourceType": "Observation", "id": "bp", "status": "final",
        "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Blood pressure <b>107/60</b> mmHg, taken at rest.</p></div>"},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281"}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}], "text": "Blood pressure"},
        "subject": {"reference": "Patient/example", "display": "Pat"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2012-09-17T10:11:12+09:00",
        "issued": "2012-09-17T10:11:12.345+09:00",
        "performer": [{"reference": "Practitioner/example"}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L", "display": "low"}]}],
        "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "368209003", "display": "Right arm"}]},
        "component": []
    });
    let comp = json!({
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
        "valueQuantity": {"value": 107, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N", "display": "normal"}]}]
    });
    for _ in 0..10 {
        obs["component"].as_array_mut().unwrap().push(comp.clone());
    }
    let size = serde_json::to_string(&obs).unwrap().len();
    assert!(check(&obs).is_empty(), "{:#?}", check(&obs));
    let n = 20_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(check(std::hint::black_box(&obs)));
    }
    let per = start.elapsed() / n;
    println!("validated a {size}-byte Observation in {per:?} per call");
}
