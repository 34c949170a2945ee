//! Documents and information items into the person's record: a JP-CLINS document or item
//! collection POSTed to `[base]/Bundle` is checked and planned by issho-documents and run as
//! one transaction with the sender's own access (so every guard, the validation and the
//! audit trail apply as to any transaction), then answered with its DocumentReference.
//! `Composition/[id]/$document` gives the document back.

use crate::*;
use issho_access::Role;
use serde_json::json;

impl Engine {
    /// Take in a JP-CLINS document or information-item collection: 201 with the new
    /// DocumentReference (200 when it replaced an earlier version or the same document).
    /// A version lower than the one stored is refused (409); what the sender may not write
    /// (another institution's patient, a patient's own token) is refused as any write is,
    /// with nothing written.
    pub fn submit_document(&self, ctx: &AccessContext, bundle: Value) -> Result<WriteOutcome> {
        if ctx.grant().is_some_and(|g| g.role == Role::Patient) {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                "documents are submitted by care providers, not with a patient's token",
            ));
        }
        let received = issho_model::instant::format_instant(issho_store::now_micros());
        // The organizations already stored, by medical-institution number (shared data).
        let orgs = self.snapshot(ctx, Action::Read, Some("Organization"))?;
        let known = |no: &str| -> Option<String> {
            let q = issho_search::parse(
                Some("Organization"),
                &[(
                    "identifier".into(),
                    format!("{}|{no}", issho_documents::INSTITUTION_NO),
                )],
                true,
            )
            .ok()?;
            let rids = orgs.search(&q).ok()?;
            let found = orgs.current_by_rids(&rids).ok()?;
            match found.as_slice() {
                [one] => Some(one.id.clone()),
                _ => None,
            }
        };
        let mut intake =
            issho_documents::plan(&bundle, &received, &known).map_err(|issues| FhirError {
                status: 422,
                issues,
            })?;
        drop(orgs);
        // An earlier version the sender can see: a newer one replaces it, an older one is
        // refused; the transaction holds the version it read (If-Match).
        let r = self.snapshot(ctx, Action::Read, Some("DocumentReference"))?;
        let view = self.view(ctx, Action::Read, Some("DocumentReference"), &*r)?;
        let id = intake.document_reference.clone();
        let stored = match r.current("DocumentReference", &id)? {
            Some(s)
                if !s.is_deleted()
                    && view.sees(&self.registry(), &*r, "DocumentReference", &id)? =>
            {
                Some(s)
            }
            _ => None,
        };
        drop(r);
        if let Some(s) = &stored {
            let before = s.json().and_then(|v| {
                v["extension"]
                    .as_array()?
                    .iter()
                    .find(|x| x["url"].as_str() == Some(issho_documents::VERSION_EXT))
                    .and_then(|x| x["valueString"].as_str())
                    .and_then(issho_documents::version_of)
            });
            let now = intake
                .version
                .as_deref()
                .and_then(issho_documents::version_of);
            if let (Some(b), Some(n)) = (&before, &now)
                && n < b
            {
                return Err(FhirError::new(
                    409,
                    IssueType::Conflict,
                    format!(
                        "a newer version of this document is stored ({}): version {} does not replace it",
                        b.iter().map(u64::to_string).collect::<Vec<_>>().join("."),
                        intake.version.as_deref().unwrap_or_default()
                    ),
                ));
            }
            for e in intake.transaction["entry"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if e["request"]["url"].as_str() == Some(&format!("DocumentReference/{id}")) {
                    e["request"]["ifMatch"] = json!(format!("W/\"{}\"", s.version));
                }
            }
        }
        let tx = std::mem::take(&mut intake.transaction);
        self.process_bundle(ctx, tx, None, Return::Minimal)?;
        let s = self.read(ctx, "DocumentReference", &id)?;
        Ok(WriteOutcome {
            status: if stored.is_some() { 200 } else { 201 },
            resource_type: "DocumentReference".into(),
            id: id.clone(),
            resource: s.json(),
            version: Some(s.version),
            last_updated: Some(s.last_updated),
            issues: vec![Issue::information(format!(
                "{} taken in: {} resources extracted into the person's record (Provenance/{}); the document as received is Binary/{}",
                intake.kind.label(),
                intake.items,
                issho_documents::id_for(&format!("provenance|{}", intake.key)),
                intake.binary
            ))],
        })
    }

    /// `Composition/[id]/$document`: the document this Composition heads — as it was received
    /// when it came in as one (the Binary its DocumentReference points to), otherwise put
    /// together from the Composition and what it refers to (each resource as the caller may
    /// read it).
    pub fn composition_document(&self, ctx: &AccessContext, id: &str, base: &str) -> Result<Value> {
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            Some(format!("Composition/{id}")),
            Some(format!("Composition/{id}/$document")),
            || self.document_unaudited(ctx, id, base),
            |_, _| {},
        )
    }

    fn document_unaudited(&self, ctx: &AccessContext, id: &str, base: &str) -> Result<Value> {
        let composition = self.read(ctx, "Composition", id)?;
        let r = self.snapshot(ctx, Action::Read, Some("DocumentReference"))?;
        let mut q = issho_search::parse(
            Some("DocumentReference"),
            &[("related".into(), format!("Composition/{id}"))],
            true,
        )
        .map_err(|issues| FhirError {
            status: 500,
            issues,
        })?;
        // As the caller may see them, and only the references an intake made (their id comes
        // from the document's identity): anyone else's DocumentReference naming this
        // Composition is not its document.
        let view = self.view(ctx, Action::Search, Some("DocumentReference"), &*r)?;
        q.filters
            .extend(view.filters(&self.registry(), "DocumentReference")?);
        for s in r.current_by_rids(&r.search(&q)?)? {
            let Some(v) = s.json() else { continue };
            let key = match (
                v["masterIdentifier"]["system"].as_str(),
                v["masterIdentifier"]["value"].as_str(),
            ) {
                (sys, Some(val)) => format!("{}|{val}", sys.unwrap_or_default()),
                _ => continue,
            };
            if issho_documents::id_for(&format!("docref|{key}")) != s.id {
                continue;
            }
            let bin = issho_documents::id_for(&format!("binary|{key}"));
            let Ok(b) = self.read(ctx, "Binary", &bin) else {
                continue;
            };
            let data = b
                .json()
                .and_then(|v| v["data"].as_str().and_then(issho_model::base64::decode))
                .ok_or_else(|| FhirError::internal(format!("Binary/{bin} holds no document")))?;
            return serde_json::from_slice(&data)
                .map_err(|e| FhirError::internal(format!("Binary/{bin}: {e}")));
        }
        drop(r);
        self.assemble_document(ctx, composition, base)
    }

    /// A document Bundle from a stored Composition: the Composition first, then every
    /// resource it refers to and what those refer to (two levels), that the caller may read.
    fn assemble_document(
        &self,
        ctx: &AccessContext,
        composition: Stored,
        base: &str,
    ) -> Result<Value> {
        let first = composition
            .json()
            .ok_or_else(|| FhirError::internal("the Composition has no body"))?;
        let mut entries = vec![first.clone()];
        let mut seen = std::collections::HashSet::new();
        seen.insert(format!("Composition/{}", composition.id));
        let mut level = vec![first];
        for _ in 0..2 {
            let mut next = Vec::new();
            for v in &level {
                for (t, rid) in crate::owner::literal_refs(v) {
                    let key = format!("{t}/{rid}");
                    if !seen.insert(key) {
                        continue;
                    }
                    // What the caller may not read is left out, as in any search.
                    if let Ok(s) = self.read(ctx, &t, &rid)
                        && let Some(body) = s.json()
                    {
                        entries.push(body.clone());
                        next.push(body);
                    }
                }
            }
            level = next;
        }
        let entry: Vec<Value> = entries
            .into_iter()
            .map(|r| {
                let url = format!(
                    "{base}/{}/{}",
                    r["resourceType"].as_str().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default()
                );
                json!({"fullUrl": url, "resource": r})
            })
            .collect();
        Ok(json!({
            "resourceType": "Bundle",
            "type": "document",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuid::Uuid::new_v4())},
            "timestamp": issho_model::instant::format_instant(issho_store::now_micros()),
            "entry": entry,
        }))
    }
}

impl Engine {
    /// `POST DocumentReference/[id]/$withdraw`: the sender takes a document back, in one
    /// transaction with their own access: the DocumentReference becomes `entered-in-error`,
    /// the document as received (Binary), its Provenance and its referral go, and so does
    /// every resource it brought that no other document still carries.
    pub fn withdraw_document(&self, ctx: &AccessContext, id: &str) -> Result<Value> {
        if ctx.grant().is_some_and(|g| g.role == Role::Patient) {
            return Err(FhirError::new(
                403,
                IssueType::Forbidden,
                "documents are withdrawn by the care providers who sent them",
            ));
        }
        let dr = self.read(ctx, "DocumentReference", id)?;
        let mut body = dr
            .json()
            .ok_or_else(|| FhirError::internal("the DocumentReference has no body"))?;
        let key = match (
            body["masterIdentifier"]["system"].as_str(),
            body["masterIdentifier"]["value"].as_str(),
        ) {
            (s, Some(v)) => format!("{}|{v}", s.unwrap_or_default()),
            _ => {
                return Err(FhirError::bad_request(
                    "this DocumentReference was not made by a document intake",
                ));
            }
        };
        if issho_documents::id_for(&format!("docref|{key}")) != id {
            return Err(FhirError::bad_request(
                "this DocumentReference was not made by a document intake (only those are withdrawn)",
            ));
        }
        if body["status"] == "entered-in-error" {
            return Err(FhirError::new(
                409,
                IssueType::Conflict,
                "the document was withdrawn already",
            ));
        }
        let provenance = issho_documents::id_for(&format!("provenance|{key}"));
        let binary = issho_documents::id_for(&format!("binary|{key}"));
        let referral = issho_documents::id_for(&format!("referral|{key}"));
        let mut entries = Vec::new();
        let r = self.snapshot(ctx, Action::Read, Some("Provenance"))?;
        if let Some(p) = r.current("Provenance", &provenance)?.and_then(|s| s.json()) {
            for t in p["target"].as_array().into_iter().flatten() {
                let Some(target) = t["reference"].as_str() else {
                    continue;
                };
                // Still carried by another document: it stays.
                let q = issho_search::parse(
                    Some("Provenance"),
                    &[("target".into(), target.to_string())],
                    true,
                )
                .map_err(|issues| FhirError {
                    status: 500,
                    issues,
                })?;
                let others = r
                    .current_by_rids(&r.search(&q)?)?
                    .into_iter()
                    .any(|s| s.id != provenance);
                if !others {
                    entries.push(json!({"request": {"method": "DELETE", "url": target}}));
                }
            }
            entries.push(
                json!({"request": {"method": "DELETE", "url": format!("Provenance/{provenance}")}}),
            );
        }
        for (rt, rid) in [("Binary", &binary), ("ServiceRequest", &referral)] {
            if r.current(rt, rid)?.is_some_and(|s| !s.is_deleted()) {
                entries
                    .push(json!({"request": {"method": "DELETE", "url": format!("{rt}/{rid}")}}));
            }
        }
        drop(r);
        body["status"] = json!("entered-in-error");
        if let Some(o) = body.as_object_mut() {
            o.remove("content");
            o.insert(
                "content".into(),
                json!([{"attachment": {"title": "取り下げ (withdrawn)"}}]),
            );
        }
        entries.push(json!({"resource": body, "request": {"method": "PUT",
            "url": format!("DocumentReference/{id}"), "ifMatch": format!("W/\"{}\"", dr.version)}}));
        let n = entries.len();
        self.process_bundle(
            ctx,
            json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
            None,
            Return::Minimal,
        )?;
        Ok(issho_model::operation_outcome(&[Issue::information(
            format!(
                "DocumentReference/{id} withdrawn: {} resources removed, the reference kept as entered-in-error",
                n - 1
            ),
        )]))
    }
}
