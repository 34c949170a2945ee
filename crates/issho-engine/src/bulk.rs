//! FHIR Bulk Data 2.0 `$export` at system, Patient and Group level, asynchronous: a kick-off starts a
//! job on its own thread that runs the same export as `issho export` (one snapshot, constant
//! memory, the gate and the visibility rules of search, one audit record naming every person
//! exported) into NDJSON files, one per type, under the data directory (`bulk/JOB/`). The
//! status answers "in progress" with what was written so far, then the manifest; the files are
//! served to the client that asked for them only (to anyone else a job does not exist); a
//! cancel stops the job and removes its files. What a job was asked, for whom, and what it
//! wrote is kept in `bulk/JOB/job.json`, so that a finished export is still served after a
//! restart and one that a restart interrupted runs again from the start ([`Engine::resume_bulk`]).

use crate::bulk_params::{elements_of, request_of, subset};
use crate::export::{Associated, ExportRequest};
use crate::{Engine, FhirError, Result};
use issho_access::{AccessContext, Principal};
use issho_model::IssueType;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many exports may run at once on this server.
const RUNNING_AT_MOST: usize = 4;

/// The level of a kick-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkLevel {
    /// `[base]/$export`: everything the caller may see.
    System,
    /// `[base]/Patient/$export`: the resources of the patients' compartments.
    Patient,
    /// `[base]/Group/[id]/$export`: the records of the Group's member Patients.
    Group(String),
}

/// The answer to a status request.
#[derive(Debug)]
pub enum BulkStatus {
    /// Still running: what was written so far.
    Running { progress: String },
    /// Done: the manifest.
    Complete(Value),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Running,
    /// The files written: (type, file name, count).
    Done(Vec<(String, String, u64)>),
    Failed {
        status: u16,
        message: String,
    },
}

struct Job {
    owner: String,
    /// The kick-off request as the client sent it.
    request: String,
    /// Who asked and what, to run the job again after a restart ([`resume_of`]).
    resume: Value,
    transaction_time: Mutex<String>,
    state: Mutex<State>,
    cancel: AtomicBool,
    written: AtomicU64,
}

/// The export jobs of this server and the directory that holds their files.
pub struct BulkJobs {
    dir: PathBuf,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// Jobs a restart interrupted, to run again ([`Engine::resume_bulk`]).
    interrupted: Mutex<Vec<String>>,
}

/// Who asked: a job is served to the same principal only.
/// The k-anonymity report of a research project's export, beside its files.
const DEID_REPORT: &str = "deidentification.json";

/// The manifest's extension naming a research export's report.
pub const DEID_EXTENSION: &str = "https://issho.example/fhir/bulk/deidentification";

/// A manifest with the job's de-identification report (a research export), if any.
fn with_report(dir: &std::path::Path, mut manifest: Value) -> Value {
    if let Some(report) = std::fs::read(dir.join(DEID_REPORT))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        manifest["extension"] = json!({ DEID_EXTENSION: report });
    }
    manifest
}

fn owner_of(ctx: &AccessContext) -> String {
    match &ctx.principal {
        Principal::DevOpen => "dev-open".into(),
        Principal::System { operator } => format!("system:{operator}"),
        Principal::Anonymous => "anonymous".into(),
        Principal::Token(g) => format!("{}:{}", g.role.code(), g.subject),
    }
}

fn not_found() -> FhirError {
    FhirError::not_found("no such export (it may have been cancelled)")
}

impl BulkJobs {
    /// The jobs kept in `dir` (created if needed): finished ones are served again, ones a
    /// restart interrupted are run again by [`Engine::resume_bulk`] (failed when what they
    /// were asked cannot be read back).
    pub fn open(dir: PathBuf) -> std::io::Result<BulkJobs> {
        std::fs::create_dir_all(&dir)?;
        let mut jobs = HashMap::new();
        let mut interrupted = Vec::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let Ok(raw) = std::fs::read(e.path().join("job.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&raw) else {
                continue;
            };
            let state = match v["state"].as_str() {
                Some("done") => State::Done(
                    v["output"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|o| {
                            (
                                o["type"].as_str().unwrap_or_default().to_string(),
                                o["file"].as_str().unwrap_or_default().to_string(),
                                o["count"].as_u64().unwrap_or(0),
                            )
                        })
                        .collect(),
                ),
                Some("failed") => State::Failed {
                    status: v["status"].as_u64().unwrap_or(500) as u16,
                    message: v["message"].as_str().unwrap_or_default().to_string(),
                },
                _ if parse_resume(&v["resume"]).is_some() => State::Running,
                _ => State::Failed {
                    status: 500,
                    message: "the export was interrupted by a restart of the server; kick it \
                              off again"
                        .into(),
                },
            };
            let id = e.file_name().to_string_lossy().to_string();
            if state == State::Running {
                interrupted.push(id.clone());
            }
            let job = Job {
                owner: v["owner"].as_str().unwrap_or_default().to_string(),
                request: v["request"].as_str().unwrap_or_default().to_string(),
                resume: v["resume"].clone(),
                transaction_time: Mutex::new(
                    v["transactionTime"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
                state: Mutex::new(state),
                cancel: AtomicBool::new(false),
                written: AtomicU64::new(0),
            };
            persist(&dir.join(&id), &job);
            jobs.insert(id, Arc::new(job));
        }
        Ok(BulkJobs {
            dir,
            jobs: Mutex::new(jobs),
            interrupted: Mutex::new(interrupted),
        })
    }

    /// The job `id` of `owner` ([`Engine::bulk_owner`]).
    fn get(&self, owner: &str, id: &str) -> Result<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        match jobs.get(id) {
            // A cancelled job that still runs keeps its place (it counts as running until its
            // thread ends) but is gone for its owner.
            Some(j) if j.owner == owner && !j.cancel.load(Ordering::SeqCst) => Ok(j.clone()),
            _ => Err(not_found()),
        }
    }
}

/// Writes what the job was asked and where it stands (`job.json`), replacing the last one.
fn persist(dir: &std::path::Path, job: &Job) {
    let state = job.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let when = job
        .transaction_time
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut v = json!({"owner": job.owner, "request": job.request, "transactionTime": when});
    match state {
        State::Running => {
            v["state"] = json!("running");
            v["resume"] = job.resume.clone();
        }
        State::Done(files) => {
            v["state"] = json!("done");
            v["output"] = files
                .iter()
                .map(|(t, f, n)| json!({"type": t, "file": f, "count": n}))
                .collect();
        }
        State::Failed { status, message } => {
            v["state"] = json!("failed");
            v["status"] = json!(status);
            v["message"] = json!(message);
        }
    }
    let tmp = dir.join("job.json.tmp");
    if std::fs::write(&tmp, v.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("job.json"));
    }
}

/// Who asked (the token's grant, or the principal) and what (the export request and
/// `_elements`), kept in `job.json` while the job runs.
fn resume_of(
    ctx: &AccessContext,
    req: &ExportRequest,
    elements: &[(Option<String>, String)],
) -> Value {
    let principal = match &ctx.principal {
        Principal::Token(g) => json!({"token": {
            "subject": g.subject, "role": g.role.code(), "patient": g.patient,
            "organization": g.organization, "fhirUser": g.fhir_user,
            "scopes": g.scopes.to_string(), "tokenId": g.token_id}}),
        Principal::DevOpen => json!("dev-open"),
        Principal::System { operator } => json!({"system": operator}),
        Principal::Anonymous => json!("anonymous"),
    };
    json!({
        "principal": principal,
        "purpose": format!("{:?}", ctx.purpose),
        "types": req.types, "since": req.since, "persons": req.persons,
        "typeFilters": req.type_filters, "elements": elements,
        "associated": match req.associated {
            Some(Associated::LatestProvenance) => json!("LatestProvenanceResources"),
            Some(Associated::RelevantProvenance) => json!("RelevantProvenanceResources"),
            None => Value::Null,
        },
    })
}

/// [`resume_of`] read back.
type Resume = (AccessContext, ExportRequest, Vec<(Option<String>, String)>);

fn parse_resume(v: &Value) -> Option<Resume> {
    let p = &v["principal"];
    let principal = if let Some(t) = p.get("token") {
        let s = |k: &str| t[k].as_str().map(str::to_string);
        Principal::Token(Box::new(issho_access::Grant {
            subject: s("subject")?,
            role: issho_access::Role::from_code(t["role"].as_str()?)?,
            patient: s("patient"),
            organization: s("organization"),
            fhir_user: s("fhirUser"),
            scopes: issho_access::Scopes::parse(t["scopes"].as_str()?).ok()?,
            token_id: s("tokenId")?,
        }))
    } else if let Some(op) = p["system"].as_str() {
        Principal::System {
            operator: op.to_string(),
        }
    } else {
        match p.as_str()? {
            "dev-open" => Principal::DevOpen,
            "anonymous" => Principal::Anonymous,
            _ => return None,
        }
    };
    let purpose = match v["purpose"].as_str()? {
        "Treatment" => issho_access::Purpose::Treatment,
        "EmergencyTreatment" => issho_access::Purpose::EmergencyTreatment,
        "Operations" => issho_access::Purpose::Operations,
        "Research" => issho_access::Purpose::Research,
        "PatientRequest" => issho_access::Purpose::PatientRequest,
        _ => return None,
    };
    let req = ExportRequest {
        types: serde_json::from_value(v["types"].clone()).ok()?,
        since: serde_json::from_value(v["since"].clone()).ok()?,
        persons: serde_json::from_value(v["persons"].clone()).ok()?,
        type_filters: serde_json::from_value(v["typeFilters"].clone()).ok()?,
        operation: None,
        associated: match v["associated"].as_str() {
            Some("LatestProvenanceResources") => Some(Associated::LatestProvenance),
            Some("RelevantProvenanceResources") => Some(Associated::RelevantProvenance),
            Some(_) => return None,
            None => None,
        },
    };
    let elements = serde_json::from_value(v["elements"].clone()).ok()?;
    Some((AccessContext { principal, purpose }, req, elements))
}

impl Engine {
    /// Who owns a job: the principal and, for a research project's member, the project — a
    /// member's research jobs are not theirs once they leave the project (nor their
    /// identified jobs from before they joined it), and a job a restart interrupted does not
    /// run again for an owner whose project changed.
    fn bulk_owner(&self, ctx: &AccessContext) -> String {
        let who = owner_of(ctx);
        match self.gate.project_of(ctx) {
            Some(p) => format!("{who}@research:{p}"),
            None => who,
        }
    }

    fn bulk(&self) -> Result<&Arc<BulkJobs>> {
        self.bulk.as_ref().ok_or_else(|| {
            FhirError::new(
                501,
                IssueType::NotSupported,
                "$export needs a data directory for its files (issho serve has one)",
            )
        })
    }

    /// Starts an export (`request` is the kick-off URL, for the manifest); returns the job id.
    /// The parameters and the caller's permissions are checked before it starts: a caller
    /// that may read nothing it asks for is refused (403) at once.
    pub fn bulk_kickoff(
        &self,
        ctx: &AccessContext,
        level: BulkLevel,
        params: &[(String, String)],
        request: &str,
    ) -> Result<String> {
        let jobs = self.bulk()?.clone();
        let mut req = request_of(&level, params)?;
        let elements = elements_of(params)?;
        if let BulkLevel::Group(id) = &level {
            req.persons = Some(self.group_persons(ctx, id)?);
        }
        // The same checks the export makes, before anything runs: types, _since, the gate.
        self.export_check(ctx, &req)?;
        let id = crate::new_id();
        let dir = jobs.dir.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| FhirError::internal(format!("bulk: {e}")))?;
        let job = Arc::new(Job {
            owner: self.bulk_owner(ctx),
            request: request.to_string(),
            resume: resume_of(ctx, &req, &elements),
            transaction_time: Mutex::new(issho_model::instant::format_instant(
                issho_store::now_micros(),
            )),
            state: Mutex::new(State::Running),
            cancel: AtomicBool::new(false),
            written: AtomicU64::new(0),
        });
        {
            let mut all = jobs.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let running = all
                .values()
                .filter(|j| *j.state.lock().unwrap_or_else(|e| e.into_inner()) == State::Running)
                .count();
            if running >= RUNNING_AT_MOST {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(FhirError::new(
                    429,
                    IssueType::Throttled,
                    format!("{running} exports are running; try again when one has finished"),
                ));
            }
            all.insert(id.clone(), job.clone());
        }
        persist(&dir, &job);
        let engine = self.clone();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name(format!("bulk-{id}"))
            .spawn(move || engine.bulk_run(&ctx, &req, &elements, &dir, &job))
            .map_err(|e| FhirError::internal(format!("bulk: {e}")))?;
        Ok(id)
    }

    /// The persons of a Group's active Patient members, read as the caller may (a Group the
    /// caller cannot read is not found). Members that are not Patients, and nested Groups,
    /// are not followed.
    pub(crate) fn group_persons(&self, ctx: &AccessContext, id: &str) -> Result<Vec<String>> {
        // A research project's member reads no records, Groups included: the server reads
        // the cohort for it (what it then receives is limited to consenting persons,
        // k-anonymous and de-identified).
        let research = self.gate.project_of(ctx).is_some();
        let reader = if research {
            AccessContext::system("research-cohort")
        } else {
            ctx.clone()
        };
        let ctx = &reader;
        let group = match self.read(ctx, "Group", id) {
            // A member learns nothing of which Groups exist: an unknown one is an empty cohort.
            Err(e) if research && e.status == 404 => return Ok(Vec::new()),
            other => other?,
        };
        let group = group
            .json()
            .ok_or_else(|| FhirError::not_found(format!("Group/{id} is not known")))?;
        let patients: Vec<(String, String)> = group["member"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["inactive"] != true)
            .filter_map(|m| m["entity"]["reference"].as_str())
            .filter_map(|r| r.strip_prefix("Patient/"))
            .map(|p| ("Patient".to_string(), p.to_string()))
            .collect();
        let r = self.snapshot(ctx, issho_access::Action::Read, Some("Patient"))?;
        let mut persons: Vec<String> = r
            .persons_of(&patients)?
            .into_iter()
            .flatten()
            .flatten()
            .filter(|p| p != crate::owner::RESTRICTED)
            .collect();
        persons.sort();
        persons.dedup();
        Ok(persons)
    }

    /// The job's run: the export into one file per type, then the state.
    fn bulk_run(
        &self,
        ctx: &AccessContext,
        req: &ExportRequest,
        elements: &[(Option<String>, String)],
        dir: &std::path::Path,
        job: &Job,
    ) {
        let mut files: Vec<(String, String, u64)> = Vec::new();
        let mut out: Option<(String, std::io::BufWriter<std::fs::File>)> = None;
        let mut sink = |rt: &str, body: &[u8]| -> std::io::Result<()> {
            if job.cancel.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("cancelled"));
            }
            if out.as_ref().is_none_or(|(t, _)| t != rt) {
                if let Some((_, mut w)) = out.take() {
                    w.flush()?;
                }
                let name = format!("{rt}.ndjson");
                // A type met again (Provenance asked for, then associated Provenance) goes on
                // in its file.
                let again = files.iter().position(|(t, _, _)| t == rt);
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(again.is_some())
                    .write(true)
                    .truncate(again.is_none())
                    .open(dir.join(&name))?;
                out = Some((rt.to_string(), std::io::BufWriter::new(f)));
                match again {
                    // The type's count stays last: the one this write adds to.
                    Some(i) => {
                        let entry = files.remove(i);
                        files.push(entry);
                    }
                    None => files.push((rt.to_string(), name, 0)),
                }
            }
            if let Some((_, w)) = out.as_mut() {
                match subset(rt, body, elements) {
                    Some(b) => w.write_all(&b)?,
                    None => w.write_all(body)?,
                }
                w.write_all(b"\n")?;
            }
            if let Some(last) = files.last_mut() {
                last.2 += 1;
            }
            job.written.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        let result = self.export(ctx, req, &mut sink);
        if let Ok(Some(report)) = result.as_ref().map(|s| s.deidentification.as_ref()) {
            let _ = std::fs::write(
                dir.join(DEID_REPORT),
                serde_json::to_vec(report).unwrap_or_default(),
            );
        }
        let flushed = match out.take() {
            Some((_, mut w)) => w.flush(),
            None => Ok(()),
        };
        let state = match (result, flushed) {
            (Ok(_), Ok(())) => State::Done(files),
            (Err(e), _) => State::Failed {
                status: e.status,
                message: e
                    .issues
                    .first()
                    .map(|i| i.diagnostics.clone())
                    .unwrap_or_default(),
            },
            (_, Err(e)) => State::Failed {
                status: 500,
                message: format!("export output: {e}"),
            },
        };
        let mut current = job.state.lock().unwrap_or_else(|e| e.into_inner());
        if job.cancel.load(Ordering::SeqCst) {
            let _ = std::fs::remove_dir_all(dir);
            if let (Some(jobs), Some(id)) = (&self.bulk, dir.file_name()) {
                jobs.jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&*id.to_string_lossy());
            }
            return;
        }
        *current = state;
        drop(current);
        persist(dir, job);
    }

    /// Runs again, from the start and on a new snapshot, the exports a restart interrupted
    /// (their transaction time becomes the new start).
    pub fn resume_bulk(&self) {
        let Some(jobs) = &self.bulk else {
            return;
        };
        let ids: Vec<String> =
            std::mem::take(&mut *jobs.interrupted.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            let Some(job) = jobs
                .jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
            else {
                continue;
            };
            let Some((ctx, req, elements)) = parse_resume(&job.resume) else {
                continue;
            };
            if self.bulk_owner(&ctx) != job.owner {
                // The principal's research project changed meanwhile: not run for it.
                *job.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Failed {
                    status: 403,
                    message: "the research project of the client that asked has changed".into(),
                };
                persist(&jobs.dir.join(&id), &job);
                continue;
            }
            let dir = jobs.dir.join(&id);
            // What the interrupted run wrote goes; the new run writes it again.
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|x| x == "ndjson") {
                    let _ = std::fs::remove_file(f.path());
                }
            }
            *job.transaction_time
                .lock()
                .unwrap_or_else(|e| e.into_inner()) =
                issho_model::instant::format_instant(issho_store::now_micros());
            persist(&dir, &job);
            let engine = self.clone();
            let _ = std::thread::Builder::new()
                .name(format!("bulk-{id}"))
                .spawn(move || engine.bulk_run(&ctx, &req, &elements, &dir, &job));
        }
    }

    /// Where the job `id` stands; `base` makes the files' URLs.
    pub fn bulk_status(&self, ctx: &AccessContext, id: &str, base: &str) -> Result<BulkStatus> {
        let job = self.bulk()?.get(&self.bulk_owner(ctx), id)?;
        let state = job.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match state {
            State::Running => Ok(BulkStatus::Running {
                progress: format!("{} resources written", job.written.load(Ordering::Relaxed)),
            }),
            State::Failed { status, message } => Err(FhirError::new(
                status,
                IssueType::Exception,
                format!("the export failed: {message}"),
            )),
            State::Done(files) => Ok(BulkStatus::Complete(with_report(
                &self.bulk()?.dir.join(id),
                json!({
                    "transactionTime": *job.transaction_time.lock().unwrap_or_else(|e| e.into_inner()),
                    "request": job.request,
                    "requiresAccessToken": true,
                    "output": files.iter().map(|(t, f, n)| json!({
                        "type": t, "url": format!("{base}/$export-file/{id}/{f}"), "count": n
                    })).collect::<Vec<_>>(),
                    "deleted": [],
                    "error": [],
                }),
            ))),
        }
    }

    /// Cancels the job `id` (or forgets a finished one) and removes its files.
    pub fn bulk_cancel(&self, ctx: &AccessContext, id: &str) -> Result<()> {
        let jobs = self.bulk()?;
        let job = jobs.get(&self.bulk_owner(ctx), id)?;
        // Under the state's lock, as the run sets its end state: either the run sees the
        // cancel and removes the job, or the job has ended and is removed here.
        let state = job.state.lock().unwrap_or_else(|e| e.into_inner());
        job.cancel.store(true, Ordering::SeqCst);
        if *state != State::Running {
            jobs.jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            let _ = std::fs::remove_dir_all(jobs.dir.join(id));
        }
        Ok(())
    }

    /// The path of the file `name` of the finished job `id`, for its owner (audited: who
    /// fetched which export file).
    pub fn bulk_file(&self, ctx: &AccessContext, id: &str, name: &str) -> Result<PathBuf> {
        self.audited(
            ctx,
            issho_audit::Interaction::Operation,
            None,
            Some(format!("$export-file/{id}/{name}")),
            || self.bulk_file_unaudited(ctx, id, name),
            |_, _| {},
        )
    }

    fn bulk_file_unaudited(&self, ctx: &AccessContext, id: &str, name: &str) -> Result<PathBuf> {
        let jobs = self.bulk()?;
        let job = jobs.get(&self.bulk_owner(ctx), id)?;
        let state = job.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match state {
            State::Done(files) => {
                let (t, f, _) = files
                    .iter()
                    .find(|(_, f, _)| f == name)
                    .ok_or_else(not_found)?;
                // The token that fetches it may still search that type (a narrower token of
                // the same user may not).
                self.gate
                    .check(ctx, issho_access::Action::Export, Some(t))?;
                Ok(jobs.dir.join(id).join(f))
            }
            _ => Err(not_found()),
        }
    }
}
