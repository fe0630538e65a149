//! Local mode: the engine and the database of a data directory, used directly.

use std::path::PathBuf;
use std::sync::Arc;

use ca_server::authority::{Authority, CaSettings};
use ca_server::ca::passphrase::PassphraseSource;
use ca_server::clock::SystemClock;
use ca_server::config::{cli_config, Overrides, Settings};
use ca_server::datadir::{default_data_dir, DataDir};

/// The data directory chosen by flag, environment or default, with the database URL given by
/// `--database-url`/`$CA_DATABASE_URL`, else by `database-url` in the configuration file.
pub fn data_dir(
    flag: Option<PathBuf>,
    database_url: Option<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<DataDir> {
    let dir = DataDir::new(flag.unwrap_or_else(default_data_dir));
    let url = match database_url.filter(|u| !u.is_empty()) {
        Some(u) => Some(u),
        None => match cli_config(config, dir.root()) {
            None => None,
            Some(path) => {
                let ov = Overrides {
                    data_dir: Some(dir.root().to_path_buf()),
                    ..Overrides::default()
                };
                Settings::load(Some(&path), ov, dir.root().to_path_buf())?.database_url
            }
        },
    };
    if let Some(u) = &url {
        if !ca_server::storage::is_postgres_url(u) {
            anyhow::bail!(
                "--database-url: {} is not a postgresql:// URL",
                ca_server::storage::redact_url(u)
            );
        }
    }
    Ok(dir.with_database_url(url))
}

/// The CA settings of the configuration file (`--config`, `$CA_CONFIG`, the one the server records it
/// runs with, or `<data-dir>/config.toml`),
/// with the CA key's passphrase source (`--ca-key-passphrase-file` first).
pub fn settings(
    dir: &DataDir,
    config: Option<PathBuf>,
    key_passphrase_file: Option<PathBuf>,
) -> anyhow::Result<CaSettings> {
    match cli_config(config, dir.root()) {
        None => Ok(CaSettings {
            key_passphrase: PassphraseSource::resolve(key_passphrase_file, None),
            ..CaSettings::default()
        }),
        Some(path) => {
            let ov = Overrides {
                data_dir: Some(dir.root().to_path_buf()),
                key_passphrase_file,
                ..Overrides::default()
            };
            Settings::load(Some(&path), ov, dir.root().to_path_buf())
                .map(|s| s.ca)
                .map_err(anyhow::Error::from)
        }
    }
}

/// Opens the CA of a data directory.
pub async fn open(dir: &DataDir, settings: CaSettings) -> anyhow::Result<Authority> {
    if dir.database_url().is_none() && !dir.db().exists() {
        anyhow::bail!(
            "no CA in {} (run `ca setup`, or give --data-dir / CA_DATA_DIR)",
            dir.root().display()
        );
    }
    Authority::open(dir, settings, Arc::new(SystemClock))
        .await
        .map_err(anyhow::Error::from)
}

/// Who runs the command, for the audit log.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(process_user)
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}")
}

/// The name of the process's real user id (systemd units, cron and containers set no `$USER`): from
/// /etc/passwd, else `uid:<n>`.
fn process_user() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid:{uid}")))
}
