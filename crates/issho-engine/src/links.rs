//! What a search may look through: chains, `_has`, includes and remembered pages only ever
//! traverse resources the caller may read.
//!
//! A chain (`subject:Patient.gender=male`) or `_has` (`_has:Observation:subject:code=…`)
//! answers questions about the resources it passes through, even when only the start is
//! returned: so each hop carries the caller's view of the hop's types (the ownership rule, the
//! consent labels, the scope's conditions), and a type the caller may not search is not
//! passed through at all. `_include:iterate` continues only from included resources the
//! caller may read. A page taken from a remembered result set is re-checked against the
//! caller's access as it is now (a consent refused since the search hides its resources).

use crate::*;
use issho_search::{SearchQuery, Test};
use issho_store::StoreRead;
use std::collections::HashMap;

/// The access conditions of the link targets, per set of types (computed once per request).
struct Hops<'a> {
    engine: &'a Engine,
    ctx: &'a AccessContext,
    r: &'a dyn StoreRead,
    per_type: HashMap<String, Option<Test>>,
}

impl Hops<'_> {
    /// The condition a resource of `rt` reached through a link must meet (`None`: the caller
    /// may not search `rt`; `Some(All([]))`: nothing held back).
    fn for_type(&mut self, rt: &str) -> Result<Option<Test>> {
        if let Some(t) = self.per_type.get(rt) {
            return Ok(t.clone());
        }
        let test = match self.engine.view(self.ctx, Action::Search, Some(rt), self.r) {
            Ok(view) => {
                let reg = self.engine.registry();
                let mut tests = vec![Test::Type(vec![rt.to_string()])];
                tests.extend(view.filters(&reg, rt)?.into_iter().map(|f| f.test));
                Some(Test::All(tests))
            }
            Err(e) if e.status == 403 || e.status == 401 => None,
            Err(e) => return Err(e),
        };
        self.per_type.insert(rt.to_string(), test.clone());
        Ok(test)
    }

    /// Any of `types`, each under its own conditions.
    fn guard(&mut self, types: &[String]) -> Result<Test> {
        let mut any = Vec::new();
        for t in types {
            if let Some(test) = self.for_type(t)? {
                any.push(test);
            }
        }
        Ok(Test::Any(any))
    }

    fn walk(&mut self, t: &mut Test) -> Result<()> {
        match t {
            Test::Chain {
                target_types,
                inner,
                ..
            } => {
                self.walk(inner)?;
                let g = self.guard(target_types)?;
                let old = std::mem::replace(inner.as_mut(), Test::All(Vec::new()));
                **inner = Test::All(vec![old, g]);
            }
            Test::Has {
                source_type, inner, ..
            } => {
                self.walk(inner)?;
                let g = self.guard(std::slice::from_ref(source_type))?;
                let old = std::mem::replace(inner.as_mut(), Test::All(Vec::new()));
                **inner = Test::All(vec![old, g]);
            }
            Test::All(ts) | Test::Any(ts) | Test::NotAll(ts) => {
                for x in ts.iter_mut() {
                    self.walk(x)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Engine {
    /// Give every chain and `_has` of `q` the caller's access conditions for the types it
    /// passes through (nothing to do for callers who see everything).
    pub(crate) fn guard_links(
        &self,
        ctx: &AccessContext,
        view: &crate::view::View,
        r: &dyn StoreRead,
        q: &mut SearchQuery,
    ) -> Result<()> {
        // Callers who may search every type without conditions pass through everything.
        if view.unrestricted()
            && self
                .gate
                .check(ctx, Action::Search, None)
                .is_ok_and(|p| p.is_unrestricted())
        {
            return Ok(());
        }
        let mut hops = Hops {
            engine: self,
            ctx,
            r,
            per_type: HashMap::new(),
        };
        for f in q.filters.iter_mut() {
            hops.walk(&mut f.test)?;
        }
        Ok(())
    }

    /// The rids of `page` (in order) that `view` lets the caller see now.
    pub(crate) fn recheck_page(
        &self,
        view: &crate::view::View,
        r: &dyn StoreRead,
        rt: Option<&str>,
        page: Vec<i64>,
    ) -> Result<Vec<i64>> {
        let Some(rt) = rt else {
            return Ok(page);
        };
        if view.unrestricted() || page.is_empty() {
            return Ok(page);
        }
        let mut filters = view.filters(&self.registry(), rt)?;
        filters.push(issho_search::Filter {
            name: "_page".into(),
            test: Test::Rids(page.clone()),
        });
        let q = SearchQuery {
            resource_type: Some(rt.to_string()),
            filters,
            count: Some(page.len()),
            ..Default::default()
        };
        let ok: std::collections::HashSet<i64> = r.search(&q)?.into_iter().collect();
        Ok(page.into_iter().filter(|x| ok.contains(x)).collect())
    }
}
