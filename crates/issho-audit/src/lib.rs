//! The audit trail: every access to the record, and every denial, as a FHIR R4 AuditEvent
//! following the IHE Basic Audit Log Patterns (BALP), kept append-only and hash-chained in
//! segments of SQLite files of its own (`audit/` in the data directory), or (feature
//! `postgres`, [`PgAuditLog`]) in the tables of a PostgreSQL store's database: one chain for
//! every process serving it.
//!
//! - [`AuditRecord`]: what the engine fills in for one access (plain Rust, no engine types).
//! - [`to_audit_event`]: the record as an AuditEvent resource.
//! - [`AuditTrail`]: what the engine records to (no database in its signature).
//! - [`AuditLog`] (feature `sqlite`, on by default): the segments, separate from the FHIR
//!   store so that no FHIR interaction can reach or rewrite them. [`AuditLog::record`] queues
//!   for a background writer (batches, WAL, synced when the head moves; each batch one block of
//!   the chain); [`AuditLog::flush`] waits for durability; [`AuditLog::for_patient`] is a person's
//!   own access log, [`AuditLog::search`] the administrators' view. Rows are compact
//!   (`codec.rs`: tens of bytes a read); segments rotate by size or age and may be removed
//!   after a retention period ([`AuditConfig`]).
//! - [`verify`], [`verify_with_archives`]: recompute the chain across segments (and archived
//!   copies) and compare its end with the head file `audit/head`, naming the first bad block,
//!   entry or segment (edited, removed, reordered, replaced, or the tail cut off).
//!
//! What the chain proves: that no entry was edited, removed or moved by anyone who did not
//! also recompute every later hash *and* replace the head file. It holds no secret, so
//! someone with write access to the files and this code can rebuild a consistent forgery;
//! the head hash printed by `issho audit verify`, kept elsewhere, detects that too.

// Parts of these serve only the SQLite log (the head file, the index keys).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
mod chain;
#[cfg(feature = "sqlite")]
mod codec;
#[cfg(feature = "sqlite")]
mod convert;
#[cfg(feature = "sqlite")]
mod directory;
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
mod event;
#[cfg(feature = "sqlite")]
mod log;
#[cfg(feature = "postgres")]
mod pg;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod queue;
mod record;
#[cfg(feature = "sqlite")]
mod segment;
mod trail;
#[cfg(feature = "sqlite")]
mod v1;
#[cfg(feature = "sqlite")]
mod verify;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod walk;

pub use chain::{DB_FILE, HEAD_FILE, Hash, SEG_HEAD_FILE, entry_hash};
pub use event::to_audit_event;
#[cfg(feature = "sqlite")]
pub use log::{AuditConfig, AuditLog, LOCK_FILE, REMOVED_FILE};
#[cfg(feature = "postgres")]
pub use pg::{PgAuditLog, verify_pg};
pub use record::{Action, Agent, AuditRecord, Interaction, Outcome, now_micros};
#[cfg(feature = "sqlite")]
pub use segment::SEGMENTS_DIR;
pub use trail::{AuditError, AuditTrail};
#[cfg(feature = "sqlite")]
pub use verify::{verify, verify_with_archives};
pub use walk::{Problem, VerifyError, VerifyReport};
