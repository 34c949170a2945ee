//! Definitions and terminology from a list of resources in memory (the resources of packages
//! read with issho-packages): for tools, benchmarks and tests that validate without a store.

use crate::{Definitions, Expansions, Profile};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Resources by canonical url, with their indexed profiles and the
/// expansions of the validations made with them.
#[derive(Default)]
pub struct Resources {
    by_url: HashMap<String, Vec<Value>>,
    indexed: Mutex<HashMap<String, Arc<Profile>>>,
    expansions: Expansions,
}

impl Resources {
    pub fn new(list: impl IntoIterator<Item = Value>) -> Resources {
        let mut by_url: HashMap<String, Vec<Value>> = HashMap::new();
        for r in list {
            if let Some(u) = r["url"].as_str() {
                by_url.entry(u.to_string()).or_default().push(r);
            }
        }
        Resources {
            by_url,
            ..Default::default()
        }
    }

    /// The resource of `rt` with this url: the one of this version when there is one, else
    /// the first listed (packages read first win).
    fn find(&self, rt: &str, url: &str, version: Option<&str>) -> Option<&Value> {
        let list = self.by_url.get(url)?;
        let of_type = || list.iter().filter(|r| r["resourceType"] == rt);
        version
            .and_then(|v| of_type().find(|r| r["version"] == v))
            .or_else(|| of_type().next())
    }
}

impl Definitions for Resources {
    fn profile(&self, url: &str) -> Option<Arc<Profile>> {
        if let Some(p) = self.indexed.lock().ok()?.get(url) {
            return Some(p.clone());
        }
        let (u, v) = match url.split_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (url, None),
        };
        let p = Arc::new(Profile::index(self.find("StructureDefinition", u, v)?, self).ok()?);
        self.indexed.lock().ok()?.insert(url.to_string(), p.clone());
        Some(p)
    }

    fn expansions(&self) -> Option<&Expansions> {
        Some(&self.expansions)
    }
}

impl issho_terminology::Source for Resources {
    fn by_url(&self, rt: &str, url: &str, version: Option<&str>) -> Option<Value> {
        self.find(rt, url, version).cloned()
    }
    fn by_id(&self, rt: &str, id: &str) -> Option<Value> {
        self.by_url
            .values()
            .flatten()
            .find(|r| r["resourceType"] == rt && r["id"] == id)
            .cloned()
    }
    fn code_system_for_value_set(&self, url: &str) -> Option<Value> {
        self.by_url
            .values()
            .flatten()
            .find(|r| r["resourceType"] == "CodeSystem" && r["valueSet"] == url)
            .cloned()
    }
    fn concept_maps(&self, source_system: Option<&str>) -> Vec<Value> {
        self.by_url
            .values()
            .flatten()
            .filter(|r| r["resourceType"] == "ConceptMap")
            .filter(|r| {
                source_system.is_none_or(|s| {
                    r["group"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|g| g["source"] == s)
                })
            })
            .cloned()
            .collect()
    }
}
