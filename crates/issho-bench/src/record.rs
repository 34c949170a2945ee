//! The lifelong record: `$everything` and `$summary` of persons with Patients at several
//! institutions (linked by their insurance member ID when loaded), `Patient/$match`, and
//! JP-CLINS referral intake (documents/s with extraction, from several clients).

use crate::http::Conn;
use crate::measure::percentile;
use crate::search::MixResult;
use crate::server::Server;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A failed HTTP answer, briefly.
fn http_error(status: u16, body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    format!("HTTP {status}: {text}")
}

/// Persons with Patients at two or more institutions: (first Patient id, its resource).
fn linked_persons(cfg: &issho_demo::DemoConfig) -> Vec<(String, Value)> {
    (0..cfg.persons)
        .filter_map(|i| {
            let rs = issho_demo::person_resources(cfg, i);
            let pats: Vec<_> = rs.iter().filter(|r| r.resource_type == "Patient").collect();
            (pats.len() >= 2).then(|| (pats[0].id.clone(), pats[0].resource.clone()))
        })
        .take(50)
        .collect()
}

/// Run `reps` requests made by `req(rep)` on one connection; the figures of the operation.
pub(crate) fn run(
    s: &Server,
    name: &'static str,
    reps: usize,
    mut req: impl FnMut(usize) -> (&'static str, String, Option<Vec<u8>>),
) -> MixResult {
    let mut lat = Vec::with_capacity(reps);
    let mut error = None;
    let mut matches = String::new();
    let began = Instant::now();
    if let Ok(mut c) = Conn::open(s.addr) {
        for rep in 0..reps {
            let (method, url, body) = req(rep);
            let t = Instant::now();
            let r = c.request(method, &s.url(&url), &[], body.as_deref());
            lat.push(t.elapsed());
            match r {
                Ok(r) if r.status < 300 => {
                    if rep == 0 {
                        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        matches = v["entry"]
                            .as_array()
                            .map(|a| format!("{} entries", a.len()))
                            .unwrap_or_default();
                    }
                }
                Ok(r) => {
                    error = Some(http_error(r.status, &r.body));
                    break;
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
            if began.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
    } else {
        error = Some("cannot connect".into());
    }
    let total: f64 = lat.iter().map(Duration::as_secs_f64).sum();
    let n = lat.len();
    lat.sort();
    MixResult {
        name,
        reps: n,
        p50: percentile(&lat, 0.5),
        p95: percentile(&lat, 0.95),
        p99: percentile(&lat, 0.99),
        rate: n as f64 / total.max(1e-9),
        matches,
        error,
    }
}

/// A small JP-CLINS referral letter from hospital A (1319876543) to clinic B (1311234567)
/// about a new patient `n`: two diagnoses, a drug allergy, a result.
pub fn referral(n: usize) -> Value {
    let sec = |code: &str, entries: &[&str], sub: Vec<Value>| {
        let mut s = json!({"title": code,
            "code": {"coding": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/document-section", "code": code}]},
            "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{code}</div>")}});
        if !entries.is_empty() {
            s["entry"] = entries.iter().map(|u| json!({"reference": u})).collect();
        }
        if !sub.is_empty() {
            s["section"] = json!(sub);
        }
        s
    };
    let ri = "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier";
    // fullUrls: real UUIDs (the document's n, the entry's k).
    let u = |k: u64| format!("urn:uuid:{n:08x}-0000-4000-8000-{k:012x}");
    let (c0, p0, oa, ob, c1, c2, a1, o1) = (u(0), u(1), u(2), u(3), u(4), u(5), u(6), u(7));
    let no = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
    json!({"resourceType": "Bundle", "type": "document",
    "identifier": {"system": "http://jpfhir.jp/fhir/clins/bundle-identifier", "value": format!("1319876543^2026^bench-{n}")},
    "entry": [
        {"fullUrl": c0, "resource": {"resourceType": "Composition", "status": "final",
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber", "valueString": "1"}],
            "identifier": {"system": ri, "value": format!("bench-doc-{n}")},
            "type": {"coding": [{"system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes", "code": "57133-1"}]},
            "subject": {"reference": p0}, "date": "2026-11-01", "title": "診療情報提供書",
            "author": [{"reference": oa}], "custodian": {"reference": oa},
            "section": [sec("920", &[oa.as_str()], vec![]), sec("910", &[ob.as_str()], vec![]),
                sec("300", &[], vec![sec("950", &[], vec![]), sec("340", &[c1.as_str(), c2.as_str()], vec![]),
                    sec("360", &[], vec![]), sec("510", &[a1.as_str()], vec![]), sec("620", &[o1.as_str()], vec![])])]}},
        {"fullUrl": p0, "resource": {"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11319876543", "value": format!("bench-{n}")}],
            "name": [{"family": "検証", "given": [format!("{n}")]}], "gender": "female", "birthDate": "1950-01-01"}},
        {"fullUrl": oa, "resource": {"resourceType": "Organization", "name": "病院A", "identifier": [{"system": no, "value": "1319876543"}]}},
        {"fullUrl": ob, "resource": {"resourceType": "Organization", "name": "診療所B", "identifier": [{"system": no, "value": "1311234567"}]}},
        {"fullUrl": c1, "resource": {"resourceType": "Condition", "identifier": [{"system": ri, "value": format!("c1-{n}")}],
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"text": "高血圧症"}, "subject": {"reference": p0}}},
        {"fullUrl": c2, "resource": {"resourceType": "Condition", "identifier": [{"system": ri, "value": format!("c2-{n}")}],
            "code": {"text": "2型糖尿病"}, "subject": {"reference": p0}}},
        {"fullUrl": a1, "resource": {"resourceType": "AllergyIntolerance", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}, "identifier": [{"system": ri, "value": format!("a1-{n}")}],
            "category": ["medication"], "code": {"text": "ペニシリン"}, "patient": {"reference": p0}}},
        {"fullUrl": o1, "resource": {"resourceType": "Observation", "identifier": [{"system": ri, "value": format!("o1-{n}")}],
            "status": "final", "code": {"text": "HbA1c"}, "valueQuantity": {"value": 7.1, "unit": "%"},
            "subject": {"reference": p0}}}
    ]})
}

/// Documents/s of JP-CLINS referral intake from `clients` connections (each a new patient).
fn intake(s: &Server, docs: usize, clients: usize) -> MixResult {
    let next = AtomicUsize::new(0);
    let lats = std::sync::Mutex::new(Vec::new());
    let error = std::sync::Mutex::new(None);
    let began = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..clients.max(1) {
            sc.spawn(|| {
                let Ok(mut c) = Conn::open(s.addr) else {
                    return;
                };
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= docs {
                        break;
                    }
                    let body = referral(n).to_string();
                    let t = Instant::now();
                    let r = c.request(
                        "POST",
                        &s.url("/Bundle"),
                        &[("Prefer", "return=minimal")],
                        Some(body.as_bytes()),
                    );
                    lats.lock().unwrap().push(t.elapsed());
                    match r {
                        Ok(r) if r.status == 201 => {}
                        Ok(r) => {
                            *error.lock().unwrap() = Some(http_error(r.status, &r.body));
                            break;
                        }
                        Err(e) => {
                            *error.lock().unwrap() = Some(e.to_string());
                            break;
                        }
                    }
                }
            });
        }
    });
    let secs = began.elapsed().as_secs_f64();
    let mut lat = lats.into_inner().unwrap();
    lat.sort();
    MixResult {
        name: "JP-CLINS referral intake (documents/s, extraction included)",
        reps: lat.len(),
        p50: percentile(&lat, 0.5),
        p95: percentile(&lat, 0.95),
        p99: percentile(&lat, 0.99),
        rate: lat.len() as f64 / secs.max(1e-9),
        matches: format!("{} documents, {clients} clients", lat.len()),
        error: error.into_inner().unwrap(),
    }
}

/// The record's operations: `$everything` and `$summary` of linked persons, `$match`, and
/// document intake.
pub fn record_ops(
    s: &Server,
    cfg: &issho_demo::DemoConfig,
    reps: usize,
    clients: usize,
) -> Vec<MixResult> {
    let persons = linked_persons(cfg);
    let mut out = Vec::new();
    if persons.is_empty() {
        return out;
    }
    let pick = |rep: usize| &persons[rep % persons.len()];
    out.push(run(
        s,
        "$everything of a person at several institutions",
        reps,
        |rep| {
            (
                "GET",
                format!("/Patient/{}/$everything?_count=1000", pick(rep).0),
                None,
            )
        },
    ));
    out.push(run(
        s,
        "$summary (six items across institutions)",
        reps,
        |rep| ("GET", format!("/Patient/{}/$summary", pick(rep).0), None),
    ));
    out.push(run(s, "Patient/$match (member ID, name, birth date)", reps, |rep| {
        let mut p = pick(rep).1.clone();
        if let Some(o) = p.as_object_mut() {
            o.remove("id");
            o.remove("link");
        }
        let body = json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": p}]});
        ("POST", "/Patient/$match".to_string(), Some(body.to_string().into_bytes()))
    }));
    out.push(intake(s, reps.max(200), clients));
    out
}

const EN_REP: &str = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
const MEMBER: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

/// Synthetic person `n` registered at institution `at` (one Patient; every third person has a
/// second one elsewhere, which the member ID and birth date link).
fn match_patient(n: usize, at: usize) -> Value {
    // The twelve commonest surnames and the given names of the person's sex and era (the
    // demo's name lists).
    let families = &issho_demo::names::SURNAMES[..12];
    let day = 1 + (n * 7919) % (80 * 365);
    let (y, d) = (1940 + day / 365, day % 365);
    let givens = issho_demo::names::given_names(n.is_multiple_of(2), y as i64);
    let (fk, fr) = families[n % families.len()];
    let (gk, gr) = givens[(n / families.len()) % givens.len()];
    let birth = format!("{y}-{:02}-{:02}", 1 + d / 31 % 12, 1 + d % 28);
    json!({"resourceType": "Patient",
        "identifier": [
            {"system": format!("urn:oid:1.2.392.100495.20.3.51.1{:010}", 1_300_000_000 + at), "value": format!("m{n}")},
            {"system": MEMBER, "value": format!("0613{:04}:{}:{}:00", n % 9000, n % 97, n)}],
        "name": [
            {"extension": [{"url": EN_REP, "valueCode": "IDE"}], "family": fk, "given": [gk]},
            {"extension": [{"url": EN_REP, "valueCode": "SYL"}], "family": fr, "given": [gr]}],
        "gender": if n.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": birth})
}

/// `Patient/$match` over a fresh store of `persons` synthetic persons (Patients only, a third
/// of them at two institutions): the load's resources/s and the operation's figures.
pub fn match_at_scale(
    bin: &std::path::Path,
    dir: &std::path::Path,
    persons: usize,
    clients: usize,
    reps: usize,
) -> Result<(f64, MixResult), String> {
    let s = Server::issho(bin, dir, None)?;
    eprintln!("$match at scale: loading {persons} persons…");
    let next = AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None);
    let began = Instant::now();
    const PER_BUNDLE: usize = 250;
    std::thread::scope(|sc| {
        for _ in 0..clients.max(1) {
            sc.spawn(|| {
                let Ok(mut c) = Conn::open(s.addr) else { return };
                loop {
                    let from = next.fetch_add(PER_BUNDLE, Ordering::Relaxed);
                    if from >= persons {
                        break;
                    }
                    let mut entries = Vec::new();
                    for n in from..(from + PER_BUNDLE).min(persons) {
                        entries.push(json!({"resource": match_patient(n, 0), "request": {"method": "POST", "url": "Patient"}}));
                        if n.is_multiple_of(3) {
                            entries.push(json!({"resource": match_patient(n, 1), "request": {"method": "POST", "url": "Patient"}}));
                        }
                    }
                    let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string();
                    match c.request("POST", &s.url(""), &[("Prefer", "return=minimal")], Some(b.as_bytes())) {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => {
                            *failed.lock().unwrap() = Some(http_error(r.status, &r.body));
                            break;
                        }
                        Err(e) => {
                            *failed.lock().unwrap() = Some(e.to_string());
                            break;
                        }
                    }
                }
            });
        }
    });
    let load_secs = began.elapsed().as_secs_f64();
    if let Some(e) = failed.into_inner().unwrap() {
        s.stop();
        return Err(format!("$match at scale: loading failed: {e}"));
    }
    let written = persons + persons.div_ceil(3);
    let result = run(&s, "Patient/$match at scale", reps, |rep| {
        let n = (rep * 7_561) % persons;
        let mut p = match_patient(n, 5);
        // Asked as a third institution would: another patient ID, the same member ID.
        p["identifier"][0]["value"] = json!(format!("q{n}"));
        let body = json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": p}]});
        (
            "POST",
            "/Patient/$match".to_string(),
            Some(body.to_string().into_bytes()),
        )
    });
    s.stop();
    Ok((written as f64 / load_secs.max(1e-9), result))
}
