use super::*;

fn section(code: &str, entries: &[&str], sub: Vec<Value>) -> Value {
    let mut s = json!({"title": code,
        "code": {"coding": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/document-section", "code": code}]},
        "entry": entries.iter().map(|u| json!({"reference": u})).collect::<Vec<_>>()});
    if !sub.is_empty() {
        s["section"] = json!(sub);
    }
    s
}

fn referral() -> Value {
    json!({"resourceType": "Bundle", "type": "document",
    "identifier": {"system": "http://jpfhir.jp/fhir/clins/bundle-identifier", "value": "1319876543^2024^7"},
    "entry": [
        {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Composition", "status": "final",
            "extension": [{"url": VERSION_EXT, "valueString": "2.0"}],
            "identifier": {"system": RESOURCE_INSTANCE, "value": "doc-7"},
            "type": {"coding": [{"system": DOC_TYPES, "code": "57133-1"}]},
            "subject": {"reference": "urn:uuid:p"}, "date": "2024-05-01", "title": "診療情報提供書",
            "author": [{"reference": "urn:uuid:oa"}], "custodian": {"reference": "urn:uuid:oa"},
            "section": [
                section("920", &["urn:uuid:oa", "urn:uuid:da"], vec![]),
                section("910", &["urn:uuid:ob"], vec![]),
                section("300", &[], vec![
                    section("950", &[], vec![]),
                    section("340", &["urn:uuid:c1", "urn:uuid:c2"], vec![]),
                    section("360", &[], vec![]),
                    section("510", &["urn:uuid:a1"], vec![])])]}},
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "sender-id",
            "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11319876543", "value": "00123"},
                {"system": MEMBER_ID, "value": "00012345:1:2:01"}]}},
        {"fullUrl": "urn:uuid:oa", "resource": {"resourceType": "Organization",
            "identifier": [{"system": INSTITUTION_NO, "value": "1319876543"}]}},
        {"fullUrl": "urn:uuid:ob", "resource": {"resourceType": "Organization",
            "identifier": [{"system": INSTITUTION_NO, "value": "1311234567"}]}},
        {"fullUrl": "urn:uuid:da", "resource": {"resourceType": "Practitioner", "name": [{"text": "田中"}]}},
        {"fullUrl": "urn:uuid:c1", "resource": {"resourceType": "Condition", "subject": {"reference": "urn:uuid:p"},
            "identifier": [{"system": RESOURCE_INSTANCE, "value": "cond-1"}]}},
        {"fullUrl": "urn:uuid:c2", "resource": {"resourceType": "Condition", "subject": {"reference": "urn:uuid:p"},
            "identifier": [{"system": RESOURCE_INSTANCE, "value": "cond-1"}]}},
        {"fullUrl": "urn:uuid:a1", "resource": {"resourceType": "AllergyIntolerance", "patient": {"reference": "urn:uuid:p"},
            "meta": {"tag": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication", "code": "UNINFORMED"}]},
            "identifier": [{"system": RESOURCE_INSTANCE, "value": "alg-1"}]}}
    ]})
}

/// Hospital A is known; clinic B is not yet.
fn known(no: &str) -> Option<String> {
    (no == "1319876543").then(|| "org-a".to_string())
}

fn by_type<'a>(t: &'a Value, rt: &str) -> Vec<&'a Value> {
    t["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == rt)
        .collect()
}

#[test]
fn a_referral_becomes_one_transaction_with_stable_ids() {
    let doc = referral();
    assert_eq!(kind_of(&doc), Some(Kind::Referral));
    let plan1 = plan(&doc, "2024-05-02T00:00:00Z", &known).unwrap();
    assert_eq!(plan1.version.as_deref(), Some("2.0"));
    assert_eq!(plan1.items, 4, "Composition, two Conditions, the allergy");
    let t = &plan1.transaction;
    // The Patient and organizations: found by their identifiers, not duplicated.
    let p = by_type(t, "Patient")[0];
    assert_eq!(p["request"]["method"], "POST");
    assert_eq!(
        p["request"]["ifNoneExist"],
        "identifier=urn:oid:1.2.392.100495.20.3.51.11319876543|00123"
    );
    assert!(p["resource"].get("id").is_none());
    let orgs = by_type(t, "Organization");
    assert_eq!(
        orgs[0]["request"]["ifNoneExist"],
        format!("identifier={INSTITUTION_NO}|1319876543")
    );
    assert_eq!(
        orgs[1]["request"]["url"],
        format!("Organization/{}", organization_id("1311234567"))
    );
    // The sender holds the extracted data.
    assert!(
        by_type(t, "Condition")
            .iter()
            .all(|c| c["resource"]["meta"]["source"] == "Organization/org-a")
    );
    // The allergy's id comes from the sender and its identifier; two Conditions sharing one
    // identifier keep apart (by their entries).
    let a = by_type(t, "AllergyIntolerance")[0];
    assert_eq!(
        a["resource"]["id"],
        id_for("1319876543|AllergyIntolerance|alg-1")
    );
    let conds = by_type(t, "Condition");
    assert_ne!(conds[0]["resource"]["id"], conds[1]["resource"]["id"]);
    // The document whole, its reference, the provenance and the referral.
    let b = by_type(t, "Binary")[0];
    let bytes = issho_model::base64::decode(b["resource"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), doc);
    let dr = by_type(t, "DocumentReference")[0];
    assert_eq!(dr["resource"]["subject"]["reference"], "urn:uuid:p");
    assert_eq!(
        dr["resource"]["masterIdentifier"]["value"],
        "1319876543^2024^7"
    );
    // What an entry is labelled with, the whole document is: the allergy's indication.
    let b = by_type(t, "Binary")[0];
    assert_eq!(b["resource"]["meta"]["tag"][0]["code"], "UNINFORMED", "{b}");
    assert_eq!(dr["resource"]["meta"]["tag"][0]["code"], "UNINFORMED");
    // A Composition dated by day only: DocumentReference.date (an instant) is left out.
    assert!(dr["resource"].get("date").is_none());
    assert!(is_instant("2020-08-21T12:12:20+09:00") && is_instant("2020-08-21T03:12:20Z"));
    assert!(!is_instant("2020-08-21") && !is_instant("2020-08-21T12:12"));
    let prov = by_type(t, "Provenance")[0];
    assert_eq!(prov["resource"]["target"].as_array().unwrap().len(), 4);
    let sr = by_type(t, "ServiceRequest")[0];
    assert_eq!(sr["resource"]["performer"][0]["reference"], "urn:uuid:ob");
    assert_eq!(sr["resource"]["requester"]["reference"], "urn:uuid:da");
    // The same document again: the same transaction.
    let plan2 = plan(&doc, "2024-05-03T00:00:00Z", &known).unwrap();
    let ids = |p: &Intake| -> Vec<String> {
        p.transaction["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["request"]["url"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&plan1), ids(&plan2));
}

#[test]
fn what_a_document_must_hold() {
    let mut doc = referral();
    // Without the referral purpose and the receiving institution.
    doc["entry"][0]["resource"]["section"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    doc["entry"][0]["resource"]["section"][1]["section"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let issues = plan(&doc, "2024-05-02T00:00:00Z", &known).unwrap_err();
    let text: Vec<&str> = issues.iter().map(|i| i.diagnostics.as_str()).collect();
    assert!(text.iter().any(|t| t.contains("section 910")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("section 950")), "{text:?}");
    // A Patient without the institution's patient ID, a subject elsewhere, a bad version.
    let mut doc = referral();
    doc["entry"][1]["resource"]["identifier"] =
        json!([{"system": MEMBER_ID, "value": "00012345:1:2:01"}]);
    doc["entry"][0]["resource"]["subject"]["reference"] = json!("urn:uuid:other");
    doc["entry"][0]["resource"]["extension"][0]["valueString"] = json!("draft");
    let issues = plan(&doc, "2024-05-02T00:00:00Z", &known).unwrap_err();
    assert_eq!(issues.len(), 3, "{issues:?}");
    // Ordinary Bundles are not taken in.
    assert_eq!(
        kind_of(&json!({"resourceType": "Bundle", "type": "collection"})),
        None
    );
    assert_eq!(version_of("1.0"), Some(vec![1, 0]));
    assert!(version_of("2").unwrap() > version_of("1.9").unwrap());
}
