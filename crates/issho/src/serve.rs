//! `issho serve`: its arguments and the server's start (store, demo data and users,
//! authentication, TLS, the startup lines a new user reads).

use super::*;

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
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
    /// Every resource of TYPE must meet the profile URL (an installed StructureDefinition),
    /// whatever its meta.profile says: `--require-profile Patient=http://…/JP_Patient`.
    #[arg(long, env = "ISSHO_REQUIRE_PROFILE", value_delimiter = ',', value_parser = type_and_url)]
    require_profile: Vec<(String, String)>,
    /// A profile named in a resource's meta.profile that is not installed refuses the write
    /// (without it: a warning in the answer).
    #[arg(long, env = "ISSHO_UNKNOWN_PROFILES_ARE_ERRORS")]
    unknown_profiles_are_errors: bool,
    /// Whether research projects receive the persons who said nothing (opt-out: they take
    /// part unless they refused with a research Consent) or only those who agreed (opt-in).
    #[arg(long, env = "ISSHO_RESEARCH_CONSENT", value_enum, default_value_t = Research::OptOut)]
    research_consent: Research,
    /// The audit trail (embedded store): seal the segment being written, and start the next,
    /// once it holds this many MiB.
    #[arg(long, env = "ISSHO_AUDIT_SEGMENT_MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    audit_segment_mib: u64,
    /// The audit trail (embedded store): seal the segment being written once it is this many
    /// days old.
    #[arg(long, env = "ISSHO_AUDIT_SEGMENT_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    audit_segment_days: u64,
    /// The audit trail (embedded store): remove sealed segments whose newest event is older
    /// than this many days (archive them first: `issho audit verify --archive` checks the
    /// chain through the copies). Without it every segment is kept.
    #[arg(long, env = "ISSHO_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u64).range(1..))]
    audit_retention_days: Option<u64>,
}

/// `--research-consent`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Research {
    OptOut,
    OptIn,
}

/// `TYPE=URL` of `--require-profile`.
fn type_and_url(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((t, u)) if issho_model::r4().is_resource_type(t) && !u.is_empty() => {
            Ok((t.to_string(), u.to_string()))
        }
        _ => Err(format!(
            "'{s}' is not TYPE=URL (a resource type and a profile's canonical URL)"
        )),
    }
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

pub(crate) fn serve(a: ServeArgs) -> i32 {
    if a.demo
        && let Err(e) = crate::research::ensure_demo_project(&a.data)
    {
        eprintln!("error: the demo research project: {e}");
        return 1;
    }
    let day = std::time::Duration::from_secs(86_400);
    let audit = issho_audit::AuditConfig {
        segment_bytes: a.audit_segment_mib.saturating_mul(1 << 20),
        segment_age: day.saturating_mul(a.audit_segment_days.min(u32::MAX as u64) as u32),
        retention: a
            .audit_retention_days
            .map(|d| day.saturating_mul(d.min(u32::MAX as u64) as u32)),
    };
    let engine = match open_engine_with(
        &a.data,
        a.store.as_deref(),
        EngineConfig {
            validate: !a.no_validate,
            consent_policy: a.consent_policy.into(),
            refuse_conflicting_orders: a.refuse_conflicting_orders,
            required_profiles: a.require_profile.clone(),
            unknown_profiles_are_errors: a.unknown_profiles_are_errors,
            research_default: match a.research_consent {
                Research::OptOut => issho_engine::ResearchDefault::OptOut,
                Research::OptIn => issho_engine::ResearchDefault::OptIn,
            },
            ..Default::default()
        },
        audit,
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    // Bulk Data exports a restart interrupted run again (only in the server: other commands
    // open the store briefly).
    engine.resume_bulk();
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
    let research_projects = engine.research_projects();
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
        println!(
            "research: {} (--research-consent); projects: {} (issho research list)",
            match a.research_consent {
                Research::OptOut =>
                    "projects receive de-identified data of the persons who did not refuse",
                Research::OptIn =>
                    "projects receive de-identified data of the persons who agreed",
            },
            research_projects
        );
        println!("issho listening on {scheme}://{addr}/fhir (CapabilityStatement: {scheme}://{addr}/fhir/metadata)");
        if !a.dev_open {
            println!(
                "web: {scheme}://{addr}/ in a browser — sign in as a demo user (or your own): the person's record at /portal, care providers at /clinician"
            );
        }
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
