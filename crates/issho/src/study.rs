//! `issho study drug-lab`: a drug-safety study in the MID-NET style over a running server's
//! SQL on FHIR views (`$viewdefinition-run`), as a research project's member would run it —
//! so over its consenting persons, de-identified. Three views (prescriptions by YJ code, the
//! lab results of one code with their upper limit of normal, Patients with the person's
//! pseudonym, sex and age band) feed `issho_research::study`: new users of the exposure
//! against new users of the comparator, the incidence of a result above a multiple of the
//! upper limit within a window, by sex and age band, and the risk ratio.

use issho_research::study::{Design, LabResult, Prescription, Subject};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct StudyArgs {
    #[command(subcommand)]
    pub cmd: StudyCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum StudyCmd {
    /// New users of a drug against a comparator: a lab result above a multiple of its upper
    /// limit within a window (default: ALT > 3× ULN within 90 days; atorvastatin against
    /// rosuvastatin, the demo population's signal).
    DrugLab(DrugLabArgs),
}

#[derive(clap::Args, Debug)]
pub struct DrugLabArgs {
    /// The server's FHIR base (`http://HOST:PORT/fhir`).
    #[arg(long, env = "ISSHO_SERVER")]
    pub server: String,
    /// A research project member's access token (`issho token --user demo-researcher`).
    #[arg(long, env = "ISSHO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// YJ code of the exposure drug.
    #[arg(long, default_value = "2189015F1082")]
    pub exposure: String,
    /// YJ code of the comparator drug.
    #[arg(long, default_value = "2189017F1022")]
    pub comparator: String,
    /// The lab result's code (JLAC10; default ALT).
    #[arg(long, default_value = "3B045000002327201")]
    pub lab: String,
    /// Days after the first prescription.
    #[arg(long, default_value_t = 90)]
    pub window: i64,
    /// An event is a value above this multiple of the upper limit of normal.
    #[arg(long, default_value_t = 3.0)]
    pub multiple: f64,
    /// Write study.csv and study.svg (the plot) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

const YJ: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";

fn views(lab: &str) -> [Value; 3] {
    let col = |name: &str, path: &str| json!({"name": name, "path": path});
    [
        json!({"resourceType": "ViewDefinition", "name": "prescriptions", "resource": "MedicationRequest",
            "select": [{"column": [
                col("patient", "subject.getReferenceKey(Patient)"),
                col("yj", &format!("medicationCodeableConcept.coding.where(system = '{YJ}').code.first()")),
                col("authored", "authoredOn")]}]}),
        json!({"resourceType": "ViewDefinition", "name": "labs", "resource": "Observation",
            "where": [{"path": format!("code.coding.where(code = '{lab}').exists()")}],
            "select": [{"column": [
                col("patient", "subject.getReferenceKey(Patient)"),
                col("value", "value.ofType(Quantity).value"),
                col("high", "referenceRange.high.value.first()"),
                col("effective", "effective.ofType(dateTime)")]}]}),
        json!({"resourceType": "ViewDefinition", "name": "subjects", "resource": "Patient",
            "select": [{"column": [
                col("patient", "getResourceKey()"),
                col("person", "identifier.value.first()"),
                col("sex", "gender"),
                col("age_low", "extension('https://issho.example/fhir/StructureDefinition/age-band').value.ofType(Range).low.value"),
                col("age_high", "extension('https://issho.example/fhir/StructureDefinition/age-band').value.ofType(Range).high.value")]}]}),
    ]
}

fn run_view(
    a: &DrugLabArgs,
    client: &reqwest::blocking::Client,
    view: &Value,
) -> Result<Vec<Value>, String> {
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": view}, {"name": "_format", "valueCode": "ndjson"}]});
    let mut r = client
        .post(format!(
            "{}/$viewdefinition-run",
            a.server.trim_end_matches('/')
        ))
        .header("content-type", "application/fhir+json")
        .body(body.to_string());
    if let Some(t) = &a.token {
        r = r.bearer_auth(t);
    }
    let r = r.send().map_err(|e| e.to_string())?;
    let status = r.status();
    let text = r.text().map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{} view: {status}: {text}",
            view["name"].as_str().unwrap_or("?")
        ));
    }
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn run(a: StudyArgs) -> i32 {
    let StudyCmd::DrugLab(a) = a.cmd;
    match drug_lab(&a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn drug_lab(a: &DrugLabArgs) -> Result<(), String> {
    if !a.server.starts_with("http://") {
        return Err(format!(
            "--server {}: only http:// servers are reached (https not yet)",
            a.server
        ));
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .map_err(|e| e.to_string())?;
    let [rx, labs, subjects] = views(&a.lab);
    let rx: Vec<Prescription> = run_view(a, &client, &rx)?
        .iter()
        .map(|r| Prescription {
            patient: text(&r["patient"]),
            yj: text(&r["yj"]),
            authored: text(&r["authored"]),
        })
        .collect();
    let labs: Vec<LabResult> = run_view(a, &client, &labs)?
        .iter()
        .filter_map(|r| {
            Some(LabResult {
                patient: text(&r["patient"]),
                value: r["value"].as_f64()?,
                high: r["high"].as_f64()?,
                effective: text(&r["effective"]),
            })
        })
        .collect();
    let subjects: Vec<Subject> = run_view(a, &client, &subjects)?
        .iter()
        .map(|r| Subject {
            patient: text(&r["patient"]),
            // Without a person pseudonym (not a research token) each Patient is a person.
            person: r["person"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| text(&r["patient"])),
            sex: text(&r["sex"]),
            age: match (r["age_low"].as_i64(), r["age_high"].as_i64()) {
                (Some(l), Some(h)) => format!("{l}-{h}"),
                (Some(l), None) => format!("{l}+"),
                _ => "-".into(),
            },
        })
        .collect();
    let design = Design {
        exposure: a.exposure.clone(),
        comparator: a.comparator.clone(),
        window: a.window,
        multiple: a.multiple,
    };
    let f = issho_research::study::run(&design, &rx, &labs, &subjects);
    println!(
        "new users of YJ {} against YJ {}: lab {} above {}× the upper limit within {} days\n({} prescriptions, {} lab results, {} Patients read through $viewdefinition-run)\n",
        a.exposure,
        a.comparator,
        a.lab,
        a.multiple,
        a.window,
        rx.len(),
        labs.len(),
        subjects.len()
    );
    print!("{}", f.table(&design));
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let title = format!(
            "Lab {} > {}× ULN within {} days of the first prescription",
            a.lab, a.multiple, a.window
        );
        for (name, body) in [
            ("study.csv", f.csv(&design)),
            ("study.svg", f.svg(&design, &title)),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        println!(
            "wrote {} and {}",
            dir.join("study.csv").display(),
            dir.join("study.svg").display()
        );
    }
    Ok(())
}
