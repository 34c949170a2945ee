//! One CodeSystem resource as an index: its concepts in document order with display,
//! definition, designations and properties, and its hierarchy (nested `concept` and the
//! `parent` / `child` properties).

use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// A designation of a concept (`CodeSystem.concept.designation`).
#[derive(Debug, Clone, PartialEq)]
pub struct Designation {
    pub language: Option<String>,
    /// `use` (a Coding), as given.
    pub use_: Option<Value>,
    pub value: String,
}

impl Designation {
    pub fn to_json(&self) -> Value {
        let mut d = serde_json::json!({"value": self.value});
        if let Some(l) = &self.language {
            d["language"] = Value::String(l.clone());
        }
        if let Some(u) = &self.use_ {
            d["use"] = u.clone();
        }
        d
    }

    pub(crate) fn of(v: &Value) -> Option<Designation> {
        Some(Designation {
            language: v["language"].as_str().map(str::to_string),
            use_: v.get("use").cloned(),
            value: v["value"].as_str()?.to_string(),
        })
    }

    /// True when in `lang` or a language of the same primary tag (`ja`, `ja-JP`).
    pub fn in_language(&self, lang: &str) -> bool {
        let primary = |t: &str| t.split('-').next().unwrap_or(t).to_ascii_lowercase();
        self.language
            .as_deref()
            .is_some_and(|l| primary(l) == primary(lang))
    }

    /// True when exactly in `lang`.
    pub fn exactly_in(&self, lang: &str) -> bool {
        self.language
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(lang))
    }
}

/// One concept.
#[derive(Debug, Clone)]
pub struct Concept {
    pub code: String,
    pub display: Option<String>,
    pub definition: Option<String>,
    pub designations: Vec<Designation>,
    /// `property` entries as given (`code` and one `value[x]`).
    pub properties: Vec<Value>,
    /// The code, display and designations folded for text filters (`text::fold`), once.
    pub folded: std::sync::Arc<str>,
}

impl Concept {
    /// The values of property `code` as text (a Coding's code, a boolean as `true`/`false`).
    pub fn property_texts(&self, code: &str) -> Vec<String> {
        self.properties
            .iter()
            .filter(|p| p["code"].as_str() == Some(code))
            .filter_map(property_text)
            .collect()
    }

    /// Not selectable (`notSelectable` or the R4 `abstract` property true).
    pub fn is_abstract(&self) -> bool {
        ["notSelectable", "abstract"]
            .iter()
            .any(|p| self.property_texts(p).iter().any(|v| v == "true"))
    }

    /// Inactive (`inactive` true, or `status` retired / inactive).
    pub fn is_inactive(&self) -> bool {
        self.property_texts("inactive").iter().any(|v| v == "true")
            || self
                .property_texts("status")
                .iter()
                .any(|v| matches!(v.as_str(), "retired" | "inactive"))
    }
}

/// A property's value as text.
pub fn property_text(p: &Value) -> Option<String> {
    let (_, v) = p
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("value"))?;
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("code").and_then(Value::as_str)?.to_string(),
        other => other.to_string(),
    })
}

/// A code system, indexed.
#[derive(Debug, Clone)]
pub struct CodeSystem {
    pub url: String,
    pub version: Option<String>,
    pub name: Option<String>,
    /// The language of the displays (`CodeSystem.language`), if stated.
    pub language: Option<String>,
    /// `content`: complete, fragment, example, not-present, supplement.
    pub content: String,
    pub case_sensitive: bool,
    pub concepts: Vec<Concept>,
    by_code: HashMap<String, usize>,
    parents: HashMap<usize, Vec<usize>>,
    children: HashMap<usize, Vec<usize>>,
}

impl CodeSystem {
    /// Indexes a CodeSystem resource.
    pub fn of(cs: &Value) -> CodeSystem {
        let mut out = CodeSystem {
            url: cs["url"].as_str().unwrap_or_default().to_string(),
            version: cs["version"].as_str().map(str::to_string),
            name: cs["title"]
                .as_str()
                .or_else(|| cs["name"].as_str())
                .map(str::to_string),
            language: cs["language"].as_str().map(str::to_string),
            content: cs["content"].as_str().unwrap_or("complete").to_string(),
            case_sensitive: cs["caseSensitive"].as_bool().unwrap_or(true),
            concepts: Vec::new(),
            by_code: HashMap::new(),
            parents: HashMap::new(),
            children: HashMap::new(),
        };
        let mut links: Vec<(String, String)> = Vec::new();
        out.walk(&cs["concept"], None, &mut links);
        for (parent, child) in links {
            if let (Some(&p), Some(&c)) = (out.by_code.get(&parent), out.by_code.get(&child)) {
                out.link(p, c);
            }
        }
        out
    }

    fn walk(&mut self, concepts: &Value, parent: Option<&str>, links: &mut Vec<(String, String)>) {
        for c in concepts.as_array().into_iter().flatten() {
            let Some(code) = c["code"].as_str() else {
                continue;
            };
            let properties: Vec<Value> = c["property"].as_array().cloned().unwrap_or_default();
            for p in &properties {
                let Some(v) = property_text(p) else { continue };
                match p["code"].as_str() {
                    Some("parent") => links.push((v, code.to_string())),
                    Some("child") => links.push((code.to_string(), v)),
                    _ => {}
                }
            }
            if let Some(p) = parent {
                links.push((p.to_string(), code.to_string()));
            }
            if !self.by_code.contains_key(code) {
                self.by_code.insert(code.to_string(), self.concepts.len());
                let display = c["display"].as_str().map(str::to_string);
                let designations: Vec<Designation> = c["designation"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Designation::of)
                    .collect();
                let folded = crate::text::fold_all(
                    std::iter::once(code)
                        .chain(display.as_deref())
                        .chain(designations.iter().map(|d| d.value.as_str())),
                );
                self.concepts.push(Concept {
                    code: code.to_string(),
                    display,
                    definition: c["definition"].as_str().map(str::to_string),
                    designations,
                    properties,
                    folded,
                });
            }
            self.walk(&c["concept"], Some(code), links);
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        let p = self.parents.entry(child).or_default();
        if !p.contains(&parent) {
            p.push(parent);
        }
        let c = self.children.entry(parent).or_default();
        if !c.contains(&child) {
            c.push(child);
        }
    }

    /// The concept with this code (case-insensitively when the system says so).
    pub fn get(&self, code: &str) -> Option<&Concept> {
        self.index(code).map(|i| &self.concepts[i])
    }

    fn index(&self, code: &str) -> Option<usize> {
        match self.by_code.get(code) {
            Some(i) => Some(*i),
            None if !self.case_sensitive => self
                .concepts
                .iter()
                .position(|c| c.code.eq_ignore_ascii_case(code)),
            None => None,
        }
    }

    /// The codes of `code`'s parents and children.
    pub fn parents_of(&self, code: &str) -> Vec<&str> {
        self.edges(code, &self.parents)
    }
    pub fn children_of(&self, code: &str) -> Vec<&str> {
        self.edges(code, &self.children)
    }

    fn edges<'a>(&'a self, code: &str, map: &HashMap<usize, Vec<usize>>) -> Vec<&'a str> {
        self.index(code)
            .and_then(|i| map.get(&i))
            .into_iter()
            .flatten()
            .map(|&j| self.concepts[j].code.as_str())
            .collect()
    }

    /// `code` and everything below it (`down`) or above it; without `code` unless
    /// `inclusive`. Empty when the code is unknown.
    pub fn closure(&self, code: &str, down: bool, inclusive: bool) -> Vec<&Concept> {
        let Some(start) = self.index(code) else {
            return Vec::new();
        };
        let edges = if down { &self.children } else { &self.parents };
        let mut seen: HashSet<usize> = HashSet::new();
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            stack.extend(edges.get(&i).into_iter().flatten().copied());
        }
        if !inclusive {
            seen.remove(&start);
        }
        let mut idx: Vec<usize> = seen.into_iter().collect();
        idx.sort_unstable();
        idx.into_iter().map(|i| &self.concepts[i]).collect()
    }

    /// True when `a` is `b` or below it.
    pub fn is_a(&self, a: &str, b: &str) -> bool {
        let Some(target) = self.index(b) else {
            return false;
        };
        self.closure(a, false, true)
            .iter()
            .any(|c| self.by_code.get(&c.code) == Some(&target))
    }

    /// The display of `c` in `lang`: the display when the system's language is `lang`,
    /// else a designation in `lang` (one meant as a display before a reading or other use),
    /// else the display. With no language asked, the display.
    pub fn display_in(&self, c: &Concept, lang: Option<&str>) -> Option<String> {
        let Some(lang) = lang else {
            return c.display.clone();
        };
        let primary = |t: &str| t.split('-').next().unwrap_or(t).to_ascii_lowercase();
        if self
            .language
            .as_deref()
            .is_some_and(|l| primary(l) == primary(lang))
            && c.display.is_some()
        {
            return c.display.clone();
        }
        let as_display = |d: &&&Designation| {
            d.use_
                .as_ref()
                .is_none_or(|u| u["code"].as_str() == Some("display"))
        };
        let in_lang: Vec<&Designation> = c
            .designations
            .iter()
            .filter(|d| d.in_language(lang))
            .collect();
        in_lang
            .iter()
            .filter(|d| d.exactly_in(lang))
            .find(as_display)
            .or_else(|| in_lang.iter().find(as_display))
            .map(|d| d.value.clone())
            .or_else(|| c.display.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hierarchy_designations_and_properties() {
        let cs = CodeSystem::of(&json!({"url": "u", "concept": [
            {"code": "a", "display": "A", "concept": [
                {"code": "b", "designation": [{"language": "ja-JP", "value": "ビー"}]}]},
            {"code": "c", "property": [{"code": "parent", "valueCode": "b"},
                                       {"code": "notSelectable", "valueBoolean": true}]}]}));
        assert_eq!(cs.concepts.len(), 3);
        let codes = |v: Vec<&Concept>| v.iter().map(|c| c.code.clone()).collect::<Vec<_>>();
        assert_eq!(codes(cs.closure("a", true, true)), vec!["a", "b", "c"]);
        assert_eq!(codes(cs.closure("c", false, false)), vec!["a", "b"]);
        assert!(cs.is_a("c", "a"));
        assert!(!cs.is_a("a", "c"));
        assert!(cs.get("c").unwrap().is_abstract());
        assert_eq!(
            cs.display_in(cs.get("b").unwrap(), Some("ja")).as_deref(),
            Some("ビー")
        );
        assert_eq!(
            cs.display_in(cs.get("a").unwrap(), Some("ja")).as_deref(),
            Some("A")
        );
        assert_eq!(cs.parents_of("c"), vec!["b"]);
        assert!(cs.closure("nope", true, true).is_empty());
    }
}
