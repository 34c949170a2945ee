//! Reads, shared by the pooled readers and the writer's transaction: current and past
//! versions, history windows, row keys and persons, settings.

use crate::conn::Conn;
use issho_store::*;
use issho_store_sql::Side;
use postgres::Row;
use postgres::types::ToSql;

fn stored(r: &Row, t: Option<&str>, id: Option<&str>) -> Stored {
    Stored {
        rid: r.get("rid"),
        resource_type: t.map(str::to_string).unwrap_or_else(|| r.get("type")),
        id: id.map(str::to_string).unwrap_or_else(|| r.get("id")),
        version: r.get::<_, i64>("version") as u64,
        last_updated: r.get("last_updated"),
        body: r.get("body"),
        method: r.get("method"),
        person: r.get("person"),
    }
}

/// Where the rows of `t/id` are, so that a read by id goes to one shard of a distributed
/// database: `None` when there is no such resource, `Some(None)` when the tables are not
/// distributed (the `(type, id)` index answers at once).
pub(crate) type Route = Option<Option<String>>;

pub(crate) fn route(c: &mut Conn, distributed: bool, t: &str, id: &str) -> Result<Route> {
    // A shared resource is on every node: its `(type, id)` index answers there.
    if !distributed || Side::of(t) == Side::Shared {
        return Ok(Some(None));
    }
    Ok(c.query_opt(
        "SELECT pk FROM resource_ids WHERE id = $1 AND type = $2",
        &[&id, &t],
    )?
    .map(|r| Some(r.get(0))))
}

/// One row by `type = $1 AND id = $2` (and `pk`, when routed): `sql` ends with its conditions.
fn by_id(
    c: &mut Conn,
    route: Option<String>,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let mut all: Vec<&(dyn ToSql + Sync)> = args.to_vec();
    match &route {
        Some(pk) => {
            all.push(pk);
            let sql = format!("{sql} AND r.pk = ${}", all.len());
            Ok(c.query_opt(&sql, &all)?)
        }
        None => Ok(c.query_opt(sql, &all)?),
    }
}

pub(crate) fn read_current(c: &mut Conn, d: bool, t: &str, id: &str) -> Result<Option<Stored>> {
    let Some(route) = route(c, d, t, id)? else {
        return Ok(None);
    };
    Ok(by_id(
        c,
        route,
        &format!(
            "SELECT r.rid, r.version, r.last_updated, r.body, h.method, r.person FROM {} r \
             JOIN history h ON h.pk = r.pk AND h.rid = r.rid AND h.version = r.version \
             WHERE r.type = $1 AND r.id = $2",
            Side::of(t).table("resources")
        ),
        &[&t, &id],
    )?
    .map(|r| stored(&r, Some(t), Some(id))))
}

pub(crate) fn read_version(
    c: &mut Conn,
    d: bool,
    t: &str,
    id: &str,
    v: u64,
) -> Result<Option<Stored>> {
    let Some(route) = route(c, d, t, id)? else {
        return Ok(None);
    };
    Ok(by_id(
        c,
        route,
        &format!(
            "SELECT r.rid, h.version, h.last_updated, \
             CASE WHEN h.deleted <> 0 THEN NULL WHEN h.version = r.version THEN r.body ELSE h.body END AS body, \
             h.method, r.person FROM {} r JOIN history h ON h.pk = r.pk AND h.rid = r.rid \
             WHERE h.version = $3 AND r.type = $1 AND r.id = $2",
            Side::of(t).table("resources")
        ),
        &[&t, &id, &(v as i64)],
    )?
    .map(|r| stored(&r, Some(t), Some(id))))
}

pub(crate) fn read_max_seq(c: &mut Conn) -> Result<i64> {
    Ok(
        c.query_one("SELECT coalesce(max(seq), 0)::bigint FROM history", &[])?
            .get(0),
    )
}

pub(crate) fn read_history(c: &mut Conn, q: &HistoryQuery) -> Result<(Vec<Stored>, u64)> {
    let mut where_ = vec!["1 = 1".to_string()];
    let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut arg = |v: Box<dyn ToSql + Sync>| {
        args.push(v);
        args.len()
    };
    let sides = match &q.scope {
        HistoryScope::System => vec![Side::Record, Side::Shared],
        HistoryScope::Type(t) | HistoryScope::Instance(t, _) => vec![Side::of(t)],
    };
    match &q.scope {
        HistoryScope::System => {}
        HistoryScope::Type(t) => where_.push(format!("r.type = ${}", arg(Box::new(t.clone())))),
        HistoryScope::Instance(t, id) => {
            where_.push(format!("r.type = ${}", arg(Box::new(t.clone()))));
            where_.push(format!("r.id = ${}", arg(Box::new(id.clone()))));
        }
    }
    if let Some(s) = q.since {
        where_.push(format!("h.last_updated >= ${}", arg(Box::new(s))));
    }
    if let Some((lo, hi)) = q.at {
        let nh = arg(Box::new(hi));
        let nl = arg(Box::new(lo));
        where_.push(format!(
            "h.last_updated <= ${nh} AND NOT EXISTS (SELECT 1 FROM history h2 WHERE h2.pk = h.pk AND h2.rid = h.rid \
             AND h2.version = h.version + 1 AND h2.last_updated <= ${nl})"
        ));
    }
    if let Some(m) = q.max_seq {
        where_.push(format!("h.seq <= ${}", arg(Box::new(m))));
    }
    let cond = where_.join(" AND ");
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|b| b.as_ref()).collect();
    // A leg per side (the history of shared resources joins their own table).
    let legs = |select: &str| -> String {
        sides
            .iter()
            .map(|side| {
                format!(
                    "SELECT {select} FROM history h JOIN {} r ON r.pk = h.pk AND r.rid = h.rid \
                     WHERE {cond}",
                    side.table("resources")
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let total: i64 = c
        .query_one(
            &format!(
                "SELECT coalesce(sum(n), 0)::bigint FROM ({}) u",
                legs("count(*) AS n")
            ),
            &refs,
        )?
        .get(0);
    let n = refs.len();
    // "No limit" arrives as a huge count.
    let count = i64::try_from(q.count).unwrap_or(i64::MAX);
    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
    let mut page = refs.clone();
    page.push(&count);
    page.push(&offset);
    let sql = format!(
        "SELECT * FROM ({}) u ORDER BY seq DESC LIMIT ${} OFFSET ${}",
        legs(VERSION_COLUMNS),
        n + 1,
        n + 2
    );
    let rows = c
        .query(&sql, &page)?
        .iter()
        .map(|r| stored(r, None, None))
        .collect();
    Ok((rows, total as u64))
}

/// The columns of a version read from `history h` joined with its resource `r`.
const VERSION_COLUMNS: &str = "h.seq, r.rid, r.type, r.id, h.version, h.last_updated, \
     CASE WHEN h.deleted <> 0 THEN NULL WHEN h.version = r.version THEN r.body ELSE h.body END AS body, \
     h.method, r.person";

pub(crate) fn max_rid(c: &mut Conn) -> Result<i64> {
    Ok(c.query_one(
        "SELECT greatest((SELECT coalesce(max(rid), 0) FROM resources), \
             (SELECT coalesce(max(rid), 0) FROM shared_resources))::bigint",
        &[],
    )?
    .get(0))
}

pub(crate) fn count_current(c: &mut Conn, types: &[String]) -> Result<u64> {
    if types.is_empty() {
        return Ok(0);
    }
    let n: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM resources WHERE deleted = 0 AND type = ANY($1)) \
             + (SELECT count(*) FROM shared_resources WHERE deleted = 0 AND type = ANY($1))",
            &[&types],
        )?
        .get(0);
    Ok(n as u64)
}

pub(crate) fn persons_by_rids(c: &mut Conn, rids: &[i64]) -> Result<Vec<String>> {
    let rows = c.query(
        "SELECT person FROM (SELECT r.person, k.n FROM resources r \
         JOIN unnest($1::bigint[]) WITH ORDINALITY AS k(rid, n) \
         ON k.rid = r.rid WHERE r.deleted = 0 AND r.person IS NOT NULL \
         UNION ALL SELECT r.person, k.n FROM shared_resources r \
         JOIN unnest($1::bigint[]) WITH ORDINALITY AS k(rid, n) \
         ON k.rid = r.rid WHERE r.deleted = 0 AND r.person IS NOT NULL) u ORDER BY n",
        &[&rids],
    )?;
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        let p: String = r.get(0);
        if seen.insert(p.clone()) {
            out.push(p);
        }
    }
    Ok(out)
}

pub(crate) fn current_by_rids(c: &mut Conn, rids: &[i64]) -> Result<Vec<Stored>> {
    let leg = |res: &str| {
        format!(
            "SELECT k.n, r.rid, r.type, r.id, r.version, r.last_updated, r.body, h.method, r.person \
             FROM unnest($1::bigint[]) WITH ORDINALITY AS k(rid, n) \
             JOIN {res} r ON r.rid = k.rid \
             JOIN history h ON h.pk = r.pk AND h.rid = r.rid AND h.version = r.version \
             WHERE r.deleted = 0"
        )
    };
    Ok(c.query(
        &format!(
            "SELECT * FROM ({} UNION ALL {}) u ORDER BY n",
            leg("resources"),
            leg("shared_resources")
        ),
        &[&rids],
    )?
    .iter()
    .map(|r| stored(r, None, None))
    .collect())
}

pub(crate) fn person_of(
    c: &mut Conn,
    d: bool,
    t: &str,
    id: &str,
) -> Result<Option<Option<String>>> {
    let Some(route) = route(c, d, t, id)? else {
        return Ok(None);
    };
    Ok(by_id(
        c,
        route,
        &format!(
            "SELECT r.person FROM {} r WHERE r.deleted = 0 AND r.type = $1 AND r.id = $2",
            Side::of(t).table("resources")
        ),
        &[&t, &id],
    )?
    .map(|r| r.get(0)))
}

/// The persons of many resources: one query per side and 1,000 ids (by `id = ANY`, which
/// Citus sends to every shard at once), matched to `(type, id)` here.
pub(crate) fn persons_of(
    c: &mut Conn,
    resources: &[(String, String)],
) -> Result<Vec<Option<Option<String>>>> {
    let mut found: std::collections::HashMap<(String, String), Option<String>> =
        std::collections::HashMap::new();
    for side in [Side::Record, Side::Shared] {
        let ids: Vec<&str> = resources
            .iter()
            .filter(|(t, _)| Side::of(t) == side)
            .map(|(_, id)| id.as_str())
            .collect();
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT r.type, r.id, r.person FROM {} r WHERE r.deleted = 0 AND r.id = ANY($1)",
                side.table("resources")
            );
            for row in c.query(&sql, &[&chunk])? {
                found.insert((row.get(0), row.get(1)), row.get(2));
            }
        }
    }
    Ok(resources.iter().map(|k| found.get(k).cloned()).collect())
}

pub(crate) fn meta(c: &mut Conn, key: &str) -> Result<Option<String>> {
    Ok(
        c.query_opt("SELECT value FROM store_meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)),
    )
}

pub(crate) fn state(c: &mut Conn, d: bool, t: &str, id: &str) -> Result<Option<(u64, bool)>> {
    let Some(route) = route(c, d, t, id)? else {
        return Ok(None);
    };
    Ok(by_id(
        c,
        route,
        &format!(
            "SELECT r.version, r.deleted FROM {} r WHERE r.type = $1 AND r.id = $2",
            Side::of(t).table("resources")
        ),
        &[&t, &id],
    )?
    .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i32>(1) != 0)))
}

pub(crate) fn versions(c: &mut Conn, after_seq: i64, limit: usize) -> Result<Vec<(i64, Stored)>> {
    let leg = |res: &str| {
        format!(
            "(SELECT {VERSION_COLUMNS} FROM history h JOIN {res} r ON r.pk = h.pk AND r.rid = h.rid \
             WHERE h.seq > $1 ORDER BY h.seq LIMIT $2)"
        )
    };
    Ok(c.query(
        &format!(
            "SELECT * FROM ({} UNION ALL {}) u ORDER BY seq LIMIT $2",
            leg("resources"),
            leg("shared_resources")
        ),
        &[&after_seq, &i64::try_from(limit).unwrap_or(i64::MAX)],
    )?
    .iter()
    .map(|r| (r.get::<_, i64>("seq"), stored(r, None, None)))
    .collect())
}

pub(crate) fn settings(c: &mut Conn) -> Result<Vec<(String, String)>> {
    Ok(
        c.query("SELECT key, value FROM store_meta ORDER BY key", &[])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    )
}
