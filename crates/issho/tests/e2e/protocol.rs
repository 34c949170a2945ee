//! The protocol as real FHIR clients meet it: paging and totals (`_count=0`, `_total`), JSON
//! without empty arrays or objects, an OperationOutcome on every error — also those answered
//! by the HTTP layers below the handler —, body limits, decimals the index can hold, and the
//! CapabilityStatement (cached, ETag, compression, `_summary` / `_elements`).

use crate::common::*;

#[test]
fn searches_beyond_what_sqlite_takes_are_refused_clearly() {
    let s = Server::start();
    // More parameters, or values, than SQLite can take in one statement (was a 500).
    let many: String = (0..1_000).map(|i| format!("name=a{i}&")).collect();
    let d = assert_outcome(s.get(&format!("Patient?{many}")), 400);
    assert!(d.contains("at most 200 parameters"), "{d}");
    let many: String = (0..1_000).map(|i| format!("a{i},")).collect();
    let d = assert_outcome(s.get(&format!("Patient?name={many}")), 400);
    assert!(d.contains("400 values"), "{d}");
    let many: String = (0..1_000)
        .map(|i| format!("date=ge2020-01-0{}&", 1 + i % 9))
        .collect();
    assert_outcome(s.get(&format!("Observation?{many}")), 400);
    // Just under the limits still works.
    let ok: String = (0..200).map(|i| format!("name=a{i}&")).collect();
    assert_eq!(s.get(&format!("Patient?{ok}")).status(), 200);
}

fn obs_with(value: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},"valueQuantity":{{"value":{value},"unit":"g"}}}}"#
    )
}

#[test]
fn decimals_beyond_the_index_are_refused_and_the_rest_found() {
    let s = Server::start();
    let post = |body: String| {
        s.req("POST", "Observation")
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .unwrap()
    };
    let huge = format!("0.{}", "7".repeat(100_000));
    for (value, why) in [
        ("1e999999", "too large"),
        ("-1e300", "too large"),
        ("1e-999999", "too small"),
        ("1.0000000000000000000001", "significant digits"),
        (huge.as_str(), "100000 significant digits"),
    ] {
        let r = post(obs_with(value));
        let status = r.status().as_u16();
        assert!(status == 400 || status == 422, "{value}: {status}");
        let d = assert_outcome(r, status);
        assert!(
            d.contains(why) && d.contains("at most 17 significant digits"),
            "{d}"
        );
        assert!(
            d.len() < 2_000,
            "the message repeats the value: {}",
            d.len()
        );
    }
    // Nothing of them was stored.
    assert_eq!(json(s.get("Observation?_summary=count"))["total"], 0);
    // What a double holds is stored and found by its own text, whatever its precision.
    for value in [
        "1.000000000000000000E-245",
        "337.24800000000005",
        "6.50",
        "1e18",
    ] {
        let r = post(obs_with(value));
        assert_eq!(r.status(), 201, "{value}: {}", r.text().unwrap());
        let b = json(s.get(&format!("Observation?value-quantity={value}")));
        assert_eq!(b["total"], 1, "{value}: {b}");
    }
    // Search values beyond the index: a clear 400, not a crash or silence.
    for q in [
        "value-quantity=1e999999",
        "value-quantity=gt1e-999",
        "value-quantity=1e999999|http://unitsofmeasure.org|g",
    ] {
        let d = assert_outcome(s.get(&format!("Observation?{q}")), 400);
        assert!(
            d.contains("value-quantity") && d.contains("at most 17 significant digits"),
            "{q}: {d}"
        );
    }
}
