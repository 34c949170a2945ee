//! `Engine::export` (the `issho export` command's engine side): what each caller gets, and that
//! it is audited.

use issho_access::AccessContext;
use issho_access::{Grant, Role, Scopes};
use issho_engine::{Engine, ExportRequest, Result};
use serde_json::json;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let e = crate::common::open_engine(dir.path(), Default::default());
    let sys = AccessContext::system("test");
    for p in ["p1", "p2"] {
        e.update(
            &sys,
            "Patient",
            p,
            json!({"resourceType": "Patient", "id": p}),
            None,
        )
        .unwrap();
    }
    for (id, p) in [("o1", "p1"), ("o2", "p1"), ("o3", "p2")] {
        let o = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"text": "x"}, "subject": {"reference": format!("Patient/{p}")}});
        e.update(&sys, "Observation", id, o, None).unwrap();
    }
    e.update(
        &sys,
        "Organization",
        "org",
        json!({"resourceType": "Organization", "id": "org", "name": "Hospital"}),
        None,
    )
    .unwrap();
    (dir, e)
}

fn run(e: &Engine, ctx: &AccessContext, req: &ExportRequest) -> Result<Vec<(String, String)>> {
    let mut got = Vec::new();
    e.export(ctx, req, &mut |rt, json| {
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(v["resourceType"], rt);
        assert!(v["meta"]["versionId"].is_string(), "versioned: {v}");
        got.push((rt.to_string(), v["id"].as_str().unwrap().to_string()));
        Ok(())
    })?;
    Ok(got)
}

fn patient(id: &str) -> AccessContext {
    AccessContext::token(Grant {
        subject: format!("user-{id}"),
        role: Role::Patient,
        patient: Some(id.into()),
        organization: None,
        fhir_user: Some(format!("Patient/{id}")),
        scopes: Scopes::parse("patient/*.rs").unwrap(),
        token_id: "t".into(),
    })
}

/// Regression (issue 9, item 15): a `_since` with multi-byte characters is a 400, not a
/// panic slicing inside a character.
#[test]
fn non_ascii_since_is_refused_not_a_panic() {
    let (_d, e) = engine();
    let sys = AccessContext::system("test");
    for since in [
        "2026-01-01T00:00:00日0000",
        "2026-01-01T00:00:00+0９:00",
        "日",
    ] {
        let req = ExportRequest {
            since: Some(since.into()),
            ..Default::default()
        };
        let err = run(&e, &sys, &req).unwrap_err();
        assert_eq!(err.status, 400, "{since}");
    }
}

#[test]
fn system_export_has_every_current_resource_by_type() {
    let (_d, e) = engine();
    let sys = AccessContext::system("test");
    // A deleted resource is not exported.
    e.delete(&sys, "Observation", "o3", None).unwrap();
    let got = run(&e, &sys, &ExportRequest::default()).unwrap();
    let mut ids: Vec<String> = got.iter().map(|(t, i)| format!("{t}/{i}")).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "Observation/o1",
            "Observation/o2",
            "Organization/org",
            "Patient/p1",
            "Patient/p2"
        ]
    );
    // Grouped by type: each type's resources are contiguous.
    let types: Vec<&String> = got.iter().map(|(t, _)| t).collect();
    let mut seen: Vec<&String> = Vec::new();
    for t in types {
        if seen.last() != Some(&t) {
            assert!(!seen.contains(&t), "{t} split");
            seen.push(t);
        }
    }
}

#[test]
fn types_and_since_narrow_the_export() {
    let (_d, e) = engine();
    let sys = AccessContext::system("test");
    let only = ExportRequest {
        types: vec!["Patient".into()],
        since: None,
        ..Default::default()
    };
    assert_eq!(run(&e, &sys, &only).unwrap().len(), 2);
    let future = ExportRequest {
        types: vec![],
        since: Some("2999-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    assert!(run(&e, &sys, &future).unwrap().is_empty());
    let past = ExportRequest {
        types: vec![],
        since: Some("2000-01-01T00:00:00+09:00".into()),
        ..Default::default()
    };
    assert_eq!(run(&e, &sys, &past).unwrap().len(), 6);
    for bad in ["2020-01-01", "yesterday", "2020-13-01T00:00:00Z"] {
        let r = ExportRequest {
            types: vec![],
            since: Some(bad.into()),
            ..Default::default()
        };
        assert_eq!(run(&e, &sys, &r).unwrap_err().status, 400, "{bad}");
    }
    let r = ExportRequest {
        types: vec!["Nonsense".into()],
        since: None,
        ..Default::default()
    };
    assert_eq!(run(&e, &sys, &r).unwrap_err().status, 400);
}

#[test]
fn a_patient_exports_only_their_own_record_and_it_is_audited() {
    let (_d, e) = engine();
    let got = run(&e, &patient("p1"), &ExportRequest::default()).unwrap();
    let mut ids: Vec<String> = got.iter().map(|(t, i)| format!("{t}/{i}")).collect();
    ids.sort();
    // Their compartment, and shared reference data (organizations) as search shows it;
    // nothing of p2.
    assert_eq!(
        ids,
        [
            "Observation/o1",
            "Observation/o2",
            "Organization/org",
            "Patient/p1"
        ]
    );
    let searched = e
        .search(&patient("p1"), Some("Organization"), &[], true)
        .unwrap();
    assert_eq!(searched.matches.len(), 1);
    let log = e.access_log(&patient("p1"), "p1", None, 50).unwrap();
    assert!(
        log.iter().any(|r| r.to_string().contains("$export")),
        "the export is in p1's access log: {log:?}"
    );
    let other = e.access_log(&patient("p2"), "p2", None, 50).unwrap();
    assert!(!other.iter().any(|r| r.to_string().contains("$export")));
}
