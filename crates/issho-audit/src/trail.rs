//! What the engine needs of an audit trail, independent of where it is kept.

use crate::record::AuditRecord;
use serde_json::Value;

/// What can go wrong with the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditError {
    /// The database or a file could not be read or written.
    Io(String),
    /// Opening found the log inconsistent with its head file (entries removed or rewritten).
    Tampered(String),
    /// The writer failed: records since then are not stored. Fix the cause and reopen.
    WriterFailed(String),
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Io(e) => write!(f, "audit log: {e}"),
            AuditError::Tampered(e) => write!(
                f,
                "audit log tampered with: {e} (run `issho audit verify` for details)"
            ),
            AuditError::WriterFailed(e) => write!(f, "audit log writer failed: {e}"),
        }
    }
}

impl std::error::Error for AuditError {}

/// An audit trail the engine records to. [`crate::AuditLog`] (feature `sqlite`, the default)
/// keeps it in segments beside the data; the engine sees only this trait, so it depends on
/// no database.
pub trait AuditTrail: Send + Sync {
    /// Queue a record (durable at the next [`AuditTrail::flush`] or shortly after).
    fn record(&self, rec: AuditRecord) -> Result<(), AuditError>;
    /// Wait until every queued record is durable.
    fn flush(&self) -> Result<(), AuditError>;
    /// Events by `agent` and/or concerning `patient` (`Patient/id`), recorded in
    /// `[since, until)` (microseconds since the epoch), newest first, at most `limit`, as
    /// AuditEvent resources.
    fn search(
        &self,
        agent: Option<&str>,
        patient: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError>;
}
