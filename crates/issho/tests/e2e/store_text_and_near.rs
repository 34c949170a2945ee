//! `_text`, `_content` and `near` on hand-written resources, through the store's interface on
//! the store of the run (embedded, or PostgreSQL on the suite's PostgreSQL run): combined with
//! other conditions, across updates and deletions.

use crate::common::{StoreDb as Db, count, ids, pairs, search};
use issho_model::IssueType;
use serde_json::{Value, json};

fn v(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

const NONE: &[&str] = &[];

fn narrative(html: &str) -> Value {
    json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{html}</div>")})
}

fn store() -> Db {
    let c = Db::open();
    let resources = vec![
        json!({"resourceType": "Condition", "id": "c1",
            "text": narrative("<p>本態性<b>高血圧</b>症。降圧薬を継続。</p>"),
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11", "display": "2型糖尿病"}]},
            "subject": {"reference": "Patient/p1"}}),
        json!({"resourceType": "Condition", "id": "c2",
            "text": narrative("<p>Essential hypertension, well controlled.</p>"),
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10", "display": "本態性高血圧症"}],
                     "text": "Hypertension"},
            "subject": {"reference": "Patient/p2"}}),
        json!({"resourceType": "Condition", "id": "c3",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11", "display": "Type 2 diabetes mellitus"}]},
            "note": [{"text": "Café-au-lait spots; HbA1c ７．２％"}],
            "subject": {"reference": "Patient/p1"}}),
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "山田", "given": ["太郎"]}],
            "text": narrative("<p>山田 太郎 (ﾔﾏﾀﾞ ﾀﾛｳ)</p>")}),
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Smith"}]}),
        // Positions: Tokyo Station, Shinjuku (about 6.2 km west), Yokohama (about 27 km),
        // Osaka (about 403 km), and two points on either side of the antimeridian.
        json!({"resourceType": "Location", "id": "tokyo", "name": "東京駅前クリニック",
            "position": {"latitude": 35.681236, "longitude": 139.767125}}),
        json!({"resourceType": "Location", "id": "shinjuku", "name": "新宿クリニック", "status": "active",
            "position": {"latitude": 35.690921, "longitude": 139.700258}}),
        json!({"resourceType": "Location", "id": "yokohama", "name": "横浜病院", "status": "inactive",
            "position": {"latitude": 35.465798, "longitude": 139.622314}}),
        json!({"resourceType": "Location", "id": "osaka", "name": "大阪病院",
            "position": {"latitude": 34.702485, "longitude": 135.495951}}),
        json!({"resourceType": "Location", "id": "east", "position": {"latitude": -16.5, "longitude": 179.99}}),
        json!({"resourceType": "Location", "id": "west", "position": {"latitude": -16.5, "longitude": -179.99}}),
        json!({"resourceType": "Location", "id": "nowhere", "name": "位置なし"}),
        json!({"resourceType": "Location", "id": "bad", "position": {"latitude": 123.0, "longitude": 0.0}}),
    ];
    for r in &resources {
        c.put(r);
    }
    c
}

#[test]
fn narrative_search() {
    let c = store();
    assert_eq!(ids(&c, "Condition", "_text=高血圧"), v(&["c1"]));
    assert_eq!(ids(&c, "Condition", "_text=降圧薬"), v(&["c1"]));
    // The display is content, not narrative.
    assert_eq!(ids(&c, "Condition", "_text=糖尿病"), v(NONE));
    assert_eq!(ids(&c, "Condition", "_text=hypertension"), v(&["c2"]));
    assert_eq!(
        ids(&c, "Condition", "_text=HYPERTENSION controlled"),
        v(&["c2"])
    );
    assert_eq!(
        ids(&c, "Condition", "_text=hypertension uncontrolled"),
        v(NONE)
    );
    // Comma: either value.
    assert_eq!(
        ids(&c, "Condition", "_text=降圧,controlled"),
        v(&["c1", "c2"])
    );
    // Half-width kana in the narrative, full-width in the search.
    assert_eq!(ids(&c, "Patient", "_text=ヤマダ"), v(&["p1"]));
    // Tags and attributes are not text.
    assert_eq!(ids(&c, "Condition", "_text=xhtml"), v(NONE));
    assert_eq!(ids(&c, "Condition", "_text=div"), v(NONE));
}

#[test]
fn content_search() {
    let c = store();
    assert_eq!(ids(&c, "Condition", "_content=糖尿病"), v(&["c1"]));
    assert_eq!(ids(&c, "Condition", "_content=高血圧"), v(&["c2"]));
    assert_eq!(ids(&c, "Condition", "_content=diabetes"), v(&["c3"]));
    assert_eq!(ids(&c, "Condition", "_content=e11"), v(&["c1", "c3"]));
    assert_eq!(ids(&c, "Condition", "_content=cafe"), v(&["c3"]));
    assert_eq!(ids(&c, "Condition", "_content=hba1c 7"), v(&["c3"]));
    // The narrative is not content; references, systems and ids are not text.
    assert_eq!(ids(&c, "Condition", "_content=controlled"), v(NONE));
    assert_eq!(ids(&c, "Condition", "_content=p1"), v(NONE));
    assert_eq!(ids(&c, "Condition", "_content=icd"), v(NONE));
    assert_eq!(ids(&c, "Condition", "_content=c1"), v(NONE));
    // Across types (system search) and per type.
    assert_eq!(search(&c, None, "_content=山田"), v(&["Patient/p1"]));
    assert_eq!(
        search(&c, None, "_content=病院&_sort=_id"),
        v(&["Location/osaka", "Location/yokohama"])
    );
    assert_eq!(count(&c, Some("Location"), "_content=クリニック"), 2);
}

#[test]
fn combined_with_other_conditions() {
    let c = store();
    // A reference drives, the full-text test is a probe per candidate.
    assert_eq!(
        ids(&c, "Condition", "subject=Patient/p1&_content=糖尿病"),
        v(&["c1"])
    );
    assert_eq!(
        ids(
            &c,
            "Condition",
            "subject=Patient/p1&_content=diabetes,糖尿病"
        ),
        v(&["c1", "c3"])
    );
    assert_eq!(
        ids(&c, "Condition", "subject=Patient/p2&_content=糖尿病"),
        v(NONE)
    );
    // Full text drives, a token is checked.
    assert_eq!(
        ids(
            &c,
            "Condition",
            "_content=e11&code=http://hl7.org/fhir/sid/icd-10|E11&_text=降圧"
        ),
        v(&["c1"])
    );
    // Two full-text conditions (AND), negated other condition.
    assert_eq!(
        ids(&c, "Condition", "_content=e11&_content=type&code:not=I10"),
        v(&["c3"])
    );
    // Chained and reverse-chained.
    assert_eq!(
        ids(&c, "Condition", "subject:Patient._text=山田"),
        v(&["c1", "c3"])
    );
    assert_eq!(
        ids(
            &c,
            "Patient",
            "_has:Condition:subject:_content=hypertension"
        ),
        v(&["p2"])
    );
    // With near.
    assert_eq!(
        ids(
            &c,
            "Location",
            "near=35.681236|139.767125|10|km&_content=クリニック"
        ),
        v(&["shinjuku", "tokyo"])
    );
    assert_eq!(
        ids(
            &c,
            "Location",
            "near=35.681236|139.767125|30|km&status=inactive"
        ),
        v(&["yokohama"])
    );
}

#[test]
fn near() {
    let c = store();
    let tokyo = "35.681236|139.767125";
    assert_eq!(
        ids(&c, "Location", &format!("near={tokyo}|1")),
        v(&["tokyo"])
    );
    assert_eq!(
        ids(&c, "Location", &format!("near={tokyo}|7|km")),
        v(&["shinjuku", "tokyo"])
    );
    assert_eq!(
        ids(&c, "Location", &format!("near={tokyo}|6000|m")),
        v(&["tokyo"])
    );
    assert_eq!(
        ids(&c, "Location", &format!("near={tokyo}|20|mi")),
        v(&["shinjuku", "tokyo", "yokohama"])
    );
    assert_eq!(
        ids(&c, "Location", &format!("near={tokyo}|500|[mi_i]")),
        v(&["osaka", "shinjuku", "tokyo", "yokohama"])
    );
    // Default distance (5 km) and units (km).
    assert_eq!(ids(&c, "Location", &format!("near={tokyo}")), v(&["tokyo"]));
    assert_eq!(
        ids(&c, "Location", &format!("near={tokyo}|7")),
        v(&["shinjuku", "tokyo"])
    );
    // OR of two centres.
    assert_eq!(
        ids(&c, "Location", &format!("near={tokyo}|1,34.7|135.5|5")),
        v(&["osaka", "tokyo"])
    );
    // Across the antimeridian: the two points are about 2.1 km apart.
    assert_eq!(
        ids(&c, "Location", "near=-16.5|179.99|3"),
        v(&["east", "west"])
    );
    assert_eq!(ids(&c, "Location", "near=-16.5|-179.995|1"), v(&["west"]));
    // Everything, from anywhere.
    assert_eq!(ids(&c, "Location", "near=0|0|30000").len(), 6);
    assert_eq!(count(&c, Some("Location"), &format!("near={tokyo}|30")), 3);
    // Chained: conditions whose subject… (no Location reference here): Encounter.location.
    let e = issho_search::parse(
        Some("Encounter"),
        &pairs(&format!("location.near={tokyo}|1")),
        true,
    );
    assert!(e.is_ok(), "{e:?}");
}

#[test]
fn malformed_near() {
    for q in [
        "near=abc|139|1",
        "near=91|139|1",
        "near=35|181|1",
        "near=35|139|-1",
        "near=35|139|1|parsec",
        "near=35",
        "near=35|139|1|km|x",
    ] {
        let e = issho_search::parse(Some("Location"), &pairs(q), true).expect_err(q);
        assert_eq!(e[0].code, IssueType::Invalid, "{q}");
        assert!(e[0].expression.is_some(), "{q}");
    }
    let e = issho_search::parse(Some("Location"), &pairs("near:missing=true"), true).unwrap_err();
    assert_eq!(e[0].code, IssueType::NotSupported);
    let e = issho_search::parse(Some("Location"), &pairs("_sort=near"), true).unwrap_err();
    assert_eq!(e[0].code, IssueType::NotSupported);
    // Lenient handling does not forgive malformed values.
    assert!(issho_search::parse(Some("Location"), &pairs("near=x|y"), false).is_err());
}

#[test]
fn updates_and_deletions() {
    let c = store();
    let body = |id: &str| -> Value { c.current(id) };
    // Update: new narrative and content, old ones gone.
    let old = body("c1");
    let mut new = old.clone();
    new["text"] = narrative("<p>慢性腎臓病</p>");
    new["code"]["coding"][0]["display"] = json!("慢性腎臓病");
    c.put(&new);
    assert_eq!(ids(&c, "Condition", "_text=高血圧"), v(NONE));
    assert_eq!(ids(&c, "Condition", "_content=糖尿病"), v(NONE));
    assert_eq!(ids(&c, "Condition", "_text=腎臓"), v(&["c1"]));
    assert_eq!(ids(&c, "Condition", "_content=腎臓病"), v(&["c1"]));
    // The code did not change: still found by its unchanged text.
    assert_eq!(ids(&c, "Condition", "_content=e11"), v(&["c1", "c3"]));
    // An update that changes no text leaves the row alone.
    let mut same = new.clone();
    same["clinicalStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]});
    c.put(&same);
    assert_eq!(ids(&c, "Condition", "_content=腎臓病 active"), v(&["c1"]));
    // Moving a location.
    let old = body("yokohama");
    let mut moved = old.clone();
    moved["position"] = json!({"latitude": 35.6812, "longitude": 139.7671});
    c.put(&moved);
    assert_eq!(
        ids(&c, "Location", "near=35.681236|139.767125|1"),
        v(&["tokyo", "yokohama"])
    );
    assert_eq!(ids(&c, "Location", "near=35.465798|139.622314|1"), v(NONE));
    // Deletion removes the full-text row and the position.
    c.delete("Condition", "c1");
    c.delete("Location", "tokyo");
    assert_eq!(ids(&c, "Condition", "_text=腎臓"), v(NONE));
    assert_eq!(
        ids(&c, "Location", "near=35.681236|139.767125|1"),
        v(&["yokohama"])
    );
    assert_eq!(ids(&c, "Condition", "_content=腎臓病"), v(NONE));
}
