//! `/portal`: the person's own lifelong record — every institution's data as one timeline,
//! results charted over time with their reference ranges, current medicines, allergies,
//! documents, the measurements the person records, who looked at the record (emergency access
//! highlighted), the sharing settings, research, and the download of the whole record. Every
//! read and write is the person's own token through the engine.

use crate::chart::{self, Chart, Point};
use crate::html::{self, esc, section};
use crate::i18n::{Lang, t};
use crate::{Web, blocking, error_page, html as respond, redirect};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use issho_access::AccessContext;
use issho_engine::{Engine, FhirError};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(crate) const LOINC: &str = "http://loinc.org";
const ORIGIN: &str = "urn:issho:record-origin";
/// Resources the portal reads of a record at most (the timeline shows the newest).
const MOST: usize = 5000;

/// The person's record as the portal shows it.
pub(crate) struct Record {
    pub resources: Vec<Value>,
    /// `Organization/id` → name.
    pub names: HashMap<String, String>,
    pub log: Vec<Value>,
}

impl Record {
    pub(crate) fn load(
        engine: &Engine,
        ctx: &AccessContext,
        pid: &str,
    ) -> Result<Record, FhirError> {
        let res = engine.everything(ctx, Some(pid), &[("_count".into(), MOST.to_string())])?;
        let resources: Vec<Value> = res.matches.iter().filter_map(|s| s.json()).collect();
        let names = institution_names(engine, ctx, &resources)?;
        let log = engine.access_log(ctx, pid, None, 200)?;
        Ok(Record {
            resources,
            names,
            log,
        })
    }

    pub(crate) fn of(&self, rt: &str) -> impl Iterator<Item = &Value> {
        self.resources
            .iter()
            .filter(move |r| r["resourceType"] == rt)
    }
}

/// The names of the institutions the resources name (as `meta.source`, an Encounter's
/// service provider, a performer), read as the caller may.
pub(crate) fn institution_names(
    engine: &Engine,
    ctx: &AccessContext,
    resources: &[Value],
) -> Result<HashMap<String, String>, FhirError> {
    let mut ids: Vec<String> = resources
        .iter()
        .filter_map(institution_ref)
        .filter_map(|r| r.strip_prefix("Organization/").map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    let mut out = HashMap::new();
    for chunk in ids.chunks(100) {
        let found = engine.search(
            ctx,
            Some("Organization"),
            &[("_id".into(), chunk.join(","))],
            false,
        )?;
        for s in found.matches {
            if let Some(o) = s.json() {
                let name = o["name"].as_str().unwrap_or(&s.id).to_string();
                out.insert(format!("Organization/{}", s.id), name);
            }
        }
    }
    Ok(out)
}

/// What the server told the person (an emergency opening of their record: the
/// `Communication`s of the notification category in their record), newest first.
fn notifications(lang: Lang, rec: &Record) -> String {
    let mut list: Vec<&Value> = rec
        .of("Communication")
        .filter(|c| {
            c["category"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|x| x["coding"].as_array().into_iter().flatten())
                .any(|x| x["system"] == "urn:issho:fhir:CodeSystem:notification")
        })
        .collect();
    list.sort_by(|a, b| b["sent"].as_str().cmp(&a["sent"].as_str()));
    if list.is_empty() {
        return String::new();
    }
    let items: String = list
        .iter()
        .take(5)
        .map(|c| {
            let text = c["payload"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["contentString"].as_str())
                .collect::<Vec<_>>()
                .join(" ");
            format!(
                "<li>{} — {}</li>",
                esc(c["sent"].as_str().unwrap_or("")),
                esc(&text)
            )
        })
        .collect();
    format!(
        "<div class=\"glass\" role=\"alert\"><p>{}</p><ul>{items}</ul></div>\n",
        t(lang, "notice-break-glass")
    )
}

/// The person as their institutions registered them: name, birth date, insurance member ID.
fn identity(lang: Lang, rec: &Record) -> String {
    let Some(p) = rec.of("Patient").next() else {
        return String::new();
    };
    let members: Vec<&str> = rec
        .of("Patient")
        .flat_map(|p| p["identifier"].as_array().into_iter().flatten())
        .filter(|i| i["system"] == crate::clinician::MEMBER_ID)
        .filter_map(|i| i["value"].as_str())
        .collect();
    let mut members = members;
    members.sort();
    members.dedup();
    format!(
        "<p class=\"card\">{} · {}: {} · {}: {}</p>\n",
        esc(&crate::clinician::display_name(p)),
        t(lang, "search-birth"),
        esc(p["birthDate"].as_str().unwrap_or("")),
        t(lang, "search-member"),
        esc(&members.join(", "))
    )
}

/// Where a resource comes from: the institution that holds it.
pub(crate) fn institution_ref(r: &Value) -> Option<String> {
    if let Some(s) = r["meta"]["source"]
        .as_str()
        .filter(|s| s.starts_with("Organization/"))
    {
        return Some(s.to_string());
    }
    for path in [
        &r["serviceProvider"]["reference"],
        &r["managingOrganization"]["reference"],
        &r["performer"][0]["reference"],
        &r["custodian"]["reference"],
        &r["requester"]["reference"],
    ] {
        if let Some(s) = path.as_str().filter(|s| s.starts_with("Organization/")) {
            return Some(s.to_string());
        }
    }
    None
}

/// Whether the person wrote it themself.
fn own(r: &Value) -> bool {
    r["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["system"] == ORIGIN && t["code"] == "patient")
}

/// A readable name of what a resource is about.
pub(crate) fn text_of(r: &Value) -> String {
    let cc = |c: &Value| -> Option<String> {
        c["text"]
            .as_str()
            .or_else(|| {
                c["coding"]
                    .as_array()?
                    .iter()
                    .find_map(|x| x["display"].as_str())
            })
            .or_else(|| c["coding"][0]["code"].as_str())
            .map(str::to_string)
    };
    cc(&r["code"])
        .or_else(|| cc(&r["medicationCodeableConcept"]))
        .or_else(|| cc(&r["vaccineCode"]))
        .or_else(|| cc(&r["type"]))
        .or_else(|| cc(&r["type"][0]))
        .or_else(|| r["title"].as_str().map(str::to_string))
        .or_else(|| r["description"].as_str().map(str::to_string))
        .unwrap_or_else(|| r["resourceType"].as_str().unwrap_or("").to_string())
}

/// The clinical date of a resource.
pub(crate) fn date_of(r: &Value) -> Option<&str> {
    [
        &r["effectiveDateTime"],
        &r["effectivePeriod"]["start"],
        &r["issued"],
        &r["period"]["start"],
        &r["authoredOn"],
        &r["recordedDate"],
        &r["onsetDateTime"],
        &r["occurrenceDateTime"],
        &r["performedDateTime"],
        &r["whenHandedOver"],
        &r["date"],
    ]
    .into_iter()
    .find_map(Value::as_str)
}

fn kind_label(lang: Lang, rt: &str) -> &'static str {
    match (lang, rt) {
        (Lang::Ja, "Encounter") => "受診",
        (Lang::Ja, "Condition") => "病名",
        (Lang::Ja, "MedicationRequest") => "処方",
        (Lang::Ja, "MedicationDispense") => "調剤",
        (Lang::Ja, "Observation") => "検査・測定",
        (Lang::Ja, "AllergyIntolerance") => "アレルギー",
        (Lang::Ja, "Immunization") => "予防接種",
        (Lang::Ja, "Procedure") => "処置",
        (Lang::Ja, "DocumentReference" | "Composition") => "文書",
        (Lang::En, "Encounter") => "Visit",
        (Lang::En, "Condition") => "Diagnosis",
        (Lang::En, "MedicationRequest") => "Prescription",
        (Lang::En, "MedicationDispense") => "Dispensing",
        (Lang::En, "Observation") => "Result",
        (Lang::En, "AllergyIntolerance") => "Allergy",
        (Lang::En, "Immunization") => "Immunization",
        (Lang::En, "Procedure") => "Procedure",
        (Lang::En, "DocumentReference" | "Composition") => "Document",
        _ => "",
    }
}

/// The institution column of a resource.
fn held_by(lang: Lang, rec: &Record, r: &Value) -> String {
    if own(r) {
        return esc(t(lang, "self"));
    }
    // Its own mark of an institution, or else the institution of the Patient it was recorded
    // under (each institution registers the person as a Patient of its own).
    let of_patient = || {
        let subject = r["subject"]["reference"]
            .as_str()
            .or(r["patient"]["reference"].as_str())?;
        let id = subject.strip_prefix("Patient/")?;
        rec.of("Patient")
            .find(|p| p["id"] == id)
            .and_then(institution_ref)
    };
    match institution_ref(r).or_else(of_patient) {
        Some(o) => esc(rec.names.get(&o).map_or(o.as_str(), String::as_str)),
        None => String::new(),
    }
}

fn timeline(lang: Lang, rec: &Record) -> String {
    let mut items: Vec<(&str, &Value)> = rec
        .resources
        .iter()
        .filter(|r| !kind_label(lang, r["resourceType"].as_str().unwrap_or("")).is_empty())
        .filter_map(|r| date_of(r).map(|d| (d, r)))
        .collect();
    items.sort_by(|a, b| b.0.cmp(a.0));
    if items.is_empty() {
        return html::p(t(lang, "timeline-none"));
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .take(100)
        .map(|(d, r)| {
            vec![
                esc(&d.chars().take(10).collect::<String>()),
                esc(kind_label(lang, r["resourceType"].as_str().unwrap_or(""))),
                esc(&text_of(r)),
                held_by(lang, rec, r),
            ]
        })
        .collect();
    html::table(
        &format!("{} ({})", t(lang, "timeline"), items.len()),
        &[t(lang, "when"), "", t(lang, "what"), t(lang, "institution")],
        &rows,
    )
}

/// Blood pressure's component codes (LOINC).
pub(crate) const SYSTOLIC: &str = "8480-6";
pub(crate) const DIASTOLIC: &str = "8462-4";

fn quantity(v: &Value) -> Option<f64> {
    v["valueQuantity"]["value"].as_f64()
}

fn component(r: &Value, code: &str) -> Option<f64> {
    r["component"].as_array()?.iter().find_map(|c| {
        c["code"]["coding"]
            .as_array()?
            .iter()
            .any(|x| x["code"] == code)
            .then(|| quantity(c))
            .flatten()
    })
}

/// The charts of every measured quantity with its reference range (newest range), blood
/// pressure as two series; the most measured first.
pub(crate) fn charts(lang: Lang, observations: &[&Value]) -> String {
    struct Series {
        title: String,
        unit: String,
        points: Vec<Vec<Point>>,
        range: Option<(Option<f64>, Option<f64>)>,
    }
    let mut by: BTreeMap<String, Series> = BTreeMap::new();
    for r in observations {
        let Some(day) = date_of(r).and_then(chart::day_of) else {
            continue;
        };
        if let (Some(s), Some(d)) = (component(r, SYSTOLIC), component(r, DIASTOLIC)) {
            let e = by.entry("bp".into()).or_insert_with(|| Series {
                title: t(lang, "bp").into(),
                unit: "mmHg".into(),
                points: vec![Vec::new(), Vec::new()],
                range: Some((None, Some(140.0))),
            });
            e.points[0].push(Point { day, value: s });
            e.points[1].push(Point { day, value: d });
            continue;
        }
        let Some(value) = quantity(r) else { continue };
        let key = r["code"]["coding"][0]["code"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text_of(r));
        let e = by.entry(key).or_insert_with(|| Series {
            title: text_of(r),
            unit: r["valueQuantity"]["unit"]
                .as_str()
                .or(r["valueQuantity"]["code"].as_str())
                .unwrap_or("")
                .to_string(),
            points: vec![Vec::new()],
            range: None,
        });
        e.points[0].push(Point { day, value });
        let rr = &r["referenceRange"][0];
        if rr.is_object() {
            e.range = Some((rr["low"]["value"].as_f64(), rr["high"]["value"].as_f64()));
        }
    }
    let mut list: Vec<Series> = by.into_values().collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.points[0].len()));
    if list.is_empty() {
        return html::p(t(lang, "results-none"));
    }
    let mut out = String::from("<div class=\"charts\">\n");
    for s in list.iter().take(12) {
        out.push_str(&chart::svg(&Chart {
            title: &s.title,
            unit: &s.unit,
            series: s.points.clone(),
            range: s.range,
            labels: (t(lang, "trend-now"), t(lang, "trend-before")),
        }));
    }
    out.push_str("</div>\n");
    out
}

fn simple_list(lang: Lang, rec: &Record, rt: &str, none: &str, active_only: bool) -> String {
    let mut rows: Vec<(String, Vec<String>)> = rec
        .of(rt)
        .filter(|r| !active_only || r["status"].as_str().is_none_or(|s| s == "active"))
        .map(|r| {
            let d = date_of(r)
                .unwrap_or("")
                .chars()
                .take(10)
                .collect::<String>();
            (
                d.clone(),
                vec![esc(&d), esc(&text_of(r)), held_by(lang, rec, r)],
            )
        })
        .collect();
    if rows.is_empty() {
        return html::p(t(lang, none));
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    let rows: Vec<Vec<String>> = rows.into_iter().take(50).map(|(_, r)| r).collect();
    html::table(
        "",
        &[t(lang, "when"), t(lang, "what"), t(lang, "institution")],
        &rows,
    )
}

fn coded(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["coding"][0]["code"].as_str())
        .collect()
}

fn access_log(lang: Lang, rec: &Record) -> String {
    if rec.log.is_empty() {
        return html::p(t(lang, "access-log-none"));
    }
    let rows: Vec<Vec<String>> = rec
        .log
        .iter()
        .take(100)
        .map(|e| {
            let who = e["agent"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["requestor"] == true)
                .or_else(|| e["agent"].get(0))
                .map(|a| {
                    a["who"]["display"]
                        .as_str()
                        .or(a["who"]["reference"].as_str())
                        .or(a["name"].as_str())
                        .or(a["altId"].as_str())
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default();
            let purposes = coded(&e["purposeOfEvent"]);
            let glass = purposes.contains(&"ETREAT");
            let why = if glass {
                format!("<span class=\"glass\">{}</span>", t(lang, "break-glass"))
            } else {
                esc(&purposes.join(", "))
            };
            let what = e["entity"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["what"]["reference"].as_str())
                .take(3)
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                esc(e["recorded"].as_str().unwrap_or("")),
                esc(&who),
                esc(&format!(
                    "{} {}",
                    e["subtype"][0]["code"].as_str().unwrap_or(""),
                    what
                )),
                why,
                esc(if e["outcome"] == "0" { "OK" } else { "×" }),
            ]
        })
        .collect();
    html::table(
        "",
        &[
            t(lang, "when"),
            t(lang, "who"),
            t(lang, "what"),
            t(lang, "why"),
            t(lang, "outcome"),
        ],
        &rows,
    )
}

pub(crate) async fn page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let s = match web.signed(&headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let lang = s.lang;
    let Some(pid) = s.session.patient.clone() else {
        return redirect("/clinician");
    };
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let rec = match blocking(move || Record::load(&engine, &ctx, &pid)).await {
        Ok(r) => r,
        Err(e) => return error_page(lang, Some(&s.session), &e),
    };
    let mut body = String::new();
    if let Some(f) = web.take_flash(&s.id) {
        body.push_str(&format!(
            "<p class=\"notice\" role=\"status\">{}</p>\n",
            esc(&f)
        ));
    }
    body.push_str(&format!(
        "<nav aria-label=\"sections\"><a href=\"#results\">{}</a> · <a href=\"#timeline\">{}</a> · <a href=\"#phr\">{}</a> · <a href=\"#access-log\">{}</a> · <a href=\"#consent\">{}</a></nav>\n",
        t(lang, "results"),
        t(lang, "timeline"),
        t(lang, "phr"),
        t(lang, "access-log"),
        t(lang, "consent")
    ));
    body.push_str(&identity(lang, &rec));
    body.push_str(&notifications(lang, &rec));
    let obs: Vec<&Value> = rec.of("Observation").collect();
    body.push_str(&section("results", t(lang, "results"), &charts(lang, &obs)));
    body.push_str(&section(
        "phr",
        t(lang, "phr"),
        &format!(
            "{}{}",
            crate::phr::measure_form(lang, &s),
            crate::phr::upload_form(lang, &s)
        ),
    ));
    body.push_str(&section(
        "medications",
        t(lang, "medications"),
        &simple_list(lang, &rec, "MedicationRequest", "medications-none", true),
    ));
    body.push_str(&section(
        "allergies",
        t(lang, "allergies"),
        &simple_list(lang, &rec, "AllergyIntolerance", "allergies-none", false),
    ));
    body.push_str(&section(
        "documents",
        t(lang, "documents"),
        &crate::document::list(lang, &s, &rec),
    ));
    body.push_str(&section(
        "timeline",
        t(lang, "timeline"),
        &timeline(lang, &rec),
    ));
    body.push_str(&section(
        "access-log",
        t(lang, "access-log"),
        &access_log(lang, &rec),
    ));
    body.push_str(&section(
        "consent",
        t(lang, "consent"),
        &crate::sharing::sharing(lang, &s, &rec),
    ));
    body.push_str(&section(
        "research",
        t(lang, "research"),
        &crate::sharing::research_section(lang, &s, &rec),
    ));
    body.push_str(&section(
        "apps",
        t(lang, "apps"),
        &crate::sharing::apps_section(&web, lang, &s),
    ));
    body.push_str(&section(
        "download",
        t(lang, "download"),
        &format!(
            "{}<p><a class=\"button\" href=\"/portal/download\" download>{}</a> <a class=\"button\" href=\"/portal/download?format=ndjson\" download>NDJSON</a></p>",
            html::p(t(lang, "download-explain")),
            t(lang, "download")
        ),
    ));
    respond(
        200,
        html::page(lang, t(lang, "portal"), Some(&s.session), "/portal", &body),
    )
}

/// `GET /portal/download`: the whole record as a FHIR Bundle (JSON).
pub(crate) async fn download(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let ndjson = q.get("format").map(String::as_str) == Some("ndjson");
    let s = match web.signed(&headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(pid) = s.session.patient.clone() else {
        return redirect("/clinician");
    };
    let (engine, ctx) = (web.engine.clone(), s.ctx.clone());
    let res = blocking(move || {
        let r = engine.everything(&ctx, Some(&pid), &[("_count".into(), MOST.to_string())])?;
        Ok(engine.search_bundle(&r, &format!("Patient/{pid}/$everything"), None))
    })
    .await;
    match res {
        Ok(b) => {
            // NDJSON: one resource per line (Bulk Data's format), else the Bundle.
            let (text, media, file) = if ndjson {
                let lines: Vec<String> = b["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"].to_string())
                    .collect();
                (
                    lines.join("\n") + "\n",
                    "application/fhir+ndjson",
                    "attachment; filename=\"my-record.ndjson\"",
                )
            } else {
                (
                    b.to_string(),
                    "application/fhir+json",
                    "attachment; filename=\"my-record.json\"",
                )
            };
            let mut r = Response::new(Body::from(text));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
            h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(file));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => error_page(s.lang, Some(&s.session), &e),
    }
}
