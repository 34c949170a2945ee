//! What care providers write back into the open record at `/clinician`: a problem
//! (Condition), an allergy (AllergyIntolerance, its drug as a YJ code when known) and a
//! prescription (MedicationRequest), whose contraindication check — the same CDS service as
//! `order-sign` (`issho-medication-order-sign`), over the person's record across institutions
//! as the prescriber may see it — shows its warnings before the prescriber signs; and a
//! pharmacist's dispensing of a current prescription (MedicationDispense). Everything through
//! the engine with the provider's token: the gate decides who may write, and the engine marks
//! the data as their institution's.

use crate::html::{self, esc};
use crate::i18n::{Lang, t};
use crate::{Signed, Web, blocking, error_page};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use issho_access::Role;
use issho_engine::FhirError;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const YJ: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";

/// The forms for the open record (a doctor's; a pharmacist records dispensing instead).
pub(crate) fn forms(lang: Lang, s: &Signed) -> String {
    if !s.session.role.is_clinician() || s.session.role == Role::Pharmacist {
        return String::new();
    }
    let csrf = html::csrf(&s.session);
    format!(
        r#"<form method="post" action="/clinician/record" class="card">{csrf}<input type="hidden" name="kind" value="condition">
<div class="row"><div><label for="w-cond">{cond}</label><input id="w-cond" name="text" required size="24"></div>
<div><label for="w-onset">{when}</label><input id="w-onset" name="date" type="date"></div>
<div><button type="submit">{save}</button></div></div></form>
<form method="post" action="/clinician/record" class="card">{csrf}<input type="hidden" name="kind" value="allergy">
<div class="row"><div><label for="w-allergen">{allergen}</label><input id="w-allergen" name="text" required size="24"></div>
<div><label for="w-allergen-yj">{yj}</label><input id="w-allergen-yj" name="yj" size="14" pattern="[0-9A-Z]{{7,12}}"></div>
<div><button type="submit">{save}</button></div></div></form>
<form method="post" action="/clinician/prescribe" class="card">{csrf}
<div class="row"><div><label for="w-drug">{drug}</label><input id="w-drug" name="text" required size="24"></div>
<div><label for="w-drug-yj">{yj}</label><input id="w-drug-yj" name="yj" size="14" pattern="[0-9A-Z]{{7,12}}"></div>
<div><label for="w-dose">{dose}</label><input id="w-dose" name="dosage" size="20"></div>
<div><button type="submit">{check}</button></div></div></form>
"#,
        cond = t(lang, "w-condition"),
        when = t(lang, "when"),
        save = t(lang, "w-save"),
        allergen = t(lang, "w-allergen"),
        yj = t(lang, "w-yj"),
        drug = t(lang, "w-drug"),
        dose = t(lang, "w-dose"),
        check = t(lang, "w-check"),
    )
}

fn yj_of(f: &HashMap<String, String>) -> Result<Option<String>, FhirError> {
    match f.get("yj").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v)
            if (7..=12).contains(&v.len())
                && v.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()) =>
        {
            Ok(Some(v.to_string()))
        }
        Some(_) => Err(FhirError::bad_request(
            "a YJ code is 7 to 12 digits or capitals",
        )),
    }
}

fn text_of(f: &HashMap<String, String>, k: &str) -> Result<String, FhirError> {
    let v = f.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    if v.is_empty() || v.chars().count() > 200 {
        return Err(FhirError::bad_request(format!("{k}: 1 to 200 characters")));
    }
    Ok(v)
}

fn concept(text: &str, yj: Option<&str>) -> Value {
    match yj {
        Some(code) => {
            json!({"coding": [{"system": YJ, "code": code, "display": text}], "text": text})
        }
        None => json!({"text": text}),
    }
}

/// The draft prescription of a form.
fn draft(pid: &str, f: &HashMap<String, String>) -> Result<Value, FhirError> {
    let text = text_of(f, "text")?;
    let mut mr = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": format!("Patient/{pid}")},
        "medicationCodeableConcept": concept(&text, yj_of(f)?.as_deref()),
        "authoredOn": crate::upload::now()});
    if let Some(d) = f.get("dosage").map(|d| d.trim()).filter(|d| !d.is_empty()) {
        if d.chars().count() > 200 {
            return Err(FhirError::bad_request("dosage: at most 200 characters"));
        }
        mr["dosageInstruction"] = json!([{"text": d}]);
    }
    Ok(mr)
}

/// `POST /clinician/record`: a problem or an allergy in the open record.
pub(crate) async fn record(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pid, f) = match web.open_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let subject = json!({"reference": format!("Patient/{pid}")});
    let built = (|| -> Result<(&'static str, Value), FhirError> {
        let text = text_of(&f, "text")?;
        Ok(match f.get("kind").map(String::as_str) {
            Some("condition") => {
                let mut c = json!({"resourceType": "Condition", "subject": subject,
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "code": {"text": text}, "recordedDate": crate::upload::now()});
                if let Some(d) = f
                    .get("date")
                    .filter(|d| d.len() == 10 && issho_model::instant::parse_range(d).is_some())
                {
                    c["onsetDateTime"] = json!(d);
                }
                ("Condition", c)
            }
            Some("allergy") => (
                "AllergyIntolerance",
                json!({"resourceType": "AllergyIntolerance", "patient": subject,
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                    "category": ["medication"],
                    "code": concept(&text, yj_of(&f)?.as_deref()),
                    "recordedDate": crate::upload::now()}),
            ),
            _ => return Err(FhirError::bad_request("a problem or an allergy")),
        })
    })();
    let (rt, resource) = match built {
        Ok(x) => x,
        Err(e) => return error_page(lang, Some(&s.session), &e),
    };
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let res = blocking(move || engine.create(&ctx, rt, resource, None).map(|_| ())).await;
    web.after(&s, res, t(lang, "w-saved"), "/clinician#summary")
}

/// `POST /clinician/prescribe`: first the contraindication check of the draft (its warnings
/// and a form to sign it), then — with `sign` — the prescription itself.
pub(crate) async fn prescribe(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pid, f) = match web.open_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let order = match draft(&pid, &f) {
        Ok(o) => o,
        Err(e) => return error_page(lang, Some(&s.session), &e),
    };
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    if f.get("sign").map(String::as_str) == Some("1") {
        let res = blocking(move || {
            engine
                .create(&ctx, "MedicationRequest", order, None)
                .map(|_| ())
        })
        .await;
        return web.after(&s, res, t(lang, "w-prescribed"), "/clinician#summary");
    }
    let mut d = order.clone();
    d["id"] = json!("draft-1");
    d["status"] = json!("draft");
    let request = json!({"hook": "order-sign", "hookInstance": crate::session::random(),
        "context": {"userId": "Practitioner/unknown", "patientId": pid,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d}]}}});
    let cards =
        blocking(move || engine.cds_call(&ctx, "issho-medication-order-sign", &request)).await;
    let cards = match cards {
        Ok(c) => c["cards"].as_array().cloned().unwrap_or_default(),
        Err(e) => return error_page(lang, Some(&s.session), &e),
    };
    let mut body = String::new();
    if cards.is_empty() {
        body.push_str(&html::p(t(lang, "w-no-warnings")));
    } else {
        for c in &cards {
            body.push_str(&format!(
                "<p class=\"warning\" role=\"alert\">{}<br>{}</p>\n",
                esc(c["summary"].as_str().unwrap_or("")),
                esc(c["detail"].as_str().unwrap_or(""))
            ));
        }
    }
    let keep = |k: &str| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            esc(f.get(k).map(String::as_str).unwrap_or(""))
        )
    };
    body.push_str(&format!(
        "<p>{}</p><form method=\"post\" action=\"/clinician/prescribe\" class=\"card\">{}{}{}{}<input type=\"hidden\" name=\"sign\" value=\"1\"><button type=\"submit\">{}</button> <a href=\"/clinician\">{}</a></form>",
        esc(&format!(
            "{} {}",
            f.get("text").map(String::as_str).unwrap_or(""),
            f.get("dosage").map(String::as_str).unwrap_or("")
        )),
        html::csrf(&s.session),
        keep("text"),
        keep("yj"),
        keep("dosage"),
        t(lang, "w-sign"),
        t(lang, "back")
    ));
    crate::html(
        200,
        html::page(
            lang,
            t(lang, "w-check"),
            Some(&s.session),
            "/clinician",
            &body,
        ),
    )
}

/// The pharmacist's current prescriptions of the open record with a button to record their
/// dispensing.
pub(crate) fn dispense_list(lang: Lang, s: &Signed, doc: &Value) -> String {
    if s.session.role != Role::Pharmacist {
        return String::new();
    }
    let rows: Vec<Vec<String>> = doc["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "MedicationRequest" && r["status"] == "active")
        .map(|r| {
            vec![
                esc(&crate::portal::text_of(r)),
                format!(
                    "<form method=\"post\" action=\"/clinician/dispense\" class=\"inline\">{}<input type=\"hidden\" name=\"request\" value=\"{}\"><button type=\"submit\">{}</button></form>",
                    html::csrf(&s.session),
                    esc(r["id"].as_str().unwrap_or("")),
                    t(lang, "w-dispense")
                ),
            ]
        })
        .collect();
    if rows.is_empty() {
        return html::p(t(lang, "medications-none"));
    }
    html::table("", &[t(lang, "medications"), ""], &rows)
}

/// `POST /clinician/dispense`: a pharmacist records the dispensing of a prescription of the
/// open record (which they must be able to read).
pub(crate) async fn dispense(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pid, f) = match web.open_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let id = f.get("request").cloned().unwrap_or_default();
    let org = s.ctx.grant().and_then(|g| g.organization.clone());
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let res = blocking(move || {
        let req = engine
            .read(&ctx, "MedicationRequest", &id)?
            .json()
            .ok_or_else(|| FhirError::internal("no body"))?;
        if req["subject"]["reference"].as_str() != Some(format!("Patient/{pid}").as_str()) {
            return Err(FhirError::bad_request(
                "that prescription is not of the open record",
            ));
        }
        let mut md = json!({"resourceType": "MedicationDispense", "status": "completed",
            "subject": {"reference": format!("Patient/{pid}")},
            "medicationCodeableConcept": req["medicationCodeableConcept"],
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{id}")}],
            "whenHandedOver": crate::upload::now()});
        if let Some(o) = org {
            md["performer"] = json!([{"actor": {"reference": o}}]);
        }
        engine
            .create(&ctx, "MedicationDispense", md, None)
            .map(|_| ())
    })
    .await;
    web.after(&s, res, t(lang, "w-dispensed"), "/clinician#summary")
}
