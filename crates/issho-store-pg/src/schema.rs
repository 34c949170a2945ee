//! The schema, as numbered migrations applied in order at open (and by `issho migrate`).
//!
//! Every text column compares bytewise (`COLLATE "C"`), as SQLite does, so that ids, codes and
//! normalised strings sort and match identically on both stores. Index rows carry `param` (the
//! id of a parameter key in `sp_param`) and end their primary key with `rid`, as in the
//! embedded store (`issho-store-sqlite/src/index.rs` explains each table).

/// (version, what it does, SQL). Never edit an applied migration: add the next one.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "resources, history, search index, settings",
    r#"
CREATE TABLE resources (
  rid bigserial PRIMARY KEY,
  type text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  version bigint NOT NULL,
  last_updated bigint NOT NULL,
  deleted int NOT NULL DEFAULT 0,
  person text COLLATE "C",
  body bytea,
  UNIQUE (type, id)
);
CREATE INDEX resources_person ON resources (person) WHERE person IS NOT NULL;
CREATE INDEX resources_type ON resources (type, rid);
CREATE TABLE history (
  seq bigserial PRIMARY KEY,
  rid bigint NOT NULL,
  version bigint NOT NULL,
  last_updated bigint NOT NULL,
  method text NOT NULL,
  deleted int NOT NULL DEFAULT 0,
  body bytea,
  UNIQUE (rid, version)
);
CREATE INDEX history_time ON history (last_updated);
CREATE TABLE store_meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE sp_meta (name text COLLATE "C" PRIMARY KEY, value text);
CREATE TABLE sp_param (id bigserial PRIMARY KEY, key text COLLATE "C" NOT NULL UNIQUE);
CREATE TABLE sp_token (
  param bigint NOT NULL, code text COLLATE "C" NOT NULL, system bigint NOT NULL,
  rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, code, system, rid, grp));
CREATE TABLE sp_string (
  param bigint NOT NULL, norm text COLLATE "C" NOT NULL, exact text COLLATE "C" NOT NULL,
  rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, norm, exact, rid, grp));
CREATE TABLE sp_ref (
  param bigint NOT NULL, ref_id text COLLATE "C" NOT NULL, ref_type text COLLATE "C" NOT NULL,
  url text COLLATE "C" NOT NULL, version text COLLATE "C" NOT NULL,
  rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, ref_id, ref_type, url, version, rid, grp));
CREATE INDEX sp_ref_rid ON sp_ref (rid, param);
CREATE TABLE sp_date (
  param bigint NOT NULL, lo bigint NOT NULL, hi bigint NOT NULL,
  rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, lo, hi, rid, grp));
CREATE INDEX sp_date_hi ON sp_date (param, hi);
CREATE INDEX sp_date_rid ON sp_date (rid, param);
CREATE TABLE sp_number (
  param bigint NOT NULL, lo double precision NOT NULL, hi double precision NOT NULL,
  rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, lo, hi, rid, grp));
CREATE TABLE sp_quantity (
  param bigint NOT NULL, canon bigint NOT NULL, code text COLLATE "C" NOT NULL,
  lo double precision NOT NULL, hi double precision NOT NULL, system bigint NOT NULL,
  unit text COLLATE "C" NOT NULL, rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, canon, code, lo, hi, system, unit, rid, grp));
CREATE TABLE sp_uri (
  param bigint NOT NULL, value text COLLATE "C" NOT NULL,
  rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, value, rid, grp));
CREATE TABLE sp_geo (
  param bigint NOT NULL, lat double precision NOT NULL, lon double precision NOT NULL,
  x double precision NOT NULL, y double precision NOT NULL, z double precision NOT NULL,
  rid bigint NOT NULL, grp bigint NOT NULL,
  PRIMARY KEY (param, lat, lon, rid, grp));
-- Full text: issho's own tokens with their positions (phrases are `<->` in a tsquery).
CREATE TABLE sp_text (rid bigint PRIMARY KEY, narrative tsvector NOT NULL, content tsvector NOT NULL);
CREATE INDEX sp_text_narrative ON sp_text USING gin (narrative);
CREATE INDEX sp_text_content ON sp_text USING gin (content);
"#,
)];

/// Apply the migrations not yet applied, each in its own transaction, under an advisory lock
/// (two processes starting together apply each once). Returns the versions applied now.
pub(crate) fn migrate(c: &mut postgres::Client) -> Result<Vec<i32>, postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
               version int PRIMARY KEY, description text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())",
        )?;
    }
    let mut applied_now = Vec::new();
    let mut tx = c.transaction()?;
    // One migrating process at a time (released at commit).
    tx.execute("SELECT pg_advisory_xact_lock(7349001)", &[])?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (v, what, sql) in MIGRATIONS {
        if done.contains(v) {
            continue;
        }
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            &[v, what],
        )?;
        applied_now.push(*v);
    }
    tx.commit()?;
    Ok(applied_now)
}
