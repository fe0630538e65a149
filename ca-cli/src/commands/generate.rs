use anyhow::Context as _;
use std::path::Path;

use ca_server::ca::keys::KeyType;
use ca_server::ca::pem_encode;
use ca_server::datadir::write_new;

use super::{parse_alt_names, parse_ttl, CmdResult};
use crate::backend::Backend;
use crate::Out;

/// Writes `certs/NAME.pem`, `certs/ca.pem` and `private_keys/NAME.pem` (0600) under `out_dir`: the
/// layout of a Puppet ssldir.
pub async fn run(
    b: &Backend,
    name: &str,
    alt_names: &[String],
    out_dir: &Path,
    key_type: &str,
    ttl: Option<&str>,
    out: &mut Out<'_>,
) -> CmdResult {
    let sans = parse_alt_names(alt_names)?;
    let key_type: KeyType = key_type.parse()?;
    let ttl = parse_ttl(ttl)?;
    ca_server::ca::names::validate_certname(name)?;
    // Refuse early if the files exist: nothing is issued that cannot be written.
    let cert_path = out_dir.join("certs").join(format!("{name}.pem"));
    let key_path = out_dir.join("private_keys").join(format!("{name}.pem"));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            anyhow::bail!("{} already exists", p.display());
        }
    }
    let (key_pem, cert_der, serial) = b.generate(name, &sans, key_type, ttl).await?;
    let chain = b.ca_chain().await?;
    let write = |p: &Path, s: &str, mode: u32| {
        write_new(p, s.as_bytes(), mode).with_context(|| format!("cannot write {}", p.display()))
    };
    write(&key_path, &key_pem, 0o600)?;
    write(&cert_path, &pem_encode("CERTIFICATE", &cert_der), 0o644)?;
    let ca_path = out_dir.join("certs").join("ca.pem");
    if !ca_path.exists() {
        write(&ca_path, &chain, 0o644)?;
    }
    match serial {
        Some(s) => out.line(&format!("Generated a certificate for {name} (serial {s})")),
        None => out.line(&format!("Generated a certificate for {name}")),
    }
    out.line(&format!("  certificate: {}", cert_path.display()));
    out.line(&format!("  private key: {}", key_path.display()));
    out.line(&format!("  CA:          {}", ca_path.display()));
    Ok(0)
}
