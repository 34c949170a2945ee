//! Charts over time as inline SVG, drawn on the server (no script): one or two series (blood
//! pressure's systolic and diastolic), the reference range as a band, the first and last
//! dates and the value range as labels, and a text alternative listing the values.

use crate::html::esc;

/// One measured value: when (days since 1970-01-01, fractional), the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub day: f64,
    pub value: f64,
}

/// A chart's content.
pub struct Chart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub series: Vec<Vec<Point>>,
    /// Reference range (low, high).
    pub range: Option<(Option<f64>, Option<f64>)>,
    /// The words of the trend: (the last 30 days' mean, the 30 days before).
    pub labels: (&'a str, &'a str),
}

const W: f64 = 320.0;
const H: f64 = 160.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;
const RIGHT: f64 = 8.0;

/// `YYYY-MM-DD` of a day number.
pub fn date_of(day: f64) -> String {
    // Civil from days (Howard Hinnant's algorithm).
    let z = day.floor() as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Japan's offset from UTC, in microseconds: charts are drawn in Japan time.
const JST: i64 = 9 * 3600 * 1_000_000;

/// The day number (in Japan time) of a FHIR date or dateTime: a date is its own day, a time
/// the day it fell on in Japan.
pub fn day_of(s: &str) -> Option<f64> {
    let r = issho_model::instant::parse_range(s)?;
    let lo = if s.len() > 10 { r.lo + JST } else { r.lo };
    Some(lo as f64 / 86_400_000_000.0)
}

fn fmt(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// The chart as a `<figure>` with an SVG and its text alternative.
pub fn svg(c: &Chart<'_>) -> String {
    let all: Vec<Point> = c.series.iter().flatten().copied().collect();
    if all.is_empty() {
        return String::new();
    }
    let (mut lo, mut hi) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.value), b.max(p.value))
    });
    if let Some((l, h)) = c.range {
        lo = lo.min(l.unwrap_or(lo));
        hi = hi.max(h.unwrap_or(hi));
    }
    if hi - lo < 1e-9 {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    let (d0, d1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.day), b.max(p.day))
    });
    let span = (d1 - d0).max(1.0);
    let x = |d: f64| LEFT + (d - d0) / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let mut s = format!(
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
        esc(&format!("{} ({})", c.title, c.unit))
    );
    if let Some((l, h)) = c.range {
        let top = y(h.unwrap_or(hi));
        let bottom = y(l.unwrap_or(lo));
        s.push_str(&format!(
            r#"<rect class="band" x="{LEFT}" y="{top:.1}" width="{:.1}" height="{:.1}"/>"#,
            W - LEFT - RIGHT,
            (bottom - top).max(0.0)
        ));
    }
    s.push_str(&format!(
        r#"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{0}"/><line class="axis" x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}"/>"#,
        H - BOTTOM,
        W - RIGHT
    ));
    s.push_str(&format!(
        r#"<text x="2" y="{:.1}">{}</text><text x="2" y="{:.1}">{}</text>"#,
        TOP + 10.0,
        fmt(hi - pad),
        H - BOTTOM,
        fmt(lo + pad)
    ));
    s.push_str(&format!(
        r#"<text x="{LEFT}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
        H - 4.0,
        date_of(d0),
        W - RIGHT,
        H - 4.0,
        date_of(d1)
    ));
    for (i, series) in c.series.iter().enumerate() {
        let mut pts = series.clone();
        pts.sort_by(|a, b| a.day.total_cmp(&b.day));
        let (line, dot) = if i == 0 {
            ("line", "dot")
        } else {
            ("line2", "dot2")
        };
        let path: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.day), y(p.value)))
            .collect();
        s.push_str(&format!(
            r#"<polyline class="{line}" points="{}"/>"#,
            path.join(" ")
        ));
        for p in &pts {
            s.push_str(&format!(
                r#"<circle class="{dot}" cx="{:.1}" cy="{:.1}" r="2.5"/>"#,
                x(p.day),
                y(p.value)
            ));
        }
    }
    s.push_str("</svg>");
    // The values as text (screen readers; print).
    let mut latest: Vec<Point> = c.series.first().cloned().unwrap_or_default();
    latest.sort_by(|a, b| b.day.total_cmp(&a.day));
    let last = latest
        .first()
        .map(|p| format!("{} {} {}", date_of(p.day), fmt(p.value), c.unit))
        .unwrap_or_default();
    let trend = trend(&latest)
        .map(|(now, before)| match before {
            Some(b) => format!(
                " · {}: {} ({}: {})",
                c.labels.0,
                fmt(now),
                c.labels.1,
                fmt(b)
            ),
            None => format!(" · {}: {}", c.labels.0, fmt(now)),
        })
        .unwrap_or_default();
    format!(
        "<figure><figcaption>{}</figcaption>{s}<p class=\"muted\">{} · n={}{}</p></figure>\n",
        esc(c.title),
        esc(&last),
        all.len(),
        esc(&trend)
    )
}

/// The mean of the 30 days up to the latest value, and of the 30 days before them (when any).
pub fn trend(points: &[Point]) -> Option<(f64, Option<f64>)> {
    let last = points.iter().map(|p| p.day).fold(f64::MIN, f64::max);
    if last == f64::MIN {
        return None;
    }
    let mean = |from: f64, to: f64| {
        let v: Vec<f64> = points
            .iter()
            .filter(|p| p.day > from && p.day <= to)
            .map(|p| p.value)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Some((mean(last - 30.0, last)?, mean(last - 60.0, last - 30.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_charts_hold_every_point() {
        let d = day_of("2026-12-05").unwrap();
        assert_eq!(date_of(d), "2026-12-05");
        assert_eq!(
            date_of(day_of("2026-12-05T08:30:00+09:00").unwrap()),
            "2026-12-05"
        );
        assert_eq!(
            date_of(day_of("2026-12-04T23:30:00Z").unwrap()),
            "2026-12-05"
        );
        assert_eq!(date_of(0.0), "1970-01-01");
        let c = Chart {
            title: "HbA1c <b>",
            unit: "%",
            series: vec![vec![
                Point {
                    day: d - 90.0,
                    value: 6.1,
                },
                Point { day: d, value: 7.2 },
            ]],
            range: Some((Some(4.6), Some(6.2))),
            labels: ("30-day mean", "before"),
        };
        let s = svg(&c);
        assert_eq!(s.matches("<circle").count(), 2);
        assert!(s.contains("class=\"band\""));
        assert!(s.contains("HbA1c &lt;b&gt;"));
        assert!(s.contains("2026-12-05 7.2 %"));
        assert!(s.contains("30-day mean: 7.2"), "{s}");
        let pts = [
            Point {
                day: 100.0,
                value: 60.0,
            },
            Point {
                day: 80.0,
                value: 62.0,
            },
            Point {
                day: 50.0,
                value: 64.0,
            },
            Point {
                day: 40.0,
                value: 66.0,
            },
        ];
        // (70, 100] and (40, 70]: the value of day 40 is older than both.
        assert_eq!(trend(&pts), Some((61.0, Some(64.0))));
    }
}
