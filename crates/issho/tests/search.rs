//! Search over HTTP on the generated Japanese population. Every expected answer is computed
//! in this test from the raw JSON of the generated resources, never through the search code.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const PERSONS: usize = 12;

struct World {
    s: Server,
    /// Every resource loaded, by "Type/id".
    all: BTreeMap<String, Value>,
}

fn world() -> World {
    let s = Server::start();
    let cfg = issho_demo::DemoConfig {
        persons: PERSONS,
        seed: 11,
    };
    assert_eq!(
        s.post("", &issho_demo::reference_bundle(&cfg)).status(),
        200
    );
    let mut all = BTreeMap::new();
    for r in issho_demo::reference_resources() {
        all.insert(format!("{}/{}", r.resource_type, r.id), r.resource);
    }
    for i in 0..PERSONS {
        let r = s.post("", &issho_demo::person_bundle(&cfg, i));
        assert_eq!(r.status(), 200);
        for r in issho_demo::person_resources(&cfg, i) {
            all.insert(format!("{}/{}", r.resource_type, r.id), r.resource);
        }
    }
    World { s, all }
}

impl World {
    fn of_type<'a>(&'a self, t: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.all
            .iter()
            .filter(move |(k, _)| k.starts_with(&format!("{t}/")))
    }

    /// Follow `next` links; returns the matches ("Type/id") and the included ones.
    fn search_all(&self, query: &str) -> (Vec<String>, BTreeSet<String>, Option<u64>) {
        let mut url = self.s.url(query);
        let (mut matches, mut included, mut total) = (Vec::new(), BTreeSet::new(), None);
        loop {
            let r = self.s.client.get(&url).send().unwrap();
            assert_eq!(r.status(), 200, "{url}");
            let b = json(r);
            if total.is_none() {
                total = b["total"].as_u64();
            }
            for e in b["entry"].as_array().into_iter().flatten() {
                let key = format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap_or("")
                );
                match e["search"]["mode"].as_str() {
                    Some("match") => matches.push(key),
                    Some("include") => {
                        included.insert(key);
                    }
                    _ => {}
                }
            }
            match b["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
            {
                Some(l) => url = l["url"].as_str().unwrap().to_string(),
                None => break,
            }
        }
        (matches, included, total)
    }
}

fn codings(v: &Value) -> Vec<(String, String)> {
    v["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["system"].as_str().unwrap_or("").to_string(),
                c["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn utc_micros(dt: &str) -> i64 {
    issho_model::instant::parse_range(dt)
        .expect("demo dates are valid")
        .lo
}

fn set(v: &[String]) -> BTreeSet<String> {
    let s: BTreeSet<String> = v.iter().cloned().collect();
    assert_eq!(
        s.len(),
        v.len(),
        "no resource may appear twice across pages"
    );
    s
}

#[test]
fn independent_answers_on_the_generated_population() {
    let w = world();

    // 1. token: every ICD-10 condition code
    let mut by_code: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (k, c) in w.of_type("Condition") {
        for sc in codings(&c["code"]) {
            by_code.entry(sc).or_default().insert(k.clone());
        }
    }
    assert!(by_code.len() >= 3, "the population has several diagnoses");
    for ((sys, code), want) in &by_code {
        let (got, _, total) = w.search_all(&format!(
            "Condition?code={sys}|{code}&_count=7&_total=accurate"
        ));
        assert_eq!(&set(&got), want, "Condition?code={sys}|{code}");
        assert_eq!(total, Some(want.len() as u64));
        let c = json(w.s.get(&format!("Condition?code={sys}|{code}&_summary=count")));
        assert_eq!(c["total"], want.len() as u64, "count of {sys}|{code}");
    }

    // 2. patient + code (+ date), the clinical query
    let obs: Vec<(&String, &Value)> = w.of_type("Observation").collect();
    let mut freq: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (_, o) in &obs {
        let subj = o["subject"]["reference"].as_str().unwrap_or("").to_string();
        for (sys, code) in codings(&o["code"]) {
            *freq.entry((subj.clone(), sys, code)).or_default() += 1;
        }
    }
    let ((subj, sys, code), n) = freq
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| (k.clone(), *n))
        .unwrap();
    assert!(n >= 3);
    let want: BTreeSet<String> = obs
        .iter()
        .filter(|(_, o)| {
            o["subject"]["reference"] == subj.as_str()
                && codings(&o["code"]).contains(&(sys.clone(), code.clone()))
        })
        .map(|(k, _)| (*k).clone())
        .collect();
    let (got, _, _) = w.search_all(&format!(
        "Observation?subject={subj}&code={sys}|{code}&_count=5"
    ));
    assert_eq!(set(&got), want);
    // with a date: the middle of their dates as the boundary
    let mut times: Vec<i64> = want
        .iter()
        .map(|k| utc_micros(w.all[k]["effectiveDateTime"].as_str().unwrap()))
        .collect();
    times.sort();
    let cut = times[times.len() / 2];
    let cut_text = issho_model::instant::format_instant(cut);
    let want_ge: BTreeSet<String> = want
        .iter()
        .filter(|k| utc_micros(w.all[*k]["effectiveDateTime"].as_str().unwrap()) >= cut)
        .cloned()
        .collect();
    let (got, _, _) = w.search_all(&format!(
        "Observation?subject={subj}&code={sys}|{code}&date=ge{}",
        cut_text.replace('+', "%2B")
    ));
    assert_eq!(set(&got), want_ge, "date=ge{cut_text}");
    // sorted newest first
    let (got, _, _) = w.search_all(&format!(
        "Observation?subject={subj}&code={sys}|{code}&_sort=-date&_count=4"
    ));
    let got_times: Vec<i64> = got
        .iter()
        .map(|k| utc_micros(w.all[k]["effectiveDateTime"].as_str().unwrap()))
        .collect();
    let mut sorted = got_times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(got_times, sorted);

    // 3. reverse chaining: patients with a given diagnosis
    let ((dsys, dcode), conds) = by_code.iter().max_by_key(|(_, v)| v.len()).unwrap();
    let want: BTreeSet<String> = conds
        .iter()
        .map(|k| {
            w.all[k]["subject"]["reference"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (got, _, _) = w.search_all(&format!(
        "Patient?_has:Condition:subject:code={dsys}|{dcode}"
    ));
    assert_eq!(set(&got), want);

    // 4. chaining: conditions of patients with a family name (kanji, prefix match)
    let (pkey, p) = w.of_type("Patient").next().unwrap();
    let family = p["name"][0]["family"].as_str().unwrap().to_string();
    let fam_patients: BTreeSet<String> = w
        .of_type("Patient")
        .filter(|(_, p)| {
            p["name"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["family"].as_str().unwrap_or("").starts_with(&family))
        })
        .map(|(k, _)| k.clone())
        .collect();
    assert!(fam_patients.contains(pkey));
    let want: BTreeSet<String> = w
        .of_type("Condition")
        .filter(|(_, c)| fam_patients.contains(c["subject"]["reference"].as_str().unwrap()))
        .map(|(k, _)| k.clone())
        .collect();
    let (got, _, _) = w.search_all(&format!("Condition?subject:Patient.family={family}"));
    assert_eq!(set(&got), want);

    // 5. _include and _revinclude
    let meds: Vec<(&String, &Value)> = w
        .of_type("MedicationRequest")
        .filter(|(_, m)| m["subject"]["reference"] == subj.as_str())
        .collect();
    if !meds.is_empty() {
        let want_inc: BTreeSet<String> = meds
            .iter()
            .filter_map(|(_, m)| m["requester"]["reference"].as_str().map(str::to_string))
            .collect();
        let (got, inc, _) = w.search_all(&format!(
            "MedicationRequest?subject={subj}&_include=MedicationRequest:requester&_count=1000"
        ));
        assert_eq!(got.len(), meds.len());
        assert_eq!(inc, want_inc);
    }
    let pid = subj.trim_start_matches("Patient/");
    let want_rev: BTreeSet<String> = w
        .of_type("Condition")
        .filter(|(_, c)| c["subject"]["reference"] == subj.as_str())
        .map(|(k, _)| k.clone())
        .collect();
    let (got, inc, _) = w.search_all(&format!("Patient?_id={pid}&_revinclude=Condition:subject"));
    assert_eq!(got, vec![subj.clone()]);
    assert_eq!(inc, want_rev);

    // 6. the patient compartment: subject OR performer (patient-generated data) refer to the patient
    let in_comp = |o: &Value| {
        o["subject"]["reference"] == subj.as_str()
            || o["performer"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["reference"] == subj.as_str())
    };
    let want: BTreeSet<String> = obs
        .iter()
        .filter(|(_, o)| in_comp(o))
        .map(|(k, _)| (*k).clone())
        .collect();
    let (got, _, total) = w.search_all(&format!("{subj}/Observation?_count=10"));
    assert_eq!(set(&got), want);
    assert_eq!(total, Some(want.len() as u64));
    let want_code: BTreeSet<String> = want
        .iter()
        .filter(|k| codings(&w.all[*k]["code"]).contains(&(sys.clone(), code.clone())))
        .cloned()
        .collect();
    let (got, _, _) = w.search_all(&format!("{subj}/Observation?code={sys}|{code}"));
    assert_eq!(set(&got), want_code);
    // everything of the patient, and the resources it refers to
    let comp_types = [
        "Observation",
        "Condition",
        "Encounter",
        "MedicationRequest",
        "AllergyIntolerance",
        "Immunization",
        "Coverage",
        "Specimen",
    ];
    let mut want_all: BTreeSet<String> = BTreeSet::new();
    want_all.insert(subj.clone());
    for (k, v) in &w.all {
        let t = k.split('/').next().unwrap();
        if !comp_types.contains(&t) {
            continue;
        }
        // the JSON elements behind the R4 patient-compartment parameters of these types
        let fields = [
            "subject",
            "patient",
            "performer",
            "asserter",
            "recorder",
            "beneficiary",
            "subscriber",
            "policyHolder",
            "payor",
        ];
        let refs_patient = fields.iter().any(|p| {
            let field = &v[*p];
            field["reference"] == subj.as_str()
                || field
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["reference"] == subj.as_str())
        });
        if refs_patient {
            want_all.insert(k.clone());
        }
    }
    let (got, _, _) = w.search_all(&format!("{subj}/$everything?_count=40"));
    let got = set(&got);
    for k in &want_all {
        assert!(got.contains(k), "$everything misses {k}");
    }
    assert!(
        got.iter()
            .any(|k| k.starts_with("Organization/") || k.starts_with("Practitioner/")),
        "referenced resources are included"
    );
    assert!(
        !got.iter().any(|k| k.starts_with("Patient/") && k != &subj),
        "never another patient"
    );
    let (got, _, _) = w.search_all(&format!("{subj}/$everything?_type=Condition"));
    let want_cond: BTreeSet<String> = want_all
        .iter()
        .filter(|k| k.starts_with("Condition/"))
        .cloned()
        .collect();
    assert_eq!(set(&got), want_cond);
    assert_outcome(w.s.get("Patient/nobody/$everything"), 404);
    assert_outcome(w.s.get(&format!("{subj}/Organization")), 400);
    assert_outcome(w.s.get(&format!("{subj}/$everything?start=yesterday")), 400);

    // 7. _summary=count and _total agree with the raw count
    let n_obs = obs.len() as u64;
    assert_eq!(json(w.s.get("Observation?_summary=count"))["total"], n_obs);
    eprintln!(
        "search suite: {} resources, {} diagnosis codes checked",
        w.all.len(),
        by_code.len()
    );
}

#[test]
fn japanese_text_and_malformed_parameters() {
    let s = Server::start();
    let p = json!({"resourceType": "Patient", "name": [
        {"family": "山田", "given": ["太郎"]},
        {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "family": "ヤマダ", "given": ["タロウ"]}]});
    let id = json(s.post("Patient", &p))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let found = |q: &str| {
        json(s.get(q))["entry"]
            .as_array()
            .map(|a| a.iter().any(|e| e["resource"]["id"] == id.as_str()))
            .unwrap_or(false)
    };
    // half-width katakana finds full-width (NFKC), prefix and :contains
    assert!(found("Patient?family=%EF%BE%94%EF%BE%8F%EF%BE%80%EF%BE%9E")); // ﾔﾏﾀﾞ
    assert!(found("Patient?family=山"));
    assert!(found("Patient?name:contains=マダ"));
    assert!(!found("Patient?family:exact=山"));
    assert!(found("Patient?family:exact=山田"));
    // malformed parameters: 400 with an OperationOutcome naming the problem
    for q in [
        "Patient?birthdate=xx2020",
        "Patient?birthdate=2020-13-45",
        "Patient?family:bogus=x",
        "Observation?subject:Patient.nonsense=x",
        "Observation?value-quantity=abc",
        "Patient?_count=-1",
        "Patient?_total=sometimes",
    ] {
        let msg = assert_outcome(s.get(q), 400);
        assert!(!msg.is_empty(), "{q}");
    }
    // unknown parameters: 400 under handling=strict, ignored and reported when lenient
    assert_outcome(
        s.req("GET", "Patient?shoe-size=42")
            .header("prefer", "handling=strict")
            .send()
            .unwrap(),
        400,
    );
    assert_outcome(
        s.req("GET", "Patient?_sort=nonsense")
            .header("prefer", "handling=strict")
            .send()
            .unwrap(),
        400,
    );
    let b = json(s.get("Patient?shoe-size=42"));
    let outcome = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("outcome entry");
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("shoe-size")
    );
    // injection attempts are just values
    for q in [
        "Patient?family=x'%20OR%201=1--",
        "Patient?_id=1;DROP%20TABLE%20resources",
        "Patient?identifier=a|b'%22",
    ] {
        let b = json(s.get(q));
        assert_eq!(b["resourceType"], "Bundle", "{q}");
        assert!(
            b["entry"]
                .as_array()
                .map(|a| a.iter().all(|e| e["search"]["mode"] != "match"))
                .unwrap_or(true),
            "{q}"
        );
    }
    assert!(found("Patient?family=山田"), "still there");
    // the plan switch
    let b = json(s.get("Patient?family=山田&_explain=true"));
    let plan = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("plan");
    assert!(
        plan["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("plan"),
        "{plan}"
    );
}
