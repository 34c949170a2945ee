//! The peer server: Helios `helios-hfs`, installed once with `cargo install` into a cache.

use crate::BenchArgs;
use std::path::PathBuf;
use std::process::Command;

/// The peer: the Rust FHIR server Helios, from crates.io.
const PEER_CRATE: &str = "helios-hfs";
pub const PEER_VERSION: &str = "0.2.7";

/// The peer's binary: given, cached, or installed now into the cache.
pub fn peer_binary(a: &BenchArgs) -> Result<PathBuf, String> {
    if let Some(b) = &a.peer_bin {
        return Ok(b.clone());
    }
    let cache = a.peer_cache.clone().unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .join(".cache/issho-bench")
    });
    let root = cache.join(format!("{PEER_CRATE}-{PEER_VERSION}"));
    let bin = root.join("bin/hfs");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "installing the peer {PEER_CRATE} {PEER_VERSION} into {} (once; about 30 minutes on 2 cores)…",
        root.display()
    );
    let st = Command::new("cargo")
        .args(["install", PEER_CRATE, "--version", PEER_VERSION, "--locked"])
        .args(["--no-default-features", "--features", "R4,sqlite", "--root"])
        .arg(&root)
        .status()
        .map_err(|e| format!("cargo install: {e}"))?;
    if !st.success() || !bin.exists() {
        return Err(format!("cargo install {PEER_CRATE} failed"));
    }
    Ok(bin)
}

pub fn search_params_file(a: &BenchArgs) -> Result<PathBuf, String> {
    if let Some(p) = &a.search_params {
        return Ok(p.clone());
    }
    let shared = std::env::var_os("ISSHO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let p = shared.join("fhir-r4/Bundle-searchParams.json");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "the peer needs the R4 SearchParameter Bundle: {} not found (--search-params)",
            p.display()
        ))
    }
}
