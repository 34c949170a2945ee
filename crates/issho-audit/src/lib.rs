//! The audit trail: every access to the record, and every denial, as a FHIR R4 AuditEvent
//! following the IHE Basic Audit Log Patterns (BALP), kept in an append-only, hash-chained
//! SQLite file of its own, or (feature `postgres`, [`PgAuditLog`]) in the tables of a
//! PostgreSQL store's database: one chain for every process serving it.
//!
//! - [`AuditRecord`]: what the engine fills in for one access (plain Rust, no engine types).
//! - [`to_audit_event`]: the record as an AuditEvent resource.
//! - [`AuditTrail`]: what the engine records to (no database in its signature).
//! - [`AuditLog`] (feature `sqlite`, on by default): `audit.db` in the data directory, separate from the FHIR store so that no
//!   FHIR interaction can reach or rewrite it. [`AuditLog::record`] queues for a background
//!   writer (batches, WAL, `synchronous=FULL`); [`AuditLog::flush`] waits for durability;
//!   [`AuditLog::for_patient`] is a person's own access log, [`AuditLog::search`] the
//!   administrators' view.
//! - [`verify`]: recompute the chain and compare its end with the head file `audit.head`,
//!   naming the first bad entry (edited, removed, reordered, or the tail cut off).
//!
//! What the chain proves: that no entry was edited, removed or moved by anyone who did not
//! also recompute every later hash *and* replace the head file. It holds no secret, so
//! someone with write access to both files and this code can rebuild a consistent forgery;
//! the head hash printed by `issho audit verify`, kept elsewhere, detects that too.

// Parts of these serve only the SQLite log (the head file, the index keys).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
mod chain;
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
mod event;
#[cfg(feature = "sqlite")]
mod log;
#[cfg(feature = "postgres")]
mod pg;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod queue;
mod record;
mod trail;
#[cfg(feature = "sqlite")]
mod verify;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod walk;

pub use chain::{DB_FILE, HEAD_FILE, Hash, entry_hash};
pub use event::to_audit_event;
#[cfg(feature = "sqlite")]
pub use log::AuditLog;
#[cfg(feature = "postgres")]
pub use pg::{PgAuditLog, verify_pg};
pub use record::{Action, Agent, AuditRecord, Interaction, Outcome, now_micros};
pub use trail::{AuditError, AuditTrail};
#[cfg(feature = "sqlite")]
pub use verify::verify;
pub use walk::{Problem, VerifyError, VerifyReport};
