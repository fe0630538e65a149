//! HTTPS client for the benchmark: keep-alive connections (one per worker), or a new connection per
//! request for the handshake phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where and as whom.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    name: ServerName<'static>,
    anonymous: Arc<ClientConfig>,
    admin: Arc<ClientConfig>,
    /// No session resumption: every connection is a full handshake.
    full: Arc<ClientConfig>,
    /// The identity, without session resumption (the certificate is verified on every connection).
    admin_full: Arc<ClientConfig>,
}

fn config(roots: &RootCertStore, identity: Option<(&[u8], &[u8])>) -> Result<ClientConfig, String> {
    let b = ClientConfig::builder().with_root_certificates(roots.clone());
    let mut cfg = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| e.to_string())?;
            b.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
        }
    };
    cfg.resumption = rustls::client::Resumption::in_memory_sessions(256);
    Ok(cfg)
}

impl Target {
    pub fn new(host: &str, port: u16, cacert: &[u8], admin: (&[u8], &[u8])) -> Result<Target, String> {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(cacert) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        Ok(Target {
            host: host.to_string(),
            port,
            name: ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?,
            anonymous: Arc::new(config(&roots, None)?),
            full: Arc::new({
                let mut c = config(&roots, None)?;
                c.resumption = rustls::client::Resumption::disabled();
                c
            }),
            admin: Arc::new(config(&roots, Some(admin))?),
            admin_full: Arc::new({
                let mut c = config(&roots, Some(admin))?;
                c.resumption = rustls::client::Resumption::disabled();
                c
            }),
        })
    }

    /// Opens one keep-alive connection.
    pub async fn connect(&self, admin: bool) -> Result<Conn, String> {
        self.connect_with(if admin { &self.admin } else { &self.anonymous })
            .await
    }

    /// Opens a connection with a full TLS handshake (no resumption).
    pub async fn connect_full(&self) -> Result<Conn, String> {
        self.connect_with(&self.full).await
    }

    /// Opens a connection with the identity (`admin`) and a full TLS handshake: the server verifies
    /// the certificate again.
    pub async fn connect_full_as_identity(&self) -> Result<Conn, String> {
        self.connect_with(&self.admin_full).await
    }

    async fn connect_with(&self, cfg: &Arc<ClientConfig>) -> Result<Conn, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(Arc::clone(cfg))
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            host: format!("{}:{}", self.host, self.port),
        })
    }
}

/// One keep-alive connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

/// A response's status, its body and `Last-Modified`, and how long it took (body read in full).
pub struct Reply {
    pub status: StatusCode,
    pub elapsed: Duration,
    pub body: Bytes,
    pub last_modified: Option<String>,
}

impl Conn {
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let started = Instant::now();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let res = self.sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let last_modified = res
            .headers()
            .get(hyper::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            elapsed: started.elapsed(),
            body,
            last_modified,
        })
    }
}
