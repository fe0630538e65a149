//! The two ways a command reaches the CA: the data directory's database directly (local mode) or the
//! HTTPS API with the admin certificate (remote mode, `--server`). Commands call these methods and do
//! not care which.

use anyhow::Context as _;
use std::path::PathBuf;

use ca_server::authority::{Authority, CertStatus, Expiring, Explanation, ListFilter, SignRequest};
use ca_server::ca::crl::Reason;
use ca_server::ca::csr::San;
use ca_server::ca::keys::{self, KeyType};
use ca_server::datadir::DataDir;
use ca_server::policy::SigningOptions;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::local;
use crate::remote::{Answer, Client};

/// Where the CA is.
pub enum Backend {
    /// The database and key of a data directory.
    Local(Box<Authority>),
    /// The HTTPS API.
    Remote(Client),
}

/// How to reach a remote CA.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// `https://host:port`.
    pub server: Option<String>,
    /// Client certificate (default: the data directory's admin certificate).
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// CA bundle to trust (default: the data directory's `ca_crt.pem`).
    pub cacert: Option<PathBuf>,
    /// Configuration file for local mode.
    pub config: Option<PathBuf>,
    /// `--ca-key-passphrase-file`, for local mode.
    pub key_passphrase_file: Option<PathBuf>,
}

/// Result of signing one name: the serial when known (local mode), or why not.
pub type SignResult = Result<Option<u64>, String>;

/// A refusal by the server, as an error.
fn status_error(a: &Answer) -> anyhow::Error {
    anyhow::Error::msg(status_text(a))
}

/// What the server said when it refused (its body), or its status.
fn status_text(a: &Answer) -> String {
    let body = a.text();
    let body = body.trim();
    if body.is_empty() {
        format!("the server answered {}", a.status)
    } else {
        body.to_string()
    }
}

fn json_body(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

const JSON: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json"),
];

impl Backend {
    /// Opens the backend the flags ask for.
    pub async fn open(dir: &DataDir, remote: &RemoteOptions) -> anyhow::Result<Backend> {
        let Some(server) = &remote.server else {
            let settings = local::settings(dir, remote.config.clone(), remote.key_passphrase_file.clone())?;
            return local::open(dir, settings)
                .await
                .map(|a| Backend::Local(Box::new(a)));
        };
        let cacert = remote.cacert.clone().unwrap_or_else(|| dir.ca_cert());
        let cert = remote.cert.clone().unwrap_or_else(|| dir.admin_cert());
        let key = match &remote.key {
            Some(k) => k.clone(),
            None => {
                // The admin certificate carries pp_cli_auth: its key must be as private as the CA key.
                let k = dir.admin_key();
                ca_server::datadir::check_private_key_mode(&k, "the admin key")?;
                k
            }
        };
        Client::new(server, &cacert, Some((&cert, &key))).map(Backend::Remote)
    }

    /// Releases the database (local mode).
    pub async fn close(&self) {
        if let Backend::Local(a) = self {
            a.store().close().await;
        }
    }

    /// Statuses.
    /// What expires within `within` (everything without it), soonest first.
    pub async fn expirations(
        &self,
        within: Option<time::Duration>,
        certificates: bool,
    ) -> anyhow::Result<Vec<Expiring>> {
        match self {
            Backend::Local(a) => a
                .expirations(within, certificates)
                .await
                .map_err(anyhow::Error::from),
            Backend::Remote(c) => {
                let query = within.map_or(String::new(), |w| format!("?within={}s", w.whole_seconds()));
                let a = c.get(&format!("/puppet-ca/v1/expirations{query}")).await?;
                if a.status != StatusCode::OK {
                    return Err(status_error(&a));
                }
                let mut v: Value = serde_json::from_slice(&a.body).context("bad JSON from the server")?;
                let Some(items) = v.get_mut("expiring").map(Value::take) else {
                    anyhow::bail!("the server listed no certificates: is the client certificate the admin's (pp_cli_auth)?");
                };
                let mut items: Vec<Expiring> =
                    serde_json::from_value(items).context("bad JSON from the server")?;
                // The server lists certificates for the admin in any case.
                items.retain(|i| certificates || i.kind != ca_server::authority::ExpiringKind::Certificate);
                Ok(items)
            }
        }
    }

    /// The window within which `ca list` marks certificates as expiring: the configured
    /// `expiry-warning` in local mode, 30 days against a server.
    pub fn expiry_window(&self) -> time::Duration {
        match self {
            Backend::Local(a) => a.settings().expiry_warning,
            Backend::Remote(_) => time::Duration::days(30),
        }
    }

    pub async fn list(&self, filter: ListFilter) -> anyhow::Result<Vec<CertStatus>> {
        match self {
            Backend::Local(a) => a.list(filter).await.map_err(anyhow::Error::from),
            Backend::Remote(c) => {
                let mut out = Vec::new();
                let fetch = |q: &'static str| {
                    let c = c.clone();
                    async move {
                        let a = c
                            .get(&format!("/puppet-ca/v1/certificate_statuses/any_key{q}"))
                            .await?;
                        if a.status != StatusCode::OK {
                            return Err(status_error(&a));
                        }
                        serde_json::from_slice::<Vec<CertStatus>>(&a.body).context("bad JSON from the server")
                    }
                };
                if filter.requested {
                    out.extend(fetch("?state=requested").await?);
                }
                if filter.signed {
                    out.extend(fetch("?state=signed").await?);
                }
                if filter.revoked {
                    out.extend(fetch("?state=revoked").await?);
                }
                Ok(out)
            }
        }
    }

    /// Submits a CSR under `name`.
    pub async fn submit(&self, name: &str, body: &[u8]) -> anyhow::Result<()> {
        match self {
            Backend::Local(a) => a
                .submit(&local::actor(), name, body)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from),
            Backend::Remote(c) => {
                let path = format!("/puppet-ca/v1/certificate_request/{name}");
                let a = c
                    .send(
                        Method::PUT,
                        &path,
                        &[("content-type", "text/plain")],
                        body.to_vec(),
                    )
                    .await?;
                if a.status.is_success() {
                    Ok(())
                } else {
                    Err(status_error(&a))
                }
            }
        }
    }

    /// Signs each name.
    pub async fn sign(
        &self,
        names: &[String],
        req: SignRequest,
    ) -> anyhow::Result<Vec<(String, SignResult)>> {
        match self {
            Backend::Local(a) => {
                // One transaction for the whole batch.
                let o = a.sign_many(&local::actor(), names, req).await?;
                Ok(names
                    .iter()
                    .map(|n| {
                        let r = if let Some((_, serial)) = o.signed.iter().find(|(s, _)| s == n) {
                            Ok(Some(*serial))
                        } else if let Some((_, why)) = o.errors.iter().find(|(s, _)| s == n) {
                            Err(why.clone())
                        } else {
                            Err(format!("Could not find certificate request for {n}"))
                        };
                        (n.clone(), r)
                    })
                    .collect())
            }
            Backend::Remote(c) if req.ttl.is_some() => {
                let ttl = req.ttl.map(|t| t.whole_seconds()).unwrap_or_default();
                let mut out = Vec::new();
                for n in names {
                    let body = json_body(&json!({"desired_state": "signed", "cert_ttl": ttl}));
                    let a = c
                        .send(
                            Method::PUT,
                            &format!("/puppet-ca/v1/certificate_status/{n}"),
                            &JSON,
                            body,
                        )
                        .await?;
                    let r = if a.status.is_success() {
                        Ok(None)
                    } else {
                        Err(status_text(&a))
                    };
                    out.push((n.clone(), r));
                }
                Ok(out)
            }
            Backend::Remote(c) => {
                let body = json!({
                    "certnames": names,
                    "allow-dns-alt-names": req.options.allow_dns_alt_names,
                    "allow-authorization-extensions": req.options.allow_authorization_extensions,
                });
                let a = c
                    .send(Method::POST, "/puppet-ca/v1/sign", &JSON, json_body(&body))
                    .await?;
                if a.status != StatusCode::OK {
                    return Err(status_error(&a));
                }
                let v: Value = serde_json::from_slice(&a.body).context("bad JSON from the server")?;
                let has = |k: &str, n: &str| v[k].as_array().is_some_and(|l| l.iter().any(|x| x == n));
                Ok(names
                    .iter()
                    .map(|n| {
                        let r = if has("signed", n) {
                            Ok(None)
                        } else if has("no-csr", n) {
                            Err(format!("Could not find certificate request for {n}"))
                        } else {
                            let why = v["signing-error-messages"][n.as_str()]
                                .as_str()
                                .unwrap_or("refused by the server");
                            Err(why.to_string())
                        };
                        (n.clone(), r)
                    })
                    .collect())
            }
        }
    }

    /// Explains the verdict for a pending request.
    pub async fn explain(&self, name: &str, flags: SigningOptions) -> anyhow::Result<Explanation> {
        match self {
            Backend::Local(a) => a.explain(name, flags).await.map_err(anyhow::Error::from),
            Backend::Remote(c) => {
                let path = format!(
                    "/puppet-ca/v1/certificate_status/{name}?explain=true&allow-dns-alt-names={}&allow-authorization-extensions={}",
                    flags.allow_dns_alt_names, flags.allow_authorization_extensions
                );
                let a = c.get(&path).await?;
                if a.status != StatusCode::OK {
                    return Err(status_error(&a));
                }
                serde_json::from_slice(&a.body).context("bad JSON from the server")
            }
        }
    }

    /// Prunes expired entries from the CRL (local mode only).
    pub async fn prune(&self, dry_run: bool) -> anyhow::Result<Vec<u64>> {
        match self {
            Backend::Local(a) => a
                .prune(&local::actor(), dry_run)
                .await
                .map_err(anyhow::Error::from),
            Backend::Remote(_) => Err(anyhow::anyhow!(
                "prune works on the data directory only (no --server)"
            )),
        }
    }

    /// Revokes a name: the serials revoked now (local mode; empty = already revoked), None when remote.
    pub async fn revoke(&self, name: &str, reason: Reason) -> anyhow::Result<Option<Vec<u64>>> {
        match self {
            Backend::Local(a) => a
                .revoke(&local::actor(), name, reason)
                .await
                .map(Some)
                .map_err(anyhow::Error::from),
            Backend::Remote(c) => {
                let body = json_body(&json!({"desired_state": "revoked", "reason": reason.to_string()}));
                let a = c
                    .send(
                        Method::PUT,
                        &format!("/puppet-ca/v1/certificate_status/{name}"),
                        &JSON,
                        body,
                    )
                    .await?;
                if a.status.is_success() {
                    Ok(None)
                } else {
                    Err(status_error(&a))
                }
            }
        }
    }

    /// Cleans a name; returns a summary.
    pub async fn clean(&self, name: &str) -> anyhow::Result<String> {
        match self {
            Backend::Local(a) => {
                let c = a.clean(&local::actor(), name).await?;
                let mut what = Vec::new();
                if !c.revoked.is_empty() {
                    let list: Vec<String> = c.revoked.iter().map(u64::to_string).collect();
                    what.push(format!("revoked serial {}", list.join(", ")));
                }
                if c.removed_certificates > 0 {
                    what.push("removed the certificate".to_string());
                }
                if c.removed_request {
                    what.push("removed the pending request".to_string());
                }
                Ok(what.join(", "))
            }
            Backend::Remote(c) => {
                let body = json_body(&json!({"certnames": [name]}));
                let a = c.send(Method::PUT, "/puppet-ca/v1/clean", &JSON, body).await?;
                let text = a.text();
                if a.status == StatusCode::OK && text.starts_with("Successfully") {
                    Ok("revoked and removed".to_string())
                } else if a.status == StatusCode::OK {
                    Err(anyhow::anyhow!("Nothing is known for {name}"))
                } else {
                    Err(status_error(&a))
                }
            }
        }
    }

    /// Makes a key and a certificate for `name`: (key PEM, certificate DER, serial when known).
    pub async fn generate(
        &self,
        name: &str,
        sans: &[San],
        key_type: KeyType,
        ttl: Option<time::Duration>,
    ) -> anyhow::Result<(String, Vec<u8>, Option<u64>)> {
        match self {
            Backend::Local(a) => {
                let (key, issued) = a.generate(&local::actor(), name, sans, key_type, ttl).await?;
                Ok((key, issued.der, Some(issued.serial)))
            }
            Backend::Remote(_) => {
                // As `puppetserver ca generate`: key and CSR here, the CA signs; the alt names given on
                // the command line are the admin's permission.
                let key = tokio::task::spawn_blocking(move || keys::generate(key_type)).await??;
                let mut params = rcgen::CertificateParams::default();
                params.distinguished_name.push(rcgen::DnType::CommonName, name);
                let mut all = vec![San::Dns(name.to_string())];
                all.extend(sans.iter().cloned());
                for s in &all {
                    params.subject_alt_names.push(match s {
                        San::Dns(d) => rcgen::SanType::DnsName(
                            d.as_str()
                                .try_into()
                                .map_err(|_| anyhow::anyhow!("invalid DNS name {d}"))?,
                        ),
                        San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
                        San::Other(o) => anyhow::bail!("unsupported alt name {o}"),
                    });
                }
                let csr = params.serialize_request(&key)?.pem()?;
                self.submit(name, csr.as_bytes()).await?;
                let req = SignRequest {
                    options: SigningOptions {
                        allow_dns_alt_names: !sans.is_empty(),
                        allow_authorization_extensions: false,
                    },
                    ttl,
                };
                let results = self.sign(&[name.to_string()], req).await?;
                if let Some((_, Err(e))) = results.into_iter().next() {
                    return Err(anyhow::Error::msg(e));
                }
                let der = self
                    .certificate(name)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no certificate for {name} after signing"))?;
                Ok((key.serialize_pem(), der, None))
            }
        }
    }

    async fn fetch_pem(&self, path: &str) -> anyhow::Result<Option<String>> {
        let Backend::Remote(c) = self else { return Ok(None) };
        let a = c
            .send(Method::GET, path, &[("accept", "text/plain")], Vec::new())
            .await?;
        match a.status {
            StatusCode::OK => Ok(Some(a.text())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(&a)),
        }
    }

    /// DER of `name`'s current certificate.
    pub async fn certificate(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Backend::Local(a) => Ok(a.store().current_certificate(name).await?.map(|c| c.der)),
            Backend::Remote(_) => Ok(self
                .fetch_pem(&format!("/puppet-ca/v1/certificate/{name}"))
                .await?
                .and_then(|p| pem::parse(p).ok())
                .map(pem::Pem::into_contents)),
        }
    }

    /// DER of `name`'s pending request.
    pub async fn request(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Backend::Local(a) => Ok(a.store().request(name).await?.map(|r| r.csr_der)),
            Backend::Remote(_) => Ok(self
                .fetch_pem(&format!("/puppet-ca/v1/certificate_request/{name}"))
                .await?
                .and_then(|p| pem::parse(p).ok())
                .map(pem::Pem::into_contents)),
        }
    }

    /// The CA chain PEM.
    pub async fn ca_chain(&self) -> anyhow::Result<String> {
        match self {
            Backend::Local(a) => Ok(a.signer().chain_pem.clone()),
            Backend::Remote(_) => self
                .fetch_pem("/puppet-ca/v1/certificate/ca")
                .await?
                .ok_or_else(|| anyhow::anyhow!("the server has no CA certificate")),
        }
    }

    /// The CRL chain as served: our CRL first, then the parents' (DER each).
    pub async fn crl(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            Backend::Local(a) => {
                let crl = a.crl().await?;
                let mut chain = vec![crl.row().der.clone()];
                chain.extend(crl.parent_crls().iter().cloned());
                Ok(chain)
            }
            Backend::Remote(_) => {
                let pem_text = self
                    .fetch_pem("/puppet-ca/v1/certificate_revocation_list/ca")
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the server has no CRL"))?;
                let blocks = pem::parse_many(pem_text)?;
                Ok(blocks.into_iter().map(pem::Pem::into_contents).collect())
            }
        }
    }
}
