//! Search Bundles written with the stored JSON copied into them (plain JSON) are the same
//! Bundles as those built as a tree (`_pretty=true`, or `_elements` / `_summary`): the same
//! members in the same order, the same entries, links, totals and warnings.

use crate::common::*;
use serde_json::{Value, json};

/// The Bundle without what differs per answer: its `id`, and the token of the remembered
/// result set in its links.
fn without_id(mut b: Value) -> Value {
    b.as_object_mut().unwrap().remove("id");
    for l in b["link"].as_array_mut().unwrap() {
        let url = l["url"].as_str().unwrap();
        let kept: Vec<&str> = url
            .split('&')
            .filter(|p| !p.starts_with("_page="))
            .collect();
        l["url"] = Value::from(kept.join("&"));
    }
    b
}

fn same_both_ways(s: &Server, q: &str) -> Value {
    let sep = if q.contains('?') { '&' } else { '?' };
    let plain = s.get(q);
    assert_eq!(plain.status(), 200, "{q}");
    let plain_text = plain.text().unwrap();
    assert!(!plain_text.contains('\n'), "{q}: not pretty");
    let tree_text = s.get(&format!("{q}{sep}_pretty=true")).text().unwrap();
    assert!(tree_text.contains('\n'), "{q}: pretty");
    let plain: Value = serde_json::from_str(&plain_text).unwrap();
    let tree: Value = serde_json::from_str(&tree_text).unwrap();
    assert_eq!(plain["id"].as_str().map(str::len), Some(36), "{q}");
    // Same members in the same order (serde_json keeps the order).
    let order = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(order(&plain), order(&tree), "{q}");
    for (a, b) in plain["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(tree["entry"].as_array().into_iter().flatten())
    {
        assert_eq!(order(a), order(b), "{q}");
    }
    let (plain, tree) = (without_id(plain), without_id(tree));
    assert_eq!(plain, tree, "{q}");
    plain
}

#[test]
fn plain_search_bundles_equal_the_built_ones() {
    let s = Server::start();
    let org = json(s.put(
        "Organization/o1",
        &json!({"resourceType": "Organization", "id": "o1", "name": "病院A"}),
    ));
    assert_eq!(org["id"], "o1");
    let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "山田", "given": ["花子"]}],
        "managingOrganization": {"reference": "Organization/o1"}});
    assert_eq!(s.put("Patient/p1", &p).status(), 201);
    for i in 0..3 {
        let o = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "体重"},
            "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Organization/o1"}],
            "effectiveDateTime": format!("2024-0{}-01", i + 1),
            "valueQuantity": {"value": 60.5 + i as f64, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}});
        assert_eq!(s.post("Observation", &o).status(), 201);
    }
    // Matches and included resources, with a total.
    let b = same_both_ways(
        &s,
        "Observation?subject=Patient/p1&_include=Observation:performer&_total=accurate",
    );
    assert_eq!(b["total"], 3);
    let modes: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["search"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["match", "match", "match", "include"]);
    assert!(
        b["entry"][0]["fullUrl"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );
    assert_eq!(b["entry"][3]["resource"]["name"], "病院A");
    // Pages with next and previous links.
    let b = same_both_ways(&s, "Observation?subject=Patient/p1&_count=1&_sort=date");
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    let next = next_link(&b);
    let rel = next.split("/fhir/").nth(1).unwrap().to_string();
    let b = same_both_ways(&s, &rel);
    let rels: Vec<&str> = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["relation"].as_str().unwrap())
        .collect();
    assert_eq!(rels, ["self", "first", "previous", "next"]);
    // A warning (an unknown parameter, lenient handling) as the last entry.
    let b = same_both_ways(&s, "Observation?subject=Patient/p1&bogus=1");
    let last = b["entry"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["search"]["mode"], "outcome");
    assert_eq!(last["resource"]["resourceType"], "OperationOutcome");
    // Only a warning, no match.
    let b = same_both_ways(&s, "Observation?subject=Patient/none&bogus=1");
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    // No match and no warning: no `entry` at all.
    let b = same_both_ways(&s, "Observation?subject=Patient/none");
    assert!(b.get("entry").is_none());
    // Compartment search and a search across types.
    same_both_ways(&s, "Patient/p1/Observation");
    same_both_ways(&s, "?_type=Patient,Organization");
    // A read shows the same JSON as the entry.
    let b = same_both_ways(&s, "Patient?_id=p1");
    assert_eq!(b["entry"][0]["resource"], json(s.get("Patient/p1")));
}
