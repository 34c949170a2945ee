//! The demo population meets the JP Core profiles its resources name in `meta.profile`
//! (JP Core 1.1.2 from ../shared, validated with issho-profiles).

use issho_profiles::{Definitions, Profile};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

struct Packages {
    by_url: HashMap<String, Value>,
    indexed: Mutex<HashMap<String, Arc<Profile>>>,
}

impl Definitions for Packages {
    fn profile(&self, url: &str) -> Option<Arc<Profile>> {
        let url = url.split('|').next().unwrap_or(url);
        if let Some(p) = self.indexed.lock().unwrap().get(url) {
            return Some(p.clone());
        }
        let p = Arc::new(Profile::of(self.by_url.get(url)?)?);
        self.indexed
            .lock()
            .unwrap()
            .insert(url.to_string(), p.clone());
        Some(p)
    }
}

impl issho_terminology::Source for Packages {
    fn by_url(&self, rt: &str, url: &str, _: Option<&str>) -> Option<Value> {
        self.by_url
            .get(url)
            .filter(|v| v["resourceType"] == rt)
            .cloned()
    }
    fn by_id(&self, _: &str, _: &str) -> Option<Value> {
        None
    }
    fn code_system_for_value_set(&self, _: &str) -> Option<Value> {
        None
    }
    fn concept_maps(&self, _: Option<&str>) -> Vec<Value> {
        Vec::new()
    }
}

#[test]
fn the_demo_meets_the_jp_core_profiles_it_names() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/jp");
    if !dir.is_dir() {
        println!("SKIPPED the_demo_meets_the_jp_core_profiles_it_names: ../shared is absent");
        return;
    }
    let core =
        issho_packages::read(&std::fs::read(dir.join("jp-core.r4-1.1.2.tgz")).unwrap()).unwrap();
    let p = Packages {
        by_url: core
            .resources
            .into_iter()
            .filter_map(|r| Some((r["url"].as_str()?.to_string(), r)))
            .collect(),
        indexed: Mutex::default(),
    };
    let cfg = issho_demo::DemoConfig {
        persons: 12,
        seed: 1,
    };
    // Each distinct error once, with how often and where first.
    let mut found: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut n = 0;
    for i in 0..cfg.persons {
        for r in issho_demo::person_resources(&cfg, i) {
            for url in r.resource["meta"]["profile"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                n += 1;
                for issue in issho_profiles::validate(&r.resource, url, &p, &p) {
                    if issue.is_error() {
                        let e = found
                            .entry(issue.diagnostics.clone())
                            .or_insert((0, format!("{}/{}", r.resource_type, r.id)));
                        e.0 += 1;
                    }
                }
            }
        }
    }
    assert!(n > 100, "{n} resources with profiles");
    let list: Vec<String> = found
        .iter()
        .map(|(m, (k, at))| format!("{k}× {m} (first {at})"))
        .collect();
    assert!(
        found.is_empty(),
        "{} kinds of errors in {n} validations:\n{}",
        found.len(),
        list.join("\n")
    );
}
