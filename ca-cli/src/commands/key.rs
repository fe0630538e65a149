use ca_server::authority::rewrite_keys;
use ca_server::ca::passphrase::PassphraseSource;
use ca_server::datadir::DataDir;

use super::CmdResult;
use crate::backend::RemoteOptions;
use crate::cli::KeyAction;
use crate::{local, Out};

pub async fn run(dir: &DataDir, action: KeyAction, opts: &RemoteOptions, out: &mut Out<'_>) -> CmdResult {
    if !dir.ca_key().exists() {
        anyhow::bail!(
            "no CA key in {} (run `ca setup`, or give --data-dir / CA_DATA_DIR)",
            dir.root().display()
        );
    }
    let settings = local::settings(dir, opts.config.clone(), opts.key_passphrase_file.clone())?;
    let new_passphrase = match action {
        KeyAction::Encrypt {
            new_passphrase_file: Some(file),
        } => Some(PassphraseSource::File(file).require("the new passphrase")?),
        KeyAction::Encrypt {
            new_passphrase_file: None,
        } => Some(settings.key_passphrase.require("encrypting the CA key")?),
        KeyAction::Decrypt => None,
    };
    let encrypting = new_passphrase.is_some();
    let done = rewrite_keys(dir, &settings, new_passphrase).await?;
    for k in &done {
        let what = match (k.was_encrypted, encrypting) {
            (false, true) => "encrypted",
            (true, true) => "re-encrypted",
            (true, false) => "decrypted",
            (false, false) => "rewritten, unencrypted",
        };
        out.line(&format!("{}: {what} (mode 0600)", k.path.display()));
    }
    if encrypting {
        out.line("A running ca-server keeps the key it loaded; give it this passphrase at its next start.");
    }
    Ok(0)
}
