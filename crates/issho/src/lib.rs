//! The issho deployment: which store and audit trail the engine runs on.
//!
//! The engine depends on no database; this crate chooses them: the embedded store
//! (`issho-store-sqlite`, `issho.db` in the data directory) or PostgreSQL
//! (`issho-store-pg`, `--store postgres://…`), and the audit trail beside it: segments in the
//! data directory's `audit` directory with the embedded store, the `audit*` tables of the same
//! database and schema with PostgreSQL (one chain for every process serving it). The data directory holds
//! the keys and users in either case.

use issho_engine::{Engine, EngineConfig, FhirError};
use std::path::Path;
use std::sync::Arc;

/// Where the resources are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store in the data directory.
    Embedded,
    /// A PostgreSQL database (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`).
    Postgres(String),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Embedded => f.write_str("Embedded"),
            StoreChoice::Postgres(u) => write!(f, "Postgres({})", redact(u)),
        }
    }
}

impl StoreChoice {
    /// `None` or `embedded`: the embedded store; a `postgres://` or `postgresql://` URL:
    /// PostgreSQL.
    pub fn parse(s: Option<&str>) -> Result<StoreChoice, String> {
        match s.map(str::trim) {
            None | Some("") | Some("embedded") => Ok(StoreChoice::Embedded),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(StoreChoice::Postgres(u.to_string()))
            }
            Some(other) => Err(format!(
                "--store must be 'embedded' or a postgres:// URL, not '{}'",
                redact(other)
            )),
        }
    }

    /// How to name it in messages (never with a password).
    pub fn describe(&self, dir: &Path) -> String {
        match self {
            StoreChoice::Embedded => format!("the embedded store in {}", dir.display()),
            StoreChoice::Postgres(u) => format!("PostgreSQL at {}", redact(u)),
        }
    }
}

/// A URL without its password (`postgres://user:***@host/db`, `?password=***`).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let mut out = match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
            None => format!("{scheme}://{rest}"),
        },
        None => format!("{scheme}://{rest}"),
    };
    if let Some(q) = query {
        let parts: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// Open the engine on the chosen store and its audit trail (see the crate's text); `dir` is
/// created if needed.
pub fn open(store: &StoreChoice, dir: &Path, config: EngineConfig) -> Result<Engine, FhirError> {
    open_with_audit(store, dir, config, issho_audit::AuditConfig::default())
}

/// [`open`], with the embedded audit trail's segments rotated and kept as `audit` says (the
/// PostgreSQL audit trail has no segments yet: it ignores it).
pub fn open_with_audit(
    store: &StoreChoice,
    dir: &Path,
    config: EngineConfig,
    audit: issho_audit::AuditConfig,
) -> Result<Engine, FhirError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| FhirError::internal(format!("{}: {e}", dir.display())))?;
    let audit = open_audit(store, dir, audit)
        .map_err(|e| FhirError::internal(format!("audit trail: {e}")))?;
    let mut engine = Engine::open(
        |observer| {
            Ok(match store {
                StoreChoice::Embedded => {
                    Arc::new(issho_store_sqlite::SqliteStore::open(dir, observer)?)
                        as Arc<dyn issho_store::Store>
                }
                StoreChoice::Postgres(url) => {
                    Arc::new(issho_store_pg::PgStore::open(url, observer)?)
                }
            })
        },
        Some(audit),
        config,
    )?;
    // Bulk Data $export files beside the audit trail.
    engine
        .enable_bulk(dir.join("bulk"))
        .map_err(|e| FhirError::internal(format!("{}: {e}", dir.join("bulk").display())))?;
    // Research projects (`issho research add`): their members get de-identified exports.
    let projects = issho_research::Projects::open(dir).map_err(FhirError::internal)?;
    engine.enable_research(projects);
    Ok(engine)
}

/// The audit trail that goes with the store.
fn open_audit(
    store: &StoreChoice,
    dir: &Path,
    config: issho_audit::AuditConfig,
) -> Result<Arc<dyn issho_audit::AuditTrail>, issho_audit::AuditError> {
    Ok(match store {
        StoreChoice::Embedded => Arc::new(issho_audit::AuditLog::open_with(dir, config)?),
        StoreChoice::Postgres(url) => Arc::new(issho_audit::PgAuditLog::open(url)?),
    })
}

/// Recompute the audit trail of the store (`issho audit verify`), with the embedded store
/// over its segments and those copied to `archives`.
pub fn verify_audit(
    store: &StoreChoice,
    dir: &Path,
    archives: &[std::path::PathBuf],
) -> Result<issho_audit::VerifyReport, issho_audit::VerifyError> {
    match store {
        StoreChoice::Embedded => issho_audit::verify_with_archives(dir, archives),
        StoreChoice::Postgres(url) => issho_audit::verify_pg(url),
    }
}

/// Open the engine on the embedded store and audit trail in `dir`.
pub fn open_embedded(dir: &Path, config: EngineConfig) -> Result<Engine, FhirError> {
    open(&StoreChoice::Embedded, dir, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_choices() {
        assert_eq!(StoreChoice::parse(None), Ok(StoreChoice::Embedded));
        assert_eq!(
            StoreChoice::parse(Some("postgres://u@h/db")),
            Ok(StoreChoice::Postgres("postgres://u@h/db".into()))
        );
        let err = StoreChoice::parse(Some("mysql://u:secret@h/db")).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://u@h/db?password=pw&options=-cx"),
            "postgres://u@h/db?password=***&options=-cx"
        );
    }
}
