//! Canonical URLs, identifier systems and the clinical code tables used by the generator.
//!
//! Identifier systems and profile URLs follow JP Core 1.1.2; terminology systems follow
//! JP-CLINS 1.5.2 (the newer exchange specification). Codes were chosen from the published
//! specifications and their examples; lists are short on purpose (a demo, not a terminology
//! server).

// --- Profiles (JP Core 1.1.2) -------------------------------------------------------------
pub const JP_CORE_SD: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/";
pub const JP_CORE_EXT: &str = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/";

// --- Identifier systems -------------------------------------------------------------------
/// Patient ID of a medical institution: this prefix + "1" + the 10-digit institution code.
pub const PATIENT_ID_OID_PREFIX: &str = "urn:oid:1.2.392.100495.20.3.51.";
/// Insurance member ID (insurer number:symbol:number:branch), JP-CLINS.
pub const INSURANCE_MEMBER_ID: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";
/// 10-digit medical institution code (prefecture 2 + fee-table category 1 + institution 7).
pub const MEDICAL_INSTITUTION_NO: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
/// Insurer number (保険者番号).
pub const INSURER_NUMBER: &str = "urn:oid:1.2.392.100495.20.3.61";
pub const PREFECTURE_NO: &str = "urn:oid:1.2.392.100495.20.3.21";
pub const FEE_TABLE_CATEGORY: &str = "urn:oid:1.2.392.100495.20.3.22";
pub const INSTITUTION_NO7: &str = "urn:oid:1.2.392.100495.20.3.23";
pub const MEDICAL_REGISTRATION_NO: &str = "urn:oid:1.2.392.100495.20.3.31";
pub const MEDICAL_LICENSE_CS: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicalLicenseCertificate_CS";
pub const RP_NUMBER: &str = "urn:oid:1.2.392.100495.20.3.81";
pub const ORDER_IN_RP: &str = "urn:oid:1.2.392.100495.20.3.82";

// --- Code systems -------------------------------------------------------------------------
pub const JLAC10: &str = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits";
pub const CLINS_CORE_LABO: &str =
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS";
pub const YJ: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";
pub const HOT9: &str = "http://medis.or.jp/CodeSystem/master-HOT9";
pub const MEDIS_DISEASE: &str = "http://medis.or.jp/CodeSystem/master-disease-keyNumber";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
pub const JFAGY_FOOD: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS";
pub const JFAGY_NON_FOOD: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyNonFoodNonMedicationAllergen_CS";
pub const JFAGY_MEDICATION_GCM: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/GCM/JP_JfagyMedicationAllergen_CS";
pub const JAMI_USAGE: &str = "http://jami.jp/CodeSystem/MedicationUsage";
pub const JAMI_BASIC_USAGE: &str = "http://jami.jp/CodeSystem/MedicationMethodBasicUsage";
pub const MERIT9_UNIT: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code";
pub const STRENGTH_TYPE: &str =
    "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationIngredientStrengthStrengthType";
pub const ROUTE: &str = "http://jpfhir.jp/fhir/core/CodeSystem/route-codes";
pub const MED_CATEGORY: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCategoryMERIT9_CS";
pub const JP_OBS_CATEGORY: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS";
pub const JP_BODY_CATEGORY: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationBodyMeasurementCategory_CS";
pub const JP_BODY_CODE: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationBodyMeasurementCode_CS";
pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
pub const REFERENCE_RANGE_MEANING: &str =
    "http://terminology.hl7.org/CodeSystem/referencerange-meaning";
pub const SPECIMEN_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0487";
pub const PRACTITIONER_ROLE: &str = "http://terminology.hl7.org/CodeSystem/practitioner-role";
pub const ORGANIZATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";
pub const COVERAGE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const EN_REPRESENTATION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";

/// The project's own tag marking patient-generated health data (PGHD).
pub const DATA_ORIGIN: &str = "https://example.invalid/issho/fhir/CodeSystem/data-origin";
pub const PATIENT_GENERATED: &str = "patient-generated";

// --- Conditions ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Hypertension,
    Diabetes2,
    Dyslipidaemia,
    Asthma,
    Pollinosis,
    AtopicDermatitis,
    Angina,
    Gastritis,
    DuodenalUlcer,
    Dementia,
    Osteoporosis,
    // Acute problems (encounter diagnoses).
    Uri,
    Gastroenteritis,
    Influenza,
    ForearmFracture,
    Pneumonia,
    AbdominalPain,
}

pub struct CondDef {
    pub text: &'static str,
    pub icd10: &'static str,
    pub icd10_display: &'static str,
    /// MEDIS standard disease master management number, when known from the specifications.
    pub medis: Option<&'static str>,
}

pub fn cond_def(c: Cond) -> CondDef {
    use Cond::*;
    let (text, icd10, icd10_display, medis) = match c {
        Hypertension => (
            "高血圧症",
            "I10",
            "Essential (primary) hypertension",
            Some("20061593"),
        ),
        Diabetes2 => (
            "２型糖尿病",
            "E11.9",
            "Type 2 diabetes mellitus without complications",
            None,
        ),
        Dyslipidaemia => ("脂質異常症", "E78.5", "Hyperlipidaemia, unspecified", None),
        Asthma => ("気管支喘息", "J45.9", "Asthma, unspecified", None),
        Pollinosis => ("花粉症", "J30.1", "Allergic rhinitis due to pollen", None),
        AtopicDermatitis => (
            "アトピー性皮膚炎",
            "L20.9",
            "Atopic dermatitis, unspecified",
            None,
        ),
        Angina => (
            "狭心症",
            "I20.9",
            "Angina pectoris, unspecified",
            Some("20058911"),
        ),
        Gastritis => ("胃炎", "K29.7", "Gastritis, unspecified", Some("20054174")),
        DuodenalUlcer => (
            "十二指腸潰瘍",
            "K26.9",
            "Duodenal ulcer, unspecified",
            Some("20064049"),
        ),
        Dementia => (
            "アルツハイマー型認知症",
            "G30.9",
            "Alzheimer disease, unspecified",
            None,
        ),
        Osteoporosis => ("骨粗鬆症", "M81.9", "Osteoporosis, unspecified", None),
        Uri => (
            "急性上気道炎",
            "J06.9",
            "Acute upper respiratory infection, unspecified",
            None,
        ),
        Gastroenteritis => (
            "感染性胃腸炎",
            "A09.0",
            "Other and unspecified gastroenteritis and colitis of infectious origin",
            None,
        ),
        Influenza => (
            "インフルエンザ",
            "J11.1",
            "Influenza with other respiratory manifestations, virus not identified",
            None,
        ),
        ForearmFracture => (
            "前腕骨折",
            "S52.9",
            "Fracture of forearm, part unspecified",
            Some("20080427"),
        ),
        Pneumonia => ("肺炎", "J18.9", "Pneumonia, unspecified", None),
        AbdominalPain => (
            "腹痛症",
            "R10.4",
            "Other and unspecified abdominal pain",
            Some("20075383"),
        ),
    };
    CondDef {
        text,
        icd10,
        icd10_display,
        medis,
    }
}

// --- Medications --------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Oral tablet, dose and quantity in 錠 (MERIT-9 `TAB`).
    Tablet,
    /// Inhaler, dispensed as 本 (MERIT-9 `HON`).
    Inhaler,
}

pub struct DrugDef {
    pub yj: Option<&'static str>,
    pub hot9: Option<&'static str>,
    pub name: &'static str,
    pub form: Form,
    /// JAMI 16-digit usage code and its text, when the usage has one.
    pub usage: Option<(&'static str, &'static str)>,
    pub usage_text: &'static str,
    pub per_dose: u32,
    pub times_per_day: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drug {
    Norvasc,
    AmlodipineOd10,
    Metgluco,
    Jardiance,
    Crestor,
    Atorvastatin,
    Symbicort,
    Fexofenadine,
    Calonal300,
    Calonal500,
    Carbocisteine,
    MiyaBm,
    Prednin,
    BayAspirin,
    Donepezil,
    MagnesiumOxide,
    Mucodyne,
    Loxoprofen,
    Clarithromycin,
}

const ONCE_MORNING: (&str, &str) = ("1011000400000000", "内服・経口・１日１回朝食後");
const ONCE_EVENING: (&str, &str) = ("1011040000000000", "内服・経口・１日１回夕食後");
const ONCE_BEDTIME: (&str, &str) = ("1011100000000000", "内服・経口・１日１回就寝前");
const TWICE: (&str, &str) = ("1012040400000000", "内服・経口・１日２回朝夕食後");
const THRICE: (&str, &str) = ("1013044400000000", "内服・経口・１日３回朝昼夕食後");

pub fn drug_def(d: Drug) -> DrugDef {
    use Drug::*;
    let t = |yj, hot9, name, usage: (&'static str, &'static str), text, per_dose, times| DrugDef {
        yj,
        hot9,
        name,
        form: Form::Tablet,
        usage: Some(usage),
        usage_text: text,
        per_dose,
        times_per_day: times,
    };
    match d {
        Norvasc => t(
            Some("2171022F1029"),
            Some("103297001"),
            "ノルバスク錠２．５ｍｇ",
            ONCE_MORNING,
            "1日1回朝食後",
            1,
            1,
        ),
        AmlodipineOd10 => t(
            Some("2171022F6276"),
            Some("121431401"),
            "アムロジピンＯＤ錠１０ｍｇ",
            ONCE_MORNING,
            "1日1回朝食後",
            1,
            1,
        ),
        Metgluco => t(
            Some("3962002F2027"),
            None,
            "メトグルコ錠２５０ｍｇ",
            TWICE,
            "1日2回朝夕食後",
            1,
            2,
        ),
        Jardiance => t(
            Some("3969023F1023"),
            None,
            "ジャディアンス錠１０ｍｇ",
            ONCE_MORNING,
            "1日1回朝食後",
            1,
            1,
        ),
        Crestor => t(
            Some("2189017F1022"),
            None,
            "クレストール錠２．５ｍｇ",
            ONCE_EVENING,
            "1日1回夕食後",
            1,
            1,
        ),
        Atorvastatin => t(
            Some("2189015F1082"),
            None,
            "アトルバスタチン錠５ｍｇ「ＤＳＥＰ」",
            ONCE_EVENING,
            "1日1回夕食後",
            1,
            1,
        ),
        Fexofenadine => t(
            Some("4490023F1270"),
            None,
            "フェキソフェナジン塩酸塩錠「サワイ」",
            TWICE,
            "1日2回朝夕食後",
            1,
            2,
        ),
        Calonal300 => t(
            Some("1141007F1063"),
            None,
            "カロナール錠３００",
            THRICE,
            "1日3回朝昼夕食後",
            1,
            3,
        ),
        Calonal500 => t(
            Some("1141007F3023"),
            Some("123812902"),
            "カロナール錠５００",
            THRICE,
            "1日3回朝昼夕食後",
            1,
            3,
        ),
        Carbocisteine => t(
            Some("2233002F1280"),
            Some("103831601"),
            "カルボシステイン錠２５０ｍｇ「サワイ」",
            THRICE,
            "1日3回朝昼夕食後",
            2,
            3,
        ),
        MiyaBm => t(
            Some("2316009F1022"),
            Some("104195801"),
            "ミヤＢＭ錠",
            THRICE,
            "1日3回朝昼夕食後",
            1,
            3,
        ),
        Prednin => t(
            Some("2456001F1310"),
            Some("105271807"),
            "プレドニン錠５ｍｇ",
            ONCE_MORNING,
            "1日1回朝食後",
            2,
            1,
        ),
        BayAspirin => t(
            Some("3399007H1021"),
            None,
            "バイアスピリン錠１００ｍｇ",
            ONCE_MORNING,
            "1日1回朝食後",
            1,
            1,
        ),
        Donepezil => t(
            Some("1190012F1042"),
            None,
            "ドネペジル塩酸塩錠「ＤＳＥＰ」",
            ONCE_MORNING,
            "1日1回朝食後",
            1,
            1,
        ),
        MagnesiumOxide => t(
            Some("2344009F1086"),
            None,
            "酸化マグネシウム錠「ケンエー」",
            ONCE_BEDTIME,
            "1日1回就寝前",
            2,
            1,
        ),
        Mucodyne => t(
            None,
            Some("103835401"),
            "ムコダイン錠２５０ｍｇ",
            THRICE,
            "1日3回朝昼夕食後",
            1,
            3,
        ),
        Loxoprofen => t(
            Some("1149019F1706"),
            None,
            "ロキソプロフェンＮａ錠６０ｍｇ「ＴＣＫ」",
            THRICE,
            "1日3回朝昼夕食後",
            1,
            3,
        ),
        Clarithromycin => t(
            Some("6149003F2100"),
            None,
            "クラリスロマイシン錠２００ｍｇ「サワイ」",
            TWICE,
            "1日2回朝夕食後",
            1,
            2,
        ),
        Symbicort => DrugDef {
            yj: Some("2290801G1029"),
            hot9: None,
            name: "シムビコートタービュヘイラー",
            form: Form::Inhaler,
            usage: None,
            usage_text: "1日2回朝夕 1回1吸入",
            per_dose: 1,
            times_per_day: 2,
        },
    }
}

// --- Laboratory tests ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lab {
    HbA1c,
    Glucose,
    Tg,
    Hdl,
    Ldl,
    Ast,
    Alt,
    Ggt,
    Creatinine,
    UricAcid,
    Sodium,
    Potassium,
    Hemoglobin,
    Wbc,
    Platelets,
}

pub struct LabDef {
    pub jlac10: &'static str,
    /// JP-CLINS core lab item code (the parent concept of the JLAC10 code).
    pub core: &'static str,
    pub name: &'static str,
    pub ucum: &'static str,
    pub unit: &'static str,
    pub decimals: u32,
    /// JCCLS common reference intervals (male, female).
    pub range_m: (f64, f64),
    pub range_f: (f64, f64),
    /// Whole blood (true) or serum (false).
    pub whole_blood: bool,
}

pub fn lab_def(l: Lab) -> LabDef {
    use Lab::*;
    let d = |jlac10, core, name, ucum, unit, decimals, range_m, range_f, whole_blood| LabDef {
        jlac10,
        core,
        name,
        ucum,
        unit,
        decimals,
        range_m,
        range_f,
        whole_blood,
    };
    match l {
        HbA1c => d(
            "3D046000001906202",
            "HbA1c-NGSP",
            "HbA1c（NGSP）",
            "%",
            "%",
            1,
            (4.9, 6.0),
            (4.9, 6.0),
            true,
        ),
        Glucose => d(
            "3D010129902327101",
            "BS",
            "血糖",
            "mg/dL",
            "mg/dL",
            0,
            (73.0, 109.0),
            (73.0, 109.0),
            false,
        ),
        Tg => d(
            "3F015000002327101",
            "TG",
            "中性脂肪",
            "mg/dL",
            "mg/dL",
            0,
            (40.0, 234.0),
            (30.0, 117.0),
            false,
        ),
        Hdl => d(
            "3F070000002327101",
            "HDL-C",
            "HDLコレステロール",
            "mg/dL",
            "mg/dL",
            0,
            (38.0, 90.0),
            (48.0, 103.0),
            false,
        ),
        Ldl => d(
            "3F077000002327101",
            "LDL-C",
            "LDLコレステロール",
            "mg/dL",
            "mg/dL",
            0,
            (65.0, 163.0),
            (65.0, 163.0),
            false,
        ),
        Ast => d(
            "3B035000002327201",
            "AST",
            "AST（GOT）",
            "U/L",
            "U/L",
            0,
            (13.0, 30.0),
            (13.0, 30.0),
            false,
        ),
        Alt => d(
            "3B045000002327201",
            "ALT",
            "ALT（GPT）",
            "U/L",
            "U/L",
            0,
            (10.0, 42.0),
            (7.0, 23.0),
            false,
        ),
        Ggt => d(
            "3B090000002327101",
            "GGT",
            "γ-GT",
            "U/L",
            "U/L",
            0,
            (13.0, 64.0),
            (9.0, 32.0),
            false,
        ),
        Creatinine => d(
            "3C015000002327101",
            "Cre",
            "クレアチニン",
            "mg/dL",
            "mg/dL",
            2,
            (0.65, 1.07),
            (0.46, 0.79),
            false,
        ),
        UricAcid => d(
            "3C020000002327101",
            "UA",
            "尿酸",
            "mg/dL",
            "mg/dL",
            1,
            (3.7, 7.8),
            (2.6, 5.5),
            false,
        ),
        Sodium => d(
            "3H010000002327101",
            "Na",
            "ナトリウム",
            "mmol/L",
            "mmol/L",
            0,
            (138.0, 145.0),
            (138.0, 145.0),
            false,
        ),
        Potassium => d(
            "3H015000002327201",
            "K",
            "カリウム",
            "mmol/L",
            "mmol/L",
            1,
            (3.6, 4.8),
            (3.6, 4.8),
            false,
        ),
        Hemoglobin => d(
            "2A030000001930901",
            "Hb",
            "ヘモグロビン",
            "g/dL",
            "g/dL",
            1,
            (13.7, 16.8),
            (11.6, 14.8),
            true,
        ),
        Wbc => d(
            "2A990000001930952",
            "WBC",
            "白血球数",
            "10*3/uL",
            "10^3/μL",
            1,
            (3.3, 8.6),
            (3.3, 8.6),
            true,
        ),
        Platelets => d(
            "2A050000001930901",
            "PLT",
            "血小板数",
            "10*4/uL",
            "10^4/μL",
            1,
            (15.8, 34.8),
            (15.8, 34.8),
            true,
        ),
    }
}

// --- Allergens ----------------------------------------------------------------------------

/// J-FAGY food allergens: (code, display).
pub const FOOD_ALLERGENS: &[(&str, &str)] = &[
    ("J9FB13110000", "鶏卵"),
    ("J9FB12110011", "牛乳"),
    ("J9FA15000000", "小麦"),
    ("J9FA19140000", "そば"),
    ("J9FA21180000", "落花生"),
    ("J9FC15110000", "えび"),
    ("J9FC15120000", "かに"),
    ("J9FA32280000", "くるみ"),
    ("J9FA21110000", "大豆"),
    ("J9FC11310000", "さば"),
    ("J9FC11240000", "さけ"),
    ("J9FC28150000", "いくら"),
    ("J9FA32540000", "キウイフルーツ"),
    ("J9FA32210000", "もも"),
    ("J9FA32120000", "りんご"),
    ("J9FA32340000", "ごま"),
    ("J9FA32320000", "カシューナッツ"),
    ("J9FA32310000", "アーモンド"),
    ("J9FA32490000", "バナナ"),
    ("J9FC13000000", "いか類"),
];

/// J-FAGY non-food, non-medication allergens: (code, display).
pub const ENVIRONMENT_ALLERGENS: &[(&str, &str)] = &[
    ("J9NK13320000", "スギ"),
    ("J9NM12110000", "ヤケヒョウヒダニ"),
    ("J9NM13110000", "ハウスダスト"),
    ("J9NJ12150000", "ネコ"),
    ("J9NP14110000", "ラテックス（天然ゴム）"),
];

/// Drug allergens coded with the J-FAGY GCM system (GCM + generic-name code): (code, display).
pub const DRUG_ALLERGENS: &[(&str, &str)] = &[
    ("GCM1149019F1ZZZ", "ロキソプロフェンナトリウム錠"),
    ("GCM1141007F1ZZZ", "アセトアミノフェン錠"),
    ("GCM6149003F2ZZZ", "クラリスロマイシン錠"),
    ("GCM2260701F1ZZZ", "ポビドンヨード含嗽用液７％"),
];

// --- Vaccines -----------------------------------------------------------------------------

pub struct VaccineDef {
    pub cvx: &'static str,
    pub cvx_display: &'static str,
    pub text: &'static str,
    pub dose_ml: &'static str,
}

pub const FLU_VACCINE: VaccineDef = VaccineDef {
    cvx: "141",
    cvx_display: "Influenza, seasonal, injectable",
    text: "インフルエンザHAワクチン",
    dose_ml: "0.5",
};
pub const COVID_PFIZER: VaccineDef = VaccineDef {
    cvx: "208",
    cvx_display: "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
    text: "コミナティ筋注",
    dose_ml: "0.3",
};
pub const COVID_MODERNA: VaccineDef = VaccineDef {
    cvx: "207",
    cvx_display: "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 100 mcg/0.5mL dose or 50 mcg/0.25mL dose",
    text: "スパイクバックス筋注",
    dose_ml: "0.5",
};
pub const PNEUMOCOCCAL: VaccineDef = VaccineDef {
    cvx: "33",
    cvx_display: "pneumococcal polysaccharide vaccine, 23 valent",
    text: "肺炎球菌ワクチン（ニューモバックスNP）",
    dose_ml: "0.5",
};
