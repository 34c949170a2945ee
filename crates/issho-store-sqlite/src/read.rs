//! Reads of the embedded store, shared by the pooled readers and the writer's transaction:
//! current and past versions, history windows, index queries, row keys and persons.

use issho_store::*;
use rusqlite::{Connection, OptionalExtension, params};

pub(super) fn read_current(conn: &Connection, t: &str, id: &str) -> Result<Option<Stored>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.rid, r.version, r.last_updated, r.body, h.method, r.person FROM resources r \
             JOIN history h ON h.rid = r.rid AND h.version = r.version WHERE r.type = ?1 AND r.id = ?2",
        )?
        .query_row(params![t, id], |r| {
            Ok(Stored {
                rid: r.get(0)?,
                version: r.get(1)?,
                last_updated: r.get(2)?,
                body: r.get(3)?,
                method: r.get(4)?,
                resource_type: t.to_string(),
                id: id.to_string(),
                person: r.get(5)?,
            })
        })
        .optional()?)
}

pub(super) fn read_version(conn: &Connection, t: &str, id: &str, v: u64) -> Result<Option<Stored>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.rid, h.last_updated, CASE WHEN h.version = r.version THEN r.body ELSE h.body END, \
             h.method, h.deleted, r.person FROM resources r JOIN history h ON h.rid = r.rid \
             WHERE r.type = ?1 AND r.id = ?2 AND h.version = ?3",
        )?
        .query_row(params![t, id, v], |r| {
            let deleted: i64 = r.get(4)?;
            Ok(Stored {
                rid: r.get(0)?,
                version: v,
                last_updated: r.get(1)?,
                body: if deleted != 0 { None } else { r.get(2)? },
                method: r.get(3)?,
                resource_type: t.to_string(),
                id: id.to_string(),
                person: r.get(5)?,
            })
        })
        .optional()?)
}

pub(super) fn read_max_seq(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT coalesce(max(seq), 0) FROM history", [], |r| {
            r.get(0)
        })?,
    )
}

pub(super) fn read_history(conn: &Connection, q: &HistoryQuery) -> Result<(Vec<Stored>, u64)> {
    let mut where_ = vec!["1 = 1".to_string()];
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    match &q.scope {
        HistoryScope::System => {}
        HistoryScope::Type(t) => {
            args.push(t.clone().into());
            where_.push(format!("r.type = ?{}", args.len()));
        }
        HistoryScope::Instance(t, id) => {
            args.push(t.clone().into());
            where_.push(format!("r.type = ?{}", args.len()));
            args.push(id.clone().into());
            where_.push(format!("r.id = ?{}", args.len()));
        }
    }
    if let Some(s) = q.since {
        args.push(s.into());
        where_.push(format!("h.last_updated >= ?{}", args.len()));
    }
    if let Some((lo, hi)) = q.at {
        args.push(hi.into());
        let nh = args.len();
        args.push(lo.into());
        let nl = args.len();
        where_.push(format!(
            "h.last_updated <= ?{nh} AND NOT EXISTS (SELECT 1 FROM history h2 WHERE h2.rid = h.rid \
             AND h2.version = h.version + 1 AND h2.last_updated <= ?{nl})"
        ));
    }
    if let Some(m) = q.max_seq {
        args.push(m.into());
        where_.push(format!("h.seq <= ?{}", args.len()));
    }
    let cond = where_.join(" AND ");
    let total: u64 = conn.query_row(
        &format!("SELECT count(*) FROM history h JOIN resources r ON r.rid = h.rid WHERE {cond}"),
        rusqlite::params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    args.push((q.count as i64).into());
    args.push((q.offset as i64).into());
    let sql = format!(
        "SELECT r.rid, r.type, r.id, h.version, h.last_updated, \
         CASE WHEN h.deleted = 1 THEN NULL WHEN h.version = r.version THEN r.body ELSE h.body END, h.method, r.person \
         FROM history h JOIN resources r ON r.rid = h.rid WHERE {cond} ORDER BY h.seq DESC LIMIT ?{} OFFSET ?{}",
        args.len() - 1,
        args.len()
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok(Stored {
                rid: r.get(0)?,
                resource_type: r.get(1)?,
                id: r.get(2)?,
                version: r.get(3)?,
                last_updated: r.get(4)?,
                body: r.get(5)?,
                method: r.get(6)?,
                person: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

pub(super) fn query_rids(
    conn: &Connection,
    sql: &str,
    p: &[rusqlite::types::Value],
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(p.iter()), |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}

pub(super) fn explain(
    conn: &Connection,
    sql: &str,
    p: &[rusqlite::types::Value],
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(p.iter()), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    // Indent each step under its parent.
    let mut depth: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for row in rows {
        let (id, parent, detail) = row?;
        let d = depth.get(&parent).map(|d| d + 1).unwrap_or(0);
        depth.insert(id, d);
        out.push(format!("{}{detail}", "  ".repeat(d)));
    }
    Ok(out)
}

pub(super) fn query_count(
    conn: &Connection,
    sql: &str,
    p: &[rusqlite::types::Value],
) -> Result<u64> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row(rusqlite::params_from_iter(p.iter()), |r| r.get(0))?)
}

pub(super) fn max_rid(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT coalesce(max(rid), 0) FROM resources", [], |r| {
            r.get(0)
        })?,
    )
}

pub(super) fn count_current(conn: &Connection, types: &[String]) -> Result<u64> {
    if types.is_empty() {
        return Ok(0);
    }
    let marks = vec!["?"; types.len()].join(", ");
    Ok(conn.query_row(
        &format!("SELECT count(*) FROM resources WHERE deleted = 0 AND type IN ({marks})"),
        rusqlite::params_from_iter(types.iter()),
        |r| r.get(0),
    )?)
}

pub(super) fn persons_by_rids(conn: &Connection, rids: &[i64]) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT person FROM resources WHERE rid = ?1 AND deleted = 0 AND person IS NOT NULL",
    )?;
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &rid in rids {
        if let Some(p) = stmt
            .query_row([rid], |r| r.get::<_, String>(0))
            .optional()?
            && seen.insert(p.clone())
        {
            out.push(p);
        }
    }
    Ok(out)
}

pub(super) fn current_by_rids(conn: &Connection, rids: &[i64]) -> Result<Vec<Stored>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.type, r.id, r.version, r.last_updated, r.body, h.method, r.person FROM resources r \
         JOIN history h ON h.rid = r.rid AND h.version = r.version WHERE r.rid = ?1 AND r.deleted = 0",
    )?;
    let mut out = Vec::with_capacity(rids.len());
    for &rid in rids {
        if let Some(s) = stmt
            .query_row([rid], |r| {
                Ok(Stored {
                    rid,
                    resource_type: r.get(0)?,
                    id: r.get(1)?,
                    version: r.get(2)?,
                    last_updated: r.get(3)?,
                    body: r.get(4)?,
                    method: r.get(5)?,
                    person: r.get(6)?,
                })
            })
            .optional()?
        {
            out.push(s);
        }
    }
    Ok(out)
}

pub(super) fn versions(
    conn: &Connection,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<(i64, Stored)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT h.seq, r.rid, r.type, r.id, h.version, h.last_updated, \
         CASE WHEN h.deleted = 1 THEN NULL WHEN h.version = r.version THEN r.body ELSE h.body END, \
         h.method, r.person FROM history h JOIN resources r ON r.rid = h.rid \
         WHERE h.seq > ?1 ORDER BY h.seq LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![after_seq, limit as i64], |r| {
            Ok((
                r.get(0)?,
                Stored {
                    rid: r.get(1)?,
                    resource_type: r.get(2)?,
                    id: r.get(3)?,
                    version: r.get(4)?,
                    last_updated: r.get(5)?,
                    body: r.get(6)?,
                    method: r.get(7)?,
                    person: r.get(8)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
