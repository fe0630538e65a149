use std::path::Path;

use ca_server::ca::keys::KeyType;
use ca_server::datadir::{write_new, DataDir};

use super::{parse_alt_names, parse_ttl, CmdResult};
use crate::{local, Out};

/// Writes `certs/NAME.pem`, `certs/ca.pem` and `private_keys/NAME.pem` (0600) under `out_dir`: the
/// layout of a Puppet ssldir.
pub async fn run(
    dir: &DataDir,
    name: &str,
    alt_names: &[String],
    out_dir: &Path,
    key_type: &str,
    ttl: Option<&str>,
    out: &mut Out<'_>,
) -> CmdResult {
    let sans = parse_alt_names(alt_names)?;
    let key_type: KeyType = key_type
        .parse()
        .map_err(|e: ca_server::ca::CaError| e.to_string())?;
    let ttl = parse_ttl(ttl)?;
    let authority = local::open(dir).await?;
    // Refuse early if the files exist: nothing is issued that cannot be written.
    let cert_path = out_dir.join("certs").join(format!("{name}.pem"));
    let key_path = out_dir.join("private_keys").join(format!("{name}.pem"));
    ca_server::ca::names::validate_certname(name).map_err(|e| e.to_string())?;
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(format!("{} already exists", p.display()));
        }
    }
    let res = authority
        .generate(&local::actor(), name, &sans, key_type, ttl)
        .await;
    let chain = authority.signer().chain_pem.clone();
    authority.store().close().await;
    let (key_pem, issued) = res.map_err(|e| e.to_string())?;
    let write = |p: &Path, s: &str, mode: u32| {
        write_new(p, s.as_bytes(), mode).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write(&key_path, &key_pem, 0o600)?;
    write(&cert_path, &issued.pem(), 0o644)?;
    let ca_path = out_dir.join("certs").join("ca.pem");
    if !ca_path.exists() {
        write(&ca_path, &chain, 0o644)?;
    }
    out.line(&format!(
        "Generated a certificate for {name} (serial {})",
        issued.serial
    ));
    out.line(&format!("  certificate: {}", cert_path.display()));
    out.line(&format!("  private key: {}", key_path.display()));
    out.line(&format!("  CA:          {}", ca_path.display()));
    Ok(0)
}
