//! Profile validation on writes and `$validate` (issho-profiles over the store): a resource is
//! checked against each installed profile in its `meta.profile`, the profiles the deployment
//! requires for its type (`EngineConfig::required_profiles`), and the one `$validate` is asked
//! for. A profile that is not installed is a warning, or an error under
//! `EngineConfig::unknown_profiles_are_errors`. The R4 base definitions are looked up only as
//! the base of a snapshot to generate: the structural validation (issho-model) is theirs.
//!
//! Indexed profiles are kept by (row, version), as code systems are; which urls are not
//! installed is remembered for 30 seconds (or until a StructureDefinition is written here),
//! so that writes naming profiles nobody installed cost no store lookup.

use crate::terminology::StoreSource;
use crate::*;
use issho_profiles::Profile;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many indexed profiles are kept.
const CACHED_PROFILES: usize = 256;
/// How long a url is remembered as not installed.
const ABSENT_FOR: Duration = Duration::from_secs(30);

/// A profile found by its url: when, and the conformance generation then.
type Found = (Arc<Profile>, Instant, u64);

/// Indexed profiles by (row, version), and the urls found not installed.
#[derive(Default)]
pub(crate) struct ProfileCache {
    indexed: Mutex<HashMap<(i64, u64), Arc<Profile>>>,
    /// url → (when found absent, the conformance generation then).
    absent: Mutex<HashMap<String, (Instant, u64)>>,
    /// url → (the profile, when found, the generation then): no store lookup while fresh.
    found: Mutex<HashMap<String, Found>>,
    /// Value set expansions across validations, and the generation they were made in.
    expansions: issho_profiles::Expansions,
    expansions_of: Mutex<(u64, Option<Instant>)>,
}

/// StructureDefinitions read through a snapshot.
struct StoreDefinitions<'a> {
    src: StoreSource<'a>,
    cache: &'a ProfileCache,
    generation: u64,
}

impl issho_profiles::Definitions for StoreDefinitions<'_> {
    fn expansions(&self) -> Option<&issho_profiles::Expansions> {
        // Kept while no conformance resource was written here, at most ABSENT_FOR.
        if let Ok(mut of) = self.cache.expansions_of.lock() {
            let stale = of.0 != self.generation || of.1.is_none_or(|t| t.elapsed() >= ABSENT_FOR);
            if stale {
                if let Ok(mut m) = self.cache.expansions.lock() {
                    m.clear();
                }
                *of = (self.generation, Some(Instant::now()));
            }
        }
        Some(&self.cache.expansions)
    }

    fn profile(&self, url: &str) -> Option<Arc<Profile>> {
        if let Ok(f) = self.cache.found.lock()
            && let Some((p, when, generation)) = f.get(url)
            && when.elapsed() < ABSENT_FOR
            && *generation == self.generation
        {
            return Some(p.clone());
        }
        if let Ok(a) = self.cache.absent.lock()
            && let Some((when, generation)) = a.get(url)
            && when.elapsed() < ABSENT_FOR
            && *generation == self.generation
        {
            return None;
        }
        let (u, v) = match url.split_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (url, None),
        };
        let Some(s) = self.src.stored_by_url("StructureDefinition", u, v) else {
            if let Ok(mut a) = self.cache.absent.lock() {
                if a.len() > 10_000 {
                    a.clear();
                }
                a.insert(url.to_string(), (Instant::now(), self.generation));
            }
            return None;
        };
        let key = (s.rid, s.version);
        let kept = self
            .cache
            .indexed
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        let p = match kept {
            Some(p) => p,
            None => {
                let p = Arc::new(Profile::index(&s.json()?, self).ok()?);
                if let Ok(mut m) = self.cache.indexed.lock() {
                    if m.len() >= CACHED_PROFILES {
                        m.clear();
                    }
                    m.insert(key, p.clone());
                }
                p
            }
        };
        if let Ok(mut f) = self.cache.found.lock() {
            if f.len() >= CACHED_PROFILES {
                f.clear();
            }
            f.insert(
                url.to_string(),
                (p.clone(), Instant::now(), self.generation),
            );
        }
        Some(p)
    }
}

fn is_base(url: &str) -> bool {
    url.starts_with("http://hl7.org/fhir/StructureDefinition/")
}

impl Engine {
    /// The StructureDefinitions of `r`, indexed through the engine's caches.
    fn definitions<'a>(&'a self, r: &'a dyn issho_store::StoreRead) -> StoreDefinitions<'a> {
        StoreDefinitions {
            src: StoreSource {
                r,
                cache: Some(&self.code_systems),
            },
            cache: &self.profiles,
            generation: self.indexer.conformance.load(Ordering::SeqCst),
        }
    }

    /// The profile issues of `resource`: against each installed profile of its `meta.profile`,
    /// the deployment's required profiles for its type, and `also` (asked for by `$validate`:
    /// an error when not installed).
    pub(crate) fn profile_issues(
        &self,
        resource: &Value,
        also: Option<&str>,
    ) -> Result<Vec<Issue>> {
        let rt = resource["resourceType"].as_str().unwrap_or_default();
        let mut wanted: Vec<(String, bool)> = resource["meta"]["profile"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|u| !is_base(u))
            .map(|u| (u.to_string(), false))
            .collect();
        for (t, u) in &self.config.required_profiles {
            if t == rt && !wanted.iter().any(|(w, _)| w == u) {
                wanted.push((u.clone(), true));
            }
        }
        if let Some(u) = also.filter(|u| !is_base(u))
            && !wanted.iter().any(|(w, _)| w == u)
        {
            wanted.push((u.to_string(), true));
        }
        // A Bundle's entries name their own profiles (issho-profiles follows them).
        let inner = rt == "Bundle" || resource.get("contained").is_some();
        if wanted.is_empty() && !inner {
            return Ok(Vec::new());
        }
        let permit = self.system_permit("profiles")?;
        let r = self.store.reader(&permit)?;
        let defs = self.definitions(&*r);
        let terminology = StoreSource {
            r: &*r,
            cache: Some(&self.code_systems),
        };
        let mut out = Vec::new();
        for (url, must) in &wanted {
            if issho_profiles::Definitions::profile(&defs, url).is_none() {
                let msg = format!(
                    "the profile {url} is not installed here: not checked (issho package install)"
                );
                out.push(if *must || self.config.unknown_profiles_are_errors {
                    Issue::error(IssueType::NotFound, msg)
                } else {
                    Issue::warning(IssueType::NotFound, msg)
                });
                continue;
            }
            out.extend(issho_profiles::validate(resource, url, &defs, &terminology));
        }
        if wanted.is_empty() && inner {
            // No profile of its own: its entries' and contained resources' profiles.
            out.extend(issho_profiles::validate_inner(
                resource,
                &defs,
                &terminology,
            ));
        }
        Ok(out)
    }

    /// `resource` as a write would store it, for its profiles: with `meta.lastUpdated` and
    /// `meta.versionId` (set by the server; profiles may require them) and the profiles the
    /// deployment requires of its type named in `meta.profile`.
    pub(crate) fn as_stored(&self, resource: &Value) -> Value {
        let rt = resource["resourceType"].as_str().unwrap_or_default();
        let required: Vec<&str> = self
            .config
            .required_profiles
            .iter()
            .filter(|(t, _)| t == rt)
            .map(|(_, u)| u.as_str())
            .collect();
        let mut stored = resource.clone();
        if let Some(o) = stored.as_object_mut() {
            let meta = o.entry("meta").or_insert_with(|| serde_json::json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.entry("lastUpdated").or_insert_with(|| {
                    Value::String(issho_model::instant::format_instant(
                        issho_store::now_micros(),
                    ))
                });
                m.entry("versionId")
                    .or_insert_with(|| Value::String("1".into()));
                let profiles = m.entry("profile").or_insert_with(|| serde_json::json!([]));
                if let Some(list) = profiles.as_array_mut() {
                    for u in required {
                        if !list.iter().any(|x| x == u) {
                            list.push(Value::String(u.to_string()));
                        }
                    }
                    if list.is_empty() {
                        m.remove("profile");
                    }
                }
            }
        }
        stored
    }

    /// Refuses (422) a write whose profile issues hold an error; its warnings otherwise. The
    /// resource is checked as it will be stored: with `meta.lastUpdated` and
    /// `meta.versionId`, which the server sets (profiles may require them), and naming in
    /// `meta.profile` the profiles the deployment requires of its type.
    pub(crate) fn check_profiles(&self, resource: &Value) -> Result<Vec<Issue>> {
        let rt = resource["resourceType"].as_str().unwrap_or_default();
        let required: Vec<&str> = self
            .config
            .required_profiles
            .iter()
            .filter(|(t, _)| t == rt)
            .map(|(_, u)| u.as_str())
            .collect();
        let named = resource["meta"]["profile"]
            .as_array()
            .is_some_and(|p| !p.is_empty());
        if !named && required.is_empty() && rt != "Bundle" && resource.get("contained").is_none() {
            return Ok(Vec::new());
        }
        let stored = self.as_stored(resource);
        let issues = self.profile_issues(&stored, None)?;
        if issues.iter().any(Issue::is_error) {
            let mut issues: Vec<Issue> = issues.into_iter().filter(Issue::is_error).collect();
            issues.truncate(50);
            return Err(FhirError {
                status: 422,
                issues,
            });
        }
        Ok(issues
            .into_iter()
            .filter(|i| i.severity == issho_model::Severity::Warning)
            .collect())
    }
}

/// What `$snapshot` generates the snapshot of.
pub enum SnapshotOf {
    /// The stored StructureDefinition with this id (instance level).
    Id(String),
    /// The installed definition with this canonical url (`url[|version]`).
    Url(String),
    /// A StructureDefinition given in the request.
    Definition(Value),
}

impl Engine {
    /// `StructureDefinition/$snapshot`: the definition with its snapshot generated from its
    /// differential and its base (installed definitions, or R4's own types), whether or not
    /// it was published with one. Through the gate (reading StructureDefinitions), audited.
    pub fn snapshot_operation(&self, ctx: &AccessContext, of: SnapshotOf) -> Result<Value> {
        let target = match &of {
            SnapshotOf::Id(id) => Some(format!("StructureDefinition/{id}")),
            _ => None,
        };
        let label = match &target {
            Some(t) => format!("{t}/$snapshot"),
            None => "StructureDefinition/$snapshot".to_string(),
        };
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            target,
            Some(label),
            || self.snapshot_unaudited(ctx, of),
            |_, _| {},
        )
    }

    fn snapshot_unaudited(&self, ctx: &AccessContext, of: SnapshotOf) -> Result<Value> {
        let r = self.snapshot(ctx, Action::Read, Some("StructureDefinition"))?;
        let defs = self.definitions(&*r);
        let mut sd = match of {
            SnapshotOf::Id(id) => r
                .current("StructureDefinition", &id)?
                .filter(|s| !s.is_deleted())
                .and_then(|s| s.json())
                .ok_or_else(|| {
                    FhirError::not_found(format!("StructureDefinition/{id} is not known"))
                })?,
            SnapshotOf::Url(url) => {
                let (u, v) = match url.split_once('|') {
                    Some((u, v)) => (u, Some(v)),
                    None => (url.as_str(), None),
                };
                defs.src
                    .stored_by_url("StructureDefinition", u, v)
                    .and_then(|s| s.json())
                    .ok_or_else(|| {
                        FhirError::not_found(format!("no StructureDefinition {url} is installed"))
                    })?
            }
            SnapshotOf::Definition(d) => {
                if d["resourceType"] != "StructureDefinition" {
                    return Err(FhirError::bad_request(
                        "the definition parameter holds a StructureDefinition",
                    ));
                }
                d
            }
        };
        if let Some(o) = sd.as_object_mut() {
            o.remove("snapshot");
        }
        let elements = issho_profiles::snapshot_elements(&sd, &defs).map_err(|e| {
            FhirError::new(
                422,
                IssueType::Processing,
                format!("no snapshot can be generated: {e}"),
            )
        })?;
        sd["snapshot"] = serde_json::json!({ "element": elements });
        Ok(sd)
    }
}
