//! Value set expansion (R4 valueset.html#compose): `include` and `exclude` with `concept`
//! lists, `filter` (`is-a`, `descendent-of`, `is-not-a`, `generalizes`, `in`, `not-in`, `=`,
//! `regex`, `exists`), `valueSet` imports (codes in every imported set, and in the system part
//! when there is one) and whole code systems; a stored `expansion` when there is no
//! `compose`; the specification's required value sets (issho-model's tables) as a fallback;
//! a code system's implicit value set (`CodeSystem.valueSet`).
//!
//! An expansion keeps the order of the definitions (code system document order), each code
//! once, with its display in the asked language and its designations.

use crate::system::{CodeSystem, Concept, Designation};
use crate::{Source, issue};
use issho_model::{Issue, IssueType};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Deepest chain of value set imports followed.
const MAX_IMPORT_DEPTH: usize = 8;

/// One code of an expansion.
#[derive(Debug, Clone)]
pub struct Entry {
    pub system: String,
    pub version: Option<String>,
    pub code: String,
    pub display: Option<String>,
    pub designations: Vec<Designation>,
    pub is_abstract: bool,
    pub inactive: bool,
    /// The code, display and designations folded for text filters, when known.
    pub folded: Option<std::sync::Arc<str>>,
}

impl Entry {
    /// True when `f` matches the code, the display or a designation.
    pub fn matches(&self, f: &crate::text::Filter) -> bool {
        match &self.folded {
            Some(t) => f.matches_folded(t),
            None => f.matches(
                std::iter::once(self.code.as_str())
                    .chain(self.display.as_deref())
                    .chain(self.designations.iter().map(|d| d.value.as_str())),
            ),
        }
    }

    fn of(cs: &CodeSystem, c: &Concept, lang: Option<&str>) -> Entry {
        Entry {
            system: cs.url.clone(),
            version: cs.version.clone(),
            code: c.code.clone(),
            display: cs.display_in(c, lang),
            designations: c.designations.clone(),
            is_abstract: c.is_abstract(),
            inactive: c.is_inactive(),
            folded: Some(c.folded.clone()),
        }
    }

    fn bare(system: &str, code: &str) -> Entry {
        Entry {
            system: system.to_string(),
            version: None,
            code: code.to_string(),
            display: None,
            designations: Vec::new(),
            is_abstract: false,
            inactive: false,
            folded: None,
        }
    }

    fn key(&self) -> (String, String) {
        (self.system.clone(), self.code.clone())
    }
}

/// The codes of a value set, in order, each once.
#[derive(Debug, Clone, Default)]
pub struct Expansion {
    pub entries: Vec<Entry>,
    seen: HashSet<(String, String)>,
}

impl Expansion {
    fn push(&mut self, e: Entry) {
        if self.seen.insert(e.key()) {
            self.entries.push(e);
        }
    }
    fn extend(&mut self, other: Expansion) {
        for e in other.entries {
            self.push(e);
        }
    }
    fn remove_all(&mut self, other: &Expansion) {
        self.entries.retain(|e| !other.seen.contains(&e.key()));
        self.seen.retain(|k| !other.seen.contains(k));
    }
    fn intersect(&mut self, other: &Expansion) {
        self.entries.retain(|e| other.seen.contains(&e.key()));
        self.seen.retain(|k| other.seen.contains(k));
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The entry for this system and code.
    pub fn find(&self, system: &str, code: &str) -> Option<&Entry> {
        if !self.seen.contains(&(system.to_string(), code.to_string())) {
            return None;
        }
        self.entries
            .iter()
            .find(|e| e.system == system && e.code == code)
    }
}

/// How to expand.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most codes an expansion may have (more: `too-costly`).
    pub limit: usize,
    /// The language displays are wanted in (`displayLanguage`).
    pub lang: Option<String>,
}

/// Expands a value set reference: `url[|version]` or `ValueSet/id`.
pub fn expand(src: &dyn Source, reference: &str, o: &Options) -> Result<Expansion, Issue> {
    expand_ref(src, reference, o, 0)
}

/// Expands a ValueSet resource.
pub fn expand_resource(src: &dyn Source, vs: &Value, o: &Options) -> Result<Expansion, Issue> {
    expand_value_set(src, vs, o, 0)
}

fn expand_ref(
    src: &dyn Source,
    reference: &str,
    o: &Options,
    depth: usize,
) -> Result<Expansion, Issue> {
    if depth > MAX_IMPORT_DEPTH {
        return Err(issue(
            IssueType::TooCostly,
            format!("value set imports nested too deeply at {reference}"),
        ));
    }
    let vs = if let Some(id) = reference.strip_prefix("ValueSet/") {
        src.by_id("ValueSet", id)
    } else {
        let (url, version) = match reference.split_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (reference, None),
        };
        src.by_url("ValueSet", url, version)
    };
    if let Some(vs) = vs {
        return expand_value_set(src, &vs, o, depth);
    }
    let url = reference.split('|').next().unwrap_or(reference);
    if let Some(set) = issho_model::r4().value_set(url) {
        let mut pairs: Vec<&(String, String)> = set.iter().collect();
        pairs.sort();
        let mut out = Expansion::default();
        for (s, c) in pairs {
            // Displays from the code system when it is installed.
            let cs = src.code_system(s, None);
            match cs
                .as_ref()
                .and_then(|cs| cs.get(c).map(|k| Entry::of(cs, k, o.lang.as_deref())))
            {
                Some(e) => out.push(e),
                None => out.push(Entry::bare(s, c)),
            }
        }
        return Ok(out);
    }
    if let Some(cs) = src.code_system_for_value_set(url) {
        let cs = CodeSystem::of(&cs);
        check_size(cs.concepts.len(), o)?;
        let mut out = Expansion::default();
        for c in &cs.concepts {
            out.push(Entry::of(&cs, c, o.lang.as_deref()));
        }
        return Ok(out);
    }
    Err(issue(
        IssueType::NotFound,
        format!("unknown value set '{reference}' (no ValueSet with that url is stored)"),
    ))
}

fn expand_value_set(
    src: &dyn Source,
    vs: &Value,
    o: &Options,
    depth: usize,
) -> Result<Expansion, Issue> {
    let Some(compose) = vs.get("compose") else {
        let Some(e) = vs.get("expansion") else {
            return Err(issue(
                IssueType::NotSupported,
                "the value set has neither compose nor expansion",
            ));
        };
        let mut out = Expansion::default();
        stored_contains(&e["contains"], &mut out);
        return Ok(out);
    };
    let mut out = Expansion::default();
    for inc in compose["include"].as_array().into_iter().flatten() {
        out.extend(component(src, inc, o, depth)?);
        check_size(out.len(), o)?;
    }
    for exc in compose["exclude"].as_array().into_iter().flatten() {
        let gone = component(src, exc, o, depth)?;
        out.remove_all(&gone);
    }
    if compose["inactive"].as_bool() == Some(false) {
        out.entries.retain(|e| !e.inactive);
    }
    Ok(out)
}

fn stored_contains(list: &Value, out: &mut Expansion) {
    for c in list.as_array().into_iter().flatten() {
        if let (Some(s), Some(code)) = (c["system"].as_str(), c["code"].as_str())
            && c["abstract"].as_bool() != Some(true)
        {
            let mut e = Entry::bare(s, code);
            e.version = c["version"].as_str().map(str::to_string);
            e.display = c["display"].as_str().map(str::to_string);
            e.inactive = c["inactive"].as_bool() == Some(true);
            e.designations = c["designation"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Designation::of)
                .collect();
            out.push(e);
        }
        stored_contains(&c["contains"], out);
    }
}

fn check_size(n: usize, o: &Options) -> Result<(), Issue> {
    if n > o.limit {
        Err(issue(
            IssueType::TooCostly,
            format!(
                "the value set has more than {} codes; use a smaller one (or a filter)",
                o.limit
            ),
        ))
    } else {
        Ok(())
    }
}

/// The codes of one `include` / `exclude` element.
fn component(src: &dyn Source, inc: &Value, o: &Options, depth: usize) -> Result<Expansion, Issue> {
    let system = inc["system"].as_str();
    let version = inc["version"].as_str();
    let mut set: Option<Expansion> = None;
    if let Some(system) = system {
        let cs = src.code_system(system, version);
        let mut out = Expansion::default();
        if let Some(list) = inc["concept"].as_array() {
            for c in list {
                let Some(code) = c["code"].as_str() else {
                    continue;
                };
                let mut e = match cs.as_ref().and_then(|cs| cs.get(code).map(|k| (cs, k))) {
                    Some((cs, k)) => Entry::of(cs, k, o.lang.as_deref()),
                    None => Entry::bare(system, code),
                };
                // Its own display and designations change what a filter matches.
                e.folded = None;
                // The value set's own display and designations come first.
                let listed: Vec<Designation> = c["designation"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Designation::of)
                    .collect();
                let own_lang = listed
                    .iter()
                    .find(|d| o.lang.as_deref().is_some_and(|l| d.in_language(l)));
                if let Some(d) = own_lang {
                    e.display = Some(d.value.clone());
                } else if let Some(d) = c["display"].as_str() {
                    e.display = Some(d.to_string());
                }
                e.designations.extend(listed);
                out.push(e);
            }
        } else {
            let Some(cs) = cs else {
                return Err(issue(
                    IssueType::NotSupported,
                    format!(
                        "cannot enumerate the codes of {system}: no CodeSystem with that url is stored"
                    ),
                ));
            };
            let filters = inc["filter"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            for c in filtered(&cs, filters)? {
                out.push(Entry::of(&cs, c, o.lang.as_deref()));
            }
        }
        set = Some(out);
    }
    for vs in inc["valueSet"].as_array().into_iter().flatten() {
        let Some(r) = vs.as_str() else { continue };
        let other = expand_ref(src, r, o, depth + 1)?;
        set = Some(match set {
            None => other,
            Some(mut s) => {
                s.intersect(&other);
                s
            }
        });
    }
    let out = set.unwrap_or_default();
    check_size(out.len(), o)?;
    Ok(out)
}

/// The concepts of `cs` passing every filter (they are ANDed), in document order.
pub fn filtered<'a>(cs: &'a CodeSystem, filters: &[Value]) -> Result<Vec<&'a Concept>, Issue> {
    let mut keep: Vec<bool> = vec![true; cs.concepts.len()];
    let position: HashMap<&str, usize> = cs
        .concepts
        .iter()
        .enumerate()
        .map(|(i, c)| (c.code.as_str(), i))
        .collect();
    for f in filters {
        let prop = f["property"].as_str().unwrap_or_default();
        let op = f["op"].as_str().unwrap_or_default();
        let value = f["value"].as_str().unwrap_or_default();
        let is_concept = matches!(prop, "concept" | "code");
        let set = |v: Vec<&Concept>| -> HashSet<usize> {
            v.iter()
                .filter_map(|c| position.get(c.code.as_str()).copied())
                .collect()
        };
        let listed = || -> HashSet<&str> { value.split(',').map(str::trim).collect() };
        let allowed: HashSet<usize> = match op {
            "is-a" if is_concept => set(cs.closure(value, true, true)),
            "descendent-of" if is_concept => set(cs.closure(value, true, false)),
            "generalizes" if is_concept => set(cs.closure(value, false, true)),
            "is-not-a" if is_concept => {
                let below = set(cs.closure(value, true, true));
                (0..cs.concepts.len())
                    .filter(|i| !below.contains(i))
                    .collect()
            }
            "=" if is_concept => cs.get(value).map(|c| set(vec![c])).unwrap_or_default(),
            "in" | "not-in" if is_concept => {
                let l = listed();
                (0..cs.concepts.len())
                    .filter(|&i| l.contains(cs.concepts[i].code.as_str()) == (op == "in"))
                    .collect()
            }
            "regex" => {
                let re = code_regex(value)?;
                (0..cs.concepts.len())
                    .filter(|&i| {
                        let c = &cs.concepts[i];
                        if is_concept {
                            re.is_match(&c.code)
                        } else {
                            c.property_texts(prop).iter().any(|v| re.is_match(v))
                        }
                    })
                    .collect()
            }
            "=" | "in" | "not-in" | "exists" => {
                let l = listed();
                (0..cs.concepts.len())
                    .filter(|&i| {
                        let vals = cs.concepts[i].property_texts(prop);
                        match op {
                            "=" => vals.iter().any(|x| x == value),
                            "in" => vals.iter().any(|x| l.contains(x.as_str())),
                            "not-in" => !vals.iter().any(|x| l.contains(x.as_str())),
                            _ => vals.is_empty() != (value == "true"),
                        }
                    })
                    .collect()
            }
            _ => {
                return Err(issue(
                    IssueType::NotSupported,
                    format!("value set filter '{prop} {op} {value}' is not supported"),
                ));
            }
        };
        for (i, k) in keep.iter_mut().enumerate() {
            *k &= allowed.contains(&i);
        }
    }
    Ok(cs
        .concepts
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(c, _)| c)
        .collect())
}

/// A `regex` filter value as an anchored matcher (the whole value must match).
pub fn code_regex(pattern: &str) -> Result<regex::Regex, Issue> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            issue(
                IssueType::Invalid,
                format!("regex filter '{pattern}' is not a valid regular expression: {e}"),
            )
        })
}
