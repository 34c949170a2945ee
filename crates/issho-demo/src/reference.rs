//! Shared reference data: institutions (hospitals, clinics, pharmacies), insurers, and the
//! practitioners working at the institutions. Independent of the population seed, so every
//! population shares the same ids (`Organization/demo-org-001`, …).

use crate::codes::*;
use crate::geo::{self, PREFECTURES};
use crate::jsonb::{IntoJson, arr, obj};
use crate::names;
use crate::rng::Rng;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Hospital,
    Clinic,
    Pharmacy,
}

/// A hand-written fictional institution.
pub struct InstitutionDef {
    pub name: &'static str,
    pub kind: Kind,
    pub pref: &'static str,
    /// Index into the prefecture's city list.
    pub city: usize,
    /// Two-digit county/city part and four-digit facility part of the 7-digit code.
    pub local: &'static str,
}

pub const INSTITUTIONS: &[InstitutionDef] = &[
    InstitutionDef {
        name: "東京中央総合病院",
        kind: Kind::Hospital,
        pref: "13",
        city: 0,
        local: "012345",
    },
    InstitutionDef {
        name: "世田谷さくら内科クリニック",
        kind: Kind::Clinic,
        pref: "13",
        city: 1,
        local: "031402",
    },
    InstitutionDef {
        name: "本郷こどもクリニック",
        kind: Kind::Clinic,
        pref: "13",
        city: 2,
        local: "021177",
    },
    InstitutionDef {
        name: "横浜みなと総合病院",
        kind: Kind::Hospital,
        pref: "14",
        city: 0,
        local: "010823",
    },
    InstitutionDef {
        name: "日吉ファミリークリニック",
        kind: Kind::Clinic,
        pref: "14",
        city: 1,
        local: "052210",
    },
    InstitutionDef {
        name: "大阪北部医療センター",
        kind: Kind::Hospital,
        pref: "27",
        city: 0,
        local: "030561",
    },
    InstitutionDef {
        name: "なにわ内科・循環器クリニック",
        kind: Kind::Clinic,
        pref: "27",
        city: 1,
        local: "041930",
    },
    InstitutionDef {
        name: "名古屋栄総合病院",
        kind: Kind::Hospital,
        pref: "23",
        city: 0,
        local: "011204",
    },
    InstitutionDef {
        name: "今池内科医院",
        kind: Kind::Clinic,
        pref: "23",
        city: 1,
        local: "060348",
    },
    InstitutionDef {
        name: "博多臨海総合病院",
        kind: Kind::Hospital,
        pref: "40",
        city: 0,
        local: "017745",
    },
    InstitutionDef {
        name: "天神ファミリークリニック",
        kind: Kind::Clinic,
        pref: "40",
        city: 1,
        local: "033619",
    },
    InstitutionDef {
        name: "札幌北光病院",
        kind: Kind::Hospital,
        pref: "01",
        city: 0,
        local: "018832",
    },
    InstitutionDef {
        name: "仙台青葉内科クリニック",
        kind: Kind::Clinic,
        pref: "04",
        city: 0,
        local: "025517",
    },
    InstitutionDef {
        name: "浦和さくら草クリニック",
        kind: Kind::Clinic,
        pref: "11",
        city: 0,
        local: "044126",
    },
    InstitutionDef {
        name: "船橋みなと病院",
        kind: Kind::Hospital,
        pref: "12",
        city: 1,
        local: "023390",
    },
    InstitutionDef {
        name: "京都鴨川病院",
        kind: Kind::Hospital,
        pref: "26",
        city: 0,
        local: "016654",
    },
    InstitutionDef {
        name: "広島平和通りクリニック",
        kind: Kind::Clinic,
        pref: "34",
        city: 0,
        local: "037781",
    },
    InstitutionDef {
        name: "那覇うりずんクリニック",
        kind: Kind::Clinic,
        pref: "47",
        city: 0,
        local: "014409",
    },
    InstitutionDef {
        name: "新宿ひまわり薬局",
        kind: Kind::Pharmacy,
        pref: "13",
        city: 0,
        local: "090112",
    },
    InstitutionDef {
        name: "梅田あおぞら薬局",
        kind: Kind::Pharmacy,
        pref: "27",
        city: 0,
        local: "090245",
    },
    InstitutionDef {
        name: "博多つばめ薬局",
        kind: Kind::Pharmacy,
        pref: "40",
        city: 0,
        local: "090318",
    },
    InstitutionDef {
        name: "札幌すずらん薬局",
        kind: Kind::Pharmacy,
        pref: "01",
        city: 0,
        local: "090427",
    },
];

/// Number of practitioners per institution kind.
pub fn staff_count(kind: Kind) -> usize {
    match kind {
        Kind::Hospital => 6,
        Kind::Clinic => 2,
        Kind::Pharmacy => 2,
    }
}

/// Hospital departments, one per practitioner slot (cycled).
const HOSPITAL_DEPARTMENTS: &[&str] = &[
    "内科",
    "循環器内科",
    "救急科",
    "整形外科",
    "呼吸器内科",
    "小児科",
];

/// Check digit (modulus 10, weights 2-1, digit sums of the products).
pub fn check_digit(digits: &str) -> u32 {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let d = (c - b'0') as u32;
        let p = if i % 2 == 0 { d * 2 } else { d };
        sum += p / 10 + p % 10;
    }
    (10 - sum % 10) % 10
}

/// The 10-digit medical institution code of institution `k`.
pub fn institution_code(k: usize) -> String {
    let inst = &INSTITUTIONS[k];
    let category = if inst.kind == Kind::Pharmacy {
        '4'
    } else {
        '1'
    };
    format!(
        "{}{}{}{}",
        inst.pref,
        category,
        inst.local,
        check_digit(inst.local)
    )
}

/// Id of institution `k` (0-based): `demo-org-001`, …
pub fn org_id(k: usize) -> String {
    format!("demo-org-{:03}", k + 1)
}

/// Institutions in a prefecture of a given kind.
pub fn institutions_in(pref: &str, kind: Kind) -> impl Iterator<Item = usize> + '_ {
    INSTITUTIONS
        .iter()
        .enumerate()
        .filter(move |(_, i)| i.pref == pref && i.kind == kind)
        .map(|(k, _)| k)
}

/// Practitioner `n` of institution `k` has the global index returned here.
pub fn practitioner_index(k: usize, n: usize) -> usize {
    INSTITUTIONS[..k]
        .iter()
        .map(|i| staff_count(i.kind))
        .sum::<usize>()
        + n
}

pub fn practitioner_id(global: usize) -> String {
    format!("demo-prac-{:03}", global + 1)
}

pub fn role_id(global: usize) -> String {
    format!("demo-role-{:03}", global + 1)
}

// --- Insurers -----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsurerKind {
    /// 全国健康保険協会 (協会けんぽ), one branch per prefecture.
    Kyokai,
    /// 国民健康保険 of the prefecture's first city.
    Kokuho,
    /// 後期高齢者医療広域連合 of the prefecture.
    Koki,
    /// Company health insurance society (健康保険組合), nationwide.
    Kumiai,
}

pub struct Insurer {
    pub kind: InsurerKind,
    pub pref: usize,
    pub name: String,
    pub number: String,
}

const KUMIAI: &[&str] = &[
    "あおば電機健康保険組合",
    "みなと商事健康保険組合",
    "さくら運輸健康保険組合",
];

/// All insurers: per prefecture 協会けんぽ, 国保, 後期高齢者; then the insurance societies.
pub fn insurers() -> &'static [Insurer] {
    static INSURERS: std::sync::OnceLock<Vec<Insurer>> = std::sync::OnceLock::new();
    INSURERS.get_or_init(|| {
        let mut v = Vec::new();
        for (p, pref) in PREFECTURES.iter().enumerate() {
            let with_check = |body: String| {
                let c = check_digit(&body);
                format!("{body}{c}")
            };
            v.push(Insurer {
                kind: InsurerKind::Kyokai,
                pref: p,
                name: format!(
                    "全国健康保険協会 {}支部",
                    pref.name.trim_end_matches(['都', '府', '県'])
                ),
                number: with_check(format!("01{}001", pref.code)),
            });
            let city = pref.cities[0].name;
            v.push(Insurer {
                kind: InsurerKind::Kokuho,
                pref: p,
                name: format!("{}国民健康保険", city_of(city)),
                number: with_check(format!("{}{:03}", pref.code, 101 + p)),
            });
            v.push(Insurer {
                kind: InsurerKind::Koki,
                pref: p,
                name: format!("{}後期高齢者医療広域連合", pref.name),
                number: with_check(format!("39{}001", pref.code)),
            });
        }
        for (n, name) in KUMIAI.iter().enumerate() {
            v.push(Insurer {
                kind: InsurerKind::Kumiai,
                pref: geo::prefecture_index("13"),
                name: (*name).to_string(),
                number: with_check_static(format!("0613{:03}", 301 + n)),
            });
        }
        v
    })
}

fn with_check_static(body: String) -> String {
    let c = check_digit(&body);
    format!("{body}{c}")
}

/// "札幌市中央区" → "札幌市" (the municipality that runs the national health insurance).
fn city_of(name: &str) -> &str {
    match name.find('市') {
        Some(i) => &name[..i + '市'.len_utf8()],
        None => name,
    }
}

pub fn insurer_id(k: usize) -> String {
    format!("demo-ins-{:03}", k + 1)
}

pub fn insurer_index(kind: InsurerKind, pref: usize) -> usize {
    insurers()
        .iter()
        .position(|i| i.kind == kind && (kind == InsurerKind::Kumiai || i.pref == pref))
        .expect("insurer exists")
}

// --- Practitioners ------------------------------------------------------------------------

pub struct Staff {
    pub female: bool,
    pub family: (&'static str, &'static str),
    pub given: (&'static str, &'static str),
    pub birth_year: i64,
}

/// Deterministic practitioner demographics (fixed seed, independent of the population).
pub fn staff(global: usize) -> Staff {
    let mut rng = Rng::for_item(0x5747_4646, 1, global as u64);
    let female = rng.chance(0.35);
    let birth_year = rng.range(1955, 1995);
    let family = names::SURNAMES[rng.weighted(names::surname_weights())];
    let given = *rng.pick(names::given_names(female, birth_year));
    Staff {
        female,
        family,
        given,
        birth_year,
    }
}

pub fn human_names(family: (&str, &str), given: (&str, &str), use_official: bool) -> Value {
    let name = |rep: &str, f: &str, g: &str| {
        let mut m = serde_json::Map::with_capacity(5);
        m.insert(
            "extension".into(),
            arr![obj! {"url" => EN_REPRESENTATION, "valueCode" => rep}],
        );
        if use_official {
            m.insert("use".into(), "official".into_json());
        }
        m.insert("text".into(), format!("{f} {g}").into_json());
        m.insert("family".into(), f.into_json());
        m.insert("given".into(), arr![g]);
        Value::Object(m)
    };
    arr![
        name("IDE", family.0, given.0),
        name("SYL", family.1, given.1)
    ]
}

fn org_address(inst: &InstitutionDef, k: usize) -> Value {
    let pref = &PREFECTURES[geo::prefecture_index(inst.pref)];
    let city = &pref.cities[inst.city % pref.cities.len()];
    let town = city.towns[k % city.towns.len()];
    let line = format!(
        "{town}{}-{}-{}",
        1 + k % 5,
        1 + (k * 7) % 20,
        1 + (k * 3) % 15
    );
    obj! {
    "use" => "work",
    "text" => format!("{}{}{}", pref.name, city.name, line),
    "line" => arr![line],
    "city" => city.name,
    "state" => pref.name,
    "postalCode" => format!("{}-{:04}", city.postal3, (k * 37 + 11) % 10_000),
    "country" => "JP"}
}

fn org_phone(inst: &InstitutionDef, k: usize) -> String {
    let pref = &PREFECTURES[geo::prefecture_index(inst.pref)];
    let city = &pref.cities[inst.city % pref.cities.len()];
    geo::phone(
        city.area_code,
        2_000 + (k as u64) * 373,
        1_000 + (k as u64) * 611,
    )
}

/// The resources of the reference bundle, in order, as `(type, id, resource)`; references between
/// them are produced by `reference(type, id)`.
pub fn reference_resources(
    reference: &dyn Fn(&str, &str) -> String,
) -> Vec<(&'static str, String, Value)> {
    let mut out = Vec::new();
    for (k, inst) in INSTITUTIONS.iter().enumerate() {
        let code = institution_code(k);
        let type_text = match inst.kind {
            Kind::Hospital => "病院",
            Kind::Clinic => "診療所",
            Kind::Pharmacy => "薬局",
        };
        let org = obj! {
            "resourceType" => "Organization",
            "id" => org_id(k),
            "meta" => obj! {"profile" => arr![format!("{JP_CORE_SD}JP_Organization")]},
            "extension" => arr![
                obj! {"url" => format!("{JP_CORE_EXT}JP_Organization_PrefectureNo"),
                 "valueCoding" => obj! {"system" => PREFECTURE_NO, "code" => inst.pref}},
                obj! {"url" => format!("{JP_CORE_EXT}JP_Organization_InsuranceOrganizationCategory"),
                 "valueCoding" => obj! {"system" => FEE_TABLE_CATEGORY, "code" => &code[2..3]}},
                obj! {"url" => format!("{JP_CORE_EXT}JP_Organization_InsuranceOrganizationNo"),
                 "valueIdentifier" => obj! {"system" => INSTITUTION_NO7, "value" => &code[3..]}}
            ],
            "identifier" => arr![obj! {"system" => MEDICAL_INSTITUTION_NO, "value" => code}],
            "active" => true,
            "type" => arr![obj! {
                "coding" => arr![obj! {"system" => ORGANIZATION_TYPE, "code" => "prov", "display" => "Healthcare Provider"}],
                "text" => type_text}],
            "name" => inst.name,
            "telecom" => arr![obj! {"system" => "phone", "value" => org_phone(inst, k), "use" => "work"}],
            "address" => arr![org_address(inst, k)]
        };
        out.push(("Organization", org_id(k), org));
    }
    for (k, ins) in insurers().iter().enumerate() {
        let org = obj! {
        "resourceType" => "Organization",
        "id" => insurer_id(k),
        "meta" => obj! {"profile" => arr![format!("{JP_CORE_SD}JP_Organization")]},
        "identifier" => arr![obj! {"system" => INSURER_NUMBER, "value" => &ins.number}],
        "active" => true,
        "type" => arr![obj! {"coding" => arr![obj! {"system" => ORGANIZATION_TYPE, "code" => "pay", "display" => "Payer"}]}],
        "name" => &ins.name};
        out.push(("Organization", insurer_id(k), org));
    }
    for (k, inst) in INSTITUTIONS.iter().enumerate() {
        for n in 0..staff_count(inst.kind) {
            let g = practitioner_index(k, n);
            let s = staff(g);
            let pharmacist = inst.kind == Kind::Pharmacy;
            let mut prac = obj! {
            "resourceType" => "Practitioner",
            "id" => practitioner_id(g),
            "meta" => obj! {"profile" => arr![format!("{JP_CORE_SD}JP_Practitioner")]},
            "active" => true,
            "name" => human_names(s.family, s.given, false),
            "gender" => if s.female { "female" } else { "male" },
            "birthDate" => format!("{}-{:02}-{:02}", s.birth_year, 1 + g % 12, 1 + (g * 7) % 28)};
            if !pharmacist {
                prac.as_object_mut().unwrap().insert(
                    "qualification".into(),
                    arr![obj! {
                        "identifier" => arr![obj! {"system" => MEDICAL_REGISTRATION_NO, "value" => format!("{:06}", 300_000 + g * 1_237 % 200_000)}],
                        "code" => obj! {"coding" => arr![obj! {"system" => MEDICAL_LICENSE_CS, "code" => "medical-registration"}]}
                    }],
                );
            }
            out.push(("Practitioner", practitioner_id(g), prac));
            let (role_code, role_display, specialty) = if pharmacist {
                ("pharmacist", "Pharmacist", "薬剤部")
            } else if inst.kind == Kind::Hospital {
                (
                    "doctor",
                    "Doctor",
                    HOSPITAL_DEPARTMENTS[n % HOSPITAL_DEPARTMENTS.len()],
                )
            } else if inst.name.contains("こども") {
                ("doctor", "Doctor", "小児科")
            } else {
                ("doctor", "Doctor", "内科")
            };
            let role = obj! {
                "resourceType" => "PractitionerRole",
                "id" => role_id(g),
                "meta" => obj! {"profile" => arr![format!("{JP_CORE_SD}JP_PractitionerRole")]},
                "active" => true,
                "practitioner" => obj! {"reference" => reference("Practitioner", &practitioner_id(g))},
                "organization" => obj! {"reference" => reference("Organization", &org_id(k))},
                "code" => arr![obj! {"coding" => arr![obj! {"system" => PRACTITIONER_ROLE, "code" => role_code, "display" => role_display}]}],
                "specialty" => arr![obj! {"text" => specialty}]
            };
            out.push(("PractitionerRole", role_id(g), role));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_well_formed_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in 0..INSTITUTIONS.len() {
            let c = institution_code(k);
            assert_eq!(c.len(), 10, "{c}");
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
            assert!(seen.insert(c));
        }
        let mut seen = std::collections::HashSet::new();
        for i in insurers() {
            assert!(matches!(i.number.len(), 6 | 8), "{}", i.number);
            assert!(seen.insert(i.number.clone()));
        }
        // Luhn-style check digit on a known value: 7992739871 → 3.
        assert_eq!(check_digit("7992739871"), 3);
    }

    #[test]
    fn every_prefecture_has_a_medical_institution() {
        for p in PREFECTURES {
            assert!(
                INSTITUTIONS
                    .iter()
                    .any(|i| i.pref == p.code && i.kind != Kind::Pharmacy),
                "{}",
                p.name
            );
        }
    }
}
