//! `ca setup`: a new self-signed CA, its first CRL, the server's and the admin's certificates.

use std::sync::Arc;

use time::Duration;

use super::{blocking, unix, Authority, AuthorityError, CaSettings};
use crate::ca::csr::San;
use crate::ca::keys::{self, KeyType};
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
        }
    }
}

/// What `setup` made.
#[derive(Debug, Clone)]
pub struct SetupReport {
    /// The CA's subject CN.
    pub ca_name: String,
    /// The server's certname.
    pub server_certname: String,
    /// The admin certificate's name.
    pub admin_certname: String,
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
    let kt = opts.key_type;
    let ca_key = blocking(move || keys::generate(kt)).await?;
    let now = clock.now();
    let ca_der = signer::self_signed_ca(&ca_name, &ca_key, 1, now, opts.ca_ttl)?;
    let chain_pem = pem_encode("CERTIFICATE", &ca_der);
    let key_pem = ca_key.serialize_pem();
    let signer = CaSigner::new(&chain_pem, ca_key)?;
    let io = |what: &str, e: std::io::Error| AuthorityError::Invalid(format!("cannot write {what}: {e}"));
    crate::datadir::create_private_dir(dir.root()).map_err(|e| io("the data directory", e))?;
    write_new(&dir.ca_key(), key_pem.as_bytes(), 0o600).map_err(|e| io("the CA key", e))?;

    let store = Store::open(&dir.db(), true).await?;
    let mut tx = store.write().await?;
    tx.init_ca(&signer.chain_pem, &signer.cert.key_id, 2, unix(now))
        .await?;
    tx.commit().await?;
    let authority = Authority {
        store,
        signer: Arc::new(signer),
        settings,
        clock,
        autosign_cache: Arc::default(),
    };

    let mut tx = authority.store.write().await?;
    authority.publish_crl(&mut tx).await?;
    let actor = "setup";
    tx.audit(
        &AuditRecord::ok(unix(now), actor, "setup")
            .serial(1)
            .detail(&ca_name),
    )
    .await?;

    let mut server_alts = vec![San::Dns("puppet".into())];
    server_alts.extend(opts.dns_alt_names.iter().cloned());
    let server_permit = Authority::generated_permit(&opts.certname, &server_alts, true)?;
    let admin_permit = Authority::generated_permit(ADMIN_CERTNAME, &[], true)?;
    let mut identities = Vec::new();
    for permit in [server_permit, admin_permit] {
        let key = blocking(move || keys::generate(kt)).await?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let issued = authority
            .issue(&mut tx, actor, spki, permit, authority.settings.cert_ttl)
            .await?;
        identities.push((key.serialize_pem(), issued.pem()));
    }
    tx.commit().await?;

    let files = [
        (dir.server_key(), identities[0].0.as_str(), 0o600),
        (dir.server_cert(), identities[0].1.as_str(), 0o644),
        (dir.admin_key(), identities[1].0.as_str(), 0o600),
        (dir.admin_cert(), identities[1].1.as_str(), 0o644),
        (dir.ca_cert(), authority.signer.chain_pem.as_str(), 0o644),
    ];
    for (path, contents, mode) in files {
        write_new(&path, contents.as_bytes(), mode).map_err(|e| io(&path.display().to_string(), e))?;
    }
    Ok((
        authority,
        SetupReport {
            ca_name,
            server_certname: opts.certname.clone(),
            admin_certname: ADMIN_CERTNAME.to_string(),
        },
    ))
}
