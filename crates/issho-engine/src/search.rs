//! Search through the engine: conditional matching for writes, and type/system searches.

use crate::*;
use issho_search::Match;
use issho_store::StoreRead;

/// Largest `_offset` accepted.
const MAX_OFFSET: usize = 1_000_000_000;

/// A page of search results.
#[derive(Debug, Clone)]
pub struct SearchResult {
    pub matches: Vec<Stored>,
    pub included: Vec<Stored>,
    pub total: Option<u64>,
    /// The request's paging position and page size.
    pub offset: usize,
    pub count: usize,
    /// True when more matches follow this page.
    pub has_next: bool,
    /// Parameters as understood (for self/next links), in canonical form.
    pub params: Vec<(String, String)>,
    /// Ignored parameters and other notes.
    pub warnings: Vec<Issue>,
    /// Token of the remembered result set, for stable `next`/`previous` links.
    pub page_token: Option<String>,
}

/// Split and percent-decode a query string (`a=1&b=x%7Cy`). `+` is a space.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A condition as `Type?criteria` (`If-None-Exist` and `ifNoneExist` may give the criteria
/// alone).
pub(crate) fn condition_url(rt: &str, criteria: &str) -> String {
    if criteria.contains('?') {
        criteria.to_string()
    } else {
        format!("{rt}?{criteria}")
    }
}

/// Before a search whose outcome decides a write (conditional create, update, patch,
/// delete): hold the condition until the transaction ends, so that another writer with the
/// same condition (however its parameters are ordered) waits, then finds what this one wrote —
/// two conditional creates never both create. A store with one writer has nothing to hold.
pub(crate) fn hold_conditions<'a>(
    tx: &mut dyn issho_store::StoreTx,
    conditions: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    // Always in the same order: two transactions holding several conditions cannot wait for
    // each other.
    let mut keys: Vec<String> = conditions
        .into_iter()
        .map(|(rt, c)| crate::bundle::criteria_key(&condition_url(rt, c)))
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        tx.lock_key(&format!("condition {k}"))?;
    }
    Ok(())
}

/// All current resources matching `Type?criteria` (at most 2 are fetched: callers only need to
/// know whether there are none, one, or several).
/// `extra`: the caller's access filters (see `view.rs`), so a condition never matches what the
/// caller could not see.
pub(crate) fn find(
    reg: &issho_search::Registry,
    r: &dyn StoreRead,
    rt: &str,
    criteria: &str,
    extra: Vec<issho_search::Filter>,
) -> Result<Vec<Stored>> {
    let query = criteria.split_once('?').map(|(_, q)| q).unwrap_or(criteria);
    let mut pairs = parse_query(query);
    if pairs.is_empty() {
        return Err(FhirError::bad_request(format!(
            "the condition '{criteria}' has no search parameters"
        )));
    }
    pairs.retain(|(k, _)| k != "_count");
    pairs.push(("_count".into(), "2".into()));
    let mut q =
        issho_search::parse_in(reg, Some(rt), &pairs, true).map_err(|issues| FhirError {
            status: 400,
            issues,
        })?;
    let src = crate::terminology::StoreSource { r, cache: None };
    q.resolve_terminology(&mut |m| crate::terminology::resolve(&src, m))
        .map_err(|issues| FhirError {
            status: 400,
            issues,
        })?;
    // A condition must select something: parameters that filter nothing (`identifier=`,
    // `_count=10`, `_format=json`) would otherwise match every resource of the type.
    if q.filters.is_empty() || !q.warnings.is_empty() {
        let mut issues = vec![Issue::error(
            IssueType::Invalid,
            format!(
                "the condition '{criteria}' has no effective search criteria; it would match every {rt}"
            ),
        )];
        issues.extend(q.warnings.iter().cloned());
        return Err(FhirError {
            status: 400,
            issues,
        });
    }
    q.filters.extend(extra);
    let rids = r.search(&q)?;
    Ok(r.current_by_rids(&rids)?)
}

impl Engine {
    /// Search at type level (`Some(type)`) or system level.
    pub(crate) fn search_unaudited(
        &self,
        ctx: &AccessContext,
        resource_type: Option<&str>,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchResult> {
        if let Some(rt) = resource_type
            && !issho_model::r4().is_resource_type(rt)
        {
            return Err(FhirError::new(
                404,
                IssueType::NotSupported,
                format!("unknown resource type '{rt}'"),
            ));
        }
        if params.iter().any(|(k, _)| k == "_explain") {
            self.gate.check(ctx, Action::Admin, resource_type)?;
        }
        let r = self.snapshot(ctx, Action::Search, resource_type)?;
        self.search_in(ctx, &*r, resource_type, params, strict)
    }

    /// A search on the snapshot `r` within what `ctx` may see.
    pub(crate) fn search_in(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        resource_type: Option<&str>,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchResult> {
        let view = self.view(ctx, Action::Search, resource_type, r)?;
        self.search_with(ctx, &view, r, resource_type, params, strict, Vec::new())
    }

    /// A search with extra filters the engine adds (e.g. compartment membership), within
    /// `view` (the caller's reach; see `view.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search_with(
        &self,
        ctx: &AccessContext,
        view: &crate::view::View,
        r: &dyn StoreRead,
        resource_type: Option<&str>,
        params: &[(String, String)],
        strict: bool,
        extra: Vec<issho_search::Filter>,
    ) -> Result<SearchResult> {
        // `_page` is the engine's paging token and `_explain` its plan switch (checked by the
        // gate in `search`), not search parameters.
        let started = std::time::Instant::now();
        let token = params
            .iter()
            .find(|(k, _)| k == "_page")
            .map(|(_, v)| v.clone());
        let explain = params.iter().any(|(k, v)| k == "_explain" && v == "true");
        // Query plans are administrators' insight, on every search path (compartment
        // searches included).
        if params.iter().any(|(k, _)| k == "_explain") {
            self.gate.check(ctx, Action::Admin, resource_type)?;
        }
        let params: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "_page" && k != "_explain")
            .cloned()
            .collect();
        let mut q = issho_search::parse_in(&self.registry(), resource_type, &params, strict)
            .map_err(|issues| FhirError {
                status: 400,
                issues,
            })?;
        self.resolve_terminology(r, &mut q)?;
        self.check_query_reach(view, resource_type)?;
        self.guard_links(ctx, view, r, &mut q)?;
        if let Some(rt) = resource_type {
            q.filters.extend(view.filters(&self.registry(), rt)?);
        }
        let extra_key = format!("{extra:?}");
        let extra_again = extra.clone();
        q.filters.extend(extra);
        self.plan_links(r, &mut q)?;
        let count = q
            .count
            .unwrap_or(self.config.default_count)
            .min(self.config.max_count);
        let offset = q.offset;
        if offset > MAX_OFFSET {
            return Err(FhirError::bad_request(format!(
                "_offset must be at most {MAX_OFFSET}"
            )));
        }
        let mut warnings = q.warnings.clone();
        let want_total = q.total != issho_search::TotalMode::None;
        let canonical = q.canonical_params();
        let base = |matches, included, total, has_next, page_token, warnings| SearchResult {
            matches,
            included,
            total,
            offset,
            count,
            has_next,
            params: canonical.clone(),
            warnings,
            page_token,
        };
        // `_summary=count`, and `_count=0` (how clients such as fhirpy ask "how many?"): the
        // number of matches without a page, so without a `next` link.
        if q.summary == Some(issho_search::Summary::Count) || count == 0 {
            let total = r.count(&q)?;
            return Ok(base(
                Vec::new(),
                Vec::new(),
                Some(total),
                false,
                None,
                warnings,
            ));
        }
        // The ordered match list: from the page cache, or computed. Results in `rid` order
        // (no `_sort`) are fetched a window at a time over a snapshot (resources created
        // later have larger rids and are left out), so that the first page of a large result
        // costs only its window; sorted results are ordered once, up to the cache limit.
        let cap = self.config.page_cache_rids;
        // A paging token serves only the caller and the very query it was made for.
        let bound: Vec<&(String, String)> = canonical
            .iter()
            .filter(|(k, _)| k != "_count" && k != "_offset")
            .collect();
        let owner = format!(
            "{}\nsearch {} {bound:?} {extra_key}",
            ctx.owner(),
            resource_type.unwrap_or("")
        );
        let cached = token.as_deref().and_then(|t| self.pages.get(t, &owner));
        if token.is_some() && cached.is_none() {
            warnings.push(Issue::warning(
                IssueType::Processing,
                "the paging token has expired; this page was computed afresh and may have shifted",
            ));
        }
        let explicit_total = matches!(
            q.total,
            issho_search::TotalMode::Accurate | issho_search::TotalMode::Estimate
        );
        let from_cache = cached.is_some();
        let (set, token) = match cached {
            Some(c) => (c, token),
            None => {
                let streaming = q.sort.is_empty();
                let mut all = q.clone();
                all.offset = 0;
                let window = if streaming {
                    all.rid_upto = Some(r.max_rid()?);
                    (offset + count + 1)
                        .max(self.config.first_window)
                        .min(cap + 1)
                } else {
                    cap + 1
                };
                all.count = Some(window);
                let mut rids = r.search(&all)?;
                let complete = rids.len() < window;
                rids.truncate(cap);
                let total = if complete {
                    Some(rids.len() as u64)
                } else if explicit_total {
                    Some(r.count(&all)?)
                } else {
                    None
                };
                let more_pages = !complete || rids.len() > count;
                let set = std::sync::Arc::new(if streaming && !complete {
                    pages::CachedSearch::streaming(rids, all, total)
                } else {
                    pages::CachedSearch::new(rids, complete, total)
                });
                let token = more_pages.then(|| self.pages.insert(set.clone(), &owner));
                (set, token)
            }
        };
        let (page, has_next) = self.page_of(r, &set, &q, offset, count)?;
        // A remembered page is checked again: access may have changed since (a consent
        // refused, a care relationship ended, a label added).
        let before = page.len();
        let page = self.recheck_page(view, r, resource_type, page)?;
        if from_cache && page.len() < before {
            // Access changed since the result set was remembered: it is computed afresh
            // under the caller's access now (its total and pages with it).
            let mut res =
                self.search_with(ctx, view, r, resource_type, &params, strict, extra_again)?;
            res.warnings.push(Issue::warning(
                IssueType::Processing,
                "access to some results changed since this search began; this page was computed afresh and may have shifted",
            ));
            return Ok(res);
        }
        let matches = r.current_by_rids(&page)?;
        let included = if q.has_includes() {
            self.includes(ctx, r, &q, &page)?
        } else {
            Vec::new()
        };
        let total = if want_total { set.total() } else { None };
        if explain {
            warnings.push(self.explain(r, &q, started)?);
        }
        Ok(base(matches, included, total, has_next, token, warnings))
    }

    /// The rids of one page of a remembered result set, and whether more follow.
    fn page_of(
        &self,
        r: &dyn StoreRead,
        set: &pages::CachedSearch,
        q: &issho_search::SearchQuery,
        offset: usize,
        count: usize,
    ) -> Result<(Vec<i64>, bool)> {
        let need = offset + count + 1;
        if let Some(stream) = &set.stream {
            let mut st = stream.lock().unwrap_or_else(|e| e.into_inner());
            // Continue the snapshot after the last remembered rid, up to the cache limit.
            while !st.complete
                && st.rids.len() < need
                && st.rids.len() < self.config.page_cache_rids
            {
                let mut more = st.query.clone();
                let want = (need - st.rids.len()).max(self.config.first_window);
                more.rid_after = st.rids.last().copied();
                more.count = Some(want);
                let got = r.search(&more)?;
                st.complete = got.len() < want;
                st.rids.extend(got);
                if st.complete && st.total.is_none() {
                    st.total = Some(st.rids.len() as u64);
                }
            }
            if st.complete || st.rids.len() >= need {
                let page: Vec<i64> = st.rids.iter().skip(offset).take(count).copied().collect();
                let has_next = st.rids.len() > offset + count;
                return Ok((page, has_next));
            }
            // Beyond the remembered rows: offset paging over the same snapshot.
            let mut beyond = st.query.clone();
            drop(st);
            beyond.offset = offset;
            beyond.count = Some(count + 1);
            let mut page = r.search(&beyond)?;
            let has_next = page.len() > count;
            page.truncate(count);
            return Ok((page, has_next));
        }
        if offset + count <= set.rids.len() || set.complete {
            let page: Vec<i64> = set.rids.iter().skip(offset).take(count).copied().collect();
            return Ok((page, offset + count < set.rids.len() || !set.complete));
        }
        // Beyond the remembered rows of a very large sorted result: plain offset paging.
        let mut beyond = q.clone();
        beyond.offset = offset;
        beyond.count = Some(count + 1);
        let mut page = r.search(&beyond)?;
        let has_next = page.len() > count;
        page.truncate(count);
        Ok((page, has_next))
    }

    /// The plan of a search and what it cost, as an informational issue.
    fn explain(
        &self,
        r: &dyn StoreRead,
        q: &issho_search::SearchQuery,
        started: std::time::Instant,
    ) -> Result<Issue> {
        let elapsed = started.elapsed();
        let mut plan_q = q.clone();
        plan_q.offset = 0;
        let plan = r.explain(&plan_q)?;
        let t = std::time::Instant::now();
        let n = r.count(q)?;
        let count_time = t.elapsed();
        Ok(Issue::information(format!(
            "plan:\n{}\ncost: this page took {:.3} ms; counting all {n} matches takes {:.3} ms",
            plan.join("\n"),
            elapsed.as_secs_f64() * 1e3,
            count_time.as_secs_f64() * 1e3
        )))
    }

    /// Planner hints for chains and `_has`: tokens without a system inside them are resolved
    /// to the systems the index holds for the code (so they can be probed by primary key), and
    /// those matching more than a thousand resources are marked to be checked per candidate
    /// rather than materialised.
    /// Resolve chains' and `_has`'s inner tokens without a system, and decide which broad
    /// links are probed per candidate.
    pub(crate) fn plan_links(
        &self,
        r: &dyn StoreRead,
        q: &mut issho_search::SearchQuery,
    ) -> Result<()> {
        const BROAD: usize = 1000;
        // Next to another condition, a token without a system (`category=laboratory`) is
        // checked per candidate only if its systems are known (the index reaches the rid
        // through (param, code, system)); otherwise every row of the code is materialised.
        if q.filters.len() > 1 {
            for f in q.filters.iter_mut() {
                resolve_systems(r, &mut f.test)?;
            }
        }
        for i in 0..q.filters.len() {
            let inner = match &mut q.filters[i].test {
                issho_search::Test::Chain { inner, .. } | issho_search::Test::Has { inner, .. } => {
                    inner
                }
                _ => continue,
            };
            resolve_systems(r, inner)?;
            if r.link_breadth(&q.filters[i].test, BROAD)? as usize >= BROAD {
                q.probe.push(i);
            }
        }
        Ok(())
    }

    /// The resources `ctx` may read (for included resources, which may be of any type).
    pub(crate) fn visible_only(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        list: Vec<Stored>,
    ) -> Result<Vec<Stored>> {
        let mut views: std::collections::HashMap<String, Option<crate::view::View>> =
            std::collections::HashMap::new();
        let reg = self.registry();
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            if !views.contains_key(&s.resource_type) {
                let v = self.view(ctx, Action::Read, Some(&s.resource_type), r).ok();
                views.insert(s.resource_type.clone(), v);
            }
            let Some(view) = views.get(&s.resource_type).and_then(Option::as_ref) else {
                continue;
            };
            if view.sees(&reg, r, &s.resource_type, &s.id)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// `_include` / `_revinclude`, with `:iterate` rounds until nothing new is added. Only
    /// resources the caller may read are included, and `:iterate` continues only from those.
    fn includes(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        q: &issho_search::SearchQuery,
        page: &[i64],
    ) -> Result<Vec<Stored>> {
        const MAX_INCLUDED: usize = 10_000;
        let mut seen: std::collections::HashSet<i64> = page.iter().copied().collect();
        let fresh =
            |rids: Vec<i64>, seen: &mut std::collections::HashSet<i64>| -> Result<Vec<Stored>> {
                let new: Vec<i64> = rids.into_iter().filter(|rid| seen.insert(*rid)).collect();
                self.visible_only(ctx, r, r.current_by_rids(&new)?)
            };
        let mut added = fresh(r.includes(q, page, false)?, &mut seen)?;
        let mut all = added.clone();
        while !added.is_empty() && all.len() < MAX_INCLUDED {
            let from: Vec<i64> = added.iter().map(|s| s.rid).collect();
            added = fresh(r.includes(q, &from, true)?, &mut seen)?;
            all.extend(added.iter().cloned());
        }
        all.truncate(MAX_INCLUDED);
        Ok(all)
    }
}

/// Turn token matches without a system (`|code` is not one: it means "no system") into the
/// systems the index holds for that code, so that a per-candidate probe can use the primary
/// key. Same matches: every stored row of the code has one of these systems.
fn resolve_systems(r: &dyn StoreRead, t: &mut issho_search::Test) -> Result<()> {
    let issho_search::Test::Values {
        keys,
        kind: issho_search::ParamKind::Token,
        matches,
        negate: false,
        ..
    } = t
    else {
        return Ok(());
    };
    for m in matches.iter_mut() {
        let Match::Token {
            system: None,
            code: Some(code),
        } = m
        else {
            continue;
        };
        let mut systems: Vec<i64> = Vec::new();
        for k in keys.iter() {
            let found = r.token_systems(k, code)?;
            for f in found {
                if !systems.contains(&f) {
                    systems.push(f);
                }
            }
        }
        *m = Match::TokenSystems {
            code: code.clone(),
            systems,
        };
    }
    Ok(())
}
