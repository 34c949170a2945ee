//! SQLite on the program's global allocator (`use_global_allocator`), as the `issho` binary
//! runs it: installed before the first connection, and a store works on it. (Its own test
//! binary: SQLite takes the setting only before any connection of the process.)

use issho_store::{NoObserver, Store, write};
use issho_store_sqlite::{SqliteStore, use_global_allocator};
use serde_json::json;
use std::sync::Arc;

#[test]
fn the_store_runs_on_the_global_allocator() {
    assert!(use_global_allocator(), "installed before any connection");
    // Asking again changes nothing and still says so.
    assert!(use_global_allocator());
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Arc::new(NoObserver)).unwrap();
    let permit = issho_access::Gate::new()
        .check(
            &issho_access::AccessContext::system("test"),
            issho_access::Action::Admin,
            None,
        )
        .unwrap();
    // Large bodies and many rows: the page cache, statement journals of savepoints and
    // reallocations all go through the allocator.
    for i in 0..200 {
        write(&store, &permit, move |tx| {
            let id = format!("b{i}");
            let mut body = json!({"resourceType": "Basic", "id": id,
                "code": {"coding": [{"system": "http://x", "code": format!("c{i}")}], "text": "y".repeat(3000)}});
            tx.put("Basic", &id, &mut body, None, "PUT").map(|_| ())
        })
        .unwrap()
        .unwrap();
    }
    let r = store.reader(&permit).unwrap();
    let got = r.current("Basic", "b199").unwrap().unwrap();
    assert_eq!(got.version, 1);
    let q = issho_search::parse(
        Some("Basic"),
        &[("code".into(), "http://x|c150".into())],
        true,
    )
    .unwrap();
    assert_eq!(r.search(&q).unwrap().len(), 1);
}
