//! Test support: an issho server on a free loopback port with a fresh store, and a small
//! blocking HTTP client.

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use std::path::PathBuf;

/// The PostgreSQL database the suite runs on instead of the embedded store
/// (`ISSHO_TEST_STORE=postgres://…`; see `postgres_suite.rs`), if any.
pub fn test_store() -> Option<String> {
    std::env::var("ISSHO_TEST_STORE")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

/// Open the engine for a test on the store of this run: the embedded store in `dir`, or, on
/// PostgreSQL, a schema of its own (named in `dir/pg-schema`, so that a restart on the same
/// directory finds the same data).
pub fn open_engine(
    dir: &std::path::Path,
    config: issho_engine::EngineConfig,
) -> issho_engine::Engine {
    let engine = issho::open(&store_choice(dir), dir, config).expect("store");
    // As `issho serve` does.
    engine.resume_bulk();
    engine
}

/// Threads the engine started (a bulk job finishing) may hold it, and with it the data
/// directory's locks, a moment after the server's runtime is gone: wait (up to 10 s) until a
/// restart on the directory can take them, as a new process could after the old one exited.
fn wait_unlocked(dir: &std::path::Path) {
    let began = std::time::Instant::now();
    for name in [issho_audit::LOCK_FILE, "issho.lock"] {
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(dir.join(name)) else {
            continue;
        };
        while f.try_lock().is_err() && began.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// The store of a test's data directory on this run (see [`open_engine`]).
pub fn store_choice(dir: &std::path::Path) -> issho::StoreChoice {
    match test_store() {
        None => issho::StoreChoice::Embedded,
        Some(base) => {
            let file = dir.join("pg-schema");
            let schema = match std::fs::read_to_string(&file) {
                Ok(s) => s,
                Err(_) => {
                    let s = format!("t_{}", uuid::Uuid::new_v4().simple());
                    let mut c = issho_store_pg::connect(&base).expect("PostgreSQL");
                    c.batch(&format!("CREATE SCHEMA {s}")).expect("schema");
                    std::fs::write(&file, &s).unwrap();
                    s
                }
            };
            let sep = if base.contains('?') { '&' } else { '?' };
            issho::StoreChoice::Postgres(format!("{base}{sep}options=-csearch_path%3D{schema}"))
        }
    }
}

pub struct Server {
    pub base: String,
    pub client: Client,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    pub fn start_with(tune: impl FnOnce(&mut issho_server::ServerConfig)) -> Server {
        Server::start_in(tempfile::tempdir().expect("tempdir"), tune)
    }

    /// Stop the server and hand back its data directory (to start again on it).
    pub fn stop(self) -> tempfile::TempDir {
        drop(self._rt);
        wait_unlocked(self._dir.path());
        self._dir
    }

    /// A server that requires tokens (no `--dev-open`), with its authentication store for
    /// making users and tokens.
    pub fn start_secure() -> (Server, std::sync::Arc<issho_auth::Auth>) {
        Server::start_secure_with(Default::default())
    }

    /// [`Server::start_secure`] with an engine configuration (e.g. without validation, to
    /// store minimal resources of every type).
    pub fn start_secure_with(
        engine: issho_engine::EngineConfig,
    ) -> (Server, std::sync::Arc<issho_auth::Auth>) {
        Server::start_secure_in(tempfile::tempdir().expect("tempdir"), engine)
    }

    /// [`Server::start_secure_with`] on an existing data directory (its users stay).
    pub fn start_secure_in(
        dir: tempfile::TempDir,
        engine: issho_engine::EngineConfig,
    ) -> (Server, std::sync::Arc<issho_auth::Auth>) {
        let mut auth = None;
        let s = Server::launch_with(dir, engine, |base, dir| {
            let a = std::sync::Arc::new(issho_auth::Auth::open(dir, base).unwrap());
            auth = Some(a.clone());
            issho_server::ServerConfig {
                dev_open: false,
                auth: Some(a),
                ..Default::default()
            }
        });
        (s, auth.expect("configured"))
    }

    /// A server that requires tokens with a rate limit per caller.
    pub fn start_secure_limited(rate: u32) -> (Server, std::sync::Arc<issho_auth::Auth>) {
        let mut auth = None;
        let s = Server::launch_with(
            tempfile::tempdir().expect("tempdir"),
            Default::default(),
            |base, dir| {
                let a = std::sync::Arc::new(issho_auth::Auth::open(dir, base).unwrap());
                auth = Some(a.clone());
                issho_server::ServerConfig {
                    dev_open: false,
                    auth: Some(a),
                    rate_limit: Some(rate),
                    ..Default::default()
                }
            },
        );
        (s, auth.expect("configured"))
    }

    /// A server on an existing data directory.
    pub fn start_in(
        dir: tempfile::TempDir,
        tune: impl FnOnce(&mut issho_server::ServerConfig),
    ) -> Server {
        Server::launch(dir, |_, _| {
            let mut config = issho_server::ServerConfig::default();
            tune(&mut config);
            config
        })
    }

    /// Serve the store in `dir` on a free loopback port; `config` gets the base URL (known
    /// once the port is bound) and the directory.
    fn launch(
        dir: tempfile::TempDir,
        config: impl FnOnce(&str, &std::path::Path) -> issho_server::ServerConfig,
    ) -> Server {
        Server::launch_with(dir, Default::default(), config)
    }

    fn launch_with(
        dir: tempfile::TempDir,
        engine: issho_engine::EngineConfig,
        config: impl FnOnce(&str, &std::path::Path) -> issho_server::ServerConfig,
    ) -> Server {
        let engine = open_engine(dir.path(), engine);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}/fhir", listener.local_addr().unwrap());
        let app = issho_server::router(engine, config(&base, dir.path()));
        rt.spawn(async move {
            axum::serve(issho_server::OutcomeListener::new(listener), app)
                .await
                .unwrap();
        });
        Server {
            base,
            // Behaviour, not speed, is tested: a slow machine (Citus on CI) gets time.
            client: Client::builder()
                .no_gzip()
                .timeout(std::time::Duration::from_secs(180))
                .build()
                .unwrap(),
            _dir: dir,
            _rt: rt,
        }
    }

    /// The data directory of the server.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().unwrap()
    }

    pub fn req(&self, method: &str, path: &str) -> RequestBuilder {
        self.client.request(method.parse().unwrap(), self.url(path))
    }

    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> Response {
        self.req(method, path)
            .header("content-type", "application/fhir+json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.send_json("POST", path, body)
    }

    pub fn put(&self, path: &str, body: &Value) -> Response {
        self.send_json("PUT", path, body)
    }
}

/// Body as JSON (panics with the text when it is not JSON).
pub fn json(r: Response) -> Value {
    let text = r.text().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Assert an OperationOutcome with at least one error issue; returns its diagnostics joined.
pub fn assert_outcome(r: Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status, "expected HTTP {status}");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(ct.starts_with("application/fhir+json"), "content-type {ct}");
    let v = json(r);
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    let issues = v["issue"].as_array().expect("issues");
    assert!(
        issues
            .iter()
            .any(|i| i["severity"] == "error" || i["severity"] == "fatal"),
        "{v}"
    );
    issues
        .iter()
        .map(|i| i["diagnostics"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The shared reference data folder, when present (`ISSHO_SHARED` or `../shared` beside the repo).
pub fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("ISSHO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if p.join("README.md").exists() {
        Some(p)
    } else {
        None
    }
}

/// The `next` link of a searchset (panics when there is none).
pub fn next_link(bundle: &Value) -> String {
    bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .unwrap_or_else(|| panic!("no next link: {bundle}"))
        .to_string()
}

/// A store of this run opened directly (not through the engine), empty, with the system's
/// permit: for the search tests that check the store's answers to parsed queries.
pub struct StoreDb {
    pub store: std::sync::Arc<dyn issho_store::Store>,
    pub permit: issho_store::Permit,
    _dir: tempfile::TempDir,
}

impl StoreDb {
    pub fn open() -> StoreDb {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let observer = Arc::new(issho_store::NoObserver);
        let store: Arc<dyn issho_store::Store> = match store_choice(dir.path()) {
            issho::StoreChoice::Embedded => {
                Arc::new(issho_store_sqlite::SqliteStore::open(dir.path(), observer).unwrap())
            }
            issho::StoreChoice::Postgres(url) => {
                Arc::new(issho_store_pg::PgStore::open(&url, observer).unwrap())
            }
        };
        let ctx = issho_access::AccessContext::system("test");
        let permit = issho_access::Gate::new()
            .check(&ctx, issho_access::Action::Admin, None)
            .unwrap();
        StoreDb {
            store,
            permit,
            _dir: dir,
        }
    }

    /// Write a version of `r` (its `resourceType` and `id`); returns its row key.
    pub fn put(&self, r: &Value) -> i64 {
        let mut r = r.clone();
        issho_store::write(&*self.store, &self.permit, move |tx| {
            let t = r["resourceType"].as_str().unwrap().to_string();
            let id = r["id"].as_str().unwrap().to_string();
            tx.put(&t, &id, &mut r, None, "PUT").map(|p| p.rid)
        })
        .unwrap()
        .unwrap()
    }

    pub fn delete(&self, rt: &str, id: &str) {
        let (rt, id) = (rt.to_string(), id.to_string());
        issho_store::write(&*self.store, &self.permit, move |tx| tx.delete(&rt, &id))
            .unwrap()
            .unwrap();
    }

    /// The current body of the resource with this id (any type).
    pub fn current(&self, id: &str) -> Value {
        let r = self.store.reader(&self.permit).unwrap();
        for rt in ["Condition", "Patient", "Location", "Observation"] {
            if let Some(s) = r.current(rt, id).unwrap()
                && let Some(v) = s.json()
            {
                return v;
            }
        }
        panic!("no resource {id}")
    }

    /// The rids of a parsed search, in order.
    pub fn rids(&self, q: &issho_search::SearchQuery) -> Vec<i64> {
        self.store.reader(&self.permit).unwrap().search(q).unwrap()
    }

    /// `Type/id` of rids.
    pub fn names(&self, rids: &[i64]) -> Vec<String> {
        self.store
            .reader(&self.permit)
            .unwrap()
            .current_by_rids(rids)
            .unwrap()
            .iter()
            .map(|s| format!("{}/{}", s.resource_type, s.id))
            .collect()
    }
}

/// `a=1&b=2` (not URL-encoded) as pairs.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A search on the store; `Type/id` in result order.
pub fn search(c: &StoreDb, rt: Option<&str>, query: &str) -> Vec<String> {
    let q =
        issho_search::parse(rt, &pairs(query), true).unwrap_or_else(|e| panic!("{query}: {e:?}"));
    c.names(&c.rids(&q))
}

pub fn count(c: &StoreDb, rt: Option<&str>, query: &str) -> i64 {
    let q = issho_search::parse(rt, &pairs(query), true).unwrap();
    c.store.reader(&c.permit).unwrap().count(&q).unwrap() as i64
}

/// Sorted ids (without type) of a search.
pub fn ids(c: &StoreDb, rt: &str, query: &str) -> Vec<String> {
    let mut v: Vec<String> = search(c, Some(rt), query)
        .into_iter()
        .map(|n| n.split_once('/').unwrap().1.to_string())
        .collect();
    v.sort();
    v
}

/// One request to `base` with FHIR JSON.
pub fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Response {
    let mut r = Client::new()
        .request(method.parse().unwrap(), format!("{base}/{path}"))
        .header("content-type", "application/fhir+json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    r.send().unwrap()
}

/// `clients` conditional creates of `body` with `If-None-Exist: crit` at once, spread over
/// `bases` (one server, or several processes on one store): their statuses. Exactly one must
/// create (201); the others find it (200).
pub fn conditional_create_race(bases: &[&str], clients: usize, crit: &str, body: &Value) {
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..clients)
            .map(|i| {
                let base = bases[i % bases.len()];
                sc.spawn(move || {
                    send(
                        base,
                        "POST",
                        "Patient",
                        &[("if-none-exist", crit)],
                        Some(body),
                    )
                    .status()
                    .as_u16()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&c| c == 201 || c == 200),
        "{statuses:?}"
    );
    for base in bases {
        let q = format!("Patient?{crit}&_summary=count");
        assert_eq!(json(send(base, "GET", &q, &[], None))["total"], 1);
    }
}

/// `clients` clients each increment the counter `Basic/counter` `rounds` times through
/// `bases[i % n]` — read, add one, write with `If-Match`, on 412 read again — then every base
/// sees every increment, one version each, and a gap-free history ordered in time.
pub fn increment_counter_with_if_match(bases: &[&str], clients: usize, rounds: usize) {
    let counter = |n: i64| {
        serde_json::json!({"resourceType": "Basic", "id": "counter", "code": {"text": "counter"},
            "extension": [{"url": "urn:issho:test:n", "valueInteger": n}]})
    };
    let first = send(bases[0], "PUT", "Basic/counter", &[], Some(&counter(0)));
    assert_eq!(first.status(), 201);
    std::thread::scope(|sc| {
        for i in 0..clients {
            let base = bases[i % bases.len()];
            sc.spawn(move || {
                let mut done = 0;
                while done < rounds {
                    let r = send(base, "GET", "Basic/counter", &[], None);
                    let etag = r.headers()["etag"].to_str().unwrap().to_string();
                    let n = json(r)["extension"][0]["valueInteger"].as_i64().unwrap();
                    let next = counter(n + 1);
                    let w = send(
                        base,
                        "PUT",
                        "Basic/counter",
                        &[("if-match", &etag)],
                        Some(&next),
                    );
                    match w.status().as_u16() {
                        200 => done += 1,
                        412 | 409 => {}
                        other => panic!("unexpected {other}: {}", w.text().unwrap()),
                    }
                }
            });
        }
    });
    let total = (clients * rounds) as i64;
    for base in bases {
        let last = json(send(base, "GET", "Basic/counter", &[], None));
        let n = &last["extension"][0]["valueInteger"];
        assert_eq!(n, total, "no increment lost");
        let v = &last["meta"]["versionId"];
        assert_eq!(v, &(total + 1).to_string(), "one version per increment");
        let path = "Basic/counter/_history?_count=1000";
        let history = json(send(base, "GET", path, &[], None));
        assert_eq!(history["total"], total + 1, "gap-free history");
        // Newest first, strictly ordered in time too, whichever process wrote them.
        let times: Vec<&str> = history["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["meta"]["lastUpdated"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    }
}

/// A user of the built-in authorization server (`org`: an Organization id).
pub fn user(
    name: &str,
    role: issho_access::Role,
    scopes: &str,
    patient: Option<&str>,
    org: Option<&str>,
) -> issho_auth::User {
    issho_auth::User {
        name: name.into(),
        role,
        patient: patient.map(str::to_string),
        organization: org.map(|o| format!("Organization/{o}")),
        fhir_user: None,
        scopes: scopes.into(),
        display: name.into(),
    }
}

/// A secure server with signed-in principals, each called by name.
pub struct Signed {
    pub s: Server,
    pub tokens: Vec<(&'static str, String)>,
}

impl Signed {
    pub fn start(
        config: issho_engine::EngineConfig,
        users: Vec<(&'static str, issho_auth::User)>,
    ) -> Signed {
        Signed::start_in(tempfile::tempdir().expect("tempdir"), config, users)
    }

    /// [`Signed::start`] on an existing data directory (a restart: new tokens, same store).
    pub fn start_in(
        dir: tempfile::TempDir,
        config: issho_engine::EngineConfig,
        users: Vec<(&'static str, issho_auth::User)>,
    ) -> Signed {
        let (s, auth) = Server::start_secure_in(dir, config);
        let tokens = users
            .into_iter()
            .map(|(w, u)| {
                auth.put_user(&u, "a long password").unwrap();
                let t = auth.issue_for_user(&u, None).unwrap()["access_token"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (w, t)
            })
            .collect();
        Signed { s, tokens }
    }
    /// An administrator installs the FHIR package at `path` (`$install-package`).
    pub fn install_package(&self, path: &std::path::Path) {
        let r = self
            .s
            .req("POST", "$install-package")
            .bearer_auth(self.tok("admin"))
            .header("content-type", "application/gzip")
            .body(std::fs::read(path).unwrap())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}: {}", path.display(), r.text().unwrap());
    }

    /// `who` PUTs `r` at its type and id, which must succeed (201 or 200).
    pub fn store_as(&self, who: &str, r: &Value) {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let (st, b) = self.call(who, "PUT", &path, Some(r));
        assert!(st == 200 || st == 201, "{path}: {b}");
    }
    pub fn tok(&self, who: &str) -> &str {
        &self.tokens.iter().find(|(w, _)| *w == who).unwrap().1
    }
    /// `who` sends `method path` (with a FHIR JSON body): the status and the JSON answer.
    pub fn call(&self, who: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut r = self.s.req(method, path).bearer_auth(self.tok(who));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        let r = r.send().unwrap();
        let st = r.status().as_u16();
        (
            st,
            serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
        )
    }
}
