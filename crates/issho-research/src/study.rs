//! A drug-safety study in the MID-NET style over the rows of three views of a research
//! export: new users of an exposure drug against new users of a comparator (by YJ code), the
//! incidence of a lab result above a multiple of its upper limit of normal (ALT > 3× ULN) within
//! a window after the first prescription, by sex and age band, and the risk ratio with its 95%
//! confidence interval. Dates are the export's (shifted per person, so intervals within a
//! person hold).

use std::collections::BTreeMap;

/// A prescription row: the Patient's key, the drug's YJ code, the date it was written.
#[derive(Debug, Clone)]
pub struct Prescription {
    pub patient: String,
    pub yj: String,
    pub authored: String,
}

/// A lab result row: the Patient's key, the value, the upper limit of normal, when.
#[derive(Debug, Clone)]
pub struct LabResult {
    pub patient: String,
    pub value: f64,
    pub high: f64,
    pub effective: String,
}

/// A Patient row: its key, the person (the project's pseudonym; Patients of one person share
/// it), sex, age band.
#[derive(Debug, Clone)]
pub struct Subject {
    pub patient: String,
    pub person: String,
    pub sex: String,
    pub age: String,
}

/// The question.
#[derive(Debug, Clone)]
pub struct Design {
    pub exposure: String,
    pub comparator: String,
    /// Days after the first prescription (1..=window) in which an event counts.
    pub window: i64,
    /// An event: a value above this multiple of the upper limit of normal.
    pub multiple: f64,
}

/// One stratum's count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    pub persons: u64,
    pub events: u64,
}

impl Cell {
    pub fn incidence(&self) -> f64 {
        if self.persons == 0 {
            0.0
        } else {
            self.events as f64 / self.persons as f64
        }
    }
}

/// What the study found.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// (drug, sex, age band) → count; drug is `exposure` or `comparator`.
    pub strata: BTreeMap<(String, String, String), Cell>,
    pub exposure: Cell,
    pub comparator: Cell,
    /// Risk ratio exposure/comparator and its 95% interval (Haldane's 0.5 added when a cell
    /// is zero).
    pub risk_ratio: (f64, f64, f64),
    /// Persons who started both drugs (counted with the first).
    pub switched: u64,
}

fn day(s: &str) -> Option<i64> {
    let y = s.get(..4)?.parse().ok()?;
    let m = s.get(5..7)?.parse().ok()?;
    let d = s.get(8..10)?.parse().ok()?;
    Some(issho_model::instant::days_from_civil(y, m, d))
}

/// Run the study over the rows.
pub fn run(
    d: &Design,
    prescriptions: &[Prescription],
    labs: &[LabResult],
    subjects: &[Subject],
) -> Findings {
    let person_of: BTreeMap<&str, &Subject> =
        subjects.iter().map(|s| (s.patient.as_str(), s)).collect();
    // Per person: the first day of each drug.
    let mut first: BTreeMap<&str, (Option<i64>, Option<i64>)> = BTreeMap::new();
    for p in prescriptions {
        let (Some(s), Some(t)) = (person_of.get(p.patient.as_str()), day(&p.authored)) else {
            continue;
        };
        let e = first.entry(s.person.as_str()).or_default();
        let slot = if p.yj == d.exposure {
            &mut e.0
        } else if p.yj == d.comparator {
            &mut e.1
        } else {
            continue;
        };
        *slot = Some(slot.map_or(t, |x: i64| x.min(t)));
    }
    let mut events: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for l in labs {
        let (Some(s), Some(t)) = (person_of.get(l.patient.as_str()), day(&l.effective)) else {
            continue;
        };
        if l.high > 0.0 && l.value > d.multiple * l.high {
            events.entry(s.person.as_str()).or_default().push(t);
        }
    }
    let who: BTreeMap<&str, &Subject> = subjects.iter().map(|s| (s.person.as_str(), s)).collect();
    let mut f = Findings::default();
    for (person, (exp, cmp)) in first {
        let (arm, index) = match (exp, cmp) {
            (Some(a), Some(b)) => {
                f.switched += 1;
                if a <= b {
                    ("exposure", a)
                } else {
                    ("comparator", b)
                }
            }
            (Some(a), None) => ("exposure", a),
            (None, Some(b)) => ("comparator", b),
            (None, None) => continue,
        };
        let hit = events
            .get(person)
            .is_some_and(|ts| ts.iter().any(|t| *t > index && *t - index <= d.window));
        let s = who[person];
        let cell = f
            .strata
            .entry((arm.to_string(), s.sex.clone(), s.age.clone()))
            .or_default();
        cell.persons += 1;
        cell.events += u64::from(hit);
        let total = if arm == "exposure" {
            &mut f.exposure
        } else {
            &mut f.comparator
        };
        total.persons += 1;
        total.events += u64::from(hit);
    }
    f.risk_ratio = risk_ratio(&f.exposure, &f.comparator);
    f
}

fn risk_ratio(e: &Cell, c: &Cell) -> (f64, f64, f64) {
    let zero = e.events == 0 || c.events == 0;
    let k = if zero { 0.5 } else { 0.0 };
    let (a, n1) = (e.events as f64 + k, e.persons as f64 + 2.0 * k);
    let (b, n0) = (c.events as f64 + k, c.persons as f64 + 2.0 * k);
    if n1 == 0.0 || n0 == 0.0 || a == 0.0 || b == 0.0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let rr = (a / n1) / (b / n0);
    let se = (1.0 / a - 1.0 / n1 + 1.0 / b - 1.0 / n0).sqrt();
    (rr, (rr.ln() - 1.96 * se).exp(), (rr.ln() + 1.96 * se).exp())
}

impl Findings {
    /// The strata with their drug's YJ code: (drug, sex, age band, count).
    fn rows<'s>(
        &'s self,
        d: &'s Design,
    ) -> impl Iterator<Item = (&'s str, &'s str, &'s str, &'s Cell)> {
        self.strata.iter().map(move |((arm, sex, age), c)| {
            let drug = if arm == "exposure" {
                &d.exposure
            } else {
                &d.comparator
            };
            (drug.as_str(), sex.as_str(), age.as_str(), c)
        })
    }

    /// The table as text (drug, sex, age band, persons, events, incidence).
    pub fn table(&self, d: &Design) -> String {
        let mut out = format!(
            "{:<11} {:<8} {:<7} {:>8} {:>7} {:>10}\n",
            "drug", "sex", "age", "persons", "events", "incidence"
        );
        for (drug, sex, age, c) in self.rows(d) {
            out.push_str(&format!(
                "{drug:<11} {sex:<8} {age:<7} {:>8} {:>7} {:>9.1}%\n",
                c.persons,
                c.events,
                100.0 * c.incidence()
            ));
        }
        for (drug, c) in [
            (&d.exposure, &self.exposure),
            (&d.comparator, &self.comparator),
        ] {
            out.push_str(&format!(
                "{drug:<11} {:<8} {:<7} {:>8} {:>7} {:>9.1}%\n",
                "all",
                "all",
                c.persons,
                c.events,
                100.0 * c.incidence()
            ));
        }
        let (rr, lo, hi) = self.risk_ratio;
        out.push_str(&format!(
            "risk ratio {} vs {}: {rr:.2} (95% CI {lo:.2}–{hi:.2}); {} persons started both (counted with the first)\n",
            d.exposure, d.comparator, self.switched
        ));
        out
    }

    /// The table as CSV.
    pub fn csv(&self, d: &Design) -> String {
        let mut out = String::from("drug,sex,age_band,persons,events,incidence\n");
        for (drug, sex, age, c) in self.rows(d) {
            out.push_str(&format!(
                "{drug},{sex},{age},{},{},{:.4}\n",
                c.persons,
                c.events,
                c.incidence()
            ));
        }
        out
    }

    /// A bar chart (SVG): the incidence of each drug by age band, both sexes together.
    pub fn svg(&self, d: &Design, title: &str) -> String {
        let mut bands: BTreeMap<&str, [Cell; 2]> = BTreeMap::new();
        for ((arm, _, age), c) in &self.strata {
            let e = bands.entry(age.as_str()).or_default();
            let i = usize::from(arm != "exposure");
            e[i].persons += c.persons;
            e[i].events += c.events;
        }
        let (w, h, left, bottom, top) = (760.0, 380.0, 60.0, 60.0, 50.0);
        let plot_h = h - bottom - top;
        let max = bands
            .values()
            .flat_map(|x| x.iter().map(Cell::incidence))
            .fold(0.05f64, f64::max);
        let group = (w - left - 20.0) / bands.len().max(1) as f64;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{left}\" y=\"24\" font-size=\"15\">{}</text>\n",
            escape(title)
        );
        for k in 0..=4 {
            let v = max * k as f64 / 4.0;
            let y = top + plot_h * (1.0 - v / max);
            s.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>\n",
                w - 20.0,
                left - 6.0,
                y + 4.0,
                100.0 * v
            ));
        }
        let colors = ["#c0392b", "#2e86c1"];
        for (g, (band, cells)) in bands.iter().enumerate() {
            let x0 = left + group * g as f64;
            for (i, c) in cells.iter().enumerate() {
                let bh = plot_h * c.incidence() / max;
                let x = x0 + group * (0.15 + 0.35 * i as f64);
                s.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{}/{}</title></rect>\n",
                    top + plot_h - bh,
                    group * 0.33,
                    colors[i],
                    c.events,
                    c.persons
                ));
            }
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                x0 + group * 0.5,
                top + plot_h + 18.0,
                escape(band)
            ));
        }
        for (i, name) in [&d.exposure, &d.comparator].iter().enumerate() {
            let y = h - 18.0;
            let x = left + 220.0 * i as f64;
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\">{}</text>\n",
                y - 10.0,
                colors[i],
                x + 16.0,
                escape(&format!("YJ {name} (age band on the x axis)"))
            ));
        }
        s.push_str("</svg>\n");
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design() -> Design {
        Design {
            exposure: "E".into(),
            comparator: "C".into(),
            window: 90,
            multiple: 3.0,
        }
    }

    #[test]
    fn events_count_within_the_window_after_the_first_prescription() {
        let subj = |p: &str, person: &str| Subject {
            patient: p.into(),
            person: person.into(),
            sex: "male".into(),
            age: "60-69".into(),
        };
        // x: two Patients of one person; y: comparator; z: both drugs, comparator first.
        let subjects = vec![
            subj("P/x1", "x"),
            subj("P/x2", "x"),
            subj("P/y", "y"),
            subj("P/z", "z"),
        ];
        let rx = |p: &str, yj: &str, at: &str| Prescription {
            patient: p.into(),
            yj: yj.into(),
            authored: at.into(),
        };
        let prescriptions = vec![
            rx("P/x1", "E", "2024-03-01"),
            rx("P/x1", "E", "2024-01-01"),
            rx("P/y", "C", "2024-01-01"),
            rx("P/z", "C", "2024-01-01"),
            rx("P/z", "E", "2024-02-01"),
        ];
        let lab = |p: &str, v: f64, at: &str| LabResult {
            patient: p.into(),
            value: v,
            high: 42.0,
            effective: at.into(),
        };
        let labs = vec![
            // x: at another institution, day 40 after the first prescription: an event.
            lab("P/x2", 200.0, "2024-02-10T09:00:00+09:00"),
            // y: high, but 120 days later: outside the window.
            lab("P/y", 200.0, "2024-04-30"),
            // z: 2.5× only.
            lab("P/z", 105.0, "2024-01-20"),
        ];
        let f = run(&design(), &prescriptions, &labs, &subjects);
        assert_eq!(
            f.exposure,
            Cell {
                persons: 1,
                events: 1
            }
        );
        assert_eq!(
            f.comparator,
            Cell {
                persons: 2,
                events: 0
            }
        );
        assert_eq!(f.switched, 1);
        let (rr, lo, hi) = f.risk_ratio;
        assert!(rr > 1.0 && lo < rr && rr < hi, "{:?}", f.risk_ratio);
        assert!(f.table(&design()).contains("risk ratio E vs C"));
        assert!(f.svg(&design(), "t").starts_with("<svg"));
        assert_eq!(f.csv(&design()).lines().count(), 3);
    }
}
