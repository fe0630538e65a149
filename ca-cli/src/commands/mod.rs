//! A module per subcommand or family of subcommands (the short ones are here). Each returns the exit
//! code, or an error with its causes (exit 1).

mod audit;
mod check;
mod clean;
mod expirations;
mod generate;
mod key;
mod list;
mod migrate;
mod print;
mod revoke;
mod setup;
mod sign;
mod submit;

use anyhow::Context as _;
use ca_server::ca::csr::San;

use crate::backend::{Backend, RemoteOptions};
use crate::cli::{Cli, Command};
use crate::{local, Out};

/// Result of a command: an exit code, or a message for an exit code of 1.
pub type CmdResult = anyhow::Result<i32>;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli, out: &mut Out<'_>) -> CmdResult {
    let dir = if cli.server.is_some() {
        local::data_dir(cli.data_dir, None, None)?
    } else {
        local::data_dir(cli.data_dir, cli.database_url, cli.config.clone())?
    };
    let remote = RemoteOptions {
        server: cli.server,
        cert: cli.cert,
        key: cli.key,
        cacert: cli.cacert,
        config: cli.config,
        key_passphrase_file: cli.ca_key_passphrase_file,
    };
    let local_only = matches!(
        cli.command,
        Command::Setup(_)
            | Command::Import { .. }
            | Command::Export { .. }
            | Command::Key { .. }
            | Command::MigrateStore { .. }
            | Command::Infra { .. }
            | Command::RenewOwn { .. }
            | Command::ExtendCa { .. }
            | Command::Rollover { .. }
    );
    if local_only && remote.server.is_some() {
        anyhow::bail!(
            "setup, import, export, key, infra, renew-own, extend-ca, rollover and migrate-store work on a data directory only (no --server)"
        );
    }
    match cli.command {
        Command::Setup(args) => return setup::run(&dir, args, &remote, out).await,
        Command::Import { cadir, encrypt_key } => {
            return migrate::import(&dir, &cadir, encrypt_key, &remote, out).await
        }
        Command::Export { cadir } => return migrate::export(&dir, &cadir, &remote, out).await,
        Command::MigrateStore { to } => return migrate::store(&dir, &to, out).await,
        Command::Key { action } => return key::run(&dir, action, &remote, out).await,
        _ => {}
    }
    let backend = Backend::open(&dir, &remote).await?;
    let res = run(&backend, cli.command, out).await;
    backend.close().await;
    res
}

async fn run(b: &Backend, command: Command, out: &mut Out<'_>) -> CmdResult {
    match command {
        Command::Setup(_)
        | Command::Import { .. }
        | Command::Export { .. }
        | Command::Key { .. }
        | Command::MigrateStore { .. } => {
            Err(anyhow::anyhow!("this command works on the data directory only"))
        }
        Command::Infra { action } => infra(b, action, out).await,
        Command::RenewOwn { which } => renew_own(b, which, out).await,
        Command::ExtendCa { ttl } => extend_ca(b, &ttl, out).await,
        Command::Rollover { step } => rollover(b, step, out).await,
        Command::Submit { file, certname } => submit::run(b, &file, certname, out).await,
        Command::List {
            all,
            signed,
            revoked,
            format,
        } => list::run(b, all, signed, revoked, format, out).await,
        Command::Sign(args) => sign::run(b, args, out).await,
        Command::Revoke {
            names,
            serial,
            reason,
        } => revoke::run(b, &names, &serial, &reason, out).await,
        Command::Clean { names } => clean::run(b, &names, out).await,
        Command::Generate {
            name,
            dns_alt_names,
            out: out_dir,
            key_type,
            ttl,
        } => generate::run(b, &name, &dns_alt_names, &out_dir, &key_type, ttl.as_deref(), out).await,
        Command::Print { name } => print::print(b, &name, out).await,
        Command::Crl { text } => print::crl(b, text, out).await,
        Command::Check {
            name,
            allow_dns_alt_names,
            allow_authorization_extensions,
            format,
        } => {
            let flags = ca_server::policy::SigningOptions {
                allow_dns_alt_names,
                allow_authorization_extensions,
            };
            check::run(b, &name, flags, format, out).await
        }
        Command::Prune { dry_run } => check::prune(b, dry_run, out).await,
        Command::Audit {
            action,
            certname,
            since,
            format,
        } => match action {
            Some(crate::cli::AuditAction::Verify) => audit::verify(b, out).await,
            None => audit::show(b, certname.as_deref(), since.as_deref(), format, out).await,
        },
        Command::Backup { file } => audit::backup(b, &file, out).await,
        Command::Expirations { within, format } => expirations::run(b, within.as_deref(), format, out).await,
        Command::Fingerprint { name, digest } => print::fingerprint(b, &name, &digest, out).await,
    }
}

/// Parses a list of alt names (`a`, `DNS:a`, `IP:1.2.3.4`).
pub fn parse_alt_names(list: &[String]) -> anyhow::Result<Vec<San>> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| San::parse_alt_name(s).ok_or_else(|| anyhow::anyhow!("invalid alt name '{s}'")))
        .collect()
}

/// Parses an optional duration flag.
pub fn parse_ttl(ttl: Option<&str>) -> anyhow::Result<Option<time::Duration>> {
    ttl.map(|t| ca_server::ca::duration::parse(t).map_err(anyhow::Error::from))
        .transpose()
}

/// `ca infra list|add|remove`.
async fn infra(b: &Backend, action: crate::cli::InfraAction, out: &mut Out<'_>) -> CmdResult {
    use crate::cli::InfraAction;
    let Backend::Local(a) = b else {
        anyhow::bail!("infra works on the data directory only (no --server)");
    };
    let nodes = match action {
        InfraAction::List => a.infra_nodes().await,
        InfraAction::Add { names } => a.set_infra_nodes(&local::actor(), &names, &[]).await,
        InfraAction::Remove { names } => a.set_infra_nodes(&local::actor(), &[], &names).await,
    }?;
    if nodes.is_empty() {
        out.line("No infrastructure nodes");
    }
    for n in nodes {
        out.line(&n);
    }
    Ok(0)
}

/// `ca renew-own [server|admin]`.
async fn renew_own(b: &Backend, only: Option<crate::cli::OwnCert>, out: &mut Out<'_>) -> CmdResult {
    use crate::cli::OwnCert;
    use ca_server::authority::OwnCertificate;
    let Backend::Local(a) = b else {
        anyhow::bail!("renew-own works on the data directory only (no --server)");
    };
    let which: Vec<(OwnCertificate, &str)> = match only {
        Some(OwnCert::Server) => vec![(OwnCertificate::Server, "server")],
        Some(OwnCert::Admin) => vec![(OwnCertificate::Admin, "admin")],
        None => vec![
            (OwnCertificate::Server, "server"),
            (OwnCertificate::Admin, "admin"),
        ],
    };
    let admin = only == Some(OwnCert::Admin);
    for (w, name) in which {
        let issued = a.renew_own_certificate(&local::actor(), w).await?;
        out.line(&format!(
            "Renewed the {name} certificate (serial {})",
            issued.serial
        ));
    }
    if !admin {
        out.line("A running server serves the new certificate after a reload (SIGHUP, systemctl reload ca-server).");
    }
    Ok(0)
}

/// `ca extend-ca [--ttl D]`.
async fn extend_ca(b: &Backend, ttl: &str, out: &mut Out<'_>) -> CmdResult {
    let Backend::Local(a) = b else {
        anyhow::bail!("extend-ca works on the data directory only (no --server)");
    };
    let ttl = parse_ttl(Some(ttl))
        .context("--ttl")?
        .unwrap_or(time::Duration::days(15 * 365));
    let done = a.extend_ca(&local::actor(), ttl).await?;
    for (name, old, new) in &done.certificates {
        out.line(&format!(
            "Extended '{name}': valid until {} (was {})",
            ca_server::ca::text::puppet_time(*new),
            ca_server::ca::text::puppet_time(*old)
        ));
    }
    out.line("Same key, subject and key identifier: every certificate issued keeps verifying.");
    out.line(
        "Restart each ca-server (one at a time) to serve it; agents pick it up as docs/lifecycle.md says.",
    );
    Ok(0)
}

/// `ca rollover start|switch|finish`.
async fn rollover(b: &Backend, step: crate::cli::RolloverStep, out: &mut Out<'_>) -> CmdResult {
    use crate::cli::RolloverStep;
    let Backend::Local(a) = b else {
        anyhow::bail!("rollover works on the data directory only (no --server)");
    };
    let actor = local::actor();
    match step {
        RolloverStep::Start { key_type, ttl } => {
            let key_type = key_type.parse().context("--key-type")?;
            let ttl = parse_ttl(Some(&ttl))
                .context("--ttl")?
                .unwrap_or(time::Duration::days(15 * 365));
            let started = a.rollover_start(&actor, key_type, ttl).await?;
            out.line(&format!(
                "New CA key and certificate made (valid until {}), with the cross-certificates:",
                ca_server::ca::text::puppet_time(started.not_after)
            ));
            for f in &started.files {
                out.line(&format!("  {}", f.display()));
            }
            match &started.token_label {
                Some(label) => {
                    out.line(&format!(
                        "The new key is in the PKCS#11 token, labelled '{label}' (sensitive, never extractable)."
                    ));
                    out.line(
                        "Restart each ca-server to publish it beside the current one (replicas use the same",
                    );
                    out.line("token). Then, once agents have it: ca rollover switch.");
                }
                None => {
                    out.line(
                        "Restart each ca-server to publish it beside the current one; copy rollover/next_ca_key.pem",
                    );
                    out.line(
                        "to every replica's data directory. Then, once agents have it: ca rollover switch.",
                    );
                }
            }
        }
        RolloverStep::Switch => {
            a.rollover_switch(&actor).await?;
            out.line("The new CA key signs from now on; the old CA stays trusted and signs a CRL too.");
            if a.signer().issuer_in_token() {
                out.line("Restart each ca-server (the keys stay in the token).");
            } else {
                out.line("Copy ca_key.pem and rollover/previous_ca_key.pem to every replica, then restart each ca-server.");
            }
        }
        RolloverStep::Finish => {
            match a.rollover_finish(&actor).await? {
                Some(label) => {
                    out.line(
                        "The old CA is no longer served, trusted or signing. Its key stays in the token,",
                    );
                    out.line(&format!(
                        "labelled '{label}': destroy it with the token's tools once no replica runs the old CA."
                    ));
                }
                None => {
                    out.line(
                        "The old CA is no longer served, trusted or signing; its key is rollover/retired_ca_key.pem",
                    );
                    out.line("(destroy it, or keep it offline).");
                }
            }
            out.line(
                "The server and admin certificates are re-issued under the new key: restart each ca-server",
            );
            out.line("(replicas re-issue theirs at start).");
        }
    }
    Ok(0)
}
