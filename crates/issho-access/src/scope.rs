//! SMART App Launch 2.0 scopes (scopes-and-launch-context.html): `patient/Observation.rs`,
//! `user/*.cruds`, `system/Patient.read` (v1 `read`/`write`/`*`), optionally restricted by
//! search parameters (`patient/Observation.rs?category=laboratory`), and the non-resource
//! scopes (`openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`, …).

use std::fmt;

/// Whose data a resource scope speaks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeContext {
    /// `patient/`: the patient in context (the token's `patient`).
    Patient,
    /// `user/`: what the signed-in user may see.
    User,
    /// `system/`: a backend service, no user.
    System,
}

/// The SMART v2 permissions, in their canonical order `c r u d s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: ScopeContext,
    /// A resource type, or `*`.
    pub resource_type: String,
    /// Bit set of [`Permission`]s (c=1, r=2, u=4, d=8, s=16).
    perms: u8,
    /// Search parameters every permitted resource must match (`?category=laboratory`), as
    /// name/value pairs (already percent-decoded).
    pub query: Vec<(String, String)>,
}

fn bit(p: Permission) -> u8 {
    match p {
        Permission::Create => 1,
        Permission::Read => 2,
        Permission::Update => 4,
        Permission::Delete => 8,
        Permission::Search => 16,
    }
}

impl ResourceScope {
    pub fn allows(&self, p: Permission) -> bool {
        self.perms & bit(p) != 0
    }
    pub fn covers(&self, resource_type: &str) -> bool {
        self.resource_type == "*" || self.resource_type == resource_type
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ctx = match self.context {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        };
        write!(f, "{ctx}/{}.", self.resource_type)?;
        for p in [
            Permission::Create,
            Permission::Read,
            Permission::Update,
            Permission::Delete,
            Permission::Search,
        ] {
            if self.allows(p) {
                write!(f, "{}", p.letter())?;
            }
        }
        for (i, (k, v)) in self.query.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// A parsed scope string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    pub resources: Vec<ResourceScope>,
    /// Scopes that are not about resources (`openid`, `fhirUser`, `launch/patient`, …), kept
    /// to be echoed in token responses.
    pub other: Vec<String>,
}

impl Scopes {
    /// Parse a space-separated scope string. Unknown non-resource scopes are kept in `other`;
    /// malformed resource scopes are errors.
    pub fn parse(s: &str) -> Result<Scopes, String> {
        let mut out = Scopes::default();
        for item in s.split_whitespace() {
            let Some((ctx, rest)) = item.split_once('/') else {
                out.other.push(item.to_string());
                continue;
            };
            let context = match ctx {
                "patient" => ScopeContext::Patient,
                "user" => ScopeContext::User,
                "system" => ScopeContext::System,
                // `launch/patient`, `launch/encounter`
                _ => {
                    out.other.push(item.to_string());
                    continue;
                }
            };
            let (body, query) = match rest.split_once('?') {
                Some((b, q)) => (b, Some(q)),
                None => (rest, None),
            };
            let Some((rt, perms)) = body.split_once('.') else {
                return Err(format!("scope '{item}' has no permissions (Type.rs)"));
            };
            if rt.is_empty() || !(rt == "*" || rt.chars().all(|c| c.is_ascii_alphanumeric())) {
                return Err(format!("scope '{item}' names no resource type"));
            }
            let bits = match perms {
                "read" => bit(Permission::Read) | bit(Permission::Search),
                "write" => {
                    bit(Permission::Create) | bit(Permission::Update) | bit(Permission::Delete)
                }
                "*" => 31,
                p => {
                    // v2: a non-empty subsequence of "cruds", in that order.
                    let mut bits = 0u8;
                    let mut last = -1i32;
                    for ch in p.chars() {
                        let (pos, b) = match ch {
                            'c' => (0, bit(Permission::Create)),
                            'r' => (1, bit(Permission::Read)),
                            'u' => (2, bit(Permission::Update)),
                            'd' => (3, bit(Permission::Delete)),
                            's' => (4, bit(Permission::Search)),
                            _ => return Err(format!("scope '{item}': unknown permission '{ch}'")),
                        };
                        if pos <= last {
                            return Err(format!(
                                "scope '{item}': permissions must be in the order c r u d s"
                            ));
                        }
                        last = pos;
                        bits |= b;
                    }
                    if bits == 0 {
                        return Err(format!("scope '{item}' grants nothing"));
                    }
                    bits
                }
            };
            let query = match query {
                None => Vec::new(),
                Some(q) => q
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (decode(k), decode(v))
                    })
                    .collect(),
            };
            out.resources.push(ResourceScope {
                context,
                resource_type: rt.to_string(),
                perms: bits,
                query,
            });
        }
        Ok(out)
    }

    /// The scopes of `self` that `other` also grants, for narrowing a request to what a
    /// client or user may have: a requested scope is kept when some allowed scope of the same
    /// context covers its type and every permission (and has no query, or the same query).
    pub fn within(&self, allowed: &Scopes) -> Scopes {
        // The intersection, pair by pair: a requested wildcard narrowed to an allowed type
        // (`user/*.cruds` within `user/MedicationDispense.cruds` is that type's scope), a
        // requested type kept within an allowed wildcard, permissions and restrictions both
        // applied; scopes that end up the same are merged.
        let mut resources: Vec<ResourceScope> = Vec::new();
        for s in &self.resources {
            for a in allowed.resources.iter().filter(|a| a.context == s.context) {
                let resource_type = if s.resource_type == "*" {
                    a.resource_type.clone()
                } else if a.covers(&s.resource_type) {
                    s.resource_type.clone()
                } else {
                    continue;
                };
                let query = match (s.query.is_empty(), a.query.is_empty()) {
                    (_, true) => s.query.clone(),
                    (true, false) => a.query.clone(),
                    (false, false) if s.query == a.query => s.query.clone(),
                    _ => continue,
                };
                let perms = s.perms & a.perms;
                if perms == 0 {
                    continue;
                }
                match resources.iter_mut().find(|r| {
                    r.context == s.context && r.resource_type == resource_type && r.query == query
                }) {
                    Some(r) => r.perms |= perms,
                    None => resources.push(ResourceScope {
                        context: s.context,
                        resource_type,
                        perms,
                        query,
                    }),
                }
            }
        }
        // A scope another one holds entirely (same context, a wildcard with no restriction and
        // at least its permissions) says nothing more.
        let all = resources.clone();
        resources.retain(|r| {
            !all.iter().any(|w| {
                w.context == r.context
                    && w.resource_type == "*"
                    && r.resource_type != "*"
                    && w.query.is_empty()
                    && w.perms & r.perms == r.perms
            })
        });
        let other = self
            .other
            .iter()
            .filter(|o| allowed.other.contains(o))
            .cloned()
            .collect();
        Scopes { resources, other }
    }

    pub fn has(&self, other_scope: &str) -> bool {
        self.other.iter().any(|o| o == other_scope)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for o in &self.other {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(o)?;
        }
        for r in &self.resources {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A query component (`+` is a space).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_scopes() {
        let s = Scopes::parse(
            "openid fhirUser launch/patient patient/Observation.rs?category=laboratory user/*.cruds system/Patient.read patient/*.write",
        )
        .unwrap();
        assert_eq!(s.other, vec!["openid", "fhirUser", "launch/patient"]);
        assert_eq!(s.resources.len(), 4);
        let obs = &s.resources[0];
        assert_eq!(obs.context, ScopeContext::Patient);
        assert!(obs.allows(Permission::Read) && obs.allows(Permission::Search));
        assert!(!obs.allows(Permission::Create));
        assert_eq!(
            obs.query,
            vec![("category".to_string(), "laboratory".to_string())]
        );
        assert!(s.resources[1].covers("Condition"));
        assert!(s.resources[1].allows(Permission::Delete));
        let v1 = &s.resources[2];
        assert!(v1.allows(Permission::Read) && v1.allows(Permission::Search));
        assert!(!v1.allows(Permission::Update));
        let w = &s.resources[3];
        assert!(w.allows(Permission::Create) && !w.allows(Permission::Read));
        assert_eq!(
            s.to_string(),
            "openid fhirUser launch/patient patient/Observation.rs?category=laboratory user/*.cruds system/Patient.rs patient/*.cud"
        );
    }

    #[test]
    fn malformed_scopes() {
        for bad in [
            "patient/Observation",
            "patient/.rs",
            "user/*.sr",
            "user/*.rx",
            "user/*.",
            "patient/Obs-x.rs",
        ] {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn narrowing() {
        let allowed = Scopes::parse("openid patient/*.rs patient/Observation.cruds").unwrap();
        let asked = Scopes::parse(
            "openid offline_access patient/Observation.cruds patient/Condition.crs user/*.rs",
        )
        .unwrap();
        let got = asked.within(&allowed);
        assert_eq!(
            got.to_string(),
            "openid patient/Observation.cruds patient/Condition.rs"
        );
    }

    #[test]
    fn a_wildcard_request_keeps_the_narrower_types_allowed() {
        let allowed = Scopes::parse("user/*.rs user/MedicationDispense.cruds").unwrap();
        let asked = Scopes::parse("openid user/*.cruds patient/*.cruds").unwrap();
        assert_eq!(
            asked.within(&allowed).to_string(),
            "user/*.rs user/MedicationDispense.cruds"
        );
        let asked = Scopes::parse("user/Observation.cruds").unwrap();
        assert_eq!(asked.within(&allowed).to_string(), "user/Observation.rs");
        let limited = Scopes::parse("user/Observation.rs?category=laboratory").unwrap();
        assert_eq!(
            Scopes::parse("user/*.rs")
                .unwrap()
                .within(&limited)
                .to_string(),
            "user/Observation.rs?category=laboratory"
        );
    }
}
