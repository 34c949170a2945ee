//! Evaluation items: nodes of the input tree (with type and location) and computed values.

use crate::datetime::PartialDateTime;
use crate::decimal::Decimal;
use issho_model::{TypeDef, TypeKind, r4};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;

pub(crate) static NULL: Value = Value::Null;

/// One step of a location: an object key or an array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

#[derive(Debug)]
struct LocNode<'a> {
    parent: Location<'a>,
    key: &'a str,
    /// The `_key` sibling holding a primitive's extensions, when present.
    ext_key: Option<&'a str>,
    index: Option<usize>,
}

/// Where a node sits in the input: the chain of object keys and array indices from the root.
/// Cheap to clone (a reference-counted parent chain).
#[derive(Clone, Debug, Default)]
pub struct Location<'a>(Option<Rc<LocNode<'a>>>);

impl<'a> Location<'a> {
    pub fn root() -> Location<'a> {
        Location(None)
    }

    pub(crate) fn child(
        &self,
        key: &'a str,
        ext_key: Option<&'a str>,
        index: Option<usize>,
    ) -> Location<'a> {
        Location(Some(Rc::new(LocNode {
            parent: self.clone(),
            key,
            ext_key,
            index,
        })))
    }

    /// For a primitive: the location of its `_name` sibling (extensions and id).
    pub fn ext_sibling(&self) -> Location<'a> {
        match &self.0 {
            Some(n) => match n.ext_key {
                Some(k) => n.parent.child(k, None, n.index),
                None => self.clone(),
            },
            None => self.clone(),
        }
    }

    /// The steps from the root, outermost first.
    pub fn steps(&self) -> Vec<Step<'a>> {
        let mut out = Vec::new();
        let mut cur = &self.0;
        while let Some(n) = cur {
            if let Some(i) = n.index {
                out.push(Step::Index(i));
            }
            out.push(Step::Key(n.key));
            cur = &n.parent.0;
        }
        out.reverse();
        out
    }

    pub fn is_root(&self) -> bool {
        self.0.is_none()
    }

    /// The location written as a FHIRPath-like path: `name[0].given[1]`.
    pub fn to_path(&self) -> String {
        let mut s = String::new();
        for st in self.steps() {
            match st {
                Step::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Step::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }
}

/// The FHIR type of a node and where its children are defined.
#[derive(Clone, Copy, Debug)]
pub struct NodeType {
    /// The FHIR type code: `HumanName`, `string`, `Patient`, `BackboneElement`…
    pub code: &'static str,
    /// The type whose element table defines the node's children.
    pub(crate) owner: Option<&'static TypeDef>,
    /// Element path inside `owner` whose children are the node's children (`""` = top level).
    pub(crate) prefix: &'static str,
}

impl NodeType {
    /// The type of a resource or data type by name, children at its top level.
    pub fn named(name: &str) -> Option<NodeType> {
        let t = r4().type_def(name)?;
        Some(NodeType {
            code: t.name.as_str(),
            owner: Some(t),
            prefix: "",
        })
    }

    pub fn is_primitive(&self) -> bool {
        self.owner
            .is_some_and(|t| t.kind == TypeKind::Primitive && self.prefix.is_empty())
            || matches!(self.code, "string" | "code" | "boolean")
    }
}

/// A node of the input tree.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// The JSON value (`Null` for a primitive that only has extensions).
    pub value: &'a Value,
    /// For primitives: the `_name` sibling holding `id` and `extension`.
    pub ext: Option<&'a Value>,
    pub ty: Option<NodeType>,
    pub location: Location<'a>,
}

/// A FHIRPath System type value computed by an expression.
#[derive(Clone, Debug)]
pub enum Val<'a> {
    Boolean(bool),
    Integer(i64),
    Decimal(Decimal),
    String(Cow<'a, str>),
    Date(PartialDateTime),
    DateTime(PartialDateTime),
    Time(PartialDateTime),
    Quantity(Quantity),
    /// The result of `type()`.
    TypeInfo {
        namespace: &'static str,
        name: Cow<'static, str>,
    },
}

/// A quantity: a decimal value and either a UCUM unit code or a calendar duration keyword
/// (`year` … `millisecond`, singular).
#[derive(Clone, Debug)]
pub struct Quantity {
    pub value: Decimal,
    pub unit: String,
    pub calendar: bool,
}

impl Quantity {
    pub fn ucum(value: Decimal, unit: impl Into<String>) -> Quantity {
        Quantity {
            value,
            unit: unit.into(),
            calendar: false,
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.calendar {
            write!(f, "{} {}", self.value, self.unit)
        } else {
            write!(f, "{} '{}'", self.value, self.unit)
        }
    }
}

/// One item of an evaluation result.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    Node(Node<'a>),
    Value(Val<'a>),
}

impl<'a> Item<'a> {
    pub fn string(s: impl Into<Cow<'a, str>>) -> Item<'a> {
        Item::Value(Val::String(s.into()))
    }

    /// The node, when the item is part of the input tree.
    pub fn node(&self) -> Option<&Node<'a>> {
        match self {
            Item::Node(n) => Some(n),
            Item::Value(_) => None,
        }
    }

    /// Location of the node in the input (`None` for computed values).
    pub fn location(&self) -> Option<&Location<'a>> {
        self.node().map(|n| &n.location)
    }

    /// FHIR type name of a node, or the System type name of a value.
    pub fn type_name(&self) -> Option<&str> {
        match self {
            Item::Node(n) => n.ty.map(|t| t.code),
            Item::Value(v) => Some(v.type_name()),
        }
    }

    /// The item as JSON: nodes as they are in the input, values as their natural JSON
    /// (dates, times and quantities as strings).
    pub fn to_json(&self) -> Value {
        match self {
            Item::Node(n) => n.value.clone(),
            Item::Value(v) => match v {
                Val::Boolean(b) => Value::Bool(*b),
                Val::Integer(i) => Value::from(*i),
                Val::Decimal(d) => serde_json::from_str(&d.to_string()).unwrap_or(Value::Null),
                other => Value::String(other.to_string()),
            },
        }
    }
}

impl Val<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Boolean(_) => "Boolean",
            Val::Integer(_) => "Integer",
            Val::Decimal(_) => "Decimal",
            Val::String(_) => "String",
            Val::Date(_) => "Date",
            Val::DateTime(_) => "DateTime",
            Val::Time(_) => "Time",
            Val::Quantity(_) => "Quantity",
            Val::TypeInfo { .. } => "TypeInfo",
        }
    }

    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::String(s) => Val::String(Cow::Owned(s.into_owned())),
            Val::Boolean(b) => Val::Boolean(b),
            Val::Integer(i) => Val::Integer(i),
            Val::Decimal(d) => Val::Decimal(d),
            Val::Date(d) => Val::Date(d),
            Val::DateTime(d) => Val::DateTime(d),
            Val::Time(d) => Val::Time(d),
            Val::Quantity(q) => Val::Quantity(q),
            Val::TypeInfo { namespace, name } => Val::TypeInfo { namespace, name },
        }
    }
}

impl fmt::Display for Val<'_> {
    /// The `toString()` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Boolean(b) => write!(f, "{b}"),
            Val::Integer(i) => write!(f, "{i}"),
            Val::Decimal(d) => write!(f, "{d}"),
            Val::String(s) => f.write_str(s),
            Val::Date(d) => f.write_str(&d.format_date()),
            Val::DateTime(d) => f.write_str(&d.format_datetime()),
            Val::Time(d) => f.write_str(&d.format_time()),
            Val::Quantity(q) => write!(f, "{q}"),
            Val::TypeInfo { namespace, name } => write!(f, "{namespace}.{name}"),
        }
    }
}
