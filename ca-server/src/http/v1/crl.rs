//! The CRL: GET from memory with `If-Modified-Since`/`Last-Modified`; PUT for parents' CRLs (§1.7).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use axum::Extension;

use crate::http::error::{text, ApiError, Context};
use crate::http::extract::Caller;
use crate::http::{pem_response, read_body, AppState};

/// GET: 304 when the CRL has not changed since `If-Modified-Since` (strictly-after comparison).
pub async fn get(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let crl = match state.current_crl().await {
        Ok(c) => c,
        Err(e) => return ApiError::from_authority(e, Context::Admin).into_response(),
    };
    let published = crl.last_modified();
    if unchanged_since(&headers, published) {
        return last_modified(not_modified(), published);
    }
    // Encoded once per CRL; megabytes at 100,000 entries, so off the executor.
    let pem = match crl.encoded_pem() {
        Some(p) => p,
        None => match tokio::task::spawn_blocking(move || crl.pem()).await {
            Ok(p) => p,
            Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error."),
        },
    };
    last_modified(pem_response(axum::body::Bytes::from_owner(pem)), published)
}

/// Whether `If-Modified-Since` is at or after `published` (HTTP dates have whole seconds).
pub(crate) fn unchanged_since(headers: &HeaderMap, published: SystemTime) -> bool {
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| published <= since)
}

/// 304, as puppetserver sends it.
pub(crate) fn not_modified() -> Response {
    let mut r = text(StatusCode::NOT_MODIFIED, "");
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `res` with `Last-Modified: published`.
pub(crate) fn last_modified(mut res: Response, published: SystemTime) -> Response {
    if let Ok(lm) = HeaderValue::from_str(&httpdate::fmt_http_date(published)) {
        res.headers_mut().insert(header::LAST_MODIFIED, lm);
    }
    res
}

/// PUT: newer CRLs of parent CAs (§1.7). Our own CRL is never replaced by an upload.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let bytes = match read_body(body, 16 * 1024 * 1024, state.body_read_timeout).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let text_body = String::from_utf8_lossy(&bytes);
    let crls: Vec<Vec<u8>> = pem::parse_many(text_body.as_ref())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "X509 CRL")
        .map(pem::Pem::into_contents)
        .collect();
    match state.authority.update_parent_crls(&caller.actor(), &crls).await {
        Ok(_) => {
            let _ = state.refresh().await;
            text(StatusCode::OK, "Successfully updated CRLs.")
        }
        Err(e) => ApiError::from_authority(e, Context::Admin).into_response(),
    }
}
