//! Snapshots generated from a differential: for a StructureDefinition published without one
//! (hand-written profiles, packages that ship differentials only), the snapshot is its base's
//! snapshot with the differential applied, element by element, in the differential's order:
//!
//! - an element the base has (by id) takes the differential's properties (cardinality, types,
//!   fixed and pattern values, bindings, slicing, …; constraints are added to the base's);
//! - a slice (`Observation.category:laboratory`) is a copy of its sliced element with that
//!   element's children, placed after the element's other slices, then constrained;
//! - an element inside a data type the base does not expand (`Observation.code.coding`)
//!   expands that data type first: its children (from its own definition or profile) are put
//!   under the element, as the specification's snapshot generator does.
//!
//! The base is an installed StructureDefinition (itself generated when it has no snapshot) or,
//! for R4's own types when the R4 package is not installed, a snapshot made from issho-model's
//! generated tables (cardinality, types, reference targets, required and extensible
//! bindings).

use crate::Definitions;
use issho_model::r4;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const R4_BASE: &str = "http://hl7.org/fhir/StructureDefinition/";
/// How many elements a snapshot may have (the largest published ones have a few thousand).
const MAX_ELEMENTS: usize = 50_000;
/// How deep bases may chain (a profile on a profile on …); deeper is refused as a cycle.
const MAX_CHAIN: usize = 16;

thread_local! {
    static CHAIN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The snapshot elements of `sd`: its own, or generated from its differential and its base.
pub fn snapshot_elements(sd: &Value, defs: &dyn Definitions) -> Result<Vec<Value>, String> {
    if let Some(own) = sd["snapshot"]["element"].as_array()
        && !own.is_empty()
    {
        return Ok(own.clone());
    }
    let url = sd["url"].as_str().unwrap_or("(no url)");
    let diff = sd["differential"]["element"]
        .as_array()
        .ok_or_else(|| format!("{url} has neither a snapshot nor a differential"))?;
    let base_url = sd["baseDefinition"]
        .as_str()
        .ok_or_else(|| format!("{url} has a differential but no baseDefinition"))?;
    if sd["derivation"].as_str() == Some("specialization") {
        return Err(format!(
            "{url} defines a new type (derivation specialization): its snapshot cannot be \
             generated from a differential here"
        ));
    }
    let depth = CHAIN.with(|c| c.get());
    if depth >= MAX_CHAIN {
        return Err(format!(
            "{url}: its bases chain deeper than {MAX_CHAIN} (a cycle?)"
        ));
    }
    CHAIN.with(|c| c.set(depth + 1));
    let base = base_elements(defs, base_url);
    CHAIN.with(|c| c.set(depth));
    let out = base.ok_or_else(|| format!("{url}: its base {base_url} is not installed"))?;
    let mut g = Gen {
        pristine: out
            .iter()
            .map(|e| (id_of(e).to_string(), e.clone()))
            .collect(),
        out,
        defs,
    };
    if diff.len() > MAX_ELEMENTS {
        return Err(format!("{url}: over {MAX_ELEMENTS} differential elements"));
    }
    for d in diff {
        g.apply(d).map_err(|e| format!("{url}: {e}"))?;
        if g.out.len() > MAX_ELEMENTS {
            return Err(format!(
                "{url}: its snapshot grows over {MAX_ELEMENTS} elements"
            ));
        }
    }
    Ok(g.out)
}

/// The snapshot elements of the definition `url`: installed (its own or generated), or R4's
/// own type from the tables.
pub(crate) fn base_elements(defs: &dyn Definitions, url: &str) -> Option<Vec<Value>> {
    if let Some(p) = defs.profile(url) {
        return Some(p.elements.clone());
    }
    let name = url.strip_prefix(R4_BASE)?;
    from_tables(name)
}

/// A snapshot of R4's type `name` made from the generated tables.
fn from_tables(name: &str) -> Option<Vec<Value>> {
    let td = r4().type_def(name)?;
    let root = td.root.as_str();
    let mut out = vec![json!({"id": root, "path": root, "min": 0, "max": "*"})];
    for e in &td.elements {
        let id = format!("{root}.{}", e.path);
        let mut el = json!({
            "id": id,
            "path": id,
            "min": e.min,
            "max": e.max.map_or("*".to_string(), |m| m.to_string()),
        });
        if let Some(r) = &e.content_ref {
            el["contentReference"] = Value::String(format!("#{root}.{r}"));
        } else {
            let types: Vec<Value> = e
                .types
                .iter()
                .map(|t| {
                    let mut x = json!({"code": t.code});
                    if !t.profile.is_empty() {
                        x["profile"] = t
                            .profile
                            .iter()
                            .map(|p| Value::String(format!("{R4_BASE}{p}")))
                            .collect();
                    }
                    if !t.targets.is_empty() {
                        x["targetProfile"] = t
                            .targets
                            .iter()
                            .map(|t| Value::String(format!("{R4_BASE}{t}")))
                            .collect();
                    }
                    x
                })
                .collect();
            el["type"] = Value::Array(types);
        }
        // R4 slices every extension by its url.
        if e.name == "extension" || e.name == "modifierExtension" {
            el["slicing"] = json!({"discriminator": [{"type": "value", "path": "url"}],
                "description": "Extensions are always sliced by (at least) url",
                "rules": "open"});
        }
        if let Some(vs) = &e.binding {
            el["binding"] = json!({"strength": "required", "valueSet": vs});
        } else if let Some(vs) = &e.extensible {
            el["binding"] = json!({"strength": "extensible", "valueSet": vs});
        }
        out.push(el);
    }
    Some(out)
}

struct Gen<'a> {
    out: Vec<Value>,
    defs: &'a dyn Definitions,
    /// Each element as it was before the differential constrained it (by id): what a
    /// `contentReference` brings is the referenced definition unconstrained.
    pristine: HashMap<String, Value>,
}

fn id_of(e: &Value) -> &str {
    e["id"]
        .as_str()
        .or_else(|| e["path"].as_str())
        .unwrap_or("")
}

/// The id without slice names: the element's path.
fn path_of(id: &str) -> String {
    id.split('.')
        .map(|s| s.split(':').next().unwrap_or(s))
        .collect::<Vec<_>>()
        .join(".")
}

impl Gen<'_> {
    fn find(&self, id: &str) -> Option<usize> {
        self.out.iter().position(|e| id_of(e) == id)
    }

    /// The end (exclusive) of the subtree at `i`: its descendants and, with `slices`, the
    /// slices of it and theirs.
    fn subtree_end(&self, i: usize, slices: bool) -> usize {
        let id = id_of(&self.out[i]).to_string();
        let (below, sliced) = (format!("{id}."), format!("{id}:"));
        let mut j = i + 1;
        while j < self.out.len() {
            let x = id_of(&self.out[j]);
            if !(x.starts_with(&below) || (slices && x.starts_with(&sliced))) {
                break;
            }
            j += 1;
        }
        j
    }

    fn apply(&mut self, d: &Value) -> Result<(), String> {
        let id = match (d["id"].as_str(), d["path"].as_str()) {
            (Some(id), _) => id.to_string(),
            (None, Some(p)) => match d["sliceName"].as_str() {
                Some(s) => format!("{p}:{s}"),
                None => p.to_string(),
            },
            (None, None) => return Err("a differential element without id or path".into()),
        };
        let i = self.ensure(&id)?;
        merge(&mut self.out[i], d);
        Ok(())
    }

    /// The index of element `id`, making it (a slice, or a data type's child) when the base
    /// does not have it yet.
    fn ensure(&mut self, id: &str) -> Result<usize, String> {
        if let Some(i) = self.find(id) {
            return Ok(i);
        }
        // Slice names hold no dots (R4's sliceName pattern).
        let Some(dot) = id.rfind('.') else {
            return Err(format!("{id}: not an element of the base"));
        };
        let (parent, last) = (&id[..dot], &id[dot + 1..]);
        if let Some((name, slice)) = last.rsplit_once(':') {
            // A slice, or a reslice `name:a/b` (a slice of the slice `name:a` when there is
            // one; JP-CLINS names plain slices so, too).
            let sliced = match slice.rsplit_once('/') {
                Some((outer, _)) if self.find(&format!("{parent}.{name}:{outer}")).is_some() => {
                    format!("{parent}.{name}:{outer}")
                }
                _ => format!("{parent}.{name}"),
            };
            let base = self.ensure(&sliced)?;
            return Ok(self.add_slice(base, id, slice));
        }
        let p = self.ensure(parent)?;
        self.expand(p)?;
        self.find(id)
            .ok_or_else(|| format!("{id}: the base has no element {}", path_of(id)))
    }

    /// A copy of the element at `base` with its children, as the slice `id`.
    /// A slice starts from its sliced element as constrained so far, with its children; an
    /// element defined by a `contentReference` (`Composition.section.section`) without them:
    /// a slice's children come from the referenced definition when the differential reaches
    /// them.
    fn add_slice(&mut self, base: usize, id: &str, slice: &str) -> usize {
        let base_id = id_of(&self.out[base]).to_string();
        let end = if self.out[base].get("contentReference").is_some() {
            base + 1
        } else {
            self.subtree_end(base, false)
        };
        let mut copy: Vec<Value> = self.out[base..end].to_vec();
        for (k, e) in copy.iter_mut().enumerate() {
            let old = id_of(e).to_string();
            let new = format!("{id}{}", &old[base_id.len()..]);
            e["id"] = Value::String(new);
            if k == 0 {
                if let Some(o) = e.as_object_mut() {
                    o.remove("slicing");
                }
                e["sliceName"] = Value::String(slice.into());
            }
        }
        let at = self.subtree_end(base, true);
        for e in &copy {
            self.pristine.insert(id_of(e).to_string(), e.clone());
        }
        self.out.splice(at..at, copy);
        at
    }

    /// Puts the children of the element at `i` under it, from its data type (or its type's
    /// profile, or the element a `contentReference` names), when it has none yet.
    fn expand(&mut self, i: usize) -> Result<(), String> {
        if self.subtree_end(i, false) > i + 1 {
            return Ok(());
        }
        let e = &self.out[i];
        let (id, path) = (
            id_of(e).to_string(),
            e["path"].as_str().unwrap_or("").to_string(),
        );
        let children: Vec<Value> = if let Some(r) = e["contentReference"].as_str() {
            let target = r.trim_start_matches('#');
            let t = self
                .out
                .iter()
                .position(|x| x["path"] == target && !id_of(x).contains(':'))
                .ok_or_else(|| format!("{id}: its content reference {r} is not in the base"))?;
            let end = self.subtree_end(t, false);
            self.out[t..end]
                .iter()
                .map(|x| self.pristine.get(id_of(x)).unwrap_or(x))
                .map(|x| rebase(x, target, &id, target, &path))
                .skip(1)
                .collect()
        } else {
            let types = e["type"].as_array().cloned().unwrap_or_default();
            let [t] = types.as_slice() else {
                return Err(format!(
                    "{id}: its children are constrained but it has {} types (constrain it to one)",
                    types.len()
                ));
            };
            let code = t["code"].as_str().unwrap_or_default();
            let url = t["profile"][0]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{R4_BASE}{code}"));
            let elements = base_elements(self.defs, &url)
                .or_else(|| base_elements(self.defs, &format!("{R4_BASE}{code}")))
                .ok_or_else(|| format!("{id}: the definition of its type {code} is not known"))?;
            let root = id_of(&elements[0]).to_string();
            let root_path = elements[0]["path"].as_str().unwrap_or(&root).to_string();
            elements
                .iter()
                .skip(1)
                .map(|x| rebase(x, &root, &id, &root_path, &path))
                .collect()
        };
        for e in &children {
            self.pristine.insert(id_of(e).to_string(), e.clone());
        }
        self.out.splice(i + 1..i + 1, children);
        Ok(())
    }
}

/// `e` moved from under `from` (id) / `from_path` to under `to` / `to_path`.
fn rebase(e: &Value, from: &str, to: &str, from_path: &str, to_path: &str) -> Value {
    let mut x = e.clone();
    let id = id_of(e);
    x["id"] = Value::String(format!("{to}{}", id.strip_prefix(from).unwrap_or(id)));
    let p = e["path"].as_str().unwrap_or(id);
    x["path"] = Value::String(format!(
        "{to_path}{}",
        p.strip_prefix(from_path).unwrap_or(p)
    ));
    x
}

/// The differential's properties onto the element: each replaces the base's, except
/// constraints, which are added.
fn merge(target: &mut Value, d: &Value) {
    let (Some(t), Some(d)) = (target.as_object_mut(), d.as_object()) else {
        return;
    };
    for (k, v) in d {
        match k.as_str() {
            "id" | "path" => {}
            "constraint" => add_constraints(t, v),
            k if k.starts_with("fixed") || k.starts_with("pattern") => {
                t.retain(|x, _| !(x.starts_with("fixed") || x.starts_with("pattern")));
                t.insert(k.to_string(), v.clone());
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn add_constraints(t: &mut Map<String, Value>, add: &Value) {
    let list = t
        .entry("constraint")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let (Some(list), Some(add)) = (list.as_array_mut(), add.as_array()) {
        for c in add {
            match list.iter_mut().find(|x| x["key"] == c["key"]) {
                Some(x) => *x = c.clone(),
                None => list.push(c.clone()),
            }
        }
    }
}
