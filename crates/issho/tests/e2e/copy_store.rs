//! `issho copy`: a store into an empty one with every version (numbers, times, deletions), the
//! search index rebuilt, verified by checksums; embedded ⇄ PostgreSQL when a database is at hand.

use crate::common;
use issho_engine::{AccessContext, Engine, HistoryQuery, HistoryScope};
use serde_json::json;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_issho");

/// The versions of a resource as (versionId, lastUpdated, deleted), newest first.
fn versions(e: &Engine, rt: &str, id: &str) -> Vec<(u64, i64, bool)> {
    let q = HistoryQuery {
        scope: HistoryScope::Instance(rt.into(), id.into()),
        since: None,
        at: None,
        count: 100,
        offset: 0,
        max_seq: None,
    };
    let (rows, _, _) = e.history(&AccessContext::system("test"), q).unwrap();
    rows.iter()
        .map(|s| (s.version, s.last_updated, s.is_deleted()))
        .collect()
}

fn copy(from: &str, to: &str) -> String {
    let out = Command::new(BIN)
        .args(["copy", "--from", from, "--to", to])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "copy {from} → {to}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified"), "{stdout}");
    stdout
}

/// A new, empty PostgreSQL schema's URL, when this run has a database.
fn pg_target() -> Option<String> {
    let base = common::test_store().or_else(|| std::env::var("ISSHO_TEST_PG").ok())?;
    let mut c = issho_store_pg::connect(&base).ok()?;
    let s = format!("c_{}", uuid::Uuid::new_v4().simple());
    c.batch(&format!("CREATE SCHEMA {s}")).ok()?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{s}"))
}

#[test]
fn a_store_copies_with_every_version_and_back() {
    let sys = AccessContext::system("test");
    let src = tempfile::tempdir().unwrap();
    let before;
    {
        let e = common::open_engine(src.path(), Default::default());
        for family in ["山田", "山田（旧姓 佐藤）"] {
            let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": family}]});
            e.update(&sys, "Patient", "p1", p, None).unwrap();
        }
        let o = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 7.10}});
        e.update(&sys, "Observation", "o1", o.clone(), None)
            .unwrap();
        e.delete(&sys, "Observation", "o1", None).unwrap();
        e.update(&sys, "Observation", "o1", o, None).unwrap();
        before = (
            versions(&e, "Patient", "p1"),
            versions(&e, "Observation", "o1"),
        );
        assert_eq!(before.1.len(), 3, "created, deleted, created again");
        e.flush_audit().unwrap();
    }
    // On the PostgreSQL run the source is the server's schema.
    let from = match common::test_store() {
        Some(base) => {
            let schema = std::fs::read_to_string(src.path().join("pg-schema")).unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-csearch_path%3D{schema}")
        }
        None => src.path().display().to_string(),
    };
    let copied = tempfile::tempdir().unwrap();
    let target = copied.path().join("store");
    let first = copy(&from, &target.display().to_string());
    assert!(first.contains("5 versions of 2 resources"), "{first}");
    // The copy is in the source's audit trail, naming the person whose record it copied.
    {
        let e = common::open_engine(src.path(), Default::default());
        let events = e
            .audit_search(&sys, Some("issho-copy"), Some("Patient/p1"), None, 10)
            .unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        let query = events[0]["entity"].to_string();
        assert!(query.contains("$copy"), "{query}");
    }
    // Through PostgreSQL and back, when there is one: the same checksum all the way.
    let back = copied.path().join("back");
    if let Some(pg) = pg_target() {
        let there = copy(&target.display().to_string(), &pg);
        let again = copy(&pg, &back.display().to_string());
        let sum = |s: &str| s.split("SHA-256 ").nth(1).unwrap()[..64].to_string();
        assert_eq!(sum(&first), sum(&there));
        assert_eq!(sum(&there), sum(&again));
    }
    // A second copy into a store that is no longer empty is refused.
    let out = Command::new(BIN)
        .args([
            "copy",
            "--from",
            &from,
            "--to",
            &target.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    // The copy answers like the source: the same versions and times, and searches find
    // what the index holds.
    for dir in [&target, &back] {
        if !dir.exists() {
            continue;
        }
        let e = issho::open_embedded(dir, Default::default()).unwrap();
        let after = (
            versions(&e, "Patient", "p1"),
            versions(&e, "Observation", "o1"),
        );
        assert_eq!(after, before, "{}", dir.display());
        let found = e
            .search(
                &sys,
                Some("Observation"),
                &[("code".into(), "http://loinc.org|4548-4".into())],
                true,
            )
            .unwrap();
        assert_eq!(found.matches.len(), 1);
        let o = e.read(&sys, "Observation", "o1").unwrap();
        assert!(String::from_utf8_lossy(o.body.as_deref().unwrap()).contains("\"value\":7.1"));
    }
}
