//! POST `/certificate_renewal` (Puppet 8): a new certificate for the caller's own key (§1.13).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;

use crate::http::error::{ApiError, Context};
use crate::http::extract::Caller;
use crate::http::{pem_response, AppState};

/// 404 unless `allow-auto-renewal`; 400 without a client certificate; else the renewed certificate.
pub(crate) async fn post(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !state.authority.settings().allow_auto_renewal {
        return Err(ApiError::not_found("Not Found"));
    }
    let cert = caller
        .cert_der
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("No valid certificate found in renewal request"))?;
    match state.authority.renew(&caller.actor(), cert).await {
        Ok(issued) => Ok(pem_response(issued.pem())),
        Err(e) => Err(ApiError::from_authority(e, Context::Renewal)),
    }
}
