//! A Parquet file issho writes, read by another implementation (Apache Arrow's, through
//! Python's `pyarrow`): the columns, their types and every value, nulls included. Skips when
//! `python3` with `pyarrow` is not installed (`pip install pyarrow`).

use issho_views::{Column, Format, Writer};
use serde_json::{Value, json};
use std::process::Command;

#[test]
fn pyarrow_reads_what_issho_writes() {
    let has = Command::new("python3")
        .args(["-c", "import pyarrow.parquet"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        println!("Parquet read by pyarrow: SKIPPED (python3 with pyarrow not installed)");
        return;
    }
    let col = |name: &str, ty: &str, collection: bool| Column {
        name: name.into(),
        ty: Some(ty.into()),
        collection,
    };
    let cols = vec![
        col("id", "id", false),
        col("n", "integer", false),
        col("x", "decimal", false),
        col("ok", "boolean", false),
        col("given", "string", true),
    ];
    let dir = tempfile_dir();
    let path = dir.join("t.parquet");
    let mut w = Writer::new(
        Format::Parquet,
        &cols,
        std::fs::File::create(&path).unwrap(),
    )
    .unwrap();
    let mut want = Vec::new();
    // More than one row group.
    let rows = issho_views_rows();
    for i in 0..rows {
        let row = vec![
            json!(format!("Patient/p{i}")),
            if i % 7 == 0 { Value::Null } else { json!(i) },
            if i % 5 == 0 {
                Value::Null
            } else {
                json!(i as f64 / 4.0)
            },
            if i % 3 == 0 {
                Value::Null
            } else {
                json!(i % 2 == 0)
            },
            json!(["山田", format!("g{i}")]),
        ];
        w.row(&row).unwrap();
        want.push(row);
    }
    w.finish().unwrap();
    let script = r#"
import json, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({"schema": [[f.name, str(f.type)] for f in t.schema], "rows": t.to_pylist(), "groups": pq.ParquetFile(sys.argv[1]).num_row_groups}, ensure_ascii=False))
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        got["schema"],
        json!([
            ["id", "string"],
            ["n", "int64"],
            ["x", "double"],
            ["ok", "bool"],
            ["given", "string"]
        ])
    );
    assert!(got["groups"].as_u64().unwrap() >= 2);
    let rows_got = got["rows"].as_array().unwrap();
    assert_eq!(rows_got.len(), want.len());
    for (g, w) in rows_got.iter().zip(&want) {
        assert_eq!(g["id"], w[0]);
        assert_eq!(g["n"], w[1]);
        assert_eq!(g["x"].as_f64(), w[2].as_f64());
        assert_eq!(g["ok"], w[3]);
        assert_eq!(g["given"], json!(w[4].to_string()));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn issho_views_rows() -> usize {
    70_000
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("issho-parquet-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
