//! CDS Hooks 2.0: medication checks (issho-cds) as a service for `order-select` and
//! `order-sign`, and on every MedicationRequest written through the API.
//!
//! The service reads the person's record across institutions through the caller's own view
//! (their token: consent and care relationships apply; a prefetch the client sends is used
//! too) — drug allergies and contraindicated drugs, current prescriptions — and answers cards
//! with the source, the match and a suggestion to drop the draft order.

use crate::*;
use serde_json::json;

/// The services this server offers.
const SERVICES: [(&str, &str); 2] = [
    ("issho-medication-order-select", "order-select"),
    ("issho-medication-order-sign", "order-sign"),
];

/// `GET /cds-services`: the discovery document.
pub fn cds_discovery() -> Value {
    let services: Vec<Value> = SERVICES
        .iter()
        .map(|(id, hook)| {
            json!({
                "hook": hook,
                "id": id,
                "title": "薬剤アレルギー・禁忌・重複処方チェック (medication checks)",
                "description": "Warns when a draft MedicationRequest conflicts with a drug allergy or a contraindicated drug anywhere in the person's record, or duplicates a current prescription of the same ingredient (YJ ingredient code, HOT, or the drug's name).",
                "usageRequirements": "Call with a bearer access token of this server (the clinician's): the person's record is read as that token may see it.",
                "prefetch": {
                    "patient": "Patient/{{context.patientId}}",
                    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
                    "medications": "MedicationRequest?patient={{context.patientId}}&status=active,on-hold,completed"
                }
            })
        })
        .collect();
    json!({"services": services})
}

fn resources_of(bundle: &Value, rt: &str) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == rt)
        .cloned()
        .collect()
}

impl Engine {
    /// `POST /cds-services/{id}`: the cards for one hook call.
    pub fn cds_call(&self, ctx: &AccessContext, service: &str, request: &Value) -> Result<Value> {
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            request["context"]["patientId"]
                .as_str()
                .map(|p| format!("Patient/{p}")),
            Some(format!("cds-services/{service}")),
            || self.cds_unaudited(ctx, service, request),
            |_, _| {},
        )
    }

    fn cds_unaudited(&self, ctx: &AccessContext, service: &str, request: &Value) -> Result<Value> {
        let Some((_, hook)) = SERVICES.iter().find(|(id, _)| *id == service) else {
            return Err(FhirError::not_found(format!("no CDS service '{service}'")));
        };
        if request["hook"].as_str() != Some(hook) {
            return Err(FhirError::bad_request(format!(
                "the service {service} answers the hook {hook}, not '{}'",
                request["hook"].as_str().unwrap_or("")
            )));
        }
        if request["hookInstance"].as_str().is_none_or(str::is_empty) {
            return Err(FhirError::bad_request("hookInstance is required"));
        }
        let context = &request["context"];
        let Some(patient) = context["patientId"].as_str().filter(|p| crate::valid_id(p)) else {
            return Err(FhirError::bad_request("context.patientId is required"));
        };
        let drafts = &context["draftOrders"];
        if drafts["resourceType"] != "Bundle" {
            return Err(FhirError::bad_request(
                "context.draftOrders must be a Bundle",
            ));
        }
        let mut orders = resources_of(drafts, "MedicationRequest");
        if *hook == "order-select" {
            let selected: Vec<&str> = context["selections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if selected.is_empty() {
                return Err(FhirError::bad_request(
                    "order-select needs context.selections",
                ));
            }
            orders.retain(|o| {
                o["id"].as_str().is_some_and(|id| {
                    selected.contains(&format!("MedicationRequest/{id}").as_str())
                })
            });
        }
        let findings =
            self.medication_findings(ctx, patient, &orders, Some(&request["prefetch"]))?;
        let cards: Vec<Value> = findings
            .iter()
            .map(|f| {
                issho_cds::card(
                    f,
                    &uuid::Uuid::new_v4().to_string(),
                    &uuid::Uuid::new_v4().to_string(),
                )
            })
            .collect();
        Ok(json!({"cards": cards}))
    }

    /// The checks of `orders` for `patient_id`'s person, over what the caller may see (and the
    /// prefetch, if given).
    pub(crate) fn medication_findings(
        &self,
        ctx: &AccessContext,
        patient_id: &str,
        orders: &[Value],
        prefetch: Option<&Value>,
    ) -> Result<Vec<issho_cds::Finding>> {
        let r = self.snapshot(ctx, Action::Read, Some("Patient"))?;
        let pv = self.view(ctx, Action::Read, Some("Patient"), &*r)?;
        match r.current("Patient", patient_id)? {
            Some(s)
                if !s.is_deleted() && pv.sees(&self.registry(), &*r, "Patient", patient_id)? => {}
            _ => return Err(Self::hidden("Patient", patient_id)),
        }
        let person = crate::identity::person_of_patient(&*r, patient_id)?;
        let mut allergies = self.record_of(ctx, &*r, &person, "AllergyIntolerance")?;
        let mut meds = self.record_of(ctx, &*r, &person, "MedicationRequest")?;
        if let Some(p) = prefetch {
            let known = |list: &Vec<Value>, v: &Value| list.iter().any(|x| x["id"] == v["id"]);
            for a in resources_of(&p["allergies"], "AllergyIntolerance") {
                if !known(&allergies, &a) {
                    allergies.push(a);
                }
            }
            for m in resources_of(&p["medications"], "MedicationRequest") {
                if !known(&meds, &m) {
                    meds.push(m);
                }
            }
        }
        let current = crate::summary::current_prescriptions(&meds);
        Ok(issho_cds::check(orders, &allergies, &current))
    }

    /// The checks of a MedicationRequest being written, as warnings (empty when it names no
    /// Patient the caller may see).
    pub(crate) fn order_warnings(&self, ctx: &AccessContext, order: &Value) -> Vec<Issue> {
        let Some(patient) = order["subject"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
        else {
            return Vec::new();
        };
        let findings = self
            .medication_findings(ctx, patient, std::slice::from_ref(order), None)
            .unwrap_or_default();
        findings
            .into_iter()
            .map(|f| {
                let mut i = Issue::warning(
                    IssueType::BusinessRule,
                    format!("{} — {}", f.summary, f.detail),
                );
                i.expression = Some("MedicationRequest.medication".into());
                i
            })
            .collect()
    }
}
