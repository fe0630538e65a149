//! `/puppet-ca/v1/...`: one file per resource.

pub mod admin;
pub mod certificate;
pub mod certificate_request;
pub mod certificate_status;
pub mod crl;
pub mod renewal;

use axum::http::StatusCode;
use axum::response::Response;

use super::error::text;

/// Liberator's answer to a method the resource does not allow.
pub async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
}

/// `certificate_statuses/` with no key.
pub async fn missing_segment() -> Response {
    text(StatusCode::BAD_REQUEST, "Missing URL Segment")
}
