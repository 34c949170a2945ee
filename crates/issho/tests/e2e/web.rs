//! The web application over HTTP, as a browser uses it: sign-in through issho's own
//! authorization server, the person's portal (record from every institution, charts, a
//! blood-pressure reading entered and charted, refusing an institution's data and its effect on
//! another institution's clinician, the access log with an emergency access), the clinician's
//! lookup and summary, the emergency physician's break-the-glass — and the probes: forms
//! without the CSRF token or from another origin, forged sessions, open redirects, script in
//! data, patient data in URLs, a patient at the clinician's pages, sign-out.

use crate::common::*;
use crate::web_browser::{Browser, csrf, enc, hidden_fields};
use issho_access::Role;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const MEMBER: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

fn users() -> Vec<(&'static str, issho_auth::User)> {
    vec![
        (
            "admin",
            user("admin", Role::Administrator, "user/*.cruds", None, None),
        ),
        (
            "pat",
            user("pat", Role::Patient, "patient/*.cruds", Some("p1"), None),
        ),
        (
            "doc-a",
            user(
                "doc-a",
                Role::Physician,
                "user/*.cruds",
                None,
                Some("org-a"),
            ),
        ),
        (
            "doc-b",
            user(
                "doc-b",
                Role::Physician,
                "user/*.cruds",
                None,
                Some("org-b"),
            ),
        ),
        (
            "pharm",
            user(
                "pharm",
                Role::Pharmacist,
                "user/*.rs user/MedicationDispense.cruds",
                None,
                Some("org-a"),
            ),
        ),
        (
            "er",
            user(
                "er",
                Role::EmergencyPhysician,
                "user/*.rs",
                None,
                Some("org-c"),
            ),
        ),
    ]
}

pub(crate) fn setup() -> Signed {
    let c = Signed::start(Default::default(), users());
    for (id, name) in [
        ("org-a", "あおば病院"),
        ("org-b", "さくら診療所"),
        ("org-c", "救命センター"),
    ] {
        c.store_as(
            "admin",
            &json!({"resourceType": "Organization", "id": id, "name": name}),
        );
    }
    for (p, family, kana, member) in [
        ("p1", "山田", "ヤマダ", "1234567"),
        ("p2", "佐藤", "サトウ", "7654321"),
    ] {
        c.store_as(
            "admin",
            &json!({"resourceType": "Patient", "id": p, "birthDate": "1960-04-01", "gender": "female",
                "identifier": [{"system": MEMBER, "value": member}],
                "name": [{"family": family, "given": ["花子"]},
                         {"family": kana, "given": ["ハナコ"], "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}]}]}),
        );
    }
    // Care at A and at B.
    for (id, org) in [("enc-a", "org-a"), ("enc-b", "org-b")] {
        c.store_as(
            "admin",
            &json!({"resourceType": "Encounter", "id": id, "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": "Patient/p1"},
                "serviceProvider": {"reference": format!("Organization/{org}")},
                "period": {"start": "2026-06-01T09:00:00+09:00"}}),
        );
    }
    // Hospital A's results: HbA1c over a year, with its reference range; a diagnosis whose
    // text is markup.
    for (i, (when, v)) in [
        ("2026-01-10", 6.4),
        ("2026-05-10", 6.9),
        ("2026-09-10", 7.3),
    ]
    .iter()
    .enumerate()
    {
        let (st, b) = c.call(
            "doc-a",
            "POST",
            "Observation",
            Some(&json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}], "text": "HbA1c"},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
                "valueQuantity": {"value": v, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
                "referenceRange": [{"low": {"value": 4.6, "unit": "%"}, "high": {"value": 6.2, "unit": "%"}}],
                "identifier": [{"value": format!("a1c-{i}")}]})),
        );
        assert_eq!(st, 201, "{b}");
    }
    let (st, b) = c.call(
        "doc-a",
        "POST",
        "Condition",
        Some(&json!({"resourceType": "Condition",
            "code": {"text": "<script>alert('x')</script>2型糖尿病"},
            "subject": {"reference": "Patient/p1"}, "recordedDate": "2026-05-10"})),
    );
    assert_eq!(st, 201, "{b}");
    c
}

pub(crate) fn count(c: &Signed, who: &str, q: &str) -> u64 {
    let (st, b) = c.call(who, "GET", &format!("{q}&_summary=count"), None);
    assert_eq!(st, 200, "{q}: {b}");
    b["total"].as_u64().unwrap()
}

#[test]
fn the_person_and_the_clinicians_use_the_web_application() {
    let c = setup();
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    let mut anon = Browser::new(&root);

    // The landing page, Japanese first, English on request; headers of a page with health data.
    let home = anon.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("<html lang=\"ja\"") && home.body.contains("サインイン"));
    for (h, want) in [
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(home.headers[h], want, "{h}");
    }
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let en = anon.get("/web/lang/en?back=/");
    assert!(
        en.body.contains("<html lang=\"en\"") && en.body.contains("Sign in"),
        "{}",
        en.body
    );
    // Open redirects: only this site's paths.
    for back in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let r = anon
            .http
            .get(format!("{root}/web/lang/ja?back={}", enc(back)))
            .send()
            .unwrap();
        assert_eq!(r.headers()["location"], "/", "{back}");
    }
    // Not signed in: the portal sends to sign in; a forged session cookie too.
    assert!(anon.get("/portal").url.contains("/auth/authorize?"));
    anon.cookies.insert("issho_session".into(), "0".repeat(64));
    assert!(anon.get("/clinician").url.contains("/auth/authorize?"));
    // A callback that did not start here.
    let r = anon.get("/web/callback?code=x&state=forged");
    assert_eq!(r.status, 400);

    // The person signs in and sees their record from both institutions, charted.
    let mut pat = Browser::new(&root);
    let portal = pat.sign_in("pat");
    assert_eq!(portal.status, 200, "{}", portal.body);
    assert!(portal.url.ends_with("/portal"), "{}", portal.url);
    let session = pat.cookies.get("issho_session").cloned().unwrap();
    assert_eq!(session.len(), 64);
    for want in [
        "あおば病院",
        "HbA1c",
        "<figure>",
        "class=\"band\"",
        "2026-09-10 7.3 %",
        "だれが記録を見たか",
    ] {
        assert!(portal.body.contains(want), "{want}");
    }
    // Script in data is text.
    assert!(!portal.body.contains("<script>"));
    assert!(portal.body.contains("&lt;script&gt;"));

    // A blood-pressure reading: without the form's token, or from another origin, refused.
    let token = csrf(&portal.body);
    let reading = [
        ("kind", "bp"),
        ("value", "152"),
        ("value2", "96"),
        ("at", "2026-12-01T08:30"),
    ];
    let before = count(&c, "admin", "Observation?patient=p1");
    let r = pat.post("/portal/measure", &reading);
    assert_eq!(r.status, 403);
    let mut with = reading.to_vec();
    with.push(("csrf", &token));
    let r = pat.send(
        "POST",
        "/portal/measure",
        Some(&with),
        Some("http://evil.example"),
    );
    assert_eq!(r.status, 403);
    let mut bad = with.clone();
    bad[1] = ("value", "abc");
    let r = pat.post("/portal/measure", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(count(&c, "admin", "Observation?patient=p1"), before);
    let r = pat.post("/portal/measure", &with);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("記録しました"));
    assert!(
        r.body.contains("mmHg") && r.body.contains("2026-12-01 152 mmHg"),
        "the reading is charted"
    );
    assert_eq!(count(&c, "admin", "Observation?patient=p1"), before + 1);
    let (_, b) = c.call("admin", "GET", "Observation?patient=p1&code=85354-9", None);
    let obs = &b["entry"][0]["resource"];
    assert_eq!(obs["performer"][0]["reference"], "Patient/p1");
    assert!(
        obs["meta"]["tag"]
            .to_string()
            .contains("urn:issho:record-origin")
    );
    assert_eq!(obs["effectiveDateTime"], "2026-12-01T08:30:00+09:00");
    let (_, b) = c.call(
        "admin",
        "GET",
        &format!(
            "Provenance?target=Observation/{}",
            obs["id"].as_str().unwrap()
        ),
        None,
    );
    assert!(
        b["entry"][0]["resource"]["agent"]
            .to_string()
            .contains("issho portal"),
        "{b}"
    );

    // Clinic B sees hospital A's HbA1c; the person refuses to share A's records; B sees less.
    let a1c = "Observation?patient=p1&code=4548-4";
    assert_eq!(count(&c, "doc-b", a1c), 3);
    let mut b_browser = Browser::new(&root);
    let page = b_browser.sign_in("doc-b");
    assert!(page.url.ends_with("/clinician"), "{}", page.url);
    let found = b_browser.post(
        "/clinician",
        &[("csrf", &csrf(&page.body)), ("name", "ヤマダ")],
    );
    assert!(found.body.contains("山田"), "{}", found.body);
    let opened = b_browser.post(
        "/clinician/open",
        &[("csrf", &csrf(&page.body)), ("patient", "p1")],
    );
    assert_eq!(opened.status, 200);
    assert!(
        opened.body.contains("HbA1c") && opened.body.contains("あおば病院"),
        "{}",
        opened.body
    );
    let portal = pat.get("/portal");
    let r = pat.post(
        "/portal/consent",
        &[
            ("csrf", &csrf(&portal.body)),
            ("organization", "Organization/org-a"),
            ("kind", "custodian"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("この医療機関の記録を、ほかの医療機関に共有しない")
    );
    assert_eq!(count(&c, "doc-b", a1c), 0);
    assert_eq!(count(&c, "doc-a", a1c), 3, "hospital A still sees its own");
    let again = b_browser.get("/clinician");
    assert!(!again.body.contains("7.3"), "B no longer sees A's results");

    // The emergency physician: not in care, breaks the glass with a reason.
    let mut er = Browser::new(&root);
    let page = er.sign_in("er");
    let found = er.post(
        "/clinician",
        &[("csrf", &csrf(&page.body)), ("member", "1234567")],
    );
    assert!(!found.body.contains("山田"), "not in care: not found");
    let page = er.post(
        "/clinician/open",
        &[("csrf", &csrf(&page.body)), ("patient", "p1")],
    );
    assert!(page.body.contains("bg-reason"), "{}", page.body);
    let opened = er.post(
        "/clinician/break-glass",
        &[("csrf", &csrf(&page.body)), ("reason", "意識不明で搬送")],
    );
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert!(opened.body.contains("緊急アクセスで開きました"));
    // Opening by the insurance card: only emergency physicians, with a reason, for a person
    // who exists.
    let page = er.get("/clinician");
    let tok = csrf(&page.body);
    for (who_form, want) in [
        (
            vec![
                ("member", "1234567"),
                ("birthdate", "1960-04-01"),
                ("reason", ""),
            ],
            400,
        ),
        (
            vec![
                ("member", "1234567"),
                ("birthdate", "1999-01-01"),
                ("reason", "搬送されたため"),
            ],
            404,
        ),
        (
            vec![
                ("member", "0000000"),
                ("birthdate", "1960-04-01"),
                ("reason", "搬送されたため"),
            ],
            404,
        ),
    ] {
        let mut f = who_form.clone();
        f.push(("csrf", &tok));
        let r = er.post("/clinician/emergency", &f);
        assert_eq!(r.status, want, "{who_form:?}: {}", r.body);
    }
    let page = b_browser.get("/clinician");
    let r = b_browser.post(
        "/clinician/emergency",
        &[
            ("csrf", &csrf(&page.body)),
            ("member", "7654321"),
            ("birthdate", "1960-04-01"),
            ("reason", "搬送されたため"),
        ],
    );
    assert_eq!(r.status, 403, "only emergency physicians");
    assert_eq!(count(&c, "doc-b", "Observation?patient=p2"), 0);
    let r = er.post(
        "/clinician/emergency",
        &[
            ("csrf", &tok),
            ("member", "7654321"),
            ("birthdate", "1960-04-01"),
            ("reason", "交通事故で搬送"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("佐藤"), "p2's record is open: {}", r.body);

    // The person sees it in the access log, marked; and clinic B's look.
    let portal = pat.get("/portal");
    assert!(
        portal.body.contains("class=\"glass\""),
        "break-the-glass marked"
    );
    assert!(portal.body.contains("doc-b") || portal.body.contains("org-b"));

    // The person at the clinician's pages: back to their portal; they open nobody's record.
    let r = pat.get("/clinician");
    assert!(r.url.ends_with("/portal"));
    // No patient data in any URL the browsers used or were sent to.
    // (The random values of a sign-in — code, state, challenge — are left out: they may hold
    // any letters.)
    let random = ["code=", "state=", "code_challenge="];
    for b in [&pat, &b_browser, &er] {
        for u in &b.urls {
            let (path, query) = u.split_once('?').unwrap_or((u, ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !random.iter().any(|r| kv.starts_with(r)))
                .collect();
            let u = format!("{path}?{}", kept.join("&"));
            for secret in ["p1", "1234567", "山田", "%E5%B1%B1"] {
                assert!(!u.contains(secret), "{u}");
            }
        }
    }
    // Download the record.
    let r = pat.get("/portal/download");
    assert_eq!(r.status, 200);
    let bundle: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert!(bundle["entry"].as_array().unwrap().len() > 5);

    // Sign out: the session ends.
    let portal = pat.get("/portal");
    let r = pat.post("/web/signout", &[("csrf", &csrf(&portal.body))]);
    assert_eq!(r.status, 200);
    assert!(!pat.cookies.contains_key("issho_session"));
    pat.cookies.insert("issho_session".into(), session);
    assert!(
        pat.get("/portal").url.contains("/auth/authorize?"),
        "the old session is gone"
    );
}

#[test]
fn device_exports_are_uploaded_once() {
    let c = setup();
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    let mut pat = Browser::new(&root);
    let portal = pat.sign_in("pat");
    let token = csrf(&portal.body);
    let before = count(&c, "admin", "Observation?patient=p1");
    // A scale and cuff's CSV: a weight and a blood pressure, then a weight; a row repeated.
    let csv = "測定日時,体重(kg),最高血圧,最低血圧,機器\n2026/11/30 07:10,58.9,131,84,HBP-9\n2026/12/01 07:05,58.7,,,HBP-9\n2026/12/01 07:05,58.7,,,HBP-9\n";
    let r = pat.upload("/portal/upload", &token, "omron.csv", csv);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("取り込みました。 (omron.csv)"),
        "{}",
        r.body
    );
    assert!(r.body.contains("2026-11-30 131 mmHg"), "charted");
    assert_eq!(count(&c, "admin", "Observation?patient=p1"), before + 3);
    // The same export again (and an overlapping one): nothing twice.
    let r = pat.upload("/portal/upload", &token, "omron.csv", csv);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&c, "admin", "Observation?patient=p1"), before + 3);
    let (_, b) = c.call("admin", "GET", "Observation?patient=p1&code=29463-7", None);
    assert_eq!(b["entry"][0]["resource"]["device"]["display"], "HBP-9");
    // An activity tracker's JSON, and FHIR NDJSON about the person.
    let json = r#"{"readings": [{"timestamp": "2026-12-01T23:59:00+09:00", "steps": 9012, "device": "band"}]}"#;
    assert_eq!(
        pat.upload("/portal/upload", &token, "band.json", json)
            .status,
        200
    );
    let ndjson = r#"{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}, "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-02T06:00:00+09:00", "valueQuantity": {"value": 36.4, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}}"#;
    assert_eq!(
        pat.upload("/portal/upload", &token, "t.ndjson", ndjson)
            .status,
        200
    );
    assert_eq!(count(&c, "admin", "Observation?patient=p1"), before + 5);
    // Refused, nothing written: another person's data, a file that is not a device export,
    // no form token, a clinician's upload.
    let theirs = ndjson.replace("Patient/p1", "Patient/p2");
    for (file, content) in [
        ("theirs.ndjson", theirs.as_str()),
        ("notes.txt", "hello"),
        ("half.csv", "date,systolic\n2026-12-01,120\n"),
    ] {
        let r = pat.upload("/portal/upload", &token, file, content);
        assert_eq!(r.status, 400, "{file}: {}", r.body);
    }
    let r = pat.upload("/portal/upload", "forged", "omron.csv", csv);
    assert_eq!(r.status, 403);
    assert_eq!(count(&c, "admin", "Observation?patient=p2"), 0);
    assert_eq!(count(&c, "admin", "Observation?patient=p1"), before + 5);
    let mut doc = Browser::new(&root);
    let page = doc.sign_in("doc-a");
    let r = doc.upload("/portal/upload", &csrf(&page.body), "omron.csv", csv);
    assert!(r.url.ends_with("/clinician"), "{}", r.url);
    assert_eq!(count(&c, "admin", "Observation?patient=p1"), before + 5);
}

#[test]
fn attacks_on_the_web_application_fail() {
    let c = setup();
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Open redirects through the language switch, tabs and all.
    for back in [
        "/%09/evil.example",
        "/%0d/evil.example",
        "//evil.example",
        "/portal/../x",
    ] {
        let r = http
            .get(format!("{root}/web/lang/ja?back={back}"))
            .send()
            .unwrap();
        assert_eq!(r.headers()["location"], "/", "{back}");
    }
    // Login CSRF: an attacker's own sign-in, stopped before its callback, handed to a victim.
    let mut attacker = Browser::new(&root);
    let login = attacker.get("/web/signin");
    // The sign-in page says in words what the application may do, and whose records.
    assert!(
        login
            .body
            .contains("あなた自身の記録のすべての種類の情報を見る")
            && login.body.contains("in your own record"),
        "{}",
        login.body
    );
    let mut fields = hidden_fields(&login.body);
    fields.push(("username".into(), "doc-b".into()));
    fields.push(("password".into(), "a long password".into()));
    fields.push(("decision".into(), "allow".into()));
    let form: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let r = http
        .post(format!("{root}/auth/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.join("&"))
        .send()
        .unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    assert!(callback.contains("/web/callback?code="), "{callback}");
    let mut victim = Browser::new(&root);
    let r = victim.get(&callback);
    assert_eq!(
        r.status, 400,
        "another browser's sign-in does not sign this one in"
    );
    assert!(!victim.cookies.contains_key("issho_session"));
    // Anonymous uploads are not read; a signed-in one that is not a form is refused cleanly.
    let huge = "-".repeat(100_000);
    let r = http
        .post(format!("{root}/portal/upload"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={huge}X"),
        )
        .body("-".repeat(1_000_000))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let mut pat = Browser::new(&root);
    let portal = pat.sign_in("pat");
    let token = csrf(&portal.body);
    for body in [
        "",
        "--b\r\n",
        "--b\r\nContent-Disposition: form-data\r\n\r\nx",
    ] {
        let cookie = format!("issho_session={}", pat.cookies["issho_session"]);
        let r = http
            .post(format!("{root}/portal/upload"))
            .header("cookie", cookie)
            .header("content-type", "multipart/form-data; boundary=b")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "no form token in {body:?}");
    }
    // Times that are not times.
    for at in [
        "2026-12-01T08:30:0",
        "2026-12-01T08:30:0é",
        "2026-13-01T08:30",
    ] {
        let r = pat.post(
            "/portal/measure",
            &[
                ("csrf", &token),
                ("kind", "weight"),
                ("value", "60"),
                ("at", at),
            ],
        );
        assert_eq!(r.status, 400, "{at}");
    }
    // A form from a page under no-referrer (Origin: null) or another site.
    for origin in ["null", "http://evil.example"] {
        let r = pat.send(
            "POST",
            "/portal/measure",
            Some(&[
                ("csrf", &token),
                ("kind", "weight"),
                ("value", "60"),
                ("at", "2026-12-01T08:30"),
            ]),
            Some(origin),
        );
        assert_eq!(r.status, 403, "{origin}");
    }
    // Another person's Consent is not one of this person's settings.
    let (st, theirs) = c.call(
        "admin",
        "POST",
        "Consent",
        Some(&json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p2"},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": {"type": "deny"}})),
    );
    assert_eq!(st, 201, "{theirs}");
    let id = theirs["id"].as_str().unwrap();
    let r = pat.post("/portal/consent", &[("csrf", &token), ("withdraw", id)]);
    assert!(r.status == 404 || r.status == 400, "{}", r.status);
    let (_, now) = c.call("admin", "GET", &format!("Consent/{id}"), None);
    assert_eq!(now["status"], "active");
    // An upload cannot pass the person's data off as a hospital's.
    let dressed = r#"{"resourceType": "Observation", "status": "final", "meta": {"source": "Organization/org-a"}, "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Organization/org-a"}], "effectiveDateTime": "2026-12-03T07:00:00+09:00", "valueQuantity": {"value": 180, "unit": "mg/dL"}}"#;
    let r = pat.upload("/portal/upload", &token, "fake.ndjson", dressed);
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, b) = c.call("admin", "GET", "Observation?patient=p1&code=2339-0", None);
    let o = &b["entry"][0]["resource"];
    assert!(o["meta"]["source"].is_null(), "{o}");
    assert_eq!(o["performer"][0]["reference"], "Patient/p1");
    // … nor through the FHIR API: a source is dropped, and a patch cannot add one.
    let (st, w) = c.call(
        "pat",
        "POST",
        "Observation",
        Some(&json!({"resourceType": "Observation", "status": "final",
            "meta": {"source": "Organization/org-a"}, "code": {"text": "体重"},
            "subject": {"reference": "Patient/p1"}})),
    );
    assert_eq!(st, 201, "{w}");
    assert!(w["meta"]["source"].is_null(), "{w}");
    let r =
        c.s.req(
            "PATCH",
            &format!("/Observation/{}", w["id"].as_str().unwrap()),
        )
        .bearer_auth(c.tok("pat"))
        .header("content-type", "application/json-patch+json")
        .body(
            json!([{"op": "add", "path": "/meta/source", "value": "Organization/org-a"}])
                .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // The emergency lookup takes a plain member ID and date, and one person only.
    let mut er = Browser::new(&root);
    let page = er.sign_in("er");
    let t = csrf(&page.body);
    for (member, birth) in [
        (format!("x,{MEMBER}|"), "1960-04-01"),
        ("1234567,7654321".to_string(), "1960-04-01"),
        ("1234567".to_string(), "1960-4-1xx"),
    ] {
        let r = er.post(
            "/clinician/emergency",
            &[
                ("csrf", &t),
                ("member", &member),
                ("birthdate", birth),
                ("reason", "搬送されたため"),
            ],
        );
        assert_eq!(r.status, 400, "{member} {birth}");
    }
    // Signing in again ends the browser's earlier session.
    let before = pat.cookies["issho_session"].clone();
    pat.sign_in("pat");
    let after = pat.cookies["issho_session"].clone();
    assert_ne!(before, after);
    pat.cookies.insert("issho_session".into(), before);
    assert!(pat.get("/portal").url.contains("/auth/authorize?"));
    // Answers that hold health data are not cached, redirects included.
    pat.cookies.insert("issho_session".into(), after.clone());
    let r = http
        .get(format!("{root}/portal/download"))
        .header("cookie", format!("issho_session={after}"))
        .send()
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = http
        .get(format!("{root}/portal"))
        .header("cookie", "issho_session=nope")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["cache-control"], "no-store");
}
