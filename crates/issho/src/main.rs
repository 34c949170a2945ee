//! The `issho` command: serve, import, demo, audit, version.

mod copy;
mod demo_users;
mod export;
mod load;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use issho_engine::{Engine, EngineConfig};
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
    /// The audit trail (audit.db in the data directory).
    Audit(AuditArgs),
    /// Copy a whole store (every version) into an empty one: embedded ⇄ PostgreSQL.
    Copy(copy::CopyArgs),
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
struct ServeArgs {
    /// Data directory: the embedded store and its audit trail, keys, users.
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
    /// Where the resources are kept: `embedded` (the default: the data directory) or a
    /// PostgreSQL URL `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (the data directory still
    /// holds the keys and the users; the audit trail is then in the database).
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "ISSHO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Public base URL of the FHIR endpoint (default: derived from the Host header).
    #[arg(long, env = "ISSHO_BASE_URL")]
    base_url: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "ISSHO_MAX_BODY", default_value_t = 32 * 1024 * 1024)]
    max_body: usize,
    /// Open mode for local development: no authentication, every request may read and write
    /// everything (a warning is printed at start). Without it every request needs a token.
    #[arg(long, env = "ISSHO_DEV_OPEN")]
    dev_open: bool,
    /// Fill an empty store with the generated demo population first.
    #[arg(long)]
    demo: bool,
    /// Persons in the demo population.
    #[arg(long, env = "ISSHO_DEMO_PATIENTS", default_value_t = 200)]
    demo_patients: usize,
    /// Seed of the demo population.
    #[arg(long, env = "ISSHO_DEMO_SEED", default_value_t = 1)]
    demo_seed: u64,
    /// Skip validation of writes (for trusted bulk loads only).
    #[arg(long, env = "ISSHO_NO_VALIDATE")]
    no_validate: bool,
    /// Serve HTTPS: the PEM certificate chain (with --tls-key).
    #[arg(long, env = "ISSHO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "ISSHO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Requests per second per caller (bearer token), bursts of twice that; 0 = no limit.
    #[arg(long, env = "ISSHO_RATE_LIMIT", default_value_t = 0)]
    rate_limit: u32,
    /// Whether institutions caring for a person see what other institutions hold unless the
    /// person refused (NeXEHRs), or only after the person agreed (an active privacy Consent
    /// with a base `permit`); an institution always sees what it holds itself.
    #[arg(long, env = "ISSHO_CONSENT_POLICY", value_enum, default_value_t = Policy::ShareUnlessRefused)]
    consent_policy: Policy,
    /// Refuse (409) a MedicationRequest that conflicts with the person's drug allergies,
    /// contraindicated drugs or current prescriptions, instead of writing it with warnings.
    #[arg(long, env = "ISSHO_REFUSE_CONFLICTING_ORDERS")]
    refuse_conflicting_orders: bool,
}

/// `--consent-policy`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Policy {
    ShareUnlessRefused,
    ShareAfterConsent,
}

impl From<Policy> for issho_engine::ConsentPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::ShareUnlessRefused => issho_engine::ConsentPolicy::ShareUnlessRefused,
            Policy::ShareAfterConsent => issho_engine::ConsentPolicy::ShareAfterConsent,
        }
    }
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
    /// Recompute the audit trail's hash chain; exit 1 naming the first bad entry when it was
    /// edited, cut short or reordered.
    Verify(AuditVerifyArgs),
}

#[derive(clap::Args, Debug)]
struct AuditVerifyArgs {
    /// Data directory (holds audit.db and its anchor audit.head with the embedded store).
    #[arg(long, env = "ISSHO_DATA", default_value = "./issho-data")]
    data: PathBuf,
    /// The store whose audit trail to check: `embedded` (the default: audit.db in the data
    /// directory) or a PostgreSQL URL (the trail is in that database and schema).
    #[arg(long, env = "ISSHO_STORE", hide_env_values = true)]
    store: Option<String>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        Cmd::Serve(a) => serve(a),
        Cmd::Token(a) => token(a),
        Cmd::Client(ClientCmdArgs {
            cmd: ClientCmd::Add(a),
        }) => client(a),
        Cmd::Client(ClientCmdArgs {
            cmd: ClientCmd::List(a),
        }) => client_list(a),
        Cmd::Import(a) => import(a),
        Cmd::Export(a) => export(a),
        Cmd::Demo(a) => demo(a),
    };
    std::process::exit(code);
}

fn open_engine(
    data: &std::path::Path,
    store: Option<&str>,
    config: EngineConfig,
) -> Result<Engine, String> {
    let choice = issho::StoreChoice::parse(store)?;
    issho::open(&choice, data, config).map_err(|e| {
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

fn serve(a: ServeArgs) -> i32 {
    let engine = match open_engine(
        &a.data,
        a.store.as_deref(),
        EngineConfig {
            validate: !a.no_validate,
            consent_policy: a.consent_policy.into(),
            refuse_conflicting_orders: a.refuse_conflicting_orders,
            ..Default::default()
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if a.demo {
        match engine.is_empty(&issho_engine::AccessContext::system("demo")) {
            Ok(true) => {
                eprintln!(
                    "filling the empty store with the demo population ({} persons, seed {})…",
                    a.demo_patients, a.demo_seed
                );
                match load::load_demo(&engine, a.demo_patients, a.demo_seed, true) {
                    Ok(summary) => println!("{summary}"),
                    Err(e) => {
                        eprintln!("error: demo load failed: {e}");
                        return 1;
                    }
                }
            }
            Ok(false) => eprintln!(
                "the store in {} already holds data; the demo population is not loaded again",
                a.data.display()
            ),
            Err(e) => {
                eprintln!("error: {:?}", e.issues);
                return 1;
            }
        }
    }
    // Bind first: tokens are issued for (and only accepted by) this server's base URL, which
    // holds the real port when `--listen` asked for any (`:0`).
    let std_listener = match std::net::TcpListener::bind(&a.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", a.listen);
            return 1;
        }
    };
    let _ = std_listener.set_nonblocking(true);
    let addr = std_listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| a.listen.clone());
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => match issho_server::tls::server_config(c, k) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                eprintln!("error: TLS: {e}");
                return 1;
            }
        },
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let issuer = a
        .base_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}/fhir"));
    let auth = match issho_auth::Auth::open(&a.data, &issuer) {
        Ok(x) => std::sync::Arc::new(x),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if a.demo {
        match demo_users::create(&auth, a.demo_patients, a.demo_seed) {
            Ok(users) => {
                println!("demo users (password '{}'):", demo_users::DEMO_PASSWORD);
                for (name, sees) in users {
                    println!("  {name:<16} sees {sees}");
                }
                println!(
                    "get a token:  issho token --data {} --user demo-patient\n\
                     then:         curl -H \"Authorization: Bearer $TOKEN\" {issuer}/Patient",
                    a.data.display()
                );
                let root = issuer.strip_suffix("/fhir").unwrap_or(&issuer);
                println!(
                    "sign in with a SMART app: the public client 'demo-app' (PKCE S256 required) may redirect to\n\
                     \x20 http://127.0.0.1:<any port>/callback or http://localhost:<any port>/callback\n\
                     \x20 authorize: {root}/auth/authorize?response_type=code&client_id=demo-app\
                     &redirect_uri=http://127.0.0.1:9999/callback&scope=openid%20fhirUser%20launch/patient%20patient/*.rs\
                     &state=STATE&aud={issuer}&code_challenge=CHALLENGE&code_challenge_method=S256\n\
                     \x20 token:     {root}/auth/token   discovery: {issuer}/.well-known/smart-configuration"
                );
            }
            Err(e) => {
                eprintln!("error: cannot create the demo users: {e}");
                return 1;
            }
        }
    }
    if a.dev_open {
        tracing::warn!(
            "--dev-open: no authentication; every request may read and write everything. Local development only."
        );
    } else {
        println!(
            "authentication: bearer tokens (ES256) for {issuer}; keys: {issuer}/.well-known/jwks.json"
        );
    }
    let config = issho_server::ServerConfig {
        base_url: a.base_url.clone(),
        max_body: a.max_body,
        dev_open: a.dev_open,
        auth: Some(auth),
        tls: tls.is_some(),
        rate_limit: (a.rate_limit > 0).then_some(a.rate_limit),
    };
    let app = issho_server::router(engine, config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Request parsing (JSON, XML) and validation are depth-bounded; extra stack keeps the
        // bounds far from the limit on every worker and blocking thread.
        .thread_stack_size(8 << 20)
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", a.listen);
                return 1;
            }
        };
        if let Ok(choice) = issho::StoreChoice::parse(a.store.as_deref()) {
            let trail = match choice {
                issho::StoreChoice::Embedded => "keys, users and audit trail",
                issho::StoreChoice::Postgres(_) => "audit trail beside them; keys and users",
            };
            println!(
                "resources: {}; {trail}: {}",
                choice.describe(&a.data),
                a.data.display()
            );
        }
        println!(
            "sharing: {} (--consent-policy)",
            match a.consent_policy {
                Policy::ShareUnlessRefused =>
                    "a person's record is shared with the institutions caring for them unless they refused",
                Policy::ShareAfterConsent =>
                    "institutions caring for a person see what others hold only after the person agreed",
            }
        );
        println!("issho listening on {scheme}://{addr}/fhir (CapabilityStatement: {scheme}://{addr}/fhir/metadata)");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let served = match tls {
            Some(cfg) => match issho_server::tls::TlsListener::new(listener, cfg) {
                Ok(l) => {
                    axum::serve(issho_server::OutcomeListener::new(l), app)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
                Err(e) => Err(e),
            },
            None => {
                axum::serve(issho_server::OutcomeListener::new(listener), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        match served {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    })
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

fn export(a: export::ExportArgs) -> i32 {
    let engine = match open_engine(&a.data, a.store.as_deref(), EngineConfig::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            if e.contains("in use by another issho process") {
                eprintln!(
                    "issho export reads the store itself and writes its audit record into the store's audit trail, \
                     which only one process may do: stop the server (Ctrl-C), run issho export, and start the server again. \
                     Exporting from a running server over HTTP (Bulk Data $export) is not yet available."
                );
            }
            return 1;
        }
    };
    let req = issho_engine::ExportRequest {
        types: a.types.clone(),
        since: a.since.clone(),
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
    match issho::verify_audit(&store, &a.data) {
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
