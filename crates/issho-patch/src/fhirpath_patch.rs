//! FHIRPath Patch (FHIR R4 fhirpatch.html): a Parameters resource whose `operation` parameters
//! add, insert, delete, replace or move content at locations chosen by FHIRPath expressions.

use crate::invalid;
use issho_fhirpath::{Context, Expr, Item, NodeType, Step, evaluate, parse};
use issho_model::Issue;
use serde_json::{Map, Value};

/// An owned location step (the document is mutated between evaluation and use).
#[derive(Clone, Debug, PartialEq)]
enum PStep {
    Key(String),
    Index(usize),
}

/// A node chosen by a path: its location and FHIR type.
type Selected = (Vec<PStep>, Option<NodeType>);

/// A value given in an operation: a typed `value[x]` (with the `_value[x]` extensions of a
/// primitive), a resource, or an anonymous structure given as nested parts.
#[derive(Clone, Debug)]
enum PatchValue {
    Typed {
        /// The type suffix of `value[x]`: `String`, `CodeableConcept`…
        suffix: Option<String>,
        value: Value,
        ext: Option<Value>,
    },
    Parts(Vec<(String, PatchValue)>),
}

impl PatchValue {
    fn suffix(&self) -> Option<&str> {
        match self {
            PatchValue::Typed { suffix, .. } => suffix.as_deref(),
            PatchValue::Parts(_) => None,
        }
    }
}

struct Operation {
    kind: String,
    path: String,
    name: Option<String>,
    value: Option<PatchValue>,
    index: Option<i64>,
    source: Option<i64>,
    destination: Option<i64>,
}

fn part_value(part: &Value) -> Result<Option<PatchValue>, Issue> {
    let Some(obj) = part.as_object() else {
        return Ok(None);
    };
    for (k, v) in obj {
        if let Some(suffix) = k.strip_prefix("value")
            && !suffix.is_empty()
        {
            return Ok(Some(PatchValue::Typed {
                suffix: Some(suffix.to_string()),
                value: v.clone(),
                ext: obj.get(&format!("_{k}")).cloned(),
            }));
        }
    }
    for (k, v) in obj {
        if let Some(suffix) = k.strip_prefix("_value")
            && !suffix.is_empty()
        {
            return Ok(Some(PatchValue::Typed {
                suffix: Some(suffix.to_string()),
                value: Value::Null,
                ext: Some(v.clone()),
            }));
        }
    }
    if let Some(r) = obj.get("resource") {
        return Ok(Some(PatchValue::Typed {
            suffix: None,
            value: r.clone(),
            ext: None,
        }));
    }
    if let Some(Value::Array(parts)) = obj.get("part") {
        let mut out = Vec::new();
        for p in parts {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("a value part has a nested part without a name"))?;
            let v = part_value(p)?
                .ok_or_else(|| invalid(format!("the nested value part '{name}' has no value")))?;
            out.push((name.to_string(), v));
        }
        return Ok(Some(PatchValue::Parts(out)));
    }
    Ok(None)
}

fn int_part(p: &Value, name: &str) -> Result<i64, Issue> {
    p.as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.starts_with("value"))
                .and_then(|(_, v)| v.as_i64())
        })
        .ok_or_else(|| invalid(format!("operation part '{name}' must be an integer")))
}

fn string_part(p: &Value, name: &str) -> Result<String, Issue> {
    p.as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.starts_with("value"))
                .and_then(|(_, v)| v.as_str())
        })
        .map(str::to_string)
        .ok_or_else(|| invalid(format!("operation part '{name}' must be a string")))
}

fn read_operation(param: &Value, n: usize) -> Result<Operation, Issue> {
    let mut op = Operation {
        kind: String::new(),
        path: String::new(),
        name: None,
        value: None,
        index: None,
        source: None,
        destination: None,
    };
    let parts = param
        .get("part")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("operation #{n} has no parts")))?;
    for p in parts {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        match name {
            "type" => op.kind = string_part(p, name)?,
            "path" => op.path = string_part(p, name)?,
            "name" => op.name = Some(string_part(p, name)?),
            "value" => {
                op.value = Some(part_value(p)?.ok_or_else(|| {
                    invalid(format!("operation #{n}: the 'value' part has no value"))
                })?)
            }
            "index" => op.index = Some(int_part(p, name)?),
            "source" => op.source = Some(int_part(p, name)?),
            "destination" => op.destination = Some(int_part(p, name)?),
            other => {
                return Err(invalid(format!(
                    "operation #{n} has an unknown part '{other}'"
                )));
            }
        }
    }
    if op.kind.is_empty() {
        return Err(invalid(format!("operation #{n} has no 'type' part")));
    }
    if op.path.is_empty() {
        return Err(invalid(format!("operation #{n} has no 'path' part")));
    }
    Ok(op)
}

/// JSON key, child type and cardinality for element `name` of a node of type `ty`.
fn resolve_child(
    ty: Option<NodeType>,
    name: &str,
    suffix: Option<&str>,
) -> (String, Option<NodeType>, Option<bool>) {
    if let Some(t) = ty {
        if let Some((e, nt)) = t.child(name)
            && !e.is_choice
        {
            return (name.to_string(), Some(nt), Some(e.is_array()));
        }
        if let Some(s) = suffix {
            let key = format!("{name}{s}");
            if let Some((e, nt)) = t.child(&key) {
                return (key, Some(nt), Some(e.is_array()));
            }
        }
    }
    (name.to_string(), None, None)
}

/// The JSON value (and primitive extension) of a patch value placed at a node of type `ty`.
fn materialize(v: &PatchValue, ty: Option<NodeType>) -> (Value, Option<Value>) {
    match v {
        PatchValue::Typed { value, ext, .. } => (value.clone(), ext.clone()),
        PatchValue::Parts(parts) => {
            let mut obj = Map::new();
            let mut done: Vec<&str> = Vec::new();
            for (name, _) in parts {
                if done.contains(&name.as_str()) {
                    continue;
                }
                done.push(name);
                let subs: Vec<&PatchValue> = parts
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .collect();
                let (key, child_ty, is_array) = resolve_child(ty, name, subs[0].suffix());
                let mats: Vec<(Value, Option<Value>)> =
                    subs.iter().map(|s| materialize(s, child_ty)).collect();
                let array = is_array.unwrap_or(mats.len() > 1);
                let any_ext = mats.iter().any(|(_, e)| e.is_some());
                let all_null = mats.iter().all(|(v, _)| v.is_null());
                if array {
                    if !all_null {
                        obj.insert(
                            key.clone(),
                            Value::Array(mats.iter().map(|(v, _)| v.clone()).collect()),
                        );
                    }
                    if any_ext {
                        obj.insert(
                            format!("_{key}"),
                            Value::Array(
                                mats.iter()
                                    .map(|(_, e)| e.clone().unwrap_or(Value::Null))
                                    .collect(),
                            ),
                        );
                    }
                } else {
                    let (v, e) = mats.into_iter().next().unwrap_or((Value::Null, None));
                    if !v.is_null() {
                        obj.insert(key.clone(), v);
                    }
                    if let Some(e) = e {
                        obj.insert(format!("_{key}"), e);
                    }
                }
            }
            (Value::Object(obj), None)
        }
    }
}

fn owned_steps(item: &Item<'_>) -> Option<Vec<PStep>> {
    let loc = item.location()?;
    Some(
        loc.steps()
            .into_iter()
            .map(|s| match s {
                Step::Key(k) => PStep::Key(k.to_string()),
                Step::Index(i) => PStep::Index(i),
            })
            .collect(),
    )
}

fn get_mut<'v>(doc: &'v mut Value, steps: &[PStep]) -> Option<&'v mut Value> {
    let mut cur = doc;
    for s in steps {
        cur = match (s, cur) {
            (PStep::Key(k), Value::Object(o)) => o.get_mut(k)?,
            (PStep::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Split a node location into (steps to the parent object, key, array index).
fn split_location(steps: &[PStep]) -> Option<(&[PStep], &str, Option<usize>)> {
    match steps {
        [parent @ .., PStep::Key(k)] => Some((parent, k, None)),
        [parent @ .., PStep::Key(k), PStep::Index(i)] => Some((parent, k, Some(*i))),
        _ => None,
    }
}

/// Remove empty objects and arrays left behind along `steps` (FHIR JSON has none).
fn prune(doc: &mut Value, steps: &[PStep]) {
    for depth in (1..=steps.len()).rev() {
        let path = &steps[..depth];
        let empty = match get_mut(doc, path) {
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Array(a)) => a.is_empty() || a.iter().all(Value::is_null),
            _ => false,
        };
        if !empty {
            continue;
        }
        let Some((last, parent)) = path.split_last() else {
            return;
        };
        match (last, get_mut(doc, parent)) {
            (PStep::Key(k), Some(Value::Object(o))) => {
                o.shift_remove(k);
            }
            (PStep::Index(i), Some(Value::Array(a))) if *i < a.len() => {
                a.remove(*i);
                // keep the `_name` extension array aligned
                if let [pp @ .., PStep::Key(k)] = parent
                    && let Some(Value::Object(o)) = get_mut(doc, pp)
                    && let Some(Value::Array(x)) = o.get_mut(&format!("_{k}"))
                    && *i < x.len()
                {
                    x.remove(*i);
                }
            }
            _ => {}
        }
    }
}

fn delete_at(doc: &mut Value, steps: &[PStep], path: &str) -> Result<(), Issue> {
    let (parent, key, index) = split_location(steps).ok_or_else(|| {
        invalid(format!("delete: path {path} selects the resource itself")).at(path)
    })?;
    let ext_key = format!("_{key}");
    let Some(Value::Object(obj)) = get_mut(doc, parent) else {
        return Err(invalid(format!("delete: cannot find the parent of {path}")).at(path));
    };
    match index {
        None => {
            obj.shift_remove(key);
            obj.shift_remove(&ext_key);
        }
        Some(i) => {
            for k in [key, ext_key.as_str()] {
                if let Some(Value::Array(a)) = obj.get_mut(k)
                    && i < a.len()
                {
                    a.remove(i);
                }
            }
            for k in [key.to_string(), ext_key.clone()] {
                let remove = match obj.get(&k) {
                    Some(Value::Array(a)) => a.is_empty() || a.iter().all(Value::is_null),
                    _ => false,
                };
                if remove {
                    obj.shift_remove(&k);
                }
            }
        }
    }
    prune(doc, parent);
    Ok(())
}

/// Put `value` (and a primitive's extension) at `key`/`index` of the object at `parent`.
fn set_at(
    obj: &mut Map<String, Value>,
    key: &str,
    index: Option<usize>,
    value: Value,
    ext: Option<Value>,
) {
    let ext_key = format!("_{key}");
    match index {
        None => {
            if value.is_null() {
                obj.shift_remove(key);
            } else {
                obj.insert(key.to_string(), value);
            }
            match ext {
                Some(e) => {
                    obj.insert(ext_key, e);
                }
                None => {
                    obj.shift_remove(&ext_key);
                }
            }
        }
        Some(i) => {
            if let Some(Value::Array(a)) = obj.get_mut(key)
                && i < a.len()
            {
                a[i] = value;
            }
            let has_ext_array = matches!(obj.get(&ext_key), Some(Value::Array(_)));
            if ext.is_some() || has_ext_array {
                let len = obj.get(key).and_then(Value::as_array).map_or(0, Vec::len);
                let x = obj
                    .entry(ext_key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(x) = x {
                    x.resize(len.max(i + 1), Value::Null);
                    x[i] = ext.unwrap_or(Value::Null);
                    if x.iter().all(Value::is_null) {
                        obj.shift_remove(&ext_key);
                    }
                }
            }
        }
    }
}

/// Insert into the list `key` of `obj` at `index` (which may equal the list length).
fn insert_at(
    obj: &mut Map<String, Value>,
    key: &str,
    index: usize,
    value: Value,
    ext: Option<Value>,
) {
    let ext_key = format!("_{key}");
    let list = obj
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        let single = list.take();
        *list = Value::Array(vec![single]);
    }
    let Value::Array(a) = list else { return };
    let old_len = a.len();
    a.insert(index.min(old_len), value);
    let len = a.len();
    let has_ext_array = matches!(obj.get(&ext_key), Some(Value::Array(_)));
    if ext.is_some() || has_ext_array {
        let x = obj
            .entry(ext_key.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(x) = x {
            x.resize(old_len, Value::Null);
            x.insert(index.min(old_len), ext.unwrap_or(Value::Null));
            x.resize(len, Value::Null);
        }
    }
}

/// Evaluate `expr` on the current state of the document and return the selected nodes.
fn select(doc: &Value, expr: &Expr, path: &str) -> Result<Vec<Selected>, Issue> {
    let ctx = Context::new();
    let items = evaluate(expr, doc, &ctx)
        .map_err(|e| invalid(format!("path {path} cannot be evaluated: {e}")).at(path))?;
    items
        .iter()
        .map(|it| match (owned_steps(it), it.node()) {
            (Some(s), Some(n)) => Ok((s, n.ty)),
            _ => Err(invalid(format!(
                "path {path} selects a computed value, not an element of the resource"
            ))
            .at(path)),
        })
        .collect()
}

fn exactly_one(found: Vec<Selected>, path: &str, kind: &str) -> Result<Selected, Issue> {
    let n = found.len();
    if n != 1 {
        return Err(invalid(format!(
            "path {path} matched {n} elements; {kind} needs exactly one"
        ))
        .at(path));
    }
    Ok(found.into_iter().next().expect("one element"))
}

/// For insert and move: the object holding the list and the list's JSON key.
fn list_container(
    doc: &Value,
    expr: &Expr,
    path: &str,
    kind: &str,
) -> Result<(Vec<PStep>, Option<NodeType>, String), Issue> {
    let (target, name) = match expr {
        Expr::Member(t, n) => ((**t).clone(), n.clone()),
        _ => {
            return Err(invalid(format!(
                "{kind}: path {path} must name a list element (e.g. Patient.identifier)"
            ))
            .at(path));
        }
    };
    let found = select(doc, &target, path)?;
    let (steps, ty) = exactly_one(found, &format!("{path} (its parent)"), kind)?;
    Ok((steps, ty, name))
}

fn index_in(i: Option<i64>, what: &str, max: usize, path: &str) -> Result<usize, Issue> {
    let Some(i) = i else {
        return Err(invalid(format!("the operation on {path} needs an '{what}' part")).at(path));
    };
    if i < 0 || i as usize > max {
        return Err(invalid(format!(
            "{what} {i} is out of range for {path} (allowed 0..={max})"
        ))
        .at(path));
    }
    Ok(i as usize)
}

fn apply_operation(doc: &mut Value, op: &Operation) -> Result<(), Issue> {
    let path = op.path.as_str();
    let expr = parse(path).map_err(|e| invalid(format!("invalid path {path}: {e}")).at(path))?;
    let need_value = || {
        op.value
            .as_ref()
            .ok_or_else(|| invalid(format!("{} at {path} needs a 'value' part", op.kind)).at(path))
    };
    match op.kind.as_str() {
        "delete" => {
            let found = select(doc, &expr, path)?;
            match found.len() {
                0 => Ok(()),
                1 => delete_at(doc, &found[0].0, path),
                n => Err(invalid(format!(
                    "path {path} matched {n} elements; delete needs at most one"
                ))
                .at(path)),
            }
        }
        "replace" => {
            let value = need_value()?;
            let (steps, ty) = exactly_one(select(doc, &expr, path)?, path, "replace")?;
            let (parent, key, index) = split_location(&steps).ok_or_else(|| {
                invalid(format!("replace: path {path} selects the resource itself")).at(path)
            })?;
            // A choice element keeps its name but takes the key of the new value's type.
            let mut new_key = key.to_string();
            let parent_ty = parent_type(doc, parent);
            if let (Some(pt), Some(suffix)) = (parent_ty, value.suffix())
                && let Some((e, _)) = pt.child(key)
                && e.is_choice
            {
                new_key = format!("{}{suffix}", e.name);
            }
            let (v, ext) = materialize(value, ty);
            let Some(Value::Object(obj)) = get_mut(doc, parent) else {
                return Err(invalid(format!("replace: cannot find the parent of {path}")).at(path));
            };
            if new_key != key && index.is_none() {
                obj.shift_remove(key);
                obj.shift_remove(&format!("_{key}"));
            }
            set_at(obj, &new_key, index, v, ext);
            Ok(())
        }
        "add" => {
            let value = need_value()?;
            let name = op
                .name
                .as_deref()
                .ok_or_else(|| invalid(format!("add at {path} needs a 'name' part")).at(path))?;
            let found = select(doc, &expr, path)?;
            if found.is_empty() {
                return Err(invalid(format!(
                    "path {path} matched 0 elements; add needs exactly one (no content found at {path} when adding)"
                ))
                .at(path));
            }
            let (steps, ty) = exactly_one(found, path, "add")?;
            let (key, child_ty, is_array) = resolve_child(ty, name, value.suffix());
            let (v, ext) = materialize(value, child_ty);
            let Some(Value::Object(obj)) = get_mut(doc, &steps) else {
                return Err(
                    invalid(format!("add: the element at {path} cannot hold children")).at(path),
                );
            };
            let existing = obj.get(&key);
            let array = is_array.unwrap_or(matches!(existing, Some(Value::Array(_))));
            if array {
                let len = existing.and_then(Value::as_array).map_or(0, Vec::len);
                insert_at(obj, &key, len, v, ext);
            } else {
                if existing.is_some() {
                    return Err(invalid(format!(
                        "add: {path}.{key} already has a value and is not a list; use replace"
                    ))
                    .at(path));
                }
                set_at(obj, &key, None, v, ext);
            }
            Ok(())
        }
        "insert" => {
            let value = need_value()?;
            let (steps, ty, name) = list_container(doc, &expr, path, "insert")?;
            let (key, child_ty, _) = resolve_child(ty, &name, value.suffix());
            let (v, ext) = materialize(value, child_ty);
            let Some(Value::Object(obj)) = get_mut(doc, &steps) else {
                return Err(
                    invalid(format!("insert: the parent of {path} cannot hold children")).at(path),
                );
            };
            let len = match obj.get(&key) {
                Some(Value::Array(a)) => a.len(),
                Some(_) => 1,
                None => 0,
            };
            let i = index_in(op.index, "index", len, path)?;
            insert_at(obj, &key, i, v, ext);
            Ok(())
        }
        "move" => {
            let (steps, _, name) = list_container(doc, &expr, path, "move")?;
            let Some(Value::Object(obj)) = get_mut(doc, &steps) else {
                return Err(
                    invalid(format!("move: the parent of {path} cannot hold children")).at(path),
                );
            };
            let len = obj.get(&name).and_then(Value::as_array).map_or(0, Vec::len);
            if len == 0 {
                return Err(invalid(format!("move: {path} is not a list or is empty")).at(path));
            }
            let src = index_in(op.source, "source", len - 1, path)?;
            let dst = index_in(op.destination, "destination", len - 1, path)?;
            for k in [name.clone(), format!("_{name}")] {
                if let Some(Value::Array(a)) = obj.get_mut(&k) {
                    if a.len() < len {
                        a.resize(len, Value::Null);
                    }
                    let v = a.remove(src);
                    a.insert(dst, v);
                }
            }
            Ok(())
        }
        other => Err(invalid(format!(
            "unknown operation type '{other}' (expected add, insert, delete, replace or move)"
        ))
        .at(path)),
    }
}

/// The type of the node at `steps` (re-derived from the resource root).
fn parent_type(doc: &Value, steps: &[PStep]) -> Option<NodeType> {
    let mut ty = doc
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(NodeType::named)?;
    let mut cur = doc;
    for s in steps {
        match s {
            PStep::Key(k) => {
                cur = cur.get(k)?;
                let (_, nt) = ty.child(k)?;
                ty = nt;
            }
            PStep::Index(i) => cur = cur.get(*i)?,
        }
        if cur.is_object()
            && let Some(rt) = cur.get("resourceType").and_then(Value::as_str)
            && let Some(nt) = NodeType::named(rt)
        {
            ty = nt;
        }
    }
    Some(ty)
}

/// FHIRPath Patch (FHIR R4 fhirpatch.html): `params` is a Parameters resource with `operation`
/// parameters (type add | insert | delete | replace | move, path, name, value / value[x] or
/// parts for complex values, index, source, destination). All-or-nothing: on error `resource`
/// is unchanged.
pub fn apply_fhirpath_patch(resource: &mut Value, params: &Value) -> Result<(), Issue> {
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(invalid(
            "a FHIRPath Patch must be a Parameters resource (resourceType 'Parameters')",
        ));
    }
    let mut ops = Vec::new();
    for (n, p) in params
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match p.get("name").and_then(Value::as_str) {
            Some("operation") => ops.push(read_operation(p, n)?),
            other => {
                return Err(invalid(format!(
                    "parameter #{n} is named {other:?}; a FHIRPath Patch only has 'operation' parameters"
                )));
            }
        }
    }
    let mut work = resource.clone();
    for op in &ops {
        apply_operation(&mut work, op)?;
    }
    *resource = work;
    Ok(())
}
