//! `shared/conformance/fhir-patch/fhir-patch-tests.xml`: FHIRPath Patch cases written in FHIR
//! XML, converted with `issho_model::xml::xml_to_json`. A case with an `<error>` must fail and
//! leave the resource unchanged; the others must produce `<output>`.

use issho_model::xml::xml_to_json;
use issho_patch::apply_fhirpath_patch;
use serde_json::Value;
use std::path::PathBuf;

fn shared_dir() -> Option<PathBuf> {
    let p = match std::env::var("ISSHO_SHARED") {
        Ok(s) => PathBuf::from(s),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    p.join("conformance/fhir-patch").is_dir().then_some(p)
}

struct Case {
    name: String,
    input: String,
    diff: String,
    output: Option<String>,
    error: bool,
}

fn between<'s>(s: &'s str, open: &str, close: &str) -> Option<&'s str> {
    let a = s.find(open)? + open.len();
    let b = a + s[a..].find(close)?;
    Some(&s[a..b])
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find("<!--") {
        out.push_str(&rest[..p]);
        match rest[p..].find("-->") {
            Some(e) => rest = &rest[p + e + 3..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn load_cases(text: &str) -> Vec<Case> {
    let text = strip_comments(text);
    let mut cases = Vec::new();
    for chunk in text.split("<case ").skip(1) {
        let body = &chunk[..chunk.find("</case>").unwrap_or(chunk.len())];
        let name = between(body, "name=\"", "\"").unwrap_or("?").to_string();
        cases.push(Case {
            name,
            input: between(body, "<input>", "</input>")
                .unwrap_or("")
                .trim()
                .to_string(),
            diff: between(body, "<diff>", "</diff>")
                .unwrap_or("")
                .trim()
                .to_string(),
            output: between(body, "<output>", "</output>").map(|s| s.trim().to_string()),
            error: body.contains("<error"),
        });
    }
    cases
}

/// XHTML narrative is compared with insignificant whitespace removed and `&quot;`/`&apos;`
/// in text unescaped (equivalent XML): the patch gives it as a string, the expected output
/// comes from parsed XML and is re-serialized by the converter.
fn normalize(v: &Value, key: &str) -> Value {
    match v {
        Value::String(s) if key == "div" => {
            let collapsed: Vec<&str> = s.split_whitespace().collect();
            Value::String(
                collapsed
                    .join(" ")
                    .replace("> <", "><")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'"),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalize(x, key)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), normalize(x, k)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn fhirpath_patch_conformance() {
    let Some(shared) = shared_dir() else {
        println!("FHIRPath Patch conformance: SKIPPED (shared folder not found; set ISSHO_SHARED)");
        return;
    };
    let text = std::fs::read_to_string(shared.join("conformance/fhir-patch/fhir-patch-tests.xml"))
        .expect("read fhir-patch-tests.xml");
    let cases = load_cases(&text);
    let mut passed = 0;
    let mut failures = Vec::new();
    for c in &cases {
        let conv = |x: &str, what: &str| {
            xml_to_json(x).map_err(|e| format!("{what} XML does not convert: {e}"))
        };
        let result: Result<(), String> = (|| {
            let input = conv(&c.input, "input")?;
            let diff = conv(&c.diff, "diff")?;
            let mut doc = input.clone();
            let r = apply_fhirpath_patch(&mut doc, &diff);
            if c.error {
                return match r {
                    Err(_) if doc == input => Ok(()),
                    Err(_) => Err("failed but changed the resource".into()),
                    Ok(()) => Err(format!("expected an error, got {doc}")),
                };
            }
            if let Err(e) = r {
                return Err(format!("patch failed: {}", e.diagnostics));
            }
            let expected = conv(c.output.as_deref().unwrap_or(""), "output")?;
            if normalize(&doc, "") == normalize(&expected, "") {
                Ok(())
            } else {
                Err(format!("\n      got      {doc}\n      expected {expected}"))
            }
        })();
        match result {
            Ok(()) => passed += 1,
            Err(e) => failures.push(format!("{}: {e}", c.name)),
        }
    }
    println!(
        "FHIRPath Patch conformance: passed {passed} of {}",
        cases.len()
    );
    for f in &failures {
        println!("  FAIL {f}");
    }
    assert_eq!(
        cases.len(),
        33,
        "expected the 33 cases of fhir-patch-tests.xml"
    );
    assert!(
        failures.is_empty(),
        "{} FHIRPath Patch cases failed",
        failures.len()
    );
}
