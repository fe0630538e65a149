//! GET `/certificate/{subject}`: a signed certificate, or the CA chain for `ca`, with
//! `If-Modified-Since` as puppetserver ≥ 7.12 answers it (Puppet 8 agents refresh the CA certificate
//! with it every day).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::plausible;
use crate::ca::pem_encode;
use crate::http::error::{text, ApiError, Context};
use crate::http::{pem_response, AppState};

/// When the CA chain was stored, read once.
async fn ca_written(state: &AppState) -> Option<i64> {
    if let Some(at) = state.ca_written.get() {
        return Some(*at);
    }
    let at = state.authority.store().ca_stored_at().await.ok()??;
    Some(*state.ca_written.get_or_init(|| at))
}

/// The certificate (PEM), or `Could not find certificate <subject>`; 304 (empty, `text/plain`)
/// when it was not written after the `If-Modified-Since` time, like puppetserver compares a file's
/// mtime. `Last-Modified` is sent too (puppetserver sends none; agents use their file's time).
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Response {
    let found = if subject == "ca" {
        // From memory: served while the database is away (a replica that lost it).
        let chain = state.authority.served_ca_bundle();
        match ca_written(&state).await {
            Some(at) => Ok(Some((chain, at))),
            None => return pem_response(chain),
        }
    } else if plausible(&subject) {
        state
            .authority
            .store()
            .current_certificate_issued(&subject)
            .await
            .map(|c| c.map(|(der, at)| (pem_encode("CERTIFICATE", &der), at)))
    } else {
        Ok(None)
    };
    let (pem, written) = match found {
        Ok(Some(c)) => c,
        Ok(None) => {
            return ApiError::not_found(format!(
                "Could not find certificate {}",
                crate::ca::names::printable(&subject)
            ))
            .into_response()
        }
        Err(e) => return ApiError::from_authority(e.into(), Context::Admin).into_response(),
    };
    let written = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(written).unwrap_or(0));
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let mut res = match since {
        Some(t) if written <= t => {
            let mut r = text(StatusCode::NOT_MODIFIED, "");
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        _ => pem_response(pem),
    };
    if let Ok(lm) = HeaderValue::from_str(&httpdate::fmt_http_date(written)) {
        res.headers_mut().insert(header::LAST_MODIFIED, lm);
    }
    res
}
