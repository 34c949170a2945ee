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
    let needs_hospital = has(&person, Cond::Angina)
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
                &mut ctx, &mut rng, &person, &obs_ctx, v.day, v.minute, org, &labs, infection,
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

    ctx.entries
}

/// The pharmacy of the person's prefecture dispensed their three latest prescriptions.
fn dispenses(ctx: &mut Ctx, pcode: &str) {
    let Some(pharmacy) = reference::institutions_in(pcode, Kind::Pharmacy).next() else {
        return;
    };
    let prescriptions: Vec<(Value, Value, Value, Value)> = ctx
        .entries
        .iter()
        .filter(|e| e.rtype == "MedicationRequest")
        .map(|e| {
            let rid = Rid {
                rtype: "MedicationRequest",
                id: e.id.clone(),
            };
            (
                e.resource["medicationCodeableConcept"].clone(),
                e.resource["subject"].clone(),
                e.resource["authoredOn"].clone(),
                ctx.reference(&rid),
            )
        })
        .collect();
    let n = prescriptions.len();
    for (medication, subject, authored, prescription) in
        prescriptions.into_iter().skip(n.saturating_sub(3))
    {
        let r = ctx.alloc("MedicationDispense");
        let mut d = obj! {
        "meta" => profile("JP_MedicationDispense"),
        "status" => "completed",
        "medicationCodeableConcept" => medication,
        "subject" => subject,
        "performer" => arr![obj! {"actor" => org_ref(pharmacy)}],
        "authorizingPrescription" => arr![prescription]};
        if authored.is_string() {
            d["whenHandedOver"] = authored;
        }
        ctx.push(r, d);
    }
}

// --- Conditions and traits ----------------------------------------------------------------

fn onset_between(rng: &mut Rng, birth: i64, lo_age: i64, hi_age: i64) -> i64 {
    let hi = hi_age.max(lo_age);
    let a = rng.range(lo_age, hi);
    (birth + a * YEAR + rng.range(0, 364)).min(REFERENCE_DAY - 30)
}

fn chronic_conditions(rng: &mut Rng, female: bool, age: i64, birth: i64) -> Vec<(Cond, i64)> {
    let mut v = Vec::new();
    let band = |a: i64, table: [f64; 5]| -> f64 {
        // <40, 40s, 50s, 60s, 70+
        match a {
            ..40 => table[0],
            40..50 => table[1],
            50..60 => table[2],
            60..70 => table[3],
            _ => table[4],
        }
    };
    let male_bias = if female { 0.8 } else { 1.2 };
    if rng.chance(band(age, [0.02, 0.15, 0.30, 0.45, 0.62]) * male_bias) {
        v.push((
            Cond::Hypertension,
            onset_between(rng, birth, (age - 20).max(30), age),
        ));
    }
    if rng.chance(band(age, [0.003, 0.05, 0.10, 0.15, 0.18]) * male_bias) {
        v.push((
            Cond::Diabetes2,
            onset_between(rng, birth, (age - 15).max(30), age),
        ));
    }
    if rng.chance(band(age, [0.03, 0.15, 0.25, 0.33, 0.33])) {
        v.push((
            Cond::Dyslipidaemia,
            onset_between(rng, birth, (age - 15).max(30), age),
        ));
    }
    let asthma_p = if age < 15 { 0.08 } else { 0.04 };
    if rng.chance(asthma_p) {
        v.push((Cond::Asthma, onset_between(rng, birth, 2, age.min(40))));
    }
    if age >= 5 && rng.chance(0.3) {
        v.push((Cond::Pollinosis, onset_between(rng, birth, 5, age)));
    }
    if age < 20 && rng.chance(0.1) {
        v.push((
            Cond::AtopicDermatitis,
            onset_between(rng, birth, 0, age.min(5)),
        ));
    }
    if age >= 55 && rng.chance(band(age, [0.0, 0.0, 0.02, 0.05, 0.08]) * male_bias) {
        v.push((Cond::Angina, onset_between(rng, birth, 55, age)));
    }
    if age >= 20 && rng.chance(0.05) {
        v.push((Cond::Gastritis, onset_between(rng, birth, 20, age)));
    }
    if age >= 20 && rng.chance(0.01) {
        v.push((Cond::DuodenalUlcer, onset_between(rng, birth, 20, age)));
    }
    if age >= 75 && rng.chance(if age >= 85 { 0.3 } else { 0.1 }) {
        v.push((Cond::Dementia, onset_between(rng, birth, 75, age)));
    }
    if female && age >= 60 && rng.chance(if age >= 70 { 0.3 } else { 0.15 }) {
        v.push((Cond::Osteoporosis, onset_between(rng, birth, 60, age)));
    }
    v
}

fn draw_traits(rng: &mut Rng, female: bool, age: i64, chronic: &[(Cond, i64)]) -> Traits {
    let has = |c: Cond| chronic.iter().any(|(x, _)| *x == c);
    let adult_age = age.max(18) as f64;
    let f = |m: f64, w: f64| if female { w } else { m };
    let sbp = if has(Cond::Hypertension) {
        rng.normal(136.0, 9.0)
    } else if age < 15 {
        rng.normal(102.0, 7.0)
    } else {
        rng.normal(104.0 + 0.35 * adult_age - f(0.0, 5.0), 8.0)
    };
    let height = if age >= 18 {
        rng.normal(f(171.0, 158.0), f(5.5, 5.0)) - (age - 50).max(0) as f64 * 0.12
    } else {
        0.0 // children: computed from age, see height_at
    };
    let bmi = if age < 15 {
        rng.normal(16.5, 1.3)
    } else {
        rng.normal(f(23.5, 21.8), 2.8) + if has(Cond::Diabetes2) { 2.5 } else { 0.0 }
    };
    let dm = has(Cond::Diabetes2);
    let lipid = has(Cond::Dyslipidaemia);
    let older = (age - 50).max(0) as f64;
    Traits {
        sbp,
        pulse: rng.normal(if age < 10 { 95.0 } else { 72.0 }, 7.0),
        height,
        bmi,
        hba1c: if dm {
            rng.normal(7.2, 0.7)
        } else {
            rng.normal(5.3 + 0.006 * adult_age, 0.22)
        },
        glucose: if dm {
            rng.normal(142.0, 22.0)
        } else {
            rng.normal(90.0, 7.0)
        },
        tg: if lipid {
            rng.normal(175.0, 45.0)
        } else {
            rng.normal(f(115.0, 85.0), 30.0)
        }
        .max(35.0),
        hdl: rng.normal(f(54.0, 66.0), 10.0),
        ldl: if lipid {
            rng.normal(142.0, 22.0)
        } else if age < 18 {
            rng.normal(90.0, 14.0)
        } else {
            rng.normal(100.0 + 0.4 * adult_age, 18.0)
        },
        ast: rng.normal(21.0 + 0.05 * older, 4.0).max(12.0),
        alt: rng.normal(f(22.0, 15.0), 6.0).max(8.0),
        ggt: rng.normal(f(34.0, 19.0), f(14.0, 6.0)).max(9.0),
        cre: if age < 15 {
            0.25 + 0.025 * age as f64
        } else {
            rng.normal(f(0.86, 0.64), 0.09) + 0.004 * older
        },
        ua: rng.normal(f(5.9, 4.5), 0.8),
        hb: rng.normal(f(14.9, 13.1), 0.8) - 0.03 * (age - 65).max(0) as f64,
        wbc: rng.normal(6.0, 1.2),
        plt: rng.normal(24.5, 4.0),
    }
}

fn height_at(p: &Person, day: i64) -> f64 {
    let age_days = (day - p.birth).max(0) as f64;
    let years = age_days / 365.25;
    if years < 18.0 {
        let adult = if p.female { 158.0 } else { 171.0 };
        // Smooth growth curve: 50 cm at birth towards the adult height.
        let grown =
            50.0 + (adult - 50.0) * (1.0 - (-years / 5.5).exp()) / (1.0 - (-18.0f64 / 5.5).exp());
        grown.min(adult)
    } else {
        p.traits.height
    }
}

fn choose_insurer(rng: &mut Rng, p: &Person) -> usize {
    let kind = if p.age >= 75 {
        InsurerKind::Koki
    } else {
        match rng.weighted(&[40, 30, 30]) {
            0 => InsurerKind::Kyokai,
            1 => InsurerKind::Kumiai,
            _ => InsurerKind::Kokuho,
        }
    };
    let idx = reference::insurer_index(kind, p.pref);
    if kind == InsurerKind::Kumiai {
        // Three societies: pick one.
        idx + rng.index(3)
    } else {
        idx
    }
}

/// (member id value, symbol, number, branch number).
fn member_id(rng: &mut Rng, insurer: usize, i: usize) -> (String, String, String, String) {
    let ins = &reference::insurers()[insurer];
    let symbol = match ins.kind {
        InsurerKind::Kokuho | InsurerKind::Koki => format!("{:02}", rng.range(1, 99)),
        _ => format!("{}-{:03}", rng.range(10, 99), rng.range(1, 999)),
    };
    let number = format!("{}", 10_000 + (i as u64 * 7_121 + rng.below(7)) % 9_000_000);
    let branch = format!("{:02}", rng.range(0, 3));
    let value = format!("{}:{}:{}:{}", ins.number, symbol, number, branch);
    (value, symbol, number, branch)
}

fn home_address(rng: &mut Rng, p: &Person) -> Value {
    let pref = &PREFECTURES[p.pref];
    let city = rng.pick(pref.cities);
    let town = *rng.pick(city.towns);
    let line = format!(
        "{town}{}-{}-{}",
        rng.range(1, 5),
        rng.range(1, 30),
        rng.range(1, 20)
    );
    let mut line_v = vec![Value::String(line.clone())];
    let mut text = format!("{}{}{}", pref.name, city.name, line);
    if rng.chance(0.35) {
        let room = format!("{}{:02}号室", rng.range(1, 9), rng.range(1, 12));
        text.push(' ');
        text.push_str(&room);
        line_v.push(Value::String(room));
    }
    obj! {
    "use" => "home",
    "text" => text,
    "line" => line_v,
    "city" => city.name,
    "state" => pref.name,
    "postalCode" => format!("{}-{:04}", city.postal3, rng.below(10_000)),
    "country" => "JP"}
}

fn phone(rng: &mut Rng, p: &Person) -> Value {
    if p.age >= 15 && p.age < 80 && rng.chance(0.7) {
        let prefix = *rng.pick(&["090", "080", "070"]);
        obj! {"system" => "phone", "value" => format!("{prefix}-{:04}-{:04}", rng.below(10_000), rng.below(10_000)), "use" => "mobile"}
    } else {
        let city = rng.pick(PREFECTURES[p.pref].cities);
        obj! {"system" => "phone", "value" => geo::phone(city.area_code, rng.next_u64(), rng.next_u64()), "use" => "home"}
    }
}

// --- Visits -------------------------------------------------------------------------------

fn clinic_minute(rng: &mut Rng) -> u32 {
    let morning = rng.chance(0.6);
    if morning {
        9 * 60 + rng.range(0, 170) as u32
    } else {
        14 * 60 + rng.range(0, 200) as u32
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_visits(
    rng: &mut Rng,
    p: &Person,
    window_start: i64,
    a_home: usize,
    a_hosp: Option<usize>,
    a_old: Option<(usize, i64)>,
    visits: &mut Vec<Visit>,
) {
    let attend_at = |day: i64| match a_old {
        Some((a, move_day)) if day < move_day => a,
        _ => a_home,
    };
    // Chronic follow-up: conditions managed in the outpatient clinic.
    let followed: Vec<(Cond, i64)> = p
        .chronic
        .iter()
        .copied()
        .filter(|(c, _)| *c != Cond::Pollinosis)
        .collect();
    if !followed.is_empty() {
        let first = followed
            .iter()
            .map(|(_, d)| *d)
            .min()
            .unwrap()
            .max(window_start);
        let interval = *rng.pick(&[28i64, 56, 84]);
        let mut day = first + rng.range(0, 20);
        while day < REFERENCE_DAY {
            let d = weekday(day);
            let conds: Vec<Cond> = followed
                .iter()
                .filter(|(c, onset)| *onset <= d && !(*c == Cond::Angina && a_hosp.is_some()))
                .map(|(c, _)| *c)
                .collect();
            if !conds.is_empty() && d < REFERENCE_DAY {
                visits.push(Visit {
                    day: d,
                    minute: clinic_minute(rng),
                    attend: attend_at(d),
                    setting: Setting::Ambulatory,
                    chronic: conds,
                    acute: None,
                    length_days: 0,
                });
            }
            day += interval + rng.range(-5, 10);
        }
        // Angina is followed up at the hospital (cardiology) twice a year.
        if let (Some(h), Some((_, onset))) =
            (a_hosp, followed.iter().find(|(c, _)| *c == Cond::Angina))
        {
            let mut day = (*onset).max(window_start) + rng.range(0, 60);
            while day < REFERENCE_DAY {
                let d = weekday(day);
                if d < REFERENCE_DAY {
                    visits.push(Visit {
                        day: d,
                        minute: clinic_minute(rng),
                        attend: h,
                        setting: Setting::Ambulatory,
                        chronic: vec![Cond::Angina],
                        acute: None,
                        length_days: 0,
                    });
                }
                day += 182 + rng.range(-20, 20);
            }
        }
    }
    // Pollinosis: a visit most springs for antihistamines.
    if let Some((_, onset)) = p.chronic.iter().find(|(c, _)| *c == Cond::Pollinosis) {
        for year in date::year(REFERENCE_DAY) - 5..date::year(REFERENCE_DAY) {
            let d = weekday(date::days_from_civil(year, 2, 10) + rng.range(0, 40));
            if d > *onset && d > window_start && rng.chance(0.6) {
                visits.push(Visit {
                    day: d,
                    minute: clinic_minute(rng),
                    attend: attend_at(d),
                    setting: Setting::Ambulatory,
                    chronic: vec![Cond::Pollinosis],
                    acute: None,
                    length_days: 0,
                });
            }
        }
    }
    // Acute problems over the last five years.
    let acute_start = (REFERENCE_DAY - 5 * YEAR).max(p.birth + 60);
    let span = (REFERENCE_DAY - acute_start).max(1);
    let years = span as f64 / YEAR as f64;
    let sample = |rng: &mut Rng, rate_per_year: f64| -> usize {
        // Poisson-ish: expected count `rate * years`, spread out.
        let expected = rate_per_year * years;
        let mut n = expected.floor() as usize;
        if rng.chance(expected - n as f64) {
            n += 1;
        }
        n
    };
    let uri_rate = if p.age < 7 {
        0.9
    } else if p.age < 15 {
        0.5
    } else {
        0.2
    };
    let plain = [
        (Cond::Uri, uri_rate),
        (Cond::Gastroenteritis, if p.age < 10 { 0.25 } else { 0.06 }),
        (Cond::Influenza, 0.06),
    ];
    for (c, rate) in plain {
        for _ in 0..sample(rng, rate) {
            let mut d = acute_start + rng.below(span as u64) as i64;
            if c == Cond::Influenza {
                // Influenza season: December to March.
                let (y, _, _) = date::civil_from_days(d);
                d = date::days_from_civil(y, 12, 1) + rng.range(0, 110);
                if d >= REFERENCE_DAY {
                    d -= YEAR;
                }
            }
            let d = weekday(d);
            if d >= REFERENCE_DAY {
                continue;
            }
            visits.push(Visit {
                day: d,
                minute: clinic_minute(rng),
                attend: attend_at(d),
                setting: Setting::Ambulatory,
                chronic: vec![],
                acute: Some(c),
                length_days: 0,
            });
        }
    }
    let Some(h) = a_hosp else {
        return;
    };
    let mut emergency = |rng: &mut Rng, c: Cond, admit_days: Option<(i64, i64)>| {
        let d = acute_start + rng.below(span as u64) as i64;
        let minute = rng.range(0, 1439) as u32;
        visits.push(Visit {
            day: d,
            minute,
            attend: h,
            setting: Setting::Emergency,
            chronic: vec![],
            acute: Some(c),
            length_days: 0,
        });
        if let Some((lo, hi)) = admit_days {
            let len = rng.range(lo, hi);
            if d + len < REFERENCE_DAY {
                visits.push(Visit {
                    day: d,
                    minute: (minute + 120).min(1439),
                    attend: h,
                    setting: Setting::Inpatient,
                    chronic: vec![],
                    acute: None,
                    length_days: len,
                });
            }
        }
    };
    if has(p, Cond::Asthma) {
        for _ in 0..sample(rng, 0.12) {
            emergency(rng, Cond::Asthma, None);
        }
    }
    if p.age >= 65 {
        for _ in 0..sample(rng, 0.012) {
            emergency(rng, Cond::ForearmFracture, Some((3, 14)));
        }
    }
    if p.age >= 70 {
        for _ in 0..sample(rng, 0.02) {
            emergency(rng, Cond::Pneumonia, Some((7, 18)));
        }
    }
    for _ in 0..sample(rng, 0.015) {
        emergency(rng, Cond::AbdominalPain, None);
    }
}

fn rx_days(rng: &mut Rng, setting: Setting) -> u32 {
    match setting {
        Setting::Ambulatory => *rng.pick(&[28u32, 28, 56, 84, 90]),
        _ => 7,
    }
}

fn chronic_drugs(c: Cond, p: &Person) -> Vec<Drug> {
    match c {
        Cond::Hypertension => {
            if p.traits.sbp > 142.0 {
                vec![Drug::AmlodipineOd10]
            } else {
                vec![Drug::Norvasc]
            }
        }
        Cond::Diabetes2 => {
            if p.traits.hba1c > 7.3 {
                vec![Drug::Metgluco, Drug::Jardiance]
            } else {
                vec![Drug::Metgluco]
            }
        }
        Cond::Dyslipidaemia => {
            if p.traits.ldl > 150.0 {
                vec![Drug::Atorvastatin]
            } else {
                vec![Drug::Crestor]
            }
        }
        Cond::Asthma if p.age >= 12 => vec![Drug::Symbicort],
        Cond::Angina => vec![Drug::BayAspirin],
        Cond::Dementia => vec![Drug::Donepezil],
        Cond::Gastritis => vec![Drug::MagnesiumOxide],
        Cond::Pollinosis => vec![Drug::Fexofenadine],
        _ => vec![],
    }
}

fn acute_drugs(c: Cond, rng: &mut Rng, p: &Person) -> Vec<Drug> {
    let child = p.age < 12;
    match c {
        Cond::Uri if child => vec![],
        Cond::Uri => {
            let mut v = vec![if rng.chance(0.5) {
                Drug::Calonal300
            } else {
                Drug::Calonal500
            }];
            if rng.chance(0.6) {
                v.push(if rng.chance(0.5) {
                    Drug::Carbocisteine
                } else {
                    Drug::Mucodyne
                });
            }
            v
        }
        Cond::Influenza if !child => vec![Drug::Calonal300],
        Cond::Gastroenteritis if !child => vec![Drug::MiyaBm],
        Cond::Asthma if !child => vec![Drug::Prednin],
        Cond::ForearmFracture => vec![Drug::Loxoprofen],
        Cond::Pneumonia => vec![Drug::Clarithromycin],
        Cond::AbdominalPain if !child => vec![Drug::MiyaBm],
        _ => vec![],
    }
}

// --- Resource builders --------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn condition(
    ctx: &Ctx,
    c: Cond,
    patient: &Rid,
    encounter: Option<&Rid>,
    category: &str,
    onset: i64,
    recorded: i64,
    abated: Option<i64>,
    (org, doctor): (usize, usize),
) -> Value {
    let def = codes::cond_def(c);
    let mut codings = Vec::with_capacity(2);
    if let Some(m) = def.medis {
        codings.push(coding(MEDIS_DISEASE, m, def.text));
    }
    codings.push(coding(ICD10, def.icd10, def.icd10_display));
    let category_display = if category == "problem-list-item" {
        "Problem List Item"
    } else {
        "Encounter Diagnosis"
    };
    let mut m = Map::new();
    m.insert("meta".into(), profile("JP_Condition"));
    m.insert(
        "clinicalStatus".into(),
        obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/condition-clinical",
        if abated.is_some() { "resolved" } else { "active" },
        if abated.is_some() { "Resolved" } else { "Active" })]},
    );
    m.insert(
        "verificationStatus".into(),
        obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")]},
    );
    m.insert(
        "category".into(),
        arr![obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/condition-category", category, category_display)]}],
    );
    m.insert(
        "code".into(),
        obj! {"coding" => codings, "text" => def.text},
    );
    m.insert("subject".into(), ctx.reference(patient));
    if let Some(e) = encounter {
        m.insert("encounter".into(), ctx.reference(e));
    }
    m.insert("onsetDateTime".into(), Value::String(date::date(onset)));
    if let Some(a) = abated {
        m.insert("abatementDateTime".into(), Value::String(date::date(a)));
    }
    m.insert("recordedDate".into(), Value::String(date::date(recorded)));
    m.insert("recorder".into(), prac_ref(org, doctor));
    Value::Object(m)
}

struct ObsCtx {
    patient: Rid,
    encounter: Option<Rid>,
    when: String,
    performer: Value,
    /// Patient-generated: tag + performer = the Patient.
    tag: bool,
}

fn pghd_meta(profile_name: Option<&str>) -> Value {
    let mut meta = obj! {
        "tag" => arr![coding(DATA_ORIGIN, PATIENT_GENERATED, "患者生成データ（PGHD）")]
    };
    if let Some(p) = profile_name {
        meta.as_object_mut()
            .unwrap()
            .insert("profile".into(), arr![format!("{JP_CORE_SD}{p}")]);
    }
    meta
}

fn obs_base(
    ctx: &Ctx,
    o: &ObsCtx,
    profile_name: Option<&str>,
    category: Value,
    code: Value,
) -> Map<String, Value> {
    let mut m = Map::new();
    if o.tag {
        m.insert("meta".into(), pghd_meta(profile_name));
    } else if let Some(p) = profile_name {
        m.insert("meta".into(), profile(p));
    }
    m.insert("status".into(), IntoJson::into_json("final"));
    m.insert("category".into(), category);
    m.insert("code".into(), code);
    m.insert("subject".into(), ctx.reference(&o.patient));
    if let Some(e) = &o.encounter {
        m.insert("encounter".into(), ctx.reference(e));
    }
    m.insert("effectiveDateTime".into(), Value::String(o.when.clone()));
    m.insert(
        "performer".into(),
        Value::Array(vec![if o.tag {
            ctx.reference(&o.patient)
        } else {
            o.performer.clone()
        }]),
    );
    m
}

fn vital_category() -> Value {
    arr![obj! {"coding" => arr![coding(JP_OBS_CATEGORY, "vital-signs", "Vital Signs")]}]
}

fn blood_pressure(ctx: &mut Ctx, o: &ObsCtx, sbp: f64, dbp: f64) {
    let r = ctx.alloc("Observation");
    let mut m = obs_base(
        ctx,
        o,
        Some("JP_Observation_VitalSigns"),
        vital_category(),
        obj! {"coding" => arr![coding(LOINC, "85354-9", "Blood pressure panel with all children optional")], "text" => "血圧"},
    );
    if o.tag {
        m.insert(
            "method".into(),
            obj! {"text" => "家庭血圧（上腕式自動血圧計）"},
        );
    }
    m.insert(
        "component".into(),
        arr![
            obj! {"code" => obj! {"coding" => arr![coding(LOINC, "8480-6", "Systolic blood pressure")], "text" => "収縮期血圧"},
             "valueQuantity" => ucum(dec(sbp, 0), "mm[Hg]", "mmHg")},
            obj! {"code" => obj! {"coding" => arr![coding(LOINC, "8462-4", "Diastolic blood pressure")], "text" => "拡張期血圧"},
             "valueQuantity" => ucum(dec(dbp, 0), "mm[Hg]", "mmHg")}
        ],
    );
    ctx.push(r, Value::Object(m));
}

#[allow(clippy::too_many_arguments)]
fn vital(
    ctx: &mut Ctx,
    o: &ObsCtx,
    loinc: &str,
    display: &str,
    text: &str,
    value: Value,
    code: &str,
    unit: &str,
) {
    let r = ctx.alloc("Observation");
    let mut m = obs_base(
        ctx,
        o,
        Some("JP_Observation_VitalSigns"),
        vital_category(),
        obj! {"coding" => arr![coding(LOINC, loinc, display)], "text" => text},
    );
    m.insert("valueQuantity".into(), ucum(value, code, unit));
    ctx.push(r, Value::Object(m));
}

fn body_weight(ctx: &mut Ctx, o: &ObsCtx, kg: f64) {
    body_measurement(
        ctx,
        o,
        "31000296",
        "体重",
        "weight",
        "29463-7",
        "Body weight",
        dec(kg, 1),
        "kg",
        "kg",
    );
}

#[allow(clippy::too_many_arguments)]
fn body_measurement(
    ctx: &mut Ctx,
    o: &ObsCtx,
    jp_code: &str,
    text: &str,
    jp_category: &str,
    loinc: &str,
    loinc_display: &str,
    value: Value,
    code: &str,
    unit: &str,
) {
    let r = ctx.alloc("Observation");
    let category = arr![
        obj! {"coding" => arr![coding(JP_OBS_CATEGORY, "body-measurement", "Body Measurement")]},
        obj! {"coding" => arr![coding(JP_BODY_CATEGORY, jp_category, text)]}
    ];
    let mut m = obs_base(
        ctx,
        o,
        Some("JP_Observation_BodyMeasurement"),
        category,
        obj! {"coding" => arr![coding(JP_BODY_CODE, jp_code, text), coding(LOINC, loinc, loinc_display)], "text" => text},
    );
    m.insert("valueQuantity".into(), ucum(value, code, unit));
    ctx.push(r, Value::Object(m));
}

fn lab_value(rng: &mut Rng, p: &Person, l: Lab, infection: bool) -> f64 {
    let t = &p.traits;
    let (base, rel_sd) = match l {
        Lab::HbA1c => (t.hba1c, 0.03),
        Lab::Glucose => (t.glucose, 0.08),
        Lab::Tg => (t.tg, 0.2),
        Lab::Hdl => (t.hdl, 0.06),
        Lab::Ldl => (t.ldl, 0.08),
        Lab::Ast => (t.ast, 0.12),
        Lab::Alt => (t.alt, 0.15),
        Lab::Ggt => (t.ggt, 0.12),
        Lab::Creatinine => (t.cre, 0.05),
        Lab::UricAcid => (t.ua, 0.07),
        Lab::Sodium => (140.5, 0.01),
        Lab::Potassium => (4.2, 0.05),
        Lab::Hemoglobin => (t.hb, 0.03),
        Lab::Wbc => (if infection { t.wbc + 5.5 } else { t.wbc }, 0.12),
        Lab::Platelets => (t.plt, 0.08),
    };
    let v = rng.normal(base, base.abs() * rel_sd);
    let floor = match l {
        Lab::Tg => 25.0,
        Lab::Ast | Lab::Alt | Lab::Ggt => 6.0,
        Lab::Creatinine => 0.15,
        Lab::Wbc => 1.5,
        Lab::Platelets => 5.0,
        _ => base * 0.3,
    };
    v.max(floor)
}

#[allow(clippy::too_many_arguments)]
fn lab_panel(
    ctx: &mut Ctx,
    rng: &mut Rng,
    p: &Person,
    o: &ObsCtx,
    day: i64,
    minute: u32,
    org: usize,
    labs: &[Lab],
    infection: bool,
) {
    let collected = date::date_time(day, minute + 5);
    let received = date::date_time(day, minute + 20);
    let issued = date::date_time(day, minute + 75);
    let specimen = |ctx: &mut Ctx, whole_blood: bool| -> Rid {
        let r = ctx.alloc("Specimen");
        let (code, display, text) = if whole_blood {
            ("BLD", "Whole blood", "全血")
        } else {
            ("SER", "Serum", "血清")
        };
        let res = obj! {
            "meta" => profile("JP_Specimen"),
            "status" => "available",
            "type" => obj! {"coding" => arr![coding(SPECIMEN_TYPE, code, display)], "text" => text},
            "subject" => ctx.reference(&o.patient),
            "receivedTime" => &received,
            "collection" => obj! {"collectedDateTime" => &collected}
        };
        ctx.push(r.clone(), res);
        r
    };
    let serum = labs
        .iter()
        .any(|&l| !codes::lab_def(l).whole_blood)
        .then(|| specimen(ctx, false));
    let blood = labs
        .iter()
        .any(|&l| codes::lab_def(l).whole_blood)
        .then(|| specimen(ctx, true));
    let lab_category =
        arr![obj! {"coding" => arr![coding(JP_OBS_CATEGORY, "laboratory", "Laboratory")]}];
    for &l in labs {
        let def = codes::lab_def(l);
        let v = lab_value(rng, p, l, infection);
        let (lo, hi) = if p.female { def.range_f } else { def.range_m };
        let rounded = {
            let f = 10f64.powi(def.decimals as i32);
            (v * f).round() / f
        };
        let (flag, flag_display) = if rounded > hi {
            ("H", "High")
        } else if rounded < lo {
            ("L", "Low")
        } else {
            ("N", "Normal")
        };
        let r = ctx.alloc("Observation");
        let o2 = ObsCtx {
            patient: o.patient.clone(),
            encounter: o.encounter.clone(),
            when: collected.clone(),
            performer: org_ref(org),
            tag: false,
        };
        let mut m = obs_base(
            ctx,
            &o2,
            Some("JP_Observation_LabResult"),
            lab_category.clone(),
            obj! {
            "coding" => arr![coding(JLAC10, def.jlac10, def.name), coding(CLINS_CORE_LABO, def.jlac10, def.core)],
            "text" => def.name},
        );
        m.insert("issued".into(), Value::String(issued.clone()));
        m.insert(
            "valueQuantity".into(),
            ucum(dec(v, def.decimals), def.ucum, def.unit),
        );
        m.insert(
            "interpretation".into(),
            arr![obj! {"coding" => arr![coding(INTERPRETATION, flag, flag_display)]}],
        );
        let spec = if def.whole_blood { &blood } else { &serum };
        m.insert(
            "specimen".into(),
            ctx.reference(spec.as_ref().expect("specimen allocated")),
        );
        m.insert(
            "referenceRange".into(),
            arr![obj! {
                "low" => ucum(dec(lo, def.decimals), def.ucum, def.unit),
                "high" => ucum(dec(hi, def.decimals), def.ucum, def.unit),
                "type" => obj! {"coding" => arr![coding(REFERENCE_RANGE_MEANING, "normal", "Normal Range")]}
            }],
        );
        ctx.push(r, Value::Object(m));
    }
}

#[allow(clippy::too_many_arguments)]
fn medication_request(
    ctx: &mut Ctx,
    d: Drug,
    days: u32,
    rp: u32,
    patient: &Rid,
    encounter: &Rid,
    reason: Option<&Rid>,
    day: i64,
    minute: u32,
    setting: Setting,
    (org, doctor): (usize, usize),
) {
    let def = codes::drug_def(d);
    let r = ctx.alloc("MedicationRequest");
    let mut med_codings = Vec::with_capacity(2);
    if let Some(yj) = def.yj {
        med_codings.push(coding(YJ, yj, def.name));
    }
    if let Some(h) = def.hot9 {
        med_codings.push(coding(HOT9, h, def.name));
    }
    let status = if day + days as i64 >= REFERENCE_DAY {
        "active"
    } else {
        "completed"
    };
    let (cat_code, cat_display) = match setting {
        Setting::Inpatient => ("DCG", "退院処方"),
        _ => ("OHP", "外来処方"),
    };
    let tab =
        |n: u32| obj! {"value" => n, "unit" => "錠", "system" => MERIT9_UNIT, "code" => "TAB"};
    let days_q = ucum(IntoJson::into_json(days), "d", "日");
    let (dosage, dispense) = match def.form {
        Form::Tablet => {
            let per_day = def.per_dose * def.times_per_day;
            let (usage_code, usage_display) = def.usage.expect("tablets have a usage code");
            let text = format!(
                "{} 1回{}錠（1日{}錠） {}日分",
                def.usage_text, def.per_dose, per_day, days
            );
            let dosage = obj! {
                "text" => text,
                "timing" => obj! {
                    "repeat" => obj! {
                        "boundsDuration" => days_q.clone(),
                        "frequency" => def.times_per_day,
                        "period" => 1,
                        "periodUnit" => "d"},
                    "code" => obj! {"coding" => arr![coding(JAMI_USAGE, usage_code, usage_display)], "text" => def.usage_text}
                },
                "route" => obj! {"coding" => arr![coding(ROUTE, "PO", "口")], "text" => "経口"},
                "method" => obj! {"coding" => arr![coding(JAMI_BASIC_USAGE, "1", "内服")]},
                "doseAndRate" => arr![obj! {
                    "type" => obj! {"coding" => arr![coding(STRENGTH_TYPE, "1", "製剤量")]},
                    "doseQuantity" => tab(def.per_dose),
                    "rateRatio" => obj! {
                        "numerator" => tab(per_day),
                        "denominator" => obj! {"value" => 1, "unit" => "日", "system" => UCUM, "code" => "d"}
                    }
                }]
            };
            let dispense = obj! {
            "quantity" => tab(per_day * days),
            "expectedSupplyDuration" => days_q};
            (dosage, dispense)
        }
        Form::Inhaler => {
            let dosage = obj! {
                "text" => def.usage_text,
                "timing" => obj! {"repeat" => obj! {"frequency" => def.times_per_day, "period" => 1, "periodUnit" => "d"}},
                "route" => obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/v2-0162", "IH", "Inhalation")], "text" => "吸入"}
            };
            let dispense = obj! {
            "quantity" => obj! {"value" => days.div_ceil(30), "unit" => "本", "system" => MERIT9_UNIT, "code" => "HON"},
            "expectedSupplyDuration" => days_q};
            (dosage, dispense)
        }
    };
    let mut m = Map::new();
    m.insert("meta".into(), profile("JP_MedicationRequest"));
    m.insert(
        "identifier".into(),
        arr![
            obj! {"system" => RP_NUMBER, "value" => rp.to_string()},
            obj! {"system" => ORDER_IN_RP, "value" => "1"}
        ],
    );
    m.insert("status".into(), IntoJson::into_json(status));
    m.insert("intent".into(), IntoJson::into_json("order"));
    m.insert(
        "category".into(),
        arr![obj! {"coding" => arr![coding(MED_CATEGORY, cat_code, cat_display)]}],
    );
    m.insert(
        "medicationCodeableConcept".into(),
        obj! {"coding" => med_codings, "text" => def.name},
    );
    m.insert("subject".into(), ctx.reference(patient));
    m.insert("encounter".into(), ctx.reference(encounter));
    m.insert(
        "authoredOn".into(),
        Value::String(date::date_time(day, minute)),
    );
    m.insert("requester".into(), prac_ref(org, doctor));
    if let Some(reason) = reason {
        m.insert("reasonReference".into(), arr![ctx.reference(reason)]);
    }
    m.insert("dosageInstruction".into(), arr![dosage]);
    m.insert("dispenseRequest".into(), dispense);
    ctx.push(r, Value::Object(m));
}

fn allergies(ctx: &mut Ctx, rng: &mut Rng, p: &Person, attends: &[Attend], a_home: usize) {
    let at = &attends[a_home];
    let add = |ctx: &mut Ctx,
               rng: &mut Rng,
               category: &str,
               system: &str,
               (code, display): (&str, &str),
               reaction: &str,
               onset: i64| {
        let r = ctx.alloc("AllergyIntolerance");
        let severe = rng.chance(0.15);
        let recorded = (onset + rng.range(0, 400)).min(REFERENCE_DAY - 1);
        let res = obj! {
            "meta" => profile("JP_AllergyIntolerance"),
            "clinicalStatus" => obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active")]},
            "verificationStatus" => obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed")]},
            "type" => "allergy",
            "category" => arr![category],
            "criticality" => if severe { "high" } else { "low" },
            "code" => obj! {"coding" => arr![coding(system, code, display)], "text" => display},
            "patient" => ctx.reference(&at.patient),
            "onsetDateTime" => date::date(onset),
            "recordedDate" => date::date(recorded),
            "recorder" => prac_ref(at.org, at.doctor),
            "reaction" => arr![obj! {
                "manifestation" => arr![obj! {"text" => reaction}],
                "severity" => if severe { "severe" } else { "moderate" }}]
        };
        ctx.push(r, res);
    };
    let food_p = if p.age < 15 { 0.08 } else { 0.03 };
    if rng.chance(food_p) {
        // Children mostly egg, milk, wheat.
        let idx = if p.age < 15 && rng.chance(0.7) {
            rng.index(3)
        } else {
            rng.index(FOOD_ALLERGENS.len())
        };
        let onset = onset_between(rng, p.birth, 0, p.age.min(10));
        let reaction = *rng.pick(&["蕁麻疹", "口腔内のかゆみ", "嘔吐", "アナフィラキシー"]);
        add(
            ctx,
            rng,
            "food",
            JFAGY_FOOD,
            FOOD_ALLERGENS[idx],
            reaction,
            onset,
        );
    }
    if has(p, Cond::Pollinosis) || (has(p, Cond::Asthma) && rng.chance(0.5)) {
        let idx = if has(p, Cond::Pollinosis) {
            0
        } else {
            1 + rng.index(ENVIRONMENT_ALLERGENS.len() - 1)
        };
        let onset = p
            .chronic
            .iter()
            .find(|(c, _)| matches!(c, Cond::Pollinosis | Cond::Asthma))
            .map(|(_, d)| *d)
            .unwrap_or(p.birth);
        let reaction = if idx == 0 {
            "鼻汁・くしゃみ・眼のかゆみ"
        } else {
            "喘鳴"
        };
        add(
            ctx,
            rng,
            "environment",
            JFAGY_NON_FOOD,
            ENVIRONMENT_ALLERGENS[idx],
            reaction,
            onset,
        );
    }
    if p.age >= 10 && rng.chance(0.03) {
        let a = *rng.pick(DRUG_ALLERGENS);
        let onset = onset_between(rng, p.birth, 10, p.age);
        let reaction = *rng.pick(&["薬疹", "蕁麻疹", "呼吸困難"]);
        add(
            ctx,
            rng,
            "medication",
            JFAGY_MEDICATION_GCM,
            a,
            reaction,
            onset,
        );
    }
}

fn immunizations(ctx: &mut Ctx, rng: &mut Rng, p: &Person, at: &Attend) {
    let add = |ctx: &mut Ctx, rng: &mut Rng, v: &VaccineDef, day: i64, dose: Option<u32>| {
        if day <= p.birth || day >= REFERENCE_DAY {
            return;
        }
        let r = ctx.alloc("Immunization");
        let day = weekday(day);
        let mut m = Map::new();
        m.insert("meta".into(), profile("JP_Immunization"));
        m.insert("status".into(), IntoJson::into_json("completed"));
        m.insert(
            "vaccineCode".into(),
            obj! {"coding" => arr![coding(CVX, v.cvx, v.cvx_display)], "text" => v.text},
        );
        m.insert("patient".into(), ctx.reference(&at.patient));
        m.insert(
            "occurrenceDateTime".into(),
            Value::String(date::date_time(
                day.min(REFERENCE_DAY - 1),
                clinic_minute(rng),
            )),
        );
        m.insert("primarySource".into(), IntoJson::into_json(true));
        m.insert(
            "lotNumber".into(),
            Value::String(format!(
                "{}{:04}",
                ["FA", "EY", "HK", "LT"][rng.index(4)],
                rng.below(10_000)
            )),
        );
        m.insert(
            "site".into(),
            obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/v3-ActSite", "LA", "left arm")]},
        );
        let (route, route_display) = if v.cvx == FLU_VACCINE.cvx {
            ("SQ", "Injection, subcutaneous")
        } else {
            ("IM", "Injection, intramuscular")
        };
        m.insert(
            "route".into(),
            obj! {"coding" => arr![coding("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", route, route_display)]},
        );
        m.insert(
            "doseQuantity".into(),
            ucum(
                Value::Number(Number::from_str(v.dose_ml).unwrap()),
                "mL",
                "mL",
            ),
        );
        m.insert(
            "performer".into(),
            arr![obj! {"actor" => prac_ref(at.org, at.doctor)}],
        );
        if let Some(n) = dose {
            m.insert(
                "protocolApplied".into(),
                arr![obj! {"doseNumberPositiveInt" => n}],
            );
        }
        ctx.push(r, Value::Object(m));
    };
    // Seasonal influenza, the last five seasons (October–December).
    let flu_p = if p.age >= 65 {
        0.55
    } else if p.age < 13 {
        0.45
    } else {
        0.3
    };
    let regular = rng.chance(flu_p * 1.3);
    for season in 2020..=2024 {
        if regular && rng.chance(0.8) {
            let d = date::days_from_civil(season, 10, 15) + rng.range(0, 60);
            add(ctx, rng, &FLU_VACCINE, d, None);
        }
    }
    // COVID-19 (age 12+ in 2021).
    if date::age_at(p.birth, date::days_from_civil(2021, 6, 1)) >= 12 && rng.chance(0.8) {
        let v = if rng.chance(0.8) {
            &COVID_PFIZER
        } else {
            &COVID_MODERNA
        };
        let start = if p.age >= 65 {
            date::days_from_civil(2021, 5, 20)
        } else {
            date::days_from_civil(2021, 7, 15)
        } + rng.range(0, 60);
        add(ctx, rng, v, start, Some(1));
        let second = start + 21 + rng.range(0, 7);
        add(ctx, rng, v, second, Some(2));
        if rng.chance(0.7) {
            let third = date::days_from_civil(2022, 2, 1) + rng.range(0, 120);
            add(ctx, rng, &COVID_PFIZER, third, Some(3));
            if p.age >= 60 && rng.chance(0.6) {
                let fourth = date::days_from_civil(2022, 10, 1) + rng.range(0, 90);
                add(ctx, rng, &COVID_PFIZER, fourth, Some(4));
            }
        }
    }
    // Pneumococcal vaccine at 65.
    if p.age >= 65 && rng.chance(0.4) {
        let d = p.birth + 65 * YEAR + rng.range(0, 300);
        add(ctx, rng, &PNEUMOCOCCAL, d, None);
    }
}

/// Patient-generated health data from a smartphone app / home devices: the last 14 days.
fn patient_generated(ctx: &mut Ctx, rng: &mut Rng, p: &Person, patient: &Rid) {
    if p.age < 15 {
        return;
    }
    let engaged = if has(p, Cond::Hypertension) || has(p, Cond::Diabetes2) {
        0.5
    } else {
        0.2
    };
    if !rng.chance(engaged) {
        return;
    }
    let steps_base = if p.age >= 75 {
        3_500.0
    } else if p.age >= 60 {
        6_000.0
    } else {
        7_500.0
    };
    let steps_base = rng.normal(steps_base, 1_200.0).max(800.0);
    let home_bp = has(p, Cond::Hypertension) || rng.chance(0.3);
    let dm = has(p, Cond::Diabetes2);
    let h = height_at(p, REFERENCE_DAY);
    let weight = p.traits.bmi * (h / 100.0) * (h / 100.0);
    for back in (1..=14).rev() {
        let day = REFERENCE_DAY - back;
        let morning = 6 * 60 + 30 + rng.range(0, 60) as u32;
        let base = |when: String| ObsCtx {
            patient: patient.clone(),
            encounter: None,
            when,
            performer: Value::Null,
            tag: true,
        };
        // Daily steps.
        {
            let o = base(date::date(day));
            let r = ctx.alloc("Observation");
            let mut m = obs_base(
                ctx,
                &o,
                None,
                arr![obj! {"coding" => arr![coding(JP_OBS_CATEGORY, "activity", "Activity")]}],
                obj! {"coding" => arr![coding(LOINC, "41950-7", "Number of steps in 24 hour Measured")], "text" => "歩数"},
            );
            let steps = rng.normal(steps_base, steps_base * 0.25).max(200.0);
            m.insert("valueQuantity".into(), ucum(dec(steps, 0), "/d", "歩/日"));
            ctx.push(r, Value::Object(m));
        }
        if home_bp {
            let o = base(date::date_time(day, morning));
            let sbp = p.traits.sbp + rng.normal(-3.0, 7.0);
            let dbp = sbp * 0.62 + rng.normal(0.0, 5.0);
            blood_pressure(ctx, &o, sbp, dbp);
        }
        if back % 2 == 0 {
            let o = base(date::date_time(day, morning + 5));
            body_weight(ctx, &o, weight + rng.normal(0.0, 0.4));
        }
        if dm && back % 2 == 1 {
            let o = base(date::date_time(day, morning + 10));
            let r = ctx.alloc("Observation");
            let mut m = obs_base(
                ctx,
                &o,
                None,
                arr![obj! {"coding" => arr![coding(JP_OBS_CATEGORY, "laboratory", "Laboratory")]}],
                obj! {"coding" => arr![coding(LOINC, "2339-0", "Glucose [Mass/volume] in Blood")], "text" => "血糖（自己測定）"},
            );
            m.insert("method".into(), obj! {"text" => "自己血糖測定（SMBG）"});
            let g = rng.normal(p.traits.glucose - 10.0, 18.0).max(60.0);
            m.insert("valueQuantity".into(), ucum(dec(g, 0), "mg/dL", "mg/dL"));
            ctx.push(r, Value::Object(m));
        }
    }
}
