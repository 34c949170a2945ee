//! Search over HTTP on the generated Japanese population. Every expected answer is computed
//! in this test from the raw JSON of the generated resources, never through the search code.

use crate::common::*;
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

    // 8. a token without a system next to a selective condition (the engine resolves its
    //    systems so that it is checked per candidate): same answers, sorted, and no
    //    materialised set of every row of the code in the plan
    let patients: Vec<String> = w
        .of_type("Patient")
        .map(|(k, _)| k.clone())
        .take(4)
        .collect();
    for p in &patients {
        let mut want: Vec<(String, String)> = w
            .of_type("Observation")
            .filter(|(_, o)| o["subject"]["reference"] == p.as_str())
            .filter(|(_, o)| {
                o["category"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| codings(c).iter().any(|(_, code)| code == "laboratory"))
            })
            .map(|(k, o)| {
                let d = o["effectiveDateTime"]
                    .as_str()
                    .or(o["effectivePeriod"]["start"].as_str())
                    .unwrap_or("")
                    .to_string();
                (d, k.clone())
            })
            .collect();
        want.sort();
        let q = format!("Observation?subject={p}&category=laboratory&_sort=date&_count=7");
        let (got, _, _) = w.search_all(&q);
        assert_eq!(
            set(&got),
            want.iter().map(|(_, k)| k.clone()).collect(),
            "{q}"
        );
        let got_dates: Vec<String> = got
            .iter()
            .map(|k| {
                let o = &w.all[k];
                o["effectiveDateTime"]
                    .as_str()
                    .or(o["effectivePeriod"]["start"].as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let mut sorted = got_dates.clone();
        sorted.sort();
        assert_eq!(got_dates, sorted, "{q}: ascending by date");
        let plan = json(w.s.get(&format!("{q}&_explain=true")));
        let text = plan["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["resource"]["issue"][0]["diagnostics"].as_str())
            .collect::<String>();
        assert!(text.contains("SQL:"), "{plan}");
        assert!(
            !text.contains("IN (SELECT v2.rid FROM sp_token v2 WHERE v2.param = (SELECT id FROM sp_param WHERE key = ?) AND v2.code = ?)"),
            "the category rows are materialised: {text}"
        );
    }
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

/// The text of a narrative `div` as this test reads it: every tag removed.
fn narrative_text(r: &Value) -> String {
    let div = r["text"]["div"].as_str().unwrap_or("");
    let mut out = String::new();
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Every string of a resource that is its "content" for this test: not the narrative, ids,
/// meta, references or code systems.
fn content_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if !matches!(
                    k.as_str(),
                    "text" | "id" | "meta" | "resourceType" | "reference" | "system" | "url"
                ) || (k == "text" && x.is_string())
                {
                    content_strings(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| content_strings(x, out)),
        Value::String(s) => out.push(s.clone()),
        _ => {}
    }
}

/// Whether one search term occurs in `texts`: an ASCII term as a whole word (any case), a
/// Japanese one as a substring.
fn term_in(texts: &[String], term: &str) -> bool {
    if term.is_ascii() {
        let t = term.to_ascii_lowercase();
        texts.iter().any(|s| {
            s.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == t)
        })
    } else {
        texts.iter().any(|s| s.contains(term))
    }
}

/// A `_text`/`_content` value: commas separate alternatives, spaces terms that must all occur.
fn text_matches(texts: &[String], value: &str) -> bool {
    value.split(',').any(|alt| {
        alt.split(' ')
            .filter(|t| !t.is_empty())
            .all(|t| term_in(texts, t))
    })
}

/// Great-circle distance in km on the mean Earth sphere (spherical law of cosines).
fn km_between(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dl = (b.1 - a.1).to_radians();
    let c = p1.sin() * p2.sin() + p1.cos() * p2.cos() * dl.cos();
    6371.0088 * c.clamp(-1.0, 1.0).acos()
}

fn div(html: &str) -> Value {
    json!({"status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{html}</div>")})
}

#[test]
fn full_text_and_near() {
    let s = Server::start();
    let create = |r: Value| -> Value {
        let t = r["resourceType"].as_str().unwrap().to_string();
        let resp = s.post(&t, &r);
        assert_eq!(resp.status(), 201, "{r}");
        json(resp)
    };
    let ids_of = |q: &str| -> BTreeSet<String> {
        let r = s.get(q);
        assert_eq!(r.status(), 200, "{q}");
        json(r)["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] == "match")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };

    let patients: Vec<String> = [("山田", "太郎"), ("Smith", "John"), ("佐藤", "花子")]
        .iter()
        .map(|(f, g)| {
            create(json!({"resourceType": "Patient", "name": [{"family": f, "given": [g]}]}))["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let icd = "http://hl7.org/fhir/sid/icd-10";
    let conditions = [
        (
            Some("<p>本態性<b>高血圧</b>症と診断。減塩を指導。</p>"),
            "I10",
            "本態性高血圧症",
            0,
        ),
        (
            Some("<p>2型糖尿病。HbA1c 7.8%。</p>"),
            "E11",
            "2型糖尿病",
            0,
        ),
        (
            Some("<p>Type 2 diabetes mellitus, on metformin.</p>"),
            "E11",
            "Type 2 diabetes mellitus",
            1,
        ),
        (
            Some("<p>Essential hypertension.</p><p>Low-salt diet.</p>"),
            "I10",
            "Essential (primary) hypertension",
            1,
        ),
        (Some("<p>高血圧の家族歴あり。</p>"), "Z82", "家族歴", 2),
        (None, "E112", "糖尿病性腎症", 2),
    ];
    let mut conds: BTreeMap<String, Value> = BTreeMap::new();
    for (narr, code, display, p) in conditions {
        let mut r = json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": icd, "code": code, "display": display}]},
            "subject": {"reference": format!("Patient/{}", patients[p])}});
        if let Some(n) = narr {
            r["text"] = div(n);
        }
        let stored = create(r);
        conds.insert(stored["id"].as_str().unwrap().to_string(), stored);
    }
    let want = |field: &str, value: &str, subject: Option<&str>| -> BTreeSet<String> {
        conds
            .iter()
            .filter(|(_, c)| subject.is_none_or(|p| c["subject"]["reference"] == p))
            .filter(|(_, c)| {
                let texts = if field == "_text" {
                    vec![narrative_text(c)]
                } else {
                    let mut v = Vec::new();
                    content_strings(c, &mut v);
                    v
                };
                text_matches(&texts, value)
            })
            .map(|(k, _)| k.clone())
            .collect()
    };
    let mut checked = 0;
    for field in ["_text", "_content"] {
        for value in [
            "高血圧",
            "糖尿病",
            "diabetes",
            "HYPERTENSION",
            "減塩",
            "家族歴",
            "腎症",
            "metformin",
            "血圧 診断",
            "diabetes mellitus",
            "高血圧,metformin",
            "salt",
            "active",
            "7",
        ] {
            let got = ids_of(&format!("Condition?{field}={}", value.replace(' ', "%20")));
            let expected = want(field, value, None);
            assert_eq!(got, expected, "Condition?{field}={value}");
            checked += usize::from(!expected.is_empty());
            // Combined with a reference (another driver) for each patient.
            for p in &patients {
                let subject = format!("Patient/{p}");
                let got = ids_of(&format!(
                    "Condition?subject={subject}&{field}={}",
                    value.replace(' ', "%20")
                ));
                assert_eq!(
                    got,
                    want(field, value, Some(&subject)),
                    "{subject} {field}={value}"
                );
            }
        }
    }
    assert!(checked >= 15, "most searches find something ({checked})");
    // Half-width kana and full-width Latin are the same text.
    assert_eq!(
        ids_of("Patient?_content=%EF%BE%94%EF%BE%8F%EF%BE%80%EF%BE%9E"),
        BTreeSet::new()
    ); // ﾔﾏﾀﾞ: not in the data
    assert_eq!(
        ids_of("Patient?_content=ＳＭＩＴＨ"),
        BTreeSet::from([patients[1].clone()])
    );
    assert_eq!(
        ids_of("Patient?_content=山田"),
        BTreeSet::from([patients[0].clone()])
    );
    // The answer of a count agrees.
    let n = want("_content", "高血圧", None).len() as u64;
    assert_eq!(
        json(s.get("Condition?_content=高血圧&_summary=count"))["total"],
        n
    );

    // Update: the old narrative and display are no longer found, the new ones are.
    let (cid, old) = conds
        .iter()
        .find(|(_, c)| c["code"]["coding"][0]["display"] == "2型糖尿病")
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let mut new = old.clone();
    new["text"] = div("<p>慢性腎臓病ステージ3。</p>");
    new["code"]["coding"][0] = json!({"system": icd, "code": "N18", "display": "慢性腎臓病"});
    assert_eq!(s.put(&format!("Condition/{cid}"), &new).status(), 200);
    assert!(!ids_of("Condition?_text=HbA1c").contains(&cid));
    assert!(!ids_of("Condition?_content=2型糖尿病").contains(&cid));
    assert!(ids_of("Condition?_text=腎臓病").contains(&cid));
    assert!(ids_of("Condition?_content=慢性腎臓病").contains(&cid));
    // Delete: gone from both.
    assert_eq!(
        s.req("DELETE", &format!("Condition/{cid}"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert!(!ids_of("Condition?_text=腎臓病").contains(&cid));
    assert!(!ids_of("Condition?_content=慢性腎臓病").contains(&cid));

    // near: Locations at Japanese cities.
    let cities = [
        ("東京駅前クリニック", 35.681236, 139.767125, "active"),
        ("新宿クリニック", 35.690921, 139.700258, "active"),
        ("横浜病院", 35.465798, 139.622314, "inactive"),
        ("大宮病院", 35.906439, 139.623924, "active"),
        ("名古屋病院", 35.170694, 136.881637, "active"),
        ("大阪病院", 34.702485, 135.495951, "active"),
        ("札幌病院", 43.068661, 141.350755, "active"),
        ("那覇クリニック", 26.2125, 127.6811, "inactive"),
    ];
    let mut locs: BTreeMap<String, (f64, f64, &str, &str)> = BTreeMap::new();
    for (name, lat, lon, status) in cities {
        let r = create(
            json!({"resourceType": "Location", "name": name, "status": status,
            "position": {"latitude": lat, "longitude": lon}}),
        );
        locs.insert(
            r["id"].as_str().unwrap().to_string(),
            (lat, lon, status, name),
        );
    }
    create(json!({"resourceType": "Location", "name": "位置不明の病院"}));
    let tokyo = (35.681236, 139.767125);
    let within = |centre: (f64, f64), km: f64| -> BTreeSet<String> {
        locs.iter()
            .filter(|(_, (lat, lon, _, _))| {
                let d = km_between(centre, (*lat, *lon));
                assert!(
                    (d - km).abs() > km * 0.01,
                    "{d} km is too close to the radius {km}"
                );
                d <= km
            })
            .map(|(k, _)| k.clone())
            .collect()
    };
    for (q, km) in [
        ("1", 1.0),
        ("10|km", 10.0),
        ("30", 30.0),
        ("20000|m", 20.0),
        ("300|km", 300.0),
        ("200|mi", 200.0 * 1.609344),
        ("200|%5Bmi_i%5D", 200.0 * 1.609344),
        ("1000|km", 1000.0),
        ("2000|km", 2000.0),
    ] {
        let got = ids_of(&format!("Location?near={}|{}|{q}", tokyo.0, tokyo.1));
        assert_eq!(got, within(tokyo, km), "near Tokyo {q}");
    }
    // No distance: the server's default (a few km) finds the place itself only.
    assert_eq!(
        ids_of(&format!("Location?near={}|{}", tokyo.0, tokyo.1)),
        within(tokyo, 2.0)
    );
    // Two centres (OR), and combined with other parameters.
    let osaka = (34.702485, 135.495951);
    let sapporo = (43.068661, 141.350755);
    let want_or: BTreeSet<String> = within(osaka, 50.0)
        .union(&within(sapporo, 50.0))
        .cloned()
        .collect();
    assert_eq!(
        ids_of(&format!(
            "Location?near={}|{}|50|km,{}|{}|50|km",
            osaka.0, osaka.1, sapporo.0, sapporo.1
        )),
        want_or
    );
    let active_near: BTreeSet<String> = within(tokyo, 30.0)
        .into_iter()
        .filter(|k| locs[k].2 == "active")
        .collect();
    assert_eq!(
        ids_of(&format!(
            "Location?near={}|{}|30|km&status=active",
            tokyo.0, tokyo.1
        )),
        active_near
    );
    let hospitals_near: BTreeSet<String> = within(tokyo, 500.0)
        .into_iter()
        .filter(|k| locs[k].3.contains("病院"))
        .collect();
    assert_eq!(
        ids_of(&format!(
            "Location?near={}|{}|500|km&_content=病院",
            tokyo.0, tokyo.1
        )),
        hospitals_near
    );
    // Moving and deleting a location.
    let (yid, _) = locs.iter().find(|(_, v)| v.3 == "横浜病院").unwrap();
    let moved = json!({"resourceType": "Location", "id": yid, "name": "横浜病院", "status": "inactive",
        "position": {"latitude": 35.6895, "longitude": 139.6917}});
    assert_eq!(s.put(&format!("Location/{yid}"), &moved).status(), 200);
    let near_tokyo = ids_of(&format!("Location?near={}|{}|10|km", tokyo.0, tokyo.1));
    assert!(near_tokyo.contains(yid), "moved within 10 km");
    assert!(!ids_of("Location?near=35.465798|139.622314|5|km").contains(yid));
    assert_eq!(
        s.req("DELETE", &format!("Location/{yid}"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert!(!ids_of(&format!("Location?near={}|{}|10|km", tokyo.0, tokyo.1)).contains(yid));

    // Malformed values: 400 with an OperationOutcome.
    for q in [
        "Location?near=abc|139.7|10",
        "Location?near=91|139.7|10",
        "Location?near=35.6|181|10",
        "Location?near=35.6|139.7|-5|km",
        "Location?near=35.6|139.7|5|parsec",
        "Location?near=35.6",
        "Location?near:missing=true",
        "Condition?_text:exact=x",
        "Condition?_content=%22*",
    ] {
        let msg = assert_outcome(s.get(q), 400);
        assert!(!msg.is_empty(), "{q}");
    }
    // FTS5 syntax in a value is just text.
    for q in [
        "Condition?_content=%22%20OR%20%22",
        "Condition?_content=NEAR(a%20b)",
        "Condition?_text=*%20-x%20content:y",
    ] {
        assert_eq!(s.get(q).status(), 200, "{q}");
    }
    // The CapabilityStatement lists them.
    let cap = json(s.get("metadata"));
    let params = |t: &str| -> Vec<String> {
        cap["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == t)
            .unwrap()["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    for p in ["_text", "_content"] {
        assert!(params("Condition").contains(&p.to_string()), "{p}");
    }
    assert!(params("Location").contains(&"near".to_string()));
}

/// Reference of a resource's element as "Type/id".
fn reference(v: &Value) -> String {
    v["reference"].as_str().unwrap_or("").to_string()
}

#[test]
fn shared_and_personal_resources_meet() {
    // Organizations are shared resources (PostgreSQL keeps them in tables of their own, copied
    // to every node of a distributed database); encounters are in persons' records. Every
    // search between the two kinds answers as the raw JSON says.
    let w = world();
    let encounters: Vec<(&String, &Value)> = w.of_type("Encounter").collect();
    let (org_key, org) = w
        .of_type("Organization")
        .max_by_key(|(k, _)| {
            encounters
                .iter()
                .filter(|(_, e)| reference(&e["serviceProvider"]) == **k)
                .count()
        })
        .unwrap();
    let org_id = org_key.trim_start_matches("Organization/");
    let name = org["name"].as_str().unwrap();
    let same_name: BTreeSet<String> = w
        .of_type("Organization")
        .filter(|(_, o)| o["name"] == name)
        .map(|(k, _)| k.clone())
        .collect();
    let served = |orgs: &BTreeSet<String>| -> BTreeSet<String> {
        encounters
            .iter()
            .filter(|(_, e)| orgs.contains(&reference(&e["serviceProvider"])))
            .map(|(k, _)| (*k).clone())
            .collect()
    };
    let want = served(&same_name);
    assert!(!want.is_empty());
    // A chain from a person's resource to a shared one.
    let (got, _, _) = w.search_all(&format!(
        "Encounter?service-provider:Organization.name:exact={name}&_count=50"
    ));
    assert_eq!(set(&got), want, "chain to Organization.name {name}");
    // `_has` from persons' resources to a shared one.
    let subject = reference(&encounters[0].1["subject"]);
    let want_orgs: BTreeSet<String> = encounters
        .iter()
        .filter(|(_, e)| reference(&e["subject"]) == subject)
        .map(|(_, e)| reference(&e["serviceProvider"]))
        .filter(|r| !r.is_empty())
        .collect();
    let (got, _, _) = w.search_all(&format!(
        "Organization?_has:Encounter:service-provider:subject={subject}"
    ));
    assert_eq!(set(&got), want_orgs, "_has:Encounter from {subject}");
    // `_include` of the shared resources a person's encounters name.
    let (_, included, _) = w.search_all(&format!(
        "Encounter?subject={subject}&_include=Encounter:service-provider&_count=3"
    ));
    assert_eq!(included, want_orgs, "_include=Encounter:service-provider");
    // `_revinclude` of persons' resources naming a shared one.
    let (got, included, _) = w.search_all(&format!(
        "Organization?_id={org_id}&_revinclude=Encounter:service-provider"
    ));
    assert_eq!(got, std::slice::from_ref(org_key));
    assert_eq!(
        included,
        served(&BTreeSet::from([org_key.clone()])),
        "_revinclude"
    );
    // A search across types of both kinds, sorted and paged as one list.
    let mut want: Vec<String> = w
        .of_type("Organization")
        .chain(w.of_type("Patient"))
        .map(|(k, _)| k.clone())
        .collect();
    want.sort_by_key(|k| std::cmp::Reverse(k.split_once('/').unwrap().1.to_string()));
    let (got, _, total) =
        w.search_all("?_type=Organization,Patient&_sort=-_id&_count=7&_total=accurate");
    assert_eq!(got, want, "across types, by id descending");
    assert_eq!(total, Some(want.len() as u64));
}
