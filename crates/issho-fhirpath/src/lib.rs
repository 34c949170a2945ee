//! FHIRPath (N1, with the FHIR R4 additions) for issho.
//!
//! Parse once with [`parse`], evaluate many times with [`evaluate`] over `serde_json` resource
//! trees. Results are [`Item`]s: either nodes of the input (borrowed JSON, FHIR type from the
//! generated R4 tables, and their [`Location`] from the root — what FHIRPath Patch needs to
//! mutate the selected nodes) or computed System values ([`Val`]).
//!
//! Type information comes from `issho_model::r4()`: choice elements (`Observation.value` reaches
//! `valueQuantity`), `is`/`as`/`ofType` with FHIR and System types and type inheritance
//! (`code` is a `string`, `Age` is a `Quantity`). Decimals are exact ([`Decimal`]); quantities
//! compare through a small UCUM reader ([`ucum`]).

mod datetime;
mod decimal;
mod eval;
mod parser;
pub mod ucum;
mod value;

pub use datetime::{PartialDateTime, Precision};
pub use decimal::Decimal;
pub use eval::{
    ConformsTo, Context, MemberOf, Resolver, Tracer, evaluate, evaluate_items, reference_key,
    root_node,
};
pub use parser::{BinOp, Expr, TypeSpec, parse};
pub use value::{Item, Location, Node, NodeType, Quantity, Step, Val};

use std::fmt;

/// A parse or evaluation error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The expression is not valid FHIRPath.
    Parse(String),
    /// The expression is valid but cannot be evaluated on this input (wrong types, a function
    /// called on several items where one is required, …).
    Eval(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse(m) => write!(f, "FHIRPath syntax error: {m}"),
            Error::Eval(m) => write!(f, "FHIRPath evaluation error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Parse and evaluate in one step (convenience for one-off expressions).
pub fn eval_str<'a, 'c: 'a>(
    expression: &str,
    root: &'a serde_json::Value,
    ctx: &Context<'c>,
) -> Result<Vec<Item<'a>>, Error> {
    evaluate(&parse(expression)?, root, ctx)
}
