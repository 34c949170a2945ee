//! The R4 base invariants: every `constraint` the specification defines on a resource, a
//! data type or an element (dom-2…dom-6, obs-6, qty-3, per-1, ref-1, ext-1, …), evaluated by
//! issho-fhirpath on every write and by `$validate`, whether or not the resource names a
//! profile. ele-1 is checked natively by the profile walk and the structural validation;
//! txt-1 and txt-2 (`htmlChecks()`, which issho-fhirpath does not implement; issho-model
//! checks the narrative's XHTML rules) are left out of the generated table.
//!
//! The walk follows the instance with the generated R4 tables: each value is typed by its
//! element, so a `Quantity` anywhere is checked against qty-3, a `Reference` against ref-1,
//! and an element's own invariants (`Observation.referenceRange`: obs-3) against each of its
//! values. Contained resources are checked with `%rootResource` their container; a Bundle's
//! entries and a Parameters' resources as resources of their own.

use crate::checks::parsed;
use issho_fhirpath::{Context, Item, Location, Node, NodeType};
use issho_model::{ElementDef, Invariant, Issue, IssueType, TypeKind, r4};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// dom-3 is checked natively ([`dom3_holds`]): R4's expression applies `as()` to many items at
/// once (an error in FHIRPath; R5 writes `ofType()`), and evaluated as written it unions every
/// descendant of the resource four times for each contained resource. (que-7, also wrong in
/// R4, comes corrected from the generator.)
const NATIVE_DOM3: &str = "dom-3";

/// dom-3 on `resource`: every contained resource is referred to from elsewhere in the
/// resource (`#id` in a reference, canonical, uri or url anywhere in it), or refers to its
/// container (`#`). Any string `#id` counts, whatever its element's type.
fn dom3_holds(resource: &Value) -> bool {
    let Some(contained) = resource["contained"].as_array() else {
        return true;
    };
    let mut local = HashSet::new();
    local_refs(resource, &mut local);
    contained.iter().all(|c| {
        let mut own = HashSet::new();
        local_refs(c, &mut own);
        own.contains("#")
            || c["id"]
                .as_str()
                .is_some_and(|id| local.contains(format!("#{id}").as_str()))
    })
}

/// Every string of `v` that starts with `#`.
fn local_refs<'v>(v: &'v Value, out: &mut HashSet<&'v str>) {
    match v {
        Value::String(s) if s.starts_with('#') => {
            out.insert(s.as_str());
        }
        Value::Array(a) => a.iter().for_each(|x| local_refs(x, out)),
        Value::Object(o) => o.values().for_each(|x| local_refs(x, out)),
        _ => {}
    }
}

/// The issues of `resource` against the R4 base invariants.
pub fn base_invariants(resource: &Value) -> Vec<Issue> {
    base_invariants_checked(resource).0
}

/// The errors of `resource` against the R4 base invariants (warning-level invariants are not
/// evaluated): what a write checks.
pub fn base_invariant_errors(resource: &Value) -> Vec<Issue> {
    run(resource, Some("error")).0
}

/// The warnings of `resource` against the R4 base invariants (error-level invariants are not
/// evaluated): what `$validate` adds to a write's check.
pub fn base_invariant_warnings(resource: &Value) -> Vec<Issue> {
    run(resource, Some("warning")).0
}

/// The issues of `resource` against the R4 base invariants, and the invariants this
/// evaluator could not run on it (`key at: why`; not counted as violations).
pub fn base_invariants_checked(resource: &Value) -> (Vec<Issue>, Vec<String>) {
    run(resource, None)
}

fn run(resource: &Value, only: Option<&'static str>) -> (Vec<Issue>, Vec<String>) {
    let mut w = Walk {
        only,
        issues: Vec::new(),
        seen: HashSet::new(),
        unevaluated: Vec::new(),
    };
    let rt = resource["resourceType"].as_str().unwrap_or_default();
    w.resource(resource, rt, None);
    (w.issues, w.unevaluated)
}

struct Walk {
    /// Which invariants are evaluated: errors only (a write's check), warnings only (what
    /// `$validate` adds to it), or all.
    only: Option<&'static str>,
    issues: Vec<Issue>,
    seen: HashSet<(String, String)>,
    unevaluated: Vec<String>,
}

impl Walk {
    /// A resource (`at` its location) whose `%rootResource` is `container` (contained) or
    /// itself.
    fn resource(&mut self, value: &Value, at: &str, container: Option<&Value>) {
        let Some(rt) = value["resourceType"].as_str() else {
            return;
        };
        let Some(nt) = NodeType::named(rt) else {
            return;
        };
        let scope = Scope {
            resource: value,
            root: container.unwrap_or(value),
        };
        let node = Node {
            value,
            ext: None,
            ty: Some(nt),
            location: Location::root(),
        };
        let mut t = r4().type_def(rt);
        while let Some(td) = t {
            self.check(&scope, &td.invariants, &td.name, &node, at);
            t = td.base.as_deref().and_then(|b| r4().type_def(b));
        }
        let mut at = at.to_string();
        self.object(&scope, value, nt, &mut at);
    }

    /// The children of an object of type `nt`; `at` is its location, extended and restored
    /// for each child (one buffer for the whole walk).
    fn object(&mut self, scope: &Scope, value: &Value, nt: NodeType, at: &mut String) {
        let Some(obj) = value.as_object() else {
            return;
        };
        let has_primitive_extensions = obj.keys().any(|k| k.starts_with('_'));
        for (key, v) in obj {
            if key == "resourceType" || key.starts_with('_') {
                continue;
            }
            let Some((def, cnt)) = nt.child(key) else {
                continue;
            };
            let exts = if has_primitive_extensions {
                obj.get(&format!("_{key}"))
            } else {
                None
            };
            let resource_valued = def.types.iter().any(|t| t.code == "Resource");
            let (values, indexed): (&[Value], bool) = match v {
                Value::Array(a) => (a.as_slice(), true),
                _ => (std::slice::from_ref(v), false),
            };
            for (i, x) in values.iter().enumerate() {
                let len = at.len();
                at.push('.');
                at.push_str(key);
                if indexed {
                    at.push_str(&format!("[{i}]"));
                }
                let ext = if indexed {
                    exts.and_then(|e| e.get(i)).filter(|e| !e.is_null())
                } else {
                    exts
                };
                if resource_valued && x.get("resourceType").is_some() {
                    let container = (key == "contained").then_some(scope.root);
                    let here = at.clone();
                    self.resource(x, &here, container);
                } else {
                    self.value(scope, def, nt, cnt, x, ext, at);
                }
                at.truncate(len);
            }
        }
    }

    /// One value of element `def` (of type `cnt`) in an object of type `nt`.
    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        scope: &Scope,
        def: &ElementDef,
        nt: NodeType,
        cnt: NodeType,
        x: &Value,
        ext: Option<&Value>,
        at: &mut String,
    ) {
        let node = Node {
            value: x,
            ext,
            ty: Some(cnt),
            location: Location::root(),
        };
        if !def.invariants.is_empty() {
            let owner = owner_name(scope, nt);
            self.check(scope, &def.invariants, owner, &node, at);
        }
        // A data type's own invariants and its bases' (qty-3 on every Quantity…), of the
        // profile of it the element requires when R4 names one (SimpleQuantity: sqty-1).
        let typed = def
            .types
            .iter()
            .find(|t| t.code == cnt.code)
            .and_then(|t| t.profile.first())
            .map_or(cnt.code, String::as_str);
        if !def.is_backbone()
            && def.content_ref.is_none()
            && !cnt.is_primitive()
            && let Some(list) = data_type_invariants().get(typed)
        {
            for (owner, inv) in list {
                self.check(scope, inv, owner, &node, at);
            }
        }
        if x.is_object() {
            self.object(scope, x, cnt, at);
        }
    }

    /// `list` evaluated with `node` as the focus.
    fn check(&mut self, scope: &Scope, list: &[Invariant], owner: &str, node: &Node, at: &str) {
        if list.is_empty() {
            return;
        }
        let ctx = Context {
            resource: Some(scope.resource),
            root_resource: Some(scope.root),
            ..Default::default()
        };
        let focus = [Item::Node(node.clone())];
        for c in list {
            if self.only.is_some_and(|s| c.severity != s) {
                continue;
            }
            if c.key == NATIVE_DOM3 {
                if !dom3_holds(node.value) {
                    self.fail(c, owner, at);
                }
                continue;
            }
            let Some(x) = parsed(&c.expression) else {
                self.unevaluated.push(format!("{} {at}: not parsed", c.key));
                continue;
            };
            let holds = match issho_fhirpath::evaluate_items(&x, &focus, scope.resource, &ctx) {
                Ok(items) => !(items.len() == 1 && items[0].to_json() == Value::Bool(false)),
                // An expression this evaluator cannot run on this input is not a violation
                // (the examples' test shows there are none among the R4 examples).
                Err(e) => {
                    self.unevaluated.push(format!("{} {at}: {e}", c.key));
                    true
                }
            };
            if !holds {
                self.fail(c, owner, at);
            }
        }
    }

    /// Reports that `c` failed at `at` (once per invariant and place).
    fn fail(&mut self, c: &Invariant, owner: &str, at: &str) {
        if !self.seen.insert((c.key.clone(), at.to_string())) {
            return;
        }
        let msg = if c.key == NATIVE_DOM3 {
            format!("{owner} (R4): {at}: {} failed: {}", c.key, c.human)
        } else {
            format!(
                "{owner} (R4): {at}: {} failed: {} ({})",
                c.key, c.human, c.expression
            )
        };
        let issue = if c.severity == "error" {
            Issue::error(IssueType::Invariant, msg)
        } else {
            Issue::warning(IssueType::Invariant, msg)
        };
        self.issues.push(issue.at(at));
    }
}

/// A type's invariants and its bases': (type name, invariants) of each that has some.
type Chain = Vec<(&'static str, &'static [Invariant])>;

/// Per complex data type with invariants (its own or its bases'), made once from the tables.
fn data_type_invariants() -> &'static HashMap<&'static str, Chain> {
    static MAP: OnceLock<HashMap<&'static str, Chain>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut out = HashMap::new();
        for td in r4().types().filter(|t| t.kind == TypeKind::Complex) {
            let mut chain = Vec::new();
            let mut t = Some(td);
            while let Some(x) = t {
                if !x.invariants.is_empty() {
                    chain.push((x.name.as_str(), x.invariants.as_slice()));
                }
                t = x.base.as_deref().and_then(|b| r4().type_def(b));
            }
            if !chain.is_empty() {
                out.insert(td.name.as_str(), chain);
            }
        }
        out
    })
}

/// The resource or data type whose element this is, for messages.
fn owner_name<'v>(scope: &Scope<'v>, nt: NodeType) -> &'v str {
    match nt.code {
        "BackboneElement" | "Element" => scope.resource["resourceType"].as_str().unwrap_or(""),
        c => r4().type_def(c).map_or("", |t| t.name.as_str()),
    }
}

struct Scope<'v> {
    resource: &'v Value,
    root: &'v Value,
}

#[cfg(test)]
mod tests {
    use super::base_invariants_checked;
    use serde_json::{Value, json};

    /// The keys of the failed invariants (errors and warnings), and that all ran.
    fn failed(r: Value) -> Vec<String> {
        let (issues, unevaluated) = base_invariants_checked(&r);
        assert!(unevaluated.is_empty(), "{unevaluated:?}");
        let mut keys: Vec<String> = issues
            .iter()
            .filter(|i| !i.diagnostics.contains("dom-6"))
            .map(|i| {
                let k = i.diagnostics.split(" failed").next().unwrap();
                let k = k.rsplit(' ').next().unwrap().to_string();
                format!("{k}@{}", i.expression.as_deref().unwrap_or(""))
            })
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn resource_element_and_data_type_invariants() {
        let obs = json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1, "code": "mg"},
            "dataAbsentReason": {"text": "and a value"},
            "effectivePeriod": {"start": "2024-02-01", "end": "2024-01-01"},
            "referenceRange": [{"text": "fine"}, {}],
            "extension": [{"url": "http://example.org/x", "valueString": "a",
                           "extension": [{"url": "y", "valueCode": "b"}]}]
        });
        assert_eq!(
            failed(obs),
            vec![
                "ext-1@Observation.extension[0]",
                "obs-3@Observation.referenceRange[1]",
                "obs-6@Observation",
                "per-1@Observation.effectivePeriod",
                "qty-3@Observation.valueQuantity",
            ]
        );
        let ok = json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "mg"},
            "effectivePeriod": {"start": "2024-01-01", "end": "2024-02-01"}
        });
        assert_eq!(failed(ok), Vec::<String>::new());
    }

    #[test]
    fn contained_resources_must_be_referred_to_and_flat() {
        let unreferred = json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p"},
            "medicationReference": {"reference": "#m1"},
            "contained": [
                {"resourceType": "Medication", "id": "m1"},
                {"resourceType": "Medication", "id": "m2", "meta": {"versionId": "3"}}
            ]
        });
        assert_eq!(
            failed(unreferred),
            vec!["dom-3@MedicationRequest", "dom-4@MedicationRequest"]
        );
        // ref-1: a local reference names a contained resource of the root.
        let dangling = json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p"},
            "medicationReference": {"reference": "#nowhere"}
        });
        assert_eq!(
            failed(dangling),
            vec!["ref-1@MedicationRequest.medicationReference"]
        );
    }

    #[test]
    fn a_profiled_data_type_meets_its_profile_invariants() {
        // Observation.referenceRange.low is a SimpleQuantity: no comparator (sqty-1).
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "referenceRange": [{"low": {"value": 3, "comparator": ">",
                "system": "http://unitsofmeasure.org", "code": "g/dL"}}]});
        assert_eq!(
            failed(obs),
            vec!["sqty-1@Observation.referenceRange[0].low"]
        );
    }

    #[test]
    fn a_write_checks_the_error_level_invariants_only() {
        // No narrative (dom-6, a warning) and a Period that ends before it starts (per-1).
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "effectivePeriod": {"start": "2024-02-01", "end": "2024-01-01"}});
        let keys = |issues: Vec<issho_model::Issue>| -> Vec<String> {
            issues
                .into_iter()
                .map(|i| i.diagnostics.split(" failed").next().unwrap().to_string())
                .map(|d| d.rsplit(' ').next().unwrap().to_string())
                .collect()
        };
        assert_eq!(keys(super::base_invariant_errors(&obs)), vec!["per-1"]);
        let mut all = keys(super::base_invariants(&obs));
        all.sort();
        assert_eq!(all, vec!["dom-6", "per-1"]);
    }

    #[test]
    fn bundle_entries_are_resources_of_their_own() {
        let b = json!({
            "resourceType": "Bundle", "type": "transaction",
            "entry": [{
                "fullUrl": "urn:uuid:1",
                "resource": {"resourceType": "Observation", "status": "final",
                             "code": {"text": "x"}, "valueQuantity": {"code": "mg"}},
                "request": {"method": "POST", "url": "Observation"}
            }, {
                "resource": {"resourceType": "Patient"}
            }]
        });
        assert_eq!(
            failed(b),
            vec![
                "bdl-3@Bundle",
                "qty-3@Bundle.entry[0].resource.valueQuantity",
            ]
        );
    }
}
