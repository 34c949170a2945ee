//! `issho research`: the deployment's research projects (`research/projects.json` in the data
//! directory). A project's members — researcher users and research backend services — get
//! de-identified `$export`s of the persons whose research consent allows it, and nothing
//! else. A running server reads the projects at start: restart it after a change.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ResearchArgs {
    #[command(subcommand)]
    pub cmd: ResearchCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum ResearchCmd {
    /// Register a project (a new secret is made), or change its title, members and profile
    /// (the secret stays, so its pseudonyms stay the same).
    Add(AddArgs),
    /// List the projects: id, title, members, de-identification profile (never the secret).
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    pub data: PathBuf,
    /// The project's id ([A-Za-z0-9-.], 1 to 64).
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub title: String,
    /// A member: a researcher's user name or a research backend service's client id (repeat
    /// for several; a member works for one project).
    #[arg(long = "member")]
    pub members: Vec<String>,
    /// The de-identification profile as JSON (kebab-case fields of issho-research's
    /// `Profile`: max-shift-days, birth-date, age-band-years, top-age, address,
    /// exclude-types, quasi-identifiers, k, l, suppress-below-l); default: the standard
    /// profile.
    #[arg(long)]
    pub profile: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    pub data: PathBuf,
}

pub fn run(a: ResearchArgs) -> i32 {
    let r = match a.cmd {
        ResearchCmd::Add(a) => add(a),
        ResearchCmd::List(a) => list(a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn add(a: AddArgs) -> Result<(), String> {
    let profile = match &a.profile {
        Some(p) => {
            let b = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => issho_research::Profile::default(),
    };
    let mut projects = issho_research::Projects::open(&a.data)?;
    let project = issho_research::Project::new(&a.id, &a.title, a.members, profile)?;
    projects.put(project)?;
    println!(
        "registered research project '{}' (restart a running server to apply)",
        a.id
    );
    Ok(())
}

fn list(a: ListArgs) -> Result<(), String> {
    let projects = issho_research::Projects::open(&a.data)?;
    for p in projects.list() {
        println!(
            "{}\t{}\tmembers: {}\tprofile: {}",
            p.id,
            p.title,
            p.members.join(" "),
            serde_json::to_string(&p.profile).unwrap_or_default()
        );
    }
    Ok(())
}

/// The demo's research project: `demo-study`, worked on by `demo-researcher`, with a profile
/// that keeps age bands and sex (the demo population is small: with the prefecture as well,
/// k-anonymity would hold most persons back) and releases at once (the demo's data is new).
pub fn ensure_demo_project(data: &std::path::Path) -> Result<(), String> {
    let mut projects = issho_research::Projects::open(data)?;
    if projects.get(DEMO_PROJECT).is_some() {
        return Ok(());
    }
    let profile = issho_research::Profile {
        address: issho_research::AddressRule::Remove,
        quasi_identifiers: vec![issho_research::Quasi::Age, issho_research::Quasi::Gender],
        // The demo's data is written when it starts: released at once, not in batches.
        release_every_months: 0,
        ..Default::default()
    };
    let p = issho_research::Project::new(
        DEMO_PROJECT,
        "デモ研究 (demo drug-safety study)",
        vec!["demo-researcher".into()],
        profile,
    )?;
    projects.put(p)
}

pub const DEMO_PROJECT: &str = "demo-study";
