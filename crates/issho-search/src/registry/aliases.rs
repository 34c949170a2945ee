//! Parameters searched through other parameters' rows (`find_aliases`): one whose paths are
//! exactly the union of other parameters' of its type (`Observation.combo-code` =
//! `code` | `component-code`) has no rows of its own. Composites that share their components'
//! rows are in `crate::composite`.

use super::{RESOURCE, SearchParam, Source};
use crate::expr::Path;

/// One unit of a parameter's source: a path, or a composite root with its components.
#[derive(PartialEq)]
enum Unit<'a> {
    Path(&'a Path),
    Root(&'a Path, &'a [Vec<Path>]),
}

fn units(p: &SearchParam) -> Vec<Unit<'_>> {
    match &p.source {
        Source::Paths(paths) => paths.iter().map(Unit::Path).collect(),
        Source::Composite(roots) => roots.iter().map(|(r, c)| Unit::Root(r, c)).collect(),
        _ => Vec::new(),
    }
}

/// Parameters whose paths are exactly the union of the paths of other (indexed) parameters of
/// the same type and kind are searched through those parameters' rows instead of having their
/// own copies (`Observation.combo-code`, `Observation.combo-value-quantity`…).
pub(super) fn find_aliases(list: &mut [SearchParam]) {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|&i| units(&list[i]).len());
    let mut aliases: Vec<(usize, Vec<String>)> = Vec::new();
    let mut is_alias = vec![false; list.len()];
    for &i in &order {
        let p = &list[i];
        let mine = units(p);
        if mine.len() < 2 || p.resource_type == RESOURCE {
            continue;
        }
        let mut covered = vec![false; mine.len()];
        let mut keys = Vec::new();
        // Larger parameters first, so each unit is covered once.
        // A parameter of the specification is only ever searched through the specification's
        // own: a deployment's custom parameters never change which rows it has.
        let mut candidates: Vec<usize> = (0..list.len())
            .filter(|&j| j != i && !is_alias[j] && (p.custom || !list[j].custom))
            .filter(|&j| list[j].kind == p.kind && list[j].components == p.components)
            .collect();
        candidates.sort_by_key(|&j| std::cmp::Reverse(units(&list[j]).len()));
        for j in candidates {
            let theirs = units(&list[j]);
            if theirs.is_empty() || theirs.len() >= mine.len() {
                continue;
            }
            let pos: Option<Vec<usize>> = theirs
                .iter()
                .map(|u| mine.iter().position(|m| m == u))
                .collect();
            let Some(pos) = pos else { continue };
            if pos.iter().any(|&k| covered[k]) {
                continue;
            }
            for k in pos {
                covered[k] = true;
            }
            keys.push(list[j].key.clone());
        }
        if covered.iter().all(|c| *c) {
            is_alias[i] = true;
            aliases.push((i, keys));
        }
    }
    for (i, keys) in aliases {
        list[i].search_keys = keys;
    }
}
