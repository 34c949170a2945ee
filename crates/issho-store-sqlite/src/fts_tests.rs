//! The FTS5 table with issho's tokens and queries: substrings of Japanese text are found, and
//! nothing of a searched value acts as FTS5 syntax.

use crate::index::FTS_DDL;
use issho_search::fulltext::{index_tokens, text_terms};
use issho_store_sql::fts5_query;
use rusqlite::Connection;

fn q(values: &[&str]) -> String {
    let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    fts5_query(&text_terms(&v).unwrap())
}

#[test]
fn queries() {
    assert_eq!(q(&["糖尿病"]), "\"糖尿 尿病\"");
    assert_eq!(q(&["糖"]), "\"糖\" *");
    assert_eq!(q(&["2型"]), "\"2 型\" *");
    assert_eq!(q(&["Diabetes  mellitus"]), "\"diabetes\" AND \"mellitus\"");
    assert_eq!(q(&["a b", "c"]), "(\"a\" AND \"b\") OR (\"c\")");
}

/// Nothing in a value reaches FTS5 as syntax.
#[test]
fn injection_is_text() {
    let one = |v: &str| q(&[v]);
    assert_eq!(one("foo\" OR \"bar"), "\"foo\" AND \"or\" AND \"bar\"");
    assert_eq!(one("NEAR(a b)"), "\"near a\" AND \"b\"");
    assert_eq!(one("-foo"), "\"foo\"");
    assert_eq!(one("content:foo"), "\"content foo\"");
    assert_eq!(one("foo*"), "\"foo\"");
    assert_eq!(
        one("a AND NOT b"),
        "\"a\" AND \"and\" AND \"not\" AND \"b\""
    );
    assert_eq!(one("{narrative}:x ^y"), "\"narrative x\" AND \"y\"");
    // And every such query runs, matching the words as words.
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(FTS_DDL).unwrap();
    c.execute(
        "INSERT INTO sp_text (rowid, narrative, content) VALUES (1, '', ?1)",
        [index_tokens("foo or bar near a b content foo and not")],
    )
    .unwrap();
    c.execute(
        "INSERT INTO sp_text (rowid, narrative, content) VALUES (2, '', ?1)",
        [index_tokens("foo bar")],
    )
    .unwrap();
    for (v, want) in [
        ("foo\" OR \"bar", vec![1]),
        ("NEAR(a b)", vec![1]),
        ("-foo", vec![1, 2]),
        ("foo*", vec![1, 2]),
        ("content:foo", vec![1]),
        ("a AND NOT b", vec![1]),
        ("foo) OR (bar", vec![1]),
        ("foo\"", vec![1, 2]),
        ("'; DROP TABLE sp_text; --", vec![]),
    ] {
        let fq = one(v);
        let mut st = c
            .prepare("SELECT rowid FROM sp_text WHERE content MATCH ?1 ORDER BY rowid")
            .unwrap();
        let got: Vec<i64> = st
            .query_map([&fq], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want, "{v} → {fq}");
    }
}

/// Substrings of Japanese text are found through the bigram phrases.
#[test]
fn japanese_search() {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(FTS_DDL).unwrap();
    let docs = [
        (1, "2型糖尿病"),
        (2, "本態性高血圧症"),
        (3, "糖尿"),
        (4, "病院 型"),
        (5, "ＨｂＡ１ｃ高値"),
    ];
    for (id, t) in docs {
        c.execute(
            "INSERT INTO sp_text (rowid, narrative, content) VALUES (?1, ?2, '')",
            rusqlite::params![id, index_tokens(t)],
        )
        .unwrap();
    }
    let find = |v: &str| -> Vec<i64> {
        let fq = q(&[v]);
        let mut st = c
            .prepare("SELECT rowid FROM sp_text WHERE narrative MATCH ?1 ORDER BY rowid")
            .unwrap();
        st.query_map([&fq], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(find("糖尿病"), vec![1]);
    assert_eq!(find("糖尿"), vec![1, 3]);
    assert_eq!(find("高血圧"), vec![2]);
    assert_eq!(find("圧症"), vec![2]);
    assert_eq!(find("病"), vec![1, 4]);
    assert_eq!(find("症"), vec![2]);
    assert_eq!(find("型"), vec![1, 4]);
    assert_eq!(find("2型"), vec![1]);
    assert_eq!(find("2型糖尿病"), vec![1]);
    assert_eq!(find("型糖尿"), vec![1]);
    assert_eq!(find("尿病 2"), vec![1]);
    assert_eq!(find("血糖"), Vec::<i64>::new());
    assert_eq!(find("hba1c"), vec![5]);
    assert_eq!(find("HbA1c　高値"), vec![5]);
    assert_eq!(find("ｈｂａ１ｃ高"), vec![5]);
    // Deletion by rowid (contentless_delete).
    c.execute("DELETE FROM sp_text WHERE rowid = 1", [])
        .unwrap();
    assert_eq!(find("糖尿"), vec![3]);
}
