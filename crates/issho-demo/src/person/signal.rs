//! The drug-safety signal a study of the demo population should find (issue 14), put there
//! deliberately: everyone who starts a statin has an ALT test 14 to 84 days later, and it is
//! above three times the upper limit of normal for about 30% of those who started
//! atorvastatin (YJ `2189015F1082`) against about 4% of those who started rosuvastatin
//! (クレストール, YJ `2189017F1022`), the comparator — at every age and for both sexes. Drawn
//! from a random stream of its own after the rest of the record, so nothing else changes;
//! `docs/research.md` shows a study finding it.

use super::*;

/// The random stream of the signal (persons use 1, research decisions 7).
const DOMAIN_SIGNAL: u64 = 8;

/// Chance of ALT > 3× the upper limit after starting each statin.
const EXPOSED_RISK: f64 = 0.30;
const COMPARATOR_RISK: f64 = 0.04;

/// The YJ codes of the exposure and the comparator.
pub const EXPOSURE_YJ: &str = "2189015F1082";
pub const COMPARATOR_YJ: &str = "2189017F1022";

pub(super) fn statin_liver_tests(
    ctx: &mut Ctx,
    seed: u64,
    i: usize,
    person: &Person,
    attends: &[Attend],
) {
    let mut rng = Rng::for_item(seed, DOMAIN_SIGNAL, i as u64);
    // The first prescription of each statin: (day, its subject).
    let mut starts: Vec<(i64, &'static str, Value)> = Vec::new();
    for e in ctx
        .entries
        .iter()
        .filter(|e| e.rtype == "MedicationRequest")
    {
        let r = &e.resource;
        let yj = r["medicationCodeableConcept"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["system"] == YJ)
            .and_then(|c| c["code"].as_str());
        let drug = match yj {
            Some(EXPOSURE_YJ) => EXPOSURE_YJ,
            Some(COMPARATOR_YJ) => COMPARATOR_YJ,
            _ => continue,
        };
        let Some(day) = r["authoredOn"].as_str().and_then(day_of) else {
            continue;
        };
        match starts.iter_mut().find(|(_, d, _)| *d == drug) {
            Some(s) if s.0 <= day => {}
            Some(s) => *s = (day, drug, r["subject"].clone()),
            None => starts.push((day, drug, r["subject"].clone())),
        }
    }
    starts.sort_by_key(|s| s.0);
    for (start, drug, subject) in starts {
        let day = start + rng.range(14, 84);
        if day >= REFERENCE_DAY {
            continue;
        }
        let Some(at) = attends
            .iter()
            .find(|a| ctx.reference(&a.patient) == subject)
        else {
            continue;
        };
        let risk = if drug == EXPOSURE_YJ {
            EXPOSED_RISK
        } else {
            COMPARATOR_RISK
        };
        let def = codes::lab_def(Lab::Alt);
        let (lo, hi) = if person.female {
            def.range_f
        } else {
            def.range_m
        };
        let value = if rng.chance(risk) {
            (hi * (3.2 + rng.unit() * 2.8)).round()
        } else {
            (lo + (hi - lo) * rng.unit()).round()
        };
        let o = ObsCtx {
            patient: at.patient.clone(),
            encounter: None,
            when: date::date_time(day, 9 * 60),
            performer: org_ref(at.org),
            tag: false,
        };
        let minute = 9 * 60 + rng.range(0, 120) as u32;
        lab_panel(
            ctx,
            &mut rng,
            person,
            &o,
            day,
            minute,
            at.org,
            &[Lab::Alt],
            false,
            Some(value),
        );
    }
}

/// The day number of `YYYY-MM-DD…`.
fn day_of(s: &str) -> Option<i64> {
    let y = s.get(..4)?.parse().ok()?;
    let m = s.get(5..7)?.parse().ok()?;
    let d = s.get(8..10)?.parse().ok()?;
    Some(date::days_from_civil(y, m, d))
}
