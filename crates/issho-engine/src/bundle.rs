//! Batch and transaction Bundles (FHIR R4 http.html#transaction).
//!
//! A transaction runs as ONE store transaction: all entries are written or none. Entries are
//! processed in the specification's order — DELETE, then POST, then PUT/PATCH, then GET —
//! after every `urn:uuid:` (and other) fullUrl has been given its final `Type/id`, so that
//! references between entries, and conditional references such as
//! `Practitioner?identifier=...`, are rewritten before anything is stored.

use crate::rest::parse_body_id;
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
pub(crate) enum Method {
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
    pub(crate) fn rank(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }
}

/// One parsed entry.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) index: usize,
    pub(crate) method: Method,
    /// Request URL relative to the base (`Patient`, `Patient/1`, `Patient?identifier=x`).
    pub(crate) url: String,
    pub(crate) full_url: Option<String>,
    pub(crate) resource: Option<Value>,
    pub(crate) if_none_exist: Option<String>,
    pub(crate) if_match: Option<String>,
    /// The server's base URL, for the fullUrls and links of nested search results.
    pub(crate) base: Option<String>,
}

impl Entry {
    pub(crate) fn resource_type(&self) -> &str {
        self.url.split(['/', '?']).next().unwrap_or("")
    }
    /// `Type/id` → id.
    pub(crate) fn instance_id(&self) -> Option<&str> {
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
    pub(crate) fn criteria(&self) -> Option<&str> {
        self.url.split_once('?').map(|(_, q)| q)
    }
}

pub(crate) fn at(i: usize) -> String {
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
        let hint = if issho_documents::kind_of(&bundle).is_some() {
            " (a JP-CLINS document or item collection is submitted with POST [base]/Bundle)"
        } else {
            ""
        };
        return Err(FhirError::bad_request(format!(
            "Bundle.type must be 'transaction' or 'batch' to be processed, not '{kind}'{hint}"
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
pub(crate) fn rewrite_known(v: &mut Value, map: &HashMap<String, String>) -> bool {
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
pub(crate) fn rewrite_refs(
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
pub(crate) struct TxAccess<'a> {
    engine: &'a Engine,
    ctx: &'a AccessContext,
    /// Views by interaction and type, computed once per transaction (a clinician's care
    /// relationships and consents are not recomputed for every entry).
    guards: std::cell::RefCell<HashMap<String, crate::view::Guard>>,
    finds: std::cell::RefCell<HashMap<String, Vec<issho_search::Filter>>>,
}

impl<'a> TxAccess<'a> {
    pub(crate) fn new(engine: &'a Engine, ctx: &'a AccessContext) -> TxAccess<'a> {
        TxAccess {
            engine,
            ctx,
            guards: Default::default(),
            finds: Default::default(),
        }
    }
    /// What a conditional lookup of `rt` may match.
    pub(crate) fn find_filters(
        &self,
        r: &dyn StoreRead,
        rt: &str,
    ) -> Result<Vec<issho_search::Filter>> {
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
    pub(crate) fn guard(
        &self,
        r: &dyn StoreRead,
        action: Action,
        rt: &str,
    ) -> Result<crate::view::Guard> {
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
pub(crate) fn criteria_key(s: &str) -> String {
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

pub(crate) fn write_response(w: &WriteOutcome, ret: Return) -> Value {
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

pub(crate) fn error_entry(e: &FhirError) -> Value {
    serde_json::json!({
        "response": {"status": status_line(e.status), "outcome": e.outcome()}
    })
}

pub(crate) fn stored_entry(s: &Stored, ret_resource: bool) -> Value {
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
    pub(crate) fn check_entry(
        &self,
        ctx: &AccessContext,
        e: &Entry,
    ) -> Result<Option<issho_access::Permit>> {
        let rt = e.resource_type();
        if !issho_model::r4().is_resource_type(rt) {
            return Err(FhirError::new(
                400,
                IssueType::NotSupported,
                format!("request.url '{}' does not name a FHIR resource type", e.url),
            ));
        }
        let action = match e.method {
            // A read asks the gate as the same request on its own would (its interaction
            // checks, and records a denial, itself).
            Method::Get | Method::Head => return Ok(None),
            Method::Post => Action::Create,
            Method::Put | Method::Patch => Action::Update,
            Method::Delete => Action::Delete,
        };
        let permit = self.gate.check(ctx, action, Some(rt))?;
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
        Ok(Some(permit))
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
                return self.get_entry(
                    ctx,
                    None,
                    &e.url,
                    e.method == Method::Get,
                    e.base.as_deref(),
                );
            }
            Method::Post => {
                let c = e
                    .if_none_exist
                    .as_deref()
                    .map(|c| search::condition_url(&rt, c));
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
    pub(crate) fn get_entry(
        &self,
        ctx: &AccessContext,
        r: Option<&dyn StoreRead>,
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
            ["Patient", id, "$everything"] => {
                let result = self.audited_everything(ctx, r, Some(id), &pairs)?;
                Ok(bundle_entry(self.search_bundle(&result, path, base)))
            }
            ["Patient", id, t] if *t == "*" || issho_model::r4().is_resource_type(t) => {
                let result = self.audited_compartment_search(ctx, r, id, t, &pairs, false)?;
                Ok(bundle_entry(self.search_bundle(&result, path, base)))
            }
            [rt] if !rt.starts_with('$') => {
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
pub(crate) fn entry_error(e: &Entry, err: FhirError) -> FhirError {
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
pub(crate) fn entry_patch(resource: Value) -> Result<Patch> {
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
