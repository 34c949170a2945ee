//! `Observation/$lastn` over HTTP: the newest `max` Observations of each code among those the
//! same search finds for the caller — a patient's own, a clinician's in care, nobody else's —
//! and the requests it refuses.

use serde_json::{Value, json};

fn ids_and_codes(b: &Value) -> Vec<(String, String)> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let r = &e["resource"];
            (
                r["effectiveDateTime"].as_str().unwrap_or("").to_string(),
                r["code"]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn lastn_gives_the_newest_of_each_code_within_reach() {
    let c = crate::web::setup();
    for (day, kg) in [
        ("2026-10-01", 61.0),
        ("2026-11-01", 60.2),
        ("2026-12-01", 59.8),
    ] {
        let (st, b) = c.call(
            "pat",
            "POST",
            "Observation",
            Some(&json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": day,
                "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})),
        );
        assert_eq!(st, 201, "{b}");
    }
    // One of each code by default: the newest HbA1c and the newest weight.
    let (st, b) = c.call("pat", "GET", "Observation/$lastn?patient=p1", None);
    assert_eq!(st, 200, "{b}");
    let mut got = ids_and_codes(&b);
    got.sort();
    assert_eq!(
        got,
        [
            ("2026-09-10".to_string(), "4548-4".to_string()),
            ("2026-12-01".to_string(), "29463-7".to_string())
        ]
    );
    // Two of each, newest first within a code; a category narrows it.
    let (_, b) = c.call("pat", "GET", "Observation/$lastn?patient=p1&max=2", None);
    let got = ids_and_codes(&b);
    assert_eq!(got.len(), 4);
    let weights: Vec<&str> = got
        .iter()
        .filter(|(_, c)| c == "29463-7")
        .map(|(d, _)| d.as_str())
        .collect();
    assert_eq!(weights, ["2026-12-01", "2026-11-01"]);
    let (_, b) = c.call(
        "pat",
        "GET",
        "Observation/$lastn?patient=p1&max=5&category=vital-signs",
        None,
    );
    assert_eq!(ids_and_codes(&b).len(), 3);
    // Hospital A's clinician sees its results and the person's weights; an emergency
    // physician elsewhere nothing; the person nothing of another.
    let (_, b) = c.call("doc-a", "GET", "Observation/$lastn?patient=p1&max=9", None);
    assert_eq!(ids_and_codes(&b).len(), 6);
    let (st, b) = c.call("er", "GET", "Observation/$lastn?patient=p1&max=9", None);
    assert_eq!(st, 200, "{b}");
    assert_eq!(ids_and_codes(&b).len(), 0);
    let (_, b) = c.call("pat", "GET", "Observation/$lastn?patient=p2&max=9", None);
    assert_eq!(ids_and_codes(&b).len(), 0);
    // Refused: a max that is not a positive integer, paging and ordering of its own,
    // parameters that are not Observation's.
    for q in [
        "max=0",
        "max=abc",
        "max=1001",
        "_sort=date",
        "_count=5",
        "nope=1",
    ] {
        let (st, b) = c.call(
            "pat",
            "GET",
            &format!("Observation/$lastn?patient=p1&{q}"),
            None,
        );
        assert_eq!(st, 400, "{q}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    let (st, _) = c.call("pat", "GET", "metadata", None);
    assert_eq!(st, 200);
}
