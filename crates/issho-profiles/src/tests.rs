use super::*;
use serde_json::json;

/// Definitions and terminology from a list of resources.
pub type Map = crate::Resources;

fn el(id: &str, min: u64, max: &str, extra: Value) -> Value {
    let path: String = id
        .split('.')
        .map(|s| s.split(':').next().unwrap_or(s))
        .collect::<Vec<_>>()
        .join(".");
    let mut e = json!({"id": id, "path": path, "min": min, "max": max});
    if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            o.insert(k.clone(), v.clone());
        }
    }
    e
}

const EXT: &str = "https://issho.example/StructureDefinition/birth-place";

fn defs() -> Map {
    Map::new(vec![
        json!({"resourceType": "StructureDefinition", "url": "https://issho.example/StructureDefinition/jp-patient",
            "name": "TestPatient", "type": "Patient", "snapshot": {"element": [
            el("Patient", 0, "*", json!({"constraint": [{"key": "tp-1", "severity": "error",
                "human": "a name or an identifier", "expression": "name.exists() or identifier.exists()"}]})),
            el("Patient.identifier", 1, "*", json!({"slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}})),
            el("Patient.identifier:mrn", 1, "1", json!({})),
            el("Patient.identifier:mrn.system", 1, "1", json!({"fixedUri": "urn:mrn"})),
            el("Patient.identifier:mrn.value", 1, "1", json!({})),
            el("Patient.gender", 1, "1", json!({"type": [{"code": "code"}],
                "binding": {"strength": "required", "valueSet": "https://issho.example/vs/gender"}})),
            el("Patient.maritalStatus", 0, "1", json!({"patternCodeableConcept": {"coding": [{"system": "urn:ms"}]}})),
            el("Patient.extension", 0, "*", json!({"slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}})),
            el("Patient.extension:birthPlace", 0, "1", json!({"type": [{"code": "Extension", "profile": [EXT]}]})),
            el("Patient.managingOrganization", 0, "1", json!({"type": [{"code": "Reference",
                "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Organization"]}]})),
        ]}}),
        json!({"resourceType": "StructureDefinition", "url": EXT, "name": "BirthPlace", "type": "Extension",
        "context": [{"type": "element", "expression": "Patient"}],
        "snapshot": {"element": [
            el("Extension", 0, "*", json!({})),
            el("Extension.url", 1, "1", json!({"fixedUri": EXT})),
            el("Extension.value[x]", 1, "1", json!({"type": [{"code": "string"}]})),
        ]}}),
        json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/gender",
            "compose": {"include": [{"system": "http://hl7.org/fhir/administrative-gender",
                "concept": [{"code": "female"}, {"code": "male"}]}]}}),
    ])
}

fn messages(r: &Value) -> Vec<String> {
    let d = defs();
    validate(
        r,
        "https://issho.example/StructureDefinition/jp-patient",
        &d,
        &d,
    )
    .into_iter()
    .filter(|i| i.is_error())
    .map(|i| i.diagnostics)
    .collect()
}

#[test]
fn a_conforming_patient_has_no_errors() {
    let ok = json!({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "1"},
        {"system": "urn:mrn", "value": "42"}], "gender": "female",
        "maritalStatus": {"coding": [{"system": "urn:ms", "code": "M"}], "text": "married"},
        "extension": [{"url": EXT, "valueString": "札幌"}],
        "managingOrganization": {"reference": "Organization/o"}});
    assert_eq!(messages(&ok), Vec::<String>::new());
}

#[test]
fn each_rule_names_the_profile_the_place_and_the_rule() {
    let has = |r: Value, want: &str| {
        let m = messages(&r);
        assert!(
            m.iter()
                .any(|x| x.contains(want) && x.starts_with("TestPatient") || x.contains(want)),
            "{want} in {m:?}"
        );
    };
    // A slice's cardinality.
    has(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "1"}], "gender": "male"}),
        "Patient.identifier:mrn needs at least 1, has 0",
    );
    // A required binding.
    has(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}], "gender": "other"}),
        "other is not in the value set https://issho.example/vs/gender (required binding)",
    );
    // A pattern.
    has(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}], "gender": "male",
        "maritalStatus": {"coding": [{"system": "urn:elsewhere", "code": "M"}]}}),
        "must match the pattern",
    );
    // An extension against its own definition (value[x] is required there).
    has(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}], "gender": "male",
        "extension": [{"url": EXT}]}),
        "Extension.value[x] needs at least 1",
    );
    // A reference to the wrong type.
    has(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}], "gender": "male",
        "managingOrganization": {"reference": "Practitioner/x"}}),
        "refers to a Practitioner, where Organization is required",
    );
    // Cardinality of an element, and an invariant (root).
    has(
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}]}),
        "Patient.gender needs at least 1",
    );
    let m = messages(&json!({"resourceType": "Patient", "gender": "male"}));
    assert!(
        m.iter()
            .any(|x| x.contains("Patient.identifier needs at least 1")),
        "{m:?}"
    );
}

#[test]
fn an_unknown_profile_is_an_error() {
    let d = defs();
    let i = validate(
        &json!({"resourceType": "Patient"}),
        "https://nowhere/sd",
        &d,
        &d,
    );
    assert!(
        i[0].is_error() && i[0].diagnostics.contains("not installed"),
        "{:?}",
        i[0]
    );
}
