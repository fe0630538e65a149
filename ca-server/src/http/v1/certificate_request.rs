//! `/certificate_request/{subject}`: fetch, submit, delete a CSR.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;

use crate::ca::csr::MAX_CSR_BYTES;
use crate::ca::names::printable;
use crate::http::error::{text, ApiError, Context};
use crate::http::extract::{Caller, Certname, NoRequestToDelete, NoSuchRequest, NotThere};
use crate::http::{pem_response, read_body, AppState};

/// GET: the pending CSR.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    subject: Certname<NoSuchRequest>,
) -> Result<Response, ApiError> {
    match state.authority.request_pem(subject.as_str()).await? {
        Some(pem) => Ok(pem_response(pem)),
        None => Err(NoSuchRequest::answer(subject.as_str())),
    }
}

/// PUT: submit a CSR. 200 with an empty body when stored; every refusal is a 400 with its message.
pub(crate) async fn put(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_CSR_BYTES, state.body_read_timeout).await?;
    match state.authority.submit(&caller.actor(), &subject, &bytes).await {
        Ok(_) => Ok(text(StatusCode::OK, "")),
        Err(e) => {
            tracing::info!(certname = %printable(&subject), error = %crate::error::Chain(&e), "CSR refused");
            Err(ApiError::from_authority(e, Context::Submit))
        }
    }
}

/// DELETE: remove a pending CSR (the default rules do not allow it; an auth.conf may).
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    subject: Certname<NoRequestToDelete>,
) -> Result<Response, ApiError> {
    let name = subject.as_str();
    if state.authority.delete_request(&caller.actor(), name).await? {
        Ok(text(
            StatusCode::NO_CONTENT,
            format!("Deleted certificate request for {name}"),
        ))
    } else {
        Err(NoRequestToDelete::answer(name))
    }
}
