//! The CRL: GET from memory with `If-Modified-Since`/`Last-Modified`; PUT for parents' CRLs (§1.7).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;

use crate::http::error::{text, ApiError};
use crate::http::extract::Caller;
use crate::http::{pem_response, read_body, AppState};

/// GET: 304 when the CRL has not changed since `If-Modified-Since` (strictly-after comparison).
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let crl = state.current_crl().await?;
    let published = crl.last_modified();
    if unchanged_since(&headers, published) {
        return Ok(last_modified(not_modified(), published));
    }
    // Encoded once per CRL; megabytes at 100,000 entries, so off the executor.
    let pem = match crl.encoded_pem() {
        Some(p) => p,
        None => off_executor(move || crl.pem()).await?,
    };
    Ok(last_modified(
        pem_response(axum::body::Bytes::from_owner(pem)),
        published,
    ))
}

/// `f` on the blocking pool; a panic in it is a 500.
pub(crate) async fn off_executor<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %crate::error::Chain(&e), "a blocking task failed");
        ApiError::internal()
    })
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
pub(crate) async fn put(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, 16 * 1024 * 1024, state.body_read_timeout).await?;
    let text_body = String::from_utf8_lossy(&bytes);
    let crls: Vec<Vec<u8>> = pem::parse_many(text_body.as_ref())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "X509 CRL")
        .map(pem::Pem::into_contents)
        .collect();
    state.authority.update_parent_crls(&caller.actor(), &crls).await?;
    // Stored: the answer is a success either way; the servers' CRL follows at the next refresh.
    if let Err(e) = state.refresh().await {
        tracing::warn!(error = %crate::error::Chain(&e), "the parents' CRLs are stored but not served yet");
    }
    Ok(text(StatusCode::OK, "Successfully updated CRLs."))
}
