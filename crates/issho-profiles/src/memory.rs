//! Definitions and terminology from a list of resources in memory (the resources of packages
//! read with issho-packages): for tools, benchmarks and tests that validate without a store.

use crate::{Definitions, Expansions, Profile};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Resources by canonical url (issho-terminology's in-memory source), with their indexed
/// profiles and the expansions of the validations made with them.
#[derive(Default)]
pub struct Resources {
    src: issho_terminology::Resources,
    indexed: Mutex<HashMap<String, Arc<Profile>>>,
    expansions: Expansions,
}

impl Resources {
    pub fn new(list: impl IntoIterator<Item = Value>) -> Resources {
        Resources {
            src: issho_terminology::Resources::new(list),
            ..Default::default()
        }
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
        let sd = self.src.find("StructureDefinition", u, v)?;
        let p = Arc::new(Profile::index(sd, self).ok()?);
        self.indexed.lock().ok()?.insert(url.to_string(), p.clone());
        Some(p)
    }

    fn expansions(&self) -> Option<&Expansions> {
        Some(&self.expansions)
    }
}

impl issho_terminology::Source for Resources {
    fn by_url(&self, rt: &str, url: &str, version: Option<&str>) -> Option<Value> {
        self.src.by_url(rt, url, version)
    }
    fn by_id(&self, rt: &str, id: &str) -> Option<Value> {
        self.src.by_id(rt, id)
    }
    fn code_system_for_value_set(&self, url: &str) -> Option<Value> {
        self.src.code_system_for_value_set(url)
    }
    fn concept_maps(&self, source_system: Option<&str>) -> Vec<Value> {
        self.src.concept_maps(source_system)
    }
}
