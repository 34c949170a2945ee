//! Terminology for search: token `:in` / `:not-in` (value set expansion) and `:below` /
//! `:above` (code system hierarchies), from the ValueSet and CodeSystem resources stored in
//! this server, with the R4 value sets of the specification's required bindings as a fallback.
//!
//! Expansion follows ValueSet.compose (R4 valueset.html#compose): `include` and `exclude`
//! with `concept` lists, `filter` (`is-a`, `descendent-of`, `is-not-a`, `generalizes`, `in`,
//! `not-in`, `=` and `exists` on properties, `regex` on codes), `valueSet` imports (codes in
//! every imported set, and in the system part when there is one) and whole code systems; a
//! stored `expansion` is used when there is no `compose`. Hierarchies come from nested
//! `CodeSystem.concept` and the `parent` / `child` properties.

use crate::*;
use issho_search::Match;
use issho_store::StoreRead;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Largest expansion a search may use.
pub(crate) const MAX_CODES: usize = 10_000;
/// Deepest chain of value set imports followed.
const MAX_IMPORT_DEPTH: usize = 8;

type Codes = BTreeSet<(String, String)>;

fn issue(code: IssueType, msg: impl Into<String>) -> Issue {
    Issue::error(code, msg)
}

/// Where terminology resources come from (the store, or a map in unit tests).
pub(crate) trait Source {
    /// The resource of `resource_type` with this canonical `url` (and `version`, when given);
    /// when several versions are stored and none is asked for, the newest by `version`.
    fn by_url(&self, resource_type: &str, url: &str, version: Option<&str>) -> Option<Value>;
    /// A ValueSet by id (`ValueSet/id` references).
    fn by_id(&self, resource_type: &str, id: &str) -> Option<Value>;
    /// A CodeSystem whose `valueSet` (its implicit value set of all codes) is `url`.
    fn code_system_for_value_set(&self, url: &str) -> Option<Value>;
}

/// One code system's concepts and hierarchy.
struct Hierarchy {
    /// Every code, in document order, with its properties (code → values as strings).
    codes: Vec<(String, HashMap<String, Vec<String>>)>,
    parents: HashMap<String, Vec<String>>,
    children: HashMap<String, Vec<String>>,
}

impl Hierarchy {
    fn of(cs: &Value) -> Hierarchy {
        let mut h = Hierarchy {
            codes: Vec::new(),
            parents: HashMap::new(),
            children: HashMap::new(),
        };
        fn walk(h: &mut Hierarchy, concepts: &Value, parent: Option<&str>) {
            for c in concepts.as_array().into_iter().flatten() {
                let Some(code) = c.get("code").and_then(Value::as_str) else {
                    continue;
                };
                let mut props: HashMap<String, Vec<String>> = HashMap::new();
                for p in c
                    .get("property")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(pc) = p.get("code").and_then(Value::as_str) else {
                        continue;
                    };
                    let v = p
                        .as_object()
                        .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
                        .map(|(_, v)| match v {
                            Value::String(s) => s.clone(),
                            Value::Object(o) => o
                                .get("code")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            other => other.to_string(),
                        })
                        .unwrap_or_default();
                    match pc {
                        "parent" => h.link(&v, code),
                        "child" => h.link(code, &v),
                        _ => {}
                    }
                    props.entry(pc.to_string()).or_default().push(v);
                }
                if let Some(p) = parent {
                    h.link(p, code);
                }
                h.codes.push((code.to_string(), props));
                walk(h, c.get("concept").unwrap_or(&Value::Null), Some(code));
            }
        }
        walk(&mut h, cs.get("concept").unwrap_or(&Value::Null), None);
        h
    }

    fn link(&mut self, parent: &str, child: &str) {
        let p = self.parents.entry(child.to_string()).or_default();
        if !p.iter().any(|x| x == parent) {
            p.push(parent.to_string());
        }
        let c = self.children.entry(parent.to_string()).or_default();
        if !c.iter().any(|x| x == child) {
            c.push(child.to_string());
        }
    }

    fn has(&self, code: &str) -> bool {
        self.codes.iter().any(|(c, _)| c == code)
    }

    /// `code` and everything below it (`down`) or above it, without `code` when `!inclusive`.
    fn closure(&self, code: &str, down: bool, inclusive: bool) -> Vec<String> {
        let edges = if down { &self.children } else { &self.parents };
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut stack = vec![code.to_string()];
        while let Some(c) = stack.pop() {
            if !seen.insert(c.clone()) {
                continue;
            }
            if inclusive || c != code {
                out.push(c.clone());
            }
            for n in edges.get(&c).into_iter().flatten() {
                stack.push(n.clone());
            }
        }
        out
    }
}

/// The expansion of one value set reference (`url[|version]` or `ValueSet/id`).
pub(crate) fn expand(src: &dyn Source, reference: &str) -> std::result::Result<Codes, Issue> {
    expand_ref(src, reference, 0)
}

fn expand_ref(
    src: &dyn Source,
    reference: &str,
    depth: usize,
) -> std::result::Result<Codes, Issue> {
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
        return expand_value_set(src, &vs, depth);
    }
    let url = reference.split('|').next().unwrap_or(reference);
    if let Some(set) = issho_model::r4().value_set(url) {
        return Ok(set.iter().cloned().collect());
    }
    if let Some(cs) = src.code_system_for_value_set(url) {
        return all_codes(&cs);
    }
    Err(issue(
        IssueType::NotFound,
        format!("unknown value set '{reference}' (no ValueSet with that url is stored)"),
    ))
}

fn expand_value_set(
    src: &dyn Source,
    vs: &Value,
    depth: usize,
) -> std::result::Result<Codes, Issue> {
    let Some(compose) = vs.get("compose") else {
        // A stored expansion.
        let mut out = Codes::new();
        fn contains(list: &Value, out: &mut Codes) {
            for c in list.as_array().into_iter().flatten() {
                if let (Some(s), Some(code)) = (
                    c.get("system").and_then(Value::as_str),
                    c.get("code").and_then(Value::as_str),
                ) && c.get("abstract").and_then(Value::as_bool) != Some(true)
                {
                    out.insert((s.to_string(), code.to_string()));
                }
                contains(c.get("contains").unwrap_or(&Value::Null), out);
            }
        }
        match vs.get("expansion") {
            Some(e) => contains(e.get("contains").unwrap_or(&Value::Null), &mut out),
            None => {
                return Err(issue(
                    IssueType::NotSupported,
                    "the value set has neither compose nor expansion",
                ));
            }
        }
        return Ok(out);
    };
    let mut out = Codes::new();
    for inc in compose
        .get("include")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(component(src, inc, depth)?);
        check_size(out.len())?;
    }
    for exc in compose
        .get("exclude")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for c in component(src, exc, depth)? {
            out.remove(&c);
        }
    }
    Ok(out)
}

fn check_size(n: usize) -> std::result::Result<(), Issue> {
    if n > MAX_CODES {
        Err(issue(
            IssueType::TooCostly,
            format!("the value set has more than {MAX_CODES} codes; search with a smaller one"),
        ))
    } else {
        Ok(())
    }
}

/// The codes of one `include` / `exclude` element.
fn component(src: &dyn Source, inc: &Value, depth: usize) -> std::result::Result<Codes, Issue> {
    let system = inc.get("system").and_then(Value::as_str);
    let version = inc.get("version").and_then(Value::as_str);
    let mut set: Option<Codes> = None;
    if let Some(system) = system {
        let concepts = inc.get("concept").and_then(Value::as_array);
        let filters = inc.get("filter").and_then(Value::as_array);
        let codes: Codes = if let Some(cs) = concepts {
            cs.iter()
                .filter_map(|c| c.get("code").and_then(Value::as_str))
                .map(|c| (system.to_string(), c.to_string()))
                .collect()
        } else {
            let Some(cs) = src.by_url("CodeSystem", system, version) else {
                return Err(issue(
                    IssueType::NotSupported,
                    format!(
                        "cannot enumerate the codes of {system}: no CodeSystem with that url is stored"
                    ),
                ));
            };
            match filters {
                Some(fs) if !fs.is_empty() => filtered(src, &cs, system, fs)?,
                _ => all_codes(&cs)?,
            }
        };
        set = Some(codes);
    }
    for vs in inc
        .get("valueSet")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(r) = vs.as_str() else { continue };
        let other = expand_ref(src, r, depth + 1)?;
        set = Some(match set {
            None => other,
            Some(s) => s.intersection(&other).cloned().collect(),
        });
    }
    let out = set.unwrap_or_default();
    check_size(out.len())?;
    Ok(out)
}

fn all_codes(cs: &Value) -> std::result::Result<Codes, Issue> {
    let system = cs.get("url").and_then(Value::as_str).unwrap_or_default();
    let h = Hierarchy::of(cs);
    check_size(h.codes.len())?;
    Ok(h.codes
        .iter()
        .map(|(c, _)| (system.to_string(), c.clone()))
        .collect())
}

/// Codes of `cs` passing every filter (they are ANDed).
fn filtered(
    src: &dyn Source,
    cs: &Value,
    system: &str,
    filters: &[Value],
) -> std::result::Result<Codes, Issue> {
    let h = Hierarchy::of(cs);
    let mut keep: Vec<&str> = h.codes.iter().map(|(c, _)| c.as_str()).collect();
    for f in filters {
        let prop = f
            .get("property")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let op = f.get("op").and_then(Value::as_str).unwrap_or_default();
        let value = f.get("value").and_then(Value::as_str).unwrap_or_default();
        let is_concept = matches!(prop, "concept" | "code");
        let allowed: HashSet<String> = match op {
            "is-a" if is_concept => h.closure(value, true, true).into_iter().collect(),
            "descendent-of" if is_concept => h.closure(value, true, false).into_iter().collect(),
            "generalizes" if is_concept => h.closure(value, false, true).into_iter().collect(),
            "is-not-a" if is_concept => {
                let below: HashSet<String> = h.closure(value, true, true).into_iter().collect();
                h.codes
                    .iter()
                    .map(|(c, _)| c.clone())
                    .filter(|c| !below.contains(c))
                    .collect()
            }
            "in" | "not-in" if is_concept => {
                let listed: HashSet<&str> = value.split(',').map(str::trim).collect();
                h.codes
                    .iter()
                    .map(|(c, _)| c.clone())
                    .filter(|c| listed.contains(c.as_str()) == (op == "in"))
                    .collect()
            }
            "=" if is_concept => [value.to_string()].into_iter().collect(),
            "regex" if is_concept => {
                let re = code_regex(value)?;
                h.codes
                    .iter()
                    .map(|(c, _)| c.clone())
                    .filter(|c| re.is_match(c))
                    .collect()
            }
            "=" | "in" | "not-in" | "exists" => h
                .codes
                .iter()
                .filter(|(_, props)| {
                    let vals = props.get(prop);
                    match op {
                        "=" => vals.is_some_and(|v| v.iter().any(|x| x == value)),
                        "in" => vals.is_some_and(|v| {
                            v.iter().any(|x| value.split(',').any(|y| y.trim() == x))
                        }),
                        "not-in" => !vals.is_some_and(|v| {
                            v.iter().any(|x| value.split(',').any(|y| y.trim() == x))
                        }),
                        _ => vals.is_some() == (value == "true"),
                    }
                })
                .map(|(c, _)| c.clone())
                .collect(),
            _ => {
                return Err(issue(
                    IssueType::NotSupported,
                    format!("value set filter '{prop} {op} {value}' is not supported"),
                ));
            }
        };
        keep.retain(|c| allowed.contains(*c));
    }
    let _ = src;
    Ok(keep
        .into_iter()
        .map(|c| (system.to_string(), c.to_string()))
        .collect())
}

/// A `regex` filter value as an anchored matcher (the whole code must match).
fn code_regex(pattern: &str) -> std::result::Result<regex::Regex, Issue> {
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

/// `:below` / `:above`: the code and its descendants (or ancestors) in its code system.
pub(crate) fn subsumption(
    src: &dyn Source,
    system: Option<&str>,
    code: &str,
    above: bool,
) -> std::result::Result<Codes, Issue> {
    let m = if above { "above" } else { "below" };
    let Some(system) = system else {
        return Err(issue(
            IssueType::Invalid,
            format!(":{m} needs system|code (the hierarchy belongs to a code system)"),
        ));
    };
    let Some(cs) = src.by_url("CodeSystem", system, None) else {
        return Err(issue(
            IssueType::NotSupported,
            format!(
                ":{m} needs the hierarchy of {system}, and no CodeSystem with that url is stored"
            ),
        ));
    };
    let h = Hierarchy::of(&cs);
    if !h.has(code) {
        return Err(issue(
            IssueType::CodeInvalid,
            format!("'{code}' is not a code of {system}"),
        ));
    }
    let codes = h.closure(code, !above, true);
    check_size(codes.len())?;
    Ok(codes.into_iter().map(|c| (system.to_string(), c)).collect())
}

/// Terminology resources read through a store snapshot.
pub(crate) struct StoreSource<'a> {
    pub r: &'a dyn StoreRead,
}

impl StoreSource<'_> {
    fn search(&self, rt: &str, pairs: &[(&str, &str)], count: usize) -> Vec<Value> {
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
        self.r
            .current_by_rids(&rids)
            .unwrap_or_default()
            .iter()
            .filter_map(Stored::json)
            .collect()
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('|', "\\|")
        .replace('$', "\\$")
}

impl Source for StoreSource<'_> {
    fn by_url(&self, rt: &str, url: &str, version: Option<&str>) -> Option<Value> {
        let url = escape(url);
        let mut found = match version {
            Some(v) => self.search(rt, &[("url", &url), ("version", &escape(v))], 50),
            None => self.search(rt, &[("url", &url)], 50),
        };
        // Newest version first (string order of `version`, then last updated).
        found.sort_by(|a, b| {
            let v = |x: &Value| {
                x.get("version")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            v(b).cmp(&v(a))
        });
        found.into_iter().next()
    }
    fn by_id(&self, rt: &str, id: &str) -> Option<Value> {
        self.r.current(rt, id).ok().flatten().and_then(|s| s.json())
    }
    fn code_system_for_value_set(&self, url: &str) -> Option<Value> {
        // `CodeSystem.valueSet` has no search parameter in R4: look through the stored code
        // systems (the first 1,000; reached only when no ValueSet has this url).
        self.search("CodeSystem", &[], 1000)
            .into_iter()
            .find(|cs| cs.get("valueSet").and_then(Value::as_str) == Some(url))
    }
}

/// The codes of a value-set or hierarchy match.
pub(crate) fn resolve(
    src: &dyn Source,
    m: &Match,
) -> std::result::Result<Vec<(String, String)>, Issue> {
    match m {
        Match::ValueSet(reference) => Ok(expand(src, reference)?.into_iter().collect()),
        Match::Subsumption {
            system,
            code,
            above,
        } => Ok(subsumption(src, system.as_deref(), code, *above)?
            .into_iter()
            .collect()),
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
        let src = StoreSource { r };
        q.resolve_terminology(&mut |m| resolve(&src, m))
            .map_err(|issues| FhirError {
                status: 400,
                issues,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Map(Vec<Value>);

    impl Source for Map {
        fn by_url(&self, rt: &str, url: &str, version: Option<&str>) -> Option<Value> {
            self.0
                .iter()
                .find(|r| {
                    r["resourceType"] == rt
                        && r["url"] == url
                        && version.is_none_or(|v| r["version"] == v)
                })
                .cloned()
        }
        fn by_id(&self, rt: &str, id: &str) -> Option<Value> {
            self.0
                .iter()
                .find(|r| r["resourceType"] == rt && r["id"] == id)
                .cloned()
        }
        fn code_system_for_value_set(&self, url: &str) -> Option<Value> {
            self.0
                .iter()
                .find(|r| r["resourceType"] == "CodeSystem" && r["valueSet"] == url)
                .cloned()
        }
    }

    const SYS: &str = "https://issho.example/cs/dx";

    fn cs() -> Value {
        json!({"resourceType": "CodeSystem", "url": SYS, "valueSet": "https://issho.example/vs/all-dx",
        "content": "complete",
        "concept": [
          {"code": "metabolic", "concept": [
              {"code": "diabetes", "concept": [{"code": "t1"}, {"code": "t2"}]},
              {"code": "gout"}
          ]},
          {"code": "circulatory", "concept": [{"code": "htn"}]},
          {"code": "mi", "property": [{"code": "parent", "valueCode": "circulatory"}]}
        ]})
    }

    fn codes(c: &Codes) -> Vec<&str> {
        c.iter().map(|(_, c)| c.as_str()).collect()
    }

    #[test]
    fn hierarchy_and_filters() {
        let src = Map(vec![
            cs(),
            json!({"resourceType": "ValueSet", "id": "dm", "url": "https://issho.example/vs/dm",
              "compose": {"include": [{"system": SYS, "filter": [{"property": "concept", "op": "is-a", "value": "diabetes"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/circ-no-htn",
              "compose": {"include": [{"system": SYS, "filter": [{"property": "concept", "op": "descendent-of", "value": "circulatory"}]}],
                          "exclude": [{"system": SYS, "concept": [{"code": "htn"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/t-codes",
              "compose": {"include": [{"system": SYS, "filter": [{"property": "code", "op": "regex", "value": "t[0-9]+"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/import",
              "compose": {"include": [{"valueSet": ["https://issho.example/vs/dm"], "system": SYS,
                                       "concept": [{"code": "t2"}, {"code": "gout"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/expanded",
              "expansion": {"timestamp": "2026-01-01", "contains": [
                 {"system": SYS, "code": "metabolic", "abstract": true, "contains": [{"system": SYS, "code": "gout"}]}]}}),
        ]);
        let e = |r: &str| expand(&src, r).map(|c| codes(&c).join(" "));
        assert_eq!(e("https://issho.example/vs/dm").unwrap(), "diabetes t1 t2");
        assert_eq!(e("ValueSet/dm").unwrap(), "diabetes t1 t2");
        assert_eq!(e("https://issho.example/vs/circ-no-htn").unwrap(), "mi");
        assert_eq!(e("https://issho.example/vs/t-codes").unwrap(), "t1 t2");
        assert_eq!(e("https://issho.example/vs/import").unwrap(), "t2");
        assert_eq!(e("https://issho.example/vs/expanded").unwrap(), "gout");
        assert_eq!(
            e("https://issho.example/vs/all-dx").unwrap(),
            "circulatory diabetes gout htn metabolic mi t1 t2"
        );
        // The specification's required value sets.
        assert_eq!(
            e("http://hl7.org/fhir/ValueSet/administrative-gender").unwrap(),
            "female male other unknown"
        );
        assert_eq!(
            e("https://nowhere.example/vs").unwrap_err().code,
            IssueType::NotFound
        );
        let below = subsumption(&src, Some(SYS), "metabolic", false).unwrap();
        assert_eq!(
            codes(&below),
            vec!["diabetes", "gout", "metabolic", "t1", "t2"]
        );
        let above = subsumption(&src, Some(SYS), "t2", true).unwrap();
        assert_eq!(codes(&above), vec!["diabetes", "metabolic", "t2"]);
        let via_property = subsumption(&src, Some(SYS), "circulatory", false).unwrap();
        assert_eq!(codes(&via_property), vec!["circulatory", "htn", "mi"]);
        assert!(subsumption(&src, Some(SYS), "nope", false).is_err());
        assert!(subsumption(&src, Some("http://unknown"), "x", false).is_err());
        assert!(subsumption(&src, None, "x", false).is_err());
    }

    #[test]
    fn regex_subset() {
        let ok = |p: &str, s: &str| code_regex(p).unwrap().is_match(s);
        assert!(ok("t[0-9]+", "t12"));
        assert!(!ok("t[0-9]+", "t"));
        assert!(ok("E1.*", "E11.9"));
        assert!(!ok("E1.*", "XE11"));
        assert!(ok("^A\\d?$", "A"));
        assert!(ok("[^x]y", "ay"));
        assert!(!ok("[^x]y", "xy"));
        assert!(ok("(a|b)c", "bc"));
        assert!(code_regex("(a").is_err());
    }

    #[test]
    fn too_large_expansions_are_refused() {
        let concepts: Vec<Value> = (0..=MAX_CODES)
            .map(|i| json!({"code": format!("c{i}")}))
            .collect();
        let src = Map(vec![
            json!({"resourceType": "CodeSystem", "url": SYS, "concept": concepts}),
            json!({"resourceType": "ValueSet", "url": "https://issho.example/vs/big",
              "compose": {"include": [{"system": SYS}]}}),
        ]);
        assert_eq!(
            expand(&src, "https://issho.example/vs/big")
                .unwrap_err()
                .code,
            IssueType::TooCostly
        );
    }
}
