//! Direct paths: a column of the resource itself whose path is a chain of elements
//! (`code.coding.code`), optionally through a choice's type (`value.ofType(Quantity).value`)
//! and ending in `first()`, `getReferenceKey([Type])`, or being `getResourceKey()`, is read
//! straight from the JSON, its elements resolved once in the R4 tables — the same answer as
//! FHIRPath (the SQL on FHIR suite checks every direct path against it), without FHIRPath's
//! per-node bookkeeping. Anything else is evaluated by FHIRPath.

use issho_fhirpath::Expr;
use issho_model::TypeDef;
use serde_json::Value;

#[derive(Debug, Clone)]
pub(crate) enum Tail {
    All,
    First,
    ReferenceKey(Option<String>),
}

/// A direct path.
#[derive(Debug, Clone)]
pub(crate) enum Direct {
    ResourceKey,
    /// Per step, the JSON keys it may be under (a choice: one per type).
    Steps(Vec<Vec<String>>, Tail),
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// Flatten `a.b.c.f(x)` into names and calls, outermost last.
fn chain<'e>(e: &'e Expr, out: &mut Vec<(&'e str, Option<&'e [Expr]>)>) -> Option<()> {
    match e {
        Expr::Ident(n) => out.push((n, None)),
        Expr::Member(t, n) => {
            chain(t, out)?;
            out.push((n, None));
        }
        Expr::Call { target, name, args } => {
            if let Some(t) = target {
                chain(t, out)?;
            }
            out.push((name, Some(args)));
        }
        _ => return None,
    }
    Some(())
}

fn type_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Ident(n) => Some(n),
        _ => None,
    }
}

/// The direct form of `path` on a resource of type `rt`, if it has one.
pub(crate) fn compile(rt: &str, path: &Expr) -> Option<Direct> {
    let r4 = issho_model::r4();
    let mut parts = Vec::new();
    chain(path, &mut parts)?;
    if let [("getResourceKey", Some([]))] = parts.as_slice() {
        return Some(Direct::ResourceKey);
    }
    let mut tail = Tail::All;
    match parts.last() {
        Some(("first", Some([]))) => {
            tail = Tail::First;
            parts.pop();
        }
        Some(("getReferenceKey", Some(args))) if args.len() <= 1 => {
            let t = match args.first() {
                Some(a) => Some(type_name(a)?.to_string()),
                None => None,
            };
            tail = Tail::ReferenceKey(t);
            parts.pop();
        }
        _ => {}
    }
    let mut owner: &'static TypeDef = r4.type_def(rt)?;
    let mut prefix = String::new();
    let mut steps: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    // A choice's keys when its type is still open (only as the last step).
    let mut open_choice = false;
    while i < parts.len() {
        let (name, call) = parts[i];
        if call.is_some() || open_choice || name.starts_with(|c: char| c.is_ascii_uppercase()) {
            return None;
        }
        let choice = owner
            .children(&prefix)
            .find(|e| e.is_choice && e.name == name);
        if let Some(e) = choice {
            // `value.ofType(T)`: that type's key; `value` alone: any of them (last step only).
            if let Some(("ofType", Some([t]))) = parts.get(i + 1) {
                let t = type_name(t)?;
                let ty = e.types.iter().find(|x| x.code == t)?;
                steps.push(vec![format!("{name}{}", cap(&ty.code))]);
                let d = r4.type_def(&ty.code)?;
                owner = d;
                prefix = String::new();
                i += 2;
                continue;
            }
            steps.push(
                e.types
                    .iter()
                    .map(|t| format!("{name}{}", cap(&t.code)))
                    .collect(),
            );
            open_choice = true;
            i += 1;
            continue;
        }
        let child = r4.child(owner, &prefix, name)?;
        if child.element.is_choice {
            return None;
        }
        steps.push(vec![name.to_string()]);
        let path = child.element.path.clone();
        if child.element.is_backbone() || child.element.content_ref.is_some() {
            let (o, p) = r4.children_scope(child.owner, &path)?;
            owner = o;
            prefix = p;
        } else {
            owner = r4.type_def(child.type_code)?;
            prefix = String::new();
        }
        i += 1;
    }
    if steps.is_empty() {
        return None;
    }
    if matches!(tail, Tail::ReferenceKey(_)) && owner.name != "Reference" {
        return None;
    }
    Some(Direct::Steps(steps, tail))
}

impl Direct {
    /// The values of the path on `resource` (`Null` for a primitive given by its extensions
    /// only, as FHIRPath has a node for it).
    pub(crate) fn eval(&self, resource: &Value) -> Vec<Value> {
        let (steps, tail) = match self {
            Direct::ResourceKey => {
                return match (resource["resourceType"].as_str(), resource["id"].as_str()) {
                    (Some(t), Some(id)) => vec![Value::String(format!("{t}/{id}"))],
                    _ => Vec::new(),
                };
            }
            Direct::Steps(s, t) => (s, t),
        };
        let mut current: Vec<&Value> = vec![resource];
        for (k, keys) in steps.iter().enumerate() {
            let last = k + 1 == steps.len();
            let mut next = Vec::new();
            for v in &current {
                let Some(o) = v.as_object() else { continue };
                for key in keys {
                    match o.get(key) {
                        Some(Value::Array(a)) => {
                            for (j, x) in a.iter().enumerate() {
                                if x.is_null() {
                                    // Kept by FHIRPath only when its extensions are there.
                                    if last
                                        && o.get(&format!("_{key}"))
                                            .and_then(|e| e.get(j))
                                            .is_some_and(|e| !e.is_null())
                                    {
                                        next.push(&Value::Null);
                                    }
                                } else {
                                    next.push(x);
                                }
                            }
                        }
                        Some(Value::Null) | None => {
                            if last && o.contains_key(&format!("_{key}")) {
                                next.push(&Value::Null);
                            }
                        }
                        Some(x) => next.push(x),
                    }
                }
            }
            current = next;
        }
        match tail {
            Tail::All => current.into_iter().cloned().collect(),
            Tail::First => current.into_iter().take(1).cloned().collect(),
            Tail::ReferenceKey(want) => current
                .into_iter()
                .filter_map(|r| {
                    let r = r.get("reference")?.as_str()?;
                    issho_fhirpath::reference_key(r, want.as_deref()).map(Value::String)
                })
                .collect(),
        }
    }
}
