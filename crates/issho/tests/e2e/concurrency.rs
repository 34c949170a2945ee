//! Many clients at once (on each store of the run): conditional create stays unique, `If-Match`
//! loses no update, and versions are gap-free.

use crate::common::{Server, json};
use serde_json::json;

const CLIENTS: usize = 32;

#[test]
fn conditional_create_stays_unique_under_32_clients() {
    let s = Server::start();
    let crit = "identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|concurrent";
    let body = json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345670", "value": "concurrent"}]});
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                sc.spawn(|| {
                    s.req("POST", "Patient")
                        .header("content-type", "application/fhir+json")
                        .header("if-none-exist", crit)
                        .body(body.to_string())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&c| c == 201 || c == 200),
        "{statuses:?}"
    );
    let found = json(s.get(&format!("Patient?{crit}&_summary=count")));
    assert_eq!(found["total"], 1);
}

#[test]
fn if_match_loses_no_update_under_32_clients() {
    let s = Server::start();
    let counter = |n: i64| {
        json!({"resourceType": "Basic", "id": "counter",
        "code": {"text": "counter"}, "extension": [{"url": "urn:issho:test:n", "valueInteger": n}]})
    };
    assert_eq!(s.put("Basic/counter", &counter(0)).status(), 201);
    // Every client increments the counter 5 times: read, add one, write with If-Match; on 412
    // (someone else wrote first) read again.
    let rounds = 5;
    std::thread::scope(|sc| {
        for _ in 0..CLIENTS {
            sc.spawn(|| {
                let mut done = 0;
                while done < rounds {
                    let r = s.get("Basic/counter");
                    let etag = r.headers()["etag"].to_str().unwrap().to_string();
                    let n = json(r)["extension"][0]["valueInteger"].as_i64().unwrap();
                    let w = s
                        .req("PUT", "Basic/counter")
                        .header("content-type", "application/fhir+json")
                        .header("if-match", etag)
                        .body(counter(n + 1).to_string())
                        .send()
                        .unwrap();
                    match w.status().as_u16() {
                        200 => done += 1,
                        412 | 409 => {}
                        other => panic!("unexpected {other}: {}", w.text().unwrap()),
                    }
                }
            });
        }
    });
    let last = json(s.get("Basic/counter"));
    let total = (CLIENTS * rounds) as i64;
    assert_eq!(
        last["extension"][0]["valueInteger"], total,
        "no increment lost"
    );
    assert_eq!(
        last["meta"]["versionId"],
        (total + 1).to_string(),
        "one version per increment"
    );
    let history = json(s.get("Basic/counter/_history?_count=1000"));
    assert_eq!(history["total"], total + 1, "gap-free history");
}

/// One writing process per store: a second one on the same data directory (embedded) or the
/// same PostgreSQL database and schema is refused with a message, not left to race.
#[test]
fn a_second_process_on_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = crate::common::open_engine(dir.path(), Default::default());
    let choice = crate::common::store_choice(dir.path());
    let other = tempfile::tempdir().unwrap();
    let second_dir = match choice {
        issho::StoreChoice::Embedded => dir.path(),
        issho::StoreChoice::Postgres(_) => other.path(),
    };
    let err = issho::open(&choice, second_dir, Default::default())
        .err()
        .expect("a second process is refused");
    let why = err.issues[0].diagnostics.clone();
    assert!(why.contains("another issho process"), "{why}");
    drop(first);
    // Once the first has stopped, the store opens again.
    issho::open(&choice, second_dir, Default::default()).expect("reopens");
}

/// PostgreSQL: when the server drops the store's connections (a restart, a failover), writes
/// and reads work again without restarting issho — the writer reconnects and takes its lock
/// again; a request caught in the break is answered with an error, never a false success.
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
             WHERE pid <> pg_backend_pid() AND query NOT ILIKE '%pg_stat_activity%' \
             AND datname = current_database() AND application_name = '' \
             AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' \
                 AND objid = hashtext($1)::oid)",
            &[&schema],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert!(killed >= 1, "the writer's connection was found and dropped");
    // The first write may meet the broken connection (an error, nothing claimed); then it works.
    let mut ok = false;
    for i in 0..3 {
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
