//! Which persons a project receives: k-anonymity over the released quasi-identifiers (persons
//! whose combination fewer than `k` persons share are suppressed), with the l-diversity of
//! each class reported over the persons' diagnoses.

use crate::Profile;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One equivalence class that was released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassReport {
    /// The quasi-identifiers' values, in the profile's order.
    pub values: Vec<String>,
    pub persons: usize,
    /// Distinct diagnoses (`Condition.code`) among the class's persons.
    pub distinct_diagnoses: usize,
}

/// What a project received, and what was held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub project: String,
    pub quasi_identifiers: Vec<crate::Quasi>,
    pub k: usize,
    pub l: usize,
    /// Persons whose research consent allowed it (within the request's group).
    pub persons_considered: usize,
    pub persons_released: usize,
    /// Left out: their class was smaller than `k` (or, with `suppress_below_l`, less diverse
    /// than `l`).
    pub persons_suppressed: usize,
    pub classes_suppressed: usize,
    /// Released classes with fewer than `l` distinct diagnoses (kept unless the profile
    /// suppresses them).
    pub classes_below_l: usize,
    /// The released classes (each of at least `k` persons).
    pub classes: Vec<ClassReport>,
}

/// Decide which persons are released: `quasi` holds each person's released quasi-identifier
/// values, `diagnoses` their diagnosis codes. Answers the released persons (sorted) and the
/// report.
pub fn assess(
    project: &str,
    profile: &Profile,
    quasi: &BTreeMap<String, Vec<String>>,
    diagnoses: &BTreeMap<String, BTreeSet<String>>,
) -> (Vec<String>, Report) {
    let mut classes: BTreeMap<&Vec<String>, Vec<&String>> = BTreeMap::new();
    for (person, values) in quasi {
        classes.entry(values).or_default().push(person);
    }
    let none = BTreeSet::new();
    let mut released = Vec::new();
    let mut report = Report {
        project: project.to_string(),
        quasi_identifiers: profile.quasi_identifiers.clone(),
        k: profile.k,
        l: profile.l,
        persons_considered: quasi.len(),
        persons_released: 0,
        persons_suppressed: 0,
        classes_suppressed: 0,
        classes_below_l: 0,
        classes: Vec::new(),
    };
    for (values, persons) in classes {
        let distinct: BTreeSet<&String> = persons
            .iter()
            .flat_map(|p| diagnoses.get(*p).unwrap_or(&none))
            .collect();
        let below_l = distinct.len() < profile.l;
        if persons.len() < profile.k || (below_l && profile.suppress_below_l) {
            report.persons_suppressed += persons.len();
            report.classes_suppressed += 1;
            continue;
        }
        if below_l {
            report.classes_below_l += 1;
        }
        report.classes.push(ClassReport {
            values: values.clone(),
            persons: persons.len(),
            distinct_diagnoses: distinct.len(),
        });
        released.extend(persons.into_iter().cloned());
    }
    released.sort();
    report.persons_released = released.len();
    (released, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_combinations_are_suppressed_and_diversity_reported() {
        let profile = Profile {
            k: 3,
            l: 2,
            ..Profile::default()
        };
        let mut quasi = BTreeMap::new();
        let mut dx = BTreeMap::new();
        for i in 0..5 {
            quasi.insert(format!("a{i}"), vec!["40-49".to_string(), "male".into()]);
            dx.insert(format!("a{i}"), BTreeSet::from([format!("E11.{}", i % 2)]));
        }
        for i in 0..3 {
            quasi.insert(format!("b{i}"), vec!["50-59".to_string(), "female".into()]);
            dx.insert(format!("b{i}"), BTreeSet::from(["I10".to_string()]));
        }
        quasi.insert("c0".into(), vec!["90+".to_string(), "female".into()]);
        let (kept, r) = assess("s", &profile, &quasi, &dx);
        assert_eq!(kept.len(), 8);
        assert!(!kept.contains(&"c0".to_string()));
        assert_eq!(r.persons_suppressed, 1);
        assert_eq!(r.classes_suppressed, 1);
        assert_eq!(r.classes_below_l, 1);
        assert_eq!(r.classes.len(), 2);
        assert!(r.classes.iter().all(|c| c.persons >= 3));
        let strict = Profile {
            suppress_below_l: true,
            ..profile
        };
        let (kept, r) = assess("s", &strict, &quasi, &dx);
        assert_eq!(kept.len(), 5);
        assert_eq!(r.persons_suppressed, 4);
    }
}
