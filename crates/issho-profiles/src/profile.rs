//! A StructureDefinition's snapshot as a tree of element definitions: for each element its
//! children, grouped by name, with each group's slices (ids `Parent.name:slice`).

use serde_json::Value;
use std::collections::HashMap;

/// One StructureDefinition, indexed.
#[derive(Debug)]
pub struct Profile {
    pub url: String,
    /// `name` (or the url's last segment), for messages.
    pub name: String,
    /// The type it constrains (`Patient`, `Extension`, …).
    pub type_: String,
    /// `context` of an extension definition: (type, expression).
    pub context: Vec<(String, String)>,
    pub elements: Vec<Value>,
    /// What the walk reads of each element, read once.
    pub info: Vec<Info>,
    /// For each element: its child groups (a base element and its slices), in order.
    children: Vec<Vec<Group>>,
    /// Element index by id.
    by_id: HashMap<String, usize>,
}

/// A child element and its slices.
#[derive(Debug, Clone)]
pub struct Group {
    /// The element's name (`name`, `value[x]`).
    pub name: String,
    pub base: usize,
    pub slices: Vec<usize>,
}

impl Profile {
    /// Indexes a StructureDefinition by its snapshot, generated from its differential and
    /// its base when it has none.
    pub fn index(sd: &Value, defs: &dyn crate::Definitions) -> Result<Profile, String> {
        let elements = crate::snapshot::snapshot_elements(sd, defs)?;
        Profile::with_elements(sd, elements).ok_or_else(|| {
            format!(
                "{}: an empty snapshot",
                sd["url"].as_str().unwrap_or("(no url)")
            )
        })
    }

    /// Indexes a StructureDefinition by its own snapshot; `None` when it has none.
    pub fn of(sd: &Value) -> Option<Profile> {
        Profile::with_elements(sd, sd["snapshot"]["element"].as_array()?.clone())
    }

    fn with_elements(sd: &Value, elements: Vec<Value>) -> Option<Profile> {
        if elements.is_empty() {
            return None;
        }
        let ids: Vec<String> = elements
            .iter()
            .map(|e| {
                e["id"]
                    .as_str()
                    .or_else(|| e["path"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let by_id: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let index: HashMap<String, usize> =
            by_id.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let mut children: Vec<Vec<Group>> = vec![Vec::new(); elements.len()];
        for (i, id) in ids.iter().enumerate().skip(1) {
            let Some(dot) = last_dot(id) else { continue };
            let (parent, name) = (&id[..dot], &id[dot + 1..]);
            let Some(&p) = by_id.get(parent) else {
                continue;
            };
            let (base, slice) = match name.split_once(':') {
                Some((b, s)) => (b, Some(s)),
                None => (name, None),
            };
            let groups = &mut children[p];
            match slice {
                None => groups.push(Group {
                    name: base.to_string(),
                    base: i,
                    slices: Vec::new(),
                }),
                // Reslices (`name:slice/reslice`) are slices of the slice: not yet told apart.
                Some(s) if s.contains('/') => {}
                Some(_) => match groups.iter_mut().rev().find(|g| g.name == base) {
                    Some(g) => g.slices.push(i),
                    None => groups.push(Group {
                        name: base.to_string(),
                        base: i,
                        slices: Vec::new(),
                    }),
                },
            }
        }
        let url = sd["url"].as_str().unwrap_or_default().to_string();
        Some(Profile {
            name: sd["name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| url.rsplit('/').next().unwrap_or_default().to_string()),
            url,
            type_: sd["type"].as_str().unwrap_or_default().to_string(),
            context: sd["context"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((
                        c["type"].as_str()?.to_string(),
                        c["expression"].as_str()?.to_string(),
                    ))
                })
                .collect(),
            info: elements.iter().map(Info::of).collect(),
            elements,
            children,
            by_id: index,
        })
    }

    pub fn children(&self, i: usize) -> &[Group] {
        &self.children[i]
    }

    /// The element whose id is `id`.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The element a path of child names (`system`, `coding.system`) reaches below `i`.
    pub fn below(&self, i: usize, path: &str) -> Option<usize> {
        let mut at = i;
        for step in path.split('.') {
            at = self.children[at].iter().find(|g| g.name == step)?.base;
        }
        Some(at)
    }

    pub fn id(&self, i: usize) -> &str {
        self.elements[i]["id"]
            .as_str()
            .or_else(|| self.elements[i]["path"].as_str())
            .unwrap_or_default()
    }
}

/// An invariant of an element.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub key: String,
    pub error: bool,
    pub human: String,
    pub expression: String,
}

/// What the walk reads of an element definition.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub id: String,
    pub path: String,
    pub min: usize,
    pub max: Option<usize>,
    pub types: Vec<String>,
    pub profiles: Vec<String>,
    pub targets: Vec<String>,
    pub fixed: Option<(bool, Value)>,
    /// (strength, value set)
    pub binding: Option<(String, String)>,
    pub constraints: Vec<Constraint>,
    /// (type, path) of the slicing's discriminators.
    pub discriminators: Vec<(String, String)>,
    pub closed: bool,
    pub ordered: bool,
    pub slice_name: String,
}

impl Info {
    fn of(e: &Value) -> Info {
        let strs = |v: Vec<&str>| v.into_iter().map(str::to_string).collect::<Vec<_>>();
        Info {
            id: e["id"]
                .as_str()
                .or_else(|| e["path"].as_str())
                .unwrap_or_default()
                .to_string(),
            path: e["path"].as_str().unwrap_or_default().to_string(),
            min: min_of(e),
            max: max_of(e),
            types: strs(type_codes(e)),
            profiles: strs(type_profiles(e, "profile")),
            targets: strs(type_profiles(e, "targetProfile")),
            fixed: fixed_or_pattern(e).map(|(f, v)| (f, v.clone())),
            binding: match (
                e["binding"]["strength"].as_str(),
                e["binding"]["valueSet"].as_str(),
            ) {
                (Some(s), Some(v)) => Some((s.to_string(), v.to_string())),
                _ => None,
            },
            constraints: e["constraint"]
                .as_array()
                .into_iter()
                .flatten()
                // The R4 base's own invariants are `base_invariants`' (which knows their
                // corrections), except ele-1, which the walk checks natively.
                .filter(|c| {
                    c["key"] == "ele-1"
                        || !c["source"].as_str().is_some_and(|s| {
                            s.starts_with("http://hl7.org/fhir/StructureDefinition/")
                        })
                })
                .filter_map(|c| {
                    Some(Constraint {
                        key: c["key"].as_str()?.to_string(),
                        error: c["severity"] != "warning",
                        human: c["human"].as_str().unwrap_or("invariant").to_string(),
                        expression: c["expression"].as_str()?.to_string(),
                    })
                })
                .collect(),
            discriminators: e["slicing"]["discriminator"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    (
                        d["type"].as_str().unwrap_or("value").to_string(),
                        d["path"].as_str().unwrap_or("$this").to_string(),
                    )
                })
                .collect(),
            closed: e["slicing"]["rules"] == "closed",
            ordered: e["slicing"]["ordered"] == true,
            slice_name: e["sliceName"].as_str().unwrap_or_default().to_string(),
        }
    }

    pub fn is_choice(&self) -> bool {
        self.path.ends_with("[x]")
    }
}

/// The last `.` of an id that separates elements (not one inside a slice name after `:`…
/// slice names hold no dots, so the last dot is it).
fn last_dot(id: &str) -> Option<usize> {
    id.rfind('.')
}

/// The type codes an element allows.
pub fn type_codes(e: &Value) -> Vec<&str> {
    e["type"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["code"].as_str())
        .collect()
}

/// The `profile`s (or `targetProfile`s) of an element's types.
pub fn type_profiles<'a>(e: &'a Value, key: &str) -> Vec<&'a str> {
    e["type"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t[key].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect()
}

/// The element's `fixed[x]` or `pattern[x]`: (is fixed, value).
pub fn fixed_or_pattern(e: &Value) -> Option<(bool, &Value)> {
    let o = e.as_object()?;
    o.iter()
        .find(|(k, _)| k.starts_with("fixed"))
        .map(|(_, v)| (true, v))
        .or_else(|| {
            o.iter()
                .find(|(k, _)| k.starts_with("pattern"))
                .map(|(_, v)| (false, v))
        })
}

/// `max` as a number (`None` for `*`).
pub fn max_of(e: &Value) -> Option<usize> {
    match e["max"].as_str() {
        Some("*") | None => None,
        Some(m) => m.parse().ok(),
    }
}

pub fn min_of(e: &Value) -> usize {
    e["min"].as_u64().unwrap_or(0) as usize
}
