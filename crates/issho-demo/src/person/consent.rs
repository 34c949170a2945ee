//! The person's research decision (issue 14), deliberately: about 8% of the demo population
//! refuse research (a research Consent that denies), about 30% agree explicitly (one that
//! permits: what a deployment with opt-in research releases), the others said nothing. Drawn
//! from a random stream of its own, after everything else, so the rest of the record and its
//! ids stay as they were.

use super::*;

/// The random stream of research decisions (persons use 1).
const DOMAIN_RESEARCH: u64 = 7;

pub(super) fn research_consent(ctx: &mut Ctx, seed: u64, i: usize, patient: &Rid) {
    let mut rng = Rng::for_item(seed, DOMAIN_RESEARCH, i as u64);
    let roll = rng.range(0, 99);
    let (kind, rule) = match roll {
        0..=7 => ("deny", "OPTOUT"),
        8..=37 => ("permit", "OPTIN"),
        _ => return,
    };
    let day = REFERENCE_DAY - rng.range(30, 700);
    let r = ctx.alloc("Consent");
    let res = obj! {
        "status" => "active",
        "scope" => obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/consentscope", "research", "Research")]},
        "category" => arr![obj! {"coding" => arr![coding("http://loinc.org", "59284-0", "Patient Consent")]}],
        "patient" => ctx.reference(patient),
        "dateTime" => date::date(day),
        "policyRule" => obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", rule, rule)]},
        "provision" => obj! {"type" => kind}
    };
    ctx.push(r, res);
}
