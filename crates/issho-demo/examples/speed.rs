//! Generation speed: `cargo run --release -p issho-demo --example speed -- [persons] [seed]`.
//!
//! Measures (1) building person Bundles as `serde_json::Value` on one thread, and
//! (2) `write_ndjson` (all cores, serialised to files in a temporary directory).
use issho_demo::{DemoConfig, person_bundle, write_ndjson};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let persons: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = DemoConfig { persons, seed };

    let n1 = (persons / 4).max(1);
    let t = Instant::now();
    let mut resources = 0usize;
    for i in 0..n1 {
        let b = person_bundle(&cfg, i);
        resources += b["entry"].as_array().map_or(0, |e| e.len());
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "person_bundle (1 thread, Value only): {n1} persons, {resources} resources in {s:.2} s = {:.0} persons/s, {:.0} resources/s",
        n1 as f64 / s,
        resources as f64 / s
    );

    let dir = std::env::temp_dir().join(format!("issho-demo-speed-{}", std::process::id()));
    let t = Instant::now();
    let summary = write_ndjson(&cfg, &dir).expect("write ndjson");
    let s = t.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "write_ndjson ({} threads): {} persons, {} resources, {:.1} MB in {s:.2} s = {:.0} persons/s ({:.0} persons/min), {:.0} resources/s",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        summary.persons,
        summary.total(),
        bytes as f64 / 1e6,
        summary.persons as f64 / s,
        summary.persons as f64 / s * 60.0,
        summary.total() as f64 / s
    );
    for (t, n) in &summary.resources {
        println!(
            "  {t:<20} {n:>10}  ({:.1} per person)",
            *n as f64 / summary.persons as f64
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
