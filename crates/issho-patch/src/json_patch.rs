//! RFC 6902 JSON Patch with RFC 6901 JSON Pointers.

use crate::{invalid, json_equal};
use issho_model::Issue;
use serde_json::Value;

/// Split a JSON Pointer into unescaped reference tokens.
fn tokens(pointer: &str) -> Result<Vec<String>, Issue> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(invalid(format!(
            "JSON Pointer '{pointer}' must be empty or start with '/'"
        )));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn array_index(tok: &str, len: usize, allow_end: bool, pointer: &str) -> Result<usize, Issue> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let valid = !tok.is_empty()
        && tok.bytes().all(|b| b.is_ascii_digit())
        && (tok == "0" || !tok.starts_with('0'));
    let i: usize = match tok.parse() {
        Ok(i) if valid => i,
        _ => {
            return Err(invalid(format!(
                "'{tok}' in path {pointer} is not a valid array index"
            )));
        }
    };
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(invalid(format!(
            "array index {i} in path {pointer} is out of bounds (array has {len} items)"
        )));
    }
    Ok(i)
}

fn resolve<'v>(doc: &'v Value, toks: &[String], pointer: &str) -> Result<&'v Value, Issue> {
    let mut cur = doc;
    for (n, t) in toks.iter().enumerate() {
        let at = || format!("/{}", toks[..=n].join("/"));
        cur = match cur {
            Value::Object(o) => o
                .get(t)
                .ok_or_else(|| invalid(format!("path {} does not exist", at())))?,
            Value::Array(a) => &a[array_index(t, a.len(), false, pointer)?],
            _ => {
                return Err(invalid(format!(
                    "path {} does not exist (parent is not an object or array)",
                    at()
                )));
            }
        };
    }
    Ok(cur)
}

fn resolve_mut<'v>(
    doc: &'v mut Value,
    toks: &[String],
    pointer: &str,
) -> Result<&'v mut Value, Issue> {
    let mut cur = doc;
    for (n, t) in toks.iter().enumerate() {
        let at = format!("/{}", toks[..=n].join("/"));
        cur = match cur {
            Value::Object(o) => o
                .get_mut(t)
                .ok_or_else(|| invalid(format!("path {at} does not exist")))?,
            Value::Array(a) => {
                let i = array_index(t, a.len(), false, pointer)?;
                &mut a[i]
            }
            _ => {
                return Err(invalid(format!(
                    "path {at} does not exist (parent is not an object or array)"
                )));
            }
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, pointer: &str, value: Value) -> Result<(), Issue> {
    let toks = tokens(pointer)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match resolve_mut(doc, parent, pointer)? {
        Value::Object(o) => {
            o.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true, pointer)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(invalid(format!(
            "cannot add at {pointer}: the parent is not an object or array"
        ))),
    }
}

fn remove(doc: &mut Value, pointer: &str) -> Result<Value, Issue> {
    let toks = tokens(pointer)?;
    let Some((last, parent)) = toks.split_last() else {
        return Err(invalid("cannot remove the whole document"));
    };
    match resolve_mut(doc, parent, pointer)? {
        Value::Object(o) => o
            .shift_remove(last)
            .ok_or_else(|| invalid(format!("cannot remove {pointer}: it does not exist"))),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false, pointer)?;
            Ok(a.remove(i))
        }
        _ => Err(invalid(format!(
            "cannot remove {pointer}: the parent is not an object or array"
        ))),
    }
}

fn str_field<'p>(op: &'p Value, field: &str, n: usize) -> Result<&'p str, Issue> {
    op.get(field).and_then(Value::as_str).ok_or_else(|| {
        invalid(format!(
            "JSON Patch operation #{n} has no '{field}' string member"
        ))
    })
}

fn value_field(op: &Value, n: usize) -> Result<Value, Issue> {
    op.get("value")
        .cloned()
        .ok_or_else(|| invalid(format!("JSON Patch operation #{n} has no 'value' member")))
}

fn apply_one(doc: &mut Value, op: &Value, n: usize) -> Result<(), Issue> {
    let kind = str_field(op, "op", n)?;
    let path = str_field(op, "path", n)?;
    match kind {
        "add" => add(doc, path, value_field(op, n)?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let v = value_field(op, n)?;
            let target = resolve_mut(doc, &tokens(path)?, path)?;
            *target = v;
            Ok(())
        }
        "move" => {
            let from = str_field(op, "from", n)?;
            if path != from && path.starts_with(&format!("{from}/")) {
                return Err(invalid(format!(
                    "cannot move {from} into its own child {path}"
                )));
            }
            let v = remove(doc, from)?;
            add(doc, path, v)
        }
        "copy" => {
            let from = str_field(op, "from", n)?;
            let v = resolve(doc, &tokens(from)?, from)?.clone();
            add(doc, path, v)
        }
        "test" => {
            let expected = value_field(op, n)?;
            let actual = resolve(doc, &tokens(path)?, path)?;
            if json_equal(actual, &expected) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "test failed: the value at {path} is {actual}, not {expected}"
                )))
            }
        }
        other => Err(invalid(format!(
            "JSON Patch operation #{n} has unknown op '{other}' (expected add, remove, replace, move, copy or test)"
        ))),
    }
}

/// RFC 6902 JSON Patch applied to a resource tree. All-or-nothing: on error `doc` is unchanged.
pub fn apply_json_patch(doc: &mut Value, patch: &Value) -> Result<(), Issue> {
    let Value::Array(ops) = patch else {
        return Err(invalid(
            "a JSON Patch document must be a JSON array of operations",
        ));
    };
    let mut work = doc.clone();
    for (n, op) in ops.iter().enumerate() {
        if !op.is_object() {
            return Err(invalid(format!(
                "JSON Patch operation #{n} is not a JSON object"
            )));
        }
        apply_one(&mut work, op, n)?;
    }
    *doc = work;
    Ok(())
}
