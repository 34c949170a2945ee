//! The demo population meets the JP Core profiles its resources name in `meta.profile`
//! (JP Core 1.1.2 from ../shared, validated with issho-profiles).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn the_demo_meets_the_jp_core_profiles_it_names() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/jp");
    if !dir.is_dir() {
        println!("SKIPPED the_demo_meets_the_jp_core_profiles_it_names: ../shared is absent");
        return;
    }
    let core =
        issho_packages::read(&std::fs::read(dir.join("jp-core.r4-1.1.2.tgz")).unwrap()).unwrap();
    let p = issho_profiles::Resources::new(core.resources);
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
