//! Converting a data directory's audit trail of the first format (`audit.db`, one hash per
//! entry) into the first segment of the current one, once, when the log is opened.
//!
//! The old log is verified first — a log that does not verify is left as it is and the
//! opening refused, since re-chaining it would hide the damage. Its records are appended to a
//! new segment in a directory of its own (`audit.converting`), which is renamed into place only
//! when complete, so that a crash half way leaves the old log untouched and the conversion
//! starts again. The segment's meta notes the old log's entry count and head hash
//! (`converted_from`); the old files are kept as `audit.v1.db` and `audit.v1.head`.

use crate::AuditError;
use crate::chain::{self, DB_FILE, HEAD_FILE, ZERO};
use crate::segment::{self, Active, SEGMENTS_DIR};
use std::path::Path;

const CONVERTING: &str = "audit.converting";

fn io(e: impl std::fmt::Display) -> AuditError {
    AuditError::Io(e.to_string())
}

/// Convert `dir`'s `audit.db` when there is one (and no segments yet).
pub(crate) fn convert_v1(dir: &Path) -> Result<(), AuditError> {
    if !dir.join(DB_FILE).exists() {
        return Ok(());
    }
    let segdir = dir.join(SEGMENTS_DIR);
    if !segment::list(&segdir).map_err(io)?.is_empty() {
        // Converted before; the old files' renaming was interrupted.
        return set_aside(dir);
    }
    // Segments once existed (their head says so) and are gone: an old log put back in their
    // place must not pass for the trail.
    if chain::read_seg_head(&segdir)
        .map_err(AuditError::Tampered)?
        .is_some_and(|h| h.seq > 0)
    {
        return Err(AuditError::Tampered(format!(
            "{SEGMENTS_DIR}/{} records entries but the segments are gone (and {DB_FILE} is \
             there instead)",
            chain::SEG_HEAD_FILE
        )));
    }
    let report = crate::v1::verify_v1(dir).map_err(|e| {
        AuditError::Tampered(format!(
            "{DB_FILE} (the audit trail's first format) does not verify, so it is not \
             converted: {e}"
        ))
    })?;
    let tmp = dir.join(CONVERTING);
    match std::fs::remove_dir_all(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("{}: {e}", tmp.display()))),
    }
    std::fs::create_dir_all(&tmp).map_err(io)?;
    {
        let mut active = Active::create(&tmp, 1, 0, ZERO).map_err(io)?;
        active
            .note(
                "converted_from",
                &format!(
                    "{DB_FILE} ({} entries, last seq {}, head {})",
                    report.entries,
                    report.last_seq,
                    chain::hex(&report.last_hash)
                ),
            )
            .map_err(io)?;
        crate::v1::read_records(dir, 1024, &mut |batch| active.append(batch)).map_err(io)?;
        if active.last != report.last_seq {
            return Err(io(format!(
                "converting {DB_FILE}: {} entries read, {} verified",
                active.last, report.last_seq
            )));
        }
        chain::write_seg_head(&tmp, active.head()).map_err(AuditError::Io)?;
    }
    if segdir.exists() {
        // Only an empty directory can be here (no segments were listed).
        std::fs::remove_dir(&segdir).map_err(|e| io(format!("{}: {e}", segdir.display())))?;
    }
    std::fs::rename(&tmp, &segdir).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    tracing::info!(
        entries = report.entries,
        "the audit trail was converted to segments ({DB_FILE} is kept as audit.v1.db)"
    );
    set_aside(dir)
}

/// Fold the old log's WAL into it and rename its files out of the way.
fn set_aside(dir: &Path) -> Result<(), AuditError> {
    {
        let conn = rusqlite::Connection::open(dir.join(DB_FILE)).map_err(io)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(io)?;
    }
    for (from, to) in [(DB_FILE, "audit.v1.db"), (HEAD_FILE, "audit.v1.head")] {
        match std::fs::rename(dir.join(from), dir.join(to)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("{from}: {e}"))),
        }
    }
    for leftover in ["audit.db-wal", "audit.db-shm"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    Ok(())
}
