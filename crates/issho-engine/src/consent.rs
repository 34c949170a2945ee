//! Privacy Consents ("share unless refused", NeXEHRs): what the gate enforces, and the check
//! that refuses (422) every Consent it could not enforce exactly — a refusal is never stored as
//! if it were in force.
//!
//! Enforced: an active Consent with scope `patient-privacy`, `patient` = `Patient/[id]`,
//! provisions of type `deny` (at the top level, or nested in a top-level `permit`, the base
//! "share" statement) that name no actor (everyone) or organizations (`Organization/[id]`,
//! relative references), and optionally security labels (`system|code`, e.g. mental health
//! `PSY`): no labels refuse the whole record, labels refuse the resources carrying them;
//! organizations in the custodian role (`CST`) refuse the data those institutions hold
//! (`meta.source`) to everyone else. A base `permit` is the person's agreement to share,
//! which the deployment policy "share after consent" waits for ([`ConsentPolicy`]).
//! Research Consents (scope `research`) are read by `research.rs`.
//! Not enforced (refused): other scopes (treatment, advance directives), actors that
//! are not organizations or are absolute URLs, and provisions by `class` (resource type),
//! `code`, `data`, `purpose`, `action`, `period`, `dataPeriod`, exceptions nested in a deny.

use crate::*;

const PRIVACY: (&str, &str) = (
    "http://terminology.hl7.org/CodeSystem/consentscope",
    "patient-privacy",
);

/// The actor role that names the institution whose data a provision is about (v3
/// ParticipationType `CST`, custodian): "do not share what hospital A holds".
const CUSTODIAN: (&str, &str) = (
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
    "CST",
);

/// The deployment's consent policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentPolicy {
    /// NeXEHRs: a person's record is shared with the institutions caring for them unless
    /// the person refused (the default).
    #[default]
    ShareUnlessRefused,
    /// The national service: an institution sees what other institutions hold only after
    /// the person agreed (an active privacy Consent whose base provision permits); its own
    /// data it always sees.
    ShareAfterConsent,
}

/// What a person's active privacy Consents say for one organization.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConsentDecision {
    /// The whole record is refused to this organization (or to everyone).
    pub refused: bool,
    /// Security labels (`system|code`) whose resources are refused.
    pub labels: Vec<String>,
    /// Institutions (`Organization/[id]`) whose data the person refused to share with this
    /// organization (the data's `meta.source`).
    pub sources: Vec<String>,
    /// The person agreed to share (a base `permit` provision): what the policy
    /// "share after consent" waits for.
    pub permitted: bool,
}

fn is_custodian(actor: &Value) -> bool {
    actor["role"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["system"] == CUSTODIAN.0 && c["code"] == CUSTODIAN.1)
}

/// Read a Consent resource: `deny` provisions (top level and nested) with no actor or with
/// `org` among their actors; without security labels they refuse the whole record, with
/// security labels they refuse those categories; with custodian actors (`CST`) they refuse
/// the data those institutions hold. A base `permit` is the person's agreement to share.
pub(crate) fn consent_decision(consent: &Value, org: &str, out: &mut ConsentDecision) {
    if !is_privacy(consent) {
        return;
    }
    fn walk(p: &Value, org: &str, out: &mut ConsentDecision) {
        let deny = p.get("type").and_then(Value::as_str) == Some("deny");
        let all: Vec<&Value> = p
            .get("actor")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let named = |custodian: bool| -> Vec<&str> {
            all.iter()
                .filter(|a| is_custodian(a) == custodian)
                .filter_map(|a| a["reference"]["reference"].as_str())
                .collect()
        };
        let (actors, sources) = (named(false), named(true));
        let applies = actors.is_empty() || actors.contains(&org);
        if deny && applies {
            let labels: Vec<String> = labels(p);
            if !sources.is_empty() {
                // An institution always sees what it holds itself.
                out.sources
                    .extend(sources.iter().filter(|s| **s != org).map(|s| s.to_string()));
            } else if labels.is_empty() {
                out.refused = true;
            }
            out.labels.extend(labels);
        }
        for child in p
            .get("provision")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, org, out);
        }
    }
    if consent.get("status").and_then(Value::as_str) != Some("active") {
        return;
    }
    let base_permit = consent
        .get("provision")
        .is_some_and(|p| p.get("type").and_then(Value::as_str).unwrap_or("permit") == "permit");
    if base_permit {
        out.permitted = true;
    } else if opt_in(consent) {
        // Opt-in: what the provisions do not permit is refused.
        out.refused = true;
    }
    if let Some(p) = consent.get("provision") {
        walk(p, org, out);
    }
}

/// Whether a Consent's scope is patient privacy (and nothing else).
pub(crate) fn is_privacy(consent: &Value) -> bool {
    let scopes: Vec<&Value> = consent["scope"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    !scopes.is_empty()
        && scopes
            .iter()
            .all(|c| c["system"] == PRIVACY.0 && c["code"] == PRIVACY.1)
}

fn opt_in(consent: &Value) -> bool {
    consent["policyRule"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                && c["code"] == "OPTIN"
        })
}

fn labels(p: &Value) -> Vec<String> {
    p.get("securityLabel")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some(format!(
                "{}|{}",
                l.get("system")?.as_str()?,
                l.get("code")?.as_str()?
            ))
        })
        .collect()
}

pub(crate) fn unenforceable(at: &str, what: String) -> FhirError {
    let mut issue = Issue::error(
        IssueType::NotSupported,
        format!(
            "{what}; issho enforces privacy Consents that refuse the whole record or security-labelled categories to everyone or to organizations, and refuses any other Consent rather than store it as if in force"
        ),
    );
    issue.expression = Some(at.to_string());
    FhirError {
        status: 422,
        issues: vec![issue],
    }
}

/// Refuse (422) an active Consent the gate could not enforce exactly.
pub(crate) fn check_enforceable(rt: &str, consent: &Value) -> Result<()> {
    if rt != "Consent" || consent.get("status").and_then(Value::as_str) != Some("active") {
        return Ok(());
    }
    if crate::research::is_research(consent) {
        return crate::research::check_research_consent(consent);
    }
    if !is_privacy(consent) {
        return Err(unenforceable(
            "Consent.scope",
            "only patient-privacy and research Consents are enforced (treatment and advance-directive Consents are not yet)".into(),
        ));
    }
    if consent.get("policy").is_some() {
        return Err(unenforceable(
            "Consent.policy",
            "the policies a Consent refers to are not enforced (only its provisions are)".into(),
        ));
    }
    if consent.get("modifierExtension").is_some() {
        return Err(unenforceable(
            "Consent.modifierExtension",
            "modifier extensions change what a Consent means and are not enforced".into(),
        ));
    }
    // The base policy: "share unless refused" is opt-out; an opt-in (or other) base policy
    // would refuse what the provisions do not permit, which is not enforced.
    if consent.get("policyRule").is_some()
        && consent["policyRule"]["coding"]
            .as_array()
            .is_none_or(|c| c.is_empty())
    {
        return Err(unenforceable(
            "Consent.policyRule",
            "a base policy given without a code is not enforced".into(),
        ));
    }
    for (i, rule) in consent["policyRule"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        // OPTOUT (share unless refused) and OPTIN (the person agrees to share): the
        // provisions say what is shared or refused either way; the deployment's policy says
        // what holds without a Consent.
        let known = rule["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
            && (rule["code"] == "OPTOUT" || rule["code"] == "OPTIN");
        if !known {
            return Err(unenforceable(
                &format!("Consent.policyRule.coding[{i}]"),
                format!(
                    "the base policy '{}' is not enforced (OPTOUT and OPTIN are)",
                    rule["code"].as_str().unwrap_or("?")
                ),
            ));
        }
    }
    check_patient(consent)?;
    if let Some(p) = consent.get("provision") {
        check_provision(p, "Consent.provision", true)?;
    }
    Ok(())
}

/// A Consent's patient: a relative reference `Patient/[id]` (its person decides).
pub(crate) fn check_patient(consent: &Value) -> Result<()> {
    let patient = consent["patient"]["reference"].as_str().unwrap_or("");
    if !patient
        .strip_prefix("Patient/")
        .is_some_and(crate::valid_id)
    {
        return Err(unenforceable(
            "Consent.patient",
            format!("Consent.patient must be a relative reference Patient/[id], not '{patient}'"),
        ));
    }
    Ok(())
}

/// The rids of every active Consent. Beyond what one request evaluates the access is
/// refused (503) rather than left unchecked: an unchecked refusal would be a shared record.
pub(crate) fn active_consents(r: &dyn issho_store::StoreRead) -> Result<Vec<i64>> {
    let pairs = vec![
        ("status".to_string(), "active".to_string()),
        ("_count".to_string(), "100000".to_string()),
    ];
    let q = issho_search::parse(Some("Consent"), &pairs, true).map_err(|issues| FhirError {
        status: 500,
        issues,
    })?;
    let rids = r.search(&q)?;
    if rids.len() >= 100_000 {
        return Err(FhirError::new(
            503,
            IssueType::TooCostly,
            "more active Consents than one request evaluates; access is refused rather than left unchecked",
        ));
    }
    Ok(rids)
}

fn check_provision(p: &Value, at: &str, top: bool) -> Result<()> {
    let Some(obj) = p.as_object() else {
        return Err(unenforceable(at, "a provision must be an object".into()));
    };
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("permit");
    for (k, _) in obj {
        if !matches!(
            k.as_str(),
            "type" | "actor" | "securityLabel" | "provision" | "id" | "extension"
        ) {
            return Err(unenforceable(
                &format!("{at}.{k}"),
                format!("a provision by '{k}' is not enforced"),
            ));
        }
    }
    match kind {
        "permit" if !top => {
            return Err(unenforceable(
                at,
                "exceptions (a permit inside a provision) are not enforced".into(),
            ));
        }
        "permit" if obj.contains_key("actor") || obj.contains_key("securityLabel") => {
            return Err(unenforceable(
                at,
                "a permit for chosen actors or labels is not enforced: records are shared unless refused".into(),
            ));
        }
        "deny" if obj.contains_key("provision") => {
            return Err(unenforceable(
                &format!("{at}.provision"),
                "exceptions nested in a deny are not enforced".into(),
            ));
        }
        "permit" | "deny" => {}
        other => {
            return Err(unenforceable(
                at,
                format!("unknown provision type '{other}'"),
            ));
        }
    }
    for (i, a) in obj
        .get("actor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let r = a["reference"]["reference"].as_str().unwrap_or("");
        if is_custodian(a) && (kind != "deny" || obj.contains_key("securityLabel")) {
            return Err(unenforceable(
                &format!("{at}.actor[{i}]"),
                "a custodian actor is enforced in a deny provision without security labels (refusing the data an institution holds)".into(),
            ));
        }
        if !r.strip_prefix("Organization/").is_some_and(crate::valid_id) {
            return Err(unenforceable(
                &format!("{at}.actor[{i}].reference"),
                format!(
                    "an actor must be an organization as a relative reference Organization/[id], not '{r}'"
                ),
            ));
        }
    }
    let given = obj
        .get("securityLabel")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if labels(p).len() != given {
        return Err(unenforceable(
            &format!("{at}.securityLabel"),
            "each security label needs a system and a code".into(),
        ));
    }
    for (i, c) in obj
        .get("provision")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        check_provision(c, &format!("{at}.provision[{i}]"), false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consent(provision: Value, rule: Option<&str>) -> Value {
        let mut c = json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": PRIVACY.0, "code": PRIVACY.1}]},
            "patient": {"reference": "Patient/p"}, "provision": provision});
        if let Some(r) = rule {
            c["policyRule"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": r}]});
        }
        c
    }

    fn decide(c: &Value, org: &str) -> ConsentDecision {
        check_enforceable("Consent", c).unwrap();
        let mut d = ConsentDecision::default();
        consent_decision(c, org, &mut d);
        d
    }

    #[test]
    fn custodians_accessors_and_the_base_policy() {
        let cst = json!({"coding": [{"system": CUSTODIAN.0, "code": CUSTODIAN.1}]});
        let refuse_a = consent(
            json!({"type": "permit", "provision": [{"type": "deny",
                "actor": [{"role": cst, "reference": {"reference": "Organization/a"}}]}]}),
            None,
        );
        let b = decide(&refuse_a, "Organization/b");
        assert_eq!(b.sources, vec!["Organization/a".to_string()]);
        assert!(!b.refused && b.permitted);
        // A sees what it holds itself.
        assert!(decide(&refuse_a, "Organization/a").sources.is_empty());
        // An actor in another role is the organization whose access is refused.
        let prcp = json!({"coding": [{"system": CUSTODIAN.0, "code": "PRCP"}]});
        let refuse_b = consent(
            json!({"type": "permit", "provision": [{"type": "deny",
                "actor": [{"role": prcp, "reference": {"reference": "Organization/b"}}]}]}),
            None,
        );
        assert!(decide(&refuse_b, "Organization/b").refused);
        assert!(!decide(&refuse_b, "Organization/c").refused);
        // Opt-in without a permit refuses; with one it is the person's agreement.
        assert!(
            decide(
                &consent(json!({"type": "deny"}), Some("OPTIN")),
                "Organization/b"
            )
            .refused
        );
        let agreed = decide(
            &consent(json!({"type": "permit"}), Some("OPTIN")),
            "Organization/b",
        );
        assert!(agreed.permitted && !agreed.refused);
        // A custodian in a permit, or with labels, is not enforced.
        let odd = consent(
            json!({"type": "permit", "actor": [{"role": cst, "reference": {"reference": "Organization/a"}}]}),
            None,
        );
        assert_eq!(check_enforceable("Consent", &odd).unwrap_err().status, 422);
    }
}
