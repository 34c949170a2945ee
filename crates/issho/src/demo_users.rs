//! The demo users of `serve --demo`, bound to the generated population: a patient (person 0),
//! two doctors (at a hospital that treated that patient, and at one that did not), a
//! pharmacist, an emergency physician, a researcher and an administrator.

use issho_access::Role;
use issho_auth::{Auth, User};
use serde_json::Value;

/// The demo password of every demo user (the demo is for trying issho out, never for data
/// that matters).
pub const DEMO_PASSWORD: &str = "issho-demo";

fn reference_id<'a>(v: &'a Value, prefix: &str) -> Option<&'a str> {
    v.get("reference")?.as_str()?.strip_prefix(prefix)
}

/// Create (or refresh) the demo users; returns (name, role, what they see).
pub fn create(auth: &Auth, persons: usize, seed: u64) -> Result<Vec<(String, String)>, String> {
    let cfg = issho_demo::DemoConfig { persons, seed };
    let person = issho_demo::person_resources(&cfg, 0);
    let patient = person
        .iter()
        .find(|r| r.resource_type == "Patient")
        .map(|r| r.id.clone())
        .ok_or("the demo population has no patient")?;
    // The institutions that know the demo patient: their visits' and their Patients'.
    let treated_at: Vec<String> = person
        .iter()
        .filter_map(|r| match r.resource_type {
            "Encounter" => reference_id(&r.resource["serviceProvider"], "Organization/"),
            "Patient" => reference_id(&r.resource["managingOrganization"], "Organization/"),
            _ => None,
        })
        .map(str::to_string)
        .collect();
    // (organization, practitioner, role code) of every PractitionerRole.
    let roles: Vec<(String, String, String)> = issho_demo::reference_resources()
        .iter()
        .filter(|r| r.resource_type == "PractitionerRole")
        .filter_map(|r| {
            let org = reference_id(&r.resource["organization"], "Organization/")?;
            let prac = reference_id(&r.resource["practitioner"], "Practitioner/")?;
            let code = r.resource["code"][0]["coding"][0]["code"].as_str()?;
            Some((org.to_string(), prac.to_string(), code.to_string()))
        })
        .collect();
    let pick = |code: &str, at_treating: bool| {
        roles
            .iter()
            .find(|(o, _, c)| c == code && treated_at.contains(o) == at_treating)
            .or_else(|| roles.iter().find(|(_, _, c)| c == code))
            .cloned()
    };
    let doc_a = pick("doctor", true).ok_or("no doctor in the demo data")?;
    // Doctor B works at the demo patient's other institution (the demo patient attends a clinic
    // and a hospital): a second care provider sharing the record — and seeing less once the
    // person refuses to share the first institution's data.
    let doc_b = roles
        .iter()
        .find(|(o, _, c)| c == "doctor" && *o != doc_a.0 && treated_at.contains(o))
        .cloned()
        .or_else(|| pick("doctor", false))
        .ok_or("no doctor in the demo data")?;
    // The emergency physician works where the demo patient was never treated: opening the
    // record takes breaking the glass.
    let er = pick("doctor", false).ok_or("no doctor in the demo data")?;
    // The pharmacist works at the pharmacy that dispensed the demo patient's prescriptions
    // (its dispensing is its care relationship); without one, at the demo patient's hospital.
    let dispensed_by: Option<String> = person
        .iter()
        .filter(|r| r.resource_type == "MedicationDispense")
        .find_map(|r| reference_id(&r.resource["performer"][0]["actor"], "Organization/"))
        .map(str::to_string);
    let at_pharmacy = dispensed_by.as_ref().and_then(|ph| {
        roles
            .iter()
            .find(|(o, _, c)| o == ph && c == "pharmacist")
            .cloned()
    });
    let pharm = at_pharmacy
        .clone()
        .or_else(|| pick("pharmacist", true).filter(|p| p.0 == doc_a.0))
        .or_else(|| {
            pick("pharmacist", false)
                .map(|(_, practitioner, code)| (doc_a.0.clone(), practitioner, code))
        })
        .unwrap_or_else(|| doc_a.clone());
    let pharm_sees = if at_pharmacy.is_some() {
        "the records of the persons their pharmacy dispensed to (the demo patient among them), read-only except dispensing"
    } else {
        "the records of patients treated at the demo patient's hospital, read-only except dispensing"
    };
    let users: Vec<(User, &str)> = vec![
        (
            User {
                name: "demo-patient".into(),
                role: Role::Patient,
                patient: Some(patient.clone()),
                organization: None,
                fhir_user: Some(format!("Patient/{patient}")),
                scopes:
                    "openid fhirUser launch/patient offline_access patient/*.cruds user/*.cruds"
                        .into(),
                display: "デモ患者 (demo patient)".into(),
            },
            "their own record (Patient/{patient})",
        ),
        (
            User {
                name: "demo-doctor-a".into(),
                role: Role::Physician,
                patient: None,
                organization: Some(format!("Organization/{}", doc_a.0)),
                fhir_user: Some(format!("Practitioner/{}", doc_a.1)),
                scopes:
                    "openid fhirUser launch/patient offline_access user/*.cruds patient/*.cruds"
                        .into(),
                display: "デモ医師A (doctor at a hospital that treated the demo patient)".into(),
            },
            "the records of patients treated at their hospital",
        ),
        (
            User {
                name: "demo-doctor-b".into(),
                role: Role::Physician,
                patient: None,
                organization: Some(format!("Organization/{}", doc_b.0)),
                fhir_user: Some(format!("Practitioner/{}", doc_b.1)),
                scopes:
                    "openid fhirUser launch/patient offline_access user/*.cruds patient/*.cruds"
                        .into(),
                display: "デモ医師B (doctor at the demo patient's other institution)".into(),
            },
            "the records of patients treated at their institution (the demo patient among them)",
        ),
        (
            User {
                name: "demo-pharmacist".into(),
                role: Role::Pharmacist,
                patient: None,
                organization: Some(format!("Organization/{}", pharm.0)),
                fhir_user: Some(format!("Practitioner/{}", pharm.1)),
                scopes: "openid fhirUser user/*.rs user/MedicationDispense.cruds".into(),
                display: "デモ薬剤師 (pharmacist)".into(),
            },
            pharm_sees,
        ),
        (
            User {
                name: "demo-emergency".into(),
                role: Role::EmergencyPhysician,
                patient: None,
                organization: Some(format!("Organization/{}", er.0)),
                fhir_user: Some(format!("Practitioner/{}", er.1)),
                scopes: "openid fhirUser user/*.rs".into(),
                display: "デモ救急医 (emergency physician)".into(),
            },
            "records of patients in care at their institution (not the demo patient: breaking the glass opens it)",
        ),
        (
            User {
                name: "demo-researcher".into(),
                role: Role::Researcher,
                patient: None,
                organization: None,
                fhir_user: None,
                scopes: "openid user/*.rs".into(),
                display: "デモ研究者 (researcher)".into(),
            },
            "no individual records: de-identified $export of the persons who did not refuse research (project demo-study)",
        ),
        (
            User {
                name: "demo-admin".into(),
                role: Role::Administrator,
                patient: None,
                organization: None,
                fhir_user: None,
                scopes: "openid user/*.cruds".into(),
                display: "デモ管理者 (administrator)".into(),
            },
            "everything, including server administration",
        ),
    ];
    // A public SMART app for trying the sign-in flow (loopback redirects, any port).
    auth.put_client(&issho_auth::Client {
        id: "demo-app".into(),
        name: "issho demo app".into(),
        redirect_uris: vec![
            "http://127.0.0.1/callback".into(),
            "http://localhost/callback".into(),
        ],
        scopes: "openid fhirUser launch/patient offline_access online_access patient/*.cruds user/*.cruds"
            .into(),
    })
    .map_err(|e| e.to_string())?;
    // Where each care provider works, by name (what the portal's sharing settings list).
    let org_name = |reference: &str| -> Option<String> {
        let id = reference.strip_prefix("Organization/")?;
        issho_demo::reference_resources()
            .iter()
            .find(|r| r.resource_type == "Organization" && r.id == id)
            .and_then(|r| r.resource["name"].as_str().map(str::to_string))
    };
    let mut out = Vec::new();
    for (u, sees) in users {
        auth.put_user(&u, DEMO_PASSWORD)
            .map_err(|e| e.to_string())?;
        let mut line = sees.replace("{patient}", &patient);
        if let Some(name) = u.organization.as_deref().and_then(org_name) {
            line.push_str(&format!(" — at {name}"));
        }
        out.push((u.name.clone(), line));
    }
    Ok(out)
}
