//! Medication checks: does a new prescription conflict with the person's drug allergies or
//! contraindicated drugs, or duplicate a prescription they already take? Used by the CDS
//! Hooks service (`order-select`, `order-sign`) and on every MedicationRequest write.
//!
//! Drugs are compared, most specific first, by:
//! - **ingredient**: the first seven characters of a YJ code (薬価基準収載医薬品コード: therapeutic
//!   class and ingredient), of a general-name order code (一般名処方マスタ, the same first seven)
//!   and of a J-FAGY drug allergen code (`GCM` + the general-name code);
//! - **HOT**: the first seven digits of a HOT9 or HOT13 code (the prescription product);
//! - **name**: the displayed names after NFKC without spaces, equal or one inside the other
//!   (at least two characters) — where codes are missing.
//!
//! No store: the engine gathers the person's allergies and current prescriptions.

use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;

const YJ: [&str; 2] = [
    "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code",
    "urn:oid:1.2.392.100495.20.2.73",
];
const GENERAL_NAME: [&str; 2] = [
    "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode",
    "urn:oid:1.2.392.100495.20.2.81",
];
const JFAGY_DRUG: &str = "http://jpfhir.jp/fhir/core/CodeSystem/GCM/JP_JfagyMedicationAllergen_CS";
const HOT: [&str; 4] = [
    "http://medis.or.jp/CodeSystem/master-HOT9",
    "http://medis.or.jp/CodeSystem/master-HOT13",
    "urn:oid:1.2.392.200119.4.403.1",
    "urn:oid:1.2.392.200119.4.403.2",
];

/// What identifies a drug for comparison.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Drug {
    pub ingredients: Vec<String>,
    pub hot7: Vec<String>,
    pub names: Vec<String>,
}

fn normalize(s: &str) -> String {
    s.nfkc().filter(|c| !c.is_whitespace()).collect()
}

impl Drug {
    /// A drug from a CodeableConcept (a MedicationRequest's medication, an allergy's code).
    pub fn of(cc: &Value) -> Drug {
        let mut d = Drug::default();
        for c in cc["coding"].as_array().into_iter().flatten() {
            let (Some(system), Some(code)) = (c["system"].as_str(), c["code"].as_str()) else {
                continue;
            };
            let code = normalize(code);
            let ingredient = if YJ.contains(&system) || GENERAL_NAME.contains(&system) {
                Some(code.as_str())
            } else if system == JFAGY_DRUG {
                code.strip_prefix("GCM")
            } else {
                None
            };
            if let Some(i) = ingredient.filter(|i| i.len() >= 7 && i.is_char_boundary(7)) {
                d.ingredients.push(i[..7].to_string());
            }
            if HOT.contains(&system) && code.len() >= 7 && code.is_char_boundary(7) {
                d.hot7.push(code[..7].to_string());
            }
            if let Some(t) = c["display"].as_str() {
                d.names.push(normalize(t));
            }
        }
        if let Some(t) = cc["text"].as_str() {
            d.names.push(normalize(t));
        }
        d.names.retain(|n| n.chars().count() >= 2);
        d
    }

    /// How two drugs are the same, if they are: `ingredient`, `HOT` or `name`.
    pub fn same_as(&self, other: &Drug) -> Option<&'static str> {
        let shared = |a: &[String], b: &[String]| a.iter().any(|x| b.contains(x));
        if shared(&self.ingredients, &other.ingredients) {
            return Some("ingredient");
        }
        if shared(&self.hot7, &other.hot7) {
            return Some("HOT");
        }
        // Names only where one side lacks the codes that would decide.
        let coded = |d: &Drug| !d.ingredients.is_empty() || !d.hot7.is_empty();
        if coded(self) && coded(other) {
            return None;
        }
        self.names
            .iter()
            .any(|a| {
                other
                    .names
                    .iter()
                    .any(|b| a == b || a.contains(b.as_str()) || b.contains(a.as_str()))
            })
            .then_some("name")
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A drug allergy the person has.
    Allergy,
    /// A drug recorded as contraindicated for the person.
    Contraindication,
    /// The same ingredient already prescribed.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    /// CDS Hooks card indicator: `critical`, `warning` or `info`.
    pub indicator: &'static str,
    pub summary: String,
    pub detail: String,
    /// The order checked (its index among the orders, and its id if it has one).
    pub order: usize,
    pub order_id: Option<String>,
    /// `Type/id` of the allergy or prescription it conflicts with.
    pub against: String,
    /// How the drugs matched (`ingredient`, `HOT`, `name`).
    pub basis: &'static str,
}

fn text(cc: &Value) -> String {
    cc["text"]
        .as_str()
        .or_else(|| cc["coding"][0]["display"].as_str())
        .or_else(|| cc["coding"][0]["code"].as_str())
        .unwrap_or("?")
        .to_string()
}

fn medication(order: &Value) -> &Value {
    &order["medicationCodeableConcept"]
}

fn coded_status(v: &Value) -> Option<&str> {
    v["coding"][0]["code"].as_str()
}

/// A drug allergy or contraindication still in force.
fn live_drug_allergy(a: &Value) -> bool {
    let cat_ok = a["category"]
        .as_array()
        .is_none_or(|c| c.iter().any(|x| x == "medication"));
    let clinical = coded_status(&a["clinicalStatus"]).is_none_or(|c| c == "active");
    let verified = coded_status(&a["verificationStatus"])
        .is_none_or(|c| !matches!(c, "refuted" | "entered-in-error"));
    cat_ok && clinical && verified
}

/// Checks each order (MedicationRequest) against the person's allergies
/// (AllergyIntolerance) and current prescriptions (MedicationRequest).
pub fn check(orders: &[Value], allergies: &[Value], current: &[Value]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        let drug = Drug::of(medication(order));
        let order_id = order["id"].as_str().map(str::to_string);
        let name = text(medication(order));
        for a in allergies.iter().filter(|a| live_drug_allergy(a)) {
            let Some(basis) = drug.same_as(&Drug::of(&a["code"])) else {
                continue;
            };
            let contraindication = a["type"].as_str() == Some("intolerance");
            let high = a["criticality"].as_str() == Some("high");
            let what = text(&a["code"]);
            let (kind, indicator, ja, en) = if contraindication {
                (
                    Kind::Contraindication,
                    "warning",
                    "禁忌薬",
                    "contraindicated drug",
                )
            } else {
                (
                    Kind::Allergy,
                    if high { "critical" } else { "warning" },
                    "薬剤アレルギー",
                    "drug allergy",
                )
            };
            out.push(Finding {
                kind,
                indicator,
                summary: format!("{ja}: {name} — {what} ({en})"),
                detail: format!(
                    "{name} matches the recorded {en} to {what} (by {basis}), recorded {} by {}.",
                    a["recordedDate"].as_str().unwrap_or("—"),
                    a["meta"]["source"].as_str().unwrap_or("an institution")
                ),
                order: i,
                order_id: order_id.clone(),
                against: format!("AllergyIntolerance/{}", a["id"].as_str().unwrap_or("")),
                basis,
            });
        }
        for m in current {
            if order_id.is_some() && m["id"].as_str() == order_id.as_deref() {
                continue;
            }
            let Some(basis) = drug.same_as(&Drug::of(medication(m))) else {
                continue;
            };
            let other = text(medication(m));
            out.push(Finding {
                kind: Kind::Duplicate,
                indicator: "warning",
                summary: format!("重複処方: {name} — {other} (duplicate prescription)"),
                detail: format!(
                    "{other} is already prescribed (by {basis}; {} at {}).",
                    m["authoredOn"].as_str().unwrap_or("—"),
                    m["meta"]["source"].as_str().unwrap_or("an institution")
                ),
                order: i,
                order_id: order_id.clone(),
                against: format!("MedicationRequest/{}", m["id"].as_str().unwrap_or("")),
                basis,
            });
        }
    }
    out
}

/// A finding as a CDS Hooks 2.0 card (with a suggestion to drop the draft order when it has
/// an id).
pub fn card(f: &Finding, uuid: &str, suggestion_uuid: &str) -> Value {
    let mut card = json!({
        "uuid": uuid,
        "summary": f.summary.chars().take(140).collect::<String>(),
        "detail": f.detail,
        "indicator": f.indicator,
        "source": {"label": "issho medication checks (一生)",
            "topic": {"system": "urn:issho:cds", "code": match f.kind {
                Kind::Allergy => "drug-allergy",
                Kind::Contraindication => "contraindicated-drug",
                Kind::Duplicate => "duplicate-prescription",
            }}},
    });
    if let Some(id) = &f.order_id {
        card["suggestions"] = json!([{
            "label": "この処方を取り消す (remove this order)",
            "uuid": suggestion_uuid,
            "actions": [{"type": "delete", "description": "remove the draft order",
                "resourceId": [format!("MedicationRequest/{id}")]}]
        }]);
        card["selectionBehavior"] = json!("at-most-one");
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, system: &str, code: &str, display: &str) -> Value {
        json!({"resourceType": "MedicationRequest", "id": id,
            "medicationCodeableConcept": {"coding": [{"system": system, "code": code, "display": display}]}})
    }

    #[test]
    fn ingredient_hot_and_names() {
        // Povidone-iodine gargle allergy (J-FAGY GCM + general-name code) against a YJ code of
        // the same ingredient.
        let allergy = json!({"resourceType": "AllergyIntolerance", "id": "a1",
            "category": ["medication"], "criticality": "high",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": JFAGY_DRUG, "code": "GCM2260701F1ZZZ", "display": "ポビドンヨード含嗽用液７％"}]}});
        let o = order("o1", YJ[0], "2260701Q1038", "イソジンガーグル液７％");
        let f = check(&[o], std::slice::from_ref(&allergy), &[]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].kind.clone(), f[0].indicator, f[0].basis),
            (Kind::Allergy, "critical", "ingredient")
        );
        // Another ingredient: nothing.
        let o = order("o2", YJ[0], "1141007F1063", "カロナール錠３００");
        assert!(check(&[o], std::slice::from_ref(&allergy), &[]).is_empty());
        // A refuted allergy or a food allergy says nothing about drugs.
        let mut refuted = allergy.clone();
        refuted["verificationStatus"] = json!({"coding": [{"code": "refuted"}]});
        let o = order("o3", YJ[0], "2260701Q1038", "イソジン");
        assert!(check(std::slice::from_ref(&o), &[refuted], &[]).is_empty());
        // Duplicates: the same ingredient in another strength, by HOT7, by name without codes.
        let current = vec![
            order("m1", YJ[0], "1141007F3023", "カロナール錠５００"),
            order(
                "m2",
                HOT[0],
                "103831601",
                "カルボシステイン錠２５０ｍｇ「サワイ」",
            ),
            json!({"resourceType": "MedicationRequest", "id": "m3", "medicationCodeableConcept": {"text": "ミヤＢＭ錠"}}),
        ];
        let orders = vec![
            order("n1", YJ[0], "1141007F1063", "カロナール錠３００"),
            order("n2", HOT[0], "103831602", "カルボシステイン錠"),
            json!({"resourceType": "MedicationRequest", "id": "n3", "medicationCodeableConcept": {"text": "ミヤBM錠"}}),
            order("m1", YJ[0], "1141007F3023", "カロナール錠５００"),
        ];
        let f = check(&orders, &[], &current);
        let got: Vec<(usize, &str)> = f.iter().map(|x| (x.order, x.basis)).collect();
        assert_eq!(
            got,
            vec![(0, "ingredient"), (1, "HOT"), (2, "name")],
            "{f:?}"
        );
        // The card: summary within 140 characters, a delete suggestion for a draft with an id.
        let c = card(&f[0], "u1", "s1");
        assert_eq!(c["indicator"], "warning");
        assert_eq!(
            c["suggestions"][0]["actions"][0]["resourceId"][0],
            "MedicationRequest/n1"
        );
    }
}
