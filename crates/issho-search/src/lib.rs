//! FHIR R4 search for issho.
//!
//! - [`Registry`]: every R4 SearchParameter, by (resource type, code), with its expression
//!   compiled to a direct path walker over the JSON tree (no FHIRPath engine involved).
//! - [`SqliteIndex`]: the index tables of a SQLite database (created at open, with the ids of
//!   the parameter keys) and the index rows of a resource's current version.
//! - [`parse`]: a search request (name/value pairs) to a [`SearchQuery`].
//! - [`sqlite_select`] / [`sqlite_count`] / [`sqlite_includes`]: a query to SQL over the
//!   store's `resources` table and the index tables. Values are always bound parameters.
//!
//! Architecture invariant: this crate does no I/O of its own; it writes and reads SQLite only
//! through the connection its caller passes in, inside the caller's transaction.

mod expr;
mod extract;
mod fulltext;
mod geo;
mod index;
mod registry;
pub mod values;

pub use extract::{IndexRow, Row, extract, extract_in};
pub use fulltext::TextField;
pub use index::{INDEX_FORMAT, Prepared, SqliteIndex};
pub use registry::{ParamKind, Registry, SearchParam};
mod query;
mod sql;

pub use query::{
    Filter, Include, Match, Prefix, SearchQuery, SortKey, StringMode, Summary, Test, TotalMode,
    UriMode, parse, parse_in,
};
pub use sql::{
    sqlite_count, sqlite_includes, sqlite_includes_iterate, sqlite_link_breadth, sqlite_select,
};
