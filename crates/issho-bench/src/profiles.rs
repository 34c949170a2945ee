//! Profile validation: the validator alone (JP-CLINS lab-result Observations against their
//! profile, one thread), and ingest over HTTP with the demo's JP Core profiles installed
//! against the same ingest without them (base validation only).

use crate::http::Conn;
use crate::measure::ingest;
use crate::server::Server;
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

/// Validations per second of the JP-CLINS lab-result example against its profile, one
/// thread, for `seconds`; and the issues of one run.
fn validator(shared: &Path, seconds: f64) -> Result<(f64, usize, String), String> {
    let mut all = Vec::new();
    for f in ["jp-core.r4-1.1.2.tgz", "jp-clins.r4-1.5.2.tgz"] {
        let bytes = std::fs::read(shared.join("jp").join(f)).map_err(|e| format!("{f}: {e}"))?;
        all.extend(issho_packages::read(&bytes)?.resources);
    }
    // Indexed profiles and expansions kept across validations, as the server keeps them.
    let p = issho_profiles::Resources::new(all);
    let file =
        shared.join("jp/jp-clins-examples/Observation-Example-JP-Obs-LabResult-eCS-Alb.json");
    let obs: Value = serde_json::from_slice(&std::fs::read(&file).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let profile = obs["meta"]["profile"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // What a write checks beyond the structure: the profile and the R4 base invariants.
    let check = || {
        let mut issues = issho_profiles::validate(&obs, &profile, &p, &p);
        issues.extend(issho_profiles::base_invariants(&obs));
        issues
    };
    let errors = check().iter().filter(|i| i.is_error()).count();
    let began = Instant::now();
    let mut n = 0usize;
    while began.elapsed().as_secs_f64() < seconds {
        std::hint::black_box(check());
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
        "\nProfile validation:\n\n- the validator alone, one thread: **{rate:.0}** validations/s of the JP-CLINS lab-result example against `{profile}` and the R4 base invariants ({errors} errors)\n"
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
