//! The generated R4 tables (`data/r4.json`), parsed once on first use.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

static R4_JSON: &str = include_str!("../data/r4.json");
/// The types issho serves beyond R4 (`tools/gen_issho_types.py`): SQL on FHIR's
/// ViewDefinition.
static ISSHO_JSON: &str = include_str!("../data/issho-types.json");
static R4_TABLES: OnceLock<R4> = OnceLock::new();

/// The R4 tables, with issho's own resource types (ViewDefinition) merged in. Parsing takes
/// a few milliseconds and happens once per process.
pub fn r4() -> &'static R4 {
    R4_TABLES.get_or_init(|| {
        let mut raw: RawTables = serde_json::from_str(R4_JSON).expect("generated r4.json is valid");
        let own: RawTables =
            serde_json::from_str(ISSHO_JSON).expect("generated issho-types.json is valid");
        for (name, t) in own.types {
            assert!(
                raw.types.insert(name.clone(), t).is_none(),
                "issho's type {name} is not an R4 type"
            );
        }
        raw.search_parameters.extend(own.search_parameters);
        raw.value_sets.extend(own.value_sets);
        R4::from_raw(raw)
    })
}

/// The resource types issho serves that FHIR R4 does not define.
pub const ISSHO_TYPES: &[&str] = &["ViewDefinition"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTables {
    types: HashMap<String, RawType>,
    value_sets: HashMap<String, Vec<(String, String)>>,
    search_parameters: Vec<SearchParamDef>,
    patient_compartment: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct RawType {
    kind: String,
    #[serde(rename = "abstract")]
    is_abstract: bool,
    base: Option<String>,
    elements: Vec<RawElement>,
    #[serde(default)]
    inv: Vec<Invariant>,
    root: Option<String>,
}

#[derive(Deserialize)]
struct RawElement {
    path: String,
    min: u32,
    max: String,
    #[serde(default)]
    types: Vec<ElementType>,
    #[serde(rename = "ref")]
    content_ref: Option<String>,
    binding: Option<String>,
    extensible: Option<String>,
    #[serde(default)]
    summary: bool,
    #[serde(default)]
    modifier: bool,
    #[serde(default)]
    inv: Vec<Invariant>,
}

/// An invariant the specification defines on a type or element (`constraint` in its
/// StructureDefinition; ele-1 is left to the validator, which checks it natively).
#[derive(Debug, Clone, Deserialize)]
pub struct Invariant {
    pub key: String,
    /// `error` or `warning`.
    pub severity: String,
    pub human: String,
    /// FHIRPath, evaluated with the element as the focus.
    pub expression: String,
}

/// Whether a type is a primitive, a complex data type or a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Primitive,
    Complex,
    Resource,
}

/// One allowed type of an element.
#[derive(Debug, Clone, Deserialize)]
pub struct ElementType {
    /// FHIR type code: `string`, `HumanName`, `Reference`, `BackboneElement`…
    pub code: String,
    /// For Reference and canonical: the allowed target resource types (`Resource` = any).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Profiles of the type the element requires (`SimpleQuantity` for `Range.low`).
    #[serde(default)]
    pub profile: Vec<String>,
}

/// One element of a type, e.g. `contact.name` of Patient.
#[derive(Debug, Clone)]
pub struct ElementDef {
    /// Path relative to the type, without the type name: `contact.name`, `value[x]`.
    pub path: String,
    /// Last path segment as written in JSON (for choices without the `[x]`): `name`, `value`.
    pub name: String,
    pub is_choice: bool,
    pub min: u32,
    /// Maximum cardinality; `None` means `*`.
    pub max: Option<u32>,
    pub types: Vec<ElementType>,
    /// `contentReference`: the element's definition is that of another path of the same type.
    pub content_ref: Option<String>,
    /// Canonical URL of a required-strength binding.
    pub binding: Option<String>,
    /// Canonical URL of an extensible-strength binding.
    pub extensible: Option<String>,
    pub summary: bool,
    pub modifier: bool,
    /// The invariants defined on this element.
    pub invariants: Vec<Invariant>,
}

impl ElementDef {
    pub fn is_array(&self) -> bool {
        self.max != Some(1) && self.max != Some(0)
    }
    /// True when this element declares its own children (BackboneElement / Element inline).
    pub fn is_backbone(&self) -> bool {
        self.types.len() == 1
            && matches!(self.types[0].code.as_str(), "BackboneElement" | "Element")
    }
}

/// A type of the specification: primitive, complex data type or resource.
#[derive(Debug)]
pub struct TypeDef {
    pub name: String,
    pub kind: TypeKind,
    pub is_abstract: bool,
    pub base: Option<String>,
    pub elements: Vec<ElementDef>,
    /// The invariants the type defines on itself (not those it inherits from `base`).
    pub invariants: Vec<Invariant>,
    /// The root of its element paths: its name, or for a profile of a type the type
    /// (`Quantity` for SimpleQuantity).
    pub root: String,
    index: HashMap<String, usize>,
}

impl TypeDef {
    /// Element by relative path (`contact.name`, `value[x]`).
    pub fn element(&self, path: &str) -> Option<&ElementDef> {
        self.index.get(path).map(|&i| &self.elements[i])
    }

    /// The children of the element at `prefix` (`""` for the type's own top level).
    pub fn children<'a, 'p>(
        &'a self,
        prefix: &'p str,
    ) -> impl Iterator<Item = &'a ElementDef> + use<'a, 'p> {
        self.elements
            .iter()
            .filter(move |e| match e.path.rsplit_once('.') {
                Some((parent, _)) => parent == prefix,
                None => prefix.is_empty(),
            })
    }
}

/// A search parameter definition from the specification.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchParamDef {
    pub url: String,
    pub code: String,
    pub base: Vec<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub expression: Option<String>,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub modifier: Vec<String>,
    #[serde(default)]
    pub comparator: Vec<String>,
    #[serde(default)]
    pub component: Vec<SearchParamComponent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SearchParamComponent {
    pub definition: String,
    pub expression: String,
}

/// Where a JSON property of an element leads: its definition and the concrete type chosen.
#[derive(Debug, Clone, Copy)]
pub struct Child<'a> {
    /// The type whose element table holds `element`.
    pub owner: &'a TypeDef,
    pub element: &'a ElementDef,
    /// The concrete type of the value (for a choice, the one named by the JSON key suffix).
    pub type_code: &'a str,
}

/// The tables.
pub struct R4 {
    types: HashMap<String, TypeDef>,
    resource_types: Vec<String>,
    value_sets: HashMap<String, HashSet<(String, String)>>,
    search_parameters: Vec<SearchParamDef>,
    patient_compartment: HashMap<String, Vec<String>>,
    /// The resource types that can hold a patient's data ([`R4::may_hold_patient_data`]).
    patient_data_types: HashSet<String>,
}

impl R4 {
    fn from_raw(raw: RawTables) -> R4 {
        let mut types = HashMap::new();
        for (name, t) in raw.types {
            let kind = match t.kind.as_str() {
                "primitive-type" => TypeKind::Primitive,
                "complex-type" => TypeKind::Complex,
                _ => TypeKind::Resource,
            };
            let elements: Vec<ElementDef> = t
                .elements
                .into_iter()
                .map(|e| {
                    let last = e.path.rsplit('.').next().unwrap_or(&e.path);
                    let is_choice = last.ends_with("[x]");
                    ElementDef {
                        name: last.trim_end_matches("[x]").to_string(),
                        is_choice,
                        min: e.min,
                        max: if e.max == "*" {
                            None
                        } else {
                            e.max.parse().ok()
                        },
                        types: e.types,
                        content_ref: e.content_ref,
                        binding: e.binding,
                        extensible: e.extensible,
                        summary: e.summary,
                        modifier: e.modifier,
                        invariants: e.inv,
                        path: e.path,
                    }
                })
                .collect();
            let index = elements
                .iter()
                .enumerate()
                .map(|(i, e)| (e.path.clone(), i))
                .collect();
            types.insert(
                name.clone(),
                TypeDef {
                    kind,
                    is_abstract: t.is_abstract,
                    base: t.base,
                    elements,
                    invariants: t.inv,
                    root: t.root.unwrap_or_else(|| name.clone()),
                    name,
                    index,
                },
            );
        }
        let mut resource_types: Vec<String> = types
            .values()
            .filter(|t| t.kind == TypeKind::Resource && !t.is_abstract)
            .map(|t| t.name.clone())
            .collect();
        resource_types.sort();
        let value_sets = raw
            .value_sets
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        let mut r4 = R4 {
            types,
            resource_types,
            value_sets,
            search_parameters: raw.search_parameters,
            patient_compartment: raw.patient_compartment,
            patient_data_types: HashSet::new(),
        };
        r4.patient_data_types = r4
            .resource_types
            .iter()
            .filter(|t| r4.holds_references_to_patients(t))
            .cloned()
            .collect();
        r4
    }

    /// A type some element of which may refer to a Patient or to any resource, or hold a
    /// whole resource inline (Bundle entries, Parameters; not `contained`, which every type
    /// has: the ownership rule looks into it anyway).
    fn holds_references_to_patients(&self, rt: &str) -> bool {
        self.always_personal(rt)
            || self.type_def(rt).is_some_and(|td| {
                td.elements.iter().any(|e| {
                    e.types.iter().any(|x| {
                        (x.code == "Reference"
                            && (x.targets.is_empty()
                                || x.targets.iter().any(|y| y == "Patient" || y == "Resource")))
                            || (x.code == "Resource" && e.path != "contained")
                    })
                })
            })
    }

    /// True when every resource of `rt` is a patient's data: Patient and the types of the R4
    /// Patient compartment.
    pub fn always_personal(&self, rt: &str) -> bool {
        rt == "Patient" || self.patient_compartment.contains_key(rt)
    }

    /// True when resources of `rt` can hold a patient's data: the compartment types, every
    /// type with an element (at any depth) that may refer to a Patient or to any resource (by
    /// the reference targets), and Bundle (its entries are whole resources). Organization, Practitioner, Location, Medication, terminology and
    /// conformance resources cannot: they are never in a person's record (the engine's
    /// ownership rule), and a store may keep them apart (PostgreSQL's `shared_*` tables).
    pub fn may_hold_patient_data(&self, rt: &str) -> bool {
        self.patient_data_types.contains(rt)
    }

    /// Every type of the tables (resources, data types, primitives), in no order.
    pub fn types(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.values()
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// A concrete (non-abstract) resource type name.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.types
            .get(name)
            .is_some_and(|t| t.kind == TypeKind::Resource && !t.is_abstract)
    }

    /// All concrete resource type names, sorted.
    pub fn resource_types(&self) -> &[String] {
        &self.resource_types
    }

    /// Codes of a required-strength value set, when the specification defines them completely.
    pub fn value_set(&self, url: &str) -> Option<&HashSet<(String, String)>> {
        self.value_sets.get(url.split('|').next().unwrap_or(url))
    }

    pub fn search_parameters(&self) -> &[SearchParamDef] {
        &self.search_parameters
    }

    /// The search parameters that put a resource of this type into the patient compartment.
    /// `None` when the type is never in a patient's compartment.
    pub fn patient_compartment_params(&self, resource_type: &str) -> Option<&[String]> {
        self.patient_compartment
            .get(resource_type)
            .map(|v| v.as_slice())
    }

    /// Resolve the JSON property `key` below the element at `prefix` of type `owner`.
    ///
    /// Handles inline backbone elements, content references (`Questionnaire.item.item`),
    /// complex data types (descending into their own table) and choice types (`valueQuantity`
    /// → `value[x]` with type `Quantity`). `prefix` is `""` for the top level of `owner`.
    pub fn child<'a>(&'a self, owner: &'a TypeDef, prefix: &str, key: &str) -> Option<Child<'a>> {
        // Descend to where the children of `prefix` are defined.
        let (owner, prefix) = self.children_scope(owner, prefix)?;
        let direct = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        if let Some(e) = owner.element(&direct)
            && !e.is_choice
        {
            {
                let type_code = e.types.first().map(|t| t.code.as_str()).unwrap_or("");
                return Some(Child {
                    owner,
                    element: e,
                    type_code,
                });
            }
        }
        // Choice type: the key is the element name followed by a capitalised type code.
        for e in owner.children(&prefix) {
            if e.is_choice && key.starts_with(&e.name) {
                let suffix = &key[e.name.len()..];
                if let Some(t) = e
                    .types
                    .iter()
                    .find(|t| type_suffix_matches(&t.code, suffix))
                {
                    return Some(Child {
                        owner,
                        element: e,
                        type_code: t.code.as_str(),
                    });
                }
            }
        }
        None
    }

    /// Where the children of the element at `prefix` in `owner` are defined: the same type at
    /// that path (backbone), the target of a content reference, or the element's data type.
    pub fn children_scope<'a>(
        &'a self,
        owner: &'a TypeDef,
        prefix: &str,
    ) -> Option<(&'a TypeDef, String)> {
        if prefix.is_empty() {
            return Some((owner, String::new()));
        }
        let e = owner.element(prefix)?;
        if let Some(r) = &e.content_ref {
            return Some((owner, r.clone()));
        }
        if e.is_backbone() {
            return Some((owner, prefix.to_string()));
        }
        let t = self.type_def(&e.types.first()?.code)?;
        Some((t, String::new()))
    }
}

/// `Quantity` matches suffix `Quantity`; `dateTime` matches `DateTime`.
fn type_suffix_matches(code: &str, suffix: &str) -> bool {
    let mut c = code.chars();
    let mut s = suffix.chars();
    match (c.next(), s.next()) {
        (Some(a), Some(b)) if a.to_ascii_uppercase() == b => c.as_str() == s.as_str(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_cover_every_r4_resource() {
        let t = r4();
        assert!(t.is_resource_type("Patient"));
        assert!(!t.is_resource_type("DomainResource"));
        assert!(!t.is_resource_type("HumanName"));
        // R4's 146 and SQL on FHIR's ViewDefinition.
        assert_eq!(t.resource_types().len(), 147, "{:?}", t.resource_types());
        assert!(t.is_resource_type("ViewDefinition"));
        assert!(!t.may_hold_patient_data("ViewDefinition"));
    }

    #[test]
    fn choice_and_backbone_resolution() {
        let t = r4();
        let obs = t.type_def("Observation").unwrap();
        let c = t.child(obs, "", "valueQuantity").unwrap();
        assert_eq!(c.type_code, "Quantity");
        assert_eq!(c.element.path, "value[x]");
        assert!(t.child(obs, "", "valueFoo").is_none());
        let c = t.child(obs, "component", "code").unwrap();
        assert_eq!(c.type_code, "CodeableConcept");
        let q = t.type_def("Questionnaire").unwrap();
        let c = t.child(q, "item.item", "linkId").unwrap();
        assert_eq!(c.element.path, "item.linkId");
        let pat = t.type_def("Patient").unwrap();
        let c = t.child(pat, "name", "given").unwrap();
        assert_eq!(c.owner.name, "HumanName");
        assert!(c.element.is_array());
        assert_eq!(
            t.child(obs, "", "effectiveDateTime").unwrap().type_code,
            "dateTime"
        );
    }

    #[test]
    fn required_value_sets_are_expanded() {
        let vs = r4()
            .value_set("http://hl7.org/fhir/ValueSet/administrative-gender")
            .unwrap();
        assert!(vs.contains(&(
            "http://hl7.org/fhir/administrative-gender".into(),
            "female".into()
        )));
    }
}
