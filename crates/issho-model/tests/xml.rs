//! XML ⇄ JSON conversion against reference data: the FHIRPath Patch test cases (XML) and the
//! R4 JSON examples (JSON → XML → JSON must give back the same tree). Skips, with a message,
//! when the reference data folder is absent.

mod common;

use common::{json_files, r4_examples, shared_dir};
use issho_model::validate::{ValidateOptions, validate_resource};
use issho_model::xml::{json_to_xml, xml_to_json};
use serde_json::Value;

/// The text between `<tag>` and `</tag>`, for each occurrence.
fn sections<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let Some(j) = body.find(&close) else { break };
        out.push(&body[..j]);
        rest = &body[j + close.len()..];
    }
    out
}

#[test]
fn fhir_patch_test_resources_convert() {
    let Some(shared) = shared_dir() else {
        println!("SKIPPED: reference data folder (../shared or ISSHO_SHARED) not found");
        return;
    };
    let path = shared.join("conformance/fhir-patch/fhir-patch-tests.xml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIPPED: {} not found", path.display());
        return;
    };
    let mut converted = 0;
    let mut failures = Vec::new();
    // `<case name=…>` has attributes: split on the opening tag text.
    for (n, case) in text.split("<case ").skip(1).enumerate() {
        let case = case.split("</case>").next().unwrap_or(case);
        let name = case
            .split('"')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| format!("case {n}"));
        for tag in ["input", "diff", "output"] {
            for xml in sections(case, tag) {
                match xml_to_json(xml) {
                    Ok(json) => {
                        converted += 1;
                        let errors: Vec<_> = validate_resource(&json, &ValidateOptions::default())
                            .into_iter()
                            .filter(|i| i.is_error())
                            .collect();
                        // Patch inputs are partial resources (e.g. no required elements); only
                        // structural problems would point at a conversion bug.
                        for e in errors {
                            if e.code == issho_model::IssueType::Structure {
                                failures.push(format!("{name} <{tag}>: {e:?}"));
                            }
                        }
                        let back = json_to_xml(&json)
                            .unwrap_or_else(|e| panic!("{name} <{tag}> json→xml: {e}"));
                        let again = xml_to_json(&back)
                            .unwrap_or_else(|e| panic!("{name} <{tag}> xml→json again: {e}"));
                        if again != json {
                            failures.push(format!("{name} <{tag}>: round trip differs"));
                        }
                    }
                    Err(e) => failures.push(format!("{name} <{tag}>: {e}")),
                }
            }
        }
    }
    println!("converted {converted} FHIRPath Patch test resources to JSON");
    for f in &failures {
        println!("  {f}");
    }
    assert!(converted >= 90, "only {converted} resources found");
    assert!(failures.is_empty(), "{} failures", failures.len());
}

/// Example files larger than this are not round-tripped (see the test).
const MAX_FILE_BYTES: u64 = 1_000_000;

#[test]
fn r4_examples_round_trip_through_xml() {
    let Some(shared) = shared_dir() else {
        println!("SKIPPED: reference data folder (../shared or ISSHO_SHARED) not found");
        return;
    };
    let Some(pkg) = r4_examples(&shared) else {
        println!(
            "SKIPPED: R4 examples package not found in {}",
            shared.display()
        );
        return;
    };
    let mut total = 0;
    let mut skipped = 0;
    let mut failures = Vec::new();
    for path in json_files(&pkg) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // The multi-megabyte Bundles aggregate conformance resources that are also in the
        // package one by one; leaving them out keeps this test fast in debug builds.
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > MAX_FILE_BYTES {
            skipped += 1;
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        let json: Value = serde_json::from_str(&text).expect("JSON");
        if json.get("resourceType").is_none() {
            continue;
        }
        total += 1;
        let xml = match json_to_xml(&json) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{name}: json→xml: {e}"));
                continue;
            }
        };
        match xml_to_json(&xml) {
            Ok(back) if back == json => {}
            Ok(back) => failures.push(format!(
                "{name}: round trip differs: {}",
                first_difference(&json, &back, String::new())
            )),
            Err(e) => failures.push(format!("{name}: xml→json: {e}")),
        }
    }
    println!(
        "round-tripped {total} R4 examples through XML ({skipped} files over {MAX_FILE_BYTES} \
         bytes left out), {} failures",
        failures.len()
    );
    for f in failures.iter().take(30) {
        println!("  {f}");
    }
    assert!(total > 5000);
    assert!(failures.is_empty(), "{} failures", failures.len());
}

/// A short description of where two JSON trees first differ.
fn first_difference(a: &Value, b: &Value, path: String) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    None => return format!("{path}.{k} missing after the round trip"),
                    Some(w) if w != v => return first_difference(v, w, format!("{path}.{k}")),
                    _ => {}
                }
            }
            for k in y.keys() {
                if !x.contains_key(k) {
                    return format!("{path}.{k} added by the round trip");
                }
            }
            format!("{path}: objects differ")
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if v != w {
                    return first_difference(v, w, format!("{path}[{i}]"));
                }
            }
            format!("{path}: arrays differ")
        }
        _ => format!("{path}: {a} became {b}"),
    }
}
