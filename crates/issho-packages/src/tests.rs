use super::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use std::path::{Path, PathBuf};

/// A `.tgz` with these files (path, contents).
fn tgz(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn json_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn manifest(name: &str, version: &str, deps: Value) -> (&'static str, Vec<u8>) {
    (
        "package/package.json",
        json_bytes(
            json!({"name": name, "version": version, "fhirVersions": ["4.0.1"],
            "canonical": "http://example.org/fhir", "dependencies": deps}),
        ),
    )
}

fn sd(id: &str, base: &str) -> Value {
    json!({"resourceType": "StructureDefinition", "id": id,
        "url": format!("http://example.org/fhir/StructureDefinition/{id}"),
        "baseDefinition": base})
}

#[test]
fn reads_conformance_resources_and_skips_examples() {
    let bytes = tgz(&[
        manifest(
            "example.core",
            "1.0.0",
            json!({"hl7.fhir.r4.core": "4.0.1"}),
        ),
        (
            "package/StructureDefinition-a.json",
            json_bytes({
                let mut a = sd("a", "http://hl7.org/fhir/StructureDefinition/Patient");
                a["differential"] = json!({"element": [{"path": "Patient", "comment": ""}]});
                a
            }),
        ),
        (
            "package/Patient-ex.json",
            json_bytes(json!({"resourceType": "Patient", "id": "ex"})),
        ),
        (
            "package/example/CodeSystem-x.json",
            json_bytes(json!({"resourceType": "CodeSystem", "url": "http://x"})),
        ),
        ("package/.index.json", b"{}".to_vec()),
    ]);
    let p = read(&bytes).unwrap();
    assert_eq!(p.reference(), "example.core#1.0.0");
    assert_eq!(p.resources.len(), 1);
    assert_eq!(p.skipped, 1);
    assert_eq!(p.emptied, 1);
    assert_eq!(p.resources[0]["version"], "1.0.0", "the package's version");
    assert_eq!(
        p.resources[0]["differential"]["element"][0],
        json!({"path": "Patient"})
    );
    assert!(needs(&p).is_empty());
}

#[test]
fn refuses_what_is_not_an_r4_package() {
    assert!(read(b"not gzip").is_err());
    let no_manifest = tgz(&[("package/x.json", b"{}".to_vec())]);
    assert!(read(&no_manifest).unwrap_err().contains("package.json"));
    let r5 = tgz(&[(
        "package/package.json",
        json_bytes(json!({"name": "x.r5", "version": "1.0.0", "fhirVersions": ["5.0.0"]})),
    )]);
    assert!(read(&r5).unwrap_err().contains("not R4"));
    let bad_name = tgz(&[(
        "package/package.json",
        json_bytes(json!({"name": "../etc", "version": "1"})),
    )]);
    assert!(read(&bad_name).unwrap_err().contains("not a package name"));
    let no_url = tgz(&[
        manifest("x", "1", json!({})),
        (
            "package/ValueSet-v.json",
            json_bytes(json!({"resourceType": "ValueSet"})),
        ),
    ]);
    assert!(
        read(&no_url)
            .unwrap_err()
            .contains("without a canonical url")
    );
    let not_json = tgz(&[
        manifest("x", "1", json!({})),
        ("package/ValueSet-v.json", b"{".to_vec()),
    ]);
    assert!(read(&not_json).unwrap_err().contains("not JSON"));
}

#[test]
fn orders_by_dependencies_and_names_what_is_missing() {
    let pkg = |name: &str, deps: &[(&str, &str)]| Package {
        name: name.into(),
        version: "1.0.0".into(),
        canonical: None,
        fhir_versions: vec![],
        dependencies: deps
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        resources: vec![],
        skipped: 0,
        emptied: 0,
    };
    let new = vec![
        pkg("clins", &[("core", "1.0.0"), (R4_CORE, "4.0.1")]),
        pkg("core", &[(R4_CORE, "4.0.1")]),
    ];
    let none = BTreeSet::new();
    assert_eq!(install_order(&new, &none).unwrap(), vec![1, 0]);
    let err = install_order(&new[..1], &none).unwrap_err();
    assert!(err.contains("clins#1.0.0 needs core#1.0.0"), "{err}");
    let installed = BTreeSet::from([("core".to_string(), "1.0.0".to_string())]);
    assert_eq!(install_order(&new[..1], &installed).unwrap(), vec![0]);
    let other = BTreeSet::from([("core".to_string(), "0.9.0".to_string())]);
    assert!(install_order(&new[..1], &other).is_err());
    let cycle = vec![pkg("a", &[("b", "1.0.0")]), pkg("b", &[("a", "1.0.0")])];
    assert!(install_order(&cycle, &none).unwrap_err().contains("cycle"));
}

#[test]
fn needs_names_foreign_base_definitions_and_value_sets() {
    let p = Package {
        name: "x".into(),
        version: "1".into(),
        canonical: None,
        fhir_versions: vec![],
        dependencies: BTreeMap::new(),
        resources: vec![
            sd("a", "http://hl7.org/fhir/StructureDefinition/Patient"),
            sd("b", "http://example.org/fhir/StructureDefinition/a"),
            sd(
                "c",
                "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient",
            ),
            json!({"resourceType": "ValueSet", "url": "http://x/vs",
                "compose": {"include": [{"valueSet": ["http://jpfhir.jp/fhir/core/ValueSet/v|1.1.2",
                    "http://hl7.org/fhir/ValueSet/administrative-gender"]}]}}),
        ],
        skipped: 0,
        emptied: 0,
    };
    assert_eq!(
        needs(&p).into_iter().collect::<Vec<_>>(),
        vec![
            "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient".to_string(),
            "http://jpfhir.jp/fhir/core/ValueSet/v|1.1.2".to_string(),
        ]
    );
}

fn shared() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/jp");
    d.is_dir().then_some(d)
}

#[test]
fn the_japanese_packages_read_and_clins_builds_on_jp_core() {
    let Some(dir) = shared() else {
        println!(
            "SKIPPED the_japanese_packages_read_and_clins_builds_on_jp_core: ../shared is absent"
        );
        return;
    };
    let load = |f: &str| read(&std::fs::read(dir.join(f)).unwrap()).unwrap();
    let core = load("jp-core.r4-1.1.2.tgz");
    assert_eq!(core.reference(), "jp-core.r4#1.1.2");
    assert_eq!(
        core.resources
            .iter()
            .filter(|r| r["resourceType"] == "StructureDefinition")
            .count(),
        89
    );
    assert!(core.skipped > 0, "examples are not installed");
    let clins = load("jp-clins.r4-1.5.2.tgz");
    let needed = needs(&clins);
    assert!(
        needed
            .iter()
            .any(|c| c.starts_with("http://jpfhir.jp/fhir/core/StructureDefinition/")),
        "{needed:?}"
    );
    // Everything JP-CLINS builds on that is not its own is JP Core's (or the R4 base).
    let core_urls: BTreeSet<&str> = core
        .resources
        .iter()
        .filter_map(|r| r["url"].as_str())
        .collect();
    let outside: Vec<&String> = needed
        .iter()
        .filter(|c| !core_urls.contains(c.split('|').next().unwrap()))
        .collect();
    assert!(
        outside.is_empty(),
        "JP-CLINS needs outside JP Core: {outside:?}"
    );
    let check = load("jp-eCheckupReport.r4.tgz");
    assert!(
        check
            .resources
            .iter()
            .any(|r| r["resourceType"] == "CodeSystem")
    );
}
