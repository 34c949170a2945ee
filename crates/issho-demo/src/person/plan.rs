//! What a person's life holds before it becomes resources: their chronic conditions and
//! traits, insurer, address and phone, and the visits, with the drugs each prescribes.

use super::*;

// --- Conditions and traits ----------------------------------------------------------------

pub(super) fn onset_between(rng: &mut Rng, birth: i64, lo_age: i64, hi_age: i64) -> i64 {
    let hi = hi_age.max(lo_age);
    let a = rng.range(lo_age, hi);
    (birth + a * YEAR + rng.range(0, 364)).min(REFERENCE_DAY - 30)
}

pub(super) fn chronic_conditions(
    rng: &mut Rng,
    female: bool,
    age: i64,
    birth: i64,
) -> Vec<(Cond, i64)> {
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

pub(super) fn draw_traits(
    rng: &mut Rng,
    female: bool,
    age: i64,
    chronic: &[(Cond, i64)],
) -> Traits {
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

pub(super) fn height_at(p: &Person, day: i64) -> f64 {
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

pub(super) fn choose_insurer(rng: &mut Rng, p: &Person) -> usize {
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
pub(super) fn member_id(
    rng: &mut Rng,
    insurer: usize,
    i: usize,
) -> (String, String, String, String) {
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

pub(super) fn home_address(rng: &mut Rng, p: &Person) -> Value {
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

pub(super) fn phone(rng: &mut Rng, p: &Person) -> Value {
    if p.age >= 15 && p.age < 80 && rng.chance(0.7) {
        let prefix = *rng.pick(&["090", "080", "070"]);
        obj! {"system" => "phone", "value" => format!("{prefix}-{:04}-{:04}", rng.below(10_000), rng.below(10_000)), "use" => "mobile"}
    } else {
        let city = rng.pick(PREFECTURES[p.pref].cities);
        obj! {"system" => "phone", "value" => geo::phone(city.area_code, rng.next_u64(), rng.next_u64()), "use" => "home"}
    }
}

// --- Visits -------------------------------------------------------------------------------

pub(super) fn clinic_minute(rng: &mut Rng) -> u32 {
    let morning = rng.chance(0.6);
    if morning {
        9 * 60 + rng.range(0, 170) as u32
    } else {
        14 * 60 + rng.range(0, 200) as u32
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan_visits(
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

pub(super) fn rx_days(rng: &mut Rng, setting: Setting) -> u32 {
    match setting {
        Setting::Ambulatory => *rng.pick(&[28u32, 28, 56, 84, 90]),
        _ => 7,
    }
}

pub(super) fn chronic_drugs(c: Cond, p: &Person) -> Vec<Drug> {
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

pub(super) fn acute_drugs(c: Cond, rng: &mut Rng, p: &Person) -> Vec<Drug> {
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
