//! SQL on FHIR v2 (<https://sql-on-fhir.org/ig/>): a `ViewDefinition` is checked once
//! ([`View::compile`]) and run over resources of its type into rows of named columns
//! ([`View::rows`]); `out.rs` writes them as CSV, NDJSON or Parquet (`parquet.rs`).
//!
//! The processing follows the specification's algorithm: each `select` yields, per focus
//! (the resource; each item of `forEach`/`forEachOrNull`; each node `repeat` reaches, depth
//! first), the product of its own columns, its nested selects' rows and its `unionAll`'s
//! concatenated rows; `forEachOrNull` over nothing yields one row of nulls. `%rowIndex` is the
//! focus's index in its iteration (inherited by selects that do not iterate; 0 at the top).
//! A view's columns have unique names (`^[A-Za-z][A-Za-z0-9_]*$`), every `unionAll` branch the
//! same columns in the same order; a column that is not a `collection` may hold one value.

mod fast;
mod needs;
mod out;
mod parquet;

pub use out::{Format, Writer};

use issho_fhirpath::{Context, Expr, Item, Location, Val};
use serde_json::Value;
use std::collections::HashMap;

/// A column of a view's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The FHIR type the view declares (`type`), if any.
    pub ty: Option<String>,
    pub collection: bool,
}

#[derive(Debug, Clone)]
struct Col {
    name: String,
    path: Expr,
    collection: bool,
    /// The path read straight from the resource's JSON, when it can be (`fast.rs`).
    direct: Option<fast::Direct>,
}

#[derive(Debug, Clone)]
enum Iter {
    Focus,
    ForEach(Expr),
    ForEachOrNull(Expr),
    Repeat(Vec<Expr>),
}

#[derive(Debug, Clone)]
struct Select {
    iter: Iter,
    cols: Vec<Col>,
    selects: Vec<Select>,
    union: Vec<Select>,
    /// Columns of this select with its nested selects and union (the row's width).
    width: usize,
}

/// A checked ViewDefinition.
#[derive(Debug, Clone)]
pub struct View {
    pub resource: String,
    pub name: Option<String>,
    columns: Vec<Column>,
    constants: HashMap<String, Val<'static>>,
    wheres: Vec<Expr>,
    top: Select,
    /// The top-level elements the view reads (`None`: any).
    needs: Option<std::collections::BTreeSet<String>>,
}

/// A view that cannot be run, or a row that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError(pub String);

impl std::fmt::Display for ViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ViewError {}

type R<T> = Result<T, ViewError>;

fn bad<T>(m: impl Into<String>) -> R<T> {
    Err(ViewError(m.into()))
}

fn parse(path: &Value, at: &str) -> R<Expr> {
    let Some(s) = path.as_str() else {
        return bad(format!(
            "{at}: a FHIRPath expression (a string) is expected"
        ));
    };
    issho_fhirpath::parse(s).map_err(|e| ViewError(format!("{at}: {e}")))
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// A constant's value as FHIRPath items (`value[x]` of a primitive type).
fn constant(c: &Value, at: &str) -> R<(String, Val<'static>)> {
    let Some(name) = c.get("name").and_then(Value::as_str) else {
        return bad(format!("{at}: a constant needs a name"));
    };
    if !valid_name(name) {
        return bad(format!("{at}: '{name}' is not a valid constant name"));
    }
    let Some((key, v)) = c
        .as_object()
        .into_iter()
        .flatten()
        .find(|(k, _)| k.starts_with("value"))
    else {
        return bad(format!("{at}: the constant '{name}' has no value"));
    };
    let text = || v.as_str().map(str::to_string);
    let val: Option<Val<'static>> = match &key[5..] {
        "Boolean" => v.as_bool().map(Val::Boolean),
        "Integer" | "PositiveInt" | "UnsignedInt" | "Integer64" => v.as_i64().map(Val::Integer),
        "Decimal" => issho_fhirpath::Decimal::parse(&v.to_string()).map(Val::Decimal),
        "Date" => text()
            .and_then(|s| issho_fhirpath::PartialDateTime::parse_date(&s))
            .map(Val::Date),
        "DateTime" | "Instant" => text()
            .and_then(|s| issho_fhirpath::PartialDateTime::parse_datetime(&s))
            .map(Val::DateTime),
        "Time" => text()
            .and_then(|s| issho_fhirpath::PartialDateTime::parse_time(&s))
            .map(Val::Time),
        "String" | "Code" | "Id" | "Uri" | "Url" | "Canonical" | "Oid" | "Uuid" | "Markdown"
        | "Base64Binary" => text().map(|s| Val::String(s.into())),
        other => return bad(format!("{at}: constants of type {other} are not supported")),
    };
    match val {
        Some(v) => Ok((name.to_string(), v)),
        None => bad(format!("{at}: the constant '{name}' has an invalid {key}")),
    }
}

impl View {
    /// Check a ViewDefinition (its JSON) and prepare it to run.
    pub fn compile(def: &Value) -> R<View> {
        let Some(obj) = def.as_object() else {
            return bad("a ViewDefinition is a JSON object");
        };
        let Some(resource) = obj.get("resource").and_then(Value::as_str) else {
            return bad("ViewDefinition.resource (the resource type) is required");
        };
        if !issho_model::r4().is_resource_type(resource) {
            return bad(format!(
                "ViewDefinition.resource: '{resource}' is not a resource type"
            ));
        }
        let mut constants = HashMap::new();
        for (i, c) in obj
            .get("constant")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (n, v) = constant(c, &format!("constant[{i}]"))?;
            if constants.insert(n.clone(), v).is_some() {
                return bad(format!("constant '{n}' is defined twice"));
            }
        }
        let mut wheres = Vec::new();
        for (i, w) in obj
            .get("where")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            wheres.push(parse(&w["path"], &format!("where[{i}].path"))?);
        }
        let selects = match obj.get("select").and_then(Value::as_array) {
            Some(s) if !s.is_empty() => s,
            _ => return bad("ViewDefinition.select: at least one select is required"),
        };
        let mut columns = Vec::new();
        let mut top = Select {
            iter: Iter::Focus,
            cols: Vec::new(),
            selects: Vec::new(),
            union: Vec::new(),
            width: 0,
        };
        for (i, s) in selects.iter().enumerate() {
            top.selects.push(compile_select(
                s,
                &format!("select[{i}]"),
                &mut columns,
                resource,
                true,
            )?);
        }
        top.width = columns.len();
        let mut seen = std::collections::HashSet::new();
        for c in &columns {
            if !seen.insert(&c.name) {
                return bad(format!("the column name '{}' is used twice", c.name));
            }
        }
        let needs = needs::top_level(&wheres, &top);
        Ok(View {
            resource: resource.to_string(),
            name: obj.get("name").and_then(Value::as_str).map(str::to_string),
            columns,
            constants,
            wheres,
            top,
            needs,
        })
    }

    /// A stored resource's JSON parsed for this view: only the top-level elements the view
    /// reads (all when it could read anything).
    pub fn parse(&self, json: &[u8]) -> R<Value> {
        let bad = |e: serde_json::Error| ViewError(format!("a resource does not parse: {e}"));
        match &self.needs {
            Some(n) => {
                use serde::de::DeserializeSeed;
                let mut d = serde_json::Deserializer::from_slice(json);
                let v = needs::Only(n).deserialize(&mut d).map_err(bad)?;
                d.end().map_err(bad)?;
                Ok(v)
            }
            None => serde_json::from_slice(json).map_err(bad),
        }
    }

    /// For tests: every column read directly (`fast.rs`) gives on `resource` what FHIRPath
    /// gives; the first difference otherwise. Answers how many such columns there are.
    #[doc(hidden)]
    pub fn check_direct(&self, resource: &Value) -> Result<usize, String> {
        fn cols(s: &Select, out: &mut Vec<Col>) {
            out.extend(s.cols.iter().filter(|c| c.direct.is_some()).cloned());
            for n in s.selects.iter().chain(&s.union) {
                cols(n, out);
            }
        }
        let mut all = Vec::new();
        cols(&self.top, &mut all);
        let root = Item::Node(issho_fhirpath::root_node(resource, Location::root()));
        let run = Run {
            view: self,
            resource,
            ctx: Default::default(),
        };
        for c in &all {
            let slow: Vec<Value> = run
                .eval(&c.path, &root, 0)
                .map_err(|e| e.0)?
                .iter()
                .map(json)
                .collect();
            let fast = c.direct.as_ref().expect("direct").eval(resource);
            if slow != fast {
                return Err(format!(
                    "column {}: FHIRPath {slow:?}, direct {fast:?}",
                    c.name
                ));
            }
        }
        Ok(all.len())
    }

    /// The columns of every row, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The rows of one resource (none when it is of another type or a `where` excludes it).
    pub fn rows(&self, resource: &Value) -> R<Vec<Vec<Value>>> {
        if resource.get("resourceType").and_then(Value::as_str) != Some(self.resource.as_str()) {
            return Ok(Vec::new());
        }
        let root = Item::Node(issho_fhirpath::root_node(resource, Location::root()));
        let run = Run {
            view: self,
            resource,
            ctx: Default::default(),
        };
        for (i, w) in self.wheres.iter().enumerate() {
            let got = run.eval(w, &root, 0)?;
            match got.as_slice() {
                [] => return Ok(Vec::new()),
                [it] => match boolean(it) {
                    Some(true) => {}
                    Some(false) => return Ok(Vec::new()),
                    None => return bad(format!("where[{i}] does not give a boolean")),
                },
                _ => return bad(format!("where[{i}] gives more than one value")),
            }
        }
        run.select(&self.top, &root, 0)
    }
}

fn boolean(it: &Item<'_>) -> Option<bool> {
    match it {
        Item::Value(Val::Boolean(b)) => Some(*b),
        Item::Node(n) => n.value.as_bool(),
        _ => None,
    }
}

/// `rt`: the resource type; `at_root`: the select's focus is the resource itself.
fn compile_select(
    s: &Value,
    at: &str,
    columns: &mut Vec<Column>,
    rt: &str,
    at_root: bool,
) -> R<Select> {
    let Some(obj) = s.as_object() else {
        return bad(format!("{at}: a select is an object"));
    };
    let iters = ["forEach", "forEachOrNull", "repeat"]
        .iter()
        .filter(|k| obj.contains_key(**k))
        .count();
    if iters > 1 {
        return bad(format!(
            "{at}: forEach, forEachOrNull and repeat exclude each other"
        ));
    }
    let iter = if let Some(e) = obj.get("forEach") {
        Iter::ForEach(parse(e, &format!("{at}.forEach"))?)
    } else if let Some(e) = obj.get("forEachOrNull") {
        Iter::ForEachOrNull(parse(e, &format!("{at}.forEachOrNull"))?)
    } else if let Some(r) = obj.get("repeat") {
        let Some(paths) = r.as_array().filter(|p| !p.is_empty()) else {
            return bad(format!(
                "{at}.repeat: a list of FHIRPath expressions is expected"
            ));
        };
        Iter::Repeat(
            paths
                .iter()
                .enumerate()
                .map(|(i, p)| parse(p, &format!("{at}.repeat[{i}]")))
                .collect::<R<_>>()?,
        )
    } else {
        Iter::Focus
    };
    let start = columns.len();
    let mut cols = Vec::new();
    for (i, c) in obj
        .get("column")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let cat = format!("{at}.column[{i}]");
        let Some(name) = c.get("name").and_then(Value::as_str) else {
            return bad(format!("{cat}: a column needs a name"));
        };
        if !valid_name(name) {
            return bad(format!("{cat}: '{name}' is not a valid column name"));
        }
        let collection = match c.get("collection") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return bad(format!("{cat}.collection must be a boolean")),
        };
        let path = parse(&c["path"], &format!("{cat}.path"))?;
        let direct = if at_root && matches!(iter, Iter::Focus) {
            fast::compile(rt, &path)
        } else {
            None
        };
        cols.push(Col {
            name: name.to_string(),
            path,
            collection,
            direct,
        });
        columns.push(Column {
            name: name.to_string(),
            ty: c.get("type").and_then(Value::as_str).map(str::to_string),
            collection,
        });
    }
    let mut selects = Vec::new();
    for (i, n) in obj
        .get("select")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let root = at_root && matches!(iter, Iter::Focus);
        selects.push(compile_select(
            n,
            &format!("{at}.select[{i}]"),
            columns,
            rt,
            root,
        )?);
    }
    let mut union = Vec::new();
    let mut union_columns: Option<Vec<Column>> = None;
    for (i, u) in obj
        .get("unionAll")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut mine = Vec::new();
        let root = at_root && matches!(iter, Iter::Focus);
        union.push(compile_select(
            u,
            &format!("{at}.unionAll[{i}]"),
            &mut mine,
            rt,
            root,
        )?);
        let names = |c: &[Column]| c.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
        match &union_columns {
            None => union_columns = Some(mine),
            Some(first) if names(first) == names(&mine) => {}
            Some(first) => {
                return bad(format!(
                    "{at}.unionAll[{i}]: its columns ({}) are not those of the first branch ({}), in the same order",
                    names(&mine).join(", "),
                    names(first).join(", ")
                ));
            }
        }
    }
    columns.extend(union_columns.unwrap_or_default());
    if cols.is_empty() && selects.is_empty() && union.is_empty() {
        return bad(format!(
            "{at}: a select needs a column, a select or a unionAll"
        ));
    }
    Ok(Select {
        iter,
        cols,
        selects,
        union,
        width: columns.len() - start,
    })
}

/// One resource's run.
struct Run<'v, 'a> {
    view: &'v View,
    resource: &'a Value,
    /// The evaluation context of the last `%rowIndex` (made again only when it changes).
    ctx: std::cell::RefCell<Option<(usize, Context<'a>)>>,
}

impl<'a> Run<'_, 'a> {
    fn eval(&self, e: &Expr, focus: &Item<'a>, index: usize) -> R<Vec<Item<'a>>> {
        self.eval_on(e, std::slice::from_ref(focus), index)
    }

    fn eval_on(&self, e: &Expr, input: &[Item<'a>], index: usize) -> R<Vec<Item<'a>>> {
        let mut cached = self.ctx.borrow_mut();
        if cached.as_ref().is_none_or(|(i, _)| *i != index) {
            let mut ctx: Context<'a> = Context::new();
            ctx.resource = Some(self.resource);
            for (k, v) in &self.view.constants {
                ctx.variables
                    .insert(k.clone(), vec![Item::Value(v.clone())]);
            }
            ctx.variables.insert(
                "rowIndex".into(),
                vec![Item::Value(Val::Integer(index as i64))],
            );
            *cached = Some((index, ctx));
        }
        let (_, ctx) = cached.as_ref().expect("made above");
        issho_fhirpath::evaluate_items(e, input, self.resource, ctx)
            .map_err(|e| ViewError(e.to_string()))
    }

    /// The nodes `repeat` reaches from `focus`, depth first.
    fn repeat(&self, paths: &[Expr], focus: &Item<'a>, out: &mut Vec<Item<'a>>) -> R<()> {
        if out.len() > 1_000_000 {
            return bad("repeat reaches more than a million nodes");
        }
        for p in paths {
            for n in self.eval(p, focus, 0)? {
                out.push(n.clone());
                self.repeat(paths, &n, out)?;
            }
        }
        Ok(())
    }

    fn select(&self, s: &Select, focus: &Item<'a>, index: usize) -> R<Vec<Vec<Value>>> {
        let foci: Vec<(Item<'a>, usize)> = match &s.iter {
            Iter::Focus => vec![(focus.clone(), index)],
            Iter::ForEach(e) | Iter::ForEachOrNull(e) => self
                .eval(e, focus, index)?
                .into_iter()
                .enumerate()
                .map(|(i, x)| (x, i))
                .collect(),
            Iter::Repeat(paths) => {
                let mut nodes = Vec::new();
                self.repeat(paths, focus, &mut nodes)?;
                nodes.into_iter().enumerate().map(|(i, x)| (x, i)).collect()
            }
        };
        if foci.is_empty() {
            if !matches!(s.iter, Iter::ForEachOrNull(_)) {
                return Ok(Vec::new());
            }
            // One row for nothing: its columns over no focus (`%rowIndex` is 0), the nested
            // selects' null.
            let mut row = Vec::with_capacity(s.width);
            for c in &s.cols {
                let got = self.eval_on(&c.path, &[], 0)?;
                row.push(match got.as_slice() {
                    [one] if !c.collection => json(one),
                    _ if c.collection => Value::Array(got.iter().map(json).collect()),
                    _ => Value::Null,
                });
            }
            row.resize(s.width, Value::Null);
            return Ok(vec![row]);
        }
        let mut rows = Vec::new();
        for (f, i) in &foci {
            let mut cells = Vec::with_capacity(s.cols.len());
            for c in &s.cols {
                let mut got: Vec<Value> = match &c.direct {
                    Some(d) => d.eval(self.resource),
                    None => self.eval(&c.path, f, *i)?.iter().map(json).collect(),
                };
                cells.push(if c.collection {
                    Value::Array(got)
                } else {
                    match got.len() {
                        0 => Value::Null,
                        1 => got.pop().expect("one"),
                        _ => {
                            return bad(format!(
                                "the column {} has more than one value; declare it a collection",
                                c.name
                            ));
                        }
                    }
                });
            }
            let mut parts: Vec<Vec<Vec<Value>>> = vec![vec![cells]];
            for n in &s.selects {
                parts.push(self.select(n, f, *i)?);
            }
            if !s.union.is_empty() {
                let mut all = Vec::new();
                for u in &s.union {
                    all.extend(self.select(u, f, *i)?);
                }
                parts.push(all);
            }
            product(&parts, &mut rows);
        }
        Ok(rows)
    }
}

/// Every combination of one row from each part, concatenated in order.
fn product(parts: &[Vec<Vec<Value>>], out: &mut Vec<Vec<Value>>) {
    let mut acc: Vec<Vec<Value>> = vec![Vec::new()];
    for p in parts {
        let mut next = Vec::with_capacity(acc.len() * p.len());
        for a in &acc {
            for r in p {
                let mut row = a.clone();
                row.extend(r.iter().cloned());
                next.push(row);
            }
        }
        acc = next;
        if acc.is_empty() {
            return;
        }
    }
    out.extend(acc);
}

/// An item as a JSON value of a row.
fn json(it: &Item<'_>) -> Value {
    match it {
        Item::Node(n) => n.value.clone(),
        Item::Value(v) => match v {
            Val::Boolean(b) => Value::Bool(*b),
            Val::Integer(i) => Value::from(*i),
            Val::Decimal(d) => serde_json::from_str(&d.to_string())
                .unwrap_or_else(|_| Value::String(d.to_string())),
            other => Value::String(other.to_string()),
        },
    }
}
