//! Terminology at scale: `ValueSet/$expand` with a Japanese filter over a value set of a
//! 10,000-concept code system (what a UI's search box sends), `$validate-code` against it and
//! `CodeSystem/$lookup`, on a fresh issho.

use crate::http::Conn;
use crate::record::run;
use crate::search::MixResult;
use crate::server::Server;
use serde_json::{Value, json};

const SYS: &str = "https://issho.example/bench/CodeSystem/labs";
const VS: &str = "https://issho.example/bench/ValueSet/labs";
const WORDS: [(&str, &str); 10] = [
    ("アルブミン", "albumin"),
    ("血清総蛋白", "total protein"),
    ("尿素窒素", "urea nitrogen"),
    ("クレアチニン", "creatinine"),
    ("尿酸", "uric acid"),
    ("血糖", "glucose"),
    ("中性脂肪", "triglyceride"),
    ("コレステロール", "cholesterol"),
    ("ヘモグロビン", "hemoglobin"),
    ("血小板", "platelets"),
];

/// A code system of `n` concepts: groups of 100 under a parent each, Japanese displays with
/// English designations.
fn code_system(n: usize) -> Value {
    let groups = n.div_ceil(100);
    let concepts: Vec<Value> = (0..groups)
        .map(|g| {
            let (ja, en) = WORDS[g % WORDS.len()];
            let children: Vec<Value> = (1..100.min(n - g * 100))
                .map(|i| {
                    let k = g * 100 + i;
                    json!({"code": format!("L{k:05}"), "display": format!("{ja}{k}"),
                        "designation": [{"language": "en", "value": format!("{en} {k}")}]})
                })
                .collect();
            json!({"code": format!("G{g:03}"), "display": format!("{ja}群{g}"),
                "designation": [{"language": "en", "value": format!("{en} group {g}")}],
                "concept": children})
        })
        .collect();
    json!({"resourceType": "CodeSystem", "id": "labs", "url": SYS, "version": "1",
        "name": "BenchLabs", "status": "active", "content": "complete", "language": "ja",
        "hierarchyMeaning": "is-a", "count": n, "concept": concepts})
}

/// The three operations' figures over a code system of `concepts` concepts.
pub fn terminology_at_scale(
    bin: &std::path::Path,
    dir: &std::path::Path,
    concepts: usize,
    reps: usize,
) -> Result<Vec<MixResult>, String> {
    let s = Server::issho(bin, dir, None)?;
    let mut c = Conn::open(s.addr).map_err(|e| e.to_string())?;
    for r in [
        code_system(concepts),
        json!({"resourceType": "ValueSet", "id": "labs", "url": VS, "status": "active",
            "compose": {"include": [{"system": SYS}]}}),
    ] {
        let path = format!("/{}/labs", r["resourceType"].as_str().unwrap_or_default());
        let body = r.to_string();
        match c.request("PUT", &s.url(&path), &[], Some(body.as_bytes())) {
            Ok(r) if r.status < 300 => {}
            Ok(r) => {
                s.stop();
                return Err(format!("terminology: PUT {path}: HTTP {}", r.status));
            }
            Err(e) => {
                s.stop();
                return Err(format!("terminology: PUT {path}: {e}"));
            }
        }
    }
    let enc = |t: &str| -> String {
        percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let filters: Vec<String> = (0..50)
        .map(|i| {
            let (ja, en) = WORDS[i % WORDS.len()];
            if i % 2 == 0 {
                format!("{ja}{}", i * 37 % 90)
            } else {
                format!("{en} {}", i * 53 % 90)
            }
        })
        .collect();
    let out = vec![
        run(
            &s,
            "ValueSet/$expand, a filter, count=20 (10,000 codes)",
            reps,
            |rep| {
                let f = &filters[rep % filters.len()];
                (
                    "GET",
                    format!("/ValueSet/$expand?url={VS}&filter={}&count=20", enc(f)),
                    None,
                )
            },
        ),
        run(&s, "ValueSet/$validate-code (10,000 codes)", reps, |rep| {
            let k = (rep * 7_919) % concepts;
            let code = if k.is_multiple_of(100) {
                format!("G{:03}", k / 100)
            } else {
                format!("L{k:05}")
            };
            (
                "GET",
                format!("/ValueSet/$validate-code?url={VS}&system={SYS}&code={code}"),
                None,
            )
        }),
        run(&s, "CodeSystem/$lookup (10,000 codes)", reps, |rep| {
            let k = 1 + (rep * 7_919) % (concepts - 1);
            let code = if k.is_multiple_of(100) {
                format!("G{:03}", k / 100)
            } else {
                format!("L{k:05}")
            };
            (
                "GET",
                format!("/CodeSystem/$lookup?system={SYS}&code={code}"),
                None,
            )
        }),
    ];
    s.stop();
    Ok(out)
}
