//! `ca export --cadir DIR`: the CA in puppetserver's layout (§6), byte-compatible, so a puppetserver
//! can start on it: serial file, inventory lines, signed/ and requests/, CRL chain, file modes.

use std::collections::BTreeMap;
use std::path::Path;

use x509_parser::prelude::{FromDer, X509Certificate};

use super::layout::{inventory_line, Cadir};
use crate::authority::{Authority, AuthorityError};
use crate::ca::pem_encode;
use crate::datadir::DataDir;

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportReport {
    /// Files in signed/.
    pub signed: usize,
    /// Files in requests/.
    pub requests: usize,
    /// Lines in inventory.txt.
    pub inventory: usize,
    /// The next serial written to `serial`.
    pub next_serial: u64,
    /// Whether `ca_key.pem` was written encrypted (as it is in the data directory): puppetserver reads
    /// only unencrypted keys.
    pub key_encrypted: bool,
}

fn bad(msg: impl Into<String>) -> AuthorityError {
    AuthorityError::Invalid(msg.into())
}

/// Writes a new file (`create_new`: an existing file or symlink in its place is refused, never followed).
fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), AuthorityError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| AuthorityError::rejected(format!("cannot write {}", path.display()), e))?;
    f.write_all(contents)
        .map_err(|e| AuthorityError::rejected(format!("cannot write {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| AuthorityError::rejected(format!("cannot set the mode of {}", path.display()), e))
}

/// Creates a directory that must not exist yet (a symlink or anything else in its place is refused), so
/// nothing an attacker placed there redirects the files written into it.
fn mkdir_new(path: &Path) -> Result<(), AuthorityError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(|e| AuthorityError::rejected(format!("cannot create {}", path.display()), e))
}

/// Checks the target directory: absent (then created), or an empty real directory (not a symlink) that
/// no other user may write to.
fn prepare_target(cadir_path: &Path) -> Result<(), AuthorityError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(cadir_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = cadir_path.parent().filter(|p| !p.as_os_str().is_empty()) {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(|e| {
                        AuthorityError::rejected(format!("cannot create {}", parent.display()), e)
                    })?;
            }
            return mkdir_new(cadir_path);
        }
        Err(e) => return Err(AuthorityError::rejected(format!("{}", cadir_path.display()), e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(bad(format!(
            "{} is a symbolic link; refusing to export through it (give the real directory)",
            cadir_path.display()
        )));
    }
    if !meta.is_dir() {
        return Err(bad(format!("{} is not a directory", cadir_path.display())));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(bad(format!(
            "{} is writable by other users (mode {:o}); refusing to export into it",
            cadir_path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let mut entries = std::fs::read_dir(cadir_path)
        .map_err(|e| AuthorityError::rejected(format!("{}", cadir_path.display()), e))?;
    if entries.next().is_some() {
        return Err(bad(format!(
            "{} is not empty; refusing to overwrite",
            cadir_path.display()
        )));
    }
    Ok(())
}

/// Writes the CA of `authority` (data directory `dir`) into `cadir`, which must be absent or empty.
pub async fn export(
    authority: &Authority,
    dir: &DataDir,
    cadir_path: &Path,
) -> Result<ExportReport, AuthorityError> {
    if authority.signer().issuer().key().token().is_some() {
        return Err(bad(
            "the CA key is in a PKCS#11 token and never leaves it: puppetserver's cadir needs ca_key.pem, so there is nothing to export it with",
        ));
    }
    prepare_target(cadir_path)?;
    let cadir = Cadir(cadir_path);
    mkdir_new(&cadir.signed())?;
    mkdir_new(&cadir.requests())?;
    let store = authority.store();
    let signer = authority.signer();
    let mut report = ExportReport::default();

    write(&cadir.file("ca_crt.pem"), signer.chain_pem.as_bytes(), 0o644)?;
    let key =
        std::fs::read(dir.ca_key()).map_err(|e| AuthorityError::rejected("cannot read the CA key", e))?;
    write(&cadir.file("ca_key.pem"), &key, 0o600)?;
    report.key_encrypted = crate::ca::keys::is_encrypted(&String::from_utf8_lossy(&key));
    if dir.root_key().exists() {
        let root = std::fs::read(dir.root_key())
            .map_err(|e| AuthorityError::rejected("cannot read the root key", e))?;
        write(&cadir.file("root_key.pem"), &root, 0o600)?;
    }
    let (_, ca) = X509Certificate::from_der(&signer.cert.der)
        .map_err(|e| AuthorityError::failed("the CA certificate is unreadable", e))?;
    write(
        &cadir.file("ca_pub.pem"),
        pem_encode("PUBLIC KEY", ca.public_key().raw).as_bytes(),
        0o644,
    )?;
    let mut crls = vec![authority.crl().await?.row().der.clone()];
    crls.extend(store.parent_crls().await?);
    let crl_pem: String = crls.iter().map(|d| pem_encode("X509 CRL", d)).collect();
    write(&cadir.file("ca_crl.pem"), crl_pem.as_bytes(), 0o644)?;
    // puppetserver's infrastructure files: its CRL (ours until one was signed: a superset, safe to
    // serve), the nodes, and the decimal serials of their current certificates.
    let infra_pem: String = match store.infra_crl().await? {
        Some(infra) => std::iter::once(&infra.der)
            .chain(&crls[1..])
            .map(|d| pem_encode("X509 CRL", d))
            .collect(),
        None => crl_pem.clone(),
    };
    write(&cadir.file("infra_crl.pem"), infra_pem.as_bytes(), 0o644)?;
    let lines = |v: Vec<String>| -> String { v.into_iter().map(|l| l + "\n").collect() };
    let nodes = lines(store.infra_nodes().await?);
    write(&cadir.file("infra_inventory.txt"), nodes.as_bytes(), 0o644)?;
    let serials = lines(store.infra_serials().await?.iter().map(u64::to_string).collect());
    write(&cadir.file("infra_serials"), serials.as_bytes(), 0o644)?;

    // inventory.txt: the CA certificates, every certificate we issued or imported, and the imported
    // lines of certificates we hold no copy of — by serial.
    let mut lines: BTreeMap<u64, String> = BTreeMap::new();
    for (serial, line) in store.inventory_lines().await? {
        lines.insert(serial, line);
    }
    for der in &signer.chain_der {
        let (_, c) = X509Certificate::from_der(der)
            .map_err(|e| AuthorityError::failed("a certificate of the CA's chain is unreadable", e))?;
        if let Ok(serial) = u64::try_from(c.serial.clone()) {
            let v = c.validity();
            let subject = c.subject().to_string();
            lines.insert(
                serial,
                inventory_line(
                    serial,
                    v.not_before.to_datetime(),
                    v.not_after.to_datetime(),
                    &subject,
                ),
            );
        }
    }
    let mut current: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
    for (row, cleaned) in store.all_certificates().await? {
        let t = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).map_err(|_| bad("bad date"));
        let line = inventory_line(
            row.serial,
            t(row.not_before)?,
            t(row.not_after)?,
            &format!("CN={}", row.certname),
        );
        lines.insert(row.serial, line);
        if !cleaned {
            current.insert(row.certname.clone(), (row.serial, row.der));
        }
    }
    let inventory: String = lines.values().map(|l| format!("{l}\n")).collect();
    write(&cadir.file("inventory.txt"), inventory.as_bytes(), 0o644)?;
    report.inventory = lines.len();
    for (name, (_, der)) in &current {
        write(
            &cadir.signed().join(format!("{name}.pem")),
            pem_encode("CERTIFICATE", der).as_bytes(),
            0o644,
        )?;
    }
    report.signed = current.len();
    for r in store.requests().await? {
        let pem = pem_encode("CERTIFICATE REQUEST", &r.csr_der);
        write(
            &cadir.requests().join(format!("{}.pem", r.certname)),
            pem.as_bytes(),
            0o644,
        )?;
        report.requests += 1;
    }
    report.next_serial = store.peek_serial().await?;
    write(
        &cadir.file("serial"),
        format!("{:04X}", report.next_serial).as_bytes(),
        0o644,
    )?;
    Ok(report)
}
