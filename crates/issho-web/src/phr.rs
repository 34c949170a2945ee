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
        format!("{}+09:00", at.get(..19)?)
    };
    issho_model::instant::parse_range(&t).map(|_| t)
}

/// One measurement: its kind (a key of [`MEASURES`]), value (and for blood pressure the
/// diastolic), when, and the device or app it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    pub kind: &'static str,
    pub value: f64,
    pub value2: Option<f64>,
    pub at: String,
    pub device: String,
}

impl Reading {
    pub(crate) fn new(
        kind: &str,
        value: f64,
        value2: Option<f64>,
        at: &str,
        device: &str,
    ) -> Reading {
        let kind = MEASURES
            .iter()
            .find(|(k, ..)| *k == kind)
            .map(|(k, ..)| *k)
            .expect("a kind of MEASURES");
        Reading {
            kind,
            value,
            value2,
            at: at.to_string(),
            device: device.to_string(),
        }
    }
}

/// The LOINC display of a kind of measurement.
fn display(kind: &str) -> &'static str {
    match kind {
        "bp" => "Blood pressure panel with all children optional",
        "weight" => "Body weight",
        "glucose" => "Glucose [Mass/volume] in Blood",
        "pulse" => "Heart rate",
        "temperature" => "Body temperature",
        "spo2" => "Oxygen saturation in Arterial blood by Pulse oximetry",
        "steps" => "Number of steps in unspecified time Pedometer",
        "sleep" => "Sleep duration",
        _ => "",
    }
}

/// The code an Observation is grouped by (its first coding's code, or its text).
pub(crate) fn measure_code(o: &Value) -> String {
    o["code"]["coding"][0]["code"]
        .as_str()
        .or(o["code"]["text"].as_str())
        .unwrap_or("")
        .to_string()
}

/// A reading as a vital-signs Observation performed by the person (the device, when named,
/// as `device.display`).
pub(crate) fn reading_observation(pid: &str, r: &Reading) -> Value {
    let (_, code, unit, ucum) = MEASURES
        .iter()
        .find(|(k, ..)| *k == r.kind)
        .expect("a kind of MEASURES");
    let q = |x: f64| json!({"value": x, "unit": unit, "system": UCUM, "code": ucum});
    let mut obs = json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display(r.kind)}],
            "text": crate::i18n::t(crate::i18n::Lang::Ja, r.kind)},
        "subject": {"reference": format!("Patient/{pid}")},
        "performer": [{"reference": format!("Patient/{pid}")}],
        "effectiveDateTime": r.at});
    if r.kind == "bp" {
        obs["component"] = json!([
            {"code": {"coding": [{"system": LOINC, "code": SYSTOLIC}]}, "valueQuantity": q(r.value)},
            {"code": {"coding": [{"system": LOINC, "code": DIASTOLIC}]}, "valueQuantity": q(r.value2.unwrap_or_default())}
        ]);
    } else {
        obs["valueQuantity"] = q(r.value);
    }
    if !r.device.is_empty() {
        obs["device"] = json!({"display": r.device});
    }
    obs
}

/// The Observation (and the Provenance naming the app) for a measurement the person enters.
pub(crate) fn measurement(
    pid: &str,
    kind: &str,
    value: &str,
    value2: &str,
    at: &str,
) -> Result<Value, String> {
    if !MEASURES.iter().any(|(k, ..)| *k == kind) {
        return Err("unknown kind of measurement".into());
    }
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
    let second = if kind == "bp" {
        Some(num(value2)?)
    } else {
        None
    };
    let obs = reading_observation(pid, &Reading::new(kind, num(value)?, second, &when, ""));
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

/// The upload form (a device's CSV or JSON export, or FHIR Observations).
pub(crate) fn upload_form(lang: Lang, s: &Signed) -> String {
    format!(
        r#"<form method="post" action="/portal/upload" enctype="multipart/form-data" class="card">{csrf}
<label for="u-file">{file}</label><input id="u-file" name="file" type="file" accept=".csv,.json,.ndjson,text/csv,application/json" required>
<p class="muted">{formats}</p>
<button type="submit">{send}</button></form>
"#,
        csrf = html::csrf(&s.session),
        file = t(lang, "upload-file"),
        formats = t(lang, "upload-formats"),
        send = t(lang, "upload-send"),
    )
}

/// `POST /portal/upload`: a device's export (multipart/form-data: `csrf` and `file`).
pub(crate) async fn upload(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Signed in first: nothing of an anonymous body is read.
    if let Err(r) = web.signed(&headers) {
        return *r;
    }
    let parts = crate::multipart::parts(&headers, &body);
    let fields: std::collections::HashMap<String, String> = parts
        .iter()
        .filter(|p| p.name == "csrf")
        .map(|p| {
            (
                p.name.clone(),
                String::from_utf8_lossy(&p.data).into_owned(),
            )
        })
        .collect();
    let s = match web.posted(&headers, &fields) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let Some(pid) = s.session.patient.clone() else {
        return crate::redirect("/clinician");
    };
    let Some(file) = parts.iter().find(|p| p.name == "file") else {
        return error_page(
            lang,
            Some(&s.session),
            &FhirError::bad_request("no file was sent"),
        );
    };
    let name = file.filename.clone().unwrap_or_default();
    let Ok(text) = std::str::from_utf8(&file.data) else {
        return error_page(
            lang,
            Some(&s.session),
            &FhirError::bad_request("the file is not UTF-8 text"),
        );
    };
    let bundle = match crate::upload::observations(text, &pid) {
        Ok(list) => crate::upload::transaction(&pid, list),
        Err(e) => return error_page(lang, Some(&s.session), &FhirError::bad_request(e)),
    };
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let res = blocking(move || {
        engine
            .process_bundle(&ctx, bundle, None, issho_engine::Return::Minimal)
            .map(|_| ())
    })
    .await;
    let done = format!("{} ({name})", t(lang, "upload-done"));
    web.after(&s, res, &done, "/portal#results")
}
