//! The issho deployment: which store and audit trail the engine runs on.
//!
//! The engine depends on no database; this crate chooses them: the embedded store
//! (`issho-store-sqlite`, `issho.db`) and the SQLite audit trail (`audit.db`), both in the data
//! directory.

use issho_engine::{Engine, EngineConfig, FhirError};
use std::path::Path;
use std::sync::Arc;

/// Open the engine on the embedded store and audit trail in `dir` (created if needed).
pub fn open_embedded(dir: &Path, config: EngineConfig) -> Result<Engine, FhirError> {
    let audit = issho_audit::AuditLog::open(dir)
        .map_err(|e| FhirError::internal(format!("audit trail: {e}")))?;
    Engine::open(
        |observer| {
            let store = issho_store_sqlite::SqliteStore::open(dir, observer)?;
            Ok(Arc::new(store) as Arc<dyn issho_store::Store>)
        },
        Some(Arc::new(audit)),
        config,
    )
}
