//! Says, visibly in the test output, whether the conformance suites ran: they need the
//! reference data folder `../shared` (or `ISSHO_SHARED`). Written straight to the process's
//! stderr, which the test harness does not capture.

use crate::common;
use std::io::Write;

#[test]
fn report_which_conformance_suites_ran() {
    let suites = [
        "R4 examples round trip over HTTP (issho, conformance_r4_examples)",
        "all 100 Synthea patients as transactions (issho, conformance_synthea)",
        "validation of the 5,306 R4 examples and 61 JP-CLINS examples (issho-model, examples)",
        "XML round trips (issho-model, xml)",
        "FHIRPath R4 suite (issho-fhirpath, conformance) and search-parameter evaluation",
        "JSON Patch and FHIRPath Patch suites (issho-patch)",
        "search against independently computed answers on Synthea, on the store of the run (issho, store_synthea)",
    ];
    let mut err = std::io::stderr();
    match common::shared_dir() {
        Some(dir) => {
            let _ = writeln!(
                err,
                "\n[issho] reference data at {}: the conformance suites ran:",
                dir.display()
            );
            for s in suites {
                let _ = writeln!(err, "[issho]   ran: {s}");
            }
        }
        None => {
            let _ = writeln!(
                err,
                "\n[issho] ../shared (or ISSHO_SHARED) is ABSENT: these conformance suites were SKIPPED:"
            );
            for s in suites {
                let _ = writeln!(err, "[issho]   skipped: {s}");
            }
        }
    }
}
