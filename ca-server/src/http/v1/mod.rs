//! `/puppet-ca/v1/...`: one file per resource.

pub(super) mod admin;
pub(super) mod certificate;
pub(super) mod certificate_request;
pub(super) mod certificate_status;
pub(super) mod crl;
pub(super) mod renewal;

use axum::http::StatusCode;
use axum::response::Response;

use super::error::text;

/// Liberator's answer to a method the resource does not allow.
pub(super) async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
}

/// `certificate_statuses/` with no key.
pub(super) async fn missing_segment() -> Response {
    text(StatusCode::BAD_REQUEST, "Missing URL Segment")
}
