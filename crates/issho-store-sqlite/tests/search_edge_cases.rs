//! Hand-written resources for the edge cases of search, in an in-memory SQLite store.

mod common;

use common::*;
use issho_model::IssueType;
use serde_json::json;

fn store() -> Db {
    let c = open();
    let day = 86_400_000_000i64;
    let resources = vec![
        json!({"resourceType": "Patient", "id": "p1",
            "meta": {"tag": [{"system": "http://t", "code": "vip"}], "profile": ["http://example.org/P|2.0"]},
            "identifier": [{"system": "urn:mrn", "value": "MRN-1",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
            "name": [{"family": "山田", "given": ["太郎"]}, {"family": "ﾔﾏﾀﾞ", "given": ["ﾀﾛｳ"]}],
            "gender": "male", "birthDate": "1970-02-15", "active": true,
            "telecom": [{"system": "phone", "value": "03-1111"}],
            "managingOrganization": {"reference": "Organization/o1"}}),
        json!({"resourceType": "Patient", "id": "p2",
            "name": [{"family": "García", "given": ["José"]}],
            "gender": "male", "birthDate": "1970", "deceasedBoolean": true,
            "address": [{"city": "Zürich"}],
            "managingOrganization": {"reference": "http://elsewhere.org/fhir/Organization/o1"}}),
        json!({"resourceType": "Patient", "id": "p3",
            "name": [{"family": "Garcia-Lopez", "given": ["Ana"]}, {"text": "Mrs, Smith"}],
            "gender": "female", "birthDate": "1985-07-01T10:00:00+09:00",
            "identifier": [{"system": "urn:mrn", "value": "a|b,c"}]}),
        json!({"resourceType": "Organization", "id": "o1", "name": "Acme Hospital",
            "identifier": [{"system": "urn:org", "value": "ACME"}]}),
        json!({"resourceType": "Observation", "id": "w1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2020-03-01T08:00:00Z",
            "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}),
        json!({"resourceType": "Observation", "id": "w2", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Weight"},
            "subject": {"reference": "Patient/p2"},
            "effectivePeriod": {"start": "2020-03-01", "end": "2020-03-05"},
            "valueQuantity": {"value": 1000, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}),
        json!({"resourceType": "Observation", "id": "bp1", "status": "amended",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2021",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 140, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 90, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}),
        json!({"resourceType": "Observation", "id": "bp2", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p3"},
            "effectiveDateTime": "2021-06-15",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 90, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 140, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}),
        json!({"resourceType": "Condition", "id": "c1",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}]},
            "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2019-05"}),
        json!({"resourceType": "ValueSet", "id": "vs1", "url": "http://example.org/fhir/ValueSet/a", "status": "active"}),
        json!({"resourceType": "ValueSet", "id": "vs2", "url": "http://example.org/fhir/ValueSet/a/b", "status": "active"}),
        json!({"resourceType": "QuestionnaireResponse", "id": "qr1", "status": "completed",
            "questionnaire": "http://example.org/fhir/Questionnaire/phq9|2"}),
        json!({"resourceType": "QuestionnaireResponse", "id": "qr2", "status": "completed",
            "questionnaire": "http://other.example/Questionnaire/gad7"}),
        json!({"resourceType": "Provenance", "id": "prov1", "recorded": "2020-01-01T00:00:00Z",
            "target": [{"reference": "Observation/w1"}], "agent": [{"who": {"reference": "Organization/o1"}}]}),
    ];
    for (i, r) in resources.iter().enumerate() {
        put(&c, &c.index, r, (18_000 + i as i64) * day);
    }
    c
}

fn v(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn strings_are_normalised() {
    let c = store();
    assert_eq!(ids(&c, "Patient", "name=garcia"), v(&["p2", "p3"]));
    assert_eq!(ids(&c, "Patient", "name=GARCÍA"), v(&["p2", "p3"]));
    assert_eq!(ids(&c, "Patient", "name:exact=García"), v(&["p2"]));
    assert_eq!(ids(&c, "Patient", "name:exact=garcia"), v(&[] as &[&str]));
    assert_eq!(ids(&c, "Patient", "name:contains=lopez"), v(&["p3"]));
    // Half-width katakana finds full-width and the reverse; kanji match as written.
    assert_eq!(ids(&c, "Patient", "name=ヤマダ"), v(&["p1"]));
    assert_eq!(ids(&c, "Patient", "family=ﾔﾏ"), v(&["p1"]));
    assert_eq!(ids(&c, "Patient", "given=太郎"), v(&["p1"]));
    assert_eq!(ids(&c, "Patient", "address-city=zurich"), v(&["p2"]));
    // Escaped comma is part of the value, not an OR.
    assert_eq!(ids(&c, "Patient", r"name=Mrs\, Smith"), v(&["p3"]));
    assert_eq!(ids(&c, "Patient", "name=ana,jose"), v(&["p2", "p3"]));
    // AND by repetition.
    assert_eq!(ids(&c, "Patient", "name=garcia&name=ana"), v(&["p3"]));
}

#[test]
fn tokens() {
    let c = store();
    assert_eq!(ids(&c, "Patient", "gender=male"), v(&["p1", "p2"]));
    assert_eq!(ids(&c, "Patient", "gender:not=male"), v(&["p3"]));
    assert_eq!(
        ids(
            &c,
            "Patient",
            "gender=http://hl7.org/fhir/administrative-gender|female"
        ),
        v(&["p3"])
    );
    assert_eq!(
        ids(&c, "Patient", "gender=http://other|female"),
        v(&[] as &[&str])
    );
    assert_eq!(ids(&c, "Patient", "identifier=urn:mrn|MRN-1"), v(&["p1"]));
    assert_eq!(ids(&c, "Patient", "identifier=MRN-1"), v(&["p1"]));
    assert_eq!(
        ids(&c, "Patient", "identifier=urn:other|MRN-1"),
        v(&[] as &[&str])
    );
    assert_eq!(ids(&c, "Patient", "identifier=urn:mrn|"), v(&["p1", "p3"]));
    assert_eq!(
        ids(&c, "Patient", r"identifier=urn:mrn|a\|b\,c"),
        v(&["p3"])
    );
    assert_eq!(
        ids(
            &c,
            "Patient",
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-1"
        ),
        v(&["p1"])
    );
    assert_eq!(ids(&c, "Patient", "phone=03-1111"), v(&["p1"]));
    assert_eq!(ids(&c, "Patient", "active=true"), v(&["p1"]));
    assert_eq!(ids(&c, "Patient", "deceased=true"), v(&["p2"]));
    assert_eq!(ids(&c, "Patient", "deceased=false"), v(&["p1", "p3"]));
    assert_eq!(
        ids(&c, "Observation", "code=http://loinc.org|29463-7"),
        v(&["w1", "w2"])
    );
    assert_eq!(ids(&c, "Observation", "code:text=body wei"), v(&["w1"]));
    assert_eq!(ids(&c, "Observation", "code:text=weight"), v(&["w2"]));
    assert_eq!(
        ids(&c, "Observation", "status=final,amended"),
        v(&["bp1", "bp2", "w1", "w2"])
    );
    assert_eq!(ids(&c, "Patient", "_tag=http://t|vip"), v(&["p1"]));
    assert_eq!(
        ids(&c, "Patient", "_profile=http://example.org/P"),
        v(&["p1"])
    );
    assert_eq!(
        ids(&c, "Patient", "_profile=http://example.org/P|2.0"),
        v(&["p1"])
    );
    assert_eq!(ids(&c, "Patient", "_id=p1,p3"), v(&["p1", "p3"]));
    assert_eq!(ids(&c, "Patient", "_id:not=p1"), v(&["p2", "p3"]));
}

#[test]
fn missing() {
    let c = store();
    assert_eq!(ids(&c, "Patient", "address:missing=false"), v(&["p2"]));
    assert_eq!(ids(&c, "Patient", "address:missing=true"), v(&["p1", "p3"]));
    assert_eq!(ids(&c, "Patient", "organization:missing=true"), v(&["p3"]));
    assert_eq!(
        ids(
            &c,
            "Observation",
            "component-code-value-quantity:missing=false"
        ),
        v(&["bp1", "bp2"])
    );
}

#[test]
fn dates() {
    let c = store();
    // birthDate 1970 (year precision) is not within the day 1970-02-15; 1970-02-15 is in 1970.
    assert_eq!(ids(&c, "Patient", "birthdate=1970"), v(&["p1", "p2"]));
    assert_eq!(ids(&c, "Patient", "birthdate=1970-02-15"), v(&["p1"]));
    assert_eq!(ids(&c, "Patient", "birthdate=1970-02"), v(&["p1"]));
    assert_eq!(
        ids(&c, "Patient", "birthdate=ne1970-02-15"),
        v(&["p2", "p3"])
    );
    assert_eq!(
        ids(&c, "Patient", "birthdate=gt1970-02-15"),
        v(&["p2", "p3"])
    );
    assert_eq!(
        ids(&c, "Patient", "birthdate=ge1970-02-15"),
        v(&["p1", "p2", "p3"])
    );
    assert_eq!(ids(&c, "Patient", "birthdate=lt1970-02-15"), v(&["p2"]));
    assert_eq!(
        ids(&c, "Patient", "birthdate=le1970-02-15"),
        v(&["p1", "p2"])
    );
    assert_eq!(ids(&c, "Patient", "birthdate=sa1970-12-31"), v(&["p3"]));
    assert_eq!(ids(&c, "Patient", "birthdate=eb1980"), v(&["p1", "p2"]));
    // 1985-07-01T10:00+09:00 is 01:00 UTC on 1985-07-01.
    assert_eq!(ids(&c, "Patient", "birthdate=1985-07-01"), v(&["p3"]));
    assert_eq!(ids(&c, "Patient", "birthdate=ap1985-07"), v(&["p3"]));
    // Period 2020-03-01..2020-03-05 is not within 2020-03-01 but overlaps and is after it.
    assert_eq!(ids(&c, "Observation", "date=2020-03-01"), v(&["w1"]));
    assert_eq!(ids(&c, "Observation", "date=2020-03"), v(&["w1", "w2"]));
    assert_eq!(
        ids(&c, "Observation", "date=gt2020-03-01"),
        v(&["bp1", "bp2", "w2"])
    );
    assert_eq!(
        ids(&c, "Observation", "date=ge2021&date=lt2022"),
        v(&["bp1", "bp2"])
    );
    assert_eq!(
        ids(&c, "Observation", "date=2021-06-15T00:00:00Z"),
        v(&[] as &[&str])
    );
    assert_eq!(ids(&c, "Condition", "onset-date=2019"), v(&["c1"]));
    // _lastUpdated comes from resources.last_updated (day 18000 + index).
    assert_eq!(
        ids(&c, "Patient", "_lastUpdated=lt2019-04-16"),
        v(&["p1", "p2"])
    );
}

#[test]
fn quantities_and_units() {
    let c = store();
    assert_eq!(ids(&c, "Observation", "value-quantity=70.5"), v(&["w1"]));
    assert_eq!(
        ids(&c, "Observation", "value-quantity=70"),
        v(&[] as &[&str])
    );
    assert_eq!(ids(&c, "Observation", "value-quantity=7e1"), v(&["w1"]));
    assert_eq!(
        ids(
            &c,
            "Observation",
            "value-quantity=gt70|http://unitsofmeasure.org|kg"
        ),
        v(&["w1"])
    );
    // 1000 mg = 1 g: UCUM canonical units.
    assert_eq!(
        ids(
            &c,
            "Observation",
            "value-quantity=1|http://unitsofmeasure.org|g"
        ),
        v(&["w2"])
    );
    assert_eq!(
        ids(
            &c,
            "Observation",
            "value-quantity=1000|http://unitsofmeasure.org|mg"
        ),
        v(&["w2"])
    );
    assert_eq!(
        ids(
            &c,
            "Observation",
            "value-quantity=70500|http://unitsofmeasure.org|g"
        ),
        v(&["w1"])
    );
    assert_eq!(
        ids(
            &c,
            "Observation",
            "value-quantity=lt2|http://unitsofmeasure.org|kg"
        ),
        v(&["w2"])
    );
    assert_eq!(
        ids(&c, "Observation", "value-quantity=1000||mg"),
        v(&["w2"])
    );
    assert_eq!(
        ids(&c, "Observation", "value-quantity=ap1010||mg"),
        v(&["w2"])
    );
}

#[test]
fn composites_keep_components_together() {
    let c = store();
    let q = "component-code-value-quantity=http://loinc.org|8480-6$gt130";
    assert_eq!(ids(&c, "Observation", q), v(&["bp1"]));
    let q = "component-code-value-quantity=http://loinc.org|8462-4$gt130";
    assert_eq!(ids(&c, "Observation", q), v(&["bp2"]));
    let q = "combo-code-value-quantity=http://loinc.org|29463-7$70.5|http://unitsofmeasure.org|kg";
    assert_eq!(ids(&c, "Observation", q), v(&["w1"]));
    let q = "combo-code-value-quantity=http://loinc.org|8480-6$gt130";
    assert_eq!(ids(&c, "Observation", q), v(&["bp1"]));
    let q = "combo-code-value-quantity=http://loinc.org|85354-9$gt0";
    assert_eq!(ids(&c, "Observation", q), v(&[] as &[&str]));
}

/// A composite exists only where all its components have values at the same place; the
/// combo-* parameters see both the resource's own code/value and its components'.
#[test]
fn composite_applicability_and_combo_parameters() {
    let c = store();
    let obs = |q: &str| ids(&c, "Observation", q);
    assert_eq!(obs("code-value-quantity:missing=false"), v(&["w1", "w2"]));
    assert_eq!(obs("code-value-quantity:missing=true"), v(&["bp1", "bp2"]));
    assert_eq!(obs("code-value-concept:missing=false"), v(&[] as &[&str]));
    assert_eq!(obs("code-value-date:missing=true").len(), 4);
    assert_eq!(
        obs("component-code-value-quantity:missing=false"),
        v(&["bp1", "bp2"])
    );
    assert_eq!(
        obs("combo-code-value-quantity:missing=false"),
        v(&["bp1", "bp2", "w1", "w2"])
    );
    assert_eq!(obs("combo-code=8480-6"), v(&["bp1", "bp2"]));
    assert_eq!(obs("combo-code=http://loinc.org|29463-7"), v(&["w1", "w2"]));
    assert_eq!(obs("combo-code:text=weight"), v(&["w2"]));
    assert_eq!(obs("combo-code:text=body"), v(&["w1"]));
    assert_eq!(obs("combo-code:missing=false").len(), 4);
    assert_eq!(
        obs("combo-value-quantity=gt130|http://unitsofmeasure.org|mm[Hg]"),
        v(&["bp1", "bp2"])
    );
    assert_eq!(
        obs("combo-value-quantity=70.5|http://unitsofmeasure.org|kg"),
        v(&["w1"])
    );
    assert_eq!(
        obs("combo-value-quantity=1|http://unitsofmeasure.org|g"),
        v(&["w2"])
    );
    assert_eq!(
        search(
            &c,
            Some("Observation"),
            "combo-code=29463-7&_sort=-combo-value-quantity"
        ),
        v(&["Observation/w2", "Observation/w1"])
    );
}

#[test]
fn references_chains_and_has() {
    let c = store();
    assert_eq!(
        ids(&c, "Observation", "subject=Patient/p1"),
        v(&["bp1", "w1"])
    );
    assert_eq!(ids(&c, "Observation", "subject=p1"), v(&["bp1", "w1"]));
    assert_eq!(ids(&c, "Observation", "patient=p1"), v(&["bp1", "w1"]));
    assert_eq!(ids(&c, "Observation", "subject:Patient=p2"), v(&["w2"]));
    assert_eq!(
        ids(&c, "Observation", "subject:Group=p2"),
        v(&[] as &[&str])
    );
    assert_eq!(
        ids(&c, "Patient", "organization=Organization/o1"),
        v(&["p1"])
    );
    assert_eq!(
        ids(
            &c,
            "Patient",
            "organization=http://elsewhere.org/fhir/Organization/o1"
        ),
        v(&["p2"])
    );
    assert_eq!(
        ids(&c, "Observation", "subject:Patient.name=garcia"),
        v(&["bp2", "w2"])
    );
    assert_eq!(ids(&c, "Observation", "subject.gender=female"), v(&["bp2"]));
    assert_eq!(
        ids(&c, "Observation", "patient.organization.name=acme"),
        v(&["bp1", "w1"])
    );
    assert_eq!(
        ids(
            &c,
            "Observation",
            "patient.organization.identifier=urn:org|ACME"
        ),
        v(&["bp1", "w1"])
    );
    assert_eq!(
        ids(
            &c,
            "Patient",
            "_has:Observation:patient:code=http://loinc.org|85354-9"
        ),
        v(&["p1", "p3"])
    );
    assert_eq!(
        ids(&c, "Patient", "_has:Condition:subject:code=44054006"),
        v(&["p1"])
    );
    assert_eq!(
        ids(
            &c,
            "Patient",
            "_has:Observation:subject:_has:Provenance:target:agent=Organization/o1"
        ),
        v(&["p1"])
    );
}

#[test]
fn uris() {
    let c = store();
    assert_eq!(
        ids(&c, "ValueSet", "url=http://example.org/fhir/ValueSet/a"),
        v(&["vs1"])
    );
    assert_eq!(
        ids(&c, "ValueSet", "url:below=http://example.org/fhir/"),
        v(&["vs1", "vs2"])
    );
    assert_eq!(
        ids(
            &c,
            "ValueSet",
            "url:above=http://example.org/fhir/ValueSet/a/b/c"
        ),
        v(&["vs1", "vs2"])
    );
}

/// `:below` / `:above` on canonical (and absolute) references: URL hierarchies.
#[test]
fn reference_url_hierarchies() {
    let c = store();
    assert_eq!(
        ids(
            &c,
            "QuestionnaireResponse",
            "questionnaire:below=http://example.org/fhir/"
        ),
        v(&["qr1"])
    );
    assert_eq!(
        ids(
            &c,
            "QuestionnaireResponse",
            "questionnaire:above=http://other.example/Questionnaire/gad7/extra"
        ),
        v(&["qr2"])
    );
    assert_eq!(
        ids(
            &c,
            "QuestionnaireResponse",
            "questionnaire:below=http://nowhere.example/"
        ),
        v(&[])
    );
}

#[test]
fn sort_paging_count_and_system_search() {
    let c = store();
    let sorted = search(&c, Some("Patient"), "_sort=birthdate");
    assert_eq!(sorted, v(&["Patient/p2", "Patient/p1", "Patient/p3"]));
    // Descending sorts by the end of each value's range: `1970` ends after `1970-02-15`.
    let sorted = search(&c, Some("Patient"), "_sort=-birthdate,_id");
    assert_eq!(sorted, v(&["Patient/p3", "Patient/p2", "Patient/p1"]));
    let sorted = search(&c, Some("Patient"), "_sort=gender,-_id");
    assert_eq!(sorted, v(&["Patient/p3", "Patient/p2", "Patient/p1"]));
    let page = search(&c, Some("Observation"), "_sort=_id&_count=2&_offset=1");
    assert_eq!(page, v(&["Observation/bp2", "Observation/w1"]));
    assert_eq!(count(&c, Some("Observation"), "_count=1"), 4);
    assert_eq!(count(&c, None, ""), 14);
    assert_eq!(count(&c, None, "_type=Patient,Organization"), 4);
    assert_eq!(count(&c, None, "_id=p1,o1"), 2);
    assert_eq!(
        count(&c, None, "_type=Patient,Observation&_tag=http://t|vip"),
        1
    );
    assert_eq!(
        count(
            &c,
            None,
            "_type=Observation,Condition&code=44054006,85354-9"
        ),
        3
    );
}

#[test]
fn includes() {
    let c = store();
    let q = issho_search::parse(
        Some("Observation"),
        &pairs("code=29463-7&_include=Observation:subject:Patient&_revinclude=Provenance:target"),
        true,
    )
    .unwrap();
    let (sql, args) = issho_store_sqlite::sqlite_sql::select(&q);
    let rids = rids_of(&c, &sql, &args);
    let (isql, iargs) = issho_store_sqlite::sqlite_sql::includes(&q, &rids, false).unwrap();
    let mut inc = names(&c, &rids_of(&c, &isql, &iargs));
    inc.sort();
    assert_eq!(inc, v(&["Patient/p1", "Patient/p2", "Provenance/prov1"]));
    // :iterate follows the newly included resources.
    let q = issho_search::parse(
        Some("Observation"),
        &pairs("_id=w1&_include=Observation:patient&_include:iterate=Patient:organization"),
        true,
    )
    .unwrap();
    let rids = rids_of(
        &c,
        &issho_store_sqlite::sqlite_sql::select(&q).0,
        &issho_store_sqlite::sqlite_sql::select(&q).1,
    );
    let (isql, iargs) = issho_store_sqlite::sqlite_sql::includes(&q, &rids, false).unwrap();
    let first = rids_of(&c, &isql, &iargs);
    assert_eq!(names(&c, &first), v(&["Patient/p1"]));
    let (isql, iargs) = issho_store_sqlite::sqlite_sql::includes(&q, &first, true).unwrap();
    assert_eq!(
        names(&c, &rids_of(&c, &isql, &iargs)),
        v(&["Organization/o1"])
    );
}

#[test]
fn reindex_and_unindex() {
    let c = store();
    let rid: i64 = c
        .query_row("SELECT rid FROM resources WHERE id = 'p3'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let old: serde_json::Value = c
        .query_row("SELECT body FROM resources WHERE rid = ?1", [rid], |r| {
            r.get::<_, String>(0)
        })
        .map(|b| serde_json::from_str(&b).unwrap())
        .unwrap();
    let changed = json!({"resourceType": "Patient", "id": "p3", "gender": "other",
        "identifier": [{"system": "urn:mrn", "value": "a|b,c"}]});
    c.index.replace(&c, rid, &old, &changed).unwrap();
    assert_eq!(ids(&c, "Patient", "gender=other"), v(&["p3"]));
    assert_eq!(ids(&c, "Patient", "gender=female"), v(&[] as &[&str]));
    assert_eq!(ids(&c, "Patient", "name=ana"), v(&[] as &[&str]));
    assert_eq!(ids(&c, "Patient", "birthdate=1985"), v(&[] as &[&str]));
    // Unchanged rows stay.
    assert_eq!(
        ids(&c, "Patient", "identifier=urn:mrn|a\\|b\\,c"),
        v(&["p3"])
    );
    c.index.remove(&c, rid, &changed).unwrap();
    for t in [
        "sp_token",
        "sp_string",
        "sp_ref",
        "sp_date",
        "sp_number",
        "sp_quantity",
        "sp_uri",
    ] {
        let n: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM {t} WHERE rid = ?1"),
                [rid],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{t}");
    }
    c.execute("UPDATE resources SET deleted = 1 WHERE rid = ?1", [rid])
        .unwrap();
    assert_eq!(ids(&c, "Patient", "gender=other"), v(&[] as &[&str]));
    assert_eq!(count(&c, Some("Patient"), ""), 2);
}

#[test]
fn injection_attempts_are_bound_values() {
    let c = store();
    for evil in [
        "x' OR '1'='1",
        "x'); DROP TABLE resources; --",
        "\" OR 1=1 --",
        "%",
        "_",
    ] {
        assert!(
            ids(&c, "Patient", &format!("name={evil}")).is_empty(),
            "{evil}"
        );
        assert!(ids(&c, "Patient", &format!("identifier={evil}")).is_empty());
        assert!(ids(&c, "Patient", &format!("_id={evil}")).is_empty());
        assert!(ids(&c, "Patient", &format!("name:contains={evil}")).is_empty());
    }
    assert_eq!(count(&c, Some("Patient"), ""), 3);
    // Names never reach the SQL text either: an unknown parameter is refused.
    let e = issho_search::parse(Some("Patient"), &pairs("name' OR 1=1 --=x"), true).unwrap_err();
    assert_eq!(e[0].code, IssueType::NotSupported);
}

fn err(rt: Option<&str>, query: &str) -> Vec<issho_model::Issue> {
    issho_search::parse(rt, &pairs(query), true).expect_err(query)
}

#[test]
fn negative_cases() {
    let cases: &[(&str, IssueType, &str)] = &[
        (
            "birthdate=2020-13",
            IssueType::Invalid,
            "bad date '2020-13' for parameter birthdate",
        ),
        (
            "birthdate=xx2020",
            IssueType::Invalid,
            "unknown prefix 'xx'",
        ),
        ("birthdate=2020-02-30", IssueType::Invalid, "bad date"),
        (
            "name:foo=x",
            IssueType::NotSupported,
            "unknown modifier ':foo'",
        ),
        (
            "name:not=x",
            IssueType::Invalid,
            "not allowed on string parameter 'name'",
        ),
        (
            "gender:exact=x",
            IssueType::Invalid,
            "not allowed on token parameter 'gender'",
        ),
        (
            "birthdate:missing=maybe",
            IssueType::Invalid,
            ":missing takes true or false",
        ),
        (
            "general-practitioner:Observation=1",
            IssueType::Invalid,
            "not a target type",
        ),
        ("organization.nosuch=x", IssueType::Invalid, "broken chain"),
        (
            "gender.name=x",
            IssueType::Invalid,
            "cannot chain through 'gender'",
        ),
        (
            "nosuch=x",
            IssueType::NotSupported,
            "unknown search parameter 'nosuch'",
        ),
        (
            "_count=-1",
            IssueType::Invalid,
            "_count must be a non-negative integer",
        ),
        (
            "_sort=nosuch",
            IssueType::NotSupported,
            "unknown search parameter 'nosuch'",
        ),
        (
            "_include=Patient:gender",
            IssueType::Invalid,
            "not a reference parameter",
        ),
        (
            "_has:Observation:patient=x",
            IssueType::Invalid,
            "_has must be",
        ),
        (
            "_has:Observation:code:status=final",
            IssueType::Invalid,
            "not a reference parameter",
        ),
        (
            "identifier=a|b|c",
            IssueType::Invalid,
            "is not [system|]code",
        ),
        ("_summary=maybe", IssueType::Invalid, "_summary must be"),
        ("_total=lots", IssueType::Invalid, "_total must be"),
        ("language:in=vs", IssueType::Invalid, "is not a value set"),
        (
            "general-practitioner:below=Practitioner/1",
            IssueType::Invalid,
            "absolute or canonical URL",
        ),
        ("_query=x", IssueType::NotSupported, "not supported"),
        (
            "_content:exact=x",
            IssueType::NotSupported,
            "modifier ':exact' is not supported on '_content'",
        ),
        ("_text=*", IssueType::Invalid, "has no searchable text"),
        ("_sort=_content", IssueType::NotSupported, "cannot sort"),
    ];
    for (q, code, text) in cases {
        let e = err(Some("Patient"), q);
        assert_eq!(e[0].code, *code, "{q}: {e:?}");
        assert!(e[0].diagnostics.contains(text), "{q}: {}", e[0].diagnostics);
        assert!(e[0].expression.is_some(), "{q}");
    }
    let e = err(Some("Observation"), "value-quantity=1|a");
    assert!(e[0].diagnostics.contains("is not [prefix]number"), "{e:?}");
    let e = err(Some("Observation"), "component-code-value-quantity=a");
    assert!(e[0].diagnostics.contains("must have 2 parts"), "{e:?}");
    let e = err(None, "gender=male");
    assert!(e[0].diagnostics.contains("use _type"), "{e:?}");
    let e = err(None, "_type=Patient,Nope");
    assert!(e[0].diagnostics.contains("Nope"), "{e:?}");
    assert!(issho_search::parse(Some("NotAType"), &[], true).is_err());
    // Several problems are all reported.
    assert_eq!(err(Some("Patient"), "birthdate=x&gender:exact=y").len(), 2);
}

#[test]
fn lenient_mode_ignores_unknown_parameters() {
    let q = issho_search::parse(
        Some("Patient"),
        &pairs("nosuch=1&gender=male&_query=x"),
        false,
    )
    .unwrap();
    assert_eq!(q.filters.len(), 1);
    assert_eq!(q.warnings.len(), 2);
    assert!(q.warnings[0].diagnostics.contains("nosuch"));
    assert_eq!(
        q.canonical_params(),
        vec![("gender".to_string(), "male".to_string())]
    );
    // Malformed values stay errors.
    assert!(issho_search::parse(Some("Patient"), &pairs("birthdate=x"), false).is_err());
    // Control parameters are carried.
    let q = issho_search::parse(
        Some("Patient"),
        &pairs("_summary=count&_elements=id,name&_total=accurate&_count=5&_offset=10&_format=json"),
        true,
    )
    .unwrap();
    assert_eq!(q.summary, Some(issho_search::Summary::Count));
    assert_eq!(q.elements, vec!["id", "name"]);
    assert_eq!(q.total, issho_search::TotalMode::Accurate);
    assert_eq!((q.count, q.offset), (Some(5), 10));
}

/// Tables of an older index format are dropped and rebuilt from the current bodies at open.
#[test]
fn older_index_format_is_rebuilt() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(RESOURCES_DDL).unwrap();
    // The first format: text parameter keys, no `sp_meta`.
    c.execute_batch(
        "CREATE TABLE sp_token (param TEXT NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL,
           rid INTEGER NOT NULL, grp INTEGER NOT NULL DEFAULT 0,
           PRIMARY KEY (param, code, system, rid, grp)) WITHOUT ROWID;
         INSERT INTO sp_token VALUES ('Patient.gender', 'stale', '', 1, 0);",
    )
    .unwrap();
    let p = json!({"resourceType": "Patient", "id": "a", "gender": "female", "name": [{"family": "Sato"}]});
    c.execute(
        "INSERT INTO resources (rid, type, id, version, last_updated, body) VALUES (1, 'Patient', 'a', 1, 0, ?1)",
        [p.to_string()],
    )
    .unwrap();
    // A deleted resource has no body and no rows.
    c.execute(
        "INSERT INTO resources (rid, type, id, version, last_updated, deleted, body) VALUES (2, 'Patient', 'b', 2, 0, 1, NULL)",
        [],
    )
    .unwrap();
    let index = issho_store_sqlite::SqliteIndex::open(&c).unwrap();
    let db = Db { conn: c, index };
    assert_eq!(ids(&db, "Patient", "gender=female"), v(&["a"]));
    assert_eq!(ids(&db, "Patient", "family=sato"), v(&["a"]));
    assert_eq!(ids(&db, "Patient", "gender=stale"), v(&[] as &[&str]));
    // Opening again keeps the rows and the parameter ids.
    let before: Vec<(i64, String)> = db
        .prepare("SELECT id, key FROM sp_param ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    issho_store_sqlite::SqliteIndex::open(&db).unwrap();
    let after: Vec<(i64, String)> = db
        .prepare("SELECT id, key FROM sp_param ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(ids(&db, "Patient", "gender=female"), v(&["a"]));
}
