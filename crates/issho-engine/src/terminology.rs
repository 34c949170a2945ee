//! The server's terminology: issho-terminology over the CodeSystem, ValueSet and ConceptMap
//! resources stored here ([`StoreSource`], read through the caller's permit), for the search
//! modifiers `:in`, `:not-in`, `:below`, `:above` and the terminology operations
//! (`terminology_ops.rs`). Indexed code systems are kept by row and version
//! ([`CodeSystemCache`]): a changed CodeSystem is a new version, so never served stale.

use crate::*;
use issho_search::Match;
use issho_store::StoreRead;
use issho_terminology::{CodeSystem, Source};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many indexed code systems are kept.
const CACHED_SYSTEMS: usize = 64;

/// Indexed code systems by (row, version).
#[derive(Default)]
pub(crate) struct CodeSystemCache(Mutex<HashMap<(i64, u64), Arc<CodeSystem>>>);

impl CodeSystemCache {
    fn get_or(&self, s: &Stored) -> Option<Arc<CodeSystem>> {
        let key = (s.rid, s.version);
        if let Ok(m) = self.0.lock()
            && let Some(cs) = m.get(&key)
        {
            return Some(cs.clone());
        }
        let cs = Arc::new(CodeSystem::of(&s.json()?));
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= CACHED_SYSTEMS {
                m.clear();
            }
            m.insert(key, cs.clone());
        }
        Some(cs)
    }
}

/// Terminology resources read through a store snapshot.
pub(crate) struct StoreSource<'a> {
    pub r: &'a dyn StoreRead,
    pub cache: Option<&'a CodeSystemCache>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('|', "\\|")
        .replace('$', "\\$")
}

impl StoreSource<'_> {
    fn search(&self, rt: &str, pairs: &[(&str, &str)], count: usize) -> Vec<Stored> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("_count".to_string(), count.to_string())])
            .collect();
        let Ok(q) = issho_search::parse(Some(rt), &pairs, true) else {
            return Vec::new();
        };
        let Ok(rids) = self.r.search(&q) else {
            return Vec::new();
        };
        self.r.current_by_rids(&rids).unwrap_or_default()
    }

    /// The stored resource with this url (and version); the newest version when several.
    pub(crate) fn stored_by_url(
        &self,
        rt: &str,
        url: &str,
        version: Option<&str>,
    ) -> Option<Stored> {
        let url = escape(url);
        let mut found = match version {
            Some(v) => self.search(rt, &[("url", &url), ("version", &escape(v))], 50),
            None => self.search(rt, &[("url", &url)], 50),
        };
        if found.len() > 1 {
            // Newest version first (string order of `version`).
            let v = |s: &Stored| {
                s.json()
                    .and_then(|x| x["version"].as_str().map(str::to_string))
                    .unwrap_or_default()
            };
            found.sort_by_key(|s| std::cmp::Reverse(v(s)));
        }
        found.into_iter().next()
    }
}

impl Source for StoreSource<'_> {
    fn by_url(&self, rt: &str, url: &str, version: Option<&str>) -> Option<Value> {
        self.stored_by_url(rt, url, version).and_then(|s| s.json())
    }
    fn by_id(&self, rt: &str, id: &str) -> Option<Value> {
        self.r.current(rt, id).ok().flatten().and_then(|s| s.json())
    }
    fn code_system_for_value_set(&self, url: &str) -> Option<Value> {
        // `CodeSystem.valueSet` has no search parameter in R4: look through the stored code
        // systems (the first 1,000; reached only when no ValueSet has this url).
        self.search("CodeSystem", &[], 1000)
            .iter()
            .filter_map(Stored::json)
            .find(|cs| cs["valueSet"].as_str() == Some(url))
    }
    fn concept_maps(&self, source_system: Option<&str>) -> Vec<Value> {
        let s;
        let pairs: Vec<(&str, &str)> = match source_system {
            Some(sys) => {
                s = escape(sys);
                vec![("source-system", s.as_str())]
            }
            None => Vec::new(),
        };
        self.search("ConceptMap", &pairs, 200)
            .iter()
            .filter_map(Stored::json)
            .collect()
    }
    fn code_system(&self, url: &str, version: Option<&str>) -> Option<Arc<CodeSystem>> {
        let s = self.stored_by_url("CodeSystem", url, version)?;
        match self.cache {
            Some(c) => c.get_or(&s),
            None => s.json().map(|v| Arc::new(CodeSystem::of(&v))),
        }
    }
}

/// The codes of a value-set or hierarchy match.
pub(crate) fn resolve(
    src: &dyn Source,
    m: &Match,
) -> std::result::Result<Vec<(String, String)>, Issue> {
    match m {
        Match::ValueSet(reference) => Ok(issho_terminology::codes(src, reference)?
            .into_iter()
            .collect()),
        Match::Subsumption {
            system,
            code,
            above,
        } => Ok(
            issho_terminology::subsumption(src, system.as_deref(), code, *above)?
                .into_iter()
                .collect(),
        ),
        _ => Ok(Vec::new()),
    }
}

impl Engine {
    /// Resolve the value-set and hierarchy matches of `q` against the stored terminology.
    pub(crate) fn resolve_terminology(
        &self,
        r: &dyn StoreRead,
        q: &mut issho_search::SearchQuery,
    ) -> Result<()> {
        let src = StoreSource {
            r,
            cache: Some(&self.code_systems),
        };
        q.resolve_terminology(&mut |m| resolve(&src, m))
            .map_err(|issues| FhirError {
                status: 400,
                issues,
            })
    }
}
