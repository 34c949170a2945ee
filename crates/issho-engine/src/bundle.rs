//! Batch and transaction Bundles (FHIR R4 http.html#transaction).
//!
//! A transaction runs as ONE store transaction: all entries are written or none. Entries are
//! processed in the specification's order — DELETE, then POST, then PUT/PATCH, then GET —
//! after every `urn:uuid:` (and other) fullUrl has been given its final `Type/id`, so that
//! references between entries, and conditional references such as
//! `Practitioner?identifier=...`, are rewritten before anything is stored.

use crate::rest::{delete_in, parse_body_id, patch_in, put_new, update_in};
use crate::*;
use issho_store::StoreRead;
use std::collections::HashMap;

/// How much of each written resource the response carries (`Prefer: return=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
    /// Processing order of http.html#trules.
    fn rank(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }
}

/// One parsed entry.
struct Entry {
    index: usize,
    method: Method,
    /// Request URL relative to the base (`Patient`, `Patient/1`, `Patient?identifier=x`).
    url: String,
    full_url: Option<String>,
    resource: Option<Value>,
    if_none_exist: Option<String>,
    if_match: Option<String>,
    /// The server's base URL, for the fullUrls and links of nested search results.
    base: Option<String>,
}

impl Entry {
    fn resource_type(&self) -> &str {
        self.url.split(['/', '?']).next().unwrap_or("")
    }
    /// `Type/id` → id.
    fn instance_id(&self) -> Option<&str> {
        let (path, query) = self
            .url
            .split_once('?')
            .map(|(p, q)| (p, Some(q)))
            .unwrap_or((&self.url, None));
        if query.is_some() {
            return None;
        }
        let mut parts = path.split('/');
        parts.next();
        parts.next()
    }
    fn criteria(&self) -> Option<&str> {
        self.url.split_once('?').map(|(_, q)| q)
    }
}

fn at(i: usize) -> String {
    format!("Bundle.entry[{i}]")
}

/// Strip a server base from an absolute request URL and the leading slash.
fn relative_url(url: &str, base: Option<&str>) -> String {
    let mut u = url;
    if let Some(b) = base
        && let Some(rest) = u.strip_prefix(b)
    {
        u = rest;
    }
    u.trim_start_matches('/').to_string()
}

fn parse_entries(mut bundle: Value, base: Option<&str>) -> Result<(String, Vec<Entry>)> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::bad_request("the body must be a Bundle"));
    }
    let kind = bundle
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind != "transaction" && kind != "batch" {
        return Err(FhirError::bad_request(format!(
            "Bundle.type must be 'transaction' or 'batch' to be processed, not '{kind}'"
        )));
    }
    let mut entries = match bundle.get_mut("entry").map(Value::take) {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(FhirError::bad_request("Bundle.entry must be an array")),
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut issues = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let resource = e.get_mut("resource").map(Value::take);
        let req = e.get("request");
        let method = req
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str)
            .and_then(Method::parse);
        let url = req.and_then(|r| r.get("url")).and_then(Value::as_str);
        let (Some(method), Some(url)) = (method, url) else {
            issues.push(
                Issue::error(IssueType::Required, "each entry needs request.method (GET, HEAD, POST, PUT, PATCH, DELETE) and request.url")
                    .at(format!("{}.request", at(i))),
            );
            continue;
        };
        let s = |k: &str| {
            req.and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        out.push(Entry {
            index: i,
            method,
            url: relative_url(url, base),
            full_url: e.get("fullUrl").and_then(Value::as_str).map(str::to_string),
            resource,
            if_none_exist: s("ifNoneExist"),
            if_match: s("ifMatch"),
            base: base.map(str::to_string),
        });
    }
    if !issues.is_empty() {
        return Err(FhirError {
            status: 400,
            issues,
        });
    }
    Ok((kind, out))
}

/// Replace every `reference` that is exactly a known fullUrl by its `Type/id`. Only
/// Reference.reference is rewritten: other strings that happen to equal a fullUrl (an
/// Identifier.value of `urn:uuid:…`, as documents carry) keep their value. Returns true when a
/// reference is left that only the store can resolve (a conditional reference, or a
/// `urn:uuid:`/`urn:oid:` reference to an entry whose identity depends on a search).
fn rewrite_known(v: &mut Value, map: &HashMap<String, String>) -> bool {
    match v {
        Value::Object(o) => {
            let mut left = false;
            for (k, child) in o.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                {
                    if let Some(to) = map.get(s.as_str()) {
                        *s = to.clone();
                    } else if s.contains('?') || s.starts_with("urn:") {
                        left = true;
                    }
                    continue;
                }
                left |= rewrite_known(child, map);
            }
            left
        }
        Value::Array(a) => a
            .iter_mut()
            .fold(false, |acc, c| rewrite_known(c, map) | acc),
        _ => false,
    }
}

/// Replace every `reference` that is exactly a mapped fullUrl by its `Type/id`, and resolve
/// conditional references (`Type?criteria`) in `reference` elements.
fn rewrite_refs(
    reg: &TxAccess<'_>,
    v: &mut Value,
    map: &HashMap<String, String>,
    tx: &dyn StoreRead,
    cache: &mut HashMap<String, String>,
    loc: &str,
) -> Result<()> {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                {
                    if let Some(to) = map.get(s.as_str()) {
                        *s = to.clone();
                    } else if let Some(to) = resolve_conditional_ref(reg, s, tx, cache, loc)? {
                        *s = to;
                    }
                    continue;
                }
                rewrite_refs(reg, child, map, tx, cache, loc)?;
            }
        }
        Value::Array(a) => {
            for child in a {
                rewrite_refs(reg, child, map, tx, cache, loc)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The caller, for access checks inside a transaction.
struct TxAccess<'a> {
    engine: &'a Engine,
    ctx: &'a AccessContext,
    /// Views by interaction and type, computed once per transaction (a clinician's care
    /// relationships and consents are not recomputed for every entry).
    guards: std::cell::RefCell<HashMap<String, crate::view::Guard>>,
    finds: std::cell::RefCell<HashMap<String, Vec<issho_search::Filter>>>,
}

impl<'a> TxAccess<'a> {
    fn new(engine: &'a Engine, ctx: &'a AccessContext) -> TxAccess<'a> {
        TxAccess {
            engine,
            ctx,
            guards: Default::default(),
            finds: Default::default(),
        }
    }
    /// What a conditional lookup of `rt` may match.
    fn find_filters(&self, r: &dyn StoreRead, rt: &str) -> Result<Vec<issho_search::Filter>> {
        if let Some(f) = self.finds.borrow().get(rt) {
            return Ok(f.clone());
        }
        let f = self
            .engine
            .view_with(self.ctx, Action::Search, Some(rt), r, true)?
            .filters(&self.engine.registry(), rt)?;
        self.finds.borrow_mut().insert(rt.to_string(), f.clone());
        Ok(f)
    }
    /// The checks of a write of `action` on `rt`.
    fn guard(&self, r: &dyn StoreRead, action: Action, rt: &str) -> Result<crate::view::Guard> {
        let key = format!("{action:?} {rt}");
        if let Some(g) = self.guards.borrow().get(&key) {
            return Ok(g.clone());
        }
        let g = self.engine.guard_in(self.ctx, action, rt, false, r)?;
        self.guards.borrow_mut().insert(key, g.clone());
        Ok(g)
    }
}

/// A condition in a canonical form (`Type?` and its parameters sorted), so that a conditional
/// reference can be matched with a conditional create of the same transaction.
fn criteria_key(s: &str) -> String {
    let (rt, q) = s.split_once('?').unwrap_or(("", s));
    let mut pairs = search::parse_query(q);
    pairs.sort();
    let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{rt}?{}", q.join("&"))
}

fn resolve_conditional_ref(
    reg: &TxAccess<'_>,
    s: &str,
    tx: &dyn StoreRead,
    cache: &mut HashMap<String, String>,
    loc: &str,
) -> Result<Option<String>> {
    let Some((rt, _)) = s.split_once('?') else {
        return Ok(None);
    };
    if !issho_model::r4().is_resource_type(rt) {
        return Ok(None);
    }
    if let Some(hit) = cache.get(s).or_else(|| cache.get(&criteria_key(s))) {
        return Ok(Some(hit.clone()));
    }
    let found = search::find(&reg.engine.registry(), tx, rt, s, reg.find_filters(tx, rt)?)?;
    match found.len() {
        1 => {
            let to = format!("{}/{}", found[0].resource_type, found[0].id);
            cache.insert(s.to_string(), to.clone());
            Ok(Some(to))
        }
        n => Err(FhirError {
            status: if n == 0 { 404 } else { 412 },
            issues: vec![Issue::error(
                if n == 0 { IssueType::NotFound } else { IssueType::MultipleMatches },
                format!("conditional reference '{s}' matches {n} resources; it must match exactly one"),
            )
            .at(loc.to_string())],
        }),
    }
}

fn status_line(code: u16) -> String {
    let text = match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        _ => "",
    };
    format!("{code} {text}").trim_end().to_string()
}

fn write_response(w: &WriteOutcome, ret: Return) -> Value {
    let mut resp = serde_json::Map::new();
    resp.insert("status".into(), Value::String(status_line(w.status)));
    if let Some(loc) = w.location()
        && w.resource.is_some()
    {
        resp.insert("location".into(), Value::String(loc));
    }
    if let Some(v) = w.version {
        resp.insert("etag".into(), Value::String(format!("W/\"{v}\"")));
    }
    if let Some(t) = w.last_updated {
        resp.insert(
            "lastModified".into(),
            Value::String(issho_model::instant::format_instant(t)),
        );
    }
    if ret == Return::OperationOutcome && !w.issues.is_empty() {
        resp.insert("outcome".into(), issho_model::operation_outcome(&w.issues));
    }
    let mut entry = serde_json::Map::new();
    if let Some(r) = &w.resource {
        if !w.id.is_empty() {
            entry.insert(
                "fullUrl".into(),
                Value::String(format!("{}/{}", w.resource_type, w.id)),
            );
        }
        if ret == Return::Representation {
            entry.insert("resource".into(), r.clone());
        }
    }
    entry.insert("response".into(), Value::Object(resp));
    Value::Object(entry)
}

fn error_entry(e: &FhirError) -> Value {
    serde_json::json!({
        "response": {"status": status_line(e.status), "outcome": e.outcome()}
    })
}

fn stored_entry(s: &Stored, ret_resource: bool) -> Value {
    let mut entry = serde_json::Map::new();
    entry.insert(
        "fullUrl".into(),
        Value::String(format!("{}/{}", s.resource_type, s.id)),
    );
    if ret_resource && let Some(v) = s.json() {
        entry.insert("resource".into(), v);
    }
    entry.insert(
        "response".into(),
        serde_json::json!({
            "status": "200 OK",
            "etag": format!("W/\"{}\"", s.version),
            "lastModified": issho_model::instant::format_instant(s.last_updated),
        }),
    );
    Value::Object(entry)
}

impl Engine {
    /// Process a batch or transaction Bundle. `base` is the server's base URL, stripped from
    /// absolute request URLs. Returns the response Bundle.
    pub(crate) fn process_bundle_unaudited(
        &self,
        ctx: &AccessContext,
        bundle: Value,
        base: Option<&str>,
        ret: Return,
    ) -> Result<Value> {
        let (kind, entries) = parse_entries(bundle, base)?;
        if kind == "transaction" {
            self.transaction(ctx, entries, ret)
        } else {
            self.batch(ctx, entries, ret)
        }
    }

    /// Checks that need no store (permissions, URL, body present, PUT id). The resource itself
    /// is validated once: by the interaction (batch entries) or after reference rewriting
    /// (transaction entries).
    fn check_entry(&self, ctx: &AccessContext, e: &Entry) -> Result<()> {
        let rt = e.resource_type();
        if !issho_model::r4().is_resource_type(rt) {
            return Err(FhirError::new(
                400,
                IssueType::NotSupported,
                format!("request.url '{}' does not name a FHIR resource type", e.url),
            ));
        }
        let action = match e.method {
            Method::Get | Method::Head => Action::Read,
            Method::Post => Action::Create,
            Method::Put | Method::Patch => Action::Update,
            Method::Delete => Action::Delete,
        };
        self.gate.check(ctx, action, Some(rt))?;
        if e.criteria().is_some() || e.if_none_exist.is_some() {
            self.gate.check(ctx, Action::Search, Some(rt))?;
        }
        match e.method {
            Method::Post | Method::Put => {
                let Some(r) = &e.resource else {
                    return Err(FhirError::new(
                        400,
                        IssueType::Required,
                        "a POST or PUT entry needs a resource",
                    ));
                };
                if e.method == Method::Put && e.criteria().is_none() {
                    match (e.instance_id(), parse_body_id(r)) {
                        (Some(uid), Some(bid)) if uid == bid => {}
                        (Some(uid), bid) => {
                            return Err(FhirError::bad_request(format!(
                                "PUT {}: the resource id ({}) must match the id in the URL ('{uid}')",
                                e.url,
                                bid.map(|b| format!("'{b}'"))
                                    .unwrap_or_else(|| "missing".into())
                            )));
                        }
                        (None, _) => {
                            return Err(FhirError::bad_request(format!(
                                "PUT needs Type/id or Type?criteria, not '{}'",
                                e.url
                            )));
                        }
                    }
                }
            }
            Method::Patch if e.resource.is_none() => {
                return Err(FhirError::new(
                    400,
                    IssueType::Required,
                    "a PATCH entry needs a Binary or Parameters resource",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn transaction(
        &self,
        ctx: &AccessContext,
        mut entries: Vec<Entry>,
        ret: Return,
    ) -> Result<Value> {
        let prefix = |e: &Entry, mut err: FhirError| {
            for i in err.issues.iter_mut() {
                if i.expression.is_none() {
                    i.expression = Some(at(e.index));
                }
                i.diagnostics = format!("entry {}: {}", e.index, i.diagnostics);
            }
            err
        };
        // Phase 1, without the store: static checks, the identities that need no lookup,
        // reference rewriting with them, and validation. Only what truly needs the store
        // (conditional identities and references) is left for the writer.
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            self.check_entry(ctx, e).map_err(|err| prefix(e, err))?;
            if let Some(f) = &e.full_url
                && !seen.insert(f.clone())
            {
                return Err(FhirError::bad_request(format!(
                    "fullUrl '{f}' appears more than once"
                ))
                .with_at(at(e.index)));
            }
        }
        let n = entries.len();
        let mut assigned: Vec<Option<String>> = vec![None; n];
        let mut known: HashMap<String, String> = HashMap::new();
        for (k, e) in entries.iter().enumerate() {
            assigned[k] = match e.method {
                Method::Post if e.if_none_exist.is_none() => Some(new_id()),
                Method::Put | Method::Patch if e.criteria().is_none() => {
                    e.instance_id().map(str::to_string)
                }
                _ => None,
            };
            if let (Some(id), Some(f)) = (&assigned[k], &e.full_url) {
                known.insert(f.clone(), format!("{}/{id}", e.resource_type()));
            }
        }
        let mut unresolved = false;
        for e in entries.iter_mut() {
            if let Some(r) = e.resource.as_mut() {
                unresolved |= rewrite_known(r, &known);
            }
        }
        if self.config.validate {
            for e in &entries {
                if let (Method::Post | Method::Put, Some(r)) = (e.method, &e.resource) {
                    let mut issues = check_resource(Some(e.resource_type()), r, true, true);
                    issues.retain(Issue::is_error);
                    if !issues.is_empty() {
                        return Err(prefix(
                            e,
                            FhirError {
                                status: 400,
                                issues,
                            },
                        ));
                    }
                }
            }
        }
        // Index rows of the entries whose identity and references are final are extracted
        // here, not on the single writer thread (the resource gets its id as the writer would).
        let mut prepared: Vec<Option<issho_store::Prepared>> = (0..n).map(|_| None).collect();
        if !unresolved {
            for (k, e) in entries.iter_mut().enumerate() {
                if let (Method::Post | Method::Put, Some(id), Some(r)) =
                    (e.method, &assigned[k], e.resource.as_mut())
                    && r.is_object()
                {
                    r["id"] = Value::String(id.clone());
                    prepared[k] = issho_store::Indexer::prepare(&*self.indexer, r);
                }
            }
        }
        let engine = self.clone();
        let ctx2 = ctx.clone();
        let reg = self.registry();
        let responses = self.write(move |tx| -> Result<Vec<Value>> {
            let access = TxAccess::new(&engine, &ctx2);
            // Phase 2, in the write transaction: conditional identities.
            let mut late: HashMap<String, String> = HashMap::new();
            let mut created: HashMap<String, String> = HashMap::new();
            let mut matched: Vec<Option<Stored>> = vec![None; n];
            for (k, e) in entries.iter().enumerate() {
                if assigned[k].is_some()
                    || matches!(e.method, Method::Get | Method::Head)
                    || (e.method == Method::Delete && e.criteria().is_none())
                {
                    continue;
                }
                let rt = e.resource_type().to_string();
                let target = match e.method {
                    Method::Post => {
                        let c = e.if_none_exist.as_deref().unwrap_or_default();
                        let crit = if c.contains('?') {
                            c.to_string()
                        } else {
                            format!("{rt}?{c}")
                        };
                        let found = search::find(&reg, tx, &rt, &crit, access.find_filters(tx, &rt)?)
                            .map_err(|err| err.with_at(at(e.index)))?;
                        match found.len() {
                            0 => {
                                // Conditional references with the same criteria resolve to
                                // the resource this entry creates (transaction rules).
                                let id = new_id();
                                created.insert(criteria_key(&crit), format!("{rt}/{id}"));
                                id
                            }
                            1 => {
                                let id = found[0].id.clone();
                                matched[k] = Some(found.into_iter().next().unwrap());
                                id
                            }
                            m => {
                                return Err(FhirError::precondition(format!(
                                    "entry {}: ifNoneExist '{c}' matches {m} resources",
                                    e.index
                                ))
                                .with_at(at(e.index)));
                            }
                        }
                    }
                    _ => {
                        let c = e.criteria().unwrap_or_default();
                        let found = search::find(
                            &reg,
                            tx,
                            &rt,
                            &format!("{rt}?{c}"),
                            access.find_filters(tx, &rt)?,
                        )
                            .map_err(|err| err.with_at(at(e.index)))?;
                        let body_id = e
                            .resource
                            .as_ref()
                            .and_then(parse_body_id)
                            .map(str::to_string);
                        let fail = |status: u16, code: IssueType, msg: String| FhirError {
                            status,
                            issues: vec![
                                Issue::error(code, format!("entry {}: {msg}", e.index))
                                    .at(at(e.index)),
                            ],
                        };
                        match (e.method, found.len()) {
                            // Conditional delete of nothing: nothing to do.
                            (Method::Delete, 0) => continue,
                            (Method::Put, 0) => match body_id {
                                Some(id)
                                    if tx.current(&rt, &id)?.is_some_and(|s| !s.is_deleted()) =>
                                {
                                    return Err(fail(
                                        400,
                                        IssueType::Invalid,
                                        format!(
                                            "no match for '{}', but {rt}/{id} named by the body exists; the body's id cannot be used to create",
                                            e.url
                                        ),
                                    ));
                                }
                                Some(id) => id,
                                None => new_id(),
                            },
                            (_, 1) => {
                                let id = found[0].id.clone();
                                if e.method == Method::Put
                                    && body_id.as_ref().is_some_and(|b| *b != id)
                                {
                                    return Err(fail(
                                        400,
                                        IssueType::Invalid,
                                        format!(
                                            "'{}' matches {rt}/{id} but the body's id is '{}'",
                                            e.url,
                                            body_id.unwrap_or_default()
                                        ),
                                    ));
                                }
                                id
                            }
                            (_, 0) => {
                                return Err(fail(
                                    404,
                                    IssueType::NotFound,
                                    format!("'{}' matches no resource", e.url),
                                ));
                            }
                            (_, m) => {
                                return Err(fail(
                                    412,
                                    IssueType::MultipleMatches,
                                    format!(
                                        "'{}' matches {m} resources; it must match exactly one",
                                        e.url
                                    ),
                                ));
                            }
                        }
                    }
                };
                if let Some(f) = &e.full_url {
                    late.insert(f.clone(), format!("{rt}/{target}"));
                }
                assigned[k] = Some(target);
            }
            // The same resource must not be written twice in one transaction (http.html#trules).
            let mut identities: HashMap<String, usize> = HashMap::new();
            for (k, e) in entries.iter().enumerate() {
                if matches!(e.method, Method::Get | Method::Head) {
                    continue;
                }
                let id = match (e.method, &assigned[k]) {
                    (_, Some(id)) => id.clone(),
                    (Method::Delete, None) => match e.instance_id() {
                        Some(id) => id.to_string(),
                        None => continue,
                    },
                    _ => continue,
                };
                let key = format!("{}/{id}", e.resource_type());
                if let Some(first) = identities.insert(key.clone(), e.index) {
                    return Err(FhirError::bad_request(format!(
                        "entries {first} and {} both act on {key}; a transaction may touch each resource once",
                        e.index
                    ))
                    .with_at(at(e.index)));
                }
            }
            // References that needed the store: to conditional entries, and conditional ones.
            if unresolved || !late.is_empty() {
                let mut cache = created;
                for e in entries.iter_mut() {
                    if let Some(r) = e.resource.as_mut() {
                        let loc = format!("{}.resource", at(e.index));
                        rewrite_refs(&access, r, &late, tx, &mut cache, &loc)?;
                    }
                }
            }
            // 3. Process in the specification's order.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&k| (entries[k].method.rank(), k));
            let mut out: Vec<Value> = vec![Value::Null; n];
            let mut pending: Vec<(crate::view::Guard, String, String, usize)> = Vec::new();
            for k in order {
                let e = &mut entries[k];
                let rt = e.resource_type().to_string();
                // Access: the entry's target must be visible before and after the change.
                let action = match e.method {
                    Method::Post => Some(Action::Create),
                    Method::Put | Method::Patch => Some(Action::Update),
                    Method::Delete => Some(Action::Delete),
                    Method::Get | Method::Head => None,
                };
                let guard = match action {
                    Some(a) => Some(access.guard(tx, a, &rt).map_err(|err| err.with_at(at(e.index)))?),
                    None => None,
                };
                let target = match e.method {
                    Method::Delete => match e.criteria() {
                        None => e.instance_id().map(str::to_string),
                        Some(_) => assigned[k].clone(),
                    },
                    Method::Put | Method::Patch => assigned[k].clone(),
                    _ => None,
                };
                if let (Some(g), Some(id)) = (&guard, &target) {
                    g.before(tx, &rt, id).map_err(|err| err.with_at(at(e.index)))?;
                }
                let res = match e.method {
                    Method::Delete => match e.criteria() {
                        None => match e.instance_id() {
                            Some(id) => delete_in(tx, &rt, id, e.if_match.as_deref()),
                            None => Err(FhirError::bad_request(format!(
                                "DELETE needs Type/id or Type?criteria, not '{}'",
                                e.url
                            ))),
                        },
                        Some(_) => match &assigned[k] {
                            Some(id) => delete_in(tx, &rt, id, None),
                            None => Ok(WriteOutcome {
                                status: 204,
                                resource_type: rt.clone(),
                                id: String::new(),
                                resource: None,
                                version: None,
                                last_updated: None,
                                issues: vec![],
                            }),
                        },
                    }
                    .map(|w| write_response(&w, ret)),
                    Method::Post => {
                        if let Some(s) = &matched[k] {
                            let mut entry = stored_entry(s, ret == Return::Representation);
                            entry["response"]["status"] = Value::String("200 OK".into());
                            entry["response"]["location"] = Value::String(format!(
                                "{}/{}/_history/{}",
                                s.resource_type, s.id, s.version
                            ));
                            Ok(entry)
                        } else {
                            let id = assigned[k].clone().unwrap_or_else(new_id);
                            let mut r = e.resource.take().unwrap_or(Value::Null);
                            put_new(tx, &rt, &id, &mut r, "POST", prepared[k].take())
                                .map(|w| write_response(&w, ret))
                        }
                    }
                    Method::Put => {
                        let id = assigned[k].clone().unwrap_or_default();
                        let mut r = e.resource.take().unwrap_or(Value::Null);
                        if let Some(o) = r.as_object_mut() {
                            o.insert("id".into(), Value::String(id.clone()));
                        }
                        update_in(
                            tx,
                            &rt,
                            &id,
                            &mut r,
                            e.if_match.as_deref(),
                            &engine.create_check(&ctx2, &rt),
                            prepared[k].take(),
                        )
                        .map(|w| write_response(&w, ret))
                    }
                    Method::Patch => {
                        let id = assigned[k].clone().unwrap_or_default();
                        let patch = entry_patch(e.resource.take().unwrap_or(Value::Null))?;
                        patch_in(
                            tx,
                            &rt,
                            &id,
                            &patch,
                            e.if_match.as_deref(),
                            engine.config.validate,
                        )
                        .map(|w| write_response(&w, ret))
                    }
                    // A failed read changes nothing: it is reported in its entry, not fatal.
                    Method::Get | Method::Head => Ok(engine
                        .get_entry(&ctx2, &*tx, &e.url, e.method == Method::Get, e.base.as_deref())
                        .unwrap_or_else(|err| error_entry(&err))),
                };
                // After the write: still within reach (a created resource's id is in its
                // response location).
                let res = match (res, &guard) {
                    (Ok(v), Some(g)) if e.method != Method::Delete => {
                        let written = v["response"]["location"]
                            .as_str()
                            .and_then(|l| l.split('/').nth(1))
                            .map(str::to_string)
                            .or_else(|| target.clone());
                        // Checked once every entry is written: entries may refer to each
                        // other in any order.
                        if let Some(id) = written {
                            pending.push((g.clone(), rt.clone(), id, k));
                        }
                        Ok(v)
                    }
                    (res, _) => res,
                };
                match res {
                    Ok(v) => out[k] = v,
                    Err(err) => return Err(entry_error(e, err)),
                }
            }
            for (g, rt, id, k) in pending {
                g.after(tx, &rt, &id)
                    .map_err(|err| entry_error(&entries[k], err))?;
            }
            Ok(out)
        })??;
        Ok(serde_json::json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "transaction-response",
            "entry": responses,
        }))
    }

    fn batch(&self, ctx: &AccessContext, entries: Vec<Entry>, ret: Return) -> Result<Value> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let res = self
                .check_entry(ctx, &e)
                .and_then(|_| self.batch_entry(ctx, e, ret));
            out.push(match res {
                Ok(v) => v,
                Err(err) => error_entry(&err),
            });
        }
        Ok(serde_json::json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "batch-response",
            "entry": out,
        }))
    }

    fn batch_entry(&self, ctx: &AccessContext, e: Entry, ret: Return) -> Result<Value> {
        let rt = e.resource_type().to_string();
        let id = e.instance_id().map(str::to_string);
        let crit = e.criteria().map(str::to_string);
        let w = match e.method {
            Method::Get | Method::Head => {
                let r = self.store.reader()?;
                return self.get_entry(
                    ctx,
                    &*r,
                    &e.url,
                    e.method == Method::Get,
                    e.base.as_deref(),
                );
            }
            Method::Post => {
                let c = e.if_none_exist.map(|c| {
                    if c.contains('?') {
                        c
                    } else {
                        format!("{rt}?{c}")
                    }
                });
                self.create(ctx, &rt, e.resource.unwrap_or(Value::Null), c)?
            }
            Method::Put => match (crit, id) {
                (Some(c), _) => self.conditional_update(
                    ctx,
                    &rt,
                    &c,
                    e.resource.unwrap_or(Value::Null),
                    e.if_match,
                )?,
                (None, Some(id)) => {
                    self.update(ctx, &rt, &id, e.resource.unwrap_or(Value::Null), e.if_match)?
                }
                _ => return Err(FhirError::bad_request("PUT needs Type/id")),
            },
            Method::Patch => {
                let p = entry_patch(e.resource.unwrap_or(Value::Null))?;
                match (crit, id) {
                    (Some(c), _) => self.conditional_patch(ctx, &rt, &c, p, e.if_match)?,
                    (None, Some(id)) => self.patch(ctx, &rt, &id, p, e.if_match)?,
                    _ => return Err(FhirError::bad_request("PATCH needs Type/id")),
                }
            }
            Method::Delete => match (crit, id) {
                (Some(c), _) => self.conditional_delete(ctx, &rt, &c)?,
                (None, Some(id)) => self.delete(ctx, &rt, &id, e.if_match)?,
                _ => return Err(FhirError::bad_request("DELETE needs Type/id")),
            },
        };
        Ok(write_response(&w, ret))
    }

    /// A GET entry: read, vread or search, answered from `r`.
    fn get_entry(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        url: &str,
        with_body: bool,
        base: Option<&str>,
    ) -> Result<Value> {
        // The same code, checks and audit record as the request on its own.
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let pairs = search::parse_query(query);
        let base_url = base.unwrap_or("");
        let bundle_entry =
            |b: Value| serde_json::json!({"resource": b, "response": {"status": "200 OK"}});
        match parts.as_slice() {
            [rt, "_history"] => {
                self.check_type(rt)?;
                let scope = HistoryScope::Type(rt.to_string());
                self.history_request_in(ctx, r, scope, &pairs, base_url, path)
                    .map(bundle_entry)
            }
            [rt, id] => self
                .audited_read_in(ctx, r, rt, id)
                .map(|s| stored_entry(&s, with_body)),
            [rt, id, "_history", v] => self
                .audited_vread_in(ctx, r, rt, id, v)
                .map(|s| stored_entry(&s, with_body)),
            [rt, id, "_history"] => {
                let scope = HistoryScope::Instance(rt.to_string(), id.to_string());
                self.history_request_in(ctx, r, scope, &pairs, base_url, path)
                    .map(bundle_entry)
            }
            ["_history"] => self
                .history_request_in(ctx, r, HistoryScope::System, &pairs, base_url, path)
                .map(bundle_entry),
            [rt] if !rt.starts_with('$') => {
                // The plan switch is an admin feature of the search endpoint, not of bundles.
                let pairs: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "_explain").collect();
                let result = self.audited_search_in(ctx, r, rt, &pairs)?;
                Ok(bundle_entry(self.search_bundle(&result, rt, base)))
            }
            _ => Err(FhirError::bad_request(format!(
                "unsupported GET entry url '{url}'"
            ))),
        }
    }
}

/// An entry's failure, naming the entry.
fn entry_error(e: &Entry, err: FhirError) -> FhirError {
    let mut err = err.with_at(at(e.index));
    for i in err.issues.iter_mut() {
        if !i.diagnostics.starts_with("entry ") {
            i.diagnostics = format!(
                "entry {} ({} {}): {}",
                e.index,
                method_name(e.method),
                e.url,
                i.diagnostics
            );
        }
    }
    err
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

/// The patch document of a PATCH entry: a Parameters resource (FHIRPath Patch) or a Binary
/// whose data is a JSON Patch.
fn entry_patch(resource: Value) -> Result<Patch> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => Ok(Patch::FhirPath(resource)),
        Some("Binary") => {
            let data = resource.get("data").and_then(Value::as_str).unwrap_or("");
            let bytes = issho_model::base64::decode(data)
                .ok_or_else(|| FhirError::bad_request("Binary.data is not valid base64"))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                FhirError::bad_request(format!("Binary.data is not a JSON Patch: {e}"))
            })?;
            Ok(Patch::Json(v))
        }
        _ => Err(FhirError::bad_request(
            "a PATCH entry's resource must be Parameters (FHIRPath Patch) or Binary (JSON Patch)",
        )),
    }
}

impl FhirError {
    /// Attach a location to issues that have none.
    pub fn with_at(mut self, loc: String) -> FhirError {
        for i in self.issues.iter_mut() {
            if i.expression.is_none() {
                i.expression = Some(loc.clone());
            }
        }
        self
    }
}
