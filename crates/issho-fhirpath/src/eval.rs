//! The evaluator: paths with FHIR type information, operators and the function library.

use crate::Error;
use crate::datetime::{
    self, PartialDateTime, Precision, precision_from_date_digits, precision_from_time_digits,
};
use crate::decimal::Decimal;
use crate::parser::{BinOp, Expr, TypeSpec, calendar_unit};
use crate::ucum;
use crate::value::{Item, Location, NULL, Node, NodeType, Quantity, Val};
use issho_model::{TypeKind, r4};
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

type R<T> = Result<T, Error>;

/// Resolves a reference (`Patient/123`, a canonical URL, a `urn:uuid:`) to a resource.
pub type Resolver<'a> = dyn Fn(&str) -> Option<&'a Value> + 'a;
/// Answers `conformsTo(url)` for a resource; `None` when the profile is unknown.
pub type ConformsTo<'a> = dyn Fn(&Value, &str) -> Option<bool> + 'a;
/// Answers `memberOf(valueSet)` for a code, Coding or CodeableConcept (given as JSON).
pub type MemberOf<'a> = dyn Fn(&Value, &str) -> Option<bool> + 'a;
/// Receives `trace(name)` output.
pub type Tracer<'a> = dyn Fn(&str, &[Item<'_>]) + 'a;

/// Evaluation environment: variables and hooks. `Context::default()` is enough for most uses.
#[derive(Default)]
pub struct Context<'a> {
    /// `%resource` when it differs from the evaluation root (e.g. a contained resource).
    pub resource: Option<&'a Value>,
    /// `%rootResource` when it differs from `%resource` (e.g. the Bundle).
    pub root_resource: Option<&'a Value>,
    /// External constants `%name`.
    pub variables: HashMap<String, Vec<Item<'a>>>,
    pub resolver: Option<&'a Resolver<'a>>,
    pub conforms_to: Option<&'a ConformsTo<'a>>,
    pub member_of: Option<&'a MemberOf<'a>>,
    pub tracer: Option<&'a Tracer<'a>>,
}

impl<'a> Context<'a> {
    pub fn new() -> Context<'a> {
        Context::default()
    }

    /// Set the external constant `%name`.
    pub fn with_variable(mut self, name: impl Into<String>, value: Vec<Item<'a>>) -> Self {
        self.variables.insert(name.into(), value);
        self
    }
}

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(Error::Eval(msg.into()))
}

/// SQL on FHIR's key of the resource a reference names (`Type/id`; relative or absolute, a
/// version dropped), `None` when it names no resource or another type than `want`.
pub fn reference_key(reference: &str, want: Option<&str>) -> Option<String> {
    let r = reference.split("/_history/").next().unwrap_or(reference);
    let mut parts = r.rsplit('/');
    let id = parts.next()?;
    let t = parts.next()?;
    if !issho_model::r4().is_resource_type(t) || want.is_some_and(|w| w != t) {
        return None;
    }
    Some(format!("{t}/{id}"))
}

/// Evaluate `expr` with `root` as the input and `%context`.
///
/// The context may live longer than the root (one `Context` serves many resources).
pub fn evaluate<'a, 'c: 'a>(expr: &Expr, root: &'a Value, ctx: &Context<'c>) -> R<Vec<Item<'a>>> {
    let root_item = Item::Node(root_node(root, Location::root()));
    let env = Env {
        ctx,
        root: root_item.clone(),
        now: std::cell::OnceCell::new(),
    };
    let frame = Frame {
        this: Some(root_item.clone()),
        index: None,
        total: None,
    };
    env.eval(expr, std::slice::from_ref(&root_item), &frame)
}

/// Evaluate against explicit input items (e.g. the result of another evaluation).
pub fn evaluate_items<'a, 'c: 'a>(
    expr: &Expr,
    input: &[Item<'a>],
    root: &'a Value,
    ctx: &Context<'c>,
) -> R<Vec<Item<'a>>> {
    let env = Env {
        ctx,
        root: Item::Node(root_node(root, Location::root())),
        now: std::cell::OnceCell::new(),
    };
    let frame = Frame {
        this: (input.len() == 1).then(|| input[0].clone()),
        index: None,
        total: None,
    };
    env.eval(expr, input, &frame)
}

/// A node for a resource (or any JSON value): typed from `resourceType` when present.
pub fn root_node<'a>(v: &'a Value, location: Location<'a>) -> Node<'a> {
    let ty = v
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(NodeType::named);
    Node {
        value: v,
        ext: None,
        ty,
        location,
    }
}

struct Env<'a, 'x, 'c: 'a> {
    ctx: &'x Context<'c>,
    root: Item<'a>,
    /// The evaluation's `now()`, read from the clock the first time it is asked (the same
    /// for every call within one evaluation).
    now: std::cell::OnceCell<PartialDateTime>,
}

#[derive(Clone)]
struct Frame<'a> {
    this: Option<Item<'a>>,
    index: Option<usize>,
    total: Option<Vec<Item<'a>>>,
}

impl<'a> Frame<'a> {
    fn this_coll(&self) -> Vec<Item<'a>> {
        self.this.iter().cloned().collect()
    }
    fn for_item(&self, item: &Item<'a>, index: usize) -> Frame<'a> {
        Frame {
            this: Some(item.clone()),
            index: Some(index),
            total: self.total.clone(),
        }
    }
}

fn bool_item<'a>(b: bool) -> Vec<Item<'a>> {
    vec![Item::Value(Val::Boolean(b))]
}

fn opt_bool<'a>(b: Option<bool>) -> Vec<Item<'a>> {
    b.map(bool_item).unwrap_or_default()
}

fn val_item<'a>(v: Val<'a>) -> Vec<Item<'a>> {
    vec![Item::Value(v)]
}

const QUANTITY_TYPES: [&str; 7] = [
    "Quantity",
    "Age",
    "Duration",
    "Distance",
    "Count",
    "SimpleQuantity",
    "MoneyQuantity",
];

/// The System value of an item (a primitive node's value, a Quantity node as a quantity).
pub(crate) fn prim<'a>(item: &Item<'a>) -> Option<Val<'a>> {
    match item {
        Item::Value(v) => Some(v.clone()),
        Item::Node(n) => node_prim(n),
    }
}

fn node_prim<'a>(n: &Node<'a>) -> Option<Val<'a>> {
    let code = n.ty.map(|t| t.code).unwrap_or("");
    match n.value {
        Value::Bool(b) => Some(Val::Boolean(*b)),
        Value::Number(num) => {
            let text = num.to_string();
            let int_type = matches!(
                code,
                "integer" | "positiveInt" | "unsignedInt" | "integer64"
            ) || (code.is_empty() && !text.contains(['.', 'e', 'E']));
            if int_type && let Ok(i) = text.parse::<i64>() {
                return Some(Val::Integer(i));
            }
            Decimal::parse(&text).map(Val::Decimal)
        }
        Value::String(s) => Some(match code {
            "date" => PartialDateTime::parse_date(s)
                .map(Val::Date)
                .unwrap_or(Val::String(Cow::Borrowed(s))),
            "dateTime" | "instant" => PartialDateTime::parse_datetime(s)
                .map(Val::DateTime)
                .unwrap_or(Val::String(Cow::Borrowed(s))),
            "time" => PartialDateTime::parse_time(s)
                .map(Val::Time)
                .unwrap_or(Val::String(Cow::Borrowed(s))),
            _ => Val::String(Cow::Borrowed(s)),
        }),
        Value::Object(o) if QUANTITY_TYPES.contains(&code) => {
            let value = match o.get("value")? {
                Value::Number(n) => Decimal::parse(&n.to_string())?,
                _ => return None,
            };
            let ucum = o.get("system").and_then(Value::as_str) == Some("http://unitsofmeasure.org");
            let unit = if ucum {
                o.get("code").or(o.get("unit"))
            } else {
                o.get("unit").or(o.get("code"))
            }
            .and_then(Value::as_str)
            .unwrap_or("1");
            Some(Val::Quantity(Quantity::ucum(value, unit)))
        }
        _ => None,
    }
}

/// FHIR type code of a node, inferred from JSON when the model does not know it.
fn node_type_code<'x>(n: &'x Node<'_>) -> &'x str {
    if let Some(t) = n.ty {
        return t.code;
    }
    match n.value {
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(x) => {
            if x.to_string().contains('.') {
                "decimal"
            } else {
                "integer"
            }
        }
        Value::Object(o) => o.get("resourceType").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    }
}

fn is_system_type(name: &str) -> bool {
    matches!(
        name,
        "Boolean" | "Integer" | "Decimal" | "String" | "Date" | "DateTime" | "Time" | "Quantity"
    )
}

/// Whether FHIR type `code` is `name` or derives from it.
fn derives_from(code: &str, name: &str) -> bool {
    let mut cur = Some(code.to_string());
    let mut guard = 0;
    while let Some(c) = cur {
        if c == name {
            return true;
        }
        guard += 1;
        if guard > 10 {
            break;
        }
        cur = r4().type_def(&c).and_then(|t| t.base.clone());
        if cur.is_none() && c == "BackboneElement" {
            cur = Some("Element".into());
        }
    }
    false
}

fn check_type_known(spec: &TypeSpec) -> R<()> {
    let known = match spec.namespace.as_deref() {
        Some("System") => is_system_type(&spec.name),
        Some("FHIR") => r4().type_def(&spec.name).is_some(),
        Some(ns) => return err(format!("unknown type namespace {ns}")),
        None => is_system_type(&spec.name) || r4().type_def(&spec.name).is_some(),
    };
    if known {
        Ok(())
    } else {
        err(format!("unknown type {}", spec.name))
    }
}

fn is_type(item: &Item<'_>, spec: &TypeSpec) -> bool {
    match item {
        Item::Value(v) => spec.namespace.as_deref() != Some("FHIR") && v.type_name() == spec.name,
        Item::Node(n) => {
            if spec.namespace.as_deref() == Some("System") {
                return false;
            }
            derives_from(node_type_code(n), &spec.name)
        }
    }
}

fn type_spec_of(e: &Expr) -> Option<TypeSpec> {
    match e {
        Expr::Ident(n) => Some(TypeSpec {
            namespace: None,
            name: n.clone(),
        }),
        Expr::Member(t, n) => match &**t {
            Expr::Ident(ns) => Some(TypeSpec {
                namespace: Some(ns.clone()),
                name: n.clone(),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// The type information of the child `key` of a node of type `parent`.
fn child_type(parent: Option<NodeType>, key: &str, value: &Value) -> Option<(NodeType, bool)> {
    let p = parent?;
    let owner = p.owner?;
    let c = r4().child(owner, p.prefix, key)?;
    Some(type_of_child(c, value))
}

/// The node type of a resolved child (`value`: its JSON, for a contained resource's type).
fn type_of_child(c: issho_model::Child<'static>, value: &Value) -> (NodeType, bool) {
    let e = c.element;
    let nt = if e.content_ref.is_some() {
        NodeType {
            code: "BackboneElement",
            owner: Some(c.owner),
            prefix: e.path.as_str(),
        }
    } else if e.is_backbone() {
        NodeType {
            code: c.type_code,
            owner: Some(c.owner),
            prefix: e.path.as_str(),
        }
    } else if matches!(c.type_code, "Resource" | "DomainResource") {
        let inner = match value {
            Value::Array(a) => a.first().unwrap_or(&NULL),
            v => v,
        };
        inner
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(NodeType::named)
            .unwrap_or(NodeType {
                code: c.type_code,
                owner: None,
                prefix: "",
            })
    } else {
        match r4().type_def(c.type_code) {
            Some(t) => NodeType {
                code: t.name.as_str(),
                owner: Some(t),
                prefix: "",
            },
            None => NodeType {
                code: c.type_code,
                owner: None,
                prefix: "",
            },
        }
    };
    (nt, e.is_choice)
}

impl NodeType {
    /// The definition and type of the child with JSON key `key` (`name`, or a choice key such
    /// as `valueQuantity`). `None` when the model does not know the child.
    pub fn child(&self, key: &str) -> Option<(&'static issho_model::ElementDef, NodeType)> {
        let owner = self.owner?;
        let c = r4().child(owner, self.prefix, key)?;
        let (nt, _) = type_of_child(c, &NULL);
        Some((c.element, nt))
    }
}

/// Push the node(s) found at `key` of `obj` (with the `_key` sibling for primitives).
fn push_children<'a>(
    parent: &Node<'a>,
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    ty: Option<NodeType>,
    out: &mut Vec<Item<'a>>,
) {
    let val = obj.get_key_value(key);
    let ext_kv = obj.get_key_value(&format!("_{key}"));
    let ext = ext_kv.map(|(_, v)| v);
    let ext_key: Option<&'a str> = ext_kv.map(|(k, _)| k.as_str());
    let key_ref: &'a str = match val {
        Some((k, _)) => k.as_str(),
        None => match obj.get_key_value(&format!("_{key}")) {
            Some((k, _)) => &k[1..],
            None => return,
        },
    };
    let v = val.map(|(_, v)| v);
    let resource_typed = |x: &'a Value, t: Option<NodeType>| -> Option<NodeType> {
        match t {
            Some(t) if matches!(t.code, "Resource" | "DomainResource") || t.owner.is_none() => x
                .get("resourceType")
                .and_then(Value::as_str)
                .and_then(NodeType::named)
                .or(Some(t)),
            Some(t) if t.owner.is_some_and(|o| o.kind == TypeKind::Resource) => x
                .get("resourceType")
                .and_then(Value::as_str)
                .and_then(NodeType::named)
                .or(Some(t)),
            other => other,
        }
    };
    match (v, ext) {
        (Some(Value::Array(items)), e) | (None, e @ Some(Value::Array(items))) => {
            let exts = e.and_then(Value::as_array);
            let vals = if let Some(Value::Array(a)) = v {
                Some(a)
            } else {
                None
            };
            let n = items.len().max(exts.map_or(0, Vec::len));
            for i in 0..n {
                let value = vals.and_then(|a| a.get(i)).unwrap_or(&NULL);
                let ext = exts.and_then(|a| a.get(i)).filter(|x| !x.is_null());
                if value.is_null() && ext.is_none() {
                    continue;
                }
                out.push(Item::Node(Node {
                    value,
                    ext,
                    ty: resource_typed(value, ty),
                    location: parent.location.child(key_ref, ext_key, Some(i)),
                }));
            }
        }
        (v, ext) => {
            let value = v.unwrap_or(&NULL);
            let ext = ext.filter(|x| x.is_object());
            if value.is_null() && ext.is_none() {
                return;
            }
            out.push(Item::Node(Node {
                value,
                ext,
                ty: resource_typed(value, ty),
                location: parent.location.child(key_ref, ext_key, None),
            }));
        }
    }
}

/// Children of `item` named `name` (FHIRPath member access, with choice types).
fn member<'a>(item: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    let n = match item {
        Item::Node(n) => n,
        Item::Value(Val::TypeInfo {
            namespace,
            name: tn,
        }) => {
            match name {
                "namespace" => out.push(Item::string(*namespace)),
                "name" => out.push(Item::string(tn.to_string())),
                _ => {}
            }
            return;
        }
        Item::Value(Val::Quantity(q)) => {
            match name {
                "value" => out.push(Item::Value(Val::Decimal(q.value))),
                "unit" | "code" => out.push(Item::string(q.unit.clone())),
                _ => {}
            }
            return;
        }
        _ => return,
    };
    let obj = match n.value {
        Value::Object(o) => o,
        _ => {
            // primitive: `id` and `extension` live in the `_name` sibling
            if let Some(Value::Object(e)) = n.ext
                && (name == "extension" || name == "id")
            {
                let ty = if name == "extension" {
                    NodeType::named("Extension")
                } else {
                    NodeType::named("string")
                };
                // locations of these point into the `_name` sibling object
                let holder = Node {
                    value: n.value,
                    ext: None,
                    ty: None,
                    location: n.location.ext_sibling(),
                };
                push_children(&holder, e, name, ty, out);
            }
            return;
        }
    };
    if obj.contains_key(name) || obj.contains_key(&format!("_{name}")) {
        let ty = child_type(n.ty, name, obj.get(name).unwrap_or(&NULL)).map(|(t, _)| t);
        push_children(n, obj, name, ty, out);
        return;
    }
    // choice type: valueQuantity, valueString… (or only `_valueString`: a primitive with
    // extensions and no value)
    if n.ty.is_some() {
        for (k, v) in obj {
            let (k, v) = match k.strip_prefix('_') {
                Some(base) if obj.contains_key(base) => continue,
                Some(base) => (base, &NULL),
                None => (k.as_str(), v),
            };
            if k.len() > name.len()
                && k.starts_with(name)
                && k.as_bytes()[name.len()].is_ascii_uppercase()
                && let Some((t, true)) = child_type(n.ty, k, v)
            {
                push_children(n, obj, k, Some(t), out);
            }
        }
    }
}

/// All child nodes of an item.
fn children<'a>(item: &Item<'a>, out: &mut Vec<Item<'a>>) {
    let Item::Node(n) = item else { return };
    let Value::Object(obj) = n.value else { return };
    for (k, v) in obj {
        if k == "resourceType" {
            continue;
        }
        if let Some(base) = k.strip_prefix('_') {
            if obj.contains_key(base) {
                continue;
            }
            let ty = child_type(n.ty, base, &NULL).map(|(t, _)| t);
            push_children(n, obj, base, ty, out);
            continue;
        }
        let ty = child_type(n.ty, k, v).map(|(t, _)| t);
        push_children(n, obj, k, ty, out);
    }
}

fn same_node(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Node(x), Item::Node(y)) => {
            std::ptr::eq(x.value, y.value)
                && match (x.ext, y.ext) {
                    (Some(p), Some(q)) => std::ptr::eq(p, q),
                    (None, None) => !x.value.is_null(),
                    _ => false,
                }
        }
        _ => false,
    }
}

// ---------------------------------------------------------------- comparisons

fn as_decimal(v: &Val<'_>) -> Option<Decimal> {
    match v {
        Val::Integer(i) => Some(Decimal::from_int(*i)),
        Val::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// A calendar duration unit as the UCUM unit it equals (`None` for year and month).
fn calendar_to_ucum(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "week" => "wk",
        "day" => "d",
        "hour" => "h",
        "minute" => "min",
        "second" => "s",
        "millisecond" => "ms",
        _ => return None,
    })
}

/// Both quantities in a common unit: (value a, value b). `None` when not comparable.
fn quantity_common(a: &Quantity, b: &Quantity) -> Option<(Decimal, Decimal)> {
    if a.calendar && b.calendar && a.unit != b.unit {
        let months = |q: &Quantity| match q.unit.as_str() {
            "year" => q.value.checked_mul(Decimal::from_int(12)),
            "month" => Some(q.value),
            _ => None,
        };
        if let (Some(x), Some(y)) = (months(a), months(b)) {
            return Some((x, y));
        }
    }
    if a.unit == b.unit && a.calendar == b.calendar {
        return Some((a.value, b.value));
    }
    let unit = |q: &'_ Quantity| -> Option<String> {
        if q.calendar {
            calendar_to_ucum(&q.unit).map(str::to_string)
        } else {
            Some(q.unit.clone())
        }
    };
    let (ua, ub) = (unit(a)?, unit(b)?);
    if ua == ub {
        return Some((a.value, b.value));
    }
    let (ca, cb) = (ucum::canonical(&ua)?, ucum::canonical(&ub)?);
    if ca.dims != cb.dims {
        return None;
    }
    Some((
        a.value.checked_mul(ca.factor)?,
        b.value.checked_mul(cb.factor)?,
    ))
}

fn quantity_cmp(a: &Quantity, b: &Quantity) -> Option<Ordering> {
    let (x, y) = quantity_common(a, b)?;
    Some(x.cmp_value(&y))
}

fn eq_vals(a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    use Val::*;
    match (a, b) {
        (Integer(x), Integer(y)) => Some(x == y),
        (Integer(_) | Decimal(_), Integer(_) | Decimal(_)) => {
            Some(as_decimal(a)? == as_decimal(b)?)
        }
        (String(x), String(y)) => Some(x == y),
        (Boolean(x), Boolean(y)) => Some(x == y),
        (Date(x) | DateTime(x), Date(y) | DateTime(y)) => {
            x.compare(y, false).map(|o| o == Ordering::Equal)
        }
        (Time(x), Time(y)) => x.compare(y, true).map(|o| o == Ordering::Equal),
        (Quantity(x), Quantity(y)) => quantity_cmp(x, y).map(|o| o == Ordering::Equal),
        (
            TypeInfo {
                namespace: n1,
                name: a1,
            },
            TypeInfo {
                namespace: n2,
                name: a2,
            },
        ) => Some(n1 == n2 && a1 == a2),
        _ => Some(false),
    }
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn equiv_decimal(x: Decimal, y: Decimal) -> bool {
    let s = x.scale.min(y.scale);
    x.round(s) == y.round(s)
}

fn equiv_vals(a: &Val<'_>, b: &Val<'_>) -> bool {
    use Val::*;
    match (a, b) {
        (Integer(_) | Decimal(_), Integer(_) | Decimal(_)) => {
            match (as_decimal(a), as_decimal(b)) {
                (Some(x), Some(y)) => equiv_decimal(x, y),
                _ => false,
            }
        }
        (String(x), String(y)) => normalize_ws(x) == normalize_ws(y),
        (Date(x) | DateTime(x), Date(y) | DateTime(y)) => {
            x.compare(y, false) == Some(Ordering::Equal)
        }
        (Time(x), Time(y)) => x.compare(y, true) == Some(Ordering::Equal),
        (Quantity(x), Quantity(y)) => match quantity_common(x, y) {
            Some((p, q)) => {
                let s = x.value.scale.min(y.value.scale);
                equiv_decimal(p.round(s.max(p.scale.min(q.scale))), q)
                    || p.cmp_value(&q) == Ordering::Equal
            }
            None => false,
        },
        _ => eq_vals(a, b) == Some(true),
    }
}

fn json_equiv(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => normalize_ws(x) == normalize_ws(y),
        (Value::Number(x), Value::Number(y)) => {
            match (
                Decimal::parse(&x.to_string()),
                Decimal::parse(&y.to_string()),
            ) {
                (Some(p), Some(q)) => equiv_decimal(p, q),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equiv(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |o: &serde_json::Map<String, Value>| o.keys().filter(|k| *k != "id").count();
            keys(x) == keys(y)
                && x.iter()
                    .filter(|(k, _)| *k != "id")
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equiv(v, w)))
        }
        _ => a == b,
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (
                Decimal::parse(&x.to_string()),
                Decimal::parse(&y.to_string()),
            ) {
                (Some(p), Some(q)) => p == q,
                _ => x == y,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn is_complex(item: &Item<'_>) -> bool {
    matches!(item, Item::Node(n) if n.value.is_object())
        && !matches!(item, Item::Node(n) if n.ty.is_some_and(|t| QUANTITY_TYPES.contains(&t.code)))
}

pub(crate) fn eq_items(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    if is_complex(a) || is_complex(b) {
        return Some(match (a, b) {
            (Item::Node(x), Item::Node(y)) => json_eq(x.value, y.value),
            _ => false,
        });
    }
    match (prim(a), prim(b)) {
        (Some(x), Some(y)) => eq_vals(&x, &y),
        _ => None,
    }
}

fn equiv_items(a: &Item<'_>, b: &Item<'_>) -> bool {
    if is_complex(a) || is_complex(b) {
        return match (a, b) {
            (Item::Node(x), Item::Node(y)) => json_equiv(x.value, y.value),
            _ => false,
        };
    }
    match (prim(a), prim(b)) {
        (Some(x), Some(y)) => equiv_vals(&x, &y),
        (None, None) => true,
        _ => false,
    }
}

fn contains_item(coll: &[Item<'_>], x: &Item<'_>) -> bool {
    coll.iter().any(|y| eq_items(y, x) == Some(true))
}

fn distinct<'a>(items: Vec<Item<'a>>) -> Vec<Item<'a>> {
    let mut out: Vec<Item<'a>> = Vec::with_capacity(items.len());
    for it in items {
        if !contains_item(&out, &it) {
            out.push(it);
        }
    }
    out
}

fn compare_vals(a: &Val<'_>, b: &Val<'_>) -> R<Option<Ordering>> {
    use Val::*;
    Ok(match (a, b) {
        (Integer(x), Integer(y)) => Some(x.cmp(y)),
        (Integer(_) | Decimal(_), Integer(_) | Decimal(_)) => {
            Some(as_decimal(a).unwrap().cmp_value(&as_decimal(b).unwrap()))
        }
        (String(x), String(y)) => Some(x.cmp(y)),
        (Date(x) | DateTime(x), Date(y) | DateTime(y)) => x.compare(y, false),
        (Time(x), Time(y)) => x.compare(y, true),
        (Quantity(x), Quantity(y)) => quantity_cmp(x, y),
        _ => {
            return err(format!(
                "cannot compare {} with {}",
                a.type_name(),
                b.type_name()
            ));
        }
    })
}

// ---------------------------------------------------------------- arithmetic

fn check_int(v: i128) -> Option<Val<'static>> {
    i64::try_from(v).ok().map(Val::Integer)
}

fn date_add<'a>(d: &PartialDateTime, q: &Quantity, sign: i64, kind: u8) -> R<Val<'a>> {
    let unit: &str = if q.calendar {
        q.unit.as_str()
    } else if let Some(u) = calendar_unit(&q.unit) {
        // a calendar keyword written as a string unit: 1 'month'
        u
    } else {
        match q.unit.as_str() {
            "wk" => "week",
            "d" => "day",
            "h" => "hour",
            "min" => "minute",
            "s" => "second",
            "ms" => "millisecond",
            u => {
                return err(format!(
                    "cannot add a quantity in '{u}' to a date (use calendar units)"
                ));
            }
        }
    };
    let (amount, unit) = if unit == "second" && !q.value.is_integer() {
        (
            q.value
                .checked_mul(Decimal::from_int(1000))
                .and_then(|v| v.to_i64()),
            "millisecond",
        )
    } else {
        (q.value.to_i64(), unit)
    };
    let Some(amount) = amount else {
        return err("date arithmetic overflow");
    };
    let amount = amount * sign;
    let r = match kind {
        2 => d.add_time(amount, unit),
        _ => {
            if kind == 0 && !matches!(unit, "year" | "month" | "week" | "day") {
                // a Date only moves by whole days
                let per_day = match unit {
                    "hour" => 24,
                    "minute" => 1440,
                    "second" => 86_400,
                    _ => 86_400_000,
                };
                d.add(amount / per_day, "day")
            } else {
                d.add(amount, unit)
            }
        }
    };
    let Some(r) = r else {
        return err("date arithmetic out of range");
    };
    Ok(match kind {
        0 => Val::Date(r),
        1 => Val::DateTime(r),
        _ => Val::Time(r),
    })
}

fn quantity_unit_mul(a: &str, b: &str, div: bool) -> String {
    let wrap = |u: &str| {
        if u.contains(['.', '/']) {
            format!("({u})")
        } else {
            u.to_string()
        }
    };
    if div {
        if b == "1" {
            return a.to_string();
        }
        if a == b {
            return "1".into();
        }
        let r = format!("{}/{}", wrap(a), wrap(b));
        if let Some(c) = ucum::canonical(&r)
            && c.dims == [0; 8]
            && c.factor == Decimal::from_int(1)
        {
            return "1".into();
        }
        r
    } else {
        match (a, b) {
            ("1", x) | (x, "1") => x.to_string(),
            _ => format!("{}.{}", wrap(a), wrap(b)),
        }
    }
}

fn arith<'a>(op: BinOp, a: &Val<'a>, b: &Val<'a>) -> R<Option<Val<'a>>> {
    use Val::*;
    let type_err = || {
        err(format!(
            "operator {op:?} is not defined for {} and {}",
            a.type_name(),
            b.type_name()
        ))
    };
    Ok(match (op, a, b) {
        (BinOp::Add, String(x), String(y)) => Some(String(Cow::Owned(format!("{x}{y}")))),
        (BinOp::Add | BinOp::Sub, Date(d), Quantity(q)) => {
            Some(date_add(d, q, if op == BinOp::Sub { -1 } else { 1 }, 0)?)
        }
        (BinOp::Add | BinOp::Sub, DateTime(d), Quantity(q)) => {
            Some(date_add(d, q, if op == BinOp::Sub { -1 } else { 1 }, 1)?)
        }
        (BinOp::Add | BinOp::Sub, Time(d), Quantity(q)) => {
            Some(date_add(d, q, if op == BinOp::Sub { -1 } else { 1 }, 2)?)
        }
        (BinOp::Add | BinOp::Sub, Quantity(x), Quantity(y)) => {
            let yv = if x.unit == y.unit && x.calendar == y.calendar {
                Some(y.value)
            } else {
                match (
                    ucum::canonical(&x.unit).filter(|_| !x.calendar),
                    ucum::canonical(&y.unit).filter(|_| !y.calendar),
                ) {
                    (Some(cx), Some(cy)) if cx.dims == cy.dims => y
                        .value
                        .checked_mul(cy.factor)
                        .and_then(|v| v.checked_div(cx.factor)),
                    _ => None,
                }
            };
            let Some(yv) = yv else { return Ok(None) };
            let v = if op == BinOp::Add {
                x.value.checked_add(yv)
            } else {
                x.value.checked_sub(yv)
            };
            v.map(|v| {
                Quantity(crate::value::Quantity {
                    value: v,
                    unit: x.unit.clone(),
                    calendar: x.calendar,
                })
            })
        }
        (BinOp::Mul | BinOp::Div, Quantity(x), Quantity(y)) => {
            let div = op == BinOp::Div;
            let v = if div {
                x.value.checked_div(y.value)
            } else {
                x.value.checked_mul(y.value)
            };
            v.map(|v| {
                Quantity(crate::value::Quantity::ucum(
                    v,
                    quantity_unit_mul(&x.unit, &y.unit, div),
                ))
            })
        }
        (BinOp::Mul | BinOp::Div, Quantity(x), Integer(_) | Decimal(_)) => {
            let n = as_decimal(b).unwrap();
            let v = if op == BinOp::Div {
                x.value.checked_div(n)
            } else {
                x.value.checked_mul(n)
            };
            v.map(|v| {
                Quantity(crate::value::Quantity {
                    value: v,
                    unit: x.unit.clone(),
                    calendar: x.calendar,
                })
            })
        }
        (BinOp::Mul, Integer(_) | Decimal(_), Quantity(y)) => {
            let n = as_decimal(a).unwrap();
            n.checked_mul(y.value).map(|v| {
                Quantity(crate::value::Quantity {
                    value: v,
                    unit: y.unit.clone(),
                    calendar: y.calendar,
                })
            })
        }
        (_, Integer(x), Integer(y)) => {
            let (x, y) = (*x as i128, *y as i128);
            match op {
                BinOp::Add => check_int(x + y),
                BinOp::Sub => check_int(x - y),
                BinOp::Mul => check_int(x * y),
                BinOp::Div => {
                    if y == 0 {
                        None
                    } else {
                        crate::decimal::Decimal::from_int(x as i64)
                            .checked_div(crate::decimal::Decimal::from_int(y as i64))
                            .map(Decimal)
                    }
                }
                BinOp::IntDiv => {
                    if y == 0 {
                        None
                    } else {
                        check_int(x / y)
                    }
                }
                BinOp::Mod => {
                    if y == 0 {
                        None
                    } else {
                        check_int(x % y)
                    }
                }
                _ => return type_err(),
            }
        }
        (_, Integer(_) | Decimal(_), Integer(_) | Decimal(_)) => {
            let (x, y) = (as_decimal(a).unwrap(), as_decimal(b).unwrap());
            match op {
                BinOp::Add => x.checked_add(y).map(Decimal),
                BinOp::Sub => x.checked_sub(y).map(Decimal),
                BinOp::Mul => x.checked_mul(y).map(Decimal),
                BinOp::Div => x.checked_div(y).map(Decimal),
                BinOp::IntDiv => {
                    if y.is_zero() {
                        None
                    } else {
                        x.checked_div(y)
                            .and_then(|q| q.truncate(0).to_i64())
                            .map(Integer)
                    }
                }
                BinOp::Mod => {
                    if y.is_zero() {
                        None
                    } else {
                        let q = x.checked_div(y).map(|q| q.truncate(0));
                        q.and_then(|q| q.checked_mul(y))
                            .and_then(|p| x.checked_sub(p))
                            .map(Decimal)
                    }
                }
                _ => return type_err(),
            }
        }
        _ => return type_err(),
    })
}

// ---------------------------------------------------------------- evaluation

fn singleton<'a>(items: &[Item<'a>], what: &str) -> R<Option<Item<'a>>> {
    match items.len() {
        0 => Ok(None),
        1 => Ok(Some(items[0].clone())),
        n => err(format!("{what} expects a single item, got {n}")),
    }
}

/// Singleton evaluation as a Boolean: empty → None; a Boolean → its value; any other single
/// item → true; several items → error.
fn to_bool(items: &[Item<'_>], what: &str) -> R<Option<bool>> {
    match items.len() {
        0 => Ok(None),
        1 => Ok(Some(match prim(&items[0]) {
            Some(Val::Boolean(b)) => b,
            _ => true,
        })),
        n => err(format!("{what} expects a single boolean, got {n} items")),
    }
}

fn string_of<'a>(items: &[Item<'a>], what: &str) -> R<Option<Cow<'a, str>>> {
    match singleton(items, what)? {
        None => Ok(None),
        Some(it) => match prim(&it) {
            Some(Val::String(s)) => Ok(Some(s)),
            _ => err(format!("{what} expects a string input")),
        },
    }
}

fn regex_for(pattern: &str, full: bool) -> R<regex::Regex> {
    thread_local! {
        static CACHE: std::cell::RefCell<HashMap<(String, bool), regex::Regex>> =
            std::cell::RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(r) = c.get(&(pattern.to_string(), full)) {
            return Ok(r.clone());
        }
        let src = if full {
            format!("(?s)^(?:{pattern})$")
        } else {
            format!("(?s){pattern}")
        };
        let r = regex::Regex::new(&src)
            .map_err(|e| Error::Eval(format!("invalid regular expression: {e}")))?;
        if c.len() > 256 {
            c.clear();
        }
        c.insert((pattern.to_string(), full), r.clone());
        Ok(r)
    })
}

use issho_model::base64::{decode as base64_decode, encode as base64_encode};

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn json_escape(s: &str) -> String {
    let q = serde_json::to_string(s).unwrap_or_default();
    q[1..q.len() - 1].to_string()
}

fn json_unescape(s: &str) -> String {
    serde_json::from_str::<String>(&format!("\"{s}\"")).unwrap_or_else(|_| s.to_string())
}

fn parse_quantity_string(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (num, rest) = match s.find(' ') {
        Some(p) => (&s[..p], s[p + 1..].trim()),
        None => (s, ""),
    };
    let value = Decimal::parse(num)?;
    if rest.is_empty() {
        return Some(Quantity::ucum(value, "1"));
    }
    if rest.len() >= 2 && rest.starts_with('\'') && rest.ends_with('\'') {
        return Some(Quantity::ucum(value, &rest[1..rest.len() - 1]));
    }
    calendar_unit(rest).map(|u| Quantity {
        value,
        unit: u.to_string(),
        calendar: true,
    })
}

fn decimal_boundary(d: Decimal, precision: Option<i64>, high: bool) -> Option<Decimal> {
    let p = precision.unwrap_or(8);
    if !(0..=28).contains(&p) {
        return None;
    }
    let half = Decimal {
        mantissa: 5,
        scale: d.scale + 1,
    };
    let v = if high {
        d.checked_add(half)?
    } else {
        d.checked_sub(half)?
    };
    let p = p as u32;
    let r = if high { v.ceil(p) } else { v.floor(p) };
    Some(if r.scale < p {
        r.rescale(p).unwrap_or(r)
    } else {
        r
    })
}

fn f64_math<'a>(v: &Val<'a>, f: impl Fn(f64) -> f64) -> Option<Val<'a>> {
    let x = as_decimal(v)?.to_f64();
    Decimal::from_f64(f(x)).map(Val::Decimal)
}

impl<'a, 'c: 'a> Env<'a, '_, 'c> {
    fn eval(&self, e: &Expr, input: &[Item<'a>], fr: &Frame<'a>) -> R<Vec<Item<'a>>> {
        match e {
            Expr::Empty => Ok(Vec::new()),
            Expr::Literal(v) => Ok(vec![Item::Value(v.clone())]),
            Expr::This => Ok(fr.this_coll()),
            Expr::IndexVar => Ok(fr
                .index
                .map(|i| Item::Value(Val::Integer(i as i64)))
                .into_iter()
                .collect()),
            Expr::Total => Ok(fr.total.clone().unwrap_or_default()),
            Expr::Var(name) => self.variable(name),
            Expr::Ident(name) => {
                let mut out = Vec::new();
                for it in input {
                    let before = out.len();
                    member(it, name, &mut out);
                    if out.len() == before
                        && name.starts_with(|c: char| c.is_ascii_uppercase())
                        && let Item::Node(n) = it
                        && n.ty.is_some_and(|t| {
                            t.owner.is_some_and(|o| o.kind == TypeKind::Resource)
                                && derives_from(t.code, name)
                        })
                    {
                        out.push(it.clone());
                    }
                }
                Ok(out)
            }
            Expr::Member(target, name) => {
                let base = self.eval(target, input, fr)?;
                let mut out = Vec::new();
                for it in &base {
                    member(it, name, &mut out);
                }
                Ok(out)
            }
            Expr::Index(target, idx) => {
                let base = self.eval(target, input, fr)?;
                let i = self.eval(idx, &fr.this_coll(), fr)?;
                match singleton(&i, "indexer")?.and_then(|x| prim(&x)) {
                    Some(Val::Integer(i)) if i >= 0 => {
                        Ok(base.get(i as usize).cloned().into_iter().collect())
                    }
                    Some(Val::Integer(_)) | None => Ok(Vec::new()),
                    Some(_) => err("indexer expects an integer"),
                }
            }
            Expr::Negate(inner, neg) => {
                let v = self.eval(inner, input, fr)?;
                let Some(it) = singleton(&v, "unary operator")? else {
                    return Ok(Vec::new());
                };
                let r = match prim(&it) {
                    Some(Val::Integer(i)) => Val::Integer(if *neg { -i } else { i }),
                    Some(Val::Decimal(d)) => Val::Decimal(if *neg { -d } else { d }),
                    Some(Val::Quantity(mut q)) => {
                        if *neg {
                            q.value = -q.value;
                        }
                        Val::Quantity(q)
                    }
                    _ => return err("unary minus/plus needs a number or quantity"),
                };
                Ok(val_item(r))
            }
            Expr::TypeOp(inner, spec, is) => {
                check_type_known(spec)?;
                let v = self.eval(inner, input, fr)?;
                if !*is {
                    // The `as` operator filters a collection like ofType(): the R4 search
                    // parameters apply it to repeating elements (`component.value as
                    // Quantity`). The as() function keeps the single-item rule.
                    return Ok(v.into_iter().filter(|x| is_type(x, spec)).collect());
                }
                let Some(it) = singleton(&v, if *is { "is" } else { "as" })? else {
                    return Ok(Vec::new());
                };
                let m = is_type(&it, spec);
                Ok(if *is {
                    bool_item(m)
                } else if m {
                    vec![it]
                } else {
                    Vec::new()
                })
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, input, fr),
            Expr::Call { target, name, args } => {
                let base;
                let inp: &[Item<'a>] = match target {
                    Some(t) => {
                        base = self.eval(t, input, fr)?;
                        &base
                    }
                    None => input,
                };
                self.call(name, inp, args, fr, target.is_some())
            }
        }
    }

    fn now(&self) -> PartialDateTime {
        *self.now.get_or_init(datetime::now_utc)
    }

    fn variable(&self, name: &str) -> R<Vec<Item<'a>>> {
        if let Some(v) = self.ctx.variables.get(name) {
            return Ok(v.clone());
        }
        let s = |x: &str| Ok(vec![Item::string(x.to_string())]);
        match name {
            "context" => Ok(vec![self.root.clone()]),
            "resource" => Ok(vec![match self.ctx.resource {
                Some(r) => Item::Node(root_node(r, Location::root())),
                None => self.root.clone(),
            }]),
            "rootResource" => Ok(vec![match self.ctx.root_resource.or(self.ctx.resource) {
                Some(r) => Item::Node(root_node(r, Location::root())),
                None => self.root.clone(),
            }]),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some(vs) = name.strip_prefix("vs-") {
                    return s(&format!("http://hl7.org/fhir/ValueSet/{vs}"));
                }
                if let Some(ext) = name.strip_prefix("ext-") {
                    return s(&format!("http://hl7.org/fhir/StructureDefinition/{ext}"));
                }
                err(format!("unknown external constant %{name}"))
            }
        }
    }

    fn binary(
        &self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        input: &[Item<'a>],
        fr: &Frame<'a>,
    ) -> R<Vec<Item<'a>>> {
        let a = self.eval(l, input, fr)?;
        match op {
            BinOp::And | BinOp::Or | BinOp::Implies | BinOp::Xor => {
                let x = to_bool(&a, "boolean operator")?;
                // short-circuit where the right side cannot change the answer
                match (op, x) {
                    (BinOp::And, Some(false)) => return Ok(bool_item(false)),
                    (BinOp::Or, Some(true)) => return Ok(bool_item(true)),
                    (BinOp::Implies, Some(false)) => return Ok(bool_item(true)),
                    _ => {}
                }
                let b = self.eval(r, input, fr)?;
                let y = to_bool(&b, "boolean operator")?;
                return Ok(opt_bool(match op {
                    BinOp::And => match (x, y) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    BinOp::Or => match (x, y) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Xor => match (x, y) {
                        (Some(p), Some(q)) => Some(p != q),
                        _ => None,
                    },
                    _ => match (x, y) {
                        (Some(true), q) => q,
                        (None, Some(true)) => Some(true),
                        _ => None,
                    },
                }));
            }
            _ => {}
        }
        let b = self.eval(r, input, fr)?;
        match op {
            BinOp::Union => {
                let mut all = a;
                all.extend(b);
                Ok(distinct(all))
            }
            BinOp::Eq | BinOp::Ne => {
                if a.is_empty() || b.is_empty() {
                    return Ok(Vec::new());
                }
                let mut res = Some(a.len() == b.len());
                if a.len() == b.len() {
                    for (x, y) in a.iter().zip(&b) {
                        match eq_items(x, y) {
                            Some(true) => {}
                            Some(false) => {
                                res = Some(false);
                                break;
                            }
                            None => res = None,
                        }
                    }
                }
                Ok(opt_bool(if op == BinOp::Ne {
                    res.map(|x| !x)
                } else {
                    res
                }))
            }
            BinOp::Equiv | BinOp::NotEquiv => {
                let res = a.len() == b.len() && {
                    let mut used = vec![false; b.len()];
                    a.iter().all(|x| {
                        match (0..b.len()).find(|&j| !used[j] && equiv_items(x, &b[j])) {
                            Some(j) => {
                                used[j] = true;
                                true
                            }
                            None => false,
                        }
                    })
                };
                Ok(bool_item(if op == BinOp::Equiv { res } else { !res }))
            }
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let (Some(x), Some(y)) =
                    (singleton(&a, "comparison")?, singleton(&b, "comparison")?)
                else {
                    return Ok(Vec::new());
                };
                let (Some(x), Some(y)) = (prim(&x), prim(&y)) else {
                    return err("comparison needs primitive values");
                };
                let Some(o) = compare_vals(&x, &y)? else {
                    return Ok(Vec::new());
                };
                Ok(bool_item(match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Gt => o == Ordering::Greater,
                    BinOp::Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            BinOp::In | BinOp::Contains => {
                let (elem, coll) = if op == BinOp::In { (a, b) } else { (b, a) };
                let Some(x) = singleton(&elem, "membership operator")? else {
                    return Ok(Vec::new());
                };
                Ok(bool_item(contains_item(&coll, &x)))
            }
            BinOp::Concat => {
                let s = |c: &[Item<'a>]| -> R<String> {
                    Ok(match singleton(c, "&")? {
                        None => String::new(),
                        Some(it) => match prim(&it) {
                            Some(v) => v.to_string(),
                            None => String::new(),
                        },
                    })
                };
                Ok(vec![Item::string(s(&a)? + &s(&b)?)])
            }
            _ => {
                let (Some(x), Some(y)) =
                    (singleton(&a, "arithmetic")?, singleton(&b, "arithmetic")?)
                else {
                    return Ok(Vec::new());
                };
                let (Some(x), Some(y)) = (prim(&x), prim(&y)) else {
                    return err("arithmetic needs primitive values");
                };
                Ok(arith(op, &x, &y)?.map(val_item).unwrap_or_default())
            }
        }
    }

    /// Evaluate a non-lambda argument (in the context of the enclosing `$this`).
    fn arg(&self, args: &[Expr], i: usize, fr: &Frame<'a>) -> R<Vec<Item<'a>>> {
        match args.get(i) {
            Some(e) => self.eval(e, &fr.this_coll(), fr),
            None => Ok(Vec::new()),
        }
    }

    fn arg_val(&self, args: &[Expr], i: usize, fr: &Frame<'a>, what: &str) -> R<Option<Val<'a>>> {
        let v = self.arg(args, i, fr)?;
        Ok(singleton(&v, what)?.and_then(|x| prim(&x)))
    }

    fn arg_string(&self, args: &[Expr], i: usize, fr: &Frame<'a>, what: &str) -> R<Option<String>> {
        match self.arg_val(args, i, fr, what)? {
            Some(Val::String(s)) => Ok(Some(s.into_owned())),
            None => Ok(None),
            Some(_) => err(format!("{what} expects a string argument")),
        }
    }

    fn arg_int(&self, args: &[Expr], i: usize, fr: &Frame<'a>, what: &str) -> R<Option<i64>> {
        match self.arg_val(args, i, fr, what)? {
            Some(Val::Integer(n)) => Ok(Some(n)),
            None => Ok(None),
            Some(_) => err(format!("{what} expects an integer argument")),
        }
    }

    /// Evaluate a lambda argument for one item.
    fn lambda(&self, e: &Expr, item: &Item<'a>, i: usize, fr: &Frame<'a>) -> R<Vec<Item<'a>>> {
        let f = fr.for_item(item, i);
        self.eval(e, std::slice::from_ref(item), &f)
    }

    fn need_args(name: &str, args: &[Expr], min: usize, max: usize) -> R<()> {
        if args.len() < min || args.len() > max {
            return err(format!(
                "{name}() takes {min}..{max} arguments, got {}",
                args.len()
            ));
        }
        Ok(())
    }

    fn call(
        &self,
        name: &str,
        input: &[Item<'a>],
        args: &[Expr],
        fr: &Frame<'a>,
        has_target: bool,
    ) -> R<Vec<Item<'a>>> {
        let arity = |min, max| Self::need_args(name, args, min, max);
        match name {
            // ---------------------------------------------------------- existence
            "empty" => {
                arity(0, 0)?;
                Ok(bool_item(input.is_empty()))
            }
            "exists" => {
                arity(0, 1)?;
                if let Some(c) = args.first() {
                    for (i, it) in input.iter().enumerate() {
                        if to_bool(&self.lambda(c, it, i, fr)?, "exists")? == Some(true) {
                            return Ok(bool_item(true));
                        }
                    }
                    Ok(bool_item(false))
                } else {
                    Ok(bool_item(!input.is_empty()))
                }
            }
            "all" => {
                arity(1, 1)?;
                for (i, it) in input.iter().enumerate() {
                    if to_bool(&self.lambda(&args[0], it, i, fr)?, "all")? != Some(true) {
                        return Ok(bool_item(false));
                    }
                }
                Ok(bool_item(true))
            }
            "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
                arity(0, 0)?;
                let mut bools = Vec::with_capacity(input.len());
                for it in input {
                    match prim(it) {
                        Some(Val::Boolean(b)) => bools.push(b),
                        _ => return err(format!("{name}() needs a collection of booleans")),
                    }
                }
                Ok(bool_item(match name {
                    "allTrue" => bools.iter().all(|b| *b),
                    "anyTrue" => bools.iter().any(|b| *b),
                    "allFalse" => bools.iter().all(|b| !*b),
                    _ => bools.iter().any(|b| !*b),
                }))
            }
            "subsetOf" | "supersetOf" => {
                arity(1, 1)?;
                let other = self.arg(args, 0, fr)?;
                let (sub, sup) = if name == "subsetOf" {
                    (input, &other[..])
                } else {
                    (&other[..], input)
                };
                Ok(bool_item(sub.iter().all(|x| contains_item(sup, x))))
            }
            "count" => {
                arity(0, 0)?;
                Ok(val_item(Val::Integer(input.len() as i64)))
            }
            "distinct" => {
                arity(0, 0)?;
                Ok(distinct(input.to_vec()))
            }
            "isDistinct" => {
                arity(0, 0)?;
                Ok(bool_item(distinct(input.to_vec()).len() == input.len()))
            }
            // ---------------------------------------------------------- filtering
            "where" => {
                arity(1, 1)?;
                let mut out = Vec::new();
                for (i, it) in input.iter().enumerate() {
                    if to_bool(&self.lambda(&args[0], it, i, fr)?, "where")? == Some(true) {
                        out.push(it.clone());
                    }
                }
                Ok(out)
            }
            "select" => {
                arity(1, 1)?;
                let mut out = Vec::new();
                for (i, it) in input.iter().enumerate() {
                    out.extend(self.lambda(&args[0], it, i, fr)?);
                }
                Ok(out)
            }
            "repeat" | "repeatAll" => {
                arity(1, 1)?;
                let mut out: Vec<Item<'a>> = Vec::new();
                let mut queue = input.to_vec();
                let mut rounds = 0;
                while !queue.is_empty() {
                    rounds += 1;
                    if rounds > 10_000 {
                        return err("repeat() did not terminate");
                    }
                    let mut next = Vec::new();
                    for (i, it) in queue.iter().enumerate() {
                        for r in self.lambda(&args[0], it, i, fr)? {
                            let seen = if name == "repeatAll" {
                                false
                            } else if matches!(r, Item::Node(_)) {
                                out.iter().any(|o| same_node(o, &r))
                            } else {
                                contains_item(&out, &r)
                            };
                            if !seen {
                                out.push(r.clone());
                                next.push(r);
                            }
                        }
                    }
                    queue = next;
                }
                Ok(out)
            }
            "ofType" | "is" | "as" => {
                arity(1, 1)?;
                let spec = type_spec_of(&args[0])
                    .ok_or_else(|| Error::Eval(format!("{name}() expects a type name")))?;
                check_type_known(&spec)?;
                if name == "ofType" {
                    return Ok(input
                        .iter()
                        .filter(|x| is_type(x, &spec))
                        .cloned()
                        .collect());
                }
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let m = is_type(&it, &spec);
                Ok(if name == "is" {
                    bool_item(m)
                } else if m {
                    vec![it]
                } else {
                    Vec::new()
                })
            }
            // ---------------------------------------------------------- subsetting
            "single" => {
                arity(0, 0)?;
                Ok(singleton(input, "single()")?.into_iter().collect())
            }
            "first" => {
                arity(0, 0)?;
                Ok(input.first().cloned().into_iter().collect())
            }
            "last" => {
                arity(0, 0)?;
                Ok(input.last().cloned().into_iter().collect())
            }
            "tail" => {
                arity(0, 0)?;
                Ok(input.iter().skip(1).cloned().collect())
            }
            "skip" | "take" => {
                arity(1, 1)?;
                let Some(n) = self.arg_int(args, 0, fr, name)? else {
                    return Ok(Vec::new());
                };
                let n = n.max(0) as usize;
                Ok(if name == "skip" {
                    input.iter().skip(n).cloned().collect()
                } else {
                    input.iter().take(n).cloned().collect()
                })
            }
            "intersect" => {
                arity(1, 1)?;
                let other = self.arg(args, 0, fr)?;
                Ok(distinct(
                    input
                        .iter()
                        .filter(|x| contains_item(&other, x))
                        .cloned()
                        .collect(),
                ))
            }
            "exclude" => {
                arity(1, 1)?;
                let other = self.arg(args, 0, fr)?;
                Ok(input
                    .iter()
                    .filter(|x| !contains_item(&other, x))
                    .cloned()
                    .collect())
            }
            "union" | "combine" => {
                arity(1, 1)?;
                let mut all = input.to_vec();
                all.extend(self.arg(args, 0, fr)?);
                Ok(if name == "union" { distinct(all) } else { all })
            }
            // ---------------------------------------------------------- conversion
            "iif" => {
                arity(2, 3)?;
                let f = if !has_target {
                    fr.clone()
                } else {
                    match input.len() {
                        0 => Frame {
                            this: None,
                            index: None,
                            total: fr.total.clone(),
                        },
                        1 => fr.for_item(&input[0], 0),
                        _ => return err("iif() needs a single input item"),
                    }
                };
                let crit = self.eval(&args[0], input, &f)?;
                if to_bool(&crit, "iif criterion")? == Some(true) {
                    self.eval(&args[1], input, &f)
                } else if let Some(o) = args.get(2) {
                    self.eval(o, input, &f)
                } else {
                    Ok(Vec::new())
                }
            }
            "toBoolean" | "convertsToBoolean" | "toInteger" | "convertsToInteger" | "toDecimal"
            | "convertsToDecimal" | "toString" | "convertsToString" | "toDate"
            | "convertsToDate" | "toDateTime" | "convertsToDateTime" | "toTime"
            | "convertsToTime" | "toQuantity" | "convertsToQuantity" => {
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let Some(v) = prim(&it) else {
                    return Ok(if name.starts_with("converts") {
                        bool_item(false)
                    } else {
                        Vec::new()
                    });
                };
                let target = name
                    .trim_start_matches("convertsTo")
                    .trim_start_matches("to");
                let unit = if target == "Quantity" {
                    self.arg_string(args, 0, fr, name)?
                } else {
                    None
                };
                let r = convert(&v, target, unit.as_deref());
                Ok(if name.starts_with("converts") {
                    bool_item(r.is_some())
                } else {
                    r.map(val_item).unwrap_or_default()
                })
            }
            // ---------------------------------------------------------- strings
            "indexOf" | "lastIndexOf" | "startsWith" | "endsWith" | "contains" | "matches"
            | "matchesFull" | "split" | "encode" | "decode" | "escape" | "unescape" => {
                arity(1, 1)?;
                let Some(s) = string_of(input, name)? else {
                    return Ok(Vec::new());
                };
                let Some(a) = self.arg_string(args, 0, fr, name)? else {
                    return Ok(Vec::new());
                };
                Ok(match name {
                    "indexOf" => val_item(Val::Integer(
                        s.find(&a).map_or(-1, |p| s[..p].chars().count() as i64),
                    )),
                    "lastIndexOf" => val_item(Val::Integer(
                        s.rfind(&a).map_or(-1, |p| s[..p].chars().count() as i64),
                    )),
                    "startsWith" => bool_item(s.starts_with(&a)),
                    "endsWith" => bool_item(s.ends_with(&a)),
                    "contains" => bool_item(s.contains(&a)),
                    "matches" => bool_item(regex_for(&a, false)?.is_match(&s)),
                    "matchesFull" => bool_item(regex_for(&a, true)?.is_match(&s)),
                    "split" => s
                        .split(a.as_str())
                        .map(|p| Item::string(p.to_string()))
                        .collect(),
                    "encode" => vec![Item::string(match a.as_str() {
                        "base64" => base64_encode(s.as_bytes(), false),
                        "urlbase64" => base64_encode(s.as_bytes(), true),
                        "hex" => s.bytes().map(|b| format!("{b:02x}")).collect(),
                        _ => return err(format!("unknown encoding {a}")),
                    })],
                    "decode" => {
                        let bytes = match a.as_str() {
                            "base64" | "urlbase64" => base64_decode(&s),
                            "hex" => (0..s.len() / 2)
                                .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
                                .collect(),
                            _ => return err(format!("unknown encoding {a}")),
                        };
                        match bytes {
                            Some(b) => vec![Item::string(String::from_utf8_lossy(&b).into_owned())],
                            None => Vec::new(),
                        }
                    }
                    "escape" => vec![Item::string(match a.as_str() {
                        "html" => html_escape(&s),
                        "json" => json_escape(&s),
                        _ => return err(format!("unknown escape target {a}")),
                    })],
                    _ => vec![Item::string(match a.as_str() {
                        "html" => html_unescape(&s),
                        "json" => json_unescape(&s),
                        _ => return err(format!("unknown escape target {a}")),
                    })],
                })
            }
            "substring" => {
                arity(1, 2)?;
                let Some(s) = string_of(input, name)? else {
                    return Ok(Vec::new());
                };
                let Some(start) = self.arg_int(args, 0, fr, name)? else {
                    return Ok(Vec::new());
                };
                let len = if args.len() > 1 {
                    match self.arg_int(args, 1, fr, name)? {
                        Some(l) => Some(l),
                        None => return Ok(Vec::new()),
                    }
                } else {
                    None
                };
                let n = s.chars().count() as i64;
                if start < 0 || start >= n {
                    return Ok(Vec::new());
                }
                let take = len.unwrap_or(n).max(0) as usize;
                Ok(vec![Item::string(
                    s.chars()
                        .skip(start as usize)
                        .take(take)
                        .collect::<String>(),
                )])
            }
            "upper" | "lower" | "length" | "toChars" | "trim" => {
                arity(0, 0)?;
                let Some(s) = string_of(input, name)? else {
                    return Ok(Vec::new());
                };
                Ok(match name {
                    "upper" => vec![Item::string(s.to_uppercase())],
                    "lower" => vec![Item::string(s.to_lowercase())],
                    "length" => val_item(Val::Integer(s.chars().count() as i64)),
                    "trim" => vec![Item::string(s.trim().to_string())],
                    _ => s.chars().map(|c| Item::string(c.to_string())).collect(),
                })
            }
            "replace" | "replaceMatches" => {
                arity(2, 2)?;
                let Some(s) = string_of(input, name)? else {
                    return Ok(Vec::new());
                };
                let (Some(p), Some(r)) = (
                    self.arg_string(args, 0, fr, name)?,
                    self.arg_string(args, 1, fr, name)?,
                ) else {
                    return Ok(Vec::new());
                };
                Ok(vec![Item::string(if name == "replace" {
                    s.replace(&p, &r)
                } else if p.is_empty() {
                    s.into_owned()
                } else {
                    regex_for(&p, false)?
                        .replace_all(&s, r.as_str())
                        .into_owned()
                })])
            }
            "join" => {
                arity(0, 1)?;
                let sep = self.arg_string(args, 0, fr, name)?.unwrap_or_default();
                let mut parts = Vec::new();
                for it in input {
                    match prim(it) {
                        Some(Val::String(s)) => parts.push(s.into_owned()),
                        Some(v) => parts.push(v.to_string()),
                        None => {}
                    }
                }
                Ok(vec![Item::string(parts.join(&sep))])
            }
            // ---------------------------------------------------------- math
            "abs" | "ceiling" | "floor" | "truncate" | "exp" | "ln" | "sqrt" | "round" | "log"
            | "power" => {
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let v = match prim(&it) {
                    Some(v @ (Val::Integer(_) | Val::Decimal(_))) => v,
                    Some(Val::Quantity(q)) if name == "abs" => {
                        return Ok(val_item(Val::Quantity(Quantity {
                            value: q.value.abs(),
                            ..q
                        })));
                    }
                    _ => return err(format!("{name}() needs a number")),
                };
                let d = as_decimal(&v).unwrap();
                let r = match name {
                    "abs" => Some(match v {
                        Val::Integer(i) => Val::Integer(i.abs()),
                        _ => Val::Decimal(d.abs()),
                    }),
                    "ceiling" => d.ceil(0).to_i64().map(Val::Integer),
                    "floor" => d.floor(0).to_i64().map(Val::Integer),
                    "truncate" => d.truncate(0).to_i64().map(Val::Integer),
                    "round" => {
                        let p = self.arg_int(args, 0, fr, name)?.unwrap_or(0);
                        if p < 0 {
                            return err("round() precision must be >= 0");
                        }
                        Some(Val::Decimal(d.round(p as u32)))
                    }
                    "exp" => f64_math(&v, f64::exp),
                    "ln" => f64_math(&v, f64::ln),
                    "sqrt" => f64_math(&v, f64::sqrt),
                    "log" => {
                        let Some(b) = self
                            .arg_val(args, 0, fr, name)?
                            .and_then(|b| as_decimal(&b))
                        else {
                            return Ok(Vec::new());
                        };
                        let b = b.to_f64();
                        f64_math(&v, |x| {
                            if b == 10.0 {
                                x.log10()
                            } else if b == 2.0 {
                                x.log2()
                            } else {
                                x.ln() / b.ln()
                            }
                        })
                    }
                    _ => {
                        let Some(e) = self.arg_val(args, 0, fr, name)? else {
                            return Ok(Vec::new());
                        };
                        match (&v, &e) {
                            (Val::Integer(b), Val::Integer(x)) if *x >= 0 => b
                                .checked_pow(u32::try_from(*x).unwrap_or(u32::MAX))
                                .map(Val::Integer),
                            _ => {
                                let Some(x) = as_decimal(&e) else {
                                    return err("power() needs a number");
                                };
                                let x = x.to_f64();
                                f64_math(&v, |b| b.powf(x))
                            }
                        }
                    }
                };
                Ok(r.map(val_item).unwrap_or_default())
            }
            // ---------------------------------------------------------- tree
            "children" => {
                arity(0, 0)?;
                let mut out = Vec::new();
                for it in input {
                    children(it, &mut out);
                }
                Ok(out)
            }
            "descendants" => {
                arity(0, 0)?;
                let mut out = Vec::new();
                let mut queue: Vec<Item<'a>> = input.to_vec();
                while !queue.is_empty() {
                    let mut next = Vec::new();
                    for it in &queue {
                        children(it, &mut next);
                    }
                    out.extend(next.iter().cloned());
                    queue = next;
                }
                Ok(out)
            }
            // ---------------------------------------------------------- utility
            "trace" => {
                arity(1, 2)?;
                let label = self.arg_string(args, 0, fr, name)?.unwrap_or_default();
                if let Some(t) = self.ctx.tracer {
                    if let Some(p) = args.get(1) {
                        let mut shown = Vec::new();
                        for (i, it) in input.iter().enumerate() {
                            shown.extend(self.lambda(p, it, i, fr)?);
                        }
                        t(&label, &shown);
                    } else {
                        t(&label, input);
                    }
                }
                Ok(input.to_vec())
            }
            "now" => {
                arity(0, 0)?;
                Ok(val_item(Val::DateTime(self.now())))
            }
            "today" => {
                arity(0, 0)?;
                let mut d = self.now();
                d.precision = Precision::Day;
                d.hour = 0;
                d.minute = 0;
                d.second = 0;
                d.millis = 0;
                d.tz = None;
                Ok(val_item(Val::Date(d)))
            }
            "timeOfDay" => {
                arity(0, 0)?;
                let mut d = self.now();
                d.tz = None;
                Ok(val_item(Val::Time(d)))
            }
            "not" => {
                arity(0, 0)?;
                Ok(opt_bool(to_bool(input, "not()")?.map(|b| !b)))
            }
            "aggregate" => {
                arity(1, 2)?;
                let mut total = if args.len() > 1 {
                    self.arg(args, 1, fr)?
                } else {
                    Vec::new()
                };
                for (i, it) in input.iter().enumerate() {
                    let f = Frame {
                        this: Some(it.clone()),
                        index: Some(i),
                        total: Some(total),
                    };
                    total = self.eval(&args[0], std::slice::from_ref(it), &f)?;
                }
                Ok(total)
            }
            "sort" => {
                let mut keyed: Vec<(Vec<Option<Val<'a>>>, Item<'a>)> = Vec::new();
                let mut desc = Vec::new();
                let keys: Vec<&Expr> = args
                    .iter()
                    .map(|a| match a {
                        Expr::Negate(inner, true) => {
                            desc.push(true);
                            &**inner
                        }
                        other => {
                            desc.push(false);
                            other
                        }
                    })
                    .collect();
                for (i, it) in input.iter().enumerate() {
                    let mut k = Vec::new();
                    if keys.is_empty() {
                        k.push(prim(it));
                    }
                    for e in &keys {
                        let r = self.lambda(e, it, i, fr)?;
                        k.push(singleton(&r, "sort key")?.and_then(|x| prim(&x)));
                    }
                    keyed.push((k, it.clone()));
                }
                let mut failure = None;
                keyed.sort_by(|(a, _), (b, _)| {
                    for (j, (x, y)) in a.iter().zip(b).enumerate() {
                        // empty keys sort first in both directions
                        let o = match (x, y) {
                            (None, None) => Ordering::Equal,
                            (None, _) => Ordering::Less,
                            (_, None) => Ordering::Greater,
                            (Some(x), Some(y)) => {
                                let o = match compare_vals(x, y) {
                                    Ok(o) => o.unwrap_or(Ordering::Equal),
                                    Err(e) => {
                                        failure = Some(e);
                                        Ordering::Equal
                                    }
                                };
                                if desc.get(j) == Some(&true) {
                                    o.reverse()
                                } else {
                                    o
                                }
                            }
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    Ordering::Equal
                });
                if let Some(e) = failure {
                    return Err(e);
                }
                Ok(keyed.into_iter().map(|(_, it)| it).collect())
            }
            "type" => {
                arity(0, 0)?;
                Ok(input
                    .iter()
                    .map(|it| {
                        Item::Value(match it {
                            Item::Value(v) => Val::TypeInfo {
                                namespace: "System",
                                name: Cow::Borrowed(v.type_name()),
                            },
                            Item::Node(n) => Val::TypeInfo {
                                namespace: "FHIR",
                                name: Cow::Owned(node_type_code(n).to_string()),
                            },
                        })
                    })
                    .collect())
            }
            "sum" | "min" | "max" | "avg" => {
                arity(0, 0)?;
                let vals: Vec<Val<'a>> = input.iter().filter_map(prim).collect();
                if vals.is_empty() {
                    return Ok(Vec::new());
                }
                let mut acc = vals[0].clone();
                for v in &vals[1..] {
                    acc = match name {
                        "sum" | "avg" => arith(BinOp::Add, &acc, v)?.unwrap_or(acc),
                        _ => {
                            let o = compare_vals(v, &acc)?;
                            let better = if name == "min" {
                                o == Some(Ordering::Less)
                            } else {
                                o == Some(Ordering::Greater)
                            };
                            if better { v.clone() } else { acc }
                        }
                    };
                }
                if name == "avg" {
                    acc = arith(BinOp::Div, &acc, &Val::Integer(vals.len() as i64))?.unwrap_or(acc);
                }
                Ok(val_item(acc))
            }
            // ---------------------------------------------------------- FHIR
            "extension" => {
                arity(1, 1)?;
                let Some(url) = self.arg_string(args, 0, fr, name)? else {
                    return Ok(Vec::new());
                };
                let mut exts = Vec::new();
                for it in input {
                    member(it, "extension", &mut exts);
                }
                Ok(exts
                    .into_iter()
                    .filter(|e| {
                        e.node()
                            .and_then(|n| n.value.get("url"))
                            .and_then(Value::as_str)
                            == Some(url.as_str())
                    })
                    .collect())
            }
            "hasValue" => {
                arity(0, 0)?;
                Ok(bool_item(
                    input.len() == 1
                        && match &input[0] {
                            Item::Node(n) => {
                                !n.value.is_null() && !n.value.is_object() && !n.value.is_array()
                            }
                            Item::Value(_) => true,
                        },
                ))
            }
            "getValue" => {
                arity(0, 0)?;
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                Ok(match &it {
                    Item::Node(n) if n.value.is_object() => Vec::new(),
                    _ => prim(&it).map(val_item).unwrap_or_default(),
                })
            }
            // SQL on FHIR v2: keys for joining views. A resource's key is `Type/id`; a
            // reference's is the key of the resource it names (relative or absolute, a
            // version dropped), empty when it names another type than the one asked for.
            "getResourceKey" => {
                arity(0, 0)?;
                Ok(input
                    .iter()
                    .filter_map(|it| {
                        let v = it.node()?.value;
                        let t = v.get("resourceType")?.as_str()?;
                        let id = v.get("id")?.as_str()?;
                        Some(Item::string(format!("{t}/{id}")))
                    })
                    .collect())
            }
            "getReferenceKey" => {
                arity(0, 1)?;
                let want = match args.first() {
                    Some(a) => Some(
                        type_spec_of(a)
                            .ok_or_else(|| {
                                Error::Eval("getReferenceKey() expects a type name".into())
                            })?
                            .name,
                    ),
                    None => None,
                };
                Ok(input
                    .iter()
                    .filter_map(|it| {
                        let r = it.node()?.value.get("reference")?.as_str()?;
                        reference_key(r, want.as_deref()).map(Item::string)
                    })
                    .collect())
            }
            "resolve" => {
                arity(0, 0)?;
                let Some(res) = self.ctx.resolver else {
                    return Ok(Vec::new());
                };
                let mut out = Vec::new();
                for it in input {
                    let r = match it {
                        Item::Node(n) => match n.value {
                            Value::Object(o) => o.get("reference").and_then(Value::as_str),
                            Value::String(s) => Some(s.as_str()),
                            _ => None,
                        },
                        Item::Value(Val::String(s)) => {
                            if let Some(v) = res(s) {
                                out.push(Item::Node(root_node(v, Location::root())));
                            }
                            None
                        }
                        _ => None,
                    };
                    if let Some(v) = r.and_then(res) {
                        out.push(Item::Node(root_node(v, Location::root())));
                    }
                }
                Ok(out)
            }
            "htmlChecks" | "htmlchecks" => Ok(bool_item(true)),
            "conformsTo" => {
                arity(1, 1)?;
                let Some(url) = self.arg_string(args, 0, fr, name)? else {
                    return Ok(Vec::new());
                };
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let Item::Node(n) = &it else {
                    return Ok(bool_item(false));
                };
                if let Some(h) = self.ctx.conforms_to
                    && let Some(b) = h(n.value, &url)
                {
                    return Ok(bool_item(b));
                }
                match url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") {
                    Some(t) if r4().type_def(t).is_some() => {
                        Ok(bool_item(derives_from(node_type_code(n), t)))
                    }
                    _ => err(format!("unknown profile {url}")),
                }
            }
            "memberOf" => {
                arity(1, 1)?;
                let Some(vs) = self.arg_string(args, 0, fr, name)? else {
                    return Ok(Vec::new());
                };
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let Some(h) = self.ctx.member_of else {
                    return Ok(Vec::new());
                };
                let v = it.to_json();
                Ok(opt_bool(h(&v, &vs)))
            }
            "comparable" => {
                arity(1, 1)?;
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let (Some(Val::Quantity(a)), Some(Val::Quantity(b))) =
                    (prim(&it), self.arg_val(args, 0, fr, name)?)
                else {
                    return Ok(Vec::new());
                };
                Ok(bool_item(quantity_common(&a, &b).is_some()))
            }
            "lowBoundary" | "highBoundary" => {
                arity(0, 1)?;
                let high = name == "highBoundary";
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let p = self.arg_int(args, 0, fr, name)?;
                let r = match prim(&it) {
                    Some(Val::Integer(i)) => {
                        decimal_boundary(Decimal::from_int(i), p, high).map(Val::Decimal)
                    }
                    Some(Val::Decimal(d)) => decimal_boundary(d, p, high).map(Val::Decimal),
                    Some(Val::Quantity(q)) => decimal_boundary(q.value, p, high)
                        .map(|v| Val::Quantity(Quantity { value: v, ..q })),
                    Some(Val::Date(d)) => precision_from_date_digits(p.unwrap_or(8))
                        .filter(|p| *p <= Precision::Day)
                        .map(|p| Val::Date(d.boundary(p, high))),
                    Some(Val::DateTime(d)) => {
                        precision_from_date_digits(p.unwrap_or(17)).map(|p| {
                            let mut b = d.boundary(p, high);
                            if b.tz.is_none() && p >= Precision::Hour {
                                b.tz = Some(if high { -12 * 60 } else { 14 * 60 });
                            }
                            Val::DateTime(b)
                        })
                    }
                    Some(Val::Time(d)) => precision_from_time_digits(p.unwrap_or(9))
                        .map(|p| Val::Time(d.boundary(p, high))),
                    _ => None,
                };
                Ok(r.map(val_item).unwrap_or_default())
            }
            "precision" => {
                arity(0, 0)?;
                let Some(it) = singleton(input, name)? else {
                    return Ok(Vec::new());
                };
                let r = match prim(&it) {
                    Some(Val::Decimal(d)) => Some(d.scale as i64),
                    Some(Val::Integer(_)) => Some(0),
                    Some(Val::Date(d) | Val::DateTime(d)) => Some(d.date_digits()),
                    Some(Val::Time(d)) => Some(d.time_digits()),
                    _ => None,
                };
                Ok(r.map(|p| val_item(Val::Integer(p))).unwrap_or_default())
            }
            _ => err(format!("unknown function {name}()")),
        }
    }
}

/// Convert a value to the System type `target` (`Boolean`, `Integer`, …). `None` when the
/// value does not convert.
fn convert<'a>(v: &Val<'a>, target: &str, unit: Option<&str>) -> Option<Val<'a>> {
    use Val::*;
    match target {
        "Boolean" => match v {
            Boolean(b) => Some(Boolean(*b)),
            Integer(1) => Some(Boolean(true)),
            Integer(0) => Some(Boolean(false)),
            Decimal(d) if *d == crate::decimal::Decimal::from_int(1) => Some(Boolean(true)),
            Decimal(d) if d.is_zero() => Some(Boolean(false)),
            String(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Boolean(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Boolean(false)),
                _ => None,
            },
            _ => None,
        },
        "Integer" => match v {
            Integer(i) => Some(Integer(*i)),
            Boolean(b) => Some(Integer(*b as i64)),
            String(s) => {
                let t = s.strip_prefix(['+', '-']).unwrap_or(s);
                if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse().ok().map(Integer)
                } else {
                    None
                }
            }
            _ => None,
        },
        "Decimal" => match v {
            Integer(i) => Some(Decimal(crate::decimal::Decimal::from_int(*i))),
            Decimal(d) => Some(Decimal(*d)),
            Boolean(b) => Some(Decimal(crate::decimal::Decimal {
                mantissa: *b as i128 * 10,
                scale: 1,
            })),
            String(s) if !s.contains(['e', 'E']) => crate::decimal::Decimal::parse(s).map(Decimal),
            _ => None,
        },
        "String" => match v {
            TypeInfo { .. } => None,
            other => Some(String(Cow::Owned(other.to_string()))),
        },
        "Date" => match v {
            Date(d) => Some(Date(*d)),
            DateTime(d) => {
                let mut d = *d;
                d.precision = d.precision.min(Precision::Day);
                d.tz = None;
                Some(Date(d))
            }
            String(s) => PartialDateTime::parse_date(s)
                .or_else(|| {
                    PartialDateTime::parse_datetime(s).map(|mut d| {
                        d.precision = d.precision.min(Precision::Day);
                        d.tz = None;
                        d
                    })
                })
                .map(Date),
            _ => None,
        },
        "DateTime" => match v {
            Date(d) | DateTime(d) => Some(DateTime(*d)),
            String(s) => PartialDateTime::parse_datetime(s).map(DateTime),
            _ => None,
        },
        "Time" => match v {
            Time(d) => Some(Time(*d)),
            String(s) => PartialDateTime::parse_time(s).map(Time),
            _ => None,
        },
        "Quantity" => {
            let q = match v {
                Integer(i) => Some(self::Quantity::ucum(
                    crate::decimal::Decimal::from_int(*i),
                    "1",
                )),
                Decimal(d) => Some(self::Quantity::ucum(*d, "1")),
                Quantity(q) => Some(q.clone()),
                Boolean(b) => Some(self::Quantity::ucum(
                    crate::decimal::Decimal {
                        mantissa: *b as i128 * 10,
                        scale: 1,
                    },
                    "1",
                )),
                String(s) => parse_quantity_string(s),
                _ => None,
            }?;
            match unit {
                None => Some(Quantity(q)),
                Some(u) => {
                    let target = self::Quantity::ucum(crate::decimal::Decimal::from_int(1), u);
                    let (a, one) = quantity_common(&q, &target)?;
                    a.checked_div(one)
                        .map(|v| Quantity(self::Quantity::ucum(v, u)))
                }
            }
        }
        _ => None,
    }
}
