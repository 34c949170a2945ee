//! Unit tests of issho-auth.

use crate::*;
use issho_access::Role;
use serde_json::{Value, json};

#[test]
fn backend_service_client_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
    let (der, jwk) = new_es256_client_key("k1").unwrap();
    let jwks = json!({"keys": [jwk]});
    assert!(
        a.put_service("svc", "Lab system", &jwks, "patient/*.rs")
            .is_err()
    );
    a.put_service(
        "svc",
        "Lab system",
        &jwks,
        "system/*.rs system/Observation.cruds",
    )
    .unwrap();
    let endpoint = "http://h/auth/token";
    let claims = |jti: &str, exp: i64, aud: &str| json!({"iss": "svc", "sub": "svc", "aud": aud, "exp": exp, "jti": jti});
    let t = |c: &Value| sign_es256(&der, "k1", c).unwrap();
    let cc = |kind: &str, assertion: &str, scope: &str| {
        let c = ClientAuth {
            client_id: None,
            assertion_type: Some(kind),
            assertion: Some(assertion),
        };
        a.client_credentials(&c, endpoint, scope)
    };
    let ok = cc(
        JWT_BEARER,
        &t(&claims("j1", now() + 120, endpoint)),
        "system/*.rs user/*.rs",
    )
    .unwrap();
    assert_eq!(ok["scope"], "system/*.rs");
    let g = a.verify(ok["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(g.role, Role::Service);
    // Replay, wrong audience, too long-lived, expired, another key, unknown client, another
    // assertion type: the client is not authenticated.
    let (other, _) = new_es256_client_key("k1").unwrap();
    let mut nobody = claims("j6", now() + 120, endpoint);
    nobody["iss"] = json!("nobody");
    nobody["sub"] = json!("nobody");
    for (kind, assertion) in [
        (JWT_BEARER, t(&claims("j1", now() + 120, endpoint))),
        (
            JWT_BEARER,
            t(&claims("j2", now() + 120, "http://other/token")),
        ),
        (JWT_BEARER, t(&claims("j3", now() + 3600, endpoint))),
        (JWT_BEARER, t(&claims("j4", now() - 120, endpoint))),
        (
            JWT_BEARER,
            sign_es256(&other, "k1", &claims("j5", now() + 120, endpoint)).unwrap(),
        ),
        (JWT_BEARER, t(&nobody)),
        ("password", t(&claims("j7", now() + 120, endpoint))),
    ] {
        let e = cc(kind, &assertion, "system/*.rs").unwrap_err();
        assert_eq!(e.oauth().1, "invalid_client", "{e}");
    }
    // No assertion: a public client may not use this grant; an unknown one is not a client.
    let public = ClientAuth {
        client_id: Some("svc"),
        ..Default::default()
    };
    let e = a.client_credentials(&public, endpoint, "system/*.rs");
    assert_eq!(e.unwrap_err().oauth().1, "invalid_client");
    // Scopes it is not registered for.
    let e = cc(
        JWT_BEARER,
        &t(&claims("j8", now() + 120, endpoint)),
        "user/*.rs",
    )
    .unwrap_err();
    assert_eq!(e.oauth().1, "invalid_scope");
}

fn user() -> User {
    User {
        name: "hanako".into(),
        role: Role::Patient,
        patient: Some("p1".into()),
        organization: None,
        fhir_user: Some("Patient/p1".into()),
        scopes: "openid fhirUser patient/*.rs".into(),
        display: "花子".into(),
    }
}

#[test]
fn issue_verify_and_reject() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://localhost:8080/fhir").unwrap();
    a.put_user(&user(), "correct horse").unwrap();
    assert!(a.check_password("hanako", "wrong one").is_err());
    assert!(a.check_password("nobody", "correct horse").is_err());
    let u = a.check_password("hanako", "correct horse").unwrap();
    // Password guessing: after MAX_FAILURES wrong ones the name is locked for a while,
    // even for the right password.
    for _ in 0..MAX_FAILURES {
        assert!(a.check_password("hanako", "guess").is_err());
    }
    let locked = a.check_password("hanako", "correct horse").unwrap_err();
    assert!(locked.to_string().contains("too many"), "{locked}");
    let resp = a
        .issue_for_user(&u, Some("patient/Observation.rs patient/Patient.cruds"))
        .unwrap();
    assert_eq!(resp["scope"], "patient/Observation.rs patient/Patient.rs");
    assert_eq!(resp["patient"], "p1");
    let tok = resp["access_token"].as_str().unwrap();
    let g = a.verify(tok).unwrap();
    assert_eq!(g.subject, "hanako");
    assert_eq!(g.patient.as_deref(), Some("p1"));
    assert_eq!(g.role, Role::Patient);
    // Tampered payload: the signature no longer verifies.
    let parts: Vec<&str> = tok.split('.').collect();
    let forged = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    assert!(a.verify(&forged).is_err());
    // alg=none
    let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    assert!(matches!(a.verify(&none), Err(AuthError::InvalidToken(_))));
    // Expired and wrong audience.
    let base = json!({"iss": a.issuer(), "sub": "hanako", "aud": a.issuer(), "iat": now(),
        "exp": now() + 60, "jti": "j1", "scope": "patient/*.rs", "role": "patient", "patient": "p1"});
    let mut exp = base.clone();
    exp["exp"] = json!(now() - 3600);
    assert!(
        a.verify(&a.sign_raw(&exp).unwrap())
            .unwrap_err()
            .to_string()
            .contains("expired")
    );
    let mut aud = base.clone();
    aud["aud"] = json!("https://other.example/fhir");
    assert!(
        a.verify(&a.sign_raw(&aud).unwrap())
            .unwrap_err()
            .to_string()
            .contains("another server")
    );
    // A key of another deployment.
    let dir2 = tempfile::tempdir().unwrap();
    let other = Auth::open(dir2.path(), "http://localhost:8080/fhir").unwrap();
    assert!(a.verify(&other.sign_raw(&base).unwrap()).is_err());
    // Revocation.
    a.revoke(&g.token_id).unwrap();
    assert!(a.verify(tok).unwrap_err().to_string().contains("revoked"));
    // Rotation: old tokens keep verifying, new ones use the new key.
    let t1 = a.sign_raw(&base).unwrap();
    a.rotate_key().unwrap();
    assert!(a.verify(&t1).is_ok());
    assert_eq!(a.jwks().unwrap()["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn not_before_in_the_future_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
    let token = |nbf: i64| {
        a.sign_raw(
            &json!({"iss": "http://h/fhir", "sub": "hanako", "aud": "http://h/fhir",
            "iat": now(), "nbf": nbf, "exp": now() + 7200, "jti": format!("j{nbf}"),
            "scope": "patient/*.rs", "role": "patient", "patient": "p1"}),
        )
        .unwrap()
    };
    let early = a.verify(&token(now() + 600)).unwrap_err();
    assert!(early.to_string().contains("not valid yet"), "{early}");
    assert!(
        a.verify(&token(now() + 30)).is_ok(),
        "within the clock skew"
    );
    assert!(a.verify(&token(now() - 30)).is_ok());
    // Client assertions too.
    let (der, jwk) = new_es256_client_key("k1").unwrap();
    a.put_service("svc", "svc", &json!({"keys": [jwk]}), "system/*.rs")
        .unwrap();
    let endpoint = "http://h/auth/token";
    let assertion = |jti: &str, nbf: i64| {
        sign_es256(
            &der,
            "k1",
            &json!({"iss": "svc", "sub": "svc", "aud": endpoint,
            "exp": now() + 120, "nbf": nbf, "jti": jti}),
        )
        .unwrap()
    };
    let cc = |assertion: &str| {
        let c = ClientAuth {
            client_id: Some("svc"),
            assertion_type: Some(JWT_BEARER),
            assertion: Some(assertion),
        };
        a.client_credentials(&c, endpoint, "system/*.rs")
    };
    assert!(cc(&assertion("a1", now() + 600)).is_err());
    assert!(cc(&assertion("a2", now() - 5)).is_ok());
}

/// An app, registered, and a code for `u` through it with `scope` (PKCE verifier "v" * 43).
fn code_for(a: &Auth, u: &User, client: &str, scope: &str) -> String {
    let app = Client {
        id: client.into(),
        name: client.into(),
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        scopes: "openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs"
            .into(),
    };
    a.put_client(&app).unwrap();
    let req = AuthorizationRequest {
        client: &app,
        redirect_uri: "http://127.0.0.1/cb",
        scope,
        code_challenge: &pkce_s256(VERIFIER),
        launch: None,
        nonce: Some("n1"),
    };
    a.authorization_code(u, &req).unwrap()
}

const VERIFIER: &str = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";

#[test]
fn codes_and_refresh_tokens_of_another_client_are_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
    let mut u = user();
    u.scopes = "openid fhirUser launch/patient offline_access patient/*.rs".into();
    a.put_user(&u, "correct horse").unwrap();
    code_for(&a, &u, "other", "patient/*.rs");
    let code = code_for(&a, &u, "app", "patient/*.rs offline_access");
    let cb = "http://127.0.0.1/cb";
    let e = a.exchange_code(&code, "other", cb, VERIFIER).unwrap_err();
    assert_eq!(e.oauth().1, "invalid_grant", "{e}");
    let e = a.exchange_code(&code, "", cb, VERIFIER).unwrap_err();
    assert_eq!(e.oauth().1, "invalid_request", "{e}");
    let t = a.exchange_code(&code, "app", cb, VERIFIER).unwrap();
    let e = a.exchange_code(&code, "app", cb, VERIFIER).unwrap_err();
    assert_eq!(e.oauth().1, "invalid_grant", "used once: {e}");
    let rt = t["refresh_token"].as_str().unwrap();
    let e = a.refresh(rt, "other", None).unwrap_err();
    assert_eq!(e.oauth().1, "invalid_grant", "{e}");
    let e = a.refresh(rt, "", None).unwrap_err();
    assert_eq!(e.oauth().1, "invalid_request", "{e}");
    let e = a
        .refresh(rt, "app", Some("patient/Observation.xyz"))
        .unwrap_err();
    assert_eq!(e.oauth().1, "invalid_scope", "{e}");
    let t2 = a.refresh(rt, "app", None).unwrap();
    assert_eq!(t2["patient"], "p1");
    assert_eq!(
        a.refresh(rt, "app", None).unwrap_err().oauth().1,
        "invalid_grant"
    );
    // A wrong verifier from the right client spends the code (no guessing).
    let code = code_for(&a, &u, "app", "patient/*.rs");
    assert!(a.exchange_code(&code, "app", cb, "wrong").is_err());
    assert!(a.exchange_code(&code, "app", cb, VERIFIER).is_err());
}

#[test]
fn granted_scopes_are_unique_and_launch_patient_needs_a_patient() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
    let mut u = user();
    u.scopes = "openid fhirUser launch/patient patient/*.rs user/*.rs".into();
    let t = a
        .issue_for_user(
            &u,
            Some("launch/patient patient/*.rs launch/patient patient/*.rs openid"),
        )
        .unwrap();
    assert_eq!(t["scope"], "launch/patient openid patient/*.rs");
    // A user with no patient of their own: launch/patient is not granted, no patient given.
    let mut doc = u.clone();
    doc.name = "doc".into();
    doc.role = Role::Physician;
    doc.patient = None;
    doc.fhir_user = Some("Practitioner/d1".into());
    let t = a.issue_for_user(&doc, None).unwrap();
    assert_eq!(t["scope"], "openid fhirUser patient/*.rs user/*.rs");
    assert!(t.get("patient").is_none());
    let g = a.verify(t["access_token"].as_str().unwrap()).unwrap();
    assert!(!g.scopes.has("launch/patient"));
}

#[test]
fn revocation_by_the_client_a_token_was_issued_to() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
    let mut u = user();
    u.scopes = "offline_access patient/*.rs".into();
    a.put_user(&u, "correct horse").unwrap();
    code_for(&a, &u, "other", "patient/*.rs");
    let code = code_for(&a, &u, "app", "patient/*.rs offline_access");
    let t = a
        .exchange_code(&code, "app", "http://127.0.0.1/cb", VERIFIER)
        .unwrap();
    let (access, rt) = (
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
    );
    // Client authentication: a public app by its id; unknown ones and nobody are refused.
    let id = |c: Option<&str>| {
        a.authenticate_client(
            &ClientAuth {
                client_id: c,
                ..Default::default()
            },
            "http://h/auth/token",
        )
    };
    assert_eq!(id(Some("app")).unwrap(), "app");
    assert_eq!(id(Some("nobody")).unwrap_err().oauth().1, "invalid_client");
    assert_eq!(id(None).unwrap_err().oauth().1, "invalid_client");
    // Another client's revocation changes nothing.
    a.revoke_token(access, "other").unwrap();
    a.revoke_token(rt, "other").unwrap();
    assert!(a.verify(access).is_ok());
    // An operator's token is no client's.
    let op = a.issue_for_user(&u, None).unwrap();
    let op = op["access_token"].as_str().unwrap();
    a.revoke_token(op, "app").unwrap();
    assert!(a.verify(op).is_ok());
    // The app's own.
    a.revoke_token(access, "app").unwrap();
    assert!(a.verify(access).is_err());
    a.revoke_token(rt, "app").unwrap();
    assert!(a.refresh(rt, "app", None).is_err());
}

#[test]
fn introspection_within_the_callers_reach() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
    let mut u = user();
    u.scopes = "patient/*.rs".into();
    let mut other = u.clone();
    other.name = "taro".into();
    other.patient = Some("p2".into());
    let token = |u: &User, client: &str| {
        let code = code_for(&a, u, client, "patient/*.rs");
        let t = a
            .exchange_code(&code, client, "http://127.0.0.1/cb", VERIFIER)
            .unwrap();
        t["access_token"].as_str().unwrap().to_string()
    };
    a.put_user(&u, "correct horse").unwrap();
    a.put_user(&other, "correct horse").unwrap();
    let (mine, same_user_other_app, theirs) =
        (token(&u, "app"), token(&u, "other"), token(&other, "app"));
    let i = a.introspect(&mine, &mine).unwrap();
    assert_eq!(
        (&i["active"], &i["client_id"]),
        (&json!(true), &json!("app"))
    );
    assert_eq!(i["patient"], "p1");
    for t in [&same_user_other_app, &theirs, &"not a token".to_string()] {
        assert_eq!(a.introspect(&mine, t).unwrap(), json!({"active": false}));
    }
    // A backend service (resource server) is told.
    let (_, jwk) = new_es256_client_key("k").unwrap();
    a.put_service("rs", "rs", &json!({"keys": [jwk]}), "system/*.rs")
        .unwrap();
    let mut svc = u.clone();
    svc.name = "rs".into();
    svc.role = Role::Service;
    svc.patient = None;
    svc.scopes = "system/*.rs".into();
    let rs = a.issue_for_user(&svc, None).unwrap();
    let i = a
        .introspect(rs["access_token"].as_str().unwrap(), &theirs)
        .unwrap();
    assert_eq!((&i["active"], &i["sub"]), (&json!(true), &json!("taro")));
    // A caller without a valid token is refused.
    assert!(matches!(
        a.introspect("nope", &mine),
        Err(AuthError::InvalidToken(_))
    ));
}

#[test]
fn openid_gets_an_id_token() {
    let dir = tempfile::tempdir().unwrap();
    let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
    let mut u = user();
    u.scopes = "openid fhirUser offline_access patient/*.rs".into();
    a.put_user(&u, "correct horse").unwrap();
    let code = code_for(&a, &u, "app", "openid fhirUser offline_access patient/*.rs");
    let t = a
        .exchange_code(&code, "app", "http://127.0.0.1/cb", VERIFIER)
        .unwrap();
    let jwks = a.jwks().unwrap();
    let id = verify_es256_with_jwks(&jwks, t["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id["iss"], "http://h/fhir");
    assert_eq!((&id["sub"], &id["aud"]), (&json!("hanako"), &json!("app")));
    assert_eq!(id["fhirUser"], "http://h/fhir/Patient/p1");
    assert_eq!(id["nonce"], "n1");
    assert!(id["exp"].as_i64().unwrap() > now());
    let t2 = a
        .refresh(t["refresh_token"].as_str().unwrap(), "app", None)
        .unwrap();
    let id2 = verify_es256_with_jwks(&jwks, t2["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id2["fhirUser"], id["fhirUser"]);
    assert!(id2.get("nonce").is_none());
    // openid without fhirUser: an id_token without the claim; no openid: none.
    let code = code_for(&a, &u, "app", "openid patient/*.rs");
    let t = a
        .exchange_code(&code, "app", "http://127.0.0.1/cb", VERIFIER)
        .unwrap();
    let id = verify_es256_with_jwks(&jwks, t["id_token"].as_str().unwrap()).unwrap();
    assert!(id.get("fhirUser").is_none());
    let code = code_for(&a, &u, "app", "patient/*.rs");
    let t = a
        .exchange_code(&code, "app", "http://127.0.0.1/cb", VERIFIER)
        .unwrap();
    assert!(t.get("id_token").is_none());
}
