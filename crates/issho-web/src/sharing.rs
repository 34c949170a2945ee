//! The person's sharing settings and research participation on the portal: the privacy
//! Consents in force (undone by making them inactive), a refusal of an institution — as the
//! one who would see the record, or as the holder of data not to be shared — and the research
//! decision (the one written last is in force). Written as the person's own Consents through
//! the engine, which refuses what the gate could not enforce.

use crate::html::{self, esc};
use crate::i18n::{Lang, t};
use crate::portal::{LOINC, Record};
use crate::{Signed, Web, blocking, error_page};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use issho_engine::FhirError;
use serde_json::{Value, json};
use std::sync::Arc;

const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const CUSTODIAN: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The person's privacy Consents in force and the form to refuse an institution.
pub(crate) fn sharing(lang: Lang, s: &Signed, rec: &Record) -> String {
    let mut out = html::p(t(lang, "consent-explain"));
    // The agreement to share (what a deployment that shares only after consent waits for).
    let agreed = rec.of("Consent").any(|c| {
        c["status"] == "active"
            && is_scope(c, "patient-privacy")
            && c["provision"]["type"] == "permit"
    });
    out.push_str(&if agreed {
        html::p(t(lang, "consent-agreed"))
    } else {
        format!(
            "<form method=\"post\" action=\"/portal/consent\" class=\"card\">{}<input type=\"hidden\" name=\"agree\" value=\"1\"><p>{}</p><button type=\"submit\">{}</button></form>\n",
            html::csrf(&s.session),
            esc(t(lang, "consent-agree-explain")),
            t(lang, "consent-agree")
        )
    });
    let active: Vec<&Value> = rec
        .of("Consent")
        .filter(|c| c["status"] == "active" && is_scope(c, "patient-privacy"))
        .collect();
    let mut rows = Vec::new();
    for c in &active {
        for label in label_refusals(c) {
            let key = format!("label-{label}");
            rows.push(vec![
                esc(t(lang, &key)),
                esc(t(lang, "consent-refuse-label")),
                withdraw_button(lang, s, c),
            ]);
        }
        for (org, custodian) in refusals(c) {
            let name = rec.names.get(&org).cloned().unwrap_or(org.clone());
            let what = if custodian {
                t(lang, "consent-refuse-source")
            } else {
                t(lang, "consent-refuse-org")
            };
            rows.push(vec![esc(&name), esc(what), withdraw_button(lang, s, c)]);
        }
    }
    if rows.is_empty() {
        out.push_str(&html::p(t(lang, "consent-none")));
    } else {
        out.push_str(&html::table(
            t(lang, "consent-active"),
            &[t(lang, "institution"), t(lang, "what"), ""],
            &rows,
        ));
    }
    let mut orgs: Vec<(&String, &String)> = rec.names.iter().collect();
    orgs.sort_by(|a, b| a.1.cmp(b.1));
    let options: String = orgs
        .iter()
        .map(|(id, name)| format!("<option value=\"{}\">{}</option>", esc(id), esc(name)))
        .collect();
    out.push_str(&format!(
        r#"<form method="post" action="/portal/consent" class="card" id="refuse-org">{csrf}
<label for="c-org">{inst}</label><select id="c-org" name="organization">{options}</select>
<fieldset><legend>{what}</legend>
<label><input type="radio" name="kind" value="recipient" checked> {org}</label>
<label><input type="radio" name="kind" value="custodian"> {src}</label>
</fieldset>
<button type="submit">{save}</button></form>
<form method="post" action="/portal/consent" class="card" id="refuse-label">{csrf}
<label for="c-label">{label}</label><select id="c-label" name="label">{labels}</select>
<button type="submit">{save}</button></form>
"#,
        label = t(lang, "consent-refuse-label"),
        labels = LABELS
            .iter()
            .map(|l| format!(
                "<option value=\"{l}\">{}</option>",
                t(lang, &format!("label-{l}"))
            ))
            .collect::<String>(),
        csrf = html::csrf(&s.session),
        inst = t(lang, "institution"),
        what = t(lang, "what"),
        org = t(lang, "consent-refuse-org"),
        src = t(lang, "consent-refuse-source"),
        save = t(lang, "consent-save"),
    ));
    out
}

/// A Consent of the person (`Patient/pid`) in force: its scope (`patient-privacy` or
/// `research`), policy rule (`OPTIN`/`OPTOUT`) and provision.
fn person_consent(pid: &str, scope: &str, rule: &str, provision: Value) -> Value {
    json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": scope}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{pid}")},
        "policyRule": {"coding": [{"system": ACT_CODE, "code": rule}]},
        "provision": provision})
}

/// The categories a person may refuse to share with anyone (v3 ActCode sensitivity labels
/// the engine enforces on the resources that carry them).
const LABELS: [&str; 4] = ["PSY", "HIV", "STD", "SUD"];
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn withdraw_button(lang: Lang, s: &Signed, c: &Value) -> String {
    format!(
        "<form method=\"post\" action=\"/portal/consent\" class=\"inline\">{}<input type=\"hidden\" name=\"withdraw\" value=\"{}\"><button class=\"secondary\" type=\"submit\">{}</button></form>",
        html::csrf(&s.session),
        esc(c["id"].as_str().unwrap_or("")),
        t(lang, "consent-withdraw")
    )
}

/// The categories a privacy Consent refuses to everyone (deny provisions with labels and no
/// actor).
fn label_refusals(c: &Value) -> Vec<&'static str> {
    let mut provisions = vec![&c["provision"]];
    provisions.extend(c["provision"]["provision"].as_array().into_iter().flatten());
    provisions
        .into_iter()
        .filter(|p| p["type"] == "deny" && p["actor"].is_null())
        .flat_map(|p| p["securityLabel"].as_array().into_iter().flatten())
        .filter(|l| l["system"] == ACT_CODE)
        .filter_map(|l| LABELS.iter().find(|x| l["code"] == **x).copied())
        .collect()
}

fn is_scope(c: &Value, code: &str) -> bool {
    c["scope"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x["system"] == CONSENT_SCOPE && x["code"] == code)
}

/// The organizations a privacy Consent refuses: (organization, as custodian).
fn refusals(c: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut provisions = vec![&c["provision"]];
    provisions.extend(c["provision"]["provision"].as_array().into_iter().flatten());
    for p in provisions.into_iter().filter(|p| p["type"] == "deny") {
        for a in p["actor"].as_array().into_iter().flatten() {
            if let Some(r) = a["reference"]["reference"].as_str() {
                let custodian = a["role"]["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["system"] == CUSTODIAN && x["code"] == "CST");
                out.push((r.to_string(), custodian));
            }
        }
    }
    out
}

/// The person's research decision in force (the one written last), as a words key.
pub(crate) fn research_section(lang: Lang, s: &Signed, rec: &Record) -> String {
    let latest = rec
        .of("Consent")
        .filter(|c| c["status"] == "active" && is_scope(c, "research"))
        .max_by_key(|c| c["meta"]["lastUpdated"].as_str().unwrap_or("").to_string());
    let now = match latest.map(|c| c["provision"]["type"].as_str().unwrap_or("")) {
        Some("permit") => "research-now-in",
        Some("deny") => "research-now-out",
        _ => "research-now-default",
    };
    format!(
        r#"{explain}<p><strong>{now}</strong></p>
<form method="post" action="/portal/research" class="row">{csrf}
<button type="submit" name="decision" value="permit">{inn}</button>
<button type="submit" name="decision" value="deny" class="secondary">{out}</button></form>
"#,
        explain = html::p(t(lang, "research-explain")),
        now = t(lang, now),
        csrf = html::csrf(&s.session),
        inn = t(lang, "research-in"),
        out = t(lang, "research-out"),
    )
}

/// `POST /portal/consent`: refuse an institution (as recipient or as the holder of data), or
/// withdraw a refusal.
pub(crate) async fn consent(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pid, f) = match web.person_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let res = if let Some(id) = f.get("withdraw").cloned() {
        blocking(move || {
            let cur = engine.read(&ctx, "Consent", &id)?;
            let mut c = cur.json().ok_or_else(|| FhirError::internal("no body"))?;
            // Only a sharing refusal of this person's, as the portal lists them.
            if c["patient"]["reference"].as_str() != Some(format!("Patient/{pid}").as_str())
                || !is_scope(&c, "patient-privacy")
            {
                return Err(FhirError::bad_request("not one of your sharing settings"));
            }
            let version = format!("W/\"{}\"", cur.version);
            c["status"] = json!("inactive");
            engine
                .update(&ctx, "Consent", &id, c, Some(version))
                .map(|_| ())
        })
        .await
    } else {
        if f.get("agree").map(String::as_str) == Some("1") {
            let c = person_consent(&pid, "patient-privacy", "OPTIN", json!({"type": "permit"}));
            let res = blocking(move || engine.create(&ctx, "Consent", c, None).map(|_| ())).await;
            return web.after(&s, res, t(lang, "consent-agreed"), "/portal#consent");
        }
        if let Some(label) = f.get("label") {
            let Some(code) = LABELS.iter().find(|l| *l == label) else {
                return error_page(
                    lang,
                    Some(&s.session),
                    &FhirError::bad_request("not a category the portal offers"),
                );
            };
            let c = person_consent(
                &pid,
                "patient-privacy",
                "OPTOUT",
                json!({"type": "permit", "provision": [{"type": "deny",
                    "securityLabel": [{"system": ACT_CODE, "code": code}]}]}),
            );
            let res = blocking(move || engine.create(&ctx, "Consent", c, None).map(|_| ())).await;
            return web.after(&s, res, t(lang, "consent-active"), "/portal#consent");
        }
        let org = f.get("organization").cloned().unwrap_or_default();
        let id_ok = org.strip_prefix("Organization/").is_some_and(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        });
        if !id_ok {
            return error_page(
                lang,
                Some(&s.session),
                &FhirError::bad_request("choose an institution"),
            );
        }
        let mut actor = json!({"reference": {"reference": org}});
        if f.get("kind").map(String::as_str) == Some("custodian") {
            actor["role"] = json!({"coding": [{"system": CUSTODIAN, "code": "CST"}]});
        } else {
            actor["role"] = json!({"coding": [{"system": CUSTODIAN, "code": "IRCP"}]});
        }
        let c = person_consent(
            &pid,
            "patient-privacy",
            "OPTOUT",
            json!({"type": "permit", "provision": [{"type": "deny", "actor": [actor]}]}),
        );
        blocking(move || engine.create(&ctx, "Consent", c, None).map(|_| ())).await
    };
    web.after(&s, res, t(lang, "consent-active"), "/portal#consent")
}

/// `POST /portal/research`: take part in research or not.
pub(crate) async fn research(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pid, f) = match web.person_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let decision = match f.get("decision").map(String::as_str) {
        Some(d @ ("permit" | "deny")) => d.to_string(),
        _ => {
            return error_page(
                lang,
                Some(&s.session),
                &FhirError::bad_request("permit or deny"),
            );
        }
    };
    let c = person_consent(
        &pid,
        "research",
        if decision == "permit" {
            "OPTIN"
        } else {
            "OPTOUT"
        },
        json!({"type": decision}),
    );
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let key = if decision == "permit" {
        "research-now-in"
    } else {
        "research-now-out"
    };
    let res = blocking(move || engine.create(&ctx, "Consent", c, None).map(|_| ())).await;
    web.after(&s, res, t(lang, key), "/portal#research")
}

/// The apps the person allowed to act for them (not this application itself), each with what
/// it may do in words and a button to withdraw it.
pub(crate) fn apps_section(web: &Web, lang: Lang, s: &Signed) -> String {
    let apps = web
        .auth
        .allowed_apps(&s.session.user)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.client_id != crate::CLIENT_ID)
        .collect::<Vec<_>>();
    if apps.is_empty() {
        return html::p(t(lang, "apps-none"));
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            let may: Vec<String> = issho_auth::explain(&a.scope)
                .into_iter()
                .map(|(ja, en)| esc(if lang == Lang::Ja { &ja } else { &en }))
                .collect();
            vec![
                esc(&a.client_name),
                may.join("<br>"),
                esc(&crate::chart::date_of(a.last as f64 / 86_400.0)),
                format!(
                    "<form method=\"post\" action=\"/portal/apps\" class=\"inline\">{}<input type=\"hidden\" name=\"client\" value=\"{}\"><button class=\"secondary\" type=\"submit\">{}</button></form>",
                    html::csrf(&s.session),
                    esc(&a.client_id),
                    t(lang, "apps-withdraw")
                ),
            ]
        })
        .collect();
    html::table(
        "",
        &[
            t(lang, "apps-name"),
            t(lang, "apps-may"),
            t(lang, "when"),
            "",
        ],
        &rows,
    )
}

/// `POST /portal/apps`: withdraw an app the person allowed (its tokens stop working).
pub(crate) async fn withdraw_app(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, _pid, f) = match web.person_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let client = f.get("client").cloned().unwrap_or_default();
    let (w, user) = (web.clone(), s.session.user.clone());
    let res = blocking(move || match w.auth.withdraw_app(&user, &client) {
        Ok(true) => Ok(()),
        Ok(false) => Err(FhirError::bad_request(
            "no such app among those you allowed",
        )),
        Err(e) => Err(FhirError::internal(e.to_string())),
    })
    .await;
    web.after(&s, res, t(lang, "apps-withdrawn"), "/portal#apps")
}
