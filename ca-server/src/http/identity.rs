//! Who is calling, checked on every request: a certificate authenticates its holder only while it is
//! our signing CA's, unrevoked and within its validity dates, so a revocation reaches open keep-alive
//! connections and resumed TLS sessions at once, not only new handshakes.
//!
//! Header mode (`allow-header-cert-info`): only the configured `trusted-proxies` may speak for a client
//! with `X-Client-*` headers; a certificate in `X-Client-Cert` must verify against the CA and be the
//! name's current, unrevoked certificate in the database. Anyone else's headers are ignored and the
//! TLS client certificate counts, as without header mode.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::{text, ApiError};
use super::extract::{caller_from_headers, identity_from_der, PeerInfo};
use super::AppState;
use crate::policy::access::Identity;
use crate::tls::Rejection;

/// Why a request's claimed identity was refused: 403, and the connection is closed.
#[derive(Debug)]
pub struct Refused {
    /// What to log.
    reason: String,
}

impl Refused {
    fn new(reason: impl Into<String>) -> Self {
        Refused {
            reason: reason.into(),
        }
    }

    /// The answer: 403 with a short message, `Connection: close`.
    pub fn into_response(self, path: &str, method: &str) -> Response {
        tracing::warn!(%path, %method, reason = %self.reason, "client certificate refused");
        let mut res = text(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden request: {path} (method :{}). {}.",
                method.to_ascii_lowercase(),
                self.reason
            ),
        );
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    }
}

impl From<Rejection> for Refused {
    fn from(r: Rejection) -> Self {
        let mut s = r.to_string();
        if let Some(first) = s.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        Refused::new(s)
    }
}

/// The outcome of identifying a request.
pub enum Identified {
    /// The caller (None = unauthenticated) and the certificate it authenticated with.
    Caller(Option<Identity>, Option<Arc<[u8]>>),
    /// A malformed proxy header: 400.
    BadRequest(ApiError),
    /// A certificate that does not authenticate (revoked, expired, forged...): 403 and close.
    Refused(Refused),
}

/// Whether `ip` may send identity headers.
fn trusted_proxy(state: &AppState, ip: IpAddr) -> bool {
    let access = state.access.load();
    access.header_cert_info && access.trusted_proxies.iter().any(|p| p.matches(ip))
}

/// Identifies the caller of one request.
pub async fn identify(state: &AppState, peer: Option<&PeerInfo>, headers: &HeaderMap) -> Identified {
    let now = state.authority.now().unix_timestamp();
    if peer.is_some_and(|p| trusted_proxy(state, p.addr.ip())) {
        return match caller_from_headers(headers) {
            Ok((identity, cert)) => match proxied(state, identity, cert, now).await {
                Ok((i, c)) => Identified::Caller(i, c),
                Err(r) => Identified::Refused(r),
            },
            Err(e) => Identified::BadRequest(e),
        };
    }
    let Some(cert) = peer.and_then(|p| p.cert.as_deref()) else {
        return Identified::Caller(None, None);
    };
    // A revocation made by another process (`ca revoke` on the database) is loaded first.
    if let Err(e) = state.refresh_local().await {
        tracing::warn!(error = %crate::error::Chain(&e), "could not refresh the revocations");
    }
    match state.tls.check_peer(cert, now) {
        Ok(()) => Identified::Caller(cert.identity.clone(), Some(Arc::clone(&cert.der))),
        Err(r) => Identified::Refused(r.into()),
    }
}

/// A proxy's word for its client. With a certificate: it must verify against our CA, be unrevoked and
/// valid, and be the current certificate of its name in the database; the identity is then read from
/// it. With a DN only: the name must have a current, valid, unrevoked certificate.
async fn proxied(
    state: &AppState,
    identity: Option<Identity>,
    cert: Option<Vec<u8>>,
    now: i64,
) -> Result<(Option<Identity>, Option<Arc<[u8]>>), Refused> {
    let Some(claimed) = identity else {
        return Ok((None, None));
    };
    if let Err(e) = state.refresh_local().await {
        tracing::warn!(error = %crate::error::Chain(&e), "could not refresh the revocations");
    }
    let current = state
        .authority
        .store()
        .current_certificate(&claimed.certname)
        .await
        .map_err(|e| {
            // The database's words stay in the log.
            tracing::error!(error = %crate::error::Chain(&e), "cannot look up a proxied client certificate");
            Refused::new("The client certificate cannot be checked now")
        })?;
    let Some(current) = current else {
        return Err(Refused::new(format!(
            "{} has no current certificate",
            crate::ca::names::printable(&claimed.certname)
        )));
    };
    let Some(der) = cert else {
        // DN only: the name's current certificate stands for it.
        state.tls.check_client_cert(&current.der, now)?;
        return Ok((Some(claimed), None));
    };
    verify_signature(state, &der)?;
    state.tls.check_client_cert(&der, now)?;
    if current.der != der {
        return Err(Refused::new(
            "The client certificate is not the current certificate of its name",
        ));
    }
    let from_cert = identity_from_der(&der).ok_or(Rejection::Unreadable)?;
    if from_cert.certname != claimed.certname {
        return Err(Refused::new(
            "X-Client-DN does not name the certificate in X-Client-Cert",
        ));
    }
    Ok((Some(from_cert), Some(der.into())))
}

/// The certificate's signature checked with the signing CA's key.
fn verify_signature(state: &AppState, der: &[u8]) -> Result<(), Refused> {
    let forged = || Refused::new("The client certificate was not signed by this CA");
    let (_, ca) = X509Certificate::from_der(&state.authority.signer().cert.der).map_err(|_| forged())?;
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| forged())?;
    cert.verify_signature(Some(ca.public_key())).map_err(|_| forged())
}
