//! FHIR packages installed into the server (`issho package install`, `POST
//! [base]/$install-package`): their conformance resources become ordinary resources —
//! readable and searchable, versioned by canonical URL and version, SearchParameters joining
//! the registry through the custom-parameter machinery — written in one transaction with the
//! package's record (an ImplementationGuide tagged `urn:issho:package`, see
//! issho-packages). Dependencies are checked by package (`package.json`) and by canonical
//! URL (what profiles and value sets build on must be installed, or come with them).
//! Administrators only; the running server needs no restart.

use crate::*;
use issho_packages::{PACKAGE_TAG, Package, install_order, needs};
use issho_store::StoreRead;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// The records (ImplementationGuides) of the installed packages.
fn records(r: &dyn StoreRead) -> Result<Vec<Value>> {
    let q = issho_search::parse(
        Some("ImplementationGuide"),
        &[("_tag".into(), format!("{PACKAGE_TAG}|"))],
        true,
    )
    .map_err(|issues| FhirError {
        status: 500,
        issues,
    })?;
    let rids = r.search(&q)?;
    let mut out: Vec<Value> = r
        .current_by_rids(&rids)?
        .into_iter()
        .filter_map(|s| s.json())
        .filter(|v| v["packageId"].is_string())
        .collect();
    out.sort_by(|a, b| {
        (a["packageId"].as_str(), a["version"].as_str())
            .cmp(&(b["packageId"].as_str(), b["version"].as_str()))
    });
    Ok(out)
}

/// The current resources of `rt` with this canonical `url` (and `version`: exactly it, or
/// none when `None`).
pub(crate) fn by_canonical(
    r: &dyn StoreRead,
    rt: &str,
    url: &str,
    version: Option<&str>,
) -> Result<Vec<Stored>> {
    let mut pairs = vec![("url".to_string(), url.to_string())];
    if let Some(v) = version {
        pairs.push(("version".into(), v.to_string()));
    }
    let q = issho_search::parse(Some(rt), &pairs, true).map_err(|issues| FhirError {
        status: 400,
        issues,
    })?;
    Ok(r.current_by_rids(&r.search(&q)?)?
        .into_iter()
        .filter(|s| {
            s.json().is_some_and(|v| {
                v["url"].as_str() == Some(url)
                    && version.is_none_or(|x| v["version"].as_str() == Some(x))
            })
        })
        .collect())
}

/// A short stable hash (FNV-1a) for ids made unique.
pub(crate) fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// `s` with every character an id may not hold turned into `-`.
pub(crate) fn id_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub(crate) fn clip(id: &str, n: usize) -> String {
    id.chars().take(n).collect()
}

/// The id a package resource is installed under: the one it already has in this server
/// (the same canonical URL and version, or — for a NamingSystem — the same id from the same
/// package), else its own id when free, else its id with the version, else with a hash.
fn install_id(
    r: &dyn StoreRead,
    pkg: &Package,
    res: &Value,
    used: &HashSet<(String, String)>,
) -> Result<String> {
    let rt = res["resourceType"].as_str().unwrap_or_default();
    let version = res["version"].as_str();
    let free = |id: &String| !used.contains(&(rt.to_string(), id.clone()));
    if let Some(url) = res["url"].as_str() {
        for s in by_canonical(r, rt, url, version)? {
            let same_version = s.json().is_some_and(|v| v["version"].as_str() == version);
            if same_version && free(&s.id) {
                return Ok(s.id);
            }
        }
    }
    // Its own id, made valid (R4's examples package has ids over 64 characters).
    let own: String = clip(&id_chars(res["id"].as_str().unwrap_or("")), 64);
    let own = if own.is_empty() {
        "resource"
    } else {
        own.as_str()
    };
    let key = format!(
        "{}|{}",
        res["url"].as_str().unwrap_or(own),
        version.unwrap_or("")
    );
    let candidates = [
        own.to_string(),
        format!("{}-{}", clip(own, 40), version.unwrap_or(&pkg.version)),
        format!("{}-{}", clip(own, 55), short_hash(&key)),
    ];
    for c in candidates {
        let c = clip(&id_chars(&c), 64);
        if !free(&c) {
            continue;
        }
        match r
            .current(rt, &c)?
            .filter(|s| !s.is_deleted())
            .and_then(|s| s.json())
        {
            None => return Ok(c),
            // A NamingSystem (no url) installed before by the same package.
            Some(v)
                if rt == "NamingSystem"
                    && v["meta"]["tag"].as_array().into_iter().flatten().any(|t| {
                        t["system"] == PACKAGE_TAG
                            && t["code"]
                                .as_str()
                                .is_some_and(|c| c.starts_with(&format!("{}#", pkg.name)))
                    }) =>
            {
                return Ok(c);
            }
            Some(_) => {}
        }
    }
    Err(FhirError::new(
        409,
        IssueType::Conflict,
        format!("{rt}/{own} of {} finds no free id", pkg.reference()),
    ))
}

/// The resource as installed: its id, and the package's tag beside its own tags.
fn as_installed(res: &Value, id: &str, pkg: &Package) -> Value {
    let mut body = res.clone();
    body["id"] = json!(id);
    let tag = json!({"system": PACKAGE_TAG, "code": pkg.reference()});
    let meta = body
        .as_object_mut()
        .map(|o| o.entry("meta").or_insert_with(|| json!({})));
    if let Some(Value::Object(m)) = meta {
        m.remove("versionId");
        m.remove("lastUpdated");
        match m.get_mut("tag").and_then(Value::as_array_mut) {
            Some(t) => {
                t.retain(|x| x["system"] != PACKAGE_TAG);
                t.push(tag);
            }
            None => {
                m.insert("tag".into(), json!([tag]));
            }
        }
    }
    body
}

/// The resources of a package less those left out (named `Type/id: why`).
fn installed_of(resources: &[Value], left_out: &[String]) -> Vec<Value> {
    resources
        .iter()
        .filter(|r| {
            let key = format!(
                "{}/{}:",
                r["resourceType"].as_str().unwrap_or("?"),
                r["id"].as_str().unwrap_or("?")
            );
            !left_out.iter().any(|l| l.starts_with(&key))
        })
        .cloned()
        .collect()
}

/// Counts by resource type, as text (`89 StructureDefinition, 37 ValueSet`).
fn counts(resources: &[Value]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for r in resources {
        *by.entry(r["resourceType"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    by.iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Engine {
    /// The installed packages: their records (ImplementationGuides), by package and version.
    pub fn installed_packages(&self, ctx: &AccessContext) -> Result<Vec<Value>> {
        let permit = self
            .gate
            .check(ctx, Action::Search, Some("ImplementationGuide"))?;
        let r = self.store.reader(&permit)?;
        records(&*r)
    }

    /// `POST [base]/$install-package`: installs the package whose `.tgz` bytes these are
    /// (administrators; read only once the caller may install).
    pub fn install_package_file(&self, ctx: &AccessContext, tgz: &[u8]) -> Result<Value> {
        self.gate.check(ctx, Action::Admin, None)?;
        let pkg = issho_packages::read(tgz).map_err(|e| {
            FhirError::bad_request(format!("the body is not a FHIR package (.tgz): {e}"))
        })?;
        self.install_packages(ctx, vec![pkg])
    }

    /// Installs these packages (administrators): checks their dependencies — by package
    /// and by canonical URL — then writes every conformance resource and each package's
    /// record in one transaction (nothing is written when anything fails). Installing a
    /// package again writes new versions of the same resources. Returns an OperationOutcome
    /// that names what was installed.
    pub fn install_packages(&self, ctx: &AccessContext, pkgs: Vec<Package>) -> Result<Value> {
        self.gate.check(ctx, Action::Admin, None)?;
        if pkgs.is_empty() {
            return Err(FhirError::bad_request("no package to install"));
        }
        let permit = self.system_permit("packages")?;
        let r = self.store.reader(&permit)?;
        let installed: BTreeSet<(String, String)> = records(&*r)?
            .iter()
            .filter_map(|v| {
                Some((
                    v["packageId"].as_str()?.to_string(),
                    v["version"].as_str()?.to_string(),
                ))
            })
            .collect();
        let order = install_order(&pkgs, &installed)
            .map_err(|e| FhirError::new(422, IssueType::BusinessRule, e))?;
        self.check_canonicals(&*r, &pkgs)?;
        let mut used: HashSet<(String, String)> = HashSet::new();
        let mut entries = Vec::new();
        let mut left_out: Vec<Vec<String>> = vec![Vec::new(); pkgs.len()];
        let mut regenerated: Vec<Vec<String>> = vec![Vec::new(); pkgs.len()];
        for &i in &order {
            let p = &pkgs[i];
            let mut all = p.resources.clone();
            all.push(p.record());
            for res in &all {
                let rt = res["resourceType"].as_str().unwrap_or_default().to_string();
                let id = if rt == "ImplementationGuide" {
                    p.record_id()
                } else {
                    install_id(&*r, p, res, &used)?
                };
                let mut body = as_installed(res, &id, p);
                // What this server would refuse is left out, and named: a published package
                // may carry invalid resources (R4's own examples package has some).
                let mut errors =
                    crate::check_resource(Some(&rt), &body, self.config.validate, true);
                errors.retain(Issue::is_error);
                // A profile whose published snapshot is what breaks the rules (JP Core 1.1.2's
                // MedicationAdministration profiles: empty definitions, sdf-3) is installed
                // with its differential; its snapshot is generated from that when used.
                if !errors.is_empty() && broken_snapshot_only(&body, &errors) {
                    let why = errors[0].diagnostics.clone();
                    if let Some(o) = body.as_object_mut() {
                        o.remove("snapshot");
                    }
                    errors = crate::check_resource(Some(&rt), &body, self.config.validate, true);
                    errors.retain(Issue::is_error);
                    if errors.is_empty() {
                        regenerated[i]
                            .push(format!("{rt}/{}: {why}", res["id"].as_str().unwrap_or("?")));
                    }
                }
                if let Some(e) = errors.first() {
                    left_out[i].push(format!(
                        "{rt}/{}: {}",
                        res["id"].as_str().unwrap_or("?"),
                        e.diagnostics
                    ));
                    continue;
                }
                used.insert((rt.clone(), id.clone()));
                entries.push(json!({
                    "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                    "resource": body,
                    "request": {"method": "PUT", "url": format!("{rt}/{id}")},
                }));
            }
        }
        drop(r);
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        self.process_bundle(ctx, bundle, None, Return::Minimal)?;
        let mut issues: Vec<Issue> = order
            .iter()
            .map(|&i| {
                let p = &pkgs[i];
                Issue::information(format!(
                    "installed {}: {} ({} other resources, examples, not installed{})",
                    p.reference(),
                    if p.resources.len() == left_out[i].len() {
                        "no conformance resources".to_string()
                    } else {
                        counts(&installed_of(&p.resources, &left_out[i]))
                    },
                    p.skipped,
                    if p.emptied > 0 {
                        format!("; {} empty strings, which R4 forbids, left out", p.emptied)
                    } else {
                        String::new()
                    }
                ))
            })
            .collect();
        for &i in &order {
            for why in &left_out[i] {
                issues.push(Issue::warning(
                    IssueType::Invalid,
                    format!("{}: left out, not valid: {why}", pkgs[i].reference()),
                ));
            }
            for why in &regenerated[i] {
                issues.push(Issue::warning(
                    IssueType::Invalid,
                    format!(
                        "{}: installed without its published snapshot, which is not valid \
                         (its snapshot is generated from its differential when used): {why}",
                        pkgs[i].reference()
                    ),
                ));
            }
        }
        Ok(issho_model::operation_outcome(&issues))
    }

    /// Every canonical URL a package builds on is the R4 base, in one of the packages, or
    /// installed (422 naming the missing ones).
    fn check_canonicals(&self, r: &dyn StoreRead, pkgs: &[Package]) -> Result<()> {
        let coming: BTreeSet<(String, Option<String>)> = pkgs
            .iter()
            .flat_map(|p| &p.resources)
            .filter_map(|v| {
                Some((
                    v["url"].as_str()?.to_string(),
                    v["version"].as_str().map(str::to_string),
                ))
            })
            .collect();
        let mut missing = Vec::new();
        for p in pkgs {
            for c in needs(p) {
                let (url, version) = match c.split_once('|') {
                    Some((u, v)) => (u.to_string(), Some(v.to_string())),
                    None => (c.clone(), None),
                };
                let here = coming
                    .iter()
                    .any(|(u, v)| *u == url && (version.is_none() || *v == version));
                let known = here
                    || ["StructureDefinition", "ValueSet"].iter().any(|rt| {
                        by_canonical(r, rt, &url, version.as_deref()).is_ok_and(|f| !f.is_empty())
                    });
                if !known {
                    missing.push(format!("{} builds on {c}", p.reference()));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let n = missing.len();
        missing.truncate(10);
        Err(FhirError::new(
            422,
            IssueType::BusinessRule,
            format!(
                "{n} definitions the packages build on are not installed (install the package that defines them first, or with them): {}{}",
                missing.join("; "),
                if n > 10 { "; …" } else { "" }
            ),
        ))
    }
}

/// A StructureDefinition with a differential whose errors are all in its snapshot.
fn broken_snapshot_only(body: &Value, errors: &[Issue]) -> bool {
    body["resourceType"] == "StructureDefinition"
        && body["differential"]["element"].is_array()
        && errors.iter().all(|e| {
            e.expression
                .as_deref()
                .is_some_and(|x| x.starts_with("StructureDefinition.snapshot"))
        })
}
