//! TLS: rustls with an optional client certificate, verified against the CA and the current CRL. The
//! `ServerConfig` sits behind an `ArcSwap`; a new CRL swaps in a new config for new connections, keeping
//! the session cache so resumption survives the swap.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

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
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    sessions: Arc<dyn StoresServerSessions>,
}

/// The live TLS configuration.
pub struct TlsState {
    material: Material,
    config: ArcSwap<ServerConfig>,
    crl_version: Mutex<Option<(Option<i64>, i64)>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("crl_version", &self.crl_version)
            .finish_non_exhaustive()
    }
}

fn pem_err(path: &std::path::Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn build(m: &Material, crls: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let crls: Vec<CertificateRevocationListDer<'static>> = crls
        .iter()
        .map(|d| CertificateRevocationListDer::from(d.clone()))
        .collect();
    let verifier = WebPkiClientVerifier::builder(Arc::clone(&m.roots))
        .with_crls(crls)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let mut cfg = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.session_storage = Arc::clone(&m.sessions);
    Ok(cfg)
}

impl TlsState {
    /// Loads the server identity from the data directory and trusts `ca_chain` for client certificates.
    pub fn new(dir: &DataDir, ca_chain: &[Vec<u8>], crls: &[Vec<u8>]) -> Result<TlsState, TlsError> {
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
        let mut roots = RootCertStore::empty();
        for der in ca_chain {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| TlsError::Rustls(format!("CA certificate: {e}")))?;
        }
        // Send the CA chain after the server's own certificate, as puppetserver does.
        chain.extend(ca_chain.iter().map(|d| CertificateDer::from(d.clone())));
        let material = Material {
            chain,
            key,
            roots: Arc::new(roots),
            sessions: ServerSessionMemoryCache::new(4096),
        };
        let config = build(&material, crls)?;
        Ok(TlsState {
            material,
            config: ArcSwap::from_pointee(config),
            crl_version: Mutex::new(None),
        })
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Installs new CRLs (no-op when `version` is the one installed).
    pub fn update_crl(&self, version: (Option<i64>, i64), crls: &[Vec<u8>]) -> Result<(), TlsError> {
        let mut current = self
            .crl_version
            .lock()
            .map_err(|_| TlsError::Rustls("lock poisoned".into()))?;
        if *current == Some(version) {
            return Ok(());
        }
        let config = build(&self.material, crls)?;
        self.config.store(Arc::new(config));
        *current = Some(version);
        tracing::info!(crl_number = ?version.0, parent_updates = version.1, "TLS: new CRLs in force for new connections");
        Ok(())
    }
}
