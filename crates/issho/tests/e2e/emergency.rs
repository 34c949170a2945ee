//! Break-the-glass over HTTP: the opening is the person's notification (a Communication in
//! their record), survives a restart, ends on time, shows in the person's access log, and no
//! client can forge, change or remove one.

use crate::common::*;
use issho_access::Role;
use serde_json::{Value, json};

const NOTIFICATION: &str = "urn:issho:fhir:CodeSystem:notification";

fn users() -> Vec<(&'static str, issho_auth::User)> {
    vec![
        (
            "admin",
            user("admin", Role::Administrator, "user/*.cruds", None, None),
        ),
        (
            "pat",
            user("pat", Role::Patient, "patient/*.cruds", Some("p1"), None),
        ),
        (
            "er",
            user(
                "er",
                Role::EmergencyPhysician,
                "user/*.cruds",
                None,
                Some("org-er"),
            ),
        ),
        (
            "doc",
            user("doc", Role::Physician, "user/*.cruds", None, Some("org-a")),
        ),
    ]
}

fn config(seconds: u64) -> issho_engine::EngineConfig {
    issho_engine::EngineConfig {
        break_glass_for: std::time::Duration::from_secs(seconds),
        ..Default::default()
    }
}

fn reason(text: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": text}]})
}

#[test]
fn an_opening_is_told_to_the_person_survives_a_restart_and_ends() {
    let open_for = 12;
    let c = Signed::start(config(open_for), users());
    for r in [
        json!({"resourceType": "Organization", "id": "org-a", "name": "org-a"}),
        json!({"resourceType": "Organization", "id": "org-er", "name": "org-er"}),
        json!({"resourceType": "Patient", "id": "p1"}),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"}, "serviceProvider": {"reference": "Organization/org-a"}}),
        json!({"resourceType": "AllergyIntolerance", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}, "id": "a1", "code": {"text": "ペニシリン"},
            "patient": {"reference": "Patient/p1"}}),
    ] {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let (st, b) = c.call("admin", "PUT", &path, Some(&r));
        assert_eq!(st, 201, "{path}: {b}");
    }
    assert_eq!(c.call("er", "GET", "AllergyIntolerance/a1", None).0, 404);
    // Only emergency physicians, and with a reason.
    assert_eq!(
        c.call(
            "doc",
            "POST",
            "Patient/p1/$break-glass",
            Some(&reason("意識障害で搬送"))
        )
        .0,
        403
    );
    assert_eq!(
        c.call("er", "POST", "Patient/p1/$break-glass", Some(&reason("")))
            .0,
        400
    );
    let (st, b) = c.call(
        "er",
        "POST",
        "Patient/p1/$break-glass",
        Some(&reason("意識障害で搬送")),
    );
    assert_eq!(st, 200, "{b}");
    let opened = std::time::Instant::now();
    assert_eq!(c.call("er", "GET", "AllergyIntolerance/a1", None).0, 200);

    // The person is told: a notification in their record naming who, where, why, until when.
    let (st, b) = c.call(
        "pat",
        "GET",
        &format!("Communication?category={NOTIFICATION}|break-glass"),
        None,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["total"], 1, "{b}");
    let note = b["entry"][0]["resource"].clone();
    let id = note["id"].as_str().unwrap().to_string();
    assert_eq!(note["recipient"][0]["reference"], "Patient/p1");
    let text = note["payload"].to_string();
    assert!(
        text.contains("er")
            && text.contains("意識障害で搬送")
            && text.contains("Organization/org-er"),
        "{text}"
    );
    // … and the access log shows the declaration and the read under it.
    let (st, log) = c.call("pat", "GET", "Patient/p1/$access-log", None);
    assert_eq!(st, 200, "{log}");
    let log = log.to_string();
    assert!(
        log.contains("意識障害で搬送") && log.contains("AllergyIntolerance/a1"),
        "{log}"
    );

    // Nobody forges, changes or removes a notification: not the physician, the patient, the
    // hospital's doctor, nor an administrator.
    let mut forged = note.clone();
    forged.as_object_mut().unwrap().remove("id");
    forged["subject"] = json!({"reference": "Patient/p1"});
    // Nor an opening without the notification's category: the identifier alone is refused,
    // and would not open anything.
    let mut bare = forged.clone();
    bare.as_object_mut().unwrap().remove("category");
    bare["extension"][0]["valueDateTime"] = json!("2099-01-01T00:00:00Z");
    for who in ["er", "doc", "admin"] {
        let (st, b) = c.call(who, "POST", "Communication", Some(&bare));
        assert!(
            st == 403 || st == 404,
            "{who} forged a bare opening: {st} {b}"
        );
    }
    for who in ["er", "pat", "doc", "admin"] {
        let (st, b) = c.call(who, "POST", "Communication", Some(&forged));
        assert!(st == 403 || st == 404, "{who} forged one: {st} {b}");
        let (st, _) = c.call(who, "DELETE", &format!("Communication/{id}"), None);
        assert!(st == 403 || st == 404, "{who} deleted it: {st}");
        let mut changed = note.clone();
        changed["payload"] = json!([{"contentString": "nothing happened"}]);
        let (st, _) = c.call(who, "PUT", &format!("Communication/{id}"), Some(&changed));
        assert!(st == 403 || st == 404, "{who} changed it: {st}");
    }
    let (_, b) = c.call("pat", "GET", &format!("Communication/{id}"), None);
    assert_eq!(b["payload"], note["payload"]);

    // A restart keeps the opening (the notification is in the store).
    let dir = c.s.stop();
    let c = Signed::start_in(dir, config(open_for), users());
    assert_eq!(c.call("er", "GET", "AllergyIntolerance/a1", None).0, 200);
    // … until it ends.
    let ends = std::time::Duration::from_secs(open_for + 1);
    if let Some(rest) = ends.checked_sub(opened.elapsed()) {
        std::thread::sleep(rest);
    }
    assert_eq!(c.call("er", "GET", "AllergyIntolerance/a1", None).0, 404);
    let (_, b) = c.call("er", "GET", "AllergyIntolerance?_summary=count", None);
    assert_eq!(b["total"], 0, "{b}");
    // The notification stays in the person's record.
    assert_eq!(
        c.call("pat", "GET", &format!("Communication/{id}"), None).0,
        200
    );
}
