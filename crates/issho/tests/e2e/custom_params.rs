//! Custom search parameters (SearchParameter resources posted at run time) over HTTP:
//! registration, background reindexing with progress, searches that never see a partial
//! index, changes, removal, restarts, and the JP Core parameters on the JP Core examples.

use crate::common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BLOOD: &str = "https://issho.example/fhir/StructureDefinition/blood-type";

fn blood_type_param(status: &str) -> Value {
    json!({
    "resourceType": "SearchParameter",
        "id": "blood-type",
        "url": "https://issho.example/fhir/SearchParameter/patient-blood-type",
        "name": "BloodType",
        "status": status,
        "description": "Patient's ABO blood type (an extension)",
        "code": "blood-type",
        "base": ["Patient"],
        "type": "token",
        "expression": format!("Patient.extension.where(url='{BLOOD}').value")
    })
}

fn patient(i: usize, blood: Option<&str>) -> Value {
    let mut p = json!({
        "resourceType": "Patient",
        "id": format!("p{i}"),
        "name": [{"family": format!("F{i}")}],
    });
    if let Some(b) = blood {
        p["extension"] = json!([{"url": BLOOD, "valueCode": b}]);
    }
    p
}

fn blood_of(i: usize) -> Option<&'static str> {
    match i % 5 {
        0 => Some("A"),
        1 => Some("B"),
        2 => Some("O"),
        3 => Some("AB"),
        _ => None,
    }
}

/// Ids of the search result (all pages followed).
fn ids(s: &Server, query: &str) -> Vec<String> {
    let r = s
        .req("GET", query)
        .header("prefer", "handling=strict")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{query}: {}", r.text().unwrap());
    let mut bundle = json(r);
    let mut out = Vec::new();
    loop {
        for e in bundle["entry"].as_array().into_iter().flatten() {
            if e["search"]["mode"] == "match" {
                out.push(e["resource"]["id"].as_str().unwrap().to_string());
            }
        }
        let next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        match next {
            Some(u) => bundle = json(s.client.get(u).send().unwrap()),
            None => break,
        }
    }
    out.sort();
    out
}

fn expected(n: usize, f: impl Fn(usize) -> bool) -> Vec<String> {
    let mut v: Vec<String> = (0..n).filter(|&i| f(i)).map(|i| format!("p{i}")).collect();
    v.sort();
    v
}

/// `$reindex` as (running, [(url, state)]).
fn reindex(s: &Server) -> (bool, Vec<(String, String)>) {
    let r = s.get("$reindex");
    assert_eq!(r.status(), 200);
    let p = json(r);
    assert_eq!(p["resourceType"], "Parameters");
    let mut running = false;
    let mut params = Vec::new();
    for x in p["parameter"].as_array().unwrap() {
        if x["name"] == "running" {
            running = x["valueBoolean"].as_bool().unwrap();
        }
        if x["name"] == "parameter" {
            let part = x["part"].as_array().unwrap();
            let get = |n: &str| {
                part.iter()
                    .find(|p| p["name"] == n)
                    .map(|p| {
                        p.as_object()
                            .unwrap()
                            .iter()
                            .find(|(k, _)| k.starts_with("value"))
                            .unwrap()
                            .1
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .unwrap_or_default()
            };
            params.push((get("url"), get("state")));
        }
    }
    (running, params)
}

fn wait_ready(s: &Server) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (running, params) = reindex(s);
        if !running && params.iter().all(|(_, st)| st != "indexing") {
            return;
        }
        assert!(
            Instant::now() < end,
            "reindexing did not finish: {params:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn load_patients(s: &Server, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                json!({"resource": patient(i, blood_of(i)),
                       "request": {"method": "PUT", "url": format!("Patient/p{i}")}})
            })
            .collect();
        let r = s.post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        );
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn custom_parameter_lifecycle() {
    let s = Server::start();
    let n = 300;
    load_patients(&s, n);
    // Unknown before it is defined.
    let r = s
        .req("GET", "Patient?blood-type=A")
        .header("prefer", "handling=strict")
        .send()
        .unwrap();
    assert_outcome(r, 400);

    let r = s.put("SearchParameter/blood-type", &blood_type_param("active"));
    assert_eq!(r.status(), 201);
    wait_ready(&s);
    let (_, params) = reindex(&s);
    assert_eq!(
        params,
        vec![(
            "https://issho.example/fhir/SearchParameter/patient-blood-type".to_string(),
            "ready".to_string()
        )]
    );
    assert_eq!(
        ids(&s, "Patient?blood-type=A&_count=40"),
        expected(n, |i| blood_of(i) == Some("A"))
    );
    assert_eq!(
        ids(&s, "Patient?blood-type=A,AB"),
        expected(n, |i| matches!(blood_of(i), Some("A" | "AB")))
    );
    assert_eq!(
        ids(&s, "Patient?blood-type:missing=true"),
        expected(n, |i| blood_of(i).is_none())
    );
    // `:not` keeps resources without a value (p9) and drops p7 (O).
    assert_eq!(
        ids(&s, "Patient?blood-type:not=O&name:exact=F9"),
        vec!["p9".to_string()]
    );
    assert!(ids(&s, "Patient?blood-type:not=O&name:exact=F7").is_empty());
    // Listed in the CapabilityStatement.
    let cs = json(s.get("metadata"));
    let pat = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert!(
        pat["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "blood-type" && p["type"] == "token")
    );

    // Writes after the definition are indexed at once; updates move the resource.
    assert_eq!(
        s.put("Patient/new", &{
            let mut p = patient(0, Some("O"));
            p["id"] = json!("new");
            p
        })
        .status(),
        201
    );
    assert!(ids(&s, "Patient?blood-type=O").contains(&"new".to_string()));
    assert_eq!(s.put("Patient/p2", &patient(2, Some("B"))).status(), 200);
    assert!(!ids(&s, "Patient?blood-type=O").contains(&"p2".to_string()));
    assert!(ids(&s, "Patient?blood-type=B").contains(&"p2".to_string()));

    // A changed definition is indexed again: now only the AB patients match 'AB' through a
    // string parameter on the same extension.
    let mut changed = blood_type_param("active");
    changed["type"] = json!("string");
    changed["expression"] = json!(format!(
        "Patient.extension.where(url='{BLOOD}').value.ofType(code)"
    ));
    assert_eq!(s.put("SearchParameter/blood-type", &changed).status(), 200);
    wait_ready(&s);
    let got = ids(&s, "Patient?blood-type=A");
    // String search is a prefix match: A and AB.
    let mut want = expected(n, |i| i != 2 && matches!(blood_of(i), Some("A" | "AB")));
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        ids(&s, "Patient?blood-type:exact=AB"),
        expected(n, |i| blood_of(i) == Some("AB"))
    );

    // Retired: unknown again.
    assert!(
        s.req("DELETE", "SearchParameter/blood-type")
            .send()
            .unwrap()
            .status()
            .is_success()
    );
    let r = s
        .req("GET", "Patient?blood-type=A")
        .header("prefer", "handling=strict")
        .send()
        .unwrap();
    assert_outcome(r, 400);
    // Lenient: ignored with a warning.
    let b = json(s.get("Patient?blood-type=A&_count=1"));
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["total"], n + 1);
}

#[test]
fn searches_never_see_a_partial_index() {
    let s = Server::start();
    let n = 3000;
    load_patients(&s, n);
    let want = expected(n, |i| blood_of(i) == Some("B"));
    assert_eq!(
        s.put("SearchParameter/blood-type", &blood_type_param("active"))
            .status(),
        201
    );
    let mut refused = 0;
    loop {
        let r = s
            .req("GET", "Patient?blood-type=B&_summary=count")
            .header("prefer", "handling=strict")
            .send()
            .unwrap();
        if r.status() == 400 {
            let msg = assert_outcome(r, 400);
            assert!(msg.contains("being indexed"), "{msg}");
            refused += 1;
            continue;
        }
        assert_eq!(r.status(), 200);
        // Once accepted, the answer is complete.
        assert_eq!(json(r)["total"], want.len());
        break;
    }
    println!("refused while indexing: {refused}");
    assert_eq!(ids(&s, "Patient?blood-type=B&_count=1000"), want);
}

#[test]
fn unusable_active_definitions_are_refused() {
    let s = Server::start();
    let cases = [
        ("expression", json!("Patient.name.where(")),
        ("code", json!("_private")),
        ("code", json!("name")),
        ("type", json!("special")),
    ];
    for (field, value) in cases {
        let mut sp = blood_type_param("active");
        sp[field] = value.clone();
        let r = s.post("SearchParameter", &sp);
        if r.status() != 422 {
            panic!("{field}={value}: {}", r.text().unwrap());
        }
        let msg = assert_outcome(r, 422);
        assert!(msg.contains("cannot be used"), "{field}={value}: {msg}");
    }
    // A base that is not a resource type is invalid in any status (400).
    let mut sp = blood_type_param("active");
    sp["base"] = json!(["NotAType"]);
    assert_outcome(s.post("SearchParameter", &sp), 400);
    // The same definitions may be kept as drafts; they are not used.
    let mut sp = blood_type_param("draft");
    sp["expression"] = json!("Patient.name.where(");
    assert_eq!(s.post("SearchParameter", &sp).status(), 201);
    // $validate reports the problem too.
    let mut sp = blood_type_param("active");
    sp["code"] = json!("name");
    let r = s.post("SearchParameter/$validate", &sp);
    let v = json(r);
    assert!(v.to_string().contains("already has the parameter"), "{v}");
    // Only administrators see reindex status; the open development server has one.
    assert_eq!(s.get("$reindex").status(), 200);
}

#[test]
fn custom_parameters_survive_a_restart() {
    let s = Server::start();
    load_patients(&s, 50);
    assert_eq!(
        s.put("SearchParameter/blood-type", &blood_type_param("active"))
            .status(),
        201
    );
    wait_ready(&s);
    let want = expected(50, |i| blood_of(i) == Some("O"));
    assert_eq!(ids(&s, "Patient?blood-type=O"), want);
    let dir = s.stop();
    let s = Server::start_in(dir, |_| {});
    assert_eq!(ids(&s, "Patient?blood-type=O"), want);
    let (_, params) = reindex(&s);
    assert_eq!(params.len(), 1);
    assert_eq!(params[0].1, "ready");
}

/// The JP Core 1.1.2 SearchParameter resources (all eight active) on the JP Core examples;
/// expected answers are read from the examples' JSON here, not through the search code.
#[test]
fn jp_core_search_parameters() {
    let Some(shared) = shared_dir() else {
        println!("skipped: ../shared not present");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("tar")
        .arg("xzf")
        .arg(shared.join("jp/jp-core.r4-1.1.2.tgz"))
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("tar");
    assert!(st.success());
    let pkg = tmp.path().join("package");
    let mut params = Vec::new();
    let mut examples = Vec::new();
    for f in std::fs::read_dir(&pkg).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".json") || name == "package.json" || name.starts_with('.') {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        match v["resourceType"].as_str() {
            Some("SearchParameter") => params.push(v),
            Some("Patient" | "Coverage" | "Organization" | "MedicationRequest") => examples.push(v),
            _ => {}
        }
    }
    assert_eq!(params.len(), 8);
    let s = Server::start();
    for e in &examples {
        let path = format!(
            "{}/{}",
            e["resourceType"].as_str().unwrap(),
            e["id"].as_str().unwrap()
        );
        let r = s.put(&path, e);
        assert!(r.status().is_success(), "{path}: {}", r.text().unwrap());
    }
    for p in &params {
        let r = s.put(&format!("SearchParameter/{}", p["id"].as_str().unwrap()), p);
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    }
    wait_ready(&s);
    let (_, states) = reindex(&s);
    assert_eq!(states.len(), 8);
    assert!(states.iter().all(|(_, st)| st == "ready"), "{states:?}");

    // Extension values by extension URL, straight from the JSON.
    let ext_values = |res: &Value, url: &str| -> Vec<String> {
        res["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["url"] == url)
            .filter_map(|x| {
                x.as_object()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| k.starts_with("value"))
                    .and_then(|(_, v)| v.as_str().map(str::to_string))
            })
            .collect()
    };
    let (mut checked, mut starts, mut kana) = (0, 0, 0);
    for p in &params {
        let code = p["code"].as_str().unwrap();
        let base = p["base"][0].as_str().unwrap();
        let expr = p["expression"].as_str().unwrap();
        let of_base: Vec<&Value> = examples
            .iter()
            .filter(|e| e["resourceType"] == base)
            .collect();
        if let Some(url) = expr
            .split("url='")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .filter(|_| expr.starts_with(&format!("{base}.extension.where(")))
        {
            for e in &of_base {
                for value in ext_values(e, url) {
                    let want: Vec<String> = of_base
                        .iter()
                        .filter(|x| ext_values(x, url).contains(&value))
                        .map(|x| x["id"].as_str().unwrap().to_string())
                        .collect();
                    let mut want = want;
                    want.sort();
                    let q = format!(
                        "{base}?{code}{}={}",
                        if p["type"] == "string" { ":exact" } else { "" },
                        percent(&value)
                    );
                    assert_eq!(ids(&s, &q), want, "{q}");
                    checked += 1;
                }
            }
        }
    }
    // jp-medication-start: the start of the period of use (a dosage extension).
    let period_url =
        "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_MedicationDosage_PeriodOfUse";
    for e in examples
        .iter()
        .filter(|e| e["resourceType"] == "MedicationRequest")
    {
        for d in e["dosageInstruction"].as_array().into_iter().flatten() {
            for x in d["extension"].as_array().into_iter().flatten() {
                if x["url"] == period_url
                    && let Some(start) = x["valuePeriod"]["start"].as_str()
                {
                    let day = &start[..10];
                    let got = ids(&s, &format!("MedicationRequest?jp-medication-start={day}"));
                    assert!(
                        got.contains(&e["id"].as_str().unwrap().to_string()),
                        "{day}: {got:?}"
                    );
                    starts += 1;
                }
            }
        }
    }
    // jp-kana-sort: the usual name in syllabic (kana) representation.
    for e in examples.iter().filter(|e| e["resourceType"] == "Patient") {
        for n in e["name"].as_array().into_iter().flatten() {
            let syl = n["extension"].as_array().into_iter().flatten().any(|x| {
                x["url"] == "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
                    && x["valueCode"] == "SYL"
            });
            if syl && n["use"] == "usual" {
                let text = n["text"].as_str().unwrap();
                let got = ids(&s, &format!("Patient?jp-kana-sort={}", percent(text)));
                assert_eq!(got, vec![e["id"].as_str().unwrap().to_string()], "{text}");
                kana += 1;
            }
        }
    }
    println!(
        "JP Core search parameters: 8 ready; searches checked: {checked} by extension value, \
         {starts} jp-medication-start, {kana} jp-kana-sort"
    );
    assert!(checked >= 3 && starts >= 1 && kana >= 1);
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
