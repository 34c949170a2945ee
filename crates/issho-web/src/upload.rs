//! Readings uploaded from devices' exports (`POST /portal/upload`, a file in a
//! multipart/form-data form). Accepted, and documented in the README:
//!
//! - **CSV** with a header row (UTF-8; Shift_JIS is not accepted): a time column (`date`,
//!   `datetime`, `time`, `timestamp`, `日時`, `日付`, `測定日時`), measurement columns
//!   (`weight`/`体重` kg, `systolic`/`最高血圧`/`収縮期血圧` with `diastolic`/`最低血圧`/`拡張期血圧`
//!   mmHg, `pulse`/`heart rate`/`脈拍` /min, `glucose`/`血糖`/`血糖値` mg/dL, `steps`/`歩数`,
//!   `temperature`/`体温` °C, `spo2`/`SpO2` %, `sleep`/`睡眠` hours) and optionally `device`/`機器`;
//!   units in brackets after a name are allowed (`体重(kg)`);
//! - **JSON**: an array of objects with the same names (or `{"readings": [...]}`);
//! - **FHIR**: a Bundle of Observations, or NDJSON with one Observation per line, about the
//!   person (their subject must be the person's Patient).
//!
//! A time without a zone is Japan time. Each reading becomes an Observation as a hand-entered
//! one does (`phr.rs`), with an identifier made of the device, the time and the code: the same
//! reading uploaded again (or from an overlapping export) is created once — the transaction's
//! conditional creates merge duplicates. One Provenance names the device and the upload.

use crate::phr::{Reading, measure_code, reading_observation};
use serde_json::{Value, json};

/// Readings in one upload at most.
pub const MOST: usize = 10_000;

/// The system of the identifiers that make a reading unique.
pub const READING_ID: &str = "urn:issho:phr-reading";

/// Column names → the kind of measurement (lower-case, units in brackets removed).
fn kind_of(column: &str) -> Option<&'static str> {
    let c = column
        .split(['(', '（', '['])
        .next()
        .unwrap_or("")
        .trim()
        .to_lowercase();
    Some(match c.as_str() {
        "weight" | "body weight" | "体重" => "weight",
        "systolic" | "sys" | "最高血圧" | "収縮期血圧" | "収縮期" => "systolic",
        "diastolic" | "dia" | "最低血圧" | "拡張期血圧" | "拡張期" => "diastolic",
        "pulse" | "heart rate" | "hr" | "脈拍" | "心拍数" => "pulse",
        "glucose" | "blood glucose" | "血糖" | "血糖値" => "glucose",
        "steps" | "歩数" => "steps",
        "temperature" | "body temperature" | "体温" => "temperature",
        "spo2" | "sp02" | "酸素飽和度" => "spo2",
        "sleep" | "sleep hours" | "睡眠" | "睡眠時間" => "sleep",
        "date" | "datetime" | "time" | "timestamp" | "日時" | "日付" | "測定日時" | "測定日" => {
            "time"
        }
        "device" | "source" | "機器" | "機種" => "device",
        _ => return None,
    })
}

/// A time as written by a device: `2026-12-01 08:30`, `2026/12/01 8:30:05`, ISO 8601 with or
/// without a zone, or a date alone.
pub fn device_time(s: &str) -> Option<String> {
    let s = s.trim().replace('/', "-").replace(' ', "T");
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d.to_string(), Some(t.to_string())),
        None => (s.clone(), None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let date = format!("{:0>4}-{:0>2}-{:0>2}", y, m, d);
    let out = match time {
        None => date,
        Some(t) => {
            let zone_at = t.find(['Z', '+']).or_else(|| t.rfind('-'));
            let (clock, zone) = match zone_at {
                Some(i) => (&t[..i], &t[i..]),
                None => (t.as_str(), "+09:00"),
            };
            let mut c = clock.split(':');
            let (h, mi, sec) = (c.next()?, c.next()?, c.next().unwrap_or("00"));
            let sec = sec.split('.').next().unwrap_or("00");
            format!("{date}T{:0>2}:{:0>2}:{:0>2}{zone}", h, mi, sec)
        }
    };
    issho_model::instant::parse_range(&out).map(|_| out)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if !s.trim().is_empty() => s.trim().replace(',', "").parse().ok(),
        _ => None,
    }
}

/// The readings of one row (named values): a blood pressure from its two columns, each other
/// measurement on its own.
fn row_readings(row: &[(String, Value)], line: usize) -> Result<Vec<Reading>, String> {
    let get = |k: &str| row.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let time = get("time")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("row {line}: no time"))?;
    let at = device_time(time).ok_or_else(|| format!("row {line}: '{time}' is not a time"))?;
    let device = get("device")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .unwrap_or("uploaded file")
        .trim()
        .to_string();
    let mut out = Vec::new();
    let value = |k: &str| -> Result<Option<f64>, String> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(v) => number(v)
                .filter(|x| x.is_finite() && (0.0..1e6).contains(x))
                .map(Some)
                .ok_or_else(|| format!("row {line}: {k} '{v}' is not a measurement")),
        }
    };
    match (value("systolic")?, value("diastolic")?) {
        (Some(s), Some(d)) => out.push(Reading::new("bp", s, Some(d), &at, &device)),
        (None, None) => {}
        _ => return Err(format!("row {line}: a blood pressure needs both values")),
    }
    for k in [
        "weight",
        "pulse",
        "glucose",
        "steps",
        "temperature",
        "spo2",
        "sleep",
    ] {
        if let Some(v) = value(k)? {
            out.push(Reading::new(k, v, None, &at, &device));
        }
    }
    Ok(out)
}

/// A CSV line's fields (RFC 4180 quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn from_csv(text: &str) -> Result<Vec<Reading>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("the file is empty")?;
    let names: Vec<Option<&str>> = csv_fields(header.trim_start_matches('\u{feff}'))
        .iter()
        .map(|h| kind_of(h))
        .collect();
    if !names.contains(&Some("time")) {
        return Err("the CSV has no time column (date, datetime, 日時…)".into());
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let row: Vec<(String, Value)> = names
            .iter()
            .zip(csv_fields(line))
            .filter_map(|(n, v)| n.map(|n| (n.to_string(), Value::String(v))))
            .collect();
        out.extend(row_readings(&row, i + 2)?);
    }
    Ok(out)
}

fn from_json_rows(rows: &[Value]) -> Result<Vec<Reading>, String> {
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let o = r
            .as_object()
            .ok_or_else(|| format!("reading {}: not an object", i + 1))?;
        let row: Vec<(String, Value)> = o
            .iter()
            .filter_map(|(k, v)| kind_of(k).map(|n| (n.to_string(), v.clone())))
            .collect();
        out.extend(row_readings(&row, i + 1)?);
    }
    Ok(out)
}

/// FHIR Observations about the person, checked (their subject must be `Patient/pid`) and
/// rebuilt from what a measurement is — its code, value or components, time, device and own
/// identifier — so that nothing else an upload carries (an institution as `meta.source`, a
/// performer, references to other records) comes in with it.
fn fhir_observations(list: Vec<Value>, pid: &str) -> Result<Vec<Value>, String> {
    let me = format!("Patient/{pid}");
    let mut out = Vec::new();
    for (i, o) in list.into_iter().enumerate() {
        if o["resourceType"] != "Observation" {
            return Err(format!("resource {}: only Observations are taken", i + 1));
        }
        if o["subject"]["reference"].as_str() != Some(me.as_str()) {
            return Err(format!("resource {}: its subject is not you ({me})", i + 1));
        }
        let when = o["effectiveDateTime"]
            .as_str()
            .filter(|t| issho_model::instant::parse_range(t).is_some())
            .ok_or_else(|| format!("resource {}: no effectiveDateTime", i + 1))?;
        let mut r = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": coded(&o["code"]),
            "subject": {"reference": me},
            "performer": [{"reference": me}],
            "effectiveDateTime": when});
        if let Some(q) = quantity(&o["valueQuantity"]) {
            r["valueQuantity"] = q;
        }
        let components: Vec<Value> = o["component"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some(json!({"code": coded(&c["code"]), "valueQuantity": quantity(&c["valueQuantity"])?}))
            })
            .collect();
        if !components.is_empty() {
            r["component"] = json!(components);
        }
        if r["valueQuantity"].is_null() && r["component"].is_null() {
            return Err(format!("resource {}: no measured quantity", i + 1));
        }
        if let Some(d) = o["device"]["display"].as_str() {
            r["device"] = json!({"display": d});
        }
        if let (Some(sys), Some(v)) = (
            o["identifier"][0]["system"].as_str(),
            o["identifier"][0]["value"].as_str(),
        ) {
            r["identifier"] = json!([{"system": sys, "value": v}]);
        }
        out.push(r);
    }
    Ok(out)
}

/// A CodeableConcept's codings (system, code, display) and text only.
fn coded(c: &Value) -> Value {
    let codings: Vec<Value> = c["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let mut o = serde_json::Map::new();
            for k in ["system", "code", "display"] {
                if let Some(v) = x[k].as_str() {
                    o.insert(k.into(), json!(v));
                }
            }
            Value::Object(o)
        })
        .collect();
    let mut out = json!({"coding": codings});
    if let Some(t) = c["text"].as_str() {
        out["text"] = json!(t);
    }
    out
}

/// A Quantity's value, unit, system and code only.
fn quantity(q: &Value) -> Option<Value> {
    let v = q["value"].as_f64()?;
    let mut out = json!({"value": v});
    for k in ["unit", "system", "code"] {
        if let Some(x) = q[k].as_str() {
            out[k] = json!(x);
        }
    }
    Some(out)
}

/// The Observations of an uploaded file (`name` decides nothing; the content does).
pub fn observations(content: &str, pid: &str) -> Result<Vec<Value>, String> {
    let trimmed = content.trim_start_matches('\u{feff}').trim_start();
    let readings = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Array(rows)) => from_json_rows(&rows)?,
            Ok(v) if v["resourceType"] == "Bundle" => {
                let list = v["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"].clone())
                    .collect();
                return check_count(fhir_observations(list, pid)?);
            }
            Ok(v) if v["resourceType"] == "Observation" => {
                return check_count(fhir_observations(vec![v], pid)?);
            }
            Ok(v) if v["readings"].is_array() => {
                from_json_rows(v["readings"].as_array().expect("checked"))?
            }
            Ok(_) => {
                return Err(
                    "a JSON file holds an array of readings, {\"readings\": [...]}, or FHIR".into(),
                );
            }
            Err(_) => {
                // NDJSON: one resource per line.
                let mut list = Vec::new();
                for (i, l) in trimmed.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                    list.push(
                        serde_json::from_str(l)
                            .map_err(|e| format!("line {}: not JSON ({e})", i + 1))?,
                    );
                }
                return check_count(fhir_observations(list, pid)?);
            }
        }
    } else {
        from_csv(trimmed)?
    };
    if readings.len() > MOST {
        return Err(format!("at most {MOST} readings per file"));
    }
    Ok(readings
        .iter()
        .map(|r| reading_observation(pid, r))
        .collect())
}

fn check_count(list: Vec<Value>) -> Result<Vec<Value>, String> {
    if list.len() > MOST {
        return Err(format!("at most {MOST} readings per file"));
    }
    if list.is_empty() {
        return Err("no readings in the file".into());
    }
    Ok(list)
}

/// The upload's transaction: each Observation created unless the same reading is there (its
/// identifier), and one Provenance naming the devices and the upload.
pub fn transaction(pid: &str, observations: Vec<Value>) -> Value {
    let mut entries = Vec::new();
    let mut targets = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, mut o) in observations.into_iter().enumerate() {
        let key = reading_key(&o);
        if !seen.insert(key.clone()) {
            continue; // the same reading twice in one file
        }
        if let Some(d) = o["device"]["display"].as_str()
            && !devices.iter().any(|x| x == d)
        {
            devices.push(d.to_string());
        }
        o["identifier"] = json!([{"system": READING_ID, "value": key}]);
        let full = format!("urn:uuid:00000000-0000-4000-8000-{i:012}");
        targets.push(json!({"reference": full}));
        entries.push(json!({"fullUrl": full, "resource": o,
            "request": {"method": "POST", "url": "Observation",
                "ifNoneExist": format!("identifier={READING_ID}|{key}")}}));
    }
    let mut agents = vec![
        json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
        "who": {"reference": format!("Patient/{pid}")}}),
    ];
    for d in &devices {
        agents.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler"}]},
            "who": {"display": format!("{d} (uploaded to the issho portal)")}}));
    }
    entries.push(
        json!({"resource": {"resourceType": "Provenance", "target": targets,
        "recorded": now(), "agent": agents},
        "request": {"method": "POST", "url": "Provenance"}}),
    );
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Now, as a FHIR instant.
pub(crate) fn now() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    issho_model::instant::format_instant(micros)
}

/// What makes a reading the same reading: its device, time and code (and, for FHIR
/// Observations, their own identifier when they carry one).
fn reading_key(o: &Value) -> String {
    if let Some(own) = o["identifier"][0]["value"].as_str()
        && o["identifier"][0]["system"] != READING_ID
    {
        return hex(&format!(
            "{}|{}|{own}",
            o["subject"]["reference"].as_str().unwrap_or(""),
            o["identifier"][0]["system"].as_str().unwrap_or("")
        ));
    }
    let when = o["effectiveDateTime"]
        .as_str()
        .and_then(issho_model::instant::parse_range)
        .map(|r| r.lo.to_string())
        .unwrap_or_default();
    hex(&format!(
        "{}|{}|{when}|{}",
        o["subject"]["reference"].as_str().unwrap_or(""),
        o["device"]["display"].as_str().unwrap_or(""),
        measure_code(o)
    ))
}

/// A short stable hex digest (FNV-1a 64, twice with different seeds).
fn hex(s: &str) -> String {
    let h = |seed: u64| {
        s.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        h(0xcbf2_9ce4_8422_2325),
        h(0x8422_2325_cbf2_9ce4)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_times_are_japan_time_unless_zoned() {
        assert_eq!(
            device_time("2026/12/1 8:30").as_deref(),
            Some("2026-12-01T08:30:00+09:00")
        );
        assert_eq!(
            device_time("2026-12-01T08:30:05Z").as_deref(),
            Some("2026-12-01T08:30:05Z")
        );
        assert_eq!(device_time("2026-12-01").as_deref(), Some("2026-12-01"));
        assert_eq!(device_time("yesterday"), None);
        assert_eq!(device_time("2026-13-01 08:00"), None);
    }

    #[test]
    fn csv_and_json_exports_become_readings() {
        let csv = "\u{feff}測定日時,体重(kg),最高血圧,最低血圧,脈拍,機器\n2026/12/01 07:00,60.5,128,82,66,\"Scale, v2\"\n2026/12/02 07:00,60.1,,,,\n";
        let obs = observations(csv, "p1").unwrap();
        // Row 1: weight, blood pressure, pulse; row 2: weight.
        assert_eq!(obs.len(), 4);
        assert!(obs.iter().any(|o| o["component"].is_array()));
        assert!(
            obs.iter()
                .all(|o| o["subject"]["reference"] == "Patient/p1")
        );
        assert_eq!(obs[0]["device"]["display"], "Scale, v2");
        let json =
            r#"[{"timestamp": "2026-12-01T07:00:00+09:00", "steps": 8123, "device": "band"}]"#;
        let obs = observations(json, "p1").unwrap();
        assert_eq!(obs[0]["valueQuantity"]["value"], 8123.0);
        // Refused: no time column, half a blood pressure, a non-number, another's FHIR data.
        assert!(observations("weight\n60\n", "p1").is_err());
        assert!(observations("date,systolic\n2026-12-01,120\n", "p1").is_err());
        assert!(observations("date,weight\n2026-12-01,heavy\n", "p1").is_err());
        let theirs = r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}}"#;
        assert!(observations(theirs, "p1").unwrap_err().contains("not you"));
    }

    #[test]
    fn the_same_reading_twice_is_one() {
        let csv = "date,weight,device\n2026-12-01 07:00,60.5,scale\n2026-12-01 07:00,60.5,scale\n";
        let tx = transaction("p1", observations(csv, "p1").unwrap());
        // One Observation (conditional on its identifier) and the Provenance.
        assert_eq!(tx["entry"].as_array().unwrap().len(), 2);
        let e = &tx["entry"][0];
        assert!(
            e["request"]["ifNoneExist"]
                .as_str()
                .unwrap()
                .contains(READING_ID)
        );
        let tx2 = transaction("p1", observations(csv, "p1").unwrap());
        assert_eq!(
            tx2["entry"][0]["resource"]["identifier"],
            e["resource"]["identifier"]
        );
    }
}
