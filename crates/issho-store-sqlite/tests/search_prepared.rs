//! Index rows extracted before the write transaction (`SqliteIndex::prepare`, off the writer
//! thread) are exactly the rows the writer would extract itself, once the store has set
//! `meta.versionId` and `meta.lastUpdated`.

use issho_store_sqlite::SqliteIndex;
use rusqlite::Connection;
use serde_json::{Value, json};

fn tables(c: &Connection) -> Vec<(String, Vec<String>)> {
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sp\\_%' ESCAPE '\\' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .filter(|n| !n.starts_with("sp_text_")) // FTS5 shadow tables: compared through sp_text
        .map(|n| {
            let mut st = c.prepare(&format!("SELECT * FROM \"{n}\"")).unwrap();
            let cols = st.column_count();
            let mut rows: Vec<String> = st
                .query_map([], |r| {
                    Ok((0..cols)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            rows.sort();
            (n, rows)
        })
        .collect()
}

fn with_meta(mut v: Value, version: u64) -> Value {
    let meta = v
        .as_object_mut()
        .unwrap()
        .entry("meta")
        .or_insert_with(|| json!({}));
    meta["versionId"] = json!(version.to_string());
    meta["lastUpdated"] = json!("2026-11-22T07:00:00.123456Z");
    v
}

#[test]
fn prepared_rows_equal_the_writers_own() {
    let resources = vec![
        json!({"resourceType": "Patient", "id": "p1",
            "meta": {"tag": [{"system": "http://t", "code": "vip"}], "lastUpdated": "2001-01-01T00:00:00Z"},
            "name": [{"family": "山田", "given": ["太郎"]}, {"family": "ﾔﾏﾀﾞ"}],
            "gender": "male", "birthDate": "1970-02-15",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">山田 太郎</div>"}}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2020-03-01T08:00:00Z",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}),
        json!({"resourceType": "Location", "id": "l1", "name": "病院",
            "position": {"latitude": 35.68, "longitude": 139.76}}),
    ];
    let a = Connection::open_in_memory().unwrap();
    let b = Connection::open_in_memory().unwrap();
    let c = Connection::open_in_memory().unwrap();
    let ia = SqliteIndex::open(&a).unwrap();
    let ib = SqliteIndex::open(&b).unwrap();
    let ic = SqliteIndex::open(&c).unwrap();
    let mut gathered = Vec::new();
    for (rid, r) in resources.into_iter().enumerate() {
        // Prepared before the store sets the meta it owns; inserted after.
        let p = ib.prepare(&r);
        let pc = ic.prepare(&r);
        let stored = with_meta(r, 1);
        ia.insert(&a, rid as i64 + 1, &stored).unwrap();
        ib.insert_prepared(&b, rid as i64 + 1, &stored, p).unwrap();
        // The writer's way: the rows of a job's new resources gathered, then written sorted.
        gathered.push((rid as i64 + 1, ic.rows_of(&stored, Some(pc))));
    }
    ic.insert_many(&c, &gathered).unwrap();
    let (ta, tb, tc) = (tables(&a), tables(&b), tables(&c));
    assert!(ta.iter().map(|(_, r)| r.len()).sum::<usize>() > 30);
    assert_eq!(ta, tb);
    assert_eq!(ta, tc);
}
