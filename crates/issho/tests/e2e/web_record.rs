//! The web application over HTTP, continued: the rate budget the pages share with `/fhir`,
//! the apps a person allowed (seen and withdrawn), care providers' write-back with its
//! warnings before signing and the pharmacist's dispensing, documents read as text, category
//! refusals, the record as NDJSON, the notice of an emergency opening, the clinician's list of
//! patients in care.

use crate::common::*;
use crate::web::{count, setup};
use crate::web_browser::{Browser, csrf, enc, hidden_fields};
use issho_access::Role;
use reqwest::blocking::Client;
use serde_json::{Value, json};

#[test]
fn the_pages_share_the_tokens_rate_limit() {
    let (s, auth) = Server::start_secure_limited(3);
    auth.put_user(
        &user("pat", Role::Patient, "patient/*.cruds", Some("p1"), None),
        "a long password",
    )
    .unwrap();
    let root = s.base.trim_end_matches("/fhir").to_string();
    let mut pat = Browser::new(&root);
    pat.sign_in("pat");
    let mut codes = Vec::new();
    for _ in 0..12 {
        let p = pat.get("/portal");
        if p.status == 429 {
            assert!(p.headers.contains_key("retry-after"));
        }
        codes.push(p.status);
    }
    assert!(codes.contains(&429), "{codes:?}");
}

#[test]
fn a_person_sees_and_withdraws_the_apps_they_allowed() {
    let (s, auth) = Server::start_secure();
    auth.put_user(
        &user(
            "pat",
            Role::Patient,
            "openid patient/*.cruds offline_access",
            Some("p1"),
            None,
        ),
        "a long password",
    )
    .unwrap();
    let admin = user("admin", Role::Administrator, "user/*.cruds", None, None);
    let admin_token = auth.issue_for_user(&admin, None).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .req("PUT", "Patient/p1")
        .bearer_auth(&admin_token)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "p1"}).to_string())
        .send()
        .unwrap();
    assert!(r.status().is_success());
    auth.put_client(&issho_auth::Client {
        id: "diary".into(),
        name: "けんこう日記".into(),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        scopes: "openid patient/*.rs offline_access".into(),
    })
    .unwrap();
    let root = s.base.trim_end_matches("/fhir").to_string();
    // The app signs the person in (authorization code with PKCE) and gets its tokens.
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let verifier = "a-verifier-of-the-diary-app-that-is-long-enough-0123456789";
    let form = [
        ("response_type", "code"),
        ("client_id", "diary"),
        ("redirect_uri", "http://127.0.0.1/callback"),
        ("scope", "openid patient/*.rs offline_access"),
        ("state", "s1"),
        ("aud", s.base.as_str()),
        ("code_challenge", &issho_auth::pkce_s256(verifier)),
        ("code_challenge_method", "S256"),
        ("username", "pat"),
        ("password", "a long password"),
        ("decision", "allow"),
    ];
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    let r = http
        .post(format!("{root}/auth/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let code = loc
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let tok: Value = serde_json::from_str(
        &http
            .post(format!("{root}/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=authorization_code&code={code}&client_id=diary&redirect_uri={}&code_verifier={verifier}",
                enc("http://127.0.0.1/callback")
            ))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    let read = |t: &str| {
        s.req("GET", "Patient/p1")
            .bearer_auth(t)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(read(&access), 200);
    // The person sees the app, and what it may do, in their portal; and withdraws it.
    let mut pat = Browser::new(&root);
    let portal = pat.sign_in("pat");
    assert!(portal.body.contains("けんこう日記"), "{}", portal.body);
    assert!(
        portal
            .body
            .contains("あなた自身の記録のすべての種類の情報を見る・探す")
    );
    let token = csrf(&portal.body);
    let r = pat.post("/portal/apps", &[("csrf", &token), ("client", "other-app")]);
    assert_eq!(r.status, 400);
    let r = pat.post("/portal/apps", &[("csrf", "forged"), ("client", "diary")]);
    assert_eq!(r.status, 403);
    assert_eq!(read(&access), 200, "a forged form withdraws nothing");
    let r = pat.post("/portal/apps", &[("csrf", &token), ("client", "diary")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("アプリの許可を取り消しました"));
    assert!(!r.body.contains("けんこう日記"));
    // Its access token and its refresh token no longer work.
    assert_eq!(read(&access), 401);
    let r = http
        .post(format!("{root}/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={refresh}&client_id=diary"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The web application itself is still signed in.
    assert_eq!(pat.get("/portal").status, 200);
}

#[test]
fn clinicians_write_back_and_see_warnings_before_signing() {
    let c = setup();
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    let mut doc = Browser::new(&root);
    let page = doc.sign_in("doc-a");
    let t = csrf(&page.body);
    let page = doc.post("/clinician/open", &[("csrf", &t), ("patient", "p1")]);
    assert!(page.body.contains("w-drug"), "the forms of a doctor");
    // A problem and an allergy to povidone-iodine (YJ 2260701…).
    let r = doc.post(
        "/clinician/record",
        &[
            ("csrf", &t),
            ("kind", "condition"),
            ("text", "高血圧症"),
            ("date", "2026-11-01"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("記録しました") && r.body.contains("高血圧症"),
        "{}",
        r.body
    );
    let r = doc.post(
        "/clinician/record",
        &[
            ("csrf", &t),
            ("kind", "allergy"),
            ("text", "ポビドンヨード"),
            ("yj", "2260701"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, b) = c.call("admin", "GET", "AllergyIntolerance?patient=p1", None);
    assert_eq!(
        b["entry"][0]["resource"]["meta"]["source"],
        "Organization/org-a"
    );
    // The prescription's check warns before signing; nothing is written until then.
    let rx = [
        ("csrf", t.as_str()),
        ("text", "イソジンガーグル液７％"),
        ("yj", "2260701Q1038"),
        ("dosage", "1日3回 うがい"),
    ];
    let check = doc.post("/clinician/prescribe", &rx);
    assert_eq!(check.status, 200, "{}", check.body);
    assert!(check.body.contains("class=\"warning\""), "{}", check.body);
    assert!(check.body.contains("アレルギー"), "{}", check.body);
    assert_eq!(count(&c, "admin", "MedicationRequest?patient=p1"), 0);
    let mut signed = rx.to_vec();
    signed.push(("sign", "1"));
    let r = doc.post("/clinician/prescribe", &signed);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("処方しました"));
    assert_eq!(count(&c, "admin", "MedicationRequest?patient=p1"), 1);
    // A medicine without a known conflict: no warning.
    let check = doc.post(
        "/clinician/prescribe",
        &[
            ("csrf", &t),
            ("text", "カロナール錠３００"),
            ("yj", "1141007F1063"),
        ],
    );
    assert!(!check.body.contains("class=\"warning\""), "{}", check.body);
    // Bad input: a YJ code that is not one, an empty text.
    for form in [
        vec![("csrf", t.as_str()), ("text", "x"), ("yj", "12'; DROP")],
        vec![("csrf", t.as_str()), ("text", "")],
    ] {
        assert_eq!(doc.post("/clinician/prescribe", &form).status, 400);
    }
    // The pharmacist at the same hospital records the dispensing of the prescription.
    let mut ph = Browser::new(&root);
    let page = ph.sign_in("pharm");
    let pt = csrf(&page.body);
    let page = ph.post("/clinician/open", &[("csrf", &pt), ("patient", "p1")]);
    assert!(page.body.contains("調剤を記録"), "{}", page.body);
    assert!(
        !page.body.contains("w-drug"),
        "a pharmacist does not prescribe"
    );
    let req = hidden_fields(&page.body)
        .into_iter()
        .find(|(k, _)| k == "request")
        .unwrap()
        .1;
    let r = ph.post("/clinician/dispense", &[("csrf", &pt), ("request", &req)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("調剤を記録しました"));
    assert_eq!(count(&c, "admin", "MedicationDispense?patient=p1"), 1);
    // The pharmacist may not prescribe or record problems (the gate says so).
    let r = ph.post(
        "/clinician/record",
        &[("csrf", &pt), ("kind", "condition"), ("text", "x")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // A clinician elsewhere writes nothing into a record not open to them.
    let mut er = Browser::new(&root);
    let page = er.sign_in("doc-b");
    let bt = csrf(&page.body);
    er.post("/clinician/open", &[("csrf", &bt), ("patient", "p2")]);
    let r = er.post(
        "/clinician/record",
        &[("csrf", &bt), ("kind", "condition"), ("text", "x")],
    );
    assert!(
        r.status == 403 || r.status == 404 || r.status == 400,
        "{}",
        r.status
    );
    assert_eq!(count(&c, "admin", "Condition?patient=p2"), 0);
    // A patient has no record open to write into.
    let mut pat = Browser::new(&root);
    let page = pat.sign_in("pat");
    let r = pat.post(
        "/clinician/record",
        &[
            ("csrf", &csrf(&page.body)),
            ("kind", "condition"),
            ("text", "x"),
        ],
    );
    assert!(r.url.ends_with("/portal"), "{}", r.url);
}

#[test]
fn documents_are_read_as_text_never_as_markup() {
    let c = setup();
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    let (_, b) = c.call("admin", "GET", "Observation?patient=p1&code=4548-4", None);
    let obs = b["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (id, patient) in [("doc-1", "p1"), ("doc-2", "p2")] {
        c.store_as(
            "admin",
            &json!({"resourceType": "Composition", "id": id, "status": "final",
                "type": {"coding": [{"system": "http://loinc.org", "code": "57133-1"}]},
                "subject": {"reference": format!("Patient/{patient}")},
                "date": "2026-10-01T10:00:00+09:00", "author": [{"reference": "Organization/org-a"}],
                "custodian": {"reference": "Organization/org-a"},
                "title": "診療情報提供書",
                "section": [{"title": "紹介目的",
                    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>血糖管理の<b>ご依頼</b></p></div>"},
                    "section": [{"title": "検査結果", "entry": [{"reference": format!("Observation/{obs}")}]}]}]}),
        );
    }
    let mut pat = Browser::new(&root);
    let portal = pat.sign_in("pat");
    assert!(portal.body.contains("診療情報提供書"), "listed");
    let t = csrf(&portal.body);
    let page = pat.post("/portal/document", &[("csrf", &t), ("id", "doc-1")]);
    assert_eq!(page.status, 200, "{}", page.body);
    for want in [
        "紹介目的",
        "血糖管理の ご依頼",
        "検査結果",
        "HbA1c",
        "あおば病院",
    ] {
        assert!(page.body.contains(want), "{want}: {}", page.body);
    }
    assert!(!page.body.contains("<b>"), "no markup of the sender's");
    // Another person's document is not found; neither is one that does not exist.
    for id in ["doc-2", "nope"] {
        let r = pat.post("/portal/document", &[("csrf", &t), ("id", id)]);
        assert_eq!(r.status, 404, "{id}");
        assert!(!r.body.contains("佐藤"));
    }
}

#[test]
fn categories_downloads_notices_and_the_clinicians_lists() {
    let c = setup();
    let root = c.s.base.trim_end_matches("/fhir").to_string();
    const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    // Hospital A records a psychiatric diagnosis (labelled PSY) and a referral letter.
    let (st, b) = c.call(
        "doc-a",
        "POST",
        "Condition",
        Some(&json!({"resourceType": "Condition", "meta": {"security": [{"system": ACT, "code": "PSY"}]},
            "code": {"text": "うつ病"}, "subject": {"reference": "Patient/p1"}})),
    );
    assert_eq!(st, 201, "{b}");
    c.store_as(
        "admin",
        &json!({"resourceType": "Composition", "id": "letter", "status": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "57133-1"}]},
            "subject": {"reference": "Patient/p1"}, "date": "2026-10-01",
            "author": [{"reference": "Organization/org-a"}], "title": "診療情報提供書",
            "section": [{"title": "紹介目的", "text": {"status": "generated",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">ご高診ください</div>"}}]}),
    );
    assert_eq!(
        count(&c, "doc-b", "Condition?patient=p1&code:text=うつ病"),
        1
    );
    // The person refuses psychiatric records to everyone; clinic B no longer sees it.
    let mut pat = Browser::new(&root);
    let portal = pat.sign_in("pat");
    let t = csrf(&portal.body);
    assert_eq!(
        pat.post("/portal/consent", &[("csrf", &t), ("label", "XYZ")])
            .status,
        400
    );
    let r = pat.post("/portal/consent", &[("csrf", &t), ("label", "PSY")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("精神科の記録"), "listed among the settings");
    assert_eq!(
        count(&c, "doc-b", "Condition?patient=p1&code:text=うつ病"),
        0
    );
    // The agreement to share (what a share-after-consent deployment waits for).
    let r = pat.post("/portal/consent", &[("csrf", &t), ("agree", "1")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("共有に同意しています"));
    let (_, b) = c.call("admin", "GET", "Consent?patient=p1&_count=50", None);
    assert!(
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["provision"]["type"] == "permit"
                && e["resource"]["provision"]["provision"].is_null()),
        "{b}"
    );
    assert_eq!(
        count(&c, "doc-b", "Condition?patient=p1&code:text=うつ病"),
        0,
        "agreeing to share keeps what was refused refused"
    );
    // An entry that names no institution of its own is its Patient's institution's.
    let (_, p1) = c.call("admin", "GET", "Patient/p1", None);
    let mut p1 = p1;
    p1["managingOrganization"] = json!({"reference": "Organization/org-b"});
    c.store_as("admin", &p1);
    c.store_as(
        "admin",
        &json!({"resourceType": "Observation", "id": "height", "status": "final",
            "code": {"text": "身長測定"}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-20"}),
    );
    let portal = pat.get("/portal");
    let row = portal
        .body
        .lines()
        .find(|l| l.contains("身長測定"))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains("さくら診療所"), "{row}");
    // The record as NDJSON: one resource per line.
    let r = pat.get("/portal/download?format=ndjson");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/fhir+ndjson");
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 5 && lines.iter().all(|l| l["resourceType"].is_string()));
    // A clinician's institution's patients, listed; the record's documents readable there.
    let mut doc = Browser::new(&root);
    let page = doc.sign_in("doc-a");
    assert!(
        page.body.contains("診ている患者さん") && page.body.contains("山田"),
        "{}",
        page.body
    );
    let dt = csrf(&page.body);
    let page = doc.post("/clinician/open", &[("csrf", &dt), ("patient", "p1")]);
    assert!(page.body.contains("診療情報提供書"), "{}", page.body);
    let letter = doc.post("/clinician/document", &[("csrf", &dt), ("id", "letter")]);
    assert_eq!(letter.status, 200, "{}", letter.body);
    assert!(letter.body.contains("ご高診ください"));
    // Nobody in the emergency physician's care.
    let mut er = Browser::new(&root);
    let page = er.sign_in("er");
    assert!(!page.body.contains("山田"));
    // An emergency opening is told to the person at the top of their portal.
    let et = csrf(&page.body);
    let r = er.post(
        "/clinician/emergency",
        &[
            ("csrf", &et),
            ("member", "1234567"),
            ("birthdate", "1960-04-01"),
            ("reason", "意識不明で搬送"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let portal = pat.get("/portal");
    assert!(portal.body.contains("お知らせ"), "{}", portal.body);
    assert!(portal.body.contains("意識不明で搬送"));
}
