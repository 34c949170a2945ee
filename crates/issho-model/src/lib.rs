//! FHIR R4 (4.0.1) model for issho.
//!
//! Resources are kept as JSON trees (`serde_json::Value`, with exact decimals and element order
//! preserved). This crate describes them: the generated tables in `data/r4.json` (made by
//! `tools/gen_r4_tables.py` from the CC0 specification) give every type's elements, their
//! cardinality, types, required bindings and summary flags, the search parameters and the patient
//! compartment. On top of the tables sit validation ([`validate`]) and the OperationOutcome
//! vocabulary ([`Issue`]) every other crate uses to report problems.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of HTTP or storage.

pub mod base64;
pub mod decimal;
pub mod instant;
mod outcome;
mod tables;
pub mod validate;
pub mod xml;

pub use outcome::{Issue, IssueType, Severity, operation_outcome};
pub use tables::{
    Child, ElementDef, ElementType, ISSHO_TYPES, Invariant, R4, SearchParamDef, TypeDef, TypeKind,
    r4,
};
