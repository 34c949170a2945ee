//! The writer's transaction: new versions, deletions, re-keying, settings, search-parameter
//! changes.

use super::*;
use issho_store_sql::Side;
use serde_json::Value;

/// The row of a resource as the writer finds it.
pub(crate) struct Head {
    side: Side,
    pk: String,
    rid: i64,
    version: u64,
    deleted: bool,
    last_updated: i64,
}

/// What writing a version did.
struct Written {
    side: Side,
    pk: String,
    rid: i64,
    /// None, or only a deletion, was there.
    created: bool,
    /// The body of the superseded version, when that was not a deletion.
    previous: Option<Vec<u8>>,
    /// The distribution key the resource's rows had before, when it changed (its index rows
    /// are still under it).
    moved_from: Option<String>,
}

/// The distribution key of a resource: its person, or itself when it is in no one's record
/// (`Type/id` cannot be a person's id: ids have no `/`).
pub(crate) fn pk_for(t: &str, id: &str, person: Option<&str>) -> String {
    match person {
        Some(p) => p.to_string(),
        None => format!("{t}/{id}"),
    }
}

impl WriterTx<'_> {
    /// The row of a resource, its identity held for this transaction (see `writer.rs`; its
    /// row in `resource_ids`, which says where the resource's rows are, is locked too).
    fn head(&self, t: &str, id: &str) -> Result<Option<Head>> {
        self.hold_identity(t, id)?;
        let pk: Option<String> = self
            .conn()
            .query_opt(
                "SELECT pk FROM resource_ids WHERE id = $1 AND type = $2 FOR UPDATE",
                &[&id, &t],
            )?
            .map(|r| r.get(0));
        let Some(pk) = pk else {
            return Ok(None);
        };
        let side = Side::of(t);
        let row = self.conn().query_opt(
            &format!(
                "SELECT rid, version, deleted, last_updated FROM {} \
                 WHERE pk = $1 AND type = $2 AND id = $3",
                side.table("resources")
            ),
            &[&pk, &t, &id],
        )?;
        Ok(row.map(|r| Head {
            side,
            pk,
            rid: r.get(0),
            version: r.get::<_, i64>(1) as u64,
            deleted: r.get::<_, i32>(2) != 0,
            last_updated: r.get(3),
        }))
    }

    /// The time of a new version: this process's clock, and later than the version it
    /// supersedes (written perhaps by another process whose clock is ahead).
    fn time_after(&self, head: Option<&Head>) -> i64 {
        let t = self.w.tick();
        match head {
            Some(h) if h.last_updated >= t => {
                self.w
                    .clock
                    .fetch_max(h.last_updated + 1, Ordering::Relaxed);
                h.last_updated + 1
            }
            _ => t,
        }
    }

    /// Move the current body of `rid` into its history row before it is replaced; returns it.
    fn retire_current(&self, h: &Head) -> Result<Option<Vec<u8>>> {
        let (pk, rid, version) = (&h.pk, h.rid, h.version);
        let mut c = self.conn();
        let body: Option<Vec<u8>> = c
            .query_one(
                &format!(
                    "SELECT body FROM {} WHERE pk = $1 AND rid = $2",
                    h.side.table("resources")
                ),
                &[&pk, &rid],
            )?
            .get(0);
        c.execute(
            "UPDATE history SET body = $4 WHERE pk = $1 AND rid = $2 AND version = $3",
            &[&pk, &rid, &(version as i64), &body],
        )?;
        Ok(body)
    }

    /// Give the rows of `rid` (its resource row, every history row, its identity) the key
    /// `to`: a distributed table cannot change a row's key in place, so they are copied and
    /// deleted. The index rows are the caller's (they are rewritten anyway).
    fn move_rows(&self, side: Side, from: &str, to: &str, rid: i64) -> Result<()> {
        let mut c = self.conn();
        let res = side.table("resources");
        c.execute(
            &format!(
                "INSERT INTO {res} (pk, rid, type, id, version, last_updated, deleted, person, body) \
                 SELECT $2, rid, type, id, version, last_updated, deleted, person, body \
                 FROM {res} WHERE pk = $1 AND rid = $3"
            ),
            &[&from, &to, &rid],
        )?;
        let ident = c.query_one(
            &format!("DELETE FROM {res} WHERE pk = $1 AND rid = $2 RETURNING type, id"),
            &[&from, &rid],
        )?;
        let (t, id): (String, String) = (ident.get(0), ident.get(1));
        c.execute(
            "INSERT INTO history (pk, seq, rid, version, last_updated, method, deleted, body) \
             SELECT $2, seq, rid, version, last_updated, method, deleted, body \
             FROM history WHERE pk = $1 AND rid = $3",
            &[&from, &to, &rid],
        )?;
        c.execute(
            "DELETE FROM history WHERE pk = $1 AND rid = $2",
            &[&from, &rid],
        )?;
        c.execute(
            "UPDATE resource_ids SET pk = $3 WHERE id = $1 AND type = $2",
            &[&id, &t, &to],
        )?;
        Ok(())
    }

    /// Write the rows of a new version of `t/id` (the resource's row, superseding its current
    /// version, and a history row); `body` `None` is a deletion marker.
    #[allow(clippy::too_many_arguments)]
    fn write_version(
        &self,
        existing: Option<Head>,
        (t, id): (&str, &str),
        version: u64,
        ts: i64,
        method: &str,
        person: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Written> {
        let deleted = i32::from(body.is_none());
        let v = version as i64;
        let pk = pk_for(t, id, person);
        let side = Side::of(t);
        let res = side.table("resources");
        let mut previous = None;
        let mut moved_from = None;
        let (rid, created) = match existing {
            Some(h) => {
                let retired = self.retire_current(&h)?;
                if !h.deleted {
                    previous = retired;
                }
                if h.pk != pk {
                    self.move_rows(side, &h.pk, &pk, h.rid)?;
                    moved_from = Some(h.pk);
                }
                self.conn().execute(
                    &format!(
                        "UPDATE {res} SET version = $3, last_updated = $4, deleted = $5, \
                         person = $6, body = $7 WHERE pk = $1 AND rid = $2"
                    ),
                    &[&pk, &h.rid, &v, &ts, &deleted, &person, &body],
                )?;
                (h.rid, h.deleted)
            }
            None => {
                let rid: i64 = self
                    .conn()
                    .query_one(
                        &format!(
                            "INSERT INTO {res} (pk, type, id, version, last_updated, deleted, person, body) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING rid"
                        ),
                        &[&pk, &t, &id, &v, &ts, &deleted, &person, &body],
                    )?
                    .get(0);
                self.conn().execute(
                    "INSERT INTO resource_ids (id, type, pk) VALUES ($1, $2, $3)",
                    &[&id, &t, &pk],
                )?;
                (rid, true)
            }
        };
        self.conn().execute(
            "INSERT INTO history (pk, rid, version, last_updated, method, deleted, body) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
            &[&pk, &rid, &v, &ts, &method, &deleted],
        )?;
        self.w.observer.changed(t);
        Ok(Written {
            side,
            pk,
            rid,
            created,
            previous,
            moved_from,
        })
    }

    /// The index rows of `w`'s resource after it changed from `old` to `new` (bodies).
    fn reindex_written(&self, w: &Written, old: Option<Value>, new: Option<&Value>) -> Result<()> {
        let index = self.index.clone();
        let mut c = self.ready()?;
        let key = (w.side, w.pk.as_str(), w.rid);
        let old = match &w.moved_from {
            // Under their old key: removed, and the new version's rows all inserted.
            Some(from) => {
                index.remove_all(&mut c, (w.side, from, w.rid))?;
                None
            }
            None if old.is_none() && w.previous.is_some() => {
                // An unreadable previous body: its rows are not known one by one.
                index.remove_all(&mut c, key)?;
                None
            }
            None => old,
        };
        match (old, new) {
            (Some(old), Some(new)) => index.replace(&mut c, key, &old, new)?,
            (Some(old), None) => index.remove(&mut c, key, &old)?,
            (None, Some(new)) => index.insert(&mut c, key, new)?,
            (None, None) => {}
        }
        Ok(())
    }
}

impl StoreTx for WriterTx<'_> {
    fn put_prepared(
        &mut self,
        t: &str,
        id: &str,
        body: &mut Value,
        person: Option<&str>,
        method: &str,
        prepared: Option<Prepared>,
    ) -> Result<PutResult> {
        let existing = self.head(t, id)?;
        let ts = self.time_after(existing.as_ref());
        let version = existing.as_ref().map(|h| h.version + 1).unwrap_or(1);
        stamp(body, version, ts);
        let bytes = serde_json::to_vec(body)?;
        let w = self.write_version(existing, (t, id), version, ts, method, person, Some(&bytes))?;
        if w.previous.is_none() && w.moved_from.is_none() {
            // A new resource (or one created again): its rows go in with the job's others.
            let index = self.index.clone();
            index.stage(
                &mut self.staged.borrow_mut(),
                (w.side, &w.pk, w.rid),
                body,
                prepared,
            );
        } else {
            let old = w
                .previous
                .as_deref()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok());
            self.reindex_written(&w, old, Some(body))?;
        }
        Ok(PutResult {
            rid: w.rid,
            version,
            last_updated: ts,
            created: w.created,
        })
    }

    fn delete(&mut self, t: &str, id: &str) -> Result<Option<PutResult>> {
        let Some(h) = self.head(t, id)?.filter(|h| !h.deleted) else {
            return Ok(None);
        };
        let ts = self.time_after(Some(&h));
        let version = h.version + 1;
        // The deletion marker keeps the resource's person, so its rows stay where they are.
        let person = (h.pk != pk_for(t, id, None)).then(|| h.pk.clone());
        let w = self.write_version(
            Some(h),
            (t, id),
            version,
            ts,
            "DELETE",
            person.as_deref(),
            None,
        )?;
        let old = w
            .previous
            .as_deref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok());
        self.reindex_written(&w, old, None)?;
        Ok(Some(PutResult {
            rid: w.rid,
            version,
            last_updated: ts,
            created: false,
        }))
    }

    fn reindex(&mut self, types: &[String], after_rid: i64, limit: usize) -> Result<(usize, i64)> {
        if types.is_empty() {
            return Ok((0, after_rid));
        }
        // Both sides (rids come from one sequence), in rid order.
        let rows = self.conn().query(
            "SELECT * FROM (SELECT rid, body, pk, type FROM resources \
             WHERE rid > $1 AND deleted = 0 AND type = ANY($2) \
             UNION ALL SELECT rid, body, pk, type FROM shared_resources \
             WHERE rid > $1 AND deleted = 0 AND type = ANY($2)) u ORDER BY rid LIMIT $3",
            &[&after_rid, &types, &(limit as i64)],
        )?;
        let (mut n, mut last) = (0, after_rid);
        let index = self.index.clone();
        for row in rows {
            let rid: i64 = row.get(0);
            let body: Option<Vec<u8>> = row.get(1);
            let pk: String = row.get(2);
            let side = Side::of(&row.get::<_, String>(3));
            if let Some(body) = body
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                index.reindex(&mut *self.ready()?, (side, &pk, rid), &v)?;
            }
            n += 1;
            last = rid;
        }
        Ok((n, last))
    }

    fn put_version(&mut self, v: &Stored) -> Result<()> {
        let existing = self.head(&v.resource_type, &v.id)?;
        if existing.as_ref().is_some_and(|h| h.version >= v.version) {
            return Err(StoreError::Db(format!(
                "{}/{} already has version {} or later",
                v.resource_type, v.id, v.version
            )));
        }
        self.w.clock.fetch_max(v.last_updated, Ordering::Relaxed);
        let w = self.write_version(
            existing,
            (&v.resource_type, &v.id),
            v.version,
            v.last_updated,
            &v.method,
            v.person.as_deref(),
            v.body.as_deref(),
        )?;
        let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
        let old = w.previous.as_deref().and_then(parse);
        let new = v.body.as_deref().and_then(parse);
        self.reindex_written(&w, old, new.as_ref())
    }

    fn set_person(&mut self, rid: i64, person: Option<&str>) -> Result<()> {
        let Some(row) = self.conn().query_opt(
            "SELECT pk, type, id, deleted, body FROM resources WHERE rid = $1 \
             UNION ALL SELECT pk, type, id, deleted, body FROM shared_resources WHERE rid = $1",
            &[&rid],
        )?
        else {
            return Ok(());
        };
        let (pk, t, id): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let side = Side::of(&t);
        self.hold_identity(&t, &id)?;
        let body: Option<Vec<u8>> = row.get(4);
        let to = pk_for(&t, &id, person);
        if to != pk {
            // Staged rows of this job first, so that all of its index rows move.
            drop(self.ready()?);
            self.move_rows(side, &pk, &to, rid)?;
            let index = self.index.clone();
            let mut c = self.ready()?;
            index.remove_all(&mut c, (side, &pk, rid))?;
            let live = row.get::<_, i32>(3) == 0;
            if live && let Some(v) = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
                index.insert(&mut c, (side, &to, rid), &v)?;
            }
        }
        self.conn().execute(
            &format!(
                "UPDATE {} SET person = $3 WHERE pk = $1 AND rid = $2",
                side.table("resources")
            ),
            &[&to, &rid, &person],
        )?;
        Ok(())
    }

    fn lock_key(&mut self, key: &str) -> Result<()> {
        self.hold(key)
    }

    fn may_run_again(&self) -> bool {
        true
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn sync_params(&mut self, reg: Registry) -> Result<()> {
        // The same keys (a process opening, a definition stored again): nothing changes in
        // the tables, other writers go on.
        let mut now: Vec<&String> = self.index.registry().keys().iter().collect();
        let mut wanted: Vec<&String> = reg.keys().iter().collect();
        now.sort();
        wanted.sort();
        if now != wanted {
            self.hold_index()?;
        }
        let next = self.index.sync(&mut *self.ready()?, reg)?;
        self.index = Arc::new(next);
        self.index_changed = true;
        Ok(())
    }

    fn finish_params(&mut self, keys: &[String]) -> Result<()> {
        self.hold_index()?;
        let next = self.index.finish(&mut *self.ready()?, keys)?;
        self.index = Arc::new(next);
        self.index_changed = true;
        Ok(())
    }
}
