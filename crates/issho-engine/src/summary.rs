//! `Patient/[id]/$summary`: a FHIR document of the person's record across institutions, as
//! the caller may see it (their view, consent and JP-CLINS tags apply to every section).
//!
//! Three kinds (`kind` parameter):
//! - `six-items` (the default): the JP-CLINS six information items — diagnoses, allergies and
//!   intolerances, contraindicated drugs (drug allergies), infections, key laboratory results
//!   (the latest of each test), current prescriptions;
//! - `emergency`: for an emergency physician (after breaking the glass): medical history,
//!   chronic illnesses, allergies and contraindicated drugs, current medications, the latest
//!   key results, recent encounters;
//! - `pharmacy`: for a pharmacist dispensing: current prescriptions across institutions with
//!   the allergies and contraindicated drugs.
//!
//! Every section entry carries the institution that holds it (`meta.source`) and its date,
//! in the section's narrative and as extensions on the entry reference.

use crate::*;
use issho_search::{Filter, Test};
use issho_store::StoreRead;
use serde_json::json;
use std::collections::BTreeMap;

/// The extension on a section entry naming the institution that holds it.
const ENTRY_SOURCE: &str = "urn:issho:fhir:extension:entry-source";
/// The extension on a section entry giving its clinical date.
const ENTRY_DATE: &str = "urn:issho:fhir:extension:entry-date";
const INFECTION_CATEGORY: (&str, &str) = (
    "http://jpfhir.jp/fhir/eCS/CodeSystem/observation-subcategory-cs",
    "infectionRelated",
);
const INFECTION_CODES: &str =
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_InfectionLabo_CS";
/// Most entries in one section.
const MAX_ENTRIES: usize = 200;
/// The latest results of this many tests.
const KEY_LABS: usize = 30;
/// Recent encounters in an emergency summary.
const RECENT_ENCOUNTERS: usize = 5;

/// A section's resources, chosen from the person's record.
struct Section {
    code: &'static str,
    title: &'static str,
    items: Vec<Value>,
}

fn has_coding(v: &Value, system: &str, code: &str) -> bool {
    v.as_array().into_iter().flatten().any(|cc| {
        cc["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["system"] == system && c["code"] == code)
    })
}

fn codes(v: &Value) -> Vec<(String, String)> {
    v["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["system"].as_str()?.to_string(),
                c["code"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The clinical date of a resource (what the summary shows beside it).
fn date_of(r: &Value) -> Option<&str> {
    for k in [
        "effectiveDateTime",
        "authoredOn",
        "recordedDate",
        "onsetDateTime",
        "issued",
        "date",
    ] {
        if let Some(d) = r[k].as_str() {
            return Some(d);
        }
    }
    r["effectivePeriod"]["start"]
        .as_str()
        .or_else(|| r["period"]["start"].as_str())
        .or_else(|| r["meta"]["lastUpdated"].as_str())
}

fn display(r: &Value) -> String {
    let c = if r["resourceType"] == "MedicationRequest" {
        &r["medicationCodeableConcept"]
    } else if r["resourceType"] == "Encounter" {
        &r["class"]
    } else {
        &r["code"]
    };
    let mut s = c["text"]
        .as_str()
        .or_else(|| c["coding"][0]["display"].as_str())
        .or_else(|| c["display"].as_str())
        .or_else(|| c["code"].as_str())
        .unwrap_or("—")
        .to_string();
    if let Some(q) = r.get("valueQuantity") {
        s.push_str(&format!(
            ": {} {}",
            q["value"],
            q["unit"].as_str().or(q["code"].as_str()).unwrap_or("")
        ));
    } else if let Some(t) = r["valueString"].as_str() {
        s.push_str(&format!(": {t}"));
    } else if let Some(t) = r["valueCodeableConcept"]["text"]
        .as_str()
        .or(r["valueCodeableConcept"]["coding"][0]["display"].as_str())
    {
        s.push_str(&format!(": {t}"));
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn status_is(r: &Value, key: &str, allowed: &[&str]) -> bool {
    let v = &r[key];
    let code = v["coding"][0]["code"].as_str().or(v.as_str());
    code.is_none_or(|c| allowed.contains(&c))
}

/// Newest first by clinical date.
fn newest_first(items: &mut [Value]) {
    items.sort_by(|a, b| date_of(b).unwrap_or("").cmp(date_of(a).unwrap_or("")));
}

impl Engine {
    /// `Patient/[id]/$summary?kind=six-items|emergency|pharmacy`.
    pub fn summary(
        &self,
        ctx: &AccessContext,
        patient_id: &str,
        kind: &str,
        base: &str,
    ) -> Result<Value> {
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            Some(format!("Patient/{patient_id}")),
            Some(format!("Patient/{patient_id}/$summary?kind={kind}")),
            || self.summary_unaudited(ctx, patient_id, kind, base),
            |b: &Value, t| {
                for e in b["entry"].as_array().into_iter().flatten().take(50) {
                    let r = &e["resource"];
                    if let (Some(rt), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) {
                        t.entities.push(format!("{rt}/{id}"));
                    }
                }
            },
        )
    }

    /// The person's current resources of `rt` that the caller may see.
    pub(crate) fn record_of(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        person: &str,
        rt: &str,
    ) -> Result<Vec<Value>> {
        let Ok(view) = self.view(ctx, Action::Search, Some(rt), r) else {
            return Ok(Vec::new());
        };
        let mut q = issho_search::SearchQuery {
            resource_type: Some(rt.to_string()),
            count: Some(5_000),
            ..Default::default()
        };
        q.filters.push(Filter {
            name: "_person".into(),
            test: Test::PersonIn(vec![person.to_string()]),
        });
        q.filters.extend(view.filters(&self.registry(), rt)?);
        let rids = r.search(&q)?;
        let mut out = Vec::with_capacity(rids.len());
        for chunk in rids.chunks(500) {
            out.extend(
                r.current_by_rids(chunk)?
                    .into_iter()
                    .filter_map(|s| s.json()),
            );
        }
        Ok(out)
    }

    fn summary_unaudited(
        &self,
        ctx: &AccessContext,
        patient_id: &str,
        kind: &str,
        base: &str,
    ) -> Result<Value> {
        if !matches!(kind, "six-items" | "emergency" | "pharmacy") {
            return Err(FhirError::bad_request(format!(
                "kind '{kind}': six-items, emergency or pharmacy"
            )));
        }
        let r = self.snapshot(ctx, Action::Operation, Some("Patient"))?;
        let pv = self.view(ctx, Action::Read, Some("Patient"), &*r)?;
        let patient = match r.current("Patient", patient_id)? {
            Some(s)
                if !s.is_deleted() && pv.sees(&self.registry(), &*r, "Patient", patient_id)? =>
            {
                s
            }
            _ => return Err(Self::hidden("Patient", patient_id)),
        };
        let person = crate::identity::person_of_patient(&*r, patient_id)?;
        let conditions = self.record_of(ctx, &*r, &person, "Condition")?;
        let allergies = self.record_of(ctx, &*r, &person, "AllergyIntolerance")?;
        let observations = self.record_of(ctx, &*r, &person, "Observation")?;
        let meds = self.record_of(ctx, &*r, &person, "MedicationRequest")?;
        let live_allergy = |a: &&Value| {
            status_is(
                a,
                "verificationStatus",
                &["confirmed", "unconfirmed", "presumed"],
            ) && status_is(a, "clinicalStatus", &["active"])
        };
        let drug = |a: &&Value| {
            a["category"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x == "medication"))
        };
        let allergy_items: Vec<Value> = allergies
            .iter()
            .filter(live_allergy)
            .filter(|a| !drug(a))
            .cloned()
            .collect();
        let drug_items: Vec<Value> = allergies
            .iter()
            .filter(live_allergy)
            .filter(drug)
            .cloned()
            .collect();
        let infection = |o: &&Value| {
            has_coding(&o["category"], INFECTION_CATEGORY.0, INFECTION_CATEGORY.1)
                || codes(&o["code"]).iter().any(|(s, _)| s == INFECTION_CODES)
        };
        let final_obs = |o: &&Value| status_is(o, "status", &["final", "amended", "corrected"]);
        let infections: Vec<Value> = observations
            .iter()
            .filter(final_obs)
            .filter(infection)
            .cloned()
            .collect();
        let labs = latest_by_code(
            observations
                .iter()
                .filter(final_obs)
                .filter(|o| !infection(o))
                .filter(|o| {
                    o["category"].as_array().into_iter().flatten().any(|c| {
                        c["coding"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|x| x["code"] == "laboratory")
                    })
                }),
        );
        let now = issho_model::instant::format_instant(issho_store::now_micros());
        let current_meds = current_prescriptions(&meds);
        let active =
            |c: &&Value| status_is(c, "clinicalStatus", &["active", "recurrence", "relapse"]);
        let confirmed = |c: &&Value| {
            !status_is(c, "verificationStatus", &["entered-in-error", "refuted"])
                || c["verificationStatus"].is_null()
        };
        let diagnoses: Vec<Value> = conditions
            .iter()
            .filter(active)
            .filter(confirmed)
            .cloned()
            .collect();
        let mut sections = match kind {
            "six-items" => vec![
                Section {
                    code: "11450-4",
                    title: "傷病名 (diagnoses)",
                    items: diagnoses,
                },
                Section {
                    code: "48765-2",
                    title: "アレルギー・不耐性 (allergies and intolerances)",
                    items: allergy_items,
                },
                Section {
                    code: "10160-0",
                    title: "禁忌薬・薬剤アレルギー (contraindicated drugs)",
                    items: drug_items,
                },
                Section {
                    code: "11369-6",
                    title: "感染症 (infections)",
                    items: infections,
                },
                Section {
                    code: "30954-2",
                    title: "検査結果 (key laboratory results)",
                    items: labs,
                },
                Section {
                    code: "10160-0",
                    title: "処方 (current prescriptions)",
                    items: current_meds,
                },
            ],
            "pharmacy" => vec![
                Section {
                    code: "10160-0",
                    title: "処方 (current prescriptions)",
                    items: current_meds,
                },
                Section {
                    code: "48765-2",
                    title: "禁忌薬・薬剤アレルギー (contraindicated drugs and drug allergies)",
                    items: drug_items,
                },
                Section {
                    code: "48765-2",
                    title: "アレルギー・不耐性 (other allergies)",
                    items: allergy_items,
                },
            ],
            _ => {
                let mut history = conditions.clone();
                history.retain(|c| !active(&c));
                let encounters = {
                    let mut e = self.record_of(ctx, &*r, &person, "Encounter")?;
                    newest_first(&mut e);
                    e.truncate(RECENT_ENCOUNTERS);
                    e
                };
                let mut all_allergies = drug_items;
                all_allergies.extend(allergy_items);
                vec![
                    Section {
                        code: "48765-2",
                        title: "アレルギー・禁忌 (allergies and contraindications)",
                        items: all_allergies,
                    },
                    Section {
                        code: "10160-0",
                        title: "服薬 (current medications)",
                        items: current_meds,
                    },
                    Section {
                        code: "11450-4",
                        title: "慢性疾患・現在の傷病 (chronic and current illnesses)",
                        items: diagnoses,
                    },
                    Section {
                        code: "11348-0",
                        title: "既往歴 (medical history)",
                        items: history,
                    },
                    Section {
                        code: "30954-2",
                        title: "最新の検査結果 (latest key results)",
                        items: labs,
                    },
                    Section {
                        code: "46240-8",
                        title: "最近の受診 (recent encounters)",
                        items: encounters,
                    },
                ]
            }
        };
        for s in &mut sections {
            newest_first(&mut s.items);
            s.items.truncate(MAX_ENTRIES);
        }
        let names = self.organization_names(ctx, &*r, &sections)?;
        Ok(document(kind, &patient, &sections, &names, &now, base))
    }

    /// The names of the organizations the sections' entries come from.
    /// Each as the caller may read it: `meta.source` is the writer's word, and an
    /// Organization that names a person is in that person's record.
    fn organization_names(
        &self,
        ctx: &AccessContext,
        r: &dyn StoreRead,
        sections: &[Section],
    ) -> Result<BTreeMap<String, Value>> {
        let mut out = BTreeMap::new();
        let Ok(view) = self.view(ctx, Action::Read, Some("Organization"), r) else {
            return Ok(out);
        };
        let reg = self.registry();
        for s in sections {
            for i in &s.items {
                if let Some(id) = i["meta"]["source"]
                    .as_str()
                    .and_then(|x| x.strip_prefix("Organization/"))
                    && !out.contains_key(id)
                    && view.sees(&reg, r, "Organization", id)?
                    && let Some(o) = r.current("Organization", id)?.and_then(|s| s.json())
                {
                    out.insert(id.to_string(), o);
                }
            }
        }
        Ok(out)
    }
}

/// The prescriptions a person takes now: active or on hold, or completed in the last 90
/// days (a Japanese prescription is often "completed" once dispensed, and taken for weeks).
pub(crate) fn current_prescriptions(meds: &[Value]) -> Vec<Value> {
    // By the date's text: ISO 8601 sorts as it reads.
    let cutoff =
        issho_model::instant::format_instant(issho_store::now_micros() - 90 * 86_400 * 1_000_000);
    meds.iter()
        .filter(|m| match m["status"].as_str() {
            Some("active" | "on-hold") => true,
            Some("completed") => date_of(m).is_some_and(|d| d >= &cutoff[..10]),
            _ => false,
        })
        .cloned()
        .collect()
}

/// The latest result of each test (by its first coding or text), at most [`KEY_LABS`].
fn latest_by_code<'a>(obs: impl Iterator<Item = &'a Value>) -> Vec<Value> {
    let mut by: BTreeMap<String, Value> = BTreeMap::new();
    for o in obs {
        let key = codes(&o["code"])
            .first()
            .map(|(s, c)| format!("{s}|{c}"))
            .or_else(|| o["code"]["text"].as_str().map(str::to_string))
            .unwrap_or_default();
        let newer = by
            .get(&key)
            .is_none_or(|b| date_of(o).unwrap_or("") > date_of(b).unwrap_or(""));
        if newer {
            by.insert(key, o.clone());
        }
    }
    let mut v: Vec<Value> = by.into_values().collect();
    newest_first(&mut v);
    v.truncate(KEY_LABS);
    v
}

fn document(
    kind: &str,
    patient: &Stored,
    sections: &[Section],
    orgs: &BTreeMap<String, Value>,
    now: &str,
    base: &str,
) -> Value {
    let pid = &patient.id;
    let mut entries = vec![
        json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": Value::Null}),
    ];
    entries.push(json!({"fullUrl": format!("{base}/Patient/{pid}"), "resource": patient.json()}));
    let mut composed = Vec::new();
    for s in sections {
        let mut refs = Vec::new();
        let mut rows = String::new();
        for i in &s.items {
            let (rt, id) = (
                i["resourceType"].as_str().unwrap_or(""),
                i["id"].as_str().unwrap_or(""),
            );
            let source = i["meta"]["source"].as_str();
            let org_name = source
                .and_then(|x| x.strip_prefix("Organization/"))
                .and_then(|id| orgs.get(id))
                .and_then(|o| o["name"].as_str())
                .or(source)
                .unwrap_or("—");
            let date = date_of(i).unwrap_or("—");
            let mut r = json!({"reference": format!("{rt}/{id}")});
            let mut ext = Vec::new();
            if let Some(src) = source {
                ext.push(json!({"url": ENTRY_SOURCE, "valueReference": {"reference": src, "display": org_name}}));
            }
            if let Some(d) = date_of(i) {
                ext.push(json!({"url": ENTRY_DATE, "valueString": d}));
            }
            if !ext.is_empty() {
                r["extension"] = json!(ext);
            }
            refs.push(r);
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&display(i)),
                escape(date),
                escape(org_name)
            ));
            entries.push(json!({"fullUrl": format!("{base}/{rt}/{id}"), "resource": i}));
        }
        let div = if s.items.is_empty() {
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>記録なし (none recorded)</p></div>"
                .to_string()
        } else {
            format!(
                "<div xmlns=\"http://www.w3.org/1999/xhtml\"><table><thead><tr><th>項目</th><th>日付</th><th>医療機関</th></tr></thead><tbody>{rows}</tbody></table></div>"
            )
        };
        let mut sec = json!({
            "title": s.title,
            "code": {"coding": [{"system": "http://loinc.org", "code": s.code}], "text": s.title},
            "text": {"status": "generated", "div": div},
        });
        if refs.is_empty() {
            sec["emptyReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "unavailable"}]});
        } else {
            sec["entry"] = json!(refs);
        }
        composed.push(sec);
    }
    for (id, o) in orgs {
        entries.push(json!({"fullUrl": format!("{base}/Organization/{id}"), "resource": o}));
    }
    let title = match kind {
        "emergency" => "救急サマリー (emergency summary)",
        "pharmacy" => "薬局向けサマリー (pharmacy view)",
        _ => "6情報サマリー (patient summary: six information items)",
    };
    let composition = json!({
        "resourceType": "Composition",
        "id": uuid::Uuid::new_v4().to_string(),
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5", "display": "Patient summary Document"}]},
        "subject": {"reference": format!("Patient/{pid}")},
        "date": now,
        "author": [{"display": "issho"}],
        "title": title,
        "section": composed,
    });
    entries[0]["resource"] = composition;
    json!({
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuid::Uuid::new_v4())},
        "type": "document",
        "timestamp": now,
        "entry": entries,
    })
}
