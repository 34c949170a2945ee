//! The `issho` binary: subcommands, configuration precedence, durability across a crash.

use crate::common;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_issho");

/// A running `issho serve`; killed (SIGKILL) on drop.
pub(crate) struct Proc {
    child: Child,
    pub(crate) base: String,
    stdout_lines: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn issho");
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(out);
    let base = loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("issho exited before listening; output: {lines:?}");
        }
        lines.push(line.trim().to_string());
        if let Some(rest) = line.trim().strip_prefix("issho listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in reader.lines() {});
    Proc {
        child,
        base,
        stdout_lines: lines,
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn post(base: &str, path: &str, body: &Value) -> reqwest::blocking::Response {
    client()
        .post(format!("{base}/{path}"))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .unwrap()
}

#[test]
fn version_prints() {
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("issho "));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "import", "demo", "audit", "version"] {
        assert!(help.contains(sub), "{help}");
    }
}

#[test]
fn acknowledged_writes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let p = serve(
        &["--data", data, "--listen", "127.0.0.1:0", "--dev-open"],
        &[],
    );
    let r = post(
        &p.base,
        "Patient",
        &json!({"resourceType": "Patient", "name": [{"family": "耐久"}]}),
    );
    assert_eq!(r.status(), 201);
    let id = common::json(r)["id"].as_str().unwrap().to_string();
    // reads whose records gather in the audit writer's window when the process dies
    for _ in 0..50 {
        let r = client()
            .get(format!("{}/Patient/{id}", p.base))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(p); // SIGKILL: no shutdown, no checkpoint, the audit trail's head not caught up
    // what the audit trail kept is intact: a crash loses at most the records not yet committed
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data", data])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("audit log intact"), "{text}");
    let p = serve(
        &["--data", data, "--listen", "127.0.0.1:0", "--dev-open"],
        &[],
    );
    let r = client()
        .get(format!("{}/Patient/{id}", p.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(common::json(r)["name"][0]["family"], "耐久");
}

#[test]
fn configuration_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("issho.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &cfg,
        format!(
            "data = \"{}\"\nlisten = \"127.0.0.1:0\"\nmax_body = 300\n",
            data.display()
        ),
    )
    .unwrap();
    let big = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(400)}]});
    let small = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(10)}]});
    // the file's limit applies
    let p = serve(&["--config", cfg.to_str().unwrap(), "--dev-open"], &[]);
    assert_eq!(post(&p.base, "Patient", &big).status(), 413);
    assert_eq!(post(&p.base, "Patient", &small).status(), 201);
    drop(p);
    // an ISSHO_* variable wins over the file
    let p = serve(
        &["--config", cfg.to_str().unwrap()],
        &[("ISSHO_MAX_BODY", "100000"), ("ISSHO_DEV_OPEN", "true")],
    );
    assert_eq!(post(&p.base, "Patient", &big).status(), 201);
    drop(p);
    // a flag wins over both
    let p = serve(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--max-body",
            "200",
            "--dev-open",
        ],
        &[("ISSHO_MAX_BODY", "100000")],
    );
    assert_eq!(post(&p.base, "Patient", &big).status(), 413);
    // the file's data directory was used all along: two patients stored there
    let b: Value = client()
        .get(format!("{}/Patient/_history", p.base))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .parse::<Value>()
        .unwrap();
    assert_eq!(b["total"], 2);
    assert!(data.join("issho.db").exists());
    // an unreadable config file is a clear error
    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/issho.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config file"));
}

#[test]
fn serve_demo_fills_an_empty_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let p = serve(
        &[
            "--data",
            data,
            "--listen",
            "127.0.0.1:0",
            "--demo",
            "--demo-patients",
            "3",
        ],
        &[],
    );
    let summary = p
        .stdout_lines
        .iter()
        .find(|l| l.starts_with("demo population:"))
        .expect("summary printed")
        .clone();
    assert!(summary.contains("3 persons"), "{summary}");
    // Authentication is required: anonymous callers get 401 with a Bearer challenge.
    let r = client()
        .get(format!("{}/Patient?_count=100", p.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // The demo users are printed, and `issho token` signs them in.
    for u in [
        "demo-patient",
        "demo-doctor-a",
        "demo-doctor-b",
        "demo-pharmacist",
        "demo-emergency",
        "demo-researcher",
        "demo-admin",
    ] {
        assert!(p.stdout_lines.iter().any(|l| l.contains(u)), "{u}");
    }
    let token = |user: &str| -> Value {
        let out = Command::new(BIN)
            .args(["token", "--data", data, "--user", user])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let get = |path: &str, tok: &Value| -> (u16, Value) {
        let r = client()
            .get(format!("{}/{path}", p.base))
            .bearer_auth(tok["access_token"].as_str().unwrap())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap().parse::<Value>().unwrap())
    };
    let me = token("demo-patient");
    let my_id = me["patient"].as_str().unwrap().to_string();
    assert!(me["scope"].as_str().unwrap().contains("patient/*.cruds"));
    assert_eq!(me["token_type"], "Bearer");
    let (st, own) = get("Patient?_count=100", &me);
    assert_eq!(st, 200);
    let ids: Vec<&str> = own["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&my_id.as_str()), "{ids:?}");
    assert!(
        ids.len() >= 2 && ids.iter().all(|i| i.starts_with("demo-p0-")),
        "a patient sees only their own record, at each institution: {ids:?}"
    );
    let admin = token("demo-admin");
    let (_, b) = get("Patient?_count=100", &admin);
    let pats = b["entry"].as_array().unwrap();
    assert!(pats.len() >= 3, "the administrator sees every patient");
    // Doctors A and B work at the demo patient's two institutions; the emergency physician's
    // hospital never treated them.
    let (st, _) = get(&format!("Patient/{my_id}"), &token("demo-doctor-a"));
    assert_eq!(st, 200);
    let (st, _) = get(&format!("Patient/{my_id}"), &token("demo-doctor-b"));
    assert_eq!(st, 200);
    let (st, _) = get(&format!("Patient/{my_id}"), &token("demo-emergency"));
    assert_eq!(st, 404);
    // The person refuses their record to doctor B's institution: doctor B then sees less (none
    // of it), doctor A as before.
    let sees = |tok: &Value| -> u64 {
        let (st, b) = get(&format!("Observation?patient={my_id}&_summary=count"), tok);
        assert_eq!(st, 200, "{b}");
        b["total"].as_u64().unwrap()
    };
    let (doctor_a, doctor_b) = (token("demo-doctor-a"), token("demo-doctor-b"));
    let (a_before, b_before) = (sees(&doctor_a), sees(&doctor_b));
    assert!(a_before > 0 && b_before > 0, "{a_before} {b_before}");
    let (_, roles) = get(
        &format!(
            "PractitionerRole?practitioner={}",
            doctor_b["fhirUser"].as_str().unwrap()
        ),
        &admin,
    );
    let org_b = roles["entry"][0]["resource"]["organization"]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let refusal = serde_json::json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{my_id}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "permit", "provision": [{"type": "deny",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"reference": org_b}}]}]}});
    let r = client()
        .post(format!("{}/Consent", p.base))
        .bearer_auth(me["access_token"].as_str().unwrap())
        .header("content-type", "application/fhir+json")
        .body(refusal.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    assert_eq!(sees(&doctor_b), 0, "doctor B sees less");
    assert_eq!(sees(&doctor_a), a_before);
    // Researchers get no individual records.
    let (st, _) = get("Patient", &token("demo-researcher"));
    assert_eq!(st, 403);
    // A tampered token is refused.
    let mut bad = me.clone();
    bad["access_token"] = Value::String(format!("{}x", me["access_token"].as_str().unwrap()));
    let (st, _) = get("Patient", &bad);
    assert_eq!(st, 401);
    // Japanese names in kanji and kana
    let names = pats[0]["resource"]["name"].as_array().unwrap();
    assert!(names.len() >= 2, "{names:?}");
    drop(p);
    let p = serve(
        &[
            "--data",
            data,
            "--listen",
            "127.0.0.1:0",
            "--demo",
            "--demo-patients",
            "3",
        ],
        &[],
    );
    assert!(
        !p.stdout_lines
            .iter()
            .any(|l| l.starts_with("demo population:")),
        "not loaded twice"
    );
}

#[test]
fn demo_files_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let st = Command::new(BIN)
        .args([
            "demo",
            "--patients",
            "4",
            "--seed",
            "7",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.file_name().unwrap() == "Patient.ndjson"),
        "{files:?}"
    );
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    let data = dir.path().join("data");
    let st = Command::new(BIN)
        .args([
            "import",
            "--data",
            data.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let msg =
        String::from_utf8_lossy(&st.stdout).to_string() + &String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{msg}");
    assert!(
        msg.contains(&format!("imported {lines} resources")),
        "{msg}"
    );
    let p = serve(
        &[
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--dev-open",
        ],
        &[],
    );
    let b: Value = client()
        .get(format!("{}/_history?_count=1", p.base))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .parse::<Value>()
        .unwrap();
    // Plus one server-kept Person per demo person (each has an insurance member ID), whose
    // Patients at several institutions it links.
    let persons: Value = client()
        .get(format!("{}/Person?_count=100", p.base))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .parse::<Value>()
        .unwrap();
    assert_eq!(persons["total"], 4, "{persons}");
    let patients = std::fs::read_to_string(out.join("Patient.ndjson"))
        .unwrap()
        .lines()
        .count();
    let linked: usize = persons["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["link"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        linked, patients,
        "every Patient in its person's Person: {persons}"
    );
    // The history holds every imported resource and each version of the Persons (a Person is
    // written again when a second Patient of it arrives).
    let person_versions: u64 = persons["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(b["total"], lines as u64 + person_versions);

    // One process per data directory: a second one is refused while the server runs.
    let exp = dir.path().join("export");
    let export = |data: &std::path::Path, out: &std::path::Path, extra: &[&str]| {
        Command::new(BIN)
            .args(["export", "--data", data.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let st = export(&data, &exp, &[]);
    assert!(!st.status.success());
    assert!(
        String::from_utf8_lossy(&st.stderr).contains("in use by another issho process"),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    drop(p);

    // `issho export`: one NDJSON file per type holding exactly the generated resources
    // (compared with the files `issho demo --out` wrote, apart from the server's meta), and
    // the server-kept Persons.
    let st = export(&data, &exp, &[]);
    let msg = String::from_utf8_lossy(&st.stdout).to_string();
    assert!(
        st.status.success(),
        "{msg}{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        msg.contains(&format!("exported {} resources", lines + 4)),
        "{msg}"
    );
    let by_id = |path: &std::path::Path| -> std::collections::BTreeMap<String, Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("meta");
                (v["id"].as_str().unwrap().to_string(), v)
            })
            .collect()
    };
    for f in &files {
        let name = f.file_name().unwrap();
        let mut want = by_id(f);
        for v in want.values_mut() {
            v.as_object_mut().unwrap().remove("meta");
        }
        assert_eq!(by_id(&exp.join(name)), want, "{name:?}");
    }
    assert_eq!(std::fs::read_dir(&exp).unwrap().count(), files.len() + 1);
    assert_eq!(
        std::fs::read_to_string(exp.join("Person.ndjson"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    // `--type` and `--since`.
    let only = dir.path().join("only");
    let st = export(&data, &only, &["--type", "Patient,Encounter"]);
    assert!(st.status.success());
    let names: std::collections::BTreeSet<String> = std::fs::read_dir(&only)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Encounter.ndjson", "Patient.ndjson"]
            .map(String::from)
            .into()
    );
    let later = dir.path().join("later");
    let st = export(&data, &later, &["--since", "2999-01-01T00:00:00Z"]);
    assert!(String::from_utf8_lossy(&st.stdout).contains("exported 0 resources"));
    let st = export(&data, &later, &["--since", "soon"]);
    assert!(!st.status.success());

    // Round trip: the export imports into a fresh store with every resource.
    let again = dir.path().join("again");
    let st = Command::new(BIN)
        .args([
            "import",
            "--data",
            again.to_str().unwrap(),
            exp.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&st.stdout).to_string();
    assert!(
        st.status.success(),
        "{msg}{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        msg.contains(&format!("imported {lines} resources"))
            && msg.contains("skipped 4 Person resources"),
        "{msg}"
    );
}

#[test]
fn audit_verify_finds_tampering() {
    use issho_audit::{AuditLog, AuditRecord, Interaction};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = AuditLog::open(&data).unwrap();
    for i in 0..50 {
        let mut r = AuditRecord::new(Interaction::Read, "Practitioner/dr", "cli-test");
        r.patients = vec![format!("Patient/p{}", i % 4)];
        r.entities = vec![format!("Observation/o{i}")];
        log.record(r).unwrap();
    }
    log.close().unwrap();
    let verify = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["audit", "verify"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, out) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("audit log intact: 50 entries"), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    // the server's configuration file names the data directory; its other keys are ignored
    let cfg = dir.path().join("issho.toml");
    std::fs::write(
        &cfg,
        format!("data = \"{}\"\nlisten = \"127.0.0.1:0\"\n", data.display()),
    )
    .unwrap();
    let (code, out) = verify(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    // an archive directory beside the segments (here: with none of them) is read too; one
    // that does not exist cannot be checked
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let (code, out) = verify(&[
        "--data",
        data.to_str().unwrap(),
        "--archive",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = verify(&[
        "--data",
        data.to_str().unwrap(),
        "--archive",
        "/nonexistent",
    ]);
    assert_eq!(code, Some(2), "{out}");
    // an edited entry (the resource entry 23 read): exit 1, its block named
    let segment = data
        .join(issho_audit::SEGMENTS_DIR)
        .join("segment-000001.db");
    let conn = rusqlite::Connection::open(segment).unwrap();
    conn.execute_batch(
        "DROP TRIGGER dict_no_update;
         UPDATE dict SET text = 'Observation/o99' WHERE text = 'Observation/o22'",
    )
    .unwrap();
    drop(conn);
    let (code, out) = verify(&["--data", data.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("first bad entry seq") && out.contains("does not match its hash"),
        "{out}"
    );
    // no audit log at all: cannot check
    let (code, out) = verify(&["--data", dir.path().join("none").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn client_registration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    // Before the server ran once there is no authentication store.
    let out = run(&[
        "client",
        "add",
        "--data",
        data,
        "--id",
        "app",
        "--redirect-uri",
        "http://127.0.0.1/cb",
    ]);
    assert!(!out.status.success());
    let p = serve(&["--data", data, "--listen", "127.0.0.1:0"], &[]);
    drop(p);
    let out = run(&[
        "client",
        "add",
        "--data",
        data,
        "--id",
        "app",
        "--redirect-uri",
        "http://127.0.0.1/cb",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, jwk) = issho_auth::new_es256_client_key("k").unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, json!({"keys": [jwk]}).to_string()).unwrap();
    let out = run(&[
        "client",
        "add",
        "--data",
        data,
        "--id",
        "svc",
        "--jwks",
        keys.to_str().unwrap(),
        "--scope",
        "system/*.rs",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A backend service gets system scopes only.
    let out = run(&[
        "client",
        "add",
        "--data",
        data,
        "--id",
        "svc2",
        "--jwks",
        keys.to_str().unwrap(),
        "--scope",
        "user/*.rs",
    ]);
    assert!(!out.status.success());
    let auth = issho_auth::Auth::open_existing(dir.path())
        .unwrap()
        .unwrap();
    assert!(auth.client("app").unwrap().is_some());
    assert!(auth.client("svc").unwrap().is_some());
}

/// TLS by configuration: HTTPS with the given certificate, HSTS, https links.
#[test]
fn serve_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: openssl is not available to make a test certificate");
        return;
    }
    let data = dir.path().join("data");
    let p = serve(
        &[
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--dev-open",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(p.base.starts_with("https://127.0.0.1:"), "{}", p.base);
    let curl = |extra: &[&str], url: &str| {
        Command::new("curl")
            .args(["-s", "-D", "-", "--cacert"])
            .arg(&cert)
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    };
    let out = curl(&[], &format!("{}/Patient", p.base));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("HTTP/"), "{text}");
    assert!(text.contains(" 200"), "{text}");
    assert!(
        text.to_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );
    assert!(
        text.contains("\"url\":\"https://127.0.0.1:"),
        "links use https: {text}"
    );
    // Plain HTTP to the TLS port gets no answer.
    let plain = p.base.replace("https://", "http://");
    let out = Command::new("curl")
        .args(["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{plain}/metadata"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
}

/// `issho client list` shows what `issho client add` registered (issue 9, item 13).
#[test]
fn client_list_shows_registered_apps_and_services() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    // The authentication store exists once a token has been made for a user (the demo users).
    let auth = issho_auth::Auth::open(&data, "http://127.0.0.1:1/fhir").unwrap();
    drop(auth);
    let out = Command::new(BIN)
        .args(["client", "list", "--data", d])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no clients registered"));
    let out = Command::new(BIN)
        .args([
            "client",
            "add",
            "--data",
            d,
            "--id",
            "my-app",
            "--redirect-uri",
            "http://127.0.0.1/cb",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["client", "list", "--data", d])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("my-app\tapp (public, PKCE)"), "{text}");
    assert!(text.contains("http://127.0.0.1/cb"), "{text}");
}
