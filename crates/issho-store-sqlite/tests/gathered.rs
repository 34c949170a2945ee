//! The writer gathers the index rows of a job's new resources and writes them together at the
//! job's end: what the job itself reads, updates or deletes in between, and what a failed job
//! leaves, must be exactly as if every row had been written at once. The persons the writer
//! remembers during a job follow the job's own writes.

use issho_store::{NoObserver, Permit, Store, StoreRead, StoreTx, write};
use issho_store_sqlite::SqliteStore;
use serde_json::json;
use std::sync::Arc;

fn permit() -> Permit {
    issho_access::Gate::new()
        .check(
            &issho_access::AccessContext::system("test"),
            issho_access::Action::Admin,
            None,
        )
        .unwrap()
}

fn code_query(code: &str) -> issho_search::SearchQuery {
    issho_search::parse(
        Some("Basic"),
        &[("code".into(), format!("http://x|{code}"))],
        true,
    )
    .unwrap()
}

fn basic(id: &str, code: &str) -> serde_json::Value {
    json!({"resourceType": "Basic", "id": id, "code": {"coding": [{"system": "http://x", "code": code}]}})
}

fn found(r: &dyn StoreRead, code: &str) -> usize {
    r.search(&code_query(code)).unwrap().len()
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Arc::new(NoObserver)).unwrap();
    (dir, store)
}

#[test]
fn a_job_finds_what_it_created_and_updates_and_deletes_it_exactly() {
    let (_dir, store) = open();
    let seen = write(&store, &permit(), |tx: &mut dyn StoreTx| {
        tx.put("Basic", "a", &mut basic("a", "one"), None, "PUT")?;
        tx.put("Basic", "b", &mut basic("b", "two"), None, "PUT")?;
        // Searching inside the job sees its own new resources.
        let first = (found(tx, "one"), found(tx, "two"));
        // Created and updated in the same job (after a search, and without one between).
        tx.put("Basic", "a", &mut basic("a", "three"), None, "PUT")?;
        tx.put("Basic", "c", &mut basic("c", "four"), None, "PUT")?;
        tx.put("Basic", "c", &mut basic("c", "five"), None, "PUT")?;
        // Created and deleted in the same job.
        tx.put("Basic", "d", &mut basic("d", "six"), None, "PUT")?;
        tx.delete("Basic", "d")?;
        Ok::<_, issho_store::StoreError>(first)
    })
    .unwrap()
    .unwrap();
    assert_eq!(seen, (1, 1));
    let r = store.reader(&permit()).unwrap();
    for (code, n) in [
        ("one", 0),
        ("two", 1),
        ("three", 1),
        ("four", 0),
        ("five", 1),
        ("six", 0),
    ] {
        assert_eq!(found(&*r, code), n, "{code}");
    }
}

#[test]
fn a_failed_job_leaves_no_rows_and_its_neighbours_keep_theirs() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    // Jobs from several threads share commits when they queue up; every third one fails after
    // writing. Whether or not they were grouped, only the kept jobs' rows may be found.
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..30 {
                    let id = format!("t{t}-{i}");
                    let fail = i % 3 == 0;
                    let out = write(&*store, &permit(), move |tx: &mut dyn StoreTx| {
                        tx.put("Basic", &id, &mut basic(&id, &id), None, "PUT")?;
                        if fail {
                            return Err(issho_store::StoreError::Db("refused".into()));
                        }
                        Ok(())
                    })
                    .unwrap();
                    assert_eq!(out.is_err(), fail);
                }
            });
        }
    });
    let r = store.reader(&permit()).unwrap();
    for t in 0..4 {
        for i in 0..30 {
            let id = format!("t{t}-{i}");
            let expected = usize::from(i % 3 != 0);
            assert_eq!(found(&*r, &id), expected, "{id}");
            assert_eq!(r.current("Basic", &id).unwrap().is_some(), i % 3 != 0);
        }
    }
}

#[test]
fn persons_remembered_in_a_job_follow_its_writes() {
    let (_dir, store) = open();
    let got = write(&store, &permit(), |tx: &mut dyn StoreTx| {
        let mut seen = vec![tx.person("Basic", "p")?];
        let put = tx.put("Basic", "p", &mut basic("p", "x"), Some("alice"), "PUT")?;
        seen.push(tx.person("Basic", "p")?);
        // Written again under another person.
        tx.put("Basic", "p", &mut basic("p", "x"), Some("bob"), "PUT")?;
        seen.push(tx.person("Basic", "p")?);
        // Re-keyed by row.
        tx.set_person(put.rid, Some("carol"))?;
        seen.push(tx.person("Basic", "p")?);
        tx.delete("Basic", "p")?;
        seen.push(tx.person("Basic", "p")?);
        Ok::<_, issho_store::StoreError>(seen)
    })
    .unwrap()
    .unwrap();
    let s = |p: &str| Some(Some(p.to_string()));
    assert_eq!(got, vec![None, s("alice"), s("bob"), s("carol"), None]);
}
