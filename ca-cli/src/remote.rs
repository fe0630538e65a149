//! Remote mode: the CA's HTTPS API with a client certificate (the admin certificate), over rustls.
//! One connection per request, as the puppetserver CLI does.

use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTPS client for one server.
#[derive(Clone)]
pub struct Client {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: Arc<ClientConfig>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

impl Client {
    /// `url` is `https://host[:port]`; `cacert` the CA bundle to trust; `identity` the client cert and key.
    pub fn new(url: &str, cacert: &Path, identity: Option<(&Path, &Path)>) -> anyhow::Result<Client> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| anyhow::anyhow!("--server must be an https:// URL, not '{url}'"))?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse().map_err(|_| anyhow::anyhow!("bad port in '{url}'"))?,
            ),
            _ => (rest.to_string(), 8140),
        };
        let mut roots = RootCertStore::empty();
        let ca_pem = read(cacert)?;
        for c in CertificateDer::pem_slice_iter(&ca_pem) {
            let c = c.with_context(|| format!("{}", cacert.display()))?;
            roots.add(c).with_context(|| format!("{}", cacert.display()))?;
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let cert_pem = read(cert)?;
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("{}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                    .with_context(|| format!("{}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("client certificate")?
            }
        };
        let server_name =
            ServerName::try_from(host.clone()).map_err(|_| anyhow::anyhow!("bad host name in '{url}'"))?;
        Ok(Client {
            host,
            port,
            server_name,
            tls: Arc::new(config),
        })
    }

    /// Sends one request on a new connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", self.host, self.port))?;
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(self.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS with {}:{} failed", self.host, self.port))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}:{}", self.host, self.port))
            .header("user-agent", "ca-cli");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).context("request")?;
        let res = sender.send_request(req).await.context("HTTP")?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.context("HTTP body")?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// GET.
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, &[("accept", "application/json")], Vec::new())
            .await
    }
}
