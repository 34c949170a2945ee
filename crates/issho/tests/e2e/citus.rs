//! The PostgreSQL store on Citus (the suite's run with `ISSHO_TEST_CITUS`): the tables are
//! distributed by the person key and co-located, every row of a resource is on its person's
//! shard (also after re-keying), a search within one person's record is sent to one shard, and
//! searches between resources of different persons (chains, `_has`, includes) still answer.
//! Shared resources (Organization, Practitioner, …) are in reference tables on every node, so a
//! person's search that reaches them stays on the person's shard.
//! On a database without the `citus` extension (the other runs) there is nothing to check.

use crate::common::*;
use issho_search::{Filter, Test};
use issho_store::{NoObserver, Store};
use serde_json::{Value, json};
use std::sync::Arc;

/// The store of this run when it is a Citus database: (store, permit, SQL connection).
fn citus() -> Option<(
    Arc<dyn Store>,
    issho_store::Permit,
    issho_store_pg::Conn,
    tempfile::TempDir,
)> {
    let base = test_store()?;
    let mut c = issho_store_pg::connect(&base).ok()?;
    let has: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .ok()?
        .get(0);
    if !has {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let issho::StoreChoice::Postgres(url) = store_choice(dir.path()) else {
        return None;
    };
    let store: Arc<dyn Store> =
        Arc::new(issho_store_pg::PgStore::open(&url, Arc::new(NoObserver)).unwrap());
    let ctx = issho_access::AccessContext::system("test");
    let permit = issho_access::Gate::new()
        .check(&ctx, issho_access::Action::Admin, None)
        .unwrap();
    let conn = issho_store_pg::connect(&url).unwrap();
    Some((store, permit, conn, dir))
}

fn put(store: &dyn Store, permit: &issho_store::Permit, r: Value, person: Option<&str>) -> i64 {
    let person = person.map(str::to_string);
    let mut r = r;
    issho_store::write(store, permit, move |tx| {
        let t = r["resourceType"].as_str().unwrap().to_string();
        let id = r["id"].as_str().unwrap().to_string();
        tx.put(&t, &id, &mut r, person.as_deref(), "PUT")
            .map(|p| p.rid)
    })
    .unwrap()
    .unwrap()
}

fn obs(id: &str, patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "performer": [{"reference": "Organization/org1"}]})
}

/// The distinct keys of a resource's rows in each table that holds them.
fn keys_of(c: &mut issho_store_pg::Conn, rid: i64) -> Vec<(String, Vec<String>)> {
    ["resources", "history", "sp_token", "sp_ref", "sp_text"]
        .iter()
        .map(|t| {
            let keys = c
                .query(
                    &format!("SELECT DISTINCT pk FROM {t} WHERE rid = $1 ORDER BY pk"),
                    &[&rid],
                )
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            (t.to_string(), keys)
        })
        .collect()
}

#[test]
fn the_record_of_a_person_stays_on_one_shard() {
    let Some((store, permit, mut c, _dir)) = citus() else {
        return;
    };
    // Distributed by pk and co-located; identities by id; settings on every node.
    let rows = c
        .query(
            "SELECT logicalrelid::text, partmethod::text, \
             coalesce(column_to_column_name(logicalrelid, partkey), ''), colocationid \
             FROM pg_dist_partition WHERE logicalrelid::text LIKE current_schema() || '.%' \
             OR logicalrelid::regclass::text NOT LIKE '%.%'",
            &[],
        )
        .unwrap();
    let by_table: std::collections::HashMap<String, (String, String, i32)> = rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let short = name.rsplit('.').next().unwrap().to_string();
            (short, (r.get(1), r.get(2), r.get(3)))
        })
        .collect();
    let resources = by_table.get("resources").expect("resources is distributed");
    assert_eq!((resources.0.as_str(), resources.1.as_str()), ("h", "pk"));
    for t in [
        "history",
        "sp_token",
        "sp_string",
        "sp_ref",
        "sp_date",
        "sp_number",
        "sp_quantity",
        "sp_uri",
        "sp_geo",
        "sp_text",
    ] {
        let d = by_table
            .get(t)
            .unwrap_or_else(|| panic!("{t} is not distributed"));
        assert_eq!(d, resources, "{t}: distributed by pk with resources");
    }
    assert_eq!(by_table["resource_ids"].1, "id");
    for t in [
        "store_meta",
        "sp_meta",
        "sp_param",
        "schema_migrations",
        "shared_resources",
        "shared_sp_token",
        "shared_sp_string",
        "shared_sp_ref",
        "shared_sp_date",
        "shared_sp_number",
        "shared_sp_quantity",
        "shared_sp_uri",
        "shared_sp_geo",
        "shared_sp_text",
    ] {
        let d = by_table
            .get(t)
            .unwrap_or_else(|| panic!("{t} is not known to Citus"));
        assert_eq!(d.0, "n", "{t} is a reference table");
    }

    let s = &*store;
    put(
        s,
        &permit,
        json!({"resourceType": "Organization", "id": "org1", "name": "Kita Clinic"}),
        None,
    );
    put(
        s,
        &permit,
        json!({"resourceType": "Patient", "id": "pa", "name": [{"family": "Aoki"}]}),
        Some("pa"),
    );
    put(
        s,
        &permit,
        json!({"resourceType": "Patient", "id": "pb", "name": [{"family": "Baba"}]}),
        Some("pb"),
    );
    let o1 = put(s, &permit, obs("o1", "pa", "8867-4"), Some("pa"));
    put(s, &permit, obs("o2", "pb", "8867-4"), Some("pb"));
    for (t, keys) in keys_of(&mut c, o1) {
        assert_eq!(
            keys,
            ["pa"],
            "{t}: every row of a person's resource has the person's key"
        );
    }
    let org: String = c
        .query_one(
            "SELECT pk FROM shared_resources WHERE type = 'Organization' AND id = 'org1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        org, "Organization/org1",
        "a shared resource is in the shared tables, keyed by itself"
    );
    let elsewhere: i64 = c
        .query_one(
            "SELECT count(*) FROM resources WHERE type = 'Organization'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(elsewhere, 0, "no shared resource in the distributed tables");

    // One person's search goes to one shard; a population search to all of them.
    let reader = store.reader(&permit).unwrap();
    let mut q = issho_search::parse(
        Some("Observation"),
        &pairs("code=http://loinc.org|8867-4"),
        true,
    )
    .unwrap();
    let all = reader.explain(&q).unwrap().join("\n");
    assert!(!all.contains("Task Count: 1\n"), "{all}");
    q.filters.push(Filter {
        name: "person".into(),
        test: Test::PersonIn(vec!["pa".into()]),
    });
    let one = reader.explain(&q).unwrap().join("\n");
    assert!(one.contains("Task Count: 1\n"), "{one}");
    assert_eq!(
        c_names(&*reader, reader.search(&q).unwrap()),
        ["Observation/o1"]
    );
    // A person's search through a chain to a shared resource joins the copy on the person's
    // shard: one task, no step of its own for the chain.
    let mut q = issho_search::parse(
        Some("Observation"),
        &pairs("performer:Organization.name=Kita"),
        true,
    )
    .unwrap();
    q.filters.push(Filter {
        name: "person".into(),
        test: Test::PersonIn(vec!["pa".into()]),
    });
    let plan = reader.explain(&q).unwrap().join("\n");
    assert!(
        plan.contains("Task Count: 1\n") && !plan.contains("Subplan"),
        "{plan}"
    );
    assert_eq!(
        c_names(&*reader, reader.search(&q).unwrap()),
        ["Observation/o1"]
    );
    // Shared resources alone: one node reads its copy.
    let q = issho_search::parse(Some("Organization"), &pairs("name=Kita"), true).unwrap();
    let plan = reader.explain(&q).unwrap().join("\n");
    assert!(plan.contains("Task Count: 1\n"), "{plan}");
    assert_eq!(
        c_names(&*reader, reader.search(&q).unwrap()),
        ["Organization/org1"]
    );
    drop(reader);

    // Across persons and shards: chain, _has, _include, _revinclude.
    let db = (s, &permit);
    assert_eq!(
        find(db, "Observation", "subject:Patient.name=Baba"),
        ["Observation/o2"]
    );
    assert_eq!(
        find(db, "Patient", "_has:Observation:subject:code=8867-4"),
        ["Patient/pa", "Patient/pb"]
    );
    assert_eq!(
        find(db, "Observation", "performer:Organization.name=Kita"),
        ["Observation/o1", "Observation/o2"]
    );
    let reader = store.reader(&permit).unwrap();
    let q = issho_search::parse(
        Some("Observation"),
        &pairs("_include=Observation:subject&_id=o1,o2"),
        true,
    )
    .unwrap();
    let page = reader.search(&q).unwrap();
    let mut inc = c_names(&*reader, reader.includes(&q, &page, false).unwrap());
    inc.sort();
    assert_eq!(inc, ["Patient/pa", "Patient/pb"]);
    let q = issho_search::parse(
        Some("Patient"),
        &pairs("_revinclude=Observation:subject&_id=pb"),
        true,
    )
    .unwrap();
    let page = reader.search(&q).unwrap();
    assert_eq!(
        c_names(&*reader, reader.includes(&q, &page, false).unwrap()),
        ["Observation/o2"]
    );
    // Between the two kinds of tables: a person's resource including a shared one, a shared
    // one's references from persons' resources, `_has` from them, and a search across types.
    let q = issho_search::parse(
        Some("Observation"),
        &pairs("_include=Observation:performer&_id=o1"),
        true,
    )
    .unwrap();
    let page = reader.search(&q).unwrap();
    assert_eq!(
        c_names(&*reader, reader.includes(&q, &page, false).unwrap()),
        ["Organization/org1"]
    );
    let q = issho_search::parse(
        Some("Organization"),
        &pairs("_revinclude=Observation:performer&_id=org1"),
        true,
    )
    .unwrap();
    let page = reader.search(&q).unwrap();
    let mut inc = c_names(&*reader, reader.includes(&q, &page, false).unwrap());
    inc.sort();
    assert_eq!(inc, ["Observation/o1", "Observation/o2"]);
    drop(reader);
    assert_eq!(
        find(
            db,
            "Organization",
            "_has:Observation:performer:subject=Patient/pb"
        ),
        ["Organization/org1"]
    );
    let reader = store.reader(&permit).unwrap();
    let q = issho_search::parse(None, &pairs("_id=org1,o2,pa&_sort=-_id"), true).unwrap();
    assert_eq!(
        c_names(&*reader, reader.search(&q).unwrap()),
        ["Patient/pa", "Organization/org1", "Observation/o2"]
    );
    assert_eq!(reader.count(&q).unwrap(), 3);
    drop(reader);

    // Re-keying (the person of a resource changes) moves every row to the new person's shard.
    issho_store::write(s, &permit, move |tx| tx.set_person(o1, Some("pb")))
        .unwrap()
        .unwrap();
    for (t, keys) in keys_of(&mut c, o1) {
        assert_eq!(keys, ["pb"], "{t}: moved with its person");
    }
    let mut moved = obs("o1", "pb", "8867-4");
    moved["status"] = json!("amended");
    put(s, &permit, moved, Some("pb"));
    for (t, keys) in keys_of(&mut c, o1) {
        assert_eq!(keys, ["pb"], "{t}: a new version stays with its person");
    }
    assert_eq!(
        find(
            db,
            "Observation",
            "subject:Patient.name=Baba&status=amended"
        ),
        ["Observation/o1"]
    );
    let reader = store.reader(&permit).unwrap();
    let v1 = reader
        .version("Observation", "o1", 1)
        .unwrap()
        .expect("version 1 kept");
    assert_eq!(v1.json().unwrap()["status"], "final");
    let (versions, total) = reader
        .history(&issho_store::HistoryQuery {
            scope: issho_store::HistoryScope::Instance("Observation".into(), "o1".into()),
            since: None,
            at: None,
            max_seq: None,
            count: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!((versions.len(), total), (2, 2));
}

fn find(db: (&dyn Store, &issho_store::Permit), t: &str, query: &str) -> Vec<String> {
    let reader = db.0.reader(db.1).unwrap();
    let q = issho_search::parse(Some(t), &pairs(query), true)
        .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    let mut names = c_names(&*reader, reader.search(&q).unwrap());
    names.sort();
    names
}

fn c_names(reader: &dyn issho_store::StoreRead, rids: Vec<i64>) -> Vec<String> {
    reader
        .current_by_rids(&rids)
        .unwrap()
        .iter()
        .map(|s| format!("{}/{}", s.resource_type, s.id))
        .collect()
}
