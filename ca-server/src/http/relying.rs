//! The CRL for relying parties that are not Puppet agents (Vault, PuppetDB, nginx, HAProxy...):
//! `GET /crl.pem` and `GET /crl.der`, no client certificate needed. It lists what the agents' CRL
//! lists, with the same number, but a nextUpdate days away instead of years, and it is re-signed with
//! every CRL and before half of that has passed (see `Authority::refresh_crl_if_due`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{text, ApiError, Context};
use super::v1::crl::{last_modified, not_modified, unchanged_since};
use super::AppState;
use crate::authority::RelyingCrl;

/// GET `/crl.pem`.
pub async fn pem(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    serve(&state, &headers, "application/x-pem-file", |c| c.pem).await
}

/// GET `/crl.der` (`application/pkix-crl`, RFC 2585).
pub async fn der(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    serve(&state, &headers, "application/pkix-crl", |c| c.der).await
}

async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    content_type: &'static str,
    pick: fn(RelyingCrl) -> Arc<[u8]>,
) -> Response {
    let crl = match state.current_crl().await {
        Ok(c) => c,
        Err(e) => return ApiError::from_authority(e, Context::Admin).into_response(),
    };
    // A CRL signed by a version without the relying parties' CRL, or imported: sign the next CRL
    // now rather than wait for the upkeep (which does the same at start-up).
    let crl = if crl.relying_next_update().is_none() {
        let signed = state.authority.refresh_crl_if_due().await;
        let refreshed = match signed {
            Ok(_) => state.refresh().await,
            Err(e) => Err(e),
        };
        match refreshed {
            Ok(c) => c,
            Err(e) => return ApiError::from_authority(e, Context::Admin).into_response(),
        }
    } else {
        crl
    };
    let published = crl.last_modified();
    if unchanged_since(headers, published) {
        return last_modified(not_modified(), published);
    }
    // Assembled once per CRL; megabytes at 100,000 entries, so off the executor.
    let relying = match crl.assembled_relying() {
        Some(r) => r,
        None => match tokio::task::spawn_blocking(move || crl.relying()).await {
            Ok(r) => r,
            Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error."),
        },
    };
    let Some(relying) = relying else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The relying parties' CRL is not signed yet: retry in a minute.",
        );
    };
    let mut res = Response::new(axum::body::Body::from(axum::body::Bytes::from_owner(pick(
        relying,
    ))));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    last_modified(res, published)
}
