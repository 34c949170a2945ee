//! The search index tables on PostgreSQL: the embedded store's tables and rows, each row with
//! its resource's distribution key `pk`
//! (`issho-store-sqlite/src/index.rs`), written in the resource's transaction.

use crate::args::{params, wrap};
use crate::conn::Conn as Client;
use issho_search::geo::unit_vector;
use issho_search::values::system_id;
use issho_search::{IndexRow, Prepared, Registry, Row, extract_in};
use issho_store_sql::{Arg, Side};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

type Result<T> = std::result::Result<T, postgres::Error>;

/// The value tables and their columns, as inserted (the full text is apart: `sp_text`).
pub(crate) const TABLES: [(&str, &str); 8] = [
    ("sp_token", "param, code, system, pk, rid, grp"),
    ("sp_string", "param, norm, exact, pk, rid, grp"),
    (
        "sp_ref",
        "param, ref_id, ref_type, url, version, pk, rid, grp",
    ),
    ("sp_date", "param, lo, hi, pk, rid, grp"),
    ("sp_number", "param, lo, hi, pk, rid, grp"),
    (
        "sp_quantity",
        "param, canon, code, lo, hi, system, unit, pk, rid, grp",
    ),
    ("sp_uri", "param, value, pk, rid, grp"),
    ("sp_geo", "param, lat, lon, x, y, z, pk, rid, grp"),
];

/// The primary-key columns of each table (what a row is deleted by).
const KEYS: [&str; 8] = [
    "param, code, system, pk, rid, grp",
    "param, norm, exact, pk, rid, grp",
    "param, ref_id, ref_type, url, version, pk, rid, grp",
    "param, lo, hi, pk, rid, grp",
    "param, lo, hi, pk, rid, grp",
    "param, canon, code, lo, hi, system, unit, pk, rid, grp",
    "param, value, pk, rid, grp",
    "param, lat, lon, pk, rid, grp",
];

/// Rows per insert statement: a table's rows go in chunks of these sizes (largest first), so
/// that few distinct statements are prepared.
const CHUNKS: [usize; 5] = [500, 100, 20, 5, 1];

/// The index rows of resources created in the current write job, inserted together when the
/// job reads, changes index rows, or ends ([`PgIndex::flush`]): one statement per table for
/// many resources instead of several per resource.
#[derive(Default)]
pub struct Staged {
    rows: Vec<(Key, Vec<IndexRow>)>,
}

/// A resource's rows' key: its side (which tables), its distribution key `pk` and its `rid`.
pub type Key = (Side, String, i64);

/// [`Key`], borrowed.
pub type At<'a> = (Side, &'a str, i64);

impl Staged {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// `sp_meta` name marking a key whose rows are still being built.
const PENDING: &str = "pending:";

fn table_of(row: &Row) -> Option<usize> {
    Some(match row {
        Row::Token { .. } => 0,
        Row::Str { .. } => 1,
        Row::Ref { .. } => 2,
        Row::Date { .. } => 3,
        Row::Number { .. } => 4,
        Row::Quantity { .. } => 5,
        Row::Uri(_) => 6,
        Row::Geo { .. } => 7,
        Row::Text { .. } => return None,
    })
}

/// The column values of a row (in the order of [`TABLES`]); `key_only`: those of [`KEYS`].
fn values(param: i64, (_, pk, rid): At<'_>, r: &IndexRow, key_only: bool, out: &mut Vec<Arg>) {
    out.push(Arg::Int(param));
    match &r.row {
        Row::Token { system, code } => {
            out.extend([Arg::from(code.as_str()), Arg::Int(system_id(system))])
        }
        Row::Str { norm, exact } => out.extend([Arg::from(norm.as_str()), exact.as_str().into()]),
        Row::Ref {
            ref_type,
            ref_id,
            version,
            url,
        } => out.extend([
            Arg::from(ref_id.as_str()),
            ref_type.as_str().into(),
            url.as_str().into(),
            version.as_str().into(),
        ]),
        Row::Date { lo, hi } => out.extend([Arg::Int(*lo), Arg::Int(*hi)]),
        Row::Number { lo, hi } => out.extend([Arg::Real(*lo), Arg::Real(*hi)]),
        Row::Quantity {
            canon,
            system,
            code,
            unit,
            lo,
            hi,
        } => out.extend([
            Arg::Int(*canon as i64),
            code.as_str().into(),
            Arg::Real(*lo),
            Arg::Real(*hi),
            Arg::Int(system_id(system)),
            unit.as_str().into(),
        ]),
        Row::Uri(v) => out.push(v.as_str().into()),
        Row::Geo { lat, lon } => {
            out.extend([Arg::Real(*lat), Arg::Real(*lon)]);
            if !key_only {
                let [x, y, z] = unit_vector(*lat, *lon);
                out.extend([Arg::Real(x), Arg::Real(y), Arg::Real(z)]);
            }
        }
        Row::Text { .. } => {}
    }
    out.extend([Arg::from(pk), Arg::Int(rid), Arg::Int(i64::from(r.grp))]);
}

/// `$a, $b, …` groups: `rows` groups of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let one: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", one.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// issho's tokens (space-separated) as a `tsvector` literal with their positions, so that a
/// phrase (`<->`) matches tokens that follow each other. Within PostgreSQL's limits: each
/// token once with its positions (at most 256, none past 16383), and a literal under 1 MB —
/// the tokens of a larger text (a StructureDefinition of JP-CLINS has 1 MB of them) past that
/// are not indexed, which the embedded store's full-text index has no need to do.
pub(crate) fn tsvector_text(tokens: &str) -> String {
    const MAX_LITERAL: usize = 1_000_000;
    const MAX_POSITIONS: usize = 256;
    let mut order: Vec<&str> = Vec::new();
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in tokens.split(' ').filter(|t| !t.is_empty()).enumerate() {
        let pos = (i + 1).min(16383);
        let p = positions.entry(t).or_insert_with(|| {
            order.push(t);
            Vec::new()
        });
        if p.len() < MAX_POSITIONS && p.last() != Some(&pos) {
            p.push(pos);
        }
    }
    let mut out = String::new();
    for t in order {
        let mut one = String::from('\'');
        one.push_str(&t.replace('\\', "\\\\").replace('\'', "''"));
        one.push_str("':");
        let ps: Vec<String> = positions[t].iter().map(usize::to_string).collect();
        one.push_str(&ps.join(","));
        if out.len() + one.len() + 1 > MAX_LITERAL {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&one);
    }
    out
}

/// The search index of one PostgreSQL database: the registry it writes and the database ids
/// of the parameter keys.
pub struct PgIndex {
    reg: Arc<Registry>,
    ids: Vec<i64>,
    /// The same ids by key, for the compiler (bound as numbers in queries).
    by_key: HashMap<String, i64>,
    pending: HashSet<u32>,
    /// The tables are distributed (Citus).
    distributed: bool,
}

impl PgIndex {
    /// Number the keys of the R4 registry plus those marked pending, and load their ids.
    pub fn open(c: &mut Client, distributed: bool) -> Result<PgIndex> {
        let reg = Registry::r4_shared().clone();
        let mut index = Self::number_keys(c, reg)?.0;
        index.distributed = distributed;
        Ok(index)
    }

    /// True when the tables are distributed (Citus).
    pub fn distributed(&self) -> bool {
        self.distributed
    }

    fn known_keys(c: &mut Client) -> Result<HashMap<String, i64>> {
        Ok(c.query("SELECT key, id FROM sp_param", &[])?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect())
    }

    fn number_keys(c: &mut Client, reg: Arc<Registry>) -> Result<(PgIndex, Vec<String>)> {
        let mut known = Self::known_keys(c)?;
        let added: Vec<String> = reg
            .keys()
            .iter()
            .filter(|k| !known.contains_key(*k))
            .cloned()
            .collect();
        if !added.is_empty() {
            // One statement for all of them: a fresh schema numbers thousands of keys, and on
            // Citus each statement on a reference table is a round of two-phase commit.
            c.execute(
                "INSERT INTO sp_param (key) SELECT unnest($1::text[]) ON CONFLICT (key) DO NOTHING",
                &[&added],
            )?;
            known = Self::known_keys(c)?;
        }
        let mut ids = Vec::with_capacity(reg.keys().len());
        for k in reg.keys() {
            let id = match known.get(k) {
                Some(id) => *id,
                // Removed again in between by another server's sync: numbered anew.
                None => c
                    .query_one(
                        "INSERT INTO sp_param (key) VALUES ($1) \
                         ON CONFLICT (key) DO UPDATE SET key = excluded.key RETURNING id",
                        &[k],
                    )?
                    .get(0),
            };
            ids.push(id);
        }
        let by_key = reg
            .keys()
            .iter()
            .cloned()
            .zip(ids.iter().copied())
            .collect();
        let index = PgIndex {
            reg,
            ids,
            by_key,
            pending: HashSet::new(),
            distributed: false,
        };
        Ok((index, added))
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.reg
    }

    /// The database id of every parameter key.
    pub fn key_ids(&self) -> &HashMap<String, i64> {
        &self.by_key
    }

    /// See `SqliteIndex::sync`: new keys are numbered and pending, keys no longer wanted lose
    /// their rows.
    pub fn sync(&self, c: &mut Client, reg: Registry) -> Result<PgIndex> {
        let wanted: HashSet<&str> = reg.keys().iter().map(String::as_str).collect();
        let spec: HashSet<&str> = Registry::r4().keys().iter().map(String::as_str).collect();
        for (k, id) in Self::known_keys(c)? {
            if wanted.contains(k.as_str()) || spec.contains(k.as_str()) {
                continue;
            }
            for (t, _) in TABLES {
                for side in [Side::Record, Side::Shared] {
                    let t = side.table(t);
                    c.execute(&format!("DELETE FROM {t} WHERE param = $1"), &[&id])?;
                }
            }
            c.execute("DELETE FROM sp_param WHERE id = $1", &[&id])?;
            c.execute(
                "DELETE FROM sp_meta WHERE name = $1",
                &[&format!("{PENDING}{k}")],
            )?;
        }
        let (_, added) = Self::number_keys(c, Arc::new(reg.clone()))?;
        for k in &added {
            c.execute(
                "INSERT INTO sp_meta (name, value) VALUES ($1, '1') ON CONFLICT (name) DO NOTHING",
                &[&format!("{PENDING}{k}")],
            )?;
        }
        let pending = Self::pending_keys(c)?;
        let mut reg = reg;
        reg.set_pending(&pending);
        let (mut index, _) = Self::number_keys(c, Arc::new(reg))?;
        index.distributed = self.distributed;
        index.pending = index
            .reg
            .keys()
            .iter()
            .enumerate()
            .filter(|(_, k)| pending.contains(*k))
            .map(|(i, _)| i as u32)
            .collect();
        Ok(index)
    }

    pub fn pending_keys(c: &mut Client) -> Result<HashSet<String>> {
        Ok(
            c.query("SELECT name FROM sp_meta WHERE name LIKE 'pending:%'", &[])?
                .iter()
                .map(|r| r.get::<_, String>(0)[PENDING.len()..].to_string())
                .collect(),
        )
    }

    pub fn pending(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .pending
            .iter()
            .map(|&n| self.reg.keys()[n as usize].clone())
            .collect();
        v.sort();
        v
    }

    pub fn reindex(&self, c: &mut Client, key: At<'_>, resource: &Value) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = extract_in(&self.reg, resource);
        let todo: Vec<&IndexRow> = rows
            .iter()
            .filter(|r| self.pending.contains(&r.key))
            .collect();
        self.insert_rows(c, key, todo)
    }

    pub fn finish(&self, c: &mut Client, keys: &[String]) -> Result<PgIndex> {
        for k in keys {
            c.execute(
                "DELETE FROM sp_meta WHERE name = $1",
                &[&format!("{PENDING}{k}")],
            )?;
        }
        let mut reg = (*self.reg).clone();
        reg.set_pending(&HashSet::new());
        self.sync(c, reg)
    }

    pub fn insert(&self, c: &mut Client, key: At<'_>, resource: &Value) -> Result<()> {
        let rows = extract_in(&self.reg, resource);
        self.insert_rows(c, key, rows.iter().collect())
    }

    fn insert_rows(&self, c: &mut Client, key: At<'_>, rows: Vec<&IndexRow>) -> Result<()> {
        self.insert_many(c, rows.into_iter().map(|r| (key, r)))
    }

    /// Stage the rows of a resource just created (no rows yet): inserted at the next
    /// [`PgIndex::flush`].
    pub fn stage(
        &self,
        staged: &mut Staged,
        (side, pk, rid): At<'_>,
        resource: &Value,
        prepared: Option<Prepared>,
    ) {
        let rows = match prepared {
            Some(p) if p.is_for(&self.reg) => p.rows().to_vec(),
            _ => extract_in(&self.reg, resource),
        };
        staged.rows.push(((side, pk.to_string(), rid), rows));
    }

    /// Insert the staged rows.
    pub fn flush(&self, c: &mut Client, staged: &mut Staged) -> Result<()> {
        let rows = std::mem::take(&mut staged.rows);
        self.insert_many(
            c,
            rows.iter().flat_map(|((side, pk, rid), rows)| {
                rows.iter().map(move |r| ((*side, pk.as_str(), *rid), r))
            }),
        )
    }

    /// Insert rows of any resources, several per statement.
    fn insert_many<'r>(
        &self,
        c: &mut Client,
        rows: impl Iterator<Item = (At<'r>, &'r IndexRow)>,
    ) -> Result<()> {
        let mut by_table: [Vec<(At<'_>, &IndexRow)>; 8] = Default::default();
        let mut texts: Vec<(At<'_>, &IndexRow)> = Vec::new();
        for (key, r) in rows {
            match table_of(&r.row) {
                Some(t) => by_table[t].push((key, r)),
                None => texts.push((key, r)),
            }
        }
        let mut args: Vec<Arg> = Vec::new();
        for (t, rows) in by_table.iter_mut().enumerate() {
            let (table, cols) = TABLES[t];
            let ncols = cols.split(", ").count();
            // The rows of each side together (mostly one side per job).
            rows.sort_by_key(|((side, ..), _)| *side == Side::Shared);
            let mut rest: &[(At<'_>, &IndexRow)] = rows;
            while !rest.is_empty() {
                let n = CHUNKS
                    .iter()
                    .copied()
                    .find(|&c| c <= rest.len())
                    .unwrap_or(1);
                let side = rest[0].0.0;
                let n = n.min(rest.iter().take_while(|((s, ..), _)| *s == side).count());
                let n = CHUNKS.iter().copied().find(|&c| c <= n).unwrap_or(1);
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                let table = side.table(table);
                args.clear();
                for (key, r) in chunk {
                    values(self.ids[r.key as usize], *key, r, false, &mut args);
                }
                let sql = format!(
                    "INSERT INTO {table} ({cols}) VALUES {} ON CONFLICT DO NOTHING",
                    placeholders(n, ncols)
                );
                let bound = wrap(&args);
                c.execute(&sql, &params(&bound))?;
            }
        }
        for (key, r) in texts {
            self.write_text(c, key, r, true)?;
        }
        Ok(())
    }

    /// Replace the rows of `previous` by those of `resource` (only the rows that differ).
    pub fn replace(
        &self,
        c: &mut Client,
        key: At<'_>,
        previous: &Value,
        resource: &Value,
    ) -> Result<()> {
        let old = extract_in(&self.reg, previous);
        let new = extract_in(&self.reg, resource);
        let mut added = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let ord = match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    self.delete_row(c, key, &old[i])?;
                    i += 1;
                }
                Ordering::Greater => {
                    added.push(&new[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            }
        }
        self.insert_rows(c, key, added)
    }

    pub fn remove(&self, c: &mut Client, key: At<'_>, previous: &Value) -> Result<()> {
        for r in extract_in(&self.reg, previous) {
            self.delete_row(c, key, &r)?;
        }
        Ok(())
    }

    pub fn remove_all(&self, c: &mut Client, (side, pk, rid): At<'_>) -> Result<()> {
        for t in TABLES.iter().map(|(t, _)| *t).chain(["sp_text"]) {
            let t = side.table(t);
            c.execute(
                &format!("DELETE FROM {t} WHERE pk = $1 AND rid = $2"),
                &[&pk, &rid],
            )?;
        }
        Ok(())
    }

    fn delete_row(&self, c: &mut Client, key: At<'_>, r: &IndexRow) -> Result<()> {
        let Some(t) = table_of(&r.row) else {
            return self.write_text(c, key, r, false);
        };
        let mut args = Vec::new();
        values(self.ids[r.key as usize], key, r, true, &mut args);
        let cond: Vec<String> = KEYS[t]
            .split(", ")
            .enumerate()
            .map(|(i, col)| format!("{col} = ${}", i + 1))
            .collect();
        let sql = format!(
            "DELETE FROM {} WHERE {}",
            key.0.table(TABLES[t].0),
            cond.join(" AND ")
        );
        let bound = wrap(&args);
        c.execute(&sql, &params(&bound))?;
        Ok(())
    }

    fn write_text(
        &self,
        c: &mut Client,
        (side, pk, rid): At<'_>,
        r: &IndexRow,
        insert: bool,
    ) -> Result<()> {
        let Row::Text { narrative, content } = &r.row else {
            return Ok(());
        };
        let table = side.table("sp_text");
        if insert {
            c.execute(
                &format!("INSERT INTO {table} (pk, rid, narrative, content) \
                 VALUES ($1, $2, $3::text::tsvector, $4::text::tsvector) \
                 ON CONFLICT (pk, rid) DO UPDATE SET narrative = excluded.narrative, content = excluded.content"),
                &[&pk, &rid, &tsvector_text(narrative), &tsvector_text(content)],
            )?;
        } else {
            c.execute(
                &format!("DELETE FROM {table} WHERE pk = $1 AND rid = $2"),
                &[&pk, &rid],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsvector_literals_keep_positions_and_quote() {
        assert_eq!(
            tsvector_text("型糖 糖尿 尿病 病"),
            "'型糖':1 '糖尿':2 '尿病':3 '病':4"
        );
        assert_eq!(tsvector_text(""), "");
        assert_eq!(tsvector_text("a b a"), "'a':1,3 'b':2");
        // A huge text stays under PostgreSQL's 1 MB literal.
        let huge: String = (0..400_000).map(|i| format!("w{i} ")).collect();
        let t = tsvector_text(&huge);
        assert!(
            t.len() <= 1_000_000 && t.starts_with("'w0':1 'w1':2"),
            "{}",
            t.len()
        );
        assert_eq!(tsvector_text("it's a\\b"), "'it''s':1 'a\\\\b':2");
    }

    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
