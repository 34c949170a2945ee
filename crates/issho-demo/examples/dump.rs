//! Print one person Bundle (or the reference Bundle) as pretty JSON.
//!
//! `cargo run -p issho-demo --example dump -- [person-index|ref] [seed]`
use issho_demo::{DemoConfig, person_bundle, reference_bundle};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "0".into());
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = DemoConfig { persons: 1, seed };
    let b = if which == "ref" {
        reference_bundle(&cfg)
    } else {
        person_bundle(&cfg, which.parse().expect("person index"))
    };
    println!("{}", serde_json::to_string_pretty(&b).unwrap());
}
