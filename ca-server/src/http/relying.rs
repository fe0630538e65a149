//! The CRL for relying parties that are not Puppet agents (Vault, PuppetDB, nginx, HAProxy...):
//! `GET /crl.pem` and `GET /crl.der`, no client certificate needed. It lists what the agents' CRL
//! lists, with the same number, but a nextUpdate days away instead of years (stored with every CRL,
//! which is renewed before half of that has passed, see `Authority::refresh_crl_if_due`); each
//! process signs it on the first request after a new CRL (see `CrlSnapshot::relying`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::error::ApiError;
use super::v1::crl::{last_modified, not_modified, off_executor, unchanged_since};
use super::AppState;
use crate::authority::RelyingCrl;

/// GET `/crl.pem`.
pub(super) async fn pem(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &headers, "application/x-pem-file", |c| c.pem).await
}

/// GET `/crl.der` (`application/pkix-crl`, RFC 2585).
pub(super) async fn der(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &headers, "application/pkix-crl", |c| c.der).await
}

async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    content_type: &'static str,
    pick: fn(RelyingCrl) -> Arc<[u8]>,
) -> Result<Response, ApiError> {
    let mut crl = state.current_crl().await?;
    // A CRL signed by a version without the relying parties' CRL, or imported: sign the next CRL
    // now rather than wait for the upkeep (which does the same at start-up).
    if crl.relying_next_update().is_none() {
        state.authority.refresh_crl_if_due().await?;
        crl = state.refresh().await?;
    }
    let published = crl.last_modified();
    if unchanged_since(headers, published) {
        return Ok(last_modified(not_modified(), published));
    }
    // Signed once per CRL (on each replica); megabytes at 100,000 entries, so off the executor.
    let relying = match crl.assembled_relying() {
        Some(r) => Some(r),
        None => off_executor(move || crl.relying()).await??,
    };
    let relying = relying.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The relying parties' CRL is not signed yet: retry in a minute.",
        )
    })?;
    let mut res = Response::new(axum::body::Body::from(axum::body::Bytes::from_owner(pick(
        relying,
    ))));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(last_modified(res, published))
}
