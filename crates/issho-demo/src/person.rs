//! Generation of one person: demographics, institutions, and the clinical history.

use crate::codes::{self, *};
use crate::date::{self, REFERENCE_DAY};
use crate::geo::{self, PREFECTURES};
use crate::jsonb::{IntoJson, arr, obj};
use crate::names;
use crate::reference::{self, INSTITUTIONS, InsurerKind, Kind};
use crate::rng::{Rng, uuid_for};
use serde_json::{Map, Number, Value};
use std::str::FromStr;

mod consent;
mod plan;
mod records;
mod signal;
use plan::*;
use records::*;

const DOMAIN_PERSON: u64 = 1;
const YEAR: i64 = 365;

/// Age bands of 5 years (0–4 … 95–99) with weights roughly following Japan's population.
const AGE_BAND_WEIGHTS: [u32; 20] = [
    38, 42, 44, 46, 50, 51, 52, 58, 63, 76, 75, 65, 60, 64, 76, 60, 49, 33, 16, 5,
];

/// One generated resource.
pub struct Entry {
    pub rtype: &'static str,
    pub id: String,
    pub resource: Value,
}

/// Resource id (type + logical id).
#[derive(Clone, Debug)]
pub struct Rid {
    pub rtype: &'static str,
    pub id: String,
}

/// How references between a person's resources are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RefMode {
    /// `urn:uuid:…` (transaction Bundles).
    Urn,
    /// `Type/id` (NDJSON).
    Plain,
}

struct Ctx {
    seed: u64,
    person: usize,
    mode: RefMode,
    entries: Vec<Entry>,
    counters: [u32; 11],
}

fn abbrev(rtype: &str) -> (&'static str, usize) {
    match rtype {
        "Patient" => ("pat", 0),
        "Coverage" => ("cov", 1),
        "Condition" => ("cond", 2),
        "Encounter" => ("enc", 3),
        "Observation" => ("obs", 4),
        "Specimen" => ("spc", 5),
        "MedicationRequest" => ("mr", 6),
        "AllergyIntolerance" => ("alg", 7),
        "Immunization" => ("imm", 8),
        "MedicationDispense" => ("md", 10),
        _ => ("res", 9),
    }
}

impl Ctx {
    fn alloc(&mut self, rtype: &'static str) -> Rid {
        let (ab, slot) = abbrev(rtype);
        self.counters[slot] += 1;
        Rid {
            rtype,
            id: format!("demo-p{}-{ab}{}", self.person, self.counters[slot]),
        }
    }

    fn reference(&self, r: &Rid) -> Value {
        let s = match self.mode {
            RefMode::Plain => format!("{}/{}", r.rtype, r.id),
            RefMode::Urn => format!(
                "urn:uuid:{}",
                uuid_for(self.seed, &format!("{}/{}", r.rtype, r.id))
            ),
        };
        obj! { "reference" => s}
    }

    fn push(&mut self, r: Rid, mut resource: Value) {
        // Put resourceType and id first (preserve_order keeps insertion order).
        let obj = resource.as_object_mut().expect("resource is an object");
        let mut m = Map::with_capacity(obj.len() + 2);
        m.insert("resourceType".into(), Value::String(r.rtype.into()));
        m.insert("id".into(), Value::String(r.id.clone()));
        for (k, v) in std::mem::take(obj) {
            m.insert(k, v);
        }
        self.entries.push(Entry {
            rtype: r.rtype,
            id: r.id,
            resource: Value::Object(m),
        });
    }
}

/// External (reference-data) reference: always `Type/id`.
fn ext_ref(rtype: &str, id: &str) -> Value {
    obj! { "reference" => format!("{rtype}/{id}")}
}

fn org_ref(k: usize) -> Value {
    ext_ref("Organization", &reference::org_id(k))
}

fn prac_ref(k: usize, n: usize) -> Value {
    ext_ref(
        "Practitioner",
        &reference::practitioner_id(reference::practitioner_index(k, n)),
    )
}

/// A JSON number with exactly `decimals` digits after the point (kept by arbitrary_precision).
pub fn dec(v: f64, decimals: u32) -> Value {
    let s = format!("{:.*}", decimals as usize, v);
    Value::Number(Number::from_str(&s).expect("formatted decimal parses"))
}

fn profile(name: &str) -> Value {
    obj! { "profile" => arr![format!("{JP_CORE_SD}{name}")] }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    obj! { "system" => system, "code" => code, "display" => display}
}

fn ucum(value: Value, code: &str, unit: &str) -> Value {
    obj! { "value" => value, "unit" => unit, "system" => UCUM, "code" => code}
}

fn day_of_week(day: i64) -> i64 {
    // 1970-01-01 was a Thursday; 0 = Sunday.
    (day + 4).rem_euclid(7)
}

/// Move Sundays to Monday (outpatient clinics are closed on Sundays).
fn weekday(day: i64) -> i64 {
    if day_of_week(day) == 0 { day + 1 } else { day }
}

// --- Person model -------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setting {
    Ambulatory,
    Emergency,
    Inpatient,
}

struct Traits {
    sbp: f64,
    pulse: f64,
    height: f64,
    bmi: f64,
    hba1c: f64,
    glucose: f64,
    tg: f64,
    hdl: f64,
    ldl: f64,
    ast: f64,
    alt: f64,
    ggt: f64,
    cre: f64,
    ua: f64,
    hb: f64,
    wbc: f64,
    plt: f64,
}

/// An institution the person attended, with that institution's Patient resource.
struct Attend {
    org: usize,
    patient: Rid,
    patient_no: String,
    /// Practitioner slot the person usually sees.
    doctor: usize,
}

struct Visit {
    day: i64,
    minute: u32,
    attend: usize,
    setting: Setting,
    /// Chronic conditions followed up at this visit.
    chronic: Vec<Cond>,
    /// Acute problem treated at this visit (a new encounter-diagnosis Condition).
    acute: Option<Cond>,
    length_days: i64,
}

struct Person {
    female: bool,
    birth: i64,
    age: i64,
    family: (&'static str, &'static str),
    given: (&'static str, &'static str),
    pref: usize,
    chronic: Vec<(Cond, i64)>,
    traits: Traits,
}

fn has(p: &Person, c: Cond) -> bool {
    p.chronic.iter().any(|(x, _)| *x == c)
}

/// Generate the resources of person `i`.
pub fn generate(seed: u64, i: usize, mode: RefMode) -> Vec<Entry> {
    let mut rng = Rng::for_item(seed, DOMAIN_PERSON, i as u64);
    let mut ctx = Ctx {
        seed,
        person: i,
        mode,
        entries: Vec::with_capacity(96),
        counters: [0; 11],
    };

    // Demographics.
    let female = rng.chance(0.51);
    let band = rng.weighted(&AGE_BAND_WEIGHTS) as i64;
    let age = band * 5 + rng.range(0, 4);
    let birth = REFERENCE_DAY - age * YEAR - age / 4 - rng.range(0, 364);
    let age = date::age_at(birth, REFERENCE_DAY);
    let family = names::SURNAMES[rng.weighted(names::surname_weights())];
    let given = *rng.pick(names::given_names(female, date::year(birth)));
    let pref = rng.weighted(&geo::prefecture_weights());

    let chronic = chronic_conditions(&mut rng, female, age, birth);
    let traits = draw_traits(&mut rng, female, age, &chronic);
    let person = Person {
        female,
        birth,
        age,
        family,
        given,
        pref,
        chronic,
        traits,
    };

    // Institutions: a home clinic, possibly a hospital, possibly a clinic from a former address.
    let pcode = PREFECTURES[pref].code;
    let paediatric = |k: &usize| INSTITUTIONS[*k].name.contains("こども");
    let clinics: Vec<usize> = reference::institutions_in(pcode, Kind::Clinic)
        .filter(|k| person.age < 15 || !paediatric(k))
        .collect();
    let hospitals: Vec<usize> = reference::institutions_in(pcode, Kind::Hospital).collect();
    let home = if clinics.is_empty() || (person.age < 15 && hospitals.len() == 1 && rng.chance(0.2))
    {
        hospitals[rng.index(hospitals.len())]
    } else if person.age < 15 && pcode == "13" {
        // Tokyo children mostly go to the paediatric clinic.
        INSTITUTIONS
            .iter()
            .position(|x| x.name.contains("こども"))
            .unwrap_or(clinics[0])
    } else {
        clinics[rng.index(clinics.len())]
    };
    // Person 0 (the demo patient) always attends a hospital too: the demo shows a record
    // across institutions, and a second institution's clinician to share it with.
    let needs_hospital = i == 0
        || has(&person, Cond::Angina)
        || (has(&person, Cond::Diabetes2) && rng.chance(0.4))
        || rng.chance(0.15 + person.age as f64 * 0.004);
    let hospital = if needs_hospital {
        if hospitals.is_empty() {
            // Nearest big hospital: Tokyo's.
            Some(0)
        } else {
            Some(hospitals[rng.index(hospitals.len())])
        }
    } else {
        None
    };
    let hospital = hospital.filter(|&h| h != home);
    // The demo patient's hospital is never their home institution.
    let hospital = match hospital {
        None if i == 0 => INSTITUTIONS
            .iter()
            .enumerate()
            .position(|(k, x)| x.kind == Kind::Hospital && k != home),
        h => h,
    };
    // A former address (moved within the history window).
    let moved = if person.age >= 25 && rng.chance(0.2) {
        let others: Vec<usize> = INSTITUTIONS
            .iter()
            .enumerate()
            .filter(|(_, x)| {
                x.kind == Kind::Clinic && x.pref != pcode && !x.name.contains("こども")
            })
            .map(|(k, _)| k)
            .collect();
        let k = others[rng.index(others.len())];
        let move_day = REFERENCE_DAY - rng.range(2 * YEAR, 7 * YEAR);
        Some((k, move_day))
    } else {
        None
    };
    let mut attends: Vec<Attend> = Vec::with_capacity(4);
    let mut add_attend = |ctx: &mut Ctx, rng: &mut Rng, org: usize| -> usize {
        let patient = ctx.alloc("Patient");
        let patient_no = format!(
            "{:08}",
            (i as u64 * 7_919 + org as u64 * 104_729) % 100_000_000
        );
        let doctor = rng.index(reference::staff_count(INSTITUTIONS[org].kind));
        attends.push(Attend {
            org,
            patient,
            patient_no,
            doctor,
        });
        attends.len() - 1
    };
    let a_home = add_attend(&mut ctx, &mut rng, home);
    let a_hosp = hospital.map(|h| add_attend(&mut ctx, &mut rng, h));
    let a_old = moved.map(|(k, d)| (add_attend(&mut ctx, &mut rng, k), d));

    // Patients (one per attended institution, linked to each other with `seealso`).
    let insurer = choose_insurer(&mut rng, &person);
    let member = member_id(&mut rng, insurer, i);
    let address = home_address(&mut rng, &person);
    let telecom = phone(&mut rng, &person);
    for (n, a) in attends.iter().enumerate() {
        let links: Vec<Value> = attends
            .iter()
            .enumerate()
            .filter(|(m, _)| *m != n)
            .map(|(_, o)| obj! {"other" => ctx.reference(&o.patient), "type" => "seealso"})
            .collect();
        let code = reference::institution_code(a.org);
        let mut pat = obj! {
        "meta" => profile("JP_Patient"),
        "identifier" => arr![
            obj! {"system" => format!("{PATIENT_ID_OID_PREFIX}1{code}"), "value" => &a.patient_no},
            obj! {"system" => INSURANCE_MEMBER_ID, "value" => &member.0}
        ],
        "active" => true,
        "name" => reference::human_names(person.family, person.given, true),
        "telecom" => arr![telecom.clone()],
        "gender" => if person.female { "female" } else { "male" },
        "birthDate" => date::date(person.birth),
        "address" => arr![address.clone()],
        "managingOrganization" => org_ref(a.org)};
        if !links.is_empty() {
            pat.as_object_mut()
                .unwrap()
                .insert("link".into(), Value::Array(links));
        }
        ctx.push(a.patient.clone(), pat);
    }

    // Coverage.
    let home_patient = attends[a_home].patient.clone();
    let cov = ctx.alloc("Coverage");
    let cov_res = obj! {
        "meta" => profile("JP_Coverage"),
        "extension" => arr![
            obj! {"url" => format!("{JP_CORE_EXT}JP_Coverage_InsuredPersonSymbol"), "valueString" => &member.1},
            obj! {"url" => format!("{JP_CORE_EXT}JP_Coverage_InsuredPersonNumber"), "valueString" => &member.2},
            obj! {"url" => format!("{JP_CORE_EXT}JP_Coverage_InsuredPersonSubNumber"), "valueString" => &member.3}
        ],
        "status" => "active",
        "type" => obj! {"coding" => arr![coding(COVERAGE_TYPE, "PUBLICPOL", "public healthcare")]},
        "subscriberId" => format!("{}・{}", member.1, member.2),
        "beneficiary" => ctx.reference(&home_patient),
        "relationship" => obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self")]},
        "period" => obj! {"start" => date::date(REFERENCE_DAY - rng.range(30, 8 * YEAR).min(person.age * YEAR + 1))},
        "payor" => arr![ext_ref("Organization", &reference::insurer_id(insurer))]
    };
    ctx.push(cov, cov_res);

    // Plan the visits.
    let window_start = (REFERENCE_DAY - 6 * YEAR).max(person.birth);
    let mut visits: Vec<Visit> = Vec::new();
    plan_visits(
        &mut rng,
        &person,
        window_start,
        a_home,
        a_hosp,
        a_old,
        &mut visits,
    );
    if visits.is_empty() {
        // Everybody has at least one encounter: a health check-up within the last two years.
        let d = weekday(
            REFERENCE_DAY
                - rng
                    .range(14, 2 * YEAR)
                    .min(REFERENCE_DAY - person.birth - 1),
        );
        visits.push(Visit {
            day: d.min(REFERENCE_DAY - 1),
            minute: clinic_minute(&mut rng),
            attend: a_home,
            setting: Setting::Ambulatory,
            chronic: vec![],
            acute: None,
            length_days: 0,
        });
    }
    visits.sort_by_key(|v| (v.day, v.minute));

    // Chronic Conditions: one per (condition, institution following it up).
    let mut cond_rids: Vec<(Cond, usize, Rid)> = Vec::new();
    for v in &visits {
        for &c in &v.chronic {
            if !cond_rids.iter().any(|(x, a, _)| *x == c && *a == v.attend) {
                let r = ctx.alloc("Condition");
                cond_rids.push((c, v.attend, r));
            }
        }
    }
    for (c, a, r) in &cond_rids {
        let onset = person
            .chronic
            .iter()
            .find(|(x, _)| x == c)
            .map(|(_, d)| *d)
            .unwrap_or(window_start);
        let first_visit = visits
            .iter()
            .find(|v| v.attend == *a && v.chronic.contains(c))
            .map(|v| v.day)
            .unwrap_or(onset);
        let at = &attends[*a];
        let res = condition(
            &ctx,
            *c,
            &at.patient,
            None,
            "problem-list-item",
            onset,
            first_visit.max(onset),
            None,
            (at.org, at.doctor),
        );
        ctx.push(r.clone(), res);
    }

    // Walk the visits.
    let mut rx_count_by_attend = vec![0u32; attends.len()];
    for (vn, v) in visits.iter().enumerate() {
        let at = &attends[v.attend];
        let org = at.org;
        let doctor = match v.setting {
            Setting::Ambulatory => at.doctor,
            _ => 2 % reference::staff_count(INSTITUTIONS[org].kind),
        };
        let enc = ctx.alloc("Encounter");
        let start = date::date_time(v.day, v.minute);
        let end_minute = v.minute + rng.range(8, 35) as u32;
        let end = if v.length_days > 0 {
            date::date_time(v.day + v.length_days, 10 * 60 + rng.range(0, 120) as u32)
        } else {
            date::date_time(v.day, end_minute)
        };
        // Acute diagnosis.
        let mut diagnoses: Vec<Rid> = Vec::new();
        if let Some(c) = v.acute {
            let r = ctx.alloc("Condition");
            let resolved = v.day + 14 + v.length_days;
            let res = condition(
                &ctx,
                c,
                &at.patient,
                Some(&enc),
                "encounter-diagnosis",
                v.day,
                v.day,
                if resolved < REFERENCE_DAY {
                    Some(resolved)
                } else {
                    None
                },
                (org, doctor),
            );
            ctx.push(r.clone(), res);
            diagnoses.push(r);
        }
        for c in &v.chronic {
            if let Some((_, _, r)) = cond_rids.iter().find(|(x, a, _)| x == c && *a == v.attend) {
                diagnoses.push(r.clone());
            }
        }
        let (class_code, class_display) = match v.setting {
            Setting::Ambulatory => ("AMB", "ambulatory"),
            Setting::Emergency => ("EMER", "emergency"),
            Setting::Inpatient => ("IMP", "inpatient encounter"),
        };
        let mut enc_res = obj! {
            "meta" => profile("JP_Encounter"),
            "status" => "finished",
            "class" => coding(ACT_CODE, class_code, class_display),
            "type" => arr![obj! {"text" => match v.setting {
                Setting::Inpatient => "入院",
                Setting::Emergency => "救急外来",
                _ if v.chronic.is_empty() && v.acute.is_none() => "健康診断",
                _ if v.chronic.is_empty() => "外来（初診）",
                _ => "外来（再診）",
            }}],
            "subject" => ctx.reference(&at.patient),
            "participant" => arr![obj! {"individual" => prac_ref(org, doctor)}],
            "period" => obj! {"start" => start, "end" => end},
        };
        let eobj = enc_res.as_object_mut().unwrap();
        if v.setting == Setting::Inpatient {
            eobj.insert(
                "length".into(),
                ucum(IntoJson::into_json(v.length_days), "d", "日"),
            );
        }
        if !diagnoses.is_empty() {
            let d: Vec<Value> = diagnoses
                .iter()
                .enumerate()
                .map(|(rank, r)| obj! {"condition" => ctx.reference(r), "rank" => rank + 1})
                .collect();
            eobj.insert("diagnosis".into(), Value::Array(d));
        }
        if v.setting == Setting::Inpatient {
            eobj.insert(
                "hospitalization".into(),
                obj! {"dischargeDisposition" => obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/discharge-disposition", "home", "Home")]}},
            );
        }
        eobj.insert("serviceProvider".into(), org_ref(org));
        ctx.push(enc.clone(), enc_res);

        let when = date::date_time(v.day, v.minute + 3);
        let obs_ctx = ObsCtx {
            patient: at.patient.clone(),
            encounter: Some(enc.clone()),
            when: when.clone(),
            performer: prac_ref(org, doctor),
            tag: false,
        };

        // Vital signs (not for small children's minor visits).
        if person.age >= 3 || v.setting != Setting::Ambulatory {
            let hypertensive = v.chronic.contains(&Cond::Hypertension);
            let sbp =
                person.traits.sbp + rng.normal(0.0, 7.0) + if hypertensive { 2.0 } else { 0.0 };
            let dbp = sbp * 0.62 + rng.normal(0.0, 5.0);
            blood_pressure(&mut ctx, &obs_ctx, sbp, dbp);
            let pulse = person.traits.pulse
                + rng.normal(0.0, 6.0)
                + if v.setting == Setting::Emergency {
                    15.0
                } else {
                    0.0
                };
            vital(
                &mut ctx,
                &obs_ctx,
                "8867-4",
                "Heart rate",
                "脈拍数",
                dec(pulse, 0),
                "/min",
                "回/分",
            );
        }
        let feverish = matches!(
            v.acute,
            Some(Cond::Uri | Cond::Influenza | Cond::Pneumonia | Cond::Gastroenteritis)
        );
        if feverish || v.setting != Setting::Ambulatory || rng.chance(0.2) {
            let t = if feverish {
                rng.normal(37.9, 0.5)
            } else {
                rng.normal(36.5, 0.25)
            };
            vital(
                &mut ctx,
                &obs_ctx,
                "8310-5",
                "Body temperature",
                "体温",
                dec(t, 1),
                "Cel",
                "℃",
            );
        }
        if person.age < 15 || rng.chance(0.25) || v.chronic.contains(&Cond::Diabetes2) {
            let h = height_at(&person, v.day);
            let w = person.traits.bmi * (h / 100.0) * (h / 100.0) + rng.normal(0.0, 0.6);
            body_weight(&mut ctx, &obs_ctx, w);
            if person.age < 20 || rng.chance(0.2) {
                body_measurement(
                    &mut ctx,
                    &obs_ctx,
                    "31000298",
                    "身長",
                    "height",
                    "8302-2",
                    "Body height",
                    dec(h, 1),
                    "cm",
                    "cm",
                );
            }
        }

        // Laboratory tests.
        let dm = v.chronic.contains(&Cond::Diabetes2);
        let lipid = v.chronic.contains(&Cond::Dyslipidaemia);
        let draw = match v.setting {
            Setting::Ambulatory => {
                (dm && vn % 2 == 0)
                    || (!v.chronic.is_empty() && rng.chance(0.3))
                    || (v.chronic.is_empty() && v.acute.is_none() && person.age >= 18)
            }
            _ => true,
        };
        if draw {
            let mut labs: Vec<Lab> = Vec::with_capacity(15);
            if dm {
                labs.extend([Lab::HbA1c, Lab::Glucose]);
            }
            if lipid || dm || rng.chance(0.3) {
                labs.extend([Lab::Tg, Lab::Hdl, Lab::Ldl]);
            }
            labs.extend([Lab::Ast, Lab::Alt, Lab::Ggt, Lab::Creatinine]);
            if v.setting != Setting::Ambulatory || rng.chance(0.5) {
                labs.extend([
                    Lab::Sodium,
                    Lab::Potassium,
                    Lab::Hemoglobin,
                    Lab::Wbc,
                    Lab::Platelets,
                ]);
            }
            if !dm && rng.chance(0.3) {
                labs.extend([Lab::HbA1c, Lab::Glucose]);
            }
            if rng.chance(0.4) {
                labs.push(Lab::UricAcid);
            }
            let infection = matches!(v.acute, Some(Cond::Pneumonia));
            lab_panel(
                &mut ctx, &mut rng, &person, &obs_ctx, v.day, v.minute, org, &labs, infection, None,
            );
        }

        // Prescriptions.
        let mut drugs: Vec<(Drug, u32, Option<Cond>)> = Vec::new();
        for &c in &v.chronic {
            for d in chronic_drugs(c, &person) {
                let days = if c == Cond::Pollinosis {
                    *rng.pick(&[14u32, 28])
                } else {
                    rx_days(&mut rng, v.setting)
                };
                drugs.push((d, days, Some(c)));
            }
        }
        if let Some(c) = v.acute {
            for d in acute_drugs(c, &mut rng, &person) {
                drugs.push((d, rng.range(3, 7) as u32, None));
            }
        }
        if v.setting == Setting::Inpatient {
            // Discharge prescription days are short.
            for d in &mut drugs {
                d.1 = d.1.min(14);
            }
        }
        let acute_rid = diagnoses.first().cloned();
        for (rp, (d, days, reason)) in drugs.iter().enumerate() {
            rx_count_by_attend[v.attend] += 1;
            let reason_rid = match reason {
                Some(c) => cond_rids
                    .iter()
                    .find(|(x, a, _)| x == c && *a == v.attend)
                    .map(|(_, _, r)| r.clone()),
                None => acute_rid.clone(),
            };
            let authored_day = v.day + v.length_days;
            medication_request(
                &mut ctx,
                *d,
                *days,
                rp as u32 + 1,
                &at.patient,
                &enc,
                reason_rid.as_ref(),
                authored_day,
                v.minute + 10,
                v.setting,
                (org, doctor),
            );
        }
    }

    // Allergies.
    allergies(&mut ctx, &mut rng, &person, &attends, a_home);

    // Immunizations.
    immunizations(&mut ctx, &mut rng, &person, &attends[a_home]);

    // Patient-generated data.
    patient_generated(&mut ctx, &mut rng, &person, &attends[a_home].patient);

    // Dispensing (no random draws: what came before stays as it was).
    dispenses(&mut ctx, pcode);

    // The drug-safety signal: liver tests after starting a statin (its own random stream).
    signal::statin_liver_tests(&mut ctx, seed, i, &person, &attends);

    // Research: refused, agreed, or nothing said (its own random stream).
    consent::research_consent(&mut ctx, seed, i, &attends[a_home].patient);

    ctx.entries
}
