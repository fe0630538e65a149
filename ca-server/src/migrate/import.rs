//! `ca import --cadir DIR`: a puppetserver cadir or a Puppet 3 `ssldir/ca`, checked for consistency,
//! into a data directory. Safe to re-run: what is already there is kept.

use std::path::Path;
use std::sync::Arc;

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::layout::{inventory_serial, parse_serial_file, pem_files, Cadir, REQUIRED};
use crate::authority::{Authority, AuthorityError, CaSettings};
use crate::ca::crl::Reason;
use crate::ca::signer::{parse_cert_bundle, CaCert};
use crate::ca::{csr, keys, names, CaSigner};
use crate::clock::Clock;
use crate::datadir::{create_private_dir, write_new, DataDir};
use crate::storage::{AuditRecord, CertRow, CrlRow, Store};

/// What an import found and did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// The signing CA's CN.
    pub ca_name: String,
    /// Certificates in the chain (2 for root + intermediate).
    pub chain_len: usize,
    /// Whether the CA key was encrypted (Puppet 3, `private/ca.pass`).
    pub key_was_encrypted: bool,
    /// Whether the data directory's CA key is encrypted (with our passphrase) after the import.
    pub key_encrypted: bool,
    /// Signed certificates found / newly stored.
    pub signed: (usize, usize),
    /// Pending requests found / newly stored.
    pub requests: (usize, usize),
    /// Revoked serials in the CA's CRL.
    pub revoked: usize,
    /// The CA's CRL number.
    pub crl_number: u64,
    /// Next serial to issue after the import.
    pub next_serial: u64,
    /// Lines in inventory.txt.
    pub inventory: usize,
    /// Infrastructure nodes (infra_inventory.txt).
    pub infra_nodes: usize,
    /// Things skipped, with why.
    pub warnings: Vec<String>,
}

fn bad(msg: impl Into<String>) -> AuthorityError {
    AuthorityError::Invalid(msg.into())
}

fn read(path: &Path) -> Result<String, AuthorityError> {
    std::fs::read_to_string(path)
        .map_err(|e| AuthorityError::rejected(format!("cannot read {}", path.display()), e))
}

fn crl_aki(crl: &CertificateRevocationList<'_>) -> Option<Vec<u8>> {
    crate::ca::digest::authority_key_id(crl.extensions())
}

struct Signed {
    name: String,
    row: CertRow,
}

/// Imports `cadir` into `dir` (which may hold the same CA already; never a different one). The CA key
/// (and a root key) is written encrypted with the passphrase of `settings` when `encrypt_key` is set,
/// or when the old CA's key was encrypted and a passphrase is given; else unencrypted.
pub async fn import(
    dir: &DataDir,
    cadir_path: &Path,
    settings: CaSettings,
    clock: Arc<dyn Clock>,
    encrypt_key: bool,
) -> Result<(Authority, ImportReport), AuthorityError> {
    let cadir = Cadir(cadir_path);
    let present: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|f| cadir.file(f).exists())
        .collect();
    if present.is_empty() {
        return Err(bad(format!(
            "no Puppet CA in {}: expected {}",
            cadir_path.display(),
            REQUIRED.join(", ")
        )));
    }
    if present.len() < REQUIRED.len() {
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|f| !present.contains(f))
            .collect();
        return Err(bad(format!(
            "partial CA state in {}: found {}, missing {}; refusing to import",
            cadir_path.display(),
            present.join(", "),
            missing.join(", ")
        )));
    }
    let mut report = ImportReport::default();

    // The CA: chain, key (decrypted with private/ca.pass when Puppet 3 encrypted it), and their fit.
    let chain_pem = read(&cadir.file("ca_crt.pem"))?;
    let chain = parse_cert_bundle(&chain_pem)?;
    let key_text = read(&cadir.file("ca_key.pem"))?;
    report.key_was_encrypted = key_text.contains("ENCRYPTED");
    let password = if report.key_was_encrypted {
        Some(
            read(&cadir.password())?
                .trim_end_matches(['\n', '\r'])
                .as_bytes()
                .to_vec(),
        )
    } else {
        None
    };
    let key = keys::load_pem_with_password(&key_text, password.as_deref())?;
    let passphrase = if encrypt_key || (report.key_was_encrypted && settings.key_passphrase.is_given()) {
        Some(settings.key_passphrase.require("encrypting the CA key")?)
    } else {
        None
    };
    let key_pem_out = match &passphrase {
        Some(p) => keys::encrypt_pem(&key, p)?,
        None if report.key_was_encrypted => keys::pkcs8_pem(&key)?.to_string(),
        None => key_text.clone(),
    };
    // For a token: the key as it goes into it (the file is then not written).
    let for_token = match &settings.pkcs11 {
        Some(p) => Some((
            p.config()?,
            keys::pkcs8_der(&key)?,
            rcgen::PublicKeyData::der_bytes(&key).to_vec(),
        )),
        None => None,
    };
    let signer = CaSigner::new(&chain_pem, key)?;
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| AuthorityError::rejected("ca_crt.pem", e))?;
        let issuer_der = chain.get(i + 1).unwrap_or(der);
        let (_, issuer) =
            X509Certificate::from_der(issuer_der).map_err(|e| AuthorityError::rejected("ca_crt.pem", e))?;
        cert.verify_signature(Some(issuer.public_key())).map_err(|_| {
            bad(format!(
                "ca_crt.pem: certificate {} ({}) is not signed by the next one in the bundle",
                i + 1,
                cert.subject()
            ))
        })?;
    }
    report.ca_name = signer.cert.common_name.clone();
    report.chain_len = chain.len();
    let (_, ca_x509) = X509Certificate::from_der(&chain[0])
        .map_err(|e| AuthorityError::rejected("ca_crt.pem: the CA certificate cannot be parsed", e))?;

    // The CRL chain: ours first (it must be this CA's), then the parents' by key identifier.
    let crl_ders: Vec<Vec<u8>> = pem::parse_many(read(&cadir.file("ca_crl.pem"))?)
        .map_err(|e| AuthorityError::rejected("ca_crl.pem", e))?
        .into_iter()
        .filter(|p| p.tag() == "X509 CRL")
        .map(pem::Pem::into_contents)
        .collect();
    let mut own_crl = None;
    let mut parent_crls: Vec<Option<Vec<u8>>> = vec![None; chain.len().saturating_sub(1)];
    for der in &crl_ders {
        let (_, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| AuthorityError::rejected("ca_crl.pem", e))?;
        let aki = crl_aki(&crl);
        if aki.as_deref() == Some(signer.cert.key_id.as_slice()) || (aki.is_none() && own_crl.is_none()) {
            crl.verify_signature(ca_x509.public_key())
                .map_err(|_| bad("ca_crl.pem: the CA's CRL does not verify with the CA certificate"))?;
            own_crl = Some(der.clone());
            continue;
        }
        for (i, parent) in chain.iter().enumerate().skip(1) {
            let (pc, _) = CaCert::from_der(parent)?;
            if aki.as_deref() == Some(pc.key_id.as_slice()) {
                parent_crls[i - 1] = Some(der.clone());
            }
        }
    }
    let own_crl = own_crl.ok_or_else(|| bad("ca_crl.pem holds no CRL of this CA"))?;
    let (_, crl) = CertificateRevocationList::from_der(&own_crl)
        .map_err(|e| AuthorityError::rejected("ca_crl.pem: the CA's CRL cannot be parsed", e))?;
    report.crl_number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0);
    let mut revoked = Vec::new();
    for e in crl.iter_revoked_certificates() {
        let serial = u64::try_from(e.user_certificate.clone())
            .map_err(|_| bad("ca_crl.pem: a revoked serial is too large for this CA"))?;
        let reason = e
            .reason_code()
            .and_then(|(_, r)| Reason::from_code(i64::from(r.0)))
            .unwrap_or_default();
        revoked.push((serial, e.revocation_date.timestamp(), reason));
    }
    report.revoked = revoked.len();
    let crl_row = CrlRow {
        number: report.crl_number,
        this_update: crl.last_update().timestamp(),
        next_update: crl
            .next_update()
            .map_or(crl.last_update().timestamp(), |t| t.timestamp()),
        der: own_crl.clone(),
        last_modified: crl.last_update().timestamp() + 1,
        relying_next_update: None,
        previous: None,
    };

    // Signed certificates: each must be this CA's.
    let mut signed = Vec::new();
    for (name, path) in pem_files(&cadir.signed()).map_err(|e| AuthorityError::rejected("signed/", e))? {
        if names::validate_certname(&name).is_err() {
            report
                .warnings
                .push(format!("signed/{name}.pem skipped: not a valid certname"));
            continue;
        }
        let der = pem::parse(read(&path)?)
            .map_err(|e| AuthorityError::rejected(format!("signed/{name}.pem"), e))?
            .into_contents();
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| AuthorityError::rejected(format!("signed/{name}.pem"), e))?;
        cert.verify_signature(Some(ca_x509.public_key())).map_err(|_| {
            bad(format!(
                "signed/{name}.pem was not issued by this CA; refusing to import"
            ))
        })?;
        let serial = u64::try_from(cert.serial.clone())
            .map_err(|_| bad(format!("signed/{name}.pem: serial too large")))?;
        let v = cert.validity();
        let row = CertRow {
            serial,
            certname: name.clone(),
            der: der.clone(),
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
            revoked: None,
        };
        signed.push(Signed { name, row });
    }
    report.signed.0 = signed.len();

    // Pending requests.
    let mut requests = Vec::new();
    for (name, path) in pem_files(&cadir.requests()).map_err(|e| AuthorityError::rejected("requests/", e))? {
        match csr::parse(read(&path)?.as_bytes())
            .map_err(AuthorityError::from)
            .and_then(|c| {
                names::validate_subject(&name, &c.common_name)?;
                Ok(c)
            }) {
            Ok(c) => requests.push((name, c)),
            Err(e) => report.warnings.push(format!(
                "requests/{name}.pem skipped: {}",
                crate::error::Chain(&e)
            )),
        }
    }
    report.requests.0 = requests.len();

    // The serial counter: beyond every serial the old CA used.
    let inventory_text = std::fs::read_to_string(cadir.file("inventory.txt")).unwrap_or_default();
    let inventory: Vec<(u64, String)> = inventory_text
        .lines()
        .filter_map(|l| inventory_serial(l).map(|s| (s, l.trim_end().to_string())))
        .collect();
    report.inventory = inventory.len();
    // puppetserver's infrastructure CRL (enable-infra-crl): the nodes come along, and a new
    // infrastructure CRL is signed from their revocations once the rest is imported.
    let infra = std::fs::read_to_string(cadir.file("infra_inventory.txt")).unwrap_or_default();
    let mut infra_nodes = Vec::new();
    for line in infra.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match names::validate_certname(line) {
            Ok(()) => infra_nodes.push(line.to_string()),
            Err(e) => report.warnings.push(format!(
                "infra_inventory.txt: skipped '{}': {e}",
                names::printable(line)
            )),
        }
    }
    report.infra_nodes = infra_nodes.len();
    let serial_file = std::fs::read_to_string(cadir.file("serial"))
        .ok()
        .and_then(|t| parse_serial_file(&t));
    let highest = signed
        .iter()
        .map(|s| s.row.serial)
        .chain(inventory.iter().map(|(s, _)| *s))
        .chain(revoked.iter().map(|(s, _, _)| *s))
        .max()
        .unwrap_or(0);
    let minimum = if chain.len() > 1 { 3 } else { 2 };
    report.next_serial = serial_file.unwrap_or(0).max(highest + 1).max(minimum);

    // Store: a new data directory, or the same CA again (re-run).
    let now = clock.now().unix_timestamp();
    let store = if Store::holds_ca(dir).await? {
        let store = Store::open_for(dir, false).await?;
        let (held, _) = store
            .ca()
            .await?
            .ok_or_else(|| bad("the data directory's database holds no CA"))?;
        if parse_cert_bundle(&held)?.first() != chain.first() {
            return Err(bad(format!(
                "a different CA already lives in {}; refusing to mix them",
                dir.root().display()
            )));
        }
        store
    } else {
        if dir.ca_key().exists() {
            return Err(bad(format!(
                "{} exists without a database; refusing to overwrite it",
                dir.ca_key().display()
            )));
        }
        create_private_dir(dir.root())
            .map_err(|e| AuthorityError::rejected(format!("cannot create {}", dir.root().display()), e))?;
        match &for_token {
            Some((cfg, pkcs8, public)) => {
                crate::ca::token::TokenKey::import(cfg, pkcs8, public)?;
            }
            None => write_new(&dir.ca_key(), key_pem_out.as_bytes(), 0o600)
                .map_err(|e| AuthorityError::rejected("cannot write the CA key", e))?,
        }
        let root_key = cadir.file("root_key.pem");
        if root_key.exists() {
            let mut root_pem = read(&root_key)?;
            if let Some(p) = passphrase.as_ref().filter(|_| !keys::is_encrypted(&root_pem)) {
                root_pem = keys::encrypt_pem(&keys::load_pem(&root_pem)?, p)?;
            }
            write_new(&dir.root_key(), root_pem.as_bytes(), 0o600)
                .map_err(|e| AuthorityError::rejected("cannot write the root key", e))?;
        }
        if report.key_was_encrypted && passphrase.is_none() {
            report.warnings.push(format!(
                "the CA key was encrypted (private/ca.pass) and is now stored decrypted; to keep it \
                 encrypted, give a passphrase and run `ca key encrypt` ({})",
                crate::ca::passphrase::HOW_TO_GIVE
            ));
        }
        let store = Store::open_for(dir, true).await?;
        let mut tx = store.write().await?;
        tx.init_ca(&signer.chain_pem, &signer.cert.key_id, report.next_serial, now)
            .await?;
        tx.commit().await?;
        store
    };

    let store = store.with_seal(crate::storage::AuditSeal::new(signer.audit_key(), dir.root()));
    let mut tx = store.write().await?;
    let signed_serials: Vec<u64> = signed.iter().map(|s| s.row.serial).collect();
    for s in &signed {
        if !tx.certificate_exists(s.row.serial).await? {
            let json = crate::authority::status::certificate_status_json(&s.row)?;
            tx.insert_certificate(&s.row, &json, now, "import").await?;
            report.signed.1 += 1;
        }
    }
    for (name, c) in &requests {
        if tx.request(name).await?.is_none() && tx.current_certificate(name).await?.is_none() {
            let json = crate::authority::status::request_status_json(name, c)?;
            tx.put_request(name, &c.der, &json, now, "import", false).await?;
            report.requests.1 += 1;
        }
    }
    for (serial, at, reason) in &revoked {
        let certname = signed
            .iter()
            .find(|s| s.row.serial == *serial)
            .map(|s| s.name.as_str());
        tx.revoke(*serial, certname, *at, reason.code()).await?;
    }
    for (serial, line) in &inventory {
        if !signed_serials.contains(serial) {
            tx.insert_inventory_line(*serial, line).await?;
        }
    }
    let held_crl = tx.crl_dates().await?;
    if held_crl.is_none_or(|(number, ..)| number < crl_row.number) {
        // Stored in pieces like every CRL, so that the next revocation appends to it.
        let layout = crate::storage::CrlLayout {
            entries: crate::ca::crl::entries_range(&crl_row.der)
                .ok_or_else(|| bad("ca_crl.pem: the CRL is not readable"))?,
            appends_to: None,
        };
        tx.store_crl(&crl_row, &layout).await?;
        tx.raise_crl_number(crl_row.number).await?;
    }
    for (i, der) in parent_crls.iter().enumerate() {
        if let Some(der) = der {
            let position = u32::try_from(i + 1).map_err(|_| bad("CA chain too long"))?;
            tx.set_parent_crl(position, der).await?;
        }
    }
    tx.raise_next_serial(report.next_serial).await?;
    let detail = format!(
        "{} from {}: {} certificates, {} requests, {} revocations",
        report.ca_name,
        cadir_path.display(),
        report.signed.1,
        report.requests.1,
        report.revoked
    );
    tx.audit(&AuditRecord::ok(now, "import", "import").detail(&detail))
        .await?;
    tx.commit().await?;
    store.close().await;
    if !dir.ca_cert().exists() {
        write_new(&dir.ca_cert(), signer.chain_pem.as_bytes(), 0o644)
            .map_err(|e| AuthorityError::rejected("cannot write ca_crt.pem", e))?;
    }
    report.key_encrypted = std::fs::read_to_string(dir.ca_key()).is_ok_and(|t| keys::is_encrypted(&t));
    let authority = Authority::open(dir, settings, clock).await?;
    if !infra_nodes.is_empty() {
        authority.set_infra_nodes("import", &infra_nodes, &[]).await?;
    }
    Ok((authority, report))
}
