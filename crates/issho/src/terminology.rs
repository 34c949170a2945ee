//! `issho terminology import`: Japanese code systems from their files into the store (or
//! as CodeSystem JSON files to PUT into a running server) — J-FAGY as JAMI publishes it, and
//! JLAC10, YJ, HOT and MEDIS disease names in issho's CSV layout (issho-terminology's `jp`:
//! `code`, `display`, `display_en`, `kana`, `parent`, `definition`; every code checked by
//! its system's format rule).

use issho_engine::{AccessContext, Engine};
use issho_terminology::jp;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TerminologyArgs {
    #[command(subcommand)]
    pub cmd: TerminologyCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum TerminologyCmd {
    /// Load a code system file: J-FAGY (as published), or JLAC10, YJ, HOT, MEDIS (CSV).
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub at: crate::package::StoreArgs,
    /// The file's kind: jfagy, jlac10, yj, hot9, hot13, hot7 or medis-disease.
    #[arg(long)]
    pub format: String,
    /// The code system's version (default: the date in the file name, else today).
    #[arg(long)]
    pub version: Option<String>,
    /// The code system's canonical URL (CSV kinds; default: JP Core's for the kind).
    #[arg(long)]
    pub url: Option<String>,
    /// Write the CodeSystem resources as JSON files into this directory instead of the
    /// store (to PUT them into a running server).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The file.
    pub file: PathBuf,
}

/// The version a file name states (`JFAGY_J9FN_20250401_R01.csv` → `20250401-R01`).
fn version_of(a: &ImportArgs) -> String {
    if let Some(v) = &a.version {
        return v.clone();
    }
    let stem = a
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let parts: Vec<&str> = stem.split(['_', '-', '.']).collect();
    let date = parts
        .iter()
        .find(|p| p.len() == 8 && p.chars().all(|c| c.is_ascii_digit()));
    let release = parts
        .iter()
        .find(|p| p.len() > 1 && p.starts_with('R') && p[1..].chars().all(|c| c.is_ascii_digit()));
    match (date, release) {
        (Some(d), Some(r)) => format!("{d}-{r}"),
        (Some(d), None) => d.to_string(),
        _ => issho_model::instant::format_instant(issho_store::now_micros())[..10].replace('-', ""),
    }
}

/// The CodeSystem resources of the file.
pub fn code_systems(a: &ImportArgs) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| format!("{}: {e} (the file must be UTF-8)", a.file.display()))?;
    let version = version_of(a);
    if a.format == "jfagy" {
        return jp::jfagy(&text, &version);
    }
    let Some(format) = jp::format_named(&a.format) else {
        return Err(format!(
            "unknown --format '{}': jfagy, jlac10, yj, hot9, hot13, hot7 or medis-disease",
            a.format
        ));
    };
    Ok(vec![jp::csv_code_system(
        &text,
        format,
        a.url.as_deref(),
        &version,
    )?])
}

/// Loads the file; returns what was loaded.
pub fn import(engine: Option<&Engine>, a: &ImportArgs) -> Result<String, String> {
    let systems = code_systems(a)?;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut lines = Vec::new();
        for cs in &systems {
            // An id, so that the file can be PUT as it is (`PUT [base]/CodeSystem/[id]`).
            let mut cs = cs.clone();
            let tail = cs["url"]
                .as_str()
                .unwrap_or("codesystem")
                .rsplit('/')
                .next()
                .unwrap_or("codesystem")
                .to_string();
            let id: String = format!("{tail}-{}", cs["version"].as_str().unwrap_or("1"))
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(64)
                .collect();
            cs["id"] = serde_json::Value::String(id.clone());
            let cs = &cs;
            let name = cs["name"].as_str().unwrap_or("CodeSystem");
            let path = dir.join(format!("CodeSystem-{name}.json"));
            let body = serde_json::to_vec_pretty(cs).map_err(|e| e.to_string())?;
            std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
            lines.push(format!(
                "{} ({} concepts) -> {} (PUT it to [base]/CodeSystem/{id})",
                cs["url"].as_str().unwrap_or("?"),
                cs["count"],
                path.display()
            ));
        }
        return Ok(lines.join("\n"));
    }
    let Some(engine) = engine else {
        return Err("no store".into());
    };
    let ctx = AccessContext::system("terminology import");
    let out = engine
        .import_code_systems(&ctx, systems)
        .map_err(|e| crate::package::outcome_text(&e.issues))?;
    Ok(out)
}
