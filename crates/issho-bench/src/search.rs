//! The clinical search mix: one client, sequential, each query repeated.

use crate::http::Conn;
use crate::measure::percentile;
use crate::server::Server;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The figures of one query of the mix.
#[derive(Clone)]
pub struct MixResult {
    pub name: &'static str,
    pub reps: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    /// Sequential requests per second (one client).
    pub rate: f64,
    pub matches: String,
    pub error: Option<String>,
}

/// A query of the mix: `{p}` is a patient id, `{c}` a `system|code` of their observations.
pub struct Mix {
    pub name: &'static str,
    pub url: &'static str,
}

pub const MIXES: [Mix; 7] = [
    Mix {
        name: "patient + code",
        url: "/Observation?subject=Patient/{p}&code={c}",
    },
    Mix {
        name: "patient + code + date",
        url: "/Observation?subject=Patient/{p}&code={c}&date=ge2020-01-01",
    },
    Mix {
        name: "patient + category, newest first",
        url: "/Observation?subject=Patient/{p}&category=laboratory&_sort=-date&_count=20",
    },
    Mix {
        name: "chain: code + subject:Patient.gender",
        url: "/Observation?code={c}&subject:Patient.gender=female&_count=20",
    },
    Mix {
        name: "_has: patients with an observation of code",
        url: "/Patient?_has:Observation:subject:code={c}&_count=20",
    },
    Mix {
        name: "_include requester",
        url: "/MedicationRequest?subject=Patient/{p}&_include=MedicationRequest:requester",
    },
    Mix {
        name: "count by code (_summary=count)",
        url: "/Observation?code={c}&_summary=count",
    },
];

/// The persons of the mix: (patient id, `system|code` of one of their observations).
pub fn mix_persons(cfg: &issho_demo::DemoConfig) -> Vec<(String, String)> {
    (0..cfg.persons.min(50))
        .filter_map(|i| {
            let rs = issho_demo::person_resources(cfg, i);
            let pat = rs.iter().find(|r| r.resource_type == "Patient")?.id.clone();
            let obs = rs.iter().find(|r| {
                r.resource_type == "Observation"
                    && r.resource["subject"]["reference"] == format!("Patient/{pat}").as_str()
            })?;
            let code = &obs.resource["code"]["coding"][0];
            Some((
                pat,
                format!("{}|{}", code["system"].as_str()?, code["code"].as_str()?),
            ))
        })
        .collect()
}

pub fn search_mix(s: &Server, persons: &[(String, String)], reps: usize) -> Vec<MixResult> {
    let mut out = Vec::new();
    let Some((_, code0)) = persons.first() else {
        return out;
    };
    let Ok(mut c) = Conn::open(s.addr) else {
        return out;
    };
    for m in &MIXES {
        let mut lat = Vec::with_capacity(reps);
        let mut matches = String::new();
        let mut error = None;
        let began = Instant::now();
        for rep in 0..reps {
            let (p, code) = &persons[rep % persons.len()];
            let code = if m.url.contains("{p}") { code } else { code0 };
            let url = s.url(
                &m.url
                    .replace("{p}", p)
                    .replace("{c}", &code.replace('|', "%7C")),
            );
            let t = Instant::now();
            let r = c.request("GET", &url, &[("Prefer", "handling=strict")], None);
            lat.push(t.elapsed());
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    error = Some(e.to_string());
                    c = match Conn::open(s.addr) {
                        Ok(c) => c,
                        Err(_) => break,
                    };
                    break;
                }
            };
            if r.status != 200 {
                let text = String::from_utf8_lossy(&r.body);
                let why = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["issue"][0]["diagnostics"].as_str().map(str::to_string))
                    .unwrap_or_else(|| text.chars().take(120).collect());
                error = Some(format!("HTTP {}: {why}", r.status));
                break;
            }
            if rep == 0 {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                matches = match v["total"].as_u64() {
                    Some(t) => t.to_string(),
                    None => v["entry"]
                        .as_array()
                        .map(|a| format!("{} on the first page", a.len()))
                        .unwrap_or_default(),
                };
            }
            if began.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        let total: f64 = lat.iter().map(Duration::as_secs_f64).sum();
        let n = lat.len();
        lat.sort();
        out.push(MixResult {
            name: m.name,
            reps: n,
            p50: percentile(&lat, 0.5),
            p95: percentile(&lat, 0.95),
            p99: percentile(&lat, 0.99),
            rate: n as f64 / total.max(1e-9),
            matches,
            error,
        });
    }
    out
}
