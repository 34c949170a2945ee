//! Real FHIR clients, unmodified, against the server: Python `fhirpy` (PyPI) counts
//! (`_count=0`), pages through every result (`fetch_all`, following `next` links until there
//! are none) and reads. Installed beside the build when it is not installed already; without
//! a network and without it, the test says it skipped.

use crate::common::*;
use serde_json::json;

fn python_with(module: &str, requirement: &str) -> Option<(String, Option<std::path::PathBuf>)> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let have = |py_path: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(&python);
        c.args(["-c", &format!("import {module}")]);
        if let Some(p) = py_path {
            c.env("PYTHONPATH", p);
        }
        c.output().map(|o| o.status.success()).unwrap_or(false)
    };
    if have(None) {
        return Some((python, None));
    }
    let site =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pylib-{module}"));
    if !have(Some(&site)) {
        let _ = std::process::Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--target"])
            .arg(&site)
            .arg(requirement)
            .status();
    }
    have(Some(&site)).then_some((python, Some(site)))
}

#[test]
fn fhirpy_counts_and_pages() {
    let Some((python, site)) = python_with("fhirpy", "fhirpy==2.3.1") else {
        println!("SKIPPED: python fhirpy is not installed and could not be installed");
        return;
    };
    let s = Server::start();
    // More than the first window of a search (1,000): the total is not known without
    // counting, which `_count=0` must do.
    let entries: Vec<_> = (0..1203)
        .map(|i| {
            json!({"resource": {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "valueQuantity": {"value": 40 + i % 60, "unit": "kg"}},
                "request": {"method": "POST", "url": "Observation"}})
        })
        .collect();
    let r = s.post(
        "",
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    );
    assert_eq!(r.status().as_u16(), 200);
    let script = r#"
import sys
from fhirpy import SyncFHIRClient
client = SyncFHIRClient(sys.argv[1])
obs = client.resources('Observation').search(code='http://loinc.org|29463-7')
n = obs.count()
assert n == 1203, n
assert client.resources('Patient').count() == 0
every = obs.limit(500).fetch_all()
assert len(every) == 1203, len(every)
first = obs.sort('-_lastUpdated').first()
assert first['resourceType'] == 'Observation'
again = client.reference('Observation', first['id']).to_resource()
assert again['id'] == first['id']
print('ok', n, len(every))
"#;
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-c", script, &s.base]);
    if let Some(p) = site {
        cmd.env("PYTHONPATH", p);
    }
    let out = std::thread::scope(|sc| {
        let h = sc.spawn(|| cmd.output().unwrap());
        h.join().unwrap()
    });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok 1203 1203"));
}
