//! Helpers shared by the integration tests that read the reference data folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The reference data folder: `ISSHO_SHARED`, or `../shared` beside the repository.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("ISSHO_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    dir.is_dir().then_some(dir)
}

/// Unpack the R4 examples package once into the test scratch directory.
pub fn r4_examples(shared: &Path) -> Option<PathBuf> {
    let tgz = shared.join("fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz");
    if !tgz.is_file() {
        return None;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("r4-examples");
    let pkg = out.join("package");
    if !pkg.join("Patient-example.json").is_file() {
        // Unpack beside the final place and rename, so concurrent tests never see half a tree.
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("r4-examples.partial-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("create scratch dir");
        let status = Command::new("tar")
            .arg("xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&tmp)
            .status()
            .expect("run tar");
        assert!(status.success(), "tar failed on {}", tgz.display());
        if std::fs::rename(&tmp, &out).is_err() {
            // Another test got there first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Some(pkg)
}

pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.starts_with('.') && name != "package.json"
        })
        .collect();
    files.sort();
    files
}
