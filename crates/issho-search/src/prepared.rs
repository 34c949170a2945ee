//! Index rows extracted ahead of a write transaction.

use crate::extract::{IndexRow, extract_in};
use crate::registry::Registry;
use serde_json::Value;
use std::sync::Arc;

/// The index rows of one resource, extracted with one registry before the store's write
/// transaction (off the single writer), handed to the store with the resource. A store whose
/// registry changed in between extracts the rows again ([`Prepared::is_for`]).
#[derive(Clone)]
pub struct Prepared {
    reg: Arc<Registry>,
    rows: Vec<IndexRow>,
}

impl Prepared {
    pub fn new(reg: &Arc<Registry>, resource: &Value) -> Prepared {
        Prepared {
            reg: reg.clone(),
            rows: extract_in(reg, resource),
        }
    }
    /// True when the rows were extracted with `reg` (the very same registry).
    pub fn is_for(&self, reg: &Arc<Registry>) -> bool {
        Arc::ptr_eq(&self.reg, reg)
    }
    pub fn rows(&self) -> &[IndexRow] {
        &self.rows
    }
    /// The rows, taken.
    pub fn into_rows(self) -> Vec<IndexRow> {
        self.rows
    }
}
