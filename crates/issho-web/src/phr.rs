//! The measurements a person records on the portal (body weight, blood pressure, pulse,
//! glucose, temperature, SpO2, steps, sleep): a vital-signs Observation performed by the
//! person, marked as theirs by the engine, with a Provenance naming the portal — one
//! transaction.

use crate::html;
use crate::i18n::{Lang, t};
use crate::portal::{DIASTOLIC, LOINC, SYSTOLIC};
use crate::{Signed, Web, blocking, error_page};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use issho_engine::FhirError;
use serde_json::{Value, json};
use std::sync::Arc;

const UCUM: &str = "http://unitsofmeasure.org";

/// What a person may record: (key, LOINC code, unit, UCUM code).
const MEASURES: &[(&str, &str, &str, &str)] = &[
    ("bp", "85354-9", "mmHg", "mm[Hg]"),
    ("weight", "29463-7", "kg", "kg"),
    ("glucose", "2339-0", "mg/dL", "mg/dL"),
    ("pulse", "8867-4", "/min", "/min"),
    ("temperature", "8310-5", "°C", "Cel"),
    ("spo2", "59408-5", "%", "%"),
    ("steps", "55423-8", "steps/day", "/d"),
    ("sleep", "93832-4", "h", "h"),
];

pub(crate) fn measure_form(lang: Lang, s: &Signed) -> String {
    let options: String = MEASURES
        .iter()
        .map(|(k, _, unit, _)| format!("<option value=\"{k}\">{} ({unit})</option>", t(lang, k)))
        .collect();
    format!(
        r#"{explain}<form method="post" action="/portal/measure" class="card">{csrf}
<div class="row">
<div><label for="m-kind">{kind}</label><select id="m-kind" name="kind">{options}</select></div>
<div><label for="m-value">{value}</label><input id="m-value" name="value" inputmode="decimal" required size="8"></div>
<div><label for="m-value2">{value2}</label><input id="m-value2" name="value2" inputmode="decimal" size="8"></div>
<div><label for="m-at">{at}</label><input id="m-at" name="at" type="datetime-local" required></div>
<div><button type="submit">{save}</button></div>
</div></form>
"#,
        explain = html::p(t(lang, "phr-explain")),
        csrf = html::csrf(&s.session),
        kind = t(lang, "phr-kind"),
        value = t(lang, "phr-value"),
        value2 = t(lang, "phr-value2"),
        at = t(lang, "phr-at"),
        save = t(lang, "phr-save"),
    )
}

/// A Tokyo wall-clock time from a `datetime-local` field as a FHIR dateTime (+09:00).
fn local_time(at: &str) -> Option<String> {
    let b = at.as_bytes();
    let ok = b.len() >= 16 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':';
    if !ok {
        return None;
    }
    let t = if b.len() == 16 {
        format!("{at}:00+09:00")
    } else {
        format!("{}+09:00", &at[..19])
    };
    issho_model::instant::parse_range(&t).map(|_| t)
}

/// The Observation (and the Provenance naming the app) for a measurement the person enters.
pub(crate) fn measurement(
    pid: &str,
    kind: &str,
    value: &str,
    value2: &str,
    at: &str,
) -> Result<Value, String> {
    let (_, code, unit, ucum) = MEASURES
        .iter()
        .find(|(k, ..)| *k == kind)
        .ok_or("unknown kind of measurement")?;
    let num = |v: &str| -> Result<f64, String> {
        let x: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("'{v}' is not a number"))?;
        if x.is_finite() && (0.0..1e6).contains(&x) {
            Ok(x)
        } else {
            Err(format!("'{v}' is out of range"))
        }
    };
    let when = local_time(at).ok_or("the time is not a date and time")?;
    let q = |x: f64| json!({"value": x, "unit": unit, "system": UCUM, "code": ucum});
    let mut obs = json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{pid}")},
        "performer": [{"reference": format!("Patient/{pid}")}],
        "effectiveDateTime": when});
    if kind == "bp" {
        obs["component"] = json!([
            {"code": {"coding": [{"system": LOINC, "code": SYSTOLIC}]}, "valueQuantity": q(num(value)?)},
            {"code": {"coding": [{"system": LOINC, "code": DIASTOLIC}]}, "valueQuantity": q(num(value2)?)}
        ]);
    } else {
        obs["valueQuantity"] = q(num(value)?);
    }
    Ok(
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:9f0b5a52-6c1e-4d7a-9d0e-1b2c3d4e5f60", "resource": obs,
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Provenance",
                "target": [{"reference": "urn:uuid:9f0b5a52-6c1e-4d7a-9d0e-1b2c3d4e5f60"}],
                "recorded": when,
                "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                           "who": {"reference": format!("Patient/{pid}")}},
                          {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler"}]},
                           "who": {"display": "issho portal (entered by hand)"}}]},
             "request": {"method": "POST", "url": "Provenance"}}
        ]}),
    )
}

/// `POST /portal/measure`: a measurement the person entered.
pub(crate) async fn measure(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pid, f) = match web.person_post(&headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let g = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let bundle = match measurement(&pid, g("kind"), g("value"), g("value2"), g("at")) {
        Ok(b) => b,
        Err(e) => return error_page(lang, Some(&s.session), &FhirError::bad_request(e)),
    };
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let res = blocking(move || {
        engine
            .process_bundle(&ctx, bundle, None, issho_engine::Return::Minimal)
            .map(|_| ())
    })
    .await;
    web.after(&s, res, t(lang, "phr-saved"), "/portal#results")
}
