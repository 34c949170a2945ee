//! Whole queries: select (with the planner's choice of a driving condition), count, includes,
//! link breadth, token systems.

use crate::conditions::*;
use crate::{Arg, Side, Sql, Target};
use issho_search::values::system_id;
use issho_search::{Include, Match, ParamKind, SearchQuery, SortBy, Test};

/// SQL selecting the `rid`s of the current, non-deleted resources matching `q`, in the
/// requested order (then by `rid`), with `_count` and `_offset` applied.
pub fn select<'a>(d: impl Into<Target<'a>>, q: &SearchQuery) -> (String, Vec<Arg>) {
    let mut s = Sql::new(d.into());
    match query_sides(&s, q).as_slice() {
        [side] => {
            s.enter(*side);
        }
        sides => {
            select_across(&mut s, q, sides);
            return s.finish();
        }
    }
    let streamed = if q.sort.is_empty() {
        driver_of(q).filter(|&i| streamable(&q.filters[i].test).is_some())
    } else {
        None
    };
    if let Some(i) = streamed {
        let (key, sys, code) = streamable(&q.filters[i].test).expect("streamable");
        let same = s.same_row("r", "d");
        let (tokens, res) = (s.tab("sp_token"), s.tab("resources"));
        s.push(&format!(
            "SELECT r.rid FROM {tokens} d CROSS JOIN {res} r ON {same} WHERE "
        ));
        s.param_in("d.param", &[key.to_string()]);
        s.push(" AND d.code = ").bind(code.to_string());
        s.push(" AND d.system = ").bind(system_id(sys));
        s.push(" AND ");
        where_clause_streamed(&mut s, q, "r", Some(i));
        s.push(" ORDER BY d.rid");
        s.limit(q.count, q.offset);
        return s.finish();
    }
    let res = s.tab("resources");
    s.push(&format!("SELECT r.rid FROM {res} r"));
    // Sort values from tables without a `rid` index: each parameter's rows are aggregated per
    // rid once and joined (one pass over the parameter's key range).
    let mut joined: Vec<Option<String>> = Vec::new();
    for k in &q.sort {
        let mut alias = None;
        if let SortBy::Index { kind, keys } = &k.by {
            let (table, col_asc, col_desc, extra) = sort_column(*kind);
            if !has_rid_index(table) {
                let table = s.tab(table);
                let (agg, col) = if k.descending {
                    ("max", col_desc)
                } else {
                    ("min", col_asc)
                };
                let a = s.alias("s");
                let key = s.key_of("x");
                s.push(&format!(
                    " LEFT JOIN (SELECT {key}, {agg}({col}) AS v FROM {table} x WHERE "
                ));
                s.param_in("x.param", keys);
                let same = s.same_row(&a, "r");
                s.push(&format!("{extra} GROUP BY {key}) {a} ON {same}"));
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
                sort_value(&mut s, *kind, keys, k.descending);
                s.push(&format!(" {dir} NULLS LAST, "));
            }
        }
    }
    s.push("r.rid");
    s.limit(q.count, q.offset);
    s.finish()
}

/// `(SELECT min|max(value) …)`: the sort value of resource `r` for one parameter.
fn sort_value(s: &mut Sql, kind: ParamKind, keys: &[String], descending: bool) {
    let (table, col_asc, col_desc, extra) = sort_column(kind);
    let table = s.tab(table);
    let (agg, col) = if descending {
        ("max", col_desc)
    } else {
        ("min", col_asc)
    };
    // `+x.param`: look the rows up by (rid, param), not by scanning the param.
    let same = s.same_row("x", "r");
    s.push(&format!(
        "(SELECT {agg}({col}) FROM {table} x WHERE {same}{extra} AND "
    ));
    let col = s.no_index("x.param");
    s.param_in(&col, keys);
    s.push(")");
}

/// The sides a query's resources may be on: its type's, its types', or both for a search
/// across every type.
fn query_sides(s: &Sql, q: &SearchQuery) -> Vec<Side> {
    match &q.resource_type {
        Some(t) => s.sides(std::slice::from_ref(t)),
        None => s.sides(&q.types),
    }
}

/// A search whose resources may be on both sides: a leg per side with its sort values as
/// columns, `UNION ALL`ed, then sorted and paged (PostgreSQL only: SQLite has one side).
fn select_across(s: &mut Sql, q: &SearchQuery, sides: &[Side]) {
    s.push("SELECT u.rid FROM (");
    for (i, side) in sides.iter().enumerate() {
        if i > 0 {
            s.push(" UNION ALL ");
        }
        s.enter(*side);
        s.push("SELECT r.rid");
        for (j, k) in q.sort.iter().enumerate() {
            match &k.by {
                SortBy::Id => s.push(&format!(", r.id AS s{j}")),
                SortBy::LastUpdated => s.push(&format!(", r.last_updated AS s{j}")),
                SortBy::Index { kind, keys } => {
                    s.push(", ");
                    sort_value(s, *kind, keys, k.descending);
                    s.push(&format!(" AS s{j}"))
                }
            };
        }
        let res = s.tab("resources");
        s.push(&format!(" FROM {res} r WHERE "));
        where_clause(s, q, "r");
    }
    s.push(") u ORDER BY ");
    for (j, k) in q.sort.iter().enumerate() {
        let dir = if k.descending { "DESC" } else { "ASC" };
        s.push(&format!("u.s{j} {dir} NULLS LAST, "));
    }
    s.push("u.rid");
    s.limit(q.count, q.offset);
}

/// True for the tables with a `(rid, param)` index (see the DDL).
fn has_rid_index(table: &str) -> bool {
    matches!(table, "sp_date" | "sp_ref")
}

/// SQL counting the resources matching `q` (ignores sort and paging).
pub fn count<'a>(d: impl Into<Target<'a>>, q: &SearchQuery) -> (String, Vec<Arg>) {
    let mut s = Sql::new(d.into());
    let sides = query_sides(&s, q);
    if let [_, _, ..] = sides.as_slice() {
        // A count per side, added.
        s.push("SELECT ");
        for (i, side) in sides.iter().enumerate() {
            if i > 0 {
                s.push(" + ");
            }
            s.enter(*side);
            let res = s.tab("resources");
            s.push(&format!("(SELECT count(*) FROM {res} r WHERE "));
            where_clause(&mut s, q, "r");
            s.push(")");
        }
        return s.finish();
    }
    s.enter(sides[0]);
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
        s.push(") c");
        return s.finish();
    }
    let res = s.tab("resources");
    s.push(&format!("SELECT count(*) FROM {res} r WHERE "));
    where_clause(&mut s, q, "r");
    s.finish()
}

/// SQL yielding the `rid`s to add for `_include` / `_revinclude`, given the `rid`s of the
/// resources in the page (every rule; with `iterate_only` only the `:iterate` rules, for the
/// following rounds). The result may contain rids already in `rids`. `None` when the query
/// has no such rule.
pub fn includes<'a>(
    d: impl Into<Target<'a>>,
    q: &SearchQuery,
    rids: &[i64],
    iterate_only: bool,
) -> Option<(String, Vec<Arg>)> {
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
    let mut s = Sql::new(d.into());
    s.push("SELECT DISTINCT rid FROM (");
    let mut first = true;
    let mut leg = |s: &mut Sql| {
        if !first {
            s.push(" UNION ALL ");
        }
        first = false;
    };
    for i in &inc {
        // The references are rows of the source type's side; the targets a leg per side.
        let source = Side::of(&i.source_type);
        for target in s.sides(i.target_type.as_slice()) {
            leg(&mut s);
            if s.distributed && target == Side::Record {
                include_keyed(&mut s, i, rids, source, target);
            } else {
                include_joined(&mut s, i, rids, source, target);
            }
        }
    }
    for i in &rev {
        // The referring resources on the source type's side; the page's resources (the
        // targets) a leg per side.
        let source = Side::of(&i.source_type);
        for target in s.sides(i.target_type.as_slice()) {
            leg(&mut s);
            if s.distributed {
                revinclude_keyed(&mut s, i, rids, source, target);
            } else {
                revinclude_joined(&mut s, i, rids, source, target);
            }
        }
    }
    s.push(") i");
    Some(s.finish())
}

/// `_include` by joins: the targets of the page's references.
fn include_joined(s: &mut Sql, i: &Include, rids: &[i64], source: Side, target: Side) {
    let same = s.same_row("src", "x");
    let (refs, src) = (s.tab_on(source, "sp_ref"), s.tab_on(source, "resources"));
    let res = s.tab_on(target, "resources");
    s.push(&format!(
        "SELECT t.rid AS rid FROM {refs} x JOIN {res} t ON t.type = x.ref_type AND t.id = x.ref_id \
         JOIN {src} src ON {same} \
         WHERE x.rid IN "
    ));
    s.rid_list(rids);
    s.push(" AND src.type = ");
    s.bind(i.source_type.clone());
    s.push(" AND ");
    s.param_in("x.param", &i.keys);
    s.push(" AND t.deleted = 0");
    if let Some(t) = &i.target_type {
        s.push(" AND t.type = ");
        s.bind(t.clone());
    }
}

/// `_revinclude` by joins: the references to the page's resources.
fn revinclude_joined(s: &mut Sql, i: &Include, rids: &[i64], source: Side, target: Side) {
    let same = s.same_row("o", "x");
    let (refs, src) = (s.tab_on(source, "sp_ref"), s.tab_on(source, "resources"));
    let res = s.tab_on(target, "resources");
    s.push(&format!(
        "SELECT x.rid AS rid FROM {res} t JOIN {refs} x ON x.ref_type = t.type AND x.ref_id = t.id \
         JOIN {src} o ON {same} \
         WHERE t.rid IN "
    ));
    s.rid_list(rids);
    s.push(" AND ");
    s.param_in("x.param", &i.keys);
    s.push(" AND o.deleted = 0 AND o.type = ");
    s.bind(i.source_type.clone());
    if let Some(t) = &i.target_type {
        s.push(" AND t.type = ");
        s.bind(t.clone());
    }
}

/// A distributed database's `_include` of targets in persons' records: the targets by
/// (type, id) of the page's references (no join on other columns than the distribution key,
/// see the crate's documentation).
fn include_keyed(s: &mut Sql, i: &Include, rids: &[i64], source: Side, target: Side) {
    let res = s.tab_on(target, "resources");
    s.push(&format!(
        "SELECT t.rid AS rid FROM {res} t WHERE t.deleted = 0"
    ));
    if let Some(t) = &i.target_type {
        s.push(" AND t.type = ");
        s.bind(t.clone());
    }
    let same = s.same_row("x", "src");
    let (refs, src) = (s.tab_on(source, "sp_ref"), s.tab_on(source, "resources"));
    s.push(&format!(
        " AND (t.type, t.id) IN (SELECT x.ref_type, x.ref_id FROM {refs} x \
         JOIN {src} src ON {same} WHERE x.rid IN "
    ));
    s.rid_list(rids);
    s.push(" AND src.type = ");
    s.bind(i.source_type.clone());
    s.push(" AND ");
    s.param_in("x.param", &i.keys);
    s.push(")");
}

/// A distributed database's `_revinclude`: the references to the page's resources, by
/// (type, id).
fn revinclude_keyed(s: &mut Sql, i: &Include, rids: &[i64], source: Side, target: Side) {
    let same = s.same_row("x", "o");
    let (refs, src) = (s.tab_on(source, "sp_ref"), s.tab_on(source, "resources"));
    s.push(&format!(
        "SELECT x.rid AS rid FROM {refs} x JOIN {src} o ON {same} \
         WHERE o.deleted = 0 AND o.type = "
    ));
    s.bind(i.source_type.clone());
    s.push(" AND ");
    s.param_in("x.param", &i.keys);
    let res = s.tab_on(target, "resources");
    s.push(&format!(
        " AND (x.ref_type, x.ref_id) IN (SELECT t.type, t.id FROM {res} t WHERE t.rid IN "
    ));
    s.rid_list(rids);
    if let Some(t) = &i.target_type {
        s.push(" AND t.type = ");
        s.bind(t.clone());
    }
    s.push(")");
}

/// True when `test` yields a (small) set of rids SQLite can start from (`rid IN (...)`).
/// A person condition naming this many persons (one: a patient's own record) drives a
/// query (the `person` index), with chains and `_has` then checked per candidate.
const FEW_PERSONS: usize = 1;

fn can_drive(test: &Test) -> bool {
    match test {
        Test::PersonIn(p) => p.len() <= FEW_PERSONS,
        Test::Values { negate, .. } => !negate,
        Test::Missing { missing, .. } => !missing,
        Test::Chain { .. } | Test::Has { .. } | Test::FullText { .. } => true,
        Test::Rids(_) => true,
        Test::NotAll(_) | Test::PersonOrShared(_) => false,
        Test::All(_) | Test::Any(_) | Test::Type(_) => false,
        Test::Id { .. } | Test::LastUpdated(_) => false,
    }
}

/// `+col` keeps SQLite from using an index on `col` (a unary plus is not a column reference
/// for the planner): used on `type` when a filter's rid set should drive the query instead of
/// a scan of every resource of the type.
pub(crate) fn type_col(s: &Sql, r: &str, tests: &[&Test]) -> String {
    let by_id = tests
        .iter()
        .any(|t| matches!(t, Test::Id { negate: false, .. }));
    if !by_id && tests.iter().any(|t| can_drive(t)) {
        s.no_index(&format!("{r}.type"))
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

/// Probes a PostgreSQL query keeps as semi-joins (see [`where_clause_streamed`]).
const MAX_SEMI_JOINS: usize = 8;

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
    // The caller reaches few persons and that drives: links are probed per candidate.
    let few_persons = driver.is_some_and(|d| matches!(&q.filters[d].test, Test::PersonIn(_)));
    // Without a driving condition the type's index (in rid order) drives.
    let col = if driver.is_some() {
        type_col(s, r, &tests)
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
    let probes = tests
        .iter()
        .enumerate()
        .filter(|(i, t)| Some(*i) != driver && driver.is_some() && probe_ok(t))
        .count();
    // PostgreSQL turns each top-level `EXISTS` into a semi-join and searches the join orders
    // of all of them (a distributed planner then once more per shard): past a few, planning
    // would cost seconds. `(EXISTS …) IS TRUE` stays a probe per candidate (linear planning).
    let as_probe = s.keyed() && probes > MAX_SEMI_JOINS;
    for (i, t) in tests.iter().enumerate() {
        if Some(i) == streamed {
            continue;
        }
        s.push(" AND ");
        if Some(i) != driver && driver.is_some() && probe_ok(t) {
            if as_probe {
                s.push("(");
                exists_values(s, t, r);
                s.push(") IS TRUE");
            } else {
                exists_values(s, t, r);
            }
        } else if (q.probe.contains(&i)
            || (few_persons && matches!(t, Test::Chain { .. } | Test::Has { .. })))
            && q.resource_type.is_some()
        {
            exists_link(s, t, r);
        } else {
            test_sql(s, t, r);
        }
    }
}

/// A chain or `_has` checked for one candidate (instead of materialising every resource it
/// matches): used for broad ones (see [`SearchQuery::probe`]) when another condition drives.
fn exists_link(s: &mut Sql, t: &Test, r: &str) {
    if s.distributed {
        // A distributed planner cannot correlate on columns other than the key: the
        // uncorrelated form.
        return test_sql(s, t, r);
    }
    match t {
        Test::Chain {
            keys,
            target_types,
            inner,
        } => {
            // A leg per side of the targets.
            let outer = s.side;
            let sides = s.sides(target_types);
            let x = s.alias("c");
            let (refs, hint) = (s.tab("sp_ref"), s.by_rid("sp_ref"));
            if sides.len() > 1 {
                s.push("(");
            }
            for (i, side) in sides.iter().enumerate() {
                if i > 0 {
                    s.push(" OR ");
                }
                let tt = s.alias("t");
                let res = s.tab_on(*side, "resources");
                let same = s.same_row(&x, r);
                s.push(&format!(
                    "EXISTS (SELECT 1 FROM {refs} {x}{hint} CROSS JOIN {res} {tt} \
                     ON {tt}.type = {x}.ref_type AND {tt}.id = {x}.ref_id WHERE {same} AND "
                ));
                s.param_in(&format!("{x}.param"), keys);
                s.push(&format!(" AND {tt}.deleted = 0 AND {tt}.type IN "));
                s.bind_list(&s.types_on(*side, target_types));
                s.push(" AND ");
                s.enter(*side);
                if probe_ok(inner) {
                    exists_values(s, inner, &tt);
                } else {
                    test_sql(s, inner, &tt);
                }
                s.enter(outer);
                s.push(")");
            }
            if sides.len() > 1 {
                s.push(")");
            }
        }
        Test::Has {
            keys,
            inner,
            source_type,
        } => {
            // The references to this resource, each checked as the referring resource (index
            // rows exist only for current resources, and the keys name the source type), on
            // the source type's side.
            let outer = s.enter(Side::of(source_type));
            let h = s.alias("h");
            let refs = s.tab("sp_ref");
            s.push(&format!("EXISTS (SELECT 1 FROM {refs} {h} "));
            // Conditions on the referring resource's own row (type, person, id) need it.
            let src = if uses_row(inner) {
                let o = s.alias("o");
                let same = s.same_row(&o, &h);
                let res = s.tab("resources");
                s.push(&format!(
                    "CROSS JOIN {res} {o} ON {same} AND {o}.deleted = 0 "
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
            s.enter(outer);
        }
        other => test_sql(s, other, r),
    }
}

/// SQL counting, up to `limit`, the resources a chain's or `_has`'s inner condition matches
/// (the targets of a chain, the referring resources of a `_has`): how broad it is, for the
/// planner ([`SearchQuery::probe`]). `None` for other tests.
pub fn link_breadth<'a>(
    d: impl Into<Target<'a>>,
    t: &Test,
    limit: usize,
) -> Option<(String, Vec<Arg>)> {
    let mut s = Sql::new(d.into());
    let (types, inner) = match t {
        Test::Chain {
            target_types,
            inner,
            ..
        } => (target_types.clone(), inner),
        Test::Has {
            source_type, inner, ..
        } => (vec![source_type.clone()], inner),
        _ => return None,
    };
    s.push("SELECT count(*) FROM (");
    for (i, side) in s.sides(&types).into_iter().enumerate() {
        if i > 0 {
            s.push(" UNION ALL ");
        }
        s.enter(side);
        let res = s.tab("resources");
        s.push(&format!(
            "SELECT 1 FROM {res} t WHERE t.deleted = 0 AND t.type IN "
        ));
        s.bind_list(&s.types_on(side, &types));
        s.push(" AND ");
        test_sql(&mut s, inner, "t");
    }
    s.push(" LIMIT ").bind(limit as i64).push(") c");
    Some(s.finish())
}

/// SQL yielding the code systems (`system_id`s) the index holds for `code` under `key`: a
/// skip scan, one primary-key seek per distinct system (there are few), never a walk over every
/// row of a common code.
pub fn token_systems<'a>(d: impl Into<Target<'a>>, key: &str, code: &str) -> (String, Vec<Arg>) {
    let mut s = Sql::new(d.into());
    let tables: Vec<String> = s
        .sides(&[])
        .into_iter()
        .map(|side| s.tab_on(side, "sp_token"))
        .collect();
    if s.distributed {
        // No recursive query over a distributed table: each shard lists its systems.
        s.push("SELECT DISTINCT system FROM (");
        for (i, tbl) in tables.iter().enumerate() {
            if i > 0 {
                s.push(" UNION ALL ");
            }
            s.push(&format!(
                "SELECT system FROM {tbl} WHERE param = (SELECT id FROM sp_param WHERE key = "
            ));
            s.bind(key.to_string());
            s.push(") AND code = ");
            s.bind(code.to_string());
        }
        s.push(") u");
        return s.finish();
    }
    // A skip scan per table.
    s.push("WITH RECURSIVE p(id) AS (SELECT id FROM sp_param WHERE key = ");
    s.bind(key.to_string());
    s.push(")");
    for (i, tbl) in tables.iter().enumerate() {
        s.push(&format!(
            ", s{i}(sys) AS (SELECT (SELECT min(system) FROM {tbl} WHERE param = (SELECT id FROM p) AND code = "
        ));
        s.bind(code.to_string());
        s.push(&format!(
            ") UNION ALL SELECT (SELECT min(system) FROM {tbl} WHERE param = (SELECT id FROM p) AND code = "
        ));
        s.bind(code.to_string());
        s.push(&format!(
            " AND system > s{i}.sys) FROM s{i} WHERE s{i}.sys IS NOT NULL)"
        ));
    }
    s.push(" ");
    for i in 0..tables.len() {
        if i > 0 {
            s.push(" UNION ");
        }
        s.push(&format!("SELECT sys FROM s{i} WHERE sys IS NOT NULL"));
    }
    s.finish()
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
        Test::PersonIn(p) if p.len() <= FEW_PERSONS => 0,
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
