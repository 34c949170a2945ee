//! Properties of the generated population: determinism, transaction Bundles with resolvable
//! references, sensible counts, Japanese names and identifier systems, and zero R4 validation
//! errors.

use issho_demo::{
    DemoConfig, person_bundle, person_resources, reference_bundle, reference_resources,
    write_ndjson,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

fn cfg(seed: u64) -> DemoConfig {
    DemoConfig { persons: 50, seed }
}

fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "reference" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    references(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn reference_ids() -> HashSet<String> {
    reference_resources()
        .into_iter()
        .map(|r| format!("{}/{}", r.resource_type, r.id))
        .collect()
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    for i in [0, 1, 17, 999_999] {
        let a = serde_json::to_string(&person_bundle(&cfg(7), i)).unwrap();
        let b = serde_json::to_string(&person_bundle(
            &DemoConfig {
                persons: 3,
                seed: 7,
            },
            i,
        ))
        .unwrap();
        assert_eq!(a, b, "person {i} depends only on (seed, i)");
        let c = serde_json::to_string(&person_bundle(&cfg(8), i)).unwrap();
        assert_ne!(a, c, "person {i} differs between seeds");
    }
    let r1 = serde_json::to_string(&reference_bundle(&cfg(1))).unwrap();
    let r2 = serde_json::to_string(&reference_bundle(&cfg(2))).unwrap();
    assert_eq!(r1, r2, "reference data is shared by all populations");
}

#[test]
fn bundles_are_transactions_with_resolvable_references() {
    let known = reference_ids();
    let reference = reference_bundle(&cfg(1));
    let mut bundles = vec![reference];
    bundles.extend((0..60).map(|i| person_bundle(&cfg(3), i)));
    for (n, b) in bundles.iter().enumerate() {
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "transaction");
        let entries = b["entry"].as_array().unwrap();
        assert!(!entries.is_empty());
        let mut full_urls = HashSet::new();
        let mut urls = HashSet::new();
        for e in entries {
            let full = e["fullUrl"].as_str().unwrap();
            assert!(full.starts_with("urn:uuid:") && full.len() == 45, "{full}");
            assert!(
                full_urls.insert(full.to_string()),
                "duplicate fullUrl {full}"
            );
            let r = &e["resource"];
            let key = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            assert_eq!(e["request"]["method"], "PUT");
            assert_eq!(e["request"]["url"], key.as_str());
            assert!(urls.insert(key));
        }
        let mut refs = Vec::new();
        references(b, &mut refs);
        for r in refs {
            if r.starts_with("urn:uuid:") {
                assert!(full_urls.contains(&r), "bundle {n}: unresolved {r}");
            } else {
                assert!(known.contains(&r), "bundle {n}: unknown reference {r}");
            }
        }
    }
}

#[test]
fn counts_are_sensible() {
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    let persons = 200;
    for i in 0..persons {
        let rs = person_resources(&cfg(11), i);
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &rs {
            *per.entry(r.resource_type).or_default() += 1;
        }
        let patients = per.get("Patient").copied().unwrap_or(0);
        assert!(
            (1..=4).contains(&patients),
            "person {i}: {patients} Patients"
        );
        assert_eq!(per.get("Coverage"), Some(&1), "person {i}");
        assert!(
            per.get("Encounter").copied().unwrap_or(0) >= 1,
            "person {i}: no Encounter"
        );
        assert!(rs.len() < 2_500, "person {i}: {} resources", rs.len());
        for (t, n) in per {
            *totals.entry(t.to_string()).or_default() += n;
        }
    }
    let avg = |t: &str| totals.get(t).copied().unwrap_or(0) as f64 / persons as f64;
    assert!((1.0..2.5).contains(&avg("Patient")), "{totals:?}");
    assert!((5.0..60.0).contains(&avg("Encounter")), "{totals:?}");
    assert!((20.0..400.0).contains(&avg("Observation")), "{totals:?}");
    assert!((0.5..8.0).contains(&avg("Condition")), "{totals:?}");
    assert!(
        (2.0..80.0).contains(&avg("MedicationRequest")),
        "{totals:?}"
    );
    assert!((1.0..10.0).contains(&avg("Immunization")), "{totals:?}");
    assert!(avg("AllergyIntolerance") > 0.05, "{totals:?}");
    assert!(avg("Specimen") > 1.0, "{totals:?}");
}

fn is_katakana(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| ('\u{30A0}'..='\u{30FF}').contains(&c) || c == ' ')
}

fn is_cjk(s: &str) -> bool {
    s.chars()
        .any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c) || ('\u{3040}'..='\u{30FF}').contains(&c))
}

#[test]
fn patients_have_kanji_and_kana_names_and_japanese_identifiers() {
    let mut patient_ids = HashSet::new();
    for i in 0..100 {
        let rs = person_resources(&cfg(5), i);
        let patients: Vec<&Value> = rs
            .iter()
            .filter(|r| r.resource_type == "Patient")
            .map(|r| &r.resource)
            .collect();
        let member_ids: HashSet<&str> = patients
            .iter()
            .map(|p| {
                p["identifier"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|id| {
                        id["system"] == "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID"
                    })
                    .expect("insurance member id")["value"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(member_ids.len(), 1, "one insurance member id per person");
        for p in &patients {
            let names = p["name"].as_array().unwrap();
            let rep = |n: &Value| n["extension"][0]["valueCode"].as_str().unwrap().to_string();
            let ide = names.iter().find(|n| rep(n) == "IDE").expect("IDE name");
            let syl = names.iter().find(|n| rep(n) == "SYL").expect("SYL name");
            assert!(is_cjk(ide["family"].as_str().unwrap()));
            assert!(is_katakana(syl["family"].as_str().unwrap()));
            assert!(is_katakana(syl["given"][0].as_str().unwrap()));
            assert!(is_katakana(syl["text"].as_str().unwrap()));
            assert_eq!(
                ide["extension"][0]["url"],
                "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
            );
            let id = &p["identifier"][0];
            let system = id["system"].as_str().unwrap();
            let suffix = system
                .strip_prefix("urn:oid:1.2.392.100495.20.3.51.1")
                .expect("JP Core patient id system");
            assert_eq!(suffix.len(), 10);
            assert!(suffix.bytes().all(|b| b.is_ascii_digit()));
            assert!(patient_ids.insert(format!("{system}|{}", id["value"].as_str().unwrap())));
            let addr = &p["address"][0];
            assert!(
                addr["state"]
                    .as_str()
                    .unwrap()
                    .ends_with(['都', '道', '府', '県'])
            );
            let postal = addr["postalCode"].as_str().unwrap();
            assert!(postal.len() == 8 && &postal[3..4] == "-", "{postal}");
            assert!(matches!(p["gender"].as_str(), Some("male" | "female")));
            if patients.len() > 1 {
                assert_eq!(p["link"].as_array().unwrap().len(), patients.len() - 1);
            }
        }
    }
    for r in reference_resources() {
        if r.resource_type == "Organization" {
            let id = &r.resource["identifier"][0];
            let system = id["system"].as_str().unwrap();
            assert!(
                system == "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no"
                    || system == "urn:oid:1.2.392.100495.20.3.61",
                "{system}"
            );
        }
    }
}

#[test]
fn clinical_codes_use_japanese_systems_and_exact_decimals() {
    let mut systems = HashSet::new();
    let mut saw_two_decimals = false;
    let mut pghd = 0;
    for i in 0..150 {
        for r in person_resources(&cfg(9), i) {
            let s = serde_json::to_string(&r.resource).unwrap();
            for sys in [
                "http://medis.or.jp/CodeSystem/master-JLAC10-17digits",
                "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code",
                "http://medis.or.jp/CodeSystem/master-disease-keyNumber",
                "http://hl7.org/fhir/sid/icd-10",
                "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS",
                "http://jami.jp/CodeSystem/MedicationUsage",
                "http://unitsofmeasure.org",
            ] {
                if s.contains(sys) {
                    systems.insert(sys);
                }
            }
            if r.resource_type == "Observation" && s.contains("3C015000002327101") {
                // Creatinine carries two decimals, trailing zeros included.
                let v = &r.resource["valueQuantity"]["value"];
                let text = v.to_string();
                let frac = text.split('.').nth(1).expect("decimal point");
                assert_eq!(frac.len(), 2, "{text}");
                saw_two_decimals = true;
            }
            if s.contains("\"patient-generated\"") {
                pghd += 1;
                assert_eq!(r.resource_type, "Observation");
                let performer = r.resource["performer"][0]["reference"].as_str().unwrap();
                assert!(performer.starts_with("Patient/"), "{performer}");
                assert!(r.resource.get("encounter").is_none());
            }
        }
    }
    assert_eq!(systems.len(), 7, "{systems:?}");
    assert!(saw_two_decimals);
    assert!(pghd > 0);
}

#[test]
fn ndjson_is_deterministic_and_self_contained() {
    let base = std::env::temp_dir().join(format!("issho-demo-test-{}", std::process::id()));
    let c = DemoConfig {
        persons: 150,
        seed: 21,
    };
    let s1 = write_ndjson(&c, &base.join("a")).unwrap();
    let s2 = write_ndjson(&c, &base.join("b")).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(s1.persons, 150);
    let mut ids = HashSet::new();
    let mut refs = Vec::new();
    let mut lines_total = 0;
    for (t, n) in &s1.resources {
        let a = std::fs::read(base.join("a").join(format!("{t}.ndjson"))).unwrap();
        let b = std::fs::read(base.join("b").join(format!("{t}.ndjson"))).unwrap();
        assert!(a == b, "{t}.ndjson differs between runs");
        let text = String::from_utf8(a).unwrap();
        let mut lines = 0;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["resourceType"], t.as_str());
            assert!(ids.insert(format!("{t}/{}", v["id"].as_str().unwrap())));
            references(&v, &mut refs);
            lines += 1;
        }
        assert_eq!(lines, *n, "{t}");
        lines_total += lines;
    }
    assert_eq!(lines_total, s1.total());
    for r in refs {
        assert!(ids.contains(&r), "unresolved {r}");
    }
    // NDJSON person resources equal the Bundle resources with urn:uuid references rewritten.
    let bundle = person_bundle(&c, 3);
    let mut map = BTreeMap::new();
    for e in bundle["entry"].as_array().unwrap() {
        map.insert(
            e["fullUrl"].as_str().unwrap().to_string(),
            e["request"]["url"].as_str().unwrap().to_string(),
        );
    }
    fn rewrite(v: &mut Value, map: &BTreeMap<String, String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "reference" {
                        if let Some(t) = x.as_str().and_then(|s| map.get(s)) {
                            *x = Value::String(t.clone());
                        }
                    } else {
                        rewrite(x, map);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, map)),
            _ => {}
        }
    }
    let plain = person_resources(&c, 3);
    for (e, p) in bundle["entry"].as_array().unwrap().iter().zip(&plain) {
        let mut r = e["resource"].clone();
        rewrite(&mut r, &map);
        assert_eq!(r, p.resource);
    }
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn resources_are_valid_r4() {
    use issho_model::validate::{ValidateOptions, validate_resource};
    let opts = ValidateOptions::default();
    let mut checked = 0;
    let mut problems = Vec::new();
    let mut check = |v: &Value, what: String| {
        for issue in validate_resource(v, &opts) {
            if issue.is_error() && problems.len() < 20 {
                problems.push(format!("{what}: {:?}", issue));
            }
        }
    };
    check(&reference_bundle(&cfg(1)), "reference bundle".into());
    for i in 0..200 {
        let b = person_bundle(&cfg(13), i);
        checked += b["entry"].as_array().unwrap().len();
        check(&b, format!("person {i}"));
    }
    assert!(
        problems.is_empty(),
        "{} resources checked:\n{}",
        checked,
        problems.join("\n")
    );
}

#[test]
fn validator_reports_no_warnings_and_does_catch_mistakes() {
    use issho_model::validate::{ValidateOptions, validate_resource};
    let opts = ValidateOptions::default();
    let mut issues = Vec::new();
    for i in 0..30 {
        issues.extend(
            validate_resource(&person_bundle(&cfg(17), i), &opts)
                .into_iter()
                .map(|x| format!("person {i}: {x:?}")),
        );
    }
    assert!(
        issues.is_empty(),
        "{}",
        issues[..issues.len().min(20)].join("\n")
    );
    // Control: the validator does see a broken resource inside our bundles.
    let mut b = person_bundle(&cfg(17), 0);
    b["entry"][0]["resource"]["gender"] = Value::String("unknown-gender".into());
    b["entry"][1]["resource"]["birthDate"] = Value::String("1990-13-01".into());
    let errors = validate_resource(&b, &opts)
        .into_iter()
        .filter(|x| x.is_error())
        .count();
    assert!(
        errors >= 1,
        "validator found {errors} errors in a broken bundle"
    );
}
