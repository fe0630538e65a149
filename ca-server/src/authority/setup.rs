//! `ca setup`: a new CA (self-signed, or root + intermediate), its first CRLs, and the server's and the
//! admin's certificates (made again at start when missing, e.g. after an import).

use std::sync::Arc;

use rcgen::KeyPair;

use crate::ca::signer::CaKey;
use crate::ca::token::TokenKey;
use time::Duration;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{blocking, unix, Authority, AuthorityError, CaSettings, Issued};
use crate::ca::crl::sign_crl;
use crate::ca::csr::San;
use crate::ca::keys::{self, KeyType};
use crate::ca::passphrase::Passphrase;
use crate::ca::{names, pem_encode, signer, CaSigner};
use crate::clock::Clock;
use crate::datadir::{write_new, DataDir};
use crate::storage::{AuditRecord, Store};

/// Name of the admin client certificate made by setup.
pub const ADMIN_CERTNAME: &str = "ca-admin";

/// This host's fully qualified name, lowercased (`hostname -f`, else the kernel's hostname).
pub fn host_fqdn() -> String {
    let fqdn = std::process::Command::new("hostname")
        .arg("-f")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    fqdn.or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
    })
    .unwrap_or_else(|| "localhost".into())
    .to_ascii_lowercase()
}

/// What `setup` is asked to make.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The server's certname.
    pub certname: String,
    /// Extra alt names for the server certificate (`DNS:puppet` and `DNS:<certname>` are always there).
    pub dns_alt_names: Vec<San>,
    /// Key type of all keys made.
    pub key_type: KeyType,
    /// CA subject CN; default `Puppet CA: <certname>`.
    pub ca_name: Option<String>,
    /// CA validity, default 15 years.
    pub ca_ttl: Duration,
    /// Root + intermediate (like `puppetserver ca setup`) instead of one self-signed CA.
    pub intermediate: bool,
    /// Key type of the server's TLS certificate (default: `key_type`). EC P-256 makes TLS handshakes
    /// far cheaper than RSA-4096, and agents accept it whatever the CA's key.
    pub server_key_type: Option<KeyType>,
    /// Write the CA key (and the root key) encrypted with the passphrase of
    /// [`CaSettings::key_passphrase`], which must then be given.
    pub encrypt_key: bool,
}

impl SetupOptions {
    /// Defaults for `certname`.
    pub fn new(certname: &str) -> Self {
        SetupOptions {
            certname: certname.to_string(),
            dns_alt_names: Vec::new(),
            key_type: KeyType::default(),
            ca_name: None,
            ca_ttl: Duration::days(15 * 365),
            intermediate: false,
            server_key_type: None,
            encrypt_key: false,
        }
    }
}

/// What `setup` made.
#[derive(Debug, Clone)]
pub struct SetupReport {
    /// The CA's subject CN.
    pub ca_name: String,
    /// The root's subject CN, for an intermediate CA.
    pub root_name: Option<String>,
    /// The server's certname.
    pub server_certname: String,
    /// The admin certificate's name.
    pub admin_certname: String,
}

fn io_err(what: &str, e: std::io::Error) -> AuthorityError {
    AuthorityError::rejected(format!("cannot write {what}"), e)
}

/// Generates a key and its PEM for the data directory, encrypted when a passphrase is given.
async fn generate_key(
    kt: KeyType,
    passphrase: Option<Passphrase>,
) -> Result<(KeyPair, String), AuthorityError> {
    blocking(move || {
        let key = keys::generate(kt)?;
        let pem = match &passphrase {
            Some(p) => keys::encrypt_pem(&key, p)?,
            None => key.serialize_pem(),
        };
        Ok((key, pem))
    })
    .await
}

fn random_hex(bytes: usize) -> Result<String, AuthorityError> {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| AuthorityError::Internal("no randomness".into()))?;
    Ok(crate::ca::digest::hex(&b))
}

/// Creates a CA in `dir`. Refuses when a CA (database or key) is already there.
pub async fn setup(
    dir: &DataDir,
    opts: &SetupOptions,
    settings: CaSettings,
    clock: Arc<dyn Clock>,
) -> Result<(Authority, SetupReport), AuthorityError> {
    if dir.has_ca() {
        return Err(AuthorityError::Invalid(format!(
            "a CA already exists in {}; refusing to touch it",
            dir.root().display()
        )));
    }
    if let Some(url) = dir.database_url() {
        if Store::holds_ca(dir).await? {
            return Err(AuthorityError::Invalid(format!(
                "the database {} already holds a CA; to run another replica of it, copy ca_key.pem \
                 (mode 0600) from the first replica into {} and start ca-server with this --database-url",
                crate::storage::redact_url(url),
                dir.root().display()
            )));
        }
    }
    names::validate_certname(&opts.certname)?;
    let ca_name = opts
        .ca_name
        .clone()
        .unwrap_or_else(|| format!("Puppet CA: {}", opts.certname));
    if ca_name.trim().is_empty() || ca_name.len() > 200 {
        return Err(AuthorityError::Invalid(
            "the CA name must be 1 to 200 characters".into(),
        ));
    }
    let passphrase = if opts.encrypt_key {
        Some(settings.key_passphrase.require("encrypting the CA key")?)
    } else {
        None
    };
    let kt = opts.key_type;
    let now = clock.now();
    // In the token when one is configured (a key already there under the label is used), else a
    // key file.
    let (ca_key, key_pem): (CaKey, Option<String>) = match &settings.pkcs11 {
        Some(p) => {
            let cfg = p.config()?;
            let (key, made) = blocking(move || TokenKey::open_or_generate(&cfg, kt)).await?;
            if !key.never_extractable()? {
                tracing::warn!(
                    token = %p.token_label,
                    key = %p.key_label,
                    "the CA key in the token is extractable or not sensitive: it can leave the token"
                );
            }
            tracing::info!(
                token = %p.token_label,
                key = %p.key_label,
                "{}",
                if made { "CA key generated in the token" } else { "using the CA key already in the token" }
            );
            (CaKey::Token(key), None)
        }
        None => {
            let (key, pem) = generate_key(kt, passphrase.clone()).await?;
            (CaKey::File(key), Some(pem))
        }
    };
    // Root + intermediate: the root signs the intermediate and its own (empty) CRL; its key stays in
    // root_key.pem for CRL upkeep (move it offline if you prefer; then upload the root's CRLs).
    let (chain_pem, root) = if opts.intermediate {
        let (root_key, root_key_pem) = generate_key(kt, passphrase).await?;
        let root_name = format!("Puppet Root CA: {}", random_hex(7)?);
        let root_der = signer::self_signed_ca(&root_name, &root_key, 1, now, opts.ca_ttl)?;
        let root_signer = CaSigner::new(&pem_encode("CERTIFICATE", &root_der), root_key)?;
        let inter_der = signer::intermediate_ca(&ca_name, &ca_key, 2, now, opts.ca_ttl, &root_signer)?;
        let this_update = now - Duration::seconds(1);
        let root_crl = sign_crl(&root_signer, 0, this_update, now + settings.crl_lifetime, &[])?;
        let chain = format!(
            "{}{}",
            pem_encode("CERTIFICATE", &inter_der),
            pem_encode("CERTIFICATE", &root_der)
        );
        (chain, Some((root_name, root_key_pem, root_crl)))
    } else {
        let ca_der = signer::self_signed_ca(&ca_name, &ca_key, 1, now, opts.ca_ttl)?;
        (pem_encode("CERTIFICATE", &ca_der), None)
    };
    let signer = CaSigner::new(&chain_pem, ca_key)?;
    crate::datadir::create_private_dir(dir.root()).map_err(|e| io_err("the data directory", e))?;
    if let Some(key_pem) = &key_pem {
        write_new(&dir.ca_key(), key_pem.as_bytes(), 0o600).map_err(|e| io_err("the CA key", e))?;
    }
    if let Some((_, root_key_pem, _)) = &root {
        write_new(&dir.root_key(), root_key_pem.as_bytes(), 0o600).map_err(|e| io_err("the root key", e))?;
    }

    let store = Store::open_for(dir, true).await?;
    let mut tx = store.write().await?;
    let first_serial = if root.is_some() { 3 } else { 2 };
    tx.init_ca(&signer.chain_pem, &signer.cert.key_id, first_serial, unix(now))
        .await?;
    if let Some((_, _, root_crl)) = &root {
        tx.set_parent_crl(1, root_crl).await?;
    }
    tx.commit().await?;
    let authority = Authority::assemble(store, signer, Default::default(), settings, clock, dir);
    let mut tx = authority.store.write().await?;
    let crl = authority.publish_crl(&mut tx, now).await?;
    tx.audit(
        &AuditRecord::ok(unix(now), "setup", "setup")
            .serial(1)
            .detail(&ca_name),
    )
    .await?;
    tx.commit().await?;
    authority.install_crl(crl);
    write_new(&dir.ca_cert(), authority.signer.chain_pem.as_bytes(), 0o644)
        .map_err(|e| io_err("the CA certificate", e))?;
    authority
        .ensure_identities(
            &opts.certname,
            &opts.dns_alt_names,
            kt,
            opts.server_key_type.unwrap_or(kt),
        )
        .await?;
    Ok((
        authority,
        SetupReport {
            ca_name,
            root_name: root.map(|r| r.0),
            server_certname: opts.certname.clone(),
            admin_certname: ADMIN_CERTNAME.to_string(),
        },
    ))
}

impl Authority {
    /// Issues the server's TLS certificate (`DNS:puppet`, `DNS:<certname>` and `alt_names`, with
    /// `pp_cli_auth` like puppetserver's own) and the admin client certificate, each only when its files
    /// are missing. Returns the certnames issued.
    pub async fn ensure_identities(
        &self,
        certname: &str,
        alt_names: &[San],
        key_type: KeyType,
        server_key_type: KeyType,
    ) -> Result<Vec<String>, AuthorityError> {
        let dir = self.dir.clone();
        let mut server_alts = vec![San::Dns("puppet".into())];
        server_alts.extend(alt_names.iter().cloned());
        let wanted = [
            (
                certname,
                server_alts,
                dir.server_cert(),
                dir.server_key(),
                server_key_type,
                "the server key",
            ),
            (
                ADMIN_CERTNAME,
                Vec::new(),
                dir.admin_cert(),
                dir.admin_key(),
                key_type,
                "the admin key",
            ),
        ];
        let mut made = Vec::new();
        for (name, alts, cert_path, key_path, key_type, what) in wanted {
            if cert_path.exists() && key_path.exists() {
                // Both certificates carry pp_cli_auth: their keys are as sensitive as the CA key.
                super::check_private_key(&key_path, what)?;
                continue;
            }
            // A replica joining a shared (PostgreSQL) database: the admin certificate belongs to the
            // first replica's data directory; a second one would supersede it. Copy admin/ for
            // remote administration from this host.
            if name == ADMIN_CERTNAME && self.store.backend() == crate::storage::Backend::Postgres {
                let current = self.store.current_certificate(ADMIN_CERTNAME).await?;
                if current.is_some_and(|c| c.revoked.is_none()) {
                    tracing::info!(
                        "the shared database already holds the admin certificate: none issued here \
                         (copy admin/ from the first replica to administer remotely from this host)"
                    );
                    continue;
                }
            }
            let permit = Authority::generated_permit(name, &alts, true)?;
            let key = blocking(move || keys::generate(key_type)).await?;
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            let mut tx = self.store.write().await?;
            let issued = self
                .issue(
                    &mut tx,
                    "setup",
                    spki,
                    permit,
                    self.settings().cert_ttl,
                    self.now(),
                )
                .await?;
            tx.commit().await?;
            let _ = std::fs::remove_file(&cert_path);
            let _ = std::fs::remove_file(&key_path);
            write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)
                .map_err(|e| io_err("a private key", e))?;
            write_new(&cert_path, issued.pem().as_bytes(), 0o644).map_err(|e| io_err("a certificate", e))?;
            made.push(name.to_string());
        }
        Ok(made)
    }
}

/// The certificates of the data directory that the CA issues to itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnCertificate {
    /// `server/cert.pem`: what TLS presents.
    Server,
    /// `admin/cert.pem`: the `ca` CLI's remote mode.
    Admin,
}

impl Authority {
    /// Issues a new certificate for the server's (or the admin's) key, with the same names as the
    /// current one and a new validity, and puts it in place of `server/cert.pem` (`admin/cert.pem`)
    /// atomically. A running server serves it after a reload. The old certificate is not revoked.
    pub async fn renew_own_certificate(
        &self,
        actor: &str,
        which: OwnCertificate,
    ) -> Result<Issued, AuthorityError> {
        let (cert_path, what) = match which {
            OwnCertificate::Server => (self.dir.server_cert(), "the server certificate"),
            OwnCertificate::Admin => (self.dir.admin_cert(), "the admin certificate"),
        };
        let pem_text = std::fs::read_to_string(&cert_path).map_err(|e| io_err(what, e))?;
        let der = pem::parse(&pem_text)
            .map_err(|e| AuthorityError::rejected(format!("{}", cert_path.display()), e))?
            .into_contents();
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| AuthorityError::rejected(format!("{}", cert_path.display()), e))?;
        let certname = crate::ca::names::common_name(cert.subject())
            .ok_or_else(|| AuthorityError::Invalid(format!("{}: no common name", cert_path.display())))?;
        let alts: Vec<San> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) if *d != certname => Some(San::Dns((*d).to_string())),
                        GeneralName::IPAddress(ip) => match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip).ok().map(|a| San::Ip(a.into())),
                            16 => <[u8; 16]>::try_from(*ip).ok().map(|a| San::Ip(a.into())),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let permit = Authority::generated_permit(&certname, &alts, true)?;
        let spki = cert.public_key().raw.to_vec();
        let mut tx = self.store.write().await?;
        let issued = self
            .issue(&mut tx, actor, spki, permit, self.settings().cert_ttl, self.now())
            .await?;
        tx.commit().await?;
        crate::datadir::replace_file(&cert_path, issued.pem().as_bytes(), 0o644)
            .map_err(|e| io_err(what, e))?;
        Ok(issued)
    }
}
