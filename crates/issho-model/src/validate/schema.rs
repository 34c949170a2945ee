//! A compiled, lookup-friendly view of the R4 tables, shared by validation and the XML codec.
//!
//! [`crate::R4::child`] resolves one JSON key at a time and builds path strings while doing so.
//! Validation runs on every write, so this module resolves everything once: every place where
//! elements can appear (a type's top level, or an inline backbone element) becomes a [`Scope`]
//! with a hash map from JSON property name (including every choice variant such as
//! `valueQuantity`) to the element and the concrete type it selects.

use crate::tables::{ElementDef, R4, TypeDef, TypeKind, r4};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Index of a [`Scope`] in [`Schema::scopes`].
pub(crate) type ScopeId = u32;

/// FHIR primitive types, with the lexical rules that differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prim {
    Boolean,
    Integer,
    UnsignedInt,
    PositiveInt,
    Decimal,
    String,
    Markdown,
    Code,
    Id,
    Uri,
    Url,
    Canonical,
    Oid,
    Uuid,
    Base64Binary,
    Date,
    DateTime,
    Instant,
    Time,
    Xhtml,
}

impl Prim {
    pub(crate) fn from_code(code: &str) -> Option<Prim> {
        Some(match code {
            "boolean" => Prim::Boolean,
            "integer" => Prim::Integer,
            "unsignedInt" => Prim::UnsignedInt,
            "positiveInt" => Prim::PositiveInt,
            "decimal" => Prim::Decimal,
            "string" => Prim::String,
            "markdown" => Prim::Markdown,
            "code" => Prim::Code,
            "id" => Prim::Id,
            "uri" => Prim::Uri,
            "url" => Prim::Url,
            "canonical" => Prim::Canonical,
            "oid" => Prim::Oid,
            "uuid" => Prim::Uuid,
            "base64Binary" => Prim::Base64Binary,
            "date" => Prim::Date,
            "dateTime" => Prim::DateTime,
            "instant" => Prim::Instant,
            "time" => Prim::Time,
            "xhtml" => Prim::Xhtml,
            _ => return None,
        })
    }
}

/// What a value of one concrete type is, structurally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Primitive(Prim),
    /// A complex data type or a backbone element: an object whose properties live in a scope.
    Complex(ScopeId),
    /// Any resource (`contained`, `Bundle.entry.resource`): validated by its own `resourceType`.
    Resource,
}

/// One concrete type an element may take.
#[derive(Debug)]
pub(crate) struct ElemType {
    /// FHIR type code (`Quantity`, `dateTime`, `BackboneElement`).
    pub code: &'static str,
    pub kind: Kind,
    /// Allowed target resource types for `Reference` (empty or `Resource` = any).
    pub targets: &'static [String],
}

/// One element of a scope.
#[derive(Debug)]
pub(crate) struct Elem {
    pub def: &'static ElementDef,
    /// JSON / XML name; for a choice the name without the type suffix (`value`).
    pub name: &'static str,
    pub types: Vec<ElemType>,
    /// For choices, the full property name of each type (`valueQuantity`), parallel to `types`.
    pub choice_keys: Vec<Box<str>>,
    /// Required value set, expanded (only when the tables define it completely).
    pub binding: Option<&'static Binding>,
}

impl Elem {
    pub(crate) fn is_array(&self) -> bool {
        self.def.is_array()
    }
    pub(crate) fn min(&self) -> u32 {
        self.def.min
    }
    pub(crate) fn max(&self) -> Option<u32> {
        self.def.max
    }
    pub(crate) fn is_choice(&self) -> bool {
        self.def.is_choice
    }
    /// The JSON property name used for type number `t`.
    pub(crate) fn key(&self, t: usize) -> &str {
        if self.def.is_choice {
            &self.choice_keys[t]
        } else {
            self.name
        }
    }
}

/// Where elements are defined: the top level of a type or an inline backbone element.
#[derive(Debug)]
pub(crate) struct Scope {
    /// The type owning the element table.
    pub owner: &'static TypeDef,
    /// Path of the backbone element inside `owner`, `""` for the top level.
    pub prefix: &'static str,
    /// The elements, in specification order.
    pub elements: Vec<Elem>,
    /// Property name → (element index, type index).
    keys: HashMap<Box<str>, (u16, u16)>,
    /// Indices of elements with `min > 0`.
    pub required: Vec<u16>,
    /// True for a resource's top level.
    pub is_resource_root: bool,
}

impl Scope {
    /// Resolve a JSON property name (no leading underscore).
    #[inline]
    pub(crate) fn lookup(&self, key: &str) -> Option<(usize, usize)> {
        self.keys.get(key).map(|&(e, t)| (e as usize, t as usize))
    }
}

/// A required value set, indexed for lookups without allocation.
#[derive(Debug, Default)]
pub(crate) struct Binding {
    pub url: &'static str,
    /// code → systems defining it.
    codes: HashMap<&'static str, Vec<&'static str>>,
    systems: HashSet<&'static str>,
}

impl Binding {
    pub(crate) fn has_code(&self, code: &str) -> bool {
        self.codes.contains_key(code)
    }
    pub(crate) fn has_system(&self, system: &str) -> bool {
        self.systems.contains(system)
    }
    pub(crate) fn has(&self, system: &str, code: &str) -> bool {
        self.codes.get(code).is_some_and(|s| s.contains(&system))
    }
}

/// The compiled tables.
pub(crate) struct Schema {
    pub scopes: Vec<Scope>,
    by_type: HashMap<&'static str, ScopeId>,
    /// Scope of `Element` (`id` + `extension`): the shape of `_name` primitive extension objects.
    pub element_scope: ScopeId,
}

static SCHEMA: OnceLock<Schema> = OnceLock::new();

pub(crate) fn schema() -> &'static Schema {
    SCHEMA.get_or_init(|| Schema::build(r4()))
}

impl Schema {
    /// The top-level scope of a type (data type or resource).
    pub(crate) fn type_scope(&self, name: &str) -> Option<ScopeId> {
        self.by_type.get(name).copied()
    }

    #[inline]
    pub(crate) fn scope(&self, id: ScopeId) -> &Scope {
        &self.scopes[id as usize]
    }

    fn build(t: &'static R4) -> Schema {
        // Pass 1: allocate a scope id for every type and every inline backbone element.
        let mut names: Vec<&'static str> = Vec::new();
        let mut type_names: Vec<&String> = Vec::new();
        // Collect type names in a stable order through the resource list + primitive/complex.
        for name in all_type_names(t) {
            type_names.push(name);
        }
        let mut ids: HashMap<(&'static str, &'static str), ScopeId> = HashMap::new();
        let mut order: Vec<(&'static TypeDef, &'static str)> = Vec::new();
        for name in &type_names {
            let td = t.type_def(name).expect("listed type exists");
            let td: &'static TypeDef = td;
            ids.insert((td.name.as_str(), ""), order.len() as ScopeId);
            order.push((td, ""));
            names.push(td.name.as_str());
            for e in &td.elements {
                if e.content_ref.is_none() && e.is_backbone() {
                    ids.insert((td.name.as_str(), e.path.as_str()), order.len() as ScopeId);
                    order.push((td, e.path.as_str()));
                }
            }
        }
        let by_type: HashMap<&'static str, ScopeId> =
            names.iter().map(|n| (*n, ids[&(*n, "")])).collect();

        let mut bindings: HashMap<&'static str, &'static Binding> = HashMap::new();
        let mut scopes = Vec::with_capacity(order.len());
        for &(owner, prefix) in &order {
            let is_resource_root = prefix.is_empty() && owner.kind == TypeKind::Resource;
            let mut elements = Vec::new();
            let mut keys = HashMap::new();
            let mut required = Vec::new();
            for def in owner.children(prefix) {
                let idx = elements.len() as u16;
                let mut types = Vec::new();
                if let Some(r) = &def.content_ref {
                    let target = ids
                        .get(&(owner.name.as_str(), r.as_str()))
                        .copied()
                        .or_else(|| {
                            if r.is_empty() {
                                by_type.get(owner.name.as_str()).copied()
                            } else {
                                None
                            }
                        })
                        .unwrap_or_else(|| {
                            panic!("content reference {r} of {} resolves", owner.name)
                        });
                    types.push(ElemType {
                        code: "BackboneElement",
                        kind: Kind::Complex(target),
                        targets: &[],
                    });
                } else if def.is_backbone() {
                    types.push(ElemType {
                        code: def.types[0].code.as_str(),
                        kind: Kind::Complex(ids[&(owner.name.as_str(), def.path.as_str())]),
                        targets: &[],
                    });
                } else {
                    for ty in &def.types {
                        let code = ty.code.as_str();
                        let kind = if code == "Resource" {
                            Kind::Resource
                        } else if let Some(p) = Prim::from_code(code) {
                            // `Resource.id` is `string` in the tables but has the `id` syntax.
                            if is_resource_root && def.path == "id" {
                                Kind::Primitive(Prim::Id)
                            } else {
                                Kind::Primitive(p)
                            }
                        } else {
                            Kind::Complex(
                                *by_type
                                    .get(code)
                                    .unwrap_or_else(|| panic!("type {code} is in the tables")),
                            )
                        };
                        types.push(ElemType {
                            code,
                            kind,
                            targets: ty.targets.as_slice(),
                        });
                    }
                }
                let mut choice_keys = Vec::new();
                if def.is_choice {
                    for (ti, ty) in types.iter().enumerate() {
                        let key = format!("{}{}", def.name, capitalize(ty.code)).into_boxed_str();
                        keys.insert(key.clone(), (idx, ti as u16));
                        choice_keys.push(key);
                    }
                } else {
                    keys.insert(def.name.clone().into_boxed_str(), (idx, 0));
                }
                if def.min > 0 {
                    required.push(idx);
                }
                let binding = def.binding.as_deref().and_then(|url| {
                    if let Some(b) = bindings.get(url) {
                        return Some(*b);
                    }
                    let set = t.value_set(url)?;
                    let mut b = Binding {
                        url: leak_str(url),
                        ..Binding::default()
                    };
                    for (system, code) in set {
                        b.codes
                            .entry(code.as_str())
                            .or_default()
                            .push(system.as_str());
                        b.systems.insert(system.as_str());
                    }
                    let b: &'static Binding = Box::leak(Box::new(b));
                    bindings.insert(b.url, b);
                    Some(b)
                });
                elements.push(Elem {
                    def,
                    name: def.name.as_str(),
                    types,
                    choice_keys,
                    binding,
                });
            }
            scopes.push(Scope {
                owner,
                prefix,
                elements,
                keys,
                required,
                is_resource_root,
            });
        }
        let element_scope = by_type["Element"];
        Schema {
            scopes,
            by_type,
            element_scope,
        }
    }
}

fn all_type_names(t: &'static R4) -> Vec<&'static String> {
    // The tables expose types by name; walk every type reachable from element type codes and
    // the resource list, so no type is missed.
    let mut seen: HashSet<&'static str> = HashSet::new();
    let mut out: Vec<&'static String> = Vec::new();
    let mut stack: Vec<&'static TypeDef> = Vec::new();
    let roots = t.resource_types().iter().map(String::as_str).chain([
        "Element",
        "BackboneElement",
        "Resource",
        "DomainResource",
        "Extension",
    ]);
    for name in roots {
        if let Some(td) = t.type_def(name)
            && seen.insert(td.name.as_str())
        {
            out.push(&td.name);
            stack.push(td);
        }
    }
    while let Some(td) = stack.pop() {
        for e in &td.elements {
            for ty in &e.types {
                if let Some(d) = t.type_def(&ty.code)
                    && seen.insert(d.name.as_str())
                {
                    out.push(&d.name);
                    stack.push(d);
                }
            }
        }
    }
    out
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// `dateTime` → `DateTime`.
pub(crate) fn capitalize(code: &str) -> String {
    let mut c = code.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_resolve_choices_backbones_and_references() {
        let s = schema();
        let obs = s.scope(s.type_scope("Observation").unwrap());
        assert!(obs.is_resource_root);
        let (e, t) = obs.lookup("valueQuantity").unwrap();
        assert_eq!(obs.elements[e].types[t].code, "Quantity");
        assert!(obs.lookup("value").is_none());
        let (e, _) = obs.lookup("component").unwrap();
        let Kind::Complex(comp) = obs.elements[e].types[0].kind else {
            panic!()
        };
        assert!(s.scope(comp).lookup("valueCodeableConcept").is_some());
        let q = s.scope(s.type_scope("Questionnaire").unwrap());
        let (e, _) = q.lookup("item").unwrap();
        let Kind::Complex(item) = q.elements[e].types[0].kind else {
            panic!()
        };
        let (e2, _) = s.scope(item).lookup("item").unwrap();
        assert_eq!(
            s.scope(item).elements[e2].types[0].kind,
            Kind::Complex(item)
        );
        let pat = s.scope(s.type_scope("Patient").unwrap());
        let (e, _) = pat.lookup("gender").unwrap();
        let b = pat.elements[e].binding.unwrap();
        assert!(b.has("http://hl7.org/fhir/administrative-gender", "female"));
        let (e, _) = pat.lookup("id").unwrap();
        assert_eq!(pat.elements[e].types[0].kind, Kind::Primitive(Prim::Id));
    }
}
