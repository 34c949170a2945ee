//! The terminology operations over HTTP — `CodeSystem/$lookup`, `$validate-code`,
//! `$subsumes`, `ValueSet/$expand`, `$validate-code`, `ConceptMap/$translate` — at type and
//! instance level, GET and POST, answers in Japanese or English; J-FAGY loaded with
//! `issho terminology import` and JP-CLINS's value sets from its package; and what a
//! caller without the scope, a malformed request or a costly one gets.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};

const SYS: &str = "https://issho.example/fhir/CodeSystem/dx";

fn setup() -> Signed {
    let c = Signed::start(
        Default::default(),
        vec![
            (
                "admin",
                user("admin", Role::Administrator, "user/*.cruds", None, None),
            ),
            (
                "doc",
                user("doc", Role::Physician, "user/*.rs", None, Some("org")),
            ),
            (
                "narrow",
                user(
                    "narrow",
                    Role::Patient,
                    "patient/Observation.rs",
                    Some("p"),
                    None,
                ),
            ),
        ],
    );
    let put = |r: Value| c.store_as("admin", &r);
    put(
        json!({"resourceType": "CodeSystem", "id": "dx", "url": SYS, "version": "1",
        "name": "Dx", "status": "active", "content": "complete", "language": "ja",
        "hierarchyMeaning": "is-a",
        "concept": [
            {"code": "metabolic", "display": "代謝疾患", "concept": [
                {"code": "diabetes", "display": "糖尿病",
                 "designation": [{"language": "en", "value": "Diabetes mellitus"}],
                 "concept": [{"code": "t1dm", "display": "1型糖尿病"}, {"code": "t2dm", "display": "2型糖尿病",
                    "designation": [{"language": "en", "value": "Type 2 diabetes"}]}]},
                {"code": "gout", "display": "痛風"}]},
            {"code": "circulatory", "display": "循環器疾患", "concept": [{"code": "htn", "display": "高血圧症"}]}]}),
    );
    put(
        json!({"resourceType": "ValueSet", "id": "dm", "status": "active",
        "url": "https://issho.example/fhir/ValueSet/dm", "name": "Diabetes",
        "compose": {"include": [{"system": SYS, "filter": [
            {"property": "concept", "op": "is-a", "value": "diabetes"}]}]}}),
    );
    put(
        json!({"resourceType": "ValueSet", "id": "all", "status": "active",
        "url": "https://issho.example/fhir/ValueSet/all", "compose": {"include": [{"system": SYS}]}}),
    );
    put(
        json!({"resourceType": "ConceptMap", "id": "dx-icd", "status": "active",
        "url": "https://issho.example/fhir/ConceptMap/dx-icd",
        "group": [{"source": SYS, "target": "http://hl7.org/fhir/sid/icd-10", "element": [
            {"code": "t2dm", "target": [{"code": "E11", "equivalence": "equivalent"}]}]}]}),
    );
    c
}

fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["parameter"]
        .as_array()
        .unwrap_or_else(|| panic!("{p}"))
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {p}"))
}

fn get_with(c: &Signed, path: &str, lang: Option<&str>) -> (u16, Value) {
    let mut r = c.s.req("GET", path).bearer_auth(c.tok("doc"));
    if let Some(l) = lang {
        r = r.header("accept-language", l);
    }
    let r = r.send().unwrap();
    let st = r.status().as_u16();
    (
        st,
        serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null),
    )
}

#[test]
fn lookup_validate_expand_subsume_translate() {
    let c = setup();
    // $lookup: Japanese by default (the system's language), English when asked.
    let (st, b) = c.call(
        "doc",
        "GET",
        &format!("CodeSystem/$lookup?system={SYS}&code=t2dm"),
        None,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(param(&b, "display")["valueString"], "2型糖尿病");
    assert_eq!(param(&b, "name")["valueString"], "Dx");
    let (_, en) = get_with(
        &c,
        &format!("CodeSystem/$lookup?system={SYS}&code=t2dm"),
        Some("en-US,en;q=0.9"),
    );
    assert_eq!(param(&en, "display")["valueString"], "Type 2 diabetes");
    // Instance level, POST with Parameters.
    let (st, b) = c.call(
        "doc",
        "POST",
        "CodeSystem/dx/$lookup",
        Some(&json!({"resourceType": "Parameters", "parameter": [{"name": "code", "valueCode": "diabetes"}]})),
    );
    assert_eq!(st, 200, "{b}");
    let children: Vec<&str> = b["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "property" && p["part"][0]["valueCode"] == "child")
        .map(|p| p["part"][1]["valueCode"].as_str().unwrap())
        .collect();
    assert_eq!(children, vec!["t1dm", "t2dm"]);
    let (st, b) = c.call(
        "doc",
        "GET",
        &format!("CodeSystem/$lookup?system={SYS}&code=nope"),
        None,
    );
    assert_eq!(st, 404);
    assert_eq!(b["resourceType"], "OperationOutcome");

    // $validate-code against the system and against a value set.
    let ok = |path: &str| {
        let (st, b) = c.call("doc", "GET", path, None);
        assert_eq!(st, 200, "{path}: {b}");
        param(&b, "result")["valueBoolean"].as_bool().unwrap()
    };
    assert!(ok(&format!(
        "CodeSystem/$validate-code?url={SYS}&code=gout"
    )));
    assert!(!ok(&format!(
        "CodeSystem/$validate-code?url={SYS}&code=gout&display=痛み"
    )));
    assert!(ok(
        "ValueSet/dm/$validate-code?system=https://issho.example/fhir/CodeSystem/dx&code=t1dm"
    ));
    assert!(!ok(
        "ValueSet/dm/$validate-code?system=https://issho.example/fhir/CodeSystem/dx&code=gout"
    ));
    assert!(ok(&format!(
        "ValueSet/$validate-code?url=https://issho.example/fhir/ValueSet/dm&coding={SYS}|t2dm"
    )));
    // A YJ code is checked by its format where the content is not loaded.
    assert!(ok(
        "CodeSystem/$validate-code?url=urn:oid:1.2.392.100495.20.1.73&code=2171014F1020"
    ));
    assert!(!ok(
        "CodeSystem/$validate-code?url=urn:oid:1.2.392.100495.20.1.73&code=2171014"
    ));

    // $expand: a Japanese filter (half-width kana and full-width digits agree), paging.
    let (st, b) = c.call(
        "doc",
        "GET",
        "ValueSet/$expand?url=https://issho.example/fhir/ValueSet/all&filter=２型",
        None,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["expansion"]["total"], 1);
    assert_eq!(b["expansion"]["contains"][0]["code"], "t2dm");
    assert_eq!(b["name"], Value::Null, "the all value set has no name");
    let (_, page) = c.call("doc", "GET", "ValueSet/all/$expand?offset=1&count=2", None);
    assert_eq!(page["expansion"]["total"], 7);
    let codes: Vec<&str> = page["expansion"]["contains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["diabetes", "t1dm"]);
    let (_, en) = get_with(&c, "ValueSet/dm/$expand", Some("en"));
    assert_eq!(
        en["expansion"]["contains"][0]["display"],
        "Diabetes mellitus"
    );
    assert_eq!(en["name"], "Diabetes");

    // $subsumes and $translate.
    let (_, s) = c.call(
        "doc",
        "GET",
        &format!("CodeSystem/$subsumes?system={SYS}&codeA=metabolic&codeB=t2dm"),
        None,
    );
    assert_eq!(param(&s, "outcome")["valueCode"], "subsumes");
    let (_, t) = c.call(
        "doc",
        "GET",
        &format!("ConceptMap/$translate?system={SYS}&code=t2dm"),
        None,
    );
    assert_eq!(param(&t, "result")["valueBoolean"], true);
    assert_eq!(param(&t, "match")["part"][1]["valueCoding"]["code"], "E11");

    // Audited like every interaction.
    let (_, audit) = c.call("admin", "GET", "$audit?agent=doc&_count=100", None);
    assert!(audit.to_string().contains("ValueSet/dm/$expand"), "{audit}");
}

#[test]
fn bad_costly_and_unscoped_terminology_requests() {
    let c = setup();
    // Without a scope on the type: refused before anything is read.
    let (st, b) = c.call(
        "narrow",
        "GET",
        &format!("CodeSystem/$lookup?system={SYS}&code=t2dm"),
        None,
    );
    assert_eq!(st, 403, "{b}");
    // Without a token.
    let r =
        c.s.get(&format!("CodeSystem/$lookup?system={SYS}&code=t2dm"));
    assert_eq!(r.status(), 401);
    for (method, path, body) in [
        ("GET", "CodeSystem/$lookup?system=".to_string(), None),
        ("GET", "ValueSet/$expand".to_string(), None),
        ("GET", "ValueSet/all/$expand?count=lots".to_string(), None),
        (
            "GET",
            "ValueSet/all/$expand?activeOnly=maybe".to_string(),
            None,
        ),
        (
            "POST",
            "ValueSet/$expand".to_string(),
            Some(json!({"resourceType": "Patient"})),
        ),
        (
            "POST",
            "CodeSystem/$subsumes".to_string(),
            Some(
                json!({"resourceType": "Parameters", "parameter": [{"name": "codeA", "valueCode": "x"}]}),
            ),
        ),
        (
            "GET",
            "CodeSystem/$subsumes?codingA=a|x&codingB=b|y".to_string(),
            None,
        ),
    ] {
        let (st, b) = c.call("doc", method, &path, body.as_ref());
        assert_eq!(st, 400, "{path}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome", "{path}");
    }
    // Unknown instances and value sets.
    assert_eq!(c.call("doc", "GET", "ValueSet/nope/$expand", None).0, 404);
    assert_eq!(
        c.call(
            "doc",
            "GET",
            "ValueSet/$expand?url=https://nowhere.example/vs",
            None
        )
        .0,
        404
    );
    // A pathological regex in a value set given inline is refused, and the server lives.
    let (st, b) = c.call(
        "doc",
        "POST",
        "ValueSet/$expand",
        Some(&json!({"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource":
            {"resourceType": "ValueSet", "status": "active", "compose": {"include": [{"system": SYS,
                "filter": [{"property": "code", "op": "regex", "value": "((((a{1,100}){1,100}){1,100}){1,100})"}]}]}}}]})),
    );
    assert_eq!(st, 400, "{b}");
    assert_eq!(c.call("doc", "GET", "metadata", None).0, 200);
    // An operation that is not a terminology one on these types is not found.
    assert!(matches!(
        c.call("doc", "GET", "ConceptMap/$expand", None).0,
        400 | 404
    ));
}

#[test]
fn jfagy_and_jp_clins_answer_in_japanese() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIPPED jfagy_and_jp_clins_answer_in_japanese: ../shared is absent");
        return;
    };
    let c = setup();
    // J-FAGY as published, through `issho terminology import --out`, PUT by an administrator.
    let out = tempfile::tempdir().unwrap();
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_issho"))
        .args(["terminology", "import", "--format", "jfagy", "--out"])
        .arg(out.path())
        .arg(shared.join("jp/JFAGY_J9FN_20250401_R01.csv"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut food = None;
    for f in std::fs::read_dir(out.path()).unwrap() {
        let cs: Value = serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
        // The file has an id, so it is PUT as it is.
        let id = cs["id"].as_str().expect("an id in the file").to_string();
        if cs["name"] == "JP_JfagyFoodAllergen_CS" {
            food = Some(cs["url"].as_str().unwrap().to_string());
        }
        let (st, b) = c.call("admin", "PUT", &format!("CodeSystem/{id}"), Some(&cs));
        assert!(st == 200 || st == 201, "{b}");
    }
    let food = food.expect("the food allergen code system");
    let (st, b) = c.call(
        "doc",
        "GET",
        &format!("CodeSystem/$lookup?system={food}&code=J9FA12000011"),
        None,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(param(&b, "display")["valueString"], "米ぬか");
    assert_eq!(param(&b, "version")["valueString"], "20250401-R01");
    let (_, en) = get_with(
        &c,
        &format!("CodeSystem/$lookup?system={food}&code=J9FA12000011"),
        Some("en"),
    );
    assert_eq!(param(&en, "display")["valueString"], "Rice bran");
    // Rice bran is brown rice's: subsumed by it.
    let (_, s) = c.call(
        "doc",
        "GET",
        &format!("CodeSystem/$subsumes?system={food}&codeA=J9FA12000000&codeB=J9FA12000011"),
        None,
    );
    assert_eq!(param(&s, "outcome")["valueCode"], "subsumes");

    // JP-CLINS's value sets from its package (after JP Core).
    for f in ["jp-core.r4-1.1.2.tgz", "jp-clins.r4-1.5.2.tgz"] {
        c.install_package(&shared.join("jp").join(f));
    }
    let vs = "http://jpfhir.jp/fhir/clins/ValueSet/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_alb_VS";
    let (st, b) = get_with(
        &c,
        &format!("ValueSet/$expand?url={vs}&filter=ｱﾙﾌﾞﾐﾝ"),
        Some("ja"),
    );
    assert_eq!(st, 200, "{b}");
    let contains = b["expansion"]["contains"].as_array().unwrap();
    assert!(!contains.is_empty());
    assert!(contains.iter().all(|x| x["display"] == "アルブミン"), "{b}");
    assert_eq!(
        b["expansion"]["total"].as_u64().unwrap() as usize,
        contains.len()
    );
    let code = contains[0]["code"].as_str().unwrap();
    let (_, v) = c.call(
        "doc",
        "GET",
        &format!("ValueSet/$validate-code?url={vs}&code={code}"),
        None,
    );
    assert_eq!(param(&v, "result")["valueBoolean"], true);
}
