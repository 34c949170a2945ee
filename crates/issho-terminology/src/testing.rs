//! A [`Source`] over a list of resources, for tests.

use crate::Source;
use serde_json::Value;

pub struct Map(pub Vec<Value>);

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
    fn concept_maps(&self, source_system: Option<&str>) -> Vec<Value> {
        self.0
            .iter()
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
