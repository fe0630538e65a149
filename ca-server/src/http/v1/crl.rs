//! The CRL: GET from memory with `If-Modified-Since`/`Last-Modified`; PUT for parents' CRLs (§1.7).

use std::sync::Arc;

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
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let published = crl.last_modified();
    let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(published)).ok();
    let mut res = match since {
        Some(t) if published <= t => {
            let mut r = text(StatusCode::NOT_MODIFIED, "");
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        _ => {
            // Encoded once per CRL; megabytes at 100,000 entries, so off the executor.
            let pem = match crl.encoded_pem() {
                Some(p) => p,
                None => match tokio::task::spawn_blocking(move || crl.pem()).await {
                    Ok(p) => p,
                    Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error."),
                },
            };
            pem_response(axum::body::Bytes::from_owner(pem))
        }
    };
    if let Some(lm) = last_modified {
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
