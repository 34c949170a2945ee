//! SQL from issho-search's parsed queries, for the SQL backends (issho-store-sqlite,
//! issho-store-pg).
//!
//! Both backends keep the same tables (`resources`, the `sp_*` index tables; PostgreSQL adds the
//! key `pk` to each, below) and the same
//! planning (the most selective condition drives the query as a set of `rid`s; the others are
//! probed per candidate by primary key or the `(rid, param)` indexes), so one compiler serves
//! both. What differs is said by a [`Dialect`], in one place ([`Sql`]): placeholders (`?` or
//! `$n`), planner hints SQLite needs (`INDEXED BY`, a unary `+` that hides an index), lists of
//! row keys and persons (a bound JSON array or a bound array), substring tests, `LIMIT` without
//! a limit, `CROSS JOIN` (SQLite's fixed join order), and full text (FTS5 `MATCH` or
//! `tsvector @@ tsquery`).
//!
//! On PostgreSQL every row of a resource also carries `pk`, the distribution key (the person,
//! or the resource itself when it belongs to no person), so that the tables can be distributed
//! by it (Citus): rows of one resource are matched on `(pk, rid)` ([`Sql::same_row`]). On a
//! distributed database ([`Target::distributed`]) a condition between two resources (a chain,
//! `_has`, an include) is an uncorrelated `(type, id) IN (…)` subquery rather than a join on
//! columns other than the key — the shapes a distributed planner can push down to the shards or
//! run as a separate step; on one PostgreSQL it stays a join, which the planner orders by cost
//! (the nested form made the benchmark's `_has` 3× slower there).
//!
//! PostgreSQL keeps the resources of the types that are never in a person's record
//! (Organization, Practitioner, Location, Medication, terminology and conformance resources:
//! [`Side::of`]) in tables of their own, `shared_resources` and `shared_sp_*`, which a
//! distributed database copies to every node (Citus reference tables), so that a person's
//! resource joins them on the person's own shard. The compiler writes each resource alias's
//! tables on its [`Side`]; where a query may meet both (a search across types, a chain or an
//! include whose targets are of both kinds) it writes a leg per side, `UNION ALL`ed. SQLite keeps
//! one set of tables ([`Target::shared_tables`] false): the same compiler writes the same
//! statements as before for it.
//!
//! Every value is a bound parameter ([`Arg`]); only fixed fragments, table and column names
//! and generated aliases are written into the text.
//!
//! **Invariant:** no driver here (the backends bind [`Arg`]s with their own).

mod conditions;
mod fulltext;
mod select;

pub use fulltext::{fts5_query, tsquery};
pub use select::{count, includes, link_breadth, select, token_systems};

use issho_search::{Phrase, TextField};
use std::collections::HashMap;

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// What a statement is compiled for: the dialect, and (when the backend knows them) the
/// database ids of the parameter keys, bound as numbers instead of looked up in `sp_param` by a
/// subquery — PostgreSQL's planner estimates a known id from its statistics, a subquery's
/// result only generically.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub dialect: Dialect,
    pub param_ids: Option<&'a HashMap<String, i64>>,
    /// The tables are distributed (Citus): conditions between resources as uncorrelated
    /// subqueries, no recursive query over an index table.
    pub distributed: bool,
    /// The store keeps the resources of shared types in the `shared_*` tables ([`Side`]).
    pub shared_tables: bool,
}

/// Which tables hold a resource's rows: those of persons' records (`resources`, `sp_*`,
/// distributed by the person), or the shared ones (`shared_resources`, `shared_sp_*`,
/// copied to every node) for the types that are never in a person's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Record,
    Shared,
}

impl Side {
    /// The side of a resource type: shared when no resource of the type can hold a patient's
    /// data (the R4 tables decide, as for the engine's ownership rule).
    pub fn of(resource_type: &str) -> Side {
        let r4 = issho_model::r4();
        if r4.is_resource_type(resource_type) && !r4.may_hold_patient_data(resource_type) {
            Side::Shared
        } else {
            Side::Record
        }
    }
    /// The name of the table `base` (`resources`, `sp_token`, …) on this side.
    pub fn table(self, base: &str) -> String {
        match self {
            Side::Record => base.to_string(),
            Side::Shared => format!("shared_{base}"),
        }
    }
}

impl From<Dialect> for Target<'static> {
    fn from(dialect: Dialect) -> Target<'static> {
        Target {
            dialect,
            param_ids: None,
            distributed: false,
            shared_tables: false,
        }
    }
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(i64),
    Real(f64),
    Text(String),
    /// Row keys (PostgreSQL: a `bigint[]`).
    Ints(Vec<i64>),
    /// Texts (PostgreSQL: a `text[]`).
    Texts(Vec<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::Real(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}

/// A statement being written: its text and bound values.
pub(crate) struct Sql<'a> {
    d: Dialect,
    ids: Option<&'a HashMap<String, i64>>,
    pub(crate) distributed: bool,
    split: bool,
    /// The side of the resource alias being written (see [`Sql::tab`]).
    pub(crate) side: Side,
    text: String,
    args: Vec<Arg>,
    next_alias: usize,
}

impl<'a> Sql<'a> {
    pub(crate) fn new(t: Target<'a>) -> Sql<'a> {
        Sql {
            d: t.dialect,
            ids: t.param_ids,
            distributed: t.distributed,
            split: t.shared_tables,
            side: Side::Record,
            text: String::new(),
            args: Vec::new(),
            next_alias: 0,
        }
    }
    pub(crate) fn finish(self) -> (String, Vec<Arg>) {
        match self.d {
            Dialect::Sqlite => (self.text, self.args),
            // `CROSS JOIN … ON` fixes SQLite's join order; PostgreSQL has no `ON` on a cross
            // join and orders joins by cost. (Only fixed fragments are in the text: every value
            // is bound, so this cannot touch a searched value.)
            Dialect::Postgres => (self.text.replace(" CROSS JOIN ", " JOIN "), self.args),
        }
    }
    /// The table `base` on the side of the alias being written.
    pub(crate) fn tab(&self, base: &str) -> String {
        self.tab_on(self.side, base)
    }
    /// The table `base` on `side` (on a store without shared tables, `base` itself).
    pub(crate) fn tab_on(&self, side: Side, base: &str) -> String {
        if self.split {
            side.table(base)
        } else {
            base.to_string()
        }
    }
    /// The sides the resources of `types` are on (every type when empty), in a fixed order;
    /// one side on a store without shared tables.
    pub(crate) fn sides(&self, types: &[String]) -> Vec<Side> {
        if !self.split {
            return vec![Side::Record];
        }
        let all = types.is_empty();
        [Side::Record, Side::Shared]
            .into_iter()
            .filter(|side| all || types.iter().any(|t| Side::of(t) == *side))
            .collect()
    }
    /// The types of `types` on `side` (all of them on a store without shared tables).
    pub(crate) fn types_on(&self, side: Side, types: &[String]) -> Vec<String> {
        types
            .iter()
            .filter(|t| !self.split || Side::of(t) == side)
            .cloned()
            .collect()
    }
    /// Write what follows for an alias on `side`; returns the side to restore.
    pub(crate) fn enter(&mut self, side: Side) -> Side {
        std::mem::replace(&mut self.side, side)
    }
    pub(crate) fn push(&mut self, s: &str) -> &mut Sql<'a> {
        self.text.push_str(s);
        self
    }
    pub(crate) fn bind(&mut self, v: impl Into<Arg>) -> &mut Sql<'a> {
        self.args.push(v.into());
        match self.d {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                let n = self.args.len();
                self.text.push_str(&format!("${n}"));
            }
        }
        self
    }
    /// An integer where nothing in the statement gives its type (a `VALUES` row):
    /// PostgreSQL would take it for text.
    pub(crate) fn bind_int(&mut self, v: i64) -> &mut Sql<'a> {
        self.bind(v);
        match self.d {
            Dialect::Sqlite => self,
            Dialect::Postgres => self.push("::bigint"),
        }
    }
    pub(crate) fn bind_list(&mut self, items: &[String]) -> &mut Sql<'a> {
        self.push("(");
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(it.clone());
        }
        self.push(")")
    }
    /// `(…)`: the row keys as one bound value, whatever their number (no variable limit).
    pub(crate) fn rid_list(&mut self, rids: &[i64]) -> &mut Sql<'a> {
        match self.d {
            Dialect::Sqlite => {
                let list = serde_json::Value::from(rids.to_vec()).to_string();
                self.push("(SELECT value FROM json_each(")
                    .bind(list)
                    .push("))")
            }
            Dialect::Postgres => self
                .push("(SELECT unnest(")
                .bind(Arg::Ints(rids.to_vec()))
                .push("::bigint[]))"),
        }
    }
    /// `(…)`: texts as one bound value.
    pub(crate) fn text_list(&mut self, items: &[String]) -> &mut Sql<'a> {
        match self.d {
            Dialect::Sqlite => {
                let list = serde_json::Value::from(items.to_vec()).to_string();
                self.push("(SELECT value FROM json_each(")
                    .bind(list)
                    .push("))")
            }
            Dialect::Postgres => self
                .push("(SELECT unnest(")
                .bind(Arg::Texts(items.to_vec()))
                .push("::text[]))"),
        }
    }
    /// `col` is the id of one of the parameter `keys` (ids are looked up in `sp_param`).
    pub(crate) fn param_in(&mut self, col: &str, keys: &[String]) -> &mut Sql<'a> {
        if let Some(ids) = self.ids {
            // A key the database has no id for has no rows: -1 is no id.
            let found: Vec<i64> = keys
                .iter()
                .map(|k| ids.get(k).copied().unwrap_or(-1))
                .collect();
            if let [id] = found.as_slice() {
                return self.push(&format!("{col} = ")).bind(*id);
            }
            self.push(&format!("{col} IN ("));
            for (i, id) in found.iter().enumerate() {
                if i > 0 {
                    self.push(", ");
                }
                self.bind(*id);
            }
            return self.push(")");
        }
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
    pub(crate) fn alias(&mut self, prefix: &str) -> String {
        self.next_alias += 1;
        format!("{prefix}{}", self.next_alias)
    }
    /// `col` such that SQLite's planner does not use an index on it (a unary `+` is not a
    /// column reference for it); PostgreSQL plans by cost and needs no such hint.
    pub(crate) fn no_index(&self, col: &str) -> String {
        match self.d {
            Dialect::Sqlite => format!("+{col}"),
            Dialect::Postgres => col.to_string(),
        }
    }
    /// The hint that makes SQLite read `table` by its `(rid, param)` index where the primary
    /// key does not lead to the rid.
    pub(crate) fn by_rid(&self, table: &str) -> &'static str {
        match (self.d, table.trim_start_matches("shared_")) {
            (Dialect::Sqlite, "sp_ref") => " INDEXED BY sp_ref_rid",
            (Dialect::Sqlite, "sp_date") => " INDEXED BY sp_date_rid",
            _ => "",
        }
    }
    /// `col` contains `value` (both normalised text).
    pub(crate) fn contains(&mut self, col: &str, value: &str) -> &mut Sql<'a> {
        match self.d {
            Dialect::Sqlite => self.push(&format!("instr({col}, ")),
            Dialect::Postgres => self.push(&format!("strpos({col}, ")),
        };
        self.bind(value.to_string()).push(") > 0")
    }
    /// ` LIMIT … OFFSET …` (no limit when `count` is `None`).
    pub(crate) fn limit(&mut self, count: Option<usize>, offset: usize) -> &mut Sql<'a> {
        match (self.d, count) {
            (_, Some(c)) => self
                .push(" LIMIT ")
                .bind(i64::try_from(c).unwrap_or(i64::MAX)),
            (Dialect::Sqlite, None) => self.push(" LIMIT -1"),
            (Dialect::Postgres, None) => self.push(" LIMIT ALL"),
        };
        self.push(" OFFSET ")
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
    }
    /// True on PostgreSQL, where rows carry the distribution key `pk`.
    pub(crate) fn keyed(&self) -> bool {
        self.d == Dialect::Postgres
    }
    /// `x` and `r` are rows of the same resource (`x.rid = r.rid`, and on PostgreSQL the same
    /// `pk`: a join a distributed planner keeps on one shard).
    pub(crate) fn same_row(&self, x: &str, r: &str) -> String {
        if self.keyed() {
            format!("{x}.pk = {r}.pk AND {x}.rid = {r}.rid")
        } else {
            format!("{x}.rid = {r}.rid")
        }
    }
    /// [`Sql::same_row`] for a full-text row `x` (SQLite keeps its row key as `rowid`).
    pub(crate) fn same_text_row(&self, x: &str, r: &str) -> String {
        if self.keyed() {
            self.same_row(x, r)
        } else {
            format!("{x}.rowid = {r}.rid")
        }
    }
    /// What identifies a resource's rows of alias `x`, as a select list (`x.rid`, or
    /// `x.pk, x.rid` on PostgreSQL).
    pub(crate) fn key_of(&self, x: &str) -> String {
        if self.keyed() {
            format!("{x}.pk, {x}.rid")
        } else {
            format!("{x}.rid")
        }
    }
    /// The left side of `IN (SELECT <key_of> …)`: `r.rid`, or `(r.pk, r.rid)`.
    pub(crate) fn key_in(&self, r: &str) -> String {
        if self.keyed() {
            format!("({r}.pk, {r}.rid)")
        } else {
            format!("{r}.rid")
        }
    }
    /// `x.<field>` matches the terms (alternatives ORed, phrases ANDed).
    pub(crate) fn text_match(
        &mut self,
        x: &str,
        field: TextField,
        terms: &[Vec<Phrase>],
    ) -> &mut Sql<'a> {
        let col = field.column();
        match self.d {
            Dialect::Sqlite => self
                .push(&format!("{x}.{col} MATCH "))
                .bind(fts5_query(terms)),
            Dialect::Postgres => self
                .push(&format!("{x}.{col} @@ "))
                .bind(tsquery(terms))
                .push("::text::tsquery"),
        }
    }
}

#[cfg(test)]
mod invariants {
    /// The compiler stays driver-free.
    #[test]
    fn no_database_dependency() {
        let manifest = include_str!("../Cargo.toml");
        for db in ["rusqlite", "postgres", "sqlx"] {
            assert!(
                !manifest.contains(db),
                "issho-store-sql must not depend on {db}"
            );
        }
    }
}

#[cfg(test)]
mod sides {
    use super::Side;

    /// The types docs/scaling.md names as shared are shared; those that can hold a patient's
    /// data (or any resource's reference) are in persons' records.
    #[test]
    fn shared_and_record_types() {
        for t in [
            "Organization",
            "Practitioner",
            "PractitionerRole",
            "Location",
            "Medication",
            "Substance",
            "CodeSystem",
            "ValueSet",
            "ConceptMap",
            "NamingSystem",
            "SearchParameter",
            "StructureDefinition",
        ] {
            assert_eq!(Side::of(t), Side::Shared, "{t}");
        }
        for t in [
            "Patient",
            "Observation",
            "Encounter",
            "Condition",
            "Device",
            "Group",
            "Bundle",
            "Provenance",
            "AuditEvent",
            "NotAType",
        ] {
            assert_eq!(Side::of(t), Side::Record, "{t}");
        }
        assert_eq!(Side::Shared.table("sp_token"), "shared_sp_token");
        assert_eq!(Side::Record.table("resources"), "resources");
    }
}
