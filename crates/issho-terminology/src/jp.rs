//! Japanese code systems: the format rules of JLAC10, YJ, HOT and the MEDIS disease name
//! master (checked even where their content is not loaded), the J-FAGY allergen code list as
//! JAMI publishes it (CSV), and a CSV layout for loading JLAC10, YJ, HOT and MEDIS content
//! into CodeSystem resources.
//!
//! The CSV layout (UTF-8, a header row; columns by name, others ignored):
//! `code` (required), `display` (Japanese, required), `display_en`, `kana`, `parent` (the
//! parent's code), `definition`. Every code is checked against the system's format rule;
//! the file is refused naming the first rows that break it.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A code system's format rule.
pub struct Format {
    pub name: &'static str,
    /// The canonical URLs the system is known by (JP Core's, MEDIS's, the OIDs).
    pub systems: &'static [&'static str],
    rule: fn(&str) -> Result<(), String>,
}

impl Format {
    /// (valid, why): the rule's verdict on `code`.
    pub fn check(&self, code: &str) -> (bool, String) {
        match (self.rule)(code) {
            Ok(()) => (
                true,
                format!(
                    "'{code}' is a well-formed {} code; only its format was checked (the {} content is not loaded here)",
                    self.name, self.name
                ),
            ),
            Err(why) => (
                false,
                format!("'{code}' is not a {} code: {why}", self.name),
            ),
        }
    }
    /// The rule alone.
    pub fn valid(&self, code: &str) -> Result<(), String> {
        (self.rule)(code)
    }
}

fn chars(code: &str, n: usize, what: &str) -> Result<Vec<char>, String> {
    let c: Vec<char> = code.chars().collect();
    if c.len() != n {
        return Err(format!("{what} has {n} characters, not {}", c.len()));
    }
    Ok(c)
}

fn digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn upper_or_digit(c: char) -> bool {
    c.is_ascii_digit() || c.is_ascii_uppercase()
}

/// JLAC10 (17 characters): analyte (5: a digit 1–9, a digit or capital letter, 3 digits),
/// identification (4: digits or capitals), specimen (3 digits), method (3 digits), result
/// identification (2 digits).
fn jlac10(code: &str) -> Result<(), String> {
    let c = chars(code, 17, "a JLAC10 code")?;
    let part = |from: usize, to: usize, ok: fn(char) -> bool, name: &str| {
        if c[from..to].iter().all(|&x| ok(x)) {
            Ok(())
        } else {
            Err(format!(
                "its {name} part '{}' (characters {}–{}) is malformed",
                c[from..to].iter().collect::<String>(),
                from + 1,
                to
            ))
        }
    };
    if !matches!(c[0], '1'..='9') || !upper_or_digit(c[1]) || !c[2..5].iter().all(|&x| digit(x)) {
        return Err(format!(
            "its analyte part '{}' (characters 1–5) is malformed",
            c[..5].iter().collect::<String>()
        ));
    }
    part(5, 9, upper_or_digit, "identification")?;
    part(9, 12, digit, "specimen")?;
    part(12, 15, digit, "method")?;
    part(15, 17, digit, "result identification")
}

/// YJ (12 characters): therapeutic class and ingredient (7 digits), dosage form (a capital
/// letter), strength and brand (3 digits or capitals), check digit.
fn yj(code: &str) -> Result<(), String> {
    let c = chars(code, 12, "a YJ code")?;
    if !c[..7].iter().all(|&x| digit(x)) {
        return Err("its first 7 characters (class and ingredient) must be digits".into());
    }
    if !c[7].is_ascii_uppercase() {
        return Err(format!(
            "its 8th character (dosage form) must be a capital letter, not '{}'",
            c[7]
        ));
    }
    if !c[8..11].iter().all(|&x| upper_or_digit(x)) {
        return Err("its 9th to 11th characters must be digits or capital letters".into());
    }
    if !digit(c[11]) {
        return Err("its last character (check digit) must be a digit".into());
    }
    Ok(())
}

fn digits(code: &str, lens: &[usize], what: &str) -> Result<(), String> {
    if !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{what} has digits only"));
    }
    if !lens.contains(&code.len()) {
        let l: Vec<String> = lens.iter().map(|n| n.to_string()).collect();
        return Err(format!(
            "{what} has {} digits, not {}",
            l.join(" or "),
            code.len()
        ));
    }
    Ok(())
}

fn hot9(code: &str) -> Result<(), String> {
    digits(code, &[9], "a HOT9 code")
}
fn hot13(code: &str) -> Result<(), String> {
    digits(code, &[13], "a HOT13 code")
}
fn hot7(code: &str) -> Result<(), String> {
    digits(code, &[7], "a HOT7 code")
}
fn medis_disease(code: &str) -> Result<(), String> {
    digits(code, &[8], "a MEDIS disease name key number")
}

pub const JLAC10: Format = Format {
    name: "JLAC10",
    systems: &[
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS",
        "urn:oid:1.2.392.200119.4.504",
        "http://medis.or.jp/CodeSystem/master-JLAC10-17digits",
    ],
    rule: jlac10,
};
pub const YJ: Format = Format {
    name: "YJ",
    systems: &[
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCodeYJ_CS",
        "urn:oid:1.2.392.100495.20.1.73",
        "urn:oid:1.2.392.100495.20.2.73",
        "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code",
    ],
    rule: yj,
};
pub const HOT9: Format = Format {
    name: "HOT9",
    systems: &[
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCodeHOT9_CS",
        "urn:oid:1.2.392.200119.4.403.1",
        "urn:oid:1.2.392.100495.20.2.74",
        "http://medis.or.jp/CodeSystem/master-HOT9",
    ],
    rule: hot9,
};
pub const HOT13: Format = Format {
    name: "HOT13",
    systems: &[
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCodeHOT13_CS",
        "urn:oid:1.2.392.200119.4.402.1",
        "http://medis.or.jp/CodeSystem/master-HOT13",
    ],
    rule: hot13,
};
pub const HOT7: Format = Format {
    name: "HOT7",
    systems: &[
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCodeHOT7_CS",
        "urn:oid:1.2.392.200119.4.403.2",
    ],
    rule: hot7,
};
pub const MEDIS_DISEASE: Format = Format {
    name: "MEDIS disease name",
    systems: &["http://medis.or.jp/CodeSystem/master-disease-keyNumber"],
    rule: medis_disease,
};

const FORMATS: [&Format; 6] = [&JLAC10, &YJ, &HOT9, &HOT13, &HOT7, &MEDIS_DISEASE];

/// The format rule of a system, when it is one of these.
pub fn format_of(system: &str) -> Option<&'static Format> {
    FORMATS.into_iter().find(|f| f.systems.contains(&system))
}

/// The format a `--kind` names (`jlac10`, `yj`, `hot9`, `hot13`, `hot7`, `medis-disease`).
pub fn format_named(kind: &str) -> Option<&'static Format> {
    match kind {
        "jlac10" => Some(&JLAC10),
        "yj" => Some(&YJ),
        "hot9" => Some(&HOT9),
        "hot13" => Some(&HOT13),
        "hot7" => Some(&HOT7),
        "medis-disease" => Some(&MEDIS_DISEASE),
        _ => None,
    }
}

/// J-FAGY's three code systems (JP Core's canonical URLs), by the third character of a code.
pub const JFAGY_FOOD: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS";
pub const JFAGY_MEDICATION: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyMedicationAllergen_CS";
pub const JFAGY_OTHER: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyNonFoodNonMedicationAllergen_CS";

/// The designation use of a reading in kana.
pub const KANA_USE: &str = "urn:issho:fhir:CodeSystem:designation-use";

fn kana(v: &str) -> Value {
    json!({"language": "ja", "use": {"system": KANA_USE, "code": "kana", "display": "読み"}, "value": v})
}

fn english(v: &str) -> Value {
    json!({"language": "en", "value": v})
}

/// The open levels of a hierarchy being built: (level, path of indexes to the concept).
type Stack = Vec<(u32, Vec<usize>)>;

fn reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes())
}

/// The J-FAGY code list as JAMI publishes it (`DISPLAYSEQ, JFAGYCODE, JPTERM, JPKANA,
/// ENTERM, LEVEL, MAINFLAG, GUIDELINE, CXGCATEGORY, RECORDDATE, ENDDATE`) as JP Core's code
/// systems — food (`F`), medication (`M`), others (`N`), by a code's third character — with
/// the Japanese term as display, the kana reading and the English term as designations, the
/// hierarchy by `LEVEL` in display order, and the other columns as properties.
pub fn jfagy(text: &str, version: &str) -> Result<Vec<Value>, String> {
    let mut rd = reader(text);
    let headers = rd.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let need = |name: &str| col(name).ok_or(format!("the J-FAGY file has no {name} column"));
    let (code_i, term_i, level_i) = (need("JFAGYCODE")?, need("JPTERM")?, need("LEVEL")?);
    let (kana_i, en_i) = (col("JPKANA"), col("ENTERM"));
    let props: Vec<(usize, &str)> = [
        "MAINFLAG",
        "GUIDELINE",
        "CXGCATEGORY",
        "RECORDDATE",
        "ENDDATE",
    ]
    .into_iter()
    .filter_map(|p| col(p).map(|i| (i, p)))
    .collect();
    // Per system: the concepts and the stack of (level, path) for the hierarchy.
    let mut trees: BTreeMap<&str, (Vec<Value>, Stack)> = BTreeMap::new();
    for (n, row) in rd.records().enumerate() {
        let row = row.map_err(|e| format!("row {}: {e}", n + 2))?;
        let get = |i: usize| row.get(i).unwrap_or("").trim();
        let code = get(code_i);
        if code.is_empty() {
            continue;
        }
        let system = match code.chars().nth(2) {
            Some('F') => JFAGY_FOOD,
            Some('M') => JFAGY_MEDICATION,
            Some('N') => JFAGY_OTHER,
            _ => {
                return Err(format!(
                    "row {}: '{code}' is not a J-FAGY code (its third character names food F, medication M or other N)",
                    n + 2
                ));
            }
        };
        let level: u32 = get(level_i)
            .parse()
            .map_err(|_| format!("row {}: LEVEL '{}' is not a number", n + 2, get(level_i)))?;
        let mut concept = json!({"code": code, "display": get(term_i)});
        let mut des = Vec::new();
        if let Some(i) = kana_i.filter(|&i| !get(i).is_empty()) {
            des.push(kana(get(i)));
        }
        if let Some(i) = en_i.filter(|&i| !get(i).is_empty()) {
            des.push(english(get(i)));
        }
        if !des.is_empty() {
            concept["designation"] = Value::Array(des);
        }
        let ps: Vec<Value> = props
            .iter()
            .filter(|(i, _)| !get(*i).is_empty())
            .map(|(i, p)| json!({"code": p.to_ascii_lowercase(), "valueString": get(*i)}))
            .collect();
        if !ps.is_empty() {
            concept["property"] = Value::Array(ps);
        }
        let (roots, stack) = trees.entry(system).or_default();
        while stack.last().is_some_and(|(l, _)| *l >= level) {
            stack.pop();
        }
        let path = match stack.last() {
            None => {
                roots.push(concept);
                vec![roots.len() - 1]
            }
            Some((_, parent)) => {
                let mut node = &mut roots[parent[0]];
                for &i in &parent[1..] {
                    node = &mut node["concept"][i];
                }
                if !node["concept"].is_array() {
                    node["concept"] = json!([]);
                }
                let list = node["concept"].as_array_mut().expect("an array");
                list.push(concept);
                let mut p = parent.clone();
                p.push(list.len() - 1);
                p
            }
        };
        stack.push((level, path));
    }
    let names = [
        (
            JFAGY_FOOD,
            "JP_JfagyFoodAllergen_CS",
            "J-FAGY 食物アレルゲン",
        ),
        (
            JFAGY_MEDICATION,
            "JP_JfagyMedicationAllergen_CS",
            "J-FAGY 医薬品アレルゲン",
        ),
        (
            JFAGY_OTHER,
            "JP_JfagyNonFoodNonMedicationAllergen_CS",
            "J-FAGY 食物・医薬品以外のアレルゲン",
        ),
    ];
    Ok(names
        .iter()
        .filter_map(|(url, name, title)| {
            let (roots, _) = trees.remove(url)?;
            Some(code_system(
                url,
                name,
                title,
                version,
                roots,
                &[
                    "mainflag",
                    "guideline",
                    "cxgcategory",
                    "recorddate",
                    "enddate",
                ],
            ))
        })
        .collect())
}

fn code_system(
    url: &str,
    name: &str,
    title: &str,
    version: &str,
    concepts: Vec<Value>,
    props: &[&str],
) -> Value {
    let count = count(&concepts);
    let mut cs = json!({
        "resourceType": "CodeSystem",
        "url": url,
        "version": version,
        "name": name,
        "title": title,
        "status": "active",
        "language": "ja",
        "caseSensitive": true,
        "hierarchyMeaning": "is-a",
        "content": "complete",
        "count": count,
        "concept": concepts,
    });
    if !props.is_empty() {
        cs["property"] = Value::Array(
            props
                .iter()
                .map(|p| json!({"code": p, "type": "string"}))
                .collect(),
        );
    }
    cs
}

fn count(concepts: &[Value]) -> usize {
    concepts
        .iter()
        .map(|c| 1 + c["concept"].as_array().map(|a| count(a)).unwrap_or(0))
        .sum()
}

/// A code system file in issho's CSV layout (see the module) for `format`'s system (or
/// `url`), checked by its format rule.
pub fn csv_code_system(
    text: &str,
    format: &Format,
    url: Option<&str>,
    version: &str,
) -> Result<Value, String> {
    let mut rd = reader(text);
    let headers = rd.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let code_i = col("code").ok_or("the file has no 'code' column (see the layout)")?;
    let display_i = col("display").ok_or("the file has no 'display' column (see the layout)")?;
    let (en_i, kana_i, parent_i, def_i) = (
        col("display_en"),
        col("kana"),
        col("parent"),
        col("definition"),
    );
    let mut bad = Vec::new();
    let mut concepts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, row) in rd.records().enumerate() {
        let row = row.map_err(|e| format!("row {}: {e}", n + 2))?;
        let get = |i: usize| row.get(i).unwrap_or("").trim().to_string();
        let code = get(code_i);
        if let Err(why) = format.valid(&code) {
            bad.push(format!("row {}: {why}", n + 2));
            continue;
        }
        if !seen.insert(code.clone()) {
            bad.push(format!("row {}: '{code}' appears twice", n + 2));
            continue;
        }
        let mut c = json!({"code": code, "display": get(display_i)});
        let mut des = Vec::new();
        if let Some(i) = kana_i.filter(|&i| !get(i).is_empty()) {
            des.push(kana(&get(i)));
        }
        if let Some(i) = en_i.filter(|&i| !get(i).is_empty()) {
            des.push(english(&get(i)));
        }
        if !des.is_empty() {
            c["designation"] = Value::Array(des);
        }
        if let Some(i) = def_i.filter(|&i| !get(i).is_empty()) {
            c["definition"] = json!(get(i));
        }
        if let Some(i) = parent_i.filter(|&i| !get(i).is_empty()) {
            c["property"] = json!([{"code": "parent", "valueCode": get(i)}]);
        }
        concepts.push(c);
    }
    if !bad.is_empty() {
        let n = bad.len();
        bad.truncate(5);
        return Err(format!("{n} rows are refused: {}", bad.join("; ")));
    }
    let url = url.unwrap_or(format.systems[0]);
    let name = format!("issho_{}", format.name.replace(' ', "_"));
    let mut cs = code_system(url, &name, format.name, version, concepts, &[]);
    if parent_i.is_some() {
        cs["property"] = json!([{"code": "parent", "type": "code"}]);
    }
    Ok(cs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::CodeSystem;

    #[test]
    fn format_rules() {
        assert!(JLAC10.valid("3A015000002329101").is_ok());
        assert!(
            JLAC10
                .valid("3A01500000232910")
                .unwrap_err()
                .contains("17 characters")
        );
        assert!(
            JLAC10
                .valid("0A015000002329101")
                .unwrap_err()
                .contains("analyte")
        );
        assert!(
            JLAC10
                .valid("3A01500000X329101")
                .unwrap_err()
                .contains("specimen")
        );
        assert!(YJ.valid("2171014F1020").is_ok());
        assert!(
            YJ.valid("21710141F020")
                .unwrap_err()
                .contains("dosage form")
        );
        assert!(HOT9.valid("103835401").is_ok());
        assert!(HOT9.valid("10383540").is_err());
        assert!(HOT13.valid("1038354010101").is_ok());
        assert!(MEDIS_DISEASE.valid("20054366").is_ok());
        assert_eq!(
            format_of("urn:oid:1.2.392.200119.4.504").unwrap().name,
            "JLAC10"
        );
        assert!(format_of("http://loinc.org").is_none());
        let (ok, why) = YJ.check("x");
        assert!(!ok && why.contains("12 characters"), "{why}");
    }

    #[test]
    fn jfagy_levels_become_a_hierarchy() {
        let text = "\u{feff}\"DISPLAYSEQ\",\"JFAGYCODE\",\"JPTERM\",\"JPKANA\",\"ENTERM\",\"LEVEL\",\"MAINFLAG\",\"GUIDELINE\",\"CXGCATEGORY\",\"RECORDDATE\",\"ENDDATE\"
\"1\",\"D9M000000000\",\"医薬品ダミーコード\",\"いやくひんだみーこーど\",\"Medicine dummy code\",\"1\",\"1\",\"\",\"0\",\"00000000\",\"99999999\"
\"4\",\"00F\",\"食品\",\"しょくひん\",\"Food\",\"1\",\"1\",\"1\",\"0\",\"00000000\",\"99999999\"
\"5\",\"J9FA00000000\",\"農産食品\",\"のうさんしょくひん\",\"Agricultural food\",\"2\",\"1\",\"\",\"0\",\"00000000\",\"99999999\"
\"7\",\"J9FA12000000\",\"玄米\",\"げんまい\",\"Brown rice\",\"3\",\"1\",\"\",\"0\",\"00000000\",\"99999999\"
\"8\",\"J9FA12000011\",\"米ぬか\",\"こめぬか\",\"Rice bran\",\"6\",\"\",\"1\",\"0\",\"00000000\",\"99999999\"
\"9\",\"J9FA13000000\",\"白米\",\"はくまい\",\"White rice\",\"3\",\"1\",\"\",\"0\",\"00000000\",\"99999999\"
";
        let systems = jfagy(text, "20250401").unwrap();
        assert_eq!(systems.len(), 2);
        let food = systems.iter().find(|s| s["url"] == JFAGY_FOOD).unwrap();
        assert_eq!(food["count"], 5);
        let cs = CodeSystem::of(food);
        assert_eq!(cs.parents_of("J9FA12000011"), vec!["J9FA12000000"]);
        assert_eq!(cs.parents_of("J9FA13000000"), vec!["J9FA00000000"]);
        assert!(cs.is_a("J9FA12000011", "00F"));
        let bran = cs.get("J9FA12000011").unwrap();
        assert_eq!(bran.display.as_deref(), Some("米ぬか"));
        assert_eq!(
            cs.display_in(bran, Some("en")).as_deref(),
            Some("Rice bran")
        );
        assert_eq!(bran.property_texts("guideline"), vec!["1"]);
        assert!(
            jfagy(
                "\"JFAGYCODE\",\"JPTERM\",\"LEVEL\"\n\"X\",\"x\",\"1\"\n",
                "1"
            )
            .is_err()
        );
    }

    #[test]
    fn csv_layout_checks_every_code() {
        let ok = "code,display,display_en,kana,parent\n3A015000002329101,アルブミン,Albumin,あるぶみん,\n";
        let cs = csv_code_system(ok, &JLAC10, None, "2026").unwrap();
        assert_eq!(cs["url"], JLAC10.systems[0]);
        assert_eq!(cs["concept"][0]["designation"][1]["value"], "Albumin");
        let bad = "code,display\n3A015000002329101,a\n12345,b\n3A015000002329101,c\n";
        let err = csv_code_system(bad, &JLAC10, None, "1").unwrap_err();
        assert!(
            err.contains("2 rows are refused") && err.contains("row 3") && err.contains("twice"),
            "{err}"
        );
        assert!(
            csv_code_system("x,y\n", &YJ, None, "1")
                .unwrap_err()
                .contains("'code'")
        );
    }
}
