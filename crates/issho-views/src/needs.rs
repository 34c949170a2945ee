//! What of a resource a view reads: the top-level elements its paths start from. A view over
//! large resources reads a few of their elements; parsing only those ([`View::parse`]) spares
//! most of the JSON work. When a path could reach anything (`$this`, `%resource`, a function
//! on the resource itself), the whole resource is parsed.

use crate::{Iter, Select};
use issho_fhirpath::Expr;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The top-level element names a view reads (`None`: all of them).
pub(crate) fn top_level(wheres: &[Expr], top: &Select) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::from(["resourceType".to_string(), "id".to_string()]);
    for w in wheres {
        starts(w, &mut out)?;
    }
    select(top, &mut out)?;
    Some(out)
}

/// A select evaluated on the resource itself.
fn select(s: &Select, out: &mut BTreeSet<String>) -> Option<()> {
    match &s.iter {
        Iter::Focus => {
            for c in &s.cols {
                starts(&c.path, out)?;
            }
            for n in s.selects.iter().chain(&s.union) {
                select(n, out)?;
            }
        }
        // Everything below an iteration is relative to its items.
        Iter::ForEach(e) | Iter::ForEachOrNull(e) => starts(e, out)?,
        Iter::Repeat(paths) => {
            for p in paths {
                starts(p, out)?;
            }
        }
    }
    Some(())
}

/// Whether an argument reaches the whole resource.
fn reaches_root(e: &Expr) -> bool {
    match e {
        Expr::Var(v) => matches!(v.as_str(), "resource" | "rootResource" | "context"),
        Expr::Member(t, _) | Expr::Negate(t, _) | Expr::TypeOp(t, _, _) => reaches_root(t),
        Expr::Index(a, b) | Expr::Binary(_, a, b) => reaches_root(a) || reaches_root(b),
        Expr::Call { target, args, .. } => {
            target.as_deref().is_some_and(reaches_root) || args.iter().any(reaches_root)
        }
        _ => false,
    }
}

/// The first element names of a path evaluated on the resource.
fn starts(e: &Expr, out: &mut BTreeSet<String>) -> Option<()> {
    match e {
        // A path may start with the resource's type (`Observation.code`): read it all.
        Expr::Ident(name) if name.starts_with(|c: char| c.is_ascii_uppercase()) => return None,
        Expr::Ident(name) => {
            out.insert(name.clone());
        }
        Expr::Member(t, _) | Expr::Negate(t, _) | Expr::TypeOp(t, _, _) => starts(t, out)?,
        Expr::Index(a, b) | Expr::Binary(_, a, b) => {
            starts(a, out)?;
            starts(b, out)?;
        }
        Expr::Call {
            target: Some(t),
            args,
            ..
        } => {
            if args.iter().any(reaches_root) {
                return None;
            }
            starts(t, out)?;
        }
        // The resource's key needs its type and id (always parsed).
        Expr::Call {
            target: None,
            name,
            args,
        } if name == "getResourceKey" && args.is_empty() => {}
        Expr::Call { target: None, .. } | Expr::This => return None,
        Expr::Var(v) if matches!(v.as_str(), "resource" | "rootResource" | "context") => {
            return None;
        }
        Expr::Literal(_) | Expr::Empty | Expr::Var(_) | Expr::IndexVar | Expr::Total => {}
    }
    Some(())
}

/// Whether the JSON key `k` holds the element `name` (a choice's `valueQuantity`, a
/// primitive's `_name`).
fn is_of(k: &str, name: &str) -> bool {
    let k = k.strip_prefix('_').unwrap_or(k);
    k == name
        || k.strip_prefix(name)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase())
}

/// A resource's top-level object with only the named elements.
pub(crate) struct Only<'n>(pub &'n BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for Only<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Only<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a resource (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = m.next_key::<String>()? {
            if self.0.iter().any(|n| is_of(&k, n)) {
                out.insert(k, m.next_value::<Value>()?);
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::View;
    use serde_json::json;

    fn needs(v: Value) -> Option<Vec<String>> {
        let v = View::compile(&v).unwrap();
        v.needs.map(|s| s.into_iter().collect())
    }

    #[test]
    fn a_view_reads_the_elements_its_paths_start_from() {
        let flat = json!({"resource": "Observation", "select": [{"column": [
            {"name": "id", "path": "getResourceKey()"},
            {"name": "p", "path": "subject.getReferenceKey(Patient)"},
            {"name": "v", "path": "value.ofType(Quantity).value"},
            {"name": "n", "path": "%rowIndex"}]},
            {"forEach": "component", "column": [{"name": "c", "path": "code.coding.code.first()"}]}],
            "where": [{"path": "status = 'final'"}]});
        assert_eq!(
            needs(flat).unwrap(),
            [
                "component",
                "id",
                "resourceType",
                "status",
                "subject",
                "value"
            ]
        );
        for path in [
            "$this.id",
            "%resource.id",
            "where(status = 'final').id",
            "subject.where(%resource.id = 'x').exists()",
        ] {
            let v = json!({"resource": "Observation", "select": [{"column": [{"name": "a", "path": path}]}]});
            assert!(needs(v).is_none(), "{path}");
        }
        assert!(is_of("valueQuantity", "value") && is_of("_status", "status"));
        assert!(!is_of("valueset", "value"));
        let typed = json!({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "Patient.gender"}]}]});
        assert!(needs(typed).is_none());
    }
}
