//! The SQL of one condition: index-table lookups per parameter kind and match (tokens,
//! strings, references, dates, numbers and quantities, URIs, composites, `near`), chains and
//! `_has`, full text, and the engine's access conditions (persons, types, row keys).

use crate::select::type_col;
use crate::{Arg, Side, Sql};
use issho_search::geo;
use issho_search::values::{normalize, prefix_upper_bound, system_id};
use issho_search::{
    IDENTIFIER_SUFFIX, Match, OF_TYPE_SEP, OF_TYPE_SUFFIX, ParamKind, Prefix, StringMode,
    TEXT_SUFFIX, Test, UriMode,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// `EXISTS (a row of this resource that matches)`, ORed over the matches.
pub(crate) fn exists_values(s: &mut Sql, t: &Test, r: &str) {
    if let Test::FullText { field, terms } = t {
        let x = s.alias("f");
        let tbl = s.tab("sp_text");
        s.push(&format!("EXISTS (SELECT 1 FROM {tbl} {x} WHERE "));
        s.text_match(&x, *field, terms);
        let same = s.same_text_row(&x, r);
        s.push(&format!(" AND {same})"));
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
        let hint = s.by_rid(tbl);
        let tbl = s.tab(tbl);
        let x = s.alias("e");
        let same = s.same_row(&x, r);
        s.push(&format!(
            "EXISTS (SELECT 1 FROM {tbl} {x}{hint} WHERE {same} AND "
        ));
        s.param_in(&format!("{x}.param"), &suffixed(keys, suffix));
        s.push(" AND ");
        match_cond(s, m, &x);
        s.push(")");
    }
    s.push(")");
}

/// The table of a parameter kind's rows.
pub(crate) fn table(kind: ParamKind) -> &'static str {
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
pub(crate) fn sort_column(
    kind: ParamKind,
) -> (&'static str, &'static str, &'static str, &'static str) {
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

pub(crate) fn suffixed(keys: &[String], suffix: &str) -> Vec<String> {
    keys.iter().map(|k| format!("{k}{suffix}")).collect()
}

/// A condition on the resource alias `r`.
pub(crate) fn test_sql(s: &mut Sql, test: &Test, r: &str) {
    match test {
        Test::Values {
            keys,
            kind,
            components,
            parts,
            matches,
            negate,
        } => {
            s.push(&format!(
                "{} {}IN (",
                s.key_in(r),
                if *negate { "NOT " } else { "" }
            ));
            for (i, m) in matches.iter().enumerate() {
                if i > 0 {
                    s.push(" UNION ALL ");
                }
                if let Match::Composite(values) = m {
                    composite_select(s, parts, components, Some(values));
                } else {
                    value_select(s, keys, *kind, m);
                }
            }
            s.push(")");
        }
        Test::Missing {
            keys,
            kind,
            components,
            parts,
            missing,
        } => {
            if *kind == ParamKind::Composite {
                // A composite value exists where each component has a value at one place.
                s.push(&format!(
                    "{} {}IN (",
                    s.key_in(r),
                    if *missing { "NOT " } else { "" }
                ));
                composite_select(s, parts, components, None);
                s.push(")");
                return;
            }
            let tbl = s.tab(table(*kind));
            let x = s.alias("m");
            s.push(&format!(
                "{} {}IN (SELECT {} FROM {tbl} {x} WHERE ",
                s.key_in(r),
                if *missing { "NOT " } else { "" },
                s.key_of(&x)
            ));
            s.param_in(&format!("{x}.param"), keys);
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
                    s.push("1 = 0");
                }
            }
            s.push(")");
        }
        Test::Chain {
            keys,
            target_types,
            inner,
        } => chain_sql(s, keys, target_types, inner, r),
        Test::PersonIn(persons) => {
            if s.keyed() {
                // A person's rows carry the person as their key: the condition on the key lets
                // a distributed planner send the query to those persons' shards only.
                s.push(&format!("({r}.person IS NOT NULL AND "));
                if let [p] = persons.as_slice() {
                    s.push(&format!("{r}.pk = ")).bind(p.clone());
                } else {
                    s.push(&format!("{r}.pk = ANY("))
                        .bind(Arg::Texts(persons.clone()))
                        .push("::text[])");
                }
                s.push(")");
                return;
            }
            // One bound JSON array, whatever the number of persons (no variable limit).
            s.push(&format!("({r}.person IS NOT NULL AND {r}.person IN "));
            s.text_list(persons);
            s.push(")");
        }
        Test::PersonOrShared(persons) => {
            s.push(&format!("({r}.person IS NULL OR {r}.person IN "));
            s.text_list(persons);
            s.push(")");
        }
        Test::Rids(rids) => {
            s.push(&format!("{r}.rid IN "));
            s.rid_list(rids);
        }
        Test::Type(types) => {
            s.push(&format!("{r}.type IN "));
            s.bind_list(types);
        }
        Test::All(tests) | Test::Any(tests) => {
            let (op, empty) = if matches!(test, Test::All(_)) {
                (" AND ", "1 = 1")
            } else {
                (" OR ", "1 = 0")
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
                s.push("1 = 1");
            }
            s.push(")");
        }
        Test::Has {
            source_type,
            keys,
            inner,
        } => has_sql(s, source_type, keys, inner, r),
        Test::FullText { field, terms } => {
            let x = s.alias("f");
            let (left, sel) = if s.keyed() {
                (s.key_in(r), s.key_of(&x))
            } else {
                (format!("{r}.rid"), format!("{x}.rowid"))
            };
            let tbl = s.tab("sp_text");
            s.push(&format!("{left} IN (SELECT {sel} FROM {tbl} {x} WHERE "));
            s.text_match(&x, *field, terms);
            s.push(")");
        }
    }
}

/// A chain on the resource alias `r`: the targets passing `inner` first, then the references
/// to them. The references are rows of `r`'s side; the targets are on their own side(s), a leg
/// each.
fn chain_sql(s: &mut Sql, keys: &[String], target_types: &[String], inner: &Test, r: &str) {
    let outer = s.side;
    let sides = s.sides(target_types);
    let x = s.alias("c");
    let refs = s.tab("sp_ref");
    // On a distributed database, targets in persons' records are reached by an uncorrelated
    // subquery (a join on columns other than the key would cross shards); shared targets are
    // on every node, so they are joined.
    if s.distributed && sides.contains(&Side::Record) {
        s.push(&format!(
            "{} IN (SELECT {} FROM {refs} {x} WHERE ",
            s.key_in(r),
            s.key_of(&x)
        ));
        s.param_in(&format!("{x}.param"), keys);
        s.push(&format!(" AND ({x}.ref_type, {x}.ref_id) IN ("));
        for (i, side) in sides.iter().enumerate() {
            if i > 0 {
                s.push(" UNION ALL ");
            }
            let t = s.alias("t");
            let res = s.tab_on(*side, "resources");
            s.push(&format!(
                "SELECT {t}.type, {t}.id FROM {res} {t} WHERE {t}.deleted = 0 AND {t}.type IN "
            ));
            s.bind_list(&s.types_on(*side, target_types));
            s.push(" AND ");
            s.enter(*side);
            test_sql(s, inner, &t);
            s.enter(outer);
        }
        s.push("))");
        return;
    }
    s.push(&format!("{} IN (", s.key_in(r)));
    for (i, side) in sides.iter().enumerate() {
        if i > 0 {
            s.push(" UNION ALL ");
        }
        let t = s.alias("t");
        let res = s.tab_on(*side, "resources");
        let col = type_col(s, &t, &[inner]);
        s.push(&format!(
            "SELECT {} FROM {res} {t} CROSS JOIN {refs} {x} ON {x}.ref_type = {t}.type AND {x}.ref_id = {t}.id AND ",
            s.key_of(&x)
        ));
        s.param_in(&format!("{x}.param"), keys);
        s.push(&format!(" WHERE {t}.deleted = 0 AND {col} IN "));
        s.bind_list(&s.types_on(*side, target_types));
        s.push(" AND ");
        s.enter(*side);
        test_sql(s, inner, &t);
        s.enter(outer);
    }
    s.push(")");
}

/// `_has` on the resource alias `r`: the referring resources (of `source_type`, on its side)
/// passing `inner` first, then what they refer to.
fn has_sql(s: &mut Sql, source_type: &str, keys: &[String], inner: &Test, r: &str) {
    let outer = s.side;
    let x = s.alias("h");
    let t = s.alias("t");
    let o = s.alias("o");
    let targets = s.tab("resources");
    s.enter(Side::of(source_type));
    let (res, refs) = (s.tab("resources"), s.tab("sp_ref"));
    if s.distributed {
        // What the referring resources refer to, as (type, id).
        let same = s.same_row(&x, &o);
        s.push(&format!(
            "({r}.type, {r}.id) IN (SELECT {x}.ref_type, {x}.ref_id FROM {res} {o} \
             JOIN {refs} {x} ON {same} AND "
        ));
        s.param_in(&format!("{x}.param"), keys);
        s.push(&format!(" WHERE {o}.deleted = 0 AND {o}.type = "));
        s.bind(source_type.to_string());
        s.push(" AND ");
        test_sql(s, inner, &o);
        s.push(")");
        s.enter(outer);
        return;
    }
    let col = type_col(s, &o, &[inner]);
    let same = s.same_row(&x, &o);
    s.push(&format!(
        "{} IN (SELECT {} FROM {res} {o} CROSS JOIN {refs} {x} ON {same} AND ",
        s.key_in(r),
        s.key_of(&t)
    ));
    s.param_in(&format!("{x}.param"), keys);
    s.push(&format!(
        " CROSS JOIN {targets} {t} ON {t}.type = {x}.ref_type AND {t}.id = {x}.ref_id \
         WHERE {t}.deleted = 0 AND {o}.deleted = 0 AND {col} = "
    ));
    s.bind(source_type.to_string());
    s.push(" AND ");
    test_sql(s, inner, &o);
    s.push(")");
    s.enter(outer);
}

/// Table and key suffix where the rows of a match live.
pub(crate) fn match_table(kind: ParamKind, m: &Match) -> (&'static str, &'static str) {
    match m {
        Match::TokenText(_) => ("sp_string", TEXT_SUFFIX),
        Match::OfType { .. } => ("sp_token", OF_TYPE_SUFFIX),
        Match::ReferenceIdentifier { .. } => ("sp_token", IDENTIFIER_SUFFIX),
        Match::Near { .. } => ("sp_geo", ""),
        _ => (table(kind), ""),
    }
}

/// `SELECT x.rid FROM <table> x WHERE x.param IN (keys) AND <match on x>`.
pub(crate) fn value_select(s: &mut Sql, keys: &[String], kind: ParamKind, m: &Match) {
    let (tbl, suffix) = match_table(kind, m);
    let tbl = s.tab(tbl);
    let x = s.alias("v");
    s.push(&format!("SELECT {} FROM {tbl} {x} WHERE ", s.key_of(&x)));
    s.param_in(&format!("{x}.param"), &suffixed(keys, suffix));
    s.push(" AND ");
    match_cond(s, m, &x);
}

/// Resources with a composite value whose components match `values` (all of them, when
/// `None`): per search key, its components' rows (`parts`, see `Test::Values`) joined on
/// `(rid, grp)`, the keys' selects `UNION ALL`ed.
pub(crate) fn composite_select(
    s: &mut Sql,
    parts: &[Vec<String>],
    components: &[ParamKind],
    values: Option<&[Match]>,
) {
    for (j, keys) in parts.iter().enumerate() {
        if j > 0 {
            s.push(" UNION ALL ");
        }
        let aliases: Vec<String> = keys.iter().map(|_| s.alias("k")).collect();
        let Some(a0) = aliases.first() else {
            // A composite without components has no values.
            let x = s.alias("k");
            let tbl = s.tab("sp_token");
            s.push(&format!(
                "SELECT {} FROM {tbl} {x} WHERE 1 = 0",
                s.key_of(&x)
            ));
            continue;
        };
        s.push(&format!("SELECT {} FROM ", s.key_of(a0)));
        for (i, a) in aliases.iter().enumerate() {
            let kind = components.get(i).copied().unwrap_or(ParamKind::Token);
            let part = values.and_then(|v| v.get(i));
            let tbl = s.tab(match part {
                Some(m) => match_table(kind, m).0,
                None => table(kind),
            });
            if i == 0 {
                s.push(&format!("{tbl} {a}"));
            } else {
                let same = s.same_row(a, a0);
                s.push(&format!(" JOIN {tbl} {a} ON {same} AND {a}.grp = {a0}.grp"));
            }
        }
        s.push(" WHERE ");
        for (i, (key, a)) in keys.iter().zip(&aliases).enumerate() {
            if i > 0 {
                s.push(" AND ");
            }
            s.param_in(&format!("{a}.param"), std::slice::from_ref(key));
            if let Some(m) = values.and_then(|v| v.get(i)) {
                s.push(" AND ");
                match_cond(s, m, a);
            }
        }
    }
}

pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Range semantics of the prefixes for a target range `[lo_col, hi_col]` and a search range
/// `[lo, hi]` (dates, both inclusive).
pub(crate) fn range_cond(
    s: &mut Sql,
    lo_col: &str,
    hi_col: &str,
    prefix: Prefix,
    lo: i64,
    hi: i64,
) {
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
pub(crate) fn number_cond(s: &mut Sql, x: &str, prefix: Prefix, v: f64, vlo: f64, vhi: f64) {
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
pub(crate) fn match_cond(s: &mut Sql, m: &Match, x: &str) {
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
                s.push("1 = 1");
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
                s.bind_int(system_id(sys)).push(")");
            }
            s.push(")");
        }
        // Empty or unresolved value sets match nothing.
        Match::TokenSet(_) | Match::ValueSet(_) | Match::Subsumption { .. } => {
            s.push("1 = 0");
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
                s.contains(&format!("{x}.norm"), value);
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
            s.push("1 = 0");
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
pub(crate) fn near_cond(s: &mut Sql, x: &str, lat: f64, lon: f64, distance_m: f64) {
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

pub(crate) fn starts_with(s: &mut Sql, x: &str, prefix: &str) {
    s.push(&format!("{x}.norm >= ")).bind(prefix.to_string());
    s.push(&format!(" AND {x}.norm < "))
        .bind(prefix_upper_bound(prefix));
}
