//! Composites searched through their components' own parameters.
//!
//! A composite value is a tuple of component values found at one place of a resource (its
//! root), and its index rows are the components' values under `key$0`, `key$1`…, tied by a
//! group number. When the root is the resource itself, each component's values are the
//! resource's values of that component for the whole resource — and when a component's paths
//! are exactly those of another parameter of the type (of the same kind), its rows would be
//! copies of that parameter's rows. `Observation.code-value-quantity` is such a composite:
//! `code` and `value.as(Quantity)` at the Observation are the rows of `Observation.code` and
//! `Observation.value-quantity`. Such a composite keeps no rows of its own: its components are
//! searched in those parameters' rows, which all carry group 0, so the search's join on
//! `(rid, grp)` pairs any value of one with any value of the other in the same resource —
//! exactly the tuples the composite's own rows held (one root, so every tuple is a pairing of
//! the resource's component values; a resource lacking one component has no tuple, and no row
//! of that parameter to join).
//!
//! Only the specification's parameters share rows this way (custom ones keep their own, so
//! that their rows can be built and dropped on their own).

use crate::expr::Path;
use crate::registry::{SearchParam, Source};
use crate::{ParamKind, Registry};

impl Registry {
    /// The keys of the component rows that composites sharing their components' rows would
    /// have had (`Observation.code-value-quantity$0`…), sorted: stores written before keep
    /// such rows, which nothing reads now.
    pub fn shared_part_keys(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_type
            .values()
            .flatten()
            .filter(|p| p.shares_parts)
            .flat_map(|p| (0..p.components.len()).map(|i| own_part(p, i)))
            .collect();
        out.sort();
        out
    }
}

/// Fill `search_parts` of the parameters of one type (after `search_keys`): for each search
/// key, the keys its components' rows are under (empty for a parameter that is not a
/// composite), and mark the composites whose components are other parameters' rows.
pub(crate) fn link_parts(list: &mut [SearchParam]) {
    let own: Vec<Vec<String>> = list.iter().map(|p| parts_of(p, list)).collect();
    for (p, parts) in list.iter_mut().zip(&own) {
        // Either every part is its own or none is (`parts_of`).
        p.shares_parts = parts.first().is_some_and(|k| *k != own_part(p, 0));
    }
    let by_key: Vec<(String, Vec<String>)> = list
        .iter()
        .zip(own)
        .map(|(p, parts)| (p.key.clone(), parts))
        .collect();
    for p in list.iter_mut() {
        p.search_parts = p
            .search_keys
            .iter()
            .map(|k| {
                by_key
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, parts)| parts.clone())
                    .unwrap_or_default()
            })
            .collect();
    }
}

/// The key of component `i`'s own rows (`Observation.code-value-quantity$0`).
pub(crate) fn own_part(p: &SearchParam, i: usize) -> String {
    format!("{}${i}", p.key)
}

/// The keys of `p`'s component rows: other parameters' keys when every component is one of
/// them at the resource's root, else its own.
fn parts_of(p: &SearchParam, list: &[SearchParam]) -> Vec<String> {
    if p.kind != ParamKind::Composite {
        return Vec::new();
    }
    let own = || (0..p.components.len()).map(|i| own_part(p, i)).collect();
    let Source::Composite(roots) = &p.source else {
        return own();
    };
    let [(root, comps)] = roots.as_slice() else {
        return own();
    };
    if p.custom || !p.is_indexed() || !root.steps.is_empty() || comps.len() != p.components.len() {
        return own();
    }
    let mut shared = Vec::new();
    for (paths, kind) in comps.iter().zip(&p.components) {
        let same = list.iter().find(|q| {
            !q.custom
                && q.is_indexed()
                && q.kind == *kind
                && matches!(&q.source, Source::Paths(qp) if same_rows(*kind, qp, paths))
        });
        match same {
            Some(q) => shared.push(q.key.clone()),
            None => return own(),
        }
    }
    shared
}

/// True when `a` and `b` (paths from the same node) give the same rows of `kind`: the same
/// paths, leaving out those whose values `kind` never indexes (`Observation.value as
/// SampledData` for a quantity).
fn same_rows(kind: ParamKind, a: &[Path], b: &[Path]) -> bool {
    let a: Vec<&Path> = a.iter().filter(|p| indexes(kind, p)).collect();
    let b: Vec<&Path> = b.iter().filter(|p| indexes(kind, p)).collect();
    !a.is_empty() && a.iter().all(|p| b.contains(p)) && b.iter().all(|p| a.contains(p))
}

fn indexes(kind: ParamKind, p: &Path) -> bool {
    crate::extract::may_index(kind, &p.type_code)
}

#[cfg(test)]
mod tests {
    use crate::Registry;

    fn parts(rt: &str, code: &str) -> Vec<Vec<String>> {
        Registry::r4().param(rt, code).unwrap().search_parts.clone()
    }

    #[test]
    fn root_composites_search_their_components_rows() {
        let r = |v: &[&str]| vec![v.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        assert_eq!(
            parts("Observation", "code-value-quantity"),
            r(&["Observation.code", "Observation.value-quantity"])
        );
        assert_eq!(
            parts("Observation", "code-value-concept"),
            r(&["Observation.code", "Observation.value-concept"])
        );
        assert_eq!(
            parts("Observation", "code-value-date"),
            r(&["Observation.code", "Observation.value-date"])
        );
        for code in [
            "code-value-quantity",
            "code-value-concept",
            "code-value-date",
        ] {
            assert!(
                Registry::r4()
                    .param("Observation", code)
                    .unwrap()
                    .shares_parts
            );
        }
    }

    #[test]
    fn composites_whose_component_differs_from_the_parameter_keep_their_own_rows() {
        // `value-string` also indexes `valueCodeableConcept.text`; the component only
        // `valueString`: a CodeableConcept's text must not pair with the code.
        assert_eq!(
            parts("Observation", "code-value-string"),
            vec![vec![
                "Observation.code-value-string$0".to_string(),
                "Observation.code-value-string$1".to_string()
            ]]
        );
    }

    #[test]
    fn composites_below_the_root_keep_their_own_rows() {
        // One tuple per component: pairing any component code with any component value would
        // match codes and values of different components.
        assert_eq!(
            parts("Observation", "component-code-value-quantity"),
            vec![vec![
                "Observation.component-code-value-quantity$0".to_string(),
                "Observation.component-code-value-quantity$1".to_string()
            ]]
        );
        let p = Registry::r4()
            .param("Observation", "component-code-value-quantity")
            .unwrap();
        assert!(!p.shares_parts);
        // The combination searches both: the root's through the base parameters, the
        // components' through their own rows.
        let combo = parts("Observation", "combo-code-value-quantity");
        assert_eq!(combo.len(), 2);
        assert!(combo.contains(&vec![
            "Observation.code".to_string(),
            "Observation.value-quantity".to_string()
        ]));
        assert!(combo.contains(&vec![
            "Observation.component-code-value-quantity$0".to_string(),
            "Observation.component-code-value-quantity$1".to_string()
        ]));
        // A composite below the root of another type.
        assert_eq!(
            parts("Group", "characteristic-value"),
            vec![vec![
                "Group.characteristic-value$0".to_string(),
                "Group.characteristic-value$1".to_string()
            ]]
        );
    }

    #[test]
    fn the_shared_composites_are_observations_code_value_ones() {
        let keys = Registry::r4().shared_part_keys();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert!(
            keys.iter()
                .all(|k| k.starts_with("Observation.code-value-"))
        );
        // Nobody writes them.
        assert!(keys.iter().all(|k| !Registry::r4().keys().contains(k)));
    }

    /// Custom parameters that together cover `value-quantity`'s paths do not turn it into an
    /// alias of theirs: the specification's rows stay what they were, and the composite keeps
    /// reading them.
    #[test]
    fn custom_parameters_do_not_change_the_specifications_rows() {
        let def = |code: &str, expr: &str| -> issho_model::SearchParamDef {
            serde_json::from_value(serde_json::json!({
                "url": format!("https://issho.example/sp/{code}"),
                "code": code, "base": ["Observation"], "type": "quantity", "expression": expr
            }))
            .unwrap()
        };
        let (reg, rejected) = Registry::with_custom(&[
            def("vq-a", "(Observation.value as Quantity)"),
            def("vq-b", "(Observation.value as SampledData)"),
        ]);
        assert!(rejected.is_empty(), "{rejected:?}");
        let vq = reg.param("Observation", "value-quantity").unwrap();
        assert_eq!(
            vq.search_keys,
            vec!["Observation.value-quantity".to_string()]
        );
        let cvq = reg.param("Observation", "code-value-quantity").unwrap();
        assert!(cvq.shares_parts);
        assert_eq!(
            cvq.search_parts,
            vec![vec![
                "Observation.code".to_string(),
                "Observation.value-quantity".to_string()
            ]]
        );
    }

    #[test]
    fn parameters_that_are_not_composites_have_no_parts() {
        assert_eq!(parts("Observation", "code"), vec![Vec::<String>::new()]);
        assert_eq!(
            parts("Observation", "combo-code"),
            vec![Vec::<String>::new(), Vec::new()]
        );
    }
}
