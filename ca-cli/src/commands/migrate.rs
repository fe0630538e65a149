use std::path::{Path, PathBuf};
use std::sync::Arc;

use ca_server::clock::SystemClock;
use ca_server::datadir::DataDir;
use ca_server::migrate;

use super::CmdResult;
use crate::{local, Out};

pub async fn import(dir: &DataDir, cadir: &Path, config: Option<PathBuf>, out: &mut Out<'_>) -> CmdResult {
    let settings = local::settings(dir, config)?;
    let (authority, r) = migrate::import(dir, cadir, settings, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    authority.store().close().await;
    let encrypted = if r.key_was_encrypted {
        " (decrypted with private/ca.pass)"
    } else {
        ""
    };
    out.line(&format!(
        "Imported the CA '{}' from {} into {}",
        r.ca_name,
        cadir.display(),
        dir.root().display()
    ));
    out.line(&format!(
        "  chain:        {} certificate(s); CA key matches{encrypted}",
        r.chain_len
    ));
    out.line(&format!(
        "  signed:       {} found, {} new",
        r.signed.0, r.signed.1
    ));
    out.line(&format!(
        "  requests:     {} found, {} new",
        r.requests.0, r.requests.1
    ));
    out.line(&format!(
        "  revoked:      {} serial(s) in CRL number {}",
        r.revoked, r.crl_number
    ));
    out.line(&format!(
        "  inventory:    {} line(s); next serial 0x{:04X}",
        r.inventory, r.next_serial
    ));
    for w in &r.warnings {
        out.warn(w);
    }
    out.line("ca-server issues its own server and admin certificates at its first start.");
    Ok(0)
}

pub async fn export(dir: &DataDir, cadir: &Path, config: Option<PathBuf>, out: &mut Out<'_>) -> CmdResult {
    let authority = local::open(dir, local::settings(dir, config)?).await?;
    let res = migrate::export(&authority, dir, cadir).await;
    authority.store().close().await;
    let r = res.map_err(|e| e.to_string())?;
    out.line(&format!(
        "Exported the CA to {}: {} signed, {} requests, {} inventory lines, serial {:04X}",
        cadir.display(),
        r.signed,
        r.requests,
        r.inventory,
        r.next_serial
    ));
    Ok(0)
}
