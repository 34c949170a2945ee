//! The schema, as numbered migrations applied in order at open (and by `issho migrate`).
//!
//! Every text column compares bytewise (`COLLATE "C"`), as SQLite does, so that ids, codes and
//! normalised strings sort and match identically on both stores. Index rows carry `param` (the
//! id of a parameter key in `sp_param`) and the embedded store's columns
//! (`issho-store-sqlite/src/index.rs` explains each table); since migration 2 every table of a
//! resource's rows also carries the distribution key `pk`, just before `rid` in its key.

/// (version, what it does, SQL). Never edit an applied migration: add the next one.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
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
    ),
    (
        2,
        "the distribution key pk on every table of a resource's rows; resource_ids",
        r#"
-- `pk`: the person whose record a resource is in, or the resource itself ('Type/id') when it
-- is in no one's record. Every row of a resource carries it and every key includes it, so that
-- the tables can be distributed by it (Citus) with a person's record on one shard.
ALTER TABLE resources ADD COLUMN pk text COLLATE "C";
UPDATE resources SET pk = coalesce(person, type || '/' || id);
ALTER TABLE resources ALTER COLUMN pk SET NOT NULL;
ALTER TABLE resources DROP CONSTRAINT resources_pkey, ADD PRIMARY KEY (pk, rid);
ALTER TABLE resources DROP CONSTRAINT resources_type_id_key;
CREATE INDEX resources_type_id ON resources (type, id);
CREATE INDEX resources_rid ON resources (rid);
-- One row per resource ever created, keyed by (id, type): the uniqueness of a resource's
-- identity (a unique key of `resources` would have to include `pk`), and where its `pk` is.
CREATE TABLE resource_ids (
  id text COLLATE "C" NOT NULL, type text COLLATE "C" NOT NULL, pk text COLLATE "C" NOT NULL,
  PRIMARY KEY (id, type));
INSERT INTO resource_ids (id, type, pk) SELECT id, type, pk FROM resources;
ALTER TABLE history ADD COLUMN pk text COLLATE "C";
UPDATE history h SET pk = r.pk FROM resources r WHERE r.rid = h.rid;
ALTER TABLE history ALTER COLUMN pk SET NOT NULL;
ALTER TABLE history DROP CONSTRAINT history_pkey, ADD PRIMARY KEY (pk, seq);
ALTER TABLE history DROP CONSTRAINT history_rid_version_key, ADD UNIQUE (pk, rid, version);
CREATE INDEX history_seq ON history (seq);
CREATE INDEX history_rid ON history (rid, version);
ALTER TABLE sp_token ADD COLUMN pk text COLLATE "C";
UPDATE sp_token x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_token ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_token DROP CONSTRAINT sp_token_pkey, ADD PRIMARY KEY (param, code, system, pk, rid, grp);
ALTER TABLE sp_string ADD COLUMN pk text COLLATE "C";
UPDATE sp_string x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_string ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_string DROP CONSTRAINT sp_string_pkey, ADD PRIMARY KEY (param, norm, exact, pk, rid, grp);
ALTER TABLE sp_ref ADD COLUMN pk text COLLATE "C";
UPDATE sp_ref x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_ref ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_ref DROP CONSTRAINT sp_ref_pkey, ADD PRIMARY KEY (param, ref_id, ref_type, url, version, pk, rid, grp);
ALTER TABLE sp_date ADD COLUMN pk text COLLATE "C";
UPDATE sp_date x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_date ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_date DROP CONSTRAINT sp_date_pkey, ADD PRIMARY KEY (param, lo, hi, pk, rid, grp);
ALTER TABLE sp_number ADD COLUMN pk text COLLATE "C";
UPDATE sp_number x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_number ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_number DROP CONSTRAINT sp_number_pkey, ADD PRIMARY KEY (param, lo, hi, pk, rid, grp);
ALTER TABLE sp_quantity ADD COLUMN pk text COLLATE "C";
UPDATE sp_quantity x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_quantity ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_quantity DROP CONSTRAINT sp_quantity_pkey, ADD PRIMARY KEY (param, canon, code, lo, hi, system, unit, pk, rid, grp);
ALTER TABLE sp_uri ADD COLUMN pk text COLLATE "C";
UPDATE sp_uri x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_uri ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_uri DROP CONSTRAINT sp_uri_pkey, ADD PRIMARY KEY (param, value, pk, rid, grp);
ALTER TABLE sp_geo ADD COLUMN pk text COLLATE "C";
UPDATE sp_geo x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_geo ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_geo DROP CONSTRAINT sp_geo_pkey, ADD PRIMARY KEY (param, lat, lon, pk, rid, grp);
ALTER TABLE sp_text ADD COLUMN pk text COLLATE "C";
UPDATE sp_text x SET pk = r.pk FROM resources r WHERE r.rid = x.rid;
ALTER TABLE sp_text ALTER COLUMN pk SET NOT NULL;
ALTER TABLE sp_text DROP CONSTRAINT sp_text_pkey, ADD PRIMARY KEY (pk, rid);
"#,
    ),
    (
        3,
        "shared resources (types never in a person's record) in shared_resources and shared_sp_*",
        r#"
-- The resources of the types that are never in a person's record (Organization, Practitioner,
-- Location, Medication, terminology, conformance…: `Side::of` in issho-store-sql, from the R4
-- tables) and their index rows, in tables of the same shape that a distributed database copies
-- to every node. `rid` comes from the same sequence as `resources.rid`. Their history stays in
-- `history` (by `pk`, as every version).
CREATE TEMPORARY TABLE moving ON COMMIT DROP AS
  SELECT pk, rid FROM resources WHERE type = ANY(string_to_array('{SHARED_TYPES}', ','));
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['resources', 'sp_token', 'sp_string', 'sp_ref', 'sp_date',
      'sp_number', 'sp_quantity', 'sp_uri', 'sp_geo', 'sp_text'] LOOP
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL)', 'shared_' || t, t);
    EXECUTE format('INSERT INTO %I SELECT x.* FROM %I x JOIN moving m USING (pk, rid)',
      'shared_' || t, t);
    EXECUTE format('DELETE FROM %I x USING moving m WHERE x.pk = m.pk AND x.rid = m.rid', t);
  END LOOP;
END
$$;
"#,
    ),
    (
        4,
        "Observation's code-value-quantity, -concept and -date read the rows of code and value-*",
        r#"
-- Composites whose components are other parameters' rows at the resource's root keep no rows
-- of their own (issho-search `composite`): the copies written before go, with their keys.
-- `RETIRED_PART_KEYS` in this file lists them; a test checks it against the registry. The
-- other composites' rows stay valid: their group numbers are unchanged (issho-search
-- `extract`). Servers of an older build on the same database would still read the copies:
-- every server of a database runs the same build after this migration.
DELETE FROM sp_token WHERE param IN (SELECT id FROM sp_param WHERE key IN ({RETIRED}));
DELETE FROM sp_quantity WHERE param IN (SELECT id FROM sp_param WHERE key IN ({RETIRED}));
DELETE FROM sp_date WHERE param IN (SELECT id FROM sp_param WHERE key IN ({RETIRED}));
DELETE FROM sp_param WHERE key IN ({RETIRED});
"#,
    ),
];

/// The component keys migration 4 retires: those of the composites that share their
/// components' rows (`Registry::shared_part_keys` at the time of the migration).
const RETIRED_PART_KEYS: [&str; 6] = [
    "Observation.code-value-concept$0",
    "Observation.code-value-concept$1",
    "Observation.code-value-date$0",
    "Observation.code-value-date$1",
    "Observation.code-value-quantity$0",
    "Observation.code-value-quantity$1",
];

/// The resource types on the shared side (R4 type names: letters only).
fn shared_types() -> Vec<&'static str> {
    issho_model::r4()
        .resource_types()
        .iter()
        .filter(|t| issho_store_sql::Side::of(t) == issho_store_sql::Side::Shared)
        .map(String::as_str)
        .collect()
}

/// Move the rows of resources whose tables disagree with their type's side (`Side::of`, from
/// the R4 tables: a newer build may place a type differently, as Bundle moved to persons'
/// records) to the right tables, in one transaction under the migrations' lock. Two index
/// probes when nothing is misplaced. Returns the resources moved.
pub(crate) fn place_sides(c: &mut postgres::Client) -> Result<u64, postgres::Error> {
    let shared = shared_types();
    let list: Vec<String> = shared.iter().map(|t| t.to_string()).collect();
    let literal = format!("'{{{}}}'::text[]", shared.join(","));
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(7349001)", &[])?;
    let mut moved = 0;
    for (from, to, cond) in [
        ("", "shared_", format!("type = ANY({literal})")),
        ("shared_", "", format!("NOT (type = ANY({literal}))")),
    ] {
        let any: bool = tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {from}resources WHERE {})",
                    cond.replace(&literal, "$1")
                ),
                &[&list],
            )?
            .get(0);
        if !any {
            continue;
        }
        // Each table's rows by a condition on the resources' own rows (no temporary table: a
        // distributed database joins only its own tables), the resources' rows last.
        let which = format!("(pk, rid) IN (SELECT pk, rid FROM {from}resources WHERE {cond})");
        let tables = crate::index::TABLES
            .iter()
            .map(|(t, _)| *t)
            .chain(["sp_text", "resources"]);
        for t in tables {
            let n = tx.execute(
                &format!("INSERT INTO {to}{t} SELECT * FROM {from}{t} WHERE {which}"),
                &[],
            )?;
            tx.execute(&format!("DELETE FROM {from}{t} WHERE {which}"), &[])?;
            if t == "resources" {
                moved += n;
            }
        }
    }
    tx.commit()?;
    Ok(moved)
}

/// The migration's SQL, with the list of shared types (`{SHARED_TYPES}`: R4 type names, letters
/// only) or of the retired keys (`{RETIRED}`: no quotes in them) written in.
fn migration_sql(sql: &str) -> String {
    if sql.contains("{RETIRED}") {
        let keys: Vec<String> = RETIRED_PART_KEYS.iter().map(|k| format!("'{k}'")).collect();
        return sql.replace("{RETIRED}", &keys.join(", "));
    }
    if !sql.contains("{SHARED_TYPES}") {
        return sql.to_string();
    }
    let shared = shared_types();
    debug_assert!(
        shared
            .iter()
            .all(|t| t.chars().all(|c| c.is_ascii_alphabetic()))
    );
    sql.replace("{SHARED_TYPES}", &shared.join(","))
}

/// Apply the migrations not yet applied, each in its own transaction, under an advisory lock
/// (two processes starting together apply each once). Returns the versions applied now.
pub(crate) fn migrate(c: &mut postgres::Client) -> Result<Vec<i32>, postgres::Error> {
    migrate_upto(c, i32::MAX)
}

/// [`migrate`] up to version `upto` (tests of an upgrade start from an older schema).
fn migrate_upto(c: &mut postgres::Client, upto: i32) -> Result<Vec<i32>, postgres::Error> {
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
        if done.contains(v) || *v > upto {
            continue;
        }
        tx.batch_execute(&migration_sql(sql))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            &[v, what],
        )?;
        applied_now.push(*v);
    }
    tx.commit()?;
    Ok(applied_now)
}

/// Tables copied to every node of a distributed database: the shared settings, and the shared
/// resources with their index rows.
const REFERENCE_TABLES: [&str; 14] = [
    "schema_migrations",
    "store_meta",
    "sp_meta",
    "sp_param",
    "shared_resources",
    "shared_sp_token",
    "shared_sp_string",
    "shared_sp_ref",
    "shared_sp_date",
    "shared_sp_number",
    "shared_sp_quantity",
    "shared_sp_uri",
    "shared_sp_geo",
    "shared_sp_text",
];

/// Tables holding a resource's rows, distributed by `pk` and co-located with `resources`
/// (first): the resource and history tables, the index tables and the full text.
fn distributed_tables() -> impl Iterator<Item = &'static str> {
    ["resources", "history"]
        .into_iter()
        .chain(crate::index::TABLES.iter().map(|(t, _)| *t))
        .chain(["sp_text"])
}

/// When the database has the `citus` extension, distribute the tables that are not yet: the
/// tables of resources' rows by `pk` (co-located: one person's record on one node),
/// `resource_ids` by `id`, the settings as reference tables. Idempotent, under the migrations'
/// lock. Returns whether the tables are distributed.
pub(crate) fn distribute(c: &mut postgres::Client) -> Result<bool, postgres::Error> {
    let citus: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )?
        .get(0);
    if !citus {
        return Ok(false);
    }
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(7349001)", &[])?;
    // Distributed already, or not there (a schema older than this build's, in a test).
    let done = |tx: &mut postgres::Transaction, t: &str| -> Result<bool, postgres::Error> {
        Ok(tx
            .query_one(
                "SELECT to_regclass($1) IS NULL OR EXISTS (SELECT 1 FROM pg_dist_partition \
                 WHERE logicalrelid = to_regclass($1))",
                &[&t],
            )?
            .get(0))
    };
    for t in REFERENCE_TABLES {
        if !done(&mut tx, t)? {
            tx.execute("SELECT create_reference_table($1::text::regclass)", &[&t])?;
        }
    }
    for t in distributed_tables() {
        if done(&mut tx, t)? {
            continue;
        }
        if t == "resources" {
            tx.execute(
                "SELECT create_distributed_table($1::text::regclass, 'pk')",
                &[&t],
            )?;
        } else {
            tx.execute(
                "SELECT create_distributed_table($1::text::regclass, 'pk', colocate_with => 'resources')",
                &[&t],
            )?;
        }
    }
    if !done(&mut tx, "resource_ids")? {
        tx.execute(
            "SELECT create_distributed_table('resource_ids'::regclass, 'id')",
            &[],
        )?;
    }
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod upgrade {
    use super::*;

    #[test]
    fn migration_4_retires_the_keys_the_registry_no_longer_writes() {
        assert_eq!(
            RETIRED_PART_KEYS.to_vec(),
            issho_search::Registry::r4().shared_part_keys()
        );
    }

    /// A store of schema version 2 with a shared and a person's resource, upgraded: the shared
    /// one's rows move to the shared tables, the person's stay. On PostgreSQL
    /// (`ISSHO_TEST_PG`) and on Citus with the version-2 tables distributed first
    /// (`ISSHO_TEST_CITUS`); skipped (and said) without them.
    #[test]
    fn version_2_moves_shared_resources_to_their_tables() {
        let mut ran = 0;
        for var in ["ISSHO_TEST_PG", "ISSHO_TEST_CITUS"] {
            let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) else {
                eprintln!("[issho-store-pg] {var} is not set: the upgrade test on it was SKIPPED");
                continue;
            };
            upgrade_on(&url);
            ran += 1;
        }
        eprintln!("[issho-store-pg] upgrade from schema 2 checked on {ran} database(s)");
    }

    fn upgrade_on(base: &str) {
        let schema = format!("up_{}", std::process::id());
        let mut c = postgres::Client::connect(base, postgres::NoTls).expect("connect");
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        assert_eq!(migrate_upto(&mut c, 2).unwrap(), [1, 2]);
        let distributed = distribute(&mut c).unwrap();
        // Rows as a version-2 store wrote them: an Organization and an Observation.
        c.batch_execute(
            "INSERT INTO resources (pk, rid, type, id, version, last_updated, person, body) VALUES \
               ('Organization/o1', 1, 'Organization', 'o1', 1, 10, NULL, 'o'), \
               ('p1', 2, 'Observation', 'b1', 1, 11, 'p1', 'b'); \
             INSERT INTO resource_ids (id, type, pk) VALUES ('o1', 'Organization', 'Organization/o1'), \
               ('b1', 'Observation', 'p1'); \
             INSERT INTO history (pk, seq, rid, version, last_updated, method) VALUES \
               ('Organization/o1', 1, 1, 1, 10, 'PUT'), ('p1', 2, 2, 1, 11, 'PUT'); \
             INSERT INTO sp_token (param, code, system, pk, rid, grp) VALUES \
               (1, 'x', 0, 'Organization/o1', 1, 0), (1, 'y', 0, 'p1', 2, 0); \
             INSERT INTO sp_text (pk, rid, narrative, content) VALUES \
               ('Organization/o1', 1, '', ''), ('p1', 2, '', ''); \
             INSERT INTO sp_param (id, key) VALUES (50, 'Observation.code-value-quantity$0'), \
               (51, 'Observation.code'); \
             INSERT INTO sp_token (param, code, system, pk, rid, grp) VALUES \
               (50, 'c', 0, 'p1', 2, 1), (51, 'c', 0, 'p1', 2, 0);",
        )
        .unwrap();
        assert_eq!(migrate(&mut c).unwrap(), [3, 4]);
        distribute(&mut c).unwrap();
        let count =
            |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
        for (table, want) in [
            ("shared_resources WHERE id = 'o1'", 1),
            ("resources WHERE id = 'o1'", 0),
            ("resources WHERE id = 'b1'", 1),
            ("shared_resources WHERE id = 'b1'", 0),
            ("shared_sp_token WHERE code = 'x'", 1),
            ("sp_token WHERE code = 'x'", 0),
            ("sp_token WHERE code = 'y'", 1),
            // Migration 4: a retired composite's rows and key go, the base parameter's stay.
            ("sp_token WHERE param = 50", 0),
            ("sp_token WHERE param = 51", 1),
            ("sp_param WHERE key LIKE 'Observation.code-value-%'", 0),
            ("shared_sp_text WHERE rid = 1", 1),
            ("sp_text WHERE rid = 1", 0),
            ("history", 2),
        ] {
            assert_eq!(
                count(&mut c, &format!("SELECT count(*) FROM {table}")),
                want,
                "{table} (distributed: {distributed})"
            );
        }
        // A row on the wrong side (a Bundle in the shared tables, where a build before Bundle
        // was known to hold patients' data put it) moves to the right one at open.
        c.batch_execute(
            "INSERT INTO shared_resources (pk, rid, type, id, version, last_updated, person, body) \
             VALUES ('p1', 5, 'Bundle', 'd1', 1, 14, 'p1', 'd'); \
             INSERT INTO shared_sp_token (param, code, system, pk, rid, grp) VALUES (1, 'z', 0, 'p1', 5, 0)",
        )
        .unwrap();
        assert_eq!(place_sides(&mut c).unwrap(), 1);
        assert_eq!(place_sides(&mut c).unwrap(), 0, "nothing left to move");
        for (table, want) in [
            ("resources WHERE id = 'd1'", 1),
            ("shared_resources WHERE id = 'd1'", 0),
            ("sp_token WHERE code = 'z'", 1),
            ("shared_sp_token WHERE code = 'z'", 0),
            ("shared_resources WHERE id = 'o1'", 1),
        ] {
            assert_eq!(
                count(&mut c, &format!("SELECT count(*) FROM {table}")),
                want,
                "{table} after placing (distributed: {distributed})"
            );
        }
        // A new shared resource takes its rid from the same sequence.
        let rid: i64 = c
            .query_one(
                "INSERT INTO shared_resources (pk, type, id, version, last_updated) \
                 VALUES ('Location/l1', 'Location', 'l1', 1, 12) RETURNING rid",
                &[],
            )
            .unwrap()
            .get(0);
        let next: i64 = c
            .query_one(
                "INSERT INTO resources (pk, type, id, version, last_updated) \
                 VALUES ('p2', 'Patient', 'p2', 1, 13) RETURNING rid",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(next > rid, "one sequence: {rid} then {next}");
        drop(c);
        let mut c = postgres::Client::connect(base, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    }
}
