//! `/certificate_request/{subject}`: fetch, submit, delete a CSR.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::plausible;
use crate::ca::csr::MAX_CSR_BYTES;
use crate::ca::names::printable;
use crate::http::error::{text, ApiError, Context};
use crate::http::extract::Caller;
use crate::http::{pem_response, read_body, AppState};

/// GET: the pending CSR.
pub async fn get(State(state): State<Arc<AppState>>, Path(subject): Path<String>) -> Response {
    let not_found = || {
        ApiError::not_found(format!(
            "Could not find certificate_request {}",
            printable(&subject)
        ))
    };
    if !plausible(&subject) {
        return not_found().into_response();
    }
    match state.authority.request_pem(&subject).await {
        Ok(Some(pem)) => pem_response(pem),
        Ok(None) => not_found().into_response(),
        Err(e) => ApiError::from_authority(e, Context::Admin).into_response(),
    }
}

/// PUT: submit a CSR. 200 with an empty body when stored; every refusal is a 400 with its message.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    body: Body,
) -> Response {
    let bytes = match read_body(body, MAX_CSR_BYTES, state.body_read_timeout).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match state.authority.submit(&caller.actor(), &subject, &bytes).await {
        Ok(_) => text(StatusCode::OK, ""),
        Err(e) => {
            tracing::info!(certname = %printable(&subject), error = %e, "CSR refused");
            ApiError::from_authority(e, Context::Submit).into_response()
        }
    }
}

/// DELETE: remove a pending CSR (the default rules do not allow it; an auth.conf may).
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
) -> Response {
    let missing = || ApiError::not_found(format!("No certificate request for {}", printable(&subject)));
    if !plausible(&subject) {
        return missing().into_response();
    }
    match state.authority.delete_request(&caller.actor(), &subject).await {
        Ok(true) => text(
            StatusCode::NO_CONTENT,
            format!("Deleted certificate request for {subject}"),
        ),
        Ok(false) => missing().into_response(),
        Err(e) => ApiError::from_authority(e, Context::Admin).into_response(),
    }
}
