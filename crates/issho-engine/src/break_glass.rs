//! Break-the-glass: an emergency physician opens a person's record for a limited time
//! (`EngineConfig::break_glass_for`, 60 minutes by default), whatever the care relationship
//! and consent, stating a reason.
//!
//! The opening is stored as the person's notification: a `Communication` in their record
//! (category [`NOTIFICATION`]`|break-glass`, from the physician to the patient, with the
//! reason, the physician's organization and the time the opening ends), so it survives a
//! restart, every process serving the store sees it, and the person's portal lists it. Each
//! request of an emergency physician looks up their openings that have not ended. No client
//! writes or deletes such a Communication (they are the server's). The declaration and every
//! access under it are audited (`ETREAT`, flagged for review) and show in the person's
//! `$access-log`.

use crate::*;
use issho_access::{Grant, Role};
use issho_audit::{AuditRecord, Interaction, Outcome};
use issho_store::StoreRead;
use serde_json::json;

/// How long a break-the-glass opening lasts by default.
pub const BREAK_GLASS_SECONDS: u64 = 3600;

/// The category system of the notifications issho writes to a person.
pub(crate) const NOTIFICATION: &str = "urn:issho:fhir:CodeSystem:notification";

/// When the opening a notification records ends (`valueDateTime`).
const OPEN_UNTIL: &str = "urn:issho:fhir:extension:open-until";

/// The organization the physician acted for (`valueReference`).
const ON_BEHALF_OF: &str = "urn:issho:fhir:extension:on-behalf-of";

/// The identifier system of one physician's openings (their user name, percent-encoded).
fn opener_system(subject: &str) -> String {
    let enc = percent_encoding::utf8_percent_encode(subject, percent_encoding::NON_ALPHANUMERIC);
    format!("urn:issho:break-glass:{enc}")
}

/// True for a Communication in the notification category (with `code`, or any code).
fn notification(body: &Value, code: Option<&str>) -> bool {
    body["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|c| {
            c["system"].as_str() == Some(NOTIFICATION)
                && code.is_none_or(|k| c["code"].as_str() == Some(k))
        })
}

/// True for the notifications issho keeps, and for anything that names a break-the-glass
/// opener's identifier system: no client writes them (an opening cannot be forged).
pub(crate) fn server_kept(rt: &str, body: &Value) -> bool {
    let opener = body["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| {
            i["system"]
                .as_str()
                .is_some_and(|s| s.starts_with("urn:issho:break-glass:"))
        });
    rt == "Communication" && (notification(body, None) || opener)
}

fn now_micros() -> i64 {
    issho_store::now_micros()
}

impl Engine {
    /// The persons (store keys) `g` has opened by break-the-glass and whose opening has not
    /// ended: emergency physicians only (nobody else can open one).
    pub(crate) fn glass_opened(&self, r: &dyn StoreRead, g: &Grant) -> Result<Vec<String>> {
        if g.role != Role::EmergencyPhysician {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let window = self.config.break_glass_for.as_micros() as i64;
        let pairs = vec![
            (
                "identifier".to_string(),
                format!("{}|", opener_system(&g.subject)),
            ),
            (
                "sent".to_string(),
                format!("ge{}", issho_model::instant::format_instant(now - window)),
            ),
            ("_count".to_string(), "1000".to_string()),
        ];
        let q = issho_search::parse(Some("Communication"), &pairs, true).map_err(|issues| {
            FhirError {
                status: 500,
                issues,
            }
        })?;
        let mut out = Vec::new();
        for s in r.current_by_rids(&r.search(&q)?)? {
            let Some(v) = s.json() else { continue };
            // Only the server's own notifications (clients cannot write one).
            if !notification(&v, Some("break-glass")) {
                continue;
            }
            let open = v["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["url"].as_str() == Some(OPEN_UNTIL))
                .filter_map(|e| e["valueDateTime"].as_str())
                .filter_map(issho_model::instant::parse_range)
                .any(|until| until.lo > now);
            if let Some(p) = s.person.filter(|p| open && *p != crate::owner::RESTRICTED)
                && !out.contains(&p)
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// [`Engine::glass_opened`] for a request's context, on a fresh snapshot.
    pub(crate) fn glass_opened_for(&self, ctx: &AccessContext) -> Result<Vec<String>> {
        match ctx.grant() {
            Some(g) if g.role == Role::EmergencyPhysician => {
                let permit = self.system_permit("break-the-glass openings")?;
                let r = self.store.reader(&permit)?;
                self.glass_opened(&*r, g)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Open `patient_id`'s record to this emergency physician (the checks passed): the
    /// person's notification records the opening.
    fn open_glass(&self, ctx: &AccessContext, patient_id: &str, reason: &str) -> Result<()> {
        let Some(g) = ctx.grant() else {
            return Err(FhirError::new(403, IssueType::Forbidden, "no user"));
        };
        let permit = self.system_permit("break-the-glass")?;
        let r = self.store.reader(&permit)?;
        if r.current("Patient", patient_id)?
            .is_none_or(|s| s.is_deleted())
        {
            return Err(FhirError::not_found(format!(
                "Patient/{patient_id} is not known"
            )));
        }
        drop(r);
        let now = now_micros();
        let until = now + self.config.break_glass_for.as_micros() as i64;
        let fmt = issho_model::instant::format_instant;
        let id = uuid::Uuid::new_v4().to_string();
        let org = g.organization.clone();
        let who = g.fhir_user.clone();
        let minutes = self.config.break_glass_for.as_secs() / 60;
        let mut extension = vec![json!({"url": OPEN_UNTIL, "valueDateTime": fmt(until)})];
        if let Some(o) = &org {
            extension.push(json!({"url": ON_BEHALF_OF, "valueReference": {"reference": o}}));
        }
        let at = org.as_deref().unwrap_or("—");
        let mut body = json!({
            "resourceType": "Communication",
            "id": id,
            "extension": extension,
            "identifier": [{"system": opener_system(&g.subject), "value": id}],
            "status": "completed",
            "category": [{"coding": [{"system": NOTIFICATION, "code": "break-glass",
                "display": "緊急時アクセス (break-the-glass)"}]}],
            "priority": "urgent",
            "subject": {"reference": format!("Patient/{patient_id}")},
            "recipient": [{"reference": format!("Patient/{patient_id}")}],
            "sender": match &who {
                Some(u) => json!({"reference": u, "display": g.subject}),
                None => json!({"display": g.subject}),
            },
            "sent": fmt(now),
            "reasonCode": [{"text": reason}],
            "payload": [
                {"contentString": format!(
                    "救急医 {}（{at}）が緊急時アクセスであなたの記録を開きました。理由: {reason}。{minutes} 分間有効です（{} まで）。",
                    g.subject, fmt(until))},
                {"contentString": format!(
                    "Emergency physician {} ({at}) opened your record in an emergency. Reason: {reason}. The opening lasts {minutes} minutes (until {}).",
                    g.subject, fmt(until))}
            ]
        });
        self.write(&permit, move |tx| -> Result<()> {
            let owner = crate::owner::owner_in(&*tx, "Communication", &body)?;
            tx.put("Communication", &id, &mut body, owner.column(), "POST")?;
            Ok(())
        })??;
        Ok(())
    }

    /// Break the glass for the person an emergency team knows by their insurance member ID
    /// and birth date (from the card they carry) rather than by a Patient id: answers the
    /// Patient opened. Only an emergency physician's request with a reason is looked up (no
    /// one else learns whether a member ID is known); the opening is [`Engine::break_glass`]'s.
    pub fn break_glass_identified(
        &self,
        ctx: &AccessContext,
        member_id: &str,
        birth_date: &str,
        reason: &str,
    ) -> Result<String> {
        self.gate.check(ctx, Action::Operation, Some("Patient"))?;
        if !ctx
            .grant()
            .is_some_and(|g| g.role == Role::EmergencyPhysician)
        {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                "only emergency physicians may break the glass",
            ));
        }
        if reason.trim().chars().count() < 4 {
            return Err(FhirError::bad_request(
                "breaking the glass needs a reason (at least a few words)",
            ));
        }
        let (member_id, birth_date) = (member_id.trim(), birth_date.trim());
        // The member ID is matched exactly: no search syntax (`,` OR, `|` system, `$`, `\`).
        let plain_id = !member_id.is_empty()
            && member_id.len() <= 64
            && !member_id.contains([',', '|', '$', '\\']);
        let b = birth_date.as_bytes();
        let plain_date = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !plain_id || !plain_date || reason.chars().count() > 1000 {
            return Err(FhirError::bad_request(
                "the insurance member ID and the birth date (YYYY-MM-DD) name the person; the reason is at most 1,000 characters",
            ));
        }
        let found = self.search_unaudited(
            &AccessContext::system("break-the-glass lookup"),
            Some("Patient"),
            &[
                (
                    "identifier".into(),
                    format!("{}|{member_id}", issho_identity::MEMBER_ID),
                ),
                ("birthdate".into(), birth_date.to_string()),
                ("_count".into(), "20".into()),
            ],
            false,
        )?;
        // One person (their Patients at several institutions are one); twins sharing a
        // family's member ID and birth date are not told apart here: refused.
        let mut persons: Vec<&str> = found
            .matches
            .iter()
            .map(|p| p.person.as_deref().unwrap_or(&p.id))
            .collect();
        persons.sort();
        persons.dedup();
        let (id, miss) = match (found.matches.first(), persons.len()) {
            (Some(p), 1) => (Some(p.id.clone()), None),
            (None, _) => (
                None,
                Some((
                    404,
                    "no person with that insurance member ID and birth date",
                )),
            ),
            _ => (
                None,
                Some((
                    409,
                    "several persons have that insurance member ID and birth date: open the record by its id",
                )),
            ),
        };
        let Some(id) = id else {
            let (status, why) = miss.expect("a miss");
            // A lookup that found no one is recorded too (probing member IDs leaves a trace).
            if let Some(log) = &self.audit {
                let mut rec = AuditRecord::new(Interaction::BreakGlass, &ctx.who(), "issho");
                if let Some(g) = ctx.grant() {
                    rec.agent.role = Some(g.role.code().to_string());
                    rec.on_behalf_of = g.organization.clone();
                }
                rec.purpose_of_use = vec!["ETREAT".into()];
                rec.break_glass = true;
                rec.reason = Some(format!("break-the-glass by insurance card refused: {why}"));
                rec.outcome = Outcome::MinorFailure;
                log.record(rec).map_err(|e| {
                    FhirError::new(503, IssueType::Transient, format!("audit trail: {e}"))
                })?;
            }
            return Err(FhirError::new(status, IssueType::NotFound, why));
        };
        self.break_glass(ctx, &id, reason)?;
        Ok(id)
    }

    /// Break the glass: an emergency physician opens `patient_id`'s record, stating a
    /// reason; recorded in the audit trail (flagged) whether or not it was allowed.
    pub fn break_glass(&self, ctx: &AccessContext, patient_id: &str, reason: &str) -> Result<()> {
        // Through the gate like every operation (the token must allow reading patients), and
        // then only for emergency physicians.
        let permitted = self
            .gate
            .check(ctx, Action::Operation, Some("Patient"))
            .map_err(FhirError::from);
        let allowed = ctx
            .grant()
            .is_some_and(|g| g.role == Role::EmergencyPhysician);
        let reason = reason.trim().to_string();
        let out: Result<()> = match permitted {
            Err(e) => Err(e),
            Ok(_) if !allowed => Err(FhirError::new(
                403,
                IssueType::Forbidden,
                "only emergency physicians may break the glass",
            )),
            Ok(_) if reason.chars().count() < 4 => Err(FhirError::bad_request(
                "breaking the glass needs a reason (at least a few words)",
            )),
            Ok(_) => self.open_glass(ctx, patient_id, &reason),
        };
        if let Some(log) = &self.audit {
            let mut rec = AuditRecord::new(Interaction::BreakGlass, &ctx.who(), "issho");
            if let Some(g) = ctx.grant() {
                rec.agent.role = Some(g.role.code().to_string());
                rec.on_behalf_of = g.organization.clone();
            }
            // A refused attempt by someone who may not break the glass is not the person's
            // business (their access log is not anyone's notice board): recorded without them.
            if allowed {
                rec.patients = vec![format!("Patient/{patient_id}")];
            } else {
                rec.entities = vec![format!("Patient/{patient_id}")];
            }
            rec.purpose_of_use = vec!["ETREAT".into()];
            rec.break_glass = true;
            rec.reason = Some(match &out {
                Ok(()) => format!("break-the-glass: {reason}"),
                Err(e) => format!(
                    "break-the-glass refused ({}): {reason}",
                    e.issues
                        .first()
                        .map(|i| i.diagnostics.as_str())
                        .unwrap_or("")
                ),
            });
            if out.is_err() {
                rec.outcome = Outcome::MinorFailure;
            }
            log.record(rec).map_err(|e| {
                FhirError::new(503, IssueType::Transient, format!("audit trail: {e}"))
            })?;
        }
        out
    }
}
