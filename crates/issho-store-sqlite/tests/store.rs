//! The embedded store's own guarantees: one process (store) per data directory, and the WAL
//! copied into the database file by the background checkpointer rather than by the writer.

use issho_store::{NoObserver, Store, write};
use issho_store_sqlite::SqliteStore;
use serde_json::json;
use std::sync::Arc;

/// What the engine gets from the gate before any store call (here for the system itself).
fn permit() -> issho_store::Permit {
    let ctx = issho_access::AccessContext::system("test");
    issho_access::Gate::new()
        .check(&ctx, issho_access::Action::Admin, None)
        .unwrap()
}

fn put(store: &SqliteStore, id: String) {
    write(store, &permit(), move |tx| {
        let mut body =
            json!({"resourceType": "Basic", "id": id, "code": {"text": "x".repeat(2000)}});
        tx.put("Basic", &id, &mut body, None, "PUT").map(|_| ())
    })
    .unwrap()
    .unwrap();
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(dir.path(), Arc::new(NoObserver)).unwrap();
    let err = SqliteStore::open(dir.path(), Arc::new(NoObserver))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("in use by another issho process"),
        "{err}"
    );
    drop(first);
    // Free again once the first is closed.
    SqliteStore::open(dir.path(), Arc::new(NoObserver)).unwrap();
}

#[test]
fn the_background_checkpointer_copies_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Arc::new(NoObserver)).unwrap();
    let db = dir.path().join("issho.db");
    let initial = std::fs::metadata(&db).unwrap().len();
    for i in 0..300 {
        put(&store, format!("b{i}"));
    }
    // The writer's own automatic checkpoint starts only at 65,536 WAL pages (256 MiB); these
    // writes are ~1.2 MiB, and until a checkpoint copies them they live in the WAL alone: the
    // database file grows only when the checkpointer has run.
    let before = initial;
    let mut copied = false;
    for _ in 0..50 {
        if std::fs::metadata(&db).unwrap().len() > before + 600_000 {
            copied = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        copied,
        "database file still {} bytes",
        std::fs::metadata(&db).unwrap().len()
    );
    let r = store.reader(&permit()).unwrap();
    assert_eq!(r.max_rid().unwrap(), 300);
}

/// A write job needs a permit that allows changing data: a read's permit opens snapshots only.
#[test]
fn a_write_needs_a_writing_permit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Arc::new(NoObserver)).unwrap();
    let ctx = issho_access::AccessContext::system("test");
    let read = issho_access::Gate::new()
        .check(&ctx, issho_access::Action::Read, Some("Patient"))
        .unwrap();
    assert!(store.reader(&read).is_ok());
    let refused = write(&store, &read, |tx| {
        let mut v = json!({"resourceType": "Patient"});
        tx.put("Patient", "p", &mut v, None, "PUT").map(|_| ())
    });
    assert!(refused.is_err());
    put(&store, "p".into());
    let r = store.reader(&read).unwrap();
    assert!(
        r.current("Patient", "p").unwrap().is_none(),
        "nothing written"
    );
    assert!(
        r.current("Basic", "p").unwrap().is_some(),
        "a writing permit writes"
    );
}
