//! issho's web application, served by `issho serve` itself: `/` (what issho is, sign in),
//! `/portal` (the person's lifelong record, measurements, access log, sharing, research,
//! download) and `/clinician` (finding a patient in care, the summary across institutions,
//! emergency access).
//!
//! Server-rendered HTML, no script, one embedded style sheet: pages work on any browser,
//! phone included, and nothing is fetched from elsewhere. The browser signs in through
//! issho's own authorization server as the first-party client `issho-web` (`session.rs`); every
//! page then acts with the signed-in user's access token, verified on each request, through
//! the engine's interactions — the same gate, consent, audit as that token on `/fhir`. The
//! application has no other way to the data.
//!
//! No patient data in URLs: the pages are `/portal` and `/clinician`; what a clinician opened
//! is kept in the session, forms are POSTed.

mod chart;
mod clinician;
mod document;
pub mod html;
pub mod i18n;
mod multipart;
mod orders;
mod phr;
mod portal;
pub mod session;
mod sharing;
mod upload;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use i18n::{Lang, t};
use issho_access::{AccessContext, Role};
use issho_engine::{Engine, FhirError};
use session::{COOKIE, LANG_COOKIE, Session, Sessions, cookie, set_cookie};
use std::collections::HashMap;
use std::sync::Arc;

/// The first-party client the web application signs in as.
pub const CLIENT_ID: &str = "issho-web";

/// What the application may ask for; the authorization server narrows it to what the user
/// may have.
const SCOPES: &str = "openid fhirUser patient/*.cruds user/*.cruds";

/// The deployment's rate limit: `Err(seconds to wait)` when the caller (keyed like `/fhir`'s,
/// by `Bearer <token>`) has spent its budget.
pub type Admit = Arc<dyn Fn(&str) -> Result<(), u64> + Send + Sync>;

/// The web application.
pub struct Web {
    /// The same budget per token as `/fhir` (`None`: no limit).
    admit: Option<Admit>,
    engine: Engine,
    auth: Arc<issho_auth::Auth>,
    /// Scheme, host and port of this server (`http://127.0.0.1:8080`): the redirect URI's.
    origin: String,
    /// Cookies get `Secure` (served over TLS).
    secure: bool,
    sessions: Sessions,
}

impl Web {
    /// The application over `engine`, signing in at `auth` (whose issuer is this server's FHIR
    /// base, `…/fhir`). Registers the client `issho-web` with its redirect URI.
    pub fn new(
        engine: Engine,
        auth: Arc<issho_auth::Auth>,
        secure: bool,
        admit: Option<Admit>,
    ) -> Result<Web, String> {
        let origin = auth
            .issuer()
            .trim_end_matches('/')
            .trim_end_matches("/fhir")
            .to_string();
        auth.put_client(&issho_auth::Client {
            id: CLIENT_ID.into(),
            name: "issho".into(),
            redirect_uris: vec![format!("{origin}/web/callback")],
            scopes: SCOPES.into(),
        })
        .map_err(|e| e.to_string())?;
        Ok(Web {
            admit,
            engine,
            auth,
            origin,
            secure,
            sessions: Sessions::default(),
        })
    }
}

/// The application's routes.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/web/static/issho.css", get(css))
        .route("/web/lang/{lang}", get(language))
        .route("/web/signin", get(signin))
        .route("/web/callback", get(callback))
        .route("/web/signout", post(signout))
        .route("/portal", get(portal::page))
        .route("/portal/measure", post(phr::measure))
        .route("/portal/upload", post(phr::upload))
        .route("/portal/consent", post(sharing::consent))
        .route("/portal/research", post(sharing::research))
        .route("/portal/apps", post(sharing::withdraw_app))
        .route("/portal/document", post(document::show))
        .route("/clinician/document", post(document::show_clinician))
        .route("/portal/download", get(portal::download))
        .route("/clinician", get(clinician::page).post(clinician::find))
        .route("/clinician/open", post(clinician::open))
        .route("/clinician/break-glass", post(clinician::break_glass))
        .route("/clinician/emergency", post(clinician::emergency))
        .route("/clinician/record", post(orders::record))
        .route("/clinician/prescribe", post(orders::prescribe))
        .route("/clinician/dispense", post(orders::dispense))
        // Forms are small; a device export at most a few megabytes.
        .layer(axum::extract::DefaultBodyLimit::max(8 << 20))
        .with_state(web)
}

// ---- responses --------------------------------------------------------------------------

/// The headers every page carries: no caching (pages hold health data), no script, no
/// framing, no referrer.
fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Same-origin, not no-referrer: under no-referrer a browser's form POST says `Origin:
    // null`, and the forms' origin check needs the real one. Nothing leaves for other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

pub(crate) fn html(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(&mut r);
    r
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r);
    r
}

/// An error page (the engine's diagnostics are about the request, never about data the
/// caller may not see).
pub(crate) fn error_page(lang: Lang, s: Option<&Session>, e: &FhirError) -> Response {
    let text: Vec<String> = e.issues.iter().map(|i| i.diagnostics.clone()).collect();
    let body = format!(
        "<p class=\"warning\">{}</p>\n<p><a href=\"/\">{}</a></p>",
        html::esc(&text.join(" ")),
        t(lang, "back")
    );
    html(e.status, html::page(lang, t(lang, "error"), s, "/", &body))
}

// ---- requests ---------------------------------------------------------------------------

/// The page's language (the `issho_lang` cookie).
pub(crate) fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::of(cookie(cookie_header(headers), LANG_COOKIE))
}

fn cookie_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

/// A signed-in request: the session's id, the session, and the access context of its token.
pub(crate) struct Signed {
    pub id: String,
    pub session: Session,
    pub ctx: AccessContext,
    pub lang: Lang,
}

impl Web {
    /// The signed-in user of this request, or the redirect to sign in. A token that no longer
    /// verifies (expired, revoked) ends the session.
    pub(crate) fn signed(&self, headers: &HeaderMap) -> Result<Signed, Box<Response>> {
        let lang = lang_of(headers);
        let Some(id) = cookie(cookie_header(headers), COOKIE) else {
            return Err(Box::new(redirect("/web/signin")));
        };
        let Some(session) = self.sessions.get(id) else {
            return Err(Box::new(redirect("/web/signin")));
        };
        if let Some(admit) = &self.admit
            && let Err(wait) = admit(&format!("Bearer {}", session.token))
        {
            let mut r = html(
                429,
                html::page(
                    lang,
                    t(lang, "error"),
                    Some(&session),
                    "/",
                    &format!(
                        "<p class=\"warning\">too many requests; retry in {wait} s / しばらくしてからもう一度お試しください（{wait} 秒後）</p>"
                    ),
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(Box::new(r));
        }
        match self.auth.verify(&session.token) {
            Ok(grant) => Ok(Signed {
                id: id.to_string(),
                session,
                ctx: AccessContext::token(grant),
                lang,
            }),
            Err(_) => {
                self.sessions.close(id);
                Err(Box::new(redirect("/web/signin")))
            }
        }
    }

    /// A form POST of a signed-in user: the CSRF token must match and the request must come
    /// from this origin.
    pub(crate) fn posted(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<Signed, Box<Response>> {
        let s = self.signed(headers)?;
        let origin_ok = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|o| o == self.origin);
        if !origin_ok || form.get("csrf") != Some(&s.session.csrf) {
            return Err(Box::new(html(
                403,
                html::page(
                    s.lang,
                    t(s.lang, "error"),
                    Some(&s.session),
                    "/",
                    "<p class=\"warning\">The form is stale or did not come from this site; reload the page. / フォームの有効期限が切れたか、このサイトからの送信ではありません。ページを再読み込みしてください。</p>",
                ),
            )));
        }
        Ok(s)
    }

    /// A person's form POST (CSRF and origin checked): the request, their Patient id and the
    /// form; anyone else is sent to the clinician's pages.
    pub(crate) fn person_post(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<(Signed, String, HashMap<String, String>), Box<Response>> {
        let f = form(body);
        let s = self.posted(headers, &f)?;
        match s.session.patient.clone() {
            Some(pid) => Ok((s, pid, f)),
            None => Err(Box::new(redirect("/clinician"))),
        }
    }

    /// A care provider's form POST about the record they opened (CSRF and origin checked):
    /// the request, that Patient id and the form; without an open record, back to
    /// `/clinician`.
    pub(crate) fn open_post(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<(Signed, String, HashMap<String, String>), Box<Response>> {
        let f = form(body);
        let s = self.posted(headers, &f)?;
        match s.session.open.clone() {
            Some(pid) => Ok((s, pid, f)),
            None => Err(Box::new(redirect("/clinician"))),
        }
    }

    /// After a form's work: the page at `to` with the message `done`, or the error.
    pub(crate) fn after(
        &self,
        s: &Signed,
        res: Result<(), FhirError>,
        done: &str,
        to: &str,
    ) -> Response {
        match res {
            Ok(()) => {
                self.flash(&s.id, done);
                redirect(to)
            }
            Err(e) => error_page(s.lang, Some(&s.session), &e),
        }
    }

    /// A message shown once on the next page.
    pub(crate) fn flash(&self, id: &str, text: &str) {
        let text = text.to_string();
        self.sessions.update(id, |s| s.flash = Some(text));
    }

    /// The message for this page (taken).
    pub(crate) fn take_flash(&self, id: &str) -> Option<String> {
        let mut out = None;
        self.sessions.update(id, |s| out = s.flash.take());
        out
    }
}

/// An `application/x-www-form-urlencoded` body.
pub(crate) fn form(body: &Bytes) -> HashMap<String, String> {
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

/// Run engine work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FhirError> + Send + 'static,
) -> Result<T, FhirError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(FhirError::internal("a page's work failed")))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---- pages ------------------------------------------------------------------------------

async fn css() -> Response {
    let mut r = Response::new(Body::from(html::CSS));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// `/web/lang/{ja|en}?back=/path`: the language cookie, then back (to a page of this site).
async fn language(
    State(web): State<Arc<Web>>,
    Path(lang): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = if lang == "en" { "en" } else { "ja" };
    // Back to one of this application's pages only (no redirect elsewhere).
    let back = q
        .get("back")
        .map(String::as_str)
        .filter(|b| ["/", "/portal", "/clinician"].contains(b))
        .unwrap_or("/");
    let mut r = redirect(back);
    if let Ok(v) =
        HeaderValue::from_str(&set_cookie(LANG_COOKIE, lang, web.secure, 365 * 24 * 3600))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn landing(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let signed = web.signed(&headers).ok();
    let lang = lang_of(&headers);
    let mut body = html::p(t(lang, "tagline"));
    match &signed {
        Some(s) => {
            let (href, label) = if s.session.role == Role::Patient {
                ("/portal", t(lang, "portal"))
            } else {
                ("/clinician", t(lang, "clinician"))
            };
            body.push_str(&format!(
                "<p><a class=\"button\" href=\"{href}\">{label}</a></p>\n"
            ));
        }
        None => body.push_str(&format!(
            "<p><a class=\"button\" href=\"/web/signin\">{}</a></p>\n",
            t(lang, "signin")
        )),
    }
    body.push_str(&format!(
        "<ul>\n<li>{}</li>\n<li>{}</li>\n</ul>\n",
        html::esc(t(lang, "landing-patient")),
        html::esc(t(lang, "landing-clinician"))
    ));
    html(
        200,
        html::page(
            lang,
            t(lang, "app"),
            signed.as_ref().map(|s| &s.session),
            "/",
            &body,
        ),
    )
}

/// Off to the authorization server (authorization code with PKCE S256).
async fn signin(State(web): State<Arc<Web>>) -> Response {
    let (state, verifier) = web.sessions.begin();
    let to = format!(
        "/auth/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}&scope={}&state={state}&code_challenge={}&code_challenge_method=S256&aud={}",
        enc(&format!("{}/web/callback", web.origin)),
        enc(SCOPES),
        issho_auth::pkce_s256(&verifier),
        enc(web.auth.issuer()),
    );
    // The sign-in belongs to this browser: the callback must come with this cookie (a code
    // and state made by someone else's sign-in cannot sign this browser in as them).
    let mut r = redirect(&to);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={state}; SameSite=Lax; Path=/web/callback; HttpOnly; Max-Age=600{}",
        session::SIGNIN_COOKIE,
        if web.secure { "; Secure" } else { "" }
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Back from the authorization server: the code for a token, and a session.
async fn callback(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(&headers);
    let fail = |why: &str| {
        html(
            400,
            html::page(
                lang,
                t(lang, "error"),
                None,
                "/",
                &format!(
                    "<p class=\"warning\">{}</p><p><a href=\"/web/signin\">{}</a></p>",
                    html::esc(why),
                    t(lang, "signin")
                ),
            ),
        )
    };
    let state = q.get("state").map(String::as_str).unwrap_or_default();
    let mine = cookie(cookie_header(&headers), session::SIGNIN_COOKIE) == Some(state);
    let Some(verifier) = Some(state)
        .filter(|_| mine)
        .and_then(|s| web.sessions.finish(s))
    else {
        return fail(
            "the sign-in expired or did not start in this browser / サインインの有効期限が切れたか、このブラウザーで始めたものではありません",
        );
    };
    let Some(code) = q.get("code").cloned() else {
        return fail("the authorization server did not sign you in / サインインできませんでした");
    };
    // A session this browser already had ends (and its token is revoked).
    if let Some(old) = cookie(cookie_header(&headers), COOKIE).and_then(|id| web.sessions.close(id))
    {
        let w = web.clone();
        let _ = tokio::task::spawn_blocking(move || w.auth.revoke_token(&old, CLIENT_ID)).await;
    }
    let w = web.clone();
    let res = tokio::task::spawn_blocking(move || {
        let redirect_uri = format!("{}/web/callback", w.origin);
        let tok = w
            .auth
            .exchange_code(&code, CLIENT_ID, &redirect_uri, &verifier)
            .map_err(|e| e.to_string())?;
        let token = tok["access_token"]
            .as_str()
            .ok_or("no access token")?
            .to_string();
        let grant = w.auth.verify(&token).map_err(|e| e.to_string())?;
        let user = w
            .auth
            .user(&grant.subject)
            .map_err(|e| e.to_string())?
            .ok_or("no such user")?;
        Ok::<_, String>((token, user, grant))
    })
    .await;
    let (token, user, grant) = match res {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return fail(&e),
        Err(_) => return fail("internal error"),
    };
    let home = if grant.role == Role::Patient {
        "/portal"
    } else {
        "/clinician"
    };
    let id = web
        .sessions
        .open(token, user.name, user.display, grant.role, grant.patient);
    let mut r = redirect(home);
    if let Ok(v) = HeaderValue::from_str(&set_cookie(COOKIE, &id, web.secure, 8 * 3600)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Sign out: the token revoked, the session gone.
async fn signout(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let s = match web.posted(&headers, &f) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Some(token) = web.sessions.close(&s.id) {
        let w = web.clone();
        let _ = tokio::task::spawn_blocking(move || w.auth.revoke_token(&token, CLIENT_ID)).await;
    }
    let mut r = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&set_cookie(COOKIE, "", web.secure, 0)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    /// The web application reaches data only through the engine (and so the gate): it
    /// depends on no store or database crate.
    #[test]
    fn the_web_reaches_data_through_the_engine_only() {
        let manifest = include_str!("../Cargo.toml");
        for forbidden in [
            "issho-store",
            "rusqlite",
            "postgres",
            "issho-audit",
            "issho-search",
        ] {
            assert!(
                !manifest.contains(forbidden),
                "issho-web must not depend on {forbidden}"
            );
        }
    }

    /// Every word a page asks for is in the table (in both languages).
    #[test]
    fn every_word_used_is_in_the_table() {
        for src in [
            include_str!("lib.rs"),
            include_str!("html.rs"),
            include_str!("portal.rs"),
            include_str!("phr.rs"),
            include_str!("sharing.rs"),
            include_str!("upload.rs"),
            include_str!("orders.rs"),
            include_str!("document.rs"),
            include_str!("clinician.rs"),
        ] {
            for part in src
                .split("t(lang, \"")
                .skip(1)
                .chain(src.split("t(s.lang, \"").skip(1))
            {
                let key = part.split('"').next().unwrap();
                assert_ne!(crate::i18n::t(crate::i18n::Lang::En, key), "?", "{key}");
            }
        }
    }
}
