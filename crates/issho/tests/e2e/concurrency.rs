//! Many clients at once (on each store of the run): conditional create stays unique, `If-Match`
//! loses no update, and versions are gap-free.

use crate::common::{self, Server, json};
use serde_json::json;

const CLIENTS: usize = 32;

#[test]
fn conditional_create_stays_unique_under_32_clients() {
    let s = Server::start();
    let body = json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345670", "value": "concurrent"}]});
    let crit = "identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|concurrent";
    common::conditional_create_race(&[&s.base], CLIENTS, crit, &body);
}

#[test]
fn if_match_loses_no_update_under_32_clients() {
    let s = Server::start();
    common::increment_counter_with_if_match(&[&s.base], CLIENTS, 5);
}

/// The embedded store has one process per data directory: a second one is refused with a
/// message, not left to race. On PostgreSQL a second process on the same database and schema
/// opens and serves beside the first (`several_processes.rs` runs two servers together).
#[test]
fn a_second_process_is_refused_on_the_embedded_store_and_joins_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let first = crate::common::open_engine(dir.path(), Default::default());
    let choice = crate::common::store_choice(dir.path());
    let other = tempfile::tempdir().unwrap();
    match choice {
        issho::StoreChoice::Embedded => {
            let err = issho::open(&choice, dir.path(), Default::default())
                .err()
                .expect("a second process is refused");
            let why = err.issues[0].diagnostics.clone();
            assert!(why.contains("another issho process"), "{why}");
            drop(first);
            // Once the first has stopped, the store opens again.
            issho::open(&choice, dir.path(), Default::default()).expect("reopens");
        }
        issho::StoreChoice::Postgres(_) => {
            let second = issho::open(&choice, other.path(), Default::default())
                .expect("a second process joins");
            drop((first, second));
        }
    }
}

/// PostgreSQL: when the server drops the store's connections (a restart, a failover), writes
/// and reads work again without restarting issho — the writers reconnect; a request caught in
/// the break is answered with an error, never a false success.
#[test]
fn the_postgresql_store_survives_dropped_connections() {
    let Some(base) = crate::common::test_store() else {
        return; // the embedded store has no connection to lose
    };
    let s = Server::start();
    assert_eq!(
        s.put(
            "Basic/b1",
            &json!({"resourceType": "Basic", "id": "b1",
        "code": {"text": "before"}})
        )
        .status(),
        201
    );
    let schema = std::fs::read_to_string(s.dir().join("pg-schema")).unwrap();
    let mut admin = issho_store_pg::connect(&base).unwrap();
    let killed = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid))::bigint FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND datname = current_database() \
             AND application_name = 'issho-writer ' || $1",
            &[&schema],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        killed,
        issho_store_pg::WRITERS as i64,
        "the writers' connections were found and dropped"
    );
    // The first writes may meet broken connections (an error each, nothing claimed: each
    // writer finds its own broken); then they work.
    let mut ok = false;
    for i in 0..issho_store_pg::WRITERS + 2 {
        let r = s.put(
            &format!("Basic/b{}", i + 2),
            &json!({"resourceType": "Basic",
            "id": format!("b{}", i + 2), "code": {"text": "after"}}),
        );
        match r.status().as_u16() {
            201 => {
                ok = true;
                break;
            }
            500 | 503 => continue,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok, "writes work again after the connection broke");
    assert_eq!(s.get("Basic/b1").status(), 200);
}

/// A string with U+0000 (valid JSON, a validation warning in FHIR) is stored and found on
/// both stores — PostgreSQL's text cannot hold it, so its index leaves it out alike when
/// writing and searching.
#[test]
fn a_nul_character_in_a_string_is_stored_and_searchable() {
    let s = Server::start();
    let p = json!({"resourceType": "Patient", "id": "nul", "name": [{"family": "Ya\u{0}mada"}]});
    let r = s.put("Patient/nul", &p);
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let back = json(s.get("Patient/nul"));
    assert_eq!(
        back["name"][0]["family"], "Ya\u{0}mada",
        "the body keeps it"
    );
    let found = json(s.get("Patient?family=Ya%00ma"));
    assert_eq!(found["total"], 1, "{found}");
    let found = json(s.get("Patient?_id=nul&family=zzz"));
    assert_eq!(found["total"], 0);
}
