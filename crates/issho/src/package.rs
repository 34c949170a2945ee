//! `issho package install FILE.tgz…` and `issho package list`: FHIR packages (npm format) in
//! the store, through the engine as the operator's system context (issho-packages reads
//! them; the engine checks and installs them in one transaction). A running server takes a
//! package over HTTP instead: `POST [base]/$install-package` (administrators).

use issho_engine::{AccessContext, Engine};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PackageArgs {
    #[command(subcommand)]
    pub cmd: PackageCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum PackageCmd {
    /// Install FHIR packages (.tgz, several at once: dependencies between them are resolved).
    Install(InstallArgs),
    /// List the installed packages.
    List(StoreArgs),
}

#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    pub data: PathBuf,
    /// Where the resources are kept: `embedded` (the default) or a `postgres://` URL.
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub at: StoreArgs,
    /// The package files (`.tgz`, as HL7 and JAMI publish them).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Reads the package files.
pub fn read_all(files: &[PathBuf]) -> Result<Vec<issho_packages::Package>, String> {
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            issho_packages::read(&bytes).map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect()
}

/// Installs; returns what was installed, one line per package.
pub fn install(engine: &Engine, files: &[PathBuf]) -> Result<String, String> {
    let pkgs = read_all(files)?;
    let ctx = AccessContext::system("package install");
    let out = engine
        .install_packages(&ctx, pkgs)
        .map_err(|e| outcome_text(&e.issues))?;
    let lines: Vec<String> = out["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["diagnostics"].as_str().map(str::to_string))
        .collect();
    Ok(lines.join("\n"))
}

/// An error's issues as one line (`; ` between them).
pub(crate) fn outcome_text(issues: &[issho_model::Issue]) -> String {
    issues
        .iter()
        .map(|i| i.diagnostics.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The installed packages, one line each: `name#version`, canonical, dependencies.
pub fn list(engine: &Engine) -> Result<String, String> {
    let ctx = AccessContext::system("package list");
    let records = engine
        .installed_packages(&ctx)
        .map_err(|e| outcome_text(&e.issues))?;
    if records.is_empty() {
        return Ok(
            "no packages installed (install one with: issho package install FILE.tgz)".into(),
        );
    }
    Ok(records
        .iter()
        .map(|r| {
            let deps: Vec<String> = r["dependsOn"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    format!(
                        "{}#{}",
                        d["packageId"].as_str().unwrap_or("?"),
                        d["version"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            format!(
                "{}#{}\t{}\tdepends on: {}",
                r["packageId"].as_str().unwrap_or("?"),
                r["version"].as_str().unwrap_or("?"),
                r["description"].as_str().unwrap_or(""),
                if deps.is_empty() {
                    "nothing".to_string()
                } else {
                    deps.join(", ")
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}
