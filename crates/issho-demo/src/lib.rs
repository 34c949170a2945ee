//! Deterministic Japanese demo population for issho.
//!
//! Generates realistic-looking (entirely fictional) lifelong records of people living in Japan as
//! FHIR R4 resources following JP Core 1.1.2 profiles and JP-CLINS 1.5.2 terminology: shared
//! reference data ([`reference_bundle`]) and one transaction Bundle per person
//! ([`person_bundle`]), or everything as NDJSON ([`write_ndjson`]) for bulk loading and
//! benchmarks. Nothing reads the wall clock: all dates are relative to
//! [`REFERENCE_DATE`] (2025-04-01), and person `i` of seed `s` depends on `(s, i)` only.
//!
//! # Conventions
//!
//! * **Ids and requests.** Every resource has a deterministic logical id and every Bundle entry
//!   is `PUT Type/id`, so loading twice is idempotent. Reference data: `Organization/demo-org-001`
//!   … (institutions), `Organization/demo-ins-001` … (insurers), `Practitioner/demo-prac-001`,
//!   `PractitionerRole/demo-role-001`; it does not depend on the seed. Person `i`:
//!   `demo-p{i}-{kind}{n}` (`pat`, `cov`, `cond`, `enc`, `obs`, `spc`, `mr`, `alg`, `imm`), e.g.
//!   `Patient/demo-p42-pat1`. Ids do not contain the seed: two seeds describe two alternative
//!   populations over the same ids.
//! * **References.** Inside a Bundle, entries carry `urn:uuid:` fullUrls (a UUID derived from the
//!   seed and `Type/id`) and refer to each other by them; reference data is referred to as
//!   `Organization/demo-org-001` etc. NDJSON uses plain `Type/id` everywhere.
//! * **One Patient per institution.** A person attended 1–4 institutions; each has its own
//!   `Patient` with that institution's patient ID (system
//!   `urn:oid:1.2.392.100495.20.3.51.1` + 10-digit medical institution code), the shared
//!   insurance member ID (`http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID`,
//!   `insurer:symbol:number:branch`), and `Patient.link` (`seealso`) to the person's other
//!   Patients. Clinical resources refer to the Patient of the institution that recorded them;
//!   Coverage, Immunizations and patient-generated data refer to the home institution's Patient.
//! * **Patient-generated data** (home blood pressure, body weight, daily steps, self-measured
//!   blood glucose) carry `meta.tag` `https://example.invalid/issho/fhir/CodeSystem/data-origin|patient-generated`,
//!   `performer` = the Patient, and no encounter.
//! * **Terminology.** Conditions: ICD-10 (`http://hl7.org/fhir/sid/icd-10`) plus the MEDIS
//!   disease management number (`http://medis.or.jp/CodeSystem/master-disease-keyNumber`) where
//!   the code is known from the specifications; labs: JLAC10 (`http://medis.or.jp/CodeSystem/master-JLAC10-17digits`)
//!   and the JP-CLINS core-lab code system, UCUM units, JCCLS reference intervals; drugs: YJ
//!   (`http://capstandard.jp/iyaku.info/CodeSystem/YJ-code`) and HOT9 where known, JAMI usage
//!   codes, MERIT-9 units; allergens: J-FAGY food / non-food / medication (GCM) systems;
//!   vaccines: CVX; vital signs: LOINC (+ JP Core body-measurement codes). Profiles claimed in
//!   `meta.profile` are JP Core 1.1.2 (`http://jpfhir.jp/fhir/core/StructureDefinition/JP_*`).
//! * **Decimals** are written with their clinical precision as exact JSON numbers (creatinine
//!   `0.80`, HbA1c `6.5`), relying on serde_json's `arbitrary_precision`.
//!
//! # Size and speed
//!
//! About 200 resources per person on average (per person: 1.5 Patients, 21 Encounters,
//! 135 Observations, 27 MedicationRequests, 12 Specimens, 4 Immunizations, 3 Conditions; see
//! `examples/speed.rs`); the heaviest elderly multimorbid persons have around 1 300.
//! `cargo run --release -p issho-demo --example speed` reports persons/s and resources/s.

mod codes;
mod date;
mod documents;
mod geo;
mod jsonb;
pub mod names;
mod person;
mod reference;
mod rng;

pub use documents::documents;
use jsonb::obj;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub use codes::{DATA_ORIGIN, PATIENT_GENERATED, PATIENT_ID_OID_PREFIX};

/// The fixed "today" of the demo world.
pub const REFERENCE_DATE: &str = "2025-04-01";

/// Population parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// Number of persons (indices `0..persons`).
    pub persons: usize,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            persons: 100,
            seed: 1,
        }
    }
}

/// What a writer produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub persons: usize,
    /// Resource counts per resource type (reference data included).
    pub resources: BTreeMap<String, usize>,
}

impl Summary {
    pub fn total(&self) -> usize {
        self.resources.values().sum()
    }

    fn add(&mut self, rtype: &str, n: usize) {
        *self.resources.entry(rtype.to_string()).or_default() += n;
    }
}

/// A resource with its type and id, references already in the requested form.
#[derive(Clone, Debug)]
pub struct DemoResource {
    pub resource_type: &'static str,
    pub id: String,
    pub resource: Value,
}

fn transaction(entries: Vec<Value>) -> Value {
    obj! {
    "resourceType" => "Bundle",
    "type" => "transaction",
    "entry" => entries}
}

fn entry(uuid_seed: u64, rtype: &str, id: &str, resource: Value) -> Value {
    let key = format!("{rtype}/{id}");
    obj! {
        "fullUrl" => format!("urn:uuid:{}", rng::uuid_for(uuid_seed, &key)),
        "resource" => resource,
        "request" => obj! {"method" => "PUT", "url" => key}
    }
}

/// Seed of the reference bundle's fullUrl UUIDs (reference data is the same for every population).
const REFERENCE_UUID_SEED: u64 = 0x1550_0000;

/// Shared reference data as one transaction Bundle: 18 hospitals and clinics and 4 pharmacies in
/// 12 prefectures (JP Core medical institution codes), the insurers, and the institutions'
/// Practitioners and PractitionerRoles. `PUT` with deterministic ids; independent of `cfg`.
pub fn reference_bundle(cfg: &DemoConfig) -> Value {
    let _ = cfg;
    let urn = |rtype: &str, id: &str| {
        format!(
            "urn:uuid:{}",
            rng::uuid_for(REFERENCE_UUID_SEED, &format!("{rtype}/{id}"))
        )
    };
    let entries = reference::reference_resources(&urn)
        .into_iter()
        .map(|(t, id, r)| entry(REFERENCE_UUID_SEED, t, &id, r))
        .collect();
    transaction(entries)
}

/// The reference resources with plain `Type/id` references (as in NDJSON).
pub fn reference_resources() -> Vec<DemoResource> {
    let plain = |rtype: &str, id: &str| format!("{rtype}/{id}");
    reference::reference_resources(&plain)
        .into_iter()
        .map(|(t, id, r)| DemoResource {
            resource_type: t,
            id,
            resource: r,
        })
        .collect()
}

/// Person `i` (0-based) as one transaction Bundle: one Patient per attended institution (linked
/// with `seealso`), Coverage, Conditions, Encounters, vital signs, lab results with Specimens,
/// MedicationRequests, AllergyIntolerances, Immunizations and patient-generated Observations.
/// Entries have `urn:uuid:` fullUrls and `PUT Type/id` requests. The same `(cfg.seed, i)` always
/// gives the same Bundle, independent of `cfg.persons` and of other persons.
pub fn person_bundle(cfg: &DemoConfig, i: usize) -> Value {
    let entries = person::generate(cfg.seed, i, person::RefMode::Urn)
        .into_iter()
        .map(|e| entry(cfg.seed, e.rtype, &e.id, e.resource))
        .collect();
    transaction(entries)
}

/// Person `i` as plain resources with `Type/id` references (the NDJSON form).
pub fn person_resources(cfg: &DemoConfig, i: usize) -> Vec<DemoResource> {
    person::generate(cfg.seed, i, person::RefMode::Plain)
        .into_iter()
        .map(|e| DemoResource {
            resource_type: e.rtype,
            id: e.id,
            resource: e.resource,
        })
        .collect()
}

/// Number of worker threads for the writers.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Generate persons `range` in parallel and hand each person's output to `sink` in index order.
fn for_each_person<T: Send>(
    cfg: &DemoConfig,
    make: impl Fn(usize) -> T + Sync,
    mut sink: impl FnMut(usize, T) -> io::Result<()>,
) -> io::Result<()> {
    const BATCH: usize = 64;
    let threads = workers();
    let mut next = 0usize;
    while next < cfg.persons {
        let round_end = (next + BATCH * threads).min(cfg.persons);
        let chunks: Vec<(usize, usize)> = (next..round_end)
            .step_by(BATCH)
            .map(|s| (s, (s + BATCH).min(round_end)))
            .collect();
        let results: Vec<Vec<T>> = if chunks.len() == 1 {
            vec![(chunks[0].0..chunks[0].1).map(&make).collect()]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|&(s, e)| {
                        let make = &make;
                        scope.spawn(move || (s..e).map(make).collect::<Vec<T>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("generator thread panicked"))
                    .collect()
            })
        };
        for ((s, _), batch) in chunks.iter().zip(results) {
            for (k, item) in batch.into_iter().enumerate() {
                sink(s + k, item)?;
            }
        }
        next = round_end;
    }
    Ok(())
}

/// Serialised NDJSON lines of one person, grouped by resource type: (type, lines, bytes).
fn person_ndjson(cfg: &DemoConfig, i: usize) -> Vec<(&'static str, usize, Vec<u8>)> {
    let mut out: Vec<(&'static str, usize, Vec<u8>)> = Vec::new();
    for r in person::generate(cfg.seed, i, person::RefMode::Plain) {
        let slot = match out.iter().position(|(t, _, _)| *t == r.rtype) {
            Some(k) => k,
            None => {
                out.push((r.rtype, 0, Vec::with_capacity(8192)));
                out.len() - 1
            }
        };
        let (_, n, buf) = &mut out[slot];
        serde_json::to_writer(&mut *buf, &r.resource).expect("serialising to memory");
        buf.push(b'\n');
        *n += 1;
    }
    out
}

/// Write reference data and all persons as NDJSON to directory `out` (created if missing): one
/// file per resource type, `<Type>.ndjson`, one resource per line, references as plain
/// `Type/id`. Output is byte-identical for the same config (generation runs on all cores but is
/// written in person order).
pub fn write_ndjson(cfg: &DemoConfig, out: &Path) -> io::Result<Summary> {
    std::fs::create_dir_all(out)?;
    let mut files: BTreeMap<&'static str, BufWriter<std::fs::File>> = BTreeMap::new();
    let mut summary = Summary {
        persons: cfg.persons,
        ..Summary::default()
    };
    let file_for = |files: &mut BTreeMap<&'static str, BufWriter<std::fs::File>>,
                    rtype: &'static str|
     -> io::Result<()> {
        if !files.contains_key(rtype) {
            let f = std::fs::File::create(out.join(format!("{rtype}.ndjson")))?;
            files.insert(rtype, BufWriter::with_capacity(1 << 20, f));
        }
        Ok(())
    };
    for r in reference_resources() {
        file_for(&mut files, r.resource_type)?;
        let w = files.get_mut(r.resource_type).unwrap();
        serde_json::to_writer(&mut *w, &r.resource)?;
        w.write_all(b"\n")?;
        summary.add(r.resource_type, 1);
    }
    for_each_person(
        cfg,
        |i| person_ndjson(cfg, i),
        |_, groups| {
            for (rtype, n, bytes) in groups {
                file_for(&mut files, rtype)?;
                files.get_mut(rtype).unwrap().write_all(&bytes)?;
                summary.add(rtype, n);
            }
            Ok(())
        },
    )?;
    for (_, mut w) in files {
        w.flush()?;
    }
    Ok(summary)
}

/// Write the reference Bundle (`reference.json`) and one transaction Bundle per person
/// (`person-000000.json` …) to directory `out`.
pub fn write_bundles(cfg: &DemoConfig, out: &Path) -> io::Result<Summary> {
    std::fs::create_dir_all(out)?;
    let mut summary = Summary {
        persons: cfg.persons,
        ..Summary::default()
    };
    let count = |summary: &mut Summary, b: &Value| {
        for e in b["entry"].as_array().into_iter().flatten() {
            if let Some(t) = e["resource"]["resourceType"].as_str() {
                summary.add(t, 1);
            }
        }
    };
    let reference = reference_bundle(cfg);
    count(&mut summary, &reference);
    std::fs::write(out.join("reference.json"), serde_json::to_vec(&reference)?)?;
    for_each_person(
        cfg,
        |i| {
            let b = person_bundle(cfg, i);
            let bytes = serde_json::to_vec(&b).expect("serialising to memory");
            (b, bytes)
        },
        |i, (b, bytes)| {
            count(&mut summary, &b);
            std::fs::write(out.join(format!("person-{i:06}.json")), bytes)
        },
    )?;
    Ok(summary)
}
