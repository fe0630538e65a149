//! GET `/certificate/{subject}`: a signed certificate, or the CA chain for `ca`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::plausible;
use crate::http::error::{ApiError, Context};
use crate::http::{pem_response, AppState};

/// The certificate (PEM), or `Could not find certificate <subject>`.
pub async fn get(State(state): State<Arc<AppState>>, Path(subject): Path<String>) -> Response {
    if subject == "ca" {
        return pem_response(state.authority.signer().chain_pem.clone());
    }
    let not_found = || {
        ApiError::not_found(format!(
            "Could not find certificate {}",
            crate::ca::names::printable(&subject)
        ))
    };
    if !plausible(&subject) {
        return not_found().into_response();
    }
    match state.authority.certificate_pem(&subject).await {
        Ok(Some(pem)) => pem_response(pem),
        Ok(None) => not_found().into_response(),
        Err(e) => ApiError::from_authority(e, Context::Admin).into_response(),
    }
}
