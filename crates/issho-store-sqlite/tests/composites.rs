//! Composites at the resource's root searched through their components' own parameters
//! (issho-search `composite`): the tuples found are exactly those the composite's own rows
//! held — pairs of one resource's values, never values of two resources.

mod common;

use common::*;
use serde_json::json;

fn store() -> Db {
    let c = open();
    let loinc = "http://loinc.org";
    let ucum = "http://unitsofmeasure.org";
    let resources = [
        // Two codings for one value.
        json!({"resourceType": "Observation", "id": "hb", "status": "final",
            "code": {"coding": [{"system": loinc, "code": "718-7"}, {"system": "http://jlac", "code": "2A990"}]},
            "valueQuantity": {"value": 13.5, "system": ucum, "code": "g/dL"}}),
        // Another code with another value.
        json!({"resourceType": "Observation", "id": "glu", "status": "final",
            "code": {"coding": [{"system": loinc, "code": "2345-7"}]},
            "valueQuantity": {"value": 250, "system": ucum, "code": "mg/dL"}}),
        // A code without a value, and a value without a code.
        json!({"resourceType": "Observation", "id": "nov", "status": "final",
            "code": {"coding": [{"system": loinc, "code": "718-7"}]}}),
        json!({"resourceType": "Observation", "id": "noc", "status": "final",
            "code": {"text": "no coding"},
            "valueQuantity": {"value": 250, "system": ucum, "code": "mg/dL"}}),
        json!({"resourceType": "Observation", "id": "con", "status": "final",
            "code": {"coding": [{"system": loinc, "code": "5778-6"}]},
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "371244009"}], "text": "yellow"}}),
        json!({"resourceType": "Observation", "id": "str", "status": "final",
            "code": {"coding": [{"system": loinc, "code": "5778-6"}]},
            "valueString": "amber"}),
        json!({"resourceType": "Observation", "id": "dt", "status": "final",
            "code": {"coding": [{"system": loinc, "code": "21112-8"}]},
            "valueDateTime": "1970-02-15"}),
    ];
    for (i, r) in resources.iter().enumerate() {
        put(&c, &c.index, r, 1_000 + i as i64);
    }
    c
}

fn obs(c: &Db, q: &str) -> Vec<String> {
    ids(c, "Observation", q)
}

fn v(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_root_composite_pairs_each_code_with_the_resources_own_value() {
    let c = store();
    let none: Vec<String> = Vec::new();
    // Either coding pairs with the value.
    assert_eq!(
        obs(&c, "code-value-quantity=http://loinc.org|718-7$13.5"),
        v(&["hb"])
    );
    assert_eq!(obs(&c, "code-value-quantity=2A990$gt13"), v(&["hb"]));
    // Canonical units still match (1.35e-1 g/mL… here: 135 g/L).
    assert_eq!(
        obs(
            &c,
            "code-value-quantity=718-7$135|http://unitsofmeasure.org|g/L"
        ),
        v(&["hb"])
    );
    // A code of one resource never pairs with the value of another.
    assert_eq!(obs(&c, "code-value-quantity=718-7$250"), none);
    assert_eq!(obs(&c, "code-value-quantity=2345-7$13.5"), none);
    assert_eq!(obs(&c, "code-value-quantity=2345-7$250"), v(&["glu"]));
    // Several values ORed; :missing needs both components.
    assert_eq!(
        obs(&c, "code-value-quantity=718-7$13.5,2345-7$250"),
        v(&["glu", "hb"])
    );
    assert_eq!(
        obs(&c, "code-value-quantity:missing=false"),
        v(&["glu", "hb"])
    );
    assert_eq!(
        obs(&c, "code-value-quantity:missing=true"),
        v(&["con", "dt", "noc", "nov", "str"])
    );
    // The same through the combination with the components' composites.
    assert_eq!(obs(&c, "combo-code-value-quantity=718-7$13.5"), v(&["hb"]));
    assert_eq!(obs(&c, "combo-code-value-quantity=718-7$250"), none);
}

#[test]
fn concepts_and_dates_pair_the_same_way() {
    let c = store();
    let none: Vec<String> = Vec::new();
    assert_eq!(
        obs(
            &c,
            "code-value-concept=5778-6$http://snomed.info/sct|371244009"
        ),
        v(&["con"])
    );
    assert_eq!(obs(&c, "code-value-concept=718-7$371244009"), none);
    assert_eq!(obs(&c, "code-value-date=21112-8$1970-02"), v(&["dt"]));
    assert_eq!(obs(&c, "code-value-date=21112-8$gt1971"), none);
    assert_eq!(obs(&c, "code-value-date:missing=false"), v(&["dt"]));
}

/// `value-string` also indexes a CodeableConcept's text; the composite's component only
/// `valueString`: the composite keeps rows of its own, and the text does not pair.
#[test]
fn code_value_string_keeps_its_own_rows() {
    let c = store();
    assert_eq!(obs(&c, "value-string=yellow"), v(&["con"]));
    assert_eq!(
        obs(&c, "code-value-string=5778-6$yellow"),
        Vec::<String>::new()
    );
    assert_eq!(obs(&c, "code-value-string=5778-6$amber"), v(&["str"]));
    let own: i64 = c
        .query_row(
            "SELECT count(*) FROM sp_string s JOIN sp_param p ON p.id = s.param \
             WHERE p.key = 'Observation.code-value-string$1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(own, 1);
    // The shared ones have no rows (and no key) of their own.
    let shared: i64 = c
        .query_row(
            "SELECT count(*) FROM sp_param WHERE key LIKE 'Observation.code-value-quantity$%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(shared, 0);
}
