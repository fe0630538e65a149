use std::sync::Arc;

use ca_server::authority::{self, CaSettings, SetupOptions};
use ca_server::ca::duration;
use ca_server::clock::SystemClock;
use ca_server::datadir::DataDir;

use super::{parse_alt_names, CmdResult};
use crate::backend::RemoteOptions;
use crate::cli::SetupArgs;
use crate::{local, Out};

pub async fn run(dir: &DataDir, args: SetupArgs, opts: &RemoteOptions, out: &mut Out<'_>) -> CmdResult {
    let certname = args.certname.unwrap_or_else(authority::host_fqdn);
    let mut setup = SetupOptions::new(&certname);
    setup.dns_alt_names = parse_alt_names(&args.dns_alt_names)?;
    setup.key_type = args.key_type.parse()?;
    setup.ca_name = args.ca_name;
    setup.ca_ttl = duration::parse(&args.ca_ttl)?;
    setup.intermediate = args.intermediate;
    setup.server_key_type = args.server_key_type.map(|k| k.parse()).transpose()?;
    setup.encrypt_key = args.encrypt_key;
    // Setup uses the default settings; the configuration is read only for where the key goes (a
    // PKCS#11 token) and the passphrase's source.
    let configured = local::settings(dir, opts.config.clone(), opts.key_passphrase_file.clone())?;
    let mut settings = CaSettings {
        pkcs11: configured.pkcs11,
        ..CaSettings::default()
    };
    if args.encrypt_key {
        settings.key_passphrase = configured.key_passphrase;
    }
    let (authority, report) = authority::setup(dir, &setup, settings, Arc::new(SystemClock)).await?;
    authority.store().close().await;
    out.line(&format!("Created a new CA in {}", dir.root().display()));
    out.line(&format!(
        "  CA:          {} ({})",
        report.ca_name,
        dir.ca_cert().display()
    ));
    let encrypted = if args.encrypt_key { ", encrypted" } else { "" };
    out.line(&format!(
        "  CA key:      {} (mode 0600{encrypted})",
        dir.ca_key().display()
    ));
    if let Some(root) = &report.root_name {
        out.line(&format!(
            "  root CA:     {root} (key {}, mode 0600{encrypted})",
            dir.root_key().display()
        ));
    }
    out.line(&format!(
        "  server cert: {} ({})",
        report.server_certname,
        dir.server_cert().display()
    ));
    out.line(&format!(
        "  admin cert:  {} ({})",
        report.admin_certname,
        dir.admin_cert().display()
    ));
    Ok(0)
}
