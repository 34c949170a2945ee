//! The `issho` command: serve, import, demo, audit, version.

/// mimalloc instead of glibc's malloc for Rust's allocations, and SQLite's (see `main`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod copy;
mod demo_users;
mod export;
mod load;
mod package;
mod research;
mod serve;
mod study;
mod terminology;
mod view;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use issho_engine::{Engine, EngineConfig};
use serve::ServeArgs;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "issho",
    version,
    about = "issho — one lifelong health record per person, on FHIR R4"
)]
struct Cli {
    /// Optional TOML configuration file; its keys are the long flag names of the subcommand
    /// (`data`, `listen`, `base_url`, `max_body`, ...). Flags and ISSHO_* variables win over it.
    #[arg(long, env = "ISSHO_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the FHIR server.
    Serve(ServeArgs),
    /// Load FHIR data (Bundles, NDJSON, or directories of them) into the store.
    Import(ImportArgs),
    /// Write every resource as NDJSON, one file per type (FHIR Bulk Data's format).
    Export(export::ExportArgs),
    /// Generate the deterministic Japanese demo population (into the store, or as files).
    Demo(DemoArgs),
    /// Print a SMART access token response for a user of the local store (an operator's
    /// tool: it needs the data directory, and is never offered over HTTP).
    Token(TokenArgs),
    /// SMART apps and backend services of the deployment.
    Client(ClientCmdArgs),
    /// The audit trail (segments in the data directory's `audit` directory).
    Audit(AuditArgs),
    /// Copy a whole store (every version) into an empty one: embedded ⇄ PostgreSQL.
    Copy(copy::CopyArgs),
    /// FHIR packages (JP Core, JP-CLINS, …): install them, list them.
    Package(package::PackageArgs),
    /// Code systems from their files (J-FAGY, JLAC10, YJ, HOT, MEDIS).
    Terminology(terminology::TerminologyArgs),
    /// Research projects: their members get de-identified exports of consenting persons.
    Research(research::ResearchArgs),
    /// SQL on FHIR v2 views: run a ViewDefinition over the store into CSV or NDJSON.
    View(view::ViewArgs),
    /// Drug-safety studies over a server's views (as a research project's member).
    Study(study::StudyArgs),
    /// Apply the PostgreSQL store's schema migrations (`issho serve` also applies them at start).
    Migrate(MigrateArgs),
    /// Print the version.
    Version,
}

#[derive(clap::Args, Debug)]
struct MigrateArgs {
    /// The PostgreSQL database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    store: String,
}

#[derive(clap::Args, Debug)]
struct TokenArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
    /// The user (for example `demo-patient`).
    #[arg(long)]
    user: String,
    /// Requested scopes (default: all the user may have), narrowed to what the user may have.
    #[arg(long)]
    scope: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ClientCmdArgs {
    #[command(subcommand)]
    cmd: ClientCmd,
}

#[derive(Subcommand, Debug)]
enum ClientCmd {
    /// Register (or replace) an app (public client, authorization code with PKCE) or, with
    /// --jwks, a backend service (client credentials with private_key_jwt).
    Add(ClientArgs),
    /// List the registered apps and backend services (id, kind, name, redirect URIs, scopes).
    List(ClientListArgs),
}

#[derive(clap::Args, Debug)]
struct ClientListArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ClientArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
    /// The client_id.
    #[arg(long)]
    id: String,
    /// Display name shown on the sign-in page.
    #[arg(long)]
    name: Option<String>,
    /// A redirect URI (repeat for several); loopback ones match any port.
    #[arg(long = "redirect-uri", required_unless_present = "jwks")]
    redirect_uris: Vec<String>,
    /// The widest scopes the app may get (for a backend service: system/ scopes).
    #[arg(
        long,
        default_value = "openid fhirUser launch/patient offline_access online_access patient/*.cruds user/*.cruds"
    )]
    scope: String,
    /// A backend service (SMART Backend Services) instead of an app: the file holding its
    /// public keys as a JWK Set; it authenticates with private_key_jwt.
    #[arg(long)]
    jwks: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ImportArgs {
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
    /// Where the resources are kept: `embedded` (the default: the data directory) or a
    /// PostgreSQL URL `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (the data directory still
    /// holds the keys and the users; the audit trail is then in the database).
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Files or directories: FHIR Bundles (.json) or NDJSON (.ndjson).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Concurrent loaders.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    #[arg(long, default_value_t = 100)]
    patients: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write NDJSON files to this directory instead of loading the store.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
}

#[derive(clap::Args, Debug)]
struct AuditArgs {
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Recompute the audit trail's hash chain; exit 1 naming the first bad entry (or block
    /// of entries) when it was edited, cut short, reordered or a segment is missing.
    Verify(AuditVerifyArgs),
}

#[derive(clap::Args, Debug)]
struct AuditVerifyArgs {
    /// Data directory (holds the audit trail's segments in `audit/` with the embedded store).
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
    /// The store whose audit trail to check: `embedded` (the default: the data directory's
    /// segments) or a PostgreSQL URL (the trail is in that database and schema).
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    store: Option<String>,
    /// A directory holding copies of sealed segments (`segment-NNNNNN.db`), e.g. those the
    /// retention period removed: the chain is then checked through them from its first
    /// entry. Repeatable.
    #[arg(long)]
    archive: Vec<PathBuf>,
}

/// Apply the config file's values to arguments that were left at their defaults.
fn merge_config(matches: &ArgMatches, config: Option<&PathBuf>) -> Result<Vec<String>, String> {
    let Some(path) = config else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    let Some((name, mut sub)) = matches.subcommand() else {
        return Ok(Vec::new());
    };
    let mut path = vec![name];
    while let Some((name, s)) = sub.subcommand() {
        path.push(name);
        sub = s;
    }
    // `audit verify` shares the server's configuration file and takes only the keys it
    // knows (`data`, `store`); the other subcommands take every key.
    let mut leaf = Cli::command();
    for name in &path {
        leaf = leaf.find_subcommand(name).cloned().unwrap_or_default();
    }
    let only_known = path == ["audit", "verify"];
    let mut args = Vec::new();
    for (k, v) in table {
        let id = k.replace('-', "_");
        if only_known && !leaf.get_arguments().any(|a| a.get_id() == id.as_str()) {
            continue;
        }
        match sub.value_source(&id) {
            Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable) => continue,
            _ => {}
        }
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(format!("config key '{k}': unsupported value {other}")),
        };
        args.push(format!("--{}={s}", id.replace('_', "-")));
    }
    Ok(args)
}

fn main() {
    // Before any SQLite connection: SQLite allocates through mimalloc too, without its
    // statistics (issho_store_sqlite::use_global_allocator).
    let sqlite_alloc = issho_store_sqlite::use_global_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if !sqlite_alloc {
        tracing::warn!("SQLite keeps the C library's allocator (it was configured too late)");
    }
    let argv: Vec<String> = std::env::args().collect();
    let matches = Cli::command().get_matches_from(&argv);
    let cli0 = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let extra = merge_config(&matches, cli0.config.as_ref()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let cli = if extra.is_empty() {
        cli0
    } else {
        // Re-parse with config values inserted before the user's own arguments (which win).
        let mut with: Vec<String> = Vec::new();
        let sub_pos = argv
            .iter()
            .position(|a| matches!(a.as_str(), "serve" | "import" | "demo" | "verify"))
            .unwrap_or(1);
        with.extend_from_slice(&argv[..=sub_pos]);
        with.extend(extra);
        with.extend_from_slice(&argv[sub_pos + 1..]);
        Cli::parse_from(with)
    };
    let code = match cli.cmd {
        Cmd::Migrate(a) => migrate(a),
        Cmd::Copy(a) => match copy::run(a) {
            Ok(summary) => {
                println!("{summary}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Cmd::Version => {
            println!("issho {} (FHIR R4 4.0.1)", env!("CARGO_PKG_VERSION"));
            0
        }
        Cmd::Audit(AuditArgs {
            cmd: AuditCmd::Verify(a),
        }) => audit_verify(a),
        Cmd::Serve(a) => serve::serve(a),
        Cmd::Token(a) => token(a),
        Cmd::Client(ClientCmdArgs {
            cmd: ClientCmd::Add(a),
        }) => client(a),
        Cmd::Client(ClientCmdArgs {
            cmd: ClientCmd::List(a),
        }) => client_list(a),
        Cmd::Import(a) => import(a),
        Cmd::Package(a) => package_cmd(a),
        Cmd::Terminology(terminology::TerminologyArgs {
            cmd: terminology::TerminologyCmd::Import(a),
        }) => terminology_import(a),
        Cmd::Export(a) => export(a),
        Cmd::Demo(a) => demo(a),
        Cmd::Research(a) => research::run(a),
        Cmd::View(a) => view::run(a),
        Cmd::Study(a) => study::run(a),
    };
    std::process::exit(code);
}

fn open_engine(
    data: &std::path::Path,
    store: Option<&str>,
    config: EngineConfig,
) -> Result<Engine, String> {
    open_engine_with(data, store, config, issho_audit::AuditConfig::default())
}

/// [`open_engine`] with the audit trail's rotation and retention.
fn open_engine_with(
    data: &std::path::Path,
    store: Option<&str>,
    config: EngineConfig,
    audit: issho_audit::AuditConfig,
) -> Result<Engine, String> {
    let choice = issho::StoreChoice::parse(store)?;
    issho::open_with_audit(&choice, data, config, audit).map_err(|e| {
        let why: Vec<&str> = e.issues.iter().map(|i| i.diagnostics.as_str()).collect();
        format!("cannot open {}: {}", choice.describe(data), why.join("; "))
    })
}

fn migrate(a: MigrateArgs) -> i32 {
    let url = match issho::StoreChoice::parse(Some(&a.store)) {
        Ok(issho::StoreChoice::Postgres(u)) => u,
        Ok(issho::StoreChoice::Embedded) => {
            eprintln!(
                "error: the embedded store needs no migration; --store takes a postgres:// URL"
            );
            return 2;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match issho_store_pg::migrate(&url) {
        Ok(applied) if applied.is_empty() => {
            println!(
                "{}: the schema is up to date (version {})",
                issho::redact(&url),
                issho_store_pg::schema_version()
            );
            0
        }
        Ok(applied) => {
            println!(
                "{}: applied migrations {applied:?} (schema version {})",
                issho::redact(&url),
                issho_store_pg::schema_version()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The authentication store of a data directory the server ran on (errors printed).
fn existing_auth(data: &std::path::Path) -> Option<issho_auth::Auth> {
    match issho_auth::Auth::open_existing(data) {
        Ok(Some(x)) => Some(x),
        Ok(None) => {
            eprintln!(
                "error: {} has no authentication store yet; run `issho serve --data {}` once",
                data.display(),
                data.display()
            );
            None
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn client_list(a: ClientListArgs) -> i32 {
    let Some(auth) = existing_auth(&a.data) else {
        return 1;
    };
    match auth.clients() {
        Ok(list) => {
            if list.is_empty() {
                println!(
                    "no clients registered (add one with: issho client add --id APP --redirect-uri URI)"
                );
            }
            for (c, service) in list {
                if service {
                    println!(
                        "{}\tbackend service\t{}\tscopes: {}",
                        c.id, c.name, c.scopes
                    );
                } else {
                    println!(
                        "{}\tapp (public, PKCE)\t{}\tredirect URIs: {}\tscopes: {}",
                        c.id,
                        c.name,
                        c.redirect_uris.join(" "),
                        c.scopes
                    );
                }
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn client(a: ClientArgs) -> i32 {
    let Some(auth) = existing_auth(&a.data) else {
        return 1;
    };
    if let Some(path) = &a.jwks {
        let jwks = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            }) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return 1;
            }
        };
        let name = a.name.clone().unwrap_or_else(|| a.id.clone());
        return match auth.put_service(&a.id, &name, &jwks, &a.scope) {
            Ok(()) => {
                println!("registered backend service '{}'", a.id);
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        };
    }
    let c = issho_auth::Client {
        name: a.name.clone().unwrap_or_else(|| a.id.clone()),
        id: a.id,
        redirect_uris: a.redirect_uris,
        scopes: a.scope,
    };
    match auth.put_client(&c) {
        Ok(()) => {
            println!(
                "registered client '{}' ({})",
                c.id,
                c.redirect_uris.join(" ")
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn token(a: TokenArgs) -> i32 {
    let Some(auth) = existing_auth(&a.data) else {
        return 1;
    };
    let user = match auth.user(&a.user) {
        Ok(Some(u)) => u,
        Ok(None) => {
            eprintln!("error: no user '{}' in {}", a.user, a.data.display());
            return 1;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match auth.issue_for_user(&user, a.scope.as_deref()) {
        Ok(resp) => {
            println!("{resp}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn import(a: ImportArgs) -> i32 {
    let engine = match open_engine(&a.data, a.store.as_deref(), EngineConfig::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match load::import_paths(&engine, &a.paths, a.jobs.max(1)) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn terminology_import(a: terminology::ImportArgs) -> i32 {
    let engine = if a.out.is_some() {
        None
    } else {
        match open_engine(&a.at.data, a.at.store.as_deref(), EngineConfig::default()) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("error: {e}");
                if e.contains("in use by another issho process") {
                    eprintln!(
                        "the server is running on this store: write the code systems as files \
                         with --out DIR and PUT them (an administrator's token), or stop the server"
                    );
                }
                return 1;
            }
        }
    };
    match terminology::import(engine.as_ref(), &a) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn package_cmd(a: package::PackageArgs) -> i32 {
    let at = match &a.cmd {
        package::PackageCmd::Install(i) => &i.at,
        package::PackageCmd::List(s) => s,
    };
    let engine = match open_engine(&at.data, at.store.as_deref(), EngineConfig::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            if e.contains("in use by another issho process") {
                eprintln!(
                    "the server is running on this store: install into it over HTTP instead \
                     (an administrator's token): curl -X POST -H 'Content-Type: application/gzip' \
                     -H 'Authorization: Bearer TOKEN' --data-binary @FILE.tgz BASE/$install-package"
                );
            }
            return 1;
        }
    };
    let done = match &a.cmd {
        package::PackageCmd::Install(i) => package::install(&engine, &i.files),
        package::PackageCmd::List(_) => package::list(&engine),
    };
    match done {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn export(a: export::ExportArgs) -> i32 {
    if let Some(server) = &a.server {
        return match export::export_over_http(&a, server) {
            Ok(s) => {
                println!("{s}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        };
    }
    let engine = match open_engine(&a.data, a.store.as_deref(), EngineConfig::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            if e.contains("in use by another issho process") {
                eprintln!(
                    "a running server holds this store: export from it over HTTP with \
                     issho export --server http://HOST:PORT/fhir --token TOKEN --out DIR \
                     (Bulk Data $export; a token from issho token --user NAME), or stop it first."
                );
            }
            return 1;
        }
    };
    let req = issho_engine::ExportRequest {
        types: a.types.clone(),
        since: a.since.clone(),
        ..Default::default()
    };
    let code = match export::export_to(&engine, &a.out, &req) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    let _ = engine.flush_audit();
    code
}

fn demo(a: DemoArgs) -> i32 {
    if let Some(out) = &a.out {
        let cfg = issho_demo::DemoConfig {
            persons: a.patients,
            seed: a.seed,
        };
        let start = std::time::Instant::now();
        return match issho_demo::write_ndjson(&cfg, out) {
            Ok(summary) => {
                println!(
                    "wrote the demo population to {} in {:.1?}: {summary:?}",
                    out.display(),
                    start.elapsed()
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        };
    }
    let engine = match open_engine(&a.data, None, EngineConfig::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match load::load_demo(&engine, a.patients, a.seed, true) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn audit_verify(a: AuditVerifyArgs) -> i32 {
    let store = match issho::StoreChoice::parse(a.store.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match issho::verify_audit(&store, &a.data, &a.archive) {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(e @ issho_audit::VerifyError::Unreadable(_)) => {
            eprintln!("error: {e}");
            2
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}
