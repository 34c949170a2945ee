//! `/clinician`: care providers find a person (name in kanji or kana, birth date, insurance
//! member ID) among those their institution may see, open the record (kept in the session,
//! never in a URL) and read its summary across institutions — the six items for doctors, the
//! pharmacy summary for pharmacists, the emergency summary for emergency physicians — with
//! the results charted; an emergency physician whose institution may not see the record can
//! open it by breaking the glass, stating why (recorded, and told to the person).

use crate::html::{self, esc, section};
use crate::i18n::{Lang, t};
use crate::portal::{charts, date_of, institution_names, institution_ref, text_of};
use crate::{Signed, Web, blocking, error_page, form, html as respond, redirect};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use issho_access::Role;
use issho_engine::FhirError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The JP Core insurance member ID system.
pub(crate) const MEMBER_ID: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

fn find_form(lang: Lang, s: &Signed) -> String {
    format!(
        r#"<form method="post" action="/clinician" class="card">{csrf}
<div class="row">
<div><label for="f-name">{name}</label><input id="f-name" name="name" size="16"></div>
<div><label for="f-birth">{birth}</label><input id="f-birth" name="birthdate" type="date"></div>
<div><label for="f-member">{member}</label><input id="f-member" name="member" size="14"></div>
<div><button type="submit">{search}</button></div>
</div></form>
"#,
        csrf = html::csrf(&s.session),
        name = t(lang, "search-name"),
        birth = t(lang, "search-birth"),
        member = t(lang, "search-member"),
        search = t(lang, "search"),
    )
}

/// The persons this clinician's institution may see now (in care, as far as they share),
/// most recently changed first, each with a button to open the record.
async fn in_care(web: &Arc<Web>, s: &Signed) -> String {
    let lang = s.lang;
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let found = blocking(move || {
        engine.search(
            &ctx,
            Some("Patient"),
            &[
                ("_count".into(), "20".into()),
                ("_sort".into(), "-_lastUpdated".into()),
            ],
            false,
        )
    })
    .await;
    match found {
        Ok(r) if r.matches.is_empty() => html::p(t(lang, "in-care-none")),
        Ok(r) => patient_rows(lang, s, r.matches.iter().filter_map(|m| m.json())),
        Err(e) => format!(
            "<p class=\"warning\">{}</p>",
            esc(&e
                .issues
                .iter()
                .map(|i| i.diagnostics.clone())
                .collect::<Vec<_>>()
                .join(" "))
        ),
    }
}

/// Patients as rows with a button to open each record.
fn patient_rows(lang: Lang, s: &Signed, patients: impl Iterator<Item = Value>) -> String {
    let rows: Vec<Vec<String>> = patients
        .map(|p| {
            vec![
                esc(&display_name(&p)),
                esc(p["birthDate"].as_str().unwrap_or("")),
                esc(p["gender"].as_str().unwrap_or("")),
                format!(
                    "<form method=\"post\" action=\"/clinician/open\" class=\"inline\">{}<input type=\"hidden\" name=\"patient\" value=\"{}\"><button type=\"submit\">{}</button></form>",
                    html::csrf(&s.session),
                    esc(p["id"].as_str().unwrap_or("")),
                    t(lang, "open")
                ),
            ]
        })
        .collect();
    html::table(
        "",
        &[t(lang, "search-name"), t(lang, "search-birth"), "", ""],
        &rows,
    )
}

/// An emergency physician opens the record of a person their institution does not care for,
/// known by the insurance card: member ID, birth date, and why.
fn emergency_form(lang: Lang, s: &Signed) -> String {
    format!(
        r#"<form method="post" action="/clinician/emergency" class="card">{csrf}
<div class="row">
<div><label for="e-member">{member}</label><input id="e-member" name="member" size="14" required></div>
<div><label for="e-birth">{birth}</label><input id="e-birth" name="birthdate" type="date" required></div>
</div>
<label for="e-reason">{reason}</label><textarea id="e-reason" name="reason" rows="2" cols="40" required></textarea>
<p><button type="submit">{open}</button></p></form>
"#,
        csrf = html::csrf(&s.session),
        member = t(lang, "search-member"),
        birth = t(lang, "search-birth"),
        reason = t(lang, "bg-reason"),
        open = t(lang, "bg-open"),
    )
}

pub(crate) fn display_name(p: &Value) -> String {
    p["name"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            n["text"].as_str().map(str::to_string).unwrap_or_else(|| {
                let given: Vec<&str> = n["given"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!("{} {}", n["family"].as_str().unwrap_or(""), given.join(" "))
            })
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The summary kind for a role.
fn kind_of(role: Role) -> &'static str {
    match role {
        Role::Pharmacist => "pharmacy",
        Role::EmergencyPhysician => "emergency",
        _ => "six-items",
    }
}

/// A summary document's sections as tables.
fn render_summary(lang: Lang, doc: &Value, names: &HashMap<String, String>) -> String {
    let entries: Vec<&Value> = doc["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect();
    let by_ref: HashMap<String, &Value> = entries
        .iter()
        .filter_map(|r| {
            Some((
                format!("{}/{}", r["resourceType"].as_str()?, r["id"].as_str()?),
                *r,
            ))
        })
        .collect();
    let Some(comp) = entries.iter().find(|r| r["resourceType"] == "Composition") else {
        return String::new();
    };
    let mut out = String::new();
    for sec in comp["section"].as_array().into_iter().flatten() {
        let rows: Vec<Vec<String>> = sec["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["reference"].as_str())
            .filter_map(|r| {
                by_ref
                    .get(r.trim_start_matches("urn:uuid:"))
                    .copied()
                    .or_else(|| {
                        by_ref
                            .values()
                            .find(|v| r.ends_with(&format!("/{}", v["id"].as_str().unwrap_or("-"))))
                            .copied()
                    })
            })
            .map(|r| {
                let inst = institution_ref(r)
                    .map(|o| names.get(&o).cloned().unwrap_or(o))
                    .unwrap_or_default();
                vec![
                    esc(&date_of(r)
                        .unwrap_or("")
                        .chars()
                        .take(10)
                        .collect::<String>()),
                    esc(&text_of(r)),
                    esc(&inst),
                ]
            })
            .collect();
        let title = sec["title"].as_str().unwrap_or("");
        if rows.is_empty() {
            out.push_str(&format!(
                "<h3>{}</h3><p class=\"muted\">—</p>\n",
                esc(title)
            ));
        } else {
            out.push_str(&format!("<h3>{}</h3>\n", esc(title)));
            out.push_str(&html::table(
                "",
                &[t(lang, "when"), t(lang, "what"), t(lang, "institution")],
                &rows,
            ));
        }
    }
    out
}

/// The open record: its summary and charts, or (not open to this institution) the
/// emergency access form for an emergency physician.
async fn open_record(web: &Arc<Web>, s: &Signed, pid: String) -> String {
    let lang = s.lang;
    let kind = kind_of(s.session.role);
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let base = format!("{}/fhir", web.origin);
    let res = blocking(move || {
        let doc = engine.summary(&ctx, &pid, kind, &base)?;
        let obs = engine.search(
            &ctx,
            Some("Observation"),
            &[
                ("patient".into(), format!("Patient/{pid}")),
                ("_count".into(), "1000".into()),
            ],
            false,
        )?;
        let obs: Vec<Value> = obs.matches.iter().filter_map(|x| x.json()).collect();
        let mut all: Vec<Value> = doc["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .collect();
        all.extend(obs.iter().cloned());
        let names = institution_names(&engine, &ctx, &all)?;
        let patient = engine
            .read(&ctx, "Patient", &pid)?
            .json()
            .unwrap_or_default();
        let docs: Vec<Value> = engine
            .search(
                &ctx,
                Some("Composition"),
                &[
                    ("patient".into(), format!("Patient/{pid}")),
                    ("_count".into(), "50".into()),
                ],
                false,
            )?
            .matches
            .iter()
            .filter_map(|m| m.json())
            .collect();
        Ok((doc, obs, names, patient, docs))
    })
    .await;
    match res {
        Ok((doc, obs, names, patient, docs)) => {
            let heading = format!(
                "{} ({})",
                display_name(&patient),
                patient["birthDate"].as_str().unwrap_or("")
            );
            let refs: Vec<&Value> = obs.iter().collect();
            let title = match kind {
                "pharmacy" => t(lang, "pharmacy"),
                "emergency" => t(lang, "emergency"),
                _ => t(lang, "summary"),
            };
            let write = match (
                crate::orders::forms(lang, s),
                crate::orders::dispense_list(lang, s, &doc),
            ) {
                (f, d) if f.is_empty() && d.is_empty() => String::new(),
                (f, d) => section("write", t(lang, "w-section"), &format!("{f}{d}")),
            };
            format!(
                "<h2>{}</h2>\n{}{}{}{}",
                esc(&heading),
                section("summary", title, &render_summary(lang, &doc, &names)),
                write,
                section("results", t(lang, "results"), &charts(lang, &refs)),
                section(
                    "documents",
                    t(lang, "documents"),
                    &crate::document::list_of(lang, s, &docs, "/clinician/document")
                )
            )
        }
        Err(e) if matches!(e.status, 403 | 404) => {
            let mut out = html::p(t(lang, "not-in-care"));
            if s.session.role == Role::EmergencyPhysician {
                out.push_str(&format!(
                    r#"<form method="post" action="/clinician/break-glass" class="card">{csrf}
<label for="bg-reason">{reason}</label><textarea id="bg-reason" name="reason" rows="2" cols="40" required></textarea>
<p><button type="submit">{open}</button></p></form>
"#,
                    csrf = html::csrf(&s.session),
                    reason = t(lang, "bg-reason"),
                    open = t(lang, "bg-open"),
                ));
            }
            out
        }
        Err(e) => format!(
            "<p class=\"warning\">{}</p>",
            esc(&e
                .issues
                .iter()
                .map(|i| i.diagnostics.clone())
                .collect::<Vec<_>>()
                .join(" "))
        ),
    }
}

async fn render(web: &Arc<Web>, s: &Signed, found: Option<String>) -> Response {
    let lang = s.lang;
    if s.session.role == Role::Patient {
        return redirect("/portal");
    }
    let mut body = String::new();
    if let Some(f) = web.take_flash(&s.id) {
        body.push_str(&format!(
            "<p class=\"notice\" role=\"status\">{}</p>\n",
            esc(&f)
        ));
    }
    body.push_str(&section("find", t(lang, "patients"), &find_form(lang, s)));
    if s.session.role == Role::EmergencyPhysician {
        body.push_str(&section(
            "emergency-open",
            t(lang, "break-glass"),
            &emergency_form(lang, s),
        ));
    }
    if let Some(f) = found {
        body.push_str(&f);
    } else if s.session.open.is_none() {
        body.push_str(&section(
            "in-care",
            t(lang, "in-care"),
            &in_care(web, s).await,
        ));
    }
    if let Some(pid) = s.session.open.clone() {
        body.push_str(&open_record(web, s, pid).await);
    }
    respond(
        200,
        html::page(
            lang,
            t(lang, "clinician"),
            Some(&s.session),
            "/clinician",
            &body,
        ),
    )
}

pub(crate) async fn page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match web.signed(&headers) {
        Ok(s) => render(&web, &s, None).await,
        Err(r) => *r,
    }
}

/// `POST /clinician`: find persons (as far as this clinician may see them).
pub(crate) async fn find(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let s = match web.posted(&headers, &f) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let mut params: Vec<(String, String)> = Vec::new();
    let get = |k: &str| {
        f.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(n) = get("name") {
        params.push(("name".into(), n));
    }
    if let Some(b) = get("birthdate") {
        params.push(("birthdate".into(), b));
    }
    if let Some(m) = get("member") {
        params.push(("identifier".into(), format!("{MEMBER_ID}|{m}")));
    }
    if params.is_empty() {
        return render(&web, &s, None).await;
    }
    params.push(("_count".into(), "50".into()));
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let found = blocking(move || engine.search(&ctx, Some("Patient"), &params, false)).await;
    let list = match found {
        Ok(r) if r.matches.is_empty() => html::p(t(lang, "search-none")),
        Ok(r) => patient_rows(lang, &s, r.matches.iter().filter_map(|m| m.json())),
        Err(e) => return error_page(lang, Some(&s.session), &e),
    };
    render(&web, &s, Some(list)).await
}

/// `POST /clinician/open`: the record to show (kept in the session).
pub(crate) async fn open(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let s = match web.posted(&headers, &f) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let pid = f.get("patient").cloned().filter(|p| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    });
    match pid {
        Some(p) => {
            web.sessions.update(&s.id, |x| x.open = Some(p));
            redirect("/clinician#summary")
        }
        None => error_page(
            s.lang,
            Some(&s.session),
            &FhirError::bad_request("no such patient"),
        ),
    }
}

/// `POST /clinician/break-glass`: an emergency physician opens the open record, stating why.
pub(crate) async fn break_glass(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pid, f) = match web.open_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let reason = f.get("reason").cloned().unwrap_or_default();
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    match blocking(move || engine.break_glass(&ctx, &pid, &reason)).await {
        Ok(()) => {
            web.flash(&s.id, t(lang, "bg-opened"));
            redirect("/clinician#summary")
        }
        Err(e) => error_page(lang, Some(&s.session), &e),
    }
}

/// `POST /clinician/emergency`: break the glass for the person of a member ID and birth date;
/// their record is then the open one.
pub(crate) async fn emergency(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let s = match web.posted(&headers, &f) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let g = |k: &str| f.get(k).cloned().unwrap_or_default();
    let (member, birth, reason) = (g("member"), g("birthdate"), g("reason"));
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    match blocking(move || engine.break_glass_identified(&ctx, &member, &birth, &reason)).await {
        Ok(pid) => {
            web.sessions.update(&s.id, |x| x.open = Some(pid));
            web.flash(&s.id, t(lang, "bg-opened"));
            redirect("/clinician#summary")
        }
        Err(e) => error_page(lang, Some(&s.session), &e),
    }
}
