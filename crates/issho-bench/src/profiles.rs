//! Profile validation: the validator alone (JP-CLINS lab-result Observations against their
//! profile, one thread), and ingest over HTTP with the demo's JP Core profiles installed
//! against the same ingest without them (base validation only).

use crate::http::Conn;
use crate::measure::ingest;
use crate::server::Server;
use issho_profiles::{Definitions, Profile};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Definitions and terminology from the resources of packages.
struct Packages {
    by_url: HashMap<String, Value>,
    indexed: Mutex<HashMap<String, Arc<Profile>>>,
    /// Kept across validations, as the server keeps them.
    expansions: issho_profiles::Expansions,
}

impl Definitions for Packages {
    fn expansions(&self) -> Option<&issho_profiles::Expansions> {
        Some(&self.expansions)
    }

    fn profile(&self, url: &str) -> Option<Arc<Profile>> {
        let url = url.split('|').next().unwrap_or(url);
        if let Some(p) = self.indexed.lock().ok()?.get(url) {
            return Some(p.clone());
        }
        let p = Arc::new(Profile::of(self.by_url.get(url)?)?);
        self.indexed.lock().ok()?.insert(url.to_string(), p.clone());
        Some(p)
    }
}

impl issho_terminology::Source for Packages {
    fn by_url(&self, rt: &str, url: &str, _: Option<&str>) -> Option<Value> {
        self.by_url
            .get(url)
            .filter(|v| v["resourceType"] == rt)
            .cloned()
    }
    fn by_id(&self, _: &str, _: &str) -> Option<Value> {
        None
    }
    fn code_system_for_value_set(&self, _: &str) -> Option<Value> {
        None
    }
    fn concept_maps(&self, _: Option<&str>) -> Vec<Value> {
        Vec::new()
    }
}

/// Validations per second of the JP-CLINS lab-result example against its profile, one
/// thread, for `seconds`; and the issues of one run.
fn validator(shared: &Path, seconds: f64) -> Result<(f64, usize, String), String> {
    let mut by_url = HashMap::new();
    for f in ["jp-core.r4-1.1.2.tgz", "jp-clins.r4-1.5.2.tgz"] {
        let bytes = std::fs::read(shared.join("jp").join(f)).map_err(|e| format!("{f}: {e}"))?;
        for r in issho_packages::read(&bytes)?.resources {
            if let Some(u) = r["url"].as_str() {
                by_url.insert(u.to_string(), r.clone());
            }
        }
    }
    let p = Packages {
        by_url,
        indexed: Mutex::default(),
        expansions: Mutex::default(),
    };
    let file =
        shared.join("jp/jp-clins-examples/Observation-Example-JP-Obs-LabResult-eCS-Alb.json");
    let obs: Value = serde_json::from_slice(&std::fs::read(&file).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let profile = obs["meta"]["profile"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = issho_profiles::validate(&obs, &profile, &p, &p);
    let errors = first.iter().filter(|i| i.is_error()).count();
    let began = Instant::now();
    let mut n = 0usize;
    while began.elapsed().as_secs_f64() < seconds {
        std::hint::black_box(issho_profiles::validate(&obs, &profile, &p, &p));
        n += 1;
    }
    Ok((n as f64 / began.elapsed().as_secs_f64(), errors, profile))
}

/// The report section: the validator's rate and ingest with and without JP Core installed.
pub fn profiles_bench(
    bin: &Path,
    work: &Path,
    shared: &Path,
    cfg: &issho_demo::DemoConfig,
    clients: usize,
) -> Result<String, String> {
    eprintln!("profiles: the validator alone…");
    let (rate, errors, profile) = validator(shared, 5.0)?;
    let mut out = format!(
        "\nProfile validation:\n\n- the validator alone, one thread: **{rate:.0}** validations/s of the JP-CLINS lab-result example against `{profile}` ({errors} errors)\n"
    );
    let mut rates = Vec::new();
    for with in [false, true] {
        let dir = work.join(if with { "profiles-on" } else { "profiles-off" });
        let s = Server::issho(bin, &dir, None)?;
        if with {
            let bytes =
                std::fs::read(shared.join("jp/jp-core.r4-1.1.2.tgz")).map_err(|e| e.to_string())?;
            let mut c = Conn::open(s.addr).map_err(|e| e.to_string())?;
            let r = c
                .request(
                    "POST",
                    &s.url("/$install-package"),
                    &[("Content-Type", "application/gzip")],
                    Some(&bytes),
                )
                .map_err(|e| e.to_string())?;
            if r.status != 200 {
                s.stop();
                return Err(format!("installing JP Core: HTTP {}", r.status));
            }
        }
        eprintln!(
            "profiles: ingest with JP Core {}…",
            if with { "installed" } else { "not installed" }
        );
        let i = ingest(&s, cfg, clients)?;
        s.stop();
        if i.failed > 0 {
            return Err(format!(
                "ingest with JP Core {}: {} failed: {}",
                if with { "installed" } else { "absent" },
                i.failed,
                i.first_failure.unwrap_or_default()
            ));
        }
        rates.push(i.resources as f64 / i.secs.max(1e-9));
    }
    out.push_str(&format!(
        "- ingest of {} persons over HTTP ({clients} clients), the demo's resources naming JP Core profiles: **{:.0}**/s with JP Core installed (each write checked against its profiles) against {:.0}/s without (base validation only): {:.0}% of it\n",
        cfg.persons,
        rates[1],
        rates[0],
        100.0 * rates[1] / rates[0].max(1e-9)
    ));
    Ok(out)
}
