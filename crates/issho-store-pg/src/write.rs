//! The writer's transaction: new versions, deletions, re-keying, settings, search-parameter
//! changes.

use super::*;
use serde_json::Value;

impl WriterTx<'_> {
    /// The row of a resource, locked for this transaction.
    fn head(&self, t: &str, id: &str) -> Result<Option<(i64, u64, bool)>> {
        Ok(self
            .conn()
            .query_opt(
                "SELECT rid, version, deleted FROM resources WHERE type = $1 AND id = $2 FOR UPDATE",
                &[&t, &id],
            )?
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    r.get::<_, i64>(1) as u64,
                    r.get::<_, i32>(2) != 0,
                )
            }))
    }

    /// Move the current body of `rid` into its history row before it is replaced; returns it.
    fn retire_current(&self, rid: i64, version: u64) -> Result<Option<Vec<u8>>> {
        let mut c = self.conn();
        let body: Option<Vec<u8>> = c
            .query_one("SELECT body FROM resources WHERE rid = $1", &[&rid])?
            .get(0);
        c.execute(
            "UPDATE history SET body = $3 WHERE rid = $1 AND version = $2",
            &[&rid, &(version as i64), &body],
        )?;
        Ok(body)
    }
    /// Write the rows of a new version of `t/id` (the resource's row, superseding its current
    /// version, and a history row); `body` `None` is a deletion marker. Returns the row key,
    /// whether it created the resource (none, or only a deletion, was there), and the body of
    /// the version it superseded when that was not a deletion.
    #[allow(clippy::too_many_arguments)]
    fn write_version(
        &self,
        existing: Option<(i64, u64, bool)>,
        (t, id): (&str, &str),
        version: u64,
        ts: i64,
        method: &str,
        person: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(i64, bool, Option<Vec<u8>>)> {
        let deleted = i32::from(body.is_none());
        let v = version as i64;
        let mut previous = None;
        let (rid, created) = match existing {
            Some((rid, old, was_deleted)) => {
                let retired = self.retire_current(rid, old)?;
                if !was_deleted {
                    previous = retired;
                }
                self.conn().execute(
                    "UPDATE resources SET version = $2, last_updated = $3, deleted = $4, \
                     person = $5, body = $6 WHERE rid = $1",
                    &[&rid, &v, &ts, &deleted, &person, &body],
                )?;
                (rid, was_deleted)
            }
            None => {
                let rid: i64 = self
                    .conn()
                    .query_one(
                        "INSERT INTO resources (type, id, version, last_updated, deleted, person, body) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING rid",
                        &[&t, &id, &v, &ts, &deleted, &person, &body],
                    )?
                    .get(0);
                (rid, true)
            }
        };
        self.conn().execute(
            "INSERT INTO history (rid, version, last_updated, method, deleted, body) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
            &[&rid, &v, &ts, &method, &deleted],
        )?;
        self.w.observer.changed(t);
        Ok((rid, created, previous))
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
        let ts = self.w.tick();
        let version = existing.map(|(_, v, _)| v + 1).unwrap_or(1);
        stamp(body, version, ts);
        let bytes = serde_json::to_vec(body)?;
        let (rid, created, previous) =
            self.write_version(existing, (t, id), version, ts, method, person, Some(&bytes))?;
        let index = self.index.clone();
        match previous.map(|b| serde_json::from_slice::<Value>(&b)) {
            // A new resource (or one created again): its rows go in with the job's others.
            None => index.stage(&mut self.staged.borrow_mut(), rid, body, prepared),
            Some(Ok(old)) => index.replace(&mut *self.ready()?, rid, &old, body)?,
            Some(Err(_)) => {
                let mut c = self.ready()?;
                index.remove_all(&mut c, rid)?;
                index.insert(&mut c, rid, body)?;
            }
        }
        Ok(PutResult {
            rid,
            version,
            last_updated: ts,
            created,
        })
    }

    fn delete(&mut self, t: &str, id: &str) -> Result<Option<PutResult>> {
        let Some((rid, old, false)) = self.head(t, id)? else {
            return Ok(None);
        };
        let ts = self.w.tick();
        let version = old + 1;
        let v = version as i64;
        let previous = self.retire_current(rid, old)?;
        self.conn().execute(
            "UPDATE resources SET version = $2, last_updated = $3, deleted = 1, body = NULL WHERE rid = $1",
            &[&rid, &v, &ts],
        )?;
        self.conn().execute(
            "INSERT INTO history (rid, version, last_updated, method, deleted, body) \
             VALUES ($1, $2, $3, 'DELETE', 1, NULL)",
            &[&rid, &v, &ts],
        )?;
        self.w.observer.changed(t);
        let index = self.index.clone();
        let mut c = self.ready()?;
        match previous.map(|b| serde_json::from_slice::<Value>(&b)) {
            Some(Ok(old)) => index.remove(&mut c, rid, &old)?,
            _ => index.remove_all(&mut c, rid)?,
        }
        Ok(Some(PutResult {
            rid,
            version,
            last_updated: ts,
            created: false,
        }))
    }

    fn reindex(&mut self, types: &[String], after_rid: i64, limit: usize) -> Result<(usize, i64)> {
        if types.is_empty() {
            return Ok((0, after_rid));
        }
        let rows = self.conn().query(
            "SELECT rid, body FROM resources WHERE rid > $1 AND deleted = 0 AND type = ANY($2) \
             ORDER BY rid LIMIT $3",
            &[&after_rid, &types, &(limit as i64)],
        )?;
        let (mut n, mut last) = (0, after_rid);
        let index = self.index.clone();
        for row in rows {
            let rid: i64 = row.get(0);
            let body: Option<Vec<u8>> = row.get(1);
            if let Some(body) = body
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                index.reindex(&mut *self.ready()?, rid, &v)?;
            }
            n += 1;
            last = rid;
        }
        Ok((n, last))
    }

    fn put_version(&mut self, v: &Stored) -> Result<()> {
        let existing = self.head(&v.resource_type, &v.id)?;
        if existing.is_some_and(|(_, old, _)| old >= v.version) {
            return Err(StoreError::Db(format!(
                "{}/{} already has version {} or later",
                v.resource_type, v.id, v.version
            )));
        }
        self.w.clock.fetch_max(v.last_updated, Ordering::Relaxed);
        let (rid, _, previous) = self.write_version(
            existing,
            (&v.resource_type, &v.id),
            v.version,
            v.last_updated,
            &v.method,
            v.person.as_deref(),
            v.body.as_deref(),
        )?;
        let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
        let old = previous.as_deref().and_then(parse);
        let new = v.body.as_deref().and_then(parse);
        let index = self.index.clone();
        let mut c = self.ready()?;
        if old.is_none() && previous.is_some() {
            index.remove_all(&mut c, rid)?;
        }
        match (old, new) {
            (Some(old), Some(new)) => index.replace(&mut c, rid, &old, &new)?,
            (Some(old), None) => index.remove(&mut c, rid, &old)?,
            (None, Some(new)) => index.insert(&mut c, rid, &new)?,
            (None, None) => {}
        }
        Ok(())
    }

    fn set_person(&mut self, rid: i64, person: Option<&str>) -> Result<()> {
        self.conn().execute(
            "UPDATE resources SET person = $2 WHERE rid = $1",
            &[&rid, &person],
        )?;
        Ok(())
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
        let next = self.index.sync(&mut *self.ready()?, reg)?;
        self.index = Arc::new(next);
        self.index_changed = true;
        Ok(())
    }

    fn finish_params(&mut self, keys: &[String]) -> Result<()> {
        let next = self.index.finish(&mut *self.ready()?, keys)?;
        self.index = Arc::new(next);
        self.index_changed = true;
        Ok(())
    }
}
