//! Validation of resources (JSON trees) against the FHIR R4 base specification.
//!
//! What is checked: the JSON representation rules of the specification (objects, arrays and
//! primitive JSON types where the element definitions call for them, `_element` siblings of
//! primitives, no empty values, `null` only to align primitive arrays), unknown elements,
//! cardinality, choice types, the lexical form of every primitive type, narrative XHTML,
//! required value-set bindings, reference syntax and target types, contained resources and
//! extensions. Profiles and FHIRPath invariants beyond these are not evaluated.
//!
//! Validation walks the tree once using the compiled tables of [`schema`]; locations of
//! problems are only turned into strings when a problem is reported.

pub(crate) mod formats;
pub(crate) mod schema;

use crate::{Issue, IssueType};
use formats::{
    check_xhtml, is_base64, is_code, is_date, is_date_time, is_decimal_text, is_id, is_instant,
    is_oid, is_time, is_uuid, no_whitespace,
};
use schema::{Binding, Elem, ElemType, Kind, Prim, Schema, ScopeId, schema};
use serde_json::{Map, Value};

/// Options of [`validate_resource`].
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Check codes against required-strength value sets (when the tables define them fully).
    pub check_bindings: bool,
    /// Accept conditional references (`Patient?identifier=…`): true for a resource that is an
    /// entry of a transaction or batch, where the server resolves them before storing.
    pub allow_conditional_references: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            check_bindings: true,
            allow_conditional_references: false,
        }
    }
}

/// Validate a whole resource (JSON tree) against the R4 base StructureDefinitions.
/// Returns every problem found (errors and warnings), each with a FHIRPath-style location
/// such as `Patient.name[0].given[1]` or `Bundle.entry[2].resource.ofType(Patient).birthDate`.
pub fn validate_resource(resource: &serde_json::Value, opts: &ValidateOptions) -> Vec<Issue> {
    let mut v = Validator {
        s: schema(),
        opts,
        issues: Vec::new(),
        allow_conditional: opts.allow_conditional_references,
    };
    v.resource(resource, None, Nesting::Root, None);
    v.issues
}

/// True when `issues` contains at least one error (or fatal) issue.
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(Issue::is_error)
}

/// Longest `string` / `markdown` accepted, in characters (the specification's 1 MB limit,
/// 1024 × 1024 characters).
pub const MAX_STRING_CHARS: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Locations, built on the stack and rendered only when an issue is reported.

#[derive(Clone, Copy)]
enum Seg<'a> {
    Name(&'a str),
    Index(usize),
    OfType(&'a str),
}

struct Loc<'a> {
    parent: Option<&'a Loc<'a>>,
    seg: Seg<'a>,
}

impl<'a> Loc<'a> {
    fn root(name: &'a str) -> Loc<'a> {
        Loc {
            parent: None,
            seg: Seg::Name(name),
        }
    }
    fn name(&'a self, name: &'a str) -> Loc<'a> {
        Loc {
            parent: Some(self),
            seg: Seg::Name(name),
        }
    }
    fn index(&'a self, i: usize) -> Loc<'a> {
        Loc {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }
    fn of_type(&'a self, t: &'a str) -> Loc<'a> {
        Loc {
            parent: Some(self),
            seg: Seg::OfType(t),
        }
    }
    fn render(&self) -> String {
        let mut out = String::with_capacity(64);
        self.write(&mut out);
        out
    }
    fn write(&self, out: &mut String) {
        if let Some(p) = self.parent {
            p.write(out);
        }
        match self.seg {
            Seg::Name(n) => {
                if self.parent.is_some() {
                    out.push('.');
                }
                out.push_str(n);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            Seg::OfType(t) => {
                out.push_str(".ofType(");
                out.push_str(t);
                out.push(')');
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// How a resource sits in the tree being validated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// The resource passed to [`validate_resource`].
    Root,
    /// An independent resource inside another (`Bundle.entry.resource`,
    /// `Parameters.parameter.resource`).
    Inline,
    /// A contained resource (`DomainResource.contained`).
    Contained,
}

/// Per independent resource: what local (`#id`) references can point to.
#[derive(Default)]
struct ResCtx<'v> {
    contained_ids: Vec<&'v str>,
    /// Local references seen (`#id` targets), to check every contained resource is used.
    local_refs: Vec<&'v str>,
    /// True while inside a contained resource that refers to its container (`#`).
    refers_to_container: bool,
}

struct Validator<'o> {
    s: &'static Schema,
    opts: &'o ValidateOptions,
    issues: Vec<Issue>,
    /// Inside a transaction or batch Bundle: conditional references (`Patient?identifier=…`)
    /// are allowed, the server resolves them.
    allow_conditional: bool,
}

const UNSEEN: u8 = u8::MAX;
/// Upper bound of elements in one scope (checked by a test); sizes the `seen` array.
const MAX_SCOPE_ELEMENTS: usize = 96;

impl<'o> Validator<'o> {
    fn error(&mut self, code: IssueType, loc: Option<&Loc>, msg: String) {
        let mut i = Issue::error(code, msg);
        i.expression = loc.map(Loc::render);
        self.issues.push(i);
    }

    fn warning(&mut self, code: IssueType, loc: &Loc, msg: String) {
        self.issues.push(Issue::warning(code, msg).at(loc.render()));
    }

    /// Validate a resource: the root, a contained resource or one inside a Bundle/Parameters.
    /// `loc` is the location of the element holding the resource (None for the root).
    fn resource<'v>(
        &mut self,
        value: &'v Value,
        loc: Option<&Loc>,
        nesting: Nesting,
        container: Option<&mut ResCtx<'v>>,
    ) {
        let Value::Object(obj) = value else {
            self.error(
                IssueType::Structure,
                loc,
                format!(
                    "A resource must be a JSON object, found {}",
                    json_kind(value)
                ),
            );
            return;
        };
        let rt = match obj.get("resourceType") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                self.error(
                    IssueType::Structure,
                    loc,
                    "resourceType must be a JSON string".into(),
                );
                return;
            }
            None => {
                self.error(
                    IssueType::Required,
                    loc,
                    "The resource has no resourceType".into(),
                );
                return;
            }
        };
        let Some(sid) = self.s.type_scope(rt).filter(|&id| {
            let sc = self.s.scope(id);
            sc.is_resource_root && !sc.owner.is_abstract
        }) else {
            self.error(
                IssueType::NotSupported,
                loc,
                format!("Unknown resource type '{rt}' (not an R4 resource type)"),
            );
            return;
        };
        let root_loc;
        let nested_loc;
        let here: &Loc = match loc {
            None => {
                root_loc = Loc::root(rt);
                &root_loc
            }
            Some(l) => {
                nested_loc = l.of_type(rt);
                &nested_loc
            }
        };

        let saved_conditional = self.allow_conditional;
        if rt == "Bundle" {
            self.allow_conditional = matches!(
                obj.get("type").and_then(Value::as_str),
                Some("transaction" | "batch")
            );
        }

        match (nesting, container) {
            (Nesting::Contained, Some(ctx)) => {
                self.contained_rules(obj, here);
                let before = ctx.refers_to_container;
                ctx.refers_to_container = false;
                self.object(obj, sid, here, ctx, false);
                let refers = ctx.refers_to_container;
                ctx.refers_to_container = before;
                if let Some(id) = obj.get("id").and_then(Value::as_str)
                    && refers
                {
                    // dom-3: a contained resource referring to its container is "used".
                    ctx.local_refs.push(id);
                }
            }
            _ => {
                let mut ctx = ResCtx::default();
                if let Some(Value::Array(list)) = obj.get("contained") {
                    for c in list {
                        if let Some(id) = c.get("id").and_then(Value::as_str) {
                            ctx.contained_ids.push(id);
                        }
                    }
                }
                self.object(obj, sid, here, &mut ctx, false);
                if !ctx.contained_ids.is_empty() {
                    self.check_contained_used(obj, &ctx, here);
                }
            }
        }
        self.allow_conditional = saved_conditional;
    }

    /// dom-1..dom-5 and the id rule for a contained resource.
    fn contained_rules(&mut self, obj: &Map<String, Value>, here: &Loc) {
        if !obj.contains_key("id") {
            self.error(
                IssueType::Required,
                Some(here),
                "A contained resource must have an id".into(),
            );
        }
        if obj.contains_key("contained") {
            self.error(
                IssueType::Invariant,
                Some(here),
                "dom-2: a contained resource must not contain other resources".into(),
            );
        }
        if obj.contains_key("text") {
            self.error(
                IssueType::Invariant,
                Some(here),
                "dom-1: a contained resource must not contain narrative".into(),
            );
        }
        if let Some(Value::Object(meta)) = obj.get("meta") {
            if meta.contains_key("versionId") || meta.contains_key("lastUpdated") {
                self.warning(
                    IssueType::Invariant,
                    here,
                    "dom-4: a contained resource should not have meta.versionId or meta.lastUpdated"
                        .into(),
                );
            }
            if meta.contains_key("security") {
                self.error(
                    IssueType::Invariant,
                    Some(here),
                    "dom-5: a contained resource must not have a security label".into(),
                );
            }
        }
    }

    /// dom-3: every contained resource is referenced from the resource or refers to it.
    fn check_contained_used(&mut self, obj: &Map<String, Value>, ctx: &ResCtx, here: &Loc) {
        let Some(Value::Array(list)) = obj.get("contained") else {
            return;
        };
        for (i, c) in list.iter().enumerate() {
            let Some(id) = c.get("id").and_then(Value::as_str) else {
                continue;
            };
            if !ctx.local_refs.contains(&id) {
                let named = here.name("contained");
                let l = named.index(i);
                self.warning(
                    IssueType::Invariant,
                    &l,
                    format!(
                        "dom-3: contained resource '{id}' is not referenced from the rest of the \
                         resource and does not refer to it"
                    ),
                );
            }
        }
    }

    /// Validate the properties of one JSON object whose elements are defined by scope `sid`.
    fn object<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        sid: ScopeId,
        here: &Loc,
        ctx: &mut ResCtx<'v>,
        require_content: bool,
    ) {
        let s = self.s;
        let scope = s.scope(sid);
        if obj.is_empty() {
            self.error(
                IssueType::Structure,
                Some(here),
                "Empty objects are not allowed: an element must have a value or children".into(),
            );
            return;
        }
        let mut seen = [UNSEEN; MAX_SCOPE_ELEMENTS];
        let mut has_content = false;
        for (key, value) in obj {
            if key == "resourceType" && scope.is_resource_root {
                continue;
            }
            let (is_ext, name) = match key.strip_prefix('_') {
                Some(n) => (true, n),
                None => (false, key.as_str()),
            };
            if key != "id" {
                has_content = true;
            }
            let Some((ei, ti)) = scope.lookup(name) else {
                self.unknown(key, here);
                continue;
            };
            let elem = &scope.elements[ei];
            let ety = &elem.types[ti];
            if ei < MAX_SCOPE_ELEMENTS {
                if seen[ei] != UNSEEN && seen[ei] != ti as u8 && elem.is_choice() {
                    let other = elem.key(seen[ei] as usize).to_string();
                    self.error(
                        IssueType::Structure,
                        Some(here),
                        format!(
                            "Only one type of {}[x] is allowed, found both '{other}' and '{name}'",
                            elem.name
                        ),
                    );
                }
                seen[ei] = ti as u8;
            }
            let Kind::Primitive(p) = ety.kind else {
                if is_ext {
                    self.unknown(key, here);
                } else {
                    self.complex_element(value, elem, ety, here, ctx);
                }
                continue;
            };
            if is_ext {
                // Element.id and Extension.url are plain strings without extensions.
                if (name == "id" && !scope.is_resource_root)
                    || (name == "url" && scope.prefix.is_empty() && scope.owner.name == "Extension")
                {
                    self.unknown(key, here);
                    continue;
                }
                if obj.contains_key(name) {
                    continue; // validated together with the value
                }
                self.primitive_element(None, Some(value), elem, ety, p, here, ctx);
            } else {
                let ext = sibling_ext(obj, name);
                self.primitive_element(Some(value), ext, elem, ety, p, here, ctx);
            }
        }
        for &ri in &scope.required {
            let ri = ri as usize;
            if ri < MAX_SCOPE_ELEMENTS && seen[ri] == UNSEEN {
                let elem = &scope.elements[ri];
                let display = if elem.is_choice() {
                    format!("{}[x]", elem.name)
                } else {
                    elem.name.to_string()
                };
                self.error(
                    IssueType::Required,
                    Some(here),
                    format!(
                        "Missing required element '{display}' (minimum cardinality {})",
                        elem.min()
                    ),
                );
            }
        }
        if !has_content && require_content {
            self.error(
                IssueType::Structure,
                Some(here),
                "ele-1: an element must have a value or children other than id".into(),
            );
        }
        if scope.prefix.is_empty() && scope.owner.name == "Extension" {
            let has_value = obj
                .keys()
                .any(|k| k.starts_with("value") || k.starts_with("_value"));
            let has_ext = obj.contains_key("extension");
            if has_value == has_ext {
                self.error(
                    IssueType::Invariant,
                    Some(here),
                    "ext-1: an extension must have either extensions or value[x], not both".into(),
                );
            }
        }
    }

    fn unknown(&mut self, key: &str, here: &Loc) {
        let msg = if key == "resourceType" {
            "Unknown element 'resourceType': it is only allowed at the root of a resource".into()
        } else {
            format!("Unknown element '{key}'")
        };
        self.error(IssueType::Structure, Some(here), msg);
    }

    /// An element whose type is complex, a backbone element or a resource.
    fn complex_element<'v>(
        &mut self,
        value: &'v Value,
        elem: &Elem,
        ety: &ElemType,
        parent: &Loc,
        ctx: &mut ResCtx<'v>,
    ) {
        let named = parent.name(elem.name);
        let typed;
        let here: &Loc = if elem.is_choice() {
            typed = named.of_type(ety.code);
            &typed
        } else {
            &named
        };
        if elem.is_array() {
            match value {
                Value::Array(items) => {
                    if items.is_empty() {
                        self.error(
                            IssueType::Structure,
                            Some(here),
                            "Empty arrays are not allowed (omit the element)".into(),
                        );
                    }
                    self.check_max(items.len(), elem, here);
                    for (i, item) in items.iter().enumerate() {
                        let l = here.index(i);
                        self.complex_value(item, elem, ety, &l, ctx);
                    }
                }
                other => {
                    self.error(
                        IssueType::Structure,
                        Some(here),
                        format!(
                            "Element '{}' repeats (max {}) and must be a JSON array",
                            elem.name,
                            max_text(elem)
                        ),
                    );
                    self.complex_value(other, elem, ety, here, ctx);
                }
            }
        } else {
            if let Value::Array(_) = value {
                self.error(
                    IssueType::Structure,
                    Some(here),
                    format!(
                        "Element '{}' has max cardinality 1 and must not be a JSON array",
                        elem.name
                    ),
                );
                return;
            }
            if elem.max() == Some(0) {
                self.error(
                    IssueType::Structure,
                    Some(here),
                    format!("Element '{}' is not allowed here (max 0)", elem.name),
                );
            }
            self.complex_value(value, elem, ety, here, ctx);
        }
    }

    fn check_max(&mut self, n: usize, elem: &Elem, here: &Loc) {
        if let Some(max) = elem.max()
            && n > max as usize
        {
            self.error(
                IssueType::Structure,
                Some(here),
                format!(
                    "Element '{}' has {n} values, more than its maximum cardinality {max}",
                    elem.name
                ),
            );
        }
    }

    /// One value of a complex / backbone / resource element.
    fn complex_value<'v>(
        &mut self,
        value: &'v Value,
        elem: &Elem,
        ety: &ElemType,
        here: &Loc,
        ctx: &mut ResCtx<'v>,
    ) {
        match ety.kind {
            Kind::Resource => {
                if elem.name == "contained" {
                    self.resource(value, Some(here), Nesting::Contained, Some(ctx));
                } else {
                    self.resource(value, Some(here), Nesting::Inline, None);
                }
            }
            Kind::Complex(sid) => {
                let Value::Object(obj) = value else {
                    self.error(
                        IssueType::Structure,
                        Some(here),
                        format!(
                            "Element '{}' of type {} must be a JSON object, found {}",
                            elem.name,
                            ety.code,
                            json_kind(value)
                        ),
                    );
                    return;
                };
                self.object(obj, sid, here, ctx, true);
                match ety.code {
                    "Reference" => self.reference(obj, ety, here, ctx),
                    "Coding" if self.opts.check_bindings => {
                        if let Some(b) = elem.binding {
                            self.coding(obj, b, here);
                        }
                    }
                    "CodeableConcept" if self.opts.check_bindings => {
                        if let (Some(b), Some(Value::Array(codings))) =
                            (elem.binding, obj.get("coding"))
                        {
                            let named = here.name("coding");
                            for (i, c) in codings.iter().enumerate() {
                                if let Value::Object(c) = c {
                                    let l = named.index(i);
                                    self.coding(c, b, &l);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            Kind::Primitive(_) => unreachable!("primitives are handled by primitive_element"),
        }
    }

    /// A Coding bound to a required value set: when its system is one of the set's systems,
    /// its code must be in the set.
    fn coding(&mut self, obj: &Map<String, Value>, b: &Binding, here: &Loc) {
        let (Some(Value::String(system)), Some(Value::String(code))) =
            (obj.get("system"), obj.get("code"))
        else {
            return;
        };
        if b.has_system(system) && !b.has(system, code) {
            self.error(
                IssueType::CodeInvalid,
                Some(here),
                format!(
                    "Code '{code}' of system '{system}' is not in the required value set {}",
                    b.url
                ),
            );
        }
    }

    /// Syntax and target type of `Reference.reference`, and `Reference.type`.
    fn reference<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        ety: &ElemType,
        here: &Loc,
        ctx: &mut ResCtx<'v>,
    ) {
        if let Some(Value::String(t)) = obj.get("type") {
            let name = t
                .strip_prefix("http://hl7.org/fhir/StructureDefinition/")
                .unwrap_or(t);
            if !crate::r4().is_resource_type(name) {
                // The binding is extensible (a logical model's URI may stand here): a warning.
                let l = here.name("type");
                self.warning(
                    IssueType::Value,
                    &l,
                    format!("Reference.type '{t}' is not a resource type"),
                );
            } else {
                self.check_target(name, ety, here);
            }
        }
        let Some(Value::String(r)) = obj.get("reference") else {
            return;
        };
        let r = r.as_str();
        if r.is_empty() {
            return; // reported by the primitive check
        }
        let l = here.name("reference");
        if let Some(id) = r.strip_prefix('#') {
            if id.is_empty() {
                ctx.refers_to_container = true;
            } else if ctx.contained_ids.contains(&id) {
                ctx.local_refs.push(id);
            } else {
                self.error(
                    IssueType::Invalid,
                    Some(&l),
                    format!("Local reference '{r}' does not match the id of a contained resource"),
                );
            }
            return;
        }
        if let Some(rest) = r.strip_prefix("urn:uuid:") {
            if !is_uuid(r) {
                let _ = rest;
                self.error(
                    IssueType::Value,
                    Some(&l),
                    format!("Invalid urn:uuid reference '{r}'"),
                );
            }
            return;
        }
        if r.starts_with("urn:oid:") {
            if !is_oid(r) {
                self.error(
                    IssueType::Value,
                    Some(&l),
                    format!("Invalid urn:oid reference '{r}'"),
                );
            }
            return;
        }
        if r.starts_with("http://") || r.starts_with("https://") {
            if r.contains(char::is_whitespace) {
                self.error(
                    IssueType::Value,
                    Some(&l),
                    format!("Invalid reference URL '{r}'"),
                );
                return;
            }
            // [base]/Type/id or [base]/Type/id/_history/vid: check the type when recognisable.
            let path = r.split(['?', '#']).next().unwrap_or(r);
            let segs: Vec<&str> = path.rsplitn(5, '/').collect();
            let ty = if segs.len() >= 4 && segs[1] == "_history" {
                Some(segs[3])
            } else if segs.len() >= 2 {
                Some(segs[1])
            } else {
                None
            };
            if let Some(ty) = ty.filter(|t| crate::r4().is_resource_type(t)) {
                self.check_target(ty, ety, &l);
            }
            return;
        }
        // Relative: Type/id, Type/id/_history/vid, or (in transactions) Type?criteria.
        if let Some((ty, _query)) = r.split_once('?')
            && self.allow_conditional
            && crate::r4().is_resource_type(ty)
        {
            self.check_target(ty, ety, &l);
            return;
        }
        let mut parts = r.split('/');
        let (ty, id) = (parts.next().unwrap_or(""), parts.next());
        let history = parts.next();
        let vid = parts.next();
        let extra = parts.next();
        let ok_shape = match (id, history, vid, extra) {
            (Some(id), None, None, None) => is_id(id),
            (Some(id), Some("_history"), Some(v), None) => is_id(id) && is_id(v),
            _ => false,
        };
        if !ok_shape {
            self.error(
                IssueType::Value,
                Some(&l),
                format!(
                    "Invalid reference '{r}': expected Type/id, Type/id/_history/vid, an absolute \
                     URL, #localid, urn:uuid: or urn:oid:"
                ),
            );
            return;
        }
        if !crate::r4().is_resource_type(ty) {
            self.error(
                IssueType::Value,
                Some(&l),
                format!("Invalid reference '{r}': '{ty}' is not a resource type"),
            );
            return;
        }
        self.check_target(ty, ety, &l);
    }

    fn check_target(&mut self, ty: &str, ety: &ElemType, l: &Loc) {
        let targets = ety.targets;
        if targets.is_empty() || targets.iter().any(|t| t == "Resource" || t == ty) {
            return;
        }
        let allowed: Vec<&str> = targets.iter().map(String::as_str).collect();
        self.error(
            IssueType::Invalid,
            Some(l),
            format!(
                "A reference to a {ty} is not allowed here (allowed: {})",
                allowed.join(", ")
            ),
        );
    }

    /// A primitive element: its value(s) and/or its `_name` extension sibling.
    #[allow(clippy::too_many_arguments)]
    fn primitive_element<'v>(
        &mut self,
        value: Option<&'v Value>,
        ext: Option<&'v Value>,
        elem: &Elem,
        ety: &ElemType,
        p: Prim,
        parent: &Loc,
        ctx: &mut ResCtx<'v>,
    ) {
        let named = parent.name(elem.name);
        let typed;
        let here: &Loc = if elem.is_choice() {
            typed = named.of_type(ety.code);
            &typed
        } else {
            &named
        };
        if !elem.is_array() {
            if elem.max() == Some(0) {
                self.error(
                    IssueType::Structure,
                    Some(here),
                    format!("Element '{}' is not allowed here (max 0)", elem.name),
                );
            }
            if let Some(v) = value {
                match v {
                    Value::Array(_) => self.error(
                        IssueType::Structure,
                        Some(here),
                        format!(
                            "Element '{}' has max cardinality 1 and must not be a JSON array",
                            elem.name
                        ),
                    ),
                    Value::Null => self.error(
                        IssueType::Structure,
                        Some(here),
                        "null is only allowed inside arrays of primitives aligned with their \
                         '_' extension array"
                            .into(),
                    ),
                    v => {
                        self.primitive_value(v, p, elem, here);
                        note_local_ref(v, p, ctx);
                    }
                }
            }
            if let Some(e) = ext {
                self.primitive_ext(e, p, value.is_none(), here, ctx);
            }
            return;
        }
        // Repeating primitive: parallel arrays `name` and `_name`, aligned with nulls.
        let values = match value {
            None => None,
            Some(Value::Array(a)) => Some(a),
            Some(v) => {
                self.error(
                    IssueType::Structure,
                    Some(here),
                    format!(
                        "Element '{}' repeats (max {}) and must be a JSON array",
                        elem.name,
                        max_text(elem)
                    ),
                );
                if !v.is_null() {
                    self.primitive_value(v, p, elem, here);
                }
                None
            }
        };
        let exts = match ext {
            None => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => {
                self.error(
                    IssueType::Structure,
                    Some(here),
                    format!(
                        "'_{}' must be a JSON array aligned with '{}'",
                        elem.name, elem.name
                    ),
                );
                None
            }
        };
        if let (Some(vs), Some(es)) = (values, exts)
            && vs.len() != es.len()
        {
            self.error(
                IssueType::Structure,
                Some(here),
                format!(
                    "'{}' has {} values but '_{}' has {}: the arrays must be aligned with nulls",
                    elem.name,
                    vs.len(),
                    elem.name,
                    es.len()
                ),
            );
        }
        let n = values
            .map(Vec::len)
            .unwrap_or(0)
            .max(exts.map(Vec::len).unwrap_or(0));
        if n == 0 && (values.is_some() || exts.is_some()) {
            self.error(
                IssueType::Structure,
                Some(here),
                "Empty arrays are not allowed (omit the element)".into(),
            );
            return;
        }
        self.check_max(n, elem, here);
        for i in 0..n {
            let v = values.and_then(|a| a.get(i)).filter(|v| !v.is_null());
            let e = exts.and_then(|a| a.get(i)).filter(|v| !v.is_null());
            let l = here.index(i);
            match (v, e) {
                (None, None) => self.error(
                    IssueType::Structure,
                    Some(&l),
                    "A null value must be matched by an extension in the '_' array".into(),
                ),
                (v, e) => {
                    if let Some(v) = v {
                        if v.is_array() {
                            self.error(
                                IssueType::Structure,
                                Some(&l),
                                "Nested arrays are not allowed".into(),
                            );
                        } else {
                            self.primitive_value(v, p, elem, &l);
                            note_local_ref(v, p, ctx);
                        }
                    }
                    if let Some(e) = e {
                        self.primitive_ext(e, p, v.is_none(), &l, ctx);
                    }
                }
            }
        }
    }

    /// The `_name` object of a primitive: `id` and `extension` only.
    fn primitive_ext<'v>(
        &mut self,
        e: &'v Value,
        p: Prim,
        without_value: bool,
        here: &Loc,
        ctx: &mut ResCtx<'v>,
    ) {
        let Value::Object(obj) = e else {
            self.error(
                IssueType::Structure,
                Some(here),
                format!(
                    "The '_' sibling of a primitive must be a JSON object with id and/or extension, \
                     found {}",
                    json_kind(e)
                ),
            );
            return;
        };
        if p == Prim::Xhtml && obj.contains_key("extension") {
            self.error(
                IssueType::Structure,
                Some(here),
                "The narrative div cannot have extensions".into(),
            );
        }
        let sid = self.s.element_scope;
        self.object(obj, sid, here, ctx, without_value);
    }

    /// The JSON value of one primitive: its JSON type and lexical form.
    fn primitive_value(&mut self, v: &Value, p: Prim, elem: &Elem, here: &Loc) {
        match p {
            Prim::Boolean => {
                if !v.is_boolean() {
                    self.wrong_json(v, "a JSON boolean (true/false)", p, here);
                }
            }
            Prim::Integer | Prim::UnsignedInt | Prim::PositiveInt => {
                let Value::Number(n) = v else {
                    self.wrong_json(v, "a JSON number", p, here);
                    return;
                };
                let text = n.as_str();
                let parsed = if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                    text.parse::<i64>().ok()
                } else {
                    None
                };
                let Some(i) = parsed else {
                    self.error(
                        IssueType::Value,
                        Some(here),
                        format!("Invalid {}: '{text}' is not a whole number", prim_name(p)),
                    );
                    return;
                };
                let (lo, what) = match p {
                    Prim::PositiveInt => (1, "at least 1"),
                    Prim::UnsignedInt => (0, "at least 0"),
                    _ => (i32::MIN as i64, "a 32-bit integer"),
                };
                if i < lo || i > i32::MAX as i64 {
                    self.error(
                        IssueType::Value,
                        Some(here),
                        format!(
                            "Invalid {}: {text} is out of range (must be {what}, at most {})",
                            prim_name(p),
                            i32::MAX
                        ),
                    );
                }
            }
            Prim::Decimal => {
                let Value::Number(n) = v else {
                    self.wrong_json(v, "a JSON number", p, here);
                    return;
                };
                if !is_decimal_text(n.as_str()) {
                    self.error(
                        IssueType::Value,
                        Some(here),
                        format!("Invalid decimal '{}'", n.as_str()),
                    );
                } else if let Err(why) = crate::decimal::check_indexable(n.as_str()) {
                    self.error(IssueType::Value, Some(here), format!("Decimal {why}"));
                }
            }
            _ => {
                let Value::String(s) = v else {
                    self.wrong_json(v, "a JSON string", p, here);
                    return;
                };
                self.string_value(s, p, elem, here);
            }
        }
    }

    fn wrong_json(&mut self, v: &Value, expected: &str, p: Prim, here: &Loc) {
        self.error(
            IssueType::Structure,
            Some(here),
            format!(
                "A {} must be written as {expected}, found {}",
                prim_name(p),
                json_kind(v)
            ),
        );
    }

    fn string_value(&mut self, s: &str, p: Prim, elem: &Elem, here: &Loc) {
        if s.is_empty() {
            self.error(
                IssueType::Value,
                Some(here),
                "Empty strings are not allowed (omit the element or use an extension)".into(),
            );
            return;
        }
        let ok = match p {
            Prim::String | Prim::Markdown => {
                if s.len() > MAX_STRING_CHARS {
                    let chars = s.chars().count();
                    if chars > MAX_STRING_CHARS {
                        self.error(
                            IssueType::TooLong,
                            Some(here),
                            format!(
                                "A {} must not exceed {MAX_STRING_CHARS} characters ({chars} given)",
                                prim_name(p)
                            ),
                        );
                    }
                }
                if s.trim().is_empty() {
                    self.warning(
                        IssueType::Value,
                        here,
                        "The string has only whitespace; strings should have non-whitespace content"
                            .into(),
                    );
                } else if p == Prim::String
                    && (s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace))
                {
                    self.warning(
                        IssueType::Value,
                        here,
                        "The string has leading or trailing whitespace".into(),
                    );
                }
                if s.bytes()
                    .any(|b| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r')
                {
                    self.warning(
                        IssueType::Value,
                        here,
                        "The string contains control characters (below U+0020 other than tab, CR, LF)"
                            .into(),
                    );
                }
                true
            }
            Prim::Code => is_code(s),
            Prim::Id => is_id(s),
            Prim::Uri | Prim::Url | Prim::Canonical => no_whitespace(s),
            Prim::Oid => is_oid(s),
            Prim::Uuid => is_uuid(s),
            Prim::Base64Binary => is_base64(s),
            Prim::Date => is_date(s),
            Prim::DateTime => is_date_time(s),
            Prim::Instant => is_instant(s),
            Prim::Time => is_time(s),
            Prim::Xhtml => {
                if let Err(msg) = check_xhtml(s) {
                    self.error(
                        IssueType::Value,
                        Some(here),
                        format!("Invalid narrative XHTML: {msg}"),
                    );
                }
                true
            }
            Prim::Boolean
            | Prim::Integer
            | Prim::UnsignedInt
            | Prim::PositiveInt
            | Prim::Decimal => true,
        };
        if !ok {
            self.error(
                IssueType::Value,
                Some(here),
                format!("Invalid {} '{}'{}", prim_name(p), clip(s), format_hint(p)),
            );
            return;
        }
        if let (Some(b), true) = (elem.binding, self.opts.check_bindings)
            && !b.has_code(s)
        {
            self.error(
                IssueType::CodeInvalid,
                Some(here),
                format!(
                    "Code '{}' is not in the required value set {}",
                    clip(s),
                    b.url
                ),
            );
        }
    }
}

/// A `canonical` or `uri` of the form `#id` points at a contained resource (dom-3).
fn note_local_ref<'v>(v: &'v Value, p: Prim, ctx: &mut ResCtx<'v>) {
    if let (Prim::Canonical | Prim::Uri, Value::String(s)) = (p, v)
        && let Some(id) = s.strip_prefix('#')
    {
        if id.is_empty() {
            ctx.refers_to_container = true;
        } else {
            ctx.local_refs.push(id);
        }
    }
}

/// The `_name` sibling of primitive property `name`, found without allocating for short names.
pub(crate) fn sibling_ext<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    let mut buf = [0u8; 96];
    let n = name.len();
    if n < buf.len() {
        buf[0] = b'_';
        buf[1..=n].copy_from_slice(name.as_bytes());
        let key = std::str::from_utf8(&buf[..=n]).ok()?;
        obj.get(key)
    } else {
        obj.get(&format!("_{name}"))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn max_text(elem: &Elem) -> String {
    match elem.max() {
        Some(m) => m.to_string(),
        None => "*".into(),
    }
}

fn prim_name(p: Prim) -> &'static str {
    match p {
        Prim::Boolean => "boolean",
        Prim::Integer => "integer",
        Prim::UnsignedInt => "unsignedInt",
        Prim::PositiveInt => "positiveInt",
        Prim::Decimal => "decimal",
        Prim::String => "string",
        Prim::Markdown => "markdown",
        Prim::Code => "code",
        Prim::Id => "id",
        Prim::Uri => "uri",
        Prim::Url => "url",
        Prim::Canonical => "canonical",
        Prim::Oid => "oid",
        Prim::Uuid => "uuid",
        Prim::Base64Binary => "base64Binary",
        Prim::Date => "date",
        Prim::DateTime => "dateTime",
        Prim::Instant => "instant",
        Prim::Time => "time",
        Prim::Xhtml => "xhtml",
    }
}

fn format_hint(p: Prim) -> &'static str {
    match p {
        Prim::Code => " (no leading, trailing or repeated whitespace)",
        Prim::Id => " (1-64 characters A-Z a-z 0-9 - .)",
        Prim::Uri | Prim::Url | Prim::Canonical => " (no whitespace)",
        Prim::Oid => " (urn:oid: followed by dotted numbers)",
        Prim::Uuid => " (urn:uuid: followed by a lowercase UUID)",
        Prim::Base64Binary => " (not valid base64)",
        Prim::Date => " (YYYY, YYYY-MM or YYYY-MM-DD)",
        Prim::DateTime => {
            " (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with Z or +hh:mm)"
        }
        Prim::Instant => " (YYYY-MM-DDThh:mm:ss[.fff] with Z or +hh:mm)",
        Prim::Time => " (hh:mm:ss[.fff])",
        _ => "",
    }
}

/// A value shortened for a diagnostic message.
fn clip(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 77;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests;
