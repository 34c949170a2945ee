//! What each document type must hold: the required sections of its Composition (the
//! JP-CLINS and eCheckupReport Composition profiles' slices with `min` 1).

use crate::{Kind, err};
use issho_model::Issue;
use serde_json::Value;

/// The sections a document of `kind` must have: (section code, inside the structured
/// section `300`), from the JP-CLINS and eCheckupReport Composition profiles (slices with
/// `min` 1). A referral also needs the sending and receiving institutions (920, 910).
pub(crate) fn required_sections(kind: Kind) -> &'static [(&'static str, bool)] {
    match kind {
        Kind::Referral => &[
            ("920", false),
            ("910", false),
            ("950", true),
            ("340", true),
            ("360", true),
        ],
        Kind::DischargeSummary => &[
            ("322", true),
            ("342", true),
            ("352", true),
            ("312", true),
            ("362", true),
            ("333", true),
            ("324", true),
            ("344", true),
            ("444", true),
            ("424", true),
        ],
        Kind::CarePlan => &[("422", false)],
        Kind::Checkup | Kind::Items => &[],
    }
}

pub(crate) fn codes_of(section: &Value) -> Vec<&str> {
    section["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str())
        .collect()
}

/// Checks the Composition's sections against its type's required sections.
pub(crate) fn check_sections(kind: Kind, composition: &Value, issues: &mut Vec<Issue>) {
    let top: Vec<&Value> = composition["section"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let structured: Option<&&Value> = top.iter().find(|s| codes_of(s).contains(&"300"));
    let has = |code: &str, inner: bool| -> bool {
        if inner {
            structured.is_some_and(|s| {
                s["section"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| codes_of(x).contains(&code))
            })
        } else {
            top.iter().any(|s| codes_of(s).contains(&code))
        }
    };
    for (code, inner) in required_sections(kind) {
        // The structured section itself is optional (a document may be CDA only): its
        // required sub-sections are required when it is there.
        if *inner && structured.is_none() {
            continue;
        }
        if !has(code, *inner) {
            issues.push(
                err(format!(
                    "a {} ({}) needs the section {code}{}",
                    kind.label(),
                    kind.code(),
                    if *inner {
                        " inside the structured section 300"
                    } else {
                        ""
                    }
                ))
                .at("Bundle.entry[0].resource.section"),
            );
        }
    }
    if kind == Kind::Checkup
        && !top.iter().any(|s| {
            codes_of(s)
                .iter()
                .any(|c| matches!(*c, "01011" | "01021" | "01031" | "01910"))
        })
    {
        issues.push(err(
            "a checkup report (53576-5) needs a section of results (01011, 01021, 01031 or 01910)",
        ));
    }
}
