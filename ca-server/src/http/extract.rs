//! Who is calling: the TLS client certificate, or (only when `allow-header-cert-info` is on) the
//! `X-Client-*` headers of a TLS-terminating proxy (§3.3).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::http::HeaderMap;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::ApiError;
use crate::ca::{der, oids};
use crate::policy::access::Identity;

/// What the TLS layer knows of the peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Remote address.
    pub addr: SocketAddr,
    /// The verified client certificate, if one was presented.
    pub cert: Option<std::sync::Arc<crate::tls::PeerCert>>,
}

/// The caller as the handlers see it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Identity (None = unauthenticated).
    pub identity: Option<Identity>,
    /// The client certificate (TLS or proxy header) for renewal.
    pub cert_der: Option<std::sync::Arc<[u8]>>,
    /// Remote address.
    pub addr: Option<SocketAddr>,
}

impl Caller {
    /// The actor name for the audit log.
    pub fn actor(&self) -> String {
        match &self.identity {
            Some(i) => format!("cert:{}", i.certname),
            None => "anonymous".to_string(),
        }
    }
}

/// The identity in a certificate: its CN and its Puppet extensions (by short name, else dotted OID).
pub fn identity_from_der(cert_der: &[u8]) -> Option<Identity> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let certname = crate::ca::names::common_name(cert.subject())?;
    let mut extensions = BTreeMap::new();
    for ext in cert.extensions() {
        let Some(arcs) = ext.oid.iter().map(|i| i.collect::<Vec<u64>>()) else {
            continue;
        };
        if oids::is_under(&arcs, oids::PUPPET_ARC) {
            if let Some(v) = der::decode_string(ext.value) {
                extensions.insert(oids::display_name(&arcs), v);
            }
        }
    }
    Some(Identity { certname, extensions })
}

/// The `{subject}` of a resource path, when it may name something we hold (the certname rules).
/// Any other subject is simply not there: `R` words the 404 as puppetserver does for that resource.
#[derive(Debug)]
pub struct Certname<R>(pub String, std::marker::PhantomData<R>);

/// How a resource says that a subject is not there.
pub trait NotThere {
    /// The 404 for `subject`.
    fn answer(subject: &str) -> ApiError;
}

/// Liberator's default: `Resource not found.`
#[derive(Debug)]
pub struct ResourceNotFound;
impl NotThere for ResourceNotFound {
    fn answer(_: &str) -> ApiError {
        ApiError::not_found("Resource not found.")
    }
}

/// `certificate_request/{subject}` GET.
#[derive(Debug)]
pub struct NoSuchRequest;
impl NotThere for NoSuchRequest {
    fn answer(subject: &str) -> ApiError {
        ApiError::not_found(format!(
            "Could not find certificate_request {}",
            crate::ca::names::printable(subject)
        ))
    }
}

/// `certificate_request/{subject}` DELETE.
#[derive(Debug)]
pub struct NoRequestToDelete;
impl NotThere for NoRequestToDelete {
    fn answer(subject: &str) -> ApiError {
        ApiError::not_found(format!(
            "No certificate request for {}",
            crate::ca::names::printable(subject)
        ))
    }
}

/// `certificate/{subject}` GET.
#[derive(Debug)]
pub struct NoSuchCertificate;
impl NotThere for NoSuchCertificate {
    fn answer(subject: &str) -> ApiError {
        ApiError::not_found(format!(
            "Could not find certificate {}",
            crate::ca::names::printable(subject)
        ))
    }
}

impl<R> Certname<R> {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync, R: NotThere> axum::extract::FromRequestParts<S> for Certname<R> {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let axum::extract::Path(subject) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if crate::ca::names::validate_certname(&subject).is_err() {
            return Err(R::answer(&subject).into_response());
        }
        Ok(Certname(subject, std::marker::PhantomData))
    }
}

/// Decodes `%XX` escapes; None when a `%` is not followed by two hex digits (puppetserver refuses
/// such input, where `percent-encoding` would keep the `%` as it is).
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let malformed = s.split('%').skip(1).any(|rest| {
        !rest
            .as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    (!malformed).then(|| percent_encoding::percent_decode_str(s).collect())
}

/// Reads the CN from an RFC 2253 (`CN=a,O=b`) or OpenSSL (`/O=b/CN=a`) DN.
fn cn_from_dn(dn: &str) -> Option<String> {
    let parts: Vec<&str> = if dn.starts_with('/') {
        dn.split('/').collect()
    } else {
        dn.split(',').collect()
    };
    parts
        .iter()
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("CN"))
        .map(|(_, v)| v.trim().to_string())
}

/// The caller from proxy headers (header mode on). Errors are 400s with puppetserver's messages.
pub fn caller_from_headers(headers: &HeaderMap) -> Result<(Option<Identity>, Option<Vec<u8>>), ApiError> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    // Unverified: no identity, and whatever else the proxy sent (Apache sends "(null)") is ignored.
    if get("x-client-verify") != Some("SUCCESS") {
        return Ok((None, None));
    }
    let cert_der = match get("x-client-cert") {
        None => None,
        Some(enc) => {
            let bytes = percent_decode(enc)
                .ok_or_else(|| ApiError::bad_request("Unable to URL decode the x-client-cert header"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("Unable to URL decode the x-client-cert header"))?;
            let blocks: Vec<pem::Pem> = pem::parse_many(&text)
                .map_err(|_| ApiError::bad_request("No certs found in PEM read from x-client-cert"))?
                .into_iter()
                .filter(|p| p.tag() == "CERTIFICATE")
                .collect();
            match blocks.len() {
                0 => {
                    return Err(ApiError::bad_request(
                        "No certs found in PEM read from x-client-cert",
                    ))
                }
                1 => blocks.into_iter().next().map(pem::Pem::into_contents),
                n => {
                    return Err(ApiError::bad_request(format!(
                        "Only 1 PEM should be supplied for x-client-cert but {n} found"
                    )))
                }
            }
        }
    };
    let Some(dn) = get("x-client-dn") else {
        return Ok((None, None));
    };
    let certname =
        cn_from_dn(dn).ok_or_else(|| ApiError::bad_request("No CN found in the x-client-dn header"))?;
    let extensions = cert_der
        .as_deref()
        .and_then(identity_from_der)
        .map(|i| i.extensions)
        .unwrap_or_default();
    Ok((Some(Identity { certname, extensions }), cert_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_forms() {
        assert_eq!(cn_from_dn("CN=agent1,O=x").as_deref(), Some("agent1"));
        assert_eq!(cn_from_dn("/O=x/CN=agent2").as_deref(), Some("agent2"));
        assert_eq!(cn_from_dn("O=x"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb+c%20").unwrap(), b"a/b+c ");
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("a%"), None);
        assert_eq!(percent_decode("%%41"), None);
    }
}
