//! The protocol as real FHIR clients meet it: paging and totals (`_count=0`, `_total`), JSON
//! without empty arrays or objects, an OperationOutcome on every error — also those answered
//! by the HTTP layers below the handler —, body limits, decimals the index can hold, and the
//! CapabilityStatement (cached, ETag, compression, `_summary` / `_elements`).

use crate::common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Paths to the empty arrays and objects in `v` (FHIR JSON allows none).
fn empties(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Array(a) if a.is_empty() => out.push(path.to_string()),
        Value::Object(o) if o.is_empty() => out.push(path.to_string()),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                empties(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                empties(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[track_caller]
fn assert_no_empties(v: &Value) {
    let mut found = Vec::new();
    empties(v, "$", &mut found);
    assert!(found.is_empty(), "empty arrays/objects at {found:?} in {v}");
}

fn links(b: &Value) -> Vec<(String, String)> {
    b["link"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["relation"].as_str().unwrap().to_string(),
                l["url"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn link<'a>(l: &'a [(String, String)], rel: &str) -> Option<&'a str> {
    l.iter().find(|(r, _)| r == rel).map(|(_, u)| u.as_str())
}

fn observation(i: usize) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("o{i}")},
           "valueQuantity": {"value": i, "unit": "g"}})
}

/// `n` Observations in one transaction.
fn load_observations(s: &Server, n: usize) {
    let entries: Vec<Value> = (0..n)
        .map(|i| json!({"resource": observation(i), "request": {"method": "POST", "url": "Observation"}}))
        .collect();
    let r = s.post(
        "",
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

#[test]
fn count_zero_answers_the_total_without_a_page_or_next_link() {
    let s = Server::start();
    for i in 0..3 {
        assert_eq!(
            s.post(
                "Patient",
                &json!({"resourceType": "Patient", "id": format!("x{i}"), "gender": "male"})
            )
            .status(),
            201
        );
    }
    // More matches than the first window (1,000), where the total is not known unasked.
    load_observations(&s, 1_050);
    for q in [
        "Patient?_count=0",
        "Observation?_count=0",
        "Observation?_count=0&_offset=10",
    ] {
        let b = json(s.get(q));
        let want = if q.starts_with("Patient") { 3 } else { 1_050 };
        assert_eq!(b["total"], want, "{q}: {b}");
        assert!(b.get("entry").is_none(), "{q}: {b}");
        let l = links(&b);
        let me = link(&l, "self").unwrap();
        assert!(link(&l, "next").is_none(), "{q}: a next link {l:?}");
        assert!(
            l.iter()
                .all(|(rel, u)| rel == "self" || rel == "first" || u != me),
            "{q}: a paging link equal to self: {l:?}"
        );
        assert_no_empties(&b);
    }
    // `_total=accurate` always has it, on every page; without `_total` a large result states
    // none rather than a wrong one, and its pages never loop.
    let b = json(s.get("Observation?_count=1&_total=accurate"));
    assert_eq!(b["total"], 1_050);
    let next = link(&links(&b), "next").unwrap().to_string();
    let b2 = json(s.client.get(&next).send().unwrap());
    assert_eq!(b2["total"], 1_050, "{b2}");
    assert_ne!(link(&links(&b2), "next"), Some(next.as_str()));
    let b = json(s.get("Observation?_count=1"));
    assert!(b.get("total").is_none_or(|t| t == 1_050), "{b}");
    assert_eq!(json(s.get("Patient?_count=1"))["total"], 3);
}

#[test]
fn no_empty_arrays_or_objects_in_any_answer() {
    let s = Server::start();
    let p = json!({"resourceType": "Patient", "id": "p1", "gender": "female",
                   "name": [{"family": "Yamada", "given": ["Hanako"]}]});
    assert_eq!(s.put("Patient/p1", &p).status(), 201);
    let mut answers = vec![
        ("no matches", json(s.get("Patient?family=Nobody"))),
        ("_summary=count", json(s.get("Patient?_summary=count"))),
        (
            "_summary=count, none",
            json(s.get("Patient?family=Nobody&_summary=count")),
        ),
        ("_count=0", json(s.get("Patient?_count=0"))),
        ("empty history", json(s.get("Observation/_history"))),
        ("history _count=0", json(s.get("Patient/_history?_count=0"))),
        ("_elements", json(s.get("Patient?_elements=photo"))),
        ("read _elements", json(s.get("Patient/p1?_elements=photo"))),
        ("read _summary", json(s.get("Patient/p1?_summary=true"))),
        ("compartment", json(s.get("Patient/p1/Observation"))),
        ("everything", json(s.get("Patient/p1/$everything"))),
        ("metadata _elements", json(s.get("metadata?_elements=rest"))),
    ];
    let r = s.post("", &json!({"resourceType": "Bundle", "type": "batch"}));
    answers.push(("empty batch", json(r)));
    let r = s
        .req("DELETE", "Patient/p1")
        .header("prefer", "return=OperationOutcome")
        .send()
        .unwrap();
    answers.push(("delete outcome", json(r)));
    for (what, v) in answers {
        assert!(v.get("resourceType").is_some(), "{what}: {v}");
        let mut found = Vec::new();
        empties(&v, "$", &mut found);
        assert!(found.is_empty(), "{what}: empty at {found:?}: {v}");
    }
}

/// Send `request` as it is on a new connection; the answer as (status, head, body).
fn raw(s: &Server, request: &[u8]) -> (u16, String, Vec<u8>) {
    let addr = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/fhir");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer and close before reading all of a large request.
    let _ = c.write_all(request);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if got.is_empty() => panic!("no answer: {e}"),
            Err(_) => break,
        }
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i]).to_string();
            let len = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if len.is_some_and(|n| got.len() >= i + 4 + n) {
                break;
            }
        }
    }
    let i = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&got[..i]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, head, got[i + 4..].to_vec())
}

/// An OperationOutcome answer of `status`; its diagnostics.
#[track_caller]
fn raw_outcome(answer: (u16, String, Vec<u8>), status: u16) -> String {
    let (got, head, body) = answer;
    assert_eq!(got, status, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/fhir+json"),
        "{head}"
    );
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {head}\n{}", String::from_utf8_lossy(&body)));
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    assert_eq!(v["issue"][0]["severity"], "error", "{v}");
    v["issue"][0]["diagnostics"].as_str().unwrap().to_string()
}

#[test]
fn errors_below_the_handler_carry_an_operation_outcome() {
    let s = Server::start();
    let get = |target: &[u8]| {
        let mut r = b"GET ".to_vec();
        r.extend_from_slice(target);
        r.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        r
    };
    // Raw bytes that are not URL characters: hyper refuses the request line.
    raw_outcome(raw(&s, &get(b"/fhir/Patient/\xff")), 400);
    raw_outcome(raw(&s, &get(b"/fhir/Patient?name=\xff")), 400);
    // Percent-encoded, but not UTF-8: refused rather than searched for U+FFFD.
    let d = raw_outcome(raw(&s, &get(b"/fhir/Patient/%FF%FE")), 400);
    assert!(d.contains("UTF-8"), "{d}");
    let d = raw_outcome(raw(&s, &get(b"/fhir/Patient?name=%FF")), 400);
    assert!(d.contains("UTF-8"), "{d}");
    // A URI over 64 KiB, and too many headers.
    let long: String = (0..10_000).map(|i| format!("name=x{i}&")).collect();
    let d = raw_outcome(
        raw(&s, &get(format!("/fhir/Patient?{long}").as_bytes())),
        414,
    );
    assert!(d.contains("_search"), "{d}");
    let mut many = b"GET /fhir/Patient HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"Connection: close\r\n\r\n");
    raw_outcome(raw(&s, &many), 431);
    // A header over hyper's buffer (≈400 KiB; one read may fill the buffer beyond it, so the
    // header is far larger: a 500 KB one was once read whole and answered 200 on CI).
    let mut big = b"GET /fhir/Patient HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 4_000_000));
    big.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    raw_outcome(raw(&s, &big), 431);
    // Methods a route does not take, outside the FHIR base too.
    assert_outcome(
        s.client
            .post(s.base.replace("/fhir", "/healthz"))
            .send()
            .unwrap(),
        405,
    );
    assert_outcome(
        s.client
            .get(s.base.replace("/fhir", "/auth/token"))
            .send()
            .unwrap(),
        405,
    );
    assert_outcome(s.req("FOO", "Patient").send().unwrap(), 405);
}

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

#[test]
fn bodies_over_the_limit_are_refused_at_once() {
    let s = Server::start_with(|c| c.max_body = 64 * 1024);
    // Content-Length over the limit, and only a little of the body sent: 413 without waiting
    // for the rest.
    let started = Instant::now();
    let d = raw_outcome(
        raw(
            &s,
            b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n\
              Content-Length: 999999999\r\n\r\n{\"resourceType\":",
        ),
        413,
    );
    assert!(d.contains("65536"), "{d}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the answer waited for the body"
    );
    // The OAuth endpoints' own limit (axum's) answers with an OperationOutcome too.
    // (The server may answer and close before the client has sent the whole body; the
    // client then sees a reset instead of the answer — tried again, a few times.)
    let r = (0..5)
        .find_map(|_| {
            s.client
                .post(s.base.replace("/fhir", "/auth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![b'a'; 3 * 1024 * 1024])
                .send()
                .ok()
        })
        .expect("an answer to one of five tries");
    assert_outcome(r, 413);
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

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn metadata_is_cached_validated_compressed_and_shaped() {
    let s = Server::start();
    let r = s.get("metadata");
    assert_eq!(r.status(), 200);
    let etag = header(&r, "etag");
    assert!(!etag.is_empty(), "no ETag");
    let full = r.bytes().unwrap().to_vec();
    let cs: Value = serde_json::from_slice(&full).unwrap();
    assert_no_empties(&cs);
    // Revalidation: 304 without a body; a HEAD has the headers only.
    let r = s
        .req("GET", "metadata")
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.bytes().unwrap().is_empty());
    let r = s
        .req("GET", "metadata")
        .header("if-none-match", "\"other\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s.req("HEAD", "metadata").send().unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "etag")),
        (200, etag.clone())
    );
    // Compressed as asked, to the same bytes.
    let r = s
        .req("GET", "metadata")
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(gunzip(&r.bytes().unwrap()), full);
    let r = s
        .req("GET", "metadata")
        .header("accept-encoding", "gzip, br")
        .send()
        .unwrap();
    assert_eq!(header(&r, "content-encoding"), "br");
    assert_eq!(unbrotli(&r.bytes().unwrap()), full);
    let r = s
        .req("GET", "metadata")
        .header("accept-encoding", "gzip;q=0")
        .send()
        .unwrap();
    assert!(header(&r, "content-encoding").is_empty());
    // `_summary=true` and `_elements`.
    let sum = json(s.get("metadata?_summary=true"));
    assert_eq!(sum["resourceType"], "CapabilityStatement");
    assert_eq!(sum["fhirVersion"], "4.0.1");
    assert_eq!(sum["meta"]["tag"][0]["code"], "SUBSETTED", "{sum}");
    assert!(serde_json::to_vec(&sum).unwrap().len() < full.len());
    let el = json(s.get("metadata?_elements=fhirVersion,software"));
    assert_eq!(el["software"]["name"], "issho");
    assert!(
        el.get("rest").is_none() && el.get("implementation").is_none(),
        "{el}"
    );
    assert_eq!(el["meta"]["tag"][0]["code"], "SUBSETTED");
    // The same answer until the search parameters change; then a new one that has them.
    assert_eq!(header(&s.get("metadata"), "etag"), etag);
    let sp = json!({
        "resourceType": "SearchParameter", "id": "nickname", "url": "https://issho.example/fhir/SearchParameter/nickname",
        "name": "Nickname", "status": "active", "description": "Nickname",
        "code": "nickname", "base": ["Patient"], "type": "string",
        "expression": "Patient.name.where(use='nickname').given"
    });
    assert_eq!(s.put("SearchParameter/nickname", &sp).status(), 201);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get("metadata");
        let tag = header(&r, "etag");
        let cs = json(r);
        let patient = cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Patient")
            .unwrap()
            .clone();
        if patient["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "nickname")
        {
            assert_ne!(tag, etag, "a changed statement under the old ETag");
            break;
        }
        assert_eq!(tag, etag);
        assert!(Instant::now() < end, "the custom parameter never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}
