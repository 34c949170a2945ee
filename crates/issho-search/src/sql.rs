//! SQL for SQLite from a [`SearchQuery`]. Every value is a bound parameter; only fixed
//! fragments, table and column names and generated aliases are written into the text.

use crate::extract::{IDENTIFIER_SUFFIX, OF_TYPE_SEP, OF_TYPE_SUFFIX, TEXT_SUFFIX};
use crate::geo;
use crate::query::{Include, Match, Prefix, SearchQuery, SortBy, StringMode, Test, UriMode};
use crate::registry::ParamKind;
use crate::values::{normalize, prefix_upper_bound, system_id};
use rusqlite::types::Value;
use std::time::{SystemTime, UNIX_EPOCH};

struct Sql {
    text: String,
    args: Vec<Value>,
    next_alias: usize,
}

impl Sql {
    fn new() -> Sql {
        Sql {
            text: String::new(),
            args: Vec::new(),
            next_alias: 0,
        }
    }
    fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }
    fn bind(&mut self, v: impl Into<Value>) -> &mut Sql {
        self.text.push('?');
        self.args.push(v.into());
        self
    }
    fn bind_list(&mut self, items: &[String]) -> &mut Sql {
        self.push("(");
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(it.clone());
        }
        self.push(")")
    }
    /// `col` is the id of one of the parameter `keys` (ids are looked up in `sp_param`).
    fn param_in(&mut self, col: &str, keys: &[String]) -> &mut Sql {
        if let [k] = keys {
            self.push(&format!("{col} = (SELECT id FROM sp_param WHERE key = "));
            self.bind(k.clone());
            self.push(")")
        } else {
            self.push(&format!("{col} IN (SELECT id FROM sp_param WHERE key IN "));
            self.bind_list(keys);
            self.push(")")
        }
    }
    fn alias(&mut self, prefix: &str) -> String {
        self.next_alias += 1;
        format!("{prefix}{}", self.next_alias)
    }
}

/// SQL selecting the `rid`s of the current, non-deleted resources matching `q`, in the
/// requested order (then by `rid`), with `_count` and `_offset` applied.
pub fn sqlite_select(q: &SearchQuery) -> (String, Vec<Value>) {
    let mut s = Sql::new();
    let streamed = if q.sort.is_empty() {
        driver_of(q).filter(|&i| streamable(&q.filters[i].test).is_some())
    } else {
        None
    };
    if let Some(i) = streamed {
        let (key, sys, code) = streamable(&q.filters[i].test).expect("streamable");
        s.push("SELECT r.rid FROM sp_token d CROSS JOIN resources r ON r.rid = d.rid WHERE ");
        s.param_in("d.param", &[key.to_string()]);
        s.push(" AND d.code = ").bind(code.to_string());
        s.push(" AND d.system = ").bind(system_id(sys));
        s.push(" AND ");
        where_clause_streamed(&mut s, q, "r", Some(i));
        s.push(" ORDER BY d.rid LIMIT ");
        s.bind(q.count.map(|c| c as i64).unwrap_or(-1));
        s.push(" OFFSET ");
        s.bind(q.offset as i64);
        return (s.text, s.args);
    }
    s.push("SELECT r.rid FROM resources r");
    // Sort values from tables without a `rid` index: each parameter's rows are aggregated per
    // rid once and joined (one pass over the parameter's key range).
    let mut joined: Vec<Option<String>> = Vec::new();
    for k in &q.sort {
        let mut alias = None;
        if let SortBy::Index { kind, keys } = &k.by {
            let (table, col_asc, col_desc, extra) = sort_column(*kind);
            if !has_rid_index(table) {
                let (agg, col) = if k.descending {
                    ("max", col_desc)
                } else {
                    ("min", col_asc)
                };
                let a = s.alias("s");
                s.push(&format!(
                    " LEFT JOIN (SELECT x.rid AS rid, {agg}({col}) AS v FROM {table} x WHERE "
                ));
                s.param_in("x.param", keys);
                s.push(&format!("{extra} GROUP BY x.rid) {a} ON {a}.rid = r.rid"));
                alias = Some(a);
            }
        }
        joined.push(alias);
    }
    s.push(" WHERE ");
    where_clause(&mut s, q, "r");
    s.push(" ORDER BY ");
    for (k, alias) in q.sort.iter().zip(&joined) {
        let dir = if k.descending { "DESC" } else { "ASC" };
        match (&k.by, alias) {
            (SortBy::Id, _) => {
                s.push(&format!("r.id {dir}, "));
            }
            (SortBy::LastUpdated, _) => {
                s.push(&format!("r.last_updated {dir}, "));
            }
            (SortBy::Index { .. }, Some(a)) => {
                s.push(&format!("{a}.v {dir} NULLS LAST, "));
            }
            (SortBy::Index { kind, keys }, None) => {
                let (table, col_asc, col_desc, extra) = sort_column(*kind);
                let (agg, col) = if k.descending {
                    ("max", col_desc)
                } else {
                    ("min", col_asc)
                };
                // `+x.param`: look the rows up by (rid, param), not by scanning the param.
                s.push(&format!(
                    "(SELECT {agg}({col}) FROM {table} x WHERE x.rid = r.rid{extra} AND "
                ));
                s.param_in("+x.param", keys);
                s.push(&format!(") {dir} NULLS LAST, "));
            }
        }
    }
    s.push("r.rid LIMIT ");
    s.bind(q.count.map(|c| c as i64).unwrap_or(-1));
    s.push(" OFFSET ");
    s.bind(q.offset as i64);
    (s.text, s.args)
}

/// True for the tables with a `(rid, param)` index (see the DDL).
fn has_rid_index(table: &str) -> bool {
    matches!(table, "sp_date" | "sp_ref")
}

/// SQL counting the resources matching `q` (ignores sort and paging).
pub fn sqlite_count(q: &SearchQuery) -> (String, Vec<Value>) {
    let mut s = Sql::new();
    // One condition on parameters of this type alone: the index holds rows of current,
    // non-deleted resources only, and the keys name the type, so the index range itself is
    // the answer (no visit of `resources` per match).
    if let (Some(rt), [f]) = (&q.resource_type, q.filters.as_slice())
        && let Test::Values {
            keys,
            kind,
            matches,
            negate: false,
            ..
        } = &f.test
        && let [m] = matches.as_slice()
        && !matches!(m, Match::Composite(_))
        && keys.iter().all(|k| k.starts_with(&format!("{rt}.")))
    {
        s.push("SELECT count(DISTINCT rid) FROM (");
        value_select(&mut s, keys, *kind, m);
        s.push(")");
        return (s.text, s.args);
    }
    s.push("SELECT count(*) FROM resources r WHERE ");
    where_clause(&mut s, q, "r");
    (s.text, s.args)
}

/// SQL yielding the `rid`s to add for `_include` / `_revinclude` (every rule), given the
/// `rid`s of the resources in the page. The result may contain rids already in `rids`. When the
/// query has no include rule the SQL yields nothing.
pub fn sqlite_includes(q: &SearchQuery, rids: &[i64]) -> (String, Vec<Value>) {
    includes(q, rids, false)
        .unwrap_or_else(|| ("SELECT rid FROM resources WHERE 0".to_string(), Vec::new()))
}

/// Like [`sqlite_includes`] but with only the `:iterate` rules, for the following rounds:
/// call with the rids the previous round added, until it adds nothing new. `None` when the
/// query has no `:iterate` rule.
pub fn sqlite_includes_iterate(q: &SearchQuery, rids: &[i64]) -> Option<(String, Vec<Value>)> {
    includes(q, rids, true)
}

fn includes(q: &SearchQuery, rids: &[i64], iterate_only: bool) -> Option<(String, Vec<Value>)> {
    let list = format!(
        "[{}]",
        rids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let rules = |v: &'_ [Include]| -> Vec<Include> {
        v.iter()
            .filter(|i| !iterate_only || i.iterate)
            .filter(|i| !i.keys.is_empty())
            .cloned()
            .collect()
    };
    let (inc, rev) = (rules(&q.include), rules(&q.revinclude));
    if inc.is_empty() && rev.is_empty() {
        return None;
    }
    let mut s = Sql::new();
    s.push("SELECT DISTINCT rid FROM (");
    let mut first = true;
    for i in &inc {
        if !first {
            s.push(" UNION ALL ");
        }
        first = false;
        s.push(
            "SELECT t.rid AS rid FROM sp_ref x JOIN resources t ON t.type = x.ref_type AND t.id = x.ref_id \
             JOIN resources src ON src.rid = x.rid \
             WHERE x.rid IN (SELECT value FROM json_each(",
        );
        s.bind(list.clone());
        s.push(")) AND src.type = ");
        s.bind(i.source_type.clone());
        s.push(" AND ");
        s.param_in("x.param", &i.keys);
        s.push(" AND t.deleted = 0");
        if let Some(t) = &i.target_type {
            s.push(" AND t.type = ");
            s.bind(t.clone());
        }
    }
    for i in &rev {
        if !first {
            s.push(" UNION ALL ");
        }
        first = false;
        s.push(
            "SELECT x.rid AS rid FROM resources t JOIN sp_ref x ON x.ref_type = t.type AND x.ref_id = t.id \
             JOIN resources o ON o.rid = x.rid \
             WHERE t.rid IN (SELECT value FROM json_each(",
        );
        s.bind(list.clone());
        s.push(")) AND ");
        s.param_in("x.param", &i.keys);
        s.push(" AND o.deleted = 0 AND o.type = ");
        s.bind(i.source_type.clone());
        if let Some(t) = &i.target_type {
            s.push(" AND t.type = ");
            s.bind(t.clone());
        }
    }
    s.push(")");
    Some((s.text, s.args))
}

/// True when `test` yields a (small) set of rids SQLite can start from (`rid IN (...)`).
fn can_drive(test: &Test) -> bool {
    match test {
        Test::Values { negate, .. } => !negate,
        Test::Missing { missing, .. } => !missing,
        Test::Chain { .. } | Test::Has { .. } | Test::FullText { .. } => true,
        Test::Rids(_) => true,
        Test::NotAll(_) | Test::PersonIn(_) | Test::PersonOrShared(_) => false,
        Test::All(_) | Test::Any(_) | Test::Type(_) => false,
        Test::Id { .. } | Test::LastUpdated(_) => false,
    }
}

/// `+col` keeps SQLite from using an index on `col` (a unary plus is not a column reference
/// for the planner): used on `type` when a filter's rid set should drive the query instead of
/// a scan of every resource of the type.
fn type_col(r: &str, tests: &[&Test]) -> String {
    let by_id = tests
        .iter()
        .any(|t| matches!(t, Test::Id { negate: false, .. }));
    if !by_id && tests.iter().any(|t| can_drive(t)) {
        format!("+{r}.type")
    } else {
        format!("{r}.type")
    }
}

/// The filter that drives the query (the most selective one that can), if any.
fn driver_of(q: &SearchQuery) -> Option<usize> {
    q.filters
        .iter()
        .enumerate()
        .filter(|(i, f)| can_drive(&f.test) && !q.probe.contains(i))
        .min_by_key(|(_, f)| selectivity_rank(&f.test))
        .map(|(i, _)| i)
}

/// A driver that is one contiguous range of one index table, ordered by `rid` (one token
/// `system|code` of one key): the query can read it straight from the index instead of
/// materialising the set of its rids first, so a first page costs only its window.
fn streamable(t: &Test) -> Option<(&str, &str, &str)> {
    match t {
        Test::Values {
            keys,
            kind: ParamKind::Token,
            matches,
            negate: false,
            ..
        } => match (keys.as_slice(), matches.as_slice()) {
            (
                [k],
                [
                    Match::Token {
                        system: Some(sys),
                        code: Some(code),
                    },
                ],
            ) => Some((k.as_str(), sys.as_str(), code.as_str())),
            _ => None,
        },
        _ => None,
    }
}

fn where_clause(s: &mut Sql, q: &SearchQuery, r: &str) {
    where_clause_streamed(s, q, r, None)
}

/// `streamed`: the driver already read in the FROM clause (skipped here).
fn where_clause_streamed(s: &mut Sql, q: &SearchQuery, r: &str, streamed: Option<usize>) {
    s.push(&format!("{r}.deleted = 0"));
    if let Some(a) = q.rid_after {
        s.push(&format!(" AND {r}.rid > ")).bind(a);
    }
    if let Some(u) = q.rid_upto {
        s.push(&format!(" AND {r}.rid <= ")).bind(u);
    }
    let tests: Vec<&Test> = q.filters.iter().map(|f| &f.test).collect();
    let driver = driver_of(q);
    // Without a driving condition the type's index (in rid order) drives.
    let col = if driver.is_some() {
        type_col(r, &tests)
    } else {
        format!("{r}.type")
    };
    if let Some(t) = &q.resource_type {
        s.push(&format!(" AND {col} = "));
        s.bind(t.clone());
    } else if !q.types.is_empty() {
        s.push(&format!(" AND {col} IN "));
        s.bind_list(&q.types);
    }
    // Planner: the most selective condition drives the query as a set of rids (`rid IN`);
    // the others are checked per candidate with a primary-key or (rid, param) probe
    // (`EXISTS`), so that a broad condition (a common code, a date range, a category) is
    // never materialised as a set of every matching row.
    for (i, t) in tests.iter().enumerate() {
        if Some(i) == streamed {
            continue;
        }
        s.push(" AND ");
        if Some(i) != driver && driver.is_some() && probe_ok(t) {
            exists_values(s, t, r);
        } else if q.probe.contains(&i) && q.resource_type.is_some() {
            exists_link(s, t, r);
        } else {
            test_sql(s, t, r);
        }
    }
}

/// A chain or `_has` checked for one candidate (instead of materialising every resource it
/// matches): used for broad ones (see [`SearchQuery::probe`]) when another condition drives.
fn exists_link(s: &mut Sql, t: &Test, r: &str) {
    match t {
        Test::Chain {
            keys,
            target_types,
            inner,
        } => {
            let x = s.alias("c");
            let tt = s.alias("t");
            s.push(&format!(
                "EXISTS (SELECT 1 FROM sp_ref {x} INDEXED BY sp_ref_rid CROSS JOIN resources {tt} \
                 ON {tt}.type = {x}.ref_type AND {tt}.id = {x}.ref_id WHERE {x}.rid = {r}.rid AND "
            ));
            s.param_in(&format!("{x}.param"), keys);
            s.push(&format!(" AND {tt}.deleted = 0 AND {tt}.type IN "));
            s.bind_list(target_types);
            s.push(" AND ");
            if probe_ok(inner) {
                exists_values(s, inner, &tt);
            } else {
                test_sql(s, inner, &tt);
            }
            s.push(")");
        }
        Test::Has { keys, inner, .. } => {
            // The references to this resource, each checked as the referring resource (index
            // rows exist only for current resources, and the keys name the source type).
            let h = s.alias("h");
            s.push(&format!("EXISTS (SELECT 1 FROM sp_ref {h} "));
            // Conditions on the referring resource's own row (type, person, id) need it.
            let src = if uses_row(inner) {
                let o = s.alias("o");
                s.push(&format!(
                    "CROSS JOIN resources {o} ON {o}.rid = {h}.rid AND {o}.deleted = 0 "
                ));
                o
            } else {
                h.clone()
            };
            s.push("WHERE ");
            s.param_in(&format!("{h}.param"), keys);
            s.push(&format!(
                " AND {h}.ref_id = {r}.id AND {h}.ref_type = {r}.type AND "
            ));
            if probe_ok(inner) {
                exists_values(s, inner, &h);
            } else {
                test_sql(s, inner, &src);
            }
            s.push(")");
        }
        other => test_sql(s, other, r),
    }
}

/// SQL counting, up to `limit`, the resources a chain's or `_has`'s inner condition matches
/// (the targets of a chain, the referring resources of a `_has`): how broad it is, for the
/// planner ([`SearchQuery::probe`]). `None` for other tests.
pub fn sqlite_link_breadth(t: &Test, limit: usize) -> Option<(String, Vec<Value>)> {
    let mut s = Sql::new();
    match t {
        Test::Chain {
            target_types,
            inner,
            ..
        } => {
            s.push("SELECT count(*) FROM (SELECT 1 FROM resources t WHERE t.deleted = 0 AND t.type IN ");
            s.bind_list(target_types);
            s.push(" AND ");
            test_sql(&mut s, inner, "t");
        }
        Test::Has {
            source_type, inner, ..
        } => {
            s.push(
                "SELECT count(*) FROM (SELECT 1 FROM resources t WHERE t.deleted = 0 AND t.type = ",
            );
            s.bind(source_type.clone());
            s.push(" AND ");
            test_sql(&mut s, inner, "t");
        }
        _ => return None,
    }
    s.push(" LIMIT ").bind(limit as i64).push(")");
    Some((s.text, s.args))
}

/// Lower is more selective: a reference to one resource, then a code in a system, …
fn selectivity_rank(t: &Test) -> u8 {
    match t {
        Test::Values {
            kind: ParamKind::Reference,
            matches,
            ..
        } if matches.iter().all(|m| {
            matches!(
                m,
                Match::Reference {
                    ref_type: Some(_),
                    ..
                }
            )
        }) =>
        {
            0
        }
        Test::Values {
            kind: ParamKind::Token,
            matches,
            ..
        } if matches.iter().all(|m| {
            matches!(
                m,
                Match::Token {
                    system: Some(_),
                    code: Some(_)
                }
            )
        }) =>
        {
            1
        }
        Test::Values {
            kind: ParamKind::Token,
            matches,
            ..
        } if matches
            .iter()
            .all(|m| matches!(m, Match::Token { code: Some(_), .. })) =>
        {
            2
        }
        Test::Values {
            kind: ParamKind::Reference,
            ..
        } => 2,
        Test::Rids(_) => 0,
        Test::Chain { .. } | Test::Has { .. } | Test::FullText { .. } => 3,
        Test::Values {
            kind: ParamKind::String,
            ..
        } => 4,
        Test::Missing { .. } => 6,
        _ => 5,
    }
}

/// True when `t` reads columns of the resource's own row (not only its `rid`).
fn uses_row(t: &Test) -> bool {
    match t {
        Test::Id { .. }
        | Test::LastUpdated(_)
        | Test::PersonIn(_)
        | Test::PersonOrShared(_)
        | Test::Type(_) => true,
        Test::All(ts) | Test::Any(ts) | Test::NotAll(ts) => ts.iter().any(uses_row),
        _ => false,
    }
}

/// Conditions that can be checked for one candidate rid through an index that starts with
/// (param, value…, rid) or (rid, param).
fn probe_ok(t: &Test) -> bool {
    if let Test::FullText { .. } = t {
        // FTS5 evaluates the query for the one rowid.
        return true;
    }
    let Test::Values {
        kind,
        matches,
        negate: false,
        ..
    } = t
    else {
        return false;
    };
    matches.iter().all(|m| match (kind, m) {
        // The primary key reaches the rid only through (param, code, system): without a
        // system a probe would scan every row of the code.
        (
            ParamKind::Token,
            Match::Token {
                system: Some(_),
                code: Some(_),
            },
        ) => true,
        (ParamKind::Token, Match::TokenSystems { .. }) => true,
        (ParamKind::Reference, Match::Reference { .. } | Match::ReferenceUrl { .. }) => true,
        (ParamKind::Date, Match::Date { .. }) => true,
        (ParamKind::String, Match::String { .. }) => true,
        _ => false,
    })
}

/// `EXISTS (a row of this resource that matches)`, ORed over the matches.
fn exists_values(s: &mut Sql, t: &Test, r: &str) {
    if let Test::FullText { field, query } = t {
        let x = s.alias("f");
        s.push(&format!(
            "EXISTS (SELECT 1 FROM sp_text {x} WHERE {x}.{} MATCH ",
            field.column()
        ));
        s.bind(query.clone());
        s.push(&format!(" AND {x}.rowid = {r}.rid)"));
        return;
    }
    let Test::Values {
        keys,
        kind,
        matches,
        ..
    } = t
    else {
        return;
    };
    s.push("(");
    for (i, m) in matches.iter().enumerate() {
        if i > 0 {
            s.push(" OR ");
        }
        let (tbl, suffix) = match_table(*kind, m);
        // Where the primary key does not lead to the rid, the (rid, param) index does.
        let hint = match tbl {
            "sp_ref" => " INDEXED BY sp_ref_rid",
            "sp_date" => " INDEXED BY sp_date_rid",
            _ => "",
        };
        let x = s.alias("e");
        s.push(&format!(
            "EXISTS (SELECT 1 FROM {tbl} {x}{hint} WHERE {x}.rid = {r}.rid AND "
        ));
        s.param_in(&format!("{x}.param"), &suffixed(keys, suffix));
        s.push(" AND ");
        match_cond(s, m, &x);
        s.push(")");
    }
    s.push(")");
}

/// The table of a parameter kind's rows.
fn table(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Token => "sp_token",
        ParamKind::String => "sp_string",
        ParamKind::Reference => "sp_ref",
        ParamKind::Date => "sp_date",
        ParamKind::Number => "sp_number",
        ParamKind::Quantity => "sp_quantity",
        ParamKind::Uri => "sp_uri",
        ParamKind::Composite | ParamKind::Special => "sp_token",
    }
}

/// (table, column for ascending, column for descending, extra condition) of a sort.
fn sort_column(kind: ParamKind) -> (&'static str, &'static str, &'static str, &'static str) {
    match kind {
        ParamKind::Date | ParamKind::Number => (table(kind), "x.lo", "x.hi", ""),
        ParamKind::Quantity => ("sp_quantity", "x.lo", "x.hi", " AND x.canon = 0"),
        ParamKind::String => ("sp_string", "x.norm", "x.norm", ""),
        ParamKind::Token => ("sp_token", "x.code", "x.code", ""),
        ParamKind::Reference => (
            "sp_ref",
            "x.ref_type || '/' || x.ref_id || x.url",
            "x.ref_type || '/' || x.ref_id || x.url",
            "",
        ),
        ParamKind::Uri => ("sp_uri", "x.value", "x.value", ""),
        ParamKind::Composite | ParamKind::Special => ("sp_token", "x.code", "x.code", ""),
    }
}

fn suffixed(keys: &[String], suffix: &str) -> Vec<String> {
    keys.iter().map(|k| format!("{k}{suffix}")).collect()
}

/// A condition on the resource alias `r`.
fn test_sql(s: &mut Sql, test: &Test, r: &str) {
    match test {
        Test::Values {
            keys,
            kind,
            components,
            matches,
            negate,
        } => {
            s.push(&format!(
                "{r}.rid {}IN (",
                if *negate { "NOT " } else { "" }
            ));
            for (i, m) in matches.iter().enumerate() {
                if i > 0 {
                    s.push(" UNION ALL ");
                }
                if let Match::Composite(parts) = m {
                    composite_select(s, keys, components, parts);
                } else {
                    value_select(s, keys, *kind, m);
                }
            }
            s.push(")");
        }
        Test::Missing {
            keys,
            kind,
            missing,
        } => {
            let (tbl, keys) = if *kind == ParamKind::Composite {
                ("sp_token", suffixed(keys, "$0"))
            } else {
                (table(*kind), keys.clone())
            };
            let x = s.alias("m");
            s.push(&format!(
                "{r}.rid {}IN (SELECT {x}.rid FROM {tbl} {x} WHERE ",
                if *missing { "NOT " } else { "" }
            ));
            s.param_in(&format!("{x}.param"), &keys);
            s.push(")");
        }
        Test::Id { ids, negate } => {
            s.push(&format!("{r}.id {}IN ", if *negate { "NOT " } else { "" }));
            s.bind_list(ids);
        }
        Test::LastUpdated(matches) => {
            s.push("(");
            for (i, m) in matches.iter().enumerate() {
                if i > 0 {
                    s.push(" OR ");
                }
                let col = format!("{r}.last_updated");
                if let Match::Date { prefix, lo, hi } = m {
                    range_cond(s, &col, &col, *prefix, *lo, *hi);
                } else {
                    s.push("0");
                }
            }
            s.push(")");
        }
        Test::Chain {
            keys,
            target_types,
            inner,
        } => {
            // The targets passing `inner` first, then the references to them.
            let x = s.alias("c");
            let t = s.alias("t");
            let col = type_col(&t, &[inner]);
            s.push(&format!(
                "{r}.rid IN (SELECT {x}.rid FROM resources {t} CROSS JOIN sp_ref {x} ON {x}.ref_type = {t}.type AND {x}.ref_id = {t}.id AND "
            ));
            s.param_in(&format!("{x}.param"), keys);
            s.push(&format!(" WHERE {t}.deleted = 0 AND {col} IN "));
            s.bind_list(target_types);
            s.push(" AND ");
            test_sql(s, inner, &t);
            s.push(")");
        }
        Test::PersonIn(persons) => {
            // One bound JSON array, whatever the number of persons (no variable limit).
            let list = serde_json::Value::from(persons.clone()).to_string();
            s.push(&format!(
                "({r}.person IS NOT NULL AND {r}.person IN (SELECT value FROM json_each("
            ));
            s.bind(list).push(")))");
        }
        Test::PersonOrShared(persons) => {
            let list = serde_json::Value::from(persons.clone()).to_string();
            s.push(&format!(
                "({r}.person IS NULL OR {r}.person IN (SELECT value FROM json_each("
            ));
            s.bind(list).push(")))");
        }
        Test::Rids(rids) => {
            let list = serde_json::Value::from(rids.clone()).to_string();
            s.push(&format!("{r}.rid IN (SELECT value FROM json_each("));
            s.bind(list).push("))");
        }
        Test::Type(types) => {
            s.push(&format!("{r}.type IN "));
            s.bind_list(types);
        }
        Test::All(tests) | Test::Any(tests) => {
            let (op, empty) = if matches!(test, Test::All(_)) {
                (" AND ", "1")
            } else {
                (" OR ", "0")
            };
            s.push("(");
            for (i, t) in tests.iter().enumerate() {
                if i > 0 {
                    s.push(op);
                }
                test_sql(s, t, r);
            }
            if tests.is_empty() {
                s.push(empty);
            }
            s.push(")");
        }
        Test::NotAll(tests) => {
            s.push("NOT (");
            for (i, t) in tests.iter().enumerate() {
                if i > 0 {
                    s.push(" AND ");
                }
                test_sql(s, t, r);
            }
            if tests.is_empty() {
                s.push("1");
            }
            s.push(")");
        }
        Test::Has {
            source_type,
            keys,
            inner,
        } => {
            // The referring resources passing `inner` first, then what they refer to.
            let x = s.alias("h");
            let t = s.alias("t");
            let o = s.alias("o");
            let col = type_col(&o, &[inner]);
            s.push(&format!(
                "{r}.rid IN (SELECT {t}.rid FROM resources {o} CROSS JOIN sp_ref {x} ON {x}.rid = {o}.rid AND "
            ));
            s.param_in(&format!("{x}.param"), keys);
            s.push(&format!(
                " CROSS JOIN resources {t} ON {t}.type = {x}.ref_type AND {t}.id = {x}.ref_id \
                 WHERE {t}.deleted = 0 AND {o}.deleted = 0 AND {col} = "
            ));
            s.bind(source_type.clone());
            s.push(" AND ");
            test_sql(s, inner, &o);
            s.push(")");
        }
        Test::FullText { field, query } => {
            let x = s.alias("f");
            s.push(&format!(
                "{r}.rid IN (SELECT {x}.rowid FROM sp_text {x} WHERE {x}.{} MATCH ",
                field.column()
            ));
            s.bind(query.clone());
            s.push(")");
        }
    }
}

/// Table and key suffix where the rows of a match live.
fn match_table(kind: ParamKind, m: &Match) -> (&'static str, &'static str) {
    match m {
        Match::TokenText(_) => ("sp_string", TEXT_SUFFIX),
        Match::OfType { .. } => ("sp_token", OF_TYPE_SUFFIX),
        Match::ReferenceIdentifier { .. } => ("sp_token", IDENTIFIER_SUFFIX),
        Match::Near { .. } => ("sp_geo", ""),
        _ => (table(kind), ""),
    }
}

/// `SELECT x.rid FROM <table> x WHERE x.param IN (keys) AND <match on x>`.
fn value_select(s: &mut Sql, keys: &[String], kind: ParamKind, m: &Match) {
    let (tbl, suffix) = match_table(kind, m);
    let x = s.alias("v");
    s.push(&format!("SELECT {x}.rid FROM {tbl} {x} WHERE "));
    s.param_in(&format!("{x}.param"), &suffixed(keys, suffix));
    s.push(" AND ");
    match_cond(s, m, &x);
}

/// Components of one composite value, joined on (rid, grp).
fn composite_select(s: &mut Sql, keys: &[String], components: &[ParamKind], parts: &[Match]) {
    let aliases: Vec<String> = parts.iter().map(|_| s.alias("k")).collect();
    s.push(&format!("SELECT {}.rid FROM ", aliases[0]));
    for (i, (part, a)) in parts.iter().zip(&aliases).enumerate() {
        let kind = components.get(i).copied().unwrap_or(ParamKind::Token);
        let (tbl, _) = match_table(kind, part);
        if i == 0 {
            s.push(&format!("{tbl} {a}"));
        } else {
            let a0 = &aliases[0];
            s.push(&format!(
                " JOIN {tbl} {a} ON {a}.rid = {a0}.rid AND {a}.grp = {a0}.grp"
            ));
        }
    }
    s.push(" WHERE ");
    for (i, (part, a)) in parts.iter().zip(&aliases).enumerate() {
        if i > 0 {
            s.push(" AND ");
        }
        s.param_in(&format!("{a}.param"), &suffixed(keys, &format!("${i}")));
        s.push(" AND ");
        match_cond(s, part, a);
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Range semantics of the prefixes for a target range `[lo_col, hi_col]` and a search range
/// `[lo, hi]` (dates, both inclusive).
fn range_cond(s: &mut Sql, lo_col: &str, hi_col: &str, prefix: Prefix, lo: i64, hi: i64) {
    match prefix {
        Prefix::Eq => {
            // `lo <= hi` always, so `lo <= search hi` is implied; it bounds the index range.
            s.push(&format!("({lo_col} >= ")).bind(lo);
            s.push(&format!(" AND {lo_col} <= ")).bind(hi);
            s.push(&format!(" AND {hi_col} <= ")).bind(hi).push(")");
        }
        Prefix::Ne => {
            s.push(&format!("NOT ({lo_col} >= ")).bind(lo);
            s.push(&format!(" AND {hi_col} <= ")).bind(hi).push(")");
        }
        Prefix::Gt => {
            s.push(&format!("{hi_col} > ")).bind(hi);
        }
        Prefix::Lt => {
            s.push(&format!("{lo_col} < ")).bind(lo);
        }
        Prefix::Ge => {
            // Both alternatives imply `hi >= search lo` (an index range).
            s.push(&format!("{hi_col} >= ")).bind(lo);
            s.push(&format!(" AND ({hi_col} > ")).bind(hi);
            s.push(&format!(" OR ({lo_col} >= ")).bind(lo);
            s.push(&format!(" AND {hi_col} <= ")).bind(hi).push("))");
        }
        Prefix::Le => {
            // Both alternatives imply `lo <= search hi` (an index range).
            s.push(&format!("{lo_col} <= ")).bind(hi);
            s.push(&format!(" AND ({lo_col} < ")).bind(lo);
            s.push(&format!(" OR ({lo_col} >= ")).bind(lo);
            s.push(&format!(" AND {hi_col} <= ")).bind(hi).push("))");
        }
        Prefix::Sa => {
            s.push(&format!("{lo_col} > ")).bind(hi);
        }
        Prefix::Eb => {
            s.push(&format!("{hi_col} < ")).bind(lo);
        }
        Prefix::Ap => {
            // Approximately: overlap, widened by 10% of the distance from now.
            let gap = ((now_micros() as i128 - lo as i128).abs() / 10) as i64;
            s.push(&format!("({lo_col} <= "))
                .bind(hi.saturating_add(gap));
            s.push(&format!(" AND {hi_col} >= "))
                .bind(lo.saturating_sub(gap))
                .push(")");
        }
    }
}

/// Prefix semantics for numbers and quantities: target range `[x.lo, x.hi]` (a point for
/// plain values), search value `v` with its significant-figure range `[vlo, vhi)`.
fn number_cond(s: &mut Sql, x: &str, prefix: Prefix, v: f64, vlo: f64, vhi: f64) {
    match prefix {
        Prefix::Eq => {
            s.push(&format!("({x}.lo >= ")).bind(vlo);
            s.push(&format!(" AND {x}.hi < ")).bind(vhi).push(")");
        }
        Prefix::Ne => {
            s.push(&format!("NOT ({x}.lo >= ")).bind(vlo);
            s.push(&format!(" AND {x}.hi < ")).bind(vhi).push(")");
        }
        Prefix::Gt => {
            s.push(&format!("{x}.hi > ")).bind(v);
        }
        Prefix::Lt => {
            s.push(&format!("{x}.lo < ")).bind(v);
        }
        Prefix::Ge => {
            s.push(&format!("{x}.hi >= ")).bind(v);
        }
        Prefix::Le => {
            s.push(&format!("{x}.lo <= ")).bind(v);
        }
        Prefix::Sa => {
            s.push(&format!("{x}.lo > ")).bind(v);
        }
        Prefix::Eb => {
            s.push(&format!("{x}.hi < ")).bind(v);
        }
        Prefix::Ap => {
            let d = (v.abs() / 10.0).max((vhi - vlo) / 2.0);
            s.push(&format!("({x}.lo <= ")).bind(v + d);
            s.push(&format!(" AND {x}.hi >= ")).bind(v - d).push(")");
        }
    }
}

/// The condition of one match on the row alias `x`.
fn match_cond(s: &mut Sql, m: &Match, x: &str) {
    match m {
        Match::Token { system, code } => {
            let mut and = false;
            if let Some(c) = code {
                s.push(&format!("{x}.code = ")).bind(c.clone());
                and = true;
            }
            if let Some(sys) = system {
                if and {
                    s.push(" AND ");
                }
                s.push(&format!("{x}.system = ")).bind(system_id(sys));
                and = true;
            }
            if !and {
                s.push("1");
            }
        }
        Match::TokenText(t) => starts_with(s, x, t),
        Match::TokenSystems { code, systems } => {
            s.push(&format!("{x}.code = ")).bind(code.clone());
            s.push(&format!(" AND {x}.system IN ("));
            for (i, id) in systems.iter().enumerate() {
                if i > 0 {
                    s.push(", ");
                }
                s.bind(*id);
            }
            if systems.is_empty() {
                s.push("NULL");
            }
            s.push(")");
        }
        Match::TokenSet(pairs) if !pairs.is_empty() => {
            // The primary key (param, code, system…) serves `code IN`; the pairs then filter.
            let mut codes: Vec<String> = pairs.iter().map(|(_, c)| c.clone()).collect();
            codes.sort();
            codes.dedup();
            s.push(&format!("{x}.code IN "));
            s.bind_list(&codes);
            s.push(&format!(" AND ({x}.code, {x}.system) IN (VALUES "));
            for (i, (sys, code)) in pairs.iter().enumerate() {
                if i > 0 {
                    s.push(", ");
                }
                s.push("(").bind(code.clone()).push(", ");
                s.bind(system_id(sys)).push(")");
            }
            s.push(")");
        }
        // Empty or unresolved value sets match nothing.
        Match::TokenSet(_) | Match::ValueSet(_) | Match::Subsumption { .. } => {
            s.push("0");
        }
        Match::OfType {
            system,
            code,
            value,
        } => {
            s.push(&format!("{x}.system = ")).bind(system_id(system));
            s.push(&format!(" AND {x}.code = "))
                .bind(format!("{code}{OF_TYPE_SEP}{value}"));
        }
        Match::String { mode, value } => match mode {
            StringMode::StartsWith => starts_with(s, x, value),
            StringMode::Contains => {
                s.push(&format!("instr({x}.norm, "))
                    .bind(value.clone())
                    .push(") > 0");
            }
            StringMode::Exact => {
                // `exact` is empty when the text equals its normalised form. The normalised
                // value bounds the index range.
                s.push(&format!("{x}.norm = ")).bind(normalize(value));
                s.push(&format!(" AND ({x}.exact = ")).bind(value.clone());
                s.push(&format!(" OR ({x}.exact = '' AND {x}.norm = "))
                    .bind(value.clone())
                    .push("))");
            }
        },
        Match::Reference {
            ref_type,
            id,
            version,
        } => {
            s.push(&format!("{x}.ref_id = ")).bind(id.clone());
            match ref_type {
                Some(t) => {
                    s.push(&format!(" AND {x}.ref_type = ")).bind(t.clone());
                }
                None => {
                    s.push(&format!(" AND {x}.ref_type <> ''"));
                }
            }
            if let Some(v) = version {
                s.push(&format!(" AND {x}.version = ")).bind(v.clone());
            }
        }
        Match::ReferenceUrl { url, version } => {
            // URL rows have no type and id: the primary key range serves the search.
            s.push(&format!(
                "{x}.ref_id = '' AND {x}.ref_type = '' AND {x}.url = "
            ))
            .bind(url.clone());
            if let Some(v) = version {
                s.push(&format!(" AND {x}.version = ")).bind(v.clone());
            }
        }
        Match::ReferenceUrlHierarchy { mode, url } => {
            s.push(&format!("{x}.ref_id = '' AND {x}.ref_type = '' AND "));
            match mode {
                UriMode::Below | UriMode::Exact => {
                    s.push(&format!("{x}.url >= ")).bind(url.clone());
                    s.push(&format!(" AND {x}.url < "))
                        .bind(prefix_upper_bound(url));
                }
                UriMode::Above => {
                    s.push(&format!("{x}.url <> '' AND substr("))
                        .bind(url.clone());
                    s.push(&format!(", 1, length({x}.url)) = {x}.url"));
                }
            }
        }
        Match::ReferenceIdentifier { system, value } => {
            s.push(&format!("{x}.code = ")).bind(value.clone());
            if let Some(sys) = system {
                s.push(&format!(" AND {x}.system = ")).bind(system_id(sys));
            }
        }
        Match::Date { prefix, lo, hi } => {
            range_cond(s, &format!("{x}.lo"), &format!("{x}.hi"), *prefix, *lo, *hi);
        }
        Match::Number { prefix, value } => {
            number_cond(s, x, *prefix, value.value, value.lo, value.hi);
        }
        Match::Quantity {
            prefix,
            value,
            system,
            code,
            canonical,
        } => {
            if *canonical {
                s.push(&format!("{x}.canon = 1 AND {x}.code = "))
                    .bind(code.clone().unwrap_or_default());
            } else {
                s.push(&format!("{x}.canon = 0"));
                if let Some(sys) = system {
                    s.push(&format!(" AND {x}.system = ")).bind(system_id(sys));
                }
                if let Some(c) = code {
                    if system.is_some() {
                        s.push(&format!(" AND {x}.code = ")).bind(c.clone());
                    } else {
                        s.push(&format!(" AND ({x}.code = ")).bind(c.clone());
                        s.push(&format!(" OR {x}.unit = "))
                            .bind(c.clone())
                            .push(")");
                    }
                }
            }
            s.push(" AND ");
            number_cond(s, x, *prefix, value.value, value.lo, value.hi);
        }
        Match::Uri { mode, value } => match mode {
            UriMode::Exact => {
                s.push(&format!("{x}.value = ")).bind(value.clone());
            }
            UriMode::Below => {
                s.push(&format!("{x}.value >= ")).bind(value.clone());
                s.push(&format!(" AND {x}.value < "))
                    .bind(prefix_upper_bound(value));
            }
            UriMode::Above => {
                s.push(&format!("{x}.value <> '' AND substr("))
                    .bind(value.clone());
                s.push(&format!(", 1, length({x}.value)) = {x}.value"));
            }
        },
        Match::Composite(_) => {
            s.push("0");
        }
        Match::Near {
            lat,
            lon,
            distance_m,
        } => near_cond(s, x, *lat, *lon, *distance_m),
    }
}

/// Positions within `distance_m` of (`lat`, `lon`): the latitude band (a key range), the
/// longitude range(s), then the exact test on the squared chord (see `geo`).
fn near_cond(s: &mut Sql, x: &str, lat: f64, lon: f64, distance_m: f64) {
    let c = geo::cap(lat, lon, distance_m);
    s.push(&format!("{x}.lat >= ")).bind(c.lat_lo);
    s.push(&format!(" AND {x}.lat <= ")).bind(c.lat_hi);
    if !c.lon.is_empty() {
        s.push(" AND (");
        for (i, (lo, hi)) in c.lon.iter().enumerate() {
            if i > 0 {
                s.push(" OR ");
            }
            s.push(&format!("({x}.lon >= ")).bind(*lo);
            s.push(&format!(" AND {x}.lon <= ")).bind(*hi).push(")");
        }
        s.push(")");
    }
    s.push(" AND ");
    for (i, col) in ["x", "y", "z"].iter().enumerate() {
        if i > 0 {
            s.push(" + ");
        }
        s.push(&format!("({x}.{col} - ")).bind(c.centre[i]);
        s.push(&format!(") * ({x}.{col} - "))
            .bind(c.centre[i])
            .push(")");
    }
    s.push(" <= ").bind(c.chord2);
}

fn starts_with(s: &mut Sql, x: &str, prefix: &str) {
    s.push(&format!("{x}.norm >= ")).bind(prefix.to_string());
    s.push(&format!(" AND {x}.norm < "))
        .bind(prefix_upper_bound(prefix));
}
