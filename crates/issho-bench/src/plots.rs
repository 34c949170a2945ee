//! The plots: SVG written by hand (two simple charts need no plotting library).

use crate::measure::Measured;
use crate::search::MIXES;

const COLORS: [&str; 3] = ["#c0392b", "#2471a3", "#7f8c8d"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// Ingest rate over time: resources/s per 5-second window, one line per server.
pub fn ingest_svg(rs: &[Measured]) -> String {
    let (w, h, l, b, t, rgt) = (760.0, 380.0, 70.0, 50.0, 40.0, 20.0);
    let series: Vec<Vec<(f64, f64)>> = rs
        .iter()
        .map(|m| {
            m.ingest
                .samples
                .chunks(5)
                .map(|c| {
                    (
                        c.last().map(|x| x.0).unwrap_or(0.0),
                        c.iter().map(|x| x.1 as f64).sum::<f64>() / c.len() as f64,
                    )
                })
                .collect()
        })
        .collect();
    let xmax = nice(series.iter().flatten().map(|p| p.0).fold(1.0, f64::max));
    let ymax = nice(series.iter().flatten().map(|p| p.1).fold(1.0, f64::max));
    let (pw, ph) = (w - l - rgt, h - t - b);
    let x = |v: f64| l + v / xmax * pw;
    let y = |v: f64| t + ph - v / ymax * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{l}\" y=\"22\" font-size=\"15\">Ingest rate over time (transaction Bundles over HTTP, mean per 5 s)</text>\n"
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>\n",
            l + pw,
            l - 6.0,
            y(v) + 4.0,
            y = y(v)
        ));
        let xv = xmax * i as f64 / 5.0;
        let digits = if xmax < 10.0 { 1 } else { 0 };
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{xv:.digits$}</text>\n",
            x(xv),
            t + ph + 18.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the start of the load</text>\n\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">resources/s</text>\n",
        l + pw / 2.0,
        h - 10.0,
        t + ph / 2.0,
        t + ph / 2.0
    ));
    for (i, (m, pts)) in rs.iter().zip(&series).enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            path.join(" "),
            l + pw - 160.0,
            t + 8.0 + 18.0 * i as f64,
            l + pw - 142.0,
            t + 18.0 + 18.0 * i as f64,
            esc(&m.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// Latency percentiles (p50, p95, p99; log scale) of read by id and each search, per server.
pub fn latency_svg(rs: &[Measured]) -> String {
    let rows = latency_rows(rs);
    let (l, rgt, t) = (300.0, 30.0, 60.0);
    let w = 900.0;
    let band = 12.0 * rs.len() as f64 + 10.0;
    let h = t + band * rows.len() as f64 + 50.0;
    let pw = w - l - rgt;
    let (lo, hi) = (0.01f64, 100_000.0f64); // ms, log scale
    let x = |v: f64| l + (v.clamp(lo, hi).log10() - lo.log10()) / (hi.log10() - lo.log10()) * pw;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">Latency, ms (log scale): bar to p95, tick at p50, whisker to p99</text>\n"
    );
    let mut v = lo;
    while v <= hi * 1.0001 {
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            t - 10.0,
            h - 40.0,
            h - 26.0,
            if v < 1.0 { format!("{v}") } else { format!("{v:.0}") },
            x = x(v)
        ));
        v *= 10.0;
    }
    for (i, m) in rs.iter().enumerate() {
        s.push_str(&format!(
            "<rect x=\"{}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"42\">{}</text>\n",
            l + 160.0 * i as f64,
            COLORS[i % COLORS.len()],
            l + 160.0 * i as f64 + 18.0,
            esc(&m.name)
        ));
    }
    for (r, (name, vals)) in rows.iter().enumerate() {
        let y0 = t + band * r as f64;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            l - 8.0,
            y0 + band / 2.0 + 2.0,
            esc(name)
        ));
        for (i, v) in vals.iter().enumerate() {
            let yy = y0 + 4.0 + 12.0 * i as f64;
            let c = COLORS[i % COLORS.len()];
            match v {
                Some([p50, p95, p99]) => s.push_str(&format!(
                    "<rect x=\"{l}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"9\" fill=\"{c}\" opacity=\"0.75\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n",
                    (x(*p95) - l).max(1.0),
                    x(*p95),
                    x(*p99),
                    yy + 4.5,
                    yy + 4.5,
                    x(*p50),
                    x(*p50),
                    yy + 9.0
                )),
                None => s.push_str(&format!(
                    "<text x=\"{}\" y=\"{:.1}\" fill=\"{c}\">not measured / failed</text>\n",
                    l + 4.0,
                    yy + 9.0
                )),
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The rows of the latency plot: read by id, then each search of the mix; per server its
/// [p50, p95, p99] in ms, or none when not measured or failed.
type LatencyRow = (String, Vec<Option<[f64; 3]>>);

fn latency_rows(rs: &[Measured]) -> Vec<LatencyRow> {
    let mut rows: Vec<LatencyRow> = Vec::new();
    rows.push((
        "read by id".into(),
        rs.iter()
            .map(|m| m.reads.as_ref().map(|x| [x.p50, x.p95, x.p99]))
            .collect(),
    ));
    for (i, mx) in MIXES.iter().enumerate() {
        rows.push((
            mx.name.to_string(),
            rs.iter()
                .map(|m| {
                    m.mix
                        .get(i)
                        .filter(|x| x.error.is_none() && x.reps > 0)
                        .map(|x| [x.p50, x.p95, x.p99])
                })
                .collect(),
        ));
    }
    rows
}
