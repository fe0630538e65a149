//! The CRL: GET from memory with `If-Modified-Since`/`Last-Modified`; PUT for parents' CRLs (§1.7).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::http::error::{text, ApiError, Context};
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
    let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(crl.published)).ok();
    let mut res = match since {
        Some(t) if crl.published <= t => {
            let mut r = text(StatusCode::NOT_MODIFIED, "");
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        _ => pem_response(crl.pem.clone()),
    };
    if let Some(lm) = last_modified {
        res.headers_mut().insert(header::LAST_MODIFIED, lm);
    }
    res
}

/// PUT: newer CRLs of parent CAs. Our own CRL is never replaced by an upload; with a single-level CA
/// there is no parent, so a valid upload changes nothing.
pub async fn put(body: Body) -> Response {
    let bytes = match read_body(body, 16 * 1024 * 1024).await {
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
    let mut parsed = 0;
    for der in &crls {
        let Ok((_, crl)) = CertificateRevocationList::from_der(der) else {
            continue;
        };
        parsed += 1;
        let has_aki = crl
            .extensions()
            .iter()
            .any(|e| matches!(e.parsed_extension(), ParsedExtension::AuthorityKeyIdentifier(a) if a.key_identifier.is_some()));
        if !has_aki {
            return ApiError::bad_request(
                "One or more submitted CRLs do not have an authority key identifier.",
            )
            .into_response();
        }
        // deltaCRLIndicator (2.5.29.27)
        let delta = crl
            .extensions()
            .iter()
            .any(|e| e.oid.iter().is_some_and(|arcs| arcs.eq([2u64, 5, 29, 27])));
        if delta {
            return ApiError::bad_request("Cannot support delta CRL.").into_response();
        }
    }
    if parsed == 0 {
        return ApiError::bad_request("No valid CRLs submitted.").into_response();
    }
    text(StatusCode::OK, "Successfully updated CRLs.")
}
