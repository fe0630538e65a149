//! POST `/certificate_renewal` (Puppet 8): a new certificate for the caller's own key (§1.13).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::http::error::{text, ApiError, Context};
use crate::http::extract::Caller;
use crate::http::{pem_response, AppState};

/// 404 unless `allow-auto-renewal`; 400 without a client certificate; else the renewed certificate.
pub async fn post(State(state): State<Arc<AppState>>, Extension(caller): Extension<Caller>) -> Response {
    if !state.authority.settings().allow_auto_renewal {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some(cert) = caller.cert_der.as_deref() else {
        return ApiError::bad_request("No valid certificate found in renewal request").into_response();
    };
    match state.authority.renew(&caller.actor(), cert).await {
        Ok(issued) => pem_response(issued.pem()),
        Err(crate::authority::AuthorityError::Invalid(m)) => text(StatusCode::FORBIDDEN, m),
        Err(e) => ApiError::from_authority(e, Context::Admin).into_response(),
    }
}
