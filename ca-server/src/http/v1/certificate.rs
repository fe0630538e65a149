//! GET `/certificate/{subject}`: a signed certificate, or the CA chain for `ca`, with
//! `If-Modified-Since` as puppetserver ≥ 7.12 answers it (Puppet 8 agents refresh the CA certificate
//! with it every day).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::ca::pem_encode;
use crate::http::error::ApiError;
use crate::http::extract::{Certname, NoSuchCertificate, NotThere};
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
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    subject: Certname<NoSuchCertificate>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (pem, written) = if subject.as_str() == "ca" {
        // From memory: served while the database is away (a replica that lost it).
        let chain = state.authority.served_ca_bundle();
        match ca_written(&state).await {
            Some(at) => (chain, at),
            None => return Ok(pem_response(chain)),
        }
    } else {
        let found = state
            .authority
            .store()
            .current_certificate_issued(subject.as_str())
            .await?;
        let (der, at) = found.ok_or_else(|| NoSuchCertificate::answer(subject.as_str()))?;
        (pem_encode("CERTIFICATE", &der), at)
    };
    let written = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(written).unwrap_or(0));
    let res = if super::crl::unchanged_since(&headers, written) {
        super::crl::not_modified()
    } else {
        pem_response(pem)
    };
    Ok(super::crl::last_modified(res, written))
}
