//! History interactions (instance, type, system): the engine builds the history Bundle (the
//! same code answers history GET entries of batches and transactions); here it is shaped
//! (`_summary`, `_elements`) and rendered.

use super::request::blocking;
use super::respond::{Render, body_response};
use crate::AppState;
use axum::response::Response;
use issho_engine::{AccessContext, FhirError, HistoryScope};
use std::sync::Arc;

pub(super) async fn history(
    st: &Arc<AppState>,
    ctx: AccessContext,
    scope: HistoryScope,
    pairs: &[(String, String)],
    render: &Render,
    base: &str,
    path: &str,
) -> Result<Response, FhirError> {
    let engine = st.engine.clone();
    let (pairs, base, path) = (pairs.to_vec(), base.to_string(), path.to_string());
    let bundle =
        blocking(move || engine.history_request(&ctx, scope, &pairs, &base, &path)).await?;
    Ok(body_response(
        200,
        &super::shape_bundle(bundle, render),
        render.out,
    ))
}
