//! Who a Patient is: the traits that tell whether Patient resources from different
//! institutions are one person, and the comparison of two of them.
//!
//! Japanese systems spell the same person differently: full-width or half-width digits and
//! letters, half-width katakana, hiragana for katakana, spaces or a middle dot between family
//! and given name, and variant kanji (髙/高, 﨑/崎). Every trait is compared after
//! [`normalize`]: Unicode NFKC, no spaces or middle dots, hiragana read as katakana, the common
//! variant kanji read as their standard forms, Latin letters in upper case.
//!
//! [`compare`] gives a score in [0, 1] (a weighted sum of agreeing traits) and a grade, as the
//! R4 `Patient/$match` operation reports them (the `match-grade` extension):
//! - **certain**: the same JP insurance member ID (`insurer:symbol:number:branch`) and the same
//!   birth date, and no conflicting gender. Only this grade links two Patients by itself.
//! - **probable**: the same birth date and the same full name (kana and kanji), or better.
//! - **possible**: the same birth date and family name, or the same member ID whatever else.
//! - **certainly-not**: anything less, or a conflicting birth date or gender without the same
//!   member ID.
//!
//! No store is involved: the engine finds candidates and records links (`identity.rs`).

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

/// The JP-CLINS identifier system of the insurance member ID (被保険者番号, with its branch).
pub const MEMBER_ID: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

/// The extension that says which form a JP Core name is written in (`IDE`: kanji, `SYL`:
/// kana).
const EN_REPRESENTATION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";

/// Variant kanji common in Japanese names, read as their standard forms (a registrar's
/// spelling and an institution's often differ only here).
const VARIANTS: [(char, char); 16] = [
    ('髙', '高'),
    ('﨑', '崎'),
    ('嵜', '崎'),
    ('邊', '辺'),
    ('邉', '辺'),
    ('齋', '斎'),
    ('齊', '斉'),
    ('澤', '沢'),
    ('櫻', '桜'),
    ('濵', '浜'),
    ('濱', '浜'),
    ('廣', '広'),
    ('國', '国'),
    ('德', '徳'),
    ('惠', '恵'),
    ('眞', '真'),
];

/// A trait as compared: NFKC, without spaces or middle dots, hiragana as katakana, variant
/// kanji as standard, Latin in upper case.
pub fn normalize(s: &str) -> String {
    s.nfkc()
        .filter(|c| !c.is_whitespace() && !matches!(c, '・' | '･'))
        .map(|c| match c {
            // Hiragana ぁ..ゖ to katakana ァ..ヶ.
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => VARIANTS
                .iter()
                .find(|(v, _)| *v == c)
                .map_or(c, |(_, s)| *s),
        })
        .flat_map(char::to_uppercase)
        .collect()
}

/// The JP insurance member IDs of a Patient that name one person, normalised (full-width
/// `００１２` and `0012` agree): `insurer:symbol:number:branch` with all four parts — without
/// the branch number (枝番) an ID is the insured family's, shared by twins.
pub fn member_ids(patient: &Value) -> Vec<String> {
    let mut out: Vec<String> = patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["system"].as_str() == Some(MEMBER_ID))
        .filter_map(|i| i["value"].as_str())
        .map(normalize)
        .filter(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            parts.len() == 4 && parts.iter().all(|p| !p.is_empty())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One name of a person: the whole name and the family name, normalised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Name {
    pub full: String,
    pub family: String,
}

/// The traits of one Patient resource that identify a person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traits {
    pub member_ids: Vec<String>,
    /// Names written in kanji (or Latin letters), and in kana.
    pub kanji: Vec<Name>,
    pub kana: Vec<Name>,
    pub birth_date: Option<String>,
    pub gender: Option<String>,
    /// Postal codes (digits only) and address texts.
    pub postal_codes: Vec<String>,
    pub addresses: Vec<String>,
    /// Phone numbers, digits only, in the national form (`+81 3…` as `03…`).
    pub phones: Vec<String>,
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30ff}' | '\u{ff66}'..='\u{ff9f}')
}

fn name_of(n: &Value) -> Option<(Name, bool)> {
    let family = n["family"].as_str().unwrap_or_default();
    let given: String = strings(&n["given"]).collect();
    let whole = if family.is_empty() && given.is_empty() {
        n["text"].as_str().unwrap_or_default().to_string()
    } else {
        format!("{family}{given}")
    };
    let full = normalize(&whole);
    if full.is_empty() {
        return None;
    }
    let rep = n["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"].as_str() == Some(EN_REPRESENTATION))
        .and_then(|e| e["valueCode"].as_str());
    let kana = match rep {
        Some("SYL") => true,
        Some(_) => false,
        None => whole.chars().filter(|c| !c.is_whitespace()).all(is_kana),
    };
    let family = normalize(family);
    Some((Name { full, family }, kana))
}

fn digits(s: &str) -> String {
    s.nfkc().filter(char::is_ascii_digit).collect()
}

impl Traits {
    /// The traits of a Patient resource (JSON).
    pub fn of(patient: &Value) -> Traits {
        let mut t = Traits {
            member_ids: member_ids(patient),
            birth_date: patient["birthDate"]
                .as_str()
                .filter(|d| d.len() >= 10)
                .map(|d| d[..10].to_string()),
            gender: patient["gender"]
                .as_str()
                .filter(|g| matches!(*g, "male" | "female"))
                .map(str::to_string),
            ..Traits::default()
        };
        for n in patient["name"].as_array().into_iter().flatten() {
            if let Some((name, kana)) = name_of(n) {
                if kana {
                    t.kana.push(name);
                } else {
                    t.kanji.push(name);
                }
            }
        }
        for a in patient["address"].as_array().into_iter().flatten() {
            if let Some(p) = a["postalCode"]
                .as_str()
                .map(digits)
                .filter(|p| p.len() == 7)
            {
                t.postal_codes.push(p);
            }
            let text = match a["text"].as_str() {
                Some(x) => x.to_string(),
                None => {
                    let mut parts: Vec<&str> = Vec::new();
                    parts.extend(a["state"].as_str());
                    parts.extend(a["city"].as_str());
                    parts.extend(strings(&a["line"]));
                    parts.concat()
                }
            };
            let text = normalize(&text);
            if !text.is_empty() {
                t.addresses.push(text);
            }
        }
        for c in patient["telecom"].as_array().into_iter().flatten() {
            if c["system"].as_str() != Some("phone") {
                continue;
            }
            let Some(v) = c["value"].as_str() else {
                continue;
            };
            let mut d = digits(v);
            if v.trim_start().starts_with('+') && d.starts_with("81") {
                d = format!("0{}", &d[2..]);
            }
            if d.len() >= 9 {
                t.phones.push(d);
            }
        }
        t
    }
}

/// How sure a match is (the R4 `match-grade` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grade {
    Certain,
    Probable,
    Possible,
    CertainlyNot,
}

impl Grade {
    pub fn code(self) -> &'static str {
        match self {
            Grade::Certain => "certain",
            Grade::Probable => "probable",
            Grade::Possible => "possible",
            Grade::CertainlyNot => "certainly-not",
        }
    }
}

/// The comparison of two Patients.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// In [0, 1]: the weights of the traits that agree.
    pub score: f64,
    pub grade: Grade,
    /// The traits that agree (`member-id`, `birth-date`, `kana`, `kanji`, `gender`,
    /// `address`, `phone`) and those that conflict (`!birth-date`, `!gender`).
    pub evidence: Vec<&'static str>,
}

/// Weights of agreeing traits (they sum to 1).
const W_MEMBER: f64 = 0.45;
const W_BIRTH: f64 = 0.20;
const W_NAME: f64 = 0.12;
const W_GENDER: f64 = 0.03;
const W_ADDRESS: f64 = 0.04;
const W_PHONE: f64 = 0.04;

fn shared<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.iter().any(|x| b.contains(x))
}

/// A name form's weight: the whole name agrees (full weight), or only the family name (half).
fn name_weight(a: &[Name], b: &[Name]) -> f64 {
    if a.iter().any(|x| b.iter().any(|y| x.full == y.full)) {
        W_NAME
    } else if a
        .iter()
        .any(|x| !x.family.is_empty() && b.iter().any(|y| x.family == y.family))
    {
        W_NAME / 2.0
    } else {
        0.0
    }
}

/// Compares two Patients' traits (see the crate documentation for the grades).
pub fn compare(a: &Traits, b: &Traits) -> Score {
    let mut score = 0.0;
    let mut evidence = Vec::new();
    let member = shared(&a.member_ids, &b.member_ids);
    if member {
        score += W_MEMBER;
        evidence.push("member-id");
    }
    let birth = match (&a.birth_date, &b.birth_date) {
        (Some(x), Some(y)) if x == y => Some(true),
        (Some(_), Some(_)) => Some(false),
        _ => None,
    };
    match birth {
        Some(true) => {
            score += W_BIRTH;
            evidence.push("birth-date");
        }
        Some(false) => evidence.push("!birth-date"),
        None => {}
    }
    let gender_conflict = matches!((&a.gender, &b.gender), (Some(x), Some(y)) if x != y);
    if gender_conflict {
        evidence.push("!gender");
    } else if a.gender.is_some() && a.gender == b.gender {
        score += W_GENDER;
        evidence.push("gender");
    }
    let kana = name_weight(&a.kana, &b.kana);
    let kanji = name_weight(&a.kanji, &b.kanji);
    if kana > 0.0 {
        evidence.push("kana");
    }
    if kanji > 0.0 {
        evidence.push("kanji");
    }
    score += kana + kanji;
    if shared(&a.postal_codes, &b.postal_codes) || shared(&a.addresses, &b.addresses) {
        score += W_ADDRESS;
        evidence.push("address");
    }
    if shared(&a.phones, &b.phones) {
        score += W_PHONE;
        evidence.push("phone");
    }
    let conflict = birth == Some(false) || gender_conflict;
    let grade = if member && birth == Some(true) && !gender_conflict {
        Grade::Certain
    } else if conflict {
        if member {
            Grade::Possible
        } else {
            Grade::CertainlyNot
        }
    } else if birth == Some(true) && score >= W_BIRTH + 2.0 * W_NAME - 1e-9 {
        Grade::Probable
    } else if member || (birth == Some(true) && score >= W_BIRTH + W_NAME / 2.0 - 1e-9) {
        Grade::Possible
    } else {
        Grade::CertainlyNot
    };
    Score {
        score: (score * 1000.0).round() / 1000.0,
        grade,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn makino() -> Value {
        json!({"resourceType": "Patient",
            "identifier": [{"system": MEMBER_ID, "value": "00012345:あいう:１８７:05"}],
            "name": [
                {"extension": [{"url": EN_REPRESENTATION, "valueCode": "IDE"}],
                 "family": "牧野", "given": ["爛漫"]},
                {"extension": [{"url": EN_REPRESENTATION, "valueCode": "SYL"}],
                 "family": "マキノ", "given": ["ランマン"]}],
            "telecom": [{"system": "phone", "value": "03-123-1234"}],
            "gender": "female", "birthDate": "1930-06-28",
            "address": [{"text": "高知県高知市五台山4200-6", "postalCode": "781-8125"}]})
    }

    #[test]
    fn spellings_agree_after_normalising() {
        assert_eq!(normalize("００１２ ３"), "00123");
        assert_eq!(normalize("ﾏｷﾉ ﾗﾝﾏﾝ"), "マキノランマン");
        assert_eq!(normalize("まきの・らんまん"), "マキノランマン");
        assert_eq!(normalize("髙橋　﨑"), "高橋崎");
        assert_eq!(normalize("Tanaka Taro"), "TANAKATARO");
        assert_eq!(member_ids(&makino()), vec!["00012345:アイウ:187:05"]);
        // Without the branch number: the family's ID, not one person's.
        let family = json!({"identifier": [{"system": MEMBER_ID, "value": "00012345:あいう:187"},
            {"system": MEMBER_ID, "value": "00012345:あいう:187:"}]});
        assert!(member_ids(&family).is_empty());
    }

    #[test]
    fn the_same_member_id_and_birth_date_is_certain() {
        let a = Traits::of(&makino());
        let mut other = json!({"resourceType": "Patient",
            "identifier": [{"system": MEMBER_ID, "value": "00012345:アイウ:187:05"}],
            "name": [{"family": "まきの", "given": ["らんまん"]}],
            "birthDate": "1930-06-28", "gender": "female",
            "telecom": [{"system": "phone", "value": "+81 3-123-1234"}]});
        let s = compare(&a, &Traits::of(&other));
        assert_eq!(s.grade, Grade::Certain, "{s:?}");
        assert!(s.evidence.contains(&"kana") && s.evidence.contains(&"phone"));
        // The same member ID with another birth date: someone to look at, never a link.
        other["birthDate"] = json!("1931-06-28");
        let s = compare(&a, &Traits::of(&other));
        assert_eq!(s.grade, Grade::Possible, "{s:?}");
        assert!(s.evidence.contains(&"!birth-date"));
        // No birth date at all: not certain either.
        other.as_object_mut().unwrap().remove("birthDate");
        assert_eq!(compare(&a, &Traits::of(&other)).grade, Grade::Possible);
    }

    #[test]
    fn names_and_birth_dates_grade_without_a_member_id() {
        let a = Traits::of(&makino());
        let mut b = makino();
        b.as_object_mut().unwrap().remove("identifier");
        let s = compare(&a, &Traits::of(&b));
        assert_eq!(s.grade, Grade::Probable, "{s:?}");
        assert!((s.score - 0.55).abs() < 1e-9, "{s:?}");
        // Family names only.
        b["name"] = json!([{"family": "牧野", "given": ["花子"]}]);
        b.as_object_mut().unwrap().remove("telecom");
        b.as_object_mut().unwrap().remove("address");
        let s = compare(&a, &Traits::of(&b));
        assert_eq!(s.grade, Grade::Possible, "{s:?}");
        // Another birth date: certainly not.
        b["birthDate"] = json!("1950-01-01");
        assert_eq!(compare(&a, &Traits::of(&b)).grade, Grade::CertainlyNot);
        // Another gender with the same name and birth date: certainly not.
        let mut c = makino();
        c.as_object_mut().unwrap().remove("identifier");
        c["gender"] = json!("male");
        assert_eq!(compare(&a, &Traits::of(&c)).grade, Grade::CertainlyNot);
        // Nothing in common.
        let empty = Traits::of(&json!({"resourceType": "Patient"}));
        let s = compare(&a, &empty);
        assert_eq!((s.grade, s.score), (Grade::CertainlyNot, 0.0));
    }
}
