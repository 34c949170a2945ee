//! Token defects of the built-in authorization server, over HTTP: `nbf`, refresh tokens and
//! codes presented by another client, revocation and introspection by whom, the OpenID
//! Connect `id_token`, repeated scopes and `launch/patient` without a patient.

use crate::common::*;
use crate::oauth::{REDIRECT, enc, no_redirect, pkce, query_param, root, setup, token_request};
use issho_access::Role;
use issho_auth::{Auth, Client as App, User};
use serde_json::{Value, json};
use std::sync::Arc;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The OAuth test server plus a second app (`other`, allowed `launch`), a physician (`doc`,
/// no patient of their own) and a backend service (`lab`); returns the service's key.
fn setup_more() -> (Server, Arc<Auth>, Vec<u8>) {
    let (s, auth) = setup();
    auth.put_client(&App {
        id: "other".into(),
        name: "other app".into(),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        scopes: "openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs"
            .into(),
    })
    .unwrap();
    auth.put_user(
        &User {
            name: "doc".into(),
            role: Role::Physician,
            patient: None,
            organization: Some("Organization/org-a".into()),
            fhir_user: Some("Practitioner/d1".into()),
            scopes: "openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs"
                .into(),
            display: "doc".into(),
        },
        "correct horse battery",
    )
    .unwrap();
    let (der, jwk) = issho_auth::new_es256_client_key("lab-1").unwrap();
    auth.put_service("lab", "lab", &json!({"keys": [jwk]}), "system/*.rs")
        .unwrap();
    (s, auth, der)
}

/// Sign `user` in through `client` with `scope` (and `extra` parameters such as a nonce);
/// returns the authorization code.
fn code(s: &Server, client: &str, scope: &str, user: &str, extra: &str) -> String {
    let (challenge, _) = pkce();
    let form = format!(
        "response_type=code&client_id={client}&redirect_uri={}&scope={}&state=st&aud={}&code_challenge={challenge}&code_challenge_method=S256&username={user}&password={}{extra}",
        enc(REDIRECT),
        enc(scope),
        enc(&s.base),
        enc("correct horse battery")
    );
    let r = no_redirect()
        .post(format!("{}/auth/authorize", root(s)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().unwrap_or_default());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    query_param(&loc, "code").unwrap_or_else(|| panic!("no code: {loc}"))
}

fn exchange(s: &Server, client: &str, code: &str) -> (u16, Value) {
    let (_, verifier) = pkce();
    token_request(
        s,
        &format!(
            "grant_type=authorization_code&code={}&client_id={client}&redirect_uri={}&code_verifier={verifier}",
            enc(code),
            enc(REDIRECT)
        ),
    )
}

/// A token response for `user` through `client` (asserting success).
fn tokens(s: &Server, client: &str, scope: &str, user: &str, extra: &str) -> Value {
    let (st, t) = exchange(s, client, &code(s, client, scope, user, extra));
    assert_eq!(st, 200, "{t}");
    t
}

fn refresh(s: &Server, client: Option<&str>, refresh_token: &str) -> (u16, Value) {
    let client = client
        .map(|c| format!("&client_id={c}"))
        .unwrap_or_default();
    token_request(
        s,
        &format!(
            "grant_type=refresh_token&refresh_token={}{client}",
            enc(refresh_token)
        ),
    )
}

fn form_post(s: &Server, path: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("{}{path}", root(s)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let r = r.send().unwrap();
    let st = r.status().as_u16();
    let text = r.text().unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The status of a search with `token`: 200 while it is valid, 401 once it is not.
fn status_with(s: &Server, token: &str) -> u16 {
    s.req("GET", "Patient?_count=1")
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// A `private_key_jwt` client assertion of the `lab` service.
fn assertion(s: &Server, der: &[u8], jti: &str, extra: Value) -> String {
    let mut claims = json!({"iss": "lab", "sub": "lab", "aud": format!("{}/auth/token", root(s)),
        "exp": now() + 240, "jti": jti});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issho_auth::sign_es256(der, "lab-1", &claims).unwrap()
}

fn service_token(s: &Server, der: &[u8], jti: &str) -> String {
    let (st, t) = token_request(
        s,
        &format!(
            "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={}",
            enc("system/*.rs"),
            enc(JWT_BEARER),
            assertion(s, der, jti, json!({}))
        ),
    );
    assert_eq!(st, 200, "{t}");
    t["access_token"].as_str().unwrap().to_string()
}

#[test]
fn not_before_in_the_future_is_refused() {
    let (s, auth, _) = setup_more();
    let token = |nbf: i64| {
        auth.sign_raw(
            &json!({"iss": auth.issuer(), "sub": "hanako", "aud": auth.issuer(),
            "iat": now(), "nbf": nbf, "exp": now() + 7200, "jti": format!("nbf-{nbf}"),
            "scope": "patient/*.rs", "role": "patient", "patient": "p1"}),
        )
        .unwrap()
    };
    assert_eq!(status_with(&s, &token(now() + 3600)), 401, "nbf in an hour");
    assert_eq!(
        status_with(&s, &token(now() + 30)),
        200,
        "within the clock skew"
    );
    assert_eq!(status_with(&s, &token(now() - 10)), 200);
}

#[test]
fn client_assertions_not_valid_yet_are_refused() {
    let (s, _, der) = setup_more();
    let (st, e) = token_request(
        &s,
        &format!(
            "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={}",
            enc("system/*.rs"),
            enc(JWT_BEARER),
            assertion(&s, &der, "early", json!({"nbf": now() + 3600}))
        ),
    );
    assert_eq!(
        (st, e["error"].as_str()),
        (401, Some("invalid_client")),
        "{e}"
    );
}

#[test]
fn refresh_by_another_client_leaves_the_token_to_its_client() {
    let (s, _, _) = setup_more();
    let t = tokens(&s, "app", "patient/*.rs offline_access", "hanako", "");
    let rt = t["refresh_token"].as_str().unwrap();
    let (st, e) = refresh(&s, Some("other"), rt);
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    assert!(e["error_description"].is_string());
    let (st, e) = refresh(&s, None, rt);
    assert_eq!(st, 400, "{e}");
    let (st, t2) = refresh(&s, Some("app"), rt);
    assert_eq!(st, 200, "the rightful client still refreshes: {t2}");
    // Rotated: the old one is spent now.
    assert_eq!(refresh(&s, Some("app"), rt).0, 400);
}

#[test]
fn a_code_presented_by_another_client_stays_with_its_client() {
    let (s, _, _) = setup_more();
    let c = code(&s, "app", "patient/*.rs", "hanako", "");
    let (st, e) = exchange(&s, "other", &c);
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    let (st, t) = exchange(&s, "app", &c);
    assert_eq!(st, 200, "{t}");
    assert_eq!(exchange(&s, "app", &c).0, 400, "used once");
}

#[test]
fn revocation_needs_the_client_the_token_was_issued_to() {
    let (s, auth, der) = setup_more();
    let t = tokens(&s, "app", "patient/*.rs offline_access", "hanako", "");
    let access = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    let revoke = |body: String| form_post(&s, "/auth/revoke", None, &body);
    // Nobody: refused, and the token keeps working.
    let (st, e) = revoke(format!("token={}", enc(access)));
    assert_eq!(
        (st, e["error"].as_str()),
        (401, Some("invalid_client")),
        "{e}"
    );
    assert_eq!(status_with(&s, access), 200);
    let (st, e) = revoke(format!("token={}&client_id=nobody", enc(access)));
    assert_eq!(
        (st, e["error"].as_str()),
        (401, Some("invalid_client")),
        "{e}"
    );
    // Another client: answered 200 (RFC 7009 §2.2), nothing revoked.
    assert_eq!(
        revoke(format!("token={}&client_id=other", enc(access))).0,
        200
    );
    assert_eq!(status_with(&s, access), 200);
    assert_eq!(revoke(format!("token={}&client_id=other", enc(rt))).0, 200);
    // A confidential client must authenticate: its client_id alone is not enough.
    let (st, _) = revoke(format!("token={}&client_id=lab", enc(access)));
    assert_eq!(st, 401);
    assert_eq!(status_with(&s, access), 200);
    // No token.
    let (st, e) = revoke("client_id=app".into());
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    // The rightful client.
    assert_eq!(
        revoke(format!("token={}&client_id=app", enc(access))).0,
        200
    );
    assert_eq!(status_with(&s, access), 401);
    let (st, t2) = refresh(&s, Some("app"), rt);
    assert_eq!(st, 200, "the refresh token survived the other client: {t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap();
    assert_eq!(
        revoke(format!(
            "token={}&client_id=app&token_type_hint=refresh_token",
            enc(rt2)
        ))
        .0,
        200
    );
    assert_eq!(refresh(&s, Some("app"), rt2).0, 400);
    // A backend service revokes its own token with a client assertion, not another's.
    let lab = service_token(&s, &der, "l1");
    let bare = format!("token={}&client_id=lab", enc(&lab));
    assert_eq!(revoke(bare).0, 401);
    assert_eq!(revoke(format!("token={}&client_id=app", enc(&lab))).0, 200);
    assert_eq!(status_with(&s, &lab), 200);
    let a = assertion(&s, &der, "r1", json!({}));
    let (st, e) = revoke(format!(
        "token={}&client_assertion_type={}&client_assertion={a}",
        enc(&lab),
        enc(JWT_BEARER)
    ));
    assert_eq!(st, 200, "{e}");
    assert_eq!(status_with(&s, &lab), 401);
    // An operator's token (issued to no client) is no app's to revoke.
    let op = auth
        .issue_for_user(&auth.user("admin").unwrap().unwrap(), None)
        .unwrap();
    let op = op["access_token"].as_str().unwrap();
    assert_eq!(revoke(format!("token={}&client_id=app", enc(op))).0, 200);
    assert_eq!(status_with(&s, op), 200);
}

#[test]
fn introspection_answers_within_the_callers_reach() {
    let (s, _, der) = setup_more();
    let mine = tokens(&s, "app", "patient/*.rs", "hanako", "");
    let mine = mine["access_token"].as_str().unwrap();
    let theirs = tokens(&s, "other", "user/*.rs", "doc", "");
    let theirs = theirs["access_token"].as_str().unwrap();
    let intro = |bearer: Option<&str>, token: &str| {
        form_post(
            &s,
            "/auth/introspect",
            bearer,
            &format!("token={}", enc(token)),
        )
    };
    let (st, e) = intro(None, mine);
    assert_eq!(st, 401, "{e}");
    assert!(e["error"].is_string());
    // An app cannot learn about tokens of other users and apps.
    let (st, i) = intro(Some(mine), theirs);
    assert_eq!((st, &i["active"]), (200, &json!(false)), "{i}");
    assert!(i.get("sub").is_none(), "{i}");
    let (st, i) = intro(Some(mine), mine);
    assert_eq!((st, &i["active"]), (200, &json!(true)), "{i}");
    assert_eq!(i["client_id"], "app");
    // A resource server (a backend service) can.
    let lab = service_token(&s, &der, "i1");
    let (st, i) = intro(Some(&lab), theirs);
    assert_eq!((st, &i["active"]), (200, &json!(true)), "{i}");
    assert_eq!(
        (&i["sub"], &i["client_id"]),
        (&json!("doc"), &json!("other"))
    );
}

#[test]
fn openid_gets_a_signed_id_token_with_fhir_user() {
    let (s, _, _) = setup_more();
    let scope = "openid fhirUser launch/patient patient/*.rs offline_access";
    let t = tokens(&s, "app", scope, "hanako", "&nonce=n-0S6_WzA2Mj");
    let id_token = t["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {t}"));
    let jwks = json(s.get(".well-known/jwks.json"));
    let claims = issho_auth::verify_es256_with_jwks(&jwks, id_token).unwrap();
    assert_eq!(claims["iss"], s.base.as_str());
    assert_eq!(claims["sub"], "hanako");
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["fhirUser"], format!("{}/Patient/p1", s.base));
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(iat <= now() + 5 && exp > now() && exp > iat, "{claims}");
    // Again on refresh (without the nonce, OpenID Connect Core §12.2).
    let (st, t2) = refresh(&s, Some("app"), t["refresh_token"].as_str().unwrap());
    assert_eq!(st, 200, "{t2}");
    let again =
        issho_auth::verify_es256_with_jwks(&jwks, t2["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&again["sub"], &again["aud"]),
        (&json!("hanako"), &json!("app"))
    );
    assert_eq!(again["fhirUser"], claims["fhirUser"]);
    assert!(again.get("nonce").is_none());
    // No openid, no id_token.
    let t3 = tokens(&s, "app", "patient/*.rs", "hanako", "");
    assert!(t3.get("id_token").is_none(), "{t3}");
    // Discovery says so, and the issuer's OpenID configuration names the key set.
    let smart = json(s.get(".well-known/smart-configuration"));
    assert!(
        smart["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("sso-openid-connect"))
    );
    let oidc = json(s.get(".well-known/openid-configuration"));
    assert_eq!(oidc["issuer"], s.base.as_str());
    assert_eq!(oidc["jwks_uri"], smart["jwks_uri"]);
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
}

#[test]
fn granted_scopes_are_not_repeated() {
    let (s, _, _) = setup_more();
    let scope =
        "launch/patient launch/patient patient/*.rs patient/*.rs offline_access launch/patient";
    let t = tokens(&s, "app", scope, "hanako", "");
    assert_eq!(
        t["scope"], "launch/patient offline_access patient/*.rs",
        "{t}"
    );
    let (_, t2) = refresh(&s, Some("app"), t["refresh_token"].as_str().unwrap());
    assert_eq!(
        t2["scope"], "launch/patient offline_access patient/*.rs",
        "{t2}"
    );
}

#[test]
fn launch_patient_needs_a_patient_in_context() {
    let (s, auth, _) = setup_more();
    // A physician signing in standalone: no patient picker here, so no launch/patient (and no
    // `launch` without an EHR launch).
    let t = tokens(&s, "other", "launch launch/patient user/*.rs", "doc", "");
    assert_eq!(t["scope"], "user/*.rs", "{t}");
    assert!(t.get("patient").is_none(), "{t}");
    // An EHR launch on a patient in the physician's care: granted, with the patient.
    let admin = auth
        .issue_for_user(&auth.user("admin").unwrap().unwrap(), None)
        .unwrap();
    let r = s
        .req("PUT", "Encounter/e1")
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"},"serviceProvider":{"reference":"Organization/org-a"}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let doc = auth.issue_for_user(&auth.user("doc").unwrap().unwrap(), Some("user/*.rs"));
    let doc = doc.unwrap()["access_token"].as_str().unwrap().to_string();
    let (st, l) = form_post(&s, "/auth/launch", Some(&doc), "patient=p1");
    assert_eq!(st, 200, "{l}");
    let launch = format!("&launch={}", enc(l["launch"].as_str().unwrap()));
    let t = tokens(
        &s,
        "other",
        "launch launch/patient patient/*.rs",
        "doc",
        &launch,
    );
    assert_eq!(t["scope"], "launch launch/patient patient/*.rs", "{t}");
    assert_eq!(t["patient"], "p1");
    // A patient user has their own record in context.
    let t = tokens(&s, "app", "launch/patient patient/*.rs", "hanako", "");
    assert_eq!(
        (&t["scope"], &t["patient"]),
        (&json!("launch/patient patient/*.rs"), &json!("p1"))
    );
}
