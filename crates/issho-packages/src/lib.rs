//! FHIR packages — the npm format in which HL7 publishes the specification and JAMI JP Core,
//! JP-CLINS and eCheckupReport: a gzipped tar whose `package/` folder holds `package.json`
//! (name, version, canonical, FHIR versions, dependencies) and one resource per JSON file.
//!
//! [`read`] takes one apart (within size limits, so a hostile file cannot exhaust memory),
//! keeping the conformance resources issho installs ([`CONFORMANCE`]); [`install_order`]
//! orders several by their dependencies; [`needs`] lists the canonical URLs a package's
//! profiles are built on, which must be installed (or be the R4 base) before it is.

use flate2::read::GzDecoder;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// The resource types a package contributes to the server.
pub const CONFORMANCE: [&str; 6] = [
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "NamingSystem",
    "SearchParameter",
    "ConceptMap",
];

/// The R4 specification's own package, which issho has built in (its definitions are the
/// tables of issho-model): a dependency on it is always met.
pub const R4_CORE: &str = "hl7.fhir.r4.core";

/// The canonical URLs of the R4 specification's definitions (built in).
pub const R4_BASE: &str = "http://hl7.org/fhir/";

/// The tag system that marks a resource with the package it came from (`code`
/// `name#version`).
pub const PACKAGE_TAG: &str = "urn:issho:package";

/// Limits on what is read: the whole package unpacked, and one file.
pub const MAX_TOTAL: u64 = 512 << 20;
pub const MAX_FILE: u64 = 64 << 20;

/// One package, read.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub canonical: Option<String>,
    pub fhir_versions: Vec<String>,
    /// Package name → version, as `package.json` states them.
    pub dependencies: BTreeMap<String, String>,
    /// The conformance resources, in file name order (those without a `version` get the
    /// package's).
    pub resources: Vec<Value>,
    /// Other resources in the package (examples), not installed.
    pub skipped: usize,
    /// Empty strings dropped from the resources (R4 forbids them; published packages —
    /// JP Core 1.1.2's `comment`s — have some, and they carry nothing).
    pub emptied: usize,
}

impl Package {
    /// `name#version`, the package's reference as FHIR tooling writes it.
    pub fn reference(&self) -> String {
        format!("{}#{}", self.name, self.version)
    }

    /// The id of the record of this package once installed (see [`Package::record`]).
    pub fn record_id(&self) -> String {
        let mut id: String = format!("package-{}-{}", self.name, self.version)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        id.truncate(64);
        id
    }

    /// The record issho keeps of an installed package: an ImplementationGuide made from
    /// `package.json` (`packageId`, `version`, `dependsOn`), tagged [`PACKAGE_TAG`]. (The
    /// guides that packages carry name other package ids and dependencies that are not
    /// published with them — JP-CLINS's names `clinical-information-sharing` — so
    /// issho's record follows the manifest, which is what installation checked.)
    pub fn record(&self) -> Value {
        let computable: String = self
            .name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut cs = w.chars();
                cs.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let depends: Vec<Value> = self
            .dependencies
            .iter()
            .map(|(d, v)| {
                let uri = if d == R4_CORE {
                    "http://hl7.org/fhir".to_string()
                } else {
                    package_uri(d, v)
                };
                serde_json::json!({"uri": uri, "packageId": d, "version": v})
            })
            .collect();
        let mut ig = serde_json::json!({
            "resourceType": "ImplementationGuide",
            "id": self.record_id(),
            "meta": {"tag": [{"system": PACKAGE_TAG, "code": self.reference()}]},
            "url": package_uri(&self.name, &self.version),
            "version": self.version,
            "name": format!("Package{computable}"),
            "title": format!("FHIR package {}", self.reference()),
            "status": "active",
            "packageId": self.name,
            "fhirVersion": ["4.0.1"],
        });
        if !depends.is_empty() {
            ig["dependsOn"] = Value::Array(depends);
        }
        if let Some(c) = &self.canonical {
            ig["description"] = Value::String(format!("Canonical base: {c}"));
        }
        ig
    }
}

/// The URI issho gives a package (`urn:issho:package:NAME:VERSION`; no `#`, which canonical
/// URLs must not contain).
pub fn package_uri(name: &str, version: &str) -> String {
    format!("urn:issho:package:{name}:{version}")
}

/// A name as FHIR packages spell them: letters (JAMI's `jp-eCSCLINS.r4` has capitals),
/// digits, `.`, `-`, `_`, not starting with a dot.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 214
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// Reads a package from the bytes of its `.tgz` file.
pub fn read(bytes: &[u8]) -> Result<Package, String> {
    read_from(GzDecoder::new(bytes))
}

/// Reads a package from a stream of its gzipped tar bytes.
pub fn read_from(gz: impl Read) -> Result<Package, String> {
    let mut archive = tar::Archive::new(gz);
    let mut manifest: Option<Value> = None;
    let mut files: BTreeMap<String, Value> = BTreeMap::new();
    let mut skipped = 0;
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a gzipped tar file: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a gzipped tar file: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| format!("a file name in the package is unreadable: {e}"))?
            .to_string_lossy()
            .into_owned();
        // Only `package/NAME.json` (examples live in sub-folders such as package/example/).
        let Some(name) = path.strip_prefix("package/") else {
            continue;
        };
        if name.contains('/') || !name.ends_with(".json") || name.starts_with('.') {
            continue;
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > MAX_FILE {
            return Err(format!("{path} is larger than {} MB", MAX_FILE >> 20));
        }
        total += size;
        if total > MAX_TOTAL {
            return Err(format!(
                "the package unpacks to more than {} MB",
                MAX_TOTAL >> 20
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(MAX_FILE)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{path}: {e}"))?;
        let v: Value =
            serde_json::from_slice(&buf).map_err(|e| format!("{path} is not JSON: {e}"))?;
        if name == "package.json" {
            manifest = Some(v);
        } else {
            // Only conformance resources are kept (examples are counted and dropped at once,
            // so that memory holds what is installed, not the whole package).
            if v["resourceType"]
                .as_str()
                .is_some_and(|t| CONFORMANCE.contains(&t))
            {
                files.insert(name.to_string(), v);
            } else {
                skipped += 1;
            }
        }
    }
    let m = manifest.ok_or("no package/package.json: not a FHIR package")?;
    let name = m["name"].as_str().unwrap_or_default().to_string();
    let version = m["version"].as_str().unwrap_or_default().to_string();
    if !valid_name(&name) {
        return Err(format!("package.json: '{name}' is not a package name"));
    }
    if !valid_version(&version) {
        return Err(format!(
            "package.json: '{version}' is not a package version"
        ));
    }
    let fhir_versions: Vec<String> = ["fhirVersions", "fhir-version-list"]
        .iter()
        .flat_map(|k| m[*k].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if !fhir_versions.is_empty() && !fhir_versions.iter().any(|v| v.starts_with("4.0")) {
        return Err(format!(
            "{name}#{version} is for FHIR {}, not R4 (4.0.1)",
            fhir_versions.join(", ")
        ));
    }
    let mut dependencies = BTreeMap::new();
    if let Some(d) = m["dependencies"].as_object() {
        for (k, v) in d {
            let v = v.as_str().unwrap_or_default();
            if !valid_name(k) || !valid_version(v) {
                return Err(format!("package.json: dependency '{k}' '{v}' is not valid"));
            }
            dependencies.insert(k.clone(), v.to_string());
        }
    }
    let mut resources = Vec::new();
    let mut emptied = 0;
    for (file, mut v) in files {
        let rt = v["resourceType"].as_str().unwrap_or_default().to_string();
        let rt = rt.as_str();
        if rt != "NamingSystem" && v["url"].as_str().is_none_or(str::is_empty) {
            return Err(format!("{file}: a {rt} without a canonical url"));
        }
        emptied += drop_empty_strings(&mut v);
        // A definition without a version is the package's version (JP Core 1.1.2 states
        // none): so every installed definition has a canonical `url|version`.
        if rt != "NamingSystem" && v.get("version").is_none() {
            v["version"] = Value::String(version.clone());
        }
        resources.push(v);
    }
    Ok(Package {
        name,
        version,
        canonical: m["canonical"].as_str().map(str::to_string),
        fhir_versions,
        dependencies,
        resources,
        skipped,
        emptied,
    })
}

/// Removes the properties whose value is an empty string (at any depth); how many.
fn drop_empty_strings(v: &mut Value) -> usize {
    match v {
        Value::Object(o) => {
            let before = o.len();
            o.retain(|_, x| x.as_str() != Some(""));
            let mut n = before - o.len();
            for x in o.values_mut() {
                n += drop_empty_strings(x);
            }
            n
        }
        Value::Array(a) => a.iter_mut().map(drop_empty_strings).sum(),
        _ => 0,
    }
}

/// The order in which to install `new` (indexes into it) given the packages `installed`
/// (name, version): every dependency is the R4 core, installed in that version, or one of
/// `new`. Errors name what is missing, or a cycle.
pub fn install_order(
    new: &[Package],
    installed: &BTreeSet<(String, String)>,
) -> Result<Vec<usize>, String> {
    let mut missing = Vec::new();
    for p in new {
        for (d, v) in &p.dependencies {
            let met = (d == R4_CORE && v.starts_with("4.0"))
                || installed.contains(&(d.clone(), v.clone()))
                || new.iter().any(|q| &q.name == d && &q.version == v);
            if !met {
                missing.push(format!("{} needs {d}#{v}", p.reference()));
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "install the packages it depends on first (or with it): {}",
            missing.join("; ")
        ));
    }
    let mut order = Vec::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    while order.len() < new.len() {
        let ready = (0..new.len()).find(|&i| {
            !done.contains(&i)
                && new[i].dependencies.iter().all(|(d, v)| {
                    !new.iter()
                        .enumerate()
                        .any(|(j, q)| &q.name == d && &q.version == v && !done.contains(&j))
                })
        });
        match ready {
            Some(i) => {
                done.insert(i);
                order.push(i);
            }
            None => return Err("the packages depend on each other in a cycle".into()),
        }
    }
    Ok(order)
}

/// The canonical URLs (`url` or `url|version`) the package's profiles and value sets are
/// built on that are neither the R4 base nor in the package itself: the base definitions of
/// its StructureDefinitions and the value sets its ValueSets import.
pub fn needs(p: &Package) -> BTreeSet<String> {
    let own: BTreeSet<&str> = p
        .resources
        .iter()
        .filter_map(|r| r["url"].as_str())
        .collect();
    let mut out = BTreeSet::new();
    let mut need = |c: &str| {
        let url = c.split('|').next().unwrap_or(c);
        if !url.starts_with(R4_BASE) && !own.contains(url) {
            out.insert(c.to_string());
        }
    };
    for r in &p.resources {
        match r["resourceType"].as_str() {
            Some("StructureDefinition") => {
                if let Some(b) = r["baseDefinition"].as_str() {
                    need(b);
                }
            }
            Some("ValueSet") => {
                for part in ["include", "exclude"] {
                    for inc in r["compose"][part].as_array().into_iter().flatten() {
                        for vs in inc["valueSet"].as_array().into_iter().flatten() {
                            if let Some(c) = vs.as_str() {
                                need(c);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
