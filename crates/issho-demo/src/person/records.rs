//! The resource builders of one person's record: Conditions, Observations (vital signs,
//! body measurements, laboratory panels, patient-generated data), MedicationRequests,
//! AllergyIntolerances, Immunizations and MedicationDispenses — each appended to the person's
//! entries by `generate`.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn condition(
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

pub(super) struct ObsCtx {
    pub(super) patient: Rid,
    pub(super) encounter: Option<Rid>,
    pub(super) when: String,
    pub(super) performer: Value,
    /// Patient-generated: tag + performer = the Patient.
    pub(super) tag: bool,
}

pub(super) fn pghd_meta(profile_name: Option<&str>) -> Value {
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

pub(super) fn obs_base(
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

pub(super) fn vital_category() -> Value {
    arr![obj! {"coding" => arr![coding(JP_OBS_CATEGORY, "vital-signs", "Vital Signs")]}]
}

pub(super) fn blood_pressure(ctx: &mut Ctx, o: &ObsCtx, sbp: f64, dbp: f64) {
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
pub(super) fn vital(
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

pub(super) fn body_weight(ctx: &mut Ctx, o: &ObsCtx, kg: f64) {
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
pub(super) fn body_measurement(
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

pub(super) fn lab_value(rng: &mut Rng, p: &Person, l: Lab, infection: bool) -> f64 {
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
pub(super) fn lab_panel(
    ctx: &mut Ctx,
    rng: &mut Rng,
    p: &Person,
    o: &ObsCtx,
    day: i64,
    minute: u32,
    org: usize,
    labs: &[Lab],
    infection: bool,
    forced: Option<f64>,
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
        // A value decided by the caller (the deliberate drug-safety signal) draws nothing.
        let v = match forced {
            Some(f) => f,
            None => lab_value(rng, p, l, infection),
        };
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
pub(super) fn medication_request(
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

pub(super) fn allergies(
    ctx: &mut Ctx,
    rng: &mut Rng,
    p: &Person,
    attends: &[Attend],
    a_home: usize,
) {
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

pub(super) fn immunizations(ctx: &mut Ctx, rng: &mut Rng, p: &Person, at: &Attend) {
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
pub(super) fn patient_generated(ctx: &mut Ctx, rng: &mut Rng, p: &Person, patient: &Rid) {
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

/// The pharmacy of the person's prefecture dispensed their three latest prescriptions.
pub(super) fn dispenses(ctx: &mut Ctx, pcode: &str) {
    let Some(pharmacy) = reference::institutions_in(pcode, Kind::Pharmacy).next() else {
        return;
    };
    // (the prescription's medication, subject, date, reference, Rp identifiers, quantity)
    type Prescription = (Value, Value, Value, Value, Value, Value);
    let prescriptions: Vec<Prescription> = ctx
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
                e.resource["identifier"].clone(),
                e.resource["dispenseRequest"]["quantity"].clone(),
            )
        })
        .collect();
    let n = prescriptions.len();
    for (medication, subject, authored, prescription, identifier, quantity) in
        prescriptions.into_iter().skip(n.saturating_sub(3))
    {
        let r = ctx.alloc("MedicationDispense");
        // JP Core's MedicationDispense: the Rp number and the order in the Rp of the
        // prescription dispensed, and the quantity (JP_MedicationDispense 1.1.2).
        let mut d = obj! {
        "meta" => profile("JP_MedicationDispense"),
        "identifier" => identifier,
        "status" => "completed",
        "medicationCodeableConcept" => medication,
        "subject" => subject,
        "performer" => arr![obj! {"actor" => org_ref(pharmacy)}],
        "authorizingPrescription" => arr![prescription],
        "quantity" => quantity};
        if authored.is_string() {
            d["whenHandedOver"] = authored;
        }
        ctx.push(r, d);
    }
}
