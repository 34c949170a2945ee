//! The CapabilityStatement, generated from what the engine and the search registry support.

use serde_json::{Value, json};

/// The server's CapabilityStatement (`GET /fhir/metadata`).
/// `registry` is the deployment's (R4 plus its ready custom parameters).
pub fn capability_statement(base: &str, registry: &issho_search::Registry) -> Value {
    let r4 = issho_model::r4();
    let resources: Vec<Value> = r4
        .resource_types()
        .iter()
        .map(|t| {
            let params: Vec<Value> = registry
                .params_for(t)
                .filter(|p| p.is_supported() && !p.pending)
                .map(|p| json!({"name": p.code, "type": p.kind.code(), "definition": p.url}))
                .collect();
            // Person resources are kept by the server (identity matching): read and search.
            let interaction = if t == "Person" {
                json!([
                    {"code": "read"}, {"code": "vread"}, {"code": "history-instance"},
                    {"code": "history-type"}, {"code": "search-type"}
                ])
            } else {
                json!([
                    {"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "patch"},
                    {"code": "delete"}, {"code": "history-instance"}, {"code": "history-type"},
                    {"code": "create"}, {"code": "search-type"}
                ])
            };
            let mut entry = json!({
                "type": t,
                "profile": if t == "ViewDefinition" {
                    // Not an R4 type: SQL on FHIR v2's logical model, served as a type.
                    "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition".to_string()
                } else {
                    format!("http://hl7.org/fhir/StructureDefinition/{t}")
                },
                "interaction": interaction,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "logical"],
                "searchParam": params,
                "operation": if t == "ViewDefinition" {
                    json!([
                        {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                        {"name": "viewdefinition-run", "definition": "http://sql-on-fhir.org/OperationDefinition/$viewdefinition-run",
                         "documentation": "GET or POST ViewDefinition/[id]/$viewdefinition-run runs the stored view (POST ViewDefinition/$viewdefinition-run as [base]/$viewdefinition-run), with the same parameters and reach. A stored view must compile (422 otherwise). Research projects' members keep their project's views (meta.source urn:issho:research-project:[id]) and change no other."}
                    ])
                } else if t == "Patient" {
                    json!([
                        {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                        {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                        {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
                         "documentation": "Bulk Data 2.0 Patient/$export: the patient compartment's types, as [base]/$export."},
                        {"name": "break-glass", "definition": "urn:issho:OperationDefinition:break-glass",
                         "documentation": "POST Patient/[id]/$break-glass with a Parameters 'reason': an emergency physician opens this person's record for 60 minutes whatever the care relationship and consent; audited, flagged for review, shown in the person's access log, and told to the person by a Communication in their record (category urn:issho:fhir:CodeSystem:notification|break-glass) that survives restarts and that no client can write."},
                        {"name": "access-log", "definition": "urn:issho:OperationDefinition:access-log",
                         "documentation": "GET Patient/[id]/$access-log: the audit trail's AuditEvents about this person (every Patient linked into them: who accessed their record, when, why, with what outcome), newest first; for the person and administrators."},
                        {"name": "summary", "definition": "urn:issho:OperationDefinition:summary",
                         "documentation": "GET Patient/[id]/$summary?kind=six-items|emergency|pharmacy: a document Bundle of the person's record across institutions as the caller may see it; each section entry names the institution holding it and its date."},
                        {"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
                         "documentation": "POST Patient/$match (resource, onlyCertainMatches, count): graded and scored candidates among the Patients the caller may search; certain = the same JP insurance member ID (NFKC) and birth date."},
                        {"name": "link", "definition": "urn:issho:OperationDefinition:link",
                         "documentation": "Registrars and administrators: POST Patient/[id]/$link with a Parameters 'other' (Patient/[id]): the two Patients are one person; the other's record joins this one's. Audited; reversed by $unlink."},
                        {"name": "unlink", "definition": "urn:issho:OperationDefinition:unlink",
                         "documentation": "Registrars and administrators: POST Patient/[id]/$unlink: this Patient leaves its person (and is not linked to it again by matching); the records are keyed again."},
                        {"name": "merge", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-merge",
                         "documentation": "Registrars and administrators: POST Patient/$merge with R5's parameters (source-patient or source-patient-identifier, target-patient or target-patient-identifier, result-patient, preview): every resource of the record referring to the source gets a new version referring to the target; the source becomes inactive with a replaced-by link, the target gets a replaces link; two persons become one. Recorded by a server-kept Provenance (policy urn:issho:policy:patient-merge); audited; reversed by $unmerge."},
                        {"name": "unmerge", "definition": "urn:issho:OperationDefinition:unmerge",
                         "documentation": "Registrars and administrators: POST Patient/[id]/$unmerge: reverses the newest merge of this source Patient (resources unchanged since get their earlier version back; changed ones refer to the source again; persons the merge joined are parted)."}
                    ])
                } else if t == "Observation" {
                    json!([
                        {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                        {"name": "lastn", "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
                         "documentation": "GET Observation/$lastn?max=N&patient=…&category=…&code=…&date=…: for each code (the first coding), the N (default 1, at most 1000) most recent Observations by effective date among those the same search finds for the caller; the newest 100,000 matches are considered (a warning says when there were more)."}
                    ])
                } else {
                    json!([{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}])
                }
            });
            if t == "Bundle" {
                entry["documentation"] = json!("POST [base]/Bundle with a JP-CLINS document (referral 57133-1, discharge summary 18842-5, ePCS 56447-6, eCheckupReport 53576-5) or a JP_Bundle_CLINS collection: checked, stored whole (Binary + DocumentReference, the answer) and extracted into the person's record in one transaction (Provenance back to it; re-sending replaces; an older versionNumber is refused with 409). Other Bundles are stored as they are.");
            }
            if t == "DocumentReference" {
                entry["operation"] = json!([
                    {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                    {"name": "withdraw", "definition": "urn:issho:OperationDefinition:withdraw",
                     "documentation": "POST DocumentReference/[id]/$withdraw: the sender takes back a document taken in by POST [base]/Bundle: the reference becomes entered-in-error; the document, its Provenance and referral, and every item no other document carries are deleted."}
                ]);
            }
            let validate = json!({"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"});
            if t == "CodeSystem" {
                entry["operation"] = json!([validate,
                    {"name": "lookup", "definition": "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
                     "documentation": "GET or POST CodeSystem/$lookup or CodeSystem/[id]/$lookup (code, system, version, coding, displayLanguage or Accept-Language, property): name, version, display, definition, designations and properties with parent and child."},
                    {"name": "validate-code", "definition": "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code",
                     "documentation": "CodeSystem/$validate-code (url, code, version, display, coding, codeableConcept): result, message, display; JLAC10, YJ, HOT and MEDIS disease codes are checked by their format where the content is not loaded."},
                    {"name": "subsumes", "definition": "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes",
                     "documentation": "CodeSystem/$subsumes (codeA, codeB, system, version, codingA, codingB): equivalent, subsumes, subsumed-by or not-subsumed."}
                ]);
            }
            if t == "Group" {
                entry["operation"] = json!([validate,
                    {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
                     "documentation": "Bulk Data 2.0 Group/[id]/$export: the records of the Group's active Patient members (nested Groups are not followed), as [base]/$export."}
                ]);
            }
            if t == "StructureDefinition" {
                entry["operation"] = json!([validate,
                    {"name": "snapshot", "definition": "http://hl7.org/fhir/OperationDefinition/StructureDefinition-snapshot",
                     "documentation": "StructureDefinition/$snapshot (url, or POST a definition) or StructureDefinition/[id]/$snapshot: the definition with its snapshot generated from its differential and its base (installed definitions or R4's own types)."}
                ]);
            }
            if t == "ValueSet" {
                entry["operation"] = json!([validate,
                    {"name": "expand", "definition": "http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
                     "documentation": "ValueSet/$expand or ValueSet/[id]/$expand (url, valueSetVersion, valueSet, filter — words in the code, display or designations, NFKC and kana folded —, offset, count, displayLanguage or Accept-Language, includeDesignations, activeOnly); at most 100,000 codes."},
                    {"name": "validate-code", "definition": "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
                     "documentation": "ValueSet/$validate-code (url, valueSetVersion, valueSet, code, system, systemVersion, display, coding, codeableConcept, abstract): result, message, display."}
                ]);
            }
            if t == "ConceptMap" {
                entry["operation"] = json!([validate,
                    {"name": "translate", "definition": "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
                     "documentation": "ConceptMap/$translate or ConceptMap/[id]/$translate (url, conceptMapVersion, code, system, coding, codeableConcept, targetsystem, reverse): result, message and each match (equivalence, concept, source)."}
                ]);
            }
            if t == "Composition" {
                entry["operation"] = json!([
                    {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                    {"name": "document", "definition": "http://hl7.org/fhir/OperationDefinition/Composition-document",
                     "documentation": "GET or POST Composition/[id]/$document: the document as received, or assembled from the Composition and what it refers to."}
                ]);
            }
            if t == "Person" {
                for k in ["updateCreate", "conditionalCreate", "conditionalUpdate", "conditionalDelete"] {
                    entry.as_object_mut().map(|o| o.remove(k));
                }
                entry["documentation"] = json!("Kept by the server: one Person per person with Patients at several institutions (link.target; assurance level3 for a certain match by insurance member ID, level4 for a registrar's link) or with an insurance member ID. Read and searched within the caller's reach; written only through Patient matching, $link and $unlink.");
            }
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "issho",
        "kind": "instance",
        "software": {"name": "issho", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "issho — one lifelong health record per person (FHIR R4)", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json", "application/fhir+xml", "xml"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "JSON and XML. Every write is validated against the R4 base definitions and against each installed profile (issho package install, $install-package) named in its meta.profile (422 naming the profile, element and rule; a profile not installed is a warning unless the deployment refuses it); $validate takes a profile. Authentication: SMART v2 bearer tokens (ES256, keys at .well-known/jwks.json) unless the server runs with --dev-open; every access is recorded in a hash-chained audit trail. Patients and clinicians see and write only the records within their reach (one ownership rule for every resource type); they create with POST (update-as-create and deletes of unknown ids answer 404 for them, as for hidden resources) and may only reference patient data they can read; shared data, SearchParameters and a person's Consents are written by administrators (Consents also by that person; ViewDefinitions also by research projects' members); a patient changes only what they wrote (meta.tag urn:issho:record-origin|patient).",
            "resource": resources,
            "interaction": [
                {"code": "transaction"}, {"code": "batch"}, {"code": "search-system"}, {"code": "history-system"}
            ],
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            "operation": [
                {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                 "documentation": "Bulk Data 2.0: GET or POST [base]/$export and [base]/Patient/$export with Prefer: respond-async and Group/[id]/$export (_type, _since, _typeFilter, _elements, _outputFormat application/fhir+ndjson; includeAssociatedData LatestProvenanceResources or RelevantProvenanceResources: the Provenance of the exported resources the client may export, each once) answer 202 with the status URL ($export-status/JOB: 202 with X-Progress, then the manifest; DELETE cancels); the NDJSON files ($export-file/JOB/TYPE.ndjson) are served to the user or client that asked, while its token may search that type. Each export holds what that client may search (a _typeFilter's _has and chains included), from one snapshot, and is audited with every person exported; a research project's member receives its consenting persons only, k-anonymous and de-identified (no _since; _typeFilter by codes only; the report in the manifest's extension)."},
                {"name": "viewdefinition-run", "definition": "http://sql-on-fhir.org/OperationDefinition/$viewdefinition-run",
                 "documentation": "SQL on FHIR v2 in R4 mode: POST [base]/$viewdefinition-run with a Parameters body (viewResource, or viewReference to a stored ViewDefinition/[id] or its /_history/[vid]; _format ndjson (default), csv, json or parquet; header; _limit; patient; group) answers the view's rows over the resources the token may export (a research project's member: its consenting persons, de-identified). resource and _since not yet."},
                {"name": "audit", "definition": "urn:issho:OperationDefinition:audit",
                 "documentation": "Administrators: GET [base]/$audit?agent=&patient=&_since=&_count= searches the hash-chained audit trail."},
                {"name": "reindex", "definition": "urn:issho:OperationDefinition:reindex",
                 "documentation": "Administrators: progress of building the index rows of custom SearchParameter resources (GET or POST [base]/$reindex)."},
                {"name": "install-package", "definition": "urn:issho:OperationDefinition:install-package",
                 "documentation": "Administrators: POST [base]/$install-package with a FHIR package file (.tgz, Content-Type application/gzip): its StructureDefinitions, ValueSets, CodeSystems, NamingSystems, SearchParameters and ConceptMaps are installed in one transaction once what they build on (package dependencies, base definitions, imported value sets) is installed; definitions without a version get the package's; each package is recorded as an ImplementationGuide tagged urn:issho:package (ImplementationGuide?_tag=urn:issho:package|). Installing again writes new versions of the same resources."}
            ]
        }]
    })
}

/// `rest.security` when tokens are required: SMART-on-FHIR, with the OAuth endpoints in the
/// `oauth-uris` extension (how SMART 1 clients such as Python fhirclient find them).
pub fn security(auth: &issho_auth::Auth) -> Value {
    let iss = auth.issuer();
    let root = iss.trim_end_matches("/fhir");
    json!({
        "cors": true,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
        "description": "SMART App Launch 2.0: authorization code with PKCE (S256) for public apps; see .well-known/smart-configuration",
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{root}/auth/authorize")},
                {"url": "token", "valueUri": format!("{root}/auth/token")},
                {"url": "revoke", "valueUri": format!("{root}/auth/revoke")},
                {"url": "introspect", "valueUri": format!("{root}/auth/introspect")}
            ]
        }]
    })
}
