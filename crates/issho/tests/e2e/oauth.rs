//! SMART App Launch 2.0 standalone launch against the built-in authorization server, over
//! HTTP: discovery, the sign-in page, authorization code with PKCE, the token response, using
//! the token, refresh, revocation, introspection, and the ways it must refuse; then the real
//! Python `fhirclient` (PyPI) doing the same launch unmodified.

use crate::common::*;
use issho_access::Role;
use issho_auth::{Client as App, User};
use serde_json::Value;

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/callback";

pub(crate) fn setup() -> (Server, std::sync::Arc<issho_auth::Auth>) {
    let (s, auth) = Server::start_secure();
    auth.put_client(&App {
        id: "app".into(),
        name: "テストアプリ".into(),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        scopes: "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs".into(),
    })
    .unwrap();
    auth.put_user(
        &User {
            name: "hanako".into(),
            role: Role::Patient,
            patient: Some("p1".into()),
            organization: None,
            fhir_user: Some("Patient/p1".into()),
            scopes: "openid fhirUser launch/patient offline_access patient/*.cruds".into(),
            display: "花子".into(),
        },
        "correct horse battery",
    )
    .unwrap();
    auth.put_user(
        &User {
            name: "admin".into(),
            role: Role::Administrator,
            patient: None,
            organization: None,
            fhir_user: None,
            scopes: "user/*.cruds".into(),
            display: "admin".into(),
        },
        "correct horse battery",
    )
    .unwrap();
    let admin = auth
        .issue_for_user(&auth.user("admin").unwrap().unwrap(), None)
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for (id, fam) in [("p1", "佐藤"), ("p2", "鈴木")] {
        let r = s
            .req("PUT", &format!("Patient/{id}"))
            .bearer_auth(&admin)
            .header("content-type", "application/fhir+json")
            .body(format!(
                r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"{fam}"}}]}}"#
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    (s, auth)
}

pub(crate) fn root(s: &Server) -> String {
    s.base.trim_end_matches("/fhir").to_string()
}

pub(crate) fn no_redirect() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn pkce() -> (String, String) {
    let verifier = "a-sufficiently-long-code-verifier-0123456789-abcdefghijklmnop".to_string();
    (issho_auth::pkce_s256(&verifier), verifier)
}

pub(crate) fn enc(s: &str) -> String {
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

/// Sign in through the form; returns the redirect location.
fn sign_in(s: &Server, scope: &str, challenge: &str, user: &str, password: &str) -> (u16, String) {
    let form = format!(
        "response_type=code&client_id=app&redirect_uri={}&scope={}&state=st8&aud={}&code_challenge={challenge}&code_challenge_method=S256&username={user}&password={}",
        enc(REDIRECT),
        enc(scope),
        enc(&s.base),
        enc(password)
    );
    let r = no_redirect()
        .post(format!("{}/auth/authorize", root(s)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, loc)
}

pub(crate) fn query_param(url: &str, k: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    issho_engine::parse_query(q)
        .into_iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v)
}

pub(crate) fn token_request(s: &Server, body: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/auth/token", root(s)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .unwrap();
    let st = r.status().as_u16();
    (st, json(r))
}

#[test]
fn standalone_launch_with_pkce() {
    let (s, _auth) = setup();
    // Discovery.
    let conf = json(s.get(".well-known/smart-configuration"));
    assert_eq!(conf["token_endpoint"], format!("{}/auth/token", root(&s)));
    assert!(
        conf["code_challenge_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"S256".into())
    );
    let cs = json(s.get("metadata"));
    assert_eq!(
        cs["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
    // The sign-in page (Japanese and English), with the request carried along.
    let (challenge, verifier) = pkce();
    let url = format!(
        "{}/auth/authorize?response_type=code&client_id=app&redirect_uri={}&scope={}&state=st8&aud={}&code_challenge={challenge}&code_challenge_method=S256",
        root(&s),
        enc(REDIRECT),
        enc("launch/patient patient/*.rs offline_access"),
        enc(&s.base)
    );
    let page = reqwest::blocking::get(&url).unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(
        html.contains("サインイン") && html.contains("Sign in") && html.contains("テストアプリ")
    );
    // A wrong password: the page again, no code.
    let (st, loc) = sign_in(
        &s,
        "launch/patient patient/*.rs offline_access",
        &challenge,
        "hanako",
        "wrong",
    );
    assert_eq!(st, 401);
    assert!(loc.is_empty());
    // The right one: a code at the registered redirect URI, with the state.
    let (st, loc) = sign_in(
        &s,
        "launch/patient patient/*.rs offline_access",
        &challenge,
        "hanako",
        "correct horse battery",
    );
    assert_eq!(st, 302);
    assert!(loc.starts_with(REDIRECT), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st8"));
    let code = query_param(&loc, "code").unwrap();
    // A wrong verifier is refused (and spends the code).
    let (st, e) = token_request(
        &s,
        &format!(
            "grant_type=authorization_code&code={}&client_id=app&redirect_uri={}&code_verifier=wrong",
            enc(&code),
            enc(REDIRECT)
        ),
    );
    assert_eq!(st, 400);
    assert_eq!(e["error"], "invalid_grant");
    let (st, _) = token_request(
        &s,
        &format!(
            "grant_type=authorization_code&code={}&client_id=app&redirect_uri={}&code_verifier={verifier}",
            enc(&code),
            enc(REDIRECT)
        ),
    );
    assert_eq!(st, 400, "a code is used once");
    // A fresh code, exchanged properly.
    let (_, loc) = sign_in(
        &s,
        "launch/patient patient/*.rs offline_access",
        &challenge,
        "hanako",
        "correct horse battery",
    );
    let code = query_param(&loc, "code").unwrap();
    let (st, tok) = token_request(
        &s,
        &format!(
            "grant_type=authorization_code&code={}&client_id=app&redirect_uri={}&code_verifier={verifier}",
            enc(&code),
            enc(REDIRECT)
        ),
    );
    assert_eq!(st, 200, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["patient"], "p1");
    assert_eq!(tok["scope"], "launch/patient offline_access patient/*.rs");
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    // The token works, within the patient's reach.
    let r = s
        .req("GET", "Patient/p1")
        .bearer_auth(&access)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .req("GET", "Patient/p2")
        .bearer_auth(&access)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .req("PUT", "Patient/p1")
        .bearer_auth(&access)
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient","id":"p1"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "read-only scopes were granted");
    // Introspection.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/auth/introspect", root(&s)))
        .bearer_auth(&access)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", enc(&access)))
        .send()
        .unwrap();
    let i = json(r);
    assert_eq!(i["active"], true);
    assert_eq!(i["patient"], "p1");
    // Refresh: a new pair; the old refresh token is spent.
    let (st, tok2) = token_request(
        &s,
        &format!(
            "grant_type=refresh_token&refresh_token={}&client_id=app",
            enc(&refresh)
        ),
    );
    assert_eq!(st, 200, "{tok2}");
    let (st, _) = token_request(
        &s,
        &format!(
            "grant_type=refresh_token&refresh_token={}&client_id=app",
            enc(&refresh)
        ),
    );
    assert_eq!(st, 400);
    // Revocation by the app it was issued to takes effect on the next request.
    let access2 = tok2["access_token"].as_str().unwrap().to_string();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/auth/revoke", root(&s)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}&client_id=app", enc(&access2)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .req("GET", "Patient/p1")
        .bearer_auth(&access2)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn authorization_requests_that_must_be_refused() {
    let (s, _) = setup();
    let (challenge, _) = pkce();
    let base = |extra: &str| {
        format!(
            "{}/auth/authorize?response_type=code&client_id=app&scope=patient%2F*.rs&state=x&aud={}&code_challenge={challenge}&code_challenge_method=S256{extra}",
            root(&s),
            enc(&s.base)
        )
    };
    let get = |url: &str| no_redirect().get(url).send().unwrap();
    // Unknown client or unregistered redirect: an error page, never a redirect.
    let r = get(&base(&format!("&redirect_uri={}", enc(REDIRECT)))
        .replace("client_id=app", "client_id=nope"));
    assert_eq!(r.status(), 400);
    let r = get(&base(&format!(
        "&redirect_uri={}",
        enc("https://evil.example/cb")
    )));
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // Loopback redirects match on any port.
    let r = get(&base(&format!(
        "&redirect_uri={}",
        enc("http://127.0.0.1:54321/callback")
    )));
    assert_eq!(r.status(), 200);
    // Missing PKCE, another audience: redirected back with an error.
    let r = get(&base(&format!("&redirect_uri={}", enc(REDIRECT))).replace(
        "&code_challenge_method=S256",
        "&code_challenge_method=plain",
    ));
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );
    let r = get(&base(&format!("&redirect_uri={}", enc(REDIRECT)))
        .replace(&enc(&s.base), &enc("https://other.example/fhir")));
    assert_eq!(r.status(), 302);
    // Scopes the client may not have are not granted.
    let (_, loc) = sign_in(
        &s,
        "patient/*.cruds",
        &challenge,
        "hanako",
        "correct horse battery",
    );
    assert!(query_param(&loc, "code").is_some());
    // Unsupported grant types.
    let (st, e) = token_request(
        &s,
        "grant_type=password&username=hanako&password=x&client_id=app",
    );
    assert_eq!(st, 400);
    assert_eq!(e["error"], "unsupported_grant_type");
}

/// The Python SMART client (fhirclient, unmodified) launches against the server: discovery
/// through the CapabilityStatement, the sign-in form, the PKCE code exchange, then reads.
#[test]
fn python_fhirclient_launches() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let have = |py_path: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(&python);
        c.args(["-c", "import fhirclient, requests"]);
        if let Some(p) = py_path {
            c.env("PYTHONPATH", p);
        }
        c.output().map(|o| o.status.success()).unwrap_or(false)
    };
    // fhirclient from PyPI, installed beside the build when it is not installed already.
    let site = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pylib");
    let py_path = if have(None) {
        None
    } else {
        if !have(Some(&site)) {
            let _ = std::process::Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--target"])
                .arg(&site)
                .args(["fhirclient==4.4.0", "requests"])
                .status();
        }
        if !have(Some(&site)) {
            println!("SKIPPED: python fhirclient is not installed and could not be installed");
            return;
        }
        Some(site.as_path())
    };
    let (s, _) = setup();
    let script = r#"
import sys, re, html, requests
from urllib.parse import urljoin
from fhirclient import client
from fhirclient.models.patient import Patient

base, redirect = sys.argv[1], sys.argv[2]
smart = client.FHIRClient(settings={
    'app_id': 'app', 'api_base': base, 'redirect_uri': redirect,
    'scope': 'openid fhirUser patient/*.rs offline_access',
})
url = smart.authorize_url
# The user's browser: the sign-in page, then the form.
page = requests.get(url)
assert page.status_code == 200, page.status_code
fields = dict((m.group(1), html.unescape(m.group(2))) for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
fields.update({'username': 'hanako', 'password': 'correct horse battery', 'decision': 'allow'})
resp = requests.post(urljoin(url, action), data=fields, allow_redirects=False)
assert resp.status_code == 302, (resp.status_code, resp.text[:300])
smart.handle_callback(resp.headers['Location'])
assert smart.ready, 'not ready'
assert smart.patient_id == 'p1', smart.patient_id
p = Patient.read('p1', smart.server)
print('patient', p.id, p.name[0].family)
try:
    Patient.read('p2', smart.server)
    print('LEAK')
except Exception as e:
    print('p2 refused')
"#;
    let mut cmd = std::process::Command::new(&python);
    cmd.args(["-c", script, &s.base, REDIRECT]);
    if let Some(p) = py_path {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fhirclient failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("patient p1 佐藤"), "{stdout}");
    assert!(
        stdout.contains("p2 refused") && !stdout.contains("LEAK"),
        "{stdout}"
    );
    println!(
        "python fhirclient 4.4.0: standalone launch with PKCE, read own record, other refused"
    );
}

/// SMART Backend Services: client credentials with a `private_key_jwt` assertion.
#[test]
fn backend_service_client_credentials() {
    let (s, auth) = setup();
    let (der, jwk) = issho_auth::new_es256_client_key("lab-1").unwrap();
    auth.put_service(
        "lab",
        "検査システム",
        &serde_json::json!({"keys": [jwk]}),
        "system/*.rs",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let endpoint = format!("{}/auth/token", root(&s));
    let assertion = |jti: &str| {
        issho_auth::sign_es256(
            &der,
            "lab-1",
            &serde_json::json!({"iss": "lab", "sub": "lab", "aud": endpoint, "exp": now + 240, "jti": jti}),
        )
        .unwrap()
    };
    let body = |a: &str| {
        format!(
            "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={a}",
            enc("system/*.rs"),
            enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        )
    };
    let (st, tok) = token_request(&s, &body(&assertion("a1")));
    assert_eq!(st, 200, "{tok}");
    assert_eq!(tok["scope"], "system/*.rs");
    let access = tok["access_token"].as_str().unwrap();
    let b = json(
        s.req("GET", "Patient?_count=10")
            .bearer_auth(access)
            .send()
            .unwrap(),
    );
    assert_eq!(
        b["entry"].as_array().unwrap().len(),
        2,
        "a backend service reads every record"
    );
    let r = s
        .req("DELETE", "Patient/p1")
        .bearer_auth(access)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "read-only system scope");
    // The same assertion again is a replay: the client is not authenticated (RFC 7523 §3.2).
    let (st, e) = token_request(&s, &body(&assertion("a1")));
    assert_eq!(st, 401);
    assert_eq!(e["error"], "invalid_client");
}

/// Browser apps: CORS preflight and headers; security headers on every response.
#[test]
fn cors_and_security_headers() {
    let (s, _) = setup();
    let r = s
        .req("OPTIONS", "Patient")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let r = s
        .req("GET", "metadata")
        .header("origin", "https://app.example")
        .send()
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let cs = json(r);
    assert_eq!(cs["rest"][0]["security"]["cors"], true);
}

/// RFC 7591 registration by an administrator; refused to anyone else.
#[test]
fn client_registration_api() {
    let (s, auth) = setup();
    let admin = auth
        .issue_for_user(&auth.user("admin").unwrap().unwrap(), None)
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let patient = auth
        .issue_for_user(&auth.user("hanako").unwrap().unwrap(), None)
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let reg = |tok: Option<&str>, body: &serde_json::Value| {
        let mut r = reqwest::blocking::Client::new()
            .post(format!("{}/auth/register", root(&s)))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), json(r))
    };
    let app = serde_json::json!({"client_name": "健康手帳アプリ", "redirect_uris": ["http://127.0.0.1/cb"],
        "scope": "openid launch/patient patient/*.rs"});
    assert_eq!(reg(None, &app).0, 401);
    assert_eq!(reg(Some(&patient), &app).0, 401);
    let (st, out) = reg(Some(&admin), &app);
    assert_eq!(st, 201, "{out}");
    let id = out["client_id"].as_str().unwrap();
    assert_eq!(auth.client(id).unwrap().unwrap().name, "健康手帳アプリ");
    let (st, _) = reg(Some(&admin), &serde_json::json!({"client_name": "x"}));
    assert_eq!(st, 400);
    let (_, jwk) = issho_auth::new_es256_client_key("k").unwrap();
    let (st, svc) = reg(
        Some(&admin),
        &serde_json::json!({"client_name": "lab", "jwks": {"keys": [jwk]}, "scope": "system/*.rs"}),
    );
    assert_eq!(st, 201, "{svc}");
    assert_eq!(svc["token_endpoint_auth_method"], "private_key_jwt");
}

/// EHR launch: the clinician's EHR makes a launch context on a patient in their care; the app
/// signs the clinician in with `launch` and gets that patient in context, and nothing beyond.
#[test]
fn ehr_launch() {
    let (s, auth) = setup();
    auth.put_client(&App {
        id: "ehr-app".into(),
        name: "EHR app".into(),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        scopes: "openid fhirUser launch patient/*.rs".into(),
    })
    .unwrap();
    auth.put_user(
        &User {
            name: "doc".into(),
            role: Role::Physician,
            patient: None,
            organization: Some("Organization/org-a".into()),
            fhir_user: None,
            scopes: "openid fhirUser launch patient/*.rs user/*.rs".into(),
            display: "doc".into(),
        },
        "correct horse battery",
    )
    .unwrap();
    let tok = |name: &str| {
        auth.issue_for_user(&auth.user(name).unwrap().unwrap(), None)
            .unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let admin = tok("admin");
    let r = s
        .req("PUT", "Encounter/e1")
        .bearer_auth(&admin)
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"},"serviceProvider":{"reference":"Organization/org-a"}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let doc = tok("doc");
    let launch = |patient: &str| {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/auth/launch", root(&s)))
            .bearer_auth(&doc)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("patient={patient}"))
            .send()
            .unwrap();
        (r.status().as_u16(), json(r))
    };
    // Only for a patient in the clinician's care.
    assert_eq!(launch("p2").0, 403);
    let (st, l) = launch("p1");
    assert_eq!(st, 200, "{l}");
    let launch_token = l["launch"].as_str().unwrap().to_string();
    let (challenge, verifier) = pkce();
    let form = format!(
        "response_type=code&client_id=ehr-app&redirect_uri={}&scope={}&state=s1&aud={}&code_challenge={challenge}&code_challenge_method=S256&launch={}&username=doc&password={}",
        enc(REDIRECT),
        enc("launch patient/*.rs"),
        enc(&s.base),
        enc(&launch_token),
        enc("correct horse battery")
    );
    let r = no_redirect()
        .post(format!("{}/auth/authorize", root(&s)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let code = query_param(&loc, "code").unwrap();
    let (st, t) = token_request(
        &s,
        &format!(
            "grant_type=authorization_code&code={}&client_id=ehr-app&redirect_uri={}&code_verifier={verifier}",
            enc(&code),
            enc(REDIRECT)
        ),
    );
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["patient"], "p1");
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(
        s.req("GET", "Patient/p1")
            .bearer_auth(access)
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.req("GET", "Patient/p2")
            .bearer_auth(access)
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        s.req("GET", "Encounter?_summary=count")
            .bearer_auth(access)
            .send()
            .map(json)
            .unwrap()["total"],
        1
    );
    // Someone else cannot use the doctor's launch.
    let (challenge2, _) = pkce();
    let stolen = form.replace("username=doc", "username=hanako").replace(
        &format!("code_challenge={challenge}"),
        &format!("code_challenge={challenge2}"),
    );
    let r = no_redirect()
        .post(format!("{}/auth/authorize", root(&s)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(stolen)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Rate limits per caller: a burst of twice the rate, then 429 with Retry-After and an
/// OperationOutcome; other callers are not affected.
#[test]
fn rate_limit_per_caller() {
    let s = Server::start_with(|c| c.rate_limit = Some(5));
    let mut codes = Vec::new();
    for _ in 0..15 {
        let r = s
            .req("GET", "metadata")
            .bearer_auth("caller-one")
            .send()
            .unwrap();
        codes.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let o = json(r);
            assert_eq!(o["issue"][0]["code"], "throttled");
        }
    }
    assert!(codes[..10].iter().all(|c| *c == 200), "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    let r = s
        .req("GET", "metadata")
        .bearer_auth("caller-two")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
