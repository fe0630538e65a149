//! TLS: rustls with an optional client certificate, verified against the CA chain, the parent CAs'
//! CRLs (rustls/webpki), and our own revocations: the revoked serials of the revocation state's
//! current snapshot ([`Revocations`]), so that a revocation is in force at the next handshake without
//! re-parsing a CRL of 100,000 entries. TLS only reads snapshots. The `ServerConfig` sits behind an
//! `ArcSwap`; when a snapshot brings new parent CRLs, the next connection swaps in a new config,
//! keeping the session cache so resumption survives the swap.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use tokio_rustls::TlsAcceptor;

use crate::authority::revocations::Revocations;
use crate::ca::crl::cert_issuer_and_serial;
use crate::datadir::DataDir;

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier cannot be built from the CA and its CRLs.
    #[error("TLS client certificate verification")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS material is not usable.
    #[error("TLS configuration: {0}")]
    Material(String),
}

/// Why a client certificate does not authenticate its holder (any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a readable certificate.
    #[error("the client certificate is unreadable")]
    Unreadable,
    /// Not issued by our signing CA.
    #[error("the client certificate was not issued by this CA")]
    NotOurs,
    /// Revoked.
    #[error("the client certificate is revoked")]
    Revoked,
    /// Past its notAfter.
    #[error("the client certificate has expired")]
    Expired,
    /// Before its notBefore.
    #[error("the client certificate is not yet valid")]
    NotYetValid,
}

/// The server's certificate (then the CA chain, as puppetserver sends it) and key: replaced by a
/// reload.
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

struct Material {
    identity: ArcSwap<ServerIdentity>,
    /// The CA chain, signing CA first, sent after the server's certificate.
    ca_chain: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    sessions: Arc<dyn StoresServerSessions>,
    /// Our CA's subject: client certificates it issued are checked against our revocations.
    issuer: Vec<u8>,
    revocations: Arc<Revocations>,
}

/// Whether `serial` is among our revocations now; before the first snapshot, every one is (closed).
fn is_revoked(revocations: &Revocations, serial: &[u8]) -> bool {
    revocations
        .snapshot()
        .is_none_or(|s| s.revoked().contains(serial))
}

/// A certificate's notBefore and notAfter (Unix seconds); `None` when it cannot be read.
fn validity_of(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// A TLS client certificate, read once for its connection and checked again on each of its
/// requests ([`TlsState::check_peer`]) against the revocations and the clock of that moment. Read
/// per request, it cost two parses and three copies of the DER, each copy a large allocation
/// (BENCHMARKS.md, session 18).
#[derive(Debug)]
pub struct PeerCert {
    /// Its DER (shared with each request's [`crate::http::extract::Caller`]).
    pub der: Arc<[u8]>,
    /// Its notBefore and notAfter; `None` when unreadable (refused).
    validity: Option<(i64, i64)>,
    /// The identity it carries; `None` when unreadable.
    pub identity: Option<crate::policy::access::Identity>,
}

impl PeerCert {
    /// Reads `der`'s dates and identity.
    pub fn read(der: Vec<u8>) -> PeerCert {
        PeerCert {
            validity: validity_of(&der),
            identity: crate::http::extract::identity_from_der(&der),
            der: der.into(),
        }
    }
}

/// The live TLS configuration.
pub struct TlsState {
    material: Material,
    config: ArcSwap<ServerConfig>,
    /// The version of the parents' CRLs in `config`.
    parents_version: Mutex<Option<i64>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("parents_version", &self.parents_version)
            .finish_non_exhaustive()
    }
}

/// The chain and the parents' CRLs checked by webpki, then the certificate's serial looked up among
/// our revocations when our CA issued it.
#[derive(Debug)]
struct Verifier {
    chain: Arc<dyn ClientCertVerifier>,
    issuer: Vec<u8>,
    revocations: Arc<Revocations>,
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        self.chain.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.chain.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.chain.verify_client_cert(end_entity, intermediates, now)?;
        let (issuer, serial) = cert_issuer_and_serial(end_entity)
            .ok_or(rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if issuer == self.issuer.as_slice() && is_revoked(&self.revocations, serial) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The server certificate and key of the data directory, the CA chain after the certificate.
fn read_identity(dir: &DataDir, ca_chain: &[CertificateDer<'static>]) -> Result<ServerIdentity, TlsError> {
    let cert_path = dir.server_cert();
    let key_path = dir.server_key();
    let mut chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| pem_err(&cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(&cert_path, e))?;
    if chain.is_empty() {
        return Err(pem_err(&cert_path, "no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_err(&key_path, e))?;
    // Send the CA chain after the server's own certificate, as puppetserver does.
    chain.extend(ca_chain.iter().cloned());
    Ok(ServerIdentity { chain, key })
}

fn pem_err(path: &std::path::Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A config whose verifier checks the parents' CRLs (`parent_crls`, small and rarely changing) with
/// webpki; our own CA's status (unknown to webpki, which has not its CRL) comes from the snapshot.
fn build(m: &Material, id: &ServerIdentity, parent_crls: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let crls: Vec<CertificateRevocationListDer<'static>> = parent_crls
        .iter()
        .map(|d| CertificateRevocationListDer::from(d.clone()))
        .collect();
    let chain = WebPkiClientVerifier::builder(Arc::clone(&m.roots))
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .allow_unauthenticated()
        .build()?;
    let verifier = Arc::new(Verifier {
        chain,
        issuer: m.issuer.clone(),
        revocations: Arc::clone(&m.revocations),
    });
    let mut cfg = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.session_storage = Arc::clone(&m.sessions);
    Ok(cfg)
}

impl TlsState {
    /// Loads the server identity from the data directory and trusts `ca_chain` (signing CA first) for
    /// client certificates: those our CA issued are refused when revoked in the current snapshot of
    /// `revocations`, the others when in one of its parent CRLs (of the CAs above ours, if any).
    pub fn new(
        dir: &DataDir,
        ca_chain: &[Vec<u8>],
        anchors: &[Vec<u8>],
        revocations: Arc<Revocations>,
    ) -> Result<TlsState, TlsError> {
        let issuer = ca_chain
            .first()
            .and_then(|ca| crate::ca::crl::cert_subject(ca))
            .ok_or_else(|| TlsError::Material("the CA certificate is not readable".into()))?
            .to_vec();
        // Only the signing CA is a trust anchor for client certificates (with, during a key rollover,
        // the next or previous CA: `anchors`): with an intermediate CA, a certificate the root signed
        // directly (another intermediate's leaf, say) does not authenticate.
        let mut roots = RootCertStore::empty();
        for anchor in anchors {
            roots.add(CertificateDer::from(anchor.clone()))?;
        }
        let ca_chain: Vec<CertificateDer<'static>> =
            ca_chain.iter().map(|d| CertificateDer::from(d.clone())).collect();
        let identity = read_identity(dir, &ca_chain)?;
        let material = Material {
            identity: ArcSwap::from_pointee(identity),
            ca_chain,
            roots: Arc::new(roots),
            sessions: ServerSessionMemoryCache::new(4096),
            issuer,
            revocations,
        };
        let snapshot = material.revocations.snapshot();
        let config = build(
            &material,
            &material.identity.load(),
            snapshot.as_ref().map_or(&[], |s| s.parent_crls()),
        )?;
        Ok(TlsState {
            material,
            config: ArcSwap::from_pointee(config),
            parents_version: Mutex::new(snapshot.map(|s| s.parents_version())),
        })
    }

    /// The server certificate and key of the data directory as they are now, checked (they parse, the
    /// key matches the certificate); nothing changes until [`TlsState::install_identity`].
    pub fn load_identity(&self, dir: &DataDir) -> Result<ServerIdentity, TlsError> {
        let identity = read_identity(dir, &self.material.ca_chain)?;
        build(&self.material, &identity, &[])?;
        Ok(identity)
    }

    /// Serves `identity` from the next handshake on (open connections keep theirs; the session cache
    /// is kept, so sessions still resume).
    pub fn install_identity(&self, identity: ServerIdentity) -> Result<(), TlsError> {
        let mut parents = self
            .parents_version
            .lock()
            .map_err(|_| TlsError::Material("lock poisoned".into()))?;
        let snapshot = self.material.revocations.snapshot();
        let config = build(
            &self.material,
            &identity,
            snapshot.as_ref().map_or(&[], |s| s.parent_crls()),
        )?;
        self.material.identity.store(Arc::new(identity));
        self.config.store(Arc::new(config));
        *parents = snapshot.map(|s| s.parents_version());
        Ok(())
    }

    /// The names in the server certificate's subject alternative names: what agents can dial.
    pub fn server_names(&self) -> Vec<String> {
        use x509_parser::extensions::GeneralName;
        let identity = self.material.identity.load();
        let Some(cert) = identity.chain.first() else {
            return Vec::new();
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) else {
            return Vec::new();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => <[u8; 4]>::try_from(*ip)
                        .ok()
                        .map(|a| std::net::IpAddr::from(a).to_string()),
                    16 => <[u8; 16]>::try_from(*ip)
                        .ok()
                        .map(|a| std::net::IpAddr::from(a).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Whether a client certificate that chained to the CA when its session began still authenticates
    /// its holder at `now` (Unix seconds): issued by our signing CA, not revoked, within its validity.
    /// Checked after every handshake (a resumed session skips the verifier) and on every request (a
    /// keep-alive connection outlives a revocation).
    pub fn check_client_cert(&self, der: &[u8], now: i64) -> Result<(), Rejection> {
        self.check_validity(der, validity_of(der), now)
    }

    /// [`TlsState::check_client_cert`] for a connection's certificate, its dates read once (its
    /// issuer and serial are found again, without parsing: the signing CA may have changed since).
    pub fn check_peer(&self, peer: &PeerCert, now: i64) -> Result<(), Rejection> {
        self.check_validity(&peer.der, peer.validity, now)
    }

    fn check_validity(&self, der: &[u8], validity: Option<(i64, i64)>, now: i64) -> Result<(), Rejection> {
        let (issuer, serial) = cert_issuer_and_serial(der).ok_or(Rejection::Unreadable)?;
        if issuer != self.material.issuer.as_slice() {
            return Err(Rejection::NotOurs);
        }
        if is_revoked(&self.material.revocations, serial) {
            return Err(Rejection::Revoked);
        }
        let (not_before, not_after) = validity.ok_or(Rejection::Unreadable)?;
        if now < not_before {
            return Err(Rejection::NotYetValid);
        }
        if now > not_after {
            return Err(Rejection::Expired);
        }
        Ok(())
    }

    /// An acceptor with the current configuration: when the revocation state's snapshot holds parent
    /// CRLs other than those in force, a configuration with them first.
    pub fn acceptor(&self) -> TlsAcceptor {
        if let Some(snapshot) = self.material.revocations.snapshot() {
            let version = snapshot.parents_version();
            if self.parents_version() != Some(version) {
                if let Err(e) = self.install_parent_crls(version, snapshot.parent_crls()) {
                    tracing::error!(error = %crate::error::Chain(&e), "could not install the parent CRLs in the TLS layer");
                }
            }
        }
        TlsAcceptor::from(self.config.load_full())
    }

    /// The parents' CRL version in force (`None` before the first snapshot).
    pub fn parents_version(&self) -> Option<i64> {
        self.parents_version.lock().ok().and_then(|v| *v)
    }

    fn install_parent_crls(&self, version: i64, crls: &[Vec<u8>]) -> Result<(), TlsError> {
        let mut current = self
            .parents_version
            .lock()
            .map_err(|_| TlsError::Material("lock poisoned".into()))?;
        if *current == Some(version) {
            return Ok(());
        }
        let config = build(&self.material, &self.material.identity.load(), crls)?;
        self.config.store(Arc::new(config));
        let first = current.is_none();
        *current = Some(version);
        if !first {
            tracing::info!(
                parent_updates = version,
                "TLS: new parent CRLs in force for new connections"
            );
        }
        Ok(())
    }
}
