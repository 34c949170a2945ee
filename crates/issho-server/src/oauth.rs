//! The built-in OAuth 2.0 authorization server for SMART App Launch 2.0 (standalone launch,
//! public clients, authorization code with PKCE S256): the sign-in page (Japanese and
//! English), the token endpoint (`authorization_code`, `refresh_token`), revocation (RFC 7009),
//! introspection (RFC 7662), the OpenID Connect `id_token`, `/.well-known/smart-configuration`
//! and `openid-configuration`.

use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

fn form(s: &str) -> Vec<(String, String)> {
    issho_engine::parse_query(s)
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn json_response(status: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn html(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The parameters an authorization request must carry through the sign-in form.
const CARRIED: [&str; 10] = [
    "launch",
    "nonce",
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
];

fn page(p: &[(String, String)], client_name: &str, scope: &str, error: Option<&str>) -> String {
    let hidden: String = CARRIED
        .iter()
        .filter_map(|k| get(p, k).map(|v| (k, v)))
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(v)
            )
        })
        .collect();
    let err = error
        .map(|e| format!("<p class=\"err\">{}</p>", escape(e)))
        .unwrap_or_default();
    // What the app may do, said in words (the raw scope string in a tooltip-free detail).
    let scopes: String = issho_auth::explain(scope)
        .iter()
        .map(|(ja, en)| {
            format!(
                "<li>{}<br><span class=\"en\">{}</span></li>",
                escape(ja),
                escape(en)
            )
        })
        .collect::<String>()
        + &format!(
            "</ul><details><summary>技術的な表記 <span class=\"en\">Technical scopes</span></summary><code>{}</code></details><ul>",
            escape(scope)
        );
    format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>issho — サインイン / Sign in</title>
<style>body{{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.3rem}}label{{display:block;margin:.8rem 0 .2rem}}input[type=text],input[type=password]{{width:100%;padding:.5rem;font-size:1rem}}
button{{margin-top:1.2rem;padding:.6rem 1.4rem;font-size:1rem}}.err{{color:#b00020}}.en{{color:#666;font-size:.9em}}</style></head>
<body><h1>issho（一生・一緒）へサインイン <span class="en">Sign in to issho</span></h1>
<p><strong>{client}</strong> があなたの代わりに次のことをしようとしています。許可すると、サインインしたあなたの権限の範囲で行われ、すべて記録されます。<br><span class="en">{client} asks to do the following on your behalf — within what you yourself may do, and every access is recorded:</span></p>
<ul>{scopes}</ul>{err}
<form method="post" action="/auth/authorize">{hidden}
<label for="u">ユーザー名 <span class="en">User name</span></label><input id="u" type="text" name="username" autocomplete="username" required>
<label for="p">パスワード <span class="en">Password</span></label><input id="p" type="password" name="password" autocomplete="current-password" required>
<button type="submit" name="decision" value="allow">許可してサインイン <span class="en">Allow and sign in</span></button>
</form></body></html>"#,
        client = escape(client_name),
    )
}

/// Checks common to showing the page and accepting it. `Err(response)`: what to answer.
fn check_request(
    st: &AppState,
    p: &[(String, String)],
) -> Result<issho_auth::Client, Box<Response>> {
    let Some(auth) = &st.config.auth else {
        return Err(Box::new(html(404, "no authorization server here".into())));
    };
    let client = get(p, "client_id")
        .and_then(|id| auth.client(id).ok().flatten())
        .ok_or_else(|| {
            html(
                400,
                "<p>Unknown client_id. / 不明なクライアントです。</p>".into(),
            )
        })?;
    let redirect_uri = get(p, "redirect_uri").unwrap_or_default();
    if !client.accepts_redirect(redirect_uri) {
        // Never redirect to an unregistered URI (RFC 6749 §4.1.2.1).
        return Err(Box::new(html(
            400,
            "<p>redirect_uri is not registered for this client. / 登録されていないリダイレクト先です。</p>"
                .into(),
        )));
    }
    let fail = |error: &str, d: &str| {
        let mut to = format!(
            "{redirect_uri}{}error={error}&error_description={}",
            if redirect_uri.contains('?') { '&' } else { '?' },
            enc(d)
        );
        if let Some(s) = get(p, "state") {
            to.push_str(&format!("&state={}", enc(s)));
        }
        Box::new(redirect(&to))
    };
    if get(p, "response_type") != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    if get(p, "code_challenge").is_none() || get(p, "code_challenge_method") != Some("S256") {
        return Err(fail("invalid_request", "PKCE with S256 is required"));
    }
    if get(p, "aud").map(|a| a.trim_end_matches('/')) != Some(auth.issuer()) {
        return Err(fail(
            "invalid_request",
            "aud must be this server's FHIR base URL",
        ));
    }
    if get(p, "state").is_none() {
        return Err(fail("invalid_request", "state is required"));
    }
    Ok(client)
}

/// `GET /auth/authorize` (the sign-in page) and `POST /auth/authorize` (the form).
pub async fn authorize(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let p = if method == Method::POST {
        form(&String::from_utf8_lossy(&body))
    } else {
        form(uri.query().unwrap_or(""))
    };
    let client = match check_request(&st, &p) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let scope = get(&p, "scope").unwrap_or_default().to_string();
    if method != Method::POST {
        return html(200, page(&p, &client.name, &scope, None));
    }
    let auth = st.config.auth.clone().expect("checked");
    let (user, pass) = (
        get(&p, "username").unwrap_or_default().to_string(),
        get(&p, "password").unwrap_or_default().to_string(),
    );
    let challenge = get(&p, "code_challenge").unwrap_or_default().to_string();
    let redirect_uri = get(&p, "redirect_uri").unwrap_or_default().to_string();
    let state = get(&p, "state").unwrap_or_default().to_string();
    let scope2 = scope.clone();
    let client2 = client.clone();
    let launch = get(&p, "launch").map(str::to_string);
    let nonce = get(&p, "nonce").map(str::to_string);
    // argon2 is deliberately slow: off the async workers.
    let res = tokio::task::spawn_blocking(move || {
        let u = auth.check_password(&user, &pass)?;
        let req = issho_auth::AuthorizationRequest {
            client: &client2,
            redirect_uri: &redirect_uri,
            scope: &scope2,
            code_challenge: &challenge,
            // EHR launch: the context the EHR created for this user.
            launch: launch.as_deref(),
            nonce: nonce.as_deref(),
        };
        auth.authorization_code(&u, &req)
            .map(|code| (code, redirect_uri))
    })
    .await;
    match res {
        Ok(Ok((code, redirect_uri))) => redirect(&format!(
            "{redirect_uri}{}code={}&state={}",
            if redirect_uri.contains('?') { '&' } else { '?' },
            enc(&code),
            enc(&state)
        )),
        Ok(Err(e)) => html(
            401,
            page(
                &p,
                &client.name,
                &scope,
                Some(&format!(
                    "サインインできませんでした / Could not sign in: {e}"
                )),
            ),
        ),
        Err(_) => html(500, "internal error".into()),
    }
}

/// `POST /auth/token`.
pub async fn token(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(auth) = st.config.auth.clone() else {
        return oauth_error(404, "invalid_request", "no authorization server here");
    };
    if let Err(r) = require_form(&headers) {
        return *r;
    }
    let p = form(&String::from_utf8_lossy(&body));
    let Some(grant) = get(&p, "grant_type").map(str::to_string) else {
        return oauth_error(400, "invalid_request", "grant_type is required");
    };
    let client_id = get(&p, "client_id").unwrap_or_default().to_string();
    let endpoint = token_endpoint(&auth);
    let res = tokio::task::spawn_blocking(move || match grant.as_str() {
        "client_credentials" => auth.client_credentials(
            &client_auth(&p),
            &endpoint,
            get(&p, "scope").unwrap_or_default(),
        ),
        "authorization_code" => auth.exchange_code(
            get(&p, "code").unwrap_or_default(),
            &client_id,
            get(&p, "redirect_uri").unwrap_or_default(),
            get(&p, "code_verifier").unwrap_or_default(),
        ),
        "refresh_token" => auth.refresh(
            get(&p, "refresh_token").unwrap_or_default(),
            &client_id,
            get(&p, "scope"),
        ),
        other => Err(issho_auth::AuthError::OAuth(
            issho_auth::OAuthError::UnsupportedGrantType,
            format!("unsupported grant_type '{other}'"),
        )),
    })
    .await;
    match res {
        Ok(Ok(v)) => json_response(200, &v),
        Ok(Err(e)) => auth_error(&e),
        Err(_) => oauth_error(500, "server_error", "internal error"),
    }
}

/// The OAuth error response for `e` (RFC 6749 §5.2).
fn auth_error(e: &issho_auth::AuthError) -> Response {
    let (status, error, description) = e.oauth();
    oauth_error(status, error, &description)
}

/// The token endpoint's URL: the `aud` of client assertions.
fn token_endpoint(auth: &issho_auth::Auth) -> String {
    format!("{}/auth/token", auth.issuer().trim_end_matches("/fhir"))
}

/// How the client of a token, revocation or introspection request identified itself.
fn client_auth(p: &[(String, String)]) -> issho_auth::ClientAuth<'_> {
    issho_auth::ClientAuth {
        client_id: get(p, "client_id"),
        assertion_type: get(p, "client_assertion_type"),
        assertion: get(p, "client_assertion"),
    }
}

/// `POST /auth/revoke` (RFC 7009). The caller authenticates as a client (RFC 6749 §2.3): a
/// public app by its `client_id`, a backend service with its `private_key_jwt` assertion;
/// otherwise 401 `invalid_client`. Only tokens issued to that client are revoked; any other
/// token (unknown, expired, another client's) is answered 200 all the same (§2.2), so the
/// answer tells nothing about it.
pub async fn revoke(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(auth) = st.config.auth.clone() else {
        return oauth_error(404, "invalid_request", "no authorization server here");
    };
    if let Err(r) = require_form(&headers) {
        return *r;
    }
    let p = form(&String::from_utf8_lossy(&body));
    let endpoint = token_endpoint(&auth);
    let res = tokio::task::spawn_blocking(move || {
        let client = auth.authenticate_client(&client_auth(&p), &endpoint)?;
        let token = get(&p, "token").ok_or_else(|| {
            issho_auth::AuthError::OAuth(
                issho_auth::OAuthError::InvalidRequest,
                "token is required".into(),
            )
        })?;
        auth.revoke_token(token, &client)
    })
    .await;
    match res {
        Ok(Ok(())) => json_response(200, &json!({})),
        Ok(Err(e)) => auth_error(&e),
        Err(_) => oauth_error(500, "server_error", "internal error"),
    }
}

/// OAuth endpoints take `application/x-www-form-urlencoded` bodies.
fn require_form(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.starts_with("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(Box::new(oauth_error(
            400,
            "invalid_request",
            "the request must be application/x-www-form-urlencoded",
        )))
    }
}

/// `POST /auth/introspect` (RFC 7662). The caller authorizes with a bearer token of its own
/// (§2.1): a resource server (a backend service) or an administrator is told about any
/// token, anyone else only about tokens of their own user and app. No valid bearer token:
/// 401 `invalid_token` (RFC 6750 §3).
pub async fn introspect(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(auth) = st.config.auth.clone() else {
        return oauth_error(404, "invalid_request", "no authorization server here");
    };
    if let Err(r) = require_form(&headers) {
        return *r;
    }
    let caller = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let p = form(&String::from_utf8_lossy(&body));
    let Some(token) = get(&p, "token").map(str::to_string) else {
        return oauth_error(400, "invalid_request", "token is required");
    };
    let res = tokio::task::spawn_blocking(move || match caller {
        Some(c) => auth.introspect(&c, &token),
        None => Err(issho_auth::AuthError::InvalidToken(
            "introspection needs a bearer token".into(),
        )),
    })
    .await;
    match res {
        Ok(Ok(v)) => json_response(200, &v),
        Ok(Err(issho_auth::AuthError::InvalidToken(m))) => {
            let mut r = oauth_error(401, "invalid_token", &m);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            r
        }
        Ok(Err(e)) => auth_error(&e),
        Err(_) => oauth_error(500, "server_error", "internal error"),
    }
}

/// The endpoints both discovery documents name, and what they share.
fn discovery(auth: &issho_auth::Auth) -> serde_json::Map<String, Value> {
    let iss = auth.issuer();
    let root = iss.trim_end_matches("/fhir");
    let v = json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "authorization_endpoint": format!("{root}/auth/authorize"),
        "token_endpoint": format!("{root}/auth/token"),
        "revocation_endpoint": format!("{root}/auth/revoke"),
        "registration_endpoint": format!("{root}/auth/register"),
        "introspection_endpoint": format!("{root}/auth/introspect"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    });
    json_object(v)
}

/// `GET [base]/.well-known/smart-configuration`.
pub fn smart_configuration(auth: &issho_auth::Auth) -> Value {
    let mut m = discovery(auth);
    m.extend(json_object(json!({
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384", "ES256", "RS256"],
        "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
            "patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs", "system/*.rs", "system/*.cruds"],
        "capabilities": ["sso-openid-connect", "launch-standalone", "launch-ehr", "context-ehr-patient", "client-public", "client-confidential-asymmetric", "context-standalone-patient",
            "permission-v1", "permission-v2", "permission-patient", "permission-user", "permission-offline"]
    })));
    Value::Object(m)
}

/// `GET [base]/.well-known/openid-configuration` (OpenID Connect Discovery): the issuer of
/// `id_token`s is the FHIR base URL, so this is where apps find its keys.
pub fn openid_configuration(auth: &issho_auth::Auth) -> Value {
    let mut m = discovery(auth);
    m.extend(json_object(json!({
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"]
    })));
    Value::Object(m)
}

fn json_object(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// `POST /auth/register` (RFC 7591 dynamic client registration, for administrators): a JSON
/// body with `client_name`, `redirect_uris` (an app) or `jwks` (a backend service), and
/// `scope`; answers 201 with the `client_id`.
pub async fn register(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(auth) = st.config.auth.clone() else {
        return oauth_error(404, "invalid_request", "no authorization server here");
    };
    let admin = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| auth.verify(t.trim()).ok())
        .is_some_and(|g| g.role == issho_access::Role::Administrator);
    if !admin {
        return oauth_error(
            401,
            "invalid_token",
            "client registration needs an administrator's bearer token",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return oauth_error(400, "invalid_client_metadata", "the body must be JSON");
    };
    let name = req["client_name"].as_str().unwrap_or("app").to_string();
    let scope = req["scope"]
        .as_str()
        .unwrap_or("openid fhirUser launch/patient offline_access patient/*.rs")
        .to_string();
    // A random v4 UUID (from the operating system's generator), without dashes.
    let client_id: String = issho_engine::new_bundle_id().replace('-', "");
    let res = if let Some(jwks) = req.get("jwks") {
        auth.put_service(&client_id, &name, jwks, &scope)
    } else {
        let uris: Vec<String> = req["redirect_uris"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        if uris.is_empty() {
            return oauth_error(
                400,
                "invalid_redirect_uri",
                "an app needs redirect_uris (or a backend service jwks)",
            );
        }
        auth.put_client(&issho_auth::Client {
            id: client_id.clone(),
            name: name.clone(),
            redirect_uris: uris,
            scopes: scope.clone(),
        })
    };
    match res {
        Ok(()) => {
            let mut out = req.clone();
            out["client_id"] = json!(client_id);
            out["client_id_issued_at"] = json!(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            );
            out["token_endpoint_auth_method"] = json!(if req.get("jwks").is_some() {
                "private_key_jwt"
            } else {
                "none"
            });
            json_response(201, &out)
        }
        Err(e) => oauth_error(400, "invalid_client_metadata", &e.to_string()),
    }
}

/// `POST /auth/launch` (EHR launch): a signed-in clinician's EHR asks for a launch context on
/// a patient the clinician may see (`patient=ID`, form or JSON); the answer's `launch` goes
/// into the app's launch URL (`?iss=…&launch=…`) and the token the app gets has that patient
/// in context.
pub async fn launch(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(auth) = st.config.auth.clone() else {
        return oauth_error(404, "invalid_request", "no authorization server here");
    };
    let ctx = match crate::handler::context(&st, &headers) {
        Ok(c) if c.grant().is_some() => c,
        _ => {
            return oauth_error(
                401,
                "invalid_token",
                "an EHR launch needs the user's bearer token",
            );
        }
    };
    let text = String::from_utf8_lossy(&body).to_string();
    let patient = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["patient"].as_str().map(str::to_string))
        .or_else(|| get(&form(&text), "patient").map(str::to_string))
        .unwrap_or_default();
    let user = ctx.grant().map(|g| g.subject.clone()).unwrap_or_default();
    let engine = st.engine.clone();
    let res = tokio::task::spawn_blocking(move || {
        // Only a patient the user may see now (care relationship, consent).
        engine.read(&ctx, "Patient", &patient).map_err(|e| {
            e.issues
                .first()
                .map(|i| i.diagnostics.clone())
                .unwrap_or_default()
        })?;
        auth.new_launch(&user, &patient).map_err(|e| e.to_string())
    })
    .await;
    match res {
        Ok(Ok(token)) => json_response(
            200,
            &json!({"launch": token, "expires_in": issho_auth::LAUNCH_SECONDS}),
        ),
        Ok(Err(e)) => oauth_error(403, "access_denied", &e),
        Err(_) => oauth_error(500, "server_error", "internal error"),
    }
}
