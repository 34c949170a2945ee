//! `issho copy`: a whole store into an empty one — every version with its number, time, method
//! and body bytes — verified by counts and a checksum over every version on both sides.

use indicatif::{ProgressBar, ProgressStyle};
use issho_store::{HistoryQuery, HistoryScope, NoObserver, Permit, Store};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Versions per write transaction.
const BATCH: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// The source: a data directory (the embedded store) or a `postgres://` URL.
    #[arg(long)]
    pub from: String,
    /// The target, which must hold no resource yet: a data directory or a `postgres://` URL.
    #[arg(long)]
    pub to: String,
}

fn is_pg(place: &str) -> bool {
    place.starts_with("postgres://") || place.starts_with("postgresql://")
}

/// A store opened for copying (the store's own handle: not through the engine).
fn open(place: &str) -> Result<Arc<dyn Store>, String> {
    Ok(if is_pg(place) {
        Arc::new(
            issho_store_pg::PgStore::open(place, Arc::new(NoObserver))
                .map_err(|e| format!("{}: {e}", issho::redact(place)))?,
        )
    } else {
        let dir = PathBuf::from(place);
        Arc::new(
            issho_store_sqlite::SqliteStore::open(&dir, Arc::new(NoObserver))
                .map_err(|e| format!("{place}: {e}"))?,
        )
    })
}

/// The system's permit for copying (what the engine's upkeep uses).
fn permit() -> Result<Permit, String> {
    let ctx = issho_access::AccessContext::system("copy");
    issho_access::Gate::new()
        .check(&ctx, issho_access::Action::Admin, None)
        .map_err(|e| format!("{e:?}"))
}

/// How many versions a store holds.
fn version_count(store: &dyn Store, permit: &Permit) -> Result<u64, String> {
    let r = store.reader(permit).map_err(|e| e.to_string())?;
    let q = HistoryQuery {
        scope: HistoryScope::System,
        since: None,
        at: None,
        count: 0,
        offset: 0,
        max_seq: None,
    };
    Ok(r.history(&q).map_err(|e| e.to_string())?.1)
}

/// (versions, resources, SHA-256 over every version in writing order: type, id, version,
/// time, method, body or deletion, and the resource's person).
fn checksum(store: &dyn Store, permit: &Permit) -> Result<(u64, u64, String), String> {
    let r = store.reader(permit).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    let (mut n, mut ids) = (0u64, std::collections::HashSet::new());
    let mut after = 0i64;
    loop {
        let page = r.versions(after, BATCH).map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, v) in &page {
            for part in [
                v.resource_type.as_bytes(),
                v.id.as_bytes(),
                &v.version.to_be_bytes(),
                &v.last_updated.to_be_bytes(),
                v.method.as_bytes(),
                v.person.as_deref().unwrap_or("\u{0}").as_bytes(),
                v.body.as_deref().unwrap_or(b"\x00deleted"),
            ] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            n += 1;
            ids.insert(v.rid);
        }
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((n, ids.len() as u64, hex))
}

/// Copy, then record the copy in the source's audit trail (the data directory's, or the
/// source database's): who ran it, where to, and every person whose record was copied — so a
/// person's own access log shows that their record was copied. A failed copy is recorded too.
pub fn run(a: CopyArgs) -> Result<String, String> {
    // Opened first: a copy that cannot be recorded is not made.
    let trail = open_trail(&a.from)?;
    let mut persons = std::collections::BTreeSet::new();
    let result = copy(&a, &mut persons);
    use issho_audit::{AuditRecord, Interaction, Outcome};
    let mut rec = AuditRecord::new(Interaction::Operation, "issho-copy", "issho copy");
    rec.agent.role = Some("system".into());
    rec.query = Some(format!("$copy?to={}", issho::redact(&a.to)));
    rec.patients = persons.iter().map(|p| format!("Patient/{p}")).collect();
    if let Err(e) = &result {
        rec.outcome = Outcome::SeriousFailure;
        rec.reason = Some(e.clone());
    }
    trail
        .record(rec)
        .and_then(|()| trail.flush())
        .map_err(|e| format!("the copy could not be recorded in the audit trail: {e}"))?;
    result
}

/// The audit trail of the store at `place`.
fn open_trail(place: &str) -> Result<Box<dyn issho_audit::AuditTrail>, String> {
    let trail: Box<dyn issho_audit::AuditTrail> = if is_pg(place) {
        Box::new(issho_audit::PgAuditLog::open(place).map_err(|e| e.to_string())?)
    } else {
        Box::new(issho_audit::AuditLog::open(&PathBuf::from(place)).map_err(|e| e.to_string())?)
    };
    Ok(trail)
}

fn copy(a: &CopyArgs, persons: &mut std::collections::BTreeSet<String>) -> Result<String, String> {
    let permit = permit()?;
    let from = open(&a.from)?;
    let to = open(&a.to)?;
    let target = to.reader(&permit).map_err(|e| e.to_string())?;
    if target.max_seq().map_err(|e| e.to_string())? > 0 {
        return Err(format!(
            "the target {} is not empty: copy only into a new store",
            issho::redact(&a.to)
        ));
    }
    drop(target);
    let total = version_count(&*from, &permit)?;
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} copying versions [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let r = from.reader(&permit).map_err(|e| e.to_string())?;
    let mut after = 0i64;
    loop {
        let page = r.versions(after, BATCH).map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { break };
        persons.extend(page.iter().filter_map(|(_, v)| v.person.clone()));
        after = *last;
        let n = page.len() as u64;
        issho_store::write(&*to, &permit, move |tx| {
            for (_, v) in &page {
                tx.put_version(v)?;
            }
            Ok::<(), issho_store::StoreError>(())
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        pb.inc(n);
    }
    pb.finish_and_clear();
    // The store's own settings (e.g. the version of the ownership rule that keyed it: without
    // it the engine would re-key every resource when it opens the copy).
    let settings = r.settings().map_err(|e| e.to_string())?;
    issho_store::write(&*to, &permit, move |tx| {
        for (k, v) in &settings {
            tx.set_meta(k, v)?;
        }
        Ok::<(), issho_store::StoreError>(())
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    drop(r);
    let (n1, r1, c1) = checksum(&*from, &permit)?;
    let (n2, r2, c2) = checksum(&*to, &permit)?;
    let settings = |s: &dyn Store| -> Result<Vec<(String, String)>, String> {
        s.reader(&permit)
            .and_then(|r| r.settings())
            .map_err(|e| e.to_string())
    };
    if settings(&*from)? != settings(&*to)? {
        return Err("the copy's store settings differ from the source's".into());
    }
    if is_pg(&a.to) {
        // Fresh tables: give the planner its statistics now rather than at autovacuum's pace.
        issho_store_pg::connect(&a.to)
            .and_then(|mut c| Ok(c.batch("ANALYZE")?))
            .map_err(|e| e.to_string())?;
    }
    if (n1, r1, &c1) != (n2, r2, &c2) {
        return Err(format!(
            "the copy differs from the source: {n1} versions of {r1} resources (SHA-256 {c1}) \
             against {n2} of {r2} ({c2})"
        ));
    }
    Ok(format!(
        "copied {n1} versions of {r1} resources from {} to {}; verified: equal counts and \
         SHA-256 {c1} over every version on both sides, and the same store settings. The copy is \
         recorded in the source's audit trail, which stays where it is (check it with `issho \
         audit verify`); custom search parameters are indexed when a server first opens the copy.",
        issho::redact(&a.from),
        issho::redact(&a.to)
    ))
}
