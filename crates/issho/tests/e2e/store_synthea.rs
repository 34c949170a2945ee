//! Search over Synthea patients through the store's interface (`Store`, parsed queries), checked
//! against answers computed directly from the raw JSON in this file (never through the search
//! code) — on the store of this run (embedded, or PostgreSQL on the suite's PostgreSQL run).
//! Needs the shared reference data (`$ISSHO_SHARED` or `../shared` beside the repository);
//! skipped with a message without it.

use crate::common::{StoreDb, pairs};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// Patients loaded (each file holds one patient's whole record).
const PATIENT_FILES: usize = 12;

fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ISSHO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    dir.join("synthea/bulk-data-server-100")
        .is_dir()
        .then_some(dir)
}

struct Data {
    db: StoreDb,
    /// (rid, resource) in insertion order.
    all: Vec<(i64, Value)>,
}

impl Data {
    fn of_type(&self, t: &str) -> impl Iterator<Item = &(i64, Value)> {
        self.all.iter().filter(move |(_, r)| r["resourceType"] == t)
    }
    fn rid_of(&self, t: &str, id: &str) -> i64 {
        self.of_type(t).find(|(_, r)| r["id"] == id).unwrap().0
    }
}

/// Replace `urn:uuid:` references by `Type/id`, as the server does for transactions.
fn rewrite_refs(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "reference"
                    && let Some(s) = x.as_str()
                    && let Some(to) = map.get(s)
                {
                    *x = Value::String(to.clone());
                } else {
                    rewrite_refs(x, map);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, map)),
        _ => {}
    }
}

fn load(patient_files: usize) -> Option<Data> {
    let Some(dir) = shared_dir() else {
        eprintln!("SKIPPED: shared reference data not found (set ISSHO_SHARED)");
        return None;
    };
    let dir = dir.join("synthea/bulk-data-server-100");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (infra, patients): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| {
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        n.starts_with("hospitalInformation") || n.starts_with("practitionerInformation")
    });
    let mut entries = Vec::new();
    for f in infra.iter().chain(patients.iter().take(patient_files)) {
        let b: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        // `groupInformation*` is a single Group, not a Bundle.
        for e in b["entry"].as_array().into_iter().flatten() {
            entries.push((
                e["fullUrl"].as_str().unwrap().to_string(),
                e["resource"].clone(),
            ));
        }
    }
    let map: HashMap<String, String> = entries
        .iter()
        .map(|(full, r)| {
            let id = r["id"].as_str().unwrap();
            (
                full.clone(),
                format!("{}/{id}", r["resourceType"].as_str().unwrap()),
            )
        })
        .collect();
    let db = StoreDb::open();
    let mut seen = std::collections::HashSet::new();
    let mut todo = Vec::new();
    for (_, mut r) in entries {
        // The infrastructure files repeat a few resources: keep the first.
        if !seen.insert(format!("{}/{}", r["resourceType"], r["id"])) {
            continue;
        }
        rewrite_refs(&mut r, &map);
        todo.push(r);
    }
    let mut all = Vec::new();
    for chunk in todo.chunks(500) {
        let chunk = chunk.to_vec();
        let written = issho_store::write(&*db.store, &db.permit, move |tx| {
            let mut out = Vec::new();
            for mut r in chunk.clone() {
                let (t, id) = (
                    r["resourceType"].as_str().unwrap().to_string(),
                    r["id"].as_str().unwrap().to_string(),
                );
                let put = tx.put(&t, &id, &mut r, None, "PUT")?;
                out.push((put.rid, r));
            }
            Ok::<_, issho_store::StoreError>(out)
        })
        .unwrap()
        .unwrap();
        all.extend(written);
    }
    eprintln!("loaded {} resources", all.len());
    Some(Data { db, all })
}

impl Data {
    fn search(&self, q: &issho_search::SearchQuery) -> Vec<i64> {
        self.db
            .store
            .reader(&self.db.permit)
            .unwrap()
            .search(q)
            .unwrap()
    }
    fn count(&self, rt: Option<&str>, query: &str) -> u64 {
        let q = issho_search::parse(rt, &pairs(query), true).unwrap();
        self.db
            .store
            .reader(&self.db.permit)
            .unwrap()
            .count(&q)
            .unwrap()
    }
    fn includes(&self, q: &issho_search::SearchQuery, page: &[i64]) -> BTreeSet<i64> {
        let r = self.db.store.reader(&self.db.permit).unwrap();
        r.includes(q, page, false).unwrap().into_iter().collect()
    }
}

fn rids(d: &Data, rt: Option<&str>, query: &str) -> BTreeSet<i64> {
    let q =
        issho_search::parse(rt, &pairs(query), true).unwrap_or_else(|e| panic!("{query}: {e:?}"));
    d.search(&q).into_iter().collect()
}

fn ordered(d: &Data, rt: &str, query: &str) -> Vec<i64> {
    let q = issho_search::parse(Some(rt), &pairs(query), true).unwrap();
    d.search(&q)
}

fn codings(cc: &Value) -> impl Iterator<Item = (&str, &str)> {
    cc["coding"].as_array().into_iter().flatten().map(|c| {
        (
            c["system"].as_str().unwrap_or(""),
            c["code"].as_str().unwrap_or(""),
        )
    })
}

fn has_code(cc: &Value, system: &str, code: &str) -> bool {
    codings(cc).any(|(s, c)| s == system && c == code)
}

/// Epoch seconds of a dateTime with offset (the start of its range).
fn epoch(dt: &str) -> i64 {
    issho_search::values::parse_date_range(dt)
        .unwrap_or_else(|| panic!("not a dateTime: {dt}"))
        .lo
        .div_euclid(1_000_000)
}

fn subject_id(r: &Value) -> Option<&str> {
    r["subject"]["reference"].as_str()?.strip_prefix("Patient/")
}

/// The most frequent LOINC observation codes.
fn top_codes(d: &Data, n: usize) -> Vec<String> {
    let mut freq: HashMap<String, usize> = HashMap::new();
    for (_, o) in d.of_type("Observation") {
        for (s, c) in codings(&o["code"]) {
            if s == "http://loinc.org" {
                *freq.entry(c.to_string()).or_default() += 1;
            }
        }
    }
    let mut v: Vec<_> = freq.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(n).map(|x| x.0).collect()
}

#[test]
fn synthea_searches_match_independent_answers() {
    let Some(d) = load(PATIENT_FILES) else {
        return;
    };
    assert!(d.all.len() > 300, "{}", d.all.len());
    let mut checks = 0;
    let patients: Vec<&Value> = d.of_type("Patient").map(|(_, r)| r).collect();

    // Token: the most frequent codes, and patient + code (+ date).
    for code in top_codes(&d, 6) {
        let expect: BTreeSet<i64> = d
            .of_type("Observation")
            .filter(|(_, o)| has_code(&o["code"], "http://loinc.org", &code))
            .map(|(rid, _)| *rid)
            .collect();
        assert!(!expect.is_empty());
        assert_eq!(
            rids(
                &d,
                Some("Observation"),
                &format!("code=http://loinc.org|{code}")
            ),
            expect
        );
        assert_eq!(
            d.count(Some("Observation"), &format!("code={code}&_summary=count")),
            expect.len() as u64
        );
        checks += 2;
        for p in patients.iter().take(4) {
            let pid = p["id"].as_str().unwrap();
            let since = epoch("2015-01-01T00:00:00Z");
            let expect: BTreeSet<i64> = d
                .of_type("Observation")
                .filter(|(_, o)| {
                    subject_id(o) == Some(pid) && has_code(&o["code"], "http://loinc.org", &code)
                })
                .filter(|(_, o)| {
                    o["effectiveDateTime"]
                        .as_str()
                        .is_some_and(|t| epoch(t) >= since)
                })
                .map(|(rid, _)| *rid)
                .collect();
            let q = format!("patient=Patient/{pid}&code=http://loinc.org|{code}&date=ge2015-01-01");
            assert_eq!(rids(&d, Some("Observation"), &q), expect, "{q}");
            checks += 1;
        }
    }

    // String: prefix of family names, case-insensitive.
    for p in patients.iter().take(5) {
        let family = p["name"][0]["family"].as_str().unwrap();
        let prefix = family[..3].to_lowercase();
        let expect: BTreeSet<i64> = d
            .of_type("Patient")
            .filter(|(_, r)| {
                r["name"].as_array().unwrap().iter().any(|n| {
                    std::iter::once(&n["family"])
                        .chain(n["given"].as_array().into_iter().flatten())
                        .chain(n["prefix"].as_array().into_iter().flatten())
                        .chain(n["suffix"].as_array().into_iter().flatten())
                        .filter_map(Value::as_str)
                        .any(|s| s.to_lowercase().starts_with(&prefix))
                })
            })
            .map(|(rid, _)| *rid)
            .collect();
        assert_eq!(
            rids(
                &d,
                Some("Patient"),
                &format!("name={}", prefix.to_uppercase())
            ),
            expect
        );
        // Chain: observations of the patients with that name.
        let pids: BTreeSet<String> = d
            .of_type("Patient")
            .filter(|(rid, _)| expect.contains(rid))
            .map(|(_, r)| r["id"].as_str().unwrap().to_string())
            .collect();
        let obs: BTreeSet<i64> = d
            .of_type("Observation")
            .filter(|(_, o)| subject_id(o).is_some_and(|s| pids.contains(s)))
            .map(|(rid, _)| *rid)
            .collect();
        assert_eq!(
            rids(
                &d,
                Some("Observation"),
                &format!("subject:Patient.name={prefix}")
            ),
            obs
        );
        checks += 2;
    }

    // Token + date on patients.
    let expect: BTreeSet<i64> = d
        .of_type("Patient")
        .filter(|(_, r)| r["gender"] == "female" && r["birthDate"].as_str().unwrap() < "1960-01-01")
        .map(|(rid, _)| *rid)
        .collect();
    assert_eq!(
        rids(&d, Some("Patient"), "gender=female&birthdate=lt1960-01-01"),
        expect
    );
    let expect: BTreeSet<i64> = d
        .of_type("Patient")
        .filter(|(_, r)| r["birthDate"].as_str().unwrap().starts_with("19"))
        .map(|(rid, _)| *rid)
        .collect();
    assert_eq!(
        rids(&d, Some("Patient"), "birthdate=ge1900&birthdate=le1999"),
        expect
    );
    checks += 2;

    // Identifiers.
    for p in patients.iter().take(3) {
        for i in p["identifier"].as_array().unwrap() {
            let (s, v) = (i["system"].as_str().unwrap(), i["value"].as_str().unwrap());
            let expect: BTreeSet<i64> = d
                .of_type("Patient")
                .filter(|(_, r)| {
                    r["identifier"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|j| j["system"] == s && j["value"] == v)
                })
                .map(|(rid, _)| *rid)
                .collect();
            assert_eq!(
                rids(&d, Some("Patient"), &format!("identifier={s}|{v}")),
                expect
            );
            checks += 1;
        }
    }

    // Quantities: plain number, and mass in any UCUM mass unit.
    let expect: BTreeSet<i64> = d
        .of_type("Observation")
        .filter(|(_, o)| {
            o["valueQuantity"]["value"]
                .as_f64()
                .is_some_and(|v| v > 100.0)
        })
        .map(|(rid, _)| *rid)
        .collect();
    assert!(!expect.is_empty());
    assert_eq!(
        rids(&d, Some("Observation"), "value-quantity=gt100"),
        expect
    );
    let grams = |q: &Value| -> Option<f64> {
        let f = match q["code"].as_str()? {
            "kg" => 1000.0,
            "g" => 1.0,
            "mg" => 1e-3,
            "ug" => 1e-6,
            "ng" => 1e-9,
            "pg" => 1e-12,
            _ => return None,
        };
        (q["system"] == "http://unitsofmeasure.org").then(|| q["value"].as_f64().unwrap() * f)
    };
    let expect: BTreeSet<i64> = d
        .of_type("Observation")
        .filter(|(_, o)| grams(&o["valueQuantity"]).is_some_and(|g| g < 80_000.0))
        .map(|(rid, _)| *rid)
        .collect();
    assert!(!expect.is_empty());
    assert_eq!(
        rids(
            &d,
            Some("Observation"),
            "value-quantity=lt80|http://unitsofmeasure.org|kg"
        ),
        expect
    );
    assert_eq!(
        rids(
            &d,
            Some("Observation"),
            "value-quantity=lt80000|http://unitsofmeasure.org|g"
        ),
        expect
    );
    checks += 3;

    // Composite: systolic blood pressure above 130 in the same component.
    let expect: BTreeSet<i64> = d
        .of_type("Observation")
        .filter(|(_, o)| {
            o["component"].as_array().into_iter().flatten().any(|c| {
                has_code(&c["code"], "http://loinc.org", "8480-6")
                    && c["valueQuantity"]["value"]
                        .as_f64()
                        .is_some_and(|v| v > 130.0)
            })
        })
        .map(|(rid, _)| *rid)
        .collect();
    assert_eq!(
        rids(
            &d,
            Some("Observation"),
            "component-code-value-quantity=http://loinc.org|8480-6$gt130"
        ),
        expect
    );
    checks += 1;

    // Period containment: encounters entirely within a year (in UTC).
    for year in [2000, 2010, 2019] {
        let (lo, hi) = (
            epoch(&format!("{year}-01-01T00:00:00Z")),
            epoch(&format!("{}-01-01T00:00:00Z", year + 1)),
        );
        let expect: BTreeSet<i64> = d
            .of_type("Encounter")
            .filter(|(_, e)| {
                let s = epoch(e["period"]["start"].as_str().unwrap());
                let t = epoch(e["period"]["end"].as_str().unwrap());
                s >= lo && t < hi
            })
            .map(|(rid, _)| *rid)
            .collect();
        assert_eq!(
            rids(&d, Some("Encounter"), &format!("date={year}")),
            expect,
            "{year}"
        );
        checks += 1;
    }

    // _has: patients with a given condition.
    let cond_code = d
        .of_type("Condition")
        .flat_map(|(_, c)| codings(&c["code"]).map(|x| x.1.to_string()))
        .next()
        .unwrap();
    let pids: BTreeSet<&str> = d
        .of_type("Condition")
        .filter(|(_, c)| codings(&c["code"]).any(|x| x.1 == cond_code))
        .filter_map(|(_, c)| subject_id(c))
        .collect();
    let expect: BTreeSet<i64> = pids.iter().map(|p| d.rid_of("Patient", p)).collect();
    assert_eq!(
        rids(
            &d,
            Some("Patient"),
            &format!("_has:Condition:patient:code={cond_code}")
        ),
        expect
    );
    checks += 1;

    // Sorting and paging: one patient's observations, newest first, page 2 of 10.
    let pid = patients[0]["id"].as_str().unwrap();
    let mut obs: Vec<(i64, i64)> = d
        .of_type("Observation")
        .filter(|(_, o)| subject_id(o) == Some(pid))
        .map(|(rid, o)| (epoch(o["effectiveDateTime"].as_str().unwrap()), *rid))
        .collect();
    obs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let expect: Vec<i64> = obs.iter().skip(10).take(10).map(|x| x.1).collect();
    assert_eq!(
        ordered(
            &d,
            "Observation",
            &format!("patient={pid}&_sort=-date&_count=10&_offset=10")
        ),
        expect
    );
    let all: Vec<i64> = obs.iter().map(|x| x.1).collect();
    assert_eq!(
        ordered(&d, "Observation", &format!("patient={pid}&_sort=-date")),
        all
    );
    checks += 2;

    // _include and _revinclude.
    let code = &top_codes(&d, 1)[0];
    let q = issho_search::parse(
        Some("Observation"),
        &pairs(&format!("code={code}&_include=Observation:patient")),
        true,
    )
    .unwrap();
    let page = d.search(&q);
    let included = d.includes(&q, &page);
    let expect: BTreeSet<i64> = d
        .all
        .iter()
        .filter(|(rid, _)| page.contains(rid))
        .filter_map(|(_, o)| subject_id(o))
        .map(|p| d.rid_of("Patient", p))
        .collect();
    assert_eq!(included, expect);
    let q = issho_search::parse(
        Some("Patient"),
        &pairs(&format!("_id={pid}&_revinclude=Encounter:patient")),
        true,
    )
    .unwrap();
    let included = d.includes(&q, &[d.rid_of("Patient", pid)]);
    let expect: BTreeSet<i64> = d
        .of_type("Encounter")
        .filter(|(_, e)| subject_id(e) == Some(pid))
        .map(|(rid, _)| *rid)
        .collect();
    assert_eq!(included, expect);
    checks += 2;

    // System-level search across two types.
    let expect: BTreeSet<i64> = d
        .all
        .iter()
        .filter(|(_, r)| matches!(r["resourceType"].as_str(), Some("Condition" | "Procedure")))
        .filter(|(_, r)| subject_id(r) == Some(pid))
        .map(|(rid, _)| *rid)
        .collect();
    assert_eq!(
        rids(
            &d,
            None,
            &format!("_type=Condition,Procedure&patient=Patient/{pid}")
        ),
        expect
    );
    checks += 1;

    eprintln!(
        "{checks} searches checked against independent answers over {} resources",
        d.all.len()
    );
}

/// Timing and query plans over all 100 patients, on the store of the run:
/// `cargo test -p issho --release --test e2e -- --ignored --nocapture store_synthea`.
#[test]
#[ignore]
fn full_scale_timing_and_plans() {
    let start = std::time::Instant::now();
    let Some(d) = load(usize::MAX) else {
        return;
    };
    eprintln!(
        "loaded and indexed {} resources in {:?}",
        d.all.len(),
        start.elapsed()
    );
    let pid = d.of_type("Patient").next().unwrap().1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = top_codes(&d, 1)[0].clone();
    for (rt, query) in [
        (
            "Observation",
            format!("patient={pid}&code=http://loinc.org|{code}"),
        ),
        (
            "Observation",
            format!("patient={pid}&code=http://loinc.org|{code}&date=ge2015&_sort=-date"),
        ),
        (
            "Observation",
            "value-quantity=gt100|http://unitsofmeasure.org|mg/dL".to_string(),
        ),
        ("Patient", "name=smi".to_string()),
        (
            "Observation",
            "subject:Patient.name=smi&code=8302-2".to_string(),
        ),
        (
            "Patient",
            "_has:Observation:patient:code=8302-2".to_string(),
        ),
    ] {
        let q = issho_search::parse(Some(rt), &pairs(&query), true).unwrap();
        let r = d.db.store.reader(&d.db.permit).unwrap();
        let t = std::time::Instant::now();
        let n = r.search(&q).unwrap().len();
        let first = t.elapsed();
        let mut times: Vec<std::time::Duration> = (0..21)
            .map(|_| {
                let t = std::time::Instant::now();
                assert_eq!(r.search(&q).unwrap().len(), n);
                t.elapsed()
            })
            .collect();
        times.sort();
        eprintln!(
            "{rt}?{query}: {n} rows, first run {first:?}, median of 21 {:?}",
            times[10]
        );
        for p in r.explain(&q).unwrap() {
            eprintln!("    {p}");
        }
    }
}
