//! FHIR R4 search for issho, independent of any database.
//!
//! - [`Registry`]: every R4 SearchParameter, by (resource type, code), with its expression
//!   compiled to a direct path walker over the JSON tree (no FHIRPath engine involved).
//! - [`extract`] / [`Prepared`]: the index rows of a resource (tokens, strings, references,
//!   dates, numbers, quantities, URIs, positions, full-text tokens), the same for every store.
//! - [`parse`]: a search request (name/value pairs) to a [`SearchQuery`]: a tree of tests the
//!   store compiles to its own query language (issho-store's `sqlite` and `postgres` modules).
//! - [`fulltext`] (Japanese-aware tokens and phrases), [`geo`] (the great-circle cap of
//!   `near`) and [`values`] (normalisation, dates, decimals, UCUM): the semantics every
//!   backend shares.
//!
//! Architecture invariant: this crate does no I/O and knows no database (no SQL, no
//! `rusqlite`); a test checks its manifest.

mod composite;
mod expr;
mod extract;
pub mod fulltext;
pub mod geo;
mod prepared;
mod registry;
mod shape;
pub mod values;

pub use extract::{
    IDENTIFIER_SUFFIX, IndexRow, OF_TYPE_SEP, OF_TYPE_SUFFIX, Row, TEXT_SUFFIX, extract, extract_in,
};
pub use fulltext::{Phrase, TextField};
pub use prepared::Prepared;
pub use registry::{ParamKind, Registry, SearchParam};
pub use shape::{mark_subsetted, shape};
mod query;

pub use query::{
    Filter, Include, Match, Prefix, SearchQuery, SortBy, SortKey, StringMode, Summary, Test,
    TotalMode, UriMode, parse, parse_in,
};

#[cfg(test)]
mod invariants {
    /// The crate stays store-neutral: no database driver among its dependencies.
    #[test]
    fn no_database_dependency() {
        let manifest = include_str!("../Cargo.toml");
        for db in ["rusqlite", "postgres", "sqlx"] {
            assert!(
                !manifest.contains(db),
                "issho-search must not depend on {db}"
            );
        }
    }
}
