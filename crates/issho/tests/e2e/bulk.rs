//! FHIR Bulk Data 2.0 `$export` over HTTP, as a client written against the specification
//! would use it: the kick-off (`Prefer: respond-async`, 202 and `Content-Location`), polling
//! (202 with `X-Progress`, then 200 and the manifest), the NDJSON files (with the token),
//! `DELETE` to cancel; and the probes of a patient, a clinician elsewhere, a researcher and
//! a client that did not start the job.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn users() -> Vec<(&'static str, issho_auth::User)> {
    vec![
        (
            "admin",
            user("admin", Role::Administrator, "user/*.cruds", None, None),
        ),
        ("svc", user("svc", Role::Service, "system/*.rs", None, None)),
        (
            "svc-obs",
            user(
                "svc-obs",
                Role::Service,
                "system/Observation.rs",
                None,
                None,
            ),
        ),
        (
            "svc2",
            user("svc2", Role::Service, "system/*.rs", None, None),
        ),
        (
            "pat",
            user("pat", Role::Patient, "patient/*.rs", Some("p1"), None),
        ),
        (
            "doc-b",
            user("doc-b", Role::Physician, "user/*.rs", None, Some("org-b")),
        ),
        (
            "res",
            user("res", Role::Researcher, "user/*.rs", None, None),
        ),
    ]
}

pub(crate) fn setup() -> Signed {
    let c = Signed::start(Default::default(), users());
    c.store_as(
        "admin",
        &json!({"resourceType": "Organization", "id": "org-b", "name": "B病院"}),
    );
    for p in ["p1", "p2"] {
        c.store_as(
            "admin",
            &json!({"resourceType": "Patient", "id": p, "name": [{"family": format!("患者{p}")}]}),
        );
        for k in 0..3 {
            c.store_as(
                "admin",
                &json!({"resourceType": "Observation", "id": format!("{p}-o{k}"),
                    "status": "final", "code": {"text": "体重"},
                    "subject": {"reference": format!("Patient/{p}")},
                    "valueQuantity": {"value": 60 + k, "unit": "kg",
                        "system": "http://unitsofmeasure.org", "code": "kg"}}),
            );
        }
    }
    c
}

/// A kick-off: (status, Content-Location, body).
pub(crate) fn kickoff(
    c: &Signed,
    who: &str,
    path: &str,
    prefer: bool,
) -> (u16, Option<String>, Value) {
    let mut r =
        c.s.req("GET", path)
            .bearer_auth(c.tok(who))
            .header("accept", "application/fhir+json");
    if prefer {
        r = r.header("prefer", "respond-async");
    }
    let r = r.send().unwrap();
    let st = r.status().as_u16();
    let loc = r
        .headers()
        .get("content-location")
        .map(|v| v.to_str().unwrap().to_string());
    (
        st,
        loc,
        serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
    )
}

/// `url` (of this server's base, `…/fhir/$export-…`) on another base (after a restart).
pub(crate) fn on(url: &str, base: &str) -> String {
    format!("{base}{}", &url[url.find("/$export").unwrap()..])
}

/// Polls the status URL until the job is done: the manifest.
pub(crate) fn wait(c: &Signed, who: &str, url: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let r = c.s.client.get(url).bearer_auth(c.tok(who)).send().unwrap();
        match r.status().as_u16() {
            202 => {
                assert!(r.headers().get("x-progress").is_some());
                assert!(r.headers().get("retry-after").is_some());
                assert!(Instant::now() < until, "the export did not finish");
                std::thread::sleep(Duration::from_millis(50));
            }
            200 => {
                assert!(
                    r.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("application/json")
                );
                return serde_json::from_str(&r.text().unwrap()).unwrap();
            }
            other => panic!("status {other}: {}", r.text().unwrap()),
        }
    }
}

/// The resources of an NDJSON file.
pub(crate) fn download(c: &Signed, who: &str, url: &str) -> (u16, Vec<Value>) {
    let r =
        c.s.client
            .get(url)
            .bearer_auth(c.tok(who))
            .header("accept", "application/fhir+ndjson")
            .send()
            .unwrap();
    let st = r.status().as_u16();
    if st != 200 {
        return (st, Vec::new());
    }
    assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
    let text = r.text().unwrap();
    (
        st,
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

#[test]
fn a_backend_service_exports_and_others_cannot_reach_its_files() {
    let c = setup();
    let (st, loc, oo) = kickoff(&c, "svc", "$export?_type=Patient,Observation", true);
    assert_eq!(st, 202, "{oo}");
    let status_url = loc.expect("Content-Location");
    assert!(status_url.starts_with(&c.s.base), "{status_url}");
    let manifest = wait(&c, "svc", &status_url);
    assert_eq!(
        manifest["request"],
        format!("{}/$export?_type=Patient,Observation", c.s.base)
    );
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["transactionTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(manifest["error"], json!([]));
    let output = manifest["output"].as_array().unwrap();
    let types: Vec<&str> = output.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["Patient", "Observation"]);
    for o in output {
        let (st, resources) = download(&c, "svc", o["url"].as_str().unwrap());
        assert_eq!(st, 200);
        assert_eq!(resources.len() as u64, o["count"].as_u64().unwrap());
        assert!(resources.iter().all(|r| r["resourceType"] == o["type"]));
    }
    assert_eq!(output[0]["count"], 2);
    assert_eq!(output[1]["count"], 6);

    // Another client, a clinician, a patient: the job does not exist for them.
    let file = output[1]["url"].as_str().unwrap().to_string();
    for who in ["svc2", "doc-b", "pat"] {
        let r =
            c.s.client
                .get(&status_url)
                .bearer_auth(c.tok(who))
                .send()
                .unwrap();
        assert_eq!(r.status(), 404, "{who}");
        assert_eq!(download(&c, who, &file).0, 404, "{who}");
        let r =
            c.s.client
                .delete(&status_url)
                .bearer_auth(c.tok(who))
                .send()
                .unwrap();
        assert_eq!(r.status(), 404, "{who}");
    }
    // Without a token.
    let r = c.s.client.get(&file).send().unwrap();
    assert!(r.status() == 401 || r.status() == 404, "{}", r.status());
    // A made-up file name or job.
    let other = file.replace("Observation.ndjson", "..%2F..%2Fkeys.json");
    assert_eq!(download(&c, "svc", &other).0, 404);
    assert_eq!(
        download(
            &c,
            "svc",
            &format!("{}/$export-file/nothing/Patient.ndjson", c.s.base)
        )
        .0,
        404
    );

    // After a restart, the finished export is served again (new tokens, the same client).
    let dir = c.s.stop();
    let c = Signed::start_in(dir, Default::default(), users());
    let status_url = on(&status_url, &c.s.base);
    let again = wait(&c, "svc", &status_url);
    let mut expected = manifest["output"].clone();
    for x in expected.as_array_mut().unwrap() {
        x["url"] = json!(on(x["url"].as_str().unwrap(), &c.s.base));
    }
    assert_eq!(again["output"], expected);
    let file = again["output"][1]["url"].as_str().unwrap().to_string();
    assert_eq!(download(&c, "svc", &file).1.len(), 6);

    // DELETE: the job and its files are gone.
    let r =
        c.s.client
            .delete(&status_url)
            .bearer_auth(c.tok("svc"))
            .send()
            .unwrap();
    assert_eq!(r.status(), 202);
    let r =
        c.s.client
            .get(&status_url)
            .bearer_auth(c.tok("svc"))
            .send()
            .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(download(&c, "svc", &file).0, 404);
}

#[test]
fn a_patient_exports_their_own_record_only() {
    let c = setup();
    let (st, loc, oo) = kickoff(&c, "pat", "Patient/$export", true);
    assert_eq!(st, 202, "{oo}");
    let manifest = wait(&c, "pat", &loc.unwrap());
    let mut n = 0;
    for o in manifest["output"].as_array().unwrap() {
        let (st, resources) = download(&c, "pat", o["url"].as_str().unwrap());
        assert_eq!(st, 200);
        for r in resources {
            let text = r.to_string();
            assert!(!text.contains("p2"), "{text}");
            n += 1;
        }
    }
    // Their Patient and three Observations.
    assert_eq!(n, 4, "{manifest}");
}

#[test]
fn bad_kickoffs_are_refused_with_an_operation_outcome() {
    let c = setup();
    for (who, path, prefer, want) in [
        ("svc", "$export", false, 400),
        ("svc", "$export?_outputFormat=text/csv", true, 400),
        ("svc", "$export?_type=Nope", true, 400),
        ("svc", "$export?_since=yesterday", true, 400),
        ("svc", "$export?_typeFilter=Observation", true, 400),
        ("svc", "$export?_typeFilter=Nope%3Fx%3D1", true, 400),
        (
            "svc",
            "$export?_typeFilter=Observation%3Fnope%3D1",
            true,
            400,
        ),
        ("svc", "$export?_elements=Observation.code.text", true, 400),
        ("svc", "$export?_elements=Observation.nope", true, 400),
        (
            "svc",
            "$export?includeAssociatedData=_everything",
            true,
            400,
        ),
        ("svc", "$export?foo=bar", true, 400),
        ("svc", "Patient/$export?_type=Organization", true, 400),
        ("svc", "Group/nothing/$export", true, 404),
        // A researcher outside every research project gets nothing.
        ("res", "$export", true, 403),
        ("res", "Patient/$export", true, 403),
    ] {
        let (st, loc, oo) = kickoff(&c, who, path, prefer);
        assert_eq!(st, want, "{who} {path}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome", "{path}");
        assert!(loc.is_none());
    }
    // A Parameters body with POST.
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation"},
        {"name": "_since", "valueInstant": "2000-01-01T00:00:00Z"}]});
    let r =
        c.s.req("POST", "$export")
            .bearer_auth(c.tok("svc"))
            .header("prefer", "respond-async")
            .header("content-type", "application/fhir+json")
            .body(params.to_string())
            .send()
            .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let manifest = wait(&c, "svc", &loc);
    assert_eq!(manifest["output"][0]["type"], "Observation");
    assert_eq!(manifest["output"][0]["count"], 6);
}

#[test]
fn a_group_export_holds_its_members_records_only() {
    let c = setup();
    c.store_as(
        "admin",
        &json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{"entity": {"reference": "Patient/p1"}},
                       {"entity": {"reference": "Patient/p2"}, "inactive": true}]}),
    );
    let (st, loc, oo) = kickoff(
        &c,
        "svc",
        "Group/g1/$export?_type=Patient,Observation",
        true,
    );
    assert_eq!(st, 202, "{oo}");
    let manifest = wait(&c, "svc", &loc.unwrap());
    assert_eq!(
        manifest["request"],
        format!("{}/Group/g1/$export?_type=Patient,Observation", c.s.base)
    );
    let mut n = 0;
    for o in manifest["output"].as_array().unwrap() {
        for r in download(&c, "svc", o["url"].as_str().unwrap()).1 {
            assert!(!r.to_string().contains("p2"), "{r}");
            n += 1;
        }
    }
    assert_eq!(n, 4, "{manifest}");
    // A patient exporting the Group gets no more than their own record.
    let (st, loc, oo) = kickoff(&c, "pat", "Group/g1/$export", true);
    if st == 202 {
        let manifest = wait(&c, "pat", &loc.unwrap());
        for o in manifest["output"].as_array().unwrap() {
            for r in download(&c, "pat", o["url"].as_str().unwrap()).1 {
                assert!(!r.to_string().contains("p2"), "{r}");
            }
        }
    } else {
        assert!(st == 403 || st == 404, "{st}: {oo}");
    }
}

#[test]
fn type_filters_and_elements_shape_the_export() {
    let c = setup();
    // Two filters for Observation (ORed: a value of 61 or more, or p1-o0 and p1-o1), Patient
    // whole; only the status and value of Observations and the name of Patients (and what is
    // mandatory).
    let (st, loc, oo) = kickoff(
        &c,
        "svc",
        "$export?_type=Patient,Observation\
         &_typeFilter=Observation%3Fvalue-quantity%3Dge61%2CObservation%3F_id%3Dp1-o0%2Cp1-o1\
         &_elements=Observation.status,Observation.value,Patient.name",
        true,
    );
    assert_eq!(st, 202, "{oo}");
    let manifest = wait(&c, "svc", &loc.unwrap());
    let by_type = |t: &str| -> Vec<Value> {
        let o = manifest["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == t)
            .unwrap();
        download(&c, "svc", o["url"].as_str().unwrap()).1
    };
    let obs = by_type("Observation");
    let mut ids: Vec<&str> = obs.iter().map(|o| o["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec!["p1-o0", "p1-o1", "p1-o2", "p2-o1", "p2-o2"]);
    for o in &obs {
        assert!(o.get("subject").is_none(), "{o}");
        assert!(o.get("valueQuantity").is_some(), "{o}");
        assert_eq!(o["status"], "final");
        assert!(o["meta"]["tag"].to_string().contains("SUBSETTED"), "{o}");
    }
    let patients = by_type("Patient");
    assert_eq!(patients.len(), 2);
    assert!(patients.iter().all(|p| p["name"].is_array()));
}

/// An export a restart interrupted runs again when the server starts (simulated: a job left
/// `running` in the data directory, as a crash leaves it); one that cannot be read back is
/// reported failed.
#[test]
fn an_interrupted_export_runs_again_after_a_restart() {
    let c = setup();
    let dir = c.s.stop();
    let job = |id: &str, resume: Value| {
        let d = dir.path().join("bulk").join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("Observation.ndjson"), "{\"half\": \"written\"}\n").unwrap();
        let v = json!({"owner": "service:svc", "request": "http://old/fhir/$export",
            "transactionTime": "2020-01-01T00:00:00Z", "state": "running", "resume": resume});
        std::fs::write(d.join("job.json"), v.to_string()).unwrap();
    };
    job(
        "interrupted",
        json!({"principal": {"token": {"subject": "svc", "role": "service",
                "scopes": "system/*.rs", "tokenId": "t1"}},
            "purpose": "Operations", "types": ["Observation"], "since": null,
            "persons": null, "typeFilters": [], "elements": []}),
    );
    job("unreadable", json!({"principal": "someone"}));
    let c = Signed::start_in(dir, Default::default(), users());
    let manifest = wait(
        &c,
        "svc",
        &format!("{}/$export-status/interrupted", c.s.base),
    );
    assert_ne!(manifest["transactionTime"], "2020-01-01T00:00:00Z");
    assert_eq!(manifest["output"][0]["type"], "Observation");
    assert_eq!(manifest["output"][0]["count"], 6);
    let (_, lines) = download(&c, "svc", manifest["output"][0]["url"].as_str().unwrap());
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| l["resourceType"] == "Observation"));
    let r =
        c.s.client
            .get(format!("{}/$export-status/unreadable", c.s.base))
            .bearer_auth(c.tok("svc"))
            .send()
            .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().unwrap().contains("interrupted by a restart"));
}

/// `issho export --server` exports from a running server (whose store it cannot open) with
/// Bulk Data `$export`, with the given token; without a token it is refused.
#[test]
fn issho_export_reaches_a_running_server() {
    let c = setup();
    let out = tempfile::tempdir().unwrap();
    let run = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_issho"));
        cmd.args([
            "export",
            "--server",
            &c.s.base,
            "--type",
            "Patient,Observation",
        ])
        .arg("--out")
        .arg(out.path())
        .env_remove("ISSHO_TOKEN")
        .env_remove("ISSHO_SERVER");
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.output().unwrap()
    };
    let done = run(Some(c.tok("svc")));
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains("exported 8 resources of 2 types"),
        "{stdout}"
    );
    let lines = |t: &str| {
        std::fs::read_to_string(out.path().join(format!("{t}.ndjson")))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((lines("Patient"), lines("Observation")), (2, 6));
    let refused = run(None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("kick-off answered"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// A system-level export holds what its caller may search, no more: a patient their own
/// record, a clinician with nobody in care no one's.
#[test]
fn a_system_export_holds_what_the_caller_may_search() {
    let c = setup();
    for (who, want) in [("pat", 4usize), ("doc-b", 0)] {
        let (st, loc, oo) = kickoff(&c, who, "$export?_type=Patient,Observation", true);
        assert_eq!(st, 202, "{who}: {oo}");
        let manifest = wait(&c, who, &loc.unwrap());
        let mut n = 0;
        for o in manifest["output"].as_array().unwrap() {
            for r in download(&c, who, o["url"].as_str().unwrap()).1 {
                assert!(!r.to_string().contains("p2"), "{who}: {r}");
                n += 1;
            }
        }
        assert_eq!(n, want, "{who}: {manifest}");
    }
}

/// `_typeFilter` is a search like any other: its `_has` and chains see only what the caller
/// may see (a result not yet told to the patient stays hidden from them); result parameters
/// are refused; a type asked twice is exported once.
#[test]
fn type_filters_cannot_reach_what_search_hides() {
    let c = setup();
    c.store_as(
        "admin",
        &json!({"resourceType": "Observation", "id": "p1-untold", "status": "final",
            "meta": {"tag": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication",
                              "code": "UNINFORMED"}]},
            "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
            "subject": {"reference": "Patient/p1"}}),
    );
    // The patient cannot read it …
    assert_eq!(c.call("pat", "GET", "Observation/p1-untold", None).0, 404);
    // … nor learn of it through a _has filter of their own export.
    let count = |who: &str, path: &str| -> u64 {
        let (st, loc, oo) = kickoff(&c, who, path, true);
        assert_eq!(st, 202, "{path}: {oo}");
        let manifest = wait(&c, who, &loc.unwrap());
        manifest["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["count"].as_u64().unwrap())
            .sum()
    };
    let probe = "Patient/$export?_type=Patient\
                 &_typeFilter=Patient%3F_has%3AObservation%3Asubject%3Acode%3D21889-1";
    assert_eq!(count("pat", probe), 0);
    // A backend service sees it (the filter itself works).
    assert_eq!(count("svc", probe), 1);
    // A type asked twice is exported once.
    assert_eq!(count("svc", "$export?_type=Patient,Patient"), 2);
    // Result parameters have no place in a filter.
    for f in [
        "_sort%3D_id",
        "_count%3D1",
        "_include%3DObservation%3Asubject",
    ] {
        let (st, _, oo) = kickoff(
            &c,
            "svc",
            &format!("$export?_typeFilter=Observation%3F{f}"),
            true,
        );
        assert_eq!(st, 400, "{f}: {oo}");
    }
}
