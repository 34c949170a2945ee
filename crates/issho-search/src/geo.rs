//! `near` (Location.position): distances on the sphere without trigonometry in SQL.
//!
//! The bundled SQLite has no math functions (`sin`, `cos` are absent unless it is built with
//! `SQLITE_ENABLE_MATH_FUNCTIONS`), and issho registers none. Instead every indexed position
//! also stores its point on the unit sphere, `(x, y, z)`, computed in Rust when it is indexed.
//! A search for the points within distance `d` of `p0`:
//!
//! 1. reads the key range of a latitude band (`lat` is in the primary key) and filters a
//!    longitude range: the bounding box of the spherical cap, which wraps around the
//!    antimeridian and covers every longitude when the cap reaches a pole;
//! 2. keeps the points whose squared chord to `p0` is at most `(2 sin(d / 2R))²`. The chord is
//!    a monotone function of the great-circle distance (`chord² = 4 · hav(d / R)`, the
//!    haversine of the central angle), so this is the exact great-circle test, done with
//!    products and sums that SQLite has.
//!
//! The Earth is the sphere of the IUGG mean radius (6,371,008.8 m); the error against the
//! WGS84 ellipsoid is below 0.5 % of the distance.

/// Mean Earth radius (IUGG), metres.
pub(crate) const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Distance when `near` gives none: the specification leaves it to the server.
pub(crate) const DEFAULT_NEAR_M: f64 = 5_000.0;

/// The point of (latitude, longitude) in degrees on the unit sphere.
pub fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (la, lo) = (lat.to_radians(), lon.to_radians());
    [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]
}

/// Great-circle distance in metres between two positions in degrees (haversine).
#[cfg(test)]
fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A valid position: finite, latitude within ±90°, longitude within ±180°.
pub(crate) fn valid_position(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
}

/// What SQL needs to find the points within `radius_m` of (`lat`, `lon`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cap {
    /// Latitude band, degrees.
    pub lat_lo: f64,
    pub lat_hi: f64,
    /// Longitude ranges (one, or two across the antimeridian); empty = every longitude.
    pub lon: Vec<(f64, f64)>,
    /// The centre on the unit sphere.
    pub centre: [f64; 3],
    /// Largest squared chord (unit sphere) of a point in the cap.
    pub chord2: f64,
}

/// Slack on the squared chord, so that a point exactly at the distance (up to the rounding of
/// its stored coordinates) is inside: relative, and absolute (1e-20 ≈ a chord of 0.6 mm).
const SLACK: f64 = 1e-12;
const SLACK_ABS: f64 = 1e-20;

pub fn cap(lat: f64, lon: f64, radius_m: f64) -> Cap {
    let theta = radius_m / EARTH_RADIUS_M;
    let centre = unit_vector(lat, lon);
    if theta >= std::f64::consts::PI {
        return Cap {
            lat_lo: -90.0,
            lat_hi: 90.0,
            lon: Vec::new(),
            centre,
            chord2: 4.0 + SLACK_ABS,
        };
    }
    let chord2 = (2.0 * (theta / 2.0).sin()).powi(2) * (1.0 + SLACK) + SLACK_ABS;
    let dlat = theta.to_degrees();
    // A hair wider than the cap, against rounding at its edge; the chord test decides.
    let margin = 1e-9;
    let (lat_lo, lat_hi) = (lat - dlat - margin, lat + dlat + margin);
    if lat_lo <= -90.0 || lat_hi >= 90.0 {
        // A pole is in the cap: every longitude.
        return Cap {
            lat_lo: lat_lo.max(-90.0),
            lat_hi: lat_hi.min(90.0),
            lon: Vec::new(),
            centre,
            chord2,
        };
    }
    // The widest longitude difference of the cap (at the latitude where its edge is
    // tangent to a meridian): sin Δλ = sin θ / cos φ, defined as the cap misses the poles.
    let dlon = (theta.sin() / lat.to_radians().cos())
        .min(1.0)
        .asin()
        .to_degrees()
        + margin;
    let (lo, hi) = (lon - dlon, lon + dlon);
    let ranges = if dlon >= 180.0 {
        Vec::new()
    } else if lo < -180.0 {
        vec![(lo + 360.0, 180.0), (-180.0, hi)]
    } else if hi > 180.0 {
        vec![(lo, 180.0), (-180.0, hi - 360.0)]
    } else {
        vec![(lo, hi)]
    };
    Cap {
        lat_lo,
        lat_hi,
        lon: ranges,
        centre,
        chord2,
    }
}

/// Metres in one `unit` of a `near` distance: `km` (the default), `m`, `mi`, or a UCUM length
/// code (`[mi_i]`, `[ft_i]`, `cm`…). `None` for anything else.
pub(crate) fn unit_metres(unit: &str) -> Option<f64> {
    match unit {
        "" | "km" => Some(1_000.0),
        "mi" | "[mi_i]" => Some(1_609.344),
        _ => match crate::values::ucum_canonical(unit) {
            (base, f) if base == "m" => Some(f),
            _ => None,
        },
    }
}

/// Parse one `near` value `latitude|longitude[|distance[|units]]` into (lat, lon, metres).
pub(crate) fn parse_near(v: &str) -> Result<(f64, f64, f64), String> {
    let parts = crate::values::split_escaped(v, '|');
    if parts.len() < 2 || parts.len() > 4 {
        return Err(format!(
            "'{v}' is not latitude|longitude[|distance[|units]]"
        ));
    }
    let number = |what: &str, s: &str| -> Result<f64, String> {
        crate::values::parse_decimal(s.trim())
            .map(|d| d.value)
            .ok_or_else(|| format!("{what} '{s}' is not a number in '{v}'"))
    };
    let lat = number("latitude", &parts[0])?;
    let lon = number("longitude", &parts[1])?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!("latitude {lat} is outside -90..90 in '{v}'"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} is outside -180..180 in '{v}'"));
    }
    let unit = parts.get(3).map(|u| u.trim()).unwrap_or("");
    let per_unit = unit_metres(unit).ok_or_else(|| {
        format!("unknown distance units '{unit}' in '{v}' (use km, m, mi or a UCUM length code)")
    })?;
    let distance = match parts.get(2).map(|d| d.trim()).filter(|d| !d.is_empty()) {
        None => DEFAULT_NEAR_M,
        Some(d) => {
            let n = number("distance", d)?;
            if n < 0.0 {
                return Err(format!("distance {d} is negative in '{v}'"));
            }
            n * per_unit
        }
    };
    Ok((lat, lon, distance))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chord2(a: [f64; 3], b: [f64; 3]) -> f64 {
        (0..3).map(|i| (a[i] - b[i]).powi(2)).sum()
    }

    /// Whether the SQL conditions built from `cap` hold for a point.
    fn in_cap(c: &Cap, lat: f64, lon: f64) -> bool {
        let band = lat >= c.lat_lo && lat <= c.lat_hi;
        let lon_ok = c.lon.is_empty() || c.lon.iter().any(|(lo, hi)| lon >= *lo && lon <= *hi);
        band && lon_ok && chord2(unit_vector(lat, lon), c.centre) <= c.chord2
    }

    #[test]
    fn known_distances() {
        // Tokyo Station – Osaka Station: about 403 km.
        let d = distance_m(35.681236, 139.767125, 34.702485, 135.495951);
        assert!((d - 403_000.0).abs() < 2_000.0, "{d}");
        // A degree of latitude: R·π/180.
        let d = distance_m(10.0, 20.0, 11.0, 20.0);
        assert!((d - EARTH_RADIUS_M.to_radians()).abs() < 1e-6, "{d}");
        assert_eq!(distance_m(1.0, 2.0, 1.0, 2.0), 0.0);
        // Across the antimeridian.
        let d = distance_m(0.0, 179.9, 0.0, -179.9);
        assert!((d - 0.2 * EARTH_RADIUS_M.to_radians()).abs() < 1e-3, "{d}");
    }

    /// The bounding box never loses a point that the exact distance keeps, and the chord test
    /// agrees with the haversine distance, on a grid around several centres.
    #[test]
    fn cap_agrees_with_haversine() {
        let centres = [
            (35.68, 139.77, 10_000.0),
            (0.0, 179.95, 20_000.0),
            (0.0, -179.99, 5_000.0),
            (89.9, 0.0, 50_000.0),
            (-89.95, 45.0, 10_000.0),
            (60.0, 10.0, 300_000.0),
            (-33.9, 151.2, 1.0),
            (10.0, 10.0, 0.0),
            (0.0, 0.0, 30_000_000.0),
        ];
        for (lat0, lon0, r) in centres {
            let c = cap(lat0, lon0, r);
            let step = (r / EARTH_RADIUS_M).to_degrees().max(1e-5) / 7.0;
            for i in -20..=20 {
                for j in -60..=60 {
                    let lat = lat0 + i as f64 * step;
                    let mut lon = lon0 + j as f64 * step * 3.0;
                    if lon > 180.0 {
                        lon -= 360.0;
                    }
                    if lon < -180.0 {
                        lon += 360.0;
                    }
                    if !valid_position(lat, lon) {
                        continue;
                    }
                    let d = distance_m(lat0, lon0, lat, lon);
                    let got = in_cap(&c, lat, lon);
                    // Away from the edge (1 mm or 1e-9 relative), both must agree.
                    let edge = (d - r).abs() <= 1e-3_f64.max(r * 1e-9);
                    if !edge {
                        assert_eq!(got, d < r, "centre {lat0},{lon0} r {r}: {lat},{lon} at {d}");
                    }
                }
            }
            assert!(in_cap(&c, lat0, lon0), "the centre is near itself");
        }
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse_near("35.5|139.7").unwrap(),
            (35.5, 139.7, DEFAULT_NEAR_M)
        );
        assert_eq!(parse_near("35.5|139.7|2").unwrap(), (35.5, 139.7, 2_000.0));
        assert_eq!(parse_near("35.5|139.7|2|km").unwrap().2, 2_000.0);
        assert_eq!(parse_near("35.5|139.7|250|m").unwrap().2, 250.0);
        assert_eq!(parse_near("35.5|139.7|1|mi").unwrap().2, 1_609.344);
        assert_eq!(parse_near("35.5|139.7|1|[mi_i]").unwrap().2, 1_609.344);
        assert!((parse_near("35.5|139.7|100|[ft_i]").unwrap().2 - 30.48).abs() < 1e-9);
        assert_eq!(parse_near("-90|180|0").unwrap(), (-90.0, 180.0, 0.0));
        assert_eq!(parse_near("35.5|139.7||m").unwrap().2, DEFAULT_NEAR_M);
        for bad in [
            "35.5",
            "abc|139.7|1",
            "35.5|east|1",
            "91|0|1",
            "-90.5|0|1",
            "0|180.1|1",
            "0|0|-1",
            "0|0|x",
            "0|0|1|parsec",
            "0|0|1|kg",
            "0|0|1|km|extra",
            "NaN|0",
            "1e999|0",
            "|",
        ] {
            assert!(parse_near(bad).is_err(), "{bad}");
        }
    }
}
