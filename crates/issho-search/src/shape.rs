//! `_summary` and `_elements` applied to one resource (R4 summary flags and mandatory
//! elements from the generated tables); what is left out is marked `SUBSETTED`. Used by the
//! REST answers and by Bulk Data's `_elements`.

use crate::Summary;
use serde_json::Value;

pub fn mark_subsetted(res: &mut Value) {
    let Some(obj) = res.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    let tags = m.entry("tag").or_insert_with(|| Value::Array(Vec::new()));
    if let Some(a) = tags.as_array_mut() {
        a.push(serde_json::json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "SUBSETTED",
            "display": "Resource encoded in summary mode"
        }));
    }
}

/// Keep only summary elements (recursively through backbone elements).
fn keep_summary(
    obj: &mut serde_json::Map<String, Value>,
    owner: &issho_model::TypeDef,
    prefix: &str,
) {
    let r4 = issho_model::r4();
    let keys: Vec<String> = obj.keys().cloned().collect();
    for k in keys {
        if k == "resourceType" {
            continue;
        }
        let key = k.trim_start_matches('_');
        let Some(child) = r4.child(owner, prefix, key) else {
            obj.remove(&k);
            continue;
        };
        if !child.element.summary && child.element.min == 0 {
            obj.remove(&k);
            continue;
        }
        if child.element.is_backbone() && !k.starts_with('_') {
            let path = child.element.path.clone();
            if let Some(v) = obj.get_mut(&k) {
                let items: Vec<&mut Value> = match v {
                    Value::Array(a) => a.iter_mut().collect(),
                    other => vec![other],
                };
                for it in items {
                    if let Some(o) = it.as_object_mut() {
                        keep_summary(o, child.owner, &path);
                    }
                }
            }
        }
    }
}

/// Apply `_summary` / `_elements` to one resource. Returns the shaped resource.
pub fn shape(mut res: Value, summary: Summary, elements: Option<&[String]>) -> Value {
    let Some(rt) = res
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return res;
    };
    let r4 = issho_model::r4();
    let Some(td) = r4.type_def(&rt) else {
        return res;
    };
    match summary {
        Summary::True => {
            if let Some(o) = res.as_object_mut() {
                keep_summary(o, td, "");
            }
            mark_subsetted(&mut res);
        }
        Summary::Text => {
            if let Some(o) = res.as_object_mut() {
                o.retain(|k, _| {
                    matches!(k.as_str(), "resourceType" | "id" | "meta" | "text")
                        || td
                            .element(k.trim_start_matches('_'))
                            .is_some_and(|e| e.min > 0)
                });
            }
            mark_subsetted(&mut res);
        }
        Summary::Data => {
            if let Some(o) = res.as_object_mut() {
                o.remove("text");
            }
            mark_subsetted(&mut res);
        }
        Summary::Count | Summary::False => {
            if let Some(list) = elements {
                if let Some(o) = res.as_object_mut() {
                    o.retain(|k, _| {
                        let base = k.trim_start_matches('_');
                        matches!(base, "resourceType" | "id" | "meta")
                            || list.iter().any(|e| e == base)
                            || td.element(base).is_some_and(|e| e.min > 0)
                    });
                }
                mark_subsetted(&mut res);
            }
        }
    }
    res
}
