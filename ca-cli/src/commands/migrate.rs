use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;

use ca_server::clock::SystemClock;
use ca_server::datadir::DataDir;
use ca_server::migrate;

use super::CmdResult;
use crate::backend::RemoteOptions;
use crate::{local, Out};

pub async fn import(
    dir: &DataDir,
    cadir: &Path,
    encrypt_key: bool,
    opts: &RemoteOptions,
    out: &mut Out<'_>,
) -> CmdResult {
    let settings = local::settings(dir, opts.config.clone(), opts.key_passphrase_file.clone())?;
    let (authority, r) = migrate::import(dir, cadir, settings, Arc::new(SystemClock), encrypt_key).await?;
    authority.store().close().await;
    let encrypted = match (r.key_was_encrypted, r.key_encrypted) {
        (true, true) => " (decrypted with private/ca.pass, stored encrypted with the passphrase)",
        (true, false) => " (decrypted with private/ca.pass)",
        (false, true) => " (stored encrypted with the passphrase)",
        (false, false) => "",
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
    if r.infra_nodes > 0 {
        out.line(&format!(
            "  infra nodes:  {} (infra_inventory.txt; an infrastructure CRL is signed for them)",
            r.infra_nodes
        ));
    }
    for w in &r.warnings {
        out.warn(w);
    }
    out.line("ca-server issues its own server and admin certificates at its first start.");
    Ok(0)
}

pub async fn export(dir: &DataDir, cadir: &Path, opts: &RemoteOptions, out: &mut Out<'_>) -> CmdResult {
    let settings = local::settings(dir, opts.config.clone(), opts.key_passphrase_file.clone())?;
    let authority = local::open(dir, settings).await?;
    let res = migrate::export(&authority, dir, cadir).await;
    authority.store().close().await;
    let r = res?;
    out.line(&format!(
        "Exported the CA to {}: {} signed, {} requests, {} inventory lines, serial {:04X}",
        cadir.display(),
        r.signed,
        r.requests,
        r.inventory,
        r.next_serial
    ));
    if r.key_encrypted {
        out.warn(
            "ca_key.pem is exported encrypted, and puppetserver reads only unencrypted keys: run \
             `ca key decrypt` before exporting, or `openssl pkey -in ca_key.pem -out PLAIN` in the cadir",
        );
    }
    Ok(0)
}

/// `ca migrate-store --to URL|FILE`: copies the state of the data directory's database into another.
pub async fn store(dir: &DataDir, to: &str, out: &mut Out<'_>) -> CmdResult {
    use ca_server::storage::{is_postgres_url, redact_url, Store};
    let source = if dir.database_url().is_none() && !dir.db().exists() {
        anyhow::bail!(
            "no CA in {} (give --data-dir, or --database-url for a CA in PostgreSQL)",
            dir.root().display()
        );
    } else {
        Store::open_for(dir, false).await?
    };
    let (dest, shown) = if is_postgres_url(to) {
        let store = Store::open_url(to).await.with_context(|| redact_url(to))?;
        (store, redact_url(to))
    } else {
        let path = std::path::PathBuf::from(to.strip_prefix("sqlite://").unwrap_or(to));
        if std::fs::symlink_metadata(&path).is_ok() {
            anyhow::bail!(
                "{} exists: the destination SQLite file must be new",
                path.display()
            );
        }
        let store = Store::open(&path, true).await?;
        (store, path.display().to_string())
    };
    let copied = source.copy_into(&dest).await;
    source.close().await;
    dest.close().await;
    let report = copied.with_context(|| shown.clone())?;
    out.line(&format!("Copied the CA's state to {shown}:"));
    for (table, rows) in &report.tables {
        out.line(&format!("  {table:<20} {rows} row(s)"));
    }
    out.line("Point ca-server and ca at it (database-url, or a data directory for a SQLite file) and start the servers.");
    Ok(0)
}
