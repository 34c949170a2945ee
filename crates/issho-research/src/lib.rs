//! Secondary use of the lifelong record (issue 14): research projects, what each receives, and
//! how it is made safe to hand over.
//!
//! A [`Project`] is registered by the operator (`issho research add`) with its members (the
//! researcher users and research backend services that work for it), a secret made at
//! registration and a de-identification [`Profile`]. The access gate gives a member nothing but
//! de-identified exports of the persons whose research consent allows it; this crate makes
//! the de-identified copy of each resource ([`Project::deidentify`], `deid.rs`) and decides
//! which persons are released so that no combination of quasi-identifiers is rarer than the
//! profile's `k` ([`assess`], `kanon.rs`).
//!
//! Pseudonyms are HMAC-SHA-256 under the project's secret: within a project the same resource,
//! reference and person always get the same pseudonym; two projects get unrelated ones, and
//! nobody without the secret can compute them from an id.

mod deid;
mod kanon;
pub mod study;
mod walk;

pub use deid::{AGE_BAND, DATA_ABSENT_REASON, PERSON_SYSTEM, Today};
pub use kanon::{ClassReport, Report, assess};
pub use walk::NEVER_RELEASED;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a birth date leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BirthDate {
    /// Replaced by an age band at the export's date (extension [`AGE_BAND`]), ages from
    /// `top_age` on grouped into one band.
    #[default]
    AgeBand,
    /// The year only (ages from `top_age` on all given the year `top_age` years before the
    /// export).
    Year,
    /// Removed.
    Remove,
}

/// How an address leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AddressRule {
    /// The prefecture (`Address.state`) and country only.
    #[default]
    Prefecture,
    /// Removed.
    Remove,
}

/// A quasi-identifier: what, combined, could single a person out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Quasi {
    /// The age band (or birth year) as released.
    Age,
    /// `Patient.gender`.
    Gender,
    /// The prefecture as released.
    Prefecture,
}

/// A project's de-identification profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Profile {
    /// Dates of a person's record move by the same number of days, chosen per person (and
    /// project) between `-max_shift_days` and `+max_shift_days`: intervals are kept.
    pub max_shift_days: u32,
    pub birth_date: BirthDate,
    /// Width of an age band, years.
    pub age_band_years: u32,
    /// Ages from this on are one group ("90+").
    pub top_age: u32,
    pub address: AddressRule,
    /// Resource types not released to the project, beside those never released
    /// ([`NEVER_RELEASED`]: AuditEvent, Binary, Bundle, Consent, Endpoint, Person,
    /// Provenance, RelatedPerson, …).
    pub exclude_types: Vec<String>,
    /// The quasi-identifiers of the k-anonymity check, as released.
    pub quasi_identifiers: Vec<Quasi>,
    /// Persons whose combination of quasi-identifiers fewer than `k` released persons share
    /// are suppressed (left out of the export entirely).
    pub k: usize,
    /// l-diversity: classes whose persons show fewer than `l` distinct diagnoses
    /// (`Condition.code`) are reported, and suppressed with `suppress_below_l`.
    pub l: usize,
    pub suppress_below_l: bool,
    /// Resources are released in batches: an export holds only what was last changed before
    /// the latest boundary of this many months (counted from January; 6: January 1st and
    /// July 1st). Without batches, successive exports show the day each new resource
    /// appeared — and with it the person's date shift. 0: no batches (everything up to now).
    pub release_every_months: u32,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            max_shift_days: 90,
            birth_date: BirthDate::AgeBand,
            age_band_years: 10,
            top_age: 90,
            address: AddressRule::Prefecture,
            exclude_types: Vec::new(),
            quasi_identifiers: vec![Quasi::Age, Quasi::Gender, Quasi::Prefecture],
            k: 5,
            l: 2,
            suppress_below_l: false,
            release_every_months: 6,
        }
    }
}

impl Profile {
    /// Whether resources of `rt` may be released at all.
    pub fn releases(&self, rt: &str) -> bool {
        !NEVER_RELEASED.contains(&rt) && !self.exclude_types.iter().any(|t| t == rt)
    }

    fn check(&self) -> Result<(), String> {
        if self.age_band_years == 0 || self.age_band_years > 50 {
            return Err("age-band-years must be 1..=50".into());
        }
        if self.k == 0 {
            return Err("k must be at least 1".into());
        }
        if self.release_every_months > 0 && 12 % self.release_every_months != 0 {
            return Err("release-every-months must divide 12 (1, 2, 3, 4, 6 or 12) or be 0".into());
        }
        if self.max_shift_days > 3650 {
            return Err("max-shift-days must be at most 3650".into());
        }
        for t in &self.exclude_types {
            if !issho_model::r4().is_resource_type(t) {
                return Err(format!("exclude-types: '{t}' is not a resource type"));
            }
        }
        Ok(())
    }
}

/// A research project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// `[A-Za-z0-9-.]{1,64}`.
    pub id: String,
    pub title: String,
    /// Users (researchers) and client ids (research backend services) working for it.
    pub members: Vec<String>,
    /// The key of the project's pseudonyms (hex, 32 bytes). Never leaves the data directory.
    secret: String,
    pub profile: Profile,
    /// `YYYY-MM-DD`: the day ages are computed at (the registration day).
    #[serde(default)]
    pub as_of: Option<String>,
    /// Those who were members and are no longer: they get nothing at all (a research
    /// service taken off a project must not fall back to its ordinary scopes).
    #[serde(default)]
    pub former: Vec<String>,
}

impl Project {
    /// A new project with a fresh random secret.
    pub fn new(
        id: &str,
        title: &str,
        members: Vec<String>,
        profile: Profile,
    ) -> Result<Project, String> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return Err(format!(
                "'{id}' is not a project id ([A-Za-z0-9-.], 1 to 64)"
            ));
        }
        profile.check()?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for the secret: {e}"))?;
        let t = Today::now();
        Ok(Project {
            id: id.to_string(),
            title: title.to_string(),
            members,
            secret: hex(&key),
            profile,
            as_of: Some(format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)),
            former: Vec::new(),
        })
    }

    fn mac(&self, kind: &str, value: &str) -> [u8; 32] {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC takes keys of any length");
        m.update(kind.as_bytes());
        m.update(&[0x1f]);
        m.update(value.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The pseudonym of `value` (an id `Type/id`, a person, a URL) of `kind`: 32 hex digits.
    pub fn pseudonym(&self, kind: &str, value: &str) -> String {
        hex(&self.mac(kind, value)[..16])
    }

    /// The days a person's dates move, the same for every date of their record: whole weeks
    /// (a shift of days would move weekdays, and the weekdays clinics are closed would give it
    /// away), never none, within `max_shift_days`.
    pub fn shift_days(&self, person: &str) -> i64 {
        let weeks = i64::from(self.profile.max_shift_days / 7);
        if weeks == 0 {
            return 0;
        }
        let h = self.mac("shift", person);
        let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        // Never zero: a person whose dates did not move would have them all as they are.
        let k = (n % (2 * weeks as u64)) as i64;
        7 * if k < weeks { k - weeks } else { k - weeks + 1 }
    }

    /// The latest release boundary before `today` (`YYYY-MM-01T00:00:00Z`), when the profile
    /// releases in batches.
    pub fn release_boundary(&self, today: Today) -> Option<String> {
        let every = i64::from(self.profile.release_every_months);
        if every == 0 {
            return None;
        }
        let month = (today.year * 12 + i64::from(today.month) - 1) / every * every;
        Some(format!(
            "{:04}-{:02}-01T00:00:00Z",
            month / 12,
            month % 12 + 1
        ))
    }

    /// The date ages are computed at: the project's registration day (so that exports on
    /// different days do not show when a person moved to the next band), today if unknown.
    pub fn today(&self) -> Today {
        self.as_of
            .as_deref()
            .and_then(|s| {
                Some(Today {
                    year: s.get(..4)?.parse().ok()?,
                    month: s.get(5..7)?.parse().ok()?,
                    day: s.get(8..10)?.parse().ok()?,
                })
            })
            .unwrap_or_else(Today::now)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The projects of a deployment (`research/projects.json` in the data directory).
#[derive(Debug, Clone, Default)]
pub struct Projects {
    path: Option<PathBuf>,
    by_id: BTreeMap<String, Project>,
}

impl Projects {
    /// The registry of a data directory (empty when the file does not exist yet).
    pub fn open(data: &Path) -> Result<Projects, String> {
        let path = data.join("research").join("projects.json");
        let by_id = match std::fs::read(&path) {
            Ok(b) => {
                let list: Vec<Project> =
                    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?;
                let mut by_id = BTreeMap::new();
                for p in list {
                    p.profile
                        .check()
                        .map_err(|e| format!("{}: project {}: {e}", path.display(), p.id))?;
                    by_id.insert(p.id.clone(), p);
                }
                by_id
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut p = Projects {
            path: Some(path),
            by_id,
        };
        p.check_members()?;
        Ok(p)
    }

    /// Projects held in memory only (tests).
    pub fn in_memory(list: Vec<Project>) -> Result<Projects, String> {
        let mut p = Projects {
            path: None,
            by_id: list.into_iter().map(|p| (p.id.clone(), p)).collect(),
        };
        p.check_members()?;
        Ok(p)
    }

    /// A member works for one project only (its pseudonyms must not meet another's).
    fn check_members(&mut self) -> Result<(), String> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for p in self.by_id.values() {
            for m in &p.members {
                if let Some(other) = seen.insert(m, &p.id) {
                    return Err(format!(
                        "'{m}' is a member of both '{other}' and '{}'; a member works for one project",
                        p.id
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Project> {
        self.by_id.get(id)
    }

    pub fn list(&self) -> impl Iterator<Item = &Project> {
        self.by_id.values()
    }

    /// Member (user name or client id) → project id.
    pub fn membership(&self) -> std::collections::HashMap<String, String> {
        self.by_id
            .values()
            .flat_map(|p| p.members.iter().map(|m| (m.clone(), p.id.clone())))
            .collect()
    }

    /// Former members of any project who are no member now: the gate refuses them
    /// everything.
    pub fn former_members(&self) -> std::collections::HashSet<String> {
        let current = self.membership();
        self.by_id
            .values()
            .flat_map(|p| p.former.iter())
            .filter(|m| !current.contains_key(*m))
            .cloned()
            .collect()
    }

    /// Add a project, or replace its title, members and profile (its secret is kept: the
    /// pseudonyms it released stay valid), and save.
    pub fn put(&mut self, mut p: Project) -> Result<(), String> {
        p.profile.check()?;
        if let Some(old) = self.by_id.get(&p.id) {
            p.secret = old.secret.clone();
            p.as_of = old.as_of.clone();
            p.former = old.former.clone();
            for m in &old.members {
                if !p.members.contains(m) && !p.former.contains(m) {
                    p.former.push(m.clone());
                }
            }
            p.former.retain(|m| !p.members.contains(m));
        }
        let before = self.by_id.insert(p.id.clone(), p.clone());
        if let Err(e) = self.check_members() {
            match before {
                Some(b) => self.by_id.insert(b.id.clone(), b),
                None => self.by_id.remove(&p.id),
            };
            return Err(e);
        }
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().expect("research/");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let list: Vec<&Project> = self.by_id.values().collect();
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&list).map_err(|e| e.to_string())?;
        write_private(&tmp, &body).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Write a file only its owner may read (it holds the projects' secrets).
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str) -> Project {
        Project::new(id, "t", vec![], Profile::default()).unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_within_and_differ_across_projects() {
        let a = project("a");
        let b = project("b");
        assert_eq!(
            a.pseudonym("id", "Patient/1"),
            a.pseudonym("id", "Patient/1")
        );
        assert_ne!(
            a.pseudonym("id", "Patient/1"),
            a.pseudonym("id", "Patient/2")
        );
        assert_ne!(
            a.pseudonym("id", "Patient/1"),
            b.pseudonym("id", "Patient/1")
        );
        assert_ne!(a.pseudonym("id", "x"), a.pseudonym("person", "x"));
        assert_eq!(a.pseudonym("id", "Patient/1").len(), 32);
    }

    #[test]
    fn releases_come_in_batches() {
        let mut p = project("a");
        let t = |year, month, day| Today { year, month, day };
        assert_eq!(
            p.release_boundary(t(2026, 12, 4)).unwrap(),
            "2026-07-01T00:00:00Z"
        );
        assert_eq!(
            p.release_boundary(t(2026, 6, 30)).unwrap(),
            "2026-01-01T00:00:00Z"
        );
        p.profile.release_every_months = 3;
        assert_eq!(
            p.release_boundary(t(2026, 12, 4)).unwrap(),
            "2026-10-01T00:00:00Z"
        );
        p.profile.release_every_months = 0;
        assert!(p.release_boundary(t(2026, 12, 4)).is_none());
        p.profile.release_every_months = 5;
        assert!(p.profile.check().is_err());
    }

    #[test]
    fn shifts_stay_within_the_profile_and_vary() {
        let a = project("a");
        let shifts: std::collections::BTreeSet<i64> =
            (0..200).map(|i| a.shift_days(&format!("p{i}"))).collect();
        assert!(
            shifts
                .iter()
                .all(|d| d.abs() <= 90 && d % 7 == 0 && *d != 0)
        );
        assert!(shifts.contains(&-84) && shifts.contains(&84), "{shifts:?}");
        assert!(shifts.len() > 20, "{shifts:?}");
        assert_eq!(a.shift_days("p1"), a.shift_days("p1"));
    }

    #[test]
    fn projects_keep_their_secret_and_refuse_shared_members() {
        let dir = std::env::temp_dir().join(format!("issho-research-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut ps = Projects::open(&dir).unwrap();
        let p = Project::new("s1", "Study", vec!["r1".into()], Profile::default()).unwrap();
        ps.put(p.clone()).unwrap();
        let again = Projects::open(&dir).unwrap();
        let got = again.get("s1").unwrap();
        assert_eq!(
            got.pseudonym("id", "Patient/1"),
            p.pseudonym("id", "Patient/1")
        );
        // Replacing keeps the secret.
        let mut ps = again;
        let replaced =
            Project::new("s1", "Study 2", vec!["r1".into()], Profile::default()).unwrap();
        ps.put(replaced).unwrap();
        let got = ps.get("s1").unwrap();
        assert_eq!(got.title, "Study 2");
        assert_eq!(
            got.pseudonym("id", "Patient/1"),
            p.pseudonym("id", "Patient/1")
        );
        // A member taken off the project is a former member (until they join one again).
        ps.put(Project::new("s1", "Study 2", vec![], Profile::default()).unwrap())
            .unwrap();
        assert!(ps.former_members().contains("r1"));
        ps.put(Project::new("s1", "Study 2", vec!["r1".into()], Profile::default()).unwrap())
            .unwrap();
        assert!(ps.former_members().is_empty());
        let other = Project::new("s2", "Other", vec!["r1".into()], Profile::default()).unwrap();
        assert!(ps.put(other).unwrap_err().contains("one project"));
        assert!(ps.get("s2").is_none());
        assert!(Project::new("bad id", "t", vec![], Profile::default()).is_err());
        // A misspelt profile field is an error, not a default.
        assert!(serde_json::from_str::<Profile>(r#"{"kay": 3}"#).is_err());
        let p: Profile = serde_json::from_str(r#"{"k": 3, "birth-date": "year"}"#).unwrap();
        assert_eq!((p.k, p.birth_date), (3, BirthDate::Year));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(dir.join("research/projects.json")).unwrap();
            assert_eq!(m.permissions().mode() & 0o077, 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
