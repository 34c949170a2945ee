//! A [`Source`] over resources in memory (the resources of packages read with
//! issho-packages, or a test's list): for tools, benchmarks and tests without a store.

use crate::Source;
use serde_json::Value;
use std::collections::HashMap;

/// Resources by canonical url.
#[derive(Default)]
pub struct Resources {
    by_url: HashMap<String, Vec<Value>>,
    /// Those without a url (found by id only).
    others: Vec<Value>,
}

impl Resources {
    pub fn new(list: impl IntoIterator<Item = Value>) -> Resources {
        let mut out = Resources::default();
        for r in list {
            match r["url"].as_str() {
                Some(u) => out.by_url.entry(u.to_string()).or_default().push(r),
                None => out.others.push(r),
            }
        }
        out
    }

    fn all(&self) -> impl Iterator<Item = &Value> {
        self.by_url.values().flatten().chain(&self.others)
    }

    /// The resource of `rt` with this url: the one of this version when there is one, else
    /// the first listed (packages read first win).
    pub fn find(&self, rt: &str, url: &str, version: Option<&str>) -> Option<&Value> {
        let list = self.by_url.get(url)?;
        let of_type = || list.iter().filter(|r| r["resourceType"] == rt);
        version
            .and_then(|v| of_type().find(|r| r["version"] == v))
            .or_else(|| of_type().next())
    }
}

impl Source for Resources {
    fn by_url(&self, rt: &str, url: &str, version: Option<&str>) -> Option<Value> {
        self.find(rt, url, version).cloned()
    }
    fn by_id(&self, rt: &str, id: &str) -> Option<Value> {
        self.all()
            .find(|r| r["resourceType"] == rt && r["id"] == id)
            .cloned()
    }
    fn code_system_for_value_set(&self, url: &str) -> Option<Value> {
        self.all()
            .find(|r| r["resourceType"] == "CodeSystem" && r["valueSet"] == url)
            .cloned()
    }
    fn concept_maps(&self, source_system: Option<&str>) -> Vec<Value> {
        self.all()
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
